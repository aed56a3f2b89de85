//! The one integration test binary: drives the real daemon (in-process and as a process) over real
//! HTTP on loopback, the real admin socket and a real SQLite file, and the sandbox fakes.

mod admin_socket;
mod api;
mod binary;
mod chain_actor;
mod chain_clients;
mod cli;
mod crash_kill;
mod fault_matrix;
mod fault_world;
mod health;
mod holder;
mod keys_maintenance;
mod load;
mod openrouter_actor;
mod ops;
mod partner_fees;
mod pipeline;
mod pipeline_allowance;
mod pipeline_crash;
mod pool;
mod sandbox_bags;
mod sandbox_cli;
mod sandbox_openrouter;
mod sandbox_rpc;
mod sandbox_world;
mod scheduler;
mod secrets;
mod supervision;
mod supervision_failpoints;
mod support;
mod tx_protocol;
