//! Solana transactions in the store: the persistence half of the exactly-once protocol (DESIGN §4,
//! I3) over `solana_transactions` — a signed transaction is written (and committed) BEFORE it is
//! sent, then marked landed, failed or expired; the live row of a purpose says what a restarted
//! process must do. The protocol itself is `chain::protocol`.

use std::fmt;
use std::str::FromStr;

use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, Row};

use super::{Store, StoreError, now_timestamp};

/// The run phase a transaction belongs to (`solana_transactions.phase`, the run states that may
/// send transactions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxPhase {
    Claiming,
    Swapping,
    Bridging,
    Allocating,
    Provisioning,
}

impl TxPhase {
    /// The stored form, equal to the run state's name (`CLAIMING` ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            TxPhase::Claiming => "CLAIMING",
            TxPhase::Swapping => "SWAPPING",
            TxPhase::Bridging => "BRIDGING",
            TxPhase::Allocating => "ALLOCATING",
            TxPhase::Provisioning => "PROVISIONING",
        }
    }
}

impl fmt::Display for TxPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TxPhase {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "CLAIMING" => Ok(TxPhase::Claiming),
            "SWAPPING" => Ok(TxPhase::Swapping),
            "BRIDGING" => Ok(TxPhase::Bridging),
            "ALLOCATING" => Ok(TxPhase::Allocating),
            "PROVISIONING" => Ok(TxPhase::Provisioning),
            other => Err(format!("unknown transaction phase {other:?}")),
        }
    }
}

/// Where a stored transaction stands. `Pending` and `Landed` are *live*: at most one live row per
/// (run, phase, purpose), enforced by the `solana_transactions_one_live` unique index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxStatus {
    /// Persisted, maybe sent, not known to have landed.
    Pending,
    /// Landed without error (confirmed).
    Landed,
    /// Landed with an error, or refused by the node at preflight: it will never land.
    Failed,
    /// Its blockhash expired with no status: it can never land.
    Expired,
}

impl TxStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            TxStatus::Pending => "pending",
            TxStatus::Landed => "landed",
            TxStatus::Failed => "failed",
            TxStatus::Expired => "expired",
        }
    }

    /// Pending or landed: the row that blocks a second transaction for its purpose.
    pub fn is_live(&self) -> bool {
        matches!(self, TxStatus::Pending | TxStatus::Landed)
    }
}

impl fmt::Display for TxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TxStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "pending" => Ok(TxStatus::Pending),
            "landed" => Ok(TxStatus::Landed),
            "failed" => Ok(TxStatus::Failed),
            "expired" => Ok(TxStatus::Expired),
            other => Err(format!("unknown transaction status {other:?}")),
        }
    }
}

/// A row of `solana_transactions`.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredTransaction {
    pub id: i64,
    pub run_id: String,
    pub phase: TxPhase,
    /// What the transaction is for inside its phase (`claim:<mint>:<i>`, `swap`, `burn` ...).
    pub purpose: String,
    /// 1 for the first transaction of the purpose, +1 per rebuild.
    pub attempt: u32,
    /// Base58 first signature (the transaction id).
    pub signature: String,
    /// The exact wire bytes that were (or are about to be) sent.
    pub signed_tx: Vec<u8>,
    pub last_valid_block_height: u64,
    pub status: TxStatus,
    /// The slot it landed in (landed, and failed-on-chain rows).
    pub slot: Option<u64>,
    /// Why it failed (the transaction error's JSON, or the node's refusal).
    pub error: Option<String>,
    /// The measured effects (`chain::rpc::TxEffects` as JSON), once read.
    pub result: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

// The signed bytes are not secret, but hundreds of bytes of them make every log line unreadable.
impl fmt::Debug for StoredTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredTransaction")
            .field("id", &self.id)
            .field("run_id", &self.run_id)
            .field("phase", &self.phase)
            .field("purpose", &self.purpose)
            .field("attempt", &self.attempt)
            .field("signature", &self.signature)
            .field("signed_tx_len", &self.signed_tx.len())
            .field("last_valid_block_height", &self.last_valid_block_height)
            .field("status", &self.status)
            .field("slot", &self.slot)
            .field("error", &self.error)
            .field("result", &self.result)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

fn decode_error(column: &str, message: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: message.into(),
    }
}

fn non_negative(column: &str, value: i64) -> Result<u64, sqlx::Error> {
    u64::try_from(value).map_err(|_| decode_error(column, format!("negative value {value}")))
}

// Written out because sqlx's `macros` feature (and its derive) is off to halve the build.
impl FromRow<'_, SqliteRow> for StoredTransaction {
    fn from_row(row: &SqliteRow) -> Result<Self, sqlx::Error> {
        let phase: String = row.try_get("phase")?;
        let status: String = row.try_get("status")?;
        let attempt: i64 = row.try_get("attempt")?;
        let slot: Option<i64> = row.try_get("slot")?;
        Ok(Self {
            id: row.try_get("id")?,
            run_id: row.try_get("run_id")?,
            phase: phase.parse().map_err(|e| decode_error("phase", e))?,
            purpose: row.try_get("purpose")?,
            attempt: u32::try_from(attempt)
                .map_err(|_| decode_error("attempt", format!("out of range: {attempt}")))?,
            signature: row.try_get("signature")?,
            signed_tx: row.try_get("signed_tx")?,
            last_valid_block_height: non_negative(
                "last_valid_block_height",
                row.try_get("last_valid_block_height")?,
            )?,
            status: status.parse().map_err(|e| decode_error("status", e))?,
            slot: slot.map(|slot| non_negative("slot", slot)).transpose()?,
            error: row.try_get("error")?,
            result: row.try_get("result")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// What [`Store::insert_pending_tx`] writes.
#[derive(Clone, PartialEq, Eq)]
pub struct NewTransaction {
    pub run_id: String,
    pub phase: TxPhase,
    pub purpose: String,
    /// From [`Store::next_tx_attempt`]; the UNIQUE (run, phase, purpose, attempt) constraint
    /// refuses a second writer that computed the same number.
    pub attempt: u32,
    pub signature: String,
    pub signed_tx: Vec<u8>,
    pub last_valid_block_height: u64,
}

impl fmt::Debug for NewTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewTransaction")
            .field("run_id", &self.run_id)
            .field("phase", &self.phase)
            .field("purpose", &self.purpose)
            .field("attempt", &self.attempt)
            .field("signature", &self.signature)
            .field("signed_tx_len", &self.signed_tx.len())
            .field("last_valid_block_height", &self.last_valid_block_height)
            .finish()
    }
}

fn to_i64(column: &str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::Sqlx(sqlx::Error::Encode(
            format!("{column} {value} does not fit SQLite's INTEGER").into(),
        ))
    })
}

impl Store {
    /// Persists a signed, not yet sent transaction as `pending`, in its own committed write (the
    /// pool runs it in autocommit, and `synchronous=FULL` makes the commit durable before this
    /// returns). Only after this returns `Ok` may the transaction be sent.
    ///
    /// A unique violation ([`StoreError::is_unique_violation`]) means another live transaction
    /// for the purpose, the same attempt number, or the same signature already exists: nothing
    /// was written, and the caller must not send.
    pub async fn insert_pending_tx(
        &self,
        new: &NewTransaction,
    ) -> Result<StoredTransaction, StoreError> {
        let now = now_timestamp();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO solana_transactions (run_id, phase, purpose, attempt, signature,
                signed_tx, last_valid_block_height, status, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)
             RETURNING id",
        )
        .bind(&new.run_id)
        .bind(new.phase.as_str())
        .bind(&new.purpose)
        .bind(i64::from(new.attempt))
        .bind(&new.signature)
        .bind(&new.signed_tx)
        .bind(to_i64(
            "last_valid_block_height",
            new.last_valid_block_height,
        )?)
        .bind(&now)
        .bind(&now)
        .fetch_one(self.pool())
        .await?;
        self.tx_by_id(id)
            .await?
            .ok_or_else(|| StoreError::Sqlx(sqlx::Error::RowNotFound))
    }

    /// One transaction by row id.
    pub async fn tx_by_id(&self, id: i64) -> Result<Option<StoredTransaction>, StoreError> {
        Ok(
            sqlx::query_as::<_, StoredTransaction>(
                "SELECT * FROM solana_transactions WHERE id = ?",
            )
            .bind(id)
            .fetch_optional(self.pool())
            .await?,
        )
    }

    /// One transaction by its base58 signature.
    pub async fn tx_by_signature(
        &self,
        signature: &str,
    ) -> Result<Option<StoredTransaction>, StoreError> {
        Ok(sqlx::query_as::<_, StoredTransaction>(
            "SELECT * FROM solana_transactions WHERE signature = ?",
        )
        .bind(signature)
        .fetch_optional(self.pool())
        .await?)
    }

    /// The live (pending or landed) transaction of a purpose, if any (there is at most one).
    pub async fn live_tx(
        &self,
        run_id: &str,
        phase: TxPhase,
        purpose: &str,
    ) -> Result<Option<StoredTransaction>, StoreError> {
        Ok(sqlx::query_as::<_, StoredTransaction>(
            "SELECT * FROM solana_transactions
             WHERE run_id = ? AND phase = ? AND purpose = ? AND status IN ('pending', 'landed')",
        )
        .bind(run_id)
        .bind(phase.as_str())
        .bind(purpose)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Every attempt of a purpose, oldest first.
    pub async fn txs_for_purpose(
        &self,
        run_id: &str,
        phase: TxPhase,
        purpose: &str,
    ) -> Result<Vec<StoredTransaction>, StoreError> {
        Ok(sqlx::query_as::<_, StoredTransaction>(
            "SELECT * FROM solana_transactions
             WHERE run_id = ? AND phase = ? AND purpose = ? ORDER BY attempt",
        )
        .bind(run_id)
        .bind(phase.as_str())
        .bind(purpose)
        .fetch_all(self.pool())
        .await?)
    }

    /// Every transaction of a run, in the order they were written.
    pub async fn txs_for_run(&self, run_id: &str) -> Result<Vec<StoredTransaction>, StoreError> {
        Ok(sqlx::query_as::<_, StoredTransaction>(
            "SELECT * FROM solana_transactions WHERE run_id = ? ORDER BY id",
        )
        .bind(run_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// The attempt number a new transaction of this purpose gets: the highest so far + 1 (1 for
    /// the first).
    pub async fn next_tx_attempt(
        &self,
        run_id: &str,
        phase: TxPhase,
        purpose: &str,
    ) -> Result<u32, StoreError> {
        let max: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(attempt) FROM solana_transactions
             WHERE run_id = ? AND phase = ? AND purpose = ?",
        )
        .bind(run_id)
        .bind(phase.as_str())
        .bind(purpose)
        .fetch_one(self.pool())
        .await?;
        let next = max.unwrap_or(0).saturating_add(1);
        u32::try_from(next).map_err(|_| {
            StoreError::Sqlx(sqlx::Error::Decode(
                format!("attempt {next} out of range").into(),
            ))
        })
    }

    /// Every pending transaction (oldest first): what a restarted daemon must settle.
    pub async fn pending_txs(&self) -> Result<Vec<StoredTransaction>, StoreError> {
        Ok(sqlx::query_as::<_, StoredTransaction>(
            "SELECT * FROM solana_transactions WHERE status = 'pending' ORDER BY created_at, id",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// Pending → landed at `slot`, with the measured effects when already read. Also accepts an
    /// already landed row (re-recording the same landing is idempotent). Returns false when the
    /// row was neither pending nor landed (someone else settled it otherwise): the caller re-reads.
    pub async fn mark_tx_landed(
        &self,
        id: i64,
        slot: u64,
        result: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE solana_transactions
             SET status = 'landed', slot = ?, result = COALESCE(?, result), error = NULL,
                 updated_at = ?
             WHERE id = ? AND status IN ('pending', 'landed')",
        )
        .bind(to_i64("slot", slot)?)
        .bind(result)
        .bind(now_timestamp())
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores the measured effects of a landed or failed-on-chain row read after its status.
    pub async fn set_tx_result(&self, id: i64, result: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE solana_transactions SET result = ?, updated_at = ?
             WHERE id = ? AND status IN ('landed', 'failed')",
        )
        .bind(result)
        .bind(now_timestamp())
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Pending → failed: it landed with an error (`slot` set) or the node refused it at preflight
    /// (`slot` None). Either way it will never land, so the purpose may get a fresh transaction —
    /// but only when a caller asks again (a failure is never retried blindly). Returns false if
    /// the row was not pending.
    pub async fn mark_tx_failed(
        &self,
        id: i64,
        error: &str,
        slot: Option<u64>,
        result: Option<&str>,
    ) -> Result<bool, StoreError> {
        let slot = slot.map(|slot| to_i64("slot", slot)).transpose()?;
        let done = sqlx::query(
            "UPDATE solana_transactions
             SET status = 'failed', error = ?, slot = ?, result = ?, updated_at = ?
             WHERE id = ? AND status = 'pending'",
        )
        .bind(error)
        .bind(slot)
        .bind(result)
        .bind(now_timestamp())
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Pending → expired: its blockhash is past `lastValidBlockHeight` and no status exists, so it
    /// can never land. Returns false if the row was not pending.
    pub async fn mark_tx_expired(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE solana_transactions SET status = 'expired', updated_at = ?
             WHERE id = ? AND status = 'pending'",
        )
        .bind(now_timestamp())
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = "run-1";

    /// A fresh database with one strategy and one run (the foreign key every row needs).
    async fn store_with_run(dir: &tempfile::TempDir) -> Store {
        let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
        let now = now_timestamp();
        sqlx::query(
            "INSERT INTO strategies (strategy_id, owner_wallet, token_mint, threshold_lamports,
                slippage_bps, distribution_mode, max_grant_micro_usd, max_key_limit_micro_usd,
                key_expiry_days, reserve_bps, cron_schedule, created_at, updated_at)
             VALUES ('s1', 'So11111111111111111111111111111111111111112',
                'EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v', 0, 50, 'EQUAL_SPLIT',
                10000000, 100000000, 0, 0, '0 * * * *', ?, ?)",
        )
        .bind(&now)
        .bind(&now)
        .execute(store.pool())
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO runs (run_id, strategy_id, state, triggered_by, started_at, updated_at)
             VALUES (?, 's1', 'CLAIMING', 'manual', ?, ?)",
        )
        .bind(RUN)
        .bind(&now)
        .bind(&now)
        .execute(store.pool())
        .await
        .unwrap();
        store
    }

    /// A syntactically valid base58 signature distinct per `n`.
    fn signature(n: u8) -> String {
        bs58::encode([n; 64]).into_string()
    }

    fn new_tx(purpose: &str, attempt: u32, n: u8) -> NewTransaction {
        NewTransaction {
            run_id: RUN.to_string(),
            phase: TxPhase::Claiming,
            purpose: purpose.to_string(),
            attempt,
            signature: signature(n),
            signed_tx: vec![n; 200],
            last_valid_block_height: 1_000 + u64::from(n),
        }
    }

    #[tokio::test]
    async fn a_pending_transaction_reads_back_exactly_and_is_live() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_run(&dir).await;
        assert_eq!(
            store
                .next_tx_attempt(RUN, TxPhase::Claiming, "claim:0")
                .await
                .unwrap(),
            1
        );
        let stored = store
            .insert_pending_tx(&new_tx("claim:0", 1, 1))
            .await
            .unwrap();
        assert_eq!(stored.status, TxStatus::Pending);
        assert_eq!(stored.signed_tx, vec![1; 200]);
        assert_eq!(stored.last_valid_block_height, 1_001);
        assert_eq!(stored.attempt, 1);
        assert_eq!(stored.slot, None);
        assert_eq!(
            store
                .live_tx(RUN, TxPhase::Claiming, "claim:0")
                .await
                .unwrap(),
            Some(stored.clone())
        );
        // Another purpose, or the same purpose in another phase, is not live.
        assert_eq!(
            store
                .live_tx(RUN, TxPhase::Claiming, "claim:1")
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .live_tx(RUN, TxPhase::Swapping, "claim:0")
                .await
                .unwrap(),
            None
        );
        assert_eq!(store.pending_txs().await.unwrap(), vec![stored.clone()]);
        assert_eq!(
            store
                .tx_by_signature(&stored.signature)
                .await
                .unwrap()
                .map(|tx| tx.id),
            Some(stored.id)
        );
        // The debug form leaves the bytes out.
        assert!(!format!("{stored:?}").contains("[1, 1"));
    }

    #[tokio::test]
    async fn the_database_refuses_a_second_live_transaction_for_one_purpose() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_run(&dir).await;
        store
            .insert_pending_tx(&new_tx("swap", 1, 1))
            .await
            .unwrap();
        // A different attempt number does not get around the one-live rule ...
        let error = store
            .insert_pending_tx(&new_tx("swap", 2, 2))
            .await
            .unwrap_err();
        assert!(error.is_unique_violation(), "{error}");
        // ... nor does a landed first one.
        let first = store
            .live_tx(RUN, TxPhase::Claiming, "swap")
            .await
            .unwrap()
            .unwrap();
        assert!(store.mark_tx_landed(first.id, 42, None).await.unwrap());
        let error = store
            .insert_pending_tx(&new_tx("swap", 2, 2))
            .await
            .unwrap_err();
        assert!(error.is_unique_violation(), "{error}");
        // A landed row cannot be turned into a failure.
        assert!(
            !store
                .mark_tx_failed(first.id, "x", None, None)
                .await
                .unwrap()
        );
        // The same attempt number twice (after the first expired) is refused ...
        let burn = store
            .insert_pending_tx(&new_tx("burn", 1, 3))
            .await
            .unwrap();
        assert!(store.mark_tx_expired(burn.id).await.unwrap());
        let error = store
            .insert_pending_tx(&new_tx("burn", 1, 4))
            .await
            .unwrap_err();
        assert!(error.is_unique_violation(), "{error}");
        // ... and so is a signature recorded before, whatever the purpose.
        let error = store
            .insert_pending_tx(&new_tx("other", 1, 3))
            .await
            .unwrap_err();
        assert!(error.is_unique_violation(), "{error}");
        assert_eq!(store.txs_for_run(RUN).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn expiry_frees_the_purpose_for_the_next_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_run(&dir).await;
        let first = store
            .insert_pending_tx(&new_tx("claim:0", 1, 1))
            .await
            .unwrap();
        assert!(store.mark_tx_expired(first.id).await.unwrap());
        // Expired is final: neither expired again nor landed afterwards.
        assert!(!store.mark_tx_expired(first.id).await.unwrap());
        assert!(!store.mark_tx_landed(first.id, 7, None).await.unwrap());
        assert!(
            !store
                .mark_tx_failed(first.id, "late", None, None)
                .await
                .unwrap()
        );
        assert_eq!(
            store
                .live_tx(RUN, TxPhase::Claiming, "claim:0")
                .await
                .unwrap(),
            None
        );
        assert!(store.pending_txs().await.unwrap().is_empty());

        let next = store
            .next_tx_attempt(RUN, TxPhase::Claiming, "claim:0")
            .await
            .unwrap();
        assert_eq!(next, 2);
        let second = store
            .insert_pending_tx(&new_tx("claim:0", next, 2))
            .await
            .unwrap();
        assert_eq!(second.attempt, 2);
        assert!(
            store
                .mark_tx_landed(second.id, 99, Some(r#"{"fee":5000}"#))
                .await
                .unwrap()
        );
        // Landing is idempotent, and keeps the effects when re-recorded without them.
        assert!(store.mark_tx_landed(second.id, 99, None).await.unwrap());
        let landed = store
            .live_tx(RUN, TxPhase::Claiming, "claim:0")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(landed.id, second.id);
        assert_eq!(landed.status, TxStatus::Landed);
        assert_eq!(landed.slot, Some(99));
        assert_eq!(landed.result.as_deref(), Some(r#"{"fee":5000}"#));
        let attempts: Vec<(u32, TxStatus)> = store
            .txs_for_purpose(RUN, TxPhase::Claiming, "claim:0")
            .await
            .unwrap()
            .into_iter()
            .map(|tx| (tx.attempt, tx.status))
            .collect();
        assert_eq!(
            attempts,
            vec![(1, TxStatus::Expired), (2, TxStatus::Landed)]
        );
    }

    #[tokio::test]
    async fn failures_record_the_error_slot_and_effects() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_run(&dir).await;
        let tx = store
            .insert_pending_tx(&new_tx("claim:0", 1, 1))
            .await
            .unwrap();
        let error = r#"{"InstructionError":[0,{"Custom":1}]}"#;
        assert!(
            store
                .mark_tx_failed(tx.id, error, Some(1234), Some(r#"{"fee":5000}"#))
                .await
                .unwrap()
        );
        let failed = store.tx_by_id(tx.id).await.unwrap().unwrap();
        assert_eq!(failed.status, TxStatus::Failed);
        assert!(!failed.status.is_live());
        assert_eq!(failed.error.as_deref(), Some(error));
        assert_eq!(failed.slot, Some(1234));
        assert!(store.set_tx_result(tx.id, r#"{"fee":6000}"#).await.unwrap());
        assert_eq!(
            store
                .tx_by_id(tx.id)
                .await
                .unwrap()
                .unwrap()
                .result
                .as_deref(),
            Some(r#"{"fee":6000}"#)
        );
        // A pending row has no effects to set.
        let pending = store
            .insert_pending_tx(&new_tx("claim:1", 1, 2))
            .await
            .unwrap();
        assert!(!store.set_tx_result(pending.id, "{}").await.unwrap());
    }

    #[tokio::test]
    async fn the_database_refuses_invalid_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_run(&dir).await;
        // Unknown run: the foreign key.
        let mut orphan = new_tx("claim:0", 1, 1);
        orphan.run_id = "missing".to_string();
        let error = store.insert_pending_tx(&orphan).await.unwrap_err();
        assert!(error.is_foreign_key_violation(), "{error}");
        // Not base58: the CHECK.
        let mut bad = new_tx("claim:0", 1, 2);
        bad.signature = "0".repeat(80);
        let error = store.insert_pending_tx(&bad).await.unwrap_err();
        assert!(error.is_check_violation(), "{error}");
        // Attempt 0: the CHECK.
        let error = store
            .insert_pending_tx(&new_tx("claim:0", 0, 3))
            .await
            .unwrap_err();
        assert!(error.is_check_violation(), "{error}");
        // A block height SQLite cannot hold.
        let mut huge = new_tx("claim:0", 1, 4);
        huge.last_valid_block_height = u64::MAX;
        assert!(store.insert_pending_tx(&huge).await.is_err());
        assert!(store.txs_for_run(RUN).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_reopened_database_still_holds_the_pending_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_run(&dir).await;
        let stored = store
            .insert_pending_tx(&new_tx("swap", 1, 9))
            .await
            .unwrap();
        // No close: a crash does not close the pool either.
        drop(store);
        let reopened = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
        assert_eq!(reopened.pending_txs().await.unwrap(), vec![stored]);
    }
}
