//! Figure 4 (a whole run of 1,000 holders with no added latency, start to COMPLETE, phase by
//! phase) and figure 6 (Bags requests per run, from the sandbox's request counters, against
//! Bags' budget of 1,000 requests per hour).

use creditbrain_actors::store::runs::RunState;
use solana_sdk::signature::Signer;

use crate::daemon::{BenchDaemon, RunTrace, Setup};
use crate::harness::{detail, figure, secs};

/// Bags' documented budget: 1,000 requests per sliding hour.
const BAGS_BUDGET_PER_HOUR: f64 = 1_000.0;

pub async fn run() {
    let holders: usize = crate::env_or("BENCH_RUN_HOLDERS", 1_000);
    let slot_ms: u64 = crate::env_or("BENCH_RUN_SLOT_MS", 20);
    let bench = BenchDaemon::start(Setup {
        holders,
        slot_ms,
        ..Setup::default()
    })
    .await;
    detail(format!(
        "world of {holders} holders seeded in {:.1} s (not measured); fake ledger slot {slot_ms} ms",
        secs(bench.seeded_in)
    ));
    let signer = bench.sandbox.world.signer.pubkey();
    for (index, label) in ["first", "second"].into_iter().enumerate() {
        if index > 0 {
            // Fresh fees for the next run: the same positions again.
            for (mint, lamports) in &bench.sandbox.world.positions {
                bench.sandbox.bags.add_position(&signer, mint, *lamports);
            }
        }
        let bags_before = bench.requests("bags");
        let rpc_before: u64 = bench.requests("rpc").values().sum();
        let helius_before: u64 = bench.requests("helius").values().sum();
        let sends_before = bench
            .requests("rpc")
            .get("sendTransaction")
            .copied()
            .unwrap_or(0);
        let das_before = bench
            .requests("helius")
            .get("getTokenAccounts")
            .copied()
            .unwrap_or(0);
        let openrouter_before: u64 = bench.requests("openrouter").values().sum();
        let trace = bench.run().await;
        assert_eq!(
            trace.run.state,
            RunState::Complete,
            "run failed: {:?} {:?}",
            trace.run.error_code,
            trace.run.error_detail
        );
        let bags_after = bench.requests("bags");
        let bags: u64 = bags_after.values().sum::<u64>() - bags_before.values().sum::<u64>();
        let sends = bench
            .requests("rpc")
            .get("sendTransaction")
            .copied()
            .unwrap_or(0)
            - sends_before;
        let das = bench
            .requests("helius")
            .get("getTokenAccounts")
            .copied()
            .unwrap_or(0)
            - das_before;
        report(&trace, label, holders, sends, das);
        figure(
            &format!("bags_requests_{label}_run"),
            bags as f64,
            BAGS_BUDGET_PER_HOUR,
            "requests",
            &format!(
                "budget: {BAGS_BUDGET_PER_HOUR:.0} per sliding hour; runs are at least \
                 MIN_CRON_INTERVAL_HOURS (≥ 1 h) apart, so one run may use all of it"
            ),
        );
        let routes: Vec<String> = bags_after
            .iter()
            .map(|(route, count)| {
                format!(
                    "{route} {}",
                    count - bags_before.get(route).copied().unwrap_or(0)
                )
            })
            .filter(|line| !line.ends_with(" 0"))
            .collect();
        detail(format!("bags requests by route: {}", routes.join(", ")));
        detail(format!(
            "other requests: rpc {}, helius {}, openrouter {}",
            bench.requests("rpc").values().sum::<u64>() - rpc_before,
            bench.requests("helius").values().sum::<u64>() - helius_before,
            bench.requests("openrouter").values().sum::<u64>() - openrouter_before,
        ));
    }
    bench.stop().await;
}

/// The run against what its integrations impose with no latency added: each transaction is seen
/// confirmed no sooner than one status poll after it is sent (the daemon polls every 400 ms, a
/// mainnet slot), and DAS pages go at HELIUS_DAS_REQUESTS_PER_SECOND (page k at ⌊k/R⌋ s).
fn report(trace: &RunTrace, label: &str, holders: usize, sends: u64, das: u64) {
    let run = &trace.run;
    let poll = creditbrain_actors::chain::protocol::SubmitOptions::default().poll_interval;
    let rate = u64::from(creditbrain::daemon::HELIUS_DAS_REQUESTS_PER_SECOND);
    let chain = sends as f64 * secs(poll);
    let snapshot = (das.saturating_sub(1) / rate) as f64;
    figure(
        &format!("full_run_{holders}_holders_{label}"),
        secs(trace.total),
        chain + snapshot,
        "s",
        &format!(
            "start to COMPLETE; keys created {}, updated {}; bound: {sends} transactions × one \
             {} ms status poll + {das} DAS pages at {rate}/s ({snapshot:.0} s); PROVISIONING \
             with no latency has no bound of its own but the store and the CPU",
            run.keys_created.unwrap_or(0),
            run.keys_updated.unwrap_or(0),
            poll.as_millis()
        ),
    );
    detail(format!("run phases: {}", trace.phases()));
}
