//! Writes a seed corpus for every fuzz target into `fuzz/corpus/<target>/`
//! (`make fuzz-seed`): real messages, transfers, blocks, RPC parameters,
//! the built-in genesis specs, a node configuration and a wallet file.
//! The fuzzer starts from these; `cargo fuzz cmin` keeps the corpus small.

use std::path::{Path, PathBuf};

use cairn_consensus::testkit::{ChainBuilder, address};
use cairn_consensus::{Amount, BlockHash, COIN, TxId};
use cairn_genesis::Network;
use cairn_p2p::message::{Hello, Message, NetAddr, Reject, RejectCode};

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("create corpus folder");
    std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
}

fn framed(messages: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        let body = m.encode();
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
    }
    out
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let dev = Network::builtin("dev").expect("dev");

    // a short chain with transfers on the dev network's parameters
    let mut chain = ChainBuilder::new(dev.params.clone(), 4, Amount(100 * COIN));
    chain.extend(vec![], address(1));
    let t1 = chain.transfer(0, address(2), Amount(5), dev.params.min_fee, 0);
    let t2 = chain.transfer(1, address(3), Amount(7), dev.params.min_fee, 0);
    let t3 = chain.transfer(0, address(3), Amount(9), dev.params.min_fee, 1);
    let block = chain.extend(vec![t1, t2, t3], address(1));

    let dir = root.join("transfer");
    for (i, t) in [t1, t2, t3].iter().enumerate() {
        write(&dir, &format!("t{i}"), &t.encode());
    }

    let dir = root.join("block");
    write(&dir, "empty", &chain.blocks[1].encode());
    write(&dir, "three-transfers", &block.encode());

    let hello = Message::Hello(Hello {
        protocol_version: cairn_p2p::message::PROTOCOL_VERSION,
        network: "dev".into(),
        genesis: dev.genesis_hash,
        best_height: 2,
        best_hash: block.hash(),
        best_work: cairn_consensus::Work::default(),
        listen_port: Some(7541),
        user_agent: "cairn-node/0.1.0".into(),
    });
    let messages = vec![
        hello.clone(),
        Message::Welcome,
        Message::Reject(Reject {
            code: RejectCode::WrongNetwork,
            reason: "other genesis".into(),
        }),
        Message::Ping(1),
        Message::Pong(1),
        Message::GetAddrs,
        Message::Addrs(vec![NetAddr::from(
            "127.0.0.1:7541"
                .parse::<std::net::SocketAddr>()
                .expect("addr"),
        )]),
        Message::GetHeaders(vec![dev.genesis_hash]),
        Message::Headers(vec![chain.blocks[1].header, block.header]),
        Message::NewHeaders(vec![block.header]),
        Message::GetBlocks(vec![block.hash()]),
        Message::Block(Box::new(block.clone())),
        Message::NotFound(vec![BlockHash([3; 32])]),
        Message::InvTxs(vec![t1.id()]),
        Message::GetTxs(vec![TxId([9; 32])]),
        Message::Txs(vec![t1, t2]),
    ];
    let dir = root.join("p2p_message");
    for m in &messages {
        write(&dir, m.kind(), &m.encode());
    }
    write(
        &dir,
        "stream",
        &framed(&[hello, Message::Welcome, Message::Txs(vec![t3])]),
    );

    let dir = root.join("rpc_params");
    let addr = address(2).encode(&dev.params.address_prefix);
    let specs = cairn_api::method_specs();
    let pick = |name: &str| {
        specs
            .iter()
            .position(|s| s.name == name)
            .unwrap_or_else(|| panic!("no method {name}")) as u8
    };
    let calls: Vec<(&str, String)> = vec![
        ("chain_getBlock", "[12]".into()),
        ("chain_getBlock", format!("[\"{}\"]", block.hash())),
        ("chain_getTransaction", format!("[\"{}\"]", t1.id())),
        ("state_getAccount", format!("[\"{addr}\"]")),
        ("state_getHistory", format!("[\"{addr}\", 10, 5]")),
        ("tx_submit", format!("[\"{}\"]", hex::encode(t1.encode()))),
        ("mining_generate", format!("[3, \"{addr}\"]")),
        ("net_disconnectPeer", "[\"127.0.0.1:7541\"]".into()),
        ("net_disconnectPeer", "[7]".into()),
        (
            "net_setLink",
            "[\"127.0.0.1:7541\", {\"drop\": false, \"delay_ms\": 50, \"loss\": 0.25}]".into(),
        ),
        ("net_setBan", "[\"10.0.0.0/8\", 60]".into()),
        ("chain_getInfo", "[]".into()),
    ];
    for (i, (method, params)) in calls.iter().enumerate() {
        let mut bytes = vec![pick(method)];
        bytes.extend_from_slice(params.as_bytes());
        write(&dir, &format!("{i}-{method}"), &bytes);
    }

    let dir = root.join("genesis_spec");
    write(&dir, "dev.toml", cairn_genesis::DEV_SPEC.as_bytes());
    write(&dir, "testnet.toml", cairn_genesis::TESTNET_SPEC.as_bytes());

    let dir = root.join("node_config");
    let config = cairn_node::config::NodeConfig::new("dev", PathBuf::from("/var/lib/cairn"));
    write(
        &dir,
        "defaults.toml",
        toml::to_string(&config).expect("config prints").as_bytes(),
    );
    write(
        &dir,
        "small.toml",
        b"datadir = \"d\"\nrpc_addr = \"127.0.0.1:0\"\np2p_addr = \"[::1]:7541\"\npeers = [\"a:1\"]\n\n[mempool]\nmax_bytes = 1000\n\n[p2p]\nmax_inbound = 3\n",
    );

    let dir = root.join("wallet_file");
    let tmp = std::env::temp_dir().join(format!("cairn-seed-wallet-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut wallet = cairn_wallet::keystore::Wallet::create(
        &tmp,
        cairn_wallet::keystore::WalletNetwork {
            name: "dev".into(),
            address_prefix: dev.params.address_prefix.as_str().into(),
            chain_id: dev.params.chain_id,
            genesis_hash: Some(dev.genesis_hash.to_string()),
        },
        b"password",
        cairn_wallet::keystore::MIN_MEMORY_KIB,
    )
    .expect("create wallet");
    wallet
        .add(cairn_consensus::testkit::key(1), "first".into())
        .expect("add key");
    wallet.save().expect("save wallet");
    write(
        &dir,
        "wallet.json",
        &std::fs::read(&tmp).expect("read wallet"),
    );
    let _ = std::fs::remove_file(&tmp);
    write(
        &dir,
        "plain.json",
        &cairn_wallet::keystore::encode_plain(&wallet.keys).expect("plain"),
    );
    // the encrypted transport: a real dialler's first message (its
    // ephemeral key and the intro), and a plaintext frame stream
    let dir = root.join("noise_handshake");
    let first = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(async {
            use tokio::io::AsyncReadExt;
            let keys =
                cairn_p2p::transport::LocalKeys::new(&cairn_p2p::NodeKey::from_secret([3; 32]));
            let intro = cairn_p2p::transport::Intro {
                protocol_version: cairn_p2p::message::PROTOCOL_VERSION,
                genesis: dev.genesis_hash,
            };
            let (mut a, mut b) = tokio::io::duplex(4096);
            let dial = cairn_p2p::transport::initiate(&mut a, &keys, intro, None);
            let read = async move {
                let len = b.read_u16().await.expect("length");
                let mut msg = vec![0u8; usize::from(len)];
                b.read_exact(&mut msg).await.expect("message");
                let mut out = len.to_be_bytes().to_vec();
                out.extend_from_slice(&msg);
                out
            };
            let (_, first) = tokio::join!(dial, read);
            first
        });
    write(&dir, "first-message", &first);
    let stream = framed(&[Message::Ping(7), Message::Welcome]);
    let mut both = stream.clone();
    both.extend(std::iter::repeat_n(5u8, stream.len()));
    write(&dir, "frames", &both);
    println!("seed corpus written under {}", root.display());
}
