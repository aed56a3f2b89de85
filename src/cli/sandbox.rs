//! `creditbrain sandbox`: starts every fake on loopback, seeds a world and a strategy, and runs the
//! real daemon (the same `daemon::start` as `serve`) pointed at the fakes.
//!
//! Its stdout carries exactly one line, the ready line (JSON with every URL and credential a user
//! or a test needs); logs go to stderr so `creditbrain sandbox | head -1` works.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use creditbrain_actors::store::strategies::NewStrategy;
use serde_json::json;
use solana_sdk::signature::Signer;

use super::exit;
use crate::config::Config;
use crate::daemon::ShutdownSignals;
use crate::sandbox::faults::FaultRule;
use crate::sandbox::ledger::LedgerOptions;
use crate::sandbox::world::WorldOptions;
use crate::sandbox::{Sandbox, SandboxOptions, random_hex};

#[derive(Args, Debug, Clone)]
pub struct SandboxArgs {
    /// Run one pipeline for the seeded strategy, print its summary and exit (0 only if it completed).
    #[arg(long)]
    pub once: bool,
    /// Wallets holding the seeded token.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub holders: u32,
    /// Seeds the holder distribution: the same seed builds the same balances.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Milliseconds per Solana slot (mainnet: about 400).
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub slot_ms: u64,
    /// A fault or latency rule active from the start, as the control API's JSON, e.g.
    /// '{"fake":"bags","route":"GET /api/v1/trade/quote","mode":{"mode":"script","steps":[{"kind":"rate_limited","retry_after_secs":2},null]}}'.
    /// Repeatable. Rules can also be set and cleared at runtime: POST/DELETE <control_url>/_sandbox/faults.
    #[arg(long = "fault", value_name = "JSON", value_parser = parse_fault_rule)]
    pub faults: Vec<FaultRule>,
}

/// Parses and validates one `--fault` rule, so a typo stops the sandbox before it starts.
fn parse_fault_rule(text: &str) -> Result<FaultRule, String> {
    let rule: FaultRule =
        serde_json::from_str(text).map_err(|error| format!("not a fault rule: {error}"))?;
    rule.validate().map_err(|error| error.to_string())?;
    Ok(rule)
}

/// Variables the sandbox takes from the environment; everything else it sets itself, so a
/// production `.env` in the working directory can never leak into it.
const HONOURED: [&str; 6] = [
    "DATABASE_PATH",
    "ADMIN_SOCKET_PATH",
    "PORT",
    "HOST",
    "LOG_LEVEL",
    // A load test (`scripts/load`) sends everything from one address.
    "API_RATE_LIMIT_PER_MIN",
];

/// The sandbox's own database when DATABASE_PATH is not set: separate from a real daemon's, and
/// recreated at every start because the fakes' world is new every time.
const DEFAULT_SANDBOX_DATABASE: &str = "./data/sandbox/creditbrain.db";

pub async fn run(args: &SandboxArgs) -> i32 {
    let environment: BTreeMap<String, String> = HONOURED
        .iter()
        .filter_map(|name| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
                .map(|value| (name.to_string(), value))
        })
        .collect();
    run_with(args, environment).await
}

/// [`run`] with the honoured variables passed in.
pub async fn run_with(args: &SandboxArgs, environment: BTreeMap<String, String>) -> i32 {
    let sandbox = match Sandbox::start(SandboxOptions {
        world: WorldOptions {
            holders: args.holders as usize,
            seed: args.seed,
            ..WorldOptions::default()
        },
        ledger: LedgerOptions {
            slot_duration: Duration::from_millis(args.slot_ms),
            ..LedgerOptions::default()
        },
        ..SandboxOptions::default()
    })
    .await
    {
        Ok(sandbox) => sandbox,
        Err(error) => {
            eprintln!("creditbrain: the sandbox could not start its fakes: {error}");
            return exit::FAILURE;
        }
    };

    for rule in &args.faults {
        sandbox.faults.add_rule(rule.clone());
    }

    let mut vars = sandbox.daemon_vars();
    vars.insert("API_AUTH_TOKEN".into(), random_hex(24));
    // Loopback only: the sandbox is for the person at this machine.
    vars.insert("HOST".into(), "127.0.0.1".into());
    vars.insert("HEALTH_PROBE_INTERVAL_SEC".into(), "5".into());
    if !environment.contains_key("DATABASE_PATH") {
        let path = PathBuf::from(DEFAULT_SANDBOX_DATABASE);
        if let Err(error) = remove_database_files(&path) {
            eprintln!(
                "creditbrain: cannot reset the sandbox database {}: {error}",
                path.display()
            );
            return exit::FAILURE;
        }
        vars.insert("DATABASE_PATH".into(), DEFAULT_SANDBOX_DATABASE.into());
    }
    vars.extend(environment);
    let config = match Config::from_vars(&vars) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("creditbrain: cannot start the sandbox, {errors}");
            return exit::CONFIG;
        }
    };
    crate::telemetry::init_stderr(config.log_level.as_str());
    let signals = match ShutdownSignals::install() {
        Ok(signals) => signals,
        Err(error) => {
            tracing::error!(err.message = %error, "cannot install signal handlers");
            return exit::FAILURE;
        }
    };

    let daemon = match crate::daemon::start(&config).await {
        Ok(daemon) => daemon,
        Err(error) => {
            tracing::error!(err.message = %error, "sandbox daemon failed to start");
            return exit::FAILURE;
        }
    };
    let strategy = match daemon
        .handle
        .store
        .insert_strategy(&seeded_strategy(&sandbox, &config))
        .await
    {
        Ok(strategy) => strategy,
        Err(error) => {
            tracing::error!(err.message = %error, "seeding the sandbox strategy failed");
            daemon.shutdown_trigger().trigger();
            let _ = daemon.wait().await;
            return exit::FAILURE;
        }
    };

    let ready = json!({
        "api_url": format!("http://{}", daemon.http_addr),
        "api_token": vars["API_AUTH_TOKEN"],
        "admin_socket": config.admin_socket_path.display().to_string(),
        "database_path": config.database_path.display().to_string(),
        "control_url": sandbox.control_url,
        "strategy_id": strategy.strategy_id,
        "signer": sandbox.world.signer.pubkey().to_string(),
        "token_mint": sandbox.world.token_mint.to_string(),
        "bags_url": format!("{}/api/v1", sandbox.bags_url),
        "bags_api_key": sandbox.bags_api_key,
        "rpc_url": sandbox.rpc_url,
        "helius_url": vars["HELIUS_RPC_URL"],
        "openrouter_url": format!("{}/api/v1", sandbox.openrouter_url),
        "openrouter_management_key": sandbox.openrouter_management_key,
    });
    println!("{ready}");
    tracing::info!(strategyId = %strategy.strategy_id, "sandbox ready");

    if args.once {
        let code = run_once(&daemon, &strategy.strategy_id).await;
        daemon.shutdown_trigger().trigger();
        let _ = daemon.wait().await;
        return code;
    }
    match daemon.run_until_signalled(signals).await {
        Ok(()) => exit::OK,
        Err(error) => {
            tracing::error!(err.message = %error, "sandbox daemon stopped on a failure");
            exit::FAILURE
        }
    }
}

/// The strategy the sandbox seeds: the world's owner and token, the environment's defaults.
fn seeded_strategy(sandbox: &Sandbox, config: &Config) -> NewStrategy {
    NewStrategy {
        owner_wallet: sandbox.world.signer.pubkey().to_string(),
        token_mint: sandbox.world.token_mint.to_string(),
        fee_source: config.fee_source.as_str().to_string(),
        threshold_lamports: i64::try_from(config.fee_threshold_lamports).unwrap_or(i64::MAX),
        slippage_bps: i64::from(config.swap_slippage_bps),
        distribution_mode: config.distribution_mode.as_str().to_string(),
        top_n: i64::from(config.distribution_top_n),
        min_holding_base_units: "0".to_string(),
        max_grant_micro_usd: config.default_key_limit_micro_usd,
        max_key_limit_micro_usd: config.max_key_limit_micro_usd,
        key_limit_reset: config
            .key_limit_reset
            .map(|reset| reset.as_str().to_string()),
        key_expiry_days: i64::from(config.key_expiry_days),
        reserve_bps: i64::from(config.credit_pool_reserve_bps),
        cron_schedule: config.cron_schedule.source().to_string(),
        status: "active".to_string(),
    }
}

/// Deletes a SQLite database and its WAL files if they exist.
fn remove_database_files(path: &Path) -> std::io::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::remove_file(&file) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
    }
    Ok(())
}

/// `--once`: one run of the seeded strategy through the coordinator, its summary printed as a
/// second JSON line; exit 0 only if it completed.
async fn run_once(daemon: &crate::daemon::RunningDaemon, strategy_id: &str) -> i32 {
    use creditbrain_actors::run::start_run;
    use creditbrain_actors::store::runs::{RunState, TriggeredBy};

    let Some(coordinator) = daemon.handle.coordinator.get() else {
        eprintln!("creditbrain sandbox --once: the run coordinator is not running");
        return exit::FAILURE;
    };
    let started = match start_run(
        &coordinator,
        strategy_id,
        TriggeredBy::Manual,
        None,
        Duration::from_secs(30),
    )
    .await
    {
        Ok(started) => started,
        Err(error) => {
            eprintln!("creditbrain sandbox --once: {}: {error}", error.code());
            return exit::FAILURE;
        }
    };
    let store = &daemon.handle.store;
    let run = loop {
        match store.run(&started.run_id).await {
            Ok(Some(run)) if run.state.is_terminal() => break run,
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(error) => {
                eprintln!("creditbrain sandbox --once: reading the run: {error}");
                return exit::FAILURE;
            }
        }
    };
    let audit = store.audit_for_run(&run.run_id).await.unwrap_or_default();
    let summary = json!({
        "run_id": run.run_id,
        "state": run.state.as_str(),
        "claimed_lamports": run.claimed_lamports,
        "swapped_usdc_base_units": run.swapped_usdc_base_units,
        "budget_micro_usd": run.budget_micro_usd,
        "allocated_micro_usd": run.allocated_micro_usd,
        "carry_out_micro_usd": run.carry_out_micro_usd,
        "holders": run.holders_count,
        "keys_created": run.keys_created,
        "keys_updated": run.keys_updated,
        "error_code": run.error_code,
        "error_detail": run.error_detail,
        "audit": audit.iter().map(|entry| json!({
            "at": entry.created_at,
            "phase": entry.phase,
            "action": entry.action,
            "tx": entry.tx_signature,
        })).collect::<Vec<_>>(),
    });
    println!("{summary}");
    if run.state == RunState::Complete {
        exit::OK
    } else {
        exit::FAILURE
    }
}
