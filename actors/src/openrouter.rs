//! OpenRouter: the management API client (and, in a later issue, the OpenRouterActor that owns it).

pub mod client;

pub use client::{Credits, OpenRouterClient, OpenRouterError};
