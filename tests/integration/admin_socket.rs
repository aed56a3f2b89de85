//! The admin socket: handshake, mode 0600, stale-socket handling, one daemon per socket.

use std::time::Duration;

use creditbrain::admin::client::{AdminClient, AdminClientError};
use creditbrain::admin::protocol::{AdminRequest, AdminResponse, PROTOCOL_VERSION};
use creditbrain::admin::server::AdminSocketError;
use creditbrain::daemon::DaemonError;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::support::{CreditsServer, TestDaemon, TestEnv, assert_socket_mode_0600, eventually};

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
