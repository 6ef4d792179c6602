-- Retention: a purge finds finished requests by flow and age, and the blob
-- sweep asks whether any row still names a blob. Only rows whose payload
-- is a blob (not inline) are in the blob indexes, so a checkpoint commit of
-- a small value pays nothing for them.
CREATE INDEX requests_finished_by_age ON requests (flow, updated_at)
    WHERE status IN ('succeeded', 'error', 'cancelled');
CREATE INDEX checkpoints_by_blob ON checkpoints (hash) WHERE inline IS NULL;
CREATE INDEX requests_by_input_blob ON requests (input_hash) WHERE input_inline IS NULL;
CREATE INDEX requests_by_output_blob ON requests (output_hash)
    WHERE output_hash IS NOT NULL AND output_inline IS NULL;
-- The cluster's purge turn: the database time (ms) before which no other
-- server starts a purge.
INSERT INTO cluster_settings (name, value) VALUES ('purge_due_at', 0);
