//! The OpenRPC 1.x document of the API (`rpc.discover`), generated from
//! [`crate::method_specs`]: every method with its class, parameters and
//! result, and the schemas of the named types under `components.schemas`.

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::MethodSpec;

/// The OpenRPC version the document follows.
pub const OPENRPC_VERSION: &str = "1.3.2";

/// The document for `specs`; `version` is the node's version.
pub fn document(specs: &[MethodSpec], version: &str) -> Value {
    let mut settings = SchemaSettings::draft07();
    settings.definitions_path = "/components/schemas".into();
    let mut g = settings.into_generator();
    let methods: Vec<Value> = specs
        .iter()
        .map(|m| {
            let params: Vec<Value> = m
                .params
                .iter()
                .map(|p| {
                    json!({
                        "name": p.name,
                        "required": p.required,
                        "schema": p.ty.schema(&mut g).to_value(),
                    })
                })
                .collect();
            let mut method = json!({
                "name": m.name,
                "summary": m.summary(),
                "description": m.description(),
                "paramStructure": "by-position",
                "params": params,
                "result": {
                    "name": if m.subscription.is_some() { "notification" } else { "result" },
                    "schema": m.result.schema(&mut g).to_value(),
                },
                "tags": [{"name": m.class.as_str()}],
                "x-cairn-class": m.class.as_str(),
            });
            if let Some((notification, unsubscribe)) = m.subscription {
                method["x-subscription"] = json!({
                    "notification": notification,
                    "unsubscribe": unsubscribe,
                });
            }
            method
        })
        .collect();
    let schemas: Map<String, Value> = g.take_definitions(true).into_iter().collect();
    json!({
        "openrpc": OPENRPC_VERSION,
        "info": {
            "title": "Cairn node JSON-RPC",
            "version": version,
            "description": "The JSON-RPC API of a Cairn node, over HTTP and WebSocket on one port. \
                Hashes, ids and transactions are hex strings; amounts are integers in base units \
                (1 coin = 100000000). Calls need HTTP Basic auth: the node's cookie \
                (<datadir>/.cookie) or the configured user. Classes: read and submit are allowed \
                wherever the RPC is reachable; control and dev change the node and are refused on \
                a public address unless the node runs with --rpc-allow-control; dev methods exist \
                only on dev networks.",
            "license": {"name": "MIT OR Apache-2.0"},
        },
        "methods": methods,
        "components": {"schemas": schemas},
    })
}
