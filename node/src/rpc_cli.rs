//! `cairn-node rpc METHOD [PARAMS...]`: call a running node from the
//! command line, as `bitcoin-cli` does, with its cookie; and
//! `cairn-node rpcauth USER`: make a hashed login for `--rpc-auth`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Args, CommandFactory, FromArgMatches};
use jsonrpsee::core::ClientError;
use jsonrpsee::core::client::ClientT;
use jsonrpsee::core::params::ArrayParams;
use serde_json::Value;

use crate::Cli;

#[derive(Args)]
pub struct RpcArgs {
    /// The method, e.g. chain_getInfo (all of them are listed below).
    #[arg(value_name = "METHOD")]
    method: String,

    /// Its parameters in order. Each is read as JSON when it is valid JSON
    /// (3, true, null, [..], {..}, "text") and as a string otherwise, so
    /// addresses and hashes need no quotes.
    #[arg(value_name = "PARAMS", allow_hyphen_values = true)]
    params: Vec<String>,

    /// The node's network, for its default RPC address and datadir.
    #[arg(
        long,
        env = "CAIRN_NETWORK",
        default_value = "dev",
        value_name = "NAME"
    )]
    network: String,

    /// The node's RPC address: http://HOST:PORT or HOST:PORT.
    /// Default: the network's default address on 127.0.0.1.
    #[arg(long, env = "CAIRN_RPC", value_name = "URL")]
    rpc: Option<String>,

    /// The node's datadir, where it writes its cookie. Default: the network's
    /// default datadir.
    #[arg(long, env = "CAIRN_DATADIR", value_name = "DIR")]
    datadir: Option<PathBuf>,

    /// Log in with this user instead of the cookie (with --rpc-password).
    #[arg(
        long,
        env = "CAIRN_RPC_USER",
        value_name = "USER",
        requires = "rpc_password"
    )]
    rpc_user: Option<String>,

    /// The password of --rpc-user.
    #[arg(
        long,
        env = "CAIRN_RPC_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
        requires = "rpc_user"
    )]
    rpc_password: Option<String>,

    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

#[derive(Args)]
pub struct RpcauthArgs {
    /// The user name.
    user: String,
    /// Use the password in this file (first line) instead of a random one.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
}

/// The method list for `cairn-node rpc --help`, from the API declaration.
fn methods_help() -> String {
    let mut out = String::from("Methods (class: read, submit, control, dev):\n");
    for m in cairn_api::method_specs() {
        out.push_str(&format!(
            "  {:<52} {:<7} {}\n",
            m.signature(),
            m.class.as_str(),
            m.summary()
        ));
    }
    out.push_str(
        "\nExamples:\n  cairn-node rpc chain_getInfo\n  cairn-node rpc chain_getBlock 3\n  \
         cairn-node rpc state_getAccount cdev1...\n  cairn-node rpc --network testnet mempool_getInfo\n\n\
         Control and dev methods are refused when the node's RPC is on a public address,\n\
         unless the node runs with --rpc-allow-control; dev methods exist only on dev networks.\n\
         The full description with parameter and result schemas: cairn-node rpc rpc.discover",
    );
    out
}

/// Parses the command line, with the method list in `rpc --help`.
pub fn parse_cli() -> Cli {
    let command = Cli::command().mut_subcommand("rpc", |c| c.after_long_help(methods_help()));
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// A command-line argument as a JSON value: JSON when it parses (except
/// long digit strings, which stay text so hashes are not read as numbers),
/// else a string.
pub fn param_value(arg: &str) -> Value {
    match serde_json::from_str::<Value>(arg) {
        Ok(Value::Number(n)) if arg.len() > 19 => {
            let _ = n;
            Value::String(arg.to_string())
        }
        Ok(v) => v,
        Err(_) => Value::String(arg.to_string()),
    }
}

pub fn run(args: RpcArgs) -> anyhow::Result<()> {
    let (rpc_port, _) = cairn_node::config::default_ports(&args.network);
    let url = match &args.rpc {
        Some(u) if u.contains("://") => u.clone(),
        Some(u) => format!("http://{u}"),
        None => format!("http://127.0.0.1:{rpc_port}"),
    };
    let creds = cairn_api::auth::find_credentials(
        args.rpc_user.as_deref(),
        args.rpc_password.as_deref(),
        args.datadir.as_deref(),
        &args.network,
    );
    let client = cairn_node::client::http_client(
        &url,
        creds.as_ref().ok(),
        Duration::from_secs(args.timeout),
    )
    .map_err(|e| anyhow!(e))?;
    let mut params = ArrayParams::new();
    for p in &args.params {
        params
            .insert(param_value(p))
            .context("cannot encode a parameter")?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result: Result<Value, ClientError> = runtime.block_on(client.request(&args.method, params));
    match result {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
        Err(ClientError::Call(e)) => bail!("{} (code {})", e.message(), e.code()),
        Err(ClientError::Transport(t)) if t.to_string().contains("401") => match creds {
            Err(e) => bail!("the node at {url} wants credentials: {e}"),
            Ok(_) => bail!(
                "the node at {url} refused the credentials (HTTP 401): is --datadir the datadir of the node at {url}?"
            ),
        },
        Err(ClientError::Transport(t)) => bail!(
            "cannot reach the node at {url}: {t}. Is cairn-node running? Give its address with --rpc HOST:PORT"
        ),
        Err(e) => bail!("calling {} at {url} failed: {e}", args.method),
    }
}

pub fn rpcauth(args: RpcauthArgs) -> anyhow::Result<()> {
    if args.user.is_empty() || args.user.contains(':') {
        bail!("the user name must be non-empty and without ':'");
    }
    let (password, generated) = match &args.password_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let first = text.lines().next().unwrap_or("").to_string();
            if first.is_empty() {
                bail!("{} holds no password on its first line", path.display());
            }
            (first, false)
        }
        None => (hex::encode(rand::random::<[u8; 24]>()), true),
    };
    let entry = cairn_node::auth::HashedLogin::create(&args.user, &password);
    println!("Start the node with:\n  --rpc-auth '{entry}'");
    println!("or put it in the config file:\n  rpc-auth = [\"{entry}\"]");
    if generated {
        println!(
            "Clients log in with:\n  --rpc-user {} --rpc-password {password}\n(the password is shown only now; the node stores only its salted hash)",
            args.user
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::param_value;
    use serde_json::json;

    #[test]
    fn arguments_read_as_json_or_text() {
        assert_eq!(param_value("3"), json!(3));
        assert_eq!(param_value("true"), json!(true));
        assert_eq!(param_value("null"), json!(null));
        assert_eq!(param_value("[1,2]"), json!([1, 2]));
        assert_eq!(param_value("cdev1abc"), json!("cdev1abc"));
        assert_eq!(param_value("\"3\""), json!("3"));
        let digits = "1".repeat(64);
        assert_eq!(param_value(&digits), json!(digits));
        assert_eq!(param_value("00ab"), json!("00ab"));
    }
}
