//! A report-ready message: seed 002's `BaseEvent` envelope around the
//! canonical report, read and checked, or the reason it never can be.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{ids::CompanyId, provider::Provider, report::ImpactReport};

/// What travels on `NATS_REPORT_SUBJECT`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportReady {
    /// The event's id (BaseEvent `id`, also accepted under that name):
    /// with the provider, it makes the delivery id.
    #[serde(alias = "id")]
    pub event_id: Uuid,
    pub company_id: CompanyId,
    /// The canonical report, checked as `POST /deliveries` checks it.
    pub report: serde_json::Value,
    /// Narrows the company's delivery rules to these providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub providers: Option<BTreeSet<Provider>>,
    /// BaseEvent's remaining fields, kept as they came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

impl ReportReady {
    /// A new event, without BaseEvent's optional fields.
    pub fn new(
        event_id: Uuid,
        company_id: CompanyId,
        report: serde_json::Value,
        providers: Option<BTreeSet<Provider>>,
    ) -> Self {
        Self {
            event_id,
            company_id,
            report,
            providers,
            version: None,
            timestamp: None,
            correlation_id: None,
            causation_id: None,
            metadata: None,
        }
    }
}

/// Why a message can never become deliveries. The code is what logs and
/// metrics carry; the text (which may quote the message) is stored only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: RejectCode,
    pub reason: String,
    pub event_id: Option<Uuid>,
    pub company_id: Option<CompanyId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::Display)]
#[strum(serialize_all = "snake_case")]
pub enum RejectCode {
    /// Not JSON at all.
    NotJson,
    /// JSON, but not the envelope (a field missing or of the wrong type,
    /// an unknown provider).
    InvalidEvent,
    /// The report breaks the rules a `POST /deliveries` would refuse.
    InvalidReport,
    /// The company has no delivery rules (or an empty list).
    NoRules,
    /// The rules and the event's `providers` have no provider in common.
    NoProvider,
    /// The event id was used before with another report.
    EventIdReused,
}

impl RejectCode {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A checked event: its typed report as the delivery payload.
#[derive(Debug)]
pub struct Checked {
    pub event: ReportReady,
    pub payload: serde_json::Value,
}

/// Reads and checks `body`, all but the rules (which need the database).
pub fn read(body: &[u8]) -> Result<Checked, Rejection> {
    let reject = |code, reason: String, event: Option<&ReportReady>| Rejection {
        code,
        reason,
        event_id: event.map(|e| e.event_id),
        company_id: event.map(|e| e.company_id),
    };
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|err| reject(RejectCode::NotJson, err.to_string(), None))?;
    // What of the ids can be read, so the rejection is listed for its
    // company even when the rest of the envelope is wrong.
    let id = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| value.get(name)?.as_str()?.parse::<Uuid>().ok())
    };
    let (event_id, company_id) = (id(&["eventId", "id"]), id(&["companyId"]).map(CompanyId));
    let event: ReportReady = serde_json::from_value(value).map_err(|err| Rejection {
        code: RejectCode::InvalidEvent,
        reason: err.to_string(),
        event_id,
        company_id,
    })?;
    let report: ImpactReport = match serde_json::from_value(event.report.clone()) {
        Ok(report) => report,
        Err(err) => {
            return Err(reject(
                RejectCode::InvalidReport,
                format!("report: {err}"),
                Some(&event),
            ));
        }
    };
    let mut problems: Vec<String> = report
        .violations()
        .into_iter()
        .map(|v| format!("report.{}: {}", v.field, v.message))
        .collect();
    if report.company_id != event.company_id.0 {
        problems.push("report.companyId: must equal companyId".into());
    }
    if !problems.is_empty() {
        return Err(reject(
            RejectCode::InvalidReport,
            problems.join("; "),
            Some(&event),
        ));
    }
    // The typed report, so the payload is what `POST /deliveries` would
    // have stored for the same report (same canonical hash).
    let payload = serde_json::to_value(&report).expect("a report serializes");
    Ok(Checked { event, payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(company: Uuid) -> serde_json::Value {
        serde_json::json!({
            "companyId": company,
            "period": {"start": "2026-01-01", "end": "2026-03-31"},
            "volunteerHours": 10.5,
            "volunteerCount": 3,
            "participantCount": 4,
            "sessionCount": 2,
        })
    }

    #[test]
    fn it_tells_each_kind_of_poison_apart() {
        let company = Uuid::new_v4();
        let code = |body: &[u8]| read(body).err().map(|r| r.code);
        assert_eq!(code(b"not json"), Some(RejectCode::NotJson));
        assert_eq!(code(b"{\"companyId\": 1}"), Some(RejectCode::InvalidEvent));
        let event = |report: serde_json::Value, providers: serde_json::Value| {
            serde_json::to_vec(&serde_json::json!({
                "id": Uuid::new_v4(), "companyId": company, "report": report, "providers": providers,
            }))
            .unwrap()
        };
        let unknown = read(&event(report(company), serde_json::json!(["myspace"]))).unwrap_err();
        assert_eq!(unknown.code, RejectCode::InvalidEvent);
        assert_eq!(unknown.company_id, Some(CompanyId(company)));
        let mut bad = report(company);
        bad["volunteerHours"] = serde_json::json!(-1);
        let rejected = read(&event(bad, serde_json::Value::Null)).unwrap_err();
        assert_eq!(rejected.code, RejectCode::InvalidReport);
        assert_eq!(rejected.company_id, Some(CompanyId(company)));
        assert!(
            rejected.reason.contains("report.volunteerHours"),
            "{}",
            rejected.reason
        );
        assert_eq!(
            code(&event(report(Uuid::new_v4()), serde_json::Value::Null)),
            Some(RejectCode::InvalidReport)
        );
        let ok = read(&event(report(company), serde_json::json!(["goodera"]))).unwrap();
        assert_eq!(
            ok.event.providers,
            Some(BTreeSet::from([Provider::Goodera]))
        );
    }
}
