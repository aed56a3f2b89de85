//! Usage in the store: the `usage_snapshots` history the Scheduler's usage poll writes (with its
//! retention pruning), the ledger keys a poll matches against, and the poll's fold into
//! `user_keys` (usage, sync time, exhausted/expired/active transitions) in one transaction.
//!
//! Rows are read back as [`UsageSnapshot`] (camelCase when serialised): the old service handed its
//! snake_case column names straight to API clients.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, Row, SqliteConnection};

use super::keys::{KeyStatus, UserKey};
use super::{Store, StoreError, format_timestamp, now_timestamp};

/// One key's usage as polled, to be recorded. Amounts are micro-USD as converted at the
/// OpenRouter boundary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewUsageSnapshot {
    pub key_hash: String,
    pub strategy_id: String,
    /// All-time usage.
    pub usage_micro_usd: i64,
    pub usage_daily_micro_usd: i64,
    pub usage_weekly_micro_usd: i64,
    pub usage_monthly_micro_usd: i64,
    /// `None` when OpenRouter reports no limit.
    pub limit_micro_usd: Option<i64>,
    /// As reported; may be negative when usage overshot the limit. `None` without a limit.
    pub limit_remaining_micro_usd: Option<i64>,
    pub polled_at: DateTime<Utc>,
}

/// A row of `usage_snapshots`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageSnapshot {
    pub id: i64,
    pub key_hash: String,
    pub strategy_id: String,
    pub usage_micro_usd: i64,
    pub usage_daily_micro_usd: i64,
    pub usage_weekly_micro_usd: i64,
    pub usage_monthly_micro_usd: i64,
    pub limit_micro_usd: Option<i64>,
    pub limit_remaining_micro_usd: Option<i64>,
    /// UTC RFC 3339 with milliseconds (the store's one format).
    pub polled_at: String,
}

// Written out because sqlx's `macros` feature (and its derive) is off to halve the build.
impl FromRow<'_, SqliteRow> for UsageSnapshot {
    fn from_row(row: &SqliteRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            key_hash: row.try_get("key_hash")?,
            strategy_id: row.try_get("strategy_id")?,
            usage_micro_usd: row.try_get("usage_micro_usd")?,
            usage_daily_micro_usd: row.try_get("usage_daily_micro_usd")?,
            usage_weekly_micro_usd: row.try_get("usage_weekly_micro_usd")?,
            usage_monthly_micro_usd: row.try_get("usage_monthly_micro_usd")?,
            limit_micro_usd: row.try_get("limit_micro_usd")?,
            limit_remaining_micro_usd: row.try_get("limit_remaining_micro_usd")?,
            polled_at: row.try_get("polled_at")?,
        })
    }
}

/// What one poll learned about one ledger key: its usage, and the status it moves to, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyUsageUpdate {
    pub key_hash: String,
    /// All-time usage as OpenRouter reports it (never negative).
    pub usage_micro_usd: i64,
    /// `(from, to)`: applied only if the key is still `from` when written, so a key rotated or
    /// revoked between the poll's read and its write keeps the newer status.
    pub status_change: Option<(KeyStatus, KeyStatus)>,
}

/// What [`Store::apply_usage_poll`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppliedUsagePoll {
    /// Keys whose usage and sync time were written.
    pub keys_synced: u64,
    /// Status changes applied, as `(key_hash, from, to)`; a change whose `from` no longer held
    /// is left out.
    pub status_changes: Vec<(String, KeyStatus, KeyStatus)>,
    pub snapshots: u64,
}

/// Inserts `rows` on `conn` (a transaction, so the batch lands whole).
async fn insert_snapshots_on(
    conn: &mut SqliteConnection,
    rows: &[NewUsageSnapshot],
) -> Result<u64, StoreError> {
    for row in rows {
        sqlx::query(
            "INSERT INTO usage_snapshots (key_hash, strategy_id, usage_micro_usd,
                 usage_daily_micro_usd, usage_weekly_micro_usd, usage_monthly_micro_usd,
                 limit_micro_usd, limit_remaining_micro_usd, polled_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&row.key_hash)
        .bind(&row.strategy_id)
        .bind(row.usage_micro_usd)
        .bind(row.usage_daily_micro_usd)
        .bind(row.usage_weekly_micro_usd)
        .bind(row.usage_monthly_micro_usd)
        .bind(row.limit_micro_usd)
        .bind(row.limit_remaining_micro_usd)
        .bind(format_timestamp(row.polled_at))
        .execute(&mut *conn)
        .await?;
    }
    Ok(rows.len() as u64)
}

impl Store {
    /// Inserts a poll's snapshots in one transaction: all of them or none. A row naming an
    /// unknown key or strategy, or a negative usage, fails the whole batch.
    pub async fn insert_usage_snapshots(
        &self,
        rows: &[NewUsageSnapshot],
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let inserted = insert_snapshots_on(&mut tx, rows).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    /// A key's snapshots, newest first, at most `limit`.
    pub async fn usage_for_key(
        &self,
        key_hash: &str,
        limit: u32,
    ) -> Result<Vec<UsageSnapshot>, StoreError> {
        Ok(sqlx::query_as::<_, UsageSnapshot>(
            "SELECT * FROM usage_snapshots WHERE key_hash = ?
             ORDER BY polled_at DESC, id DESC LIMIT ?",
        )
        .bind(key_hash)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?)
    }

    /// A strategy's snapshots (every key), newest first, at most `limit`.
    pub async fn usage_for_strategy(
        &self,
        strategy_id: &str,
        limit: u32,
    ) -> Result<Vec<UsageSnapshot>, StoreError> {
        Ok(sqlx::query_as::<_, UsageSnapshot>(
            "SELECT * FROM usage_snapshots WHERE strategy_id = ?
             ORDER BY polled_at DESC, id DESC LIMIT ?",
        )
        .bind(strategy_id)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?)
    }

    /// Deletes the snapshots polled before `older_than` (the retention limit) and answers how
    /// many went. Served by the `polled_at` index.
    pub async fn prune_usage_snapshots(
        &self,
        older_than: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM usage_snapshots WHERE polled_at < ?")
            .bind(format_timestamp(older_than))
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    /// The ledger keys a usage poll looks for on OpenRouter: every key not yet deleted there
    /// (current ones, and revoked/rotated/expired ones whose late usage still counts), oldest
    /// first.
    pub async fn keys_for_usage_poll(&self) -> Result<Vec<UserKey>, StoreError> {
        Ok(sqlx::query_as::<_, UserKey>(
            "SELECT * FROM user_keys WHERE remote_deleted_at IS NULL
             ORDER BY created_at, key_hash",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// Writes one poll in one write transaction: each key's usage and `last_synced_at`, its
    /// status change when the key still has the status the poll saw, and the snapshots.
    ///
    /// One transaction rather than a write per key: a poll over a thousand keys is one commit
    /// (one fsync under synchronous=FULL), and a crash leaves the poll wholly applied or not at
    /// all (the next poll redoes it).
    pub async fn apply_usage_poll(
        &self,
        updates: &[KeyUsageUpdate],
        snapshots: &[NewUsageSnapshot],
        synced_at: DateTime<Utc>,
    ) -> Result<AppliedUsagePoll, StoreError> {
        let (synced_at, now) = (format_timestamp(synced_at), now_timestamp());
        let mut applied = AppliedUsagePoll::default();
        let mut tx = self.begin_write().await?;
        for update in updates {
            let done = sqlx::query(
                "UPDATE user_keys SET usage_micro_usd = ?, last_synced_at = ?, updated_at = ?
                 WHERE key_hash = ?",
            )
            .bind(update.usage_micro_usd.max(0))
            .bind(&synced_at)
            .bind(&now)
            .bind(&update.key_hash)
            .execute(&mut *tx)
            .await?;
            applied.keys_synced += done.rows_affected();
            if let Some((from, to)) = update.status_change {
                let done = sqlx::query(
                    "UPDATE user_keys SET status = ?, updated_at = ?
                     WHERE key_hash = ? AND status = ?",
                )
                .bind(to.as_str())
                .bind(&now)
                .bind(&update.key_hash)
                .bind(from.as_str())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 1 {
                    applied
                        .status_changes
                        .push((update.key_hash.clone(), from, to));
                }
            }
        }
        applied.snapshots = insert_snapshots_on(&mut tx, snapshots).await?;
        tx.commit().await?;
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::store::keys::NewUserKey;

    const WALLET_A: &str = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM";
    const WALLET_B: &str = "HN7cABqLq46Es1jh92dQQisAq662SmxELLLsHHe4YWrH";

    async fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("creditbrain.db"))
            .await
            .unwrap();
        let now = now_timestamp();
        sqlx::query(
            "INSERT INTO strategies (strategy_id, owner_wallet, token_mint,
                 threshold_lamports, slippage_bps, distribution_mode, max_grant_micro_usd,
                 max_key_limit_micro_usd, key_expiry_days, reserve_bps, cron_schedule,
                 created_at, updated_at)
             VALUES ('s1', '7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU',
                 'EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v', 0, 50, 'EQUAL_SPLIT',
                 10000000, 100000000, 0, 0, '0 * * * *', ?, ?)",
        )
        .bind(&now)
        .bind(&now)
        .execute(store.pool())
        .await
        .unwrap();
        for (hash, wallet) in [("h1", WALLET_A), ("h2", WALLET_B)] {
            store
                .insert_user_key(&NewUserKey {
                    key_hash: hash.into(),
                    strategy_id: "s1".into(),
                    holder_wallet: wallet.into(),
                    name: format!("creditbrain-s1-{wallet}"),
                    limit_micro_usd: 5_000_000,
                    limit_reset: None,
                    encrypted: None,
                    expires_at: None,
                })
                .await
                .unwrap();
        }
        (dir, store)
    }

    fn snapshot(hash: &str, usage: i64, polled_at: DateTime<Utc>) -> NewUsageSnapshot {
        NewUsageSnapshot {
            key_hash: hash.into(),
            strategy_id: "s1".into(),
            usage_micro_usd: usage,
            usage_daily_micro_usd: usage,
            usage_weekly_micro_usd: usage,
            usage_monthly_micro_usd: usage,
            limit_micro_usd: Some(5_000_000),
            limit_remaining_micro_usd: Some(5_000_000 - usage),
            polled_at,
        }
    }

    #[tokio::test]
    async fn snapshots_read_back_newest_first_and_prune_by_age() {
        let (_dir, store) = temp_store().await;
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let rows: Vec<_> = (0..4)
            .map(|day| snapshot("h1", day * 1_000, t0 + Duration::days(day)))
            .chain([snapshot("h2", 7_000_000, t0 + Duration::days(1))])
            .collect();
        assert_eq!(store.insert_usage_snapshots(&rows).await.unwrap(), 5);

        let of_h1 = store.usage_for_key("h1", 10).await.unwrap();
        let usages: Vec<i64> = of_h1.iter().map(|s| s.usage_micro_usd).collect();
        assert_eq!(usages, [3_000, 2_000, 1_000, 0]);
        assert_eq!(of_h1[0].polled_at, "2026-01-04T00:00:00.000Z");
        assert_eq!(store.usage_for_key("h1", 2).await.unwrap().len(), 2);
        let of_s1 = store.usage_for_strategy("s1", 100).await.unwrap();
        assert_eq!(of_s1.len(), 5);
        // Overshoot is recorded as reported.
        let h2 = of_s1.iter().find(|s| s.key_hash == "h2").unwrap();
        assert_eq!(h2.limit_remaining_micro_usd, Some(-2_000_000));
        let json = serde_json::to_value(h2).unwrap();
        assert!(json.get("limitRemainingMicroUsd").is_some(), "{json}");
        assert!(json.get("limit_remaining_micro_usd").is_none(), "{json}");

        // Strictly older than the cut-off goes; the cut-off itself stays.
        let pruned = store
            .prune_usage_snapshots(t0 + Duration::days(2))
            .await
            .unwrap();
        assert_eq!(pruned, 3);
        let left: Vec<String> = store
            .usage_for_strategy("s1", 100)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.polled_at)
            .collect();
        assert_eq!(
            left,
            ["2026-01-04T00:00:00.000Z", "2026-01-03T00:00:00.000Z"]
        );
        assert_eq!(store.prune_usage_snapshots(t0).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_bad_row_fails_the_whole_batch() {
        let (_dir, store) = temp_store().await;
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let error = store
            .insert_usage_snapshots(&[snapshot("h1", 1, t0), snapshot("unknown", 1, t0)])
            .await
            .unwrap_err();
        assert!(error.is_foreign_key_violation(), "{error}");
        let error = store
            .insert_usage_snapshots(&[snapshot("h1", 1, t0), snapshot("h2", -1, t0)])
            .await
            .unwrap_err();
        assert!(error.is_check_violation(), "{error}");
        assert!(store.usage_for_strategy("s1", 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_poll_folds_usage_and_applies_only_status_changes_still_valid() {
        let (_dir, store) = temp_store().await;
        let polled = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        // h2 is rotated away between the poll's read and its write.
        store
            .set_key_status("h2", KeyStatus::Revoked)
            .await
            .unwrap();
        let applied = store
            .apply_usage_poll(
                &[
                    KeyUsageUpdate {
                        key_hash: "h1".into(),
                        usage_micro_usd: 5_000_000,
                        status_change: Some((KeyStatus::Active, KeyStatus::Exhausted)),
                    },
                    KeyUsageUpdate {
                        key_hash: "h2".into(),
                        usage_micro_usd: 6_000_000,
                        status_change: Some((KeyStatus::Active, KeyStatus::Exhausted)),
                    },
                ],
                &[
                    snapshot("h1", 5_000_000, polled),
                    snapshot("h2", 6_000_000, polled),
                ],
                polled,
            )
            .await
            .unwrap();
        assert_eq!(applied.keys_synced, 2);
        assert_eq!(applied.snapshots, 2);
        assert_eq!(
            applied.status_changes,
            [("h1".to_string(), KeyStatus::Active, KeyStatus::Exhausted)]
        );
        let h1 = store.key_by_hash("h1").await.unwrap().unwrap();
        assert_eq!(
            (h1.usage_micro_usd, h1.status),
            (5_000_000, KeyStatus::Exhausted)
        );
        assert_eq!(
            h1.last_synced_at.as_deref(),
            Some("2026-03-01T12:00:00.000Z")
        );
        let h2 = store.key_by_hash("h2").await.unwrap().unwrap();
        assert_eq!(
            (h2.usage_micro_usd, h2.status),
            (6_000_000, KeyStatus::Revoked)
        );

        // Deleted remotely: no longer polled.
        store.mark_remote_deleted("h2").await.unwrap();
        let polled_keys: Vec<String> = store
            .keys_for_usage_poll()
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.key_hash)
            .collect();
        assert_eq!(polled_keys, ["h1"]);
    }
}
