//! Telemetry: tracing events written as JSON lines in the runbook's shape
//! (`level` lowercase, `time` epoch ms, `msg`, context fields such as `runId`).
//!
//! The stock `tracing-subscriber` JSON formatter nests fields under `fields` and uses upper-case
//! levels, which breaks the runbook's filters (`"runId":"abc123"`), so this module has its own layer.
//! Field names with dots nest: `req.method = "GET"` becomes `"req":{"method":"GET"}`, which is how
//! the access log gets `req {method, url, remoteAddress}` and `res {statusCode}`.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, prelude::*};

/// Installs the JSON-lines subscriber on stdout as the process-wide default.
///
/// `level` is one of `debug`, `info`, `warn`, `error` (LOG_LEVEL). Chatty dependencies are held at
/// `warn` so that `info` stays the runbook's "request access logs, phase transitions, completions".
pub fn init(level: &str) {
    init_with(level, std::io::stdout);
}

/// Like [`init`], on stderr: for `creditbrain sandbox`, whose stdout carries its ready line.
pub fn init_stderr(level: &str) {
    init_with(level, std::io::stderr);
}

/// Like [`init`], into any writer (tests capture the daemon's log lines with it).
pub fn init_with<W>(level: &str, make_writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let subscriber = tracing_subscriber::registry()
        .with(filter_for(level))
        .with(JsonLinesLayer::new(make_writer));
    // A second init (e.g. tests in one process) keeps the first subscriber; that is harmless.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// The filter for a LOG_LEVEL value: our crates at `level`, dependencies at `warn` at most.
pub fn filter_for(level: &str) -> EnvFilter {
    let dependency_level = match level {
        "error" => "error",
        _ => "warn",
    };
    let directives = [
        level.to_string(),
        format!("sqlx={dependency_level}"),
        format!("hyper={dependency_level}"),
        format!("hyper_util={dependency_level}"),
        format!("h2={dependency_level}"),
        format!("reqwest={dependency_level}"),
        format!("rustls={dependency_level}"),
        format!("ractor={dependency_level}"),
    ];
    EnvFilter::new(directives.join(","))
}

/// A layer writing one JSON object per event, with the fields of every enclosing span merged in.
pub struct JsonLinesLayer<W> {
    make_writer: W,
}

impl<W> JsonLinesLayer<W> {
    pub fn new(make_writer: W) -> Self {
        Self { make_writer }
    }
}

/// The recorded fields of a span, kept in its extensions until an event inside it is written.
struct SpanFields(Map<String, Value>);

impl<S, W> Layer<S> for JsonLinesLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Map::new();
        attrs.record(&mut JsonVisitor(&mut fields));
        span.extensions_mut().insert(SpanFields(fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(fields)) = extensions.get_mut::<SpanFields>() {
            values.record(&mut JsonVisitor(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = Map::new();
        line.insert(
            "level".into(),
            Value::from(level_name(event.metadata().level())),
        );
        line.insert("time".into(), Value::from(epoch_millis()));
        // Span context first (outermost to innermost), then the event's own fields, so the most
        // specific value wins when names repeat.
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    for (name, value) in fields {
                        insert_nested(&mut line, name, value.clone());
                    }
                }
            }
        }
        let mut own = Map::new();
        event.record(&mut JsonVisitor(&mut own));
        for (name, value) in own {
            insert_nested(&mut line, &name, value);
        }
        let mut bytes = serde_json::to_vec(&Value::Object(line)).unwrap_or_default();
        bytes.push(b'\n');
        // One write per line so concurrent events never interleave within a line.
        let _ = self.make_writer.make_writer().write_all(&bytes);
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

fn epoch_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// Inserts `value` at a dotted path: `req.method` lands in `{"req":{"method":…}}`.
fn insert_nested(object: &mut Map<String, Value>, name: &str, value: Value) {
    match name.split_once('.') {
        None => {
            object.insert(name.to_string(), value);
        }
        Some((head, rest)) => {
            let child = object
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !child.is_object() {
                *child = Value::Object(Map::new());
            }
            if let Value::Object(child) = child {
                insert_nested(child, rest, value);
            }
        }
    }
}

/// Turns tracing field values into JSON values; `message` is renamed `msg` as in the runbook.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl JsonVisitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let name = match field.name() {
            "message" => "msg",
            other => other,
        };
        self.0.insert(name.to_string(), value);
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects written lines in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn lines_of(level: &str, emit: impl FnOnce()) -> Vec<Value> {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry()
            .with(filter_for(level))
            .with(JsonLinesLayer::new(captured.clone()));
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).expect("every line is one JSON object"))
            .collect()
    }

    #[test]
    fn lines_have_the_runbook_shape_with_span_context() {
        let lines = lines_of("info", || {
            let span = tracing::info_span!("run", runId = "abc123", strategyId = "s1");
            let _entered = span.enter();
            tracing::error!(err.message = "OpenRouter API returned 429", err.type = "Error", "pipeline run failed");
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["level"], "error");
        assert_eq!(line["msg"], "pipeline run failed");
        assert_eq!(line["runId"], "abc123");
        assert_eq!(line["strategyId"], "s1");
        assert_eq!(line["err"]["message"], "OpenRouter API returned 429");
        assert_eq!(line["err"]["type"], "Error");
        let time = line["time"].as_u64().expect("time is epoch milliseconds");
        assert!(time > 1_700_000_000_000, "time {time} is in milliseconds");
    }

    #[test]
    fn dotted_fields_nest_like_the_access_log() {
        let lines = lines_of("info", || {
            tracing::info!(
                req.method = "GET",
                req.url = "/api/strategies",
                req.remoteAddress = "127.0.0.1",
                res.statusCode = 200u64,
                responseTime = 12.5,
                "request"
            );
        });
        let line = &lines[0];
        assert_eq!(line["req"]["method"], "GET");
        assert_eq!(line["req"]["url"], "/api/strategies");
        assert_eq!(line["req"]["remoteAddress"], "127.0.0.1");
        assert_eq!(line["res"]["statusCode"], 200);
        assert_eq!(line["responseTime"], 12.5);
    }

    #[test]
    fn log_level_filters_lower_levels() {
        let lines = lines_of("warn", || {
            tracing::info!("hidden");
            tracing::debug!("hidden too");
            tracing::warn!("shown");
        });
        let messages: Vec<_> = lines.iter().map(|line| line["msg"].clone()).collect();
        assert_eq!(messages, vec![Value::from("shown")]);
        assert_eq!(lines[0]["level"], "warn");
    }
}
