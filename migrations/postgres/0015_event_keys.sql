-- An event's idempotency key: a send retried with the same key (a lost
-- answer, a double-submitted form) keeps one event in the inbox.
ALTER TABLE events_inbox ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX events_inbox_by_key ON events_inbox (request_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
