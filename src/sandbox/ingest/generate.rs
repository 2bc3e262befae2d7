//! Record `i` of each stream, generated from `(stream, i, revision)` alone:
//! a record reads the same on every request and in every run. Every record
//! carries realistic personal data (names with accents and apostrophes,
//! emails, phone numbers in several formats, street addresses), some of it
//! inside free text, for the service's redaction to deal with; [`pii_of`]
//! lists it per record for end-to-end tests.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::{
    Stream,
    dataset::{Entry, T0_MS, base_updated_at},
};

const DAY_MS: i64 = 86_400_000;

/// `(as written, as in an email address)`.
type Name = (&'static str, &'static str);

const FIRST_NAMES: [Name; 24] = [
    ("Amara", "amara"),
    ("Bjørn", "bjorn"),
    ("Chiara", "chiara"),
    ("Dmitri", "dmitri"),
    ("Élodie", "elodie"),
    ("Farah", "farah"),
    ("Grzegorz", "grzegorz"),
    ("Hiroshi", "hiroshi"),
    ("Ingrid", "ingrid"),
    ("José", "jose"),
    ("Kwame", "kwame"),
    ("Leilani", "leilani"),
    ("Magnus", "magnus"),
    ("Nadia", "nadia"),
    ("Oluwaseun", "oluwaseun"),
    ("Priya", "priya"),
    ("Quentin", "quentin"),
    ("Rosalind", "rosalind"),
    ("Siobhán", "siobhan"),
    ("Tomasz", "tomasz"),
    ("Valentina", "valentina"),
    ("Wilhelmina", "wilhelmina"),
    ("Ximena", "ximena"),
    ("Zoë", "zoe"),
];

const LAST_NAMES: [Name; 24] = [
    ("Abernathy", "abernathy"),
    ("Björklund", "bjorklund"),
    ("Castellanos", "castellanos"),
    ("Delacroix", "delacroix"),
    ("Eriksen", "eriksen"),
    ("Fitzgerald", "fitzgerald"),
    ("Gonçalves", "goncalves"),
    ("Hashimoto", "hashimoto"),
    ("Ivanova", "ivanova"),
    ("Jankowski", "jankowski"),
    ("Kowalczyk", "kowalczyk"),
    ("Lindqvist", "lindqvist"),
    ("Mbeki", "mbeki"),
    ("Nakamura", "nakamura"),
    ("O'Sullivan", "osullivan"),
    ("Papadopoulos", "papadopoulos"),
    ("Quispe", "quispe"),
    ("Rasmussen", "rasmussen"),
    ("Schäfer", "schafer"),
    ("Thorsdóttir", "thorsdottir"),
    ("Umarov", "umarov"),
    ("Vasquez", "vasquez"),
    ("Whitfield", "whitfield"),
    ("Zieliński", "zielinski"),
];

/// `(street, locality, postal code, country)`.
const STREETS: [(&str, &str, &str, &str); 8] = [
    ("Harbour Road", "Dublin", "D02 X285", "IE"),
    ("Königstraße", "Stuttgart", "70173", "DE"),
    ("Rue de la Paix", "Paris", "75002", "FR"),
    ("Storgatan", "Stockholm", "114 51", "SE"),
    ("Baker Street", "London", "NW1 6XE", "GB"),
    ("Calle de Alcalá", "Madrid", "28014", "ES"),
    ("Karl Johans gate", "Oslo", "0154", "NO"),
    ("Maple Avenue", "Springfield", "62701", "US"),
];

const CAUSES: [&str; 6] = [
    "Education",
    "Environment",
    "Health",
    "Refugee integration",
    "Food security",
    "Digital inclusion",
];
const PROGRAMMES: [&str; 4] = [
    "Give & Volunteer 2026",
    "Skills-based volunteering",
    "Team days",
    "Mentoring week",
];
const CHARITIES: [&str; 6] = [
    "Médecins Sans Frontières",
    "Red Cross",
    "Save the Children",
    "Oxfam",
    "Doctors of the World",
    "Refugee Council",
];
const CURRENCIES: [&str; 5] = ["EUR", "GBP", "USD", "NOK", "SEK"];
const EVENTS: [&str; 6] = [
    "Beach clean-up",
    "Tree planting",
    "CV clinic",
    "Coding club",
    "Food bank shift",
    "Language café",
];
const TITLES: [&str; 6] = [
    "Software Engineer",
    "Account Manager",
    "HR Business Partner",
    "Data Analyst",
    "Product Designer",
    "Finance Controller",
];
const DEPARTMENTS: [&str; 6] = [
    "Engineering",
    "Sales",
    "People",
    "Finance",
    "Operations",
    "Marketing",
];
const KINTELL_PROGRAMMES: [&str; 3] = [
    "Language connect",
    "Career mentoring",
    "Job-seeker coaching",
];
const COURSES: [&str; 4] = [
    "Cloud fundamentals",
    "Data literacy",
    "Project management",
    "Cybersecurity basics",
];
const ENROLLMENT_STATUSES: [&str; 3] = ["enrolled", "completed", "withdrawn"];
const ACTIVITIES: [&str; 4] = [
    "Lunch at the canteen",
    "Tour of the office",
    "Help with the tax form",
    "Coffee chat",
];
const ORGANISATIONS: [&str; 3] = ["Acme Corp", "Nordlys Energy", "Blue Harbour Logistics"];
const ROLES: [&str; 4] = [
    "Junior developer",
    "Warehouse coordinator",
    "Customer support agent",
    "Accounting assistant",
];
const PLACEMENT_STATUSES: [&str; 3] = ["proposed", "active", "completed"];

const SCIM_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const SCIM_ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// Base record `index` of `stream` (revision 0), as served before any
/// change or malformed mark: what a test compares a pulled record with.
pub fn record(stream: Stream, index: u64) -> Value {
    render(
        stream,
        &Entry {
            index,
            revision: 0,
            updated_at: base_updated_at(index),
            malformed: false,
        },
        T0_MS,
    )
}

/// The personal data in record `index` of `stream`, in every revision: each
/// string appears verbatim in the record, free text included. Redaction
/// works if none of them reaches storage or logs.
pub fn pii_of(stream: Stream, index: u64) -> Vec<String> {
    let person = Person::new(index);
    let mut pii = vec![person.email()];
    match stream {
        Stream::BenevityVolunteers
        | Stream::GooderaVolunteers
        | Stream::KintellEnrollments
        | Stream::UpskillingEnrollments => {
            pii.extend([person.first.0.to_owned(), person.last.0.to_owned()]);
        }
        Stream::BenevityDonations
        | Stream::GooderaDonations
        | Stream::BuddyData
        | Stream::MentorshipPlacements => pii.push(person.display_name()),
        Stream::WorkdayDirectory => pii.extend([
            person.first.0.to_owned(),
            person.last.0.to_owned(),
            person.display_name(),
            person.phone(),
            person.street(),
        ]),
    }
    pii.extend(note(stream, &person).map(|note| note.pii));
    pii
}

/// The record an entry of a page stands for.
/// `events_until_ms`: the events (activities, donations, enrolments,
/// placements) happened in the 90 days before it.
pub(crate) fn render(stream: Stream, entry: &Entry, events_until_ms: i64) -> Value {
    let person = Person::new(entry.index);
    let record = Record {
        events_until_ms,
        index: entry.index,
        revision: entry.revision,
        updated_at: rfc3339(entry.updated_at),
        seed: mix(entry.index ^ ((stream as u64 + 1) << 48)),
        note: note(stream, &person),
        person,
    };
    let mut value = match stream {
        Stream::BenevityVolunteers => record.benevity_volunteer(),
        Stream::BenevityDonations => record.benevity_donation(),
        Stream::GooderaVolunteers => record.goodera_volunteer(),
        Stream::GooderaDonations => record.goodera_donation(),
        Stream::WorkdayDirectory => record.scim_user(),
        Stream::KintellEnrollments => {
            record.enrollment("kin-enr", "programme", &KINTELL_PROGRAMMES)
        }
        Stream::UpskillingEnrollments => record.enrollment("ups-enr", "course", &COURSES),
        Stream::BuddyData => record.check_in(),
        Stream::MentorshipPlacements => record.placement(),
    };
    if entry.malformed {
        malform(stream, &mut value);
    }
    value
}

/// How a record marked malformed is broken (`docs/connectors.md`): one
/// field per stream, the rest of the record and of its page intact.
fn malform(stream: Stream, record: &mut Value) {
    let negate = |record: &mut Value, field: &str| {
        let value = record[field].as_f64().unwrap_or_default();
        record[field] = json!(-value);
    };
    let remove = |record: &mut Value, field: &str| {
        if let Some(object) = record.as_object_mut() {
            object.remove(field);
        }
    };
    match stream {
        Stream::BenevityVolunteers | Stream::BuddyData => negate(record, "hours"),
        Stream::BenevityDonations => record["amount"]["currency"] = json!("EURO"),
        Stream::GooderaVolunteers => remove(record, "volunteerId"),
        Stream::GooderaDonations => record["currency"] = json!("EURO"),
        Stream::WorkdayDirectory => remove(record, "id"),
        Stream::KintellEnrollments | Stream::UpskillingEnrollments => {
            record["status"] = json!("graduated");
        }
        Stream::MentorshipPlacements => record["placedAt"] = json!("31/12/2025"),
    }
}

/// Employee `index`, the same in every stream: directory user 42 is the
/// one who logged volunteer record 42.
struct Person {
    index: u64,
    first: Name,
    last: Name,
}

impl Person {
    fn new(index: u64) -> Self {
        let seed = mix(index);
        Self {
            index,
            first: pick(&FIRST_NAMES, seed),
            last: pick(&LAST_NAMES, seed >> 32),
        }
    }

    fn id(&self) -> String {
        format!("E{:08}", self.index)
    }

    fn email(&self) -> String {
        format!(
            "{}.{}{}@acme-corp.example",
            self.first.1, self.last.1, self.index
        )
    }

    fn personal_email(&self) -> String {
        format!("{}{}@mail.example", self.first.1, self.index)
    }

    fn display_name(&self) -> String {
        format!("{} {}", self.first.0, self.last.0)
    }

    /// Fictional numbers (Ofcom's drama ranges, 555-01xx, ARCEP's 01 99 00)
    /// in the formats people type.
    fn phone(&self) -> String {
        let i = self.index;
        match i % 4 {
            0 => format!("+44 20 7946 0{:03}", i % 1000),
            1 => format!("(555) 01{}-{:04}", i % 10, (i / 10) % 10_000),
            2 => format!("07700 900{:03}", i % 1000),
            _ => format!("+33 1 99 00 {:02} {:02}", i % 100, (i / 100) % 100),
        }
    }

    fn street(&self) -> String {
        let (street, ..) = pick(&STREETS, self.index);
        format!("{} {street}", 1 + mix(self.index) % 199)
    }
}

/// Free text with personal data in it, as people write it.
struct Note {
    text: String,
    pii: String,
}

/// Buddy check-ins' activity (two in three) and Goodera events' names (one
/// in ten) carry a phone number or a private email.
fn note(stream: Stream, person: &Person) -> Option<Note> {
    let (text, pii) = match (stream, person.index % 10) {
        (Stream::BuddyData, 0 | 3 | 6 | 9) => {
            let phone = person.phone();
            (format!("Coffee chat; call me on {phone} next time"), phone)
        }
        (Stream::BuddyData, 1 | 4 | 7) => {
            let email = person.personal_email();
            (
                format!("Walked through the transit app, follow-up to {email}"),
                email,
            )
        }
        (Stream::GooderaVolunteers, 3) => {
            let email = person.personal_email();
            (format!("Coding club (RSVP to {email})"), email)
        }
        _ => return None,
    };
    Some(Note { text, pii })
}

/// What every stream's record is made of.
struct Record {
    /// When the 90 days its events fall in end.
    events_until_ms: i64,
    index: u64,
    revision: u32,
    updated_at: String,
    /// Picks the record's attributes, differently per stream.
    seed: u64,
    person: Person,
    note: Option<Note>,
}

impl Record {
    fn id(&self, prefix: &str) -> String {
        format!("{prefix}-{:08}", self.index)
    }

    /// The `n`th of several independent picks from the seed.
    fn pick<T: Copy>(&self, list: &[T], n: u32) -> T {
        pick(list, self.seed.rotate_right(8 * n))
    }

    /// A pick that moves on with each revision: what a change changes.
    fn revised<T: Copy>(&self, list: &[T], n: u32) -> T {
        pick(
            list,
            self.seed
                .rotate_right(8 * n)
                .wrapping_add(u64::from(self.revision)),
        )
    }

    /// Quarter hours, half an hour more per revision.
    fn hours(&self) -> f64 {
        (1 + self.seed % 32) as f64 * 0.25 + f64::from(self.revision) * 0.5
    }

    /// A day within the 90 before the events' end.
    fn date(&self) -> String {
        self.instant().date_naive().to_string()
    }

    /// An instant (to the second) within the 90 days before the events'
    /// end.
    fn instant(&self) -> DateTime<Utc> {
        let before = (self.seed.rotate_right(48) % (90 * DAY_MS as u64)) / 1000 * 1000;
        at(self.events_until_ms - before as i64)
    }

    fn free_text(&self, plain: &[&str]) -> String {
        match &self.note {
            Some(note) => note.text.clone(),
            None => self.pick(plain, 5).to_owned(),
        }
    }

    fn benevity_volunteer(&self) -> Value {
        let person = &self.person;
        json!({
            "id": self.id("bnv-vol"),
            "updatedAt": self.updated_at,
            "employee": {
                "id": person.id(),
                "email": person.email(),
                "firstName": person.first.0,
                "lastName": person.last.0,
            },
            "hours": self.hours(),
            "activityDate": self.date(),
            "cause": self.pick(&CAUSES, 1),
            "programme": self.pick(&PROGRAMMES, 2),
        })
    }

    fn benevity_donation(&self) -> Value {
        let person = &self.person;
        json!({
            "id": self.id("bnv-don"),
            "updatedAt": self.updated_at,
            "donor": {
                "id": person.id(),
                "email": person.email(),
                "displayName": person.display_name(),
            },
            "amount": {
                "amountMinor": 500 * (1 + self.seed % 40 + u64::from(self.revision)),
                "currency": self.pick(&CURRENCIES, 1),
            },
            "donatedAt": rfc3339(self.instant().timestamp_millis()),
            "charity": self.pick(&CHARITIES, 2),
            "matched": self.revised(&[true, false], 3),
        })
    }

    fn goodera_volunteer(&self) -> Value {
        let person = &self.person;
        let goal = |n: u32| 1 + self.seed.rotate_right(8 * n) % 17;
        let mut goals = vec![goal(1), goal(2)];
        goals.sort_unstable();
        goals.dedup();
        json!({
            "volunteerId": self.id("gdr-vol"),
            "lastModified": self.updated_at,
            "participant": {
                "employeeCode": person.id(),
                "email": person.email(),
                "firstName": person.first.0,
                "lastName": person.last.0,
            },
            "hoursLogged": self.hours(),
            "eventDate": self.date(),
            "eventName": self.free_text(&EVENTS),
            "sdgGoals": goals,
        })
    }

    fn goodera_donation(&self) -> Value {
        let person = &self.person;
        // Cents as a decimal in major units, as Goodera sends them; some
        // (12.35, say) are not exact in binary floating point.
        let cents = 100 + self.seed % 20_000 + 500 * u64::from(self.revision);
        json!({
            "donationId": self.id("gdr-don"),
            "lastModified": self.updated_at,
            "donor": {
                "employeeCode": person.id(),
                "email": person.email(),
                "displayName": person.display_name(),
            },
            "value": cents as f64 / 100.0,
            "currency": self.pick(&CURRENCIES, 1),
            "date": self.date(),
            "ngo": self.pick(&CHARITIES, 2),
        })
    }

    fn scim_user(&self) -> Value {
        let person = &self.person;
        let (_, locality, postal_code, country) = pick(&STREETS, self.index);
        let mut enterprise = json!({
            "employeeNumber": person.id(),
            "department": self.revised(&DEPARTMENTS, 1),
            "costCenter": format!("CC-{}", 1000 + self.seed % 60),
            "organization": "Acme Corp",
        });
        // Eight reports per manager; employee 0 has none.
        if self.index > 0 {
            enterprise["manager"] = json!({ "value": scim_id(self.index / 8) });
        }
        json!({
            "schemas": [SCIM_USER, SCIM_ENTERPRISE],
            "id": scim_id(self.index),
            "externalId": person.id(),
            "userName": person.email(),
            "name": {
                "givenName": person.first.0,
                "familyName": person.last.0,
                "formatted": person.display_name(),
            },
            "displayName": person.display_name(),
            "emails": [{ "value": person.email(), "type": "work", "primary": true }],
            "phoneNumbers": [{ "value": person.phone(), "type": "work" }],
            "addresses": [{
                "streetAddress": person.street(),
                "locality": locality,
                "postalCode": postal_code,
                "country": country,
            }],
            "title": self.revised(&TITLES, 2),
            "active": !self.seed.is_multiple_of(25),
            "meta": {
                "resourceType": "User",
                "created": rfc3339(self.instant().timestamp_millis() - 365 * DAY_MS),
                "lastModified": self.updated_at,
            },
            SCIM_ENTERPRISE: enterprise,
        })
    }

    /// Kintell's and Upskilling's enrollments, in a programme or a course.
    fn enrollment(&self, prefix: &str, subject_field: &str, subjects: &[&str]) -> Value {
        let person = &self.person;
        let status = self.revised(&ENROLLMENT_STATUSES, 1);
        let enrolled_at = self.instant();
        let mut record = json!({
            "id": self.id(prefix),
            "updatedAt": self.updated_at,
            "participant": {
                "id": person.id(),
                "email": person.email(),
                "firstName": person.first.0,
                "lastName": person.last.0,
            },
            subject_field: self.pick(subjects, 2),
            "status": status,
            "enrolledAt": rfc3339(enrolled_at.timestamp_millis()),
        });
        if status == "completed" {
            let weeks = 1 + self.seed.rotate_right(24) % 8;
            let completed_at = enrolled_at.timestamp_millis() + 7 * DAY_MS * weeks as i64;
            record["completedAt"] = json!(rfc3339(completed_at));
        }
        record
    }

    fn check_in(&self) -> Value {
        let person = &self.person;
        json!({
            "id": self.id("bud-chk"),
            "updatedAt": self.updated_at,
            "buddy": {
                "id": person.id(),
                "email": person.email(),
                "displayName": person.display_name(),
            },
            // A newcomer meets their buddy several times.
            "newcomerId": format!("NC{:08}", self.index / 3),
            "checkInAt": rfc3339(self.instant().timestamp_millis()),
            "hours": self.hours() / 2.0,
            "activity": self.free_text(&ACTIVITIES),
        })
    }

    fn placement(&self) -> Value {
        let person = &self.person;
        json!({
            "id": self.id("mnt-plc"),
            "updatedAt": self.updated_at,
            "mentor": {
                "id": person.id(),
                "email": person.email(),
                "displayName": person.display_name(),
            },
            "menteeId": format!("MT{:08}", self.index / 2),
            "organisation": self.pick(&ORGANISATIONS, 1),
            "role": self.pick(&ROLES, 2),
            "placedAt": rfc3339(self.instant().timestamp_millis()),
            "status": self.revised(&PLACEMENT_STATUSES, 3),
        })
    }
}

/// 32 hex digits like a Workday ID; the index in front keeps ids in index
/// order.
fn scim_id(index: u64) -> String {
    format!("{index:08x}5c1d4e2a9b0f7a31c6d8e2f4")
}

fn at(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).expect("sandbox instants are near 2026")
}

/// `2026-01-15T09:30:00.000Z`, as the contract writes instants.
pub(crate) fn rfc3339(millis: i64) -> String {
    at(millis).to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn pick<T: Copy>(list: &[T], n: u64) -> T {
    list[(n % list.len() as u64) as usize]
}

/// SplitMix64: a well-spread number per seed, so that attributes vary
/// from record to record without a random generator's state.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use strum::VariantArray;

    use super::*;

    fn entry(index: u64, revision: u32, malformed: bool) -> Entry {
        Entry {
            index,
            revision,
            updated_at: base_updated_at(index),
            malformed,
        }
    }

    #[test]
    fn every_pii_string_is_in_its_record_in_every_revision() {
        for &stream in Stream::VARIANTS {
            for index in [0, 1, 2, 3, 4, 13, 999_999] {
                let pii = pii_of(stream, index);
                assert!(pii.len() >= 2, "{stream} {index}: {pii:?}");
                for revision in [0, 3] {
                    let text = render(stream, &entry(index, revision, false), T0_MS).to_string();
                    for value in &pii {
                        let quoted = serde_json::to_string(value).unwrap();
                        let bare = &quoted[1..quoted.len() - 1];
                        assert!(text.contains(bare), "{stream} {index}: {value} in {text}");
                    }
                }
            }
        }
        assert_eq!(
            pii_of(Stream::GooderaVolunteers, 13).len(),
            4,
            "one Goodera event name in ten carries a private email"
        );
        assert!(pii_of(Stream::BuddyData, 0)[2].starts_with("+44 20 7946 0"));
    }

    #[test]
    fn records_are_deterministic_and_a_revision_changes_them() {
        for &stream in Stream::VARIANTS {
            let base = render(stream, &entry(42, 0, false), T0_MS);
            assert_eq!(base, record(stream, 42), "{stream}");
            assert_eq!(base.to_string(), record(stream, 42).to_string());
            let revised = render(stream, &entry(42, 1, false), T0_MS);
            assert_ne!(base, revised, "{stream}: a change changes content");
            assert_ne!(base, record(stream, 43), "{stream}");
        }
    }

    #[test]
    fn malformed_records_break_one_documented_field() {
        let broken = |stream| render(stream, &entry(7, 0, true), T0_MS);
        let good = |stream| record(stream, 7);
        let hours = broken(Stream::BenevityVolunteers)["hours"]
            .as_f64()
            .unwrap();
        assert!(hours < 0.0);
        assert_eq!(
            broken(Stream::BenevityDonations)["amount"]["currency"],
            "EURO"
        );
        assert!(
            broken(Stream::GooderaVolunteers)
                .get("volunteerId")
                .is_none()
        );
        assert_eq!(broken(Stream::GooderaDonations)["currency"], "EURO");
        assert!(broken(Stream::WorkdayDirectory).get("id").is_none());
        assert_eq!(broken(Stream::KintellEnrollments)["status"], "graduated");
        assert_eq!(broken(Stream::UpskillingEnrollments)["status"], "graduated");
        assert!(broken(Stream::BuddyData)["hours"].as_f64().unwrap() < 0.0);
        assert_eq!(
            broken(Stream::MentorshipPlacements)["placedAt"],
            "31/12/2025"
        );
        for &stream in Stream::VARIANTS {
            let (broken, good) = (broken(stream), good(stream));
            let differing = broken
                .as_object()
                .unwrap()
                .iter()
                .filter(|(field, value)| good.get(field.as_str()) != Some(*value))
                .count();
            let missing = good.as_object().unwrap().len() - broken.as_object().unwrap().len();
            assert_eq!(differing + missing, 1, "{stream}: one field broken");
        }
    }

    /// Prints what generating costs (`--nocapture`); debug builds are
    /// several times slower than the release binary.
    #[test]
    fn generating_a_page_near_the_millionth_record() {
        for &stream in Stream::VARIANTS {
            let started = Instant::now();
            let page: Vec<Value> = (999_000..1_000_000)
                .map(|index| render(stream, &entry(index, 0, false), T0_MS))
                .collect();
            let per_record = started.elapsed() / 1000;
            assert_eq!(page.len(), 1000);
            println!("{stream}: {per_record:?} per record");
        }
    }
}
