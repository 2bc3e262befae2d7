//! Workday CSR Impact Report 3.0 over REST (`docs/connectors.md`): camelCase,
//! absent values as `null`.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::report::{ImpactReport, Money};

pub const SCHEMA_VERSION: &str = "3.0";

// Unknown fields are refused so the sandbox, which reads bodies with these
// types, enforces the schema exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkdayReport {
    pub schema_version: String,
    pub external_reference_id: String,
    pub organization_reference: Uuid,
    pub reporting_period: WorkdayPeriod,
    pub volunteer_hours: f64,
    pub volunteer_count: u32,
    pub participant_count: u32,
    pub session_count: u32,
    pub donations: Vec<WorkdayDonation>,
    pub outcome_scores: Vec<WorkdayOutcomeScore>,
    pub sroi_ratio: Option<f64>,
    pub vis_score: Option<f64>,
    pub programs: Vec<WorkdayProgram>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkdayPeriod {
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkdayDonation {
    pub amount_minor: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkdayOutcomeScore {
    pub dimension: String,
    pub score: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkdayProgram {
    pub program_name: String,
    pub volunteer_hours: f64,
    pub participant_count: u32,
    pub donations: Vec<WorkdayDonation>,
}

/// The `201` body; `id` is the receipt's provider reference.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkdayAccepted {
    pub id: String,
    pub external_reference_id: String,
}

pub fn map(report: &ImpactReport, delivery_id: &str) -> WorkdayReport {
    WorkdayReport {
        schema_version: SCHEMA_VERSION.into(),
        external_reference_id: delivery_id.into(),
        organization_reference: report.company_id,
        reporting_period: WorkdayPeriod {
            start_date: report.period.start,
            end_date: report.period.end,
        },
        volunteer_hours: report.volunteer_hours,
        volunteer_count: report.volunteer_count,
        participant_count: report.participant_count,
        session_count: report.session_count,
        donations: donations(&report.donations),
        outcome_scores: report
            .outcome_scores
            .iter()
            .map(|(dimension, &score)| WorkdayOutcomeScore {
                dimension: dimension.clone(),
                score,
            })
            .collect(),
        sroi_ratio: report.sroi_ratio,
        vis_score: report.vis_score,
        programs: report
            .programmes
            .iter()
            .map(|programme| WorkdayProgram {
                program_name: programme.name.clone(),
                volunteer_hours: programme.volunteer_hours,
                participant_count: programme.participant_count,
                donations: donations(&programme.donations),
            })
            .collect(),
    }
}

fn donations(donations: &[Money]) -> Vec<WorkdayDonation> {
    donations
        .iter()
        .map(|money| WorkdayDonation {
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

    fn sent_totals(donations: &[WorkdayDonation]) -> BTreeMap<String, i128> {
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
                "schemaVersion": "3.0",
                "externalReferenceId": DELIVERY_ID,
                "organizationReference": "6f1c2a8e-0d5b-4a39-9b0e-2f7d0c1e5a44",
                "reportingPeriod": { "startDate": "2026-01-01", "endDate": "2026-03-31" },
                "volunteerHours": 1250.5,
                "volunteerCount": 84,
                "participantCount": 312,
                "sessionCount": 96,
                "donations": [{ "amountMinor": 1250000, "currency": "EUR" }],
                "outcomeScores": [
                    { "dimension": "integration", "score": 0.72 },
                    { "dimension": "language", "score": 0.65 }
                ],
                "sroiRatio": 3.4,
                "visScore": 78.5,
                "programs": [
                    { "programName": "R&D <Europe> ]]>", "volunteerHours": 400.0,
                      "participantCount": 120, "donations": [] }
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
        assert_eq!(body["sroiRatio"], json!(null));
        assert_eq!(body["visScore"], json!(null));
    }

    #[test]
    fn the_body_reads_back_and_unknown_fields_are_refused() {
        let mapped = map(&example(), DELIVERY_ID);
        let mut body = serde_json::to_value(&mapped).unwrap();
        assert_eq!(
            serde_json::from_value::<WorkdayReport>(body.clone()).unwrap(),
            mapped
        );
        body["programs"][0]["name"] = json!("R&D");
        assert!(serde_json::from_value::<WorkdayReport>(body).is_err());
    }

    #[test]
    fn the_accepted_body_reads() {
        let accepted: WorkdayAccepted = serde_json::from_value(json!({
            "id": "wd_1", "externalReferenceId": DELIVERY_ID
        }))
        .unwrap();
        assert_eq!(accepted.id, "wd_1");
        assert_eq!(accepted.external_reference_id, DELIVERY_ID);
    }

    proptest! {
        #[test]
        fn every_outcome_score_appears_once_with_its_value(report in report()) {
            let mapped = map(&report, DELIVERY_ID);
            prop_assert_eq!(mapped.outcome_scores.len(), report.outcome_scores.len());
            for (dimension, score) in &report.outcome_scores {
                let found: Vec<f64> = mapped
                    .outcome_scores
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
                prop_assert_eq!(&program.program_name, &programme.name);
                prop_assert_eq!(
                    sent_totals(&program.donations),
                    money_totals(&programme.donations)
                );
            }
        }
    }
}
