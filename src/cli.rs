//! The command line: `serve` runs the daemon; the other commands talk to it over the admin socket
//! (and so need only ADMIN_SOCKET_PATH, never the daemon's secrets); `config check` validates.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

pub mod sandbox;

use crate::admin::client::{AdminClient, AdminClientError};
use crate::admin::protocol::{AdminRequest, AdminResponse, HealthReply};
use crate::config::{Config, ValueSource};
use creditbrain_actors::resilience::BreakerState;

/// Exit codes, documented in RUNBOOK.md.
pub mod exit {
    /// Success; for `health`, every dependency is up.
    pub const OK: i32 = 0;
    /// The command ran and the answer is bad (a dependency down), or the daemon failed.
    pub const FAILURE: i32 = 1;
    /// Invalid configuration or command line.
    pub const CONFIG: i32 = 2;
    /// No daemon answers on the admin socket.
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
    /// Dependency health from the running daemon (exit 1 when a dependency is down).
    Health {
        /// Print the runbook's readiness JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
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
            println!("configuration is valid:");
            for row in rows {
                let source = match row.source {
                    ValueSource::Default => "default",
                    ValueSource::Env => "env",
                    ValueSource::DotEnv => ".env",
                };
                println!("  {:width$}  {}  ({source})", row.name, row.value);
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
    let reply = match request(socket, AdminRequest::Health).await {
        Ok(AdminResponse::Health(reply)) => reply,
        Ok(other) => return unexpected(other),
        Err(code) => return code,
    };
    if json {
        println!(
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
    println!(
        "status: {} (uptime {} s)",
        readiness.status, readiness.uptime
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
        println!(
            "  {name:<11} {state:<5} {:>5} ms{error}",
            detail.response_time_ms
        );
    }
    match &reply.report.checked_at {
        Some(at) => println!(
            "checked at {}",
            creditbrain_actors::store::format_timestamp(*at)
        ),
        None => println!("no probe has completed yet"),
    }
    println!("integrations:");
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
        println!(
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
        println!("actor restarts: {}", restarts.join(", "));
    }
}

/// Connects, sends one request, and turns every failure into a printed line and an exit code.
async fn request(socket: &Path, request: AdminRequest) -> Result<AdminResponse, i32> {
    let outcome = async {
        let mut client = AdminClient::connect(socket).await?;
        client.request(&request).await
    }
    .await;
    outcome.map_err(|error| {
        eprintln!("creditbrain: {error}");
        match error {
            AdminClientError::NoDaemon(_) => exit::NO_DAEMON,
            _ => exit::FAILURE,
        }
    })
}

fn unexpected(reply: AdminResponse) -> i32 {
    eprintln!("creditbrain: the daemon sent an unexpected reply: {reply:?}");
    exit::FAILURE
}
