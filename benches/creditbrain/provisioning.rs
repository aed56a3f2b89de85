//! Figure 1 (PROVISIONING of 10,000 holders at 20 ms OpenRouter latency against N·L/C) and
//! figure 7 (the usage poll of the 10,000 keys it created: list calls against ⌈N/100⌉, and time).

use std::time::{Duration, Instant};

use creditbrain_actors::store::runs::RunState;

use crate::daemon::{BenchDaemon, Setup};
use crate::harness::{detail, figure, fsync_latency, millis, secs, value};

/// OpenRouter latency added to every management-API request.
const LATENCY_MS: u64 = 20;

/// `GET /keys` returns at most this many keys per call.
const KEYS_PAGE: u64 = 100;

const LIST_ROUTE: &str = "GET /api/v1/keys";

/// The median time of one durable commit through the daemon's own store (an audit row).
async fn commit_latency(dir: &std::path::Path) -> Duration {
    use creditbrain_actors::store::Store;
    use creditbrain_actors::store::audit::AuditEntry;
    let store = Store::open(&dir.join("probe.db")).await.expect("store");
    let mut samples = Vec::new();
    for index in 0..220 {
        let started = Instant::now();
        store
            .append_audit(&AuditEntry::new("bench_probe"))
            .await
            .expect("audit row");
        if index >= 20 {
            samples.push(started.elapsed());
        }
    }
    store.close().await;
    crate::harness::Timing::from_samples(samples).median
}

pub async fn run() {
    let holders: usize = crate::env_or("BENCH_PROVISION_HOLDERS", 10_000);
    let concurrencies: Vec<usize> = std::env::var("BENCH_PROVISION_CONCURRENCY")
        .unwrap_or_else(|_| "16,8".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let (fsync, commit) = {
        let dir = tempfile::tempdir().expect("temp dir");
        (fsync_latency(dir.path()), commit_latency(dir.path()).await)
    };
    detail(format!(
        "fsync of a 4 KiB write on the database's filesystem: {:.3} ms; one durable SQLite \
         commit (the daemon's store, WAL, synchronous=FULL): {:.3} ms (medians of 200)",
        millis(fsync),
        millis(commit)
    ));
    for (index, concurrency) in concurrencies.iter().copied().enumerate() {
        let bench = BenchDaemon::start(Setup {
            holders,
            distribution_mode: "EQUAL_SPLIT",
            openrouter_concurrency: Some(concurrency),
            ..Setup::default()
        })
        .await;
        detail(format!(
            "world of {holders} holders seeded in {:.1} s (not measured)",
            secs(bench.seeded_in)
        ));
        bench.latency("openrouter", None, LATENCY_MS);
        let delivered = bench.delivered_latency("openrouter").await;
        let before = bench.requests("openrouter");
        let trace = bench.run().await;
        let after = bench.requests("openrouter");
        assert_eq!(
            trace.run.state,
            RunState::Complete,
            "run failed: {:?} {:?}",
            trace.run.error_code,
            trace.run.error_detail
        );
        let keys = trace.run.keys_created.unwrap_or(0) + trace.run.keys_updated.unwrap_or(0);
        let provisioning = trace
            .time_in(RunState::Provisioning)
            .expect("went through PROVISIONING");
        let bound = keys as f64 * (LATENCY_MS as f64 / 1_000.0) / concurrency as f64;
        let default_note = if concurrency == creditbrain_actors::openrouter::DEFAULT_MAX_CONCURRENCY
        {
            ", the daemon's default"
        } else {
            ""
        };
        figure(
            &format!("provisioning_{keys}_holders_c{concurrency}"),
            secs(provisioning),
            bound,
            "s",
            &format!(
                "N·L/C = {keys} × {LATENCY_MS} ms / {concurrency}{default_note}; {:.0} keys/s",
                keys as f64 / secs(provisioning)
            ),
        );
        figure(
            &format!("provisioning_{keys}_holders_c{concurrency}_vs_delivered_latency"),
            secs(provisioning),
            keys as f64 * secs(delivered) / concurrency as f64,
            "s",
            &format!(
                "N·L'/C with L' = {:.2} ms, the latency the fake delivers (median of 50 plain \
                 requests: loopback, handler, timer rounding)",
                millis(delivered)
            ),
        );
        detail(format!(
            "one durable commit per key would need {:.2} s of the single SQLite writer; the \
             pass commits its writes in groups",
            keys as f64 * secs(commit)
        ));
        detail(format!("run phases: {}", trace.phases()));
        let calls: Vec<String> = after
            .iter()
            .map(|(route, count)| {
                format!(
                    "{route} {}",
                    count - before.get(route).copied().unwrap_or(0)
                )
            })
            .collect();
        detail(format!(
            "openrouter requests during the run: {}",
            calls.join(", ")
        ));
        detail(format!(
            "keys created {}, updated {}",
            trace.run.keys_created.unwrap_or(0),
            trace.run.keys_updated.unwrap_or(0)
        ));

        if index == 0 {
            usage_poll(&bench, keys, delivered).await;
        }
        bench.stop().await;
    }
}

/// Figure 7: one usage poll over the keys, with the latency still on, then without it; and the
/// key list alone (what the poll's calls bound), through the OpenRouterActor.
async fn usage_poll(bench: &BenchDaemon, keys: u64, delivered: Duration) {
    let scheduler = bench
        .daemon
        .handle
        .scheduler
        .get()
        .expect("scheduler running");
    let remote = bench.sandbox.openrouter.keys().len() as u64;
    // ⌈remote/100⌉ pages hold every key; when the last one is full, one more (empty) call is the
    // only way to learn it was the last (the API returns no total).
    let minimum_calls = remote / KEYS_PAGE + 1;
    for latency in [LATENCY_MS, 0] {
        if latency == 0 {
            bench.sandbox.faults.clear(Some("openrouter"));
        }
        let openrouter = bench
            .daemon
            .handle
            .openrouter
            .get()
            .expect("openrouter actor");
        let listing = Instant::now();
        let listed = creditbrain_actors::openrouter::actor::list_all_keys(
            &openrouter,
            true,
            Duration::from_secs(600),
        )
        .await
        .expect("key list");
        let listing = listing.elapsed();
        let before = bench.requests("openrouter");
        let started = Instant::now();
        let report =
            creditbrain_actors::scheduler::poll_usage(&scheduler, Duration::from_secs(600))
                .await
                .expect("usage poll");
        let elapsed = started.elapsed();
        let after = bench.requests("openrouter");
        let calls = after.get(LIST_ROUTE).copied().unwrap_or(0)
            - before.get(LIST_ROUTE).copied().unwrap_or(0);
        let other: u64 = after
            .iter()
            .filter(|(route, _)| route.as_str() != LIST_ROUTE)
            .map(|(route, count)| count - before.get(route).copied().unwrap_or(0))
            .sum();
        if latency > 0 {
            figure(
                &format!("usage_poll_{keys}_keys_list_calls"),
                calls as f64,
                remote.div_ceil(KEYS_PAGE) as f64,
                "calls",
                &format!(
                    "⌈{remote}/{KEYS_PAGE}⌉; {minimum_calls} is the least possible when the \
                     last page is full; {other} other OpenRouter calls"
                ),
            );
            figure(
                &format!("usage_poll_{keys}_keys_at_{latency}ms"),
                secs(elapsed),
                minimum_calls as f64 * latency as f64 / 1_000.0,
                "s",
                &format!(
                    "{minimum_calls} sequential pages × {latency} ms; the poll also folds and \
                     writes {} keys and {} snapshots",
                    report.keys_synced, report.snapshots
                ),
            );
            figure(
                &format!("usage_poll_{keys}_keys_list_only_at_{latency}ms"),
                secs(listing),
                minimum_calls as f64 * secs(delivered),
                "s",
                &format!(
                    "the {} keys listed through the OpenRouterActor against {minimum_calls} × L' \
                     ({:.2} ms delivered)",
                    listed.len(),
                    millis(delivered)
                ),
            );
        } else {
            value(
                &format!("usage_poll_{keys}_keys_at_0ms"),
                secs(elapsed),
                "s",
                &format!(
                    "no latency: listing, the fold and one transaction writing {} keys and {} \
                     snapshots; the list alone {:.3} s",
                    report.keys_synced,
                    report.snapshots,
                    secs(listing)
                ),
            );
        }
    }
}
