-- The fault model's state.
--
-- `suspended`: the request's last attempt ended by suspending (a durable
-- sleep that gave its slot back, or a postponement), not by failing, so the
-- next claim continues its journal generation even when the flow says
-- `begin_checkpoint = not use`. Every claim clears it.
--
-- `postponements`: attempts in a row that could not start or end because the
-- database or the storage folder was away; past the server's bound the next
-- one counts as a failure. Cleared by every other outcome.
--
-- `cluster_settings`: what every server of the cluster must agree on (the
-- lease), written by the first server to start.

ALTER TABLE requests ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN postponements INTEGER NOT NULL DEFAULT 0;

CREATE TABLE cluster_settings (
    name   TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
);
