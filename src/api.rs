//! The operator API under `/api`: bearer `API_AUTH_TOKEN`, JSON in and out, every route a thin
//! adapter over [`crate::ops`].
//!
//! One table ([`routes::ROUTES`]) says everything about a route — method, path, operation id,
//! auth, rate-limit class, query parameters, body and responses — and both the axum router
//! ([`router`]) and the OpenAPI document ([`openapi::document`]) are built from it, so a route
//! cannot be served without being documented. The cross-cutting rules (auth, the auth-failure
//! throttle, rate limits, CORS, `Cache-Control`) live in [`gate`], which `crate::http` layers
//! over the whole daemon and which applies to every `/api` path.

pub mod events;
pub mod extract;
pub mod gate;
pub mod handlers;
pub mod openapi;
pub mod routes;

use axum::Router;

use crate::daemon::Handle;

pub use self::extract::{ApiError, MAX_BODY_BYTES};
pub use self::gate::{ApiGate, gate};

/// The `/api` routes, built from [`routes::ROUTES`] and nothing else.
pub fn router(_handle: Handle) -> Router<Handle> {
    routes::build_router()
}
