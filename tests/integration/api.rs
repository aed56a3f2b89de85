//! The operator API over real HTTP on loopback against the daemon on the sandbox: every route
//! family, the run lifecycle (202 while the run goes on, its events, its phase log), policy
//! 409s, keys, pool and stats; auth, the failure throttle, body and query errors, rate limits,
//! CORS and security headers; and the OpenAPI document checked against the router and against
//! real responses.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use creditbrain::sandbox::faults::{FaultRule, Latency};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use solana_sdk::signature::Signer;

use creditbrain::api::gate::MAX_AUTH_FAILURES;

use crate::support::SandboxDaemon;

/// One answer: status, headers and the body as JSON (`Null` when empty or not JSON).
struct Answer {
    status: u16,
    headers: HeaderMap,
    text: String,
    body: Value,
}

impl Answer {
    async fn from(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            text,
            body,
        }
    }

    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Asserts the status and error code, and the error shape.
    #[track_caller]
    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "body: {}",
            self.text
        );
        assert!(self.body["error"]["message"].is_string(), "{}", self.text);
    }
}

async fn call(daemon: &SandboxDaemon, method: Method, path: &str, body: Option<Value>) -> Answer {
    let mut request = daemon.api(method, path);
    if let Some(body) = body {
        request = request.json(&body);
    }
    Answer::from(request.send().await.unwrap()).await
}

async fn get(daemon: &SandboxDaemon, path: &str) -> Answer {
    call(daemon, Method::GET, path, None).await
}

/// A request with a raw body and content type (and the token).
async fn send_raw(
    daemon: &SandboxDaemon,
    method: Method,
    path: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> Answer {
    let response = daemon
        .api(method, path)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    Answer::from(response).await
}

async fn openapi(daemon: &SandboxDaemon) -> Value {
    let answer = Answer::from(
        daemon
            .http
            .get(daemon.url("/api/openapi.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.body
}

// ---------------------------------------------------------------------------------------------
// A small JSON Schema check (the subset our document uses), so the document's schemas are
// proven against what the routes really answer.

fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected $ref {reference}"));
            let target = &document["components"]["schemas"][name];
            assert!(target.is_object(), "$ref {reference} does not resolve");
            resolve(document, target)
        }
        None => schema,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(number) if number.is_i64() || number.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[track_caller]
fn check_schema(document: &Value, schema: &Value, value: &Value, at: &str) {
    let schema = resolve(document, schema);
    if let Some(types) = schema.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            other => panic!("bad type {other}"),
        };
        let actual = json_type(value);
        let ok = allowed.contains(&actual) || (actual == "integer" && allowed.contains(&"number"));
        assert!(ok, "{at}: {value} is {actual}, schema allows {allowed:?}");
    }
    if let Some(words) = schema["enum"].as_array() {
        assert!(words.contains(value), "{at}: {value} not in {words:?}");
    }
    match value {
        Value::Object(map) => {
            if let Some(required) = schema["required"].as_array() {
                for name in required.iter().filter_map(Value::as_str) {
                    assert!(map.contains_key(name), "{at}: missing {name} in {value}");
                }
            }
            let properties = schema["properties"].as_object();
            for (name, field) in map {
                match properties.and_then(|properties| properties.get(name)) {
                    Some(field_schema) => {
                        check_schema(document, field_schema, field, &format!("{at}.{name}"))
                    }
                    None => match &schema["additionalProperties"] {
                        Value::Bool(false) => panic!("{at}: {name} is not in the schema"),
                        extra @ Value::Object(_) => {
                            check_schema(document, extra, field, &format!("{at}.{name}"))
                        }
                        _ => {}
                    },
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    check_schema(document, item_schema, item, &format!("{at}[{index}]"));
                }
            }
        }
        _ => {}
    }
}

#[track_caller]
fn check_component(document: &Value, component: &str, value: &Value) {
    let schema = json!({ "$ref": format!("#/components/schemas/{component}") });
    check_schema(document, &schema, value, component);
}

#[track_caller]
fn check_list(document: &Value, component: &str, value: &Value) {
    let items = value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"));
    for item in items {
        check_component(document, component, item);
    }
}

// ---------------------------------------------------------------------------------------------
// Server-sent events

#[derive(Debug, Default, Clone)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: Value,
}

fn parse_sse(text: &str) -> (Vec<SseEvent>, bool) {
    let mut events = Vec::new();
    let mut keep_alive = false;
    for block in text.split("\n\n").filter(|block| !block.trim().is_empty()) {
        let mut event = SseEvent::default();
        let mut data = String::new();
        for line in block.lines() {
            if line.starts_with(':') {
                keep_alive = true;
            } else if let Some(name) = line.strip_prefix("event: ") {
                event.event = name.to_string();
            } else if let Some(id) = line.strip_prefix("id: ") {
                event.id = Some(id.to_string());
            } else if let Some(chunk) = line.strip_prefix("data: ") {
                data.push_str(chunk);
            }
        }
        if !data.is_empty() {
            event.data = serde_json::from_str(&data).unwrap();
            events.push(event);
        }
    }
    (events, keep_alive)
}

/// Reads a run's event stream as an `EventSource` would: chunk by chunk as the daemon sends them,
/// reconnecting with `Last-Event-ID` if a response ends before `end`. Also answers whether events
/// arrived while the run was still going on (the run's state read right after the first events).
async fn read_events_to_end(daemon: &SandboxDaemon, run_id: &str) -> (Vec<SseEvent>, bool) {
    let mut events: Vec<SseEvent> = Vec::new();
    let mut last_id: Option<String> = None;
    let mut seen_live = None;
    let path = format!("/api/runs/{run_id}/events");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while events.last().is_none_or(|event| event.event != "end") {
        assert!(tokio::time::Instant::now() < deadline, "no end event");
        let mut request = daemon.api(Method::GET, &path);
        if let Some(id) = &last_id {
            request = request.header("last-event-id", id);
        }
        let mut response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        };
        assert_eq!(header("content-type").as_deref(), Some("text/event-stream"));
        assert_eq!(header("cache-control").as_deref(), Some("no-store"));
        let mut text = String::new();
        while let Some(chunk) = response.chunk().await.unwrap() {
            text.push_str(std::str::from_utf8(&chunk).unwrap());
            // Only whole events (a blank line ends one).
            let Some(end) = text.rfind("\n\n") else {
                continue;
            };
            let complete: String = text.drain(..end + 2).collect();
            let (batch, _) = parse_sse(&complete);
            if seen_live.is_none() && !batch.is_empty() {
                let run = get(daemon, &format!("/api/runs/{run_id}")).await;
                let state = run.body["run"]["state"].as_str().unwrap().to_string();
                seen_live = Some(!["COMPLETE", "FAILED"].contains(&state.as_str()));
            }
            if let Some(id) = batch.iter().rev().find_map(|event| event.id.clone()) {
                last_id = Some(id);
            }
            events.extend(batch);
        }
    }
    (events, seen_live.unwrap_or(false))
}

/// A body over the API's 64 KiB limit.
const BIG_BODY_BYTES: usize = 70 * 1024;

const RUN_ORDER: [&str; 7] = [
    "PENDING",
    "CLAIMING",
    "SWAPPING",
    "BRIDGING",
    "ALLOCATING",
    "PROVISIONING",
    "COMPLETE",
];

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn strategies_are_created_listed_changed_paused_and_deleted_over_http() {
    let daemon = SandboxDaemon::start(4, &[]).await;
    let document = openapi(&daemon).await;
    let owner = daemon.sandbox.world.signer.pubkey().to_string();

    let created = call(
        &daemon,
        Method::POST,
        "/api/strategies",
        Some(json!({"ownerWallet": owner, "topN": 5, "maxGrantUsd": "2.50"})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    check_component(&document, "Strategy", &created.body);
    let id = created.body["strategyId"].as_str().unwrap().to_string();
    assert_eq!(
        created.header("location"),
        Some(format!("/api/strategies/{id}").as_str())
    );
    assert_eq!(created.body["topN"], 5);
    assert_eq!(created.body["maxGrantMicroUsd"], 2_500_000);

    // Validation names every bad field and writes nothing.
    let invalid = call(
        &daemon,
        Method::POST,
        "/api/strategies",
        Some(json!({"ownerWallet": "nope", "slippageBps": "5000"})),
    )
    .await;
    invalid.assert_error(400, "invalid_strategy");
    let fields: Vec<&str> = invalid.body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|problem| problem["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["ownerWallet", "slippageBps"]);

    let listed = get(&daemon, "/api/strategies").await;
    assert_eq!(listed.status, 200);
    check_list(&document, "Strategy", &listed.body);
    let ids: BTreeSet<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|strategy| strategy["strategyId"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from([id.as_str(), daemon.strategy_id.as_str()])
    );

    let fetched = get(&daemon, &format!("/api/strategies/{id}")).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.body, created.body);

    let patched = call(
        &daemon,
        Method::PATCH,
        &format!("/api/strategies/{id}"),
        Some(json!({"topN": "3", "schedule": "0 */6 * * *"})),
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    check_component(&document, "Strategy", &patched.body);
    assert_eq!(
        (
            patched.body["topN"].clone(),
            patched.body["schedule"].clone()
        ),
        (json!(3), json!("0 */6 * * *"))
    );
    call(
        &daemon,
        Method::PATCH,
        &format!("/api/strategies/{id}"),
        Some(json!({"ownerWallet": daemon.sandbox.world.token_mint.to_string()})),
    )
    .await
    .assert_error(400, "invalid_strategy");

    let paused = call(
        &daemon,
        Method::POST,
        &format!("/api/strategies/{id}/disable"),
        None,
    )
    .await;
    assert_eq!(
        (paused.status, paused.body["status"].as_str()),
        (200, Some("paused"))
    );
    let only_paused = get(&daemon, "/api/strategies?status=paused").await;
    let paused_ids: Vec<&str> = only_paused
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|strategy| strategy["strategyId"].as_str().unwrap())
        .collect();
    assert_eq!(paused_ids, [id.as_str()]);
    get(&daemon, "/api/strategies?status=sleeping")
        .await
        .assert_error(400, "invalid_status");
    let active = call(
        &daemon,
        Method::POST,
        &format!("/api/strategies/{id}/enable"),
        None,
    )
    .await;
    assert_eq!(active.body["status"], "active");

    let keys = get(&daemon, &format!("/api/strategies/{id}/keys")).await;
    assert_eq!((keys.status, keys.body.clone()), (200, json!([])));

    let deleted = call(
        &daemon,
        Method::DELETE,
        &format!("/api/strategies/{id}"),
        None,
    )
    .await;
    assert_eq!((deleted.status, deleted.text.as_str()), (204, ""));
    get(&daemon, &format!("/api/strategies/{id}"))
        .await
        .assert_error(404, "strategy_not_found");
    call(
        &daemon,
        Method::DELETE,
        &format!("/api/strategies/{id}"),
        None,
    )
    .await
    .assert_error(404, "strategy_not_found");
    for path in [
        format!("/api/strategies/{id}/keys"),
        format!("/api/usage?strategyId={id}"),
    ] {
        get(&daemon, &path)
            .await
            .assert_error(404, "strategy_not_found");
    }
    for (method, suffix, body) in [
        (Method::PATCH, "", Some(json!({"topN": 2}))),
        (Method::POST, "/enable", None),
        (Method::POST, "/disable", None),
    ] {
        call(
            &daemon,
            method,
            &format!("/api/strategies/{id}{suffix}"),
            body,
        )
        .await
        .assert_error(404, "strategy_not_found");
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_is_accepted_at_once_streams_its_progress_and_feeds_keys_pool_and_stats() {
    let daemon = SandboxDaemon::start(6, &[]).await;
    let document = openapi(&daemon).await;
    // The swap's quote takes two seconds: the run cannot finish before its 202 is read.
    daemon.sandbox.faults.add_rule(FaultRule {
        fake: "bags".into(),
        route: Some("GET /api/v1/trade/quote".into()),
        latency: Some(Latency::Fixed { ms: 2_000 }),
        mode: None,
    });

    let started = call(
        &daemon,
        Method::POST,
        "/api/runs",
        Some(json!({"strategyId": daemon.strategy_id})),
    )
    .await;
    assert_eq!(started.status, 202, "{}", started.text);
    check_component(&document, "RunStarted", &started.body);
    let run_id = started.body["runId"].as_str().unwrap().to_string();
    assert_eq!(
        started.header("location"),
        Some(format!("/api/runs/{run_id}").as_str())
    );
    let early = get(&daemon, &format!("/api/runs/{run_id}")).await;
    assert_eq!(early.status, 200);
    check_component(&document, "RunDetail", &early.body);
    let early_state = early.body["run"]["state"].as_str().unwrap();
    assert!(
        !["COMPLETE", "FAILED"].contains(&early_state),
        "the run had already ended: {early_state}"
    );
    // A second start while it runs is refused.
    call(
        &daemon,
        Method::POST,
        "/api/runs",
        Some(json!({"strategyId": daemon.strategy_id, "dryRun": false})),
    )
    .await
    .assert_error(409, "run_in_progress");

    // The event stream: every state in order, each audit row once, then `end`.
    let (events, seen_live) = read_events_to_end(&daemon, &run_id).await;
    assert!(seen_live, "events are streamed while the run goes on");
    let states: Vec<&str> = events
        .iter()
        .filter(|event| event.event == "state")
        .map(|event| event.data["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.first(), Some(&"PENDING"), "{states:?}");
    assert_eq!(states.last(), Some(&"COMPLETE"), "{states:?}");
    let ranks: Vec<usize> = states
        .iter()
        .map(|state| RUN_ORDER.iter().position(|s| s == state).unwrap())
        .collect();
    assert!(ranks.windows(2).all(|pair| pair[0] < pair[1]), "{states:?}");
    assert!(states.contains(&"SWAPPING"), "{states:?}");
    let audit_ids: Vec<i64> = events
        .iter()
        .filter(|event| event.event == "audit")
        .map(|event| {
            check_component(&document, "AuditEntry", &event.data);
            event.data["id"].as_i64().unwrap()
        })
        .collect();
    assert!(audit_ids.windows(2).all(|pair| pair[0] < pair[1]));
    let end = events.last().unwrap();
    check_component(&document, "Run", &end.data);
    assert_eq!(end.data["state"], "COMPLETE");
    // Having seen `end`, a reconnecting client is told to stop.
    let after_end = daemon
        .api(Method::GET, &format!("/api/runs/{run_id}/events"))
        .header("last-event-id", end.id.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(after_end.status(), 204);
    let bad_cursor = daemon
        .api(Method::GET, &format!("/api/runs/{run_id}/events"))
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    Answer::from(bad_cursor)
        .await
        .assert_error(400, "invalid_last_event_id");
    get(&daemon, "/api/runs/no-such-run/events")
        .await
        .assert_error(404, "run_not_found");

    // The run's detail: the phase log agrees with the stream.
    let detail = get(&daemon, &format!("/api/runs/{run_id}")).await;
    check_component(&document, "RunDetail", &detail.body);
    assert_eq!(detail.body["run"]["state"], "COMPLETE");
    let logged: Vec<i64> = detail.body["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["id"].as_i64().unwrap())
        .collect();
    assert_eq!(logged, audit_ids);
    assert!(
        detail.body["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|tx| tx["status"] == "landed"),
        "{}",
        detail.text
    );
    let keys_created = detail.body["run"]["keysCreated"].as_u64().unwrap();
    assert!(keys_created > 1);

    let runs = get(
        &daemon,
        &format!(
            "/api/runs?strategyId={}&state=complete&limit=10&offset=0",
            daemon.strategy_id
        ),
    )
    .await;
    check_list(&document, "Run", &runs.body);
    assert_eq!(runs.body.as_array().unwrap().len(), 1);
    // Pages: the refused start above recorded a FAILED run too, newest first.
    let all = get(&daemon, "/api/runs").await.body;
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    assert_eq!(
        get(&daemon, "/api/runs?limit=1&offset=1").await.body,
        json!([all[1]])
    );
    get(&daemon, "/api/runs?state=sleeping")
        .await
        .assert_error(400, "invalid_state");
    get(&daemon, "/api/runs?limit=0")
        .await
        .assert_error(400, "invalid_limit");
    call(
        &daemon,
        Method::POST,
        &format!("/api/runs/{run_id}/resume"),
        None,
    )
    .await
    .assert_error(409, "run_not_resumable");
    call(&daemon, Method::POST, "/api/runs/no-such-run/resume", None)
        .await
        .assert_error(404, "run_not_found");
    call(
        &daemon,
        Method::POST,
        "/api/runs",
        Some(json!({"strategyId": "no-such-strategy"})),
    )
    .await
    .assert_error(404, "strategy_not_found");

    // History blocks deletion: 409, and the strategy is still there.
    let strategy_path = format!("/api/strategies/{}", daemon.strategy_id);
    call(&daemon, Method::DELETE, &strategy_path, None)
        .await
        .assert_error(409, "strategy_has_runs");
    assert_eq!(get(&daemon, &strategy_path).await.status, 200);

    // Keys: listed three ways, never with key material.
    let keys = get(
        &daemon,
        &format!("/api/keys?strategyId={}", daemon.strategy_id),
    )
    .await;
    check_list(&document, "Key", &keys.body);
    assert_eq!(keys.body.as_array().unwrap().len() as u64, keys_created);
    assert!(!keys.text.contains("sk-or-v1"), "{}", keys.text);
    let hashes = |answer: &Answer| -> BTreeSet<String> {
        answer
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|key| key["keyHash"].as_str().unwrap().to_string())
            .collect()
    };
    let same = get(&daemon, &format!("{strategy_path}/keys")).await;
    assert_eq!(hashes(&same), hashes(&keys));
    assert_eq!(hashes(&get(&daemon, "/api/keys").await), hashes(&keys));
    let victim = keys.body[0].clone();
    let wallet = victim["holderWallet"].as_str().unwrap();
    let hash = victim["keyHash"].as_str().unwrap();
    let by_wallet = get(&daemon, &format!("/api/wallets/{wallet}/keys")).await;
    check_list(&document, "Key", &by_wallet.body);
    assert_eq!(by_wallet.body, json!([victim]));
    assert_eq!(
        get(&daemon, &format!("/api/keys?wallet={wallet}"))
            .await
            .body,
        json!([victim])
    );
    get(&daemon, "/api/wallets/not-a-wallet/keys")
        .await
        .assert_error(400, "invalid_wallet");
    get(&daemon, "/api/keys?wallet=0OIl")
        .await
        .assert_error(400, "invalid_wallet");

    let usage = get(&daemon, &format!("/api/keys/{hash}/usage?limit=5")).await;
    assert_eq!(usage.status, 200, "{}", usage.text);
    check_list(&document, "Usage", &usage.body);
    get(&daemon, &format!("/api/keys/{hash}/usage?limit=501"))
        .await
        .assert_error(400, "invalid_limit");
    get(&daemon, "/api/keys/no-such-key/usage")
        .await
        .assert_error(404, "key_not_found");
    let strategy_usage = get(
        &daemon,
        &format!("/api/usage?strategyId={}&limit=50", daemon.strategy_id),
    )
    .await;
    assert_eq!(strategy_usage.status, 200, "{}", strategy_usage.text);
    check_list(&document, "Usage", &strategy_usage.body);

    let pool_before = get(&daemon, "/api/pool").await;
    assert_eq!(pool_before.status, 200, "{}", pool_before.text);
    check_component(&document, "Pool", &pool_before.body);
    let revoked = call(
        &daemon,
        Method::POST,
        &format!("/api/keys/{hash}/revoke"),
        None,
    )
    .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    check_component(&document, "RevokedKey", &revoked.body);
    assert_eq!(revoked.body["remoteDeleted"], true);
    let pool_after = get(&daemon, "/api/pool").await;
    assert_eq!(
        pool_before.body["promisedMicroUsd"].as_i64().unwrap()
            - pool_after.body["promisedMicroUsd"].as_i64().unwrap(),
        victim["limitMicroUsd"].as_i64().unwrap() - victim["usageMicroUsd"].as_i64().unwrap()
    );
    call(
        &daemon,
        Method::POST,
        &format!("/api/keys/{hash}/revoke"),
        None,
    )
    .await
    .assert_error(409, "key_not_current");
    call(&daemon, Method::POST, "/api/keys/no-such-key/revoke", None)
        .await
        .assert_error(404, "key_not_found");
    call(
        &daemon,
        Method::POST,
        &format!("/api/keys/{hash}/rotate"),
        None,
    )
    .await
    .assert_error(409, "key_not_current");
    let other = keys.body[1]["keyHash"].as_str().unwrap();
    let rotated = call(
        &daemon,
        Method::POST,
        &format!("/api/keys/{other}/rotate"),
        None,
    )
    .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    check_component(&document, "RotatedKey", &rotated.body);
    assert_eq!(rotated.body["oldKeyHash"], other);
    assert!(!rotated.text.contains("sk-or-v1"));

    let history = get(&daemon, "/api/pool/history?limit=3").await;
    assert_eq!(history.status, 200);
    check_list(&document, "PoolSnapshot", &history.body);
    let stats = get(&daemon, "/api/stats").await;
    check_component(&document, "Stats", &stats.body);
    assert_eq!(stats.body["runsByState"]["COMPLETE"], 1);
    assert_eq!(stats.body["keysByStatus"]["revoked"], 1);
    assert_eq!(
        stats.body["claimedLamports"],
        detail.body["run"]["claimedLamports"]
    );

    // The kill switch: a start is a 409 naming the FAILED run it recorded.
    let switch = get(&daemon, "/api/kill-switch").await;
    check_component(&document, "KillSwitch", &switch.body);
    assert_eq!(switch.body["engaged"], false);
    let on = call(
        &daemon,
        Method::PUT,
        "/api/kill-switch",
        Some(json!({"on": true})),
    )
    .await;
    assert_eq!(
        on.body,
        json!({"env": false, "runtime": true, "engaged": true})
    );
    assert_eq!(get(&daemon, "/api/kill-switch").await.body, on.body);
    let blocked = call(
        &daemon,
        Method::POST,
        "/api/runs",
        Some(json!({"strategyId": daemon.strategy_id, "dryRun": true})),
    )
    .await;
    blocked.assert_error(409, "kill_switch");
    let blocked_id = blocked.body["error"]["runId"].as_str().unwrap();
    let blocked_run = get(&daemon, &format!("/api/runs/{blocked_id}")).await;
    assert_eq!(
        (
            blocked_run.body["run"]["state"].as_str(),
            blocked_run.body["run"]["errorCode"].as_str()
        ),
        (Some("FAILED"), Some("KILL_SWITCH"))
    );
    let off = call(
        &daemon,
        Method::PUT,
        "/api/kill-switch",
        Some(json!({"on": false})),
    )
    .await;
    assert_eq!(off.body["engaged"], false);

    // Reconcile: no body is a report only; a body may ask for repairs.
    let report = call(&daemon, Method::POST, "/api/reconcile", None).await;
    assert_eq!(report.status, 200, "{}", report.text);
    check_component(&document, "ReconcileReport", &report.body);
    assert_eq!(report.body["fixRequested"], false);
    let fixed = call(
        &daemon,
        Method::POST,
        "/api/reconcile",
        Some(json!({"fix": true})),
    )
    .await;
    assert_eq!(fixed.status, 200, "{}", fixed.text);
    check_component(&document, "ReconcileReport", &fixed.body);
    assert_eq!(fixed.body["fixRequested"], true);

    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_precise_authenticated_first_and_throttled() {
    let daemon = SandboxDaemon::start(2, &[]).await;
    let plain = |path: &str| daemon.http.get(daemon.url(path));

    // 401: missing, wrong, malformed; before any validation of the body or query.
    let missing = Answer::from(plain("/api/stats").send().await.unwrap()).await;
    missing.assert_error(401, "unauthorized");
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    let wrong = Answer::from(
        plain("/api/stats")
            .bearer_auth("not-the-token")
            .send()
            .await
            .unwrap(),
    )
    .await;
    wrong.assert_error(401, "unauthorized");
    assert_eq!(wrong.header("www-authenticate"), Some("Bearer"));
    let unauthenticated_bad_body = daemon
        .http
        .post(daemon.url("/api/runs"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let unauthenticated_bad_body = Answer::from(unauthenticated_bad_body).await;
    unauthenticated_bad_body.assert_error(401, "unauthorized");
    // Its body was never read, so the connection is not offered for reuse.
    assert_eq!(unauthenticated_bad_body.header("connection"), Some("close"));
    Answer::from(plain("/api/runs?limit=abc").send().await.unwrap())
        .await
        .assert_error(401, "unauthorized");
    // Unknown /api paths are no way around auth either.
    Answer::from(plain("/api/no-such-route").send().await.unwrap())
        .await
        .assert_error(401, "unauthorized");

    // 400: JSON syntax with its position; shape errors naming the field.
    let syntax = send_raw(
        &daemon,
        Method::POST,
        "/api/runs",
        "application/json",
        "{\n  \"strategyId\": \"x\",\n  \"dryRun\": tru }",
    )
    .await;
    syntax.assert_error(400, "invalid_json");
    assert!(
        syntax.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at line 3 column"),
        "{}",
        syntax.text
    );
    assert_eq!(syntax.body["error"]["line"], 3);
    for (body, field, words) in [
        (
            json!({"strategyId": "x", "dryrun": true}),
            Some("dryrun"),
            "unknown field `dryrun`",
        ),
        (
            json!({"strategyId": "x", "dryRun": "yes"}),
            Some("dryRun"),
            "invalid type",
        ),
        (json!({"dryRun": true}), None, "missing field `strategyId`"),
        (json!([1, 2]), None, "invalid type"),
    ] {
        let answer = call(&daemon, Method::POST, "/api/runs", Some(body.clone())).await;
        answer.assert_error(400, "invalid_body");
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{body}: {message}");
        if let Some(field) = field {
            assert_eq!(answer.body["error"]["field"], field, "{body}");
            assert!(message.contains(field));
        }
    }
    let nested = call(
        &daemon,
        Method::POST,
        "/api/strategies",
        Some(json!({"ownerWallet": "x", "customWeights": [{"wallet": "a", "weight": 1}, {"wallet": "b", "weight": true}]})),
    )
    .await;
    nested.assert_error(400, "invalid_body");
    assert_eq!(nested.body["error"]["field"], "customWeights[1].weight");
    let patch_unknown = call(
        &daemon,
        Method::PATCH,
        &format!("/api/strategies/{}", daemon.strategy_id),
        Some(json!({"topn": 3})),
    )
    .await;
    patch_unknown.assert_error(400, "invalid_body");
    assert_eq!(patch_unknown.body["error"]["field"], "topn");
    send_raw(
        &daemon,
        Method::PUT,
        "/api/kill-switch",
        "application/json",
        "",
    )
    .await
    .assert_error(400, "invalid_body");

    // 415 and 413.
    let text_plain = send_raw(
        &daemon,
        Method::POST,
        "/api/runs",
        "text/plain",
        r#"{"strategyId": "x"}"#,
    )
    .await;
    text_plain.assert_error(415, "unsupported_media_type");
    let no_type = daemon
        .api(Method::PUT, "/api/kill-switch")
        .body(r#"{"on": true}"#)
        .send()
        .await
        .unwrap();
    Answer::from(no_type)
        .await
        .assert_error(415, "unsupported_media_type");
    send_raw(&daemon, Method::POST, "/api/reconcile", "text/plain", "fix")
        .await
        .assert_error(415, "unsupported_media_type");
    let huge = format!(r#"{{"ownerWallet": "{}"}}"#, "1".repeat(BIG_BODY_BYTES));
    let too_large = send_raw(
        &daemon,
        Method::POST,
        "/api/strategies",
        "application/json",
        huge,
    )
    .await;
    too_large.assert_error(413, "payload_too_large");
    assert_eq!(too_large.header("connection"), Some("close"));
    assert_eq!(
        get(&daemon, "/api/kill-switch").await.body["runtime"],
        false,
        "nothing was switched on by the refused bodies"
    );

    // 400 for query strings, naming the parameter.
    for (path, parameter) in [
        ("/api/runs?limit=abc", "limit"),
        ("/api/runs?limit=-5", "limit"),
        ("/api/runs?strategy=x", "strategy"),
        ("/api/runs?state=COMPLETE&state=FAILED", "state"),
        ("/api/stats?verbose=1", "verbose"),
        ("/api/usage", "strategyId"),
        ("/api/pool/history?limit=", "limit"),
    ] {
        let answer = get(&daemon, path).await;
        answer.assert_error(400, "invalid_query");
        assert_eq!(answer.body["error"]["parameter"], parameter, "{path}");
        assert!(
            answer.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(parameter),
            "{}",
            answer.text
        );
    }

    // 404s with their codes; 405 in our shape.
    get(&daemon, "/api/strategies/no-such-strategy")
        .await
        .assert_error(404, "strategy_not_found");
    get(&daemon, "/api/runs/no-such-run")
        .await
        .assert_error(404, "run_not_found");
    get(&daemon, "/api/keys/no-such-key/usage")
        .await
        .assert_error(404, "key_not_found");
    get(&daemon, "/api/no-such-route")
        .await
        .assert_error(404, "not_found");
    Answer::from(plain("/no-such-page").send().await.unwrap())
        .await
        .assert_error(404, "not_found");
    let wrong_method = call(&daemon, Method::DELETE, "/api/stats", None).await;
    wrong_method.assert_error(405, "method_not_allowed");
    assert_eq!(wrong_method.header("allow"), Some("GET,HEAD"));

    // Security headers on every response; no-store on the API's; no CORS without origins.
    for answer in [
        Answer::from(plain("/health/live").send().await.unwrap()).await,
        Answer::from(plain("/no-such-page").send().await.unwrap()).await,
        missing,
        get(&daemon, "/api/stats").await,
    ] {
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(answer.header("x-frame-options"), Some("DENY"));
        assert_eq!(answer.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(
            answer.header("content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'")
        );
    }
    let api_answer = Answer::from(
        daemon
            .api(Method::GET, "/api/stats")
            .header("origin", "https://ops.example.com")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(api_answer.header("cache-control"), Some("no-store"));
    assert_eq!(api_answer.header("access-control-allow-origin"), None);
    let health = Answer::from(plain("/health/live").send().await.unwrap()).await;
    assert_eq!(health.header("cache-control"), None);
    let preflight = Answer::from(
        daemon
            .http
            .request(Method::OPTIONS, daemon.url("/api/stats"))
            .header("origin", "https://ops.example.com")
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap(),
    )
    .await;
    preflight.assert_error(403, "cors_origin_not_allowed");
    assert_eq!(preflight.header("access-control-allow-origin"), None);

    // The failure throttle: ten bad tokens, then 429 for every /api request from the address,
    // a correct token and public routes included, until the window passes.
    // One wrong token so far (`wrong`); requests without a token are not failures.
    for _ in 1..MAX_AUTH_FAILURES {
        Answer::from(
            plain("/api/stats")
                .bearer_auth("guess")
                .send()
                .await
                .unwrap(),
        )
        .await
        .assert_error(401, "unauthorized");
    }
    let throttled = get(&daemon, "/api/stats").await;
    throttled.assert_error(429, "too_many_auth_failures");
    let retry_after: u64 = throttled.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    Answer::from(plain("/api/openapi.json").send().await.unwrap())
        .await
        .assert_error(429, "too_many_auth_failures");
    assert_eq!(plain("/health/live").send().await.unwrap().status(), 200);

    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_apply_per_route_and_class_and_cors_follows_the_allowed_origins() {
    let daemon = SandboxDaemon::start(
        2,
        &[
            ("API_RATE_LIMIT_PER_MIN", "20"),
            (
                "CORS_ALLOWED_ORIGINS",
                "https://ops.example.com,http://localhost:5173",
            ),
        ],
    )
    .await;
    let allowed = "https://ops.example.com";

    // CORS: a listed origin's preflight and requests; an unlisted origin gets nothing.
    let preflight = |origin: &str| {
        daemon
            .http
            .request(Method::OPTIONS, daemon.url("/api/runs"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let ok = Answer::from(preflight(allowed).await.unwrap()).await;
    assert_eq!(ok.status, 204, "{}", ok.text);
    assert_eq!(ok.header("access-control-allow-origin"), Some(allowed));
    assert_eq!(ok.header("vary"), Some("Origin"));
    assert!(
        ok.header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    let allow_headers = ok.header("access-control-allow-headers").unwrap();
    assert!(allow_headers.contains("authorization") && allow_headers.contains("content-type"));
    assert_eq!(ok.header("access-control-max-age"), Some("600"));
    let refused = Answer::from(preflight("https://evil.example.com").await.unwrap()).await;
    refused.assert_error(403, "cors_origin_not_allowed");
    assert_eq!(refused.header("access-control-allow-origin"), None);

    let with_origin = |origin: &'static str| {
        daemon
            .api(Method::GET, "/api/kill-switch")
            .header("origin", origin)
            .send()
    };
    let listed = Answer::from(with_origin("http://localhost:5173").await.unwrap()).await;
    assert_eq!(listed.status, 200);
    assert_eq!(
        listed.header("access-control-allow-origin"),
        Some("http://localhost:5173")
    );
    assert_eq!(listed.header("vary"), Some("Origin"));
    let unlisted = Answer::from(with_origin("https://evil.example.com").await.unwrap()).await;
    assert_eq!(unlisted.status, 200);
    assert_eq!(unlisted.header("access-control-allow-origin"), None);
    assert_eq!(unlisted.header("vary"), None);
    // A browser can read an error too.
    let error = Answer::from(
        daemon
            .http
            .get(daemon.url("/api/stats"))
            .header("origin", allowed)
            .send()
            .await
            .unwrap(),
    )
    .await;
    error.assert_error(401, "unauthorized");
    assert_eq!(error.header("access-control-allow-origin"), Some(allowed));

    // Reads: 20 a minute per route.
    for _ in 0..20 {
        assert_eq!(get(&daemon, "/api/stats").await.status, 200);
    }
    let limited = get(&daemon, "/api/stats").await;
    limited.assert_error(429, "rate_limited");
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(limited.header("cache-control"), Some("no-store"));
    assert_eq!(
        get(&daemon, "/api/pool/history").await.status,
        200,
        "another route has its own count"
    );

    // Writes: a tenth (2); starting work: the write limit, at most 30 (2 here).
    for _ in 0..2 {
        let answer = call(
            &daemon,
            Method::PUT,
            "/api/kill-switch",
            Some(json!({"on": false})),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
    }
    call(
        &daemon,
        Method::PUT,
        "/api/kill-switch",
        Some(json!({"on": false})),
    )
    .await
    .assert_error(429, "rate_limited");
    for _ in 0..2 {
        call(
            &daemon,
            Method::POST,
            "/api/runs",
            Some(json!({"strategyId": "no-such-strategy"})),
        )
        .await
        .assert_error(404, "strategy_not_found");
    }
    call(
        &daemon,
        Method::POST,
        "/api/runs",
        Some(json!({"strategyId": "no-such-strategy"})),
    )
    .await
    .assert_error(429, "rate_limited");
    assert_eq!(
        get(&daemon, "/api/kill-switch").await.body["runtime"],
        false
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_is_valid_and_lists_exactly_what_the_router_serves() {
    // A high limit: this test sends about a hundred requests no route serves (405s).
    let daemon = SandboxDaemon::start(2, &[("API_RATE_LIMIT_PER_MIN", "6000")]).await;
    let document = openapi(&daemon).await;
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        document["openapi"]
    );
    assert!(!document["info"]["title"].as_str().unwrap().is_empty());
    assert!(!document["info"]["version"].as_str().unwrap().is_empty());
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");

    // Every $ref resolves.
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("$ref") {
                    out.push(reference.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut references = Vec::new();
    refs(&document, &mut references);
    assert!(references.len() > 50);
    for reference in &references {
        let name = reference.strip_prefix("#/components/schemas/").unwrap();
        assert!(
            document["components"]["schemas"][name].is_object(),
            "{reference} does not resolve"
        );
    }

    // Operations: unique ids, responses, security unless public.
    let methods = ["get", "post", "put", "patch", "delete"];
    let mut operations: Vec<(String, String, Value)> = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            assert!(methods.contains(&method.as_str()), "{method} {path}");
            operations.push((method.to_uppercase(), path.clone(), operation.clone()));
        }
    }
    let ids: BTreeSet<&str> = operations
        .iter()
        .map(|(_, _, op)| op["operationId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), operations.len(), "operationIds are unique");
    for (method, path, operation) in &operations {
        assert!(
            !operation["responses"].as_object().unwrap().is_empty(),
            "{method} {path}"
        );
        let public = operation["operationId"] == "openApi";
        let expected = if public {
            json!([])
        } else {
            json!([{"bearerAuth": []}])
        };
        assert_eq!(operation["security"], expected, "{method} {path}");
        for parameter in operation["parameters"].as_array().unwrap() {
            if parameter["in"] == "path" {
                assert!(path.contains(&format!("{{{}}}", parameter["name"].as_str().unwrap())));
            }
        }
    }
    // The document comes from the route table, entry for entry.
    let table: BTreeSet<(String, String)> = creditbrain::api::routes::ROUTES
        .iter()
        .map(|route| (route.method.to_string(), route.path.to_string()))
        .collect();
    let documented: BTreeSet<(String, String)> = operations
        .iter()
        .map(|(method, path, _)| (method.clone(), path.clone()))
        .collect();
    assert_eq!(table, documented);
    assert!(documented.len() >= 26, "{documented:?}");

    // Every documented operation is served (never the 404 fallback, never a 405), and what it
    // answers to a placeholder request is one of its documented responses.
    for (method, path, operation) in &operations {
        let concrete = path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "placeholder"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let body = operation.get("requestBody").map(|_| json!({}));
        let answer = call(&daemon, method.clone(), &concrete, body).await;
        assert_ne!(
            answer.code(),
            "not_found",
            "{method} {concrete}: {}",
            answer.text
        );
        assert_ne!(answer.status, 405, "{method} {concrete}");
        assert!(
            operation["responses"]
                .get(answer.status.to_string())
                .is_some(),
            "{method} {concrete} answered an undocumented {}: {}",
            answer.status,
            answer.text
        );
    }
    // Nothing else is served at those paths: every other method is a 405.
    let mut by_path: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (method, path, _) in &operations {
        by_path.entry(path).or_default().insert(method);
    }
    for (path, served) in by_path {
        let concrete = path.replace(['{', '}'], "");
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if served.contains(method) {
                continue;
            }
            let answer = call(
                &daemon,
                Method::from_bytes(method.as_bytes()).unwrap(),
                &concrete,
                None,
            )
            .await;
            answer.assert_error(405, "method_not_allowed");
        }
    }
    // And the old service's paths are gone.
    for path in [
        "/api/credit-pool",
        "/api/credit-pool/history",
        "/api/runs/strategy/x",
        "/api/keys/wallet/x",
        "/api/usage/key/x",
        "/api/health",
    ] {
        get(&daemon, path).await.assert_error(404, "not_found");
    }
    daemon.stop().await;
}
