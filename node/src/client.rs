//! JSON-RPC clients of a node, with its credentials: used by `cairn-node
//! rpc`, `cairn-node testnet` and [`crate::service::Running::client`]. The
//! cookie lookup itself is [`cairn_api::auth::find_credentials`].

use std::path::Path;
use std::time::Duration;

use cairn_api::auth::{Credentials, read_cookie};
use jsonrpsee_http_client::{HttpClient, HttpClientBuilder};

/// An HTTP client of `url` sending `creds` (if any).
pub fn http_client(
    url: &str,
    creds: Option<&Credentials>,
    timeout: Duration,
) -> Result<HttpClient, String> {
    let mut headers = http::HeaderMap::new();
    if let Some(c) = creds {
        let value = http::HeaderValue::from_str(&c.header()).map_err(|_| {
            "the RPC credentials contain characters a header cannot carry".to_string()
        })?;
        headers.insert(http::header::AUTHORIZATION, value);
    }
    HttpClientBuilder::default()
        .request_timeout(timeout)
        .set_headers(headers)
        .build(url)
        .map_err(|e| format!("invalid RPC URL {url}: {e}"))
}

/// A client of the node at `url` whose datadir is `datadir` (its cookie).
pub fn client_for_datadir(
    url: &str,
    datadir: &Path,
    timeout: Duration,
) -> Result<HttpClient, String> {
    let creds = read_cookie(datadir).map_err(|e| e.to_string())?;
    http_client(url, Some(&creds), timeout)
}
