//! Per-call policy of the JSON-RPC server, applied to every call, batch
//! entry and notification from the one API declaration
//! ([`cairn_api::method_specs`]):
//!
//! - dev-class methods answer only on dev networks;
//! - control and dev methods are refused when the RPC listens on a public
//!   address, unless the operator passed `--rpc-allow-control`;
//! - `mining_generate` may ask for at most [`MAX_GENERATE_PER_REQUEST`]
//!   blocks per request, summed over a batch;
//! - parameter errors and unknown methods get messages that say what to
//!   send instead of the deserializer's wording;
//! - every call is counted by method and outcome, and timed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use cairn_api::{Class, MethodSpec, codes};
use jsonrpsee::core::middleware::{Batch, BatchEntry, Notification, RpcServiceT};
use jsonrpsee::server::middleware::rpc::Request;
use jsonrpsee::server::{BatchResponseBuilder, MethodResponse};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::types::error::{INVALID_PARAMS_CODE, METHOD_NOT_FOUND_CODE};
use serde_json::Value;

/// Most blocks one request (a call or a whole batch) may ask
/// `mining_generate` for.
pub const MAX_GENERATE_PER_REQUEST: u64 = 10_000;

/// What the policy knows about this node.
pub struct Policy {
    specs: HashMap<&'static str, MethodSpec>,
    /// The dev network: dev-class methods exist.
    pub dev: bool,
    /// The RPC listens on a non-loopback address.
    pub public: bool,
    pub allow_control: bool,
    pub network: String,
    max_response_bytes: usize,
}

impl Policy {
    pub fn new(
        dev: bool,
        public: bool,
        allow_control: bool,
        network: &str,
        max_response_bytes: usize,
    ) -> Policy {
        let mut specs = HashMap::new();
        for s in cairn_api::method_specs() {
            if let Some((_, unsubscribe)) = s.subscription {
                specs.insert(unsubscribe, s.clone());
            }
            specs.insert(s.name, s);
        }
        Policy {
            specs,
            dev,
            public,
            allow_control,
            network: network.to_string(),
            max_response_bytes,
        }
    }

    pub fn spec(&self, method: &str) -> Option<&MethodSpec> {
        self.specs.get(method)
    }

    /// Whether this node answers `spec`; the error says why not and what to do.
    pub fn check(&self, spec: &MethodSpec) -> Result<(), ErrorObjectOwned> {
        if spec.class == Class::Dev && !self.dev {
            return Err(cairn_api::error(
                codes::DEV_ONLY,
                format!(
                    "{} exists only on dev networks; this node runs {}",
                    spec.name, self.network
                ),
            ));
        }
        if spec.class.changes_node() && self.public && !self.allow_control {
            return Err(cairn_api::error(
                codes::METHOD_REFUSED,
                format!(
                    "{} changes the node, and this node's RPC listens on a public address; \
                     restart it with --rpc-allow-control to allow such calls there, \
                     or call from the node's machine on a loopback address",
                    spec.name
                ),
            ));
        }
        Ok(())
    }

    /// A message for an unknown method, with a near name when there is one.
    fn unknown_method(&self, method: &str) -> String {
        let folded = fold(method);
        let near = self
            .specs
            .keys()
            .filter(|k| fold(k) == folded || (folded.len() > 4 && fold(k).contains(&folded)))
            .min();
        let mut msg = format!(
            "unknown method {:?}; rpc_methods lists this node's methods (or run `cairn-node rpc --help`)",
            truncate(method, 64)
        );
        if let Some(n) = near {
            msg.push_str(&format!("; did you mean {n}?"));
        }
        msg
    }
}

fn fold(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// The tower layer installing [`PolicyService`].
#[derive(Clone)]
pub struct PolicyLayer(pub Arc<Policy>);

impl<S> tower::Layer<S> for PolicyLayer {
    type Service = PolicyService<S>;
    fn layer(&self, inner: S) -> PolicyService<S> {
        PolicyService {
            inner,
            policy: self.0.clone(),
        }
    }
}

/// The middleware itself.
#[derive(Clone)]
pub struct PolicyService<S> {
    inner: S,
    policy: Arc<Policy>,
}

/// The `count` a `mining_generate` call asks for (0 if unreadable: the
/// method itself then refuses the parameters).
fn generate_count(method: &str, params: Option<&str>) -> u64 {
    if method != "mining_generate" {
        return 0;
    }
    params
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
        .and_then(|v| v.get(0).and_then(Value::as_u64))
        .unwrap_or(0)
}

async fn policy_call<'a, S>(
    inner: S,
    policy: Arc<Policy>,
    req: Request<'a>,
    generate_total: u64,
) -> MethodResponse
where
    S: RpcServiceT<MethodResponse = MethodResponse> + Send + Sync,
{
    let started = Instant::now();
    let id = req.id().into_owned();
    let spec = policy.spec(req.method_name());
    // an unsubscribe method shares its subscription's class, not its parameters
    let is_unsubscribe = spec.is_some_and(|s| s.name != req.method_name());
    let label: &'static str = match spec {
        None => "unknown",
        Some(s) if is_unsubscribe => s.subscription.map_or(s.name, |(_, unsub)| unsub),
        Some(s) => s.name,
    };
    let refuse = |err: ErrorObjectOwned| {
        metrics::counter!("cairn_rpc_calls_total", "method" => label, "outcome" => "refused")
            .increment(1);
        MethodResponse::error(id.clone(), err)
    };
    if let Some(spec) = spec {
        if let Err(e) = policy.check(spec) {
            return refuse(e);
        }
        if spec.name == "mining_generate" && generate_total > MAX_GENERATE_PER_REQUEST {
            return refuse(cairn_api::error(
                codes::REQUEST_TOO_LARGE,
                format!(
                    "this request asks mining_generate for {generate_total} blocks in all; \
                     one request (a call or a whole batch) may ask for at most {MAX_GENERATE_PER_REQUEST}: \
                     send smaller requests one after another"
                ),
            ));
        }
    }
    let method = req.method_name().to_string();
    let params: Option<Value> = req
        .params
        .as_ref()
        .and_then(|p| serde_json::from_str(p.get()).ok());
    // the library ignores extra positional parameters; a caller who sends
    // them has misunderstood the method, so say so
    if let (Some(spec), Some(Value::Array(list)), false) = (spec, params.as_ref(), is_unsubscribe)
        && list.len() > spec.params.len()
    {
        metrics::counter!("cairn_rpc_calls_total", "method" => label, "outcome" => "error")
            .increment(1);
        return MethodResponse::error(
            id,
            cairn_api::error(
                INVALID_PARAMS_CODE,
                spec.explain_bad_params(params.as_ref()),
            ),
        );
    }
    let rp = inner.call(req).await;
    let mut outcome = if rp.is_success() { "ok" } else { "error" };
    let rp = if rp.is_error() && !rp.is_subscription() {
        let own_spec = spec.filter(|_| !is_unsubscribe);
        match rewrite_error(&policy, &method, own_spec, params.as_ref(), &rp) {
            Some(err) => {
                if err.code() == METHOD_NOT_FOUND_CODE {
                    outcome = "refused";
                }
                let ext = rp.extensions().clone();
                MethodResponse::error(id, err).with_extensions(ext)
            }
            None => rp,
        }
    } else {
        rp
    };
    metrics::counter!("cairn_rpc_calls_total", "method" => label, "outcome" => outcome)
        .increment(1);
    metrics::histogram!("cairn_rpc_call_seconds", "method" => label)
        .record(started.elapsed().as_secs_f64());
    rp
}

/// A better error than the library's for bad parameters and unknown
/// methods; `None` keeps the response as it is.
fn rewrite_error(
    policy: &Policy,
    method: &str,
    spec: Option<&MethodSpec>,
    params: Option<&Value>,
    rp: &MethodResponse,
) -> Option<ErrorObjectOwned> {
    let body: Value = serde_json::from_str(rp.as_json().get()).ok()?;
    let err = body.get("error")?;
    let code = err.get("code")?.as_i64()?;
    let message = err.get("message")?.as_str()?;
    match (code as i32, spec) {
        // the library's own wording; the node's handlers write their own messages
        (INVALID_PARAMS_CODE, Some(spec)) if message == "Invalid params" => Some(cairn_api::error(
            INVALID_PARAMS_CODE,
            spec.explain_bad_params(params),
        )),
        (METHOD_NOT_FOUND_CODE, None) => Some(cairn_api::error(
            METHOD_NOT_FOUND_CODE,
            policy.unknown_method(method),
        )),
        _ => None,
    }
}

impl<S> RpcServiceT for PolicyService<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Send
        + Sync
        + Clone
        + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = MethodResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(&self, req: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let total = generate_count(req.method_name(), req.params.as_ref().map(|p| p.get()));
        policy_call(self.inner.clone(), self.policy.clone(), req, total)
    }

    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let inner = self.inner.clone();
        let policy = self.policy.clone();
        async move {
            let total: u64 = batch
                .iter()
                .flatten()
                .map(|e| generate_count(e.method_name(), e.params().map(|p| p.get())))
                .fold(0u64, u64::saturating_add);
            let mut out = BatchResponseBuilder::new_with_limit(policy.max_response_bytes);
            let mut got_notification = false;
            for entry in batch.into_iter() {
                let rp = match entry {
                    Ok(BatchEntry::Call(req)) => {
                        policy_call(inner.clone(), policy.clone(), req, total).await
                    }
                    Ok(BatchEntry::Notification(n)) => {
                        got_notification = true;
                        gated_notification(&inner, &policy, n).await;
                        continue;
                    }
                    Err(err) => {
                        let (err, id) = err.into_parts();
                        MethodResponse::error(id, err)
                    }
                };
                if let Err(too_big) = out.append(rp) {
                    return too_big;
                }
            }
            if out.is_empty() && got_notification {
                MethodResponse::notification()
            } else {
                MethodResponse::from_batch(out.finish())
            }
        }
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = MethodResponse> + Send + 'a {
        let inner = self.inner.clone();
        let policy = self.policy.clone();
        async move { gated_notification(&inner, &policy, n).await }
    }
}

/// A notification runs only where a call to the same method would.
async fn gated_notification<'a, S>(
    inner: &S,
    policy: &Policy,
    n: Notification<'a>,
) -> MethodResponse
where
    S: RpcServiceT<NotificationResponse = MethodResponse>,
{
    let allowed = match policy.spec(n.method_name()) {
        Some(spec) => {
            policy.check(spec).is_ok()
                && generate_count(n.method_name(), n.params.as_ref().map(|p| p.get()))
                    <= MAX_GENERATE_PER_REQUEST
        }
        None => true,
    };
    if allowed {
        inner.notification(n).await
    } else {
        MethodResponse::notification()
    }
}
