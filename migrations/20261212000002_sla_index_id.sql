-- The SLA index of 20261210000001 also holds `id`: the weekly report joins
-- the period's failed deliveries to their attempts, and without `id` in the
-- index that join fetched every row of the week from the heap (0.6 s for a
-- week of 60,000 deliveries, 55 ms with it). A migration of its own, since
-- 20261210000001 had already been applied where it landed.
DROP INDEX IF EXISTS impact_deliveries_sla_idx;
CREATE INDEX impact_deliveries_sla_idx
    ON impact_deliveries (company_id, created_at)
    INCLUDE (provider, status, attempt_count, delivered_at, id);
