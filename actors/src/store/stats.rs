//! Totals for the frontends: the counts behind `GET /api/stats` and `/metrics`, and the grants
//! runs have allocated but not yet applied (what `pool-status` takes off the available credit).

use std::collections::BTreeMap;

use super::{Store, StoreError};

/// Counts and all-time totals; every amount an integer in its own unit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub strategies_by_status: BTreeMap<String, u64>,
    pub runs_by_state: BTreeMap<String, u64>,
    /// FAILED runs by `error_code`.
    pub failed_runs_by_code: BTreeMap<String, u64>,
    pub keys_by_status: BTreeMap<String, u64>,
    /// Σ applied grants of live (not dry) runs.
    pub granted_micro_usd: i64,
    /// Σ measured swap output of live runs.
    pub swapped_usdc_base_units: i64,
    /// Σ claimed lamports of live runs.
    pub claimed_lamports: i64,
}

impl Store {
    async fn counts(&self, sql: &'static str) -> Result<BTreeMap<String, u64>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(sql).fetch_all(self.pool()).await?;
        Ok(rows
            .into_iter()
            .map(|(name, count)| (name, count.unsigned_abs()))
            .collect())
    }

    /// Everything `GET /api/stats` shows, in a handful of aggregate queries.
    pub async fn stats(&self) -> Result<Stats, StoreError> {
        let (claimed, swapped): (i64, i64) = sqlx::query_as(
            "SELECT coalesce(sum(claimed_lamports), 0), coalesce(sum(swapped_usdc_base_units), 0)
             FROM runs WHERE dry_run = 0",
        )
        .fetch_one(self.pool())
        .await?;
        let granted: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(grant_micro_usd), 0) FROM allocations
             WHERE status = 'applied' AND dry_run = 0",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(Stats {
            strategies_by_status: self
                .counts("SELECT status, count(*) FROM strategies GROUP BY status")
                .await?,
            runs_by_state: self
                .counts("SELECT state, count(*) FROM runs GROUP BY state")
                .await?,
            failed_runs_by_code: self
                .counts(
                    "SELECT coalesce(error_code, 'UNKNOWN'), count(*) FROM runs
                     WHERE state = 'FAILED' GROUP BY 1",
                )
                .await?,
            keys_by_status: self
                .counts("SELECT status, count(*) FROM user_keys GROUP BY status")
                .await?,
            granted_micro_usd: granted,
            swapped_usdc_base_units: swapped,
            claimed_lamports: claimed,
        })
    }

    /// Σ grants allocated and not yet applied by live runs in PROVISIONING or FAILED there (a
    /// resume applies them): credit already promised that the pool's reading does not show yet.
    pub async fn open_grants_total(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT coalesce(sum(a.grant_micro_usd), 0)
             FROM allocations a JOIN runs r ON r.run_id = a.run_id
             WHERE a.dry_run = 0 AND r.dry_run = 0 AND a.status IN ('pending', 'failed')
               AND (r.state = 'PROVISIONING'
                    OR (r.state = 'FAILED' AND r.error_failed_state = 'PROVISIONING'))",
        )
        .fetch_one(self.pool())
        .await?)
    }
}
