//! The description of each method that [`crate::cairn_rpc!`] derives from
//! the API declaration: name, class, documentation, parameter and result
//! types (as JSON schemas and as checks of a JSON value).

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Who may call a method, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// Reads state; changes nothing.
    Read,
    /// Submits a signed transfer: what wallets do. Allowed wherever reads are.
    Submit,
    /// Changes the node itself (mining, peers, bans, test-network
    /// controls). Refused when the RPC listens on a public address unless
    /// the operator passes `--rpc-allow-control`.
    Control,
    /// A development aid that exists only on dev networks; also refused on
    /// a public address without `--rpc-allow-control`.
    Dev,
}

impl Class {
    /// The lowercase name used in `rpc_methods` and the OpenRPC document.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Submit => "submit",
            Class::Control => "control",
            Class::Dev => "dev",
        }
    }

    /// Whether calls of this class change the node (and so are refused on a
    /// public bind without the operator's consent).
    pub fn changes_node(self) -> bool {
        matches!(self, Class::Control | Class::Dev)
    }
}

/// A Rust type as the API sees it: its JSON schema and a check that a JSON
/// value deserializes into it.
#[derive(Clone, Copy)]
pub struct TypeSpec {
    schema: fn(&mut SchemaGenerator) -> Schema,
    check: fn(&Value) -> bool,
}

impl std::fmt::Debug for TypeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TypeSpec")
    }
}

fn schema_of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

fn accepts<T: DeserializeOwned>(v: &Value) -> bool {
    T::deserialize(v).is_ok()
}

impl TypeSpec {
    pub fn of<T: JsonSchema + DeserializeOwned>() -> TypeSpec {
        TypeSpec {
            schema: schema_of::<T>,
            check: accepts::<T>,
        }
    }

    /// The schema, with named types registered in `g`'s definitions.
    pub fn schema(&self, g: &mut SchemaGenerator) -> Schema {
        (self.schema)(g)
    }

    /// Whether `v` is a valid value of the type.
    pub fn accepts(&self, v: &Value) -> bool {
        (self.check)(v)
    }

    /// A short human description of the expected value, from its schema:
    /// "a non-negative integer", "a string (64 hex characters ...)".
    pub fn describe(&self) -> String {
        let mut g = SchemaGenerator::default();
        let schema = self.schema(&mut g);
        let defs = g.definitions().clone();
        describe_schema(&schema, &defs)
    }
}

fn resolve<'a>(v: &'a Value, defs: &'a serde_json::Map<String, Value>) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .rsplit('/')
            .next()
            .and_then(|name| defs.get(name))
            .unwrap_or(v),
        None => v,
    }
}

fn describe_schema(schema: &Schema, defs: &serde_json::Map<String, Value>) -> String {
    describe_value(schema.as_value(), defs)
}

fn describe_value(v: &Value, defs: &serde_json::Map<String, Value>) -> String {
    let v = resolve(v, defs);
    if let Some(d) = v.get("description").and_then(Value::as_str) {
        return d.trim().trim_end_matches('.').to_string();
    }
    if let Some(options) = v
        .get("anyOf")
        .or_else(|| v.get("oneOf"))
        .and_then(Value::as_array)
    {
        let parts: Vec<String> = options.iter().map(|o| describe_value(o, defs)).collect();
        return parts.join(" or ");
    }
    let ty = match v.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("value")
            .to_string(),
        _ => "value".into(),
    };
    match ty.as_str() {
        "integer" => {
            if v.get("minimum").and_then(Value::as_f64) == Some(0.0) {
                "a non-negative integer".into()
            } else {
                "an integer".into()
            }
        }
        "string" => "a string".into(),
        "boolean" => "true or false".into(),
        "array" => "a JSON array".into(),
        "object" => "a JSON object".into(),
        "null" => "null".into(),
        other => format!("a {other}"),
    }
}

/// One positional parameter.
#[derive(Clone, Debug)]
pub struct ParamSpec {
    pub name: &'static str,
    /// Whether callers must pass it (an `Option` parameter may be left out).
    pub required: bool,
    pub ty: TypeSpec,
}

impl ParamSpec {
    pub fn required<T: JsonSchema + DeserializeOwned>(name: &'static str) -> ParamSpec {
        ParamSpec {
            name,
            required: true,
            ty: TypeSpec::of::<T>(),
        }
    }

    pub fn optional<T: JsonSchema + DeserializeOwned>(name: &'static str) -> ParamSpec {
        ParamSpec {
            name,
            required: false,
            ty: TypeSpec::of::<Option<T>>(),
        }
    }
}

/// One method of the API.
#[derive(Clone, Debug)]
pub struct MethodSpec {
    /// The name on the wire.
    pub name: &'static str,
    pub class: Class,
    /// The doc comment of the declaration, one line per `///` line.
    pub doc: &'static str,
    pub params: Vec<ParamSpec>,
    pub result: TypeSpec,
    /// For subscriptions: the notification and the unsubscribe method.
    pub subscription: Option<(&'static str, &'static str)>,
}

impl MethodSpec {
    /// The documentation as one paragraph.
    pub fn description(&self) -> String {
        self.doc
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The first sentence of the documentation.
    pub fn summary(&self) -> String {
        let d = self.description();
        match d.find(". ") {
            Some(i) => d[..=i].to_string(),
            None => d,
        }
    }

    /// `name(a, b?)`: how to call it.
    pub fn signature(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|p| {
                if p.required {
                    p.name.to_string()
                } else {
                    format!("{}?", p.name)
                }
            })
            .collect();
        format!("{}({})", self.name, params.join(", "))
    }

    /// A message for parameters that do not fit this method, naming the
    /// first one that is wrong and what it must be. `params` is the raw
    /// JSON the caller sent (absent, an array, or something else).
    pub fn explain_bad_params(&self, params: Option<&Value>) -> String {
        let sig = self.signature();
        let list = match params {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(Value::Object(_)) => {
                return format!(
                    "{} takes its parameters by position, as a JSON array: {sig}",
                    self.name
                );
            }
            Some(other) => {
                return format!(
                    "params must be a JSON array, not {}; call it as {sig}",
                    short_json(other)
                );
            }
        };
        if list.len() > self.params.len() {
            return match self.params.len() {
                0 => format!("{} takes no parameters; got {}", self.name, list.len()),
                n => format!(
                    "{} takes at most {n} parameter{}: {sig}; got {}",
                    self.name,
                    if n == 1 { "" } else { "s" },
                    list.len()
                ),
            };
        }
        for (i, p) in self.params.iter().enumerate() {
            match list.get(i) {
                None | Some(Value::Null) if p.required => {
                    return format!(
                        "{} needs parameter {} ({}): {}; call it as {sig}",
                        self.name,
                        i + 1,
                        p.name,
                        p.ty.describe()
                    );
                }
                Some(v) if !p.ty.accepts(v) => {
                    return format!(
                        "parameter {} ({}) of {} must be {}; got {}",
                        i + 1,
                        p.name,
                        self.name,
                        p.ty.describe(),
                        short_json(v)
                    );
                }
                _ => {}
            }
        }
        format!("invalid parameters; call it as {sig}")
    }
}

/// JSON text of `v`, cut to 80 characters.
fn short_json(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s
    }
}
