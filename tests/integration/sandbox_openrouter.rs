//! Contract tests of the OpenRouter fake over real HTTP on loopback (status codes and body shapes
//! of external-apis.md §3), and of the fault layer in front of it (scripts, probabilities,
//! latency, hangs, dropped connections, malformed JSON, route precedence, counters, control API).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use creditbrain::sandbox::faults::{ErrorStyle, Fault, FaultMode, FaultRule, Faults, Latency};
use creditbrain::sandbox::openrouter::OpenRouterFake;
use creditbrain::sandbox::serve_on_loopback;
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

const MANAGEMENT_KEY: &str = "sk-or-v1-contract-test-management-key-0000000000";

/// One fake behind the fault layer, and a control server, on loopback.
struct OpenRouter {
    fake: OpenRouterFake,
    faults: Faults,
    /// `http://127.0.0.1:<port>/api/v1`
    api: String,
    control: String,
    client: Client,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for OpenRouter {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn start() -> OpenRouter {
    start_with_credits(500_000_000).await
}

async fn start_with_credits(total_credits_micro_usd: i64) -> OpenRouter {
    let fake = OpenRouterFake::new(MANAGEMENT_KEY.to_string(), total_credits_micro_usd);
    let faults = Faults::new();
    let (api_address, api_task) =
        serve_on_loopback(faults.wrap("openrouter", ErrorStyle::OpenRouter, fake.router()))
            .await
            .expect("serve the fake");
    let (control_address, control_task) =
        serve_on_loopback(faults.control_routes().merge(fake.control_routes()))
            .await
            .expect("serve the control routes");
    OpenRouter {
        fake,
        faults,
        api: format!("http://{api_address}/api/v1"),
        control: format!("http://{control_address}"),
        // A bound on every request, so a broken fake fails a test instead of hanging it.
        client: Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client"),
        tasks: vec![api_task, control_task],
    }
}

impl OpenRouter {
    /// A request to the management API with the management key.
    fn api(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(MANAGEMENT_KEY)
    }

    fn control(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.control))
    }

    /// `POST /keys` that must succeed: `(data, plaintext key)`.
    async fn create(&self, body: Value) -> (Value, String) {
        let (status, created) = call(self.api(Method::POST, "/keys").json(&body)).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let secret = created["key"].as_str().expect("plaintext key").to_string();
        (created["data"].clone(), secret)
    }

    async fn get_key(&self, hash: &str) -> (StatusCode, Value) {
        call(self.api(Method::GET, &format!("/keys/{hash}"))).await
    }

    async fn list(&self, query: &str) -> (StatusCode, Value) {
        call(self.api(Method::GET, &format!("/keys{query}"))).await
    }
}

/// Sends and reads a JSON answer.
async fn call(request: RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("an HTTP answer");
    read(response).await
}

async fn read(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response.bytes().await.expect("a body");
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|error| {
        panic!(
            "{status}: not JSON ({error}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, body)
}

fn is_hex_64(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

fn names(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|key| key["name"].as_str().expect("name").to_string())
        .collect()
}

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], expected.as_u16(), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| !message.is_empty()),
        "{body}"
    );
}

fn rule(route: Option<&str>, mode: FaultMode) -> FaultRule {
    FaultRule {
        fake: "openrouter".to_string(),
        route: route.map(str::to_string),
        latency: None,
        mode: Some(mode),
    }
}

const CREDITS_ROUTE: &str = "GET /api/v1/credits";

#[tokio::test]
async fn sandbox_openrouter_create_returns_201_the_one_time_secret_and_every_field() {
    let sandbox = start().await;
    let (data, secret) = sandbox
        .create(json!({
            "name": "holder-1",
            "limit": 2.5,
            "limit_reset": "daily",
            "include_byok_in_limit": true,
            "expires_at": "2030-01-01T00:00:00Z",
        }))
        .await;

    let hex = secret.strip_prefix("sk-or-v1-").expect("sk-or-v1- prefix");
    assert!(is_hex_64(hex), "{secret}");
    let hash = data["hash"].as_str().expect("hash");
    assert!(is_hex_64(hash), "{hash}");
    assert_eq!(data["name"], "holder-1");
    let label = data["label"].as_str().expect("label");
    assert!(
        !label.contains(hex) && label.starts_with("sk-or-v1-"),
        "{label}"
    );
    assert_eq!(data["disabled"], false);
    assert_eq!(data["limit"], 2.5);
    assert_eq!(data["limit_remaining"], 2.5);
    assert_eq!(data["limit_reset"], "daily");
    assert_eq!(data["include_byok_in_limit"], true);
    for field in [
        "usage",
        "usage_daily",
        "usage_weekly",
        "usage_monthly",
        "byok_usage",
        "byok_usage_daily",
        "byok_usage_weekly",
        "byok_usage_monthly",
    ] {
        assert_eq!(data[field], 0.0, "{field}");
    }
    let created_at = data["created_at"].as_str().expect("created_at");
    chrono::DateTime::parse_from_rfc3339(created_at).expect("ISO-8601 created_at");
    assert!(data["updated_at"].is_null());
    assert!(data["creator_user_id"].is_null());
    assert!(data["workspace_id"].is_string());
    assert_eq!(data["expires_at"], "2030-01-01T00:00:00Z");
    assert_eq!(data.as_object().expect("object").len(), 21, "{data}");

    // Readable afterwards, but the secret never again.
    let (status, fetched) = sandbox.get_key(hash).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, json!({"data": data}));
    let listed = sandbox
        .api(Method::GET, "/keys")
        .send()
        .await
        .expect("list")
        .text()
        .await
        .expect("text");
    let control = sandbox
        .control(Method::GET, "/_sandbox/openrouter/keys")
        .send()
        .await
        .expect("control list")
        .text()
        .await
        .expect("text");
    for text in [fetched.to_string(), listed, control] {
        assert!(!text.contains(hex), "secret leaked: {text}");
    }
    let keys = sandbox.fake.keys();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].hash, hash);
    assert_eq!(keys[0].limit_micro_usd, Some(2_500_000));
}

#[tokio::test]
async fn sandbox_openrouter_create_validates_its_body() {
    let sandbox = start().await;
    let post = |body: Value| call(sandbox.api(Method::POST, "/keys").json(&body));

    for bad in [
        json!({}),
        json!({"name": ""}),
        json!({"name": 7}),
        json!({"name": "x", "limit_reset": "yearly"}),
        json!({"name": "x", "limit_reset": 1}),
        json!({"name": "x", "limit": -1}),
        json!({"name": "x", "limit": "5"}),
        json!({"name": "x", "include_byok_in_limit": "yes"}),
        json!({"name": "x", "expires_at": "2030-01-01T02:00:00+02:00"}),
        json!({"name": "x", "expires_at": "2030-01-01T00:00:00"}),
        json!({"name": "x", "expires_at": "2030-01-01"}),
        json!({"name": "x", "workspace_id": "not-a-uuid"}),
        json!(["name"]),
    ] {
        let (status, body) = post(bad.clone()).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST);
        assert!(
            body["error"]["message"].as_str().is_some(),
            "{bad} → {body}"
        );
    }
    let (status, body) = call(
        sandbox
            .api(Method::POST, "/keys")
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    assert!(sandbox.fake.keys().is_empty(), "nothing was created");

    // `+00:00` is UTC too; nulls mean "no limit", "never resets", "never expires".
    let (data, _) = sandbox
        .create(json!({"name": "x", "expires_at": "2030-06-01T12:00:00+00:00"}))
        .await;
    assert_eq!(data["expires_at"], "2030-06-01T12:00:00Z");
    let (data, _) = sandbox
        .create(json!({"name": "y", "limit": null, "limit_reset": null, "expires_at": null}))
        .await;
    assert!(data["limit"].is_null() && data["limit_remaining"].is_null());
    assert!(data["limit_reset"].is_null() && data["expires_at"].is_null());
    assert_eq!(data["include_byok_in_limit"], false);
}

#[tokio::test]
async fn sandbox_openrouter_lists_newest_first_in_pages_of_100() {
    let sandbox = start().await;
    for index in 0..105 {
        sandbox
            .create(json!({"name": format!("key-{index:03}")}))
            .await;
    }
    let expected = |from: usize, to: usize| -> Vec<String> {
        (to..=from)
            .rev()
            .map(|index| format!("key-{index:03}"))
            .collect()
    };

    let (status, first) = sandbox.list("").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(names(&first), expected(104, 5));
    let (_, second) = sandbox.list("?offset=100").await;
    assert_eq!(names(&second), expected(4, 0));
    let (_, middle) = sandbox.list("?offset=3").await;
    assert_eq!(names(&middle), expected(101, 2));
    let (_, past_end) = sandbox.list("?offset=105").await;
    assert_eq!(past_end, json!({"data": []}));

    for bad in [
        "?offset=-1",
        "?offset=abc",
        "?offset=1.5",
        "?include_disabled=yes",
        "?workspace_id=nope",
    ] {
        let (status, body) = sandbox.list(bad).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn sandbox_openrouter_hides_disabled_keys_unless_asked() {
    let sandbox = start().await;
    let (kept, _) = sandbox.create(json!({"name": "kept"})).await;
    let (off, _) = sandbox.create(json!({"name": "off"})).await;
    let off_hash = off["hash"].as_str().expect("hash");
    let (status, patched) = call(
        sandbox
            .api(Method::PATCH, &format!("/keys/{off_hash}"))
            .json(&json!({"disabled": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["data"]["disabled"], true);

    assert_eq!(names(&sandbox.list("").await.1), ["kept"]);
    assert_eq!(
        names(&sandbox.list("?include_disabled=false").await.1),
        ["kept"]
    );
    assert_eq!(
        names(&sandbox.list("?include_disabled=true").await.1),
        ["off", "kept"]
    );
    let (status, fetched) = sandbox.get_key(off_hash).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["data"]["disabled"], true);
    assert_eq!(kept["disabled"], false);
}

#[tokio::test]
async fn sandbox_openrouter_patch_changes_only_what_it_names() {
    let sandbox = start().await;
    let (created, _) = sandbox
        .create(json!({"name": "holder", "limit": 5, "limit_reset": "daily"}))
        .await;
    let hash = created["hash"].as_str().expect("hash").to_string();
    let patch = |body: Value| {
        call(
            sandbox
                .api(Method::PATCH, &format!("/keys/{hash}"))
                .json(&body),
        )
    };

    let (status, body) = patch(json!({"limit": 7.5})).await;
    assert_eq!(status, StatusCode::OK);
    let data = &body["data"];
    assert_eq!(data["name"], "holder");
    assert_eq!(data["limit"], 7.5);
    assert_eq!(data["limit_remaining"], 7.5);
    assert_eq!(data["limit_reset"], "daily");
    assert_eq!(data["disabled"], false);
    assert_eq!(data["created_at"], created["created_at"]);
    assert!(data["updated_at"].is_string(), "{data}");

    let (_, body) = patch(json!({"name": "renamed", "limit_reset": null})).await;
    assert_eq!(body["data"]["name"], "renamed");
    assert!(body["data"]["limit_reset"].is_null());
    assert_eq!(body["data"]["limit"], 7.5);

    let before = sandbox.get_key(&hash).await.1;
    for bad in [
        json!({"limit_reset": "hourly"}),
        json!({"expires_at": "2031-01-01T00:00:00Z"}),
        json!({"expires_at": null}),
        json!({"disabled": "true"}),
        json!({"limit": -2}),
        json!({"name": ""}),
        // Nothing applies when any field is bad.
        json!({"name": "half", "limit_reset": "yearly"}),
    ] {
        let (status, body) = patch(bad.clone()).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST);
    }
    assert_eq!(sandbox.get_key(&hash).await.1, before);

    let (_, body) = patch(json!({"limit": null, "include_byok_in_limit": true})).await;
    assert!(body["data"]["limit"].is_null());
    assert!(body["data"]["limit_remaining"].is_null());
    assert_eq!(body["data"]["include_byok_in_limit"], true);

    let missing = "0".repeat(64);
    let (status, body) = call(
        sandbox
            .api(Method::PATCH, &format!("/keys/{missing}"))
            .json(&json!({"name": "ghost"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"error": {"code": 404, "message": "Resource not found"}})
    );
}

#[tokio::test]
async fn sandbox_openrouter_delete_then_everything_is_404() {
    let sandbox = start().await;
    let (gone, _) = sandbox.create(json!({"name": "gone"})).await;
    let (stays, _) = sandbox.create(json!({"name": "stays"})).await;
    let hash = gone["hash"].as_str().expect("hash");
    let path = format!("/keys/{hash}");

    let (status, body) = call(sandbox.api(Method::DELETE, &path)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"deleted": true}));

    let not_found = json!({"error": {"code": 404, "message": "Resource not found"}});
    let (status, body) = sandbox.get_key(hash).await;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, not_found.clone()));
    let (status, body) = call(sandbox.api(Method::DELETE, &path)).await;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, not_found.clone()));
    let (status, body) = call(
        sandbox
            .api(Method::PATCH, &path)
            .json(&json!({"disabled": true})),
    )
    .await;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, not_found));
    assert_eq!(
        names(&sandbox.list("?include_disabled=true").await.1),
        ["stays"]
    );
    let hashes: Vec<String> = sandbox
        .fake
        .keys()
        .into_iter()
        .map(|key| key.hash)
        .collect();
    assert_eq!(hashes, [stays["hash"].as_str().expect("hash")]);
}

#[tokio::test]
async fn sandbox_openrouter_every_route_requires_the_management_key() {
    let sandbox = start().await;
    let (existing, _) = sandbox.create(json!({"name": "existing"})).await;
    let hash = existing["hash"].as_str().expect("hash");
    let routes = [
        (Method::GET, "/keys".to_string()),
        (Method::POST, "/keys".to_string()),
        (Method::GET, format!("/keys/{hash}")),
        (Method::PATCH, format!("/keys/{hash}")),
        (Method::DELETE, format!("/keys/{hash}")),
        (Method::GET, "/key".to_string()),
        (Method::GET, "/credits".to_string()),
        (Method::POST, "/credits/coinbase".to_string()),
    ];
    for (method, path) in &routes {
        let url = format!("{}{path}", sandbox.api);
        let body = json!({"name": "intruder", "disabled": true});
        let attempts = [
            sandbox.client.request(method.clone(), &url).json(&body),
            sandbox
                .client
                .request(method.clone(), &url)
                .bearer_auth("sk-or-v1-wrong")
                .json(&body),
            sandbox
                .client
                .request(method.clone(), &url)
                .header("authorization", MANAGEMENT_KEY)
                .json(&body),
            sandbox
                .client
                .request(method.clone(), &url)
                .basic_auth("user", Some(MANAGEMENT_KEY))
                .json(&body),
        ];
        for attempt in attempts {
            let (status, body) = call(attempt).await;
            assert_error(status, &body, StatusCode::UNAUTHORIZED);
        }
    }
    let keys = sandbox.fake.keys();
    assert_eq!(keys.len(), 1, "no key created");
    assert!(!keys[0].disabled, "no key changed");
}

#[tokio::test]
async fn sandbox_openrouter_credits_come_from_the_configured_totals() {
    let sandbox = start_with_credits(12_500_000).await;
    let credits = || call(sandbox.api(Method::GET, "/credits"));
    assert_eq!(
        credits().await,
        (
            StatusCode::OK,
            json!({"data": {"total_credits": 12.5, "total_usage": 0.0}})
        )
    );

    sandbox.fake.set_credits(123_456_789, 23_456_789);
    assert_eq!(
        credits().await.1,
        json!({"data": {"total_credits": 123.456789, "total_usage": 23.456789}})
    );

    let (status, body) = call(
        sandbox
            .control(Method::PUT, "/_sandbox/openrouter/credits")
            .json(&json!({"total_credits": 10.5, "total_usage": 2.25})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(sandbox.fake.credits(), (10_500_000, 2_250_000));
    assert_eq!(
        credits().await.1,
        json!({"data": {"total_credits": 10.5, "total_usage": 2.25}})
    );
    let (status, body) = call(sandbox.control(Method::GET, "/_sandbox/openrouter/credits")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["total_credits_micro_usd"], 10_500_000);

    for bad in [
        json!({"total_credits": 10.5}),
        json!({"total_credits": -1, "total_usage": 0}),
        json!({"total_credits": "10", "total_usage": 0}),
    ] {
        let (status, body) = call(
            sandbox
                .control(Method::PUT, "/_sandbox/openrouter/credits")
                .json(&bad),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} → {body}");
    }
    assert_eq!(sandbox.fake.credits(), (10_500_000, 2_250_000));
}

#[tokio::test]
async fn sandbox_openrouter_current_key_describes_the_management_key() {
    let sandbox = start().await;
    let (status, body) = call(sandbox.api(Method::GET, "/key")).await;
    assert_eq!(status, StatusCode::OK);
    let data = &body["data"];
    assert_eq!(data["is_management_key"], true);
    assert_eq!(data["is_provisioning_key"], true);
    assert_eq!(data["is_free_tier"], false);
    let label = data["label"].as_str().expect("label");
    assert!(!label.contains(&MANAGEMENT_KEY[12..]), "{label}");
    assert!(data["limit"].is_null() && data["limit_remaining"].is_null());
    assert!(data["limit_reset"].is_null());
    assert_eq!(data["include_byok_in_limit"], false);
    for field in [
        "usage",
        "usage_daily",
        "usage_weekly",
        "usage_monthly",
        "byok_usage",
        "byok_usage_daily",
        "byok_usage_weekly",
        "byok_usage_monthly",
    ] {
        assert_eq!(data[field], 0.0, "{field}");
    }
    assert!(data["creator_user_id"].is_null() && data["expires_at"].is_null());
    assert!(data["rate_limit"].is_object());
}

#[tokio::test]
async fn sandbox_openrouter_coinbase_is_gone() {
    let sandbox = start().await;
    let (status, body) = call(
        sandbox
            .api(Method::POST, "/credits/coinbase")
            .json(&json!({"amount": 10, "sender": "0xabc", "chain_id": 8453})),
    )
    .await;
    assert_error(status, &body, StatusCode::GONE);
}

#[tokio::test]
async fn sandbox_openrouter_usage_moves_usage_windows_and_limit_remaining() {
    let sandbox = start_with_credits(100_000_000).await;
    let (capped, _) = sandbox.create(json!({"name": "capped", "limit": 10})).await;
    let (daily, _) = sandbox
        .create(json!({"name": "daily", "limit": 3, "limit_reset": "daily"}))
        .await;
    let capped = capped["hash"].as_str().expect("hash").to_string();
    let daily = daily["hash"].as_str().expect("hash").to_string();

    sandbox
        .fake
        .add_usage(&capped, 1_250_000)
        .expect("known key");
    let data = sandbox.get_key(&capped).await.1["data"].clone();
    for field in ["usage", "usage_daily", "usage_weekly", "usage_monthly"] {
        assert_eq!(data[field], 1.25, "{field}");
    }
    assert_eq!(data["limit_remaining"], 8.75);
    assert_eq!(data["byok_usage"], 0.0);

    let usage_url = format!("/_sandbox/openrouter/keys/{capped}/usage");
    let (status, snapshot) = call(
        sandbox
            .control(Method::POST, &usage_url)
            .json(&json!({"usd": 0.5})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{snapshot}");
    assert_eq!(snapshot["usage_micro_usd"], 1_750_000);
    let (status, snapshot) = call(
        sandbox
            .control(Method::POST, &usage_url)
            .json(&json!({"micro_usd": 250_000})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(snapshot["limit_remaining_micro_usd"], 8_000_000);
    assert_eq!(
        sandbox.get_key(&capped).await.1["data"]["limit_remaining"],
        8.0
    );

    // Overspending a limit (the last request may cross it) leaves nothing remaining, not less.
    sandbox
        .fake
        .add_usage(&daily, 5_000_000)
        .expect("known key");
    let data = sandbox.get_key(&daily).await.1["data"].clone();
    assert_eq!(data["usage"], 5.0);
    assert_eq!(data["usage_daily"], 5.0);
    assert_eq!(data["limit_remaining"], 0.0);

    // The account's usage moved by every addition: 1.25 + 0.5 + 0.25 + 5.
    assert_eq!(sandbox.fake.credits(), (100_000_000, 7_000_000));
    assert_eq!(
        call(sandbox.api(Method::GET, "/credits")).await.1,
        json!({"data": {"total_credits": 100.0, "total_usage": 7.0}})
    );

    assert!(sandbox.fake.add_usage("unknown", 1).is_err());
    assert!(sandbox.fake.add_usage(&capped, -1).is_err());
    let (status, _) = call(
        sandbox
            .control(Method::POST, "/_sandbox/openrouter/keys/unknown/usage")
            .json(&json!({"usd": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for bad in [
        json!({"usd": -1}),
        json!({}),
        json!({"usd": 1, "micro_usd": 1}),
        json!({"micro_usd": -5}),
        json!({"dollars": 1}),
    ] {
        let (status, body) = call(sandbox.control(Method::POST, &usage_url).json(&bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} → {body}");
    }
    let snapshots = sandbox.fake.keys();
    assert_eq!(snapshots[0].usage_micro_usd, 2_000_000);
    assert_eq!(snapshots[1].usage_micro_usd, 5_000_000);
    assert_eq!(sandbox.fake.credits().1, 7_000_000);
}

#[tokio::test]
async fn sandbox_openrouter_expired_keys_stay_manageable() {
    let sandbox = start().await;
    let (expired, _) = sandbox
        .create(json!({"name": "expired", "expires_at": "2020-01-01T00:00:00Z"}))
        .await;
    let hash = expired["hash"].as_str().expect("hash");
    assert_eq!(names(&sandbox.list("").await.1), ["expired"]);
    let (status, body) = sandbox.get_key(hash).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["expires_at"], "2020-01-01T00:00:00Z");
    let (status, _) = call(sandbox.api(Method::DELETE, &format!("/keys/{hash}"))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn sandbox_openrouter_scripted_faults_are_observed_exactly_as_scripted() {
    let sandbox = start().await;
    sandbox.faults.add_rule(rule(
        Some(CREDITS_ROUTE),
        FaultMode::Script {
            steps: vec![
                Some(Fault::RateLimited {
                    retry_after_secs: 2,
                }),
                Some(Fault::ServerError { status: 503 }),
                None,
            ],
        },
    ));
    let credits = || sandbox.api(Method::GET, "/credits").send();

    let first = credits().await.expect("answer");
    assert_eq!(first.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(first.headers()["retry-after"], "2");
    assert_eq!(
        read(first).await.1,
        json!({"error": {"code": 429, "message": "Rate limit exceeded"}})
    );
    // Another route neither sees nor consumes the script.
    assert_eq!(
        call(sandbox.api(Method::GET, "/key")).await.0,
        StatusCode::OK
    );

    let (status, body) = read(credits().await.expect("answer")).await;
    assert_error(status, &body, StatusCode::SERVICE_UNAVAILABLE);
    for _ in 0..2 {
        let (status, body) = read(credits().await.expect("answer")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["data"]["total_credits"], 500.0);
    }
    assert_eq!(
        sandbox.faults.request_counts()["openrouter"][CREDITS_ROUTE],
        4
    );
}

#[tokio::test]
async fn sandbox_openrouter_probability_one_always_fires_and_zero_never() {
    let sandbox = start().await;
    sandbox.faults.add_rule(rule(
        None,
        FaultMode::Probability {
            probability: 1.0,
            fault: Fault::ServerError { status: 500 },
        },
    ));
    for _ in 0..10 {
        let (status, body) = call(sandbox.api(Method::GET, "/credits")).await;
        assert_error(status, &body, StatusCode::INTERNAL_SERVER_ERROR);
    }
    sandbox.faults.clear(Some("openrouter"));
    sandbox.faults.add_rule(rule(
        None,
        FaultMode::Probability {
            probability: 0.0,
            fault: Fault::ServerError { status: 500 },
        },
    ));
    for _ in 0..10 {
        assert_eq!(
            call(sandbox.api(Method::GET, "/credits")).await.0,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn sandbox_openrouter_fixed_latency_delays_every_answer() {
    let sandbox = start().await;
    sandbox.faults.add_rule(FaultRule {
        fake: "openrouter".to_string(),
        route: None,
        latency: Some(Latency::Fixed { ms: 250 }),
        mode: None,
    });
    for _ in 0..2 {
        let started = Instant::now();
        let (status, _) = call(sandbox.api(Method::GET, "/credits")).await;
        assert_eq!(status, StatusCode::OK, "latency alone is not a fault");
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "{:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn sandbox_openrouter_hang_makes_the_client_time_out() {
    let sandbox = start().await;
    sandbox
        .faults
        .add_rule(rule(None, FaultMode::Always { fault: Fault::Hang }));
    let impatient = Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let error = impatient
        .get(format!("{}/credits", sandbox.api))
        .bearer_auth(MANAGEMENT_KEY)
        .send()
        .await
        .expect_err("a hung request times out");
    assert!(error.is_timeout(), "{error:?}");

    // The server is not wedged by the hanging request.
    sandbox.faults.clear(None);
    assert_eq!(
        call(sandbox.api(Method::GET, "/credits")).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn sandbox_openrouter_drop_connection_is_a_transport_error() {
    let sandbox = start().await;
    sandbox.faults.add_rule(rule(
        Some(CREDITS_ROUTE),
        FaultMode::Script {
            steps: vec![Some(Fault::DropConnection), Some(Fault::DropConnection)],
        },
    ));
    // Once on a fresh connection, once on a pooled one.
    assert_eq!(
        call(sandbox.api(Method::GET, "/key")).await.0,
        StatusCode::OK
    );
    for _ in 0..2 {
        let outcome = match sandbox.api(Method::GET, "/credits").send().await {
            Ok(response) => response.bytes().await.map(|_| ()),
            Err(error) => Err(error),
        };
        let error = outcome.expect_err("no HTTP response");
        assert!(!error.is_status() && !error.is_timeout(), "{error:?}");
    }
    assert_eq!(
        call(sandbox.api(Method::GET, "/credits")).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn sandbox_openrouter_malformed_json_does_not_parse() {
    let sandbox = start().await;
    sandbox.faults.add_rule(rule(
        None,
        FaultMode::Always {
            fault: Fault::MalformedJson,
        },
    ));
    let response = sandbox
        .api(Method::GET, "/credits")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let bytes = response.bytes().await.expect("body");
    assert!(
        serde_json::from_slice::<Value>(&bytes).is_err(),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
}

#[tokio::test]
async fn sandbox_openrouter_route_rules_override_fake_wide_rules() {
    let sandbox = start().await;
    // Added first: specificity decides, not order.
    sandbox.faults.add_rule(rule(
        None,
        FaultMode::Always {
            fault: Fault::ServerError { status: 500 },
        },
    ));
    sandbox.faults.add_rule(rule(
        Some(CREDITS_ROUTE),
        FaultMode::Always {
            fault: Fault::RateLimited {
                retry_after_secs: 7,
            },
        },
    ));
    sandbox.faults.add_rule(rule(
        Some("GET /api/v1/key"),
        FaultMode::Script { steps: vec![None] },
    ));
    // A latency-only route rule does not shadow the fake-wide fault.
    sandbox.faults.add_rule(FaultRule {
        fake: "openrouter".to_string(),
        route: Some("GET /api/v1/keys".to_string()),
        latency: Some(Latency::Fixed { ms: 1 }),
        mode: None,
    });

    let response = sandbox
        .api(Method::GET, "/credits")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(
        call(sandbox.api(Method::GET, "/key")).await.0,
        StatusCode::OK
    );
    let (status, body) = call(sandbox.api(Method::GET, "/keys")).await;
    assert_error(status, &body, StatusCode::INTERNAL_SERVER_ERROR);
    let (status, body) = call(sandbox.api(Method::GET, "/keys/abc")).await;
    assert_error(status, &body, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn sandbox_openrouter_requests_are_counted_per_route_template() {
    let sandbox = start().await;
    sandbox.faults.add_rule(rule(
        Some(CREDITS_ROUTE),
        FaultMode::Script {
            steps: vec![Some(Fault::ServerError { status: 502 })],
        },
    ));
    let (first, _) = sandbox.create(json!({"name": "a"})).await;
    let (second, _) = sandbox.create(json!({"name": "b"})).await;
    for key in [&first, &second] {
        sandbox.get_key(key["hash"].as_str().expect("hash")).await;
    }
    sandbox.list("").await;
    call(sandbox.api(Method::GET, "/credits")).await;
    call(sandbox.api(Method::GET, "/credits")).await;
    call(sandbox.api(Method::GET, "/nowhere")).await;
    // Unauthorised requests are requests too.
    call(sandbox.client.get(format!("{}/key", sandbox.api))).await;

    let expected: BTreeMap<String, u64> = [
        ("POST /api/v1/keys", 2),
        ("GET /api/v1/keys/{hash}", 2),
        ("GET /api/v1/keys", 1),
        (CREDITS_ROUTE, 2),
        ("GET /api/v1/nowhere", 1),
        ("GET /api/v1/key", 1),
    ]
    .into_iter()
    .map(|(route, count)| (route.to_string(), count))
    .collect();
    let counts = sandbox.faults.request_counts();
    assert_eq!(counts["openrouter"], expected);
    let (status, over_http) = call(sandbox.control(Method::GET, "/_sandbox/requests")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(over_http, json!({"openrouter": expected}));
}

#[tokio::test]
async fn sandbox_openrouter_control_routes_add_list_and_clear_rules() {
    let sandbox = start().await;
    let posted = json!({
        "fake": "openrouter",
        "route": CREDITS_ROUTE,
        "latency": {"kind": "uniform", "min_ms": 0, "max_ms": 5},
        "mode": {"mode": "script", "steps": [
            {"kind": "rate_limited", "retry_after_secs": 3},
            null,
        ]},
    });
    let (status, body) = call(
        sandbox
            .control(Method::POST, "/_sandbox/faults")
            .json(&posted),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, rules) = call(sandbox.control(Method::GET, "/_sandbox/faults")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rules, json!([posted]));
    assert_eq!(sandbox.faults.rules().len(), 1);

    let response = sandbox
        .api(Method::GET, "/credits")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "3");

    let bad_rules = [
        (
            json!({"fake": "openrouter", "mode": {"mode": "probability", "probability": 1.5,
                "fault": {"kind": "hang"}}}),
            "probability",
        ),
        (
            json!({"fake": "stripe", "mode": {"mode": "always", "fault": {"kind": "hang"}}}),
            "stripe",
        ),
        (
            json!({"fake": "openrouter", "mode": {"mode": "always", "fault": {"kind": "explode"}}}),
            "explode",
        ),
        (
            json!({"fake": "openrouter", "mode": {"mode": "always",
                "fault": {"kind": "server_error", "status": 200}}}),
            "status",
        ),
        (
            json!({"fake": "openrouter", "latency": {"kind": "uniform", "min_ms": 9, "max_ms": 1}}),
            "min_ms",
        ),
        (json!({"route": "GET /api/v1/key"}), "fake"),
    ];
    for (bad, mentions) in bad_rules {
        let (status, body) =
            call(sandbox.control(Method::POST, "/_sandbox/faults").json(&bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} → {body}");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains(mentions), "{bad} → {message}");
    }
    let (status, _) = call(
        sandbox
            .control(Method::POST, "/_sandbox/faults")
            .body("{nope"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(sandbox.faults.rules().len(), 1, "bad rules were not added");

    let (status, _) = call(sandbox.control(Method::DELETE, "/_sandbox/faults?fake=stripe")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = call(sandbox.control(Method::DELETE, "/_sandbox/faults?fake=bags")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"removed": 0})));
    let (status, body) =
        call(sandbox.control(Method::DELETE, "/_sandbox/faults?fake=openrouter")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"removed": 1})));
    assert_eq!(
        call(sandbox.control(Method::GET, "/_sandbox/faults"))
            .await
            .1,
        json!([])
    );
    assert_eq!(
        call(sandbox.api(Method::GET, "/credits")).await.0,
        StatusCode::OK
    );

    // DELETE without `fake` clears every fake's rules.
    for fake in ["bags", "rpc"] {
        sandbox.faults.add_rule(FaultRule {
            fake: fake.to_string(),
            route: None,
            latency: None,
            mode: Some(FaultMode::Always { fault: Fault::Hang }),
        });
    }
    let (status, body) = call(sandbox.control(Method::DELETE, "/_sandbox/faults")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"removed": 2})));
    assert!(sandbox.faults.rules().is_empty());
}
