-- The retention job (src/scheduler/retention.rs, docs/runbook.md
-- "Retention"): finished deliveries are deleted, with their attempts and
-- webhook events, once their last change is older than RETENTION_DAYS; so
-- are webhook events no delivery holds.

-- Finished deliveries by their last change: each batch of the job reads
-- the oldest from here instead of scanning the table. Partial, so the
-- queue's own rows (pending, retrying) never enter it.
CREATE INDEX impact_deliveries_finished_idx
    ON impact_deliveries (updated_at)
    WHERE status IN ('success', 'failed');

-- Webhook events that name no delivery (unmatched, or their delivery was
-- removed by other means: the foreign key sets NULL), by age. Deleted
-- deliveries' own events are found through impact_webhook_events_delivery_idx.
CREATE INDEX impact_webhook_events_unlinked_idx
    ON impact_webhook_events (received_at)
    WHERE delivery_record_id IS NULL;

-- One row per maintenance job and UTC day: inserting it is how one replica
-- (and only one) takes the day's run. A run holds its day by a lease it
-- renews after every batch; a run whose lease ran out without finishing
-- (its process died, or it was shut down and let go) is taken over by the
-- next replica that asks.
CREATE TABLE maintenance_runs (
    job         text        NOT NULL,
    day         date        NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    -- The run (one call, a fresh id) holding the day now.
    runner      uuid        NOT NULL,
    -- Until when it holds it; NULL: let go (shut down between batches).
    lease_until timestamptz,
    -- How many times another run took the day over.
    takeovers   integer     NOT NULL DEFAULT 0,
    -- Rows removed that day so far, by every run of it, per table.
    removed     jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (job, day)
);
