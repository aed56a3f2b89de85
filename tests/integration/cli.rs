//! The operator's CLI as operators run it: the real `creditbrain` binary as a child process
//! against the real daemon on the sandbox, every command in text and `--json`, asserting on what
//! it says (ids, states, amounts) and on its exit code (0 good, 1 bad answer or refused, 2 usage,
//! 3 no daemon).

use std::path::{Path, PathBuf};

use creditbrain::cli::format::{sol, usd, usdc};
use creditbrain::ops::{self, KeyView, PoolView, RunDetail, StrategyStatusView};
use creditbrain::sandbox::faults::{Fault, FaultMode, FaultRule};
use creditbrain_actors::store::runs::{RunState, TriggeredBy};
use serde_json::{Value, json};
use solana_sdk::signature::{Keypair, Signer};

use crate::support::SandboxDaemon;

const BINARY: &str = env!("CARGO_BIN_EXE_creditbrain");

/// What one `creditbrain` invocation did.
struct Outcome {
    args: Vec<String>,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    /// Asserts the exit code, showing everything the command printed when it differs.
    fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            Some(code),
            "creditbrain {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.args,
            self.stdout,
            self.stderr
        );
        self
    }

    /// The whole stdout as one JSON document.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| {
            panic!(
                "stdout of {:?} is not JSON ({error}):\n{}",
                self.args, self.stdout
            )
        })
    }

    /// Each stdout line as a JSON object.
    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"))
            })
            .collect()
    }

    /// Asserts that each of `needles` appears in stdout, in this order.
    fn in_order(&self, needles: &[&str]) {
        let mut from = 0;
        for needle in needles {
            match self.stdout[from..].find(needle) {
                Some(at) => from += at + needle.len(),
                None => panic!(
                    "{needle:?} missing (or out of order) in the output of {:?}:\n{}",
                    self.args, self.stdout
                ),
            }
        }
    }
}

/// `creditbrain --socket <socket> <args>` with no environment, in an empty directory (no `.env`).
/// Async, so this test's runtime keeps serving the in-process daemon meanwhile.
async fn creditbrain(socket: &Path, args: &[&str]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(BINARY)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_clear()
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    Outcome {
        args: args.iter().map(|arg| arg.to_string()).collect(),
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn wallet() -> String {
    Keypair::new().pubkey().to_string()
}

/// The run id in `run <id> started (...)`, the first line of a followed or detached run.
fn started_run_id(outcome: &Outcome) -> String {
    let first = outcome.stdout.lines().next().unwrap_or_default();
    let rest = first
        .strip_prefix("run ")
        .unwrap_or_else(|| panic!("first line names the run: {first:?}"));
    rest.split_whitespace().next().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------------
// Strategies

#[tokio::test(flavor = "multi_thread")]
async fn strategies_are_created_listed_updated_and_deleted_in_text_and_json() {
    let daemon = SandboxDaemon::start(3, &[]).await;
    let socket = daemon.socket_path();
    let owner = daemon.sandbox.world.signer.pubkey().to_string();
    let excluded = wallet();

    // create-strategy, text: every given option shows in the runbook's units.
    let created = creditbrain(
        &socket,
        &[
            "create-strategy",
            "--owner",
            &owner,
            "--distribution",
            "EQUAL_SPLIT",
            "--key-limit",
            "12.5",
            "--max-key-limit",
            "250",
            "--reserve",
            "5",
            "--threshold",
            "2",
            "--slippage-bps",
            "75",
            "--key-limit-reset",
            "weekly",
            "--key-expiry-days",
            "0",
            "--min-holding",
            "1000",
            "--schedule",
            "0 */12 * * *",
            "--exclude",
            &excluded,
        ],
    )
    .await
    .expect(0);
    let first_id = created
        .stdout
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("created strategy "))
        .unwrap_or_else(|| panic!("heading names the id: {}", created.stdout))
        .to_string();
    created.in_order(&[
        "status",
        "active",
        "owner wallet",
        &owner,
        "threshold",
        "2 SOL",
        "slippage",
        "75 bps",
        "distribution",
        "EQUAL_SPLIT",
        "exclusions",
        &excluded,
        "min holding",
        "1000 base units",
        "key limit",
        "$12.50 per holder per run",
        "max key limit",
        "$250.00",
        "key limit reset",
        "weekly (allowance mode)",
        "key expiry",
        "never",
        "reserve",
        "5%",
        "schedule",
        "0 */12 * * * (UTC)",
    ]);

    // create-strategy --json: the daemon's view, raw integers, repeatable --weight.
    let (heavy, light) = (wallet(), wallet());
    let custom = creditbrain(
        &socket,
        &[
            "create-strategy",
            "--owner",
            &owner,
            "--distribution",
            "CUSTOM_LIST",
            "--weight",
            &format!("{heavy}=3"),
            "--weight",
            &format!("{light}=1"),
            "--source",
            "PARTNER_FEES",
            "--status",
            "paused",
            "--json",
        ],
    )
    .await
    .expect(0)
    .json();
    let custom_id = custom["strategyId"].as_str().unwrap().to_string();
    assert_eq!(custom["distributionMode"], "CUSTOM_LIST");
    assert_eq!(custom["feeSource"], "PARTNER_FEES");
    assert_eq!(custom["status"], "paused");
    let mut weights: Vec<(String, u64)> = custom["customWeights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry["wallet"].as_str().unwrap().to_string(),
                entry["weight"].as_u64().unwrap(),
            )
        })
        .collect();
    weights.sort();
    let mut expected = vec![(heavy.clone(), 3), (light.clone(), 1)];
    expected.sort();
    assert_eq!(weights, expected);
    // Options not given took the environment's defaults (FEE_THRESHOLD_SOL=1 in the sandbox).
    assert_eq!(custom["thresholdLamports"], 1_000_000_000u64);

    // list-strategies, text and JSON, with the status filter.
    let listed = creditbrain(&socket, &["list-strategies"]).await.expect(0);
    listed.in_order(&["STRATEGY", "STATUS", "DISTRIBUTION"]);
    for id in [&daemon.strategy_id, &first_id, &custom_id] {
        assert!(listed.stdout.contains(id.as_str()), "{}", listed.stdout);
    }
    assert!(listed.stdout.contains("EQUAL_SPLIT"), "{}", listed.stdout);
    let paused = creditbrain(
        &socket,
        &["list-strategies", "--status", "paused", "--json"],
    )
    .await
    .expect(0)
    .json();
    let paused_ids: Vec<&str> = paused
        .as_array()
        .unwrap()
        .iter()
        .map(|strategy| strategy["strategyId"].as_str().unwrap())
        .collect();
    assert_eq!(paused_ids, [custom_id.as_str()]);
    let refused = creditbrain(&socket, &["list-strategies", "--status", "sleeping"])
        .await
        .expect(1);
    assert!(
        refused.stderr.starts_with("creditbrain: invalid_status: "),
        "{}",
        refused.stderr
    );

    // update-strategy: only the given fields change.
    let updated = creditbrain(
        &socket,
        &[
            "update-strategy",
            "--id",
            &first_id,
            "--distribution",
            "TOP_N_HOLDERS",
            "--top-n",
            "7",
            "--status",
            "paused",
        ],
    )
    .await
    .expect(0);
    updated.in_order(&[
        &format!("updated strategy {first_id}"),
        "paused",
        "TOP_N_HOLDERS (top 7)",
        "$12.50 per holder per run",
        "weekly (allowance mode)",
    ]);
    let cleared = creditbrain(
        &socket,
        &[
            "update-strategy",
            "--id",
            &first_id,
            "--clear-exclusions",
            "--json",
        ],
    )
    .await
    .expect(0)
    .json();
    assert_eq!(cleared["exclusions"], json!([]));
    assert_eq!(cleared["topN"], 7);
    assert_eq!(cleared["maxGrantMicroUsd"], 12_500_000);
    assert_eq!(cleared["keyLimitReset"], "weekly");

    // The daemon's validation: every rejected field on its own line, nothing written.
    let invalid = creditbrain(
        &socket,
        &[
            "create-strategy",
            "--owner",
            "not-a-wallet",
            "--slippage-bps",
            "5000",
        ],
    )
    .await
    .expect(1);
    let lines: Vec<&str> = invalid.stderr.lines().collect();
    assert_eq!(
        lines[0], "creditbrain: invalid_strategy: 2 problems:",
        "{}",
        invalid.stderr
    );
    assert!(
        lines[1].starts_with("  ownerWallet: "),
        "{}",
        invalid.stderr
    );
    assert!(
        lines[2].starts_with("  slippageBps: "),
        "{}",
        invalid.stderr
    );
    assert!(invalid.stdout.is_empty(), "{}", invalid.stdout);
    let invalid = creditbrain(
        &socket,
        &[
            "update-strategy",
            "--id",
            &first_id,
            "--threshold",
            "0.5",
            "--json",
        ],
    )
    .await
    .expect(1);
    assert!(
        invalid.stderr.contains("  thresholdSol: "),
        "{}",
        invalid.stderr
    );
    let error = invalid.json();
    assert_eq!(error["error"]["code"], "invalid_strategy");
    assert_eq!(error["error"]["fields"][0]["field"], "thresholdSol");
    let strategies = ops::list_strategies(&daemon.daemon.handle, None)
        .await
        .unwrap();
    assert_eq!(strategies.len(), 3, "nothing was written");

    // Unknown ids: exit 1 with the daemon's code.
    for args in [
        vec![
            "update-strategy",
            "--id",
            "no-such-strategy",
            "--top-n",
            "3",
        ],
        vec!["delete-strategy", "--id", "no-such-strategy"],
        vec!["status", "--strategy", "no-such-strategy"],
        vec!["run", "--strategy", "no-such-strategy"],
    ] {
        let outcome = creditbrain(&socket, &args).await.expect(1);
        assert_eq!(
            outcome.stderr.trim_end(),
            "creditbrain: strategy_not_found: strategy no-such-strategy not found",
            "{args:?}"
        );
    }
    let missing = creditbrain(&socket, &["status", "--strategy", "nope", "--json"])
        .await
        .expect(1)
        .json();
    assert_eq!(missing["error"]["code"], "strategy_not_found");

    // delete-strategy, text and JSON.
    let deleted = creditbrain(&socket, &["delete-strategy", "--id", &first_id])
        .await
        .expect(0);
    assert_eq!(
        deleted.stdout.trim_end(),
        format!("deleted strategy {first_id}")
    );
    let deleted = creditbrain(&socket, &["delete-strategy", "--id", &custom_id, "--json"])
        .await
        .expect(0)
        .json();
    assert_eq!(deleted, json!({ "deleted": custom_id }));
    let remaining = creditbrain(&socket, &["list-strategies", "--json"])
        .await
        .expect(0)
        .json();
    assert_eq!(remaining.as_array().unwrap().len(), 1);
    assert_eq!(remaining[0]["strategyId"], daemon.strategy_id.as_str());

    // The audit log records the CLI as the actor.
    let audit = daemon.daemon.handle.store.recent_audit(50).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|row| row.action == "strategy_created" && row.actor.as_deref() == Some("cli")),
        "{audit:?}"
    );
    daemon.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Runs and status

#[tokio::test(flavor = "multi_thread")]
async fn run_follows_every_phase_to_complete_and_status_shows_its_log() {
    let daemon = SandboxDaemon::start(8, &[("MAX_DAILY_RUNS", "0")]).await;
    let socket = daemon.socket_path();
    let strategy_id = daemon.strategy_id.as_str();

    // run --strategy: each transition as it happens, then the summary and the audit log.
    let followed = creditbrain(&socket, &["run", "--strategy", strategy_id])
        .await
        .expect(0);
    let run_id = started_run_id(&followed);
    let run = daemon.wait_for_end(&run_id).await;
    assert_eq!(run.state, RunState::Complete);
    followed.in_order(&[
        &format!("run {run_id} started (PENDING)"),
        "→ PENDING",
        "→ CLAIMING",
        "→ SWAPPING",
        &format!("claimed {}", sol(run.claimed_lamports.unwrap())),
        "→ ALLOCATING",
        "→ PROVISIONING",
        "→ COMPLETE",
        &format!("run {run_id} COMPLETE"),
        &sol(run.claimed_lamports.unwrap()),
        &usdc(run.swapped_usdc_base_units.unwrap()),
        &usd(run.budget_micro_usd.unwrap()),
        &usd(run.allocated_micro_usd.unwrap()),
        &usd(run.carry_out_micro_usd.unwrap()),
        &format!("{} created, 0 updated, 0 failed", run.keys_created.unwrap()),
        "transactions:",
        "landed",
        "audit log:",
        "run_created",
        "claim_landed",
        "swap_landed",
        "key_created",
        "provisioned",
    ]);
    assert!(run.keys_created.unwrap() > 0);
    // Each transition carries the daemon's timestamp.
    let transition = followed
        .stdout
        .lines()
        .find(|line| line.contains("→ CLAIMING"))
        .unwrap();
    assert!(
        creditbrain_actors::store::parse_timestamp(transition.split_whitespace().next().unwrap())
            .is_some(),
        "{transition}"
    );

    // status --run: the same summary and the full phase log, in text and JSON.
    let status = creditbrain(&socket, &["status", "--run", &run_id])
        .await
        .expect(0);
    status.in_order(&[
        &format!("run {run_id} COMPLETE"),
        "claimed",
        &sol(run.claimed_lamports.unwrap()),
        "allocated",
        &usd(run.allocated_micro_usd.unwrap()),
        "transactions:",
        "CLAIMING",
        "SWAPPING",
        &format!("allocations: {} applied", run.keys_created.unwrap()),
        "audit log:",
        "PENDING",
        "state_advanced",
        "PROVISIONING",
        "state_advanced",
    ]);
    let detail: RunDetail = serde_json::from_value(
        creditbrain(&socket, &["status", "--run", &run_id, "--json"])
            .await
            .expect(0)
            .json(),
    )
    .unwrap();
    assert_eq!(detail.run.state, "COMPLETE");
    assert_eq!(detail.run.claimed_lamports, run.claimed_lamports);
    assert_eq!(detail.run.allocated_micro_usd, run.allocated_micro_usd);
    let advanced: Vec<&str> = detail
        .audit
        .iter()
        .filter(|row| row.action == "state_advanced")
        .map(|row| row.details["to"].as_str().unwrap())
        .collect();
    assert_eq!(
        advanced,
        [
            "CLAIMING",
            "SWAPPING",
            "ALLOCATING",
            "PROVISIONING",
            "COMPLETE"
        ]
    );

    // run --json: one JSON line per transition, then the finished run.
    let followed = creditbrain(&socket, &["run", "--strategy", strategy_id, "--json"])
        .await
        .expect(0);
    let events = followed.json_lines();
    assert_eq!(events[0]["event"], "started");
    assert_eq!(events[0]["state"], "PENDING");
    let second_id = events[0]["runId"].as_str().unwrap().to_string();
    let states: Vec<&str> = events
        .iter()
        .filter(|event| event["event"] == "transition")
        .map(|event| event["to"].as_str().unwrap())
        .collect();
    assert_eq!(states.first(), Some(&"PENDING"), "{states:?}");
    assert_eq!(states.last(), Some(&"COMPLETE"), "{states:?}");
    let rank = |state: &str| {
        [
            "PENDING",
            "CLAIMING",
            "SWAPPING",
            "BRIDGING",
            "ALLOCATING",
            "PROVISIONING",
            "COMPLETE",
        ]
        .iter()
        .position(|known| *known == state)
        .unwrap_or_else(|| panic!("unexpected state {state}"))
    };
    assert!(
        states.windows(2).all(|pair| rank(pair[0]) < rank(pair[1])),
        "transitions in pipeline order: {states:?}"
    );
    assert!(
        events
            .iter()
            .filter(|event| event["event"] == "transition")
            .all(|event| event["runId"] == second_id.as_str() && event["at"].is_string())
    );
    let finished = events.last().unwrap();
    assert_eq!(finished["event"], "finished");
    assert_eq!(finished["run"]["runId"], second_id.as_str());
    assert_eq!(finished["run"]["state"], "COMPLETE");
    let actions: Vec<&str> = finished["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.first(), Some(&"run_created"), "{actions:?}");
    assert_eq!(
        actions
            .iter()
            .filter(|action| **action == "state_advanced")
            .count(),
        states.len() - 1,
        "{actions:?}"
    );

    // run --detach: the id at once, no following; the run proceeds in the daemon.
    let detached = creditbrain(
        &socket,
        &["run", "--strategy", strategy_id, "--detach", "--json"],
    )
    .await
    .expect(0)
    .json();
    assert_eq!(detached["event"], "started");
    assert_eq!(detached["state"], "PENDING");
    let detached_id = detached["runId"].as_str().unwrap().to_string();
    assert_eq!(
        daemon.wait_for_end(&detached_id).await.state,
        RunState::Complete
    );
    let detached = creditbrain(
        &socket,
        &["run", "--strategy", strategy_id, "--detach", "--dry-run"],
    )
    .await
    .expect(0);
    assert_eq!(detached.stdout.lines().count(), 1, "{}", detached.stdout);
    let dry_id = started_run_id(&detached);
    assert!(
        detached.stdout.contains(&format!(
            "follow it with: creditbrain status --run {dry_id}"
        )),
        "{}",
        detached.stdout
    );
    let dry = daemon.wait_for_end(&dry_id).await;
    assert!(dry.dry_run && dry.state == RunState::Complete, "{dry:?}");

    // status --strategy: the strategy, its recent runs, the latest run's log.
    let status = creditbrain(&socket, &["status", "--strategy", strategy_id])
        .await
        .expect(0);
    status.in_order(&[
        &format!("strategy {strategy_id}"),
        "recent runs (newest first):",
        &dry_id,
        "COMPLETE (dry)",
        &detached_id,
        &second_id,
        &run_id,
        &format!("audit log of the latest run {dry_id}"),
        "run_created",
    ]);
    let status: StrategyStatusView = serde_json::from_value(
        creditbrain(&socket, &["status", "--strategy", strategy_id, "--json"])
            .await
            .expect(0)
            .json(),
    )
    .unwrap();
    let run_ids: Vec<&str> = status.runs.iter().map(|run| run.run_id.as_str()).collect();
    assert_eq!(
        run_ids,
        [dry_id.as_str(), &detached_id, &second_id, &run_id]
    );
    assert!(
        status
            .latest_audit
            .iter()
            .all(|row| row.run_id.as_deref() == Some(&*dry_id))
    );
    assert_eq!(status.strategy["strategyId"], strategy_id);

    // Resuming a run that did not fail: refused with the daemon's code.
    let refused = creditbrain(&socket, &["run", "--resume", &run_id])
        .await
        .expect(1);
    assert!(
        refused
            .stderr
            .starts_with("creditbrain: run_not_resumable: "),
        "{}",
        refused.stderr
    );
    let refused = creditbrain(&socket, &["run", "--resume", "no-such-run", "--json"])
        .await
        .expect(1)
        .json();
    assert_eq!(refused["error"]["code"], "run_not_found");
    let refused = creditbrain(&socket, &["status", "--run", "no-such-run"])
        .await
        .expect(1);
    assert!(
        refused.stderr.contains("run_not_found"),
        "{}",
        refused.stderr
    );

    // History keeps the strategy: deletion is refused with the daemon's message.
    let refused = creditbrain(&socket, &["delete-strategy", "--id", strategy_id])
        .await
        .expect(1);
    assert!(
        refused
            .stderr
            .starts_with("creditbrain: strategy_has_runs: ")
            && refused.stderr.contains("pause it instead"),
        "{}",
        refused.stderr
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_run_exits_1_and_resumes_to_complete_and_the_kill_switch_blocks_runs() {
    let daemon = SandboxDaemon::start(6, &[("MAX_DAILY_RUNS", "0")]).await;
    let socket = daemon.socket_path();
    let strategy_id = daemon.strategy_id.as_str();

    // kill-switch status/on: both switches shown; on blocks the next run.
    let status = creditbrain(&socket, &["kill-switch", "status"])
        .await
        .expect(0);
    status.in_order(&[
        "kill switch: off",
        "environment (EXECUTION_KILL_SWITCH)",
        "off",
        "runtime (creditbrain kill-switch)",
        "off",
    ]);
    let on = creditbrain(&socket, &["kill-switch", "on", "--json"])
        .await
        .expect(0)
        .json();
    assert_eq!(on, json!({"env": false, "runtime": true, "engaged": true}));
    let blocked = creditbrain(&socket, &["run", "--strategy", strategy_id])
        .await
        .expect(1);
    let first = blocked.stderr.lines().next().unwrap();
    assert!(
        first.starts_with("creditbrain: kill_switch: run "),
        "{}",
        blocked.stderr
    );
    let blocked_id = blocked
        .stderr
        .lines()
        .find_map(|line| line.strip_prefix("  recorded run: "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the recorded run is named: {}", blocked.stderr))
        .to_string();
    let blocked_run = ops::get_run(&daemon.daemon.handle, &blocked_id)
        .await
        .unwrap();
    assert_eq!(
        (
            blocked_run.state.as_str(),
            blocked_run.error_code.as_deref()
        ),
        ("FAILED", Some("KILL_SWITCH"))
    );
    let blocked = creditbrain(&socket, &["run", "--strategy", strategy_id, "--json"])
        .await
        .expect(1)
        .json();
    assert_eq!(blocked["error"]["code"], "kill_switch");
    assert_eq!(blocked["error"]["runErrorCode"], "KILL_SWITCH");
    assert!(blocked["error"]["runId"].is_string());
    let status = creditbrain(&socket, &["status", "--run", &blocked_id])
        .await
        .expect(1);
    status.in_order(&[
        &format!("run {blocked_id} FAILED"),
        "KILL_SWITCH",
        "run_blocked",
    ]);
    assert!(!status.stderr.contains("--resume"), "{}", status.stderr);
    let refused = creditbrain(&socket, &["run", "--resume", &blocked_id])
        .await
        .expect(1);
    assert!(
        refused
            .stderr
            .starts_with("creditbrain: run_not_resumable: "),
        "{}",
        refused.stderr
    );
    let off = creditbrain(&socket, &["kill-switch", "off"])
        .await
        .expect(0);
    assert!(off.stdout.starts_with("kill switch: off"), "{}", off.stdout);

    // Helius refusing holder lookups: the run fails in ALLOCATING, exit 1, with a resume hint.
    daemon.sandbox.faults.add_rule(FaultRule {
        fake: "helius".into(),
        route: Some("getTokenAccounts".into()),
        latency: None,
        mode: Some(FaultMode::Always {
            fault: Fault::ServerError { status: 400 },
        }),
    });
    let failed = creditbrain(&socket, &["run", "--strategy", strategy_id])
        .await
        .expect(1);
    let run_id = started_run_id(&failed);
    failed.in_order(&[
        "→ CLAIMING",
        "→ SWAPPING",
        "→ ALLOCATING",
        "ALLOCATING → FAILED",
        "HOLDERS_UNAVAILABLE",
        &format!("run {run_id} FAILED"),
        "audit log:",
        "run_failed",
    ]);
    assert!(
        !failed.stdout.contains("→ PROVISIONING"),
        "{}",
        failed.stdout
    );
    assert!(
        failed.stderr.contains(&format!(
            "creditbrain: run_failed: run {run_id} FAILED at ALLOCATING: HOLDERS_UNAVAILABLE"
        )) && failed
            .stderr
            .contains(&format!("creditbrain run --resume {run_id}")),
        "{}",
        failed.stderr
    );

    // Fixed: the resume picks up at ALLOCATING and completes.
    daemon.sandbox.faults.clear(None);
    let resumed = creditbrain(&socket, &["run", "--resume", &run_id])
        .await
        .expect(0);
    resumed.in_order(&[
        &format!("run {run_id} resumed (ALLOCATING)"),
        "FAILED → ALLOCATING",
        "resumed (#1)",
        "ALLOCATING → PROVISIONING",
        "PROVISIONING → COMPLETE",
        &format!("run {run_id} COMPLETE"),
        "resumed",
        "1 time(s)",
        "audit log:",
        "run_failed",
        "run_resumed",
        "key_created",
    ]);
    assert!(!resumed.stdout.contains("→ CLAIMING"), "{}", resumed.stdout);
    let run = daemon.wait_for_end(&run_id).await;
    assert_eq!((run.state, run.resume_count), (RunState::Complete, 1));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_switch_off_says_when_the_environment_still_blocks_runs() {
    let daemon = SandboxDaemon::start(1, &[("EXECUTION_KILL_SWITCH", "true")]).await;
    let socket = daemon.socket_path();
    let status = creditbrain(&socket, &["kill-switch", "status"])
        .await
        .expect(0);
    status.in_order(&[
        "kill switch: ENGAGED",
        "EXECUTION_KILL_SWITCH",
        "on",
        "runtime",
        "off",
    ]);
    let off = creditbrain(&socket, &["kill-switch", "off", "--json"])
        .await
        .expect(1);
    assert_eq!(
        off.json(),
        json!({"env": true, "runtime": false, "engaged": true})
    );
    assert!(
        off.stderr
            .contains("EXECUTION_KILL_SWITCH=true still blocks every run"),
        "{}",
        off.stderr
    );
    daemon.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Pool, keys, reconcile

#[tokio::test(flavor = "multi_thread")]
async fn pool_keys_and_reconcile_show_the_ledger_and_exit_1_while_drift_remains() {
    let daemon = SandboxDaemon::start(5, &[]).await;
    let socket = daemon.socket_path();
    let handle = &daemon.daemon.handle;
    let started = ops::start_run(handle, &daemon.strategy_id, None, TriggeredBy::Manual)
        .await
        .unwrap();
    let run = daemon.wait_for_end(&started.run_id).await;
    assert_eq!(run.state, RunState::Complete);

    // pool-status, text and JSON, agreeing with the operations layer.
    let pool = ops::pool_status_view(handle).await.unwrap();
    let text = creditbrain(&socket, &["pool-status"]).await.expect(0);
    text.in_order(&[
        "credit pool",
        "balance",
        &usd(pool.balance_micro_usd),
        "promised",
        &usd(pool.promised_micro_usd),
        "reserve",
        &usd(pool.reserve_micro_usd),
        "10% of the balance",
        "open grants",
        "available",
        "runway",
    ]);
    let shown: PoolView = serde_json::from_value(
        creditbrain(&socket, &["pool-status", "--json"])
            .await
            .expect(0)
            .json(),
    )
    .unwrap();
    assert_eq!(shown.balance_micro_usd, pool.balance_micro_usd);
    assert_eq!(shown.promised_micro_usd, run.allocated_micro_usd.unwrap());
    assert_eq!(shown.reserve_bps, 1000);

    // list-keys: every key, never a plaintext.
    let keys = ops::list_keys(handle, None, None).await.unwrap();
    assert_eq!(keys.len() as u64, run.keys_created.unwrap());
    let text = creditbrain(&socket, &["list-keys"]).await.expect(0);
    for key in &keys {
        text.in_order(&[
            &key.key_hash,
            "active",
            &usd(key.limit_micro_usd),
            "awaiting",
            &key.holder_wallet,
        ]);
    }
    assert!(
        text.stdout
            .contains(&format!("{} key(s), {} active", keys.len(), keys.len())),
        "{}",
        text.stdout
    );
    let listed = creditbrain(
        &socket,
        &["list-keys", "--strategy", &daemon.strategy_id, "--json"],
    )
    .await
    .expect(0);
    let shown: Vec<KeyView> = serde_json::from_value(listed.json()).unwrap();
    assert_eq!(shown, keys);
    let one = &keys[0];
    let shown: Vec<KeyView> = serde_json::from_value(
        creditbrain(
            &socket,
            &["list-keys", "--wallet", &one.holder_wallet, "--json"],
        )
        .await
        .expect(0)
        .json(),
    )
    .unwrap();
    assert_eq!(shown, std::slice::from_ref(one));
    let none = creditbrain(&socket, &["list-keys", "--wallet", &wallet()])
        .await
        .expect(0);
    assert_eq!(none.stdout.trim_end(), "no keys");
    for output in [&text.stdout, &listed.stdout] {
        assert!(!output.contains("sk-or-v1-"), "a key leaked:\n{output}");
    }

    // reconcile: no drift → 0.
    let clean = creditbrain(&socket, &["reconcile"]).await.expect(0);
    clean.in_order(&[
        &format!(
            "reconcile (report only): {n} OpenRouter keys, {n} current ledger keys",
            n = keys.len()
        ),
        "missing",
        "limit mismatch",
        "no drift",
    ]);

    // Drift: a key's limit raised on OpenRouter behind the ledger's back → exit 1 until fixed.
    let response = reqwest::Client::new()
        .patch(format!(
            "{}/api/v1/keys/{}",
            daemon.sandbox.openrouter_url, one.key_hash
        ))
        .bearer_auth(&daemon.sandbox.openrouter_management_key)
        .json(&json!({ "limit": 77 }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let drift = creditbrain(&socket, &["reconcile"]).await.expect(1);
    drift.in_order(&[
        "limit mismatch",
        "1",
        &format!("key {}", one.key_hash),
        &format!("ledger limit {}", usd(one.limit_micro_usd)),
        "OpenRouter limit $77.00",
        "1 finding(s); `creditbrain reconcile --fix` repairs what it can",
    ]);
    let report = creditbrain(&socket, &["reconcile", "--json"])
        .await
        .expect(1)
        .json();
    assert_eq!(report["driftRemaining"], 1);
    assert_eq!(
        report["report"]["limitMismatch"][0]["keyHash"],
        one.key_hash.as_str()
    );
    assert_eq!(report["report"]["counts"]["limitMismatch"], 1);
    let fixed = creditbrain(&socket, &["reconcile", "--fix"])
        .await
        .expect(0);
    fixed.in_order(&[
        "reconcile (with --fix)",
        "limit mismatch",
        "→ fixed",
        "repairs: 1 fixed, 0 deferred, 0 skipped, 0 failed",
        "no drift",
    ]);
    let after = creditbrain(&socket, &["reconcile", "--json"])
        .await
        .expect(0)
        .json();
    assert_eq!(after["driftRemaining"], 0);
    daemon.stop().await;
}

// ---------------------------------------------------------------------------------------------
// No daemon, bad usage

#[tokio::test(flavor = "multi_thread")]
async fn without_a_daemon_every_command_exits_3_and_bad_usage_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let socket: PathBuf = dir.path().join("nobody.sock");
    for args in [
        vec!["list-strategies"],
        vec!["create-strategy", "--owner", "x"],
        vec!["run", "--strategy", "x"],
        vec!["run", "--resume", "x", "--detach"],
        vec!["status", "--run", "x"],
        vec!["pool-status"],
        vec!["list-keys"],
        vec!["kill-switch", "status"],
        vec!["reconcile", "--fix"],
    ] {
        let outcome = creditbrain(&socket, &args).await.expect(3);
        assert_eq!(
            outcome.stderr.lines().count(),
            1,
            "{args:?}: {}",
            outcome.stderr
        );
        assert!(
            outcome.stderr.starts_with(&format!(
                "creditbrain: no_daemon: no creditbrain daemon is listening on {}",
                socket.display()
            )),
            "{args:?}: {}",
            outcome.stderr
        );
        assert!(outcome.stdout.is_empty(), "{args:?}: {}", outcome.stdout);
    }
    let outcome = creditbrain(&socket, &["pool-status", "--json"])
        .await
        .expect(3);
    assert_eq!(outcome.json()["error"]["code"], "no_daemon");

    for args in [
        vec!["frobnicate"],
        vec!["run"],
        vec!["run", "--strategy", "a", "--resume", "b"],
        vec!["run", "--resume", "b", "--dry-run"],
        vec!["status"],
        vec!["status", "--run", "a", "--strategy", "b"],
        vec!["create-strategy"],
        vec![
            "create-strategy",
            "--owner",
            "x",
            "--weight",
            "no-equals-sign",
        ],
        vec!["update-strategy", "--top-n", "3"],
        vec![
            "update-strategy",
            "--id",
            "x",
            "--exclude",
            "w",
            "--clear-exclusions",
        ],
        vec!["update-strategy", "--id", "x"],
        vec!["kill-switch", "maybe"],
        vec!["delete-strategy"],
    ] {
        let outcome = creditbrain(&socket, &args).await.expect(2);
        assert!(!outcome.stderr.is_empty(), "{args:?}");
        assert!(outcome.stdout.is_empty(), "{args:?}: {}", outcome.stdout);
    }
}

/// `cancel-run`: a run that swapped and then failed in ALLOCATING is given up; its swapped USDC
/// goes to the carry-over (credits mode), it can no longer be resumed, and a second cancel or a
/// cancel of a run that did not fail is refused.
#[tokio::test(flavor = "multi_thread")]
async fn cancel_run_gives_up_a_failed_run_and_carries_its_income_over() {
    let daemon = SandboxDaemon::start(4, &[]).await;
    let socket = daemon.socket_path();
    let strategy_id = daemon.strategy_id.as_str();
    daemon.sandbox.faults.add_rule(FaultRule {
        fake: "helius".into(),
        route: Some("getTokenAccounts".into()),
        latency: None,
        mode: Some(FaultMode::Always {
            fault: Fault::ServerError { status: 400 },
        }),
    });
    let failed = creditbrain(&socket, &["run", "--strategy", strategy_id])
        .await
        .expect(1);
    let run_id = started_run_id(&failed);
    let run = daemon.wait_for_end(&run_id).await;
    let swapped = run.swapped_usdc_base_units.unwrap() as i64;
    assert!(swapped > 0);

    let usage = creditbrain(&socket, &["cancel-run", "--run", &run_id])
        .await
        .expect(2);
    assert!(usage.stderr.contains("--reason"), "{}", usage.stderr);
    let cancelled = creditbrain(
        &socket,
        &[
            "cancel-run",
            "--run",
            &run_id,
            "--reason",
            "helius outage",
            "--json",
        ],
    )
    .await
    .expect(0)
    .json();
    assert_eq!(cancelled["failedState"], "ALLOCATING");
    assert_eq!(cancelled["unallocatedMicroUsd"], swapped);
    assert_eq!(cancelled["carriedOverMicroUsd"], swapped);
    let strategy = ops::get_strategy(&daemon.daemon.handle, strategy_id)
        .await
        .unwrap();
    assert_eq!(strategy["carryOverMicroUsd"], swapped);

    let again = creditbrain(&socket, &["cancel-run", "--run", &run_id, "--reason", "x"])
        .await
        .expect(1);
    assert!(
        again
            .stderr
            .starts_with("creditbrain: run_not_cancellable: "),
        "{}",
        again.stderr
    );
    let resume = creditbrain(&socket, &["run", "--resume", &run_id])
        .await
        .expect(1);
    assert!(
        resume
            .stderr
            .starts_with("creditbrain: run_not_resumable: "),
        "{}",
        resume.stderr
    );
    daemon.sandbox.faults.clear(None);
    let done = creditbrain(
        &socket,
        &["run", "--strategy", strategy_id, "--detach", "--json"],
    )
    .await
    .expect(0)
    .json();
    let next = daemon.wait_for_end(done["runId"].as_str().unwrap()).await;
    assert_eq!(next.state, RunState::Complete);
    let text = creditbrain(
        &socket,
        &["cancel-run", "--run", &next.run_id, "--reason", "x"],
    )
    .await
    .expect(1);
    assert!(
        text.stderr.contains("only FAILED runs can be cancelled"),
        "{}",
        text.stderr
    );
    daemon.stop().await;
}
