//! The API declaration yields a complete OpenRPC document and parameter
//! errors that say what to send.

use cairn_api::{Class, method_specs, openrpc};
use serde_json::{Value, json};

fn spec(name: &str) -> cairn_api::MethodSpec {
    method_specs()
        .into_iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} is declared"))
}

#[test]
fn the_openrpc_document_lists_every_declared_method_with_resolvable_schemas() {
    let specs = method_specs();
    let doc = openrpc::document(&specs, "0.0.0");
    assert!(doc["openrpc"].as_str().unwrap().starts_with("1."));
    let methods = doc["methods"].as_array().unwrap();
    assert_eq!(methods.len(), specs.len());
    let text = doc.to_string();
    for (m, s) in methods.iter().zip(&specs) {
        assert_eq!(m["name"], s.name);
        assert_eq!(m["params"].as_array().unwrap().len(), s.params.len());
        assert!(
            !m["summary"].as_str().unwrap().is_empty(),
            "{} has a doc",
            s.name
        );
    }
    // every $ref points into components.schemas and resolves
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for part in text.split("\"$ref\":\"").skip(1) {
        let r = &part[..part.find('"').unwrap()];
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("ref {r} is outside components.schemas"));
        assert!(schemas.contains_key(name), "{r} resolves");
    }
    assert!(schemas.contains_key("BlockView"));
    let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
    let mut dedup = names.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), names.len(), "names are unique");
}

#[test]
fn classes_put_node_changing_methods_behind_the_operator() {
    for m in method_specs() {
        let expected_changes = m.name.starts_with("mining_") && m.name != "mining_getInfo"
            || m.name.starts_with("net_")
                && !["net_getPeers", "net_listBanned", "net_getLinks"].contains(&m.name)
            || m.name.starts_with("dev_");
        assert_eq!(
            m.class.changes_node(),
            expected_changes,
            "{} is {:?}",
            m.name,
            m.class
        );
    }
    assert_eq!(spec("tx_submit").class, Class::Submit);
    assert_eq!(spec("dev_faucet").class, Class::Dev);
}

#[test]
fn bad_parameters_get_messages_that_say_what_to_send() {
    let get_block = spec("chain_getBlock");
    let msg = get_block.explain_bad_params(Some(&json!([])));
    assert!(msg.contains("needs parameter 1 (id)"), "{msg}");
    assert!(
        msg.contains("block height") && msg.contains("hash"),
        "{msg}"
    );
    let msg = get_block.explain_bad_params(Some(&json!(["zz"])));
    assert!(
        msg.contains("parameter 1 (id) of chain_getBlock must be"),
        "{msg}"
    );
    assert!(msg.contains("\"zz\""), "{msg}");
    assert!(!msg.contains("untagged"), "{msg}");
    let msg = spec("chain_getInfo").explain_bad_params(Some(&json!([1])));
    assert_eq!(msg, "chain_getInfo takes no parameters; got 1");
    let msg = spec("chain_getBlockHash").explain_bad_params(Some(&json!([-1])));
    assert!(msg.contains("non-negative integer"), "{msg}");
    let msg = get_block.explain_bad_params(Some(&json!({"id": 1})));
    assert!(msg.contains("by position"), "{msg}");
    // optional parameters may be left out or null, but not of the wrong type
    let start = spec("mining_start");
    assert_eq!(start.signature(), "mining_start(address?, threads?)");
    let msg = start.explain_bad_params(Some(&json!([null, "four"])));
    assert!(msg.contains("parameter 2 (threads)"), "{msg}");
    let long = Value::String("x".repeat(500));
    let msg = spec("chain_getTransaction").explain_bad_params(Some(&json!([long])));
    assert!(msg.len() < 400, "long input is cut: {msg}");
}
