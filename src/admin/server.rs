//! The daemon's end of the admin socket: claims the socket path (refusing while another daemon
//! answers on it, clearing a stale one), serves requests, and removes the socket on shutdown.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use super::protocol::{AdminRequest, AdminResponse, HealthReply, MAX_LINE_BYTES, PROTOCOL_VERSION};
use crate::daemon::Handle;

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

    /// Serves connections until `shutdown` turns true, then removes the socket file.
    pub async fn serve(self, handle: Handle, mut shutdown: watch::Receiver<bool>) {
        let stopped = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let handle = handle.clone();
                        tokio::spawn(async move {
                            if let Err(error) = serve_connection(stream, handle).await {
                                tracing::debug!(error = %error, "admin connection ended with an error");
                            }
                        });
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, "admin socket accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                },
                _ = &mut stopped => break,
            }
        }
        drop(self.listener);
        if let Err(error) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %error, "could not remove admin socket");
        }
    }
}

async fn serve_connection(stream: UnixStream, handle: Handle) -> io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader);
    let mut greeted = false;
    let mut line = String::new();
    loop {
        line.clear();
        let read = (&mut lines)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_line(&mut line)
            .await?;
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
            (true, AdminRequest::Health) => AdminResponse::Health(health_reply(&handle)),
        };
        write_line(&mut writer, &reply).await?;
    }
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
