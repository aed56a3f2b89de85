//! Allowance mode and the pool across runs, end to end on the sandbox (DESIGN §1 I1, §5): an
//! allowance run sets monthly limits equal to its allowances, the next run recomputes them from
//! the trailing month's income and sets them absolutely (a dropped holder's limit goes to 0,
//! income older than a month drops out), a short pool scales every allowance down in proportion,
//! a dry run changes nothing; two strategies' runs never grant the same money, whether the other
//! run is still provisioning or failed there and is resumed later; a failed allowance run that a
//! later run of its strategy superseded applies nothing when resumed.
//!
//! Holders are seeded the same in every sandbox (their wallets are random): figures are compared
//! across sandboxes, wallets only within one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use creditbrain::config::Config;
use creditbrain::daemon::RunningDaemon;
use creditbrain::sandbox::faults::{Fault, FaultMode, FaultRule, Latency};
use creditbrain::sandbox::ledger::LedgerOptions;
use creditbrain::sandbox::openrouter::LimitReset;
use creditbrain::sandbox::world::{LAMPORTS_PER_SOL, WorldOptions};
use creditbrain::sandbox::{Sandbox, SandboxOptions};
use creditbrain_actors::run::{CoordinatorMsg, resume_run, start_run};
use creditbrain_actors::store::Store;
use creditbrain_actors::store::allocations::{Allocation, AllocationStatus};
use creditbrain_actors::store::runs::{Run, RunState, TriggeredBy};
use creditbrain_actors::store::strategies::NewStrategy;
use creditbrain_actors::strategy::StrategyPatch;
use ractor::ActorRef;
use solana_sdk::signature::{Keypair, Signer};

use crate::support::eventually;

const CALL: Duration = Duration::from_secs(10);
const RUN_LIMIT: Duration = Duration::from_secs(90);
const DOLLAR: i64 = 1_000_000;
const CENT: i64 = 10_000;
const CREATE_KEY: &str = "POST /api/v1/keys";
/// 10 % of the balance is held back in every strategy here.
const RESERVE_BPS: i64 = 1_000;

struct World {
    /// The OpenRouter account's credits, micro-USD.
    credits_micro_usd: i64,
    /// USDC base units per SOL the swap pays: small keeps the income (and the allowances) small.
    usdc_per_sol: u64,
}

struct Harness {
    sandbox: Sandbox,
    _dir: tempfile::TempDir,
    daemon: RunningDaemon,
}

/// A strategy as the tests vary it.
struct Shape {
    /// `Some("monthly")` etc.: allowance mode; `None`: credits mode.
    reset: Option<&'static str>,
    top_n: i64,
    max_grant_micro_usd: i64,
}

impl Harness {
    async fn start(world: World) -> Self {
        let sandbox = Sandbox::start(SandboxOptions {
            world: WorldOptions {
                holders: 30,
                ..WorldOptions::default()
            },
            ledger: LedgerOptions {
                slot_duration: Duration::from_millis(20),
                ..LedgerOptions::default()
            },
            usdc_per_sol: world.usdc_per_sol,
            openrouter_credits_micro_usd: world.credits_micro_usd,
            ..SandboxOptions::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut vars = sandbox.daemon_vars();
        for (name, value) in [
            ("API_AUTH_TOKEN", "pipeline-allowance-token-0123456789"),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("KEY_LIMIT_RESET", "monthly"),
            ("HEALTH_PROBE_INTERVAL_SEC", "1"),
        ] {
            vars.insert(name.into(), value.into());
        }
        vars.insert(
            "DATABASE_PATH".into(),
            dir.path().join("allowance.db").display().to_string(),
        );
        vars.insert(
            "ADMIN_SOCKET_PATH".into(),
            dir.path().join("allowance.sock").display().to_string(),
        );
        let config = Config::from_vars(&vars).unwrap_or_else(|errors| panic!("{errors}"));
        let daemon = creditbrain::daemon::start(&config)
            .await
            .expect("daemon starts");
        Self {
            sandbox,
            _dir: dir,
            daemon,
        }
    }

    async fn strategy(&self, shape: Shape) -> String {
        self.store()
            .insert_strategy(&NewStrategy {
                owner_wallet: self.sandbox.world.signer.pubkey().to_string(),
                token_mint: self.sandbox.world.token_mint.to_string(),
                fee_source: "CLAIMABLE_POSITIONS".into(),
                threshold_lamports: LAMPORTS_PER_SOL as i64,
                slippage_bps: 50,
                distribution_mode: "TOP_N_HOLDERS".into(),
                top_n: shape.top_n,
                min_holding_base_units: "0".into(),
                max_grant_micro_usd: shape.max_grant_micro_usd,
                max_key_limit_micro_usd: 100 * DOLLAR,
                key_limit_reset: shape.reset.map(str::to_string),
                key_expiry_days: 365,
                reserve_bps: RESERVE_BPS,
                // Once a year: the scheduler stays out of the way.
                cron_schedule: "0 0 1 1 *".into(),
                status: "active".into(),
            })
            .await
            .unwrap()
            .strategy_id
    }

    fn store(&self) -> &Store {
        &self.daemon.handle.store
    }

    async fn coordinator(&self) -> ActorRef<CoordinatorMsg> {
        let slot = self.daemon.handle.coordinator.clone();
        eventually(CALL, || {
            let slot = slot.clone();
            async move { slot.get() }
        })
        .await
    }

    async fn start_run(&self, strategy_id: &str, dry_run: bool) -> String {
        let started = start_run(
            &self.coordinator().await,
            strategy_id,
            TriggeredBy::Manual,
            Some(dry_run),
            CALL,
        )
        .await
        .unwrap();
        assert_eq!(started.blocked_code, None);
        started.run_id
    }

    async fn run(&self, run_id: &str) -> Run {
        self.store().run(run_id).await.unwrap().unwrap()
    }

    async fn wait_for(&self, run_id: &str, done: impl Fn(&Run) -> bool) -> Run {
        let store = self.store().clone();
        eventually(RUN_LIMIT, || {
            let store = store.clone();
            let done = &done;
            async move {
                let run = store.run(run_id).await.unwrap().unwrap();
                done(&run).then_some(run)
            }
        })
        .await
    }

    async fn wait_for_end(&self, run_id: &str) -> Run {
        self.wait_for(run_id, |run| run.state.is_terminal()).await
    }

    async fn complete(&self, strategy_id: &str, dry_run: bool) -> Run {
        let run_id = self.start_run(strategy_id, dry_run).await;
        let run = self.wait_for_end(&run_id).await;
        assert_complete(&run);
        run
    }

    async fn resume_to_end(&self, run_id: &str) -> Run {
        resume_run(&self.coordinator().await, run_id, CALL)
            .await
            .unwrap_or_else(|error| panic!("resume {run_id}: {error}"));
        self.wait_for_end(run_id).await
    }

    /// New fees for the owner on a fresh launch: the next run has income.
    fn add_fees(&self, lamports: u64) {
        self.sandbox.bags.add_position(
            &self.sandbox.world.signer.pubkey(),
            &Keypair::new().pubkey(),
            lamports,
        );
    }

    fn fault(&self, route: &str, mode: Option<FaultMode>, latency_ms: Option<u64>) {
        self.sandbox.faults.add_rule(FaultRule {
            fake: "openrouter".into(),
            route: Some(route.into()),
            latency: latency_ms.map(|ms| Latency::Fixed { ms }),
            mode,
        });
    }

    async fn allocations(&self, run_id: &str) -> Vec<Allocation> {
        self.store().allocations_for_run(run_id).await.unwrap()
    }

    /// The details of the run's ALLOCATING audit row.
    async fn allocated_audit(&self, run_id: &str) -> serde_json::Value {
        self.store()
            .audit_for_run(run_id)
            .await
            .unwrap()
            .into_iter()
            .find(|entry| entry.action == "allocated" || entry.action == "pool_exhausted")
            .expect("the run allocated")
            .details
    }

    /// The OpenRouter account's balance and reserve as the fake has them.
    fn balance_and_reserve(&self) -> (i64, i64) {
        let (credits, usage) = self.sandbox.openrouter.credits();
        let balance = credits - usage;
        (balance, (balance * RESERVE_BPS + 9_999) / 10_000)
    }

    /// I1 on OpenRouter itself: what every key can still spend (an allowance key its whole limit,
    /// a credits key `limit − usage`) plus the reserve never exceeds the balance.
    fn assert_never_over_issued(&self) {
        let promised: i64 = self
            .sandbox
            .openrouter
            .keys()
            .iter()
            .map(|key| {
                let limit = key.limit_micro_usd.unwrap_or(i64::MAX / 4);
                if key.limit_reset.is_some() {
                    limit
                } else {
                    (limit - key.usage_micro_usd).max(0)
                }
            })
            .sum();
        let (balance, reserve) = self.balance_and_reserve();
        assert!(
            promised + reserve <= balance,
            "I1 broken on OpenRouter: promised {promised} + reserve {reserve} > balance {balance}"
        );
    }

    /// Each of the run's applied rows matches the OpenRouter key and the ledger; returns the
    /// OpenRouter limits by wallet.
    async fn assert_keys_match(&self, run: &Run, reset: Option<LimitReset>) {
        let keys = self.sandbox.openrouter.keys();
        for allocation in self.allocations(&run.run_id).await {
            assert_eq!(
                allocation.status,
                AllocationStatus::Applied,
                "{allocation:?}"
            );
            let hash = allocation.key_hash.as_ref().expect("applied to a key");
            let key = keys
                .iter()
                .find(|key| &key.hash == hash)
                .expect("the allocation's key is on OpenRouter");
            assert_eq!(
                key.limit_micro_usd,
                Some(allocation.grant_micro_usd),
                "the key's limit is the allowance, set absolutely"
            );
            assert_eq!(key.limit_reset, reset);
            let ledger = self.store().key_by_hash(hash).await.unwrap().unwrap();
            assert_eq!(ledger.limit_micro_usd, allocation.grant_micro_usd);
            assert_eq!(
                ledger.limit_reset.as_deref(),
                reset.map(|_| "monthly"),
                "the ledger knows the key resets"
            );
        }
    }

    /// Wallet → limit of every OpenRouter key of `strategy_id`.
    fn limits(&self, strategy_id: &str) -> BTreeMap<String, Option<i64>> {
        let prefix = format!("creditbrain-{strategy_id}-");
        self.sandbox
            .openrouter
            .keys()
            .into_iter()
            .filter_map(|key| {
                key.name
                    .strip_prefix(&prefix)
                    .map(|wallet| (wallet.to_string(), key.limit_micro_usd))
            })
            .collect()
    }

    async fn stop(self) {
        self.daemon.shutdown_trigger().trigger();
        self.daemon.wait().await.unwrap();
    }
}

fn assert_complete(run: &Run) {
    assert_eq!(
        run.state,
        RunState::Complete,
        "{:?} {:?} (failed in {:?})",
        run.error_code,
        run.error_detail,
        run.error_failed_state
    );
}

/// The run row balances (I2) and stays within its headroom.
fn assert_balanced(run: &Run, allocations: &[Allocation]) {
    let granted: i64 = allocations.iter().map(|a| a.grant_micro_usd).sum();
    assert_eq!(Some(granted), run.allocated_micro_usd);
    assert_eq!(
        granted + run.carry_out_micro_usd.unwrap(),
        run.budget_micro_usd.unwrap(),
        "Σ allowances + carry-out = budget"
    );
    assert!(
        granted <= run.headroom_micro_usd.unwrap(),
        "within the pool"
    );
    for allocation in allocations {
        assert_eq!(allocation.grant_micro_usd % CENT, 0, "whole cents");
    }
}

fn monthly() -> Shape {
    Shape {
        reset: Some("monthly"),
        top_n: 10,
        max_grant_micro_usd: 5 * DOLLAR,
    }
}

/// A monthly strategy: the first run's allowances are the keys' limits (reset monthly), within
/// the pool; the second, with more income and a smaller top N, recomputes every allowance from
/// both runs' income and sets it absolutely, and ends the dropped holders' allowances (limit 0);
/// once the first run's swap is older than a month its income no longer counts; a dry run
/// changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn allowances_are_recomputed_from_the_trailing_month_and_set_absolutely() {
    let harness = Harness::start(World {
        credits_micro_usd: 500 * DOLLAR,
        usdc_per_sol: 4_000_000,
    })
    .await;
    let strategy_id = harness.strategy(monthly()).await;
    let store = harness.store().clone();

    // First run: allowances split this run's income.
    let first = harness.complete(&strategy_id, false).await;
    let income_1 = first.swapped_usdc_base_units.unwrap() as i64;
    assert!(income_1 > 10 * DOLLAR, "income {income_1}");
    assert_eq!(
        first.budget_micro_usd,
        Some(income_1),
        "budget = the month's income"
    );
    assert_eq!(first.carry_in_micro_usd, Some(0));
    let rows_1 = harness.allocations(&first.run_id).await;
    assert_balanced(&first, &rows_1);
    assert_eq!(rows_1.len(), 10, "the top 10 each get an allowance");
    assert!(rows_1.iter().all(|row| row.grant_micro_usd > 0));
    assert!(
        rows_1.iter().all(|row| row.grant_micro_usd <= 5 * DOLLAR),
        "no allowance above the per-grant ceiling"
    );
    assert_eq!(first.keys_created, Some(10));
    harness
        .assert_keys_match(&first, Some(LimitReset::Monthly))
        .await;
    assert_eq!(harness.sandbox.openrouter.keys().len(), 10);
    let strategy = store.stored_strategy(&strategy_id).await.unwrap().unwrap();
    assert_eq!(
        strategy.carry_over_micro_usd, 0,
        "allowance runs leave the carry-over alone"
    );
    harness.assert_never_over_issued();

    // More income, and the top 5 only: every allowance recomputed from both runs' income.
    harness.add_fees(3 * LAMPORTS_PER_SOL);
    store
        .update_strategy(
            &strategy_id,
            &StrategyPatch {
                top_n: Some("5".into()),
                ..StrategyPatch::default()
            },
            1,
            "test",
        )
        .await
        .unwrap();
    let second = harness.complete(&strategy_id, false).await;
    let income_2 = second.swapped_usdc_base_units.unwrap() as i64;
    assert!(income_2 > 0);
    assert_eq!(
        second.budget_micro_usd,
        Some(income_1 + income_2),
        "the trailing month's income: both runs"
    );
    let rows_2 = harness.allocations(&second.run_id).await;
    assert_balanced(&second, &rows_2);
    let kept: BTreeSet<&str> = rows_2
        .iter()
        .filter(|row| row.grant_micro_usd > 0)
        .map(|row| row.holder_wallet.as_str())
        .collect();
    let ended: BTreeSet<&str> = rows_2
        .iter()
        .filter(|row| row.grant_micro_usd == 0)
        .map(|row| row.holder_wallet.as_str())
        .collect();
    assert_eq!(kept.len(), 5);
    let dropped: BTreeSet<&str> = rows_1
        .iter()
        .map(|row| row.holder_wallet.as_str())
        .filter(|wallet| !kept.contains(wallet))
        .collect();
    assert_eq!(ended, dropped, "every dropped holder's allowance ends");
    assert_eq!(
        second.keys_created,
        Some(0),
        "no new key for a holder who has one"
    );
    harness
        .assert_keys_match(&second, Some(LimitReset::Monthly))
        .await;
    let limits = harness.limits(&strategy_id);
    for wallet in &dropped {
        assert_eq!(limits[*wallet], Some(0), "{wallet}'s allowance ended");
    }
    let total: i64 = limits.values().map(|limit| limit.unwrap()).sum();
    assert_eq!(
        Some(total),
        second.allocated_micro_usd,
        "the limits are this run's allowances, not added to the last run's"
    );
    harness.assert_never_over_issued();

    // The first run's swap is backdated past the month: its income drops out.
    let month_ago = chrono::Utc::now() - chrono::Duration::days(32);
    sqlx::query(
        "UPDATE solana_transactions SET created_at = ? WHERE run_id = ? AND phase = 'SWAPPING'",
    )
    .bind(month_ago.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
    .bind(&first.run_id)
    .execute(store.pool())
    .await
    .unwrap();
    harness.add_fees(2 * LAMPORTS_PER_SOL);
    let third = harness.complete(&strategy_id, false).await;
    let income_3 = third.swapped_usdc_base_units.unwrap() as i64;
    assert_eq!(
        third.budget_micro_usd,
        Some(income_2 + income_3),
        "income older than a month no longer counts"
    );
    let rows_3 = harness.allocations(&third.run_id).await;
    assert_balanced(&third, &rows_3);
    harness
        .assert_keys_match(&third, Some(LimitReset::Monthly))
        .await;

    // A dry run (with fees to claim, so it gets as far as ALLOCATING): nothing changes on
    // OpenRouter, on the chain, in the ledger or on the strategy.
    harness.add_fees(2 * LAMPORTS_PER_SOL);
    let lamports_before = harness
        .sandbox
        .ledger
        .lamports(&harness.sandbox.world.signer.pubkey());
    let keys_before = harness.sandbox.openrouter.keys();
    let ledger_before = store.all_user_keys().await.unwrap();
    let strategy_before = store.stored_strategy(&strategy_id).await.unwrap().unwrap();
    let dry = harness.complete(&strategy_id, true).await;
    assert!(dry.dry_run);
    assert_eq!(dry.skipped_reason, None, "the dry run allocated");
    assert_eq!(harness.sandbox.openrouter.keys(), keys_before);
    assert_eq!(
        harness
            .sandbox
            .ledger
            .lamports(&harness.sandbox.world.signer.pubkey()),
        lamports_before
    );
    assert_eq!(store.all_user_keys().await.unwrap(), ledger_before);
    assert_eq!(
        store.stored_strategy(&strategy_id).await.unwrap().unwrap(),
        strategy_before
    );
    let dry_rows = harness.allocations(&dry.run_id).await;
    assert!(!dry_rows.is_empty());
    assert!(dry_rows.iter().all(|row| row.dry_run));
    let planned = store
        .audit_for_run(&dry.run_id)
        .await
        .unwrap()
        .into_iter()
        .find(|entry| entry.action == "provision_planned")
        .expect("the dry run says what it would do");
    assert_eq!(planned.details["keyLimitReset"], "monthly");
    harness.stop().await;
}

/// A pool too small for the month's allowances: every allowance is scaled down in proportion to
/// what a large pool grants (largest remainder, whole cents), the pool's room is used to the cent
/// and never passed, and OpenRouter's keys promise no more than the balance less the reserve.
#[tokio::test(flavor = "multi_thread")]
async fn a_short_pool_scales_every_allowance_down_in_proportion() {
    let world = |credits| World {
        credits_micro_usd: credits,
        usdc_per_sol: 4_000_000,
    };
    let (reference, harness) = tokio::join!(
        Harness::start(world(500 * DOLLAR)),
        Harness::start(world(10 * DOLLAR))
    );
    let (reference_strategy, strategy_id) =
        tokio::join!(reference.strategy(monthly()), harness.strategy(monthly()));
    let (unscaled, run) = tokio::join!(
        reference.complete(&reference_strategy, false),
        harness.complete(&strategy_id, false)
    );
    assert_eq!(
        run.budget_micro_usd, unscaled.budget_micro_usd,
        "same income"
    );
    // $10 of credits, 10 % reserve: $9 of room.
    let room = 9 * DOLLAR;
    assert_eq!(run.headroom_micro_usd, Some(room));
    let requested_total = unscaled.allocated_micro_usd.unwrap();
    assert!(
        requested_total > room,
        "the large pool grants more than the short one can: {requested_total}"
    );
    let details = harness.allocated_audit(&run.run_id).await;
    assert_eq!(details["scaledDown"], true);
    assert_eq!(details["requestedMicroUsd"], requested_total);

    let rows = harness.allocations(&run.run_id).await;
    assert_balanced(&run, &rows);
    assert_eq!(
        run.allocated_micro_usd,
        Some(room),
        "the room's whole cents are all used"
    );
    let mut requested: Vec<i64> = reference
        .allocations(&unscaled.run_id)
        .await
        .iter()
        .map(|row| row.grant_micro_usd)
        .collect();
    requested.sort_unstable_by(|a, b| b.cmp(a));
    let mut scaled: Vec<i64> = rows.iter().map(|row| row.grant_micro_usd).collect();
    scaled.sort_unstable_by(|a, b| b.cmp(a));
    scaled.resize(requested.len(), 0);
    for (asked, got) in requested.iter().zip(&scaled) {
        // The exact proportional share in whole cents, floored; largest remainder adds at most
        // one cent.
        let cents = i128::from(*asked) * i128::from(room / CENT) / i128::from(requested_total);
        let floor = i64::try_from(cents).unwrap() * CENT;
        assert!(
            *got == floor || *got == floor + CENT,
            "{asked} scaled to {got}, not its proportional share {floor} (+1 cent): {scaled:?}"
        );
    }
    harness
        .assert_keys_match(&run, Some(LimitReset::Monthly))
        .await;
    harness.assert_never_over_issued();
    tokio::join!(reference.stop(), harness.stop());
}

fn credits_shape(max_grant_micro_usd: i64) -> Shape {
    Shape {
        reset: None,
        top_n: 20,
        max_grant_micro_usd,
    }
}

/// $60 of credits, 10 % reserve: $54 of room for everything.
fn small_pool() -> World {
    World {
        credits_micro_usd: 60 * DOLLAR,
        usdc_per_sol: 150_000_000,
    }
}

/// Strategy A (credits, at most $1 per holder) is still creating its keys (slowly) when strategy B
/// (monthly allowances worth far more than the pool) allocates: B's room leaves out what A has
/// allocated, applied or not, so together they never grant more than the pool's room.
#[tokio::test(flavor = "multi_thread")]
async fn two_strategies_allocating_while_one_provisions_never_grant_the_same_money() {
    let harness = Harness::start(small_pool()).await;
    let a = harness.strategy(credits_shape(DOLLAR)).await;
    let b = harness
        .strategy(Shape {
            reset: Some("monthly"),
            top_n: 20,
            max_grant_micro_usd: 10 * DOLLAR,
        })
        .await;
    harness.fault(CREATE_KEY, None, Some(500));
    let run_a = harness.start_run(&a, false).await;
    harness
        .wait_for(&run_a, |run| {
            run.state == RunState::Provisioning || run.state.is_terminal()
        })
        .await;
    harness.add_fees(2 * LAMPORTS_PER_SOL);
    let run_b = harness.start_run(&b, false).await;
    let b_allocated = harness
        .wait_for(&run_b, |run| {
            matches!(
                run.state,
                RunState::Provisioning | RunState::Complete | RunState::Failed
            )
        })
        .await;
    assert_ne!(b_allocated.state, RunState::Failed, "{b_allocated:?}");
    let a_then = harness.run(&run_a).await;
    harness.sandbox.faults.clear(None);
    let (a_run, b_run) = tokio::join!(harness.wait_for_end(&run_a), harness.wait_for_end(&run_b));
    assert_complete(&a_run);
    assert_complete(&b_run);

    let room = 54 * DOLLAR;
    let a_granted = a_run.allocated_micro_usd.unwrap();
    let b_granted = b_run.allocated_micro_usd.unwrap();
    assert!(a_granted > 0);
    assert!(
        a_granted + b_granted <= room,
        "A granted {a_granted} and B {b_granted}: more than the pool's {room} together"
    );
    assert!(b_run.headroom_micro_usd.unwrap() <= room - a_granted);
    assert!(b_granted > 0, "B still gets the rest of the room");
    harness.assert_never_over_issued();
    // The overlap really happened: B allocated while A had grants still to apply.
    assert_eq!(
        a_then.state,
        RunState::Provisioning,
        "A was still provisioning when B had allocated"
    );
    let details = harness.allocated_audit(&run_b).await;
    assert!(
        details["openGrantsMicroUsd"].as_i64().unwrap() > 0,
        "B saw A's open grants: {details}"
    );
    assert_eq!(details["openGrantRuns"][0]["runId"], run_a.as_str());
    harness.assert_keys_match(&a_run, None).await;
    harness
        .assert_keys_match(&b_run, Some(LimitReset::Monthly))
        .await;
    harness.stop().await;
}

/// Strategy A's run fails in PROVISIONING (OpenRouter refuses every key) with its grants
/// allocated; B runs meanwhile and must leave them out of its room, because resuming A applies
/// them without asking the pool again. After the resume, the two together are within the pool.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_failed_in_provisioning_keeps_its_grants_out_of_another_strategys_room() {
    let harness = Harness::start(small_pool()).await;
    let a = harness.strategy(credits_shape(DOLLAR)).await;
    let b = harness.strategy(credits_shape(10 * DOLLAR)).await;
    harness.fault(
        CREATE_KEY,
        Some(FaultMode::Always {
            fault: Fault::ServerError { status: 400 },
        }),
        None,
    );
    let run_a = harness.start_run(&a, false).await;
    let failed = harness.wait_for_end(&run_a).await;
    assert_eq!(failed.state, RunState::Failed);
    assert_eq!(failed.error_failed_state, Some(RunState::Provisioning));
    let a_granted = failed.allocated_micro_usd.unwrap();
    assert!(a_granted > 0);
    assert!(harness.sandbox.openrouter.keys().is_empty());
    harness.sandbox.faults.clear(None);

    harness.add_fees(2 * LAMPORTS_PER_SOL);
    let b_run = harness.complete(&b, false).await;
    let room = 54 * DOLLAR;
    assert_eq!(
        b_run.headroom_micro_usd,
        Some(room - a_granted),
        "A's failed grants are still promised"
    );
    let b_granted = b_run.allocated_micro_usd.unwrap();
    assert!(
        b_granted > 0 && b_granted <= room - a_granted,
        "B takes at most the rest: {b_granted}"
    );

    let a_run = harness.resume_to_end(&run_a).await;
    assert_complete(&a_run);
    assert_eq!(a_run.allocated_micro_usd, Some(a_granted));
    assert!(a_granted + b_granted <= room);
    harness.assert_keys_match(&a_run, None).await;
    harness.assert_keys_match(&b_run, None).await;
    harness.assert_never_over_issued();
    harness.stop().await;
}

/// A monthly run fails in PROVISIONING; the strategy's next run allocates (its room is not
/// reduced by the stale allowances it replaces) and completes; resuming the old run then applies
/// nothing: its allowances are superseded and the keys keep the newer ones.
#[tokio::test(flavor = "multi_thread")]
async fn a_superseded_allowance_run_applies_nothing_when_resumed() {
    let harness = Harness::start(World {
        credits_micro_usd: 500 * DOLLAR,
        usdc_per_sol: 4_000_000,
    })
    .await;
    let strategy_id = harness.strategy(monthly()).await;
    harness.fault(
        CREATE_KEY,
        Some(FaultMode::Always {
            fault: Fault::ServerError { status: 400 },
        }),
        None,
    );
    let old = harness.start_run(&strategy_id, false).await;
    let failed = harness.wait_for_end(&old).await;
    assert_eq!(failed.error_failed_state, Some(RunState::Provisioning));
    harness.sandbox.faults.clear(None);

    harness.add_fees(3 * LAMPORTS_PER_SOL);
    let newer = harness.complete(&strategy_id, false).await;
    let (balance, reserve) = harness.balance_and_reserve();
    assert_eq!(
        newer.headroom_micro_usd,
        Some(balance - reserve),
        "the old run's allowances are replaced, not subtracted"
    );
    assert_eq!(
        newer.budget_micro_usd,
        Some(
            (failed.swapped_usdc_base_units.unwrap() + newer.swapped_usdc_base_units.unwrap())
                as i64
        ),
        "the failed run's income is still the month's income"
    );
    harness
        .assert_keys_match(&newer, Some(LimitReset::Monthly))
        .await;
    let limits = harness.limits(&strategy_id);

    let resumed = harness.resume_to_end(&old).await;
    assert_complete(&resumed);
    let rows = harness.allocations(&old).await;
    assert!(!rows.is_empty());
    assert!(
        rows.iter()
            .all(|row| row.status == AllocationStatus::Skipped
                && row
                    .last_error
                    .as_deref()
                    .unwrap_or("")
                    .contains("superseded")),
        "{rows:?}"
    );
    assert_eq!(
        harness.limits(&strategy_id),
        limits,
        "the newer allowances stay"
    );
    harness.assert_never_over_issued();
    harness.stop().await;
}

/// Switching allowances lowers before it raises: the run after a monthly run drops half the
/// holders (their limits go to 0) and raises the others'; OpenRouter refuses the first lowering,
/// so no limit is raised while the old, higher limits may still be spent — the run fails in
/// PROVISIONING with the raises still pending. The resume applies the rest and converges.
#[tokio::test(flavor = "multi_thread")]
async fn allowances_are_lowered_before_any_is_raised() {
    let harness = Harness::start(World {
        credits_micro_usd: 500 * DOLLAR,
        usdc_per_sol: 4_000_000,
    })
    .await;
    let strategy_id = harness.strategy(monthly()).await;
    let first = harness.complete(&strategy_id, false).await;
    let before = harness.limits(&strategy_id);
    assert_eq!(before.len(), 10);

    harness.add_fees(3 * LAMPORTS_PER_SOL);
    harness
        .store()
        .update_strategy(
            &strategy_id,
            &StrategyPatch {
                top_n: Some("5".into()),
                ..StrategyPatch::default()
            },
            1,
            "test",
        )
        .await
        .unwrap();
    harness.fault(
        "PATCH /api/v1/keys/{hash}",
        Some(FaultMode::Script {
            steps: vec![Some(Fault::ServerError { status: 400 })],
        }),
        None,
    );
    let run_id = harness.start_run(&strategy_id, false).await;
    let failed = harness.wait_for_end(&run_id).await;
    assert_eq!(failed.state, RunState::Failed, "{failed:?}");
    assert_eq!(failed.error_failed_state, Some(RunState::Provisioning));
    assert!(
        failed
            .error_detail
            .as_deref()
            .unwrap_or("")
            .contains("wait until the lowerings succeed"),
        "{failed:?}"
    );
    let rows = harness.allocations(&run_id).await;
    let raises: Vec<&Allocation> = rows
        .iter()
        .filter(|row| row.grant_micro_usd > before[&row.holder_wallet].unwrap())
        .collect();
    assert!(!raises.is_empty(), "the kept holders' allowances go up");
    let during = harness.limits(&strategy_id);
    for raise in &raises {
        assert_eq!(raise.status, AllocationStatus::Pending, "{raise:?}");
        assert_eq!(
            during[&raise.holder_wallet], before[&raise.holder_wallet],
            "no limit is raised while a lowering failed"
        );
    }
    harness.assert_never_over_issued();

    let resumed = harness.resume_to_end(&run_id).await;
    assert_complete(&resumed);
    assert_balanced(&resumed, &harness.allocations(&run_id).await);
    harness
        .assert_keys_match(&resumed, Some(LimitReset::Monthly))
        .await;
    assert_eq!(resumed.budget_micro_usd.unwrap(), {
        let income =
            first.swapped_usdc_base_units.unwrap() + failed.swapped_usdc_base_units.unwrap();
        income as i64
    });
    harness.assert_never_over_issued();
    harness.stop().await;
}

/// Fees stop: a run below the claim threshold still recomputes the allowances from the trailing
/// month's income, so once that income has aged out every allowance lapses to 0 instead of
/// staying at its last value.
#[tokio::test(flavor = "multi_thread")]
async fn allowances_lapse_when_the_income_ages_out_even_without_new_fees() {
    let harness = Harness::start(World {
        credits_micro_usd: 500 * DOLLAR,
        usdc_per_sol: 4_000_000,
    })
    .await;
    let strategy_id = harness.strategy(monthly()).await;
    let store = harness.store().clone();
    let first = harness.complete(&strategy_id, false).await;
    assert!(
        harness
            .limits(&strategy_id)
            .values()
            .any(|limit| limit.unwrap_or(0) > 0)
    );

    // The income ages out; no new fees arrive (the positions were claimed out).
    let month_ago = chrono::Utc::now() - chrono::Duration::days(32);
    sqlx::query(
        "UPDATE solana_transactions SET created_at = ? WHERE run_id = ? AND phase = 'SWAPPING'",
    )
    .bind(month_ago.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
    .bind(&first.run_id)
    .execute(store.pool())
    .await
    .unwrap();
    let second = harness.complete(&strategy_id, false).await;
    assert_eq!(second.skipped_reason.as_deref(), Some("below_threshold"));
    assert_eq!(second.claimed_lamports, Some(0));
    assert_eq!(
        second.budget_micro_usd,
        Some(0),
        "no income left in the month"
    );
    let limits = harness.limits(&strategy_id);
    assert!(
        limits.values().all(|limit| *limit == Some(0)),
        "every allowance lapsed: {limits:?}"
    );
    harness.stop().await;
}
