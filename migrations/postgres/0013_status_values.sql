-- Values a flow publishes for its callers (ctx.set_status), one per key,
-- replaced by the request's current attempt only.
CREATE TABLE request_status_values (
    request_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (request_id, key)
);
