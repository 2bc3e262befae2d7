//! When a schedule fires: schedules and time zones parsed from what a caller
//! sends, and the instants a schedule fires at. Pure: no clock, database or
//! HTTP. The rules, for API users, are in `docs/scheduling.md`.
//!
//! A schedule is matched against the wall clock of its time zone, one minute
//! at a time in calendar order (skipping whole days, hours and minutes that
//! cannot match), and each matching local time is then placed on the UTC
//! time line:
//!
//! - a local time that exists once fires at that instant;
//! - a local time in a spring-forward gap fires at the first instant after
//!   the gap (so several gap times can share one firing);
//! - a local time in a fall-back fold fires at its first occurrence, and
//!   also at its second when the schedule runs every hour (its hour field
//!   matches all 24 hours), as Vixie cron does.
//!
//! Firings are a set of instants: two local times that land on one instant
//! fire once.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, MappedLocalTime, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta,
    TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// The named schedules. Their text form (wire, database) is the name.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum Preset {
    Hourly,
    #[serde(rename = "every-6-hours")]
    #[strum(serialize = "every-6-hours")]
    Every6Hours,
    Daily,
    Weekly,
    Monthly,
}

impl Preset {
    /// The cron expression the preset fires by.
    pub fn expression(self) -> &'static str {
        match self {
            Self::Hourly => "0 * * * *",
            Self::Every6Hours => "0 */6 * * *",
            Self::Daily => "0 0 * * *",
            Self::Weekly => "0 0 * * 0",
            Self::Monthly => "0 0 1 * *",
        }
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The five fields of a cron expression, named as in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display)]
#[strum(serialize_all = "kebab-case")]
pub enum CronField {
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl CronField {
    /// The values a field may name. Day-of-week takes 7 as well as 0 for
    /// Sunday, as cron does.
    fn bounds(self) -> (u32, u32) {
        match self {
            Self::Minute => (0, 59),
            Self::Hour => (0, 23),
            Self::DayOfMonth => (1, 31),
            Self::Month => (1, 12),
            Self::DayOfWeek => (0, 7),
        }
    }

    /// The values `*` stands for (Sunday once, as 0).
    fn star(self) -> (u32, u32) {
        match self {
            Self::DayOfWeek => (0, 6),
            other => other.bounds(),
        }
    }

    /// The names a field takes besides numbers, each for its number.
    fn names(self) -> &'static [(&'static str, u32)] {
        match self {
            Self::Month => &[
                ("JAN", 1),
                ("FEB", 2),
                ("MAR", 3),
                ("APR", 4),
                ("MAY", 5),
                ("JUN", 6),
                ("JUL", 7),
                ("AUG", 8),
                ("SEP", 9),
                ("OCT", 10),
                ("NOV", 11),
                ("DEC", 12),
            ],
            Self::DayOfWeek => &[
                ("SUN", 0),
                ("MON", 1),
                ("TUE", 2),
                ("WED", 3),
                ("THU", 4),
                ("FRI", 5),
                ("SAT", 6),
            ],
            _ => &[],
        }
    }
}

/// Why a schedule was refused. The messages are written for the caller
/// (a 422 naming the field `schedule`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("is empty")]
    Empty,
    #[error(
        "unknown preset `{0}` (expected hourly, every-6-hours, daily, weekly, monthly \
         or a 5-field cron expression)"
    )]
    UnknownPreset(String),
    #[error("expected 5 fields (minute hour day-of-month month day-of-week), got {0}")]
    FieldCount(usize),
    #[error("{field} has an empty item")]
    EmptyItem { field: CronField },
    #[error("{field} `{text}` is not a number{}", names_hint(*.field))]
    NotANumber { field: CronField, text: String },
    #[error("{field} {value} is out of range {min}-{max}")]
    OutOfRange {
        field: CronField,
        value: String,
        min: u32,
        max: u32,
    },
    #[error("{field} range {start}-{end} runs backwards (a list such as 22-23,0-5 wraps around)")]
    Backwards {
        field: CronField,
        start: String,
        end: String,
    },
    #[error("{field} step `{text}` is not a number of 1 or more")]
    BadStep { field: CronField, text: String },
    #[error(
        "{field} step needs `*` or a range before the slash, as in */15 or 5-59/15, got `{text}`"
    )]
    StepWithoutRange { field: CronField, text: String },
    #[error("never fires: no month it allows has a day-of-month it allows (such as 30 February)")]
    NeverFires,
}

fn names_hint(field: CronField) -> &'static str {
    match field {
        CronField::Month => " or a month name (JAN-DEC)",
        CronField::DayOfWeek => " or a day name (SUN-SAT)",
        _ => "",
    }
}

/// A parsed schedule: a preset or a standard 5-field cron expression
/// (minute hour day-of-month month day-of-week), with lists, ranges, steps,
/// and month and day names. Seconds, years and the extensions some crons
/// have (`L`, `W`, `#`, `?`, `@daily`) are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    text: String,
    preset: Option<Preset>,
    fields: Fields,
}

impl Schedule {
    /// The text it was parsed from, without surrounding whitespace.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The preset it was given as; `None` for a cron expression, even one
    /// equal to a preset's.
    pub fn preset(&self) -> Option<Preset> {
        self.preset
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let text = raw.trim();
        if text.is_empty() {
            return Err(ScheduleError::Empty);
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        let (preset, fields) = match words.as_slice() {
            // A lone word that could start a cron expression is one with
            // too few fields, not a misspelt preset.
            [word] if !word.starts_with(|c: char| c.is_ascii_digit() || c == '*') => {
                let preset = Preset::from_str(word)
                    .map_err(|_| ScheduleError::UnknownPreset((*word).to_owned()))?;
                (Some(preset), Fields::parse(preset.expression())?)
            }
            _ => (None, Fields::parse(text)?),
        };
        Ok(Schedule {
            text: text.to_owned(),
            preset,
            fields,
        })
    }
}

/// An IANA time zone (`America/New_York`), by which a schedule reads the
/// wall clock. The default is UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Zone(Tz);

impl Zone {
    pub const UTC: Zone = Zone(Tz::UTC);

    /// The IANA name.
    pub fn as_str(self) -> &'static str {
        self.0.name()
    }

    pub fn tz(self) -> Tz {
        self.0
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a time zone was refused (a 422 naming the field `timezone`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    #[error("is empty")]
    Empty,
    #[error("unknown time zone `{0}` (expected an IANA name such as America/New_York or UTC)")]
    Unknown(String),
}

impl FromStr for Zone {
    type Err = ZoneError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(ZoneError::Empty);
        }
        Tz::from_str(name)
            .map(Zone)
            .map_err(|_| ZoneError::Unknown(name.to_owned()))
    }
}

/// How day-of-month and day-of-week combine: as in Vixie cron, a day
/// matches either field when both are restricted, and both fields when one
/// of them starts with `*` (so `*` leaves the day to the other field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DayRule {
    Either,
    Both,
}

/// The matching values of each field, one bit per value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fields {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    /// Sunday is bit 0 (a 7 in the expression is folded onto it).
    days_of_week: u64,
    day_rule: DayRule,
}

/// How far ahead a search for a matching minute looks. Between 1901 and
/// 2099 the weekdays of the calendar repeat every 28 years, so a schedule
/// with no matching minute in 28 years has none at all; the longest real
/// wait (29 February on a given weekday) is 28 years.
const SEARCH_YEARS: u32 = 28;

impl Fields {
    fn parse(expression: &str) -> Result<Self, ScheduleError> {
        let parts: Vec<&str> = expression.split_whitespace().collect();
        let [minute, hour, day_of_month, month, day_of_week] = parts.as_slice() else {
            return Err(ScheduleError::FieldCount(parts.len()));
        };
        let day_rule = if day_of_month.starts_with('*') || day_of_week.starts_with('*') {
            DayRule::Both
        } else {
            DayRule::Either
        };
        let mut days_of_week = parse_field(CronField::DayOfWeek, day_of_week)?;
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week & !(1 << 7)) | 1;
        }
        let fields = Fields {
            minutes: parse_field(CronField::Minute, minute)?,
            hours: parse_field(CronField::Hour, hour)?,
            days_of_month: parse_field(CronField::DayOfMonth, day_of_month)?,
            months: parse_field(CronField::Month, month)?,
            days_of_week,
            day_rule,
        };
        // Any fixed start works: the search covers a whole calendar cycle.
        let start = NaiveDate::from_ymd_opt(2001, 1, 1)
            .expect("2001-01-01 is a date")
            .and_time(NaiveTime::MIN);
        if fields.next_match(start).is_none() {
            return Err(ScheduleError::NeverFires);
        }
        Ok(fields)
    }

    /// Whether the hour field matches every hour: such a schedule runs at
    /// an interval, and fires in both copies of a repeated hour.
    fn every_hour(&self) -> bool {
        self.hours == (1 << 24) - 1
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let in_month = self.days_of_month & (1 << date.day()) != 0;
        let in_week = self.days_of_week & (1 << date.weekday().num_days_from_sunday()) != 0;
        match self.day_rule {
            DayRule::Either => in_month || in_week,
            DayRule::Both => in_month && in_week,
        }
    }

    /// The first local minute at or after `from` (a whole minute) that the
    /// fields match, within [`SEARCH_YEARS`]. Skips whole months, days and
    /// hours that cannot match, so a yearly schedule costs a few hundred
    /// steps, not half a million.
    fn next_match(&self, from: NaiveDateTime) -> Option<NaiveDateTime> {
        let until = from
            .date()
            .checked_add_months(Months::new(12 * SEARCH_YEARS))
            .unwrap_or(NaiveDate::MAX);
        let mut date = from.date();
        let (mut hour, mut minute) = (from.hour(), from.minute());
        while date <= until {
            if self.months & (1 << date.month()) == 0 {
                date = date.with_day(1)?.checked_add_months(Months::new(1))?;
                (hour, minute) = (0, 0);
                continue;
            }
            if self.day_matches(date)
                && let Some((h, m)) = self.time_from(hour, minute)
            {
                return date.and_hms_opt(h, m, 0);
            }
            date = date.succ_opt()?;
            (hour, minute) = (0, 0);
        }
        None
    }

    /// The first matching time of day at or after `hour:minute`.
    fn time_from(&self, hour: u32, minute: u32) -> Option<(u32, u32)> {
        let first_hour = first_bit_from(self.hours, hour)?;
        if first_hour == hour {
            // Only the rest of the starting hour is left; later hours are whole.
            if let Some(m) = first_bit_from(self.minutes, minute) {
                return Some((hour, m));
            }
            let next_hour = first_bit_from(self.hours, hour + 1)?;
            return Some((next_hour, first_bit_from(self.minutes, 0)?));
        }
        Some((first_hour, first_bit_from(self.minutes, 0)?))
    }
}

/// The lowest set bit at or above `from`.
fn first_bit_from(bits: u64, from: u32) -> Option<u32> {
    let rest = bits.checked_shr(from)?.checked_shl(from)?;
    (rest != 0).then(|| rest.trailing_zeros())
}

fn parse_field(field: CronField, text: &str) -> Result<u64, ScheduleError> {
    let mut bits = 0;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(ScheduleError::EmptyItem { field });
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        let (start, end) = if range == "*" {
            field.star()
        } else if let Some((start, end)) = range.split_once('-') {
            let (first, last) = (parse_value(field, start)?, parse_value(field, end)?);
            if first > last {
                return Err(ScheduleError::Backwards {
                    field,
                    start: start.to_owned(),
                    end: end.to_owned(),
                });
            }
            (first, last)
        } else if step.is_some() {
            // `5/15` means 5-59/15 in some crons and is an error in others.
            return Err(ScheduleError::StepWithoutRange {
                field,
                text: item.to_owned(),
            });
        } else {
            let value = parse_value(field, range)?;
            (value, value)
        };
        let step =
            match step {
                None => 1,
                Some(step) => number(step).filter(|step| *step >= 1).ok_or_else(|| {
                    ScheduleError::BadStep {
                        field,
                        text: step.to_owned(),
                    }
                })?,
            };
        for value in (start..=end).step_by(step as usize) {
            bits |= 1 << value;
        }
    }
    Ok(bits)
}

/// A number (digits only: no sign) or, in month and day-of-week, a name.
fn parse_value(field: CronField, text: &str) -> Result<u32, ScheduleError> {
    let (min, max) = field.bounds();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return number(text)
            .filter(|value| (min..=max).contains(value))
            .ok_or_else(|| ScheduleError::OutOfRange {
                field,
                value: text.to_owned(),
                min,
                max,
            });
    }
    field
        .names()
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
        .map(|(_, value)| *value)
        .ok_or_else(|| ScheduleError::NotANumber {
            field,
            text: text.to_owned(),
        })
}

fn number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The resolution of a schedule.
const MINUTE: TimeDelta = TimeDelta::minutes(1);

/// The first firing strictly after `after`. `None` only past the end of the
/// calendar chrono can represent.
pub fn next_after(schedule: &Schedule, zone: Zone, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let tz = zone.tz();
    let fields = &schedule.fields;
    let local_after = after.with_timezone(&tz).naive_local();
    // Local times in calendar order fire in time order, except the second
    // copy of a repeated range, which comes after the first copy's later
    // local times; a schedule that fires there is looked at separately.
    let mut from = floor_to_minute(local_after)?.checked_add_signed(MINUTE)?;
    let in_calendar_order = loop {
        let Some(local) = fields.next_match(from) else {
            break None;
        };
        if let Some(firing) = firing_after(fields, tz, local, after) {
            break Some(firing);
        }
        from = local.checked_add_signed(MINUTE)?;
    };
    let in_second_copy = if fields.every_hour() {
        second_copy_firing(fields, tz, after, local_after)
    } else {
        None
    };
    match (in_calendar_order, in_second_copy) {
        (Some(one), Some(other)) => Some(one.min(other)),
        (one, other) => one.or(other),
    }
}

/// What a schedule should do now, after missed firings are folded into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coalesced {
    /// The due time to fire for now: the latest one after the last handled
    /// due time and at or before now. Earlier missed ones are dropped.
    pub fire: Option<DateTime<Utc>>,
    /// The first due time after now (and after the last handled one): the
    /// schedule keeps its rhythm instead of catching up one by one.
    pub next: Option<DateTime<Utc>>,
}

/// Coalesced catch-up. `last_due` is the last due time that was handled;
/// every due time after it and at or before `now` is due. However many
/// passed while no replica ran, the schedule fires once, for the most
/// recent of them: its period is the latest complete one, the data the
/// next firing's period follows on from, and firing an older one would
/// deliver stale data now and the latest period never.
pub fn due_now(
    schedule: &Schedule,
    zone: Zone,
    last_due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Coalesced {
    Coalesced {
        fire: latest_firing(schedule, zone, now, Until::AtOrBefore).filter(|due| *due > last_due),
        next: next_after(schedule, zone, now.max(last_due)),
    }
}

/// Whether a search back from an instant may return the instant itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    Before,
    AtOrBefore,
}

/// The latest firing before `end` (or at it). The firings are those
/// [`next_after`] gives, walked forward from ever earlier starts until one
/// is found, so both directions follow the same rules.
fn latest_firing(
    schedule: &Schedule,
    zone: Zone,
    end: DateTime<Utc>,
    until: Until,
) -> Option<DateTime<Utc>> {
    let in_range = |firing: &DateTime<Utc>| match until {
        Until::Before => *firing < end,
        Until::AtOrBefore => *firing <= end,
    };
    // From an hour (minute schedules) to past the longest wait
    // (29 February on a weekday); each step looks 32 times further back.
    let lookbacks = [
        TimeDelta::hours(1),
        TimeDelta::days(2),
        TimeDelta::days(64),
        TimeDelta::days(2048),
        TimeDelta::days(366 * (i64::from(SEARCH_YEARS) + 1)),
    ];
    for lookback in lookbacks {
        let mut latest = None;
        let mut cursor = end.checked_sub_signed(lookback)?;
        while let Some(firing) = next_after(schedule, zone, cursor).filter(in_range) {
            latest = Some(firing);
            cursor = firing;
        }
        if latest.is_some() {
            return latest;
        }
    }
    None
}

/// The most firings [`preview`] lists.
pub const MAX_PREVIEW: usize = 50;

/// A firing as shown to a person: the instant, and the same instant on the
/// schedule's wall clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UpcomingRun {
    pub utc: DateTime<Utc>,
    /// RFC 3339 with the zone's offset at that instant
    /// (`2025-03-09T03:00:00-04:00`).
    pub local: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be from 1 to {MAX_PREVIEW}, got {0}")]
pub struct PreviewCountError(pub usize);

/// The next `count` (1 to [`MAX_PREVIEW`]) firings after `from`; fewer only
/// at the end of the representable calendar.
pub fn preview(
    schedule: &Schedule,
    zone: Zone,
    from: DateTime<Utc>,
    count: usize,
) -> Result<Vec<UpcomingRun>, PreviewCountError> {
    if !(1..=MAX_PREVIEW).contains(&count) {
        return Err(PreviewCountError(count));
    }
    let firings = std::iter::successors(next_after(schedule, zone, from), |previous| {
        next_after(schedule, zone, *previous)
    })
    .take(count)
    .map(|utc| UpcomingRun {
        utc,
        local: local(utc, zone),
    })
    .collect();
    Ok(firings)
}

/// `at` on the zone's wall clock, RFC 3339 with the offset then.
pub fn local(at: DateTime<Utc>, zone: Zone) -> String {
    at.with_timezone(&zone.tz())
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

/// The span of time a firing covers: from `start` (included) to `end`
/// (excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// What the firing due at `due` covers:
///
/// - `hourly`: the hour before `due`; `every-6-hours`: the six hours before
///   it (elapsed time, whatever the wall clock did);
/// - `daily`: the local calendar day before `due`'s (23 or 25 hours long
///   on a transition day); `weekly`: the seven local days before `due`'s
///   day; `monthly`: the local calendar month before `due`'s. A local midnight in a gap begins when the gap
///   ends, as a firing would;
/// - a cron expression: from the firing before `due` to `due`.
///
/// `None` only at the ends of the representable calendar.
pub fn period(schedule: &Schedule, zone: Zone, due: DateTime<Utc>) -> Option<Period> {
    let tz = zone.tz();
    let due_date = due.with_timezone(&tz).date_naive();
    let days_back = |days: u64| due_date.checked_sub_days(chrono::Days::new(days));
    let (start, end) = match schedule.preset {
        Some(Preset::Hourly) => (due.checked_sub_signed(TimeDelta::hours(1))?, due),
        Some(Preset::Every6Hours) => (due.checked_sub_signed(TimeDelta::hours(6))?, due),
        Some(Preset::Daily) => (day_start(tz, days_back(1)?)?, day_start(tz, due_date)?),
        // The seven local days before the firing's day: the seed's Sunday
        // 00:00 reports Sunday to Saturday, the week that just ended, not a
        // Monday-to-Sunday week that ended six days before.
        Some(Preset::Weekly) => (day_start(tz, days_back(7)?)?, day_start(tz, due_date)?),
        Some(Preset::Monthly) => {
            let first = due_date.with_day(1)?;
            let previous_first = first.checked_sub_months(Months::new(1))?;
            (day_start(tz, previous_first)?, day_start(tz, first)?)
        }
        None => (latest_firing(schedule, zone, due, Until::Before)?, due),
    };
    Some(Period { start, end })
}

/// The first instant of a local day: its midnight, or when the gap ends for
/// a day that begins in one, or the first of two midnights.
pub(crate) fn day_start(tz: Tz, date: NaiveDate) -> Option<DateTime<Utc>> {
    let midnight = date.and_time(NaiveTime::MIN);
    match tz.from_local_datetime(&midnight).earliest() {
        Some(instant) => Some(instant.with_timezone(&Utc)),
        None => end_of_gap(tz, midnight),
    }
}

/// The instant the matching local time `local` fires at, if it is after
/// `after`.
fn firing_after(
    fields: &Fields,
    tz: Tz,
    local: NaiveDateTime,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        MappedLocalTime::Single(instant) => Some(instant.with_timezone(&Utc)),
        MappedLocalTime::Ambiguous(one, other) => {
            let (first, second) = in_order(one, other);
            // A schedule that runs every hour fires in both copies; any
            // other fires once, in the first.
            if first > after || !fields.every_hour() {
                Some(first)
            } else {
                Some(second)
            }
        }
        MappedLocalTime::None => end_of_gap(tz, local),
    }
    .filter(|firing| *firing > after)
}

/// When `after` lies in the first copy of a repeated range (clocks about to
/// go back), the first firing of an every-hour schedule in the second copy.
/// The calendar-order search has passed those local times already.
fn second_copy_firing(
    fields: &Fields,
    tz: Tz,
    after: DateTime<Utc>,
    local_after: NaiveDateTime,
) -> Option<DateTime<Utc>> {
    let MappedLocalTime::Ambiguous(one, other) = tz.from_local_datetime(&local_after) else {
        return None;
    };
    let (first, second) = in_order(one, other);
    if after != first {
        return None;
    }
    // The repeated range is as long as the clocks went back, and holds
    // `local_after`, so it starts no earlier than this.
    let repeated_for = second - first;
    let mut from = ceil_to_minute(local_after.checked_sub_signed(repeated_for)?)?;
    // Later local times fire first in the first copy, which the
    // calendar-order search finds.
    while let Some(local) = fields
        .next_match(from)
        .filter(|local| *local <= local_after)
    {
        if let MappedLocalTime::Ambiguous(one, other) = tz.from_local_datetime(&local) {
            return Some(in_order(one, other).1);
        }
        from = local.checked_add_signed(MINUTE)?;
    }
    None
}

/// The first instant after the spring-forward gap that the local time
/// `in_gap` falls in: the instant the clocks jumped.
fn end_of_gap(tz: Tz, in_gap: NaiveDateTime) -> Option<DateTime<Utc>> {
    // Gaps last an hour or less, except where a zone skipped a whole day
    // (Samoa, 2011-12-30).
    const LONGEST_GAP_MINUTES: u32 = 2 * 24 * 60;
    let mut local = floor_to_minute(in_gap)?;
    let mut instant = None;
    for _ in 0..LONGEST_GAP_MINUTES {
        local = local.checked_add_signed(MINUTE)?;
        if let Some(exists) = tz.from_local_datetime(&local).earliest() {
            instant = Some(exists.with_timezone(&Utc));
            break;
        }
    }
    // That is the first whole local minute after the gap. Zones jump at a
    // whole minute today; some jumped at odd seconds long ago (from local
    // mean time), and then the gap ended up to a minute earlier.
    let mut instant = instant?;
    while let Some(before) = instant.checked_sub_signed(TimeDelta::seconds(1))
        && before.with_timezone(&tz).naive_local() > in_gap
    {
        instant = before;
    }
    Some(instant)
}

fn in_order<T: TimeZone>(one: DateTime<T>, other: DateTime<T>) -> (DateTime<Utc>, DateTime<Utc>) {
    let (one, other) = (one.with_timezone(&Utc), other.with_timezone(&Utc));
    (one.min(other), one.max(other))
}

fn floor_to_minute(local: NaiveDateTime) -> Option<NaiveDateTime> {
    local.with_second(0)?.with_nanosecond(0)
}

fn ceil_to_minute(local: NaiveDateTime) -> Option<NaiveDateTime> {
    let floor = floor_to_minute(local)?;
    if floor == local {
        Some(floor)
    } else {
        floor.checked_add_signed(MINUTE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    fn schedule(text: &str) -> Schedule {
        text.parse().unwrap()
    }

    fn refusal(text: &str) -> String {
        text.parse::<Schedule>().unwrap_err().to_string()
    }

    #[test]
    fn presets_parse_by_name_and_keep_their_text() {
        for &preset in Preset::VARIANTS {
            let parsed = schedule(preset.as_str());
            assert_eq!(parsed.preset(), Some(preset));
            assert_eq!(parsed.as_str(), preset.as_str());
            assert_eq!(parsed.fields, Fields::parse(preset.expression()).unwrap());
            assert_eq!(
                serde_json::to_value(preset).unwrap(),
                serde_json::json!(preset.as_str())
            );
            assert_eq!(preset.to_string(), preset.as_str());
        }
        assert_eq!(Preset::Every6Hours.as_str(), "every-6-hours");
        assert_eq!(
            serde_json::from_str::<Preset>("\"every-6-hours\"").unwrap(),
            Preset::Every6Hours
        );
        // An expression equal to a preset's is not the preset.
        let cron = schedule(" 0 0 * * * ");
        assert_eq!(cron.preset(), None);
        assert_eq!(cron.as_str(), "0 0 * * *");
    }

    #[test]
    fn cron_expressions_take_lists_ranges_steps_and_names() {
        let fields = schedule("0,30 9-17/2 */10 JAN-mar,Dec MON-FRI").fields;
        assert_eq!(fields.minutes, 1 | 1 << 30);
        assert_eq!(fields.hours, 1 << 9 | 1 << 11 | 1 << 13 | 1 << 15 | 1 << 17);
        assert_eq!(fields.days_of_month, 1 << 1 | 1 << 11 | 1 << 21 | 1 << 31);
        assert_eq!(fields.months, 1 << 1 | 1 << 2 | 1 << 3 | 1 << 12);
        assert_eq!(fields.days_of_week, 0b0111110);
        assert_eq!(fields.day_rule, DayRule::Both);
        // 7 is Sunday too.
        assert_eq!(schedule("0 0 * * 5-7").fields.days_of_week, 0b1100001);
        assert_eq!(schedule("0 0 1 * 1").fields.day_rule, DayRule::Either);
    }

    #[test]
    fn refusals_say_why() {
        for (text, why) in [
            ("", "is empty"),
            (
                "yearly",
                "unknown preset `yearly` (expected hourly, every-6-hours, daily, weekly, \
                 monthly or a 5-field cron expression)",
            ),
            (
                "0 0 0 * * *",
                "expected 5 fields (minute hour day-of-month month day-of-week), got 6",
            ),
            (
                "0 0 0 * * * 2030",
                "expected 5 fields (minute hour day-of-month month day-of-week), got 7",
            ),
            (
                "*/5",
                "expected 5 fields (minute hour day-of-month month day-of-week), got 1",
            ),
            ("61 * * * *", "minute 61 is out of range 0-59"),
            ("0 24 * * *", "hour 24 is out of range 0-23"),
            ("0 0 0 * *", "day-of-month 0 is out of range 1-31"),
            ("0 0 * 13 *", "month 13 is out of range 1-12"),
            ("0 0 * * 8", "day-of-week 8 is out of range 0-7"),
            (
                "0 0 * * 99999999999",
                "day-of-week 99999999999 is out of range 0-7",
            ),
            ("0 0 L * *", "day-of-month `L` is not a number"),
            (
                "0 0 * FOO *",
                "month `FOO` is not a number or a month name (JAN-DEC)",
            ),
            (
                "0 0 * * 1#2",
                "day-of-week `1#2` is not a number or a day name (SUN-SAT)",
            ),
            ("0 0 ? * *", "day-of-month `?` is not a number"),
            ("0 -1 * * *", "hour `` is not a number"),
            ("1,,2 * * * *", "minute has an empty item"),
            (
                "0 22-5 * * *",
                "hour range 22-5 runs backwards (a list such as 22-23,0-5 wraps around)",
            ),
            (
                "*/0 * * * *",
                "minute step `0` is not a number of 1 or more",
            ),
            (
                "*/x * * * *",
                "minute step `x` is not a number of 1 or more",
            ),
            (
                "5/15 * * * *",
                "minute step needs `*` or a range before the slash, as in */15 or 5-59/15, \
                 got `5/15`",
            ),
            (
                "0 0 30 2 *",
                "never fires: no month it allows has a day-of-month it allows \
                 (such as 30 February)",
            ),
            (
                "0 9 31 4,6,9,11 *",
                "never fires: no month it allows has a day-of-month it allows \
                 (such as 30 February)",
            ),
        ] {
            assert_eq!(refusal(text), why, "{text:?}");
        }
        // Rare but real: 29 February, and 29 February on a Sunday.
        schedule("0 0 29 2 *");
        schedule("0 0 29 2 */7");
    }

    #[test]
    fn zones_are_iana_names_and_default_to_utc() {
        let zone: Zone = "America/New_York".parse().unwrap();
        assert_eq!(zone.as_str(), "America/New_York");
        assert_eq!(zone.tz(), chrono_tz::America::New_York);
        assert_eq!(Zone::default(), Zone::UTC);
        assert_eq!(Zone::default().to_string(), "UTC");
        assert_eq!(
            "Mars/Olympus".parse::<Zone>().unwrap_err().to_string(),
            "unknown time zone `Mars/Olympus` (expected an IANA name such as \
             America/New_York or UTC)"
        );
        assert_eq!(" ".parse::<Zone>().unwrap_err(), ZoneError::Empty);
    }

    fn zone(name: &str) -> Zone {
        name.parse().unwrap()
    }

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
    }

    /// The first `count` firings after `after`, in UTC, as RFC 3339.
    fn firings(text: &str, zone_name: &str, after: &str, count: usize) -> Vec<String> {
        let (schedule, zone) = (schedule(text), zone(zone_name));
        let mut instant = at(after);
        (0..count)
            .map(|_| {
                instant = next_after(&schedule, zone, instant).unwrap();
                instant.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            })
            .collect()
    }

    const NEW_YORK: &str = "America/New_York";
    const BERLIN: &str = "Europe/Berlin";
    const SAO_PAULO: &str = "America/Sao_Paulo";

    #[test]
    fn a_time_in_the_spring_gap_fires_when_the_gap_ends() {
        // New York 2025-03-09: 02:00 EST became 03:00 EDT (07:00Z).
        assert_eq!(
            firings("30 2 * * *", NEW_YORK, "2025-03-08T12:00:00Z", 3),
            [
                "2025-03-09T07:00:00Z",
                "2025-03-10T06:30:00Z",
                "2025-03-11T06:30:00Z"
            ]
        );
        // Two gap times share the one firing.
        assert_eq!(
            firings("0,30 2 * * *", NEW_YORK, "2025-03-09T00:00:00Z", 3),
            [
                "2025-03-09T07:00:00Z",
                "2025-03-10T06:00:00Z",
                "2025-03-10T06:30:00Z"
            ]
        );
        // Every hour: 02:00 does not exist, its firing is 03:00 EDT's.
        assert_eq!(
            firings("hourly", NEW_YORK, "2025-03-09T05:30:00Z", 3),
            [
                "2025-03-09T06:00:00Z",
                "2025-03-09T07:00:00Z",
                "2025-03-09T08:00:00Z"
            ]
        );
        assert_eq!(
            firings("*/15 * * * *", NEW_YORK, "2025-03-09T06:40:00Z", 3),
            [
                "2025-03-09T06:45:00Z",
                "2025-03-09T07:00:00Z",
                "2025-03-09T07:15:00Z"
            ]
        );
        // 02:30 is a time that does not exist too: it fires at 03:00 EDT,
        // half an hour before 03:30 EDT.
        assert_eq!(
            firings("30 * * * *", NEW_YORK, "2025-03-09T06:00:00Z", 3),
            [
                "2025-03-09T06:30:00Z",
                "2025-03-09T07:00:00Z",
                "2025-03-09T07:30:00Z"
            ]
        );
    }

    #[test]
    fn a_repeated_time_fires_once_when_its_hour_is_named() {
        // New York 2025-11-02: 02:00 EDT became 01:00 EST (06:00Z), so
        // 01:30 came at 05:30Z (EDT) and at 06:30Z (EST).
        assert_eq!(
            firings("30 1 * * *", NEW_YORK, "2025-11-01T12:00:00Z", 2),
            ["2025-11-02T05:30:00Z", "2025-11-03T06:30:00Z"]
        );
        // Asked from inside the second copy, too.
        assert_eq!(
            firings("30 1 * * *", NEW_YORK, "2025-11-02T06:10:00Z", 1),
            ["2025-11-03T06:30:00Z"]
        );
        assert_eq!(
            firings("*/20 1 * * *", NEW_YORK, "2025-11-02T04:59:00Z", 4),
            [
                "2025-11-02T05:00:00Z",
                "2025-11-02T05:20:00Z",
                "2025-11-02T05:40:00Z",
                "2025-11-03T06:00:00Z"
            ]
        );
    }

    #[test]
    fn an_every_hour_schedule_fires_in_both_copies_of_a_repeated_hour() {
        assert_eq!(
            firings("hourly", NEW_YORK, "2025-11-02T04:30:00Z", 3),
            [
                "2025-11-02T05:00:00Z",
                "2025-11-02T06:00:00Z",
                "2025-11-02T07:00:00Z"
            ]
        );
        // From anywhere in the first copy, the second copy comes next.
        assert_eq!(
            firings("hourly", NEW_YORK, "2025-11-02T05:59:59Z", 1),
            ["2025-11-02T06:00:00Z"]
        );
        assert_eq!(
            firings("*/20 * * * *", NEW_YORK, "2025-11-02T05:30:00Z", 7),
            [
                "2025-11-02T05:40:00Z",
                "2025-11-02T06:00:00Z",
                "2025-11-02T06:20:00Z",
                "2025-11-02T06:40:00Z",
                "2025-11-02T07:00:00Z",
                "2025-11-02T07:20:00Z",
                "2025-11-02T07:40:00Z"
            ]
        );
        assert_eq!(
            firings("45 * * * *", NEW_YORK, "2025-11-02T05:50:00Z", 2),
            ["2025-11-02T06:45:00Z", "2025-11-02T07:45:00Z"]
        );
    }

    #[test]
    fn a_missing_midnight_fires_when_the_day_begins() {
        // Sao Paulo 2018-11-04: 00:00 -03 became 01:00 -02 (03:00Z).
        assert_eq!(
            firings("daily", SAO_PAULO, "2018-11-02T12:00:00Z", 3),
            [
                "2018-11-03T03:00:00Z",
                "2018-11-04T03:00:00Z",
                "2018-11-05T02:00:00Z"
            ]
        );
        assert_eq!(
            firings("every-6-hours", SAO_PAULO, "2018-11-03T20:00:00Z", 4),
            [
                "2018-11-03T21:00:00Z",
                "2018-11-04T03:00:00Z",
                "2018-11-04T08:00:00Z",
                "2018-11-04T14:00:00Z"
            ]
        );
    }

    #[test]
    fn berlin_transitions_follow_the_same_rules() {
        // 2025-03-30: 02:00 CET became 03:00 CEST (01:00Z).
        assert_eq!(
            firings("30 2 * * *", BERLIN, "2025-03-29T12:00:00Z", 2),
            ["2025-03-30T01:00:00Z", "2025-03-31T00:30:00Z"]
        );
        assert_eq!(
            firings("hourly", BERLIN, "2025-03-29T23:30:00Z", 3),
            [
                "2025-03-30T00:00:00Z",
                "2025-03-30T01:00:00Z",
                "2025-03-30T02:00:00Z"
            ]
        );
        // 2025-10-26: 03:00 CEST became 02:00 CET (01:00Z).
        assert_eq!(
            firings("30 2 * * *", BERLIN, "2025-10-25T12:00:00Z", 2),
            ["2025-10-26T00:30:00Z", "2025-10-27T01:30:00Z"]
        );
        assert_eq!(
            firings("hourly", BERLIN, "2025-10-25T23:30:00Z", 3),
            [
                "2025-10-26T00:00:00Z",
                "2025-10-26T01:00:00Z",
                "2025-10-26T02:00:00Z"
            ]
        );
    }

    #[test]
    fn every_6_hours_keeps_local_hours_across_transitions() {
        assert_eq!(
            firings("every-6-hours", NEW_YORK, "2025-11-01T23:00:00Z", 3),
            [
                "2025-11-02T04:00:00Z",
                "2025-11-02T11:00:00Z",
                "2025-11-02T17:00:00Z"
            ]
        );
        assert_eq!(
            firings("every-6-hours", NEW_YORK, "2025-03-08T23:00:00Z", 3),
            [
                "2025-03-09T05:00:00Z",
                "2025-03-09T10:00:00Z",
                "2025-03-09T16:00:00Z"
            ]
        );
    }

    #[test]
    fn days_months_and_weekdays() {
        // Only months with a 31st.
        assert_eq!(
            firings("0 9 31 * *", "UTC", "2025-01-01T00:00:00Z", 8),
            [
                "2025-01-31T09:00:00Z",
                "2025-03-31T09:00:00Z",
                "2025-05-31T09:00:00Z",
                "2025-07-31T09:00:00Z",
                "2025-08-31T09:00:00Z",
                "2025-10-31T09:00:00Z",
                "2025-12-31T09:00:00Z",
                "2026-01-31T09:00:00Z"
            ]
        );
        // Both day fields restricted: either matches (Fridays, and the 13th).
        assert_eq!(
            firings("0 0 13 * FRI", "UTC", "2025-06-10T00:00:00Z", 4),
            [
                "2025-06-13T00:00:00Z",
                "2025-06-20T00:00:00Z",
                "2025-06-27T00:00:00Z",
                "2025-07-04T00:00:00Z"
            ]
        );
        // One starts with `*`: both must match (odd days that are Mondays).
        assert_eq!(
            firings("0 0 */2 * 1", "UTC", "2025-06-01T00:00:00Z", 2),
            ["2025-06-09T00:00:00Z", "2025-06-23T00:00:00Z"]
        );
        // Weekdays at 09:00 New York time, skipping the weekend.
        assert_eq!(
            firings("0 9 * * 1-5", NEW_YORK, "2025-06-05T14:00:00Z", 3),
            [
                "2025-06-06T13:00:00Z",
                "2025-06-09T13:00:00Z",
                "2025-06-10T13:00:00Z"
            ]
        );
        // Sundays at local midnight.
        assert_eq!(
            firings("weekly", NEW_YORK, "2025-10-26T04:00:00Z", 2),
            ["2025-11-02T04:00:00Z", "2025-11-09T05:00:00Z"]
        );
        assert_eq!(
            firings("monthly", NEW_YORK, "2025-10-15T00:00:00Z", 2),
            ["2025-11-01T04:00:00Z", "2025-12-01T05:00:00Z"]
        );
        // 29 February comes every four years.
        assert_eq!(
            firings("0 0 29 2 *", "UTC", "2025-01-01T00:00:00Z", 2),
            ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]
        );
    }

    #[test]
    fn firings_are_strictly_after_the_given_instant() {
        assert_eq!(
            firings("daily", "UTC", "2025-06-01T00:00:00Z", 1),
            ["2025-06-02T00:00:00Z"]
        );
        assert_eq!(
            firings("daily", "UTC", "2025-05-31T23:59:59.999Z", 1),
            ["2025-06-01T00:00:00Z"]
        );
    }

    fn period_of(text: &str, zone_name: &str, due: &str) -> (String, String, i64) {
        let period = period(&schedule(text), zone(zone_name), at(due)).unwrap();
        let show =
            |instant: DateTime<Utc>| instant.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        (
            show(period.start),
            show(period.end),
            (period.end - period.start).num_hours(),
        )
    }

    #[test]
    fn missed_firings_fold_into_one_and_the_rhythm_goes_on() {
        let daily = schedule("0 6 * * *");
        let last_due = at("2025-06-01T06:00:00Z");
        // Down from just after the 1st's run to the 4th at noon: the 2nd,
        // 3rd and 4th were missed. The 4th fires, once.
        let now = at("2025-06-04T12:00:00Z");
        let caught_up = due_now(&daily, Zone::UTC, last_due, now);
        assert_eq!(
            caught_up,
            Coalesced {
                fire: Some(at("2025-06-04T06:00:00Z")),
                next: Some(at("2025-06-05T06:00:00Z")),
            }
        );
        // Handled: nothing more is due until the next time.
        let fired = caught_up.fire.unwrap();
        assert_eq!(
            due_now(&daily, Zone::UTC, fired, at("2025-06-04T12:01:00Z")),
            Coalesced {
                fire: None,
                next: Some(at("2025-06-05T06:00:00Z")),
            }
        );
        // A due time equal to now is due.
        assert_eq!(
            due_now(&daily, Zone::UTC, fired, at("2025-06-05T06:00:00Z")).fire,
            Some(at("2025-06-05T06:00:00Z"))
        );
        // A last due time ahead of now (clocks apart) fires nothing again.
        assert_eq!(
            due_now(
                &daily,
                Zone::UTC,
                at("2025-06-05T06:00:00Z"),
                at("2025-06-05T05:59:00Z")
            ),
            Coalesced {
                fire: None,
                next: Some(at("2025-06-06T06:00:00Z")),
            }
        );
        // Down for a year, every minute: still one firing.
        let every_minute = schedule("* * * * *");
        assert_eq!(
            due_now(
                &every_minute,
                zone(BERLIN),
                at("2024-06-01T00:00:00Z"),
                at("2025-06-01T00:00:30Z")
            ),
            Coalesced {
                fire: Some(at("2025-06-01T00:00:00Z")),
                next: Some(at("2025-06-01T00:01:00Z")),
            }
        );
    }

    #[test]
    fn presets_cover_the_span_before_their_due_time() {
        assert_eq!(
            period_of("hourly", NEW_YORK, "2025-11-02T06:00:00Z"),
            (
                "2025-11-02T05:00:00Z".into(),
                "2025-11-02T06:00:00Z".into(),
                1
            )
        );
        assert_eq!(
            period_of("every-6-hours", NEW_YORK, "2025-11-02T11:00:00Z"),
            (
                "2025-11-02T05:00:00Z".into(),
                "2025-11-02T11:00:00Z".into(),
                6
            )
        );
        assert_eq!(
            period_of("daily", BERLIN, "2025-06-02T22:00:00Z"),
            (
                "2025-06-01T22:00:00Z".into(),
                "2025-06-02T22:00:00Z".into(),
                24
            )
        );
        // 2025-03-09 in New York was 23 hours long, 2025-11-02 25.
        assert_eq!(
            period_of("daily", NEW_YORK, "2025-03-10T04:00:00Z"),
            (
                "2025-03-09T05:00:00Z".into(),
                "2025-03-10T04:00:00Z".into(),
                23
            )
        );
        assert_eq!(
            period_of("daily", NEW_YORK, "2025-11-03T05:00:00Z"),
            (
                "2025-11-02T04:00:00Z".into(),
                "2025-11-03T05:00:00Z".into(),
                25
            )
        );
        // Sao Paulo's 2018-11-04 began at 01:00 -02 (03:00Z): it ends the
        // 3rd and begins the 4th, a day of 23 hours.
        assert_eq!(
            period_of("daily", SAO_PAULO, "2018-11-04T03:00:00Z"),
            (
                "2018-11-03T03:00:00Z".into(),
                "2018-11-04T03:00:00Z".into(),
                24
            )
        );
        assert_eq!(
            period_of("daily", SAO_PAULO, "2018-11-05T02:00:00Z"),
            (
                "2018-11-04T03:00:00Z".into(),
                "2018-11-05T02:00:00Z".into(),
                23
            )
        );
        // Sunday 2025-11-09 00:00 EST: the week that just ended, Sunday 2
        // November to Saturday 8 November, across the fall-back (169 hours).
        assert_eq!(
            period_of("weekly", NEW_YORK, "2025-11-09T05:00:00Z"),
            (
                "2025-11-02T04:00:00Z".into(),
                "2025-11-09T05:00:00Z".into(),
                169
            )
        );
        assert_eq!(
            period_of("monthly", NEW_YORK, "2025-12-01T05:00:00Z"),
            (
                "2025-11-01T04:00:00Z".into(),
                "2025-12-01T05:00:00Z".into(),
                721
            )
        );
        assert_eq!(
            period_of("monthly", "UTC", "2025-03-01T00:00:00Z"),
            (
                "2025-02-01T00:00:00Z".into(),
                "2025-03-01T00:00:00Z".into(),
                672
            )
        );
    }

    #[test]
    fn a_cron_expression_covers_the_time_since_its_previous_firing() {
        // Friday 09:00 to Monday 09:00, New York time.
        assert_eq!(
            period_of("0 9 * * 1-5", NEW_YORK, "2025-06-09T13:00:00Z"),
            (
                "2025-06-06T13:00:00Z".into(),
                "2025-06-09T13:00:00Z".into(),
                72
            )
        );
        // The previous firing is found by the same rules: here the one the
        // spring gap moved to 03:00 EDT.
        assert_eq!(
            period_of("30 2 * * *", NEW_YORK, "2025-03-10T06:30:00Z"),
            (
                "2025-03-09T07:00:00Z".into(),
                "2025-03-10T06:30:00Z".into(),
                23
            )
        );
        // And the second copy of a repeated hour.
        assert_eq!(
            period_of("0 * * * *", NEW_YORK, "2025-11-02T07:00:00Z"),
            (
                "2025-11-02T06:00:00Z".into(),
                "2025-11-02T07:00:00Z".into(),
                1
            )
        );
        // A far previous firing: four years back.
        assert_eq!(
            period_of("0 0 29 2 *", "UTC", "2028-02-29T00:00:00Z"),
            (
                "2024-02-29T00:00:00Z".into(),
                "2028-02-29T00:00:00Z".into(),
                35064
            )
        );
    }

    #[test]
    fn preview_lists_1_to_50_firings_with_local_times() {
        let (daily, new_york) = (schedule("30 2 * * *"), zone(NEW_YORK));
        let from = at("2025-03-08T12:00:00Z");
        let listed = preview(&daily, new_york, from, 2).unwrap();
        assert_eq!(
            listed,
            [
                UpcomingRun {
                    utc: at("2025-03-09T07:00:00Z"),
                    local: "2025-03-09T03:00:00-04:00".into(),
                },
                UpcomingRun {
                    utc: at("2025-03-10T06:30:00Z"),
                    local: "2025-03-10T02:30:00-04:00".into(),
                },
            ]
        );
        assert_eq!(
            serde_json::to_value(&listed[0]).unwrap(),
            serde_json::json!({"utc": "2025-03-09T07:00:00Z", "local": "2025-03-09T03:00:00-04:00"})
        );
        assert_eq!(preview(&daily, new_york, from, 50).unwrap().len(), 50);
        assert_eq!(
            preview(&daily, Zone::UTC, from, 1).unwrap()[0].local,
            "2025-03-09T02:30:00+00:00"
        );
        for count in [0, 51] {
            assert_eq!(
                preview(&daily, new_york, from, count)
                    .unwrap_err()
                    .to_string(),
                format!("must be from 1 to 50, got {count}")
            );
        }
        // A yearly schedule: 50 years ahead in one call.
        let yearly = preview(&schedule("0 0 1 1 *"), new_york, from, 50).unwrap();
        assert_eq!(yearly[49].local, "2075-01-01T00:00:00-05:00");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Zones with transitions of every kind: an hour at 02:00 (New
        /// York, Berlin), at midnight (Sao Paulo until 2019), half an hour
        /// (Lord Howe), southern summers (Sydney), none (Kolkata, UTC).
        const ZONES: [&str; 7] = [
            "UTC",
            "America/New_York",
            "Europe/Berlin",
            "America/Sao_Paulo",
            "Australia/Lord_Howe",
            "Australia/Sydney",
            "Asia/Kolkata",
        ];

        fn cron_expression() -> impl Strategy<Value = String> {
            (
                prop::sample::select(vec!["0", "30", "59", "*/15", "0,45", "*"]),
                prop::sample::select(vec!["*", "0", "1", "2", "3", "23", "*/6", "1-3", "9-17"]),
                prop::sample::select(vec!["*", "1", "15", "29", "31", "1-7"]),
                prop::sample::select(vec!["*", "1", "3", "*/3", "2,11", "10-12"]),
                prop::sample::select(vec!["*", "0", "1-5", "6"]),
            )
                .prop_map(|(minute, hour, dom, month, dow)| {
                    format!("{minute} {hour} {dom} {month} {dow}")
                })
        }

        fn any_schedule() -> impl Strategy<Value = Schedule> {
            prop_oneof![
                prop::sample::select(Preset::VARIANTS).prop_map(|p| p.as_str().to_owned()),
                cron_expression(),
            ]
            .prop_filter_map("never fires", |text| text.parse().ok())
        }

        /// The instants from 2018 to 2026 when the zone's offset changed.
        fn transitions(tz: Tz) -> Vec<DateTime<Utc>> {
            use chrono::Offset;
            let offset = |instant: DateTime<Utc>| instant.with_timezone(&tz).offset().fix();
            let mut found = Vec::new();
            let mut day = at("2018-01-01T00:00:00Z");
            while day < at("2027-01-01T00:00:00Z") {
                let next = day + TimeDelta::days(1);
                if offset(day) != offset(next) {
                    let (mut before, mut after) = (day, next);
                    while after - before > TimeDelta::seconds(1) {
                        let middle = before + (after - before) / 2;
                        if offset(middle) == offset(before) {
                            before = middle;
                        } else {
                            after = middle;
                        }
                    }
                    found.push(after);
                }
                day = next;
            }
            found
        }

        static TRANSITIONS: std::sync::LazyLock<
            std::collections::HashMap<&str, Vec<DateTime<Utc>>>,
        > = std::sync::LazyLock::new(|| {
            ZONES
                .iter()
                .map(|name| (*name, transitions(zone(name).tz())))
                .collect()
        });

        /// A zone, and an instant from 2024 to 2026 or, half of the time,
        /// within three hours of one of the zone's transitions, where the
        /// rules are tested (a uniform instant is in a repeated hour once in
        /// 4,000 draws).
        fn zone_and_instant() -> impl Strategy<Value = (Zone, DateTime<Utc>)> {
            let start = at("2024-01-01T00:00:00Z").timestamp();
            let end = at("2027-01-01T00:00:00Z").timestamp();
            (
                prop::sample::select(&ZONES[..]),
                start..end,
                any::<bool>(),
                any::<prop::sample::Index>(),
                -3 * 3600i64..3 * 3600,
            )
                .prop_map(|(name, anywhere, near, which, shift)| {
                    let zone = zone(name);
                    let transitions = &TRANSITIONS[name];
                    let instant = if near && !transitions.is_empty() {
                        *which.get(transitions) + TimeDelta::seconds(shift)
                    } else {
                        DateTime::from_timestamp(anywhere, 0).unwrap()
                    };
                    (zone, instant)
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]

            #[test]
            fn firings_increase_and_do_not_depend_on_where_the_search_starts(
                schedule in any_schedule(),
                (zone, after) in zone_and_instant(),
                fraction in 0.0f64..1.0,
            ) {
                let first = next_after(&schedule, zone, after).unwrap();
                let second = next_after(&schedule, zone, first).unwrap();
                prop_assert!(after < first && first < second);
                // The longest wait in the generator is a single month's
                // 29th or 31st: about a year.
                prop_assert!(first - after <= TimeDelta::days(366 + 2), "{first}");
                // Any start between `after` and the firing finds the same
                // firing, so the firings are one set, however they are
                // reached.
                let span = (first - after).num_seconds() - 1;
                let between = after + TimeDelta::seconds((span as f64 * fraction) as i64);
                prop_assert_eq!(next_after(&schedule, zone, between), Some(first));
                // And the same set backwards.
                prop_assert_eq!(latest_firing(&schedule, zone, second, Until::Before), Some(first));
            }

            #[test]
            fn a_daily_schedule_fires_once_every_local_day(
                minute in 0u32..60,
                hour in 0u32..24,
                (zone, after) in zone_and_instant(),
            ) {
                let schedule = schedule(&format!("{minute} {hour} * * *"));
                let day_of = |instant: DateTime<Utc>| instant.with_timezone(&zone.tz()).date_naive();
                let first = next_after(&schedule, zone, after).unwrap();
                let second = next_after(&schedule, zone, first).unwrap();
                prop_assert!(day_of(first) <= day_of(after).succ_opt().unwrap());
                prop_assert_eq!(day_of(second), day_of(first).succ_opt().unwrap());
            }
            #[test]
            fn an_hourly_schedule_never_waits_much_more_than_an_hour(
                minute in 0u32..60,
                (zone, after) in zone_and_instant(),
            ) {
                // An hour, or an hour and a half across Lord Howe's
                // half-hour fall-back. Two hours would mean a repeated hour
                // without its second firing.
                let schedule = schedule(&format!("{minute} * * * *"));
                let next = next_after(&schedule, zone, after).unwrap();
                prop_assert!(next - after <= TimeDelta::minutes(90), "{next}");
            }
        }
    }
}
