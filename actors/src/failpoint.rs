//! Test-only failpoints: a panic injected at the top of an actor's message handler (and at each
//! phase of a RunWorker), so that supervision can be exercised on a real daemon. Inert unless
//! armed: an unarmed check is one relaxed atomic load.
//!
//! A check names its *site* as `/`-separated segments: `<instance>/<role>` for the supervised
//! actors (their ractor name without the `#generation`, e.g. `3f9a1c0e/chain`) and
//! `worker/<run-id>/<PHASE>` for a run's worker. An armed *target* fires at every site that
//! contains its segments in a row: `chain` hits the ChainActor of every daemon in the process,
//! `3f9a1c0e/chain` only that daemon's (tests run several daemons in one process), and
//! `worker/<run-id>` every phase of one run.
//!
//! A child process is armed through `CREDITBRAIN_FAILPOINTS` (read once, at daemon start):
//! comma-separated `target:always` or `target:<n>` (the next n hits). It is for tests only; the
//! daemon logs a warning when it is set, and nothing reads it otherwise.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

/// The environment variable a test sets to arm failpoints in a child daemon.
pub const ENV_VAR: &str = "CREDITBRAIN_FAILPOINTS";

/// Whether any failpoint is armed: the fast path of [`check`].
static ANY_ARMED: AtomicBool = AtomicBool::new(false);

static ARMED: Mutex<Vec<Armed>> = Mutex::new(Vec::new());

struct Armed {
    target: Vec<String>,
    /// Hits left; `None` fires forever.
    remaining: Option<u32>,
}

fn armed() -> std::sync::MutexGuard<'static, Vec<Armed>> {
    // A panicking failpoint never holds the lock (it panics after releasing it).
    ARMED.lock().unwrap_or_else(PoisonError::into_inner)
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|segment| !segment.is_empty())
        .map(str::to_string)
        .collect()
}

fn push(target: &str, remaining: Option<u32>) {
    let mut points = armed();
    points.push(Armed {
        target: segments(target),
        remaining,
    });
    ANY_ARMED.store(true, Ordering::SeqCst);
}

/// Fires at the next `times` sites matching `target`.
pub fn arm(target: &str, times: u32) {
    if times > 0 {
        push(target, Some(times));
    }
}

/// Fires at every site matching `target` until disarmed.
pub fn arm_always(target: &str) {
    push(target, None);
}

/// Removes every failpoint armed with exactly this target.
pub fn disarm(target: &str) {
    let target = segments(target);
    let mut points = armed();
    points.retain(|point| point.target != target);
    ANY_ARMED.store(!points.is_empty(), Ordering::SeqCst);
}

/// Hits left for `target` (`None` when armed forever, `Some(0)` when not armed).
pub fn remaining(target: &str) -> Option<u32> {
    let target = segments(target);
    armed()
        .iter()
        .filter(|point| point.target == target)
        .try_fold(0u32, |sum, point| point.remaining.map(|n| sum + n))
}

/// Arms what `CREDITBRAIN_FAILPOINTS` lists (once per process; later calls do nothing). Returns
/// the targets armed, for the daemon's warning.
pub fn arm_from_env() -> Vec<String> {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let mut armed_targets = Vec::new();
    ONCE.call_once(|| {
        let Ok(spec) = std::env::var(ENV_VAR) else {
            return;
        };
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (target, count) = entry.rsplit_once(':').unwrap_or((entry, "always"));
            match count {
                "always" => arm_always(target),
                n => match n.parse() {
                    Ok(times) => arm(target, times),
                    Err(_) => continue,
                },
            }
            armed_targets.push(entry.to_string());
        }
    });
    armed_targets
}

/// Whether `site` contains `target`'s segments in a row.
fn matches(site: &[&str], target: &[String]) -> bool {
    !target.is_empty()
        && site
            .windows(target.len())
            .any(|window| window.iter().zip(target).all(|(a, b)| *a == b.as_str()))
}

/// Takes one hit from the first failpoint armed for `site`, if any.
fn take(site: &str) -> bool {
    let parts: Vec<&str> = site.split('/').filter(|s| !s.is_empty()).collect();
    let mut points = armed();
    let Some(index) = points
        .iter()
        .position(|point| matches(&parts, &point.target))
    else {
        return false;
    };
    if let Some(remaining) = points[index].remaining.as_mut() {
        *remaining -= 1;
        if *remaining == 0 {
            points.remove(index);
            ANY_ARMED.store(!points.is_empty(), Ordering::SeqCst);
        }
    }
    true
}

/// Panics if a failpoint is armed for `site`.
pub fn check(site: &str) {
    if ANY_ARMED.load(Ordering::Relaxed) && take(site) {
        panic!("failpoint {site} fired (test-only fault injection)");
    }
}

/// [`check`] with the site built only when something is armed.
pub fn check_lazy(site: impl FnOnce() -> String) {
    if ANY_ARMED.load(Ordering::Relaxed) {
        check(&site());
    }
}

/// [`check`] for a supervised actor, whose site is its ractor name without the generation
/// (`<instance>/<role>#<n>` → `<instance>/<role>`). The first line of its `handle`.
pub fn check_actor(cell: &ractor::ActorCell) {
    if !ANY_ARMED.load(Ordering::Relaxed) {
        return;
    }
    if let Some(name) = cell.get_name() {
        let site = name.split('#').next().unwrap_or(&name);
        check(site);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry is process-global: each test uses targets no other test names.
    #[test]
    fn a_counted_failpoint_fires_that_many_times_at_matching_sites_only() {
        arm("unit-a/chain", 2);
        assert!(!take("unit-b/chain"), "another instance");
        assert!(!take("unit-a/pool"), "another role");
        assert!(take("unit-a/chain"));
        assert_eq!(remaining("unit-a/chain"), Some(1));
        assert!(take("unit-a/chain"));
        assert!(!take("unit-a/chain"), "spent");
    }

    #[test]
    fn a_role_target_matches_every_instance_and_a_run_target_every_phase() {
        arm_always("unit-role");
        assert!(take("x1/unit-role"));
        assert!(take("x2/unit-role"));
        assert_eq!(remaining("unit-role"), None);
        disarm("unit-role");
        assert!(!take("x1/unit-role"));

        arm("worker/unit-run", 2);
        assert!(take("worker/unit-run/CLAIMING"));
        assert!(!take("worker/other-run/CLAIMING"));
        assert!(take("worker/unit-run/SWAPPING"));
        assert!(!take("worker/unit-run/ALLOCATING"));
    }

    #[test]
    fn check_panics_only_when_armed() {
        check("unit-c/health");
        arm("unit-c/health", 1);
        let fired = std::panic::catch_unwind(|| check("unit-c/health"));
        assert!(fired.is_err());
        check("unit-c/health");
    }
}
