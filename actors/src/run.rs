//! Runs: the RunCoordinator applies the execution policy (kill switch, daily cap, one active run
//! per strategy), records every run — blocked ones too — and supervises one RunWorker per run,
//! which drives the phases from the run's checkpoint and is restarted if it panics.

pub mod allowance;
pub mod phases;
pub mod provision;

use std::collections::HashMap;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde_json::json;

use self::phases::PhaseError;
use crate::chain::actor::ChainMsg;
use crate::keyvault::KeyVault;
use crate::openrouter::OpenRouterMsg;
use crate::pool::PoolMsg;
use crate::store::Store;
use crate::store::cancel::CancelledRun;
use crate::store::runs::{NewRun, RunError, RunFilter, RunState, TriggeredBy, fail_on};
use crate::store::strategies::StoredStrategy;
use crate::strategy::StrategyStatus;
use crate::supervisor::ActorSlot;

/// Limits and settings every run follows (from the environment).
#[derive(Clone, Debug)]
pub struct RunPolicy {
    /// EXECUTION_KILL_SWITCH: blocks every run (the runtime toggle is in the store).
    pub kill_switch_env: bool,
    /// DRY_RUN: the default for runs that do not say.
    pub dry_run_default: bool,
    /// MAX_DAILY_RUNS per strategy per UTC day (0 = unlimited).
    pub max_daily_runs: u32,
    /// MAX_CLAIMABLE_SOL_PER_RUN in lamports.
    pub max_claimable_lamports_per_run: u64,
    /// SOL kept back from each swap for transaction fees.
    pub sol_float_lamports: u64,
    /// The smallest grant made (one cent): no $0 keys.
    pub min_grant_micro_usd: i64,
    /// How long one call to an integration actor may take, retries included.
    pub call_timeout: Duration,
    /// This daemon's id in `run_leases`.
    pub instance_id: String,
    /// A run's lease lasts this long without renewal (renewed at every phase).
    pub lease_ttl: Duration,
    /// Restarts of one run's worker after panics before the run is failed.
    pub max_worker_restarts: u32,
    /// Allocations PROVISIONING keeps in flight (at least 1). Twice the OpenRouterActor's
    /// concurrency is right: each application also reads and writes the store, and while some
    /// do, the others keep every OpenRouter permit busy (the actor still caps the requests).
    pub provision_concurrency: usize,
}

/// What a worker needs: the store, the integration actors' slots and the vault.
#[derive(Clone)]
pub struct RunContext {
    pub store: Store,
    pub chain: ActorSlot<ChainMsg>,
    pub openrouter: ActorSlot<OpenRouterMsg>,
    pub pool: ActorSlot<PoolMsg>,
    pub vault: KeyVault,
    pub policy: RunPolicy,
}

impl RunContext {
    fn chain(&self) -> Result<ActorRef<ChainMsg>, PhaseError> {
        self.chain
            .get()
            .ok_or_else(|| PhaseError::new("CHAIN_ACTOR_DOWN", "the chain actor is restarting"))
    }

    fn openrouter(&self) -> Result<ActorRef<OpenRouterMsg>, PhaseError> {
        self.openrouter.get().ok_or_else(|| {
            PhaseError::new(
                "OPENROUTER_ACTOR_DOWN",
                "the openrouter actor is restarting",
            )
        })
    }

    fn pool(&self) -> Result<ActorRef<PoolMsg>, PhaseError> {
        self.pool
            .get()
            .ok_or_else(|| PhaseError::new("POOL_ACTOR_DOWN", "the pool actor is restarting"))
    }

    /// The ids of the integration actors a phase calls (`None` while one is restarting).
    fn integration_actors(&self) -> [Option<ractor::ActorId>; 3] {
        [
            self.chain.get().map(|actor| actor.get_id()),
            self.openrouter.get().map(|actor| actor.get_id()),
            self.pool.get().map(|actor| actor.get_id()),
        ]
    }

    /// Whether an integration actor was down or replaced since `before` was taken. A caller
    /// can see its call fail before the supervisor has noticed the death (and cleared the
    /// slot), so a death is waited for briefly rather than judged at once.
    async fn integration_actor_replaced(&self, before: &[Option<ractor::ActorId>; 3]) -> bool {
        if before.iter().any(Option::is_none) {
            return true;
        }
        let deadline = tokio::time::Instant::now() + ACTOR_DEATH_NOTICE;
        loop {
            if self.integration_actors() != *before {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits (bounded) until every integration actor is running again after a restart.
    async fn integration_actors_back(&self) -> bool {
        let deadline = tokio::time::Instant::now() + ACTOR_RESTART_WAIT;
        loop {
            if self.integration_actors().iter().all(Option::is_some) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The codes of a phase that failed because an integration actor died under it (or was not
/// there while it restarted), not because of the integration: the worker waits for the
/// supervisor's replacement and re-runs the phase instead of failing the run.
const ACTOR_DOWN_CODES: [&str; 3] = [
    "CHAIN_ACTOR_DOWN",
    "OPENROUTER_ACTOR_DOWN",
    "POOL_ACTOR_DOWN",
];

/// How long a worker whose call found an integration actor dead waits for the supervisor to
/// notice (it clears the actor's slot within milliseconds).
const ACTOR_DEATH_NOTICE: Duration = Duration::from_secs(2);

/// How long a worker waits for a restarted integration actor (the supervisor's backoff is at
/// most 800 ms).
const ACTOR_RESTART_WAIT: Duration = Duration::from_secs(10);

/// What starting (or resuming) a run answered at once; the run goes on in its worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartedRun {
    pub run_id: String,
    /// `PENDING` (or the resumed phase) when it runs; `FAILED` when the policy blocked it, with
    /// the code.
    pub state: RunState,
    pub blocked_code: Option<String>,
}

#[derive(thiserror::Error, Debug)]
pub enum CoordinatorError {
    #[error("strategy {0} not found")]
    StrategyNotFound(String),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("run coordinator is not running")]
    ActorDown,
    #[error("run coordinator did not answer within {} s", .0.as_secs())]
    ActorTimeout(Duration),
}

impl CoordinatorError {
    pub fn code(&self) -> &'static str {
        match self {
            CoordinatorError::StrategyNotFound(_) => "STRATEGY_NOT_FOUND",
            CoordinatorError::Run(RunError::NotFound { .. }) => "RUN_NOT_FOUND",
            CoordinatorError::Run(
                RunError::NotResumable { .. }
                | RunError::NeverStarted { .. }
                | RunError::Cancelled { .. },
            ) => "RUN_NOT_RESUMABLE",
            CoordinatorError::Run(RunError::NotCancellable { .. }) => "RUN_NOT_CANCELLABLE",
            CoordinatorError::Run(RunError::RunInProgress { .. }) => "RUN_IN_PROGRESS",
            CoordinatorError::Run(RunError::Store(store)) if store.is_locked() => "DB_LOCKED",
            CoordinatorError::Run(_) => "RUN_ERROR",
            CoordinatorError::ActorDown => "COORDINATOR_DOWN",
            CoordinatorError::ActorTimeout(_) => "COORDINATOR_TIMEOUT",
        }
    }
}

type Reply<T> = RpcReplyPort<Result<T, CoordinatorError>>;

pub enum CoordinatorMsg {
    /// Starts a run of a strategy (policy first; a blocked run is recorded as FAILED).
    Start {
        strategy_id: String,
        triggered_by: TriggeredBy,
        dry_run: Option<bool>,
        reply: Reply<StartedRun>,
    },
    /// Resumes a FAILED run at the phase that failed.
    Resume {
        run_id: String,
        reply: Reply<StartedRun>,
    },
    /// Cancels a FAILED run that will not be resumed: its unapplied grants are released (and
    /// carried over in credits mode); it can no longer be resumed.
    Cancel {
        run_id: String,
        reason: String,
        actor: String,
        reply: Reply<CancelledRun>,
    },
    /// Sets the runtime kill switch (persisted and audited).
    SetKillSwitch {
        on: bool,
        actor: String,
        reply: Reply<bool>,
    },
    /// The ids of the runs whose workers are running.
    ActiveRuns(RpcReplyPort<Vec<String>>),
}

pub struct RunCoordinator;

pub struct CoordinatorState {
    context: RunContext,
    /// Worker cell id → (run id, restarts so far).
    workers: HashMap<ractor::ActorId, (String, u32)>,
}

impl Actor for RunCoordinator {
    type Msg = CoordinatorMsg;
    type State = CoordinatorState;
    type Arguments = RunContext;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        context: RunContext,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(CoordinatorState {
            context,
            workers: HashMap::new(),
        })
    }

    /// Picks up runs a previous process (or coordinator) left in flight: they continue from
    /// their checkpoint.
    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let mut in_flight = Vec::new();
        for run_state in [
            RunState::Pending,
            RunState::Claiming,
            RunState::Swapping,
            RunState::Bridging,
            RunState::Allocating,
            RunState::Provisioning,
        ] {
            let filter = RunFilter {
                state: Some(run_state),
                limit: 1_000,
                ..RunFilter::default()
            };
            match state.context.store.runs(&filter).await {
                Ok(runs) => in_flight.extend(runs),
                Err(error) => tracing::warn!(error = %error, "cannot list runs in flight"),
            }
        }
        for run in in_flight {
            let policy = &state.context.policy;
            let leased = state
                .context
                .store
                .acquire_lease(
                    &run.strategy_id,
                    &run.run_id,
                    &policy.instance_id,
                    policy.lease_ttl,
                )
                .await
                .unwrap_or(false);
            if leased {
                tracing::info!(runId = %run.run_id, state = %run.state.as_str(), "resuming run in flight");
                spawn_worker(&myself, state, run.run_id.clone(), 0).await;
            } else {
                tracing::warn!(runId = %run.run_id, "run in flight is leased by another instance");
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        crate::failpoint::check_actor(&myself);
        match message {
            CoordinatorMsg::Start {
                strategy_id,
                triggered_by,
                dry_run,
                reply,
            } => {
                let started = start(&myself, state, &strategy_id, triggered_by, dry_run).await;
                let _ = reply.send(started);
            }
            CoordinatorMsg::Resume { run_id, reply } => {
                let resumed = resume(&myself, state, &run_id).await;
                let _ = reply.send(resumed);
            }
            CoordinatorMsg::Cancel {
                run_id,
                reason,
                actor,
                reply,
            } => {
                // Here, not in the frontend, so a cancel and a resume of one run never interleave.
                let driven = state.workers.values().any(|(run, _)| *run == run_id);
                let result = if driven {
                    Err(CoordinatorError::Run(RunError::NotCancellable {
                        run_id,
                        why: "a worker is driving it".into(),
                    }))
                } else {
                    state
                        .context
                        .store
                        .cancel_run(&run_id, &actor, &reason)
                        .await
                        .map_err(CoordinatorError::Run)
                };
                let _ = reply.send(result);
            }
            CoordinatorMsg::SetKillSwitch { on, actor, reply } => {
                let result = state
                    .context
                    .store
                    .set_kill_switch(on, &actor)
                    .await
                    .map_err(|error| CoordinatorError::Run(RunError::Store(error)));
                let _ = reply.send(result);
            }
            CoordinatorMsg::ActiveRuns(reply) => {
                let _ = reply.send(state.workers.values().map(|(run, _)| run.clone()).collect());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, error) = match event {
            // A worker stops itself once its run is COMPLETE or FAILED; stopped (or killed) with
            // its run still in flight, it died like one that panicked.
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let Some((run_id, _)) = state.workers.get(&cell.get_id()) else {
                    return Ok(());
                };
                // Stopped on purpose: the run ended (it may already have been resumed, and then a
                // new worker drives it — restarting this one would make two drivers), or another
                // instance took the run over.
                if matches!(reason.as_deref(), Some(RUN_ENDED) | Some(LEASE_LOST)) {
                    state.workers.remove(&cell.get_id());
                    return Ok(());
                }
                // Another worker already drives this run (e.g. started by a resume): never two.
                let run_id = run_id.clone();
                let drivers = state
                    .workers
                    .values()
                    .filter(|(run, _)| *run == run_id)
                    .count();
                if drivers > 1 {
                    state.workers.remove(&cell.get_id());
                    return Ok(());
                }
                let run_id = &run_id;
                match state.context.store.run(run_id).await {
                    Ok(Some(run)) if !run.state.is_terminal() => {}
                    _ => {
                        state.workers.remove(&cell.get_id());
                        return Ok(());
                    }
                }
                let reason = reason.unwrap_or_else(|| "stopped".to_string());
                (
                    cell,
                    format!("terminated ({reason}) with its run in flight"),
                )
            }
            SupervisionEvent::ActorFailed(cell, error) => (cell, error.to_string()),
            _ => return Ok(()),
        };
        let Some((run_id, restarts)) = state.workers.remove(&cell.get_id()) else {
            return Ok(());
        };
        if restarts < state.context.policy.max_worker_restarts {
            tracing::warn!(runId = %run_id, error = %error, restarts, "run worker died, restarting from the checkpoint");
            spawn_worker(&myself, state, run_id, restarts + 1).await;
        } else {
            tracing::error!(runId = %run_id, error = %error, "run worker keeps dying, failing the run");
            fail_current(
                &state.context,
                &run_id,
                "WORKER_CRASHED",
                &format!("the run worker died {} times: {error}", restarts + 1),
            )
            .await;
        }
        Ok(())
    }
}

async fn start(
    myself: &ActorRef<CoordinatorMsg>,
    state: &mut CoordinatorState,
    strategy_id: &str,
    triggered_by: TriggeredBy,
    dry_run: Option<bool>,
) -> Result<StartedRun, CoordinatorError> {
    let context = &state.context;
    let store = &context.store;
    let strategy: StoredStrategy = store
        .stored_strategy(strategy_id)
        .await
        .map_err(|error| CoordinatorError::Run(RunError::Store(error)))?
        .ok_or_else(|| CoordinatorError::StrategyNotFound(strategy_id.to_string()))?;
    let new = NewRun {
        run_id: None,
        strategy_id: strategy_id.to_string(),
        triggered_by,
        dry_run: dry_run.unwrap_or(context.policy.dry_run_default),
        strategy_snapshot: strategy.to_json(),
    };
    let kill_switch = context.policy.kill_switch_env
        || store
            .kill_switch()
            .await
            .map_err(|error| CoordinatorError::Run(RunError::Store(error)))?;
    let blocked = if kill_switch {
        Some((
            "KILL_SWITCH",
            "the kill switch is on (EXECUTION_KILL_SWITCH or `creditbrain kill-switch on`)"
                .to_string(),
        ))
    } else if strategy.spec.status == StrategyStatus::Paused {
        Some((
            "STRATEGY_PAUSED",
            format!("strategy {strategy_id} is paused"),
        ))
    } else {
        None
    };
    if let Some((code, detail)) = blocked {
        return record_blocked(store, &new, code, &detail).await;
    }
    let created = match store.create_run(&new, context.policy.max_daily_runs).await {
        Ok(created) => created,
        Err(RunError::DailyLimit { .. }) => {
            let detail = format!(
                "MAX_DAILY_RUNS ({}) runs already started today (UTC) for strategy {strategy_id}",
                context.policy.max_daily_runs
            );
            return record_blocked(store, &new, "DAILY_LIMIT", &detail).await;
        }
        Err(RunError::RunInProgress { active_run_id, .. }) => {
            let detail = format!(
                "strategy {strategy_id} already has an active run{}",
                active_run_id
                    .map(|id| format!(" ({id})"))
                    .unwrap_or_default()
            );
            return record_blocked(store, &new, "RUN_IN_PROGRESS", &detail).await;
        }
        Err(error) => return Err(error.into()),
    };
    let run_id = created.run.run_id.clone();
    let policy = &context.policy;
    if !store
        .acquire_lease(strategy_id, &run_id, &policy.instance_id, policy.lease_ttl)
        .await?
    {
        fail_current(
            context,
            &run_id,
            "RUN_IN_PROGRESS",
            "another instance holds this strategy's run lease",
        )
        .await;
        return Ok(StartedRun {
            run_id,
            state: RunState::Failed,
            blocked_code: Some("RUN_IN_PROGRESS".into()),
        });
    }
    spawn_worker(myself, state, run_id.clone(), 0).await;
    Ok(StartedRun {
        run_id,
        state: RunState::Pending,
        blocked_code: None,
    })
}

async fn record_blocked(
    store: &Store,
    new: &NewRun,
    code: &str,
    detail: &str,
) -> Result<StartedRun, CoordinatorError> {
    tracing::warn!(strategyId = %new.strategy_id, code, "run blocked by policy");
    let run = store.create_blocked_run(new, code, detail).await?;
    Ok(StartedRun {
        run_id: run.run_id,
        state: RunState::Failed,
        blocked_code: Some(code.to_string()),
    })
}

async fn resume(
    myself: &ActorRef<CoordinatorMsg>,
    state: &mut CoordinatorState,
    run_id: &str,
) -> Result<StartedRun, CoordinatorError> {
    let context = &state.context;
    let run = context
        .store
        .run(run_id)
        .await
        .map_err(|error| CoordinatorError::Run(RunError::Store(error)))?
        .ok_or_else(|| {
            CoordinatorError::Run(RunError::NotFound {
                run_id: run_id.to_string(),
            })
        })?;
    // The run leaves FAILED first: a lease is only granted to a run in flight (`acquire_lease`
    // refuses a terminal one), and `resume` itself refuses while the strategy has another active
    // run.
    let resumed = context.store.resume(run_id, "coordinator").await?;
    let policy = &context.policy;
    let leased = context
        .store
        .acquire_lease(
            &run.strategy_id,
            run_id,
            &policy.instance_id,
            policy.lease_ttl,
        )
        .await;
    match leased {
        Ok(true) => {}
        Ok(false) => {
            fail_current(
                context,
                run_id,
                "RUN_IN_PROGRESS",
                "another instance holds this strategy's run lease",
            )
            .await;
            return Err(CoordinatorError::Run(RunError::RunInProgress {
                strategy_id: run.strategy_id,
                active_run_id: None,
            }));
        }
        Err(error) => {
            // Not left in flight without a worker: failed again, resumable again.
            let code = if matches!(&error, RunError::Store(store) if store.is_locked()) {
                "DB_LOCKED"
            } else {
                "DB_ERROR"
            };
            fail_current(context, run_id, code, &error.to_string()).await;
            return Err(error.into());
        }
    }
    spawn_worker(myself, state, run_id.to_string(), 0).await;
    Ok(StartedRun {
        run_id: run_id.to_string(),
        state: resumed,
        blocked_code: None,
    })
}

async fn spawn_worker(
    myself: &ActorRef<CoordinatorMsg>,
    state: &mut CoordinatorState,
    run_id: String,
    restarts: u32,
) {
    let spawned = Actor::spawn_linked(
        None,
        RunWorker,
        RunWorkerArgs {
            run_id: run_id.clone(),
            context: state.context.clone(),
        },
        myself.get_cell(),
    )
    .await;
    match spawned {
        Ok((worker, _)) => {
            state.workers.insert(worker.get_id(), (run_id, restarts));
        }
        Err(error) => {
            tracing::error!(runId = %run_id, error = %error, "cannot start the run worker");
            fail_current(
                &state.context,
                &run_id,
                "WORKER_START_FAILED",
                &error.to_string(),
            )
            .await;
        }
    }
}

/// Fails a run in whatever non-terminal state it is in (best effort, logged).
async fn fail_current(context: &RunContext, run_id: &str, code: &str, detail: &str) {
    let Ok(Some(run)) = context.store.run(run_id).await else {
        return;
    };
    if run.state.is_terminal() {
        return;
    }
    let result = async {
        let mut tx = context.store.begin_write().await?;
        fail_on(&mut tx, run_id, run.state, code, detail).await?;
        tx.commit().await.map_err(crate::store::StoreError::from)?;
        Ok::<(), RunError>(())
    }
    .await;
    if let Err(error) = result {
        tracing::error!(runId = %run_id, error = %error, "cannot record the run's failure");
    }
}

/// The stop reason of a worker whose run another instance took over.
const LEASE_LOST: &str = "lease lost";

/// The stop reason of a worker whose run reached COMPLETE or FAILED.
const RUN_ENDED: &str = "run ended";

/// Drives one run from its checkpoint to COMPLETE or FAILED, then stops.
pub struct RunWorker;

pub struct RunWorkerArgs {
    pub run_id: String,
    pub context: RunContext,
}

pub enum RunWorkerMsg {
    /// Run the phases from the checkpoint.
    Drive,
}

impl Actor for RunWorker {
    type Msg = RunWorkerMsg;
    type State = RunWorkerArgs;
    type Arguments = RunWorkerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: RunWorkerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_message(RunWorkerMsg::Drive)?;
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RunWorkerMsg::Drive => {
                let span = tracing::info_span!("run", runId = %state.run_id);
                let _entered = span.enter();
                let reason = drive(&state.context, &state.run_id).await;
                myself.stop(reason.map(str::to_string));
            }
        }
        Ok(())
    }
}

/// Runs phases until the run is COMPLETE or FAILED. A phase error fails the run in that phase
/// (`error_failed_state`), so resume re-enters exactly it.
///
/// A phase that failed because an integration actor died under it (its supervisor restarts it
/// within a second) is re-run from the checkpoint once the actor is back, as a resume would, at
/// most `max_worker_restarts` times per worker: phases are idempotent, and an actor restart is
/// not the integration's failure.
async fn drive(context: &RunContext, run_id: &str) -> Option<&'static str> {
    let mut actor_restarts_ridden: u32 = 0;
    loop {
        let run = match context.store.run(run_id).await {
            Ok(Some(run)) => run,
            Ok(None) => return None,
            Err(error) => {
                tracing::error!(error = %error, "cannot read the run");
                return None;
            }
        };
        if run.state.is_terminal() {
            let _ = context
                .store
                .release_lease(&run.strategy_id, run_id, &context.policy.instance_id)
                .await;
            tracing::info!(state = run.state.as_str(), "run finished");
            return Some(RUN_ENDED);
        }
        let policy = &context.policy;
        match context
            .store
            .renew_lease(
                &run.strategy_id,
                run_id,
                &policy.instance_id,
                policy.lease_ttl,
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                // Another instance took the lease over (ours expired): it drives the run now, and
                // two drivers could send what one already sent. Step back without touching it.
                tracing::warn!("run lease lost to another instance, stopping this worker");
                return Some(LEASE_LOST);
            }
            Err(error) => {
                // The store is unreachable: nothing can be checkpointed either, so stop; the run
                // stays in flight and is picked up again when the coordinator restarts.
                tracing::error!(error = %error, "cannot renew the run lease, stopping this worker");
                return None;
            }
        }
        let strategy = match context.store.stored_strategy(&run.strategy_id).await {
            Ok(Some(strategy)) => strategy,
            Ok(None) => {
                fail_current(
                    context,
                    run_id,
                    "STRATEGY_NOT_FOUND",
                    "the strategy was deleted",
                )
                .await;
                continue;
            }
            Err(error) => {
                fail_current(context, run_id, "DB_ERROR", &error.to_string()).await;
                continue;
            }
        };
        crate::failpoint::check_lazy(|| format!("worker/{run_id}/{}", run.state.as_str()));
        tracing::info!(phase = run.state.as_str(), "phase started");
        let phase_started = std::time::Instant::now();
        let actors_before = context.integration_actors();
        let outcome = match run.state {
            RunState::Pending => advance_pending(context, &run).await,
            RunState::Claiming => phases::claim(context, &run, &strategy).await,
            RunState::Swapping => phases::swap(context, &run, &strategy).await,
            RunState::Bridging => Err(PhaseError::new(
                "BRIDGING_UNSUPPORTED",
                "the BRIDGING phase is not implemented; runs without an EVM key never enter it",
            )),
            RunState::Allocating => phases::allocate(context, &run, &strategy).await,
            RunState::Provisioning => phases::provision(context, &run, &strategy).await,
            RunState::Complete | RunState::Failed => Ok(()),
        };
        crate::metrics::global().observe_phase(
            run.state.as_str(),
            outcome
                .as_ref()
                .map_or_else(|error| error.code.as_str(), |()| "ok"),
            phase_started.elapsed(),
        );
        if let Err(error) = outcome {
            // Only when an actor really was replaced: a slow actor (a timeout under the same
            // code) is not ridden over.
            let actor_restarted = ACTOR_DOWN_CODES.contains(&error.code.as_str())
                && context.integration_actor_replaced(&actors_before).await;
            if actor_restarted
                && actor_restarts_ridden < context.policy.max_worker_restarts
                && context.integration_actors_back().await
            {
                actor_restarts_ridden += 1;
                tracing::warn!(phase = run.state.as_str(), code = %error.code, detail = %error.detail,
                    "an actor the phase called restarted; running the phase again from its checkpoint");
                continue;
            }
            tracing::warn!(phase = run.state.as_str(), code = %error.code, detail = %error.detail, "phase failed");
            fail_current(context, run_id, &error.code, &error.detail).await;
        }
    }
}

async fn advance_pending(
    context: &RunContext,
    run: &crate::store::runs::Run,
) -> Result<(), PhaseError> {
    phases::audit(
        context,
        run,
        RunState::Pending,
        "run_started",
        json!({"dryRun": run.dry_run, "triggeredBy": run.triggered_by.as_str()}),
    )
    .await?;
    let mut tx = context.store.begin_write().await?;
    crate::store::runs::advance(
        &mut tx,
        &run.run_id,
        RunState::Pending,
        RunState::Claiming,
        &Default::default(),
    )
    .await?;
    tx.commit().await.map_err(crate::store::StoreError::from)?;
    Ok(())
}

/// Starts a run through the coordinator.
pub async fn start_run(
    coordinator: &ActorRef<CoordinatorMsg>,
    strategy_id: &str,
    triggered_by: TriggeredBy,
    dry_run: Option<bool>,
    timeout: Duration,
) -> Result<StartedRun, CoordinatorError> {
    let strategy_id = strategy_id.to_string();
    call(coordinator, timeout, |reply| CoordinatorMsg::Start {
        strategy_id,
        triggered_by,
        dry_run,
        reply,
    })
    .await
}

/// Resumes a FAILED run through the coordinator.
pub async fn resume_run(
    coordinator: &ActorRef<CoordinatorMsg>,
    run_id: &str,
    timeout: Duration,
) -> Result<StartedRun, CoordinatorError> {
    let run_id = run_id.to_string();
    call(coordinator, timeout, |reply| CoordinatorMsg::Resume {
        run_id,
        reply,
    })
    .await
}

/// Cancels a FAILED run through the coordinator.
pub async fn cancel_run(
    coordinator: &ActorRef<CoordinatorMsg>,
    run_id: &str,
    reason: &str,
    actor: &str,
    timeout: Duration,
) -> Result<CancelledRun, CoordinatorError> {
    let (run_id, reason, actor) = (run_id.to_string(), reason.to_string(), actor.to_string());
    call(coordinator, timeout, |reply| CoordinatorMsg::Cancel {
        run_id,
        reason,
        actor,
        reply,
    })
    .await
}

async fn call<T: Send + 'static>(
    coordinator: &ActorRef<CoordinatorMsg>,
    timeout: Duration,
    message: impl FnOnce(Reply<T>) -> CoordinatorMsg,
) -> Result<T, CoordinatorError> {
    crate::supervisor::ask(coordinator, timeout, message)
        .await
        .map_err(|no_answer| match no_answer {
            crate::supervisor::NoAnswer::Down => CoordinatorError::ActorDown,
            crate::supervisor::NoAnswer::Timeout(timeout) => {
                CoordinatorError::ActorTimeout(timeout)
            }
        })?
}
