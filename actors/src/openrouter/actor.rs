//! OpenRouterActor: owns the management API client and is the one way the runtime calls
//! OpenRouter, through the integration's circuit breaker and the one retry layer, with at most
//! `max_concurrency` requests in flight.
//!
//! Every request runs in a task spawned from `handle` and replies from there, so a slow or
//! rate-limited OpenRouter never blocks the mailbox. The tasks belong to the actor's state: when
//! the actor dies (panic, kill) they are aborted, their reply ports drop, and callers get an error
//! at once instead of waiting for their timeout. The breaker comes from the daemon and outlives
//! restarts, so a restarted actor does not forget that OpenRouter is down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::client::{
    CreateKey, CreatedKey, Credits, Key, KeyUpdate, OpenRouterClient, OpenRouterError,
};
use crate::resilience::{self, Breaker, Classify, ResilienceError, RetryPolicy, Transience};

/// Requests in flight at once unless configured otherwise.
pub const DEFAULT_MAX_CONCURRENCY: usize = 8;

/// How long a graceful stop waits for requests already in flight before abandoning them.
const DRAIN_ON_STOP: Duration = Duration::from_secs(5);

/// Why a call through the actor failed; [`OpenRouterCallError::code`] is the stable code runs and
/// reports record.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum OpenRouterCallError {
    /// The breaker is open (or half-open with its probe in flight): not attempted.
    #[error("openrouter is unavailable (circuit open){}", last_error_suffix(.last_error))]
    Unavailable { last_error: Option<String> },
    /// What OpenRouter (or the way to it) answered, after any retries.
    #[error(transparent)]
    Api(OpenRouterError),
    /// The actor did not reply in time; the request may still complete.
    #[error("openrouter actor did not answer within {} ms", .0.as_millis())]
    ActorTimeout(Duration),
    /// The actor is not running, or died with the request in flight.
    #[error("openrouter actor is not running")]
    ActorDown,
}

fn last_error_suffix(last_error: &Option<String>) -> String {
    last_error
        .as_ref()
        .map(|error| format!("; last error: {error}"))
        .unwrap_or_default()
}

impl OpenRouterCallError {
    /// `OPENROUTER_UNAVAILABLE` (breaker open), `OPENROUTER_TIMEOUT` (the request or the actor
    /// timed out), `OPENROUTER_RATE_LIMITED` (429 after retries), `OPENROUTER_SERVER_ERROR`
    /// (5xx after retries), `OPENROUTER_UNREACHABLE` (no connection, or it broke),
    /// `OPENROUTER_NOT_FOUND` (404), `OPENROUTER_REJECTED` (any other 4xx),
    /// `OPENROUTER_BAD_RESPONSE` (a body we could not read), `OPENROUTER_INVALID_REQUEST` (refused
    /// before sending), `OPENROUTER_ACTOR_DOWN` (the actor is not running).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unavailable { .. } => "OPENROUTER_UNAVAILABLE",
            Self::ActorTimeout(_) => "OPENROUTER_TIMEOUT",
            Self::ActorDown => "OPENROUTER_ACTOR_DOWN",
            Self::Api(error) => match error {
                OpenRouterError::Timeout => "OPENROUTER_TIMEOUT",
                OpenRouterError::RateLimited { .. } => "OPENROUTER_RATE_LIMITED",
                OpenRouterError::ServerError { .. } => "OPENROUTER_SERVER_ERROR",
                OpenRouterError::Connect(_) | OpenRouterError::Interrupted(_) => {
                    "OPENROUTER_UNREACHABLE"
                }
                OpenRouterError::Status { status: 404, .. } => "OPENROUTER_NOT_FOUND",
                OpenRouterError::Status { .. } => "OPENROUTER_REJECTED",
                OpenRouterError::Decode(_) => "OPENROUTER_BAD_RESPONSE",
                OpenRouterError::InvalidRequest(_) => "OPENROUTER_INVALID_REQUEST",
            },
        }
    }

    /// Whether trying again later may succeed (everything but a refusal or a bad request).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Api(error) => matches!(error.transience(), Transience::Transient { .. }),
            Self::Unavailable { .. } | Self::ActorTimeout(_) | Self::ActorDown => true,
        }
    }
}

impl From<ResilienceError<OpenRouterError>> for OpenRouterCallError {
    fn from(error: ResilienceError<OpenRouterError>) -> Self {
        match error {
            ResilienceError::Unavailable { last_error, .. } => Self::Unavailable { last_error },
            ResilienceError::Failed(error) => Self::Api(error),
        }
    }
}

type Reply<T> = RpcReplyPort<Result<T, OpenRouterCallError>>;

pub struct OpenRouterActor;

#[derive(Clone)]
pub struct OpenRouterArgs {
    pub client: OpenRouterClient,
    /// Created by the daemon and shared with health reporting; survives actor restarts.
    pub breaker: Breaker,
    pub retry: RetryPolicy,
    /// Requests in flight at once (at least 1); [`DEFAULT_MAX_CONCURRENCY`] by default.
    pub max_concurrency: usize,
}

pub struct OpenRouterState {
    context: Context,
    /// The request tasks; dropping the state aborts them.
    in_flight: JoinSet<()>,
}

/// What a request task needs (cheap clones).
#[derive(Clone)]
struct Context {
    client: OpenRouterClient,
    breaker: Breaker,
    retry: RetryPolicy,
    permits: Arc<Semaphore>,
}

pub enum OpenRouterMsg {
    /// `GET /credits`: the account's total credits and usage.
    Credits(Reply<Credits>),
    /// Every key, page by page (`include_disabled` adds disabled ones).
    ListAllKeys {
        include_disabled: bool,
        reply: Reply<Vec<Key>>,
    },
    /// One key by hash (`OPENROUTER_NOT_FOUND` once it is deleted).
    GetKey { hash: String, reply: Reply<Key> },
    /// A new key and its one-time plaintext. Retried only when the earlier attempt certainly
    /// created nothing (no connection, 429); after an ambiguous failure the caller looks for the
    /// key by name before creating again.
    CreateKey {
        request: CreateKey,
        reply: Reply<CreatedKey>,
    },
    /// Changes a key's name, disabled flag, limit or reset (absolute values: safe to repeat).
    UpdateKey {
        hash: String,
        update: KeyUpdate,
        reply: Reply<Key>,
    },
    /// Deletes a key. A 404 after an attempt whose outcome was unknown counts as deleted.
    DeleteKey { hash: String, reply: Reply<()> },
}

impl Actor for OpenRouterActor {
    type Msg = OpenRouterMsg;
    type State = OpenRouterState;
    type Arguments = OpenRouterArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: OpenRouterArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(OpenRouterState {
            context: Context {
                client: args.client,
                breaker: args.breaker,
                retry: args.retry,
                permits: Arc::new(Semaphore::new(args.max_concurrency.max(1))),
            },
            in_flight: JoinSet::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        crate::failpoint::check_actor(&myself);
        // Forget finished tasks so the set stays the size of what is in flight.
        while state.in_flight.try_join_next().is_some() {}
        let context = state.context.clone();
        match message {
            OpenRouterMsg::Credits(reply) => {
                state.in_flight.spawn(async move {
                    let result = context
                        .run("credits", |client| async move { client.credits().await })
                        .await;
                    let _ = reply.send(result);
                });
            }
            OpenRouterMsg::ListAllKeys {
                include_disabled,
                reply,
            } => {
                state.in_flight.spawn(async move {
                    let result = context
                        .run("list_all_keys", |client| async move {
                            client.list_all_keys(include_disabled).await
                        })
                        .await;
                    let _ = reply.send(result);
                });
            }
            OpenRouterMsg::GetKey { hash, reply } => {
                state.in_flight.spawn(async move {
                    let result = context
                        .run("get_key", |client| {
                            let hash = hash.clone();
                            async move { client.get_key(&hash).await }
                        })
                        .await;
                    let _ = reply.send(result);
                });
            }
            OpenRouterMsg::CreateKey { request, reply } => {
                state.in_flight.spawn(async move {
                    let result = context.create_key(request).await;
                    let _ = reply.send(result);
                });
            }
            OpenRouterMsg::UpdateKey {
                hash,
                update,
                reply,
            } => {
                state.in_flight.spawn(async move {
                    let result = context
                        .run("update_key", |client| {
                            let (hash, update) = (hash.clone(), update.clone());
                            async move { client.update_key(&hash, &update).await }
                        })
                        .await;
                    let _ = reply.send(result);
                });
            }
            OpenRouterMsg::DeleteKey { hash, reply } => {
                state.in_flight.spawn(async move {
                    let result = context.delete_key(hash).await;
                    let _ = reply.send(result);
                });
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // A graceful stop lets requests already sent finish (a create abandoned mid-flight leaves
        // an orphan key to adopt later); past the bound the rest are aborted with the state.
        let drained = tokio::time::timeout(DRAIN_ON_STOP, async {
            while state.in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                inFlight = state.in_flight.len() as u64,
                "openrouter requests still in flight at stop, abandoning them"
            );
        }
        Ok(())
    }
}

impl Context {
    /// One operation through the breaker and the retry layer; every attempt holds a concurrency
    /// permit while it talks to OpenRouter (not while it sleeps between attempts).
    async fn run<T, F, Fut>(&self, op: &'static str, operation: F) -> Result<T, OpenRouterCallError>
    where
        F: Fn(OpenRouterClient) -> Fut,
        Fut: Future<Output = Result<T, OpenRouterError>>,
    {
        self.run_retrying_if(op, |_| true, operation).await
    }

    async fn run_retrying_if<T, R, F, Fut>(
        &self,
        op: &'static str,
        may_retry: R,
        operation: F,
    ) -> Result<T, OpenRouterCallError>
    where
        R: Fn(&OpenRouterError) -> bool,
        F: Fn(OpenRouterClient) -> Fut,
        Fut: Future<Output = Result<T, OpenRouterError>>,
    {
        let result = resilience::call_retrying_if(&self.retry, &self.breaker, may_retry, || {
            let permits = self.permits.clone();
            let attempt = operation(self.client.clone());
            async move {
                // The semaphore is never closed, so acquiring only waits.
                let _permit = permits.acquire_owned().await;
                attempt.await
            }
        })
        .await
        .map_err(OpenRouterCallError::from);
        if let Err(error) = &result {
            tracing::debug!(op, code = error.code(), error = %error, "openrouter call failed");
        }
        result
    }

    async fn create_key(&self, request: CreateKey) -> Result<CreatedKey, OpenRouterCallError> {
        self.run_retrying_if(
            "create_key",
            // Not idempotent: a repeat after a timeout or 5xx could create a second key.
            OpenRouterError::is_safe_to_repeat,
            |client| {
                let request = request.clone();
                async move { client.create_key(&request).await }
            },
        )
        .await
    }

    async fn delete_key(&self, hash: String) -> Result<(), OpenRouterCallError> {
        // Set once an attempt failed in a way that may have deleted the key after all.
        let maybe_deleted = AtomicBool::new(false);
        self.run("delete_key", |client| {
            let (hash, maybe_deleted) = (hash.clone(), &maybe_deleted);
            async move {
                match client.delete_key(&hash).await {
                    Err(OpenRouterError::Status { status: 404, .. })
                        if maybe_deleted.load(Ordering::SeqCst) =>
                    {
                        Ok(())
                    }
                    Err(error) => {
                        if !error.is_safe_to_repeat()
                            && matches!(error.transience(), Transience::Transient { .. })
                        {
                            maybe_deleted.store(true, Ordering::SeqCst);
                        }
                        Err(error)
                    }
                    Ok(()) => Ok(()),
                }
            }
        })
        .await
    }
}

async fn ask<T: Send + 'static>(
    actor: &ActorRef<OpenRouterMsg>,
    timeout: Duration,
    build: impl FnOnce(Reply<T>) -> OpenRouterMsg,
) -> Result<T, OpenRouterCallError> {
    crate::supervisor::ask(actor, timeout, build)
        .await
        .map_err(|no_answer| match no_answer {
            crate::supervisor::NoAnswer::Down => OpenRouterCallError::ActorDown,
            crate::supervisor::NoAnswer::Timeout(timeout) => {
                OpenRouterCallError::ActorTimeout(timeout)
            }
        })?
}

/// `GET /credits` through the actor.
pub async fn credits(
    actor: &ActorRef<OpenRouterMsg>,
    timeout: Duration,
) -> Result<Credits, OpenRouterCallError> {
    ask(actor, timeout, OpenRouterMsg::Credits).await
}

/// Every key through the actor.
pub async fn list_all_keys(
    actor: &ActorRef<OpenRouterMsg>,
    include_disabled: bool,
    timeout: Duration,
) -> Result<Vec<Key>, OpenRouterCallError> {
    ask(actor, timeout, |reply| OpenRouterMsg::ListAllKeys {
        include_disabled,
        reply,
    })
    .await
}

/// One key through the actor.
pub async fn get_key(
    actor: &ActorRef<OpenRouterMsg>,
    hash: impl Into<String>,
    timeout: Duration,
) -> Result<Key, OpenRouterCallError> {
    let hash = hash.into();
    ask(actor, timeout, |reply| OpenRouterMsg::GetKey {
        hash,
        reply,
    })
    .await
}

/// A new key through the actor. `timeout` should cover the retries (a few seconds of backoff, or
/// up to a minute of `Retry-After`): a caller that gives up early may leave a created key behind.
pub async fn create_key(
    actor: &ActorRef<OpenRouterMsg>,
    request: CreateKey,
    timeout: Duration,
) -> Result<CreatedKey, OpenRouterCallError> {
    ask(actor, timeout, |reply| OpenRouterMsg::CreateKey {
        request,
        reply,
    })
    .await
}

/// A key update through the actor.
pub async fn update_key(
    actor: &ActorRef<OpenRouterMsg>,
    hash: impl Into<String>,
    update: KeyUpdate,
    timeout: Duration,
) -> Result<Key, OpenRouterCallError> {
    let hash = hash.into();
    ask(actor, timeout, |reply| OpenRouterMsg::UpdateKey {
        hash,
        update,
        reply,
    })
    .await
}

/// A key deletion through the actor.
pub async fn delete_key(
    actor: &ActorRef<OpenRouterMsg>,
    hash: impl Into<String>,
    timeout: Duration,
) -> Result<(), OpenRouterCallError> {
    let hash = hash.into();
    ask(actor, timeout, |reply| OpenRouterMsg::DeleteKey {
        hash,
        reply,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        let api = |error| OpenRouterCallError::Api(error).code();
        assert_eq!(
            OpenRouterCallError::Unavailable { last_error: None }.code(),
            "OPENROUTER_UNAVAILABLE"
        );
        assert_eq!(api(OpenRouterError::Timeout), "OPENROUTER_TIMEOUT");
        assert_eq!(
            api(OpenRouterError::RateLimited {
                retry_after: None,
                message: String::new()
            }),
            "OPENROUTER_RATE_LIMITED"
        );
        assert_eq!(
            api(OpenRouterError::Status {
                status: 404,
                message: String::new()
            }),
            "OPENROUTER_NOT_FOUND"
        );
        assert_eq!(
            api(OpenRouterError::Status {
                status: 400,
                message: String::new()
            }),
            "OPENROUTER_REJECTED"
        );
        assert_eq!(
            api(OpenRouterError::ServerError {
                status: 503,
                message: String::new(),
                retry_after: None
            }),
            "OPENROUTER_SERVER_ERROR"
        );
        assert_eq!(
            OpenRouterCallError::ActorTimeout(Duration::from_secs(1)).code(),
            "OPENROUTER_TIMEOUT"
        );
        assert_eq!(
            OpenRouterCallError::ActorDown.code(),
            "OPENROUTER_ACTOR_DOWN"
        );
        let shown = OpenRouterCallError::Unavailable {
            last_error: Some("openrouter answered 503: Service Unavailable".into()),
        }
        .to_string();
        assert!(
            shown.contains("circuit open") && shown.contains("503"),
            "{shown}"
        );
    }
}
