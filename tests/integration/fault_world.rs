//! A small sandbox world for the fault-matrix and supervision tests: the real daemon in this
//! process on the sandbox fakes (short request timeout and breaker cooldown), one seeded
//! strategy, and the exactness check every faulted run must pass at the end — one landing per
//! purpose, Σ grants + carry-over = budget, every key's limit = what was recorded — plus the
//! figures of an undisturbed reference run of the same world, which a faulted run must reach too.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use axum::http::StatusCode;
use creditbrain::config::Config;
use creditbrain::daemon::RunningDaemon;
use creditbrain::sandbox::faults::{FaultMode, FaultRule, Latency};
use creditbrain::sandbox::ledger::LedgerOptions;
use creditbrain::sandbox::world::{LAMPORTS_PER_SOL, WorldOptions};
use creditbrain::sandbox::{Sandbox, SandboxOptions};
use creditbrain_actors::run::{CoordinatorMsg, resume_run, start_run};
use creditbrain_actors::store::Store;
use creditbrain_actors::store::allocations::AllocationStatus;
use creditbrain_actors::store::runs::{Run, RunState, TriggeredBy};
use creditbrain_actors::store::strategies::NewStrategy;
use creditbrain_actors::store::transactions::{TxPhase, TxStatus};
use ractor::ActorRef;
use solana_sdk::signature::Signer;

use crate::support::eventually;

pub const CALL: Duration = Duration::from_secs(10);
/// Long enough for the slowest faulted run here (RPC 429s: the client's own five retries per
/// call before the breaker has seen three failures).
pub const RUN_LIMIT: Duration = Duration::from_secs(90);
pub const API_TOKEN: &str = "fault-world-token-0123456789abcdef";
/// Every integration request is cut off after this (the daemon's default is 30 s): a hung
/// service costs a cell seconds, not minutes.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(1_500);
/// BREAKER_COOLDOWN_SEC: long enough to observe an open breaker over HTTP, short for CI.
pub const BREAKER_COOLDOWN_SEC: &str = "2";

pub struct FaultWorld {
    pub sandbox: Sandbox,
    _dir: tempfile::TempDir,
    pub daemon: RunningDaemon,
    pub database_path: std::path::PathBuf,
    pub strategy_id: String,
    pub http: reqwest::Client,
}

impl FaultWorld {
    /// A fresh world (see [`start_sandbox`]) with `extra` variables on top of the defaults.
    pub async fn start(extra: &[(&str, &str)]) -> Self {
        let sandbox = start_sandbox().await;
        let dir = tempfile::tempdir().unwrap();
        let vars = world_vars(&sandbox, dir.path(), extra);
        let mut config = Config::from_vars(&vars).unwrap_or_else(|errors| panic!("{errors}"));
        config.integration_request_timeout = REQUEST_TIMEOUT;
        let daemon = creditbrain::daemon::start(&config)
            .await
            .expect("daemon starts");
        let strategy = daemon
            .handle
            .store
            .insert_strategy(&world_strategy(&sandbox))
            .await
            .unwrap();
        Self {
            sandbox,
            database_path: dir.path().join("world.db"),
            _dir: dir,
            daemon,
            strategy_id: strategy.strategy_id,
            http: reqwest::Client::new(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.daemon.handle.store
    }

    /// The coordinator now (after a restart, the new one).
    pub async fn coordinator(&self) -> ActorRef<CoordinatorMsg> {
        let slot = self.daemon.handle.coordinator.clone();
        eventually(CALL, || {
            let slot = slot.clone();
            async move { slot.get() }
        })
        .await
    }

    pub async fn start_run(&self) -> String {
        let started = start_run(
            &self.coordinator().await,
            &self.strategy_id,
            TriggeredBy::Manual,
            Some(false),
            CALL,
        )
        .await
        .unwrap();
        assert_eq!(started.blocked_code, None);
        started.run_id
    }

    pub async fn resume(&self, run_id: &str) {
        resume_run(&self.coordinator().await, run_id, CALL)
            .await
            .unwrap_or_else(|error| panic!("resume {run_id}: {error}"));
    }

    pub async fn run(&self, run_id: &str) -> Run {
        self.store().run(run_id).await.unwrap().unwrap()
    }

    pub async fn wait_for_end(&self, run_id: &str) -> Run {
        let store = self.store().clone();
        eventually(RUN_LIMIT, || {
            let store = store.clone();
            async move {
                let run = store.run(run_id).await.unwrap().unwrap();
                run.state.is_terminal().then_some(run)
            }
        })
        .await
    }

    /// Waits until the run is in `state` (and not yet terminal).
    pub async fn wait_for_state(&self, run_id: &str, state: RunState) -> Run {
        let store = self.store().clone();
        eventually(RUN_LIMIT, || {
            let store = store.clone();
            async move {
                let run = store.run(run_id).await.unwrap().unwrap();
                assert!(
                    !run.state.is_terminal() || run.state == state,
                    "the run ended before reaching {state:?}: {run:?}"
                );
                (run.state == state).then_some(run)
            }
        })
        .await
    }

    pub fn fault(&self, fake: &str, route: Option<&str>, mode: FaultMode) {
        self.sandbox.faults.add_rule(FaultRule {
            fake: fake.into(),
            route: route.map(str::to_string),
            latency: None,
            mode: Some(mode),
        });
    }

    pub fn latency(&self, fake: &str, route: Option<&str>, ms: u64) {
        self.sandbox.faults.add_rule(FaultRule {
            fake: fake.into(),
            route: route.map(str::to_string),
            latency: Some(Latency::Fixed { ms }),
            mode: None,
        });
    }

    /// Requests the fake received on `route` (every route of the fake when `None`).
    pub fn requests(&self, fake: &str, route: Option<&str>) -> u64 {
        let counts = self.sandbox.faults.request_counts();
        let Some(routes) = counts.get(fake) else {
            return 0;
        };
        match route {
            Some(route) => routes.get(route).copied().unwrap_or(0),
            None => routes.values().sum(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.daemon.http_addr)
    }

    /// `GET path` (with the bearer token) and its JSON body.
    pub async fn get_json(&self, path: &str) -> (StatusCode, serde_json::Value) {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        (status, response.json().await.unwrap())
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The breaker of `integration` as `/health/ready` shows it (`closed`, `open`, `half_open`).
    pub async fn ready_breaker(&self, integration: &str) -> String {
        let (_, body) = self.get_json("/health/ready").await;
        body["integrations"][integration]
            .as_str()
            .unwrap_or_else(|| panic!("no {integration} in {body}"))
            .to_string()
    }

    /// `creditbrain_breaker_state{integration=…}` from `/metrics` (0 closed, 1 half-open, 2 open).
    pub async fn metrics_breaker(&self, integration: &str) -> u8 {
        let metrics = self.metrics().await;
        let prefix = format!("creditbrain_breaker_state{{integration=\"{integration}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no breaker gauge for {integration}"))
            .trim()
            .parse()
            .unwrap()
    }

    /// Asserts every exactness invariant of a COMPLETE run of this world and returns its figures
    /// (to compare with the reference):
    ///
    /// - every transaction the ledger landed is a `landed` row of the run, one per purpose;
    /// - Σ grants + carry-over = budget, the strategy carries the carry-over, the grants fit the
    ///   pool's headroom;
    /// - one OpenRouter key per holder granted (no two share a name), each allocation applied to
    ///   its key, the key's limit on OpenRouter = the allocation's target = the ledger's limit.
    pub async fn assert_exact(&self, run: &Run) -> Figures {
        exact_figures(&self.sandbox, self.store(), &self.strategy_id, run).await
    }

    pub async fn stop(self) {
        self.daemon.shutdown_trigger().trigger();
        self.daemon.wait().await.expect("clean shutdown");
    }
}

/// [`FaultWorld::assert_exact`] for any daemon (an in-process one or a child process) on
/// `sandbox`, whose store is `store`.
pub async fn exact_figures(
    sandbox: &Sandbox,
    store: &Store,
    strategy_id: &str,
    run: &Run,
) -> Figures {
    assert_eq!(
        run.state,
        RunState::Complete,
        "{:?} {:?} (failed in {:?})",
        run.error_code,
        run.error_detail,
        run.error_failed_state
    );
    let rows = store.txs_for_run(&run.run_id).await.unwrap();
    let landed_on_ledger: BTreeSet<String> = sandbox
        .ledger
        .received()
        .iter()
        .filter(|tx| tx.landed_slot.is_some() && !tx.duplicate)
        .map(|tx| tx.signature.to_string())
        .collect();
    let mut landings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for signature in &landed_on_ledger {
        let row = rows
            .iter()
            .find(|row| &row.signature == signature)
            .unwrap_or_else(|| panic!("{signature} landed but the run has no record of it"));
        assert_eq!(
            row.status,
            TxStatus::Landed,
            "{signature} ({}) landed but is recorded {}",
            row.purpose,
            row.status
        );
        landings
            .entry(row.purpose.clone())
            .or_default()
            .push(signature.clone());
    }
    for (purpose, signatures) in &landings {
        assert_eq!(signatures.len(), 1, "{purpose} landed {signatures:?}");
    }
    let landed_rows: Vec<_> = rows
        .iter()
        .filter(|row| row.status == TxStatus::Landed)
        .collect();
    assert_eq!(
        landed_rows.len(),
        landed_on_ledger.len(),
        "records = ledger"
    );
    let claims = landed_rows
        .iter()
        .filter(|row| row.phase == TxPhase::Claiming)
        .count();
    let swaps = landed_rows
        .iter()
        .filter(|row| row.phase == TxPhase::Swapping)
        .count();

    let allocations = store.allocations_for_run(&run.run_id).await.unwrap();
    let granted: i64 = allocations.iter().map(|a| a.grant_micro_usd).sum();
    assert_eq!(Some(granted), run.allocated_micro_usd);
    assert_eq!(
        granted + run.carry_out_micro_usd.unwrap(),
        run.budget_micro_usd.unwrap(),
        "Σ grants + carry-over = budget"
    );
    assert!(
        granted <= run.headroom_micro_usd.unwrap(),
        "within the pool"
    );
    let strategy = store.stored_strategy(strategy_id).await.unwrap().unwrap();
    assert_eq!(Some(strategy.carry_over_micro_usd), run.carry_out_micro_usd);

    let keys = sandbox.openrouter.keys();
    let names: HashSet<&str> = keys.iter().map(|key| key.name.as_str()).collect();
    assert_eq!(names.len(), keys.len(), "a holder has two keys");
    assert_eq!(keys.len(), allocations.len(), "one key per allocation");
    for allocation in &allocations {
        assert_eq!(
            allocation.status,
            AllocationStatus::Applied,
            "{allocation:?}"
        );
        let hash = allocation.key_hash.as_ref().expect("applied to a key");
        let key = keys
            .iter()
            .find(|key| &key.hash == hash)
            .expect("the allocation's key exists on OpenRouter");
        assert_eq!(
            key.name,
            format!("creditbrain-{strategy_id}-{}", allocation.holder_wallet)
        );
        assert_eq!(key.limit_micro_usd, allocation.target_limit_micro_usd);
        assert_eq!(key.limit_micro_usd, Some(allocation.grant_micro_usd));
        let ledger = store.key_by_hash(hash).await.unwrap().unwrap();
        assert_eq!(Some(ledger.limit_micro_usd), key.limit_micro_usd);
    }
    assert_eq!(
        run.keys_created.unwrap() + run.keys_updated.unwrap(),
        allocations.len() as u64,
        "every key counted once"
    );
    assert_eq!(run.keys_failed, Some(0));

    let mut grants: Vec<i64> = allocations.iter().map(|a| a.grant_micro_usd).collect();
    grants.sort_unstable_by(|a, b| b.cmp(a));
    Figures {
        claimed_lamports: run.claimed_lamports.unwrap(),
        swapped_usdc: run.swapped_usdc_base_units.unwrap(),
        budget: run.budget_micro_usd.unwrap(),
        allocated: run.allocated_micro_usd.unwrap(),
        carry_out: run.carry_out_micro_usd.unwrap(),
        grants,
        claims,
        swaps,
        keys: keys.len(),
    }
}

/// The sandbox of every world here: 24 holders, 20 ms slots, the default seed.
pub async fn start_sandbox() -> Sandbox {
    Sandbox::start(SandboxOptions {
        world: WorldOptions {
            holders: 24,
            ..WorldOptions::default()
        },
        ledger: LedgerOptions {
            slot_duration: Duration::from_millis(20),
            ..LedgerOptions::default()
        },
        ..SandboxOptions::default()
    })
    .await
    .unwrap()
}

/// A daemon's variables for `sandbox`, its database and socket in `dir`, `extra` on top.
pub fn world_vars(
    sandbox: &Sandbox,
    dir: &std::path::Path,
    extra: &[(&str, &str)],
) -> BTreeMap<String, String> {
    let mut vars = sandbox.daemon_vars();
    for (name, value) in [
        ("API_AUTH_TOKEN", API_TOKEN),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("KEY_LIMIT_RESET", "null"),
        ("HEALTH_PROBE_INTERVAL_SEC", "1"),
        ("BREAKER_COOLDOWN_SEC", BREAKER_COOLDOWN_SEC),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    {
        vars.insert(name.into(), value.into());
    }
    vars.insert(
        "DATABASE_PATH".into(),
        dir.join("world.db").display().to_string(),
    );
    vars.insert(
        "ADMIN_SOCKET_PATH".into(),
        dir.join("world.sock").display().to_string(),
    );
    vars
}

/// The seeded strategy: the signer's Bags fee positions, top 20 holders by balance, $10 per grant,
/// credits mode, 10 % reserve.
pub fn world_strategy(sandbox: &Sandbox) -> NewStrategy {
    NewStrategy {
        owner_wallet: sandbox.world.signer.pubkey().to_string(),
        token_mint: sandbox.world.token_mint.to_string(),
        fee_source: "CLAIMABLE_POSITIONS".into(),
        threshold_lamports: LAMPORTS_PER_SOL as i64,
        slippage_bps: 50,
        distribution_mode: "TOP_N_HOLDERS".into(),
        top_n: 20,
        min_holding_base_units: "0".into(),
        max_grant_micro_usd: 10_000_000,
        max_key_limit_micro_usd: 100_000_000,
        key_limit_reset: None,
        key_expiry_days: 365,
        reserve_bps: 1_000,
        // Once a year: the scheduler stays out of the way.
        cron_schedule: "0 0 1 1 *".into(),
        status: "active".into(),
    }
}

/// What a run of this world amounts to, whatever happened on the way (the wallets differ between
/// sandboxes, the seeded balances and positions do not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Figures {
    pub claimed_lamports: u64,
    pub swapped_usdc: u64,
    pub budget: i64,
    pub allocated: i64,
    pub carry_out: i64,
    /// Largest first.
    pub grants: Vec<i64>,
    pub claims: usize,
    pub swaps: usize,
    pub keys: usize,
}

/// The figures of an undisturbed run of this world, computed once per test process.
pub async fn reference() -> Figures {
    static REFERENCE: tokio::sync::OnceCell<Figures> = tokio::sync::OnceCell::const_new();
    REFERENCE
        .get_or_init(|| async {
            let world = FaultWorld::start(&[]).await;
            let run_id = world.start_run().await;
            let run = world.wait_for_end(&run_id).await;
            let figures = world.assert_exact(&run).await;
            world.stop().await;
            figures
        })
        .await
        .clone()
}
