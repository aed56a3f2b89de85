//! The CI-sized load test (issue 7 item 4; `scripts/load` is the full one, from a second process):
//! 200 keep-alive connections for 5 s on `GET /health/live` and the authenticated
//! `GET /api/runs` while a run executes. Every request must succeed (no `database_locked`, no
//! rate limit: the limit is raised, as for one busy client) and the run must finish exactly.
//! Latency is printed, never asserted: CI machines vary.

use std::time::{Duration, Instant};

use crate::fault_world::{API_TOKEN, FaultWorld, reference};

const CONNECTIONS: usize = 200;
const LOAD_FOR: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_connections_for_five_seconds_while_a_run_executes_without_an_error() {
    let expected = reference().await;
    let world = FaultWorld::start(&[("API_RATE_LIMIT_PER_MIN", "1000000")]).await;
    // Slow sends: the run is still in flight when the load starts, and SQLite takes its
    // checkpoints while the API reads.
    world.latency("rpc", Some("sendTransaction"), 100);
    let run_id = world.start_run().await;
    assert!(!world.run(&run_id).await.state.is_terminal());
    let deadline = Instant::now() + LOAD_FOR;
    let connections: Vec<_> = (0..CONNECTIONS)
        .map(|index| {
            let live = world.url("/health/live");
            let runs = world.url("/api/runs?limit=20");
            tokio::spawn(async move {
                // One client per task: as many connections as tasks.
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                let (mut requests, mut errors) = (0u64, Vec::new());
                let mut latencies = Vec::new();
                let mut turn = index % 2;
                while Instant::now() < deadline {
                    let request = if turn == 0 {
                        client.get(&live)
                    } else {
                        client.get(&runs).bearer_auth(API_TOKEN)
                    };
                    turn ^= 1;
                    let sent = Instant::now();
                    match request.send().await {
                        Ok(response) => {
                            let status = response.status();
                            let body = response.text().await.unwrap_or_default();
                            if !status.is_success() {
                                errors.push(format!("{status}: {body}"));
                            }
                        }
                        Err(error) => errors.push(error.to_string()),
                    }
                    latencies.push(sent.elapsed());
                    requests += 1;
                }
                (requests, errors, latencies)
            })
        })
        .collect();
    let (mut requests, mut errors, mut latencies) = (0, Vec::new(), Vec::new());
    for connection in connections {
        let (count, mut failed, mut seen) = connection.await.unwrap();
        requests += count;
        errors.append(&mut failed);
        latencies.append(&mut seen);
    }
    latencies.sort_unstable();
    let at = |q: f64| latencies[((q * latencies.len() as f64) as usize).min(latencies.len() - 1)];
    println!(
        "load: {CONNECTIONS} connections, {requests} requests in {LOAD_FOR:?}, p50 {:?} p99 {:?} max {:?}",
        at(0.5),
        at(0.99),
        latencies.last().unwrap()
    );
    assert!(
        errors.is_empty(),
        "{} of {requests} requests failed, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(requests >= CONNECTIONS as u64, "every connection was used");

    let run = world.wait_for_end(&run_id).await;
    let figures = world.assert_exact(&run).await;
    assert_eq!(figures, expected);
    world.stop().await;
}
