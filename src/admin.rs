//! The admin socket: newline-delimited JSON over a Unix socket, used by the CLI to talk to the
//! running daemon. `protocol` holds the messages both sides import; `server` and `client` the ends.

pub mod client;
pub mod protocol;
pub mod server;
