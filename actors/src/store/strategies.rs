//! Strategies in the store: the row type, insert and reads. Validation of user input happens
//! before this (the database's CHECK constraints are the last line, not the first).

use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, Row};

use super::{Store, StoreError, now_timestamp};

/// A strategy as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Strategy {
    pub strategy_id: String,
    pub owner_wallet: String,
    pub token_mint: String,
    /// `CLAIMABLE_POSITIONS` or `PARTNER_FEES`.
    pub fee_source: String,
    pub threshold_lamports: i64,
    pub slippage_bps: i64,
    /// One of the five distribution modes, e.g. `TOP_N_HOLDERS`.
    pub distribution_mode: String,
    pub top_n: i64,
    /// u64 token base units as decimal text.
    pub min_holding_base_units: String,
    pub max_grant_micro_usd: i64,
    pub max_key_limit_micro_usd: i64,
    /// `daily`, `weekly`, `monthly`, or `None` (credits mode).
    pub key_limit_reset: Option<String>,
    pub key_expiry_days: i64,
    pub reserve_bps: i64,
    /// Classic 5-field cron, UTC.
    pub cron_schedule: String,
    /// `active` or `paused`.
    pub status: String,
    pub carry_over_micro_usd: i64,
    pub created_at: String,
    pub updated_at: String,
}

// Written out because sqlx's `macros` feature (and its derive) is off to halve the build.
impl FromRow<'_, SqliteRow> for Strategy {
    fn from_row(row: &SqliteRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            strategy_id: row.try_get("strategy_id")?,
            owner_wallet: row.try_get("owner_wallet")?,
            token_mint: row.try_get("token_mint")?,
            fee_source: row.try_get("fee_source")?,
            threshold_lamports: row.try_get("threshold_lamports")?,
            slippage_bps: row.try_get("slippage_bps")?,
            distribution_mode: row.try_get("distribution_mode")?,
            top_n: row.try_get("top_n")?,
            min_holding_base_units: row.try_get("min_holding_base_units")?,
            max_grant_micro_usd: row.try_get("max_grant_micro_usd")?,
            max_key_limit_micro_usd: row.try_get("max_key_limit_micro_usd")?,
            key_limit_reset: row.try_get("key_limit_reset")?,
            key_expiry_days: row.try_get("key_expiry_days")?,
            reserve_bps: row.try_get("reserve_bps")?,
            cron_schedule: row.try_get("cron_schedule")?,
            status: row.try_get("status")?,
            carry_over_micro_usd: row.try_get("carry_over_micro_usd")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// What a new strategy needs; the id and timestamps are assigned on insert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewStrategy {
    pub owner_wallet: String,
    pub token_mint: String,
    pub fee_source: String,
    pub threshold_lamports: i64,
    pub slippage_bps: i64,
    pub distribution_mode: String,
    pub top_n: i64,
    pub min_holding_base_units: String,
    pub max_grant_micro_usd: i64,
    pub max_key_limit_micro_usd: i64,
    pub key_limit_reset: Option<String>,
    pub key_expiry_days: i64,
    pub reserve_bps: i64,
    pub cron_schedule: String,
    pub status: String,
}

impl Store {
    /// Inserts a strategy with a fresh id and returns it as stored.
    pub async fn insert_strategy(&self, new: &NewStrategy) -> Result<Strategy, StoreError> {
        let strategy_id = uuid::Uuid::new_v4().to_string();
        let now = now_timestamp();
        sqlx::query(
            "INSERT INTO strategies (strategy_id, owner_wallet, token_mint, fee_source,
                threshold_lamports, slippage_bps, distribution_mode, top_n, min_holding_base_units,
                max_grant_micro_usd, max_key_limit_micro_usd, key_limit_reset, key_expiry_days,
                reserve_bps, cron_schedule, status, carry_over_micro_usd, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
        )
        .bind(&strategy_id)
        .bind(&new.owner_wallet)
        .bind(&new.token_mint)
        .bind(&new.fee_source)
        .bind(new.threshold_lamports)
        .bind(new.slippage_bps)
        .bind(&new.distribution_mode)
        .bind(new.top_n)
        .bind(&new.min_holding_base_units)
        .bind(new.max_grant_micro_usd)
        .bind(new.max_key_limit_micro_usd)
        .bind(&new.key_limit_reset)
        .bind(new.key_expiry_days)
        .bind(new.reserve_bps)
        .bind(&new.cron_schedule)
        .bind(&new.status)
        .bind(&now)
        .bind(&now)
        .execute(self.pool())
        .await?;
        self.strategy(&strategy_id)
            .await?
            .ok_or_else(|| StoreError::Sqlx(sqlx::Error::RowNotFound))
    }

    /// One strategy by id.
    pub async fn strategy(&self, strategy_id: &str) -> Result<Option<Strategy>, StoreError> {
        Ok(
            sqlx::query_as::<_, Strategy>("SELECT * FROM strategies WHERE strategy_id = ?")
                .bind(strategy_id)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Every strategy, newest first.
    pub async fn strategies(&self) -> Result<Vec<Strategy>, StoreError> {
        Ok(sqlx::query_as::<_, Strategy>(
            "SELECT * FROM strategies ORDER BY created_at DESC, strategy_id",
        )
        .fetch_all(self.pool())
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(owner_wallet: &str) -> NewStrategy {
        NewStrategy {
            owner_wallet: owner_wallet.to_string(),
            token_mint: "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v".to_string(),
            fee_source: "CLAIMABLE_POSITIONS".to_string(),
            threshold_lamports: 5_000_000_000,
            slippage_bps: 50,
            distribution_mode: "TOP_N_HOLDERS".to_string(),
            top_n: 100,
            min_holding_base_units: "0".to_string(),
            max_grant_micro_usd: 10_000_000,
            max_key_limit_micro_usd: 100_000_000,
            key_limit_reset: Some("monthly".to_string()),
            key_expiry_days: 365,
            reserve_bps: 1000,
            cron_schedule: "0 */6 * * *".to_string(),
            status: "active".to_string(),
        }
    }

    #[tokio::test]
    async fn inserted_strategies_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
        let new = sample("So11111111111111111111111111111111111111112");
        let inserted = store.insert_strategy(&new).await.unwrap();
        assert_eq!(inserted.owner_wallet, new.owner_wallet);
        assert_eq!(inserted.max_grant_micro_usd, 10_000_000);
        assert_eq!(inserted.key_limit_reset.as_deref(), Some("monthly"));
        assert_eq!(inserted.carry_over_micro_usd, 0);
        assert_eq!(
            store.strategy(&inserted.strategy_id).await.unwrap(),
            Some(inserted.clone())
        );
        assert_eq!(store.strategies().await.unwrap(), vec![inserted]);
        assert_eq!(store.strategy("missing").await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_database_refuses_an_invalid_strategy() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
        let mut bad = sample("So11111111111111111111111111111111111111112");
        bad.max_grant_micro_usd = 10_000_001; // not whole cents
        let error = store.insert_strategy(&bad).await.unwrap_err();
        assert!(error.is_check_violation(), "{error}");
    }
}
