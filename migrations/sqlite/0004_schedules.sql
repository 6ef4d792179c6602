-- Cron-style schedules kept in the shared database. A tick is claimed by
-- moving next_fire_at on, conditional on its old value, in the same
-- transaction that creates the tick's request (id `<schedule>-<tick>`), so
-- each tick fires once across the cluster. `server` set = a per-server
-- (local) schedule that only that server fires.
CREATE TABLE schedules (
    name           TEXT PRIMARY KEY,
    flow           TEXT NOT NULL,
    cron           TEXT NOT NULL,
    input          TEXT NOT NULL,
    server         TEXT,
    next_fire_at   BIGINT NOT NULL,
    last_fired_at  BIGINT,
    created_at     BIGINT NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_fire_at);
