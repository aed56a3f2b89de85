//! Key-ledger queries for key maintenance (reconcile and rotation): whole-ledger reads, the keys
//! due for rotation, what blocks a rotation, and the guarded writes that record a rotation, an
//! adoption or a key found missing on OpenRouter together with their audit entries.
//!
//! Each write is one transaction with its audit row, so no crash can leave a repair done but not
//! audited (or audited but not done).

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

use super::audit::{AuditEntry, append_audit};
use super::keys::{NewUserKey, UserKey, insert_user_key_on};
use super::{Store, StoreError, format_timestamp, now_timestamp};

/// Why a key may not be rotated now: a run is (or may be) working with it. Rotating under a run
/// would strand the run's stored target on a deleted key, or top up the old key after its
/// remaining limit was copied (a lost grant, I3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RotationBlocker {
    /// The strategy has a run that is not COMPLETE or FAILED.
    RunInProgress { run_id: String },
    /// An open (pending or failed, not dry-run) allocation targets the key: a failed run that a
    /// resume will finish on this very key.
    OpenAllocation { allocation_id: i64, run_id: String },
}

/// What [`Store::record_rotation`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RotationRecord {
    /// The old key is `rotated` and the new one is the holder's current key.
    Recorded(Box<UserKey>),
    /// Nothing written: something now blocks the rotation.
    Blocked(RotationBlocker),
    /// Nothing written: the old key is no longer the holder's current key.
    NotCurrent,
}

async fn blocker_on(
    conn: &mut SqliteConnection,
    strategy_id: &str,
    key_hash: &str,
) -> Result<Option<RotationBlocker>, StoreError> {
    let run: Option<String> = sqlx::query_scalar(
        "SELECT run_id FROM runs
         WHERE strategy_id = ? AND state NOT IN ('COMPLETE', 'FAILED') LIMIT 1",
    )
    .bind(strategy_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(run_id) = run {
        return Ok(Some(RotationBlocker::RunInProgress { run_id }));
    }
    let allocation: Option<(i64, String)> = sqlx::query_as(
        "SELECT id, run_id FROM allocations
         WHERE key_hash = ? AND status IN ('pending', 'failed') AND dry_run = 0
         ORDER BY id LIMIT 1",
    )
    .bind(key_hash)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(
        allocation.map(|(allocation_id, run_id)| RotationBlocker::OpenAllocation {
            allocation_id,
            run_id,
        }),
    )
}

impl Store {
    /// Every row of the ledger, whatever its status, oldest first.
    pub async fn all_user_keys(&self) -> Result<Vec<UserKey>, StoreError> {
        Ok(
            sqlx::query_as::<_, UserKey>("SELECT * FROM user_keys ORDER BY created_at, key_hash")
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// Current (active or exhausted) keys created strictly before `cutoff`, oldest first: the
    /// keys due for rotation.
    pub async fn current_keys_created_before(
        &self,
        cutoff: DateTime<Utc>,
    ) -> Result<Vec<UserKey>, StoreError> {
        Ok(sqlx::query_as::<_, UserKey>(
            "SELECT * FROM user_keys
             WHERE status IN ('active', 'exhausted') AND created_at < ?
             ORDER BY created_at, key_hash",
        )
        .bind(format_timestamp(cutoff))
        .fetch_all(self.pool())
        .await?)
    }

    /// What blocks rotating `key_hash` of `strategy_id` now, if anything (a run in progress
    /// first). A cheap check before any OpenRouter call; [`Store::record_rotation`] checks again
    /// inside its transaction.
    pub async fn rotation_blocker(
        &self,
        strategy_id: &str,
        key_hash: &str,
    ) -> Result<Option<RotationBlocker>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        blocker_on(&mut conn, strategy_id, key_hash).await
    }

    /// Records a rotation in one write transaction, or nothing: checks that nothing blocks it
    /// ([`RotationBlocker`]) and that `old_hash` is still the current key of `new`'s holder;
    /// then marks the old key `rotated` with its final usage (read from OpenRouter as it was
    /// frozen) and erases its unrevealed ciphertext, inserts `new` as the holder's current key,
    /// links the two (`replaced_by_hash`) and appends `audit`.
    ///
    /// This is [`Store::mark_rotated`] with the guards inside the same write lock as the write:
    /// a run created a moment after our pre-check is either seen here (nothing written) or
    /// starts after the commit and finds the new key.
    pub async fn record_rotation(
        &self,
        old_hash: &str,
        old_usage_micro_usd: i64,
        new: &NewUserKey,
        audit: &AuditEntry,
    ) -> Result<RotationRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        if let Some(blocker) = blocker_on(&mut tx, &new.strategy_id, old_hash).await? {
            tx.rollback().await?;
            return Ok(RotationRecord::Blocked(blocker));
        }
        let now = now_timestamp();
        let retired = sqlx::query(
            "UPDATE user_keys
             SET status = 'rotated', encrypted_key = NULL, key_nonce = NULL,
                 usage_micro_usd = MAX(usage_micro_usd, ?), last_synced_at = ?, updated_at = ?
             WHERE key_hash = ? AND strategy_id = ? AND holder_wallet = ?
               AND status IN ('active', 'exhausted')",
        )
        .bind(old_usage_micro_usd.max(0))
        .bind(&now)
        .bind(&now)
        .bind(old_hash)
        .bind(&new.strategy_id)
        .bind(&new.holder_wallet)
        .execute(&mut *tx)
        .await?;
        if retired.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(RotationRecord::NotCurrent);
        }
        let key = insert_user_key_on(&mut tx, new).await?;
        sqlx::query("UPDATE user_keys SET replaced_by_hash = ? WHERE key_hash = ?")
            .bind(&key.key_hash)
            .bind(old_hash)
            .execute(&mut *tx)
            .await?;
        append_audit(&mut *tx, audit).await?;
        tx.commit().await?;
        Ok(RotationRecord::Recorded(Box::new(key)))
    }

    /// Adopts a key found on OpenRouter but not in the ledger: inserts it as the holder's
    /// current key (no plaintext: OpenRouter shows it only once), with the usage OpenRouter
    /// reported, and appends `audit`, in one transaction. A unique violation means the holder
    /// has a current key after all, or the hash is already recorded.
    pub async fn adopt_key(
        &self,
        new: &NewUserKey,
        usage_micro_usd: i64,
        audit: &AuditEntry,
    ) -> Result<UserKey, StoreError> {
        let mut tx = self.begin_write().await?;
        insert_user_key_on(&mut tx, new).await?;
        let now = now_timestamp();
        let key = sqlx::query_as::<_, UserKey>(
            "UPDATE user_keys SET usage_micro_usd = ?, last_synced_at = ?, updated_at = ?
             WHERE key_hash = ? RETURNING *",
        )
        .bind(usage_micro_usd.max(0))
        .bind(&now)
        .bind(&now)
        .bind(&new.key_hash)
        .fetch_one(&mut *tx)
        .await?;
        append_audit(&mut *tx, audit).await?;
        tx.commit().await?;
        Ok(key)
    }

    /// A current key that OpenRouter no longer has (reconcile): revoked, and already deleted
    /// remotely (there is nothing left to delete). See [`Store::revoke_current_key`].
    pub async fn revoke_missing_key(
        &self,
        key_hash: &str,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        self.revoke_current_key(key_hash, audit, true).await
    }

    /// An operator's revoke: the remote delete follows and is recorded separately
    /// ([`Store::mark_remote_deleted`]). See [`Store::revoke_current_key`].
    pub async fn revoke_key(&self, key_hash: &str, audit: &AuditEntry) -> Result<bool, StoreError> {
        self.revoke_current_key(key_hash, audit, false).await
    }

    /// Marks a current key `revoked`, erases its unrevealed ciphertext (the key it opens is gone
    /// or about to be), records it as deleted remotely when `remote_gone`, and appends `audit`, in
    /// one transaction. False (nothing written) when the key is not current any more.
    async fn revoke_current_key(
        &self,
        key_hash: &str,
        audit: &AuditEntry,
        remote_gone: bool,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let now = now_timestamp();
        let done = sqlx::query(
            "UPDATE user_keys
             SET status = 'revoked', encrypted_key = NULL, key_nonce = NULL,
                 remote_deleted_at = CASE WHEN ? THEN COALESCE(remote_deleted_at, ?)
                                          ELSE remote_deleted_at END,
                 updated_at = ?
             WHERE key_hash = ? AND status IN ('active', 'exhausted')",
        )
        .bind(remote_gone)
        .bind(&now)
        .bind(&now)
        .bind(key_hash)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        append_audit(&mut *tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }
}
