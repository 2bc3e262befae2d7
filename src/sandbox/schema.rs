//! A walker over `serde_json::Value` for the providers' JSON schemas in
//! `docs/connectors.md`. Deliberately independent of the connectors' Rust
//! types: its point is to check what they put on the wire.

use chrono::NaiveDate;
use serde_json::{Map, Value};

/// The first offending field (`programs[1].donations[0].currency`) and what
/// is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub field: String,
    pub problem: String,
}

pub(crate) type Check<T> = Result<T, Invalid>;

/// A value and where it sits in the body.
pub(crate) struct Node<'a> {
    value: &'a Value,
    path: String,
}

/// An object whose fields are exactly the schema's.
pub(crate) struct Object<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

static NULL: Value = Value::Null;

impl<'a> Node<'a> {
    pub(crate) fn root(value: &'a Value) -> Self {
        Self {
            value,
            path: String::new(),
        }
    }

    fn fail<T>(&self, problem: impl Into<String>) -> Check<T> {
        Err(Invalid {
            field: if self.path.is_empty() {
                "body".into()
            } else {
                self.path.clone()
            },
            problem: problem.into(),
        })
    }

    /// Every field of `fields` present, no other.
    pub(crate) fn object(&self, fields: &[&str]) -> Check<Object<'a>> {
        let Some(map) = self.value.as_object() else {
            return self.fail("must be an object");
        };
        let at = |name: &str| Invalid {
            field: join(&self.path, name),
            problem: String::new(),
        };
        if let Some(missing) = fields.iter().find(|f| !map.contains_key(**f)) {
            return Err(Invalid {
                problem: "is required".into(),
                ..at(missing)
            });
        }
        if let Some(unknown) = map.keys().find(|k| !fields.contains(&k.as_str())) {
            return Err(Invalid {
                problem: "is not a field of this schema".into(),
                ..at(unknown)
            });
        }
        Ok(Object {
            map,
            path: self.path.clone(),
        })
    }

    pub(crate) fn items(&self) -> Check<Vec<Node<'a>>> {
        let Some(items) = self.value.as_array() else {
            return self.fail("must be an array");
        };
        Ok(items
            .iter()
            .enumerate()
            .map(|(index, value)| Node {
                value,
                path: format!("{}[{index}]", self.path),
            })
            .collect())
    }

    pub(crate) fn string(&self) -> Check<&'a str> {
        match self.value.as_str() {
            Some(text) => Ok(text),
            None => self.fail("must be a string"),
        }
    }

    /// A string with something other than white space in it.
    pub(crate) fn text(&self) -> Check<&'a str> {
        let text = self.string()?;
        if text.trim().is_empty() {
            return self.fail("must not be blank");
        }
        Ok(text)
    }

    pub(crate) fn constant(&self, expected: &str) -> Check<()> {
        if self.string()? != expected {
            return self.fail(format!("must be \"{expected}\""));
        }
        Ok(())
    }

    pub(crate) fn uuid(&self) -> Check<()> {
        match uuid::Uuid::try_parse(self.string()?) {
            Ok(_) => Ok(()),
            Err(_) => self.fail("must be a UUID"),
        }
    }

    /// The idempotency key repeated in the body must be the header's.
    pub(crate) fn equals_header(&self, header: &str, key: &str) -> Check<()> {
        if self.text()? != key {
            return self.fail(format!("must equal the {header} header"));
        }
        Ok(())
    }

    pub(crate) fn date(&self) -> Check<NaiveDate> {
        let text = self.string()?;
        match parse_date(text) {
            Some(date) => Ok(date),
            None => self.fail("must be a date YYYY-MM-DD"),
        }
    }

    /// An integer ≥ 0 (`84.0` is not one).
    pub(crate) fn count(&self) -> Check<u64> {
        match self.value.as_u64() {
            Some(count) => Ok(count),
            None => self.fail("must be an integer >= 0"),
        }
    }

    pub(crate) fn quantity(&self) -> Check<f64> {
        match self.value.as_f64() {
            Some(number) if number >= 0.0 => Ok(number),
            _ => self.fail("must be a number >= 0"),
        }
    }

    /// `null` or a number ≥ 0; the field itself must be present.
    pub(crate) fn optional_quantity(&self) -> Check<()> {
        if !self.value.is_null() {
            self.quantity().map_err(|invalid| Invalid {
                problem: "must be null or a number >= 0".into(),
                ..invalid
            })?;
        }
        Ok(())
    }

    pub(crate) fn score(&self) -> Check<()> {
        match self.value.as_f64() {
            Some(score) if (0.0..=1.0).contains(&score) => Ok(()),
            _ => self.fail("must be a number between 0 and 1"),
        }
    }

    /// ISO 4217 shape: three upper-case letters.
    pub(crate) fn currency(&self) -> Check<()> {
        if !is_currency(self.string()?) {
            return self.fail("must be three upper-case letters (ISO 4217)");
        }
        Ok(())
    }

    /// A list of `{<amount_field>, currency}` with integer minor units.
    pub(crate) fn donations(&self, amount_field: &str) -> Check<()> {
        for donation in self.items()? {
            let donation = donation.object(&[amount_field, "currency"])?;
            donation.field(amount_field).count()?;
            donation.field("currency").currency()?;
        }
        Ok(())
    }
}

impl<'a> Object<'a> {
    /// A field of the schema (present: `Node::object` checked that).
    pub(crate) fn field(&self, name: &str) -> Node<'a> {
        Node {
            value: self.map.get(name).unwrap_or(&NULL),
            path: join(&self.path, name),
        }
    }

    /// Two dates of a reporting period, the end not before the start.
    pub(crate) fn period(&self, start: &str, end: &str) -> Check<()> {
        let start_date = self.field(start).date()?;
        let end = self.field(end);
        if end.date()? < start_date {
            return end.fail(format!("must not be before {start}"));
        }
        Ok(())
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// Exactly `YYYY-MM-DD` (chrono alone also takes `2026-1-1`).
pub(crate) fn parse_date(text: &str) -> Option<NaiveDate> {
    let shaped = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    shaped
        .then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
        .flatten()
}

pub(crate) fn is_currency(text: &str) -> bool {
    text.len() == 3 && text.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(value: &Value) -> Check<()> {
        let root = Node::root(value).object(&["period", "donations", "ratio"])?;
        let period = root.field("period").object(&["from", "to"])?;
        period.period("from", "to")?;
        root.field("donations").donations("amount_minor")?;
        root.field("ratio").optional_quantity()
    }

    fn field_of(value: Value) -> (String, String) {
        let invalid = check(&value).expect_err("refused");
        (invalid.field, invalid.problem)
    }

    fn valid() -> Value {
        json!({
            "period": { "from": "2026-01-01", "to": "2026-03-31" },
            "donations": [{ "amount_minor": 100, "currency": "EUR" }],
            "ratio": null,
        })
    }

    #[test]
    fn accepts_the_schema() {
        assert_eq!(check(&valid()), Ok(()));
    }

    #[test]
    fn names_the_first_offending_field() {
        let mut body = valid();
        body["donations"][0]["currency"] = json!("eur");
        assert_eq!(field_of(body).0, "donations[0].currency");

        let mut body = valid();
        body["donations"][0]["amount_minor"] = json!(1.5);
        assert_eq!(field_of(body).0, "donations[0].amount_minor");

        let mut body = valid();
        body["period"]["to"] = json!("2025-12-31");
        assert_eq!(
            field_of(body),
            ("period.to".into(), "must not be before from".into())
        );

        let mut body = valid();
        body["period"]["from"] = json!("2026-1-01");
        assert_eq!(field_of(body).0, "period.from");

        let mut body = valid();
        body.as_object_mut().expect("object").remove("ratio");
        assert_eq!(field_of(body), ("ratio".into(), "is required".into()));

        let mut body = valid();
        body["extra"] = json!(1);
        assert_eq!(
            field_of(body),
            ("extra".into(), "is not a field of this schema".into())
        );

        assert_eq!(field_of(json!([])).0, "body");
    }

    #[test]
    fn dates_are_exactly_iso() {
        assert!(parse_date("2026-02-28").is_some());
        assert!(parse_date("2026-02-30").is_none());
        assert!(parse_date("2026-2-28").is_none());
        assert!(parse_date("20260228").is_none());
        assert!(parse_date("+2026-02-2").is_none());
    }
}
