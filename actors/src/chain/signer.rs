//! The signer's two gates: [`inspect`], the refuse-to-sign guard that reads every top-level
//! instruction of a transaction someone else built (Bags) and refuses anything that could move
//! our SOL or tokens beyond what the purpose allows, and [`sign`], which fills our slot of a
//! partially signed transaction only when we are its fee payer and every co-signature is valid.
//!
//! What the guard can and cannot see: a program can only debit our wallet through the System
//! program and our token accounts through the Token program with our signature, and a program
//! (or its CPIs) can only use our signature if our account is passed to it. So every instruction
//! that lists our key is checked: System and Token instructions are decoded, the ATA, compute
//! budget and memo programs are understood, and any other program that receives our key must be
//! on the caller's allow-list (Bags/Meteora/aggregator program ids) — what an allow-listed
//! program does inside its CPIs is trusted, not verified.

// `GuardError` names the program, accounts and amounts by value for the operator; refusals are
// the cold path, so its size does not matter here ([`Refusal`] boxes it for everyone else).
#![allow(clippy::result_large_err)]

use std::collections::BTreeSet;

use solana_message::VersionedMessage;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signature, Signer};
use solana_sdk::transaction::VersionedTransaction;
use solana_system_interface::instruction::SystemInstruction;

pub const SYSTEM_PROGRAM_ID: Pubkey = Pubkey::from_str_const("11111111111111111111111111111111");
pub const TOKEN_PROGRAM_ID: Pubkey =
    Pubkey::from_str_const("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA");
pub const TOKEN_2022_PROGRAM_ID: Pubkey =
    Pubkey::from_str_const("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb");
pub const ASSOCIATED_TOKEN_PROGRAM_ID: Pubkey =
    Pubkey::from_str_const("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL");
pub const COMPUTE_BUDGET_PROGRAM_ID: Pubkey =
    Pubkey::from_str_const("ComputeBudget111111111111111111111111111111");
pub const MEMO_PROGRAM_ID: Pubkey =
    Pubkey::from_str_const("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr");
pub const MEMO_V1_PROGRAM_ID: Pubkey =
    Pubkey::from_str_const("Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo");
pub const WRAPPED_SOL_MINT: Pubkey =
    Pubkey::from_str_const("So11111111111111111111111111111111111111112");

/// The most compute units a transaction may request (the runtime clamps above it).
const MAX_COMPUTE_UNIT_LIMIT: u64 = 1_400_000;
/// Default units per non-compute-budget instruction when no limit is set (the upper bound the
/// runtime may use, so the computed priority fee is never an underestimate).
const DEFAULT_UNITS_PER_INSTRUCTION: u64 = 200_000;

/// What a transaction is allowed to do with our funds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expectation {
    /// A Bags fee claim: our SOL may leave only as fees.
    Claim(ClaimExpectation),
    /// A Bags partner-fee claim: the same rules as a claim.
    PartnerClaim(ClaimExpectation),
    /// A SOL → USDC swap: our SOL may leave only through System transfers totalling at most
    /// `max_lamports_in`; no token ever leaves our accounts (USDC above all).
    Swap(SwapExpectation),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimExpectation {
    /// Programs (Bags fee-share, Meteora DBC / DAMM v2 ...) allowed to receive our key.
    pub allowed_programs: BTreeSet<Pubkey>,
    /// The most the compute-budget priority fee may cost (price × limit).
    pub max_priority_fee_lamports: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwapExpectation {
    /// The quoted input: the most lamports System transfers from us may total.
    pub max_lamports_in: u64,
    pub usdc_mint: Pubkey,
    /// Programs (the swap router / AMM) allowed to receive our key.
    pub allowed_programs: BTreeSet<Pubkey>,
    pub max_priority_fee_lamports: u64,
}

impl Expectation {
    fn allowed_programs(&self) -> &BTreeSet<Pubkey> {
        match self {
            Expectation::Claim(claim) | Expectation::PartnerClaim(claim) => &claim.allowed_programs,
            Expectation::Swap(swap) => &swap.allowed_programs,
        }
    }

    fn max_priority_fee_lamports(&self) -> u64 {
        match self {
            Expectation::Claim(claim) | Expectation::PartnerClaim(claim) => {
                claim.max_priority_fee_lamports
            }
            Expectation::Swap(swap) => swap.max_priority_fee_lamports,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Expectation::Claim(_) => "claim",
            Expectation::PartnerClaim(_) => "partner claim",
            Expectation::Swap(_) => "swap",
        }
    }
}

/// Why the guard refused a transaction. Every variant names where (instruction index, program)
/// and what (amount, destination) when known.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum GuardError {
    #[error("malformed transaction: {0}")]
    Malformed(String),
    #[error("unsupported transaction version")]
    UnsupportedVersion,
    #[error("fee payer is {fee_payer}, not our signer {signer}")]
    NotFeePayer { fee_payer: Pubkey, signer: Pubkey },
    /// A durable-nonce transaction never expires by block height, which would break the
    /// expiry rule of the exactly-once protocol (an "expired" one could still land).
    #[error("durable-nonce transactions are refused")]
    DurableNonce,
    #[error("a {expectation} may not use address lookup tables ({count} used)")]
    LookupTables {
        expectation: &'static str,
        count: usize,
    },
    #[error(
        "instruction {instruction} ({program}) moves {lamports} lamports of our SOL to {} in a \
         claim, where only fees may leave",
        destination.map_or_else(|| "an unresolved account".to_string(), |d| d.to_string())
    )]
    SolOutflow {
        instruction: usize,
        program: Pubkey,
        lamports: u64,
        destination: Option<Pubkey>,
    },
    #[error("the swap sends {total} lamports of our SOL, more than the quoted {max}")]
    SwapExceedsQuote { total: u128, max: u64 },
    #[error(
        "instruction {instruction} ({program}) would {action} our tokens{}{}{}",
        account.map(|a| format!(" from {a}")).unwrap_or_default(),
        destination.map(|d| format!(" to {d}")).unwrap_or_default(),
        amount.map(|a| format!(" ({a} base units)")).unwrap_or_default()
    )]
    TokenOutflow {
        instruction: usize,
        program: Pubkey,
        action: &'static str,
        account: Option<Pubkey>,
        destination: Option<Pubkey>,
        amount: Option<u64>,
    },
    #[error("instruction {instruction} ({program}) makes us pay for an account of {}",
        wallet.map_or_else(|| "an unresolved wallet".to_string(), |w| w.to_string()))]
    ForeignAccountPaid {
        instruction: usize,
        program: Pubkey,
        wallet: Option<Pubkey>,
    },
    #[error("instruction {instruction} ({program}) would {action} our wallet account")]
    WalletTakeover {
        instruction: usize,
        program: Pubkey,
        action: &'static str,
    },
    #[error(
        "instruction {instruction} ({program}) creates our token account of mint {mint}, which this transaction has no use for"
    )]
    UnexpectedAccount {
        instruction: usize,
        program: Pubkey,
        mint: Pubkey,
    },
    #[error("instruction {instruction} ({program}) is not allowed to receive our signature")]
    UnknownProgram { instruction: usize, program: Pubkey },
    #[error("instruction {instruction} ({program}) is not understood: {reason}")]
    Unrecognized {
        instruction: usize,
        program: Pubkey,
        reason: String,
    },
    #[error("instruction {instruction}: invalid compute budget: {reason}")]
    ComputeBudget { instruction: usize, reason: String },
    #[error("priority fee of {lamports} lamports exceeds the cap of {max}")]
    PriorityFeeTooHigh { lamports: u64, max: u64 },
}

/// Why [`sign`] refused.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum SignError {
    #[error("malformed transaction: {0}")]
    Malformed(String),
    #[error("fee payer is {fee_payer}, not our signer {signer}")]
    NotFeePayer { fee_payer: Pubkey, signer: Pubkey },
    #[error("our signer {signer} is not a required signer")]
    NotRequiredSigner { signer: Pubkey },
    /// Another required signer's slot is empty: the transaction could never verify.
    #[error("the signature of {key} (slot {index}) is missing")]
    CoSignatureMissing { index: usize, key: Pubkey },
    /// Another required signer's signature does not verify over this message: the message was
    /// altered after they signed (or the signature is garbage).
    #[error("the signature of {key} (slot {index}) does not verify")]
    CoSignatureInvalid { index: usize, key: Pubkey },
    #[error("signing failed: {0}")]
    Signer(String),
}

/// Why a transaction was not signed: the guard or the signer refused. Boxed, so the errors that
/// carry a refusal (`protocol::TxError`, the ChainActor's) stay small.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    #[error(transparent)]
    Guard(Box<GuardError>),
    #[error(transparent)]
    Sign(Box<SignError>),
}

impl From<GuardError> for Refusal {
    fn from(error: GuardError) -> Self {
        Refusal::Guard(Box::new(error))
    }
}

impl From<SignError> for Refusal {
    fn from(error: SignError) -> Self {
        Refusal::Sign(Box::new(error))
    }
}

/// Fills our signature slot of `transaction` and returns our signature (the transaction id, since
/// we are the fee payer).
///
/// Refuses when our key is not the fee payer (first account) or not among the required signers,
/// and when any OTHER required signature (Bags' vault or pool keys) is missing or does not verify
/// over the message: a partially signed transaction arrives with those filled, and a bad one
/// would only be dropped by the cluster after we signed it. Call [`inspect`] first (or use
/// [`inspect_and_sign`]).
pub fn sign(
    transaction: &mut VersionedTransaction,
    keypair: &Keypair,
) -> Result<Signature, SignError> {
    let signer = keypair.pubkey();
    transaction
        .message
        .sanitize()
        .map_err(|e| SignError::Malformed(e.to_string()))?;
    let required = usize::from(transaction.message.header().num_required_signatures);
    let keys = transaction.message.static_account_keys();
    let fee_payer = keys
        .first()
        .copied()
        .ok_or_else(|| SignError::Malformed("no account keys".to_string()))?;
    if fee_payer != signer {
        return Err(SignError::NotFeePayer { fee_payer, signer });
    }
    let index = keys
        .iter()
        .take(required)
        .position(|key| *key == signer)
        .ok_or(SignError::NotRequiredSigner { signer })?;
    if transaction.signatures.len() != required {
        return Err(SignError::Malformed(format!(
            "{} signature slots for {required} required signers",
            transaction.signatures.len()
        )));
    }
    let message = transaction.message.serialize();
    for (slot, (signature, key)) in transaction.signatures.iter().zip(keys).enumerate() {
        if slot == index {
            continue;
        }
        if *signature == Signature::default() {
            return Err(SignError::CoSignatureMissing {
                index: slot,
                key: *key,
            });
        }
        if !signature.verify(key.as_ref(), &message) {
            return Err(SignError::CoSignatureInvalid {
                index: slot,
                key: *key,
            });
        }
    }
    let signature = keypair
        .try_sign_message(&message)
        .map_err(|e| SignError::Signer(e.to_string()))?;
    transaction.signatures[index] = signature;
    Ok(signature)
}

/// [`inspect`] then [`sign`]: the one call a transaction builder makes.
pub fn inspect_and_sign(
    transaction: &mut VersionedTransaction,
    keypair: &Keypair,
    expectation: &Expectation,
) -> Result<Signature, Refusal> {
    inspect(transaction, &keypair.pubkey(), expectation)?;
    Ok(sign(transaction, keypair)?)
}

/// The account at message index `index`: `Some` for a static key, `None` for one loaded from a
/// lookup table (unresolved here; never our key, since signers are always static).
fn account(keys: &[Pubkey], instruction_accounts: &[u8], position: usize) -> Option<Pubkey> {
    instruction_accounts
        .get(position)
        .and_then(|index| keys.get(usize::from(*index)))
        .copied()
}

/// The refuse-to-sign guard, run BEFORE signing: `Ok` only if the transaction is paid by
/// `signer` and does nothing with our funds beyond what `expectation` allows.
pub fn inspect(
    transaction: &VersionedTransaction,
    signer: &Pubkey,
    expectation: &Expectation,
) -> Result<(), GuardError> {
    let message = &transaction.message;
    if matches!(message, VersionedMessage::V1(_)) {
        return Err(GuardError::UnsupportedVersion);
    }
    message
        .sanitize()
        .map_err(|e| GuardError::Malformed(e.to_string()))?;
    let keys = message.static_account_keys();
    let fee_payer = keys.first().copied().unwrap_or_default();
    if fee_payer != *signer {
        return Err(GuardError::NotFeePayer {
            fee_payer,
            signer: *signer,
        });
    }
    if transaction.uses_durable_nonce() {
        return Err(GuardError::DurableNonce);
    }
    let lookups = message.address_table_lookups().map_or(0, <[_]>::len);
    if lookups > 0 && !matches!(expectation, Expectation::Swap(_)) {
        // A claim has no need for them, and unresolved accounts would hide destinations.
        return Err(GuardError::LookupTables {
            expectation: expectation.name(),
            count: lookups,
        });
    }

    let mut budget = Budget::default();
    let mut sol_out: u128 = 0;
    for (index, instruction) in message.instructions().iter().enumerate() {
        let program = keys
            .get(usize::from(instruction.program_id_index))
            .copied()
            .ok_or_else(|| GuardError::Malformed(format!("instruction {index}: no program")))?;
        let accounts = &instruction.accounts;
        let data = &instruction.data;
        let ours = accounts
            .iter()
            .any(|a| keys.get(usize::from(*a)) == Some(signer));
        if program == COMPUTE_BUDGET_PROGRAM_ID {
            budget.read(index, data)?;
            continue;
        }
        budget.instructions += 1;
        if program == SYSTEM_PROGRAM_ID {
            if let Some((lamports, destination)) =
                system_outflow(index, keys, accounts, data, signer, ours)?
            {
                match expectation {
                    Expectation::Claim(_) | Expectation::PartnerClaim(_) => {
                        return Err(GuardError::SolOutflow {
                            instruction: index,
                            program,
                            lamports,
                            destination,
                        });
                    }
                    Expectation::Swap(_) => sol_out += u128::from(lamports),
                }
            }
        } else if program == TOKEN_PROGRAM_ID || program == TOKEN_2022_PROGRAM_ID {
            if ours {
                token_instruction(index, program, keys, accounts, data, signer)?;
            }
        } else if program == ASSOCIATED_TOKEN_PROGRAM_ID {
            if ours {
                let own_mints = match expectation {
                    // A swap pays only for our own USDC account (or the wrapped-SOL one a router
                    // may use for the SOL leg).
                    Expectation::Swap(swap) => Some([swap.usdc_mint, WRAPPED_SOL_MINT]),
                    Expectation::Claim(_) | Expectation::PartnerClaim(_) => None,
                };
                associated_token_instruction(
                    index,
                    program,
                    keys,
                    accounts,
                    data,
                    signer,
                    own_mints.as_ref().map(|mints| mints.as_slice()),
                )?;
            }
        } else if program == MEMO_PROGRAM_ID || program == MEMO_V1_PROGRAM_ID {
            // A memo only logs; v2 checks that the accounts it lists signed.
        } else if ours && !expectation.allowed_programs().contains(&program) {
            return Err(GuardError::UnknownProgram {
                instruction: index,
                program,
            });
        }
    }

    if let Expectation::Swap(swap) = expectation
        && sol_out > u128::from(swap.max_lamports_in)
    {
        return Err(GuardError::SwapExceedsQuote {
            total: sol_out,
            max: swap.max_lamports_in,
        });
    }
    let priority_fee = budget.priority_fee_lamports();
    if priority_fee > expectation.max_priority_fee_lamports() {
        return Err(GuardError::PriorityFeeTooHigh {
            lamports: priority_fee,
            max: expectation.max_priority_fee_lamports(),
        });
    }
    Ok(())
}

/// Compute-budget instructions as the runtime reads them.
#[derive(Default)]
struct Budget {
    unit_limit: Option<u64>,
    /// Micro-lamports per compute unit.
    unit_price: Option<u64>,
    heap: bool,
    data_size: bool,
    /// Non-compute-budget instructions (for the default unit limit).
    instructions: u64,
}

impl Budget {
    fn read(&mut self, index: usize, data: &[u8]) -> Result<(), GuardError> {
        let error = |reason: &str| GuardError::ComputeBudget {
            instruction: index,
            reason: reason.to_string(),
        };
        let duplicate = || error("duplicate compute-budget instruction");
        match (data.first(), data.len()) {
            (Some(1), 5) => {
                if std::mem::replace(&mut self.heap, true) {
                    return Err(duplicate());
                }
            }
            (Some(2), 5) => {
                if self.unit_limit.is_some() {
                    return Err(duplicate());
                }
                let mut bytes = [0u8; 4];
                bytes.copy_from_slice(&data[1..5]);
                self.unit_limit = Some(u64::from(u32::from_le_bytes(bytes)));
            }
            (Some(3), 9) => {
                if self.unit_price.is_some() {
                    return Err(duplicate());
                }
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&data[1..9]);
                self.unit_price = Some(u64::from_le_bytes(bytes));
            }
            (Some(4), 5) => {
                if std::mem::replace(&mut self.data_size, true) {
                    return Err(duplicate());
                }
            }
            _ => return Err(error("unknown or malformed instruction")),
        }
        Ok(())
    }

    /// price × limit in micro-lamports, rounded up to lamports; the default limit is the upper
    /// bound (200,000 per instruction), so this never underestimates.
    fn priority_fee_lamports(&self) -> u64 {
        let limit = self
            .unit_limit
            .unwrap_or(
                self.instructions
                    .saturating_mul(DEFAULT_UNITS_PER_INSTRUCTION),
            )
            .min(MAX_COMPUTE_UNIT_LIMIT);
        let micro = u128::from(self.unit_price.unwrap_or(0)) * u128::from(limit);
        u64::try_from(micro.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// A System instruction's outflow from our wallet: `Some((lamports, destination))` when it moves
/// our lamports, `None` when it does not touch our funds; refuses instructions that would hand
/// our wallet to a program or that are not understood while listing our key.
fn system_outflow(
    index: usize,
    keys: &[Pubkey],
    accounts: &[u8],
    data: &[u8],
    signer: &Pubkey,
    ours: bool,
) -> Result<Option<(u64, Option<Pubkey>)>, GuardError> {
    let program = SYSTEM_PROGRAM_ID;
    let at = |position| account(keys, accounts, position);
    let is_us = |position| at(position) == Some(*signer);
    let instruction: SystemInstruction =
        bincode::deserialize(data).map_err(|_| GuardError::Unrecognized {
            instruction: index,
            program,
            reason: "undecodable System instruction".to_string(),
        })?;
    let takeover = |action| GuardError::WalletTakeover {
        instruction: index,
        program,
        action,
    };
    Ok(match instruction {
        SystemInstruction::Transfer { lamports } => is_us(0).then(|| (lamports, at(1))),
        SystemInstruction::TransferWithSeed { lamports, .. } => {
            // Funds of an account derived from our key are ours too.
            is_us(1).then(|| (lamports, at(2)))
        }
        SystemInstruction::CreateAccount { lamports, .. } => {
            if is_us(1) {
                return Err(takeover("turn into a program account"));
            }
            is_us(0).then(|| (lamports, at(1)))
        }
        SystemInstruction::CreateAccountWithSeed { lamports, .. } => {
            is_us(0).then(|| (lamports, at(1)))
        }
        SystemInstruction::CreateAccountAllowPrefund { lamports, .. } => {
            if is_us(0) {
                return Err(takeover("turn into a program account"));
            }
            is_us(1).then(|| (lamports, at(0)))
        }
        SystemInstruction::Assign { .. } if is_us(0) => return Err(takeover("assign")),
        SystemInstruction::Allocate { .. } if is_us(0) => return Err(takeover("allocate")),
        other if ours => {
            return Err(GuardError::Unrecognized {
                instruction: index,
                program,
                reason: format!("System instruction {} with our key", variant_name(&other)),
            });
        }
        _ => None,
    })
}

fn variant_name(instruction: &SystemInstruction) -> &'static str {
    match instruction {
        SystemInstruction::CreateAccount { .. } => "CreateAccount",
        SystemInstruction::Assign { .. } => "Assign",
        SystemInstruction::Transfer { .. } => "Transfer",
        SystemInstruction::CreateAccountWithSeed { .. } => "CreateAccountWithSeed",
        SystemInstruction::AdvanceNonceAccount => "AdvanceNonceAccount",
        SystemInstruction::WithdrawNonceAccount(_) => "WithdrawNonceAccount",
        SystemInstruction::InitializeNonceAccount(_) => "InitializeNonceAccount",
        SystemInstruction::AuthorizeNonceAccount(_) => "AuthorizeNonceAccount",
        SystemInstruction::Allocate { .. } => "Allocate",
        SystemInstruction::AllocateWithSeed { .. } => "AllocateWithSeed",
        SystemInstruction::AssignWithSeed { .. } => "AssignWithSeed",
        SystemInstruction::TransferWithSeed { .. } => "TransferWithSeed",
        SystemInstruction::UpgradeNonceAccount => "UpgradeNonceAccount",
        SystemInstruction::CreateAccountAllowPrefund { .. } => "CreateAccountAllowPrefund",
    }
}

/// An SPL Token (or Token-2022) instruction that lists our key. Our key there is an authority
/// (wallets own token accounts; they are not token accounts), so anything that lets tokens leave
/// or hands over control is refused; closing our account with the rent back to us, creating
/// accounts and wrapping SOL are fine.
fn token_instruction(
    index: usize,
    program: Pubkey,
    keys: &[Pubkey],
    accounts: &[u8],
    data: &[u8],
    signer: &Pubkey,
) -> Result<(), GuardError> {
    let at = |position| account(keys, accounts, position);
    let amount = || {
        data.get(1..9)
            .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
            .map(u64::from_le_bytes)
    };
    let outflow = |action, source, destination, amount| GuardError::TokenOutflow {
        instruction: index,
        program,
        action,
        account: source,
        destination,
        amount,
    };
    match data.first() {
        // Transfer [source, destination, authority]
        Some(3) => Err(outflow("transfer", at(0), at(1), amount())),
        // TransferChecked [source, mint, destination, authority]
        Some(12) => Err(outflow("transfer", at(0), at(2), amount())),
        // Approve [source, delegate, owner] / ApproveChecked [source, mint, delegate, owner]
        Some(4) => Err(outflow("approve a delegate over", at(0), at(1), amount())),
        Some(13) => Err(outflow("approve a delegate over", at(0), at(2), amount())),
        // SetAuthority [account, current authority]
        Some(6) => Err(outflow("hand over authority of", at(0), None, None)),
        // Burn [account, mint, authority] / BurnChecked
        Some(8) | Some(15) => Err(outflow("burn", at(0), None, amount())),
        // CloseAccount [account, destination, owner]: the account's lamports (rent, or all of
        // a wrapped-SOL account) go to `destination`; a non-native account with tokens cannot
        // be closed at all.
        Some(9) => {
            if at(2) == Some(*signer) && at(1) != Some(*signer) {
                Err(outflow("close", at(0), at(1), None))
            } else {
                Ok(())
            }
        }
        // InitializeAccount (1, 16, 18), Revoke (5), MintTo (7, 14), SyncNative (17),
        // InitializeMint (0, 20), InitializeMultisig (2, 19), GetAccountDataSize (21),
        // InitializeImmutableOwner (22), AmountToUiAmount / UiAmountToAmount (23, 24).
        Some(0..=2 | 5 | 7 | 14 | 16..=24) => Ok(()),
        // Freeze / Thaw (10, 11) and every extension instruction: not expected with our key.
        Some(tag) => Err(GuardError::Unrecognized {
            instruction: index,
            program,
            reason: format!("token instruction {tag} with our key"),
        }),
        None => Err(GuardError::Unrecognized {
            instruction: index,
            program,
            reason: "empty token instruction".to_string(),
        }),
    }
}

/// Associated Token Account program: creating an account is fine when it is for our own wallet
/// (the rent stays ours, in that account) and, when `own_mints` is given, of one of those mints
/// (a mint loaded from a lookup table cannot be checked, and the rent stays ours either way);
/// paying for someone else's is an outflow.
fn associated_token_instruction(
    index: usize,
    program: Pubkey,
    keys: &[Pubkey],
    accounts: &[u8],
    data: &[u8],
    signer: &Pubkey,
    own_mints: Option<&[Pubkey]>,
) -> Result<(), GuardError> {
    let at = |position| account(keys, accounts, position);
    match data {
        // Create / CreateIdempotent [payer, ata, wallet, mint, system program, token program]
        [] | [0] | [1] => {
            if at(0) != Some(*signer) {
                return Ok(());
            }
            if at(2) != Some(*signer) {
                return Err(GuardError::ForeignAccountPaid {
                    instruction: index,
                    program,
                    wallet: at(2),
                });
            }
            match (own_mints, at(3)) {
                (Some(mints), Some(mint)) if !mints.contains(&mint) => {
                    Err(GuardError::UnexpectedAccount {
                        instruction: index,
                        program,
                        mint,
                    })
                }
                _ => Ok(()),
            }
        }
        _ => Err(GuardError::Unrecognized {
            instruction: index,
            program,
            reason: "associated-token instruction other than create".to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use solana_message::{Message, v0};
    use solana_sdk::hash::Hash;
    use solana_sdk::instruction::{AccountMeta, Instruction};
    use solana_system_interface::instruction::{assign, transfer};

    const SOL: u64 = 1_000_000_000;
    const USDC: Pubkey = Pubkey::from_str_const("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v");
    const FEE_SHARE: Pubkey =
        Pubkey::from_str_const("FEE2tBhCKAt7shrod19QttSVREUYPiyMzoku1mL1gqVK");

    fn claim_expectation() -> Expectation {
        Expectation::Claim(ClaimExpectation {
            allowed_programs: [FEE_SHARE].into_iter().collect(),
            max_priority_fee_lamports: 100_000,
        })
    }

    fn swap_expectation(max_lamports_in: u64) -> Expectation {
        Expectation::Swap(SwapExpectation {
            max_lamports_in,
            usdc_mint: USDC,
            allowed_programs: BTreeSet::new(),
            max_priority_fee_lamports: 100_000,
        })
    }

    fn ata(owner: &Pubkey, mint: &Pubkey) -> Pubkey {
        Pubkey::find_program_address(
            &[owner.as_ref(), TOKEN_PROGRAM_ID.as_ref(), mint.as_ref()],
            &ASSOCIATED_TOKEN_PROGRAM_ID,
        )
        .0
    }

    fn create_ata_idempotent(payer: &Pubkey, owner: &Pubkey, mint: &Pubkey) -> Instruction {
        Instruction {
            program_id: ASSOCIATED_TOKEN_PROGRAM_ID,
            accounts: vec![
                AccountMeta::new(*payer, true),
                AccountMeta::new(ata(owner, mint), false),
                AccountMeta::new_readonly(*owner, false),
                AccountMeta::new_readonly(*mint, false),
                AccountMeta::new_readonly(SYSTEM_PROGRAM_ID, false),
                AccountMeta::new_readonly(TOKEN_PROGRAM_ID, false),
            ],
            data: vec![1],
        }
    }

    fn transfer_checked(
        source: &Pubkey,
        destination: &Pubkey,
        authority: &Pubkey,
        amount: u64,
    ) -> Instruction {
        let mut data = vec![12];
        data.extend_from_slice(&amount.to_le_bytes());
        data.push(6);
        Instruction {
            program_id: TOKEN_PROGRAM_ID,
            accounts: vec![
                AccountMeta::new(*source, false),
                AccountMeta::new_readonly(USDC, false),
                AccountMeta::new(*destination, false),
                AccountMeta::new_readonly(*authority, true),
            ],
            data,
        }
    }

    fn compute_budget(limit: u32, micro_lamports: u64) -> Vec<Instruction> {
        let mut limit_data = vec![2];
        limit_data.extend_from_slice(&limit.to_le_bytes());
        let mut price_data = vec![3];
        price_data.extend_from_slice(&micro_lamports.to_le_bytes());
        vec![
            Instruction {
                program_id: COMPUTE_BUDGET_PROGRAM_ID,
                accounts: Vec::new(),
                data: limit_data,
            },
            Instruction {
                program_id: COMPUTE_BUDGET_PROGRAM_ID,
                accounts: Vec::new(),
                data: price_data,
            },
        ]
    }

    /// A legacy transaction paid by `payer`, signed by `cosigners` only (as Bags hands it out:
    /// our slot, the first, left empty).
    fn legacy(
        payer: &Pubkey,
        instructions: &[Instruction],
        cosigners: &[&Keypair],
    ) -> VersionedTransaction {
        let message = Message::new_with_blockhash(instructions, Some(payer), &Hash::new_unique());
        partially_signed(VersionedMessage::Legacy(message), cosigners)
    }

    fn version0(
        payer: &Pubkey,
        instructions: &[Instruction],
        cosigners: &[&Keypair],
    ) -> VersionedTransaction {
        let message =
            v0::Message::try_compile(payer, instructions, &[], Hash::new_unique()).unwrap();
        partially_signed(VersionedMessage::V0(message), cosigners)
    }

    fn partially_signed(message: VersionedMessage, cosigners: &[&Keypair]) -> VersionedTransaction {
        let required = usize::from(message.header().num_required_signatures);
        let bytes = message.serialize();
        let mut signatures = vec![Signature::default(); required];
        for cosigner in cosigners {
            let slot = message
                .static_account_keys()
                .iter()
                .position(|key| *key == cosigner.pubkey())
                .unwrap();
            signatures[slot] = cosigner.sign_message(&bytes);
        }
        VersionedTransaction {
            signatures,
            message,
        }
    }

    /// A Bags claim as the sandbox builds it: the vault (a Bags key) transfers its lamports to us.
    fn claim(us: &Keypair, vault: &Keypair, extra: &[Instruction]) -> VersionedTransaction {
        let mut instructions = vec![transfer(&vault.pubkey(), &us.pubkey(), 2 * SOL)];
        instructions.extend_from_slice(extra);
        legacy(&us.pubkey(), &instructions, &[vault])
    }

    /// A Bags SOL → USDC swap as the sandbox builds it: budget, our USDC account, SOL to the
    /// pool, USDC from the pool (the pool signs).
    fn swap(
        us: &Keypair,
        pool: &Keypair,
        lamports_in: u64,
        extra: &[Instruction],
    ) -> VersionedTransaction {
        let mut instructions = compute_budget(120_000, 10_000);
        instructions.push(create_ata_idempotent(&us.pubkey(), &us.pubkey(), &USDC));
        instructions.push(transfer(&us.pubkey(), &pool.pubkey(), lamports_in));
        instructions.push(transfer_checked(
            &ata(&pool.pubkey(), &USDC),
            &ata(&us.pubkey(), &USDC),
            &pool.pubkey(),
            150_000_000,
        ));
        instructions.extend_from_slice(extra);
        version0(&us.pubkey(), &instructions, &[pool])
    }

    #[test]
    fn a_legit_claim_is_accepted_and_signed_into_our_slot() {
        let (us, vault) = (Keypair::new(), Keypair::new());
        let mut transaction = claim(&us, &vault, &[]);
        let signature = inspect_and_sign(&mut transaction, &us, &claim_expectation()).unwrap();
        assert_eq!(transaction.signatures[0], signature);
        assert!(transaction.verify_with_results().iter().all(|ok| *ok));
    }

    #[test]
    fn a_claim_that_also_sends_our_sol_to_a_stranger_is_refused() {
        let (us, vault) = (Keypair::new(), Keypair::new());
        let stranger = Pubkey::new_unique();
        let transaction = claim(&us, &vault, &[transfer(&us.pubkey(), &stranger, SOL)]);
        let error = inspect(&transaction, &us.pubkey(), &claim_expectation()).unwrap_err();
        assert_eq!(
            error,
            GuardError::SolOutflow {
                instruction: 1,
                program: SYSTEM_PROGRAM_ID,
                lamports: SOL,
                destination: Some(stranger),
            }
        );
        let text = error.to_string();
        assert!(
            text.contains(&stranger.to_string()) && text.contains("1000000000"),
            "{text}"
        );
        // A partner claim follows the same rules.
        let partner = Expectation::PartnerClaim(ClaimExpectation {
            allowed_programs: BTreeSet::new(),
            max_priority_fee_lamports: 0,
        });
        assert!(matches!(
            inspect(&transaction, &us.pubkey(), &partner),
            Err(GuardError::SolOutflow { .. })
        ));
    }

    #[test]
    fn a_claim_may_not_hand_our_wallet_or_tokens_to_anyone() {
        let (us, vault) = (Keypair::new(), Keypair::new());
        let stranger = Pubkey::new_unique();
        let our_usdc = ata(&us.pubkey(), &USDC);
        let refused = [
            // Assign our wallet to a program.
            assign(&us.pubkey(), &stranger),
            // Our USDC to a stranger.
            transfer_checked(&our_usdc, &ata(&stranger, &USDC), &us.pubkey(), 5),
            // Paying the rent of a stranger's token account.
            create_ata_idempotent(&us.pubkey(), &stranger, &USDC),
            // An unknown program receiving our signature.
            Instruction {
                program_id: Pubkey::new_unique(),
                accounts: vec![AccountMeta::new(us.pubkey(), true)],
                data: vec![7],
            },
        ];
        for instruction in refused {
            let transaction = claim(&us, &vault, &[instruction]);
            let error = inspect(&transaction, &us.pubkey(), &claim_expectation()).unwrap_err();
            assert!(
                matches!(
                    error,
                    GuardError::WalletTakeover { instruction: 1, .. }
                        | GuardError::TokenOutflow { instruction: 1, .. }
                        | GuardError::ForeignAccountPaid { instruction: 1, .. }
                        | GuardError::UnknownProgram { instruction: 1, .. }
                ),
                "{error:?}"
            );
        }
        // An allow-listed program may receive our key; one that does not get it is fine too.
        let allowed = Instruction {
            program_id: FEE_SHARE,
            accounts: vec![AccountMeta::new(us.pubkey(), true)],
            data: vec![1],
        };
        let unrelated = Instruction {
            program_id: Pubkey::new_unique(),
            accounts: vec![AccountMeta::new(stranger, false)],
            data: vec![1],
        };
        let transaction = claim(&us, &vault, &[allowed, unrelated]);
        inspect(&transaction, &us.pubkey(), &claim_expectation()).unwrap();
        // Closing our own wrapped-SOL account back to us (unwrapping) is fine, to a stranger not.
        let close = |destination: &Pubkey| Instruction {
            program_id: TOKEN_PROGRAM_ID,
            accounts: vec![
                AccountMeta::new(Pubkey::new_unique(), false),
                AccountMeta::new(*destination, false),
                AccountMeta::new_readonly(us.pubkey(), true),
            ],
            data: vec![9],
        };
        inspect(
            &claim(&us, &vault, &[close(&us.pubkey())]),
            &us.pubkey(),
            &claim_expectation(),
        )
        .unwrap();
        assert!(matches!(
            inspect(
                &claim(&us, &vault, &[close(&stranger)]),
                &us.pubkey(),
                &claim_expectation()
            ),
            Err(GuardError::TokenOutflow {
                action: "close",
                ..
            })
        ));
    }

    #[test]
    fn a_legit_swap_is_accepted() {
        let (us, pool) = (Keypair::new(), Keypair::new());
        let mut transaction = swap(&us, &pool, 3 * SOL, &[]);
        inspect_and_sign(&mut transaction, &us, &swap_expectation(3 * SOL)).unwrap();
        assert!(transaction.verify_with_results().iter().all(|ok| *ok));
    }

    #[test]
    fn a_swap_sending_more_than_quoted_is_refused() {
        let (us, pool) = (Keypair::new(), Keypair::new());
        let transaction = swap(&us, &pool, 3 * SOL + 1, &[]);
        assert_eq!(
            inspect(&transaction, &us.pubkey(), &swap_expectation(3 * SOL)),
            Err(GuardError::SwapExceedsQuote {
                total: u128::from(3 * SOL + 1),
                max: 3 * SOL
            })
        );
        // Split across two transfers, the total still counts.
        let split = swap(
            &us,
            &pool,
            2 * SOL,
            &[transfer(&us.pubkey(), &pool.pubkey(), SOL + 1)],
        );
        assert!(matches!(
            inspect(&split, &us.pubkey(), &swap_expectation(3 * SOL)),
            Err(GuardError::SwapExceedsQuote { .. })
        ));
    }

    #[test]
    fn a_swap_whose_token_transfer_moves_our_usdc_is_refused() {
        let (us, pool) = (Keypair::new(), Keypair::new());
        let our_usdc = ata(&us.pubkey(), &USDC);
        let steal = transfer_checked(&our_usdc, &ata(&pool.pubkey(), &USDC), &us.pubkey(), 1);
        let transaction = swap(&us, &pool, SOL, &[steal]);
        let error = inspect(&transaction, &us.pubkey(), &swap_expectation(SOL)).unwrap_err();
        assert_eq!(
            error,
            GuardError::TokenOutflow {
                instruction: 5,
                program: TOKEN_PROGRAM_ID,
                action: "transfer",
                account: Some(our_usdc),
                destination: Some(ata(&pool.pubkey(), &USDC)),
                amount: Some(1),
            }
        );
    }

    #[test]
    fn a_swap_may_pay_only_for_our_own_usdc_account() {
        let (us, pool) = (Keypair::new(), Keypair::new());
        let other_mint = Pubkey::new_unique();
        let foreign = create_ata_idempotent(&us.pubkey(), &pool.pubkey(), &USDC);
        let own_other = create_ata_idempotent(&us.pubkey(), &us.pubkey(), &other_mint);
        let own_wsol = create_ata_idempotent(&us.pubkey(), &us.pubkey(), &WRAPPED_SOL_MINT);
        let expectation = swap_expectation(SOL);
        assert!(matches!(
            inspect(
                &swap(&us, &pool, SOL, &[foreign]),
                &us.pubkey(),
                &expectation
            ),
            Err(GuardError::ForeignAccountPaid { instruction: 5, .. })
        ));
        assert_eq!(
            inspect(
                &swap(&us, &pool, SOL, &[own_other]),
                &us.pubkey(),
                &expectation
            ),
            Err(GuardError::UnexpectedAccount {
                instruction: 5,
                program: ASSOCIATED_TOKEN_PROGRAM_ID,
                mint: other_mint
            })
        );
        inspect(
            &swap(&us, &pool, SOL, &[own_wsol]),
            &us.pubkey(),
            &expectation,
        )
        .unwrap();
    }

    #[test]
    fn a_priority_fee_above_the_cap_is_refused() {
        let (us, pool) = (Keypair::new(), Keypair::new());
        // 120,000 units × 10,000 micro-lamports = 1,200 lamports: fine under 100,000.
        let mut expectation = swap_expectation(SOL);
        inspect(&swap(&us, &pool, SOL, &[]), &us.pubkey(), &expectation).unwrap();
        if let Expectation::Swap(swap) = &mut expectation {
            swap.max_priority_fee_lamports = 1_199;
        }
        assert_eq!(
            inspect(&swap(&us, &pool, SOL, &[]), &us.pubkey(), &expectation),
            Err(GuardError::PriorityFeeTooHigh {
                lamports: 1_200,
                max: 1_199
            })
        );
    }

    #[test]
    fn a_transaction_not_paid_by_us_is_refused_by_guard_and_signer() {
        let (us, vault) = (Keypair::new(), Keypair::new());
        let someone = Keypair::new();
        let mut transaction = legacy(
            &someone.pubkey(),
            &[
                transfer(&vault.pubkey(), &us.pubkey(), SOL),
                transfer(&us.pubkey(), &someone.pubkey(), 1),
            ],
            &[&vault],
        );
        assert!(matches!(
            inspect(&transaction, &us.pubkey(), &claim_expectation()),
            Err(GuardError::NotFeePayer { .. })
        ));
        assert_eq!(
            sign(&mut transaction, &us),
            Err(SignError::NotFeePayer {
                fee_payer: someone.pubkey(),
                signer: us.pubkey()
            })
        );
    }

    #[test]
    fn missing_or_forged_co_signatures_are_refused() {
        let (us, vault) = (Keypair::new(), Keypair::new());
        // The vault never signed.
        let mut unsigned = claim(&us, &vault, &[]);
        unsigned.signatures[1] = Signature::default();
        assert_eq!(
            sign(&mut unsigned, &us),
            Err(SignError::CoSignatureMissing {
                index: 1,
                key: vault.pubkey()
            })
        );
        // The vault signed another message (the amount was edited afterwards).
        let mut forged = claim(&us, &vault, &[]);
        forged.signatures[1] = vault.sign_message(b"something else");
        assert!(matches!(
            sign(&mut forged, &us),
            Err(SignError::CoSignatureInvalid { index: 1, .. })
        ));
        assert_eq!(
            forged.signatures[0],
            Signature::default(),
            "our slot stays empty"
        );
    }

    #[test]
    fn lookup_tables_and_durable_nonces_are_refused_in_claims() {
        let (us, vault) = (Keypair::new(), Keypair::new());
        let mut transaction = claim(&us, &vault, &[]);
        let VersionedMessage::Legacy(legacy_message) = transaction.message.clone() else {
            unreachable!()
        };
        let mut message = v0::Message {
            header: legacy_message.header,
            account_keys: legacy_message.account_keys.clone(),
            recent_blockhash: legacy_message.recent_blockhash,
            instructions: legacy_message.instructions.clone(),
            address_table_lookups: Vec::new(),
        };
        message
            .address_table_lookups
            .push(solana_message::v0::MessageAddressTableLookup {
                account_key: Pubkey::new_unique(),
                writable_indexes: vec![0],
                readonly_indexes: Vec::new(),
            });
        transaction.message = VersionedMessage::V0(message);
        assert!(matches!(
            inspect(&transaction, &us.pubkey(), &claim_expectation()),
            Err(GuardError::LookupTables { count: 1, .. })
        ));

        let nonce = Pubkey::new_unique();
        let advance =
            solana_system_interface::instruction::advance_nonce_account(&nonce, &vault.pubkey());
        let durable = legacy(
            &us.pubkey(),
            &[advance, transfer(&vault.pubkey(), &us.pubkey(), SOL)],
            &[&vault],
        );
        assert_eq!(
            inspect(&durable, &us.pubkey(), &claim_expectation()),
            Err(GuardError::DurableNonce)
        );
    }
}
