-- Provider webhooks in: what each provider later says about a delivery,
-- and every verified event it sent.

ALTER TABLE impact_deliveries
    -- The provider's own processing state, from its webhooks; NULL until
    -- one arrives. Only a newer event replaces it (provider_status_at).
    ADD COLUMN provider_status    TEXT
        CHECK (provider_status IN ('received', 'processed', 'rejected', 'retrying')),
    ADD COLUMN provider_status_at TIMESTAMPTZ;

-- Events may name a delivery by the reference the provider answered with
-- (provider_response.reference) instead of our deliveryId.
CREATE INDEX impact_deliveries_provider_reference_idx
    ON impact_deliveries (provider, (provider_response ->> 'reference'))
    WHERE provider_response ->> 'reference' IS NOT NULL;

CREATE TABLE impact_webhook_events (
    id                 UUID        PRIMARY KEY,
    provider           TEXT        NOT NULL CHECK (provider IN ('benevity', 'goodera', 'workday')),
    -- The company of a per-company route (/webhooks/{provider}/{companyId});
    -- NULL for the provider's global route.
    route_company_id   UUID,
    -- The sender's id of the event, covered by its signature.
    event_id           TEXT        NOT NULL,
    event_type         TEXT        NOT NULL,
    -- What the event says; NULL for a type this service does not handle.
    provider_status    TEXT
        CHECK (provider_status IN ('received', 'processed', 'rejected', 'retrying')),
    occurred_at        TIMESTAMPTZ NOT NULL,
    received_at        TIMESTAMPTZ NOT NULL,
    -- Whose event it is: the matched delivery's company, else the route's.
    -- NULL (unmatched on a global route): visible to ops keys only.
    company_id         UUID,
    delivery_record_id UUID REFERENCES impact_deliveries (id) ON DELETE SET NULL,
    matched            BOOLEAN     NOT NULL,
    -- applied: it set the provider status; stale: an older event than the
    -- one already applied; unmatched: no such delivery; ignored: a type
    -- this service does not act on.
    outcome            TEXT        NOT NULL
        CHECK (outcome IN ('applied', 'stale', 'unmatched', 'ignored')),
    -- The delivery's status before and after this event: the audit record
    -- of a change a webhook made.
    status_before      TEXT,
    status_after       TEXT,
    -- The verified body, as sent.
    body               JSONB       NOT NULL
);

-- One row per event id and sender account: a repeat is answered 200 and
-- changes nothing. Per account, so that one company's provider account
-- cannot claim the ids of another's.
CREATE UNIQUE INDEX impact_webhook_events_event_idx
    ON impact_webhook_events
       (provider, COALESCE(route_company_id, '00000000-0000-0000-0000-000000000000'::uuid), event_id);
-- The tenant-scoped list, newest first, and the ops list of all.
CREATE INDEX impact_webhook_events_company_received_idx
    ON impact_webhook_events (company_id, received_at DESC, id DESC);
CREATE INDEX impact_webhook_events_received_idx
    ON impact_webhook_events (received_at DESC, id DESC);
-- A delivery's events (the single-delivery route).
CREATE INDEX impact_webhook_events_delivery_idx
    ON impact_webhook_events (delivery_record_id, occurred_at)
    WHERE delivery_record_id IS NOT NULL;
