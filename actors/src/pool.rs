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
