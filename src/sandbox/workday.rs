//! Workday CSR Impact Report `3.0`, REST (bearer token bound to the tenant)
//! and SOAP 1.1 (WS-Security UsernameToken), one delivery store for both.

use std::sync::Arc;

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    api::{self, error},
    schema::{self, Check, Node},
    soap::{self, Fault, WD},
    state::{SandboxState, StoredResponse},
};
use crate::provider::Provider;
use crate::xml::{self, Element};

const SOAP_ACTION: &str = "Submit_Impact_Report";
const PING_ACTION: &str = "Ping";
const REQUEST_XPATH: &str = "/soapenv:Envelope/soapenv:Body/wd:Submit_Impact_Report_Request";

pub(crate) fn routes() -> Router<Arc<SandboxState>> {
    Router::new()
        .route("/ccx/api/csr/v3/{tenant}/impactReports", post(submit_rest))
        .route("/ccx/service/{tenant}/CSR_Impact/v3.0", post(submit_soap))
        .route("/ccx/api/csr/v3/{tenant}/ping", get(ping_rest))
}

/// The REST connection test: the bearer token checked, nothing delivered.
async fn ping_rest(
    State(state): State<Arc<SandboxState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    match authenticate_rest(&state, &tenant, &headers) {
        Ok(()) => api::pong(),
        Err(refused) => refused,
    }
}

/// A known tenant and a bearer token that tenant issued (the REST and SCIM
/// routes).
pub(crate) fn authenticate_rest(
    state: &SandboxState,
    tenant: &str,
    headers: &HeaderMap,
) -> Result<(), Response> {
    if !state.config.workday_tenant_known(tenant) {
        return Err(error(
            StatusCode::NOT_FOUND,
            "not_found",
            "unknown Workday tenant",
        ));
    }
    let token =
        api::bearer(headers).ok_or_else(|| api::unauthenticated("a bearer token is required"))?;
    state
        .check_token(Provider::Workday, Some(tenant), token)
        .map_err(api::invalid_token)?;
    Ok(())
}

async fn submit_rest(
    State(state): State<Arc<SandboxState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = api::intercept(&state, Provider::Workday).await {
        return response;
    }
    handle_rest(&state, &tenant, &headers, &body).unwrap_or_else(|refused| refused)
}

fn handle_rest(
    state: &SandboxState,
    tenant: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, Response> {
    authenticate_rest(state, tenant, headers)?;
    let payload = api::json_body(headers, body)?;
    let key = validate_rest(&payload)
        .map_err(api::invalid_payload)?
        .to_owned();
    Ok(api::deliver(
        state,
        Provider::Workday,
        &key,
        payload,
        || {
            let id = format!("wd_{}", Uuid::new_v4());
            let answer = json!({ "id": id, "externalReferenceId": key });
            (id, api::stored_json(StatusCode::CREATED, &answer))
        },
    ))
}

/// The schema of the REST body; answers the `externalReferenceId`, which is
/// the idempotency key.
fn validate_rest(body: &Value) -> Check<&str> {
    let report = Node::root(body).object(&[
        "schemaVersion",
        "externalReferenceId",
        "organizationReference",
        "reportingPeriod",
        "volunteerHours",
        "volunteerCount",
        "participantCount",
        "sessionCount",
        "donations",
        "outcomeScores",
        "sroiRatio",
        "visScore",
        "programs",
    ])?;
    report.field("schemaVersion").constant("3.0")?;
    let key = report.field("externalReferenceId").text()?;
    report.field("organizationReference").uuid()?;
    report
        .field("reportingPeriod")
        .object(&["startDate", "endDate"])?
        .period("startDate", "endDate")?;
    report.field("volunteerHours").quantity()?;
    report.field("volunteerCount").count()?;
    report.field("participantCount").count()?;
    report.field("sessionCount").count()?;
    report.field("donations").donations("amountMinor")?;
    for outcome in report.field("outcomeScores").items()? {
        let outcome = outcome.object(&["dimension", "score"])?;
        outcome.field("dimension").text()?;
        outcome.field("score").score()?;
    }
    report.field("sroiRatio").optional_quantity()?;
    report.field("visScore").optional_quantity()?;
    for program in report.field("programs").items()? {
        let program = program.object(&[
            "programName",
            "volunteerHours",
            "participantCount",
            "donations",
        ])?;
        program.field("programName").text()?;
        program.field("volunteerHours").quantity()?;
        program.field("participantCount").count()?;
        program.field("donations").donations("amountMinor")?;
    }
    Ok(key)
}

async fn submit_soap(
    State(state): State<Arc<SandboxState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = api::intercept(&state, Provider::Workday).await {
        return response;
    }
    handle_soap(&state, &tenant, &headers, &body).unwrap_or_else(|refused| refused)
}

fn handle_soap(
    state: &SandboxState,
    tenant: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, Response> {
    let client_fault = |message: &str| Fault::Client(message.into());
    if !state.config.workday_tenant_known(tenant) {
        return Err(
            client_fault("unknown Workday tenant").into_response_with(StatusCode::NOT_FOUND)
        );
    }
    if !api::has_media_type(headers, "text/xml") {
        return Err(client_fault("Content-Type must be text/xml")
            .into_response_with(StatusCode::UNSUPPORTED_MEDIA_TYPE));
    }
    let action = api::header(headers, "SOAPAction").map(|action| action.trim().trim_matches('"'));
    if !matches!(action, Some(SOAP_ACTION | PING_ACTION)) {
        return Err(
            client_fault("SOAPAction must be \"Submit_Impact_Report\" or \"Ping\"").into_response(),
        );
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| client_fault("the body is not UTF-8").into_response())?;
    let envelope = xml::parse(text).map_err(|problem| {
        Fault::Client(format!("the body is not well-formed XML: {problem}")).into_response()
    })?;
    let request = soap::open(&envelope).map_err(IntoResponse::into_response)?;
    soap::authenticate(request.header, |username, password| {
        state.config.workday_user_valid(tenant, username, password)
    })
    .map_err(IntoResponse::into_response)?;
    // The connection test: authenticated like a submission, delivers nothing.
    if request.operation.is(WD, "Ping_Request") {
        return Ok((
            [(axum::http::header::CONTENT_TYPE, soap::XML_CONTENT_TYPE)],
            soap::ping_response(),
        )
            .into_response());
    }
    let key = validate_soap(request.operation).map_err(IntoResponse::into_response)?;
    Ok(api::deliver(
        state,
        Provider::Workday,
        &key,
        Value::String(text.to_owned()),
        || {
            let reference = format!("wd_{}", Uuid::new_v4());
            let response = StoredResponse {
                status: StatusCode::OK,
                content_type: soap::XML_CONTENT_TYPE,
                body: soap::submit_response(&reference).into(),
            };
            (reference, response)
        },
    ))
}

/// The schema of `wd:Submit_Impact_Report_Request` (an XSD sequence: order
/// matters); answers `wd:External_Reference_ID`, the idempotency key.
fn validate_soap(operation: &Element) -> Result<String, Fault> {
    if !operation.is(WD, "Submit_Impact_Report_Request") {
        return Err(Fault::Client(format!(
            "unknown operation {}",
            operation.qname
        )));
    }
    let request = XNode {
        element: operation,
        xpath: REQUEST_XPATH.into(),
    };
    if operation.attribute(Some(WD), "version") != Some("v3.0") {
        return Err(invalid(
            "wd:version must be \"v3.0\"",
            format!("{REQUEST_XPATH}/@wd:version"),
        ));
    }
    let fields = request.sequence(&[
        Slot::one("External_Reference_ID"),
        Slot::one("Organization_Reference"),
        Slot::one("Reporting_Period"),
        Slot::one("Volunteer_Hours"),
        Slot::one("Volunteer_Count"),
        Slot::one("Participant_Count"),
        Slot::one("Session_Count"),
        Slot::many("Donation"),
        Slot::many("Outcome_Score"),
        Slot::optional("SROI_Ratio"),
        Slot::optional("VIS_Score"),
        Slot::many("Program"),
    ])?;
    let key = fields
        .one("External_Reference_ID")
        .text()?
        .trim()
        .to_owned();
    fields.one("Organization_Reference").uuid()?;
    let period = fields
        .one("Reporting_Period")
        .sequence(&[Slot::one("Start_Date"), Slot::one("End_Date")])?;
    let start = period.one("Start_Date").date()?;
    let end = period.one("End_Date");
    if end.date()? < start {
        return Err(end.invalid("must not be before wd:Start_Date"));
    }
    fields.one("Volunteer_Hours").quantity()?;
    fields.one("Volunteer_Count").count()?;
    fields.one("Participant_Count").count()?;
    fields.one("Session_Count").count()?;
    donations(&fields)?;
    for outcome in fields.all("Outcome_Score") {
        let outcome = outcome.sequence(&[Slot::one("Dimension"), Slot::one("Score")])?;
        outcome.one("Dimension").text()?;
        outcome.one("Score").score()?;
    }
    for optional in ["SROI_Ratio", "VIS_Score"] {
        if let Some(value) = fields.optional(optional) {
            value.quantity()?;
        }
    }
    for program in fields.all("Program") {
        let program = program.sequence(&[
            Slot::one("Program_Name"),
            Slot::one("Volunteer_Hours"),
            Slot::one("Participant_Count"),
            Slot::many("Donation"),
        ])?;
        program.one("Program_Name").text()?;
        program.one("Volunteer_Hours").quantity()?;
        program.one("Participant_Count").count()?;
        donations(&program)?;
    }
    Ok(key)
}

fn donations(parent: &Sequence<'_>) -> Result<(), Fault> {
    for donation in parent.all("Donation") {
        let donation = donation.sequence(&[Slot::one("Amount_Minor"), Slot::one("Currency")])?;
        donation.one("Amount_Minor").count()?;
        donation.one("Currency").currency()?;
    }
    Ok(())
}

fn invalid(message: impl Into<String>, xpath: String) -> Fault {
    Fault::Validation {
        message: message.into(),
        xpath,
    }
}

/// One `wd:` child in an XSD sequence: how often it may appear.
struct Slot {
    name: &'static str,
    min: usize,
    max: usize,
}

impl Slot {
    const fn one(name: &'static str) -> Self {
        Self {
            name,
            min: 1,
            max: 1,
        }
    }

    const fn optional(name: &'static str) -> Self {
        Self {
            name,
            min: 0,
            max: 1,
        }
    }

    const fn many(name: &'static str) -> Self {
        Self {
            name,
            min: 0,
            max: usize::MAX,
        }
    }
}

/// An element and its XPath, for validation messages.
struct XNode<'x> {
    element: &'x Element,
    xpath: String,
}

/// The children of an element, grouped by slot.
struct Sequence<'x> {
    groups: Vec<(&'static str, Vec<&'x Element>)>,
    xpath: String,
}

impl<'x> XNode<'x> {
    fn invalid(&self, message: &str) -> Fault {
        invalid(message, self.xpath.clone())
    }

    /// Matches the `wd:` children against `slots` in order.
    fn sequence(&self, slots: &[Slot]) -> Result<Sequence<'x>, Fault> {
        let mut groups: Vec<Vec<&Element>> = vec![Vec::new(); slots.len()];
        let required = |index: usize, groups: &[Vec<&Element>]| {
            if groups[index].len() < slots[index].min {
                let name = slots[index].name;
                return Err(invalid(
                    format!("wd:{name} is required"),
                    format!("{}/wd:{name}", self.xpath),
                ));
            }
            Ok(())
        };
        let mut at = 0;
        for child in &self.element.children {
            let child_xpath = format!("{}/{}", self.xpath, child.qname);
            let offset = child
                .in_namespace(WD)
                .then(|| {
                    slots[at..]
                        .iter()
                        .position(|s| s.name == child.local_name())
                })
                .flatten()
                .ok_or_else(|| {
                    invalid(
                        format!(
                            "unexpected element {}: unknown, or out of order",
                            child.qname
                        ),
                        child_xpath.clone(),
                    )
                })?;
            for skipped in at..at + offset {
                required(skipped, &groups)?;
            }
            at += offset;
            if groups[at].len() == slots[at].max {
                return Err(invalid(
                    format!("{} may appear only once", child.qname),
                    child_xpath,
                ));
            }
            groups[at].push(child);
        }
        for rest in at..slots.len() {
            required(rest, &groups)?;
        }
        Ok(Sequence {
            groups: slots.iter().map(|s| s.name).zip(groups).collect(),
            xpath: self.xpath.clone(),
        })
    }

    /// Character data of a leaf element.
    fn text(&self) -> Result<&'x str, Fault> {
        if !self.element.children.is_empty() {
            return Err(self.invalid("must hold text, not elements"));
        }
        let text = self.element.text.as_str();
        if text.trim().is_empty() {
            return Err(self.invalid("must not be blank"));
        }
        Ok(text)
    }

    /// xs:decimal: digits with an optional sign and fraction, no exponent.
    fn decimal(&self) -> Result<f64, Fault> {
        let text = self.text()?.trim();
        let digits = text.trim_start_matches(['+', '-']);
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let lexical = text.len() - digits.len() <= 1
            && !(whole.is_empty() && fraction.is_empty())
            && whole
                .bytes()
                .chain(fraction.bytes())
                .all(|b| b.is_ascii_digit());
        match text.parse::<f64>() {
            Ok(number) if lexical => Ok(number),
            _ => Err(self.invalid("must be a decimal number")),
        }
    }

    fn quantity(&self) -> Result<f64, Fault> {
        match self.decimal()? {
            number if number >= 0.0 => Ok(number),
            _ => Err(self.invalid("must be a number >= 0")),
        }
    }

    fn score(&self) -> Result<(), Fault> {
        if !(0.0..=1.0).contains(&self.decimal()?) {
            return Err(self.invalid("must be a number between 0 and 1"));
        }
        Ok(())
    }

    /// xs:nonNegativeInteger.
    fn count(&self) -> Result<u64, Fault> {
        let text = self.text()?.trim();
        match text.parse::<u64>() {
            Ok(count) if text.bytes().all(|b| b.is_ascii_digit()) => Ok(count),
            _ => Err(self.invalid("must be an integer >= 0")),
        }
    }

    fn date(&self) -> Result<chrono::NaiveDate, Fault> {
        schema::parse_date(self.text()?.trim())
            .ok_or_else(|| self.invalid("must be a date YYYY-MM-DD"))
    }

    fn currency(&self) -> Result<(), Fault> {
        if !schema::is_currency(self.text()?.trim()) {
            return Err(self.invalid("must be three upper-case letters (ISO 4217)"));
        }
        Ok(())
    }

    fn uuid(&self) -> Result<(), Fault> {
        uuid::Uuid::try_parse(self.text()?.trim())
            .map(|_| ())
            .map_err(|_| self.invalid("must be a UUID"))
    }
}

impl<'x> Sequence<'x> {
    fn group(&self, name: &str) -> &[&'x Element] {
        self.groups
            .iter()
            .find(|(slot, _)| *slot == name)
            .map(|(_, elements)| elements.as_slice())
            .unwrap_or_default()
    }

    fn node(&self, name: &str, element: &'x Element, position: Option<usize>) -> XNode<'x> {
        let index = position.map(|p| format!("[{}]", p + 1)).unwrap_or_default();
        XNode {
            element,
            xpath: format!("{}/wd:{name}{index}", self.xpath),
        }
    }

    /// A slot of `Slot::one` (its presence was checked by `sequence`).
    fn one(&self, name: &str) -> XNode<'x> {
        self.optional(name)
            .unwrap_or_else(|| unreachable!("wd:{name} is a required slot"))
    }

    fn optional(&self, name: &str) -> Option<XNode<'x>> {
        self.group(name)
            .first()
            .map(|element| self.node(name, element, None))
    }

    /// A repeating slot, each element with its 1-based XPath position.
    fn all(&self, name: &str) -> Vec<XNode<'x>> {
        self.group(name)
            .iter()
            .enumerate()
            .map(|(position, element)| self.node(name, element, Some(position)))
            .collect()
    }
}
