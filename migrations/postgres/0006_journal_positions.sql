-- The journal is keyed by one integer, its position: the request's number
-- times 2^24 plus the checkpoint's ordinal among all of the request's
-- checkpoints (every generation). Each request's journal is one contiguous
-- key range, its commits append at the right edge of one small b-tree, and
-- the fence reads the request by its number. `journal_base` is the ordinal
-- of the current generation's first checkpoint.

ALTER TABLE requests ADD COLUMN num BIGINT GENERATED ALWAYS AS IDENTITY;
ALTER TABLE requests ADD CONSTRAINT requests_num_key UNIQUE (num);
ALTER TABLE requests ADD COLUMN journal_base BIGINT NOT NULL DEFAULT 0;
UPDATE requests r SET journal_base =
    (SELECT COUNT(*) FROM checkpoints c WHERE c.request_id = r.id AND c.generation < r.generation)
 WHERE r.generation > 0;

CREATE TABLE checkpoints_by_position (
    position    BIGINT PRIMARY KEY,     -- request number * 2^24 + ordinal
    generation  BIGINT NOT NULL,
    seq         BIGINT NOT NULL,        -- position within the generation
    name        TEXT NOT NULL,
    server_id   TEXT NOT NULL,
    epoch       BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    hash        TEXT NOT NULL,
    size        BIGINT NOT NULL,
    inline      BYTEA
);
INSERT INTO checkpoints_by_position
SELECT r.num * 16777216
         + ROW_NUMBER() OVER (PARTITION BY c.request_id ORDER BY c.generation, c.seq) - 1,
       c.generation, c.seq, c.name, c.server_id, c.epoch, c.at, c.hash, c.size, c.inline
  FROM checkpoints c JOIN requests r ON r.id = c.request_id;

DROP TABLE checkpoints;
ALTER TABLE checkpoints_by_position RENAME TO checkpoints;
ALTER INDEX checkpoints_by_position_pkey RENAME TO checkpoints_pkey;
