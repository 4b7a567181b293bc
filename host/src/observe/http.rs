//! The HTTP side: `/metrics` (Prometheus text), `/healthz`, `/readyz`, `/api/status` (the
//! snapshot as JSON) and the live page at `/`, served by axum on the host's tokio runtime.
//!
//! Read-only. Loopback by default; another address needs a token, which every request but
//! `/healthz` must carry (`Authorization: Bearer <token>`, or `?token=` for a browser).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::{prom, Telemetry};

/// The page, with its script and styles inline: no CDN, works offline.
const PAGE: &str = include_str!("page/index.html");

/// `[http]` in the pipeline config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `host:port` to serve on, or `"off"`. Port 0 picks a free port (logged).
    pub listen: String,
    /// Required when `listen` is not a loopback address.
    pub token: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:9464".into(),
            token: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("[http] listen = {0:?} is not an address (host:port) or \"off\"")]
    Address(String),
    #[error("[http] listen = {0:?} is not a loopback address: set [http] token so the page and metrics are not open to anyone who can reach it")]
    NeedsToken(String),
}

impl HttpConfig {
    /// Where to listen (`None`: off), checked.
    pub fn address(&self) -> Result<Option<SocketAddr>, HttpError> {
        if self.listen.trim().eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let addr: SocketAddr =
            (self.listen.trim().parse()).map_err(|_| HttpError::Address(self.listen.clone()))?;
        if !addr.ip().is_loopback() && self.token.as_deref().is_none_or(str::is_empty) {
            return Err(HttpError::NeedsToken(self.listen.clone()));
        }
        Ok(Some(addr))
    }
}

#[derive(Clone)]
struct AppState {
    telemetry: Arc<Telemetry>,
    token: Option<Arc<str>>,
}

/// The server; it stops when this is dropped.
pub struct Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serve the telemetry on the configured address. A port that cannot be bound is logged and
/// the host runs on without it: watching must never stop the pipeline.
pub async fn serve(
    config: &HttpConfig,
    telemetry: Arc<Telemetry>,
) -> Result<Option<Server>, HttpError> {
    let Some(addr) = config.address()? else {
        return Ok(None);
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(error) => {
            tracing::error!(%addr, %error, "cannot serve metrics and the live page on this address (set [http] listen or --http); running without them");
            return Ok(None);
        }
    };
    let addr = listener.local_addr().unwrap_or(addr);
    let state = AppState {
        telemetry,
        token: config
            .token
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(Arc::from),
    };
    let app = Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/status", get(status))
        .with_state(state);
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "the metrics and live page server stopped");
        }
    });
    tracing::info!(%addr, "serving metrics at /metrics and the live page at /");
    Ok(Some(Server { addr, task }))
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// Whether the request carries the token (always, when none is configured).
fn authorized(state: &AppState, headers: &HeaderMap, query: &TokenQuery) -> bool {
    let Some(expected) = &state.token else {
        return true;
    };
    let bearer = (headers.get(header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let given = bearer.or(query.token.as_deref()).unwrap_or("");
    // Compare in time independent of where the first difference is.
    given.len() == expected.len()
        && (given.bytes().zip(expected.bytes())).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

fn refused() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        "this host needs its [http] token\n",
    )
        .into_response()
}

async fn page(State(s): State<AppState>, h: HeaderMap, Query(q): Query<TokenQuery>) -> Response {
    match authorized(&s, &h, &q) {
        true => Html(PAGE).into_response(),
        false => refused(),
    }
}

async fn metrics(State(s): State<AppState>, h: HeaderMap, Query(q): Query<TokenQuery>) -> Response {
    if !authorized(&s, &h, &q) {
        return refused();
    }
    let body = prom::render(s.telemetry.live());
    ([(header::CONTENT_TYPE, prom::CONTENT_TYPE)], body).into_response()
}

async fn readyz(State(s): State<AppState>, h: HeaderMap, Query(q): Query<TokenQuery>) -> Response {
    if !authorized(&s, &h, &q) {
        return refused();
    }
    let live = s.telemetry.live();
    match live.ready.ready {
        true => (StatusCode::OK, "ready\n".to_string()).into_response(),
        false => {
            let why = live.ready.reasons.join("\n");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready:\n{why}\n"),
            )
                .into_response()
        }
    }
}

async fn status(State(s): State<AppState>, h: HeaderMap, Query(q): Query<TokenQuery>) -> Response {
    if !authorized(&s, &h, &q) {
        return refused();
    }
    axum::Json(&*s.telemetry.live()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_needs_no_token_other_addresses_do() {
        let c = |listen: &str, token: Option<&str>| HttpConfig {
            listen: listen.into(),
            token: token.map(String::from),
        };
        assert!(c("127.0.0.1:9464", None).address().unwrap().is_some());
        assert!(c("[::1]:0", None).address().unwrap().is_some());
        assert!(c("off", None).address().unwrap().is_none());
        assert!(matches!(
            c("0.0.0.0:9464", None).address(),
            Err(HttpError::NeedsToken(_))
        ));
        assert!(c("0.0.0.0:9464", Some("s3cret"))
            .address()
            .unwrap()
            .is_some());
        assert!(matches!(
            c("localhost", None).address(),
            Err(HttpError::Address(_))
        ));
    }

    #[test]
    fn a_configured_token_is_required() {
        let state = AppState {
            telemetry: Telemetry::new(),
            token: Some("abc".into()),
        };
        let q = |t: Option<&str>| TokenQuery {
            token: t.map(String::from),
        };
        let mut h = HeaderMap::new();
        assert!(!authorized(&state, &h, &q(None)));
        assert!(!authorized(&state, &h, &q(Some("abd"))));
        assert!(authorized(&state, &h, &q(Some("abc"))));
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert!(authorized(&state, &h, &q(None)));
    }
}
