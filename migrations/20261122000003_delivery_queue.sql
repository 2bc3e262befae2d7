-- impact_deliveries becomes the durable delivery queue, and every provider
-- call gets a row in delivery_attempts.

ALTER TABLE impact_deliveries
    -- SHA-256 (hex) of the RFC 8785 canonical JSON of the payload: what
    -- "the same request" means for idempotent creates and the idempotency cache.
    ADD COLUMN payload_hash    TEXT,
    -- The client's Idempotency-Key header, unique per company when given.
    ADD COLUMN idempotency_key TEXT,
    -- When the next attempt is due; NULL once nothing is due (success/failed).
    ADD COLUMN next_attempt_at TIMESTAMPTZ,
    -- The lease of the worker attempting it; another worker may take the row
    -- over once locked_until has passed (the first worker died).
    ADD COLUMN locked_by       TEXT,
    ADD COLUMN locked_until    TIMESTAMPTZ,
    -- The export schedule that created it (scheduler issue); NULL for API calls.
    ADD COLUMN schedule_id     UUID,
    -- Recorded as delivered from the idempotency cache without a provider call.
    ADD COLUMN from_cache      BOOLEAN NOT NULL DEFAULT false,
    -- What the next attempt is, for its attempt row: an operator's replay
    -- re-queued it, a schedule created it, or the pipeline retries it.
    ADD COLUMN next_trigger    TEXT    NOT NULL DEFAULT 'automatic'
                               CHECK (next_trigger IN ('automatic', 'replay', 'scheduled'));

-- Rows from before this migration: hashed from their stored text (not the
-- canonical form, which only the service computes), and queued if unfinished.
UPDATE impact_deliveries
SET payload_hash = encode(sha256(convert_to(payload::text, 'UTF8')), 'hex');
UPDATE impact_deliveries
SET next_attempt_at = updated_at
WHERE status IN ('pending', 'retrying');

ALTER TABLE impact_deliveries ALTER COLUMN payload_hash SET NOT NULL;

CREATE UNIQUE INDEX impact_deliveries_company_idempotency_key_idx
    ON impact_deliveries (company_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- The queue claim: due work only, oldest due first. Small because finished
-- rows leave it.
CREATE INDEX impact_deliveries_due_idx
    ON impact_deliveries (next_attempt_at)
    WHERE status IN ('pending', 'retrying');

CREATE TABLE delivery_attempts (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- impact_deliveries.id (the record id, not the provider-facing deliveryId).
    delivery_id       UUID        NOT NULL REFERENCES impact_deliveries (id) ON DELETE CASCADE,
    attempt_number    INTEGER     NOT NULL CHECK (attempt_number > 0),
    trigger           TEXT        NOT NULL CHECK (trigger IN ('automatic', 'replay', 'scheduled')),
    started_at        TIMESTAMPTZ NOT NULL,
    finished_at       TIMESTAMPTZ NOT NULL,
    duration_ms       INTEGER     NOT NULL CHECK (duration_ms >= 0),
    http_status       INTEGER,
    error_class       TEXT CHECK (error_class IN ('transient', 'rate_limited', 'auth', 'permanent')),
    error_message     TEXT,
    -- At most 1 KiB of the provider's answer.
    response_excerpt  TEXT,
    UNIQUE (delivery_id, attempt_number)
);

-- Wakes idle workers (LISTEN impact_deliveries_due) when work is queued;
-- once per statement, so a bulk re-queue sends one notification.
CREATE FUNCTION impact_deliveries_notify_due() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('impact_deliveries_due', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER impact_deliveries_due_notify
    AFTER INSERT OR UPDATE OF status ON impact_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION impact_deliveries_notify_due();
