//! The OpenRouter client and OpenRouterActor against the real sandbox fake over loopback: the
//! management API round trip with exact micro-USD, retries honouring `Retry-After`, the breaker
//! opening and recovering, the concurrency cap, no plaintext key in any log line, and callers of a
//! killed actor getting an error instead of hanging.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use chrono::{DateTime, Utc};
use creditbrain::sandbox::faults::{ErrorStyle, Fault, FaultMode, FaultRule, Faults, Latency};
use creditbrain::sandbox::openrouter::OpenRouterFake;
use creditbrain::sandbox::serve_on_loopback;
use creditbrain::telemetry::{JsonLinesLayer, filter_for};
use creditbrain_actors::openrouter::actor as openrouter;
use creditbrain_actors::openrouter::{
    CreateKey, KeyUpdate, LimitReset, OpenRouterActor, OpenRouterArgs, OpenRouterClient,
    OpenRouterError, OpenRouterMsg,
};
use creditbrain_actors::resilience::{
    Breaker, BreakerConfig, BreakerState, Classify, Integration, RetryPolicy, Transience,
};
use creditbrain_actors::secret::Secret;
use ractor::{Actor, ActorRef};
use tokio::task::JoinHandle;
use tracing_subscriber::prelude::*;

use crate::support::eventually;

const MANAGEMENT_KEY: &str = "sk-or-v1-actor-test-management-key-4242424242424242";
const CREDITS: &str = "GET /api/v1/credits";
const CREATE: &str = "POST /api/v1/keys";
/// Generous for a wrapper call: covers every retry the default policy can make.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The OpenRouter fake behind the fault layer, on loopback.
struct Sandbox {
    fake: OpenRouterFake,
    faults: Faults,
    /// `http://127.0.0.1:<port>/api/v1`
    api: String,
    task: JoinHandle<()>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sandbox {
    async fn start() -> Self {
        Self::start_with(|router| router).await
    }

    /// `outer` wraps the faulted router (to observe requests as the fake's clients see them).
    async fn start_with(outer: impl FnOnce(Router) -> Router) -> Self {
        let fake = OpenRouterFake::new(MANAGEMENT_KEY.to_string(), 500_000_000);
        let faults = Faults::new();
        let router = outer(faults.wrap("openrouter", ErrorStyle::OpenRouter, fake.router()));
        let (address, task) = serve_on_loopback(router).await.expect("serve the fake");
        Self {
            fake,
            faults,
            api: format!("http://{address}/api/v1"),
            task,
        }
    }

    fn client(&self) -> OpenRouterClient {
        OpenRouterClient::new(
            self.api.clone(),
            Secret::new(MANAGEMENT_KEY),
            Duration::from_secs(5),
        )
    }

    /// Requests the fake received on `route` (faulted ones included).
    fn requests(&self, route: &str) -> u64 {
        self.faults
            .request_counts()
            .get("openrouter")
            .and_then(|routes| routes.get(route))
            .copied()
            .unwrap_or(0)
    }

    fn add_rule(&self, route: &str, latency: Option<Latency>, mode: Option<FaultMode>) {
        self.faults
            .try_add_rule(FaultRule {
                fake: "openrouter".into(),
                route: Some(route.into()),
                latency,
                mode,
            })
            .expect("a valid fault rule");
    }

    async fn actor(
        &self,
        breaker: &Breaker,
        retry: RetryPolicy,
        max_concurrency: usize,
    ) -> ActorRef<OpenRouterMsg> {
        let (actor, _join) = Actor::spawn(
            None,
            OpenRouterActor,
            OpenRouterArgs {
                client: self.client(),
                breaker: breaker.clone(),
                retry,
                max_concurrency,
            },
        )
        .await
        .expect("spawn the openrouter actor");
        actor
    }
}

fn breaker(cooldown: Duration) -> Breaker {
    Breaker::new(
        Integration::OpenRouter,
        BreakerConfig {
            failure_threshold: 3,
            cooldown,
        },
    )
}

fn named(name: &str) -> CreateKey {
    CreateKey {
        name: name.to_string(),
        ..CreateKey::default()
    }
}

#[tokio::test]
async fn the_client_round_trips_keys_with_exact_micro_dollars() {
    let sandbox = Sandbox::start().await;
    let client = sandbox.client();

    let expires_at: DateTime<Utc> = "2030-01-02T03:04:05.678Z".parse().unwrap();
    let created = client
        .create_key(&CreateKey {
            name: "creditbrain-s1-wallet1".into(),
            limit_micro_usd: Some(12_340_000),
            limit_reset: Some(LimitReset::Monthly),
            expires_at: Some(expires_at),
            include_byok_in_limit: Some(true),
        })
        .await
        .expect("create");
    let plaintext = created.plaintext.expose().to_string();
    assert!(plaintext.starts_with("sk-or-v1-"), "a real-looking key");
    let key = &created.key;
    assert_eq!(key.name, "creditbrain-s1-wallet1");
    assert_eq!(key.limit_micro_usd, Some(12_340_000));
    assert_eq!(key.limit_remaining_micro_usd, Some(12_340_000));
    assert_eq!(key.limit_reset, Some(LimitReset::Monthly));
    assert_eq!(key.expires_at, Some(expires_at));
    assert!(key.include_byok_in_limit && !key.disabled);
    assert!(
        !key.label.contains(&plaintext[12..]),
        "only a masked preview"
    );
    // Exact on the way out as well: the fake stored exactly $12.34.
    let stored = sandbox.fake.keys();
    assert_eq!(stored[0].limit_micro_usd, Some(12_340_000));

    // Usage reads back to the micro-dollar.
    sandbox.fake.add_usage(&key.hash, 1_234_567).unwrap();
    let read = client.get_key(&key.hash).await.expect("get");
    assert_eq!(read.usage_micro_usd, 1_234_567);
    assert_eq!(read.usage_monthly_micro_usd, 1_234_567);
    assert_eq!(read.limit_remaining_micro_usd, Some(12_340_000 - 1_234_567));

    // Patch the limit and its reset; then remove both.
    let patched = client
        .update_key(
            &key.hash,
            &KeyUpdate {
                limit_micro_usd: Some(Some(20_010_000)),
                limit_reset: Some(Some(LimitReset::Weekly)),
                ..KeyUpdate::default()
            },
        )
        .await
        .expect("patch");
    assert_eq!(patched.limit_micro_usd, Some(20_010_000));
    assert_eq!(patched.limit_reset, Some(LimitReset::Weekly));
    assert_eq!(patched.name, "creditbrain-s1-wallet1", "untouched");
    let unlimited = client
        .update_key(
            &key.hash,
            &KeyUpdate {
                limit_micro_usd: Some(None),
                limit_reset: Some(None),
                ..KeyUpdate::default()
            },
        )
        .await
        .expect("patch to no limit");
    assert_eq!(unlimited.limit_micro_usd, None);
    assert_eq!(unlimited.limit_reset, None);

    // A limit that is not whole cents is refused before anything is sent.
    let before = sandbox.requests("PATCH /api/v1/keys/{hash}");
    let refused = client
        .update_key(
            &key.hash,
            &KeyUpdate {
                limit_micro_usd: Some(Some(1_234_567)),
                ..KeyUpdate::default()
            },
        )
        .await;
    assert!(matches!(refused, Err(OpenRouterError::InvalidRequest(_))));
    assert_eq!(sandbox.requests("PATCH /api/v1/keys/{hash}"), before);

    // Delete, then the key is gone: a permanent 404.
    client.delete_key(&key.hash).await.expect("delete");
    let gone = client.get_key(&key.hash).await.unwrap_err();
    assert_eq!(gone.status(), Some(404), "{gone}");
    assert_eq!(gone.transience(), Transience::Permanent);
    assert!(matches!(
        client.delete_key(&key.hash).await,
        Err(OpenRouterError::Status { status: 404, .. })
    ));

    // The account balance, exact.
    sandbox.fake.set_credits(123_450_000, 23_456_789);
    let credits = client.credits().await.expect("credits");
    assert_eq!(credits.balance_micro_usd(), 123_450_000 - 23_456_789);
}

#[tokio::test]
async fn listing_pages_through_more_than_a_hundred_keys() {
    let sandbox = Sandbox::start().await;
    let client = sandbox.client();
    let mut hashes = Vec::new();
    for index in 0..151 {
        let created = client
            .create_key(&CreateKey {
                name: format!("key-{index}"),
                limit_micro_usd: Some(10_000 * (index + 1)),
                ..CreateKey::default()
            })
            .await
            .expect("create");
        hashes.push(created.key.hash);
    }
    assert_eq!(client.list_keys(0, false).await.unwrap().len(), 100);
    assert_eq!(client.list_keys(100, false).await.unwrap().len(), 51);
    let disabled = client
        .update_key(
            &hashes[7],
            &KeyUpdate {
                disabled: Some(true),
                ..KeyUpdate::default()
            },
        )
        .await
        .unwrap();
    assert!(disabled.disabled);

    let all = client.list_all_keys(true).await.expect("list all");
    assert_eq!(all.len(), 151);
    let mut listed: Vec<&str> = all.iter().map(|key| key.hash.as_str()).collect();
    listed.sort_unstable();
    let mut expected: Vec<&str> = hashes.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(listed, expected, "every key exactly once");
    // Limits come back exact across the pages (key-N was created with N+1 cents).
    for key in &all {
        let index: i64 = key.name.trim_start_matches("key-").parse().unwrap();
        assert_eq!(key.limit_micro_usd, Some(10_000 * (index + 1)));
    }
    assert_eq!(sandbox.requests("GET /api/v1/keys"), 2 + 2);

    let enabled = client.list_all_keys(false).await.expect("list enabled");
    assert_eq!(enabled.len(), 150);
    assert!(enabled.iter().all(|key| key.hash != hashes[7]));
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried_once_after_the_stated_delay() {
    let sandbox = Sandbox::start().await;
    sandbox.add_rule(
        CREATE,
        None,
        Some(FaultMode::Script {
            steps: vec![Some(Fault::RateLimited {
                retry_after_secs: 1,
            })],
        }),
    );
    let breaker = breaker(Duration::from_secs(30));
    let actor = sandbox.actor(&breaker, RetryPolicy::default(), 8).await;

    let started = Instant::now();
    let created = openrouter::create_key(&actor, named("rate-limited"), CALL_TIMEOUT)
        .await
        .expect("created after one retry");
    let elapsed = started.elapsed();
    assert!(created.plaintext.expose().starts_with("sk-or-v1-"));
    assert_eq!(sandbox.requests(CREATE), 2, "exactly one retry");
    assert!(
        elapsed >= Duration::from_secs(1),
        "waited the stated second, took {elapsed:?}"
    );
    assert_eq!(sandbox.fake.keys().len(), 1);
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, BreakerState::Closed);
    assert_eq!((snapshot.requests, snapshot.failures), (2, 1));
    actor.stop(None);
}

#[tokio::test]
async fn three_server_errors_open_the_breaker_and_a_probe_closes_it() {
    let sandbox = Sandbox::start().await;
    sandbox.add_rule(
        CREDITS,
        None,
        Some(FaultMode::Always {
            fault: Fault::ServerError { status: 503 },
        }),
    );
    let breaker = breaker(Duration::from_millis(300));
    let once = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    let actor = sandbox.actor(&breaker, once, 8).await;

    for _ in 0..3 {
        let error = openrouter::credits(&actor, CALL_TIMEOUT).await.unwrap_err();
        assert_eq!(error.code(), "OPENROUTER_SERVER_ERROR", "{error}");
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(sandbox.requests(CREDITS), 3);

    // Open: fail fast, and OpenRouter sees nothing.
    let error = openrouter::credits(&actor, CALL_TIMEOUT).await.unwrap_err();
    assert_eq!(error.code(), "OPENROUTER_UNAVAILABLE");
    assert!(error.to_string().contains("503"), "{error}");
    assert_eq!(sandbox.requests(CREDITS), 3);
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.rejected, 1);
    assert!(
        snapshot
            .last_error
            .as_deref()
            .is_some_and(|error| error.contains("503"))
    );

    // After the cooldown one probe goes through and, the fault gone, closes the breaker.
    sandbox.faults.clear(Some("openrouter"));
    eventually(Duration::from_secs(5), || async {
        (breaker.state() == BreakerState::HalfOpen).then_some(())
    })
    .await;
    let credits = openrouter::credits(&actor, CALL_TIMEOUT)
        .await
        .expect("probe");
    assert_eq!(credits.total_credits_micro_usd, 500_000_000);
    assert_eq!(sandbox.requests(CREDITS), 4);
    assert_eq!(breaker.state(), BreakerState::Closed);
    actor.stop(None);
}

#[tokio::test]
async fn retries_stop_when_the_breaker_opens_and_creates_are_not_repeated_blindly() {
    let sandbox = Sandbox::start().await;
    sandbox.add_rule(
        CREDITS,
        None,
        Some(FaultMode::Always {
            fault: Fault::ServerError { status: 502 },
        }),
    );
    sandbox.add_rule(
        CREATE,
        None,
        Some(FaultMode::Script {
            steps: vec![Some(Fault::ServerError { status: 500 })],
        }),
    );
    let breaker = breaker(Duration::from_secs(30));
    let actor = sandbox.actor(&breaker, RetryPolicy::default(), 8).await;

    // A 500 on create may have created the key: returned, not retried.
    let error = openrouter::create_key(&actor, named("ambiguous"), CALL_TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "OPENROUTER_SERVER_ERROR");
    assert_eq!(sandbox.requests(CREATE), 1);

    // One call with four attempts allowed: two more 5xx make three in a row and the breaker opens
    // before the last attempt.
    let error = openrouter::credits(&actor, CALL_TIMEOUT).await.unwrap_err();
    assert_eq!(error.code(), "OPENROUTER_UNAVAILABLE");
    assert_eq!(sandbox.requests(CREDITS), 2);
    assert_eq!(breaker.state(), BreakerState::Open);
    actor.stop(None);
}

#[tokio::test]
async fn concurrency_is_capped() {
    /// Requests being served right now, and the most seen at once.
    #[derive(Clone, Default)]
    struct InFlight {
        now: Arc<AtomicUsize>,
        max: Arc<AtomicUsize>,
    }
    let in_flight = InFlight::default();
    let tracker = in_flight.clone();
    let sandbox = Sandbox::start_with(move |router| {
        router.layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let tracker = tracker.clone();
                async move {
                    let now = tracker.now.fetch_add(1, Ordering::SeqCst) + 1;
                    tracker.max.fetch_max(now, Ordering::SeqCst);
                    let response = next.run(request).await;
                    tracker.now.fetch_sub(1, Ordering::SeqCst);
                    response
                }
            },
        ))
    })
    .await;
    sandbox.add_rule(CREATE, Some(Latency::Fixed { ms: 200 }), None);
    let breaker = breaker(Duration::from_secs(30));
    let actor = sandbox.actor(&breaker, RetryPolicy::default(), 2).await;

    let started = Instant::now();
    let mut tasks = Vec::new();
    for index in 0..8 {
        let actor = actor.clone();
        tasks.push(tokio::spawn(async move {
            openrouter::create_key(&actor, named(&format!("parallel-{index}")), CALL_TIMEOUT).await
        }));
    }
    for task in tasks {
        task.await.unwrap().expect("create");
    }
    let elapsed = started.elapsed();
    assert_eq!(sandbox.fake.keys().len(), 8);
    assert_eq!(
        in_flight.max.load(Ordering::SeqCst),
        2,
        "never more than the cap, and the cap is used"
    );
    assert!(
        elapsed >= Duration::from_millis(4 * 200),
        "8 requests of 200 ms two at a time, took {elapsed:?}"
    );
    actor.stop(None);
}

/// A `MakeWriter` target that keeps every log line in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

// One thread: the subscriber set with `set_default` is thread-local, and the actor, its request
// tasks and the fake all run on this thread.
#[tokio::test(flavor = "current_thread")]
async fn the_plaintext_key_never_reaches_a_log_line() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::registry()
        .with(filter_for("debug"))
        .with(JsonLinesLayer::new(move || writer.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);

    let sandbox = Sandbox::start().await;
    // A failure and a retry on the way, so the error paths log too.
    sandbox.add_rule(
        CREATE,
        None,
        Some(FaultMode::Script {
            steps: vec![Some(Fault::RateLimited {
                retry_after_secs: 0,
            })],
        }),
    );
    let breaker = breaker(Duration::from_secs(30));
    let actor = sandbox.actor(&breaker, RetryPolicy::default(), 8).await;
    let created = openrouter::create_key(&actor, named("creditbrain-s1-w1"), CALL_TIMEOUT)
        .await
        .expect("create");
    let plaintext = created.plaintext.expose().to_string();
    // And a call that fails for good, whose error is logged and returned.
    let missing = openrouter::get_key(&actor, "0".repeat(64), CALL_TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(missing.code(), "OPENROUTER_NOT_FOUND");
    actor.stop(None);

    let logs = captured.text();
    assert!(
        logs.contains("openrouter request"),
        "the client's debug lines were captured: {logs}"
    );
    assert!(logs.contains("\"statusCode\":429"), "{logs}");
    assert!(!logs.contains(&plaintext), "plaintext key in the logs");
    assert!(!logs.contains(MANAGEMENT_KEY), "management key in the logs");
    let shown = format!("{created:?} {missing} {missing:?}");
    assert!(!shown.contains(&plaintext), "{shown}");
    assert!(!shown.contains(MANAGEMENT_KEY), "{shown}");
    assert!(shown.contains("Secret(***)"));
}

#[tokio::test]
async fn callers_of_a_killed_actor_get_an_error_not_a_hang() {
    let sandbox = Sandbox::start().await;
    sandbox.add_rule(
        CREDITS,
        None,
        Some(FaultMode::Always { fault: Fault::Hang }),
    );
    let breaker = breaker(Duration::from_secs(30));
    let actor = sandbox.actor(&breaker, RetryPolicy::default(), 8).await;

    let pending = {
        let actor = actor.clone();
        tokio::spawn(async move { openrouter::credits(&actor, CALL_TIMEOUT).await })
    };
    eventually(Duration::from_secs(5), || async {
        (sandbox.requests(CREDITS) == 1).then_some(())
    })
    .await;
    actor.kill();
    let result = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("the caller is released well before its own timeout")
        .unwrap();
    assert_eq!(result.unwrap_err().code(), "OPENROUTER_ACTOR_DOWN");

    // Calling the dead actor fails at once too.
    eventually(Duration::from_secs(5), || async {
        (actor.get_status() == ractor::ActorStatus::Stopped).then_some(())
    })
    .await;
    let error = tokio::time::timeout(
        Duration::from_secs(5),
        openrouter::credits(&actor, CALL_TIMEOUT),
    )
    .await
    .expect("no hang")
    .unwrap_err();
    assert_eq!(error.code(), "OPENROUTER_ACTOR_DOWN");
}
