//! The one outbound HTTP client every connector shares, and the mapping of
//! provider answers to [`ConnectorError`] classes.

use std::time::{Duration, SystemTime};

use reqwest::{
    RequestBuilder, StatusCode, Url,
    header::{HeaderMap, LOCATION, RETRY_AFTER},
    redirect,
};
use tokio::time::Instant;
use tracing::Instrument;

use super::{ConnectorError, Receipt};

#[derive(Debug, Clone)]
pub struct OutboundConfig {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Response bodies are read up to this many bytes; the rest is dropped.
    pub max_response_bytes: usize,
    /// Longest `Retry-After` honoured; a provider asking for more gets this.
    pub max_retry_after: Duration,
}

/// A shared reqwest client (one connection pool for all providers).
#[derive(Debug, Clone)]
pub struct Outbound {
    client: reqwest::Client,
    config: OutboundConfig,
}

/// A provider's answer with its body read up to the bound.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// Where the request went (redirect targets are resolved against it).
    url: Url,
    pub body: Vec<u8>,
    pub latency: Duration,
    max_retry_after: Duration,
}

/// The longest body excerpt kept in receipts and error messages.
const EXCERPT_CHARS: usize = 1024;
/// The longest redirect target named in an error message.
const TARGET_CHARS: usize = 200;

impl Outbound {
    pub fn new(config: OutboundConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            // A redirect would re-send the request, API key, signature or
            // SOAP password included, to whatever origin `Location` names.
            .redirect(redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(concat!("impact-in/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, config })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends and reads the bounded body. Transport failures (refused, reset,
    /// timed out) are `Transient`; HTTP statuses are left to the caller.
    pub async fn send(&self, request: RequestBuilder) -> Result<Reply, ConnectorError> {
        let (client, request) = request.build_split();
        let mut request = request.map_err(transport_error)?;
        // The query is left out: it is the provider's to define, and may
        // carry what we would not log.
        let span = tracing::info_span!(
            "provider.call",
            otel.kind = "client",
            http.request.method = %request.method(),
            server.address = request.url().host_str().unwrap_or(""),
            url.path = request.url().path(),
            http.response.status_code = tracing::field::Empty,
            "error.type" = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        crate::telemetry::inject(&span, request.headers_mut());
        let reply = self.read(client, request).instrument(span.clone()).await;
        match &reply {
            Ok(reply) => {
                span.record("http.response.status_code", reply.status.as_u16());
            }
            Err(err) => {
                span.record("error.type", <&str>::from(err.class()));
                span.record("otel.status_code", "ERROR");
            }
        }
        reply
    }

    async fn read(
        &self,
        client: reqwest::Client,
        request: reqwest::Request,
    ) -> Result<Reply, ConnectorError> {
        let started = Instant::now();
        let mut response = client.execute(request).await.map_err(transport_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        let url = response.url().clone();
        let mut body = Vec::new();
        let broke_off = loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = self.config.max_response_bytes.saturating_sub(body.len());
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if room <= chunk.len() {
                        break None;
                    }
                }
                Ok(None) => break None,
                Err(err) => break Some(err),
            }
        };
        let reply = Reply {
            status,
            headers,
            url,
            body,
            latency: started.elapsed(),
            max_retry_after: self.config.max_retry_after,
        };
        match broke_off {
            Some(err) => Err(reply.broke_off(&err)),
            // The client follows no redirect (credentials must not go
            // wherever a `Location` points), and no caller may take a 3xx
            // for an answer either.
            None if reply.status.is_redirection() => Err(reply.error()),
            None => Ok(reply),
        }
    }
}

/// reqwest's Display omits the cause ("error sending request"); the chain
/// says what actually happened (refused, reset, timed out).
fn error_chain(err: &reqwest::Error) -> String {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    message
}

/// `Retry-After` as delta seconds or an HTTP-date (RFC 9110 allows both),
/// at most `max`; a date in the past is no wait.
pub fn retry_after(headers: &HeaderMap, max: Duration) -> Option<Duration> {
    let raw = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let delay = match raw.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(raw)
            .ok()?
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    };
    Some(delay.min(max))
}

fn transport_error(err: reqwest::Error) -> ConnectorError {
    ConnectorError::transient(error_chain(&err))
}

impl Reply {
    pub fn excerpt(&self) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .take(EXCERPT_CHARS)
            .collect()
    }

    pub fn receipt(&self, provider_reference: Option<String>) -> Receipt {
        Receipt {
            provider_reference,
            status: self.status.as_u16(),
            body_excerpt: self.excerpt(),
            latency: self.latency,
        }
    }

    /// `Retry-After`, bounded by `RETRY_AFTER_MAX_SECS`.
    pub fn retry_after(&self) -> Option<Duration> {
        retry_after(&self.headers, self.max_retry_after)
    }

    /// The error class of a non-success answer, by status, with what came
    /// back.
    pub fn error(&self) -> ConnectorError {
        let status = Some(self.status.as_u16());
        let excerpt = Some(self.excerpt());
        if self.status.is_redirection() {
            return ConnectorError::Permanent {
                message: format!(
                    "HTTP {} redirect {} not followed: provider calls never follow redirects",
                    self.status.as_u16(),
                    self.redirect_target()
                ),
                status,
                details: Vec::new(),
                excerpt,
            };
        }
        let message = format!("HTTP {}: {}", self.status.as_u16(), self.short_excerpt());
        match self.status {
            StatusCode::UNAUTHORIZED => ConnectorError::Auth {
                message,
                status,
                excerpt,
            },
            StatusCode::TOO_MANY_REQUESTS => ConnectorError::RateLimited {
                status,
                retry_after: self.retry_after(),
                excerpt,
            },
            StatusCode::REQUEST_TIMEOUT
            | StatusCode::INTERNAL_SERVER_ERROR
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => ConnectorError::Transient {
                message,
                status,
                retry_after: self.retry_after(),
                excerpt,
            },
            _ => ConnectorError::Permanent {
                message,
                status,
                details: Vec::new(),
                excerpt,
            },
        }
    }

    /// The answer's status arrived but its body broke off (reset, timeout).
    /// A 2xx is worth another attempt: the provider recognises the repeat by
    /// its delivery id. Any other status keeps its own class.
    fn broke_off(&self, err: &reqwest::Error) -> ConnectorError {
        if !self.is_success() {
            return self.error();
        }
        ConnectorError::Transient {
            message: format!(
                "HTTP {}, but the answer broke off: {}",
                self.status.as_u16(),
                error_chain(err)
            ),
            status: Some(self.status.as_u16()),
            retry_after: None,
            excerpt: Some(self.excerpt()),
        }
    }

    /// `to <absolute URL>` for the `Location` of a redirect, without query,
    /// fragment or user info (which may carry tokens).
    fn redirect_target(&self) -> String {
        let Some(location) = self.headers.get(LOCATION) else {
            return "with no Location".into();
        };
        let Some(mut target) = location
            .to_str()
            .ok()
            .and_then(|location| self.url.join(location).ok())
        else {
            return "to an unreadable Location".into();
        };
        target.set_query(None);
        target.set_fragment(None);
        // Only fails for URLs that cannot have user info, which then have none.
        let _ = target.set_username("");
        let _ = target.set_password(None);
        let target: String = target.as_str().chars().take(TARGET_CHARS).collect();
        format!("to {target}")
    }

    fn short_excerpt(&self) -> String {
        let excerpt: String = self.excerpt().chars().take(200).collect();
        if excerpt.is_empty() {
            self.status
                .canonical_reason()
                .unwrap_or("no body")
                .to_owned()
        } else {
            excerpt
        }
    }

    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// Itself when 2xx, else its classified error.
    pub fn checked(self) -> Result<Self, ConnectorError> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(self.error())
        }
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.body).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, headers: &[(&'static str, &str)]) -> Reply {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, value.parse().unwrap());
        }
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: map,
            url: Url::parse("https://provider.example/v1/impact-reports?x=1").unwrap(),
            body: b"{\"error\":\"x\"}".to_vec(),
            latency: Duration::ZERO,
            max_retry_after: Duration::from_secs(300),
        }
    }

    #[test]
    fn statuses_map_to_the_documented_classes() {
        use super::super::ErrorClass::*;
        for (status, class) in [
            (301, Permanent),
            (302, Permanent),
            (303, Permanent),
            (304, Permanent),
            (307, Permanent),
            (308, Permanent),
            (400, Permanent),
            (401, Auth),
            (403, Permanent),
            (404, Permanent),
            (408, Transient),
            (422, Permanent),
            (429, RateLimited),
            (500, Transient),
            (501, Permanent),
            (502, Transient),
            (503, Transient),
            (504, Transient),
        ] {
            assert_eq!(reply(status, &[]).error().class(), class, "HTTP {status}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates_and_is_bounded() {
        let seconds = reply(429, &[("retry-after", "7")]);
        assert_eq!(seconds.retry_after(), Some(Duration::from_secs(7)));

        let in_a_minute = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(61));
        let date = reply(503, &[("retry-after", &in_a_minute)])
            .retry_after()
            .unwrap();
        assert!(
            date > Duration::from_secs(55) && date <= Duration::from_secs(61),
            "{date:?}"
        );

        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(60));
        assert_eq!(
            reply(503, &[("retry-after", &past)]).retry_after(),
            Some(Duration::ZERO)
        );

        let huge = reply(429, &[("retry-after", "86400")]);
        assert_eq!(huge.retry_after(), Some(Duration::from_secs(300)));
        assert_eq!(reply(429, &[("retry-after", "soon")]).retry_after(), None);
    }

    #[test]
    fn a_redirect_names_its_target_without_query_or_user_info() {
        let message = |location: Option<&str>| {
            let headers: Vec<(&'static str, &str)> =
                location.map(|l| ("location", l)).into_iter().collect();
            reply(307, &headers).error().to_string()
        };
        assert_eq!(
            message(Some(
                "https://user:pw@elsewhere.example:8443/steal?token=t#f"
            )),
            "rejected: HTTP 307 redirect to https://elsewhere.example:8443/steal not followed: \
             provider calls never follow redirects"
        );
        assert!(
            message(Some("/moved?token=t")).contains("to https://provider.example/moved not"),
            "relative targets are resolved against the request URL"
        );
        assert!(message(None).contains("HTTP 307 redirect with no Location not followed"));
        let error = reply(302, &[]).error();
        assert_eq!(error.status(), Some(302));
        assert_eq!(error.excerpt(), Some("{\"error\":\"x\"}"));
    }
}
