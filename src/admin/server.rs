//! The daemon's end of the admin socket: claims the socket path (refusing while another daemon
//! answers on it, clearing a stale one), serves requests as a thin adapter over [`crate::ops`]
//! (each connection in its own task, so a long reconcile holds up no one else), and on shutdown
//! removes the socket and answers what is in flight before closing.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use std::time::Duration;

use creditbrain_actors::keys_maintenance::{FixOutcome, ReconcileReport};
use creditbrain_actors::store::runs::TriggeredBy;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::protocol::{
    AdminRequest, AdminResponse, HealthReply, MAX_LINE_BYTES, PROTOCOL_VERSION, ReconcileReply,
};
use crate::daemon::Handle;
use crate::ops::{self, OpError};

/// How long a request in flight at shutdown may still take before its client is told
/// `shutting_down` (the HTTP server's grace period).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(thiserror::Error, Debug)]
pub enum AdminSocketError {
    #[error("another creditbrain daemon is already listening on {0}")]
    AlreadyRunning(PathBuf),
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("admin socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The bound admin socket. Whoever holds it owns the path and removes it when done.
pub struct AdminSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl AdminSocket {
    /// Binds `path` with mode 0600, after making sure no live daemon owns it.
    pub async fn bind(path: &Path) -> Result<Self, AdminSocketError> {
        let io_error = |source| AdminSocketError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(metadata) if metadata.file_type().is_socket() => {
                // Probe it: a live daemon answers the connect; a stale file refuses it.
                match UnixStream::connect(path).await {
                    Ok(_) => return Err(AdminSocketError::AlreadyRunning(path.to_path_buf())),
                    Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
                        tracing::warn!(path = %path.display(), "removing stale admin socket");
                        std::fs::remove_file(path).map_err(io_error)?;
                    }
                    Err(error) => return Err(io_error(error)),
                }
            }
            Ok(_) => return Err(AdminSocketError::NotASocket(path.to_path_buf())),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error(error)),
        }
        let listener = UnixListener::bind(path).map_err(io_error)?;
        // Only the daemon's user may talk to it: the socket can start runs and flip the kill switch.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_error)?;
        Ok(Self {
            listener,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves connections until `shutdown` turns true, then removes the socket file and lets
    /// the connections finish: an idle one closes at once, one with a request in flight replies
    /// first (or, past [`DRAIN_TIMEOUT`], replies `shutting_down`).
    pub async fn serve(self, handle: Handle, shutdown: watch::Receiver<bool>) {
        let mut stopping = shutdown.clone();
        let stopped = async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        };
        tokio::pin!(stopped);
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let handle = handle.clone();
                        let shutdown = shutdown.clone();
                        connections.spawn(async move {
                            if let Err(error) = serve_connection(stream, handle, shutdown).await {
                                tracing::debug!(error = %error, "admin connection ended with an error");
                            }
                        });
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, "admin socket accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                // Reap finished connections so the set holds only live ones.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = &mut stopped => break,
            }
        }
        // New clients now find no socket ("no daemon") instead of a daemon that will not answer.
        drop(self.listener);
        if let Err(error) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %error, "could not remove admin socket");
        }
        // Each connection bounds its own drain; this only guards against one that does not.
        let drained = tokio::time::timeout(DRAIN_TIMEOUT + Duration::from_secs(1), async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("admin connections still open after the grace period, closing them");
            connections.abort_all();
        }
    }
}

async fn serve_connection(
    stream: UnixStream,
    handle: Handle,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader);
    let mut greeted = false;
    let mut line = String::new();
    loop {
        line.clear();
        let mut limited = (&mut lines).take(MAX_LINE_BYTES as u64 + 1);
        let read = tokio::select! {
            read = limited.read_line(&mut line) => read?,
            // Idle at shutdown: nothing is owed to the client.
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
        };
        if read == 0 {
            return Ok(());
        }
        if read > MAX_LINE_BYTES {
            let reply = AdminResponse::error("request_too_large", "request line exceeds 1 MiB");
            write_line(&mut writer, &reply).await?;
            return Ok(());
        }
        let request = match serde_json::from_str::<AdminRequest>(line.trim_end()) {
            Ok(request) => request,
            Err(error) => {
                let reply = AdminResponse::error(
                    "invalid_request",
                    format!("not an admin request: {error}"),
                );
                write_line(&mut writer, &reply).await?;
                continue;
            }
        };
        let reply = match (greeted, request) {
            (_, AdminRequest::Hello { protocol, .. }) if protocol == PROTOCOL_VERSION => {
                greeted = true;
                AdminResponse::Hello {
                    protocol: PROTOCOL_VERSION,
                    daemon: format!("creditbrain {}", env!("CARGO_PKG_VERSION")),
                }
            }
            (_, AdminRequest::Hello { protocol, .. }) => {
                let reply = AdminResponse::error(
                    "protocol_mismatch",
                    format!(
                        "client speaks admin protocol {protocol}, daemon speaks {PROTOCOL_VERSION}; use the creditbrain binary that matches the daemon"
                    ),
                );
                write_line(&mut writer, &reply).await?;
                return Ok(());
            }
            (false, _) => AdminResponse::error("handshake_required", "send hello first"),
            (true, request) => {
                // The operation runs in its own task, so it completes even if this client
                // leaves or the wait below gives up: a half-done command is worse than an
                // unread answer.
                let operation = tokio::spawn(answer(handle.clone(), request));
                let drain_expired = async {
                    let _ = shutdown.wait_for(|stop| *stop).await;
                    tokio::time::sleep(DRAIN_TIMEOUT).await;
                };
                tokio::select! {
                    joined = operation => joined.unwrap_or_else(|error| {
                        tracing::error!(error = %error, "admin request task failed");
                        AdminResponse::error(
                            "internal_error",
                            "internal error; the cause is in the daemon's log",
                        )
                    }),
                    _ = client_gone(&mut lines) => return Ok(()),
                    _ = drain_expired => AdminResponse::error(
                        "shutting_down",
                        "the daemon is shutting down; the request may still complete, check before retrying",
                    ),
                }
            }
        };
        write_line(&mut writer, &reply).await?;
    }
}

/// Resolves when the client has closed its end while a request is in flight. A client that sends
/// more before its answer (not ours) keeps this pending; its line is read after the reply.
async fn client_gone(lines: &mut BufReader<OwnedReadHalf>) {
    match lines.fill_buf().await {
        Ok([]) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// The actor name the audit log records for operator commands from the CLI.
const CLI_ACTOR: &str = "cli";

/// One request, answered by the operations layer (the same functions the HTTP API calls).
async fn answer(handle: Handle, request: AdminRequest) -> AdminResponse {
    let handle = &handle;
    let outcome: Result<AdminResponse, OpError> = match request {
        // The connection loop answers every hello itself; this arm only keeps the match whole.
        AdminRequest::Hello { .. } => Ok(AdminResponse::error(
            "invalid_request",
            "hello is part of the handshake",
        )),
        AdminRequest::Health => Ok(AdminResponse::Health(health_reply(handle))),
        AdminRequest::CreateStrategy { strategy } => {
            ops::create_strategy(handle, &strategy, CLI_ACTOR)
                .await
                .map(|strategy| AdminResponse::Strategy { strategy })
        }
        AdminRequest::ListStrategies { status } => ops::list_strategies(handle, status.as_deref())
            .await
            .map(|strategies| AdminResponse::Strategies { strategies }),
        AdminRequest::UpdateStrategy { strategy_id, patch } => {
            ops::update_strategy(handle, &strategy_id, &patch, CLI_ACTOR)
                .await
                .map(|strategy| AdminResponse::Strategy { strategy })
        }
        AdminRequest::DeleteStrategy { strategy_id } => {
            ops::delete_strategy(handle, &strategy_id, CLI_ACTOR)
                .await
                .map(|()| AdminResponse::StrategyDeleted { strategy_id })
        }
        AdminRequest::StartRun {
            strategy_id,
            dry_run,
        } => ops::start_run(handle, &strategy_id, dry_run, TriggeredBy::Manual)
            .await
            .map(AdminResponse::RunStarted),
        AdminRequest::ResumeRun { run_id } => ops::resume_run(handle, &run_id)
            .await
            .map(AdminResponse::RunStarted),
        AdminRequest::CancelRun { run_id, reason } => {
            ops::cancel_run(handle, &run_id, &reason, CLI_ACTOR)
                .await
                .map(AdminResponse::RunCancelled)
        }
        AdminRequest::GetRun { run_id } => {
            ops::get_run(handle, &run_id).await.map(AdminResponse::Run)
        }
        AdminRequest::RunDetail { run_id } => ops::run_detail(handle, &run_id)
            .await
            .map(AdminResponse::RunDetail),
        AdminRequest::StrategyStatus { strategy_id } => ops::strategy_status(handle, &strategy_id)
            .await
            .map(AdminResponse::StrategyStatus),
        AdminRequest::KillSwitchStatus => ops::kill_switch_status(handle)
            .await
            .map(AdminResponse::KillSwitch),
        AdminRequest::SetKillSwitch { on } => ops::set_kill_switch(handle, on, CLI_ACTOR)
            .await
            .map(AdminResponse::KillSwitch),
        AdminRequest::PoolStatus => ops::pool_status_view(handle).await.map(AdminResponse::Pool),
        AdminRequest::ListKeys {
            strategy_id,
            wallet,
        } => ops::list_keys(handle, strategy_id.as_deref(), wallet.as_deref())
            .await
            .map(|keys| AdminResponse::Keys { keys }),
        AdminRequest::Reconcile { fix } => match ops::reconcile(handle, fix, CLI_ACTOR).await {
            Ok(report) => reconcile_reply(&report),
            Err(error) => Err(error),
        },
    };
    outcome.unwrap_or_else(AdminResponse::from)
}

fn reconcile_reply(report: &ReconcileReport) -> Result<AdminResponse, OpError> {
    let unfixed = |fix: &Option<FixOutcome>| !matches!(fix, Some(FixOutcome::Fixed));
    let repairable = report
        .missing
        .iter()
        .filter(|item| unfixed(&item.fix))
        .count()
        + report
            .orphaned
            .iter()
            .filter(|item| unfixed(&item.fix))
            .count()
        + report
            .limit_mismatch
            .iter()
            .filter(|item| unfixed(&item.fix))
            .count();
    // Duplicates, disabled keys and pending deletes are never repaired by a reconcile.
    let reported =
        report.duplicate_names.len() + report.disabled.len() + report.pending_delete.len();
    let value = serde_json::to_value(report)
        .map_err(|error| OpError::internal("reconcile report", &error))?;
    Ok(AdminResponse::Reconciled(ReconcileReply {
        drift_remaining: (repairable + reported) as u64,
        report: value,
    }))
}

fn health_reply(handle: &Handle) -> HealthReply {
    HealthReply {
        readiness: handle.readiness(),
        report: handle.health_report(),
        restarts: handle
            .restart_counts
            .snapshot()
            .into_iter()
            .map(|(role, count)| (role.to_string(), count))
            .collect(),
        breakers: handle.breakers.snapshots(),
    }
}

async fn write_line(
    writer: &mut tokio::net::unix::OwnedWriteHalf,
    message: &AdminResponse,
) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(message).map_err(io::Error::other)?;
    bytes.push(b'\n');
    writer.write_all(&bytes).await
}
