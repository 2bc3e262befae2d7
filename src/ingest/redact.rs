//! Personal data redaction, applied to every record an ingest pulls in
//! before anything is stored or logged.
//!
//! Two nets: a value under a key that names personal data (`email`,
//! `firstName`, SCIM's `emails`, …, at any depth) is redacted whole, and
//! every other string is scanned for emails, phone numbers and national-id
//! shapes, each match replaced in place. How each is redacted is its mode
//! (`PII_REDACTION_MODE`, `PII_FIELD_MODES`). See `docs/ingest.md`,
//! "Personal data".

use std::{borrow::Cow, collections::HashMap, fmt, ops::Range, sync::LazyLock};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use hmac::{Hmac, KeyInit, Mac};
use regex::Regex;
use secrecy::{ExposeSecret, SecretSlice};
use serde_json::{Map, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::{ConfigError, Env};

const MODE_VAR: &str = "PII_REDACTION_MODE";
const FIELD_MODES_VAR: &str = "PII_FIELD_MODES";
const KEY_VAR: &str = "PII_HASH_KEY";
const KEY_VERSION_VAR: &str = "PII_HASH_KEY_VERSION";
const PREVIOUS_KEY_VAR: &str = "PII_HASH_KEY_PREVIOUS";
const PREVIOUS_VERSION_VAR: &str = "PII_HASH_KEY_PREVIOUS_VERSION";

/// A shorter key would be the weak point of the HMAC.
const MIN_KEY_BYTES: usize = 32;
/// 128 bits: collisions stay out of reach for any number of people.
const TOKEN_BYTES: usize = 16;
/// Prefix-free, so no value makes a hash equal a token.
const HASH_DOMAIN: &[u8] = b"impact-in pii hash\0";
const TOKEN_DOMAIN: &[u8] = b"impact-in pii token\0";
const HASH_PREFIX: &str = "hmac_sha256:";
/// What REMOVE puts where a pattern matched inside a longer string.
const REMOVED: &str = "[redacted]";
const MASK: &str = "***";

/// How a personal value is replaced.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::EnumString, strum::VariantNames,
)]
#[strum(serialize_all = "UPPERCASE", ascii_case_insensitive)]
pub enum Mode {
    /// `hmac_sha256:` and the hex HMAC-SHA256 of the normalised value
    /// under `PII_HASH_KEY`.
    Hash,
    /// The shape without the value: `j***@***.org`, `***58`, `J***`.
    Mask,
    /// The key is dropped from its object; a match inside a string becomes
    /// `[redacted]`.
    Remove,
    /// `tok_v{version}_` and 32 hex digits: a truncated HMAC of the
    /// normalised value, so the same person gets the same token in every
    /// source and run under one key version.
    Tokenize,
}

impl Mode {
    fn is_keyed(self) -> bool {
        matches!(self, Self::Hash | Self::Tokenize)
    }

    fn parse(raw: &str) -> Result<Self, String> {
        raw.trim().parse().map_err(|_| {
            format!(
                "'{raw}' is not one of {}",
                <Self as strum::VariantNames>::VARIANTS.join(", ")
            )
        })
    }
}

/// The keys that name personal data (seed 002 and SCIM's complex
/// attributes). Spelled as in the seed; matched case-insensitively and
/// with `_` and `-` ignored (`first_name`, `DATE_OF_BIRTH`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[strum(serialize_all = "camelCase")]
pub enum Field {
    Email,
    FirstName,
    LastName,
    DisplayName,
    PhoneNumber,
    MobilePhone,
    HomeAddress,
    Ssn,
    TaxId,
    DateOfBirth,
    /// SCIM `name` (`givenName`, `familyName`, `formatted`, …), or a
    /// plain string.
    Name,
    Emails,
    PhoneNumbers,
    Addresses,
}

const FIELDS: usize = <Field as strum::VariantArray>::VARIANTS.len();

impl Field {
    /// The field a JSON key names, if any. Besides the seed's names a few
    /// common spellings of the same data count: `emailAddress`, `phone`,
    /// `givenName`, `familyName`, `birthDate`.
    pub fn from_key(key: &str) -> Option<Self> {
        // Longer than any name, so a long key is rejected without work.
        const LONGEST: usize = 12;
        let mut name = [0u8; LONGEST];
        let mut len = 0;
        for &byte in key.as_bytes() {
            if byte == b'_' || byte == b'-' {
                continue;
            }
            if len == LONGEST {
                return None;
            }
            name[len] = byte.to_ascii_lowercase();
            len += 1;
        }
        Some(match &name[..len] {
            b"email" | b"emailaddress" => Self::Email,
            b"firstname" | b"givenname" => Self::FirstName,
            b"lastname" | b"familyname" => Self::LastName,
            b"displayname" => Self::DisplayName,
            b"phonenumber" | b"phone" => Self::PhoneNumber,
            b"mobilephone" => Self::MobilePhone,
            b"homeaddress" => Self::HomeAddress,
            b"ssn" => Self::Ssn,
            b"taxid" => Self::TaxId,
            b"dateofbirth" | b"birthdate" => Self::DateOfBirth,
            b"name" => Self::Name,
            b"emails" => Self::Emails,
            b"phonenumbers" => Self::PhoneNumbers,
            b"addresses" => Self::Addresses,
            _ => return None,
        })
    }

    /// The field whose override this one follows unless it has its own,
    /// so `email=TOKENIZE` also tokenizes SCIM's `emails` and the same
    /// person joins across sources.
    fn family(self) -> Self {
        match self {
            Self::Emails => Self::Email,
            Self::MobilePhone | Self::PhoneNumbers => Self::PhoneNumber,
            Self::Addresses => Self::HomeAddress,
            Self::TaxId => Self::Ssn,
            other => other,
        }
    }

    fn kind(self) -> Kind {
        match self {
            Self::Email | Self::Emails => Kind::Email,
            Self::PhoneNumber | Self::MobilePhone | Self::PhoneNumbers => Kind::Phone,
            Self::Ssn | Self::TaxId => Kind::NationalId,
            Self::FirstName | Self::LastName | Self::DisplayName | Self::Name => Kind::Name,
            Self::HomeAddress | Self::DateOfBirth | Self::Addresses => Kind::Text,
        }
    }
}

/// What a value is, which decides how it is normalised and masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Email,
    Phone,
    NationalId,
    Name,
    Text,
}

/// One HMAC key and its version. Only the keyed HMAC state is kept; it
/// never prints.
#[derive(Clone)]
struct PiiKey {
    version: u32,
    mac: Hmac<Sha256>,
}

impl fmt::Debug for PiiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PiiKey")
            .field("version", &self.version)
            .field("key", &format_args!("[REDACTED]"))
            .finish()
    }
}

impl PiiKey {
    fn new(bytes: &SecretSlice<u8>, version: u32) -> Self {
        Self {
            version,
            mac: Hmac::new_from_slice(bytes.expose_secret()).expect("HMAC takes any key length"),
        }
    }

    fn digest(&self, domain: &[u8], normalised: &str) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(domain);
        mac.update(normalised.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn write_token(&self, out: &mut String, normalised: &str) {
        out.push_str("tok_v");
        out.push_str(&self.version.to_string());
        out.push('_');
        push_hex(out, &self.digest(TOKEN_DOMAIN, normalised)[..TOKEN_BYTES]);
    }
}

#[derive(Debug, Clone)]
struct PiiKeys {
    current: PiiKey,
    /// Set during a rotation, for `Redactor::rekey`; never used to redact.
    previous: Option<PiiKey>,
}

#[derive(Debug, thiserror::Error)]
enum KeyError {
    #[error("is not valid base64")]
    NotBase64,
    #[error(
        "must decode to at least {MIN_KEY_BYTES} bytes, got {0} (generate one with `openssl rand -base64 32`)"
    )]
    TooShort(usize),
}

fn decode_key(encoded: &str) -> Result<SecretSlice<u8>, KeyError> {
    let bytes = BASE64
        .decode(encoded.trim())
        .map_err(|_| KeyError::NotBase64)?;
    if bytes.len() < MIN_KEY_BYTES {
        return Err(KeyError::TooShort(bytes.len()));
    }
    Ok(bytes.into())
}

/// The redaction settings, read once at start. Only `from_lookup` builds
/// one, so a keyed mode always has its key.
#[derive(Debug, Clone)]
pub struct RedactionConfig {
    default_mode: Mode,
    field_modes: HashMap<Field, Mode>,
    keys: Option<PiiKeys>,
}

impl RedactionConfig {
    /// Reads `PII_REDACTION_MODE`, `PII_FIELD_MODES`, `PII_HASH_KEY`,
    /// `PII_HASH_KEY_VERSION`, `PII_HASH_KEY_PREVIOUS` and
    /// `PII_HASH_KEY_PREVIOUS_VERSION`. A HASH or TOKENIZE mode in use
    /// without a key is refused, naming `PII_HASH_KEY`.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(lookup);
        let default_mode = match env.optional(MODE_VAR) {
            None => Mode::Hash,
            Some(raw) => {
                Mode::parse(&raw).map_err(|problem| ConfigError::new(MODE_VAR, problem))?
            }
        };
        let mut field_modes = HashMap::new();
        for entry in env.list(FIELD_MODES_VAR) {
            let bad = |problem: String| ConfigError::new(FIELD_MODES_VAR, problem);
            let (name, mode) = entry
                .split_once('=')
                .ok_or_else(|| bad(format!("'{entry}' is not field=MODE")))?;
            let field = Field::from_key(name.trim()).ok_or_else(|| {
                bad(format!(
                    "'{entry}': '{}' is not a personal data field (one of {})",
                    name.trim(),
                    field_names()
                ))
            })?;
            let mode = Mode::parse(mode).map_err(|problem| bad(format!("'{entry}': {problem}")))?;
            if field_modes.insert(field, mode).is_some() {
                return Err(bad(format!("'{entry}': {field} is given twice")));
            }
        }
        let config = Self {
            default_mode,
            field_modes,
            keys: keys(&env)?,
        };
        let keyed = <Field as strum::VariantArray>::VARIANTS
            .iter()
            .map(|&field| (field, config.mode(field)))
            .find(|(_, mode)| mode.is_keyed());
        if let (None, Some((field, mode))) = (&config.keys, keyed) {
            return Err(ConfigError::new(
                KEY_VAR,
                format!(
                    "missing: {field} is redacted with {mode}, which needs a key (32 random bytes, base64: openssl rand -base64 32)"
                ),
            ));
        }
        Ok(config)
    }

    fn mode(&self, field: Field) -> Mode {
        self.field_modes
            .get(&field)
            .or_else(|| self.field_modes.get(&field.family()))
            .copied()
            .unwrap_or(self.default_mode)
    }
}

fn field_names() -> String {
    <Field as strum::VariantArray>::VARIANTS
        .iter()
        .map(|field| field.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The current key (optional: only keyed modes need it) and, during a
/// rotation, the previous one.
fn keys(env: &Env) -> Result<Option<PiiKeys>, ConfigError> {
    let version: u32 = env.positive(KEY_VERSION_VAR, 1)?;
    let previous = env.secret(PREVIOUS_KEY_VAR)?;
    if previous.is_none() && env.optional(PREVIOUS_VERSION_VAR).is_some() {
        return Err(ConfigError::new(
            PREVIOUS_VERSION_VAR,
            format!("set without {PREVIOUS_KEY_VAR}"),
        ));
    }
    let Some(current) = env.secret(KEY_VAR)? else {
        if previous.is_some() {
            return Err(ConfigError::new(
                PREVIOUS_KEY_VAR,
                format!("set without {KEY_VAR}"),
            ));
        }
        return Ok(None);
    };
    let current = decode_key(&current).map_err(|err| ConfigError::new(KEY_VAR, err.to_string()))?;
    let previous = match previous {
        None => None,
        Some(raw) => {
            let bytes = decode_key(&raw)
                .map_err(|err| ConfigError::new(PREVIOUS_KEY_VAR, err.to_string()))?;
            if bool::from(bytes.expose_secret().ct_eq(current.expose_secret())) {
                return Err(ConfigError::new(
                    PREVIOUS_KEY_VAR,
                    format!("is the same key as {KEY_VAR}"),
                ));
            }
            let previous_version = match env.optional(PREVIOUS_VERSION_VAR) {
                Some(_) => env.positive(PREVIOUS_VERSION_VAR, 1)?,
                None if version > 1 => version - 1,
                None => {
                    return Err(ConfigError::new(
                        PREVIOUS_VERSION_VAR,
                        format!("missing: required while {KEY_VERSION_VAR} is 1"),
                    ));
                }
            };
            if previous_version == version {
                return Err(ConfigError::new(
                    PREVIOUS_VERSION_VAR,
                    format!("must differ from {KEY_VERSION_VAR} ({version})"),
                ));
            }
            Some(PiiKey::new(&bytes, previous_version))
        }
    };
    Ok(Some(PiiKeys {
        current: PiiKey::new(&current, version),
        previous,
    }))
}

/// What one `redact` call replaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Redacted {
    /// Values under a personal data key (a whole SCIM `emails` array
    /// counts once), removed keys included.
    pub fields: usize,
    /// Pattern matches in other strings (and in object keys), by kind.
    pub emails: usize,
    pub phones: usize,
    pub national_ids: usize,
}

/// The token a value had under the previous key and has under the
/// current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rekey {
    pub previous: String,
    pub current: String,
}

/// Redacts records and text per a `RedactionConfig`. Cheap to share.
#[derive(Debug, Clone)]
pub struct Redactor {
    modes: [Mode; FIELDS],
    keys: Option<PiiKeys>,
}

impl Redactor {
    pub fn new(config: RedactionConfig) -> Self {
        Self {
            // Indexed by `Field as usize`: VARIANTS is in declaration order.
            modes: std::array::from_fn(|index| {
                config.mode(<Field as strum::VariantArray>::VARIANTS[index])
            }),
            keys: config.keys,
        }
    }

    /// Redacts `value` in place: personal data keys at any depth, then a
    /// pattern scan of every other string and of object keys.
    pub fn redact(&self, value: &mut Value) -> Redacted {
        let mut counts = Redacted::default();
        self.walk(value, &mut counts);
        counts
    }

    /// The pattern scan alone, for text such as error reasons and log
    /// lines. Borrows when nothing matched.
    pub fn redact_text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.scan(text, &mut Redacted::default()) {
            Some(redacted) => Cow::Owned(redacted),
            None => Cow::Borrowed(text),
        }
    }

    /// During a key rotation (`PII_HASH_KEY_PREVIOUS` set), the previous
    /// and the current token of a raw value, so a job that still sees the
    /// value can record how old tokens map to new ones without storing the
    /// value. `None` outside a rotation.
    pub fn rekey(&self, field: Field, value: &str) -> Option<Rekey> {
        let keys = self.keys.as_ref()?;
        let previous_key = keys.previous.as_ref()?;
        let normalised = normalise(field.kind(), value);
        let [mut previous, mut current] = [String::new(), String::new()];
        previous_key.write_token(&mut previous, &normalised);
        keys.current.write_token(&mut current, &normalised);
        Some(Rekey { previous, current })
    }

    fn mode(&self, field: Field) -> Mode {
        self.modes[field as usize]
    }

    fn walk(&self, value: &mut Value, counts: &mut Redacted) {
        match value {
            Value::Object(map) => self.walk_object(map, counts),
            Value::Array(items) => items.iter_mut().for_each(|item| self.walk(item, counts)),
            Value::String(text) => {
                if let Some(redacted) = self.scan(text, counts) {
                    *text = redacted;
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    fn walk_object(&self, map: &mut Map<String, Value>, counts: &mut Redacted) {
        let mut removes = false;
        for (key, value) in map.iter_mut() {
            match Field::from_key(key).map(|field| (field, self.mode(field))) {
                Some((_, Mode::Remove)) => removes = true,
                Some((field, mode)) => {
                    if self.redact_all(value, mode, field.kind(), counts) {
                        counts.fields += 1;
                    }
                }
                None => self.walk(value, counts),
            }
        }
        if removes {
            map.retain(|key, _| {
                let remove = Field::from_key(key).is_some_and(|f| self.mode(f) == Mode::Remove);
                counts.fields += usize::from(remove);
                !remove
            });
        }
        self.scan_keys(map, counts);
    }

    /// Every string and number inside a personal data field, whatever its
    /// shape (a phone sent as a JSON number is still a phone). True when
    /// something was replaced.
    fn redact_all(&self, value: &mut Value, mode: Mode, kind: Kind, counts: &mut Redacted) -> bool {
        match value {
            // Blank says nothing about anyone, and stays recognisable.
            Value::String(text) if text.trim().is_empty() => false,
            Value::String(text) => {
                let mut out = String::new();
                self.write(&mut out, mode, kind, text);
                *text = out;
                true
            }
            Value::Number(number) => {
                let mut out = String::new();
                self.write(&mut out, mode, kind, &number.to_string());
                *value = Value::String(out);
                true
            }
            Value::Array(items) => items.iter_mut().fold(false, |changed, item| {
                self.redact_all(item, mode, kind, counts) | changed
            }),
            Value::Object(map) => {
                self.scan_keys(map, counts);
                map.values_mut().fold(false, |changed, item| {
                    self.redact_all(item, mode, kind, counts) | changed
                })
            }
            Value::Null | Value::Bool(_) => false,
        }
    }

    /// Keys can hold personal data too (a map keyed by email). A redacted
    /// key that collides with another (possible with MASK and REMOVE)
    /// replaces it.
    fn scan_keys(&self, map: &mut Map<String, Value>, counts: &mut Redacted) {
        let renames: Vec<(String, String)> = map
            .keys()
            .filter_map(|key| self.scan(key, counts).map(|new| (key.clone(), new)))
            .collect();
        for (old, new) in renames {
            if let Some(value) = map.remove(&old) {
                map.insert(new, value);
            }
        }
    }

    /// The text with every pattern match redacted, or `None` when nothing
    /// matched (the common case, which allocates nothing).
    fn scan(&self, text: &str, counts: &mut Redacted) -> Option<String> {
        let hits = find_hits(text);
        if hits.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(text.len() + 32);
        let mut done = 0;
        for Hit { range, pattern } in hits {
            out.push_str(&text[done..range.start]);
            let (field, count) = match pattern {
                Pattern::Email => (Field::Email, &mut counts.emails),
                Pattern::Phone => (Field::PhoneNumber, &mut counts.phones),
                Pattern::NationalId => (Field::Ssn, &mut counts.national_ids),
            };
            *count += 1;
            self.write(
                &mut out,
                self.mode(field),
                field.kind(),
                &text[range.clone()],
            );
            done = range.end;
        }
        out.push_str(&text[done..]);
        Some(out)
    }

    fn write(&self, out: &mut String, mode: Mode, kind: Kind, raw: &str) {
        match mode {
            Mode::Hash => {
                out.push_str(HASH_PREFIX);
                push_hex(out, &self.key().digest(HASH_DOMAIN, &normalise(kind, raw)));
            }
            Mode::Tokenize => self.key().write_token(out, &normalise(kind, raw)),
            Mode::Mask => mask(out, kind, raw),
            Mode::Remove => out.push_str(REMOVED),
        }
    }

    fn key(&self) -> &PiiKey {
        &self
            .keys
            .as_ref()
            .expect("RedactionConfig refuses a keyed mode without a key")
            .current
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
}

/// The form the keyed modes see, so one person's value gives one hash or
/// token however a source spells it.
fn normalise(kind: Kind, raw: &str) -> String {
    let raw = raw.trim();
    match kind {
        Kind::Email => raw.to_lowercase(),
        Kind::Phone if raw.bytes().any(|b| b.is_ascii_digit()) => {
            // "+44 (0)20 …" and "+44 20 …" are one number.
            let international = raw.starts_with('+');
            let digits = if international {
                Cow::Owned(raw.replace("(0)", ""))
            } else {
                Cow::Borrowed(raw)
            };
            let mut out = String::with_capacity(raw.len());
            if international {
                out.push('+');
            }
            out.extend(digits.chars().filter(char::is_ascii_digit));
            out
        }
        Kind::NationalId => raw
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_uppercase())
            .collect(),
        Kind::Phone | Kind::Name | Kind::Text => {
            let mut out = String::with_capacity(raw.len());
            for word in raw.split_whitespace() {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(&word.to_lowercase());
            }
            out
        }
    }
}

/// A mask keeps at most one leading character, an email's top-level
/// domain and a phone's last two digits, so it never holds the value.
fn mask(out: &mut String, kind: Kind, raw: &str) {
    let raw = raw.trim();
    match kind {
        Kind::Email => {
            let parts = raw.rsplit_once('@').and_then(|(local, domain)| {
                Some((local.chars().next()?, domain.rsplit_once('.')?.1))
            });
            if let Some((first, tld)) = parts {
                out.push(first);
                out.push_str("***@***.");
                out.push_str(tld);
                return;
            }
        }
        Kind::Phone => {
            let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
            if digits.len() >= 4 {
                out.push_str(MASK);
                out.push_str(&digits[digits.len() - 2..]);
                return;
            }
        }
        Kind::NationalId => {
            out.push_str(MASK);
            return;
        }
        Kind::Name | Kind::Text => {}
    }
    let mut chars = raw.chars();
    if let (Some(first), Some(_)) = (chars.next(), chars.next()) {
        out.push(first);
    }
    out.push_str(MASK);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pattern {
    Email,
    Phone,
    NationalId,
}

#[derive(Debug)]
struct Hit {
    range: Range<usize>,
    pattern: Pattern,
}

/// The fewest digits of any number pattern (a UK NI number has 6).
const MIN_DIGITS: usize = 6;

/// Digit groups that may be a phone number (or a US SSN): `+` and a
/// country code, a parenthesised area code, or 1–5 digits and at least one
/// more group, separated by spaces, dots or dashes. `classify` then drops
/// the dates, amounts and addresses that share these shapes. ASCII `\b`
/// keeps the fast engines in play on non-ASCII text.
static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"\+[0-9]{1,3}(?:[ .\-]?\([0-9]{1,4}\))?(?:[ .\-]?[0-9]{1,8}){1,5}",
        r"|\([0-9]{1,5}\)[ .\-]?[0-9]{2,8}(?:[ .\-][0-9]{2,8}){0,4}",
        r"|(?-u:\b)[0-9]{1,5}(?:[ .\-][0-9]{2,8}){1,5}",
    ))
    .expect("number pattern compiles")
});

/// A UK National Insurance number (its first two letters exclude the
/// unused ones) or an IBAN (checked by its mod-97 check digits).
static LETTER_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?-u:\b)(?:",
        r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]",
        r"|[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?",
        r")(?-u:\b)",
    ))
    .expect("id pattern compiles")
});

/// Every match in `text`, in order, none overlapping. Most strings are
/// ruled out by one pass over their bytes (`Clues`) and never reach a
/// pattern.
fn find_hits(text: &str) -> Vec<Hit> {
    let bytes = text.as_bytes();
    let clues = Clues::of(bytes);
    let mut hits = Vec::new();
    if clues.at_sign {
        emails(text, &mut hits);
    }
    if clues.digits < MIN_DIGITS || is_uuid_or_timestamp(bytes) {
        return hits;
    }
    if clues.grouped_digits {
        numbers(text, &mut hits);
    }
    if clues.letters_then_digits {
        hits.extend(
            LETTER_ID
                .find_iter(text)
                .filter(|m| is_letter_id(m.as_str()))
                .map(|m| Hit {
                    range: m.range(),
                    pattern: Pattern::NationalId,
                }),
        );
    }
    if hits.len() > 1 {
        hits.sort_by_key(|hit| hit.range.start);
        let mut end = 0;
        hits.retain(|hit| {
            let keep = hit.range.start >= end;
            if keep {
                end = hit.range.end;
            }
            keep
        });
    }
    hits
}

/// Addresses around each `@`: a local part of letters, digits and
/// `._%+'-`, a domain of labels with a top-level one of two or more
/// letters. Written out rather than as a regex: Unicode letters (`josé@…`)
/// would push a regex off its fast engines, and this costs one pass.
fn emails(text: &str, hits: &mut Vec<Hit>) {
    let is_local = |c: char| c.is_alphanumeric() || "._%+'-".contains(c);
    let is_domain = |c: char| c.is_alphanumeric() || c == '-' || c == '.';
    let mut from = 0;
    while let Some(at) = text[from..].find('@').map(|offset| from + offset) {
        let start = text[..at]
            .char_indices()
            .rev()
            .take_while(|&(_, c)| is_local(c))
            .last()
            .map_or(at, |(index, _)| index);
        let domain = &text[at + 1..];
        let domain = domain[..domain.find(|c| !is_domain(c)).unwrap_or(domain.len())]
            // A sentence may end right after the address.
            .trim_end_matches(['.', '-']);
        let valid = domain.rsplit_once('.').is_some_and(|(labels, tld)| {
            !labels.is_empty()
                && !labels.starts_with('.')
                && tld.chars().count() >= 2
                && tld.chars().all(char::is_alphabetic)
        });
        if start < at && valid {
            let end = at + 1 + domain.len();
            hits.push(Hit {
                range: start..end,
                pattern: Pattern::Email,
            });
            from = end;
        } else {
            from = at + 1;
        }
    }
}

/// What one pass over a string's bytes tells: each flag is necessary for a
/// pattern to match, so a string without it skips that pattern.
#[derive(Default)]
struct Clues {
    at_sign: bool,
    digits: usize,
    /// `+` then a digit, `)` then a digit, or digit, separator, digit:
    /// where every `NUMBER` match starts or continues.
    grouped_digits: bool,
    /// Two capitals then a digit (`AB12`, `AB 12`), as `LETTER_ID` starts.
    letters_then_digits: bool,
}

impl Clues {
    fn of(bytes: &[u8]) -> Self {
        let is = |index: usize, test: fn(&u8) -> bool| bytes.get(index).is_some_and(test);
        let digit = |index: usize| is(index, u8::is_ascii_digit);
        let mut clues = Self::default();
        for (index, &byte) in bytes.iter().enumerate() {
            match byte {
                b'@' => clues.at_sign = true,
                b'0'..=b'9' => clues.digits += 1,
                b'+' => clues.grouped_digits |= digit(index + 1),
                b')' => {
                    clues.grouped_digits |= digit(index + 1)
                        || (is(index + 1, |b| b" .-".contains(b)) && digit(index + 2));
                }
                b' ' | b'.' | b'-' => {
                    clues.grouped_digits |= index > 0 && digit(index - 1) && digit(index + 1);
                }
                b'A'..=b'Z' => {
                    clues.letters_then_digits |= is(index + 1, u8::is_ascii_uppercase)
                        && (digit(index + 2)
                            || (is(index + 2, |b| *b == b' ') && digit(index + 3)));
                }
                _ => {}
            }
        }
        clues
    }
}

/// A UUID or an RFC 3339 date or timestamp, the commonest strings with
/// many digits, which hold nothing personal: the number scan skips them.
fn is_uuid_or_timestamp(bytes: &[u8]) -> bool {
    let digits = |range: Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|run| run.iter().all(u8::is_ascii_digit))
    };
    let at = |index: usize, allowed: &[u8]| bytes.get(index).is_some_and(|b| allowed.contains(b));
    let uuid = bytes.len() == 36
        && bytes.iter().enumerate().all(|(index, b)| match index {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    let date = digits(0..4) && at(4, b"-") && digits(5..7) && at(7, b"-") && digits(8..10);
    // Then nothing, or a time of day and only seconds, fractions and an
    // offset.
    let timestamp = date
        && (bytes.len() == 10
            || (at(10, b"Tt ")
                && digits(11..13)
                && at(13, b":")
                && digits(14..16)
                && bytes[16..]
                    .iter()
                    .all(|b| b.is_ascii_digit() || b":.+-Zz".contains(b))));
    uuid || timestamp
}

enum Verdict {
    Hit(Pattern),
    /// Part of a longer token (an id, a UUID, a timestamp): look again
    /// from the next character.
    Embedded,
    /// A date, an amount, an address or too many digits: look again from
    /// this offset (past the date only, so a phone after it is still seen).
    NotPersonal(usize),
}

fn numbers(text: &str, hits: &mut Vec<Hit>) {
    let mut from = 0;
    while let Some(found) = NUMBER.find_at(text, from) {
        match classify(text, found.range()) {
            Verdict::Hit(pattern) => {
                hits.push(Hit {
                    range: found.range(),
                    pattern,
                });
                from = found.end();
            }
            // Every match starts with an ASCII character.
            Verdict::Embedded => from = found.start() + 1,
            Verdict::NotPersonal(resume) => from = resume,
        }
    }
}

fn classify(text: &str, range: Range<usize>) -> Verdict {
    let candidate = &text[range.clone()];
    let international = candidate.starts_with('+');
    let before = text[..range.start].chars().next_back();
    let mut after = text[range.end..].chars();
    let next = after.next();
    let next_is_digit = after.next().is_some_and(|c| c.is_ascii_digit());
    let glued_before = before.is_some_and(|c| {
        c.is_alphanumeric()
            || c == '_'
            || (candidate.starts_with(|c: char| c.is_ascii_digit()) && "-.,+/@".contains(c))
    });
    let glued_after = next.is_some_and(|c| {
        c.is_alphanumeric() || "_-/@".contains(c) || (".,:".contains(c) && next_is_digit)
    });
    if glued_before || glued_after {
        return Verdict::Embedded;
    }

    // Digit groups and the separators between them (a leading `+` or `(`
    // is neither). Matches are ASCII, so bytes are characters.
    let bytes = candidate.as_bytes();
    let mut groups = [0usize; 8];
    let mut separators = [""; 8];
    let mut count = 0;
    let mut digits = 0;
    let mut at = 0;
    let mut group_end = 0;
    let mut third_end = range.end;
    while at < bytes.len() {
        if !bytes[at].is_ascii_digit() {
            at += 1;
            continue;
        }
        let start = at;
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            at += 1;
        }
        // The pattern allows at most seven groups.
        if count == groups.len() {
            return Verdict::NotPersonal(range.end);
        }
        if count > 0 {
            separators[count - 1] = &candidate[group_end..start];
        }
        groups[count] = at - start;
        if count == 2 {
            third_end = range.start + at;
        }
        digits += at - start;
        group_end = at;
        count += 1;
    }
    let groups = &groups[..count];
    let separators = &separators[..count.saturating_sub(1)];
    let date = matches!(groups, [4, 1..=2, 1..=2, ..] | [1..=2, 1..=2, 4, ..]);
    if date && !international {
        return Verdict::NotPersonal(third_end);
    }
    if !(7..=15).contains(&digits) {
        return Verdict::NotPersonal(range.end);
    }
    if international {
        return Verdict::Hit(Pattern::Phone);
    }
    let uniform = separators.windows(2).all(|pair| pair[0] == pair[1]);
    let separator = separators.first().copied().unwrap_or("");
    if groups == [3, 2, 4] && uniform && (separator == "-" || separator == " ") {
        return Verdict::Hit(Pattern::NationalId);
    }
    // 12345.67, 192.168.10.20
    let decimal_or_ip = uniform
        && separator == "."
        && (groups.len() == 2 || (groups.len() == 4 && groups.iter().all(|&g| g <= 3)));
    // 1 234 567, 12.345.678
    let thousands = uniform
        && (separator == " " || separator == ".")
        && groups[0] <= 3
        && groups[1..].iter().all(|&g| g == 3);
    // 1 234 567.89
    let fraction = !uniform && separators.last() == Some(&".") && groups[count - 1] <= 2;
    // 10.30-12.00; a phone in pairs has five of them.
    let pairs = groups.len() < 5 && groups.iter().all(|&g| g <= 2);
    if decimal_or_ip || thousands || fraction || pairs {
        return Verdict::NotPersonal(range.end);
    }
    Verdict::Hit(Pattern::Phone)
}

/// NI numbers are fully described by the pattern; IBANs must also pass
/// their mod-97 check, which random codes fail 96 times in 97.
fn is_letter_id(found: &str) -> bool {
    let compact: Vec<u8> = found.bytes().filter(|&b| b != b' ').collect();
    if compact.len() == 9 && compact[8].is_ascii_alphabetic() {
        return true;
    }
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let remainder = tail.iter().chain(head).fold(0u32, |acc, &b| {
        if b.is_ascii_digit() {
            (acc * 10 + u32::from(b - b'0')) % 97
        } else {
            (acc * 100 + u32::from(b - b'A' + 10)) % 97
        }
    });
    remainder == 1
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// Base64 of 32 bytes of 7, and of 32 bytes of 9.
    const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
    const OTHER_KEY: &str = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=";

    fn config(vars: &[(&str, &str)]) -> Result<RedactionConfig, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RedactionConfig::from_lookup(&|key| vars.get(key).cloned())
    }

    /// A redactor with `KEY` unless `vars` sets `PII_HASH_KEY` itself.
    fn redactor(vars: &[(&str, &str)]) -> Redactor {
        let mut vars = vars.to_vec();
        if !vars.iter().any(|(k, _)| *k == KEY_VAR) {
            vars.push((KEY_VAR, KEY));
        }
        Redactor::new(config(&vars).expect("valid config"))
    }

    fn with_mode(mode: &str) -> Redactor {
        redactor(&[(MODE_VAR, mode)])
    }

    fn redacted(redactor: &Redactor, mut value: Value) -> (Value, Redacted) {
        let counts = redactor.redact(&mut value);
        (value, counts)
    }

    fn is_hash(value: &Value) -> bool {
        value.as_str().is_some_and(|s| {
            s.strip_prefix(HASH_PREFIX)
                .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        })
    }

    fn is_token(value: &Value, version: u32) -> bool {
        let prefix = format!("tok_v{version}_");
        value.as_str().is_some_and(|s| {
            s.strip_prefix(&prefix)
                .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        })
    }

    #[test]
    fn every_named_field_is_redacted_at_any_depth_and_in_any_spelling() {
        let record = json!({
            "id": "550e8400-e29b-41d4-a716-446655440000",
            "email": "jane.doe@example.org",
            "volunteer": {
                "first_name": "Jane",
                "LAST_NAME": "Doe",
                "displayName": "Jane Doe",
                "contact": [{ "phone_number": "+44 20 7946 0958", "mobile-phone": "07946 095812" }],
                "private": { "home_address": "1 Main St", "ssn": "123-45-6789", "tax_id": "DE123456789", "date_of_birth": "1990-01-31" }
            },
            "hours": 7.5
        });
        let (out, counts) = redacted(&with_mode("HASH"), record);
        for pointer in [
            "/email",
            "/volunteer/first_name",
            "/volunteer/LAST_NAME",
            "/volunteer/displayName",
            "/volunteer/contact/0/phone_number",
            "/volunteer/contact/0/mobile-phone",
            "/volunteer/private/home_address",
            "/volunteer/private/ssn",
            "/volunteer/private/tax_id",
            "/volunteer/private/date_of_birth",
        ] {
            assert!(is_hash(out.pointer(pointer).unwrap()), "{pointer}: {out}");
        }
        assert_eq!(out["id"], "550e8400-e29b-41d4-a716-446655440000");
        assert_eq!(out["hours"], 7.5);
        assert_eq!(counts.fields, 10);
        assert_eq!(
            (counts.emails, counts.phones, counts.national_ids),
            (0, 0, 0)
        );
    }

    #[test]
    fn scim_complex_attributes_are_redacted_leaf_by_leaf() {
        let user = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "active": true,
            "name": { "givenName": "Barbara", "familyName": "Jensen", "formatted": "Ms. Barbara J Jensen III" },
            "emails": [{ "value": "bjensen@example.com", "type": "work", "primary": true }],
            "phoneNumbers": [{ "value": "555-555-8377", "type": "work" }],
            "addresses": [{ "streetAddress": "100 Universal City Plaza", "locality": "Hollywood", "postalCode": 91608 }]
        });
        let (out, counts) = redacted(&with_mode("MASK"), user);
        assert_eq!(out["name"]["givenName"], "B***");
        assert_eq!(out["name"]["familyName"], "J***");
        assert_eq!(out["name"]["formatted"], "M***");
        assert_eq!(out["emails"][0]["value"], "b***@***.com");
        assert_eq!(out["emails"][0]["primary"], true);
        assert_eq!(out["phoneNumbers"][0]["value"], "***77");
        assert_eq!(out["addresses"][0]["streetAddress"], "1***");
        assert_eq!(out["addresses"][0]["locality"], "H***");
        // A number under a personal data key is redacted too.
        assert_eq!(out["addresses"][0]["postalCode"], "9***");
        assert_eq!(out["active"], true);
        assert_eq!(out["id"], "2819c223-7f76-453a-919d-413861904646");
        assert_eq!(counts.fields, 4);

        let user = json!({ "name": { "givenName": "Barbara" }, "emails": [{ "value": "bjensen@example.com" }] });
        let (out, _) = redacted(&with_mode("TOKENIZE"), user);
        assert!(is_token(&out["name"]["givenName"], 1), "{out}");
        assert!(is_token(&out["emails"][0]["value"], 1), "{out}");
    }

    #[test]
    fn each_mode_replaces_an_email_its_own_way() {
        let record = || json!({ "email": "Jane.Doe@Example.org", "hours": 3 });
        let (out, _) = redacted(&with_mode("HASH"), record());
        assert!(is_hash(&out["email"]), "{out}");
        let (out, _) = redacted(&with_mode("TOKENIZE"), record());
        assert!(is_token(&out["email"], 1), "{out}");
        let (out, _) = redacted(&with_mode("MASK"), record());
        assert_eq!(out["email"], "J***@***.org");
        let (out, counts) = redacted(&with_mode("REMOVE"), record());
        assert_eq!(out, json!({ "hours": 3 }));
        assert_eq!(counts.fields, 1);
    }

    #[test]
    fn remove_deletes_the_keys_at_every_depth() {
        let record = json!({
            "donor": { "firstName": "Jane", "emails": [{ "value": "jane@example.org" }], "amount": 25 },
            "items": [{ "ssn": "123-45-6789", "kind": "gift" }, { "name": { "givenName": "Jane" } }]
        });
        let (out, counts) = redacted(&with_mode("remove"), record);
        assert_eq!(
            out,
            json!({ "donor": { "amount": 25 }, "items": [{ "kind": "gift" }, {}] })
        );
        assert_eq!(counts.fields, 4);
    }

    #[test]
    fn a_field_override_beats_the_default_and_covers_its_family() {
        let redactor = redactor(&[
            (MODE_VAR, "MASK"),
            (
                FIELD_MODES_VAR,
                "email=TOKENIZE, phone_number=REMOVE,addresses=HASH",
            ),
        ]);
        let record = json!({
            "email": "jane@example.org",
            "emails": [{ "value": "jane@example.org" }],
            "phoneNumber": "+44 20 7946 0958",
            "mobilePhone": "+44 7946 095812",
            "homeAddress": "1 Main St",
            "addresses": [{ "locality": "London" }],
            "firstName": "Jane",
            "notes": "or call +1 415 555 0100"
        });
        let (out, _) = redacted(&redactor, record);
        assert!(is_token(&out["email"], 1), "{out}");
        // `emails` follows `email`, so Workday's directory joins Benevity's
        // volunteers on the same token.
        assert_eq!(out["emails"][0]["value"], out["email"]);
        assert!(out.get("phoneNumber").is_none() && out.get("mobilePhone").is_none());
        assert_eq!(out["homeAddress"], "1***");
        assert!(is_hash(&out["addresses"][0]["locality"]), "{out}");
        assert_eq!(out["firstName"], "J***");
        // A phone found by the scan follows `phoneNumber`.
        assert_eq!(out["notes"], "or call [redacted]");
    }

    #[test]
    fn free_text_is_scanned_and_matches_replaced_in_place() {
        let text = "call Jane at +44 20 7946 0958 or jane.doe@example.org";
        let mut record = json!({ "notes": text });
        let counts = with_mode("MASK").redact(&mut record);
        assert_eq!(record["notes"], "call Jane at ***58 or j***@***.org");
        assert_eq!((counts.fields, counts.emails, counts.phones), (0, 1, 1));
        assert_eq!(
            with_mode("REMOVE").redact_text(text),
            "call Jane at [redacted] or [redacted]"
        );

        // The scan and the field agree, so a join still works.
        let redactor = with_mode("TOKENIZE");
        let (out, _) = redacted(
            &redactor,
            json!({ "email": "Jane.Doe@Example.org", "phoneNumber": "+44 (0)20 7946-0958", "notes": text }),
        );
        let notes = out["notes"].as_str().unwrap();
        assert!(notes.contains(out["email"].as_str().unwrap()), "{out}");
        assert!(
            notes.contains(out["phoneNumber"].as_str().unwrap()),
            "{out}"
        );
    }

    #[test]
    fn common_phone_formats_are_caught() {
        let redactor = with_mode("REMOVE");
        for phone in [
            "+44 20 7946 0958",
            "+44 (0)20 7946 0958",
            "+1 (415) 555-0100",
            "+14155550100",
            "+49 30 1234567",
            "+33 1 23 45 67 89",
            "1-800-555-0100",
            "(415) 555-0100",
            "415-555-0100",
            "415.555.0100",
            "415 555 0100",
            "555-0100",
            "020 7946 0958",
            "07946 095812",
            "01 23 45 67 89",
        ] {
            for text in [
                format!("reach me on {phone} today"),
                phone.to_string(),
                format!("tel:{phone}."),
            ] {
                let out = redactor.redact_text(&text);
                assert!(!out.contains(phone), "{text} -> {out}");
                assert!(out.contains(REMOVED), "{text} -> {out}");
            }
        }
    }

    #[test]
    fn national_id_shapes_are_caught() {
        let redactor = with_mode("MASK");
        for id in [
            "123-45-6789",
            "123 45 6789",
            "AB123456C",
            "AB 12 34 56 C",
            "GB82 WEST 1234 5698 7654 32",
            "GB82WEST12345698765432",
            "DE89370400440532013000",
        ] {
            let mut record = json!({ "memo": format!("id {id}, thanks") });
            let counts = redactor.redact(&mut record);
            assert_eq!(record["memo"], "id ***, thanks", "{id}");
            assert_eq!(counts.national_ids, 1, "{id}");
        }
        // Wrong IBAN check digits: an ordinary code, kept.
        assert_eq!(
            redactor.redact_text("ref GB00WEST12345698765432"),
            "ref GB00WEST12345698765432"
        );
    }

    #[test]
    fn dates_ids_and_amounts_are_not_phone_numbers() {
        let redactor = with_mode("REMOVE");
        for text in [
            "2026-01-31T12:00:00Z",
            "2026-01-31T12:00:00.123456+01:00",
            "2026-01-31 12:00:00",
            "2026-01-31",
            "from 2026-01-01 to 2026-01-31",
            "31.01.2026",
            "01/31/2026",
            "550e8400-e29b-41d4-a716-446655440000",
            "12345678-1234-5678-1234-567812345678",
            "1234567.89",
            "12345.67",
            "1,234,567.89",
            "EUR 1 234 567",
            "1 234 567.89",
            "12.345.678",
            "1 234 567,89 €",
            "2 500 000 volunteers",
            "1-12-2026",
            "192.168.10.20",
            "10.30-12.00",
            "v10.0.19041",
            "order 1234567",
            "4155550100",
            "1767225600",
            "1767225600000",
            "SKU-123-456-7890",
            "employee 21001 logged 7.5 hours",
        ] {
            assert!(
                matches!(redactor.redact_text(text), Cow::Borrowed(_)),
                "{text} -> {}",
                redactor.redact_text(text)
            );
        }
        let record = json!({
            "id": "550e8400-e29b-41d4-a716-446655440000",
            "externalId": "10000234567",
            "createdAt": "2026-01-31T12:00:00Z",
            "amount": "1234567.89",
            "total": 1234567.89,
            "hours": 7.5,
            "employeeId": 21001
        });
        let (out, counts) = redacted(&redactor, record.clone());
        assert_eq!(out, record);
        assert_eq!(counts, Redacted::default());
    }

    #[test]
    fn a_phone_right_after_a_date_is_still_caught() {
        let out = with_mode("REMOVE").redact_text("2026-01-31 415-555-0100");
        assert_eq!(out, "2026-01-31 [redacted]");
    }

    #[test]
    fn keys_and_non_ascii_text_are_scanned_too() {
        let redactor = with_mode("MASK");
        let (out, counts) = redacted(
            &redactor,
            json!({ "byEmail": { "jane@example.org": { "hours": 3 } }, "note": "écrire à josé@exemple.fr" }),
        );
        assert_eq!(
            out,
            json!({ "byEmail": { "j***@***.org": { "hours": 3 } }, "note": "écrire à j***@***.fr" })
        );
        assert_eq!(counts.emails, 2);
    }

    #[test]
    fn an_email_match_ends_where_the_address_does() {
        let redactor = with_mode("REMOVE");
        for (text, out) in [
            ("mailto:jane@example.org", "mailto:[redacted]"),
            (
                "Jane <jane.doe+csr@mail.example.co.uk>",
                "Jane <[redacted]>",
            ),
            ("write to jane@example.org.", "write to [redacted]."),
            ("a@b@example.org", "a@[redacted]"),
            (
                "root@localhost, @handle, user@",
                "root@localhost, @handle, user@",
            ),
        ] {
            assert_eq!(redactor.redact_text(text), out, "{text}");
        }
    }

    #[test]
    fn blank_and_null_values_stay() {
        let record = json!({ "email": "", "phoneNumber": null, "name": { "givenName": " " } });
        let (out, counts) = redacted(&with_mode("HASH"), record.clone());
        assert_eq!(out, record);
        assert_eq!(counts.fields, 0);
    }

    #[test]
    fn the_same_person_gets_the_same_token_however_a_source_spells_it() {
        let redactor = with_mode("TOKENIZE");
        let token = |field: &str, value: &str| {
            let (out, _) = redacted(&redactor, json!({ field: value }));
            out[field].as_str().unwrap().to_owned()
        };
        assert_eq!(
            token("email", "Jane.Doe@Example.org"),
            token("email", "  jane.doe@example.ORG ")
        );
        assert_eq!(
            token("phoneNumber", "+44 20 7946 0958"),
            token("mobilePhone", "+442079460958")
        );
        assert_eq!(
            token("displayName", "  Jane   Doe "),
            token("name", "jane doe")
        );
        assert_eq!(token("ssn", "123-45-6789"), token("taxId", "123456789"));
        assert_ne!(
            token("email", "jane@example.org"),
            token("email", "john@example.org")
        );
        // Another run, the same key: the same token.
        assert_eq!(token("email", "jane@example.org"), {
            let (out, _) = redacted(
                &with_mode("TOKENIZE"),
                json!({ "email": "jane@example.org" }),
            );
            out["email"].as_str().unwrap().to_owned()
        });
    }

    #[test]
    fn hashes_and_tokens_differ() {
        let (hashed, _) = redacted(&with_mode("HASH"), json!({ "email": "jane@example.org" }));
        let (tokenized, _) = redacted(
            &with_mode("TOKENIZE"),
            json!({ "email": "jane@example.org" }),
        );
        let hex = |value: &Value, prefix: &str| {
            value
                .as_str()
                .unwrap()
                .strip_prefix(prefix)
                .unwrap()
                .to_owned()
        };
        let hash = hex(&hashed["email"], HASH_PREFIX);
        let token = hex(&tokenized["email"], "tok_v1_");
        assert!(!hash.starts_with(&token), "{hash} {token}");
    }

    #[test]
    fn a_new_key_version_gives_new_tokens_and_rekey_maps_old_to_new() {
        let record = || json!({ "email": "jane@example.org" });
        let (v1, _) = redacted(&with_mode("TOKENIZE"), record());
        let rotated = redactor(&[
            (MODE_VAR, "TOKENIZE"),
            (KEY_VAR, OTHER_KEY),
            (KEY_VERSION_VAR, "2"),
            (PREVIOUS_KEY_VAR, KEY),
        ]);
        let (v2, _) = redacted(&rotated, record());
        assert!(is_token(&v2["email"], 2), "{v2}");
        assert_ne!(
            v1["email"].as_str().unwrap()[7..],
            v2["email"].as_str().unwrap()[7..]
        );
        assert_eq!(
            rotated.rekey(Field::Email, " Jane@Example.org"),
            Some(Rekey {
                previous: v1["email"].as_str().unwrap().to_owned(),
                current: v2["email"].as_str().unwrap().to_owned(),
            })
        );
        assert_eq!(
            with_mode("TOKENIZE").rekey(Field::Email, "jane@example.org"),
            None
        );
    }

    fn error(vars: &[(&str, &str)]) -> ConfigError {
        config(vars).expect_err("config should be refused")
    }

    #[test]
    fn a_keyed_mode_needs_a_key_and_the_others_do_not() {
        let err = error(&[]);
        assert_eq!(err.var, KEY_VAR);
        assert!(err.problem.starts_with("missing"), "{err}");
        let err = error(&[(MODE_VAR, "MASK"), (FIELD_MODES_VAR, "email=TOKENIZE")]);
        assert_eq!(err.var, KEY_VAR);
        assert!(
            err.problem.contains("email") && err.problem.contains("TOKENIZE"),
            "{err}"
        );
        assert!(config(&[(MODE_VAR, "MASK"), (FIELD_MODES_VAR, "ssn=REMOVE")]).is_ok());
        assert!(config(&[(MODE_VAR, "Remove")]).is_ok());
        // Every field overridden away from the keyed default: no key needed.
        let all_masked = <Field as strum::VariantArray>::VARIANTS
            .iter()
            .map(|field| format!("{field}=MASK"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(config(&[(FIELD_MODES_VAR, &all_masked)]).is_ok());
    }

    #[test]
    fn malformed_modes_are_refused_naming_the_variable_and_the_entry() {
        let err = error(&[(MODE_VAR, "ENCRYPT")]);
        assert_eq!(err.var, MODE_VAR);
        assert_eq!(
            err.problem,
            "'ENCRYPT' is not one of HASH, MASK, REMOVE, TOKENIZE"
        );
        for (entry, says) in [
            (
                "emial=HASH",
                "'emial=HASH': 'emial' is not a personal data field",
            ),
            ("email=HASHED", "'email=HASHED': 'HASHED' is not one of"),
            ("email", "'email' is not field=MODE"),
            (
                "email=MASK,EMAIL=HASH",
                "'EMAIL=HASH': email is given twice",
            ),
        ] {
            let err = error(&[(KEY_VAR, KEY), (FIELD_MODES_VAR, entry)]);
            assert_eq!(err.var, FIELD_MODES_VAR);
            assert!(err.problem.starts_with(says), "{err}");
        }
    }

    #[test]
    fn bad_keys_are_refused_without_echoing_them() {
        for (vars, var, says) in [
            (
                vec![(KEY_VAR, "replace-me-openssl-rand-base64-32")],
                KEY_VAR,
                "still the placeholder",
            ),
            (
                vec![(KEY_VAR, "c2hvcnQ=")],
                KEY_VAR,
                "must decode to at least 32 bytes, got 5",
            ),
            (
                vec![(KEY_VAR, "not base64!")],
                KEY_VAR,
                "is not valid base64",
            ),
            (
                vec![(KEY_VAR, KEY), (KEY_VERSION_VAR, "0")],
                KEY_VERSION_VAR,
                "must be greater than zero",
            ),
            (
                vec![(KEY_VAR, KEY), (PREVIOUS_KEY_VAR, "replace-me")],
                PREVIOUS_KEY_VAR,
                "still the placeholder",
            ),
            (
                vec![
                    (KEY_VAR, KEY),
                    (PREVIOUS_KEY_VAR, KEY),
                    (KEY_VERSION_VAR, "2"),
                ],
                PREVIOUS_KEY_VAR,
                "is the same key",
            ),
            (
                vec![(KEY_VAR, KEY), (PREVIOUS_KEY_VAR, OTHER_KEY)],
                PREVIOUS_VERSION_VAR,
                "missing",
            ),
            (
                vec![
                    (KEY_VAR, KEY),
                    (KEY_VERSION_VAR, "3"),
                    (PREVIOUS_KEY_VAR, OTHER_KEY),
                    (PREVIOUS_VERSION_VAR, "3"),
                ],
                PREVIOUS_VERSION_VAR,
                "must differ",
            ),
            (
                vec![(KEY_VAR, KEY), (PREVIOUS_VERSION_VAR, "1")],
                PREVIOUS_VERSION_VAR,
                "set without",
            ),
            (
                vec![(MODE_VAR, "MASK"), (PREVIOUS_KEY_VAR, OTHER_KEY)],
                PREVIOUS_KEY_VAR,
                "set without",
            ),
        ] {
            let err = error(&vars);
            assert_eq!(err.var, var, "{err}");
            assert!(err.problem.starts_with(says), "{err}");
            for (_, value) in &vars {
                if value.len() > 8 {
                    assert!(!err.to_string().contains(value), "{err}");
                }
            }
        }
        // Previous version given explicitly, and below a version 1 key.
        assert!(
            config(&[
                (KEY_VAR, KEY),
                (PREVIOUS_KEY_VAR, OTHER_KEY),
                (PREVIOUS_VERSION_VAR, "7")
            ])
            .is_ok()
        );
    }

    #[test]
    fn debug_output_never_shows_a_key() {
        let config = config(&[
            (KEY_VAR, KEY),
            (KEY_VERSION_VAR, "2"),
            (PREVIOUS_KEY_VAR, OTHER_KEY),
        ])
        .unwrap();
        for debug in [
            format!("{config:?}"),
            format!("{:?}", Redactor::new(config)),
        ] {
            assert!(debug.contains("[REDACTED]"), "{debug}");
            for secret in [
                KEY,
                OTHER_KEY,
                "0707070707",
                "0909090909",
                "[7, 7, 7",
                "[9, 9, 9",
            ] {
                assert!(!debug.contains(secret), "{debug}");
            }
        }
    }

    #[test]
    fn redacting_redacted_text_changes_nothing() {
        let text = "call +44 20 7946 0958, mail jane@example.org, SSN 123-45-6789";
        for mode in ["HASH", "MASK", "REMOVE", "TOKENIZE"] {
            let redactor = with_mode(mode);
            let once = redactor.redact_text(text).into_owned();
            assert!(
                matches!(redactor.redact_text(&once), Cow::Borrowed(_)),
                "{mode}: {once}"
            );
        }
    }

    /// Values are built from letters outside a-f and with separators, so a
    /// hex digest cannot contain one by chance.
    fn email() -> impl Strategy<Value = String> {
        (
            "[a-zA-Z][g-zG-Z.]{2,10}",
            "[g-z]{3,10}",
            "(com|org|net|co\\.uk|de)",
        )
            .prop_map(|(local, domain, tld)| format!("{local}@{domain}.{tld}"))
    }

    fn phone() -> impl Strategy<Value = String> {
        prop_oneof![
            (
                "[1-9][0-9]{0,2}",
                "[1-9][0-9]{1,3}",
                "[0-9]{3,4}",
                "[0-9]{4}",
                "[ .-]"
            )
                .prop_map(|(cc, a, b, c, sep)| format!("+{cc}{sep}{a}{sep}{b}{sep}{c}")),
            ("[1-9][0-9]{6,11}").prop_map(|digits| format!("+{digits}")),
            ("[2-9][0-9]{2}", "[2-9][0-9]{2}", "[0-9]{4}")
                .prop_map(|(a, b, c)| format!("({a}) {b}-{c}")),
            ("0[1-9][0-9]", "[0-9]{3,4}", "[0-9]{4}", "[ .-]")
                .prop_map(|(a, b, c, sep)| format!("{a}{sep}{b}{sep}{c}")),
        ]
    }

    fn person_name() -> impl Strategy<Value = String> {
        "[G-Z][g-z]{3,9}( [G-Z][g-z]{3,9})?"
    }

    const PLAIN_KEYS: &[&str] = &["data", "profile", "items", "meta", "volunteer"];
    const NAME_KEYS: &[&str] = &[
        "firstName",
        "last_name",
        "DISPLAYNAME",
        "name",
        "given-name",
    ];
    const EMAIL_KEYS: &[&str] = &["email", "EMAIL", "emailAddress"];
    const PHONE_KEYS: &[&str] = &["phoneNumber", "mobile_phone", "phone"];

    /// Puts `leaf` under `key`, wrapped in `depth` levels of objects and
    /// arrays.
    fn nest(key: &str, leaf: Value, path: &[(usize, bool)]) -> Value {
        let mut value = json!({ key: leaf });
        for &(plain, in_array) in path {
            value = json!({ PLAIN_KEYS[plain % PLAIN_KEYS.len()]: value });
            if in_array {
                value = json!([{ "kind": "wrapper" }, value]);
            }
        }
        value
    }

    proptest! {
        #[test]
        fn no_original_value_survives_in_any_mode(
            emails in prop::collection::vec(email(), 1..4),
            phones in prop::collection::vec(phone(), 1..4),
            names in prop::collection::vec(person_name(), 1..4),
            key_choice in 0usize..15,
            path in prop::collection::vec((0usize..5, any::<bool>()), 0..5),
            scim in any::<bool>(),
        ) {
            let mut items = Vec::new();
            for (i, email) in emails.iter().enumerate() {
                let leaf = if scim { json!([{ "value": email, "primary": true }]) } else { json!(email) };
                let key = if scim { "emails" } else { EMAIL_KEYS[(key_choice + i) % EMAIL_KEYS.len()] };
                items.push(nest(key, leaf, &path[..i.min(path.len())]));
                items.push(nest("notes", json!(format!("write to {email}, thanks")), &path));
            }
            for (i, phone) in phones.iter().enumerate() {
                items.push(nest(PHONE_KEYS[(key_choice + i) % PHONE_KEYS.len()], json!(phone), &path));
                items.push(nest("comment", json!(format!("call {phone} after 5pm")), &path[i.min(path.len())..]));
            }
            for (i, name) in names.iter().enumerate() {
                let leaf = if scim { json!({ "givenName": name, "formatted": name }) } else { json!(name) };
                let key = if scim { "name" } else { NAME_KEYS[(key_choice + i) % NAME_KEYS.len()] };
                items.push(nest(key, leaf, &path));
            }
            let record = json!({ "id": "550e8400-e29b-41d4-a716-446655440000", "records": items });
            for mode in ["HASH", "MASK", "REMOVE", "TOKENIZE"] {
                let mut value = record.clone();
                with_mode(mode).redact(&mut value);
                let dump = value.to_string();
                for original in emails.iter().chain(&phones).chain(&names) {
                    prop_assert!(!dump.contains(original.as_str()), "{mode}: {original} in {dump}");
                }
                prop_assert!(dump.contains("550e8400-e29b-41d4-a716-446655440000"));
            }
        }
    }

    proptest! {
        /// Arbitrary text, heavy in the characters the scanners look at:
        /// no panic (every slice on a character boundary), and a second
        /// pass finds nothing left.
        #[test]
        fn any_text_is_scanned_safely_and_once_is_enough(
            text in prop_oneof![any::<String>(), "[0-9 .()+@a-zA-Zé-]{0,60}"],
            mode in prop::sample::select(vec!["HASH", "MASK", "REMOVE", "TOKENIZE"]),
        ) {
            let redactor = with_mode(mode);
            let once = redactor.redact_text(&text).into_owned();
            prop_assert_eq!(redactor.redact_text(&once), once.as_str());
        }
    }
}
