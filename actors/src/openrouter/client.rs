//! The OpenRouter management API client: typed requests and responses, dollars converted to
//! integer micro-USD at this boundary, errors mapped from `{"error":{"code","message"}}`.
//!
//! It covers `GET /credits` and the key endpoints of external-apis.md §3 (list with `offset`
//! pagination, get, create, patch, delete). Responses are read leniently (extra fields ignored,
//! numbers accepted as JSON numbers or numeric strings, nulls tolerated where they can mean
//! "nothing"), requests are written strictly (limits in whole cents, `expires_at` in UTC `…Z`).
//!
//! Secrets: the management key goes only into the `Authorization` header, and the one-time
//! plaintext key of `POST /keys` is wrapped in [`Secret`] the moment it is read. Neither appears in
//! an error or a log line: error messages from the service are scrubbed of the management key,
//! and no response body is ever logged.

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::http::parse_retry_after;
use crate::resilience::{Classify, Transience};
use crate::secret::Secret;

/// Keys per `GET /keys` page: OpenRouter returns "the most recent 100" from `offset`.
pub const KEYS_PAGE_SIZE: usize = 100;

/// Longest service error message kept in an error (they end up in logs and health reports).
const MAX_MESSAGE_CHARS: usize = 300;

const MICROS_PER_CENT: i64 = 10_000;

/// The management API, authenticated with the management key.
#[derive(Clone)]
pub struct OpenRouterClient {
    http: reqwest::Client,
    base_url: String,
    management_key: Secret,
}

/// The account's credits, in micro-USD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credits {
    pub total_credits_micro_usd: i64,
    pub total_usage_micro_usd: i64,
}

impl Credits {
    /// What the account can still spend: `total_credits − total_usage`.
    pub fn balance_micro_usd(&self) -> i64 {
        self.total_credits_micro_usd - self.total_usage_micro_usd
    }
}

/// When a key's limit becomes spendable again (midnight UTC; weeks run Monday–Sunday).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitReset {
    Daily,
    Weekly,
    Monthly,
}

impl LimitReset {
    /// `daily`, `weekly`, `monthly`: the API's spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
        }
    }

    /// The API's spelling back; `None` for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "daily" => Some(Self::Daily),
            "weekly" => Some(Self::Weekly),
            "monthly" => Some(Self::Monthly),
            _ => None,
        }
    }
}

/// A key as the management API describes it (§3.3), money in micro-USD.
///
/// It holds no secret: `label` is OpenRouter's masked preview and `hash` an identifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub hash: String,
    pub name: String,
    pub label: String,
    pub disabled: bool,
    /// `None`: no limit.
    pub limit_micro_usd: Option<i64>,
    /// `limit − usage of the current reset period`; `None` without a limit.
    pub limit_remaining_micro_usd: Option<i64>,
    /// `None`: the limit never resets (credits mode).
    pub limit_reset: Option<LimitReset>,
    pub include_byok_in_limit: bool,
    /// OpenRouter credits spent through this key, all time.
    pub usage_micro_usd: i64,
    pub usage_daily_micro_usd: i64,
    pub usage_weekly_micro_usd: i64,
    pub usage_monthly_micro_usd: i64,
    /// External (bring-your-own-key) spend, reported apart from credits.
    pub byok_usage_micro_usd: i64,
    pub byok_usage_daily_micro_usd: i64,
    pub byok_usage_weekly_micro_usd: i64,
    pub byok_usage_monthly_micro_usd: i64,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    /// `None`: never expires.
    pub expires_at: Option<DateTime<Utc>>,
    pub creator_user_id: Option<String>,
    pub workspace_id: Option<String>,
}

/// `POST /keys`. Limits are in micro-USD and must be whole cents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateKey {
    pub name: String,
    /// `None`: no limit.
    pub limit_micro_usd: Option<i64>,
    /// `None`: never resets.
    pub limit_reset: Option<LimitReset>,
    /// `None`: never expires. Sent as UTC (`…Z`), the only form OpenRouter accepts.
    pub expires_at: Option<DateTime<Utc>>,
    /// `None`: OpenRouter's default (false).
    pub include_byok_in_limit: Option<bool>,
}

/// What `POST /keys` returns: the key and its one-time plaintext.
///
/// `Debug` shows `Secret(***)` for the plaintext.
#[derive(Clone, Debug)]
pub struct CreatedKey {
    pub key: Key,
    /// The `sk-or-v1-…` key; OpenRouter never shows it again.
    pub plaintext: Secret,
}

/// `PATCH /keys/{hash}`: only the fields that are `Some` are sent. `expires_at` cannot be patched
/// (OpenRouter refuses it): changing an expiry means a new key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyUpdate {
    pub name: Option<String>,
    pub disabled: Option<bool>,
    /// `Some(None)` removes the limit; `Some(Some(n))` sets it to `n` micro-USD (whole cents).
    pub limit_micro_usd: Option<Option<i64>>,
    /// `Some(None)` makes the limit non-resetting.
    pub limit_reset: Option<Option<LimitReset>>,
    pub include_byok_in_limit: Option<bool>,
}

#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum OpenRouterError {
    #[error("openrouter request timed out")]
    Timeout,
    /// The connection could not be made: the request was never sent.
    #[error("openrouter unreachable: {0}")]
    Connect(String),
    /// Any other answer that is not a success (4xx except 429). Permanent.
    #[error("openrouter answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("openrouter response not understood: {0}")]
    Decode(String),
    /// 429, with the service's `Retry-After` when it gave one.
    #[error("openrouter rate limited the request: {message}")]
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
    },
    /// 5xx (and 408): the service failed or is overloaded; it may say when to come back.
    #[error("openrouter answered {status}: {message}")]
    ServerError {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The connection broke after the request may have been sent (reset, closed mid-response).
    #[error("openrouter connection failed: {0}")]
    Interrupted(String),
    /// We refused to send the request (e.g. a limit that is not whole cents). Nothing was sent.
    #[error("invalid openrouter request: {0}")]
    InvalidRequest(String),
}

impl OpenRouterError {
    /// The HTTP status the service answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } | Self::ServerError { status, .. } => Some(*status),
            Self::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    /// Whether repeating the request cannot have a side effect twice: the first one certainly
    /// did not reach the service (no connection) or was refused before it was processed (429).
    /// Timeouts, broken connections and 5xx are ambiguous: a `POST /keys` may have created a key.
    pub fn is_safe_to_repeat(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::RateLimited { .. })
    }
}

impl Classify for OpenRouterError {
    fn transience(&self) -> Transience {
        match self {
            Self::Timeout | Self::Connect(_) | Self::Interrupted(_) => {
                Transience::Transient { retry_after: None }
            }
            Self::RateLimited { retry_after, .. } | Self::ServerError { retry_after, .. } => {
                Transience::Transient {
                    retry_after: *retry_after,
                }
            }
            Self::Status { .. } | Self::Decode(_) | Self::InvalidRequest(_) => {
                Transience::Permanent
            }
        }
    }
}

impl std::fmt::Debug for OpenRouterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenRouterClient")
            .field("base_url", &self.base_url)
            .field("management_key", &self.management_key)
            .finish()
    }
}

impl OpenRouterClient {
    /// `base_url` without a trailing slash, e.g. `https://openrouter.ai/api/v1`.
    pub fn new(base_url: impl Into<String>, management_key: Secret, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("creditbrain/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a reqwest client with rustls and timeouts always builds");
        Self {
            http,
            base_url: base_url.into().trim_end_matches('/').to_string(),
            management_key,
        }
    }

    /// `GET /credits`: the account's total credits and usage.
    pub async fn credits(&self) -> Result<Credits, OpenRouterError> {
        let body = self.execute(Method::GET, "/credits", &[], None).await?;
        let data = data_object(&body)?;
        Ok(Credits {
            total_credits_micro_usd: required_money(data, "total_credits")?,
            total_usage_micro_usd: required_money(data, "total_usage")?,
        })
    }

    /// `GET /keys?offset=…&include_disabled=…`: one page of at most [`KEYS_PAGE_SIZE`] keys,
    /// newest first.
    pub async fn list_keys(
        &self,
        offset: usize,
        include_disabled: bool,
    ) -> Result<Vec<Key>, OpenRouterError> {
        let query = [
            ("offset", offset.to_string()),
            ("include_disabled", include_disabled.to_string()),
        ];
        let body = self.execute(Method::GET, "/keys", &query, None).await?;
        let items = match body.get("data") {
            Some(Value::Array(items)) => items,
            Some(Value::Null) | None => return Ok(Vec::new()),
            Some(_) => return Err(decode("`data` of the key list is not an array")),
        };
        items.iter().map(parse_key).collect()
    }

    /// Every key, a page of 100 at a time until a short page.
    ///
    /// The list is newest first, so a key created while we page shifts the rest by one: the
    /// repeat is dropped (by hash). A key deleted meanwhile can hide an older one until the next
    /// listing; nothing here depends on a single listing being complete.
    pub async fn list_all_keys(&self, include_disabled: bool) -> Result<Vec<Key>, OpenRouterError> {
        let mut keys: Vec<Key> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut offset = 0;
        loop {
            let page = self.list_keys(offset, include_disabled).await?;
            let full = page.len() >= KEYS_PAGE_SIZE;
            let fetched = page.len();
            let mut new = 0;
            for key in page {
                if seen.insert(key.hash.clone()) {
                    keys.push(key);
                    new += 1;
                }
            }
            if !full {
                return Ok(keys);
            }
            if new == 0 {
                // A server that ignores `offset` would otherwise loop forever.
                return Err(decode("key list pagination did not advance"));
            }
            offset += fetched;
        }
    }

    /// `GET /keys/{hash}`.
    pub async fn get_key(&self, hash: &str) -> Result<Key, OpenRouterError> {
        let path = key_path(hash)?;
        let body = self.execute(Method::GET, &path, &[], None).await?;
        parse_key(body.get("data").unwrap_or(&Value::Null))
    }

    /// `POST /keys`: 201 with the key and its one-time plaintext.
    pub async fn create_key(&self, request: &CreateKey) -> Result<CreatedKey, OpenRouterError> {
        if request.name.trim().is_empty() {
            return Err(OpenRouterError::InvalidRequest(
                "a key needs a non-empty name".into(),
            ));
        }
        let mut body = Map::new();
        body.insert("name".into(), Value::from(request.name.clone()));
        if let Some(limit) = request.limit_micro_usd {
            body.insert("limit".into(), limit_to_json(limit)?);
        }
        if let Some(reset) = request.limit_reset {
            body.insert("limit_reset".into(), Value::from(reset.as_str()));
        }
        if let Some(expires_at) = request.expires_at {
            body.insert("expires_at".into(), Value::from(utc_timestamp(expires_at)));
        }
        if let Some(include) = request.include_byok_in_limit {
            body.insert("include_byok_in_limit".into(), Value::from(include));
        }
        let mut response = self
            .execute(Method::POST, "/keys", &[], Some(Value::Object(body)))
            .await?;
        // Take the plaintext out of the JSON tree at once; only the Secret carries it on.
        let plaintext = match response
            .as_object_mut()
            .and_then(|object| object.remove("key"))
        {
            Some(Value::String(plaintext)) if !plaintext.is_empty() => Secret::new(plaintext),
            _ => return Err(decode("the created key's plaintext `key` is missing")),
        };
        let key = parse_key(response.get("data").unwrap_or(&Value::Null))?;
        Ok(CreatedKey { key, plaintext })
    }

    /// `PATCH /keys/{hash}`: changes what `update` names; answers the updated key.
    pub async fn update_key(&self, hash: &str, update: &KeyUpdate) -> Result<Key, OpenRouterError> {
        let path = key_path(hash)?;
        let mut body = Map::new();
        if let Some(name) = &update.name {
            if name.trim().is_empty() {
                return Err(OpenRouterError::InvalidRequest(
                    "a key name cannot be empty".into(),
                ));
            }
            body.insert("name".into(), Value::from(name.clone()));
        }
        if let Some(disabled) = update.disabled {
            body.insert("disabled".into(), Value::from(disabled));
        }
        if let Some(limit) = update.limit_micro_usd {
            let value = match limit {
                Some(limit) => limit_to_json(limit)?,
                None => Value::Null,
            };
            body.insert("limit".into(), value);
        }
        if let Some(reset) = update.limit_reset {
            let value = reset.map_or(Value::Null, |reset| Value::from(reset.as_str()));
            body.insert("limit_reset".into(), value);
        }
        if let Some(include) = update.include_byok_in_limit {
            body.insert("include_byok_in_limit".into(), Value::from(include));
        }
        let response = self
            .execute(Method::PATCH, &path, &[], Some(Value::Object(body)))
            .await?;
        parse_key(response.get("data").unwrap_or(&Value::Null))
    }

    /// `DELETE /keys/{hash}`.
    pub async fn delete_key(&self, hash: &str) -> Result<(), OpenRouterError> {
        let path = key_path(hash)?;
        let response = self.execute(Method::DELETE, &path, &[], None).await?;
        match flexible_bool(response.get("deleted")) {
            Ok(Some(true)) => Ok(()),
            _ => Err(decode(
                "the delete was not confirmed (`deleted` is not true)",
            )),
        }
    }

    /// Sends one request and answers the parsed JSON body of a success, or the mapped error.
    async fn execute(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<Value, OpenRouterError> {
        let started = Instant::now();
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base_url))
            .bearer_auth(self.management_key.expose());
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let result = async {
            let response = request.send().await.map_err(map_transport_error)?;
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = response.bytes().await.map_err(map_transport_error)?;
            Ok::<_, OpenRouterError>((status, headers, bytes))
        }
        .await;
        let response_time = started.elapsed().as_millis() as u64;
        let (status, headers, bytes) = match result {
            Ok(parts) => parts,
            Err(error) => {
                tracing::debug!(
                    req.method = %method,
                    req.url = path,
                    responseTime = response_time,
                    error = %error,
                    "openrouter request failed"
                );
                return Err(error);
            }
        };
        // Only the method, the path (a key hash is an identifier, not a secret) and the status:
        // bodies can carry a plaintext key.
        tracing::debug!(
            req.method = %method,
            req.url = path,
            res.statusCode = status.as_u16(),
            responseTime = response_time,
            "openrouter request"
        );
        if !status.is_success() {
            return Err(self.map_status(status, &headers, &bytes));
        }
        serde_json::from_slice::<Value>(&bytes)
            // serde_json's syntax errors name a position, never the input's content.
            .map_err(|error| decode(&format!("the body is not JSON: {error}")))
    }

    fn map_status(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> OpenRouterError {
        let message = self.error_message(status, body);
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, Utc::now()));
        match status.as_u16() {
            429 => OpenRouterError::RateLimited {
                retry_after,
                message,
            },
            code @ (408 | 500..=599) => OpenRouterError::ServerError {
                status: code,
                message,
                retry_after,
            },
            code => OpenRouterError::Status {
                status: code,
                message,
            },
        }
    }

    /// OpenRouter's `error.message`, or the status text when the body is something else; scrubbed
    /// of the management key (should a service or proxy echo it) and bounded in length.
    fn error_message(&self, status: StatusCode, body: &[u8]) -> String {
        let message = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|value| {
                value
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
        let message = if self.management_key.is_empty() {
            message
        } else {
            message.replace(self.management_key.expose(), "***")
        };
        if message.chars().count() > MAX_MESSAGE_CHARS {
            let cut: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
            format!("{cut}…")
        } else {
            message
        }
    }
}

fn map_transport_error(error: reqwest::Error) -> OpenRouterError {
    // Without the URL: it carries no secret today, but error text travels into logs and replies.
    if error.is_timeout() {
        OpenRouterError::Timeout
    } else if error.is_connect() {
        OpenRouterError::Connect(error.without_url().to_string())
    } else {
        OpenRouterError::Interrupted(error.without_url().to_string())
    }
}

fn decode(message: &str) -> OpenRouterError {
    OpenRouterError::Decode(message.to_string())
}

/// `/keys/{hash}`, refusing a hash that would change the path (it is hex in practice).
fn key_path(hash: &str) -> Result<String, OpenRouterError> {
    let valid = !hash.is_empty()
        && hash.len() <= 256
        && hash
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(OpenRouterError::InvalidRequest(
            "a key hash must be a non-empty string of letters, digits, '-' or '_'".into(),
        ));
    }
    Ok(format!("/keys/{hash}"))
}

/// Integer micro-USD as the JSON number of dollars OpenRouter takes for a limit.
///
/// Limits are whole cents (DESIGN §5): a non-cent or negative amount is refused rather than
/// rounded, since a silently rounded limit would no longer match what the caller stored and
/// promised. `cents / 100` as an `f64` is the double nearest the decimal, and serde_json writes
/// the shortest text that reads back as that double, i.e. exactly `12.34`.
pub fn limit_to_json(micro_usd: i64) -> Result<Value, OpenRouterError> {
    if micro_usd < 0 || micro_usd % MICROS_PER_CENT != 0 {
        return Err(OpenRouterError::InvalidRequest(format!(
            "a key limit must be a non-negative whole number of cents, got {micro_usd} micro-USD"
        )));
    }
    let cents = micro_usd / MICROS_PER_CENT;
    // Beyond 2^53 cents an f64 is no longer exact; no real limit comes near it.
    if cents > (1i64 << 53) {
        return Err(OpenRouterError::InvalidRequest(format!(
            "a key limit of {micro_usd} micro-USD is out of range"
        )));
    }
    serde_json::Number::from_f64(cents as f64 / 100.0)
        .map(Value::Number)
        .ok_or_else(|| OpenRouterError::InvalidRequest("a key limit is not a number".into()))
}

/// Dollars (a JSON float) to micro-USD, rounding half away from zero to the nearest micro-dollar.
///
/// OpenRouter reports dollars as floats; rounding at one micro-dollar keeps every cent exact and
/// is far finer than any amount we grant. Non-finite or out-of-range values are refused.
pub fn usd_to_micro_usd(usd: f64) -> Result<i64, OpenRouterError> {
    let micro = (usd * 1_000_000.0).round();
    if !micro.is_finite() || micro.abs() > 9.0e15 {
        return Err(OpenRouterError::Decode(format!(
            "dollar amount out of range: {usd}"
        )));
    }
    Ok(micro as i64)
}

/// `data` of a response, as an object.
fn data_object(body: &Value) -> Result<&Map<String, Value>, OpenRouterError> {
    body.get("data")
        .and_then(Value::as_object)
        .ok_or_else(|| decode("`data` is missing or not an object"))
}

/// A number, or a string holding one; `None` for null or absent.
fn flexible_f64(value: Option<&Value>, field: &str) -> Result<Option<f64>, OpenRouterError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number
            .as_f64()
            .map(Some)
            .ok_or_else(|| decode(&format!("`{field}` is not a usable number"))),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(Value::String(text)) => text
            .trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| decode(&format!("`{field}` is not a number"))),
        Some(_) => Err(decode(&format!("`{field}` is not a number"))),
    }
}

fn optional_money(
    object: &Map<String, Value>,
    field: &str,
) -> Result<Option<i64>, OpenRouterError> {
    flexible_f64(object.get(field), field)?
        .map(usd_to_micro_usd)
        .transpose()
}

/// A usage-like amount: null or absent reads as zero (nothing spent).
fn money_or_zero(object: &Map<String, Value>, field: &str) -> Result<i64, OpenRouterError> {
    Ok(optional_money(object, field)?.unwrap_or(0))
}

/// An amount that must be there: absent would make a balance up.
fn required_money(object: &Map<String, Value>, field: &str) -> Result<i64, OpenRouterError> {
    optional_money(object, field)?.ok_or_else(|| decode(&format!("`{field}` is missing")))
}

/// A bool, or `"true"`/`"false"`; `None` for null or absent.
fn flexible_bool(value: Option<&Value>) -> Result<Option<bool>, ()> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(Value::String(text)) => match text.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => Err(()),
        },
        Some(Value::Number(number)) => match number.as_u64() {
            Some(0) => Ok(Some(false)),
            Some(1) => Ok(Some(true)),
            _ => Err(()),
        },
        Some(_) => Err(()),
    }
}

fn bool_or_false(object: &Map<String, Value>, field: &str) -> Result<bool, OpenRouterError> {
    flexible_bool(object.get(field))
        .map(Option::unwrap_or_default)
        .map_err(|()| decode(&format!("`{field}` is not a boolean")))
}

fn optional_string(
    object: &Map<String, Value>,
    field: &str,
) -> Result<Option<String>, OpenRouterError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(_) => Err(decode(&format!("`{field}` is not a string"))),
    }
}

/// An ISO-8601 timestamp: RFC 3339 with any offset, or without one (read as UTC).
fn optional_timestamp(
    object: &Map<String, Value>,
    field: &str,
) -> Result<Option<DateTime<Utc>>, OpenRouterError> {
    let Some(text) = optional_string(object, field)? else {
        return Ok(None);
    };
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(at.with_timezone(&Utc)));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(Some(naive.and_utc()));
        }
    }
    Err(decode(&format!("`{field}` is not an ISO-8601 timestamp")))
}

/// UTC with a `Z` and milliseconds: the only `expires_at` form OpenRouter accepts.
fn utc_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A key object (§3.3).
fn parse_key(value: &Value) -> Result<Key, OpenRouterError> {
    let object = value
        .as_object()
        .ok_or_else(|| decode("a key is not a JSON object"))?;
    let hash = optional_string(object, "hash")?
        .filter(|hash| !hash.is_empty())
        .ok_or_else(|| decode("a key has no `hash`"))?;
    // An unknown reset period is an error, not "never resets": reading a recurring allowance as
    // a one-off balance would miscount the credit promised (I1).
    let limit_reset = match optional_string(object, "limit_reset")? {
        None => None,
        Some(text) => Some(
            LimitReset::parse(text.trim())
                .ok_or_else(|| decode(&format!("`limit_reset` has an unknown value {text:?}")))?,
        ),
    };
    Ok(Key {
        name: optional_string(object, "name")?.unwrap_or_default(),
        label: optional_string(object, "label")?.unwrap_or_default(),
        disabled: bool_or_false(object, "disabled")?,
        limit_micro_usd: optional_money(object, "limit")?,
        limit_remaining_micro_usd: optional_money(object, "limit_remaining")?,
        limit_reset,
        include_byok_in_limit: bool_or_false(object, "include_byok_in_limit")?,
        usage_micro_usd: money_or_zero(object, "usage")?,
        usage_daily_micro_usd: money_or_zero(object, "usage_daily")?,
        usage_weekly_micro_usd: money_or_zero(object, "usage_weekly")?,
        usage_monthly_micro_usd: money_or_zero(object, "usage_monthly")?,
        byok_usage_micro_usd: money_or_zero(object, "byok_usage")?,
        byok_usage_daily_micro_usd: money_or_zero(object, "byok_usage_daily")?,
        byok_usage_weekly_micro_usd: money_or_zero(object, "byok_usage_weekly")?,
        byok_usage_monthly_micro_usd: money_or_zero(object, "byok_usage_monthly")?,
        created_at: optional_timestamp(object, "created_at")?,
        updated_at: optional_timestamp(object, "updated_at")?,
        expires_at: optional_timestamp(object, "expires_at")?,
        creator_user_id: optional_string(object, "creator_user_id")?,
        workspace_id: optional_string(object, "workspace_id")?,
        hash,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn dollars_convert_to_exact_micro_dollars() {
        assert_eq!(usd_to_micro_usd(0.0).unwrap(), 0);
        assert_eq!(usd_to_micro_usd(10.5).unwrap(), 10_500_000);
        // 0.1 + 0.2 is 0.30000000000000004 as a float; rounding gives the exact cents.
        assert_eq!(usd_to_micro_usd(0.1 + 0.2).unwrap(), 300_000);
        assert_eq!(usd_to_micro_usd(123.4567894).unwrap(), 123_456_789);
        assert_eq!(usd_to_micro_usd(-1.25).unwrap(), -1_250_000);
        assert!(usd_to_micro_usd(f64::NAN).is_err());
        assert!(usd_to_micro_usd(1e300).is_err());
    }

    #[test]
    fn limits_go_out_as_exact_dollars_and_only_in_whole_cents() {
        let text = |micro| serde_json::to_string(&limit_to_json(micro).unwrap()).unwrap();
        assert_eq!(text(12_340_000), "12.34");
        assert_eq!(text(10_000), "0.01");
        assert_eq!(text(0), "0.0");
        assert_eq!(text(100_000_000), "100.0");
        assert_eq!(text(123_456_789_990_000), "123456789.99");
        // Every cent amount up to $1,000 reads back exactly.
        for cents in 0..100_000i64 {
            let micro = cents * MICROS_PER_CENT;
            let value = limit_to_json(micro).unwrap();
            let back: f64 = serde_json::from_str(&value.to_string()).unwrap();
            assert_eq!(usd_to_micro_usd(back).unwrap(), micro);
        }
        assert!(matches!(
            limit_to_json(12_345_678),
            Err(OpenRouterError::InvalidRequest(_))
        ));
        assert!(limit_to_json(-10_000).is_err());
    }

    #[test]
    fn a_key_reads_leniently() {
        let key = parse_key(&json!({
            "hash": "abc123",
            "name": "creditbrain-s-w",
            "label": "sk-or-v1-abc...f90",
            "disabled": "false",
            "limit": "12.34",
            "limit_remaining": 10.5,
            "limit_reset": "monthly",
            "include_byok_in_limit": null,
            "usage": 1.84,
            "usage_daily": null,
            "usage_weekly": "0.5",
            "byok_usage": 0,
            "created_at": "2025-08-24T10:30:00.123Z",
            "updated_at": null,
            "expires_at": "2026-01-01T00:00:00+02:00",
            "workspace_id": "ws",
            "something_new": {"nested": true},
        }))
        .unwrap();
        assert_eq!(key.limit_micro_usd, Some(12_340_000));
        assert_eq!(key.limit_remaining_micro_usd, Some(10_500_000));
        assert_eq!(key.limit_reset, Some(LimitReset::Monthly));
        assert_eq!(key.usage_micro_usd, 1_840_000);
        assert_eq!(key.usage_daily_micro_usd, 0);
        assert_eq!(key.usage_weekly_micro_usd, 500_000);
        assert_eq!(key.usage_monthly_micro_usd, 0, "absent reads as zero");
        assert!(!key.disabled && !key.include_byok_in_limit);
        assert_eq!(
            key.expires_at.unwrap(),
            "2025-12-31T22:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(key.updated_at.is_none());
        assert_eq!(key.creator_user_id, None);

        let unlimited =
            parse_key(&json!({"hash": "h", "limit": null, "limit_reset": null})).unwrap();
        assert_eq!(unlimited.limit_micro_usd, None);
        assert_eq!(unlimited.limit_reset, None);

        assert!(parse_key(&json!({"name": "no hash"})).is_err());
        assert!(parse_key(&json!({"hash": "h", "limit_reset": "yearly"})).is_err());
        assert!(parse_key(&json!({"hash": "h", "limit": "lots"})).is_err());
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = "2025-10-21T07:28:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Tue, 21 Oct 2025 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Tue, 21 Oct 2025 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn errors_classify_for_the_retry_layer() {
        let transient =
            |error: &OpenRouterError| matches!(error.transience(), Transience::Transient { .. });
        assert!(transient(&OpenRouterError::Timeout));
        assert!(transient(&OpenRouterError::Connect("refused".into())));
        assert!(transient(&OpenRouterError::Interrupted("reset".into())));
        assert_eq!(
            OpenRouterError::RateLimited {
                retry_after: Some(Duration::from_secs(2)),
                message: "slow down".into()
            }
            .transience(),
            Transience::Transient {
                retry_after: Some(Duration::from_secs(2))
            }
        );
        assert!(transient(&OpenRouterError::ServerError {
            status: 503,
            message: "down".into(),
            retry_after: None
        }));
        for status in [400, 401, 403, 404] {
            assert_eq!(
                OpenRouterError::Status {
                    status,
                    message: String::new()
                }
                .transience(),
                Transience::Permanent
            );
        }
        assert_eq!(
            OpenRouterError::Decode("x".into()).transience(),
            Transience::Permanent
        );
        assert!(OpenRouterError::Connect("refused".into()).is_safe_to_repeat());
        assert!(!OpenRouterError::Timeout.is_safe_to_repeat());
    }

    #[test]
    fn error_messages_never_carry_the_management_key() {
        let client = OpenRouterClient::new(
            "http://127.0.0.1:1",
            Secret::new("sk-or-v1-management-secret"),
            Duration::from_secs(1),
        );
        let body =
            br#"{"error":{"code":401,"message":"key sk-or-v1-management-secret is invalid"}}"#;
        let error = client.map_status(StatusCode::UNAUTHORIZED, &HeaderMap::new(), body);
        let shown = format!("{error} {error:?} {client:?}");
        assert!(!shown.contains("management-secret"), "{shown}");
        assert_eq!(error.status(), Some(401));
        let created = CreatedKey {
            key: parse_key(&json!({"hash": "h"})).unwrap(),
            plaintext: Secret::new("sk-or-v1-topsecret"),
        };
        assert!(!format!("{created:?}").contains("topsecret"));
    }
}
