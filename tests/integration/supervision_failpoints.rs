//! Supervision under injected panics (issue 7 item 2): a test-only failpoint
//! (`creditbrain_actors::failpoint`) makes one actor panic in its message handler while a run is
//! in flight — each of the supervised actors in turn, and a RunWorker — and the run must still
//! finish exactly (no resume, the reference figures, every exactness invariant), the actor must
//! be replaced within a second, no other actor may be restarted, and `/health/live` and the
//! admin socket must answer throughout. Past the restart budget (5 restarts in 60 s) the real
//! binary exits 1 for its service manager, and the next start finishes the run it left in
//! flight.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use creditbrain::admin::client::AdminClient;
use creditbrain::admin::protocol::{AdminRequest, AdminResponse};
use creditbrain_actors::failpoint;
use creditbrain_actors::health::HealthMsg;
use creditbrain_actors::keys_maintenance::KeyMaintenanceMsg;
use creditbrain_actors::run::CoordinatorMsg;
use creditbrain_actors::scheduler::SchedulerMsg;
use creditbrain_actors::store::Store;
use creditbrain_actors::store::runs::{NewRun, RunState, TriggeredBy};
use creditbrain_actors::store::transactions::TxPhase;
use ractor::ActorId;

use crate::fault_world::{
    FaultWorld, exact_figures, reference, start_sandbox, world_strategy, world_vars,
};
use crate::support::eventually;

const CREATE_KEY: &str = "POST /api/v1/keys";

/// Which actor panics, and when.
#[derive(Clone, Copy, Debug)]
enum Victim {
    Health,
    OpenRouter,
    Chain,
    Pool,
    Coordinator,
    Keys,
    Scheduler,
    /// The run's own worker, at the start of ALLOCATING (the coordinator restarts it).
    Worker,
}

impl Victim {
    /// The supervisor's role name (the failpoint site and the `restart_counts` key).
    fn role(self) -> &'static str {
        match self {
            Victim::Health => "health",
            Victim::OpenRouter => "openrouter",
            Victim::Chain => "chain",
            Victim::Pool => "pool",
            Victim::Coordinator => "coordinator",
            Victim::Keys => "keys",
            Victim::Scheduler => "scheduler",
            Victim::Worker => "worker",
        }
    }
}

/// `/health/live` and an admin-socket request, back to back until stopped: every failure counted.
struct Prober {
    stop: Arc<AtomicBool>,
    probes: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Prober {
    fn start(world: &FaultWorld) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let probes = Arc::new(AtomicU64::new(0));
        let live = world.url("/health/live");
        let socket = world.daemon.socket_path.clone();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let task = {
            let (stop, probes) = (stop.clone(), probes.clone());
            tokio::spawn(async move {
                let mut errors = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match http.get(&live).send().await {
                        Ok(response) if response.status().is_success() => {}
                        Ok(response) => errors.push(format!("live: {}", response.status())),
                        Err(error) => errors.push(format!("live: {error}")),
                    }
                    let admin = async {
                        let mut client = AdminClient::connect(&socket).await?;
                        client
                            .request(&AdminRequest::ListStrategies { status: None })
                            .await
                    };
                    match admin.await {
                        Ok(AdminResponse::Strategies { .. }) => {}
                        Ok(other) => errors.push(format!("admin: {other:?}")),
                        Err(error) => errors.push(format!("admin: {error}")),
                    }
                    probes.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                errors
            })
        };
        Self { stop, probes, task }
    }

    /// Stops and asserts every probe was answered.
    async fn finish(self) {
        self.stop.store(true, Ordering::SeqCst);
        let errors = self.task.await.unwrap();
        let probes = self.probes.load(Ordering::SeqCst);
        assert!(
            errors.is_empty(),
            "{} of {probes} probes failed: {errors:?}",
            errors.len()
        );
        assert!(probes >= 10, "only {probes} probes");
    }
}

/// The supervisor instance of this daemon (its actors are named `<instance>/<role>#<n>`).
fn instance(world: &FaultWorld) -> String {
    let name = world
        .daemon
        .handle
        .health
        .get()
        .and_then(|health| health.get_name())
        .expect("a named health actor");
    name.split('/').next().unwrap().to_string()
}

/// The id of the victim's current incarnation (`None` while it is down).
fn current_id(world: &FaultWorld, victim: Victim) -> Option<ActorId> {
    let handle = &world.daemon.handle;
    match victim {
        Victim::Health => handle.health.get().map(|a| a.get_id()),
        Victim::OpenRouter => handle.openrouter.get().map(|a| a.get_id()),
        Victim::Chain => handle.chain.get().map(|a| a.get_id()),
        Victim::Pool => handle.pool.get().map(|a| a.get_id()),
        Victim::Coordinator => handle.coordinator.get().map(|a| a.get_id()),
        Victim::Keys => handle.key_maintenance.get().map(|a| a.get_id()),
        Victim::Scheduler => handle.scheduler.get().map(|a| a.get_id()),
        Victim::Worker => handle
            .coordinator
            .get()
            .and_then(|coordinator| coordinator.get_children().first().map(|w| w.get_id())),
    }
}

/// Sends the victim a message of its own, so the armed failpoint fires now (and, for the
/// integration actors, aborts the run's request in flight with it). The worker gets none: its
/// failpoint fires at its next phase.
async fn poke(world: &FaultWorld, victim: Victim) {
    let handle = &world.daemon.handle;
    let timeout = Duration::from_secs(5);
    match victim {
        Victim::Health => handle.health.get().unwrap().cast(HealthMsg::Probe).unwrap(),
        Victim::OpenRouter => {
            let actor = handle.openrouter.get().unwrap();
            let answer = creditbrain_actors::openrouter::actor::credits(&actor, timeout).await;
            assert!(answer.is_err(), "the dying actor cannot answer");
        }
        Victim::Chain => {
            let actor = handle.chain.get().unwrap();
            let answer = creditbrain_actors::chain::actor::signer_balance(&actor, timeout).await;
            assert!(answer.is_err(), "the dying actor cannot answer");
        }
        Victim::Pool => {
            let actor = handle.pool.get().unwrap();
            let answer = creditbrain_actors::pool::pool_status(&actor, 1_000, None, timeout).await;
            assert!(answer.is_err(), "the dying actor cannot answer");
        }
        Victim::Coordinator => {
            let actor = handle.coordinator.get().unwrap();
            let answer = ractor::call_t!(actor, CoordinatorMsg::ActiveRuns, 5_000);
            assert!(answer.is_err(), "the dying actor cannot answer");
        }
        Victim::Keys => handle
            .key_maintenance
            .get()
            .unwrap()
            .cast(KeyMaintenanceMsg::RotateDue {
                requested_by: "failpoint-test".into(),
                reply: None,
            })
            .unwrap(),
        Victim::Scheduler => handle
            .scheduler
            .get()
            .unwrap()
            .cast(SchedulerMsg::Resync)
            .unwrap(),
        Victim::Worker => {}
    }
}

/// Waits until the run is where the victim's panic hurts most, then arms the failpoint.
async fn arm_when_busy(world: &FaultWorld, run_id: &str, victim: Victim) -> String {
    let store = world.store().clone();
    let sandbox_keys = || world.sandbox.openrouter.keys().len();
    match victim {
        // A claim persisted and in flight (sends are slow): its task dies with the ChainActor.
        Victim::Chain => {
            eventually(Duration::from_secs(30), || {
                let store = store.clone();
                async move {
                    let rows = store.txs_for_run(run_id).await.unwrap();
                    rows.iter()
                        .any(|row| row.phase == TxPhase::Claiming)
                        .then_some(())
                }
            })
            .await
        }
        // Keys being created (each takes a while): one creation dies with the OpenRouterActor.
        Victim::OpenRouter => {
            eventually(Duration::from_secs(30), || async {
                (sandbox_keys() >= 3).then_some(())
            })
            .await
        }
        // Before ALLOCATING: the run's pool reading meets the failpoint.
        Victim::Pool | Victim::Worker => {
            world.wait_for_state(run_id, RunState::Swapping).await;
        }
        Victim::Health | Victim::Coordinator | Victim::Keys | Victim::Scheduler => {
            world.wait_for_state(run_id, RunState::Claiming).await;
        }
    }
    let target = match victim {
        Victim::Worker => format!("worker/{run_id}/ALLOCATING"),
        other => format!("{}/{}", instance(world), other.role()),
    };
    failpoint::arm(&target, 1);
    target
}

async fn panic_in_flight(victim: Victim) {
    let expected = reference().await;
    let world = FaultWorld::start(&[]).await;
    // Slow sends and key creations: the run is in flight long enough to be hit mid-phase.
    world.latency("rpc", Some("sendTransaction"), 150);
    world.latency("openrouter", Some(CREATE_KEY), 60);
    let prober = Prober::start(&world);
    let run_id = world.start_run().await;
    let before = current_id(&world, victim).expect("running");

    let target = arm_when_busy(&world, &run_id, victim).await;
    assert!(!world.run(&run_id).await.state.is_terminal());
    match victim {
        Victim::Pool | Victim::Worker => {}
        _ => poke(&world, victim).await,
    }
    eventually(Duration::from_secs(30), || async {
        (failpoint::remaining(&target) == Some(0)).then_some(())
    })
    .await;
    let fired = Instant::now();
    let replaced = eventually(Duration::from_secs(5), || async {
        current_id(&world, victim).filter(|id| *id != before)
    })
    .await;
    let restart = fired.elapsed();
    assert_ne!(replaced, before);
    assert!(
        restart < Duration::from_secs(1),
        "{victim:?} replaced after {restart:?}"
    );
    let counts = world.daemon.handle.restart_counts.snapshot();
    match victim {
        // The coordinator restarts its workers itself.
        Victim::Worker => assert!(counts.is_empty(), "{counts:?}"),
        other => assert_eq!(
            counts.into_iter().collect::<Vec<_>>(),
            vec![(other.role(), 1)],
            "only the victim restarted"
        ),
    }

    let run = world.wait_for_end(&run_id).await;
    assert_eq!(run.resume_count, 0, "finished without a resume");
    // The creation the dying OpenRouterActor abandoned may still reach the fake after the run:
    // it would be an orphan key, which the check below would report.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let figures = world.assert_exact(&run).await;
    assert_eq!(figures, expected);
    prober.finish().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_health_actor_is_replaced_while_a_run_finishes_exactly() {
    panic_in_flight(Victim::Health).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_openrouter_actor_mid_provisioning_is_replaced_and_the_run_finishes_exactly() {
    panic_in_flight(Victim::OpenRouter).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_chain_actor_mid_claim_is_replaced_and_the_run_finishes_exactly() {
    panic_in_flight(Victim::Chain).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_pool_actor_is_replaced_and_the_run_allocates_exactly() {
    panic_in_flight(Victim::Pool).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_coordinator_is_replaced_and_resumes_the_run_exactly() {
    panic_in_flight(Victim::Coordinator).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_key_maintenance_actor_is_replaced_while_a_run_finishes_exactly() {
    panic_in_flight(Victim::Keys).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_scheduler_is_replaced_while_a_run_finishes_exactly() {
    panic_in_flight(Victim::Scheduler).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_run_worker_is_restarted_from_its_checkpoint_and_finishes_exactly() {
    panic_in_flight(Victim::Worker).await;
}

const BINARY: &str = env!("CARGO_BIN_EXE_creditbrain");

/// The real binary with `CREDITBRAIN_FAILPOINTS=keys:always`: every message to the key
/// maintenance actor kills it. A run is in flight (slow key creations); reconcile requests over
/// the admin socket kill the actor six times, one more than the budget of 5 in 60 s, and the
/// process exits 1. Started again without the failpoint on the same database, it finishes the
/// run it left in flight, exactly.
#[tokio::test(flavor = "multi_thread")]
async fn past_the_restart_budget_the_binary_exits_1_and_the_next_start_finishes_the_run() {
    let expected = reference().await;
    let sandbox = start_sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let vars = world_vars(&sandbox, dir.path(), &[("LOG_LEVEL", "info")]);
    let database = dir.path().join("world.db");
    let socket = dir.path().join("world.sock");
    // Provisioning takes seconds (key creations run many at a time, so each one is slow), so
    // the run is still in flight when the daemon gives up.
    sandbox
        .faults
        .add_rule(creditbrain::sandbox::faults::FaultRule {
            fake: "openrouter".into(),
            route: Some(CREATE_KEY.into()),
            latency: Some(creditbrain::sandbox::faults::Latency::Fixed { ms: 6_000 }),
            mode: None,
        });
    let store = Store::open(&database).await.unwrap();
    let strategy_id = store
        .insert_strategy(&world_strategy(&sandbox))
        .await
        .unwrap()
        .strategy_id;
    let strategy = store.stored_strategy(&strategy_id).await.unwrap().unwrap();
    // Recorded before the start: the coordinator picks it up as a run in flight.
    let run_id = store
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
        .unwrap()
        .run
        .run_id;

    let log_path = dir.path().join("daemon.log");
    let spawn = |failpoints: Option<&str>| {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let mut command = tokio::process::Command::new(BINARY);
        command
            .arg("serve")
            .env_clear()
            .envs(&vars)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true);
        if let Some(failpoints) = failpoints {
            command.env(failpoint::ENV_VAR, failpoints);
        }
        command.spawn().unwrap()
    };

    let mut daemon = spawn(Some("keys:always"));
    eventually(Duration::from_secs(30), || async {
        let run = store.run(&run_id).await.unwrap().unwrap();
        assert!(!run.state.is_terminal(), "{run:?}");
        (run.state == RunState::Provisioning).then_some(())
    })
    .await;
    // Each reconcile reaches the key maintenance actor (while it is up) and kills it.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = daemon.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the daemon is still running past its restart budget"
        );
        if let Ok(mut client) = AdminClient::connect(&socket).await {
            let _ = client
                .request(&AdminRequest::Reconcile { fix: false })
                .await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(1), "{status:?}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("test-only failpoints armed"), "{log}");
    assert_eq!(log.matches("actor died, restarting").count(), 5, "{log}");
    assert!(log.contains("restart budget exhausted, stopping"), "{log}");
    let left = store.run(&run_id).await.unwrap().unwrap();
    assert!(
        !left.state.is_terminal(),
        "the run is left in flight: {left:?}"
    );

    // The service manager starts it again (no failpoint): the run resumes by itself.
    let mut daemon = spawn(None);
    let run = eventually(Duration::from_secs(60), || async {
        let run = store.run(&run_id).await.unwrap().unwrap();
        run.state.is_terminal().then_some(run)
    })
    .await;
    assert_eq!(run.resume_count, 0, "no operator resume needed");
    // SIGTERM: a clean stop (exit 0) before the checks read the store alone.
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(daemon.id().unwrap() as i32, libc::SIGTERM);
    }
    let status = tokio::time::timeout(Duration::from_secs(30), daemon.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let figures = exact_figures(&sandbox, &store, &strategy_id, &run).await;
    assert_eq!(figures, expected);
    store.close().await;
}
