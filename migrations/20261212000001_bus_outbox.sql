-- The event bus out (docs/bus.md): a transactional outbox. Each event row is
-- written by the same transaction as the data it describes (ingested
-- records, a delivery's final outcome, a provider status); the relay
-- publishes it to JetStream with `Nats-Msg-Id` = event_id, then marks it
-- sent.
CREATE TABLE bus_outbox (
    seq            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The writing transaction. The relay takes a row only once every
    -- transaction older than it has ended, and in (tx, seq) order, so a slow
    -- transaction's events are never overtaken by a later one's.
    tx             xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id       uuid        NOT NULL DEFAULT gen_random_uuid(),
    subject        text        NOT NULL,
    company_id     uuid        NOT NULL,
    -- The delivery's or the ingest run's id.
    correlation_id uuid,
    -- The event that caused this one, when there is one (the report-ready
    -- event behind a delivery, the webhook event behind a provider status).
    causation_id   uuid,
    occurred_at    timestamptz NOT NULL DEFAULT now(),
    data           jsonb       NOT NULL,
    sent_at        timestamptz
);

-- What the relay reads: unsent rows in publishing order.
CREATE INDEX bus_outbox_pending_idx ON bus_outbox (tx, seq) WHERE sent_at IS NULL;
-- What retention deletes: sent rows by age.
CREATE INDEX bus_outbox_sent_idx ON bus_outbox (sent_at) WHERE sent_at IS NOT NULL;

-- The report-ready event a delivery came from (the bus in), carried as the
-- causationId of its outcome's events.
ALTER TABLE impact_deliveries ADD COLUMN cause_event_id uuid;
