-- A schedule's cron expression is read in this IANA time zone; schedules
-- made before zones existed were read in UTC and stay so.
ALTER TABLE schedules ADD COLUMN tz TEXT NOT NULL DEFAULT 'UTC';
