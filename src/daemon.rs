//! The daemon: claims the admin socket, opens the database, starts the supervision tree, serves
//! HTTP and the admin socket, and shuts everything down in order.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use creditbrain_actors::chain::actor::{
    BAGS_CLAIM_PROGRAMS, ChainActor, ChainArgs, ChainBreakers, ChainMsg, USDC_MINT_DEVNET,
    USDC_MINT_MAINNET,
};
use creditbrain_actors::chain::bags::BagsClient;
use creditbrain_actors::chain::helius::HeliusClient;
use creditbrain_actors::chain::protocol::SubmitOptions;
use creditbrain_actors::chain::rpc::SolanaRpc;
use creditbrain_actors::health::{HealthActor, HealthArgs, HealthMsg, HealthReport};
use creditbrain_actors::keys_maintenance::{KeyMaintenance, KeyMaintenanceArgs, KeyMaintenanceMsg};
use creditbrain_actors::keyvault::KeyVault;
use creditbrain_actors::openrouter::{
    OpenRouterActor, OpenRouterArgs, OpenRouterClient, OpenRouterMsg,
};
use creditbrain_actors::pool::{PoolActor, PoolArgs, PoolMsg};
use creditbrain_actors::resilience::{
    Breaker, BreakerConfig, BreakerSnapshot, Integration, RateLimiter, RetryPolicy, SlidingBudget,
};
use creditbrain_actors::run::{CoordinatorMsg, RunContext, RunCoordinator, RunPolicy};
use creditbrain_actors::scheduler::{Clock, Scheduler, SchedulerArgs, SchedulerMsg};
use creditbrain_actors::secret::Secret;
use creditbrain_actors::store::{Store, StoreError};
use creditbrain_actors::strategy::StrategyDefaults;
use creditbrain_actors::supervisor::{
    ActorSlot, ChildSpec, RestartCounts, RestartPolicy, SupervisedChild, Supervisor,
    SupervisorArgs, SupervisorMsg,
};
use ractor::{Actor, ActorRef};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::server::{AdminSocket, AdminSocketError};
use crate::config::{Config, SolanaNetwork};
use crate::readiness::Readiness;

/// The runbook's per-probe timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Bags' documented budget: 1,000 requests per sliding hour, shared by all of a user's keys.
const BAGS_REQUESTS_PER_HOUR: u32 = 1_000;

/// Helius DAS requests per second: the free plan's limit, safe on every plan.
pub const HELIUS_DAS_REQUESTS_PER_SECOND: u32 = 2;

/// The most a Bags-built transaction's priority fee may cost (0.01 SOL): Bags embeds its own
/// compute budget; a higher one means something is off.
const MAX_PRIORITY_FEE_LAMPORTS: u64 = 10_000_000;

/// How long a pool reading may take: a credits call with its retries.
const POOL_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// SOL kept back from each swap to pay transaction fees (0.01 SOL).
const SOL_FLOAT_LAMPORTS: u64 = 10_000_000;

/// The smallest grant: one cent, so no key is created or topped up for nothing.
const MIN_GRANT_MICRO_USD: i64 = 10_000;

/// How long a run waits for one integration call (claims and swaps confirm within it).
const RUN_CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// A run's lease lasts this long without renewal; it is renewed at every phase.
const RUN_LEASE_TTL: Duration = Duration::from_secs(30 * 60);

/// Usage snapshots older than this are pruned after each usage poll.
const USAGE_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// How often keys due for rotation (KEY_ROTATION_DAYS) are looked for.
const ROTATION_CHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// How long shutdown waits for in-flight HTTP requests.
const HTTP_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What the frontends hold: the actors' slots and the shared read-only state.
#[derive(Clone)]
pub struct Handle {
    pub started_at: Instant,
    pub store: Store,
    pub health: ActorSlot<HealthMsg>,
    pub openrouter: ActorSlot<OpenRouterMsg>,
    pub chain: ActorSlot<ChainMsg>,
    pub pool: ActorSlot<PoolMsg>,
    pub coordinator: ActorSlot<CoordinatorMsg>,
    pub scheduler: ActorSlot<SchedulerMsg>,
    pub key_maintenance: ActorSlot<KeyMaintenanceMsg>,
    pub restart_counts: RestartCounts,
    /// Every integration's breaker; shared with the actors that call through them, so their
    /// state survives actor restarts and health reporting reads it without a message.
    pub breakers: Breakers,
    /// What the frontends need from the configuration (and the key vault for reveals).
    pub settings: Arc<FrontendSettings>,
    health_reports: watch::Receiver<HealthReport>,
    /// Results older than this mean the HealthActor stopped probing.
    health_max_age: Duration,
}

impl Handle {
    /// The HealthActor's latest probe round.
    pub fn health_report(&self) -> HealthReport {
        self.health_reports.borrow().clone()
    }

    pub fn readiness(&self) -> Readiness {
        Readiness::from_report(
            &self.health_report(),
            &self.breakers.snapshots(),
            self.started_at,
            self.health_max_age,
        )
    }
}

/// The configuration the frontends use, fixed at start.
pub struct FrontendSettings {
    /// What a new strategy leaves out comes from here (the environment's defaults).
    pub strategy_defaults: StrategyDefaults,
    /// EXECUTION_KILL_SWITCH (the runtime toggle is in the store).
    pub kill_switch_env: bool,
    /// CREDIT_POOL_RESERVE_PCT, for `pool-status`.
    pub pool_reserve_bps: u16,
    /// How long a command waits for its actor (a reconcile lists every key).
    pub command_timeout: Duration,
    pub api_auth_token: Secret,
    pub cors_allowed_origins: Vec<String>,
    pub api_rate_limit_per_min: u32,
    pub holder_rate_limit_per_min: u32,
    /// Opens holders' sealed keys for a signed reveal.
    pub vault: KeyVault,
}

/// How long a frontend command waits for its actor.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// One circuit breaker per integration (DESIGN §6).
#[derive(Clone, Debug)]
pub struct Breakers {
    pub bags: Breaker,
    pub solana_rpc: Breaker,
    pub helius_das: Breaker,
    pub openrouter: Breaker,
}

impl Breakers {
    pub fn new(config: &BreakerConfig) -> Self {
        Self {
            bags: Breaker::new(Integration::Bags, config.clone()),
            solana_rpc: Breaker::new(Integration::SolanaRpc, config.clone()),
            helius_das: Breaker::new(Integration::HeliusDas, config.clone()),
            openrouter: Breaker::new(Integration::OpenRouter, config.clone()),
        }
    }

    pub fn snapshots(&self) -> Vec<BreakerSnapshot> {
        [
            &self.bags,
            &self.solana_rpc,
            &self.helius_das,
            &self.openrouter,
        ]
        .into_iter()
        .map(Breaker::snapshot)
        .collect()
    }
}

#[derive(thiserror::Error, Debug)]
pub enum DaemonError {
    #[error(transparent)]
    AdminSocket(#[from] AdminSocketError),
    #[error(
        "another creditbrain daemon is using the database {0} (its lock file is held); one daemon per database"
    )]
    DatabaseInUse(PathBuf),
    #[error("database lock file {path}: {source}")]
    DatabaseLock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error("starting the actors failed: {0}")]
    Actors(String),
    #[error("the actor tree stopped unexpectedly: {0}")]
    ActorsDied(String),
}

/// A started daemon. Ask it to stop with [`RunningDaemon::shutdown_trigger`], then [`RunningDaemon::wait`].
pub struct RunningDaemon {
    pub http_addr: SocketAddr,
    pub socket_path: PathBuf,
    pub handle: Handle,
    stop_requested: watch::Sender<bool>,
    supervisor: ActorRef<SupervisorMsg>,
    supervisor_done: JoinHandle<()>,
    http_task: JoinHandle<std::io::Result<()>>,
    admin_task: JoinHandle<()>,
    /// Tells the HTTP and admin servers to stop accepting.
    frontends_stop: watch::Sender<bool>,
    /// Held until the daemon is dropped: no second daemon on this database meanwhile.
    _database_lock: DatabaseLock,
    /// The actors' pool (the frontends' is `handle.store`).
    actors_store: Store,
}

/// An exclusive `flock` on `<database>.lock`, held for the daemon's lifetime. The kernel releases
/// it when the process dies however it dies, so a restart after `kill -9` takes it at once, and
/// while it is held a second daemon on the same database (another socket path, another port)
/// refuses to start instead of racing the first one's runs.
struct DatabaseLock {
    _file: std::fs::File,
}

impl DatabaseLock {
    fn acquire(database_path: &std::path::Path) -> Result<Self, DaemonError> {
        use std::os::unix::fs::OpenOptionsExt;
        use std::os::unix::io::AsRawFd;

        let mut path = database_path.as_os_str().to_owned();
        path.push(".lock");
        let path = PathBuf::from(path);
        let lock_error = |source| DaemonError::DatabaseLock {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(lock_error)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(lock_error)?;
        // SAFETY: flock(2) on a descriptor we own for as long as `file` lives.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let error = std::io::Error::last_os_error();
            return Err(if error.kind() == std::io::ErrorKind::WouldBlock {
                DaemonError::DatabaseInUse(database_path.to_path_buf())
            } else {
                lock_error(error)
            });
        }
        Ok(Self { _file: file })
    }
}

/// Open files below which the daemon warns at start: HTTP connections and the integrations'
/// sockets share the one limit.
const OPEN_FILES_WANTED: u64 = 4_096;

/// Raises the soft open-files limit to the hard one (as Go's runtime does) and returns it. Every
/// HTTP connection holds a descriptor; at the common soft default of 1,024, a burst of clients
/// would exhaust them and the daemon's own calls to Bags, Solana and OpenRouter would then fail
/// with EMFILE (a load test showed a run failing that way).
fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        // An unlimited hard limit cannot be the soft one for files (Linux caps it at
        // fs.nr_open, 1,048,576 by default).
        let wanted = if limit.rlim_max == libc::RLIM_INFINITY {
            1 << 20
        } else {
            limit.rlim_max
        };
        if limit.rlim_cur < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// Asks a running daemon to shut down; cheap to clone into a signal handler.
#[derive(Clone)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

/// Starts the daemon. Fails before binding anything publicly if another daemon owns the socket.
pub async fn start(config: &Config) -> Result<RunningDaemon, DaemonError> {
    let admin_socket = AdminSocket::bind(&config.admin_socket_path).await?;
    let socket_path = admin_socket.path().to_path_buf();
    match start_after_socket(config, admin_socket).await {
        Ok(daemon) => Ok(daemon),
        Err(error) => {
            // We own the socket path; leave no file behind for the next start to trip over.
            let _ = std::fs::remove_file(&socket_path);
            Err(error)
        }
    }
}

async fn start_after_socket(
    config: &Config,
    admin_socket: AdminSocket,
) -> Result<RunningDaemon, DaemonError> {
    let started_at = Instant::now();
    let failpoints = creditbrain_actors::failpoint::arm_from_env();
    if !failpoints.is_empty() {
        tracing::warn!(failpoints = %failpoints.join(","), "test-only failpoints armed from {}",
            creditbrain_actors::failpoint::ENV_VAR);
    }
    let open_files = raise_open_files_limit();
    let database_lock = DatabaseLock::acquire(&config.database_path)?;
    let store = Store::open(&config.database_path).await?;
    tracing::info!(path = %config.database_path.display(), "database ready");
    // We hold the database's lock: a lease still recorded is a dead daemon's. Dropping them lets
    // this start resume the runs it left in flight at once, not when the leases expire.
    match store.clear_leases_of_dead_daemons().await {
        Ok(0) => {}
        Ok(cleared) => tracing::info!(
            leases = cleared,
            "runs left in flight by a stopped daemon will resume"
        ),
        Err(error) => {
            store.close().await;
            return Err(error.into());
        }
    }
    // The frontends (HTTP, admin socket) query through a pool of their own: a flood of API
    // reads queues for its connections, not in front of the pipeline's checkpoints and the
    // health probe's ping (under 1,000 connections of `GET /api/runs` a shared pool made a run
    // take 60 s instead of 3).
    let frontend_store = match Store::open(&config.database_path).await {
        Ok(frontend_store) => frontend_store,
        Err(error) => {
            store.close().await;
            return Err(error.into());
        }
    };

    let (health_publisher, health_reports) = watch::channel(HealthReport::default());
    let health_publisher = Arc::new(health_publisher);
    let health_slot = ActorSlot::default();
    let restart_counts = RestartCounts::default();
    let breakers = Breakers::new(&BreakerConfig {
        cooldown: config.breaker_cooldown,
        ..BreakerConfig::default()
    });
    let openrouter = OpenRouterClient::new(
        config.openrouter_base_url.clone(),
        config.openrouter_management_key.clone(),
        // Each request's own limit; health probes are cut shorter by `PROBE_TIMEOUT`.
        config.integration_request_timeout,
    );

    let health_child = {
        let openrouter = openrouter.clone();
        let (store, publisher, interval) = (
            store.clone(),
            health_publisher.clone(),
            config.health_probe_interval,
        );
        ChildSpec::new("health", health_slot.clone(), move || {
            (
                HealthActor,
                HealthArgs {
                    store: store.clone(),
                    openrouter: openrouter.clone(),
                    interval,
                    probe_timeout: PROBE_TIMEOUT,
                    publisher: publisher.clone(),
                },
            )
        })
    };
    let openrouter_slot = ActorSlot::default();
    let openrouter_child = {
        let args = OpenRouterArgs {
            client: openrouter.clone(),
            breaker: breakers.openrouter.clone(),
            retry: RetryPolicy::default(),
            max_concurrency: config.openrouter_max_concurrency,
        };
        ChildSpec::new("openrouter", openrouter_slot.clone(), move || {
            (OpenRouterActor, args.clone())
        })
    };
    let chain_slot = ActorSlot::default();
    let chain_child = {
        let signer = config
            .signer
            .keypair()
            .map_err(|error| DaemonError::Actors(format!("loading the signer: {error}")))?;
        let args = ChainArgs {
            bags: BagsClient::new(
                config.bags_api_base_url.clone(),
                config.bags_api_key.clone(),
                config.integration_request_timeout,
                SlidingBudget::new(BAGS_REQUESTS_PER_HOUR, Duration::from_secs(3600)),
            ),
            helius: HeliusClient::new(
                config.helius_rpc_url.clone(),
                config.integration_request_timeout,
                RateLimiter::per_second(HELIUS_DAS_REQUESTS_PER_SECOND),
            ),
            rpc: SolanaRpc::new(&config.solana_rpc_url, config.integration_request_timeout)
                .with_breaker(breakers.solana_rpc.clone()),
            signer: Arc::new(signer),
            store: store.clone(),
            breakers: ChainBreakers {
                bags: breakers.bags.clone(),
                solana_rpc: breakers.solana_rpc.clone(),
                helius_das: breakers.helius_das.clone(),
            },
            retry: RetryPolicy::default(),
            usdc_mint: match config.solana_network {
                SolanaNetwork::MainnetBeta => USDC_MINT_MAINNET,
                SolanaNetwork::Devnet => USDC_MINT_DEVNET,
            },
            submit: SubmitOptions::default(),
            max_priority_fee_lamports: MAX_PRIORITY_FEE_LAMPORTS,
            allowed_programs: BAGS_CLAIM_PROGRAMS.into_iter().collect(),
        };
        ChildSpec::new("chain", chain_slot.clone(), move || {
            (ChainActor, args.clone())
        })
    };
    let pool_slot = ActorSlot::default();
    let pool_child = {
        let args = PoolArgs {
            store: store.clone(),
            openrouter: openrouter_slot.clone(),
            call_timeout: POOL_CALL_TIMEOUT,
            runway_window: Duration::from_secs(7 * 24 * 3600),
        };
        ChildSpec::new("pool", pool_slot.clone(), move || (PoolActor, args.clone()))
    };
    let vault = KeyVault::from_config(
        config.key_encryption_key.as_ref().map(|key| *key.expose()),
        &config.database_path,
    )
    .map_err(|error| DaemonError::Actors(format!("opening the key vault: {error}")))?;
    let coordinator_slot = ActorSlot::default();
    let coordinator_child = {
        let vault = vault.clone();
        let context = RunContext {
            store: store.clone(),
            chain: chain_slot.clone(),
            openrouter: openrouter_slot.clone(),
            pool: pool_slot.clone(),
            vault,
            policy: RunPolicy {
                kill_switch_env: config.kill_switch,
                dry_run_default: config.dry_run,
                max_daily_runs: config.max_daily_runs,
                max_claimable_lamports_per_run: config.max_claimable_lamports_per_run,
                sol_float_lamports: SOL_FLOAT_LAMPORTS,
                min_grant_micro_usd: MIN_GRANT_MICRO_USD,
                call_timeout: RUN_CALL_TIMEOUT,
                instance_id: uuid::Uuid::new_v4().to_string(),
                lease_ttl: RUN_LEASE_TTL,
                max_worker_restarts: 3,
                provision_concurrency: 2 * config.openrouter_max_concurrency.max(1),
            },
        };
        ChildSpec::new("coordinator", coordinator_slot.clone(), move || {
            (RunCoordinator, context.clone())
        })
    };
    let key_maintenance_slot = ActorSlot::default();
    let key_maintenance_child = {
        let args = KeyMaintenanceArgs {
            store: store.clone(),
            openrouter: openrouter_slot.clone(),
            vault: vault.clone(),
            rotation_after: Duration::from_secs(u64::from(config.key_rotation_days) * 86_400),
            rotation_check_interval: ROTATION_CHECK_INTERVAL,
            call_timeout: POOL_CALL_TIMEOUT,
        };
        ChildSpec::new("keys", key_maintenance_slot.clone(), move || {
            (KeyMaintenance, args.clone())
        })
    };
    let scheduler_slot = ActorSlot::default();
    let scheduler_child = {
        let args = SchedulerArgs {
            store: store.clone(),
            coordinator: coordinator_slot.clone(),
            openrouter: openrouter_slot.clone(),
            usage_poll_interval: config.usage_poll_interval,
            usage_retention: USAGE_RETENTION,
            min_cron_interval_hours: config.min_cron_interval_hours,
            clock: Clock::system(),
        };
        ChildSpec::new("scheduler", scheduler_slot.clone(), move || {
            (Scheduler, args.clone())
        })
    };
    // The scheduler starts last and stops first: no run is started while the rest shuts down.
    let children: Vec<Arc<dyn SupervisedChild>> = vec![
        Arc::new(health_child),
        Arc::new(openrouter_child),
        Arc::new(chain_child),
        Arc::new(pool_child),
        Arc::new(coordinator_child),
        Arc::new(key_maintenance_child),
        Arc::new(scheduler_child),
    ];
    let spawned = Actor::spawn(
        None,
        Supervisor,
        SupervisorArgs {
            children,
            policy: RestartPolicy::default(),
            instance: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
            restart_counts: restart_counts.clone(),
        },
    )
    .await;
    let (supervisor, supervisor_done) = match spawned {
        Ok(spawned) => spawned,
        Err(error) => {
            store.close().await;
            frontend_store.close().await;
            return Err(DaemonError::Actors(error.to_string()));
        }
    };

    let handle = Handle {
        started_at,
        store: frontend_store,
        health: health_slot,
        openrouter: openrouter_slot,
        chain: chain_slot,
        pool: pool_slot,
        coordinator: coordinator_slot,
        scheduler: scheduler_slot,
        key_maintenance: key_maintenance_slot,
        restart_counts,
        breakers,
        settings: Arc::new(FrontendSettings {
            strategy_defaults: config.strategy_defaults(),
            kill_switch_env: config.kill_switch,
            pool_reserve_bps: config.credit_pool_reserve_bps,
            command_timeout: COMMAND_TIMEOUT,
            api_auth_token: config.api_auth_token.clone(),
            cors_allowed_origins: config.cors_allowed_origins.clone(),
            api_rate_limit_per_min: config.api_rate_limit_per_min,
            holder_rate_limit_per_min: config.holder_rate_limit_per_min,
            vault: vault.clone(),
        }),
        health_reports,
        // Three missed rounds (at least 10 s) before readiness distrusts the last results.
        health_max_age: (config.health_probe_interval * 3).max(Duration::from_secs(10))
            + PROBE_TIMEOUT,
    };

    let address = SocketAddr::new(config.host, config.port);
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(source) => {
            supervisor.stop(None);
            let _ = supervisor_done.await;
            store.close().await;
            handle.store.close().await;
            return Err(DaemonError::Listen {
                address: address.to_string(),
                source,
            });
        }
    };
    let http_addr = listener
        .local_addr()
        .map_err(|source| DaemonError::Listen {
            address: address.to_string(),
            source,
        })?;

    let (frontends_stop, frontends_stopping) = watch::channel(false);
    let app = crate::http::router(handle.clone());
    let http_task = {
        let mut stopping = frontends_stopping.clone();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            })
            .await
        })
    };
    let admin_task = tokio::spawn(admin_socket.serve(handle.clone(), frontends_stopping));
    let (stop_requested, _) = watch::channel(false);
    tracing::info!(address = %http_addr, socket = %config.admin_socket_path.display(), openFiles = open_files, "creditbrain listening");
    if open_files < OPEN_FILES_WANTED {
        tracing::warn!(
            openFiles = open_files,
            "the open-files limit is low: each HTTP connection holds a descriptor, and once they \
             run out the calls to Bags, Solana and OpenRouter fail too; raise it (LimitNOFILE=)"
        );
    }

    Ok(RunningDaemon {
        http_addr,
        socket_path: config.admin_socket_path.clone(),
        handle,
        stop_requested,
        supervisor,
        supervisor_done,
        http_task,
        admin_task,
        frontends_stop,
        _database_lock: database_lock,
        actors_store: store,
    })
}

impl RunningDaemon {
    /// Runs until SIGINT or SIGTERM (or the actor tree dies), then shuts down in order.
    pub async fn run_until_signalled(
        self,
        mut signals: ShutdownSignals,
    ) -> Result<(), DaemonError> {
        let trigger = self.shutdown_trigger();
        let signals = tokio::spawn(async move {
            let name = signals.recv().await;
            tracing::info!(signal = name, "signal received");
            trigger.trigger();
        });
        let outcome = self.wait().await;
        signals.abort();
        outcome
    }

    pub fn shutdown_trigger(&self) -> ShutdownTrigger {
        ShutdownTrigger(self.stop_requested.clone())
    }

    /// Runs until a shutdown is triggered or the actor tree dies, then stops everything in order:
    /// stop accepting (HTTP, admin socket), stop the actors, close the database, remove the socket.
    /// `Ok` after a requested shutdown; `Err(ActorsDied)` when the supervisor gave up.
    pub async fn wait(mut self) -> Result<(), DaemonError> {
        let mut stop_requested = self.stop_requested.subscribe();
        let outcome = tokio::select! {
            _ = stop_requested.wait_for(|stop| *stop) => Ok(()),
            _ = &mut self.supervisor_done => Err(DaemonError::ActorsDied(
                "the supervisor stopped (restart budget exhausted or a failure); see the error above".into(),
            )),
        };
        tracing::info!("shutting down");
        self.frontends_stop.send_replace(true);
        // In-flight requests get a grace period; a client that never finishes does not hold us.
        match tokio::time::timeout(HTTP_DRAIN_TIMEOUT, &mut self.http_task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(error = %error, "http server ended with an error"),
            Ok(Err(error)) => tracing::warn!(error = %error, "http server task failed"),
            Err(_) => {
                tracing::warn!("http connections still open after the grace period, closing them");
                self.http_task.abort();
            }
        }
        let _ = self.admin_task.await;
        if outcome.is_ok() {
            self.supervisor.stop(Some("shutdown".into()));
            let _ = self.supervisor_done.await;
        }
        self.handle.store.close().await;
        self.actors_store.close().await;
        tracing::info!("shutdown complete");
        outcome
    }
}

/// SIGINT and SIGTERM handlers, installed before the daemon announces itself: a signal that
/// arrives between "listening" and the handler would otherwise kill the process with no cleanup.
pub struct ShutdownSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers; needs a running tokio runtime.
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves on the next SIGINT or SIGTERM, naming it.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}
