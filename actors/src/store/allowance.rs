//! ALLOCATING's and PROVISIONING's view of money already spoken for (DESIGN §1 I1, §5): a
//! strategy's fee income in a trailing period (allowance mode's budget), the credit promised by
//! the key ledger, the grants other runs have allocated but not applied yet, and which allocation
//! a run made (its mode, and whether a later allocation of the same strategy superseded it).
//!
//! The functions taking a `SqliteConnection` are meant to run inside ALLOCATING's write
//! transaction (`BEGIN IMMEDIATE`): that transaction holds SQLite's write lock from before these
//! reads until the allocation rows commit, so two runs allocating at the same time are
//! serialized and the second one sees the first one's grants (I1 across concurrent runs).
//!
//! # When income is "in the period"
//!
//! A run's income is its measured `runs.swapped_usdc_base_units` (USDC base units are
//! micro-dollars), counted when the run is not a dry run and swapped more than nothing, whatever
//! state the run is in now (the amount comes from a landed transaction, I4; a run that failed
//! later still received it). It is dated by its swap: the `created_at` of the run's landed
//! SWAPPING transaction (written when the signed swap was persisted, seconds before it landed,
//! and never changed afterwards, unlike `runs.updated_at`), or the run's `started_at` when no such
//! row exists. It is in the period `(since, until]` when that date is after `since` and not after
//! `until` (timestamps are one fixed-width UTC format, so text order is time order).

use std::str::FromStr;

use sqlx::{Row, SqliteConnection};

use super::{Store, StoreError, now_timestamp};
use crate::pool::PromisedKey;
use crate::strategy::LimitReset;

/// The audit actions ALLOCATING commits with its rows (one per run that allocated).
pub const ALLOCATION_ACTIONS: [&str; 2] = ["allocated", "pool_exhausted"];

/// A strategy's income in a period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeriodIncome {
    /// Σ measured USDC of the runs in the period, as micro-USD.
    pub micro_usd: i64,
    /// How many runs contributed.
    pub runs: u64,
}

/// Σ `swapped_usdc_base_units` of the strategy's live runs whose swap is dated in
/// `(since, until]` (see the module documentation); timestamps in the store's format.
pub async fn period_income_on(
    conn: &mut SqliteConnection,
    strategy_id: &str,
    since: &str,
    until: &str,
) -> Result<PeriodIncome, StoreError> {
    let row = sqlx::query(
        "SELECT coalesce(sum(swapped), 0) AS total, count(*) AS runs FROM (
             SELECT r.swapped_usdc_base_units AS swapped,
                    coalesce((SELECT max(t.created_at) FROM solana_transactions t
                              WHERE t.run_id = r.run_id AND t.phase = 'SWAPPING'
                                AND t.status = 'landed'),
                             r.started_at) AS dated
             FROM runs r
             WHERE r.strategy_id = ? AND r.dry_run = 0 AND r.swapped_usdc_base_units > 0
         ) WHERE dated > ? AND dated <= ?",
    )
    .bind(strategy_id)
    .bind(since)
    .bind(until)
    .fetch_one(&mut *conn)
    .await?;
    let total: i64 = row.try_get("total")?;
    let runs: i64 = row.try_get("runs")?;
    Ok(PeriodIncome {
        micro_usd: total,
        runs: runs.unsigned_abs(),
    })
}

/// A current (active or exhausted) key as ALLOCATING needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentKey {
    pub holder_wallet: String,
    pub key_hash: String,
    pub limit_micro_usd: i64,
    pub usage_micro_usd: i64,
    pub limit_reset: Option<String>,
}

impl CurrentKey {
    /// What the key still promises (DESIGN §5): its whole limit when it resets, else
    /// `limit − usage`.
    pub fn promised(&self) -> PromisedKey {
        PromisedKey {
            limit_micro_usd: self.limit_micro_usd,
            usage_micro_usd: self.usage_micro_usd,
            resets: self.limit_reset.is_some(),
        }
    }
}

fn current_key(row: &sqlx::sqlite::SqliteRow) -> Result<CurrentKey, sqlx::Error> {
    Ok(CurrentKey {
        holder_wallet: row.try_get("holder_wallet")?,
        key_hash: row.try_get("key_hash")?,
        limit_micro_usd: row.try_get("limit_micro_usd")?,
        usage_micro_usd: row.try_get("usage_micro_usd")?,
        limit_reset: row.try_get("limit_reset")?,
    })
}

/// The strategy's current keys, by wallet.
pub async fn current_keys_on(
    conn: &mut SqliteConnection,
    strategy_id: &str,
) -> Result<Vec<CurrentKey>, StoreError> {
    let rows = sqlx::query(
        "SELECT holder_wallet, key_hash, limit_micro_usd, usage_micro_usd, limit_reset
         FROM user_keys WHERE strategy_id = ? AND status IN ('active', 'exhausted')
         ORDER BY holder_wallet",
    )
    .bind(strategy_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(current_key)
        .collect::<Result<_, _>>()
        .map_err(StoreError::from)
}

/// Σ promised credit of every current key (as the PoolActor counts it), leaving out the keys of
/// `except_strategy` when given.
pub async fn promised_by_keys_on(
    conn: &mut SqliteConnection,
    except_strategy: Option<&str>,
) -> Result<i64, StoreError> {
    let rows = sqlx::query(
        "SELECT holder_wallet, key_hash, limit_micro_usd, usage_micro_usd, limit_reset
         FROM user_keys
         WHERE status IN ('active', 'exhausted') AND (?1 IS NULL OR strategy_id <> ?1)",
    )
    .bind(except_strategy)
    .fetch_all(&mut *conn)
    .await?;
    let mut promised: i64 = 0;
    for row in &rows {
        promised = promised.saturating_add(current_key(row)?.promised().promised_micro_usd());
    }
    Ok(promised)
}

/// Grants a run has allocated and not applied yet (pending or failed rows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenGrants {
    pub run_id: String,
    pub strategy_id: String,
    /// Σ grants of its open live rows.
    pub micro_usd: i64,
    /// The run is in PROVISIONING (else FAILED there, waiting for a resume).
    pub in_flight: bool,
}

/// The runs other than `run_id` whose live allocations are still to be applied: in PROVISIONING,
/// or FAILED in PROVISIONING (a resume applies them, so they are still promised). Dry-run rows
/// are never applied and do not count. Ordered by run id.
pub async fn open_grants_of_other_runs_on(
    conn: &mut SqliteConnection,
    run_id: &str,
) -> Result<Vec<OpenGrants>, StoreError> {
    let rows = sqlx::query(
        "SELECT a.run_id, r.strategy_id, r.state, sum(a.grant_micro_usd) AS open
         FROM allocations a JOIN runs r ON r.run_id = a.run_id
         WHERE a.run_id <> ? AND a.dry_run = 0 AND r.dry_run = 0
           AND a.status IN ('pending', 'failed')
           AND (r.state = 'PROVISIONING'
                OR (r.state = 'FAILED' AND r.error_failed_state = 'PROVISIONING'))
         GROUP BY a.run_id, r.strategy_id, r.state
         ORDER BY a.run_id",
    )
    .bind(run_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            let state: String = row.try_get("state")?;
            Ok(OpenGrants {
                run_id: row.try_get("run_id")?,
                strategy_id: row.try_get("strategy_id")?,
                micro_usd: row.try_get("open")?,
                in_flight: state == "PROVISIONING",
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// How a run allocated: the audit row ALLOCATING committed with its allocation rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocationRecord {
    /// The audit row's id (audit ids only grow, so they order allocations in time).
    pub audit_id: i64,
    /// `Some` when the run allocated allowances (its rows are absolute limits), `None` for
    /// credits grants (added to the keys' limits). Entries written before allowance mode existed
    /// have no `keyLimitReset` field: those runs allocated credits.
    pub allowance: Option<LimitReset>,
}

/// The run's allocation record, if it has allocated.
pub async fn allocation_record_on(
    conn: &mut SqliteConnection,
    run_id: &str,
) -> Result<Option<AllocationRecord>, StoreError> {
    let row = sqlx::query(
        "SELECT id, details FROM audit_log
         WHERE run_id = ? AND action IN (?, ?) ORDER BY id DESC LIMIT 1",
    )
    .bind(run_id)
    .bind(ALLOCATION_ACTIONS[0])
    .bind(ALLOCATION_ACTIONS[1])
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let details: String = row.try_get("details")?;
    let details: serde_json::Value = serde_json::from_str(&details).unwrap_or_default();
    let allowance = details
        .get("keyLimitReset")
        .and_then(serde_json::Value::as_str)
        .and_then(|text| LimitReset::from_str(text).ok());
    Ok(Some(AllocationRecord {
        audit_id: row.try_get("id")?,
        allowance,
    }))
}

/// A live run of `strategy_id` other than `run_id` that allocated after the audit row
/// `after_audit_id`, if any (the earliest such run).
pub async fn later_allocation_on(
    conn: &mut SqliteConnection,
    strategy_id: &str,
    run_id: &str,
    after_audit_id: i64,
) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT a.run_id FROM audit_log a JOIN runs r ON r.run_id = a.run_id
         WHERE r.strategy_id = ? AND a.run_id <> ? AND r.dry_run = 0
           AND a.action IN (?, ?) AND a.id > ?
         ORDER BY a.id LIMIT 1",
    )
    .bind(strategy_id)
    .bind(run_id)
    .bind(ALLOCATION_ACTIONS[0])
    .bind(ALLOCATION_ACTIONS[1])
    .bind(after_audit_id)
    .fetch_optional(&mut *conn)
    .await?)
}

impl Store {
    /// The run's allocation record (see [`allocation_record_on`]).
    pub async fn allocation_record(
        &self,
        run_id: &str,
    ) -> Result<Option<AllocationRecord>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        allocation_record_on(&mut conn, run_id).await
    }

    /// A later allocation of the strategy by another live run (see [`later_allocation_on`]).
    pub async fn later_allocation(
        &self,
        strategy_id: &str,
        run_id: &str,
        after_audit_id: i64,
    ) -> Result<Option<String>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        later_allocation_on(&mut conn, strategy_id, run_id, after_audit_id).await
    }

    /// The strategy's income in `(since, until]` (see [`period_income_on`]).
    pub async fn period_income(
        &self,
        strategy_id: &str,
        since: &str,
        until: &str,
    ) -> Result<PeriodIncome, StoreError> {
        let mut conn = self.pool().acquire().await?;
        period_income_on(&mut conn, strategy_id, since, until).await
    }

    /// Records the key's `limit_reset` as now set on OpenRouter (an allowance run makes every key
    /// it touches reset with the strategy's period). False when there is no such key.
    pub async fn set_key_limit_reset(
        &self,
        key_hash: &str,
        limit_reset: Option<LimitReset>,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE user_keys SET limit_reset = ?, updated_at = ? WHERE key_hash = ?")
                .bind(limit_reset.map(|reset| reset.as_str()))
                .bind(now_timestamp())
                .bind(key_hash)
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected() == 1)
    }
}
