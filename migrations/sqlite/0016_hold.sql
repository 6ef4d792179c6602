-- Hold: an operator keeps a request from running (no claim, no retry, no
-- run after a takeover) until it is resumed; its attempt stops at its next
-- step. Held rows are few: the flag filters, no index needs it.
ALTER TABLE requests ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
