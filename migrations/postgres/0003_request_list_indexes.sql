-- The Status List filters by flow or by owner, newest first, keyset-paged.
CREATE INDEX requests_flow_newest ON requests (flow, created_at DESC, id DESC);
CREATE INDEX requests_owner_newest ON requests (owner, created_at DESC, id DESC);
