//! # cairn-genesis
//!
//! A Cairn network is defined by a genesis spec, a TOML file: its name,
//! chain id, address prefix, genesis time, every consensus parameter, the
//! initial allocations and the bootnodes. [`Network::from_toml`] reads and
//! checks a spec, refusing anything malformed or inconsistent with a message
//! that names the field, and builds the genesis block.
//!
//! The genesis block commits to the spec: its `parent` field is the hash of
//! the canonical encoding of every parameter, and its state root commits to
//! the allocations, so two nodes whose specs differ in any parameter never
//! agree on a genesis hash. Bootnodes are deliberately left out: they say
//! where to find peers, not what is valid, and refreshing the list must not
//! split the network.
//!
//! Two networks are built in ([`Network::builtin`]): `dev` (pinned easy
//! target, blocks on demand, accounts prefunded from a published seed, see
//! [`dev_accounts`]) and `testnet` (ASERT toward 10 s blocks at a target a
//! laptop CPU can mine).

use std::path::Path;

use borsh::BorshSerialize;
use cairn_consensus::address::AddressPrefix;
use cairn_consensus::genesis::{genesis_accounts, genesis_block};
use cairn_consensus::hash::tagged;
use cairn_consensus::pow::Target;
use cairn_consensus::transfer::public_key;
use cairn_consensus::{
    Account, Address, Amount, Block, BlockHash, ConsensusParams, Retarget, SigningKey,
};
use serde::{Deserialize, Serialize};

/// The dev network's spec.
pub const DEV_SPEC: &str = include_str!("../specs/dev.toml");
/// The testnet's spec.
pub const TESTNET_SPEC: &str = include_str!("../specs/testnet.toml");
/// Names of the built-in networks.
pub const BUILTIN: [&str; 2] = ["dev", "testnet"];

/// Largest spec file read.
pub const MAX_SPEC_BYTES: u64 = 4 << 20;
/// Largest block size a spec may allow (the P2P frame limit follows from it).
pub const MAX_BLOCK_BYTES_LIMIT: u64 = 32 << 20;

/// The published seed of the dev accounts. They are known to everyone:
/// never send real value to them.
pub const DEV_SEED: &str = "cairn dev accounts: public test keys, never use for value";
/// Number of prefunded dev accounts.
pub const DEV_ACCOUNTS: u32 = 10;

/// A spec refused, naming the field.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read genesis spec {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("genesis spec is not valid TOML or has unknown or missing fields: {0}")]
    Toml(String),
    #[error("genesis spec field `{field}`: {message}")]
    Field { field: String, message: String },
    #[error(
        "unknown network {0:?}: the built-in networks are dev and testnet (or pass --genesis FILE)"
    )]
    UnknownNetwork(String),
}

fn field(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError::Field {
        field: field.into(),
        message: message.into(),
    }
}

/// The TOML form of a spec.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisSpec {
    /// Network name: lowercase letters, digits and dashes.
    pub name: String,
    pub chain_id: u64,
    /// Human-readable part of addresses, e.g. `cdev`.
    pub address_prefix: String,
    /// Milliseconds since the Unix epoch.
    pub genesis_time_ms: u64,
    pub consensus: ConsensusSpec,
    #[serde(default)]
    pub allocations: Vec<Allocation>,
    /// `host:port` of nodes to contact first. Not part of the genesis hash.
    #[serde(default)]
    pub bootnodes: Vec<String>,
}

/// The `[consensus]` table.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusSpec {
    pub target_block_time_ms: u64,
    /// `"pinned"` or `"asert"`.
    pub retarget: String,
    /// Required with `retarget = "asert"`.
    #[serde(default)]
    pub asert_half_life_ms: Option<u64>,
    /// 64 hex characters, big-endian.
    pub initial_target: String,
    pub pow_limit: String,
    /// Base units.
    pub block_reward: u64,
    /// 0 means the reward never halves.
    #[serde(default)]
    pub halving_interval: u64,
    pub max_block_bytes: u64,
    pub max_block_transfers: u64,
    /// Base units.
    pub min_fee: u64,
    pub max_future_drift_ms: u64,
}

/// One `[[allocations]]` entry.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allocation {
    pub address: String,
    /// Base units.
    pub amount: u64,
}

/// What the genesis hash commits to: every parameter (allocations enter
/// through the genesis state root).
#[derive(BorshSerialize)]
struct SpecCommitment<'a> {
    format: u32,
    name: &'a str,
    chain_id: u64,
    address_prefix: &'a str,
    genesis_time_ms: u64,
    target_block_time_ms: u64,
    retarget: &'a str,
    asert_half_life_ms: u64,
    initial_target: [u8; 32],
    pow_limit: [u8; 32],
    block_reward: u64,
    halving_interval: u64,
    max_block_bytes: u64,
    max_block_transfers: u64,
    min_fee: u64,
    max_future_drift_ms: u64,
}

/// A checked network: parameters, genesis block and bootnodes.
#[derive(Clone, Debug)]
pub struct Network {
    pub name: String,
    pub params: ConsensusParams,
    pub genesis: Block,
    pub genesis_hash: BlockHash,
    /// The genesis accounts, sorted by address.
    pub accounts: Vec<(Address, Account)>,
    pub bootnodes: Vec<String>,
}

fn parse_target(name: &str, s: &str) -> Result<Target, SpecError> {
    s.parse::<Target>()
        .map_err(|e| field(name, format!("{e} (write 64 hex characters, big-endian)")))
}

impl Network {
    /// A built-in network by name.
    pub fn builtin(name: &str) -> Result<Network, SpecError> {
        match name {
            "dev" => Network::from_toml(DEV_SPEC),
            "testnet" => Network::from_toml(TESTNET_SPEC),
            other => Err(SpecError::UnknownNetwork(other.to_string())),
        }
    }

    /// Reads a spec file (at most [`MAX_SPEC_BYTES`]).
    pub fn from_file(path: &Path) -> Result<Network, SpecError> {
        let read_err = |reason: String| SpecError::Read {
            path: path.display().to_string(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| read_err(e.to_string()))?;
        if meta.len() > MAX_SPEC_BYTES {
            return Err(read_err(format!(
                "{} bytes is over the {MAX_SPEC_BYTES}-byte limit",
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| read_err(e.to_string()))?;
        Network::from_toml(&text)
    }

    /// Parses and checks a spec.
    pub fn from_toml(text: &str) -> Result<Network, SpecError> {
        let spec: GenesisSpec = toml::from_str(text).map_err(|e| SpecError::Toml(e.to_string()))?;
        Network::from_spec(&spec)
    }

    /// Checks a parsed spec and builds the network.
    pub fn from_spec(spec: &GenesisSpec) -> Result<Network, SpecError> {
        let name_ok = !spec.name.is_empty()
            && spec.name.len() <= 32
            && spec
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(field(
                "name",
                "use 1 to 32 lowercase letters, digits or dashes",
            ));
        }
        if spec.chain_id == 0 {
            return Err(field("chain_id", "must not be 0"));
        }
        let prefix = AddressPrefix::new(&spec.address_prefix)
            .map_err(|e| field("address_prefix", e.to_string()))?;
        if spec.genesis_time_ms == 0 {
            return Err(field(
                "genesis_time_ms",
                "must be a time after 1970 in milliseconds",
            ));
        }
        let c = &spec.consensus;
        if c.target_block_time_ms < 100 || c.target_block_time_ms > 86_400_000 {
            return Err(field(
                "consensus.target_block_time_ms",
                "must be between 100 ms and one day",
            ));
        }
        let initial_target = parse_target("consensus.initial_target", &c.initial_target)?;
        let pow_limit = parse_target("consensus.pow_limit", &c.pow_limit)?;
        if pow_limit.0 == [0; 32] {
            return Err(field("consensus.pow_limit", "must be at least 1"));
        }
        if initial_target.0 == [0; 32] || initial_target > pow_limit {
            return Err(field(
                "consensus.initial_target",
                "must be between 1 and consensus.pow_limit",
            ));
        }
        let max_drift_hours = 2 * 3_600_000;
        if c.max_future_drift_ms < 1_000 || c.max_future_drift_ms > max_drift_hours {
            return Err(field(
                "consensus.max_future_drift_ms",
                "must be between 1000 ms and two hours",
            ));
        }
        let retarget = match (c.retarget.as_str(), c.asert_half_life_ms) {
            ("pinned", None) => Retarget::Pinned,
            ("pinned", Some(_)) => {
                return Err(field(
                    "consensus.asert_half_life_ms",
                    "only applies with retarget = \"asert\"",
                ));
            }
            ("asert", None) => {
                return Err(field(
                    "consensus.asert_half_life_ms",
                    "is required with retarget = \"asert\"",
                ));
            }
            ("asert", Some(h)) => {
                if h < 2 * c.target_block_time_ms || h > 1 << 40 {
                    return Err(field(
                        "consensus.asert_half_life_ms",
                        "must be at least twice consensus.target_block_time_ms (and below 2^40)",
                    ));
                }
                if c.max_future_drift_ms > h / 4 {
                    return Err(field(
                        "consensus.max_future_drift_ms",
                        format!(
                            "must be at most a quarter of asert_half_life_ms ({} ms), or a miner stamping future times eases its own target too much",
                            h / 4
                        ),
                    ));
                }
                Retarget::Asert { half_life_ms: h }
            }
            (other, _) => {
                return Err(field(
                    "consensus.retarget",
                    format!("{other:?} is not \"pinned\" or \"asert\""),
                ));
            }
        };
        let min_block = (cairn_consensus::block::HEADER_BYTES
            + cairn_consensus::block::COINBASE_BYTES
            + 4) as u64;
        if c.max_block_bytes < min_block || c.max_block_bytes > MAX_BLOCK_BYTES_LIMIT {
            return Err(field(
                "consensus.max_block_bytes",
                format!("must be between {min_block} and {MAX_BLOCK_BYTES_LIMIT}"),
            ));
        }
        if c.max_block_transfers == 0 || c.max_block_transfers > 1_000_000 {
            return Err(field(
                "consensus.max_block_transfers",
                "must be between 1 and 1000000",
            ));
        }
        let mut allocations = Vec::with_capacity(spec.allocations.len());
        for (i, a) in spec.allocations.iter().enumerate() {
            let addr = Address::decode(&a.address, &prefix)
                .map_err(|e| field(format!("allocations[{i}].address"), e.to_string()))?;
            if a.amount == 0 {
                return Err(field(format!("allocations[{i}].amount"), "must be above 0"));
            }
            allocations.push((addr, Amount(a.amount)));
        }
        let accounts = genesis_accounts(&allocations)
            .ok_or_else(|| field("allocations", "an address's total overflows"))?;
        let mut total = Amount::ZERO;
        for (_, acc) in &accounts {
            total = total
                .checked_add(acc.balance)
                .ok_or_else(|| field("allocations", "the total overflows"))?;
        }
        for (i, b) in spec.bootnodes.iter().enumerate() {
            check_host_port(b).map_err(|m| field(format!("bootnodes[{i}]"), m))?;
        }
        let params = ConsensusParams {
            chain_id: spec.chain_id,
            address_prefix: prefix,
            genesis_time_ms: spec.genesis_time_ms,
            target_block_time_ms: c.target_block_time_ms,
            initial_target,
            pow_limit,
            retarget,
            block_reward: Amount(c.block_reward),
            halving_interval: c.halving_interval,
            max_block_bytes: c.max_block_bytes as usize,
            max_block_transfers: c.max_block_transfers as usize,
            min_fee: Amount(c.min_fee),
            max_future_drift_ms: c.max_future_drift_ms,
        };
        let commitment = SpecCommitment {
            format: 1,
            name: &spec.name,
            chain_id: spec.chain_id,
            address_prefix: &spec.address_prefix,
            genesis_time_ms: spec.genesis_time_ms,
            target_block_time_ms: c.target_block_time_ms,
            retarget: &c.retarget,
            asert_half_life_ms: c.asert_half_life_ms.unwrap_or(0),
            initial_target: initial_target.0,
            pow_limit: pow_limit.0,
            block_reward: c.block_reward,
            halving_interval: c.halving_interval,
            max_block_bytes: c.max_block_bytes,
            max_block_transfers: c.max_block_transfers,
            min_fee: c.min_fee,
            max_future_drift_ms: c.max_future_drift_ms,
        };
        let spec_hash = tagged(
            "cairn/genesis-spec/v1",
            &[&borsh::to_vec(&commitment).unwrap_or_default()],
        );
        let genesis = genesis_block(&params, spec_hash, &accounts);
        Ok(Network {
            name: spec.name.clone(),
            genesis_hash: genesis.hash(),
            params,
            genesis,
            accounts,
            bootnodes: spec.bootnodes.clone(),
        })
    }
}

/// Checks a `host:port` string.
pub fn check_host_port(s: &str) -> Result<(), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not host:port"))?;
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{s:?} has no valid port (1-65535)"))?;
    Ok(())
}

/// One of the prefunded dev accounts.
#[derive(Clone, Debug)]
pub struct DevAccount {
    pub index: u32,
    pub key: SigningKey,
    pub address: Address,
}

impl DevAccount {
    /// The secret key as hex, for `cairn-wallet import`.
    pub fn secret_hex(&self) -> String {
        self.key
            .to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The dev accounts: secret key `i` is `SHA-256(DEV_SEED || 0x00 || i as u32 LE)`,
/// tagged as in [`tagged`]. Anyone can derive them; they exist so that a dev
/// chain has money from its first block.
pub fn dev_accounts() -> Vec<DevAccount> {
    (0..DEV_ACCOUNTS)
        .map(|i| {
            let key = SigningKey::from_bytes(&tagged(DEV_SEED, &[&i.to_le_bytes()]));
            let address = Address::from_public_key(&public_key(&key));
            DevAccount {
                index: i,
                key,
                address,
            }
        })
        .collect()
}

/// Networks for tests and benchmarks.
#[cfg(feature = "testkit")]
pub mod testkit {
    use cairn_consensus::testkit::ChainBuilder;

    use crate::Network;

    /// A network whose genesis is `builder`'s genesis (no spec checks).
    pub fn network(builder: &ChainBuilder) -> Network {
        Network {
            name: "testkit".into(),
            params: builder.params.clone(),
            genesis: builder.genesis().clone(),
            genesis_hash: builder.genesis().hash(),
            accounts: builder.genesis_accounts.clone(),
            bootnodes: vec![],
        }
    }
}
