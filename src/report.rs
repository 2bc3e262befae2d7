//! The canonical impact report: the body the cockpit hands us for delivery,
//! before any provider mapping. Documented in `docs/payloads.md`.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImpactReport {
    pub company_id: Uuid,
    pub period: Period,
    pub volunteer_hours: f64,
    #[serde(deserialize_with = "whole::u32")]
    pub volunteer_count: u32,
    #[serde(deserialize_with = "whole::u32")]
    pub participant_count: u32,
    #[serde(deserialize_with = "whole::u32")]
    pub session_count: u32,
    #[serde(default)]
    pub donations: Vec<Money>,
    /// Score per outcome dimension, each in [0, 1].
    #[serde(default)]
    pub outcome_scores: BTreeMap<String, f64>,
    pub sroi_ratio: Option<f64>,
    pub vis_score: Option<f64>,
    #[serde(default)]
    pub programmes: Vec<Programme>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Period {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

/// An amount in integer minor units (cents) of an ISO 4217 currency, so no
/// floating-point rounding ever touches money.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Money {
    #[serde(deserialize_with = "whole::i64")]
    pub amount_minor: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Programme {
    pub name: String,
    pub volunteer_hours: f64,
    #[serde(deserialize_with = "whole::u32")]
    pub participant_count: u32,
    #[serde(default)]
    pub donations: Vec<Money>,
}

/// Counts and amounts as JSON Schema's `integer` reads them: any number
/// with a zero fractional part, so `5.0` is 5 (`5.5` and out-of-range
/// values are still refused, naming the field).
mod whole {
    use std::fmt;

    use serde::de::{self, Deserializer, Visitor};

    /// Any JSON number without a fractional part, widened.
    struct Whole;

    impl Visitor<'_> for Whole {
        type Value = i128;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a whole number")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i128, E> {
            Ok(v.into())
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i128, E> {
            Ok(v.into())
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i128, E> {
            // Past ±2^100 no target type fits anyway; the cast is exact below.
            if v.fract() == 0.0 && v.abs() < 1e30 {
                Ok(v as i128)
            } else {
                Err(E::invalid_value(de::Unexpected::Float(v), &self))
            }
        }
    }

    fn fit<'de, D: Deserializer<'de>, T: TryFrom<i128>>(
        deserializer: D,
        range: fmt::Arguments<'_>,
    ) -> Result<T, D::Error> {
        let n = deserializer.deserialize_any(Whole)?;
        T::try_from(n).map_err(|_| {
            de::Error::custom(format!(
                "invalid value: {n}, expected a whole number {range}"
            ))
        })
    }

    pub fn u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
        fit(deserializer, format_args!("from 0 to {}", u32::MAX))
    }

    pub fn i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        fit(
            deserializer,
            format_args!("from {} to {}", i64::MIN, i64::MAX),
        )
    }
}

/// A rule the report breaks, with the JSON path of the offending field
/// relative to the report (e.g. `programmes[1].name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub message: String,
}

impl ImpactReport {
    /// Every rule serde cannot express; all violations, not only the first.
    pub fn violations(&self) -> Vec<Violation> {
        let mut found = Vec::new();
        let mut check = |ok: bool, field: String, message: &str| {
            if !ok {
                found.push(Violation {
                    field,
                    message: message.into(),
                });
            }
        };
        for (field, date) in [("start", self.period.start), ("end", self.period.end)] {
            check(
                PERIOD_YEARS.contains(&date.year()),
                format!("period.{field}"),
                "must be a date from 0001-01-01 to 9999-12-31",
            );
        }
        check(
            self.period.start <= self.period.end,
            "period.end".into(),
            "must not be before period.start",
        );
        check(
            non_negative(self.volunteer_hours),
            "volunteerHours".into(),
            "must be a finite number ≥ 0",
        );
        for (i, money) in self.donations.iter().enumerate() {
            check_money(&mut check, &format!("donations[{i}]"), money);
        }
        for (dimension, score) in &self.outcome_scores {
            check(
                !dimension.trim().is_empty(),
                "outcomeScores".into(),
                "dimension names must not be blank",
            );
            check(
                xml_text(dimension),
                format!("outcomeScores.{}", dimension.escape_debug()),
                "dimension names must not contain control characters, U+FFFE or U+FFFF",
            );
            check(
                score.is_finite() && (0.0..=1.0).contains(score),
                format!("outcomeScores.{dimension}"),
                "must be between 0 and 1",
            );
        }
        if let Some(sroi) = self.sroi_ratio {
            check(
                non_negative(sroi),
                "sroiRatio".into(),
                "must be a finite number ≥ 0",
            );
        }
        if let Some(vis) = self.vis_score {
            check(
                non_negative(vis),
                "visScore".into(),
                "must be a finite number ≥ 0",
            );
        }
        for (i, programme) in self.programmes.iter().enumerate() {
            let at = format!("programmes[{i}]");
            check(
                !programme.name.trim().is_empty(),
                format!("{at}.name"),
                "must not be blank",
            );
            check(
                xml_text(&programme.name),
                format!("{at}.name"),
                "must not contain control characters, U+FFFE or U+FFFF",
            );
            check(
                non_negative(programme.volunteer_hours),
                format!("{at}.volunteerHours"),
                "must be a finite number ≥ 0",
            );
            for (j, money) in programme.donations.iter().enumerate() {
                check_money(&mut check, &format!("{at}.donations[{j}]"), money);
            }
        }
        found
    }
}

/// Every provider writes dates as `YYYY-MM-DD` and refuses other years.
const PERIOD_YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

/// Text that can travel in XML 1.0 (Workday's SOAP envelope): its `Char`
/// production has no C0 controls but tab and line breaks, and neither U+FFFE
/// nor U+FFFF (surrogates cannot occur in a Rust string). DEL and the C1
/// controls, which XML allows, are refused too: no name needs them.
fn xml_text(text: &str) -> bool {
    !text.chars().any(|c| {
        (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}')
    })
}

fn non_negative(value: f64) -> bool {
    value.is_finite() && value >= 0.0
}

fn check_money(check: &mut impl FnMut(bool, String, &str), at: &str, money: &Money) {
    check(
        money.amount_minor >= 0,
        format!("{at}.amountMinor"),
        "must be ≥ 0",
    );
    check(
        money.currency.len() == 3 && money.currency.bytes().all(|b| b.is_ascii_uppercase()),
        format!("{at}.currency"),
        "must be an ISO 4217 code such as EUR",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The example of docs/payloads.md, shared with the integration tests.
    fn example() -> serde_json::Value {
        serde_json::from_str(include_str!("../tests/fixtures/impact_report.json")).unwrap()
    }

    #[test]
    fn the_documented_example_is_valid_and_round_trips() {
        let report: ImpactReport = serde_json::from_value(example()).unwrap();
        assert!(report.violations().is_empty());
        assert_eq!(serde_json::to_value(&report).unwrap(), example());
    }

    #[test]
    fn every_broken_rule_is_reported_with_its_field() {
        let mut body = example();
        body["period"]["end"] = json!("2025-12-31");
        body["volunteerHours"] = json!(-1);
        body["donations"][0]["currency"] = json!("eur");
        body["outcomeScores"]["language"] = json!(1.5);
        body["programmes"][0]["name"] = json!(" ");
        body["programmes"].as_array_mut().unwrap().push(json!({
            "name": "bell\u{7}", "volunteerHours": 1.0, "participantCount": 1
        }));
        let report: ImpactReport = serde_json::from_value(body).unwrap();
        let fields: Vec<String> = report.violations().into_iter().map(|v| v.field).collect();
        assert_eq!(
            fields,
            vec![
                "period.end",
                "volunteerHours",
                "donations[0].currency",
                "outcomeScores.language",
                "programmes[0].name",
                "programmes[1].name",
            ]
        );
    }

    #[test]
    fn names_hold_only_what_xml_1_0_can_carry() {
        for fine in [
            "R&D <Europe> ]]>",
            "tab\tline\nbreak\r",
            "\u{FFFD}",
            "\u{10FFFF}",
        ] {
            assert!(xml_text(fine), "{fine:?}");
        }
        for refused in [
            "\u{0}", "\u{1F}", "\u{7F}", "\u{85}", "\u{FFFE}", "\u{FFFF}",
        ] {
            assert!(!xml_text(refused), "{refused:?}");
        }
    }
}
