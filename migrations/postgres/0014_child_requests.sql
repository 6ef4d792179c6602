-- Child flows: a request started by another request's flow names its
-- parent. A parent waiting for a child has `waiting_for` =
-- 'baton:child:<id>'; the child's end makes it due at once.
ALTER TABLE requests ADD COLUMN parent TEXT;
CREATE INDEX requests_by_parent ON requests (parent) WHERE parent IS NOT NULL;
