//! The exactly-once transaction protocol (`chain::protocol::submit_once`) against the real
//! sandbox — the ledger and the JSON-RPC fake over loopback with the real `RpcClient`, the Bags
//! fake's real claim and swap transactions — and a real SQLite store: one landing per purpose
//! through drops, expiries, crashes before and after the send, on-chain failures, unpayable fees
//! and guard refusals; recorded effects equal the ledger's deltas.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use creditbrain::sandbox::bags::{BagsFake, BagsOptions};
use creditbrain::sandbox::faults::{ErrorStyle, Fault, FaultMode, FaultRule, Faults};
use creditbrain::sandbox::ledger::{
    LAMPORTS_PER_SIGNATURE, Ledger, LedgerOptions, ReceivedTransaction,
    TOKEN_ACCOUNT_RENT_EXEMPT_MINIMUM, WRAPPED_SOL_MINT, associated_token_address,
};
use creditbrain::sandbox::rpc::RpcFake;
use creditbrain::sandbox::serve_on_loopback;
use creditbrain_actors::chain::protocol::{
    BuiltTx, LandedTx, SubmitOptions, TxError, TxPurpose, settle_pending, submit_once,
};
use creditbrain_actors::chain::rpc::SolanaRpc;
use creditbrain_actors::chain::signer::{
    ClaimExpectation, Expectation, SwapExpectation, inspect_and_sign,
};
use creditbrain_actors::secret::Secret;
use creditbrain_actors::store::transactions::{NewTransaction, TxPhase, TxStatus};
use creditbrain_actors::store::{Store, now_timestamp};
use serde_json::{Value, json};
use solana_client::rpc_response::TransactionError;
use solana_message::{Message, VersionedMessage};
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signature, Signer};
use solana_sdk::transaction::VersionedTransaction;
use solana_system_interface::instruction::transfer;
use tokio::task::JoinHandle;

use crate::support::eventually;

const SOL: u64 = 1_000_000_000;
const RUN: &str = "run-tx-protocol";
const BAGS_KEY: &str = "bags-tx-protocol-key";
/// Generous: a test's polls end when the condition holds, not when this runs out.
const WAIT: Duration = Duration::from_secs(20);

struct Harness {
    ledger: Ledger,
    faults: Faults,
    bags: BagsFake,
    bags_url: String,
    rpc_url: String,
    http: reqwest::Client,
    usdc: Pubkey,
    signer: Arc<Keypair>,
    _dir: tempfile::TempDir,
    db_path: PathBuf,
    store: Store,
    _servers: Vec<JoinHandle<()>>,
}

impl Harness {
    /// 20 ms slots and blockhashes valid for 40 blocks (0.8 s), so expiry happens in a test's
    /// time; a signer with 10 SOL; a database holding one strategy and one run.
    async fn start() -> Self {
        let ledger = Ledger::new(LedgerOptions {
            slot_duration: Duration::from_millis(20),
            blockhash_validity_blocks: 40,
            finalization_depth: 32,
        });
        let faults = Faults::new();
        let rpc = RpcFake::new(ledger.clone(), faults.clone());
        let (rpc_address, rpc_server) =
            serve_on_loopback(faults.wrap("rpc", ErrorStyle::JsonRpc, rpc.router("rpc")))
                .await
                .unwrap();
        let usdc = Keypair::new().pubkey();
        let bags = BagsFake::new(
            ledger.clone(),
            BagsOptions {
                api_keys: vec![BAGS_KEY.to_string()],
                usdc_mint: usdc,
                // The swap delivers 0.3 % less than quoted (still above the slippage floor), so
                // a recorded amount equal to the ledger's is a measured one, not the quote.
                delivery_shortfall_bps: 30,
                ..BagsOptions::default()
            },
        );
        bags.fund_pool(1_000_000_000_000);
        let (bags_address, bags_server) = serve_on_loopback(bags.router()).await.unwrap();

        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("creditbrain.sqlite");
        let store = Store::open(&db_path).await.unwrap();
        let now = now_timestamp();
        sqlx::query(
            "INSERT INTO strategies (strategy_id, owner_wallet, token_mint, threshold_lamports,
                slippage_bps, distribution_mode, max_grant_micro_usd, max_key_limit_micro_usd,
                key_expiry_days, reserve_bps, cron_schedule, created_at, updated_at)
             VALUES ('s1', 'So11111111111111111111111111111111111111112',
                'EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v', 0, 50, 'EQUAL_SPLIT',
                10000000, 100000000, 0, 0, '0 * * * *', ?, ?)",
        )
        .bind(&now)
        .bind(&now)
        .execute(store.pool())
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO runs (run_id, strategy_id, state, triggered_by, started_at, updated_at)
             VALUES (?, 's1', 'CLAIMING', 'manual', ?, ?)",
        )
        .bind(RUN)
        .bind(&now)
        .bind(&now)
        .execute(store.pool())
        .await
        .unwrap();

        let signer = Keypair::new();
        ledger.airdrop(&signer.pubkey(), 10 * SOL);
        Self {
            ledger,
            faults,
            bags,
            bags_url: format!("http://{bags_address}/api/v1"),
            // Helius-style: the key rides in the query string.
            rpc_url: format!("http://{rpc_address}/?api-key=tx-protocol-key"),
            http: reqwest::Client::new(),
            usdc,
            signer: Arc::new(signer),
            _dir: dir,
            db_path,
            store,
            _servers: vec![rpc_server, bags_server],
        }
    }

    fn rpc(&self) -> SolanaRpc {
        SolanaRpc::new(&Secret::new(self.rpc_url.clone()), Duration::from_secs(5))
    }

    /// What a restarted process has: the same database file opened anew and a new RPC client.
    async fn restart(&self) -> (Store, SolanaRpc) {
        (Store::open(&self.db_path).await.unwrap(), self.rpc())
    }

    fn drop_sends(&self, mode: FaultMode) {
        self.faults.add_rule(FaultRule {
            fake: "rpc".to_string(),
            route: Some("sendTransaction".to_string()),
            latency: None,
            mode: Some(mode),
        });
    }

    /// What the cluster saw of `signature`.
    fn received(&self, signature: &Signature) -> Vec<ReceivedTransaction> {
        self.ledger
            .received()
            .into_iter()
            .filter(|received| received.signature == *signature)
            .collect()
    }

    /// Distinct signatures that executed on the ledger (duplicates of a landed one excluded).
    fn landings(&self) -> Vec<ReceivedTransaction> {
        self.ledger
            .received()
            .into_iter()
            .filter(|received| received.landed_slot.is_some() && !received.duplicate)
            .collect()
    }

    async fn bags_post(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.bags_url))
            .header("x-api-key", BAGS_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["success"], true, "{body}");
        body["response"].clone()
    }

    /// The claim transactions Bags builds now for our signer's position in `mint`.
    async fn claim_txs(&self, mint: &Pubkey) -> Vec<BuiltTx> {
        let response = self
            .bags_post(
                "/token-launch/claim-txs/v3",
                json!({"feeClaimer": self.signer.pubkey().to_string(), "tokenMint": mint.to_string()}),
            )
            .await;
        response
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| BuiltTx {
                transaction: decode(entry["tx"].as_str().unwrap()),
                last_valid_block_height: entry["blockhash"]["lastValidBlockHeight"]
                    .as_u64()
                    .unwrap(),
            })
            .collect()
    }

    /// The slot moved on (a new blockhash, so Bags builds a distinct transaction).
    async fn next_slot(&self) {
        let slot = self.ledger.slot();
        eventually(WAIT, || async { (self.ledger.slot() > slot).then_some(()) }).await;
    }
}

fn decode(base58: &str) -> VersionedTransaction {
    bincode::deserialize(&bs58::decode(base58).into_vec().unwrap()).unwrap()
}

fn purpose(name: &str) -> TxPurpose {
    TxPurpose {
        run_id: RUN.to_string(),
        phase: TxPhase::Claiming,
        purpose: name.to_string(),
    }
}

/// Polls every 20 ms, never re-sends on its own (tests that want re-sends say so).
fn options() -> SubmitOptions {
    SubmitOptions {
        poll_interval: Duration::from_millis(20),
        resend_interval: None,
        max_rebuilds: 2,
        max_rpc_failures: 50,
        skip_preflight: false,
    }
}

fn claim_expectation() -> Expectation {
    Expectation::Claim(ClaimExpectation {
        allowed_programs: Default::default(),
        max_priority_fee_lamports: 100_000,
    })
}

/// A plain transfer is a "swap" whose only outflow is the transfer itself.
fn transfer_expectation(lamports: u64, usdc: Pubkey) -> Expectation {
    Expectation::Swap(SwapExpectation {
        max_lamports_in: lamports,
        usdc_mint: usdc,
        allowed_programs: Default::default(),
        max_priority_fee_lamports: 100_000,
    })
}

/// A System transfer from `signer` on a fresh blockhash, inspected and signed.
async fn transfer_tx(
    rpc: &SolanaRpc,
    signer: &Keypair,
    to: &Pubkey,
    lamports: u64,
    expectation: &Expectation,
) -> Result<BuiltTx, TxError> {
    let (blockhash, last_valid_block_height) = rpc
        .latest_blockhash()
        .await
        .map_err(TxError::RpcUnavailable)?;
    let message = Message::new_with_blockhash(
        &[transfer(&signer.pubkey(), to, lamports)],
        Some(&signer.pubkey()),
        &blockhash,
    );
    let mut transaction = VersionedTransaction {
        signatures: vec![Signature::default()],
        message: VersionedMessage::Legacy(message),
    };
    inspect_and_sign(&mut transaction, signer, expectation)?;
    Ok(BuiltTx {
        transaction,
        last_valid_block_height,
    })
}

/// Submits a transfer of `lamports` to `to` for `name`, counting builds.
async fn submit_transfer(
    harness: &Harness,
    store: &Store,
    name: &str,
    to: Pubkey,
    lamports: u64,
    options: &SubmitOptions,
    builds: &AtomicU32,
) -> Result<LandedTx, TxError> {
    let rpc = harness.rpc();
    let expectation = transfer_expectation(lamports, harness.usdc);
    submit_once(store, &rpc, &purpose(name), options, || {
        builds.fetch_add(1, Ordering::SeqCst);
        let (rpc, signer, expectation) = (rpc.clone(), harness.signer.clone(), expectation.clone());
        async move { transfer_tx(&rpc, &signer, &to, lamports, &expectation).await }
    })
    .await
}

/// A builder for recovery tests: a restarted process must not need it.
fn no_build() -> std::future::Ready<Result<BuiltTx, TxError>> {
    panic!("the protocol built a new transaction where it had to recover the persisted one")
}

#[tokio::test]
async fn a_transfer_lands_once_and_its_effects_equal_the_ledger_delta() {
    let harness = Harness::start().await;
    let to = Pubkey::new_unique();
    let before = harness.ledger.lamports(&harness.signer.pubkey());
    let builds = AtomicU32::new(0);

    let landed = submit_transfer(
        &harness,
        &harness.store,
        "transfer",
        to,
        SOL,
        &options(),
        &builds,
    )
    .await
    .unwrap();

    let after = harness.ledger.lamports(&harness.signer.pubkey());
    let effects = &landed.effects;
    assert_eq!(effects.fee, LAMPORTS_PER_SIGNATURE);
    assert_eq!(
        i128::from(effects.lamport_delta),
        i128::from(after) - i128::from(before)
    );
    assert_eq!(
        effects.lamport_delta,
        -((SOL + LAMPORTS_PER_SIGNATURE) as i64)
    );
    assert_eq!(effects.lamports_pre, before);
    assert_eq!(effects.lamports_post, after);
    assert!(effects.owner_paid_fee);
    assert_eq!(effects.err, None);
    assert_eq!(harness.ledger.lamports(&to), SOL);
    assert_eq!(landed.attempt, 1);
    assert_eq!(
        Some(landed.slot),
        harness.ledger.landed(&landed.signature).map(|tx| tx.slot)
    );

    // Recorded before it was sent, landed with its effects after.
    let rows = harness.store.txs_for_run(RUN).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, TxStatus::Landed);
    assert_eq!(rows[0].signature, landed.signature.to_string());
    assert_eq!(rows[0].slot, Some(landed.slot));
    assert!(rows[0].result.as_deref().unwrap().contains("lamportDelta"));

    // Asking again returns the same landing from the store: no build, no send.
    let sends = harness.ledger.received().len();
    let again = submit_transfer(
        &harness,
        &harness.store,
        "transfer",
        to,
        SOL,
        &options(),
        &builds,
    )
    .await
    .unwrap();
    assert_eq!(again, landed);
    assert_eq!(builds.load(Ordering::SeqCst), 1);
    assert_eq!(harness.ledger.received().len(), sends);
    assert_eq!(harness.landings().len(), 1);
}

#[tokio::test]
async fn a_dropped_send_is_rebuilt_after_expiry_and_lands_once() {
    let harness = Harness::start().await;
    // The first sendTransaction is acknowledged and never lands.
    harness.drop_sends(FaultMode::Script {
        steps: vec![Some(Fault::DropTransaction)],
    });
    let to = Pubkey::new_unique();
    let builds = AtomicU32::new(0);

    let landed = submit_transfer(
        &harness,
        &harness.store,
        "transfer",
        to,
        SOL,
        &options(),
        &builds,
    )
    .await
    .unwrap();

    assert_eq!(landed.attempt, 2);
    assert_eq!(builds.load(Ordering::SeqCst), 2);
    let rows = harness.store.txs_for_run(RUN).await.unwrap();
    let statuses: Vec<(u32, TxStatus)> = rows.iter().map(|row| (row.attempt, row.status)).collect();
    assert_eq!(
        statuses,
        vec![(1, TxStatus::Expired), (2, TxStatus::Landed)]
    );
    // The first was dropped and never landed; exactly one transfer executed.
    let first: Signature = rows[0].signature.parse().unwrap();
    assert!(
        harness
            .received(&first)
            .iter()
            .all(|r| r.dropped && r.landed_slot.is_none())
    );
    assert!(harness.ledger.landed(&first).is_none());
    assert_eq!(harness.landings().len(), 1);
    assert_eq!(harness.landings()[0].signature, landed.signature);
    assert_eq!(harness.ledger.lamports(&to), SOL);
}

#[tokio::test]
async fn a_dropped_send_is_recovered_by_resending_the_same_bytes() {
    let harness = Harness::start().await;
    harness.drop_sends(FaultMode::Script {
        steps: vec![Some(Fault::DropTransaction)],
    });
    let to = Pubkey::new_unique();
    let builds = AtomicU32::new(0);
    let options = SubmitOptions {
        resend_interval: Some(Duration::from_millis(100)),
        ..options()
    };

    let landed = submit_transfer(
        &harness,
        &harness.store,
        "transfer",
        to,
        SOL,
        &options,
        &builds,
    )
    .await
    .unwrap();

    // Same transaction, same signature: the re-send landed it, nothing was rebuilt.
    assert_eq!(landed.attempt, 1);
    assert_eq!(builds.load(Ordering::SeqCst), 1);
    let received = harness.received(&landed.signature);
    assert!(received[0].dropped, "{received:?}");
    assert!(received.len() >= 2, "{received:?}");
    assert_eq!(harness.landings().len(), 1);
    assert_eq!(harness.ledger.lamports(&to), SOL);
}

#[tokio::test]
async fn rebuilds_are_bounded() {
    let harness = Harness::start().await;
    harness.drop_sends(FaultMode::Always {
        fault: Fault::DropTransaction,
    });
    let to = Pubkey::new_unique();
    let builds = AtomicU32::new(0);
    let options = SubmitOptions {
        max_rebuilds: 1,
        ..options()
    };

    let error = submit_transfer(
        &harness,
        &harness.store,
        "transfer",
        to,
        SOL,
        &options,
        &builds,
    )
    .await
    .unwrap_err();

    assert_eq!(error.code(), "TX_EXPIRED", "{error}");
    assert_eq!(builds.load(Ordering::SeqCst), 2);
    let rows = harness.store.txs_for_run(RUN).await.unwrap();
    assert!(
        rows.iter().all(|row| row.status == TxStatus::Expired),
        "{rows:?}"
    );
    assert_eq!(rows.len(), 2);
    assert!(harness.landings().is_empty());
    assert_eq!(harness.ledger.lamports(&to), 0);
}

#[tokio::test]
async fn a_crash_between_persist_and_send_sends_the_same_bytes_once() {
    let harness = Harness::start().await;
    let to = Pubkey::new_unique();
    let rpc = harness.rpc();
    let expectation = transfer_expectation(SOL, harness.usdc);
    let built = transfer_tx(&rpc, &harness.signer, &to, SOL, &expectation)
        .await
        .unwrap();
    let signature = built.transaction.signatures[0];
    // The process persisted it, then died before sending.
    harness
        .store
        .insert_pending_tx(&NewTransaction {
            run_id: RUN.to_string(),
            phase: TxPhase::Claiming,
            purpose: "transfer".to_string(),
            attempt: 1,
            signature: signature.to_string(),
            signed_tx: bincode::serialize(&built.transaction).unwrap(),
            last_valid_block_height: built.last_valid_block_height,
        })
        .await
        .unwrap();
    assert!(harness.ledger.received().is_empty());

    let (store, rpc) = harness.restart().await;
    let landed = submit_once(&store, &rpc, &purpose("transfer"), &options(), no_build)
        .await
        .unwrap();

    assert_eq!(landed.signature, signature);
    assert_eq!(harness.received(&signature).len(), 1);
    assert_eq!(harness.landings().len(), 1);
    assert_eq!(harness.ledger.lamports(&to), SOL);
    assert_eq!(
        store
            .tx_by_signature(&signature.to_string())
            .await
            .unwrap()
            .unwrap()
            .status,
        TxStatus::Landed
    );
}

#[tokio::test]
async fn a_crash_after_send_before_confirm_does_not_send_a_second_transaction() {
    let harness = Harness::start().await;
    let to = Pubkey::new_unique();
    let rpc = harness.rpc();
    let expectation = transfer_expectation(SOL, harness.usdc);
    let built = transfer_tx(&rpc, &harness.signer, &to, SOL, &expectation)
        .await
        .unwrap();
    let signature = built.transaction.signatures[0];
    let stored = harness
        .store
        .insert_pending_tx(&NewTransaction {
            run_id: RUN.to_string(),
            phase: TxPhase::Claiming,
            purpose: "transfer".to_string(),
            attempt: 1,
            signature: signature.to_string(),
            signed_tx: bincode::serialize(&built.transaction).unwrap(),
            last_valid_block_height: built.last_valid_block_height,
        })
        .await
        .unwrap();
    // Sent, then the process died before confirming.
    assert_eq!(rpc.send(&built.transaction).await.unwrap(), signature);

    let (store, rpc) = harness.restart().await;
    // Startup recovery settles it without any builder ...
    let settled = settle_pending(&store, &rpc, &stored, &options())
        .await
        .unwrap()
        .expect("landed");
    assert_eq!(settled.signature, signature);
    // ... and the resumed phase gets the same landing back.
    let landed = submit_once(&store, &rpc, &purpose("transfer"), &options(), no_build)
        .await
        .unwrap();
    assert_eq!(landed, settled);

    // The re-send was the same bytes (a duplicate the cluster did not execute again).
    assert!(
        harness
            .received(&signature)
            .iter()
            .skip(1)
            .all(|r| r.duplicate)
    );
    assert_eq!(harness.landings().len(), 1);
    assert_eq!(harness.ledger.lamports(&to), SOL);
    assert!(store.pending_txs().await.unwrap().is_empty());
}

#[tokio::test]
async fn two_concurrent_submitters_land_one_transaction() {
    let harness = Harness::start().await;
    let (first, second) = (Pubkey::new_unique(), Pubkey::new_unique());
    let builds = AtomicU32::new(0);
    let (store_a, _) = harness.restart().await;
    let (store_b, _) = harness.restart().await;

    let options = options();
    let (a, b) = tokio::join!(
        submit_transfer(
            &harness, &store_a, "transfer", first, SOL, &options, &builds
        ),
        submit_transfer(
            &harness, &store_b, "transfer", second, SOL, &options, &builds
        ),
    );

    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.signature, b.signature);
    assert_eq!(harness.landings().len(), 1);
    assert_eq!(
        harness.ledger.lamports(&first) + harness.ledger.lamports(&second),
        SOL
    );
    assert_eq!(harness.store.txs_for_run(RUN).await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_on_chain_failure_is_reported_and_not_retried() {
    let harness = Harness::start().await;
    let mint = Pubkey::new_unique();
    harness
        .bags
        .add_position(&harness.signer.pubkey(), &mint, 2 * SOL);
    // Three claims of the same vault fetched before any lands, each in its own slot (distinct
    // blockhashes, so distinct transactions): only the first can succeed.
    let mut claims = Vec::new();
    for _ in 0..3 {
        claims.extend(harness.claim_txs(&mint).await);
        harness.next_slot().await;
    }
    assert_eq!(claims.len(), 3);
    let rpc = harness.rpc();
    let submit = |name: &'static str, claim: BuiltTx, options: SubmitOptions| {
        let (rpc, store, signer) = (rpc.clone(), harness.store.clone(), harness.signer.clone());
        let builds = Arc::new(AtomicU32::new(0));
        let counter = builds.clone();
        async move {
            let result = submit_once(&store, &rpc, &purpose(name), &options, move || {
                counter.fetch_add(1, Ordering::SeqCst);
                let (mut claim, signer) = (claim.clone(), signer.clone());
                async move {
                    inspect_and_sign(&mut claim.transaction, &signer, &claim_expectation())?;
                    Ok(claim)
                }
            })
            .await;
            (result, builds.load(Ordering::SeqCst))
        }
    };

    // A dry run simulates a claim as Bags built it (our slot unsigned) and sends nothing.
    let simulated = rpc.simulate(&claims[0].transaction).await.unwrap();
    assert_eq!(simulated.err, None, "{simulated:?}");
    assert!(harness.ledger.received().is_empty());

    let before = harness.ledger.lamports(&harness.signer.pubkey());
    let (first, _) = submit("claim:0", claims[0].clone(), options()).await;
    let first = first.unwrap();
    // Claimed = the measured delta, net of the fee (two signatures: ours and the vault's),
    // equal to the ledger's.
    assert_eq!(first.effects.fee, 2 * LAMPORTS_PER_SIGNATURE);
    assert_eq!(
        first.effects.lamport_delta,
        (2 * SOL - 2 * LAMPORTS_PER_SIGNATURE) as i64
    );
    assert_eq!(
        i128::from(harness.ledger.lamports(&harness.signer.pubkey())) - i128::from(before),
        i128::from(first.effects.lamport_delta)
    );

    // Sent without preflight, the second claim lands with an error: reported, not retried.
    let skip = SubmitOptions {
        skip_preflight: true,
        ..options()
    };
    let (second, builds) = submit("claim:1", claims[1].clone(), skip).await;
    let error = second.unwrap_err();
    assert_eq!(error.code(), "TX_FAILED", "{error}");
    let TxError::Failed {
        signature, slot, ..
    } = error
    else {
        unreachable!()
    };
    assert!(slot.is_some());
    assert_eq!(builds, 1);
    let received = harness.received(&signature);
    assert_eq!(received.len(), 1, "sent once, never again: {received:?}");
    assert!(received[0].err.is_some() && received[0].landed_slot.is_some());
    let row = harness
        .store
        .tx_by_signature(&signature.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, TxStatus::Failed);
    assert_eq!(row.slot, slot);
    assert!(
        row.error.as_deref().unwrap().contains("InstructionError"),
        "{row:?}"
    );
    // It paid its fee, and the recorded effects say so.
    assert!(
        row.result.as_deref().unwrap().contains("\"fee\":10000"),
        "{row:?}"
    );

    // With preflight (the default) the third is refused before it can land: TX_FAILED, no fee.
    let (third, builds) = submit("claim:2", claims[2].clone(), options()).await;
    let error = third.unwrap_err();
    assert_eq!(error.code(), "TX_FAILED", "{error}");
    let TxError::Failed {
        signature, slot, ..
    } = error
    else {
        unreachable!()
    };
    assert_eq!(slot, None);
    assert_eq!(builds, 1);
    let received = harness.received(&signature);
    assert_eq!(received.len(), 1);
    assert!(received[0].rejected.is_some(), "{received:?}");

    // Simulated now, a remaining claim reports the failure it would land with.
    let simulated = rpc.simulate(&claims[2].transaction).await.unwrap();
    assert!(
        matches!(
            simulated.err,
            Some(TransactionError::InstructionError(0, _))
        ),
        "{simulated:?}"
    );

    // Exactly two executions: the claim and the failed claim; the vault is empty.
    assert_eq!(harness.landings().len(), 2);
    assert_eq!(
        harness.bags.positions(&harness.signer.pubkey())[0].claimable_lamports,
        0
    );
}

#[tokio::test]
async fn a_fee_payer_without_sol_is_insufficient_gas() {
    let harness = Harness::start().await;
    let poor = Keypair::new();
    // Less than one signature's fee.
    harness.ledger.airdrop(&poor.pubkey(), 1_000);
    let rpc = harness.rpc();
    let expectation = transfer_expectation(1, harness.usdc);
    let poor = Arc::new(poor);
    let error = submit_once(
        &harness.store,
        &rpc,
        &purpose("transfer"),
        &options(),
        || {
            let (rpc, poor, expectation) = (rpc.clone(), poor.clone(), expectation.clone());
            async move { transfer_tx(&rpc, &poor, &Pubkey::new_unique(), 1, &expectation).await }
        },
    )
    .await
    .unwrap_err();

    assert_eq!(error.code(), "INSUFFICIENT_GAS", "{error}");
    assert!(harness.landings().is_empty());
    let rows = harness.store.txs_for_run(RUN).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, TxStatus::Failed);
    assert_eq!(
        rows[0].error.as_deref(),
        Some("\"InsufficientFundsForFee\"")
    );
    assert_eq!(harness.ledger.lamports(&poor.pubkey()), 1_000);
}

#[tokio::test]
async fn the_guard_refuses_before_anything_is_persisted_or_sent() {
    let harness = Harness::start().await;
    let mint = Pubkey::new_unique();
    harness
        .bags
        .add_position(&harness.signer.pubkey(), &mint, SOL);
    let stranger = Pubkey::new_unique();
    let rpc = harness.rpc();
    let signer = harness.signer.clone();

    let error = submit_once(
        &harness.store,
        &rpc,
        &purpose("claim:0"),
        &options(),
        || {
            let (rpc, signer) = (rpc.clone(), signer.clone());
            async move {
                // A "claim" that also sends 1 SOL of ours to an unknown account.
                let (blockhash, last_valid_block_height) = rpc
                    .latest_blockhash()
                    .await
                    .map_err(TxError::RpcUnavailable)?;
                let message = Message::new_with_blockhash(
                    &[transfer(&signer.pubkey(), &stranger, SOL)],
                    Some(&signer.pubkey()),
                    &blockhash,
                );
                let mut transaction = VersionedTransaction {
                    signatures: vec![Signature::default()],
                    message: VersionedMessage::Legacy(message),
                };
                inspect_and_sign(&mut transaction, &signer, &claim_expectation())?;
                Ok(BuiltTx {
                    transaction,
                    last_valid_block_height,
                })
            }
        },
    )
    .await
    .unwrap_err();

    assert_eq!(error.code(), "TX_REFUSED", "{error}");
    assert!(error.to_string().contains(&stranger.to_string()), "{error}");
    assert!(harness.store.txs_for_run(RUN).await.unwrap().is_empty());
    assert!(harness.ledger.received().is_empty());
    assert_eq!(harness.ledger.lamports(&stranger), 0);
}

#[tokio::test]
async fn a_swap_records_the_measured_usdc_not_the_quote() {
    let harness = Harness::start().await;
    let lamports_in = 2 * SOL;
    let quote: Value = {
        let response = harness
            .http
            .get(format!("{}/trade/quote", harness.bags_url))
            .header("x-api-key", BAGS_KEY)
            .query(&[
                ("inputMint", WRAPPED_SOL_MINT.to_string()),
                ("outputMint", harness.usdc.to_string()),
                ("amount", lamports_in.to_string()),
                ("slippageMode", "manual".to_string()),
                ("slippageBps", "100".to_string()),
            ])
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        body["response"].clone()
    };
    let quoted: u64 = quote["outAmount"].as_str().unwrap().parse().unwrap();
    let swap = harness
        .bags_post(
            "/trade/swap",
            json!({"quoteResponse": quote, "userPublicKey": harness.signer.pubkey().to_string()}),
        )
        .await;
    let built = BuiltTx {
        transaction: decode(swap["swapTransaction"].as_str().unwrap()),
        last_valid_block_height: swap["lastValidBlockHeight"].as_u64().unwrap(),
    };
    let expectation = transfer_expectation(lamports_in, harness.usdc);
    let rpc = harness.rpc();
    let signer = harness.signer.clone();
    let before = harness.ledger.lamports(&signer.pubkey());

    let landed = submit_once(&harness.store, &rpc, &purpose("swap"), &options(), || {
        let (mut built, signer, expectation) = (built.clone(), signer.clone(), expectation.clone());
        async move {
            inspect_and_sign(&mut built.transaction, &signer, &expectation)?;
            Ok(built)
        }
    })
    .await
    .unwrap();

    let ledger_usdc = harness
        .ledger
        .token_account(&associated_token_address(&signer.pubkey(), &harness.usdc))
        .unwrap()
        .amount;
    assert_eq!(
        landed.effects.token_delta(&harness.usdc),
        i128::from(ledger_usdc)
    );
    assert!(ledger_usdc < quoted, "the fake delivers less than quoted");
    assert_eq!(
        i128::from(landed.effects.lamport_delta),
        i128::from(harness.ledger.lamports(&signer.pubkey())) - i128::from(before)
    );
    // SOL in, the fee and the rent of our new USDC account.
    assert_eq!(
        -landed.effects.lamport_delta,
        (lamports_in + landed.effects.fee + TOKEN_ACCOUNT_RENT_EXEMPT_MINIMUM) as i64
    );
    assert_eq!(
        rpc.token_balance(&signer.pubkey(), &harness.usdc)
            .await
            .unwrap(),
        u128::from(ledger_usdc)
    );
    assert_eq!(
        rpc.balance(&signer.pubkey()).await.unwrap(),
        harness.ledger.lamports(&signer.pubkey())
    );
}
