//! Supervision in the real daemon: a dead HealthActor is replaced and readiness keeps working;
//! past the restart budget the daemon stops with an error and cleans up.

use std::time::Duration;

use axum::http::StatusCode;
use creditbrain::daemon::DaemonError;

use crate::support::{TestDaemon, eventually};

/// Kills the running HealthActor and waits until the supervisor has replaced it.
async fn kill_health_actor(daemon: &TestDaemon) {
    let victim = daemon
        .daemon
        .handle
        .health
        .get()
        .expect("health actor running");
    victim.get_cell().kill();
    eventually(Duration::from_secs(5), || async {
        daemon
            .daemon
            .handle
            .health
            .get()
            .filter(|current| current.get_id() != victim.get_id())
            .map(|_| ())
    })
    .await;
}

#[tokio::test]
async fn a_killed_health_actor_is_restarted_and_readiness_recovers() {
    let daemon = TestDaemon::start().await;
    kill_health_actor(&daemon).await;
    assert_eq!(
        daemon.daemon.handle.restart_counts.snapshot().get("health"),
        Some(&1)
    );
    // The new instance probes again: readiness is served and fresh.
    let before = daemon.daemon.handle.health_report().checked_at;
    eventually(Duration::from_secs(10), || async {
        let fresh = daemon.daemon.handle.health_report().checked_at > before;
        let (status, _) = daemon.get_json("/health/ready").await;
        (fresh && status == StatusCode::OK).then_some(())
    })
    .await;
    daemon.stop().await;
}

#[tokio::test]
async fn past_the_restart_budget_the_daemon_stops_with_an_error() {
    let daemon = TestDaemon::start().await;
    // The default budget is 5 restarts in 60 s; the sixth death ends the tree.
    for _ in 0..5 {
        kill_health_actor(&daemon).await;
    }
    daemon.daemon.handle.health.get().unwrap().get_cell().kill();
    let socket = daemon.env.socket_path();
    let outcome = tokio::time::timeout(Duration::from_secs(10), daemon.daemon.wait())
        .await
        .expect("the daemon stops by itself");
    assert!(
        matches!(outcome, Err(DaemonError::ActorsDied(_))),
        "{outcome:?}"
    );
    assert!(!socket.exists(), "socket removed even on a failure exit");
}

#[tokio::test]
async fn every_integration_actor_is_restarted_after_it_dies() {
    let daemon = TestDaemon::start().await;
    let handle = &daemon.daemon.handle;
    let openrouter = handle.openrouter.get().expect("openrouter actor running");
    openrouter.get_cell().kill();
    let chain = handle.chain.get().expect("chain actor running");
    chain.get_cell().kill();
    eventually(Duration::from_secs(5), || async {
        let restarted = handle
            .openrouter
            .get()
            .is_some_and(|current| current.get_id() != openrouter.get_id())
            && handle
                .chain
                .get()
                .is_some_and(|current| current.get_id() != chain.get_id());
        restarted.then_some(())
    })
    .await;
    let counts = handle.restart_counts.snapshot();
    assert_eq!(counts.get("openrouter"), Some(&1));
    assert_eq!(counts.get("chain"), Some(&1));
    // The replacements answer: a credits call through the new OpenRouterActor reaches the fake.
    let actor = handle.openrouter.get().unwrap();
    let credits = creditbrain_actors::openrouter::actor::credits(&actor, Duration::from_secs(10))
        .await
        .expect("the restarted actor answers");
    assert_eq!(credits.total_credits_micro_usd, 150_250_000);
    daemon.stop().await;
}
