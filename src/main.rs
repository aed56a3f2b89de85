//! The `creditbrain` binary: parses the command line and runs the daemon, the sandbox or a client
//! command.

use clap::Parser;
use creditbrain::cli::{self, Cli, Command, ConfigCommand, exit};
use creditbrain::config::Config;
use creditbrain::daemon::ShutdownSignals;

fn main() {
    let cli = Cli::parse();
    let socket = cli.socket_path();
    let socket = socket.as_path();
    let code = match &cli.command {
        Command::Config {
            command: ConfigCommand::Check,
        } => cli::config_check(),
        Command::Serve => serve(),
        Command::Sandbox(args) => runtime().block_on(cli::sandbox::run(args)),
        Command::Health { json } => runtime().block_on(cli::health(socket, *json)),
        Command::CreateStrategy(args) => runtime().block_on(cli::strategies::create(socket, args)),
        Command::ListStrategies(args) => runtime().block_on(cli::strategies::list(socket, args)),
        Command::UpdateStrategy(args) => runtime().block_on(cli::strategies::update(socket, args)),
        Command::DeleteStrategy(args) => runtime().block_on(cli::strategies::delete(socket, args)),
        Command::Run(args) => runtime().block_on(cli::runs::run(socket, args)),
        Command::Status(args) => runtime().block_on(cli::runs::status(socket, args)),
        Command::PoolStatus { output } => {
            runtime().block_on(cli::pool::pool_status(socket, output))
        }
        Command::ListKeys(args) => runtime().block_on(cli::keys::list_keys(socket, args)),
        Command::CancelRun(args) => runtime().block_on(cli::runs::cancel_run(socket, args)),
        Command::KillSwitch(args) => {
            runtime().block_on(cli::kill_switch::kill_switch(socket, args))
        }
        Command::Reconcile(args) => runtime().block_on(cli::keys::reconcile(socket, args)),
    };
    std::process::exit(code);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}

/// `creditbrain serve`: validate everything first, then run until SIGINT/SIGTERM.
fn serve() -> i32 {
    let config = match Config::load() {
        Ok(config) => config,
        Err(errors) => {
            // Before logging is set up, and for a human at a terminal: the plain list.
            eprintln!("creditbrain: cannot start, {errors}");
            return exit::CONFIG;
        }
    };
    creditbrain::telemetry::init(config.log_level.as_str());
    runtime().block_on(async move {
        let signals = match ShutdownSignals::install() {
            Ok(signals) => signals,
            Err(error) => {
                tracing::error!(err.message = %error, "cannot install signal handlers");
                return exit::FAILURE;
            }
        };
        let daemon = match creditbrain::daemon::start(&config).await {
            Ok(daemon) => daemon,
            Err(error) => {
                tracing::error!(err.message = %error, "startup failed");
                return exit::FAILURE;
            }
        };
        match daemon.run_until_signalled(signals).await {
            Ok(()) => exit::OK,
            Err(error) => {
                tracing::error!(err.message = %error, "daemon stopped on a failure");
                exit::FAILURE
            }
        }
    })
}
