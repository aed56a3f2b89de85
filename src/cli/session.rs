//! One client command's conversation with the daemon: connect, send requests, and turn every
//! failure into one clear stderr line (`creditbrain: <code>: <message>`, then the rejected fields
//! or the recorded run, one per line) and an exit code. With `--json` the error object also goes
//! to stdout, shaped like the HTTP API's (`{"error":{"code","message",...}}`), so scripts read one
//! format.

use std::path::Path;

use clap::Args;
use serde_json::{Value, json};

use super::exit;
use crate::admin::client::{AdminClient, AdminClientError};
use crate::admin::protocol::{AdminRequest, AdminResponse};

/// `--json` on every client command.
#[derive(Args, Clone, Copy, Debug, Default)]
pub struct OutputArgs {
    /// Print JSON (the daemon's views, raw integers included) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A connected, greeted admin client for one command.
pub struct Session {
    client: AdminClient,
    json: bool,
}

impl Session {
    /// Connects; on failure the error is printed and its exit code returned.
    pub async fn connect(socket: &Path, json: bool) -> Result<Self, i32> {
        match AdminClient::connect(socket).await {
            Ok(client) => Ok(Self { client, json }),
            Err(error) => Err(report(&error, json)),
        }
    }

    /// Sends one request; on failure the error is printed and its exit code returned.
    pub async fn call(&mut self, request: AdminRequest) -> Result<AdminResponse, i32> {
        self.client
            .request(&request)
            .await
            .map_err(|error| report(&error, self.json))
    }

    /// Sends one request; the raw error is the caller's to explain (nothing printed).
    pub async fn try_call(
        &mut self,
        request: AdminRequest,
    ) -> Result<AdminResponse, AdminClientError> {
        self.client.request(&request).await
    }

    pub fn json(&self) -> bool {
        self.json
    }
}

/// Connects, sends one request, and returns the reply or the printed error's exit code.
pub async fn request(
    socket: &Path,
    json: bool,
    request: AdminRequest,
) -> Result<AdminResponse, i32> {
    Session::connect(socket, json).await?.call(request).await
}

/// The exit code of a failed conversation: no daemon (or it went away) → 3; the daemon refused,
/// failed or answered nonsense → 1.
pub fn exit_code(error: &AdminClientError) -> i32 {
    match error {
        AdminClientError::NoDaemon(_) | AdminClientError::Closed => exit::NO_DAEMON,
        _ => exit::FAILURE,
    }
}

/// Prints `error` (stderr, and stdout as JSON with `--json`) and returns its exit code.
pub fn report(error: &AdminClientError, json: bool) -> i32 {
    let (message, details) = match error {
        AdminClientError::Refused {
            message, details, ..
        } => (message.clone(), details.clone()),
        other => (other.to_string(), None),
    };
    print_error(error.code(), &message, details.as_ref(), json);
    exit_code(error)
}

/// The one error format of every command.
pub fn print_error(code: &str, message: &str, details: Option<&Value>, json: bool) {
    let fields: Vec<(String, String)> = details
        .and_then(|details| details.get("fields"))
        .and_then(Value::as_array)
        .map(|fields| {
            fields
                .iter()
                .map(|problem| {
                    let text = |key: &str| {
                        problem
                            .get(key)
                            .and_then(Value::as_str)
                            .unwrap_or("?")
                            .to_string()
                    };
                    (text("field"), text("message"))
                })
                .collect()
        })
        .unwrap_or_default();
    if fields.is_empty() {
        eprintln!("creditbrain: {code}: {message}");
    } else {
        // The daemon's message repeats every problem on one line; one per line reads better.
        let count = fields.len();
        let noun = if count == 1 { "problem" } else { "problems" };
        eprintln!("creditbrain: {code}: {count} {noun}:");
        for (field, problem) in &fields {
            eprintln!("  {field}: {problem}");
        }
    }
    if let Some(run_id) = details
        .and_then(|details| details.get("runId"))
        .and_then(Value::as_str)
    {
        eprintln!("  recorded run: {run_id} (creditbrain status --run {run_id})");
    }
    if json {
        let mut error = json!({ "code": code, "message": message });
        if let (Some(map), Some(Value::Object(extra))) = (error.as_object_mut(), details) {
            for (key, value) in extra {
                map.insert(key.clone(), value.clone());
            }
        }
        super::format::print_json(&json!({ "error": error }));
    }
}

/// A reply of the wrong type: a daemon from another build that still speaks our version.
pub fn unexpected(reply: &AdminResponse, json: bool) -> i32 {
    print_error(
        "unexpected_reply",
        &format!("the daemon sent an unexpected reply: {reply:?}"),
        None,
        json,
    );
    exit::FAILURE
}

/// A command line clap could not reject by itself.
pub fn usage_error(message: &str) -> i32 {
    eprintln!("creditbrain: usage: {message}");
    exit::CONFIG
}
