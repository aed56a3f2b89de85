//! The OpenAPI 3.1 document of the API, generated from the route table ([`ROUTES`]) so it lists
//! exactly what the router serves, with hand-written JSON Schemas of the bodies and views (kept
//! to the serde field names of `crate::ops` and the actors' types; the integration tests check
//! real responses against them).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::response::Json;
use creditbrain_actors::store::runs::RunState;
use creditbrain_actors::strategy::{
    DistributionMode, FeeSource, LimitReset, StrategyInput, StrategyStatus,
};
use serde_json::{Map, Value, json};

use super::extract::{MAX_BODY_BYTES, ParamKind, QueryParam};
use super::routes::{Access, Content, LimitClass, ROUTES, RouteSpec};

/// `GET /api/openapi.json`.
pub async fn serve() -> Json<Value> {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    Json(DOCUMENT.get_or_init(document).clone())
}

/// The whole document.
pub fn document() -> Value {
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for route in ROUTES {
        paths
            .entry(route.path)
            .or_default()
            .insert(route.method.as_str().to_ascii_lowercase(), operation(route));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "CreditBrain operator API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Operate CreditBrain: strategies, runs, holder keys, the credit pool. \
                Every route but this document needs `Authorization: Bearer <API_AUTH_TOKEN>`. \
                Errors are always `{\"error\":{\"code\",\"message\"}}` with a stable snake_case \
                code. Money is integers: micro-USD, lamports, USDC base units.",
        },
        "tags": [
            {"name": "strategies"}, {"name": "runs"}, {"name": "keys"}, {"name": "pool"},
            {"name": "operations"}, {"name": "documentation"},
        ],
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "API_AUTH_TOKEN"},
            },
        },
    })
}

fn operation(route: &RouteSpec) -> Value {
    let mut parameters: Vec<Value> = route
        .path_params()
        .into_iter()
        .map(|name| {
            json!({
                "name": name,
                "in": "path",
                "required": true,
                "schema": {"type": "string"},
                "description": path_param_description(name),
            })
        })
        .collect();
    parameters.extend(route.query.iter().map(query_parameter));
    let streams = route
        .responses
        .iter()
        .any(|reply| reply.content == Content::EventStream);
    if streams {
        parameters.push(json!({
            "name": "Last-Event-ID",
            "in": "header",
            "required": false,
            "schema": {"type": "string"},
            "description": "The last event id received: the stream continues after it",
        }));
    }
    let mut operation = json!({
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
        "security": match route.access {
            Access::Bearer => json!([{"bearerAuth": []}]),
            Access::Public => json!([]),
        },
        "parameters": parameters,
        "responses": responses(route),
        "x-rate-limit": match route.limit {
            LimitClass::Read => "read: API_RATE_LIMIT_PER_MIN per address",
            LimitClass::Write => "write: a tenth of API_RATE_LIMIT_PER_MIN per address",
            LimitClass::Work => "work: the write limit, at most 30 a minute per address",
        },
    });
    if let Some(body) = route.body {
        operation["requestBody"] = json!({
            "required": body.required,
            "content": {"application/json": {"schema": reference(body.schema)}},
        });
    }
    operation
}

fn path_param_description(name: &str) -> &'static str {
    match name {
        "strategyId" => "The strategy's id",
        "runId" => "The run's id",
        "wallet" => "A holder's wallet (base58)",
        "keyHash" => "The key's OpenRouter hash",
        _ => "An id",
    }
}

fn query_parameter(param: &QueryParam) -> Value {
    let schema = match param.kind {
        ParamKind::Text { one_of: [] } => json!({"type": "string"}),
        ParamKind::Text { one_of } => json!({"type": "string", "enum": one_of}),
        ParamKind::Integer {
            default,
            minimum,
            maximum,
        } => {
            let mut schema = json!({"type": "integer", "minimum": minimum, "maximum": maximum});
            if let Some(default) = default {
                schema["default"] = json!(default);
            }
            schema
        }
    };
    json!({
        "name": param.name,
        "in": "query",
        "required": param.required,
        "schema": schema,
        "description": param.description,
    })
}

/// The route's own replies plus the ones the gate and the extractors give it.
fn responses(route: &RouteSpec) -> Value {
    let mut replies: BTreeMap<u16, (Vec<String>, Content)> = BTreeMap::new();
    let mut add = |status: u16, description: String, content: Content| {
        replies
            .entry(status)
            .or_insert_with(|| (Vec::new(), content))
            .0
            .push(description);
    };
    for reply in route.responses {
        add(reply.status, reply.description.to_string(), reply.content);
    }
    let error = Content::Json("Error");
    if !route.query.is_empty() {
        add(
            400,
            "`invalid_query`: an unknown, repeated, empty or malformed query parameter \
             (named in `parameter`)"
                .into(),
            error,
        );
    }
    if let Some(body) = route.body {
        add(
            400,
            "`invalid_json` (with `line`, `column`) or `invalid_body` (wrong type, unknown or \
             missing field; named in `field`)"
                .into(),
            error,
        );
        add(
            413,
            format!("`payload_too_large`: the body is over {MAX_BODY_BYTES} bytes"),
            error,
        );
        let when = if body.required {
            ""
        } else {
            " (a non-empty body)"
        };
        add(
            415,
            format!("`unsupported_media_type`: Content-Type is not application/json{when}"),
            error,
        );
    }
    if route.access == Access::Bearer {
        add(
            401,
            "`unauthorized`: missing or wrong bearer token (`WWW-Authenticate: Bearer`)".into(),
            error,
        );
    }
    add(
        429,
        "`rate_limited`, or `too_many_auth_failures` after repeated bad tokens from the \
         address; `Retry-After` says when to retry"
            .into(),
        error,
    );
    add(
        500,
        "`internal_error`: the cause is in the daemon's log".into(),
        error,
    );
    let mut out = Map::new();
    for (status, (descriptions, content)) in replies {
        let mut response = json!({ "description": descriptions.join("; ") });
        match content {
            Content::Empty => {}
            Content::Json(name) => {
                response["content"] = json!({"application/json": {"schema": reference(name)}});
            }
            Content::JsonList(name) => {
                response["content"] = json!({"application/json": {"schema": {"type": "array", "items": reference(name)}}});
            }
            Content::EventStream => {
                response["content"] = json!({"text/event-stream": {"schema": {"type": "string"}}});
            }
        }
        out.insert(status.to_string(), response);
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------------
// Schemas

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn nullable_string(description: &str) -> Value {
    json!({"type": ["string", "null"], "description": description})
}

fn integer(description: &str) -> Value {
    json!({"type": "integer", "description": description})
}

fn count(description: &str) -> Value {
    json!({"type": "integer", "minimum": 0, "description": description})
}

fn nullable_integer(description: &str) -> Value {
    json!({"type": ["integer", "null"], "description": description})
}

fn boolean(description: &str) -> Value {
    json!({"type": "boolean", "description": description})
}

fn words(values: Vec<&'static str>, description: &str) -> Value {
    json!({"type": "string", "enum": values, "description": description})
}

fn array(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

fn counts_by(description: &str) -> Value {
    json!({
        "type": "object",
        "additionalProperties": {"type": "integer", "minimum": 0},
        "description": description,
    })
}

/// A closed object whose fields are all always present (serde serializes `None` as `null`).
fn object(description: &str, fields: Vec<(&str, Value)>) -> Value {
    let required: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
    let properties: Map<String, Value> = fields
        .into_iter()
        .map(|(name, schema)| (name.to_string(), schema))
        .collect();
    json!({
        "type": "object",
        "description": description,
        "required": required,
        "properties": properties,
        "additionalProperties": false,
    })
}

fn with_required(mut schema: Value, required: &[&str]) -> Value {
    schema["required"] = json!(required);
    schema
}

fn all_words<T: Copy>(all: &[T], as_str: fn(&T) -> &'static str) -> Vec<&'static str> {
    all.iter().map(as_str).collect()
}

/// `StrategyInput`'s fields as serde names them (from a value with every field set), so a new
/// field cannot be left out of the schema unnoticed (`schemas` panics on an unknown one).
fn strategy_input_fields() -> Vec<String> {
    use creditbrain_actors::strategy::CustomWeightInput;
    let text = || Some(String::new());
    let full = StrategyInput {
        owner_wallet: text(),
        token_mint: text(),
        fee_source: text(),
        threshold_sol: text(),
        slippage_bps: text(),
        distribution_mode: text(),
        top_n: text(),
        custom_weights: Some(vec![CustomWeightInput::default()]),
        exclusions: Some(Vec::new()),
        min_holding_base_units: text(),
        max_grant_usd: text(),
        max_key_limit_usd: text(),
        key_limit_reset: text(),
        key_expiry_days: text(),
        reserve_pct: text(),
        schedule: text(),
        status: text(),
    };
    match serde_json::to_value(&full) {
        Ok(Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn strategy_input_schema() -> Value {
    let scalar =
        |description: &str| json!({"type": ["string", "number"], "description": description});
    let mut properties = Map::new();
    for field in strategy_input_fields() {
        let schema = match field.as_str() {
            "ownerWallet" => {
                scalar("Base58 wallet whose Bags fees are claimed (required to create; immutable)")
            }
            "tokenMint" => scalar("Base58 mint of the community's token (immutable)"),
            "feeSource" => scalar(&format!(
                "One of {}",
                all_words(FeeSource::ALL, FeeSource::as_str).join(", ")
            )),
            "thresholdSol" => {
                scalar("SOL (up to 9 decimals), 1–100: smaller claimable fees skip the run")
            }
            "slippageBps" => scalar("Integer basis points, 0–1000"),
            "distributionMode" => scalar(&format!(
                "One of {}",
                all_words(DistributionMode::ALL, DistributionMode::as_str).join(", ")
            )),
            "topN" => scalar("Integer ≥ 1 (TOP_N_HOLDERS)"),
            "customWeights" => array(json!({
                "type": "object",
                "properties": {
                    "wallet": {"type": ["string", "number"], "description": "Base58 wallet"},
                    "weight": {"type": ["string", "number"], "description": "Positive integer"},
                },
                "additionalProperties": false,
            })),
            "exclusions" => json!({
                "type": "array",
                "items": {"type": ["string", "number"]},
                "description": "Base58 wallets that never receive a grant (replaces the list)",
            }),
            "minHoldingBaseUnits" => scalar("Integer token base units a holder needs"),
            "maxGrantUsd" => scalar("USD, whole cents, ≥ 1.00 and ≤ maxKeyLimitUsd"),
            "maxKeyLimitUsd" => scalar("USD, whole cents, 1.00–10000.00"),
            "keyLimitReset" => json!({
                "type": ["string", "number", "null"],
                "description": format!(
                    "One of {} or null (credits mode)",
                    all_words(LimitReset::ALL, LimitReset::as_str).join(", ")
                ),
            }),
            "keyExpiryDays" => scalar("Integer days, 0 (never) to 36500"),
            "reservePct" => scalar("Percent (up to 2 decimals), 0–50"),
            "schedule" => scalar("5-field cron, UTC"),
            "status" => scalar(&format!(
                "One of {}",
                all_words(StrategyStatus::ALL, StrategyStatus::as_str).join(", ")
            )),
            other => panic!("StrategyInput field {other} has no schema"),
        };
        properties.insert(field, schema);
    }
    json!({
        "type": "object",
        "description": "A strategy as sent: every field optional, amounts as exact decimal text \
            (JSON numbers accepted) in the runbook's units. Creating: absent fields take the \
            environment's defaults. Patching: absent fields keep their values.",
        "properties": properties,
        "additionalProperties": false,
    })
}

fn strategy_schema() -> Value {
    let fee_sources = all_words(FeeSource::ALL, FeeSource::as_str);
    let modes = all_words(DistributionMode::ALL, DistributionMode::as_str);
    let mut resets: Vec<Value> = all_words(LimitReset::ALL, LimitReset::as_str)
        .into_iter()
        .map(Value::from)
        .collect();
    resets.push(Value::Null);
    object(
        "A stored strategy: integers in stored units",
        vec![
            ("strategyId", string("Id")),
            (
                "ownerWallet",
                string("Base58 wallet whose fees are claimed"),
            ),
            ("tokenMint", string("Base58 mint of the token")),
            (
                "feeSource",
                words(fee_sources, "Which Bags fee vaults are claimed"),
            ),
            (
                "thresholdLamports",
                count("Claimable fees below this skip the run"),
            ),
            ("slippageBps", count("Swap slippage")),
            (
                "distributionMode",
                words(modes, "How a run's budget is split"),
            ),
            ("topN", count("Holders served by TOP_N_HOLDERS")),
            (
                "customWeights",
                array(object(
                    "A CUSTOM_LIST weight",
                    vec![("wallet", string("Base58")), ("weight", count("Weight"))],
                )),
            ),
            ("exclusions", array(string("Base58 wallet"))),
            (
                "minHoldingBaseUnits",
                string("Token base units, decimal text (u64)"),
            ),
            (
                "maxGrantMicroUsd",
                integer("Most one holder gets from one run"),
            ),
            (
                "maxKeyLimitMicroUsd",
                integer("Most a key's limit may reach"),
            ),
            (
                "keyLimitReset",
                json!({"type": ["string", "null"], "enum": resets, "description": "null: credits mode"}),
            ),
            ("keyExpiryDays", count("0: keys never expire")),
            ("reserveBps", count("Pool reserve")),
            ("schedule", string("5-field cron, UTC")),
            (
                "status",
                words(
                    all_words(StrategyStatus::ALL, StrategyStatus::as_str),
                    "Whether the schedule fires",
                ),
            ),
            (
                "carryOverMicroUsd",
                integer("Budget carried to the next run"),
            ),
            ("createdAt", string("RFC 3339")),
            ("updatedAt", string("RFC 3339")),
        ],
    )
}

fn run_schema() -> Value {
    let states = all_words(&RunState::ALL, RunState::as_str);
    let mut failed_states: Vec<Value> = states.iter().copied().map(Value::from).collect();
    failed_states.push(Value::Null);
    object(
        "A run (the run row): amounts are null until their phase sets them",
        vec![
            ("runId", string("Id")),
            ("strategyId", string("Its strategy")),
            (
                "state",
                words(states, "Phase in progress or next, or terminal"),
            ),
            (
                "triggeredBy",
                words(vec!["manual", "schedule", "api"], "Who started it"),
            ),
            (
                "dryRun",
                boolean("No transaction is sent and no key changed"),
            ),
            ("resumeCount", count("Times resumed")),
            ("startedAt", string("RFC 3339")),
            (
                "finishedAt",
                nullable_string("RFC 3339, when COMPLETE or FAILED"),
            ),
            ("updatedAt", string("RFC 3339")),
            ("claimedLamports", nullable_integer("Claimed")),
            ("swapInLamports", nullable_integer("Swapped in")),
            ("swappedUsdcBaseUnits", nullable_integer("USDC received")),
            ("budgetMicroUsd", nullable_integer("Budget")),
            ("carryInMicroUsd", nullable_integer("Carried in")),
            ("headroomMicroUsd", nullable_integer("Pool headroom seen")),
            (
                "allocatedMicroUsd",
                nullable_integer("Allocated to holders"),
            ),
            ("carryOutMicroUsd", nullable_integer("Carried out")),
            ("holdersCount", nullable_integer("Qualifying holders")),
            ("keysCreated", nullable_integer("Keys created")),
            ("keysUpdated", nullable_integer("Keys topped up")),
            ("keysFailed", nullable_integer("Grants that failed")),
            (
                "skippedReason",
                nullable_string("Why nothing was done, if so"),
            ),
            (
                "errorCode",
                nullable_string("FAILED: the code (KILL_SWITCH ...)"),
            ),
            ("errorDetail", nullable_string("FAILED: the detail")),
            (
                "errorFailedState",
                json!({"type": ["string", "null"], "enum": failed_states, "description": "FAILED: where"}),
            ),
        ],
    )
}

fn schemas() -> Value {
    let fix_outcome = json!({
        "type": ["object", "null"],
        "description": "null unless a fix was requested",
        "required": ["outcome"],
        "properties": {
            "outcome": {"type": "string", "enum": ["fixed", "deferred", "skipped", "failed"]},
            "reason": {"type": "string"},
            "code": {"type": "string"},
            "message": {"type": "string"},
        },
        "additionalProperties": false,
    });
    let key_ref = |description: &str| {
        object(
            description,
            vec![
                ("keyHash", string("Hash")),
                ("strategyId", string("Strategy")),
                ("holderWallet", string("Holder")),
            ],
        )
    };
    let extend = |base: Value, more: Vec<(&str, Value)>| {
        let mut schema = base;
        for (name, value) in more {
            schema["properties"][name] = value;
            if let Some(required) = schema["required"].as_array_mut() {
                required.push(json!(name));
            }
        }
        schema
    };
    json!({
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string", "description": "Stable snake_case code"},
                        "message": {"type": "string"},
                    },
                    "additionalProperties": true,
                    "description": "Some codes add fields: `fields` (invalid_strategy), \
                        `parameter` (invalid_query), `field`/`line`/`column` (invalid_body, \
                        invalid_json), `runId`/`runErrorCode` (runs blocked by policy)",
                },
            },
            "additionalProperties": false,
        },
        "StrategyInput": strategy_input_schema(),
        "Strategy": strategy_schema(),
        "StartRunRequest": with_required(object(
            "Start a run",
            vec![
                ("strategyId", string("The strategy")),
                (
                    "dryRun",
                    json!({"type": ["boolean", "null"], "description": "Absent or null: DRY_RUN decides"}),
                ),
            ],
        ), &["strategyId"]),
        "RunStarted": object(
            "A run recorded (or resumed) and proceeding in its worker",
            vec![("runId", string("Id")), ("state", string("Its state now"))],
        ),
        "CancelRunRequest": object(
            "Why the run is given up (kept in the audit log)",
            vec![("reason", string("Not empty"))],
        ),
        "CancelledRun": object(
            "What a cancel released",
            vec![
                ("runId", string("Id")),
                ("strategyId", string("Its strategy")),
                ("failedState", string("The phase it had failed in")),
                ("skippedAllocations", count("Grants still to apply, now skipped")),
                ("releasedMicroUsd", integer("Their sum: promised credit released")),
                ("carriedOverMicroUsd", integer("The part added to the strategy's carry-over")),
                ("unallocatedMicroUsd", integer("Swapped USDC the run never allocated")),
                ("unswappedLamports", integer("Claimed SOL never swapped (left in the signer wallet)")),
            ],
        ),
        "Run": run_schema(),
        "AuditEntry": object(
            "One audit row",
            vec![
                ("id", integer("Orders rows totally")),
                ("runId", nullable_string("Run")),
                ("strategyId", nullable_string("Strategy")),
                ("phase", nullable_string("The run state it is about")),
                ("action", string("What happened (state_advanced ...)")),
                ("actor", nullable_string("Who acted")),
                ("details", json!({"type": "object", "description": "Amounts, counts, reasons"})),
                ("txSignature", nullable_string("Solana transaction")),
                ("createdAt", string("RFC 3339")),
            ],
        ),
        "Transaction": object(
            "A Solana transaction of a run (never its signed bytes)",
            vec![
                ("phase", string("Run state")),
                ("purpose", string("What it does")),
                ("attempt", count("Attempt number")),
                ("signature", string("Signature")),
                ("status", string("Its status")),
                ("slot", nullable_integer("Landed slot")),
                ("error", nullable_string("Why it failed")),
                ("createdAt", string("RFC 3339")),
            ],
        ),
        "RunDetail": object(
            "A run with its phase log",
            vec![
                ("run", reference("Run")),
                ("audit", array(reference("AuditEntry"))),
                ("transactions", array(reference("Transaction"))),
                ("allocations", counts_by("Allocation rows by status")),
            ],
        ),
        "Key": object(
            "A holder's key as operators see it: never its plaintext or ciphertext",
            vec![
                ("keyHash", string("OpenRouter hash")),
                ("strategyId", string("Strategy")),
                ("holderWallet", string("Holder")),
                ("name", string("OpenRouter name")),
                ("limitMicroUsd", integer("Limit")),
                ("usageMicroUsd", integer("Usage")),
                ("limitReset", nullable_string("daily, weekly, monthly or null")),
                ("status", string("active, exhausted, rotated, revoked ...")),
                ("replacedByHash", nullable_string("Its replacement after a rotation")),
                ("awaitingReveal", boolean("The sealed key waits for the holder")),
                ("revealedAt", nullable_string("RFC 3339")),
                ("expiresAt", nullable_string("RFC 3339")),
                ("createdAt", string("RFC 3339")),
                ("lastSyncedAt", nullable_string("RFC 3339")),
            ],
        ),
        "Usage": object(
            "One usage reading of a key",
            vec![
                ("keyHash", string("Hash")),
                ("strategyId", string("Strategy")),
                ("usageMicroUsd", integer("All time")),
                ("usageDailyMicroUsd", integer("Today")),
                ("usageWeeklyMicroUsd", integer("This week")),
                ("usageMonthlyMicroUsd", integer("This month")),
                ("limitMicroUsd", nullable_integer("Limit")),
                ("limitRemainingMicroUsd", nullable_integer("Remaining")),
                ("polledAt", string("RFC 3339")),
            ],
        ),
        "RotatedKey": object(
            "A rotation",
            vec![
                ("strategyId", string("Strategy")),
                ("holderWallet", string("Holder")),
                ("oldKeyHash", string("Replaced key")),
                ("newKeyHash", string("New key (the holder reveals it)")),
                ("limitMicroUsd", integer("The new key's limit")),
                ("limitReset", nullable_string("Its reset")),
                ("oldUsageMicroUsd", integer("The old key's final usage")),
                ("oldDeleted", boolean("False: the next pass retries the delete")),
            ],
        ),
        "RevokedKey": extend(
            key_ref("A revocation"),
            vec![("remoteDeleted", boolean("False: the next pass retries the delete"))],
        ),
        "Pool": object(
            "The credit pool now",
            vec![
                ("balanceMicroUsd", integer("Account balance")),
                ("promisedMicroUsd", integer("Unused limits of current keys")),
                ("reserveBps", count("Reserve")),
                ("reserveMicroUsd", integer("Reserve amount")),
                ("openGrantsMicroUsd", integer("Allocated by runs not yet applied")),
                ("availableMicroUsd", integer("What the next run may grant")),
                ("totalCreditsMicroUsd", integer("Credits bought")),
                ("totalUsageMicroUsd", integer("Credits used")),
                ("runwaySecs", nullable_integer("At the recent burn rate")),
                ("checkedAt", string("RFC 3339")),
            ],
        ),
        "PoolSnapshot": object(
            "A recorded pool reading",
            vec![
                ("totalCreditsMicroUsd", integer("Credits")),
                ("totalUsageMicroUsd", integer("Usage")),
                ("promisedMicroUsd", integer("Promised")),
                ("reserveMicroUsd", integer("Reserve")),
                ("takenAt", string("RFC 3339")),
            ],
        ),
        "Stats": object(
            "Counts and totals",
            vec![
                ("strategiesByStatus", counts_by("Strategies by status")),
                ("runsByState", counts_by("Runs by state")),
                ("failedRunsByCode", counts_by("FAILED runs by error code")),
                ("keysByStatus", counts_by("Keys by status")),
                ("grantedMicroUsd", integer("Grants applied, all time")),
                ("swappedUsdcBaseUnits", integer("USDC from swaps, all time")),
                ("claimedLamports", integer("Claimed, all time")),
            ],
        ),
        "KillSwitch": object(
            "The kill switch",
            vec![
                ("env", boolean("EXECUTION_KILL_SWITCH (fixed at start)")),
                ("runtime", boolean("The persisted runtime toggle")),
                ("engaged", boolean("Runs are blocked (either is on)")),
            ],
        ),
        "KillSwitchRequest": object(
            "Set the runtime kill switch",
            vec![("on", boolean("On blocks new runs"))],
        ),
        "ReconcileRequest": with_required(object(
            "Reconcile options (an empty body: report only)",
            vec![("fix", boolean("Repair what can be repaired"))],
        ), &[]),
        "ReconcileReport": object(
            "What a reconcile found (and did); lists sorted by strategy, wallet, hash",
            vec![
                ("fixRequested", boolean("fix was asked for")),
                ("openrouterKeys", count("Keys OpenRouter listed")),
                ("ledgerCurrentKeys", count("Current keys in the ledger")),
                ("ignoredKeys", count("Listed keys that are not ours to judge")),
                ("missing", array(extend(key_ref("A current key OpenRouter lacks"), vec![
                    ("limitMicroUsd", integer("Ledger limit")),
                    ("usageMicroUsd", integer("Ledger usage")),
                    ("fix", fix_outcome.clone()),
                ]))),
                ("orphaned", array(extend(key_ref("A key of ours the ledger lacks"), vec![
                    ("name", string("OpenRouter name")),
                    ("limitMicroUsd", nullable_integer("null: no limit")),
                    ("usageMicroUsd", integer("Usage")),
                    ("disabled", boolean("Disabled on OpenRouter")),
                    ("fix", fix_outcome.clone()),
                ]))),
                ("limitMismatch", array(extend(key_ref("Limits that differ"), vec![
                    ("ledgerLimitMicroUsd", integer("Ledger")),
                    ("openrouterLimitMicroUsd", nullable_integer("OpenRouter; null: none")),
                    ("fix", fix_outcome),
                ]))),
                ("duplicateNames", array(object("Several keys for one name", vec![
                    ("name", string("Name")),
                    ("keyHashes", array(string("Hash"))),
                    ("ledgerKeyHash", nullable_string("The ledger's current key among them")),
                ]))),
                ("disabled", array(key_ref("A current key disabled on OpenRouter"))),
                ("pendingDelete", array(extend(key_ref("A rotated or revoked key still on OpenRouter"), vec![
                    ("status", string("rotated or revoked")),
                ]))),
                ("counts", object("Counts", [
                    "missing", "orphaned", "limitMismatch", "duplicateNames", "disabled",
                    "pendingDelete", "fixed", "deferred", "skipped", "failed",
                ].into_iter().map(|name| (name, count(name))).collect())),
            ],
        ),
        "OpenApiDocument": {"type": "object", "description": "An OpenAPI 3.1 document"},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_strategy_input_field_has_a_schema() {
        let schema = strategy_input_schema();
        let documented = schema["properties"].as_object().unwrap();
        let fields = strategy_input_fields();
        assert_eq!(fields.len(), 17, "{fields:?}");
        assert!(fields.iter().all(|field| documented.contains_key(field)));
    }
}
