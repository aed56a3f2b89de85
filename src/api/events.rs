//! `GET /api/runs/{id}/events`: a run's progress as server-sent events, replayed from its audit
//! log (every state change appends its row in the same transaction, so the rows in id order are
//! the run's exact history).
//!
//! Each response is one batch: it waits (polling the store every [`POLL_INTERVAL`], up to
//! [`HOLD`]) until the run has rows the client has not seen or has ended, sends them and closes;
//! `retry:` makes an `EventSource` reconnect at once with `Last-Event-ID`, and the next batch
//! continues exactly after it. Why batches and not one endless response: streaming a body needs
//! a `Stream` (futures-core) or an `http_body::Body` implementation (http-body's `Frame`), and
//! neither crate is a dependency of ours; this is the spec's reconnection model instead, and
//! with either crate the same loop becomes one long response.

use std::fmt::Write as _;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::extract::{ApiError, ApiPath, ApiResult};
use crate::daemon::Handle;
use crate::ops::{self, RunProgress};

/// How often the store is polled while waiting for new rows.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The longest one response waits for something new before it sends a keep-alive comment and
/// closes. Short, so a daemon shutting down (HTTP drain: 10 s) is never held up by a watcher.
pub const HOLD: Duration = Duration::from_secs(5);

/// How soon (ms) a client reconnects after a batch: the next request waits server-side anyway.
const RETRY_MS: u64 = 100;

/// Suffix of the `end` event's id: a client reconnecting with it is told to stop (204).
const END_SUFFIX: &str = "-end";

/// The OpenAPI description of the stream.
pub const DESCRIPTION: &str = "Server-sent events, oldest first. `event: audit` carries an \
    audit row (`AuditEntry`, `id:` = its id); `event: state` comes before the row that records \
    the run entering a state (`{runId, state, at}`); `event: end` (after COMPLETE or FAILED) \
    carries the final `Run`, then the stream ends. A response holds until there is something \
    new (at most 5 s; then a `: keep-alive` comment), sends it and closes; reconnect with \
    `Last-Event-ID` (as `EventSource` does, after `retry:` ms) to continue.";

/// Where a client is in the stream (`Last-Event-ID`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cursor {
    /// Nothing seen yet.
    Start,
    /// Seen every row up to this audit id.
    After(i64),
    /// Seen the `end` event sent after the row with this id.
    Ended(i64),
}

impl Cursor {
    fn after(self) -> Option<i64> {
        match self {
            Cursor::Start => None,
            Cursor::After(id) | Cursor::Ended(id) => Some(id),
        }
    }
}

fn parse_cursor(headers: &HeaderMap) -> ApiResult<Cursor> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(Cursor::Start);
    };
    let text = value.to_str().unwrap_or("\u{fffd}").trim();
    if text.is_empty() {
        return Ok(Cursor::Start);
    }
    let (number, ended) = match text.strip_suffix(END_SUFFIX) {
        Some(number) => (number, true),
        None => (text, false),
    };
    match number.parse::<i64>() {
        Ok(id) if ended => Ok(Cursor::Ended(id)),
        Ok(id) => Ok(Cursor::After(id)),
        Err(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_last_event_id",
            format!("Last-Event-ID must be an id this stream sent, not {text:?}"),
        )),
    }
}

pub async fn run_events(
    State(handle): State<Handle>,
    ApiPath(run_id): ApiPath<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let cursor = parse_cursor(&headers)?;
    let after = cursor.after();
    let deadline = tokio::time::Instant::now() + HOLD;
    let progress = loop {
        let progress = ops::run_progress(&handle, &run_id, after).await?;
        let ended = progress.run.is_terminal();
        if !progress.audit.is_empty() || ended || tokio::time::Instant::now() >= deadline {
            break progress;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    if matches!(cursor, Cursor::Ended(_)) && progress.audit.is_empty() && progress.run.is_terminal()
    {
        // The client has everything, `end` included (SSE: 204 stops an EventSource).
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let mut response = batch(&progress, after).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    Ok(response)
}

/// The SSE text of one batch.
fn batch(progress: &RunProgress, after: Option<i64>) -> String {
    let mut out = format!("retry: {RETRY_MS}\n\n");
    for row in &progress.audit {
        if let Some(state) = row.state_entered() {
            // No `id:`: if the connection drops between the two, the client's cursor is still
            // before the row and both are sent again.
            let data =
                json!({ "runId": progress.run.run_id, "state": state, "at": row.created_at });
            let _ = write!(out, "event: state\ndata: {data}\n\n");
        }
        let data = serde_json::to_string(row).unwrap_or_else(|_| "{}".to_string());
        let _ = write!(out, "event: audit\nid: {}\ndata: {data}\n\n", row.id);
    }
    if progress.run.is_terminal() {
        let last = progress
            .audit
            .last()
            .map(|row| row.id)
            .or(after)
            .unwrap_or(0);
        let data = serde_json::to_string(&progress.run).unwrap_or_else(|_| "{}".to_string());
        let _ = write!(out, "event: end\nid: {last}{END_SUFFIX}\ndata: {data}\n\n");
    } else if progress.audit.is_empty() {
        out.push_str(": keep-alive\n\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_the_ids_the_stream_sends() {
        let headers = |text: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("last-event-id", HeaderValue::from_str(text).unwrap());
            headers
        };
        assert_eq!(parse_cursor(&HeaderMap::new()).unwrap(), Cursor::Start);
        assert_eq!(parse_cursor(&headers("")).unwrap(), Cursor::Start);
        assert_eq!(parse_cursor(&headers("42")).unwrap(), Cursor::After(42));
        assert_eq!(parse_cursor(&headers("42-end")).unwrap(), Cursor::Ended(42));
        assert_eq!(
            parse_cursor(&headers("forty")).unwrap_err().code,
            "invalid_last_event_id"
        );
    }
}
