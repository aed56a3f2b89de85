//! `/health/live` and `/health/ready`: the runbook's JSON, 503 with a dependency down, recovery.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::Value;

use crate::support::{CreditsMode, TestDaemon, eventually};

fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

fn assert_timestamp(value: &Value) {
    let text = value.as_str().expect("timestamp is a string");
    assert_eq!(text.len(), 24, "RFC 3339 with milliseconds and Z: {text}");
    assert!(text.ends_with('Z'), "{text}");
    chrono::DateTime::parse_from_rfc3339(text).expect("timestamp parses");
}

async fn wait_until_ready(daemon: &TestDaemon) -> Value {
    eventually(Duration::from_secs(10), || async {
        let (status, body) = daemon.get_json("/health/ready").await;
        (status == StatusCode::OK).then_some(body)
    })
    .await
}

#[tokio::test]
async fn live_answers_with_status_timestamp_and_uptime() {
    let daemon = TestDaemon::start().await;
    let (status, body) = daemon.get_json("/health/live").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&body), ["status", "timestamp", "uptime"]);
    assert_eq!(body["status"], "ok");
    assert!(body["uptime"].is_u64());
    assert_timestamp(&body["timestamp"]);
    daemon.stop().await;
}

#[tokio::test]
async fn ready_reports_every_dependency_up_in_the_runbook_shape() {
    let daemon = TestDaemon::start().await;
    let body = wait_until_ready(&daemon).await;
    assert_eq!(
        keys(&body),
        [
            "dependencies",
            "integrations",
            "responseTimeMs",
            "status",
            "timestamp",
            "uptime"
        ]
    );
    assert_eq!(keys(&body["dependencies"]), ["database", "openrouter"]);
    assert_eq!(
        keys(&body["integrations"]),
        ["bags", "helius-das", "openrouter", "solana-rpc"]
    );
    assert!(
        body["integrations"]
            .as_object()
            .unwrap()
            .values()
            .all(|state| state == "closed")
    );
    assert_eq!(body["status"], "ok");
    assert_eq!(body["dependencies"]["database"], true);
    assert_eq!(body["dependencies"]["openrouter"], true);
    assert!(body["responseTimeMs"].is_u64());
    assert_timestamp(&body["timestamp"]);
    daemon.stop().await;
}

#[tokio::test]
async fn ready_is_503_degraded_while_openrouter_fails_and_recovers() {
    let daemon = TestDaemon::start().await;
    wait_until_ready(&daemon).await;
    daemon.credits.set_mode(CreditsMode::Failing);
    let body = eventually(Duration::from_secs(10), || async {
        let (status, body) = daemon.get_json("/health/ready").await;
        (status == StatusCode::SERVICE_UNAVAILABLE && body["dependencies"]["openrouter"] == false)
            .then_some(body)
    })
    .await;
    assert_eq!(body["status"], "degraded");
    assert_eq!(
        body["dependencies"]["database"], true,
        "the database is still up"
    );

    daemon.credits.set_mode(CreditsMode::Up);
    eventually(Duration::from_secs(10), || async {
        let (status, body) = daemon.get_json("/health/ready").await;
        (status == StatusCode::OK && body["status"] == "ok").then_some(())
    })
    .await;
    daemon.stop().await;
}

#[tokio::test]
async fn a_hanging_openrouter_times_out_after_3_s_and_readiness_stays_fast() {
    let daemon = TestDaemon::start().await;
    wait_until_ready(&daemon).await;
    daemon.credits.set_mode(CreditsMode::Hanging);
    // While the probe hangs, readiness keeps answering from the last results; once the 3 s
    // timeout fires, OpenRouter is reported down with the probe's duration.
    let body = eventually(Duration::from_secs(15), || async {
        let (status, body) = daemon.get_json("/health/ready").await;
        (status == StatusCode::SERVICE_UNAVAILABLE && body["dependencies"]["openrouter"] == false)
            .then_some(body)
    })
    .await;
    assert!(
        body["responseTimeMs"].as_u64().unwrap() >= 3000,
        "the round waited for the 3 s timeout: {body}"
    );
    let report = daemon.daemon.handle.health_report();
    assert!(
        report
            .openrouter
            .error
            .as_deref()
            .unwrap_or("")
            .contains("3000 ms"),
        "{report:?}"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn unknown_routes_answer_404_with_the_error_shape() {
    let daemon = TestDaemon::start().await;
    let (status, body) = daemon.get_json("/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    assert!(body["error"]["message"].as_str().unwrap().contains("/nope"));
    daemon.stop().await;
}

#[tokio::test]
async fn the_daemons_openrouter_actor_reaches_the_fake_and_its_breaker_shows_in_health() {
    use creditbrain::admin::client::AdminClient;
    use creditbrain::admin::protocol::{AdminRequest, AdminResponse};
    use creditbrain_actors::openrouter::{CreateKey, actor as openrouter};
    use creditbrain_actors::resilience::{BreakerState, Integration};

    let daemon = TestDaemon::start().await;
    wait_until_ready(&daemon).await;
    let actor = daemon
        .daemon
        .handle
        .openrouter
        .get()
        .expect("openrouter actor running");
    let created = openrouter::create_key(
        &actor,
        CreateKey {
            name: "creditbrain-health-test".into(),
            limit_micro_usd: Some(12_340_000),
            ..CreateKey::default()
        },
        Duration::from_secs(10),
    )
    .await
    .expect("create through the actor");
    let stored = daemon.credits.fake.keys();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].hash, created.key.hash);
    assert_eq!(stored[0].limit_micro_usd, Some(12_340_000));

    // Failures through the actor open its breaker; readiness and the admin socket show it.
    daemon.credits.set_mode(CreditsMode::Failing);
    let error = openrouter::credits(&actor, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error}");
    let body = eventually(Duration::from_secs(10), || async {
        let (_, body) = daemon.get_json("/health/ready").await;
        (body["integrations"]["openrouter"] == "open").then_some(body)
    })
    .await;
    assert_eq!(body["integrations"]["bags"], "closed");
    let mut client = AdminClient::connect(&daemon.env.socket_path())
        .await
        .unwrap();
    let AdminResponse::Health(reply) = client.request(&AdminRequest::Health).await.unwrap() else {
        panic!("health reply expected");
    };
    let breaker = reply
        .breakers
        .iter()
        .find(|breaker| breaker.integration == Integration::OpenRouter)
        .unwrap();
    assert_eq!(breaker.state, BreakerState::Open);
    assert!(breaker.failures >= 3, "{breaker:?}");
    assert!(
        breaker.last_error.as_deref().unwrap_or("").contains("500"),
        "{breaker:?}"
    );
    daemon.stop().await;
}
