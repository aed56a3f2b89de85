//! `GET /api/runs/{id}/events`: a run's progress as server-sent events, replayed from its audit
//! log (every state change appends its row in the same transaction, so the rows in id order are
//! the run's exact history).
//!
//! One long response: the store is polled every [`POLL_INTERVAL`], new rows are sent as they
//! appear (a `: keep-alive` comment after [`KEEP_ALIVE`] of silence), and the stream ends after
//! the `end` event (the run COMPLETE or FAILED). A client that loses the connection reconnects
//! with `Last-Event-ID` (as `EventSource` does, after `retry:` ms) and continues exactly after
//! the last row it saw; one that already saw `end` gets 204.

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

/// Silence longer than this gets a `: keep-alive` comment (proxies close idle connections).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How soon (ms) a client reconnects after a dropped connection.
const RETRY_MS: u64 = 1_000;

/// Suffix of the `end` event's id: a client reconnecting with it is told to stop (204).
const END_SUFFIX: &str = "-end";

/// The OpenAPI description of the stream.
pub const DESCRIPTION: &str = "Server-sent events, oldest first. `event: audit` carries an \
    audit row (`AuditEntry`, `id:` = its id); `event: state` comes before the row that records \
    the run entering a state (`{runId, state, at}`); `event: end` (after COMPLETE or FAILED) \
    carries the final `Run`, then the stream ends. Rows are sent as they happen, with a \
    `: keep-alive` comment after 15 s of silence; after a dropped connection, reconnect with \
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
    // The first read answers 404 for an unknown run before the stream starts.
    let first = ops::run_progress(&handle, &run_id, cursor.after()).await?;
    if matches!(cursor, Cursor::Ended(_)) && first.audit.is_empty() && first.run.is_terminal() {
        // The client has everything, `end` included (SSE: 204 stops an EventSource).
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let stream = Watch {
        handle,
        run_id,
        after: cursor.after(),
        pending: Some(first),
        first_chunk: true,
        ended: false,
    };
    let chunks = futures_util::stream::unfold(stream, |mut watch| async move {
        let chunk = watch.next_chunk().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), watch))
    });
    let mut response = axum::body::Body::from_stream(chunks).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    Ok(response)
}

/// One client's position in one run's stream.
struct Watch {
    handle: Handle,
    run_id: String,
    /// The last audit id sent.
    after: Option<i64>,
    /// Read but not sent yet.
    pending: Option<RunProgress>,
    first_chunk: bool,
    ended: bool,
}

impl Watch {
    /// The next piece of the stream; `None` once `end` was sent (or the store failed).
    async fn next_chunk(&mut self) -> Option<String> {
        if self.ended {
            return None;
        }
        let quiet_since = tokio::time::Instant::now();
        loop {
            let progress = match self.pending.take() {
                Some(progress) => progress,
                None => match ops::run_progress(&self.handle, &self.run_id, self.after).await {
                    Ok(progress) => progress,
                    Err(error) => {
                        // Cut the stream; the client reconnects and resumes from its cursor.
                        tracing::warn!(runId = %self.run_id, code = %error.code, "run events stream ended early");
                        return None;
                    }
                },
            };
            if !progress.audit.is_empty() || progress.run.is_terminal() || self.first_chunk {
                let text = batch(&progress, self.after, self.first_chunk);
                self.first_chunk = false;
                if let Some(last) = progress.audit.last() {
                    self.after = Some(last.id);
                }
                self.ended = progress.run.is_terminal();
                return Some(text);
            }
            if quiet_since.elapsed() >= KEEP_ALIVE {
                return Some(": keep-alive\n\n".to_string());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// The SSE text of the rows read at once (the first chunk also sets the reconnection delay).
fn batch(progress: &RunProgress, after: Option<i64>, first: bool) -> String {
    let mut out = if first {
        format!("retry: {RETRY_MS}\n\n")
    } else {
        String::new()
    };
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
