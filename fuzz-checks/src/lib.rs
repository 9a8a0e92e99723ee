//! # cairn-fuzz-checks
//!
//! The property each fuzz target in `fuzz/` checks, as an ordinary function
//! of the input bytes. A fuzz target is one line that calls one of these;
//! `tests/replay.rs` calls the same functions on every stored corpus entry
//! and crash input (`fuzz/corpus/<target>/`, `fuzz/artifacts/<target>/`), so
//! what the fuzzer found stays fixed on stable Rust in `make test`.
//!
//! Each check panics when a property fails, and only then. The properties
//! are stronger than "does not crash":
//!
//! - canonical encodings: whatever decodes re-encodes to exactly the input
//!   (one value, one encoding, one id), and decoding the re-encoding gives
//!   the same value;
//! - stateless checks agree with a plain restatement of the rule;
//! - text formats (TOML, JSON) reach a fixed point: what parses prints to a
//!   text that parses to the same value;
//! - sizes: nothing decodes from more bytes than its limit, and the decoders
//!   never allocate more than the input justifies (the fuzz runs enforce
//!   `-malloc_limit_mb`, see `fuzz/README.md`).

use std::path::Path;
use std::sync::OnceLock;

use bytes::BytesMut;
use cairn_api::MethodSpec;
use cairn_api::{BlockId, PeerRef};
use cairn_consensus::validation::{check_block, check_header};
use cairn_consensus::{
    Address, Amount, Block, BlockError, BlockHash, SignedTransfer, SigningKey, TxId,
};
use cairn_genesis::{GenesisSpec, Network};
use cairn_p2p::message::{HANDSHAKE_FRAME_LIMIT, Message, frame_limit};
use tokio_util::codec::{Decoder, LengthDelimitedCodec};

/// A target's check: panics when a property fails.
pub type Check = fn(&[u8]);

/// The names of the fuzz targets, which are also the names of their corpus
/// and artifact folders, with their checks.
pub const TARGETS: &[(&str, Check)] = &[
    ("p2p_message", p2p_message),
    ("transfer", transfer),
    ("block", block),
    ("rpc_params", rpc_params),
    ("genesis_spec", genesis_spec),
    ("node_config", node_config),
    ("wallet_file", wallet_file),
    ("noise_handshake", noise_handshake),
];

fn dev() -> &'static Network {
    static DEV: OnceLock<Network> = OnceLock::new();
    DEV.get_or_init(|| Network::builtin("dev").expect("the built-in dev spec"))
}

fn specs() -> &'static [MethodSpec] {
    static SPECS: OnceLock<Vec<MethodSpec>> = OnceLock::new();
    SPECS.get_or_init(cairn_api::method_specs)
}

/// One decoded message: canonical, within its bounds, stable.
fn check_message_frame(frame: &[u8]) {
    let Ok(m) = Message::decode(frame) else {
        return;
    };
    let again = m.encode();
    assert_eq!(again, frame, "{} message re-encodes differently", m.kind());
    assert_eq!(
        Message::decode(&again).expect("a re-encoded message decodes"),
        m,
        "decode(encode(m)) != m"
    );
    m.check().expect("a decoded message is within its bounds");
    if let Message::Block(b) = &m {
        assert_eq!(b.encoded_len() + 1, frame.len(), "Block::encoded_len");
    }
}

/// The P2P frame and message decoder: the input is a byte stream as a peer
/// would send it (4-byte big-endian length, then the frame). The first
/// frame is cut at the handshake limit, later ones at the dev network's
/// limit, as a connection does; every frame the codec yields is within its
/// limit, and each decoded message is canonical. The whole input is also
/// decoded as one frame.
pub fn p2p_message(data: &[u8]) {
    check_message_frame(data);
    let mut codec = LengthDelimitedCodec::builder()
        .max_frame_length(HANDSHAKE_FRAME_LIMIT)
        .new_codec();
    let mut buf = BytesMut::from(data);
    let mut limit = HANDSHAKE_FRAME_LIMIT;
    // until a frame is incomplete or over the limit: a connection stops there
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        assert!(frame.len() <= limit, "a frame over the limit got through");
        check_message_frame(&frame);
        limit = frame_limit(dev().params.max_block_bytes);
        codec.set_max_frame_length(limit);
    }
}

/// The stateless transfer checks restated: what `SignedTransfer::check`
/// must decide.
fn expected_check(t: &SignedTransfer, chain_id: u64, min_fee: Amount) -> bool {
    let t = &t.transfer;
    t.chain_id == chain_id
        && t.amount.0 != 0
        && t.fee.0 >= min_fee.0
        && t.amount.0.checked_add(t.fee.0).is_some()
}

/// `SignedTransfer` decoding, the RPC's hex decoding, and the stateless
/// checks: canonical encoding, the id is a function of the bytes, `check`
/// agrees with the rule, signatures verify only for the signer.
pub fn transfer(data: &[u8]) {
    let decoded = SignedTransfer::decode(data);
    // the RPC path: hex with optional 0x prefix and whitespace
    let via_hex = cairn_node::rpc::decode_transfer_hex(&format!(" 0x{} ", hex::encode(data)));
    assert_eq!(
        decoded.as_ref().ok(),
        via_hex.as_ref().ok(),
        "tx_submit's hex decoding disagrees with SignedTransfer::decode"
    );
    let Ok(t) = decoded else {
        assert!(
            data.len() != cairn_consensus::transfer::SIGNED_TRANSFER_BYTES,
            "a fixed-size transfer of the right length failed to decode"
        );
        return;
    };
    assert_eq!(t.encode(), data, "transfer re-encodes differently");
    assert_eq!(SignedTransfer::decode(&t.encode()).ok(), Some(t));
    assert_eq!(t.id(), SignedTransfer::decode(data).expect("decodes").id());
    let params = &dev().params;
    for (chain_id, min_fee) in [
        (params.chain_id, params.min_fee),
        (t.transfer.chain_id, Amount(0)),
        (t.transfer.chain_id, t.transfer.fee),
    ] {
        let got = t.check(chain_id, min_fee);
        assert_eq!(
            got.is_ok(),
            expected_check(&t, chain_id, min_fee),
            "check({chain_id}, {min_fee:?}) = {got:?} for {t:?}"
        );
    }
    // a signature that verifies stops verifying with any bit flipped
    if t.verify_signature().is_ok() {
        let mut flipped = t;
        flipped.signature.0[(data[2] as usize) % 64] ^= 1 << (data[3] % 8);
        assert!(flipped.verify_signature().is_err(), "malleable signature");
    }
    // signed by a key derived from the input, it verifies; with one bit of
    // the signature or the content flipped, it does not
    let seed: [u8; 32] = sha2::Digest::finalize(sha2::Digest::chain_update(
        <sha2::Sha256 as sha2::Digest>::new(),
        data,
    ))
    .into();
    let key = SigningKey::from_bytes(&seed);
    let mut unsigned = t.transfer;
    unsigned.from = cairn_consensus::transfer::public_key(&key);
    let signed = unsigned.sign(&key);
    signed
        .verify_signature()
        .expect("a freshly signed transfer verifies");
    let mut bad = signed;
    bad.signature.0[(data[0] as usize) % 64] ^= 1 << (data[1] % 8);
    assert!(bad.verify_signature().is_err(), "a flipped signature bit");
    let mut other = signed;
    other.transfer.nonce = other.transfer.nonce.wrapping_add(1);
    assert!(other.verify_signature().is_err(), "a changed nonce");
    assert_ne!(signed.id(), other.id());
}

/// `Block` decoding and the stateless header and body checks: canonical
/// encoding, `encoded_len` agrees, the checks never panic, and a body that
/// passes `check_block` satisfies each rule it checks.
pub fn block(data: &[u8]) {
    let params = &dev().params;
    let max = params.max_block_bytes;
    let Ok(b) = Block::decode(data, max) else {
        return;
    };
    assert!(data.len() <= max);
    assert_eq!(b.encode(), data, "block re-encodes differently");
    assert_eq!(b.encoded_len(), data.len(), "encoded_len");
    assert_eq!(Block::decode(&b.encode(), max).ok().as_ref(), Some(&b));
    // the header alone decodes from its prefix
    let header_bytes = &data[..cairn_consensus::block::HEADER_BYTES];
    assert_eq!(
        cairn_consensus::BlockHeader::decode(header_bytes).ok(),
        Some(b.header)
    );
    match check_header(&b.header, params) {
        Ok(hash) => {
            assert_eq!(hash, b.hash());
            assert!(b.header.target.is_met_by(&hash));
        }
        Err(e) => check_error_is_stable(&e),
    }
    match check_block(&b, params) {
        Ok(()) => {
            assert_eq!(b.compute_tx_root(), b.header.tx_root);
            assert_eq!(b.coinbase.height, b.header.height);
            assert!(b.transfers.len() <= params.max_block_transfers);
            let mut ids: Vec<TxId> = b.transfers.iter().map(SignedTransfer::id).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), b.transfers.len(), "duplicate transfers passed");
            for t in &b.transfers {
                assert!(expected_check(t, params.chain_id, params.min_fee));
            }
        }
        Err(e) => check_error_is_stable(&e),
    }
    // The same body under a header that commits to it: a fuzzer cannot
    // forge a tx root, so without this every body check after the root
    // comparison would be out of its reach.
    let mut committed = b.clone();
    committed.header.tx_root = b.compute_tx_root();
    check_body(&committed, params);
}

/// `check_block` on a block whose header commits to its body: every rule
/// it passes holds, and every rejection names a rule that is broken.
fn check_body(b: &Block, params: &cairn_consensus::ConsensusParams) {
    match check_block(b, params) {
        Ok(()) => {
            assert_eq!(b.coinbase.height, b.header.height);
            assert!(b.transfers.len() <= params.max_block_transfers);
            assert!(b.encoded_len() <= params.max_block_bytes);
            let mut ids: Vec<TxId> = b.transfers.iter().map(SignedTransfer::id).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), b.transfers.len(), "duplicate transfers passed");
            for t in &b.transfers {
                assert!(expected_check(t, params.chain_id, params.min_fee));
            }
        }
        Err(BlockError::TxRootMismatch { .. }) => panic!("the root was just computed"),
        Err(BlockError::CoinbaseHeight { .. }) => {
            assert_ne!(b.coinbase.height, b.header.height)
        }
        Err(BlockError::Transfer { index, .. }) => {
            let t = &b.transfers[index];
            assert!(!expected_check(t, params.chain_id, params.min_fee));
        }
        Err(BlockError::DuplicateTransfer { index, txid }) => {
            assert_eq!(b.transfers[index].id(), txid);
            assert!(b.transfers[..index].iter().any(|t| t.id() == txid));
        }
        Err(e) => check_error_is_stable(&e),
    }
}

fn check_error_is_stable(e: &BlockError) {
    // errors are shown to operators and decide bans: they must render and
    // classify without panicking
    let _ = e.to_string();
    let _ = e.is_permanent();
    let _ = e.condemns_hash();
}

/// JSON-RPC parameter parsing: the first byte picks a method, the rest is
/// the `params` JSON. The node's explanation of bad parameters never
/// panics and always says something; the typed parameters (block ids,
/// hashes, peers, addresses, transfer hex) parse to a fixed point.
pub fn rpc_params(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    let specs = specs();
    let spec = &specs[pick as usize % specs.len()];
    let explained = spec.explain_bad_params(Some(&value));
    assert!(!explained.is_empty(), "an empty explanation");
    let list: Vec<serde_json::Value> = match &value {
        serde_json::Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    for (i, p) in spec.params.iter().enumerate() {
        if let Some(v) = list.get(i) {
            let _ = p.ty.accepts(v);
        }
    }
    for v in &list {
        fixed_point::<BlockId>(v);
        fixed_point::<BlockHash>(v);
        fixed_point::<TxId>(v);
        fixed_point::<PeerRef>(v);
        fixed_point::<cairn_api::LinkView>(v);
        if let Some(s) = v.as_str() {
            let prefix = &dev().params.address_prefix;
            if let Ok(a) = Address::decode(s, prefix) {
                assert_eq!(Address::decode(&a.encode(prefix), prefix).ok(), Some(a));
            }
            if let Ok((hrp, a)) = Address::decode_any(s) {
                let _ = (hrp, a);
            }
            if let Ok(t) = cairn_node::rpc::decode_transfer_hex(s) {
                assert_eq!(
                    cairn_node::rpc::decode_transfer_hex(&hex::encode(t.encode())).ok(),
                    Some(t)
                );
            }
        }
    }
}

/// A value of `T` taken from `v`, printed and read again, is the same value
/// and prints the same.
fn fixed_point<T>(v: &serde_json::Value)
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    let Ok(first) = serde_json::from_value::<T>(v.clone()) else {
        return;
    };
    let printed = serde_json::to_value(&first).expect("prints");
    let second: T = serde_json::from_value(printed.clone())
        .unwrap_or_else(|e| panic!("{first:?} prints as {printed} which does not parse back: {e}"));
    let reprinted = serde_json::to_value(&second).expect("prints");
    assert_eq!(printed, reprinted, "printing is not stable");
}

/// The genesis spec parser: a spec that builds a network prints to a TOML
/// text that builds the same network (same genesis hash, parameters and
/// allocations); errors render.
pub fn genesis_spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let network = match Network::from_toml(text) {
        Ok(n) => n,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let spec: GenesisSpec = toml::from_str(text).expect("from_toml parsed it");
    let printed = toml::to_string(&spec).expect("a spec prints");
    let again = Network::from_toml(&printed)
        .unwrap_or_else(|e| panic!("the printed spec is refused: {e}\n{printed}"));
    assert_eq!(again.genesis_hash, network.genesis_hash);
    assert_eq!(again.params, network.params);
    assert_eq!(again.accounts, network.accounts);
    assert_eq!(again.bootnodes, network.bootnodes);
    assert_eq!(network.genesis.hash(), network.genesis_hash);
    assert_eq!(network.genesis.header.height.0, 0);
    assert!(network.params.max_block_bytes as u64 <= cairn_genesis::MAX_BLOCK_BYTES_LIMIT);
}

/// The node's configuration structs (every subsystem section: rpc, access,
/// mining, mempool, storage, p2p) from TOML: what parses prints to TOML
/// that parses to the same configuration.
pub fn node_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = toml::from_str::<cairn_node::config::NodeConfig>(text) else {
        return;
    };
    let printed = toml::to_string(&config).expect("a config prints");
    let again: cairn_node::config::NodeConfig = toml::from_str(&printed)
        .unwrap_or_else(|e| panic!("the printed config is refused: {e}\n{printed}"));
    assert_eq!(
        toml::to_string(&again).expect("prints"),
        printed,
        "printing is not stable"
    );
}

/// The wallet file reader: the checks made before the password is used
/// (format, version, cipher, bounded KDF parameters, field lengths), then
/// the decrypted contents' parser. Whatever parses prints to a file that
/// parses to the same value; a parsed file never asks for unbounded work.
pub fn wallet_file(data: &[u8]) {
    let path = Path::new("fuzz.wallet");
    // the decrypted contents: the same bytes as the plaintext
    if let Ok(keys) = cairn_wallet::keystore::parse_plain(data, path) {
        let printed = cairn_wallet::keystore::encode_plain(&keys).expect("prints");
        let again = cairn_wallet::keystore::parse_plain(&printed, path).expect("parses back");
        assert_eq!(keys.len(), again.len());
        for (a, b) in keys.iter().zip(&again) {
            assert_eq!(a.key.to_bytes(), b.key.to_bytes());
            assert_eq!(a.label, b.label);
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = match cairn_wallet::keystore::WalletFile::parse(text, path) {
        Ok(f) => f,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let printed = file.to_json();
    let again = cairn_wallet::keystore::WalletFile::parse(&printed, path)
        .unwrap_or_else(|e| panic!("the printed wallet file is refused: {e}\n{printed}"));
    assert_eq!(again, file);
    assert!(file.kdf_memory_kib() <= 4 * 1024 * 1024);
}

/// Checks `data` against the named target's properties.
pub fn check(target: &str, data: &[u8]) {
    let (_, f) = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no fuzz target {target}"));
    f(data)
}

/// Keys made once per process (signing is not what is fuzzed).
fn noise_keys() -> &'static (
    cairn_p2p::transport::LocalKeys,
    cairn_p2p::transport::LocalKeys,
) {
    static KEYS: OnceLock<(
        cairn_p2p::transport::LocalKeys,
        cairn_p2p::transport::LocalKeys,
    )> = OnceLock::new();
    KEYS.get_or_init(|| {
        (
            cairn_p2p::transport::LocalKeys::new(&cairn_p2p::NodeKey::from_secret([1; 32])),
            cairn_p2p::transport::LocalKeys::new(&cairn_p2p::NodeKey::from_secret([2; 32])),
        )
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    })
}

/// Two codecs over a real handshake: the dialler's (to encrypt) and the
/// listener's (to decrypt).
async fn noise_pair(
    intro: cairn_p2p::transport::Intro,
) -> (
    cairn_p2p::transport::NoiseCodec,
    cairn_p2p::transport::NoiseCodec,
) {
    let (ka, kb) = noise_keys();
    let (mut a, mut b) = tokio::io::duplex(4096);
    let (ra, rb) = tokio::join!(
        cairn_p2p::transport::initiate(&mut a, ka, intro, None),
        cairn_p2p::transport::respond(&mut b, kb, intro)
    );
    (ra.expect("handshake").0, rb.expect("handshake").0)
}

/// The encrypted transport fed a peer's bytes:
/// - as the responder, the input is what a dialler sends (intro, then its
///   identity): it never completes a handshake (only a holder of the keys
///   could), whatever the intro says, and never panics;
/// - as the dialler, the input is the answer: likewise refused;
/// - after a real handshake, the input is a plaintext frame stream (4-byte
///   length, frame, ...) cut into Noise messages at sizes the input picks:
///   the decoder yields exactly the frames the stream holds, in order, stops
///   with an error at a frame over its limit, and never yields one over it.
pub fn noise_handshake(data: &[u8]) {
    use cairn_p2p::transport::{Intro, initiate, respond};
    let intro = Intro {
        protocol_version: cairn_p2p::message::PROTOCOL_VERSION,
        genesis: dev().genesis_hash,
    };
    let (ka, kb) = noise_keys();
    runtime().block_on(async {
        let mut s = tokio::io::join(data, tokio::io::sink());
        let r = respond(&mut s, kb, intro).await;
        assert!(
            r.is_err(),
            "fuzzed bytes completed a handshake as the dialler"
        );
        let mut s = tokio::io::join(data, tokio::io::sink());
        let r = initiate(&mut s, ka, intro, None).await;
        assert!(
            r.is_err(),
            "fuzzed bytes completed a handshake as the listener"
        );

        let (mut enc, mut dec) = noise_pair(intro).await;
        const LIMIT: usize = 1000;
        dec.set_limit(LIMIT);
        // the frames the plaintext stream holds, up to the first one over the limit
        let (stream, cuts) = data.split_at(data.len() / 2);
        let mut expected: Vec<Vec<u8>> = Vec::new();
        let mut over = None;
        let mut rest = stream;
        while rest.len() >= 4 {
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if len > LIMIT {
                over = Some(rest[..4].to_vec());
                break;
            }
            if rest.len() < 4 + len {
                break;
            }
            expected.push(rest[4..4 + len].to_vec());
            rest = &rest[4 + len..];
        }
        // each frame starts a Noise message that holds at least its length;
        // the rest is cut into messages of 1..=256 bytes, as the input picks
        let mut wire = BytesMut::new();
        let mut sizes = cuts.iter().cycle();
        for frame in &expected {
            let mut plain = (frame.len() as u32).to_be_bytes().to_vec();
            plain.extend_from_slice(frame);
            let mut at = 0;
            while at < plain.len() {
                let size = sizes.next().map_or(plain.len(), |s| usize::from(*s) + 1);
                let end = (at + size.max(if at == 0 { 4 } else { 1 })).min(plain.len());
                enc.seal_message(&plain[at..end], &mut wire)
                    .expect("a chunk under the Noise limit");
                at = end;
            }
        }
        if let Some(header) = &over {
            enc.seal_message(header, &mut wire).expect("four bytes");
        }
        let mut got = Vec::new();
        let mut failed = false;
        loop {
            match tokio_util::codec::Decoder::decode(&mut dec, &mut wire) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= LIMIT, "a frame over the limit got through");
                    got.push(frame.to_vec());
                }
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert_eq!(got, expected, "the frames decrypted are the frames sent");
        assert_eq!(
            failed,
            over.is_some(),
            "an error exactly at a frame over the limit"
        );

        // misaligned messages (a peer that cuts frames its own way): any
        // outcome but a panic or a frame over the limit
        let (mut enc, mut dec) = noise_pair(intro).await;
        dec.set_limit(LIMIT);
        let mut wire = BytesMut::new();
        for chunk in data.chunks(97) {
            enc.seal_message(chunk, &mut wire).expect("small chunk");
        }
        while let Ok(Some(frame)) = tokio_util::codec::Decoder::decode(&mut dec, &mut wire) {
            assert!(frame.len() <= LIMIT, "a frame over the limit got through");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_run_on_trivial_inputs() {
        for (_, f) in TARGETS {
            f(b"");
            f(&[0]);
            f(&[0xff; 300]);
        }
    }

    #[test]
    fn builtin_specs_satisfy_the_genesis_properties() {
        genesis_spec(cairn_genesis::DEV_SPEC.as_bytes());
        genesis_spec(cairn_genesis::TESTNET_SPEC.as_bytes());
    }

    #[test]
    fn a_real_transfer_and_block_satisfy_their_properties() {
        use cairn_consensus::testkit::{self, ChainBuilder, address};
        let mut b = ChainBuilder::new(testkit::params(), 1, Amount(cairn_consensus::COIN));
        b.extend(vec![], address(1));
        let block_bytes = b.blocks[1].encode();
        super::block(&block_bytes);
        p2p_message(&Message::block_frame(&block_bytes));
        let key = SigningKey::from_bytes(&[7; 32]);
        let t = cairn_consensus::Transfer {
            chain_id: dev().params.chain_id,
            from: cairn_consensus::transfer::public_key(&key),
            to: address(2),
            amount: Amount(5),
            fee: dev().params.min_fee,
            nonce: 0,
        }
        .sign(&key);
        transfer(&t.encode());
        let mut forged = t;
        forged.signature.0[0] ^= 1;
        transfer(&forged.encode());
    }
}
