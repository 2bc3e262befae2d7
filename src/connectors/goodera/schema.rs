//! Goodera impact data, schema 2.1 (`docs/connectors.md`).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::report::{ImpactReport, Money};

pub const SCHEMA_VERSION: &str = "2.1";

// Unknown fields are refused so the sandbox, which reads bodies with these
// types, enforces the schema exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GooderaReport {
    pub version: String,
    pub idempotency_key: String,
    pub organization_id: Uuid,
    pub period: GooderaPeriod,
    pub volunteering: GooderaVolunteering,
    pub donations: Vec<GooderaDonation>,
    pub impact_dimensions: Vec<GooderaImpactDimension>,
    pub sroi_ratio: Option<f64>,
    pub vis_score: Option<f64>,
    pub programs: Vec<GooderaProgram>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GooderaPeriod {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GooderaVolunteering {
    pub hours: f64,
    pub volunteers: u32,
    pub participants: u32,
    pub sessions: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GooderaDonation {
    pub amount_minor: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GooderaImpactDimension {
    pub dimension_name: String,
    pub score: f64,
    pub scale: GooderaScale,
}

/// Our outcome scores are all in [0, 1]; an enum, so that any other scale
/// is refused when a body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GooderaScale {
    #[serde(rename = "normalized_0_1")]
    Normalized0To1,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GooderaProgram {
    pub program_name: String,
    pub hours: f64,
    pub participants: u32,
    pub donations: Vec<GooderaDonation>,
}

/// The `201` body; `data.submission_id` is the receipt's provider reference.
#[derive(Debug, Deserialize)]
pub struct GooderaAccepted {
    pub data: GooderaSubmission,
}

#[derive(Debug, Deserialize)]
pub struct GooderaSubmission {
    pub submission_id: String,
    pub status: String,
}

pub fn map(report: &ImpactReport, delivery_id: &str) -> GooderaReport {
    GooderaReport {
        version: SCHEMA_VERSION.into(),
        idempotency_key: delivery_id.into(),
        organization_id: report.company_id,
        period: GooderaPeriod {
            from: report.period.start,
            to: report.period.end,
        },
        volunteering: GooderaVolunteering {
            hours: report.volunteer_hours,
            volunteers: report.volunteer_count,
            participants: report.participant_count,
            sessions: report.session_count,
        },
        donations: donations(&report.donations),
        impact_dimensions: report
            .outcome_scores
            .iter()
            .map(|(dimension, &score)| GooderaImpactDimension {
                dimension_name: dimension.clone(),
                score,
                scale: GooderaScale::Normalized0To1,
            })
            .collect(),
        sroi_ratio: report.sroi_ratio,
        vis_score: report.vis_score,
        programs: report
            .programmes
            .iter()
            .map(|programme| GooderaProgram {
                program_name: programme.name.clone(),
                hours: programme.volunteer_hours,
                participants: programme.participant_count,
                donations: donations(&programme.donations),
            })
            .collect(),
    }
}

fn donations(donations: &[Money]) -> Vec<GooderaDonation> {
    donations
        .iter()
        .map(|money| GooderaDonation {
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

    fn sent_totals(donations: &[GooderaDonation]) -> BTreeMap<String, i128> {
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
                "version": "2.1",
                "idempotency_key": DELIVERY_ID,
                "organization_id": "6f1c2a8e-0d5b-4a39-9b0e-2f7d0c1e5a44",
                "period": { "from": "2026-01-01", "to": "2026-03-31" },
                "volunteering": { "hours": 1250.5, "volunteers": 84, "participants": 312, "sessions": 96 },
                "donations": [{ "amount_minor": 1250000, "currency": "EUR" }],
                "impact_dimensions": [
                    { "dimension_name": "integration", "score": 0.72, "scale": "normalized_0_1" },
                    { "dimension_name": "language", "score": 0.65, "scale": "normalized_0_1" }
                ],
                "sroi_ratio": 3.4,
                "vis_score": 78.5,
                "programs": [
                    { "program_name": "R&D <Europe> ]]>", "hours": 400.0, "participants": 120,
                      "donations": [] }
                ]
            })
        );
    }

    #[test]
    fn absent_optional_scores_are_null_not_missing() {
        let mut report = example();
        report.sroi_ratio = None;
        report.vis_score = None;
        let body = serde_json::to_value(map(&report, DELIVERY_ID)).unwrap();
        assert_eq!(body["sroi_ratio"], json!(null));
        assert_eq!(body["vis_score"], json!(null));
    }

    #[test]
    fn the_body_reads_back_and_another_scale_is_refused() {
        let mapped = map(&example(), DELIVERY_ID);
        let mut body = serde_json::to_value(&mapped).unwrap();
        assert_eq!(
            serde_json::from_value::<GooderaReport>(body.clone()).unwrap(),
            mapped
        );
        body["impact_dimensions"][0]["scale"] = json!("percent");
        assert!(serde_json::from_value::<GooderaReport>(body).is_err());
    }

    #[test]
    fn the_accepted_body_reads() {
        let accepted: GooderaAccepted = serde_json::from_value(json!({
            "data": { "submission_id": "gdr_1", "status": "received" }
        }))
        .unwrap();
        assert_eq!(accepted.data.submission_id, "gdr_1");
        assert_eq!(accepted.data.status, "received");
    }

    proptest! {
        #[test]
        fn every_outcome_score_appears_once_with_its_value(report in report()) {
            let mapped = map(&report, DELIVERY_ID);
            prop_assert_eq!(mapped.impact_dimensions.len(), report.outcome_scores.len());
            for (dimension, score) in &report.outcome_scores {
                let found: Vec<(f64, GooderaScale)> = mapped
                    .impact_dimensions
                    .iter()
                    .filter(|d| &d.dimension_name == dimension)
                    .map(|d| (d.score, d.scale))
                    .collect();
                prop_assert_eq!(found, vec![(*score, GooderaScale::Normalized0To1)]);
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
                prop_assert_eq!(&program.program_name, &programme.name);
                prop_assert_eq!(
                    sent_totals(&program.donations),
                    money_totals(&programme.donations)
                );
            }
        }
    }
}
