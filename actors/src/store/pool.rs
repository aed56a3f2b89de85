//! The pool's view of the store: the keys that hold promised credit, and `pool_snapshots`, the
//! history of the account's credits and usage from which runway is measured.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError, format_timestamp, parse_timestamp};
use crate::pool::{PoolStatus, PromisedKey, UsageReading};

/// One reading of the account, as the PoolActor records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSnapshot {
    pub total_credits_micro_usd: i64,
    pub total_usage_micro_usd: i64,
    pub promised_micro_usd: i64,
    pub reserve_micro_usd: i64,
    pub taken_at: DateTime<Utc>,
}

impl Store {
    /// Every key that can still spend (active or exhausted): exhausted credits keys promise
    /// nothing more, but an exhausted allowance key is spendable again after its reset.
    pub async fn promised_keys(&self) -> Result<Vec<PromisedKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT limit_micro_usd, usage_micro_usd, limit_reset FROM user_keys
             WHERE status IN ('active', 'exhausted')",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PromisedKey {
                    limit_micro_usd: row.try_get("limit_micro_usd")?,
                    usage_micro_usd: row.try_get("usage_micro_usd")?,
                    resets: row.try_get::<Option<String>, _>("limit_reset")?.is_some(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Records a reading of the account (for runway and pool history).
    pub async fn insert_pool_snapshot(
        &self,
        run_id: Option<&str>,
        total_credits_micro_usd: i64,
        total_usage_micro_usd: i64,
        status: &PoolStatus,
        taken_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO pool_snapshots (run_id, total_credits_micro_usd, total_usage_micro_usd,
                promised_micro_usd, reserve_micro_usd, taken_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(run_id)
        .bind(total_credits_micro_usd.max(0))
        .bind(total_usage_micro_usd.max(0))
        .bind(status.promised_micro_usd)
        .bind(status.reserve_micro_usd)
        .bind(format_timestamp(taken_at))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The account's usage readings since `since`, oldest first.
    pub async fn usage_readings_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<UsageReading>, StoreError> {
        let rows = sqlx::query(
            "SELECT total_usage_micro_usd, taken_at FROM pool_snapshots
             WHERE taken_at >= ? ORDER BY taken_at",
        )
        .bind(format_timestamp(since))
        .fetch_all(self.pool())
        .await?;
        let mut readings = Vec::with_capacity(rows.len());
        for row in rows {
            let taken_at: String = row.try_get("taken_at")?;
            let Some(at) = parse_timestamp(&taken_at) else {
                continue;
            };
            readings.push(UsageReading {
                at,
                total_usage_micro_usd: row.try_get("total_usage_micro_usd")?,
            });
        }
        Ok(readings)
    }

    /// The latest readings, newest first (pool history).
    pub async fn pool_history(&self, limit: u32) -> Result<Vec<PoolSnapshot>, StoreError> {
        let rows = sqlx::query(
            "SELECT total_credits_micro_usd, total_usage_micro_usd, promised_micro_usd,
                    reserve_micro_usd, taken_at
             FROM pool_snapshots ORDER BY taken_at DESC, id DESC LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        let mut history = Vec::with_capacity(rows.len());
        for row in rows {
            let taken_at: String = row.try_get("taken_at")?;
            let Some(taken_at) = parse_timestamp(&taken_at) else {
                continue;
            };
            history.push(PoolSnapshot {
                total_credits_micro_usd: row.try_get("total_credits_micro_usd")?,
                total_usage_micro_usd: row.try_get("total_usage_micro_usd")?,
                promised_micro_usd: row.try_get("promised_micro_usd")?,
                reserve_micro_usd: row.try_get("reserve_micro_usd")?,
                taken_at,
            });
        }
        Ok(history)
    }
}
