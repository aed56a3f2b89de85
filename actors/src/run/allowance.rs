//! What ALLOCATING may grant and, in allowance mode, what it grants (DESIGN §1 I1, §5).
//!
//! # The room (both modes)
//!
//! `room = balance − reserve − promised by keys − grants other runs allocated but have not
//! applied yet`. The balance and the reserve come from the PoolActor's fresh `GET /credits`; the
//! rest is read inside ALLOCATING's write transaction, which holds SQLite's write lock until the
//! rows commit, so a second run allocating at the same time waits and then sees the first one's
//! grants as open: two strategies never grant the same money. Open grants are those of runs in
//! PROVISIONING and of runs FAILED in PROVISIONING (a resume applies them without asking the pool
//! again), except allowance allocations a later allocation of their strategy supersedes (they
//! are skipped when resumed, see `phases::provision`). Counting an open grant in full is
//! conservative: an allowance row replaces its key's limit, whose promise is already counted.
//!
//! Credits mode counts every key's promise (grants are added on top of the limits). Allowance
//! mode leaves the strategy's own keys out: this run sets every one of them absolutely (holders
//! who get nothing are set to 0), so their current promise is replaced, not added to.
//!
//! # Allowances
//!
//! The budget is the strategy's income in the trailing period that matches the key reset
//! ([`period_start`]; what "in the period" means is in `store::allowance`). It is split by the
//! distribution mode exactly like a credits budget, each allowance capped by the per-grant
//! ceiling (the most one allowance may be) and by `MAX_KEY_LIMIT` (against the whole maximum:
//! the limit is replaced, not raised), then scaled down in proportion when the pool's room cannot
//! cover the sum ([`distribution::scale_allowances`]: largest remainder, whole cents, shares under
//! the minimum grant become 0). Every holder with a current key who gets no allowance this run
//! gets a row with grant 0: provisioning sets that key's limit to 0, once.
//!
//! Carry-over: the income is a rate, not a balance this run spends, so allowance runs leave the
//! strategy's `carry_over_micro_usd` unchanged (a credits carry-over from before a switch to
//! allowance mode waits for a switch back) and do not add their budget to it. The run row still
//! balances (I2): `carry_in = 0`, `budget = the period's income`, `allocated = Σ allowances`,
//! `carry_out = budget − allocated` — the part of the income not granted as allowance this
//! period (ceilings, sub-cent rests, the pool), informational only.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Months, Utc};
use sqlx::SqliteConnection;

use crate::distribution::{
    self, Allocation, AllocationInput, AllowanceScaling, DistributionError, MICRO_USD_PER_CENT,
};
use crate::store::StoreError;
use crate::store::allowance::{
    allocation_record_on, later_allocation_on, open_grants_of_other_runs_on, promised_by_keys_on,
};
use crate::strategy::LimitReset;

/// The start (exclusive) of the trailing period ending at `now`: one day, seven days, or one
/// calendar month (the same day of the previous month, clamped to its length: 31 March → 28 or
/// 29 February), matching the reset OpenRouter applies to the keys.
pub fn period_start(reset: LimitReset, now: DateTime<Utc>) -> DateTime<Utc> {
    match reset {
        LimitReset::Daily => now - chrono::Duration::days(1),
        LimitReset::Weekly => now - chrono::Duration::days(7),
        LimitReset::Monthly => now
            .checked_sub_months(Months::new(1))
            .unwrap_or(now - chrono::Duration::days(31)),
    }
}

/// What is already spoken for besides the reserve.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    /// Σ promised by current keys (the strategy's own left out in allowance mode).
    pub promised_by_keys_micro_usd: i64,
    /// Σ open grants of other runs that count (see the module documentation).
    pub open_grants_micro_usd: i64,
    /// Those runs and their open grants.
    pub open_runs: Vec<(String, i64)>,
    /// Open allowance allocations left out because a later allocation supersedes them.
    pub superseded_runs: Vec<String>,
}

impl Committed {
    /// `balance − reserve − committed`; negative when over-promised (then nothing is granted).
    pub fn room(&self, balance_micro_usd: i64, reserve_micro_usd: i64) -> i64 {
        balance_micro_usd
            .saturating_sub(reserve_micro_usd)
            .saturating_sub(self.promised_by_keys_micro_usd)
            .saturating_sub(self.open_grants_micro_usd)
    }
}

/// Reads what is spoken for, on `conn` (ALLOCATING's write transaction), for the run `run_id` of
/// `strategy_id`; `own_keys_replaced` in allowance mode.
pub async fn committed_elsewhere(
    conn: &mut SqliteConnection,
    run_id: &str,
    strategy_id: &str,
    own_keys_replaced: bool,
) -> Result<Committed, StoreError> {
    let promised = promised_by_keys_on(conn, own_keys_replaced.then_some(strategy_id)).await?;
    let mut committed = Committed {
        promised_by_keys_micro_usd: promised,
        ..Committed::default()
    };
    for open in open_grants_of_other_runs_on(conn, run_id).await? {
        let record = allocation_record_on(conn, &open.run_id).await?;
        let superseded = match record {
            Some(record) if record.allowance.is_some() => {
                // This run's own allocation, about to commit, supersedes its strategy's older
                // allowance rows; another strategy's may have been superseded already.
                open.strategy_id == strategy_id
                    || later_allocation_on(conn, &open.strategy_id, &open.run_id, record.audit_id)
                        .await?
                        .is_some()
            }
            _ => false,
        };
        if superseded {
            committed.superseded_runs.push(open.run_id);
        } else {
            committed.open_grants_micro_usd = committed
                .open_grants_micro_usd
                .saturating_add(open.micro_usd);
            committed.open_runs.push((open.run_id, open.micro_usd));
        }
    }
    Ok(committed)
}

/// One allocation row of an allowance run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowanceRow {
    pub wallet: String,
    pub balance: u64,
    pub weight: u64,
    /// The key's new limit: whole cents, 0 ends the holder's allowance.
    pub allowance_micro_usd: i64,
}

/// Allowance mode's ALLOCATING result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowancePlan {
    /// The split before the pool (ceilings, minimum, sub-cent rests applied).
    pub split: Allocation,
    /// The pool's scaling of the split's allowances.
    pub scaling: AllowanceScaling,
    /// Positive allowances, then zero rows for current key holders without one (wallet order).
    pub rows: Vec<AllowanceRow>,
    /// Σ allowances set (after scaling).
    pub allocated_micro_usd: i64,
    /// Holders with a current key whose allowance ends (rows with 0).
    pub ended: usize,
}

impl AllowancePlan {
    /// `budget − allocated`: the run row's carry-out (informational, see the module docs).
    pub fn carry_out_micro_usd(&self) -> i64 {
        self.split.budget_micro_usd - self.allocated_micro_usd
    }
}

/// Splits `input.budget_micro_usd` (the period's income) into allowances within `room`, and ends
/// the allowance of every holder in `current_key_wallets` who gets none. The input's pool cap and
/// key limits are ignored (see the module documentation).
pub fn plan_allowances(
    input: &AllocationInput<'_>,
    room_micro_usd: i64,
    current_key_wallets: &[String],
) -> Result<AllowancePlan, DistributionError> {
    let split = distribution::allocate(&AllocationInput {
        pool_headroom_micro_usd: None,
        current_key_limits: &[],
        ..*input
    })?;
    let requested: Vec<_> = split
        .grants
        .iter()
        .map(|grant| (grant.wallet, grant.grant_micro_usd))
        .collect();
    let scaling = distribution::scale_allowances(
        &requested,
        room_micro_usd,
        input.min_grant_micro_usd.max(MICRO_USD_PER_CENT),
    )?;
    let scaled: HashMap<String, i64> = scaling
        .allowances
        .iter()
        .map(|allowance| (allowance.wallet.to_string(), allowance.scaled_micro_usd))
        .collect();
    let has_key: HashSet<&str> = current_key_wallets.iter().map(String::as_str).collect();
    let mut rows = Vec::new();
    let mut allocated: i64 = 0;
    for grant in &split.grants {
        let wallet = grant.wallet.to_string();
        let allowance = scaled.get(&wallet).copied().unwrap_or(0);
        if allowance == 0 && !has_key.contains(wallet.as_str()) {
            // Scaled to nothing and no key to end: no row (no $0 keys).
            continue;
        }
        allocated += allowance;
        rows.push(AllowanceRow {
            wallet,
            balance: grant.balance,
            weight: grant.weight,
            allowance_micro_usd: allowance,
        });
    }
    let listed: HashSet<String> = rows.iter().map(|row| row.wallet.clone()).collect();
    // Holders that were recipients but got nothing keep their balance and weight on the record.
    let skipped: BTreeMap<String, (u64, u64)> = split
        .skipped
        .iter()
        .map(|skip| (skip.wallet.to_string(), (skip.balance, skip.weight)))
        .collect();
    let balances: HashMap<String, u64> = input
        .holders
        .iter()
        .map(|holder| (holder.wallet.to_string(), holder.amount))
        .collect();
    let mut ended: Vec<&String> = current_key_wallets
        .iter()
        .filter(|wallet| !listed.contains(*wallet))
        .collect();
    ended.sort();
    ended.dedup();
    for wallet in ended {
        let (balance, weight) = skipped
            .get(wallet)
            .copied()
            .unwrap_or_else(|| (balances.get(wallet).copied().unwrap_or(0), 0));
        rows.push(AllowanceRow {
            wallet: wallet.clone(),
            balance,
            weight,
            allowance_micro_usd: 0,
        });
    }
    let ended = rows
        .iter()
        .filter(|row| row.allowance_micro_usd == 0)
        .count();
    Ok(AllowancePlan {
        split,
        scaling,
        rows,
        allocated_micro_usd: allocated,
        ended,
    })
}

#[cfg(test)]
mod tests {
    use solana_sdk::pubkey::Pubkey;

    use super::*;
    use crate::distribution::{DistributionMode, Holder};

    const CENT: i64 = MICRO_USD_PER_CENT;
    const DOLLAR: i64 = 1_000_000;

    fn wallet(seed: u8) -> Pubkey {
        Pubkey::new_from_array([seed; 32])
    }

    fn input(budget: i64, holders: &[Holder]) -> AllocationInput<'_> {
        AllocationInput {
            mode: DistributionMode::WeightedByHoldings,
            budget_micro_usd: budget,
            pool_headroom_micro_usd: Some(0),
            holders,
            owner_wallet: wallet(200),
            custom_weights: &[],
            max_grant_micro_usd: 5 * DOLLAR,
            max_key_limit_micro_usd: 100 * DOLLAR,
            current_key_limits: &[],
            min_grant_micro_usd: CENT,
        }
    }

    #[test]
    fn periods_are_a_day_a_week_and_a_calendar_month() {
        let at = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc)
        };
        let now = at("2027-03-31T12:00:00Z");
        assert_eq!(
            period_start(LimitReset::Daily, now),
            at("2027-03-30T12:00:00Z")
        );
        assert_eq!(
            period_start(LimitReset::Weekly, now),
            at("2027-03-24T12:00:00Z")
        );
        assert_eq!(
            period_start(LimitReset::Monthly, now),
            at("2027-02-28T12:00:00Z"),
            "clamped to the shorter month"
        );
    }

    #[test]
    fn allowances_split_the_income_within_the_ceiling_and_end_for_dropped_holders() {
        let holders = [
            Holder {
                wallet: wallet(1),
                amount: 300,
            },
            Holder {
                wallet: wallet(2),
                amount: 100,
            },
        ];
        let dropped = wallet(9).to_string();
        let keys = [wallet(1).to_string(), dropped.clone()];
        // $12 by 3:1 = $9 and $3; the first is capped at the $5 ceiling. Pool room ignored when
        // it covers the sum; the input's pool cap (0) is not used.
        let plan = plan_allowances(&input(12 * DOLLAR, &holders), 100 * DOLLAR, &keys).unwrap();
        let rows: Vec<(String, i64)> = plan
            .rows
            .iter()
            .map(|row| (row.wallet.clone(), row.allowance_micro_usd))
            .collect();
        assert_eq!(
            rows,
            vec![
                (wallet(1).to_string(), 5 * DOLLAR),
                (wallet(2).to_string(), 3 * DOLLAR),
                (dropped, 0),
            ]
        );
        assert_eq!(plan.allocated_micro_usd, 8 * DOLLAR);
        assert_eq!(plan.carry_out_micro_usd(), 4 * DOLLAR);
        assert_eq!(plan.ended, 1);
        assert!(!plan.scaling.scaled);
    }

    #[test]
    fn a_short_pool_scales_every_allowance_and_zeroes_only_key_holders_rows() {
        let holders = [
            Holder {
                wallet: wallet(1),
                amount: 300,
            },
            Holder {
                wallet: wallet(2),
                amount: 100,
            },
            Holder {
                wallet: wallet(3),
                amount: 1,
            },
        ];
        let keys = [wallet(3).to_string()];
        let plan = plan_allowances(&input(4 * DOLLAR, &holders), 2 * DOLLAR, &keys).unwrap();
        assert!(plan.scaling.scaled);
        assert!(plan.allocated_micro_usd <= 2 * DOLLAR);
        let by_wallet: HashMap<String, i64> = plan
            .rows
            .iter()
            .map(|row| (row.wallet.clone(), row.allowance_micro_usd))
            .collect();
        // $4 by 300:100:1 ≈ $2.99, $0.99(+1 cent), $0.00 → halved: $1.50, $0.50; wallet 3's
        // one-cent share (if any) scales to 0 and its key is ended.
        assert_eq!(by_wallet[&wallet(1).to_string()], 150 * CENT);
        assert_eq!(by_wallet[&wallet(2).to_string()], 50 * CENT);
        assert_eq!(by_wallet[&wallet(3).to_string()], 0);
        assert_eq!(plan.ended, 1);
    }

    #[test]
    fn room_subtracts_everything_spoken_for() {
        let committed = Committed {
            promised_by_keys_micro_usd: 10,
            open_grants_micro_usd: 5,
            ..Committed::default()
        };
        assert_eq!(committed.room(100, 20), 65);
        assert_eq!(committed.room(10, 20), -25);
    }
}
