//! JSON schemas of the consensus types that travel over JSON-RPC as text
//! (feature `schemars`), so `cairn-api` can describe its methods in an
//! OpenRPC document. Each schema says the exact text form the serde
//! implementations accept.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use crate::{BlockHash, StateRoot, Target, TxId, TxRoot, Work};

macro_rules! hex32_schema {
    ($($name:ident => $what:literal),* $(,)?) => {$(
        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "description": concat!($what, ": 64 hex characters (32 bytes), an optional 0x prefix accepted."),
                    "pattern": "^(0x)?[0-9a-fA-F]{64}$",
                })
            }
        }
    )*};
}

hex32_schema!(
    BlockHash => "A block hash",
    TxId => "A transaction id",
    TxRoot => "The Merkle root of a block's transaction ids",
    StateRoot => "The commitment to the account state after a block",
    Target => "A proof-of-work target (the largest valid block hash, big-endian)",
);

impl JsonSchema for Work {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Work")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "An amount of work (expected hashes) as a hexadecimal number.",
            "pattern": "^(0x)?[0-9a-fA-F]{1,64}$",
        })
    }
}
