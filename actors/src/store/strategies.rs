//! Strategies in the store: the raw row type, and the validated [`StrategySpec`] written and read
//! with its custom weights and exclusions (create, read, patch, status, delete, list), each change
//! audited in its own transaction. Validation of user input happens before this, in
//! `crate::strategy` (the database's CHECK constraints are the last line, not the first).

use std::collections::BTreeMap;
use std::str::FromStr;

use serde_json::json;
use solana_sdk::pubkey::Pubkey;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, Row, SqliteConnection};

use super::audit::{AuditEntry, append_audit};
use super::{Store, StoreError, now_timestamp};
use crate::schedule::CronSchedule;
use crate::strategy::{StrategyErrors, StrategyPatch, StrategySpec, StrategyStatus};

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

/// A strategy as stored, typed: its id, validated spec, carry-over and timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredStrategy {
    pub strategy_id: String,
    pub spec: StrategySpec,
    /// Un-granted micro-USD waiting for the next run (written by ALLOCATING).
    pub carry_over_micro_usd: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl StoredStrategy {
    /// The spec's JSON plus id, carry-over and timestamps (camelCase), e.g. for a run's
    /// `strategy_snapshot` or an API response.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = self.spec.to_json();
        if let Some(map) = value.as_object_mut() {
            map.insert("strategyId".to_owned(), json!(self.strategy_id));
            map.insert(
                "carryOverMicroUsd".to_owned(),
                json!(self.carry_over_micro_usd),
            );
            map.insert("createdAt".to_owned(), json!(self.created_at));
            map.insert("updatedAt".to_owned(), json!(self.updated_at));
        }
        value
    }
}

/// Why a strategy operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum StrategyStoreError {
    #[error("strategy {strategy_id} not found")]
    NotFound { strategy_id: String },
    /// The patch (or spec) failed validation; every problem is listed.
    #[error(transparent)]
    Invalid(StrategyErrors),
    /// Runs reference the strategy (their history must stay): the API answers 409. Pause it
    /// instead.
    #[error(
        "strategy {strategy_id} has run history ({runs} run(s)) and cannot be deleted; pause it instead"
    )]
    HasRuns { strategy_id: String, runs: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for StrategyStoreError {
    fn from(error: sqlx::Error) -> Self {
        StrategyStoreError::Store(error.into())
    }
}

fn decode_error(column: &str, message: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: message.into(),
    }
}

fn decode_pubkey(column: &str, text: &str) -> Result<Pubkey, sqlx::Error> {
    Pubkey::from_str(text).map_err(|e| decode_error(column, format!("{text:?}: {e}")))
}

fn decode_int<T: TryFrom<i64>>(column: &str, value: i64) -> Result<T, sqlx::Error> {
    T::try_from(value).map_err(|_| decode_error(column, format!("out of range: {value}")))
}

fn parse_column<T: FromStr>(column: &str, text: &str) -> Result<T, sqlx::Error> {
    text.parse()
        .map_err(|_| decode_error(column, format!("unexpected value {text:?}")))
}

/// The typed spec of a raw row plus its lists (already in wallet order).
fn decode_spec(
    row: &Strategy,
    weights: Vec<(String, i64)>,
    exclusions: Vec<String>,
) -> Result<StrategySpec, sqlx::Error> {
    Ok(StrategySpec {
        owner_wallet: decode_pubkey("owner_wallet", &row.owner_wallet)?,
        token_mint: decode_pubkey("token_mint", &row.token_mint)?,
        fee_source: parse_column("fee_source", &row.fee_source)?,
        threshold_lamports: decode_int("threshold_lamports", row.threshold_lamports)?,
        slippage_bps: decode_int("slippage_bps", row.slippage_bps)?,
        distribution_mode: parse_column("distribution_mode", &row.distribution_mode)?,
        top_n: decode_int("top_n", row.top_n)?,
        custom_weights: weights
            .into_iter()
            .map(|(wallet, weight)| {
                Ok((
                    decode_pubkey("strategy_custom_weights.wallet", &wallet)?,
                    decode_int("strategy_custom_weights.weight", weight)?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()?,
        exclusions: exclusions
            .iter()
            .map(|wallet| decode_pubkey("strategy_exclusions.wallet", wallet))
            .collect::<Result<_, _>>()?,
        min_holding_base_units: parse_column(
            "min_holding_base_units",
            &row.min_holding_base_units,
        )?,
        max_grant_micro_usd: row.max_grant_micro_usd,
        max_key_limit_micro_usd: row.max_key_limit_micro_usd,
        key_limit_reset: row
            .key_limit_reset
            .as_deref()
            .map(|text| parse_column("key_limit_reset", text))
            .transpose()?,
        key_expiry_days: decode_int("key_expiry_days", row.key_expiry_days)?,
        reserve_bps: decode_int("reserve_bps", row.reserve_bps)?,
        schedule: CronSchedule::parse(&row.cron_schedule)
            .map_err(|e| decode_error("cron_schedule", e.to_string()))?,
        status: parse_column("status", &row.status)?,
    })
}

fn stored(row: Strategy, spec: StrategySpec) -> StoredStrategy {
    StoredStrategy {
        strategy_id: row.strategy_id,
        spec,
        carry_over_micro_usd: row.carry_over_micro_usd,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

async fn fetch_row(
    conn: &mut SqliteConnection,
    strategy_id: &str,
) -> Result<Option<Strategy>, StoreError> {
    Ok(
        sqlx::query_as::<_, Strategy>("SELECT * FROM strategies WHERE strategy_id = ?")
            .bind(strategy_id)
            .fetch_optional(conn)
            .await?,
    )
}

async fn fetch_stored(
    conn: &mut SqliteConnection,
    strategy_id: &str,
) -> Result<Option<StoredStrategy>, StoreError> {
    let Some(row) = fetch_row(conn, strategy_id).await? else {
        return Ok(None);
    };
    let weights: Vec<(String, i64)> = sqlx::query_as(
        "SELECT wallet, weight FROM strategy_custom_weights WHERE strategy_id = ? ORDER BY wallet",
    )
    .bind(strategy_id)
    .fetch_all(&mut *conn)
    .await?;
    let exclusions: Vec<String> = sqlx::query_scalar(
        "SELECT wallet FROM strategy_exclusions WHERE strategy_id = ? ORDER BY wallet",
    )
    .bind(strategy_id)
    .fetch_all(&mut *conn)
    .await?;
    let spec = decode_spec(&row, weights, exclusions)?;
    Ok(Some(stored(row, spec)))
}

fn to_i64(column: &str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::Sqlx(sqlx::Error::Encode(
            format!("{column} {value} does not fit SQLite's INTEGER").into(),
        ))
    })
}

/// Makes the custom-weight and exclusion rows equal the spec's lists, keeping the `created_at`
/// (and an exclusion's note) of rows that stay.
async fn write_lists(
    conn: &mut SqliteConnection,
    strategy_id: &str,
    spec: &StrategySpec,
    now: &str,
) -> Result<(), StoreError> {
    let weights: Vec<(String, i64)> = spec
        .custom_weights
        .iter()
        .map(|(wallet, weight)| Ok((wallet.to_string(), to_i64("weight", *weight)?)))
        .collect::<Result<_, StoreError>>()?;
    let kept_weights = json!(weights.iter().map(|(w, _)| w).collect::<Vec<_>>()).to_string();
    sqlx::query(
        "DELETE FROM strategy_custom_weights
         WHERE strategy_id = ? AND wallet NOT IN (SELECT value FROM json_each(?))",
    )
    .bind(strategy_id)
    .bind(kept_weights)
    .execute(&mut *conn)
    .await?;
    for (wallet, weight) in &weights {
        sqlx::query(
            "INSERT INTO strategy_custom_weights (strategy_id, wallet, weight, created_at)
             VALUES (?, ?, ?, ?)
             ON CONFLICT (strategy_id, wallet) DO UPDATE SET weight = excluded.weight",
        )
        .bind(strategy_id)
        .bind(wallet)
        .bind(weight)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }

    let exclusions: Vec<String> = spec.exclusions.iter().map(Pubkey::to_string).collect();
    sqlx::query(
        "DELETE FROM strategy_exclusions
         WHERE strategy_id = ? AND wallet NOT IN (SELECT value FROM json_each(?))",
    )
    .bind(strategy_id)
    .bind(json!(exclusions).to_string())
    .execute(&mut *conn)
    .await?;
    for wallet in &exclusions {
        sqlx::query(
            "INSERT INTO strategy_exclusions (strategy_id, wallet, created_at) VALUES (?, ?, ?)
             ON CONFLICT (strategy_id, wallet) DO NOTHING",
        )
        .bind(strategy_id)
        .bind(wallet)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Writes every spec column of an existing strategy (not its carry-over or created_at).
async fn write_columns(
    conn: &mut SqliteConnection,
    strategy_id: &str,
    spec: &StrategySpec,
    now: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE strategies SET owner_wallet = ?, token_mint = ?, fee_source = ?,
             threshold_lamports = ?, slippage_bps = ?, distribution_mode = ?, top_n = ?,
             min_holding_base_units = ?, max_grant_micro_usd = ?, max_key_limit_micro_usd = ?,
             key_limit_reset = ?, key_expiry_days = ?, reserve_bps = ?, cron_schedule = ?,
             status = ?, updated_at = ?
         WHERE strategy_id = ?",
    )
    .bind(spec.owner_wallet.to_string())
    .bind(spec.token_mint.to_string())
    .bind(spec.fee_source.as_str())
    .bind(to_i64("threshold_lamports", spec.threshold_lamports)?)
    .bind(i64::from(spec.slippage_bps))
    .bind(spec.distribution_mode.as_str())
    .bind(i64::from(spec.top_n))
    .bind(spec.min_holding_base_units.to_string())
    .bind(spec.max_grant_micro_usd)
    .bind(spec.max_key_limit_micro_usd)
    .bind(spec.key_limit_reset.map(|reset| reset.as_str()))
    .bind(i64::from(spec.key_expiry_days))
    .bind(i64::from(spec.reserve_bps))
    .bind(spec.schedule.source())
    .bind(spec.status.as_str())
    .bind(now)
    .bind(strategy_id)
    .execute(conn)
    .await?;
    Ok(())
}

async fn require(
    conn: &mut SqliteConnection,
    strategy_id: &str,
) -> Result<StoredStrategy, StrategyStoreError> {
    fetch_stored(conn, strategy_id)
        .await?
        .ok_or_else(|| StrategyStoreError::NotFound {
            strategy_id: strategy_id.to_owned(),
        })
}

impl Store {
    /// Inserts a validated strategy with a fresh id, its custom weights and its exclusions in one
    /// transaction, appends a `strategy_created` audit row, and returns it as stored.
    pub async fn create_strategy(
        &self,
        spec: &StrategySpec,
        actor: &str,
    ) -> Result<StoredStrategy, StrategyStoreError> {
        let strategy_id = uuid::Uuid::new_v4().to_string();
        let now = now_timestamp();
        let mut tx = self.begin_write().await?;
        // Insert a row with the spec's values, then one writer for every column and list.
        sqlx::query(
            "INSERT INTO strategies (strategy_id, owner_wallet, token_mint, threshold_lamports,
                 slippage_bps, distribution_mode, max_grant_micro_usd, max_key_limit_micro_usd,
                 key_expiry_days, reserve_bps, cron_schedule, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&strategy_id)
        .bind(spec.owner_wallet.to_string())
        .bind(spec.token_mint.to_string())
        .bind(to_i64("threshold_lamports", spec.threshold_lamports)?)
        .bind(i64::from(spec.slippage_bps))
        .bind(spec.distribution_mode.as_str())
        .bind(spec.max_grant_micro_usd)
        .bind(spec.max_key_limit_micro_usd)
        .bind(i64::from(spec.key_expiry_days))
        .bind(i64::from(spec.reserve_bps))
        .bind(spec.schedule.source())
        .bind(&now)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        write_columns(&mut tx, &strategy_id, spec, &now).await?;
        write_lists(&mut tx, &strategy_id, spec, &now).await?;
        let created = require(&mut tx, &strategy_id).await?;
        let entry = AuditEntry::new("strategy_created")
            .strategy(&strategy_id)
            .actor(actor)
            .details(json!({"strategy": created.to_json()}));
        append_audit(&mut *tx, &entry).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(created)
    }

    /// One strategy, typed, with its lists.
    pub async fn stored_strategy(
        &self,
        strategy_id: &str,
    ) -> Result<Option<StoredStrategy>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        fetch_stored(&mut conn, strategy_id).await
    }

    /// Every strategy (only those with `status` when given), typed, newest first.
    pub async fn list_strategies(
        &self,
        status: Option<StrategyStatus>,
    ) -> Result<Vec<StoredStrategy>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        let rows = sqlx::query_as::<_, Strategy>(
            "SELECT * FROM strategies WHERE ?1 IS NULL OR status = ?1
             ORDER BY created_at DESC, strategy_id",
        )
        .bind(status.map(|s| s.as_str()))
        .fetch_all(&mut *conn)
        .await?;
        // Two queries for all lists rather than two per strategy.
        let mut weights: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
        for (strategy_id, wallet, weight) in sqlx::query_as::<_, (String, String, i64)>(
            "SELECT strategy_id, wallet, weight FROM strategy_custom_weights
             ORDER BY strategy_id, wallet",
        )
        .fetch_all(&mut *conn)
        .await?
        {
            weights
                .entry(strategy_id)
                .or_default()
                .push((wallet, weight));
        }
        let mut exclusions: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (strategy_id, wallet) in sqlx::query_as::<_, (String, String)>(
            "SELECT strategy_id, wallet FROM strategy_exclusions ORDER BY strategy_id, wallet",
        )
        .fetch_all(&mut *conn)
        .await?
        {
            exclusions.entry(strategy_id).or_default().push(wallet);
        }
        rows.into_iter()
            .map(|row| {
                let spec = decode_spec(
                    &row,
                    weights.remove(&row.strategy_id).unwrap_or_default(),
                    exclusions.remove(&row.strategy_id).unwrap_or_default(),
                )?;
                Ok(stored(row, spec))
            })
            .collect()
    }

    /// Applies `patch` to the strategy as stored (read and written in one transaction, so two
    /// concurrent patches cannot lose each other's fields): only the given fields change, the
    /// result is validated as a whole, and owner wallet and token mint are immutable. Appends a
    /// `strategy_updated` audit row with the patch and the fields that changed.
    pub async fn update_strategy(
        &self,
        strategy_id: &str,
        patch: &StrategyPatch,
        min_cron_interval_hours: u32,
        actor: &str,
    ) -> Result<StoredStrategy, StrategyStoreError> {
        let mut tx = self.begin_write().await?;
        let current = require(&mut tx, strategy_id).await?;
        let spec = current
            .spec
            .apply_patch(patch, min_cron_interval_hours)
            .map_err(StrategyStoreError::Invalid)?;
        let now = now_timestamp();
        write_columns(&mut tx, strategy_id, &spec, &now).await?;
        write_lists(&mut tx, strategy_id, &spec, &now).await?;
        let updated = require(&mut tx, strategy_id).await?;
        let entry = AuditEntry::new("strategy_updated")
            .strategy(strategy_id)
            .actor(actor)
            .details(json!({
                "patch": patch,
                "changed": changed_fields(&current.spec, &updated.spec),
            }));
        append_audit(&mut *tx, &entry).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(updated)
    }

    /// Pauses or activates a strategy; appends a `strategy_status_set` audit row.
    pub async fn set_strategy_status(
        &self,
        strategy_id: &str,
        status: StrategyStatus,
        actor: &str,
    ) -> Result<StoredStrategy, StrategyStoreError> {
        let mut tx = self.begin_write().await?;
        let current = require(&mut tx, strategy_id).await?;
        sqlx::query("UPDATE strategies SET status = ?, updated_at = ? WHERE strategy_id = ?")
            .bind(status.as_str())
            .bind(now_timestamp())
            .bind(strategy_id)
            .execute(&mut *tx)
            .await?;
        let updated = require(&mut tx, strategy_id).await?;
        let entry = AuditEntry::new("strategy_status_set")
            .strategy(strategy_id)
            .actor(actor)
            .details(json!({"from": current.spec.status.as_str(), "to": status.as_str()}));
        append_audit(&mut *tx, &entry).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(updated)
    }

    /// Deletes a strategy that has never run (its lists, counts and leases go with it) and
    /// appends a `strategy_deleted` audit row holding the deleted configuration. Refused with
    /// [`StrategyStoreError::HasRuns`] when runs reference it (their history must stay).
    pub async fn delete_strategy(
        &self,
        strategy_id: &str,
        actor: &str,
    ) -> Result<(), StrategyStoreError> {
        let mut tx = self.begin_write().await?;
        let current = require(&mut tx, strategy_id).await?;
        let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM runs WHERE strategy_id = ?")
            .bind(strategy_id)
            .fetch_one(&mut *tx)
            .await?;
        let has_runs = |runs: i64| StrategyStoreError::HasRuns {
            strategy_id: strategy_id.to_owned(),
            runs: runs.unsigned_abs(),
        };
        if runs > 0 {
            return Err(has_runs(runs));
        }
        let deleted = sqlx::query("DELETE FROM strategies WHERE strategy_id = ?")
            .bind(strategy_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from);
        match deleted {
            Ok(_) => {}
            // Keys (or other history) referencing it without a run: still history, still 409.
            Err(error) if error.is_foreign_key_violation() => return Err(has_runs(0)),
            Err(error) => return Err(error.into()),
        }
        let entry = AuditEntry::new("strategy_deleted")
            .strategy(strategy_id)
            .actor(actor)
            .details(json!({"strategy": current.to_json()}));
        append_audit(&mut *tx, &entry).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }
}

/// The JSON names of the spec fields that differ (for the audit row).
fn changed_fields(before: &StrategySpec, after: &StrategySpec) -> Vec<String> {
    let (before, after) = (before.to_json(), after.to_json());
    match (before.as_object(), after.as_object()) {
        (Some(before), Some(after)) => after
            .iter()
            .filter(|(key, value)| before.get(*key) != Some(value))
            .map(|(key, _)| key.clone())
            .collect(),
        _ => Vec::new(),
    }
}

/// Sets a strategy's carry-over inside the caller's transaction: ALLOCATING commits it with the
/// allocation rows and the state advance (I2: Σ grants + carry-over = budget).
pub async fn set_carry_over_on(
    conn: &mut sqlx::SqliteConnection,
    strategy_id: &str,
    carry_over_micro_usd: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE strategies SET carry_over_micro_usd = ?, updated_at = ? WHERE strategy_id = ?",
    )
    .bind(carry_over_micro_usd)
    .bind(now_timestamp())
    .bind(strategy_id)
    .execute(conn)
    .await?;
    Ok(())
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

    mod typed {
        use super::*;
        use crate::store::runs::{NewRun, TriggeredBy};
        use crate::strategy::{
            CustomWeightInput, DistributionMode, FeeSource, LimitReset, StrategyDefaults,
            StrategyInput,
        };

        const OWNER: &str = "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU";
        const MINT: &str = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";
        const HOLDER_A: &str = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM";
        const HOLDER_B: &str = "HN7cABqLq46Es1jh92dQQisAq662SmxELLLsHHe4YWrH";

        fn defaults() -> StrategyDefaults {
            StrategyDefaults {
                token_mint: Some(MINT.parse().unwrap()),
                fee_source: FeeSource::ClaimablePositions,
                threshold_lamports: 5_000_000_000,
                slippage_bps: 50,
                distribution_mode: DistributionMode::TopNHolders,
                top_n: 100,
                max_grant_micro_usd: 10_000_000,
                max_key_limit_micro_usd: 100_000_000,
                key_limit_reset: Some(LimitReset::Monthly),
                key_expiry_days: 365,
                reserve_bps: 1000,
                cron_schedule: CronSchedule::parse("0 */6 * * *").unwrap(),
                min_cron_interval_hours: 1,
            }
        }

        fn spec() -> StrategySpec {
            let input = StrategyInput {
                owner_wallet: Some(OWNER.to_owned()),
                distribution_mode: Some("CUSTOM_LIST".to_owned()),
                custom_weights: Some(vec![
                    CustomWeightInput {
                        wallet: Some(HOLDER_B.to_owned()),
                        weight: Some("3".to_owned()),
                    },
                    CustomWeightInput {
                        wallet: Some(HOLDER_A.to_owned()),
                        weight: Some("1".to_owned()),
                    },
                ]),
                exclusions: Some(vec![HOLDER_B.to_owned()]),
                min_holding_base_units: Some("18446744073709551615".to_owned()),
                key_limit_reset: Some("null".to_owned()),
                ..StrategyInput::default()
            };
            StrategySpec::from_input(&input, &defaults()).unwrap()
        }

        async fn temp_store() -> (tempfile::TempDir, Store) {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
            (dir, store)
        }

        async fn list_rows(store: &Store, strategy_id: &str) -> (i64, i64) {
            let count = |sql: &'static str| async move {
                sqlx::query_scalar::<_, i64>(sql)
                    .bind(strategy_id)
                    .fetch_one(store.pool())
                    .await
                    .unwrap()
            };
            (
                count("SELECT count(*) FROM strategy_custom_weights WHERE strategy_id = ?").await,
                count("SELECT count(*) FROM strategy_exclusions WHERE strategy_id = ?").await,
            )
        }

        #[tokio::test]
        async fn a_spec_round_trips_with_its_lists_and_is_audited() {
            let (_dir, store) = temp_store().await;
            let created = store.create_strategy(&spec(), "api").await.unwrap();
            assert_eq!(created.spec, spec());
            assert_eq!(created.carry_over_micro_usd, 0);
            assert_eq!(list_rows(&store, &created.strategy_id).await, (2, 1));
            assert_eq!(
                store.stored_strategy(&created.strategy_id).await.unwrap(),
                Some(created.clone())
            );
            assert_eq!(
                store.list_strategies(None).await.unwrap(),
                vec![created.clone()]
            );
            // The raw row agrees (credits mode is NULL, u64 as text).
            let raw = store.strategy(&created.strategy_id).await.unwrap().unwrap();
            assert_eq!(raw.key_limit_reset, None);
            assert_eq!(raw.min_holding_base_units, "18446744073709551615");
            let audit = store.recent_audit(1).await.unwrap();
            assert_eq!(audit[0].action, "strategy_created");
            assert_eq!(audit[0].actor.as_deref(), Some("api"));
            assert_eq!(audit[0].details["strategy"], created.to_json());
            assert_eq!(store.stored_strategy("missing").await.unwrap(), None);
        }

        #[tokio::test]
        async fn a_patch_changes_only_its_fields_and_a_bad_one_changes_nothing() {
            let (_dir, store) = temp_store().await;
            let created = store.create_strategy(&spec(), "api").await.unwrap();
            let id = &created.strategy_id;

            let patch = StrategyPatch {
                top_n: Some("7".to_owned()),
                exclusions: Some(vec![]),
                custom_weights: Some(vec![CustomWeightInput {
                    wallet: Some(HOLDER_A.to_owned()),
                    weight: Some("5".to_owned()),
                }]),
                ..StrategyPatch::default()
            };
            let updated = store.update_strategy(id, &patch, 1, "cli").await.unwrap();
            let mut expected = created.spec.clone();
            expected.top_n = 7;
            expected.exclusions.clear();
            expected.custom_weights = vec![(HOLDER_A.parse().unwrap(), 5)];
            assert_eq!(updated.spec, expected);
            assert_eq!(updated.created_at, created.created_at);
            assert!(updated.updated_at >= created.updated_at);
            assert_eq!(list_rows(&store, id).await, (1, 0));
            assert_eq!(
                store.stored_strategy(id).await.unwrap(),
                Some(updated.clone())
            );
            let audit = store.recent_audit(1).await.unwrap();
            assert_eq!(audit[0].action, "strategy_updated");
            assert_eq!(
                audit[0].details["changed"],
                serde_json::json!(["customWeights", "exclusions", "topN"])
            );
            assert_eq!(audit[0].details["patch"]["topN"], "7");

            // Invalid: every problem reported, nothing written.
            let bad = StrategyPatch {
                owner_wallet: Some(HOLDER_A.to_owned()),
                reserve_pct: Some("60".to_owned()),
                custom_weights: Some(vec![]),
                ..StrategyPatch::default()
            };
            let error = store.update_strategy(id, &bad, 1, "cli").await.unwrap_err();
            let StrategyStoreError::Invalid(errors) = &error else {
                panic!("{error:?}");
            };
            assert_eq!(
                errors.fields(),
                ["ownerWallet", "reservePct", "customWeights"]
            );
            assert_eq!(store.stored_strategy(id).await.unwrap(), Some(updated));

            let error = store
                .update_strategy("missing", &StrategyPatch::default(), 1, "cli")
                .await
                .unwrap_err();
            assert!(
                matches!(error, StrategyStoreError::NotFound { .. }),
                "{error:?}"
            );
        }

        #[tokio::test]
        async fn status_changes_and_lists_filter_by_status() {
            let (_dir, store) = temp_store().await;
            let a = store.create_strategy(&spec(), "api").await.unwrap();
            let b = store.create_strategy(&spec(), "api").await.unwrap();
            let paused = store
                .set_strategy_status(&a.strategy_id, StrategyStatus::Paused, "cli")
                .await
                .unwrap();
            assert_eq!(paused.spec.status, StrategyStatus::Paused);
            let ids = |list: Vec<StoredStrategy>| {
                list.into_iter().map(|s| s.strategy_id).collect::<Vec<_>>()
            };
            assert_eq!(
                ids(store
                    .list_strategies(Some(StrategyStatus::Paused))
                    .await
                    .unwrap()),
                [a.strategy_id]
            );
            assert_eq!(
                ids(store
                    .list_strategies(Some(StrategyStatus::Active))
                    .await
                    .unwrap()),
                [b.strategy_id]
            );
            assert_eq!(store.list_strategies(None).await.unwrap().len(), 2);
            let audit = store.recent_audit(1).await.unwrap();
            assert_eq!(audit[0].action, "strategy_status_set");
            assert_eq!(
                audit[0].details,
                serde_json::json!({"from": "active", "to": "paused"})
            );
        }

        #[tokio::test]
        async fn delete_is_refused_while_runs_reference_the_strategy() {
            let (_dir, store) = temp_store().await;
            let kept = store.create_strategy(&spec(), "api").await.unwrap();
            store
                .create_run(
                    &NewRun {
                        run_id: None,
                        strategy_id: kept.strategy_id.clone(),
                        triggered_by: TriggeredBy::Api,
                        dry_run: true,
                        strategy_snapshot: kept.to_json(),
                    },
                    0,
                )
                .await
                .unwrap();
            let error = store
                .delete_strategy(&kept.strategy_id, "api")
                .await
                .unwrap_err();
            assert!(
                matches!(error, StrategyStoreError::HasRuns { runs: 1, .. }),
                "{error:?}"
            );
            assert!(
                store
                    .stored_strategy(&kept.strategy_id)
                    .await
                    .unwrap()
                    .is_some()
            );

            let gone = store.create_strategy(&spec(), "api").await.unwrap();
            store
                .delete_strategy(&gone.strategy_id, "cli")
                .await
                .unwrap();
            assert_eq!(
                store.stored_strategy(&gone.strategy_id).await.unwrap(),
                None
            );
            assert_eq!(
                list_rows(&store, &gone.strategy_id).await,
                (0, 0),
                "lists cascade"
            );
            let audit = store.recent_audit(1).await.unwrap();
            assert_eq!(audit[0].action, "strategy_deleted");
            assert_eq!(
                audit[0].strategy_id.as_deref(),
                Some(gone.strategy_id.as_str())
            );
            let error = store
                .delete_strategy(&gone.strategy_id, "cli")
                .await
                .unwrap_err();
            assert!(
                matches!(error, StrategyStoreError::NotFound { .. }),
                "{error:?}"
            );
        }
    }
}
