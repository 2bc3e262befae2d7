//! Benevity impact report, schema 1.0 (`docs/connectors.md`): snake_case, and
//! every field present, absent values as `null`.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::report::{ImpactReport, Money};

pub const SCHEMA_VERSION: &str = "1.0";

// Unknown fields are refused so the sandbox, which reads bodies with these
// types, enforces the schema exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenevityReport {
    pub schema_version: String,
    pub delivery_id: String,
    pub company_id: Uuid,
    pub reporting_period: BenevityPeriod,
    pub metrics: BenevityMetrics,
    pub donations: Vec<BenevityDonation>,
    pub outcomes: Vec<BenevityOutcome>,
    pub programs: Vec<BenevityProgram>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenevityPeriod {
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenevityMetrics {
    pub volunteer_hours: f64,
    pub volunteer_count: u32,
    pub participant_count: u32,
    pub session_count: u32,
    pub sroi_ratio: Option<f64>,
    pub vis_score: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenevityDonation {
    pub amount_minor: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenevityOutcome {
    pub dimension: String,
    pub score: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenevityProgram {
    pub name: String,
    pub volunteer_hours: f64,
    pub participant_count: u32,
    pub donations: Vec<BenevityDonation>,
}

/// The `201` body; `id` is the receipt's provider reference.
#[derive(Debug, Deserialize)]
pub struct BenevityAccepted {
    pub id: String,
    pub status: String,
    pub delivery_id: String,
}

pub fn map(report: &ImpactReport, delivery_id: &str) -> BenevityReport {
    BenevityReport {
        schema_version: SCHEMA_VERSION.into(),
        delivery_id: delivery_id.into(),
        company_id: report.company_id,
        reporting_period: BenevityPeriod {
            start_date: report.period.start,
            end_date: report.period.end,
        },
        metrics: BenevityMetrics {
            volunteer_hours: report.volunteer_hours,
            volunteer_count: report.volunteer_count,
            participant_count: report.participant_count,
            session_count: report.session_count,
            sroi_ratio: report.sroi_ratio,
            vis_score: report.vis_score,
        },
        donations: donations(&report.donations),
        outcomes: report
            .outcome_scores
            .iter()
            .map(|(dimension, &score)| BenevityOutcome {
                dimension: dimension.clone(),
                score,
            })
            .collect(),
        programs: report
            .programmes
            .iter()
            .map(|programme| BenevityProgram {
                name: programme.name.clone(),
                volunteer_hours: programme.volunteer_hours,
                participant_count: programme.participant_count,
                donations: donations(&programme.donations),
            })
            .collect(),
    }
}

fn donations(donations: &[Money]) -> Vec<BenevityDonation> {
    donations
        .iter()
        .map(|money| BenevityDonation {
            amount_minor: money.amount_minor,
            currency: money.currency.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::connectors::test_support::{example, money_totals, report, totals};

    const DELIVERY_ID: &str = "0f6f7a52-9a3e-4c1b-8d2f-5e6a7b8c9d0e";

    fn sent_totals(donations: &[BenevityDonation]) -> BTreeMap<String, i128> {
        totals(
            donations
                .iter()
                .map(|d| (d.currency.as_str(), d.amount_minor)),
        )
    }

    #[test]
    fn the_documented_example_maps_to_the_documented_body() {
        let body = serde_json::to_value(map(&example(), DELIVERY_ID)).unwrap();
        assert_eq!(
            body,
            json!({
                "schema_version": "1.0",
                "delivery_id": DELIVERY_ID,
                "company_id": "6f1c2a8e-0d5b-4a39-9b0e-2f7d0c1e5a44",
                "reporting_period": { "start_date": "2026-01-01", "end_date": "2026-03-31" },
                "metrics": {
                    "volunteer_hours": 1250.5,
                    "volunteer_count": 84,
                    "participant_count": 312,
                    "session_count": 96,
                    "sroi_ratio": 3.4,
                    "vis_score": 78.5
                },
                "donations": [{ "amount_minor": 1250000, "currency": "EUR" }],
                "outcomes": [
                    { "dimension": "integration", "score": 0.72 },
                    { "dimension": "language", "score": 0.65 }
                ],
                "programs": [
                    { "name": "R&D <Europe> ]]>", "volunteer_hours": 400.0,
                      "participant_count": 120, "donations": [] }
                ]
            })
        );
    }

    #[test]
    fn absent_optional_metrics_are_null_not_missing() {
        let mut report = example();
        report.sroi_ratio = None;
        report.vis_score = None;
        let body = serde_json::to_value(map(&report, DELIVERY_ID)).unwrap();
        assert_eq!(body["metrics"]["sroi_ratio"], json!(null));
        assert_eq!(body["metrics"]["vis_score"], json!(null));
        assert_eq!(body["metrics"].as_object().unwrap().len(), 6);
    }

    #[test]
    fn the_body_reads_back_and_unknown_fields_are_refused() {
        let mapped = map(&example(), DELIVERY_ID);
        let mut body = serde_json::to_value(&mapped).unwrap();
        assert_eq!(
            serde_json::from_value::<BenevityReport>(body.clone()).unwrap(),
            mapped
        );
        body["metrics"]["volunteers"] = json!(1);
        assert!(serde_json::from_value::<BenevityReport>(body).is_err());
    }

    #[test]
    fn the_accepted_body_reads() {
        let accepted: BenevityAccepted = serde_json::from_value(json!({
            "id": "bnv_1", "status": "accepted", "delivery_id": DELIVERY_ID
        }))
        .unwrap();
        assert_eq!(
            (
                accepted.id.as_str(),
                accepted.status.as_str(),
                accepted.delivery_id.as_str()
            ),
            ("bnv_1", "accepted", DELIVERY_ID)
        );
    }

    proptest! {
        #[test]
        fn every_outcome_score_appears_once_with_its_value(report in report()) {
            let mapped = map(&report, DELIVERY_ID);
            prop_assert_eq!(mapped.outcomes.len(), report.outcome_scores.len());
            for (dimension, score) in &report.outcome_scores {
                let found: Vec<f64> = mapped
                    .outcomes
                    .iter()
                    .filter(|o| &o.dimension == dimension)
                    .map(|o| o.score)
                    .collect();
                prop_assert_eq!(found, vec![*score]);
            }
        }

        #[test]
        fn money_and_programmes_are_preserved(report in report()) {
            let mapped = map(&report, DELIVERY_ID);
            prop_assert_eq!(
                sent_totals(&mapped.donations),
                money_totals(&report.donations)
            );
            prop_assert_eq!(mapped.programs.len(), report.programmes.len());
            for (program, programme) in mapped.programs.iter().zip(&report.programmes) {
                prop_assert_eq!(&program.name, &programme.name);
                prop_assert_eq!(
                    sent_totals(&program.donations),
                    money_totals(&programme.donations)
                );
            }
        }
    }
}
