-- When this service applied the delivery's provider status (its own clock,
-- unlike provider_status_at, the provider's). A webhook can arrive while an
-- attempt is still in flight, before its outcome is recorded: an outcome
-- whose lease began before this time is reconciled with what the provider
-- said (a rejection makes its success a failure; "processed" makes its
-- failure a success).
ALTER TABLE impact_deliveries ADD COLUMN provider_status_seen_at TIMESTAMPTZ;
