//! The Bags.fm public API client: claimable positions, claim transactions (v3), partner fees,
//! trade quote and swap, with Bags' envelope, the `x-api-key` header, the local request budget and
//! typed, tolerant parsing (external-apis.md §1).
//!
//! Retries and the circuit breaker live in the ChainActor (DESIGN.md §6: one retry layer); this
//! client makes exactly one HTTP request per call and classifies what went wrong.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use serde_json::{Map, Value, json};
use solana_sdk::hash::Hash;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::transaction::VersionedTransaction;

use crate::http::{error_chain, parse_retry_after};
use crate::resilience::{Classify, SlidingBudget, Transience};
use crate::secret::Secret;

/// The largest serialized transaction Solana accepts (one packet: `PACKET_DATA_SIZE`). Anything
/// bigger could never be sent, so it is refused while decoding rather than at send time.
pub const MAX_TRANSACTION_BYTES: usize = 1232;

/// How much of a non-JSON error body an error message quotes.
const BODY_EXCERPT_CHARS: usize = 200;

/// The Bags public API (`BAGS_API_BASE_URL`, e.g. `https://public-api-v2.bags.fm/api/v1`).
///
/// Cheap to clone; clones share the HTTP connection pool and the budget.
#[derive(Clone)]
pub struct BagsClient {
    http: reqwest::Client,
    /// Without a trailing `/`; paths are appended to it.
    base_url: String,
    api_key: Secret,
    timeout: Duration,
    budget: SlidingBudget,
}

// Manual, so that the key cannot show even if `Secret`'s own `Debug` ever changed.
impl fmt::Debug for BagsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BagsClient")
            .field("base_url", &self.base_url)
            .field("api_key", &"***")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A fee position, with the claimable amount computed as external-apis.md §1.2 recommends.
///
/// Positions with nothing claimable are kept: the caller decides what a zero means (the real API
/// and the sandbox usually omit them anyway).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimablePosition {
    pub base_mint: Pubkey,
    /// Sum of the per-pool `*LamportsUserShare` fields when present, else
    /// `totalClaimableLamportsUserShare` (see `parse_positions` for v1 positions).
    pub claimable_lamports: u64,
    pub is_custom_fee_vault: bool,
    pub is_migrated: bool,
}

/// A transaction Bags built for us to sign, decoded from base58, with its blockhash window.
#[derive(Clone, Debug)]
pub struct UnsignedTransaction {
    pub transaction: VersionedTransaction,
    pub blockhash: Hash,
    pub last_valid_block_height: u64,
}

/// `GET /trade/quote`: the typed fields we use, and the whole body to echo to `/trade/swap`.
#[derive(Clone, Debug)]
pub struct TradeQuote {
    pub input_mint: Pubkey,
    pub output_mint: Pubkey,
    pub in_amount: u64,
    pub out_amount: u64,
    pub min_out_amount: u64,
    pub slippage_bps: u16,
    pub raw: serde_json::Value,
}

#[derive(Clone, Debug)]
pub struct SwapTransaction {
    pub transaction: VersionedTransaction,
    pub last_valid_block_height: u64,
    /// 0 when Bags omitted it: informational only (the fee really paid is read from the landed
    /// transaction's metadata).
    pub compute_unit_limit: u64,
    /// 0 when Bags omitted it; informational like `compute_unit_limit`.
    pub prioritization_fee_lamports: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartnerStats {
    pub claimed_lamports: u64,
    pub unclaimed_lamports: u64,
}

#[derive(thiserror::Error, Debug)]
pub enum BagsError {
    /// Bags answered with an error status and `{"success":false,"error":…}` (or a 2xx whose
    /// envelope says `success: false`, reported with that 2xx status).
    #[error("bags answered {status}: {message}")]
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Our local hourly budget is spent; the next request is possible after `retry_after`.
    #[error("bags request budget exhausted; next slot in {} s", retry_after.as_secs())]
    BudgetExhausted { retry_after: Duration },
    #[error("bags request timed out")]
    Timeout,
    #[error("bags unreachable: {0}")]
    Connect(String),
    /// The body was not what the API documents (including a transaction that does not decode).
    #[error("bags response not understood: {0}")]
    Decode(String),
}

impl Classify for BagsError {
    fn transience(&self) -> Transience {
        match self {
            // 408 and 429 are "try later"; 5xx is the service's own trouble.
            Self::Status {
                status,
                retry_after,
                ..
            } if *status == 408 || *status == 429 || (500..=599).contains(status) => {
                Transience::Transient {
                    retry_after: *retry_after,
                }
            }
            Self::Status { .. } | Self::Decode(_) => Transience::Permanent,
            Self::BudgetExhausted { retry_after } => Transience::Transient {
                retry_after: Some(*retry_after),
            },
            Self::Timeout | Self::Connect(_) => Transience::Transient { retry_after: None },
        }
    }
}

impl BagsClient {
    /// `budget` is shared with whoever reports it; the client takes one request from it before
    /// each call and corrects it from every response's `X-RateLimit-*` headers.
    pub fn new(
        base_url: String,
        api_key: Secret,
        timeout: Duration,
        budget: SlidingBudget,
    ) -> Self {
        // The per-request timeout below covers the whole exchange; the connect timeout only
        // makes an unreachable host fail as early. Building a client fails only when the TLS
        // backend cannot initialise, in which case the default client fails the same way.
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .build()
            .unwrap_or_default();
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            timeout,
            budget,
        }
    }

    pub fn budget(&self) -> &SlidingBudget {
        &self.budget
    }

    pub async fn claimable_positions(
        &self,
        wallet: &Pubkey,
    ) -> Result<Vec<ClaimablePosition>, BagsError> {
        let request = self
            .http
            .get(self.url("/token-launch/claimable-positions"))
            .query(&[("wallet", wallet.to_string())]);
        let response = self
            .send(request, "GET /token-launch/claimable-positions")
            .await?;
        parse_positions(&response)
    }

    /// `POST /token-launch/claim-txs/v3`; to be sent in the returned order.
    pub async fn claim_transactions(
        &self,
        fee_claimer: &Pubkey,
        token_mint: &Pubkey,
    ) -> Result<Vec<UnsignedTransaction>, BagsError> {
        let body = json!({
            "feeClaimer": fee_claimer.to_string(),
            "tokenMint": token_mint.to_string(),
        });
        let request = self
            .http
            .post(self.url("/token-launch/claim-txs/v3"))
            .json(&body);
        let response = self
            .send(request, "POST /token-launch/claim-txs/v3")
            .await?;
        parse_claim_transactions(&response)
    }

    pub async fn partner_stats(&self, partner: &Pubkey) -> Result<PartnerStats, BagsError> {
        let request = self
            .http
            .get(self.url("/fee-share/partner-config/stats"))
            .query(&[("partner", partner.to_string())]);
        let response = self
            .send(request, "GET /fee-share/partner-config/stats")
            .await?;
        parse_partner_stats(&response)
    }

    /// `POST /fee-share/partner-config/claim-tx`; the last one must execute last.
    pub async fn partner_claim_transactions(
        &self,
        partner: &Pubkey,
    ) -> Result<Vec<UnsignedTransaction>, BagsError> {
        let body = json!({"partnerWallet": partner.to_string()});
        let request = self
            .http
            .post(self.url("/fee-share/partner-config/claim-tx"))
            .json(&body);
        let response = self
            .send(request, "POST /fee-share/partner-config/claim-tx")
            .await?;
        parse_partner_claim_transactions(&response)
    }

    /// `GET /trade/quote` with `slippageMode=manual`.
    pub async fn quote(
        &self,
        input_mint: &Pubkey,
        output_mint: &Pubkey,
        amount: u64,
        slippage_bps: u16,
    ) -> Result<TradeQuote, BagsError> {
        let request = self.http.get(self.url("/trade/quote")).query(&[
            ("inputMint", input_mint.to_string()),
            ("outputMint", output_mint.to_string()),
            ("amount", amount.to_string()),
            ("slippageMode", "manual".to_owned()),
            ("slippageBps", slippage_bps.to_string()),
        ]);
        let response = self.send(request, "GET /trade/quote").await?;
        parse_quote(response, input_mint, output_mint, slippage_bps)
    }

    /// `POST /trade/swap` echoing the quote.
    pub async fn swap_transaction(
        &self,
        quote: &TradeQuote,
        user: &Pubkey,
    ) -> Result<SwapTransaction, BagsError> {
        let body = json!({
            "quoteResponse": quote.raw,
            "userPublicKey": user.to_string(),
        });
        let request = self.http.post(self.url("/trade/swap")).json(&body);
        let response = self.send(request, "POST /trade/swap").await?;
        parse_swap(&response)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// One request: budget, `x-api-key`, send, budget correction, envelope. `route` names the
    /// call in logs and errors (never the query string, never the key).
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        route: &'static str,
    ) -> Result<Value, BagsError> {
        self.budget
            .try_acquire()
            .map_err(|retry_after| BagsError::BudgetExhausted { retry_after })?;
        let started = Instant::now();
        let response = request
            .header("x-api-key", self.api_key.expose())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|error| self.transport_error(route, error))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|error| self.transport_error(route, error))?;
        tracing::debug!(
            req = route,
            res = status,
            responseTime = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "bags response"
        );
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        self.observe_rate_limit(&headers, parsed.as_ref());
        let result = interpret(status, &headers, parsed, &body, unix_now());
        result.map_err(|error| self.scrub_error(error))
    }

    /// Corrects the local budget from `X-RateLimit-*`, falling back to a 429 body's
    /// `limit`/`remaining`/`resetTime` for whatever the headers lack.
    fn observe_rate_limit(&self, headers: &HeaderMap, body: Option<&Value>) {
        let body_number = |name: &str| body.and_then(|body| body.get(name)).and_then(Value::as_u64);
        let limit = header_number(headers, "x-ratelimit-limit")
            .or_else(|| body_number("limit"))
            .and_then(|limit| u32::try_from(limit).ok());
        let remaining = header_number(headers, "x-ratelimit-remaining")
            .or_else(|| body_number("remaining"))
            .and_then(|remaining| u32::try_from(remaining).ok());
        let reset =
            header_number(headers, "x-ratelimit-reset").or_else(|| body_number("resetTime"));
        if limit.is_some() || remaining.is_some() || reset.is_some() {
            self.budget.observe(limit, remaining, reset);
        }
    }

    fn transport_error(&self, route: &str, error: reqwest::Error) -> BagsError {
        if error.is_timeout() {
            return BagsError::Timeout;
        }
        let text = format!("{route}: {}", error_chain(&error.without_url()));
        self.scrub_error(BagsError::Connect(text))
    }

    /// Belt and braces: no message that leaves this client contains the API key, even if a
    /// server or a transport error echoed it.
    fn scrub_error(&self, error: BagsError) -> BagsError {
        let key = self.api_key.expose();
        if key.is_empty() {
            return error;
        }
        let scrub = |text: String| {
            if text.contains(key) {
                text.replace(key, "***")
            } else {
                text
            }
        };
        match error {
            BagsError::Status {
                status,
                message,
                retry_after,
            } => BagsError::Status {
                status,
                message: scrub(message),
                retry_after,
            },
            BagsError::Connect(text) => BagsError::Connect(scrub(text)),
            BagsError::Decode(text) => BagsError::Decode(scrub(text)),
            other => other,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Envelope, status and rate-limit interpretation (pure, unit-tested)

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

fn header_number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok()
}

/// `Retry-After` (delta-seconds or an HTTP date) relative to `now` (unix s).
pub(crate) fn retry_after_header(headers: &HeaderMap, now: u64) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let now = chrono::DateTime::from_timestamp(i64::try_from(now).unwrap_or(i64::MAX), 0)?;
    parse_retry_after(value, now)
}

/// The wait until unix second `at`. A reset already in the past (clock skew, or a reset that
/// just passed) still waits one second rather than hammering the service.
fn until(at: u64, now: u64) -> Duration {
    Duration::from_secs(at.saturating_sub(now).max(1))
}

/// When a 429 (or 5xx) may be retried: `Retry-After` first, then the body's `resetTime`, then
/// `X-RateLimit-Reset` (both unix seconds). 5xx only honours `Retry-After`.
fn retry_after(
    status: u16,
    headers: &HeaderMap,
    body: Option<&Value>,
    now: u64,
) -> Option<Duration> {
    if let Some(delay) = retry_after_header(headers, now) {
        return Some(delay);
    }
    if status != 429 {
        return None;
    }
    body.and_then(|body| body.get("resetTime"))
        .and_then(|reset| parse_amount(reset).ok())
        .or_else(|| header_number(headers, "x-ratelimit-reset"))
        .map(|reset| until(reset, now))
}

/// Turns one HTTP exchange into the envelope's `response` or a [`BagsError`].
fn interpret(
    status: u16,
    headers: &HeaderMap,
    parsed: Option<Value>,
    raw: &[u8],
    now: u64,
) -> Result<Value, BagsError> {
    if !(200..=299).contains(&status) {
        let message = parsed
            .as_ref()
            .and_then(|body| {
                // bags-sdk: `data.error` or `data.message`.
                body.get("error")
                    .or_else(|| body.get("message"))
                    .and_then(Value::as_str)
            })
            .map(str::to_owned)
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
        return Err(BagsError::Status {
            status,
            message,
            retry_after: retry_after(status, headers, parsed.as_ref(), now),
        });
    }
    let Some(body) = parsed else {
        return Err(BagsError::Decode(format!(
            "body is not JSON: {:?}",
            excerpt(raw)
        )));
    };
    let Some(envelope) = body.as_object() else {
        return Err(BagsError::Decode(
            "body is not a {success, response} envelope".to_owned(),
        ));
    };
    match envelope.get("success") {
        Some(Value::Bool(true)) => Ok(envelope.get("response").cloned().unwrap_or(Value::Null)),
        Some(Value::Bool(false)) => Err(BagsError::Status {
            status,
            message: envelope
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("success: false without an error message")
                .to_owned(),
            retry_after: None,
        }),
        _ => Err(BagsError::Decode(
            "envelope has no boolean `success`".to_owned(),
        )),
    }
}

fn excerpt(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .trim()
        .chars()
        .take(BODY_EXCERPT_CHARS)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tolerant field parsing

/// A non-negative integer amount given as a JSON number or as a string of decimal digits.
/// Negative numbers, fractions, exponents and anything beyond `u64` are refused.
pub(crate) fn parse_amount(value: &Value) -> Result<u64, String> {
    match value {
        Value::Number(number) => number
            .as_u64()
            .ok_or_else(|| format!("{number} is not an unsigned integer")),
        Value::String(text) => {
            let digits = text.trim();
            if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
                return Err(format!("{text:?} is not an unsigned integer"));
            }
            digits
                .parse::<u64>()
                .map_err(|_| format!("{text:?} does not fit in 64 bits"))
        }
        other => Err(format!("expected an amount, got {}", kind(other))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A field's value; missing and `null` are the same thing.
fn present<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).filter(|value| !value.is_null())
}

fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, BagsError> {
    value.as_object().ok_or_else(|| {
        BagsError::Decode(format!("{what}: expected an object, got {}", kind(value)))
    })
}

fn array<'a>(value: &'a Value, what: &str) -> Result<&'a Vec<Value>, BagsError> {
    value
        .as_array()
        .ok_or_else(|| BagsError::Decode(format!("{what}: expected an array, got {}", kind(value))))
}

fn optional_amount(
    object: &Map<String, Value>,
    name: &str,
    what: &str,
) -> Result<Option<u64>, BagsError> {
    present(object, name)
        .map(|value| {
            parse_amount(value)
                .map_err(|error| BagsError::Decode(format!("{what}.{name}: {error}")))
        })
        .transpose()
}

fn required_amount(object: &Map<String, Value>, name: &str, what: &str) -> Result<u64, BagsError> {
    optional_amount(object, name, what)?
        .ok_or_else(|| BagsError::Decode(format!("{what}.{name} is missing")))
}

fn required_str<'a>(
    object: &'a Map<String, Value>,
    name: &str,
    what: &str,
) -> Result<&'a str, BagsError> {
    match present(object, name) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text),
        Some(other) if !other.is_string() => Err(BagsError::Decode(format!(
            "{what}.{name}: expected a string, got {}",
            kind(other)
        ))),
        _ => Err(BagsError::Decode(format!("{what}.{name} is missing"))),
    }
}

fn required_pubkey(
    object: &Map<String, Value>,
    name: &str,
    what: &str,
) -> Result<Pubkey, BagsError> {
    let text = required_str(object, name, what)?;
    Pubkey::from_str(text)
        .map_err(|_| BagsError::Decode(format!("{what}.{name}: {text:?} is not a public key")))
}

fn optional_bool(object: &Map<String, Value>, name: &str, what: &str) -> Result<bool, BagsError> {
    match present(object, name) {
        None => Ok(false),
        Some(Value::Bool(flag)) => Ok(*flag),
        Some(other) => Err(BagsError::Decode(format!(
            "{what}.{name}: expected a boolean, got {}",
            kind(other)
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Payloads

/// The v2 per-pool user-share fields; when any is present their sum is the claimable amount
/// (external-apis.md §1.2: `totalClaimableLamportsUserShare` may report the total earned).
/// `userVaultClaimableLamportsUserShare` is undocumented but reported by an integrator.
const USER_SHARE_FIELDS: [&str; 3] = [
    "virtualPoolClaimableLamportsUserShare",
    "dammPoolClaimableLamportsUserShare",
    "userVaultClaimableLamportsUserShare",
];

/// The fee-share v1 pool fields. They are the pools' claimable fees, not the user's share: a
/// v1 custom fee vault splits them between two claimers by `customFeeVaultBps`.
const V1_POOL_FIELDS: [&str; 2] = ["virtualPoolClaimableAmount", "dammPoolClaimableAmount"];

/// `GET /token-launch/claimable-positions` → positions, in the order Bags gave them.
///
/// Claimable lamports, in order of preference:
/// 1. v2: the sum of the [`USER_SHARE_FIELDS`] present (null = absent), checked;
/// 2. `totalClaimableLamportsUserShare` (v1 positions, and the documented field);
/// 3. a v1 position *without* a custom fee vault and without the total: the sum of the
///    [`V1_POOL_FIELDS`] — its owner is the pools' only fee claimer, so the pools' fees are its
///    own. A v1 custom-vault position without the total is refused (its share cannot be known).
///
/// The ChainActor measures the claimed lamports from the landed transaction anyway (I4); this
/// number only decides whether and what to claim.
pub(crate) fn parse_positions(response: &Value) -> Result<Vec<ClaimablePosition>, BagsError> {
    let positions = array(response, "positions")?;
    positions
        .iter()
        .enumerate()
        .map(|(index, position)| parse_position(position, &format!("positions[{index}]")))
        .collect()
}

fn parse_position(value: &Value, what: &str) -> Result<ClaimablePosition, BagsError> {
    let position = object(value, what)?;
    let base_mint = required_pubkey(position, "baseMint", what)?;
    let is_custom_fee_vault = optional_bool(position, "isCustomFeeVault", what)?;
    let is_migrated = optional_bool(position, "isMigrated", what)?;
    let sum = |fields: &[&str]| -> Result<Option<u64>, BagsError> {
        let mut total: Option<u64> = None;
        for field in fields {
            if let Some(amount) = optional_amount(position, field, what)? {
                total = Some(total.unwrap_or(0).checked_add(amount).ok_or_else(|| {
                    BagsError::Decode(format!("{what}: claimable sum overflows"))
                })?);
            }
        }
        Ok(total)
    };
    let claimable_lamports = match sum(&USER_SHARE_FIELDS)? {
        Some(total) => total,
        None => match optional_amount(position, "totalClaimableLamportsUserShare", what)? {
            Some(total) => total,
            None => match sum(&V1_POOL_FIELDS)? {
                Some(total) if !is_custom_fee_vault => total,
                _ => {
                    return Err(BagsError::Decode(format!(
                        "{what}: no claimable amount (totalClaimableLamportsUserShare is missing)"
                    )));
                }
            },
        },
    };
    Ok(ClaimablePosition {
        base_mint,
        claimable_lamports,
        is_custom_fee_vault,
        is_migrated,
    })
}

/// base58 wire bytes (legacy or v0) → a sanitized [`VersionedTransaction`].
pub(crate) fn decode_transaction(
    encoded: &str,
    what: &str,
) -> Result<VersionedTransaction, BagsError> {
    let bytes = bs58::decode(encoded.trim())
        .into_vec()
        .map_err(|error| BagsError::Decode(format!("{what}: not base58: {error}")))?;
    if bytes.len() > MAX_TRANSACTION_BYTES {
        return Err(BagsError::Decode(format!(
            "{what}: {} bytes, more than a transaction may have ({MAX_TRANSACTION_BYTES})",
            bytes.len()
        )));
    }
    // `bincode::deserialize` reads the legacy format as well as v0 (the version prefix is how
    // they differ); trailing bytes would mean we misread the boundary, so they are refused.
    let transaction: VersionedTransaction = bincode::deserialize(&bytes)
        .map_err(|error| BagsError::Decode(format!("{what}: not a transaction: {error}")))?;
    let consumed = bincode::serialized_size(&transaction)
        .map_err(|error| BagsError::Decode(format!("{what}: {error}")))?;
    if usize::try_from(consumed).ok() != Some(bytes.len()) {
        return Err(BagsError::Decode(format!(
            "{what}: {} bytes, of which the transaction uses {consumed}",
            bytes.len()
        )));
    }
    transaction
        .sanitize()
        .map_err(|error| BagsError::Decode(format!("{what}: malformed transaction: {error}")))?;
    Ok(transaction)
}

/// `{blockhash, lastValidBlockHeight}`.
fn parse_blockhash(value: Option<&Value>, what: &str) -> Result<(Hash, u64), BagsError> {
    let what = format!("{what}.blockhash");
    let value = value.ok_or_else(|| BagsError::Decode(format!("{what} is missing")))?;
    let window = object(value, &what)?;
    let text = required_str(window, "blockhash", &what)?;
    let blockhash = Hash::from_str(text)
        .map_err(|_| BagsError::Decode(format!("{what}.blockhash: {text:?} is not a hash")))?;
    let last_valid_block_height = required_amount(window, "lastValidBlockHeight", &what)?;
    Ok((blockhash, last_valid_block_height))
}

/// One `{<tx field>, blockhash: {blockhash, lastValidBlockHeight}}`, checked: the transaction's
/// own recent blockhash must be the one whose window we were given, or the window we would track
/// for confirmation is not the one that decides the transaction's expiry.
fn parse_unsigned(
    value: &Value,
    tx_field: &str,
    what: &str,
) -> Result<UnsignedTransaction, BagsError> {
    let item = object(value, what)?;
    let encoded = required_str(item, tx_field, what)?;
    let transaction = decode_transaction(encoded, &format!("{what}.{tx_field}"))?;
    let (blockhash, last_valid_block_height) = parse_blockhash(present(item, "blockhash"), what)?;
    let embedded = transaction.message.recent_blockhash();
    if *embedded != blockhash {
        return Err(BagsError::Decode(format!(
            "{what}: the transaction's blockhash {embedded} is not the returned {blockhash}"
        )));
    }
    Ok(UnsignedTransaction {
        transaction,
        blockhash,
        last_valid_block_height,
    })
}

/// `POST /token-launch/claim-txs/v3` → `[{tx, blockhash}]`, order kept.
pub(crate) fn parse_claim_transactions(
    response: &Value,
) -> Result<Vec<UnsignedTransaction>, BagsError> {
    array(response, "claim transactions")?
        .iter()
        .enumerate()
        .map(|(index, item)| parse_unsigned(item, "tx", &format!("claimTransactions[{index}]")))
        .collect()
}

/// `POST /fee-share/partner-config/claim-tx` → `{transactions: [{transaction, blockhash}]}`,
/// order kept (the last one withdraws the vault and must run last).
pub(crate) fn parse_partner_claim_transactions(
    response: &Value,
) -> Result<Vec<UnsignedTransaction>, BagsError> {
    let body = object(response, "partner claim")?;
    let Some(transactions) = present(body, "transactions") else {
        return Err(BagsError::Decode(
            "partner claim.transactions is missing".to_owned(),
        ));
    };
    array(transactions, "partner claim.transactions")?
        .iter()
        .enumerate()
        .map(|(index, item)| parse_unsigned(item, "transaction", &format!("transactions[{index}]")))
        .collect()
}

/// `GET /fee-share/partner-config/stats` → `{claimedFees, unclaimedFees}` (lamport strings).
pub(crate) fn parse_partner_stats(response: &Value) -> Result<PartnerStats, BagsError> {
    let stats = object(response, "partner stats")?;
    Ok(PartnerStats {
        claimed_lamports: required_amount(stats, "claimedFees", "partner stats")?,
        unclaimed_lamports: required_amount(stats, "unclaimedFees", "partner stats")?,
    })
}

/// `GET /trade/quote` → the typed quote, checked against what was asked: the same mints, and
/// `minOutAmount ≤ outAmount` (a quote breaking either is not one we may swap on). `slippageBps`
/// falls back to the requested value when Bags omits it.
pub(crate) fn parse_quote(
    response: Value,
    input_mint: &Pubkey,
    output_mint: &Pubkey,
    requested_slippage_bps: u16,
) -> Result<TradeQuote, BagsError> {
    const WHAT: &str = "quote";
    let quote = object(&response, WHAT)?;
    let quoted_input = required_pubkey(quote, "inputMint", WHAT)?;
    let quoted_output = required_pubkey(quote, "outputMint", WHAT)?;
    if quoted_input != *input_mint || quoted_output != *output_mint {
        return Err(BagsError::Decode(format!(
            "quote is for {quoted_input} -> {quoted_output}, asked {input_mint} -> {output_mint}"
        )));
    }
    let in_amount = required_amount(quote, "inAmount", WHAT)?;
    let out_amount = required_amount(quote, "outAmount", WHAT)?;
    let min_out_amount = required_amount(quote, "minOutAmount", WHAT)?;
    if min_out_amount > out_amount {
        return Err(BagsError::Decode(format!(
            "quote.minOutAmount {min_out_amount} exceeds outAmount {out_amount}"
        )));
    }
    let slippage_bps = match optional_amount(quote, "slippageBps", WHAT)? {
        None => requested_slippage_bps,
        Some(bps) => u16::try_from(bps)
            .ok()
            .filter(|bps| *bps <= 10_000)
            .ok_or_else(|| BagsError::Decode(format!("quote.slippageBps {bps} is above 10000")))?,
    };
    Ok(TradeQuote {
        input_mint: quoted_input,
        output_mint: quoted_output,
        in_amount,
        out_amount,
        min_out_amount,
        slippage_bps,
        raw: response,
    })
}

/// `POST /trade/swap` → `{swapTransaction, computeUnitLimit, lastValidBlockHeight,
/// prioritizationFeeLamports}`. The transaction and its window are required (the send protocol
/// needs both); the other two are informational and default to 0.
pub(crate) fn parse_swap(response: &Value) -> Result<SwapTransaction, BagsError> {
    const WHAT: &str = "swap";
    let swap = object(response, WHAT)?;
    let encoded = required_str(swap, "swapTransaction", WHAT)?;
    let transaction = decode_transaction(encoded, "swap.swapTransaction")?;
    Ok(SwapTransaction {
        transaction,
        last_valid_block_height: required_amount(swap, "lastValidBlockHeight", WHAT)?,
        compute_unit_limit: optional_amount(swap, "computeUnitLimit", WHAT)?.unwrap_or(0),
        prioritization_fee_lamports: optional_amount(swap, "prioritizationFeeLamports", WHAT)?
            .unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use solana_message::{Message, VersionedMessage, v0};
    use solana_sdk::signature::{Keypair, Signer};
    use solana_sdk::transaction::Transaction;

    const NOW: u64 = 1_800_000_000;

    fn key() -> Pubkey {
        Pubkey::new_unique()
    }

    fn decode_error<T: fmt::Debug>(result: Result<T, BagsError>) -> String {
        match result {
            Err(BagsError::Decode(message)) => message,
            other => panic!("expected a decode error, got {other:?}"),
        }
    }

    #[test]
    fn amounts_arrive_as_numbers_or_strings() {
        assert_eq!(parse_amount(&json!(0)), Ok(0));
        assert_eq!(
            parse_amount(&json!(18_446_744_073_709_551_615u64)),
            Ok(u64::MAX)
        );
        assert_eq!(parse_amount(&json!("1500000000")), Ok(1_500_000_000));
        assert_eq!(parse_amount(&json!(" 42 ")), Ok(42));
        for bad in [
            json!(-1),
            json!(1.5),
            json!(1e3),
            json!("-5"),
            json!("1.0"),
            json!("+5"),
            json!(""),
            json!("18446744073709551616"),
            json!(null),
            json!(true),
            json!([1]),
        ] {
            assert!(parse_amount(&bad).is_err(), "{bad} must be refused");
        }
    }

    fn v2_position(mint: &Pubkey) -> Value {
        json!({
            "programId": "FEE2tBhCKAt7shrod19QttSVREUYPiyMzoku1mL1gqVK",
            "isCustomFeeVault": true,
            "baseMint": mint.to_string(),
            "isMigrated": true,
            "virtualPoolClaimableLamportsUserShare": 1_000,
            "dammPoolClaimableLamportsUserShare": "250",
            "totalClaimableLamportsUserShare": 9_999_999,
            "claimableDisplayAmount": 0.00000125,
            "dammPositionInfo": {"position": key().to_string()},
            "someFutureField": {"nested": [1, 2, 3]},
        })
    }

    #[test]
    fn positions_sum_the_per_pool_user_shares_over_the_total() {
        let (a, b, c, d) = (key(), key(), key(), key());
        let mut with_user_vault = v2_position(&b);
        with_user_vault["userVaultClaimableLamportsUserShare"] = json!(5);
        with_user_vault["dammPoolClaimableLamportsUserShare"] = Value::Null;
        let v1 = json!({
            "isCustomFeeVault": true,
            "baseMint": c.to_string(),
            "isMigrated": false,
            "virtualPoolClaimableAmount": 10_000,
            "dammPoolClaimableAmount": null,
            "totalClaimableLamportsUserShare": "3000",
            "customFeeVaultBps": 3000,
        });
        let zero = json!({
            "isCustomFeeVault": false,
            "baseMint": d.to_string(),
            "isMigrated": null,
            "totalClaimableLamportsUserShare": 0,
        });
        let positions =
            parse_positions(&json!([v2_position(&a), with_user_vault, v1, zero])).expect("parse");
        assert_eq!(
            positions,
            vec![
                ClaimablePosition {
                    base_mint: a,
                    claimable_lamports: 1_250,
                    is_custom_fee_vault: true,
                    is_migrated: true,
                },
                ClaimablePosition {
                    base_mint: b,
                    claimable_lamports: 1_005,
                    is_custom_fee_vault: true,
                    is_migrated: true,
                },
                ClaimablePosition {
                    base_mint: c,
                    claimable_lamports: 3_000,
                    is_custom_fee_vault: true,
                    is_migrated: false,
                },
                // Zero kept: the caller decides.
                ClaimablePosition {
                    base_mint: d,
                    claimable_lamports: 0,
                    is_custom_fee_vault: false,
                    is_migrated: false,
                },
            ]
        );
        assert_eq!(parse_positions(&json!([])).expect("empty"), vec![]);
    }

    #[test]
    fn v1_positions_without_the_total() {
        let mint = key();
        let dbc = json!({
            "isCustomFeeVault": false,
            "baseMint": mint.to_string(),
            "isMigrated": true,
            "virtualPoolClaimableAmount": 700,
            "dammPoolClaimableAmount": "300",
        });
        assert_eq!(
            parse_positions(&json!([dbc])).expect("dbc")[0].claimable_lamports,
            1_000
        );
        let custom = json!({
            "isCustomFeeVault": true,
            "baseMint": mint.to_string(),
            "isMigrated": false,
            "virtualPoolClaimableAmount": 700,
        });
        assert!(decode_error(parse_positions(&json!([custom]))).contains("no claimable amount"));
    }

    #[test]
    fn malformed_positions_are_decode_errors_naming_the_field() {
        let mint = key();
        let mut negative = v2_position(&mint);
        negative["dammPoolClaimableLamportsUserShare"] = json!(-3);
        let message = decode_error(parse_positions(&json!([v2_position(&mint), negative])));
        assert!(
            message.contains("positions[1].dammPoolClaimableLamportsUserShare"),
            "{message}"
        );
        let mut fraction = v2_position(&mint);
        fraction["virtualPoolClaimableLamportsUserShare"] = json!("1.5");
        decode_error(parse_positions(&json!([fraction])));
        let mut overflow = v2_position(&mint);
        overflow["virtualPoolClaimableLamportsUserShare"] = json!(u64::MAX);
        assert!(decode_error(parse_positions(&json!([overflow]))).contains("overflows"));
        let mut bad_mint = v2_position(&mint);
        bad_mint["baseMint"] = json!("0OIl");
        assert!(decode_error(parse_positions(&json!([bad_mint]))).contains("baseMint"));
        decode_error(parse_positions(&json!({"positions": []})));
    }

    fn claim_item(transaction: &VersionedTransaction, blockhash: &Hash) -> Value {
        json!({
            "tx": bs58::encode(bincode::serialize(transaction).expect("serialize")).into_string(),
            "blockhash": {"blockhash": blockhash.to_string(), "lastValidBlockHeight": 321},
        })
    }

    fn legacy(payer: &Pubkey, blockhash: Hash) -> VersionedTransaction {
        let vault = Keypair::new();
        let transfer = solana_system_interface::instruction::transfer(&vault.pubkey(), payer, 77);
        let message = Message::new_with_blockhash(&[transfer], Some(payer), &blockhash);
        let mut transaction = Transaction::new_unsigned(message);
        transaction.partial_sign(&[&vault], blockhash);
        transaction.into()
    }

    fn version_zero(payer: &Pubkey, blockhash: Hash) -> VersionedTransaction {
        let transfer = solana_system_interface::instruction::transfer(payer, &key(), 5);
        let message =
            v0::Message::try_compile(payer, &[transfer], &[], blockhash).expect("compile");
        VersionedTransaction {
            signatures: vec![Default::default()],
            message: VersionedMessage::V0(message),
        }
    }

    #[test]
    fn claim_transactions_decode_legacy_and_v0_in_order() {
        let payer = key();
        let (first_hash, second_hash) = (Hash::new_unique(), Hash::new_unique());
        let first = legacy(&payer, first_hash);
        let second = version_zero(&payer, second_hash);
        let parsed = parse_claim_transactions(&json!([
            claim_item(&first, &first_hash),
            claim_item(&second, &second_hash),
        ]))
        .expect("parse");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].transaction, first);
        assert!(matches!(
            parsed[0].transaction.message,
            VersionedMessage::Legacy(_)
        ));
        assert_eq!(
            parsed[0].transaction.message.static_account_keys()[0],
            payer
        );
        assert_eq!(parsed[0].blockhash, first_hash);
        assert_eq!(parsed[0].last_valid_block_height, 321);
        assert_eq!(parsed[1].transaction, second);
        assert!(matches!(
            parsed[1].transaction.message,
            VersionedMessage::V0(_)
        ));
        assert!(
            parse_claim_transactions(&json!([]))
                .expect("none")
                .is_empty()
        );
    }

    #[test]
    fn claim_transactions_are_checked() {
        let payer = key();
        let blockhash = Hash::new_unique();
        let transaction = legacy(&payer, blockhash);

        let other_hash = claim_item(&transaction, &Hash::new_unique());
        assert!(decode_error(parse_claim_transactions(&json!([other_hash]))).contains("blockhash"));

        let mut not_base58 = claim_item(&transaction, &blockhash);
        not_base58["tx"] = json!("0OIl");
        assert!(decode_error(parse_claim_transactions(&json!([not_base58]))).contains("base58"));

        let mut garbage = claim_item(&transaction, &blockhash);
        garbage["tx"] = json!(bs58::encode([1u8, 2, 3]).into_string());
        decode_error(parse_claim_transactions(&json!([garbage])));

        let mut trailing = bincode::serialize(&transaction).expect("serialize");
        trailing.push(0);
        let mut with_trailing = claim_item(&transaction, &blockhash);
        with_trailing["tx"] = json!(bs58::encode(trailing).into_string());
        decode_error(parse_claim_transactions(&json!([with_trailing])));

        let mut oversized = claim_item(&transaction, &blockhash);
        oversized["tx"] = json!(bs58::encode(vec![7u8; MAX_TRANSACTION_BYTES + 1]).into_string());
        decode_error(parse_claim_transactions(&json!([oversized])));

        let mut no_window = claim_item(&transaction, &blockhash);
        no_window["blockhash"] = Value::Null;
        decode_error(parse_claim_transactions(&json!([no_window])));

        let mut base64 = claim_item(&transaction, &blockhash);
        base64["tx"] = json!("AQID+/==");
        decode_error(parse_claim_transactions(&json!([base64])));
    }

    #[test]
    fn partner_payloads() {
        assert_eq!(
            parse_partner_stats(&json!({"claimedFees": "10", "unclaimedFees": 2_500_000_000u64}))
                .expect("stats"),
            PartnerStats {
                claimed_lamports: 10,
                unclaimed_lamports: 2_500_000_000,
            }
        );
        decode_error(parse_partner_stats(&json!({"claimedFees": "10"})));
        decode_error(parse_partner_stats(
            &json!({"claimedFees": "1e3", "unclaimedFees": "0"}),
        ));

        let partner = key();
        let blockhash = Hash::new_unique();
        let transaction = version_zero(&partner, blockhash);
        let mut item = claim_item(&transaction, &blockhash);
        let encoded = item["tx"].take();
        item["transaction"] = encoded;
        let parsed =
            parse_partner_claim_transactions(&json!({"transactions": [item]})).expect("claim");
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].transaction, transaction);
        assert!(
            parse_partner_claim_transactions(&json!({"transactions": []}))
                .expect("none")
                .is_empty()
        );
        decode_error(parse_partner_claim_transactions(&json!([])));
    }

    fn quote_json(input: &Pubkey, output: &Pubkey) -> Value {
        json!({
            "requestId": "r-1",
            "contextSlot": 5,
            "inAmount": "1000000000",
            "inputMint": input.to_string(),
            "outAmount": "150000000",
            "outputMint": output.to_string(),
            "minOutAmount": "149250000",
            "otherAmountThreshold": "149250000",
            "priceImpactPct": "0",
            "slippageBps": 50,
            "routePlan": [],
            "platformFee": null,
        })
    }

    #[test]
    fn quotes_keep_the_raw_body_and_are_checked() {
        let (sol, usdc) = (key(), key());
        let quote = parse_quote(quote_json(&sol, &usdc), &sol, &usdc, 50).expect("quote");
        assert_eq!(
            (
                quote.in_amount,
                quote.out_amount,
                quote.min_out_amount,
                quote.slippage_bps
            ),
            (1_000_000_000, 150_000_000, 149_250_000, 50)
        );
        assert_eq!(quote.raw, quote_json(&sol, &usdc));

        let mut no_bps = quote_json(&sol, &usdc);
        no_bps
            .as_object_mut()
            .expect("object")
            .remove("slippageBps");
        assert_eq!(
            parse_quote(no_bps, &sol, &usdc, 75)
                .expect("quote")
                .slippage_bps,
            75
        );

        assert!(
            decode_error(parse_quote(quote_json(&usdc, &sol), &sol, &usdc, 50)).contains("asked")
        );
        let mut inverted = quote_json(&sol, &usdc);
        inverted["minOutAmount"] = json!("150000001");
        decode_error(parse_quote(inverted, &sol, &usdc, 50));
        let mut negative = quote_json(&sol, &usdc);
        negative["outAmount"] = json!(-1);
        decode_error(parse_quote(negative, &sol, &usdc, 50));
        let mut bps = quote_json(&sol, &usdc);
        bps["slippageBps"] = json!(10_001);
        decode_error(parse_quote(bps, &sol, &usdc, 50));
    }

    #[test]
    fn swaps_decode_and_default_the_informational_fields() {
        let user = key();
        let transaction = version_zero(&user, Hash::new_unique());
        let encoded =
            bs58::encode(bincode::serialize(&transaction).expect("serialize")).into_string();
        let swap = parse_swap(&json!({
            "swapTransaction": encoded,
            "computeUnitLimit": 120_000,
            "lastValidBlockHeight": "999",
            "prioritizationFeeLamports": 1_200,
        }))
        .expect("swap");
        assert_eq!(swap.transaction, transaction);
        assert_eq!(
            (
                swap.last_valid_block_height,
                swap.compute_unit_limit,
                swap.prioritization_fee_lamports
            ),
            (999, 120_000, 1_200)
        );
        let minimal = parse_swap(&json!({
            "swapTransaction": encoded,
            "lastValidBlockHeight": 1,
            "computeUnitLimit": null,
        }))
        .expect("minimal");
        assert_eq!(
            (
                minimal.compute_unit_limit,
                minimal.prioritization_fee_lamports
            ),
            (0, 0)
        );
        decode_error(parse_swap(&json!({"lastValidBlockHeight": 1})));
        decode_error(parse_swap(&json!({"swapTransaction": encoded})));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        headers
    }

    #[test]
    fn envelopes_unwrap_and_errors_map() {
        let none = HeaderMap::new();
        let ok = json!({"success": true, "response": [1, 2]});
        assert_eq!(
            interpret(200, &none, Some(ok), b"", NOW).expect("ok"),
            json!([1, 2])
        );

        let refused = json!({"success": false, "error": "Invalid wallet"});
        match interpret(200, &none, Some(refused), b"", NOW) {
            Err(error @ BagsError::Status { status: 200, .. }) => {
                assert_eq!(error.transience(), Transience::Permanent);
                assert!(error.to_string().contains("Invalid wallet"), "{error}");
            }
            other => panic!("{other:?}"),
        }

        let unauthorized = json!({"success": false, "error": "Invalid API key"});
        match interpret(401, &none, Some(unauthorized), b"", NOW) {
            Err(error @ BagsError::Status { status: 401, .. }) => {
                assert_eq!(error.transience(), Transience::Permanent);
                assert_eq!(error.to_string(), "bags answered 401: Invalid API key");
            }
            other => panic!("{other:?}"),
        }

        // A proxy's HTML 502: transient, with an excerpt of the body.
        let bad_gateway =
            interpret(502, &none, None, b"<html>bad gateway</html>", NOW).expect_err("502");
        assert_eq!(
            bad_gateway.transience(),
            Transience::Transient { retry_after: None }
        );
        assert!(bad_gateway.to_string().contains("bad gateway"));
        let empty = interpret(503, &none, None, b"", NOW).expect_err("503");
        assert!(empty.to_string().contains("Service Unavailable"), "{empty}");

        decode_error(interpret(
            200,
            &none,
            None,
            b"{\"success\":true,\"respo",
            NOW,
        ));
        decode_error(interpret(200, &none, Some(json!([1])), b"", NOW));
        decode_error(interpret(
            200,
            &none,
            Some(json!({"response": 1})),
            b"",
            NOW,
        ));
    }

    #[test]
    fn rate_limits_say_when_to_come_back() {
        let body = json!({
            "success": false, "error": "Rate limit exceeded",
            "limit": 1000, "remaining": 0, "resetTime": NOW + 42,
        });
        // Retry-After wins.
        let with_header = headers(&[("retry-after", "7"), ("x-ratelimit-reset", "1")]);
        let error = interpret(429, &with_header, Some(body.clone()), b"", NOW).expect_err("429");
        assert_eq!(
            error.transience(),
            Transience::Transient {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        // Then the body's resetTime.
        let error = interpret(429, &HeaderMap::new(), Some(body), b"", NOW).expect_err("429");
        assert_eq!(
            error.transience(),
            Transience::Transient {
                retry_after: Some(Duration::from_secs(42))
            }
        );
        // Then X-RateLimit-Reset; a reset in the past still waits a second.
        let reset = headers(&[("x-ratelimit-reset", &(NOW + 9).to_string())]);
        let error = interpret(429, &reset, None, b"", NOW).expect_err("429");
        assert_eq!(
            error.transience(),
            Transience::Transient {
                retry_after: Some(Duration::from_secs(9))
            }
        );
        let past = headers(&[("x-ratelimit-reset", &(NOW - 5).to_string())]);
        assert!(matches!(
            interpret(429, &past, None, b"", NOW),
            Err(BagsError::Status { retry_after: Some(delay), .. }) if delay == Duration::from_secs(1)
        ));
        // An HTTP date.
        let date = chrono::DateTime::from_timestamp(i64::try_from(NOW).expect("i64") + 30, 0)
            .expect("date")
            .to_rfc2822();
        let dated = headers(&[("retry-after", &date)]);
        assert_eq!(
            retry_after_header(&dated, NOW),
            Some(Duration::from_secs(30))
        );
        // 5xx honours Retry-After only.
        let unavailable = interpret(503, &with_header, None, b"", NOW).expect_err("503");
        assert_eq!(
            unavailable.transience(),
            Transience::Transient {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert!(matches!(
            interpret(500, &reset, None, b"", NOW),
            Err(BagsError::Status {
                retry_after: None,
                ..
            })
        ));
    }

    #[test]
    fn classification() {
        let budget = BagsError::BudgetExhausted {
            retry_after: Duration::from_secs(3),
        };
        assert_eq!(
            budget.transience(),
            Transience::Transient {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(
            BagsError::Timeout.transience(),
            Transience::Transient { retry_after: None }
        );
        assert_eq!(
            BagsError::Connect("refused".into()).transience(),
            Transience::Transient { retry_after: None }
        );
        assert_eq!(
            BagsError::Decode("x".into()).transience(),
            Transience::Permanent
        );
        let not_found = BagsError::Status {
            status: 404,
            message: "Not found".into(),
            retry_after: None,
        };
        assert_eq!(not_found.transience(), Transience::Permanent);
    }
}
