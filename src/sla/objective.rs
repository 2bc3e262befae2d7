//! The objectives and how figures are judged against them: each metric gets
//! a status, the worst wins, and every metric out of bounds is named with
//! its value and the threshold it crossed (docs/sla.md).

use serde::Serialize;

use crate::ids::ScheduleId;

/// Healthy, warning or breach; ordered, so the worst of several is `max`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    sqlx::Type,
    strum::IntoStaticStr,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum SlaStatus {
    Healthy,
    Warning,
    Breach,
}

impl SlaStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The Prometheus gauge's value: 0, 1, 2.
    pub fn level(self) -> i64 {
        self as i64
    }
}

/// What is judged; the wire names are the figures' field names.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    sqlx::Type,
    strum::IntoStaticStr,
    strum::EnumString,
    utoipa::ToSchema,
)]
#[serde(rename_all = "camelCase")]
#[sqlx(type_name = "text", rename_all = "camelCase")]
#[strum(serialize_all = "camelCase")]
pub enum Metric {
    SuccessRate,
    #[serde(rename = "p95DeliveryLatencyMs")]
    #[sqlx(rename = "p95DeliveryLatencyMs")]
    #[strum(serialize = "p95DeliveryLatencyMs")]
    P95DeliveryLatencyMs,
    RetrySuccessRate,
    ConsecutiveFailures,
    /// How fast the success objective's error budget burns (the monitor's
    /// multiwindow alert; not part of the routes' status).
    ErrorBudgetBurnRate,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Two bounds: at or past `healthy` is healthy, at or past `warning` is a
/// warning, beyond is a breach. Which way "past" points depends on the
/// metric (rates: higher is better; latency: lower is better).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub healthy: f64,
    pub warning: f64,
}

/// The thresholds (`SLA_*` variables; defaults are seed 004's promise made
/// consistent: its warning bounds sat below its critical ones).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub success_rate: Bounds,
    pub p95_latency_ms: Bounds,
    pub retry_success_rate: Bounds,
    /// A current run this long or longer is a breach.
    pub consecutive_failures: i64,
    /// Fewer samples than this and a metric cannot breach on its own: it
    /// is shown as a warning at worst (one failure on a quiet day is not
    /// an SLA breach).
    pub min_samples: i64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            success_rate: Bounds {
                healthy: 0.98,
                warning: 0.95,
            },
            p95_latency_ms: Bounds {
                healthy: 240_000.0,
                warning: 300_000.0,
            },
            retry_success_rate: Bounds {
                healthy: 0.90,
                warning: 0.85,
            },
            consecutive_failures: 3,
            min_samples: 20,
        }
    }
}

/// One metric out of bounds.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Breach {
    pub metric: Metric,
    pub status: SlaStatus,
    pub value: f64,
    /// The bound crossed: the healthy one for a warning, the warning one
    /// for a breach.
    pub threshold: f64,
    /// The deliveries the value is computed over.
    pub samples: i64,
    /// True when the value is past the breach bound but the samples are
    /// fewer than `SLA_MIN_SAMPLES`, so the status is `warning`.
    pub capped: bool,
    /// For `consecutiveFailures` of one export schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<ScheduleId>,
}

/// The result of judging one set of figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub status: SlaStatus,
    pub breaches: Vec<Breach>,
    /// Metrics computed over fewer than `SLA_MIN_SAMPLES` deliveries.
    pub low_samples: Vec<Metric>,
}

/// Which way a metric improves.
#[derive(Clone, Copy)]
enum Better {
    Higher,
    Lower,
}

impl Bounds {
    fn status(self, value: f64, better: Better) -> (SlaStatus, f64) {
        let within = |bound: f64| match better {
            Better::Higher => value >= bound,
            Better::Lower => value <= bound,
        };
        if within(self.healthy) {
            (SlaStatus::Healthy, self.healthy)
        } else if within(self.warning) {
            (SlaStatus::Warning, self.healthy)
        } else {
            (SlaStatus::Breach, self.warning)
        }
    }
}

/// The raw figures a status is judged on, exact (not the rounded ones the
/// routes show).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Judged {
    pub finished: i64,
    pub successful: i64,
    pub retried: i64,
    pub retried_successful: i64,
    pub p95_latency_ms: Option<f64>,
    pub consecutive_failures: i64,
}

impl Thresholds {
    /// A schedule's own run of failed firings (kept by the queue on the
    /// schedule), a breach at the same length as a platform's.
    pub fn schedule_breach(&self, schedule: ScheduleId, run: i64) -> Option<Breach> {
        (run >= self.consecutive_failures).then_some(Breach {
            metric: Metric::ConsecutiveFailures,
            status: SlaStatus::Breach,
            value: run as f64,
            threshold: self.consecutive_failures as f64,
            samples: run,
            capped: false,
            schedule_id: Some(schedule),
        })
    }

    pub fn assess(&self, figures: &Judged) -> Assessment {
        let mut breaches = Vec::new();
        let mut low_samples = Vec::new();
        let mut judge = |metric: Metric, value: f64, samples: i64, status: (SlaStatus, f64)| {
            let low = samples < self.min_samples;
            if low {
                low_samples.push(metric);
            }
            let (status, threshold) = status;
            if status == SlaStatus::Healthy {
                return;
            }
            let capped = low && status == SlaStatus::Breach;
            breaches.push(Breach {
                metric,
                status: if capped { SlaStatus::Warning } else { status },
                value,
                threshold,
                samples,
                capped,
                schedule_id: None,
            });
        };
        if figures.finished > 0 {
            let rate = figures.successful as f64 / figures.finished as f64;
            judge(
                Metric::SuccessRate,
                rate,
                figures.finished,
                self.success_rate.status(rate, Better::Higher),
            );
        }
        if let Some(p95) = figures.p95_latency_ms {
            judge(
                Metric::P95DeliveryLatencyMs,
                p95,
                figures.successful,
                self.p95_latency_ms.status(p95, Better::Lower),
            );
        }
        if figures.retried > 0 {
            let rate = figures.retried_successful as f64 / figures.retried as f64;
            judge(
                Metric::RetrySuccessRate,
                rate,
                figures.retried,
                self.retry_success_rate.status(rate, Better::Higher),
            );
        }
        // A run of failures is its own evidence: three in a row is a breach
        // however quiet the day.
        if figures.consecutive_failures >= self.consecutive_failures {
            breaches.push(Breach {
                metric: Metric::ConsecutiveFailures,
                status: SlaStatus::Breach,
                value: figures.consecutive_failures as f64,
                threshold: self.consecutive_failures as f64,
                samples: figures.consecutive_failures,
                capped: false,
                schedule_id: None,
            });
        }
        Assessment {
            status: breaches
                .iter()
                .map(|breach| breach.status)
                .max()
                .unwrap_or(SlaStatus::Healthy),
            breaches,
            low_samples,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(finished: i64, successful: i64) -> Judged {
        Judged {
            finished,
            successful,
            ..Judged::default()
        }
    }

    fn status_of(figures: Judged) -> SlaStatus {
        Thresholds::default().assess(&figures).status
    }

    #[test]
    fn success_rate_boundaries_are_inclusive() {
        assert_eq!(status_of(judged(100, 98)), SlaStatus::Healthy);
        assert_eq!(status_of(judged(50, 49)), SlaStatus::Healthy);
        assert_eq!(status_of(judged(100, 97)), SlaStatus::Warning);
        assert_eq!(status_of(judged(100, 95)), SlaStatus::Warning);
        assert_eq!(status_of(judged(20, 19)), SlaStatus::Warning);
        assert_eq!(status_of(judged(100, 94)), SlaStatus::Breach);
        // The seed's own example: 139 of 142 is 97.89 %, not healthy.
        assert_eq!(status_of(judged(142, 139)), SlaStatus::Warning);
    }

    #[test]
    fn latency_boundaries_are_inclusive() {
        let at = |ms: f64| Judged {
            p95_latency_ms: Some(ms),
            ..judged(100, 100)
        };
        assert_eq!(status_of(at(240_000.0)), SlaStatus::Healthy);
        assert_eq!(status_of(at(240_000.5)), SlaStatus::Warning);
        assert_eq!(status_of(at(300_000.0)), SlaStatus::Warning);
        assert_eq!(status_of(at(300_001.0)), SlaStatus::Breach);
    }

    #[test]
    fn breaches_name_value_and_the_bound_crossed() {
        let assessment = Thresholds::default().assess(&Judged {
            retried: 20,
            retried_successful: 17,
            consecutive_failures: 3,
            ..judged(100, 96)
        });
        assert_eq!(assessment.status, SlaStatus::Breach);
        let found: Vec<_> = assessment
            .breaches
            .iter()
            .map(|b| (b.metric, b.status, b.value, b.threshold))
            .collect();
        assert_eq!(
            found,
            [
                (Metric::SuccessRate, SlaStatus::Warning, 0.96, 0.98),
                (Metric::RetrySuccessRate, SlaStatus::Warning, 0.85, 0.90),
                (Metric::ConsecutiveFailures, SlaStatus::Breach, 3.0, 3.0),
            ]
        );
    }

    #[test]
    fn too_few_samples_cannot_breach_on_their_own() {
        let assessment = Thresholds::default().assess(&judged(19, 1));
        assert_eq!(assessment.status, SlaStatus::Warning);
        assert!(assessment.breaches[0].capped);
        assert_eq!(assessment.low_samples, [Metric::SuccessRate]);
        // Twenty is enough.
        assert_eq!(status_of(judged(20, 1)), SlaStatus::Breach);
        // A run of failures still breaches.
        let run = Judged {
            consecutive_failures: 3,
            ..judged(3, 0)
        };
        assert_eq!(status_of(run), SlaStatus::Breach);
    }

    #[test]
    fn nothing_finished_is_healthy_with_nothing_to_say() {
        let assessment = Thresholds::default().assess(&Judged::default());
        assert_eq!(assessment.status, SlaStatus::Healthy);
        assert!(assessment.breaches.is_empty());
        assert!(assessment.low_samples.is_empty());
    }
}
