-- Ingest (docs/ingest.md): records pulled from the source systems, per
-- company and stream the cursor a later run resumes from, and the runs.

-- One row per record of a source: idempotent on (company, stream, source
-- id). `data` is the typed event, personal data already redacted.
CREATE TABLE ingest_records (
    id                uuid        PRIMARY KEY,
    company_id        uuid        NOT NULL,
    stream            text        NOT NULL,
    source_id         text        NOT NULL,
    event_type        text        NOT NULL,
    source_updated_at timestamptz NOT NULL,
    data              jsonb       NOT NULL,
    run_id            uuid        NOT NULL,
    stored_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (company_id, stream, source_id)
);
-- The read API pages a company's records by when they were stored.
CREATE INDEX ingest_records_company_stored ON ingest_records (company_id, stored_at, id);
CREATE INDEX ingest_records_company_type_stored
    ON ingest_records (company_id, event_type, stored_at, id);

-- The checkpoint: written in the transaction that stores a page, so the
-- commit is the checkpoint. `high_water` is the newest source time stored;
-- the next run asks for records updated at or after it (ties come again
-- and the upsert absorbs them).
CREATE TABLE ingest_cursors (
    company_id uuid        NOT NULL,
    stream     text        NOT NULL,
    high_water timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, stream)
);

CREATE TABLE ingest_runs (
    id                 uuid        PRIMARY KEY,
    company_id         uuid        NOT NULL,
    stream             text        NOT NULL,
    status             text        NOT NULL
                       CHECK (status IN ('running', 'succeeded', 'partial', 'failed')),
    since              timestamptz,
    record_limit       integer,
    page_size          integer     NOT NULL,
    records_total      bigint      NOT NULL DEFAULT 0,
    records_processed  bigint      NOT NULL DEFAULT 0,
    records_failed     bigint      NOT NULL DEFAULT 0,
    pages              integer     NOT NULL DEFAULT 0,
    last_source_time   timestamptz,
    errors             jsonb       NOT NULL DEFAULT '[]',
    has_more           boolean     NOT NULL DEFAULT false,
    started_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz,
    -- A running run is leased to one process; one whose lease ran out (the
    -- process died) is taken over and resumed from the cursor.
    locked_by          text,
    locked_until       timestamptz
);
-- One run per company and stream at a time.
CREATE UNIQUE INDEX ingest_runs_one_running ON ingest_runs (company_id, stream)
    WHERE status = 'running';
CREATE INDEX ingest_runs_company_started ON ingest_runs (company_id, started_at DESC, id DESC);
CREATE INDEX ingest_runs_lease ON ingest_runs (locked_until) WHERE status = 'running';
