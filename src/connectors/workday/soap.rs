//! Workday CSR Impact Report 3.0 over SOAP 1.1 (`docs/connectors.md`): the
//! request envelope with a WS-Security UsernameToken, and the reply (a
//! response element or a SOAP fault).
//!
//! The envelope is written by quick-xml's serializer, which escapes every
//! value (including `\r`, which parsers would otherwise normalise). Replies
//! are read namespace-aware, so any prefix the server chooses works.

use chrono::NaiveDate;
use serde::Serialize;
use uuid::Uuid;

use crate::report::{ImpactReport, Money};
use crate::xml::{self, Element};

pub const SOAP_ACTION: &str = "\"Submit_Impact_Report\"";
/// The action of [`ping_envelope`].
pub const PING_ACTION: &str = "\"Ping\"";

const SOAP_ENV_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const WD_NS: &str = "urn:com.workday/bsvc";
const WSSE_NS: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
const WSU_NS: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
const PASSWORD_TEXT: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText";
/// The web service version, `v` + the schema version of `super::schema`.
const SERVICE_VERSION: &str = "v3.0";

pub struct UsernameToken<'a> {
    /// Already qualified with the tenant: `user@tenant`.
    pub username: &'a str,
    pub password: &'a str,
}

/// The whole request document, XML declaration included.
pub fn envelope(report: &ImpactReport, delivery_id: &str, token: &UsernameToken<'_>) -> String {
    document(
        token,
        Body {
            request: Some(Request {
                version: SERVICE_VERSION,
                external_reference_id: delivery_id,
                organization_reference: report.company_id,
                reporting_period: ReportingPeriod {
                    start_date: report.period.start,
                    end_date: report.period.end,
                },
                volunteer_hours: report.volunteer_hours,
                volunteer_count: report.volunteer_count,
                participant_count: report.participant_count,
                session_count: report.session_count,
                donations: donations(&report.donations),
                outcome_scores: report
                    .outcome_scores
                    .iter()
                    .map(|(dimension, &score)| OutcomeScore { dimension, score })
                    .collect(),
                sroi_ratio: report.sroi_ratio,
                vis_score: report.vis_score,
                programs: report
                    .programmes
                    .iter()
                    .map(|programme| Program {
                        name: &programme.name,
                        volunteer_hours: programme.volunteer_hours,
                        participant_count: programme.participant_count,
                        donations: donations(&programme.donations),
                    })
                    .collect(),
            }),
            ping: None,
        },
    )
}

/// A connection test: authenticated like a delivery, delivering nothing;
/// answered by `wd:Ping_Response` or a fault.
pub fn ping_envelope(token: &UsernameToken<'_>) -> String {
    document(
        token,
        Body {
            request: None,
            ping: Some(Ping {
                version: SERVICE_VERSION,
            }),
        },
    )
}

fn document(token: &UsernameToken<'_>, body: Body<'_>) -> String {
    let envelope = Envelope {
        xmlns_soapenv: SOAP_ENV_NS,
        xmlns_wd: WD_NS,
        header: Header {
            security: Security {
                must_understand: "1",
                xmlns_wsse: WSSE_NS,
                xmlns_wsu: WSU_NS,
                username_token: UsernameTokenXml {
                    id: "UsernameToken-1",
                    username: token.username,
                    password: Password {
                        kind: PASSWORD_TEXT,
                        value: token.password,
                    },
                },
            },
        },
        body,
    };
    // Only fixed element names, strings and numbers are serialized, so an
    // error here would be a bug in the types below, not a property of the data.
    let xml = quick_xml::se::to_string(&envelope).expect("the SOAP envelope types serialize");
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{xml}")
}

fn donations(donations: &[Money]) -> Vec<Donation<'_>> {
    donations
        .iter()
        .map(|money| Donation {
            amount_minor: money.amount_minor,
            currency: &money.currency,
        })
        .collect()
}

// The serializer writes names as given, so the prefixes here are the ones
// declared on the envelope; `@` marks attributes, which must come first.

#[derive(Serialize)]
#[serde(rename = "soapenv:Envelope")]
struct Envelope<'a> {
    #[serde(rename = "@xmlns:soapenv")]
    xmlns_soapenv: &'static str,
    #[serde(rename = "@xmlns:wd")]
    xmlns_wd: &'static str,
    #[serde(rename = "soapenv:Header")]
    header: Header<'a>,
    #[serde(rename = "soapenv:Body")]
    body: Body<'a>,
}

#[derive(Serialize)]
struct Header<'a> {
    #[serde(rename = "wsse:Security")]
    security: Security<'a>,
}

#[derive(Serialize)]
struct Security<'a> {
    #[serde(rename = "@soapenv:mustUnderstand")]
    must_understand: &'static str,
    #[serde(rename = "@xmlns:wsse")]
    xmlns_wsse: &'static str,
    #[serde(rename = "@xmlns:wsu")]
    xmlns_wsu: &'static str,
    #[serde(rename = "wsse:UsernameToken")]
    username_token: UsernameTokenXml<'a>,
}

#[derive(Serialize)]
struct UsernameTokenXml<'a> {
    #[serde(rename = "@wsu:Id")]
    id: &'static str,
    #[serde(rename = "wsse:Username")]
    username: &'a str,
    #[serde(rename = "wsse:Password")]
    password: Password<'a>,
}

#[derive(Serialize)]
struct Password<'a> {
    #[serde(rename = "@Type")]
    kind: &'static str,
    #[serde(rename = "$text")]
    value: &'a str,
}

/// Exactly one of the two is set.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(
        rename = "wd:Submit_Impact_Report_Request",
        skip_serializing_if = "Option::is_none"
    )]
    request: Option<Request<'a>>,
    #[serde(rename = "wd:Ping_Request", skip_serializing_if = "Option::is_none")]
    ping: Option<Ping>,
}

#[derive(Serialize)]
struct Ping {
    #[serde(rename = "@wd:version")]
    version: &'static str,
}

#[derive(Serialize)]
struct Request<'a> {
    #[serde(rename = "@wd:version")]
    version: &'static str,
    #[serde(rename = "wd:External_Reference_ID")]
    external_reference_id: &'a str,
    #[serde(rename = "wd:Organization_Reference")]
    organization_reference: Uuid,
    #[serde(rename = "wd:Reporting_Period")]
    reporting_period: ReportingPeriod,
    #[serde(rename = "wd:Volunteer_Hours")]
    volunteer_hours: f64,
    #[serde(rename = "wd:Volunteer_Count")]
    volunteer_count: u32,
    #[serde(rename = "wd:Participant_Count")]
    participant_count: u32,
    #[serde(rename = "wd:Session_Count")]
    session_count: u32,
    #[serde(rename = "wd:Donation")]
    donations: Vec<Donation<'a>>,
    #[serde(rename = "wd:Outcome_Score")]
    outcome_scores: Vec<OutcomeScore<'a>>,
    #[serde(rename = "wd:SROI_Ratio", skip_serializing_if = "Option::is_none")]
    sroi_ratio: Option<f64>,
    #[serde(rename = "wd:VIS_Score", skip_serializing_if = "Option::is_none")]
    vis_score: Option<f64>,
    #[serde(rename = "wd:Program")]
    programs: Vec<Program<'a>>,
}

#[derive(Serialize)]
struct ReportingPeriod {
    #[serde(rename = "wd:Start_Date")]
    start_date: NaiveDate,
    #[serde(rename = "wd:End_Date")]
    end_date: NaiveDate,
}

#[derive(Serialize)]
struct Donation<'a> {
    #[serde(rename = "wd:Amount_Minor")]
    amount_minor: i64,
    #[serde(rename = "wd:Currency")]
    currency: &'a str,
}

#[derive(Serialize)]
struct OutcomeScore<'a> {
    #[serde(rename = "wd:Dimension")]
    dimension: &'a str,
    #[serde(rename = "wd:Score")]
    score: f64,
}

#[derive(Serialize)]
struct Program<'a> {
    #[serde(rename = "wd:Program_Name")]
    name: &'a str,
    #[serde(rename = "wd:Volunteer_Hours")]
    volunteer_hours: f64,
    #[serde(rename = "wd:Participant_Count")]
    participant_count: u32,
    #[serde(rename = "wd:Donation")]
    donations: Vec<Donation<'a>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SoapReply {
    Accepted {
        reference: String,
    },
    /// The answer to [`ping_envelope`].
    Pong,
    Fault(SoapFault),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SoapFault {
    /// The `faultcode` as sent, prefix included (`soapenv:Client.validationError`).
    pub code: String,
    /// The `faultstring`.
    pub message: String,
    /// `Message (at Xpath)` per `wd:Validation_Error`.
    pub validation_messages: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    Authentication,
    Client,
    Server,
}

impl SoapFault {
    pub fn kind(&self) -> FaultKind {
        let local = self
            .code
            .split_once(':')
            .map_or(self.code.as_str(), |(_, local)| local);
        match local.split_once('.').unwrap_or((local, "")) {
            ("Client", "authenticationError") => FaultKind::Authentication,
            // `MustUnderstand` and `VersionMismatch` (SOAP 1.1 §4.4.1) say
            // our envelope is wrong, like `Client`: the same envelope would
            // be refused again, so another attempt cannot help.
            ("Client" | "MustUnderstand" | "VersionMismatch", _) => FaultKind::Client,
            // `Server`, `Server.*`, and codes SOAP 1.1 does not define: an
            // unknown code says nothing about the request, and a retry is
            // bounded by the retry policy, whereas a wrong `Client` would
            // drop a delivery that a later attempt might have made.
            _ => FaultKind::Server,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unreadable SOAP reply: {0}")]
pub struct SoapParseError(String);

/// Reads the body of a reply: the response's reference, or the fault.
pub fn parse_reply(body: &str) -> Result<SoapReply, SoapParseError> {
    let envelope = xml::parse(body).map_err(|e| SoapParseError(format!("malformed XML: {e}")))?;
    if !envelope.is(SOAP_ENV_NS, "Envelope") {
        return Err(SoapParseError(format!(
            "the root element is {}, not a SOAP 1.1 Envelope",
            envelope.local_name()
        )));
    }
    let content = envelope
        .child(SOAP_ENV_NS, "Body")
        .ok_or_else(|| SoapParseError("the envelope has no Body".into()))?
        .children
        .first()
        .ok_or_else(|| SoapParseError("the Body is empty".into()))?;
    if content.is(SOAP_ENV_NS, "Fault") {
        return fault(content).map(SoapReply::Fault);
    }
    if content.is(WD_NS, "Submit_Impact_Report_Response") {
        let reference = content
            .child(WD_NS, "Impact_Report_Reference")
            .map(|reference| reference.text.trim())
            .filter(|reference| !reference.is_empty())
            .ok_or_else(|| SoapParseError("the response has no Impact_Report_Reference".into()))?;
        return Ok(SoapReply::Accepted {
            reference: reference.to_owned(),
        });
    }
    if content.is(WD_NS, "Ping_Response") {
        return Ok(SoapReply::Pong);
    }
    Err(SoapParseError(format!(
        "unexpected {} in the Body",
        content.local_name()
    )))
}

fn fault(fault: &Element) -> Result<SoapFault, SoapParseError> {
    // SOAP 1.1 leaves faultcode, faultstring and detail unqualified; some
    // servers qualify them anyway, so only the local name is compared.
    let text = |name: &str| fault.child_any_ns(name).map(|e| e.text.trim().to_owned());
    let code = text("faultcode")
        .filter(|code| !code.is_empty())
        .ok_or_else(|| SoapParseError("the fault has no faultcode".into()))?;
    let validation_messages = fault
        .child_any_ns("detail")
        .into_iter()
        .flat_map(|detail| detail.children_named(WD_NS, "Validation_Fault"))
        .flat_map(|validation| validation.children_named(WD_NS, "Validation_Error"))
        .map(|error| {
            let part = |name| error.child(WD_NS, name).map_or("", |e| e.text.trim());
            match (part("Message"), part("Xpath")) {
                (message, "") => message.to_owned(),
                (message, xpath) => format!("{message} (at {xpath})"),
            }
        })
        .collect();
    Ok(SoapFault {
        code,
        // Required by SOAP 1.1, but the code alone classifies the fault.
        message: text("faultstring").unwrap_or_default(),
        validation_messages,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    use quick_xml::reader::NsReader;

    use super::*;
    use crate::connectors::test_support::{example, money_totals, report, totals};

    const DELIVERY_ID: &str = "0f6f7a52-9a3e-4c1b-8d2f-5e6a7b8c9d0e";
    const TOKEN: UsernameToken<'static> = UsernameToken {
        username: "integration@acme",
        password: "s3cret",
    };

    fn request(xml: &str) -> Element {
        let mut envelope = xml::parse(xml).expect("a well-formed envelope");
        assert!(envelope.is(SOAP_ENV_NS, "Envelope"));
        let mut body = envelope.children.remove(1);
        assert!(body.is(SOAP_ENV_NS, "Body"));
        let request = body.children.remove(0);
        assert!(request.is(WD_NS, "Submit_Impact_Report_Request"));
        request
    }

    fn texts<'a>(parent: &'a Element, name: &'a str) -> impl Iterator<Item = &'a str> {
        parent.children_named(WD_NS, name).map(|e| e.text.as_str())
    }

    fn donation_totals(parent: &Element) -> BTreeMap<String, i128> {
        let donations: Vec<(&str, i64)> = parent
            .children_named(WD_NS, "Donation")
            .map(|d| {
                let amount = d
                    .child(WD_NS, "Amount_Minor")
                    .unwrap()
                    .text
                    .parse()
                    .unwrap();
                (d.child(WD_NS, "Currency").unwrap().text.as_str(), amount)
            })
            .collect();
        totals(donations)
    }

    /// The attributes of the first element `{namespace}name`, each as
    /// (namespace, local name, value).
    fn attributes(xml: &str, namespace: &str, name: &str) -> Vec<(Option<String>, String, String)> {
        let mut reader = NsReader::from_str(xml);
        loop {
            let (bound, event) = reader.read_resolved_event().unwrap();
            let matches = bound == ResolveResult::Bound(quick_xml::name::Namespace(namespace));
            match event {
                Event::Start(e) | Event::Empty(e)
                    if matches && e.local_name().into_inner() == name =>
                {
                    return e
                        .attributes()
                        .map(|a| {
                            let a = a.unwrap();
                            let (bound, local) = reader.resolver().resolve_attribute(a.key);
                            let namespace = match bound {
                                ResolveResult::Bound(ns) => Some(ns.into_inner().to_owned()),
                                _ => None,
                            };
                            let value = a.normalized_value(quick_xml::XmlVersion::Implicit1_0);
                            (
                                namespace,
                                local.into_inner().to_owned(),
                                value.unwrap().into_owned(),
                            )
                        })
                        .collect();
                }
                Event::Eof => panic!("no {{{namespace}}}{name} in the document"),
                _ => {}
            }
        }
    }

    #[test]
    fn the_documented_example_gives_the_documented_envelope() {
        let expected = concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            "\n",
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:wd="urn:com.workday/bsvc">"#,
            "<soapenv:Header>",
            r#"<wsse:Security soapenv:mustUnderstand="1" xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd">"#,
            r#"<wsse:UsernameToken wsu:Id="UsernameToken-1">"#,
            "<wsse:Username>integration@acme</wsse:Username>",
            r#"<wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText">s3cret</wsse:Password>"#,
            "</wsse:UsernameToken>",
            "</wsse:Security>",
            "</soapenv:Header>",
            "<soapenv:Body>",
            r#"<wd:Submit_Impact_Report_Request wd:version="v3.0">"#,
            "<wd:External_Reference_ID>0f6f7a52-9a3e-4c1b-8d2f-5e6a7b8c9d0e</wd:External_Reference_ID>",
            "<wd:Organization_Reference>6f1c2a8e-0d5b-4a39-9b0e-2f7d0c1e5a44</wd:Organization_Reference>",
            "<wd:Reporting_Period>",
            "<wd:Start_Date>2026-01-01</wd:Start_Date>",
            "<wd:End_Date>2026-03-31</wd:End_Date>",
            "</wd:Reporting_Period>",
            "<wd:Volunteer_Hours>1250.5</wd:Volunteer_Hours>",
            "<wd:Volunteer_Count>84</wd:Volunteer_Count>",
            "<wd:Participant_Count>312</wd:Participant_Count>",
            "<wd:Session_Count>96</wd:Session_Count>",
            "<wd:Donation><wd:Amount_Minor>1250000</wd:Amount_Minor><wd:Currency>EUR</wd:Currency></wd:Donation>",
            "<wd:Outcome_Score><wd:Dimension>integration</wd:Dimension><wd:Score>0.72</wd:Score></wd:Outcome_Score>",
            "<wd:Outcome_Score><wd:Dimension>language</wd:Dimension><wd:Score>0.65</wd:Score></wd:Outcome_Score>",
            "<wd:SROI_Ratio>3.4</wd:SROI_Ratio>",
            "<wd:VIS_Score>78.5</wd:VIS_Score>",
            "<wd:Program>",
            "<wd:Program_Name>R&amp;D &lt;Europe&gt; ]]&gt;</wd:Program_Name>",
            "<wd:Volunteer_Hours>400</wd:Volunteer_Hours>",
            "<wd:Participant_Count>120</wd:Participant_Count>",
            "</wd:Program>",
            "</wd:Submit_Impact_Report_Request>",
            "</soapenv:Body>",
            "</soapenv:Envelope>",
        );
        assert_eq!(envelope(&example(), DELIVERY_ID, &TOKEN), expected);
    }

    #[test]
    fn the_envelope_is_well_formed_with_the_ws_security_header() {
        assert_eq!(
            SERVICE_VERSION,
            format!("v{}", super::super::schema::SCHEMA_VERSION)
        );
        let xml = envelope(&example(), DELIVERY_ID, &TOKEN);
        let request = request(&xml);
        assert_eq!(
            texts(&request, "Program").count(),
            1,
            "the escaped name did not break the structure"
        );
        let program = request.child(WD_NS, "Program").unwrap();
        assert_eq!(
            program.child(WD_NS, "Program_Name").unwrap().text,
            "R&D <Europe> ]]>"
        );

        let own = |local: &str, value: &str| (None, local.to_owned(), value.to_owned());
        let qualified = |namespace: &str, local: &str, value: &str| {
            (
                Some(namespace.to_owned()),
                local.to_owned(),
                value.to_owned(),
            )
        };
        let xmlns = "http://www.w3.org/2000/xmlns/";
        assert_eq!(
            attributes(&xml, WSSE_NS, "Security"),
            vec![
                qualified(SOAP_ENV_NS, "mustUnderstand", "1"),
                qualified(xmlns, "wsse", WSSE_NS),
                qualified(xmlns, "wsu", WSU_NS),
            ]
        );
        assert_eq!(
            attributes(&xml, WSSE_NS, "UsernameToken"),
            vec![qualified(WSU_NS, "Id", "UsernameToken-1")]
        );
        assert_eq!(
            attributes(&xml, WSSE_NS, "Password"),
            vec![own("Type", PASSWORD_TEXT)]
        );
        assert_eq!(
            attributes(&xml, WD_NS, "Submit_Impact_Report_Request"),
            vec![qualified(WD_NS, "version", "v3.0")]
        );
    }

    #[test]
    fn credentials_are_escaped_too() {
        let token = UsernameToken {
            username: "a&b@acme",
            password: "<p\"a's&s>\r",
        };
        let envelope = xml::parse(&envelope(&example(), DELIVERY_ID, &token)).unwrap();
        let username_token = envelope
            .child(SOAP_ENV_NS, "Header")
            .and_then(|h| h.child(WSSE_NS, "Security"))
            .and_then(|s| s.child(WSSE_NS, "UsernameToken"))
            .unwrap();
        let text = |name| username_token.child(WSSE_NS, name).unwrap().text.as_str();
        assert_eq!(text("Username"), "a&b@acme");
        assert_eq!(text("Password"), "<p\"a's&s>\r");
    }

    #[test]
    fn absent_optional_scores_are_omitted() {
        let mut report = example();
        report.sroi_ratio = None;
        report.vis_score = None;
        let request = request(&envelope(&report, DELIVERY_ID, &TOKEN));
        assert!(request.child(WD_NS, "SROI_Ratio").is_none());
        assert!(request.child(WD_NS, "VIS_Score").is_none());
    }

    #[test]
    fn programme_donations_follow_the_participant_count() {
        let mut report = example();
        report.programmes[0].donations = vec![Money {
            amount_minor: 500,
            currency: "USD".into(),
        }];
        let request = request(&envelope(&report, DELIVERY_ID, &TOKEN));
        let names: Vec<&str> = request
            .child(WD_NS, "Program")
            .unwrap()
            .children
            .iter()
            .map(Element::local_name)
            .collect();
        assert_eq!(
            names,
            [
                "Program_Name",
                "Volunteer_Hours",
                "Participant_Count",
                "Donation"
            ]
        );
    }

    #[test]
    fn a_response_gives_its_reference_whatever_the_prefixes() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
            <env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/">
              <env:Body>
                <Submit_Impact_Report_Response xmlns="urn:com.workday/bsvc">
                  <Impact_Report_Reference> wd_0b5c </Impact_Report_Reference>
                </Submit_Impact_Report_Response>
              </env:Body>
            </env:Envelope>"#;
        assert_eq!(
            parse_reply(body).unwrap(),
            SoapReply::Accepted {
                reference: "wd_0b5c".into()
            }
        );
        let prefixed = concat!(
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:wd="urn:com.workday/bsvc">"#,
            "<soapenv:Body><wd:Submit_Impact_Report_Response>",
            "<wd:Impact_Report_Reference>wd_1</wd:Impact_Report_Reference>",
            "</wd:Submit_Impact_Report_Response></soapenv:Body></soapenv:Envelope>",
        );
        assert_eq!(
            parse_reply(prefixed).unwrap(),
            SoapReply::Accepted {
                reference: "wd_1".into()
            }
        );
    }

    fn fault_body(code: &str, message: &str, detail: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
            <soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:wd="urn:com.workday/bsvc">
              <soapenv:Body>
                <soapenv:Fault>
                  <faultcode>{code}</faultcode>
                  <faultstring>{message}</faultstring>
                  {detail}
                </soapenv:Fault>
              </soapenv:Body>
            </soapenv:Envelope>"#
        )
    }

    fn parse_fault(body: &str) -> SoapFault {
        match parse_reply(body).unwrap() {
            SoapReply::Fault(fault) => fault,
            other => panic!("expected a fault, got {other:?}"),
        }
    }

    #[test]
    fn an_authentication_fault() {
        let fault = parse_fault(&fault_body(
            "soapenv:Client.authenticationError",
            "Invalid username or password",
            "",
        ));
        assert_eq!(
            fault,
            SoapFault {
                code: "soapenv:Client.authenticationError".into(),
                message: "Invalid username or password".into(),
                validation_messages: vec![],
            }
        );
        assert_eq!(fault.kind(), FaultKind::Authentication);
    }

    #[test]
    fn a_validation_fault_keeps_every_message_with_its_path() {
        let detail = r#"<detail>
              <wd:Validation_Fault>
                <wd:Validation_Error>
                  <wd:Message>Volunteer_Hours must be &gt;= 0</wd:Message>
                  <wd:Xpath>/wd:Submit_Impact_Report_Request[1]/wd:Volunteer_Hours[1]</wd:Xpath>
                </wd:Validation_Error>
                <wd:Validation_Error>
                  <wd:Message><![CDATA[Currency "eur" is not ISO 4217]]></wd:Message>
                  <wd:Xpath>/wd:Submit_Impact_Report_Request[1]/wd:Donation[1]/wd:Currency[1]</wd:Xpath>
                </wd:Validation_Error>
              </wd:Validation_Fault>
            </detail>"#;
        let fault = parse_fault(&fault_body(
            "soapenv:Client.validationError",
            "Validation error occurred",
            detail,
        ));
        assert_eq!(
            fault,
            SoapFault {
                code: "soapenv:Client.validationError".into(),
                message: "Validation error occurred".into(),
                validation_messages: vec![
                    "Volunteer_Hours must be >= 0 (at /wd:Submit_Impact_Report_Request[1]/wd:Volunteer_Hours[1])".into(),
                    "Currency \"eur\" is not ISO 4217 (at /wd:Submit_Impact_Report_Request[1]/wd:Donation[1]/wd:Currency[1])".into(),
                ],
            }
        );
        assert_eq!(fault.kind(), FaultKind::Client);
    }

    #[test]
    fn a_server_fault() {
        let fault = parse_fault(&fault_body(
            "soapenv:Server.processingError",
            "Processing error occurred",
            "",
        ));
        assert_eq!(fault.code, "soapenv:Server.processingError");
        assert_eq!(fault.message, "Processing error occurred");
        assert_eq!(fault.kind(), FaultKind::Server);
    }

    #[test]
    fn fault_codes_are_classified_by_their_local_part() {
        let kind = |code: &str| {
            SoapFault {
                code: code.into(),
                message: String::new(),
                validation_messages: vec![],
            }
            .kind()
        };
        assert_eq!(
            kind("S:Client.authenticationError"),
            FaultKind::Authentication
        );
        assert_eq!(
            kind("Client.authenticationError"),
            FaultKind::Authentication
        );
        assert_eq!(kind("soapenv:Client"), FaultKind::Client);
        assert_eq!(kind("soapenv:Client.permissionError"), FaultKind::Client);
        assert_eq!(kind("soapenv:Server"), FaultKind::Server);
        assert_eq!(kind("soapenv:Server.timeout"), FaultKind::Server);
        assert_eq!(kind("soapenv:Clientele"), FaultKind::Server);
        assert_eq!(kind("soapenv:Unheard.of"), FaultKind::Server);
    }

    #[test]
    fn envelope_faults_are_permanent_client_faults() {
        for code in [
            "soapenv:MustUnderstand",
            "MustUnderstand",
            "env:VersionMismatch",
            "soapenv:VersionMismatch.wrongNamespace",
        ] {
            let fault = parse_fault(&fault_body(code, "the envelope was not understood", ""));
            assert_eq!(fault.kind(), FaultKind::Client, "{code}");
        }
    }

    #[test]
    fn anything_else_is_a_parse_error_that_says_why() {
        let envelope = |body: &str| {
            format!(
                r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:wd="urn:com.workday/bsvc"><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"#
            )
        };
        let response = envelope(
            "<wd:Submit_Impact_Report_Response><wd:Impact_Report_Reference>wd_1</wd:Impact_Report_Reference></wd:Submit_Impact_Report_Response>",
        );
        let truncated = &response[..response.len() - 20];
        // What the reader refuses, and why, is tested in `crate::xml`; here,
        // that its refusals surface as malformed XML.
        let cases = [
            (
                "<html><body>502 Bad Gateway</body></html>".into(),
                "root element is html",
            ),
            (truncated.into(), "malformed XML"),
            // Well-formed, but not a reply.
            (
                r#"<Envelope><Body><Fault><faultcode>Client</faultcode></Fault></Body></Envelope>"#
                    .into(),
                "not a SOAP 1.1 Envelope",
            ),
            (envelope(""), "the Body is empty"),
            (
                envelope("<wd:Something_Else/>"),
                "unexpected Something_Else",
            ),
            (
                envelope("<wd:Submit_Impact_Report_Response/>"),
                "no Impact_Report_Reference",
            ),
            (
                envelope("<soapenv:Fault><faultstring>no code</faultstring></soapenv:Fault>"),
                "no faultcode",
            ),
        ];
        for (body, why) in cases {
            let error = parse_reply(&body).expect_err(&body).to_string();
            assert!(error.contains(why), "{body:?} gave {error:?}");
        }
    }

    proptest! {
        #[test]
        fn every_outcome_score_appears_once_with_its_value(report in report()) {
            let request = request(&envelope(&report, DELIVERY_ID, &TOKEN));
            let scores: Vec<(&str, f64)> = request
                .children_named(WD_NS, "Outcome_Score")
                .map(|o| {
                    let dimension = o.child(WD_NS, "Dimension").unwrap().text.as_str();
                    (dimension, o.child(WD_NS, "Score").unwrap().text.parse().unwrap())
                })
                .collect();
            prop_assert_eq!(scores.len(), report.outcome_scores.len());
            for (dimension, score) in &report.outcome_scores {
                let found: Vec<f64> = scores
                    .iter()
                    .filter(|(d, _)| d == dimension)
                    .map(|&(_, s)| s)
                    .collect();
                prop_assert_eq!(found, vec![*score]);
            }
        }

        #[test]
        fn money_programmes_and_names_survive_the_envelope(report in report()) {
            let request = request(&envelope(&report, DELIVERY_ID, &TOKEN));
            prop_assert_eq!(
                donation_totals(&request),
                money_totals(&report.donations)
            );
            let programs: Vec<&Element> = request.children_named(WD_NS, "Program").collect();
            prop_assert_eq!(programs.len(), report.programmes.len());
            for (program, programme) in programs.into_iter().zip(&report.programmes) {
                let names: Vec<&str> = texts(program, "Program_Name").collect();
                prop_assert_eq!(names, vec![programme.name.as_str()]);
                prop_assert_eq!(
                    donation_totals(program),
                    money_totals(&programme.donations)
                );
            }
        }
    }
}
