//! The chain side: Bags, Solana RPC, Helius DAS and the signer, owned by the ChainActor.

pub mod bags;
pub mod helius;
