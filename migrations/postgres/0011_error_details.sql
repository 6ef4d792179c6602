-- A flow's error can carry JSON details (FlowError::with_details), kept
-- beside the error's sentence and cleared with it.
ALTER TABLE requests ADD COLUMN error_details TEXT;
