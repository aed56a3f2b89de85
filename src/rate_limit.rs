//! Per-client request limits: fixed windows of counts per key (a client address, or an address
//! and a route), in memory, with a bounded number of keys so a flood of addresses cannot grow the
//! map without limit. Used by the `/api` gate and the `/holder` routes.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Request counts per key in fixed windows of `window`, at most `max_keys` keys.
pub struct FixedWindows<K> {
    window: Duration,
    max_keys: usize,
    by_key: HashMap<K, Window>,
}

#[derive(Clone, Copy, Debug)]
struct Window {
    started: Instant,
    count: u32,
}

impl<K: Eq + Hash + Clone> FixedWindows<K> {
    pub fn new(window: Duration, max_keys: usize) -> Self {
        Self {
            window,
            max_keys: max_keys.max(1),
            by_key: HashMap::new(),
        }
    }

    /// Counts a request of `key`; `Err(wait)` when it is over `limit` (0 is taken as 1) in the
    /// current window, `wait` being what is left of it (for `Retry-After`).
    pub fn hit(&mut self, key: K, limit: u32, now: Instant) -> Result<(), Duration> {
        if !self.by_key.contains_key(&key) && self.by_key.len() >= self.max_keys {
            let window = self.window;
            self.by_key
                .retain(|_, counted| now.saturating_duration_since(counted.started) < window);
            if self.by_key.len() >= self.max_keys {
                evict_oldest(&mut self.by_key, |counted| Some(counted.started));
            }
        }
        let counted = self.by_key.entry(key).or_insert(Window {
            started: now,
            count: 0,
        });
        if now.saturating_duration_since(counted.started) >= self.window {
            *counted = Window {
                started: now,
                count: 0,
            };
        }
        if counted.count >= limit.max(1) {
            return Err((counted.started + self.window).saturating_duration_since(now));
        }
        counted.count += 1;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn contains(&self, key: &K) -> bool {
        self.by_key.contains_key(key)
    }
}

/// Drops the entry whose `age_mark` is oldest (only when a map is full of live entries: it has
/// the least of its window left, so forgetting it forgives the least).
pub fn evict_oldest<K: Clone + Eq + Hash, V>(
    map: &mut HashMap<K, V>,
    age_mark: impl Fn(&V) -> Option<Instant>,
) {
    let oldest = map
        .iter()
        .filter_map(|(key, value)| age_mark(value).map(|mark| (mark, key)))
        .min_by_key(|(mark, _)| *mark)
        .map(|(_, key)| key.clone());
    if let Some(key) = oldest {
        map.remove(&key);
    }
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let rounded_up = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    rounded_up.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn windows_refuse_past_the_limit_and_reset() {
        let start = Instant::now();
        let mut windows = FixedWindows::new(MINUTE, 100);
        let key = ("a", "listRuns");
        for _ in 0..3 {
            windows.hit(key, 3, start).unwrap();
        }
        let wait = windows
            .hit(key, 3, start + Duration::from_secs(15))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(45));
        // Other keys have their own counts.
        windows.hit(("a", "getRun"), 3, start).unwrap();
        windows.hit(("b", "listRuns"), 3, start).unwrap();
        windows.hit(key, 3, start + MINUTE).unwrap();
    }

    #[test]
    fn the_key_map_stays_bounded_keeping_the_newest() {
        let start = Instant::now();
        let mut windows = FixedWindows::new(MINUTE, 3);
        for key in 0..10u32 {
            let now = start + Duration::from_millis(key.into());
            windows.hit(key, 1, now).unwrap();
        }
        assert_eq!(windows.len(), 3);
        assert!(windows.contains(&9));
        assert!(windows.hit(9, 1, start + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(5)), 5);
        assert_eq!(retry_after_secs(Duration::from_millis(5_001)), 6);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
