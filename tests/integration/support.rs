//! Test support: a temporary daemon environment, a loopback stand-in for OpenRouter's `/credits`,
//! and polling helpers (poll, never sleep-and-hope).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use creditbrain::config::Config;
use creditbrain::daemon::RunningDaemon;
use serde_json::json;
use solana_sdk::signature::Keypair;

pub const MANAGEMENT_KEY: &str = "sk-or-v1-test-management-key-0123456789";
pub const API_TOKEN: &str = "test-api-token-abcdefghijklmnop";

/// How the `/credits` stand-in answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CreditsMode {
    Up = 0,
    /// 500 with OpenRouter's error body.
    Failing = 1,
    /// Never answers (longer than the 3 s probe timeout).
    Hanging = 2,
}

/// A loopback server answering `GET /credits` as OpenRouter documents it (bearer management key,
/// `{"data":{"total_credits","total_usage"}}`). The full OpenRouter fake comes with the sandbox.
pub struct CreditsServer {
    pub base_url: String,
    mode: Arc<AtomicU8>,
}

impl CreditsServer {
    pub async fn start() -> Self {
        let mode = Arc::new(AtomicU8::new(CreditsMode::Up as u8));
        let state = mode.clone();
        let app = Router::new().route(
            "/api/v1/credits",
            get(move |headers: HeaderMap| {
                let mode = state.load(Ordering::SeqCst);
                async move { credits(mode, headers).await }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base_url: format!("http://{address}/api/v1"),
            mode,
        }
    }

    pub fn set_mode(&self, mode: CreditsMode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }
}

async fn credits(mode: u8, headers: HeaderMap) -> Response {
    let authorized = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        == Some(&format!("Bearer {MANAGEMENT_KEY}"));
    if !authorized {
        let body = json!({"error": {"code": 401, "message": "No auth credentials found"}});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    match mode {
        0 => axum::Json(json!({"data": {"total_credits": 150.25, "total_usage": 20.5}}))
            .into_response(),
        1 => {
            let body = json!({"error": {"code": 500, "message": "Internal Server Error"}});
            (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
        }
        _ => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
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
