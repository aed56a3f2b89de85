//! The API's error type and its extractors: JSON bodies, path parameters and query strings, each
//! turning every rejection into `{"error":{"code","message"}}` with a message that names the
//! problem (position, field, parameter).

use std::collections::BTreeMap;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Json, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::ops::OpError;

/// The largest request body the API reads (64 KiB): every body it takes is a small JSON object.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What a handler or middleware of the API answers instead of its result.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable snake_case code.
    pub code: String,
    pub message: String,
    /// Extra fields merged into the error object (`parameter`, `field`, `runId` ...).
    pub details: Option<Value>,
    /// Headers the status calls for (`Retry-After`, `WWW-Authenticate`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
            details: None,
            headers: Vec::new(),
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Sets `Retry-After` (whole seconds, at least 1).
    pub fn with_retry_after(self, seconds: u64) -> Self {
        self.with_header(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)))
    }

    /// A 500 whose cause is logged here, once; the client sees a generic message.
    pub fn internal(context: &str, cause: &dyn std::fmt::Display) -> Self {
        OpError::internal(context, cause).into()
    }

    /// `{"error":{"code","message", ...details}}`.
    pub fn body(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let (Some(map), Some(Value::Object(extra))) = (error.as_object_mut(), &self.details) {
            for (key, value) in extra {
                map.insert(key.clone(), value.clone());
            }
        }
        json!({ "error": error })
    }
}

impl From<OpError> for ApiError {
    fn from(error: OpError) -> Self {
        let status = StatusCode::from_u16(error.kind.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self {
            status,
            code: error.code,
            message: error.message,
            details: error.details,
            headers: Vec::new(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut response = (self.status, Json(body)).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

// ---------------------------------------------------------------------------------------------
// JSON bodies

/// A required JSON body: 415 `unsupported_media_type` unless `Content-Type: application/json`,
/// 413 `payload_too_large` past [`MAX_BODY_BYTES`], 400 `invalid_json` (with line and column) for
/// bad syntax, 400 `invalid_body` naming the field for a wrong type, unknown or missing field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        require_json_content_type(request.headers())?;
        let bytes = read_body(request).await?;
        if bytes.is_empty() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "a JSON body is required",
            ));
        }
        parse_json(&bytes).map(ApiJson)
    }
}

/// An optional JSON body: an empty body is `None` whatever its `Content-Type`; anything else is
/// read as [`ApiJson`] reads it.
pub struct OptionalApiJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let headers = request.headers().clone();
        let bytes = read_body(request).await?;
        if bytes.is_empty() {
            return Ok(OptionalApiJson(None));
        }
        require_json_content_type(&headers)?;
        parse_json(&bytes).map(|value| OptionalApiJson(Some(value)))
    }
}

fn require_json_content_type(headers: &HeaderMap) -> ApiResult<()> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let essence = content_type
        .and_then(|text| text.split(';').next())
        .map(str::trim);
    if essence.is_some_and(|essence| essence.eq_ignore_ascii_case("application/json")) {
        return Ok(());
    }
    let given = match content_type {
        Some(text) => format!("got {text:?}"),
        None => "none was given".to_string(),
    };
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("the body must be JSON with Content-Type: application/json; {given}"),
    ))
}

fn payload_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
    )
}

/// The request's `Content-Length`, if it declares one.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok())
}

/// Whether the request carries a body (`Content-Length` above 0, or chunked).
pub fn has_body(headers: &HeaderMap) -> bool {
    declared_length(headers).is_some_and(|length| length > 0)
        || headers.contains_key(header::TRANSFER_ENCODING)
}

async fn read_body(request: Request) -> ApiResult<axum::body::Bytes> {
    let declared = declared_length(request.headers());
    read_limited(request.into_body(), declared).await
}

/// The whole body, refusing more than [`MAX_BODY_BYTES`] (by `Content-Length` before reading a
/// byte, and while reading a body without one).
pub async fn read_limited(
    body: axum::body::Body,
    declared: Option<u64>,
) -> ApiResult<axum::body::Bytes> {
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(payload_too_large());
    }
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|error| {
            if error_chain_mentions(&error, "length limit exceeded") {
                payload_too_large()
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    "the request body could not be read",
                )
            }
        })
}

/// http-body-util's `LengthLimitError` is not a type we can name; its message is stable.
fn error_chain_mentions(error: &axum::Error, needle: &str) -> bool {
    let mut current: Option<&dyn std::error::Error> = Some(error);
    while let Some(error) = current {
        if error.to_string().contains(needle) {
            return true;
        }
        current = error.source();
    }
    false
}

/// Syntax first (so a syntax error is never reported as a type error), then the shape.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!(
                "the body is not valid JSON: {} at line {} column {}",
                serde_message(&error),
                error.line(),
                error.column()
            ),
        )
        .with_details(json!({ "line": error.line(), "column": error.column() })));
    }
    serde_json::from_slice::<T>(bytes).map_err(|error| {
        let (message, field) = locate_data_error::<T>(bytes, &error);
        let mut details = json!({ "line": error.line(), "column": error.column() });
        let message = if field.is_empty() {
            message
        } else {
            details["field"] = json!(field);
            format!("{message} (field `{field}`)")
        };
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", message).with_details(details)
    })
}

/// The message of a data error and the path of the field it is about ("" at the root).
///
/// serde_json positions an error raised by a field's own deserializer (the strategies'
/// numbers-or-text fields) at the end of the enclosing object, so the position alone names the
/// container. The field is found by elimination instead: the member whose removal makes the
/// error go away (or change) is the culprit, and the search descends into it. The position is
/// the fallback (errors elimination cannot pin: a missing field, the same error twice).
fn locate_data_error<T: DeserializeOwned>(
    bytes: &[u8],
    error: &serde_json::Error,
) -> (String, String) {
    let by_position = || {
        (
            serde_message(error),
            json_path_at(bytes, byte_offset(bytes, error.line(), error.column())),
        )
    };
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return by_position();
    };
    let Err(value_error) = serde_json::from_value::<T>(value.clone()) else {
        return by_position();
    };
    let message = value_error.to_string();
    let culprit = culprit_path::<T>(&value, &message);
    if culprit.is_empty() {
        by_position()
    } else {
        (message, render_path(&culprit))
    }
}

/// One step of a path into a JSON value.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

/// Bounds the elimination search (each trial clones and deserializes the body).
const MAX_ELIMINATION_TRIALS: usize = 64;

fn culprit_path<T: DeserializeOwned>(root: &Value, message: &str) -> Vec<Step> {
    // What `T` says about a candidate: `None` when it is accepted.
    let judge = |candidate: Value| {
        serde_json::from_value::<T>(candidate)
            .err()
            .map(|e| e.to_string())
    };
    let mut path: Vec<Step> = Vec::new();
    let mut trials = 0;
    'descend: loop {
        let children: Vec<Step> = match value_at(root, &path) {
            Some(Value::Object(map)) => map.keys().cloned().map(Step::Key).collect(),
            Some(Value::Array(items)) => (0..items.len()).map(Step::Index).collect(),
            _ => break,
        };
        if trials + 2 * children.len() > MAX_ELIMINATION_TRIALS {
            break;
        }
        trials += 2 * children.len();
        let mut without: Vec<Option<String>> = Vec::with_capacity(children.len());
        for child in &children {
            let mut candidate = root.clone();
            remove_at(&mut candidate, &path, child);
            without.push(judge(candidate));
        }
        // The member whose removal fixes the body.
        if let Some(index) = without.iter().position(Option::is_none) {
            path.push(children[index].clone());
            continue 'descend;
        }
        // Several errors: the member that alone reproduces this one and whose removal changes
        // it. (One member alone proves nothing: a container of the wrong type gives a new
        // message whatever is taken out of it.)
        if children.len() >= 2 {
            for (child, error_without) in children.iter().zip(&without) {
                if error_without.as_deref() == Some(message) {
                    continue;
                }
                let mut candidate = root.clone();
                keep_only(&mut candidate, &path, child);
                if judge(candidate).as_deref() == Some(message) {
                    path.push(child.clone());
                    continue 'descend;
                }
            }
        }
        break;
    }
    path
}

fn value_at<'a>(root: &'a Value, path: &[Step]) -> Option<&'a Value> {
    path.iter().try_fold(root, |value, step| match step {
        Step::Key(key) => value.get(key),
        Step::Index(index) => value.get(index),
    })
}

fn value_at_mut<'a>(root: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(root, |value, step| match step {
        Step::Key(key) => value.get_mut(key),
        Step::Index(index) => value.get_mut(*index),
    })
}

fn remove_at(root: &mut Value, parent: &[Step], child: &Step) {
    match (value_at_mut(root, parent), child) {
        (Some(Value::Object(map)), Step::Key(key)) => {
            map.remove(key);
        }
        (Some(Value::Array(items)), Step::Index(index)) if *index < items.len() => {
            items.remove(*index);
        }
        _ => {}
    }
}

fn keep_only(root: &mut Value, parent: &[Step], child: &Step) {
    match (value_at_mut(root, parent), child) {
        (Some(Value::Object(map)), Step::Key(key)) => map.retain(|name, _| name == key),
        (Some(Value::Array(items)), Step::Index(index)) if *index < items.len() => {
            let kept = items.swap_remove(*index);
            *items = vec![kept];
        }
        _ => {}
    }
}

fn render_path(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Step::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

/// serde_json's message without its " at line L column C" suffix (reported separately).
fn serde_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_string()
}

/// serde_json counts lines from 1 and columns as bytes into the line.
fn byte_offset(bytes: &[u8], line: usize, column: usize) -> usize {
    let mut line_start = 0;
    for _ in 1..line {
        match bytes[line_start..].iter().position(|&b| b == b'\n') {
            Some(newline) => line_start += newline + 1,
            None => return bytes.len(),
        }
    }
    (line_start + column).min(bytes.len())
}

/// The path (`customWeights[2].weight`) of the value being read at `offset` in a syntactically
/// valid JSON document: what a serde data error at that position is about. Empty at the root.
pub fn json_path_at(bytes: &[u8], offset: usize) -> String {
    enum Frame {
        Object { key: Option<String> },
        Array { index: usize },
    }
    let mut stack: Vec<Frame> = Vec::new();
    // A string right after `{` or `,` inside an object is a key.
    let mut expecting_key = false;
    let end = offset.min(bytes.len());
    let mut i = 0;
    while i < end {
        match bytes[i] {
            b'{' => {
                stack.push(Frame::Object { key: None });
                expecting_key = true;
            }
            b'[' => {
                stack.push(Frame::Array { index: 0 });
                expecting_key = false;
            }
            b'}' | b']' => {
                stack.pop();
                expecting_key = false;
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array { index }) => *index += 1,
                Some(Frame::Object { .. }) => expecting_key = true,
                None => {}
            },
            b':' => expecting_key = false,
            b'"' => {
                let close = string_end(bytes, i);
                if expecting_key && let Some(Frame::Object { key }) = stack.last_mut() {
                    let raw = &bytes[i..(close + 1).min(bytes.len())];
                    *key = Some(
                        serde_json::from_slice::<String>(raw)
                            .unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned()),
                    );
                }
                i = close + 1;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    let mut path = String::new();
    for frame in &stack {
        match frame {
            Frame::Object { key: Some(key) } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Object { key: None } => {}
            Frame::Array { index } => path.push_str(&format!("[{index}]")),
        }
    }
    path
}

/// The index of the quote closing the string that opens at `open`.
fn string_end(bytes: &[u8], open: usize) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

// ---------------------------------------------------------------------------------------------
// Path parameters

/// Path parameters; a rejection (bad percent-encoding) is 400 `invalid_path`.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|rejection| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_path",
                    rejection.body_text(),
                )
            })
    }
}

// ---------------------------------------------------------------------------------------------
// Query strings

/// What a query parameter holds (validation here; ranges are the operation's to check, so its
/// codes such as `invalid_limit` stay the same on every frontend).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// Free text; `one_of` lists the accepted words for the documentation (the operation checks
    /// them, case-insensitively).
    Text { one_of: &'static [&'static str] },
    /// A non-negative integer; `minimum`/`maximum` are documented, the operation checks them.
    Integer {
        default: Option<u32>,
        minimum: u32,
        maximum: u32,
    },
}

/// One query parameter a route accepts.
#[derive(Clone, Copy, Debug)]
pub struct QueryParam {
    pub name: &'static str,
    pub kind: ParamKind,
    pub required: bool,
    pub description: &'static str,
}

/// A validated query value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryValue {
    Text(String),
    Integer(u32),
}

/// A route's query string, validated against its declared parameters (by the router, for every
/// route, before the handler runs).
#[derive(Clone, Debug, Default)]
pub struct QueryValues {
    declared: Vec<&'static str>,
    values: BTreeMap<&'static str, QueryValue>,
}

impl QueryValues {
    /// A text parameter (`None` when absent).
    pub fn text(&self, name: &str) -> Option<&str> {
        self.check_declared(name);
        match self.values.get(name) {
            Some(QueryValue::Text(text)) => Some(text),
            _ => None,
        }
    }

    /// An integer parameter (`None` when absent).
    pub fn integer(&self, name: &str) -> Option<u32> {
        self.check_declared(name);
        match self.values.get(name) {
            Some(QueryValue::Integer(value)) => Some(*value),
            _ => None,
        }
    }

    /// A handler reading a parameter its route does not declare is a bug in the table.
    fn check_declared(&self, name: &str) {
        debug_assert!(
            self.declared.contains(&name),
            "query parameter {name} is not declared for this route"
        );
    }
}

fn invalid_query(parameter: &str, message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
        .with_details(json!({ "parameter": parameter }))
}

/// Validates `uri`'s query string against `params`: unknown, repeated, empty or malformed
/// parameters and missing required ones are 400 `invalid_query` naming the parameter.
pub fn parse_query(params: &'static [QueryParam], uri: &Uri) -> ApiResult<QueryValues> {
    let pairs = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|Query(pairs)| pairs)
        .map_err(|rejection| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("the query string is malformed: {}", rejection.body_text()),
            )
        })?;
    let accepted = || {
        if params.is_empty() {
            "this route takes no query parameters".to_string()
        } else {
            let names: Vec<&str> = params.iter().map(|param| param.name).collect();
            format!("accepted: {}", names.join(", "))
        }
    };
    let mut values = BTreeMap::new();
    for (name, raw) in pairs {
        let Some(param) = params.iter().find(|param| param.name == name) else {
            return Err(invalid_query(
                &name,
                format!("unknown query parameter `{name}` ({})", accepted()),
            ));
        };
        if values.contains_key(param.name) {
            return Err(invalid_query(
                param.name,
                format!("query parameter `{name}` is given more than once"),
            ));
        }
        if raw.is_empty() {
            return Err(invalid_query(
                param.name,
                format!("query parameter `{name}` must not be empty"),
            ));
        }
        let value = match param.kind {
            ParamKind::Text { .. } => QueryValue::Text(raw),
            ParamKind::Integer { .. } => match raw.parse::<u32>() {
                Ok(value) => QueryValue::Integer(value),
                Err(_) => {
                    return Err(invalid_query(
                        param.name,
                        format!(
                            "query parameter `{name}` must be a non-negative integer, not {raw:?}"
                        ),
                    ));
                }
            },
        };
        values.insert(param.name, value);
    }
    for param in params {
        if values.contains_key(param.name) {
            continue;
        }
        if param.required {
            return Err(invalid_query(
                param.name,
                format!("query parameter `{}` is required", param.name),
            ));
        }
        if let ParamKind::Integer {
            default: Some(default),
            ..
        } = param.kind
        {
            values.insert(param.name, QueryValue::Integer(default));
        }
    }
    Ok(QueryValues {
        declared: params.iter().map(|param| param.name).collect(),
        values,
    })
}

/// The validated query of the route being served (put there by the router, see
/// `routes::build_router`).
pub struct Params(pub QueryValues);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<QueryValues>()
            .cloned()
            .map(Params)
            .ok_or_else(|| {
                ApiError::internal(
                    "query parameters",
                    &"the route's query was not validated by the router",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of_error(text: &str) -> String {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        #[allow(dead_code)]
        struct Weight {
            wallet: String,
            weight: u64,
        }
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        #[allow(dead_code)]
        struct Body {
            dry_run: Option<bool>,
            weights: Option<Vec<Weight>>,
        }
        let error = parse_json::<Body>(text.as_bytes()).unwrap_err();
        assert_eq!(error.code, "invalid_body", "{error:?}");
        error.details.unwrap()["field"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn data_errors_name_the_field_even_nested_and_across_lines() {
        assert_eq!(path_of_error(r#"{"dryRun": "yes"}"#), "dryRun");
        assert_eq!(path_of_error(r#"{"dryRunn": true}"#), "dryRunn");
        assert_eq!(
            path_of_error(
                "{\"dryRun\": true,\n \"weights\": [{\"wallet\": \"a\", \"weight\": 1},\n {\"wallet\": \"b\", \"weight\": \"x\\\"y\"}]}"
            ),
            "weights[1].weight"
        );
        assert_eq!(
            path_of_error(r#"{"weights": [{"wallet": "a", "weight": 1, "extra": 2}]}"#),
            "weights[0].extra"
        );
    }

    #[test]
    fn errors_of_a_fields_own_deserializer_name_the_field() {
        use creditbrain_actors::strategy::StrategyInput;
        let field = |text: &str| {
            let error = parse_json::<StrategyInput>(text.as_bytes()).unwrap_err();
            assert_eq!(error.code, "invalid_body", "{error:?}");
            assert!(error.message.contains("got"), "{}", error.message);
            error.details.unwrap()["field"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(field(r#"{"ownerWallet": "x", "topN": true}"#), "topN");
        assert_eq!(
            field(
                r#"{"customWeights": [{"wallet": "a", "weight": 1}, {"wallet": "b", "weight": [2]}]}"#
            ),
            "customWeights[1].weight"
        );
        assert_eq!(field(r#"{"exclusions": ["a", {"b": 1}]}"#), "exclusions[1]");
        assert_eq!(field(r#"{"topN": [2, 3], "schedule": "x"}"#), "topN");
        // Two bad fields: the one the message is about.
        let error =
            parse_json::<StrategyInput>(br#"{"topN": true, "slippageBps": {}}"#).unwrap_err();
        let named = error.details.unwrap()["field"]
            .as_str()
            .unwrap()
            .to_string();
        let expected = if error.message.contains("got true") {
            "topN"
        } else {
            "slippageBps"
        };
        assert_eq!(named, expected, "{}", error.message);
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let error = parse_json::<Value>(b"{\n  \"on\": tru }").unwrap_err();
        assert_eq!(error.code, "invalid_json");
        assert!(error.message.contains("line 2 column"), "{}", error.message);
        assert_eq!(error.details.unwrap()["line"], 2);
    }

    #[test]
    fn queries_are_checked_against_their_declaration() {
        static PARAMS: &[QueryParam] = &[
            QueryParam {
                name: "limit",
                kind: ParamKind::Integer {
                    default: Some(100),
                    minimum: 1,
                    maximum: 500,
                },
                required: false,
                description: "",
            },
            QueryParam {
                name: "strategyId",
                kind: ParamKind::Text { one_of: &[] },
                required: true,
                description: "",
            },
        ];
        let uri = |text: &str| text.parse::<Uri>().unwrap();
        let values = parse_query(PARAMS, &uri("/x?strategyId=a%20b")).unwrap();
        assert_eq!(values.text("strategyId"), Some("a b"));
        assert_eq!(values.integer("limit"), Some(100));
        for (query, parameter) in [
            ("/x?strategyId=a&limit=ten", "limit"),
            ("/x?strategyId=a&limit=-1", "limit"),
            ("/x?strategyId=a&color=red", "color"),
            ("/x?strategyId=a&strategyId=b", "strategyId"),
            ("/x?strategyId=", "strategyId"),
            ("/x", "strategyId"),
        ] {
            let error = parse_query(PARAMS, &uri(query)).unwrap_err();
            assert_eq!(error.code, "invalid_query");
            assert_eq!(error.details.unwrap()["parameter"], parameter, "{query}");
            assert!(error.message.contains(parameter), "{}", error.message);
        }
    }
}
