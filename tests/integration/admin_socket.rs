//! The admin socket: handshake, mode 0600, stale-socket handling, one daemon per socket, a slow
//! request holding up no other connection, and an answer for a request in flight at shutdown.

use std::time::Duration;

use creditbrain::admin::client::{AdminClient, AdminClientError};
use creditbrain::admin::protocol::{AdminRequest, AdminResponse, PROTOCOL_VERSION};
use creditbrain::admin::server::AdminSocketError;
use creditbrain::daemon::DaemonError;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use creditbrain::sandbox::faults::{Fault, FaultMode, FaultRule};

use crate::support::{
    CreditsServer, SandboxDaemon, TestDaemon, TestEnv, assert_socket_mode_0600, eventually,
};

/// Sends raw lines and returns the parsed replies, as a client from another build would.
async fn exchange(path: &std::path::Path, lines: &[&str]) -> Vec<Value> {
    let stream = UnixStream::connect(path).await.unwrap();
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut replies = Vec::new();
    for line in lines {
        // The daemon may have hung up already (after a version mismatch).
        if writer
            .write_all(format!("{line}\n").as_bytes())
            .await
            .is_err()
        {
            break;
        }
        let mut reply = String::new();
        if reader.read_line(&mut reply).await.unwrap() == 0 {
            break;
        }
        replies.push(serde_json::from_str(&reply).unwrap());
    }
    replies
}

#[tokio::test]
async fn handshake_is_required_and_versions_must_match() {
    let daemon = TestDaemon::start().await;
    let socket = daemon.env.socket_path();
    assert_socket_mode_0600(&socket);

    let replies = exchange(&socket, &[r#"{"type":"health"}"#]).await;
    assert_eq!(replies[0]["type"], "error");
    assert_eq!(replies[0]["code"], "handshake_required");

    let wrong = format!(
        r#"{{"type":"hello","protocol":{},"client":"future"}}"#,
        PROTOCOL_VERSION + 1
    );
    let replies = exchange(&socket, &[&wrong, r#"{"type":"health"}"#]).await;
    assert_eq!(
        replies.len(),
        1,
        "the daemon hangs up after a version mismatch"
    );
    assert_eq!(replies[0]["code"], "protocol_mismatch");

    let replies = exchange(&socket, &["not json"]).await;
    assert_eq!(replies[0]["code"], "invalid_request");

    let hello = format!(r#"{{"type":"hello","protocol":{PROTOCOL_VERSION},"client":"test"}}"#);
    let replies = exchange(&socket, &[&hello, r#"{"type":"health"}"#]).await;
    assert_eq!(replies[0]["type"], "hello");
    assert!(
        replies[0]["daemon"]
            .as_str()
            .unwrap()
            .starts_with("creditbrain ")
    );
    assert_eq!(replies[1]["type"], "health");
    assert!(replies[1]["readiness"]["dependencies"]["database"].is_boolean());
    daemon.stop().await;
}

#[tokio::test]
async fn the_client_reads_health_like_the_http_endpoint() {
    let daemon = TestDaemon::start().await;
    let socket = daemon.env.socket_path();
    let reply = eventually(Duration::from_secs(10), || async {
        let mut client = AdminClient::connect(&socket).await.unwrap();
        match client.request(&AdminRequest::Health).await.unwrap() {
            AdminResponse::Health(reply) if reply.readiness.is_ready() => Some(reply),
            _ => None,
        }
    })
    .await;
    assert!(reply.readiness.dependencies.database && reply.readiness.dependencies.openrouter);
    assert!(reply.report.checked_at.is_some());
    daemon.stop().await;
}

#[tokio::test]
async fn a_second_daemon_on_the_same_socket_refuses_to_start() {
    let daemon = TestDaemon::start().await;
    let error = match creditbrain::daemon::start(&daemon.env.config()).await {
        Ok(_) => panic!("a second daemon started on a live socket"),
        Err(error) => error,
    };
    assert!(
        matches!(
            error,
            DaemonError::AdminSocket(AdminSocketError::AlreadyRunning(_))
        ),
        "{error}"
    );
    // The refusal left the first daemon's socket alone.
    AdminClient::connect(&daemon.env.socket_path())
        .await
        .expect("first daemon still answers");
    daemon.stop().await;
}

/// One daemon per database, whatever its socket and port: the second refuses (the database lock
/// file), and the first is untouched. Once the first is gone the lock is free again.
#[tokio::test]
async fn a_second_daemon_on_the_same_database_refuses_to_start() {
    let daemon = TestDaemon::start().await;
    let mut vars = daemon.env.vars.clone();
    vars.insert(
        "ADMIN_SOCKET_PATH".into(),
        daemon
            .env
            .dir
            .path()
            .join("other.sock")
            .display()
            .to_string(),
    );
    let other = creditbrain::config::Config::from_vars(&vars).unwrap();
    let error = match creditbrain::daemon::start(&other).await {
        Ok(_) => panic!("a second daemon started on a database in use"),
        Err(error) => error,
    };
    assert!(matches!(error, DaemonError::DatabaseInUse(_)), "{error}");
    assert!(
        !daemon.env.dir.path().join("other.sock").exists(),
        "its socket was removed"
    );
    AdminClient::connect(&daemon.env.socket_path())
        .await
        .expect("first daemon still answers");
    daemon.stop().await;
    let second = creditbrain::daemon::start(&other)
        .await
        .expect("the lock is free again");
    second.shutdown_trigger().trigger();
    second.wait().await.unwrap();
}

#[tokio::test]
async fn a_stale_socket_is_replaced_and_removed_on_shutdown() {
    let credits = CreditsServer::start().await;
    let env = TestEnv::new(&credits.base_url);
    let socket = env.socket_path();
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    // A socket file nobody listens on: what a killed daemon leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());

    let daemon = creditbrain::daemon::start(&env.config())
        .await
        .expect("starts over a stale socket");
    AdminClient::connect(&socket)
        .await
        .expect("the new daemon answers");
    assert_socket_mode_0600(&socket);
    daemon.shutdown_trigger().trigger();
    daemon.wait().await.unwrap();
    assert!(!socket.exists(), "socket removed on shutdown");
}

#[tokio::test]
async fn a_regular_file_at_the_socket_path_is_never_deleted() {
    let credits = CreditsServer::start().await;
    let env = TestEnv::new(&credits.base_url);
    let socket = env.socket_path();
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    std::fs::write(&socket, "operator notes").unwrap();
    let error = match creditbrain::daemon::start(&env.config()).await {
        Ok(_) => panic!("started over a regular file"),
        Err(error) => error,
    };
    assert!(
        matches!(
            error,
            DaemonError::AdminSocket(AdminSocketError::NotASocket(_))
        ),
        "{error}"
    );
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "operator notes");
}

#[tokio::test]
async fn without_a_daemon_the_client_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("creditbrain.sock");
    match AdminClient::connect(&socket).await {
        Err(AdminClientError::NoDaemon(path)) => assert_eq!(path, socket),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("connected to nothing"),
    }
}

/// How many requests the sandbox's `fake` has seen on `route`.
fn request_count(daemon: &SandboxDaemon, fake: &str, route: &str) -> u64 {
    daemon
        .sandbox
        .faults
        .request_counts()
        .get(fake)
        .and_then(|routes| routes.get(route))
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_request_holds_up_no_one_and_is_answered_before_the_daemon_closes() {
    const LIST_KEYS: &str = "GET /api/v1/keys";
    let daemon = SandboxDaemon::start(2, &[]).await;
    let socket = daemon.socket_path();
    // OpenRouter's key list never answers: a reconcile waits on it for as long as we like.
    daemon.sandbox.faults.add_rule(FaultRule {
        fake: "openrouter".into(),
        route: Some(LIST_KEYS.into()),
        latency: None,
        mode: Some(FaultMode::Always { fault: Fault::Hang }),
    });
    let listed_before = request_count(&daemon, "openrouter", LIST_KEYS);
    let mut slow = AdminClient::connect(&socket).await.unwrap();
    let reconcile =
        tokio::spawn(async move { slow.request(&AdminRequest::Reconcile { fix: false }).await });
    eventually(Duration::from_secs(30), || async {
        (request_count(&daemon, "openrouter", LIST_KEYS) > listed_before).then_some(())
    })
    .await;

    // Meanwhile other connections are served.
    let mut other = AdminClient::connect(&socket).await.unwrap();
    for request in [AdminRequest::KillSwitchStatus, AdminRequest::Health] {
        let reply = other.request(&request).await.unwrap();
        assert!(
            matches!(
                reply,
                AdminResponse::KillSwitch(_) | AdminResponse::Health(_)
            ),
            "{reply:?}"
        );
    }
    assert!(!reconcile.is_finished(), "the reconcile is still waiting");

    // Shutdown: the request in flight is answered (after the grace period), not hung up on.
    let stopped = tokio::spawn(daemon.stop());
    match reconcile.await.unwrap() {
        Err(AdminClientError::Refused { code, .. }) => assert_eq!(code, "shutting_down"),
        other => panic!("expected a shutting_down answer, got {other:?}"),
    }
    stopped.await.unwrap();
    assert!(!socket.exists(), "socket removed on shutdown");
}
