//! Holder key reveal under `/holder`: a single-use challenge signed by the holder's wallet
//! (ed25519) reveals the plaintext key once, or replaces a lost key.

use axum::Router;

use crate::daemon::Handle;

/// The `/holder` routes (being built: see issue 6).
pub fn router(_handle: Handle) -> Router<Handle> {
    Router::new()
}
