//! The real `creditbrain` binary: config errors, startup, access log, the health command, and
//! SIGTERM → exit 0 with the socket removed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::support::{CreditsServer, TestEnv};

const BINARY: &str = env!("CARGO_BIN_EXE_creditbrain");

/// A `creditbrain` command with exactly these variables, in a directory with no `.env`.
fn command(env: &TestEnv, args: &[&str]) -> Command {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .env_clear()
        .envs(&env.vars)
        .current_dir(env.dir.path());
    command
}

/// A running `creditbrain serve` whose stdout lines (JSON logs) arrive on a channel.
struct ServeProcess {
    child: Child,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl ServeProcess {
    fn spawn(env: &TestEnv) -> Self {
        let mut child = command(env, &["serve"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|error| panic!("stdout line is not JSON ({error}): {line}"));
                if sender.send(value).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line matching `predicate` and returns it.
    fn wait_for_line(&mut self, predicate: impl Fn(&Value) -> bool) -> Value {
        if let Some(line) = self.seen.iter().find(|line| predicate(line)) {
            return line.clone();
        }
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .expect("the daemon logged the expected line within 30 s");
            self.seen.push(line.clone());
            if predicate(&line) {
                return line;
            }
        }
    }

    fn listening_address(&mut self) -> String {
        let line = self.wait_for_line(|line| line["msg"] == "creditbrain listening");
        line["address"].as_str().unwrap().to_string()
    }

    fn signal(&self, signal: i32) {
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0);
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        for _ in 0..1500 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill().unwrap();
        panic!("the daemon did not exit within 30 s of the signal");
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_with_missing_variables_names_each_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BINARY)
        .arg("serve")
        .env_clear()
        .env("SWAP_SLIPPAGE_BPS", "5000")
        .env("DRY_RUN", "maybe")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "exit code for invalid configuration"
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    for name in [
        "BAGS_API_KEY",
        "HELIUS_API_KEY",
        "OPENROUTER_MANAGEMENT_KEY",
        "API_AUTH_TOKEN",
        "SIGNER_KEYPAIR_PATH",
        "SWAP_SLIPPAGE_BPS",
        "DRY_RUN",
    ] {
        assert!(stderr.contains(name), "{name} missing from:\n{stderr}");
    }
    assert!(
        !dir.path().join("data").exists(),
        "nothing was created before validation passed"
    );
}

#[test]
fn config_check_redacts_secrets() {
    let env = TestEnv::new("http://127.0.0.1:9/api/v1");
    let output = command(&env, &["config", "check"]).output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("OPENROUTER_MANAGEMENT_KEY"), "{stdout}");
    assert!(stdout.contains("SWAP_SLIPPAGE_BPS"), "{stdout}");
    for secret in [
        "OPENROUTER_MANAGEMENT_KEY",
        "API_AUTH_TOKEN",
        "BAGS_API_KEY",
        "HELIUS_API_KEY",
        "SIGNER_PRIVATE_KEY",
    ] {
        let value = &env.vars[secret];
        assert!(
            !stdout.contains(value.as_str()),
            "{secret}'s value leaked:\n{stdout}"
        );
    }
}

#[test]
fn health_without_a_daemon_says_so_in_one_line() {
    let env = TestEnv::new("http://127.0.0.1:9/api/v1");
    let output = command(&env, &["health"]).output().unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("no creditbrain daemon is listening"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_answers_logs_access_reports_health_and_exits_0_on_sigterm() {
    let credits = CreditsServer::start().await;
    let env = TestEnv::new(&credits.base_url);
    let mut daemon = ServeProcess::spawn(&env);
    let address = daemon.listening_address();

    let live: Value = reqwest::get(format!("http://{address}/health/live"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(live["status"], "ok");

    let access = daemon.wait_for_line(|line| line["req"]["url"] == "/health/live");
    assert_eq!(access["level"], "info");
    assert_eq!(access["req"]["method"], "GET");
    assert_eq!(access["req"]["remoteAddress"], "127.0.0.1");
    assert_eq!(access["res"]["statusCode"], 200);
    assert!(access["responseTime"].is_number());
    assert!(access["time"].as_u64().unwrap() > 1_700_000_000_000);

    // `creditbrain health` over the admin socket, once the first probe round is in.
    let mut healthy = None;
    for _ in 0..250 {
        let output = command(&env, &["health", "--json"]).output().unwrap();
        if output.status.code() == Some(0) {
            healthy = Some(output);
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let output = healthy.expect("creditbrain health reports healthy");
    let readiness: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(readiness["status"], "ok");
    assert_eq!(readiness["dependencies"]["openrouter"], true);

    let output = command(&env, &["health"]).output().unwrap();
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(
        table.contains("database") && table.contains("openrouter"),
        "{table}"
    );

    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit();
    assert_eq!(status.code(), Some(0), "clean exit on SIGTERM");
    assert!(!env.socket_path().exists(), "socket removed");
    daemon.wait_for_line(|line| line["msg"] == "shutdown complete");

    // The database the daemon created answers the runbook's query through the sqlite3 CLI.
    let output = Command::new("sqlite3")
        .arg(env.database_path())
        .arg("SELECT run_id, state, error_code, error_detail FROM runs WHERE state = 'FAILED' ORDER BY started_at DESC LIMIT 10;")
        .output()
        .expect("sqlite3 is installed (.ci/run installs it)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn health_exits_1_while_a_dependency_is_down() {
    // OpenRouter at a port where nothing listens: the probe fails at once.
    let env = TestEnv::new("http://127.0.0.1:9/api/v1");
    let mut daemon = ServeProcess::spawn(&env);
    daemon.listening_address();
    let _down = daemon.wait_for_line(|line| {
        line["msg"] == "dependency down" && line["dependency"] == "openrouter"
    });
    let output = command(&env, &["health", "--json"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let readiness: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(readiness["status"], "degraded");
    assert_eq!(readiness["dependencies"]["openrouter"], false);
    assert_eq!(readiness["dependencies"]["database"], true);
    daemon.signal(libc::SIGINT);
    assert_eq!(daemon.wait_exit().code(), Some(0), "clean exit on SIGINT");
}
