//! The CLI's end of the admin socket: connect, handshake, one request at a time.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::protocol::{AdminRequest, AdminResponse, MAX_LINE_BYTES, PROTOCOL_VERSION};

#[derive(thiserror::Error, Debug)]
pub enum AdminClientError {
    #[error("no creditbrain daemon is listening on {0} (start one with `creditbrain serve`)")]
    NoDaemon(PathBuf),
    /// The daemon answered with an error: its stable code, message and details.
    #[error("{code}: {message}")]
    Refused {
        code: String,
        message: String,
        details: Option<serde_json::Value>,
    },
    /// The daemon hung up mid-conversation (it is shutting down, or it died).
    #[error("the daemon closed the connection (shutting down or stopped)")]
    Closed,
    #[error("the daemon sent an unexpected reply: {0}")]
    Unexpected(String),
    #[error("the daemon did not answer within {0} s")]
    Timeout(u64),
    #[error("admin socket: {0}")]
    Io(#[from] io::Error),
}

impl AdminClientError {
    /// A stable snake_case code for the CLI's error line: the daemon's own code for a refusal.
    pub fn code(&self) -> &str {
        match self {
            AdminClientError::NoDaemon(_) => "no_daemon",
            AdminClientError::Refused { code, .. } => code,
            AdminClientError::Closed => "daemon_closed",
            AdminClientError::Unexpected(_) => "unexpected_reply",
            AdminClientError::Timeout(_) => "daemon_timeout",
            AdminClientError::Io(_) => "admin_socket_error",
        }
    }
}

pub struct AdminClient {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// The daemon's self-description from the handshake, e.g. `creditbrain 0.1.0`.
    pub daemon: String,
}

impl AdminClient {
    /// Connects and performs the version handshake.
    pub async fn connect(path: &Path) -> Result<Self, AdminClientError> {
        let stream = match UnixStream::connect(path).await {
            Ok(stream) => stream,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(AdminClientError::NoDaemon(path.to_path_buf()));
            }
            Err(error) => return Err(error.into()),
        };
        let (reader, writer) = stream.into_split();
        let mut client = Self {
            reader: BufReader::new(reader),
            writer,
            daemon: String::new(),
        };
        let hello = AdminRequest::Hello {
            protocol: PROTOCOL_VERSION,
            client: format!("creditbrain-cli {}", env!("CARGO_PKG_VERSION")),
        };
        match client.request(&hello).await? {
            AdminResponse::Hello { daemon, .. } => client.daemon = daemon,
            other => return Err(AdminClientError::Unexpected(format!("{other:?}"))),
        }
        Ok(client)
    }

    /// Sends one request and returns the reply; an `Error` reply becomes `Refused`.
    pub async fn request(
        &mut self,
        request: &AdminRequest,
    ) -> Result<AdminResponse, AdminClientError> {
        let mut bytes = serde_json::to_vec(request).map_err(io::Error::other)?;
        bytes.push(b'\n');
        match self.writer.write_all(&bytes).await {
            Err(error) if is_hang_up(&error) => return Err(AdminClientError::Closed),
            other => other?,
        }
        let mut line = String::new();
        let timeout = request.reply_timeout();
        let read = tokio::time::timeout(
            timeout,
            (&mut self.reader)
                .take(MAX_LINE_BYTES as u64 + 1)
                .read_line(&mut line),
        )
        .await
        .map_err(|_| AdminClientError::Timeout(timeout.as_secs()))?;
        match read {
            Ok(0) => return Err(AdminClientError::Closed),
            Err(error) if is_hang_up(&error) => return Err(AdminClientError::Closed),
            other => other?,
        };
        let reply: AdminResponse = serde_json::from_str(line.trim_end())
            .map_err(|error| AdminClientError::Unexpected(error.to_string()))?;
        match reply {
            AdminResponse::Error {
                code,
                message,
                details,
            } => Err(AdminClientError::Refused {
                code,
                message,
                details,
            }),
            reply => Ok(reply),
        }
    }
}

fn is_hang_up(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}
