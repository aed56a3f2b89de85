//! In-process measurements the store cannot answer: how long run phases and integration requests
//! take. One process-wide registry (histograms with fixed buckets, lock-free counters inside a
//! short map lock), rendered as Prometheus text by the daemon's `/metrics` route.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the phase histogram: a phase takes from milliseconds (a dry
/// allocation) to minutes (a claim waiting for confirmations, provisioning thousands of keys).
const PHASE_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
];

/// Upper bounds (seconds) of the request histogram: loopback to a slow API with retries.
const REQUEST_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// One histogram's counts: per bucket (cumulative when rendered), the sum and the count.
#[derive(Clone, Debug, Default)]
struct Histogram {
    buckets: Vec<u64>,
    sum_seconds: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], seconds: f64) {
        if self.buckets.len() != bounds.len() {
            self.buckets = vec![0; bounds.len()];
        }
        if let Some(index) = bounds.iter().position(|bound| seconds <= *bound) {
            self.buckets[index] += 1;
        }
        self.sum_seconds += seconds;
        self.count += 1;
    }
}

/// Histograms by their label set (already rendered as `name="value",…`).
#[derive(Default)]
struct Family(BTreeMap<String, Histogram>);

/// The registry.
pub struct Metrics {
    phases: Mutex<Family>,
    requests: Mutex<Family>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    phases: Mutex::new(Family::default()),
    requests: Mutex::new(Family::default()),
});

/// The process's registry.
pub fn global() -> &'static Metrics {
    &METRICS
}

/// Escapes a label value as the text format requires.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// One run phase finished (`outcome` = `ok` or its error code).
    pub fn observe_phase(&self, phase: &str, outcome: &str, took: Duration) {
        let labels = format!("phase=\"{}\",outcome=\"{}\"", label(phase), label(outcome));
        let mut family = self.phases.lock().unwrap_or_else(|e| e.into_inner());
        family
            .0
            .entry(labels)
            .or_default()
            .observe(PHASE_BUCKETS, took.as_secs_f64());
    }

    /// One request attempt to an integration finished (`outcome` = `ok` or `error`).
    pub fn observe_request(&self, integration: &str, outcome: &str, took: Duration) {
        let labels = format!(
            "integration=\"{}\",outcome=\"{}\"",
            label(integration),
            label(outcome)
        );
        let mut family = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        family
            .0
            .entry(labels)
            .or_default()
            .observe(REQUEST_BUCKETS, took.as_secs_f64());
    }

    /// Both histograms in the Prometheus text format (with HELP and TYPE lines).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let phases = self.phases.lock().unwrap_or_else(|e| e.into_inner());
        render_histogram(
            &mut out,
            "creditbrain_run_phase_duration_seconds",
            "Time one run phase took, by phase and outcome (ok or the error code).",
            PHASE_BUCKETS,
            &phases,
        );
        drop(phases);
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        render_histogram(
            &mut out,
            "creditbrain_integration_request_duration_seconds",
            "Time one request attempt to an integration took, by integration and outcome.",
            REQUEST_BUCKETS,
            &requests,
        );
        out
    }
}

fn render_histogram(out: &mut String, name: &str, help: &str, bounds: &[f64], family: &Family) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (labels, histogram) in &family.0 {
        let mut cumulative = 0;
        for (index, bound) in bounds.iter().enumerate() {
            cumulative += histogram.buckets.get(index).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"+Inf\"}} {}",
            histogram.count
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", histogram.sum_seconds);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", histogram.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets_sum_and_count() {
        let metrics = Metrics {
            phases: Mutex::new(Family::default()),
            requests: Mutex::new(Family::default()),
        };
        metrics.observe_phase("CLAIMING", "ok", Duration::from_millis(300));
        metrics.observe_phase("CLAIMING", "ok", Duration::from_secs(2));
        metrics.observe_phase("CLAIMING", "ok", Duration::from_secs(5_000));
        metrics.observe_request("bags", "error", Duration::from_millis(7));
        let text = metrics.render();
        let line = |prefix: &str| {
            text.lines()
                .find(|line| line.starts_with(prefix))
                .unwrap_or_else(|| panic!("{prefix} missing in\n{text}"))
                .to_string()
        };
        let phase = "creditbrain_run_phase_duration_seconds";
        assert_eq!(
            line(&format!(
                "{phase}_bucket{{phase=\"CLAIMING\",outcome=\"ok\",le=\"0.25\"}}"
            )),
            format!("{phase}_bucket{{phase=\"CLAIMING\",outcome=\"ok\",le=\"0.25\"}} 0")
        );
        assert!(
            line(&format!(
                "{phase}_bucket{{phase=\"CLAIMING\",outcome=\"ok\",le=\"0.5\"}}"
            ))
            .ends_with(" 1")
        );
        assert!(
            line(&format!(
                "{phase}_bucket{{phase=\"CLAIMING\",outcome=\"ok\",le=\"2.5\"}}"
            ))
            .ends_with(" 2")
        );
        // Above the last bound: only +Inf counts it.
        assert!(
            line(&format!(
                "{phase}_bucket{{phase=\"CLAIMING\",outcome=\"ok\",le=\"900\"}}"
            ))
            .ends_with(" 2")
        );
        assert!(
            line(&format!(
                "{phase}_bucket{{phase=\"CLAIMING\",outcome=\"ok\",le=\"+Inf\"}}"
            ))
            .ends_with(" 3")
        );
        assert!(
            line(&format!(
                "{phase}_count{{phase=\"CLAIMING\",outcome=\"ok\"}}"
            ))
            .ends_with(" 3")
        );
        assert!(
            line(&format!("{phase}_sum{{phase=\"CLAIMING\",outcome=\"ok\"}}")).ends_with(" 5002.3")
        );
        assert!(text.contains(
            "creditbrain_integration_request_duration_seconds_bucket{integration=\"bags\",outcome=\"error\",le=\"0.01\"} 1"
        ));
        assert!(text.contains("# TYPE creditbrain_run_phase_duration_seconds histogram"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
