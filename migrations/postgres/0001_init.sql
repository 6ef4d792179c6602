-- Baton's checkpoint store on PostgreSQL. Times are milliseconds since the Unix
-- epoch on the database's clock; flags are 0/1 integers.

CREATE TABLE servers (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    incarnation   BIGINT NOT NULL,
    status        TEXT NOT NULL,            -- running | terminated | stopped
    address       TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL
);

CREATE TABLE flow_versions (
    hash          TEXT PRIMARY KEY,         -- blake3 of the component bytes
    flow          TEXT NOT NULL,
    size          BIGINT NOT NULL,
    properties    TEXT NOT NULL,            -- JSON, as declared in the component
    deployed_at   BIGINT NOT NULL
);

CREATE TABLE flows (
    name            TEXT PRIMARY KEY,
    active_version  TEXT NOT NULL REFERENCES flow_versions(hash),
    updated_at      BIGINT NOT NULL
);

CREATE TABLE requests (
    id                  TEXT PRIMARY KEY,
    flow                TEXT NOT NULL,
    version             TEXT NOT NULL REFERENCES flow_versions(hash),
    status              TEXT NOT NULL,
    owner               TEXT,               -- NULL while handed over to the cluster
    epoch               BIGINT NOT NULL,   -- fencing epoch, bumped on every claim
    attempts            BIGINT NOT NULL,
    failures            BIGINT NOT NULL,   -- counted against max_retries
    generation          BIGINT NOT NULL,   -- journal generation (begin_checkpoint = not use)
    other_server_retry  BIGINT NOT NULL,
    resume              BIGINT NOT NULL,   -- begin_checkpoint = use
    next_attempt_at     BIGINT,
    input_hash          TEXT NOT NULL,
    input_size          BIGINT NOT NULL,
    input_inline        BYTEA,
    output_hash         TEXT,
    output_size         BIGINT,
    output_inline       BYTEA,
    error               TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX requests_due ON requests (owner, status, next_attempt_at);
CREATE INDEX requests_newest ON requests (created_at DESC, id DESC);
CREATE INDEX requests_status_newest ON requests (status, created_at DESC, id DESC);

CREATE TABLE checkpoints (
    request_id  TEXT NOT NULL,
    generation  BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    name        TEXT NOT NULL,
    server_id   TEXT NOT NULL,
    epoch       BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    hash        TEXT NOT NULL,
    size        BIGINT NOT NULL,
    inline      BYTEA,
    PRIMARY KEY (request_id, generation, seq)
);

CREATE TABLE request_events (
    id          BIGSERIAL PRIMARY KEY,
    request_id  TEXT NOT NULL,
    at          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    server_id   TEXT,
    epoch       BIGINT,
    detail      TEXT
);
CREATE INDEX request_events_by_request ON request_events (request_id, id);
