//! The root supervisor: starts its children in order, restarts a child that fails or stops
//! (one-for-one) with backoff and a restart budget, and stops them in reverse order on shutdown.
//!
//! ractor has no restart strategy of its own and its default `handle_supervisor_evt` stops the
//! supervisor when any child exits, so the whole policy lives here. Past the budget the supervisor
//! stops itself with a reason; the daemon sees that and exits non-zero so that the service manager
//! restarts the process, and the next start resumes from the database.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ractor::{
    Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr, SupervisionEvent,
};

/// Where the current `ActorRef` of a supervised child can be found.
///
/// A restarted child has a new ref; frontends and peers hold the slot, not the ref, and get
/// `None` while the child is down (an error they report, never a hang).
pub struct ActorSlot<M>(Arc<RwLock<Option<ActorRef<M>>>>);

impl<M> Clone for ActorSlot<M> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<M> Default for ActorSlot<M> {
    fn default() -> Self {
        Self(Arc::new(RwLock::new(None)))
    }
}

impl<M> ActorSlot<M> {
    /// The child's current ref, if it is running.
    pub fn get(&self) -> Option<ActorRef<M>> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set(&self, actor: Option<ActorRef<M>>) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = actor;
    }
}

type StartFuture<'a> = Pin<Box<dyn Future<Output = Result<ActorCell, SpawnErr>> + Send + 'a>>;

/// How to (re)start one child. Implemented by [`ChildSpec`]; boxed so children of different actor
/// types sit in one list.
pub trait SupervisedChild: Send + Sync + 'static {
    /// The child's role, used in its actor name and in logs (`health`, `pool`, …).
    fn role(&self) -> &'static str;
    /// Spawns a fresh instance linked to `supervisor` and publishes its ref.
    fn start<'a>(&'a self, name: String, supervisor: ActorCell) -> StartFuture<'a>;
    /// Forgets the published ref once the instance has died.
    fn clear(&self);
}

/// A child of actor type `A`: a factory for its behaviour and arguments (fresh on every restart)
/// and the slot where its current ref is published.
pub struct ChildSpec<A: Actor> {
    role: &'static str,
    make: Box<dyn Fn() -> (A, A::Arguments) + Send + Sync>,
    slot: ActorSlot<A::Msg>,
}

impl<A: Actor> ChildSpec<A> {
    pub fn new(
        role: &'static str,
        slot: ActorSlot<A::Msg>,
        make: impl Fn() -> (A, A::Arguments) + Send + Sync + 'static,
    ) -> Self {
        Self {
            role,
            make: Box::new(make),
            slot,
        }
    }
}

impl<A: Actor> SupervisedChild for ChildSpec<A> {
    fn role(&self) -> &'static str {
        self.role
    }

    fn start<'a>(&'a self, name: String, supervisor: ActorCell) -> StartFuture<'a> {
        Box::pin(async move {
            let (behaviour, arguments) = (self.make)();
            let (actor, _join) =
                Actor::spawn_linked(Some(name), behaviour, arguments, supervisor).await?;
            self.slot.set(Some(actor.clone()));
            Ok(actor.get_cell())
        })
    }

    fn clear(&self) {
        self.slot.set(None);
    }
}

/// Why a call to an actor got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoAnswer {
    /// The actor is not running, or died before replying.
    Down,
    /// It did not reply within the timeout (it may still be working).
    Timeout(Duration),
}

/// Sends the message `build` makes and waits at most `timeout` for the reply: a dead actor, a
/// dropped reply (the actor died mid-request) or no answer in time is an error, never a hang.
/// Every actor's thin wrapper functions go through this (DESIGN §3: every cross-actor call has a
/// timeout).
pub async fn ask<M, T>(
    actor: &ActorRef<M>,
    timeout: Duration,
    build: impl FnOnce(RpcReplyPort<T>) -> M,
) -> Result<T, NoAnswer>
where
    M: ractor::Message,
    T: Send + 'static,
{
    match actor.call(build, Some(timeout)).await {
        Ok(ractor::rpc::CallResult::Success(reply)) => Ok(reply),
        Ok(ractor::rpc::CallResult::Timeout) => Err(NoAnswer::Timeout(timeout)),
        Ok(ractor::rpc::CallResult::SenderError) | Err(_) => Err(NoAnswer::Down),
    }
}

/// The restart budget and backoff.
#[derive(Clone, Debug)]
pub struct RestartPolicy {
    /// More restarts than this within `window` (all children together) and the supervisor gives up.
    pub max_restarts: usize,
    pub window: Duration,
    /// Delay before the first restart; doubled for each recent restart, capped at `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for RestartPolicy {
    /// 5 restarts in 60 s, first after 100 ms, never slower than 800 ms: a crashed actor is back
    /// within a second, and a crash loop ends the process quickly.
    fn default() -> Self {
        Self {
            max_restarts: 5,
            window: Duration::from_secs(60),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(800),
        }
    }
}

impl RestartPolicy {
    fn backoff(&self, recent_restarts: usize) -> Duration {
        let doublings = recent_restarts.saturating_sub(1).min(16) as u32;
        self.backoff_base
            .saturating_mul(1 << doublings)
            .min(self.backoff_max)
    }
}

/// Restart counts per role since the daemon started; read by health reporting.
#[derive(Clone, Default)]
pub struct RestartCounts(Arc<Mutex<BTreeMap<&'static str, u64>>>);

impl RestartCounts {
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn bump(&self, role: &'static str) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(role)
            .or_default() += 1;
    }
}

pub struct Supervisor;

pub struct SupervisorArgs {
    /// Children in start order; they are stopped in the reverse order.
    pub children: Vec<Arc<dyn SupervisedChild>>,
    pub policy: RestartPolicy,
    /// Distinguishes this tree's actor names in ractor's process-global registry (tests run
    /// several daemons in one process).
    pub instance: String,
    pub restart_counts: RestartCounts,
}

pub enum SupervisorMsg {
    /// Start the child at this index again (sent to itself after the backoff delay).
    Restart(usize),
    /// The roles of the children currently running, in start order.
    Running(RpcReplyPort<Vec<&'static str>>),
}

struct ChildEntry {
    spec: Arc<dyn SupervisedChild>,
    cell: Option<ActorCell>,
    generation: u64,
}

pub struct SupervisorState {
    children: Vec<ChildEntry>,
    policy: RestartPolicy,
    instance: String,
    restart_counts: RestartCounts,
    /// Restart instants inside the policy window, oldest first.
    recent_restarts: VecDeque<Instant>,
}

impl SupervisorState {
    async fn start_child(&mut self, index: usize, myself: &ActorCell) -> Result<(), SpawnErr> {
        let entry = &mut self.children[index];
        entry.generation += 1;
        let name = format!(
            "{}/{}#{}",
            self.instance,
            entry.spec.role(),
            entry.generation
        );
        let cell = entry.spec.start(name, myself.clone()).await?;
        entry.cell = Some(cell);
        Ok(())
    }

    /// Records a restart and answers the delay before it, or `None` when the budget is spent.
    fn admit_restart(&mut self, now: Instant) -> Option<Duration> {
        while let Some(oldest) = self.recent_restarts.front() {
            if now.duration_since(*oldest) > self.policy.window {
                self.recent_restarts.pop_front();
            } else {
                break;
            }
        }
        self.recent_restarts.push_back(now);
        if self.recent_restarts.len() > self.policy.max_restarts {
            return None;
        }
        Some(self.policy.backoff(self.recent_restarts.len()))
    }

    /// Handles the death of the child at `index`: schedule its restart or give up.
    fn child_died(&mut self, index: usize, reason: &str, myself: &ActorRef<SupervisorMsg>) {
        let role = self.children[index].spec.role();
        self.children[index].cell = None;
        self.children[index].spec.clear();
        match self.admit_restart(Instant::now()) {
            Some(delay) => {
                self.restart_counts.bump(role);
                tracing::warn!(
                    actor = role,
                    reason,
                    delayMs = delay.as_millis() as u64,
                    "actor died, restarting"
                );
                ractor::time::send_after(delay, myself.get_cell(), move || {
                    SupervisorMsg::Restart(index)
                });
            }
            None => {
                tracing::error!(
                    actor = role,
                    reason,
                    maxRestarts = self.policy.max_restarts as u64,
                    windowSec = self.policy.window.as_secs(),
                    "restart budget exhausted, stopping"
                );
                myself.stop(Some(format!(
                    "restart budget exhausted after {role} died: {reason}"
                )));
            }
        }
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = SupervisorState {
            children: args
                .children
                .into_iter()
                .map(|spec| ChildEntry {
                    spec,
                    cell: None,
                    generation: 0,
                })
                .collect(),
            policy: args.policy,
            instance: args.instance,
            restart_counts: args.restart_counts,
            recent_restarts: VecDeque::new(),
        };
        let cell = myself.get_cell();
        for index in 0..state.children.len() {
            if let Err(error) = state.start_child(index, &cell).await {
                let role = state.children[index].spec.role();
                // Children already started are linked to us and die with us.
                return Err(format!("starting {role} failed: {error}").into());
            }
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Restart(index) => {
                if state.children[index].cell.is_some() {
                    return Ok(());
                }
                let role = state.children[index].spec.role();
                match state.start_child(index, &myself.get_cell()).await {
                    Ok(()) => tracing::warn!(actor = role, "actor restarted"),
                    Err(error) => {
                        state.child_died(index, &format!("restart failed: {error}"), &myself)
                    }
                }
            }
            SupervisorMsg::Running(reply) => {
                let running = state
                    .children
                    .iter()
                    .filter(|entry| entry.cell.is_some())
                    .map(|entry| entry.spec.role())
                    .collect();
                let _ = reply.send(running);
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
        let (cell, reason) = match event {
            SupervisionEvent::ActorFailed(cell, error) => (cell, format!("failed: {error}")),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell,
                format!("stopped: {}", reason.unwrap_or_else(|| "no reason".into())),
            ),
            _ => return Ok(()),
        };
        let id = cell.get_id();
        let index = state
            .children
            .iter()
            .position(|entry| entry.cell.as_ref().is_some_and(|c| c.get_id() == id));
        if let Some(index) = index {
            state.child_died(index, &reason, &myself);
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Stop in reverse start order, waiting for each: later children depend on earlier ones.
        for entry in state.children.iter_mut().rev() {
            if let Some(cell) = entry.cell.take() {
                let role = entry.spec.role();
                if cell
                    .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(10)))
                    .await
                    .is_err()
                {
                    tracing::warn!(actor = role, "actor did not stop within 10 s, killing it");
                    cell.kill();
                }
                entry.spec.clear();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A child that panics on demand and counts its starts and stops.
    struct Crashy;

    #[derive(Clone, Default)]
    struct Counters {
        started: Arc<AtomicUsize>,
        stopped: Arc<Mutex<Vec<&'static str>>>,
    }

    enum CrashyMsg {
        Panic,
        Ping(RpcReplyPort<usize>),
    }

    struct CrashyArgs {
        role: &'static str,
        counters: Counters,
    }

    impl Actor for Crashy {
        type Msg = CrashyMsg;
        type State = CrashyArgs;
        type Arguments = CrashyArgs;

        async fn pre_start(
            &self,
            _: ActorRef<CrashyMsg>,
            args: CrashyArgs,
        ) -> Result<CrashyArgs, ActorProcessingErr> {
            args.counters.started.fetch_add(1, Ordering::SeqCst);
            Ok(args)
        }

        async fn handle(
            &self,
            _: ActorRef<CrashyMsg>,
            message: CrashyMsg,
            state: &mut CrashyArgs,
        ) -> Result<(), ActorProcessingErr> {
            match message {
                CrashyMsg::Panic => panic!("injected failure"),
                CrashyMsg::Ping(reply) => {
                    let _ = reply.send(state.counters.started.load(Ordering::SeqCst));
                }
            }
            Ok(())
        }

        async fn post_stop(
            &self,
            _: ActorRef<CrashyMsg>,
            state: &mut CrashyArgs,
        ) -> Result<(), ActorProcessingErr> {
            state.counters.stopped.lock().unwrap().push(state.role);
            Ok(())
        }
    }

    fn crashy_child(
        role: &'static str,
        counters: &Counters,
        slot: &ActorSlot<CrashyMsg>,
    ) -> Arc<dyn SupervisedChild> {
        let counters = counters.clone();
        Arc::new(ChildSpec::new(role, slot.clone(), move || {
            (
                Crashy,
                CrashyArgs {
                    role,
                    counters: counters.clone(),
                },
            )
        }))
    }

    async fn wait_until(mut condition: impl FnMut() -> bool) {
        for _ in 0..500 {
            if condition() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached within 5 s");
    }

    fn fast_policy(max_restarts: usize) -> RestartPolicy {
        RestartPolicy {
            max_restarts,
            window: Duration::from_secs(60),
            backoff_base: Duration::from_millis(5),
            backoff_max: Duration::from_millis(20),
        }
    }

    #[tokio::test]
    async fn a_panicking_child_is_restarted_and_its_slot_updated() {
        let counters = Counters::default();
        let slot = ActorSlot::default();
        let restart_counts = RestartCounts::default();
        let (supervisor, join) = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                children: vec![crashy_child("crashy", &counters, &slot)],
                policy: fast_policy(5),
                instance: uuid::Uuid::new_v4().to_string(),
                restart_counts: restart_counts.clone(),
            },
        )
        .await
        .unwrap();
        let first = slot.get().expect("child running");
        first.cast(CrashyMsg::Panic).unwrap();
        wait_until(|| counters.started.load(Ordering::SeqCst) == 2 && slot.get().is_some()).await;
        let second = slot.get().unwrap();
        assert_ne!(
            first.get_id(),
            second.get_id(),
            "the slot holds the new instance"
        );
        let starts = ractor::call_t!(second, CrashyMsg::Ping, 1000).unwrap();
        assert_eq!(starts, 2);
        assert_eq!(restart_counts.snapshot().get("crashy"), Some(&1));
        supervisor.stop(None);
        join.await.unwrap();
        assert!(slot.get().is_none(), "slot cleared on shutdown");
    }

    #[tokio::test]
    async fn past_the_budget_the_supervisor_stops_itself() {
        let counters = Counters::default();
        let slot = ActorSlot::default();
        let (supervisor, join) = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                children: vec![crashy_child("crashy", &counters, &slot)],
                policy: fast_policy(2),
                instance: uuid::Uuid::new_v4().to_string(),
                restart_counts: RestartCounts::default(),
            },
        )
        .await
        .unwrap();
        for expected_starts in 2..=3 {
            slot.get().unwrap().cast(CrashyMsg::Panic).unwrap();
            wait_until(|| {
                counters.started.load(Ordering::SeqCst) == expected_starts && slot.get().is_some()
            })
            .await;
        }
        // The third failure in the window exceeds a budget of 2.
        slot.get().unwrap().cast(CrashyMsg::Panic).unwrap();
        tokio::time::timeout(Duration::from_secs(5), join)
            .await
            .expect("supervisor stops after the budget is spent")
            .unwrap();
        assert_eq!(supervisor.get_status(), ractor::ActorStatus::Stopped);
        assert_eq!(
            counters.started.load(Ordering::SeqCst),
            3,
            "no fourth start"
        );
    }

    #[tokio::test]
    async fn children_stop_in_reverse_start_order() {
        let counters = Counters::default();
        let (first_slot, second_slot) = (ActorSlot::default(), ActorSlot::default());
        let (supervisor, join) = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                children: vec![
                    crashy_child("first", &counters, &first_slot),
                    crashy_child("second", &counters, &second_slot),
                ],
                policy: RestartPolicy::default(),
                instance: uuid::Uuid::new_v4().to_string(),
                restart_counts: RestartCounts::default(),
            },
        )
        .await
        .unwrap();
        let running = ractor::call_t!(supervisor, SupervisorMsg::Running, 1000).unwrap();
        assert_eq!(running, vec!["first", "second"]);
        supervisor.stop(None);
        join.await.unwrap();
        assert_eq!(*counters.stopped.lock().unwrap(), vec!["second", "first"]);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RestartPolicy::default();
        let delays: Vec<_> = (1..=6).map(|n| policy.backoff(n).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 800, 800]);
    }
}
