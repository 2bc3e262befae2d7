-- The delivery log: one row per impact report handed to a provider.
-- Columns follow the wire contract of the service this one replaces.
CREATE TABLE impact_deliveries (
    id                UUID PRIMARY KEY,
    company_id        UUID        NOT NULL,
    provider          TEXT        NOT NULL CHECK (provider IN ('benevity', 'goodera', 'workday')),
    -- Sent to the provider as its idempotency key; stays the same across retries and replays.
    delivery_id       UUID        NOT NULL UNIQUE,
    payload           JSONB       NOT NULL,
    status            TEXT        NOT NULL DEFAULT 'pending'
                                  CHECK (status IN ('pending', 'retrying', 'success', 'failed')),
    attempt_count     INTEGER     NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
    last_error        TEXT,
    provider_response JSONB,
    delivered_at      TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every list query is tenant-scoped and newest first; these serve the
-- company-only, company+status and company+provider filters.
CREATE INDEX impact_deliveries_company_created_idx
    ON impact_deliveries (company_id, created_at DESC, id DESC);
CREATE INDEX impact_deliveries_company_status_created_idx
    ON impact_deliveries (company_id, status, created_at DESC, id DESC);
CREATE INDEX impact_deliveries_company_provider_created_idx
    ON impact_deliveries (company_id, provider, created_at DESC, id DESC);
