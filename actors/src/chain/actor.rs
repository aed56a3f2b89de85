//! ChainActor: everything the pipeline does on Bags, Solana and Helius — fee positions, claims
//! (positions and partner fees) and swaps sent exactly once through the transaction protocol,
//! and holder snapshots — behind one mailbox that never waits on the network (each request runs
//! in a task and replies from it).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signer};
use tokio::task::JoinSet;

use super::bags::{BagsClient, BagsError, ClaimablePosition, PartnerStats, UnsignedTransaction};
use super::helius::{HeliusClient, HeliusError, HolderFilters, HolderSnapshot};
use super::protocol::{
    BuiltTx, LandedTx, SubmitOptions, TxError, TxPurpose, settle_pending, submit_once,
};
use super::rpc::{RpcError, SolanaRpc};
use super::signer::{ClaimExpectation, Expectation, SwapExpectation, inspect_and_sign};
use crate::resilience::{self, Breaker, BreakerState, Classify, ResilienceError, RetryPolicy};
use crate::store::Store;
use crate::store::transactions::TxPhase;

/// Wrapped SOL, the input mint of a SOL → USDC quote.
pub const WRAPPED_SOL_MINT: Pubkey =
    Pubkey::from_str_const("So11111111111111111111111111111111111111112");
/// USDC on mainnet-beta and on devnet (Circle's devnet mint differs).
pub const USDC_MINT_MAINNET: Pubkey =
    Pubkey::from_str_const("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v");
pub const USDC_MINT_DEVNET: Pubkey =
    Pubkey::from_str_const("4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU");

/// Programs a Bags claim may hand our key to (bags-sdk IDs): fee-share v1 and v2, Meteora's
/// dynamic bonding curve and DAMM v2. A claim that invokes anything else with our signature is
/// refused before signing.
pub const BAGS_CLAIM_PROGRAMS: [Pubkey; 4] = [
    Pubkey::from_str_const("FEEhPbKVKnco9EXnaY3i4R5rQVUx91wgVfu8qokixywi"),
    Pubkey::from_str_const("FEE2tBhCKAt7shrod19QttSVREUYPiyMzoku1mL1gqVK"),
    Pubkey::from_str_const("dbcij3LWUppWqq96dh6gJWwBifmcGfLSB5D4DuSMaqN"),
    Pubkey::from_str_const("cpamdpZCGKUy5JxQXB4dcpGPiikHawvSWAd6mEn1sGG"),
];

/// At most this many claim transactions per position and run: Bags normally builds one to three;
/// more means it keeps offering the same fees, and looping would only burn fees.
const MAX_CLAIM_TRANSACTIONS_PER_POSITION: u32 = 8;

/// The purpose prefix of partner-fee claim transactions: `partner:<n>`, `n` counting every
/// partner transaction of the run in the order it was sent.
pub const PARTNER_PURPOSE_PREFIX: &str = "partner:";

/// A partner claim list longer than this is refused before anything is signed: Bags builds a
/// few (pool claims, then the vault withdrawal); a long list would only burn fees.
const MAX_PARTNER_TRANSACTIONS_PER_BATCH: usize = 16;

/// The internal build error of a partner transaction that may not be rebuilt: its list (batch)
/// is abandoned and a fresh one fetched from Bags.
const PARTNER_BATCH_BROKEN: &str = "PARTNER_BATCH_BROKEN";

/// `n` of a `partner:<n>` purpose; `None` for any other purpose.
pub fn partner_purpose_index(purpose: &str) -> Option<u32> {
    purpose.strip_prefix(PARTNER_PURPOSE_PREFIX)?.parse().ok()
}

pub struct ChainActor;

/// The breakers of the chain integrations, created by the daemon and shared with health
/// reporting so their state survives actor restarts.
#[derive(Clone, Debug)]
pub struct ChainBreakers {
    pub bags: Breaker,
    pub solana_rpc: Breaker,
    pub helius_das: Breaker,
}

#[derive(Clone)]
pub struct ChainArgs {
    pub bags: BagsClient,
    pub helius: HeliusClient,
    pub rpc: SolanaRpc,
    /// The daemon's signer: the fee owner and fee payer of every transaction.
    pub signer: Arc<Keypair>,
    pub store: Store,
    pub breakers: ChainBreakers,
    pub retry: RetryPolicy,
    pub usdc_mint: Pubkey,
    pub submit: SubmitOptions,
    /// The most a Bags-built transaction's priority fee may cost us.
    pub max_priority_fee_lamports: u64,
    /// Programs a claim or swap may hand our key to (see [`BAGS_CLAIM_PROGRAMS`]).
    pub allowed_programs: BTreeSet<Pubkey>,
}

pub struct ChainState {
    context: Arc<ChainArgs>,
    /// Request tasks; dropping the state (actor killed) aborts them. Persisted transactions stay
    /// in the store and are settled by the next call for their purpose.
    in_flight: JoinSet<()>,
}

type Reply<T> = RpcReplyPort<Result<T, ChainError>>;

pub enum ChainMsg {
    /// The signer's fee positions on Bags.
    ClaimablePositions(Reply<Vec<ClaimablePosition>>),
    /// Claims one position's fees (every claim transaction Bags builds for `base_mint`), each
    /// transaction exactly once for the run.
    ClaimPosition {
        run_id: String,
        base_mint: Pubkey,
        reply: Reply<ClaimOutcome>,
    },
    /// The signer's partner-config fees on Bags (claimed and unclaimed lamports).
    PartnerStats(Reply<PartnerStats>),
    /// Claims the signer's partner-config fees for the run: every transaction of Bags' list sent
    /// exactly once, in Bags' order, each landed before the next (the last withdraws the vault).
    ClaimPartnerFees {
        run_id: String,
        reply: Reply<ClaimOutcome>,
    },
    /// Swaps `lamports` of SOL to USDC, exactly once for the run.
    Swap {
        run_id: String,
        lamports: u64,
        slippage_bps: u16,
        reply: Reply<SwapOutcome>,
    },
    /// What swapping `lamports` of SOL to USDC would give now (a quote: nothing is sent), for
    /// dry runs.
    QuoteSwap {
        lamports: u64,
        slippage_bps: u16,
        reply: Reply<SwapQuote>,
    },
    /// Every qualifying holder of `mint`, aggregated per owner.
    HolderSnapshot {
        mint: Pubkey,
        filters: HolderFilters,
        reply: Reply<HolderSnapshot>,
    },
    /// The signer's SOL balance, in lamports.
    SignerBalance(Reply<u64>),
}

/// What a claim measurably did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimOutcome {
    /// The claim transactions that landed, in order.
    pub transactions: Vec<LandedTx>,
    /// The signer's net lamport change over those transactions (claimed minus fees); 0 when
    /// there was nothing to claim.
    pub claimed_lamports: i64,
    pub fees_lamports: u64,
}

/// What a swap measurably did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwapOutcome {
    pub transaction: LandedTx,
    /// SOL that left the signer, fees and account rent included (−lamport delta).
    pub lamports_spent: u64,
    /// USDC (base units) that arrived in the signer's token accounts.
    pub usdc_received: u64,
}

/// What a swap would give, as Bags quotes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwapQuote {
    pub in_lamports: u64,
    /// USDC base units expected out.
    pub out_usdc: u64,
    /// The least USDC the swap would accept (slippage applied).
    pub min_out_usdc: u64,
}

/// Why a chain call failed; [`ChainError::code`] is the run's `error_code`.
#[derive(thiserror::Error, Debug)]
pub enum ChainError {
    #[error("bags: {0}")]
    Bags(ResilienceError<BagsError>),
    #[error("helius: {0}")]
    Helius(ResilienceError<HeliusError>),
    #[error("solana rpc: {0}")]
    Rpc(ResilienceError<RpcError>),
    #[error(transparent)]
    Transaction(TxError),
    /// The swap landed but delivered no USDC, or Bags would not quote it.
    #[error("swap failed: {0}")]
    Swap(String),
    #[error("chain actor is not running")]
    ActorDown,
    #[error("chain actor did not answer within {} s", .0.as_secs())]
    ActorTimeout(Duration),
}

impl From<crate::supervisor::NoAnswer> for ChainError {
    fn from(no_answer: crate::supervisor::NoAnswer) -> Self {
        match no_answer {
            crate::supervisor::NoAnswer::Down => ChainError::ActorDown,
            crate::supervisor::NoAnswer::Timeout(timeout) => ChainError::ActorTimeout(timeout),
        }
    }
}

impl ChainError {
    pub fn code(&self) -> &'static str {
        match self {
            ChainError::Bags(ResilienceError::Unavailable { .. }) => "BAGS_UNAVAILABLE",
            ChainError::Bags(ResilienceError::Failed(error)) => match error.transience() {
                resilience::Transience::Transient { .. } => "BAGS_UNAVAILABLE",
                resilience::Transience::Permanent => "BAGS_REJECTED",
            },
            ChainError::Helius(_) => "HOLDERS_UNAVAILABLE",
            ChainError::Rpc(_) => "RPC_UNAVAILABLE",
            ChainError::Transaction(error) => error.code(),
            ChainError::Swap(_) => "SWAP_FAILED",
            ChainError::ActorDown | ChainError::ActorTimeout(_) => "CHAIN_ACTOR_DOWN",
        }
    }
}

impl Actor for ChainActor {
    type Msg = ChainMsg;
    type State = ChainState;
    type Arguments = ChainArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: ChainArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(ChainState {
            context: Arc::new(args),
            in_flight: JoinSet::new(),
        })
    }

    /// Settles every transaction a previous process (or actor instance) persisted but did not see
    /// land: each is looked up, re-sent while its blockhash is valid, recorded as landed or
    /// expired. The run that owns it picks up the outcome when it resumes.
    async fn post_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let context = state.context.clone();
        state.in_flight.spawn(async move {
            let pending = match context.store.pending_txs().await {
                Ok(pending) => pending,
                Err(error) => {
                    tracing::warn!(error = %error, "cannot list pending transactions");
                    return;
                }
            };
            for row in pending {
                let outcome =
                    settle_pending(&context.store, &context.rpc, &row, &context.submit).await;
                match outcome {
                    Ok(Some(landed)) => tracing::info!(
                        runId = %row.run_id,
                        txSig = %landed.signature,
                        purpose = %row.purpose,
                        "pending transaction landed"
                    ),
                    Ok(None) => tracing::info!(
                        runId = %row.run_id,
                        txSig = %row.signature,
                        purpose = %row.purpose,
                        "pending transaction expired; its run rebuilds it on resume"
                    ),
                    Err(error) => tracing::warn!(
                        runId = %row.run_id,
                        txSig = %row.signature,
                        code = error.code(),
                        error = %error,
                        "pending transaction not settled"
                    ),
                }
            }
        });
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        crate::failpoint::check_actor(&myself);
        // Reap finished tasks so the set does not grow.
        while state.in_flight.try_join_next().is_some() {}
        let context = state.context.clone();
        match message {
            ChainMsg::ClaimablePositions(reply) => {
                state.in_flight.spawn(async move {
                    let _ = reply.send(context.claimable_positions().await);
                });
            }
            ChainMsg::ClaimPosition {
                run_id,
                base_mint,
                reply,
            } => {
                state.in_flight.spawn(async move {
                    let _ = reply.send(context.claim_position(&run_id, &base_mint).await);
                });
            }
            ChainMsg::PartnerStats(reply) => {
                state.in_flight.spawn(async move {
                    let _ = reply.send(context.partner_stats().await);
                });
            }
            ChainMsg::ClaimPartnerFees { run_id, reply } => {
                state.in_flight.spawn(async move {
                    let _ = reply.send(context.claim_partner_fees(&run_id).await);
                });
            }
            ChainMsg::Swap {
                run_id,
                lamports,
                slippage_bps,
                reply,
            } => {
                state.in_flight.spawn(async move {
                    let _ = reply.send(context.swap(&run_id, lamports, slippage_bps).await);
                });
            }
            ChainMsg::QuoteSwap {
                lamports,
                slippage_bps,
                reply,
            } => {
                state.in_flight.spawn(async move {
                    let _ = reply.send(context.quote_swap(lamports, slippage_bps).await);
                });
            }
            ChainMsg::HolderSnapshot {
                mint,
                filters,
                reply,
            } => {
                state.in_flight.spawn(async move {
                    let _ = reply.send(context.holder_snapshot(&mint, &filters).await);
                });
            }
            ChainMsg::SignerBalance(reply) => {
                state.in_flight.spawn(async move {
                    let _ = reply.send(context.signer_balance().await);
                });
            }
        }
        Ok(())
    }
}

impl ChainArgs {
    fn signer_pubkey(&self) -> Pubkey {
        self.signer.pubkey()
    }

    async fn claimable_positions(&self) -> Result<Vec<ClaimablePosition>, ChainError> {
        let owner = self.signer_pubkey();
        resilience::call(&self.retry, &self.breakers.bags, || {
            self.bags.claimable_positions(&owner)
        })
        .await
        .map_err(ChainError::Bags)
    }

    async fn quote_swap(&self, lamports: u64, slippage_bps: u16) -> Result<SwapQuote, ChainError> {
        let quote = resilience::call(&self.retry, &self.breakers.bags, || {
            self.bags
                .quote(&WRAPPED_SOL_MINT, &self.usdc_mint, lamports, slippage_bps)
        })
        .await
        .map_err(ChainError::Bags)?;
        Ok(SwapQuote {
            in_lamports: quote.in_amount,
            out_usdc: quote.out_amount,
            min_out_usdc: quote.min_out_amount,
        })
    }

    async fn signer_balance(&self) -> Result<u64, ChainError> {
        let owner = self.signer_pubkey();
        resilience::call(&self.retry, &self.breakers.solana_rpc, || {
            self.rpc.balance(&owner)
        })
        .await
        .map_err(ChainError::Rpc)
    }

    async fn holder_snapshot(
        &self,
        mint: &Pubkey,
        filters: &HolderFilters,
    ) -> Result<HolderSnapshot, ChainError> {
        resilience::call(&self.retry, &self.breakers.helius_das, || {
            self.helius.holder_snapshot(mint, filters)
        })
        .await
        .map_err(ChainError::Helius)
    }

    /// Fails fast when the RPC breaker is open, so a dead RPC does not hold a run for minutes.
    fn check_rpc_available(&self) -> Result<(), ChainError> {
        if self.breakers.solana_rpc.state() == BreakerState::Open {
            let last_error = self.breakers.solana_rpc.snapshot().last_error;
            return Err(ChainError::Rpc(ResilienceError::Unavailable {
                integration: self.breakers.solana_rpc.integration(),
                last_error,
            }));
        }
        Ok(())
    }

    fn claim_expectation(&self) -> Expectation {
        Expectation::Claim(ClaimExpectation {
            allowed_programs: self.allowed_programs.clone(),
            max_priority_fee_lamports: self.max_priority_fee_lamports,
        })
    }

    /// Claims a position: Bags' claim list is fetched afresh before each transaction and its first
    /// transaction sent, until the list is empty. Each send has its own purpose
    /// (`claim:<mint>:<n>`), so a resumed run re-settles what it sent and never sends twice.
    async fn claim_position(
        &self,
        run_id: &str,
        base_mint: &Pubkey,
    ) -> Result<ClaimOutcome, ChainError> {
        self.check_rpc_available()?;
        let owner = self.signer_pubkey();
        let mut transactions = Vec::new();
        for n in 0..MAX_CLAIM_TRANSACTIONS_PER_POSITION {
            let purpose = TxPurpose {
                run_id: run_id.to_string(),
                phase: TxPhase::Claiming,
                purpose: format!("claim:{base_mint}:{n}"),
            };
            let already_sent = !self
                .store
                .txs_for_purpose(run_id, TxPhase::Claiming, &purpose.purpose)
                .await
                .map_err(|error| ChainError::Transaction(TxError::Store(error)))?
                .is_empty();
            // A new purpose starts from Bags' current list (empty: the position is claimed out);
            // that first fetch is also the first transaction, so it is not fetched twice.
            let mut prefetched = None;
            if !already_sent {
                match self.next_claim(&owner, base_mint).await? {
                    Some(built) => prefetched = Some(built),
                    None => break,
                }
            }
            let expectation = &self.claim_expectation();
            let build = || {
                let first = prefetched.take();
                async move {
                    let built = match first {
                        Some(built) => Some(built),
                        None => self.next_claim(&owner, base_mint).await.map_err(|error| {
                            TxError::Build {
                                code: error.code(),
                                message: error.to_string(),
                            }
                        })?,
                    };
                    let Some(mut built) = built else {
                        return Err(TxError::Build {
                            code: "NOTHING_TO_CLAIM",
                            message: format!("bags has nothing left to claim for {base_mint}"),
                        });
                    };
                    inspect_and_sign(&mut built.transaction, &self.signer, expectation)?;
                    Ok(built)
                }
            };
            match submit_once(&self.store, &self.rpc, &purpose, &self.submit, build).await {
                Ok(landed) => transactions.push(landed),
                // The fees were claimed by an earlier attempt whose record expired: done.
                Err(TxError::Build {
                    code: "NOTHING_TO_CLAIM",
                    ..
                }) => break,
                Err(error) => return Err(ChainError::Transaction(error)),
            }
        }
        let claimed_lamports = transactions
            .iter()
            .map(|landed| landed.effects.lamport_delta)
            .sum();
        let fees_lamports = transactions.iter().map(|landed| landed.effects.fee).sum();
        Ok(ClaimOutcome {
            transactions,
            claimed_lamports,
            fees_lamports,
        })
    }

    /// Bags' first claim transaction for the position now, if any.
    async fn next_claim(
        &self,
        owner: &Pubkey,
        base_mint: &Pubkey,
    ) -> Result<Option<BuiltTx>, ChainError> {
        let transactions = resilience::call(&self.retry, &self.breakers.bags, || {
            self.bags.claim_transactions(owner, base_mint)
        })
        .await
        .map_err(ChainError::Bags)?;
        Ok(transactions.into_iter().next().map(|unsigned| BuiltTx {
            transaction: unsigned.transaction,
            last_valid_block_height: unsigned.last_valid_block_height,
        }))
    }

    async fn partner_stats(&self) -> Result<PartnerStats, ChainError> {
        let partner = self.signer_pubkey();
        resilience::call(&self.retry, &self.breakers.bags, || {
            self.bags.partner_stats(&partner)
        })
        .await
        .map_err(ChainError::Bags)
    }

    /// Bags' partner claim list now, in Bags' order (the last one withdraws the vault).
    async fn partner_claim_list(&self) -> Result<Vec<UnsignedTransaction>, ChainError> {
        let partner = self.signer_pubkey();
        let transactions = resilience::call(&self.retry, &self.breakers.bags, || {
            self.bags.partner_claim_transactions(&partner)
        })
        .await
        .map_err(ChainError::Bags)?;
        if transactions.len() > MAX_PARTNER_TRANSACTIONS_PER_BATCH {
            return Err(ChainError::Transaction(TxError::Build {
                code: "BAGS_REJECTED",
                message: format!(
                    "bags built {} partner claim transactions, more than the {} accepted",
                    transactions.len(),
                    MAX_PARTNER_TRANSACTIONS_PER_BATCH
                ),
            }));
        }
        Ok(transactions)
    }

    /// Claims the signer's partner-config fees for a run.
    ///
    /// Bags' list is sent as one batch: transaction `i` gets purpose `partner:<n>` (numbered over
    /// the run) and must land before `i + 1` is sent, so the last one, the vault withdrawal, lands
    /// last. A sent transaction is never rebuilt from a later list (a list's positions mean
    /// nothing in another list): when one expires, its batch is abandoned and a fresh list is
    /// fetched, whose transactions get new purposes. Bags builds the list from the chain's
    /// state, so the fresh list holds what is left to do. At most `1 + max_rebuilds` batches per
    /// call (`TX_EXPIRED` after).
    ///
    /// A resumed call first settles every `partner:<n>` the run already sent (pending ones
    /// re-sent as the same bytes, never rebuilt). It sends a new batch only when none of them
    /// brought SOL in: Bags documents that SOL arrives only with the final transaction, so a
    /// landed partner transaction with a positive lamport delta is the withdrawal, and the claim
    /// is done. Claimed = the sum of the measured lamport deltas (net of every step's fee).
    async fn claim_partner_fees(&self, run_id: &str) -> Result<ClaimOutcome, ChainError> {
        self.check_rpc_available()?;
        let as_tx_error = |error: TxError| ChainError::Transaction(error);
        let sent: BTreeSet<u32> = self
            .store
            .txs_for_run(run_id)
            .await
            .map_err(|error| as_tx_error(TxError::Store(error)))?
            .iter()
            .filter(|row| row.phase == TxPhase::Claiming)
            .filter_map(|row| partner_purpose_index(&row.purpose))
            .collect();
        let purpose_of = |n: u32| TxPurpose {
            run_id: run_id.to_string(),
            phase: TxPhase::Claiming,
            purpose: format!("{PARTNER_PURPOSE_PREFIX}{n}"),
        };
        let broken = |n: u32| TxError::Build {
            code: PARTNER_BATCH_BROKEN,
            message: format!("partner claim transaction {n} did not land; its batch is abandoned"),
        };

        let mut transactions = Vec::new();
        let mut withdrawn = false;
        for &n in &sent {
            let settle_only = || async move { Err(broken(n)) };
            match submit_once(
                &self.store,
                &self.rpc,
                &purpose_of(n),
                &self.submit,
                settle_only,
            )
            .await
            {
                Ok(landed) => {
                    withdrawn |= landed.effects.lamport_delta > 0;
                    transactions.push(landed);
                }
                // Expired or failed in an earlier attempt: its batch stopped there.
                Err(TxError::Build {
                    code: PARTNER_BATCH_BROKEN,
                    ..
                }) => {}
                Err(error) => return Err(as_tx_error(error)),
            }
        }

        let mut next = sent.last().map_or(0, |n| n + 1);
        let mut batches: u32 = 0;
        let expectation = Expectation::PartnerClaim(ClaimExpectation {
            allowed_programs: self.allowed_programs.clone(),
            max_priority_fee_lamports: self.max_priority_fee_lamports,
        });
        while !withdrawn {
            let list = self.partner_claim_list().await?;
            if list.is_empty() {
                // Nothing (left) to claim.
                break;
            }
            if batches > self.submit.max_rebuilds {
                return Err(as_tx_error(TxError::Expired { attempts: batches }));
            }
            batches += 1;
            let mut complete = true;
            for unsigned in list {
                let n = next;
                next += 1;
                let mut first = Some(BuiltTx {
                    transaction: unsigned.transaction,
                    last_valid_block_height: unsigned.last_valid_block_height,
                });
                let expectation = &expectation;
                let build = || {
                    let first = first.take();
                    async move {
                        // Only the transaction Bags gave for this place in the batch, once.
                        let mut built = first.ok_or_else(|| broken(n))?;
                        inspect_and_sign(&mut built.transaction, &self.signer, expectation)?;
                        Ok(built)
                    }
                };
                match submit_once(&self.store, &self.rpc, &purpose_of(n), &self.submit, build).await
                {
                    Ok(landed) => transactions.push(landed),
                    Err(TxError::Build {
                        code: PARTNER_BATCH_BROKEN,
                        ..
                    }) => {
                        complete = false;
                        break;
                    }
                    Err(error) => return Err(as_tx_error(error)),
                }
            }
            withdrawn = complete;
        }
        let claimed_lamports = transactions
            .iter()
            .map(|landed| landed.effects.lamport_delta)
            .sum();
        let fees_lamports = transactions.iter().map(|landed| landed.effects.fee).sum();
        Ok(ClaimOutcome {
            transactions,
            claimed_lamports,
            fees_lamports,
        })
    }

    /// Swaps SOL to USDC: quote, Bags-built transaction, guard, sign, send exactly once.
    async fn swap(
        &self,
        run_id: &str,
        lamports: u64,
        slippage_bps: u16,
    ) -> Result<SwapOutcome, ChainError> {
        self.check_rpc_available()?;
        let owner = self.signer_pubkey();
        let purpose = TxPurpose {
            run_id: run_id.to_string(),
            phase: TxPhase::Swapping,
            purpose: "swap".to_string(),
        };
        let build = || async {
            let as_build_error = |error: ChainError| TxError::Build {
                code: error.code(),
                message: error.to_string(),
            };
            let quote = resilience::call(&self.retry, &self.breakers.bags, || {
                self.bags
                    .quote(&WRAPPED_SOL_MINT, &self.usdc_mint, lamports, slippage_bps)
            })
            .await
            .map_err(|error| as_build_error(ChainError::Bags(error)))?;
            if quote.in_amount != lamports || quote.output_mint != self.usdc_mint {
                return Err(TxError::Build {
                    code: "SWAP_FAILED",
                    message: format!(
                        "bags quoted {} lamports into {} for a {lamports} lamport swap to {}",
                        quote.in_amount, quote.output_mint, self.usdc_mint
                    ),
                });
            }
            let swap = resilience::call(&self.retry, &self.breakers.bags, || {
                self.bags.swap_transaction(&quote, &owner)
            })
            .await
            .map_err(|error| as_build_error(ChainError::Bags(error)))?;
            let mut transaction = swap.transaction;
            let expectation = Expectation::Swap(SwapExpectation {
                max_lamports_in: lamports,
                usdc_mint: self.usdc_mint,
                allowed_programs: self.allowed_programs.clone(),
                max_priority_fee_lamports: self.max_priority_fee_lamports,
            });
            inspect_and_sign(&mut transaction, &self.signer, &expectation)?;
            Ok(BuiltTx {
                transaction,
                last_valid_block_height: swap.last_valid_block_height,
            })
        };
        let landed = submit_once(&self.store, &self.rpc, &purpose, &self.submit, build)
            .await
            .map_err(ChainError::Transaction)?;
        let usdc_received = landed.effects.token_delta(&self.usdc_mint);
        let usdc_received = u64::try_from(usdc_received)
            .ok()
            .filter(|received| *received > 0);
        let Some(usdc_received) = usdc_received else {
            return Err(ChainError::Swap(format!(
                "swap {} landed but the signer's USDC changed by {}",
                landed.signature,
                landed.effects.token_delta(&self.usdc_mint)
            )));
        };
        let lamports_spent = u64::try_from(-landed.effects.lamport_delta).unwrap_or(0);
        Ok(SwapOutcome {
            transaction: landed,
            lamports_spent,
            usdc_received,
        })
    }
}

async fn ask<T: Send + 'static>(
    actor: &ActorRef<ChainMsg>,
    timeout: Duration,
    message: impl FnOnce(Reply<T>) -> ChainMsg,
) -> Result<T, ChainError> {
    crate::supervisor::ask(actor, timeout, message)
        .await
        .map_err(ChainError::from)?
}

/// The signer's fee positions.
pub async fn claimable_positions(
    actor: &ActorRef<ChainMsg>,
    timeout: Duration,
) -> Result<Vec<ClaimablePosition>, ChainError> {
    ask(actor, timeout, ChainMsg::ClaimablePositions).await
}

/// Claims one position for a run (exactly once per transaction).
pub async fn claim_position(
    actor: &ActorRef<ChainMsg>,
    run_id: &str,
    base_mint: Pubkey,
    timeout: Duration,
) -> Result<ClaimOutcome, ChainError> {
    let run_id = run_id.to_string();
    ask(actor, timeout, |reply| ChainMsg::ClaimPosition {
        run_id,
        base_mint,
        reply,
    })
    .await
}

/// The signer's partner-config fees on Bags.
pub async fn partner_stats(
    actor: &ActorRef<ChainMsg>,
    timeout: Duration,
) -> Result<PartnerStats, ChainError> {
    ask(actor, timeout, ChainMsg::PartnerStats).await
}

/// Claims the signer's partner-config fees for a run (every transaction exactly once, in Bags'
/// order).
pub async fn claim_partner_fees(
    actor: &ActorRef<ChainMsg>,
    run_id: &str,
    timeout: Duration,
) -> Result<ClaimOutcome, ChainError> {
    let run_id = run_id.to_string();
    ask(actor, timeout, |reply| ChainMsg::ClaimPartnerFees {
        run_id,
        reply,
    })
    .await
}

/// Swaps SOL to USDC for a run (exactly once).
pub async fn swap(
    actor: &ActorRef<ChainMsg>,
    run_id: &str,
    lamports: u64,
    slippage_bps: u16,
    timeout: Duration,
) -> Result<SwapOutcome, ChainError> {
    let run_id = run_id.to_string();
    ask(actor, timeout, |reply| ChainMsg::Swap {
        run_id,
        lamports,
        slippage_bps,
        reply,
    })
    .await
}

/// The qualifying holders of `mint`.
pub async fn holder_snapshot(
    actor: &ActorRef<ChainMsg>,
    mint: Pubkey,
    filters: HolderFilters,
    timeout: Duration,
) -> Result<HolderSnapshot, ChainError> {
    ask(actor, timeout, |reply| ChainMsg::HolderSnapshot {
        mint,
        filters,
        reply,
    })
    .await
}

/// What a swap of `lamports` would give now (nothing is sent).
pub async fn quote_swap(
    actor: &ActorRef<ChainMsg>,
    lamports: u64,
    slippage_bps: u16,
    timeout: Duration,
) -> Result<SwapQuote, ChainError> {
    ask(actor, timeout, |reply| ChainMsg::QuoteSwap {
        lamports,
        slippage_bps,
        reply,
    })
    .await
}

/// The signer's SOL balance.
pub async fn signer_balance(
    actor: &ActorRef<ChainMsg>,
    timeout: Duration,
) -> Result<u64, ChainError> {
    ask(actor, timeout, ChainMsg::SignerBalance).await
}
