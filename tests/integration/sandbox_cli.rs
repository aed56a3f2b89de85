//! `creditbrain sandbox` as a user runs it: one ready line with every URL and credential, the real
//! daemon healthy against the fakes, the seeded strategy stored, SIGTERM → exit 0; `--once` says
//! honestly what it cannot do yet.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_creditbrain");

/// The sandbox with only the honoured variables set. Its stderr (logs) is inherited unless a test
/// reads it: an unread pipe would fill and block the daemon.
fn sandbox_command(dir: &std::path::Path, args: &[&str], stderr: Stdio) -> Command {
    let mut command = Command::new(BINARY);
    command
        .arg("sandbox")
        .args(args)
        .env_clear()
        .env("DATABASE_PATH", dir.join("sandbox.db"))
        .env("ADMIN_SOCKET_PATH", dir.join("sandbox.sock"))
        .env("PORT", "0")
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(stderr);
    command
}

fn first_line(child: &mut std::process::Child) -> Value {
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    serde_json::from_str(&line)
        .unwrap_or_else(|error| panic!("ready line is JSON ({error}): {line:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_boots_every_fake_and_the_daemon_and_prints_one_ready_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = sandbox_command(dir.path(), &["--holders", "40"], Stdio::inherit())
        .spawn()
        .unwrap();
    let ready = first_line(&mut child);
    for field in [
        "api_url",
        "api_token",
        "admin_socket",
        "control_url",
        "strategy_id",
        "bags_url",
        "bags_api_key",
        "rpc_url",
        "helius_url",
        "openrouter_url",
        "openrouter_management_key",
    ] {
        assert!(
            ready[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field} missing: {ready}"
        );
    }
    let text = |field: &str| ready[field].as_str().unwrap().to_string();
    let http = reqwest::Client::new();

    // The daemon's readiness probes the OpenRouter fake with the printed management key.
    let mut ready_status = 0;
    for _ in 0..250 {
        ready_status = http
            .get(format!("{}/health/ready", text("api_url")))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if ready_status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(ready_status, 200, "the daemon is ready against the fakes");
    let counts: Value = http
        .get(format!("{}/_sandbox/requests", text("control_url")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        counts["openrouter"]["GET /api/v1/credits"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "the control API saw the probe: {counts}"
    );

    // The printed Bags credentials work, and the signer owns the seeded fee positions.
    let positions: Value = http
        .get(format!(
            "{}/token-launch/claimable-positions",
            text("bags_url")
        ))
        .query(&[("wallet", text("signer"))])
        .header("x-api-key", text("bags_api_key"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(positions["success"], true, "{positions}");
    assert_eq!(
        positions["response"].as_array().unwrap().len(),
        3,
        "{positions}"
    );

    // The CLI reaches the sandbox daemon through the printed admin socket.
    let health = Command::new(BINARY)
        .args(["--socket", &text("admin_socket"), "health"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(
        health.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));

    // The seeded strategy is in the database the sandbox daemon created.
    let output = Command::new("sqlite3")
        .arg(dir.path().join("sandbox.db"))
        .arg(format!(
            "SELECT owner_wallet, token_mint FROM strategies WHERE strategy_id = '{}';",
            text("strategy_id")
        ))
        .output()
        .unwrap();
    let row = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        row.trim(),
        format!("{}|{}", text("signer"), text("token_mint"))
    );
}

#[test]
fn sandbox_once_runs_the_seeded_strategy_to_completion_and_prints_its_summary() {
    let dir = tempfile::tempdir().unwrap();
    let child = sandbox_command(
        dir.path(),
        &["--once", "--holders", "12", "--slot-ms", "20"],
        Stdio::piped(),
    )
    .spawn()
    .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let mut lines = stdout.lines();
    let ready: Value = serde_json::from_str(lines.next().expect("ready line")).unwrap();
    let summary: Value = serde_json::from_str(lines.next().expect("summary line")).unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{summary}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(summary["state"], "COMPLETE", "{summary}");
    assert!(summary["claimed_lamports"].as_u64().unwrap() > 0);
    assert!(summary["keys_created"].as_u64().unwrap() > 0);
    let actions: Vec<&str> = summary["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect();
    for action in [
        "claim_landed",
        "swap_landed",
        "allocated",
        "key_created",
        "provisioned",
    ] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
    assert!(ready["strategy_id"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fault_given_at_startup_is_active_from_the_first_request() {
    let dir = tempfile::tempdir().unwrap();
    let rule = r#"{"fake":"openrouter","route":"GET /api/v1/credits","mode":{"mode":"always","fault":{"kind":"server_error","status":503}}}"#;
    let mut child = sandbox_command(
        dir.path(),
        &["--holders", "5", "--fault", rule],
        Stdio::inherit(),
    )
    .spawn()
    .unwrap();
    let ready = first_line(&mut child);
    let http = reqwest::Client::new();
    let api_url = ready["api_url"].as_str().unwrap();
    // The daemon's first probe already meets the fault: readiness reports OpenRouter down.
    let mut body = Value::Null;
    for _ in 0..250 {
        let response = http
            .get(format!("{api_url}/health/ready"))
            .send()
            .await
            .unwrap();
        body = response.json().await.unwrap();
        if body["dependencies"]["database"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["dependencies"]["openrouter"], false, "{body}");
    let rules: Value = http
        .get(format!(
            "{}/_sandbox/faults",
            ready["control_url"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rules.as_array().unwrap().len(), 1, "{rules}");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn a_bad_fault_rule_stops_the_sandbox_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let output = sandbox_command(
        dir.path(),
        &[
            "--fault",
            r#"{"fake":"nope","mode":{"mode":"always","fault":{"kind":"hang"}}}"#,
        ],
        Stdio::piped(),
    )
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("unknown fake"), "{stderr}");
    assert!(output.stdout.is_empty(), "no ready line");
    assert!(!dir.path().join("sandbox.db").exists(), "nothing started");
}
