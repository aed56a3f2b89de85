//! The sandbox: faithful fakes of Bags.fm, Solana RPC (with Helius DAS) and OpenRouter on loopback,
//! with latency and fault injection and a control API, for `creditbrain sandbox` and the tests.

pub mod bags;
pub mod faults;
pub mod ledger;
pub mod openrouter;
pub mod rpc;

use std::net::SocketAddr;

use axum::Router;
use tokio::task::JoinHandle;

/// Serves `router` on an ephemeral loopback port until the task is aborted.
pub async fn serve_on_loopback(router: Router) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::warn!(error = %error, "sandbox server stopped");
        }
    });
    Ok((address, task))
}
