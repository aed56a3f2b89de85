//! The OpenRouter management API fake (`/api/v1/keys*`, `/key`, `/credits`, `/credits/coinbase`)
//! as external-apis.md §3 documents it, with test hooks to add usage and set the account's credits.
//!
//! Amounts are integer micro-USD inside; floats appear only when a JSON body is read or written.
//! Like the real service it keeps no plaintext key: the `sk-or-v1-…` secret is returned once by
//! `POST /keys` and only its hash and masked label are stored.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post, put};
use chrono::{DateTime, Datelike, SecondsFormat, SubsecRound, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Keys per `GET /keys` page ("the most recent 100").
pub const PAGE_SIZE: usize = 100;

const MICROS_PER_USD: f64 = 1_000_000.0;

/// The largest USD amount accepted from JSON (far above any real limit; keeps `usd × 10⁶` exact in
/// an `f64` and far inside `i64`).
const MAX_USD: f64 = 1_000_000_000.0;

/// When a key's `limit` resets (midnight UTC; weeks run Monday–Sunday).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitReset {
    Daily,
    Weekly,
    Monthly,
}

impl LimitReset {
    fn parse(value: &str) -> Option<Self> {
        match value {
            "daily" => Some(Self::Daily),
            "weekly" => Some(Self::Weekly),
            "monthly" => Some(Self::Monthly),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
        }
    }
}

/// What a test can read about one key (what the real service would show, in micro-USD).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeySnapshot {
    pub hash: String,
    pub name: String,
    /// The masked preview (`sk-or-v1-abc...f90`), never the secret.
    pub label: String,
    pub disabled: bool,
    pub limit_micro_usd: Option<i64>,
    /// `limit − usage in the current reset period`, floored at 0; `None` without a limit.
    pub limit_remaining_micro_usd: Option<i64>,
    pub limit_reset: Option<LimitReset>,
    pub usage_micro_usd: i64,
    pub usage_daily_micro_usd: i64,
    pub usage_weekly_micro_usd: i64,
    pub usage_monthly_micro_usd: i64,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// The fake: one OpenRouter account with its management key, credits and keys.
#[derive(Clone)]
pub struct OpenRouterFake {
    account: Arc<Mutex<Account>>,
}

struct Account {
    management_key: String,
    /// The id of the default workspace, where keys go unless `workspace_id` says otherwise.
    workspace_id: String,
    total_credits: i64,
    total_usage: i64,
    /// In creation order (newest last).
    keys: Vec<StoredKey>,
}

struct StoredKey {
    hash: String,
    name: String,
    label: String,
    disabled: bool,
    limit: Option<i64>,
    limit_reset: Option<LimitReset>,
    include_byok_in_limit: bool,
    /// Every usage addition with its time, so the daily/weekly/monthly windows roll over as the
    /// calendar does rather than when someone remembers to reset a counter.
    usage_events: Vec<(DateTime<Utc>, i64)>,
    usage_total: i64,
    created_at: DateTime<Utc>,
    updated_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    creator_user_id: Option<String>,
    workspace_id: String,
}

#[derive(Clone, Copy)]
enum Window {
    Day,
    Week,
    Month,
}

/// Whether `at` falls in the same UTC calendar day / Monday–Sunday week / month as `now`.
fn in_window(at: DateTime<Utc>, now: DateTime<Utc>, window: Window) -> bool {
    match window {
        Window::Day => at.date_naive() == now.date_naive(),
        Window::Week => at.iso_week() == now.iso_week(),
        Window::Month => at.year() == now.year() && at.month() == now.month(),
    }
}

impl StoredKey {
    fn usage_in(&self, window: Window, now: DateTime<Utc>) -> i64 {
        self.usage_events
            .iter()
            .filter(|(at, _)| in_window(*at, now, window))
            .map(|(_, micro_usd)| *micro_usd)
            .sum()
    }

    /// `limit − usage of the current reset period` (all usage without a reset).
    ///
    /// OpenRouter lets the request that crosses the limit finish, so usage can exceed the limit;
    /// the documented field is "remaining", which we floor at 0 rather than report a negative
    /// allowance (a client must not read it as credit owed back).
    fn limit_remaining(&self, now: DateTime<Utc>) -> Option<i64> {
        let limit = self.limit?;
        let used = match self.limit_reset {
            None => self.usage_total,
            Some(LimitReset::Daily) => self.usage_in(Window::Day, now),
            Some(LimitReset::Weekly) => self.usage_in(Window::Week, now),
            Some(LimitReset::Monthly) => self.usage_in(Window::Month, now),
        };
        Some(limit.saturating_sub(used).max(0))
    }

    /// The key object of §3.3 (`data` of list/get/create/patch). BYOK usage is always 0: the
    /// fake has no bring-your-own-key traffic.
    fn to_json(&self, now: DateTime<Utc>) -> Value {
        json!({
            "hash": self.hash,
            "name": self.name,
            "label": self.label,
            "disabled": self.disabled,
            "limit": self.limit.map(usd),
            "limit_remaining": self.limit_remaining(now).map(usd),
            "limit_reset": self.limit_reset.map(LimitReset::as_str),
            "include_byok_in_limit": self.include_byok_in_limit,
            "usage": usd(self.usage_total),
            "usage_daily": usd(self.usage_in(Window::Day, now)),
            "usage_weekly": usd(self.usage_in(Window::Week, now)),
            "usage_monthly": usd(self.usage_in(Window::Month, now)),
            "byok_usage": 0.0,
            "byok_usage_daily": 0.0,
            "byok_usage_weekly": 0.0,
            "byok_usage_monthly": 0.0,
            "created_at": timestamp(self.created_at),
            "updated_at": self.updated_at.map(timestamp),
            "creator_user_id": self.creator_user_id,
            "workspace_id": self.workspace_id,
            "expires_at": self.expires_at.map(timestamp),
        })
    }

    fn snapshot(&self, now: DateTime<Utc>) -> KeySnapshot {
        KeySnapshot {
            hash: self.hash.clone(),
            name: self.name.clone(),
            label: self.label.clone(),
            disabled: self.disabled,
            limit_micro_usd: self.limit,
            limit_remaining_micro_usd: self.limit_remaining(now),
            limit_reset: self.limit_reset,
            usage_micro_usd: self.usage_total,
            usage_daily_micro_usd: self.usage_in(Window::Day, now),
            usage_weekly_micro_usd: self.usage_in(Window::Week, now),
            usage_monthly_micro_usd: self.usage_in(Window::Month, now),
            expires_at: self.expires_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Micro-USD as the USD float OpenRouter's JSON carries.
fn usd(micro_usd: i64) -> f64 {
    micro_usd as f64 / MICROS_PER_USD
}

/// A USD float from JSON as micro-USD, rounded to the nearest micro-dollar (half away from zero);
/// `None` when negative, not finite or absurdly large.
fn micro_usd_from_usd(value: f64) -> Option<i64> {
    if !value.is_finite() || !(0.0..=MAX_USD).contains(&value) {
        return None;
    }
    // In range by the check above: at most 10¹⁵, exact in both f64 and i64.
    Some((value * MICROS_PER_USD).round() as i64)
}

/// ISO-8601 in UTC with a `Z`, milliseconds only when there are some.
fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// `expires_at` must be an RFC 3339 timestamp in UTC: ending in `Z` or `+00:00` (OpenRouter
/// rejects other offsets even when they denote the same instant).
fn parse_utc(value: &str) -> Option<DateTime<Utc>> {
    let utc = value.ends_with('Z') || value.ends_with('z') || value.ends_with("+00:00");
    if !utc {
        return None;
    }
    DateTime::parse_from_rfc3339(value)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buffer);
    buffer.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `sk-or-v1-abc...f90`: enough to recognise a key, useless to an attacker.
fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    let prefix = if secret.starts_with("sk-or-v1-") {
        12
    } else {
        3
    };
    if chars.len() < prefix + 6 {
        return "***".to_string();
    }
    let head: String = chars[..prefix].iter().collect();
    let tail: String = chars[chars.len() - 3..].iter().collect();
    format!("{head}...{tail}")
}

/// An OpenRouter error: `{"error":{"code":<status>,"message":…}}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.status.as_u16(), "message": self.message}})),
        )
            .into_response()
    }
}

fn error(status: StatusCode, message: &str) -> ApiError {
    ApiError {
        status,
        message: message.to_string(),
    }
}

fn bad_request(message: &str) -> ApiError {
    error(StatusCode::BAD_REQUEST, message)
}

fn not_found() -> ApiError {
    error(StatusCode::NOT_FOUND, "Resource not found")
}

/// The sandbox control API's error shape (the daemon's `{"error":{"code","message"}}`).
fn control_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// A JSON object body, or the 400 to send.
fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(bad_request("Request body must be a JSON object")),
        Err(parse) => Err(bad_request(&format!("Invalid JSON body: {parse}"))),
    }
}

/// `limit`: a non-negative USD number or null.
fn parse_limit(value: &Value) -> Result<Option<i64>, ApiError> {
    match value {
        Value::Null => Ok(None),
        Value::Number(number) => number
            .as_f64()
            .and_then(micro_usd_from_usd)
            .map(Some)
            .ok_or_else(|| bad_request("limit must be a non-negative number of USD or null")),
        _ => Err(bad_request(
            "limit must be a non-negative number of USD or null",
        )),
    }
}

fn parse_limit_reset(value: &Value) -> Result<Option<LimitReset>, ApiError> {
    let invalid = || bad_request("limit_reset must be one of daily, weekly, monthly or null");
    match value {
        Value::Null => Ok(None),
        Value::String(text) => LimitReset::parse(text).map(Some).ok_or_else(invalid),
        _ => Err(invalid()),
    }
}

fn parse_bool(value: &Value, field: &str) -> Result<bool, ApiError> {
    value
        .as_bool()
        .ok_or_else(|| bad_request(&format!("{field} must be a boolean")))
}

fn parse_name(value: &Value) -> Result<String, ApiError> {
    match value.as_str() {
        Some(name) if !name.trim().is_empty() => Ok(name.to_string()),
        _ => Err(bad_request("name must be a non-empty string")),
    }
}

/// Validated `POST /keys` body.
struct NewKey {
    name: String,
    limit: Option<i64>,
    limit_reset: Option<LimitReset>,
    include_byok_in_limit: bool,
    expires_at: Option<DateTime<Utc>>,
    workspace_id: Option<String>,
    creator_user_id: Option<String>,
}

impl NewKey {
    fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let object = json_object(body)?;
        let field = |name: &str| object.get(name).unwrap_or(&Value::Null);
        let name = match object.get("name") {
            None | Some(Value::Null) => return Err(bad_request("name is required")),
            Some(value) => parse_name(value)?,
        };
        let include_byok_in_limit = match field("include_byok_in_limit") {
            Value::Null => false,
            value => parse_bool(value, "include_byok_in_limit")?,
        };
        let expires_at = match field("expires_at") {
            Value::Null => None,
            value => Some(value.as_str().and_then(parse_utc).ok_or_else(|| {
                bad_request(
                    "expires_at must be an ISO-8601 timestamp in UTC (ending in Z or +00:00) or null",
                )
            })?),
        };
        let workspace_id = match field("workspace_id") {
            Value::Null => None,
            value => Some(
                value
                    .as_str()
                    .and_then(|text| uuid::Uuid::parse_str(text).ok())
                    .map(|id| id.to_string())
                    .ok_or_else(|| bad_request("workspace_id must be a UUID"))?,
            ),
        };
        let creator_user_id = match field("creator_user_id") {
            Value::Null => None,
            Value::String(id) => Some(id.clone()),
            _ => return Err(bad_request("creator_user_id must be a string or null")),
        };
        Ok(Self {
            name,
            limit: parse_limit(field("limit"))?,
            limit_reset: parse_limit_reset(field("limit_reset"))?,
            include_byok_in_limit,
            expires_at,
            workspace_id,
            creator_user_id,
        })
    }
}

/// Validated `PATCH /keys/{hash}` body: only what is present changes.
#[derive(Default)]
struct KeyUpdate {
    name: Option<String>,
    disabled: Option<bool>,
    limit: Option<Option<i64>>,
    limit_reset: Option<Option<LimitReset>>,
    include_byok_in_limit: Option<bool>,
}

impl KeyUpdate {
    fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let object = json_object(body)?;
        if object.contains_key("expires_at") {
            return Err(bad_request(
                "expires_at cannot be updated; create a new key with the new expiry and delete this one",
            ));
        }
        let mut update = Self::default();
        if let Some(value) = object.get("name") {
            update.name = Some(parse_name(value)?);
        }
        if let Some(value) = object.get("disabled") {
            update.disabled = Some(parse_bool(value, "disabled")?);
        }
        if let Some(value) = object.get("limit") {
            update.limit = Some(parse_limit(value)?);
        }
        if let Some(value) = object.get("limit_reset") {
            update.limit_reset = Some(parse_limit_reset(value)?);
        }
        if let Some(value) = object.get("include_byok_in_limit") {
            update.include_byok_in_limit = Some(parse_bool(value, "include_byok_in_limit")?);
        }
        Ok(update)
    }

    fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.disabled.is_none()
            && self.limit.is_none()
            && self.limit_reset.is_none()
            && self.include_byok_in_limit.is_none()
    }
}

/// Validated `GET /keys` query.
struct ListQuery {
    offset: usize,
    include_disabled: bool,
    workspace_id: Option<String>,
}

impl ListQuery {
    fn parse(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let mut query = Self {
            offset: 0,
            include_disabled: false,
            workspace_id: None,
        };
        for (name, value) in pairs {
            match name.as_str() {
                "offset" => {
                    query.offset = value.parse::<usize>().map_err(|_| {
                        bad_request("offset must be an integer greater than or equal to 0")
                    })?;
                }
                "include_disabled" => {
                    query.include_disabled = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(bad_request(
                                "include_disabled must be \"true\" or \"false\"",
                            ));
                        }
                    };
                }
                "workspace_id" => {
                    let id = uuid::Uuid::parse_str(value)
                        .map_err(|_| bad_request("workspace_id must be a UUID"))?;
                    query.workspace_id = Some(id.to_string());
                }
                _ => {}
            }
        }
        Ok(query)
    }
}

impl OpenRouterFake {
    pub fn new(management_key: String, total_credits_micro_usd: i64) -> Self {
        Self {
            account: Arc::new(Mutex::new(Account {
                management_key,
                workspace_id: uuid::Uuid::new_v4().to_string(),
                total_credits: total_credits_micro_usd,
                total_usage: 0,
                keys: Vec::new(),
            })),
        }
    }

    fn account(&self) -> MutexGuard<'_, Account> {
        // Every mutation completes under the lock without panicking paths; a poisoned lock
        // still holds consistent data.
        self.account.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The management API under `/api/v1` (serve it at the root of a loopback server).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/v1/keys", get(list_keys).post(create_key))
            .route(
                "/api/v1/keys/{hash}",
                get(get_key).patch(update_key).delete(delete_key),
            )
            .route("/api/v1/key", get(current_key))
            .route("/api/v1/credits", get(get_credits))
            .route("/api/v1/credits/coinbase", post(coinbase))
            .fallback(|| async { error(StatusCode::NOT_FOUND, "Not Found") })
            .method_not_allowed_fallback(|| async {
                error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
            })
            .with_state(self.clone())
    }

    /// Test hook: records `micro_usd` of spend on the key now (usage, the daily/weekly/monthly
    /// windows and the account's `total_usage`). Works on disabled and expired keys too: a request
    /// in flight when a key is disabled still gets billed.
    pub fn add_usage(&self, hash: &str, micro_usd: i64) -> Result<(), String> {
        if micro_usd < 0 {
            return Err(format!(
                "usage must not be negative, got {micro_usd} micro-USD"
            ));
        }
        let now = Utc::now();
        let mut account = self.account();
        let key = account
            .keys
            .iter_mut()
            .find(|key| key.hash == hash)
            .ok_or_else(|| format!("no key with hash {hash}"))?;
        key.usage_events.push((now, micro_usd));
        key.usage_total = key.usage_total.saturating_add(micro_usd);
        account.total_usage = account.total_usage.saturating_add(micro_usd);
        Ok(())
    }

    /// Test hook: the account's `total_credits` and `total_usage`, in micro-USD.
    pub fn set_credits(&self, total_credits_micro_usd: i64, total_usage_micro_usd: i64) {
        let mut account = self.account();
        account.total_credits = total_credits_micro_usd;
        account.total_usage = total_usage_micro_usd;
    }

    /// Every live key (deleted ones are gone), oldest first.
    pub fn keys(&self) -> Vec<KeySnapshot> {
        let now = Utc::now();
        self.account()
            .keys
            .iter()
            .map(|key| key.snapshot(now))
            .collect()
    }

    /// `(total_credits, total_usage)` in micro-USD.
    pub fn credits(&self) -> (i64, i64) {
        let account = self.account();
        (account.total_credits, account.total_usage)
    }

    /// `GET /_sandbox/openrouter/keys`, `POST /_sandbox/openrouter/keys/{hash}/usage` (body
    /// `{"usd": 1.25}` or `{"micro_usd": 1250000}`), `GET`/`PUT /_sandbox/openrouter/credits`
    /// (body `{"total_credits": f64, "total_usage": f64}` in USD), for the control server.
    pub fn control_routes(&self) -> Router {
        Router::new()
            .route("/_sandbox/openrouter/keys", get(control_keys))
            .route(
                "/_sandbox/openrouter/keys/{hash}/usage",
                post(control_usage),
            )
            .route(
                "/_sandbox/openrouter/credits",
                put(control_set_credits).get(control_credits),
            )
            .with_state(self.clone())
    }

    /// 401 unless `Authorization: Bearer <management key>`.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(error(StatusCode::UNAUTHORIZED, "No auth credentials found"));
        };
        let presented = value
            .to_str()
            .ok()
            .and_then(|text| text.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        match presented {
            Some(token) if token == self.account().management_key => Ok(()),
            Some(_) => Err(error(
                StatusCode::UNAUTHORIZED,
                "Invalid or unknown management key",
            )),
            None => Err(error(
                StatusCode::UNAUTHORIZED,
                "Authorization header must be \"Bearer <key>\"",
            )),
        }
    }
}

type Fake = State<OpenRouterFake>;

/// `GET /api/v1/keys`: newest first, 100 per page from `offset`, disabled keys only with
/// `include_disabled=true`, the default workspace unless `workspace_id` names another.
async fn list_keys(
    State(fake): Fake,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    fake.authorize(&headers)?;
    let Query(pairs) = query.map_err(|rejection| bad_request(&rejection.body_text()))?;
    let query = ListQuery::parse(&pairs)?;
    let now = Utc::now();
    let account = fake.account();
    let workspace = query
        .workspace_id
        .as_deref()
        .unwrap_or(&account.workspace_id);
    let page: Vec<Value> = account
        .keys
        .iter()
        .rev()
        .filter(|key| key.workspace_id == workspace)
        .filter(|key| query.include_disabled || !key.disabled)
        .skip(query.offset)
        .take(PAGE_SIZE)
        .map(|key| key.to_json(now))
        .collect();
    Ok(Json(json!({"data": page})).into_response())
}

/// `POST /api/v1/keys`: 201 with the key object and the one-time plaintext `key`.
async fn create_key(
    State(fake): Fake,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    fake.authorize(&headers)?;
    let new = NewKey::parse(&body)?;
    let secret = format!("sk-or-v1-{}", random_hex(32));
    // Millisecond precision, as stored timestamps usually are.
    let now = Utc::now().trunc_subsecs(3);
    let mut account = fake.account();
    let key = StoredKey {
        hash: random_hex(32),
        name: new.name,
        label: mask(&secret),
        disabled: false,
        limit: new.limit,
        limit_reset: new.limit_reset,
        include_byok_in_limit: new.include_byok_in_limit,
        usage_events: Vec::new(),
        usage_total: 0,
        created_at: now,
        updated_at: None,
        expires_at: new.expires_at,
        creator_user_id: new.creator_user_id,
        workspace_id: new
            .workspace_id
            .unwrap_or_else(|| account.workspace_id.clone()),
    };
    let data = key.to_json(now);
    account.keys.push(key);
    Ok((
        StatusCode::CREATED,
        Json(json!({"data": data, "key": secret})),
    )
        .into_response())
}

/// The `{hash}` segment, or the 400 to send when it cannot be decoded.
fn hash_of(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(hash)| hash)
        .map_err(|rejection| bad_request(&rejection.body_text()))
}

/// `GET /api/v1/keys/{hash}`.
async fn get_key(
    State(fake): Fake,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    fake.authorize(&headers)?;
    let hash = hash_of(path)?;
    let account = fake.account();
    match account.keys.iter().find(|key| key.hash == hash) {
        Some(key) => Ok(Json(json!({"data": key.to_json(Utc::now())})).into_response()),
        None => Err(not_found()),
    }
}

/// `PATCH /api/v1/keys/{hash}`: partial update; `expires_at` is not updatable.
async fn update_key(
    State(fake): Fake,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    fake.authorize(&headers)?;
    let hash = hash_of(path)?;
    let update = KeyUpdate::parse(&body)?;
    let now = Utc::now();
    let mut account = fake.account();
    let Some(key) = account.keys.iter_mut().find(|key| key.hash == hash) else {
        return Err(not_found());
    };
    if !update.is_empty() {
        key.updated_at = Some(now.trunc_subsecs(3));
    }
    if let Some(name) = update.name {
        key.name = name;
    }
    if let Some(disabled) = update.disabled {
        key.disabled = disabled;
    }
    if let Some(limit) = update.limit {
        key.limit = limit;
    }
    if let Some(limit_reset) = update.limit_reset {
        key.limit_reset = limit_reset;
    }
    if let Some(include) = update.include_byok_in_limit {
        key.include_byok_in_limit = include;
    }
    Ok(Json(json!({"data": key.to_json(now)})).into_response())
}

/// `DELETE /api/v1/keys/{hash}`: `{"deleted": true}`; the key is gone afterwards.
async fn delete_key(
    State(fake): Fake,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    fake.authorize(&headers)?;
    let hash = hash_of(path)?;
    let mut account = fake.account();
    let before = account.keys.len();
    account.keys.retain(|key| key.hash != hash);
    if account.keys.len() == before {
        return Err(not_found());
    }
    Ok(Json(json!({"deleted": true})).into_response())
}

/// `GET /api/v1/key`: the `CurrentKey` of the management key (which spends nothing itself).
async fn current_key(State(fake): Fake, headers: HeaderMap) -> Result<Response, ApiError> {
    fake.authorize(&headers)?;
    let label = mask(&fake.account().management_key);
    Ok(Json(json!({"data": {
        "label": label,
        "limit": null,
        "limit_remaining": null,
        "limit_reset": null,
        "include_byok_in_limit": false,
        "usage": 0.0,
        "usage_daily": 0.0,
        "usage_weekly": 0.0,
        "usage_monthly": 0.0,
        "byok_usage": 0.0,
        "byok_usage_daily": 0.0,
        "byok_usage_weekly": 0.0,
        "byok_usage_monthly": 0.0,
        "is_free_tier": false,
        "is_management_key": true,
        "is_provisioning_key": true,
        "creator_user_id": null,
        "expires_at": null,
        "rate_limit": {
            "interval": "10s",
            "note": "This field is deprecated and safe to ignore.",
            "requests": -1,
        },
    }}))
    .into_response())
}

/// `GET /api/v1/credits`: the configured totals in USD.
async fn get_credits(State(fake): Fake, headers: HeaderMap) -> Result<Response, ApiError> {
    fake.authorize(&headers)?;
    let (total_credits, total_usage) = fake.credits();
    Ok(Json(json!({"data": {
        "total_credits": usd(total_credits),
        "total_usage": usd(total_usage),
    }}))
    .into_response())
}

/// `POST /api/v1/credits/coinbase`: gone since Coinbase retired the Commerce APIs.
async fn coinbase(State(fake): Fake, headers: HeaderMap) -> Result<Response, ApiError> {
    fake.authorize(&headers)?;
    Err(error(
        StatusCode::GONE,
        "Coinbase has deprecated the Commerce APIs; this endpoint is gone. \
         Buy credits at https://openrouter.ai/settings/credits",
    ))
}

async fn control_keys(State(fake): Fake) -> Json<Vec<KeySnapshot>> {
    Json(fake.keys())
}

/// Body of `POST /_sandbox/openrouter/keys/{hash}/usage`: exactly one of the two.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageBody {
    usd: Option<f64>,
    micro_usd: Option<i64>,
}

async fn control_usage(
    State(fake): Fake,
    path: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Response {
    let hash = match path {
        Ok(Path(hash)) => hash,
        Err(rejection) => {
            return control_error(
                StatusCode::BAD_REQUEST,
                "invalid_path",
                &rejection.body_text(),
            );
        }
    };
    let invalid = |message: &str| control_error(StatusCode::BAD_REQUEST, "invalid_usage", message);
    let body: UsageBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(parse) => {
            return invalid(&format!(
                "expected {{\"usd\": <number>}} or {{\"micro_usd\": <integer>}}: {parse}"
            ));
        }
    };
    let micro_usd = match (body.usd, body.micro_usd) {
        (Some(usd), None) => match micro_usd_from_usd(usd) {
            Some(micro_usd) => micro_usd,
            None => return invalid("usd must be a non-negative, finite number"),
        },
        (None, Some(micro_usd)) if micro_usd >= 0 => micro_usd,
        (None, Some(_)) => return invalid("micro_usd must not be negative"),
        _ => return invalid("give exactly one of usd and micro_usd"),
    };
    // The amount is valid by now, so the only way to fail is an unknown (or deleted) key.
    let snapshot = fake.add_usage(&hash, micro_usd).and_then(|()| {
        fake.keys()
            .into_iter()
            .find(|key| key.hash == hash)
            .ok_or_else(|| format!("no key with hash {hash}"))
    });
    match snapshot {
        Ok(key) => Json(key).into_response(),
        Err(message) => control_error(StatusCode::NOT_FOUND, "key_not_found", &message),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreditsBody {
    total_credits: f64,
    total_usage: f64,
}

fn credits_json(fake: &OpenRouterFake) -> Json<Value> {
    let (total_credits, total_usage) = fake.credits();
    Json(json!({
        "total_credits": usd(total_credits),
        "total_usage": usd(total_usage),
        "total_credits_micro_usd": total_credits,
        "total_usage_micro_usd": total_usage,
    }))
}

async fn control_credits(State(fake): Fake) -> Json<Value> {
    credits_json(&fake)
}

async fn control_set_credits(State(fake): Fake, body: Bytes) -> Response {
    let invalid =
        |message: &str| control_error(StatusCode::BAD_REQUEST, "invalid_credits", message);
    let body: CreditsBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(parse) => {
            return invalid(&format!(
                "expected {{\"total_credits\": <usd>, \"total_usage\": <usd>}}: {parse}"
            ));
        }
    };
    match (
        micro_usd_from_usd(body.total_credits),
        micro_usd_from_usd(body.total_usage),
    ) {
        (Some(total_credits), Some(total_usage)) => {
            fake.set_credits(total_credits, total_usage);
            credits_json(&fake).into_response()
        }
        _ => invalid("total_credits and total_usage must be non-negative, finite USD amounts"),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .expect("valid test date")
    }

    #[test]
    fn windows_follow_the_utc_calendar_with_monday_weeks() {
        // 2026-03-01 is a Sunday; 2026-03-02 a Monday.
        let sunday = at(2026, 3, 1, 23);
        let monday = at(2026, 3, 2, 0);
        assert!(!in_window(sunday, monday, Window::Week));
        assert!(in_window(monday, at(2026, 3, 8, 23), Window::Week));
        assert!(!in_window(sunday, monday, Window::Day));
        assert!(!in_window(at(2026, 2, 28, 12), sunday, Window::Month));
        assert!(in_window(sunday, at(2026, 3, 31, 23), Window::Month));
        // Same week number, different year.
        assert!(!in_window(at(2025, 3, 2, 0), monday, Window::Week));
    }

    #[test]
    fn limit_remaining_uses_the_reset_period_and_never_goes_negative() {
        let now = at(2026, 3, 4, 12);
        let mut key = StoredKey {
            hash: "h".into(),
            name: "n".into(),
            label: "l".into(),
            disabled: false,
            limit: Some(10_000_000),
            limit_reset: Some(LimitReset::Daily),
            include_byok_in_limit: false,
            usage_events: vec![(at(2026, 3, 3, 12), 4_000_000), (now, 1_500_000)],
            usage_total: 5_500_000,
            created_at: now,
            updated_at: None,
            expires_at: None,
            creator_user_id: None,
            workspace_id: "w".into(),
        };
        assert_eq!(key.limit_remaining(now), Some(8_500_000));
        key.limit_reset = Some(LimitReset::Weekly);
        assert_eq!(key.limit_remaining(now), Some(4_500_000));
        key.limit_reset = None;
        assert_eq!(key.limit_remaining(now), Some(4_500_000));
        key.usage_events.push((now, 20_000_000));
        key.usage_total += 20_000_000;
        assert_eq!(key.limit_remaining(now), Some(0));
        key.limit = None;
        assert_eq!(key.limit_remaining(now), None);
    }

    #[test]
    fn usd_conversion_rounds_to_the_micro_dollar_and_rejects_nonsense() {
        assert_eq!(micro_usd_from_usd(1.25), Some(1_250_000));
        assert_eq!(micro_usd_from_usd(0.1 + 0.2), Some(300_000));
        assert_eq!(micro_usd_from_usd(0.000_000_5), Some(1));
        assert_eq!(micro_usd_from_usd(-0.01), None);
        assert_eq!(micro_usd_from_usd(f64::NAN), None);
        assert_eq!(micro_usd_from_usd(1e12), None);
    }

    #[test]
    fn expires_at_must_say_utc() {
        assert!(parse_utc("2030-01-01T00:00:00Z").is_some());
        assert!(parse_utc("2030-01-01T00:00:00.250+00:00").is_some());
        assert!(parse_utc("2030-01-01T02:00:00+02:00").is_none());
        assert!(parse_utc("2030-01-01T00:00:00").is_none());
        assert!(parse_utc("2030-01-01").is_none());
        assert!(parse_utc("soon Z").is_none());
    }

    #[test]
    fn masks_keep_only_a_recognisable_preview() {
        let secret = format!("sk-or-v1-{}", "ab".repeat(32));
        assert_eq!(mask(&secret), "sk-or-v1-aba...bab");
        assert_eq!(mask("short"), "***");
    }
}
