//! HealthActor: probes the database and OpenRouter on a timer and publishes the latest results,
//! so readiness answers from memory instead of waiting on slow dependencies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::openrouter::OpenRouterClient;
use crate::store::Store;

/// One dependency's last probe.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DependencyStatus {
    pub ok: bool,
    /// Why it is down; never contains a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub response_time_ms: u64,
}

/// The results of the latest probe round.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    /// When the round finished; `None` before the first round.
    pub checked_at: Option<DateTime<Utc>>,
    pub database: DependencyStatus,
    pub openrouter: DependencyStatus,
    /// Wall time of the whole round (the probes run concurrently).
    pub response_time_ms: u64,
}

impl HealthReport {
    /// Ready when a round has completed recently enough and every dependency answered.
    ///
    /// A report older than `max_age` means the HealthActor stopped probing; we then say
    /// "not ready" rather than repeat stale good news.
    pub fn is_ready(&self, now: DateTime<Utc>, max_age: Duration) -> bool {
        self.is_fresh(now, max_age) && self.database.ok && self.openrouter.ok
    }

    /// Whether a round finished within `max_age` of `now` (a clock step backwards counts as fresh).
    pub fn is_fresh(&self, now: DateTime<Utc>, max_age: Duration) -> bool {
        self.checked_at.is_some_and(|at| {
            now.signed_duration_since(at)
                .to_std()
                .map(|age| age <= max_age)
                .unwrap_or(true)
        })
    }
}

/// Where the HealthActor publishes; readers hold the receiver. It outlives actor restarts.
pub type HealthPublisher = Arc<watch::Sender<HealthReport>>;

pub struct HealthActor;

pub struct HealthArgs {
    pub store: Store,
    pub openrouter: OpenRouterClient,
    /// Time between probe rounds.
    pub interval: Duration,
    /// Each probe is abandoned after this long (the runbook's 3 s).
    pub probe_timeout: Duration,
    pub publisher: HealthPublisher,
}

pub struct HealthState {
    args: HealthArgs,
    probe_in_flight: bool,
}

pub enum HealthMsg {
    /// Start a probe round unless one is already running.
    Probe,
    /// A probe round finished (sent by the task that ran it).
    ProbeFinished(HealthReport),
    /// The latest published report.
    Current(RpcReplyPort<HealthReport>),
}

impl Actor for HealthActor {
    type Msg = HealthMsg;
    type State = HealthState;
    type Arguments = HealthArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: HealthArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_message(HealthMsg::Probe)?;
        // The timer task ends by itself when this actor stops.
        myself.send_interval(args.interval, || HealthMsg::Probe);
        Ok(HealthState {
            args,
            probe_in_flight: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        crate::failpoint::check_actor(&myself);
        match message {
            HealthMsg::Probe => {
                if state.probe_in_flight {
                    return Ok(());
                }
                state.probe_in_flight = true;
                // Probe off the mailbox so `Current` is answered while a dependency hangs.
                let (store, openrouter, timeout) = (
                    state.args.store.clone(),
                    state.args.openrouter.clone(),
                    state.args.probe_timeout,
                );
                tokio::spawn(async move {
                    let report = probe_round(&store, &openrouter, timeout).await;
                    let _ = myself.send_message(HealthMsg::ProbeFinished(report));
                });
            }
            HealthMsg::ProbeFinished(report) => {
                state.probe_in_flight = false;
                log_changes(&state.args.publisher.borrow(), &report);
                state.args.publisher.send_replace(report);
            }
            HealthMsg::Current(reply) => {
                let _ = reply.send(state.args.publisher.borrow().clone());
            }
        }
        Ok(())
    }
}

/// Probes every dependency concurrently, each bounded by `timeout`.
pub async fn probe_round(
    store: &Store,
    openrouter: &OpenRouterClient,
    timeout: Duration,
) -> HealthReport {
    let started = Instant::now();
    let (database, openrouter) = tokio::join!(
        probe(timeout, async {
            store.ping().await.map_err(|error| error.to_string())
        }),
        probe(timeout, async {
            openrouter
                .credits()
                .await
                .map(|_| ())
                .map_err(|error| error.to_string())
        }),
    );
    HealthReport {
        checked_at: Some(Utc::now()),
        database,
        openrouter,
        response_time_ms: started.elapsed().as_millis() as u64,
    }
}

async fn probe(
    timeout: Duration,
    check: impl std::future::Future<Output = Result<(), String>>,
) -> DependencyStatus {
    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout, check).await;
    let response_time_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(Ok(())) => DependencyStatus {
            ok: true,
            error: None,
            response_time_ms,
        },
        Ok(Err(error)) => DependencyStatus {
            ok: false,
            error: Some(error),
            response_time_ms,
        },
        Err(_) => DependencyStatus {
            ok: false,
            error: Some(format!("no answer within {} ms", timeout.as_millis())),
            response_time_ms,
        },
    }
}

/// Logs a dependency going down (warn) or coming back (info), once per change.
fn log_changes(previous: &HealthReport, current: &HealthReport) {
    let first_round = previous.checked_at.is_none();
    for (name, before, now) in [
        ("database", &previous.database, &current.database),
        ("openrouter", &previous.openrouter, &current.openrouter),
    ] {
        if now.ok && !before.ok && !first_round {
            tracing::info!(dependency = name, "dependency recovered");
        } else if !now.ok && (before.ok || first_round) {
            tracing::warn!(
                dependency = name,
                error = now.error.as_deref().unwrap_or("unknown"),
                "dependency down"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(database: bool, openrouter: bool, checked_at: Option<DateTime<Utc>>) -> HealthReport {
        HealthReport {
            checked_at,
            database: DependencyStatus {
                ok: database,
                ..Default::default()
            },
            openrouter: DependencyStatus {
                ok: openrouter,
                ..Default::default()
            },
            response_time_ms: 1,
        }
    }

    #[test]
    fn ready_only_when_fresh_and_every_dependency_is_up() {
        let now = Utc::now();
        let max_age = Duration::from_secs(45);
        assert!(report(true, true, Some(now)).is_ready(now, max_age));
        assert!(!report(true, false, Some(now)).is_ready(now, max_age));
        assert!(!report(false, true, Some(now)).is_ready(now, max_age));
        assert!(
            !report(true, true, None).is_ready(now, max_age),
            "never probed"
        );
        let stale = now - chrono::Duration::seconds(46);
        assert!(
            !report(true, true, Some(stale)).is_ready(now, max_age),
            "stale results"
        );
    }
}
