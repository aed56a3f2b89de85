//! The distribution math of ALLOCATING (DESIGN §4, §5): a budget in micro-USD and the qualifying
//! holders in, per-holder grants in whole cents and the carry-over out, exactly (I2). Pure: no I/O,
//! no async, no floats.
//!
//! # The rules, in the order they apply
//!
//! 1. **Pool cap.** The distributable amount is `min(budget, max(pool headroom, 0))`; what the pool
//!    cannot cover is carried over (I1). An over-promised pool (negative headroom) grants nothing;
//!    that is a state, not an error.
//! 2. **Recipients and weights** by mode. `OWNER_ONLY`: the owner wallet alone, weight 1, whether it
//!    holds the token or not (the old service fell back to an arbitrary holder). `TOP_N_HOLDERS`:
//!    the top N holders by balance (ties: wallet ascending), weight = balance. `EQUAL_SPLIT`: every
//!    holder, weight 1. `WEIGHTED_BY_HOLDINGS`: every holder, weight = balance. `CUSTOM_LIST`: the
//!    strategy's list, weight = the list's weight; the holder snapshot only supplies balances for
//!    the record. A holder with a zero balance owns nothing and never takes a slot or a share.
//! 3. **Apportionment.** The distributable amount's whole cents are split by largest remainder
//!    (Hamilton): each recipient gets `⌊cents·w/W⌋`, and the cents left over go one each to the
//!    largest remainders `cents·w mod W`. The sub-cent rest of the amount is carried over.
//! 4. **Ceilings.** A share is capped by the per-grant ceiling (`max_grant`, the strategy's
//!    `--key-limit`) and by the key's headroom (`max_key_limit − current limit`, so no key ever
//!    passes `MAX_KEY_LIMIT_USD`), both floored to whole cents. What a ceiling cuts is carried
//!    over, **not redistributed**: DESIGN §5 says what either ceiling cuts "becomes carry-over", and
//!    handing a capped holder's excess to the others would make a weighted split no longer
//!    weighted. The next run's budget includes it, so it is delayed, never lost.
//! 5. **Minimum.** A capped share below the minimum grant (and any share of zero) is not granted:
//!    no $0 keys. Its amount is carried over.
//!
//! Σ grants + carry-over = budget to the micro-dollar, always; [`CarryOver`] says where every
//! carried micro-dollar came from, and [`allocate`] checks the identity before it returns.
//!
//! # The one order
//!
//! Recipients are ranked **weight descending, then wallet ascending in base58 text order** (the
//! text operators and the store see; it differs from `Pubkey`'s byte order). The same order picks
//! the top N (weight = balance there), breaks ties between equal remainders, and is the order of
//! [`Allocation::grants`] and [`Allocation::skipped`]. It matches the holder snapshot's order
//! (`chain::helius`). The input order never matters.
//!
//! All arithmetic is integer and checked: weights are `u64`, sums and products `u128` (cents ≤
//! 2^50 times a weight ≤ 2^64 stays far below 2^128), money `i64` micro-USD.

use std::cmp::{Ordering, Reverse};
use std::collections::{HashMap, HashSet};

use solana_sdk::pubkey::Pubkey;

/// One qualifying holder from the holder snapshot (wallet, aggregated token base units).
pub use crate::chain::helius::Holder;

/// One cent in micro-USD: grants and key limits are whole cents (DESIGN §5).
pub const MICRO_USD_PER_CENT: i64 = 10_000;

/// How a run's dollars are split (DESIGN §4). Stored as its [`as_str`](Self::as_str) text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DistributionMode {
    /// The owner wallet receives everything, holding or not.
    OwnerOnly,
    /// The top `n` holders by balance, weighted by balance.
    TopNHolders { n: u32 },
    /// Every qualifying holder, equally.
    EqualSplit,
    /// Every qualifying holder, weighted by balance.
    WeightedByHoldings,
    /// The strategy's stored wallet → weight list.
    CustomList,
}

impl DistributionMode {
    /// From the strategy row: `distribution_mode` text and `top_n` (used by `TOP_N_HOLDERS` only,
    /// but validated only there, so a stale `top_n` never blocks another mode).
    pub fn from_db(mode: &str, top_n: i64) -> Result<Self, DistributionError> {
        Ok(match mode {
            "OWNER_ONLY" => Self::OwnerOnly,
            "TOP_N_HOLDERS" => Self::TopNHolders {
                n: u32::try_from(top_n)
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or(DistributionError::InvalidTopN(top_n))?,
            },
            "EQUAL_SPLIT" => Self::EqualSplit,
            "WEIGHTED_BY_HOLDINGS" => Self::WeightedByHoldings,
            "CUSTOM_LIST" => Self::CustomList,
            other => return Err(DistributionError::UnknownMode(other.to_string())),
        })
    }

    /// `OWNER_ONLY`, `TOP_N_HOLDERS`, `EQUAL_SPLIT`, `WEIGHTED_BY_HOLDINGS` or `CUSTOM_LIST`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::OwnerOnly => "OWNER_ONLY",
            Self::TopNHolders { .. } => "TOP_N_HOLDERS",
            Self::EqualSplit => "EQUAL_SPLIT",
            Self::WeightedByHoldings => "WEIGHTED_BY_HOLDINGS",
            Self::CustomList => "CUSTOM_LIST",
        }
    }
}

/// Everything [`allocate`] needs; the caller reads it from the run, the strategy, the holder
/// snapshot, the pool and the key ledger.
#[derive(Clone, Copy, Debug)]
pub struct AllocationInput<'a> {
    pub mode: DistributionMode,
    /// What the run has to split: swapped USDC as micro-USD plus the strategy's carry-in (credits
    /// mode), or the trailing period's income (allowance mode). Σ grants + carry-over equals it.
    pub budget_micro_usd: i64,
    /// The pool's headroom (I1); `None` = no pool cap (allowance mode scales afterwards with
    /// [`scale_allowances`]). Negative counts as zero.
    pub pool_headroom_micro_usd: Option<i64>,
    /// The qualifying holders, any order, wallets unique.
    pub holders: &'a [Holder],
    /// `OWNER_ONLY`'s recipient.
    pub owner_wallet: Pubkey,
    /// `CUSTOM_LIST`'s recipients: wallet → positive weight, wallets unique. Ignored otherwise.
    pub custom_weights: &'a [(Pubkey, u64)],
    /// The most one holder receives from one run (credits) / the most one allowance may be.
    pub max_grant_micro_usd: i64,
    /// The most a key's limit may ever reach (`MAX_KEY_LIMIT_USD`).
    pub max_key_limit_micro_usd: i64,
    /// Current limits of the holders' live keys (credits mode), wallets unique. A wallet absent
    /// has no key: its headroom is the whole `max_key_limit`. Allowance mode sets limits
    /// absolutely, so it passes none. A limit above the maximum (lowered since) leaves headroom 0.
    pub current_key_limits: &'a [(Pubkey, i64)],
    /// Smallest grant made (e.g. one cent); smaller shares are carried over. 0 = any positive
    /// whole-cent share.
    pub min_grant_micro_usd: i64,
}

/// Which ceiling cut a share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ceiling {
    /// The per-grant ceiling (`max_grant_micro_usd`).
    Grant,
    /// The key's headroom under `max_key_limit_micro_usd`. When both bind equally, `Grant` is
    /// named.
    Key,
}

/// One holder's grant: always a positive whole number of cents, at least the minimum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub wallet: Pubkey,
    /// Token balance from the snapshot (0 for an `OWNER_ONLY` / `CUSTOM_LIST` wallet not holding).
    pub balance: u64,
    /// The weight in the split (balance, 1 or the custom weight): the allocation row's `weight`.
    pub weight: u64,
    /// The apportioned share before ceilings.
    pub share_micro_usd: i64,
    /// What is granted: `share` capped by the ceilings.
    pub grant_micro_usd: i64,
    /// The ceiling that cut the share, if one did.
    pub limited_by: Option<Ceiling>,
}

/// Why a recipient receives nothing this run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// Its share of the cents was zero (the budget was too small for its weight).
    ZeroShare,
    /// A ceiling cut its share to zero (key at `MAX_KEY_LIMIT`, or a zero per-grant ceiling).
    Ceiling(Ceiling),
    /// Its (capped) share was below the minimum grant.
    BelowMinimum,
}

/// A recipient that receives nothing; its share is in the carry-over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub wallet: Pubkey,
    pub balance: u64,
    pub weight: u64,
    pub share_micro_usd: i64,
    pub reason: SkipReason,
}

/// Where every carried-over micro-dollar came from. The fields sum to
/// [`Allocation::carry_over_micro_usd`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CarryOver {
    /// Budget above the pool's headroom.
    pub pool_cap_micro_usd: i64,
    /// The sub-cent rest of the distributable amount.
    pub sub_cent_micro_usd: i64,
    /// The whole cents when there was no recipient at all.
    pub no_recipients_micro_usd: i64,
    /// Cut by the per-grant ceiling.
    pub grant_ceiling_micro_usd: i64,
    /// Cut by keys' headroom under `MAX_KEY_LIMIT`.
    pub key_ceiling_micro_usd: i64,
    /// Shares (after ceilings) below the minimum grant.
    pub below_minimum_micro_usd: i64,
}

impl CarryOver {
    /// The sum of the parts. They partition the budget's un-granted part, so the sum fits an
    /// `i64`; it saturates rather than panics so that a bug surfaces as
    /// [`DistributionError::Inexact`], not as an overflow panic.
    pub fn total(&self) -> i64 {
        [
            self.pool_cap_micro_usd,
            self.sub_cent_micro_usd,
            self.no_recipients_micro_usd,
            self.grant_ceiling_micro_usd,
            self.key_ceiling_micro_usd,
            self.below_minimum_micro_usd,
        ]
        .into_iter()
        .fold(0i64, i64::saturating_add)
    }
}

/// The result of [`allocate`]. `allocated + carry_over = budget`, exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub mode: DistributionMode,
    /// The input budget.
    pub budget_micro_usd: i64,
    /// The budget after the pool cap: what was split.
    pub distributable_micro_usd: i64,
    /// Positive grants in the documented order (weight desc, wallet base58 asc).
    pub grants: Vec<Grant>,
    /// Recipients that receive nothing, same order.
    pub skipped: Vec<Skipped>,
    /// Σ grants.
    pub allocated_micro_usd: i64,
    /// Everything not granted: the strategy's new carry-over (credits mode).
    pub carry_over_micro_usd: i64,
    /// Where the carry-over came from.
    pub carry_over: CarryOver,
    /// Recipients the split ran over (`grants.len() + skipped.len()`).
    pub recipients_considered: usize,
    /// Σ weights of those recipients.
    pub total_weight: u128,
    /// Holders in the snapshot that were not recipients: zero balances, outside the top N, not on
    /// the custom list, or not the owner.
    pub holders_not_selected: usize,
}

/// What was wrong with an input (or, never expected, with the arithmetic).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DistributionError {
    #[error("{what} must not be negative, got {value}")]
    Negative { what: &'static str, value: i64 },
    #[error("current key limit of {wallet} must not be negative, got {value}")]
    NegativeKeyLimit { wallet: Pubkey, value: i64 },
    #[error("top N must be between 1 and 4294967295, got {0}")]
    InvalidTopN(i64),
    #[error("unknown distribution mode {0:?}")]
    UnknownMode(String),
    #[error("custom list weight of {0} is zero; weights must be positive")]
    ZeroWeight(Pubkey),
    #[error("{list} names {wallet} more than once")]
    DuplicateWallet { list: &'static str, wallet: Pubkey },
    #[error("allowance of {wallet} is {value} micro-USD, not whole cents")]
    NotWholeCents { wallet: Pubkey, value: i64 },
    #[error("arithmetic overflow computing {0}")]
    Overflow(&'static str),
    /// A bug, not an input problem: refuse to hand out an inexact allocation.
    #[error("internal error: granted {allocated} + carried {carried} != budget {budget} micro-USD")]
    Inexact {
        allocated: i64,
        carried: i64,
        budget: i64,
    },
}

/// A recipient during the computation; `b58` is computed once for the tie-breaks.
struct Recipient {
    wallet: Pubkey,
    b58: Base58,
    balance: u64,
    weight: u64,
}

impl Recipient {
    fn new(wallet: Pubkey, balance: u64, weight: u64) -> Self {
        Self {
            wallet,
            b58: Base58::of(&wallet),
            balance,
            weight,
        }
    }
}

/// A wallet's base58 text, held inline (32 bytes encode to at most 44 characters): the tie-break
/// key without a heap allocation per recipient, which a million recipients would otherwise pay
/// in allocation and in freeing. Compares as the text does.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Base58 {
    // Field order matters for the derived order: the text first (unused bytes are zero, below
    // every base58 character, so a shorter prefix sorts first as in `str`), the length after.
    text: [u8; 44],
    len: u8,
}

impl Base58 {
    fn of(wallet: &Pubkey) -> Self {
        use std::fmt::Write as _;
        let mut b58 = Self {
            text: [0; 44],
            len: 0,
        };
        // `Pubkey`'s `Display` is its base58 text, which always fits.
        let _ = write!(b58, "{wallet}");
        b58
    }
}

impl std::fmt::Write for Base58 {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let start = usize::from(self.len);
        let end = start + text.len();
        let slot = self.text.get_mut(start..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(text.as_bytes());
        self.len = u8::try_from(end).map_err(|_| std::fmt::Error)?;
        Ok(())
    }
}

/// The one order: weight descending, then wallet ascending in base58 text.
fn rank(a: &Recipient, b: &Recipient) -> Ordering {
    b.weight.cmp(&a.weight).then_with(|| a.b58.cmp(&b.b58))
}

fn non_negative(what: &'static str, value: i64) -> Result<i64, DistributionError> {
    if value < 0 {
        Err(DistributionError::Negative { what, value })
    } else {
        Ok(value)
    }
}

/// `entries` as a map, refusing a wallet that comes twice.
fn unique_map<V>(
    list: &'static str,
    entries: impl Iterator<Item = (Pubkey, V)>,
    capacity: usize,
) -> Result<HashMap<Pubkey, V>, DistributionError> {
    let mut map = HashMap::with_capacity(capacity);
    for (wallet, value) in entries {
        if map.insert(wallet, value).is_some() {
            return Err(DistributionError::DuplicateWallet { list, wallet });
        }
    }
    Ok(map)
}

fn unique<'a>(
    list: &'static str,
    wallets: impl Iterator<Item = &'a Pubkey>,
) -> Result<(), DistributionError> {
    let mut seen = HashSet::new();
    for wallet in wallets {
        if !seen.insert(*wallet) {
            return Err(DistributionError::DuplicateWallet {
                list,
                wallet: *wallet,
            });
        }
    }
    Ok(())
}

/// Floors micro-USD to whole cents (non-negative input).
fn floor_to_cent(micro_usd: i64) -> i64 {
    micro_usd - micro_usd % MICRO_USD_PER_CENT
}

/// Largest-remainder (Hamilton) apportionment of `cents` by `weights`, which must already be in
/// the documented rank order: equal remainders then go to the earlier entry (larger weight, then
/// smaller wallet). Returns one count per weight; Σ = `cents` unless every weight is zero (or
/// there are none), in which case all counts are zero.
///
/// Each result is `⌊q⌋` or `⌊q⌋ + 1` of its exact quota `q = cents·w/W`, and it is monotone: a
/// larger weight never gets less (same floor → its remainder is larger, or equal only with a
/// zero remainder for both; different floors → at least one cent apart already).
fn apportion(cents: u64, weights: &[u64]) -> Result<Vec<u64>, DistributionError> {
    let total: u128 = weights.iter().try_fold(0u128, |sum, w| {
        sum.checked_add(u128::from(*w))
            .ok_or(DistributionError::Overflow("the total weight"))
    })?;
    if total == 0 {
        return Ok(vec![0; weights.len()]);
    }
    let mut counts = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    let mut floors_sum: u128 = 0;
    for w in weights {
        let product = u128::from(cents)
            .checked_mul(u128::from(*w))
            .ok_or(DistributionError::Overflow("cents × weight"))?;
        let floor = product / total;
        floors_sum += floor; // Σ floor ≤ cents, a u64
        counts.push(u64::try_from(floor).map_err(|_| DistributionError::Overflow("a share"))?);
        remainders.push(product % total);
    }
    // Σ q = cents exactly, so what the floors leave is Σ frac(q) < the number of weights.
    let leftover = usize::try_from(u128::from(cents) - floors_sum)
        .map_err(|_| DistributionError::Overflow("the leftover cents"))?;
    // Only which `leftover` entries have the largest remainders matters, not their order: a
    // selection, O(n), rather than a sort. The keys are unique (the index), so the set is exact.
    let leftover = leftover.min(weights.len());
    if leftover > 0 {
        let mut order: Vec<usize> = (0..weights.len()).collect();
        order.select_nth_unstable_by_key(leftover - 1, |&i| (Reverse(remainders[i]), i));
        for &i in &order[..leftover] {
            counts[i] += 1;
        }
    }
    Ok(counts)
}

/// The recipients for `input.mode`, in rank order, and how many snapshot holders are not among
/// them. `balances` is the snapshot by wallet.
fn recipients(
    input: &AllocationInput<'_>,
    balances: &HashMap<Pubkey, u64>,
) -> (Vec<Recipient>, usize) {
    let positive = || input.holders.iter().filter(|h| h.amount > 0);
    let mut list: Vec<Recipient> = match input.mode {
        DistributionMode::OwnerOnly => {
            let balance = balances.get(&input.owner_wallet).copied().unwrap_or(0);
            vec![Recipient::new(input.owner_wallet, balance, 1)]
        }
        DistributionMode::TopNHolders { n } => {
            // Only holders at or above the N-th largest balance can be in the top N (below it,
            // N others rank ahead): recipients (with their base58 text) are built for those
            // alone, not for every holder. Ties at the cut are all kept and settled below.
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            let mut amounts: Vec<u64> = positive().map(|h| h.amount).collect();
            let cut = match n.checked_sub(1) {
                Some(last) if last < amounts.len() => {
                    *amounts.select_nth_unstable_by(last, |a, b| b.cmp(a)).1
                }
                _ => 0,
            };
            drop(amounts);
            positive()
                .filter(|h| h.amount >= cut)
                .map(|h| Recipient::new(h.wallet, h.amount, h.amount))
                .collect()
        }
        DistributionMode::WeightedByHoldings => positive()
            .map(|h| Recipient::new(h.wallet, h.amount, h.amount))
            .collect(),
        DistributionMode::EqualSplit => positive()
            .map(|h| Recipient::new(h.wallet, h.amount, 1))
            .collect(),
        DistributionMode::CustomList => input
            .custom_weights
            .iter()
            .map(|(wallet, weight)| {
                Recipient::new(*wallet, balances.get(wallet).copied().unwrap_or(0), *weight)
            })
            .collect(),
    };
    if let DistributionMode::TopNHolders { n } = input.mode {
        // Weight = balance here, so the rank order is balance desc, wallet asc: the top N. Wallets
        // are unique, so `rank` is a total order and the first N after a selection are exactly
        // the top N (in some order, sorted below) — without sorting everyone else.
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if n < list.len() {
            list.select_nth_unstable_by(n, rank);
            list.truncate(n);
        }
    }
    // A total order (unique wallets), so an unstable sort gives the one order.
    list.sort_unstable_by(rank);
    let from_snapshot = match input.mode {
        // Every recipient of these modes is a snapshot holder.
        DistributionMode::TopNHolders { .. }
        | DistributionMode::EqualSplit
        | DistributionMode::WeightedByHoldings => list.len(),
        // Recipients are unique too, so each matches at most one holder.
        DistributionMode::OwnerOnly | DistributionMode::CustomList => list
            .iter()
            .filter(|r| balances.contains_key(&r.wallet))
            .count(),
    };
    (list, input.holders.len() - from_snapshot)
}

/// Splits the budget into grants and carry-over by the rules in the module docs.
///
/// Errors: a negative budget, ceiling, minimum or key limit; a zero custom weight; a wallet twice
/// in the holders, the custom list or the key limits; overflow (not reachable with `i64` money
/// and `u64` weights, but checked rather than assumed).
pub fn allocate(input: &AllocationInput<'_>) -> Result<Allocation, DistributionError> {
    let budget = non_negative("budget", input.budget_micro_usd)?;
    let max_grant = non_negative("per-grant ceiling", input.max_grant_micro_usd)?;
    let max_key_limit = non_negative("per-key ceiling", input.max_key_limit_micro_usd)?;
    let min_grant = non_negative("minimum grant", input.min_grant_micro_usd)?;
    // The uniqueness checks build the maps the split looks wallets up in (one pass each).
    let balances = unique_map(
        "holders",
        input.holders.iter().map(|h| (h.wallet, h.amount)),
        input.holders.len(),
    )?;
    unique("custom list", input.custom_weights.iter().map(|(w, _)| w))?;
    let limits = unique_map(
        "current key limits",
        input.current_key_limits.iter().copied(),
        input.current_key_limits.len(),
    )?;
    if let DistributionMode::TopNHolders { n: 0 } = input.mode {
        return Err(DistributionError::InvalidTopN(0));
    }
    // Only the active mode's list matters; a stale list on a strategy in another mode must not
    // fail its runs.
    if input.mode == DistributionMode::CustomList
        && let Some((wallet, _)) = input.custom_weights.iter().find(|(_, w)| *w == 0)
    {
        return Err(DistributionError::ZeroWeight(*wallet));
    }
    if let Some((wallet, limit)) = input.current_key_limits.iter().find(|(_, l)| *l < 0) {
        return Err(DistributionError::NegativeKeyLimit {
            wallet: *wallet,
            value: *limit,
        });
    }

    let mut carry = CarryOver::default();
    let distributable = match input.pool_headroom_micro_usd {
        Some(headroom) => budget.min(headroom.max(0)),
        None => budget,
    };
    carry.pool_cap_micro_usd = budget - distributable;
    carry.sub_cent_micro_usd = distributable % MICRO_USD_PER_CENT;
    let cents = distributable / MICRO_USD_PER_CENT;

    let (list, holders_not_selected) = recipients(input, &balances);
    // Not needed past this point; freed before the result is built, so the two never add up.
    drop(balances);
    if list.is_empty() {
        carry.no_recipients_micro_usd = cents * MICRO_USD_PER_CENT;
    }
    let weights: Vec<u64> = list.iter().map(|r| r.weight).collect();
    let total_weight: u128 = weights.iter().map(|w| u128::from(*w)).sum();
    let counts = apportion(cents.unsigned_abs(), &weights)?;
    drop(weights);

    let mut grants = Vec::new();
    let mut skipped = Vec::new();
    let mut allocated: i64 = 0;
    for (recipient, count) in list.into_iter().zip(counts) {
        let share = i64::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(MICRO_USD_PER_CENT))
            .ok_or(DistributionError::Overflow("a share in micro-USD"))?;
        // Both non-negative, so the difference cannot overflow; a key above the (lowered)
        // maximum simply has no headroom.
        let key_headroom =
            (max_key_limit - limits.get(&recipient.wallet).copied().unwrap_or(0)).max(0);
        let binding = if max_grant <= key_headroom {
            Ceiling::Grant
        } else {
            Ceiling::Key
        };
        let cap = floor_to_cent(max_grant.min(key_headroom));
        let capped = share.min(cap);
        let cut = share - capped;
        match binding {
            Ceiling::Grant => carry.grant_ceiling_micro_usd += cut,
            Ceiling::Key => carry.key_ceiling_micro_usd += cut,
        }
        let limited_by = (cut > 0).then_some(binding);
        let reason = if share == 0 {
            Some(SkipReason::ZeroShare)
        } else if capped == 0 {
            Some(SkipReason::Ceiling(binding))
        } else if capped < min_grant {
            carry.below_minimum_micro_usd += capped;
            Some(SkipReason::BelowMinimum)
        } else {
            None
        };
        match reason {
            Some(reason) => skipped.push(Skipped {
                wallet: recipient.wallet,
                balance: recipient.balance,
                weight: recipient.weight,
                share_micro_usd: share,
                reason,
            }),
            None => {
                allocated += capped; // Σ ≤ distributable ≤ budget, an i64
                grants.push(Grant {
                    wallet: recipient.wallet,
                    balance: recipient.balance,
                    weight: recipient.weight,
                    share_micro_usd: share,
                    grant_micro_usd: capped,
                    limited_by,
                });
            }
        }
    }

    let carried = carry.total();
    if allocated.checked_add(carried) != Some(budget) {
        return Err(DistributionError::Inexact {
            allocated,
            carried,
            budget,
        });
    }
    Ok(Allocation {
        mode: input.mode,
        budget_micro_usd: budget,
        distributable_micro_usd: distributable,
        recipients_considered: grants.len() + skipped.len(),
        grants,
        skipped,
        allocated_micro_usd: allocated,
        carry_over_micro_usd: carried,
        carry_over: carry,
        total_weight,
        holders_not_selected,
    })
}

/// One allowance before and after [`scale_allowances`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaledAllowance {
    pub wallet: Pubkey,
    /// The allowance the distribution computed.
    pub requested_micro_usd: i64,
    /// What the key's limit is set to: ≤ requested, whole cents, 0 or at least the minimum.
    /// Zero means the holder has no allowance this period (set an existing key's limit to 0; do
    /// not create a key for it).
    pub scaled_micro_usd: i64,
}

/// The result of [`scale_allowances`]: `granted + cut = requested`, `granted ≤ pool headroom`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowanceScaling {
    /// Every input allowance, ordered by requested allowance desc, then wallet base58 asc.
    pub allowances: Vec<ScaledAllowance>,
    /// Σ requested.
    pub requested_micro_usd: i64,
    /// Σ scaled.
    pub granted_micro_usd: i64,
    /// requested − granted.
    pub cut_micro_usd: i64,
    /// Whether the pool could not cover Σ requested and the allowances were scaled down.
    pub scaled: bool,
}

/// Allowance mode (DESIGN §5): promised credit is Σ limits, so when the pool's headroom cannot
/// cover Σ allowances, every allowance is scaled down in proportion: the headroom's whole cents
/// are apportioned by largest remainder with the allowances as weights (ties: larger allowance,
/// then wallet base58 ascending), so no scaled allowance exceeds its request and the pool's whole
/// cents are used up. Any resulting allowance below `min_allowance_micro_usd` becomes 0 (and
/// counts as cut); the freed cents are not handed to others, for the same reason ceilings do not
/// redistribute. Negative headroom counts as zero.
///
/// Allowances must be non-negative whole cents (what [`allocate`] produces); wallets unique.
pub fn scale_allowances(
    allowances: &[(Pubkey, i64)],
    pool_headroom_micro_usd: i64,
    min_allowance_micro_usd: i64,
) -> Result<AllowanceScaling, DistributionError> {
    let min = non_negative("minimum allowance", min_allowance_micro_usd)?;
    unique("allowances", allowances.iter().map(|(w, _)| w))?;
    let mut requested: i64 = 0;
    let mut list = Vec::with_capacity(allowances.len());
    for (wallet, value) in allowances {
        let value = non_negative("allowance", *value)?;
        if value % MICRO_USD_PER_CENT != 0 {
            return Err(DistributionError::NotWholeCents {
                wallet: *wallet,
                value,
            });
        }
        requested = requested
            .checked_add(value)
            .ok_or(DistributionError::Overflow("the sum of allowances"))?;
        // Cents as the weight: a non-negative i64 / 10_000 fits a u64.
        list.push(Recipient::new(
            *wallet,
            0,
            (value / MICRO_USD_PER_CENT).unsigned_abs(),
        ));
    }
    // Wallets are unique (checked): a total order.
    list.sort_unstable_by(rank);
    let headroom = pool_headroom_micro_usd.max(0);
    let scaled = requested > headroom;
    let cents: Vec<u64> = if scaled {
        let weights: Vec<u64> = list.iter().map(|r| r.weight).collect();
        apportion((headroom / MICRO_USD_PER_CENT).unsigned_abs(), &weights)?
    } else {
        list.iter().map(|r| r.weight).collect()
    };
    let mut granted: i64 = 0;
    let mut out = Vec::with_capacity(list.len());
    for (recipient, count) in list.into_iter().zip(cents) {
        // count ≤ the requested cents, so these fit.
        let requested_one = i64::try_from(recipient.weight)
            .map_err(|_| DistributionError::Overflow("an allowance"))?
            * MICRO_USD_PER_CENT;
        let mut value = i64::try_from(count)
            .map_err(|_| DistributionError::Overflow("an allowance"))?
            * MICRO_USD_PER_CENT;
        if value < min {
            value = 0;
        }
        granted += value;
        out.push(ScaledAllowance {
            wallet: recipient.wallet,
            requested_micro_usd: requested_one,
            scaled_micro_usd: value,
        });
    }
    Ok(AllowanceScaling {
        allowances: out,
        requested_micro_usd: requested,
        granted_micro_usd: granted,
        cut_micro_usd: requested - granted,
        scaled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CENT: i64 = MICRO_USD_PER_CENT;
    const DOLLAR: i64 = 1_000_000;

    fn wallet(seed: u8) -> Pubkey {
        Pubkey::new_from_array([seed; 32])
    }

    fn holder(wallet: Pubkey, amount: u64) -> Holder {
        Holder { wallet, amount }
    }

    /// `n` distinct wallets sorted ascending by base58 text, so expectations can name "the
    /// smallest wallet" without depending on byte order.
    fn wallets_by_text(n: u8) -> Vec<Pubkey> {
        let mut all: Vec<Pubkey> = (1..=n).map(wallet).collect();
        all.sort_by_key(|w| w.to_string());
        all
    }

    fn input<'a>(
        mode: DistributionMode,
        budget: i64,
        holders: &'a [Holder],
    ) -> AllocationInput<'a> {
        AllocationInput {
            mode,
            budget_micro_usd: budget,
            pool_headroom_micro_usd: None,
            holders,
            owner_wallet: wallet(200),
            custom_weights: &[],
            max_grant_micro_usd: i64::MAX,
            max_key_limit_micro_usd: i64::MAX,
            current_key_limits: &[],
            min_grant_micro_usd: 0,
        }
    }

    fn granted(allocation: &Allocation) -> Vec<(Pubkey, i64)> {
        allocation
            .grants
            .iter()
            .map(|g| (g.wallet, g.grant_micro_usd))
            .collect()
    }

    #[test]
    fn ten_dollars_over_three_equal_weights_gives_the_extra_cent_to_the_smallest_wallet() {
        let w = wallets_by_text(3);
        // Shuffled input: the output order is the documented one, not the input's.
        let holders = [holder(w[2], 5), holder(w[0], 7), holder(w[1], 9)];
        let a = allocate(&input(DistributionMode::EqualSplit, 10 * DOLLAR, &holders)).unwrap();
        assert_eq!(
            granted(&a),
            vec![(w[0], 334 * CENT), (w[1], 333 * CENT), (w[2], 333 * CENT)]
        );
        assert_eq!(a.carry_over_micro_usd, 0);
        assert_eq!(a.grants[0].weight, 1);
        assert_eq!(a.grants[0].balance, 7);
    }

    #[test]
    fn equal_remainders_go_to_the_larger_weight_then_the_smaller_wallet() {
        let w = wallets_by_text(4);
        // 4 cents over 2:3:3 (W = 8): quotas 1.0, 1.5, 1.5 → floors 1, 1, 1, remainders 0, 4, 4;
        // the one cent left ties between the two weight-3 holders: the smaller wallet, w[1].
        let holders = [holder(w[0], 2), holder(w[1], 3), holder(w[2], 3)];
        let a = allocate(&input(
            DistributionMode::WeightedByHoldings,
            4 * CENT,
            &holders,
        ))
        .unwrap();
        assert_eq!(
            granted(&a),
            vec![(w[1], 2 * CENT), (w[2], CENT), (w[0], CENT)]
        );
        // 2 cents over 1:1:1:5 (W = 8): quotas 0.25 ×3 and 1.25 → floors 0, 0, 0, 1, remainders
        // all 2 (of 8); the cent left goes to the larger weight although its wallet is the
        // largest in text order.
        let holders = [
            holder(w[0], 1),
            holder(w[1], 1),
            holder(w[2], 1),
            holder(w[3], 5),
        ];
        let a = allocate(&input(
            DistributionMode::WeightedByHoldings,
            2 * CENT,
            &holders,
        ))
        .unwrap();
        assert_eq!(granted(&a), vec![(w[3], 2 * CENT)]);
        let skipped: Vec<(Pubkey, SkipReason)> =
            a.skipped.iter().map(|s| (s.wallet, s.reason)).collect();
        assert_eq!(
            skipped,
            vec![
                (w[0], SkipReason::ZeroShare),
                (w[1], SkipReason::ZeroShare),
                (w[2], SkipReason::ZeroShare)
            ]
        );
    }

    #[test]
    fn the_old_services_examples_are_exact_now() {
        let w = wallets_by_text(3);
        // Old: $300 over 500/300/200 → 150/90/60 (right by luck); $100 over three equal → 33 ×3
        // with $1 lost. Now: 33.34/33.33/33.33 and nothing lost.
        let holders = [holder(w[0], 500), holder(w[1], 300), holder(w[2], 200)];
        let a = allocate(&input(
            DistributionMode::WeightedByHoldings,
            300 * DOLLAR,
            &holders,
        ))
        .unwrap();
        assert_eq!(
            granted(&a),
            vec![
                (w[0], 150 * DOLLAR),
                (w[1], 90 * DOLLAR),
                (w[2], 60 * DOLLAR)
            ]
        );
        let holders = [holder(w[0], 10), holder(w[1], 10), holder(w[2], 10)];
        let a = allocate(&input(
            DistributionMode::TopNHolders { n: 3 },
            100 * DOLLAR,
            &holders,
        ))
        .unwrap();
        assert_eq!(a.allocated_micro_usd, 100 * DOLLAR);
        assert_eq!(a.grants[0].grant_micro_usd, 33_340_000);
    }

    #[test]
    fn weighted_by_holdings_splits_by_balance_with_largest_remainders() {
        let w = wallets_by_text(3);
        // $1.00 over 6:3:1 (W = 10) → exactly 60/30/10 cents.
        let holders = [holder(w[0], 1), holder(w[1], 3), holder(w[2], 6)];
        let a = allocate(&input(
            DistributionMode::WeightedByHoldings,
            DOLLAR,
            &holders,
        ))
        .unwrap();
        assert_eq!(
            granted(&a),
            vec![(w[2], 60 * CENT), (w[1], 30 * CENT), (w[0], 10 * CENT)]
        );
        // 11 cents over 6:3:1: quotas 6.6, 3.3, 1.1 → floors 6,3,1 (10), one left → the 0.6.
        let a = allocate(&input(
            DistributionMode::WeightedByHoldings,
            11 * CENT,
            &holders,
        ))
        .unwrap();
        assert_eq!(
            granted(&a),
            vec![(w[2], 7 * CENT), (w[1], 3 * CENT), (w[0], CENT)]
        );
        assert_eq!(a.total_weight, 10);
    }

    #[test]
    fn top_n_takes_the_largest_balances_and_breaks_a_tie_at_the_cut_on_the_wallet() {
        let w = wallets_by_text(4);
        // Top 2 of 9, 5, 5, 1: 9 and the 5 with the smaller wallet (w[1] < w[2]).
        let holders = [
            holder(w[3], 9),
            holder(w[2], 5),
            holder(w[1], 5),
            holder(w[0], 1),
        ];
        let a = allocate(&input(
            DistributionMode::TopNHolders { n: 2 },
            14 * DOLLAR,
            &holders,
        ))
        .unwrap();
        assert_eq!(granted(&a), vec![(w[3], 9 * DOLLAR), (w[1], 5 * DOLLAR)]);
        assert_eq!(a.recipients_considered, 2);
        assert_eq!(a.holders_not_selected, 2);
        // N larger than the holder count: everyone.
        let a = allocate(&input(
            DistributionMode::TopNHolders { n: 10 },
            20 * DOLLAR,
            &holders,
        ))
        .unwrap();
        assert_eq!(a.grants.len(), 4);
        assert_eq!(a.allocated_micro_usd, 20 * DOLLAR);
    }

    #[test]
    fn balances_beyond_f64_precision_are_ordered_exactly() {
        let w = wallets_by_text(2);
        // 2^53 + 1 and 2^53 are equal as f64; the old service could rank them either way.
        let big = (1u64 << 53) + 1;
        let holders = [holder(w[0], big - 1), holder(w[1], big)];
        let a = allocate(&input(
            DistributionMode::TopNHolders { n: 1 },
            DOLLAR,
            &holders,
        ))
        .unwrap();
        assert_eq!(granted(&a), vec![(w[1], DOLLAR)]);
    }

    #[test]
    fn ties_break_on_the_base58_text_not_the_bytes() {
        // Find two wallets whose byte order and text order disagree, so that this fails if the
        // ranking ever falls back to `Pubkey`'s `Ord`.
        let (first, second) = (0..=255u8)
            .flat_map(|a| (0..=255u8).map(move |b| (wallet(a), wallet(b))))
            .find(|(x, y)| x < y && x.to_string() > y.to_string())
            .expect("byte and text order disagree somewhere");
        // `second` is smaller as text: it gets the odd cent and ranks first.
        let holders = [holder(first, 1), holder(second, 1)];
        let a = allocate(&input(DistributionMode::EqualSplit, 3 * CENT, &holders)).unwrap();
        assert_eq!(granted(&a), vec![(second, 2 * CENT), (first, CENT)]);
        let a = allocate(&input(
            DistributionMode::TopNHolders { n: 1 },
            CENT,
            &holders,
        ))
        .unwrap();
        assert_eq!(granted(&a), vec![(second, CENT)]);
    }

    #[test]
    fn zero_balances_take_no_slot_and_no_share() {
        let w = wallets_by_text(3);
        let holders = [holder(w[0], 0), holder(w[1], 4), holder(w[2], 0)];
        for mode in [
            DistributionMode::EqualSplit,
            DistributionMode::WeightedByHoldings,
            DistributionMode::TopNHolders { n: 1 },
        ] {
            let a = allocate(&input(mode, DOLLAR, &holders)).unwrap();
            assert_eq!(granted(&a), vec![(w[1], DOLLAR)], "{mode:?}");
            assert_eq!(a.holders_not_selected, 2);
        }
    }

    #[test]
    fn owner_only_pays_the_owner_whether_holding_or_not() {
        let w = wallets_by_text(2);
        let owner = wallet(200);
        let holders = [holder(w[0], 1_000), holder(w[1], 5)];
        let a = allocate(&input(
            DistributionMode::OwnerOnly,
            7 * DOLLAR + 5,
            &holders,
        ))
        .unwrap();
        assert_eq!(granted(&a), vec![(owner, 7 * DOLLAR)]);
        assert_eq!(a.grants[0].balance, 0);
        assert_eq!(a.carry_over.sub_cent_micro_usd, 5);
        assert_eq!(a.holders_not_selected, 2);
        // No holders at all is fine too.
        let a = allocate(&input(DistributionMode::OwnerOnly, DOLLAR, &[])).unwrap();
        assert_eq!(granted(&a), vec![(owner, DOLLAR)]);
        // Holding: the balance is recorded, the weight stays 1.
        let holders = [holder(w[0], 1_000), holder(owner, 42)];
        let a = allocate(&input(DistributionMode::OwnerOnly, DOLLAR, &holders)).unwrap();
        assert_eq!((a.grants[0].balance, a.grants[0].weight), (42, 1));
        assert_eq!(a.holders_not_selected, 1);
    }

    #[test]
    fn custom_list_uses_its_weights_and_ignores_the_holder_ranking() {
        let w = wallets_by_text(4);
        let holders = [holder(w[0], 1_000_000), holder(w[1], 7)];
        let custom = [(w[3], 1), (w[1], 3)];
        let mut i = input(DistributionMode::CustomList, 2 * DOLLAR, &holders);
        i.custom_weights = &custom;
        let a = allocate(&i).unwrap();
        assert_eq!(granted(&a), vec![(w[1], 150 * CENT), (w[3], 50 * CENT)]);
        assert_eq!(a.grants[0].balance, 7);
        assert_eq!(a.grants[1].balance, 0);
        assert_eq!(a.holders_not_selected, 1);
        // An empty list carries everything over.
        i.custom_weights = &[];
        let a = allocate(&i).unwrap();
        assert!(a.grants.is_empty());
        assert_eq!(a.carry_over.no_recipients_micro_usd, 2 * DOLLAR);
    }

    #[test]
    fn ceilings_cut_to_carry_over_without_redistribution() {
        let w = wallets_by_text(3);
        let holders = [holder(w[0], 2), holder(w[1], 1), holder(w[2], 1)];
        // $8 over 2:1:1 → 4/2/2; per-grant ceiling $3; w[1]'s key is at $9.50 of a $10 max.
        let limits = [(w[1], 950 * CENT)];
        let mut i = input(DistributionMode::WeightedByHoldings, 8 * DOLLAR, &holders);
        i.max_grant_micro_usd = 3 * DOLLAR;
        i.max_key_limit_micro_usd = 10 * DOLLAR;
        i.current_key_limits = &limits;
        let a = allocate(&i).unwrap();
        assert_eq!(
            granted(&a),
            vec![(w[0], 3 * DOLLAR), (w[1], 50 * CENT), (w[2], 2 * DOLLAR)]
        );
        assert_eq!(a.grants[0].limited_by, Some(Ceiling::Grant));
        assert_eq!(a.grants[1].limited_by, Some(Ceiling::Key));
        assert_eq!(a.grants[2].limited_by, None);
        assert_eq!(a.carry_over.grant_ceiling_micro_usd, DOLLAR);
        assert_eq!(a.carry_over.key_ceiling_micro_usd, 150 * CENT);
        assert_eq!(a.carry_over_micro_usd, 250 * CENT);
        assert_eq!(a.allocated_micro_usd + a.carry_over_micro_usd, 8 * DOLLAR);
    }

    #[test]
    fn a_key_at_or_above_the_maximum_is_skipped_not_an_error() {
        let w = wallets_by_text(2);
        let holders = [holder(w[0], 1), holder(w[1], 1)];
        // The operator lowered the maximum below w[0]'s current limit.
        let limits = [(w[0], 20 * DOLLAR)];
        let mut i = input(DistributionMode::EqualSplit, 2 * DOLLAR, &holders);
        i.max_key_limit_micro_usd = 10 * DOLLAR;
        i.current_key_limits = &limits;
        let a = allocate(&i).unwrap();
        assert_eq!(granted(&a), vec![(w[1], DOLLAR)]);
        assert_eq!(a.skipped[0].wallet, w[0]);
        assert_eq!(a.skipped[0].reason, SkipReason::Ceiling(Ceiling::Key));
        assert_eq!(a.carry_over.key_ceiling_micro_usd, DOLLAR);
    }

    #[test]
    fn ceilings_are_floored_to_whole_cents() {
        let w = wallets_by_text(1);
        let holders = [holder(w[0], 1)];
        let limits = [(w[0], 50_001)]; // headroom $0.049999 under a $0.10 max → 4 cents
        let mut i = input(DistributionMode::EqualSplit, DOLLAR, &holders);
        i.max_key_limit_micro_usd = 10 * CENT;
        i.current_key_limits = &limits;
        let a = allocate(&i).unwrap();
        assert_eq!(granted(&a), vec![(w[0], 4 * CENT)]);
        assert_eq!(a.carry_over_micro_usd, 96 * CENT);
    }

    #[test]
    fn shares_below_the_minimum_are_carried_over_never_zero_dollar_keys() {
        let w = wallets_by_text(3);
        // 10 cents over 90:9:1 → 9, 0.9→1, 0.1→0 (floors 9,0,0; one cent left to the 0.9).
        let holders = [holder(w[0], 90), holder(w[1], 9), holder(w[2], 1)];
        let a = allocate(&input(
            DistributionMode::WeightedByHoldings,
            10 * CENT,
            &holders,
        ))
        .unwrap();
        assert_eq!(granted(&a), vec![(w[0], 9 * CENT), (w[1], CENT)]);
        assert_eq!(a.skipped.len(), 1);
        assert_eq!(a.skipped[0].reason, SkipReason::ZeroShare);
        // With a 5-cent minimum the 1-cent share is carried over too.
        let mut i = input(DistributionMode::WeightedByHoldings, 10 * CENT, &holders);
        i.min_grant_micro_usd = 5 * CENT;
        let a = allocate(&i).unwrap();
        assert_eq!(granted(&a), vec![(w[0], 9 * CENT)]);
        assert_eq!(a.skipped[0].reason, SkipReason::BelowMinimum);
        assert_eq!(a.carry_over.below_minimum_micro_usd, CENT);
        assert_eq!(a.carry_over_micro_usd, CENT);
    }

    #[test]
    fn sub_cent_micro_dollars_and_the_pool_cap_are_carried_over() {
        let w = wallets_by_text(2);
        let holders = [holder(w[0], 1), holder(w[1], 1)];
        // $5.012345 → 501 cents split 251/250, 2_345 micro-USD carried.
        let a = allocate(&input(DistributionMode::EqualSplit, 5_012_345, &holders)).unwrap();
        assert_eq!(granted(&a), vec![(w[0], 251 * CENT), (w[1], 250 * CENT)]);
        assert_eq!(a.carry_over_micro_usd, 2_345);
        assert_eq!(a.carry_over.sub_cent_micro_usd, 2_345);
        // Pool headroom $1.005: $3.999 of the budget waits for the pool; 0.5 cents sub-cent.
        let mut i = input(DistributionMode::EqualSplit, 5 * DOLLAR, &holders);
        i.pool_headroom_micro_usd = Some(1_005_000);
        let a = allocate(&i).unwrap();
        assert_eq!(a.distributable_micro_usd, 1_005_000);
        assert_eq!(granted(&a), vec![(w[0], 50 * CENT), (w[1], 50 * CENT)]);
        assert_eq!(a.carry_over.pool_cap_micro_usd, 3_995_000);
        assert_eq!(a.carry_over.sub_cent_micro_usd, 5_000);
        // An over-promised pool grants nothing.
        i.pool_headroom_micro_usd = Some(-7);
        let a = allocate(&i).unwrap();
        assert!(a.grants.is_empty());
        assert_eq!(a.carry_over_micro_usd, 5 * DOLLAR);
    }

    #[test]
    fn no_holders_or_no_budget_grant_nothing() {
        let a = allocate(&input(
            DistributionMode::WeightedByHoldings,
            3 * DOLLAR,
            &[],
        ))
        .unwrap();
        assert!(a.grants.is_empty() && a.skipped.is_empty());
        assert_eq!(a.carry_over.no_recipients_micro_usd, 3 * DOLLAR);
        assert_eq!(a.carry_over_micro_usd, 3 * DOLLAR);
        let holders = [holder(wallet(1), 5)];
        let a = allocate(&input(DistributionMode::EqualSplit, 0, &holders)).unwrap();
        assert!(a.grants.is_empty());
        assert_eq!(a.carry_over_micro_usd, 0);
        assert_eq!(a.skipped[0].reason, SkipReason::ZeroShare);
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let holders: Vec<Holder> = (1..=255)
            .map(|i| holder(wallet(i), u64::MAX - u64::from(i)))
            .collect();
        let a = allocate(&input(
            DistributionMode::WeightedByHoldings,
            i64::MAX,
            &holders,
        ))
        .unwrap();
        assert_eq!(a.allocated_micro_usd + a.carry_over_micro_usd, i64::MAX);
        assert_eq!(a.carry_over.sub_cent_micro_usd, i64::MAX % CENT);
    }

    #[test]
    fn invalid_inputs_are_named() {
        let w = wallets_by_text(2);
        let holders = [holder(w[0], 1), holder(w[1], 1)];
        let mut i = input(DistributionMode::EqualSplit, -1, &holders);
        assert_eq!(
            allocate(&i),
            Err(DistributionError::Negative {
                what: "budget",
                value: -1
            })
        );
        i.budget_micro_usd = DOLLAR;
        i.max_grant_micro_usd = -5;
        assert!(matches!(
            allocate(&i),
            Err(DistributionError::Negative {
                what: "per-grant ceiling",
                ..
            })
        ));
        i.max_grant_micro_usd = DOLLAR;
        i.min_grant_micro_usd = -1;
        assert!(matches!(
            allocate(&i),
            Err(DistributionError::Negative { .. })
        ));
        i.min_grant_micro_usd = 0;
        let limits = [(w[0], -1)];
        i.current_key_limits = &limits;
        assert!(matches!(
            allocate(&i),
            Err(DistributionError::NegativeKeyLimit { .. })
        ));

        let dup = [holder(w[0], 1), holder(w[0], 2)];
        let d = input(DistributionMode::EqualSplit, DOLLAR, &dup);
        assert_eq!(
            allocate(&d),
            Err(DistributionError::DuplicateWallet {
                list: "holders",
                wallet: w[0]
            })
        );

        let custom = [(w[0], 3), (w[1], 0)];
        let mut c = input(DistributionMode::CustomList, DOLLAR, &holders);
        c.custom_weights = &custom;
        assert_eq!(allocate(&c), Err(DistributionError::ZeroWeight(w[1])));
        // A stale list does not fail another mode.
        c.mode = DistributionMode::EqualSplit;
        assert!(allocate(&c).is_ok());
        let custom = [(w[0], 3), (w[0], 1)];
        c.custom_weights = &custom;
        c.mode = DistributionMode::CustomList;
        assert!(matches!(
            allocate(&c),
            Err(DistributionError::DuplicateWallet { .. })
        ));

        let t = input(DistributionMode::TopNHolders { n: 0 }, DOLLAR, &holders);
        assert_eq!(allocate(&t), Err(DistributionError::InvalidTopN(0)));
    }

    #[test]
    fn modes_round_trip_through_their_stored_text() {
        for mode in [
            DistributionMode::OwnerOnly,
            DistributionMode::TopNHolders { n: 7 },
            DistributionMode::EqualSplit,
            DistributionMode::WeightedByHoldings,
            DistributionMode::CustomList,
        ] {
            assert_eq!(DistributionMode::from_db(mode.as_str(), 7), Ok(mode));
        }
        assert_eq!(
            DistributionMode::from_db("TOP_N_HOLDERS", 0),
            Err(DistributionError::InvalidTopN(0))
        );
        assert_eq!(
            DistributionMode::from_db("TOP_N_HOLDERS", i64::from(u32::MAX) + 1),
            Err(DistributionError::InvalidTopN(i64::from(u32::MAX) + 1))
        );
        assert!(DistributionMode::from_db("EQUAL_SPLIT", -3).is_ok());
        assert!(matches!(
            DistributionMode::from_db("top_n_holders", 5),
            Err(DistributionError::UnknownMode(_))
        ));
    }

    #[test]
    fn allowances_that_fit_the_pool_are_unchanged() {
        let w = wallets_by_text(2);
        let s = scale_allowances(&[(w[1], 3 * DOLLAR), (w[0], DOLLAR)], 4 * DOLLAR, CENT).unwrap();
        assert!(!s.scaled);
        assert_eq!(s.granted_micro_usd, 4 * DOLLAR);
        assert_eq!(s.cut_micro_usd, 0);
        assert_eq!(s.allowances[0].wallet, w[1]);
        assert_eq!(s.allowances[0].scaled_micro_usd, 3 * DOLLAR);
    }

    #[test]
    fn allowances_scale_down_proportionally_in_cents() {
        let w = wallets_by_text(3);
        // $6 / $3 / $1 (Σ $10) into a $5.005 pool: 500 cents by 600:300:100 → 300/150/50.
        let s = scale_allowances(
            &[(w[0], DOLLAR), (w[1], 3 * DOLLAR), (w[2], 6 * DOLLAR)],
            5_005_000,
            0,
        )
        .unwrap();
        assert!(s.scaled);
        let scaled: Vec<(Pubkey, i64)> = s
            .allowances
            .iter()
            .map(|a| (a.wallet, a.scaled_micro_usd))
            .collect();
        assert_eq!(
            scaled,
            vec![(w[2], 3 * DOLLAR), (w[1], 150 * CENT), (w[0], 50 * CENT)]
        );
        assert_eq!(s.cut_micro_usd, 5 * DOLLAR);
        // 10 cents over three $1 allowances → 4/3/3; a 4-cent minimum zeroes the 3s.
        let s = scale_allowances(
            &[(w[2], DOLLAR), (w[1], DOLLAR), (w[0], DOLLAR)],
            10 * CENT,
            4 * CENT,
        )
        .unwrap();
        let scaled: Vec<i64> = s.allowances.iter().map(|a| a.scaled_micro_usd).collect();
        assert_eq!(scaled, vec![4 * CENT, 0, 0]);
        assert_eq!(s.allowances[0].wallet, w[0]);
        assert_eq!(s.granted_micro_usd + s.cut_micro_usd, 3 * DOLLAR);
        // Negative headroom: everything to zero.
        let s = scale_allowances(&[(w[0], DOLLAR)], -1, 0).unwrap();
        assert_eq!(s.granted_micro_usd, 0);
    }

    #[test]
    fn allowances_must_be_whole_non_negative_cents_and_unique() {
        let w = wallets_by_text(1);
        assert!(matches!(
            scale_allowances(&[(w[0], 12_345)], DOLLAR, 0),
            Err(DistributionError::NotWholeCents { .. })
        ));
        assert!(matches!(
            scale_allowances(&[(w[0], -CENT)], DOLLAR, 0),
            Err(DistributionError::Negative { .. })
        ));
        assert!(matches!(
            scale_allowances(&[(w[0], CENT), (w[0], CENT)], DOLLAR, 0),
            Err(DistributionError::DuplicateWallet { .. })
        ));
    }

    // ---- properties -------------------------------------------------------------------------

    /// Balances that tie often (small) and that stress u128 intermediates (near u64::MAX).
    fn balance() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..4,
            0u64..1_000,
            any::<u64>(),
            (u64::MAX - 10)..=u64::MAX
        ]
    }

    fn wallets(max: usize) -> impl Strategy<Value = Vec<Pubkey>> {
        // A BTreeSet keeps generated cases reproducible (a HashSet's order is seeded per run).
        prop::collection::btree_set(any::<[u8; 32]>(), 0..=max)
            .prop_map(|set| set.into_iter().map(Pubkey::new_from_array).collect())
    }

    fn mode() -> impl Strategy<Value = DistributionMode> {
        prop_oneof![
            Just(DistributionMode::OwnerOnly),
            (1u32..=40).prop_map(|n| DistributionMode::TopNHolders { n }),
            Just(DistributionMode::EqualSplit),
            Just(DistributionMode::WeightedByHoldings),
            Just(DistributionMode::CustomList),
        ]
    }

    /// A ceiling: usually absent (huge), else anything up to $10,000 in micro-USD, cents or not.
    fn ceiling() -> impl Strategy<Value = i64> {
        prop_oneof![Just(i64::MAX), 0i64..=10_000_000_000]
    }

    /// One whole scenario; the vectors hold every wallet once.
    #[derive(Clone, Debug)]
    struct Case {
        mode: DistributionMode,
        budget: i64,
        headroom: Option<i64>,
        holders: Vec<Holder>,
        owner: Pubkey,
        custom: Vec<(Pubkey, u64)>,
        max_grant: i64,
        max_key_limit: i64,
        limits: Vec<(Pubkey, i64)>,
        min_grant: i64,
    }

    impl Case {
        fn input(&self) -> AllocationInput<'_> {
            AllocationInput {
                mode: self.mode,
                budget_micro_usd: self.budget,
                pool_headroom_micro_usd: self.headroom,
                holders: &self.holders,
                owner_wallet: self.owner,
                custom_weights: &self.custom,
                max_grant_micro_usd: self.max_grant,
                max_key_limit_micro_usd: self.max_key_limit,
                current_key_limits: &self.limits,
                min_grant_micro_usd: self.min_grant,
            }
        }

        /// Without ceilings or minimum, so that shares can be compared with weights directly.
        fn uncapped(mut self) -> Self {
            self.headroom = None;
            self.max_grant = i64::MAX;
            self.max_key_limit = i64::MAX;
            self.limits.clear();
            self.min_grant = 0;
            self
        }
    }

    fn case() -> impl Strategy<Value = Case> {
        (wallets(300), wallets(40)).prop_flat_map(|(holder_wallets, custom_wallets)| {
            let n = holder_wallets.len();
            let c = custom_wallets.len();
            (
                mode(),
                // Small budgets too, where shares are a few cents and the minimum bites.
                prop_oneof![0i64..=1_000_000_000_000, 0i64..=10_000_000],
                prop_oneof![Just(None), (-1_000i64..=1_000_000_000_000).prop_map(Some)],
                prop::collection::vec(balance(), n),
                // The owner: a holder (when there is one) or a stranger.
                prop_oneof![Just(None), (0..n.max(1)).prop_map(Some)],
                prop::collection::vec(prop_oneof![1u64..4, 1u64..=u64::MAX], c),
                ceiling(),
                ceiling(),
                // Which holders have a key, and its current limit.
                prop::collection::vec(
                    prop_oneof![Just(None), (0i64..=20_000_000_000).prop_map(Some)],
                    n,
                ),
                prop_oneof![Just(0i64), 0i64..=100_000],
                Just((holder_wallets, custom_wallets)),
            )
                .prop_map(
                    |(
                        mode,
                        budget,
                        headroom,
                        balances,
                        owner,
                        weights,
                        max_grant,
                        max_key_limit,
                        limits,
                        min_grant,
                        (holder_wallets, custom_wallets),
                    )| {
                        let owner = owner
                            .and_then(|i| holder_wallets.get(i).copied())
                            .unwrap_or(Pubkey::new_from_array([0xEE; 32]));
                        Case {
                            mode,
                            budget,
                            headroom,
                            holders: holder_wallets
                                .iter()
                                .zip(&balances)
                                .map(|(w, b)| holder(*w, *b))
                                .collect(),
                            owner,
                            // Custom wallets overlap the holders sometimes: reuse the first few.
                            custom: custom_wallets
                                .iter()
                                .enumerate()
                                .map(|(i, w)| {
                                    if i % 3 == 0 {
                                        holder_wallets.get(i).copied().unwrap_or(*w)
                                    } else {
                                        *w
                                    }
                                })
                                .collect::<std::collections::BTreeSet<_>>()
                                .into_iter()
                                .zip(weights)
                                .collect(),
                            max_grant,
                            max_key_limit,
                            limits: holder_wallets
                                .iter()
                                .zip(limits)
                                .filter_map(|(w, l)| l.map(|l| (*w, l)))
                                .collect(),
                            min_grant,
                        }
                    },
                )
        })
    }

    /// The same case with every list in another order.
    fn shuffled(c: Case) -> impl Strategy<Value = (Case, Case)> {
        (
            Just(c.holders.clone()).prop_shuffle(),
            Just(c.custom.clone()).prop_shuffle(),
            Just(c.limits.clone()).prop_shuffle(),
        )
            .prop_map(move |(holders, custom, limits)| {
                let other = Case {
                    holders,
                    custom,
                    limits,
                    ..c.clone()
                };
                (c.clone(), other)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn grants_plus_carry_over_equal_the_budget_and_respect_every_ceiling(c in case()) {
            let a = allocate(&c.input()).unwrap();
            let sum: i64 = a.grants.iter().map(|g| g.grant_micro_usd).sum();
            prop_assert_eq!(sum, a.allocated_micro_usd);
            prop_assert_eq!(a.allocated_micro_usd + a.carry_over_micro_usd, c.budget);
            prop_assert_eq!(a.carry_over.total(), a.carry_over_micro_usd);
            if let Some(h) = c.headroom {
                prop_assert!(a.allocated_micro_usd <= h.max(0));
            }
            let limits: HashMap<Pubkey, i64> = c.limits.iter().copied().collect();
            for g in &a.grants {
                prop_assert!(g.grant_micro_usd > 0);
                prop_assert_eq!(g.grant_micro_usd % CENT, 0);
                prop_assert!(g.grant_micro_usd >= c.min_grant);
                prop_assert!(g.grant_micro_usd <= g.share_micro_usd);
                prop_assert!(g.grant_micro_usd <= c.max_grant);
                let current = limits.get(&g.wallet).copied().unwrap_or(0);
                prop_assert!(current + g.grant_micro_usd <= c.max_key_limit);
            }
            for s in &a.skipped {
                prop_assert_eq!(s.share_micro_usd % CENT, 0);
            }
            // Shares (before ceilings) add up to the distributable whole cents when anyone
            // has weight.
            let shares: i64 = a.grants.iter().map(|g| g.share_micro_usd)
                .chain(a.skipped.iter().map(|s| s.share_micro_usd)).sum();
            let cents = a.distributable_micro_usd - a.distributable_micro_usd % CENT;
            prop_assert_eq!(shares, if a.total_weight > 0 { cents } else { 0 });
            prop_assert_eq!(a.recipients_considered, a.grants.len() + a.skipped.len());
        }

        #[test]
        fn the_input_order_never_matters((one, other) in case().prop_flat_map(shuffled)) {
            prop_assert_eq!(allocate(&one.input()).unwrap(), allocate(&other.input()).unwrap());
        }

        #[test]
        fn shares_follow_weights_within_a_cent(c in case()) {
            let c = c.uncapped();
            let a = allocate(&c.input()).unwrap();
            let all: Vec<(u64, i64, i64)> = a.grants.iter()
                .map(|g| (g.weight, g.share_micro_usd, g.grant_micro_usd))
                .chain(a.skipped.iter().map(|s| (s.weight, s.share_micro_usd, 0)))
                .collect();
            let cents = u128::try_from(a.distributable_micro_usd / CENT).unwrap();
            for (weight, share, _) in &all {
                // Hamilton: ⌊quota⌋ ≤ share ≤ ⌊quota⌋ + 1, quota = cents·w/W.
                let floor = cents * u128::from(*weight) / a.total_weight;
                let got = u128::try_from(share / CENT).unwrap();
                prop_assert!(got == floor || got == floor + 1, "{} vs quota floor {}", got, floor);
            }
            // Monotone: the list is in weight order, so shares and grants never increase.
            for pair in all.windows(2) {
                prop_assert!(pair[0].0 >= pair[1].0);
                prop_assert!(pair[0].1 >= pair[1].1, "share {} < {}", pair[0].1, pair[1].1);
                prop_assert!(pair[0].2 >= pair[1].2);
            }
        }

        #[test]
        fn each_mode_picks_its_recipients(c in case()) {
            let a = allocate(&c.input()).unwrap();
            let recipients: Vec<(Pubkey, u64)> = a.grants.iter().map(|g| (g.wallet, g.weight))
                .chain(a.skipped.iter().map(|s| (s.wallet, s.weight))).collect();
            let positive: Vec<&Holder> = c.holders.iter().filter(|h| h.amount > 0).collect();
            match c.mode {
                DistributionMode::OwnerOnly => {
                    prop_assert_eq!(recipients, vec![(c.owner, 1)]);
                }
                DistributionMode::TopNHolders { n } => {
                    prop_assert!(a.grants.len() <= n as usize);
                    prop_assert_eq!(recipients.len(), positive.len().min(n as usize));
                    // Nobody left out ranks before anybody picked: a smaller balance, or the same
                    // balance and a wallet later in base58 text.
                    let picked: HashSet<Pubkey> = recipients.iter().map(|(w, _)| *w).collect();
                    let worst = recipients.iter().min_by(|a, b| {
                        a.1.cmp(&b.1).then_with(|| b.0.to_string().cmp(&a.0.to_string()))
                    });
                    if let Some((last, least)) = worst {
                        for h in positive.iter().filter(|h| !picked.contains(&h.wallet)) {
                            prop_assert!(
                                h.amount < *least
                                    || (h.amount == *least
                                        && h.wallet.to_string() > last.to_string())
                            );
                        }
                    }
                }
                DistributionMode::EqualSplit => {
                    prop_assert_eq!(recipients.len(), positive.len());
                    prop_assert!(recipients.iter().all(|(_, w)| *w == 1));
                }
                DistributionMode::WeightedByHoldings => {
                    prop_assert_eq!(recipients.len(), positive.len());
                }
                DistributionMode::CustomList => {
                    let mut got = recipients.clone();
                    let mut want = c.custom.clone();
                    got.sort();
                    want.sort();
                    prop_assert_eq!(got, want);
                }
            }
        }

        #[test]
        fn scaled_allowances_fit_the_pool_exactly(
            (one, other, headroom, min) in (wallets(300), 0i64..=1_000_000_000_000, 0i64..=100_000)
                .prop_flat_map(|(ws, headroom, min)| {
                    let n = ws.len();
                    (Just(ws), prop::collection::vec(0i64..=1_000_000, n), Just(headroom), Just(min))
                })
                .prop_flat_map(|(ws, cents, headroom, min)| {
                    let list: Vec<(Pubkey, i64)> =
                        ws.into_iter().zip(cents.into_iter().map(|c| c * CENT)).collect();
                    (Just(list.clone()), Just(list).prop_shuffle(), Just(headroom), Just(min))
                })
        ) {
            let s = scale_allowances(&one, headroom, min).unwrap();
            prop_assert_eq!(&s, &scale_allowances(&other, headroom, min).unwrap());
            let requested: i64 = one.iter().map(|(_, v)| v).sum();
            prop_assert_eq!(s.requested_micro_usd, requested);
            prop_assert_eq!(s.granted_micro_usd + s.cut_micro_usd, requested);
            prop_assert_eq!(
                s.granted_micro_usd,
                s.allowances.iter().map(|a| a.scaled_micro_usd).sum::<i64>()
            );
            prop_assert!(s.granted_micro_usd <= headroom);
            prop_assert_eq!(s.scaled, requested > headroom);
            for a in &s.allowances {
                prop_assert_eq!(a.scaled_micro_usd % CENT, 0);
                prop_assert!(a.scaled_micro_usd <= a.requested_micro_usd);
                prop_assert!(a.scaled_micro_usd == 0 || a.scaled_micro_usd >= min);
                if !s.scaled && a.requested_micro_usd >= min {
                    prop_assert_eq!(a.scaled_micro_usd, a.requested_micro_usd);
                }
            }
            if s.scaled && min == 0 {
                // Nothing but the pool's sub-cent rest is left unused.
                prop_assert_eq!(s.granted_micro_usd, headroom - headroom % CENT);
            }
        }
    }
}
