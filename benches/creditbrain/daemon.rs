//! The real daemon, in this process, on the sandbox's fakes, with one seeded strategy (the same
//! approach as the integration tests' `SandboxDaemon`; a bench cannot import the test crate).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use creditbrain::config::Config;
use creditbrain::daemon::RunningDaemon;
use creditbrain::sandbox::faults::{FaultRule, Latency};
use creditbrain::sandbox::ledger::LedgerOptions;
use creditbrain::sandbox::world::WorldOptions;
use creditbrain::sandbox::{Sandbox, SandboxOptions};
use creditbrain_actors::store::runs::{Run, RunState, TriggeredBy};
use creditbrain_actors::strategy::{StrategyInput, StrategySpec};
use solana_sdk::signature::Signer;

/// How to set up a [`BenchDaemon`].
pub struct Setup {
    pub holders: usize,
    /// `EQUAL_SPLIT`, `TOP_N_HOLDERS` …
    pub distribution_mode: &'static str,
    pub top_n: Option<u32>,
    /// The OpenRouter account's credits, in USD.
    pub openrouter_credits_usd: i64,
    /// Milliseconds per Solana slot of the fake ledger.
    pub slot_ms: u64,
    /// OpenRouter requests in flight at once (`None`: the daemon's default).
    pub openrouter_concurrency: Option<usize>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            holders: 1_000,
            distribution_mode: "EQUAL_SPLIT",
            top_n: None,
            openrouter_credits_usd: 5_000,
            slot_ms: 20,
            openrouter_concurrency: None,
        }
    }
}

pub struct BenchDaemon {
    pub sandbox: Sandbox,
    pub daemon: RunningDaemon,
    pub strategy_id: String,
    /// How long seeding the world took (not part of any figure).
    pub seeded_in: Duration,
    _dir: tempfile::TempDir,
}

/// Every state a run passed through and when (polled every 10 ms), with its final row.
pub struct RunTrace {
    pub run: Run,
    /// (state, first seen at since the start request, this process's CPU time then).
    pub states: Vec<(RunState, Duration, Duration)>,
    pub total: Duration,
}

impl RunTrace {
    /// How long the run spent in `state` (from first seeing it to first seeing the next one).
    pub fn time_in(&self, state: RunState) -> Option<Duration> {
        let index = self.states.iter().position(|(s, _, _)| *s == state)?;
        let start = self.states[index].1;
        let end = self
            .states
            .get(index + 1)
            .map_or(self.total, |(_, at, _)| *at);
        Some(end - start)
    }

    /// CPU time (user + system, every thread of this process: the daemon and the fakes) spent
    /// while the run was in `state`.
    pub fn cpu_in(&self, state: RunState) -> Option<Duration> {
        let index = self.states.iter().position(|(s, _, _)| *s == state)?;
        let start = self.states[index].2;
        let end = self.states.get(index + 1).map_or(start, |(_, _, cpu)| *cpu);
        Some(end.saturating_sub(start))
    }

    pub fn phases(&self) -> String {
        self.states
            .iter()
            .filter(|(state, _, _)| !state.is_terminal())
            .map(|(state, _, _)| {
                format!(
                    "{} {:.3} s (cpu {:.2} s)",
                    state.as_str(),
                    self.time_in(*state).unwrap_or_default().as_secs_f64(),
                    self.cpu_in(*state).unwrap_or_default().as_secs_f64()
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl BenchDaemon {
    pub async fn start(setup: Setup) -> Self {
        let seeding = Instant::now();
        let sandbox = Sandbox::start(SandboxOptions {
            world: WorldOptions {
                holders: setup.holders,
                ..WorldOptions::default()
            },
            ledger: LedgerOptions {
                slot_duration: Duration::from_millis(setup.slot_ms),
                ..LedgerOptions::default()
            },
            openrouter_credits_micro_usd: setup.openrouter_credits_usd * 1_000_000,
            ..SandboxOptions::default()
        })
        .await
        .expect("sandbox starts");
        let seeded_in = seeding.elapsed();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut vars: BTreeMap<String, String> = sandbox.daemon_vars();
        for (name, value) in [
            ("API_AUTH_TOKEN", "bench-daemon-token-0123456789abcdef"),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("KEY_LIMIT_RESET", "null"),
            ("HEALTH_PROBE_INTERVAL_SEC", "15"),
            ("LOG_LEVEL", "error"),
        ] {
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
        #[allow(unused_mut)]
        let mut config = Config::from_vars(&vars).unwrap_or_else(|errors| panic!("{errors}"));
        if let Some(concurrency) = setup.openrouter_concurrency {
            config.openrouter_max_concurrency = concurrency;
        }
        let daemon = creditbrain::daemon::start(&config)
            .await
            .expect("daemon starts");
        let input = StrategyInput {
            owner_wallet: Some(sandbox.world.signer.pubkey().to_string()),
            distribution_mode: Some(setup.distribution_mode.into()),
            top_n: setup.top_n.map(|n| n.to_string()),
            max_grant_usd: Some("10".into()),
            max_key_limit_usd: Some("100".into()),
            ..StrategyInput::default()
        };
        let spec = StrategySpec::from_input(&input, &config.strategy_defaults())
            .unwrap_or_else(|errors| panic!("{errors}"));
        let strategy = daemon
            .handle
            .store
            .create_strategy(&spec, "bench")
            .await
            .expect("strategy");
        Self {
            sandbox,
            daemon,
            strategy_id: strategy.strategy_id,
            seeded_in,
            _dir: dir,
        }
    }

    /// Adds `ms` of latency to every request of `fake` (or only `route`).
    pub fn latency(&self, fake: &str, route: Option<&str>, ms: u64) {
        self.sandbox.faults.add_rule(FaultRule {
            fake: fake.into(),
            route: route.map(Into::into),
            latency: Some(Latency::Fixed { ms }),
            mode: None,
        });
    }

    /// The latency a fake really delivers with its latency rule: the median of 50 sequential
    /// cheap requests (`GET /credits` for OpenRouter, an empty DAS page for Helius) from a plain
    /// client, so loopback, the fake's handler and the timer's rounding are in it.
    pub async fn delivered_latency(&self, fake: &str) -> Duration {
        let http = reqwest::Client::new();
        let request = || match fake {
            "openrouter" => http
                .get(format!("{}/api/v1/credits", self.sandbox.openrouter_url))
                .bearer_auth(&self.sandbox.openrouter_management_key),
            "helius" => http
                .post(self.sandbox.daemon_vars()["HELIUS_RPC_URL"].clone())
                .json(&serde_json::json!({
                    "jsonrpc": "2.0", "id": 1, "method": "getTokenAccounts",
                    "params": {"mint": solana_sdk::pubkey::Pubkey::new_unique().to_string(),
                               "limit": 1000},
                })),
            other => panic!("no latency probe for {other}"),
        };
        let mut samples = Vec::new();
        for index in 0..55 {
            let started = Instant::now();
            let response = request().send().await.expect("probe request");
            assert!(
                response.status().is_success(),
                "probe answered {}",
                response.status()
            );
            response.bytes().await.expect("probe body");
            if index >= 5 {
                samples.push(started.elapsed());
            }
        }
        crate::harness::Timing::from_samples(samples).median
    }

    /// Requests each fake has answered so far, by route.
    pub fn requests(&self, fake: &str) -> BTreeMap<String, u64> {
        self.sandbox
            .faults
            .request_counts()
            .remove(fake)
            .unwrap_or_default()
    }

    /// Starts a run of the strategy and follows it to COMPLETE or FAILED.
    pub async fn run(&self) -> RunTrace {
        let coordinator = self
            .daemon
            .handle
            .coordinator
            .get()
            .expect("coordinator running");
        let started_at = Instant::now();
        let started = creditbrain_actors::run::start_run(
            &coordinator,
            &self.strategy_id,
            TriggeredBy::Manual,
            Some(false),
            Duration::from_secs(30),
        )
        .await
        .expect("run starts");
        assert_eq!(started.blocked_code, None, "run not blocked");
        let store = &self.daemon.handle.store;
        let mut states: Vec<(RunState, Duration, Duration)> = Vec::new();
        loop {
            let run = store
                .run(&started.run_id)
                .await
                .expect("store")
                .expect("run row");
            if states
                .last()
                .is_none_or(|(state, _, _)| *state != run.state)
            {
                states.push((run.state, started_at.elapsed(), cpu_time()));
            }
            if run.state.is_terminal() {
                let total = states.last().map(|(_, at, _)| *at).unwrap_or_default();
                return RunTrace { run, states, total };
            }
            assert!(
                started_at.elapsed() < Duration::from_secs(900),
                "run did not end within 15 minutes"
            );
            // Often enough for phase times to ±10 ms, rarely enough not to load the store.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn stop(self) {
        self.daemon.shutdown_trigger().trigger();
        self.daemon.wait().await.expect("clean shutdown");
    }
}

/// This process's CPU time so far (user + system, all threads).
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct we pass and reads nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}
