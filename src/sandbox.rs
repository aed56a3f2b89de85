//! The sandbox: faithful fakes of Bags.fm, Solana RPC (with Helius DAS) and OpenRouter on loopback,
//! with latency and fault injection and a control API, for `creditbrain sandbox` and the tests.
//!
//! One [`Ledger`] is shared by the RPC fake (which executes transactions on it) and the Bags fake
//! (which builds claim and swap transactions against it), so a claim really moves lamports and a
//! swap really moves USDC. One [`Faults`] plan covers every fake; the control server exposes it
//! together with each fake's state under `/_sandbox/`.

pub mod bags;
pub mod faults;
pub mod ledger;
pub mod openrouter;
pub mod rpc;
pub mod world;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use serde_json::json;
use solana_sdk::signature::Signer;
use tokio::task::JoinHandle;

use self::bags::{BagsFake, BagsOptions};
use self::faults::{ErrorStyle, Faults};
use self::ledger::{Ledger, LedgerOptions, USDC_MINT_MAINNET};
use self::openrouter::OpenRouterFake;
use self::rpc::RpcFake;
use self::world::{World, WorldOptions};

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

/// How to build a sandbox.
#[derive(Clone, Debug)]
pub struct SandboxOptions {
    pub world: WorldOptions,
    pub ledger: LedgerOptions,
    /// Bags' sliding hourly request budget.
    pub bags_rate_limit_per_hour: u32,
    /// USDC base units per SOL at which the Bags fake quotes.
    pub usdc_per_sol: u64,
    /// The OpenRouter account's credits, in micro-USD.
    pub openrouter_credits_micro_usd: i64,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            world: WorldOptions::default(),
            ledger: LedgerOptions::default(),
            bags_rate_limit_per_hour: 1_000,
            // 150 USDC per SOL.
            usdc_per_sol: 150_000_000,
            // $500.
            openrouter_credits_micro_usd: 500_000_000,
        }
    }
}

/// Every fake running on loopback, with the seeded world and the credentials to reach them.
pub struct Sandbox {
    pub ledger: Ledger,
    pub faults: Faults,
    pub bags: BagsFake,
    pub openrouter: OpenRouterFake,
    pub rpc: RpcFake,
    pub world: World,
    /// Base URLs: Bags without `/api/v1`, OpenRouter without `/api/v1`, RPC and Helius as roots.
    pub bags_url: String,
    pub rpc_url: String,
    pub helius_url: String,
    pub openrouter_url: String,
    pub control_url: String,
    pub bags_api_key: String,
    pub helius_api_key: String,
    pub openrouter_management_key: String,
    tasks: Vec<JoinHandle<()>>,
}

impl Sandbox {
    /// Seeds the world and starts every fake and the control server on ephemeral loopback ports.
    pub async fn start(options: SandboxOptions) -> std::io::Result<Self> {
        let ledger = Ledger::new(options.ledger.clone());
        let faults = Faults::new();
        let bags_api_key = format!("bags_sandbox_{}", random_hex(16));
        let helius_api_key = random_uuid();
        let openrouter_management_key = format!("sk-or-v1-{}", random_hex(32));
        let bags = BagsFake::new(
            ledger.clone(),
            BagsOptions {
                api_keys: vec![bags_api_key.clone()],
                usdc_mint: USDC_MINT_MAINNET,
                usdc_per_sol: options.usdc_per_sol,
                rate_limit_per_hour: options.bags_rate_limit_per_hour,
                ..BagsOptions::default()
            },
        );
        let openrouter = OpenRouterFake::new(
            openrouter_management_key.clone(),
            options.openrouter_credits_micro_usd,
        );
        let rpc = RpcFake::new(ledger.clone(), faults.clone());
        let world = world::seed(&ledger, &bags, &options.world);

        let mut tasks = Vec::new();
        let serve = serve_on_loopback;
        let (bags_address, task) =
            serve(faults.wrap("bags", ErrorStyle::Bags, bags.router())).await?;
        tasks.push(task);
        let (rpc_address, task) =
            serve(faults.wrap("rpc", ErrorStyle::JsonRpc, rpc.router("rpc"))).await?;
        tasks.push(task);
        let (helius_address, task) =
            serve(faults.wrap("helius", ErrorStyle::JsonRpc, rpc.router("helius"))).await?;
        tasks.push(task);
        let (openrouter_address, task) =
            serve(faults.wrap("openrouter", ErrorStyle::OpenRouter, openrouter.router())).await?;
        tasks.push(task);

        let summary = {
            let (ledger, signer, token_mint) =
                (ledger.clone(), world.signer.pubkey(), world.token_mint);
            get(move || {
                let (ledger, signer, token_mint) = (ledger.clone(), signer, token_mint);
                async move {
                    axum::Json(json!({
                        "slot": ledger.slot(),
                        "block_height": ledger.block_height(),
                        "signer": signer.to_string(),
                        "signer_lamports": ledger.lamports(&signer),
                        "token_mint": token_mint.to_string(),
                    }))
                }
            })
        };
        let control = Router::new()
            .route("/_sandbox", summary)
            .merge(faults.control_routes())
            .merge(rpc.control_routes())
            .merge(bags.control_routes())
            .merge(openrouter.control_routes());
        let (control_address, task) = serve(control).await?;
        tasks.push(task);

        Ok(Self {
            ledger,
            faults,
            bags,
            openrouter,
            rpc,
            world,
            bags_url: format!("http://{bags_address}"),
            rpc_url: format!("http://{rpc_address}"),
            helius_url: format!("http://{helius_address}"),
            openrouter_url: format!("http://{openrouter_address}"),
            control_url: format!("http://{control_address}"),
            bags_api_key,
            helius_api_key,
            openrouter_management_key,
            tasks,
        })
    }

    /// The variables that point a daemon at this sandbox (secrets included); paths, port and
    /// log level are the caller's.
    pub fn daemon_vars(&self) -> BTreeMap<String, String> {
        [
            ("BAGS_API_KEY", self.bags_api_key.clone()),
            ("HELIUS_API_KEY", self.helius_api_key.clone()),
            (
                "OPENROUTER_MANAGEMENT_KEY",
                self.openrouter_management_key.clone(),
            ),
            ("SIGNER_PRIVATE_KEY", self.world.signer.to_base58_string()),
            ("SOLANA_NETWORK", "mainnet-beta".to_string()),
            ("BAGS_API_BASE_URL", format!("{}/api/v1", self.bags_url)),
            (
                "HELIUS_RPC_URL",
                format!("{}/?api-key={}", self.helius_url, self.helius_api_key),
            ),
            ("SOLANA_RPC_URL", self.rpc_url.clone()),
            (
                "OPENROUTER_BASE_URL",
                format!("{}/api/v1", self.openrouter_url),
            ),
            ("DISTRIBUTION_TOKEN_MINT", self.world.token_mint.to_string()),
            // The seeded positions hold about 5.5 SOL; claim from 1 SOL up.
            ("FEE_THRESHOLD_SOL", "1".to_string()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// `bytes` random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buffer = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buffer);
    buffer.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn random_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}
