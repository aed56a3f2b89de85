//! The one route table of the API: what every route is (method, path, operation id, auth,
//! rate-limit class, query parameters, body, responses) and which handler serves it. The router
//! ([`build_router`]), the gate's per-route rules and the OpenAPI document are all built from it.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};

use super::extract::{ApiError, ParamKind, QueryParam, parse_query};
use super::{events, handlers, openapi};
use crate::daemon::Handle;
use crate::ops::MAX_PAGE;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `Authorization: Bearer <API_AUTH_TOKEN>`.
    Bearer,
    /// Anyone (documentation).
    Public,
}

/// Which per-client rate limit a route counts against (see `gate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitClass {
    /// `API_RATE_LIMIT_PER_MIN`.
    Read,
    /// A tenth of the read limit (at least 1).
    Write,
    /// Starting work (runs, resumes, reconciles): the write limit, at most 30 a minute.
    Work,
}

/// A request body a route takes, by OpenAPI component name.
#[derive(Clone, Copy, Debug)]
pub struct BodySpec {
    pub schema: &'static str,
    /// `false`: an empty body means the defaults.
    pub required: bool,
}

/// What a response carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content {
    Empty,
    /// One object of this component.
    Json(&'static str),
    /// An array of this component.
    JsonList(&'static str),
    /// `text/event-stream`.
    EventStream,
}

/// One response a route gives on purpose (the gate's and extractors' errors are added to the
/// document from the route's other properties).
#[derive(Clone, Copy, Debug)]
pub struct Reply {
    pub status: u16,
    pub description: &'static str,
    pub content: Content,
}

/// One route.
pub struct RouteSpec {
    pub method: Method,
    /// axum 0.8 syntax: `/api/runs/{runId}`.
    pub path: &'static str,
    /// Unique, camelCase: the OpenAPI `operationId` and the rate-limit key.
    pub operation_id: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    pub access: Access,
    pub limit: LimitClass,
    pub query: &'static [QueryParam],
    pub body: Option<BodySpec>,
    pub responses: &'static [Reply],
    /// The handler, registered for the route's method.
    pub handler: fn(MethodFilter) -> MethodRouter<Handle>,
}

impl RouteSpec {
    /// The `{name}` placeholders of the path, in order.
    pub fn path_params(&self) -> Vec<&'static str> {
        self.path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .collect()
    }
}

const fn reply(status: u16, description: &'static str, content: Content) -> Reply {
    Reply {
        status,
        description,
        content,
    }
}

const fn text(
    name: &'static str,
    required: bool,
    one_of: &'static [&'static str],
    description: &'static str,
) -> QueryParam {
    QueryParam {
        name,
        kind: ParamKind::Text { one_of },
        required,
        description,
    }
}

const fn integer(
    name: &'static str,
    default: Option<u32>,
    minimum: u32,
    maximum: u32,
    description: &'static str,
) -> QueryParam {
    QueryParam {
        name,
        kind: ParamKind::Integer {
            default,
            minimum,
            maximum,
        },
        required: false,
        description,
    }
}

/// Words of `?status=` (a unit test keeps them equal to `StrategyStatus::ALL`).
pub const STRATEGY_STATUSES: &[&str] = &["active", "paused"];
/// Words of `?state=` (a unit test keeps them equal to `RunState::ALL`).
pub const RUN_STATES: &[&str] = &[
    "PENDING",
    "CLAIMING",
    "SWAPPING",
    "BRIDGING",
    "ALLOCATING",
    "PROVISIONING",
    "COMPLETE",
    "FAILED",
];

const LIMIT_DEFAULT: u32 = 100;
const STRATEGY_NOT_FOUND: Reply = reply(404, "`strategy_not_found`", Content::Json("Error"));
const RUN_NOT_FOUND: Reply = reply(404, "`run_not_found`", Content::Json("Error"));
const KEY_NOT_FOUND: Reply = reply(404, "`key_not_found`", Content::Json("Error"));
const UNAVAILABLE: Reply = reply(
    503,
    "An actor or dependency is restarting or slow; retry (`*_unavailable`, `database_locked`)",
    Content::Json("Error"),
);

/// Every route of the API.
pub static ROUTES: &[RouteSpec] = &[
    // Strategies --------------------------------------------------------------------------
    RouteSpec {
        method: Method::GET,
        path: "/api/strategies",
        operation_id: "listStrategies",
        summary: "List strategies",
        tag: "strategies",
        access: Access::Bearer,
        limit: LimitClass::Read,
        query: &[text(
            "status",
            false,
            STRATEGY_STATUSES,
            "Only strategies with this status (`invalid_status` otherwise)",
        )],
        body: None,
        responses: &[reply(200, "The strategies", Content::JsonList("Strategy"))],
        handler: |filter| on(filter, handlers::list_strategies),
    },
    RouteSpec {
        method: Method::POST,
        path: "/api/strategies",
        operation_id: "createStrategy",
        summary: "Create a strategy (absent fields take the environment's defaults)",
        tag: "strategies",
        access: Access::Bearer,
        limit: LimitClass::Write,
        query: &[],
        body: Some(BodySpec {
            schema: "StrategyInput",
            required: true,
        }),
        responses: &[
            reply(
                201,
                "Created; `Location` names it",
                Content::Json("Strategy"),
            ),
            reply(
                400,
                "`invalid_strategy` with every problem in `fields`",
                Content::Json("Error"),
            ),
        ],
        handler: |filter| on(filter, handlers::create_strategy),
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/strategies/{strategyId}",
        operation_id: "getStrategy",
        summary: "One strategy",
        tag: "strategies",
        access: Access::Bearer,
        limit: LimitClass::Read,
        query: &[],
        body: None,
        responses: &[
            reply(200, "The strategy", Content::Json("Strategy")),
            STRATEGY_NOT_FOUND,
        ],
        handler: |filter| on(filter, handlers::get_strategy),
    },
    RouteSpec {
        method: Method::PATCH,
        path: "/api/strategies/{strategyId}",
        operation_id: "updateStrategy",
        summary: "Change the given fields of a strategy (owner and token mint are immutable)",
        tag: "strategies",
        access: Access::Bearer,
        limit: LimitClass::Write,
        query: &[],
        body: Some(BodySpec {
            schema: "StrategyInput",
            required: true,
        }),
        responses: &[
            reply(200, "The updated strategy", Content::Json("Strategy")),
            reply(400, "`invalid_strategy`", Content::Json("Error")),
            STRATEGY_NOT_FOUND,
        ],
        handler: |filter| on(filter, handlers::update_strategy),
    },
    RouteSpec {
        method: Method::POST,
        path: "/api/strategies/{strategyId}/enable",
        operation_id: "enableStrategy",
        summary: "Set a strategy active (its schedule fires again)",
        tag: "strategies",
        access: Access::Bearer,
        limit: LimitClass::Write,
        query: &[],
        body: None,
        responses: &[
            reply(200, "The strategy", Content::Json("Strategy")),
            STRATEGY_NOT_FOUND,
        ],
        handler: |filter| on(filter, handlers::enable_strategy),
    },
    RouteSpec {
        method: Method::POST,
        path: "/api/strategies/{strategyId}/disable",
        operation_id: "disableStrategy",
        summary: "Pause a strategy (its schedule stops firing)",
        tag: "strategies",
        access: Access::Bearer,
        limit: LimitClass::Write,
        query: &[],
        body: None,
        responses: &[
            reply(200, "The strategy", Content::Json("Strategy")),
            STRATEGY_NOT_FOUND,
        ],
        handler: |filter| on(filter, handlers::disable_strategy),
    },
    RouteSpec {
        method: Method::DELETE,
        path: "/api/strategies/{strategyId}",
        operation_id: "deleteStrategy",
        summary: "Delete a strategy without run history",
        tag: "strategies",
        access: Access::Bearer,
        limit: LimitClass::Write,
        query: &[],
        body: None,
        responses: &[
            reply(204, "Deleted", Content::Empty),
            STRATEGY_NOT_FOUND,
            reply(
                409,
                "`strategy_has_runs`: its history stays; pause it instead",
                Content::Json("Error"),
            ),
        ],
        handler: |filter| on(filter, handlers::delete_strategy),
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/strategies/{strategyId}/keys",
        operation_id: "listStrategyKeys",
        summary: "Every holder key of a strategy (never a plaintext key)",
        tag: "keys",
        access: Access::Bearer,
        limit: LimitClass::Read,
        query: &[],
        body: None,
        responses: &[
            reply(200, "The keys", Content::JsonList("Key")),
            STRATEGY_NOT_FOUND,
        ],
        handler: |filter| on(filter, handlers::strategy_keys),
    },
    // Runs --------------------------------------------------------------------------------
    RouteSpec {
        method: Method::POST,
        path: "/api/runs",
        operation_id: "startRun",
        summary: "Start a run; answers once it is recorded while it proceeds in its worker",
        tag: "runs",
        access: Access::Bearer,
        limit: LimitClass::Work,
        query: &[],
        body: Some(BodySpec {
            schema: "StartRunRequest",
            required: true,
        }),
        responses: &[
            reply(
                202,
                "Recorded and proceeding; `Location` names the run",
                Content::Json("RunStarted"),
            ),
            STRATEGY_NOT_FOUND,
            reply(
                409,
                "Refused: `run_in_progress`, or blocked by policy (`kill_switch`, `daily_limit`) \
                 with the FAILED run recorded in `runId`",
                Content::Json("Error"),
            ),
            UNAVAILABLE,
        ],
        handler: |filter| on(filter, handlers::start_run),
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/runs",
        operation_id: "listRuns",
        summary: "Runs, newest first",
        tag: "runs",
        access: Access::Bearer,
        limit: LimitClass::Read,
        query: &[
            text("strategyId", false, &[], "Only this strategy's runs"),
            text(
                "state",
                false,
                RUN_STATES,
                "Only runs in this state (`invalid_state` otherwise)",
            ),
            integer(
                "limit",
                Some(50),
                1,
                MAX_PAGE,
                "Page size (`invalid_limit` outside the range)",
            ),
            integer("offset", Some(0), 0, u32::MAX, "Runs to skip"),
        ],
        body: None,
        responses: &[reply(200, "The runs", Content::JsonList("Run"))],
        handler: |filter| on(filter, handlers::list_runs),
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/runs/{runId}",
        operation_id: "getRun",
        summary: "A run with its phase log, transactions and allocation counts",
        tag: "runs",
        access: Access::Bearer,
        limit: LimitClass::Read,
        query: &[],
        body: None,
        responses: &[
            reply(200, "The run", Content::Json("RunDetail")),
            RUN_NOT_FOUND,
        ],
        handler: |filter| on(filter, handlers::get_run),
    },
    RouteSpec {
        method: Method::POST,
        path: "/api/runs/{runId}/resume",
        operation_id: "resumeRun",
        summary: "Resume a FAILED run at the phase it failed in",
        tag: "runs",
        access: Access::Bearer,
        limit: LimitClass::Work,
        query: &[],
        body: None,
        responses: &[
            reply(202, "Resumed and proceeding", Content::Json("RunStarted")),
            RUN_NOT_FOUND,
            reply(
                409,
                "`run_not_resumable` (not FAILED, blocked by policy when created, or cancelled), \
                 `run_in_progress`",
                Content::Json("Error"),
            ),
            UNAVAILABLE,
        ],
        handler: |filter| on(filter, handlers::resume_run),
    },
    RouteSpec {
        method: Method::POST,
        path: "/api/runs/{runId}/cancel",
        operation_id: "cancelRun",
        summary: "Give up a FAILED run for good: its unapplied grants are released (and carried \
                  over in credits mode); it can no longer be resumed",
        tag: "runs",
        access: Access::Bearer,
        limit: LimitClass::Write,
        query: &[],
        body: Some(BodySpec {
            schema: "CancelRunRequest",
            required: true,
        }),
        responses: &[
            reply(200, "Cancelled", Content::Json("CancelledRun")),
            reply(
                400,
                "`invalid_reason` (empty) or an invalid body",
                Content::Json("Error"),
            ),
            RUN_NOT_FOUND,
            reply(
                409,
                "`run_not_cancellable` (not FAILED, blocked by policy, already cancelled, or \
                 being driven)",
                Content::Json("Error"),
            ),
            UNAVAILABLE,
        ],
        handler: |filter| on(filter, handlers::cancel_run),
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/runs/{runId}/events",
        operation_id: "runEvents",
        summary: "The run's progress as server-sent events",
        tag: "runs",
        access: Access::Bearer,
        limit: LimitClass::Read,
        query: &[],
        body: None,
        responses: &[
            reply(200, events::DESCRIPTION, Content::EventStream),
            reply(
                204,
                "The run has ended and the client has seen its `end` event: stop reconnecting",
                Content::Empty,
            ),
            reply(
                400,
                "`invalid_last_event_id`: the `Last-Event-ID` header is not an id this stream sent",
                Content::Json("Error"),
            ),
            RUN_NOT_FOUND,
        ],
        handler: |filter| on(filter, events::run_events),
    },
    // Keys --------------------------------------------------------------------------------
    RouteSpec {
        method: Method::GET,
        path: "/api/keys",
        operation_id: "listKeys",
        summary: "Holder keys (never a plaintext key)",
        tag: "keys",
        access: Access::Bearer,
        limit: LimitClass::Read,
        query: &[
            text("strategyId", false, &[], "Only this strategy's keys"),
            text(
                "wallet",
                false,
                &[],
                "Only this holder's keys (base58; `invalid_wallet` otherwise)",
            ),
        ],
        body: None,
        responses: &[reply(200, "The keys", Content::JsonList("Key"))],
        handler: |filter| on(filter, handlers::list_keys),
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/wallets/{wallet}/keys",
        operation_id: "listWalletKeys",
        summary: "One holder's keys in every strategy",
        tag: "keys",
        access: Access::Bearer,
        limit: LimitClass::Read,
        query: &[],
        body: None,
        responses: &[
            reply(200, "The keys", Content::JsonList("Key")),
            reply(400, "`invalid_wallet`", Content::Json("Error")),
        ],
        handler: |filter| on(filter, handlers::wallet_keys),
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/keys/{keyHash}/usage",
        operation_id: "keyUsage",
        summary: "A key's usage readings, newest first",
        tag: "keys",
        access: Access::Bearer,
        limit: LimitClass::Read,
        query: &[integer(
            "limit",
            Some(LIMIT_DEFAULT),
            1,
            MAX_PAGE,
            "How many readings (`invalid_limit` outside the range)",
        )],
        body: None,
        responses: &[
            reply(200, "The readings", Content::JsonList("Usage")),
            KEY_NOT_FOUND,
        ],
        handler: |filter| on(filter, handlers::key_usage),
    },
    RouteSpec {
        method: Method::POST,
        path: "/api/keys/{keyHash}/rotate",
        operation_id: "rotateKey",
        summary: "Replace a current key with a new one carrying its remaining limit",
        tag: "keys",
        access: Access::Bearer,
        limit: LimitClass::Write,
        query: &[],
        body: None,
        responses: &[
            reply(200, "The rotation", Content::Json("RotatedKey")),
            KEY_NOT_FOUND,
            reply(
                409,
                "`key_not_current`, `run_in_progress`, `allocation_open` ...",
                Content::Json("Error"),
            ),
            UNAVAILABLE,
        ],
        handler: |filter| on(filter, handlers::rotate_key),
    },
    RouteSpec {
        method: Method::POST,
        path: "/api/keys/{keyHash}/revoke",
        operation_id: "revokeKey",
        summary: "Disable a key for good (deleted on OpenRouter; its promise leaves the pool)",
        tag: "keys",
        access: Access::Bearer,
        limit: LimitClass::Write,
        query: &[],
        body: None,
        responses: &[
            reply(200, "The revocation", Content::Json("RevokedKey")),
            KEY_NOT_FOUND,
            reply(409, "`key_not_current` ...", Content::Json("Error")),
            UNAVAILABLE,
        ],
        handler: |filter| on(filter, handlers::revoke_key),
    },
    // Pool, stats, usage ------------------------------------------------------------------
    RouteSpec {
        method: Method::GET,
        path: "/api/pool",
        operation_id: "getPool",
        summary: "The credit pool now",
        tag: "pool",
        access: Access::Bearer,
        limit: LimitClass::Read,
        query: &[],
        body: None,
        responses: &[reply(200, "The pool", Content::Json("Pool")), UNAVAILABLE],
        handler: |filter| on(filter, handlers::pool),
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/pool/history",
        operation_id: "poolHistory",
        summary: "Recorded pool readings, newest first",
        tag: "pool",
        access: Access::Bearer,
        limit: LimitClass::Read,
        query: &[integer(
            "limit",
            Some(LIMIT_DEFAULT),
            1,
            MAX_PAGE,
            "How many readings (`invalid_limit` outside the range)",
        )],
        body: None,
        responses: &[reply(
            200,
            "The readings",
            Content::JsonList("PoolSnapshot"),
        )],
        handler: |filter| on(filter, handlers::pool_history),
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/stats",
        operation_id: "getStats",
        summary: "Counts and totals for dashboards",
        tag: "pool",
        access: Access::Bearer,
        limit: LimitClass::Read,
        query: &[],
        body: None,
        responses: &[reply(200, "The counts", Content::Json("Stats"))],
        handler: |filter| on(filter, handlers::stats),
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/usage",
        operation_id: "strategyUsage",
        summary: "A strategy's key usage readings, newest first",
        tag: "keys",
        access: Access::Bearer,
        limit: LimitClass::Read,
        query: &[
            text("strategyId", true, &[], "The strategy"),
            integer(
                "limit",
                Some(LIMIT_DEFAULT),
                1,
                MAX_PAGE,
                "How many readings (`invalid_limit` outside the range)",
            ),
        ],
        body: None,
        responses: &[
            reply(200, "The readings", Content::JsonList("Usage")),
            STRATEGY_NOT_FOUND,
        ],
        handler: |filter| on(filter, handlers::strategy_usage),
    },
    // Operations --------------------------------------------------------------------------
    RouteSpec {
        method: Method::GET,
        path: "/api/kill-switch",
        operation_id: "getKillSwitch",
        summary: "The kill switch (environment and runtime)",
        tag: "operations",
        access: Access::Bearer,
        limit: LimitClass::Read,
        query: &[],
        body: None,
        responses: &[reply(200, "The switch", Content::Json("KillSwitch"))],
        handler: |filter| on(filter, handlers::kill_switch),
    },
    RouteSpec {
        method: Method::PUT,
        path: "/api/kill-switch",
        operation_id: "setKillSwitch",
        summary: "Turn the runtime kill switch on or off (persisted and audited)",
        tag: "operations",
        access: Access::Bearer,
        limit: LimitClass::Write,
        query: &[],
        body: Some(BodySpec {
            schema: "KillSwitchRequest",
            required: true,
        }),
        responses: &[
            reply(200, "The switch now", Content::Json("KillSwitch")),
            UNAVAILABLE,
        ],
        handler: |filter| on(filter, handlers::set_kill_switch),
    },
    RouteSpec {
        method: Method::POST,
        path: "/api/reconcile",
        operation_id: "reconcile",
        summary: "Compare the key ledger with OpenRouter (and repair with `fix`)",
        tag: "operations",
        access: Access::Bearer,
        limit: LimitClass::Work,
        query: &[],
        body: Some(BodySpec {
            schema: "ReconcileRequest",
            required: false,
        }),
        responses: &[
            reply(
                200,
                "What was found (and done)",
                Content::Json("ReconcileReport"),
            ),
            UNAVAILABLE,
        ],
        handler: |filter| on(filter, handlers::reconcile),
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/openapi.json",
        operation_id: "openApi",
        summary: "This document",
        tag: "documentation",
        access: Access::Public,
        limit: LimitClass::Read,
        query: &[],
        body: None,
        responses: &[reply(200, "OpenAPI 3.1", Content::Json("OpenApiDocument"))],
        handler: |filter| on(filter, openapi::serve),
    },
];

/// The route serving `method` at the router path `matched` (`MatchedPath`), if any.
pub fn find(method: &Method, matched: &str) -> Option<&'static RouteSpec> {
    // HEAD is served by the GET handler.
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    ROUTES
        .iter()
        .find(|route| route.path == matched && route.method == *method)
}

/// The router: each route of [`ROUTES`] with its query validated before the handler runs, and a
/// 405 in our error shape for the other methods of its path.
pub fn build_router() -> Router<Handle> {
    let mut paths: BTreeMap<&'static str, Vec<&'static RouteSpec>> = BTreeMap::new();
    for route in ROUTES {
        paths.entry(route.path).or_default().push(route);
    }
    let mut router = Router::new();
    for (path, routes) in paths {
        let allowed: Vec<String> = routes.iter().map(|r| r.method.to_string()).collect();
        let mut method_router = MethodRouter::new();
        for route in routes {
            let filter = MethodFilter::try_from(route.method.clone())
                .unwrap_or_else(|_| panic!("{} {}: unsupported method", route.method, route.path));
            method_router = method_router.merge(
                (route.handler)(filter)
                    .route_layer(middleware::from_fn_with_state(route, validate_query)),
            );
        }
        let allowed = allowed.join(", ");
        router = router.route(
            path,
            method_router.fallback(move |method: Method| {
                let allowed = allowed.clone();
                async move { method_not_allowed(&method, path, &allowed) }
            }),
        );
    }
    router
}

/// Validates the query string against the route's declaration and hands it to the handler.
async fn validate_query(
    State(route): State<&'static RouteSpec>,
    mut request: Request,
    next: Next,
) -> Response {
    match parse_query(route.query, request.uri()) {
        Ok(values) => {
            request.extensions_mut().insert(values);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

fn method_not_allowed(method: &Method, path: &str, allowed: &str) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not served at {path}; allowed: {allowed}"),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use creditbrain_actors::store::runs::RunState;
    use creditbrain_actors::strategy::StrategyStatus;

    use super::*;

    #[test]
    fn documented_words_are_the_domain_enums() {
        let statuses: Vec<&str> = StrategyStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(STRATEGY_STATUSES, statuses.as_slice());
        let states: Vec<&str> = RunState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(RUN_STATES, states.as_slice());
    }

    #[test]
    fn operation_ids_and_method_paths_are_unique_and_under_api() {
        let ids: BTreeSet<&str> = ROUTES.iter().map(|r| r.operation_id).collect();
        assert_eq!(ids.len(), ROUTES.len());
        let keys: BTreeSet<(String, &str)> = ROUTES
            .iter()
            .map(|r| (r.method.to_string(), r.path))
            .collect();
        assert_eq!(keys.len(), ROUTES.len());
        assert!(ROUTES.iter().all(|r| r.path.starts_with("/api/")));
        // Building panics on a conflict or an unsupported method.
        let _ = build_router();
    }
}
