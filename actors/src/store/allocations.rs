//! The grant ledger in the store (`allocations`): per-run, per-holder grants written by ALLOCATING
//! (inside the caller's checkpoint transaction) and applied exactly once by PROVISIONING, with the
//! absolute target limit stored before the OpenRouter call so a retry sends the same value (I3).

use std::fmt;
use std::str::FromStr;

use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, Row, SqliteConnection};

use super::{Store, StoreError, now_timestamp};

/// Where an allocation stands (`allocations.status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AllocationStatus {
    /// Written by ALLOCATING, not yet applied.
    Pending,
    /// Applied to the holder's key (or, for a dry-run row, recorded as what would be done).
    Applied,
    /// The last attempt failed (`last_error`); retried on resume.
    Failed,
    /// Deliberately not applied (`last_error` says why).
    Skipped,
}

impl AllocationStatus {
    pub const ALL: [AllocationStatus; 4] = [
        AllocationStatus::Pending,
        AllocationStatus::Applied,
        AllocationStatus::Failed,
        AllocationStatus::Skipped,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            AllocationStatus::Pending => "pending",
            AllocationStatus::Applied => "applied",
            AllocationStatus::Failed => "failed",
            AllocationStatus::Skipped => "skipped",
        }
    }

    /// Pending or failed: still to be applied.
    pub fn is_open(&self) -> bool {
        matches!(self, AllocationStatus::Pending | AllocationStatus::Failed)
    }
}

impl fmt::Display for AllocationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AllocationStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        AllocationStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| format!("unknown allocation status {text:?}"))
    }
}

/// A row of `allocations`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub id: i64,
    pub run_id: String,
    pub holder_wallet: String,
    /// The holder's token balance in base units at the snapshot.
    pub token_balance: u64,
    /// The holder's weight in the split; share = weight / Σ weight over the run's rows.
    pub weight: u64,
    /// Whole cents (a multiple of 10 000).
    pub grant_micro_usd: i64,
    pub dry_run: bool,
    pub status: AllocationStatus,
    /// The absolute key limit to set, stored before the OpenRouter call.
    pub target_limit_micro_usd: Option<i64>,
    /// The key the grant goes (or went) to.
    pub key_hash: Option<String>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The last failure, or why the row was skipped.
    pub last_error: Option<String>,
    pub applied_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

fn decode_error(column: &str, message: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: message.into(),
    }
}

/// Canonical decimal TEXT (as the schema CHECKs it) → u64.
fn decode_u64_text(column: &str, text: &str) -> Result<u64, sqlx::Error> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical
        .then(|| text.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| decode_error(column, format!("not a canonical u64: {text:?}")))
}

// Written out because sqlx's `macros` feature (and its derive) is off to halve the build.
impl FromRow<'_, SqliteRow> for Allocation {
    fn from_row(row: &SqliteRow) -> Result<Self, sqlx::Error> {
        let token_balance: String = row.try_get("token_balance")?;
        let weight: String = row.try_get("weight")?;
        let dry_run: i64 = row.try_get("dry_run")?;
        let status: String = row.try_get("status")?;
        let attempts: i64 = row.try_get("attempts")?;
        Ok(Self {
            id: row.try_get("id")?,
            run_id: row.try_get("run_id")?,
            holder_wallet: row.try_get("holder_wallet")?,
            token_balance: decode_u64_text("token_balance", &token_balance)?,
            weight: decode_u64_text("weight", &weight)?,
            grant_micro_usd: row.try_get("grant_micro_usd")?,
            dry_run: dry_run != 0,
            status: status.parse().map_err(|e| decode_error("status", e))?,
            target_limit_micro_usd: row.try_get("target_limit_micro_usd")?,
            key_hash: row.try_get("key_hash")?,
            attempts: u32::try_from(attempts)
                .map_err(|_| decode_error("attempts", format!("out of range: {attempts}")))?,
            last_error: row.try_get("last_error")?,
            applied_at: row.try_get("applied_at")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// One holder's grant as ALLOCATING computed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAllocation {
    pub wallet: String,
    pub token_balance: u64,
    pub weight: u64,
    /// Whole cents (a multiple of 10 000); the schema refuses anything else.
    pub grant_micro_usd: i64,
    pub dry_run: bool,
}

/// The target an allocation is applied with, as stored (see [`Store::set_allocation_target`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocationTarget {
    pub target_limit_micro_usd: i64,
    pub key_hash: Option<String>,
}

/// Writes a run's allocation rows (status `pending`) on `conn`, which should be the ALLOCATING
/// checkpoint's transaction so the rows, the carry-over and the state advance commit together.
/// Returns the rows as stored, in input order. A holder listed twice, or a run that already has
/// rows for a holder, is a unique violation; the caller's transaction then rolls back.
pub async fn insert_allocations(
    conn: &mut SqliteConnection,
    run_id: &str,
    rows: &[NewAllocation],
) -> Result<Vec<Allocation>, StoreError> {
    let now = now_timestamp();
    let mut inserted = Vec::with_capacity(rows.len());
    for row in rows {
        let allocation = sqlx::query_as::<_, Allocation>(
            "INSERT INTO allocations (run_id, holder_wallet, token_balance, weight,
                 grant_micro_usd, dry_run, status, attempts, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)
             RETURNING *",
        )
        .bind(run_id)
        .bind(&row.wallet)
        // u64 as canonical decimal text: SQLite's INTEGER is i64 (see the schema header).
        .bind(row.token_balance.to_string())
        .bind(row.weight.to_string())
        .bind(row.grant_micro_usd)
        .bind(i64::from(row.dry_run))
        .bind(&now)
        .bind(&now)
        .fetch_one(&mut *conn)
        .await?;
        inserted.push(allocation);
    }
    Ok(inserted)
}

/// Marks an open (pending or failed) allocation applied on `conn`, naming its key (`None` keeps
/// the key stored by [`Store::set_allocation_target`]), and, for a live row, records the stored
/// target as the key's limit in `user_keys`. Both writes happen in the same transaction when
/// `conn` is one; [`Store::mark_allocation_applied`] opens one. Returns false (nothing written)
/// when the row does not exist or is not open.
///
/// The schema refuses (check violation) a live row without a target or a key.
pub async fn mark_allocation_applied_on(
    conn: &mut SqliteConnection,
    id: i64,
    key_hash: Option<&str>,
) -> Result<bool, StoreError> {
    let now = now_timestamp();
    let applied: Option<(i64, Option<i64>, Option<String>)> = sqlx::query_as(
        "UPDATE allocations
         SET status = 'applied', key_hash = COALESCE(?, key_hash), applied_at = ?,
             last_error = NULL, updated_at = ?
         WHERE id = ? AND status IN ('pending', 'failed')
         RETURNING dry_run, target_limit_micro_usd, key_hash",
    )
    .bind(key_hash)
    .bind(&now)
    .bind(&now)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((dry_run, target, key)) = applied else {
        return Ok(false);
    };
    // The ledger must know the limit the key now has, or the promised credit (I1) would be
    // understated; updated with the allocation so no crash can separate the two.
    if dry_run == 0
        && let (Some(target), Some(key)) = (target, key)
    {
        sqlx::query("UPDATE user_keys SET limit_micro_usd = ?, updated_at = ? WHERE key_hash = ?")
            .bind(target)
            .bind(&now)
            .bind(key)
            .execute(&mut *conn)
            .await?;
    }
    Ok(true)
}

/// [`Store::set_allocation_target`] on `conn` (e.g. inside the transaction that records the
/// application, when nothing was sent that a retry must repeat exactly).
pub async fn set_allocation_target_on(
    conn: &mut SqliteConnection,
    id: i64,
    target_limit_micro_usd: i64,
    key_hash: Option<&str>,
) -> Result<Option<AllocationTarget>, StoreError> {
    let stored: Option<(Option<i64>, Option<String>)> = sqlx::query_as(
        "UPDATE allocations
         SET target_limit_micro_usd = COALESCE(target_limit_micro_usd, ?),
             key_hash = COALESCE(key_hash, ?), updated_at = ?
         WHERE id = ? AND status IN ('pending', 'failed')
         RETURNING target_limit_micro_usd, key_hash",
    )
    .bind(target_limit_micro_usd)
    .bind(key_hash)
    .bind(now_timestamp())
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(stored.and_then(|(target, key_hash)| {
        target.map(|target_limit_micro_usd| AllocationTarget {
            target_limit_micro_usd,
            key_hash,
        })
    }))
}

impl Store {
    /// Every allocation of a run (dry-run rows included), in insertion order.
    pub async fn allocations_for_run(&self, run_id: &str) -> Result<Vec<Allocation>, StoreError> {
        Ok(sqlx::query_as::<_, Allocation>(
            "SELECT * FROM allocations WHERE run_id = ? ORDER BY id",
        )
        .bind(run_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// One allocation by row id.
    pub async fn allocation(&self, id: i64) -> Result<Option<Allocation>, StoreError> {
        Ok(
            sqlx::query_as::<_, Allocation>("SELECT * FROM allocations WHERE id = ?")
                .bind(id)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// The live (not dry-run) allocations of a run still to apply (pending or failed), in
    /// insertion order: PROVISIONING's work list, on first entry and on resume.
    pub async fn pending_allocations(&self, run_id: &str) -> Result<Vec<Allocation>, StoreError> {
        Ok(sqlx::query_as::<_, Allocation>(
            "SELECT * FROM allocations
             WHERE run_id = ? AND status IN ('pending', 'failed') AND dry_run = 0
             ORDER BY id",
        )
        .bind(run_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Stores the absolute target limit (and the key, when the holder already has one) of an
    /// open allocation, BEFORE the OpenRouter call. The first stored target wins: a later call
    /// (a retry or a resume after a crash, when the first call may already have landed) does
    /// not overwrite it but returns it, and the caller must send the returned value — never a
    /// recomputed one, which after a landed top-up would grant twice. A stored key is kept the
    /// same way. Returns `None` when the row does not exist or is no longer open.
    pub async fn set_allocation_target(
        &self,
        id: i64,
        target_limit_micro_usd: i64,
        key_hash: Option<&str>,
    ) -> Result<Option<AllocationTarget>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        set_allocation_target_on(&mut conn, id, target_limit_micro_usd, key_hash).await
    }

    /// Marks an open allocation applied and records its target as the key's limit, in one
    /// transaction (see [`mark_allocation_applied_on`]).
    pub async fn mark_allocation_applied(
        &self,
        id: i64,
        key_hash: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let applied = mark_allocation_applied_on(&mut tx, id, key_hash).await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// Records a failed attempt on an open allocation: status `failed`, attempts + 1, the
    /// error. It stays in [`Store::pending_allocations`] for the next resume. False when the
    /// row does not exist or is not open.
    pub async fn mark_allocation_failed(&self, id: i64, error: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE allocations
             SET status = 'failed', attempts = attempts + 1, last_error = ?, updated_at = ?
             WHERE id = ? AND status IN ('pending', 'failed')",
        )
        .bind(error)
        .bind(now_timestamp())
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks an open allocation skipped, with why (kept in `last_error`, the row's one free-text
    /// column). False when the row does not exist or is not open.
    pub async fn mark_allocation_skipped(&self, id: i64, reason: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE allocations SET status = 'skipped', last_error = ?, updated_at = ?
             WHERE id = ? AND status IN ('pending', 'failed')",
        )
        .bind(reason)
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
    use crate::store::keys::NewUserKey;

    const WALLET_A: &str = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM";
    const WALLET_B: &str = "HN7cABqLq46Es1jh92dQQisAq662SmxELLLsHHe4YWrH";
    const WALLET_C: &str = "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU";

    /// A store with strategy `s1` and a run `r1` in ALLOCATING (a non-terminal state needs no
    /// finished_at and no error columns).
    async fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("creditbrain.db"))
            .await
            .unwrap();
        let now = now_timestamp();
        sqlx::query(
            "INSERT INTO strategies (strategy_id, owner_wallet, token_mint, threshold_lamports,
                 slippage_bps, distribution_mode, max_grant_micro_usd, max_key_limit_micro_usd,
                 key_expiry_days, reserve_bps, cron_schedule, created_at, updated_at)
             VALUES ('s1', ?, 'EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v', 0, 50,
                 'WEIGHTED_BY_HOLDINGS', 10000000, 100000000, 0, 0, '0 * * * *', ?, ?)",
        )
        .bind(WALLET_C)
        .bind(&now)
        .bind(&now)
        .execute(store.pool())
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO runs (run_id, strategy_id, state, triggered_by, started_at, updated_at)
             VALUES ('r1', 's1', 'ALLOCATING', 'manual', ?, ?)",
        )
        .bind(&now)
        .bind(&now)
        .execute(store.pool())
        .await
        .unwrap();
        (dir, store)
    }

    fn grant(wallet: &str, balance: u64, grant_micro_usd: i64, dry_run: bool) -> NewAllocation {
        NewAllocation {
            wallet: wallet.to_string(),
            token_balance: balance,
            weight: balance,
            grant_micro_usd,
            dry_run,
        }
    }

    async fn insert(store: &Store, rows: &[NewAllocation]) -> Result<Vec<Allocation>, StoreError> {
        let mut tx = store.begin_write().await?;
        let inserted = insert_allocations(&mut tx, "r1", rows).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    async fn insert_key(store: &Store, hash: &str, wallet: &str, limit: i64) {
        store
            .insert_user_key(&NewUserKey {
                key_hash: hash.to_string(),
                strategy_id: "s1".to_string(),
                holder_wallet: wallet.to_string(),
                name: format!("creditbrain-s1-{wallet}"),
                limit_micro_usd: limit,
                limit_reset: None,
                encrypted: None,
                expires_at: None,
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn allocations_round_trip_with_full_u64_balances() {
        let (_dir, store) = temp_store().await;
        let rows = [
            NewAllocation {
                weight: 1,
                ..grant(WALLET_A, u64::MAX, 10_000_000, false)
            },
            grant(WALLET_B, 0, 0, false),
            grant(WALLET_C, 1_000_000_000_000_000_000, 20_000, true),
        ];
        let inserted = insert(&store, &rows).await.unwrap();
        let read = store.allocations_for_run("r1").await.unwrap();
        assert_eq!(read, inserted);
        assert_eq!(read.len(), 3);
        for (row, new) in read.iter().zip(&rows) {
            assert_eq!(row.run_id, "r1");
            assert_eq!(row.holder_wallet, new.wallet);
            assert_eq!(row.token_balance, new.token_balance);
            assert_eq!(row.weight, new.weight);
            assert_eq!(row.grant_micro_usd, new.grant_micro_usd);
            assert_eq!(row.dry_run, new.dry_run);
            assert_eq!(row.status, AllocationStatus::Pending);
            assert_eq!(row.attempts, 0);
            assert_eq!(
                (row.target_limit_micro_usd, row.key_hash.clone()),
                (None, None)
            );
        }
        let text: String =
            sqlx::query_scalar("SELECT token_balance FROM allocations WHERE holder_wallet = ?")
                .bind(WALLET_A)
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(text, "18446744073709551615");
        assert_eq!(
            store.allocation(read[0].id).await.unwrap(),
            Some(read[0].clone())
        );
        // Dry-run rows are not provisioning work.
        let pending: Vec<_> = store
            .pending_allocations("r1")
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.holder_wallet)
            .collect();
        assert_eq!(pending, [WALLET_A, WALLET_B]);
        assert!(store.allocations_for_run("other").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_bad_row_rolls_back_the_whole_checkpoint() {
        let (_dir, store) = temp_store().await;
        // Not whole cents: the schema refuses it, and the good row before it goes too.
        let error = insert(
            &store,
            &[
                grant(WALLET_A, 5, 10_000, false),
                grant(WALLET_B, 5, 10_001, false),
            ],
        )
        .await
        .unwrap_err();
        assert!(error.is_check_violation(), "{error}");
        assert!(store.allocations_for_run("r1").await.unwrap().is_empty());
        // One row per holder per run.
        let error = insert(
            &store,
            &[
                grant(WALLET_A, 5, 10_000, false),
                grant(WALLET_A, 6, 10_000, false),
            ],
        )
        .await
        .unwrap_err();
        assert!(error.is_unique_violation(), "{error}");
        assert!(store.allocations_for_run("r1").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn applying_needs_a_target_and_a_key() {
        let (_dir, store) = temp_store().await;
        insert_key(&store, "h1", WALLET_A, 1_000_000).await;
        let rows = insert(
            &store,
            &[
                grant(WALLET_A, 5, 2_000_000, false),
                grant(WALLET_B, 5, 10_000, false),
                grant(WALLET_C, 5, 10_000, true),
            ],
        )
        .await
        .unwrap();
        let (a, b, dry) = (rows[0].id, rows[1].id, rows[2].id);

        // A live row applied without a target or key: the applied-row CHECK refuses it.
        let error = store.mark_allocation_applied(b, None).await.unwrap_err();
        assert!(error.is_check_violation(), "{error}");
        let error = store
            .mark_allocation_applied(a, Some("h1"))
            .await
            .unwrap_err();
        assert!(error.is_check_violation(), "{error}");
        assert_eq!(
            store.allocation(a).await.unwrap().unwrap().status,
            AllocationStatus::Pending
        );
        // A dry-run row may be recorded as applied without either.
        assert!(store.mark_allocation_applied(dry, None).await.unwrap());

        // The first target stored wins and is what a retry must send.
        let target = store
            .set_allocation_target(a, 3_000_000, Some("h1"))
            .await
            .unwrap();
        let expected = AllocationTarget {
            target_limit_micro_usd: 3_000_000,
            key_hash: Some("h1".to_string()),
        };
        assert_eq!(target, Some(expected.clone()));
        assert_eq!(
            store
                .set_allocation_target(a, 5_000_000, None)
                .await
                .unwrap(),
            Some(expected)
        );
        assert!(store.mark_allocation_applied(a, None).await.unwrap());
        let applied = store.allocation(a).await.unwrap().unwrap();
        assert_eq!(applied.status, AllocationStatus::Applied);
        assert_eq!(applied.target_limit_micro_usd, Some(3_000_000));
        assert_eq!(applied.key_hash.as_deref(), Some("h1"));
        assert!(applied.applied_at.is_some());
        // The key ledger follows, in the same transaction.
        let key = store.key_by_hash("h1").await.unwrap().unwrap();
        assert_eq!(key.limit_micro_usd, 3_000_000);
        // Applied is final.
        assert!(!store.mark_allocation_applied(a, Some("h1")).await.unwrap());
        assert!(!store.mark_allocation_failed(a, "late").await.unwrap());
        assert_eq!(store.set_allocation_target(a, 1, None).await.unwrap(), None);

        // A new holder: target first (no key yet), the key named when applied.
        let target = store.set_allocation_target(b, 10_000, None).await.unwrap();
        assert_eq!(target.unwrap().key_hash, None);
        insert_key(&store, "h2", WALLET_B, 10_000).await;
        assert!(store.mark_allocation_applied(b, Some("h2")).await.unwrap());
        assert_eq!(
            store
                .allocation(b)
                .await
                .unwrap()
                .unwrap()
                .key_hash
                .as_deref(),
            Some("h2")
        );
        assert!(store.pending_allocations("r1").await.unwrap().is_empty());
        assert!(!store.mark_allocation_applied(999, None).await.unwrap());
    }

    #[tokio::test]
    async fn failures_count_attempts_and_stay_pending() {
        let (_dir, store) = temp_store().await;
        let rows = insert(
            &store,
            &[
                grant(WALLET_A, 5, 10_000, false),
                grant(WALLET_B, 5, 10_000, false),
            ],
        )
        .await
        .unwrap();
        let (a, b) = (rows[0].id, rows[1].id);
        assert!(store.mark_allocation_failed(a, "timeout").await.unwrap());
        assert!(store.mark_allocation_failed(a, "http 503").await.unwrap());
        let failed = store.allocation(a).await.unwrap().unwrap();
        assert_eq!(failed.status, AllocationStatus::Failed);
        assert_eq!(failed.attempts, 2);
        assert_eq!(failed.last_error.as_deref(), Some("http 503"));
        assert_eq!(store.pending_allocations("r1").await.unwrap().len(), 2);

        assert!(
            store
                .mark_allocation_skipped(b, "pool_exhausted")
                .await
                .unwrap()
        );
        let skipped = store.allocation(b).await.unwrap().unwrap();
        assert_eq!(skipped.status, AllocationStatus::Skipped);
        assert_eq!(skipped.last_error.as_deref(), Some("pool_exhausted"));
        assert_eq!(skipped.attempts, 0);
        assert!(!store.mark_allocation_failed(b, "x").await.unwrap());
        let pending = store.pending_allocations("r1").await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, a);
    }

    #[test]
    fn u64_text_is_canonical() {
        assert_eq!(decode_u64_text("c", "0").unwrap(), 0);
        assert_eq!(
            decode_u64_text("c", "18446744073709551615").unwrap(),
            u64::MAX
        );
        for bad in ["", "01", "+1", "-1", "18446744073709551616", "1 "] {
            assert!(decode_u64_text("c", bad).is_err(), "{bad:?}");
        }
        for status in AllocationStatus::ALL {
            assert_eq!(status.as_str().parse::<AllocationStatus>(), Ok(status));
        }
    }
}
