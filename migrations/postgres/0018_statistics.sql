-- Statistics: what happened per minute, flow and server, added to by the
-- transactions that create, finish, cancel and take over requests (and
-- once a minute by each server for its checkpoints), so a window costs the
-- rows of its minutes. `shard` spreads concurrent finishes of one flow on
-- PostgreSQL over a few rows instead of one hot row lock; a reader sums
-- them. `d0`..`d15` count the requests that ended (succeeded or error) by
-- end-to-end duration bucket (`DURATION_BOUNDS_MS`).
CREATE TABLE request_minutes (
    minute      BIGINT NOT NULL,
    flow        TEXT NOT NULL,
    server_id   TEXT NOT NULL,
    shard       BIGINT NOT NULL,
    started     BIGINT NOT NULL DEFAULT 0,
    succeeded   BIGINT NOT NULL DEFAULT 0,
    failed      BIGINT NOT NULL DEFAULT 0,
    cancelled   BIGINT NOT NULL DEFAULT 0,
    retries     BIGINT NOT NULL DEFAULT 0,
    takeovers   BIGINT NOT NULL DEFAULT 0,
    checkpoints BIGINT NOT NULL DEFAULT 0,
    d0          BIGINT NOT NULL DEFAULT 0,
    d1          BIGINT NOT NULL DEFAULT 0,
    d2          BIGINT NOT NULL DEFAULT 0,
    d3          BIGINT NOT NULL DEFAULT 0,
    d4          BIGINT NOT NULL DEFAULT 0,
    d5          BIGINT NOT NULL DEFAULT 0,
    d6          BIGINT NOT NULL DEFAULT 0,
    d7          BIGINT NOT NULL DEFAULT 0,
    d8          BIGINT NOT NULL DEFAULT 0,
    d9          BIGINT NOT NULL DEFAULT 0,
    d10         BIGINT NOT NULL DEFAULT 0,
    d11         BIGINT NOT NULL DEFAULT 0,
    d12         BIGINT NOT NULL DEFAULT 0,
    d13         BIGINT NOT NULL DEFAULT 0,
    d14         BIGINT NOT NULL DEFAULT 0,
    d15         BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, flow, server_id, shard)
);
