//! The provider sandbox: Benevity, Goodera and Workday simulated on one port
//! to the wire contract of `docs/connectors.md`, so the connectors are tested
//! over real HTTP, the seven ingest sources the service pulls from
//! (`ingest/`), with generated records, the impact platform's metrics
//! (`metrics.rs`) and the receivers of the SLA monitor's alerts, Slack and
//! PagerDuty (`slack.rs`, `pagerduty.rs`). Tests drive faults through the
//! control API (`/_sandbox/*`).
//!
//! The server is a hyper accept loop rather than `axum::serve` because an
//! injected drop must close the connection without any response, which only
//! a service error can make hyper do.

// Handlers refuse with `Err(Response)`, axum's idiom; boxing every refusal
// to please a size lint would buy nothing at this request rate.
#![allow(clippy::result_large_err)]

mod alerts;
mod api;
mod benevity;
mod config;
mod control;
pub mod credentials;
mod goodera;
pub mod ingest;
pub mod metrics;
mod oauth;
mod pagerduty;
mod ratelimit;
mod schema;
mod slack;
mod soap;
mod state;
mod webhooks;
mod workday;

use std::{
    fmt, io,
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use axum::{
    Router,
    extract::Request,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::TokioIo;
use tokio::{
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

pub use config::SandboxConfig;
use state::SandboxState;

/// How long in-flight requests may finish after shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop
/// does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A sandbox serving on `127.0.0.1` at an ephemeral port, in a background
/// task. Dropping it stops the server too.
#[derive(Debug)]
pub struct Sandbox {
    addr: SocketAddr,
    stop: CancellationToken,
    server: Option<JoinHandle<io::Result<()>>>,
}

impl Sandbox {
    pub async fn start(config: SandboxConfig) -> io::Result<Sandbox> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, config, stop.clone().cancelled_owned()));
        Ok(Sandbox {
            addr,
            stop,
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish (bounded), and waits
    /// for the server task.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(server) = self.server.take() {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::warn!(error = %err, "provider sandbox failed"),
                Err(err) => tracing::warn!(error = %err, "provider sandbox task failed"),
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Serves the sandbox on `listener` until `shutdown` completes, then drains
/// connections for at most a few seconds.
pub async fn serve(
    listener: TcpListener,
    config: SandboxConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    let app = router(Arc::new(SandboxState::new(config)));
    tracing::info!(%addr, "provider sandbox listening");

    let closing = CancellationToken::new();
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, app.clone(), closing.clone()));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "provider sandbox cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // Reap finished connection tasks so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }

    closing.cancel();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        // Dropping the set aborts what is left.
        tracing::warn!("provider sandbox closed connections still in flight");
    }
    tracing::info!(%addr, "provider sandbox stopped");
    Ok(())
}

fn router(state: Arc<SandboxState>) -> Router {
    Router::new()
        .merge(control::routes())
        .merge(oauth::routes())
        .merge(benevity::routes())
        .merge(goodera::routes())
        .merge(workday::routes())
        .merge(ingest::routes())
        .merge(metrics::routes())
        .merge(slack::routes())
        .merge(pagerduty::routes())
        .fallback(not_found)
        .layer(
            // Method, path and status at debug; never headers or bodies,
            // which carry credentials. Injected 5xx are not errors here.
            TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
        .with_state(state)
}

async fn not_found() -> Response {
    api::error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route in the provider sandbox",
    )
}

/// Put in a response's extensions by a handler that must not answer: the
/// connection is closed instead.
#[derive(Debug, Clone, Copy)]
struct DropConnection;

impl fmt::Display for DropConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped by the sandbox on request")
    }
}

impl std::error::Error for DropConnection {}

/// HTTP/1.1 with keep-alive. A service error makes hyper close the
/// connection without writing anything, which is what a drop needs.
async fn serve_connection(stream: TcpStream, app: Router, closing: CancellationToken) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await.into_response();
            match response.extensions().get::<DropConnection>() {
                Some(drop) => Err(*drop),
                None => Ok(response),
            }
        }
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = closing.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(error = %err, "provider sandbox connection ended");
    }
}
