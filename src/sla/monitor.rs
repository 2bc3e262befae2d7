//! The SLA monitor's evaluation: every company and platform judged over the
//! rolling window (fixed thresholds) and over the burn-rate windows of the
//! success objective, compared with the alerts open in Postgres, and each
//! change of state written with the notifications it calls for, in one
//! transaction that only one replica runs at a time (docs/sla.md).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool, Postgres, Transaction};

use super::{
    MonitorContext,
    figures::{Counts, aggregates},
    notify::{self, Transition},
    objective::{Breach, Metric, SlaStatus, Thresholds},
};
use crate::{ids::CompanyId, provider::Provider};

/// Held for the evaluation's transaction: a second replica skips its turn.
const EVALUATION_LOCK: i64 = 0x051a_e7a1;

/// The burn-rate windows (Google SRE workbook, table 5-8): a fast burn
/// pages when both its long and short window burn at the rate; a slow burn
/// opens a ticket (Slack).
#[derive(Debug, Clone, Copy)]
pub struct BurnRule {
    pub long: chrono::Duration,
    pub short: chrono::Duration,
    pub rate: f64,
    pub status: SlaStatus,
}

pub fn burn_rules() -> [BurnRule; 3] {
    [
        BurnRule {
            long: chrono::Duration::hours(1),
            short: chrono::Duration::minutes(5),
            rate: 14.4,
            status: SlaStatus::Breach,
        },
        BurnRule {
            long: chrono::Duration::hours(6),
            short: chrono::Duration::minutes(30),
            rate: 6.0,
            status: SlaStatus::Breach,
        },
        BurnRule {
            long: chrono::Duration::days(3),
            short: chrono::Duration::hours(6),
            rate: 1.0,
            status: SlaStatus::Warning,
        },
    ]
}

/// Finished deliveries and failed ones in one burn window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    pub finished: i64,
    pub failed: i64,
}

impl Window {
    /// How many times faster than allowed the error budget burns: the
    /// error rate over the budget (1 − objective). Nothing finished: 0.
    pub fn burn_rate(self, objective: f64) -> f64 {
        if self.finished == 0 {
            return 0.0;
        }
        (self.failed as f64 / self.finished as f64) / (1.0 - objective)
    }
}

/// The burn-rate alert of one company and platform: the first rule that
/// fires (pages before tickets), judged on windows of finished deliveries
/// (`windows[i]` = (long, short) of `burn_rules()[i]`). A long window with
/// fewer than `min_samples` deliveries cannot fire: one failure on a quiet
/// day is a 100 % error rate, not an outage (three in a row still breach
/// through `consecutiveFailures`).
pub fn burn_alert(windows: &[(Window, Window); 3], thresholds: &Thresholds) -> Option<Breach> {
    let objective = thresholds.success_rate.healthy;
    burn_rules()
        .iter()
        .zip(windows)
        .find_map(|(rule, (long, short))| {
            let rate = long.burn_rate(objective);
            (long.finished >= thresholds.min_samples
                && rate >= rule.rate
                && short.burn_rate(objective) >= rule.rate)
                .then_some(Breach {
                    metric: Metric::ErrorBudgetBurnRate,
                    status: rule.status,
                    value: (rate * 100.0).round() / 100.0,
                    threshold: rule.rate,
                    samples: long.finished,
                    capped: false,
                    schedule_id: None,
                })
        })
}

/// One company and platform as the evaluation query sees them.
#[derive(FromRow)]
struct Row {
    company_id: CompanyId,
    provider: Provider,
    #[sqlx(flatten)]
    counts: Counts,
    run: i64,
    schedule_run: i64,
    n_5m: i64,
    bad_5m: i64,
    n_30m: i64,
    bad_30m: i64,
    n_1h: i64,
    bad_1h: i64,
    n_6h: i64,
    bad_6h: i64,
    n_3d: i64,
    bad_3d: i64,
}

impl Row {
    fn windows(&self) -> [(Window, Window); 3] {
        let w = |finished, failed| Window { finished, failed };
        [
            (w(self.n_1h, self.bad_1h), w(self.n_5m, self.bad_5m)),
            (w(self.n_6h, self.bad_6h), w(self.n_30m, self.bad_30m)),
            (w(self.n_3d, self.bad_3d), w(self.n_6h, self.bad_6h)),
        ]
    }

    /// Every metric out of bounds, one per metric.
    fn breaches(&self, thresholds: &Thresholds) -> Vec<Breach> {
        let run = self.run.max(self.schedule_run);
        let mut breaches = thresholds.assess(&self.counts.judged(run)).breaches;
        breaches.extend(burn_alert(&self.windows(), thresholds));
        breaches
    }
}

/// A key of `sla_alerts`.
type AlertKey = (CompanyId, Provider, Metric);

#[derive(Debug, Clone, FromRow)]
struct OpenAlert {
    company_id: CompanyId,
    provider: Provider,
    metric: String,
    status: SlaStatus,
}

/// What one evaluation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// False when another replica held the evaluation.
    pub ran: bool,
    pub companies: usize,
    /// State changes, each with the notifications it queued.
    pub transitions: usize,
}

/// Judges every company and platform with deliveries finished in the last
/// three days (or the window, if longer) or with an open alert, as of
/// `now`, and records what changed.
pub async fn evaluate(ctx: &MonitorContext, now: DateTime<Utc>) -> Result<Evaluation, sqlx::Error> {
    let mut tx = ctx.db.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(EVALUATION_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        tx.rollback().await?;
        return Ok(Evaluation::default());
    }
    let rows = figures(&mut tx, &ctx.config.window, now).await?;
    let open: Vec<OpenAlert> =
        sqlx::query_as("SELECT company_id, provider, metric, status FROM sla_alerts FOR UPDATE")
            .fetch_all(&mut *tx)
            .await?;

    let thresholds = &ctx.config.thresholds;
    let mut wanted: BTreeMap<AlertKey, Breach> = BTreeMap::new();
    let mut companies = BTreeSet::new();
    for row in &rows {
        companies.insert(row.company_id);
        for breach in row.breaches(thresholds) {
            wanted.insert((row.company_id, row.provider, breach.metric), breach);
        }
    }
    let was: BTreeMap<AlertKey, SlaStatus> = open
        .into_iter()
        .filter_map(|alert| {
            let metric = alert.metric.parse().ok()?;
            Some(((alert.company_id, alert.provider, metric), alert.status))
        })
        .collect();

    let mut transitions = 0;
    let keys: BTreeSet<AlertKey> = wanted.keys().chain(was.keys()).copied().collect();
    for key in keys {
        let before = was.get(&key).copied().unwrap_or(SlaStatus::Healthy);
        let breach = wanted.get(&key);
        let after = breach.map_or(SlaStatus::Healthy, |breach| breach.status);
        if before == after {
            if let Some(breach) = breach {
                record(&mut tx, key, breach, now, false).await?;
            }
            continue;
        }
        transitions += 1;
        match breach {
            Some(breach) => record(&mut tx, key, breach, now, before == SlaStatus::Healthy).await?,
            None => {
                sqlx::query(
                    "DELETE FROM sla_alerts WHERE company_id = $1 AND provider = $2 AND metric = $3",
                )
                .bind(key.0)
                .bind(key.1)
                .bind(key.2.as_str())
                .execute(&mut *tx)
                .await?;
            }
        }
        let transition = Transition {
            company: key.0,
            provider: key.1,
            metric: key.2,
            before,
            after,
            breach: breach.cloned(),
            window: window_of(breach, ctx.config.window),
        };
        notify::enqueue(&mut tx, &ctx.config, &transition, now).await?;
        tracing::info!(
            company_id = %key.0,
            provider = key.1.as_str(),
            metric = key.2.as_str(),
            from = before.as_str(),
            to = after.as_str(),
            "SLA alert state changed"
        );
    }
    platform_status(&mut tx, &rows, thresholds, now).await?;
    tx.commit().await?;
    Ok(Evaluation {
        ran: true,
        companies: companies.len(),
        transitions,
    })
}

/// The window a breach was judged over, for its messages: a burn-rate
/// alert's long window, else the monitor's.
fn window_of(breach: Option<&Breach>, window: std::time::Duration) -> std::time::Duration {
    breach
        .filter(|breach| breach.metric == Metric::ErrorBudgetBurnRate)
        .and_then(|breach| {
            burn_rules()
                .into_iter()
                .find(|rule| rule.rate == breach.threshold)
        })
        .and_then(|rule| rule.long.to_std().ok())
        .unwrap_or(window)
}

/// Upserts an open alert; `opened` restarts its `opened_at`.
async fn record(
    tx: &mut Transaction<'_, Postgres>,
    (company, provider, metric): AlertKey,
    breach: &Breach,
    now: DateTime<Utc>,
    opened: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sla_alerts
             (company_id, provider, metric, status, value, threshold, opened_at, changed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
         ON CONFLICT (company_id, provider, metric) DO UPDATE SET
             value = excluded.value, threshold = excluded.threshold,
             changed_at = CASE WHEN sla_alerts.status = excluded.status
                               THEN sla_alerts.changed_at ELSE excluded.changed_at END,
             status = excluded.status,
             opened_at = CASE WHEN $8 THEN excluded.opened_at ELSE sla_alerts.opened_at END",
    )
    .bind(company)
    .bind(provider)
    .bind(metric.as_str())
    .bind(breach.status)
    .bind(breach.value)
    .bind(breach.threshold)
    .bind(now)
    .bind(opened)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One scan of the deliveries finished in the longest window, through the
/// partial index on `updated_at` of finished deliveries: the window's
/// figures, the burn windows' counts and the current run of failures
/// (in creation order, as the routes count it).
async fn figures(
    tx: &mut Transaction<'_, Postgres>,
    window: &std::time::Duration,
    now: DateTime<Utc>,
) -> Result<Vec<Row>, sqlx::Error> {
    let window = chrono::Duration::from_std(*window).unwrap_or(chrono::Duration::hours(24));
    let since = (now - window).min(now - chrono::Duration::days(3));
    let counts = |interval: &str, name: &str| {
        format!(
            "count(*) FILTER (WHERE updated_at > $1 - interval '{interval}') AS n_{name},
             count(*) FILTER (WHERE updated_at > $1 - interval '{interval}'
                              AND status = 'failed') AS bad_{name}"
        )
    };
    let sql = format!(
        "SELECT d.company_id, d.provider, {aggregates},
                count(*) FILTER (WHERE status = 'failed'
                                 AND created_at > coalesce(last_success, '-infinity'))
                    AS run,
                coalesce(max(s.run), 0)::int8 AS schedule_run,
                {m5}, {m30}, {h1}, {h6}, {d3}
         FROM (SELECT company_id, provider, status, attempt_count, created_at,
                      delivered_at, updated_at,
                      max(created_at) FILTER (WHERE status = 'success')
                          OVER (PARTITION BY company_id, provider) AS last_success
               FROM impact_deliveries
               WHERE status IN ('success', 'failed')
                 AND updated_at > $3 AND updated_at <= $1) AS d
         LEFT JOIN (SELECT company_id, platform AS provider,
                           max(consecutive_failures) AS run
                    FROM scheduled_deliveries WHERE consecutive_failures > 0
                    GROUP BY 1, 2) AS s
                ON s.company_id = d.company_id AND s.provider = d.provider
         GROUP BY d.company_id, d.provider",
        aggregates = aggregates("updated_at > $2"),
        m5 = counts("5 minutes", "5m"),
        m30 = counts("30 minutes", "30m"),
        h1 = counts("1 hour", "1h"),
        h6 = counts("6 hours", "6h"),
        d3 = counts("3 days", "3d"),
    );
    // Built from constants only.
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(now - window)
        .bind(since)
        .fetch_all(&mut **tx)
        .await
}

/// Per platform across companies, for the gauges: the worst company's
/// status, how many companies breach, and the window's success rate.
async fn platform_status(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[Row],
    thresholds: &Thresholds,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    for provider in Provider::ALL {
        let mut status = SlaStatus::Healthy;
        let (mut breaching, mut successful, mut finished) = (0, 0, 0);
        for row in rows.iter().filter(|row| row.provider == provider) {
            let worst = row
                .breaches(thresholds)
                .iter()
                .map(|breach| breach.status)
                .max()
                .unwrap_or(SlaStatus::Healthy);
            status = status.max(worst);
            breaching += i32::from(worst == SlaStatus::Breach);
            successful += row.counts.successful;
            finished += row.counts.successful + row.counts.failed;
        }
        let rate = (finished > 0).then(|| successful as f64 / finished as f64);
        sqlx::query(
            "INSERT INTO sla_platform_status
                 (provider, status, success_rate, breaching_companies, evaluated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (provider) DO UPDATE SET
                 status = excluded.status, success_rate = excluded.success_rate,
                 breaching_companies = excluded.breaching_companies,
                 evaluated_at = excluded.evaluated_at",
        )
        .bind(provider)
        .bind(status)
        .bind(rate)
        .bind(breaching)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The gauges' source: the last evaluation per platform.
#[derive(Debug, Clone, FromRow)]
pub struct PlatformStatus {
    pub provider: Provider,
    pub status: SlaStatus,
    pub success_rate: Option<f64>,
    pub breaching_companies: i32,
}

pub async fn platform_statuses(db: &PgPool) -> Result<Vec<PlatformStatus>, sqlx::Error> {
    sqlx::query_as(
        "SELECT provider, status, success_rate, breaching_companies FROM sla_platform_status",
    )
    .fetch_all(db)
    .await
}

/// Queued notifications not yet accepted, per channel (abandoned ones
/// excluded): what a receiver outage leaves behind.
pub async fn pending_notifications(db: &PgPool) -> Result<Vec<(&'static str, i64)>, sqlx::Error> {
    let (pagerduty, slack): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE channel = 'pagerduty'),
                count(*) FILTER (WHERE channel = 'slack')
         FROM sla_notifications WHERE sent_at IS NULL AND abandoned_at IS NULL",
    )
    .fetch_one(db)
    .await?;
    Ok(vec![("pagerduty", pagerduty), ("slack", slack)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(finished: i64, failed: i64) -> Window {
        Window { finished, failed }
    }

    #[test]
    fn burn_rate_is_the_error_rate_over_the_budget() {
        assert_eq!(w(0, 0).burn_rate(0.98), 0.0);
        assert!((w(100, 2).burn_rate(0.98) - 1.0).abs() < 1e-9);
        assert!((w(100, 100).burn_rate(0.98) - 50.0).abs() < 1e-9);
    }

    #[test]
    fn a_sudden_outage_pages_and_a_lone_failure_does_not() {
        let thresholds = Thresholds::default();
        let quiet = w(100, 0);
        // An outage for the last five minutes of a busy hour: 30 of 200 in
        // the hour (burn 7.5)… not yet; 60 of 200 (burn 15) with the last
        // five minutes all failing: page.
        let outage = [(w(200, 60), w(40, 40)), (quiet, quiet), (quiet, quiet)];
        let page = burn_alert(&outage, &thresholds).unwrap();
        assert_eq!(
            (page.status, page.threshold, page.value),
            (SlaStatus::Breach, 14.4, 15.0)
        );
        let early = [(w(200, 30), w(40, 30)), (quiet, quiet), (quiet, quiet)];
        assert_eq!(burn_alert(&early, &thresholds), None);
        // Over: the short window is clean again.
        let over = [(w(200, 60), w(40, 0)), (quiet, quiet), (quiet, quiet)];
        assert_eq!(burn_alert(&over, &thresholds), None);
        // One failure, the only delivery of the day.
        let lone = [(w(1, 1), w(1, 1)), (w(1, 1), w(1, 1)), (w(1, 1), w(1, 1))];
        assert_eq!(burn_alert(&lone, &thresholds), None);
    }

    #[test]
    fn a_burn_rate_alert_names_its_long_window() {
        let day = std::time::Duration::from_secs(24 * 3600);
        let thresholds = Thresholds::default();
        let calm = w(100, 0);
        let slow = [
            (calm, calm),
            (w(200, 6), w(40, 2)),
            (w(2400, 72), w(200, 6)),
        ];
        let ticket = burn_alert(&slow, &thresholds).unwrap();
        assert_eq!(window_of(Some(&ticket), day).as_secs(), 3 * 24 * 3600);
        let outage = [(w(200, 60), w(40, 40)), (calm, calm), (calm, calm)];
        let page = burn_alert(&outage, &thresholds).unwrap();
        assert_eq!(window_of(Some(&page), day).as_secs(), 3600);
        assert_eq!(window_of(None, day), day);
    }

    #[test]
    fn a_slow_burn_opens_a_ticket_not_a_page() {
        let thresholds = Thresholds::default();
        let calm = w(100, 0);
        // 3 % failing for days: burn 1.5 over 3 days and over 6 hours.
        let slow = [
            (calm, calm),
            (w(200, 6), w(40, 2)),
            (w(2400, 72), w(200, 6)),
        ];
        let ticket = burn_alert(&slow, &thresholds).unwrap();
        assert_eq!((ticket.status, ticket.threshold), (SlaStatus::Warning, 1.0));
        // The 6 h burn of 6 with its 30 min window: page.
        let medium = [
            (calm, calm),
            (w(200, 25), w(40, 5)),
            (w(2400, 72), w(200, 25)),
        ];
        assert_eq!(
            burn_alert(&medium, &thresholds).unwrap().status,
            SlaStatus::Breach
        );
    }
}
