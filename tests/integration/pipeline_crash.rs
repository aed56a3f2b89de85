//! Crash tests of the pipeline (DESIGN §1 I3, §4): for each phase a failure injected in the middle
//! — a fault in a fake, or the worker (or the whole coordinator) killed — and a resume converge to
//! the state an uninterrupted run of the same world reaches: the same claimed, swapped, allocated
//! and carried-over figures, one landing per transaction purpose, one key per holder with the
//! limit the run recorded, Σ grants + carry-over = budget. Also: pool exhaustion caps the grants
//! and carries the rest.
//!
//! Every test compares against a reference run on a second sandbox seeded the same way (the holder
//! balances and fee positions are seeded, the wallets are random): figures are compared, wallets
//! are not.
//!
//! A transient failure (5xx) that outlasts the retries also opens the integration's circuit
//! breaker (cooldown BREAKER_COOLDOWN_SEC, 5 s in that test): one test (`claim_txs_down`) goes
//! through that on purpose; the others inject permanent failures (4xx), which fail the phase at once
//! without touching the breaker, and are otherwise the same for the pipeline (nothing was sent).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use creditbrain::config::Config;
use creditbrain::daemon::RunningDaemon;
use creditbrain::sandbox::faults::{Fault, FaultMode, FaultRule, Latency};
use creditbrain::sandbox::ledger::LedgerOptions;
use creditbrain::sandbox::world::{LAMPORTS_PER_SOL, WorldOptions};
use creditbrain::sandbox::{Sandbox, SandboxOptions};
use creditbrain_actors::resilience::BreakerState;
use creditbrain_actors::run::{CoordinatorMsg, resume_run, start_run};
use creditbrain_actors::store::Store;
use creditbrain_actors::store::allocations::AllocationStatus;
use creditbrain_actors::store::runs::{Run, RunState, TriggeredBy};
use creditbrain_actors::store::strategies::NewStrategy;
use creditbrain_actors::store::transactions::{TxPhase, TxStatus};
use ractor::ActorRef;
use solana_sdk::signature::Signer;

use crate::support::eventually;

const CALL: Duration = Duration::from_secs(10);
/// Long enough for any run here (the slowest waits out a breaker cooldown separately).
const RUN_LIMIT: Duration = Duration::from_secs(60);

const CLAIM_TXS: &str = "POST /api/v1/token-launch/claim-txs/v3";
const QUOTE: &str = "GET /api/v1/trade/quote";
const CREATE_KEY: &str = "POST /api/v1/keys";

/// How to build one side of a comparison (the reference and the crashed run use the same).
#[derive(Clone)]
struct Setup {
    holders: usize,
    blockhash_validity_blocks: u64,
    vars: Vec<(&'static str, String)>,
    /// The OpenRouter account's credits, micro-USD.
    credits_micro_usd: i64,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            holders: 24,
            blockhash_validity_blocks: 150,
            vars: Vec::new(),
            credits_micro_usd: 500_000_000,
        }
    }
}

impl Setup {
    fn var(mut self, name: &'static str, value: &str) -> Self {
        self.vars.push((name, value.to_string()));
        self
    }
}

struct Harness {
    sandbox: Sandbox,
    _dir: tempfile::TempDir,
    daemon: RunningDaemon,
    strategy_id: String,
}

impl Harness {
    async fn start(setup: &Setup) -> Self {
        let sandbox = Sandbox::start(SandboxOptions {
            world: WorldOptions {
                holders: setup.holders,
                ..WorldOptions::default()
            },
            ledger: LedgerOptions {
                slot_duration: Duration::from_millis(20),
                blockhash_validity_blocks: setup.blockhash_validity_blocks,
                ..LedgerOptions::default()
            },
            openrouter_credits_micro_usd: setup.credits_micro_usd,
            ..SandboxOptions::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut vars = sandbox.daemon_vars();
        for (name, value) in [
            ("API_AUTH_TOKEN", "pipeline-crash-token-0123456789"),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("KEY_LIMIT_RESET", "null"),
            ("HEALTH_PROBE_INTERVAL_SEC", "1"),
        ] {
            vars.insert(name.into(), value.into());
        }
        for (name, value) in &setup.vars {
            vars.insert((*name).into(), value.clone());
        }
        vars.insert(
            "DATABASE_PATH".into(),
            dir.path().join("crash.db").display().to_string(),
        );
        vars.insert(
            "ADMIN_SOCKET_PATH".into(),
            dir.path().join("crash.sock").display().to_string(),
        );
        let config = Config::from_vars(&vars).unwrap_or_else(|errors| panic!("{errors}"));
        let daemon = creditbrain::daemon::start(&config)
            .await
            .expect("daemon starts");
        let strategy = daemon
            .handle
            .store
            .insert_strategy(&NewStrategy {
                owner_wallet: sandbox.world.signer.pubkey().to_string(),
                token_mint: sandbox.world.token_mint.to_string(),
                fee_source: "CLAIMABLE_POSITIONS".into(),
                threshold_lamports: LAMPORTS_PER_SOL as i64,
                slippage_bps: 50,
                distribution_mode: "TOP_N_HOLDERS".into(),
                top_n: 20,
                min_holding_base_units: "0".into(),
                max_grant_micro_usd: 10_000_000,
                max_key_limit_micro_usd: 100_000_000,
                key_limit_reset: None,
                key_expiry_days: 365,
                reserve_bps: 1_000,
                cron_schedule: "0 */6 * * *".into(),
                status: "active".into(),
            })
            .await
            .unwrap();
        Self {
            sandbox,
            _dir: dir,
            daemon,
            strategy_id: strategy.strategy_id,
        }
    }

    fn store(&self) -> &Store {
        &self.daemon.handle.store
    }

    /// The coordinator now (after a restart, the new one).
    async fn coordinator(&self) -> ActorRef<CoordinatorMsg> {
        let slot = self.daemon.handle.coordinator.clone();
        eventually(CALL, || {
            let slot = slot.clone();
            async move { slot.get() }
        })
        .await
    }

    async fn start_run(&self) -> String {
        let started = start_run(
            &self.coordinator().await,
            &self.strategy_id,
            TriggeredBy::Manual,
            Some(false),
            CALL,
        )
        .await
        .unwrap();
        assert_eq!(started.blocked_code, None);
        started.run_id
    }

    async fn resume(&self, run_id: &str) {
        resume_run(&self.coordinator().await, run_id, CALL)
            .await
            .unwrap_or_else(|error| panic!("resume {run_id}: {error}"));
    }

    async fn run(&self, run_id: &str) -> Run {
        self.store().run(run_id).await.unwrap().unwrap()
    }

    async fn wait_for_end(&self, run_id: &str) -> Run {
        self.wait_for_end_within(run_id, RUN_LIMIT).await
    }

    async fn wait_for_end_within(&self, run_id: &str, limit: Duration) -> Run {
        let store = self.store().clone();
        eventually(limit, || {
            let store = store.clone();
            async move {
                let run = store.run(run_id).await.unwrap().unwrap();
                run.state.is_terminal().then_some(run)
            }
        })
        .await
    }

    /// Starts a run and waits for its end.
    async fn run_to_end(&self) -> Run {
        let run_id = self.start_run().await;
        self.wait_for_end(&run_id).await
    }

    fn fault(&self, fake: &str, route: &str, mode: FaultMode) {
        self.sandbox.faults.add_rule(FaultRule {
            fake: fake.into(),
            route: Some(route.into()),
            latency: None,
            mode: Some(mode),
        });
    }

    fn latency(&self, fake: &str, route: &str, ms: u64) {
        self.sandbox.faults.add_rule(FaultRule {
            fake: fake.into(),
            route: Some(route.into()),
            latency: Some(Latency::Fixed { ms }),
            mode: None,
        });
    }

    fn requests(&self, fake: &str, route: &str) -> u64 {
        self.sandbox
            .faults
            .request_counts()
            .get(fake)
            .and_then(|routes| routes.get(route))
            .copied()
            .unwrap_or(0)
    }

    /// The mint whose fee position has `lamports` (the seeded world's are distinct).
    fn position_mint(&self, lamports: u64) -> String {
        self.sandbox
            .world
            .positions
            .iter()
            .find(|(_, amount)| *amount == lamports)
            .map(|(mint, _)| mint.to_string())
            .expect("a seeded position of that size")
    }

    /// What the sandbox and the store say the run did, with every exactly-once and arithmetic
    /// invariant asserted on the way. The run must be COMPLETE.
    async fn outcome(&self, run: &Run) -> Outcome {
        assert_eq!(
            run.state,
            RunState::Complete,
            "{:?} {:?} (failed in {:?})",
            run.error_code,
            run.error_detail,
            run.error_failed_state
        );
        let store = self.store();

        // No transaction landed twice: every signature the ledger landed is a recorded `landed`
        // row of this run, and each purpose has at most one.
        let rows = store.txs_for_run(&run.run_id).await.unwrap();
        let landed_on_ledger: BTreeSet<String> = self
            .sandbox
            .ledger
            .received()
            .iter()
            .filter(|tx| tx.landed_slot.is_some() && !tx.duplicate)
            .map(|tx| tx.signature.to_string())
            .collect();
        let mut landings: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for signature in &landed_on_ledger {
            let row = rows
                .iter()
                .find(|row| &row.signature == signature)
                .unwrap_or_else(|| panic!("{signature} landed but the run has no record of it"));
            assert_eq!(
                row.status,
                TxStatus::Landed,
                "{signature} ({}) landed but is recorded {}",
                row.purpose,
                row.status
            );
            landings
                .entry(row.purpose.clone())
                .or_default()
                .push(signature.clone());
        }
        for (purpose, signatures) in &landings {
            assert_eq!(signatures.len(), 1, "{purpose} landed {signatures:?}");
        }
        let recorded_landed = rows
            .iter()
            .filter(|row| row.status == TxStatus::Landed)
            .count();
        assert_eq!(recorded_landed, landed_on_ledger.len(), "records = ledger");
        // Claims by position (`claim:<mint>:<n>`) and swaps.
        let mut claims_by_mint: BTreeMap<String, usize> = BTreeMap::new();
        let mut swaps = 0;
        for row in rows.iter().filter(|row| row.status == TxStatus::Landed) {
            match row.phase {
                TxPhase::Claiming => {
                    let mint = row.purpose.split(':').nth(1).unwrap().to_string();
                    let lamports = self
                        .sandbox
                        .world
                        .positions
                        .iter()
                        .find(|(position, _)| position.to_string() == mint)
                        .map(|(_, lamports)| *lamports)
                        .expect("a claim of a seeded position");
                    *claims_by_mint.entry(format_sol(lamports)).or_default() += 1;
                }
                TxPhase::Swapping => swaps += 1,
                other => panic!("unexpected {other} transaction"),
            }
        }

        // I2: Σ grants + carry-over = budget, and the strategy carries the run's carry-over.
        let allocations = store.allocations_for_run(&run.run_id).await.unwrap();
        let granted: i64 = allocations.iter().map(|a| a.grant_micro_usd).sum();
        assert_eq!(Some(granted), run.allocated_micro_usd);
        assert_eq!(
            granted + run.carry_out_micro_usd.unwrap(),
            run.budget_micro_usd.unwrap(),
            "Σ grants + carry-over = budget"
        );
        assert!(
            granted <= run.headroom_micro_usd.unwrap(),
            "within the pool"
        );
        let strategy = store
            .stored_strategy(&self.strategy_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(Some(strategy.carry_over_micro_usd), run.carry_out_micro_usd);

        // One key per holder (names unique), each applied allocation's target = the fake key's
        // limit = the ledger's limit.
        let keys = self.sandbox.openrouter.keys();
        let names: HashSet<&str> = keys.iter().map(|key| key.name.as_str()).collect();
        assert_eq!(
            names.len(),
            keys.len(),
            "a holder has two keys: {:?}",
            keys.iter().map(|key| &key.name).collect::<Vec<_>>()
        );
        assert_eq!(keys.len(), allocations.len(), "one key per allocation");
        for allocation in &allocations {
            assert_eq!(
                allocation.status,
                AllocationStatus::Applied,
                "{allocation:?}"
            );
            let hash = allocation.key_hash.as_ref().expect("applied to a key");
            let key = keys
                .iter()
                .find(|key| &key.hash == hash)
                .expect("the allocation's key exists on OpenRouter");
            assert_eq!(
                key.name,
                format!(
                    "creditbrain-{}-{}",
                    self.strategy_id, allocation.holder_wallet
                )
            );
            assert_eq!(key.limit_micro_usd, allocation.target_limit_micro_usd);
            assert_eq!(key.limit_micro_usd, Some(allocation.grant_micro_usd));
            let ledger = store.key_by_hash(hash).await.unwrap().unwrap();
            assert_eq!(Some(ledger.limit_micro_usd), key.limit_micro_usd);
        }
        assert_eq!(
            run.keys_created.unwrap() + run.keys_updated.unwrap(),
            allocations.len() as u64,
            "every key counted once"
        );
        assert_eq!(run.keys_failed, Some(0));

        let mut grants: Vec<i64> = allocations.iter().map(|a| a.grant_micro_usd).collect();
        grants.sort_unstable_by(|a, b| b.cmp(a));
        Outcome {
            claimed_lamports: run.claimed_lamports.unwrap(),
            swap_in_lamports: run.swap_in_lamports.unwrap(),
            swapped_usdc: run.swapped_usdc_base_units.unwrap(),
            budget: run.budget_micro_usd.unwrap(),
            carry_in: run.carry_in_micro_usd.unwrap(),
            headroom: run.headroom_micro_usd.unwrap(),
            allocated: run.allocated_micro_usd.unwrap(),
            carry_out: run.carry_out_micro_usd.unwrap(),
            holders: run.holders_count.unwrap(),
            grants,
            claims_by_position: claims_by_mint,
            swaps,
            keys: keys.len(),
        }
    }

    async fn stop(self) {
        self.daemon.shutdown_trigger().trigger();
        self.daemon.wait().await.unwrap();
    }
}

fn format_sol(lamports: u64) -> String {
    format!(
        "{}.{:09} SOL",
        lamports / LAMPORTS_PER_SOL,
        lamports % LAMPORTS_PER_SOL
    )
}

/// The end state of a run, as far as it must not depend on crashes.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    claimed_lamports: u64,
    swap_in_lamports: u64,
    swapped_usdc: u64,
    budget: i64,
    carry_in: i64,
    headroom: i64,
    allocated: i64,
    carry_out: i64,
    holders: u64,
    /// Largest first (the wallets differ between sandboxes; the balances do not).
    grants: Vec<i64>,
    /// Landed claim transactions per position (by its seeded size).
    claims_by_position: BTreeMap<String, usize>,
    swaps: usize,
    keys: usize,
}

/// Starts the reference world and runs it to the end, beside whatever the test does.
async fn reference(setup: &Setup) -> (Harness, Outcome) {
    let harness = Harness::start(setup).await;
    let run = harness.run_to_end().await;
    let outcome = harness.outcome(&run).await;
    (harness, outcome)
}

fn always(fault: Fault) -> FaultMode {
    FaultMode::Always { fault }
}

fn status(status: u16) -> Fault {
    Fault::ServerError { status }
}

/// Waits until the run has failed, and checks where and why.
async fn expect_failed(harness: &Harness, run_id: &str, phase: RunState, codes: &[&str]) -> Run {
    let run = harness.wait_for_end(run_id).await;
    assert_eq!(
        run.state,
        RunState::Failed,
        "expected a failure in {phase:?}, got {run:?}"
    );
    assert_eq!(run.error_failed_state, Some(phase), "{run:?}");
    let code = run.error_code.clone().unwrap_or_default();
    assert!(
        codes.contains(&code.as_str()),
        "code {code} not among {codes:?}: {:?}",
        run.error_detail
    );
    run
}

/// Resumes and waits for the end.
async fn resume_to_end(harness: &Harness, run_id: &str) -> Run {
    harness.resume(run_id).await;
    harness.wait_for_end(run_id).await
}

// ---------------------------------------------------------------------------------------------
// CLAIMING

/// Bags' claim endpoint down (500 on every call): the retries give up, the breaker opens, the run
/// fails in CLAIMING with BAGS_UNAVAILABLE having sent nothing. A resume while the breaker is
/// still open fails the same way, still sending nothing; once the breaker lets a probe through,
/// the resume completes with one claim landing per position, as the reference run.
#[tokio::test(flavor = "multi_thread")]
async fn claim_txs_down_then_resumed_after_the_breaker_cools_down() {
    // Long enough that the first resume still meets the open breaker, short enough for CI.
    let setup = Setup::default().var("BREAKER_COOLDOWN_SEC", "5");
    let ((reference, expected), harness) = tokio::join!(reference(&setup), Harness::start(&setup));
    harness.fault("bags", CLAIM_TXS, always(status(500)));
    let run_id = harness.start_run().await;
    expect_failed(&harness, &run_id, RunState::Claiming, &["BAGS_UNAVAILABLE"]).await;
    assert!(harness.requests("bags", CLAIM_TXS) >= 1);
    assert!(harness.sandbox.ledger.received().is_empty(), "nothing sent");

    harness.sandbox.faults.clear(None);
    let breaker = harness.daemon.handle.breakers.bags.clone();
    assert_eq!(breaker.state(), BreakerState::Open);
    let again = resume_to_end(&harness, &run_id).await;
    assert_eq!(again.state, RunState::Failed);
    assert_eq!(again.error_failed_state, Some(RunState::Claiming));
    assert_eq!(again.error_code.as_deref(), Some("BAGS_UNAVAILABLE"));
    assert!(harness.sandbox.ledger.received().is_empty(), "nothing sent");

    eventually(Duration::from_secs(15), || {
        let breaker = breaker.clone();
        async move { (breaker.state() != BreakerState::Open).then_some(()) }
    })
    .await;
    let run = resume_to_end(&harness, &run_id).await;
    assert_eq!(run.resume_count, 2);
    assert_eq!(harness.outcome(&run).await, expected);
    tokio::join!(reference.stop(), harness.stop());
}

/// A failure between two claims (the first position claimed, Bags refusing the second): the
/// resume settles the first claim without sending it again and claims only what the reference
/// claims. With MAX_CLAIMABLE_SOL_PER_RUN = 4.8 SOL the reference claims the 3.25 and 1.5 SOL
/// positions (4.75) and leaves the 0.75 one for the next run; the resumed run must not claim the
/// 0.75 one either (whichever of the two it claimed first).
#[tokio::test(flavor = "multi_thread")]
async fn a_failure_between_two_claims_resumes_to_the_same_claims_within_the_cap() {
    let setup = Setup::default().var("MAX_CLAIMABLE_SOL_PER_RUN", "4.8");
    let ((reference, expected), harness) = tokio::join!(reference(&setup), Harness::start(&setup));
    assert_eq!(
        expected.claims_by_position,
        BTreeMap::from([
            (format_sol(3_250_000_000), 1),
            (format_sol(1_500_000_000), 1)
        ]),
        "the reference leaves the 0.75 SOL position for the next run"
    );
    // First position: its claim transaction, then the empty list; the second position: refused.
    harness.fault(
        "bags",
        CLAIM_TXS,
        FaultMode::Script {
            steps: vec![None, None, Some(status(400))],
        },
    );
    let run_id = harness.start_run().await;
    expect_failed(&harness, &run_id, RunState::Claiming, &["BAGS_REJECTED"]).await;
    let landed_before = harness
        .sandbox
        .ledger
        .received()
        .iter()
        .filter(|tx| tx.landed_slot.is_some())
        .count();
    assert_eq!(landed_before, 1, "one position claimed before the failure");

    harness.sandbox.faults.clear(None);
    let run = resume_to_end(&harness, &run_id).await;
    assert_eq!(harness.outcome(&run).await, expected);
    let seven_fifty = harness.position_mint(750_000_000);
    let positions = harness
        .sandbox
        .bags
        .positions(&harness.sandbox.world.signer.pubkey());
    assert!(
        positions
            .iter()
            .any(|p| p.base_mint.to_string() == seven_fifty && p.claimable_lamports > 0),
        "the 0.75 SOL position waits for the next run: {positions:?}"
    );
    tokio::join!(reference.stop(), harness.stop());
}

/// The first claim's send is dropped by the leader: the same bytes are re-sent and land once; the
/// run completes as the reference without a resume.
#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_claim_send_is_resent_and_lands_once() {
    let setup = Setup::default();
    let ((reference, expected), harness) = tokio::join!(reference(&setup), Harness::start(&setup));
    harness.fault(
        "rpc",
        "sendTransaction",
        FaultMode::Script {
            steps: vec![Some(Fault::DropTransaction)],
        },
    );
    let run = harness.run_to_end().await;
    assert_eq!(run.resume_count, 0);
    let received = harness.sandbox.ledger.received();
    assert!(received[0].dropped, "{:?}", received[0]);
    assert!(
        received[1..]
            .iter()
            .any(|tx| tx.signature == received[0].signature && tx.landed_slot.is_some()),
        "the same signature was re-sent and landed"
    );
    assert_eq!(harness.outcome(&run).await, expected);
    tokio::join!(reference.stop(), harness.stop());
}

/// Every claim send dropped until the blockhashes expire: the run fails in CLAIMING with
/// TX_EXPIRED after its rebuilds, none of them landed; the resume builds a fresh one that lands
/// once.
#[tokio::test(flavor = "multi_thread")]
async fn claims_dropped_until_expiry_fail_then_resume_to_one_landing() {
    // 40 blocks of 20 ms: a blockhash lives 0.8 s.
    let setup = Setup {
        blockhash_validity_blocks: 40,
        ..Setup::default()
    };
    let ((reference, expected), harness) = tokio::join!(reference(&setup), Harness::start(&setup));
    harness.fault("rpc", "sendTransaction", always(Fault::DropTransaction));
    let run_id = harness.start_run().await;
    expect_failed(&harness, &run_id, RunState::Claiming, &["TX_EXPIRED"]).await;
    let rows = harness.store().txs_for_run(&run_id).await.unwrap();
    assert!(rows.len() >= 2, "rebuilt after expiry: {rows:?}");
    assert!(rows.iter().all(|row| row.status == TxStatus::Expired));
    assert!(
        harness
            .sandbox
            .ledger
            .received()
            .iter()
            .all(|tx| tx.landed_slot.is_none()),
        "nothing landed"
    );

    harness.sandbox.faults.clear(None);
    let run = resume_to_end(&harness, &run_id).await;
    assert_eq!(harness.outcome(&run).await, expected);
    tokio::join!(reference.stop(), harness.stop());
}

// ---------------------------------------------------------------------------------------------
// SWAPPING

/// Bags refusing the quote: the run fails in SWAPPING with the claims landed and recorded; the
/// resume swaps once (the same amount: the claims are not redone, and the fake's price is fixed,
/// so the fresh quote gives the same USDC) and completes as the reference.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_quote_fails_swapping_and_the_resume_swaps_once() {
    let setup = Setup::default();
    let ((reference, expected), harness) = tokio::join!(reference(&setup), Harness::start(&setup));
    harness.fault("bags", QUOTE, always(status(400)));
    let run_id = harness.start_run().await;
    let failed = expect_failed(&harness, &run_id, RunState::Swapping, &["BAGS_REJECTED"]).await;
    assert_eq!(failed.claimed_lamports, Some(expected.claimed_lamports));
    let rows = harness.store().txs_for_run(&run_id).await.unwrap();
    assert!(rows.iter().all(|row| row.phase == TxPhase::Claiming));

    harness.sandbox.faults.clear(None);
    let claim_calls = harness.requests("bags", CLAIM_TXS);
    let run = resume_to_end(&harness, &run_id).await;
    assert_eq!(
        harness.requests("bags", CLAIM_TXS),
        claim_calls,
        "CLAIMING is not re-entered"
    );
    assert_eq!(harness.outcome(&run).await, expected);
    tokio::join!(reference.stop(), harness.stop());
}

// ---------------------------------------------------------------------------------------------
// ALLOCATING

/// Helius DAS failing: the run fails in ALLOCATING with HOLDERS_UNAVAILABLE, and nothing of the
/// phase was written (no allocation rows, carry-over untouched); the resume completes as the
/// reference.
#[tokio::test(flavor = "multi_thread")]
async fn holders_unavailable_fails_allocating_without_a_trace_and_the_resume_completes() {
    let setup = Setup::default();
    let ((reference, expected), harness) = tokio::join!(reference(&setup), Harness::start(&setup));
    harness.fault("helius", "getTokenAccounts", always(status(400)));
    let run_id = harness.start_run().await;
    let failed = expect_failed(
        &harness,
        &run_id,
        RunState::Allocating,
        &["HOLDERS_UNAVAILABLE"],
    )
    .await;
    assert_eq!(failed.swapped_usdc_base_units, Some(expected.swapped_usdc));
    assert_eq!(failed.budget_micro_usd, None);
    assert!(
        harness
            .store()
            .allocations_for_run(&run_id)
            .await
            .unwrap()
            .is_empty()
    );
    let strategy = harness
        .store()
        .stored_strategy(&harness.strategy_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(strategy.carry_over_micro_usd, 0);
    assert!(harness.requests("helius", "getTokenAccounts") >= 1);

    harness.sandbox.faults.clear(None);
    let run = resume_to_end(&harness, &run_id).await;
    assert_eq!(harness.outcome(&run).await, expected);
    tokio::join!(reference.stop(), harness.stop());
}

// ---------------------------------------------------------------------------------------------
// PROVISIONING

/// OpenRouter failing some key creations: the others are applied, the failed ones recorded as
/// failed, the run FAILED in PROVISIONING; the resume creates only the missing keys and the run
/// completes as the reference, counting every key it created.
#[tokio::test(flavor = "multi_thread")]
async fn some_key_creations_fail_and_the_resume_creates_only_the_missing_ones() {
    let setup = Setup::default();
    let ((reference, expected), harness) = tokio::join!(reference(&setup), Harness::start(&setup));
    harness.fault(
        "openrouter",
        CREATE_KEY,
        FaultMode::Script {
            steps: vec![
                None,
                Some(status(500)),
                None,
                None,
                Some(status(500)),
                None,
                Some(status(502)),
            ],
        },
    );
    let run_id = harness.start_run().await;
    let failed = expect_failed(
        &harness,
        &run_id,
        RunState::Provisioning,
        &["OPENROUTER_SERVER_ERROR", "OPENROUTER_UNAVAILABLE"],
    )
    .await;
    assert!(failed.allocated_micro_usd.unwrap() > 0);
    let allocations = harness.store().allocations_for_run(&run_id).await.unwrap();
    let failed_rows: Vec<_> = allocations
        .iter()
        .filter(|a| a.status == AllocationStatus::Failed)
        .collect();
    let applied = allocations
        .iter()
        .filter(|a| a.status == AllocationStatus::Applied)
        .count();
    assert_eq!(failed_rows.len(), 3, "{allocations:?}");
    assert_eq!(applied + 3, allocations.len());
    assert!(failed_rows.iter().all(|a| a.last_error.is_some()));
    assert_eq!(harness.sandbox.openrouter.keys().len(), applied);

    harness.sandbox.faults.clear(None);
    let creates = harness.requests("openrouter", CREATE_KEY);
    let run = resume_to_end(&harness, &run_id).await;
    assert_eq!(
        harness.requests("openrouter", CREATE_KEY) - creates,
        3,
        "only the failed holders are retried"
    );
    let outcome = harness.outcome(&run).await;
    assert_eq!(outcome, expected);
    assert_eq!(
        run.keys_created,
        Some(allocations.len() as u64),
        "the run created every key, whichever attempt did"
    );
    tokio::join!(reference.stop(), harness.stop());
}

/// A key created on OpenRouter by an attempt that crashed before recording it (same deterministic
/// name, not in the ledger): the run adopts it and sets its limit instead of creating a second key.
#[tokio::test(flavor = "multi_thread")]
async fn an_orphaned_key_is_adopted_not_duplicated() {
    let setup = Setup::default();
    let ((reference, expected), harness) = tokio::join!(reference(&setup), Harness::start(&setup));
    let wallet = harness.sandbox.world.holder_wallets[0].to_string();
    let name = format!("creditbrain-{}-{wallet}", harness.strategy_id);
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/api/v1/keys", harness.sandbox.openrouter_url))
        .bearer_auth(&harness.sandbox.openrouter_management_key)
        .json(&serde_json::json!({"name": name, "limit": 0.5}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let orphan_hash = created["data"]["hash"].as_str().unwrap().to_string();

    let run = harness.run_to_end().await;
    assert_eq!(harness.outcome(&run).await, expected);
    let adopted = harness
        .store()
        .current_key(&harness.strategy_id, &wallet)
        .await
        .unwrap()
        .expect("the holder has a key");
    assert_eq!(adopted.key_hash, orphan_hash, "the orphan was adopted");
    assert_eq!(
        harness.requests("openrouter", CREATE_KEY),
        expected.keys as u64,
        "ours plus one per holder but the adopted one"
    );
    let audit = harness.store().audit_for_run(&run.run_id).await.unwrap();
    assert!(audit.iter().any(|entry| entry.action == "key_adopted"));
    tokio::join!(reference.stop(), harness.stop());
}

// ---------------------------------------------------------------------------------------------
// The worker (or the coordinator with it) killed mid-phase

/// Waits until `check` holds for the run, then kills the run's worker or the whole coordinator.
async fn kill_when<F>(harness: &Harness, run_id: &str, what: Kill, mut check: F)
where
    F: FnMut(&Harness, &Run) -> bool,
{
    let deadline = tokio::time::Instant::now() + RUN_LIMIT;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reached the kill point"
        );
        let run = harness.run(run_id).await;
        assert!(
            !run.state.is_terminal(),
            "finished before the kill: {run:?}"
        );
        if check(harness, &run) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let coordinator = harness.coordinator().await;
    match what {
        Kill::Worker => {
            let workers = coordinator.get_cell().get_children();
            assert_eq!(workers.len(), 1, "one worker for the one run");
            workers[0].kill();
        }
        Kill::Coordinator => coordinator.get_cell().kill(),
    }
}

#[derive(Clone, Copy, Debug)]
enum Kill {
    Worker,
    Coordinator,
}

/// Killed while a key is being created: from the fourth key on, creations take 800 ms at
/// OpenRouter, and the kill comes while one is in flight. The creation the dead worker started
/// still happens (the call runs in the OpenRouterActor); the restarted worker must wait for it or
/// adopt its key, never create a second one.
async fn killed_while_provisioning(what: Kill) {
    let setup = Setup::default();
    let ((reference, expected), harness) = tokio::join!(reference(&setup), Harness::start(&setup));
    let run_id = harness.start_run().await;
    let mut armed: Option<u64> = None;
    kill_when(&harness, &run_id, what, |harness, run| {
        if run.state != RunState::Provisioning || harness.sandbox.openrouter.keys().len() < 3 {
            return false;
        }
        match armed {
            None => {
                harness.latency("openrouter", CREATE_KEY, 800);
                armed = Some(harness.requests("openrouter", CREATE_KEY));
                false
            }
            // Counted after the slow rule was added, so this creation is the slow one.
            Some(before) => harness.requests("openrouter", CREATE_KEY) > before,
        }
    })
    .await;
    harness.sandbox.faults.clear(None);
    let run = harness
        .wait_for_end_within(&run_id, Duration::from_secs(30))
        .await;
    assert_eq!(run.resume_count, 0, "no resume needed: the worker restarts");
    // No creation fails here, so every one that reached OpenRouter makes a key: wait for the one
    // the dead worker left in flight (it may finish after the run) before counting keys.
    eventually(Duration::from_secs(10), || async {
        (harness.sandbox.openrouter.keys().len() as u64
            == harness.requests("openrouter", CREATE_KEY))
        .then_some(())
    })
    .await;
    assert_eq!(harness.outcome(&run).await, expected);
    assert_eq!(
        run.keys_created,
        Some(expected.keys as u64),
        "every key counted as created, whichever worker created it"
    );
    tokio::join!(reference.stop(), harness.stop());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_killed_while_provisioning_restarts_without_a_duplicate_key() {
    killed_while_provisioning(Kill::Worker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_coordinator_killed_while_provisioning_restarts_without_a_duplicate_key() {
    killed_while_provisioning(Kill::Coordinator).await;
}

/// The coordinator killed while a claim transaction is persisted and in flight (sends take
/// 150 ms): the restarted worker settles it instead of sending another; one landing per position.
#[tokio::test(flavor = "multi_thread")]
async fn the_coordinator_killed_while_claiming_converges_to_one_landing_per_position() {
    let setup = Setup::default();
    let ((reference, expected), harness) = tokio::join!(reference(&setup), Harness::start(&setup));
    harness.latency("rpc", "sendTransaction", 150);
    let run_id = harness.start_run().await;
    let store = harness.store().clone();
    let sent = std::sync::Arc::new(std::sync::Mutex::new(false));
    {
        let (store, sent, run_id) = (store.clone(), sent.clone(), run_id.clone());
        tokio::spawn(async move {
            // The transaction rows are read from another task: `kill_when`'s check is sync.
            loop {
                let rows = store.txs_for_run(&run_id).await.unwrap();
                if rows.iter().any(|row| row.phase == TxPhase::Claiming) {
                    *sent.lock().unwrap() = true;
                    return;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
    }
    kill_when(&harness, &run_id, Kill::Coordinator, |_, _| {
        *sent.lock().unwrap()
    })
    .await;
    let run = harness
        .wait_for_end_within(&run_id, Duration::from_secs(30))
        .await;
    assert_eq!(run.resume_count, 0);
    assert_eq!(harness.outcome(&run).await, expected);
    assert!(
        harness.daemon.handle.restart_counts.snapshot()["coordinator"] >= 1,
        "the supervisor restarted the coordinator"
    );
    tokio::join!(reference.stop(), harness.stop());
}

// ---------------------------------------------------------------------------------------------
// Pool exhaustion

/// $50 of credits, 10 % reserve: $45 of headroom, less than the grants a large pool gives (the
/// reference, $500 of credits, grants about $84: the largest holders reach the $10 grant ceiling
/// and the rest of the budget is carried over). The grants stay within the headroom, the rest of the budget
/// is carried over (on the strategy too), and the keys hold exactly what was granted.
#[tokio::test(flavor = "multi_thread")]
async fn a_short_pool_caps_the_grants_and_carries_the_rest() {
    let short = Setup {
        credits_micro_usd: 50_000_000,
        ..Setup::default()
    };
    let unlimited_setup = Setup::default();
    let ((reference, unlimited), harness) =
        tokio::join!(reference(&unlimited_setup), Harness::start(&short));
    let run = harness.run_to_end().await;
    let outcome = harness.outcome(&run).await;
    assert_eq!(outcome.headroom, 45_000_000);
    assert!(
        unlimited.allocated > outcome.headroom,
        "the reference grants more than the short pool can: {unlimited:?}"
    );
    assert!(outcome.allocated > 0);
    assert!(outcome.allocated <= outcome.headroom, "{outcome:?}");
    assert_eq!(outcome.budget, unlimited.budget);
    assert_eq!(outcome.carry_out, outcome.budget - outcome.allocated);
    assert_eq!(run.skipped_reason, None);
    let limits: i64 = harness
        .sandbox
        .openrouter
        .keys()
        .iter()
        .map(|key| key.limit_micro_usd.unwrap())
        .sum();
    assert_eq!(limits, outcome.allocated);
    tokio::join!(reference.stop(), harness.stop());
}

/// No credits at all: nothing is granted, the whole budget is carried over, the run says
/// `pool_exhausted`, and no key is created.
#[tokio::test(flavor = "multi_thread")]
async fn an_empty_pool_grants_nothing_and_carries_everything() {
    let harness = Harness::start(&Setup {
        credits_micro_usd: 0,
        ..Setup::default()
    })
    .await;
    let run = harness.run_to_end().await;
    let outcome = harness.outcome(&run).await;
    assert_eq!(outcome.allocated, 0);
    assert!(outcome.budget > 0);
    assert_eq!(outcome.carry_out, outcome.budget);
    assert_eq!(run.skipped_reason.as_deref(), Some("pool_exhausted"));
    assert_eq!(run.keys_created, Some(0));
    assert!(harness.sandbox.openrouter.keys().is_empty());
    assert_eq!(harness.requests("openrouter", CREATE_KEY), 0);
    harness.stop().await;
}
