//! The credit pool: what the OpenRouter account can still spend, what is already promised to
//! holders, the reserve, and the headroom a run may grant without over-issuing (invariant I1).
//!
//! Pure arithmetic in micro-USD; the PoolActor feeds it from `GET /credits` and the key ledger.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One key's contribution to promised credit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PromisedKey {
    pub limit_micro_usd: i64,
    pub usage_micro_usd: i64,
    /// `true` for allowance keys (`limit_reset` daily/weekly/monthly): the whole limit can be
    /// spent again after each reset, so all of it is promised. `false` for credits keys, whose
    /// usage never resets: only `limit − usage` is still promised.
    pub resets: bool,
}

impl PromisedKey {
    pub fn promised_micro_usd(&self) -> i64 {
        if self.resets {
            self.limit_micro_usd.max(0)
        } else {
            (self.limit_micro_usd - self.usage_micro_usd).max(0)
        }
    }
}

/// The pool at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// `total_credits − total_usage` of the OpenRouter account.
    pub balance_micro_usd: i64,
    /// Σ over active keys of what they may still spend.
    pub promised_micro_usd: i64,
    pub reserve_bps: u32,
    /// `balance × reserve` (rounded up: the reserve is never under-counted).
    pub reserve_micro_usd: i64,
    /// `max(0, balance − reserve − promised)`: the most a run may grant now.
    pub headroom_micro_usd: i64,
}

impl PoolStatus {
    pub fn compute(
        balance_micro_usd: i64,
        keys: impl IntoIterator<Item = PromisedKey>,
        reserve_bps: u32,
    ) -> Self {
        let promised_micro_usd = keys
            .into_iter()
            .map(|key| key.promised_micro_usd())
            .fold(0i64, i64::saturating_add);
        let reserve_micro_usd = reserve_of(balance_micro_usd, reserve_bps);
        let headroom_micro_usd = balance_micro_usd
            .saturating_sub(reserve_micro_usd)
            .saturating_sub(promised_micro_usd)
            .max(0);
        Self {
            balance_micro_usd,
            promised_micro_usd,
            reserve_bps,
            reserve_micro_usd,
            headroom_micro_usd,
        }
    }

    /// Whether granting `micro_usd` more would break I1.
    pub fn can_grant(&self, micro_usd: i64) -> bool {
        micro_usd <= self.headroom_micro_usd
    }
}

/// `balance × bps / 10 000`, rounded up; 0 for a non-positive balance.
fn reserve_of(balance_micro_usd: i64, reserve_bps: u32) -> i64 {
    if balance_micro_usd <= 0 {
        return 0;
    }
    let scaled = i128::from(balance_micro_usd) * i128::from(reserve_bps);
    let reserve = (scaled + 9_999) / 10_000;
    i64::try_from(reserve).unwrap_or(i64::MAX)
}

/// A reading of the account's cumulative usage, as kept in `pool_snapshots`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageReading {
    pub at: DateTime<Utc>,
    pub total_usage_micro_usd: i64,
}

/// How long the spendable balance (balance − reserve) lasts at the usage rate measured between
/// the oldest and newest readings. `None` when there is no measurable usage (no readings, one
/// reading, or usage that did not grow): an honest "unknown", never a made-up figure.
pub fn runway(status: &PoolStatus, readings: &[UsageReading]) -> Option<Duration> {
    let oldest = readings.iter().min_by_key(|reading| reading.at)?;
    let newest = readings.iter().max_by_key(|reading| reading.at)?;
    let elapsed_ms = newest
        .at
        .signed_duration_since(oldest.at)
        .num_milliseconds();
    let used = newest.total_usage_micro_usd - oldest.total_usage_micro_usd;
    if elapsed_ms <= 0 || used <= 0 {
        return None;
    }
    let spendable = (status.balance_micro_usd - status.reserve_micro_usd).max(0);
    // spendable / (used / elapsed) = spendable × elapsed / used, in i128 to avoid overflow.
    let runway_ms = i128::from(spendable) * i128::from(elapsed_ms) / i128::from(used);
    Some(Duration::from_millis(
        u64::try_from(runway_ms).unwrap_or(u64::MAX),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const USD: i64 = 1_000_000;

    fn credits_key(limit: i64, usage: i64) -> PromisedKey {
        PromisedKey {
            limit_micro_usd: limit,
            usage_micro_usd: usage,
            resets: false,
        }
    }

    #[test]
    fn headroom_is_balance_minus_reserve_minus_promised() {
        let status = PoolStatus::compute(
            100 * USD,
            [
                credits_key(10 * USD, 4 * USD),
                credits_key(5 * USD, 5 * USD),
            ],
            1_000,
        );
        assert_eq!(
            status.promised_micro_usd,
            6 * USD,
            "only limit − usage of credits keys"
        );
        assert_eq!(status.reserve_micro_usd, 10 * USD);
        assert_eq!(status.headroom_micro_usd, 84 * USD);
        assert!(status.can_grant(84 * USD));
        assert!(!status.can_grant(84 * USD + 1));
    }

    #[test]
    fn allowance_keys_promise_their_whole_limit() {
        let allowance = PromisedKey {
            limit_micro_usd: 10 * USD,
            usage_micro_usd: 9 * USD,
            resets: true,
        };
        let status = PoolStatus::compute(50 * USD, [allowance], 0);
        assert_eq!(
            status.promised_micro_usd,
            10 * USD,
            "the limit is spendable again after a reset"
        );
        assert_eq!(status.headroom_micro_usd, 40 * USD);
    }

    #[test]
    fn an_over_promised_or_empty_pool_has_no_headroom() {
        let status = PoolStatus::compute(10 * USD, [credits_key(20 * USD, 0)], 1_000);
        assert_eq!(status.headroom_micro_usd, 0);
        let empty = PoolStatus::compute(-3 * USD, [], 1_000);
        assert_eq!(empty.reserve_micro_usd, 0);
        assert_eq!(empty.headroom_micro_usd, 0);
        // A key used past its limit promises nothing, never a negative amount.
        assert_eq!(credits_key(USD, 2 * USD).promised_micro_usd(), 0);
    }

    #[test]
    fn the_reserve_rounds_up() {
        // 10 % of 0.000015 USD is 1.5 micro-USD: reserve 2, never 1.
        assert_eq!(PoolStatus::compute(15, [], 1_000).reserve_micro_usd, 2);
    }

    #[test]
    fn runway_comes_from_measured_usage_only() {
        let status = PoolStatus::compute(100 * USD, [], 0);
        let start = DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let readings = [
            UsageReading {
                at: start,
                total_usage_micro_usd: 0,
            },
            UsageReading {
                at: start + chrono::Duration::days(1),
                total_usage_micro_usd: 10 * USD,
            },
        ];
        // $10 a day against $100: ten days.
        assert_eq!(
            runway(&status, &readings),
            Some(Duration::from_secs(10 * 86_400))
        );
        assert_eq!(
            runway(&status, &readings[..1]),
            None,
            "one reading measures nothing"
        );
        let flat = [
            readings[0],
            UsageReading {
                at: readings[1].at,
                total_usage_micro_usd: 0,
            },
        ];
        assert_eq!(
            runway(&status, &flat),
            None,
            "no usage: unknown, not infinite"
        );
    }
}

pub use actor::{PoolActor, PoolArgs, PoolError, PoolMsg, PoolReport, pool_status};

/// The PoolActor: answers pool status from a fresh `GET /credits` and the key ledger, and records
/// each reading so runway is measured, not guessed.
pub mod actor {
    use std::time::Duration;

    use chrono::{DateTime, Utc};
    use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
    use serde::Serialize;
    use tokio::task::JoinSet;

    use super::{PoolStatus, runway};
    use crate::openrouter::{OpenRouterCallError, OpenRouterMsg, actor as openrouter};
    use crate::store::{Store, StoreError};
    use crate::supervisor::ActorSlot;

    pub struct PoolActor;

    #[derive(Clone)]
    pub struct PoolArgs {
        pub store: Store,
        /// Where the OpenRouterActor can be found (it may be restarting).
        pub openrouter: ActorSlot<OpenRouterMsg>,
        /// How long one credits call may take, retries included.
        pub call_timeout: Duration,
        /// Usage readings older than this are not used for the runway.
        pub runway_window: Duration,
    }

    pub struct PoolState {
        args: PoolArgs,
        in_flight: JoinSet<()>,
    }

    type Reply<T> = RpcReplyPort<Result<T, PoolError>>;

    pub enum PoolMsg {
        /// The pool now, with `reserve_bps` held back; the reading is recorded (tagged with
        /// `run_id` when a run asks before allocating).
        Status {
            reserve_bps: u32,
            run_id: Option<String>,
            reply: Reply<PoolReport>,
        },
    }

    /// What the pool looks like, with the account figures it came from.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct PoolReport {
        #[serde(flatten)]
        pub status: PoolStatus,
        pub total_credits_micro_usd: i64,
        pub total_usage_micro_usd: i64,
        /// How long the spendable balance lasts at the measured usage rate; `None` when usage
        /// has not been measured yet.
        pub runway_secs: Option<u64>,
        pub checked_at: DateTime<Utc>,
    }

    #[derive(thiserror::Error, Debug)]
    pub enum PoolError {
        #[error("openrouter: {0}")]
        OpenRouter(OpenRouterCallError),
        #[error("the openrouter actor is not running")]
        OpenRouterDown,
        #[error(transparent)]
        Store(#[from] StoreError),
        #[error("pool actor is not running")]
        ActorDown,
        #[error("pool actor did not answer within {} s", .0.as_secs())]
        ActorTimeout(Duration),
    }

    impl PoolError {
        /// The run's error code when the pool cannot be read.
        pub fn code(&self) -> &'static str {
            match self {
                PoolError::OpenRouter(error) => error.code(),
                PoolError::OpenRouterDown => "OPENROUTER_ACTOR_DOWN",
                PoolError::Store(error) if error.is_locked() => "DB_LOCKED",
                PoolError::Store(_) => "DB_ERROR",
                PoolError::ActorDown | PoolError::ActorTimeout(_) => "POOL_ACTOR_DOWN",
            }
        }
    }

    impl Actor for PoolActor {
        type Msg = PoolMsg;
        type State = PoolState;
        type Arguments = PoolArgs;

        async fn pre_start(
            &self,
            _myself: ActorRef<Self::Msg>,
            args: PoolArgs,
        ) -> Result<Self::State, ActorProcessingErr> {
            Ok(PoolState {
                args,
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
            while state.in_flight.try_join_next().is_some() {}
            match message {
                PoolMsg::Status {
                    reserve_bps,
                    run_id,
                    reply,
                } => {
                    let args = state.args.clone();
                    state.in_flight.spawn(async move {
                        let _ = reply.send(read_pool(&args, reserve_bps, run_id.as_deref()).await);
                    });
                }
            }
            Ok(())
        }
    }

    async fn read_pool(
        args: &PoolArgs,
        reserve_bps: u32,
        run_id: Option<&str>,
    ) -> Result<PoolReport, PoolError> {
        let actor = args.openrouter.get().ok_or(PoolError::OpenRouterDown)?;
        let credits = openrouter::credits(&actor, args.call_timeout)
            .await
            .map_err(PoolError::OpenRouter)?;
        let keys = args.store.promised_keys().await?;
        let status = PoolStatus::compute(credits.balance_micro_usd(), keys, reserve_bps);
        let checked_at = Utc::now();
        args.store
            .insert_pool_snapshot(
                run_id,
                credits.total_credits_micro_usd,
                credits.total_usage_micro_usd,
                &status,
                checked_at,
            )
            .await?;
        let window = chrono::Duration::from_std(args.runway_window)
            .unwrap_or_else(|_| chrono::Duration::days(7));
        let readings = args.store.usage_readings_since(checked_at - window).await?;
        Ok(PoolReport {
            status,
            total_credits_micro_usd: credits.total_credits_micro_usd,
            total_usage_micro_usd: credits.total_usage_micro_usd,
            runway_secs: runway(&status, &readings).map(|runway| runway.as_secs()),
            checked_at,
        })
    }

    /// The pool now, through the actor.
    pub async fn pool_status(
        actor: &ActorRef<PoolMsg>,
        reserve_bps: u32,
        run_id: Option<&str>,
        timeout: Duration,
    ) -> Result<PoolReport, PoolError> {
        let run_id = run_id.map(str::to_string);
        let build = |reply| PoolMsg::Status {
            reserve_bps,
            run_id,
            reply,
        };
        crate::supervisor::ask(actor, timeout, build)
            .await
            .map_err(|no_answer| match no_answer {
                crate::supervisor::NoAnswer::Down => PoolError::ActorDown,
                crate::supervisor::NoAnswer::Timeout(timeout) => PoolError::ActorTimeout(timeout),
            })?
    }
}
