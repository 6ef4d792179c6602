-- The journal holds fence entries beside checkpoints: every epoch bump
-- appends one (seq -1, no payload) for the new epoch, and a checkpoint
-- commit goes in only right after its own attempt's entry. A build from
-- before reads a fence entry as a checkpoint, so this migration's version
-- keeps such a build from starting on this database (sqlx refuses a
-- database with a migration it does not know). SQLite adds a CHECK only
-- by rebuilding the table, so the version is all this migration writes.
SELECT 1;
