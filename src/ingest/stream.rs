//! The nine streams pulled from the seven source systems, and the event type
//! each record becomes (docs/connectors.md, "Ingest sources").

use serde::{Deserialize, Serialize};

/// A source system.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum System {
    Benevity,
    Goodera,
    Workday,
    Kintell,
    Upskilling,
    Buddy,
    Mentorship,
}

/// One stream of records from one system.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    sqlx::Type,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
#[sqlx(type_name = "text", rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum Stream {
    BenevityVolunteers,
    BenevityDonations,
    GooderaVolunteers,
    GooderaDonations,
    WorkdayDirectory,
    KintellEnrollments,
    UpskillingEnrollments,
    BuddyData,
    MentorshipPlacements,
}

/// What a record becomes.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    sqlx::Type,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    utoipa::ToSchema,
)]
#[sqlx(type_name = "text")]
pub enum EventType {
    #[serde(rename = "ingest.volunteer.logged")]
    #[sqlx(rename = "ingest.volunteer.logged")]
    #[strum(serialize = "ingest.volunteer.logged")]
    VolunteerLogged,
    #[serde(rename = "ingest.donation.made")]
    #[sqlx(rename = "ingest.donation.made")]
    #[strum(serialize = "ingest.donation.made")]
    DonationMade,
    #[serde(rename = "ingest.directory.synced")]
    #[sqlx(rename = "ingest.directory.synced")]
    #[strum(serialize = "ingest.directory.synced")]
    DirectorySynced,
    #[serde(rename = "ingest.enrollment.created")]
    #[sqlx(rename = "ingest.enrollment.created")]
    #[strum(serialize = "ingest.enrollment.created")]
    EnrollmentCreated,
    #[serde(rename = "ingest.placement.created")]
    #[sqlx(rename = "ingest.placement.created")]
    #[strum(serialize = "ingest.placement.created")]
    PlacementCreated,
}

impl System {
    /// The provider whose credentials it is read with; `None` for the
    /// platform's internal services.
    pub fn provider(self) -> Option<crate::provider::Provider> {
        use crate::provider::Provider;
        match self {
            Self::Benevity => Some(Provider::Benevity),
            Self::Goodera => Some(Provider::Goodera),
            Self::Workday => Some(Provider::Workday),
            Self::Kintell | Self::Upskilling | Self::Buddy | Self::Mentorship => None,
        }
    }
}

impl Stream {
    pub const ALL: [Stream; 9] = [
        Self::BenevityVolunteers,
        Self::BenevityDonations,
        Self::GooderaVolunteers,
        Self::GooderaDonations,
        Self::WorkdayDirectory,
        Self::KintellEnrollments,
        Self::UpskillingEnrollments,
        Self::BuddyData,
        Self::MentorshipPlacements,
    ];

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn system(self) -> System {
        match self {
            Self::BenevityVolunteers | Self::BenevityDonations => System::Benevity,
            Self::GooderaVolunteers | Self::GooderaDonations => System::Goodera,
            Self::WorkdayDirectory => System::Workday,
            Self::KintellEnrollments => System::Kintell,
            Self::UpskillingEnrollments => System::Upskilling,
            Self::BuddyData => System::Buddy,
            Self::MentorshipPlacements => System::Mentorship,
        }
    }

    pub fn event_type(self) -> EventType {
        match self {
            Self::BenevityVolunteers | Self::GooderaVolunteers | Self::BuddyData => {
                EventType::VolunteerLogged
            }
            Self::BenevityDonations | Self::GooderaDonations => EventType::DonationMade,
            Self::WorkdayDirectory => EventType::DirectorySynced,
            Self::KintellEnrollments | Self::UpskillingEnrollments => EventType::EnrollmentCreated,
            Self::MentorshipPlacements => EventType::PlacementCreated,
        }
    }

    /// The route of seed 002: `benevity/volunteers`, `buddy/data`, …
    pub fn route(self) -> &'static str {
        match self {
            Self::BenevityVolunteers => "benevity/volunteers",
            Self::BenevityDonations => "benevity/donations",
            Self::GooderaVolunteers => "goodera/volunteers",
            Self::GooderaDonations => "goodera/donations",
            Self::WorkdayDirectory => "workday/directory",
            Self::KintellEnrollments => "kintell/enrollments",
            Self::UpskillingEnrollments => "upskilling/enrollments",
            Self::BuddyData => "buddy/data",
            Self::MentorshipPlacements => "mentorship/placements",
        }
    }

    /// The stream a route names (`{system}/{kind}`).
    pub fn from_route(system: &str, kind: &str) -> Option<Stream> {
        Self::ALL
            .into_iter()
            .find(|s| s.route().split_once('/') == Some((system, kind)))
    }
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_read_and_print_as_on_the_wire() {
        for stream in Stream::ALL {
            assert_eq!(serde_json::to_value(stream).unwrap(), stream.as_str());
            assert_eq!(stream.as_str().parse::<Stream>().unwrap(), stream);
            let (system, kind) = stream.route().split_once('/').unwrap();
            assert_eq!(Stream::from_route(system, kind), Some(stream));
            assert!(stream.as_str().starts_with(&stream.system().to_string()));
        }
        assert_eq!(Stream::BuddyData.as_str(), "buddy-data");
        assert_eq!(Stream::from_route("benevity", "directory"), None);
        assert_eq!(
            EventType::DonationMade
                .as_str()
                .parse::<EventType>()
                .unwrap(),
            EventType::DonationMade
        );
    }
}
