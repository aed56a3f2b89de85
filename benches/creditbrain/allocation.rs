//! Figure 2: the distribution math (`distribution::allocate`) over 1,000,000 holders in every
//! mode, time and peak memory, against the work no implementation can skip: one base58 encoding
//! of every wallet (the documented tie-break order is base58 text order) and one sort of the
//! recipients; and, for memory, the size of the result it must return.

use creditbrain_actors::chain::helius::Holder;
use creditbrain_actors::distribution::{AllocationInput, DistributionMode, Grant, allocate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use solana_sdk::pubkey::Pubkey;

use crate::harness::{detail, figure, mib, millis, peak_rss, repeat, reset_peak, rss};

const MICRO_USD: i64 = 1_000_000;

pub fn run() {
    let count: usize = crate::env_or("BENCH_ALLOCATION_HOLDERS", 1_000_000);
    let runs: usize = crate::env_or("BENCH_ALLOCATION_RUNS", 5);
    let mut rng = StdRng::seed_from_u64(11);
    let holders: Vec<Holder> = (0..count)
        .map(|_| Holder {
            wallet: Pubkey::new_from_array(rng.r#gen()),
            // The sandbox world's long tail, in base units of a 6-decimal token.
            amount: match rng.gen_range(0..100) {
                0..=69 => rng.gen_range(1..5_000u64),
                70..=94 => rng.gen_range(5_000..200_000u64),
                _ => rng.gen_range(200_000..5_000_000u64),
            } * 1_000_000
                + rng.gen_range(0..1_000_000),
        })
        .collect();
    // Steady state: every holder already has a key with some limit (the credits-mode input).
    let key_limits: Vec<(Pubkey, i64)> = holders
        .iter()
        .map(|holder| (holder.wallet, rng.gen_range(0..50) * 10_000))
        .collect();
    let custom: Vec<(Pubkey, u64)> = holders
        .iter()
        .map(|holder| (holder.wallet, rng.gen_range(1..1_000u64)))
        .collect();
    let owner = Pubkey::new_from_array(rng.r#gen());
    let owner_key = [(owner, 50 * 10_000)];
    detail(format!(
        "{count} holders, every one with a key; budget $50,000, per-grant ceiling $10, key \
         ceiling $100, minimum grant $0.01; {runs} timed runs after one warm-up; input {:.0} MiB \
         (holders) + {:.0} MiB (key limits) + {:.0} MiB (custom list)",
        mib((count * size_of::<Holder>()) as u64),
        mib((count * size_of::<(Pubkey, i64)>()) as u64),
        mib((count * size_of::<(Pubkey, u64)>()) as u64),
    ));

    // The floor: base58 of every wallet and one sort by (weight desc, base58 asc).
    let (floor, _) = repeat(1, runs, |_| {
        let mut keyed: Vec<(u64, String)> = holders
            .iter()
            .map(|holder| (holder.amount, holder.wallet.to_string()))
            .collect();
        keyed.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        keyed.len()
    });
    detail(format!(
        "floor (base58 of {count} wallets + one sort): min {:.0} ms, median {:.0} ms",
        millis(floor.min),
        millis(floor.median)
    ));
    // The whole contract's floor: also the uniqueness checks `allocate` must make (holders, key
    // limits: one hash map each) and one key-limit lookup per recipient.
    let (contract, _) = repeat(1, runs, |_| {
        let balances: std::collections::HashMap<Pubkey, u64> =
            holders.iter().map(|h| (h.wallet, h.amount)).collect();
        let limits: std::collections::HashMap<Pubkey, i64> = key_limits.iter().copied().collect();
        let mut keyed: Vec<(u64, String)> = holders
            .iter()
            .map(|holder| (holder.amount, holder.wallet.to_string()))
            .collect();
        keyed.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let found = holders
            .iter()
            .filter(|holder| limits.contains_key(&holder.wallet))
            .count();
        (balances.len(), found, keyed.len())
    });
    detail(format!(
        "contract floor (that + a uniqueness map of the holders and of the key limits + one \
         key-limit lookup per recipient): min {:.0} ms, median {:.0} ms",
        millis(contract.min),
        millis(contract.median)
    ));

    let modes: [(&str, DistributionMode, bool); 5] = [
        ("owner_only", DistributionMode::OwnerOnly, false),
        ("top_n_100", DistributionMode::TopNHolders { n: 100 }, true),
        ("equal_split", DistributionMode::EqualSplit, true),
        (
            "weighted_by_holdings",
            DistributionMode::WeightedByHoldings,
            true,
        ),
        ("custom_list", DistributionMode::CustomList, false),
    ];
    for (name, mode, uses_snapshot) in modes {
        // As the daemon calls it: OWNER_ONLY and CUSTOM_LIST runs fetch no holder snapshot.
        let input = AllocationInput {
            mode,
            budget_micro_usd: 50_000 * MICRO_USD,
            pool_headroom_micro_usd: Some(1_000_000 * MICRO_USD),
            holders: if uses_snapshot { &holders } else { &[] },
            owner_wallet: owner,
            custom_weights: if mode == DistributionMode::CustomList {
                &custom
            } else {
                &[]
            },
            max_grant_micro_usd: 10 * MICRO_USD,
            max_key_limit_micro_usd: 100 * MICRO_USD,
            // The strategy's keys: the owner's alone in OWNER_ONLY, about N in TOP_N_HOLDERS
            // (only recipients get keys), every recipient's otherwise.
            current_key_limits: match mode {
                DistributionMode::OwnerOnly => &owner_key,
                DistributionMode::TopNHolders { n } => &key_limits[..n as usize],
                _ => &key_limits,
            },
            min_grant_micro_usd: 10_000,
        };
        // Hand freed memory back first, or the previous mode's freed pages (still resident)
        // would absorb this one's peak.
        // SAFETY: malloc_trim only releases free heap memory; nothing refers to it.
        unsafe {
            libc::malloc_trim(0);
        }
        let base = rss();
        let peak_reset = reset_peak();
        let first = allocate(&input).expect("allocation");
        let peak = peak_rss().saturating_sub(base);
        let output = (first.grants.capacity() * size_of::<Grant>()
            + first.skipped.capacity() * size_of::<creditbrain_actors::distribution::Skipped>())
            as u64;
        let recipients = first.recipients_considered;
        let grants = first.grants.len();
        drop(first);
        let (timing, _) = repeat(0, runs, |_| {
            allocate(&input).expect("allocation").recipients_considered
        });
        let bound = if recipients > 1 {
            floor.median
        } else {
            timing.median
        };
        if recipients > 1 && uses_snapshot && mode != (DistributionMode::TopNHolders { n: 100 }) {
            figure(
                &format!("allocation_1m_{name}_time_vs_contract_floor"),
                millis(timing.median),
                millis(contract.median),
                "ms",
                "bound: the contract floor above",
            );
        }
        figure(
            &format!("allocation_1m_{name}_time"),
            millis(timing.median),
            millis(bound),
            "ms",
            &format!(
                "median of {}, min {:.0} ms; {recipients} recipients, {grants} grants; bound: \
                 the base58 + sort floor{}",
                timing.runs,
                millis(timing.min),
                if recipients > 1 {
                    ""
                } else {
                    " (n/a: one recipient)"
                }
            ),
        );
        if peak_reset {
            figure(
                &format!("allocation_1m_{name}_peak_memory"),
                mib(peak),
                mib(output.max(1)),
                "MiB",
                "peak resident growth during allocate(); bound: the result it returns",
            );
        } else {
            detail("peak memory not measured: /proc/self/clear_refs refused");
        }
    }
}
