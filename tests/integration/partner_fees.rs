//! `FEE_SOURCE=PARTNER_FEES` on the sandbox: the ChainActor lands every partner claim transaction
//! once, in Bags' order, with the claimed lamports equal to the ledger delta (the sandbox fake's
//! one-transaction claim, and a stand-in Bags whose claim is several transactions whose last
//! empties the vault); asking again, a dropped send and a restart mid-claim never land anything
//! twice nor claim fees that arrived after the claim; and the pipeline completes a partner-fee
//! run, or skips it below the threshold or above `MAX_CLAIMABLE_SOL_PER_RUN`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use creditbrain::config::Config;
use creditbrain::daemon::RunningDaemon;
use creditbrain::sandbox::faults::{Fault, FaultMode, FaultRule};
use creditbrain::sandbox::ledger::{Ledger, LedgerOptions, USDC_MINT_MAINNET};
use creditbrain::sandbox::world::{LAMPORTS_PER_SOL, WorldOptions};
use creditbrain::sandbox::{Sandbox, SandboxOptions, serve_on_loopback};
use creditbrain_actors::chain::actor::{
    self as chain, BAGS_CLAIM_PROGRAMS, ChainActor, ChainArgs, ChainBreakers, ChainMsg,
    partner_purpose_index,
};
use creditbrain_actors::chain::bags::BagsClient;
use creditbrain_actors::chain::helius::HeliusClient;
use creditbrain_actors::chain::protocol::SubmitOptions;
use creditbrain_actors::chain::rpc::{SolanaRpc, TxEffects};
use creditbrain_actors::resilience::{
    Breaker, BreakerConfig, Integration, RateLimiter, RetryPolicy, SlidingBudget,
};
use creditbrain_actors::run::{CoordinatorMsg, start_run};
use creditbrain_actors::secret::Secret;
use creditbrain_actors::store::Store;
use creditbrain_actors::store::runs::{Run, RunState, TriggeredBy};
use creditbrain_actors::store::strategies::NewStrategy;
use creditbrain_actors::store::transactions::{StoredTransaction, TxPhase, TxStatus};
use ractor::{Actor, ActorRef};
use serde_json::{Value, json};
use solana_message::{VersionedMessage, v0};
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signature, Signer};
use solana_sdk::transaction::VersionedTransaction;

use crate::support::eventually;

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// ChainActor level

struct Harness {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    store: Store,
    run_id: String,
}

fn fast_submit() -> SubmitOptions {
    SubmitOptions {
        poll_interval: Duration::from_millis(20),
        resend_interval: Some(Duration::from_millis(200)),
        max_rebuilds: 3,
        max_rpc_failures: 50,
        skip_preflight: false,
    }
}

impl Harness {
    /// `blockhash_validity_blocks`: how many 20 ms slots a blockhash lives (short: expiry within
    /// a second; several partner transactions in a row need longer).
    async fn start(blockhash_validity_blocks: u64) -> Self {
        let sandbox = Sandbox::start(SandboxOptions {
            world: WorldOptions {
                holders: 5,
                ..WorldOptions::default()
            },
            ledger: LedgerOptions {
                slot_duration: Duration::from_millis(20),
                blockhash_validity_blocks,
                finalization_depth: 32,
            },
            ..SandboxOptions::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("partner.db")).await.unwrap();
        let run_id = insert_run(&store, &sandbox).await;
        Self {
            sandbox,
            dir,
            store,
            run_id,
        }
    }

    fn signer(&self) -> Pubkey {
        self.sandbox.world.signer.pubkey()
    }

    /// The actor's arguments with Bags at `bags_url` (the sandbox's fake unless a test stands in
    /// its own partner endpoints).
    fn args(&self, store: Store, bags_url: &str, submit: SubmitOptions) -> ChainArgs {
        let signer = Keypair::try_from(self.sandbox.world.signer.to_bytes().as_slice()).unwrap();
        let breaker = |integration| {
            Breaker::new(
                integration,
                BreakerConfig {
                    failure_threshold: 3,
                    cooldown: Duration::from_millis(300),
                },
            )
        };
        ChainArgs {
            bags: BagsClient::new(
                format!("{bags_url}/api/v1"),
                Secret::new(self.sandbox.bags_api_key.clone()),
                Duration::from_secs(10),
                SlidingBudget::new(1_000, Duration::from_secs(3600)),
            ),
            helius: HeliusClient::new(
                Secret::new(format!(
                    "{}/?api-key={}",
                    self.sandbox.helius_url, self.sandbox.helius_api_key
                )),
                Duration::from_secs(10),
                RateLimiter::per_second(50),
            ),
            rpc: SolanaRpc::new(
                &Secret::new(self.sandbox.rpc_url.clone()),
                Duration::from_secs(10),
            ),
            signer: Arc::new(signer),
            store,
            breakers: ChainBreakers {
                bags: breaker(Integration::Bags),
                solana_rpc: breaker(Integration::SolanaRpc),
                helius_das: breaker(Integration::HeliusDas),
            },
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(20),
                max_delay: Duration::from_millis(200),
            },
            usdc_mint: USDC_MINT_MAINNET,
            submit,
            max_priority_fee_lamports: 10_000_000,
            allowed_programs: BAGS_CLAIM_PROGRAMS.into_iter().collect::<BTreeSet<_>>(),
        }
    }

    async fn spawn_with(
        &self,
        store: Store,
        bags_url: &str,
        submit: SubmitOptions,
    ) -> ActorRef<ChainMsg> {
        let (actor, _) = Actor::spawn(None, ChainActor, self.args(store, bags_url, submit))
            .await
            .unwrap();
        actor
    }

    async fn spawn(&self) -> ActorRef<ChainMsg> {
        self.spawn_with(self.store.clone(), &self.sandbox.bags_url, fast_submit())
            .await
    }

    fn signer_lamports(&self) -> u64 {
        self.sandbox.ledger.lamports(&self.signer())
    }

    /// Distinct transactions the ledger executed without error (dropped, rejected, failed and
    /// duplicate re-sends left out).
    fn landed(&self) -> Vec<Signature> {
        self.sandbox
            .ledger
            .received()
            .iter()
            .filter(|received| {
                received.landed_slot.is_some() && !received.duplicate && received.err.is_none()
            })
            .map(|received| received.signature)
            .collect()
    }

    /// The run's partner transaction rows, by purpose number then attempt.
    async fn partner_rows(&self, store: &Store) -> Vec<(u32, StoredTransaction)> {
        let mut rows: Vec<(u32, StoredTransaction)> = store
            .txs_for_run(&self.run_id)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|row| partner_purpose_index(&row.purpose).map(|n| (n, row)))
            .collect();
        rows.sort_by_key(|(n, row)| (*n, row.attempt));
        rows
    }
}

/// A strategy and a run row, which the transaction records reference.
async fn insert_run(store: &Store, sandbox: &Sandbox) -> String {
    let now = creditbrain_actors::store::now_timestamp();
    let strategy_id = "strategy-partner-test";
    sqlx::query(
        "INSERT INTO strategies (strategy_id, owner_wallet, token_mint, fee_source,
            threshold_lamports, slippage_bps, distribution_mode, max_grant_micro_usd,
            max_key_limit_micro_usd, key_expiry_days, reserve_bps, cron_schedule, created_at,
            updated_at)
         VALUES (?, ?, ?, 'PARTNER_FEES', 0, 50, 'TOP_N_HOLDERS', 10000000, 100000000, 365, 1000,
            '0 */6 * * *', ?, ?)",
    )
    .bind(strategy_id)
    .bind(sandbox.world.signer.pubkey().to_string())
    .bind(sandbox.world.token_mint.to_string())
    .bind(&now)
    .bind(&now)
    .execute(store.pool())
    .await
    .unwrap();
    let run_id = "run-partner-test".to_string();
    sqlx::query(
        "INSERT INTO runs (run_id, strategy_id, state, triggered_by, started_at, updated_at)
         VALUES (?, ?, 'CLAIMING', 'manual', ?, ?)",
    )
    .bind(&run_id)
    .bind(strategy_id)
    .bind(&now)
    .bind(&now)
    .execute(store.pool())
    .await
    .unwrap();
    run_id
}

#[tokio::test(flavor = "multi_thread")]
async fn the_partner_vault_is_claimed_once_for_exactly_the_ledger_delta() {
    let harness = Harness::start(40).await;
    let actor = harness.spawn().await;
    let signer = harness.signer();
    let fees = 3 * LAMPORTS_PER_SOL;
    harness.sandbox.bags.set_partner_fees(&signer, fees);
    let positions_before = harness.sandbox.bags.positions(&signer);

    let stats = chain::partner_stats(&actor, CALL_TIMEOUT).await.unwrap();
    assert_eq!(stats.unclaimed_lamports, fees);
    assert_eq!(stats.claimed_lamports, 0);

    let before = harness.signer_lamports();
    let claim = chain::claim_partner_fees(&actor, &harness.run_id, CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        claim.transactions.len(),
        1,
        "the fake builds one transaction"
    );
    assert_eq!(
        harness.signer_lamports() as i64 - before as i64,
        claim.claimed_lamports,
        "recorded = ledger delta"
    );
    assert_eq!(
        claim.claimed_lamports,
        fees as i64 - claim.fees_lamports as i64
    );
    assert_eq!(
        harness.sandbox.bags.partner_fees(&signer),
        Some((fees, 0)),
        "the partner vault is empty"
    );
    assert_eq!(
        harness.sandbox.bags.positions(&signer),
        positions_before,
        "the fee positions are not the fee source: untouched"
    );
    let rows = harness.partner_rows(&harness.store).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, 0);
    assert_eq!(rows[0].1.status, TxStatus::Landed);
    assert_eq!(rows[0].1.phase, TxPhase::Claiming);

    // More fees arrive; asking again for the same run settles from the record and sends
    // nothing: the run's claim is done, the new fees wait for the next run.
    harness
        .sandbox
        .bags
        .set_partner_fees(&signer, LAMPORTS_PER_SOL);
    let landed = harness.landed();
    let again = chain::claim_partner_fees(&actor, &harness.run_id, CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(again, claim);
    assert_eq!(harness.landed(), landed, "nothing new sent");
    assert_eq!(
        harness.sandbox.bags.partner_fees(&signer),
        Some((fees, LAMPORTS_PER_SOL))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_partner_claim_is_recovered_with_exactly_one_landing() {
    let harness = Harness::start(40).await;
    // No re-sends: the dropped transaction can only expire, and the claim must go on without it.
    let actor = harness
        .spawn_with(
            harness.store.clone(),
            &harness.sandbox.bags_url,
            SubmitOptions {
                resend_interval: None,
                ..fast_submit()
            },
        )
        .await;
    harness.sandbox.faults.add_rule(FaultRule {
        fake: "rpc".into(),
        route: Some("sendTransaction".into()),
        latency: None,
        mode: Some(FaultMode::Script {
            steps: vec![Some(Fault::DropTransaction)],
        }),
    });
    let signer = harness.signer();
    let fees = 2 * LAMPORTS_PER_SOL;
    harness.sandbox.bags.set_partner_fees(&signer, fees);
    let before = harness.signer_lamports();
    let claim = chain::claim_partner_fees(&actor, &harness.run_id, CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        harness.signer_lamports() as i64 - before as i64,
        claim.claimed_lamports
    );
    assert_eq!(
        claim.claimed_lamports,
        fees as i64 - claim.fees_lamports as i64
    );
    assert_eq!(
        harness.landed().len(),
        1,
        "one landing, the drop notwithstanding"
    );
    assert_eq!(harness.sandbox.bags.partner_fees(&signer), Some((fees, 0)));
    let rows = harness.partner_rows(&harness.store).await;
    let statuses: Vec<(u32, TxStatus)> = rows.iter().map(|(n, row)| (*n, row.status)).collect();
    assert_eq!(
        statuses,
        vec![(0, TxStatus::Expired), (1, TxStatus::Landed)],
        "the dropped one expired; a fresh list was sent under the next purpose"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_mid_claim_settles_the_sent_claim_and_claims_nothing_more() {
    // The sent claim must still be valid when the restarted actor re-sends it (10 s).
    let harness = Harness::start(500).await;
    let actor = harness.spawn().await;
    harness.sandbox.faults.add_rule(FaultRule {
        fake: "rpc".into(),
        route: Some("sendTransaction".into()),
        latency: None,
        mode: Some(FaultMode::Always {
            fault: Fault::DropTransaction,
        }),
    });
    let signer = harness.signer();
    let fees = 2 * LAMPORTS_PER_SOL;
    harness.sandbox.bags.set_partner_fees(&signer, fees);
    let pending = {
        let actor = actor.clone();
        let run_id = harness.run_id.clone();
        tokio::spawn(async move { chain::claim_partner_fees(&actor, &run_id, CALL_TIMEOUT).await })
    };
    eventually(Duration::from_secs(10), || async {
        let rows = harness.partner_rows(&harness.store).await;
        rows.iter()
            .any(|(_, row)| row.status == TxStatus::Pending)
            .then_some(())
    })
    .await;
    // The process dies between send and confirmation.
    actor.get_cell().kill();
    assert!(pending.await.unwrap().is_err());
    harness.store.close().await;
    harness.sandbox.faults.clear(Some("rpc"));
    // Fees keep arriving while the daemon is down.
    let later = LAMPORTS_PER_SOL / 2;
    harness.sandbox.bags.set_partner_fees(&signer, fees + later);

    let store = Store::open(&harness.dir.path().join("partner.db"))
        .await
        .unwrap();
    let before = harness.signer_lamports();
    let actor = harness
        .spawn_with(store.clone(), &harness.sandbox.bags_url, fast_submit())
        .await;
    // On start, the actor settles what the dead one left pending, before anyone asks.
    eventually(Duration::from_secs(10), || async {
        let rows = harness.partner_rows(&store).await;
        rows.iter()
            .all(|(_, row)| row.status != TxStatus::Pending)
            .then_some(())
    })
    .await;
    let claim = chain::claim_partner_fees(&actor, &harness.run_id, CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(harness.landed().len(), 1, "exactly one landing");
    assert_eq!(
        harness.signer_lamports() as i64 - before as i64,
        claim.claimed_lamports
    );
    assert_eq!(
        claim.claimed_lamports,
        fees as i64 - claim.fees_lamports as i64,
        "what the sent claim withdrew, not the fees that came after"
    );
    assert_eq!(
        harness.sandbox.bags.partner_fees(&signer),
        Some((fees, later)),
        "the later fees wait for the next run"
    );
    let rows = harness.partner_rows(&store).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].1.status, TxStatus::Landed);
}

/// A stand-in for Bags' partner endpoints on the sandbox's ledger whose claim is several
/// transactions, as Bags' can be: each pool transaction moves a pool's fees into the partner
/// vault (any order), and the last one moves everything the vault will then hold to the partner
/// (so it fails on the ledger if it runs before the others). The list is built from the ledger
/// as it is now: pools already emptied are left out.
#[derive(Clone)]
struct PartnerBags {
    ledger: Ledger,
    partner: Pubkey,
    pools: Arc<Vec<Keypair>>,
    vault: Arc<Keypair>,
    /// The source account of each transaction of every list served, in order, per list.
    served: Arc<Mutex<Vec<Vec<Pubkey>>>>,
}

impl PartnerBags {
    fn new(ledger: &Ledger, partner: Pubkey, pool_lamports: &[u64], vault_lamports: u64) -> Self {
        let pools: Vec<Keypair> = pool_lamports.iter().map(|_| Keypair::new()).collect();
        for (pool, lamports) in pools.iter().zip(pool_lamports) {
            ledger.airdrop(&pool.pubkey(), *lamports);
        }
        let vault = Keypair::new();
        ledger.airdrop(&vault.pubkey(), vault_lamports);
        Self {
            ledger: ledger.clone(),
            partner,
            pools: Arc::new(pools),
            vault: Arc::new(vault),
            served: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn unclaimed(&self) -> u64 {
        self.pools
            .iter()
            .map(|pool| self.ledger.lamports(&pool.pubkey()))
            .sum::<u64>()
            + self.ledger.lamports(&self.vault.pubkey())
    }

    /// A v0 transaction paid by the partner (slot left empty), signed by `from`.
    fn transfer(&self, from: &Keypair, to: &Pubkey, lamports: u64) -> Value {
        let (blockhash, last_valid_block_height) = self.ledger.latest_blockhash();
        let instruction =
            solana_system_interface::instruction::transfer(&from.pubkey(), to, lamports);
        let message =
            v0::Message::try_compile(&self.partner, &[instruction], &[], blockhash).unwrap();
        let required = usize::from(message.header.num_required_signatures);
        let position = message.account_keys[..required]
            .iter()
            .position(|key| *key == from.pubkey())
            .unwrap();
        let message = VersionedMessage::V0(message);
        let mut signatures = vec![Signature::default(); required];
        signatures[position] = from.sign_message(&message.serialize());
        let transaction = VersionedTransaction {
            signatures,
            message,
        };
        json!({
            "transaction": bs58::encode(bincode::serialize(&transaction).unwrap()).into_string(),
            "blockhash": {
                "blockhash": blockhash.to_string(),
                "lastValidBlockHeight": last_valid_block_height,
            },
        })
    }

    fn claim_list(&self) -> Value {
        let mut transactions = Vec::new();
        let mut sources = Vec::new();
        let mut incoming = 0;
        for pool in self.pools.iter() {
            let lamports = self.ledger.lamports(&pool.pubkey());
            if lamports > 0 {
                transactions.push(self.transfer(pool, &self.vault.pubkey(), lamports));
                sources.push(pool.pubkey());
                incoming += lamports;
            }
        }
        let total = incoming + self.ledger.lamports(&self.vault.pubkey());
        if total > 0 {
            transactions.push(self.transfer(&self.vault, &self.partner, total));
            sources.push(self.vault.pubkey());
        }
        self.served.lock().unwrap().push(sources);
        json!({"transactions": transactions})
    }

    async fn serve(&self) -> String {
        async fn stats(State(bags): State<PartnerBags>) -> Json<Value> {
            Json(json!({"success": true, "response": {
                "claimedFees": "0",
                "unclaimedFees": bags.unclaimed().to_string(),
            }}))
        }
        async fn claim(State(bags): State<PartnerBags>) -> Json<Value> {
            Json(json!({"success": true, "response": bags.claim_list()}))
        }
        let router = Router::new()
            .route("/api/v1/fee-share/partner-config/stats", get(stats))
            .route("/api/v1/fee-share/partner-config/claim-tx", post(claim))
            .with_state(self.clone());
        let (address, _task) = serve_on_loopback(router).await.unwrap();
        format!("http://{address}")
    }
}

/// The account a stored transfer moves lamports from.
fn transfer_source(row: &StoredTransaction) -> Pubkey {
    let transaction: VersionedTransaction = bincode::deserialize(&row.signed_tx).unwrap();
    let keys = transaction.message.static_account_keys();
    let instruction = &transaction.message.instructions()[0];
    keys[usize::from(instruction.accounts[0])]
}

#[tokio::test(flavor = "multi_thread")]
async fn several_partner_transactions_land_once_each_in_bags_order_the_withdrawal_last() {
    let harness = Harness::start(150).await;
    let signer = harness.signer();
    let pools = [LAMPORTS_PER_SOL, 2 * LAMPORTS_PER_SOL];
    let vault = LAMPORTS_PER_SOL / 2;
    let bags = PartnerBags::new(&harness.sandbox.ledger, signer, &pools, vault);
    let bags_url = bags.serve().await;
    let actor = harness
        .spawn_with(harness.store.clone(), &bags_url, fast_submit())
        .await;

    let total = pools.iter().sum::<u64>() + vault;
    let stats = chain::partner_stats(&actor, CALL_TIMEOUT).await.unwrap();
    assert_eq!(stats.unclaimed_lamports, total);
    let before = harness.signer_lamports();
    let claim = chain::claim_partner_fees(&actor, &harness.run_id, CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(claim.transactions.len(), 3);
    assert_eq!(
        harness.signer_lamports() as i64 - before as i64,
        claim.claimed_lamports,
        "recorded = ledger delta"
    );
    assert_eq!(
        claim.claimed_lamports,
        total as i64 - claim.fees_lamports as i64
    );
    assert_eq!(bags.unclaimed(), 0, "every pool and the vault emptied");

    // Sent in the order Bags listed them, one purpose each, each landed before the next.
    let served = bags.served.lock().unwrap().clone();
    assert_eq!(served.len(), 1, "one list, sent whole");
    let rows = harness.partner_rows(&harness.store).await;
    assert_eq!(
        rows.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert!(rows.iter().all(|(_, row)| row.status == TxStatus::Landed));
    assert_eq!(
        rows.iter()
            .map(|(_, row)| transfer_source(row))
            .collect::<Vec<_>>(),
        served[0]
    );
    let slots: Vec<u64> = rows.iter().map(|(_, row)| row.slot.unwrap()).collect();
    assert!(
        slots.windows(2).all(|pair| pair[0] < pair[1]),
        "each landed before the next: {slots:?}"
    );
    let signatures: Vec<Signature> = rows
        .iter()
        .map(|(_, row)| row.signature.parse().unwrap())
        .collect();
    assert_eq!(
        harness.landed(),
        signatures,
        "each landed once, in that order"
    );
    assert_eq!(
        claim
            .transactions
            .iter()
            .map(|landed| landed.signature)
            .collect::<Vec<_>>(),
        signatures
    );

    // Asking again sends nothing.
    let again = chain::claim_partner_fees(&actor, &harness.run_id, CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(again, claim);
    assert_eq!(harness.landed(), signatures);
    assert_eq!(bags.served.lock().unwrap().len(), 1, "Bags not even asked");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_broken_by_a_drop_goes_on_with_a_fresh_list_and_never_lands_a_step_twice() {
    let harness = Harness::start(40).await;
    let signer = harness.signer();
    let pools = [LAMPORTS_PER_SOL, 2 * LAMPORTS_PER_SOL];
    let bags = PartnerBags::new(&harness.sandbox.ledger, signer, &pools, 0);
    let bags_url = bags.serve().await;
    // The first pool's transaction lands; the second one's single send is dropped and expires.
    let actor = harness
        .spawn_with(
            harness.store.clone(),
            &bags_url,
            SubmitOptions {
                resend_interval: None,
                ..fast_submit()
            },
        )
        .await;
    harness.sandbox.faults.add_rule(FaultRule {
        fake: "rpc".into(),
        route: Some("sendTransaction".into()),
        latency: None,
        mode: Some(FaultMode::Script {
            steps: vec![None, Some(Fault::DropTransaction)],
        }),
    });
    let total: u64 = pools.iter().sum();
    let before = harness.signer_lamports();
    let claim = chain::claim_partner_fees(&actor, &harness.run_id, CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        harness.signer_lamports() as i64 - before as i64,
        claim.claimed_lamports
    );
    assert_eq!(
        claim.claimed_lamports,
        total as i64 - claim.fees_lamports as i64
    );
    assert_eq!(bags.unclaimed(), 0);

    let served = bags.served.lock().unwrap().clone();
    let (first_pool, second_pool, vault) = (
        bags.pools[0].pubkey(),
        bags.pools[1].pubkey(),
        bags.vault.pubkey(),
    );
    assert_eq!(
        served,
        vec![
            vec![first_pool, second_pool, vault],
            vec![second_pool, vault]
        ],
        "after the expiry, a fresh list with only what was left"
    );
    let rows = harness.partner_rows(&harness.store).await;
    let seen: Vec<(u32, TxStatus, Pubkey)> = rows
        .iter()
        .map(|(n, row)| (*n, row.status, transfer_source(row)))
        .collect();
    assert_eq!(
        seen,
        vec![
            (0, TxStatus::Landed, first_pool),
            (1, TxStatus::Expired, second_pool),
            (2, TxStatus::Landed, second_pool),
            (3, TxStatus::Landed, vault),
        ],
        "the broken batch's withdrawal was never sent"
    );
    assert_eq!(harness.landed().len(), 3, "one landing per step");
}

// ---------------------------------------------------------------------------------------------
// Pipeline level

struct Pipeline {
    sandbox: Sandbox,
    _dir: tempfile::TempDir,
    daemon: RunningDaemon,
    strategy_id: String,
}

impl Pipeline {
    async fn start(extra: &[(&str, &str)]) -> Self {
        let sandbox = Sandbox::start(SandboxOptions {
            world: WorldOptions {
                holders: 12,
                ..WorldOptions::default()
            },
            ledger: LedgerOptions {
                slot_duration: Duration::from_millis(20),
                ..LedgerOptions::default()
            },
            ..SandboxOptions::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut vars = sandbox.daemon_vars();
        for (name, value) in [
            ("API_AUTH_TOKEN", "partner-test-token-0123456789"),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("KEY_LIMIT_RESET", "null"),
            ("HEALTH_PROBE_INTERVAL_SEC", "1"),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        {
            vars.insert(name.into(), value.into());
        }
        vars.insert(
            "DATABASE_PATH".into(),
            dir.path().join("partner.db").display().to_string(),
        );
        vars.insert(
            "ADMIN_SOCKET_PATH".into(),
            dir.path().join("partner.sock").display().to_string(),
        );
        let config = Config::from_vars(&vars).unwrap_or_else(|errors| panic!("{errors}"));
        let daemon = creditbrain::daemon::start(&config)
            .await
            .expect("daemon starts");
        let strategy = daemon
            .handle
            .store
            .insert_strategy(&NewStrategy {
                owner_wallet: sandbox.world.signer.pubkey().to_string(),
                token_mint: sandbox.world.token_mint.to_string(),
                fee_source: "PARTNER_FEES".into(),
                threshold_lamports: LAMPORTS_PER_SOL as i64,
                slippage_bps: 50,
                distribution_mode: "TOP_N_HOLDERS".into(),
                top_n: 10,
                min_holding_base_units: "0".into(),
                max_grant_micro_usd: 10_000_000,
                max_key_limit_micro_usd: 100_000_000,
                key_limit_reset: None,
                key_expiry_days: 365,
                reserve_bps: 1_000,
                cron_schedule: "0 */6 * * *".into(),
                status: "active".into(),
            })
            .await
            .unwrap();
        Self {
            sandbox,
            _dir: dir,
            daemon,
            strategy_id: strategy.strategy_id,
        }
    }

    fn signer(&self) -> Pubkey {
        self.sandbox.world.signer.pubkey()
    }

    async fn run_to_end(&self) -> Run {
        let coordinator: ActorRef<CoordinatorMsg> = self
            .daemon
            .handle
            .coordinator
            .get()
            .expect("coordinator running");
        let started = start_run(
            &coordinator,
            &self.strategy_id,
            TriggeredBy::Manual,
            Some(false),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(started.blocked_code, None);
        let store = &self.daemon.handle.store;
        eventually(Duration::from_secs(60), || async {
            let run = store.run(&started.run_id).await.unwrap().unwrap();
            run.state.is_terminal().then_some(run)
        })
        .await
    }

    async fn stop(self) {
        self.daemon.shutdown_trigger().trigger();
        self.daemon.wait().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partner_fee_run_claims_the_vault_and_provisions_keys() {
    let pipeline = Pipeline::start(&[]).await;
    let store = pipeline.daemon.handle.store.clone();
    let signer = pipeline.signer();
    let fees = 3 * LAMPORTS_PER_SOL;
    pipeline.sandbox.bags.set_partner_fees(&signer, fees);
    let positions = pipeline.sandbox.bags.positions(&signer);

    let run = pipeline.run_to_end().await;
    assert_eq!(
        run.state,
        RunState::Complete,
        "{:?} {:?}",
        run.error_code,
        run.error_detail
    );
    assert_eq!(run.skipped_reason, None);
    assert_eq!(
        pipeline.sandbox.bags.partner_fees(&signer),
        Some((fees, 0)),
        "the partner vault is empty"
    );
    assert_eq!(
        pipeline.sandbox.bags.positions(&signer),
        positions,
        "FEE_SOURCE honoured: the fee positions are untouched"
    );
    let claimed = run.claimed_lamports.unwrap();
    let rows = store.txs_for_run(&run.run_id).await.unwrap();
    let claims: Vec<&StoredTransaction> = rows
        .iter()
        .filter(|row| row.phase == TxPhase::Claiming)
        .collect();
    assert_eq!(claims.len(), 1, "{rows:?}");
    assert_eq!(claims[0].purpose, "partner:0");
    assert_eq!(claims[0].status, TxStatus::Landed);
    let effects = TxEffects::from_json(claims[0].result.as_deref().unwrap()).unwrap();
    assert_eq!(
        claimed as i64, effects.lamport_delta,
        "claimed = the measured delta"
    );
    assert_eq!(claimed, fees - effects.fee);
    assert!(run.swapped_usdc_base_units.unwrap() > 0);

    let allocations = store.allocations_for_run(&run.run_id).await.unwrap();
    assert!(!allocations.is_empty());
    let keys = pipeline.sandbox.openrouter.keys();
    assert_eq!(keys.len(), allocations.len());
    assert_eq!(run.keys_created, Some(allocations.len() as u64));
    for allocation in &allocations {
        let key = keys
            .iter()
            .find(|key| Some(&key.hash) == allocation.key_hash.as_ref())
            .expect("every allocation has its key on OpenRouter");
        assert_eq!(key.limit_micro_usd, Some(allocation.grant_micro_usd));
    }
    let audit = store.audit_for_run(&run.run_id).await.unwrap();
    let landed: Vec<_> = audit
        .iter()
        .filter(|entry| entry.action == "claim_landed")
        .collect();
    assert_eq!(landed.len(), 1);
    assert_eq!(
        landed[0].tx_signature.as_deref(),
        Some(claims[0].signature.as_str())
    );
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn partner_fees_below_the_threshold_or_above_the_cap_complete_the_run_as_skipped() {
    // MAX_CLAIMABLE_SOL_PER_RUN = 2 SOL; the strategy's threshold is 1 SOL.
    let pipeline = Pipeline::start(&[("MAX_CLAIMABLE_SOL_PER_RUN", "2")]).await;
    let store = pipeline.daemon.handle.store.clone();
    let signer = pipeline.signer();

    pipeline
        .sandbox
        .bags
        .set_partner_fees(&signer, LAMPORTS_PER_SOL / 2);
    let below = pipeline.run_to_end().await;
    assert_eq!(
        below.state,
        RunState::Complete,
        "{:?} {:?}",
        below.error_code,
        below.error_detail
    );
    assert_eq!(below.skipped_reason.as_deref(), Some("below_threshold"));
    assert_eq!(below.claimed_lamports, Some(0));
    assert_eq!(
        pipeline.sandbox.bags.partner_fees(&signer),
        Some((0, LAMPORTS_PER_SOL / 2))
    );

    // Partner fees are one vault, claimed whole or not at all: above the cap, not at all.
    pipeline
        .sandbox
        .bags
        .set_partner_fees(&signer, 3 * LAMPORTS_PER_SOL);
    let above = pipeline.run_to_end().await;
    assert_eq!(
        above.state,
        RunState::Complete,
        "{:?} {:?}",
        above.error_code,
        above.error_detail
    );
    assert_eq!(above.skipped_reason.as_deref(), Some("above_claim_cap"));
    assert_eq!(above.claimed_lamports, Some(0));
    assert_eq!(
        pipeline.sandbox.bags.partner_fees(&signer),
        Some((0, 3 * LAMPORTS_PER_SOL))
    );
    let audit = store.audit_for_run(&above.run_id).await.unwrap();
    assert!(audit.iter().any(|entry| entry.action == "above_claim_cap"));

    assert!(
        pipeline.sandbox.ledger.received().is_empty(),
        "no transaction sent by either run"
    );
    assert!(pipeline.sandbox.openrouter.keys().is_empty());
    pipeline.stop().await;
}
