//! `run` (start or resume a run, then follow it phase by phase until it ends) and `status` (a run
//! with its phase log, or a strategy with its recent runs).
//!
//! Following a run polls the cheap run row; when its state changes, the run's audit log is read
//! and every transition recorded since (`run_created`, `state_advanced`, `run_failed`,
//! `run_resumed`) is printed with the daemon's timestamp. A phase shorter than the poll interval
//! is therefore still shown, in order, at the time it really happened.

use std::path::Path;
use std::time::Duration;

use clap::{ArgGroup, Args};
use serde::Serialize;
use serde_json::Value;

use super::exit;
use super::format::{self, Table, or_dash, print_fields, print_json, print_json_line};
use super::session::{OutputArgs, Session, report, request, unexpected};
use super::strategies::{strategy_fields, text};
use crate::admin::client::AdminClientError;
use crate::admin::protocol::{AdminRequest, AdminResponse};
use crate::ops::{AuditView, RunDetail, RunStarted, RunView, StrategyStatusView};

/// How often a followed run is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// `creditbrain run`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("target").required(true).args(["strategy", "resume"])))]
pub struct RunArgs {
    /// Start a new run of this strategy.
    #[arg(long, value_name = "STRATEGY_ID")]
    pub strategy: Option<String>,
    /// Resume this FAILED run at the phase that failed.
    #[arg(long, value_name = "RUN_ID")]
    pub resume: Option<String>,
    /// Walk every phase without side effects (default: DRY_RUN).
    #[arg(long, conflicts_with = "resume")]
    pub dry_run: bool,
    /// Print the run id and return at once; the run goes on in the daemon.
    #[arg(long)]
    pub detach: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `creditbrain status`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("target").required(true).args(["run", "strategy"])))]
pub struct StatusArgs {
    /// A run: state, timestamps, amounts, error, transactions and the full phase audit log.
    #[arg(long, value_name = "RUN_ID")]
    pub run: Option<String>,
    /// A strategy: its settings, recent runs and the latest run's audit log.
    #[arg(long, value_name = "STRATEGY_ID")]
    pub strategy: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// One line of `run --json` while following a run.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum RunEvent<'a> {
    /// The daemon recorded the run (or its resume).
    Started {
        #[serde(rename = "runId")]
        run_id: &'a str,
        state: &'a str,
        resumed: bool,
    },
    /// One state change, from the run's audit log.
    Transition {
        #[serde(rename = "runId")]
        run_id: &'a str,
        at: &'a str,
        from: Option<&'a str>,
        to: &'a str,
        #[serde(rename = "auditId")]
        audit_id: i64,
        details: &'a Value,
    },
    /// The run ended: the whole detail (run, audit, transactions, allocations).
    Finished(&'a RunDetail),
}

/// `creditbrain run --strategy <id> | --resume <run-id>`: exit 0 only when the run ends
/// COMPLETE (or, with `--detach`, once it is recorded).
pub async fn run(socket: &Path, args: &RunArgs) -> i32 {
    let json = args.output.json;
    let mut session = match Session::connect(socket, json).await {
        Ok(session) => session,
        Err(code) => return code,
    };
    let resumed = args.resume.is_some();
    let request = match (&args.strategy, &args.resume) {
        (Some(strategy_id), _) => AdminRequest::StartRun {
            strategy_id: strategy_id.clone(),
            dry_run: args.dry_run.then_some(true),
        },
        (None, Some(run_id)) => AdminRequest::ResumeRun {
            run_id: run_id.clone(),
        },
        (None, None) => unreachable!("clap requires --strategy or --resume"),
    };
    let started = match session.call(request).await {
        Ok(AdminResponse::RunStarted(started)) => started,
        Ok(other) => return unexpected(&other, json),
        Err(code) => return code,
    };
    announce(&started, resumed, args.detach, json);
    if args.detach {
        return exit::OK;
    }
    follow(&mut session, &started.run_id, resumed).await
}

fn announce(started: &RunStarted, resumed: bool, detach: bool, json: bool) {
    let RunStarted { run_id, state } = started;
    if json {
        let event = RunEvent::Started {
            run_id,
            state,
            resumed,
        };
        if detach {
            print_json(&event);
        } else {
            print_json_line(&event);
        }
        return;
    }
    let verb = if resumed { "resumed" } else { "started" };
    if detach {
        out!("run {run_id} {verb} ({state}); follow it with: creditbrain status --run {run_id}");
    } else {
        out!("run {run_id} {verb} ({state}); Ctrl-C stops watching, not the run");
    }
}

/// Follows a run until it ends, printing each transition, then its summary and audit log.
async fn follow(session: &mut Session, run_id: &str, resumed: bool) -> i32 {
    let mut printed = Printed::default();
    let mut seen_state: Option<String> = None;
    loop {
        let run = match poll(
            session,
            AdminRequest::GetRun {
                run_id: run_id.into(),
            },
            run_id,
        )
        .await
        {
            Ok(Some(AdminResponse::Run(run))) => Some(run),
            Ok(Some(other)) => return unexpected(&other, session.json()),
            Ok(None) => None,
            Err(code) => return code,
        };
        let changed = run.as_ref().is_some_and(|run| {
            seen_state.as_deref() != Some(run.state.as_str()) || run.is_terminal()
        });
        if changed {
            let request = AdminRequest::RunDetail {
                run_id: run_id.into(),
            };
            match poll(session, request, run_id).await {
                Ok(Some(AdminResponse::RunDetail(detail))) => {
                    printed.transitions(&detail, resumed, session.json());
                    seen_state = Some(detail.run.state.clone());
                    if detail.run.is_terminal() {
                        return finish(&detail, session.json());
                    }
                }
                Ok(Some(other)) => return unexpected(&other, session.json()),
                Ok(None) => {}
                Err(code) => return code,
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// One poll while following a run: `None` when the daemon was briefly busy (try again).
async fn poll(
    session: &mut Session,
    request: AdminRequest,
    run_id: &str,
) -> Result<Option<AdminResponse>, i32> {
    match session.try_call(request).await {
        Ok(reply) => Ok(Some(reply)),
        Err(AdminClientError::Refused { code, .. }) if code == "database_locked" => Ok(None),
        Err(error @ AdminClientError::Refused { .. }) => Err(report(&error, session.json())),
        Err(error) => Err(lost(&error, run_id, session.json())),
    }
}

/// The daemon stopped answering while we followed a run: the run is safe in the database and
/// its worker picks it up again with the daemon, so say how to find it.
fn lost(error: &AdminClientError, run_id: &str, json: bool) -> i32 {
    let code = report(error, json);
    eprintln!(
        "  run {run_id} was in progress; the daemon resumes it when it is back: creditbrain status --run {run_id}"
    );
    code
}

/// Which transitions of a followed run are printed already.
#[derive(Default)]
struct Printed {
    /// The audit id of the last transition printed.
    last_id: Option<i64>,
}

impl Printed {
    fn transitions(&mut self, detail: &RunDetail, resumed: bool, json: bool) {
        // A resume shows what happens from the resume on, not the first attempt again.
        let origin = if resumed {
            "run_resumed"
        } else {
            "run_created"
        };
        let first_id = detail
            .audit
            .iter()
            .rev()
            .find(|row| row.action == origin)
            .map(|row| row.id)
            .unwrap_or(i64::MIN);
        let start = self.last_id.map_or(first_id, |last| last.saturating_add(1));
        for row in detail.audit.iter().filter(|row| row.id >= start) {
            if let Some(transition) = Transition::of(row) {
                transition.print(&detail.run.run_id, row, json);
                self.last_id = Some(row.id);
            }
        }
    }
}

/// A state change read from one audit row.
struct Transition<'a> {
    from: Option<&'a str>,
    to: &'a str,
    note: String,
}

impl<'a> Transition<'a> {
    fn of(row: &'a AuditView) -> Option<Self> {
        let details = &row.details;
        let field = |key: &str| details.get(key).and_then(Value::as_str);
        match row.action.as_str() {
            "run_created" => Some(Self {
                from: None,
                to: "PENDING",
                note: format!(
                    "run created ({}{})",
                    field("triggeredBy").unwrap_or("?"),
                    if details["dryRun"] == true {
                        ", dry run"
                    } else {
                        ""
                    }
                ),
            }),
            "state_advanced" => Some(Self {
                from: field("from"),
                to: field("to")?,
                note: outputs(&details["outputs"]),
            }),
            "run_failed" => Some(Self {
                from: field("failedState"),
                to: "FAILED",
                note: format!(
                    "{}: {}",
                    field("code").unwrap_or("?"),
                    field("detail").unwrap_or("")
                ),
            }),
            "run_blocked" => Some(Self {
                from: None,
                to: "FAILED",
                note: format!("blocked by policy: {}", field("code").unwrap_or("?")),
            }),
            "run_resumed" => Some(Self {
                from: Some("FAILED"),
                to: field("resumeAt")?,
                note: format!("resumed (#{})", details["resumeCount"]),
            }),
            _ => None,
        }
    }

    fn print(&self, run_id: &str, row: &AuditView, json: bool) {
        if json {
            print_json_line(&RunEvent::Transition {
                run_id,
                at: &row.created_at,
                from: self.from,
                to: self.to,
                audit_id: row.id,
                details: &row.details,
            });
        } else {
            let from = self.from.unwrap_or("");
            out!(
                "{}  {from:>12} → {:<12}  {}",
                row.created_at,
                self.to,
                self.note
            );
        }
    }
}

/// A phase's outputs in their units: `claimed 6 SOL, swapped 823.45 USDC`.
fn outputs(outputs: &Value) -> String {
    outputs
        .as_object()
        .map(|fields| {
            fields
                .iter()
                .filter(|(_, value)| !value.is_null())
                .map(|(name, value)| format::labelled_amount(name, value))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// The end of a followed run: its summary and audit log; exit 0 only when COMPLETE.
fn finish(detail: &RunDetail, json: bool) -> i32 {
    if json {
        print_json_line(&RunEvent::Finished(detail));
    } else {
        out!();
        print_run_detail(detail);
    }
    run_exit(&detail.run)
}

/// 0 when COMPLETE (or still going), 1 when FAILED, with the error on stderr (the JSON output
/// carries the error columns already).
fn run_exit(run: &RunView) -> i32 {
    if run.state != "FAILED" {
        return exit::OK;
    }
    let code = run.error_code.as_deref().unwrap_or("UNKNOWN");
    let failed_at = run.error_failed_state.as_deref().unwrap_or("?");
    eprintln!(
        "creditbrain: run_failed: run {} FAILED at {failed_at}: {code}: {}",
        run.run_id,
        run.error_detail.as_deref().unwrap_or("")
    );
    if run.skipped_reason.as_deref() != Some("blocked_by_policy") {
        eprintln!(
            "  after fixing the cause: creditbrain run --resume {}",
            run.run_id
        );
    }
    exit::FAILURE
}

/// `creditbrain status --run <id> | --strategy <id>`: exit 1 when the run (or the strategy's
/// latest run) FAILED, so a script can tell without parsing.
pub async fn status(socket: &Path, args: &StatusArgs) -> i32 {
    let json = args.output.json;
    match (&args.run, &args.strategy) {
        (Some(run_id), _) => {
            let request_message = AdminRequest::RunDetail {
                run_id: run_id.clone(),
            };
            let detail = match request(socket, json, request_message).await {
                Ok(AdminResponse::RunDetail(detail)) => detail,
                Ok(other) => return unexpected(&other, json),
                Err(code) => return code,
            };
            if json {
                print_json(&detail);
            } else {
                print_run_detail(&detail);
            }
            run_exit(&detail.run)
        }
        (None, Some(strategy_id)) => {
            let request_message = AdminRequest::StrategyStatus {
                strategy_id: strategy_id.clone(),
            };
            let status = match request(socket, json, request_message).await {
                Ok(AdminResponse::StrategyStatus(status)) => status,
                Ok(other) => return unexpected(&other, json),
                Err(code) => return code,
            };
            if json {
                print_json(&status);
            } else {
                print_strategy_status(&status);
            }
            match status.runs.first() {
                Some(latest) => run_exit(latest),
                None => exit::OK,
            }
        }
        (None, None) => unreachable!("clap requires --run or --strategy"),
    }
}

/// A run's summary, transactions, allocations and full audit log.
fn print_run_detail(detail: &RunDetail) {
    let run = &detail.run;
    let dry = if run.dry_run { " (dry run)" } else { "" };
    out!("run {} {}{dry}", run.run_id, run.state);
    print_fields(&run_fields(run));
    if !detail.transactions.is_empty() {
        out!("transactions:");
        let mut table = Table::new(&[
            "PHASE",
            "PURPOSE",
            "ATTEMPT",
            "STATUS",
            "SLOT",
            "CREATED",
            "SIGNATURE",
        ]);
        for tx in &detail.transactions {
            let status = match &tx.error {
                Some(error) => format!("{} ({error})", tx.status),
                None => tx.status.clone(),
            };
            table.row(vec![
                tx.phase.clone(),
                tx.purpose.clone(),
                tx.attempt.to_string(),
                status,
                or_dash(tx.slot, |slot| slot.to_string()),
                tx.created_at.clone(),
                tx.signature.clone(),
            ]);
        }
        table.print(2);
    }
    if !detail.allocations.is_empty() {
        let counts: Vec<String> = detail
            .allocations
            .iter()
            .map(|(status, count)| format!("{count} {status}"))
            .collect();
        out!("allocations: {}", counts.join(", "));
    }
    print_audit("audit log", &detail.audit);
}

fn run_fields(run: &RunView) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("strategy", run.strategy_id.clone()),
        ("triggered by", run.triggered_by.clone()),
        ("started", run.started_at.clone()),
        ("finished", or_dash(run.finished_at.clone(), |at| at)),
        ("updated", run.updated_at.clone()),
    ];
    if run.resume_count > 0 {
        rows.push(("resumed", format!("{} time(s)", run.resume_count)));
    }
    rows.extend([
        ("claimed", or_dash(run.claimed_lamports, format::sol)),
        ("swapped in", or_dash(run.swap_in_lamports, format::sol)),
        (
            "swapped out",
            or_dash(run.swapped_usdc_base_units, format::usdc),
        ),
        ("carry-in", or_dash(run.carry_in_micro_usd, format::usd)),
        ("budget", or_dash(run.budget_micro_usd, format::usd)),
        (
            "pool headroom",
            or_dash(run.headroom_micro_usd, format::usd),
        ),
        ("allocated", or_dash(run.allocated_micro_usd, format::usd)),
        ("carry-over", or_dash(run.carry_out_micro_usd, format::usd)),
        ("holders", or_dash(run.holders_count, |n| n.to_string())),
        (
            "keys",
            format!(
                "{} created, {} updated, {} failed",
                or_dash(run.keys_created, |n| n.to_string()),
                or_dash(run.keys_updated, |n| n.to_string()),
                or_dash(run.keys_failed, |n| n.to_string())
            ),
        ),
    ]);
    if let Some(reason) = &run.skipped_reason {
        rows.push(("skipped", reason.clone()));
    }
    if let Some(code) = &run.error_code {
        rows.push((
            "error",
            format!(
                "{code} at {}: {}",
                run.error_failed_state.as_deref().unwrap_or("?"),
                run.error_detail.as_deref().unwrap_or("")
            ),
        ));
    }
    rows
}

fn print_audit(heading: &str, audit: &[AuditView]) {
    if audit.is_empty() {
        out!("{heading}: empty");
        return;
    }
    out!("{heading}:");
    let mut table = Table::new(&["TIME", "PHASE", "ACTION", "ACTOR", "DETAILS"]);
    for row in audit {
        let mut details = match &row.details {
            Value::Null => String::new(),
            Value::Object(map) if map.is_empty() => String::new(),
            other => other.to_string(),
        };
        if let Some(signature) = &row.tx_signature {
            details = format!("tx {signature} {details}");
        }
        table.row(vec![
            row.created_at.clone(),
            row.phase.clone().unwrap_or_default(),
            row.action.clone(),
            row.actor.clone().unwrap_or_default(),
            details.trim_end().to_string(),
        ]);
    }
    table.print(2);
}

fn print_strategy_status(status: &StrategyStatusView) {
    let strategy = &status.strategy;
    out!("strategy {}", text(strategy, "strategyId"));
    print_fields(&strategy_fields(strategy));
    if status.runs.is_empty() {
        out!("no runs yet");
        return;
    }
    out!("recent runs (newest first):");
    let mut table = Table::new(&[
        "RUN",
        "STATE",
        "TRIGGER",
        "STARTED",
        "FINISHED",
        "ALLOCATED",
        "KEYS C/U/F",
        "ERROR",
    ]);
    for run in &status.runs {
        let state = if run.dry_run {
            format!("{} (dry)", run.state)
        } else {
            run.state.clone()
        };
        table.row(vec![
            run.run_id.clone(),
            state,
            run.triggered_by.clone(),
            run.started_at.clone(),
            or_dash(run.finished_at.clone(), |at| at),
            or_dash(run.allocated_micro_usd, format::usd),
            format!(
                "{}/{}/{}",
                or_dash(run.keys_created, |n| n.to_string()),
                or_dash(run.keys_updated, |n| n.to_string()),
                or_dash(run.keys_failed, |n| n.to_string())
            ),
            or_dash(run.error_code.clone(), |code| code),
        ]);
    }
    table.print(2);
    if let Some(latest) = status.runs.first() {
        print_audit(
            &format!("audit log of the latest run {}", latest.run_id),
            &status.latest_audit,
        );
    }
}

/// `creditbrain cancel-run`.
#[derive(Args, Debug)]
pub struct CancelArgs {
    /// The FAILED run to give up.
    #[arg(long = "run", value_name = "RUN_ID")]
    pub run_id: String,
    /// Why (kept in the audit log).
    #[arg(long)]
    pub reason: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub async fn cancel_run(socket: &Path, args: &CancelArgs) -> i32 {
    let json = args.output.json;
    let message = AdminRequest::CancelRun {
        run_id: args.run_id.clone(),
        reason: args.reason.clone(),
    };
    let cancelled = match request(socket, json, message).await {
        Ok(AdminResponse::RunCancelled(cancelled)) => cancelled,
        Ok(other) => return unexpected(&other, json),
        Err(code) => return code,
    };
    if json {
        print_json(&cancelled);
        return exit::OK;
    }
    out!(
        "run {} cancelled (it had failed in {})",
        cancelled.run_id,
        cancelled.failed_state
    );
    print_fields(&[
        ("grants released", cancelled.skipped_allocations.to_string()),
        ("released", format::usd(cancelled.released_micro_usd)),
        (
            "swapped, never allocated",
            format::usd(cancelled.unallocated_micro_usd),
        ),
        (
            "carried over",
            format::usd(cancelled.carried_over_micro_usd),
        ),
    ]);
    if cancelled.unswapped_lamports > 0 {
        out!(
            "note: {} claimed but never swapped stays in the signer wallet",
            format::sol(cancelled.unswapped_lamports)
        );
    }
    exit::OK
}
