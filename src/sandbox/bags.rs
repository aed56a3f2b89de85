//! The Bags.fm public API fake: `/ping` and the `/api/v1` routes the daemon uses (claimable
//! positions, claim transactions, trade quote and swap, partner fees) with Bags' envelopes, API-key
//! check, rate-limit headers and a sliding-window budget, and the seeding/control API behind them.
//!
//! The transactions it hands out are real: claims move lamports out of fee-vault accounts whose
//! keypairs the fake holds, swaps move SOL to and USDC from the fake's pool, each partially signed
//! by the fake so that the client's signature is the only one missing. Balances live in the shared
//! [`Ledger`], so a claim or swap changes them only when the transaction lands there.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Value, json};
use solana_message::{Message, VersionedMessage, v0};
use solana_sdk::hash::Hash;
use solana_sdk::instruction::Instruction;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signature, Signer};
use solana_sdk::transaction::{Transaction, VersionedTransaction};

use super::ledger::{
    Ledger, USDC_DECIMALS, USDC_MINT_MAINNET, WRAPPED_SOL_MINT, associated_token_address,
    create_associated_token_account_idempotent_instruction, prioritization_fee_lamports,
    set_compute_unit_limit_instruction, set_compute_unit_price_instruction,
    transfer_checked_instruction,
};

/// The API key `BagsOptions::default()` accepts.
pub const SANDBOX_API_KEY: &str = "bags-sandbox-api-key-0000000000000000";
/// Bags' fee-share v2 program (the `programId` of v2 positions; bags-sdk IDL `fee-share-v2`).
pub const FEE_SHARE_V2_PROGRAM_ID: Pubkey =
    Pubkey::from_str_const("FEE2tBhCKAt7shrod19QttSVREUYPiyMzoku1mL1gqVK");
/// Meteora's dynamic bonding curve program, under which the fake derives virtual-pool addresses.
pub const METEORA_DBC_PROGRAM_ID: Pubkey =
    Pubkey::from_str_const("dbcij3LWUppWqq96dh6gJWwBifmcGfLSB5D4DuSMaqN");

const LAMPORTS_PER_SOL: u128 = 1_000_000_000;
const MAX_BPS: u16 = 10_000;
/// What `slippageMode=auto` picks (reported back in `slippageBps`).
pub const AUTO_SLIPPAGE_BPS: u16 = 50;
/// What a quote reports as `simulatedComputeUnits`; the swap's limit adds a margin on top.
const SIMULATED_COMPUTE_UNITS: u32 = 95_000;
const SWAP_COMPUTE_UNIT_LIMIT: u32 = 120_000;
/// The venue a quote's single route goes through.
const VENUE: &str = "Meteora DAMM v2";
const SOL_DECIMALS: u8 = 9;
/// Lamports the pool keeps to stay rent-exempt (mainnet's minimum for a data-less account); never
/// offered as liquidity.
const POOL_RENT_RESERVE: u64 = 890_880;

/// How the fake behaves; `Default` gives one API key ([`SANDBOX_API_KEY`]), the mainnet USDC mint
/// address, 150 USDC per SOL, 1,000 requests per sliding hour and 1,000 SOL of liquidity.
#[derive(Clone, Debug)]
pub struct BagsOptions {
    /// Every key belongs to the one sandbox user: they share one rate-limit budget, as Bags'
    /// budget is per user across all of the user's keys.
    pub api_keys: Vec<String>,
    pub usdc_mint: Pubkey,
    /// USDC base units per 1 SOL: the quoting rate.
    pub usdc_per_sol: u64,
    /// Requests admitted per sliding window (Bags: 1,000 per hour).
    pub rate_limit_per_hour: u32,
    /// The window's length: one hour, shorter in tests that watch the window slide.
    pub rate_limit_window: Duration,
    /// Largest SOL side of a trade (lamports); larger quotes → 400 insufficient liquidity.
    pub max_swap_lamports: u64,
    /// How far below `outAmount` a swap delivers, in bps of `outAmount` (never below
    /// `minOutAmount`): 0 delivers exactly the quote; more lets a test see the client measure the
    /// real amount instead of trusting the quote.
    pub delivery_shortfall_bps: u16,
    /// The compute-unit price embedded in swap transactions (micro-lamports per unit).
    pub compute_unit_price_micro_lamports: u64,
}

impl Default for BagsOptions {
    fn default() -> Self {
        Self {
            api_keys: vec![SANDBOX_API_KEY.to_owned()],
            usdc_mint: USDC_MINT_MAINNET,
            usdc_per_sol: 150_000_000,
            rate_limit_per_hour: 1_000,
            rate_limit_window: Duration::from_secs(3_600),
            max_swap_lamports: 1_000 * LAMPORTS_PER_SOL as u64,
            delivery_shortfall_bps: 0,
            compute_unit_price_micro_lamports: 10_000,
        }
    }
}

impl BagsOptions {
    /// The defaults with these keys and this USDC mint.
    pub fn new(api_keys: Vec<String>, usdc_mint: Pubkey) -> Self {
        Self {
            api_keys,
            usdc_mint,
            ..Self::default()
        }
    }
}

/// One fee position as the fake (and its control API) sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PositionInfo {
    #[serde(serialize_with = "as_base58")]
    pub owner: Pubkey,
    #[serde(serialize_with = "as_base58")]
    pub base_mint: Pubkey,
    /// The fee-vault account holding exactly the unclaimed fees.
    #[serde(serialize_with = "as_base58")]
    pub vault: Pubkey,
    /// The vault's lamports in the ledger now.
    pub claimable_lamports: u64,
    /// Every lamport ever credited to the position.
    pub credited_lamports: u64,
    /// `credited − claimable`: what claims have taken out.
    pub claimed_lamports: u64,
}

fn as_base58<S: serde::Serializer>(key: &Pubkey, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&key.to_string())
}

/// The Bags.fm fake. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct BagsFake {
    inner: Arc<Inner>,
}

struct Inner {
    ledger: Ledger,
    options: BagsOptions,
    /// The swap pool's authority: owns the pool's USDC account and receives the swapped SOL.
    pool: Keypair,
    pool_usdc: Pubkey,
    state: Mutex<Positions>,
    limiter: Mutex<RateWindow>,
}

#[derive(Default)]
struct Positions {
    /// (owner, base mint) → position.
    positions: BTreeMap<(Pubkey, Pubkey), Vault>,
    /// partner wallet → partner fee vault.
    partners: BTreeMap<Pubkey, Vault>,
}

struct Vault {
    keypair: Arc<Keypair>,
    credited: u64,
}

impl Vault {
    fn new() -> Self {
        Self {
            keypair: Arc::new(Keypair::new()),
            credited: 0,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state stays consistent between statements, so a panic elsewhere must not take the fake
    // down with it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BagsFake {
    pub fn new(ledger: Ledger, options: BagsOptions) -> Self {
        if ledger.mint_decimals(&options.usdc_mint).is_none() {
            ledger.create_mint(&options.usdc_mint, USDC_DECIMALS);
        }
        let pool = Keypair::new();
        let pool_usdc = associated_token_address(&pool.pubkey(), &options.usdc_mint);
        // A live pool: its USDC account exists (USDC → SOL swaps pay into it before any funding)
        // and its SOL account is rent-exempt (the first SOL → USDC swap may pay in less than the
        // rent-exempt minimum, which the ledger would refuse for a new account).
        ledger.mint_to(&pool_usdc, &options.usdc_mint, &pool.pubkey(), 0);
        ledger.airdrop(&pool.pubkey(), POOL_RENT_RESERVE);
        let limiter = RateWindow::new(options.rate_limit_per_hour, options.rate_limit_window);
        Self {
            inner: Arc::new(Inner {
                ledger,
                options,
                pool,
                pool_usdc,
                state: Mutex::new(Positions::default()),
                limiter: Mutex::new(limiter),
            }),
        }
    }

    pub fn options(&self) -> &BagsOptions {
        &self.inner.options
    }

    /// The swap pool's authority (receives swapped SOL, owns the pool's USDC account).
    pub fn pool_address(&self) -> Pubkey {
        self.inner.pool.pubkey()
    }

    /// The pool's USDC token account.
    pub fn pool_usdc_account(&self) -> Pubkey {
        self.inner.pool_usdc
    }

    /// Seeding: credits `claimable_lamports` of fees to `owner`'s position in `base_mint`,
    /// creating the position (and its fee vault, whose keypair the fake holds) on first use.
    /// Returns the vault's address.
    pub fn add_position(
        &self,
        owner: &Pubkey,
        base_mint: &Pubkey,
        claimable_lamports: u64,
    ) -> Pubkey {
        let vault = {
            let mut state = lock(&self.inner.state);
            let vault = state
                .positions
                .entry((*owner, *base_mint))
                .or_insert_with(Vault::new);
            vault.credited = vault.credited.saturating_add(claimable_lamports);
            vault.keypair.pubkey()
        };
        self.inner.ledger.airdrop(&vault, claimable_lamports);
        vault
    }

    /// Seeding: raises `partner`'s unclaimed partner fees to `lamports` (creating the partner
    /// config on first use). Fees cannot be un-earned, so a value below the current unclaimed
    /// amount changes nothing.
    pub fn set_partner_fees(&self, partner: &Pubkey, lamports: u64) {
        let (vault, top_up) = {
            let mut state = lock(&self.inner.state);
            let vault = state.partners.entry(*partner).or_insert_with(Vault::new);
            let address = vault.keypair.pubkey();
            let top_up = lamports.saturating_sub(self.inner.ledger.lamports(&address));
            vault.credited = vault.credited.saturating_add(top_up);
            (address, top_up)
        };
        if top_up > 0 {
            self.inner.ledger.airdrop(&vault, top_up);
        }
    }

    /// Seeding: adds `usdc_amount` (base units) to the pool's USDC account.
    pub fn fund_pool(&self, usdc_amount: u64) {
        let options = &self.inner.options;
        self.inner.ledger.mint_to(
            &self.inner.pool_usdc,
            &options.usdc_mint,
            &self.inner.pool.pubkey(),
            usdc_amount,
        );
    }

    /// Seeding: adds lamports to the pool, the SOL side of USDC → SOL swaps.
    pub fn fund_pool_lamports(&self, lamports: u64) {
        self.inner
            .ledger
            .airdrop(&self.inner.pool.pubkey(), lamports);
    }

    /// Every position of `owner`, claimed-out ones included, ordered by mint.
    pub fn positions(&self, owner: &Pubkey) -> Vec<PositionInfo> {
        let vaults: Vec<(Pubkey, Pubkey, u64)> = {
            let state = lock(&self.inner.state);
            state
                .positions
                .range((*owner, Pubkey::default())..)
                .take_while(|((position_owner, _), _)| position_owner == owner)
                .map(|((_, mint), vault)| (*mint, vault.keypair.pubkey(), vault.credited))
                .collect()
        };
        vaults
            .into_iter()
            .map(|(base_mint, vault, credited)| {
                let claimable = self.inner.ledger.lamports(&vault);
                PositionInfo {
                    owner: *owner,
                    base_mint,
                    vault,
                    claimable_lamports: claimable,
                    credited_lamports: credited,
                    claimed_lamports: credited.saturating_sub(claimable),
                }
            })
            .collect()
    }

    /// `(claimed, unclaimed)` partner fees in lamports, `None` without a partner config.
    pub fn partner_fees(&self, partner: &Pubkey) -> Option<(u64, u64)> {
        let (vault, credited) = {
            let state = lock(&self.inner.state);
            let vault = state.partners.get(partner)?;
            (vault.keypair.pubkey(), vault.credited)
        };
        let unclaimed = self.inner.ledger.lamports(&vault);
        Some((credited.saturating_sub(unclaimed), unclaimed))
    }

    /// The rate-limit budget now: `(limit, used, remaining, reset unix s, used per key)`.
    pub fn rate_limit_usage(&self) -> RateLimitUsage {
        let now = Instant::now();
        let mut limiter = lock(&self.inner.limiter);
        limiter.prune(now);
        let snapshot = limiter.snapshot(now);
        let per_key = self
            .inner
            .options
            .api_keys
            .iter()
            .enumerate()
            .map(|(index, key)| (key.clone(), limiter.used_by(index)))
            .collect();
        RateLimitUsage {
            limit: snapshot.limit,
            window_secs: self.inner.options.rate_limit_window.as_secs(),
            used: u32::try_from(limiter.admitted.len()).unwrap_or(u32::MAX),
            remaining: snapshot.remaining,
            reset_time: snapshot.reset_unix,
            per_key,
        }
    }

    /// The public API: `GET /ping` and everything under `/api/v1`.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route(
                "/token-launch/claimable-positions",
                get(claimable_positions),
            )
            .route("/token-launch/claim-txs/v3", post(claim_transactions))
            .route("/trade/quote", get(trade_quote))
            .route("/trade/swap", post(trade_swap))
            .route("/fee-share/partner-config/stats", get(partner_stats))
            .route("/fee-share/partner-config/claim-tx", post(partner_claim))
            .fallback(not_found)
            .method_not_allowed_fallback(not_found)
            .layer(middleware::from_fn_with_state(self.clone(), api_gate));
        Router::new()
            .route("/ping", get(|| async { Json(json!({"message": "pong"})) }))
            .nest("/api/v1", api)
            .fallback(not_found)
            .with_state(self.clone())
    }

    /// The control API: `GET/POST /_sandbox/bags/positions`, `GET /_sandbox/bags/rate-limit`,
    /// `GET /_sandbox/bags/pool`, `POST /_sandbox/bags/partner-fees`.
    pub fn control_routes(&self) -> Router {
        Router::new()
            .route(
                "/_sandbox/bags/positions",
                get(control_positions).post(control_add_position),
            )
            .route("/_sandbox/bags/rate-limit", get(control_rate_limit))
            .route("/_sandbox/bags/pool", get(control_pool))
            .route("/_sandbox/bags/partner-fees", post(control_partner_fees))
            .with_state(self.clone())
    }

    fn vault_keypair(&self, owner: &Pubkey, mint: &Pubkey) -> Option<Arc<Keypair>> {
        let state = lock(&self.inner.state);
        state
            .positions
            .get(&(*owner, *mint))
            .map(|vault| vault.keypair.clone())
    }

    fn is_known_mint(&self, mint: &Pubkey) -> bool {
        let state = lock(&self.inner.state);
        state
            .positions
            .keys()
            .any(|(_, position_mint)| position_mint == mint)
    }
}

/// What `GET /_sandbox/bags/rate-limit` reports.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitUsage {
    pub limit: u32,
    pub window_secs: u64,
    /// Requests admitted in the current window, all keys together (one shared budget).
    pub used: u32,
    pub remaining: u32,
    pub reset_time: u64,
    /// API key → requests of the current window made with it.
    pub per_key: BTreeMap<String, u32>,
}

// ---------------------------------------------------------------------------------------------
// Envelopes and errors

/// A Bags error: `{"success":false,"error":"…"}` with its status.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    fn insufficient_liquidity() -> Self {
        Self::bad_request("Insufficient liquidity for this trade")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"success": false, "error": self.message})),
        )
            .into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

fn success(response: Value) -> ApiResult {
    Ok(Json(json!({"success": true, "response": response})))
}

async fn not_found() -> ApiError {
    ApiError::not_found("Not found")
}

fn query_params(
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, ApiError> {
    query
        .map(|Query(params)| params)
        .map_err(|rejection| ApiError::bad_request(format!("Invalid query string: {rejection}")))
}

fn json_body(body: &Bytes) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ApiError::bad_request("Request body must be a JSON object")),
        Err(error) => Err(ApiError::bad_request(format!("Invalid JSON body: {error}"))),
    }
}

/// A required base58 public key, from a query parameter or a body field.
fn parse_pubkey(name: &str, value: Option<&str>) -> Result<Pubkey, ApiError> {
    let value = value.ok_or_else(|| ApiError::bad_request(format!("{name} is required")))?;
    if value.is_empty() {
        return Err(ApiError::bad_request(format!("{name} is required")));
    }
    Pubkey::from_str(value).map_err(|_| {
        ApiError::bad_request(format!("Invalid {name}: not a base58 Solana public key"))
    })
}

fn body_str<'a>(
    body: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(ApiError::bad_request(format!("{name} must be a string"))),
    }
}

// ---------------------------------------------------------------------------------------------
// API key and rate limit

/// A sliding window of admitted requests, shared by every key of the one sandbox user.
#[derive(Debug)]
struct RateWindow {
    limit: u32,
    window: Duration,
    /// When each admitted request arrived, and with which key (index into the options' keys).
    admitted: VecDeque<(Instant, usize)>,
    /// One instant and the wall time at that instant: reset times are converted through it, so
    /// the same reset instant always gives the same unix second (headers and the 429 body agree).
    anchor: (Instant, SystemTime),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RateSnapshot {
    limit: u32,
    remaining: u32,
    /// Until a slot frees up: the oldest admitted request leaves the window (a full window
    /// from now when nothing is in it).
    reset_after: Duration,
    /// That moment as unix seconds, rounded up so that it is never early.
    reset_unix: u64,
}

impl RateWindow {
    fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            admitted: VecDeque::new(),
            anchor: (Instant::now(), SystemTime::now()),
        }
    }

    fn unix_seconds(&self, at: Instant) -> u64 {
        let (anchor, wall) = self.anchor;
        let wall = match at.checked_duration_since(anchor) {
            Some(after) => wall.checked_add(after),
            None => wall.checked_sub(anchor.duration_since(at)),
        }
        .unwrap_or(wall);
        let since_epoch = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        since_epoch.as_secs() + u64::from(since_epoch.subsec_nanos() > 0)
    }

    fn prune(&mut self, now: Instant) {
        while let Some(&(at, _)) = self.admitted.front() {
            if now.saturating_duration_since(at) >= self.window {
                self.admitted.pop_front();
            } else {
                break;
            }
        }
    }

    fn snapshot(&self, now: Instant) -> RateSnapshot {
        let used = u32::try_from(self.admitted.len()).unwrap_or(u32::MAX);
        let reset_at = match self.admitted.front() {
            Some(&(oldest, _)) => oldest + self.window,
            None => now + self.window,
        };
        RateSnapshot {
            limit: self.limit,
            remaining: self.limit.saturating_sub(used),
            reset_after: reset_at.saturating_duration_since(now),
            reset_unix: self.unix_seconds(reset_at),
        }
    }

    /// Admits a request made with key `key` at `now` if the window has room (`Ok`, counted) or
    /// refuses it (`Err`, not counted: refused requests do not extend the wait).
    fn admit(&mut self, now: Instant, key: usize) -> Result<RateSnapshot, RateSnapshot> {
        self.prune(now);
        if self.admitted.len() >= self.limit as usize {
            return Err(self.snapshot(now));
        }
        self.admitted.push_back((now, key));
        Ok(self.snapshot(now))
    }

    fn used_by(&self, key: usize) -> u32 {
        let used = self.admitted.iter().filter(|(_, k)| *k == key).count();
        u32::try_from(used).unwrap_or(u32::MAX)
    }
}

fn rate_headers(headers: &mut HeaderMap, snapshot: &RateSnapshot) {
    let values = [
        ("x-ratelimit-limit", snapshot.limit.to_string()),
        ("x-ratelimit-remaining", snapshot.remaining.to_string()),
        ("x-ratelimit-reset", snapshot.reset_unix.to_string()),
    ];
    for (name, value) in values {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

/// Every `/api/v1` request: the API key first (401, not counted: it belongs to no user), then
/// the budget (429, not counted), then the route; the `X-RateLimit-*` headers go on all three.
async fn api_gate(State(fake): State<BagsFake>, request: Request, next: Next) -> Response {
    let key = request
        .headers()
        .get("x-api-key")
        .and_then(|value| value.to_str().ok())
        .and_then(|key| {
            fake.inner
                .options
                .api_keys
                .iter()
                .position(|known| known == key)
        });
    let now = Instant::now();
    let Some(key) = key else {
        let snapshot = {
            let mut limiter = lock(&fake.inner.limiter);
            limiter.prune(now);
            limiter.snapshot(now)
        };
        let mut response = ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "Invalid API key".to_owned(),
        }
        .into_response();
        rate_headers(response.headers_mut(), &snapshot);
        return response;
    };
    let admitted = lock(&fake.inner.limiter).admit(now, key);
    match admitted {
        Ok(snapshot) => {
            let mut response = next.run(request).await;
            rate_headers(response.headers_mut(), &snapshot);
            response
        }
        Err(snapshot) => {
            let body = json!({
                "success": false,
                "error": "Rate limit exceeded",
                "limit": snapshot.limit,
                "remaining": 0,
                "resetTime": snapshot.reset_unix,
            });
            let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
            rate_headers(response.headers_mut(), &snapshot);
            response
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Claimable positions and claims

/// A deterministic stand-in for the token's Meteora virtual pool.
fn virtual_pool_address(base_mint: &Pubkey) -> Pubkey {
    Pubkey::find_program_address(
        &[b"pool", base_mint.as_ref(), WRAPPED_SOL_MINT.as_ref()],
        &METEORA_DBC_PROGRAM_ID,
    )
    .0
}

/// A fee-share v2 pre-migration position (bags-sdk
/// `MeteoraClaimablePositionWithCustomFeeVaultV2PreMigration`), plus the optional
/// `virtualPoolAddress` and `claimableDisplayAmount` the docs list.
fn position_json(position: &PositionInfo) -> Value {
    let pool = virtual_pool_address(&position.base_mint).to_string();
    json!({
        "programId": FEE_SHARE_V2_PROGRAM_ID.to_string(),
        "isCustomFeeVault": true,
        "user": position.owner.to_string(),
        "baseMint": position.base_mint.to_string(),
        "quoteMint": WRAPPED_SOL_MINT.to_string(),
        "isMigrated": false,
        "claimerIndex": 0,
        "userBps": MAX_BPS,
        "virtualPool": pool,
        "virtualPoolAddress": pool,
        "virtualPoolClaimableLamportsUserShare": position.claimable_lamports,
        "totalClaimableLamportsUserShare": position.claimable_lamports,
        "claimableDisplayAmount": position.claimable_lamports as f64 / LAMPORTS_PER_SOL as f64,
    })
}

/// `GET /token-launch/claimable-positions?wallet=`: positions with fees to claim now (claimed-out
/// positions are omitted, as the real API lists what can be claimed).
async fn claimable_positions(
    State(fake): State<BagsFake>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let params = query_params(query)?;
    let wallet = parse_pubkey("wallet", params.get("wallet").map(String::as_str))?;
    let positions: Vec<Value> = fake
        .positions(&wallet)
        .iter()
        .filter(|position| position.claimable_lamports > 0)
        .map(position_json)
        .collect();
    success(Value::Array(positions))
}

fn blockhash_json(blockhash: &Hash, last_valid_block_height: u64) -> Value {
    json!({
        "blockhash": blockhash.to_string(),
        "lastValidBlockHeight": last_valid_block_height,
    })
}

/// A legacy transaction paid by `payer` moving `lamports` from `vault` to `payer`, signed by the
/// vault only (the payer's slot stays all zeros).
fn vault_withdrawal_legacy(
    vault: &Keypair,
    payer: &Pubkey,
    lamports: u64,
    blockhash: Hash,
) -> Result<Transaction, ApiError> {
    let transfer = solana_system_interface::instruction::transfer(&vault.pubkey(), payer, lamports);
    let message = Message::new_with_blockhash(&[transfer], Some(payer), &blockhash);
    let mut transaction = Transaction::new_unsigned(message);
    transaction
        .try_partial_sign(&[vault], blockhash)
        .map_err(|error| internal(format!("signing the claim failed: {error}")))?;
    Ok(transaction)
}

fn internal(message: String) -> ApiError {
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message,
    }
}

/// `POST /token-launch/claim-txs/v3 {feeClaimer, tokenMint}`: one claim transaction per position
/// with fees. The amount is the vault's balance now, fixed in the transaction, so a second claim
/// built before the first lands fails on-chain (the vault is short) — Bags' "already claimed".
async fn claim_transactions(State(fake): State<BagsFake>, body: Bytes) -> ApiResult {
    let body = json_body(&body)?;
    let claimer = parse_pubkey("feeClaimer", body_str(&body, "feeClaimer")?)?;
    let mint = parse_pubkey("tokenMint", body_str(&body, "tokenMint")?)?;
    if !fake.is_known_mint(&mint) {
        return Err(ApiError::bad_request(
            "Invalid tokenMint: no Bags fee-share config for this token",
        ));
    }
    let Some(vault) = fake.vault_keypair(&claimer, &mint) else {
        return success(json!([]));
    };
    let lamports = fake.inner.ledger.lamports(&vault.pubkey());
    if lamports == 0 {
        return success(json!([]));
    }
    let (blockhash, last_valid_block_height) = fake.inner.ledger.latest_blockhash();
    let transaction = vault_withdrawal_legacy(&vault, &claimer, lamports, blockhash)?;
    let bytes = bincode::serialize(&transaction)
        .map_err(|error| internal(format!("serializing the claim failed: {error}")))?;
    success(json!([{
        "tx": bs58::encode(bytes).into_string(),
        "blockhash": blockhash_json(&blockhash, last_valid_block_height),
    }]))
}

// ---------------------------------------------------------------------------------------------
// Quotes and swaps

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    SolToUsdc,
    UsdcToSol,
}

/// The numbers of a quote; everything else in the JSON derives from them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct QuoteTerms {
    direction: Direction,
    input_mint: Pubkey,
    output_mint: Pubkey,
    in_amount: u64,
    out_amount: u64,
    min_out_amount: u64,
    slippage_bps: u16,
}

impl QuoteTerms {
    /// The SOL side of the trade (what liquidity limits).
    fn sol_lamports(&self) -> u64 {
        match self.direction {
            Direction::SolToUsdc => self.in_amount,
            Direction::UsdcToSol => self.out_amount,
        }
    }

    /// What the swap actually delivers: `outAmount` less the configured shortfall, never below
    /// `minOutAmount` (the slippage promise holds).
    fn delivered(&self, shortfall_bps: u16) -> u64 {
        let shortfall = u128::from(self.out_amount) * u128::from(shortfall_bps.min(MAX_BPS))
            / u128::from(MAX_BPS);
        let delivered = u128::from(self.out_amount) - shortfall;
        u64::try_from(delivered)
            .unwrap_or(self.out_amount)
            .max(self.min_out_amount)
    }
}

/// Integer quote math, rounding down: SOL → USDC `amount × rate / 1e9`, USDC → SOL
/// `amount × 1e9 / rate`; `min = out × (10000 − bps) / 10000`.
fn compute_terms(
    input_mint: Pubkey,
    output_mint: Pubkey,
    usdc_mint: &Pubkey,
    amount: u64,
    slippage_bps: u16,
    usdc_per_sol: u64,
    max_swap_lamports: u64,
) -> Result<QuoteTerms, ApiError> {
    let direction = if input_mint == WRAPPED_SOL_MINT && output_mint == *usdc_mint {
        Direction::SolToUsdc
    } else if input_mint == *usdc_mint && output_mint == WRAPPED_SOL_MINT {
        Direction::UsdcToSol
    } else {
        return Err(ApiError::bad_request(format!(
            "No route found for {input_mint} -> {output_mint}: this pool trades SOL \
             ({WRAPPED_SOL_MINT}) against USDC ({usdc_mint}) only"
        )));
    };
    if slippage_bps > MAX_BPS {
        return Err(ApiError::bad_request(
            "slippageBps must be between 0 and 10000",
        ));
    }
    if amount == 0 {
        return Err(ApiError::bad_request("amount must be a positive integer"));
    }
    if usdc_per_sol == 0 {
        return Err(ApiError::insufficient_liquidity());
    }
    let out = match direction {
        Direction::SolToUsdc => u128::from(amount) * u128::from(usdc_per_sol) / LAMPORTS_PER_SOL,
        Direction::UsdcToSol => u128::from(amount) * LAMPORTS_PER_SOL / u128::from(usdc_per_sol),
    };
    let out_amount = u64::try_from(out).map_err(|_| ApiError::insufficient_liquidity())?;
    if out_amount == 0 {
        return Err(ApiError::bad_request(
            "amount is too small: the quote would deliver 0",
        ));
    }
    let min_out = u128::from(out_amount) * u128::from(MAX_BPS - slippage_bps) / u128::from(MAX_BPS);
    let terms = QuoteTerms {
        direction,
        input_mint,
        output_mint,
        in_amount: amount,
        out_amount,
        // min_out ≤ out_amount, which fits in u64.
        min_out_amount: u64::try_from(min_out).unwrap_or(0),
        slippage_bps,
    };
    if terms.sol_lamports() > max_swap_lamports {
        return Err(ApiError::insufficient_liquidity());
    }
    Ok(terms)
}

/// The query of `GET /trade/quote`, validated: `(inputMint, outputMint, amount, slippageBps)`.
fn parse_quote_query(
    params: &HashMap<String, String>,
) -> Result<(Pubkey, Pubkey, u64, u16), ApiError> {
    let input_mint = parse_pubkey("inputMint", params.get("inputMint").map(String::as_str))?;
    let output_mint = parse_pubkey("outputMint", params.get("outputMint").map(String::as_str))?;
    let amount = params
        .get("amount")
        .filter(|amount| !amount.is_empty())
        .ok_or_else(|| ApiError::bad_request("amount is required"))?;
    let amount: u64 = amount.parse().map_err(|_| {
        ApiError::bad_request("amount must be a positive integer in the input mint's base units")
    })?;
    let slippage_bps = match params.get("slippageMode").map(String::as_str) {
        None | Some("auto") => AUTO_SLIPPAGE_BPS,
        Some("manual") => {
            let bps = params.get("slippageBps").ok_or_else(|| {
                ApiError::bad_request("slippageBps is required when slippageMode is manual")
            })?;
            match bps.parse::<u16>() {
                Ok(bps) if bps <= MAX_BPS => bps,
                _ => {
                    return Err(ApiError::bad_request(
                        "slippageBps must be an integer between 0 and 10000",
                    ));
                }
            }
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "slippageMode must be 'auto' or 'manual', got '{other}'"
            )));
        }
    };
    Ok((input_mint, output_mint, amount, slippage_bps))
}

fn decimals(mint: &Pubkey) -> u8 {
    if *mint == WRAPPED_SOL_MINT {
        SOL_DECIMALS
    } else {
        USDC_DECIMALS
    }
}

impl BagsFake {
    /// Quote terms plus the pool's balance check (the pool must hold what it promises).
    fn quote_terms(
        &self,
        input_mint: Pubkey,
        output_mint: Pubkey,
        amount: u64,
        slippage_bps: u16,
    ) -> Result<QuoteTerms, ApiError> {
        let options = &self.inner.options;
        let terms = compute_terms(
            input_mint,
            output_mint,
            &options.usdc_mint,
            amount,
            slippage_bps,
            options.usdc_per_sol,
            options.max_swap_lamports,
        )?;
        let available = match terms.direction {
            Direction::SolToUsdc => self
                .inner
                .ledger
                .token_account(&self.inner.pool_usdc)
                .map_or(0, |account| account.amount),
            Direction::UsdcToSol => self
                .inner
                .ledger
                .lamports(&self.inner.pool.pubkey())
                .saturating_sub(POOL_RENT_RESERVE),
        };
        if available < terms.out_amount {
            return Err(ApiError::insufficient_liquidity());
        }
        Ok(terms)
    }

    fn quote_json(&self, terms: &QuoteTerms, request_id: &str) -> Value {
        let input_mint = terms.input_mint.to_string();
        let output_mint = terms.output_mint.to_string();
        json!({
            "requestId": request_id,
            "contextSlot": self.inner.ledger.slot(),
            "inAmount": terms.in_amount.to_string(),
            "inputMint": input_mint,
            "outAmount": terms.out_amount.to_string(),
            "outputMint": output_mint,
            "minOutAmount": terms.min_out_amount.to_string(),
            "otherAmountThreshold": terms.min_out_amount.to_string(),
            "priceImpactPct": "0",
            "slippageBps": terms.slippage_bps,
            "routePlan": [{
                "venue": VENUE,
                "inAmount": terms.in_amount.to_string(),
                "outAmount": terms.out_amount.to_string(),
                "inputMint": input_mint,
                "outputMint": output_mint,
                "inputMintDecimals": decimals(&terms.input_mint),
                "outputMintDecimals": decimals(&terms.output_mint),
                "marketKey": self.inner.pool.pubkey().to_string(),
                "data": "",
            }],
            "platformFee": null,
            "outTransferFee": null,
            "simulatedComputeUnits": SIMULATED_COMPUTE_UNITS,
        })
    }
}

/// `GET /trade/quote`.
async fn trade_quote(
    State(fake): State<BagsFake>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let params = query_params(query)?;
    let (input_mint, output_mint, amount, slippage_bps) = parse_quote_query(&params)?;
    let terms = fake.quote_terms(input_mint, output_mint, amount, slippage_bps)?;
    let request_id = uuid::Uuid::new_v4().to_string();
    success(fake.quote_json(&terms, &request_id))
}

/// A string field of the echoed quote.
fn quote_str<'a>(
    quote: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<&'a str, ApiError> {
    match quote.get(name) {
        Some(Value::String(value)) if !value.is_empty() => Ok(value),
        Some(Value::String(_)) | None | Some(Value::Null) => Err(ApiError::bad_request(format!(
            "quoteResponse.{name} is required"
        ))),
        Some(_) => Err(ApiError::bad_request(format!(
            "quoteResponse.{name} must be a string"
        ))),
    }
}

fn quote_amount(quote: &serde_json::Map<String, Value>, name: &str) -> Result<u64, ApiError> {
    quote_str(quote, name)?.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "quoteResponse.{name} must be a string of an unsigned integer"
        ))
    })
}

/// Checks the echoed `quoteResponse` and returns the terms it stands for. The rate is fixed, so
/// recomputing the quote from its inputs must give the same amounts: anything else was edited.
fn parse_echoed_quote(fake: &BagsFake, quote: Option<&Value>) -> Result<QuoteTerms, ApiError> {
    let quote = match quote {
        Some(Value::Object(quote)) => quote,
        None | Some(Value::Null) => return Err(ApiError::bad_request("quoteResponse is required")),
        Some(_) => {
            return Err(ApiError::bad_request(
                "quoteResponse must be the quote object returned by /trade/quote",
            ));
        }
    };
    quote_str(quote, "requestId")?;
    let input_mint = parse_pubkey(
        "quoteResponse.inputMint",
        Some(quote_str(quote, "inputMint")?),
    )?;
    let output_mint = parse_pubkey(
        "quoteResponse.outputMint",
        Some(quote_str(quote, "outputMint")?),
    )?;
    let in_amount = quote_amount(quote, "inAmount")?;
    let out_amount = quote_amount(quote, "outAmount")?;
    let min_out_amount = quote_amount(quote, "minOutAmount")?;
    let slippage_bps = quote
        .get("slippageBps")
        .and_then(Value::as_u64)
        .and_then(|bps| u16::try_from(bps).ok())
        .filter(|bps| *bps <= MAX_BPS)
        .ok_or_else(|| {
            ApiError::bad_request(
                "quoteResponse.slippageBps must be an integer between 0 and 10000",
            )
        })?;
    let terms = fake.quote_terms(input_mint, output_mint, in_amount, slippage_bps)?;
    if terms.out_amount != out_amount || terms.min_out_amount != min_out_amount {
        return Err(ApiError::bad_request(
            "quoteResponse does not match a quote from this API (outAmount/minOutAmount \
             altered?); request a new quote",
        ));
    }
    Ok(terms)
}

/// A v0 transaction (no lookup tables) paid by `payer` with one slot per required signer, the
/// slots of `signers` filled and the others left all zeros for the client.
fn partially_signed_v0(
    payer: &Pubkey,
    instructions: &[Instruction],
    blockhash: Hash,
    signers: &[&Keypair],
) -> Result<VersionedTransaction, ApiError> {
    let message = v0::Message::try_compile(payer, instructions, &[], blockhash)
        .map_err(|error| internal(format!("compiling the transaction failed: {error}")))?;
    let required = usize::from(message.header.num_required_signatures);
    let keys: Vec<Pubkey> = message
        .account_keys
        .iter()
        .take(required)
        .copied()
        .collect();
    let message = VersionedMessage::V0(message);
    let bytes = message.serialize();
    let mut signatures = vec![Signature::default(); required];
    for signer in signers {
        let position = keys
            .iter()
            .position(|key| *key == signer.pubkey())
            .ok_or_else(|| internal(format!("{} is not a signer", signer.pubkey())))?;
        signatures[position] = signer.sign_message(&bytes);
    }
    Ok(VersionedTransaction {
        signatures,
        message,
    })
}

/// `POST /trade/swap {quoteResponse, userPublicKey}`: a v0 transaction paid by the user that sets
/// a compute budget, sends the SOL (or USDC) to the pool and takes the USDC (or SOL) from it,
/// signed by the pool.
async fn trade_swap(State(fake): State<BagsFake>, body: Bytes) -> ApiResult {
    let body = json_body(&body)?;
    let user = parse_pubkey("userPublicKey", body_str(&body, "userPublicKey")?)?;
    let terms = parse_echoed_quote(&fake, body.get("quoteResponse"))?;
    let options = &fake.inner.options;
    let pool = &fake.inner.pool;
    let usdc_mint = options.usdc_mint;
    let user_usdc = associated_token_address(&user, &usdc_mint);
    let delivered = terms.delivered(options.delivery_shortfall_bps);
    let unit_price = options.compute_unit_price_micro_lamports;
    let mut instructions = vec![
        set_compute_unit_limit_instruction(SWAP_COMPUTE_UNIT_LIMIT),
        set_compute_unit_price_instruction(unit_price),
    ];
    match terms.direction {
        Direction::SolToUsdc => {
            instructions.push(create_associated_token_account_idempotent_instruction(
                &user, &user, &usdc_mint,
            ));
            instructions.push(solana_system_interface::instruction::transfer(
                &user,
                &pool.pubkey(),
                terms.in_amount,
            ));
            instructions.push(transfer_checked_instruction(
                &fake.inner.pool_usdc,
                &usdc_mint,
                &user_usdc,
                &pool.pubkey(),
                delivered,
                USDC_DECIMALS,
            ));
        }
        Direction::UsdcToSol => {
            instructions.push(transfer_checked_instruction(
                &user_usdc,
                &usdc_mint,
                &fake.inner.pool_usdc,
                &user,
                terms.in_amount,
                USDC_DECIMALS,
            ));
            instructions.push(solana_system_interface::instruction::transfer(
                &pool.pubkey(),
                &user,
                delivered,
            ));
        }
    }
    let (blockhash, last_valid_block_height) = fake.inner.ledger.latest_blockhash();
    let transaction = partially_signed_v0(&user, &instructions, blockhash, &[pool])?;
    let bytes = bincode::serialize(&transaction)
        .map_err(|error| internal(format!("serializing the swap failed: {error}")))?;
    success(json!({
        "swapTransaction": bs58::encode(bytes).into_string(),
        "computeUnitLimit": SWAP_COMPUTE_UNIT_LIMIT,
        "lastValidBlockHeight": last_valid_block_height,
        "prioritizationFeeLamports": prioritization_fee_lamports(unit_price, u64::from(SWAP_COMPUTE_UNIT_LIMIT)),
    }))
}

// ---------------------------------------------------------------------------------------------
// Partner fees

/// `GET /fee-share/partner-config/stats?partner=`.
async fn partner_stats(
    State(fake): State<BagsFake>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let params = query_params(query)?;
    let partner = parse_pubkey("partner", params.get("partner").map(String::as_str))?;
    let (claimed, unclaimed) = fake
        .partner_fees(&partner)
        .ok_or_else(|| ApiError::not_found("Partner config not found"))?;
    success(json!({
        "claimedFees": claimed.to_string(),
        "unclaimedFees": unclaimed.to_string(),
    }))
}

/// `POST /fee-share/partner-config/claim-tx {partnerWallet}`: one v0 transaction (so it is also
/// the last one, the one that withdraws the vault) paid by the partner; none without fees.
async fn partner_claim(State(fake): State<BagsFake>, body: Bytes) -> ApiResult {
    let body = json_body(&body)?;
    let partner = parse_pubkey("partnerWallet", body_str(&body, "partnerWallet")?)?;
    let vault = {
        let state = lock(&fake.inner.state);
        state
            .partners
            .get(&partner)
            .map(|vault| vault.keypair.clone())
    }
    .ok_or_else(|| ApiError::not_found("Partner config not found"))?;
    let lamports = fake.inner.ledger.lamports(&vault.pubkey());
    if lamports == 0 {
        return success(json!({"transactions": []}));
    }
    let (blockhash, last_valid_block_height) = fake.inner.ledger.latest_blockhash();
    let transfer =
        solana_system_interface::instruction::transfer(&vault.pubkey(), &partner, lamports);
    let transaction = partially_signed_v0(&partner, &[transfer], blockhash, &[&vault])?;
    let bytes = bincode::serialize(&transaction)
        .map_err(|error| internal(format!("serializing the claim failed: {error}")))?;
    success(json!({"transactions": [{
        "transaction": bs58::encode(bytes).into_string(),
        "blockhash": blockhash_json(&blockhash, last_valid_block_height),
    }]}))
}

// ---------------------------------------------------------------------------------------------
// Control API (plain JSON, not Bags' envelope: it is the sandbox's own)

fn control_error(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": message}))).into_response()
}

/// `GET /_sandbox/bags/positions?wallet=`: every position of the wallet, claimed-out included.
async fn control_positions(
    State(fake): State<BagsFake>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let wallet = query_params(query)
        .and_then(|params| parse_pubkey("wallet", params.get("wallet").map(String::as_str)));
    match wallet {
        Ok(wallet) => Json(json!({"positions": fake.positions(&wallet)})).into_response(),
        Err(error) => control_error(error.message),
    }
}

/// `POST /_sandbox/bags/positions {owner, baseMint, lamports}`: adds fees to a position.
async fn control_add_position(State(fake): State<BagsFake>, body: Bytes) -> Response {
    let parsed = json_body(&body).and_then(|body| {
        let owner = parse_pubkey("owner", body_str(&body, "owner")?)?;
        let mint = parse_pubkey("baseMint", body_str(&body, "baseMint")?)?;
        let lamports = body
            .get("lamports")
            .and_then(Value::as_u64)
            .ok_or_else(|| ApiError::bad_request("lamports must be an unsigned integer"))?;
        Ok((owner, mint, lamports))
    });
    match parsed {
        Ok((owner, mint, lamports)) => {
            fake.add_position(&owner, &mint, lamports);
            let position = fake
                .positions(&owner)
                .into_iter()
                .find(|position| position.base_mint == mint);
            Json(json!({"position": position})).into_response()
        }
        Err(error) => control_error(error.message),
    }
}

/// `POST /_sandbox/bags/partner-fees {partner, lamports}`: raises the partner's unclaimed fees.
async fn control_partner_fees(State(fake): State<BagsFake>, body: Bytes) -> Response {
    let parsed = json_body(&body).and_then(|body| {
        let partner = parse_pubkey("partner", body_str(&body, "partner")?)?;
        let lamports = body
            .get("lamports")
            .and_then(Value::as_u64)
            .ok_or_else(|| ApiError::bad_request("lamports must be an unsigned integer"))?;
        Ok((partner, lamports))
    });
    match parsed {
        Ok((partner, lamports)) => {
            fake.set_partner_fees(&partner, lamports);
            let (claimed, unclaimed) = fake.partner_fees(&partner).unwrap_or_default();
            Json(json!({"claimedFees": claimed, "unclaimedFees": unclaimed})).into_response()
        }
        Err(error) => control_error(error.message),
    }
}

/// `GET /_sandbox/bags/rate-limit`.
async fn control_rate_limit(State(fake): State<BagsFake>) -> Json<RateLimitUsage> {
    Json(fake.rate_limit_usage())
}

/// `GET /_sandbox/bags/pool`: the pool's addresses and balances, and the quoting rate.
async fn control_pool(State(fake): State<BagsFake>) -> Json<Value> {
    let ledger = &fake.inner.ledger;
    let usdc = ledger
        .token_account(&fake.inner.pool_usdc)
        .map_or(0, |account| account.amount);
    Json(json!({
        "pool": fake.pool_address().to_string(),
        "usdcAccount": fake.inner.pool_usdc.to_string(),
        "usdcMint": fake.inner.options.usdc_mint.to_string(),
        "usdcBalance": usdc,
        "lamports": ledger.lamports(&fake.pool_address()),
        "usdcPerSol": fake.inner.options.usdc_per_sol,
        "maxSwapLamports": fake.inner.options.max_swap_lamports,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usdc() -> Pubkey {
        USDC_MINT_MAINNET
    }

    fn terms(amount: u64, bps: u16) -> Result<QuoteTerms, ApiError> {
        compute_terms(
            WRAPPED_SOL_MINT,
            usdc(),
            &usdc(),
            amount,
            bps,
            150_000_000,
            10 * LAMPORTS_PER_SOL as u64,
        )
    }

    #[test]
    fn quote_math_rounds_down_and_applies_slippage() {
        // 0.123456789 SOL at 150 USDC/SOL = 18.51851835 USDC → 18_518_518 base units.
        let quote = terms(123_456_789, 50).expect("quote");
        assert_eq!(quote.direction, Direction::SolToUsdc);
        assert_eq!(quote.out_amount, 18_518_518);
        // 18_518_518 × 9950 / 10000 = 18_425_925.41 → 18_425_925.
        assert_eq!(quote.min_out_amount, 18_425_925);
        assert_eq!(
            terms(1_000_000_000, 0).expect("quote").min_out_amount,
            150_000_000
        );
        assert_eq!(
            terms(1_000_000_000, 10_000).expect("quote").min_out_amount,
            0
        );
    }

    #[test]
    fn reverse_quote_and_unsupported_pairs() {
        let quote = compute_terms(
            usdc(),
            WRAPPED_SOL_MINT,
            &usdc(),
            1_000_000,
            100,
            150_000_000,
            u64::MAX,
        )
        .expect("quote");
        assert_eq!(quote.direction, Direction::UsdcToSol);
        // 1 USDC at 150 USDC/SOL = 0.006666666 SOL.
        assert_eq!(quote.out_amount, 6_666_666);
        assert_eq!(quote.min_out_amount, 6_599_999);
        let other = Pubkey::new_unique();
        let error = compute_terms(other, usdc(), &usdc(), 1, 0, 150_000_000, u64::MAX)
            .expect_err("unsupported pair");
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(error.message.contains("No route"), "{}", error.message);
    }

    #[test]
    fn liquidity_and_amount_limits() {
        let limit = 10 * LAMPORTS_PER_SOL as u64;
        assert!(terms(limit, 50).is_ok());
        let error = terms(limit + 1, 50).expect_err("too large");
        assert_eq!(error, ApiError::insufficient_liquidity());
        assert!(
            error
                .message
                .to_lowercase()
                .contains("insufficient liquidity")
        );
        let zero = terms(0, 50).expect_err("zero");
        assert_eq!(zero.status, StatusCode::BAD_REQUEST);
        // 1 lamport buys 0.15 base units: nothing to deliver.
        assert!(terms(1, 50).is_err());
        assert!(terms(u64::MAX, 50).is_err());
    }

    #[test]
    fn delivered_stays_within_slippage() {
        let quote = terms(1_000_000_000, 50).expect("quote");
        assert_eq!(quote.delivered(0), 150_000_000);
        assert_eq!(quote.delivered(20), 149_700_000);
        // A shortfall larger than the slippage is clamped to the promised minimum.
        assert_eq!(quote.delivered(500), quote.min_out_amount);
        assert_eq!(quote.delivered(u16::MAX), quote.min_out_amount);
    }

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn quote_query_validation() {
        let sol = WRAPPED_SOL_MINT.to_string();
        let usdc = usdc().to_string();
        let base = [
            ("inputMint", sol.as_str()),
            ("outputMint", usdc.as_str()),
            ("amount", "1000"),
        ];
        let (_, _, amount, bps) = parse_quote_query(&params(&base)).expect("auto");
        assert_eq!((amount, bps), (1000, AUTO_SLIPPAGE_BPS));

        let mut manual = base.to_vec();
        manual.push(("slippageMode", "manual"));
        let error = parse_quote_query(&params(&manual)).expect_err("bps missing");
        assert_eq!(
            error.message,
            "slippageBps is required when slippageMode is manual"
        );
        manual.push(("slippageBps", "10001"));
        assert!(parse_quote_query(&params(&manual)).is_err());
        manual.pop();
        manual.push(("slippageBps", "300"));
        assert_eq!(parse_quote_query(&params(&manual)).expect("manual").3, 300);

        let mut bad_mode = base.to_vec();
        bad_mode.push(("slippageMode", "fast"));
        assert!(
            parse_quote_query(&params(&bad_mode))
                .expect_err("mode")
                .message
                .contains("fast")
        );

        let no_amount = &base[..2];
        assert_eq!(
            parse_quote_query(&params(no_amount))
                .expect_err("amount")
                .message,
            "amount is required"
        );
        let negative = [base[0], base[1], ("amount", "-5")];
        assert!(parse_quote_query(&params(&negative)).is_err());
        let bad_mint = [("inputMint", "not-a-key"), base[1], base[2]];
        assert!(
            parse_quote_query(&params(&bad_mint))
                .expect_err("mint")
                .message
                .starts_with("Invalid inputMint")
        );
    }

    #[test]
    fn pubkey_validation_is_precise() {
        assert_eq!(
            parse_pubkey("userPublicKey", Some(""))
                .expect_err("empty")
                .message,
            "userPublicKey is required"
        );
        assert_eq!(
            parse_pubkey("wallet", None).expect_err("missing").message,
            "wallet is required"
        );
        assert!(parse_pubkey("wallet", Some("0OIl")).is_err());
        let key = Pubkey::new_unique();
        assert_eq!(
            parse_pubkey("wallet", Some(&key.to_string())).expect("valid"),
            key
        );
    }

    #[test]
    fn priority_fee_rounds_up() {
        assert_eq!(prioritization_fee_lamports(10_000, 120_000), 1_200);
        assert_eq!(prioritization_fee_lamports(1, 120_000), 1);
        assert_eq!(prioritization_fee_lamports(0, 120_000), 0);
        assert_eq!(prioritization_fee_lamports(3, 333_333), 1);
    }

    #[test]
    fn sliding_window_admits_limit_then_refuses_until_the_oldest_leaves() {
        let start = Instant::now();
        let window = Duration::from_secs(60);
        let mut limiter = RateWindow::new(3, window);
        let first = limiter.admit(start, 0).expect("1st");
        assert_eq!(first.remaining, 2);
        assert_eq!(first.reset_after, window);
        let second = limiter
            .admit(start + Duration::from_secs(10), 1)
            .expect("2nd");
        assert_eq!(second.remaining, 1);
        assert_eq!(
            second.reset_after,
            Duration::from_secs(50),
            "the oldest request sets the reset"
        );
        assert_eq!(second.reset_unix, first.reset_unix);
        assert_eq!(
            limiter
                .admit(start + Duration::from_secs(20), 0)
                .expect("3rd")
                .remaining,
            0
        );

        let refused = limiter
            .admit(start + Duration::from_secs(30), 0)
            .expect_err("4th");
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.reset_after, Duration::from_secs(30));
        assert_eq!(
            limiter.admitted.len(),
            3,
            "refused requests are not counted"
        );
        assert_eq!((limiter.used_by(0), limiter.used_by(1)), (2, 1));

        // Sliding, not fixed: at 60 s only the first request has left the window.
        let later = limiter.admit(start + window, 1).expect("slot freed");
        assert_eq!(later.remaining, 0);
        assert!(limiter.admit(start + window, 1).is_err());
        assert!(
            limiter
                .admit(start + window + Duration::from_secs(10), 0)
                .is_ok()
        );
    }

    #[test]
    fn compute_budget_instructions_encode_as_documented() {
        use crate::sandbox::ledger::COMPUTE_BUDGET_PROGRAM_ID;
        let limit = set_compute_unit_limit_instruction(120_000);
        assert_eq!(limit.program_id, COMPUTE_BUDGET_PROGRAM_ID);
        assert_eq!(limit.data, [2, 0xC0, 0xD4, 0x01, 0x00]);
        let price = set_compute_unit_price_instruction(10_000);
        assert_eq!(price.data, [3, 0x10, 0x27, 0, 0, 0, 0, 0, 0]);
        assert!(limit.accounts.is_empty() && price.accounts.is_empty());
    }
}
