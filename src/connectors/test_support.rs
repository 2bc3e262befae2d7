//! Inputs shared by the mapper tests: the documented example and a proptest
//! strategy for arbitrary valid reports, so every provider is held to the same
//! laws over the same inputs.

use std::collections::BTreeMap;

use chrono::{Days, NaiveDate};
use proptest::prelude::*;
use uuid::Uuid;

use crate::report::{ImpactReport, Money, Period, Programme};

/// The example of docs/payloads.md (also used by the integration tests).
pub(crate) fn example() -> ImpactReport {
    serde_json::from_str(include_str!("../../tests/fixtures/impact_report.json"))
        .expect("the fixture is a valid report")
}

pub(crate) fn report() -> impl Strategy<Value = ImpactReport> {
    (
        any::<u128>(),
        period(),
        0.0..1e6f64,
        (any::<u32>(), any::<u32>(), any::<u32>()),
        donations(),
        prop::collection::btree_map(text(), 0.0..=1.0f64, 0..6),
        prop::option::of(0.0..1e3f64),
        prop::option::of(0.0..1e3f64),
        prop::collection::vec(programme(), 0..5),
    )
        .prop_map(
            |(
                id,
                period,
                volunteer_hours,
                (volunteer_count, participant_count, session_count),
                donations,
                outcome_scores,
                sroi_ratio,
                vis_score,
                programmes,
            )| ImpactReport {
                company_id: Uuid::from_u128(id),
                period,
                volunteer_hours,
                volunteer_count,
                participant_count,
                session_count,
                donations,
                outcome_scores,
                sroi_ratio,
                vis_score,
                programmes,
            },
        )
}

fn period() -> impl Strategy<Value = Period> {
    (0u64..20_000, 0u64..400).prop_map(|(offset, length)| {
        let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).expect("a valid date");
        let start = epoch + Days::new(offset);
        Period {
            start,
            end: start + Days::new(length),
        }
    })
}

/// Few currencies, so that several donations share one and sums are tested.
fn donations() -> impl Strategy<Value = Vec<Money>> {
    let money = (
        0i64..=1_000_000_000_000,
        prop::sample::select(vec!["EUR", "USD", "GBP", "JPY"]),
    )
        .prop_map(|(amount_minor, currency)| Money {
            amount_minor,
            currency: currency.into(),
        });
    prop::collection::vec(money, 0..6)
}

fn programme() -> impl Strategy<Value = Programme> {
    (text(), 0.0..1e5f64, any::<u32>(), donations()).prop_map(
        |(name, volunteer_hours, participant_count, donations)| Programme {
            name,
            volunteer_hours,
            participant_count,
            donations,
        },
    )
}

/// Names and dimensions: any character XML 1.0 can carry, biased towards the
/// ones that need escaping or that XML parsers normalise (`\r`). Other control
/// characters are left out because XML 1.0 cannot represent them at all.
fn text() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        prop::sample::select(vec![
            "&", "<", ">", "]]>", "\"", "'", "\r\n", "\r", "\n", "\t", " ", "&amp;", "&#38;",
        ])
        .prop_map(String::from),
        any::<char>()
            .prop_filter("a character XML 1.0 allows", |&c| is_xml_char(c))
            .prop_map(String::from),
    ];
    prop::collection::vec(fragment, 1..16).prop_map(|fragments| fragments.concat())
}

/// The `Char` production of XML 1.0 (surrogates cannot occur in a `char`).
fn is_xml_char(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..
    )
}

/// Minor units per currency, widened so that summing cannot overflow.
pub(crate) fn totals<'a>(
    donations: impl IntoIterator<Item = (&'a str, i64)>,
) -> BTreeMap<String, i128> {
    let mut sums = BTreeMap::new();
    for (currency, amount_minor) in donations {
        *sums.entry(currency.to_owned()).or_default() += i128::from(amount_minor);
    }
    sums
}

pub(crate) fn money_totals(donations: &[Money]) -> BTreeMap<String, i128> {
    totals(
        donations
            .iter()
            .map(|m| (m.currency.as_str(), m.amount_minor)),
    )
}
