//! The `sla_hourly` rollup (migration 20261210000003): kept equal to the
//! raw aggregate through every change the service makes to the log, and
//! read by the SLA routes with a p95 within the documented error bound.

use std::sync::Arc;

use impact_in::clock::ManualClock;
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::{ADMIN, TestApp, config, token};

/// Rollup rows that differ from the raw aggregate of the log grouped by
/// hour, counts, latency sum and every histogram bucket.
async fn mismatches(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "WITH raw AS (
             SELECT company_id, provider, date_trunc('hour', created_at, 'UTC') AS hour,
                    count(*) AS total,
                    count(*) FILTER (WHERE status = 'success') AS successful,
                    count(*) FILTER (WHERE status = 'failed') AS failed,
                    count(*) FILTER (WHERE attempt_count > 1
                                     AND status IN ('success', 'failed')) AS retried,
                    count(*) FILTER (WHERE attempt_count > 1 AND status = 'success')
                        AS retried_successful,
                    coalesce(sum(extract(epoch FROM delivered_at - created_at)::float8 * 1000)
                             FILTER (WHERE status = 'success'), 0) AS latency_sum_ms
             FROM impact_deliveries GROUP BY 1, 2, 3
         ), raw_buckets AS (
             SELECT company_id, provider, date_trunc('hour', created_at, 'UTC') AS hour,
                    sla_latency_bucket(extract(epoch FROM delivered_at - created_at)::float8
                                       * 1000) AS bucket,
                    count(*) AS n
             FROM impact_deliveries WHERE status = 'success' GROUP BY 1, 2, 3, 4
         ), rollup_buckets AS (
             SELECT company_id, provider, hour, bucket, latency_buckets[bucket] AS n
             FROM sla_hourly, generate_subscripts(latency_buckets, 1) AS bucket
             WHERE latency_buckets[bucket] <> 0
         )
         SELECT (SELECT count(*) FROM raw FULL JOIN sla_hourly h
                     USING (company_id, provider, hour)
                 WHERE (raw.total, raw.successful, raw.failed, raw.retried,
                        raw.retried_successful)
                       IS DISTINCT FROM
                       (h.total, h.successful, h.failed, h.retried, h.retried_successful)
                    OR abs(raw.latency_sum_ms - h.latency_sum_ms) > 0.001)
              + (SELECT count(*) FROM raw_buckets r FULL JOIN rollup_buckets b
                     USING (company_id, provider, hour, bucket)
                 WHERE r.n IS DISTINCT FROM b.n)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn execute(pool: &PgPool, sql: &'static str) -> u64 {
    sqlx::query(sql)
        .execute(pool)
        .await
        .unwrap()
        .rows_affected()
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn the_rollup_follows_every_change_to_the_log(pool: PgPool) {
    // 600 deliveries of two companies over ten hours, every fifth still
    // pending, a third retried, latencies from 0 to 6 minutes.
    execute(
        &pool,
        "INSERT INTO impact_deliveries
             (id, company_id, provider, delivery_id, payload, payload_hash, status,
              attempt_count, created_at, delivered_at)
         SELECT gen_random_uuid(),
                (ARRAY['00000000-0000-0000-0000-00000000000a',
                       '00000000-0000-0000-0000-00000000000b']::uuid[])[1 + i % 2],
                (ARRAY['benevity', 'goodera', 'workday'])[1 + i % 3], gen_random_uuid(),
                '{}', 'seeded', s, CASE WHEN s = 'pending' THEN 0 ELSE 1 + i % 3 / 2 END,
                t, CASE WHEN s = 'success' THEN t + make_interval(secs => i % 361) END
         FROM generate_series(1, 600) AS i,
              LATERAL (SELECT (ARRAY['pending', 'success', 'success', 'failed', 'success'])
                                  [1 + i % 5] AS s,
                              '2026-12-09T02:00:00Z'::timestamptz
                                  + make_interval(secs => i * 60) AS t) AS row",
    )
    .await;
    assert_eq!(mismatches(&pool).await, 0, "after the inserts");

    // A claim, as the queue's: one more attempt, leased.
    let claimed = execute(
        &pool,
        "UPDATE impact_deliveries SET attempt_count = attempt_count + 1, locked_by = 'w',
             locked_until = now() + interval '2 minutes'
         WHERE status = 'pending'",
    )
    .await;
    assert!(claimed > 0);
    // The outcomes: half the pending ones succeed, the rest fail.
    execute(
        &pool,
        "UPDATE impact_deliveries
         SET status = CASE WHEN payload_hash < md5(id::text) THEN 'success' ELSE 'failed' END,
             delivered_at = CASE WHEN payload_hash < md5(id::text)
                                 THEN created_at + interval '250 seconds' END,
             locked_by = NULL
         WHERE status = 'pending'",
    )
    .await;
    assert_eq!(mismatches(&pool).await, 0, "after the outcomes");

    // A failed one replayed to success: retrying, then delivered.
    let replayed: Uuid = sqlx::query_scalar(
        "UPDATE impact_deliveries SET status = 'retrying', attempt_count = attempt_count + 1
         WHERE id = (SELECT id FROM impact_deliveries WHERE status = 'failed'
                     ORDER BY created_at LIMIT 1)
         RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE impact_deliveries SET status = 'success',
             delivered_at = created_at + interval '3 hours'
         WHERE id = $1",
    )
    .bind(replayed)
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(mismatches(&pool).await, 0, "after the replay");

    // An update of nothing the rollup counts writes nothing to it.
    let before: Vec<(String,)> =
        sqlx::query_as("SELECT xmin::text FROM sla_hourly ORDER BY company_id, provider, hour")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(execute(&pool, "UPDATE impact_deliveries SET locked_by = 'someone'").await > 0);
    let after: Vec<(String,)> =
        sqlx::query_as("SELECT xmin::text FROM sla_hourly ORDER BY company_id, provider, hour")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(before, after, "a locked_by update rewrote rollup rows");

    // Retention deletes the oldest; hours left empty leave the rollup.
    execute(
        &pool,
        "DELETE FROM impact_deliveries WHERE created_at < '2026-12-09T05:00:00Z'",
    )
    .await;
    assert_eq!(mismatches(&pool).await, 0, "after the deletes");
    let early: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sla_hourly WHERE hour < '2026-12-09T05:00:00Z'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(early, 0);
}

#[sqlx::test(migrator = "impact_in::db::MIGRATOR")]
async fn a_large_p95_comes_from_the_histogram_within_its_bound(pool: PgPool) {
    let company = Uuid::new_v4();
    // 5,000 successes from 0.5 s to ~6 min (spread unevenly, with a long
    // tail), 18 seconds apart, plus 200 failures: one of the period's
    // ends falls inside an hour, so both sources are read.
    sqlx::query(
        "INSERT INTO impact_deliveries
             (id, company_id, provider, delivery_id, payload, payload_hash, status,
              attempt_count, created_at, delivered_at)
         SELECT gen_random_uuid(), $1, 'benevity', gen_random_uuid(), '{}', 'seeded',
                CASE WHEN i % 26 = 0 THEN 'failed' ELSE 'success' END, 1, t,
                CASE WHEN i % 26 <> 0
                     THEN t + make_interval(secs => 0.5 + 360 * ((i * 7919) % 5200 / 5200.0) ^ 3)
                END
         FROM generate_series(1, 5200) AS i,
              LATERAL (SELECT '2026-12-08T00:00:00Z'::timestamptz
                              + make_interval(secs => i * 18) AS t) AS row",
    )
    .bind(company)
    .execute(&pool)
    .await
    .unwrap();
    let (start, end) = ("2026-12-08T00:00:00Z", "2026-12-09T01:10:00Z");
    let (successes, exact, avg): (i64, f64, f64) = sqlx::query_as(
        "SELECT count(*), percentile_cont(0.95) WITHIN GROUP (ORDER BY ms), avg(ms)
         FROM (SELECT extract(epoch FROM delivered_at - created_at)::float8 * 1000 AS ms
               FROM impact_deliveries
               WHERE status = 'success' AND created_at >= $1::timestamptz
                 AND created_at < $2::timestamptz) AS s",
    )
    .bind(start)
    .bind(end)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(successes > 2_000, "{successes} successes: the exact path");

    let clock = Arc::new(ManualClock::new("2026-12-09T12:00:00Z".parse().unwrap()));
    let app = TestApp::start_with_clock(pool, config(&[]), clock).await;
    let response = app
        .get(
            &format!("/v1/impact-in/sla-status?startDate={start}&endDate={end}"),
            Some(&token(&[company], &[ADMIN])),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let benevity = &response.body["byPlatform"][0];
    assert_eq!(benevity["platform"], "benevity");
    assert_eq!(benevity["successfulDeliveries"], successes);
    let p95 = benevity["p95DeliveryLatencyMs"].as_f64().unwrap();
    // docs/sla.md: within the bucket width, 1.25^(1/5) - 1 of the value.
    let bound = exact * (1.25f64.powf(0.2) - 1.0);
    assert!(
        (p95 - exact).abs() <= bound,
        "p95 {p95} against exactly {exact} (bound {bound})"
    );
    let reported_avg = benevity["avgDeliveryLatencyMs"].as_f64().unwrap();
    assert!(
        (reported_avg - avg).abs() < 0.01,
        "{reported_avg} against {avg}"
    );
    assert_eq!(
        response.body["overall"]["p95DeliveryLatencyMs"],
        benevity["p95DeliveryLatencyMs"]
    );
}
