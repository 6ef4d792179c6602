-- Durable events. What is sent to a request waits in its inbox; the flow's
-- k-th wait for a name in a journal generation takes the k-th event of that
-- name, and the journal records what it took, so the inbox is only appended.
CREATE TABLE events_inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    name TEXT NOT NULL,
    payload TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    sent_by TEXT NOT NULL
);
CREATE INDEX events_inbox_by_request ON events_inbox (request_id, name, id);

-- The event a request waits for (its attempt left to wait): sending it makes
-- the request due at once, whoever owns it now.
ALTER TABLE requests ADD COLUMN waiting_for TEXT;
-- An event sent while an attempt runs: the attempt may already have looked
-- in the inbox, so when it then leaves to wait, it is due again at once.
ALTER TABLE requests ADD COLUMN wake_pending INTEGER NOT NULL DEFAULT 0;
