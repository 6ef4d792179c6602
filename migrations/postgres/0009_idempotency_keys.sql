-- Idempotent start: a caller's key names at most one request of a flow, so
-- a start retried after a lost answer finds the request it made.
ALTER TABLE requests ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX requests_by_idempotency_key ON requests (flow, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
