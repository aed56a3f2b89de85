//! Figure 5: the real binary's cold start (spawn → `/health/ready` 200) and idle resident memory
//! (`VmRSS` of `/proc/<pid>/status` once it is idle), for `creditbrain serve` (against the
//! sandbox's fakes, started in this process) and `creditbrain sandbox` (fakes and world included).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use creditbrain::sandbox::{Sandbox, SandboxOptions};

use crate::harness::{Timing, detail, figure, mib, millis, repeat, status_kb, value};

const BINARY: &str = env!("CARGO_BIN_EXE_creditbrain");

pub async fn run() {
    let runs: usize = crate::env_or("BENCH_STARTUP_RUNS", 5);
    let idle = Duration::from_secs(crate::env_or("BENCH_STARTUP_IDLE_SECS", 5));
    let http = reqwest::Client::new();

    // The floor: the same binary spawned and run to its exit doing nothing (`--version`).
    let (floor, ()) = repeat(1, runs.max(5), |_| {
        let status = Command::new(BINARY)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .expect("spawn");
        assert!(status.success());
    });
    detail(format!(
        "floor: `creditbrain --version` spawned and exited, median {:.1} ms",
        millis(floor.median)
    ));

    // `serve` against the fakes.
    let sandbox = Sandbox::start(SandboxOptions::default())
        .await
        .expect("sandbox");
    let mut samples = Vec::new();
    let mut restarts = Vec::new();
    let mut idle_rss = 0;
    let mut threads = 0;
    for index in 0..runs {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut vars = sandbox.daemon_vars();
        vars.extend(
            [
                ("API_AUTH_TOKEN", "bench-serve-token-0123456789abcdef"),
                ("HOST", "127.0.0.1"),
                ("LOG_LEVEL", "error"),
                ("KEY_LIMIT_RESET", "null"),
            ]
            .map(|(name, value)| (name.to_string(), value.to_string())),
        );
        vars.insert("PORT".into(), port.to_string());
        vars.insert(
            "DATABASE_PATH".into(),
            dir.path().join("data/creditbrain.db").display().to_string(),
        );
        vars.insert(
            "ADMIN_SOCKET_PATH".into(),
            dir.path()
                .join("data/creditbrain.sock")
                .display()
                .to_string(),
        );
        let started = Instant::now();
        let mut child = spawn(&["serve"], &vars, dir.path(), Stdio::null());
        let url = format!("http://127.0.0.1:{port}/health/ready");
        wait_ready(&http, &url, &mut child).await;
        samples.push(started.elapsed());
        if index == 0 {
            tokio::time::sleep(idle).await;
            let pid = child.id().to_string();
            idle_rss = status_kb(&pid, "VmRSS").unwrap_or(0);
            threads = threads_of(&pid);
        }
        stop(child);
        // A restart on the database just created: migrations already applied.
        let started = Instant::now();
        let mut child = spawn(&["serve"], &vars, dir.path(), Stdio::null());
        wait_ready(&http, &url, &mut child).await;
        restarts.push(started.elapsed());
        stop(child);
    }
    let restart = Timing::from_samples(restarts);
    let serve = Timing::from_samples(samples);
    figure(
        "cold_start_serve_to_ready",
        millis(serve.median),
        millis(floor.median),
        "ms",
        &format!(
            "median of {}, min {:.1} ms; fresh database (migrations), first health probe \
             (database ping + OpenRouter /credits); bound: the process floor",
            serve.runs,
            millis(serve.min)
        ),
    );
    figure(
        "restart_serve_to_ready",
        millis(restart.median),
        millis(floor.median),
        "ms",
        &format!(
            "median of {}, min {:.1} ms; the same database again (migrated already); bound: the \
             process floor",
            restart.runs,
            millis(restart.min)
        ),
    );
    value(
        "idle_rss_serve",
        mib(idle_rss),
        "MiB",
        &format!("VmRSS {} s after ready, {threads} threads", idle.as_secs()),
    );
    drop(sandbox);

    // `sandbox`: the fakes, a 300-holder world and the daemon in one process.
    let mut samples = Vec::new();
    let mut idle_rss = 0;
    let mut threads = 0;
    for index in 0..runs {
        let dir = tempfile::tempdir().expect("temp dir");
        let vars: BTreeMap<String, String> = [
            (
                "DATABASE_PATH",
                dir.path().join("data/creditbrain.db").display().to_string(),
            ),
            (
                "ADMIN_SOCKET_PATH",
                dir.path()
                    .join("data/creditbrain.sock")
                    .display()
                    .to_string(),
            ),
            ("PORT", "0".to_string()),
            ("LOG_LEVEL", "error".to_string()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
        let started = Instant::now();
        let mut child = spawn(&["sandbox"], &vars, dir.path(), Stdio::piped());
        let stdout = child.stdout.take().expect("stdout");
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        })
        .await
        .expect("reader")
        .expect("ready line");
        let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line is JSON");
        let url = format!(
            "{}/health/ready",
            ready["api_url"].as_str().expect("api_url")
        );
        wait_ready(&http, &url, &mut child).await;
        samples.push(started.elapsed());
        if index == 0 {
            tokio::time::sleep(idle).await;
            let pid = child.id().to_string();
            idle_rss = status_kb(&pid, "VmRSS").unwrap_or(0);
            threads = threads_of(&pid);
        }
        stop(child);
    }
    let timing = Timing::from_samples(samples);
    figure(
        "cold_start_sandbox_to_ready",
        millis(timing.median),
        millis(floor.median),
        "ms",
        &format!(
            "median of {}, min {:.1} ms; includes starting the fakes and seeding 300 holders; \
             bound: the process floor",
            timing.runs,
            millis(timing.min)
        ),
    );
    value(
        "idle_rss_sandbox",
        mib(idle_rss),
        "MiB",
        &format!(
            "VmRSS {} s after ready, {threads} threads; the fakes and their world included",
            idle.as_secs()
        ),
    );
}

fn spawn(
    args: &[&str],
    vars: &BTreeMap<String, String>,
    cwd: &std::path::Path,
    stdout: Stdio,
) -> Child {
    Command::new(BINARY)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars)
        // No `.env` of the caller's working directory.
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn creditbrain")
}

async fn wait_ready(http: &reqwest::Client, url: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = http.get(url).send().await
            && response.status().as_u16() == 200
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("creditbrain exited before it was ready: {status}");
        }
        assert!(Instant::now() < deadline, "not ready within 60 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// SIGTERM and wait (the daemon exits 0 on it).
fn stop(mut child: Child) {
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: signalling our own child by its pid.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let _ = child.wait();
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

fn threads_of(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Threads:"))
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0)
}
