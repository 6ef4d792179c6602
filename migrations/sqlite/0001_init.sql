-- Baton's checkpoint store on SQLite. Times are milliseconds since the Unix
-- epoch on the database's clock; flags are 0/1 integers.

CREATE TABLE servers (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    incarnation   INTEGER NOT NULL,
    status        TEXT NOT NULL,            -- running | terminated | stopped
    address       TEXT NOT NULL,
    started_at    INTEGER NOT NULL,
    heartbeat_at  INTEGER NOT NULL
);

CREATE TABLE flow_versions (
    hash          TEXT PRIMARY KEY,         -- blake3 of the component bytes
    flow          TEXT NOT NULL,
    size          INTEGER NOT NULL,
    properties    TEXT NOT NULL,            -- JSON, as declared in the component
    deployed_at   INTEGER NOT NULL
);

CREATE TABLE flows (
    name            TEXT PRIMARY KEY,
    active_version  TEXT NOT NULL REFERENCES flow_versions(hash),
    updated_at      INTEGER NOT NULL
);

CREATE TABLE requests (
    id                  TEXT PRIMARY KEY,
    flow                TEXT NOT NULL,
    version             TEXT NOT NULL REFERENCES flow_versions(hash),
    status              TEXT NOT NULL,
    owner               TEXT,               -- NULL while handed over to the cluster
    epoch               INTEGER NOT NULL,   -- fencing epoch, bumped on every claim
    attempts            INTEGER NOT NULL,
    failures            INTEGER NOT NULL,   -- counted against max_retries
    generation          INTEGER NOT NULL,   -- journal generation (begin_checkpoint = not use)
    other_server_retry  INTEGER NOT NULL,
    resume              INTEGER NOT NULL,   -- begin_checkpoint = use
    next_attempt_at     INTEGER,
    input_hash          TEXT NOT NULL,
    input_size          INTEGER NOT NULL,
    input_inline        BLOB,
    output_hash         TEXT,
    output_size         INTEGER,
    output_inline       BLOB,
    error               TEXT,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
CREATE INDEX requests_due ON requests (owner, status, next_attempt_at);
CREATE INDEX requests_newest ON requests (created_at DESC, id DESC);
CREATE INDEX requests_status_newest ON requests (status, created_at DESC, id DESC);

CREATE TABLE checkpoints (
    request_id  TEXT NOT NULL,
    generation  INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    name        TEXT NOT NULL,
    server_id   TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    hash        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    inline      BLOB,
    PRIMARY KEY (request_id, generation, seq)
) WITHOUT ROWID;   -- the journal is its primary key: one b-tree per commit

CREATE TABLE request_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id  TEXT NOT NULL,
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    server_id   TEXT,
    epoch       INTEGER,
    detail      TEXT
);
CREATE INDEX request_events_by_request ON request_events (request_id, id);
