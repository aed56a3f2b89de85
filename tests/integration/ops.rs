//! The frontends' operations layer against the real daemon on the sandbox: validation names its
//! fields, runs start and finish, policy refusals are 409s naming the recorded run, history
//! blocks deletion, revoke deletes the key on OpenRouter and releases its promise.

use creditbrain::ops::{self, ErrorKind, RunQuery};
use creditbrain_actors::store::runs::{RunState, TriggeredBy};
use creditbrain_actors::strategy::{StrategyInput, StrategyPatch, StrategyStatus};

use solana_sdk::signature::Signer;

use crate::support::SandboxDaemon;

#[tokio::test(flavor = "multi_thread")]
async fn operations_cover_strategies_runs_policy_keys_and_stats() {
    let daemon = SandboxDaemon::start(12, &[]).await;
    let handle = &daemon.daemon.handle;

    // Validation names every bad field and writes nothing.
    let before = ops::list_strategies(handle, None).await.unwrap().len();
    let bad = StrategyInput {
        owner_wallet: Some("not-a-wallet".into()),
        slippage_bps: Some("5000".into()),
        ..StrategyInput::default()
    };
    let error = ops::create_strategy(handle, &bad, "test")
        .await
        .unwrap_err();
    assert_eq!(
        (error.kind, error.code.as_str()),
        (ErrorKind::BadRequest, "invalid_strategy")
    );
    let fields: Vec<String> = error.details.as_ref().unwrap()["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|problem| problem["field"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(fields, ["ownerWallet", "slippageBps"], "{error:?}");
    assert_eq!(
        ops::list_strategies(handle, None).await.unwrap().len(),
        before
    );
    assert_eq!(
        ops::list_strategies(handle, Some("sleeping"))
            .await
            .unwrap_err()
            .code,
        "invalid_status"
    );

    // A strategy without history can be created, patched, paused and deleted.
    let created = ops::create_strategy(
        handle,
        &StrategyInput {
            owner_wallet: Some(daemon.sandbox.world.signer.pubkey().to_string()),
            ..StrategyInput::default()
        },
        "test",
    )
    .await
    .unwrap();
    let id = created["strategyId"].as_str().unwrap().to_string();
    let patched = ops::update_strategy(
        handle,
        &id,
        &StrategyPatch {
            top_n: Some("3".into()),
            ..StrategyPatch::default()
        },
        "test",
    )
    .await
    .unwrap();
    assert_eq!(patched["topN"], 3);
    let paused = ops::set_strategy_status(handle, &id, StrategyStatus::Paused, "test")
        .await
        .unwrap();
    assert_eq!(paused["status"], "paused");
    ops::delete_strategy(handle, &id, "test").await.unwrap();
    assert_eq!(
        ops::get_strategy(handle, &id).await.unwrap_err().code,
        "strategy_not_found"
    );

    // A run of the seeded strategy completes and its detail carries the phase log.
    let started = ops::start_run(handle, &daemon.strategy_id, None, TriggeredBy::Manual)
        .await
        .unwrap();
    let run = daemon.wait_for_end(&started.run_id).await;
    assert_eq!(run.state, RunState::Complete, "{run:?}");
    let detail = ops::run_detail(handle, &started.run_id).await.unwrap();
    assert_eq!(detail.run.state, "COMPLETE");
    let actions: Vec<&str> = detail.audit.iter().map(|row| row.action.as_str()).collect();
    assert!(actions.contains(&"run_created"), "{actions:?}");
    assert!(
        detail.transactions.iter().any(|tx| tx.status == "landed"),
        "{detail:?}"
    );
    assert_eq!(detail.allocations.get("applied").copied(), run.keys_created);
    let listed = ops::list_runs(
        handle,
        &RunQuery {
            strategy_id: Some(daemon.strategy_id.clone()),
            ..RunQuery::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        ops::list_runs(
            handle,
            &RunQuery {
                limit: Some(0),
                ..RunQuery::default()
            }
        )
        .await
        .unwrap_err()
        .code,
        "invalid_limit"
    );

    // History blocks deletion: 409, and the strategy is still there.
    let error = ops::delete_strategy(handle, &daemon.strategy_id, "test")
        .await
        .unwrap_err();
    assert_eq!(
        (error.kind, error.code.as_str()),
        (ErrorKind::Conflict, "strategy_has_runs")
    );
    ops::get_strategy(handle, &daemon.strategy_id)
        .await
        .unwrap();

    // The kill switch: a start is a 409 naming the FAILED run it recorded.
    let switch = ops::set_kill_switch(handle, true, "test").await.unwrap();
    assert!(switch.runtime && switch.engaged && !switch.env);
    let error = ops::start_run(handle, &daemon.strategy_id, None, TriggeredBy::Api)
        .await
        .unwrap_err();
    assert_eq!(
        (error.kind, error.code.as_str()),
        (ErrorKind::Conflict, "kill_switch")
    );
    let blocked_id = error.details.as_ref().unwrap()["runId"]
        .as_str()
        .unwrap()
        .to_string();
    let blocked = ops::get_run(handle, &blocked_id).await.unwrap();
    assert_eq!(
        (blocked.state.as_str(), blocked.error_code.as_deref()),
        ("FAILED", Some("KILL_SWITCH"))
    );
    assert!(
        !ops::set_kill_switch(handle, false, "test")
            .await
            .unwrap()
            .engaged
    );
    assert!(!ops::kill_switch_status(handle).await.unwrap().runtime);

    // Keys: listed without secrets; revoking one deletes it on OpenRouter and frees its promise.
    let keys = ops::list_keys(handle, Some(&daemon.strategy_id), None)
        .await
        .unwrap();
    assert_eq!(keys.len() as u64, run.keys_created.unwrap());
    assert!(
        keys.iter()
            .all(|key| key.awaiting_reveal && key.status == "active")
    );
    let pool_before = ops::pool_status_view(handle).await.unwrap();
    let victim = &keys[0];
    let revoked = ops::revoke_key(handle, &victim.key_hash, "test")
        .await
        .unwrap();
    assert!(revoked.remote_deleted);
    assert!(
        daemon
            .sandbox
            .openrouter
            .keys()
            .iter()
            .all(|key| key.hash != victim.key_hash),
        "the revoked key is gone from OpenRouter"
    );
    let after = ops::list_keys(handle, None, Some(&victim.holder_wallet))
        .await
        .unwrap();
    assert_eq!(
        (after[0].status.as_str(), after[0].awaiting_reveal),
        ("revoked", false)
    );
    let pool_after = ops::pool_status_view(handle).await.unwrap();
    assert_eq!(
        pool_before.promised_micro_usd - pool_after.promised_micro_usd,
        victim.limit_micro_usd - victim.usage_micro_usd
    );
    assert_eq!(
        ops::revoke_key(handle, &victim.key_hash, "test")
            .await
            .unwrap_err()
            .code,
        "key_not_current"
    );
    assert_eq!(
        ops::revoke_key(handle, "no-such-key", "test")
            .await
            .unwrap_err()
            .code,
        "key_not_found"
    );

    // Stats agree with what happened.
    let stats = ops::stats(handle).await.unwrap();
    assert_eq!(stats.runs_by_state.get("COMPLETE"), Some(&1));
    assert_eq!(stats.failed_runs_by_code.get("KILL_SWITCH"), Some(&1));
    assert_eq!(stats.keys_by_status.get("revoked"), Some(&1));
    assert_eq!(stats.granted_micro_usd, run.allocated_micro_usd.unwrap());
    assert_eq!(stats.claimed_lamports as u64, run.claimed_lamports.unwrap());

    // The harness' own handles (the frontend tests use them).
    let live = daemon
        .api(reqwest::Method::GET, "/health/live")
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert!(daemon.socket_path().starts_with(daemon.dir.path()));
    assert!(daemon.url("/").ends_with('/'));
    assert!(
        daemon
            .http
            .get(daemon.url("/health/live"))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );

    daemon.stop().await;
}

/// A run FAILED in PROVISIONING holds its grants out of every other run's room; cancelling it
/// releases them into the strategy's carry-over, which the next run grants: nothing lost, nothing
/// granted twice, and the cancelled run can never be resumed.
#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_failed_run_releases_its_grants_into_the_next_run() {
    use creditbrain::sandbox::faults::{Fault, FaultMode, FaultRule};

    let daemon = SandboxDaemon::start(8, &[]).await;
    let handle = &daemon.daemon.handle;
    // OpenRouter refuses every key creation (a 4xx: no retries, no breaker).
    daemon.sandbox.faults.add_rule(FaultRule {
        fake: "openrouter".into(),
        route: Some("POST /api/v1/keys".into()),
        latency: None,
        mode: Some(FaultMode::Always {
            fault: Fault::ServerError { status: 400 },
        }),
    });
    let started = ops::start_run(handle, &daemon.strategy_id, None, TriggeredBy::Manual)
        .await
        .unwrap();
    let failed = daemon.wait_for_end(&started.run_id).await;
    assert_eq!(
        (failed.state, failed.error_failed_state),
        (RunState::Failed, Some(RunState::Provisioning)),
        "{failed:?}"
    );
    let allocated = failed.allocated_micro_usd.unwrap();
    assert!(allocated > 0);
    assert_eq!(
        ops::pool_status_view(handle)
            .await
            .unwrap()
            .open_grants_micro_usd,
        allocated,
        "the failed run's grants are still promised"
    );
    let carry_before = ops::get_strategy(handle, &daemon.strategy_id)
        .await
        .unwrap()["carryOverMicroUsd"]
        .as_i64()
        .unwrap();

    assert_eq!(
        ops::cancel_run(handle, &started.run_id, " ", "test")
            .await
            .unwrap_err()
            .code,
        "invalid_reason"
    );
    let cancelled = ops::cancel_run(handle, &started.run_id, "openrouter refused keys", "test")
        .await
        .unwrap();
    assert_eq!(cancelled.released_micro_usd, allocated);
    assert_eq!(cancelled.carried_over_micro_usd, allocated);
    assert_eq!(cancelled.skipped_allocations, failed.holders_count.unwrap());
    assert_eq!(
        ops::pool_status_view(handle)
            .await
            .unwrap()
            .open_grants_micro_usd,
        0
    );
    let carry_after = ops::get_strategy(handle, &daemon.strategy_id)
        .await
        .unwrap()["carryOverMicroUsd"]
        .as_i64()
        .unwrap();
    assert_eq!(carry_after, carry_before + allocated);
    let run = ops::get_run(handle, &started.run_id).await.unwrap();
    assert_eq!(
        (
            run.allocated_micro_usd,
            run.carry_out_micro_usd,
            run.skipped_reason.as_deref()
        ),
        (Some(0), run.budget_micro_usd, Some("cancelled"))
    );
    assert_eq!(
        ops::resume_run(handle, &started.run_id)
            .await
            .unwrap_err()
            .code,
        "run_not_resumable"
    );
    assert_eq!(
        ops::cancel_run(handle, &started.run_id, "again", "test")
            .await
            .unwrap_err()
            .code,
        "run_not_cancellable"
    );

    // The same over HTTP.
    for (path, status, code) in [
        (
            format!("/api/runs/{}/cancel", started.run_id),
            409,
            "run_not_cancellable",
        ),
        (
            "/api/runs/no-such-run/cancel".to_string(),
            404,
            "run_not_found",
        ),
    ] {
        let response = daemon
            .api(reqwest::Method::POST, &path)
            .json(&serde_json::json!({"reason": "from the api"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{path}");
    }

    // New fees arrive; the next run carries the released grants in and grants them.
    daemon.sandbox.faults.clear(None);
    let (signer, mint) = (
        daemon.sandbox.world.signer.pubkey(),
        daemon.sandbox.world.positions[0].0,
    );
    daemon
        .sandbox
        .bags
        .add_position(&signer, &mint, 2_000_000_000);
    let next = ops::start_run(handle, &daemon.strategy_id, None, TriggeredBy::Manual)
        .await
        .unwrap();
    let next = daemon.wait_for_end(&next.run_id).await;
    assert_eq!(next.state, RunState::Complete, "{next:?}");
    assert_eq!(next.carry_in_micro_usd, Some(carry_after));
    let keys = ops::list_keys(handle, Some(&daemon.strategy_id), None)
        .await
        .unwrap();
    let granted: i64 = keys.iter().map(|key| key.limit_micro_usd).sum();
    assert_eq!(granted, next.allocated_micro_usd.unwrap());
    assert_eq!(
        ops::cancel_run(handle, &next.run_id, "done already", "test")
            .await
            .unwrap_err()
            .code,
        "run_not_cancellable"
    );
    let audit = daemon
        .daemon
        .handle
        .store
        .audit_for_run(&started.run_id)
        .await
        .unwrap();
    assert!(audit.iter().any(|row| row.action == "run_cancelled"));
    daemon.stop().await;
}

/// A strategy switched from allowance (monthly) to credits: its keys stop resetting, and a key's
/// limit becomes what it has spent plus its new grant, so the holder can spend exactly the grant.
#[tokio::test(flavor = "multi_thread")]
async fn switching_a_strategy_from_allowance_to_credits_ends_the_resets() {
    let daemon = SandboxDaemon::start(6, &[("KEY_LIMIT_RESET", "monthly")]).await;
    let handle = &daemon.daemon.handle;
    let first = ops::start_run(handle, &daemon.strategy_id, None, TriggeredBy::Manual)
        .await
        .unwrap();
    assert_eq!(
        daemon.wait_for_end(&first.run_id).await.state,
        RunState::Complete
    );
    let keys = ops::list_keys(handle, Some(&daemon.strategy_id), None)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    assert!(
        keys.iter()
            .all(|key| key.limit_reset.as_deref() == Some("monthly"))
    );
    let spender = keys[0].clone();
    daemon
        .sandbox
        .openrouter
        .add_usage(&spender.key_hash, 1_230_000)
        .unwrap();

    ops::update_strategy(
        handle,
        &daemon.strategy_id,
        &serde_json::from_value::<StrategyPatch>(serde_json::json!({"keyLimitReset": null}))
            .unwrap(),
        "test",
    )
    .await
    .unwrap();
    let (signer, mint) = (
        daemon.sandbox.world.signer.pubkey(),
        daemon.sandbox.world.positions[0].0,
    );
    daemon
        .sandbox
        .bags
        .add_position(&signer, &mint, 2_000_000_000);
    let second = ops::start_run(handle, &daemon.strategy_id, None, TriggeredBy::Manual)
        .await
        .unwrap();
    let second = daemon.wait_for_end(&second.run_id).await;
    assert_eq!(second.state, RunState::Complete, "{second:?}");

    let ledger = ops::list_keys(handle, Some(&daemon.strategy_id), None)
        .await
        .unwrap();
    assert!(
        ledger.iter().all(|key| key.limit_reset.is_none()),
        "{ledger:?}"
    );
    let remote = daemon.sandbox.openrouter.keys();
    let grants = daemon
        .daemon
        .handle
        .store
        .allocations_for_run(&second.run_id)
        .await
        .unwrap();
    let grant = grants
        .iter()
        .find(|allocation| allocation.holder_wallet == spender.holder_wallet)
        .map(|allocation| allocation.grant_micro_usd)
        .expect("the spender got a grant");
    let remote_spender = remote
        .iter()
        .find(|key| key.hash == spender.key_hash)
        .unwrap();
    assert_eq!(remote_spender.limit_reset, None);
    assert_eq!(remote_spender.limit_micro_usd, Some(1_230_000 + grant));
    assert_eq!(remote_spender.limit_remaining_micro_usd, Some(grant));
    assert!(remote.iter().all(|key| key.limit_reset.is_none()));
    daemon.stop().await;
}
