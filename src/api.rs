//! The operator API under `/api`: bearer `API_AUTH_TOKEN`, JSON in and out, every route a thin
//! adapter over [`crate::ops`].

use axum::Router;

use crate::daemon::Handle;

/// The `/api` routes (being built: see issue 6).
pub fn router(_handle: Handle) -> Router<Handle> {
    Router::new()
}
