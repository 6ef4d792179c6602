-- A checkpoint row advances its request's progress in the same statement,
-- so a fenced commit is one INSERT: one durable commit, like a raw insert.
CREATE FUNCTION checkpoints_advance_request() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE requests
       SET checkpoints = NEW.seq + 1, last_checkpoint = NEW.name, updated_at = NEW.at
     WHERE id = NEW.request_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER checkpoints_advance_request AFTER INSERT ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION checkpoints_advance_request();
