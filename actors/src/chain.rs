//! The chain side: Bags, Solana RPC, Helius DAS and the signer, owned by the ChainActor.

pub mod actor;
pub mod bags;
pub mod helius;
pub mod protocol;
pub mod rpc;
pub mod signer;
