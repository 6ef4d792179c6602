-- What each server reports with its heartbeat, so drift is visible: the
-- flow-set (a hash over the active versions it has loaded) and the HEAD of
-- its flows repository; and who last renamed it.
ALTER TABLE servers ADD COLUMN flow_set TEXT;
ALTER TABLE servers ADD COLUMN flows_head TEXT;
ALTER TABLE servers ADD COLUMN renamed_by TEXT;
ALTER TABLE servers ADD COLUMN renamed_at BIGINT;
