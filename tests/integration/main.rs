//! The one integration test binary: drives the real daemon (in-process and as a process) over real
//! HTTP on loopback, the real admin socket and a real SQLite file.

mod admin_socket;
mod binary;
mod health;
mod supervision;
mod support;
