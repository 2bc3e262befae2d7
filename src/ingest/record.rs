//! Source records read into typed events (docs/connectors.md gives each
//! source's record shape). A record that does not read is refused with the
//! path of the offending field and a reason that quotes no value: the value
//! may be personal data.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::stream::Stream;

/// A person as a record names them. Every field but the source's id is
/// personal data, redacted before the event is stored (`redact`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Person {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolunteerLogged {
    pub participant: Person,
    pub hours: f64,
    pub activity_date: NaiveDate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub programme: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sdg_goals: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DonationMade {
    pub donor: Person,
    /// In the currency's minor unit (cents), as the delivery reports are.
    pub amount_minor: i64,
    pub currency: String,
    pub donated_at: DateTime<Utc>,
    pub recipient: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectorySynced {
    pub employee: Person,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub employee_number: Option<String>,
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_center: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organisation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnrollmentStatus {
    Enrolled,
    Completed,
    Withdrawn,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentCreated {
    pub participant: Person,
    pub programme: String,
    pub status: EnrollmentStatus,
    pub enrolled_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacementCreated {
    pub mentor: Person,
    pub mentee_id: String,
    pub organisation: String,
    pub role: String,
    pub placed_at: DateTime<Utc>,
    pub status: String,
}

/// A typed event body.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EventData {
    Volunteer(VolunteerLogged),
    Donation(DonationMade),
    Directory(DirectorySynced),
    Enrollment(EnrollmentCreated),
    Placement(PlacementCreated),
}

/// A record read: its id at the source, when the source last changed it,
/// and its event body.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub source_id: String,
    pub updated_at: DateTime<Utc>,
    pub data: EventData,
}

/// Why a record was refused: a field path and a reason, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{field}: {reason}")]
pub struct RecordError {
    pub field: String,
    pub reason: &'static str,
}

impl RecordError {
    fn new(field: impl Into<String>, reason: &'static str) -> Self {
        Self {
            field: field.into(),
            reason,
        }
    }
}

/// Reads one source record of `stream`.
pub fn read(stream: Stream, raw: serde_json::Value) -> Result<Record, RecordError> {
    match stream {
        Stream::BenevityVolunteers => parse::<BenevityVolunteer>(raw)?.into_record(),
        Stream::BenevityDonations => parse::<BenevityDonation>(raw)?.into_record(),
        Stream::GooderaVolunteers => parse::<GooderaVolunteer>(raw)?.into_record(),
        Stream::GooderaDonations => parse::<GooderaDonation>(raw)?.into_record(),
        Stream::WorkdayDirectory => parse::<ScimUser>(raw)?.into_record(),
        Stream::KintellEnrollments | Stream::UpskillingEnrollments => {
            parse::<Enrollment>(raw)?.into_record()
        }
        Stream::BuddyData => parse::<BuddyCheckIn>(raw)?.into_record(),
        Stream::MentorshipPlacements => parse::<Placement>(raw)?.into_record(),
    }
}

/// serde's own messages quote the offending value ("invalid type: string
/// \"jane@…\""), so only the path is kept.
fn parse<T: DeserializeOwned>(raw: serde_json::Value) -> Result<T, RecordError> {
    serde_path_to_error::deserialize(raw).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." { "record".into() } else { path };
        RecordError::new(field, "missing, or not of the documented type")
    })
}

fn id(field: &str, value: String) -> Result<String, RecordError> {
    if value.trim().is_empty() || value.len() > 200 {
        return Err(RecordError::new(field, "must be 1 to 200 characters"));
    }
    Ok(value)
}

fn hours(field: &str, value: f64) -> Result<f64, RecordError> {
    if !(0.0..=24.0).contains(&value) {
        return Err(RecordError::new(field, "must be from 0 to 24 hours"));
    }
    Ok(value)
}

fn currency(field: &str, value: String) -> Result<String, RecordError> {
    if value.len() != 3 || !value.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(RecordError::new(
            field,
            "must be an ISO 4217 code (three capital letters)",
        ));
    }
    Ok(value)
}

fn amount_minor(field: &str, value: i64) -> Result<i64, RecordError> {
    if value < 0 {
        return Err(RecordError::new(field, "must not be negative"));
    }
    Ok(value)
}

/// A decimal amount in major units, in minor units (two decimals).
fn major_to_minor(field: &str, value: f64) -> Result<i64, RecordError> {
    let minor = (value * 100.0).round();
    if !(0.0..=1e15).contains(&minor) {
        return Err(RecordError::new(
            field,
            "must be a non-negative amount below 10^13",
        ));
    }
    Ok(minor as i64)
}

fn text(field: &str, value: String) -> Result<String, RecordError> {
    if value.trim().is_empty() {
        return Err(RecordError::new(field, "must not be blank"));
    }
    Ok(value)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PersonIn {
    id: Option<String>,
    employee_code: Option<String>,
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    display_name: Option<String>,
}

impl From<PersonIn> for Person {
    fn from(p: PersonIn) -> Self {
        Person {
            source_id: p.id.or(p.employee_code),
            email: p.email,
            first_name: p.first_name,
            last_name: p.last_name,
            display_name: p.display_name,
            phone_number: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BenevityVolunteer {
    id: String,
    updated_at: DateTime<Utc>,
    employee: PersonIn,
    hours: f64,
    activity_date: NaiveDate,
    cause: Option<String>,
    programme: Option<String>,
}

impl BenevityVolunteer {
    fn into_record(self) -> Result<Record, RecordError> {
        Ok(Record {
            source_id: id("id", self.id)?,
            updated_at: self.updated_at,
            data: EventData::Volunteer(VolunteerLogged {
                participant: self.employee.into(),
                hours: hours("hours", self.hours)?,
                activity_date: self.activity_date,
                activity: self.cause,
                programme: self.programme,
                sdg_goals: Vec::new(),
            }),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Amount {
    amount_minor: i64,
    currency: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BenevityDonation {
    id: String,
    updated_at: DateTime<Utc>,
    donor: PersonIn,
    amount: Amount,
    donated_at: DateTime<Utc>,
    charity: String,
    matched: Option<bool>,
}

impl BenevityDonation {
    fn into_record(self) -> Result<Record, RecordError> {
        Ok(Record {
            source_id: id("id", self.id)?,
            updated_at: self.updated_at,
            data: EventData::Donation(DonationMade {
                donor: self.donor.into(),
                amount_minor: amount_minor("amount.amountMinor", self.amount.amount_minor)?,
                currency: currency("amount.currency", self.amount.currency)?,
                donated_at: self.donated_at,
                recipient: text("charity", self.charity)?,
                matched: self.matched,
            }),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GooderaVolunteer {
    volunteer_id: String,
    last_modified: DateTime<Utc>,
    participant: PersonIn,
    hours_logged: f64,
    event_date: NaiveDate,
    event_name: Option<String>,
    #[serde(default)]
    sdg_goals: Vec<u8>,
}

impl GooderaVolunteer {
    fn into_record(self) -> Result<Record, RecordError> {
        if self.sdg_goals.iter().any(|g| !(1..=17).contains(g)) {
            return Err(RecordError::new("sdgGoals", "SDG goals are 1 to 17"));
        }
        Ok(Record {
            source_id: id("volunteerId", self.volunteer_id)?,
            updated_at: self.last_modified,
            data: EventData::Volunteer(VolunteerLogged {
                participant: self.participant.into(),
                hours: hours("hoursLogged", self.hours_logged)?,
                activity_date: self.event_date,
                activity: self.event_name,
                programme: None,
                sdg_goals: self.sdg_goals,
            }),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GooderaDonation {
    donation_id: String,
    last_modified: DateTime<Utc>,
    donor: PersonIn,
    value: f64,
    currency: String,
    /// A day: Goodera keeps no time of day for a donation.
    date: NaiveDate,
    ngo: String,
}

impl GooderaDonation {
    fn into_record(self) -> Result<Record, RecordError> {
        Ok(Record {
            source_id: id("donationId", self.donation_id)?,
            updated_at: self.last_modified,
            data: EventData::Donation(DonationMade {
                donor: self.donor.into(),
                amount_minor: major_to_minor("value", self.value)?,
                currency: currency("currency", self.currency)?,
                donated_at: self.date.and_time(chrono::NaiveTime::MIN).and_utc(),
                recipient: text("ngo", self.ngo)?,
                matched: None,
            }),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScimName {
    given_name: Option<String>,
    family_name: Option<String>,
}

#[derive(Deserialize)]
struct ScimValue {
    value: String,
    #[serde(default)]
    primary: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScimMeta {
    last_modified: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScimManager {
    value: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ScimEnterprise {
    employee_number: Option<String>,
    department: Option<String>,
    cost_center: Option<String>,
    organization: Option<String>,
    manager: Option<ScimManager>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScimUser {
    id: String,
    name: Option<ScimName>,
    display_name: Option<String>,
    #[serde(default)]
    emails: Vec<ScimValue>,
    #[serde(default)]
    phone_numbers: Vec<ScimValue>,
    title: Option<String>,
    #[serde(default = "active_by_default")]
    active: bool,
    meta: ScimMeta,
    #[serde(
        rename = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        default
    )]
    enterprise: ScimEnterprise,
}

/// RFC 7643 leaves `active` optional; a listed user is taken as active.
fn active_by_default() -> bool {
    true
}

/// The primary value of a SCIM multi-valued attribute, else the first.
fn primary(values: Vec<ScimValue>) -> Option<String> {
    let at = values.iter().position(|v| v.primary).unwrap_or(0);
    values.into_iter().nth(at).map(|v| v.value)
}

impl ScimUser {
    fn into_record(self) -> Result<Record, RecordError> {
        let name = self.name.unwrap_or(ScimName {
            given_name: None,
            family_name: None,
        });
        let enterprise = self.enterprise;
        Ok(Record {
            source_id: id("id", self.id)?,
            updated_at: self.meta.last_modified,
            data: EventData::Directory(DirectorySynced {
                employee: Person {
                    source_id: enterprise.employee_number.clone(),
                    email: primary(self.emails),
                    first_name: name.given_name,
                    last_name: name.family_name,
                    display_name: self.display_name,
                    phone_number: primary(self.phone_numbers),
                },
                employee_number: enterprise.employee_number,
                active: self.active,
                title: self.title,
                department: enterprise.department,
                cost_center: enterprise.cost_center,
                organisation: enterprise.organization,
                manager_id: enterprise.manager.and_then(|m| m.value),
            }),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Enrollment {
    id: String,
    updated_at: DateTime<Utc>,
    participant: PersonIn,
    /// Kintell names it `programme`, Upskilling `course`.
    #[serde(alias = "course")]
    programme: String,
    status: EnrollmentStatus,
    enrolled_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
}

impl Enrollment {
    fn into_record(self) -> Result<Record, RecordError> {
        if self.status == EnrollmentStatus::Completed && self.completed_at.is_none() {
            return Err(RecordError::new(
                "completedAt",
                "required when the status is completed",
            ));
        }
        Ok(Record {
            source_id: id("id", self.id)?,
            updated_at: self.updated_at,
            data: EventData::Enrollment(EnrollmentCreated {
                participant: self.participant.into(),
                programme: text("programme", self.programme)?,
                status: self.status,
                enrolled_at: self.enrolled_at,
                completed_at: self.completed_at,
            }),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BuddyCheckIn {
    id: String,
    updated_at: DateTime<Utc>,
    buddy: PersonIn,
    check_in_at: DateTime<Utc>,
    hours: f64,
    activity: Option<String>,
}

impl BuddyCheckIn {
    fn into_record(self) -> Result<Record, RecordError> {
        Ok(Record {
            source_id: id("id", self.id)?,
            updated_at: self.updated_at,
            data: EventData::Volunteer(VolunteerLogged {
                participant: self.buddy.into(),
                hours: hours("hours", self.hours)?,
                activity_date: self.check_in_at.date_naive(),
                activity: self.activity,
                programme: Some("buddy".into()),
                sdg_goals: Vec::new(),
            }),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Placement {
    id: String,
    updated_at: DateTime<Utc>,
    mentor: PersonIn,
    mentee_id: String,
    organisation: String,
    role: String,
    placed_at: DateTime<Utc>,
    status: String,
}

impl Placement {
    fn into_record(self) -> Result<Record, RecordError> {
        Ok(Record {
            source_id: id("id", self.id)?,
            updated_at: self.updated_at,
            data: EventData::Placement(PlacementCreated {
                mentor: self.mentor.into(),
                mentee_id: id("menteeId", self.mentee_id)?,
                organisation: text("organisation", self.organisation)?,
                role: text("role", self.role)?,
                placed_at: self.placed_at,
                status: text("status", self.status)?,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn benevity_volunteer() -> serde_json::Value {
        json!({
            "id": "bv-vol-000001", "updatedAt": "2026-01-01T00:00:00.001Z",
            "employee": {"id": "E1", "email": "jane.doe@acme.example", "firstName": "Jane", "lastName": "Doe"},
            "hours": 2.5, "activityDate": "2026-01-15", "cause": "Education", "programme": "Reading",
        })
    }

    #[test]
    fn a_record_reads_into_its_typed_event() {
        let record = read(Stream::BenevityVolunteers, benevity_volunteer()).unwrap();
        assert_eq!(record.source_id, "bv-vol-000001");
        let EventData::Volunteer(event) = record.data else {
            panic!("a volunteer event")
        };
        assert_eq!(event.hours, 2.5);
        assert_eq!(
            event.participant.email.as_deref(),
            Some("jane.doe@acme.example")
        );
    }

    #[test]
    fn a_bad_record_names_the_field_and_quotes_no_value() {
        let mut raw = benevity_volunteer();
        raw["hours"] = json!("jane.doe@acme.example");
        let err = read(Stream::BenevityVolunteers, raw).unwrap_err();
        assert_eq!(err.field, "hours");
        assert!(!err.to_string().contains("jane"), "{err}");

        let mut raw = benevity_volunteer();
        raw["hours"] = json!(-1);
        assert_eq!(
            read(Stream::BenevityVolunteers, raw).unwrap_err().field,
            "hours"
        );
    }

    #[test]
    fn a_scim_user_takes_its_primary_email_and_enterprise_fields() {
        let raw = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "wd-1", "userName": "jane.doe@acme.example",
            "name": {"givenName": "Jane", "familyName": "Doe"},
            "emails": [{"value": "home@x.example"}, {"value": "jane.doe@acme.example", "primary": true}],
            "meta": {"resourceType": "User", "lastModified": "2026-01-01T00:00:00Z"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": "E1", "department": "R&D", "manager": {"value": "wd-0"}
            }
        });
        let record = read(Stream::WorkdayDirectory, raw).unwrap();
        let EventData::Directory(user) = record.data else {
            panic!("a directory event")
        };
        assert_eq!(
            user.employee.email.as_deref(),
            Some("jane.doe@acme.example")
        );
        assert!(user.active);
        assert_eq!(user.manager_id.as_deref(), Some("wd-0"));
        assert_eq!(user.department.as_deref(), Some("R&D"));
    }

    #[test]
    fn goodera_amounts_are_stored_in_minor_units() {
        let raw = json!({
            "donationId": "gd-1", "lastModified": "2026-01-01T00:00:00Z",
            "donor": {"employeeCode": "E1", "email": "a@b.example"},
            "value": 50.1, "currency": "EUR", "date": "2026-01-02", "ngo": "Red Cross",
        });
        let record = read(Stream::GooderaDonations, raw).unwrap();
        let EventData::Donation(donation) = record.data else {
            panic!("a donation")
        };
        assert_eq!(donation.amount_minor, 5010);
        assert_eq!(donation.donor.source_id.as_deref(), Some("E1"));
    }
}
