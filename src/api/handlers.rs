//! The API's handlers: each one extracts its inputs, calls one operation of [`crate::ops`] and
//! answers its view as JSON (the status and `Location` are the only things decided here).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use creditbrain_actors::keys_maintenance::{ReconcileReport, RevokedKey, RotatedKey};
use creditbrain_actors::store::cancel::CancelledRun;
use creditbrain_actors::store::runs::TriggeredBy;
use creditbrain_actors::strategy::{StrategyInput, StrategyPatch, StrategyStatus};
use serde::Deserialize;
use serde_json::Value;

use super::extract::{ApiJson, ApiPath, ApiResult, OptionalApiJson, Params};
use crate::daemon::Handle;
use crate::ops::{
    self, KeyView, KillSwitchView, PoolSnapshotView, PoolView, RunDetail, RunQuery, RunStarted,
    RunView, StatsView, UsageView,
};

/// Who the audit log says acted, for changes made through the API.
const ACTOR: &str = "api";

/// `201` or `202` with `Location` naming what was created or started.
fn with_location(status: StatusCode, location: &str, body: impl serde::Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

// Strategies -----------------------------------------------------------------------------------

pub async fn list_strategies(
    State(handle): State<Handle>,
    Params(query): Params,
) -> ApiResult<Json<Vec<Value>>> {
    Ok(Json(
        ops::list_strategies(&handle, query.text("status")).await?,
    ))
}

pub async fn create_strategy(
    State(handle): State<Handle>,
    ApiJson(input): ApiJson<StrategyInput>,
) -> ApiResult<Response> {
    let created = ops::create_strategy(&handle, &input, ACTOR).await?;
    let location = format!(
        "/api/strategies/{}",
        created["strategyId"].as_str().unwrap_or_default()
    );
    Ok(with_location(StatusCode::CREATED, &location, created))
}

pub async fn get_strategy(
    State(handle): State<Handle>,
    ApiPath(strategy_id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(ops::get_strategy(&handle, &strategy_id).await?))
}

pub async fn update_strategy(
    State(handle): State<Handle>,
    ApiPath(strategy_id): ApiPath<String>,
    ApiJson(patch): ApiJson<StrategyPatch>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        ops::update_strategy(&handle, &strategy_id, &patch, ACTOR).await?,
    ))
}

pub async fn enable_strategy(
    State(handle): State<Handle>,
    ApiPath(strategy_id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        ops::set_strategy_status(&handle, &strategy_id, StrategyStatus::Active, ACTOR).await?,
    ))
}

pub async fn disable_strategy(
    State(handle): State<Handle>,
    ApiPath(strategy_id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        ops::set_strategy_status(&handle, &strategy_id, StrategyStatus::Paused, ACTOR).await?,
    ))
}

pub async fn delete_strategy(
    State(handle): State<Handle>,
    ApiPath(strategy_id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    ops::delete_strategy(&handle, &strategy_id, ACTOR).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn strategy_keys(
    State(handle): State<Handle>,
    ApiPath(strategy_id): ApiPath<String>,
) -> ApiResult<Json<Vec<KeyView>>> {
    Ok(Json(ops::strategy_keys(&handle, &strategy_id).await?))
}

// Runs -----------------------------------------------------------------------------------------

/// `POST /api/runs`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartRunRequest {
    pub strategy_id: String,
    /// Absent: DRY_RUN decides.
    #[serde(default)]
    pub dry_run: Option<bool>,
}

pub async fn start_run(
    State(handle): State<Handle>,
    ApiJson(request): ApiJson<StartRunRequest>,
) -> ApiResult<Response> {
    let started: RunStarted = ops::start_run(
        &handle,
        &request.strategy_id,
        request.dry_run,
        TriggeredBy::Api,
    )
    .await?;
    let location = format!("/api/runs/{}", started.run_id);
    Ok(with_location(StatusCode::ACCEPTED, &location, started))
}

pub async fn list_runs(
    State(handle): State<Handle>,
    Params(query): Params,
) -> ApiResult<Json<Vec<RunView>>> {
    let query = RunQuery {
        strategy_id: query.text("strategyId").map(str::to_string),
        state: query.text("state").map(str::to_string),
        limit: query.integer("limit"),
        offset: query.integer("offset"),
    };
    Ok(Json(ops::list_runs(&handle, &query).await?))
}

pub async fn get_run(
    State(handle): State<Handle>,
    ApiPath(run_id): ApiPath<String>,
) -> ApiResult<Json<RunDetail>> {
    Ok(Json(ops::run_detail(&handle, &run_id).await?))
}

pub async fn resume_run(
    State(handle): State<Handle>,
    ApiPath(run_id): ApiPath<String>,
) -> ApiResult<Response> {
    let resumed = ops::resume_run(&handle, &run_id).await?;
    let location = format!("/api/runs/{}", resumed.run_id);
    Ok(with_location(StatusCode::ACCEPTED, &location, resumed))
}

/// `POST /api/runs/{runId}/cancel`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelRunRequest {
    /// Why (kept in the audit log).
    pub reason: String,
}

pub async fn cancel_run(
    State(handle): State<Handle>,
    ApiPath(run_id): ApiPath<String>,
    ApiJson(request): ApiJson<CancelRunRequest>,
) -> ApiResult<Json<CancelledRun>> {
    Ok(Json(
        ops::cancel_run(&handle, &run_id, &request.reason, ACTOR).await?,
    ))
}

// Keys -----------------------------------------------------------------------------------------

pub async fn list_keys(
    State(handle): State<Handle>,
    Params(query): Params,
) -> ApiResult<Json<Vec<KeyView>>> {
    let wallet = query.text("wallet");
    if let Some(wallet) = wallet {
        ops::check_wallet(wallet)?;
    }
    Ok(Json(
        ops::list_keys(&handle, query.text("strategyId"), wallet).await?,
    ))
}

pub async fn wallet_keys(
    State(handle): State<Handle>,
    ApiPath(wallet): ApiPath<String>,
) -> ApiResult<Json<Vec<KeyView>>> {
    ops::check_wallet(&wallet)?;
    Ok(Json(ops::list_keys(&handle, None, Some(&wallet)).await?))
}

pub async fn key_usage(
    State(handle): State<Handle>,
    ApiPath(key_hash): ApiPath<String>,
    Params(query): Params,
) -> ApiResult<Json<Vec<UsageView>>> {
    let limit = query.integer("limit").unwrap_or_default();
    Ok(Json(ops::key_usage(&handle, &key_hash, limit).await?))
}

pub async fn rotate_key(
    State(handle): State<Handle>,
    ApiPath(key_hash): ApiPath<String>,
) -> ApiResult<Json<RotatedKey>> {
    Ok(Json(ops::rotate_key(&handle, &key_hash, ACTOR).await?))
}

pub async fn revoke_key(
    State(handle): State<Handle>,
    ApiPath(key_hash): ApiPath<String>,
) -> ApiResult<Json<RevokedKey>> {
    Ok(Json(ops::revoke_key(&handle, &key_hash, ACTOR).await?))
}

// Pool, stats, usage ---------------------------------------------------------------------------

pub async fn pool(State(handle): State<Handle>) -> ApiResult<Json<PoolView>> {
    Ok(Json(ops::pool_status_view(&handle).await?))
}

pub async fn pool_history(
    State(handle): State<Handle>,
    Params(query): Params,
) -> ApiResult<Json<Vec<PoolSnapshotView>>> {
    let limit = query.integer("limit").unwrap_or_default();
    Ok(Json(ops::pool_history(&handle, limit).await?))
}

pub async fn stats(State(handle): State<Handle>) -> ApiResult<Json<StatsView>> {
    Ok(Json(ops::stats(&handle).await?))
}

pub async fn strategy_usage(
    State(handle): State<Handle>,
    Params(query): Params,
) -> ApiResult<Json<Vec<UsageView>>> {
    let strategy_id = query.text("strategyId").unwrap_or_default();
    let limit = query.integer("limit").unwrap_or_default();
    Ok(Json(
        ops::strategy_usage(&handle, strategy_id, limit).await?,
    ))
}

// Operations -----------------------------------------------------------------------------------

pub async fn kill_switch(State(handle): State<Handle>) -> ApiResult<Json<KillSwitchView>> {
    Ok(Json(ops::kill_switch_status(&handle).await?))
}

/// `PUT /api/kill-switch`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KillSwitchRequest {
    pub on: bool,
}

pub async fn set_kill_switch(
    State(handle): State<Handle>,
    ApiJson(request): ApiJson<KillSwitchRequest>,
) -> ApiResult<Json<KillSwitchView>> {
    Ok(Json(
        ops::set_kill_switch(&handle, request.on, ACTOR).await?,
    ))
}

/// `POST /api/reconcile` (the body is optional: none means report only).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReconcileRequest {
    #[serde(default)]
    pub fix: bool,
}

pub async fn reconcile(
    State(handle): State<Handle>,
    OptionalApiJson(request): OptionalApiJson<ReconcileRequest>,
) -> ApiResult<Json<ReconcileReport>> {
    let fix = request.unwrap_or_default().fix;
    Ok(Json(ops::reconcile(&handle, fix, ACTOR).await?))
}
