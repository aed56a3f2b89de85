//! OpenRouter: the management API client and the OpenRouterActor that owns it.

pub mod actor;
pub mod client;

pub use actor::{
    DEFAULT_MAX_CONCURRENCY, OpenRouterActor, OpenRouterArgs, OpenRouterCallError, OpenRouterMsg,
};
pub use client::{
    CreateKey, CreatedKey, Credits, Key, KeyUpdate, LimitReset, OpenRouterClient, OpenRouterError,
};
