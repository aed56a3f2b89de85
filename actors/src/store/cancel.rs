//! Cancelling a FAILED run an operator will not resume: its grants that were allocated but never
//! applied are released (skipped), so they stop counting against every other run's pool room,
//! and — in credits mode — return to the strategy's carry-over, so the next run grants them, as
//! does USDC it swapped but never allocated: nothing is lost and nothing is granted twice. The run stays FAILED, marked `cancelled`, and
//! can no longer be resumed. One write transaction; audited as `run_cancelled`.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::allowance::allocation_record_on;
use super::audit::{AuditEntry, append_audit};
use super::runs::{CANCELLED_REASON, RunError, RunState, fetch_run};
use super::{Store, StoreError, now_timestamp};

/// What a cancel did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelledRun {
    pub run_id: String,
    pub strategy_id: String,
    /// The phase the run had failed in.
    pub failed_state: String,
    /// Allocation rows that were still to be applied, now skipped.
    pub skipped_allocations: u64,
    /// Σ of their grants: promised credit released.
    pub released_micro_usd: i64,
    /// The part added to the strategy's carry-over (credits mode; allowance runs are recomputed
    /// by the next run from the period's income instead).
    pub carried_over_micro_usd: i64,
    /// Swapped USDC the run never allocated (it failed before ALLOCATING committed): added to
    /// the carry-over in credits mode (allowance mode counts it as the period's income anyway).
    pub unallocated_micro_usd: i64,
    /// Claimed SOL that was never swapped (a run cancelled in SWAPPING): it stays in the signer's
    /// wallet, outside the pipeline; the operator decides what to do with it.
    pub unswapped_lamports: u64,
}

impl Store {
    pub async fn cancel_run(
        &self,
        run_id: &str,
        actor: &str,
        reason: &str,
    ) -> Result<CancelledRun, RunError> {
        let not_cancellable = |why: &str| RunError::NotCancellable {
            run_id: run_id.to_owned(),
            why: why.to_owned(),
        };
        let mut tx = self.begin_write().await?;
        let run = fetch_run(&mut tx, run_id)
            .await?
            .ok_or_else(|| RunError::NotFound {
                run_id: run_id.to_owned(),
            })?;
        if run.state != RunState::Failed {
            return Err(not_cancellable(&format!(
                "it is {}; only FAILED runs can be cancelled",
                run.state.as_str()
            )));
        }
        if run.was_blocked() {
            return Err(not_cancellable(
                "it was blocked by policy and never started",
            ));
        }
        if run.was_cancelled() {
            return Err(not_cancellable("it is already cancelled"));
        }
        let failed_state = run
            .error_failed_state
            .ok_or_else(|| RunError::Invalid(format!("run {run_id} is FAILED without a state")))?;
        let (open_rows, open_sum): (i64, i64) = sqlx::query_as(
            "SELECT count(*), coalesce(sum(grant_micro_usd), 0) FROM allocations
             WHERE run_id = ? AND status IN ('pending', 'failed')",
        )
        .bind(run_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        let record = allocation_record_on(&mut tx, run_id).await?;
        let allowance = match &record {
            Some(record) => record.allowance.is_some(),
            // Never allocated: the strategy's mode now decides where its income goes.
            None => {
                let reset: Option<String> = sqlx::query_scalar(
                    "SELECT key_limit_reset FROM strategies WHERE strategy_id = ?",
                )
                .bind(&run.strategy_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::from)?;
                reset.is_some()
            }
        };
        // Swapped but never allocated (no budget was committed): that income is still to grant.
        let unallocated = match (run.budget_micro_usd, run.swapped_usdc_base_units) {
            (None, Some(swapped)) if !run.dry_run => i64::try_from(swapped).unwrap_or(i64::MAX),
            _ => 0,
        };
        let now = now_timestamp();
        sqlx::query(
            "UPDATE allocations SET status = 'skipped', last_error = ?, updated_at = ?
             WHERE run_id = ? AND status IN ('pending', 'failed')",
        )
        .bind(format!("run cancelled: {reason}"))
        .bind(&now)
        .bind(run_id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        // Dry runs promised nothing: their rows are skipped, no money moves.
        let released = if run.dry_run { 0 } else { open_sum };
        let carried_over = if allowance {
            0
        } else {
            released.saturating_add(unallocated)
        };
        if released > 0 {
            // The run's own books stay balanced (allocated + carry_out = budget).
            sqlx::query(
                "UPDATE runs SET allocated_micro_usd = allocated_micro_usd - ?,
                     carry_out_micro_usd = carry_out_micro_usd + ?
                 WHERE run_id = ?",
            )
            .bind(released)
            .bind(released)
            .bind(run_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        }
        if carried_over > 0 {
            sqlx::query(
                "UPDATE strategies SET carry_over_micro_usd = carry_over_micro_usd + ?,
                     updated_at = ?
                 WHERE strategy_id = ?",
            )
            .bind(carried_over)
            .bind(&now)
            .bind(&run.strategy_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        }
        sqlx::query("UPDATE runs SET skipped_reason = ?, updated_at = ? WHERE run_id = ?")
            .bind(CANCELLED_REASON)
            .bind(&now)
            .bind(run_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        let unswapped_lamports = if failed_state == RunState::Swapping {
            run.claimed_lamports.unwrap_or(0)
        } else {
            0
        };
        let cancelled = CancelledRun {
            run_id: run_id.to_owned(),
            strategy_id: run.strategy_id.clone(),
            failed_state: failed_state.as_str().to_owned(),
            skipped_allocations: open_rows.unsigned_abs(),
            released_micro_usd: released,
            carried_over_micro_usd: carried_over,
            unallocated_micro_usd: unallocated,
            unswapped_lamports,
        };
        let entry = AuditEntry::new("run_cancelled")
            .run(run_id)
            .strategy(&run.strategy_id)
            .phase(failed_state.as_str())
            .actor(actor)
            .details(json!({
                "reason": reason,
                "errorCode": run.error_code,
                "cancelled": cancelled,
            }));
        append_audit(&mut *tx, &entry).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(cancelled)
    }
}
