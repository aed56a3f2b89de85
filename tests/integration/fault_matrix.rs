//! The fault matrix (issue 7 item 3): each integration (Bags, Solana RPC, Helius DAS, OpenRouter)
//! × each fault the sandbox injects (429 with Retry-After, 5xx, a hang, a dropped connection,
//! malformed JSON, and for `sendTransaction` a dropped transaction), one row per cell, each on a
//! fresh world. A *blip* (a scripted burst shorter than the retry policy) must be absorbed: the
//! run completes with the breaker closed. An *outage* (the fault on every request until cleared)
//! must fail the run in the phase that calls the integration with the runbook's code; a transient
//! outage opens the integration's breaker after three consecutive failures, which
//! `/health/ready`'s `integrations` and `/metrics` show while it is open; once the fault clears
//! the breaker half-opens after its cooldown, a resume's first call is the probe that closes it,
//! and the resumed run completes. Every completed run passes the exactness check
//! (`FaultWorld::assert_exact`) and reaches the reference run's figures: nothing lost, nothing
//! done twice.
//!
//! Burst sizes follow `RetryPolicy::default()` (4 attempts) and the breaker (3 consecutive
//! failures): a blip of two failures is retried through without opening the breaker; three
//! open it, and the retry layer stops there. Calls that cannot be retried safely (OpenRouter key
//! creation after a 5xx, a timeout or a dropped connection, which may have created the key) fail
//! the holder at once even on a blip, and the resume adopts or creates the key.

use std::time::Duration;

use creditbrain::sandbox::faults::{Fault, FaultMode};
use creditbrain_actors::resilience::{Breaker, BreakerState};
use creditbrain_actors::store::runs::RunState;

use crate::fault_world::{FaultWorld, reference};
use crate::support::eventually;

const QUOTE: &str = "GET /api/v1/trade/quote";
const HOLDERS: &str = "getTokenAccounts";
const CREATE_KEY: &str = "POST /api/v1/keys";
const SEND_TRANSACTION: &str = "sendTransaction";

/// One cell of the matrix.
struct Cell {
    /// The sandbox fake and route (`None`: every route of the fake).
    fake: &'static str,
    route: Option<&'static str>,
    fault: Fault,
    burst: Burst,
    expect: Expect,
}

#[derive(Clone, Copy, Debug)]
enum Burst {
    /// This many faulted requests, then normal answers.
    Blip(usize),
    /// Every request faulted until the test clears the rule.
    Outage,
}

enum Expect {
    /// Retried through: the run completes, the breaker stays closed.
    Completes,
    /// The run fails in `phase` with one of `codes`; with `opens_breaker`, the integration's
    /// breaker is open while the fault lasts. After the fault clears, a resume completes it.
    Fails {
        phase: RunState,
        codes: &'static [&'static str],
        opens_breaker: bool,
    },
}

fn rate_limited() -> Fault {
    Fault::RateLimited {
        retry_after_secs: 1,
    }
}

fn server_error() -> Fault {
    Fault::ServerError { status: 503 }
}

impl FaultWorld {
    fn breaker_of(&self, fake: &str) -> (Breaker, &'static str) {
        let breakers = &self.daemon.handle.breakers;
        match fake {
            "bags" => (breakers.bags.clone(), "bags"),
            "rpc" => (breakers.solana_rpc.clone(), "solana-rpc"),
            "helius" => (breakers.helius_das.clone(), "helius-das"),
            "openrouter" => (breakers.openrouter.clone(), "openrouter"),
            other => panic!("no breaker for {other}"),
        }
    }
}

async fn run_cell(cell: Cell) {
    let expected = reference().await;
    let world = FaultWorld::start(&[]).await;
    let (breaker, integration) = world.breaker_of(cell.fake);
    let mode = match cell.burst {
        Burst::Blip(n) => FaultMode::Script {
            steps: vec![Some(cell.fault.clone()); n],
        },
        Burst::Outage => FaultMode::Always {
            fault: cell.fault.clone(),
        },
    };
    world.fault(cell.fake, cell.route, mode);
    let run_id = world.start_run().await;
    let run = world.wait_for_end(&run_id).await;
    // The fault was really met (a wrong route name would make every cell pass vacuously).
    let minimum = match cell.burst {
        Burst::Blip(n) => n as u64,
        Burst::Outage => 1,
    };
    assert!(
        world.requests(cell.fake, cell.route) >= minimum,
        "the fault on {} {:?} was never hit",
        cell.fake,
        cell.route
    );

    let run = match cell.expect {
        Expect::Completes => {
            assert_eq!(breaker.state(), BreakerState::Closed, "{:?}", breaker);
            run
        }
        Expect::Fails {
            phase,
            codes,
            opens_breaker,
        } => {
            assert_eq!(run.state, RunState::Failed, "expected a failure: {run:?}");
            assert_eq!(run.error_failed_state, Some(phase), "{run:?}");
            let code = run.error_code.clone().unwrap_or_default();
            assert!(
                codes.contains(&code.as_str()),
                "code {code} not among {codes:?}: {:?}",
                run.error_detail
            );
            if opens_breaker {
                // While the fault lasts, each half-open probe fails and reopens it: it is seen
                // open by the handle, by readiness and by the metrics.
                eventually(Duration::from_secs(10), || async {
                    let open = breaker.state() == BreakerState::Open
                        && world.ready_breaker(integration).await == "open"
                        && world.metrics_breaker(integration).await == 2;
                    open.then_some(())
                })
                .await;
                assert!(breaker.snapshot().failures >= 3, "{:?}", breaker.snapshot());
            } else {
                assert_eq!(
                    breaker.state(),
                    BreakerState::Closed,
                    "a permanent error does not count against the breaker"
                );
            }
            world.sandbox.faults.clear(None);
            if opens_breaker {
                // After the cooldown the next call is let through as the probe.
                eventually(Duration::from_secs(10), || async {
                    (world.ready_breaker(integration).await == "half_open"
                        && world.metrics_breaker(integration).await == 1)
                        .then_some(())
                })
                .await;
            }
            world.resume(&run_id).await;
            let resumed = world.wait_for_end(&run_id).await;
            assert_eq!(resumed.resume_count, 1);
            assert_eq!(breaker.state(), BreakerState::Closed, "the probe closed it");
            assert_eq!(world.ready_breaker(integration).await, "closed");
            assert_eq!(world.metrics_breaker(integration).await, 0);
            resumed
        }
    };
    let figures = world.assert_exact(&run).await;
    assert_eq!(
        figures, expected,
        "the run reached other figures than the reference"
    );
    world.stop().await;
}

/// One `#[tokio::test]` per row, so the cells run in parallel and fail by name.
macro_rules! matrix {
    ($($name:ident: $cell:expr;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                run_cell($cell).await;
            }
        )*
    };
}

const SWAP_FAILS: &[&str] = &["BAGS_UNAVAILABLE"];
const HOLDERS_FAIL: &[&str] = &["HOLDERS_UNAVAILABLE"];
const RPC_FAILS: &[&str] = &["RPC_UNAVAILABLE"];

matrix! {
    // Bags: the swap quote (SWAPPING, after the claims landed).
    bags_429_blip_is_retried: Cell { fake: "bags", route: Some(QUOTE), fault: rate_limited(),
        burst: Burst::Blip(2), expect: Expect::Completes };
    bags_429_outage_opens_the_breaker: Cell { fake: "bags", route: Some(QUOTE),
        fault: rate_limited(), burst: Burst::Outage, expect: Expect::Fails {
            phase: RunState::Swapping, codes: SWAP_FAILS, opens_breaker: true } };
    bags_5xx_blip_is_retried: Cell { fake: "bags", route: Some(QUOTE), fault: server_error(),
        burst: Burst::Blip(2), expect: Expect::Completes };
    bags_5xx_outage_opens_the_breaker: Cell { fake: "bags", route: Some(QUOTE),
        fault: server_error(), burst: Burst::Outage, expect: Expect::Fails {
            phase: RunState::Swapping, codes: SWAP_FAILS, opens_breaker: true } };
    bags_hang_blip_times_out_and_is_retried: Cell { fake: "bags", route: Some(QUOTE),
        fault: Fault::Hang, burst: Burst::Blip(1), expect: Expect::Completes };
    bags_hang_outage_opens_the_breaker: Cell { fake: "bags", route: Some(QUOTE),
        fault: Fault::Hang, burst: Burst::Outage, expect: Expect::Fails {
            phase: RunState::Swapping, codes: SWAP_FAILS, opens_breaker: true } };
    bags_dropped_connection_blip_is_retried: Cell { fake: "bags", route: Some(QUOTE),
        fault: Fault::DropConnection, burst: Burst::Blip(2), expect: Expect::Completes };
    bags_dropped_connection_outage_opens_the_breaker: Cell { fake: "bags", route: Some(QUOTE),
        fault: Fault::DropConnection, burst: Burst::Outage, expect: Expect::Fails {
            phase: RunState::Swapping, codes: SWAP_FAILS, opens_breaker: true } };
    bags_malformed_json_fails_at_once: Cell { fake: "bags", route: Some(QUOTE),
        fault: Fault::MalformedJson, burst: Burst::Blip(1), expect: Expect::Fails {
            phase: RunState::Swapping, codes: &["BAGS_REJECTED"], opens_breaker: false } };

    // Helius DAS: the holder snapshot (ALLOCATING).
    helius_429_blip_is_retried: Cell { fake: "helius", route: Some(HOLDERS),
        fault: rate_limited(), burst: Burst::Blip(2), expect: Expect::Completes };
    helius_429_outage_opens_the_breaker: Cell { fake: "helius", route: Some(HOLDERS),
        fault: rate_limited(), burst: Burst::Outage, expect: Expect::Fails {
            phase: RunState::Allocating, codes: HOLDERS_FAIL, opens_breaker: true } };
    helius_5xx_blip_is_retried: Cell { fake: "helius", route: Some(HOLDERS),
        fault: server_error(), burst: Burst::Blip(2), expect: Expect::Completes };
    helius_5xx_outage_opens_the_breaker: Cell { fake: "helius", route: Some(HOLDERS),
        fault: server_error(), burst: Burst::Outage, expect: Expect::Fails {
            phase: RunState::Allocating, codes: HOLDERS_FAIL, opens_breaker: true } };
    helius_hang_blip_times_out_and_is_retried: Cell { fake: "helius", route: Some(HOLDERS),
        fault: Fault::Hang, burst: Burst::Blip(1), expect: Expect::Completes };
    helius_hang_outage_opens_the_breaker: Cell { fake: "helius", route: Some(HOLDERS),
        fault: Fault::Hang, burst: Burst::Outage, expect: Expect::Fails {
            phase: RunState::Allocating, codes: HOLDERS_FAIL, opens_breaker: true } };
    helius_dropped_connection_blip_is_retried: Cell { fake: "helius", route: Some(HOLDERS),
        fault: Fault::DropConnection, burst: Burst::Blip(2), expect: Expect::Completes };
    helius_dropped_connection_outage_opens_the_breaker: Cell { fake: "helius",
        route: Some(HOLDERS), fault: Fault::DropConnection, burst: Burst::Outage,
        expect: Expect::Fails {
            phase: RunState::Allocating, codes: HOLDERS_FAIL, opens_breaker: true } };
    helius_malformed_json_fails_at_once: Cell { fake: "helius", route: Some(HOLDERS),
        fault: Fault::MalformedJson, burst: Burst::Blip(1), expect: Expect::Fails {
            phase: RunState::Allocating, codes: HOLDERS_FAIL, opens_breaker: false } };

    // OpenRouter: key creation (PROVISIONING).
    openrouter_429_blip_is_retried: Cell { fake: "openrouter", route: Some(CREATE_KEY),
        fault: rate_limited(), burst: Burst::Blip(2), expect: Expect::Completes };
    openrouter_429_outage_opens_the_breaker: Cell { fake: "openrouter", route: Some(CREATE_KEY),
        fault: rate_limited(), burst: Burst::Outage, expect: Expect::Fails {
            phase: RunState::Provisioning,
            codes: &["OPENROUTER_RATE_LIMITED", "OPENROUTER_UNAVAILABLE"],
            opens_breaker: true } };
    openrouter_5xx_blip_fails_the_holder_and_the_resume_creates_its_key: Cell {
        fake: "openrouter", route: Some(CREATE_KEY), fault: server_error(),
        burst: Burst::Blip(2), expect: Expect::Fails { phase: RunState::Provisioning,
            codes: &["OPENROUTER_SERVER_ERROR"], opens_breaker: false } };
    openrouter_5xx_outage_opens_the_breaker: Cell { fake: "openrouter", route: Some(CREATE_KEY),
        fault: server_error(), burst: Burst::Outage, expect: Expect::Fails {
            phase: RunState::Provisioning, codes: &["OPENROUTER_SERVER_ERROR"],
            opens_breaker: true } };
    openrouter_hang_outage_opens_the_breaker: Cell { fake: "openrouter", route: Some(CREATE_KEY),
        fault: Fault::Hang, burst: Burst::Outage, expect: Expect::Fails {
            phase: RunState::Provisioning, codes: &["OPENROUTER_TIMEOUT"],
            opens_breaker: true } };
    openrouter_dropped_connection_outage_opens_the_breaker: Cell { fake: "openrouter",
        route: Some(CREATE_KEY), fault: Fault::DropConnection, burst: Burst::Outage,
        expect: Expect::Fails { phase: RunState::Provisioning,
            codes: &["OPENROUTER_UNREACHABLE"], opens_breaker: true } };
    openrouter_malformed_json_fails_the_holder: Cell { fake: "openrouter",
        route: Some(CREATE_KEY), fault: Fault::MalformedJson, burst: Burst::Blip(1),
        expect: Expect::Fails { phase: RunState::Provisioning,
            codes: &["OPENROUTER_BAD_RESPONSE"], opens_breaker: false } };

    // Solana RPC: every method (claims are sent and confirmed in CLAIMING).
    rpc_429_blip_is_retried: Cell { fake: "rpc", route: None, fault: rate_limited(),
        burst: Burst::Blip(2), expect: Expect::Completes };
    rpc_429_outage_opens_the_breaker: Cell { fake: "rpc", route: None, fault: rate_limited(),
        burst: Burst::Outage, expect: Expect::Fails {
            phase: RunState::Claiming, codes: RPC_FAILS, opens_breaker: true } };
    rpc_5xx_blip_is_retried: Cell { fake: "rpc", route: None, fault: server_error(),
        burst: Burst::Blip(2), expect: Expect::Completes };
    rpc_5xx_outage_opens_the_breaker: Cell { fake: "rpc", route: None, fault: server_error(),
        burst: Burst::Outage, expect: Expect::Fails {
            phase: RunState::Claiming, codes: RPC_FAILS, opens_breaker: true } };
    rpc_hang_blip_times_out_and_is_retried: Cell { fake: "rpc", route: None, fault: Fault::Hang,
        burst: Burst::Blip(1), expect: Expect::Completes };
    rpc_hang_outage_opens_the_breaker: Cell { fake: "rpc", route: None, fault: Fault::Hang,
        burst: Burst::Outage, expect: Expect::Fails {
            phase: RunState::Claiming, codes: RPC_FAILS, opens_breaker: true } };
    rpc_dropped_connection_blip_is_retried: Cell { fake: "rpc", route: None,
        fault: Fault::DropConnection, burst: Burst::Blip(2), expect: Expect::Completes };
    rpc_dropped_connection_outage_opens_the_breaker: Cell { fake: "rpc", route: None,
        fault: Fault::DropConnection, burst: Burst::Outage, expect: Expect::Fails {
            phase: RunState::Claiming, codes: RPC_FAILS, opens_breaker: true } };
    rpc_malformed_json_blip_is_confirmed_through: Cell { fake: "rpc", route: None,
        fault: Fault::MalformedJson, burst: Burst::Blip(1), expect: Expect::Completes };
    rpc_malformed_json_outage_fails_claiming: Cell { fake: "rpc", route: None,
        fault: Fault::MalformedJson, burst: Burst::Outage, expect: Expect::Fails {
            phase: RunState::Claiming, codes: RPC_FAILS, opens_breaker: false } };
    rpc_dropped_transaction_is_sent_again: Cell { fake: "rpc", route: Some(SEND_TRANSACTION),
        fault: Fault::DropTransaction, burst: Burst::Blip(1), expect: Expect::Completes };
    rpc_dropped_transactions_expire_and_the_resume_sends_a_fresh_one: Cell { fake: "rpc",
        route: Some(SEND_TRANSACTION), fault: Fault::DropTransaction, burst: Burst::Outage,
        expect: Expect::Fails { phase: RunState::Claiming, codes: &["TX_EXPIRED"],
            opens_breaker: false } };
}
