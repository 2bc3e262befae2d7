//! SOAP 1.1 as Workday speaks it: the envelope, the WS-Security
//! UsernameToken with a `#PasswordText` password, and faults.

use axum::{
    http::{HeaderValue, StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
};
use quick_xml::escape::escape;

use crate::xml::Element;

const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
pub(crate) const WD: &str = "urn:com.workday/bsvc";
pub(crate) const XML_CONTENT_TYPE: &str = "text/xml; charset=utf-8";

/// A SOAP 1.1 fault; each variant is one `faultcode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    VersionMismatch(String),
    MustUnderstand(String),
    Client(String),
    Authentication(String),
    Validation { message: String, xpath: String },
}

/// The parts of an envelope a handler needs.
pub(crate) struct Request<'x> {
    pub header: Option<&'x Element>,
    /// The single element in `soapenv:Body`.
    pub operation: &'x Element,
}

/// `soapenv:Envelope` holding an optional `soapenv:Header`, then a
/// `soapenv:Body` with exactly one operation element.
pub(crate) fn open(envelope: &Element) -> Result<Request<'_>, Fault> {
    if !envelope.is(SOAP_ENV, "Envelope") {
        return Err(if envelope.local_name() == "Envelope" {
            Fault::VersionMismatch(format!("the envelope namespace must be {SOAP_ENV}"))
        } else {
            Fault::Client("the root element must be soapenv:Envelope".into())
        });
    }
    let is_body = |element: &Element| element.is(SOAP_ENV, "Body");
    let (header, body) = match envelope.children.as_slice() {
        [body] if is_body(body) => (None, body),
        [header, body] if header.is(SOAP_ENV, "Header") && is_body(body) => (Some(header), body),
        _ => {
            return Err(Fault::Client(
                "soapenv:Envelope must hold an optional soapenv:Header, then soapenv:Body".into(),
            ));
        }
    };
    match body.children.as_slice() {
        [operation] => Ok(Request { header, operation }),
        _ => Err(Fault::Client(
            "soapenv:Body must hold exactly one operation element".into(),
        )),
    }
}

/// Checks the WS-Security header; `verify(username, password)` decides
/// whether the credentials are good.
pub(crate) fn authenticate(
    header: Option<&Element>,
    verify: impl Fn(&str, &str) -> bool,
) -> Result<(), Fault> {
    let refuse = |message: &str| Fault::Authentication(message.into());
    let blocks = header.map(|h| h.children.as_slice()).unwrap_or_default();
    if let Some(unknown) = blocks.iter().find(|block| {
        !block.is(WSSE, "Security")
            && block.attribute(Some(SOAP_ENV), "mustUnderstand") == Some("1")
    }) {
        return Err(Fault::MustUnderstand(format!(
            "header {} is not understood",
            unknown.qname
        )));
    }
    let mut securities = blocks.iter().filter(|block| block.is(WSSE, "Security"));
    let security = securities
        .next()
        .ok_or_else(|| refuse("a wsse:Security header is required"))?;
    if securities.next().is_some() {
        return Err(refuse("only one wsse:Security header is allowed"));
    }
    if security.attribute(Some(SOAP_ENV), "mustUnderstand") != Some("1") {
        return Err(refuse(
            "wsse:Security must carry soapenv:mustUnderstand=\"1\"",
        ));
    }
    let token = security
        .child(WSSE, "UsernameToken")
        .ok_or_else(|| refuse("wsse:UsernameToken is required"))?;
    let username = token
        .child(WSSE, "Username")
        .ok_or_else(|| refuse("wsse:Username is required"))?;
    let password = token
        .child(WSSE, "Password")
        .ok_or_else(|| refuse("wsse:Password is required"))?;
    if !password
        .attribute(None, "Type")
        .is_some_and(|kind| kind.ends_with("#PasswordText"))
    {
        return Err(refuse("wsse:Password must have Type ...#PasswordText"));
    }
    if !verify(username.text.trim(), &password.text) {
        return Err(refuse("invalid username or password"));
    }
    Ok(())
}

impl Fault {
    fn code(&self) -> &'static str {
        match self {
            Self::VersionMismatch(_) => "soapenv:VersionMismatch",
            Self::MustUnderstand(_) => "soapenv:MustUnderstand",
            Self::Client(_) => "soapenv:Client",
            Self::Authentication(_) => "soapenv:Client.authenticationError",
            Self::Validation { .. } => "soapenv:Client.validationError",
        }
    }

    fn string(&self) -> &str {
        match self {
            Self::VersionMismatch(message)
            | Self::MustUnderstand(message)
            | Self::Client(message)
            | Self::Authentication(message) => message,
            Self::Validation { .. } => "Validation error occurred",
        }
    }

    fn to_xml(&self) -> String {
        let detail = match self {
            Self::Validation { message, xpath } => format!(
                "<detail><wd:Validation_Fault><wd:Validation_Error>\
                 <wd:Message>{}</wd:Message><wd:Xpath>{}</wd:Xpath>\
                 </wd:Validation_Error></wd:Validation_Fault></detail>",
                escape(message.as_str()),
                escape(xpath.as_str()),
            ),
            _ => String::new(),
        };
        envelope(&format!(
            "<soapenv:Fault><faultcode>{}</faultcode><faultstring>{}</faultstring>{detail}</soapenv:Fault>",
            self.code(),
            escape(self.string()),
        ))
    }

    /// SOAP 1.1 over HTTP answers faults with 500; `status` differs only for
    /// what is refused before SOAP processing (unknown tenant, media type).
    pub(crate) fn into_response_with(self, status: StatusCode) -> Response {
        tracing::debug!(
            faultcode = self.code(),
            faultstring = self.string(),
            "sandbox SOAP fault"
        );
        (
            status,
            [(CONTENT_TYPE, HeaderValue::from_static(XML_CONTENT_TYPE))],
            self.to_xml(),
        )
            .into_response()
    }
}

impl IntoResponse for Fault {
    fn into_response(self) -> Response {
        self.into_response_with(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// The answer to an accepted `Submit_Impact_Report_Request`.
pub(crate) fn submit_response(reference: &str) -> String {
    envelope(&format!(
        "<wd:Submit_Impact_Report_Response wd:version=\"v3.0\">\
         <wd:Impact_Report_Reference>{}</wd:Impact_Report_Reference>\
         </wd:Submit_Impact_Report_Response>",
        escape(reference),
    ))
}

/// The answer to a `wd:Ping_Request` (the connection test).
pub(crate) fn ping_response() -> String {
    envelope("<wd:Ping_Response wd:version=\"v3.0\"/>")
}

fn envelope(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <soapenv:Envelope xmlns:soapenv=\"{SOAP_ENV}\" xmlns:wd=\"{WD}\">\
         <soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml;

    const ENVELOPE_OPEN: &str = r#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" xmlns:w="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">"#;

    fn envelope(inner: &str) -> xml::Element {
        xml::parse(&format!("{ENVELOPE_OPEN}{inner}</e:Envelope>")).expect("well-formed")
    }

    fn security(must_understand: &str, password_type: &str) -> String {
        format!(
            r#"<e:Header><w:Security e:mustUnderstand="{must_understand}"><w:UsernameToken>
            <w:Username> user@tenant </w:Username>
            <w:Password Type="{password_type}">p&amp;ss</w:Password>
            </w:UsernameToken></w:Security></e:Header>"#
        )
    }

    fn authenticate_envelope(inner: &str) -> Result<(), Fault> {
        let root = envelope(inner);
        let request = open(&root)?;
        authenticate(request.header, |user, password| {
            user == "user@tenant" && password == "p&ss"
        })
    }

    #[test]
    fn the_envelope_holds_an_optional_header_then_one_operation_in_the_body() {
        let root = envelope("<e:Body><op/></e:Body>");
        assert!(open(&root).expect("valid").header.is_none());
        for bad in [
            "",
            "<e:Header/>",
            "<e:Body/>",
            "<e:Body><a/><b/></e:Body>",
            "<e:Body><op/></e:Body><e:Header/>",
            "<e:Body><op/></e:Body><e:Body><op/></e:Body>",
        ] {
            let root = envelope(bad);
            assert!(
                matches!(open(&root), Err(Fault::Client(_))),
                "{bad:?} is refused"
            );
        }
    }

    #[test]
    fn ws_security_needs_must_understand_password_text_and_good_credentials() {
        let text = "...#PasswordText";
        let body = "<e:Body><op/></e:Body>";
        assert_eq!(
            authenticate_envelope(&format!("{}{body}", security("1", text))),
            Ok(())
        );
        for inner in [
            body.to_owned(),
            format!("{}{body}", security("0", text)),
            format!("{}{body}", security("1", "...#PasswordDigest")),
            format!("{}{body}", security("1", text).replace("p&amp;ss", "pass")),
        ] {
            assert!(
                matches!(authenticate_envelope(&inner), Err(Fault::Authentication(_))),
                "{inner}"
            );
        }
        let unknown_block = security("1", text).replace(
            "</e:Header>",
            r#"<x:Trace xmlns:x="urn:x" e:mustUnderstand="1"/></e:Header>"#,
        );
        assert!(matches!(
            authenticate_envelope(&format!("{unknown_block}{body}")),
            Err(Fault::MustUnderstand(_))
        ));
    }

    #[test]
    fn faults_escape_their_text() {
        let fault = Fault::Validation {
            message: "a < b & c".into(),
            xpath: "/x".into(),
        }
        .to_xml();
        assert!(fault.contains("<faultcode>soapenv:Client.validationError</faultcode>"));
        assert!(fault.contains("<wd:Message>a &lt; b &amp; c</wd:Message>"));
        assert!(xml::parse(&fault).is_ok(), "well-formed: {fault}");
    }
}
