//! The exactly-once transaction protocol (DESIGN §4, I3): [`submit_once`] lands at most one
//! transaction per (run, phase, purpose), whatever crashes, restarts, drops or retries happen
//! around it, and returns its measured effects.
//!
//! The rules that make it converge:
//! - A transaction is persisted (signed bytes, signature, `lastValidBlockHeight`, committed)
//!   BEFORE its first send; a failed write means nothing is sent.
//! - At most one live (pending or landed) row per purpose (a unique index in the database), so a
//!   second transaction is only ever built after the first is known failed or expired.
//! - "Expired" is declared only when the confirmed block height, read BEFORE the status query,
//!   is past the transaction's `lastValidBlockHeight` and the status query (with history) knows
//!   nothing of it: no block at or below that height can still include it, so it can never land.
//!   Durable-nonce transactions (which do not expire this way) are refused by the guard.
//! - A pending transaction whose fate is unknown is re-sent as the SAME bytes (same signature:
//!   the cluster executes a signature at most once) with preflight skipped.
//! - A transaction that landed with an error, or that the node refused at preflight, is
//!   recorded as failed and reported; it is never retried within the call.

use std::future::Future;
use std::time::{Duration, Instant};

use solana_client::rpc_response::{TransactionError, UiTransactionError};
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::Signature;
use solana_sdk::transaction::VersionedTransaction;

use crate::chain::rpc::{ChainFailure, RpcError, SignatureStatus, SolanaRpc, TxEffects};
use crate::chain::signer::Refusal;
use crate::store::transactions::{NewTransaction, StoredTransaction, TxPhase, TxStatus};
use crate::store::{Store, StoreError};

/// What a transaction is for: one live transaction at most per (run, phase, purpose).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TxPurpose {
    pub run_id: String,
    pub phase: TxPhase,
    /// Names the transaction inside its phase: `claim:<mint>:<i>`, `swap`, `burn` ...
    pub purpose: String,
}

/// A freshly built, inspected and signed transaction with the last block height at which its
/// blockhash is valid (as Bags or `getLatestBlockhash` reported it).
#[derive(Clone, Debug)]
pub struct BuiltTx {
    pub transaction: VersionedTransaction,
    pub last_valid_block_height: u64,
}

/// Tuning of [`submit_once`].
#[derive(Clone, Debug)]
pub struct SubmitOptions {
    /// Between two status polls (a slot is ~400 ms on mainnet).
    pub poll_interval: Duration,
    /// Re-send the same bytes this often while unconfirmed (`None`: only the first send, plus
    /// one re-send when recovering a pending transaction whose first send is not known to have
    /// happened). Leaders drop transactions under load; re-sending is what wallets do.
    pub resend_interval: Option<Duration>,
    /// Fresh transactions built after the first one expired, within one call.
    pub max_rebuilds: u32,
    /// Consecutive failed RPC round trips before giving up with `RPC_UNAVAILABLE` (the pending
    /// row stays; the next call picks it up).
    pub max_rpc_failures: u32,
    /// Skip preflight on the first send too (Bags' SDK does). Off by default: see
    /// [`SolanaRpc::send`].
    pub skip_preflight: bool,
}

impl Default for SubmitOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(400),
            resend_interval: Some(Duration::from_secs(2)),
            max_rebuilds: 2,
            max_rpc_failures: 10,
            skip_preflight: false,
        }
    }
}

/// A transaction of the purpose that landed without error, with what it measurably did to the
/// fee payer (our signer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LandedTx {
    pub signature: Signature,
    pub attempt: u32,
    pub slot: u64,
    pub effects: TxEffects,
}

/// Why [`submit_once`] did not return a landed transaction. [`TxError::code`] is stable.
#[derive(thiserror::Error, Debug)]
pub enum TxError {
    /// The guard or the signer refused the transaction (nothing persisted, nothing sent).
    #[error("transaction refused: {0}")]
    Refused(#[from] Refusal),
    /// It landed with an error (`slot` set; it paid its fee), or the node refused it at
    /// preflight with an execution error (`slot` None; nothing happened). Never retried here.
    #[error("transaction {signature} failed: {error}")]
    Failed {
        signature: Signature,
        slot: Option<u64>,
        error: TransactionError,
    },
    /// The fee payer cannot pay the fee (at preflight or on-chain): fund the signer wallet.
    #[error("transaction {signature}: insufficient SOL for fees ({error})")]
    InsufficientGas {
        signature: Signature,
        error: TransactionError,
    },
    /// Every transaction built in this call expired without landing.
    #[error("transaction expired {attempts} time(s) without landing")]
    Expired { attempts: u32 },
    /// The node refused the transaction outright (malformed, bad signature, too large ...).
    #[error("transaction {signature} rejected by the node: {reason}")]
    Rejected {
        signature: Signature,
        reason: String,
    },
    /// The RPC could not be reached (or kept failing); any pending row stays for the next call.
    #[error("solana rpc unavailable: {0}")]
    RpcUnavailable(RpcError),
    /// The RPC answered with a permanent error unrelated to the transaction.
    #[error("solana rpc error: {0}")]
    Rpc(RpcError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The builder failed (Bags unavailable, nothing to claim ...) with its own code.
    #[error("{message}")]
    Build { code: &'static str, message: String },
    /// The builder returned something that cannot be sent (not fully signed ...).
    #[error("invalid transaction: {0}")]
    Invalid(String),
}

impl TxError {
    /// The stable error code recorded on the run (`runs.error_code`).
    pub fn code(&self) -> &'static str {
        match self {
            TxError::Refused(_) => "TX_REFUSED",
            TxError::Failed { .. } => "TX_FAILED",
            TxError::InsufficientGas { .. } => "INSUFFICIENT_GAS",
            TxError::Expired { .. } => "TX_EXPIRED",
            TxError::Rejected { .. } => "TX_REJECTED",
            TxError::RpcUnavailable(_) => "RPC_UNAVAILABLE",
            TxError::Rpc(_) => "RPC_ERROR",
            TxError::Store(error) if error.is_locked() => "DB_LOCKED",
            TxError::Store(_) => "DB_ERROR",
            TxError::Build { code, .. } => code,
            TxError::Invalid(_) => "TX_INVALID",
        }
    }

    fn from_rpc(error: RpcError) -> TxError {
        if error.is_transient() {
            TxError::RpcUnavailable(error)
        } else {
            TxError::Rpc(error)
        }
    }
}

impl From<crate::chain::signer::GuardError> for TxError {
    fn from(error: crate::chain::signer::GuardError) -> Self {
        TxError::Refused(error.into())
    }
}

impl From<crate::chain::signer::SignError> for TxError {
    fn from(error: crate::chain::signer::SignError) -> Self {
        TxError::Refused(error.into())
    }
}

/// The JSON form of a transaction error, as RPC answers carry it (stored in `error`).
fn error_json(error: &TransactionError) -> String {
    serde_json::to_string(&UiTransactionError::from(error.clone()))
        .unwrap_or_else(|_| format!("{error:?}"))
}

/// The failure a landed-with-error (or preflight-refused) transaction reports.
fn failure(signature: Signature, slot: Option<u64>, error: TransactionError) -> TxError {
    match ChainFailure::of(&error) {
        ChainFailure::InsufficientFundsForFee => TxError::InsufficientGas { signature, error },
        _ => TxError::Failed {
            signature,
            slot,
            error,
        },
    }
}

/// The transaction's id and wire bytes, once checked sendable: every required signature present
/// and valid (so our slot was filled by `signer::sign`).
fn sendable(built: &BuiltTx) -> Result<(Signature, Vec<u8>), TxError> {
    let transaction = &built.transaction;
    let signature = transaction
        .signatures
        .first()
        .copied()
        .ok_or_else(|| TxError::Invalid("no signature".to_string()))?;
    let required = usize::from(transaction.message.header().num_required_signatures);
    if transaction.signatures.len() != required
        || !transaction.verify_with_results().into_iter().all(|ok| ok)
    {
        return Err(TxError::Invalid(format!(
            "{signature} is not fully signed; sign it before submitting"
        )));
    }
    let bytes = bincode::serialize(transaction)
        .map_err(|e| TxError::Invalid(format!("serializing failed: {e}")))?;
    Ok((signature, bytes))
}

/// The fee payer (our signer, whose effects are measured) of stored wire bytes.
fn stored_parts(row: &StoredTransaction) -> Result<(Signature, Pubkey), TxError> {
    let transaction: VersionedTransaction = bincode::deserialize(&row.signed_tx)
        .map_err(|e| TxError::Invalid(format!("stored transaction {} unreadable: {e}", row.id)))?;
    let signature: Signature = row
        .signature
        .parse()
        .map_err(|_| TxError::Invalid(format!("stored signature of {} unreadable", row.id)))?;
    let payer = transaction
        .message
        .static_account_keys()
        .first()
        .copied()
        .ok_or_else(|| TxError::Invalid(format!("stored transaction {} has no keys", row.id)))?;
    Ok((signature, payer))
}

/// Lands at most one transaction for `purpose` and returns it with its measured effects.
///
/// - A landed transaction of the purpose is returned as recorded (its effects read if missing).
/// - A pending one is settled: landed → recorded and returned; landed with an error → recorded
///   failed, `TX_FAILED` / `INSUFFICIENT_GAS`; unknown while its blockhash is valid → the same
///   bytes re-sent and polled; unknown past `lastValidBlockHeight` → marked expired, then:
/// - With no live transaction, `build` makes a fresh one (attempt = last + 1), which is
///   persisted, then sent (with preflight unless `options.skip_preflight`), then polled the same
///   way; at most `1 + options.max_rebuilds` are built per call (`TX_EXPIRED` after).
///
/// `build` must return a transaction that went through `signer::inspect` and `signer::sign`
/// (see `signer::inspect_and_sign`); a guard refusal returned from it (`TxError::Refused`) ends
/// the call before anything is persisted or sent. A call after a `TX_FAILED` builds a new
/// attempt: that is the caller's explicit retry (e.g. a resumed run), never this function's.
pub async fn submit_once<F, Fut>(
    store: &Store,
    rpc: &SolanaRpc,
    purpose: &TxPurpose,
    options: &SubmitOptions,
    mut build: F,
) -> Result<LandedTx, TxError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<BuiltTx, TxError>>,
{
    let mut builds: u32 = 0;
    // Unique violations on insert: another writer persisted a transaction for the purpose
    // between our read and our write. Follow theirs; give up if it keeps happening.
    let mut conflicts: u32 = 0;
    loop {
        if let Some(live) = store
            .live_tx(&purpose.run_id, purpose.phase, &purpose.purpose)
            .await?
        {
            match live.status {
                TxStatus::Landed => return landed(store, rpc, &live, options).await,
                TxStatus::Pending => {
                    // Its first send may not have happened (a crash right after persisting):
                    // re-send at once.
                    match settle(store, rpc, &live, options, true).await? {
                        Some(landed) => return Ok(landed),
                        None => continue,
                    }
                }
                TxStatus::Failed | TxStatus::Expired => {
                    return Err(TxError::Invalid(format!(
                        "transaction {} reported live while {}",
                        live.id, live.status
                    )));
                }
            }
        }

        if builds > options.max_rebuilds {
            return Err(TxError::Expired { attempts: builds });
        }
        builds += 1;
        let built = build().await?;
        let (signature, bytes) = sendable(&built)?;
        let attempt = store
            .next_tx_attempt(&purpose.run_id, purpose.phase, &purpose.purpose)
            .await?;
        let row = match store
            .insert_pending_tx(&NewTransaction {
                run_id: purpose.run_id.clone(),
                phase: purpose.phase,
                purpose: purpose.purpose.clone(),
                attempt,
                signature: signature.to_string(),
                signed_tx: bytes.clone(),
                last_valid_block_height: built.last_valid_block_height,
            })
            .await
        {
            Ok(row) => row,
            Err(error) if error.is_unique_violation() && conflicts < 3 => {
                // Not sent: ours is dropped here, theirs is followed from the top.
                conflicts += 1;
                builds -= 1;
                tracing::warn!(runId = %purpose.run_id, phase = %purpose.phase,
                    purpose = %purpose.purpose, txSig = %signature, attempt,
                    "another transaction was persisted for this purpose; following it");
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        tracing::info!(runId = %purpose.run_id, phase = %purpose.phase,
            purpose = %purpose.purpose, txSig = %signature, attempt,
            lastValidBlockHeight = built.last_valid_block_height, "transaction persisted");

        // Only now, with the row committed, may it leave the process.
        let mut resend_now = false;
        match rpc.send_raw(&bytes, options.skip_preflight).await {
            Ok(_) => {}
            Err(error) => {
                if let Some(refusal) = refused_at_send(signature, &error) {
                    let (text, result) = refusal;
                    store.mark_tx_failed(row.id, &text, None, None).await?;
                    tracing::warn!(runId = %purpose.run_id, phase = %purpose.phase,
                        purpose = %purpose.purpose, txSig = %signature, attempt, error = %text,
                        "transaction refused by the node");
                    return Err(result);
                }
                // Fate unknown (transport error, node lag on the blockhash, mismatched answer):
                // re-send the same bytes at once, then the status polls decide.
                tracing::warn!(runId = %purpose.run_id, phase = %purpose.phase,
                    purpose = %purpose.purpose, txSig = %signature, attempt, error = %error,
                    "send failed; confirming anyway");
                resend_now = true;
            }
        }
        if let Some(landed) = settle(store, rpc, &row, options, resend_now).await? {
            return Ok(landed);
        }
    }
}

/// When the first send's error proves the transaction was NOT forwarded and can never land from
/// it: the text to store as the row's error and the error to return. `None` when its fate is
/// unknown or it may still land (blockhash lag, already processed).
fn refused_at_send(signature: Signature, error: &RpcError) -> Option<(String, TxError)> {
    match error {
        RpcError::Preflight {
            error: Some(transaction_error),
            ..
        } => match ChainFailure::of(transaction_error) {
            // The node may lag behind the blockhash's source; a valid blockhash is retried by
            // the polls, an expired one expires.
            ChainFailure::BlockhashNotFound => None,
            // It already landed: the status poll reads it.
            ChainFailure::AlreadyProcessed => None,
            ChainFailure::InsufficientFundsForFee | ChainFailure::Failed(_) => Some((
                error_json(transaction_error),
                failure(signature, None, transaction_error.clone()),
            )),
        },
        RpcError::Preflight { message, .. } => Some((
            format!("preflight: {message}"),
            TxError::Rejected {
                signature,
                reason: message.clone(),
            },
        )),
        // A JSON-RPC error object: the node answered and did not take the transaction.
        RpcError::Response { code, message } => Some((
            format!("rpc {code}: {message}"),
            TxError::Rejected {
                signature,
                reason: format!("{code}: {message}"),
            },
        )),
        _ => None,
    }
}

/// Settles a persisted pending transaction: `Some` when it landed (recorded, effects read),
/// `None` when it expired (recorded), `Err` when it landed with an error (recorded failed) or the
/// RPC kept failing (left pending). `resend_now` re-sends its bytes before the first poll.
///
/// Public for startup recovery: a restarted daemon may settle `Store::pending_txs` before their
/// runs resume (an expired one is rebuilt when its run resumes).
pub async fn settle_pending(
    store: &Store,
    rpc: &SolanaRpc,
    row: &StoredTransaction,
    options: &SubmitOptions,
) -> Result<Option<LandedTx>, TxError> {
    if row.status != TxStatus::Pending {
        return Err(TxError::Invalid(format!(
            "transaction {} is {}, not pending",
            row.id, row.status
        )));
    }
    settle(store, rpc, row, options, true).await
}

async fn settle(
    store: &Store,
    rpc: &SolanaRpc,
    row: &StoredTransaction,
    options: &SubmitOptions,
    resend_now: bool,
) -> Result<Option<LandedTx>, TxError> {
    let (signature, _) = stored_parts(row)?;
    let mut last_send: Option<Instant> = (!resend_now).then(Instant::now);
    let mut failures: u32 = 0;
    loop {
        let due = match last_send {
            None => true,
            Some(at) => options
                .resend_interval
                .is_some_and(|interval| at.elapsed() >= interval),
        };
        if due {
            // Preflight skipped: a copy that already landed would fail it (AlreadyProcessed),
            // and an expired one is simply dropped by the node. Errors are not decisive here;
            // the status poll is.
            if let Err(error) = rpc.send_raw(&row.signed_tx, true).await {
                tracing::debug!(txSig = %signature, error = %error, "re-send failed");
            }
            last_send = Some(Instant::now());
        }

        // The block height BEFORE the status: if the status query (asked after) finds nothing
        // while that height is already past the last valid one, no block can include it later.
        let observed = match rpc.block_height().await {
            Ok(height) => rpc
                .signature_statuses(&[signature])
                .await
                .map(|statuses| (height, statuses.into_iter().next().flatten())),
            Err(error) => Err(error),
        };
        match observed {
            Err(error) => {
                failures += 1;
                tracing::debug!(txSig = %signature, error = %error, failures, "status poll failed");
                if failures >= options.max_rpc_failures.max(1) {
                    // `getBlockHeight` and `getSignatureStatuses` have no answer that is a
                    // refusal: failing this often, even with a body we cannot read, the RPC
                    // is failing (`RPC_UNAVAILABLE`, runbook), and the row stays pending.
                    return Err(TxError::RpcUnavailable(error));
                }
            }
            Ok((_, Some(status))) if status.is_confirmed() => {
                return record_landing(store, rpc, row, signature, status, options)
                    .await
                    .map(Some);
            }
            Ok((height, None)) if height > row.last_valid_block_height => {
                if store.mark_tx_expired(row.id).await? {
                    tracing::info!(runId = %row.run_id, phase = %row.phase,
                        purpose = %row.purpose, txSig = %signature, attempt = row.attempt,
                        blockHeight = height, lastValidBlockHeight = row.last_valid_block_height,
                        "transaction expired without landing");
                }
                // Otherwise another process settled it first: the caller re-reads the store.
                return Ok(None);
            }
            // Unknown but still valid, or processed and not yet confirmed: keep polling.
            Ok(_) => failures = 0,
        }
        tokio::time::sleep(options.poll_interval).await;
    }
}

/// Records a confirmed status: landed without error → row landed, effects read and stored;
/// with an error → row failed (with its slot and, when readable, the fee it paid) and reported.
async fn record_landing(
    store: &Store,
    rpc: &SolanaRpc,
    row: &StoredTransaction,
    signature: Signature,
    status: SignatureStatus,
    options: &SubmitOptions,
) -> Result<LandedTx, TxError> {
    let (_, payer) = stored_parts(row)?;
    if let Some(error) = status.err {
        // The effects of a failed transaction are its fee; best effort, the failure is what
        // matters and it is recorded either way.
        let effects = read_effects(rpc, &signature, &payer, options).await.ok();
        store
            .mark_tx_failed(
                row.id,
                &error_json(&error),
                Some(status.slot),
                effects.as_ref().map(TxEffects::to_json).as_deref(),
            )
            .await?;
        tracing::warn!(runId = %row.run_id, phase = %row.phase, purpose = %row.purpose,
            txSig = %signature, attempt = row.attempt, slot = status.slot, error = %error,
            "transaction landed with an error");
        return Err(failure(signature, Some(status.slot), error));
    }
    if !store.mark_tx_landed(row.id, status.slot, None).await? {
        let current = store.tx_by_id(row.id).await?;
        return Err(TxError::Invalid(format!(
            "transaction {} landed on-chain but is recorded {}",
            row.id,
            current.map_or("missing".to_string(), |tx| tx.status.to_string())
        )));
    }
    tracing::info!(runId = %row.run_id, phase = %row.phase, purpose = %row.purpose,
        txSig = %signature, attempt = row.attempt, slot = status.slot, "transaction landed");
    let effects = read_effects(rpc, &signature, &payer, options).await?;
    store.set_tx_result(row.id, &effects.to_json()).await?;
    Ok(LandedTx {
        signature,
        attempt: row.attempt,
        slot: status.slot,
        effects,
    })
}

/// A landed row: its recorded effects, or (recorded landed before a crash or an RPC failure
/// kept them from being read) the effects read now and stored.
async fn landed(
    store: &Store,
    rpc: &SolanaRpc,
    row: &StoredTransaction,
    options: &SubmitOptions,
) -> Result<LandedTx, TxError> {
    let (signature, payer) = stored_parts(row)?;
    let recorded = row
        .result
        .as_deref()
        .and_then(|json| TxEffects::from_json(json).ok());
    let effects = match recorded {
        Some(effects) => effects,
        None => {
            let effects = read_effects(rpc, &signature, &payer, options).await?;
            store.set_tx_result(row.id, &effects.to_json()).await?;
            effects
        }
    };
    Ok(LandedTx {
        signature,
        attempt: row.attempt,
        slot: row.slot.unwrap_or(effects.slot),
        effects,
    })
}

/// `getTransaction` until the node serves it (it may trail the status by a moment), bounded by
/// `max_rpc_failures` polls.
async fn read_effects(
    rpc: &SolanaRpc,
    signature: &Signature,
    payer: &Pubkey,
    options: &SubmitOptions,
) -> Result<TxEffects, TxError> {
    let mut last_error = None;
    for _ in 0..options.max_rpc_failures.max(1) {
        match rpc.transaction_effects(signature, payer).await {
            Ok(Some(effects)) => return Ok(effects),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        tokio::time::sleep(options.poll_interval).await;
    }
    Err(TxError::from_rpc(last_error.unwrap_or_else(|| {
        RpcError::Transport {
            kind: crate::chain::rpc::TransportKind::Other,
            message: format!("getTransaction does not serve {signature} yet"),
        }
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use solana_sdk::instruction::InstructionError;

    #[test]
    fn error_codes_are_stable() {
        let signature = Signature::default();
        let cases: Vec<(TxError, &str)> = vec![
            (
                TxError::Failed {
                    signature,
                    slot: Some(1),
                    error: TransactionError::InstructionError(0, InstructionError::Custom(1)),
                },
                "TX_FAILED",
            ),
            (
                failure(signature, None, TransactionError::InsufficientFundsForFee),
                "INSUFFICIENT_GAS",
            ),
            (TxError::Expired { attempts: 3 }, "TX_EXPIRED"),
            (
                TxError::from_rpc(RpcError::Http { status: 503 }),
                "RPC_UNAVAILABLE",
            ),
            (
                TxError::from_rpc(RpcError::Response {
                    code: -32602,
                    message: String::new(),
                }),
                "RPC_ERROR",
            ),
            (
                TxError::Store(StoreError::Locked(sqlx::Error::PoolTimedOut)),
                "DB_LOCKED",
            ),
            (
                crate::chain::signer::GuardError::DurableNonce.into(),
                "TX_REFUSED",
            ),
            (
                TxError::Build {
                    code: "BAGS_UNAVAILABLE",
                    message: String::new(),
                },
                "BAGS_UNAVAILABLE",
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code, "{error}");
        }
    }

    #[test]
    fn the_stored_error_is_the_rpc_json_form() {
        let error = TransactionError::InstructionError(0, InstructionError::Custom(1));
        assert_eq!(
            error_json(&error),
            r#"{"InstructionError":[0,{"Custom":1}]}"#
        );
        assert_eq!(
            error_json(&TransactionError::InsufficientFundsForFee),
            r#""InsufficientFundsForFee""#
        );
    }
}
