//! Crash-exactness under SIGKILL (issue 7): the real `creditbrain serve` binary runs against the
//! sandbox fakes (which live in this test process, so the world survives every kill), with
//! latency on every fake, driving runs of two strategies (Bags fee positions and partner fees) at
//! once. It is killed with SIGKILL at seeded random instants — during start-up, in every phase,
//! between a send and its checkpoint — and restarted on the same database, which picks up the
//! runs in flight; FAILED runs are resumed; new fees and runs keep arriving. Then everything is
//! let finish and checked against the fakes' own state:
//!
//! - every run is COMPLETE;
//! - no Solana transaction landed twice, every landing is a recorded `landed` row, one per purpose;
//! - no two OpenRouter keys share a name, and each key's limit is the sum of the grants the runs
//!   recorded for that holder and strategy (and the ledger's limit too);
//! - Σ grants + carry-over = budget for every run;
//! - reconcile reports no drift.
//!
//! `CRASH_KILLS` (default 10, the CI size) and `CRASH_SEED` choose the campaign;
//! `scripts/crash-campaign` runs a long one and keeps its summary.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use creditbrain::config::Config;
use creditbrain::sandbox::faults::{FaultRule, Latency};
use creditbrain::sandbox::ledger::LedgerOptions;
use creditbrain::sandbox::world::{LAMPORTS_PER_SOL, WorldOptions};
use creditbrain::sandbox::{Sandbox, SandboxOptions};
use creditbrain_actors::store::Store;
use creditbrain_actors::store::allocations::AllocationStatus;
use creditbrain_actors::store::runs::{NewRun, Run, RunFilter, RunState, TriggeredBy};
use creditbrain_actors::store::transactions::TxStatus;
use creditbrain_actors::strategy::{StrategyInput, StrategySpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use solana_sdk::signature::Signer;

const BINARY: &str = env!("CARGO_BIN_EXE_creditbrain");

/// How many times a run may be resumed before the campaign calls it stuck.
const MAX_RESUMES: u32 = 30;

struct Campaign {
    seed: u64,
    kills: usize,
}

impl Campaign {
    fn from_env() -> Self {
        let number = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .map(|text| text.parse().unwrap_or_else(|_| panic!("{name}={text:?}")))
                .unwrap_or(default)
        };
        Self {
            seed: number("CRASH_SEED", 20_261_128),
            kills: number("CRASH_KILLS", 10) as usize,
        }
    }
}

/// What the campaign did, printed at the end (the closing note quotes it).
#[derive(Default, Debug)]
struct Summary {
    kills: usize,
    /// Run states seen right after each kill (runs in flight at that moment).
    killed_in: BTreeMap<String, usize>,
    kills_with_nothing_in_flight: usize,
    runs: usize,
    resumes: u32,
    landings: usize,
    keys: usize,
    grants: usize,
}

struct World {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    vars: BTreeMap<String, String>,
    strategies: Vec<String>,
    /// Partner fees credited so far (the fake's setter takes a running total).
    partner_fees: u64,
}

impl World {
    async fn start() -> Self {
        let sandbox = Sandbox::start(SandboxOptions {
            world: WorldOptions {
                holders: 12,
                ..WorldOptions::default()
            },
            ledger: LedgerOptions {
                slot_duration: Duration::from_millis(20),
                ..LedgerOptions::default()
            },
            ..SandboxOptions::default()
        })
        .await
        .unwrap();
        // Every request takes a little while, so kills land inside phases and between a send
        // and its checkpoint.
        for (fake, min_ms, max_ms) in [
            ("bags", 10, 60),
            ("rpc", 10, 60),
            ("helius", 10, 40),
            // Slower: provisioning (many key calls at once) is otherwise too short to be hit.
            ("openrouter", 300, 1_200),
        ] {
            sandbox.faults.add_rule(FaultRule {
                fake: fake.into(),
                route: None,
                latency: Some(Latency::Uniform { min_ms, max_ms }),
                mode: None,
            });
        }
        let signer = sandbox.world.signer.pubkey();
        let partner_fees = 2 * LAMPORTS_PER_SOL;
        sandbox.bags.set_partner_fees(&signer, partner_fees);

        let dir = tempfile::tempdir().unwrap();
        let mut vars = sandbox.daemon_vars();
        for (name, value) in [
            ("API_AUTH_TOKEN", "crash-campaign-token-0123456789abcdef"),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("KEY_LIMIT_RESET", "null"),
            ("MAX_DAILY_RUNS", "0"),
            ("MAX_KEY_LIMIT_USD", "10000"),
            ("HEALTH_PROBE_INTERVAL_SEC", "1"),
            ("BREAKER_COOLDOWN_SEC", "1"),
            ("LOG_LEVEL", "info"),
        ] {
            vars.insert(name.into(), value.into());
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
        let store = Store::open(&config.database_path).await.unwrap();
        let mut strategies = Vec::new();
        for (source, mode) in [
            ("CLAIMABLE_POSITIONS", "TOP_N_HOLDERS"),
            ("PARTNER_FEES", "EQUAL_SPLIT"),
        ] {
            let input = StrategyInput {
                owner_wallet: Some(signer.to_string()),
                fee_source: Some(source.into()),
                distribution_mode: Some(mode.into()),
                top_n: Some("8".into()),
                max_grant_usd: Some("5".into()),
                // Once a year: the scheduler stays out of the campaign's way.
                schedule: Some("0 0 1 1 *".into()),
                ..StrategyInput::default()
            };
            let spec = StrategySpec::from_input(&input, &config.strategy_defaults())
                .unwrap_or_else(|errors| panic!("{errors}"));
            strategies.push(
                store
                    .create_strategy(&spec, "crash-campaign")
                    .await
                    .unwrap()
                    .strategy_id,
            );
        }
        store.close().await;
        Self {
            sandbox,
            dir,
            vars,
            strategies,
            partner_fees,
        }
    }

    fn database(&self) -> std::path::PathBuf {
        self.dir.path().join("crash.db")
    }

    async fn store(&self) -> Store {
        Store::open(&self.database()).await.unwrap()
    }

    /// The daemon as a service manager starts it, its output appended to `daemon.log`.
    fn spawn_daemon(&self) -> tokio::process::Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .unwrap();
        tokio::process::Command::new(BINARY)
            .arg("serve")
            .env_clear()
            .envs(&self.vars)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    /// With the daemon down: resumes FAILED runs (each at most MAX_RESUMES times); when nothing
    /// is in flight or failed, credits new fees and starts a run per strategy.
    async fn ensure_work(&mut self, store: &Store, summary: &mut Summary) {
        let runs = all_runs(store).await;
        let mut pending = false;
        for run in &runs {
            if run.state == RunState::Failed {
                assert!(
                    run.resume_count < MAX_RESUMES,
                    "run {} keeps failing: {:?} {:?} in {:?}",
                    run.run_id,
                    run.error_code,
                    run.error_detail,
                    run.error_failed_state
                );
                store.resume(&run.run_id, "crash-campaign").await.unwrap();
                summary.resumes += 1;
                pending = true;
            } else if !run.state.is_terminal() {
                pending = true;
            }
        }
        if pending {
            return;
        }
        let signer = self.sandbox.world.signer.pubkey();
        let mint = self.sandbox.world.positions[0].0;
        self.sandbox
            .bags
            .add_position(&signer, &mint, 3 * LAMPORTS_PER_SOL / 2);
        self.partner_fees += 3 * LAMPORTS_PER_SOL / 2;
        self.sandbox.bags.set_partner_fees(&signer, {
            let (claimed, _) = self.sandbox.bags.partner_fees(&signer).unwrap_or((0, 0));
            self.partner_fees - claimed
        });
        for strategy_id in &self.strategies {
            let strategy = store.stored_strategy(strategy_id).await.unwrap().unwrap();
            store
                .create_run(
                    &NewRun {
                        run_id: None,
                        strategy_id: strategy_id.clone(),
                        triggered_by: TriggeredBy::Manual,
                        dry_run: false,
                        strategy_snapshot: strategy.to_json(),
                    },
                    0,
                )
                .await
                .unwrap();
        }
    }
}

async fn all_runs(store: &Store) -> Vec<Run> {
    store
        .runs(&RunFilter {
            limit: 10_000,
            ..RunFilter::default()
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_instants_never_lands_twice_duplicates_a_key_or_loses_a_grant() {
    let campaign = Campaign::from_env();
    let mut rng = StdRng::seed_from_u64(campaign.seed);
    let mut world = World::start().await;
    let mut summary = Summary::default();

    for _ in 0..campaign.kills {
        let store = world.store().await;
        world.ensure_work(&store, &mut summary).await;
        store.close().await;
        let mut daemon = world.spawn_daemon();
        // From "still starting" to "well into provisioning" (runs here take about 1-2 s).
        let delay = rng.gen_range(30..3_000);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        daemon.start_kill().unwrap();
        daemon.wait().await.unwrap();
        summary.kills += 1;
        let store = world.store().await;
        let in_flight: Vec<Run> = all_runs(&store)
            .await
            .into_iter()
            .filter(|run| !run.state.is_terminal())
            .collect();
        if in_flight.is_empty() {
            summary.kills_with_nothing_in_flight += 1;
        }
        for run in in_flight {
            *summary
                .killed_in
                .entry(run.state.as_str().to_string())
                .or_default() += 1;
        }
        store.close().await;
    }

    // Let everything finish: resume what failed until every run is COMPLETE.
    for _round in 0..MAX_RESUMES {
        let store = world.store().await;
        let runs = all_runs(&store).await;
        if runs.iter().all(|run| run.state == RunState::Complete) {
            store.close().await;
            break;
        }
        if runs.iter().all(|run| run.state.is_terminal()) {
            world.ensure_work(&store, &mut summary).await;
        }
        store.close().await;
        let mut daemon = world.spawn_daemon();
        let store = world.store().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        while tokio::time::Instant::now() < deadline {
            if all_runs(&store)
                .await
                .iter()
                .all(|run| run.state.is_terminal())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        store.close().await;
        terminate(&mut daemon).await;
    }

    let store = world.store().await;
    check(&world, &store, &mut summary).await;
    store.close().await;

    // Reconcile, in a daemon on the same database: the ledger and OpenRouter agree.
    let config = Config::from_vars(&world.vars).unwrap();
    let daemon = creditbrain::daemon::start(&config).await.unwrap();
    let report = creditbrain::ops::reconcile(&daemon.handle, false, "crash-campaign")
        .await
        .unwrap();
    assert!(report.is_empty(), "reconcile found drift: {report:?}");
    daemon.shutdown_trigger().trigger();
    daemon.wait().await.unwrap();

    println!(
        "crash campaign: seed {} kills {} runs {} resumes {} landings {} keys {} grants {}; \
         killed with runs in {:?}, {} kills with nothing in flight",
        campaign.seed,
        summary.kills,
        summary.runs,
        summary.resumes,
        summary.landings,
        summary.keys,
        summary.grants,
        summary.killed_in,
        summary.kills_with_nothing_in_flight,
    );
    assert!(summary.runs >= 2);
}

/// SIGTERM, then wait (a graceful stop); SIGKILL if it hangs.
async fn terminate(daemon: &mut tokio::process::Child) {
    if let Some(pid) = daemon.id() {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(Duration::from_secs(30), daemon.wait())
        .await
        .is_err()
    {
        daemon.start_kill().unwrap();
        daemon.wait().await.unwrap();
    }
}

async fn check(world: &World, store: &Store, summary: &mut Summary) {
    let runs = all_runs(store).await;
    summary.runs = runs.len();
    for run in &runs {
        assert_eq!(
            run.state,
            RunState::Complete,
            "run {} ended {:?} {:?} in {:?}",
            run.run_id,
            run.error_code,
            run.error_detail,
            run.error_failed_state
        );
    }

    // No transaction landed twice; every landing is recorded, one per run and purpose.
    let mut landed_rows = BTreeMap::new();
    for run in &runs {
        for row in store.txs_for_run(&run.run_id).await.unwrap() {
            if row.status == TxStatus::Landed {
                let previous = landed_rows.insert(
                    (run.run_id.clone(), row.purpose.clone()),
                    row.signature.clone(),
                );
                assert!(
                    previous.is_none(),
                    "{} {} landed twice",
                    run.run_id,
                    row.purpose
                );
            }
        }
    }
    let ledger_landings: Vec<String> = world
        .sandbox
        .ledger
        .received()
        .iter()
        .filter(|tx| tx.landed_slot.is_some() && !tx.duplicate)
        .map(|tx| tx.signature.to_string())
        .collect();
    let unique: BTreeSet<&String> = ledger_landings.iter().collect();
    assert_eq!(
        unique.len(),
        ledger_landings.len(),
        "a signature landed twice"
    );
    let recorded: BTreeSet<&String> = landed_rows.values().collect();
    assert_eq!(
        unique, recorded,
        "the ledger's landings are exactly the recorded ones"
    );
    summary.landings = ledger_landings.len();

    // Σ grants + carry-over = budget, and the grants applied per key.
    let mut granted: BTreeMap<(String, String), i64> = BTreeMap::new();
    for run in &runs {
        let allocations = store.allocations_for_run(&run.run_id).await.unwrap();
        let live: i64 = allocations
            .iter()
            .filter(|a| a.status != AllocationStatus::Skipped)
            .map(|a| a.grant_micro_usd)
            .sum();
        if let Some(budget) = run.budget_micro_usd {
            assert_eq!(run.allocated_micro_usd, Some(live), "run {}", run.run_id);
            assert_eq!(
                live + run.carry_out_micro_usd.unwrap(),
                budget,
                "run {}",
                run.run_id
            );
        }
        for allocation in allocations {
            assert_ne!(
                allocation.status,
                AllocationStatus::Pending,
                "run {} COMPLETE with a pending grant",
                run.run_id
            );
            if allocation.status == AllocationStatus::Applied {
                summary.grants += 1;
                *granted
                    .entry((run.strategy_id.clone(), allocation.holder_wallet.clone()))
                    .or_default() += allocation.grant_micro_usd;
            }
        }
    }

    // One key per holder and strategy; its limit on OpenRouter and in the ledger is what the
    // runs granted.
    let remote = world.sandbox.openrouter.keys();
    let names: BTreeSet<&String> = remote.iter().map(|key| &key.name).collect();
    assert_eq!(
        names.len(),
        remote.len(),
        "two OpenRouter keys share a name"
    );
    summary.keys = remote.len();
    assert_eq!(
        remote.len(),
        granted.len(),
        "one key per holder who was granted"
    );
    for ((strategy_id, wallet), total) in &granted {
        let name = format!("creditbrain-{strategy_id}-{wallet}");
        let key = remote
            .iter()
            .find(|key| key.name == name)
            .unwrap_or_else(|| panic!("no key {name}"));
        assert_eq!(key.limit_micro_usd, Some(*total), "{name}");
        let ledger = store
            .current_key(strategy_id, wallet)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ledger.key_hash, key.hash, "{name}");
        assert_eq!(ledger.limit_micro_usd, *total, "{name}");
    }
}
