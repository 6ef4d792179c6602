-- The journal is keyed by one integer, its position: the request's number
-- times 2^24 plus the checkpoint's ordinal among all of the request's
-- checkpoints (every generation). Each request's journal is one contiguous
-- key range, and a checkpoint commit appends to a rowid b-tree, which SQLite
-- does without rebalancing sibling pages (a WITHOUT ROWID table keyed by
-- text rebalanced three to four pages on about one commit in eight).
--
-- A request's number is its table's rowid alias, so it survives VACUUM.
-- `journal_base` is the ordinal of the current generation's first
-- checkpoint.

CREATE TABLE requests_numbered (
    num                 INTEGER PRIMARY KEY,
    id                  TEXT NOT NULL UNIQUE,
    flow                TEXT NOT NULL,
    version             TEXT NOT NULL REFERENCES flow_versions(hash),
    status              TEXT NOT NULL,
    owner               TEXT,               -- NULL while handed over to the cluster
    epoch               INTEGER NOT NULL,   -- fencing epoch, bumped on every claim
    attempts            INTEGER NOT NULL,
    failures            INTEGER NOT NULL,   -- counted against max_retries
    generation          INTEGER NOT NULL,   -- journal generation (begin_checkpoint = not use)
    journal_base        INTEGER NOT NULL DEFAULT 0,
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
INSERT INTO requests_numbered (id, flow, version, status, owner, epoch, attempts, failures,
        generation, journal_base, other_server_retry, resume, next_attempt_at,
        input_hash, input_size, input_inline, output_hash, output_size, output_inline,
        error, created_at, updated_at)
SELECT r.id, r.flow, r.version, r.status, r.owner, r.epoch, r.attempts, r.failures,
       r.generation,
       (SELECT COUNT(*) FROM checkpoints c
         WHERE c.request_id = r.id AND c.generation < r.generation),
       r.other_server_retry, r.resume, r.next_attempt_at,
       r.input_hash, r.input_size, r.input_inline, r.output_hash, r.output_size, r.output_inline,
       r.error, r.created_at, r.updated_at
  FROM requests r ORDER BY r.created_at, r.id;

CREATE TABLE checkpoints_by_position (
    position    INTEGER PRIMARY KEY,    -- request number * 2^24 + ordinal
    generation  INTEGER NOT NULL,
    seq         INTEGER NOT NULL,       -- position within the generation
    name        TEXT NOT NULL,
    server_id   TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    hash        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    inline      BLOB
);
INSERT INTO checkpoints_by_position
SELECT r.num * 16777216
         + ROW_NUMBER() OVER (PARTITION BY c.request_id ORDER BY c.generation, c.seq) - 1,
       c.generation, c.seq, c.name, c.server_id, c.epoch, c.at, c.hash, c.size, c.inline
  FROM checkpoints c JOIN requests_numbered r ON r.id = c.request_id;

DROP TABLE checkpoints;
DROP TABLE requests;
ALTER TABLE requests_numbered RENAME TO requests;
ALTER TABLE checkpoints_by_position RENAME TO checkpoints;

CREATE INDEX requests_due ON requests (owner, status, next_attempt_at);
CREATE INDEX requests_newest ON requests (created_at DESC, id DESC);
CREATE INDEX requests_status_newest ON requests (status, created_at DESC, id DESC);
CREATE INDEX requests_flow_newest ON requests (flow, created_at DESC, id DESC);
CREATE INDEX requests_owner_newest ON requests (owner, created_at DESC, id DESC);
