//! The sandbox ledger: SOL and SPL-token balances, a slot/blockhash clock that follows wall time,
//! and an executor for the instructions CreditBrain's transactions carry (System transfers, SPL
//! Token transfers, Associated Token Account creation, compute budget, memos), with real ed25519
//! signature checks, fees, rent rules and the error values a mainnet node reports.
//!
//! Faithful, not friendly: a transaction is rejected or dropped exactly where the real cluster
//! would reject or drop it, and a transaction that lands with an error still pays its fee.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use solana_client::rpc_response::{TransactionError, UiTransactionError};
use solana_message::VersionedMessage;
use solana_sdk::hash::{Hash, hashv};
use solana_sdk::instruction::{AccountMeta, Instruction, InstructionError};
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::Signature;
use solana_sdk::transaction::VersionedTransaction;
use solana_system_interface::instruction::SystemInstruction;

pub const USDC_DECIMALS: u8 = 6;
/// The base fee per signature, charged to the fee payer when a transaction lands.
pub const LAMPORTS_PER_SIGNATURE: u64 = 5_000;
/// Program ids the ledger executes (others fail the transaction with an instruction error).
pub const SYSTEM_PROGRAM_ID: Pubkey = Pubkey::from_str_const("11111111111111111111111111111111");
pub const TOKEN_PROGRAM_ID: Pubkey =
    Pubkey::from_str_const("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA");
pub const ASSOCIATED_TOKEN_PROGRAM_ID: Pubkey =
    Pubkey::from_str_const("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL");
pub const COMPUTE_BUDGET_PROGRAM_ID: Pubkey =
    Pubkey::from_str_const("ComputeBudget111111111111111111111111111111");
pub const WRAPPED_SOL_MINT: Pubkey =
    Pubkey::from_str_const("So11111111111111111111111111111111111111112");
pub const USDC_MINT_MAINNET: Pubkey =
    Pubkey::from_str_const("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v");
/// SPL Memo v2 and v1: accepted and logged, nothing else.
pub const MEMO_PROGRAM_ID: Pubkey =
    Pubkey::from_str_const("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr");
pub const MEMO_V1_PROGRAM_ID: Pubkey =
    Pubkey::from_str_const("Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo");

/// Owners of program accounts: builtins belong to the native loader, on-chain programs to the
/// upgradeable-era BPF loader.
pub const NATIVE_LOADER_ID: Pubkey =
    Pubkey::from_str_const("NativeLoader1111111111111111111111111111111");
pub const BPF_LOADER_ID: Pubkey =
    Pubkey::from_str_const("BPFLoader2111111111111111111111111111111111");

/// The program accounts every ledger starts with (address, loader, lamports as on mainnet), so
/// transaction metadata lists their balances as a node does.
const PROGRAM_ACCOUNTS: [(Pubkey, Pubkey, u64); 6] = [
    (SYSTEM_PROGRAM_ID, NATIVE_LOADER_ID, 1),
    (COMPUTE_BUDGET_PROGRAM_ID, NATIVE_LOADER_ID, 1),
    (TOKEN_PROGRAM_ID, BPF_LOADER_ID, 934_087_680),
    (ASSOCIATED_TOKEN_PROGRAM_ID, BPF_LOADER_ID, 731_913_600),
    (MEMO_PROGRAM_ID, BPF_LOADER_ID, 521_498_880),
    (MEMO_V1_PROGRAM_ID, BPF_LOADER_ID, 1_141_440),
];

/// Size of an SPL Token account and of a mint (the classic Token program layouts).
pub const TOKEN_ACCOUNT_LEN: usize = 165;
pub const MINT_LEN: usize = 82;
/// Rent-exempt minimum of a data-less system account (mainnet rent: 3,480 lamports per byte-year,
/// two years, 128 bytes of account overhead).
pub const SYSTEM_ACCOUNT_RENT_EXEMPT_MINIMUM: u64 = 890_880;
/// Rent-exempt minimum of a token account: what creating an associated token account costs.
pub const TOKEN_ACCOUNT_RENT_EXEMPT_MINIMUM: u64 = 2_039_280;
pub const MINT_RENT_EXEMPT_MINIMUM: u64 = 1_461_600;
/// Slots a landed signature stays in the node's status cache: older ones are only reported by
/// `getSignatureStatuses` with `searchTransactionHistory: true`, as on a real node.
pub const STATUS_CACHE_SLOTS: u64 = 300;
/// The most compute units a transaction may request.
pub const MAX_COMPUTE_UNIT_LIMIT: u64 = 1_400_000;

/// Default per-instruction compute allocation (when no `SetComputeUnitLimit`): builtin programs
/// get 3,000, every other program 200,000, as agave computes it.
const BUILTIN_DEFAULT_UNITS: u64 = 3_000;
const PROGRAM_DEFAULT_UNITS: u64 = 200_000;
/// What each executed instruction consumes, close to mainnet figures.
const SYSTEM_UNITS: u64 = 150;
const COMPUTE_BUDGET_UNITS: u64 = 150;
const TOKEN_TRANSFER_UNITS: u64 = 4_645;
const TOKEN_TRANSFER_CHECKED_UNITS: u64 = 6_200;
const TOKEN_FAILED_UNITS: u64 = 3_000;
const ATA_CREATE_UNITS: u64 = 21_400;
const ATA_EXISTING_UNITS: u64 = 4_100;
const MEMO_UNITS: u64 = 2_300;

/// The chain starts at a mainnet-like height; block height trails the slot by the slots skipped
/// before the sandbox started (mainnet skips a few percent of its leader slots).
const FIRST_SLOT: u64 = 350_000_000;
const SKIPPED_SLOTS: u64 = 21_000_000;

/// SPL Token error codes (`TokenError` order) used in `{"Custom":n}`.
const TOKEN_ERR_INSUFFICIENT_FUNDS: u32 = 1;
const TOKEN_ERR_INVALID_MINT: u32 = 2;
const TOKEN_ERR_MINT_MISMATCH: u32 = 3;
const TOKEN_ERR_OWNER_MISMATCH: u32 = 4;
const TOKEN_ERR_INVALID_INSTRUCTION: u32 = 12;
const TOKEN_ERR_OVERFLOW: u32 = 14;
const TOKEN_ERR_MINT_DECIMALS_MISMATCH: u32 = 18;
/// `SystemError::ResultWithNegativeLamports`.
const SYSTEM_ERR_NEGATIVE_LAMPORTS: u32 = 1;
/// `AssociatedTokenAccountError::InvalidOwner`.
const ATA_ERR_INVALID_OWNER: u32 = 0;

#[derive(Clone, Debug)]
pub struct LedgerOptions {
    /// Wall time per slot (mainnet ~400 ms; tests use less).
    pub slot_duration: Duration,
    /// Blocks a blockhash stays valid (150 on mainnet).
    pub blockhash_validity_blocks: u64,
    /// Slots after landing until a transaction is finalized (`confirmations: null`).
    pub finalization_depth: u64,
}

impl Default for LedgerOptions {
    /// Mainnet-like: 400 ms slots, blockhashes valid for 150 blocks, finality after 32 slots.
    fn default() -> Self {
        Self {
            slot_duration: Duration::from_millis(400),
            blockhash_validity_blocks: 150,
            finalization_depth: 32,
        }
    }
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
pub struct Ledger {
    state: Arc<Mutex<State>>,
}

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
    /// Kept for the interface; the ledger reports an unknown blockhash at preflight as
    /// `Preflight("Blockhash not found", …)` (what a node answers), and drops it silently with
    /// `skip_preflight`.
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

/// One `submit` as the sandbox saw it, for inspection by tests and the control API.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedTransaction {
    /// The first signature (the transaction id).
    pub signature: Signature,
    pub received_at: DateTime<Utc>,
    pub skip_preflight: bool,
    /// Refused to the sender (signature verification or preflight failure): the message.
    pub rejected: Option<String>,
    /// Acknowledged to the sender but never landing (an injected drop, or what the cluster does
    /// with an unpayable, wrongly signed or expired transaction sent with `skip_preflight`).
    pub dropped: bool,
    /// Why it was dropped: `injected`, or the transaction error the leader hit.
    pub drop_reason: Option<String>,
    /// The same signature had already landed: acknowledged, not executed again.
    pub duplicate: bool,
    /// The slot it landed in (for a duplicate: the slot the original landed in).
    pub landed_slot: Option<u64>,
    /// The error it landed with (it paid the fee but changed nothing else).
    pub err: Option<serde_json::Value>,
}

/// A read-only view of one account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerAccount {
    pub address: Pubkey,
    pub lamports: u64,
    pub data: LedgerAccountData,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LedgerAccountData {
    /// Owned by the System Program, no data.
    System,
    /// An executable program account owned by `loader` (its code is not modelled).
    Program { loader: Pubkey },
    /// An SPL Token mint (supply = the sum of its token accounts).
    Mint { decimals: u8, supply: u64 },
    /// An SPL Token account.
    Token(TokenAccount),
}

impl LedgerAccount {
    /// The program that owns the account.
    pub fn owner_program(&self) -> Pubkey {
        match self.data {
            LedgerAccountData::System => SYSTEM_PROGRAM_ID,
            LedgerAccountData::Program { loader } => loader,
            LedgerAccountData::Mint { .. } | LedgerAccountData::Token(_) => TOKEN_PROGRAM_ID,
        }
    }

    pub fn executable(&self) -> bool {
        matches!(self.data, LedgerAccountData::Program { .. })
    }

    /// The account data in the classic SPL Token layouts (165-byte account, 82-byte mint), empty
    /// for system accounts.
    pub fn data_bytes(&self) -> Vec<u8> {
        match &self.data {
            LedgerAccountData::System | LedgerAccountData::Program { .. } => Vec::new(),
            LedgerAccountData::Mint { decimals, supply } => {
                let mut data = Vec::with_capacity(MINT_LEN);
                // mint_authority: COption::None
                data.extend_from_slice(&[0u8; 36]);
                data.extend_from_slice(&supply.to_le_bytes());
                data.push(*decimals);
                data.push(1); // is_initialized
                // freeze_authority: COption::None
                data.extend_from_slice(&[0u8; 36]);
                data
            }
            LedgerAccountData::Token(account) => {
                let mut data = Vec::with_capacity(TOKEN_ACCOUNT_LEN);
                data.extend_from_slice(account.mint.as_ref());
                data.extend_from_slice(account.owner.as_ref());
                data.extend_from_slice(&account.amount.to_le_bytes());
                // delegate: COption::None
                data.extend_from_slice(&[0u8; 36]);
                data.push(1); // state: Initialized
                if account.mint == WRAPPED_SOL_MINT {
                    // is_native: COption::Some(rent-exempt reserve)
                    data.extend_from_slice(&1u32.to_le_bytes());
                    data.extend_from_slice(&TOKEN_ACCOUNT_RENT_EXEMPT_MINIMUM.to_le_bytes());
                } else {
                    data.extend_from_slice(&[0u8; 12]);
                }
                data.extend_from_slice(&0u64.to_le_bytes()); // delegated_amount
                // close_authority: COption::None
                data.extend_from_slice(&[0u8; 36]);
                data
            }
        }
    }
}

/// Rent-exempt minimum balance for an account holding `data_len` bytes.
pub fn rent_exempt_minimum(data_len: usize) -> u64 {
    (128 + data_len as u64) * 3_480 * 2
}

/// `amount` in UI units as a float (for `uiAmount`; money never goes through it here).
pub fn ui_amount(amount: u64, decimals: u8) -> f64 {
    amount as f64 / 10f64.powi(i32::from(decimals))
}

/// `amount` in UI units as an exact decimal string with trailing zeros trimmed, as
/// `uiAmountString` renders it (`1500000`, 6 → `"1.5"`; `0` → `"0"`).
pub fn ui_amount_string(amount: u64, decimals: u8) -> String {
    let decimals = usize::from(decimals);
    if decimals == 0 {
        return amount.to_string();
    }
    let mut digits = format!("{:0width$}", amount, width = decimals + 1);
    digits.insert(digits.len() - decimals, '.');
    digits
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string()
}

/// Whether every required signature of `transaction` is a valid ed25519 signature of its message
/// by the matching account key.
pub fn verify_signatures(transaction: &VersionedTransaction) -> bool {
    let required = usize::from(transaction.message.header().num_required_signatures);
    transaction.signatures.len() == required
        && transaction.verify_with_results().into_iter().all(|ok| ok)
}

/// The JSON form of a transaction error, exactly as RPC responses carry it.
pub fn transaction_error_json(error: &TransactionError) -> serde_json::Value {
    serde_json::to_value(UiTransactionError::from(error.clone())).unwrap_or(serde_json::Value::Null)
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum AccountKind {
    System,
    Program {
        loader: Pubkey,
    },
    Mint {
        decimals: u8,
    },
    Token {
        mint: Pubkey,
        owner: Pubkey,
        amount: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Account {
    lamports: u64,
    kind: AccountKind,
}

impl Account {
    fn system(lamports: u64) -> Self {
        Self {
            lamports,
            kind: AccountKind::System,
        }
    }

    fn data_len(&self) -> usize {
        match self.kind {
            AccountKind::System | AccountKind::Program { .. } => 0,
            AccountKind::Mint { .. } => MINT_LEN,
            AccountKind::Token { .. } => TOKEN_ACCOUNT_LEN,
        }
    }
}

/// Rent state of an account, as the runtime checks it after every transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RentState {
    Uninitialized,
    RentPaying { lamports: u64, data_len: usize },
    RentExempt,
}

fn rent_state(account: Option<&Account>) -> RentState {
    match account {
        None => RentState::Uninitialized,
        Some(account) if account.lamports == 0 => RentState::Uninitialized,
        Some(account) if account.lamports >= rent_exempt_minimum(account.data_len()) => {
            RentState::RentExempt
        }
        Some(account) => RentState::RentPaying {
            lamports: account.lamports,
            data_len: account.data_len(),
        },
    }
}

/// A rent-paying account may only stay rent-paying, same size, never gaining lamports.
fn rent_transition_allowed(pre: RentState, post: RentState) -> bool {
    match post {
        RentState::Uninitialized | RentState::RentExempt => true,
        RentState::RentPaying { lamports, data_len } => match pre {
            RentState::RentPaying {
                lamports: pre_lamports,
                data_len: pre_len,
            } => data_len == pre_len && lamports <= pre_lamports,
            _ => false,
        },
    }
}

struct Landed {
    transaction: LandedTransaction,
    units_consumed: u64,
}

struct State {
    options: LedgerOptions,
    seed: [u8; 32],
    started: Instant,
    advanced_slots: u64,
    accounts: BTreeMap<Pubkey, Account>,
    /// mint → its token accounts, ordered by address.
    by_mint: BTreeMap<Pubkey, BTreeSet<Pubkey>>,
    /// Blockhashes handed out → their last valid block height.
    blockhashes: HashMap<Hash, u64>,
    landed: HashMap<Signature, Landed>,
    received: Vec<ReceivedTransaction>,
}

impl State {
    fn slot(&self) -> u64 {
        // A zero slot duration freezes the clock (only `advance_slots` moves it).
        let elapsed = self
            .started
            .elapsed()
            .as_nanos()
            .checked_div(self.options.slot_duration.as_nanos())
            .map_or(0, |slots| u64::try_from(slots).unwrap_or(u64::MAX / 2));
        FIRST_SLOT
            .saturating_add(elapsed)
            .saturating_add(self.advanced_slots)
    }

    fn block_height(&self) -> u64 {
        self.slot() - SKIPPED_SLOTS
    }

    fn blockhash_for_slot(&self, slot: u64) -> Hash {
        hashv(&[b"creditbrain-sandbox", &self.seed, &slot.to_le_bytes()])
    }

    fn is_blockhash_valid(&self, blockhash: &Hash) -> bool {
        self.blockhashes
            .get(blockhash)
            .is_some_and(|last_valid| self.block_height() <= *last_valid)
    }

    fn decimals(&self, mint: &Pubkey) -> Option<u8> {
        match self.accounts.get(mint)?.kind {
            AccountKind::Mint { decimals } => Some(decimals),
            _ => None,
        }
    }

    fn token_account(&self, address: &Pubkey) -> Option<TokenAccount> {
        match self.accounts.get(address)?.kind {
            AccountKind::Token {
                mint,
                owner,
                amount,
            } => Some(TokenAccount {
                address: *address,
                mint,
                owner,
                amount,
            }),
            _ => None,
        }
    }

    fn put(&mut self, address: Pubkey, account: Option<Account>) {
        match account {
            // The runtime purges data-less accounts that reach zero lamports.
            Some(account) if account.lamports == 0 && account.kind == AccountKind::System => {
                self.accounts.remove(&address);
            }
            Some(account) => {
                if let AccountKind::Token { mint, .. } = account.kind {
                    self.by_mint.entry(mint).or_default().insert(address);
                }
                self.accounts.insert(address, account);
            }
            None => {
                if let Some(Account {
                    kind: AccountKind::Token { mint, .. },
                    ..
                }) = self.accounts.remove(&address)
                    && let Some(set) = self.by_mint.get_mut(&mint)
                {
                    set.remove(&address);
                }
            }
        }
    }

    fn token_balances(&self, keys: &[Pubkey], accounts: &[Option<Account>]) -> Vec<TokenBalance> {
        keys.iter()
            .zip(accounts)
            .enumerate()
            .filter_map(|(index, (_, account))| match account.as_ref()?.kind {
                AccountKind::Token {
                    mint,
                    owner,
                    amount,
                } => Some(TokenBalance {
                    account_index: u8::try_from(index).ok()?,
                    mint,
                    owner,
                    amount,
                    decimals: self.decimals(&mint).unwrap_or(0),
                }),
                _ => None,
            })
            .collect()
    }

    fn status_of(&self, landed: &Landed) -> SignatureStatus {
        let confirmations = self.slot().saturating_sub(landed.transaction.slot);
        let (confirmations, confirmation_status) =
            if confirmations >= self.options.finalization_depth {
                (None, "finalized")
            } else if confirmations >= 1 {
                (Some(confirmations), "confirmed")
            } else {
                (Some(0), "processed")
            };
        SignatureStatus {
            slot: landed.transaction.slot,
            confirmations,
            err: landed.transaction.err.clone(),
            confirmation_status,
        }
    }
}

/// What running a transaction against the state produced.
enum Outcome {
    /// Never executed and never lands (bad blockhash, fee payer cannot pay, duplicate …).
    Rejected(TransactionError),
    /// Executed: lands with `err` (fee charged, nothing else) or without (all changes).
    Executed(Box<Execution>),
}

struct Execution {
    fee: u64,
    err: Option<TransactionError>,
    logs: Vec<String>,
    units_consumed: u64,
    keys: Vec<Pubkey>,
    pre_accounts: Vec<Option<Account>>,
    post_accounts: Vec<Option<Account>>,
}

/// Checks the message shape the ledger can run: sanitized, no address lookup tables (the sandbox
/// holds none, so a node would fail to load them), no account listed twice. The error is the
/// text a node puts after `invalid transaction: `.
pub fn sanitize_transaction(transaction: &VersionedTransaction) -> Result<(), String> {
    check_message(transaction)
}

fn check_message(transaction: &VersionedTransaction) -> Result<(), String> {
    transaction.sanitize().map_err(|error| {
        format!("Transaction failed to sanitize accounts offsets correctly ({error})")
    })?;
    if let VersionedMessage::V1(_) = transaction.message {
        return Err("Transaction version (1) is not supported".to_string());
    }
    if transaction
        .message
        .address_table_lookups()
        .is_some_and(|lookups| !lookups.is_empty())
    {
        // The sandbox holds no lookup tables, so a real node would fail to load them.
        return Err("Transaction loads an address table account that doesn't exist".to_string());
    }
    let keys = transaction.message.static_account_keys();
    let unique: BTreeSet<&Pubkey> = keys.iter().collect();
    if unique.len() != keys.len() {
        return Err("Account loaded twice".to_string());
    }
    Ok(())
}

/// Compute-unit limit and price from the ComputeBudget instructions, as the runtime reads them
/// before charging the fee.
fn compute_budget(message: &VersionedMessage) -> Result<(u64, u64), TransactionError> {
    let keys = message.static_account_keys();
    let mut limit: Option<u64> = None;
    let mut price: Option<u64> = None;
    let mut heap = false;
    let mut data_size = false;
    let mut default_limit: u64 = 0;
    for (index, instruction) in message.instructions().iter().enumerate() {
        let index_u8 = u8::try_from(index).unwrap_or(u8::MAX);
        let program = keys
            .get(usize::from(instruction.program_id_index))
            .copied()
            .unwrap_or_default();
        if program == SYSTEM_PROGRAM_ID || program == COMPUTE_BUDGET_PROGRAM_ID {
            default_limit += BUILTIN_DEFAULT_UNITS;
        } else {
            default_limit += PROGRAM_DEFAULT_UNITS;
        }
        if program != COMPUTE_BUDGET_PROGRAM_ID {
            continue;
        }
        let data = &instruction.data;
        let invalid =
            TransactionError::InstructionError(index_u8, InstructionError::InvalidInstructionData);
        let duplicate = TransactionError::DuplicateInstruction(index_u8);
        match (data.first(), data.len()) {
            (Some(1), 5) => {
                if std::mem::replace(&mut heap, true) {
                    return Err(duplicate);
                }
            }
            (Some(2), 5) => {
                if limit.is_some() {
                    return Err(duplicate);
                }
                let mut bytes = [0u8; 4];
                bytes.copy_from_slice(&data[1..5]);
                limit = Some(u64::from(u32::from_le_bytes(bytes)));
            }
            (Some(3), 9) => {
                if price.is_some() {
                    return Err(duplicate);
                }
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&data[1..9]);
                price = Some(u64::from_le_bytes(bytes));
            }
            (Some(4), 5) => {
                if std::mem::replace(&mut data_size, true) {
                    return Err(duplicate);
                }
            }
            _ => return Err(invalid),
        }
    }
    let limit = limit.unwrap_or(default_limit).min(MAX_COMPUTE_UNIT_LIMIT);
    Ok((limit, price.unwrap_or(0)))
}

/// Base fee plus prioritization fee.
fn fee_for(message: &VersionedMessage, limit: u64, price: u64) -> u64 {
    let signatures = u64::from(message.header().num_required_signatures);
    (signatures * LAMPORTS_PER_SIGNATURE).saturating_add(prioritization_fee_lamports(price, limit))
}

/// The prioritization fee: micro-lamports per compute unit × unit limit, rounded up to lamports.
pub fn prioritization_fee_lamports(micro_lamports_per_unit: u64, unit_limit: u64) -> u64 {
    let micro = u128::from(micro_lamports_per_unit) * u128::from(unit_limit);
    u64::try_from(micro.div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// Runs `transaction` against `state` without changing it. Signatures are not checked here.
fn process(state: &State, transaction: &VersionedTransaction) -> Outcome {
    let message = &transaction.message;
    if !state.is_blockhash_valid(message.recent_blockhash()) {
        return Outcome::Rejected(TransactionError::BlockhashNotFound);
    }
    if let Some(signature) = transaction.signatures.first()
        && state.landed.contains_key(signature)
    {
        return Outcome::Rejected(TransactionError::AlreadyProcessed);
    }
    let (limit, price) = match compute_budget(message) {
        Ok(budget) => budget,
        Err(error) => return Outcome::Rejected(error),
    };
    let fee = fee_for(message, limit, price);
    let keys: Vec<Pubkey> = message.static_account_keys().to_vec();
    let pre_accounts: Vec<Option<Account>> = keys
        .iter()
        .map(|key| state.accounts.get(key).cloned())
        .collect();

    // The fee payer: an existing system account that can pay and stays rent-legal.
    let Some(Some(payer)) = pre_accounts.first() else {
        return Outcome::Rejected(TransactionError::AccountNotFound);
    };
    if payer.lamports == 0 {
        return Outcome::Rejected(TransactionError::AccountNotFound);
    }
    if payer.kind != AccountKind::System {
        return Outcome::Rejected(TransactionError::InvalidAccountForFee);
    }
    if payer.lamports < fee {
        return Outcome::Rejected(TransactionError::InsufficientFundsForFee);
    }
    let mut charged = pre_accounts.clone();
    if let Some(Some(payer)) = charged.first_mut() {
        payer.lamports -= fee;
    }
    if !rent_transition_allowed(
        rent_state(pre_accounts[0].as_ref()),
        rent_state(charged[0].as_ref()),
    ) {
        return Outcome::Rejected(TransactionError::InsufficientFundsForRent { account_index: 0 });
    }

    let mut executor = Executor {
        message,
        keys: &keys,
        accounts: charged.clone(),
        logs: Vec::new(),
        units: 0,
        limit,
    };
    let mut err = executor.run().err();
    if err.is_none() {
        // After a successful run every writable account must be rent-exempt, empty, or a
        // rent-paying account that only shrank.
        for (index, (before, after)) in charged.iter().zip(&executor.accounts).enumerate() {
            if before != after
                && !rent_transition_allowed(rent_state(before.as_ref()), rent_state(after.as_ref()))
            {
                err = Some(TransactionError::InsufficientFundsForRent {
                    account_index: u8::try_from(index).unwrap_or(u8::MAX),
                });
                break;
            }
        }
    }
    let post_accounts = if err.is_some() {
        charged
    } else {
        executor.accounts
    };
    Outcome::Executed(Box::new(Execution {
        fee,
        err,
        logs: executor.logs,
        units_consumed: executor.units,
        keys,
        pre_accounts,
        post_accounts,
    }))
}

struct Executor<'a> {
    message: &'a VersionedMessage,
    keys: &'a [Pubkey],
    accounts: Vec<Option<Account>>,
    logs: Vec<String>,
    units: u64,
    limit: u64,
}

/// A program's failure: the instruction error and the compute units burnt before it.
struct Failure {
    error: InstructionError,
    units: u64,
}

impl Failure {
    fn new(error: InstructionError, units: u64) -> Self {
        Self { error, units }
    }
}

impl Executor<'_> {
    fn run(&mut self) -> Result<(), TransactionError> {
        let instructions = self.message.instructions();
        for (index, instruction) in instructions.iter().enumerate() {
            let index_u8 = u8::try_from(index).unwrap_or(u8::MAX);
            let Some(program) = self
                .keys
                .get(usize::from(instruction.program_id_index))
                .copied()
            else {
                return Err(TransactionError::SanitizeFailure);
            };
            let remaining = self.limit.saturating_sub(self.units);
            self.logs.push(format!("Program {program} invoke [1]"));
            let builtin = program == SYSTEM_PROGRAM_ID || program == COMPUTE_BUDGET_PROGRAM_ID;
            let accounts: Vec<usize> = instruction
                .accounts
                .iter()
                .map(|a| usize::from(*a))
                .collect();
            let data = instruction.data.as_slice();
            let result = if program == SYSTEM_PROGRAM_ID {
                self.system(&accounts, data)
            } else if program == COMPUTE_BUDGET_PROGRAM_ID {
                Ok(COMPUTE_BUDGET_UNITS)
            } else if program == TOKEN_PROGRAM_ID {
                self.token(&accounts, data)
            } else if program == ASSOCIATED_TOKEN_PROGRAM_ID {
                self.associated_token_account(&accounts, data)
            } else if program == MEMO_PROGRAM_ID || program == MEMO_V1_PROGRAM_ID {
                self.memo(program == MEMO_PROGRAM_ID, &accounts, data)
            } else {
                self.logs.push(format!(
                    "Program {program} is not supported by the sandbox ledger"
                ));
                Err(Failure::new(InstructionError::UnsupportedProgramId, 0))
            };
            let (units, error) = match result {
                Ok(units) => (units, None),
                Err(failure) => (failure.units, Some(failure.error)),
            };
            if units > remaining {
                self.units += remaining;
                if builtin {
                    self.logs.push(format!(
                        "Program {program} failed: {}",
                        InstructionError::ComputationalBudgetExceeded
                    ));
                } else {
                    self.logs.push(format!(
                        "Program {program} consumed {remaining} of {remaining} compute units"
                    ));
                    self.logs.push(format!(
                        "Program {program} failed: exceeded CUs meter at BPF instruction"
                    ));
                }
                return Err(TransactionError::InstructionError(
                    index_u8,
                    InstructionError::ComputationalBudgetExceeded,
                ));
            }
            self.units += units;
            if !builtin {
                self.logs.push(format!(
                    "Program {program} consumed {units} of {remaining} compute units"
                ));
            }
            match error {
                None => self.logs.push(format!("Program {program} success")),
                Some(error) => {
                    self.logs.push(format!("Program {program} failed: {error}"));
                    return Err(TransactionError::InstructionError(index_u8, error));
                }
            }
        }
        Ok(())
    }

    /// The message index of the instruction's `position`-th account; programs report a short
    /// account list as `NotEnoughAccountKeys` (still what BPF programs return on mainnet).
    #[allow(deprecated)]
    fn key_index(&self, accounts: &[usize], position: usize, units: u64) -> Result<usize, Failure> {
        accounts
            .get(position)
            .copied()
            .filter(|index| *index < self.keys.len())
            .ok_or_else(|| Failure::new(InstructionError::NotEnoughAccountKeys, units))
    }

    fn is_signer(&self, index: usize) -> bool {
        self.message.is_signer(index)
    }

    fn is_writable(&self, index: usize) -> bool {
        self.message
            .is_maybe_writable_with_reserved_addresses(index, None::<&BTreeSet<Pubkey>>)
    }

    fn lamports(&self, index: usize) -> u64 {
        self.accounts[index].as_ref().map_or(0, |a| a.lamports)
    }

    fn set_lamports(&mut self, index: usize, lamports: u64) {
        match &mut self.accounts[index] {
            Some(account) => account.lamports = lamports,
            slot @ None => *slot = Some(Account::system(lamports)),
        }
    }

    fn log(&mut self, line: impl Into<String>) {
        self.logs.push(line.into());
    }

    /// System Program: `Transfer` only.
    fn system(&mut self, accounts: &[usize], data: &[u8]) -> Result<u64, Failure> {
        let instruction: SystemInstruction = bincode::deserialize(data)
            .map_err(|_| Failure::new(InstructionError::InvalidInstructionData, SYSTEM_UNITS))?;
        let SystemInstruction::Transfer { lamports } = instruction else {
            self.log(format!(
                "sandbox: System instruction {instruction:?} is not supported"
            ));
            return Err(Failure::new(
                InstructionError::UnsupportedProgramId,
                SYSTEM_UNITS,
            ));
        };
        let from = self.key_index(accounts, 0, SYSTEM_UNITS)?;
        let to = self.key_index(accounts, 1, SYSTEM_UNITS)?;
        self.transfer_lamports(from, to, lamports)?;
        Ok(SYSTEM_UNITS)
    }

    /// The System Program's transfer rules (also used for the rent an ATA creation pays).
    fn transfer_lamports(&mut self, from: usize, to: usize, lamports: u64) -> Result<(), Failure> {
        let fail = |error| Failure::new(error, SYSTEM_UNITS);
        if !self.is_signer(from) {
            self.log(format!(
                "Transfer: `from` account {} must sign",
                self.keys[from]
            ));
            return Err(fail(InstructionError::MissingRequiredSignature));
        }
        if self.accounts[from]
            .as_ref()
            .is_some_and(|account| account.kind != AccountKind::System)
        {
            self.log("Transfer: `from` must not carry data");
            return Err(fail(InstructionError::InvalidArgument));
        }
        let available = self.lamports(from);
        if lamports > available {
            self.log(format!(
                "Transfer: insufficient lamports {available}, need {lamports}"
            ));
            return Err(fail(InstructionError::Custom(SYSTEM_ERR_NEGATIVE_LAMPORTS)));
        }
        if !self.is_writable(from) || !self.is_writable(to) {
            return Err(fail(InstructionError::ReadonlyLamportChange));
        }
        self.set_lamports(from, available - lamports);
        let credited = self
            .lamports(to)
            .checked_add(lamports)
            .ok_or_else(|| fail(InstructionError::ArithmeticOverflow))?;
        self.set_lamports(to, credited);
        Ok(())
    }

    fn token_state(&self, index: usize, units: u64) -> Result<(Pubkey, Pubkey, u64), Failure> {
        match self.accounts[index].as_ref().map(|a| &a.kind) {
            Some(AccountKind::Token {
                mint,
                owner,
                amount,
            }) => Ok((*mint, *owner, *amount)),
            // Wrong size or no data: `Account::unpack` fails.
            _ => Err(Failure::new(InstructionError::InvalidAccountData, units)),
        }
    }

    fn set_token_amount(&mut self, index: usize, new_amount: u64) {
        if let Some(Account {
            kind: AccountKind::Token { amount, .. },
            ..
        }) = &mut self.accounts[index]
        {
            *amount = new_amount;
        }
    }

    /// SPL Token: `Transfer` (3) and `TransferChecked` (12), in the program's check order.
    fn token(&mut self, accounts: &[usize], data: &[u8]) -> Result<u64, Failure> {
        let failed = TOKEN_FAILED_UNITS;
        let invalid = || {
            Failure::new(
                InstructionError::Custom(TOKEN_ERR_INVALID_INSTRUCTION),
                TOKEN_FAILED_UNITS,
            )
        };
        let Some((&tag, rest)) = data.split_first() else {
            self.log("Program log: Error: Invalid instruction");
            return Err(invalid());
        };
        let checked = match tag {
            3 => false,
            12 => true,
            0..=24 => {
                self.log(format!(
                    "sandbox: SPL Token instruction {tag} is not supported"
                ));
                return Err(Failure::new(InstructionError::UnsupportedProgramId, failed));
            }
            _ => {
                self.log("Program log: Error: Invalid instruction");
                return Err(invalid());
            }
        };
        let amount = rest
            .get(..8)
            .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
            .map(u64::from_le_bytes)
            .ok_or_else(invalid)?;
        let expected_decimals = if checked {
            Some(*rest.get(8).ok_or_else(invalid)?)
        } else {
            None
        };
        self.log(if checked {
            "Program log: Instruction: TransferChecked"
        } else {
            "Program log: Instruction: Transfer"
        });
        let units = if checked {
            TOKEN_TRANSFER_CHECKED_UNITS
        } else {
            TOKEN_TRANSFER_UNITS
        };
        let source = self.key_index(accounts, 0, failed)?;
        let (mint_position, destination_position, authority_position) = if checked {
            (Some(1), 2, 3)
        } else {
            (None, 1, 2)
        };
        let mint_index = match mint_position {
            Some(position) => Some(self.key_index(accounts, position, failed)?),
            None => None,
        };
        let destination = self.key_index(accounts, destination_position, failed)?;
        let authority = self.key_index(accounts, authority_position, failed)?;

        let (source_mint, source_owner, source_amount) = self.token_state(source, failed)?;
        let (destination_mint, _, destination_amount) = self.token_state(destination, failed)?;
        if source_amount < amount {
            self.log("Program log: Error: insufficient funds");
            return Err(Failure::new(
                InstructionError::Custom(TOKEN_ERR_INSUFFICIENT_FUNDS),
                failed,
            ));
        }
        if source_mint != destination_mint {
            self.log("Program log: Error: Account not associated with this Mint");
            return Err(Failure::new(
                InstructionError::Custom(TOKEN_ERR_MINT_MISMATCH),
                failed,
            ));
        }
        if let (Some(mint_index), Some(expected)) = (mint_index, expected_decimals) {
            if self.keys[mint_index] != source_mint {
                self.log("Program log: Error: Account not associated with this Mint");
                return Err(Failure::new(
                    InstructionError::Custom(TOKEN_ERR_MINT_MISMATCH),
                    failed,
                ));
            }
            let decimals = match self.accounts[mint_index].as_ref().map(|a| &a.kind) {
                Some(AccountKind::Mint { decimals }) => *decimals,
                _ => return Err(Failure::new(InstructionError::InvalidAccountData, failed)),
            };
            if decimals != expected {
                self.log("Program log: Error: decimals different from the Mint decimals");
                return Err(Failure::new(
                    InstructionError::Custom(TOKEN_ERR_MINT_DECIMALS_MISMATCH),
                    failed,
                ));
            }
        }
        if self.keys[authority] != source_owner {
            self.log("Program log: Error: owner does not match");
            return Err(Failure::new(
                InstructionError::Custom(TOKEN_ERR_OWNER_MISMATCH),
                failed,
            ));
        }
        if !self.is_signer(authority) {
            return Err(Failure::new(
                InstructionError::MissingRequiredSignature,
                failed,
            ));
        }
        if source == destination || amount == 0 {
            return Ok(units);
        }
        if !self.is_writable(source) || !self.is_writable(destination) {
            return Err(Failure::new(InstructionError::ReadonlyDataModified, units));
        }
        let credited = destination_amount
            .checked_add(amount)
            .ok_or_else(|| Failure::new(InstructionError::Custom(TOKEN_ERR_OVERFLOW), failed))?;
        self.set_token_amount(source, source_amount - amount);
        self.set_token_amount(destination, credited);
        if source_mint == WRAPPED_SOL_MINT {
            // Native accounts hold their token amount as lamports above the rent reserve.
            let from = self.lamports(source);
            let to = self.lamports(destination);
            self.set_lamports(source, from.saturating_sub(amount));
            self.set_lamports(destination, to.saturating_add(amount));
        }
        Ok(units)
    }

    /// Associated Token Account program: `Create` (data empty or `[0]`) and `CreateIdempotent`
    /// (`[1]`). Accounts: payer, ata, wallet, mint, system program, token program.
    fn associated_token_account(
        &mut self,
        accounts: &[usize],
        data: &[u8],
    ) -> Result<u64, Failure> {
        let failed = ATA_EXISTING_UNITS;
        let idempotent = match data {
            [] | [0] => false,
            [1] => true,
            [2] => {
                self.log("sandbox: RecoverNested is not supported");
                return Err(Failure::new(InstructionError::UnsupportedProgramId, failed));
            }
            _ => {
                return Err(Failure::new(
                    InstructionError::InvalidInstructionData,
                    failed,
                ));
            }
        };
        self.log(if idempotent {
            "Program log: CreateIdempotent"
        } else {
            "Program log: Create"
        });
        let payer = self.key_index(accounts, 0, failed)?;
        let ata = self.key_index(accounts, 1, failed)?;
        let wallet = self.key_index(accounts, 2, failed)?;
        let mint = self.key_index(accounts, 3, failed)?;
        let system = self.key_index(accounts, 4, failed)?;
        let token = self.key_index(accounts, 5, failed)?;
        if self.keys[token] != TOKEN_PROGRAM_ID || self.keys[system] != SYSTEM_PROGRAM_ID {
            return Err(Failure::new(InstructionError::IncorrectProgramId, failed));
        }
        let wallet_key = self.keys[wallet];
        let mint_key = self.keys[mint];
        if associated_token_address(&wallet_key, &mint_key) != self.keys[ata] {
            self.log("Program log: Error: Associated address does not match seed derivation");
            return Err(Failure::new(InstructionError::InvalidSeeds, failed));
        }
        match self.accounts[ata].as_ref().map(|a| a.kind.clone()) {
            Some(AccountKind::Token { mint, owner, .. }) if idempotent => {
                if owner != wallet_key {
                    self.log(
                        "Program log: Error: Associated token account owner does not match address derivation",
                    );
                    return Err(Failure::new(
                        InstructionError::Custom(ATA_ERR_INVALID_OWNER),
                        failed,
                    ));
                }
                if mint != mint_key {
                    return Err(Failure::new(InstructionError::InvalidAccountData, failed));
                }
                return Ok(ATA_EXISTING_UNITS);
            }
            Some(AccountKind::Token { .. })
            | Some(AccountKind::Mint { .. })
            | Some(AccountKind::Program { .. }) => {
                return Err(Failure::new(InstructionError::IllegalOwner, failed));
            }
            Some(AccountKind::System) | None => {}
        }
        match self.accounts[mint].as_ref().map(|a| &a.kind) {
            Some(AccountKind::Mint { .. }) => {}
            Some(AccountKind::Token { .. }) => {
                return Err(Failure::new(
                    InstructionError::Custom(TOKEN_ERR_INVALID_MINT),
                    failed,
                ));
            }
            // Not owned by the Token program.
            _ => return Err(Failure::new(InstructionError::IncorrectProgramId, failed)),
        }
        if !self.is_writable(ata) || !self.is_writable(payer) {
            return Err(Failure::new(InstructionError::PrivilegeEscalation, failed));
        }
        let required = TOKEN_ACCOUNT_RENT_EXEMPT_MINIMUM.saturating_sub(self.lamports(ata));
        if required > 0 {
            self.transfer_lamports(payer, ata, required)
                .map_err(|failure| Failure::new(failure.error, ATA_CREATE_UNITS / 2))?;
        }
        let lamports = self.lamports(ata);
        self.accounts[ata] = Some(Account {
            lamports,
            kind: AccountKind::Token {
                mint: mint_key,
                owner: wallet_key,
                amount: 0,
            },
        });
        Ok(ATA_CREATE_UNITS)
    }

    /// Memo: every account passed must sign (v2); the text must be UTF-8.
    fn memo(&mut self, v2: bool, accounts: &[usize], data: &[u8]) -> Result<u64, Failure> {
        if v2 {
            for index in accounts {
                if !self.is_signer(*index) {
                    self.log("Program log: Missing required signature for memo");
                    return Err(Failure::new(
                        InstructionError::MissingRequiredSignature,
                        MEMO_UNITS,
                    ));
                }
            }
        }
        let Ok(text) = std::str::from_utf8(data) else {
            self.log("Program log: Invalid UTF-8");
            return Err(Failure::new(
                InstructionError::InvalidInstructionData,
                MEMO_UNITS,
            ));
        };
        self.log(format!(
            "Program log: Memo (len {}): {:?}",
            data.len(),
            text
        ));
        Ok(MEMO_UNITS)
    }
}

fn simulation_of(outcome: &Outcome) -> Simulation {
    match outcome {
        Outcome::Rejected(error) => Simulation {
            err: Some(transaction_error_json(error)),
            logs: Vec::new(),
            units_consumed: 0,
            fee: 0,
        },
        Outcome::Executed(execution) => Simulation {
            err: execution.err.as_ref().map(transaction_error_json),
            logs: execution.logs.clone(),
            units_consumed: execution.units_consumed,
            fee: execution.fee,
        },
    }
}

impl Ledger {
    pub fn new(options: LedgerOptions) -> Self {
        let accounts = PROGRAM_ACCOUNTS
            .iter()
            .map(|(address, loader, lamports)| {
                let kind = AccountKind::Program { loader: *loader };
                (
                    *address,
                    Account {
                        lamports: *lamports,
                        kind,
                    },
                )
            })
            .collect();
        let state = State {
            options,
            seed: rand::random(),
            started: Instant::now(),
            advanced_slots: 0,
            accounts,
            by_mint: BTreeMap::new(),
            blockhashes: HashMap::new(),
            landed: HashMap::new(),
            received: Vec::new(),
        };
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the ledger half-written (every change is a single
        // commit under the lock), so a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn options(&self) -> LedgerOptions {
        self.lock().options.clone()
    }

    pub fn slot(&self) -> u64 {
        self.lock().slot()
    }

    pub fn block_height(&self) -> u64 {
        self.lock().block_height()
    }

    /// A fresh blockhash and the last block height at which it is valid.
    pub fn latest_blockhash(&self) -> (Hash, u64) {
        let mut state = self.lock();
        let slot = state.slot();
        let block_height = state.block_height();
        let blockhash = state.blockhash_for_slot(slot);
        let last_valid = block_height + state.options.blockhash_validity_blocks;
        state.blockhashes.entry(blockhash).or_insert(last_valid);
        let last_valid = state
            .blockhashes
            .get(&blockhash)
            .copied()
            .unwrap_or(last_valid);
        // Forget hashes long expired so the map stays small.
        state
            .blockhashes
            .retain(|_, valid_until| *valid_until + 1_000 >= block_height);
        (blockhash, last_valid)
    }

    pub fn is_blockhash_valid(&self, blockhash: &Hash) -> bool {
        self.lock().is_blockhash_valid(blockhash)
    }

    /// Moves the chain forward at once (tests: expire blockhashes, finalize transactions).
    pub fn advance_slots(&self, slots: u64) {
        let mut state = self.lock();
        state.advanced_slots = state.advanced_slots.saturating_add(slots);
    }

    pub fn lamports(&self, account: &Pubkey) -> u64 {
        self.lock().accounts.get(account).map_or(0, |a| a.lamports)
    }

    /// Seeding: adds lamports to an account out of thin air.
    pub fn airdrop(&self, account: &Pubkey, lamports: u64) {
        let mut state = self.lock();
        let mut entry = state
            .accounts
            .get(account)
            .cloned()
            .unwrap_or_else(|| Account::system(0));
        entry.lamports = entry.lamports.saturating_add(lamports);
        state.put(*account, Some(entry));
    }

    pub fn create_mint(&self, mint: &Pubkey, decimals: u8) {
        let mut state = self.lock();
        let lamports = state
            .accounts
            .get(mint)
            .map_or(0, |a| a.lamports)
            .max(MINT_RENT_EXEMPT_MINIMUM);
        state.put(
            *mint,
            Some(Account {
                lamports,
                kind: AccountKind::Mint { decimals },
            }),
        );
    }

    pub fn mint_decimals(&self, mint: &Pubkey) -> Option<u8> {
        self.lock().decimals(mint)
    }

    /// Seeding: creates the token account at `address` (for `mint`, owned by `owner`) if needed
    /// and adds `amount`. An unknown mint is created with [`USDC_DECIMALS`]; a token account of
    /// another mint or owner at `address` is left alone (seeding mistakes are logged, not fatal).
    pub fn mint_to(&self, address: &Pubkey, mint: &Pubkey, owner: &Pubkey, amount: u64) {
        let mut state = self.lock();
        if state.decimals(mint).is_none() {
            state.put(
                *mint,
                Some(Account {
                    lamports: MINT_RENT_EXEMPT_MINIMUM,
                    kind: AccountKind::Mint {
                        decimals: USDC_DECIMALS,
                    },
                }),
            );
        }
        let native = *mint == WRAPPED_SOL_MINT;
        let account = match state.accounts.get(address).cloned() {
            Some(Account {
                lamports,
                kind:
                    AccountKind::Token {
                        mint: existing_mint,
                        owner: existing_owner,
                        amount: existing,
                    },
            }) => {
                if existing_mint != *mint || existing_owner != *owner {
                    tracing::warn!(%address, "sandbox mint_to: token account exists for another mint or owner");
                    return;
                }
                Account {
                    lamports: if native {
                        lamports.saturating_add(amount)
                    } else {
                        lamports
                    },
                    kind: AccountKind::Token {
                        mint: *mint,
                        owner: *owner,
                        amount: existing.saturating_add(amount),
                    },
                }
            }
            Some(Account {
                kind: AccountKind::Mint { .. } | AccountKind::Program { .. },
                ..
            }) => {
                tracing::warn!(%address, "sandbox mint_to: address is a mint or a program");
                return;
            }
            Some(Account { lamports, .. }) => Account {
                lamports: lamports.max(TOKEN_ACCOUNT_RENT_EXEMPT_MINIMUM)
                    + if native { amount } else { 0 },
                kind: AccountKind::Token {
                    mint: *mint,
                    owner: *owner,
                    amount,
                },
            },
            None => Account {
                lamports: TOKEN_ACCOUNT_RENT_EXEMPT_MINIMUM + if native { amount } else { 0 },
                kind: AccountKind::Token {
                    mint: *mint,
                    owner: *owner,
                    amount,
                },
            },
        };
        state.put(*address, Some(account));
    }

    pub fn token_account(&self, address: &Pubkey) -> Option<TokenAccount> {
        self.lock().token_account(address)
    }

    /// Every token account of `mint`, ordered by address.
    pub fn token_accounts_by_mint(&self, mint: &Pubkey) -> Vec<TokenAccount> {
        let state = self.lock();
        state
            .by_mint
            .get(mint)
            .map(|set| {
                set.iter()
                    .filter_map(|address| state.token_account(address))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One page of `mint`'s token accounts in address order: those strictly between `after` and
    /// `before` (either open), empty ones only with `with_zero`, the first `skip` left out, at
    /// most `limit`. Walks only the range it returns (plus `skip`), so paginating a mint of N
    /// accounts costs O(N) in all rather than O(N) a page.
    pub fn token_accounts_by_mint_page(
        &self,
        mint: &Pubkey,
        range: (Option<Pubkey>, Option<Pubkey>),
        with_zero: bool,
        skip: usize,
        limit: usize,
    ) -> Vec<TokenAccount> {
        use std::ops::Bound;
        let (after, before) = range;
        if let (Some(after), Some(before)) = (after, before)
            && after >= before
        {
            return Vec::new();
        }
        let state = self.lock();
        let Some(set) = state.by_mint.get(mint) else {
            return Vec::new();
        };
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let upper = before.map_or(Bound::Unbounded, Bound::Excluded);
        set.range((lower, upper))
            .filter_map(|address| state.token_account(address))
            .filter(|account| with_zero || account.amount > 0)
            .skip(skip)
            .take(limit)
            .collect()
    }

    /// Every token account owned by `owner` (optionally of one mint), ordered by address.
    pub fn token_accounts_by_owner(
        &self,
        owner: &Pubkey,
        mint: Option<&Pubkey>,
    ) -> Vec<TokenAccount> {
        let state = self.lock();
        state
            .accounts
            .keys()
            .filter_map(|address| state.token_account(address))
            .filter(|account| account.owner == *owner && mint.is_none_or(|m| account.mint == *m))
            .collect()
    }

    /// One account as stored, `None` if it does not exist (no lamports, no data).
    pub fn account(&self, address: &Pubkey) -> Option<LedgerAccount> {
        let state = self.lock();
        let account = state.accounts.get(address)?;
        let data = match &account.kind {
            AccountKind::System => LedgerAccountData::System,
            AccountKind::Program { loader } => LedgerAccountData::Program { loader: *loader },
            AccountKind::Mint { decimals } => LedgerAccountData::Mint {
                decimals: *decimals,
                supply: state
                    .by_mint
                    .get(address)
                    .map(|set| {
                        set.iter()
                            .filter_map(|a| state.token_account(a))
                            .fold(0u64, |sum, a| sum.saturating_add(a.amount))
                    })
                    .unwrap_or(0),
            },
            AccountKind::Token {
                mint,
                owner,
                amount,
            } => LedgerAccountData::Token(TokenAccount {
                address: *address,
                mint: *mint,
                owner: *owner,
                amount: *amount,
            }),
        };
        Some(LedgerAccount {
            address: *address,
            lamports: account.lamports,
            data,
        })
    }

    pub fn simulate(
        &self,
        transaction: &VersionedTransaction,
        verify_signatures: bool,
    ) -> Simulation {
        if let Err(message) = check_message(transaction) {
            let error = if message.contains("address table") {
                TransactionError::AddressLookupTableNotFound
            } else if message.contains("loaded twice") {
                TransactionError::AccountLoadedTwice
            } else {
                TransactionError::SanitizeFailure
            };
            return simulation_of(&Outcome::Rejected(error));
        }
        if verify_signatures && !self::verify_signatures(transaction) {
            return simulation_of(&Outcome::Rejected(TransactionError::SignatureFailure));
        }
        let state = self.lock();
        simulation_of(&process(&state, transaction))
    }

    /// Verifies signatures and blockhash, runs preflight unless `skip_preflight`, and lands the
    /// transaction (balances change) unless `drop` — then it is acknowledged but never lands.
    ///
    /// As on the real cluster: without `skip_preflight` a bad signature is refused
    /// ([`SubmitError::SignatureFailure`]) and any simulation error (unknown or expired blockhash,
    /// fee payer unable to pay, failing instruction, already processed) is refused as
    /// [`SubmitError::Preflight`]; with `skip_preflight` the RPC acknowledges everything it can
    /// decode, and what the leader would discard (bad signature, unknown blockhash, unpayable
    /// fee) is recorded as dropped and never lands, while a failing instruction lands with its
    /// error and pays the fee. A signature that already landed is never executed again.
    pub fn submit(
        &self,
        transaction: VersionedTransaction,
        skip_preflight: bool,
        drop: bool,
    ) -> Result<Signature, SubmitError> {
        let Some(signature) = transaction.signatures.first().copied() else {
            return Err(SubmitError::Invalid(
                "transaction carries no signature".to_string(),
            ));
        };
        check_message(&transaction).map_err(SubmitError::Invalid)?;
        let signatures_ok = verify_signatures(&transaction);
        let mut state = self.lock();
        let mut record = ReceivedTransaction {
            signature,
            received_at: Utc::now(),
            skip_preflight,
            rejected: None,
            dropped: false,
            drop_reason: None,
            duplicate: false,
            landed_slot: None,
            err: None,
        };

        if !skip_preflight && !signatures_ok {
            let error = SubmitError::SignatureFailure;
            record.rejected = Some(error.to_string());
            state.received.push(record);
            return Err(error);
        }
        if skip_preflight && let Some(landed) = state.landed.get(&signature) {
            // The cluster deduplicates by signature: acknowledged, not executed again.
            record.duplicate = true;
            record.landed_slot = Some(landed.transaction.slot);
            record.err = landed.transaction.err.clone();
            state.received.push(record);
            return Ok(signature);
        }
        let outcome = process(&state, &transaction);
        if !skip_preflight {
            let failure = match &outcome {
                Outcome::Rejected(error) => Some(error.clone()),
                Outcome::Executed(execution) => execution.err.clone(),
            };
            if let Some(error) = failure {
                let preflight =
                    SubmitError::Preflight(error.to_string(), Box::new(simulation_of(&outcome)));
                record.rejected = Some(preflight.to_string());
                state.received.push(record);
                return Err(preflight);
            }
        }
        if drop {
            record.dropped = true;
            record.drop_reason = Some("injected".to_string());
            state.received.push(record);
            return Ok(signature);
        }
        if !signatures_ok {
            record.dropped = true;
            record.drop_reason = Some(TransactionError::SignatureFailure.to_string());
            state.received.push(record);
            return Ok(signature);
        }
        let execution = match outcome {
            Outcome::Rejected(error) => {
                record.dropped = true;
                record.drop_reason = Some(error.to_string());
                state.received.push(record);
                return Ok(signature);
            }
            Outcome::Executed(execution) => execution,
        };

        // Land it in the current slot.
        let slot = state.slot();
        let Execution {
            fee,
            err,
            logs,
            units_consumed,
            keys,
            pre_accounts,
            post_accounts,
        } = *execution;
        let pre_token_balances = state.token_balances(&keys, &pre_accounts);
        for (key, account) in keys.iter().zip(post_accounts.iter()) {
            state.put(*key, account.clone());
        }
        let post_token_balances = state.token_balances(&keys, &post_accounts);
        let err = err.as_ref().map(transaction_error_json);
        let landed = LandedTransaction {
            slot,
            block_time: Utc::now().timestamp(),
            transaction,
            fee,
            err: err.clone(),
            pre_balances: pre_accounts
                .iter()
                .map(|a| a.as_ref().map_or(0, |a| a.lamports))
                .collect(),
            post_balances: post_accounts
                .iter()
                .map(|a| a.as_ref().map_or(0, |a| a.lamports))
                .collect(),
            pre_token_balances,
            post_token_balances,
            log_messages: logs,
        };
        state.landed.insert(
            signature,
            Landed {
                transaction: landed,
                units_consumed,
            },
        );
        record.landed_slot = Some(slot);
        record.err = err;
        state.received.push(record);
        Ok(signature)
    }

    pub fn signature_status(&self, signature: &Signature) -> Option<SignatureStatus> {
        let state = self.lock();
        let landed = state.landed.get(signature)?;
        Some(state.status_of(landed))
    }

    pub fn landed(&self, signature: &Signature) -> Option<LandedTransaction> {
        self.lock()
            .landed
            .get(signature)
            .map(|landed| landed.transaction.clone())
    }

    /// Compute units a landed transaction consumed (`computeUnitsConsumed`).
    pub fn compute_units_consumed(&self, signature: &Signature) -> Option<u64> {
        self.lock()
            .landed
            .get(signature)
            .map(|landed| landed.units_consumed)
    }

    /// Every `submit`, oldest first.
    pub fn received(&self) -> Vec<ReceivedTransaction> {
        self.lock().received.clone()
    }

    /// The fee a transaction with `message` would pay (base fee per signature plus priority
    /// fee), or the error its compute-budget instructions raise.
    pub fn fee_for_message(&self, message: &VersionedMessage) -> Result<u64, serde_json::Value> {
        compute_budget(message)
            .map(|(limit, price)| fee_for(message, limit, price))
            .map_err(|error| transaction_error_json(&error))
    }
}

/// The associated token account of `owner` for `mint` (the real derivation).
pub fn associated_token_address(owner: &Pubkey, mint: &Pubkey) -> Pubkey {
    Pubkey::find_program_address(
        &[owner.as_ref(), TOKEN_PROGRAM_ID.as_ref(), mint.as_ref()],
        &ASSOCIATED_TOKEN_PROGRAM_ID,
    )
    .0
}

/// Associated Token Account `CreateIdempotent`: creates `owner`'s account for `mint` (paid by
/// `payer`) unless it already exists.
pub fn create_associated_token_account_idempotent_instruction(
    payer: &Pubkey,
    owner: &Pubkey,
    mint: &Pubkey,
) -> Instruction {
    Instruction {
        program_id: ASSOCIATED_TOKEN_PROGRAM_ID,
        accounts: vec![
            AccountMeta::new(*payer, true),
            AccountMeta::new(associated_token_address(owner, mint), false),
            AccountMeta::new_readonly(*owner, false),
            AccountMeta::new_readonly(*mint, false),
            AccountMeta::new_readonly(SYSTEM_PROGRAM_ID, false),
            AccountMeta::new_readonly(TOKEN_PROGRAM_ID, false),
        ],
        data: vec![1],
    }
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
    let mut data = Vec::with_capacity(10);
    data.push(12);
    data.extend_from_slice(&amount.to_le_bytes());
    data.push(decimals);
    Instruction {
        program_id: TOKEN_PROGRAM_ID,
        accounts: vec![
            AccountMeta::new(*source, false),
            AccountMeta::new_readonly(*mint, false),
            AccountMeta::new(*destination, false),
            AccountMeta::new_readonly(*authority, true),
        ],
        data,
    }
}

/// ComputeBudget `SetComputeUnitLimit`.
pub fn set_compute_unit_limit_instruction(units: u32) -> Instruction {
    let mut data = vec![2];
    data.extend_from_slice(&units.to_le_bytes());
    Instruction {
        program_id: COMPUTE_BUDGET_PROGRAM_ID,
        accounts: Vec::new(),
        data,
    }
}

/// ComputeBudget `SetComputeUnitPrice` (micro-lamports per compute unit).
pub fn set_compute_unit_price_instruction(micro_lamports: u64) -> Instruction {
    let mut data = vec![3];
    data.extend_from_slice(&micro_lamports.to_le_bytes());
    Instruction {
        program_id: COMPUTE_BUDGET_PROGRAM_ID,
        accounts: Vec::new(),
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use solana_message::{Message, v0};
    use solana_sdk::signature::{Keypair, Signer};
    use solana_system_interface::instruction::transfer;

    const SOL: u64 = 1_000_000_000;

    /// A ledger whose clock only moves when a test advances it.
    fn ledger() -> Ledger {
        Ledger::new(LedgerOptions {
            slot_duration: Duration::from_secs(3_600),
            blockhash_validity_blocks: 150,
            finalization_depth: 32,
        })
    }

    fn legacy(
        ledger: &Ledger,
        instructions: &[Instruction],
        payer: &Keypair,
        signers: &[&Keypair],
    ) -> VersionedTransaction {
        let (blockhash, _) = ledger.latest_blockhash();
        let message = Message::new_with_blockhash(instructions, Some(&payer.pubkey()), &blockhash);
        VersionedTransaction::try_new(VersionedMessage::Legacy(message), signers).unwrap()
    }

    fn version0(
        ledger: &Ledger,
        instructions: &[Instruction],
        payer: &Keypair,
        signers: &[&Keypair],
    ) -> VersionedTransaction {
        let (blockhash, _) = ledger.latest_blockhash();
        let message =
            v0::Message::try_compile(&payer.pubkey(), instructions, &[], blockhash).unwrap();
        VersionedTransaction::try_new(VersionedMessage::V0(message), signers).unwrap()
    }

    fn funded(ledger: &Ledger, lamports: u64) -> Keypair {
        let keypair = Keypair::new();
        ledger.airdrop(&keypair.pubkey(), lamports);
        keypair
    }

    fn preflight_err(result: Result<Signature, SubmitError>) -> (String, serde_json::Value) {
        match result {
            Err(SubmitError::Preflight(message, simulation)) => (
                message,
                simulation
                    .err
                    .expect("a preflight failure carries its error"),
            ),
            other => panic!("expected a preflight failure, got {other:?}"),
        }
    }

    /// A USDC-like mint with `owner`'s ATA holding `amount`.
    fn token_setup(ledger: &Ledger, owner: &Pubkey, amount: u64) -> (Pubkey, Pubkey) {
        let mint = Pubkey::new_unique();
        ledger.create_mint(&mint, USDC_DECIMALS);
        let account = associated_token_address(owner, &mint);
        ledger.mint_to(&account, &mint, owner, amount);
        (mint, account)
    }

    #[test]
    fn a_transfer_moves_the_amount_and_charges_the_fee_per_signature() {
        let ledger = ledger();
        let payer = funded(&ledger, 2 * SOL);
        let recipient = Pubkey::new_unique();
        let tx = legacy(
            &ledger,
            &[transfer(&payer.pubkey(), &recipient, SOL)],
            &payer,
            &[&payer],
        );
        let signature = ledger.submit(tx, false, false).unwrap();
        assert_eq!(
            ledger.lamports(&payer.pubkey()),
            2 * SOL - SOL - LAMPORTS_PER_SIGNATURE
        );
        assert_eq!(ledger.lamports(&recipient), SOL);
        let landed = ledger.landed(&signature).unwrap();
        assert_eq!(landed.fee, LAMPORTS_PER_SIGNATURE);
        assert_eq!(landed.err, None);
        assert_eq!(landed.pre_balances, vec![2 * SOL, 0, 1]);
        assert_eq!(
            landed.post_balances[..2],
            [SOL - LAMPORTS_PER_SIGNATURE, SOL]
        );
        assert!(
            landed.log_messages[0].starts_with("Program 11111111111111111111111111111111 invoke")
        );

        // Two signers pay twice the base fee (the second signer is charged nothing).
        let cosigner = funded(&ledger, SOL);
        let tx = legacy(
            &ledger,
            &[transfer(&cosigner.pubkey(), &recipient, 1_000)],
            &payer,
            &[&payer, &cosigner],
        );
        let before = ledger.lamports(&payer.pubkey());
        ledger.submit(tx, false, false).unwrap();
        assert_eq!(
            ledger.lamports(&payer.pubkey()),
            before - 2 * LAMPORTS_PER_SIGNATURE
        );
        assert_eq!(ledger.lamports(&cosigner.pubkey()), SOL - 1_000);
    }

    #[test]
    fn the_priority_fee_is_price_times_limit_rounded_up() {
        let ledger = ledger();
        let payer = funded(&ledger, SOL);
        let recipient = funded(&ledger, SOL).pubkey();
        let tx = legacy(
            &ledger,
            &[
                set_compute_unit_limit_instruction(200_000),
                set_compute_unit_price_instruction(1_000_001),
                transfer(&payer.pubkey(), &recipient, 10),
            ],
            &payer,
            &[&payer],
        );
        // 1,000,001 µlamports × 200,000 units = 200,000.2 lamports → 200,001.
        let signature = ledger.submit(tx, false, false).unwrap();
        assert_eq!(ledger.landed(&signature).unwrap().fee, 5_000 + 200_001);
        assert_eq!(ledger.lamports(&payer.pubkey()), SOL - 10 - 205_001);

        // Without a limit, builtins default to 3,000 units each (transfer + price instruction).
        let tx = legacy(
            &ledger,
            &[
                set_compute_unit_price_instruction(1_000_000),
                transfer(&payer.pubkey(), &recipient, 10),
            ],
            &payer,
            &[&payer],
        );
        let signature = ledger.submit(tx, false, false).unwrap();
        assert_eq!(ledger.landed(&signature).unwrap().fee, 5_000 + 6_000);

        // A duplicate compute-budget instruction never lands.
        let tx = legacy(
            &ledger,
            &[
                set_compute_unit_price_instruction(1),
                set_compute_unit_price_instruction(2),
            ],
            &payer,
            &[&payer],
        );
        let (_, err) = preflight_err(ledger.submit(tx, false, false));
        assert_eq!(err, json!({"DuplicateInstruction": 1}));
    }

    #[test]
    fn a_failed_instruction_lands_charging_the_fee_but_moving_nothing() {
        let ledger = ledger();
        let payer = funded(&ledger, SOL);
        let recipient = funded(&ledger, SOL).pubkey();
        let too_much = legacy(
            &ledger,
            &[transfer(&payer.pubkey(), &recipient, 2 * SOL)],
            &payer,
            &[&payer],
        );

        // With preflight the node refuses it and nothing is charged.
        let (message, err) = preflight_err(ledger.submit(too_much.clone(), false, false));
        assert_eq!(
            message,
            "Error processing Instruction 0: custom program error: 0x1"
        );
        assert_eq!(err, json!({"InstructionError": [0, {"Custom": 1}]}));
        assert_eq!(ledger.lamports(&payer.pubkey()), SOL);

        // Skipping preflight it lands with the error and pays the fee.
        let signature = ledger.submit(too_much, true, false).unwrap();
        assert_eq!(
            ledger.lamports(&payer.pubkey()),
            SOL - LAMPORTS_PER_SIGNATURE
        );
        assert_eq!(ledger.lamports(&recipient), SOL);
        let status = ledger.signature_status(&signature).unwrap();
        assert_eq!(
            status.err,
            Some(json!({"InstructionError": [0, {"Custom": 1}]}))
        );
        let landed = ledger.landed(&signature).unwrap();
        assert_eq!(
            landed.post_balances,
            vec![SOL - LAMPORTS_PER_SIGNATURE, SOL, 1]
        );
        assert!(
            landed
                .log_messages
                .iter()
                .any(|line| line == "Transfer: insufficient lamports 999995000, need 2000000000")
        );

        // An atomic transaction: the first transfer is undone when the second fails.
        let tx = legacy(
            &ledger,
            &[
                transfer(&payer.pubkey(), &recipient, 1_000),
                transfer(&payer.pubkey(), &recipient, 2 * SOL),
            ],
            &payer,
            &[&payer],
        );
        let signature = ledger.submit(tx, true, false).unwrap();
        assert_eq!(
            ledger.signature_status(&signature).unwrap().err,
            Some(json!({"InstructionError": [1, {"Custom": 1}]}))
        );
        assert_eq!(ledger.lamports(&recipient), SOL);
    }

    #[test]
    fn the_fee_payer_must_exist_and_afford_the_fee() {
        let ledger = ledger();
        let poor = funded(&ledger, 1);
        let recipient = Pubkey::new_unique();
        let tx = legacy(
            &ledger,
            &[transfer(&poor.pubkey(), &recipient, 1)],
            &poor,
            &[&poor],
        );
        let (message, err) = preflight_err(ledger.submit(tx.clone(), false, false));
        assert_eq!(message, "Insufficient funds for fee");
        assert_eq!(err, json!("InsufficientFundsForFee"));
        // The cluster drops it without charging anything.
        let signature = ledger.submit(tx, true, false).unwrap();
        assert_eq!(ledger.signature_status(&signature), None);
        assert_eq!(ledger.lamports(&poor.pubkey()), 1);
        let received = ledger.received();
        assert!(received[0].rejected.is_some());
        assert!(received[1].dropped);
        assert_eq!(
            received[1].drop_reason.as_deref(),
            Some("Insufficient funds for fee")
        );

        let nobody = Keypair::new();
        let tx = legacy(
            &ledger,
            &[transfer(&nobody.pubkey(), &recipient, 1)],
            &nobody,
            &[&nobody],
        );
        let (_, err) = preflight_err(ledger.submit(tx, false, false));
        assert_eq!(err, json!("AccountNotFound"));
    }

    #[test]
    fn accounts_must_end_rent_exempt_or_empty() {
        let ledger = ledger();
        let payer = funded(&ledger, SOL);
        let fresh = Pubkey::new_unique();
        let tx = legacy(
            &ledger,
            &[transfer(&payer.pubkey(), &fresh, 1_000)],
            &payer,
            &[&payer],
        );
        let (_, err) = preflight_err(ledger.submit(tx, false, false));
        assert_eq!(
            err,
            json!({"InsufficientFundsForRent": {"account_index": 1}})
        );

        // Draining an account to zero is fine (and it disappears).
        let vault = funded(&ledger, 1_234_567);
        let tx = legacy(
            &ledger,
            &[transfer(&vault.pubkey(), &payer.pubkey(), 1_234_567)],
            &payer,
            &[&payer, &vault],
        );
        ledger.submit(tx, false, false).unwrap();
        assert_eq!(ledger.account(&vault.pubkey()), None);
    }

    #[test]
    fn signatures_are_verified() {
        let ledger = ledger();
        let payer = funded(&ledger, SOL);
        let recipient = funded(&ledger, SOL).pubkey();
        let mut tampered = legacy(
            &ledger,
            &[transfer(&payer.pubkey(), &recipient, 1_000)],
            &payer,
            &[&payer],
        );
        if let VersionedMessage::Legacy(message) = &mut tampered.message {
            message.instructions[0].data[4] ^= 1;
        }
        assert!(!verify_signatures(&tampered));
        assert!(matches!(
            ledger.submit(tampered.clone(), false, false),
            Err(SubmitError::SignatureFailure)
        ));
        // With skip_preflight the RPC forwards it and the leader discards it.
        let signature = ledger.submit(tampered, true, false).unwrap();
        assert_eq!(ledger.signature_status(&signature), None);
        assert_eq!(ledger.lamports(&recipient), SOL);

        // Signed by another key than the fee payer's.
        let impostor = Keypair::new();
        let mut forged = legacy(
            &ledger,
            &[transfer(&payer.pubkey(), &recipient, 1_000)],
            &payer,
            &[&payer],
        );
        forged.signatures[0] = impostor.sign_message(&forged.message.serialize());
        assert!(matches!(
            ledger.submit(forged, false, false),
            Err(SubmitError::SignatureFailure)
        ));

        // A partially signed transaction (the co-signer's slot still empty).
        let cosigner = funded(&ledger, SOL);
        let (blockhash, _) = ledger.latest_blockhash();
        let message = Message::new_with_blockhash(
            &[transfer(&cosigner.pubkey(), &recipient, 1_000)],
            Some(&payer.pubkey()),
            &blockhash,
        );
        let mut partial = VersionedTransaction {
            signatures: vec![Signature::default(); 2],
            message: VersionedMessage::Legacy(message),
        };
        partial.signatures[0] = payer.sign_message(&partial.message.serialize());
        assert!(matches!(
            ledger.simulate(&partial, true).err,
            Some(serde_json::Value::String(ref error)) if error == "SignatureFailure"
        ));
        assert_eq!(ledger.simulate(&partial, false).err, None);
    }

    #[test]
    fn blockhashes_expire_after_their_last_valid_block_height() {
        let ledger = ledger();
        let payer = funded(&ledger, SOL);
        let recipient = funded(&ledger, SOL).pubkey();
        let (blockhash, last_valid) = ledger.latest_blockhash();
        assert_eq!(last_valid, ledger.block_height() + 150);
        assert!(ledger.is_blockhash_valid(&blockhash));
        assert!(!ledger.is_blockhash_valid(&Hash::new_unique()));
        let tx = legacy(
            &ledger,
            &[transfer(&payer.pubkey(), &recipient, 1_000)],
            &payer,
            &[&payer],
        );

        ledger.advance_slots(150);
        assert!(
            ledger.is_blockhash_valid(&blockhash),
            "valid through its last valid height"
        );
        ledger.advance_slots(1);
        assert!(!ledger.is_blockhash_valid(&blockhash));
        let (message, err) = preflight_err(ledger.submit(tx.clone(), false, false));
        assert_eq!(message, "Blockhash not found");
        assert_eq!(err, json!("BlockhashNotFound"));
        let signature = ledger.submit(tx, true, false).unwrap();
        assert_eq!(ledger.signature_status(&signature), None);
        assert_eq!(ledger.lamports(&payer.pubkey()), SOL);

        let (fresh, _) = ledger.latest_blockhash();
        assert_ne!(fresh, blockhash);
    }

    #[test]
    fn statuses_go_processed_confirmed_finalized() {
        let ledger = ledger();
        let payer = funded(&ledger, SOL);
        let recipient = funded(&ledger, SOL).pubkey();
        let tx = legacy(
            &ledger,
            &[transfer(&payer.pubkey(), &recipient, 1_000)],
            &payer,
            &[&payer],
        );
        let signature = ledger.submit(tx, false, false).unwrap();
        let status = ledger.signature_status(&signature).unwrap();
        assert_eq!(
            (status.confirmations, status.confirmation_status),
            (Some(0), "processed")
        );
        assert_eq!(status.slot, ledger.slot());
        ledger.advance_slots(1);
        let status = ledger.signature_status(&signature).unwrap();
        assert_eq!(
            (status.confirmations, status.confirmation_status),
            (Some(1), "confirmed")
        );
        ledger.advance_slots(30);
        assert_eq!(
            ledger.signature_status(&signature).unwrap().confirmations,
            Some(31)
        );
        ledger.advance_slots(1);
        let status = ledger.signature_status(&signature).unwrap();
        assert_eq!(
            (status.confirmations, status.confirmation_status),
            (None, "finalized")
        );
    }

    #[test]
    fn the_same_signature_never_executes_twice() {
        let ledger = ledger();
        let payer = funded(&ledger, SOL);
        let recipient = funded(&ledger, SOL).pubkey();
        let tx = legacy(
            &ledger,
            &[transfer(&payer.pubkey(), &recipient, 1_000)],
            &payer,
            &[&payer],
        );
        let first = ledger.submit(tx.clone(), true, false).unwrap();
        let second = ledger.submit(tx.clone(), true, false).unwrap();
        assert_eq!(first, second);
        assert_eq!(ledger.lamports(&recipient), SOL + 1_000);
        assert!(ledger.received()[1].duplicate);
        // With preflight a node reports it as already processed.
        let (message, err) = preflight_err(ledger.submit(tx, false, false));
        assert_eq!(message, "This transaction has already been processed");
        assert_eq!(err, json!("AlreadyProcessed"));
        assert_eq!(ledger.lamports(&recipient), SOL + 1_000);
    }

    #[test]
    fn a_dropped_transaction_never_lands_until_sent_again() {
        let ledger = ledger();
        let payer = funded(&ledger, SOL);
        let recipient = funded(&ledger, SOL).pubkey();
        let tx = legacy(
            &ledger,
            &[transfer(&payer.pubkey(), &recipient, 1_000)],
            &payer,
            &[&payer],
        );
        let signature = ledger.submit(tx.clone(), true, true).unwrap();
        assert_eq!(ledger.signature_status(&signature), None);
        assert_eq!(ledger.lamports(&recipient), SOL);
        assert_eq!(
            ledger.received()[0].drop_reason.as_deref(),
            Some("injected")
        );
        // The same bytes, sent again while the blockhash is valid, land once.
        ledger.submit(tx, true, false).unwrap();
        assert_eq!(ledger.lamports(&recipient), SOL + 1_000);
    }

    #[test]
    fn transfer_checked_moves_tokens_and_reports_token_balances() {
        let ledger = ledger();
        let payer = funded(&ledger, SOL);
        let pool = Keypair::new();
        let (mint, pool_usdc) = token_setup(&ledger, &pool.pubkey(), 500_000_000);
        let user_usdc = associated_token_address(&payer.pubkey(), &mint);
        let instructions = [
            create_associated_token_account_idempotent_instruction(
                &payer.pubkey(),
                &payer.pubkey(),
                &mint,
            ),
            transfer_checked_instruction(
                &pool_usdc,
                &mint,
                &user_usdc,
                &pool.pubkey(),
                150_000_000,
                6,
            ),
        ];
        let tx = version0(&ledger, &instructions, &payer, &[&payer, &pool]);
        let signature = ledger.submit(tx, false, false).unwrap();
        assert_eq!(
            ledger.token_account(&pool_usdc).unwrap().amount,
            350_000_000
        );
        let received = ledger.token_account(&user_usdc).unwrap();
        assert_eq!(
            (received.amount, received.owner, received.mint),
            (150_000_000, payer.pubkey(), mint)
        );
        // The payer paid two signatures and the new account's rent.
        assert_eq!(
            ledger.lamports(&payer.pubkey()),
            SOL - 2 * LAMPORTS_PER_SIGNATURE - TOKEN_ACCOUNT_RENT_EXEMPT_MINIMUM
        );
        let landed = ledger.landed(&signature).unwrap();
        let keys = landed.transaction.message.static_account_keys().to_vec();
        let index = |key: &Pubkey| keys.iter().position(|k| k == key).unwrap() as u8;
        assert_eq!(
            landed.pre_token_balances,
            vec![TokenBalance {
                account_index: index(&pool_usdc),
                mint,
                owner: pool.pubkey(),
                amount: 500_000_000,
                decimals: 6,
            }]
        );
        let mut post = landed.post_token_balances.clone();
        post.sort_by_key(|balance| balance.account_index);
        let mut expected = vec![
            TokenBalance {
                account_index: index(&pool_usdc),
                mint,
                owner: pool.pubkey(),
                amount: 350_000_000,
                decimals: 6,
            },
            TokenBalance {
                account_index: index(&user_usdc),
                mint,
                owner: payer.pubkey(),
                amount: 150_000_000,
                decimals: 6,
            },
        ];
        expected.sort_by_key(|balance| balance.account_index);
        assert_eq!(post, expected);
        assert_eq!(ledger.token_accounts_by_mint(&mint).len(), 2);
        assert!(ledger.compute_units_consumed(&signature).unwrap() > TOKEN_TRANSFER_CHECKED_UNITS);
    }

    #[test]
    fn token_transfers_enforce_the_token_program_rules() {
        let ledger = ledger();
        let payer = funded(&ledger, SOL);
        let holder = Keypair::new();
        let (mint, source) = token_setup(&ledger, &holder.pubkey(), 1_000);
        let recipient = Pubkey::new_unique();
        let destination = associated_token_address(&recipient, &mint);
        ledger.mint_to(&destination, &mint, &recipient, 0);
        let run = |instruction: Instruction, signers: &[&Keypair]| {
            let tx = legacy(&ledger, &[instruction], &payer, signers);
            preflight_err(ledger.submit(tx, false, false)).1
        };

        let wrong_decimals =
            transfer_checked_instruction(&source, &mint, &destination, &holder.pubkey(), 10, 9);
        assert_eq!(
            run(wrong_decimals, &[&payer, &holder]),
            json!({"InstructionError": [0, {"Custom": 18}]})
        );

        let too_much =
            transfer_checked_instruction(&source, &mint, &destination, &holder.pubkey(), 1_001, 6);
        assert_eq!(
            run(too_much, &[&payer, &holder]),
            json!({"InstructionError": [0, {"Custom": 1}]})
        );

        let not_the_owner =
            transfer_checked_instruction(&source, &mint, &destination, &payer.pubkey(), 10, 6);
        assert_eq!(
            run(not_the_owner, &[&payer]),
            json!({"InstructionError": [0, {"Custom": 4}]})
        );

        let other_mint = Pubkey::new_unique();
        ledger.create_mint(&other_mint, 6);
        let wrong_mint = transfer_checked_instruction(
            &source,
            &other_mint,
            &destination,
            &holder.pubkey(),
            10,
            6,
        );
        assert_eq!(
            run(wrong_mint, &[&payer, &holder]),
            json!({"InstructionError": [0, {"Custom": 3}]})
        );

        let (_, foreign) = token_setup(&ledger, &recipient, 5);
        let across_mints =
            transfer_checked_instruction(&source, &mint, &foreign, &holder.pubkey(), 10, 6);
        assert_eq!(
            run(across_mints, &[&payer, &holder]),
            json!({"InstructionError": [0, {"Custom": 3}]})
        );

        let missing = Pubkey::new_unique();
        let to_nowhere =
            transfer_checked_instruction(&source, &mint, &missing, &holder.pubkey(), 10, 6);
        assert_eq!(
            run(to_nowhere, &[&payer, &holder]),
            json!({"InstructionError": [0, "InvalidAccountData"]})
        );

        // The plain `Transfer` (3) works too.
        let mut data = vec![3];
        data.extend_from_slice(&400u64.to_le_bytes());
        let plain = Instruction {
            program_id: TOKEN_PROGRAM_ID,
            accounts: vec![
                AccountMeta::new(source, false),
                AccountMeta::new(destination, false),
                AccountMeta::new_readonly(holder.pubkey(), true),
            ],
            data,
        };
        let tx = legacy(&ledger, &[plain], &payer, &[&payer, &holder]);
        ledger.submit(tx, false, false).unwrap();
        assert_eq!(ledger.token_account(&source).unwrap().amount, 600);
        assert_eq!(ledger.token_account(&destination).unwrap().amount, 400);
    }

    #[test]
    fn associated_token_accounts_are_created_once() {
        let ledger = ledger();
        let payer = funded(&ledger, SOL);
        let wallet = Pubkey::new_unique();
        let mint = Pubkey::new_unique();
        ledger.create_mint(&mint, 6);
        let ata = associated_token_address(&wallet, &mint);
        let create =
            create_associated_token_account_idempotent_instruction(&payer.pubkey(), &wallet, &mint);

        let tx = legacy(&ledger, std::slice::from_ref(&create), &payer, &[&payer]);
        ledger.submit(tx, false, false).unwrap();
        let account = ledger.account(&ata).unwrap();
        assert_eq!(account.lamports, TOKEN_ACCOUNT_RENT_EXEMPT_MINIMUM);
        assert_eq!(account.data_bytes().len(), TOKEN_ACCOUNT_LEN);
        let paid = ledger.lamports(&payer.pubkey());

        // Idempotent: a second one succeeds and changes nothing but the fee.
        let tx = legacy(
            &ledger,
            &[
                create.clone(),
                Instruction {
                    data: vec![1],
                    ..create.clone()
                },
            ],
            &payer,
            &[&payer],
        );
        ledger.submit(tx, false, false).unwrap();
        assert_eq!(
            ledger.lamports(&payer.pubkey()),
            paid - LAMPORTS_PER_SIGNATURE
        );

        // The non-idempotent `Create` fails on an existing account.
        let strict = Instruction {
            data: vec![],
            ..create.clone()
        };
        let tx = legacy(&ledger, &[strict], &payer, &[&payer]);
        assert_eq!(
            preflight_err(ledger.submit(tx, false, false)).1,
            json!({"InstructionError": [0, "IllegalOwner"]})
        );

        // The account must be the real derivation.
        let mut wrong = create.clone();
        wrong.accounts[1].pubkey = Pubkey::new_unique();
        let tx = legacy(&ledger, &[wrong], &payer, &[&payer]);
        assert_eq!(
            preflight_err(ledger.submit(tx, false, false)).1,
            json!({"InstructionError": [0, "InvalidSeeds"]})
        );

        // A payer who cannot pay the rent.
        let poor = funded(&ledger, 1_000_000);
        let other = create_associated_token_account_idempotent_instruction(
            &poor.pubkey(),
            &Pubkey::new_unique(),
            &mint,
        );
        let tx = legacy(&ledger, &[other], &poor, &[&poor]);
        assert_eq!(
            preflight_err(ledger.submit(tx, false, false)).1,
            json!({"InstructionError": [0, {"Custom": 1}]})
        );
    }

    #[test]
    fn unsupported_programs_and_lookup_tables_are_refused() {
        let ledger = ledger();
        let payer = funded(&ledger, SOL);
        let program = Pubkey::new_unique();
        let unknown = Instruction {
            program_id: program,
            accounts: vec![AccountMeta::new(payer.pubkey(), true)],
            data: vec![1, 2, 3],
        };
        let tx = legacy(&ledger, &[unknown], &payer, &[&payer]);
        assert_eq!(
            preflight_err(ledger.submit(tx, false, false)).1,
            json!({"InstructionError": [0, "UnsupportedProgramId"]})
        );

        let memo = Instruction {
            program_id: MEMO_PROGRAM_ID,
            accounts: vec![AccountMeta::new_readonly(payer.pubkey(), true)],
            data: b"creditbrain".to_vec(),
        };
        let tx = version0(&ledger, &[memo], &payer, &[&payer]);
        let signature = ledger.submit(tx, false, false).unwrap();
        assert!(
            ledger
                .landed(&signature)
                .unwrap()
                .log_messages
                .contains(&"Program log: Memo (len 11): \"creditbrain\"".to_string())
        );

        let mut with_table = version0(
            &ledger,
            &[transfer(&payer.pubkey(), &Pubkey::new_unique(), SOL)],
            &payer,
            &[&payer],
        );
        if let VersionedMessage::V0(message) = &mut with_table.message {
            message
                .address_table_lookups
                .push(v0::MessageAddressTableLookup {
                    account_key: Pubkey::new_unique(),
                    writable_indexes: vec![0],
                    readonly_indexes: vec![],
                });
        }
        let signed = VersionedTransaction::try_new(with_table.message, &[&payer]).unwrap();
        assert!(matches!(
            ledger.submit(signed, false, false),
            Err(SubmitError::Invalid(message)) if message.contains("address table")
        ));
    }

    #[test]
    fn compute_unit_limits_are_enforced() {
        let ledger = ledger();
        let payer = funded(&ledger, SOL);
        let pool = Keypair::new();
        let (mint, pool_usdc) = token_setup(&ledger, &pool.pubkey(), 1_000);
        let (_, user_usdc) = {
            let user = associated_token_address(&payer.pubkey(), &mint);
            ledger.mint_to(&user, &mint, &payer.pubkey(), 0);
            (mint, user)
        };
        let tx = legacy(
            &ledger,
            &[
                set_compute_unit_limit_instruction(1_000),
                transfer_checked_instruction(&pool_usdc, &mint, &user_usdc, &pool.pubkey(), 1, 6),
            ],
            &payer,
            &[&payer, &pool],
        );
        assert_eq!(
            preflight_err(ledger.submit(tx, false, false)).1,
            json!({"InstructionError": [1, "ComputationalBudgetExceeded"]})
        );
    }

    #[test]
    fn helpers_match_the_real_formats() {
        assert_eq!(ui_amount_string(1_500_000, 6), "1.5");
        assert_eq!(ui_amount_string(0, 6), "0");
        assert_eq!(ui_amount_string(1_000_000, 6), "1");
        assert_eq!(ui_amount_string(123, 6), "0.000123");
        assert_eq!(ui_amount_string(42, 0), "42");
        assert_eq!(ui_amount(1_500_000, 6), 1.5);
        assert_eq!(rent_exempt_minimum(0), SYSTEM_ACCOUNT_RENT_EXEMPT_MINIMUM);
        assert_eq!(
            rent_exempt_minimum(TOKEN_ACCOUNT_LEN),
            TOKEN_ACCOUNT_RENT_EXEMPT_MINIMUM
        );
        assert_eq!(rent_exempt_minimum(MINT_LEN), MINT_RENT_EXEMPT_MINIMUM);

        let (source, mint, destination, authority) = (
            Pubkey::new_unique(),
            Pubkey::new_unique(),
            Pubkey::new_unique(),
            Pubkey::new_unique(),
        );
        let instruction =
            transfer_checked_instruction(&source, &mint, &destination, &authority, 258, 6);
        assert_eq!(instruction.data, vec![12, 2, 1, 0, 0, 0, 0, 0, 0, 6]);
        assert_eq!(
            instruction.accounts,
            vec![
                AccountMeta::new(source, false),
                AccountMeta::new_readonly(mint, false),
                AccountMeta::new(destination, false),
                AccountMeta::new_readonly(authority, true),
            ]
        );
        // The derivation is deterministic, off-curve, and specific to owner and mint.
        let owner = Pubkey::new_unique();
        let ata = associated_token_address(&owner, &mint);
        assert_eq!(ata, associated_token_address(&owner, &mint));
        assert!(!ata.is_on_curve());
        assert_ne!(ata, associated_token_address(&mint, &owner));

        let account = LedgerAccount {
            address: ata,
            lamports: TOKEN_ACCOUNT_RENT_EXEMPT_MINIMUM,
            data: LedgerAccountData::Token(TokenAccount {
                address: ata,
                mint,
                owner,
                amount: 7,
            }),
        };
        let data = account.data_bytes();
        assert_eq!(&data[..32], mint.as_ref());
        assert_eq!(&data[32..64], owner.as_ref());
        assert_eq!(data[64..72], 7u64.to_le_bytes());
        assert_eq!(data[108], 1);
    }
}
