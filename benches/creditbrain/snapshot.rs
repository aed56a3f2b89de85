//! Figure 3: the holder snapshot of 100,000 holders (Helius DAS `getTokenAccounts`, 1,000 token
//! accounts a page, cursor-paginated) at 10 ms per page, against pages × L — with the raw client
//! (no rate limit), and through the daemon's ChainActor with its configured DAS rate limit
//! (`HELIUS_DAS_REQUESTS_PER_SECOND`), whose bound is what that limit allows.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use creditbrain::daemon::HELIUS_DAS_REQUESTS_PER_SECOND;
use creditbrain_actors::chain::helius::{HeliusClient, HolderFilters};
use creditbrain_actors::resilience::RateLimiter;
use creditbrain_actors::secret::Secret;

use crate::daemon::{BenchDaemon, Setup};
use crate::harness::{Timing, detail, figure, millis, secs, value};

const PAGE_LATENCY_MS: u64 = 10;

/// Every DAS page of `mint` fetched as bytes, the cursor cut out of the text: no parsing.
async fn raw_pages(url: &str, mint: &str) -> u32 {
    let http = reqwest::Client::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut params = serde_json::json!({
            "mint": mint,
            "limit": 1000,
            "options": {"showZeroBalance": false},
        });
        if let Some(cursor) = &cursor {
            params["cursor"] = serde_json::json!(cursor);
        }
        let body = http
            .post(url)
            .json(&serde_json::json!({
                "jsonrpc": "2.0", "id": 1, "method": "getTokenAccounts", "params": params,
            }))
            .send()
            .await
            .expect("page")
            .bytes()
            .await
            .expect("body");
        pages += 1;
        let text = std::str::from_utf8(&body).expect("utf-8");
        let Some(start) = text.find("\"cursor\":\"") else {
            return pages;
        };
        let rest = &text[start + 10..];
        cursor = Some(rest[..rest.find('"').expect("cursor end")].to_string());
    }
}
const ROUTE: &str = "getTokenAccounts";

pub async fn run() {
    let holders: usize = crate::env_or("BENCH_SNAPSHOT_HOLDERS", 100_000);
    let runs: usize = crate::env_or("BENCH_SNAPSHOT_RUNS", 3);
    let with_daemon_limit = std::env::var("BENCH_SNAPSHOT_SKIP_RATE_LIMITED").is_err();
    let bench = BenchDaemon::start(Setup {
        holders,
        ..Setup::default()
    })
    .await;
    detail(format!(
        "world of {holders} holders seeded in {:.1} s (not measured)",
        secs(bench.seeded_in)
    ));
    let mint = bench.sandbox.world.token_mint;
    let url = bench.sandbox.daemon_vars()["HELIUS_RPC_URL"].clone();
    let filters = HolderFilters::default();
    // The raw client: no rate limit to speak of.
    let client = HeliusClient::new(
        Secret::new(url.clone()),
        Duration::from_secs(30),
        RateLimiter::per_second(u32::MAX),
    );

    for latency in [0, PAGE_LATENCY_MS] {
        bench.sandbox.faults.clear(Some("helius"));
        let delivered = if latency > 0 {
            bench.latency("helius", Some(ROUTE), latency);
            Some(bench.delivered_latency("helius").await)
        } else {
            None
        };
        let mut samples = Vec::new();
        let mut snapshot = None;
        for _ in 0..runs {
            let started = Instant::now();
            let taken = client
                .holder_snapshot(&mint, &filters)
                .await
                .expect("snapshot");
            samples.push(started.elapsed());
            snapshot = Some(taken);
        }
        let snapshot = snapshot.expect("runs >= 1");
        let timing = Timing::from_samples(samples);
        // The same pages fetched with no processing at all (the body read, the cursor cut out
        // of the text): what any client pays this fake for them.
        let raw = {
            let mut samples = Vec::new();
            for _ in 0..runs {
                let started = Instant::now();
                let pages = raw_pages(&url, &mint.to_string()).await;
                samples.push(started.elapsed());
                assert_eq!(pages, snapshot.pages, "the raw loop fetched every page");
            }
            Timing::from_samples(samples)
        };
        let pages = u64::from(snapshot.pages);
        let note = format!(
            "median of {}, min {:.3} s; {pages} pages, {} token accounts, {} holders",
            timing.runs,
            secs(timing.min),
            snapshot.token_accounts,
            snapshot.holders.len()
        );
        if let Some(delivered) = delivered {
            figure(
                &format!("snapshot_{holders}_holders_raw_client_{latency}ms"),
                secs(timing.median),
                pages as f64 * latency as f64 / 1_000.0,
                "s",
                &format!("pages × L = {pages} × {latency} ms; {note}"),
            );
            figure(
                &format!("snapshot_{holders}_holders_raw_client_{latency}ms_vs_delivered"),
                secs(timing.median),
                pages as f64 * secs(delivered),
                "s",
                &format!(
                    "pages × L' with L' = {:.2} ms, an empty page as the fake delivers it",
                    millis(delivered)
                ),
            );
            figure(
                &format!("snapshot_{holders}_holders_raw_client_{latency}ms_vs_raw_http"),
                secs(timing.median),
                secs(raw.median),
                "s",
                "the same pages fetched and thrown away (no parsing): the fake's own cost per \
                 full page included",
            );
        } else {
            value(
                &format!("snapshot_{holders}_holders_raw_client_0ms"),
                secs(timing.median),
                "s",
                &format!(
                    "{note}; the fake's and the client's own cost, {:.2} ms a page; the pages \
                     alone (fetched, not parsed) {:.3} s",
                    millis(timing.median) / pages as f64,
                    secs(raw.median)
                ),
            );
        }
    }

    if with_daemon_limit {
        // Through the ChainActor, as a run takes it: DAS limited to HELIUS_DAS_REQUESTS_PER_SECOND.
        let chain = bench.daemon.handle.chain.get().expect("chain actor");
        let started = Instant::now();
        let snapshot = creditbrain_actors::chain::actor::holder_snapshot(
            &chain,
            mint,
            HolderFilters {
                excluded_wallets: HashSet::new(),
                min_holding: 0,
            },
            Duration::from_secs(600),
        )
        .await
        .expect("snapshot through the chain actor");
        let elapsed = started.elapsed();
        let pages = u64::from(snapshot.pages);
        let rate = u64::from(HELIUS_DAS_REQUESTS_PER_SECOND);
        // With R requests per rolling second, page k (from 0) may start at ⌊k/R⌋ s.
        let bound = ((pages - 1) / rate) as f64 + PAGE_LATENCY_MS as f64 / 1_000.0;
        figure(
            &format!("snapshot_{holders}_holders_daemon_{rate}rps_{PAGE_LATENCY_MS}ms"),
            secs(elapsed),
            bound,
            "s",
            &format!(
                "the daemon's DAS limit: page k starts at ⌊k/{rate}⌋ s, {pages} pages; pages × L \
                 alone would be {:.2} s",
                pages as f64 * PAGE_LATENCY_MS as f64 / 1_000.0
            ),
        );
    }
    bench.stop().await;
}
