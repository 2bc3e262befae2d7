//! OAuth2 access tokens for the connectors that use them (Benevity in oauth2
//! mode, Goodera, Workday REST): client-credentials or refresh-token grant
//! through the `oauth2` crate, one token per company and provider reused
//! until shortly before it expires, refreshed by one caller while the others
//! wait, and persisted encrypted so restarts and replicas share it.

use std::{future::Future, pin::Pin, time::Duration};

use oauth2::{
    AsyncHttpClient, AuthType, ClientId, ClientSecret, HttpRequest, HttpResponse, RefreshToken,
    RequestTokenError, TokenResponse, TokenUrl,
    basic::{BasicClient, BasicErrorResponseType},
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::{
    ConnectorError,
    http::{Outbound, Reply},
    settings::OAuthCredentials,
    tokens::{AccessToken, TokenKey, TokenStore},
};
use crate::{clock::SharedClock, metrics, provider::Provider};

/// A token this close to expiry is replaced before use, so it cannot expire
/// in flight.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Lifetime assumed when a token response omits `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct TokenSource {
    company_id: Uuid,
    provider: Provider,
    fingerprint: String,
    credentials: OAuthCredentials,
    outbound: Outbound,
    store: TokenStore,
    clock: SharedClock,
    /// Held across a fetch: concurrent callers queue here and then find the
    /// fresh token instead of each fetching one.
    current: Mutex<Option<AccessToken>>,
}

impl TokenSource {
    pub fn new(
        company_id: Uuid,
        provider: Provider,
        credentials: OAuthCredentials,
        outbound: Outbound,
        store: TokenStore,
        clock: SharedClock,
    ) -> Self {
        let fingerprint = fingerprint(&credentials);
        Self {
            company_id,
            provider,
            fingerprint,
            credentials,
            outbound,
            store,
            clock,
            current: Mutex::new(None),
        }
    }

    /// A token valid for at least the refresh margin.
    pub async fn token(&self) -> Result<SecretString, ConnectorError> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref().filter(|t| self.fresh(t)) {
            return Ok(token.secret.clone());
        }
        match self.store.load(self.key()).await {
            Ok(Some(stored)) if self.fresh(&stored) => {
                metrics::token_expiry(self.provider, &self.fingerprint, stored.expires_at);
                let secret = stored.secret.clone();
                *current = Some(stored);
                return Ok(secret);
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(provider = %self.provider, error = %err, "stored token unusable; fetching a new one")
            }
        }
        self.replace(&mut current).await
    }

    /// A new token after `rejected` was refused, unless another caller has
    /// replaced it meanwhile.
    async fn refresh(&self, rejected: &SecretString) -> Result<SecretString, ConnectorError> {
        let mut current = self.current.lock().await;
        if let Some(token) = current
            .as_ref()
            .filter(|t| t.secret.expose_secret() != rejected.expose_secret() && self.fresh(t))
        {
            return Ok(token.secret.clone());
        }
        self.replace(&mut current).await
    }

    async fn replace(
        &self,
        current: &mut Option<AccessToken>,
    ) -> Result<SecretString, ConnectorError> {
        let token = self.fetch().await?;
        if let Err(err) = self.store.save(self.key(), &token).await {
            // The token still works from memory; only sharing it is lost.
            tracing::warn!(provider = %self.provider, error = %err, "could not persist access token");
        }
        metrics::token_expiry(self.provider, &self.fingerprint, token.expires_at);
        let secret = token.secret.clone();
        *current = Some(token);
        Ok(secret)
    }

    fn fresh(&self, token: &AccessToken) -> bool {
        token.expires_at - self.clock.now()
            > chrono::Duration::from_std(REFRESH_MARGIN).unwrap_or_default()
    }

    fn key(&self) -> TokenKey<'_> {
        TokenKey {
            company_id: self.company_id,
            provider: self.provider,
            credential_fingerprint: &self.fingerprint,
        }
    }

    async fn fetch(&self) -> Result<AccessToken, ConnectorError> {
        let credentials = &self.credentials;
        let client = BasicClient::new(ClientId::new(credentials.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                credentials.client_secret.expose_secret().to_owned(),
            ))
            .set_token_uri(TokenUrl::from_url(credentials.token_url.clone()))
            .set_auth_type(AuthType::BasicAuth);
        let http = TokenHttp {
            outbound: &self.outbound,
            answer: std::sync::Mutex::default(),
        };
        let issued_at = self.clock.now();
        let response = match &credentials.refresh_token {
            Some(refresh) => {
                let refresh = RefreshToken::new(refresh.expose_secret().to_owned());
                client
                    .exchange_refresh_token(&refresh)
                    .request_async(&http)
                    .await
            }
            None => {
                client
                    .exchange_client_credentials()
                    .request_async(&http)
                    .await
            }
        }
        .map_err(|err| token_error(err, http.answer()))?;
        tracing::info!(provider = %self.provider, company_id = %self.company_id, "fetched access token");
        let lifetime = response.expires_in().unwrap_or(DEFAULT_LIFETIME);
        Ok(AccessToken {
            secret: SecretString::from(response.access_token().secret().to_owned()),
            expires_at: issued_at + chrono::Duration::from_std(lifetime).unwrap_or_default(),
        })
    }
}

/// The oauth2 crate's HTTP hook, on our shared reqwest client. A token
/// endpoint that is down or throttling is a transient failure, not a
/// malformed answer. (A named type rather than a closure: the crate's
/// higher-ranked closure bound makes the future lose `Send`.)
struct TokenHttp<'a> {
    outbound: &'a Outbound,
    /// The status and excerpt of the answer handed to the crate, so that an
    /// error it makes of that answer still says what came back.
    answer: std::sync::Mutex<Option<(u16, String)>>,
}

impl TokenHttp<'_> {
    fn answer(&self) -> Option<(u16, String)> {
        self.answer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

impl<'c> AsyncHttpClient<'c> for TokenHttp<'_> {
    type Error = ConnectorError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, ConnectorError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let builder = self
                .outbound
                .client()
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body);
            let reply = self.outbound.send(builder).await?;
            if reply.status.is_server_error() || reply.status.as_u16() == 429 {
                return Err(reply.error());
            }
            *self
                .answer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some((reply.status.as_u16(), reply.excerpt()));
            let mut response = HttpResponse::new(reply.body);
            *response.status_mut() = reply.status;
            *response.headers_mut() = reply.headers;
            Ok(response)
        })
    }
}

/// `answer`: the status and excerpt of the token endpoint's answer, when
/// one reached the oauth2 crate.
fn token_error(
    err: RequestTokenError<ConnectorError, oauth2::basic::BasicErrorResponse>,
    answer: Option<(u16, String)>,
) -> ConnectorError {
    let (status, excerpt) = answer.unzip();
    let answered = status.map_or_else(String::new, |status| format!(" (HTTP {status})"));
    match err {
        RequestTokenError::Request(err) => err,
        RequestTokenError::ServerResponse(response) => {
            let message = format!("token endpoint{answered}: {response}");
            match response.error() {
                BasicErrorResponseType::InvalidClient
                | BasicErrorResponseType::InvalidGrant
                | BasicErrorResponseType::UnauthorizedClient => ConnectorError::Auth {
                    message,
                    status,
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
        RequestTokenError::Parse(err, _) => ConnectorError::Transient {
            message: format!("token endpoint{answered} answered an unreadable token: {err}"),
            status,
            retry_after: None,
            excerpt,
        },
        RequestTokenError::Other(message) => ConnectorError::Transient {
            message: format!("token endpoint{answered}: {message}"),
            status,
            retry_after: None,
            excerpt,
        },
    }
}

/// Which credential a stored token came from: a digest, never the secret.
fn fingerprint(credentials: &OAuthCredentials) -> String {
    let grant = if credentials.refresh_token.is_some() {
        "refresh_token"
    } else {
        "client_credentials"
    };
    let digest = Sha256::digest(format!(
        "{}\n{}\n{grant}",
        credentials.token_url, credentials.client_id
    ));
    hex::encode(&digest[..16])
}

/// How a connector authenticates its API calls: a fixed header (API key) or
/// a bearer token from a [`TokenSource`].
#[derive(Debug)]
pub enum ApiAuth {
    Header {
        name: &'static str,
        value: SecretString,
    },
    Bearer(Box<TokenSource>),
}

impl ApiAuth {
    /// Sends `request`, authenticated; a non-2xx answer is the classified
    /// error. The body must be bytes (not a stream) so a repeat can clone it.
    pub async fn send(
        &self,
        outbound: &Outbound,
        request: reqwest::RequestBuilder,
    ) -> Result<Reply, ConnectorError> {
        match self {
            Self::Header { name, value } => outbound
                .send(request.header(*name, value.expose_secret()))
                .await?
                .checked(),
            // A 401 may mean the token was revoked or expired early: fetch
            // a new one once and repeat once; a second 401 is final.
            Self::Bearer(tokens) => {
                let repeat = request.try_clone().expect("request bodies are bytes");
                let token = tokens.token().await?;
                let first = outbound
                    .send(request.bearer_auth(token.expose_secret()))
                    .await?
                    .checked();
                match first {
                    Err(ConnectorError::Auth {
                        status: Some(401), ..
                    }) => {
                        tracing::info!(provider = %tokens.provider, "access token refused; refreshing once");
                        let fresh = tokens.refresh(&token).await?;
                        outbound
                            .send(repeat.bearer_auth(fresh.expose_secret()))
                            .await?
                            .checked()
                    }
                    outcome => outcome,
                }
            }
        }
    }
}
