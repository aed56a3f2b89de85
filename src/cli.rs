//! The command line: `serve` runs the daemon; the other commands talk to it over the admin socket
//! (and so need only ADMIN_SOCKET_PATH, never the daemon's secrets); `config check` validates.
//! The runbook's command names; each client command prints text for a person or, with `--json`,
//! the daemon's JSON views.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

/// `println!` for command output: when the reader goes away (`creditbrain list-keys | head`) the
/// command ends quietly instead of panicking on the broken pipe.
macro_rules! out {
    () => {
        $crate::cli::print_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::print_line(format_args!($($arg)*))
    };
}

pub mod format;
pub mod keys;
pub mod kill_switch;
pub mod pool;
pub mod runs;
pub mod sandbox;
pub mod session;
pub mod strategies;

use crate::admin::protocol::{AdminRequest, AdminResponse, HealthReply};
use crate::config::{Config, ValueSource};
use creditbrain_actors::resilience::BreakerState;
use session::{OutputArgs, unexpected};

/// Exit codes, documented in RUNBOOK.md.
pub mod exit {
    /// Success: the command did what was asked and the answer is good (every dependency up, the
    /// run COMPLETE, no drift left).
    pub const OK: i32 = 0;
    /// The command ran and the answer is bad (a dependency down, a run FAILED, drift remains),
    /// or the daemon refused the request (unknown id, invalid strategy, blocked by policy) or
    /// failed; stderr says which, with the daemon's code.
    pub const FAILURE: i32 = 1;
    /// Invalid configuration or command line.
    pub const CONFIG: i32 = 2;
    /// No daemon answers on the admin socket (or it went away mid-command).
    pub const NO_DAEMON: i32 = 3;
}

#[derive(Parser, Debug)]
#[command(
    name = "creditbrain",
    version,
    about = "Turns Bags.fm creator fees into OpenRouter credits for a token's holders"
)]
pub struct Cli {
    /// The daemon's admin socket (default: ADMIN_SOCKET_PATH, else ./data/creditbrain.sock).
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon: HTTP API, admin socket, scheduler and actors.
    Serve,
    /// Run the daemon against local fakes of Bags, Solana RPC, Helius and OpenRouter, with a
    /// seeded strategy: the whole loop without accounts or money.
    Sandbox(sandbox::SandboxArgs),
    /// Create a strategy (one token community); prints it with its id.
    CreateStrategy(strategies::CreateArgs),
    /// List strategies.
    ListStrategies(strategies::ListArgs),
    /// Change a strategy: only the options given change.
    UpdateStrategy(strategies::UpdateArgs),
    /// Delete a strategy without run history (pause one with history instead).
    DeleteStrategy(strategies::DeleteArgs),
    /// Start a run (or resume a FAILED one) and follow it until it ends (exit 0 only when it
    /// ends COMPLETE).
    Run(runs::RunArgs),
    /// Give up a FAILED run for good: its grants not yet applied are released (carried over to
    /// the next run in credits mode) and it can no longer be resumed.
    CancelRun(runs::CancelArgs),
    /// A run's state, amounts, error and phase audit log, or a strategy's recent runs (exit 1
    /// when the run, or the strategy's latest run, FAILED).
    Status(runs::StatusArgs),
    /// The credit pool: balance, promised, reserve, open grants, available, runway.
    PoolStatus {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Dependency health from the running daemon (exit 1 when a dependency is down).
    Health {
        /// Print the runbook's readiness JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Holders' keys with limits and usage (never a plaintext key).
    ListKeys(keys::ListKeysArgs),
    /// The runtime kill switch: on, off or status (exit 1 after `off` while
    /// EXECUTION_KILL_SWITCH still blocks runs).
    KillSwitch(kill_switch::KillSwitchArgs),
    /// Compare the key ledger with OpenRouter; --fix repairs what it can (exit 1 while drift
    /// remains).
    Reconcile(keys::ReconcileArgs),
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate the environment (and ./.env); print the effective configuration with secrets
    /// redacted, or every problem found.
    Check,
}

/// Writes one line to stdout; a closed stdout ends the process with [`exit::FAILURE`] (the output
/// was not delivered), any other write error too, after saying so.
pub fn print_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout
        .write_fmt(line)
        .and_then(|()| stdout.write_all(b"\n"))
    {
        if error.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("creditbrain: stdout: {error}");
        }
        std::process::exit(exit::FAILURE);
    }
}

impl Cli {
    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(crate::config::socket_path_from_env)
    }
}

/// `creditbrain config check`.
pub fn config_check() -> i32 {
    match Config::load() {
        Ok(config) => {
            let rows = config.describe();
            let width = rows.iter().map(|row| row.name.len()).max().unwrap_or(0);
            out!("configuration is valid:");
            for row in rows {
                let source = match row.source {
                    ValueSource::Default => "default",
                    ValueSource::Env => "env",
                    ValueSource::DotEnv => ".env",
                };
                out!("  {:width$}  {}  ({source})", row.name, row.value);
            }
            exit::OK
        }
        Err(errors) => {
            eprintln!("{errors}");
            exit::CONFIG
        }
    }
}

/// `creditbrain health`.
pub async fn health(socket: &Path, json: bool) -> i32 {
    let reply = match session::request(socket, json, AdminRequest::Health).await {
        Ok(AdminResponse::Health(reply)) => reply,
        Ok(other) => return unexpected(&other, json),
        Err(code) => return code,
    };
    if json {
        out!(
            "{}",
            serde_json::to_string_pretty(&reply.readiness).expect("readiness serializes")
        );
    } else {
        print_health(&reply);
    }
    if reply.readiness.is_ready() {
        exit::OK
    } else {
        exit::FAILURE
    }
}

fn print_health(reply: &HealthReply) {
    let readiness = &reply.readiness;
    out!(
        "status: {} (uptime {} s)",
        readiness.status,
        readiness.uptime
    );
    let dependencies = [
        (
            "database",
            readiness.dependencies.database,
            &reply.report.database,
        ),
        (
            "openrouter",
            readiness.dependencies.openrouter,
            &reply.report.openrouter,
        ),
    ];
    for (name, up, detail) in dependencies {
        let state = if up { "up" } else { "DOWN" };
        let error = detail
            .error
            .as_deref()
            .map(|e| format!("  {e}"))
            .unwrap_or_default();
        out!(
            "  {name:<11} {state:<5} {:>5} ms{error}",
            detail.response_time_ms
        );
    }
    match &reply.report.checked_at {
        Some(at) => out!(
            "checked at {}",
            creditbrain_actors::store::format_timestamp(*at)
        ),
        None => out!("no probe has completed yet"),
    }
    out!("integrations:");
    for breaker in &reply.breakers {
        let state = match breaker.state {
            BreakerState::Closed => "closed",
            BreakerState::Open => "OPEN",
            BreakerState::HalfOpen => "half-open",
        };
        let last_error = breaker
            .last_error
            .as_deref()
            .map(|error| format!("  last error: {error}"))
            .unwrap_or_default();
        out!(
            "  {:<11} {:<9} {} requests, {} failures, {} rejected{last_error}",
            breaker.integration.as_str(),
            state,
            breaker.requests,
            breaker.failures,
            breaker.rejected
        );
    }
    let restarts: Vec<String> = reply
        .restarts
        .iter()
        .map(|(role, n)| format!("{role}={n}"))
        .collect();
    if !restarts.is_empty() {
        out!("actor restarts: {}", restarts.join(", "));
    }
}
