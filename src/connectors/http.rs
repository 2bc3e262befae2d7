//! The one outbound HTTP client every connector shares, and the mapping of
//! provider answers to [`ConnectorError`] classes.

use std::time::{Duration, SystemTime};

use reqwest::{
    RequestBuilder, StatusCode,
    header::{HeaderMap, RETRY_AFTER},
};
use tokio::time::Instant;

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
    pub body: Vec<u8>,
    pub latency: Duration,
    max_retry_after: Duration,
}

/// The longest body excerpt kept in receipts and error messages.
const EXCERPT_CHARS: usize = 1024;

impl Outbound {
    pub fn new(config: OutboundConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
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
        let started = Instant::now();
        let mut response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            let room = self.config.max_response_bytes.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if room <= chunk.len() {
                break;
            }
        }
        Ok(Reply {
            status,
            headers,
            body,
            latency: started.elapsed(),
            max_retry_after: self.config.max_retry_after,
        })
    }
}

fn transport_error(err: reqwest::Error) -> ConnectorError {
    // reqwest's Display omits the cause ("error sending request"); the chain
    // says what actually happened (refused, reset, timed out).
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    ConnectorError::transient(message)
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

    /// `Retry-After` as delta seconds or an HTTP-date, bounded.
    pub fn retry_after(&self) -> Option<Duration> {
        let raw = self.headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
        let delay = match raw.parse::<u64>() {
            Ok(seconds) => Duration::from_secs(seconds),
            Err(_) => httpdate::parse_http_date(raw)
                .ok()?
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
        };
        Some(delay.min(self.max_retry_after))
    }

    /// The error class of a non-success answer, by status.
    pub fn error(&self) -> ConnectorError {
        let status = Some(self.status.as_u16());
        let message = format!("HTTP {}: {}", self.status.as_u16(), self.short_excerpt());
        match self.status {
            StatusCode::UNAUTHORIZED => ConnectorError::Auth { message, status },
            StatusCode::TOO_MANY_REQUESTS => ConnectorError::RateLimited {
                status,
                retry_after: self.retry_after(),
            },
            StatusCode::REQUEST_TIMEOUT
            | StatusCode::INTERNAL_SERVER_ERROR
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => ConnectorError::Transient {
                message,
                status,
                retry_after: self.retry_after(),
            },
            _ => ConnectorError::Permanent {
                message,
                status,
                details: Vec::new(),
            },
        }
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
            body: b"{\"error\":\"x\"}".to_vec(),
            latency: Duration::ZERO,
            max_retry_after: Duration::from_secs(300),
        }
    }

    #[test]
    fn statuses_map_to_the_documented_classes() {
        use super::super::ErrorClass::*;
        for (status, class) in [
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
}
