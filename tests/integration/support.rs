//! Test support: a temporary daemon environment, a loopback stand-in for OpenRouter's `/credits`,
//! and polling helpers (poll, never sleep-and-hope).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::StatusCode;
use creditbrain::config::Config;
use creditbrain::daemon::RunningDaemon;
use creditbrain::sandbox::faults::{ErrorStyle, Fault, FaultMode, FaultRule, Faults};
use creditbrain::sandbox::openrouter::OpenRouterFake;
use creditbrain::sandbox::serve_on_loopback;
use solana_sdk::signature::Keypair;

pub const MANAGEMENT_KEY: &str = "sk-or-v1-test-management-key-0123456789";
pub const API_TOKEN: &str = "test-api-token-abcdefghijklmnop";

/// How the OpenRouter fake answers (through the sandbox's fault layer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreditsMode {
    Up,
    /// 500 with OpenRouter's error body.
    Failing,
    /// Never answers (longer than the 3 s probe timeout).
    Hanging,
}

/// The sandbox's OpenRouter fake on loopback, with its fault layer: what the daemon's health
/// probe and OpenRouterActor talk to in these tests.
pub struct CreditsServer {
    pub base_url: String,
    pub fake: OpenRouterFake,
    pub faults: Faults,
    _task: tokio::task::JoinHandle<()>,
}

impl CreditsServer {
    pub async fn start() -> Self {
        let fake = OpenRouterFake::new(MANAGEMENT_KEY.to_string(), 150_250_000);
        let faults = Faults::new();
        let router = faults.wrap("openrouter", ErrorStyle::OpenRouter, fake.router());
        let (address, task) = serve_on_loopback(router).await.unwrap();
        Self {
            base_url: format!("http://{address}/api/v1"),
            fake,
            faults,
            _task: task,
        }
    }

    pub fn set_mode(&self, mode: CreditsMode) {
        self.faults.clear(Some("openrouter"));
        let fault = match mode {
            CreditsMode::Up => return,
            CreditsMode::Failing => Fault::ServerError { status: 500 },
            CreditsMode::Hanging => Fault::Hang,
        };
        self.faults.add_rule(FaultRule {
            fake: "openrouter".into(),
            route: None,
            latency: None,
            mode: Some(FaultMode::Always { fault }),
        });
    }
}

/// A temporary directory with everything a daemon needs, and the variables to start one.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub vars: BTreeMap<String, String>,
}

impl TestEnv {
    pub fn new(openrouter_base_url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let signer = Keypair::new();
        let vars = [
            ("BAGS_API_KEY", "bags-test-key"),
            ("HELIUS_API_KEY", "helius-test-key"),
            ("OPENROUTER_MANAGEMENT_KEY", MANAGEMENT_KEY),
            ("API_AUTH_TOKEN", API_TOKEN),
            ("OPENROUTER_BASE_URL", openrouter_base_url),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("HEALTH_PROBE_INTERVAL_SEC", "1"),
            ("LOG_LEVEL", "info"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .chain([
            ("SIGNER_PRIVATE_KEY".to_string(), signer.to_base58_string()),
            (
                "DATABASE_PATH".to_string(),
                dir.path().join("data/creditbrain.db").display().to_string(),
            ),
            (
                "ADMIN_SOCKET_PATH".to_string(),
                dir.path()
                    .join("data/creditbrain.sock")
                    .display()
                    .to_string(),
            ),
        ])
        .collect();
        Self { dir, vars }
    }

    pub fn config(&self) -> Config {
        Config::from_vars(&self.vars)
            .unwrap_or_else(|errors| panic!("test config is valid: {errors}"))
    }

    pub fn socket_path(&self) -> PathBuf {
        PathBuf::from(&self.vars["ADMIN_SOCKET_PATH"])
    }

    pub fn database_path(&self) -> PathBuf {
        PathBuf::from(&self.vars["DATABASE_PATH"])
    }
}

/// A daemon running in this process, with its environment and the OpenRouter stand-in.
pub struct TestDaemon {
    pub env: TestEnv,
    pub credits: CreditsServer,
    pub daemon: RunningDaemon,
    pub http: reqwest::Client,
}

impl TestDaemon {
    pub async fn start() -> Self {
        let credits = CreditsServer::start().await;
        let env = TestEnv::new(&credits.base_url);
        let daemon = creditbrain::daemon::start(&env.config())
            .await
            .expect("daemon starts");
        Self {
            env,
            credits,
            daemon,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.daemon.http_addr)
    }

    pub async fn get_json(&self, path: &str) -> (StatusCode, serde_json::Value) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        (status, response.json().await.unwrap())
    }

    /// Shuts the daemon down as a signal would and waits for it.
    pub async fn stop(self) -> TestEnv {
        self.daemon.shutdown_trigger().trigger();
        self.daemon.wait().await.expect("clean shutdown");
        self.env
    }
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn assert_socket_mode_0600(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "admin socket mode is {mode:o}");
}

/// The bearer token every [`SandboxDaemon`] accepts on `/api/*`.
pub const SANDBOX_API_TOKEN: &str = "sandbox-daemon-test-token-0123456789";

/// The real daemon, in this process, against every sandbox fake, with one seeded strategy (the
/// signer's fees, TOP_N_HOLDERS of the sandbox token, credits mode): what the frontend tests
/// drive over HTTP, the admin socket and the CLI binary.
pub struct SandboxDaemon {
    pub sandbox: creditbrain::sandbox::Sandbox,
    pub dir: tempfile::TempDir,
    pub daemon: RunningDaemon,
    /// Every variable the daemon was started with (a CLI child process needs ADMIN_SOCKET_PATH).
    pub vars: BTreeMap<String, String>,
    pub strategy_id: String,
    pub http: reqwest::Client,
}

impl SandboxDaemon {
    /// `holders` token holders; `extra` variables override the defaults.
    pub async fn start(holders: usize, extra: &[(&str, &str)]) -> Self {
        use creditbrain::sandbox::ledger::LedgerOptions;
        use creditbrain::sandbox::world::WorldOptions;
        use creditbrain::sandbox::{Sandbox, SandboxOptions};
        use creditbrain_actors::strategy::{StrategyInput, StrategySpec};
        use solana_sdk::signature::Signer;

        let sandbox = Sandbox::start(SandboxOptions {
            world: WorldOptions {
                holders,
                ..WorldOptions::default()
            },
            ledger: LedgerOptions {
                slot_duration: Duration::from_millis(20),
                ..LedgerOptions::default()
            },
            ..SandboxOptions::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut vars = sandbox.daemon_vars();
        for (name, value) in [
            ("API_AUTH_TOKEN", SANDBOX_API_TOKEN),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("KEY_LIMIT_RESET", "null"),
            ("HEALTH_PROBE_INTERVAL_SEC", "1"),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        {
            vars.insert(name.into(), value.into());
        }
        vars.insert(
            "DATABASE_PATH".into(),
            dir.path().join("daemon.db").display().to_string(),
        );
        vars.insert(
            "ADMIN_SOCKET_PATH".into(),
            dir.path().join("daemon.sock").display().to_string(),
        );
        let config = Config::from_vars(&vars).unwrap_or_else(|errors| panic!("{errors}"));
        let daemon = creditbrain::daemon::start(&config)
            .await
            .expect("daemon starts");
        let input = StrategyInput {
            owner_wallet: Some(sandbox.world.signer.pubkey().to_string()),
            top_n: Some("20".into()),
            max_grant_usd: Some("10".into()),
            max_key_limit_usd: Some("100".into()),
            ..StrategyInput::default()
        };
        let spec = StrategySpec::from_input(&input, &config.strategy_defaults())
            .unwrap_or_else(|errors| panic!("{errors}"));
        let strategy = daemon
            .handle
            .store
            .create_strategy(&spec, "test")
            .await
            .unwrap();
        Self {
            sandbox,
            dir,
            daemon,
            vars,
            strategy_id: strategy.strategy_id,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.daemon.http_addr)
    }

    pub fn socket_path(&self) -> PathBuf {
        PathBuf::from(&self.vars["ADMIN_SOCKET_PATH"])
    }

    /// A request with the bearer token (for `/api…`). with the bearer token.
    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(SANDBOX_API_TOKEN)
    }

    pub fn coordinator(&self) -> ractor::ActorRef<creditbrain_actors::run::CoordinatorMsg> {
        self.daemon
            .handle
            .coordinator
            .get()
            .expect("coordinator running")
    }

    /// Starts a run of the seeded strategy (not blocked) and waits for its end.
    pub async fn run_to_end(&self, dry_run: Option<bool>) -> creditbrain_actors::store::runs::Run {
        let started = creditbrain_actors::run::start_run(
            &self.coordinator(),
            &self.strategy_id,
            creditbrain_actors::store::runs::TriggeredBy::Manual,
            dry_run,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(started.blocked_code, None);
        self.wait_for_end(&started.run_id).await
    }

    /// Turns the seeded strategy OWNER_ONLY and runs it to COMPLETE, so the signer (whose keypair
    /// the test has: it can sign holder challenges) holds a key. Returns the signer's wallet.
    pub async fn run_owner_only(&self) -> String {
        use solana_sdk::signature::Signer;

        let patch = creditbrain_actors::strategy::StrategyPatch {
            distribution_mode: Some("OWNER_ONLY".into()),
            ..Default::default()
        };
        creditbrain::ops::update_strategy(&self.daemon.handle, &self.strategy_id, &patch, "test")
            .await
            .unwrap();
        let run = self.run_to_end(None).await;
        assert_eq!(
            run.state,
            creditbrain_actors::store::runs::RunState::Complete,
            "{run:?}"
        );
        self.sandbox.world.signer.pubkey().to_string()
    }

    /// Waits (up to 60 s) for a run to be COMPLETE or FAILED and returns its row.
    pub async fn wait_for_end(&self, run_id: &str) -> creditbrain_actors::store::runs::Run {
        let store = &self.daemon.handle.store;
        eventually(Duration::from_secs(60), || async {
            let run = store.run(run_id).await.unwrap().unwrap();
            run.state.is_terminal().then_some(run)
        })
        .await
    }

    pub async fn stop(self) {
        self.daemon.shutdown_trigger().trigger();
        self.daemon.wait().await.expect("clean shutdown");
    }
}
