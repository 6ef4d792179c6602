-- The journal's key was called `position`, which is what the flow's
-- interface calls a checkpoint's place in its generation (`seq` here). The
-- key is request number * 2^24 + the checkpoint's ordinal in the request.
ALTER TABLE checkpoints RENAME COLUMN position TO journal_key;
