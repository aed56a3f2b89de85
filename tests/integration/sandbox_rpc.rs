//! Contract tests of the Solana JSON-RPC / Helius fake over real loopback HTTP: the real
//! `solana-client` `RpcClient` fetches blockhashes, sends and confirms transactions signed by
//! `solana-sdk` keypairs and reads their metadata; wrongly signed, expired and unpayable
//! transactions are refused as a node refuses them; DAS pagination, priority fees, the JSON-RPC
//! envelope and the ledger control routes hold to their documented shapes.

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use creditbrain::sandbox::faults::{Fault, FaultMode, FaultRule, Faults};
use creditbrain::sandbox::ledger::{
    LAMPORTS_PER_SIGNATURE, Ledger, LedgerOptions, STATUS_CACHE_SLOTS, TOKEN_PROGRAM_ID,
    associated_token_address, create_associated_token_account_idempotent_instruction,
    transfer_checked_instruction,
};
use creditbrain::sandbox::rpc::RpcFake;
use creditbrain::sandbox::serve_on_loopback;
use serde_json::{Value, json};
use solana_client::client_error::{ClientError, ClientErrorKind};
use solana_client::nonblocking::rpc_client::RpcClient;
use solana_client::rpc_config::{
    CommitmentConfig, RpcSendTransactionConfig, RpcSimulateTransactionConfig, RpcTransactionConfig,
    UiTransactionEncoding,
};
use solana_client::rpc_request::{RpcError, RpcResponseErrorData};
use solana_client::rpc_response::{OptionSerializer, TransactionError, UiTransactionTokenBalance};
use solana_message::{Message, VersionedMessage, v0};
use solana_sdk::hash::Hash;
use solana_sdk::instruction::Instruction;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signature, Signer};
use solana_sdk::transaction::VersionedTransaction;
use solana_system_interface::instruction::transfer;
use tokio::task::JoinHandle;

use crate::support::eventually;

const SOL: u64 = 1_000_000_000;

struct Harness {
    ledger: Ledger,
    faults: Faults,
    url: String,
    control_url: String,
    http: reqwest::Client,
    _servers: Vec<JoinHandle<()>>,
}

impl Harness {
    async fn start() -> Self {
        // Mainnet timing: 400 ms slots, so a landed transaction stays unfinalized for ~13 s
        // unless a test advances the chain.
        let ledger = Ledger::new(LedgerOptions::default());
        let faults = Faults::new();
        let fake = RpcFake::new(ledger.clone(), faults.clone());
        let (address, server) = serve_on_loopback(fake.router("rpc")).await.unwrap();
        let (control, control_server) = serve_on_loopback(fake.control_routes()).await.unwrap();
        Self {
            ledger,
            faults,
            // Helius-style: the key rides in the query string.
            url: format!("http://{address}/?api-key=test-key"),
            control_url: format!("http://{control}"),
            http: reqwest::Client::new(),
            _servers: vec![server, control_server],
        }
    }

    fn client(&self) -> RpcClient {
        RpcClient::new_with_commitment(self.url.clone(), CommitmentConfig::confirmed())
    }

    /// One raw JSON-RPC call; returns the whole response object.
    async fn call(&self, method: &str, params: Value) -> Value {
        self.post(
            json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string(),
        )
        .await
    }

    async fn post(&self, body: String) -> Value {
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "JSON-RPC answers every call with HTTP 200"
        );
        response.json().await.unwrap()
    }

    async fn result(&self, method: &str, params: Value) -> Value {
        let response = self.call(method, params).await;
        assert!(
            response.get("error").is_none(),
            "{method} failed: {response}"
        );
        response["result"].clone()
    }

    fn funded(&self, lamports: u64) -> Keypair {
        let keypair = Keypair::new();
        self.ledger.airdrop(&keypair.pubkey(), lamports);
        keypair
    }
}

fn legacy(
    instructions: &[Instruction],
    payer: &Keypair,
    signers: &[&Keypair],
    blockhash: Hash,
) -> VersionedTransaction {
    let message = Message::new_with_blockhash(instructions, Some(&payer.pubkey()), &blockhash);
    VersionedTransaction::try_new(VersionedMessage::Legacy(message), signers).unwrap()
}

fn version0(
    instructions: &[Instruction],
    payer: &Keypair,
    signers: &[&Keypair],
    blockhash: Hash,
) -> VersionedTransaction {
    let message = v0::Message::try_compile(&payer.pubkey(), instructions, &[], blockhash).unwrap();
    VersionedTransaction::try_new(VersionedMessage::V0(message), signers).unwrap()
}

fn base64_of(transaction: &VersionedTransaction) -> String {
    BASE64.encode(bincode::serialize(transaction).unwrap())
}

/// The JSON-RPC error a client call failed with.
fn response_error(error: &ClientError) -> (i64, String, Option<TransactionError>) {
    match error.kind() {
        ClientErrorKind::RpcError(RpcError::RpcResponseError {
            code,
            message,
            data,
        }) => {
            let err = match data {
                RpcResponseErrorData::SendTransactionPreflightFailure(result) => {
                    result.err.clone().map(Into::into)
                }
                _ => None,
            };
            (*code, message.clone(), err)
        }
        other => panic!("expected a JSON-RPC error response, got {other:?}"),
    }
}

fn confirmed_json_config(max_version: Option<u8>) -> RpcTransactionConfig {
    RpcTransactionConfig {
        encoding: Some(UiTransactionEncoding::Json),
        commitment: Some(CommitmentConfig::confirmed()),
        max_supported_transaction_version: max_version,
    }
}

#[tokio::test]
async fn the_real_client_sends_confirms_and_reads_a_transfer() {
    let harness = Harness::start().await;
    let client = harness.client();
    let payer = harness.funded(2 * SOL);
    let recipient = Pubkey::new_unique();
    let amount = SOL / 10;

    let version = client.get_version().await.unwrap();
    assert_eq!(version.solana_core, "2.2.14");
    let blockhash = client.get_latest_blockhash().await.unwrap();
    assert!(
        client
            .is_blockhash_valid(&blockhash, CommitmentConfig::processed())
            .await
            .unwrap()
    );
    let transaction = legacy(
        &[transfer(&payer.pubkey(), &recipient, amount)],
        &payer,
        &[&payer],
        blockhash,
    );
    let signature = client
        .send_and_confirm_transaction(&transaction)
        .await
        .unwrap();
    assert_eq!(signature, transaction.signatures[0]);

    let fee = LAMPORTS_PER_SIGNATURE;
    assert_eq!(
        client.get_balance(&payer.pubkey()).await.unwrap(),
        2 * SOL - amount - fee
    );
    assert_eq!(client.get_balance(&recipient).await.unwrap(), amount);

    let fetched = client
        .get_transaction_with_config(&signature, confirmed_json_config(Some(0)))
        .await
        .unwrap();
    let meta = fetched.transaction.meta.expect("metadata");
    assert_eq!(meta.err, None);
    assert_eq!(meta.fee, fee);
    assert_eq!(meta.pre_balances[..2], [2 * SOL, 0]);
    assert_eq!(meta.post_balances[..2], [2 * SOL - amount - fee, amount]);
    assert!(matches!(meta.log_messages, OptionSerializer::Some(ref logs) if !logs.is_empty()));
    assert!(matches!(
        meta.compute_units_consumed,
        OptionSerializer::Some(150)
    ));
    assert_eq!(
        fetched.transaction.version,
        Some(solana_client::rpc_response::transaction::versioned::TransactionVersion::LEGACY)
    );
    assert!(fetched.block_time.is_some());
    assert_eq!(
        fetched.slot,
        harness.ledger.landed(&signature).unwrap().slot
    );

    // base64: the exact bytes that were sent; no maxSupportedTransactionVersion → no version.
    let raw = harness
        .result(
            "getTransaction",
            json!([signature.to_string(), {"encoding": "base64", "commitment": "confirmed"}]),
        )
        .await;
    assert_eq!(raw["transaction"][1], "base64");
    let bytes = BASE64
        .decode(raw["transaction"][0].as_str().unwrap())
        .unwrap();
    let decoded: VersionedTransaction = bincode::deserialize(&bytes).unwrap();
    assert_eq!(decoded.signatures[0], signature);
    assert!(raw.get("version").is_none());
    assert_eq!(raw["meta"]["status"], json!({"Ok": null}));
    assert_eq!(raw["meta"]["innerInstructions"], json!([]));
    assert_eq!(raw["meta"]["rewards"], json!([]));
    assert_eq!(
        raw["meta"]["loadedAddresses"],
        json!({"writable": [], "readonly": []})
    );

    // A finalized read sees it only once finalized; `processed` is refused by the method.
    let finalized = harness
        .result(
            "getTransaction",
            json!([signature.to_string(), {"encoding": "json"}]),
        )
        .await;
    assert_eq!(finalized, Value::Null);
    let processed = harness
        .call(
            "getTransaction",
            json!([signature.to_string(), {"commitment": "processed"}]),
        )
        .await;
    assert_eq!(processed["error"]["code"], -32602);
    harness.ledger.advance_slots(32);
    let finalized = harness
        .result("getTransaction", json!([signature.to_string(), "json"]))
        .await;
    assert_eq!(finalized["slot"], fetched.slot);
}

#[tokio::test]
async fn wrongly_signed_transactions_are_refused_or_never_land() {
    let harness = Harness::start().await;
    let client = harness.client();
    let payer = harness.funded(SOL);
    let recipient = harness.funded(SOL).pubkey();
    let blockhash = client.get_latest_blockhash().await.unwrap();

    // Signed by another key than the fee payer's.
    let mut forged = legacy(
        &[transfer(&payer.pubkey(), &recipient, 1_000)],
        &payer,
        &[&payer],
        blockhash,
    );
    forged.signatures[0] = Keypair::new().sign_message(&forged.message.serialize());
    let error = client.send_transaction(&forged).await.unwrap_err();
    let (code, message, _) = response_error(&error);
    assert_eq!(
        (code, message.as_str()),
        (-32003, "Transaction signature verification failure")
    );

    // Tampered after signing.
    let mut tampered = legacy(
        &[transfer(&payer.pubkey(), &recipient, 1_000)],
        &payer,
        &[&payer],
        blockhash,
    );
    if let VersionedMessage::Legacy(message) = &mut tampered.message {
        message.instructions[0].data[4] ^= 0x01;
    }
    let error = client.send_transaction(&tampered).await.unwrap_err();
    assert_eq!(response_error(&error).0, -32003);

    // With skipPreflight the node forwards it and the leader discards it: acknowledged, never
    // landing.
    let skip = RpcSendTransactionConfig {
        skip_preflight: true,
        ..RpcSendTransactionConfig::default()
    };
    let signature = client
        .send_transaction_with_config(&tampered, skip)
        .await
        .unwrap();
    harness.ledger.advance_slots(5);
    let statuses = client.get_signature_statuses(&[signature]).await.unwrap();
    assert_eq!(statuses.value, vec![None]);
    assert_eq!(client.get_balance(&recipient).await.unwrap(), SOL);
    assert_eq!(client.get_balance(&payer.pubkey()).await.unwrap(), SOL);

    // The simulation with sigVerify refuses it the same way.
    let simulated = harness
        .call(
            "simulateTransaction",
            json!([base64_of(&forged), {"encoding": "base64", "sigVerify": true}]),
        )
        .await;
    assert_eq!(simulated["error"]["code"], -32003);

    let received: Value = harness
        .http
        .get(format!(
            "{}/_sandbox/ledger/transactions",
            harness.control_url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let received = received["transactions"].as_array().unwrap();
    assert_eq!(received.len(), 3);
    assert!(received[0]["rejected"].is_string());
    assert_eq!(received[2]["dropped"], true);
    assert_eq!(received[2]["landed_slot"], Value::Null);
}

#[tokio::test]
async fn an_expired_blockhash_is_refused() {
    let harness = Harness::start().await;
    let client = harness.client();
    let payer = harness.funded(SOL);
    let recipient = harness.funded(SOL).pubkey();
    let blockhash = client.get_latest_blockhash().await.unwrap();
    let transaction = legacy(
        &[transfer(&payer.pubkey(), &recipient, 1_000)],
        &payer,
        &[&payer],
        blockhash,
    );

    harness.ledger.advance_slots(200);
    assert!(
        !client
            .is_blockhash_valid(&blockhash, CommitmentConfig::processed())
            .await
            .unwrap()
    );
    let error = client.send_transaction(&transaction).await.unwrap_err();
    let (code, message, err) = response_error(&error);
    assert_eq!(code, -32002);
    assert_eq!(
        message,
        "Transaction simulation failed: Blockhash not found"
    );
    assert_eq!(err, Some(TransactionError::BlockhashNotFound));
    assert_eq!(client.get_balance(&payer.pubkey()).await.unwrap(), SOL);

    // The confirmation loop gives up once the blockhash is invalid, as against a real node.
    let skip = RpcSendTransactionConfig {
        skip_preflight: true,
        ..RpcSendTransactionConfig::default()
    };
    let outcome = client
        .send_and_confirm_transaction_with_config(&transaction, CommitmentConfig::confirmed(), skip)
        .await;
    assert!(outcome.is_err(), "an expired transaction never confirms");
    assert_eq!(client.get_balance(&recipient).await.unwrap(), SOL);
}

#[tokio::test]
async fn a_fee_payer_that_cannot_pay_fails_preflight() {
    let harness = Harness::start().await;
    let client = harness.client();
    let payer = harness.funded(LAMPORTS_PER_SIGNATURE - 1);
    let recipient = harness.funded(SOL).pubkey();
    let blockhash = client.get_latest_blockhash().await.unwrap();
    let transaction = legacy(
        &[transfer(&payer.pubkey(), &recipient, 1)],
        &payer,
        &[&payer],
        blockhash,
    );
    let error = client.send_transaction(&transaction).await.unwrap_err();
    let (code, message, err) = response_error(&error);
    assert_eq!(code, -32002);
    assert_eq!(
        message,
        "Transaction simulation failed: Insufficient funds for fee"
    );
    assert_eq!(err, Some(TransactionError::InsufficientFundsForFee));

    let raw = harness
        .call(
            "sendTransaction",
            json!([base64_of(&transaction), {"encoding": "base64"}]),
        )
        .await;
    let data = &raw["error"]["data"];
    assert_eq!(data["err"], "InsufficientFundsForFee");
    assert_eq!(data["accounts"], Value::Null);
    assert_eq!(data["returnData"], Value::Null);
    assert!(data["logs"].is_array());
    assert!(data["unitsConsumed"].is_u64());

    // A failing instruction reports the instruction error the same way.
    let payer = harness.funded(SOL);
    let transaction = legacy(
        &[transfer(&payer.pubkey(), &recipient, 2 * SOL)],
        &payer,
        &[&payer],
        blockhash,
    );
    let error = client.send_transaction(&transaction).await.unwrap_err();
    let (code, message, err) = response_error(&error);
    assert_eq!(code, -32002);
    assert_eq!(
        message,
        "Transaction simulation failed: Error processing Instruction 0: custom program error: 0x1"
    );
    assert!(matches!(
        err,
        Some(TransactionError::InstructionError(0, _))
    ));
}

#[tokio::test]
async fn a_v0_transfer_checked_moves_tokens_with_token_balances_in_the_metadata() {
    let harness = Harness::start().await;
    let client = harness.client();
    let payer = harness.funded(SOL);
    let pool = Keypair::new();
    let mint = Pubkey::new_unique();
    harness.ledger.create_mint(&mint, 6);
    let pool_account = associated_token_address(&pool.pubkey(), &mint);
    harness
        .ledger
        .mint_to(&pool_account, &mint, &pool.pubkey(), 1_000_000_000);
    let user_account = associated_token_address(&payer.pubkey(), &mint);

    let blockhash = client.get_latest_blockhash().await.unwrap();
    let transaction = version0(
        &[
            create_associated_token_account_idempotent_instruction(
                &payer.pubkey(),
                &payer.pubkey(),
                &mint,
            ),
            transfer_checked_instruction(
                &pool_account,
                &mint,
                &user_account,
                &pool.pubkey(),
                150_500_000,
                6,
            ),
        ],
        &payer,
        &[&payer, &pool],
        blockhash,
    );
    let signature = client
        .send_and_confirm_transaction(&transaction)
        .await
        .unwrap();

    let balance = client
        .get_token_account_balance(&user_account)
        .await
        .unwrap();
    assert_eq!(balance.amount, "150500000");
    assert_eq!(balance.decimals, 6);
    assert_eq!(balance.ui_amount_string, "150.5");
    assert_eq!(balance.ui_amount, Some(150.5));

    // A v0 transaction needs maxSupportedTransactionVersion, as on a real node.
    let error = client
        .get_transaction_with_config(&signature, confirmed_json_config(None))
        .await
        .unwrap_err();
    let (code, message, _) = response_error(&error);
    assert_eq!(code, -32015);
    assert!(
        message.contains("\"maxSupportedTransactionVersion\": 0"),
        "{message}"
    );

    let fetched = client
        .get_transaction_with_config(&signature, confirmed_json_config(Some(0)))
        .await
        .unwrap();
    assert_eq!(
        fetched.transaction.version,
        Some(solana_client::rpc_response::transaction::versioned::TransactionVersion::Number(0))
    );
    let meta = fetched.transaction.meta.unwrap();
    let balances = |balances: OptionSerializer<Vec<UiTransactionTokenBalance>>| match balances {
        OptionSerializer::Some(balances) => balances,
        other => panic!("token balances missing: {other:?}"),
    };
    let keys = transaction.message.static_account_keys();
    let index_of = |key: &Pubkey| keys.iter().position(|k| k == key).unwrap() as u8;
    let pre = balances(meta.pre_token_balances);
    assert_eq!(pre.len(), 1, "the user's account did not exist before");
    assert_eq!(pre[0].account_index, index_of(&pool_account));
    assert_eq!(pre[0].mint, mint.to_string());
    assert_eq!(pre[0].ui_token_amount.amount, "1000000000");
    assert_eq!(
        pre[0].owner,
        OptionSerializer::Some(pool.pubkey().to_string())
    );
    assert_eq!(
        pre[0].program_id,
        OptionSerializer::Some(TOKEN_PROGRAM_ID.to_string())
    );
    let post = balances(meta.post_token_balances);
    let user = post
        .iter()
        .find(|balance| balance.account_index == index_of(&user_account))
        .expect("the user's account after");
    assert_eq!(user.ui_token_amount.amount, "150500000");
    assert_eq!(user.ui_token_amount.ui_amount_string, "150.5");
    assert_eq!(
        user.owner,
        OptionSerializer::Some(payer.pubkey().to_string())
    );
    let pool_after = post
        .iter()
        .find(|balance| balance.account_index == index_of(&pool_account))
        .unwrap();
    assert_eq!(pool_after.ui_token_amount.amount, "849500000");
    // Two signatures and the new account's rent came out of the payer.
    let payer_index = usize::from(index_of(&payer.pubkey()));
    assert_eq!(
        meta.pre_balances[payer_index] - meta.post_balances[payer_index],
        2 * LAMPORTS_PER_SIGNATURE + 2_039_280
    );

    // The token account as the client reads it: 165 bytes owned by the Token program.
    let account = client.get_account(&user_account).await.unwrap();
    assert_eq!(account.data.len(), 165);
    assert_eq!(account.owner, TOKEN_PROGRAM_ID);
    assert_eq!(&account.data[32..64], payer.pubkey().as_ref());
    let parsed = harness
        .result(
            "getAccountInfo",
            json!([user_account.to_string(), {"encoding": "jsonParsed"}]),
        )
        .await;
    assert_eq!(
        parsed["value"]["data"]["parsed"]["info"]["tokenAmount"]["uiAmountString"],
        "150.5"
    );
    let by_owner = harness
        .result(
            "getTokenAccountsByOwner",
            json!([payer.pubkey().to_string(), {"mint": mint.to_string()}, {"encoding": "jsonParsed"}]),
        )
        .await;
    assert_eq!(by_owner["value"][0]["pubkey"], user_account.to_string());
}

#[tokio::test]
async fn account_queries_answer_with_the_real_values_and_errors() {
    let harness = Harness::start().await;
    let unknown = Pubkey::new_unique();
    let missing = harness
        .call("getTokenAccountBalance", json!([unknown.to_string()]))
        .await;
    assert_eq!(missing["error"]["code"], -32602);
    assert_eq!(
        missing["error"]["message"],
        "Invalid param: could not find account"
    );
    assert_eq!(missing["id"], 1);

    let wallet = harness.funded(SOL);
    let not_token = harness
        .call(
            "getTokenAccountBalance",
            json!([wallet.pubkey().to_string()]),
        )
        .await;
    assert_eq!(
        not_token["error"]["message"],
        "Invalid param: not a Token account"
    );

    let info = harness
        .result(
            "getAccountInfo",
            json!([unknown.to_string(), {"encoding": "base64"}]),
        )
        .await;
    assert_eq!(info["value"], Value::Null);
    assert_eq!(info["context"]["apiVersion"], "2.2.14");
    let info = harness
        .result(
            "getAccountInfo",
            json!([wallet.pubkey().to_string(), {"encoding": "base64"}]),
        )
        .await;
    assert_eq!(info["value"]["lamports"], SOL);
    assert_eq!(info["value"]["data"], json!(["", "base64"]));
    assert_eq!(info["value"]["owner"], "11111111111111111111111111111111");

    let balance = harness
        .result("getBalance", json!([unknown.to_string()]))
        .await;
    assert_eq!(balance["value"], 0);
    let bad = harness.call("getBalance", json!(["not-a-key"])).await;
    assert_eq!(bad["error"]["code"], -32602);
}

#[tokio::test]
async fn node_methods_and_the_json_rpc_envelope() {
    let harness = Harness::start().await;
    let client = harness.client();
    let slot = client.get_slot().await.unwrap();
    let height = client.get_block_height().await.unwrap();
    assert!(slot <= harness.ledger.slot());
    assert!(height <= harness.ledger.block_height());
    assert!(height < slot);

    let version = harness.result("getVersion", Value::Null).await;
    assert_eq!(version["solana-core"], "2.2.14");
    assert!(version["feature-set"].is_u64());
    assert_eq!(harness.result("getHealth", Value::Null).await, "ok");
    let latest = harness
        .result("getLatestBlockhash", json!([{"commitment": "finalized"}]))
        .await;
    assert!(latest["context"]["slot"].is_u64());
    assert!(latest["value"]["lastValidBlockHeight"].is_u64());
    assert!(
        latest["value"]["blockhash"]
            .as_str()
            .unwrap()
            .parse::<Hash>()
            .is_ok()
    );

    let unknown = harness.call("getBlockProduction2", json!([])).await;
    assert_eq!(
        unknown["error"],
        json!({"code": -32601, "message": "Method not found"})
    );
    let malformed = harness.post("{\"jsonrpc\":\"2.0\",".to_string()).await;
    assert_eq!(malformed["error"]["code"], -32700);
    assert_eq!(malformed["id"], Value::Null);
    let string_id = harness
        .post(json!({"jsonrpc": "2.0", "id": "abc", "method": "getSlot"}).to_string())
        .await;
    assert_eq!(string_id["id"], "abc");
    assert!(string_id["result"].is_u64());

    let batch = harness
        .post(
            json!([
                {"jsonrpc": "2.0", "id": 1, "method": "getSlot"},
                {"jsonrpc": "2.0", "id": 2, "method": "nope"},
            ])
            .to_string(),
        )
        .await;
    assert_eq!(batch[0]["id"], 1);
    assert!(batch[0]["result"].is_u64());
    assert_eq!(batch[1]["error"]["code"], -32601);

    // sendTransaction decodes base58 unless told otherwise.
    let payer = harness.funded(SOL);
    let recipient = harness.funded(SOL).pubkey();
    let blockhash = harness.ledger.latest_blockhash().0;
    let message = Message::new_with_blockhash(
        &[transfer(&payer.pubkey(), &recipient, 1_000)],
        Some(&payer.pubkey()),
        &blockhash,
    );
    assert_eq!(
        client.get_fee_for_message(&message).await.unwrap(),
        LAMPORTS_PER_SIGNATURE
    );
    let transaction = legacy(
        &[transfer(&payer.pubkey(), &recipient, 1_000)],
        &payer,
        &[&payer],
        blockhash,
    );
    let as_base58 = bs58::encode(bincode::serialize(&transaction).unwrap()).into_string();
    let sent = harness.result("sendTransaction", json!([as_base58])).await;
    assert_eq!(sent, transaction.signatures[0].to_string());
    let garbage = harness
        .call("sendTransaction", json!(["%%%", {"encoding": "base64"}]))
        .await;
    assert_eq!(garbage["error"]["code"], -32602);
    let truncated = harness
        .call(
            "sendTransaction",
            json!([BASE64.encode([1u8, 2, 3]), {"encoding": "base64"}]),
        )
        .await;
    assert_eq!(truncated["error"]["code"], -32602);
}

#[tokio::test]
async fn simulation_honours_sig_verify_and_replace_recent_blockhash() {
    let harness = Harness::start().await;
    let client = harness.client();
    let payer = harness.funded(SOL);
    let recipient = harness.funded(SOL).pubkey();
    let stale = Hash::new_unique();
    let transaction = legacy(
        &[transfer(&payer.pubkey(), &recipient, 1_000)],
        &payer,
        &[&payer],
        stale,
    );

    let plain = client.simulate_transaction(&transaction).await.unwrap();
    assert_eq!(
        plain.value.err,
        Some(TransactionError::BlockhashNotFound.into())
    );
    let replaced = client
        .simulate_transaction_with_config(
            &transaction,
            RpcSimulateTransactionConfig {
                replace_recent_blockhash: true,
                ..RpcSimulateTransactionConfig::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(replaced.value.err, None);
    assert_eq!(replaced.value.units_consumed, Some(150));
    let replacement = replaced
        .value
        .replacement_blockhash
        .expect("the blockhash used");
    assert!(
        harness
            .ledger
            .is_blockhash_valid(&replacement.blockhash.parse().unwrap())
    );
    // Nothing moved.
    assert_eq!(harness.ledger.lamports(&recipient), SOL);

    let both = harness
        .call(
            "simulateTransaction",
            json!([base64_of(&transaction), {"encoding": "base64", "sigVerify": true, "replaceRecentBlockhash": true}]),
        )
        .await;
    assert_eq!(both["error"]["code"], -32602);
}

#[tokio::test]
async fn statuses_finalize_with_null_confirmations_and_age_out_of_the_cache() {
    let harness = Harness::start().await;
    let client = harness.client();
    let payer = harness.funded(SOL);
    let recipient = harness.funded(SOL).pubkey();
    let blockhash = client.get_latest_blockhash().await.unwrap();
    let transaction = legacy(
        &[transfer(&payer.pubkey(), &recipient, 1_000)],
        &payer,
        &[&payer],
        blockhash,
    );
    let signature = client.send_transaction(&transaction).await.unwrap();

    let fresh = harness
        .result("getSignatureStatuses", json!([[signature.to_string()]]))
        .await;
    let status = &fresh["value"][0];
    assert!(status["confirmations"].is_u64());
    assert_eq!(status["err"], Value::Null);

    harness.ledger.advance_slots(32);
    let finalized = harness
        .result("getSignatureStatuses", json!([[signature.to_string()]]))
        .await;
    let status = &finalized["value"][0];
    assert_eq!(status["confirmations"], Value::Null);
    assert_eq!(status["confirmationStatus"], "finalized");
    assert_eq!(status["status"], json!({"Ok": null}));
    let finalized_client =
        RpcClient::new_with_commitment(harness.url.clone(), CommitmentConfig::finalized());
    assert!(matches!(
        finalized_client
            .get_signature_status_with_commitment(&signature, CommitmentConfig::finalized())
            .await
            .unwrap(),
        Some(Ok(()))
    ));

    // Past the status cache only a history search finds it.
    harness.ledger.advance_slots(STATUS_CACHE_SLOTS);
    let recent = client.get_signature_statuses(&[signature]).await.unwrap();
    assert_eq!(recent.value, vec![None]);
    let history = client
        .get_signature_statuses_with_history(&[signature])
        .await
        .unwrap();
    assert!(history.value[0].is_some());

    let unknown = harness
        .result(
            "getSignatureStatuses",
            json!([[Signature::default().to_string()]]),
        )
        .await;
    assert_eq!(unknown["value"], json!([null]));
}

#[tokio::test]
async fn an_injected_drop_is_acknowledged_and_never_lands() {
    let harness = Harness::start().await;
    harness.faults.add_rule(FaultRule {
        fake: "rpc".to_string(),
        route: Some("sendTransaction".to_string()),
        latency: None,
        mode: Some(FaultMode::Script {
            steps: vec![Some(Fault::DropTransaction)],
        }),
    });
    let client = harness.client();
    let payer = harness.funded(SOL);
    let recipient = harness.funded(SOL).pubkey();
    let blockhash = client.get_latest_blockhash().await.unwrap();
    let transaction = legacy(
        &[transfer(&payer.pubkey(), &recipient, SOL / 2)],
        &payer,
        &[&payer],
        blockhash,
    );
    let signature = client.send_transaction(&transaction).await.unwrap();
    harness.ledger.advance_slots(3);
    assert_eq!(
        client
            .get_signature_statuses(&[signature])
            .await
            .unwrap()
            .value,
        vec![None]
    );
    assert_eq!(client.get_balance(&recipient).await.unwrap(), SOL);

    // The same bytes again (the script is spent) land exactly once.
    client.send_transaction(&transaction).await.unwrap();
    let landed = eventually(Duration::from_secs(5), || async {
        client
            .get_signature_statuses(&[signature])
            .await
            .unwrap()
            .value[0]
            .clone()
    })
    .await;
    assert_eq!(landed.err, None);
    assert_eq!(client.get_balance(&recipient).await.unwrap(), SOL + SOL / 2);
}

/// Seeds `holders` owners with 2–3 accounts each (some empty), returns (mint, funded addresses,
/// empty addresses).
fn seed_holders(ledger: &Ledger, holders: usize) -> (Pubkey, BTreeSet<Pubkey>, BTreeSet<Pubkey>) {
    let mint = Pubkey::new_unique();
    ledger.create_mint(&mint, 6);
    let mut funded = BTreeSet::new();
    let mut empty = BTreeSet::new();
    for holder in 0..holders {
        let owner = Pubkey::new_unique();
        let accounts = if holder % 2 == 0 { 3 } else { 2 };
        for n in 0..accounts {
            let address = Pubkey::new_unique();
            let amount = if holder % 10 == 0 && n == 0 {
                0
            } else {
                1 + (holder * 7 + n) as u64
            };
            ledger.mint_to(&address, &mint, &owner, amount);
            if amount == 0 {
                empty.insert(address);
            } else {
                funded.insert(address);
            }
        }
    }
    (mint, funded, empty)
}

fn addresses(page: &Value) -> Vec<Pubkey> {
    page["token_accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|account| account["address"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn das_pagination_returns_every_account_exactly_once() {
    let harness = Harness::start().await;
    let (mint, funded, empty) = seed_holders(&harness.ledger, 1_100);
    assert!(funded.len() > 2_500, "{} funded accounts", funded.len());
    let mint = mint.to_string();

    // Page mode, 1-based, 1,000 per page.
    let mut seen = Vec::new();
    for page in 1.. {
        let result = harness
            .result(
                "getTokenAccounts",
                json!({"mint": mint, "page": page, "limit": 1000}),
            )
            .await;
        assert_eq!(result["page"], page);
        assert_eq!(result["limit"], 1000);
        let batch = addresses(&result);
        assert_eq!(result["total"], batch.len());
        if batch.is_empty() {
            break;
        }
        seen.extend(batch);
    }
    assert_eq!(seen.len(), funded.len(), "no account twice");
    assert_eq!(seen.iter().copied().collect::<BTreeSet<_>>(), funded);

    // Cursor mode, opaque cursor, with zero balances shown.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut params = json!({"mint": mint, "limit": 1000, "options": {"showZeroBalance": true}});
        if let Some(cursor) = &cursor {
            params["cursor"] = json!(cursor);
        }
        let result = harness.result("getTokenAccounts", params).await;
        assert!(result.get("page").is_none());
        let batch = addresses(&result);
        if batch.is_empty() {
            assert!(result.get("cursor").is_none());
            break;
        }
        seen.extend(batch);
        cursor = Some(result["cursor"].as_str().unwrap().to_string());
    }
    let all: BTreeSet<Pubkey> = funded.union(&empty).copied().collect();
    assert_eq!(seen.len(), all.len());
    assert_eq!(seen.iter().copied().collect::<BTreeSet<_>>(), all);

    // Array-form params and `displayOptions` (seen in the wild) work too; shape of an entry.
    let result = harness
        .result(
            "getTokenAccounts",
            json!([{"mint": mint, "limit": 5, "displayOptions": {"showZeroBalance": false}}]),
        )
        .await;
    let accounts = result["token_accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 5);
    let first = &accounts[0];
    assert!(first["amount"].is_u64(), "amount is a JSON number");
    assert_eq!(first["mint"], mint);
    assert_eq!(first["delegated_amount"], 0);
    assert_eq!(first["frozen"], false);
    assert!(first["owner"].is_string());

    // By owner: several accounts each.
    let owner = first["owner"].as_str().unwrap();
    let by_owner = harness
        .result(
            "getTokenAccounts",
            json!({"owner": owner, "options": {"showZeroBalance": true}}),
        )
        .await;
    assert!(addresses(&by_owner).len() >= 2);

    let too_big = harness
        .call("getTokenAccounts", json!({"mint": mint, "limit": 1001}))
        .await;
    assert_eq!(too_big["error"]["code"], -32602);
    assert!(
        too_big["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1000")
    );
    let both = harness
        .call(
            "getTokenAccounts",
            json!({"mint": mint, "page": 1, "cursor": mint}),
        )
        .await;
    assert_eq!(both["error"]["code"], -32602);
}

#[tokio::test]
async fn priority_fee_estimates_have_the_helius_shapes() {
    let harness = Harness::start().await;
    let key = Pubkey::new_unique().to_string();
    let medium = harness
        .result("getPriorityFeeEstimate", json!([{"accountKeys": [key]}]))
        .await;
    assert!(medium["priorityFeeEstimate"].is_number());
    let high = harness
        .result(
            "getPriorityFeeEstimate",
            json!([{"accountKeys": [key], "options": {"priorityLevel": "High"}}]),
        )
        .await;
    assert!(high["priorityFeeEstimate"].as_f64() > medium["priorityFeeEstimate"].as_f64());
    let all = harness
        .result(
            "getPriorityFeeEstimate",
            json!([{"accountKeys": [key], "options": {"includeAllPriorityFeeLevels": true}}]),
        )
        .await;
    let levels = all["priorityFeeLevels"].as_object().unwrap();
    let names: BTreeSet<&str> = levels.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["min", "low", "medium", "high", "veryHigh", "unsafeMax"])
    );

    let payer = harness.funded(SOL);
    let blockhash = harness.ledger.latest_blockhash().0;
    let transaction = legacy(
        &[transfer(&payer.pubkey(), &Pubkey::new_unique(), 1)],
        &payer,
        &[&payer],
        blockhash,
    );
    let from_transaction = harness
        .result(
            "getPriorityFeeEstimate",
            json!([{"transaction": base64_of(&transaction), "options": {"transactionEncoding": "Base64"}}]),
        )
        .await;
    assert!(from_transaction["priorityFeeEstimate"].is_number());
}

#[tokio::test]
async fn control_routes_show_and_move_the_ledger() {
    let harness = Harness::start().await;
    let wallet = Pubkey::new_unique();
    let airdrop: Value = harness
        .http
        .post(format!("{}/_sandbox/ledger/airdrop", harness.control_url))
        .json(&json!({"pubkey": wallet.to_string(), "lamports": 3 * SOL}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(airdrop["lamports"], 3 * SOL);

    let mint = Pubkey::new_unique();
    harness.ledger.create_mint(&mint, 6);
    let ata = associated_token_address(&wallet, &mint);
    harness.ledger.mint_to(&ata, &mint, &wallet, 2_500_000);
    let account: Value = harness
        .http
        .get(format!(
            "{}/_sandbox/ledger/accounts/{wallet}",
            harness.control_url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(account["lamports"], 3 * SOL);
    assert_eq!(account["token_accounts"][0]["address"], ata.to_string());
    assert_eq!(account["token_accounts"][0]["amount"], 2_500_000);
    assert_eq!(account["token_accounts"][0]["ui_amount_string"], "2.5");

    let before = harness.ledger.slot();
    let advanced: Value = harness
        .http
        .post(format!("{}/_sandbox/ledger/advance", harness.control_url))
        .json(&json!({"slots": 500}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(advanced["slot"].as_u64().unwrap() >= before + 500);

    let bad = harness
        .http
        .get(format!(
            "{}/_sandbox/ledger/accounts/nope",
            harness.control_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}
