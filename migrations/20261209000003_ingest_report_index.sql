-- Scheduled reports (docs/scheduled-reports.md) sum a company's ingested
-- records by when each event happened, which lives inside the stored event
-- (`data.data`), not in a column. Two functions name that time, once, for
-- both the indexes below and the report's query (src/scheduler/report.rs),
-- so the planner matches them.
--
-- Expression indexes rather than stored generated columns: adding a stored
-- column rewrites the whole table under an exclusive lock (ingest and reads
-- stop for the rewrite), while an index is built beside it (only writes
-- wait) and costs no heap space.
--
-- The functions are declared IMMUTABLE although a text-to-date or
-- text-to-timestamptz cast is only STABLE (it reads DateStyle and
-- TimeZone): that is safe here because the regular expressions admit only
-- the ISO 8601 forms chrono writes (`2026-01-31`, `2026-01-31T09:30:00Z`,
-- an explicit offset), which read the same under every setting. They also
-- keep every value that would not cast (year 0000, a five-digit year) out,
-- so the functions never raise: an error here would refuse the whole page
-- an ingest run writes, not just the one record.

-- An ISO 8601 date or instant, or NULL for anything else.
CREATE FUNCTION ingest_iso_day(text) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN $1 ~ '^(?!0000)[0-9]{4}-[0-9]{2}-[0-9]{2}$' THEN $1::date END;

CREATE FUNCTION ingest_iso_instant(text) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN $1 ~ '^(?!0000)[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$'
        THEN $1::timestamptz
END;

-- The day of an event its source dates without a time of day: a volunteer
-- activity's date (Benevity, Goodera, Buddy, whose check-in is stored as its
-- day) and a Goodera donation's date (stored as midnight UTC only because
-- the typed event holds an instant). NULL for every other record.
CREATE FUNCTION ingest_event_day(stream text, data jsonb) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN stream IN ('benevity-volunteers', 'goodera-volunteers', 'buddy-data')
        THEN ingest_iso_day(data #>> '{data,activityDate}')
    WHEN stream = 'goodera-donations'
        THEN ingest_iso_day(left(data #>> '{data,donatedAt}', 10))
END;

-- The instant of an event its source times: a Benevity donation's
-- `donatedAt`, an enrolment's `enrolledAt` (Kintell, Upskilling), a
-- placement's `placedAt` (Mentorship). NULL for every other record.
CREATE FUNCTION ingest_event_at(stream text, data jsonb) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ingest_iso_instant(CASE stream
    WHEN 'benevity-donations' THEN data #>> '{data,donatedAt}'
    WHEN 'kintell-enrollments' THEN data #>> '{data,enrolledAt}'
    WHEN 'upskilling-enrollments' THEN data #>> '{data,enrolledAt}'
    WHEN 'mentorship-placements' THEN data #>> '{data,placedAt}'
END);

-- A report reads one company's records of one period: a range scan of
-- each index. Partial, so directory records (which count for nothing) and
-- the other kind of time take no room.
CREATE INDEX ingest_records_company_event_day
    ON ingest_records (company_id, ingest_event_day(stream, data))
    WHERE ingest_event_day(stream, data) IS NOT NULL;
CREATE INDEX ingest_records_company_event_at
    ON ingest_records (company_id, ingest_event_at(stream, data))
    WHERE ingest_event_at(stream, data) IS NOT NULL;
