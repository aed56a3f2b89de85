//! The Helius client: the DAS holder snapshot (`getTokenAccounts` by mint, cursor-paginated with
//! no cap, aggregated per owner, exclusions applied) and the priority-fee estimate
//! (external-apis.md §2.1–2.3).
//!
//! The URL (`HELIUS_RPC_URL`) carries the API key in its query string, so it is a [`Secret`]: it
//! never reaches a log line or an error (reqwest errors are stripped of it, and every message is
//! scrubbed of it before it leaves). Retries and the breaker live in the ChainActor.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use solana_sdk::pubkey::Pubkey;

use super::bags::{parse_amount, retry_after_header};
use crate::http::error_chain;
use crate::resilience::{Classify, RateLimiter, Transience};
use crate::secret::Secret;

/// DAS returns at most 1,000 records per call; fewer pages means fewer requests against the
/// DAS rate limit (2 rps on the free plan).
pub const DAS_PAGE_LIMIT: u32 = 1_000;

/// The incinerator: tokens sent to it are burnt. It happens to be off the curve, so the PDA rule
/// would catch it too; it is listed so that it counts as what it is and never depends on that.
pub const INCINERATOR: Pubkey =
    Pubkey::from_str_const("1nc1nerator11111111111111111111111111111111");
/// The system program: token accounts "owned" by it can never be spent (it signs for nothing),
/// a classic burn by mistake; the all-zero key also happens to be on the curve.
pub const SYSTEM_PROGRAM: Pubkey = Pubkey::from_str_const("11111111111111111111111111111111");
/// SPL Token: a token account owned by the program id itself is stranded (no one holds the key).
pub const TOKEN_PROGRAM: Pubkey =
    Pubkey::from_str_const("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA");
/// Token-2022, for the same reason.
pub const TOKEN_2022_PROGRAM: Pubkey =
    Pubkey::from_str_const("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb");
/// The associated-token-account program, for the same reason.
pub const ASSOCIATED_TOKEN_PROGRAM: Pubkey =
    Pubkey::from_str_const("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTgeXMxnJL");

/// Owners that are never holders whatever their balance: burn sinks and program ids. Pool
/// vaults, bonding curves and other program-derived accounts need no entry: they are off the
/// curve and excluded as such.
pub const PROTOCOL_ADDRESSES: [Pubkey; 5] = [
    INCINERATOR,
    SYSTEM_PROGRAM,
    TOKEN_PROGRAM,
    TOKEN_2022_PROGRAM,
    ASSOCIATED_TOKEN_PROGRAM,
];

/// How much of a non-JSON error body an error message quotes.
const BODY_EXCERPT_CHARS: usize = 200;

/// Helius RPC + DAS on one URL. Cheap to clone; clones share the connection pool and limiter.
#[derive(Clone)]
pub struct HeliusClient {
    http: reqwest::Client,
    /// `HELIUS_RPC_URL`, key included.
    url: Secret,
    timeout: Duration,
    limiter: RateLimiter,
}

// Manual: the URL is the secret.
impl fmt::Debug for HeliusClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeliusClient")
            .field("url", &"***")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Who does not count as a holder, beyond the built-in rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HolderFilters {
    /// The strategy's exclusion list plus protocol addresses it knows of (its own treasury, the
    /// distributor…); [`PROTOCOL_ADDRESSES`] and off-curve owners are always excluded.
    pub excluded_wallets: HashSet<Pubkey>,
    /// Smallest aggregated balance (token base units) that qualifies; 0 = any positive balance.
    pub min_holding: u64,
}

/// One qualifying holder: an on-curve wallet and the sum of its token accounts for the mint.
/// `u64` suffices: the sum of any owner's balances is bounded by the mint's supply, a `u64`; a
/// sum that overflows means the service is lying and fails the snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Holder {
    pub wallet: Pubkey,
    pub amount: u64,
}

/// Owners (or accounts) left out of a snapshot and why. Every owner with a positive balance is
/// in exactly one place: a holder, or one of the owner counts below (checked in that order:
/// protocol or listed, off curve, below the minimum).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExclusionCounts {
    /// Token ACCOUNTS with a zero balance (we ask DAS to leave them out; counted if it does not).
    pub zero_balance: u64,
    /// Owners off the ed25519 curve: program-derived addresses (bonding curves, pool vaults).
    pub off_curve: u64,
    /// Owners in [`PROTOCOL_ADDRESSES`] or [`HolderFilters::excluded_wallets`].
    pub protocol_or_listed: u64,
    /// Owners whose aggregated balance is under [`HolderFilters::min_holding`].
    pub below_minimum: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HolderSnapshot {
    /// By amount descending, then wallet ascending in base58 string order (deterministic ties).
    pub holders: Vec<Holder>,
    /// DAS pages fetched (the last one may be empty).
    pub pages: u32,
    /// Token accounts received, zero balances included.
    pub token_accounts: u64,
    pub excluded: ExclusionCounts,
}

/// `getPriorityFeeEstimate`'s `priorityLevel` (percentiles of recent fees).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PriorityLevel {
    /// p0.
    Min,
    /// p25.
    Low,
    /// p50.
    Medium,
    /// p75.
    High,
    /// p95.
    VeryHigh,
    /// p100.
    UnsafeMax,
}

impl PriorityLevel {
    /// The name Helius expects.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Min => "Min",
            Self::Low => "Low",
            Self::Medium => "Medium",
            Self::High => "High",
            Self::VeryHigh => "VeryHigh",
            Self::UnsafeMax => "UnsafeMax",
        }
    }
}

#[derive(thiserror::Error, Debug)]
pub enum HeliusError {
    /// A non-2xx HTTP status; `message` from the JSON-RPC error body when there is one.
    #[error("helius answered {status}: {message}")]
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// A JSON-RPC error object in a 2xx response.
    #[error("helius rpc error {code}: {message}")]
    Rpc { code: i64, message: String },
    #[error("helius request timed out")]
    Timeout,
    #[error("helius unreachable: {0}")]
    Connect(String),
    /// The body was not what the API documents (including an unparseable owner, an amount that
    /// is not an unsigned integer, a cursor that does not advance).
    #[error("helius response not understood: {0}")]
    Decode(String),
}

impl Classify for HeliusError {
    fn transience(&self) -> Transience {
        match self {
            Self::Status {
                status,
                retry_after,
                ..
            } if *status == 408 || *status == 429 || (500..=599).contains(status) => {
                Transience::Transient {
                    retry_after: *retry_after,
                }
            }
            // JSON-RPC errors are answers (bad params, unknown method…): permanent, except the
            // rate-limit ones some providers send with a 200.
            Self::Rpc { code, message } if *code == 429 || says_rate_limited(message) => {
                Transience::Transient { retry_after: None }
            }
            Self::Status { .. } | Self::Rpc { .. } | Self::Decode(_) => Transience::Permanent,
            Self::Timeout | Self::Connect(_) => Transience::Transient { retry_after: None },
        }
    }
}

fn says_rate_limited(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("rate limit")
        || message.contains("rate-limit")
        || message.contains("ratelimit")
        || message.contains("too many requests")
}

impl HeliusClient {
    /// `url` is `HELIUS_RPC_URL` (`https://mainnet.helius-rpc.com/?api-key=…`); `limiter` caps
    /// requests per second and is awaited before every request (every page).
    pub fn new(url: Secret, timeout: Duration, limiter: RateLimiter) -> Self {
        // See BagsClient::new: the per-request timeout covers the exchange.
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .build()
            .unwrap_or_default();
        Self {
            http,
            url,
            timeout,
            limiter,
        }
    }

    /// Every holder of `mint`: all DAS pages (cursor mode, 1,000 per page, until a page comes
    /// back empty or without a cursor; no cap), aggregated per owner, exclusions applied.
    /// Memory grows with the number of distinct owners, not of token accounts.
    pub async fn holder_snapshot(
        &self,
        mint: &Pubkey,
        filters: &HolderFilters,
    ) -> Result<HolderSnapshot, HeliusError> {
        let started = Instant::now();
        let mut aggregation = Aggregation::default();
        let params = |cursor: Option<&str>| {
            let mut params = json!({
                "mint": mint.to_string(),
                "limit": DAS_PAGE_LIMIT,
                "options": {"showZeroBalance": false},
            });
            if let Some(cursor) = cursor {
                params["cursor"] = json!(cursor);
            }
            params
        };
        let mut result = self.call("getTokenAccounts", params(None)).await?;
        let mut cursor: Option<String> = None;
        loop {
            let page = parse_page(&result, mint, aggregation.pages)?;
            let next = match &page.cursor {
                Some(next) if !page.accounts.is_empty() => {
                    // A cursor that does not move would loop forever; with no cap, that must be
                    // an error rather than a hang.
                    if cursor.as_deref() == Some(next.as_str()) {
                        return Err(HeliusError::Decode(format!(
                            "page {}: the cursor did not advance",
                            aggregation.pages + 1
                        )));
                    }
                    Some(next.clone())
                }
                _ => None,
            };
            let Some(next) = next else {
                aggregation.ingest(&page)?;
                break;
            };
            // The next page is requested before this one is ingested, so the CPU work of a page
            // (the owners' curve checks above all) overlaps the next request's round trip
            // instead of adding to it. `join!` polls the request first, which sends it.
            let (fetched, ingested) =
                tokio::join!(self.call("getTokenAccounts", params(Some(&next))), async {
                    aggregation.ingest(&page)
                });
            ingested?;
            result = fetched?;
            cursor = Some(next);
        }
        let snapshot = aggregation.finish(filters);
        tracing::debug!(
            %mint,
            pages = snapshot.pages,
            tokenAccounts = snapshot.token_accounts,
            holders = snapshot.holders.len(),
            responseTime = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "holder snapshot"
        );
        Ok(snapshot)
    }

    /// `getPriorityFeeEstimate` for transactions touching `account_keys`, in micro-lamports per
    /// compute unit, rounded up (it is a price to clear, and a fraction below it may not).
    pub async fn priority_fee_estimate(
        &self,
        account_keys: &[Pubkey],
        level: PriorityLevel,
    ) -> Result<u64, HeliusError> {
        let keys: Vec<String> = account_keys.iter().map(Pubkey::to_string).collect();
        let params = json!([{
            "accountKeys": keys,
            "options": {"priorityLevel": level.as_str()},
        }]);
        let result = self.call("getPriorityFeeEstimate", params).await?;
        parse_priority_fee(&result)
    }

    /// One JSON-RPC call: limiter, POST, status, error object, `result`.
    async fn call(&self, method: &'static str, params: Value) -> Result<Value, HeliusError> {
        self.limiter.acquire().await;
        let started = Instant::now();
        let body =
            json!({"jsonrpc": "2.0", "id": "creditbrain", "method": method, "params": params});
        let response = self
            .http
            .post(self.url.expose())
            .timeout(self.timeout)
            .json(&body)
            .send()
            .await
            .map_err(|error| self.transport_error(method, error))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let raw = response
            .bytes()
            .await
            .map_err(|error| self.transport_error(method, error))?;
        tracing::debug!(
            req = method,
            res = status,
            responseTime = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "helius response"
        );
        let retry_after = retry_after_header(&headers, unix_now());
        interpret(status, retry_after, &raw).map_err(|error| self.scrub_error(error))
    }

    fn transport_error(&self, method: &str, error: reqwest::Error) -> HeliusError {
        if error.is_timeout() {
            return HeliusError::Timeout;
        }
        let text = format!("{method}: {}", error_chain(&error.without_url()));
        self.scrub_error(HeliusError::Connect(text))
    }

    /// No message leaves this client with the URL or its query string (the key) in it.
    fn scrub_error(&self, error: HeliusError) -> HeliusError {
        let secrets = url_secrets(self.url.expose());
        let scrub = |text: String| scrub(text, &secrets);
        match error {
            HeliusError::Status {
                status,
                message,
                retry_after,
            } => HeliusError::Status {
                status,
                message: scrub(message),
                retry_after,
            },
            HeliusError::Rpc { code, message } => HeliusError::Rpc {
                code,
                message: scrub(message),
            },
            HeliusError::Connect(text) => HeliusError::Connect(scrub(text)),
            HeliusError::Decode(text) => HeliusError::Decode(scrub(text)),
            other => other,
        }
    }
}

/// The parts of a URL that must not be shown: the whole URL, its query string, and each query
/// value long enough to be a credential. Longest first, so the URL is replaced whole.
fn url_secrets(url: &str) -> Vec<String> {
    let mut secrets = vec![url.to_owned()];
    if let Some((_, query)) = url.split_once('?') {
        secrets.push(query.to_owned());
        for pair in query.split('&') {
            if let Some((_, value)) = pair.split_once('=')
                && value.len() >= 8
            {
                secrets.push(value.to_owned());
            }
        }
    }
    secrets.retain(|secret| !secret.is_empty());
    secrets.sort_by_key(|secret| Reverse(secret.len()));
    secrets
}

fn scrub(mut text: String, secrets: &[String]) -> String {
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "***");
        }
    }
    text
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

fn excerpt(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .trim()
        .chars()
        .take(BODY_EXCERPT_CHARS)
        .collect()
}

/// A JSON-RPC error object's `(code, message)`.
fn rpc_error(body: &Value) -> Option<(i64, String)> {
    let error = body.get("error")?.as_object()?;
    let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("no message")
        .to_owned();
    Some((code, message))
}

/// One HTTP exchange → the JSON-RPC `result` or a [`HeliusError`].
fn interpret(status: u16, retry_after: Option<Duration>, raw: &[u8]) -> Result<Value, HeliusError> {
    let parsed: Option<Value> = serde_json::from_slice(raw).ok();
    if !(200..=299).contains(&status) {
        let message = parsed
            .as_ref()
            .and_then(rpc_error)
            .map(|(_, message)| message)
            .unwrap_or_else(|| {
                let text = excerpt(raw);
                if text.is_empty() {
                    reqwest::StatusCode::from_u16(status)
                        .ok()
                        .and_then(|status| status.canonical_reason())
                        .unwrap_or("no message")
                        .to_owned()
                } else {
                    text
                }
            });
        return Err(HeliusError::Status {
            status,
            message,
            retry_after,
        });
    }
    let Some(body) = parsed else {
        return Err(HeliusError::Decode(format!(
            "body is not JSON: {:?}",
            excerpt(raw)
        )));
    };
    if let Some((code, message)) = rpc_error(&body) {
        return Err(HeliusError::Rpc { code, message });
    }
    match body.get("result") {
        Some(result) if !result.is_null() => Ok(result.clone()),
        _ => Err(HeliusError::Decode(
            "response has neither result nor error".to_owned(),
        )),
    }
}

/// One page of `getTokenAccounts`: `(owner, amount)` per token account, and the next cursor.
#[derive(Debug, Default)]
struct Page {
    accounts: Vec<(Pubkey, u64)>,
    cursor: Option<String>,
}

/// Parses page `index` (0-based). Only `owner` and `amount` are read (and `mint`, checked when
/// present); every other field is ignored. An owner is parsed as a [`Pubkey`], so its case is
/// preserved by construction and an invalid one fails the snapshot, naming it.
fn parse_page(result: &Value, mint: &Pubkey, index: u32) -> Result<Page, HeliusError> {
    let decode = |message: String| HeliusError::Decode(format!("page {}: {message}", index + 1));
    let result = result
        .as_object()
        .ok_or_else(|| decode("result is not an object".to_owned()))?;
    let accounts = match result.get("token_accounts") {
        Some(Value::Array(accounts)) => accounts,
        None | Some(Value::Null) => return Err(decode("token_accounts is missing".to_owned())),
        Some(_) => return Err(decode("token_accounts is not an array".to_owned())),
    };
    let mut page = Page {
        accounts: Vec::with_capacity(accounts.len()),
        cursor: match result.get("cursor") {
            None | Some(Value::Null) => None,
            Some(Value::String(cursor)) if cursor.is_empty() => None,
            Some(Value::String(cursor)) => Some(cursor.clone()),
            Some(_) => return Err(decode("cursor is not a string".to_owned())),
        },
    };
    // Encoded once a page, not once an account.
    let mint_text = mint.to_string();
    for (position, account) in accounts.iter().enumerate() {
        let account = account
            .as_object()
            .ok_or_else(|| decode(format!("token_accounts[{position}] is not an object")))?;
        page.accounts.push(
            parse_account(account, &mint_text)
                .map_err(|message| decode(format!("token_accounts[{position}]: {message}")))?,
        );
    }
    Ok(page)
}

/// `mint` is the requested mint's base58 text.
fn parse_account(account: &Map<String, Value>, mint: &str) -> Result<(Pubkey, u64), String> {
    if let Some(Value::String(account_mint)) = account.get("mint")
        && account_mint != mint
    {
        return Err(format!("mint {account_mint} is not the requested {mint}"));
    }
    let owner = match account.get("owner") {
        Some(Value::String(owner)) => {
            Pubkey::from_str(owner).map_err(|_| format!("owner {owner:?} is not a public key"))?
        }
        _ => return Err("owner is missing".to_owned()),
    };
    let amount = match account.get("amount") {
        Some(amount) => parse_amount(amount).map_err(|error| format!("amount: {error}"))?,
        None => return Err("amount is missing".to_owned()),
    };
    Ok((owner, amount))
}

/// The running per-owner totals. Only owners are kept, never accounts.
#[derive(Debug, Default)]
struct Aggregation {
    totals: HashMap<Pubkey, Owner>,
    pages: u32,
    token_accounts: u64,
    zero_balance: u64,
}

/// One owner's running total.
#[derive(Debug)]
struct Owner {
    amount: u64,
    /// `Pubkey::is_on_curve` of the owner: off-curve owners (PDAs) are not holders.
    on_curve: bool,
}

impl Aggregation {
    fn ingest(&mut self, page: &Page) -> Result<(), HeliusError> {
        self.pages = self.pages.saturating_add(1);
        for &(owner, amount) in &page.accounts {
            self.token_accounts += 1;
            if amount == 0 {
                self.zero_balance += 1;
                continue;
            }
            // The curve check (a point decompression, the costliest step per owner) is made
            // when an owner is first seen, so it overlaps the next page's request.
            let total = &mut self
                .totals
                .entry(owner)
                .or_insert_with(|| Owner {
                    amount: 0,
                    on_curve: owner.is_on_curve(),
                })
                .amount;
            *total = total.checked_add(amount).ok_or_else(|| {
                HeliusError::Decode(format!(
                    "page {}: {owner}'s balances add up to more than 64 bits",
                    self.pages
                ))
            })?;
        }
        Ok(())
    }

    fn finish(self, filters: &HolderFilters) -> HolderSnapshot {
        let mut excluded = ExclusionCounts {
            zero_balance: self.zero_balance,
            ..ExclusionCounts::default()
        };
        let mut holders = Vec::with_capacity(self.totals.len());
        for (wallet, Owner { amount, on_curve }) in self.totals {
            if PROTOCOL_ADDRESSES.contains(&wallet) || filters.excluded_wallets.contains(&wallet) {
                excluded.protocol_or_listed += 1;
            } else if !on_curve {
                excluded.off_curve += 1;
            } else if amount < filters.min_holding {
                excluded.below_minimum += 1;
            } else {
                holders.push(Holder { wallet, amount });
            }
        }
        // The tie-break is on the base58 text (what operators and the store see), which does not
        // follow byte order; computing each string once keeps the sort O(n log n) comparisons.
        holders.sort_by_cached_key(|holder| (Reverse(holder.amount), holder.wallet.to_string()));
        HolderSnapshot {
            holders,
            pages: self.pages,
            token_accounts: self.token_accounts,
            excluded,
        }
    }
}

/// `{"priorityFeeEstimate": <number>}` → micro-lamports per CU, rounded up.
fn parse_priority_fee(result: &Value) -> Result<u64, HeliusError> {
    let estimate = result
        .get("priorityFeeEstimate")
        .ok_or_else(|| HeliusError::Decode("priorityFeeEstimate is missing".to_owned()))?;
    if let Some(exact) = estimate.as_u64() {
        return Ok(exact);
    }
    match estimate.as_f64() {
        // `u64::MAX as f64` rounds up to 2^64, hence the strict bound.
        Some(value) if value.is_finite() && value >= 0.0 && value < u64::MAX as f64 => {
            // In range by the guard; `as` is the explicit conversion of a checked f64.
            Ok(value.ceil() as u64)
        }
        _ => Err(HeliusError::Decode(format!(
            "priorityFeeEstimate {estimate} is not a non-negative number"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use solana_sdk::signature::{Keypair, Signer};

    fn wallet() -> Pubkey {
        Keypair::new().pubkey()
    }

    fn pda(seed: &[u8]) -> Pubkey {
        Pubkey::find_program_address(&[seed], &Pubkey::new_unique()).0
    }

    fn account(owner: &Pubkey, amount: Value, mint: &Pubkey) -> Value {
        json!({
            "address": Pubkey::new_unique().to_string(),
            "mint": mint.to_string(),
            "owner": owner.to_string(),
            "amount": amount,
            "delegated_amount": 0,
            "frozen": false,
            "token_extensions": {},
        })
    }

    fn decode_error<T: fmt::Debug>(result: Result<T, HeliusError>) -> String {
        match result {
            Err(HeliusError::Decode(message)) => message,
            other => panic!("expected a decode error, got {other:?}"),
        }
    }

    #[test]
    fn aggregation_sums_per_owner_and_excludes() {
        let mint = Pubkey::new_unique();
        let (alice, bob, carol, dave, listed) = (wallet(), wallet(), wallet(), wallet(), wallet());
        let vault = pda(b"vault");
        let page_one = json!({
            "total": 5, "limit": 1000, "cursor": "c1", "last_indexed_slot": 9,
            "token_accounts": [
                account(&alice, json!(100), &mint),
                account(&bob, json!("300"), &mint),
                account(&vault, json!(1_000_000), &mint),
                account(&INCINERATOR, json!(5_000_000), &mint),
                account(&carol, json!(0), &mint),
            ],
        });
        let page_two = json!({
            "token_accounts": [
                account(&alice, json!(250), &mint),
                account(&listed, json!(10_000), &mint),
                account(&dave, json!(7), &mint),
                account(&SYSTEM_PROGRAM, json!(1), &mint),
            ],
            "cursor": null,
        });
        let mut aggregation = Aggregation::default();
        for (index, page) in [page_one, page_two].iter().enumerate() {
            let page = parse_page(page, &mint, u32::try_from(index).expect("index")).expect("page");
            aggregation.ingest(&page).expect("ingest");
        }
        let filters = HolderFilters {
            excluded_wallets: HashSet::from([listed]),
            min_holding: 10,
        };
        let snapshot = aggregation.finish(&filters);
        assert_eq!(
            snapshot.holders,
            vec![
                Holder {
                    wallet: alice,
                    amount: 350
                },
                Holder {
                    wallet: bob,
                    amount: 300
                },
            ]
        );
        assert_eq!((snapshot.pages, snapshot.token_accounts), (2, 9));
        assert_eq!(
            snapshot.excluded,
            ExclusionCounts {
                zero_balance: 1,
                off_curve: 1,
                protocol_or_listed: 3,
                below_minimum: 1,
            }
        );
    }

    #[test]
    fn ties_break_on_the_base58_text() {
        // Byte order and base58 text order disagree for some pairs; find one, so that the test
        // fails if the sort ever falls back to `Pubkey`'s byte order.
        let (first, second) = loop {
            let (a, b) = (wallet(), wallet());
            if (a < b) != (a.to_string() < b.to_string()) {
                break (a, b);
            }
        };
        let mint = Pubkey::new_unique();
        let page = json!({"token_accounts": [
            account(&first, json!(5), &mint),
            account(&second, json!(5), &mint),
            account(&wallet(), json!(6), &mint),
        ]});
        let mut aggregation = Aggregation::default();
        aggregation
            .ingest(&parse_page(&page, &mint, 0).expect("page"))
            .expect("ingest");
        let holders = aggregation.finish(&HolderFilters::default()).holders;
        assert_eq!(holders[0].amount, 6);
        assert!(holders[1].wallet.to_string() < holders[2].wallet.to_string());
        assert_eq!(holders[1].amount, 5);
    }

    #[test]
    fn owners_keep_their_case_and_bad_ones_are_named() {
        let mint = Pubkey::new_unique();
        let owner = wallet();
        let text = owner.to_string();
        let page = parse_page(
            &json!({"token_accounts": [account(&owner, json!(1), &mint)]}),
            &mint,
            0,
        )
        .expect("page");
        assert_eq!(page.accounts[0].0.to_string(), text);
        // The lower-cased address of the old service is a different key or no key at all.
        let lowered = text.to_lowercase();
        if lowered != text {
            let parsed = Pubkey::from_str(&lowered).ok();
            assert_ne!(parsed, Some(owner));
        }
        let mut bad = account(&owner, json!(1), &mint);
        bad["owner"] = json!("not-a-wallet");
        let message = decode_error(parse_page(&json!({"token_accounts": [bad]}), &mint, 2));
        assert!(
            message.contains("page 3") && message.contains("not-a-wallet"),
            "{message}"
        );
    }

    #[test]
    fn malformed_pages_are_refused() {
        let mint = Pubkey::new_unique();
        let owner = wallet();
        for bad_amount in [json!(-1), json!(1.5), json!("12a"), json!(null)] {
            let page = json!({"token_accounts": [account(&owner, bad_amount, &mint)]});
            assert!(decode_error(parse_page(&page, &mint, 0)).contains("amount"));
        }
        let other_mint =
            json!({"token_accounts": [account(&owner, json!(1), &Pubkey::new_unique())]});
        assert!(decode_error(parse_page(&other_mint, &mint, 0)).contains("requested"));
        decode_error(parse_page(&json!({"items": []}), &mint, 0));
        decode_error(parse_page(&json!([]), &mint, 0));
        decode_error(parse_page(
            &json!({"token_accounts": [], "cursor": 5}),
            &mint,
            0,
        ));
        let empty_cursor =
            parse_page(&json!({"token_accounts": [], "cursor": ""}), &mint, 0).expect("empty");
        assert_eq!(empty_cursor.cursor, None);
    }

    #[test]
    fn an_overflowing_owner_fails_the_snapshot() {
        let mint = Pubkey::new_unique();
        let owner = wallet();
        let page = json!({"token_accounts": [
            account(&owner, json!(u64::MAX), &mint),
            account(&owner, json!(1), &mint),
        ]});
        let mut aggregation = Aggregation::default();
        let page = parse_page(&page, &mint, 0).expect("page");
        assert!(decode_error(aggregation.ingest(&page)).contains("64 bits"));
    }

    #[test]
    fn protocol_addresses_are_what_they_claim() {
        assert_eq!(SYSTEM_PROGRAM, Pubkey::default());
        assert_eq!(
            INCINERATOR.to_string(),
            "1nc1nerator11111111111111111111111111111111"
        );
        // The list matters for the system program: it is on the curve, so the PDA rule alone would
        // keep it as a holder.
        assert!(SYSTEM_PROGRAM.is_on_curve());
    }

    #[test]
    fn responses_and_errors() {
        assert_eq!(
            interpret(200, None, br#"{"jsonrpc":"2.0","result":{"a":1},"id":"x"}"#).expect("ok"),
            json!({"a": 1})
        );
        let invalid = interpret(
            200,
            None,
            br#"{"jsonrpc":"2.0","error":{"code":-32602,"message":"Pubkey Validation Err"},"id":1}"#,
        )
        .expect_err("rpc error");
        assert!(matches!(invalid, HeliusError::Rpc { code: -32602, .. }));
        assert_eq!(invalid.transience(), Transience::Permanent);
        let limited = interpret(
            200,
            None,
            br#"{"jsonrpc":"2.0","error":{"code":-32429,"message":"Rate limit exceeded"},"id":1}"#,
        )
        .expect_err("rpc error");
        assert_eq!(
            limited.transience(),
            Transience::Transient { retry_after: None }
        );

        let too_many = interpret(
            429,
            Some(Duration::from_secs(2)),
            br#"{"jsonrpc":"2.0","error":{"code":429,"message":"Too many requests"},"id":1}"#,
        )
        .expect_err("429");
        assert_eq!(
            too_many.transience(),
            Transience::Transient {
                retry_after: Some(Duration::from_secs(2))
            }
        );
        assert!(too_many.to_string().contains("Too many requests"));
        let unavailable = interpret(503, None, b"").expect_err("503");
        assert_eq!(
            unavailable.transience(),
            Transience::Transient { retry_after: None }
        );
        assert!(unavailable.to_string().contains("Service Unavailable"));
        let unauthorized =
            interpret(401, None, b"{\"message\":\"invalid api key\"}").expect_err("401");
        assert_eq!(unauthorized.transience(), Transience::Permanent);

        decode_error(interpret(200, None, b"{\"jsonrpc\":\"2.0\",\"result\":"));
        decode_error(interpret(
            200,
            None,
            b"{\"jsonrpc\":\"2.0\",\"result\":null}",
        ));
    }

    #[test]
    fn priority_fees_round_up() {
        assert_eq!(
            parse_priority_fee(&json!({"priorityFeeEstimate": 10_000})).expect("int"),
            10_000
        );
        assert_eq!(
            parse_priority_fee(&json!({"priorityFeeEstimate": 1234.2})).expect("float"),
            1_235
        );
        assert_eq!(
            parse_priority_fee(&json!({"priorityFeeEstimate": 0.0})).expect("zero"),
            0
        );
        decode_error(parse_priority_fee(&json!({"priorityFeeEstimate": -1.0})));
        decode_error(parse_priority_fee(&json!({"priorityFeeEstimate": "5"})));
        decode_error(parse_priority_fee(&json!({"priorityFeeLevels": {}})));
        assert_eq!(PriorityLevel::VeryHigh.as_str(), "VeryHigh");
    }

    #[test]
    fn secrets_are_scrubbed_from_messages() {
        let url = "https://mainnet.helius-rpc.com/?api-key=0f1e2d3c-aaaa-bbbb-cccc-123456789abc";
        let text = format!("failed at {url} with key 0f1e2d3c-aaaa-bbbb-cccc-123456789abc");
        assert_eq!(scrub(text, &url_secrets(url)), "failed at *** with key ***");
        assert_eq!(
            url_secrets("http://127.0.0.1:8899"),
            vec!["http://127.0.0.1:8899"]
        );
    }
}
