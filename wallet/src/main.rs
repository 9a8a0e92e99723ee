//! `cairn-wallet`: keys, transfers and history from the command line.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use cairn_api::auth::Credentials;
use cairn_api::{CairnApiClient, ChainInfo, Direction, HistoryEntry, TxStatus};
use cairn_consensus::transfer::public_key;
use cairn_consensus::{Address, AddressPrefix, Amount, SignedTransfer, SigningKey, Transfer, TxId};
use cairn_wallet::keystore::{DEFAULT_MEMORY_KIB, MIN_MEMORY_KIB, Wallet, WalletNetwork};
use clap::{Args, Parser, Subcommand};
use jsonrpsee::core::ClientError;
use jsonrpsee_http_client::{HttpClient, HttpClientBuilder};
use serde_json::json;
use zeroize::Zeroizing;

const DEFAULT_RPC: &str = "http://127.0.0.1:7540";
const PASSWORD_ENV: &str = "CAIRN_WALLET_PASSWORD";

#[derive(Parser)]
#[command(
    name = "cairn-wallet",
    version,
    about = "A Cairn wallet: keys encrypted on this machine, transfers signed here and sent to a cairn-node over JSON-RPC.",
    long_about = "A Cairn wallet: keys encrypted on this machine (Argon2id + XChaCha20-Poly1305), \
                  transfers signed here and submitted to a cairn-node over JSON-RPC.\n\n\
                  Amounts are in coins with up to 8 decimals (1.5, 0.00000001).\n\
                  Start with `cairn-wallet new`, then `cairn-wallet balance` and \
                  `cairn-wallet send --to ADDR --amount 1.5`."
)]
struct Cli {
    /// The wallet file. Default: <user data dir>/cairn/wallet.json.
    #[arg(long, global = true, env = "CAIRN_WALLET", value_name = "FILE")]
    wallet: Option<PathBuf>,

    /// The node's JSON-RPC URL (`host:port` alone means http://host:port).
    #[arg(long, global = true, env = "CAIRN_RPC", value_name = "URL", default_value = DEFAULT_RPC)]
    rpc: String,

    /// The node's datadir, where it writes its RPC cookie (.cookie). Default:
    /// the default datadir of the wallet's network (<user data dir>/cairn/<network>).
    #[arg(long, global = true, env = "CAIRN_DATADIR", value_name = "DIR")]
    datadir: Option<PathBuf>,

    /// Log in to the node with this user instead of its cookie (with --rpc-password).
    #[arg(
        long,
        global = true,
        env = "CAIRN_RPC_USER",
        value_name = "USER",
        requires = "rpc_password"
    )]
    rpc_user: Option<String>,

    /// The password of --rpc-user.
    #[arg(
        long,
        global = true,
        env = "CAIRN_RPC_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
        requires = "rpc_user"
    )]
    rpc_password: Option<String>,

    /// Refuse to pay a fee above this many coins, whatever the node asks.
    /// Default: 100 times the network's minimum fee.
    #[arg(long, global = true, env = "CAIRN_MAX_FEE", value_name = "COINS")]
    max_fee: Option<String>,

    /// Read the wallet password from this file (first line) instead of
    /// prompting. The CAIRN_WALLET_PASSWORD variable works too.
    #[arg(long, global = true, env = "CAIRN_PASSWORD_FILE", value_name = "FILE")]
    password_file: Option<PathBuf>,

    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a key (and the wallet, if it does not exist); print its address.
    New(NewArgs),
    /// Add an existing secret key (creating the wallet if needed).
    Import(ImportArgs),
    /// Print a secret key. Anyone who sees it can spend its funds.
    Export {
        /// Which key (default: the first).
        address: Option<String>,
    },
    /// Print the wallet's first address (or the one at --index).
    Address {
        #[arg(long, default_value_t = 0)]
        index: usize,
    },
    /// List every key in the wallet.
    List,
    /// Balances from the node: of ADDRESS, or of every wallet address.
    Balance { address: Option<String> },
    /// Sign a transfer and submit it to the node.
    Send(SendArgs),
    /// Sign a transfer and print it as hex without submitting it.
    Sign(SignArgs),
    /// Submit a signed transfer given as hex.
    Broadcast { hex: String },
    /// Show a transfer's status and confirmations.
    Tx { txid: String },
    /// Transfers in and out of the wallet's addresses (or ADDRESS), newest first.
    History {
        address: Option<String>,
        /// Most entries per address.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Args)]
struct NewArgs {
    /// A label for the key.
    #[arg(long, default_value = "")]
    label: String,
    #[command(flatten)]
    create: CreateArgs,
}

/// How to create the wallet file when it does not exist yet.
#[derive(Args)]
struct CreateArgs {
    /// Create the wallet for this built-in network (dev or testnet) without
    /// asking a node.
    #[arg(long, value_name = "NAME", conflicts_with = "offline")]
    network: Option<String>,
    /// Create the wallet without a node: give the network's address prefix
    /// and chain id.
    #[arg(long, requires_all = ["prefix", "chain_id"])]
    offline: bool,
    /// Address prefix of the network (with --offline), e.g. cdev.
    #[arg(long)]
    prefix: Option<String>,
    /// Chain id of the network (with --offline).
    #[arg(long)]
    chain_id: Option<u64>,
    /// Argon2id memory for a new wallet, MiB (at least 8).
    #[arg(long, default_value_t = DEFAULT_MEMORY_KIB / 1024)]
    kdf_memory_mib: u32,
}

#[derive(Args)]
struct ImportArgs {
    /// A file holding the 64-hex-character secret (default: prompt).
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
    #[arg(long, default_value = "")]
    label: String,
    #[command(flatten)]
    create: CreateArgs,
}

#[derive(Args, Clone)]
struct TransferArgs {
    /// Recipient address.
    #[arg(long)]
    to: String,
    /// Amount in coins, e.g. 1.5.
    #[arg(long)]
    amount: String,
    /// Fee in coins (default: the node's minimum).
    #[arg(long)]
    fee: Option<String>,
    /// Nonce (default: the account's next nonce, counting pending transfers).
    #[arg(long)]
    nonce: Option<u64>,
    /// Sending address (default: the wallet's first).
    #[arg(long)]
    from: Option<String>,
}

#[derive(Args)]
struct SendArgs {
    #[command(flatten)]
    transfer: TransferArgs,
    /// Wait for the first confirmation, showing progress.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

#[derive(Args)]
struct SignArgs {
    #[command(flatten)]
    transfer: TransferArgs,
    /// Sign without a node: needs --nonce, --chain-id and --fee.
    #[arg(long, requires_all = ["chain_id"])]
    offline: bool,
    /// Chain id (with --offline).
    #[arg(long)]
    chain_id: Option<u64>,
}

struct Ctx {
    wallet_path: PathBuf,
    rpc_url: String,
    password_file: Option<PathBuf>,
    json: bool,
    datadir: Option<PathBuf>,
    rpc_user: Option<String>,
    rpc_password: Option<String>,
    max_fee: Option<Amount>,
    /// The password once asked, so a command never asks twice.
    asked: std::cell::RefCell<Option<Zeroizing<String>>>,
    /// Why no credentials were found, for the message if the node says 401.
    auth_problem: std::cell::RefCell<Option<String>>,
}

/// `host:port` becomes `http://host:port`; URLs pass unchanged.
fn normalize_rpc_url(url: &str) -> String {
    let u = url.trim();
    if u.contains("://") {
        u.to_string()
    } else {
        format!("http://{u}")
    }
}

/// The network whose default datadir holds the cookie of the node at
/// `url`, from the default RPC ports (7540 dev, 7640 testnet).
fn network_of_port(url: &str) -> &'static str {
    let port = url
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok());
    match port {
        Some(7640) => "testnet",
        _ => "dev",
    }
}

impl Ctx {
    fn password(&self, confirm: bool) -> anyhow::Result<Zeroizing<String>> {
        if let Some(p) = self.asked.borrow().as_ref() {
            return Ok(p.clone());
        }
        let p = self.ask_password(confirm)?;
        *self.asked.borrow_mut() = Some(p.clone());
        Ok(p)
    }

    fn ask_password(&self, confirm: bool) -> anyhow::Result<Zeroizing<String>> {
        if let Some(path) = &self.password_file {
            let text =
                Zeroizing::new(std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read the password file {}", path.display())
                })?);
            let first = text.lines().next().unwrap_or("");
            return Ok(Zeroizing::new(first.to_string()));
        }
        if let Ok(p) = std::env::var(PASSWORD_ENV) {
            return Ok(Zeroizing::new(p));
        }
        if !std::io::stdin().is_terminal() {
            bail!(
                "no password: pass --password-file FILE or set {PASSWORD_ENV} (stdin is not a terminal, so there is no prompt)"
            );
        }
        let p = Zeroizing::new(rpassword::prompt_password("Wallet password: ")?);
        if confirm {
            let again = Zeroizing::new(rpassword::prompt_password("Repeat the password: ")?);
            if *again != *p {
                bail!("the passwords differ; nothing was created");
            }
        }
        Ok(p)
    }

    fn open(&self) -> anyhow::Result<Wallet> {
        if !self.wallet_path.exists() {
            bail!(
                "wallet file {} does not exist; create it with `cairn-wallet new`",
                self.wallet_path.display()
            );
        }
        let password = self.password(false)?;
        Ok(Wallet::open(&self.wallet_path, password.as_bytes())?)
    }

    /// The node's credentials: --rpc-user/--rpc-password, else its cookie.
    fn credentials(&self, network: &str) -> Result<Credentials, cairn_api::auth::AuthError> {
        cairn_api::auth::find_credentials(
            self.rpc_user.as_deref(),
            self.rpc_password.as_deref(),
            self.datadir.as_deref(),
            network,
        )
    }

    fn client(&self) -> anyhow::Result<HttpClient> {
        self.client_for(network_of_port(&self.rpc_url))
    }

    /// A client sending the credentials of a `network` node. Without
    /// credentials the calls are still tried: an unreachable node is then
    /// reported as such, and a refusal (401) names the missing cookie.
    fn client_for(&self, network: &str) -> anyhow::Result<HttpClient> {
        let mut headers = http::HeaderMap::new();
        match self.credentials(network) {
            Ok(c) => {
                let v = http::HeaderValue::from_str(&c.header()).map_err(|_| {
                    anyhow!("--rpc-user/--rpc-password contain characters a header cannot carry")
                })?;
                headers.insert(http::header::AUTHORIZATION, v);
            }
            Err(e) => *self.auth_problem.borrow_mut() = Some(e.to_string()),
        }
        HttpClientBuilder::default()
            .request_timeout(Duration::from_secs(60))
            .set_headers(headers)
            .build(&self.rpc_url)
            .map_err(|e| {
                anyhow!(
                    "invalid --rpc URL {}: {e} (give http://HOST:PORT or HOST:PORT)",
                    self.rpc_url
                )
            })
    }

    /// Turns a client error into a message that says what to do.
    fn rpc_error(&self, e: ClientError) -> anyhow::Error {
        match e {
            ClientError::Call(obj) => {
                anyhow!("the node refused: {} (code {})", obj.message(), obj.code())
            }
            ClientError::Transport(t) if t.to_string().contains("401") => anyhow!(
                "the node at {} refused the wallet's credentials (HTTP 401). {}",
                self.rpc_url,
                self.auth_problem.borrow().clone().unwrap_or_else(|| {
                    "The cookie it was sent is stale or another node's: point --datadir (or CAIRN_DATADIR) at the datadir of the node behind --rpc, or pass --rpc-user and --rpc-password".into()
                })
            ),
            ClientError::Transport(t) => anyhow!(
                "cannot reach the node at {}: {t}. Is cairn-node running there? Choose another node with --rpc URL",
                self.rpc_url
            ),
            ClientError::RequestTimeout => {
                anyhow!("the node at {} did not answer in time", self.rpc_url)
            }
            other => anyhow!("talking to the node at {} failed: {other}", self.rpc_url),
        }
    }

    /// The node's network, checked against the wallet's.
    async fn node_for(&self, wallet: &Wallet) -> anyhow::Result<(HttpClient, ChainInfo)> {
        let client = self.client_for(&wallet.network.name)?;
        let info = client
            .chain_get_info()
            .await
            .map_err(|e| self.rpc_error(e))?;
        let n = &wallet.network;
        let genesis_differs = n
            .genesis_hash
            .as_ref()
            .is_some_and(|g| *g != info.genesis_hash.to_hex());
        if info.address_prefix != n.address_prefix || info.chain_id != n.chain_id || genesis_differs
        {
            bail!(
                "the node at {} is on network {:?} (chain id {}, addresses {}1...), but this wallet's keys are for {:?} (chain id {}, addresses {}1...); nothing was sent. Use --rpc to reach a {} node",
                self.rpc_url,
                info.network,
                info.chain_id,
                info.address_prefix,
                n.name,
                n.chain_id,
                n.address_prefix,
                n.name
            );
        }
        Ok((client, info))
    }

    fn print(&self, value: serde_json::Value, human: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            println!("{}", human());
        }
    }
}

impl Ctx {
    /// Refuses a fee above --max-fee, or above 100 times the network's
    /// minimum when no --max-fee is given.
    fn check_fee(&self, fee: Amount, network_min: u64) -> anyhow::Result<()> {
        let (max, source) = match self.max_fee {
            Some(m) => (m, "--max-fee".to_string()),
            None => (
                Amount(network_min.saturating_mul(DEFAULT_MAX_FEE_FACTOR)),
                format!(
                    "the default cap ({DEFAULT_MAX_FEE_FACTOR} x the network minimum {})",
                    coins(network_min)
                ),
            ),
        };
        if fee > max {
            bail!(
                "fee {} is above {source}, {}; nothing was sent. If you mean it, pass --max-fee {}",
                coins(fee.0),
                coins(max.0),
                coins(fee.0)
            );
        }
        Ok(())
    }
}

/// The default fee cap, in multiples of the network's minimum fee.
const DEFAULT_MAX_FEE_FACTOR: u64 = 100;

fn coins(units: u64) -> String {
    Amount(units).to_coins_string()
}

fn parse_coins(what: &str, s: &str) -> anyhow::Result<Amount> {
    Amount::parse_coins(s).map_err(|e| anyhow!("{what}: {e}"))
}

fn parse_address(wallet: &Wallet, what: &str, s: &str) -> anyhow::Result<Address> {
    Address::decode(s, &wallet.prefix()).map_err(|e| anyhow!("{what}: {e}; nothing was sent"))
}

fn choose_key<'a>(
    wallet: &'a Wallet,
    from: Option<&str>,
) -> anyhow::Result<&'a cairn_wallet::keystore::WalletKey> {
    match from {
        Some(s) => {
            let a = parse_address(wallet, "--from", s)?;
            wallet
                .key_for(&a)
                .ok_or_else(|| anyhow!("the wallet holds no key for {s}"))
        }
        None => wallet
            .keys
            .first()
            .ok_or_else(|| anyhow!("the wallet has no keys; add one with `cairn-wallet new`")),
    }
}

/// Builds and signs a transfer, checking it against the node unless offline.
async fn build_transfer(
    ctx: &Ctx,
    wallet: &Wallet,
    args: &TransferArgs,
    offline_chain_id: Option<u64>,
) -> anyhow::Result<SignedTransfer> {
    let key = choose_key(wallet, args.from.as_deref())?;
    let to = parse_address(wallet, "--to", &args.to)?;
    let amount = parse_coins("--amount", &args.amount)?;
    if amount == Amount::ZERO {
        bail!("--amount must be above zero");
    }
    let fee = args
        .fee
        .as_deref()
        .map(|f| parse_coins("--fee", f))
        .transpose()?;
    let (chain_id, nonce, fee) = match offline_chain_id {
        Some(chain_id) => {
            if chain_id != wallet.network.chain_id {
                bail!(
                    "--chain-id {chain_id} differs from this wallet's network {:?} (chain id {})",
                    wallet.network.name,
                    wallet.network.chain_id
                );
            }
            let nonce = args
                .nonce
                .ok_or_else(|| anyhow!("--offline needs --nonce N"))?;
            let fee = fee.ok_or_else(|| {
                anyhow!("--offline needs --fee (the node's minimum is unknown offline)")
            })?;
            if let Some(max) = ctx.max_fee
                && fee > max
            {
                bail!(
                    "fee {} is above --max-fee {}; nothing was signed",
                    coins(fee.0),
                    coins(max.0)
                );
            }
            (chain_id, nonce, fee)
        }
        None => {
            let (client, info) = ctx.node_for(wallet).await?;
            let from = key.address().encode(&wallet.prefix());
            let account = client
                .state_get_account(from.clone())
                .await
                .map_err(|e| ctx.rpc_error(e))?;
            let pool = client
                .mempool_get_info()
                .await
                .map_err(|e| ctx.rpc_error(e))?;
            let fee = fee.unwrap_or(Amount(pool.min_fee));
            if fee.0 < pool.min_fee {
                bail!(
                    "fee {} is below the node's minimum {}; nothing was sent",
                    coins(fee.0),
                    coins(pool.min_fee)
                );
            }
            // the network's minimum, not the node's quote: a node cannot raise the cap
            let network_min = if info.min_fee > 0 {
                info.min_fee
            } else {
                pool.min_fee
            };
            ctx.check_fee(fee, network_min)?;
            let cost = amount
                .checked_add(fee)
                .ok_or_else(|| anyhow!("amount plus fee overflows"))?;
            let available = account.balance.saturating_sub(account.pending_spend);
            if cost.0 > available {
                bail!(
                    "{from} has {} available ({} balance, {} pending), but this transfer needs {} ({} plus fee {}); nothing was sent",
                    coins(available),
                    coins(account.balance),
                    coins(account.pending_spend),
                    coins(cost.0),
                    coins(amount.0),
                    coins(fee.0)
                );
            }
            (info.chain_id, args.nonce.unwrap_or(account.next_nonce), fee)
        }
    };
    Ok(Transfer {
        chain_id,
        from: public_key(&key.key),
        to,
        amount,
        fee,
        nonce,
    }
    .sign(&key.key))
}

async fn wait_for_confirmation(
    ctx: &Ctx,
    client: &HttpClient,
    txid: TxId,
    timeout: Duration,
) -> anyhow::Result<(u64, String)> {
    let bar = if std::io::stderr().is_terminal() && !ctx.json {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(Duration::from_millis(120));
        Some(b)
    } else {
        None
    };
    let started = Instant::now();
    let result = loop {
        let tx = client
            .chain_get_transaction(txid)
            .await
            .map_err(|e| ctx.rpc_error(e))?;
        let height = client
            .chain_get_info()
            .await
            .map_err(|e| ctx.rpc_error(e))?
            .height;
        match tx.status {
            TxStatus::Confirmed => {
                break Ok((
                    tx.height.unwrap_or_default(),
                    tx.block_hash.map(|h| h.to_hex()).unwrap_or_default(),
                ));
            }
            TxStatus::Unknown => {
                break Err(anyhow!(
                    "transfer {txid} left the mempool without being mined (replaced, expired or invalidated by a reorganisation)"
                ));
            }
            TxStatus::Pending => {
                if let Some(b) = &bar {
                    b.set_message(format!(
                        "waiting for a block: pending for {}s, chain height {height}",
                        started.elapsed().as_secs()
                    ));
                }
            }
        }
        if started.elapsed() > timeout {
            break Err(anyhow!(
                "transfer {txid} is still pending after {}s",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    result
}

fn direction_word(d: Direction) -> &'static str {
    match d {
        Direction::In => "in",
        Direction::Out => "out",
        Direction::SelfTransfer => "self",
        Direction::Mined => "mined",
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Ctx {
        wallet_path: cli.wallet.clone().unwrap_or_else(|| {
            dirs::data_dir()
                .unwrap_or_else(|| PathBuf::from("."))
                .join("cairn")
                .join("wallet.json")
        }),
        rpc_url: normalize_rpc_url(&cli.rpc),
        password_file: cli.password_file.clone(),
        json: cli.json,
        datadir: cli.datadir.clone(),
        rpc_user: cli.rpc_user.clone(),
        rpc_password: cli.rpc_password.clone(),
        max_fee: cli
            .max_fee
            .as_deref()
            .map(|f| parse_coins("--max-fee", f))
            .transpose()?,
        asked: std::cell::RefCell::new(None),
        auth_problem: std::cell::RefCell::new(None),
    };
    match cli.command {
        Cmd::New(args) => cmd_new(&ctx, args).await,
        Cmd::Import(args) => cmd_import(&ctx, args).await,
        Cmd::Export { address } => {
            let wallet = ctx.open()?;
            let key = choose_key(&wallet, address.as_deref())?;
            let addr = key.address().encode(&wallet.prefix());
            eprintln!(
                "WARNING: this is the secret key of {addr}. Anyone who sees it can spend everything it holds. Do not paste it anywhere you do not trust."
            );
            let secret = Zeroizing::new(hex::encode(key.key.to_bytes()));
            ctx.print(json!({"address": addr, "secret": secret.as_str()}), || {
                secret.to_string()
            });
            Ok(())
        }
        Cmd::Address { index } => {
            let wallet = ctx.open()?;
            let key = wallet.keys.get(index).ok_or_else(|| {
                anyhow!(
                    "the wallet has {} keys; there is no index {index}",
                    wallet.keys.len()
                )
            })?;
            let addr = key.address().encode(&wallet.prefix());
            ctx.print(json!({"address": addr}), || addr.clone());
            Ok(())
        }
        Cmd::List => {
            let wallet = ctx.open()?;
            let prefix = wallet.prefix();
            let items: Vec<_> = wallet
                .keys
                .iter()
                .enumerate()
                .map(|(i, k)| json!({"index": i, "address": k.address().encode(&prefix), "label": k.label}))
                .collect();
            ctx.print(
                json!({"network": wallet.network.name, "keys": items}),
                || {
                    let mut out = format!(
                        "{} keys for network {}",
                        wallet.keys.len(),
                        wallet.network.name
                    );
                    for (i, k) in wallet.keys.iter().enumerate() {
                        out.push_str(&format!(
                            "\n  ({i}) {}  {}",
                            k.address().encode(&prefix),
                            k.label
                        ));
                    }
                    out
                },
            );
            Ok(())
        }
        Cmd::Balance { address } => cmd_balance(&ctx, address).await,
        Cmd::Send(args) => {
            let wallet = ctx.open()?;
            let tx = build_transfer(&ctx, &wallet, &args.transfer, None).await?;
            let client = ctx.client()?;
            let txid = client
                .tx_submit(hex::encode(tx.encode()))
                .await
                .map_err(|e| ctx.rpc_error(e))?;
            if !args.wait {
                ctx.print(json!({"txid": txid}), || {
                    format!(
                        "sent {} to {} (fee {}, nonce {})\ntxid {txid}",
                        coins(tx.transfer.amount.0),
                        args.transfer.to,
                        coins(tx.transfer.fee.0),
                        tx.transfer.nonce
                    )
                });
                return Ok(());
            }
            if !ctx.json {
                eprintln!("sent, txid {txid}; waiting for a block");
            }
            let (height, block) =
                wait_for_confirmation(&ctx, &client, txid, Duration::from_secs(args.timeout))
                    .await?;
            ctx.print(
                json!({"txid": txid, "status": "confirmed", "height": height, "block_hash": block}),
                || format!("txid {txid}\nconfirmed in block {height} ({block})"),
            );
            Ok(())
        }
        Cmd::Sign(args) => {
            let wallet = ctx.open()?;
            let chain_id = if args.offline { args.chain_id } else { None };
            let tx = build_transfer(&ctx, &wallet, &args.transfer, chain_id).await?;
            let hex = hex::encode(tx.encode());
            ctx.print(json!({"txid": tx.id(), "hex": hex}), || hex.clone());
            Ok(())
        }
        Cmd::Broadcast { hex } => {
            let client = ctx.client()?;
            let txid = client
                .tx_submit(hex.trim().to_string())
                .await
                .map_err(|e| ctx.rpc_error(e))?;
            ctx.print(json!({"txid": txid}), || format!("txid {txid}"));
            Ok(())
        }
        Cmd::Tx { txid } => {
            let id: TxId = txid.parse().map_err(|e| {
                anyhow!("{txid:?} is not a transaction id (64 hex characters): {e}")
            })?;
            let client = ctx.client()?;
            let view = client
                .chain_get_transaction(id)
                .await
                .map_err(|e| ctx.rpc_error(e))?;
            let value = serde_json::to_value(&view)?;
            ctx.print(value, || {
                let mut out = match view.status {
                    TxStatus::Pending => {
                        format!("{id}: pending (in the mempool, not yet in a block)")
                    }
                    TxStatus::Confirmed => format!(
                        "{id}: confirmed in block {} at height {} ({} confirmations)",
                        view.block_hash.map(|h| h.to_hex()).unwrap_or_default(),
                        view.height.unwrap_or_default(),
                        view.confirmations.unwrap_or_default()
                    ),
                    TxStatus::Unknown => {
                        format!("{id}: unknown to this node (not pending, not in the best chain)")
                    }
                };
                if let Some(t) = &view.transaction {
                    out.push_str(&format!(
                        "\n  {} -> {}  amount {}  fee {}  nonce {}",
                        t.from,
                        t.to,
                        coins(t.amount),
                        coins(t.fee),
                        t.nonce
                    ));
                }
                out
            });
            if view.status == TxStatus::Unknown {
                bail!("transaction {id} is unknown to the node at {}", ctx.rpc_url);
            }
            Ok(())
        }
        Cmd::History { address, limit } => cmd_history(&ctx, address, limit).await,
    }
}

/// Opens the wallet, or creates it (asking the node for its network
/// unless offline). Returns whether it was created.
async fn open_or_create(ctx: &Ctx, args: &CreateArgs) -> anyhow::Result<(Wallet, bool)> {
    if ctx.wallet_path.exists() {
        return Ok((ctx.open()?, false));
    }
    let network = if let Some(name) = &args.network {
        let n = cairn_genesis::Network::builtin(name).map_err(|e| anyhow!("--network: {e}"))?;
        WalletNetwork {
            name: n.name.clone(),
            address_prefix: n.params.address_prefix.to_string(),
            chain_id: n.params.chain_id,
            genesis_hash: Some(n.genesis_hash.to_hex()),
        }
    } else if args.offline {
        let prefix = args.prefix.clone().unwrap_or_default();
        AddressPrefix::new(&prefix).map_err(|e| anyhow!("--prefix: {e}"))?;
        WalletNetwork {
            name: prefix.clone(),
            address_prefix: prefix,
            chain_id: args.chain_id.unwrap_or_default(),
            genesis_hash: None,
        }
    } else {
        let client = ctx.client()?;
        let info = client.chain_get_info().await.map_err(|e| {
            anyhow!(
                "{}\n(to create a wallet without a node, use --network dev|testnet, or --offline --prefix P --chain-id N for another network)",
                ctx.rpc_error(e)
            )
        })?;
        WalletNetwork {
            name: info.network,
            address_prefix: info.address_prefix,
            chain_id: info.chain_id,
            genesis_hash: Some(info.genesis_hash.to_hex()),
        }
    };
    if args.kdf_memory_mib.saturating_mul(1024) < MIN_MEMORY_KIB {
        bail!(
            "--kdf-memory-mib must be at least {}",
            MIN_MEMORY_KIB / 1024
        );
    }
    let password = ctx.password(true)?;
    let wallet = Wallet::create(
        &ctx.wallet_path,
        network,
        password.as_bytes(),
        args.kdf_memory_mib * 1024,
    )?;
    if !ctx.json {
        eprintln!(
            "creating wallet {} for network {} (keys encrypted with your password; keep a backup of the file and the password)",
            ctx.wallet_path.display(),
            wallet.network.name
        );
    }
    Ok((wallet, true))
}

async fn cmd_new(ctx: &Ctx, args: NewArgs) -> anyhow::Result<()> {
    let (mut wallet, _) = open_or_create(ctx, &args.create).await?;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let address = wallet.add(key, args.label)?;
    wallet.save()?;
    let text = address.encode(&wallet.prefix());
    ctx.print(json!({"address": text}), || text.clone());
    Ok(())
}

fn read_secret(path: Option<&Path>) -> anyhow::Result<Zeroizing<String>> {
    let raw = match path {
        Some(p) => Zeroizing::new(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the secret file {}", p.display()))?,
        ),
        None => {
            if !std::io::stdin().is_terminal() {
                bail!(
                    "no secret: pass --secret-file FILE (stdin is not a terminal, so there is no prompt)"
                );
            }
            Zeroizing::new(rpassword::prompt_password(
                "Secret key (64 hex characters): ",
            )?)
        }
    };
    Ok(Zeroizing::new(raw.trim().to_string()))
}

async fn cmd_import(ctx: &Ctx, args: ImportArgs) -> anyhow::Result<()> {
    let secret = read_secret(args.secret_file.as_deref())?;
    let mut bytes = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(secret.as_str(), bytes.as_mut())
        .map_err(|_| anyhow!("the secret must be 64 hex characters (32 bytes)"))?;
    let (mut wallet, _) = open_or_create(ctx, &args.create).await?;
    let address = wallet.add(SigningKey::from_bytes(&bytes), args.label)?;
    wallet.save()?;
    let text = address.encode(&wallet.prefix());
    eprintln!(
        "WARNING: imported key {text}. Anyone who has ever seen this secret can spend its funds; move them to a fresh key (`cairn-wallet new`) if in doubt."
    );
    ctx.print(json!({"address": text}), || text.clone());
    Ok(())
}

async fn cmd_balance(ctx: &Ctx, address: Option<String>) -> anyhow::Result<()> {
    let wallet = ctx.open()?;
    let prefix = wallet.prefix();
    let addresses: Vec<Address> = match &address {
        Some(a) => vec![parse_address(&wallet, "address", a)?],
        None => wallet.keys.iter().map(|k| k.address()).collect(),
    };
    let (client, info) = ctx.node_for(&wallet).await?;
    let mut rows = Vec::new();
    let mut total = 0u64;
    for a in &addresses {
        let acc = client
            .state_get_account(a.encode(&prefix))
            .await
            .map_err(|e| ctx.rpc_error(e))?;
        total = total.saturating_add(acc.balance);
        rows.push(acc);
    }
    let json_rows: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({"address": r.address, "balance": r.balance, "balance_coins": coins(r.balance),
                   "pending_spend": r.pending_spend, "nonce": r.nonce, "next_nonce": r.next_nonce})
        })
        .collect();
    ctx.print(json!({"height": info.height, "accounts": json_rows, "total": total, "total_coins": coins(total)}), || {
        let mut out = String::new();
        for r in &rows {
            out.push_str(&format!("{}  {} coins", r.address, coins(r.balance)));
            if r.pending_spend > 0 {
                out.push_str(&format!(" ({} pending out)", coins(r.pending_spend)));
            }
            out.push('\n');
        }
        if rows.len() > 1 {
            out.push_str(&format!("total  {} coins\n", coins(total)));
        }
        out.push_str(&format!("at height {}", info.height));
        out
    });
    Ok(())
}

async fn cmd_history(ctx: &Ctx, address: Option<String>, limit: u32) -> anyhow::Result<()> {
    let wallet = ctx.open()?;
    let prefix = wallet.prefix();
    let addresses: Vec<String> = match &address {
        Some(a) => vec![parse_address(&wallet, "address", a)?.encode(&prefix)],
        None => wallet
            .keys
            .iter()
            .map(|k| k.address().encode(&prefix))
            .collect(),
    };
    let (client, _) = ctx.node_for(&wallet).await?;
    let mut entries: Vec<(String, HistoryEntry)> = Vec::new();
    for a in &addresses {
        let page = client
            .state_get_history(a.clone(), Some(limit), None)
            .await
            .map_err(|e| ctx.rpc_error(e))?;
        entries.extend(page.entries.into_iter().map(|e| (a.clone(), e)));
    }
    // newest first: pending, then by height
    entries.sort_by_key(|(_, e)| std::cmp::Reverse(e.height.unwrap_or(u64::MAX)));
    let value = serde_json::to_value(
        entries
            .iter()
            .map(|(a, e)| {
                let mut v = serde_json::to_value(e).unwrap_or_default();
                v["address"] = json!(a);
                v
            })
            .collect::<Vec<_>>(),
    )?;
    ctx.print(json!({"entries": value}), || {
        if entries.is_empty() {
            return "no transfers yet".into();
        }
        let mut out = String::new();
        for (a, e) in &entries {
            let when = match e.height {
                Some(h) => format!("block {h:>7}"),
                None => "pending      ".to_string(),
            };
            let sign = match e.direction {
                Direction::In | Direction::Mined => "+",
                Direction::Out => "-",
                Direction::SelfTransfer => " ",
            };
            let other = e.counterparty.clone().unwrap_or_default();
            let fee =
                if e.fee > 0 && matches!(e.direction, Direction::Out | Direction::SelfTransfer) {
                    format!(" (fee {})", coins(e.fee))
                } else {
                    String::new()
                };
            out.push_str(&format!(
                "{when}  {:<5} {sign}{} coins{fee}  {}{}  {}\n",
                direction_word(e.direction),
                coins(e.amount),
                if other.is_empty() {
                    String::new()
                } else {
                    format!("{} ", other)
                },
                if addresses.len() > 1 {
                    format!("[{a}]")
                } else {
                    String::new()
                },
                e.txid
            ));
        }
        out.trim_end().to_string()
    });
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
