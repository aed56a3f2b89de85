//! Contract tests of the Bags.fm fake over real loopback HTTP: envelopes, the API-key check, the
//! rate-limit headers and sliding budget, the documented shapes, and the show test — a claim and a
//! swap built by the fake, signed by the sandbox signer, landed on the ledger, with the balances
//! moving exactly as the transaction metadata says.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use creditbrain::sandbox::bags::{BagsFake, BagsOptions, FEE_SHARE_V2_PROGRAM_ID};
use creditbrain::sandbox::faults::{ErrorStyle, Fault, FaultMode, FaultRule, Faults};
use creditbrain::sandbox::ledger::{
    ASSOCIATED_TOKEN_PROGRAM_ID, COMPUTE_BUDGET_PROGRAM_ID, LAMPORTS_PER_SIGNATURE,
    LandedTransaction, Ledger, LedgerOptions, SYSTEM_PROGRAM_ID, SubmitError, TOKEN_PROGRAM_ID,
    USDC_DECIMALS, WRAPPED_SOL_MINT, associated_token_address,
};
use creditbrain::sandbox::rpc::RpcFake;
use creditbrain::sandbox::serve_on_loopback;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use solana_client::nonblocking::rpc_client::RpcClient;
use solana_client::rpc_config::RpcTransactionConfig;
use solana_message::VersionedMessage;
use solana_sdk::hash::Hash;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signature, Signer};
use solana_sdk::transaction::{Transaction, VersionedTransaction};
use tokio::task::JoinHandle;

use crate::support::eventually;

const KEY: &str = "bags-test-key-A";
const OTHER_KEY: &str = "bags-test-key-B";
const SOL: u64 = 1_000_000_000;
/// 150 USDC per SOL.
const RATE: u64 = 150_000_000;

struct Harness {
    ledger: Ledger,
    fake: BagsFake,
    base: String,
    http: reqwest::Client,
    usdc: Pubkey,
    _server: JoinHandle<()>,
}

fn ledger() -> Ledger {
    Ledger::new(LedgerOptions {
        slot_duration: Duration::from_millis(50),
        blockhash_validity_blocks: 150,
        finalization_depth: 32,
    })
}

async fn start_with(configure: impl FnOnce(&mut BagsOptions)) -> Harness {
    let ledger = ledger();
    let usdc = Keypair::new().pubkey();
    let mut options = BagsOptions {
        api_keys: vec![KEY.to_owned(), OTHER_KEY.to_owned()],
        usdc_mint: usdc,
        usdc_per_sol: RATE,
        max_swap_lamports: 100 * SOL,
        ..BagsOptions::default()
    };
    configure(&mut options);
    let fake = BagsFake::new(ledger.clone(), options);
    let (address, server) = serve_on_loopback(fake.router()).await.expect("serve");
    Harness {
        ledger,
        fake,
        base: format!("http://{address}"),
        http: reqwest::Client::new(),
        usdc,
        _server: server,
    }
}

async fn start() -> Harness {
    start_with(|_| {}).await
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Harness {
    async fn send(&self, request: reqwest::RequestBuilder, key: Option<&str>) -> Reply {
        let request = match key {
            Some(key) => request.header("x-api-key", key),
            None => request,
        };
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.json::<Value>().await.expect("JSON body");
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Reply {
        let request = self.http.get(format!("{}{path}", self.base)).query(query);
        self.send(request, Some(KEY)).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        let request = self.http.post(format!("{}{path}", self.base)).json(&body);
        self.send(request, Some(KEY)).await
    }

    /// The `response` of a 2xx, after checking the envelope.
    async fn ok_get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        ok(self.get(path, query).await)
    }

    async fn ok_post(&self, path: &str, body: Value) -> Value {
        ok(self.post(path, body).await)
    }

    async fn claim_txs(&self, claimer: &Pubkey, mint: &Pubkey) -> Vec<Value> {
        let response = self
            .ok_post(
                "/api/v1/token-launch/claim-txs/v3",
                json!({"feeClaimer": claimer.to_string(), "tokenMint": mint.to_string()}),
            )
            .await;
        response.as_array().expect("array of claim txs").clone()
    }

    async fn quote(&self, input: &Pubkey, output: &Pubkey, amount: u64, bps: u16) -> Value {
        self.ok_get(
            "/api/v1/trade/quote",
            &[
                ("inputMint", &input.to_string()),
                ("outputMint", &output.to_string()),
                ("amount", &amount.to_string()),
                ("slippageMode", "manual"),
                ("slippageBps", &bps.to_string()),
            ],
        )
        .await
    }

    /// Submits and waits until the ledger reports the transaction landed.
    async fn land(
        &self,
        transaction: VersionedTransaction,
        skip_preflight: bool,
    ) -> LandedTransaction {
        let signature = self
            .ledger
            .submit(transaction, skip_preflight, false)
            .expect("accepted");
        let ledger = self.ledger.clone();
        eventually(Duration::from_secs(10), || {
            let landed = ledger.landed(&signature);
            async move { landed }
        })
        .await
    }

    fn usdc_balance(&self, account: &Pubkey) -> u64 {
        self.ledger
            .token_account(account)
            .map_or(0, |account| account.amount)
    }
}

fn ok(reply: Reply) -> Value {
    assert_eq!(reply.status, StatusCode::OK, "body: {}", reply.body);
    assert_eq!(reply.body["success"], json!(true), "{}", reply.body);
    assert_eq!(
        reply.body.as_object().map(|body| body.len()),
        Some(2),
        "the envelope is exactly {{success, response}}: {}",
        reply.body
    );
    reply.body["response"].clone()
}

/// A Bags error envelope with this status, returning the message.
fn error(reply: &Reply, status: StatusCode) -> String {
    assert_eq!(reply.status, status, "body: {}", reply.body);
    assert_eq!(reply.body["success"], json!(false), "{}", reply.body);
    reply.body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("error message in {}", reply.body))
        .to_owned()
}

fn header_u64(headers: &HeaderMap, name: &str) -> u64 {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("{name} header missing"))
        .to_str()
        .expect("ascii header")
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not an integer"))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn string_amount(value: &Value) -> u64 {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{value} should be a string"))
        .parse()
        .unwrap_or_else(|_| panic!("{value} should be an integer string"))
}

fn decode_base58(value: &Value) -> Vec<u8> {
    bs58::decode(value.as_str().expect("base58 string"))
        .into_vec()
        .expect("valid base58")
}

fn parse_blockhash(value: &Value) -> Hash {
    value
        .as_str()
        .expect("string")
        .parse()
        .expect("base58 hash")
}

/// Fills `signer`'s slot of a partially signed transaction.
fn sign(transaction: &mut VersionedTransaction, signer: &Keypair) {
    let keys = transaction.message.static_account_keys();
    let required = usize::from(transaction.message.header().num_required_signatures);
    let slot = keys[..required]
        .iter()
        .position(|key| *key == signer.pubkey())
        .expect("the signer is a required signer");
    transaction.signatures[slot] = signer.sign_message(&transaction.message.serialize());
}

fn index_of(transaction: &VersionedTransaction, key: &Pubkey) -> usize {
    transaction
        .message
        .static_account_keys()
        .iter()
        .position(|candidate| candidate == key)
        .unwrap_or_else(|| panic!("{key} is not in the transaction"))
}

fn lamport_delta(landed: &LandedTransaction, key: &Pubkey) -> i128 {
    let index = index_of(&landed.transaction, key);
    i128::from(landed.post_balances[index]) - i128::from(landed.pre_balances[index])
}

fn token_delta(landed: &LandedTransaction, account: &Pubkey) -> i128 {
    let index = index_of(&landed.transaction, account);
    let amount = |balances: &[creditbrain::sandbox::ledger::TokenBalance]| {
        balances
            .iter()
            .find(|balance| usize::from(balance.account_index) == index)
            .map_or(0, |balance| i128::from(balance.amount))
    };
    amount(&landed.post_token_balances) - amount(&landed.pre_token_balances)
}

/// A funded "sandbox signer".
fn signer(harness: &Harness, lamports: u64) -> Keypair {
    let signer = Keypair::new();
    harness.ledger.airdrop(&signer.pubkey(), lamports);
    signer
}

#[tokio::test]
async fn ping_envelopes_and_the_api_key() {
    let harness = start().await;
    // `/ping` lives outside /api/v1 and needs no key.
    let ping = harness
        .send(harness.http.get(format!("{}/ping", harness.base)), None)
        .await;
    assert_eq!(ping.status, StatusCode::OK);
    assert_eq!(ping.body, json!({"message": "pong"}));

    let wallet = Pubkey::new_unique().to_string();
    let url = format!("{}/api/v1/token-launch/claimable-positions", harness.base);
    for key in [None, Some("not-a-key"), Some("")] {
        let reply = harness
            .send(harness.http.get(&url).query(&[("wallet", &wallet)]), key)
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "key {key:?}");
        assert_eq!(
            reply.body,
            json!({"success": false, "error": "Invalid API key"})
        );
        // Every /api/v1 answer carries the budget, unauthenticated ones too.
        assert_eq!(header_u64(&reply.headers, "x-ratelimit-limit"), 1_000);
    }
    assert_eq!(
        harness.fake.rate_limit_usage().used,
        0,
        "requests without a valid key do not spend the user's budget"
    );

    assert_eq!(
        harness
            .ok_get(
                "/api/v1/token-launch/claimable-positions",
                &[("wallet", &wallet)]
            )
            .await,
        json!([]),
        "no positions is an empty array"
    );
    let invalid = harness
        .get(
            "/api/v1/token-launch/claimable-positions",
            &[("wallet", "not-base58!")],
        )
        .await;
    assert!(error(&invalid, StatusCode::BAD_REQUEST).starts_with("Invalid wallet"));
    let missing = harness
        .get("/api/v1/token-launch/claimable-positions", &[])
        .await;
    assert_eq!(
        error(&missing, StatusCode::BAD_REQUEST),
        "wallet is required"
    );

    let unknown = harness.get("/api/v1/no/such/route", &[]).await;
    error(&unknown, StatusCode::NOT_FOUND);
    let malformed = harness
        .send(
            harness
                .http
                .post(format!("{}/api/v1/token-launch/claim-txs/v3", harness.base))
                .header("content-type", "application/json")
                .body("{not json"),
            Some(KEY),
        )
        .await;
    assert!(error(&malformed, StatusCode::BAD_REQUEST).starts_with("Invalid JSON body"));
}

#[tokio::test]
async fn rate_limit_headers_count_down_then_429_with_the_documented_body() {
    let harness = start_with(|options| options.rate_limit_per_hour = 3).await;
    let wallet = Pubkey::new_unique().to_string();
    let path = "/api/v1/token-launch/claimable-positions";
    let before = unix_now();
    let mut resets = Vec::new();
    for expected_remaining in [2, 1, 0] {
        let reply = harness.get(path, &[("wallet", &wallet)]).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(header_u64(&reply.headers, "x-ratelimit-limit"), 3);
        assert_eq!(
            header_u64(&reply.headers, "x-ratelimit-remaining"),
            expected_remaining
        );
        resets.push(header_u64(&reply.headers, "x-ratelimit-reset"));
    }
    // The window slides from the oldest request: an hour after the first one.
    assert!(
        resets
            .iter()
            .all(|reset| *reset >= before + 3_600 && *reset <= unix_now() + 3_601)
    );

    // The budget is the user's, shared by all of the user's keys.
    let url = format!("{}{path}", harness.base);
    let limited = harness
        .send(
            harness.http.get(&url).query(&[("wallet", &wallet)]),
            Some(OTHER_KEY),
        )
        .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    let reset_time = limited.body["resetTime"].as_u64().expect("resetTime");
    assert_eq!(
        limited.body,
        json!({
            "success": false,
            "error": "Rate limit exceeded",
            "limit": 3,
            "remaining": 0,
            "resetTime": reset_time,
        })
    );
    assert_eq!(reset_time, resets[0]);
    assert_eq!(header_u64(&limited.headers, "x-ratelimit-remaining"), 0);
    assert_eq!(
        header_u64(&limited.headers, "x-ratelimit-reset"),
        reset_time
    );
    // Other routes share the budget; /ping is outside it.
    let quote = harness.get("/api/v1/trade/quote", &[]).await;
    assert_eq!(quote.status, StatusCode::TOO_MANY_REQUESTS);
    let ping = harness
        .send(harness.http.get(format!("{}/ping", harness.base)), None)
        .await;
    assert_eq!(ping.status, StatusCode::OK);

    let usage = harness.fake.rate_limit_usage();
    assert_eq!((usage.limit, usage.used, usage.remaining), (3, 3, 0));
    assert_eq!(usage.per_key[KEY], 3);
    assert_eq!(
        usage.per_key[OTHER_KEY], 0,
        "refused requests are not counted"
    );
}

#[tokio::test]
async fn the_window_slides() {
    let window = Duration::from_millis(1_500);
    let harness = start_with(|options| {
        options.rate_limit_per_hour = 2;
        options.rate_limit_window = window;
    })
    .await;
    let wallet = Pubkey::new_unique().to_string();
    let path = "/api/v1/token-launch/claimable-positions";
    let first = Instant::now();
    assert_eq!(
        harness.get(path, &[("wallet", &wallet)]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        harness.get(path, &[("wallet", &wallet)]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        harness.get(path, &[("wallet", &wallet)]).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Polls until admitted again: that must not happen before the first request has left.
    let readmitted = eventually(Duration::from_secs(10), || async {
        let reply = harness.get(path, &[("wallet", &wallet)]).await;
        (reply.status == StatusCode::OK).then(Instant::now)
    })
    .await;
    assert!(readmitted.duration_since(first) >= window);
}

#[tokio::test]
async fn positions_have_the_documented_shape_and_read_the_ledger() {
    let harness = start().await;
    let owner = Pubkey::new_unique();
    let (mint_a, mint_b) = (Pubkey::new_unique(), Pubkey::new_unique());
    let vault_a = harness.fake.add_position(&owner, &mint_a, SOL);
    let vault_b = harness.fake.add_position(&owner, &mint_b, 250_000_000);
    assert_eq!(
        harness.fake.add_position(&owner, &mint_a, 500_000_000),
        vault_a,
        "more fees on an existing position go to the same vault"
    );
    assert_ne!(vault_a, vault_b);
    assert_eq!(harness.ledger.lamports(&vault_a), 1_500_000_000);

    let positions = harness
        .ok_get(
            "/api/v1/token-launch/claimable-positions",
            &[("wallet", &owner.to_string())],
        )
        .await;
    let positions = positions.as_array().expect("array");
    assert_eq!(positions.len(), 2);
    let position = positions
        .iter()
        .find(|position| position["baseMint"] == json!(mint_a.to_string()))
        .expect("position of mint A");
    assert_eq!(position["isCustomFeeVault"], json!(true));
    assert_eq!(position["isMigrated"], json!(false));
    assert_eq!(
        position["totalClaimableLamportsUserShare"],
        json!(1_500_000_000u64),
        "a JSON number of lamports"
    );
    assert_eq!(
        position["virtualPoolClaimableLamportsUserShare"],
        json!(1_500_000_000u64)
    );
    assert_eq!(position["claimableDisplayAmount"], json!(1.5));
    assert_eq!(
        position["programId"],
        json!(FEE_SHARE_V2_PROGRAM_ID.to_string())
    );
    assert_eq!(position["quoteMint"], json!(WRAPPED_SOL_MINT.to_string()));
    assert_eq!(position["user"], json!(owner.to_string()));
    for field in ["virtualPool", "virtualPoolAddress"] {
        let address = position[field].as_str().expect(field);
        address.parse::<Pubkey>().expect("a base58 address");
    }

    let seeded = harness.fake.positions(&owner);
    assert_eq!(seeded.len(), 2);
    assert!(seeded.iter().all(|position| position.claimed_lamports == 0));
}

#[tokio::test]
async fn claim_transactions_are_partially_signed_legacy_transactions() {
    let harness = start().await;
    let claimer = Pubkey::new_unique();
    let mint = Pubkey::new_unique();
    let vault = harness.fake.add_position(&claimer, &mint, 2 * SOL);

    let claims = harness.claim_txs(&claimer, &mint).await;
    assert_eq!(claims.len(), 1);
    let claim = &claims[0];
    let bytes = decode_base58(&claim["tx"]);
    let transaction: Transaction = bincode::deserialize(&bytes).expect("legacy wire format");
    let message = &transaction.message;
    assert_eq!(message.account_keys[0], claimer, "the claimer pays the fee");
    assert_eq!(message.header.num_required_signatures, 2);
    assert_eq!(message.account_keys[1], vault);
    let blockhash = parse_blockhash(&claim["blockhash"]["blockhash"]);
    assert_eq!(message.recent_blockhash, blockhash);
    assert!(harness.ledger.is_blockhash_valid(&blockhash));
    let last_valid = claim["blockhash"]["lastValidBlockHeight"]
        .as_u64()
        .expect("lastValidBlockHeight");
    assert!(last_valid > harness.ledger.block_height());
    assert_eq!(
        transaction.signatures[0],
        Signature::default(),
        "the claimer's slot is left empty"
    );
    assert_eq!(
        transaction.verify_with_results(),
        vec![false, true],
        "the vault's signature is valid"
    );
    assert_eq!(message.instructions.len(), 1);
    let instruction = &message.instructions[0];
    assert_eq!(
        message.account_keys[usize::from(instruction.program_id_index)],
        SYSTEM_PROGRAM_ID
    );
    // System `Transfer` (2) of the vault's whole balance.
    let mut expected = vec![2, 0, 0, 0];
    expected.extend_from_slice(&(2 * SOL).to_le_bytes());
    assert_eq!(instruction.data, expected);

    // A wallet without a position in a known token: no transactions.
    assert!(
        harness
            .claim_txs(&Pubkey::new_unique(), &mint)
            .await
            .is_empty()
    );

    let path = "/api/v1/token-launch/claim-txs/v3";
    let unknown_mint = harness
        .post(
            path,
            json!({"feeClaimer": claimer.to_string(), "tokenMint": Pubkey::new_unique().to_string()}),
        )
        .await;
    assert!(error(&unknown_mint, StatusCode::BAD_REQUEST).starts_with("Invalid tokenMint"));
    let bad_claimer = harness
        .post(
            path,
            json!({"feeClaimer": "xyz", "tokenMint": mint.to_string()}),
        )
        .await;
    assert!(error(&bad_claimer, StatusCode::BAD_REQUEST).starts_with("Invalid feeClaimer"));
    let missing = harness
        .post(path, json!({"feeClaimer": claimer.to_string()}))
        .await;
    assert_eq!(
        error(&missing, StatusCode::BAD_REQUEST),
        "tokenMint is required"
    );
}

#[tokio::test]
async fn quotes_have_the_documented_fields() {
    let harness = start().await;
    harness.fake.fund_pool(10_000 * 1_000_000);
    let quote = harness
        .quote(&WRAPPED_SOL_MINT, &harness.usdc, 123_456_789, 100)
        .await;
    // 0.123456789 SOL × 150 = 18.518518 USDC; 1% slippage.
    assert_eq!(quote["inAmount"], json!("123456789"));
    assert_eq!(quote["outAmount"], json!("18518518"));
    assert_eq!(quote["minOutAmount"], json!("18333332"));
    assert_eq!(quote["otherAmountThreshold"], json!("18333332"));
    assert_eq!(quote["slippageBps"], json!(100));
    assert_eq!(quote["inputMint"], json!(WRAPPED_SOL_MINT.to_string()));
    assert_eq!(quote["outputMint"], json!(harness.usdc.to_string()));
    assert!(quote["requestId"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(quote["contextSlot"].is_u64());
    assert!(quote["priceImpactPct"].is_string());
    assert!(quote["platformFee"].is_null());
    assert!(quote["outTransferFee"].is_null());
    assert!(quote["simulatedComputeUnits"].is_u64());
    let route = &quote["routePlan"][0];
    for field in ["venue", "inputMint", "outputMint", "marketKey", "data"] {
        assert!(route[field].is_string(), "routePlan[0].{field}: {route}");
    }
    assert_eq!(route["inAmount"], json!("123456789"));
    assert_eq!(route["outAmount"], json!("18518518"));
    assert_eq!(route["inputMintDecimals"], json!(9));
    assert_eq!(route["outputMintDecimals"], json!(6));

    let auto = harness
        .ok_get(
            "/api/v1/trade/quote",
            &[
                ("inputMint", &WRAPPED_SOL_MINT.to_string()),
                ("outputMint", &harness.usdc.to_string()),
                ("amount", "1000000000"),
            ],
        )
        .await;
    assert_eq!(
        auto["slippageBps"],
        json!(50),
        "auto picks and reports a slippage"
    );
    assert_eq!(auto["minOutAmount"], json!("149250000"));

    // USDC → SOL needs SOL in the pool.
    let reverse = [
        ("inputMint", harness.usdc.to_string()),
        ("outputMint", WRAPPED_SOL_MINT.to_string()),
        ("amount", "1500000".to_owned()),
    ];
    let reverse: Vec<(&str, &str)> = reverse.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dry = harness.get("/api/v1/trade/quote", &reverse).await;
    assert!(error(&dry, StatusCode::BAD_REQUEST).contains("Insufficient liquidity"));
    harness.fake.fund_pool_lamports(SOL);
    let reverse = harness.ok_get("/api/v1/trade/quote", &reverse).await;
    assert_eq!(reverse["outAmount"], json!("10000000"));
}

#[tokio::test]
async fn quote_validation_and_insufficient_liquidity() {
    let harness = start().await;
    harness.fake.fund_pool(1_000_000 * 1_000_000);
    let sol = WRAPPED_SOL_MINT.to_string();
    let usdc = harness.usdc.to_string();
    let quote = |amount: &'static str, extra: &'static [(&'static str, &'static str)]| {
        let mut query = vec![
            ("inputMint".to_owned(), sol.clone()),
            ("outputMint".to_owned(), usdc.clone()),
            ("amount".to_owned(), amount.to_owned()),
        ];
        query.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        harness
            .http
            .get(format!("{}/api/v1/trade/quote", harness.base))
            .query(&query)
    };
    // Above the pool's depth (100 SOL in these tests).
    let deep = harness.send(quote("100000000001", &[]), Some(KEY)).await;
    assert!(
        error(&deep, StatusCode::BAD_REQUEST)
            .to_lowercase()
            .contains("insufficient liquidity")
    );
    let at_depth = harness.send(quote("100000000000", &[]), Some(KEY)).await;
    assert_eq!(at_depth.status, StatusCode::OK);

    let manual = harness
        .send(quote("1000", &[("slippageMode", "manual")]), Some(KEY))
        .await;
    assert_eq!(
        error(&manual, StatusCode::BAD_REQUEST),
        "slippageBps is required when slippageMode is manual"
    );
    const BAD_SLIPPAGE: [&[(&str, &str)]; 3] = [
        &[("slippageMode", "manual"), ("slippageBps", "10001")],
        &[("slippageMode", "manual"), ("slippageBps", "-1")],
        &[("slippageMode", "manual"), ("slippageBps", "abc")],
    ];
    for extra in BAD_SLIPPAGE {
        let reply = harness.send(quote("1000000", extra), Some(KEY)).await;
        assert!(
            error(&reply, StatusCode::BAD_REQUEST).starts_with("slippageBps"),
            "{extra:?}"
        );
    }
    let zero = harness.send(quote("0", &[]), Some(KEY)).await;
    error(&zero, StatusCode::BAD_REQUEST);
    let text = harness.send(quote("1.5", &[]), Some(KEY)).await;
    assert!(error(&text, StatusCode::BAD_REQUEST).starts_with("amount"));
    let pair = harness
        .get(
            "/api/v1/trade/quote",
            &[
                ("inputMint", &Pubkey::new_unique().to_string()),
                ("outputMint", &usdc),
                ("amount", "1000"),
            ],
        )
        .await;
    assert!(error(&pair, StatusCode::BAD_REQUEST).starts_with("No route"));
}

#[tokio::test]
async fn swap_validates_the_user_and_the_echoed_quote() {
    let harness = start().await;
    harness.fake.fund_pool(1_000_000 * 1_000_000);
    let quote = harness
        .quote(&WRAPPED_SOL_MINT, &harness.usdc, SOL, 100)
        .await;
    let path = "/api/v1/trade/swap";
    let user = Pubkey::new_unique().to_string();

    // The old service sent '' for the user.
    let empty = harness
        .post(path, json!({"quoteResponse": quote, "userPublicKey": ""}))
        .await;
    assert_eq!(
        error(&empty, StatusCode::BAD_REQUEST),
        "userPublicKey is required"
    );
    let invalid = harness
        .post(
            path,
            json!({"quoteResponse": quote, "userPublicKey": "abc"}),
        )
        .await;
    assert!(error(&invalid, StatusCode::BAD_REQUEST).starts_with("Invalid userPublicKey"));
    let no_quote = harness.post(path, json!({"userPublicKey": user})).await;
    assert_eq!(
        error(&no_quote, StatusCode::BAD_REQUEST),
        "quoteResponse is required"
    );

    let mut inflated = quote.clone();
    inflated["outAmount"] = json!("999999999999");
    let inflated = harness
        .post(
            path,
            json!({"quoteResponse": inflated, "userPublicKey": user}),
        )
        .await;
    assert!(error(&inflated, StatusCode::BAD_REQUEST).contains("does not match"));
    let mut numeric = quote.clone();
    numeric["inAmount"] = json!(SOL);
    let numeric = harness
        .post(
            path,
            json!({"quoteResponse": numeric, "userPublicKey": user}),
        )
        .await;
    assert_eq!(
        error(&numeric, StatusCode::BAD_REQUEST),
        "quoteResponse.inAmount must be a string"
    );

    let swap = harness
        .ok_post(path, json!({"quoteResponse": quote, "userPublicKey": user}))
        .await;
    for field in [
        "swapTransaction",
        "computeUnitLimit",
        "lastValidBlockHeight",
        "prioritizationFeeLamports",
    ] {
        assert!(!swap[field].is_null(), "{field} missing: {swap}");
    }
    let transaction: VersionedTransaction =
        bincode::deserialize(&decode_base58(&swap["swapTransaction"])).expect("wire format");
    assert!(matches!(transaction.message, VersionedMessage::V0(_)));
    assert!(
        transaction
            .message
            .address_table_lookups()
            .is_none_or(|l| l.is_empty())
    );
    assert_eq!(
        transaction.message.static_account_keys()[0].to_string(),
        user
    );
    assert_eq!(transaction.signatures[0], Signature::default());
    assert_eq!(transaction.verify_with_results(), vec![false, true]);
}

/// The show test: the sandbox signer claims its fees and swaps them to USDC with the fake's own
/// transactions, and the ledger moves exactly as the landed transactions' metadata says.
#[tokio::test]
async fn claim_then_swap_moves_the_ledger_exactly_as_the_metadata_says() {
    let harness = start().await;
    let pool_usdc = 50_000 * 1_000_000;
    harness.fake.fund_pool(pool_usdc);
    let signer = signer(&harness, 10_000_000);
    let mint = Pubkey::new_unique();
    let fees = 3 * SOL + 250_000_000;
    let vault = harness.fake.add_position(&signer.pubkey(), &mint, fees);

    // Claim.
    let claims = harness.claim_txs(&signer.pubkey(), &mint).await;
    let claim: Transaction =
        bincode::deserialize(&decode_base58(&claims[0]["tx"])).expect("claim tx");
    let mut claim = VersionedTransaction::from(claim);
    sign(&mut claim, &signer);
    let signer_before = harness.ledger.lamports(&signer.pubkey());
    let landed = harness.land(claim, false).await;
    assert_eq!(landed.err, None, "logs: {:?}", landed.log_messages);
    assert_eq!(
        landed.fee,
        2 * LAMPORTS_PER_SIGNATURE,
        "two signatures, no priority fee"
    );
    let claimed = lamport_delta(&landed, &signer.pubkey());
    assert_eq!(claimed, i128::from(fees) - i128::from(landed.fee));
    assert_eq!(lamport_delta(&landed, &vault), -i128::from(fees));
    let signer_after_claim = harness.ledger.lamports(&signer.pubkey());
    assert_eq!(
        i128::from(signer_after_claim) - i128::from(signer_before),
        claimed
    );
    assert_eq!(harness.ledger.lamports(&vault), 0);
    let positions = harness
        .ok_get(
            "/api/v1/token-launch/claimable-positions",
            &[("wallet", &signer.pubkey().to_string())],
        )
        .await;
    assert_eq!(positions, json!([]), "claimed-out positions are not listed");
    let position = &harness.fake.positions(&signer.pubkey())[0];
    assert_eq!(
        (position.claimable_lamports, position.claimed_lamports),
        (0, fees)
    );
    assert!(harness.claim_txs(&signer.pubkey(), &mint).await.is_empty());

    // Swap what was claimed, keeping a float for fees.
    let amount = fees - 50_000_000;
    let quote = harness
        .quote(&WRAPPED_SOL_MINT, &harness.usdc, amount, 100)
        .await;
    let out_amount = string_amount(&quote["outAmount"]);
    let min_out = string_amount(&quote["minOutAmount"]);
    let swap = harness
        .ok_post(
            "/api/v1/trade/swap",
            json!({"quoteResponse": quote, "userPublicKey": signer.pubkey().to_string()}),
        )
        .await;
    let mut transaction: VersionedTransaction =
        bincode::deserialize(&decode_base58(&swap["swapTransaction"])).expect("swap tx");
    assert_eq!(
        transaction.message.static_account_keys()[0],
        signer.pubkey()
    );
    assert!(
        harness
            .ledger
            .is_blockhash_valid(transaction.message.recent_blockhash())
    );

    // The instructions, as documented: compute budget, ATA, SOL in, USDC out.
    let keys = transaction.message.static_account_keys().to_vec();
    let programs: Vec<Pubkey> = transaction
        .message
        .instructions()
        .iter()
        .map(|instruction| keys[usize::from(instruction.program_id_index)])
        .collect();
    assert_eq!(
        programs,
        [
            COMPUTE_BUDGET_PROGRAM_ID,
            COMPUTE_BUDGET_PROGRAM_ID,
            ASSOCIATED_TOKEN_PROGRAM_ID,
            SYSTEM_PROGRAM_ID,
            TOKEN_PROGRAM_ID
        ]
    );
    let instructions = transaction.message.instructions();
    let unit_limit = u32::from_le_bytes(instructions[0].data[1..5].try_into().expect("u32"));
    let unit_price = u64::from_le_bytes(instructions[1].data[1..9].try_into().expect("u64"));
    assert_eq!(swap["computeUnitLimit"], json!(unit_limit));
    let priority_fee = (u128::from(unit_price) * u128::from(unit_limit)).div_ceil(1_000_000);
    assert_eq!(
        swap["prioritizationFeeLamports"],
        json!(priority_fee as u64)
    );
    let transfer_checked = &instructions[4].data;
    assert_eq!(transfer_checked[0], 12, "TransferChecked");
    let delivered = u64::from_le_bytes(transfer_checked[1..9].try_into().expect("u64"));
    assert_eq!(transfer_checked[9], USDC_DECIMALS);
    assert!(min_out <= delivered && delivered <= out_amount);

    sign(&mut transaction, &signer);
    let user_usdc = associated_token_address(&signer.pubkey(), &harness.usdc);
    let pool = harness.fake.pool_address();
    let pool_usdc_account = harness.fake.pool_usdc_account();
    let pool_lamports_before = harness.ledger.lamports(&pool);
    let landed = harness.land(transaction, false).await;
    assert_eq!(landed.err, None, "logs: {:?}", landed.log_messages);
    assert_eq!(
        u128::from(landed.fee),
        2 * u128::from(LAMPORTS_PER_SIGNATURE) + priority_fee,
        "base fee per signature plus the embedded priority fee"
    );
    let ata_rent = lamport_delta(&landed, &user_usdc);
    assert!(
        ata_rent > 0,
        "the user's USDC account was created and funded for rent"
    );
    assert_eq!(
        lamport_delta(&landed, &signer.pubkey()),
        -(i128::from(amount) + i128::from(landed.fee) + ata_rent)
    );
    assert_eq!(lamport_delta(&landed, &pool), i128::from(amount));
    assert_eq!(token_delta(&landed, &user_usdc), i128::from(delivered));
    assert_eq!(
        token_delta(&landed, &pool_usdc_account),
        -i128::from(delivered)
    );

    // And the ledger itself agrees with the metadata.
    let signer_now = harness.ledger.lamports(&signer.pubkey());
    assert_eq!(
        i128::from(signer_now) - i128::from(signer_after_claim),
        lamport_delta(&landed, &signer.pubkey())
    );
    assert_eq!(
        harness.ledger.lamports(&pool),
        pool_lamports_before + amount
    );
    assert_eq!(harness.usdc_balance(&user_usdc), delivered);
    assert_eq!(
        harness.usdc_balance(&pool_usdc_account),
        pool_usdc - delivered
    );
    let account = harness
        .ledger
        .token_account(&user_usdc)
        .expect("user USDC account");
    assert_eq!(
        (account.owner, account.mint),
        (signer.pubkey(), harness.usdc)
    );
}

#[tokio::test]
async fn a_second_claim_of_the_same_position_fails_on_chain_and_costs_only_its_fee() {
    let harness = start().await;
    let signer = signer(&harness, 10_000_000);
    let mint = Pubkey::new_unique();
    let fees = SOL;
    let vault = harness.fake.add_position(&signer.pubkey(), &mint, fees);

    let first = harness.claim_txs(&signer.pubkey(), &mint).await;
    // A later fetch, on a newer blockhash (the same blockhash would give the very same
    // transaction, which the chain deduplicates instead of failing).
    let first_blockhash = parse_blockhash(&first[0]["blockhash"]["blockhash"]);
    let ledger = harness.ledger.clone();
    eventually(Duration::from_secs(10), || {
        ledger.advance_slots(1);
        let fresh = ledger.latest_blockhash().0 != first_blockhash;
        async move { fresh.then_some(()) }
    })
    .await;
    let second = harness.claim_txs(&signer.pubkey(), &mint).await;
    assert_ne!(first[0]["tx"], second[0]["tx"]);
    let decode = |claim: &Value| {
        let transaction: Transaction =
            bincode::deserialize(&decode_base58(&claim["tx"])).expect("claim tx");
        let mut transaction = VersionedTransaction::from(transaction);
        sign(&mut transaction, &signer);
        transaction
    };
    let (first, second) = (decode(&first[0]), decode(&second[0]));

    let landed = harness.land(first, false).await;
    assert_eq!(landed.err, None);
    let after_first = harness.ledger.lamports(&signer.pubkey());

    // With preflight, the node refuses it and nothing is charged.
    match harness.ledger.submit(second.clone(), false, false) {
        Err(SubmitError::Preflight(_, simulation)) => {
            assert!(simulation.err.is_some());
        }
        other => panic!("expected a preflight failure, got {other:?}"),
    }
    assert_eq!(harness.ledger.lamports(&signer.pubkey()), after_first);

    // Sent as the Bags SDK sends (skipPreflight), it lands as failed: only the fee is charged.
    let failed = harness.land(second, true).await;
    let err = failed.err.clone().expect("the second claim fails on-chain");
    assert!(err.get("InstructionError").is_some(), "{err}");
    assert_eq!(err["InstructionError"][0], json!(0));
    assert_eq!(
        lamport_delta(&failed, &signer.pubkey()),
        -i128::from(failed.fee)
    );
    assert_eq!(lamport_delta(&failed, &vault), 0);
    assert_eq!(
        harness.ledger.lamports(&signer.pubkey()),
        after_first - failed.fee
    );
    assert_eq!(harness.ledger.lamports(&vault), 0);
}

#[tokio::test]
async fn partner_fee_stats_and_claim() {
    let harness = start().await;
    let partner = signer(&harness, 1_000_000);
    let partner_key = partner.pubkey().to_string();
    let stats_path = "/api/v1/fee-share/partner-config/stats";
    let claim_path = "/api/v1/fee-share/partner-config/claim-tx";

    let unknown = harness.get(stats_path, &[("partner", &partner_key)]).await;
    error(&unknown, StatusCode::NOT_FOUND);
    let invalid = harness.get(stats_path, &[("partner", "nope")]).await;
    assert!(error(&invalid, StatusCode::BAD_REQUEST).starts_with("Invalid partner"));

    harness
        .fake
        .set_partner_fees(&partner.pubkey(), 400_000_000);
    let stats = harness
        .ok_get(stats_path, &[("partner", &partner_key)])
        .await;
    assert_eq!(
        stats,
        json!({"claimedFees": "0", "unclaimedFees": "400000000"})
    );

    let response = harness
        .ok_post(claim_path, json!({"partnerWallet": partner_key}))
        .await;
    let transactions = response["transactions"].as_array().expect("transactions");
    assert_eq!(transactions.len(), 1);
    let entry = &transactions[0];
    assert!(entry["blockhash"]["lastValidBlockHeight"].is_u64());
    let mut transaction: VersionedTransaction =
        bincode::deserialize(&decode_base58(&entry["transaction"])).expect("wire format");
    assert_eq!(
        *transaction.message.recent_blockhash(),
        parse_blockhash(&entry["blockhash"]["blockhash"])
    );
    assert_eq!(
        transaction.message.static_account_keys()[0],
        partner.pubkey()
    );
    sign(&mut transaction, &partner);
    let landed = harness.land(transaction, false).await;
    assert_eq!(landed.err, None);
    assert_eq!(
        lamport_delta(&landed, &partner.pubkey()),
        400_000_000 - i128::from(landed.fee)
    );

    let stats = harness
        .ok_get(stats_path, &[("partner", &partner_key)])
        .await;
    assert_eq!(
        stats,
        json!({"claimedFees": "400000000", "unclaimedFees": "0"})
    );
    let empty = harness
        .ok_post(claim_path, json!({"partnerWallet": partner_key}))
        .await;
    assert_eq!(empty, json!({"transactions": []}));
    let missing = harness.post(claim_path, json!({})).await;
    assert_eq!(
        error(&missing, StatusCode::BAD_REQUEST),
        "partnerWallet is required"
    );
}

#[tokio::test]
async fn usdc_to_sol_swap_delivers_within_slippage() {
    // Deliver 0.3% under the quote: inside the 1% slippage, so the client must measure.
    let harness = start_with(|options| options.delivery_shortfall_bps = 30).await;
    harness.fake.fund_pool_lamports(10 * SOL);
    let signer = signer(&harness, 10_000_000);
    let user_usdc = associated_token_address(&signer.pubkey(), &harness.usdc);
    harness
        .ledger
        .mint_to(&user_usdc, &harness.usdc, &signer.pubkey(), 300_000_000);
    let quote = harness
        .quote(&harness.usdc, &WRAPPED_SOL_MINT, 300_000_000, 100)
        .await;
    // 300 USDC at 150 USDC/SOL.
    assert_eq!(quote["outAmount"], json!("2000000000"));
    assert_eq!(quote["minOutAmount"], json!("1980000000"));
    let swap = harness
        .ok_post(
            "/api/v1/trade/swap",
            json!({"quoteResponse": quote, "userPublicKey": signer.pubkey().to_string()}),
        )
        .await;
    let mut transaction: VersionedTransaction =
        bincode::deserialize(&decode_base58(&swap["swapTransaction"])).expect("swap tx");
    sign(&mut transaction, &signer);
    let pool = harness.fake.pool_address();
    let landed = harness.land(transaction, false).await;
    assert_eq!(landed.err, None, "logs: {:?}", landed.log_messages);
    let delivered = 2_000_000_000 - 6_000_000;
    assert_eq!(
        lamport_delta(&landed, &signer.pubkey()),
        i128::from(delivered) - i128::from(landed.fee)
    );
    assert_eq!(lamport_delta(&landed, &pool), -i128::from(delivered));
    assert_eq!(token_delta(&landed, &user_usdc), -300_000_000);
    assert_eq!(
        token_delta(&landed, &harness.fake.pool_usdc_account()),
        300_000_000
    );
    assert_eq!(harness.usdc_balance(&user_usdc), 0);
}

#[tokio::test]
async fn injected_faults_wrap_the_fake_as_scripted() {
    let harness = start().await;
    harness.fake.fund_pool(1_000 * 1_000_000);
    let faults = Faults::new();
    faults.add_rule(FaultRule {
        fake: "bags".into(),
        route: Some("GET /api/v1/trade/quote".into()),
        latency: None,
        mode: Some(FaultMode::Script {
            steps: vec![
                Some(Fault::RateLimited {
                    retry_after_secs: 7,
                }),
                None,
            ],
        }),
    });
    let router = faults.wrap("bags", ErrorStyle::Bags, harness.fake.router());
    let (address, _server) = serve_on_loopback(router).await.expect("serve");
    let url = format!("http://{address}/api/v1/trade/quote");
    let query = [
        ("inputMint", WRAPPED_SOL_MINT.to_string()),
        ("outputMint", harness.usdc.to_string()),
        ("amount", SOL.to_string()),
    ];
    let first = harness
        .send(harness.http.get(&url).query(&query), Some(KEY))
        .await;
    assert_eq!(
        error(&first, StatusCode::TOO_MANY_REQUESTS),
        "Rate limit exceeded"
    );
    assert_eq!(header_u64(&first.headers, "retry-after"), 7);
    let second = harness
        .send(harness.http.get(&url).query(&query), Some(KEY))
        .await;
    assert_eq!(ok(second)["outAmount"], json!("150000000"));
    let counts = faults.request_counts();
    assert_eq!(counts["bags"]["GET /api/v1/trade/quote"], 2);
}

/// The show test again, end to end over the wire: the real `solana-client` `RpcClient` sends the
/// Bags fake's claim and swap to the RPC fake, confirms them, and reads the metadata back with
/// `getTransaction`; the balances it reads move by exactly those amounts.
#[tokio::test]
async fn claim_then_swap_through_the_rpc_fake_with_the_real_rpc_client() {
    let harness = start().await;
    harness.fake.fund_pool(50_000 * 1_000_000);
    let rpc = RpcFake::new(harness.ledger.clone(), Faults::new());
    let (address, _rpc_server) = serve_on_loopback(rpc.router("rpc")).await.expect("serve");
    let client = RpcClient::new(format!("http://{address}"));
    let signer = signer(&harness, 10_000_000);
    let mint = Pubkey::new_unique();
    let fees = 2 * SOL;
    harness.fake.add_position(&signer.pubkey(), &mint, fees);

    // `encoding: base64` so that the transaction decodes back (inferred: the crate that names the
    // type is not a dependency of ours).
    let config = || RpcTransactionConfig {
        encoding: Some(serde_json::from_value(json!("base64")).expect("encoding")),
        commitment: None,
        max_supported_transaction_version: Some(0),
    };

    let claims = harness.claim_txs(&signer.pubkey(), &mint).await;
    let claim: Transaction =
        bincode::deserialize(&decode_base58(&claims[0]["tx"])).expect("claim tx");
    let mut claim = VersionedTransaction::from(claim);
    sign(&mut claim, &signer);
    let before = client.get_balance(&signer.pubkey()).await.expect("balance");
    let signature = client
        .send_and_confirm_transaction(&claim)
        .await
        .expect("claim confirmed");
    let fetched = client
        .get_transaction_with_config(&signature, config())
        .await
        .expect("getTransaction");
    let meta = fetched.transaction.meta.expect("meta");
    assert!(meta.err.is_none());
    let transaction = fetched.transaction.transaction.decode().expect("base64 tx");
    let payer = index_of(&transaction, &signer.pubkey());
    let claimed = i128::from(meta.post_balances[payer]) - i128::from(meta.pre_balances[payer]);
    assert_eq!(claimed, i128::from(fees) - i128::from(meta.fee));
    let after_claim = client.get_balance(&signer.pubkey()).await.expect("balance");
    assert_eq!(i128::from(after_claim) - i128::from(before), claimed);

    let amount = fees - 20_000_000;
    let quote = harness
        .quote(&WRAPPED_SOL_MINT, &harness.usdc, amount, 50)
        .await;
    let min_out = string_amount(&quote["minOutAmount"]);
    let swap = harness
        .ok_post(
            "/api/v1/trade/swap",
            json!({"quoteResponse": quote, "userPublicKey": signer.pubkey().to_string()}),
        )
        .await;
    let mut swap: VersionedTransaction =
        bincode::deserialize(&decode_base58(&swap["swapTransaction"])).expect("swap tx");
    sign(&mut swap, &signer);
    let signature = client
        .send_and_confirm_transaction(&swap)
        .await
        .expect("swap confirmed");
    let fetched = client
        .get_transaction_with_config(&signature, config())
        .await
        .expect("getTransaction");
    let meta = fetched.transaction.meta.expect("meta");
    assert!(meta.err.is_none());
    let transaction = fetched.transaction.transaction.decode().expect("base64 tx");
    let user_usdc = associated_token_address(&signer.pubkey(), &harness.usdc);
    let (payer, ata) = (
        index_of(&transaction, &signer.pubkey()),
        index_of(&transaction, &user_usdc),
    );
    let sol_delta = i128::from(meta.post_balances[payer]) - i128::from(meta.pre_balances[payer]);
    let rent = i128::from(meta.post_balances[ata]) - i128::from(meta.pre_balances[ata]);
    assert_eq!(
        sol_delta,
        -(i128::from(amount) + i128::from(meta.fee) + rent)
    );
    // The token balances as the wire carries them (the crate naming their type is not ours).
    let wire = serde_json::to_value(&meta).expect("meta as JSON");
    let token_amount = |list: &str| -> u64 {
        wire[list]
            .as_array()
            .expect(list)
            .iter()
            .find(|balance| balance["accountIndex"].as_u64() == Some(ata as u64))
            .map_or(0, |balance| {
                string_amount(&balance["uiTokenAmount"]["amount"])
            })
    };
    let received = token_amount("postTokenBalances") - token_amount("preTokenBalances");
    assert!(received >= min_out);
    let after_swap = client.get_balance(&signer.pubkey()).await.expect("balance");
    assert_eq!(i128::from(after_swap) - i128::from(after_claim), sol_delta);
    let balance = client
        .get_token_account_balance(&user_usdc)
        .await
        .expect("token balance");
    assert_eq!(balance.amount, received.to_string());
    assert_eq!(balance.decimals, USDC_DECIMALS);
}
