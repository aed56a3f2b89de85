//! `creditbrain-actors`: CreditBrain's runtime — domain types, the store, integration clients,
//! actors and their supervision. It knows nothing of axum, clap or the admin socket.

pub mod chain;
pub mod distribution;
pub mod failpoint;
pub mod health;
pub mod http;
pub mod keys_maintenance;
pub mod keyvault;
pub mod metrics;
pub mod openrouter;
pub mod pool;
pub mod resilience;
pub mod run;
pub mod schedule;
pub mod scheduler;
pub mod secret;
pub mod store;
pub mod strategy;
pub mod supervisor;
