//! What the alert receivers (`slack.rs`, `pagerduty.rs`) remember: the
//! messages and events they accepted, PagerDuty's open incidents by dedup
//! key, and their counters. Held in the sandbox state, under its one lock.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

/// The receivers the service's SLA monitor sends alerts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Receiver {
    Slack,
    PagerDuty,
}

impl fmt::Display for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Slack => "Slack",
            Self::PagerDuty => "PagerDuty",
        })
    }
}

/// A count per receiver, as the control API shows it.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct PerReceiver {
    slack: u64,
    pagerduty: u64,
}

impl PerReceiver {
    pub(crate) fn bump(&mut self, receiver: Receiver) {
        let counter = match receiver {
            Receiver::Slack => &mut self.slack,
            Receiver::PagerDuty => &mut self.pagerduty,
        };
        *counter += 1;
    }
}

/// PagerDuty's `event_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventAction {
    Trigger,
    Acknowledge,
    Resolve,
}

/// `GET /_sandbox/alerts`, oldest first.
#[derive(Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Alerts {
    slack: Vec<SlackMessage>,
    pagerduty: Vec<PagerDutyEvent>,
    /// Dedup keys of the incidents triggered and not resolved, in the
    /// order they were opened.
    open_incidents: Vec<String>,
    /// Triggers of an incident already open: PagerDuty folds them into it.
    duplicate_triggers: u64,
    /// Requests the receiver itself refused as invalid; injected faults are
    /// not among them.
    rejected: PerReceiver,
    /// Every request to a receiver's route; shown in `/_sandbox/stats`.
    #[serde(skip)]
    requests: PerReceiver,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct SlackMessage {
    received_at: DateTime<Utc>,
    path: String,
    body: Value,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct PagerDutyEvent {
    received_at: DateTime<Utc>,
    /// The event's own, or the one the sandbox generated for a trigger
    /// without one.
    dedup_key: String,
    body: Value,
}

impl Alerts {
    pub(crate) fn arrived(&mut self, receiver: Receiver) {
        self.requests.bump(receiver);
    }

    pub(crate) fn requests(&self) -> PerReceiver {
        self.requests
    }

    pub(crate) fn reject(&mut self, receiver: Receiver) {
        self.rejected.bump(receiver);
    }

    pub(crate) fn accept_slack(&mut self, path: String, body: Value) {
        self.slack.push(SlackMessage {
            received_at: Utc::now(),
            path,
            body,
        });
    }

    /// Records the event and applies it to its incident.
    pub(crate) fn accept_pagerduty(&mut self, action: EventAction, dedup_key: String, body: Value) {
        let open = self.open_incidents.iter().position(|key| *key == dedup_key);
        match (action, open) {
            (EventAction::Trigger, Some(_)) => self.duplicate_triggers += 1,
            (EventAction::Trigger, None) => self.open_incidents.push(dedup_key.clone()),
            (EventAction::Resolve, Some(position)) => {
                self.open_incidents.remove(position);
            }
            // An acknowledged incident stays open; PagerDuty accepts an
            // event for no open incident and drops it.
            (EventAction::Acknowledge, _) | (EventAction::Resolve, None) => {}
        }
        self.pagerduty.push(PagerDutyEvent {
            received_at: Utc::now(),
            dedup_key,
            body,
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn incidents_open_on_trigger_count_duplicates_and_close_on_resolve() {
        let mut alerts = Alerts::default();
        let event = |alerts: &mut Alerts, action, key: &str| {
            alerts.accept_pagerduty(action, key.to_owned(), json!({}));
        };
        event(&mut alerts, EventAction::Trigger, "a");
        event(&mut alerts, EventAction::Trigger, "b");
        event(&mut alerts, EventAction::Trigger, "a");
        event(&mut alerts, EventAction::Acknowledge, "a");
        event(&mut alerts, EventAction::Resolve, "a");
        event(&mut alerts, EventAction::Resolve, "never-opened");
        assert_eq!(alerts.open_incidents, ["b"]);
        assert_eq!(alerts.duplicate_triggers, 1);
        assert_eq!(
            alerts.pagerduty.len(),
            6,
            "every accepted event is recorded"
        );

        // A resolved key opens a new incident, not a duplicate.
        event(&mut alerts, EventAction::Trigger, "a");
        assert_eq!(alerts.open_incidents, ["b", "a"]);
        assert_eq!(alerts.duplicate_triggers, 1);
    }
}
