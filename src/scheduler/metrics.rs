//! Outcome scores, SROI and VIS of a scheduled report, from the impact
//! platform (`IMPACT_METRICS_URL`; the contract is docs/connectors.md,
//! "Impact metrics (pull)"). They are not computed from ingested records:
//! the platform owns them.
//!
//! A 404 means the platform has none for the company and period, and the
//! report leaves them out. Any other failure is an error: the firing does
//! not happen and its due time is tried again (`fire`), because a report
//! sent without metrics that it should have had is another payload, which
//! the 24-hour duplicate check would not recognise as the same report.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::{
    config::MetricsConfig,
    connectors::{ConnectorError, Outbound},
    report::ImpactReport,
};

/// The highest VIS the platform gives (a score out of 100).
const MAX_VIS: f64 = 100.0;

/// The platform's metrics endpoint, over the service's shared outbound
/// client (bounded bodies, no redirects, its timeouts).
#[derive(Debug, Clone)]
pub struct ImpactMetrics {
    endpoint: String,
    api_key: SecretString,
    outbound: Outbound,
}

/// Why a report's metrics could not be had. Never holds the key, nor the
/// platform's answer body (the message reaches API callers of run-now).
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Not reached, timed out, or an error status other than 404.
    #[error("the impact platform's metrics are unavailable: {0}")]
    Unavailable(String),
    /// A 200 whose body is not the contract's, or breaks its ranges.
    #[error("the impact platform answered invalid metrics: {0}")]
    Invalid(String),
}

/// The 200 answer; every member may be absent or `null`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    #[serde(default)]
    pub outcome_scores: Option<BTreeMap<String, f64>>,
    #[serde(default)]
    pub sroi_ratio: Option<f64>,
    #[serde(default)]
    pub vis_score: Option<f64>,
}

impl ImpactMetrics {
    pub fn new(config: &MetricsConfig, outbound: Outbound) -> Self {
        Self {
            endpoint: format!(
                "{}/v1/impact-metrics",
                config.base_url.as_str().trim_end_matches('/')
            ),
            api_key: config.api_key.clone(),
            outbound,
        }
    }

    /// Fills `report`'s outcome scores, SROI and VIS for its company and
    /// period (dates inclusive, as in the report); leaves them out when the
    /// platform has none (404).
    pub async fn fill(&self, report: &mut ImpactReport) -> Result<(), MetricsError> {
        let request = self
            .outbound
            .client()
            .get(&self.endpoint)
            .query(&[
                ("companyId", report.company_id.to_string()),
                ("start", report.period.start.to_string()),
                ("end", report.period.end.to_string()),
            ])
            .bearer_auth(self.api_key.expose_secret());
        let reply = self.outbound.send(request).await.map_err(unavailable)?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        let reply = reply.checked().map_err(unavailable)?;
        let answer: Answer = serde_json::from_slice(&reply.body)
            .map_err(|err| MetricsError::Invalid(format!("not the contract's JSON: {err}")))?;
        apply(report, answer)
    }
}

/// A failed call, by status when there is one: the platform's body stays
/// out of the message.
fn unavailable(err: ConnectorError) -> MetricsError {
    MetricsError::Unavailable(match err.status() {
        Some(status) => format!("HTTP {status}"),
        None => err.to_string(),
    })
}

/// Puts `answer` into `report` if it holds to the contract's ranges (each
/// score finite in [0, 1], SROI finite ≥ 0, VIS finite in [0, 100]) and
/// to the report's own rules (dimension names), and leaves `report` as it
/// was otherwise.
pub fn apply(report: &mut ImpactReport, answer: Answer) -> Result<(), MetricsError> {
    let mut filled = report.clone();
    filled.outcome_scores = answer.outcome_scores.unwrap_or_default();
    filled.sroi_ratio = answer.sroi_ratio;
    filled.vis_score = answer.vis_score;
    // The report's rules already cover scores, SROI and a VIS below 0;
    // the rest of the report was valid before, so any violation is ours.
    let mut problems: Vec<String> = filled
        .violations()
        .into_iter()
        .map(|v| format!("{}: {}", v.field, v.message))
        .collect();
    if filled.vis_score.is_some_and(|vis| vis > MAX_VIS) {
        problems.push(format!("visScore: must be at most {MAX_VIS}"));
    }
    if !problems.is_empty() {
        return Err(MetricsError::Invalid(problems.join("; ")));
    }
    *report = filled;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Period;

    fn report() -> ImpactReport {
        ImpactReport {
            company_id: uuid::Uuid::nil(),
            period: Period {
                start: "2025-12-01".parse().unwrap(),
                end: "2025-12-31".parse().unwrap(),
            },
            volunteer_hours: 12.5,
            volunteer_count: 3,
            participant_count: 2,
            session_count: 4,
            donations: Vec::new(),
            outcome_scores: BTreeMap::new(),
            sroi_ratio: None,
            vis_score: None,
            programmes: Vec::new(),
        }
    }

    fn answer(json: serde_json::Value) -> Answer {
        serde_json::from_value(json).expect("a test answer")
    }

    #[test]
    fn a_valid_answer_fills_the_three_fields_and_absent_members_stay_out() {
        let mut filled = report();
        apply(
            &mut filled,
            answer(serde_json::json!({
                "outcomeScores": {"confidence": 0.72, "belonging": 1.0, "skills": 0.0},
                "sroiRatio": 3.4,
                "visScore": 71.2,
            })),
        )
        .unwrap();
        assert_eq!(filled.outcome_scores["confidence"], 0.72);
        assert_eq!(filled.outcome_scores.len(), 3);
        assert_eq!(
            (filled.sroi_ratio, filled.vis_score),
            (Some(3.4), Some(71.2))
        );

        let mut partial = report();
        apply(
            &mut partial,
            answer(serde_json::json!({"outcomeScores": null, "visScore": 100.0})),
        )
        .unwrap();
        assert!(partial.outcome_scores.is_empty());
        assert_eq!((partial.sroi_ratio, partial.vis_score), (None, Some(100.0)));
        let mut empty = report();
        apply(&mut empty, answer(serde_json::json!({}))).unwrap();
        assert_eq!(empty, report());
    }

    #[test]
    fn an_answer_out_of_range_is_refused_and_leaves_the_report_alone() {
        for (bad, field) in [
            (
                Answer {
                    outcome_scores: Some(BTreeMap::from([("confidence".into(), 1.2)])),
                    ..Answer::default()
                },
                "outcomeScores.confidence",
            ),
            (
                Answer {
                    outcome_scores: Some(BTreeMap::from([("confidence".into(), -0.1)])),
                    ..Answer::default()
                },
                "outcomeScores.confidence",
            ),
            (
                Answer {
                    outcome_scores: Some(BTreeMap::from([("confidence".into(), f64::NAN)])),
                    ..Answer::default()
                },
                "outcomeScores.confidence",
            ),
            (
                Answer {
                    outcome_scores: Some(BTreeMap::from([(" ".into(), 0.5)])),
                    ..Answer::default()
                },
                "outcomeScores",
            ),
            (
                Answer {
                    sroi_ratio: Some(-1.0),
                    ..Answer::default()
                },
                "sroiRatio",
            ),
            (
                Answer {
                    sroi_ratio: Some(f64::INFINITY),
                    ..Answer::default()
                },
                "sroiRatio",
            ),
            (
                Answer {
                    vis_score: Some(100.5),
                    ..Answer::default()
                },
                "visScore",
            ),
            (
                Answer {
                    vis_score: Some(-3.0),
                    ..Answer::default()
                },
                "visScore",
            ),
            (
                Answer {
                    vis_score: Some(f64::NAN),
                    ..Answer::default()
                },
                "visScore",
            ),
        ] {
            let mut target = report();
            let err = apply(&mut target, bad).unwrap_err();
            assert!(
                matches!(&err, MetricsError::Invalid(problem) if problem.starts_with(field)),
                "{field}: {err}"
            );
            assert_eq!(target, report(), "{field}: the report is unchanged");
        }
        // A member of the wrong type is not the contract's JSON at all.
        assert!(serde_json::from_str::<Answer>(r#"{"sroiRatio": "3.4"}"#).is_err());
    }
}
