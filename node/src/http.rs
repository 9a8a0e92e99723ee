//! The HTTP front of the RPC port: everything a request meets before
//! JSON-RPC.
//!
//! In order:
//! 1. **Host guard** (DNS rebinding): the `Host` must be an IP address,
//!    `localhost`, or a name given with `--rpc-allow-host` (`*`: any).
//! 2. **Origin guard** (web pages): a request carrying a browser `Origin`
//!    is refused unless the origin is the page's own (`http://<Host>`) or
//!    listed with `--rpc-cors` (`*`: any); allowed cross-origin requests
//!    get CORS headers and preflights are answered.
//! 3. **Routes**: `GET /metrics` (Prometheus text) and `GET /health` need
//!    no credentials; `GET` of any other path is the explorer (unless
//!    `--no-explorer`); `POST` and WebSocket upgrades are JSON-RPC and need
//!    HTTP Basic credentials ([`crate::auth`]), else 401.
//!
//! The guards apply to HTTP and WebSocket alike: a WebSocket handshake is
//! an HTTP request with the same headers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use jsonrpsee::core::BoxError;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use tower::Service;

use crate::auth::Authenticator;
use crate::node::Node;
use crate::p2p::P2pHandle;

/// What the front needs to decide and to answer its own routes.
pub struct Front {
    pub node: Arc<Node>,
    pub p2p: Option<P2pHandle>,
    /// The API, for the explorer's pages (the same code answers JSON-RPC).
    pub api: Arc<crate::rpc::RpcServer>,
    pub auth: Authenticator,
    allow_hosts: Vec<String>,
    any_host: bool,
    cors: Vec<String>,
    any_origin: bool,
    pub explorer: bool,
}

impl Front {
    pub fn new(
        node: Arc<Node>,
        p2p: Option<P2pHandle>,
        auth: Authenticator,
        api: Arc<crate::rpc::RpcServer>,
    ) -> Front {
        let access = &node.config.access;
        let hosts: Vec<String> = access
            .allow_hosts
            .iter()
            .map(|h| host_part(h.trim()).to_ascii_lowercase())
            .collect();
        let cors: Vec<String> = access
            .cors
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .collect();
        Front {
            any_host: hosts.iter().any(|h| h == "*"),
            allow_hosts: hosts,
            any_origin: cors.iter().any(|o| o == "*"),
            cors,
            explorer: access.explorer,
            api,
            node,
            p2p,
            auth,
        }
    }

    /// Whether the `Host` may be served.
    fn host_allowed(&self, host: &str) -> bool {
        let name = host_part(host).to_ascii_lowercase();
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<std::net::IpAddr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || self.any_host
            || self.allow_hosts.contains(&name)
    }

    /// Whether a cross-origin caller is listed.
    fn origin_listed(&self, origin: &str) -> bool {
        let o = origin.trim_end_matches('/').to_ascii_lowercase();
        self.any_origin || self.cors.contains(&o)
    }
}

/// `name` of `name:port`, `[v6]` of `[v6]:port`.
fn host_part(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<String>) -> HttpResponse {
    let mut r = HttpResponse::new(HttpBody::from(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A response with a body and content type.
pub fn with_type(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> HttpResponse {
    let mut r = HttpResponse::new(HttpBody::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn refused(reason: &'static str, status: StatusCode, msg: String) -> HttpResponse {
    metrics::counter!("cairn_rpc_http_refused_total", "reason" => reason).increment(1);
    text(status, msg + "\n")
}

/// The tower layer that puts the [`Front`] before jsonrpsee.
#[derive(Clone)]
pub struct FrontLayer(pub Arc<Front>);

impl<S> tower::Layer<S> for FrontLayer {
    type Service = FrontService<S>;
    fn layer(&self, inner: S) -> FrontService<S> {
        FrontService {
            inner,
            front: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct FrontService<S> {
    inner: S,
    front: Arc<Front>,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send + 'static>>;

fn ready(r: HttpResponse) -> BoxFuture {
    Box::pin(async move { Ok(r) })
}

impl<S, B> Service<HttpRequest<B>> for FrontService<S>
where
    S: Service<HttpRequest<B>, Response = HttpResponse>,
    S::Error: Into<BoxError> + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: HttpRequest<B>) -> BoxFuture {
        let front = self.front.clone();
        let headers = req.headers();
        // 1. Host
        let host = header_str(headers, header::HOST)
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()));
        let Some(host) = host else {
            return ready(refused(
                "no_host",
                StatusCode::BAD_REQUEST,
                "the request has no Host header".into(),
            ));
        };
        if !front.host_allowed(&host) {
            let name = host_part(&host).chars().take(100).collect::<String>();
            return ready(refused(
                "host",
                StatusCode::FORBIDDEN,
                format!(
                    "Host {name:?} is not served (a guard against DNS rebinding). \
                     To reach the node by this name, start it with --rpc-allow-host {name}"
                ),
            ));
        }
        // 2. Origin
        let origin = header_str(headers, header::ORIGIN).map(str::to_string);
        let mut cors_origin: Option<String> = None;
        if let Some(o) = &origin {
            let same = o.eq_ignore_ascii_case(&format!("http://{host}"));
            if !same {
                if !front.origin_listed(o) {
                    let shown: String = o.chars().take(100).collect();
                    return ready(refused(
                        "origin",
                        StatusCode::FORBIDDEN,
                        format!(
                            "web pages from {shown:?} may not call this node. \
                             To allow that origin, start the node with --rpc-cors {shown}"
                        ),
                    ));
                }
                cors_origin = Some(o.clone());
            }
        }
        if req.method() == Method::OPTIONS {
            let mut r = HttpResponse::new(HttpBody::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            add_cors(r.headers_mut(), cors_origin.as_deref(), true);
            return ready(r);
        }
        // 3. Routes
        let path = req.uri().path().to_string();
        let is_upgrade = header_str(headers, header::UPGRADE)
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
        let is_read = req.method() == Method::GET || req.method() == Method::HEAD;
        if is_read && !is_upgrade {
            let query = req.uri().query().unwrap_or("").to_string();
            return Box::pin(async move {
                let mut r = route_get(&front, &path, &query).await;
                add_cors(r.headers_mut(), cors_origin.as_deref(), false);
                Ok(r)
            });
        }
        if req.method() != Method::POST && !is_upgrade {
            return ready(text(
                StatusCode::METHOD_NOT_ALLOWED,
                "JSON-RPC takes POST (or a WebSocket); GET serves /metrics, /health and the explorer\n",
            ));
        }
        if !front.auth.check(header_str(headers, header::AUTHORIZATION)) {
            metrics::counter!("cairn_rpc_auth_failures_total").increment(1);
            let mut r = text(
                StatusCode::UNAUTHORIZED,
                "JSON-RPC needs HTTP Basic auth: the node's cookie (user __cookie__, password from \
                 <datadir>/.cookie; cairn-wallet and `cairn-node rpc` read it themselves) or the \
                 login given with --rpc-user/--rpc-password or --rpc-auth\n",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"cairn-node\""),
            );
            add_cors(r.headers_mut(), cors_origin.as_deref(), false);
            return ready(r);
        }
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut r = fut.await.map_err(Into::into)?;
            add_cors(r.headers_mut(), cors_origin.as_deref(), false);
            Ok(r)
        })
    }
}

/// CORS headers for an allowed cross-origin caller.
fn add_cors(h: &mut HeaderMap, origin: Option<&str>, preflight: bool) {
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    let Some(value) = origin.and_then(|o| HeaderValue::from_str(o).ok()) else {
        return;
    };
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    if preflight {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, GET, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type, authorization"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
}

/// The routes served without credentials.
async fn route_get(front: &Front, path: &str, query: &str) -> HttpResponse {
    match path {
        "/metrics" => metrics_page(front).await,
        "/health" => health_page(front).await,
        _ if front.explorer => crate::explorer::serve(front, path, query).await,
        _ => text(
            StatusCode::NOT_FOUND,
            "not found (the explorer is off: --no-explorer). JSON-RPC takes POST; \
             GET /metrics and GET /health are served\n",
        ),
    }
}

async fn metrics_page(front: &Front) -> HttpResponse {
    let p2p = front.p2p.as_ref().map(|p| p.status());
    let node = front.node.clone();
    let sync = crate::status::sync_state(&node, front.p2p.as_ref());
    let rendered =
        tokio::task::spawn_blocking(move || crate::metrics::render(&node, &sync, p2p.as_ref()))
            .await
            .ok()
            .flatten();
    match rendered {
        Some(body) => with_type(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            body.into_bytes(),
        ),
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are unavailable: another metrics recorder was installed in this process\n",
        ),
    }
}

async fn health_page(front: &Front) -> HttpResponse {
    let peers = crate::status::peers(front.p2p.as_ref()).await.len();
    let h = crate::status::health(&front.node, front.p2p.as_ref(), peers);
    let body = serde_json::json!({
        "status": h.status,
        "reason": h.reason,
        "height": h.sync.height,
        "best_header_height": h.sync.best_header_height,
        "syncing": h.sync.syncing,
        "peers": h.peers,
        "network": front.node.network.name,
    });
    let status = if h.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    with_type(status, "application/json", body.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::host_part;

    #[test]
    fn host_names_lose_their_port() {
        assert_eq!(host_part("example.com:7540"), "example.com");
        assert_eq!(host_part("example.com"), "example.com");
        assert_eq!(host_part("[::1]:7540"), "[::1]");
        assert_eq!(host_part("127.0.0.1:80"), "127.0.0.1");
        assert_eq!(host_part("evil.com:80x"), "evil.com:80x");
    }
}
