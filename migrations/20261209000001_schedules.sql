-- Per-company export schedules (seed 004's scheduled_deliveries) and the
-- record of each firing. A firing is unique on (schedule, due time): with
-- the schedule row locked FOR UPDATE SKIP LOCKED while it fires and a
-- deterministic delivery id per firing, no due time can make two
-- deliveries, however many replicas run the scheduler.
CREATE TABLE scheduled_deliveries (
    id                   uuid        PRIMARY KEY,
    company_id           uuid        NOT NULL,
    platform             text        NOT NULL CHECK (platform IN ('benevity', 'goodera', 'workday')),
    -- A preset (hourly, every-6-hours, daily, weekly, monthly) or a 5-field
    -- cron expression, as the client gave it.
    schedule             text        NOT NULL,
    -- IANA zone the schedule's local times are in.
    timezone             text        NOT NULL DEFAULT 'UTC',
    active               boolean     NOT NULL DEFAULT true,
    -- The next due time; NULL while inactive (computed again on resume).
    next_run             timestamptz,
    -- The due time of the last firing, and how its delivery ended.
    last_run             timestamptz,
    last_status          text        CHECK (last_status IN ('success', 'failed', 'skipped')),
    last_error           text,
    -- Failed final outcomes in a row; 0 after a success.
    consecutive_failures integer     NOT NULL DEFAULT 0,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

-- The scheduler's question: which active schedules are due.
CREATE INDEX scheduled_deliveries_due_idx
    ON scheduled_deliveries (next_run) WHERE active;
-- Listing per company, newest first, keyset-paged.
CREATE INDEX scheduled_deliveries_company_idx
    ON scheduled_deliveries (company_id, created_at DESC, id DESC);

CREATE TABLE schedule_firings (
    schedule_id  uuid        NOT NULL REFERENCES scheduled_deliveries (id) ON DELETE CASCADE,
    -- The due time fired (for "run now", the time it was asked).
    due_at       timestamptz NOT NULL,
    manual       boolean     NOT NULL DEFAULT false,
    period_start timestamptz NOT NULL,
    period_end   timestamptz NOT NULL,
    outcome      text        NOT NULL CHECK (outcome IN ('enqueued', 'skipped')),
    -- Why it was skipped (no data, an identical report within 24 h).
    reason       text,
    delivery_id  uuid,
    fired_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_id, due_at)
);

-- No schedule existed before this migration: any id in the column is stale.
UPDATE impact_deliveries SET schedule_id = NULL WHERE schedule_id IS NOT NULL;
ALTER TABLE impact_deliveries
    ADD CONSTRAINT impact_deliveries_schedule_id_fkey
    FOREIGN KEY (schedule_id) REFERENCES scheduled_deliveries (id) ON DELETE SET NULL;
CREATE INDEX impact_deliveries_schedule_idx
    ON impact_deliveries (schedule_id, created_at DESC) WHERE schedule_id IS NOT NULL;
