//! The phases of a run (DESIGN §4): each reads the run's checkpoint, does its work through the
//! integration actors, and commits its outputs with the state advance, or returns a
//! [`PhaseError`] with a stable code. Every decision goes to the audit log.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use chrono::Utc;
use serde_json::json;
use solana_sdk::pubkey::Pubkey;
use tokio::task::JoinSet;

use super::RunContext;
use super::provision;
use crate::chain::actor as chain;
use crate::chain::helius::HolderFilters;
use crate::distribution::{self, AllocationInput, DistributionMode as Mode};
use crate::pool::pool_status;
use crate::store::StoreError;
use crate::store::allocations::{NewAllocation, insert_allocations};
use crate::store::audit::AuditEntry;
use crate::store::keys::KeyStatus;
use crate::store::runs::{PhaseOutputs, Run, RunError, RunState, advance};
use crate::store::strategies::StoredStrategy;
use crate::store::transactions::TxPhase;
use crate::strategy::{DistributionMode, FeeSource};

/// Why a phase stopped; the run is failed with `code` and `detail`.
#[derive(Clone, Debug)]
pub struct PhaseError {
    pub code: String,
    pub detail: String,
}

impl PhaseError {
    pub fn new(code: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            detail: detail.into(),
        }
    }
}

impl From<StoreError> for PhaseError {
    fn from(error: StoreError) -> Self {
        let code = if error.is_locked() {
            "DB_LOCKED"
        } else {
            "DB_ERROR"
        };
        PhaseError::new(code, error.to_string())
    }
}

impl From<RunError> for PhaseError {
    fn from(error: RunError) -> Self {
        match error {
            RunError::Store(store) => store.into(),
            other => PhaseError::new("RUN_STATE_CONFLICT", other.to_string()),
        }
    }
}

/// Wrapped-SOL units below which a swap is not worth its fees (0.001 SOL).
const MIN_SWAP_LAMPORTS: u64 = 1_000_000;

pub(super) async fn audit(
    context: &RunContext,
    run: &Run,
    phase: RunState,
    action: &str,
    details: serde_json::Value,
) -> Result<(), PhaseError> {
    context
        .store
        .append_audit(
            &AuditEntry::new(action)
                .run(&run.run_id)
                .strategy(&run.strategy_id)
                .phase(phase.as_str())
                .actor("worker")
                .details(details),
        )
        .await?;
    Ok(())
}

async fn commit(
    context: &RunContext,
    run: &Run,
    from: RunState,
    to: RunState,
    outputs: &PhaseOutputs,
) -> Result<(), PhaseError> {
    let mut tx = context.store.begin_write().await?;
    advance(&mut tx, &run.run_id, from, to, outputs).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(())
}

/// The mints this run already sent claim transactions for (so a resumed claim settles them and
/// counts what they claimed, even though Bags no longer lists them as claimable).
async fn mints_already_claimed(
    context: &RunContext,
    run: &Run,
) -> Result<BTreeSet<Pubkey>, PhaseError> {
    let rows = context.store.txs_for_run(&run.run_id).await?;
    Ok(rows
        .iter()
        .filter(|row| row.phase == TxPhase::Claiming)
        .filter_map(|row| row.purpose.strip_prefix("claim:"))
        .filter_map(|rest| rest.split(':').next())
        .filter_map(|mint| Pubkey::from_str(mint).ok())
        .collect())
}

/// The signatures this run's audit log already has an `action` entry for (so a resumed phase
/// does not log the same landing twice).
async fn audited_signatures(
    context: &RunContext,
    run: &Run,
    action: &str,
) -> Result<HashSet<String>, PhaseError> {
    Ok(context
        .store
        .audit_for_run(&run.run_id)
        .await?
        .into_iter()
        .filter(|entry| entry.action == action)
        .filter_map(|entry| entry.tx_signature)
        .collect())
}

/// Claims one position exactly once (a claim an earlier attempt sent is settled, not re-sent)
/// and logs each landing not logged yet.
async fn claim_mint(
    context: &RunContext,
    actor: &ractor::ActorRef<chain::ChainMsg>,
    run: &Run,
    mint: Pubkey,
    audited: &HashSet<String>,
) -> Result<chain::ClaimOutcome, PhaseError> {
    let outcome = chain::claim_position(actor, &run.run_id, mint, context.policy.call_timeout)
        .await
        .map_err(|error| PhaseError::new(error.code(), error.to_string()))?;
    let source = json!({"mint": mint.to_string()});
    audit_claim_landings(context, run, &outcome, audited, &source).await?;
    Ok(outcome)
}

/// Logs each landed claim transaction not logged yet (a resumed claim returns the earlier
/// attempts' landings too), with what it measurably did; `source` says what was claimed.
async fn audit_claim_landings(
    context: &RunContext,
    run: &Run,
    outcome: &chain::ClaimOutcome,
    audited: &HashSet<String>,
    source: &serde_json::Value,
) -> Result<(), PhaseError> {
    for landed in &outcome.transactions {
        if audited.contains(&landed.signature.to_string()) {
            continue;
        }
        let mut details = json!({
            "lamportDelta": landed.effects.lamport_delta,
            "feeLamports": landed.effects.fee,
            "slot": landed.slot,
        });
        if let (Some(details), Some(source)) = (details.as_object_mut(), source.as_object()) {
            details.extend(source.clone());
        }
        context
            .store
            .append_audit(
                &AuditEntry::new("claim_landed")
                    .run(&run.run_id)
                    .strategy(&run.strategy_id)
                    .phase(RunState::Claiming.as_str())
                    .actor("worker")
                    .tx_signature(landed.signature.to_string())
                    .details(details),
            )
            .await?;
    }
    Ok(())
}

/// Whether an earlier attempt of this run already sent partner claim transactions (whatever
/// became of them): a resumed claim settles those before anything is planned or sent.
async fn partner_claim_started(context: &RunContext, run: &Run) -> Result<bool, PhaseError> {
    let rows = context.store.txs_for_run(&run.run_id).await?;
    Ok(rows.iter().any(|row| {
        row.phase == TxPhase::Claiming && chain::partner_purpose_index(&row.purpose).is_some()
    }))
}

/// CLAIMING with `FEE_SOURCE=PARTNER_FEES`: Bags' unclaimed partner fees below the threshold
/// complete the run as skipped. Partner fees sit in one vault that Bags' last transaction empties
/// whole, so they cannot be claimed in part: above `MAX_CLAIMABLE_SOL_PER_RUN` nothing is
/// claimed and the run completes as skipped (`above_claim_cap`) until the operator raises the
/// cap; the cap stays a true maximum. Otherwise every transaction of Bags' list is sent once,
/// in order (see `chain::claim_partner_fees`). Claimed = the signer's measured lamport delta.
///
/// A resumed run whose earlier attempt sent partner transactions settles and finishes that claim
/// without planning again: it was planned within the threshold and the cap then, and stopping
/// now could leave a withdrawal in flight that the run never records.
async fn claim_partner_fees(
    context: &RunContext,
    run: &Run,
    strategy: &StoredStrategy,
) -> Result<(), PhaseError> {
    let spec = &strategy.spec;
    let actor = context.chain()?;
    let cap = context.policy.max_claimable_lamports_per_run;
    let resumed = partner_claim_started(context, run).await?;
    if resumed {
        audit(
            context,
            run,
            RunState::Claiming,
            "claim_planned",
            json!({"source": "PARTNER_FEES", "resumed": true, "dryRun": run.dry_run}),
        )
        .await?;
    } else {
        let stats = chain::partner_stats(&actor, context.policy.call_timeout)
            .await
            .map_err(|error| {
                PhaseError::new(error.code(), format!("partner fee stats: {error}"))
            })?;
        let unclaimed = stats.unclaimed_lamports;
        let skipped = if unclaimed < spec.threshold_lamports {
            Some("below_threshold")
        } else if unclaimed > cap {
            Some("above_claim_cap")
        } else {
            None
        };
        if let Some(reason) = skipped {
            if reason == "above_claim_cap" {
                tracing::warn!(runId = %run.run_id, strategyId = %run.strategy_id,
                    unclaimedLamports = unclaimed, capLamports = cap,
                    "partner fees above MAX_CLAIMABLE_SOL_PER_RUN are not claimed; raise the cap");
            }
            audit(
                context,
                run,
                RunState::Claiming,
                reason,
                json!({
                    "source": "PARTNER_FEES",
                    "unclaimedLamports": unclaimed.to_string(),
                    "thresholdLamports": spec.threshold_lamports.to_string(),
                    "capLamports": cap.to_string(),
                }),
            )
            .await?;
            return finish_without_claiming(context, run, strategy, reason).await;
        }
        audit(
            context,
            run,
            RunState::Claiming,
            "claim_planned",
            json!({
                "source": "PARTNER_FEES",
                "unclaimedLamports": unclaimed.to_string(),
                "claimedBeforeLamports": stats.claimed_lamports.to_string(),
                "thresholdLamports": spec.threshold_lamports.to_string(),
                "capLamports": cap.to_string(),
                "dryRun": run.dry_run,
            }),
        )
        .await?;
        if run.dry_run {
            return commit_dry_claim(context, run).await;
        }
    }
    let outcome = chain::claim_partner_fees(&actor, &run.run_id, context.policy.call_timeout)
        .await
        .map_err(|error| PhaseError::new(error.code(), error.to_string()))?;
    let audited = audited_signatures(context, run, "claim_landed").await?;
    let source = json!({"source": "PARTNER_FEES"});
    audit_claim_landings(context, run, &outcome, &audited, &source).await?;
    // Net of every step's fee; a claim that only paid fees records 0, like a position claim.
    let outputs = PhaseOutputs {
        claimed_lamports: Some(u64::try_from(outcome.claimed_lamports).unwrap_or(0)),
        ..PhaseOutputs::default()
    };
    commit(
        context,
        run,
        RunState::Claiming,
        RunState::Swapping,
        &outputs,
    )
    .await
}

/// Nothing is claimed this run (`reason`: below the threshold, above the cap). In credits mode
/// the run is done. In allowance mode it goes on with nothing claimed: the allowances are
/// recomputed from the trailing period's income, so they shrink and lapse when fees stop instead
/// of staying at their last value forever.
/// A dry run's CLAIMING: nothing is sent, so the run records that nothing was claimed; the plan
/// is in the audit log (`claim_planned`).
async fn commit_dry_claim(context: &RunContext, run: &Run) -> Result<(), PhaseError> {
    let outputs = PhaseOutputs {
        claimed_lamports: Some(0),
        ..PhaseOutputs::default()
    };
    commit(
        context,
        run,
        RunState::Claiming,
        RunState::Swapping,
        &outputs,
    )
    .await
}

async fn finish_without_claiming(
    context: &RunContext,
    run: &Run,
    strategy: &StoredStrategy,
    reason: &str,
) -> Result<(), PhaseError> {
    let outputs = PhaseOutputs {
        claimed_lamports: Some(0),
        skipped_reason: Some(reason.into()),
        ..PhaseOutputs::default()
    };
    let next = if strategy.spec.key_limit_reset.is_some() {
        RunState::Swapping
    } else {
        RunState::Complete
    };
    commit(context, run, RunState::Claiming, next, &outputs).await
}

/// CLAIMING: below the threshold the run completes as skipped; otherwise positions are claimed,
/// largest first, as long as `MAX_CLAIMABLE_SOL_PER_RUN` is not passed. Claimed = the signer's
/// measured lamport delta. `FEE_SOURCE=PARTNER_FEES` claims the partner vault instead
/// ([`claim_partner_fees`]).
pub(super) async fn claim(
    context: &RunContext,
    run: &Run,
    strategy: &StoredStrategy,
) -> Result<(), PhaseError> {
    let spec = &strategy.spec;
    if spec.fee_source == FeeSource::PartnerFees {
        return claim_partner_fees(context, run, strategy).await;
    }
    let actor = context.chain()?;
    let mut positions = chain::claimable_positions(&actor, context.policy.call_timeout)
        .await
        .map_err(|error| PhaseError::new(error.code(), error.to_string()))?;
    positions.sort_by(|a, b| {
        b.claimable_lamports
            .cmp(&a.claimable_lamports)
            .then_with(|| a.base_mint.to_string().cmp(&b.base_mint.to_string()))
    });
    let total: u64 = positions
        .iter()
        .map(|p| p.claimable_lamports)
        .fold(0, u64::saturating_add);
    let already = mints_already_claimed(context, run).await?;
    if already.is_empty() && total < spec.threshold_lamports {
        audit(
            context,
            run,
            RunState::Claiming,
            "below_threshold",
            json!({
                "claimableLamports": total.to_string(),
                "thresholdLamports": spec.threshold_lamports.to_string(),
            }),
        )
        .await?;
        return finish_without_claiming(context, run, strategy, "below_threshold").await;
    }
    // What earlier attempts of this run sent is settled first (never sent again): it was planned
    // within the cap then, so it counts against the cap now, at what the claims took from the
    // positions (the measured delta plus the fees paid out of it). Otherwise a resume would plan
    // the rest against the whole cap again and claim more than an uninterrupted run.
    let mut claimed: i64 = 0;
    let mut planned: u64 = 0;
    let audited = audited_signatures(context, run, "claim_landed").await?;
    for mint in &already {
        let outcome = claim_mint(context, &actor, run, *mint, &audited).await?;
        claimed = claimed.saturating_add(outcome.claimed_lamports);
        let taken = outcome
            .claimed_lamports
            .saturating_add(i64::try_from(outcome.fees_lamports).unwrap_or(i64::MAX));
        planned = planned.saturating_add(u64::try_from(taken).unwrap_or(0));
    }
    let mut selected: Vec<(Pubkey, u64)> = Vec::new();
    for position in positions.iter().filter(|p| p.claimable_lamports > 0) {
        if already.contains(&position.base_mint) {
            continue;
        }
        let next = planned.saturating_add(position.claimable_lamports);
        if next > context.policy.max_claimable_lamports_per_run {
            // Waits for the next run: claiming it now would pass the per-run cap.
            continue;
        }
        planned = next;
        selected.push((position.base_mint, position.claimable_lamports));
    }
    audit(context, run, RunState::Claiming, "claim_planned", json!({
        "claimableLamports": total.to_string(),
        "plannedLamports": planned.to_string(),
        "positions": selected.iter().map(|(mint, lamports)| json!({"mint": mint.to_string(), "lamports": lamports.to_string()})).collect::<Vec<_>>(),
        "resumedMints": already.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "resumedClaimedLamports": claimed.to_string(),
        "dryRun": run.dry_run,
    }))
    .await?;
    if run.dry_run {
        return commit_dry_claim(context, run).await;
    }
    for (mint, _) in &selected {
        let outcome = claim_mint(context, &actor, run, *mint, &audited).await?;
        claimed = claimed.saturating_add(outcome.claimed_lamports);
    }
    let outputs = PhaseOutputs {
        claimed_lamports: Some(u64::try_from(claimed).unwrap_or(0)),
        ..PhaseOutputs::default()
    };
    commit(
        context,
        run,
        RunState::Claiming,
        RunState::Swapping,
        &outputs,
    )
    .await
}

/// SWAPPING: the claimed SOL minus the float kept for fees goes to USDC; received = the measured
/// USDC delta.
pub(super) async fn swap(
    context: &RunContext,
    run: &Run,
    strategy: &StoredStrategy,
) -> Result<(), PhaseError> {
    let claimed = run.claimed_lamports.unwrap_or(0);
    let swap_in = claimed.saturating_sub(context.policy.sol_float_lamports);
    if run.dry_run {
        return quote_dry_swap(context, run, strategy).await;
    }
    if swap_in < MIN_SWAP_LAMPORTS {
        let reason = "nothing_to_swap";
        audit(
            context,
            run,
            RunState::Swapping,
            "swap_skipped",
            json!({
                "reason": reason,
                "claimedLamports": claimed.to_string(),
                "floatLamports": context.policy.sol_float_lamports.to_string(),
            }),
        )
        .await?;
        return commit_nothing_swapped(context, run).await;
    }
    let actor = context.chain()?;
    let outcome = chain::swap(
        &actor,
        &run.run_id,
        swap_in,
        strategy.spec.slippage_bps,
        context.policy.call_timeout,
    )
    .await
    .map_err(|error| PhaseError::new(error.code(), error.to_string()))?;
    context
        .store
        .append_audit(
            &AuditEntry::new("swap_landed")
                .run(&run.run_id)
                .strategy(&run.strategy_id)
                .phase(RunState::Swapping.as_str())
                .actor("worker")
                .tx_signature(outcome.transaction.signature.to_string())
                .details(json!({
                    "swapInLamports": swap_in.to_string(),
                    "lamportsSpent": outcome.lamports_spent.to_string(),
                    "usdcReceived": outcome.usdc_received.to_string(),
                    "slot": outcome.transaction.slot,
                })),
        )
        .await?;
    let outputs = PhaseOutputs {
        swap_in_lamports: Some(swap_in),
        swapped_usdc_base_units: Some(outcome.usdc_received),
        ..PhaseOutputs::default()
    };
    commit(
        context,
        run,
        RunState::Swapping,
        RunState::Allocating,
        &outputs,
    )
    .await
}

/// SWAPPING in a dry run: nothing is sent, but what the planned claim would swap is quoted, so
/// ALLOCATING can show what the run would grant (`swap_quoted`; the run's measured columns stay 0).
async fn quote_dry_swap(
    context: &RunContext,
    run: &Run,
    strategy: &StoredStrategy,
) -> Result<(), PhaseError> {
    let plan = latest_audit_details(context, run, "claim_planned").await?;
    let planned = ["plannedLamports", "unclaimedLamports"]
        .iter()
        .find_map(|field| plan.as_ref()?.get(*field)?.as_str()?.parse::<u64>().ok())
        .unwrap_or(0);
    let swap_in = planned.saturating_sub(context.policy.sol_float_lamports);
    let details = if swap_in >= MIN_SWAP_LAMPORTS {
        let actor = context.chain()?;
        let quote = chain::quote_swap(
            &actor,
            swap_in,
            strategy.spec.slippage_bps,
            context.policy.call_timeout,
        )
        .await
        .map_err(|error| PhaseError::new(error.code(), error.to_string()))?;
        json!({
            "plannedClaimLamports": planned.to_string(),
            "swapInLamports": swap_in.to_string(),
            "quotedUsdc": quote.out_usdc.to_string(),
            "minUsdc": quote.min_out_usdc.to_string(),
            "dryRun": true,
        })
    } else {
        json!({
            "plannedClaimLamports": planned.to_string(),
            "swapInLamports": "0",
            "quotedUsdc": "0",
            "dryRun": true,
        })
    };
    audit(context, run, RunState::Swapping, "swap_quoted", details).await?;
    commit_nothing_swapped(context, run).await
}

/// SWAPPING that sent nothing (nothing to swap, or a dry run): measured 0 in, 0 out.
async fn commit_nothing_swapped(context: &RunContext, run: &Run) -> Result<(), PhaseError> {
    let outputs = PhaseOutputs {
        swap_in_lamports: Some(0),
        swapped_usdc_base_units: Some(0),
        ..PhaseOutputs::default()
    };
    commit(
        context,
        run,
        RunState::Swapping,
        RunState::Allocating,
        &outputs,
    )
    .await
}

/// The details of the run's latest audit row with `action`.
async fn latest_audit_details(
    context: &RunContext,
    run: &Run,
    action: &str,
) -> Result<Option<serde_json::Value>, PhaseError> {
    Ok(context
        .store
        .audit_for_run(&run.run_id)
        .await?
        .into_iter()
        .rev()
        .find(|row| row.action == action)
        .map(|row| row.details))
}

/// A dry run's would-be income: the USDC its SWAPPING quoted (0 for a live run, whose measured
/// swap is in the run row).
async fn dry_quoted_usdc(context: &RunContext, run: &Run) -> Result<i64, PhaseError> {
    if !run.dry_run {
        return Ok(0);
    }
    Ok(latest_audit_details(context, run, "swap_quoted")
        .await?
        .and_then(|details| details.get("quotedUsdc")?.as_str()?.parse::<i64>().ok())
        .unwrap_or(0))
}

fn distribution_mode(strategy: &StoredStrategy) -> Mode {
    match strategy.spec.distribution_mode {
        DistributionMode::OwnerOnly => Mode::OwnerOnly,
        DistributionMode::TopNHolders => Mode::TopNHolders {
            n: strategy.spec.top_n,
        },
        DistributionMode::EqualSplit => Mode::EqualSplit,
        DistributionMode::WeightedByHoldings => Mode::WeightedByHoldings,
        DistributionMode::CustomList => Mode::CustomList,
    }
}

/// ALLOCATING: the budget — credits mode: swapped USDC + carry-over; allowance mode: the strategy's
/// income in the trailing period (`run::allowance`) — is split by the strategy's mode within the
/// pool's room: balance − reserve − promised credit − grants other runs allocated and have not
/// applied yet. The room is read under the write lock the rows commit in, so two runs allocating
/// at once never grant the same money (I1). Rows, carry-over (credits mode only) and the state
/// advance commit together. A dry run stores dry-run rows and leaves carry-over and pool alone.
pub(super) async fn allocate(
    context: &RunContext,
    run: &Run,
    strategy: &StoredStrategy,
) -> Result<(), PhaseError> {
    use super::allowance::{committed_elsewhere, period_start, plan_allowances};
    use crate::store::allowance::{current_keys_on, period_income_on};

    let spec = &strategy.spec;
    let allowance = spec.key_limit_reset;
    let pool_actor = context.pool()?;
    let pool = pool_status(
        &pool_actor,
        u32::from(spec.reserve_bps),
        if run.dry_run { None } else { Some(&run.run_id) },
        context.policy.call_timeout,
    )
    .await
    .map_err(|error| PhaseError::new(error.code(), error.to_string()))?;
    let mode = distribution_mode(strategy);
    let holders = match mode {
        Mode::OwnerOnly | Mode::CustomList => Vec::new(),
        _ => {
            let actor = context.chain()?;
            let filters = HolderFilters {
                excluded_wallets: spec.exclusions.iter().copied().collect::<HashSet<_>>(),
                min_holding: spec.min_holding_base_units,
            };
            chain::holder_snapshot(
                &actor,
                spec.token_mint,
                filters,
                context.policy.call_timeout,
            )
            .await
            .map_err(|error| PhaseError::new(error.code(), error.to_string()))?
            .holders
        }
    };
    let dry_quoted = dry_quoted_usdc(context, run).await?;
    // From here to the commit the transaction holds SQLite's write lock (BEGIN IMMEDIATE): what
    // other runs have promised or allocated cannot change under this computation.
    let mut tx = context.store.begin_write().await?;
    let committed =
        committed_elsewhere(&mut tx, &run.run_id, &run.strategy_id, allowance.is_some()).await?;
    let room = committed.room(pool.status.balance_micro_usd, pool.status.reserve_micro_usd);
    let headroom = room.max(0);
    let keys = current_keys_on(&mut tx, &run.strategy_id).await?;
    let input = AllocationInput {
        mode,
        budget_micro_usd: 0,
        pool_headroom_micro_usd: Some(headroom),
        holders: &holders,
        owner_wallet: spec.owner_wallet,
        custom_weights: &spec.custom_weights,
        max_grant_micro_usd: spec.max_grant_micro_usd,
        max_key_limit_micro_usd: spec.max_key_limit_micro_usd,
        current_key_limits: &[],
        min_grant_micro_usd: context.policy.min_grant_micro_usd,
    };
    let invalid = |error: distribution::DistributionError| {
        PhaseError::new("ALLOCATION_INVALID", error.to_string())
    };
    let open_grant_runs: Vec<_> = committed
        .open_runs
        .iter()
        .map(|(run_id, micro_usd)| json!({"runId": run_id, "microUsd": micro_usd}))
        .collect();
    let mut details = json!({
        "keyLimitReset": allowance.map(|reset| reset.as_str()),
        "balanceMicroUsd": pool.status.balance_micro_usd,
        "reserveMicroUsd": pool.status.reserve_micro_usd,
        "poolHeadroomMicroUsd": pool.status.headroom_micro_usd,
        "promisedByKeysMicroUsd": committed.promised_by_keys_micro_usd,
        "openGrantsMicroUsd": committed.open_grants_micro_usd,
        "openGrantRuns": open_grant_runs,
        "supersededRuns": committed.superseded_runs,
        "headroomMicroUsd": room,
        "holders": holders.len(),
        "dryRun": run.dry_run,
        "dryQuotedUsdc": dry_quoted,
    });
    let (rows, budget, carry_in, allocated, carry_out, new_carry_over) = match allowance {
        None => {
            // USDC has 6 decimals: one base unit is one micro-dollar. A dry run splits what its
            // swap was quoted to give.
            let swapped = i64::try_from(run.swapped_usdc_base_units.unwrap_or(0))
                .unwrap_or(i64::MAX)
                .saturating_add(dry_quoted);
            let carry_in = strategy.carry_over_micro_usd;
            let budget = swapped.saturating_add(carry_in);
            let current_key_limits: Vec<(Pubkey, i64)> = keys
                .iter()
                .filter_map(|key| {
                    Pubkey::from_str(&key.holder_wallet)
                        .ok()
                        .map(|wallet| (wallet, key.limit_micro_usd))
                })
                .collect();
            let allocation = distribution::allocate(&AllocationInput {
                budget_micro_usd: budget,
                current_key_limits: &current_key_limits,
                ..input
            })
            .map_err(invalid)?;
            let rows: Vec<NewAllocation> = allocation
                .grants
                .iter()
                .map(|grant| NewAllocation {
                    wallet: grant.wallet.to_string(),
                    token_balance: grant.balance,
                    weight: grant.weight,
                    grant_micro_usd: grant.grant_micro_usd,
                    dry_run: run.dry_run,
                })
                .collect();
            details["grants"] = json!(allocation.grants.len());
            details["skipped"] = json!(allocation.skipped.len());
            (
                rows,
                budget,
                carry_in,
                allocation.allocated_micro_usd,
                allocation.carry_over_micro_usd,
                Some(allocation.carry_over_micro_usd),
            )
        }
        Some(reset) => {
            let until = Utc::now();
            let since = period_start(reset, until);
            let (since, until) = (
                crate::store::format_timestamp(since),
                crate::store::format_timestamp(until),
            );
            let mut income = period_income_on(&mut tx, &run.strategy_id, &since, &until).await?;
            income.micro_usd = income.micro_usd.saturating_add(dry_quoted);
            let wallets: Vec<String> = keys.iter().map(|key| key.holder_wallet.clone()).collect();
            let plan = plan_allowances(
                &AllocationInput {
                    budget_micro_usd: income.micro_usd,
                    ..input
                },
                room,
                &wallets,
            )
            .map_err(invalid)?;
            let rows: Vec<NewAllocation> = plan
                .rows
                .iter()
                .map(|row| NewAllocation {
                    wallet: row.wallet.clone(),
                    token_balance: row.balance,
                    weight: row.weight,
                    grant_micro_usd: row.allowance_micro_usd,
                    dry_run: run.dry_run,
                })
                .collect();
            details["period"] = json!({
                "since": since,
                "until": until,
                "runs": income.runs,
                "incomeMicroUsd": income.micro_usd,
            });
            details["requestedMicroUsd"] = json!(plan.scaling.requested_micro_usd);
            details["scaledDown"] = json!(plan.scaling.scaled);
            details["cutByPoolMicroUsd"] = json!(plan.scaling.cut_micro_usd);
            details["allowances"] = json!(plan.rows.len() - plan.ended);
            details["ended"] = json!(plan.ended);
            details["skipped"] = json!(plan.split.skipped.len());
            details["carryOverUnchangedMicroUsd"] = json!(strategy.carry_over_micro_usd);
            // Carry-over is left alone: the income is a rate, not a balance (`run::allowance`).
            (
                rows,
                income.micro_usd,
                0,
                plan.allocated_micro_usd,
                plan.carry_out_micro_usd(),
                None,
            )
        }
    };
    let pool_exhausted = headroom <= 0 && budget > 0;
    details["budgetMicroUsd"] = json!(budget);
    details["carryInMicroUsd"] = json!(carry_in);
    details["allocatedMicroUsd"] = json!(allocated);
    details["carryOutMicroUsd"] = json!(carry_out);
    let outputs = PhaseOutputs {
        budget_micro_usd: Some(budget),
        carry_in_micro_usd: Some(carry_in),
        headroom_micro_usd: Some(headroom),
        allocated_micro_usd: Some(allocated),
        carry_out_micro_usd: Some(carry_out),
        holders_count: Some(holders.len() as u64),
        skipped_reason: pool_exhausted.then(|| "pool_exhausted".to_string()),
        ..PhaseOutputs::default()
    };
    insert_allocations(&mut tx, &run.run_id, &rows).await?;
    if let Some(carry_over) = new_carry_over
        && !run.dry_run
    {
        crate::store::strategies::set_carry_over_on(&mut tx, &run.strategy_id, carry_over).await?;
    }
    advance(
        &mut tx,
        &run.run_id,
        RunState::Allocating,
        RunState::Provisioning,
        &outputs,
    )
    .await?;
    // One of `store::allowance::ALLOCATION_ACTIONS`, with `keyLimitReset`: PROVISIONING reads the
    // mode the rows were computed in from it.
    crate::store::audit::append_audit(
        &mut *tx,
        &AuditEntry::new(if pool_exhausted {
            "pool_exhausted"
        } else {
            "allocated"
        })
        .run(&run.run_id)
        .strategy(&run.strategy_id)
        .phase(RunState::Allocating.as_str())
        .actor("worker")
        .details(details),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(())
}

/// PROVISIONING: each pending allocation applied once (see [`provision`]); per-holder failures
/// are recorded and fail the run at the end so a resume retries only them.
///
/// Rows are applied the way ALLOCATING computed them (the mode in its audit row, not the
/// strategy's mode now): credits grants are added to the keys' limits, allowances replace them.
/// Allowances that lower a key's limit (or end it) are applied before those that raise one or
/// create a key, and none is raised while a lowering failed: during the switch the pool never
/// holds more than the old and the new allowances' larger sum allows (I1). An allowance run whose
/// strategy has allocated again since (a later run) applies nothing more: its rows are stale, and
/// skipped.
pub(super) async fn provision(
    context: &RunContext,
    run: &Run,
    strategy: &StoredStrategy,
) -> Result<(), PhaseError> {
    let record = context.store.allocation_record(&run.run_id).await?;
    let allowance = record.and_then(|record| record.allowance);
    if run.dry_run {
        let rows = context.store.allocations_for_run(&run.run_id).await?;
        let mut plan = BTreeMap::new();
        for row in &rows {
            let current = context
                .store
                .current_key(&run.strategy_id, &row.holder_wallet)
                .await?;
            let action = match (allowance.is_some(), &current, row.grant_micro_usd) {
                (true, Some(_), 0) => "end_allowance",
                (true, Some(_), _) => "set_allowance",
                (true, None, 0) => "none",
                (false, Some(_), _) => "top_up",
                (_, None, _) => "create",
            };
            plan.insert(
                row.holder_wallet.clone(),
                json!({
                    "action": action,
                    "grantMicroUsd": row.grant_micro_usd,
                    "currentLimitMicroUsd": current.map(|key| key.limit_micro_usd),
                }),
            );
        }
        audit(
            context,
            run,
            RunState::Provisioning,
            "provision_planned",
            json!({
                "dryRun": true,
                "keyLimitReset": allowance.map(|reset| reset.as_str()),
                "keys": plan,
            }),
        )
        .await?;
        let outputs = PhaseOutputs {
            keys_created: Some(0),
            keys_updated: Some(0),
            keys_failed: Some(0),
            ..PhaseOutputs::default()
        };
        return commit(
            context,
            run,
            RunState::Provisioning,
            RunState::Complete,
            &outputs,
        )
        .await;
    }
    let mut pending = context.store.pending_allocations(&run.run_id).await?;
    if let (Some(_), Some(record)) = (allowance, record)
        && let Some(later) = context
            .store
            .later_allocation(&run.strategy_id, &run.run_id, record.audit_id)
            .await?
        && !pending.is_empty()
    {
        let reason = format!(
            "superseded: run {later} allocated this strategy's allowances after this run did"
        );
        for allocation in &pending {
            context
                .store
                .mark_allocation_skipped(allocation.id, &reason)
                .await?;
        }
        audit(
            context,
            run,
            RunState::Provisioning,
            "allowances_superseded",
            json!({"supersededBy": later, "skippedAllocations": pending.len()}),
        )
        .await?;
        pending.clear();
    }
    // Allowance mode: lowerings first (see above); credits mode: one pass.
    let passes: Vec<Vec<_>> = if allowance.is_some() {
        let limits: BTreeMap<String, i64> = context
            .store
            .keys_for_strategy(&run.strategy_id, &[KeyStatus::Active, KeyStatus::Exhausted])
            .await?
            .into_iter()
            .map(|key| (key.holder_wallet, key.limit_micro_usd))
            .collect();
        let (lowering, raising): (Vec<_>, Vec<_>) = pending.iter().partition(|allocation| {
            limits
                .get(&allocation.holder_wallet)
                .is_some_and(|limit| allocation.grant_micro_usd <= *limit)
        });
        vec![lowering, raising]
    } else {
        vec![pending.iter().collect()]
    };
    let mut outcome = provision::Tally::default();
    let shared = provision::SharedPass::default();
    let mut held_back = 0;
    // Up to `provision_concurrency` allocations in flight: each waits on OpenRouter most of its
    // time, and the OpenRouterActor caps what really goes out. A pass ends when all of its
    // applications have (the next pass may depend on it). Dropping the set on an early return
    // drops only the waiting: each application runs to its end in its own task (`apply_once`).
    let concurrency = context.policy.provision_concurrency.max(1);
    let (shared_run, shared_strategy) = (Arc::new(run.clone()), Arc::new(strategy.clone()));
    for (index, pass) in passes.iter().enumerate() {
        if !outcome.failed.is_empty() {
            held_back = passes[index..].iter().map(Vec::len).sum();
            break;
        }
        let mut in_flight = JoinSet::new();
        let mut allocations = pass.iter();
        loop {
            while in_flight.len() < concurrency
                && let Some(allocation) = allocations.next()
            {
                in_flight.spawn(provision::apply_once(
                    context.clone(),
                    shared_run.clone(),
                    shared_strategy.clone(),
                    allocation.id,
                    shared.clone(),
                    allowance,
                ));
            }
            let Some(joined) = in_flight.join_next().await else {
                break;
            };
            let attempt = joined.unwrap_or_else(|error| {
                Err(PhaseError::new(
                    "PROVISION_TASK_FAILED",
                    format!("waiting for an allocation failed: {error}"),
                ))
            })?;
            match attempt {
                provision::Attempt::Applied(applied) => outcome.count(applied),
                provision::Attempt::AlreadyApplied => {}
                provision::Attempt::Failed(error) => outcome.failed.push(error),
            }
        }
    }
    if let Some(first) = outcome.failed.first() {
        let held = if held_back > 0 {
            format!(
                "; {held_back} allowance(s) that raise a limit wait until the lowerings succeed"
            )
        } else {
            String::new()
        };
        return Err(PhaseError::new(
            first.code.clone(),
            format!(
                "{} of {} keys failed (first: {}){held}; resume the run to retry only those",
                outcome.failed.len(),
                pending.len(),
                first.detail
            ),
        ));
    }
    // Over every attempt of the run, not only this pass.
    let (created, updated) = provision::run_totals(context, run).await?;
    let outputs = PhaseOutputs {
        keys_created: Some(created),
        keys_updated: Some(updated),
        keys_failed: Some(0),
        ..PhaseOutputs::default()
    };
    audit(
        context,
        run,
        RunState::Provisioning,
        "provisioned",
        json!({
            "created": created,
            "updated": updated,
            "keyLimitReset": allowance.map(|reset| reset.as_str()),
            "thisPass": {
                "created": outcome.created,
                "updated": outcome.updated,
                "adopted": outcome.adopted,
                "skipped": outcome.skipped,
                "allocations": pending.len(),
            },
            "at": crate::store::now_timestamp(),
        }),
    )
    .await?;
    let committed = commit(
        context,
        run,
        RunState::Provisioning,
        RunState::Complete,
        &outputs,
    )
    .await;
    if committed.is_ok() {
        provision::forget_allocation_locks(&run.run_id);
    }
    committed
}
