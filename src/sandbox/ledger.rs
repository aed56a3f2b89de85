//! API CONTRACT STUB — helper B replaces the bodies. Signatures are the agreed interface.
#![allow(unused)]

use std::time::Duration;

use solana_sdk::hash::Hash;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::Signature;
use solana_sdk::transaction::VersionedTransaction;

pub const USDC_DECIMALS: u8 = 6;
/// The base fee per signature, charged to the fee payer when a transaction lands.
pub const LAMPORTS_PER_SIGNATURE: u64 = 5_000;
/// Program ids the ledger executes (others fail the transaction with an instruction error).
pub const SYSTEM_PROGRAM_ID: Pubkey = Pubkey::from_str_const("11111111111111111111111111111111");
pub const TOKEN_PROGRAM_ID: Pubkey = Pubkey::from_str_const("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA");
pub const ASSOCIATED_TOKEN_PROGRAM_ID: Pubkey = Pubkey::from_str_const("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL");
pub const COMPUTE_BUDGET_PROGRAM_ID: Pubkey = Pubkey::from_str_const("ComputeBudget111111111111111111111111111111");
pub const WRAPPED_SOL_MINT: Pubkey = Pubkey::from_str_const("So11111111111111111111111111111111111111112");
pub const USDC_MINT_MAINNET: Pubkey = Pubkey::from_str_const("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v");

#[derive(Clone, Debug)]
pub struct LedgerOptions {
    /// Wall time per slot (mainnet ~400 ms; tests use less).
    pub slot_duration: Duration,
    /// Blocks a blockhash stays valid (150 on mainnet).
    pub blockhash_validity_blocks: u64,
    /// Slots after landing until a transaction is finalized (`confirmations: null`).
    pub finalization_depth: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenAccount {
    pub address: Pubkey,
    pub mint: Pubkey,
    pub owner: Pubkey,
    pub amount: u64,
}

/// The state of SOL and SPL-token balances, the clock and the transactions received.
#[derive(Clone)]
pub struct Ledger {}

/// Outcome of executing a transaction against the current state without committing it.
#[derive(Clone, Debug)]
pub struct Simulation {
    /// A `TransactionError` in its JSON form (`"InsufficientFundsForFee"`,
    /// `{"InstructionError":[0,{"Custom":1}]}`), `None` on success.
    pub err: Option<serde_json::Value>,
    pub logs: Vec<String>,
    pub units_consumed: u64,
    pub fee: u64,
}

#[derive(thiserror::Error, Debug, Clone)]
pub enum SubmitError {
    #[error("transaction signature verification failure")]
    SignatureFailure,
    #[error("Blockhash not found")]
    BlockhashNotFound,
    /// Preflight rejected it (fee payer cannot pay, instruction fails …).
    #[error("Transaction simulation failed: {0}")]
    Preflight(String, Box<Simulation>),
    #[error("invalid transaction: {0}")]
    Invalid(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct SignatureStatus {
    pub slot: u64,
    /// `None` once finalized.
    pub confirmations: Option<u64>,
    pub err: Option<serde_json::Value>,
    /// `processed` | `confirmed` | `finalized`.
    pub confirmation_status: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBalance {
    pub account_index: u8,
    pub mint: Pubkey,
    pub owner: Pubkey,
    pub amount: u64,
    pub decimals: u8,
}

/// A landed transaction with its metadata, as `getTransaction` reports it.
#[derive(Clone, Debug)]
pub struct LandedTransaction {
    pub slot: u64,
    pub block_time: i64,
    pub transaction: VersionedTransaction,
    pub fee: u64,
    pub err: Option<serde_json::Value>,
    pub pre_balances: Vec<u64>,
    pub post_balances: Vec<u64>,
    pub pre_token_balances: Vec<TokenBalance>,
    pub post_token_balances: Vec<TokenBalance>,
    pub log_messages: Vec<String>,
}

impl Ledger {
    pub fn new(options: LedgerOptions) -> Self {
        unimplemented!()
    }
    pub fn slot(&self) -> u64 {
        unimplemented!()
    }
    pub fn block_height(&self) -> u64 {
        unimplemented!()
    }
    /// A fresh blockhash and the last block height at which it is valid.
    pub fn latest_blockhash(&self) -> (Hash, u64) {
        unimplemented!()
    }
    pub fn is_blockhash_valid(&self, blockhash: &Hash) -> bool {
        unimplemented!()
    }
    /// Moves the chain forward at once (tests: expire blockhashes, finalize transactions).
    pub fn advance_slots(&self, slots: u64) {
        unimplemented!()
    }
    pub fn lamports(&self, account: &Pubkey) -> u64 {
        unimplemented!()
    }
    /// Seeding: adds lamports to an account out of thin air.
    pub fn airdrop(&self, account: &Pubkey, lamports: u64) {
        unimplemented!()
    }
    pub fn create_mint(&self, mint: &Pubkey, decimals: u8) {
        unimplemented!()
    }
    pub fn mint_decimals(&self, mint: &Pubkey) -> Option<u8> {
        unimplemented!()
    }
    /// Seeding: creates the token account at `address` (for `mint`, owned by `owner`) if needed
    /// and adds `amount`.
    pub fn mint_to(&self, address: &Pubkey, mint: &Pubkey, owner: &Pubkey, amount: u64) {
        unimplemented!()
    }
    pub fn token_account(&self, address: &Pubkey) -> Option<TokenAccount> {
        unimplemented!()
    }
    /// Every token account of `mint`, ordered by address.
    pub fn token_accounts_by_mint(&self, mint: &Pubkey) -> Vec<TokenAccount> {
        unimplemented!()
    }
    pub fn simulate(&self, transaction: &VersionedTransaction, verify_signatures: bool) -> Simulation {
        unimplemented!()
    }
    /// Verifies signatures and blockhash, runs preflight unless `skip_preflight`, and lands the
    /// transaction (balances change) unless `drop` — then it is acknowledged but never lands.
    pub fn submit(
        &self,
        transaction: VersionedTransaction,
        skip_preflight: bool,
        drop: bool,
    ) -> Result<Signature, SubmitError> {
        unimplemented!()
    }
    pub fn signature_status(&self, signature: &Signature) -> Option<SignatureStatus> {
        unimplemented!()
    }
    pub fn landed(&self, signature: &Signature) -> Option<LandedTransaction> {
        unimplemented!()
    }
}

/// The associated token account of `owner` for `mint` (the real derivation).
pub fn associated_token_address(owner: &Pubkey, mint: &Pubkey) -> Pubkey {
    unimplemented!()
}

/// SPL Token `TransferChecked` (instruction 12): `source` → `destination`, signed by `authority`.
pub fn transfer_checked_instruction(
    source: &Pubkey,
    mint: &Pubkey,
    destination: &Pubkey,
    authority: &Pubkey,
    amount: u64,
    decimals: u8,
) -> solana_sdk::instruction::Instruction {
    unimplemented!()
}
