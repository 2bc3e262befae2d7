-- The id of this installation: made once, when this migration runs, and
-- kept with the data. The idempotency cache namespaces its keys by it, so a
-- fresh database (another environment, a new install) never takes an
-- answer that Redis holds for deliveries of another database.
CREATE TABLE impact_installation (
    -- At most one row.
    singleton  BOOLEAN     PRIMARY KEY DEFAULT true CHECK (singleton),
    id         UUID        NOT NULL DEFAULT gen_random_uuid(),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO impact_installation DEFAULT VALUES;

ALTER TABLE impact_deliveries
    -- When the current lease was taken: what the API shows as inFlightSince
    -- while a worker or a replay is attempting the delivery.
    ADD COLUMN locked_at          TIMESTAMPTZ,
    -- Attempts the provider answered 429 (rate limited). They are counted
    -- and logged like any attempt, but spend a budget of their own rather
    -- than the retry policy's: a busy provider is not a failing one.
    ADD COLUMN rate_limited_count INTEGER NOT NULL DEFAULT 0 CHECK (rate_limited_count >= 0);
