//! `creditbrain`: the shell around the runtime — configuration, telemetry, daemon wiring, the HTTP
//! API, the admin socket and the command line.

pub mod admin;
pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod holder;
pub mod http;
pub mod metrics;
pub mod ops;
pub mod rate_limit;
pub mod readiness;
pub mod sandbox;
pub mod telemetry;
