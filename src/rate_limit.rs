//! Per-client request limits for the public-facing routes: a fixed window per key (a client
//! address), in memory, with a bounded number of keys so a flood of addresses cannot grow it
//! without limit.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most `limit` requests per key in each `window`.
pub struct KeyedLimiter<K> {
    limit: u32,
    window: Duration,
    max_keys: usize,
    windows: Mutex<HashMap<K, (Instant, u32)>>,
}

impl<K: Eq + Hash + Clone> KeyedLimiter<K> {
    /// `limit` 0 is taken as 1: a misconfiguration slows clients rather than locking them out.
    pub fn new(limit: u32, window: Duration, max_keys: usize) -> Self {
        Self {
            limit: limit.max(1),
            window,
            max_keys: max_keys.max(1),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request of `key`: `Ok` when within the limit, else how long until its window
    /// ends (for `Retry-After`).
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= self.max_keys && !windows.contains_key(key) {
            // Forget finished windows first; if every window is live, the oldest goes (it has
            // the least of its window left, so forgetting it forgives the least).
            let window = self.window;
            windows.retain(|_, (started, _)| now.duration_since(*started) < window);
            if windows.len() >= self.max_keys
                && let Some(oldest) = windows
                    .iter()
                    .min_by_key(|(_, (started, _))| *started)
                    .map(|(key, _)| key.clone())
            {
                windows.remove(&oldest);
            }
        }
        let entry = windows.entry(key.clone()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.limit {
            return Err(self.window.saturating_sub(now.duration_since(entry.0)));
        }
        entry.1 += 1;
        Ok(())
    }
}

/// `Retry-After` in whole seconds, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let rounded_up = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    rounded_up.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_limit_per_window_and_others_are_unaffected() {
        let limiter = KeyedLimiter::new(2, Duration::from_secs(60), 100);
        let start = Instant::now();
        assert!(limiter.check_at(&"a", start).is_ok());
        assert!(limiter.check_at(&"a", start).is_ok());
        let wait = limiter
            .check_at(&"a", start + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(limiter.check_at(&"b", start).is_ok());
        // A new window.
        assert!(
            limiter
                .check_at(&"a", start + Duration::from_secs(60))
                .is_ok()
        );
    }

    #[test]
    fn the_key_map_stays_bounded() {
        let limiter = KeyedLimiter::new(1, Duration::from_secs(60), 3);
        let start = Instant::now();
        for key in 0..10u32 {
            assert!(
                limiter
                    .check_at(&key, start + Duration::from_millis(key.into()))
                    .is_ok()
            );
        }
        assert!(limiter.windows.lock().unwrap().len() <= 3);
        // The most recent keys are still limited.
        assert!(
            limiter
                .check_at(&9, start + Duration::from_secs(1))
                .is_err()
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(5)), 5);
        assert_eq!(retry_after_secs(Duration::from_millis(5_001)), 6);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
