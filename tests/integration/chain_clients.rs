//! The Bags and Helius clients (`creditbrain_actors::chain::{bags, helius}`) against the real
//! sandbox fakes over loopback: amounts equal what was seeded, Bags' transactions decode into what
//! lands on the ledger, errors are classified with the right delays, the local Bags budget stops
//! before the service does, and the show test — a 25,000-holder snapshot across many DAS pages,
//! with PDA owners, duplicates and exclusions, aggregated exactly.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use creditbrain::sandbox::bags::{BagsFake, BagsOptions};
use creditbrain::sandbox::faults::{ErrorStyle, Fault, FaultMode, FaultRule, Faults};
use creditbrain::sandbox::ledger::{
    LandedTransaction, Ledger, LedgerOptions, USDC_DECIMALS, WRAPPED_SOL_MINT,
    associated_token_address,
};
use creditbrain::sandbox::rpc::{PriorityFeeLevels, RpcFake};
use creditbrain::sandbox::serve_on_loopback;
use creditbrain_actors::chain::bags::{BagsClient, BagsError, UnsignedTransaction};
use creditbrain_actors::chain::helius::{
    ExclusionCounts, HeliusClient, HeliusError, Holder, HolderFilters, INCINERATOR, PriorityLevel,
};
use creditbrain_actors::resilience::{Classify, RateLimiter, SlidingBudget, Transience};
use creditbrain_actors::secret::Secret;
use solana_message::VersionedMessage;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signer};
use solana_sdk::transaction::VersionedTransaction;
use tokio::task::JoinHandle;

use crate::support::eventually;

const KEY: &str = "bags-client-test-key-A";
const OTHER_KEY: &str = "bags-client-test-key-B";
const SOL: u64 = 1_000_000_000;
const HOUR: Duration = Duration::from_secs(3_600);
const TIMEOUT: Duration = Duration::from_secs(5);

fn ledger() -> Ledger {
    Ledger::new(LedgerOptions {
        slot_duration: Duration::from_millis(50),
        blockhash_validity_blocks: 150,
        finalization_depth: 32,
    })
}

// ---------------------------------------------------------------------------------------------
// Bags

struct Bags {
    ledger: Ledger,
    fake: BagsFake,
    faults: Faults,
    /// `http://…/api/v1`, as `BAGS_API_BASE_URL` gives it.
    base_url: String,
    usdc: Pubkey,
    _server: JoinHandle<()>,
}

async fn bags_with(configure: impl FnOnce(&mut BagsOptions)) -> Bags {
    let ledger = ledger();
    let usdc = Keypair::new().pubkey();
    let mut options = BagsOptions {
        api_keys: vec![KEY.to_owned(), OTHER_KEY.to_owned()],
        usdc_mint: usdc,
        ..BagsOptions::default()
    };
    configure(&mut options);
    let fake = BagsFake::new(ledger.clone(), options);
    let faults = Faults::new();
    let (address, server) = serve_on_loopback(faults.wrap("bags", ErrorStyle::Bags, fake.router()))
        .await
        .expect("serve bags");
    Bags {
        ledger,
        fake,
        faults,
        base_url: format!("http://{address}/api/v1"),
        usdc,
        _server: server,
    }
}

async fn bags() -> Bags {
    bags_with(|_| {}).await
}

impl Bags {
    fn client_with(&self, key: &str, budget: SlidingBudget) -> BagsClient {
        BagsClient::new(self.base_url.clone(), Secret::new(key), TIMEOUT, budget)
    }

    fn client(&self) -> BagsClient {
        self.client_with(KEY, SlidingBudget::new(1_000, HOUR))
    }

    /// Requests that reached the fake (through the fault layer), all routes.
    fn requests_seen(&self) -> u64 {
        self.faults
            .request_counts()
            .get("bags")
            .map_or(0, |routes| routes.values().sum())
    }

    /// Signs `transaction` as `signer` (its slot among the required signers) and waits until it
    /// landed: proof that the decoded transaction is exactly the one Bags built.
    async fn sign_and_land(
        &self,
        mut transaction: VersionedTransaction,
        signer: &Keypair,
    ) -> LandedTransaction {
        let keys = transaction.message.static_account_keys();
        let required = usize::from(transaction.message.header().num_required_signatures);
        let slot = keys[..required]
            .iter()
            .position(|key| *key == signer.pubkey())
            .expect("the signer is a required signer");
        transaction.signatures[slot] = signer.sign_message(&transaction.message.serialize());
        let signature = self
            .ledger
            .submit(transaction, false, false)
            .expect("accepted");
        let ledger = self.ledger.clone();
        let landed = eventually(Duration::from_secs(10), || {
            let landed = ledger.landed(&signature);
            async move { landed }
        })
        .await;
        assert_eq!(landed.err, None, "landed without error");
        landed
    }
}

fn fee_payer(transaction: &VersionedTransaction) -> Pubkey {
    transaction.message.static_account_keys()[0]
}

fn assert_window(bags: &Bags, unsigned: &UnsignedTransaction) {
    assert_eq!(
        *unsigned.transaction.message.recent_blockhash(),
        unsigned.blockhash
    );
    assert!(bags.ledger.is_blockhash_valid(&unsigned.blockhash));
    assert!(unsigned.last_valid_block_height > bags.ledger.block_height());
}

#[tokio::test]
async fn bags_positions_are_what_was_seeded() {
    let bags = bags().await;
    let owner = Keypair::new().pubkey();
    let (first, second) = (Pubkey::new_unique(), Pubkey::new_unique());
    bags.fake.add_position(&owner, &first, 1_500_000_007);
    bags.fake.add_position(&owner, &second, 250);
    bags.fake.add_position(&owner, &second, 1_000);
    bags.fake
        .add_position(&Keypair::new().pubkey(), &first, 9 * SOL);

    let client = bags.client();
    let positions = client.claimable_positions(&owner).await.expect("positions");
    let amounts: BTreeMap<Pubkey, u64> = positions
        .iter()
        .map(|position| (position.base_mint, position.claimable_lamports))
        .collect();
    assert_eq!(positions.len(), 2, "{positions:?}");
    assert_eq!(
        amounts,
        BTreeMap::from([(first, 1_500_000_007), (second, 1_250)])
    );
    assert!(
        positions
            .iter()
            .all(|position| position.is_custom_fee_vault)
    );
    assert!(
        client
            .claimable_positions(&Keypair::new().pubkey())
            .await
            .expect("no positions")
            .is_empty()
    );
}

#[tokio::test]
async fn bags_claim_transactions_decode_and_land_for_the_claimer() {
    let bags = bags().await;
    let claimer = Keypair::new();
    let mint = Pubkey::new_unique();
    bags.fake.add_position(&claimer.pubkey(), &mint, 2 * SOL);
    bags.ledger.airdrop(&claimer.pubkey(), SOL / 100);
    let client = bags.client();

    let claims = client
        .claim_transactions(&claimer.pubkey(), &mint)
        .await
        .expect("claim txs");
    assert_eq!(claims.len(), 1);
    let claim = &claims[0];
    assert!(matches!(
        claim.transaction.message,
        VersionedMessage::Legacy(_)
    ));
    assert_eq!(fee_payer(&claim.transaction), claimer.pubkey());
    assert_window(&bags, claim);

    let before = bags.ledger.lamports(&claimer.pubkey());
    let landed = bags
        .sign_and_land(claim.transaction.clone(), &claimer)
        .await;
    assert_eq!(
        bags.ledger.lamports(&claimer.pubkey()),
        before + 2 * SOL - landed.fee
    );
    let positions = client
        .claimable_positions(&claimer.pubkey())
        .await
        .expect("positions");
    assert!(positions.is_empty(), "claimed out: {positions:?}");
    assert!(
        client
            .claim_transactions(&claimer.pubkey(), &mint)
            .await
            .expect("nothing left")
            .is_empty()
    );
}

#[tokio::test]
async fn bags_quote_and_swap_decode() {
    let bags = bags().await;
    bags.fake
        .fund_pool(10_000 * 10u64.pow(u32::from(USDC_DECIMALS)));
    let user = Keypair::new();
    bags.ledger.airdrop(&user.pubkey(), 2 * SOL);
    let client = bags.client();

    let quote = client
        .quote(&WRAPPED_SOL_MINT, &bags.usdc, SOL, 75)
        .await
        .expect("quote");
    assert_eq!(
        (quote.input_mint, quote.output_mint),
        (WRAPPED_SOL_MINT, bags.usdc)
    );
    assert_eq!(quote.in_amount, SOL);
    // The default rate: 150 USDC per SOL.
    assert_eq!(quote.out_amount, 150_000_000);
    assert!(quote.min_out_amount <= quote.out_amount);
    assert_eq!(quote.min_out_amount, 150_000_000 * 9_925 / 10_000);
    assert_eq!(quote.slippage_bps, 75);
    assert!(
        quote.raw.get("routePlan").is_some(),
        "raw keeps the whole quote"
    );

    let swap = client
        .swap_transaction(&quote, &user.pubkey())
        .await
        .expect("swap");
    assert!(matches!(swap.transaction.message, VersionedMessage::V0(_)));
    assert_eq!(fee_payer(&swap.transaction), user.pubkey());
    assert!(swap.last_valid_block_height > bags.ledger.block_height());
    assert!(swap.compute_unit_limit > 0);
    assert!(swap.prioritization_fee_lamports > 0);

    let user_usdc = associated_token_address(&user.pubkey(), &bags.usdc);
    bags.sign_and_land(swap.transaction, &user).await;
    let received = bags
        .ledger
        .token_account(&user_usdc)
        .map_or(0, |account| account.amount);
    assert_eq!(received, quote.out_amount);

    // Asking more than the pool holds: Bags' 400, permanent, with its message.
    let error = client
        .quote(&WRAPPED_SOL_MINT, &bags.usdc, 100 * SOL, 50)
        .await
        .expect_err("insufficient liquidity");
    assert!(
        matches!(&error, BagsError::Status { status: 400, message, .. }
            if message.to_lowercase().contains("insufficient liquidity")),
        "{error:?}"
    );
    assert_eq!(error.transience(), Transience::Permanent);
}

#[tokio::test]
async fn bags_partner_stats_and_claim() {
    let bags = bags().await;
    let partner = Keypair::new();
    bags.ledger.airdrop(&partner.pubkey(), SOL / 100);
    bags.fake.set_partner_fees(&partner.pubkey(), 3 * SOL + 17);
    let client = bags.client();

    let stats = client
        .partner_stats(&partner.pubkey())
        .await
        .expect("stats");
    assert_eq!(
        (stats.claimed_lamports, stats.unclaimed_lamports),
        (0, 3 * SOL + 17)
    );

    let claims = client
        .partner_claim_transactions(&partner.pubkey())
        .await
        .expect("claim");
    assert_eq!(claims.len(), 1);
    assert_eq!(fee_payer(&claims[0].transaction), partner.pubkey());
    assert_window(&bags, &claims[0]);
    bags.sign_and_land(claims[0].transaction.clone(), &partner)
        .await;

    let stats = client
        .partner_stats(&partner.pubkey())
        .await
        .expect("stats");
    assert_eq!(
        (stats.claimed_lamports, stats.unclaimed_lamports),
        (3 * SOL + 17, 0)
    );
    assert!(
        client
            .partner_claim_transactions(&partner.pubkey())
            .await
            .expect("nothing left")
            .is_empty()
    );
    // No partner config: Bags' 404, permanent.
    let error = client
        .partner_stats(&Keypair::new().pubkey())
        .await
        .expect_err("no config");
    assert!(
        matches!(error, BagsError::Status { status: 404, .. }),
        "{error:?}"
    );
    assert_eq!(error.transience(), Transience::Permanent);
}

#[tokio::test]
async fn bags_wrong_key_is_permanent_and_never_shown() {
    let bags = bags().await;
    let wrong = "bags-wrong-key-0123456789-do-not-show";
    let client = bags.client_with(wrong, SlidingBudget::new(1_000, HOUR));
    let error = client
        .claimable_positions(&Keypair::new().pubkey())
        .await
        .expect_err("401");
    assert!(
        matches!(&error, BagsError::Status { status: 401, message, .. } if message == "Invalid API key"),
        "{error:?}"
    );
    assert_eq!(error.transience(), Transience::Permanent);
    let shown = format!("{error} {error:?} {client:?}");
    assert!(!shown.contains(wrong), "{shown}");
}

#[tokio::test]
async fn bags_scripted_429_is_transient_with_its_retry_after() {
    let bags = bags().await;
    bags.faults.add_rule(FaultRule {
        fake: "bags".to_owned(),
        route: Some("GET /api/v1/trade/quote".to_owned()),
        latency: None,
        mode: Some(FaultMode::Script {
            steps: vec![Some(Fault::RateLimited {
                retry_after_secs: 7,
            })],
        }),
    });
    let client = bags.client();
    let error = client
        .quote(&WRAPPED_SOL_MINT, &bags.usdc, SOL, 50)
        .await
        .expect_err("429");
    assert!(
        matches!(&error, BagsError::Status { status: 429, message, .. } if message == "Rate limit exceeded"),
        "{error:?}"
    );
    assert_eq!(
        error.transience(),
        Transience::Transient {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    // The 429 also said `X-RateLimit-Remaining: 0` until the reset: the local budget obeys and
    // refuses the next call for those seconds without bothering the service.
    let seen = bags.requests_seen();
    let error = client
        .quote(&WRAPPED_SOL_MINT, &bags.usdc, SOL, 50)
        .await
        .expect_err("held back");
    let BagsError::BudgetExhausted { retry_after } = error else {
        panic!("expected BudgetExhausted, got {error:?}");
    };
    assert!(
        retry_after > Duration::from_secs(5) && retry_after <= Duration::from_secs(7),
        "{retry_after:?}"
    );
    assert_eq!(bags.requests_seen(), seen);
}

#[tokio::test]
async fn bags_own_429_waits_for_the_reset_and_corrects_the_budget() {
    // The fake allows 2 an hour; our budget believes in 100 (say a stale configuration).
    let bags = bags_with(|options| options.rate_limit_per_hour = 2).await;
    let client = bags.client_with(KEY, SlidingBudget::new(100, HOUR));
    let wallet = Keypair::new().pubkey();
    client.claimable_positions(&wallet).await.expect("1st");
    client.claimable_positions(&wallet).await.expect("2nd");
    assert_eq!(
        client.budget().remaining(),
        0,
        "X-RateLimit-Remaining: 0 corrected the local view"
    );
    // Spent locally: refused without asking.
    let seen = bags.requests_seen();
    let error = client
        .claimable_positions(&wallet)
        .await
        .expect_err("budget");
    assert!(
        matches!(error, BagsError::BudgetExhausted { .. }),
        "{error:?}"
    );
    assert_eq!(bags.requests_seen(), seen);

    // A second client with a fresh budget hits the fake's 429: no Retry-After, so the delay
    // comes from the body's resetTime (unix s), about an hour after the first request.
    let fresh = bags.client_with(OTHER_KEY, SlidingBudget::new(100, HOUR));
    let error = fresh.claimable_positions(&wallet).await.expect_err("429");
    let Transience::Transient {
        retry_after: Some(delay),
    } = error.transience()
    else {
        panic!("429 must be transient with a delay: {error:?}");
    };
    assert!(
        matches!(error, BagsError::Status { status: 429, .. }),
        "{error:?}"
    );
    assert!(
        delay > HOUR - Duration::from_secs(60) && delay <= HOUR + Duration::from_secs(1),
        "{delay:?}"
    );
    assert_eq!(fresh.budget().remaining(), 0);
}

#[tokio::test]
async fn bags_local_budget_stops_before_the_service_does() {
    let bags = bags_with(|options| options.rate_limit_per_hour = 3).await;
    let client = bags.client_with(KEY, SlidingBudget::new(3, HOUR));
    let wallet = Keypair::new().pubkey();
    for _ in 0..3 {
        client
            .claimable_positions(&wallet)
            .await
            .expect("within budget");
    }
    let error = client
        .claimable_positions(&wallet)
        .await
        .expect_err("budget spent");
    let BagsError::BudgetExhausted { retry_after } = error else {
        panic!("expected BudgetExhausted, got {error:?}");
    };
    assert!(
        retry_after > Duration::ZERO && retry_after <= HOUR,
        "{retry_after:?}"
    );
    assert_eq!(
        error_transience(retry_after),
        Transience::Transient {
            retry_after: Some(retry_after)
        }
    );
    // The fake saw exactly the three, and never had to refuse one.
    assert_eq!(bags.requests_seen(), 3);
    let usage = bags.fake.rate_limit_usage();
    assert_eq!((usage.used, usage.remaining), (3, 0));
}

fn error_transience(retry_after: Duration) -> Transience {
    BagsError::BudgetExhausted { retry_after }.transience()
}

#[tokio::test]
async fn bags_budget_follows_what_the_service_says_remains() {
    let bags = bags_with(|options| options.rate_limit_per_hour = 10).await;
    // Another client of the same Bags user spends 4 of the shared 10.
    let other = bags.client_with(OTHER_KEY, SlidingBudget::new(10, HOUR));
    let wallet = Keypair::new().pubkey();
    for _ in 0..4 {
        other.claimable_positions(&wallet).await.expect("other");
    }
    let client = bags.client_with(KEY, SlidingBudget::new(10, HOUR));
    assert_eq!(client.budget().remaining(), 10);
    client.claimable_positions(&wallet).await.expect("ours");
    // Locally 9 would remain; the service says 5, and it wins.
    assert_eq!(client.budget().remaining(), 5);
}

#[tokio::test]
async fn bags_transport_failures_are_transient() {
    let bags = bags().await;
    bags.faults.add_rule(FaultRule {
        fake: "bags".to_owned(),
        route: None,
        latency: None,
        mode: Some(FaultMode::Script {
            steps: vec![
                Some(Fault::Hang),
                Some(Fault::ServerError { status: 503 }),
                Some(Fault::MalformedJson),
            ],
        }),
    });
    let client = BagsClient::new(
        bags.base_url.clone(),
        Secret::new(KEY),
        Duration::from_millis(300),
        SlidingBudget::new(1_000, HOUR),
    );
    let wallet = Keypair::new().pubkey();
    let hang = client.claimable_positions(&wallet).await.expect_err("hang");
    assert!(matches!(hang, BagsError::Timeout), "{hang:?}");
    assert_eq!(
        hang.transience(),
        Transience::Transient { retry_after: None }
    );
    let unavailable = client.claimable_positions(&wallet).await.expect_err("503");
    assert!(
        matches!(unavailable, BagsError::Status { status: 503, .. }),
        "{unavailable:?}"
    );
    assert_eq!(
        unavailable.transience(),
        Transience::Transient { retry_after: None }
    );
    let malformed = client
        .claimable_positions(&wallet)
        .await
        .expect_err("bad json");
    assert!(matches!(malformed, BagsError::Decode(_)), "{malformed:?}");
    assert_eq!(malformed.transience(), Transience::Permanent);
    client
        .claimable_positions(&wallet)
        .await
        .expect("normal again");

    // Nothing listening: a connect error, transient, without the key.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed = listener.local_addr().expect("address");
    drop(listener);
    let nowhere = BagsClient::new(
        format!("http://{closed}/api/v1"),
        Secret::new(KEY),
        TIMEOUT,
        SlidingBudget::new(1_000, HOUR),
    );
    let error = nowhere
        .claimable_positions(&wallet)
        .await
        .expect_err("refused");
    assert!(matches!(error, BagsError::Connect(_)), "{error:?}");
    assert_eq!(
        error.transience(),
        Transience::Transient { retry_after: None }
    );
    assert!(!format!("{error} {error:?}").contains(KEY));
}

// ---------------------------------------------------------------------------------------------
// Helius

struct Helius {
    ledger: Ledger,
    rpc: RpcFake,
    faults: Faults,
    /// `http://…/?api-key=…`, as `HELIUS_RPC_URL` gives it.
    url: String,
    api_key: String,
    _server: JoinHandle<()>,
}

async fn helius() -> Helius {
    let ledger = ledger();
    let faults = Faults::new();
    let rpc = RpcFake::new(ledger.clone(), faults.clone());
    let (address, server) =
        serve_on_loopback(faults.wrap("helius", ErrorStyle::JsonRpc, rpc.router("helius")))
            .await
            .expect("serve helius");
    let api_key = format!("helius-key-{}", Pubkey::new_unique());
    Helius {
        ledger,
        rpc,
        faults,
        url: format!("http://{address}/?api-key={api_key}"),
        api_key,
        _server: server,
    }
}

impl Helius {
    fn client(&self) -> HeliusClient {
        HeliusClient::new(
            Secret::new(self.url.clone()),
            TIMEOUT,
            RateLimiter::per_second(200),
        )
    }

    fn pages_requested(&self) -> u64 {
        self.faults
            .request_counts()
            .get("helius")
            .and_then(|routes| routes.get("getTokenAccounts"))
            .copied()
            .unwrap_or(0)
    }
}

/// The snapshot's order: amount descending, then the wallet's base58 text ascending.
fn expected_holders(totals: &HashMap<Pubkey, u64>, min_holding: u64) -> Vec<Holder> {
    let mut holders: Vec<Holder> = totals
        .iter()
        .filter(|(_, amount)| **amount >= min_holding)
        .map(|(wallet, amount)| Holder {
            wallet: *wallet,
            amount: *amount,
        })
        .collect();
    holders.sort_by_cached_key(|holder| (Reverse(holder.amount), holder.wallet.to_string()));
    holders
}

/// THE SHOW TEST: 25,000 holders over ~29 DAS pages aggregate exactly.
#[tokio::test]
async fn helius_snapshot_of_25000_holders_aggregates_exactly() {
    const HOLDERS: usize = 25_000;
    let helius = helius().await;
    let ledger = &helius.ledger;
    let mint = Pubkey::new_unique();
    ledger.create_mint(&mint, 6);
    // Token account addresses need not be ATAs; unique ones are cheap.
    let seed = |owner: &Pubkey, amount: u64| {
        ledger.mint_to(&Pubkey::new_unique(), &mint, owner, amount);
        amount
    };

    // Expected per-owner sums of the qualifying holders, computed independently of the client.
    let mut expected: HashMap<Pubkey, u64> = HashMap::with_capacity(HOLDERS);
    let mut nonzero_accounts: u64 = 0;
    for index in 0..HOLDERS {
        let wallet = Keypair::new().pubkey();
        let index = index as u64;
        // Amounts repeat (ties) and span small to large.
        let mut total = seed(&wallet, 1 + (index * 7_919) % 100_000);
        nonzero_accounts += 1;
        if index.is_multiple_of(10) {
            total += seed(&wallet, 1_000 + index);
            nonzero_accounts += 1;
        }
        if index.is_multiple_of(25) {
            total += seed(&wallet, 3 * index + 1);
            nonzero_accounts += 1;
        }
        if index % 50 == 7 {
            // An emptied extra account: DAS leaves it out, the sum does not change.
            seed(&wallet, 0);
        }
        expected.insert(wallet, total);
    }
    // Wallets holding nothing at all: not holders.
    let empty: Vec<Pubkey> = (0..200).map(|_| Keypair::new().pubkey()).collect();
    for wallet in &empty {
        seed(wallet, 0);
    }
    // PDA owners (pool vaults, bonding curves) with large balances, some with two accounts.
    let program = Pubkey::new_unique();
    let pdas: Vec<Pubkey> = (0u8..12)
        .map(|index| Pubkey::find_program_address(&[b"pool", &[index]], &program).0)
        .collect();
    for (index, pda) in pdas.iter().enumerate() {
        seed(pda, 500_000_000_000 + index as u64);
        nonzero_accounts += 1;
        if index % 3 == 0 {
            seed(pda, 1);
            nonzero_accounts += 1;
        }
    }
    // The burn address and an excluded on-curve wallet (the strategy's treasury), both large.
    seed(&INCINERATOR, 900_000_000_000);
    let treasury = Keypair::new().pubkey();
    seed(&treasury, 700_000_000_000);
    seed(&treasury, 5);
    nonzero_accounts += 3;

    let filters = HolderFilters {
        excluded_wallets: HashSet::from([treasury]),
        min_holding: 0,
    };
    let client = helius.client();
    let snapshot = client
        .holder_snapshot(&mint, &filters)
        .await
        .expect("snapshot");

    // Exactly the expected holders, amounts and order: every holder once, nothing excluded.
    assert_eq!(snapshot.holders.len(), HOLDERS);
    let holders_expected = expected_holders(&expected, 0);
    if snapshot.holders != holders_expected {
        let first_difference = snapshot
            .holders
            .iter()
            .zip(&holders_expected)
            .position(|(got, want)| got != want);
        panic!("holders differ, first at {first_difference:?}");
    }
    let wallets: HashSet<Pubkey> = snapshot
        .holders
        .iter()
        .map(|holder| holder.wallet)
        .collect();
    assert_eq!(wallets.len(), HOLDERS, "every holder once");
    for excluded in pdas.iter().chain([&INCINERATOR, &treasury]).chain(&empty) {
        assert!(
            !wallets.contains(excluded),
            "{excluded} must not be a holder"
        );
    }
    assert_eq!(
        snapshot.excluded,
        ExclusionCounts {
            zero_balance: 0,
            off_curve: 12,
            protocol_or_listed: 2,
            below_minimum: 0,
        }
    );
    assert_eq!(snapshot.token_accounts, nonzero_accounts);
    assert!(snapshot.pages >= 26, "pages: {}", snapshot.pages);
    assert!(u64::from(snapshot.pages) >= nonzero_accounts.div_ceil(1_000));
    assert_eq!(helius.pages_requested(), u64::from(snapshot.pages));

    // With a minimum holding, applied to the aggregated balance.
    let min_holding = 60_000;
    let with_minimum = client
        .holder_snapshot(
            &mint,
            &HolderFilters {
                min_holding,
                ..filters.clone()
            },
        )
        .await
        .expect("snapshot with a minimum");
    let holders_expected = expected_holders(&expected, min_holding);
    assert!(holders_expected.len() > 1_000 && holders_expected.len() < HOLDERS);
    assert!(
        with_minimum.holders == holders_expected,
        "holders with a minimum differ"
    );
    assert_eq!(
        with_minimum.excluded.below_minimum,
        (HOLDERS - holders_expected.len()) as u64
    );
    // Some wallet qualifies only through its second account: the minimum is on the sum.
    let aggregated_only = expected.iter().any(|(wallet, total)| {
        *total >= min_holding
            && helius
                .rpc
                .ledger()
                .token_accounts_by_owner(wallet, Some(&mint))
                .iter()
                .all(|account| account.amount < min_holding)
    });
    assert!(aggregated_only, "the fixture must exercise aggregation");
}

#[tokio::test]
async fn helius_errors_are_classified_and_never_show_the_key() {
    let helius = helius().await;
    let mint = Pubkey::new_unique();
    for _ in 0..1_500 {
        helius
            .ledger
            .mint_to(&Pubkey::new_unique(), &mint, &Keypair::new().pubkey(), 5);
    }
    // The second page is rate limited.
    helius.faults.add_rule(FaultRule {
        fake: "helius".to_owned(),
        route: Some("getTokenAccounts".to_owned()),
        latency: None,
        mode: Some(FaultMode::Script {
            steps: vec![
                None,
                Some(Fault::RateLimited {
                    retry_after_secs: 3,
                }),
            ],
        }),
    });
    let client = helius.client();
    let error = client
        .holder_snapshot(&mint, &HolderFilters::default())
        .await
        .expect_err("429");
    assert!(
        matches!(error, HeliusError::Status { status: 429, .. }),
        "{error:?}"
    );
    assert_eq!(
        error.transience(),
        Transience::Transient {
            retry_after: Some(Duration::from_secs(3))
        }
    );
    // A retry of the whole snapshot succeeds (nothing partial is kept).
    let snapshot = client
        .holder_snapshot(&mint, &HolderFilters::default())
        .await
        .expect("retry");
    assert_eq!(snapshot.holders.len(), 1_500);
    assert_eq!(snapshot.pages, 3);

    // A 4xx: permanent.
    helius.faults.add_rule(FaultRule {
        fake: "helius".to_owned(),
        route: Some("getPriorityFeeEstimate".to_owned()),
        latency: None,
        mode: Some(FaultMode::Script {
            steps: vec![Some(Fault::ServerError { status: 401 })],
        }),
    });
    let error = client
        .priority_fee_estimate(&[mint], PriorityLevel::Medium)
        .await
        .expect_err("401");
    assert!(
        matches!(error, HeliusError::Status { status: 401, .. }),
        "{error:?}"
    );
    assert_eq!(error.transience(), Transience::Permanent);

    // Nothing listening: transient, and neither the URL nor the key in any rendering.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed = listener.local_addr().expect("address");
    drop(listener);
    let nowhere = HeliusClient::new(
        Secret::new(format!("http://{closed}/?api-key={}", helius.api_key)),
        TIMEOUT,
        RateLimiter::per_second(10),
    );
    let error = nowhere
        .holder_snapshot(&mint, &HolderFilters::default())
        .await
        .expect_err("refused");
    assert!(matches!(error, HeliusError::Connect(_)), "{error:?}");
    assert_eq!(
        error.transience(),
        Transience::Transient { retry_after: None }
    );
    let shown = format!("{error} {error:?} {nowhere:?} {client:?}");
    assert!(!shown.contains(&helius.api_key), "{shown}");
    assert!(!shown.contains("api-key"), "{shown}");
}

#[tokio::test]
async fn helius_priority_fee_estimate() {
    let helius = helius().await;
    helius.rpc.set_priority_fee_levels(PriorityFeeLevels {
        min: 0.0,
        low: 1_000.0,
        medium: 12_345.4,
        high: 50_000.0,
        very_high: 250_000.0,
        unsafe_max: 1_000_000.0,
    });
    let client = helius.client();
    let keys = [Pubkey::new_unique(), WRAPPED_SOL_MINT];
    assert_eq!(
        client
            .priority_fee_estimate(&keys, PriorityLevel::Medium)
            .await
            .expect("medium"),
        12_346,
        "rounded up"
    );
    assert_eq!(
        client
            .priority_fee_estimate(&keys, PriorityLevel::VeryHigh)
            .await
            .expect("very high"),
        250_000
    );
    assert_eq!(
        client
            .priority_fee_estimate(&keys, PriorityLevel::Min)
            .await
            .expect("min"),
        0
    );
}
