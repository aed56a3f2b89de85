//! Configuration: every environment variable CreditBrain reads (names, defaults and ranges from the
//! seed runbook, plus our own), loading (process environment over `.env`), validation that reports
//! every problem at once, and the redacted view `creditbrain config check` prints.
//!
//! Lessons from the old service (original-behaviour §12, §14 items 7–9) applied here: booleans
//! accept only true/false/1/0/yes/no; every variable is parsed into the type its consumer needs
//! (money as integer lamports / micro-USD, never floats); `KEY_LIMIT_RESET=null` is expressible;
//! `MAX_DAILY_RUNS=0` means unlimited; `SIGNER_PRIVATE_KEY` takes base58 *or* a JSON byte array;
//! `HELIUS_RPC_URL` is honoured; `.env` is read without touching the process environment.

mod signer;
mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::Utc;
use creditbrain_actors::schedule::CronSchedule;
use creditbrain_actors::secret::Secret;
use reqwest::Url;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signer::Signer as _;

pub use signer::{SignerError, SignerSource};

pub const LAMPORTS_PER_SOL: u64 = 1_000_000_000;
pub const MICRO_USD_PER_USD: i64 = 1_000_000;
const MICRO_USD_PER_CENT: i64 = 10_000;
/// `sun_path` is 108 bytes on Linux including the terminating NUL; a longer path cannot be bound.
const MAX_SOCKET_PATH_BYTES: usize = 107;
/// Keeps `now + KEY_EXPIRY_DAYS` far from chrono's limits; a century is "practically never".
const MAX_KEY_EXPIRY_DAYS: u64 = 36_500;

const DEFAULT_CRON: &str = "0 */6 * * *";
const DEFAULT_DATABASE_PATH: &str = "./data/creditbrain.db";
const DEFAULT_SOCKET_PATH: &str = "./data/creditbrain.sock";
const DEFAULT_BAGS_API_BASE_URL: &str = "https://public-api-v2.bags.fm/api/v1";
const DEFAULT_OPENROUTER_BASE_URL: &str = "https://openrouter.ai/api/v1";
/// One request to an integration: long enough for a slow page of holders or a busy RPC node.
pub const DEFAULT_INTEGRATION_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The name both signer problems are reported under: exactly one of the two must be set.
pub const SIGNER_VARIABLES: &str = "SIGNER_KEYPAIR_PATH / SIGNER_PRIVATE_KEY";

/// Every variable, in the order `describe()` lists them: the seed runbook's table, then ours.
pub const VARIABLES: &[&str] = &[
    "BAGS_API_KEY",
    "HELIUS_API_KEY",
    "OPENROUTER_MANAGEMENT_KEY",
    "API_AUTH_TOKEN",
    "SOLANA_NETWORK",
    "EVM_PRIVATE_KEY",
    "EVM_CHAIN_ID",
    "FEE_THRESHOLD_SOL",
    "FEE_SOURCE",
    "SWAP_SLIPPAGE_BPS",
    "DEFAULT_KEY_LIMIT_USD",
    "KEY_LIMIT_RESET",
    "KEY_EXPIRY_DAYS",
    "CREDIT_POOL_RESERVE_PCT",
    "DISTRIBUTION_MODE",
    "DISTRIBUTION_TOP_N",
    "DISTRIBUTION_TOKEN_MINT",
    "CRON_EXPRESSION",
    "MIN_CRON_INTERVAL_HOURS",
    "DRY_RUN",
    "EXECUTION_KILL_SWITCH",
    "MAX_DAILY_RUNS",
    "MAX_CLAIMABLE_SOL_PER_RUN",
    "MAX_KEY_LIMIT_USD",
    "KEY_ROTATION_DAYS",
    "USAGE_POLL_INTERVAL_MIN",
    "BAGS_AGENT_USERNAME",
    "BAGS_AGENT_JWT",
    "BAGS_AGENT_WALLET_ADDRESS",
    "PORT",
    "DATABASE_PATH",
    "LOG_LEVEL",
    "NODE_ENV",
    "BAGS_API_BASE_URL",
    "HELIUS_RPC_URL",
    "SIGNER_KEYPAIR_PATH",
    "SIGNER_PRIVATE_KEY",
    "SOLANA_RPC_URL",
    "OPENROUTER_BASE_URL",
    "HOST",
    "ADMIN_SOCKET_PATH",
    "DATABASE_URL",
    "KEY_ENCRYPTION_KEY",
    "HEALTH_PROBE_INTERVAL_SEC",
    "BREAKER_COOLDOWN_SEC",
    "CORS_ALLOWED_ORIGINS",
    "API_RATE_LIMIT_PER_MIN",
    "HOLDER_RATE_LIMIT_PER_MIN",
];

/// Validated configuration. Money is integer lamports or micro-USD; secrets are [`Secret`]s (or
/// [`EncryptionKey`] / [`SignerSource`]), so `Debug` of the whole struct is safe to log.
#[derive(Clone, Debug)]
pub struct Config {
    // Required API keys.
    pub bags_api_key: Secret,
    pub helius_api_key: Secret,
    pub openrouter_management_key: Secret,
    /// Bearer token for `/api/*`.
    pub api_auth_token: Secret,

    // Solana.
    pub solana_network: SolanaNetwork,
    /// HELIUS_RPC_URL, or built from HELIUS_API_KEY and SOLANA_NETWORK: it carries the key.
    pub helius_rpc_url: Secret,
    /// SOLANA_RPC_URL, or the effective Helius RPC URL. May carry a key.
    pub solana_rpc_url: Secret,
    /// The claim/swap signer. Load it with [`SignerSource::keypair`].
    pub signer: SignerSource,
    /// The signer's public key, derived at validation time (fine to show and log).
    pub signer_pubkey: Pubkey,

    // EVM (CCTP bridge). BRIDGING runs only when a key is set.
    pub evm_private_key: Option<Secret>,
    pub evm_chain_id: u64,

    // Fee claiming.
    /// FEE_THRESHOLD_SOL in lamports.
    pub fee_threshold_lamports: u64,
    pub fee_source: FeeSource,
    pub swap_slippage_bps: u16,

    // Credit distribution.
    /// DEFAULT_KEY_LIMIT_USD in micro-USD (a multiple of 10 000: whole cents).
    pub default_key_limit_micro_usd: i64,
    /// `None` = KEY_LIMIT_RESET=null: credits mode, limits never reset (DESIGN §5).
    pub key_limit_reset: Option<LimitReset>,
    /// 0 = keys never expire.
    pub key_expiry_days: u32,
    /// CREDIT_POOL_RESERVE_PCT in basis points (10 % = 1000).
    pub credit_pool_reserve_bps: u16,
    pub distribution_mode: DistributionMode,
    pub distribution_top_n: u32,
    pub distribution_token_mint: Option<Pubkey>,

    // Scheduling (UTC).
    /// CRON_EXPRESSION, the default schedule; already checked against MIN_CRON_INTERVAL_HOURS.
    pub cron_schedule: CronSchedule,
    pub min_cron_interval_hours: u32,

    // Safety controls.
    pub dry_run: bool,
    /// EXECUTION_KILL_SWITCH at start-up (it can also be toggled at runtime).
    pub kill_switch: bool,
    /// 0 = unlimited.
    pub max_daily_runs: u32,
    /// MAX_CLAIMABLE_SOL_PER_RUN in lamports.
    pub max_claimable_lamports_per_run: u64,
    /// MAX_KEY_LIMIT_USD in micro-USD (whole cents).
    pub max_key_limit_micro_usd: i64,
    pub key_rotation_days: u32,
    pub usage_poll_interval: Duration,

    // Bags agent (optional).
    pub bags_agent_username: Option<String>,
    pub bags_agent_jwt: Option<Secret>,
    pub bags_agent_wallet_address: Option<Pubkey>,

    // Server, storage, telemetry.
    pub host: IpAddr,
    pub port: u16,
    /// The SQLite file: from DATABASE_URL when that is set, else DATABASE_PATH.
    pub database_path: PathBuf,
    /// DATABASE_URL as given (only `sqlite:` URLs pass validation).
    pub database_url: Option<String>,
    pub admin_socket_path: PathBuf,
    pub log_level: LogLevel,
    /// Accepted for compatibility with the seed runbook's `.env` files; changes nothing.
    pub node_env: NodeEnv,

    // Integrations.
    /// No trailing slash.
    pub bags_api_base_url: String,
    /// No trailing slash.
    pub openrouter_base_url: String,
    /// Encrypts holders' plaintext OpenRouter keys at rest until they reveal them.
    pub key_encryption_key: Option<EncryptionKey>,
    pub health_probe_interval: Duration,
    /// How long an integration's breaker stays open before one probe is let through.
    pub breaker_cooldown: Duration,
    /// How long one request to Bags, Solana RPC, Helius or OpenRouter may take (30 s). Not an
    /// environment variable: tests of hanging services shorten it on the `Config` they build.
    pub integration_request_timeout: Duration,

    // HTTP API.
    /// Origins allowed to call `/api/*` from a browser (exact `scheme://host[:port]`); empty =
    /// no CORS headers at all.
    pub cors_allowed_origins: Vec<String>,
    /// Requests per minute one client address may make to `/api/*`.
    pub api_rate_limit_per_min: u32,
    /// Requests per minute one client address may make to `/holder/*` (reveal, rotate).
    pub holder_rate_limit_per_min: u32,

    // Built in, not read from the environment.
    /// OpenRouter requests in flight at once (the OpenRouterActor's cap, which PROVISIONING
    /// fills): [`DEFAULT_MAX_CONCURRENCY`](creditbrain_actors::openrouter::DEFAULT_MAX_CONCURRENCY).
    /// OpenRouter publishes no management-API limit, so this is no operator setting; a program
    /// embedding the daemon (the benchmarks) may change it before `daemon::start`.
    pub openrouter_max_concurrency: usize,

    /// Where each variable's value came from, for `describe()`.
    sources: BTreeMap<&'static str, ValueSource>,
}

/// One line of `creditbrain config check`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ConfigRow {
    pub name: &'static str,
    /// The effective value; secrets as `<redacted>`, an unset optional value as `(not set)`.
    pub value: String,
    pub source: ValueSource,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ValueSource {
    /// The process environment.
    #[serde(rename = "env")]
    Env,
    /// The `.env` file in the working directory.
    #[serde(rename = ".env")]
    DotEnv,
    /// Not set (or set to blank): the default applies.
    #[serde(rename = "default")]
    Default,
}

impl ValueSource {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Env => "env",
            Self::DotEnv => ".env",
            Self::Default => "default",
        }
    }
}

impl fmt::Display for ValueSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every problem found, in variable order. Messages never contain a secret's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors {
    pub problems: Vec<ConfigProblem>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The variable (or `.env`, or both signer variables) the problem is about.
    pub variable: String,
    pub message: String,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration: {} problem(s)",
            self.problems.len()
        )?;
        for problem in &self.problems {
            write!(f, "\n  {}: {}", problem.variable, problem.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A 32-byte symmetric key. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptionKey([u8; 32]);

impl EncryptionKey {
    /// The key bytes. Call it only where the key is used (the cipher).
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey(***)")
    }
}

/// Declares a closed set of accepted words (matched case-insensitively) and their enum.
macro_rules! choice_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [(&'static str, $name)] = &[$(($word, $name::$variant)),+];

            /// The word used in the environment (and in logs and the database).
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

choice_enum!(
    /// LOG_LEVEL.
    LogLevel { Debug => "debug", Info => "info", Warn => "warn", Error => "error" }
);
choice_enum!(
    /// SOLANA_NETWORK.
    SolanaNetwork { MainnetBeta => "mainnet-beta", Devnet => "devnet" }
);
// FEE_SOURCE, DISTRIBUTION_MODE and KEY_LIMIT_RESET are the strategy's own types: the
// environment only supplies defaults for strategies.
pub use creditbrain_actors::strategy::{DistributionMode, FeeSource, LimitReset};

choice_enum!(
    /// NODE_ENV: validated for compatibility with the seed runbook's `.env` files; no effect.
    NodeEnv { Development => "development", Production => "production", Test => "test" }
);

impl Config {
    /// Reads `.env` in the current working directory if present (real environment variables win
    /// over `.env`), then validates. The process environment is never modified.
    pub fn load() -> Result<Config, ConfigErrors> {
        let (env, problems) = process_env();
        assemble(&env, Some(Path::new(".env")), problems)
    }

    /// Pure: validates a name→value map (tests use this). Unknown variables are ignored.
    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Config, ConfigErrors> {
        let sources = vars
            .iter()
            .filter(|(_, value)| !value.trim().is_empty())
            .filter_map(|(name, _)| known(name).map(|name| (name, ValueSource::Env)))
            .collect();
        validate(vars, sources, Vec::new())
    }

    /// [`load`](Self::load) with the environment passed in: `env` wins over the file at
    /// `dotenv_path` (a missing file is fine). A variable set to blank in `env` counts as unset
    /// there, so a value in the file still applies.
    pub fn from_sources(
        env: &BTreeMap<String, String>,
        dotenv_path: Option<&Path>,
    ) -> Result<Config, ConfigErrors> {
        assemble(env, dotenv_path, Vec::new())
    }

    /// One row per variable, in [`VARIABLES`] order, with secrets redacted.
    pub fn describe(&self) -> Vec<ConfigRow> {
        VARIABLES
            .iter()
            .map(|&name| ConfigRow {
                name,
                value: self.render(name),
                source: self
                    .sources
                    .get(name)
                    .copied()
                    .unwrap_or(ValueSource::Default),
            })
            .collect()
    }

    fn render(&self, name: &str) -> String {
        const REDACTED: &str = "<redacted>";
        const NOT_SET: &str = "(not set)";
        let secret = |s: &Option<Secret>| if s.is_some() { REDACTED } else { NOT_SET }.to_owned();
        let optional = |s: Option<String>| s.unwrap_or_else(|| NOT_SET.to_owned());
        let usd = |micro: i64| {
            format!(
                "{}.{:02}",
                micro / MICRO_USD_PER_USD,
                (micro % MICRO_USD_PER_USD) / MICRO_USD_PER_CENT
            )
        };
        match name {
            "BAGS_API_KEY" | "HELIUS_API_KEY" | "OPENROUTER_MANAGEMENT_KEY" | "API_AUTH_TOKEN" => {
                REDACTED.to_owned()
            }
            "SOLANA_NETWORK" => self.solana_network.to_string(),
            "EVM_PRIVATE_KEY" => secret(&self.evm_private_key),
            "EVM_CHAIN_ID" => self.evm_chain_id.to_string(),
            "FEE_THRESHOLD_SOL" => values::format_decimal(self.fee_threshold_lamports, 9),
            "FEE_SOURCE" => self.fee_source.to_string(),
            "SWAP_SLIPPAGE_BPS" => self.swap_slippage_bps.to_string(),
            "DEFAULT_KEY_LIMIT_USD" => usd(self.default_key_limit_micro_usd),
            "KEY_LIMIT_RESET" => self
                .key_limit_reset
                .map_or("null", |reset| reset.as_str())
                .to_owned(),
            "KEY_EXPIRY_DAYS" => self.key_expiry_days.to_string(),
            "CREDIT_POOL_RESERVE_PCT" => {
                values::format_decimal(u64::from(self.credit_pool_reserve_bps), 2)
            }
            "DISTRIBUTION_MODE" => self.distribution_mode.to_string(),
            "DISTRIBUTION_TOP_N" => self.distribution_top_n.to_string(),
            "DISTRIBUTION_TOKEN_MINT" => {
                optional(self.distribution_token_mint.map(|k| k.to_string()))
            }
            "CRON_EXPRESSION" => self.cron_schedule.source().to_owned(),
            "MIN_CRON_INTERVAL_HOURS" => self.min_cron_interval_hours.to_string(),
            "DRY_RUN" => self.dry_run.to_string(),
            "EXECUTION_KILL_SWITCH" => self.kill_switch.to_string(),
            "MAX_DAILY_RUNS" => self.max_daily_runs.to_string(),
            "MAX_CLAIMABLE_SOL_PER_RUN" => {
                values::format_decimal(self.max_claimable_lamports_per_run, 9)
            }
            "MAX_KEY_LIMIT_USD" => usd(self.max_key_limit_micro_usd),
            "KEY_ROTATION_DAYS" => self.key_rotation_days.to_string(),
            "USAGE_POLL_INTERVAL_MIN" => (self.usage_poll_interval.as_secs() / 60).to_string(),
            "BAGS_AGENT_USERNAME" => optional(self.bags_agent_username.clone()),
            "BAGS_AGENT_JWT" => secret(&self.bags_agent_jwt),
            "BAGS_AGENT_WALLET_ADDRESS" => {
                optional(self.bags_agent_wallet_address.map(|k| k.to_string()))
            }
            "PORT" => self.port.to_string(),
            "DATABASE_PATH" => {
                let path = self.database_path.display().to_string();
                if self.database_url.is_some() {
                    format!("{path} (from DATABASE_URL)")
                } else {
                    path
                }
            }
            "LOG_LEVEL" => self.log_level.to_string(),
            "NODE_ENV" => format!("{} (no effect)", self.node_env),
            "BAGS_API_BASE_URL" => self.bags_api_base_url.clone(),
            "HELIUS_RPC_URL" => values::redact_url(self.helius_rpc_url.expose()),
            "SIGNER_KEYPAIR_PATH" => match &self.signer {
                SignerSource::KeypairPath(path) => {
                    format!("{} (pubkey {})", path.display(), self.signer_pubkey)
                }
                SignerSource::PrivateKey(_) => NOT_SET.to_owned(),
            },
            "SIGNER_PRIVATE_KEY" => match &self.signer {
                SignerSource::PrivateKey(_) => {
                    format!("{REDACTED} (pubkey {})", self.signer_pubkey)
                }
                SignerSource::KeypairPath(_) => NOT_SET.to_owned(),
            },
            "SOLANA_RPC_URL" => values::redact_url(self.solana_rpc_url.expose()),
            "OPENROUTER_BASE_URL" => self.openrouter_base_url.clone(),
            "HOST" => self.host.to_string(),
            "ADMIN_SOCKET_PATH" => self.admin_socket_path.display().to_string(),
            "DATABASE_URL" => optional(self.database_url.clone()),
            "KEY_ENCRYPTION_KEY" => if self.key_encryption_key.is_some() {
                REDACTED
            } else {
                NOT_SET
            }
            .to_owned(),
            "HEALTH_PROBE_INTERVAL_SEC" => self.health_probe_interval.as_secs().to_string(),
            "BREAKER_COOLDOWN_SEC" => self.breaker_cooldown.as_secs().to_string(),
            "CORS_ALLOWED_ORIGINS" => {
                if self.cors_allowed_origins.is_empty() {
                    NOT_SET.to_owned()
                } else {
                    self.cors_allowed_origins.join(",")
                }
            }
            "API_RATE_LIMIT_PER_MIN" => self.api_rate_limit_per_min.to_string(),
            "HOLDER_RATE_LIMIT_PER_MIN" => self.holder_rate_limit_per_min.to_string(),
            _ => "(unknown variable)".to_owned(),
        }
    }
}

impl Config {
    /// The environment's defaults for what a new strategy leaves out.
    pub fn strategy_defaults(&self) -> creditbrain_actors::strategy::StrategyDefaults {
        creditbrain_actors::strategy::StrategyDefaults {
            token_mint: self.distribution_token_mint,
            fee_source: self.fee_source,
            threshold_lamports: self.fee_threshold_lamports,
            slippage_bps: self.swap_slippage_bps,
            distribution_mode: self.distribution_mode,
            top_n: self.distribution_top_n,
            max_grant_micro_usd: self.default_key_limit_micro_usd,
            max_key_limit_micro_usd: self.max_key_limit_micro_usd,
            key_limit_reset: self.key_limit_reset,
            key_expiry_days: self.key_expiry_days,
            reserve_bps: self.credit_pool_reserve_bps,
            cron_schedule: self.cron_schedule.clone(),
            min_cron_interval_hours: self.min_cron_interval_hours,
        }
    }
}

/// ADMIN_SOCKET_PATH alone (environment, then `.env`, then the default), for CLI client commands
/// that talk to a running daemon and must not require the daemon's secrets.
pub fn socket_path_from_env() -> PathBuf {
    socket_path_from_sources(
        std::env::var_os("ADMIN_SOCKET_PATH"),
        Some(Path::new(".env")),
    )
}

fn socket_path_from_sources(
    env_value: Option<std::ffi::OsString>,
    dotenv: Option<&Path>,
) -> PathBuf {
    // A non-UTF-8 path from the environment is still a valid path: keep it as bytes.
    if let Some(value) = env_value {
        match value.to_str() {
            Some(text) if text.trim().is_empty() => {}
            Some(text) => return PathBuf::from(text.trim()),
            None => return PathBuf::from(value),
        }
    }
    if let Some(path) = dotenv {
        // Errors in `.env` are `config check`'s business; here they just mean "not in .env".
        let (vars, _) = read_dotenv(path);
        if let Some(text) = vars
            .get("ADMIN_SOCKET_PATH")
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
        {
            return PathBuf::from(text);
        }
    }
    PathBuf::from(DEFAULT_SOCKET_PATH)
}

fn known(name: &str) -> Option<&'static str> {
    VARIABLES.iter().copied().find(|known| *known == name)
}

/// Our variables from the process environment. `std::env::vars` would panic on a non-UTF-8
/// value anywhere in the environment; here only ours are looked at, and reported if unreadable.
fn process_env() -> (BTreeMap<String, String>, Vec<ConfigProblem>) {
    let mut vars = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str().and_then(known) else {
            continue;
        };
        match value.into_string() {
            Ok(value) => {
                vars.insert(name.to_owned(), value);
            }
            Err(_) => problems.push(problem(name, "is not valid UTF-8")),
        }
    }
    (vars, problems)
}

fn problem(variable: &str, message: impl Into<String>) -> ConfigProblem {
    ConfigProblem {
        variable: variable.to_owned(),
        message: message.into(),
    }
}

/// Our variables from a `.env` file, and what was wrong with it. A missing file is not a problem.
/// The first definition of a variable is the one used (dotenvy's rule), and a second one is
/// reported: an appended `DRY_RUN=true` that silently does nothing is a trap.
fn read_dotenv(path: &Path) -> (BTreeMap<String, String>, Vec<ConfigProblem>) {
    let mut vars = BTreeMap::new();
    let mut problems = Vec::new();
    let label = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return (vars, problems),
        Err(err) => {
            problems.push(problem(&label, format!("cannot read the file: {err}")));
            return (vars, problems);
        }
    };
    let Ok(text) = String::from_utf8(bytes) else {
        problems.push(problem(&label, "is not valid UTF-8"));
        return (vars, problems);
    };
    // dotenvy strips a UTF-8 byte-order mark only in its `load` functions, not its iterators.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut duplicates = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok((name, value)) => {
                let Some(name) = known(&name) else { continue };
                if vars.contains_key(name) {
                    if !duplicates.contains(&name) {
                        duplicates.push(name);
                        problems.push(problem(
                            name,
                            format!("is defined more than once in {label}; the first definition is used, delete the others"),
                        ));
                    }
                } else {
                    vars.insert(name.to_owned(), value);
                }
            }
            // The offending line may hold a secret: name its line number and variable only.
            Err(dotenvy::Error::LineParse(line, _)) => {
                let line_number = text
                    .find(line.trim_end())
                    .map(|at| text[..at].matches('\n').count() + 1);
                let name = line
                    .trim_start()
                    .trim_start_matches("export ")
                    .split('=')
                    .next()
                    .map(str::trim)
                    .filter(|n| {
                        !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    });
                let mut message = "cannot parse".to_owned();
                if let Some(n) = line_number {
                    message.push_str(&format!(" line {n}"));
                }
                if let Some(name) = name {
                    message.push_str(&format!(" (the definition of {name})"));
                }
                message
                    .push_str("; the line is not shown since it may hold a secret (check quoting)");
                problems.push(problem(&label, message));
            }
            Err(err) => {
                problems.push(problem(&label, format!("cannot read the file: {err}")));
                break;
            }
        }
    }
    (vars, problems)
}

/// Merges the environment over `.env` (blank counts as unset at each level), then validates.
fn assemble(
    env: &BTreeMap<String, String>,
    dotenv_path: Option<&Path>,
    mut problems: Vec<ConfigProblem>,
) -> Result<Config, ConfigErrors> {
    let mut merged = BTreeMap::new();
    let mut sources = BTreeMap::new();
    if let Some(path) = dotenv_path {
        let (file_vars, file_problems) = read_dotenv(path);
        problems.extend(file_problems);
        for (name, value) in file_vars {
            if let Some(name) = known(&name).filter(|_| !value.trim().is_empty()) {
                sources.insert(name, ValueSource::DotEnv);
                merged.insert(name.to_owned(), value);
            }
        }
    }
    for (name, value) in env {
        if let Some(name) = known(name).filter(|_| !value.trim().is_empty()) {
            sources.insert(name, ValueSource::Env);
            merged.insert(name.to_owned(), value.clone());
        }
    }
    validate(&merged, sources, problems)
}

/// Reads variables, recording a problem for each bad one instead of stopping.
struct Reader<'a> {
    vars: &'a BTreeMap<String, String>,
    problems: Vec<ConfigProblem>,
}

fn range_text(min: u64, max: Option<u64>) -> String {
    match max {
        Some(max) => format!("from {min} to {max}"),
        None => format!("of at least {min}"),
    }
}

/// How an amount variable is read: its unit's name and how many decimals it has.
struct Amount {
    what: &'static str,
    decimals: u32,
    smallest: &'static str,
}

const SOL: Amount = Amount {
    what: "a SOL amount",
    decimals: 9,
    smallest: "1 lamport = 0.000000001 SOL",
};
const USD: Amount = Amount {
    what: "a USD amount",
    decimals: 2,
    smallest: "key limits are whole cents",
};
const PERCENT: Amount = Amount {
    what: "a percentage",
    decimals: 2,
    smallest: "the reserve is kept in basis points, 0.01 %",
};

impl Reader<'_> {
    /// The trimmed value; `None` when unset or blank (blank counts as unset).
    fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|value| value.trim())
            .filter(|value| !value.is_empty())
    }

    fn problem(&mut self, name: &str, message: impl Into<String>) {
        self.problems.push(problem(name, message));
    }

    fn required_secret(&mut self, name: &str, hint: &str) -> Option<Secret> {
        let value = self.get(name).map(Secret::new);
        if value.is_none() {
            self.problem(name, format!("is required but not set ({hint})"));
        }
        value
    }

    fn optional_secret(&self, name: &str) -> Option<Secret> {
        self.get(name).map(Secret::new)
    }

    fn integer<T: TryFrom<u64>>(
        &mut self,
        name: &str,
        default: T,
        min: u64,
        max: Option<u64>,
    ) -> Option<T> {
        let Some(text) = self.get(name) else {
            return Some(default);
        };
        let parsed = values::parse_u64(text)
            .filter(|value| *value >= min && max.is_none_or(|max| *value <= max))
            .and_then(|value| T::try_from(value).ok());
        if parsed.is_none() {
            let message = format!("must be an integer {}, got {text:?}", range_text(min, max));
            self.problem(name, message);
        }
        parsed
    }

    /// An exact decimal amount in `10^-decimals` units.
    fn amount(
        &mut self,
        name: &str,
        unit: &Amount,
        default: u64,
        min: u64,
        max: Option<u64>,
    ) -> Option<u64> {
        let Some(text) = self.get(name) else {
            return Some(default);
        };
        let show = |units: u64| values::format_decimal(units, unit.decimals);
        let range = match max {
            Some(max) => format!("from {} to {}", show(min), show(max)),
            None => format!("of at least {}", show(min)),
        };
        let expected = format!(
            "must be {} {range} with at most {} decimals",
            unit.what, unit.decimals
        );
        match values::parse_decimal(text, unit.decimals) {
            Ok(units) if units >= min && max.is_none_or(|max| units <= max) => Some(units),
            Err(values::DecimalError::TooManyDecimals) => {
                let message = format!("{expected} ({}), got {text:?}", unit.smallest);
                self.problem(name, message);
                None
            }
            Ok(_) | Err(_) => {
                self.problem(name, format!("{expected}, got {text:?}"));
                None
            }
        }
    }

    fn boolean(&mut self, name: &str, default: bool) -> Option<bool> {
        let Some(text) = self.get(name) else {
            return Some(default);
        };
        let parsed = values::parse_bool(text);
        if parsed.is_none() {
            let message = format!("must be one of {}, got {text:?}", values::BOOLEAN_WORDS);
            self.problem(name, message);
        }
        parsed
    }

    fn choice<T: Copy>(&mut self, name: &str, default: T, options: &[(&str, T)]) -> Option<T> {
        let Some(text) = self.get(name) else {
            return Some(default);
        };
        let found = options
            .iter()
            .find(|(word, _)| word.eq_ignore_ascii_case(text))
            .map(|(_, value)| *value);
        if found.is_none() {
            let words: Vec<&str> = options.iter().map(|(word, _)| *word).collect();
            let message = format!("must be one of {}, got {text:?}", words.join(", "));
            self.problem(name, message);
        }
        found
    }

    /// A file-system path. `~` is refused: nothing expands it in `.env` or systemd.
    fn path(&mut self, name: &str, default: &str) -> Option<PathBuf> {
        let text = self.get(name).unwrap_or(default);
        if text.starts_with('~') {
            self.problem(
                name,
                format!("`~` is not expanded here; write the full path, got {text:?}"),
            );
            return None;
        }
        Some(PathBuf::from(text))
    }

    fn base_url(&mut self, name: &str, default: &str) -> Option<String> {
        let text = self.get(name).unwrap_or(default);
        match values::parse_base_url(text) {
            Ok(url) => Some(url),
            Err(reason) => {
                self.problem(name, format!("{reason}, got {text:?}"));
                None
            }
        }
    }

    /// An RPC URL that may carry an API key: validated, never quoted in a message.
    /// `Some(None)` when unset.
    fn secret_url(&mut self, name: &str) -> Option<Option<Secret>> {
        let Some(text) = self.get(name) else {
            return Some(None);
        };
        match values::parse_http_url(text) {
            Ok(_) => Some(Some(Secret::new(text))),
            Err(reason) => {
                self.problem(
                    name,
                    format!("{reason} (value not shown: it may hold an API key)"),
                );
                None
            }
        }
    }

    /// An optional base58 Solana address. `Some(None)` when unset.
    fn pubkey(&mut self, name: &str) -> Option<Option<Pubkey>> {
        let Some(text) = self.get(name) else {
            return Some(None);
        };
        match Pubkey::from_str(text) {
            Ok(key) => Some(Some(key)),
            Err(_) => {
                let message = format!("must be a base58 Solana address (32 bytes), got {text:?}");
                self.problem(name, message);
                None
            }
        }
    }
}

/// The secp256k1 group order: a private key must be in `1..n`.
const SECP256K1_ORDER: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE,
    0xBA, 0xAE, 0xDC, 0xE6, 0xAF, 0x48, 0xA0, 0x3B, 0xBF, 0xD2, 0x5E, 0x8C, 0xD0, 0x36, 0x41, 0x41,
];

fn evm_private_key(reader: &mut Reader<'_>) -> Option<Option<Secret>> {
    let Some(text) = reader.get("EVM_PRIVATE_KEY") else {
        return Some(None);
    };
    match values::parse_hex32(text) {
        None => {
            reader.problem(
                "EVM_PRIVATE_KEY",
                "must be 64 hex characters, optionally 0x-prefixed (value not shown)",
            );
            None
        }
        Some(bytes) if bytes == [0; 32] || bytes >= SECP256K1_ORDER => {
            reader.problem(
                "EVM_PRIVATE_KEY",
                "is not a valid secp256k1 private key: it must be above zero and below the curve order",
            );
            None
        }
        Some(_) => Some(Some(Secret::new(text))),
    }
}

fn encryption_key(reader: &mut Reader<'_>) -> Option<Option<EncryptionKey>> {
    let Some(text) = reader.get("KEY_ENCRYPTION_KEY") else {
        return Some(None);
    };
    let bytes = if text.len() == 64 {
        values::parse_hex32(text)
    } else {
        values::parse_base64_32(text)
    };
    match bytes {
        Some(bytes) if bytes == [0; 32] => {
            reader.problem("KEY_ENCRYPTION_KEY", "must not be all zeros");
            None
        }
        Some(bytes) => Some(Some(EncryptionKey(bytes))),
        None => {
            reader.problem(
                "KEY_ENCRYPTION_KEY",
                "must be 32 bytes written as 64 hex characters or as standard base64 (44 characters), \
                 e.g. the output of `openssl rand -hex 32` (value not shown)",
            );
            None
        }
    }
}

/// Exactly one of SIGNER_KEYPAIR_PATH and SIGNER_PRIVATE_KEY, decoded into a valid keypair.
fn signer(reader: &mut Reader<'_>) -> Option<(SignerSource, Pubkey)> {
    let source = match (
        reader.get("SIGNER_KEYPAIR_PATH"),
        reader.get("SIGNER_PRIVATE_KEY"),
    ) {
        (Some(_), Some(_)) => {
            reader.problem(
                SIGNER_VARIABLES,
                "both SIGNER_KEYPAIR_PATH and SIGNER_PRIVATE_KEY are set; set exactly one",
            );
            return None;
        }
        (None, None) => {
            reader.problem(
                SIGNER_VARIABLES,
                "is required but not set: set exactly one of SIGNER_KEYPAIR_PATH (a Solana CLI \
                 keypair file) or SIGNER_PRIVATE_KEY (base58 or a JSON array of 64 bytes)",
            );
            return None;
        }
        (Some(_), None) => SignerSource::KeypairPath(reader.path("SIGNER_KEYPAIR_PATH", "")?),
        (None, Some(key)) => SignerSource::PrivateKey(Secret::new(key)),
    };
    let variable = match source {
        SignerSource::KeypairPath(_) => "SIGNER_KEYPAIR_PATH",
        SignerSource::PrivateKey(_) => "SIGNER_PRIVATE_KEY",
    };
    match source.keypair() {
        Ok(keypair) => Some((source, keypair.pubkey())),
        Err(err) => {
            reader.problem(variable, err.to_string());
            None
        }
    }
}

/// `sqlite:` / `sqlite://` URLs name the database file (as sqlx reads them); everything else is
/// refused. The value is never quoted: a Postgres URL carries a password.
fn database_url(reader: &mut Reader<'_>) -> Option<Option<(String, PathBuf)>> {
    let Some(text) = reader.get("DATABASE_URL") else {
        return Some(None);
    };
    let lower = text.to_ascii_lowercase();
    let reason = if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        "Postgres is not supported yet; unset DATABASE_URL to use SQLite at DATABASE_PATH"
    } else if let Some(rest) = text
        .strip_prefix("sqlite://")
        .or_else(|| text.strip_prefix("sqlite:"))
    {
        if rest.is_empty() {
            "names no database file (write sqlite://path/to/file.db)"
        } else if rest == ":memory:" || rest.contains("mode=memory") {
            "an in-memory database would lose every run on restart; name a file"
        } else if rest.contains(['?', '#']) {
            "query parameters are not supported (the daemon sets WAL, the busy timeout and \
             create-if-missing itself)"
        } else {
            return Some(Some((text.to_owned(), PathBuf::from(rest))));
        }
    } else {
        "must be a sqlite: or sqlite:// URL, or unset to use DATABASE_PATH (value not shown)"
    };
    reader.problem("DATABASE_URL", reason);
    None
}

/// CORS_ALLOWED_ORIGINS: comma-separated `http(s)://host[:port]` origins, no path; empty = none.
fn cors_origins(r: &mut Reader) -> Option<Vec<String>> {
    let text = r.get("CORS_ALLOWED_ORIGINS").unwrap_or("").to_owned();
    let mut origins = Vec::new();
    for origin in text.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let valid = Url::parse(origin).ok().is_some_and(|url| {
            matches!(url.scheme(), "http" | "https")
                && url.host_str().is_some()
                && url.origin().ascii_serialization() == origin
        });
        if !valid {
            let message = format!(
                "must be comma-separated origins such as https://dash.example.com (scheme, host, \
                 optional port; no path or trailing slash), got {origin:?}"
            );
            r.problem("CORS_ALLOWED_ORIGINS", message);
            return None;
        }
        origins.push(origin.to_owned());
    }
    Some(origins)
}

fn human_gap(gap: chrono::Duration) -> String {
    let minutes = gap.num_minutes();
    if minutes % 60 == 0 {
        format!("{} h", minutes / 60)
    } else {
        format!("{minutes} min")
    }
}

/// Every variable, read in [`VARIABLES`] order; all problems collected before giving up.
fn validate(
    vars: &BTreeMap<String, String>,
    sources: BTreeMap<&'static str, ValueSource>,
    problems: Vec<ConfigProblem>,
) -> Result<Config, ConfigErrors> {
    let mut r = Reader { vars, problems };

    let bags_api_key = r.required_secret("BAGS_API_KEY", "get one at bags.fm/developers");
    let helius_api_key = r.required_secret("HELIUS_API_KEY", "get one at helius.dev");
    let openrouter_management_key = r.required_secret(
        "OPENROUTER_MANAGEMENT_KEY",
        "OpenRouter dashboard: Settings → Management API Keys",
    );
    let api_auth_token =
        r.required_secret("API_AUTH_TOKEN", "the bearer token clients send to /api/*");
    let solana_network = r.choice(
        "SOLANA_NETWORK",
        SolanaNetwork::MainnetBeta,
        SolanaNetwork::ALL,
    );
    let evm_private_key = evm_private_key(&mut r);
    let evm_chain_id: Option<u64> = r.integer("EVM_CHAIN_ID", 8453, 1, None);

    let fee_threshold_lamports = r.amount(
        "FEE_THRESHOLD_SOL",
        &SOL,
        5 * LAMPORTS_PER_SOL,
        LAMPORTS_PER_SOL,
        Some(100 * LAMPORTS_PER_SOL),
    );
    let fee_source = r.choice(
        "FEE_SOURCE",
        FeeSource::ClaimablePositions,
        &FeeSource::ALL
            .iter()
            .map(|v| (v.as_str(), *v))
            .collect::<Vec<_>>(),
    );
    let swap_slippage_bps: Option<u16> = r.integer("SWAP_SLIPPAGE_BPS", 50, 0, Some(1000));

    let default_key_limit_cents = r.amount("DEFAULT_KEY_LIMIT_USD", &USD, 1000, 100, None);
    let reset_options = [
        ("daily", Some(LimitReset::Daily)),
        ("weekly", Some(LimitReset::Weekly)),
        ("monthly", Some(LimitReset::Monthly)),
        ("null", None),
    ];
    let key_limit_reset = r.choice("KEY_LIMIT_RESET", Some(LimitReset::Monthly), &reset_options);
    let key_expiry_days: Option<u32> =
        r.integer("KEY_EXPIRY_DAYS", 365, 0, Some(MAX_KEY_EXPIRY_DAYS));
    let credit_pool_reserve_bps = r
        .amount("CREDIT_POOL_RESERVE_PCT", &PERCENT, 1000, 0, Some(5000))
        .and_then(|bps| u16::try_from(bps).ok());
    let distribution_mode = r.choice(
        "DISTRIBUTION_MODE",
        DistributionMode::TopNHolders,
        &DistributionMode::ALL
            .iter()
            .map(|v| (v.as_str(), *v))
            .collect::<Vec<_>>(),
    );
    let distribution_top_n: Option<u32> = r.integer("DISTRIBUTION_TOP_N", 100, 1, None);
    let distribution_token_mint = r.pubkey("DISTRIBUTION_TOKEN_MINT");

    let cron_text = r.get("CRON_EXPRESSION").unwrap_or(DEFAULT_CRON).to_owned();
    let cron_schedule = match CronSchedule::parse(&cron_text) {
        Ok(schedule) => Some(schedule),
        Err(err) => {
            r.problem("CRON_EXPRESSION", format!("{err}, got {cron_text:?}"));
            None
        }
    };
    let min_cron_interval_hours: Option<u32> = r.integer("MIN_CRON_INTERVAL_HOURS", 1, 1, None);
    if let (Some(schedule), Some(hours)) = (&cron_schedule, min_cron_interval_hours) {
        let minimum = chrono::Duration::hours(i64::from(hours));
        if let Some((earlier, later)) = schedule.first_gap_shorter_than(Utc::now(), minimum) {
            let message = format!(
                "{cron_text:?} fires {} apart (at {} and {}), less than MIN_CRON_INTERVAL_HOURS={hours}",
                human_gap(later - earlier),
                earlier.format("%Y-%m-%d %H:%M UTC"),
                later.format("%H:%M UTC"),
            );
            r.problem("CRON_EXPRESSION", message);
        }
    }

    let dry_run = r.boolean("DRY_RUN", false);
    let kill_switch = r.boolean("EXECUTION_KILL_SWITCH", false);
    let max_daily_runs: Option<u32> = r.integer("MAX_DAILY_RUNS", 4, 0, None);
    let max_claimable_lamports_per_run = r.amount(
        "MAX_CLAIMABLE_SOL_PER_RUN",
        &SOL,
        100 * LAMPORTS_PER_SOL,
        0,
        None,
    );
    let max_key_limit_cents = r.amount("MAX_KEY_LIMIT_USD", &USD, 10_000, 100, Some(1_000_000));
    if let (Some(default), Some(max)) = (default_key_limit_cents, max_key_limit_cents)
        && default > max
    {
        let message = format!(
            "must not exceed MAX_KEY_LIMIT_USD ({}), got {:?}",
            values::format_decimal(max, 2),
            values::format_decimal(default, 2),
        );
        r.problem("DEFAULT_KEY_LIMIT_USD", message);
    }
    let key_rotation_days: Option<u32> = r.integer("KEY_ROTATION_DAYS", 90, 1, Some(365));
    let usage_poll_minutes: Option<u64> = r.integer("USAGE_POLL_INTERVAL_MIN", 15, 1, Some(1440));

    let bags_agent_username = r.get("BAGS_AGENT_USERNAME").map(str::to_owned);
    let bags_agent_jwt = r.optional_secret("BAGS_AGENT_JWT");
    let bags_agent_wallet_address = r.pubkey("BAGS_AGENT_WALLET_ADDRESS");

    let port: Option<u16> = r.integer("PORT", 3001, 0, Some(65535));
    let database_path_setting = r.path("DATABASE_PATH", DEFAULT_DATABASE_PATH);
    let log_level = r.choice("LOG_LEVEL", LogLevel::Info, LogLevel::ALL);
    let node_env = r.choice("NODE_ENV", NodeEnv::Development, NodeEnv::ALL);
    let bags_api_base_url = r.base_url("BAGS_API_BASE_URL", DEFAULT_BAGS_API_BASE_URL);
    let helius_rpc_url_setting = r.secret_url("HELIUS_RPC_URL");

    let signer = signer(&mut r);
    let solana_rpc_url_setting = r.secret_url("SOLANA_RPC_URL");
    let openrouter_base_url = r.base_url("OPENROUTER_BASE_URL", DEFAULT_OPENROUTER_BASE_URL);
    let host = match r.get("HOST") {
        None => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        Some(text) => {
            let parsed = text.parse::<IpAddr>().ok();
            if parsed.is_none() {
                let message =
                    format!("must be an IP address such as 0.0.0.0, 127.0.0.1 or ::, got {text:?}");
                r.problem("HOST", message);
            }
            parsed
        }
    };
    let admin_socket_path = r.path("ADMIN_SOCKET_PATH", DEFAULT_SOCKET_PATH);
    if let Some(path) = &admin_socket_path {
        let length = path.as_os_str().len();
        if length > MAX_SOCKET_PATH_BYTES {
            let message = format!(
                "is {length} bytes long; a Unix socket path may be at most {MAX_SOCKET_PATH_BYTES} \
                 bytes, got {:?}",
                path.display().to_string()
            );
            r.problem("ADMIN_SOCKET_PATH", message);
        }
    }
    let database_url = database_url(&mut r);
    let key_encryption_key = encryption_key(&mut r);
    let health_probe_seconds: Option<u64> =
        r.integer("HEALTH_PROBE_INTERVAL_SEC", 15, 1, Some(3600));
    let breaker_cooldown_seconds: Option<u64> =
        r.integer("BREAKER_COOLDOWN_SEC", 30, 1, Some(3600));
    let cors_allowed_origins = cors_origins(&mut r);
    let api_rate_limit_per_min: Option<u32> =
        r.integer("API_RATE_LIMIT_PER_MIN", 600, 1, Some(1_000_000));
    let holder_rate_limit_per_min: Option<u32> =
        r.integer("HOLDER_RATE_LIMIT_PER_MIN", 10, 1, Some(10_000));

    // The default Helius URL carries the key in its query, as Helius documents it.
    let helius_rpc_url = match (&helius_rpc_url_setting, &helius_api_key, solana_network) {
        (Some(Some(url)), _, _) => Some(url.clone()),
        (Some(None), Some(key), Some(network)) => {
            let host = match network {
                SolanaNetwork::MainnetBeta => "https://mainnet.helius-rpc.com/",
                SolanaNetwork::Devnet => "https://devnet.helius-rpc.com/",
            };
            Url::parse(host).ok().map(|mut url| {
                url.query_pairs_mut().append_pair("api-key", key.expose());
                Secret::new(String::from(url))
            })
        }
        _ => None,
    };
    let solana_rpc_url = match (&solana_rpc_url_setting, &helius_rpc_url) {
        (Some(Some(url)), _) => Some(url.clone()),
        (Some(None), Some(helius)) => Some(helius.clone()),
        _ => None,
    };

    let Reader { problems, .. } = r;
    if !problems.is_empty() {
        return Err(ConfigErrors { problems });
    }
    let (database_url, database_path) = match database_url {
        Some(Some((url, path))) => (Some(url), Some(path)),
        Some(None) => (None, database_path_setting),
        None => (None, None),
    };
    // With no problem recorded every value above is `Some`; a `None` here is a bug in this file.
    let config = (|| {
        let (signer, signer_pubkey) = signer?;
        Some(Config {
            bags_api_key: bags_api_key?,
            helius_api_key: helius_api_key?,
            openrouter_management_key: openrouter_management_key?,
            api_auth_token: api_auth_token?,
            solana_network: solana_network?,
            helius_rpc_url: helius_rpc_url?,
            solana_rpc_url: solana_rpc_url?,
            signer,
            signer_pubkey,
            evm_private_key: evm_private_key?,
            evm_chain_id: evm_chain_id?,
            fee_threshold_lamports: fee_threshold_lamports?,
            fee_source: fee_source?,
            swap_slippage_bps: swap_slippage_bps?,
            default_key_limit_micro_usd: i64::try_from(default_key_limit_cents?)
                .ok()?
                .checked_mul(MICRO_USD_PER_CENT)?,
            key_limit_reset: key_limit_reset?,
            key_expiry_days: key_expiry_days?,
            credit_pool_reserve_bps: credit_pool_reserve_bps?,
            distribution_mode: distribution_mode?,
            distribution_top_n: distribution_top_n?,
            distribution_token_mint: distribution_token_mint?,
            cron_schedule: cron_schedule?,
            min_cron_interval_hours: min_cron_interval_hours?,
            dry_run: dry_run?,
            kill_switch: kill_switch?,
            max_daily_runs: max_daily_runs?,
            max_claimable_lamports_per_run: max_claimable_lamports_per_run?,
            max_key_limit_micro_usd: i64::try_from(max_key_limit_cents?)
                .ok()?
                .checked_mul(MICRO_USD_PER_CENT)?,
            key_rotation_days: key_rotation_days?,
            usage_poll_interval: Duration::from_secs(usage_poll_minutes? * 60),
            bags_agent_username,
            bags_agent_jwt,
            bags_agent_wallet_address: bags_agent_wallet_address?,
            host: host?,
            port: port?,
            database_path: database_path?,
            database_url,
            admin_socket_path: admin_socket_path?,
            log_level: log_level?,
            node_env: node_env?,
            bags_api_base_url: bags_api_base_url?,
            openrouter_base_url: openrouter_base_url?,
            key_encryption_key: key_encryption_key?,
            health_probe_interval: Duration::from_secs(health_probe_seconds?),
            breaker_cooldown: Duration::from_secs(breaker_cooldown_seconds?),
            integration_request_timeout: DEFAULT_INTEGRATION_REQUEST_TIMEOUT,
            cors_allowed_origins: cors_allowed_origins?,
            api_rate_limit_per_min: api_rate_limit_per_min?,
            holder_rate_limit_per_min: holder_rate_limit_per_min?,
            openrouter_max_concurrency: creditbrain_actors::openrouter::DEFAULT_MAX_CONCURRENCY,
            sources,
        })
    })();
    config.ok_or_else(|| ConfigErrors {
        problems: vec![problem(
            "(internal)",
            "a value was missing without a reported problem; please report this bug",
        )],
    })
}

#[cfg(test)]
mod tests;
