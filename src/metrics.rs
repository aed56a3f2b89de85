//! `GET /metrics` in the Prometheus text format.

use axum::Router;

use crate::daemon::Handle;

/// The `/metrics` route (being built: see issue 6).
pub fn router(_handle: Handle) -> Router<Handle> {
    Router::new()
}
