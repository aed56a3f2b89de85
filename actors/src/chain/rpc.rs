//! The Solana JSON-RPC client: `solana-client`'s nonblocking `RpcClient` at `confirmed`, with
//! errors mapped to [`RpcError`] (classified for the retry layer, secret-free: the RPC URL may
//! carry an API key), and the measured effects of a landed transaction ([`TxEffects`]) read from
//! `getTransaction` metadata, so amounts are recorded from the chain, never from quotes (I4).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::json;
use solana_client::client_error::{ClientError, ClientErrorKind};
use solana_client::nonblocking::rpc_client::RpcClient;
use solana_client::rpc_config::{
    RpcSendTransactionConfig, RpcSimulateTransactionConfig, RpcTransactionConfig,
    UiTransactionEncoding,
};
use solana_client::rpc_request::{
    RpcError as ClientRpcError, RpcRequest, RpcResponseErrorData, TokenAccountsFilter,
};
use solana_client::rpc_response::{
    TransactionError, UiAccountData, UiTransactionError, UiTransactionTokenBalance,
};
use solana_commitment_config::{CommitmentConfig, CommitmentLevel};
use solana_sdk::hash::Hash;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::Signature;
use solana_sdk::transaction::VersionedTransaction;
use solana_transaction_status_client_types::{
    EncodedConfirmedTransactionWithStatusMeta, TransactionConfirmationStatus,
};

use crate::http::error_chain;
use crate::resilience::{self, Breaker, Classify, ResilienceError, RetryPolicy, Transience};
use crate::secret::Secret;

/// JSON-RPC server error codes the client treats specially.
const PREFLIGHT_FAILURE: i64 = -32002;
const NODE_UNHEALTHY: i64 = -32005;

/// How a transport failure happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    Connect,
    Timeout,
    Other,
}

/// Errors from the Solana RPC. Messages never contain the RPC URL (nor its key).
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum RpcError {
    /// The request did not get an HTTP answer (connect error, timeout, reset).
    #[error("solana rpc unreachable ({kind:?}): {message}")]
    Transport {
        kind: TransportKind,
        message: String,
    },
    /// A non-2xx HTTP status (429 comes here after the client's own five retries).
    #[error("solana rpc answered http {status}")]
    Http { status: u16 },
    /// JSON-RPC -32005: the node is behind; another try (or node) may do.
    #[error("solana rpc node unhealthy: {message}")]
    NodeUnhealthy { message: String },
    /// JSON-RPC -32002: `sendTransaction` simulated the transaction and refused it; it was not
    /// forwarded. `error` is the simulated transaction error when the node reported one.
    #[error("transaction refused at preflight: {message}")]
    Preflight {
        error: Option<TransactionError>,
        message: String,
        logs: Vec<String>,
    },
    /// Any other JSON-RPC error object (invalid params, signature verification failure -32003,
    /// unsupported transaction version ...).
    #[error("solana rpc error {code}: {message}")]
    Response { code: i64, message: String },
    /// A transaction error reported outside a preflight result.
    #[error("transaction error: {0}")]
    Transaction(TransactionError),
    /// The node returned another signature than the transaction's own: it is unknown whether
    /// this transaction was forwarded.
    #[error("solana rpc returned a mismatched signature")]
    SignatureMismatch,
    /// The answer was not what the method documents.
    #[error("solana rpc response not understood: {0}")]
    Decode(String),
    /// Anything else the client reported.
    #[error("solana rpc failed: {0}")]
    Other(String),
    /// Not sent: the solana-rpc breaker is open (or its one half-open probe is in flight).
    #[error("solana rpc is unavailable (circuit open){}", .last_error.as_ref().map(|e| format!("; last error: {e}")).unwrap_or_default())]
    Unavailable { last_error: Option<String> },
}

impl Classify for RpcError {
    fn transience(&self) -> Transience {
        match self {
            RpcError::Transport { .. }
            | RpcError::NodeUnhealthy { .. }
            | RpcError::Unavailable { .. } => Transience::Transient { retry_after: None },
            // The client already honoured Retry-After on 429 five times; the next attempt of
            // the retry layer backs off further.
            RpcError::Http { status } if *status == 429 || (500..=599).contains(status) => {
                Transience::Transient { retry_after: None }
            }
            _ => Transience::Permanent,
        }
    }
}

/// What a transaction error means for the exactly-once protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainFailure {
    /// The fee payer cannot pay the fee (or does not exist, or would drop below rent): the
    /// wallet needs SOL. Code `INSUFFICIENT_GAS`.
    InsufficientFundsForFee,
    /// The blockhash is unknown or expired: the transaction can never land; build a fresh one.
    BlockhashNotFound,
    /// This signature already landed: read its status.
    AlreadyProcessed,
    /// An instruction failed, or any other execution error. Code `TX_FAILED`.
    Failed(TransactionError),
}

impl ChainFailure {
    pub fn of(error: &TransactionError) -> ChainFailure {
        match error {
            TransactionError::InsufficientFundsForFee | TransactionError::AccountNotFound => {
                ChainFailure::InsufficientFundsForFee
            }
            // Account 0 is the fee payer: paying the fee (or what the transaction spends) would
            // leave it below the rent-exempt minimum. Same remedy: fund the wallet.
            TransactionError::InsufficientFundsForRent { account_index: 0 } => {
                ChainFailure::InsufficientFundsForFee
            }
            TransactionError::BlockhashNotFound => ChainFailure::BlockhashNotFound,
            TransactionError::AlreadyProcessed => ChainFailure::AlreadyProcessed,
            other => ChainFailure::Failed(other.clone()),
        }
    }
}

impl RpcError {
    /// The transaction error of a preflight refusal or of a transaction error reply.
    pub fn transaction_error(&self) -> Option<&TransactionError> {
        match self {
            RpcError::Preflight { error, .. } => error.as_ref(),
            RpcError::Transaction(error) => Some(error),
            _ => None,
        }
    }

    /// What the refusal means for the transaction, when it is about the transaction.
    pub fn chain_failure(&self) -> Option<ChainFailure> {
        self.transaction_error().map(ChainFailure::of)
    }

    /// True when the request may not have reached the node, or the node may have forwarded the
    /// transaction anyway: its fate is unknown.
    pub fn is_transient(&self) -> bool {
        matches!(self.transience(), Transience::Transient { .. })
    }
}

/// Replaces every form of the RPC URL and its parts (query, path, credentials) in a message.
#[derive(Clone)]
struct Redactor {
    needles: Vec<String>,
}

impl Redactor {
    const MASK: &'static str = "<rpc-url>";

    fn new(url: &str) -> Self {
        let mut needles = vec![url.to_string(), url.trim_end_matches('/').to_string()];
        if let Ok(parsed) = reqwest::Url::parse(url) {
            needles.push(parsed.to_string());
            needles.push(parsed.as_str().trim_end_matches('/').to_string());
            if let Some(query) = parsed.query() {
                needles.push(query.to_string());
            }
            for (_, value) in parsed.query_pairs() {
                needles.push(value.into_owned());
            }
            if parsed.path() != "/" {
                needles.push(parsed.path().to_string());
                needles.extend(
                    parsed
                        .path_segments()
                        .into_iter()
                        .flatten()
                        .map(str::to_string),
                );
            }
            needles.push(parsed.username().to_string());
            if let Some(password) = parsed.password() {
                needles.push(password.to_string());
            }
        }
        // Tiny fragments (`v1`, `rpc`) are not secrets, and masking them would mangle messages.
        needles.retain(|needle| needle.len() >= 6);
        needles.sort_by_key(|needle| std::cmp::Reverse(needle.len()));
        needles.dedup();
        Self { needles }
    }

    fn clean(&self, message: &str) -> String {
        self.needles
            .iter()
            .fold(message.to_string(), |text, needle| {
                text.replace(needle.as_str(), Self::MASK)
            })
    }

    /// The client error as an [`RpcError`] without the URL. Reqwest errors are rendered from
    /// their source chain after `without_url`, then scrubbed again.
    fn map(&self, error: ClientError) -> RpcError {
        match *error.kind {
            ClientErrorKind::Reqwest(error) => {
                if let Some(status) = error.status() {
                    return RpcError::Http {
                        status: status.as_u16(),
                    };
                }
                let kind = if error.is_timeout() {
                    TransportKind::Timeout
                } else if error.is_connect() {
                    TransportKind::Connect
                } else {
                    TransportKind::Other
                };
                let decode = error.is_decode() || error.is_body();
                let message = self.clean(&error_chain(&error.without_url()));
                if decode {
                    RpcError::Decode(message)
                } else {
                    RpcError::Transport { kind, message }
                }
            }
            ClientErrorKind::Io(error) => RpcError::Transport {
                kind: if error.kind() == std::io::ErrorKind::TimedOut {
                    TransportKind::Timeout
                } else {
                    TransportKind::Other
                },
                message: self.clean(&error.to_string()),
            },
            ClientErrorKind::Middleware(error) => RpcError::Transport {
                kind: TransportKind::Other,
                message: self.clean(&format!("{error:#}")),
            },
            ClientErrorKind::RpcError(ClientRpcError::RpcResponseError {
                code,
                message,
                data,
            }) => {
                let message = self.clean(&message);
                match (code, data) {
                    (
                        PREFLIGHT_FAILURE,
                        RpcResponseErrorData::SendTransactionPreflightFailure(result),
                    ) => RpcError::Preflight {
                        error: result.err.map(TransactionError::from),
                        message,
                        logs: result.logs.unwrap_or_default(),
                    },
                    (PREFLIGHT_FAILURE, _) => RpcError::Preflight {
                        error: None,
                        message,
                        logs: Vec::new(),
                    },
                    (NODE_UNHEALTHY, _) => RpcError::NodeUnhealthy { message },
                    (code, _) => RpcError::Response { code, message },
                }
            }
            ClientErrorKind::RpcError(ClientRpcError::RpcRequestError(message)) => {
                if message.contains("mismatched signature") {
                    RpcError::SignatureMismatch
                } else {
                    RpcError::Decode(self.clean(&message))
                }
            }
            ClientErrorKind::RpcError(ClientRpcError::ParseError(message)) => {
                RpcError::Decode(self.clean(&message))
            }
            ClientErrorKind::RpcError(ClientRpcError::ForUser(message)) => {
                RpcError::Other(self.clean(&message))
            }
            ClientErrorKind::SerdeJson(error) => RpcError::Decode(self.clean(&error.to_string())),
            ClientErrorKind::TransactionError(error) => RpcError::Transaction(error),
            ClientErrorKind::SigningError(error) => RpcError::Other(self.clean(&error.to_string())),
            ClientErrorKind::Custom(message) => RpcError::Other(self.clean(&message)),
        }
    }
}

/// A signature's status as the node reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureStatus {
    pub slot: u64,
    /// The transaction error it landed with (it paid its fee and changed nothing else).
    pub err: Option<TransactionError>,
    /// `processed`, `confirmed` or `finalized`.
    pub confirmation: TransactionConfirmationStatus,
}

impl SignatureStatus {
    /// Confirmed or finalized: a supermajority voted on its block, so it stays.
    pub fn is_confirmed(&self) -> bool {
        self.confirmation != TransactionConfirmationStatus::Processed
    }
}

/// What `simulateTransaction` reported (a dry run's outcome).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Simulation {
    /// The error the transaction would fail with (`ChainFailure::of` tells what it means).
    pub err: Option<TransactionError>,
    pub logs: Vec<String>,
    pub units_consumed: Option<u64>,
}

/// The net change of one mint's balance across the token accounts one owner holds in a
/// transaction (absent side = 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenDelta {
    pub mint: Pubkey,
    pub decimals: u8,
    /// Sum over the owner's accounts of this mint before / after, in base units.
    pub pre: u128,
    pub post: u128,
    /// `post − pre`.
    pub delta: i128,
}

/// What a landed transaction measurably did to one owner's balances (from `getTransaction`'s
/// `meta`), the only source of recorded amounts (I4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxEffects {
    pub signature: Signature,
    pub slot: u64,
    pub block_time: Option<i64>,
    /// The fee the fee payer paid (charged even when `err` is set).
    pub fee: u64,
    /// The transaction error it landed with, if any.
    pub err: Option<TransactionError>,
    /// The owner whose balances are measured (our signer).
    pub owner: Pubkey,
    /// Whether the owner paid the fee (then `lamport_delta` includes `−fee`).
    pub owner_paid_fee: bool,
    pub lamports_pre: u64,
    pub lamports_post: u64,
    /// `lamports_post − lamports_pre`: a claim's measured amount (net of the fee).
    pub lamport_delta: i64,
    /// Per mint, ordered by mint, for token accounts owned by `owner`; mints whose balance did not
    /// change are kept (delta 0) when the owner held them.
    pub token_deltas: Vec<TokenDelta>,
}

impl TxEffects {
    /// The owner's net change in `mint` (0 when the transaction did not touch it).
    pub fn token_delta(&self, mint: &Pubkey) -> i128 {
        self.token_deltas
            .iter()
            .find(|delta| delta.mint == *mint)
            .map_or(0, |delta| delta.delta)
    }

    /// The JSON stored in `solana_transactions.result`. u64/u128 amounts are strings (they may
    /// exceed what JSON readers hold exactly), lamports and the fee are numbers.
    pub fn to_json(&self) -> String {
        let stored = StoredEffects {
            signature: self.signature.to_string(),
            slot: self.slot,
            block_time: self.block_time,
            fee: self.fee,
            err: self
                .err
                .clone()
                .map(|err| serde_json::to_value(UiTransactionError::from(err)))
                .transpose()
                .unwrap_or(None),
            owner: self.owner.to_string(),
            owner_paid_fee: self.owner_paid_fee,
            lamports_pre: self.lamports_pre,
            lamports_post: self.lamports_post,
            lamport_delta: self.lamport_delta,
            token_deltas: self
                .token_deltas
                .iter()
                .map(|delta| StoredTokenDelta {
                    mint: delta.mint.to_string(),
                    decimals: delta.decimals,
                    pre: delta.pre.to_string(),
                    post: delta.post.to_string(),
                    delta: delta.delta.to_string(),
                })
                .collect(),
        };
        serde_json::to_string(&stored).unwrap_or_else(|_| "{}".to_string())
    }

    /// Parses what [`TxEffects::to_json`] wrote.
    pub fn from_json(text: &str) -> Result<TxEffects, String> {
        let stored: StoredEffects = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let err = stored
            .err
            .map(serde_json::from_value::<UiTransactionError>)
            .transpose()
            .map_err(|e| format!("err: {e}"))?
            .map(TransactionError::from);
        let token_deltas = stored
            .token_deltas
            .into_iter()
            .map(|delta| {
                Ok(TokenDelta {
                    mint: delta.mint.parse().map_err(|e| format!("mint: {e}"))?,
                    decimals: delta.decimals,
                    pre: delta.pre.parse().map_err(|e| format!("pre: {e}"))?,
                    post: delta.post.parse().map_err(|e| format!("post: {e}"))?,
                    delta: delta.delta.parse().map_err(|e| format!("delta: {e}"))?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(TxEffects {
            signature: stored
                .signature
                .parse()
                .map_err(|e| format!("signature: {e}"))?,
            slot: stored.slot,
            block_time: stored.block_time,
            fee: stored.fee,
            err,
            owner: stored.owner.parse().map_err(|e| format!("owner: {e}"))?,
            owner_paid_fee: stored.owner_paid_fee,
            lamports_pre: stored.lamports_pre,
            lamports_post: stored.lamports_post,
            lamport_delta: stored.lamport_delta,
            token_deltas,
        })
    }

    /// Measures `owner`'s effects from a `getTransaction` answer (binary encoding).
    pub fn from_confirmed(
        signature: &Signature,
        owner: &Pubkey,
        confirmed: &EncodedConfirmedTransactionWithStatusMeta,
    ) -> Result<TxEffects, String> {
        let meta = confirmed
            .transaction
            .meta
            .as_ref()
            .ok_or("the transaction has no status meta")?;
        let transaction = confirmed
            .transaction
            .transaction
            .decode()
            .ok_or("the transaction does not decode (binary encoding expected)")?;
        // Account indexes in the meta run over the static keys, then the addresses loaded from
        // lookup tables (writable, then readonly).
        let mut keys: Vec<String> = transaction
            .message
            .static_account_keys()
            .iter()
            .map(ToString::to_string)
            .collect();
        if let Some(loaded) = meta.loaded_addresses.as_ref().map(|loaded| loaded.clone()) {
            keys.extend(loaded.writable);
            keys.extend(loaded.readonly);
        }
        let owner_text = owner.to_string();
        let owner_index = keys.iter().position(|key| *key == owner_text);
        let (lamports_pre, lamports_post) = match owner_index {
            Some(index) => (
                *meta
                    .pre_balances
                    .get(index)
                    .ok_or("preBalances is shorter than the account list")?,
                *meta
                    .post_balances
                    .get(index)
                    .ok_or("postBalances is shorter than the account list")?,
            ),
            None => (0, 0),
        };
        let lamport_delta = i64::try_from(i128::from(lamports_post) - i128::from(lamports_pre))
            .map_err(|_| "lamport delta out of range")?;

        let pre = meta
            .pre_token_balances
            .as_ref()
            .map(|balances| balances.clone())
            .unwrap_or_default();
        let post = meta
            .post_token_balances
            .as_ref()
            .map(|balances| balances.clone())
            .unwrap_or_default();
        let token_deltas = token_deltas(&owner_text, &pre, &post)?;

        Ok(TxEffects {
            signature: *signature,
            slot: confirmed.slot,
            block_time: confirmed.block_time,
            fee: meta.fee,
            err: meta.err.clone().map(TransactionError::from),
            owner: *owner,
            owner_paid_fee: owner_index == Some(0),
            lamports_pre,
            lamports_post,
            lamport_delta,
            token_deltas,
        })
    }
}

/// Per-mint sums of `owner`'s token balances before and after, matched by account index (a side
/// without an entry counts 0: the account was created or closed by the transaction).
fn token_deltas(
    owner: &str,
    pre: &[UiTransactionTokenBalance],
    post: &[UiTransactionTokenBalance],
) -> Result<Vec<TokenDelta>, String> {
    // mint → (decimals, pre, post)
    let mut sums: BTreeMap<Pubkey, (u8, u128, u128)> = BTreeMap::new();
    for (balances, is_post) in [(pre, false), (post, true)] {
        for balance in balances {
            if balance.owner.as_ref().map(|o| o.as_str()) != Some(owner) {
                continue;
            }
            let mint: Pubkey = balance
                .mint
                .parse()
                .map_err(|e| format!("token balance mint: {e}"))?;
            let amount: u64 = balance
                .ui_token_amount
                .amount
                .parse()
                .map_err(|e| format!("token balance amount: {e}"))?;
            let entry = sums
                .entry(mint)
                .or_insert((balance.ui_token_amount.decimals, 0, 0));
            if is_post {
                entry.2 += u128::from(amount);
            } else {
                entry.1 += u128::from(amount);
            }
        }
    }
    sums.into_iter()
        .map(|(mint, (decimals, pre, post))| {
            let delta = i128::try_from(post).map_err(|e| e.to_string())?
                - i128::try_from(pre).map_err(|e| e.to_string())?;
            Ok(TokenDelta {
                mint,
                decimals,
                pre,
                post,
                delta,
            })
        })
        .collect()
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredEffects {
    signature: String,
    slot: u64,
    block_time: Option<i64>,
    fee: u64,
    err: Option<serde_json::Value>,
    owner: String,
    owner_paid_fee: bool,
    lamports_pre: u64,
    lamports_post: u64,
    lamport_delta: i64,
    token_deltas: Vec<StoredTokenDelta>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredTokenDelta {
    mint: String,
    decimals: u8,
    pre: String,
    post: String,
    delta: String,
}

/// The Solana RPC client. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct SolanaRpc {
    client: Arc<RpcClient>,
    redactor: Arc<Redactor>,
    /// The solana-rpc breaker the transaction protocol's round trips count against.
    breaker: Option<Breaker>,
}

impl fmt::Debug for SolanaRpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SolanaRpc(<rpc-url>)")
    }
}

/// The commitment every read uses: confirmed (a supermajority voted; ~1 s behind processed,
/// and never rolled back in practice), as external-apis.md §2.4 recommends.
fn confirmed() -> CommitmentConfig {
    CommitmentConfig::confirmed()
}

impl SolanaRpc {
    /// A client of `url` (which may carry an API key) with a per-request `timeout`.
    pub fn new(url: &Secret, timeout: Duration) -> Self {
        Self {
            client: Arc::new(RpcClient::new_with_timeout_and_commitment(
                url.expose().to_string(),
                timeout,
                confirmed(),
            )),
            redactor: Arc::new(Redactor::new(url.expose())),
            breaker: None,
        }
    }

    /// Makes the round trips of the exactly-once protocol (`send_raw`, `block_height`,
    /// `signature_statuses`, `transaction_effects`) go through `breaker`: their transient
    /// failures count toward opening it and, while it is open, they fail fast with
    /// [`RpcError::Unavailable`] without contacting the node. They are not retried here: the
    /// protocol's status polls are its retries. Other methods stay unguarded (callers wrap them
    /// in `resilience::call` with the same breaker).
    pub fn with_breaker(mut self, breaker: Breaker) -> Self {
        self.breaker = Some(breaker);
        self
    }

    fn map(&self, error: ClientError) -> RpcError {
        self.redactor.map(error)
    }

    /// One attempt through the breaker, when there is one.
    async fn guarded<T>(
        &self,
        call: impl Future<Output = Result<T, RpcError>>,
    ) -> Result<T, RpcError> {
        let Some(breaker) = &self.breaker else {
            return call.await;
        };
        let once = RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        };
        let mut call = Some(call);
        let attempt = || {
            let call = call.take();
            async move {
                match call {
                    Some(call) => call.await,
                    None => Err(RpcError::Other("attempted twice".to_string())),
                }
            }
        };
        match resilience::call(&once, breaker, attempt).await {
            Ok(value) => Ok(value),
            Err(ResilienceError::Failed(error)) => Err(error),
            Err(ResilienceError::Unavailable { last_error, .. }) => {
                Err(RpcError::Unavailable { last_error })
            }
        }
    }

    /// `getLatestBlockhash` at confirmed: the blockhash and the last block height at which a
    /// transaction using it can land.
    pub async fn latest_blockhash(&self) -> Result<(Hash, u64), RpcError> {
        self.client
            .get_latest_blockhash_with_commitment(confirmed())
            .await
            .map_err(|e| self.map(e))
    }

    /// `getBlockHeight` at confirmed. A transaction whose `lastValidBlockHeight` is below it and
    /// that has no status (asked after this height) can never land.
    pub async fn block_height(&self) -> Result<u64, RpcError> {
        self.guarded(async {
            self.client
                .get_block_height_with_commitment(confirmed())
                .await
                .map_err(|e| self.map(e))
        })
        .await
    }

    /// `isBlockhashValid` at processed (the most recent view, as the client's own confirmation
    /// loop asks it).
    pub async fn is_blockhash_valid(&self, blockhash: &Hash) -> Result<bool, RpcError> {
        self.client
            .is_blockhash_valid(blockhash, CommitmentConfig::processed())
            .await
            .map_err(|e| self.map(e))
    }

    /// Sends a signed transaction WITH preflight (simulated at confirmed first).
    ///
    /// Why preflight on the first send, although Bags' SDK skips it: a refused transaction is
    /// never forwarded and costs nothing, so an unpayable fee (`InsufficientFundsForFee`) or an
    /// already-claimed position surfaces at once as a distinct error instead of a landed failure
    /// that burns a fee (or a silent drop that only shows as an expiry 60–90 s later). Re-sends
    /// of a transaction that may already be in flight must use [`SolanaRpc::send_raw`] with
    /// `skip_preflight = true`: if a copy landed, preflight would answer `AlreadyProcessed`.
    pub async fn send(&self, transaction: &VersionedTransaction) -> Result<Signature, RpcError> {
        let bytes = bincode::serialize(transaction)
            .map_err(|e| RpcError::Other(format!("serializing the transaction failed: {e}")))?;
        self.send_raw(&bytes, false).await
    }

    /// Sends these exact wire bytes (`sendTransaction`, base64, preflight at confirmed unless
    /// skipped; the node rebroadcasts until the blockhash expires). Returns the signature after
    /// checking it is the transaction's own first signature.
    pub async fn send_raw(
        &self,
        bytes: &[u8],
        skip_preflight: bool,
    ) -> Result<Signature, RpcError> {
        let transaction: VersionedTransaction = bincode::deserialize(bytes)
            .map_err(|e| RpcError::Other(format!("not a wire transaction: {e}")))?;
        let expected =
            transaction.signatures.first().copied().ok_or_else(|| {
                RpcError::Other("the transaction carries no signature".to_string())
            })?;
        let config = RpcSendTransactionConfig {
            skip_preflight,
            preflight_commitment: Some(CommitmentLevel::Confirmed),
            encoding: Some(UiTransactionEncoding::Base64),
            max_retries: None,
            min_context_slot: None,
        };
        let answer: String = self
            .guarded(async {
                self.client
                    .send(
                        RpcRequest::SendTransaction,
                        json!([BASE64.encode(bytes), config]),
                    )
                    .await
                    .map_err(|e| self.map(e))
            })
            .await?;
        let signature: Signature = answer
            .parse()
            .map_err(|_| RpcError::Decode("sendTransaction returned no signature".to_string()))?;
        if signature != expected {
            return Err(RpcError::SignatureMismatch);
        }
        Ok(signature)
    }

    /// `getSignatureStatuses` with `searchTransactionHistory: true` (a node forgets statuses
    /// older than its ~300-slot cache otherwise, and a recovering process may ask much later).
    /// One entry per signature, `None` when the node knows nothing of it.
    pub async fn signature_statuses(
        &self,
        signatures: &[Signature],
    ) -> Result<Vec<Option<SignatureStatus>>, RpcError> {
        let statuses = self
            .guarded(async {
                self.client
                    .get_signature_statuses_with_history(signatures)
                    .await
                    .map_err(|e| self.map(e))
            })
            .await?
            .value;
        if statuses.len() != signatures.len() {
            return Err(RpcError::Decode(format!(
                "getSignatureStatuses returned {} statuses for {} signatures",
                statuses.len(),
                signatures.len()
            )));
        }
        Ok(statuses
            .into_iter()
            .map(|status| {
                status.map(|status| {
                    let confirmation = status.confirmation_status();
                    SignatureStatus {
                        slot: status.slot,
                        err: status.err,
                        confirmation,
                    }
                })
            })
            .collect())
    }

    /// `getTransaction` (base64, `maxSupportedTransactionVersion: 0`, confirmed) and the
    /// measured effects on `owner`; `None` while the node does not serve it (not landed, or not
    /// yet confirmed).
    pub async fn transaction_effects(
        &self,
        signature: &Signature,
        owner: &Pubkey,
    ) -> Result<Option<TxEffects>, RpcError> {
        let config = RpcTransactionConfig {
            encoding: Some(UiTransactionEncoding::Base64),
            commitment: Some(confirmed()),
            max_supported_transaction_version: Some(0),
        };
        let confirmed: Option<EncodedConfirmedTransactionWithStatusMeta> = self
            .guarded(async {
                self.client
                    .send(
                        RpcRequest::GetTransaction,
                        json!([signature.to_string(), config]),
                    )
                    .await
                    .map_err(|e| self.map(e))
            })
            .await?;
        confirmed
            .map(|confirmed| TxEffects::from_confirmed(signature, owner, &confirmed))
            .transpose()
            .map_err(RpcError::Decode)
    }

    /// `simulateTransaction` at confirmed without signature checks (a dry run simulates the
    /// transactions Bags built, partially signed, without signing or sending them) and with the
    /// transaction's own blockhash. Nothing is sent.
    pub async fn simulate(
        &self,
        transaction: &VersionedTransaction,
    ) -> Result<Simulation, RpcError> {
        let config = RpcSimulateTransactionConfig {
            sig_verify: false,
            replace_recent_blockhash: false,
            commitment: Some(confirmed()),
            encoding: Some(UiTransactionEncoding::Base64),
            accounts: None,
            min_context_slot: None,
            inner_instructions: false,
        };
        let result = self
            .client
            .simulate_transaction_with_config(transaction, config)
            .await
            .map_err(|e| self.map(e))?
            .value;
        Ok(Simulation {
            err: result.err.map(TransactionError::from),
            logs: result.logs.unwrap_or_default(),
            units_consumed: result.units_consumed,
        })
    }

    /// `getBalance` at confirmed, in lamports.
    pub async fn balance(&self, account: &Pubkey) -> Result<u64, RpcError> {
        self.client
            .get_balance_with_commitment(account, confirmed())
            .await
            .map(|response| response.value)
            .map_err(|e| self.map(e))
    }

    /// `owner`'s balance of `mint` in base units: the sum over every token account of that mint
    /// it owns (`getTokenAccountsByOwner`, jsonParsed), 0 when it has none.
    pub async fn token_balance(&self, owner: &Pubkey, mint: &Pubkey) -> Result<u128, RpcError> {
        let accounts = self
            .client
            .get_token_accounts_by_owner_with_commitment(
                owner,
                TokenAccountsFilter::Mint(*mint),
                confirmed(),
            )
            .await
            .map_err(|e| self.map(e))?
            .value;
        let mut total: u128 = 0;
        for keyed in accounts {
            let UiAccountData::Json(parsed) = &keyed.account.data else {
                return Err(RpcError::Decode(
                    "token account not returned as jsonParsed".to_string(),
                ));
            };
            let amount: u64 = parsed.parsed["info"]["tokenAmount"]["amount"]
                .as_str()
                .and_then(|amount| amount.parse().ok())
                .ok_or_else(|| {
                    RpcError::Decode("token account without tokenAmount.amount".to_string())
                })?;
            total += u128::from(amount);
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use solana_client::rpc_response::{
        EncodedTransaction, EncodedTransactionWithStatusMeta, TransactionBinaryEncoding,
        UiTransactionStatusMeta,
    };
    use solana_client::rpc_response::{OptionSerializer, UiLoadedAddresses, UiTokenAmount};
    use solana_message::{Message, VersionedMessage};
    use solana_sdk::instruction::InstructionError;
    use solana_sdk::signature::{Keypair, Signer};

    #[test]
    fn chain_failures_are_told_apart() {
        assert_eq!(
            ChainFailure::of(&TransactionError::InsufficientFundsForFee),
            ChainFailure::InsufficientFundsForFee
        );
        assert_eq!(
            ChainFailure::of(&TransactionError::InsufficientFundsForRent { account_index: 0 }),
            ChainFailure::InsufficientFundsForFee
        );
        assert_eq!(
            ChainFailure::of(&TransactionError::BlockhashNotFound),
            ChainFailure::BlockhashNotFound
        );
        assert_eq!(
            ChainFailure::of(&TransactionError::AlreadyProcessed),
            ChainFailure::AlreadyProcessed
        );
        let instruction = TransactionError::InstructionError(0, InstructionError::Custom(1));
        assert_eq!(
            ChainFailure::of(&instruction),
            ChainFailure::Failed(instruction.clone())
        );
        let preflight = RpcError::Preflight {
            error: Some(TransactionError::InsufficientFundsForFee),
            message: "Transaction simulation failed".to_string(),
            logs: Vec::new(),
        };
        assert_eq!(
            preflight.chain_failure(),
            Some(ChainFailure::InsufficientFundsForFee)
        );
        assert_eq!(preflight.transience(), Transience::Permanent);
    }

    #[test]
    fn transport_429_5xx_and_unhealthy_nodes_are_transient_the_rest_permanent() {
        let transient = [
            RpcError::Transport {
                kind: TransportKind::Connect,
                message: String::new(),
            },
            RpcError::Http { status: 429 },
            RpcError::Http { status: 503 },
            RpcError::NodeUnhealthy {
                message: String::new(),
            },
        ];
        for error in transient {
            assert!(error.is_transient(), "{error}");
        }
        let permanent = [
            RpcError::Http { status: 401 },
            RpcError::Response {
                code: -32602,
                message: String::new(),
            },
            RpcError::Decode(String::new()),
            RpcError::SignatureMismatch,
        ];
        for error in permanent {
            assert!(!error.is_transient(), "{error}");
        }
    }

    #[tokio::test]
    async fn errors_never_carry_the_url_or_its_key() {
        // Nothing listens on port 1: a connect error whose reqwest text would name the URL.
        for url in [
            "http://127.0.0.1:1/?api-key=sk-very-secret-key",
            "http://127.0.0.1:1/very-secret-path-token/",
            "http://user:hunter2-password@127.0.0.1:1/",
        ] {
            let rpc = SolanaRpc::new(&Secret::new(url), Duration::from_secs(5));
            let error = rpc.block_height().await.unwrap_err();
            let shown = format!("{error} {error:?} {rpc:?}");
            for secret in ["very-secret", "hunter2", "127.0.0.1:1/"] {
                assert!(!shown.contains(secret), "{shown}");
            }
            assert!(error.is_transient(), "{error:?}");
            assert!(
                matches!(
                    error,
                    RpcError::Transport {
                        kind: TransportKind::Connect,
                        ..
                    }
                ),
                "{error:?}"
            );
        }
    }

    #[test]
    fn the_redactor_masks_every_form_of_the_url() {
        let redactor = Redactor::new("https://mainnet.helius-rpc.com/?api-key=abcdef-123456");
        let cleaned = redactor.clean(
            "error for url (https://mainnet.helius-rpc.com/?api-key=abcdef-123456): \
             key abcdef-123456 query api-key=abcdef-123456",
        );
        assert!(!cleaned.contains("abcdef-123456"), "{cleaned}");
    }

    fn token_balance(
        index: u8,
        mint: &Pubkey,
        owner: &Pubkey,
        amount: u64,
    ) -> UiTransactionTokenBalance {
        UiTransactionTokenBalance {
            account_index: index,
            mint: mint.to_string(),
            ui_token_amount: UiTokenAmount {
                ui_amount: None,
                decimals: 6,
                amount: amount.to_string(),
                ui_amount_string: String::new(),
            },
            owner: OptionSerializer::Some(owner.to_string()),
            program_id: OptionSerializer::Skip,
        }
    }

    /// A `getTransaction` answer for a transaction paid by `payer` with these balances.
    fn confirmed(
        payer: &Keypair,
        other: &Pubkey,
        balances: (Vec<u64>, Vec<u64>),
        tokens: (
            Vec<UiTransactionTokenBalance>,
            Vec<UiTransactionTokenBalance>,
        ),
    ) -> (Signature, EncodedConfirmedTransactionWithStatusMeta) {
        let transfer = solana_system_interface::instruction::transfer(&payer.pubkey(), other, 1);
        let message =
            Message::new_with_blockhash(&[transfer], Some(&payer.pubkey()), &Hash::default());
        let transaction =
            VersionedTransaction::try_new(VersionedMessage::Legacy(message), &[payer]).unwrap();
        let signature = transaction.signatures[0];
        let bytes = bincode::serialize(&transaction).unwrap();
        let meta = UiTransactionStatusMeta {
            err: None,
            status: Ok(()),
            fee: 5_000,
            pre_balances: balances.0,
            post_balances: balances.1,
            inner_instructions: OptionSerializer::None,
            log_messages: OptionSerializer::None,
            pre_token_balances: OptionSerializer::Some(tokens.0),
            post_token_balances: OptionSerializer::Some(tokens.1),
            rewards: OptionSerializer::None,
            loaded_addresses: OptionSerializer::Some(UiLoadedAddresses::default()),
            return_data: OptionSerializer::Skip,
            compute_units_consumed: OptionSerializer::Skip,
            cost_units: OptionSerializer::Skip,
        };
        (
            signature,
            EncodedConfirmedTransactionWithStatusMeta {
                slot: 77,
                transaction: EncodedTransactionWithStatusMeta {
                    transaction: EncodedTransaction::Binary(
                        BASE64.encode(bytes),
                        TransactionBinaryEncoding::Base64,
                    ),
                    meta: Some(meta),
                    version: None,
                },
                block_time: Some(1_700_000_000),
                transaction_index: None,
            },
        )
    }

    #[test]
    fn effects_measure_the_owner_lamports_and_token_accounts_only() {
        let payer = Keypair::new();
        let other = Pubkey::new_unique();
        let usdc = Pubkey::new_unique();
        let bonk = Pubkey::new_unique();
        let stranger = Pubkey::new_unique();
        let (signature, answer) = confirmed(
            &payer,
            &other,
            (
                vec![10_000_000, 0, 1],
                vec![9_000_000 - 5_000, 1_000_000, 1],
            ),
            (
                vec![
                    // Our USDC account existed with 5; the stranger's USDC does not count.
                    token_balance(3, &usdc, &payer.pubkey(), 5),
                    token_balance(4, &usdc, &stranger, 1_000),
                    // Our bonk account is closed by the transaction (no post entry).
                    token_balance(6, &bonk, &payer.pubkey(), 42),
                ],
                vec![
                    token_balance(3, &usdc, &payer.pubkey(), 150_000_005),
                    token_balance(4, &usdc, &stranger, 0),
                    // A second USDC account of ours, created here (no pre entry).
                    token_balance(5, &usdc, &payer.pubkey(), 7),
                ],
            ),
        );
        let effects = TxEffects::from_confirmed(&signature, &payer.pubkey(), &answer).unwrap();
        assert_eq!(effects.slot, 77);
        assert_eq!(effects.fee, 5_000);
        assert!(effects.owner_paid_fee);
        assert_eq!(effects.lamport_delta, -1_005_000);
        assert_eq!(effects.token_delta(&usdc), 150_000_007);
        assert_eq!(effects.token_delta(&bonk), -42);
        assert_eq!(effects.token_delta(&stranger), 0);
        assert_eq!(effects.token_deltas.len(), 2);

        // The stored JSON reads back exactly, amounts as strings.
        let json = effects.to_json();
        assert!(json.contains(r#""delta":"150000007""#), "{json}");
        assert_eq!(TxEffects::from_json(&json).unwrap(), effects);

        // Measured for the other account: it received 1,000,000 and paid no fee.
        let theirs = TxEffects::from_confirmed(&signature, &other, &answer).unwrap();
        assert_eq!(theirs.lamport_delta, 1_000_000);
        assert!(!theirs.owner_paid_fee);
        assert!(theirs.token_deltas.is_empty());
    }

    #[test]
    fn effects_keep_the_landed_error() {
        let payer = Keypair::new();
        let (signature, mut answer) = confirmed(
            &payer,
            &Pubkey::new_unique(),
            (vec![10_000, 0, 1], vec![5_000, 0, 1]),
            (Vec::new(), Vec::new()),
        );
        let error = TransactionError::InstructionError(0, InstructionError::Custom(1));
        if let Some(meta) = answer.transaction.meta.as_mut() {
            meta.err = Some(UiTransactionError::from(error.clone()));
        }
        let effects = TxEffects::from_confirmed(&signature, &payer.pubkey(), &answer).unwrap();
        assert_eq!(effects.err, Some(error));
        assert_eq!(effects.lamport_delta, -5_000);
        assert_eq!(TxEffects::from_json(&effects.to_json()).unwrap(), effects);
    }
}
