-- The SLA figures of long periods read an hourly rollup instead of every
-- delivery: an exact p95 over 60,000-100,000 raw rows cost 130-200 ms
-- (docs/performance.md). Kept by statement-level triggers on
-- impact_deliveries, so it is exact at every commit; docs/sla.md describes
-- how the routes read it.

-- The latency histogram's bucket edges in ms, defined here only (the
-- triggers, the backfill and src/sla/figures.rs all read this function):
-- 240,000 × 1.25^(k/5), so each bucket is 4.56 % wide and 4 and 5 minutes
-- (k = 0 and 5) are exact edges; from ~0.98 ms to ~4.9 years.
CREATE FUNCTION sla_latency_edges() RETURNS float8[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT array_agg(240000 * 1.25::float8 ^ (k / 5.0::float8) ORDER BY k)
          FROM generate_series(-278, 300) AS k $$;

-- The edges negated, in descending order, for `sla_latency_bucket`.
CREATE FUNCTION sla_latency_edges_negated() RETURNS float8[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT array_agg(-e ORDER BY e DESC) FROM unnest(sla_latency_edges()) AS e $$;

-- Bucket b holds the latencies in (edge b, edge b + 1] (bucket 0 those up
-- to the first edge, the last those past the last one). Closed above, so
-- exactly 4 minutes counts below the edge, on the healthy side, as the
-- thresholds' bounds are inclusive there. width_bucket counts the edges
-- <= its operand; negated, it counts those >= the latency.
CREATE FUNCTION sla_latency_bucket(ms float8) RETURNS int
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN cardinality(sla_latency_edges()) - width_bucket(-ms, sla_latency_edges_negated());

-- Counts per bucket are stored from the lowest non-empty bucket to the
-- highest (the array's subscripts are the bucket numbers): an hour's
-- latencies fill a few of the 580 buckets. Adds two such arrays.
CREATE FUNCTION sla_buckets_add(a int8[], b int8[]) RETURNS int8[]
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$
DECLARE
    lo int;
    hi int;
    sum int8[];
BEGIN
    IF a IS NULL OR cardinality(a) = 0 THEN
        RETURN b;
    ELSIF b IS NULL OR cardinality(b) = 0 THEN
        RETURN a;
    END IF;
    lo := least(array_lower(a, 1), array_lower(b, 1));
    hi := greatest(array_upper(a, 1), array_upper(b, 1));
    sum := array_fill(0::int8, ARRAY[hi - lo + 1], ARRAY[lo]);
    FOR i IN lo..hi LOOP
        sum[i] := coalesce(a[i], 0) + coalesce(b[i], 0);
    END LOOP;
    RETURN sum;
END $$;

-- An array from (bucket, count) pairs, as `sla_buckets_add` takes them.
CREATE FUNCTION sla_buckets(buckets int[], counts int8[]) RETURNS int8[]
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$
DECLARE
    out int8[];
BEGIN
    IF buckets IS NULL OR cardinality(buckets) = 0 THEN
        RETURN NULL;
    END IF;
    out := array_fill(0::int8, ARRAY[max_b - min_b + 1], ARRAY[min_b])
        FROM (SELECT min(b) AS min_b, max(b) AS max_b FROM unnest(buckets) AS b) AS bounds;
    FOR i IN 1..cardinality(buckets) LOOP
        out[buckets[i]] := out[buckets[i]] + counts[i];
    END LOOP;
    RETURN out;
END $$;

CREATE TABLE sla_hourly (
    company_id         uuid        NOT NULL,
    provider           text        NOT NULL,
    -- date_trunc('hour', created_at) in UTC
    hour               timestamptz NOT NULL,
    total              int8        NOT NULL,
    successful         int8        NOT NULL,
    failed             int8        NOT NULL,
    -- finished (success or failed) with attempt_count > 1
    retried            int8        NOT NULL,
    retried_successful int8        NOT NULL,
    -- of the successful deliveries
    latency_sum_ms     float8      NOT NULL,
    -- successful deliveries per `sla_latency_bucket`; NULL: none
    latency_buckets    int8[],
    PRIMARY KEY (company_id, provider, hour)
);

-- Adds to the rollup the deliveries given as parallel arrays, each with
-- its sign (1 adds it, -1 takes it away): per hour, only the hours whose
-- figures moved, in key order so that concurrent statements lock the rows
-- in one order. The triggers below and the backfill call it.
CREATE FUNCTION sla_hourly_add(
    signs int[], companies uuid[], providers text[], created timestamptz[], statuses text[],
    attempts int[], delivered timestamptz[]
) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    INSERT INTO sla_hourly AS h
        (company_id, provider, hour, total, successful, failed, retried, retried_successful,
         latency_sum_ms, latency_buckets)
    SELECT company_id, provider, hour, sum(n),
           coalesce(sum(n) FILTER (WHERE status = 'success'), 0),
           coalesce(sum(n) FILTER (WHERE status = 'failed'), 0),
           coalesce(sum(n) FILTER (WHERE retried), 0),
           coalesce(sum(n) FILTER (WHERE retried AND status = 'success'), 0),
           coalesce(sum(ms) FILTER (WHERE status = 'success'), 0),
           sla_buckets(array_agg(bucket) FILTER (WHERE bucket IS NOT NULL AND n <> 0),
                       array_agg(n) FILTER (WHERE bucket IS NOT NULL AND n <> 0))
    FROM (
        SELECT company_id, provider, hour, status, retried, bucket, sum(sign) AS n,
               sum(sign * ms) AS ms
        FROM (
            SELECT d.sign, d.company_id, d.provider, date_trunc('hour', d.created_at, 'UTC') AS hour,
                   d.status, d.attempt_count > 1 AND d.status IN ('success', 'failed') AS retried,
                   l.ms, sla_latency_bucket(l.ms) AS bucket
            FROM unnest(signs, companies, providers, created, statuses, attempts, delivered)
                     AS d(sign, company_id, provider, created_at, status, attempt_count,
                          delivered_at),
                 LATERAL (SELECT CASE WHEN d.status = 'success' THEN
                                     extract(epoch FROM d.delivered_at - d.created_at)::float8
                                     * 1000 END AS ms) AS l
        ) AS share
        GROUP BY company_id, provider, hour, status, retried, bucket
    ) AS per_bucket
    GROUP BY company_id, provider, hour
    HAVING sum(n) <> 0 OR bool_or(n <> 0) OR coalesce(sum(ms), 0) <> 0
    ORDER BY company_id, provider, hour
    ON CONFLICT (company_id, provider, hour) DO UPDATE SET
        total = h.total + excluded.total,
        successful = h.successful + excluded.successful,
        failed = h.failed + excluded.failed,
        retried = h.retried + excluded.retried,
        retried_successful = h.retried_successful + excluded.retried_successful,
        latency_sum_ms = h.latency_sum_ms + excluded.latency_sum_ms,
        latency_buckets = sla_buckets_add(h.latency_buckets, excluded.latency_buckets);
END $$;

CREATE FUNCTION sla_hourly_inserted() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM sla_hourly_add(array_agg(1), array_agg(company_id), array_agg(provider),
                           array_agg(created_at), array_agg(status), array_agg(attempt_count),
                           array_agg(delivered_at))
    FROM new_rows
    HAVING count(*) > 0;
    RETURN NULL;
END $$;

-- Only the rows whose share changed: a claim (pending, one more attempt),
-- a lease renewal or a provider status that changes no outcome writes
-- nothing.
CREATE FUNCTION sla_hourly_updated() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM sla_hourly_add(array_agg(c.sign), array_agg(c.company_id), array_agg(c.provider),
                           array_agg(c.created_at), array_agg(c.status),
                           array_agg(c.attempt_count), array_agg(c.delivered_at))
    FROM new_rows n JOIN old_rows o USING (id),
         LATERAL (VALUES (1, n.company_id, n.provider, n.created_at, n.status, n.attempt_count,
                          n.delivered_at),
                         (-1, o.company_id, o.provider, o.created_at, o.status, o.attempt_count,
                          o.delivered_at))
             AS c(sign, company_id, provider, created_at, status, attempt_count, delivered_at)
    WHERE (n.company_id, n.provider, n.created_at, n.status,
           n.attempt_count > 1 AND n.status IN ('success', 'failed'),
           CASE WHEN n.status = 'success' THEN n.delivered_at END)
          IS DISTINCT FROM
          (o.company_id, o.provider, o.created_at, o.status,
           o.attempt_count > 1 AND o.status IN ('success', 'failed'),
           CASE WHEN o.status = 'success' THEN o.delivered_at END)
    HAVING count(*) > 0;
    RETURN NULL;
END $$;

-- Hours left without deliveries (retention deleted them) are removed.
CREATE FUNCTION sla_hourly_deleted() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM sla_hourly_add(array_agg(-1), array_agg(company_id), array_agg(provider),
                           array_agg(created_at), array_agg(status), array_agg(attempt_count),
                           array_agg(delivered_at))
    FROM old_rows
    HAVING count(*) > 0;
    DELETE FROM sla_hourly h
    USING (SELECT DISTINCT company_id, provider, date_trunc('hour', created_at, 'UTC') AS hour
           FROM old_rows) AS gone
    WHERE h.company_id = gone.company_id AND h.provider = gone.provider
      AND h.hour = gone.hour AND h.total = 0;
    RETURN NULL;
END $$;

CREATE FUNCTION sla_hourly_truncated() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    TRUNCATE sla_hourly;
    RETURN NULL;
END $$;

-- Transition tables allow one event per trigger.
CREATE TRIGGER sla_hourly_inserted AFTER INSERT ON impact_deliveries
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sla_hourly_inserted();
CREATE TRIGGER sla_hourly_updated AFTER UPDATE ON impact_deliveries
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sla_hourly_updated();
CREATE TRIGGER sla_hourly_deleted AFTER DELETE ON impact_deliveries
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sla_hourly_deleted();
CREATE TRIGGER sla_hourly_truncated AFTER TRUNCATE ON impact_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION sla_hourly_truncated();

-- The backfill, one company at a time (bounded arrays). CREATE TRIGGER
-- holds off writers until the migration commits, so every delivery is
-- counted once: by the backfill or by a trigger.
SELECT sla_hourly_add(array_agg(1), array_agg(company_id), array_agg(provider),
                      array_agg(created_at), array_agg(status), array_agg(attempt_count),
                      array_agg(delivered_at))
FROM impact_deliveries
GROUP BY company_id;
