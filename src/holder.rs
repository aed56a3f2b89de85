//! Holder key reveal under `/holder`: a single-use, expiring challenge signed by the holder's
//! wallet (ed25519, as Solana wallets' `signMessage` signs UTF-8 text) reveals the plaintext key
//! once, or replaces a lost key. No API token: the wallet's signature is the credential.
//!
//! - `GET /holder/challenge?wallet=<base58>[&purpose=reveal|rotate][&strategyId=<id>]` →
//!   `{nonce, message, purpose, expiresAt}`; the wallet signs `message` exactly.
//! - `POST /holder/key` `{wallet, nonce, signature}` (signature base58, 64 bytes) → the
//!   plaintext of every key of the wallet still awaiting reveal; the stored ciphertext is erased
//!   in the same write that hands it out, so a key is revealed at most once.
//! - `POST /holder/rotate` `{wallet, nonce, signature}` with a `rotate` challenge → each current
//!   key is replaced by a new one carrying its remaining limit, and the new plaintext is returned
//!   (and erased) at once. The old key stops working.
//!
//! Every refusal is audited (`holder_request_refused` with the reason and the client address);
//! the rate limit is per client address (HOLDER_RATE_LIMIT_PER_MIN).

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use chrono::Utc;
use creditbrain_actors::keyvault::Sealed;
use creditbrain_actors::store::audit::AuditEntry;
use creditbrain_actors::store::keys::UserKey;
use creditbrain_actors::store::reveal::{Challenge, ChallengePurpose};
use creditbrain_actors::store::{format_timestamp, now_timestamp};
use serde::{Deserialize, Serialize};
use serde_json::json;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::Signature;

use crate::daemon::Handle;
use crate::http::api_error;
use crate::rate_limit::{FixedWindows, retry_after_secs};

/// How long a challenge may be signed and used.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(5 * 60);

/// Open (unused, unexpired) challenges one wallet may hold: enough for retries, not a flood.
const MAX_OPEN_CHALLENGES_PER_WALLET: u64 = 5;

/// Client addresses the limiter remembers at once.
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// The audit actor of holder requests.
const HOLDER_ACTOR: &str = "holder";

/// The `/holder` routes, with their own per-address limiter.
pub fn router(handle: Handle) -> Router<Handle> {
    let limiter = Arc::new(HolderLimiter {
        per_minute: handle.settings.holder_rate_limit_per_min,
        windows: Mutex::new(FixedWindows::new(
            Duration::from_secs(60),
            MAX_TRACKED_CLIENTS,
        )),
    });
    Router::new()
        .route("/holder/challenge", get(challenge))
        .route("/holder/key", post(reveal))
        .route("/holder/rotate", post(rotate))
        .layer(axum::Extension(limiter))
}

/// HOLDER_RATE_LIMIT_PER_MIN per client address.
struct HolderLimiter {
    per_minute: u32,
    windows: Mutex<FixedWindows<IpAddr>>,
}

type Limiter = axum::Extension<Arc<HolderLimiter>>;

/// A refusal: status, stable code, message.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn internal(context: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, operation = context, "holder request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error; the cause is in the daemon's log",
        )
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = api_error(self.status, self.code, &self.message);
        no_store(&mut response);
        response
    }
}

fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// Counts the request against the client's budget; the 429 to send when it is spent.
fn over_limit(limiter: &Limiter, client: IpAddr) -> Option<Response> {
    let counted = limiter
        .windows
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .hit(client, limiter.per_minute, std::time::Instant::now());
    counted.err().map(|wait| {
        let mut response = Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many holder requests from this address; retry later",
        )
        .into_response();
        if let Ok(value) = HeaderValue::from_str(&retry_after_secs(wait).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    })
}

fn parse_wallet(text: &str) -> Result<Pubkey, Refusal> {
    Pubkey::from_str(text).map_err(|_| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_wallet",
            format!("wallet must be a base58 Solana address, got {text:?}"),
        )
    })
}

/// `GET /holder/challenge` query.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ChallengeQuery {
    wallet: String,
    purpose: Option<String>,
    strategy_id: Option<String>,
}

/// What the holder signs.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeView {
    pub nonce: String,
    /// Sign these exact UTF-8 bytes with the wallet.
    pub message: String,
    pub purpose: String,
    pub expires_at: String,
}

/// The text a wallet signs; it says what the signature authorizes, for whom, and until when.
fn challenge_message(
    purpose: ChallengePurpose,
    wallet: &str,
    nonce: &str,
    expires: &str,
) -> String {
    let action = match purpose {
        ChallengePurpose::Reveal => "Reveal my CreditBrain OpenRouter key",
        ChallengePurpose::Rotate => "Replace my CreditBrain OpenRouter key",
    };
    format!("{action}\nWallet: {wallet}\nNonce: {nonce}\nExpires: {expires}")
}

async fn challenge(
    State(handle): State<Handle>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    limiter: Limiter,
    query: Result<Query<ChallengeQuery>, QueryRejection>,
) -> Response {
    if let Some(response) = over_limit(&limiter, client.ip()) {
        return response;
    }
    match issue_challenge(&handle, query).await {
        Ok(view) => {
            let mut response = Json(view).into_response();
            no_store(&mut response);
            response
        }
        Err(refusal) => refusal.into_response(),
    }
}

async fn issue_challenge(
    handle: &Handle,
    query: Result<Query<ChallengeQuery>, QueryRejection>,
) -> Result<ChallengeView, Refusal> {
    let Query(query) = query.map_err(|rejection| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            rejection.body_text(),
        )
    })?;
    let wallet = parse_wallet(&query.wallet)?.to_string();
    let purpose = match query.purpose.as_deref() {
        None => ChallengePurpose::Reveal,
        Some(text) => ChallengePurpose::parse(text).ok_or_else(|| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "invalid_purpose",
                format!("purpose must be reveal or rotate, got {text:?}"),
            )
        })?,
    };
    let keys = wallet_keys(handle, &wallet, query.strategy_id.as_deref()).await?;
    if keys.is_empty() {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "no_keys_for_wallet",
            format!("wallet {wallet} holds no CreditBrain key"),
        ));
    }
    match purpose {
        ChallengePurpose::Reveal if !keys.iter().any(awaits_reveal) => {
            return Err(nothing_to_reveal(&wallet));
        }
        ChallengePurpose::Rotate if !keys.iter().any(|key| key.status.is_current()) => {
            return Err(no_current_key(&wallet));
        }
        _ => {}
    }
    let now = Utc::now();
    let open = handle
        .store
        .open_challenges(&wallet, now)
        .await
        .map_err(|error| Refusal::internal("open challenges", &error))?;
    if open >= MAX_OPEN_CHALLENGES_PER_WALLET {
        return Err(Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_challenges",
            format!(
                "wallet {wallet} already has {open} open challenges; use one or wait {} minutes",
                CHALLENGE_TTL.as_secs() / 60
            ),
        ));
    }
    let nonce = crate::sandbox::random_hex(16);
    let expires = now + chrono::Duration::from_std(CHALLENGE_TTL).unwrap_or_default();
    let expires_at = format_timestamp(expires);
    let message = challenge_message(purpose, &wallet, &nonce, &expires_at);
    handle
        .store
        .insert_challenge(&Challenge {
            nonce: nonce.clone(),
            wallet,
            strategy_id: query.strategy_id,
            purpose,
            message: message.clone(),
            created_at: format_timestamp(now),
            expires_at: expires_at.clone(),
            used_at: None,
        })
        .await
        .map_err(|error| Refusal::internal("insert challenge", &error))?;
    // Expired challenges prove nothing more; keep the table small.
    let _ = handle
        .store
        .prune_challenges(now - chrono::Duration::days(1))
        .await;
    Ok(ChallengeView {
        nonce,
        message,
        purpose: purpose.as_str().to_string(),
        expires_at,
    })
}

/// `POST /holder/key` and `/holder/rotate` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SignedRequest {
    wallet: String,
    nonce: String,
    /// Base58 ed25519 signature of the challenge's message.
    signature: String,
}

/// One revealed key. Its plaintext is shown here once and nowhere else.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevealedKey {
    pub strategy_id: String,
    pub key_hash: String,
    pub name: String,
    /// The OpenRouter API key (`sk-or-v1-…`).
    pub key: String,
    pub limit_micro_usd: i64,
    pub limit_reset: Option<String>,
    pub expires_at: Option<String>,
}

// Never print the plaintext, even in a debug log.
impl std::fmt::Debug for RevealedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevealedKey")
            .field("strategy_id", &self.strategy_id)
            .field("key_hash", &self.key_hash)
            .field("key", &"***")
            .finish()
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevealResponse {
    pub wallet: String,
    pub keys: Vec<RevealedKey>,
}

async fn reveal(
    State(handle): State<Handle>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    limiter: Limiter,
    body: Result<Json<SignedRequest>, JsonRejection>,
) -> Response {
    signed(handle, client, limiter, body, ChallengePurpose::Reveal).await
}

async fn rotate(
    State(handle): State<Handle>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    limiter: Limiter,
    body: Result<Json<SignedRequest>, JsonRejection>,
) -> Response {
    signed(handle, client, limiter, body, ChallengePurpose::Rotate).await
}

async fn signed(
    handle: Handle,
    client: SocketAddr,
    limiter: Limiter,
    body: Result<Json<SignedRequest>, JsonRejection>,
    purpose: ChallengePurpose,
) -> Response {
    if let Some(response) = over_limit(&limiter, client.ip()) {
        return response;
    }
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => {
            let refusal = if rejection.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
                Refusal::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "send the body as Content-Type: application/json",
                )
            } else {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    rejection.body_text(),
                )
            };
            return refusal.into_response();
        }
    };
    let outcome = match verify(&handle, &request, purpose).await {
        Ok(challenge) => match purpose {
            ChallengePurpose::Reveal => reveal_keys(&handle, &challenge, client).await,
            ChallengePurpose::Rotate => rotate_keys(&handle, &challenge, client).await,
        },
        Err(refusal) => Err(refusal),
    };
    match outcome {
        Ok(revealed) => {
            let mut response = Json(RevealResponse {
                wallet: request.wallet,
                keys: revealed,
            })
            .into_response();
            no_store(&mut response);
            response
        }
        Err(refusal) => {
            let entry = AuditEntry::new("holder_request_refused")
                .actor(HOLDER_ACTOR)
                .details(json!({
                    "wallet": request.wallet,
                    "purpose": purpose.as_str(),
                    "code": refusal.code,
                    "remoteAddress": client.ip().to_string(),
                }));
            if let Err(error) = handle.store.append_audit(&entry).await {
                tracing::warn!(error = %error, "cannot audit a refused holder request");
            }
            refusal.into_response()
        }
    }
}

/// Checks the challenge and the signature, then consumes the challenge (only a valid signature
/// uses it up, so nobody can burn a holder's challenge by posting garbage).
async fn verify(
    handle: &Handle,
    request: &SignedRequest,
    purpose: ChallengePurpose,
) -> Result<Challenge, Refusal> {
    let wallet = parse_wallet(&request.wallet)?;
    let signature = bs58::decode(&request.signature)
        .into_vec()
        .ok()
        .and_then(|bytes| Signature::try_from(bytes.as_slice()).ok())
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "invalid_signature_encoding",
                "signature must be a base58-encoded 64-byte ed25519 signature",
            )
        })?;
    let challenge = handle
        .store
        .challenge(&request.nonce)
        .await
        .map_err(|error| Refusal::internal("read challenge", &error))?
        // Another wallet's nonce is reported like an unknown one: it reveals nothing.
        .filter(|challenge| challenge.wallet == request.wallet)
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::NOT_FOUND,
                "challenge_not_found",
                "no such challenge for this wallet; request one from GET /holder/challenge",
            )
        })?;
    if challenge.purpose != purpose {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "wrong_challenge_purpose",
            format!(
                "this challenge is for {}; request one with purpose={}",
                challenge.purpose.as_str(),
                purpose.as_str()
            ),
        ));
    }
    if challenge.used_at.is_some() {
        return Err(challenge_used());
    }
    if challenge.expires_at <= now_timestamp() {
        return Err(Refusal::new(
            StatusCode::GONE,
            "challenge_expired",
            "the challenge expired; request a new one",
        ));
    }
    if !signature.verify(wallet.as_ref(), challenge.message.as_bytes()) {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "signature_invalid",
            "the signature does not verify for this wallet and challenge message",
        ));
    }
    let consumed = handle
        .store
        .consume_challenge(&challenge.nonce, Utc::now())
        .await
        .map_err(|error| Refusal::internal("consume challenge", &error))?;
    if !consumed {
        // Used (or expired) between our read and now: a concurrent request won.
        return Err(challenge_used());
    }
    Ok(challenge)
}

fn challenge_used() -> Refusal {
    Refusal::new(
        StatusCode::CONFLICT,
        "challenge_used",
        "the challenge was already used; request a new one",
    )
}

fn nothing_to_reveal(wallet: &str) -> Refusal {
    Refusal::new(
        StatusCode::CONFLICT,
        "nothing_to_reveal",
        format!(
            "every key of wallet {wallet} was already revealed; if you lost it, replace it with \
             purpose=rotate and POST /holder/rotate"
        ),
    )
}

fn no_current_key(wallet: &str) -> Refusal {
    Refusal::new(
        StatusCode::NOT_FOUND,
        "no_current_key",
        format!("wallet {wallet} has no active key to replace"),
    )
}

fn awaits_reveal(key: &UserKey) -> bool {
    key.status.is_current() && key.has_encrypted_key()
}

async fn wallet_keys(
    handle: &Handle,
    wallet: &str,
    strategy_id: Option<&str>,
) -> Result<Vec<UserKey>, Refusal> {
    let keys = handle
        .store
        .keys_for_holder(wallet)
        .await
        .map_err(|error| Refusal::internal("wallet keys", &error))?;
    Ok(keys
        .into_iter()
        .filter(|key| strategy_id.is_none_or(|id| key.strategy_id == id))
        .collect())
}

/// Takes (erasing it) and opens one key's sealed plaintext.
async fn take_plaintext(
    handle: &Handle,
    key: &UserKey,
    client: SocketAddr,
) -> Result<Option<RevealedKey>, Refusal> {
    let Some(parts) = handle
        .store
        .take_encrypted_key(&key.key_hash)
        .await
        .map_err(|error| Refusal::internal("take sealed key", &error))?
    else {
        return Ok(None);
    };
    let plaintext = handle
        .settings
        .vault
        .decrypt(&Sealed::from(parts), &key.key_hash)
        .map_err(|error| {
            // The ciphertext is already erased: the holder must replace the key.
            tracing::error!(keyHash = %key.key_hash, error = %error, "a sealed key did not open");
            Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "key_unreadable",
                "the stored key could not be opened; replace it with POST /holder/rotate",
            )
        })?;
    let entry = AuditEntry::new("key_revealed")
        .strategy(&key.strategy_id)
        .actor(HOLDER_ACTOR)
        .details(json!({
            "wallet": key.holder_wallet,
            "keyHash": key.key_hash,
            "remoteAddress": client.ip().to_string(),
        }));
    if let Err(error) = handle.store.append_audit(&entry).await {
        tracing::warn!(error = %error, "cannot audit a reveal");
    }
    Ok(Some(RevealedKey {
        strategy_id: key.strategy_id.clone(),
        key_hash: key.key_hash.clone(),
        name: key.name.clone(),
        key: plaintext.expose().to_string(),
        limit_micro_usd: key.limit_micro_usd,
        limit_reset: key.limit_reset.clone(),
        expires_at: key.expires_at.clone(),
    }))
}

async fn reveal_keys(
    handle: &Handle,
    challenge: &Challenge,
    client: SocketAddr,
) -> Result<Vec<RevealedKey>, Refusal> {
    let keys = wallet_keys(handle, &challenge.wallet, challenge.strategy_id.as_deref()).await?;
    let mut revealed = Vec::new();
    for key in keys.iter().filter(|key| awaits_reveal(key)) {
        if let Some(key) = take_plaintext(handle, key, client).await? {
            revealed.push(key);
        }
    }
    if revealed.is_empty() {
        return Err(nothing_to_reveal(&challenge.wallet));
    }
    Ok(revealed)
}

async fn rotate_keys(
    handle: &Handle,
    challenge: &Challenge,
    client: SocketAddr,
) -> Result<Vec<RevealedKey>, Refusal> {
    let keys = wallet_keys(handle, &challenge.wallet, challenge.strategy_id.as_deref()).await?;
    let current: Vec<&UserKey> = keys.iter().filter(|key| key.status.is_current()).collect();
    if current.is_empty() {
        return Err(no_current_key(&challenge.wallet));
    }
    let mut revealed = Vec::new();
    for key in current {
        let rotated = crate::ops::rotate_holder_key(
            handle,
            &key.strategy_id,
            &key.holder_wallet,
            HOLDER_ACTOR,
        )
        .await
        .map_err(|error| {
            let status = StatusCode::from_u16(error.kind.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Refusal {
                status,
                code: "rotation_refused",
                message: format!("{}: {}", error.code, error.message),
            }
        })?;
        let new_key = handle
            .store
            .key_by_hash(&rotated.new_key_hash)
            .await
            .map_err(|error| Refusal::internal("rotated key", &error))?
            .ok_or_else(|| Refusal::internal("rotated key", &"the new key is not in the ledger"))?;
        if let Some(key) = take_plaintext(handle, &new_key, client).await? {
            revealed.push(key);
        }
    }
    Ok(revealed)
}
