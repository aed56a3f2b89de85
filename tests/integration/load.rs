//! The CI-sized load test (issue 7 item 4; `scripts/load` is the full one, from a second process):
//! 200 keep-alive connections for 5 s on `GET /health/live` and the authenticated
//! `GET /api/runs` while a run executes. Every request must succeed (no `database_locked`, no
//! rate limit: the limit is raised, as for one busy client) and the run must finish exactly.
//! Latency is printed, never asserted: CI machines vary.

use std::time::{Duration, Instant};

use creditbrain_actors::store::Store;

use crate::fault_world::{API_TOKEN, FaultWorld, reference};
use crate::support::eventually;

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

/// The frontends query through a pool of their own: with every one of its connections held (a
/// flood of slow API reads), a run still goes through the pipeline to the end and the health
/// probe still reaches the database.
#[tokio::test(flavor = "multi_thread")]
async fn api_reads_that_exhaust_their_pool_do_not_stall_a_run() {
    let expected = reference().await;
    let world = FaultWorld::start(&[]).await;
    let before = world.daemon.handle.health_report().checked_at;
    let mut held = Vec::new();
    let frontend_pool = world.store().pool();
    while let Ok(Ok(connection)) =
        tokio::time::timeout(Duration::from_millis(200), frontend_pool.acquire()).await
    {
        held.push(connection);
    }
    assert!(!held.is_empty());
    let run_id = world.start_run().await;
    // Read through a store of the test's own: the daemon's frontend pool is exhausted.
    let reader = Store::open(&world.database_path).await.unwrap();
    let run = eventually(Duration::from_secs(30), || async {
        let run = reader.run(&run_id).await.unwrap().unwrap();
        run.state.is_terminal().then_some(run)
    })
    .await;
    let report = world.daemon.handle.health_report();
    assert!(
        report.checked_at > before && report.database.ok,
        "{report:?}"
    );
    drop(held);
    let figures = world.assert_exact(&run).await;
    assert_eq!(figures, expected);
    reader.close().await;
    world.stop().await;
}

/// Every HTTP connection holds a descriptor, and the integrations' sockets share the limit: at a
/// soft limit of 1,024, 1,200 clients made the daemon's own calls to Bags fail with EMFILE. The
/// daemon raises its soft limit to the hard one at start and logs it.
#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_raises_its_open_files_limit_to_the_hard_limit() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;

    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit on a struct we own.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    let hard = limit.rlim_max;
    let low = hard.min(256);
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_creditbrain"));
    command
        .args(["sandbox", "--holders", "5"])
        .env_clear()
        .env("DATABASE_PATH", dir.path().join("sandbox.db"))
        .env("ADMIN_SOCKET_PATH", dir.path().join("sandbox.sock"))
        .env("PORT", "0")
        .env("LOG_LEVEL", "info")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: only setrlimit (async-signal-safe) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let soft = libc::rlimit {
                rlim_cur: low,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &soft) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = command.spawn().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let listening = tokio::task::spawn_blocking(move || {
        stderr
            .lines()
            .map_while(Result::ok)
            .find(|line| line.contains("creditbrain listening"))
    });
    let line = tokio::time::timeout(Duration::from_secs(30), listening)
        .await
        .expect("the sandbox starts")
        .unwrap()
        .expect("a listening line");
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let logged: serde_json::Value = serde_json::from_str(&line).unwrap();
    let expected = if hard == libc::RLIM_INFINITY {
        1 << 20
    } else {
        hard
    };
    assert_eq!(logged["openFiles"], expected, "{line}");
}
