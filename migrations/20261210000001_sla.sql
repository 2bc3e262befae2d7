-- The SLA figures of one company over a period read every delivery it
-- created then: with the columns they need in the index, a 90-day window
-- of 100,000 deliveries is an index-only scan instead of 100,000 heap
-- fetches. (The (company_id, created_at DESC, id DESC) index stays: the
-- listing's cursor pages need its order.)
CREATE INDEX impact_deliveries_sla_idx
    ON impact_deliveries (company_id, created_at)
    INCLUDE (provider, status, attempt_count, delivered_at);
