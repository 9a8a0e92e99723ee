//! The block explorer, served by the node at `GET /` on the RPC address:
//! pages rendered on the server from the same code that answers JSON-RPC
//! (so the explorer and the API never disagree), one stylesheet and one
//! small script embedded in the binary, no external service or CDN.
//!
//! Pages: the overview (tip, recent blocks, difficulty and hashrate
//! charts), a block, a transfer, an address, the mempool (each entry ready
//! or waiting for a nonce), peers, and the fork view (reorganisations and
//! side branches). `GET /search?q=` finds a height, block hash, transaction
//! id or address. The script polls `GET /live` and re-renders the page when
//! the tip or the mempool changes, so pages follow new blocks and
//! reorganisations.
//!
//! The explorer is read-only and passes the same Host and Origin guards as
//! JSON-RPC; responses forbid framing and inline scripts
//! (`Content-Security-Policy`). `--no-explorer` turns it off.

use std::sync::Arc;

use cairn_api::{BlockId, BlockView, CairnApiServer, TxStatus};
use cairn_consensus::{Address, Amount, BlockHash, Height, Target, TxId};
use http::{HeaderValue, StatusCode, header};
use jsonrpsee::server::HttpResponse;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::http::{Front, with_type};
use crate::node::Node;
use crate::store::ChainStore;

const CSS: &str = include_str!("explorer.css");
const JS: &str = include_str!("explorer.js");

/// Blocks on the overview.
const RECENT_BLOCKS: u64 = 20;
/// Blocks in the charts.
const CHART_BLOCKS: u64 = 60;
/// History entries per address page.
const HISTORY_PAGE: u32 = 50;

/// Answers a GET for `path` (with `query`).
pub async fn serve(front: &Front, path: &str, query: &str) -> HttpResponse {
    let api = front.api.clone();
    let node = front.node.clone();
    let segments: Vec<&str> = path.trim_matches('/').splitn(2, '/').collect();
    let result = match segments.as_slice() {
        [""] => overview(front).await,
        ["static", "explorer.css"] => return asset("text/css; charset=utf-8", CSS),
        ["static", "explorer.js"] => return asset("text/javascript; charset=utf-8", JS),
        ["live"] => return live(&node),
        ["block", id] => block_page(&node, &api, id).await,
        ["tx", id] => tx_page(&node, &api, id).await,
        ["address", a] => address_page(&node, &api, a, query).await,
        ["mempool"] => mempool_page(&node).await,
        ["peers"] => peers_page(front).await,
        ["forks"] => forks_page(&node).await,
        ["search"] => return search(&node, &api, query).await,
        _ => Err(Page::not_found(format!("no page at {}", clip(path, 80)))),
    };
    let (status, title, body) = match result {
        Ok((title, body)) => (StatusCode::OK, title, body),
        Err(p) => (p.status, p.title.clone(), p.body()),
    };
    page(&node, status, &title, body)
}

/// A page that could not be shown.
struct Page {
    status: StatusCode,
    title: String,
    message: String,
}

impl Page {
    fn not_found(message: impl Into<String>) -> Page {
        Page {
            status: StatusCode::NOT_FOUND,
            title: "Not found".into(),
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> Page {
        Page {
            status: StatusCode::BAD_REQUEST,
            title: "Cannot show that".into(),
            message: message.into(),
        }
    }

    fn body(&self) -> Markup {
        html! {
            h1 { (self.title) }
            p.notice #message { (self.message) }
            p { "Search by block height, block hash, transaction id or address, or go back to the " a href="/" { "overview" } "." }
        }
    }
}

impl From<jsonrpsee::types::ErrorObjectOwned> for Page {
    fn from(e: jsonrpsee::types::ErrorObjectOwned) -> Page {
        if e.code() == cairn_api::codes::NOT_FOUND {
            Page::not_found(e.message().to_string())
        } else {
            Page::bad(e.message().to_string())
        }
    }
}

type PageResult = Result<(String, Markup), Page>;

fn clip(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    let mut r = with_type(StatusCode::OK, content_type, body.as_bytes().to_vec());
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// `GET /live`: what the page script compares to decide to refresh.
fn live(node: &Node) -> HttpResponse {
    let tip = node.tip();
    let mempool = node.with_mempool(|p| p.len());
    let body = serde_json::json!({
        "height": tip.header.height.0,
        "hash": tip.hash,
        "mempool": mempool,
    });
    let mut r = with_type(
        StatusCode::OK,
        "application/json",
        body.to_string().into_bytes(),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn redirect(location: String) -> HttpResponse {
    let mut r = with_type(StatusCode::SEE_OTHER, "text/plain", Vec::new());
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The frame around every page.
fn page(node: &Node, status: StatusCode, title: &str, body: Markup) -> HttpResponse {
    let tip = node.tip();
    let mempool = node.with_mempool(|p| p.len());
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Cairn " (node.network.name) }
                link rel="stylesheet" href="/static/explorer.css";
            }
            body data-tip=(tip.hash) data-mempool=(mempool) {
                header {
                    a.brand href="/" { "Cairn explorer" }
                    span.muted { (node.network.name) }
                    nav {
                        a href="/" { "Overview" }
                        a href="/mempool" { "Mempool" }
                        a href="/peers" { "Peers" }
                        a href="/forks" { "Forks" }
                    }
                    form #search action="/search" method="get" {
                        input #q type="search" name="q" placeholder="height, block hash, transaction id or address" autocomplete="off";
                        button type="submit" { "Search" }
                    }
                }
                main { (body) }
                footer {
                    "Served by this node (cairn-node " (env!("CARGO_PKG_VERSION")) "); pages follow new blocks and reorganisations. "
                    span #live { "live: height " (tip.header.height.0) }
                }
                script src="/static/explorer.js" {}
            }
        }
    };
    let mut r = with_type(
        status,
        "text/html; charset=utf-8",
        doc.into_string().into_bytes(),
    );
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

// ----- formatting -----

fn coins(units: u64) -> String {
    Amount(units).to_coins_string()
}

fn short(h: &str) -> String {
    if h.len() > 16 {
        format!("{}…{}", &h[..10], &h[h.len() - 6..])
    } else {
        h.to_string()
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` of milliseconds since the epoch.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

fn ago(now_ms: u64, then_ms: u64) -> String {
    let s = now_ms.saturating_sub(then_ms) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// A number with a metric suffix: 12.3 k, 4.56 M.
fn si(v: f64) -> String {
    let (d, suffix) = if v >= 1e12 {
        (1e12, " T")
    } else if v >= 1e9 {
        (1e9, " G")
    } else if v >= 1e6 {
        (1e6, " M")
    } else if v >= 1e3 {
        (1e3, " k")
    } else {
        (1.0, "")
    };
    let n = format!("{:.3}", v / d);
    let n = if n.contains('.') {
        n.trim_end_matches('0').trim_end_matches('.')
    } else {
        &n
    };
    format!("{n}{suffix}")
}

fn block_link(hash: &BlockHash) -> Markup {
    let h = hash.to_hex();
    html! { a.hash href={ "/block/" (h) } title=(h) { (short(&h)) } }
}

fn tx_link(id: &TxId) -> Markup {
    let h = id.to_hex();
    html! { a.hash href={ "/tx/" (h) } title=(h) { (short(&h)) } }
}

fn addr_link(a: &str) -> Markup {
    html! { a.hash href={ "/address/" (a) } { (a) } }
}

// ----- pages -----

/// One block's header as the charts need it.
struct Point {
    height: u64,
    time_ms: u64,
    target: Target,
}

fn recent_headers(node: &Node, count: u64) -> Vec<(BlockHash, Point)> {
    node.with_chain(|c| {
        let top = c.height().0;
        let from = top.saturating_sub(count.saturating_sub(1));
        (from..=top)
            .rev()
            .filter_map(|h| {
                let hash = c.hash_at(Height(h))?;
                let e = c.entry(&hash)?;
                Some((
                    hash,
                    Point {
                        height: h,
                        time_ms: e.header.time_ms,
                        target: e.header.target,
                    },
                ))
            })
            .collect()
    })
}

async fn overview(front: &Front) -> PageResult {
    let node = front.node.clone();
    let info = front.api.chain_get_info().await?;
    let mining = front.api.mining_get_info().await?;
    let pool = front.api.mempool_get_info().await?;
    let peers = crate::status::peers(front.p2p.as_ref()).await;
    let n = node.clone();
    let (recent, chart) = tokio::task::spawn_blocking(move || {
        let chart = recent_headers(&n, CHART_BLOCKS);
        let recent: Vec<_> = chart
            .iter()
            .take(RECENT_BLOCKS as usize)
            .map(|(hash, p)| {
                let b = n.store().block(hash).ok().flatten();
                (
                    *hash,
                    p.height,
                    p.time_ms,
                    b.as_ref().map_or(0, |b| b.transfers.len()),
                    b.map(|b| {
                        b.coinbase
                            .recipient
                            .encode(&n.network.params.address_prefix)
                    }),
                )
            })
            .collect();
        (recent, chart)
    })
    .await
    .map_err(|e| Page::bad(e.to_string()))?;
    let now = crate::node::now_ms();
    let tip_time = recent.first().map_or(0, |r| r.2);
    let body = html! {
        h1 { "Overview" }
        div.cards {
            div.card { div.label { "Height" } div.value #tip-height { (info.height) } }
            div.card { div.label { "Best block" } div.value.hash #tip-hash { a href={ "/block/" (info.best_hash) } { (info.best_hash) } } }
            div.card { div.label { "Last block" } div.value { (ago(now, tip_time)) } }
            div.card { div.label { "Difficulty" } div.value { (si(crate::status::difficulty(&node.network.params.pow_limit, &info.target))) } }
            div.card { div.label { "Mempool" } div.value { (pool.count) @if pool.count == 1 { " transfer" } @else { " transfers" } } }
            div.card { div.label { "Peers" } div.value { (peers.len()) } }
            div.card { div.label { "Sync" } div.value { @if info.syncing { span.warn { "syncing" } } @else { span.ok { "synced" } } } }
            div.card { div.label { "This node mines" } div.value { @if mining.mining { (crate::service::format_rate(mining.hashrate)) } @else { "no" } } }
        }
        h2 { "Difficulty and hashrate over the last " (chart.len()) " blocks" }
        div.charts {
            div.chart #chart-difficulty { (line_chart("difficulty", &difficulty_series(&node, &chart))) }
            div.chart #chart-hashrate { (line_chart("estimated hashrate (H/s)", &hashrate_series(&chart))) }
        }
        h2 { "Recent blocks" }
        table #recent-blocks {
            thead { tr { th.num { "height" } th { "hash" } th { "time" } th.num { "transfers" } th { "paid to" } } }
            tbody {
                @for (hash, height, time, txs, miner) in &recent {
                    tr {
                        td.num { a href={ "/block/" (height) } { (height) } }
                        td { (block_link(hash)) }
                        td title=(utc(*time)) { (ago(now, *time)) }
                        td.num { (txs) }
                        td { @if let Some(m) = miner { (addr_link(m)) } }
                    }
                }
            }
        }
    };
    Ok(("Overview".into(), body))
}

fn difficulty_series(node: &Node, chart: &[(BlockHash, Point)]) -> Vec<(u64, f64)> {
    chart
        .iter()
        .rev()
        .map(|(_, p)| {
            (
                p.height,
                crate::status::difficulty(&node.network.params.pow_limit, &p.target),
            )
        })
        .collect()
}

/// Expected hashes of each block over the time since its parent.
fn hashrate_series(chart: &[(BlockHash, Point)]) -> Vec<(u64, f64)> {
    let oldest_first: Vec<&Point> = chart.iter().rev().map(|(_, p)| p).collect();
    oldest_first
        .windows(2)
        .map(|w| {
            let work = crate::metrics::u256_to_f64(&w[1].target.work().to_be_bytes());
            let dt_ms = w[1].time_ms.saturating_sub(w[0].time_ms).max(1);
            (w[1].height, work * 1000.0 / dt_ms as f64)
        })
        .collect()
}

/// A small SVG line chart of `(height, value)` points.
fn line_chart(label: &str, points: &[(u64, f64)]) -> Markup {
    const W: f64 = 560.0;
    const H: f64 = 180.0;
    const PAD_L: f64 = 64.0;
    const PAD_B: f64 = 24.0;
    if points.len() < 2 {
        return html! { p.muted { (label) ": not enough blocks yet" } };
    }
    let (min_x, max_x) = (points[0].0 as f64, points[points.len() - 1].0 as f64);
    let max_y = points.iter().map(|p| p.1).fold(0.0f64, f64::max);
    let max_y = if max_y > 0.0 { max_y * 1.1 } else { 1.0 };
    let span_x = (max_x - min_x).max(1.0);
    let coords: Vec<String> = points
        .iter()
        .map(|(x, y)| {
            let px = PAD_L + (*x as f64 - min_x) / span_x * (W - PAD_L - 8.0);
            let py = (H - PAD_B) - (y / max_y) * (H - PAD_B - 8.0);
            format!("{px:.1},{py:.1}")
        })
        .collect();
    let svg = format!(
        "<svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{label}\">\
         <line class=\"axis\" x1=\"{PAD_L}\" y1=\"{yb}\" x2=\"{W}\" y2=\"{yb}\"/>\
         <line class=\"axis\" x1=\"{PAD_L}\" y1=\"8\" x2=\"{PAD_L}\" y2=\"{yb}\"/>\
         <text x=\"4\" y=\"16\">{top}</text><text x=\"4\" y=\"{yb}\">0</text>\
         <text x=\"{PAD_L}\" y=\"{H}\">{min_x}</text><text x=\"{xr}\" y=\"{H}\" text-anchor=\"end\">{max_x}</text>\
         <polyline class=\"line\" points=\"{pts}\"/></svg>",
        yb = H - PAD_B,
        top = si(max_y),
        xr = W - 4.0,
        pts = coords.join(" "),
    );
    html! {
        div.label.muted { (label) }
        (PreEscaped(svg))
    }
}

async fn block_page(node: &Arc<Node>, api: &crate::rpc::RpcServer, id: &str) -> PageResult {
    let block_id = if !id.is_empty() && id.len() <= 20 && id.chars().all(|c| c.is_ascii_digit()) {
        BlockId::Height(
            id.parse()
                .map_err(|_| Page::bad(format!("{} is not a height", clip(id, 40))))?,
        )
    } else {
        BlockId::Hash(id.parse().map_err(|_| {
            Page::bad(format!(
                "{:?} is neither a height nor a block hash (64 hex characters)",
                clip(id, 80)
            ))
        })?)
    };
    let b: BlockView = api.chain_get_block(block_id).await?;
    let h = &b.header;
    let now = crate::node::now_ms();
    let _ = node;
    let body = html! {
        h1 { "Block " (h.height) }
        dl.fields #block {
            dt { "hash" } dd.hash #block-hash { (b.hash) }
            dt { "status" } dd {
                @if b.in_best_chain {
                    span.badge.ok { "best chain" } " " (b.confirmations) " confirmations"
                } @else {
                    span.badge.warn { "side branch" } " not on the best chain"
                }
            }
            dt { "height" } dd { (h.height) }
            dt { "parent" } dd { (block_link(&h.parent)) }
            dt { "time" } dd { (utc(h.time_ms)) " (" (ago(now, h.time_ms)) ")" }
            dt { "target" } dd.hash { (h.target) }
            dt { "nonce" } dd { (h.nonce) }
            dt { "transaction root" } dd.hash { (h.tx_root) }
            dt { "state root" } dd.hash { (h.state_root) }
            dt { "size" } dd { (b.size) " bytes" }
            dt { "coinbase" } dd { (coins(b.coinbase.amount)) " coins to " (addr_link(&b.coinbase.recipient)) " " span.muted { "(" (tx_link(&b.coinbase.txid)) ")" } }
        }
        @if b.in_best_chain {
            p { a href={ "/block/" (h.height.saturating_sub(1)) } { "← block " (h.height.saturating_sub(1)) } " · " a href={ "/block/" (h.height + 1) } { "block " (h.height + 1) " →" } }
        }
        h2 { (b.transactions.len()) " transfers" }
        (transfers_table(&b.transactions))
    };
    Ok((format!("Block {}", h.height), body))
}

fn transfers_table(txs: &[cairn_api::TransferView]) -> Markup {
    html! {
        @if txs.is_empty() {
            p.muted { "none" }
        } @else {
            table.transfers {
                thead { tr { th { "id" } th { "from" } th { "to" } th.num { "amount" } th.num { "fee" } th.num { "nonce" } } }
                tbody {
                    @for t in txs {
                        tr {
                            td { (tx_link(&t.txid)) }
                            td { (addr_link(&t.from)) }
                            td { (addr_link(&t.to)) }
                            td.num { (coins(t.amount)) }
                            td.num { (coins(t.fee)) }
                            td.num { (t.nonce) }
                        }
                    }
                }
            }
        }
    }
}

async fn tx_page(_node: &Arc<Node>, api: &crate::rpc::RpcServer, id: &str) -> PageResult {
    let txid: TxId = id.parse().map_err(|_| {
        Page::bad(format!(
            "{:?} is not a transaction id (64 hex characters)",
            clip(id, 80)
        ))
    })?;
    let v = api.chain_get_transaction(txid).await?;
    if v.status == TxStatus::Unknown {
        return Err(Page::not_found(format!(
            "transaction {txid} is unknown to this node: not pending, not in the best chain"
        )));
    }
    let body = html! {
        h1 { "Transfer" }
        dl.fields #transfer {
            dt { "id" } dd.hash #txid { (txid) }
            dt { "status" } dd #tx-status {
                @match v.status {
                    TxStatus::Pending => { span.badge.warn { "pending" } " in the mempool, waiting for a block" }
                    TxStatus::Confirmed => {
                        span.badge.ok { "confirmed" } " " (v.confirmations.unwrap_or(0)) " confirmations"
                    }
                    TxStatus::Unknown => { "unknown" }
                }
            }
            @if let (Some(hash), Some(height)) = (v.block_hash, v.height) {
                dt { "block" } dd { a href={ "/block/" (hash) } { (height) } " " (block_link(&hash)) }
            }
            @if let Some(t) = &v.transaction {
                dt { "from" } dd { (addr_link(&t.from)) }
                dt { "to" } dd { (addr_link(&t.to)) }
                dt { "amount" } dd { (coins(t.amount)) " coins" }
                dt { "fee" } dd { (coins(t.fee)) " coins" }
                dt { "nonce" } dd { (t.nonce) }
                dt { "chain id" } dd { (t.chain_id) }
            } @else {
                dt { "kind" } dd { "a block reward (coinbase)" }
            }
        }
    };
    Ok(("Transfer".into(), body))
}

async fn address_page(
    node: &Arc<Node>,
    api: &crate::rpc::RpcServer,
    a: &str,
    query: &str,
) -> PageResult {
    let before = query_param(query, "before").and_then(|b| b.parse::<u64>().ok());
    let account = api.state_get_account(a.to_string()).await?;
    let history = api
        .state_get_history(a.to_string(), Some(HISTORY_PAGE), before)
        .await?;
    let _ = node;
    let body = html! {
        h1 { "Address" }
        dl.fields #account {
            dt { "address" } dd.hash #address { (account.address) }
            dt { "balance" } dd #balance { (coins(account.balance)) " coins" }
            dt { "nonce" } dd { (account.nonce) " transfers sent and mined" }
            dt { "next nonce" } dd { (account.next_nonce) }
            @if account.pending_spend > 0 {
                dt { "pending out" } dd { (coins(account.pending_spend)) " coins" }
            }
        }
        h2 { "History" }
        @if history.entries.is_empty() {
            p.muted { "no transfers yet" }
        } @else {
            table #history {
                thead { tr { th { "when" } th { "" } th { "id" } th { "other side" } th.num { "amount" } th.num { "fee" } } }
                tbody {
                    @for e in &history.entries {
                        tr {
                            td { @match e.height { Some(h) => { a href={ "/block/" (h) } { "block " (h) } }, None => { span.warn { "pending" } } } }
                            td { (direction(e.direction)) }
                            td { (tx_link(&e.txid)) }
                            td { @if let Some(c) = &e.counterparty { (addr_link(c)) } }
                            td.num { (coins(e.amount)) }
                            td.num { @if e.fee > 0 { (coins(e.fee)) } }
                        }
                    }
                }
            }
            @if let Some(next) = history.next_before_height {
                p { a href={ "/address/" (account.address) "?before=" (next) } { "older →" } }
            }
        }
    };
    Ok(("Address".into(), body))
}

fn direction(d: cairn_api::Direction) -> &'static str {
    match d {
        cairn_api::Direction::In => "in",
        cairn_api::Direction::Out => "out",
        cairn_api::Direction::SelfTransfer => "self",
        cairn_api::Direction::Mined => "mined",
    }
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| url_decode(v))
    })
}

/// Decodes `%XX` and `+` of a query value (invalid escapes are kept as text).
fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let pair = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(pair, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn mempool_page(node: &Arc<Node>) -> PageResult {
    let n = node.clone();
    let entries = tokio::task::spawn_blocking(move || crate::rpc::mempool_entries(&n, 500))
        .await
        .map_err(|e| Page::bad(e.to_string()))?;
    let (count, bytes) = node.with_mempool(|p| (p.len(), p.bytes()));
    let now = crate::node::now_ms();
    let body = html! {
        h1 { "Mempool" }
        p #mempool-summary { (count) " pending transfers, " (bytes) " bytes. " span.muted { "Ready ones can go in the next block; waiting ones need an earlier nonce of the same sender first." } }
        @if entries.is_empty() {
            p.muted { "empty" }
        } @else {
            table #mempool {
                thead { tr { th { "id" } th { "state" } th { "from" } th { "to" } th.num { "amount" } th.num { "fee" } th.num { "nonce" } th { "since" } } }
                tbody {
                    @for e in &entries {
                        tr {
                            td { (tx_link(&e.txid)) }
                            td {
                                @match e.waiting_for_nonce {
                                    None => { span.badge.ok { "ready" } }
                                    Some(n) => { span.badge.warn { "waiting for nonce " (n) } }
                                }
                            }
                            td { (addr_link(&e.from)) }
                            td { (addr_link(&e.to)) }
                            td.num { (coins(e.amount)) }
                            td.num { (coins(e.fee)) }
                            td.num { (e.nonce) }
                            td { (ago(now, e.added_ms)) }
                        }
                    }
                }
            }
        }
    };
    Ok(("Mempool".into(), body))
}

async fn peers_page(front: &Front) -> PageResult {
    let peers = crate::status::peers(front.p2p.as_ref()).await;
    let body = html! {
        h1 { "Peers" }
        @if front.p2p.is_none() {
            p.muted { "P2P is off on this node." }
        } @else if peers.is_empty() {
            p.muted { "no peers connected" }
        } @else {
            table #peers {
                thead { tr { th.num { "id" } th { "address" } th { "direction" } th.num { "height" } th.num { "latency" } } }
                tbody {
                    @for p in &peers {
                        tr {
                            td.num { (p.id) }
                            td.hash { (p.address) }
                            td { (p.direction) }
                            td.num { (p.height) }
                            td.num { @match p.latency_ms { Some(ms) => { (ms) " ms" }, None => { span.muted { "-" } } } }
                        }
                    }
                }
            }
        }
    };
    Ok(("Peers".into(), body))
}

async fn forks_page(node: &Arc<Node>) -> PageResult {
    let n = node.clone();
    let (reorgs, side) = tokio::task::spawn_blocking(move || {
        (
            n.forks.reorgs(crate::forks::MAX_REORGS),
            crate::rpc::side_blocks(&n, 100),
        )
    })
    .await
    .map_err(|e| Page::bad(e.to_string()))?;
    let now = crate::node::now_ms();
    let total = node.forks.total_reorgs();
    let body = html! {
        h1 { "Forks" }
        p.muted { "Reorganisations and side branches this node has seen since it started (" (total) " reorganisations)." }
        h2 { "Reorganisations" }
        @if reorgs.is_empty() {
            p.muted #no-reorgs { "none yet" }
        } @else {
            table #reorgs {
                thead { tr { th { "when" } th.num { "depth" } th.num { "joined" } th { "fork point" } th { "old tip" } th { "new tip" } } }
                tbody {
                    @for r in &reorgs {
                        tr.reorg {
                            td title=(utc(r.time_ms)) { (ago(now, r.time_ms)) }
                            td.num { (r.depth) }
                            td.num { (r.connected) }
                            td { (r.fork_height) " " (block_link(&r.fork_point)) }
                            td { (r.old_height) " " (block_link(&r.old_tip)) }
                            td { (r.new_height) " " (block_link(&r.new_tip)) }
                        }
                    }
                }
            }
        }
        h2 { "Blocks off the best chain" }
        @if side.is_empty() {
            p.muted { "none yet" }
        } @else {
            table #side-blocks {
                thead { tr { th.num { "height" } th { "block" } th { "parent" } th { "why" } th { "now" } th { "seen" } } }
                tbody {
                    @for b in &side {
                        tr {
                            td.num { (b.height) }
                            td { (block_link(&b.hash)) }
                            td { (block_link(&b.parent)) }
                            td { @if b.reason == "reorged-out" { "removed by a reorganisation" } @else { "arrived on a side branch" } }
                            td { @if b.in_best_chain { span.badge.ok { "back on the best chain" } } @else { span.badge.warn { "side branch" } } }
                            td { (ago(now, b.seen_ms)) }
                        }
                    }
                }
            }
        }
    };
    Ok(("Forks".into(), body))
}

/// `GET /search?q=`: a height, block hash, transaction id or address.
async fn search(node: &Arc<Node>, api: &crate::rpc::RpcServer, query: &str) -> HttpResponse {
    let q = query_param(query, "q").unwrap_or_default();
    let q = q.trim();
    let fail = |msg: String| {
        page(
            node,
            StatusCode::NOT_FOUND,
            "Not found",
            Page::not_found(msg).body(),
        )
    };
    if q.is_empty() {
        return redirect("/".into());
    }
    if q.len() <= 20 && q.chars().all(|c| c.is_ascii_digit()) {
        return match q.parse::<u64>() {
            Ok(h) if h <= node.tip().header.height.0 => redirect(format!("/block/{h}")),
            _ => fail(format!(
                "there is no block at height {} yet (the tip is at {})",
                clip(q, 20),
                node.tip().header.height.0
            )),
        };
    }
    let hex = q.strip_prefix("0x").unwrap_or(q);
    if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        let lower = hex.to_ascii_lowercase();
        if let Ok(hash) = lower.parse::<BlockHash>()
            && node.with_chain(|c| c.knows(&hash))
        {
            return redirect(format!("/block/{lower}"));
        }
        if let Ok(id) = lower.parse::<TxId>()
            && api
                .chain_get_transaction(id)
                .await
                .is_ok_and(|v| v.status != TxStatus::Unknown)
        {
            return redirect(format!("/tx/{lower}"));
        }
        return fail(format!(
            "no block or transaction {lower} is known to this node"
        ));
    }
    match Address::decode(q, &node.network.params.address_prefix) {
        Ok(a) => redirect(format!(
            "/address/{}",
            a.encode(&node.network.params.address_prefix)
        )),
        Err(cairn_consensus::AddressError::WrongNetwork { .. }) => fail(format!(
            "{} is an address of another network; this node runs {}",
            clip(q, 100),
            node.network.name
        )),
        Err(_) if q.contains('1') && q.len() > 20 => fail(format!(
            "{} is not a valid address (a typo? the checksum does not match)",
            clip(q, 100)
        )),
        Err(_) => fail(format!(
            "nothing matches {:?}: search by block height, block hash, transaction id or address",
            clip(q, 100)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_numbers_read_well() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(si(1234.0), "1.234 k");
        assert_eq!(si(5.0), "5");
        assert_eq!(url_decode("a%20b+c%zz%4"), "a b c%zz%4");
        assert_eq!(
            query_param("x=1&q=cdev1%61", "q").as_deref(),
            Some("cdev1a")
        );
    }
}
