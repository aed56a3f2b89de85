//! Resilience for the integration actors (DESIGN §6): the one retry layer, one circuit breaker per
//! integration, Bags' sliding request budget and a requests-per-second cap.
//!
//! The breaker is failsafe's state machine (consecutive failures, constant cooldown) with two
//! additions failsafe lacks: a half-open breaker lets exactly one probe through (failsafe lets every
//! caller through while half-open), and counters plus the last error for health reporting.
//! failsafe keeps its own clock, so tests drive cooldowns with short real durations; the retry
//! delays, the budget and the rate limiter use tokio's clock, so tests can pause it.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use failsafe::futures::CircuitBreaker as _;
use failsafe::{Instrument, StateMachine};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The longest `Retry-After` the retry layer sleeps through. A service asking for more is treated
/// as down for now: the call fails with its error instead of holding a request (and a concurrency
/// slot) for minutes.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The integrations, each with its own breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Integration {
    Bags,
    SolanaRpc,
    HeliusDas,
    OpenRouter,
    Cctp,
}

impl Integration {
    /// `bags`, `solana-rpc`, `helius-das`, `openrouter`, `cctp`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Bags => "bags",
            Self::SolanaRpc => "solana-rpc",
            Self::HeliusDas => "helius-das",
            Self::OpenRouter => "openrouter",
            Self::Cctp => "cctp",
        }
    }

    /// The run error code when it is unavailable: `BAGS_UNAVAILABLE`, `RPC_UNAVAILABLE`,
    /// `HOLDERS_UNAVAILABLE`, `OPENROUTER_UNAVAILABLE`, `CCTP_UNAVAILABLE`.
    pub fn unavailable_code(&self) -> &'static str {
        match self {
            Self::Bags => "BAGS_UNAVAILABLE",
            Self::SolanaRpc => "RPC_UNAVAILABLE",
            Self::HeliusDas => "HOLDERS_UNAVAILABLE",
            Self::OpenRouter => "OPENROUTER_UNAVAILABLE",
            Self::Cctp => "CCTP_UNAVAILABLE",
        }
    }
}

/// How the retry layer treats an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transience {
    /// Connect errors, timeouts, 429, 5xx: worth retrying, after `retry_after` if the service
    /// said so (Retry-After, Bags' resetTime).
    Transient { retry_after: Option<Duration> },
    /// Everything else (4xx, decode errors, on-chain failures): retrying cannot help, and it does
    /// not count against the breaker (the service answered).
    Permanent,
}

/// Errors the resilience layer can classify.
pub trait Classify {
    fn transience(&self) -> Transience;
}

/// Bounded exponential backoff with jitter.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, backoff from 250 ms doubling up to 8 s, full jitter: a blip is absorbed within
    /// about a second, a real outage gives up within seconds and leaves the rest to the breaker.
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1` (attempt counts from 1): `retry_after` when the
    /// service gave one (capped at [`MAX_RETRY_AFTER`]), else jittered exponential backoff.
    ///
    /// The jitter is "full": uniform between zero and `min(max_delay, base_delay × 2^(attempt−1))`,
    /// so that callers failing together do not retry together.
    pub fn delay_for(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(retry_after) = retry_after {
            // Honoured as stated (no jitter below it): the service said "not before".
            return retry_after.min(MAX_RETRY_AFTER);
        }
        let ceiling = self.backoff_ceiling(attempt);
        let ceiling_micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
        if ceiling_micros == 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(rand::thread_rng().gen_range(0..=ceiling_micros))
    }

    /// The un-jittered backoff before attempt `attempt + 1`.
    fn backoff_ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.base_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Clone, Debug)]
pub struct BreakerConfig {
    /// Consecutive transient failures that open the breaker (3).
    pub failure_threshold: u32,
    /// How long it stays open before one probe is let through.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    /// 3 consecutive failures, 30 s open.
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// What health reporting shows for one integration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakerSnapshot {
    pub integration: Integration,
    pub state: BreakerState,
    /// Attempts let through to the service (each retry counts).
    pub requests: u64,
    /// Attempts that failed transiently (the kind that counts against the breaker).
    pub failures: u64,
    /// Calls refused without contacting the service because the breaker was open or a half-open
    /// probe was already in flight.
    pub rejected: u64,
    /// The last transient failure. Never contains a secret.
    pub last_error: Option<String>,
    pub last_error_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The circuit breaker of one integration (failsafe underneath). Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Breaker {
    inner: Arc<BreakerInner>,
}

type Machine = StateMachine<failsafe::failure_policy::ConsecutiveFailures<Cooldown>, Hooks>;
type Cooldown = failsafe::backoff::Constant;

struct BreakerInner {
    integration: Integration,
    cooldown: Duration,
    machine: Machine,
    status: Arc<Mutex<Status>>,
}

/// Our view of the breaker, kept in step with failsafe's through its `Instrument` hooks.
struct Status {
    state: Tracked,
    /// The id of the half-open probe in flight, if any.
    probe: Option<u64>,
    next_probe: u64,
    requests: u64,
    failures: u64,
    rejected: u64,
    last_error: Option<String>,
    last_error_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tracked {
    Closed,
    /// Opened at this instant (failsafe's clock is `std::time::Instant` too).
    Open(std::time::Instant),
    HalfOpen,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Counters and a state flag: nothing a panicking holder could leave half-written.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// failsafe's instrumentation: tracks the state it moves to and logs the transitions.
struct Hooks {
    integration: Integration,
    status: Arc<Mutex<Status>>,
}

impl Instrument for Hooks {
    fn on_call_rejected(&self) {
        // Counted by `call`, which sees the rejection.
    }

    fn on_open(&self) {
        let mut status = lock(&self.status);
        let previous = status.state;
        status.state = Tracked::Open(std::time::Instant::now());
        status.probe = None;
        let last_error = status.last_error.clone().unwrap_or_default();
        drop(status);
        match previous {
            Tracked::HalfOpen => tracing::warn!(
                integration = self.integration.as_str(),
                error = %last_error,
                "circuit reopened: probe failed"
            ),
            _ => tracing::warn!(
                integration = self.integration.as_str(),
                error = %last_error,
                "circuit open"
            ),
        }
    }

    fn on_half_open(&self) {
        let mut status = lock(&self.status);
        status.state = Tracked::HalfOpen;
        drop(status);
        tracing::info!(
            integration = self.integration.as_str(),
            "circuit half-open: probing"
        );
    }

    fn on_closed(&self) {
        let mut status = lock(&self.status);
        let previous = status.state;
        status.state = Tracked::Closed;
        status.probe = None;
        drop(status);
        // failsafe also calls this once on construction; only a real recovery is news.
        if previous != Tracked::Closed {
            tracing::info!(integration = self.integration.as_str(), "circuit closed");
        }
    }
}

/// Permission for one attempt. A half-open probe that ends without an outcome (its future was
/// dropped, e.g. the caller was cancelled) frees the probe slot on drop, so the breaker cannot
/// stay stuck refusing everyone.
struct Admission<'a> {
    breaker: &'a Breaker,
    probe: Option<u64>,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.probe {
            let mut status = self.breaker.status();
            if status.probe == Some(id) {
                status.probe = None;
            }
        }
    }
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("integration", &self.inner.integration)
            .field("state", &self.state())
            .finish()
    }
}

impl Breaker {
    pub fn new(integration: Integration, config: BreakerConfig) -> Self {
        let status = Arc::new(Mutex::new(Status {
            state: Tracked::Closed,
            probe: None,
            next_probe: 0,
            requests: 0,
            failures: 0,
            rejected: 0,
            last_error: None,
            last_error_at: None,
        }));
        // `constant`: failsafe's exponential and jittered backoffs panic below 1 s, and one fixed
        // cooldown is what the runbook describes.
        let policy = failsafe::failure_policy::consecutive_failures(
            config.failure_threshold.max(1),
            failsafe::backoff::constant(config.cooldown),
        );
        let machine = failsafe::Config::new()
            .failure_policy(policy)
            .instrument(Hooks {
                integration,
                status: status.clone(),
            })
            .build();
        Self {
            inner: Arc::new(BreakerInner {
                integration,
                cooldown: config.cooldown,
                machine,
                status,
            }),
        }
    }

    pub fn integration(&self) -> Integration {
        self.inner.integration
    }

    /// The state now. An open breaker whose cooldown has passed is reported half-open: the next
    /// call will be let through as the probe (failsafe itself only notices when that call comes).
    pub fn state(&self) -> BreakerState {
        let status = self.status();
        self.derive(&status)
    }

    pub fn snapshot(&self) -> BreakerSnapshot {
        let status = self.status();
        BreakerSnapshot {
            integration: self.inner.integration,
            state: self.derive(&status),
            requests: status.requests,
            failures: status.failures,
            rejected: status.rejected,
            last_error: status.last_error.clone(),
            last_error_at: status.last_error_at,
        }
    }

    fn status(&self) -> MutexGuard<'_, Status> {
        lock(&self.inner.status)
    }

    fn derive(&self, status: &Status) -> BreakerState {
        match status.state {
            Tracked::Closed => BreakerState::Closed,
            Tracked::HalfOpen => BreakerState::HalfOpen,
            Tracked::Open(since) if since.elapsed() >= self.inner.cooldown => {
                BreakerState::HalfOpen
            }
            Tracked::Open(_) => BreakerState::Open,
        }
    }

    /// Lets an attempt through, or refuses it (and counts the refusal): open and cooling down, or
    /// half-open with the one probe already in flight.
    fn admit(&self) -> Option<Admission<'_>> {
        let mut status = self.status();
        let probe = match self.derive(&status) {
            BreakerState::Closed => None,
            BreakerState::Open => {
                status.rejected += 1;
                return None;
            }
            BreakerState::HalfOpen => {
                if status.probe.is_some() {
                    status.rejected += 1;
                    return None;
                }
                status.next_probe += 1;
                let id = status.next_probe;
                status.probe = Some(id);
                Some(id)
            }
        };
        status.requests += 1;
        Some(Admission {
            breaker: self,
            probe,
        })
    }

    /// failsafe's failure predicate: transient errors count against the breaker (and become the
    /// last error before failsafe decides to open, so the "circuit open" log names it).
    fn judge<E: Classify + std::fmt::Display>(&self, error: &E) -> bool {
        match error.transience() {
            Transience::Permanent => false,
            Transience::Transient { .. } => {
                let mut status = self.status();
                status.failures += 1;
                status.last_error = Some(error.to_string());
                status.last_error_at = Some(Utc::now());
                true
            }
        }
    }

    fn count_rejected(&self) {
        self.status().rejected += 1;
    }

    fn is_closed(&self) -> bool {
        self.status().state == Tracked::Closed
    }

    fn unavailable<E>(&self) -> ResilienceError<E> {
        ResilienceError::Unavailable {
            integration: self.inner.integration,
            last_error: self.status().last_error.clone(),
        }
    }
}

/// Why a resilient call failed.
#[derive(thiserror::Error, Debug)]
pub enum ResilienceError<E> {
    /// The breaker is open (or opened during the retries): fail fast.
    #[error("{} is unavailable (circuit open)", integration.as_str())]
    Unavailable {
        integration: Integration,
        last_error: Option<String>,
    },
    /// A permanent error, or the last transient one once the attempts ran out.
    #[error(transparent)]
    Failed(E),
}

/// Runs `operation` through `breaker`, retrying transient failures per `policy`. Permanent
/// errors return at once; an open breaker fails fast without calling `operation`.
///
/// Retries stop as soon as the breaker is no longer closed (this call's failures or another
/// caller's opened it), and when the service asks to wait longer than [`MAX_RETRY_AFTER`].
pub async fn call<T, E, F, Fut>(
    policy: &RetryPolicy,
    breaker: &Breaker,
    operation: F,
) -> Result<T, ResilienceError<E>>
where
    E: Classify + std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    call_retrying_if(policy, breaker, |_: &E| true, operation).await
}

/// [`call`] for an operation that is not idempotent: a transient failure is retried only when
/// `may_retry` says repeating it is safe (e.g. the request never reached the service). The others
/// still count against the breaker; they are returned instead of retried.
pub async fn call_retrying_if<T, E, R, F, Fut>(
    policy: &RetryPolicy,
    breaker: &Breaker,
    may_retry: R,
    mut operation: F,
) -> Result<T, ResilienceError<E>>
where
    E: Classify + std::fmt::Display,
    R: Fn(&E) -> bool,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let integration = breaker.integration().as_str();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let Some(admission) = breaker.admit() else {
            return Err(breaker.unavailable());
        };
        let attempt_started = std::time::Instant::now();
        let outcome = breaker
            .inner
            .machine
            .call_with(|error: &E| breaker.judge(error), operation())
            .await;
        drop(admission);
        if !matches!(outcome, Err(failsafe::Error::Rejected)) {
            crate::metrics::global().observe_request(
                integration,
                if outcome.is_ok() { "ok" } else { "error" },
                attempt_started.elapsed(),
            );
        }
        let error = match outcome {
            Ok(value) => return Ok(value),
            // Our admission and failsafe's clock disagreed by a hair about the cooldown.
            Err(failsafe::Error::Rejected) => {
                breaker.count_rejected();
                return Err(breaker.unavailable());
            }
            Err(failsafe::Error::Inner(error)) => error,
        };
        let Transience::Transient { retry_after } = error.transience() else {
            return Err(ResilienceError::Failed(error));
        };
        if attempt >= policy.max_attempts || !may_retry(&error) {
            return Err(ResilienceError::Failed(error));
        }
        if !breaker.is_closed() {
            return Err(breaker.unavailable());
        }
        if retry_after.is_some_and(|wait| wait > MAX_RETRY_AFTER) {
            tracing::warn!(
                integration,
                retryAfterSec = retry_after.unwrap_or_default().as_secs(),
                "service asked to wait longer than we retry for, giving up"
            );
            return Err(ResilienceError::Failed(error));
        }
        let delay = policy.delay_for(attempt, retry_after);
        tracing::debug!(
            integration,
            attempt,
            delayMs = delay.as_millis() as u64,
            error = %error,
            "transient failure, retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

/// A sliding-window request budget (Bags: 1,000 per hour), kept locally and corrected from the
/// service's `X-RateLimit-*` headers. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct SlidingBudget {
    inner: Arc<Mutex<BudgetState>>,
}

struct BudgetState {
    limit: u32,
    window: Duration,
    /// When each request of the current window was taken, oldest first.
    taken: VecDeque<tokio::time::Instant>,
    /// The service's own counts, one per window it reported (a rate-limit window, or a short
    /// block such as a 429 whose reset is seconds away), each until its reset. The lowest
    /// unexpired one applies: a short block must not be stretched to the end of a longer
    /// window, and a longer window's count must not be forgotten when the short block ends.
    service: Vec<ServiceView>,
}

#[derive(Clone, Copy)]
struct ServiceView {
    remaining: u32,
    until: tokio::time::Instant,
}

impl BudgetState {
    fn refresh(&mut self, now: tokio::time::Instant) {
        while self
            .taken
            .front()
            .is_some_and(|&taken| taken + self.window <= now)
        {
            self.taken.pop_front();
        }
        self.service.retain(|view| view.until > now);
    }

    fn local_remaining(&self) -> u32 {
        let taken = u32::try_from(self.taken.len()).unwrap_or(u32::MAX);
        self.limit.saturating_sub(taken)
    }

    fn remaining(&self) -> u32 {
        self.service
            .iter()
            .map(|view| view.remaining)
            .fold(self.local_remaining(), u32::min)
    }
}

impl std::fmt::Debug for SlidingBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlidingBudget")
            .field("remaining", &self.remaining())
            .finish()
    }
}

impl SlidingBudget {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            inner: Arc::new(Mutex::new(BudgetState {
                limit,
                window,
                taken: VecDeque::new(),
                service: Vec::new(),
            })),
        }
    }

    /// Takes one request from the budget, or says how long until one is free.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        let now = tokio::time::Instant::now();
        let mut state = lock(&self.inner);
        state.refresh(now);
        if state.local_remaining() == 0 {
            // With a zero limit there is no oldest request; a whole window is the honest answer.
            let free_at = state
                .taken
                .front()
                .map_or(now + state.window, |&oldest| oldest + state.window);
            return Err(free_at.saturating_duration_since(now));
        }
        // Free again when every window that says "none left" has reset.
        if let Some(free_at) = state
            .service
            .iter()
            .filter(|view| view.remaining == 0)
            .map(|view| view.until)
            .max()
        {
            return Err(free_at.saturating_duration_since(now));
        }
        state.taken.push_back(now);
        for view in &mut state.service {
            view.remaining -= 1;
        }
        Ok(())
    }

    /// Corrects the local view from response headers (`X-RateLimit-Limit`, `-Remaining`,
    /// `-Reset` as unix seconds): the service's count wins when it says we have less.
    ///
    /// It never raises the budget above what we counted ourselves (a stale or reordered response
    /// must not let us overspend). A remaining count without a reset holds for one window; one
    /// whose reset has already passed is ignored.
    pub fn observe(
        &self,
        limit: Option<u32>,
        remaining: Option<u32>,
        reset_unix_secs: Option<u64>,
    ) {
        let now = tokio::time::Instant::now();
        let mut state = lock(&self.inner);
        state.refresh(now);
        if let Some(limit) = limit {
            state.limit = state.limit.min(limit);
        }
        let Some(remaining) = remaining else { return };
        let until = match reset_unix_secs {
            None => now + state.window,
            Some(reset) => {
                let now_unix = u64::try_from(Utc::now().timestamp()).unwrap_or(0);
                match reset.checked_sub(now_unix) {
                    Some(seconds) if seconds > 0 => now + Duration::from_secs(seconds),
                    _ => return,
                }
            }
        };
        // The same service window seen twice (reset instants agree to within a second, either
        // way): the lower count is the later truth. Another reset is another window, kept beside
        // it (each expires at its own reset).
        let same_window = state.service.iter_mut().find(|current| {
            until.saturating_duration_since(current.until) <= Duration::from_secs(1)
                && current.until.saturating_duration_since(until) <= Duration::from_secs(1)
        });
        match same_window {
            Some(current) => {
                current.remaining = current.remaining.min(remaining);
                current.until = current.until.max(until);
            }
            None => state.service.push(ServiceView { remaining, until }),
        }
    }

    /// Requests still available in the current window.
    pub fn remaining(&self) -> u32 {
        let mut state = lock(&self.inner);
        state.refresh(tokio::time::Instant::now());
        state.remaining()
    }
}

/// Caps requests per second (Helius). Cheap to clone; clones share state.
///
/// A sliding one-second window: at most `requests` acquisitions in any second, with no burst at a
/// window boundary (which a fixed window or a full token bucket would allow).
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Mutex<LimiterState>>,
}

struct LimiterState {
    per_second: usize,
    taken: VecDeque<tokio::time::Instant>,
}

const ONE_SECOND: Duration = Duration::from_secs(1);

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("per_second", &lock(&self.inner).per_second)
            .finish()
    }
}

impl RateLimiter {
    /// `requests` per second; 0 is taken as 1, so a misconfiguration slows requests rather than
    /// stalling them forever.
    pub fn per_second(requests: u32) -> Self {
        Self {
            inner: Arc::new(Mutex::new(LimiterState {
                per_second: usize::try_from(requests.max(1)).unwrap_or(usize::MAX),
                taken: VecDeque::new(),
            })),
        }
    }

    /// Waits until a request may go.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let now = tokio::time::Instant::now();
                let mut state = lock(&self.inner);
                while state
                    .taken
                    .front()
                    .is_some_and(|&taken| taken + ONE_SECOND <= now)
                {
                    state.taken.pop_front();
                }
                if state.taken.len() < state.per_second {
                    state.taken.push_back(now);
                    return;
                }
                match state.taken.front() {
                    Some(&oldest) => (oldest + ONE_SECOND).saturating_duration_since(now),
                    None => ONE_SECOND,
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// An error with a chosen transience.
    #[derive(Debug, Clone)]
    struct TestError {
        transience: Transience,
        text: &'static str,
    }

    impl std::fmt::Display for TestError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.text)
        }
    }

    impl Classify for TestError {
        fn transience(&self) -> Transience {
            self.transience
        }
    }

    fn transient(text: &'static str) -> TestError {
        TestError {
            transience: Transience::Transient { retry_after: None },
            text,
        }
    }

    fn permanent(text: &'static str) -> TestError {
        TestError {
            transience: Transience::Permanent,
            text,
        }
    }

    fn once() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
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

    /// One attempt of an operation that always returns `outcome`, counting its invocations.
    async fn call_once(
        breaker: &Breaker,
        calls: &AtomicU32,
        outcome: Result<u32, TestError>,
    ) -> Result<u32, ResilienceError<TestError>> {
        call(&once(), breaker, || {
            calls.fetch_add(1, Ordering::SeqCst);
            let outcome = outcome.clone();
            async move { outcome }
        })
        .await
    }

    async fn open(breaker: &Breaker, calls: &AtomicU32) {
        for _ in 0..3 {
            let _ = call_once(breaker, calls, Err(transient("503 service unavailable"))).await;
        }
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    /// Polls until the breaker's cooldown has passed (real time: failsafe has its own clock).
    async fn wait_half_open(breaker: &Breaker) {
        for _ in 0..500 {
            if breaker.state() == BreakerState::HalfOpen {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("breaker never became half-open");
    }

    #[test]
    fn integrations_have_stable_names_and_codes() {
        assert_eq!(Integration::SolanaRpc.as_str(), "solana-rpc");
        assert_eq!(
            Integration::HeliusDas.unavailable_code(),
            "HOLDERS_UNAVAILABLE"
        );
        assert_eq!(
            Integration::OpenRouter.unavailable_code(),
            "OPENROUTER_UNAVAILABLE"
        );
        assert_eq!(
            serde_json::to_string(&Integration::HeliusDas).unwrap(),
            "\"helius-das\""
        );
        assert_eq!(
            serde_json::to_string(&BreakerState::HalfOpen).unwrap(),
            "\"half_open\""
        );
    }

    #[test]
    fn backoff_is_jittered_below_a_doubling_capped_ceiling() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff_ceiling(1), Duration::from_millis(250));
        assert_eq!(policy.backoff_ceiling(2), Duration::from_millis(500));
        assert_eq!(policy.backoff_ceiling(5), Duration::from_secs(4));
        assert_eq!(policy.backoff_ceiling(6), Duration::from_secs(8));
        assert_eq!(policy.backoff_ceiling(60), Duration::from_secs(8));
        let delays: Vec<Duration> = (0..200).map(|_| policy.delay_for(3, None)).collect();
        assert!(delays.iter().all(|delay| *delay <= Duration::from_secs(1)));
        assert!(
            delays.iter().any(|delay| *delay != delays[0]),
            "jittered, not constant"
        );
    }

    #[test]
    fn retry_after_is_honoured_exactly_and_capped() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay_for(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            policy.delay_for(1, Some(Duration::from_secs(3600))),
            MAX_RETRY_AFTER
        );
    }

    #[tokio::test]
    async fn opens_after_three_transient_failures_and_then_fails_fast() {
        let breaker = breaker(Duration::from_secs(30));
        let calls = AtomicU32::new(0);
        for expected in [BreakerState::Closed, BreakerState::Closed] {
            let result = call_once(&breaker, &calls, Err(transient("503"))).await;
            assert!(matches!(result, Err(ResilienceError::Failed(_))));
            assert_eq!(breaker.state(), expected);
        }
        let _ = call_once(&breaker, &calls, Err(transient("503"))).await;
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let result = call_once(&breaker, &calls, Ok(1)).await;
        match result {
            Err(ResilienceError::Unavailable {
                integration,
                last_error,
            }) => {
                assert_eq!(integration, Integration::OpenRouter);
                assert_eq!(last_error.as_deref(), Some("503"));
            }
            other => panic!("expected fail-fast, got {other:?}"),
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3, "operation not called");
        let snapshot = breaker.snapshot();
        assert_eq!(snapshot.state, BreakerState::Open);
        assert_eq!(
            (snapshot.requests, snapshot.failures, snapshot.rejected),
            (3, 3, 1)
        );
        assert!(snapshot.last_error_at.is_some());
    }

    #[tokio::test]
    async fn a_success_resets_the_consecutive_count() {
        let breaker = breaker(Duration::from_secs(30));
        let calls = AtomicU32::new(0);
        for _ in 0..2 {
            let _ = call_once(&breaker, &calls, Err(transient("503"))).await;
        }
        assert_eq!(call_once(&breaker, &calls, Ok(7)).await.unwrap(), 7);
        for _ in 0..2 {
            let _ = call_once(&breaker, &calls, Err(transient("503"))).await;
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test]
    async fn permanent_errors_are_neither_retried_nor_counted_as_failures() {
        let breaker = breaker(Duration::from_secs(30));
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy::default();
        for _ in 0..2 {
            let _ = call_once(&breaker, &calls, Err(transient("503"))).await;
        }
        calls.store(0, Ordering::SeqCst);
        let result = call(&policy, &breaker, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(permanent("404 not found")) }
        })
        .await;
        assert!(
            matches!(result, Err(ResilienceError::Failed(ref error)) if error.text == "404 not found")
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "not retried");
        // The service answered: the two earlier failures no longer count as consecutive.
        for _ in 0..2 {
            let _ = call_once(&breaker, &calls, Err(transient("503"))).await;
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        let snapshot = breaker.snapshot();
        assert_eq!(snapshot.failures, 4);
        assert_eq!(snapshot.last_error.as_deref(), Some("503"));
    }

    #[tokio::test]
    async fn half_open_lets_exactly_one_probe_through_and_success_closes() {
        let breaker = breaker(Duration::from_millis(50));
        let calls = AtomicU32::new(0);
        open(&breaker, &calls).await;
        wait_half_open(&breaker).await;

        // Five callers at once; the probe blocks until released.
        let release = Arc::new(tokio::sync::Notify::new());
        let probes = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let (breaker, release, probes) = (breaker.clone(), release.clone(), probes.clone());
            tasks.push(tokio::spawn(async move {
                call(&once(), &breaker, || {
                    probes.fetch_add(1, Ordering::SeqCst);
                    let release = release.clone();
                    async move {
                        release.notified().await;
                        Ok::<_, TestError>(())
                    }
                })
                .await
            }));
        }
        // Everyone but the probe is refused at once.
        for _ in 0..500 {
            if breaker.snapshot().rejected >= 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(breaker.snapshot().rejected, 4);
        assert_eq!(probes.load(Ordering::SeqCst), 1, "exactly one probe");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        release.notify_waiters();
        let mut succeeded = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => succeeded += 1,
                Err(ResilienceError::Unavailable { .. }) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(succeeded, 1);
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(call_once(&breaker, &calls, Ok(3)).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_failed_probe_reopens_the_breaker() {
        let breaker = breaker(Duration::from_millis(50));
        let calls = AtomicU32::new(0);
        open(&breaker, &calls).await;
        wait_half_open(&breaker).await;
        let result = call_once(&breaker, &calls, Err(transient("still down"))).await;
        assert!(matches!(result, Err(ResilienceError::Failed(_))));
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert!(matches!(
            call_once(&breaker, &calls, Ok(1)).await,
            Err(ResilienceError::Unavailable { .. })
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        // And it probes again after another cooldown.
        wait_half_open(&breaker).await;
        assert_eq!(call_once(&breaker, &calls, Ok(2)).await.unwrap(), 2);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test]
    async fn a_permanent_answer_to_the_probe_closes_the_breaker() {
        let breaker = breaker(Duration::from_millis(50));
        let calls = AtomicU32::new(0);
        open(&breaker, &calls).await;
        wait_half_open(&breaker).await;
        let result = call_once(&breaker, &calls, Err(permanent("404"))).await;
        assert!(matches!(result, Err(ResilienceError::Failed(_))));
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test]
    async fn an_abandoned_probe_frees_the_probe_slot() {
        let breaker = breaker(Duration::from_millis(50));
        let calls = AtomicU32::new(0);
        open(&breaker, &calls).await;
        wait_half_open(&breaker).await;
        let hung = {
            let breaker = breaker.clone();
            tokio::spawn(async move {
                call(&once(), &breaker, || {
                    std::future::pending::<Result<(), TestError>>()
                })
                .await
            })
        };
        for _ in 0..500 {
            if breaker.snapshot().requests == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(matches!(
            call_once(&breaker, &calls, Ok(1)).await,
            Err(ResilienceError::Unavailable { .. })
        ));
        hung.abort();
        let _ = hung.await;
        assert_eq!(call_once(&breaker, &calls, Ok(5)).await.unwrap(), 5);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_failures_after_retry_after() {
        let breaker = breaker(Duration::from_secs(30));
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let result = call(&RetryPolicy::default(), &breaker, || {
            let attempt = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if attempt == 0 {
                    Err(TestError {
                        transience: Transience::Transient {
                            retry_after: Some(Duration::from_secs(5)),
                        },
                        text: "429",
                    })
                } else {
                    Ok(attempt)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 2, "retried exactly once");
        assert!(started.elapsed() >= Duration::from_secs(5));
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts() {
        let breaker = Breaker::new(
            Integration::Bags,
            BreakerConfig {
                failure_threshold: 100,
                cooldown: Duration::from_secs(30),
            },
        );
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let result = call(&policy, &breaker, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(transient("timeout")) }
        })
        .await;
        assert!(matches!(result, Err(ResilienceError::Failed(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_non_idempotent_call_retries_only_what_is_safe_to_repeat() {
        let breaker = breaker(Duration::from_secs(30));
        let calls = AtomicU32::new(0);
        // "refused" never reached the service and is retried; "ambiguous" may have had an effect
        // and is returned, though it still counts against the breaker.
        let result = call_retrying_if(
            &RetryPolicy::default(),
            &breaker,
            |error: &TestError| error.text == "refused",
            || {
                let attempt = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    Err::<(), _>(transient(if attempt == 0 {
                        "refused"
                    } else {
                        "ambiguous"
                    }))
                }
            },
        )
        .await;
        assert!(
            matches!(result, Err(ResilienceError::Failed(ref error)) if error.text == "ambiguous")
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(breaker.snapshot().failures, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_beyond_the_cap_is_not_slept_through() {
        let breaker = breaker(Duration::from_secs(30));
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let result = call(&RetryPolicy::default(), &breaker, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                Err::<(), _>(TestError {
                    transience: Transience::Transient {
                        retry_after: Some(Duration::from_secs(3600)),
                    },
                    text: "429",
                })
            }
        })
        .await;
        assert!(matches!(result, Err(ResilienceError::Failed(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_when_the_breaker_opens() {
        let breaker = breaker(Duration::from_secs(30));
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy {
            max_attempts: 10,
            ..RetryPolicy::default()
        };
        let result = call(&policy, &breaker, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(transient("502")) }
        })
        .await;
        assert!(matches!(result, Err(ResilienceError::Unavailable { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_slides() {
        let budget = SlidingBudget::new(3, Duration::from_secs(60));
        for _ in 0..2 {
            budget.try_acquire().unwrap();
        }
        tokio::time::advance(Duration::from_secs(20)).await;
        budget.try_acquire().unwrap();
        assert_eq!(budget.remaining(), 0);
        assert_eq!(budget.try_acquire(), Err(Duration::from_secs(40)));
        tokio::time::advance(Duration::from_secs(40)).await;
        // The first two slid out; the third is still in the window.
        assert_eq!(budget.remaining(), 2);
        budget.try_acquire().unwrap();
        assert_eq!(budget.remaining(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_service_count_lowers_the_budget_until_its_reset() {
        let budget = SlidingBudget::new(1000, Duration::from_secs(3600));
        budget.try_acquire().unwrap();
        let now_unix = u64::try_from(Utc::now().timestamp()).unwrap();
        // The service says more than we know: ignored.
        budget.observe(Some(1000), Some(999_999), Some(now_unix + 30));
        assert_eq!(budget.remaining(), 999);
        // Less than we know: it wins.
        budget.observe(Some(1000), Some(2), Some(now_unix + 30));
        assert_eq!(budget.remaining(), 2);
        budget.try_acquire().unwrap();
        budget.try_acquire().unwrap();
        let wait = budget.try_acquire().unwrap_err();
        assert!(
            wait > Duration::from_secs(28) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        // A reordered, higher count for the same window does not raise it.
        budget.observe(None, Some(50), Some(now_unix + 30));
        assert_eq!(budget.remaining(), 0);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(budget.remaining(), 997, "back to our own count");
        // A reset already past is ignored; a lower limit is adopted.
        budget.observe(None, Some(0), Some(now_unix.saturating_sub(5)));
        assert_eq!(budget.remaining(), 997);
        budget.observe(Some(10), None, None);
        assert_eq!(budget.remaining(), 7);
    }

    /// Bags answers a burst with 429, `remaining: 0` and a reset seconds away while its window
    /// headers (on every other answer) reset in an hour: the block lasts until the 429's reset,
    /// not the window's, and the window's count still applies afterwards.
    #[tokio::test(start_paused = true)]
    async fn a_short_block_inside_a_long_window_ends_at_its_own_reset() {
        let budget = SlidingBudget::new(1000, Duration::from_secs(3600));
        let now_unix = u64::try_from(Utc::now().timestamp()).unwrap();
        budget.observe(Some(1000), Some(990), Some(now_unix + 3_000));
        budget.observe(Some(1000), Some(0), Some(now_unix + 2));
        let wait = budget.try_acquire().unwrap_err();
        assert!(wait <= Duration::from_secs(2), "blocked for {wait:?}");
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(budget.remaining(), 990, "the window's count, not our 1000");
        budget.try_acquire().unwrap();
        assert_eq!(budget.remaining(), 989);
        // The other way round: a long block is not shortened by a short window's count.
        budget.observe(None, Some(0), Some(now_unix + 600));
        budget.observe(None, Some(5), Some(now_unix + 10));
        let wait = budget.try_acquire().unwrap_err();
        assert!(wait > Duration::from_secs(590), "blocked for {wait:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_limiter_allows_n_in_any_second() {
        let limiter = RateLimiter::per_second(5);
        let started = tokio::time::Instant::now();
        let mut at = Vec::new();
        for _ in 0..12 {
            limiter.acquire().await;
            at.push(tokio::time::Instant::now());
        }
        for (index, instant) in at.iter().enumerate().skip(5) {
            assert!(
                *instant - at[index - 5] >= ONE_SECOND,
                "more than 5 within a second"
            );
        }
        assert!(started.elapsed() >= Duration::from_secs(2));
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
