//! HTTP load generator (issue 7 item 4): N keep-alive connections, each its own client, for a
//! fixed time against `GET /health/live` and the authenticated `GET /api/runs`, while runs of a
//! strategy are started in the background (fees credited on the sandbox's control API first).
//! Prints throughput and latency percentiles per endpoint, every error by kind, and what became
//! of the runs; exits 1 if any request failed. `scripts/load` runs it against a sandbox daemon.
//!
//! ```text
//! cargo run --example load -- --url http://127.0.0.1:3001 --token T --connections 1000 --duration 60 \
//!     [--control-url URL --strategy ID --signer PUBKEY --mint PUBKEY --run-every 10] [--json]
//! cargo run --example load -- --ready "$(creditbrain sandbox | head -1)" ...   # all of those at once
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser, Debug, Clone)]
#[command(about = "HTTP load against a creditbrain daemon")]
struct Args {
    /// The sandbox's ready line (JSON): sets the URL, token, control URL, strategy, signer and
    /// mint below, and starts runs during the load.
    #[arg(long)]
    ready: Option<String>,
    /// The daemon's base URL (the sandbox ready line's `api_url`).
    #[arg(long, required_unless_present = "ready", default_value = "")]
    url: String,
    /// The API bearer token (`api_token`).
    #[arg(long, required_unless_present = "ready", default_value = "")]
    token: String,
    /// Concurrent keep-alive connections (one client each).
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// The sandbox control API (`control_url`): fees are credited there before each run.
    #[arg(long, requires_all = ["strategy", "signer", "mint"])]
    control_url: Option<String>,
    /// Start runs of this strategy during the load.
    #[arg(long)]
    strategy: Option<String>,
    /// The fee owner (`signer`) credited before each run.
    #[arg(long)]
    signer: Option<String>,
    /// The base mint of the credited fee position (`token_mint`).
    #[arg(long)]
    mint: Option<String>,
    /// Seconds between two run starts (the sandbox allows 4 runs a day: 15 s fits a minute).
    #[arg(long, default_value_t = 15)]
    run_every: u64,
    /// Also print the summary as one JSON line.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Endpoint {
    Live,
    Runs,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Live => "GET /health/live",
            Endpoint::Runs => "GET /api/runs",
        }
    }
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    /// Latency of every completed request (errors included), microseconds, per endpoint.
    latencies: BTreeMap<Endpoint, Vec<u32>>,
    /// Errors by endpoint and kind (`http 503 database_locked`, `transport: …`).
    errors: BTreeMap<(Endpoint, String), u64>,
}

impl Args {
    /// Fills the connection and run settings from `--ready`.
    fn with_ready_line(mut self) -> Result<Self, String> {
        let Some(line) = &self.ready else {
            return Ok(self);
        };
        let ready: Value =
            serde_json::from_str(line).map_err(|error| format!("--ready is not JSON: {error}"))?;
        let field = |name: &str| {
            ready[name]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("--ready has no {name}"))
        };
        self.url = field("api_url")?;
        self.token = field("api_token")?;
        self.control_url = Some(field("control_url")?);
        self.strategy = Some(field("strategy_id")?);
        self.signer = Some(field("signer")?);
        self.mint = Some(field("token_mint")?);
        Ok(self)
    }
}

fn main() -> std::process::ExitCode {
    let args = match Args::parse().with_ready_line() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("load: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    // One worker thread per core: the load generator must not starve the daemon it measures
    // more than it has to (both run on the same machine).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let failed = runtime.block_on(run(args));
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

/// Raises the soft open-files limit to what `connections` needs (one descriptor each, plus
/// headroom), or says what to set.
fn ensure_file_descriptors(connections: usize) -> Result<u64, String> {
    let needed = connections as u64 + 256;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err("getrlimit(RLIMIT_NOFILE) failed".into());
        }
        if limit.rlim_cur >= needed {
            return Ok(limit.rlim_cur);
        }
        if limit.rlim_max < needed {
            return Err(format!(
                "{connections} connections need {needed} open files; the hard limit is {} \
                 (raise it: `ulimit -Hn {needed}` as root, or LimitNOFILE= in systemd)",
                limit.rlim_max
            ));
        }
        limit.rlim_cur = needed;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(format!("setrlimit(RLIMIT_NOFILE, {needed}) failed"));
        }
    }
    Ok(needed)
}

async fn run(args: Args) -> bool {
    let open_files = match ensure_file_descriptors(args.connections) {
        Ok(limit) => limit,
        Err(message) => {
            eprintln!("load: {message}");
            return true;
        }
    };
    let base = args.url.trim_end_matches('/').to_string();
    println!(
        "load: {} connections for {} s against {base} (open-files limit {open_files})",
        args.connections, args.duration
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);

    let runs = args.strategy.clone().map(|strategy| {
        let args = args.clone();
        let base = base.clone();
        tokio::spawn(async move { drive_runs(&args, &base, &strategy, deadline).await })
    });

    let token: Arc<str> = Arc::from(args.token.as_str());
    let mut workers = Vec::with_capacity(args.connections);
    for index in 0..args.connections {
        let (base, token) = (base.clone(), token.clone());
        workers.push(tokio::spawn(async move {
            connection(index, &base, &token, deadline).await
        }));
    }
    let mut total = Tally::default();
    for worker in workers {
        let tally = worker.await.expect("a load connection panicked");
        for (endpoint, mut latencies) in tally.latencies {
            total
                .latencies
                .entry(endpoint)
                .or_default()
                .append(&mut latencies);
        }
        for (key, count) in tally.errors {
            *total.errors.entry(key).or_default() += count;
        }
    }
    let elapsed = started.elapsed();
    let run_report = match runs {
        Some(task) => Some(task.await.expect("the run driver panicked")),
        None => None,
    };
    report(&args, &total, elapsed, run_report.as_ref())
}

/// One keep-alive connection: its own client (so N tasks hold N connections), requests back to
/// back until the deadline, alternating the two endpoints.
async fn connection(index: usize, base: &str, token: &str, deadline: Instant) -> Tally {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .http1_only()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a reqwest client");
    let live = format!("{base}/health/live");
    let runs = format!("{base}/api/runs?limit=20");
    let mut tally = Tally::default();
    let mut turn = index % 2;
    while Instant::now() < deadline {
        let endpoint = if turn == 0 {
            Endpoint::Live
        } else {
            Endpoint::Runs
        };
        turn ^= 1;
        let request = match endpoint {
            Endpoint::Live => client.get(&live),
            Endpoint::Runs => client.get(&runs).bearer_auth(token),
        };
        let sent = Instant::now();
        let outcome = match request.send().await {
            Ok(response) => {
                let status = response.status();
                // The body is read in full: a request is done when its answer is.
                match response.bytes().await {
                    Ok(_) if status.is_success() => Ok(()),
                    Ok(body) => Err(format!("http {} {}", status.as_u16(), error_code(&body))),
                    Err(error) => Err(format!("body: {error}")),
                }
            }
            Err(error) => Err(format!("transport: {}", error_kind(&error))),
        };
        let micros = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
        tally.latencies.entry(endpoint).or_default().push(micros);
        if let Err(kind) = outcome {
            *tally.errors.entry((endpoint, kind)).or_default() += 1;
        }
    }
    tally
}

fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|value| value["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_else(|| "(no error code)".into())
}

fn error_kind(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else if error.is_request() {
        "request"
    } else {
        "other"
    }
}

/// What the background runs did.
struct RunReport {
    started: Vec<String>,
    /// Start attempts refused because the strategy's previous run was still going.
    in_progress: u64,
    /// Start attempts refused by MAX_DAILY_RUNS.
    daily_limit: u64,
    /// Run id → final state (or the state it was in when we stopped waiting).
    states: BTreeMap<String, String>,
    /// Run id → seconds from start to end, when it ended.
    seconds: BTreeMap<String, Option<f64>>,
    errors: Vec<String>,
}

/// Every `run_every` seconds until the deadline: credit fees on the sandbox, start a run. Then
/// waits (up to a minute) for the runs to end.
async fn drive_runs(args: &Args, base: &str, strategy: &str, deadline: Instant) -> RunReport {
    let client = reqwest::Client::new();
    let mut report = RunReport {
        started: Vec::new(),
        in_progress: 0,
        daily_limit: 0,
        states: BTreeMap::new(),
        seconds: BTreeMap::new(),
        errors: Vec::new(),
    };
    while Instant::now() < deadline {
        if let (Some(control), Some(signer), Some(mint)) =
            (&args.control_url, &args.signer, &args.mint)
        {
            let credited = client
                .post(format!(
                    "{}/_sandbox/bags/positions",
                    control.trim_end_matches('/')
                ))
                .json(&json!({"owner": signer, "baseMint": mint, "lamports": 2_000_000_000u64}))
                .send()
                .await;
            if let Err(error) = credited.and_then(reqwest::Response::error_for_status) {
                report.errors.push(format!("crediting fees: {error}"));
            }
        }
        let started = client
            .post(format!("{base}/api/runs"))
            .bearer_auth(&args.token)
            .json(&json!({"strategyId": strategy}))
            .send()
            .await;
        match started {
            Ok(response) => {
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                match (
                    status,
                    body["runId"].as_str(),
                    body["error"]["code"].as_str(),
                ) {
                    (202, Some(run_id), _) => report.started.push(run_id.to_string()),
                    (409, _, Some("run_in_progress")) => report.in_progress += 1,
                    // The sandbox's MAX_DAILY_RUNS: recorded by the daemon, not a load error.
                    (409, _, Some("daily_limit")) => report.daily_limit += 1,
                    _ => report
                        .errors
                        .push(format!("starting a run: {status} {body}")),
                }
            }
            Err(error) => report.errors.push(format!("starting a run: {error}")),
        }
        let next = Instant::now() + Duration::from_secs(args.run_every.max(1));
        tokio::time::sleep_until(next.min(deadline).into()).await;
    }
    let wait_until = Instant::now() + Duration::from_secs(60);
    for run_id in &report.started {
        let (state, seconds) = loop {
            let run = match client
                .get(format!("{base}/api/runs/{run_id}"))
                .bearer_auth(&args.token)
                .send()
                .await
            {
                Ok(response) => response
                    .json::<Value>()
                    .await
                    .map(|body| body["run"].clone())
                    .unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            let state = run["state"].as_str().unwrap_or("UNKNOWN").to_string();
            if state == "COMPLETE" || state == "FAILED" || Instant::now() >= wait_until {
                let at = |field: &str| {
                    run[field]
                        .as_str()
                        .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
                };
                let seconds = match (at("startedAt"), at("finishedAt")) {
                    (Some(started), Some(finished)) => {
                        Some((finished - started).num_milliseconds() as f64 / 1000.0)
                    }
                    _ => None,
                };
                break (state, seconds);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        report.states.insert(run_id.clone(), state);
        report.seconds.insert(run_id.clone(), seconds);
    }
    report
}

/// The latency at quantile `q` of sorted microseconds, in milliseconds.
fn quantile_ms(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1000.0
}

/// Prints the summary; true when anything failed.
fn report(args: &Args, total: &Tally, elapsed: Duration, runs: Option<&RunReport>) -> bool {
    let seconds = elapsed.as_secs_f64();
    println!(
        "{:<18} {:>10} {:>7} {:>9} {:>8} {:>8} {:>8} {:>9}",
        "endpoint", "requests", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    let mut rows = Vec::new();
    let mut all: Vec<u32> = Vec::new();
    let error_count = |endpoint: Option<Endpoint>| -> u64 {
        total
            .errors
            .iter()
            .filter(|((e, _), _)| endpoint.is_none_or(|wanted| *e == wanted))
            .map(|(_, count)| count)
            .sum()
    };
    let mut line = |name: &str, sorted: &[u32], errors: u64| {
        let row = json!({
            "endpoint": name,
            "requests": sorted.len(),
            "errors": errors,
            "rps": (sorted.len() as f64 / seconds).round(),
            "p50_ms": quantile_ms(sorted, 0.50),
            "p90_ms": quantile_ms(sorted, 0.90),
            "p99_ms": quantile_ms(sorted, 0.99),
            "max_ms": quantile_ms(sorted, 1.0),
        });
        println!(
            "{:<18} {:>10} {:>7} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>9.2}",
            name,
            sorted.len(),
            errors,
            sorted.len() as f64 / seconds,
            quantile_ms(sorted, 0.50),
            quantile_ms(sorted, 0.90),
            quantile_ms(sorted, 0.99),
            quantile_ms(sorted, 1.0),
        );
        rows.push(row);
    };
    for (endpoint, latencies) in &total.latencies {
        let mut sorted = latencies.clone();
        sorted.sort_unstable();
        all.extend_from_slice(latencies);
        line(endpoint.name(), &sorted, error_count(Some(*endpoint)));
    }
    all.sort_unstable();
    let errors = error_count(None);
    line("total", &all, errors);
    if errors == 0 {
        println!("errors: none");
    } else {
        for ((endpoint, kind), count) in &total.errors {
            println!("errors: {count} × {} {kind}", endpoint.name());
        }
    }
    let database_locked: u64 = total
        .errors
        .iter()
        .filter(|((_, kind), _)| kind.contains("database_locked"))
        .map(|(_, count)| count)
        .sum();
    let mut run_failed = false;
    let mut run_json = Value::Null;
    if let Some(runs) = runs {
        let mut by_state: BTreeMap<&str, u64> = BTreeMap::new();
        for state in runs.states.values() {
            *by_state.entry(state.as_str()).or_default() += 1;
        }
        let durations: Vec<String> = runs
            .seconds
            .values()
            .map(|seconds| seconds.map_or("-".into(), |s| format!("{s:.1} s")))
            .collect();
        println!(
            "runs during the load: {} started, {} refused as already in progress, {} by the daily \
             cap; by state {:?}, durations {durations:?}",
            runs.started.len(),
            runs.in_progress,
            runs.daily_limit,
            by_state
        );
        for error in &runs.errors {
            println!("run driver error: {error}");
        }
        run_failed = !runs.errors.is_empty()
            || runs.started.is_empty()
            || runs.states.values().any(|state| state != "COMPLETE");
        run_json = json!({
            "started": runs.started.len(),
            "in_progress": runs.in_progress,
            "daily_limit": runs.daily_limit,
            "by_state": by_state,
            "seconds": runs.seconds.values().collect::<Vec<_>>(),
            "errors": runs.errors,
        });
    }
    if args.json {
        println!(
            "{}",
            json!({
                "connections": args.connections,
                "duration_s": seconds,
                "endpoints": rows,
                "errors": errors,
                "database_locked": database_locked,
                "runs": run_json,
            })
        );
    }
    errors > 0 || run_failed
}
