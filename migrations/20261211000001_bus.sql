-- The event bus in (docs/bus.md): which providers a company's ready reports
-- go to automatically, and the report-ready messages that could never
-- become deliveries, kept for ops after JetStream was told to drop them.
CREATE TABLE delivery_rules (
    company_id uuid        PRIMARY KEY,
    -- Empty: no provider gets the company's reports automatically.
    providers  text[]      NOT NULL
        CHECK (providers <@ ARRAY['benevity', 'goodera', 'workday']::text[]),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE bus_rejected (
    id              uuid        PRIMARY KEY,
    -- Where the message sits in its stream (while the stream's limits keep
    -- it), so ops can read it there; its body is not copied here, it may
    -- carry personal data.
    stream          text        NOT NULL,
    stream_sequence bigint      NOT NULL,
    subject         text        NOT NULL,
    -- NULL when the message did not say (or was not JSON).
    event_id        uuid,
    company_id      uuid,
    reason_code     text        NOT NULL,
    reason          text        NOT NULL,
    rejected_at     timestamptz NOT NULL DEFAULT now(),
    -- A message terminated once is stored once, even when its `term` was
    -- lost and it came back.
    UNIQUE (stream, stream_sequence)
);

-- The tenant-scoped list, newest first.
CREATE INDEX bus_rejected_company_idx ON bus_rejected (company_id, rejected_at DESC, id DESC);
CREATE INDEX bus_rejected_newest_idx ON bus_rejected (rejected_at DESC, id DESC);
