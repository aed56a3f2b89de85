//! The Solana JSON-RPC fake over the sandbox [`Ledger`]: the standard methods `solana-client`'s
//! `RpcClient` calls, Helius DAS `getTokenAccounts` and `getPriorityFeeEstimate` (one URL serves
//! both, as Helius does), with the exact request and response shapes and error codes of a real
//! node, plus the ledger's control routes under `/_sandbox/ledger/`.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use solana_client::rpc_config::{
    RpcAccountInfoConfig, RpcSendTransactionConfig, RpcSignatureStatusConfig,
    RpcSimulateTransactionConfig, RpcTokenAccountsFilter, RpcTransactionConfig, UiAccountEncoding,
    UiTransactionEncoding,
};
use solana_client::rpc_response::{
    OptionSerializer, ParsedAccount, RpcBlockhash, RpcKeyedAccount, RpcSimulateTransactionResult,
    UiAccount, UiAccountData, UiCompiledInstruction, UiLoadedAddresses, UiTokenAmount,
    UiTransactionError, UiTransactionStatusMeta, UiTransactionTokenBalance,
};
use solana_message::VersionedMessage;
use solana_sdk::hash::Hash;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::Signature;
use solana_sdk::transaction::VersionedTransaction;

use crate::sandbox::faults::Faults;
use crate::sandbox::ledger::{
    self, Ledger, LedgerAccount, LedgerAccountData, STATUS_CACHE_SLOTS, Simulation, SubmitError,
    TOKEN_PROGRAM_ID, TokenAccount, TokenBalance, WRAPPED_SOL_MINT,
};

/// The node version the fake claims (`getVersion`, `apiVersion` in every context).
pub const API_VERSION: &str = "2.2.14";
/// The feature-set id a 2.2.14 mainnet node reports.
pub const FEATURE_SET: u32 = 3_294_202_862;
/// Mainnet-beta's genesis hash.
pub const GENESIS_HASH: &str = "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d";

/// JSON-RPC 2.0 and Solana server error codes.
pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const SEND_TRANSACTION_PREFLIGHT_FAILURE: i64 = -32002;
pub const TRANSACTION_SIGNATURE_VERIFICATION_FAILURE: i64 = -32003;
pub const UNSUPPORTED_TRANSACTION_VERSION: i64 = -32015;

/// Wire limits of a node: a transaction fits a 1,232-byte packet; its encodings are capped.
const PACKET_DATA_SIZE: usize = 1_232;
const MAX_BASE58_SIZE: usize = 1_683;
const MAX_BASE64_SIZE: usize = 1_644;
/// Most signatures per `getSignatureStatuses`, accounts per `getMultipleAccounts`.
const MAX_SIGNATURE_STATUSES: usize = 256;
const MAX_MULTIPLE_ACCOUNTS: usize = 100;
/// `getAccountInfo` with the legacy `binary` encoding refuses data of 128 bytes or more.
const MAX_BASE58_ACCOUNT_BYTES: usize = 128;
/// DAS page size: 100 when not asked (what Helius' reference response shows), at most 1,000.
pub const DAS_DEFAULT_LIMIT: u64 = 100;
pub const DAS_MAX_LIMIT: u64 = 1_000;

/// Helius priority-fee levels, in micro-lamports per compute unit (percentiles p0, p25, p50,
/// p75, p95, p100 of recent fees).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PriorityFeeLevels {
    pub min: f64,
    pub low: f64,
    pub medium: f64,
    pub high: f64,
    pub very_high: f64,
    pub unsafe_max: f64,
}

impl Default for PriorityFeeLevels {
    fn default() -> Self {
        Self {
            min: 0.0,
            low: 1_000.0,
            medium: 10_000.0,
            high: 100_000.0,
            very_high: 1_000_000.0,
            unsafe_max: 50_000_000.0,
        }
    }
}

/// The JSON-RPC fake. Cheap to clone; every clone serves the same ledger.
#[derive(Clone)]
pub struct RpcFake {
    ledger: Ledger,
    faults: Faults,
    fee_levels: Arc<Mutex<PriorityFeeLevels>>,
}

/// A JSON-RPC error object.
#[derive(Clone, Debug, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    fn to_json(&self) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(data) = &self.data {
            error["data"] = data.clone();
        }
        error
    }
}

type RpcResult = Result<Value, RpcError>;

/// Positional parameters of a standard method (`params` may be absent or `null`).
struct Params(Vec<Value>);

impl Params {
    fn from(params: Option<&Value>) -> Result<Self, RpcError> {
        match params {
            None | Some(Value::Null) => Ok(Self(Vec::new())),
            Some(Value::Array(items)) => Ok(Self(items.clone())),
            Some(_) => Err(RpcError::invalid_params(
                "Invalid params: invalid type: map, expected a sequence.",
            )),
        }
    }

    fn required<T: DeserializeOwned>(&self, index: usize, name: &str) -> Result<T, RpcError> {
        match self.0.get(index) {
            None | Some(Value::Null) => Err(RpcError::invalid_params(format!(
                "Invalid params: missing parameter `{name}`."
            ))),
            Some(value) => parse_value(value.clone()),
        }
    }

    fn optional<T: DeserializeOwned>(&self, index: usize) -> Result<Option<T>, RpcError> {
        match self.0.get(index) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => parse_value(value.clone()).map(Some),
        }
    }
}

fn parse_value<T: DeserializeOwned>(value: Value) -> Result<T, RpcError> {
    serde_json::from_value(value)
        .map_err(|error| RpcError::invalid_params(format!("Invalid params: {error}.")))
}

fn parse_pubkey(input: &str) -> Result<Pubkey, RpcError> {
    input
        .parse()
        .map_err(|error| RpcError::invalid_params(format!("Invalid param: {error:?}")))
}

fn parse_signature(input: &str) -> Result<Signature, RpcError> {
    input
        .parse()
        .map_err(|error| RpcError::invalid_params(format!("Invalid param: {error:?}")))
}

/// Decodes and deserializes a wire transaction the way a node does, with its size limits and
/// messages.
fn decode_transaction(
    encoded: &str,
    encoding: UiTransactionEncoding,
) -> Result<VersionedTransaction, RpcError> {
    let type_name = "solana_transaction::versioned::VersionedTransaction";
    let bytes = match encoding {
        UiTransactionEncoding::Base58 => {
            if encoded.len() > MAX_BASE58_SIZE {
                return Err(RpcError::invalid_params(format!(
                    "base58 encoded {type_name} too large: {} bytes (max: encoded/raw {MAX_BASE58_SIZE}/{PACKET_DATA_SIZE})",
                    encoded.len()
                )));
            }
            bs58::decode(encoded).into_vec().map_err(|error| {
                RpcError::invalid_params(format!("invalid base58 encoding: {error:?}"))
            })?
        }
        UiTransactionEncoding::Base64 => {
            if encoded.len() > MAX_BASE64_SIZE {
                return Err(RpcError::invalid_params(format!(
                    "base64 encoded {type_name} too large: {} bytes (max: encoded/raw {MAX_BASE64_SIZE}/{PACKET_DATA_SIZE})",
                    encoded.len()
                )));
            }
            BASE64.decode(encoded).map_err(|error| {
                RpcError::invalid_params(format!("invalid base64 encoding: {error:?}"))
            })?
        }
        other => {
            return Err(RpcError::invalid_params(format!(
                "unsupported encoding: {other}. Supported encodings: base58, base64"
            )));
        }
    };
    if bytes.len() > PACKET_DATA_SIZE {
        return Err(RpcError::invalid_params(format!(
            "decoded {type_name} too large: {} bytes (max: {PACKET_DATA_SIZE} bytes)",
            bytes.len()
        )));
    }
    bincode::deserialize::<VersionedTransaction>(&bytes).map_err(|error| {
        RpcError::invalid_params(format!("failed to deserialize {type_name}: {error}"))
    })
}

fn ui_error(value: &Value) -> Option<UiTransactionError> {
    serde_json::from_value(value.clone()).ok()
}

fn simulation_result(
    simulation: &Simulation,
    replacement_blockhash: Option<RpcBlockhash>,
    loaded_accounts_data_size: u32,
) -> RpcSimulateTransactionResult {
    RpcSimulateTransactionResult {
        err: simulation.err.as_ref().and_then(ui_error),
        logs: Some(simulation.logs.clone()),
        accounts: None,
        units_consumed: Some(simulation.units_consumed),
        loaded_accounts_data_size: Some(loaded_accounts_data_size),
        return_data: None,
        inner_instructions: None,
        replacement_blockhash,
        fee: None,
        pre_balances: None,
        post_balances: None,
        pre_token_balances: None,
        post_token_balances: None,
        loaded_addresses: None,
    }
}

/// The `uiTokenAmount` of a token balance. Transaction metadata reports a zero balance's
/// `uiAmount` as `null` (how a node stores it), account queries as `0.0`.
fn token_amount(amount: u64, decimals: u8, zero_as_null: bool) -> UiTokenAmount {
    UiTokenAmount {
        ui_amount: if zero_as_null && amount == 0 {
            None
        } else {
            Some(ledger::ui_amount(amount, decimals))
        },
        decimals,
        amount: amount.to_string(),
        ui_amount_string: ledger::ui_amount_string(amount, decimals),
    }
}

fn ui_token_balance(balance: &TokenBalance) -> UiTransactionTokenBalance {
    UiTransactionTokenBalance {
        account_index: balance.account_index,
        mint: balance.mint.to_string(),
        ui_token_amount: token_amount(balance.amount, balance.decimals, true),
        owner: OptionSerializer::Some(balance.owner.to_string()),
        program_id: OptionSerializer::Some(TOKEN_PROGRAM_ID.to_string()),
    }
}

fn message_json(message: &VersionedMessage) -> Value {
    let header = message.header();
    let instructions: Vec<UiCompiledInstruction> = message
        .instructions()
        .iter()
        .map(|instruction| UiCompiledInstruction {
            program_id_index: instruction.program_id_index,
            accounts: instruction.accounts.clone(),
            data: bs58::encode(&instruction.data).into_string(),
            stack_height: None,
        })
        .collect();
    let mut json = json!({
        "header": {
            "numRequiredSignatures": header.num_required_signatures,
            "numReadonlySignedAccounts": header.num_readonly_signed_accounts,
            "numReadonlyUnsignedAccounts": header.num_readonly_unsigned_accounts,
        },
        "accountKeys": message
            .static_account_keys()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        "recentBlockhash": message.recent_blockhash().to_string(),
        "instructions": instructions,
    });
    if !matches!(message, VersionedMessage::Legacy(_)) {
        json["addressTableLookups"] = json!([]);
    }
    json
}

fn parsed_token_account(account: &TokenAccount, lamports: u64, decimals: u8) -> Value {
    let mut info = json!({
        "isNative": account.mint == WRAPPED_SOL_MINT,
        "mint": account.mint.to_string(),
        "owner": account.owner.to_string(),
        "state": "initialized",
        "tokenAmount": token_amount(account.amount, decimals, false),
    });
    if account.mint == WRAPPED_SOL_MINT {
        let reserve = lamports.saturating_sub(account.amount);
        info["rentExemptReserve"] = json!(token_amount(reserve, decimals, false));
    }
    json!({"info": info, "type": "account"})
}

/// Renders an account as a node does for `encoding` (and `dataSlice`).
fn ui_account(
    ledger: &Ledger,
    account: &LedgerAccount,
    encoding: UiAccountEncoding,
    slice: Option<(usize, usize)>,
) -> Result<UiAccount, RpcError> {
    let raw = account.data_bytes();
    let space = raw.len() as u64;
    let sliced = match slice {
        Some((offset, length)) => raw
            .get(offset.min(raw.len())..offset.saturating_add(length).min(raw.len()))
            .unwrap_or_default()
            .to_vec(),
        None => raw.clone(),
    };
    let parsed = match (&account.data, encoding) {
        (LedgerAccountData::Token(token), UiAccountEncoding::JsonParsed) => {
            Some(parsed_token_account(
                token,
                account.lamports,
                ledger.mint_decimals(&token.mint).unwrap_or(0),
            ))
        }
        (LedgerAccountData::Mint { decimals, supply }, UiAccountEncoding::JsonParsed) => {
            Some(json!({
                "info": {
                    "decimals": decimals,
                    "freezeAuthority": null,
                    "isInitialized": true,
                    "mintAuthority": null,
                    "supply": supply.to_string(),
                },
                "type": "mint",
            }))
        }
        _ => None,
    };
    let data = match (parsed, encoding) {
        (Some(parsed), _) => UiAccountData::Json(ParsedAccount {
            program: "spl-token".to_string(),
            parsed,
            space,
        }),
        (None, UiAccountEncoding::Binary) => {
            if sliced.len() >= MAX_BASE58_ACCOUNT_BYTES {
                return Err(RpcError::invalid_params(
                    "Encoded binary (base 58) data should be less than 128 bytes, please use Base64 encoding.",
                ));
            }
            UiAccountData::LegacyBinary(bs58::encode(&sliced).into_string())
        }
        (None, UiAccountEncoding::Base58) => {
            if sliced.len() >= MAX_BASE58_ACCOUNT_BYTES {
                return Err(RpcError::invalid_params(
                    "Encoded binary (base 58) data should be less than 128 bytes, please use Base64 encoding.",
                ));
            }
            UiAccountData::Binary(
                bs58::encode(&sliced).into_string(),
                UiAccountEncoding::Base58,
            )
        }
        // A node answers `base64+zstd` with plain `base64` when it does not compress (the client
        // decodes by the label it gets back); `jsonParsed` falls back to `base64` for accounts it
        // cannot parse.
        (None, _) => UiAccountData::Binary(BASE64.encode(&sliced), UiAccountEncoding::Base64),
    };
    Ok(UiAccount {
        lamports: account.lamports,
        data,
        owner: account.owner_program().to_string(),
        executable: account.executable(),
        rent_epoch: u64::MAX,
        space: Some(space),
    })
}

fn account_config(
    params: &Params,
    index: usize,
) -> Result<(UiAccountEncoding, Option<(usize, usize)>), RpcError> {
    let config: RpcAccountInfoConfig = params.optional(index)?.unwrap_or_default();
    let slice = config.data_slice.map(|slice| (slice.offset, slice.length));
    Ok((config.encoding.unwrap_or(UiAccountEncoding::Binary), slice))
}

/// DAS `getTokenAccounts` parameters (by name; the one-element array form is unwrapped first).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenAccountsParams {
    mint: Option<String>,
    owner: Option<String>,
    page: Option<u64>,
    limit: Option<u64>,
    cursor: Option<String>,
    before: Option<String>,
    after: Option<String>,
    options: Option<DisplayOptions>,
    display_options: Option<DisplayOptions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DisplayOptions {
    #[serde(default)]
    show_zero_balance: bool,
}

/// Helius `getPriorityFeeEstimate` parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PriorityFeeParams {
    transaction: Option<String>,
    account_keys: Option<Vec<String>>,
    #[serde(default)]
    options: PriorityFeeOptions,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PriorityFeeOptions {
    transaction_encoding: Option<String>,
    priority_level: Option<String>,
    #[serde(default)]
    include_all_priority_fee_levels: bool,
    #[serde(default)]
    recommended: bool,
    lookback_slots: Option<u64>,
}

fn das_pubkey(input: &str) -> Result<Pubkey, RpcError> {
    input
        .parse()
        .map_err(|_| RpcError::invalid_params(format!("Pubkey Validation Err: {input} is invalid")))
}

fn das_cursor(input: &str) -> Result<Pubkey, RpcError> {
    input
        .parse()
        .map_err(|_| RpcError::invalid_params(format!("Cursor Validation Err: {input} is invalid")))
}

/// Unwraps by-name params given as an object or as a one-element array holding it.
fn named_params(params: Option<&Value>) -> Result<Value, RpcError> {
    match params {
        Some(Value::Object(_)) => Ok(params.cloned().unwrap_or(Value::Null)),
        Some(Value::Array(items)) if items.len() == 1 && items[0].is_object() => {
            Ok(items[0].clone())
        }
        None | Some(Value::Null) => Ok(json!({})),
        Some(_) => Err(RpcError::invalid_params(
            "Invalid params: expected an object of named parameters.",
        )),
    }
}

fn json_response(body: &Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn error_response(id: Value, error: &RpcError) -> Value {
    json!({"jsonrpc": "2.0", "error": error.to_json(), "id": id})
}

impl RpcFake {
    pub fn new(ledger: Ledger, faults: Faults) -> Self {
        Self {
            ledger,
            faults,
            fee_levels: Arc::new(Mutex::new(PriorityFeeLevels::default())),
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    fn levels(&self) -> MutexGuard<'_, PriorityFeeLevels> {
        self.fee_levels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What `getPriorityFeeEstimate` reports from now on.
    pub fn set_priority_fee_levels(&self, levels: PriorityFeeLevels) {
        *self.levels() = levels;
    }

    pub fn priority_fee_levels(&self) -> PriorityFeeLevels {
        *self.levels()
    }

    /// JSON-RPC on `POST /` (any query string, e.g. `?api-key=`). `fake` (`"rpc"` or `"helius"`)
    /// names this endpoint for the fault plan's dropped transactions; both serve the standard
    /// methods and DAS, as Helius does on one URL.
    pub fn router(&self, fake: &'static str) -> Router {
        let this = self.clone();
        Router::new().route(
            "/",
            post(move |body: Bytes| {
                let this = this.clone();
                async move { json_response(&this.handle_body(fake, &body)) }
            }),
        )
    }

    /// Answers one HTTP body: a request, a batch, or the error a node gives for malformed input.
    pub fn handle_body(&self, fake: &str, body: &[u8]) -> Value {
        let request: Value = match serde_json::from_slice(body) {
            Ok(request) => request,
            Err(_) => {
                return error_response(Value::Null, &RpcError::new(PARSE_ERROR, "Parse error"));
            }
        };
        match request {
            Value::Array(requests) if requests.is_empty() => error_response(
                Value::Null,
                &RpcError::new(INVALID_REQUEST, "Invalid request"),
            ),
            Value::Array(requests) => Value::Array(
                requests
                    .iter()
                    .map(|request| self.handle_request(fake, request))
                    .collect(),
            ),
            request => self.handle_request(fake, &request),
        }
    }

    fn handle_request(&self, fake: &str, request: &Value) -> Value {
        let Some(object) = request.as_object() else {
            return error_response(
                Value::Null,
                &RpcError::new(INVALID_REQUEST, "Invalid request"),
            );
        };
        let id = object.get("id").cloned().unwrap_or(Value::Null);
        let valid_id = matches!(id, Value::Null | Value::Number(_) | Value::String(_));
        let Some(method) = object
            .get("method")
            .and_then(Value::as_str)
            .filter(|_| valid_id)
        else {
            return error_response(id, &RpcError::new(INVALID_REQUEST, "Invalid request"));
        };
        match self.call(fake, method, object.get("params")) {
            Ok(result) => json!({"jsonrpc": "2.0", "result": result, "id": id}),
            Err(error) => error_response(id, &error),
        }
    }

    /// Runs one method.
    pub fn call(&self, fake: &str, method: &str, params: Option<&Value>) -> RpcResult {
        match method {
            "getTokenAccounts" => return self.das_token_accounts(params),
            "getPriorityFeeEstimate" => return self.priority_fee_estimate(params),
            _ => {}
        }
        let params = Params::from(params)?;
        match method {
            "getLatestBlockhash" => {
                let (blockhash, last_valid_block_height) = self.ledger.latest_blockhash();
                Ok(self.with_context(json!({
                    "blockhash": blockhash.to_string(),
                    "lastValidBlockHeight": last_valid_block_height,
                })))
            }
            "isBlockhashValid" => {
                let blockhash: String = params.required(0, "blockhash")?;
                let blockhash: Hash = blockhash
                    .parse()
                    .map_err(|error| RpcError::invalid_params(format!("{error:?}")))?;
                Ok(self.with_context(json!(self.ledger.is_blockhash_valid(&blockhash))))
            }
            "getBlockHeight" => Ok(json!(self.ledger.block_height())),
            "getSlot" => Ok(json!(self.ledger.slot())),
            "getVersion" => Ok(json!({"solana-core": API_VERSION, "feature-set": FEATURE_SET})),
            "getHealth" => Ok(json!("ok")),
            "getGenesisHash" => Ok(json!(GENESIS_HASH)),
            "getMinimumBalanceForRentExemption" => {
                let length: usize = params.required(0, "data_len")?;
                Ok(json!(ledger::rent_exempt_minimum(length)))
            }
            "getFeeForMessage" => self.fee_for_message(&params),
            "sendTransaction" => self.send_transaction(fake, &params),
            "simulateTransaction" => self.simulate_transaction(&params),
            "getSignatureStatuses" => self.signature_statuses(&params),
            "getTransaction" => self.transaction(&params),
            "getBalance" => {
                let address: String = params.required(0, "pubkey")?;
                let address = parse_pubkey(&address)?;
                Ok(self.with_context(json!(self.ledger.lamports(&address))))
            }
            "getTokenAccountBalance" => self.token_account_balance(&params),
            "getTokenSupply" => self.token_supply(&params),
            "getAccountInfo" => {
                let address: String = params.required(0, "pubkey")?;
                let address = parse_pubkey(&address)?;
                let (encoding, slice) = account_config(&params, 1)?;
                let account = match self.ledger.account(&address) {
                    Some(account) => Some(ui_account(&self.ledger, &account, encoding, slice)?),
                    None => None,
                };
                Ok(self.with_context(json!(account)))
            }
            "getMultipleAccounts" => {
                let addresses: Vec<String> = params.required(0, "pubkeys")?;
                if addresses.len() > MAX_MULTIPLE_ACCOUNTS {
                    return Err(RpcError::invalid_params(format!(
                        "Too many inputs provided; max {MAX_MULTIPLE_ACCOUNTS}"
                    )));
                }
                let (encoding, slice) = account_config(&params, 1)?;
                let mut accounts = Vec::with_capacity(addresses.len());
                for address in &addresses {
                    let address = parse_pubkey(address)?;
                    accounts.push(match self.ledger.account(&address) {
                        Some(account) => Some(ui_account(&self.ledger, &account, encoding, slice)?),
                        None => None,
                    });
                }
                Ok(self.with_context(json!(accounts)))
            }
            "getTokenAccountsByOwner" => self.token_accounts_by_owner(&params),
            _ => Err(RpcError::new(METHOD_NOT_FOUND, "Method not found")),
        }
    }

    fn with_context(&self, value: Value) -> Value {
        json!({
            "context": {"slot": self.ledger.slot(), "apiVersion": API_VERSION},
            "value": value,
        })
    }

    fn fee_for_message(&self, params: &Params) -> RpcResult {
        let encoded: String = params.required(0, "message")?;
        let bytes = BASE64.decode(&encoded).map_err(|error| {
            RpcError::invalid_params(format!("invalid base64 encoding: {error:?}"))
        })?;
        let message: VersionedMessage = bincode::deserialize(&bytes).map_err(|error| {
            RpcError::invalid_params(format!(
                "failed to deserialize solana_message::versions::VersionedMessage: {error}"
            ))
        })?;
        let fee = if self.ledger.is_blockhash_valid(message.recent_blockhash()) {
            self.ledger.fee_for_message(&message).ok()
        } else {
            None
        };
        Ok(self.with_context(json!(fee)))
    }

    fn send_transaction(&self, fake: &str, params: &Params) -> RpcResult {
        let encoded: String = params.required(0, "transaction")?;
        let config: RpcSendTransactionConfig = params.optional(1)?.unwrap_or_default();
        // A node decodes base58 unless told otherwise (`RpcClient` always says base64).
        let encoding = config.encoding.unwrap_or(UiTransactionEncoding::Base58);
        let transaction = decode_transaction(&encoded, encoding)?;
        let drop = self.faults.should_drop_transaction(fake);
        match self.ledger.submit(transaction, config.skip_preflight, drop) {
            Ok(signature) => Ok(json!(signature.to_string())),
            Err(error) => Err(self.submit_error(error)),
        }
    }

    fn submit_error(&self, error: SubmitError) -> RpcError {
        match &error {
            SubmitError::SignatureFailure => RpcError::new(
                TRANSACTION_SIGNATURE_VERIFICATION_FAILURE,
                "Transaction signature verification failure",
            ),
            SubmitError::BlockhashNotFound => {
                let simulation = Simulation {
                    err: Some(json!("BlockhashNotFound")),
                    logs: Vec::new(),
                    units_consumed: 0,
                    fee: 0,
                };
                RpcError {
                    code: SEND_TRANSACTION_PREFLIGHT_FAILURE,
                    message: "Transaction simulation failed: Blockhash not found".to_string(),
                    data: Some(json!(simulation_result(&simulation, None, 0))),
                }
            }
            SubmitError::Preflight(_, simulation) => RpcError {
                code: SEND_TRANSACTION_PREFLIGHT_FAILURE,
                message: error.to_string(),
                data: Some(json!(simulation_result(simulation, None, 0))),
            },
            SubmitError::Invalid(_) => RpcError::invalid_params(error.to_string()),
        }
    }

    fn simulate_transaction(&self, params: &Params) -> RpcResult {
        let encoded: String = params.required(0, "transaction")?;
        let config: RpcSimulateTransactionConfig = params.optional(1)?.unwrap_or_default();
        let encoding = config.encoding.unwrap_or(UiTransactionEncoding::Base58);
        let mut transaction = decode_transaction(&encoded, encoding)?;
        let mut replacement = None;
        if config.replace_recent_blockhash {
            if config.sig_verify {
                return Err(RpcError::invalid_params(
                    "sigVerify may not be used with replaceRecentBlockhash",
                ));
            }
            let (blockhash, last_valid_block_height) = self.ledger.latest_blockhash();
            transaction.message.set_recent_blockhash(blockhash);
            replacement = Some(RpcBlockhash {
                blockhash: blockhash.to_string(),
                last_valid_block_height,
            });
        }
        if let Err(error) = ledger::sanitize_transaction(&transaction) {
            return Err(RpcError::invalid_params(format!(
                "invalid transaction: {error}"
            )));
        }
        if config.sig_verify && !ledger::verify_signatures(&transaction) {
            return Err(RpcError::new(
                TRANSACTION_SIGNATURE_VERIFICATION_FAILURE,
                "Transaction signature verification failure",
            ));
        }
        let simulation = self.ledger.simulate(&transaction, false);
        let data_size = self.loaded_data_size(&transaction);
        Ok(self.with_context(json!(simulation_result(
            &simulation,
            replacement,
            data_size
        ))))
    }

    fn loaded_data_size(&self, transaction: &VersionedTransaction) -> u32 {
        let total: usize = transaction
            .message
            .static_account_keys()
            .iter()
            .filter_map(|key| self.ledger.account(key))
            .map(|account| account.data_bytes().len())
            .sum();
        u32::try_from(total).unwrap_or(u32::MAX)
    }

    fn signature_statuses(&self, params: &Params) -> RpcResult {
        let signatures: Vec<String> = params.required(0, "signatures")?;
        if signatures.len() > MAX_SIGNATURE_STATUSES {
            return Err(RpcError::invalid_params(format!(
                "Too many inputs provided; max {MAX_SIGNATURE_STATUSES}"
            )));
        }
        let config: Option<RpcSignatureStatusConfig> = params.optional(1)?;
        let search_history = config.is_some_and(|config| config.search_transaction_history);
        let current_slot = self.ledger.slot();
        let mut statuses = Vec::with_capacity(signatures.len());
        for signature in &signatures {
            let signature = parse_signature(signature)?;
            let status = self.ledger.signature_status(&signature).filter(|status| {
                // Past the status cache only a history search finds it, as on a real node.
                search_history || current_slot.saturating_sub(status.slot) <= STATUS_CACHE_SLOTS
            });
            statuses.push(match status {
                None => Value::Null,
                Some(status) => json!({
                    "slot": status.slot,
                    "confirmations": status.confirmations,
                    "status": match &status.err {
                        None => json!({"Ok": null}),
                        Some(err) => json!({"Err": err}),
                    },
                    "err": status.err,
                    "confirmationStatus": status.confirmation_status,
                }),
            });
        }
        Ok(self.with_context(Value::Array(statuses)))
    }

    fn transaction(&self, params: &Params) -> RpcResult {
        let signature: String = params.required(0, "signature")?;
        let signature = parse_signature(&signature)?;
        // The second parameter is a config object, or (legacy) just the encoding.
        let config: RpcTransactionConfig = match params.0.get(1) {
            Some(Value::String(encoding)) => RpcTransactionConfig {
                encoding: Some(parse_value(json!(encoding))?),
                ..RpcTransactionConfig::default()
            },
            _ => params.optional(1)?.unwrap_or_default(),
        };
        let encoding = config.encoding.unwrap_or(UiTransactionEncoding::Json);
        let commitment = config.commitment.unwrap_or_default();
        if !commitment.is_at_least_confirmed() {
            return Err(RpcError::invalid_params(
                "Method does not support commitment below `confirmed`",
            ));
        }
        let (Some(landed), Some(status)) = (
            self.ledger.landed(&signature),
            self.ledger.signature_status(&signature),
        ) else {
            return Ok(Value::Null);
        };
        // A finalized read sees only finalized blocks; a confirmed one needs a confirmation.
        let visible = if commitment.is_finalized() {
            status.confirmations.is_none()
        } else {
            status.confirmation_status != "processed"
        };
        if !visible {
            return Ok(Value::Null);
        }
        let version = match (
            config.max_supported_transaction_version,
            &landed.transaction.message,
        ) {
            (None, VersionedMessage::Legacy(_)) => None,
            (Some(_), VersionedMessage::Legacy(_)) => Some(json!("legacy")),
            (max, VersionedMessage::V0(_)) if max.is_some() => Some(json!(0)),
            (_, message) => {
                let version = match message {
                    VersionedMessage::V0(_) => 0,
                    _ => 1,
                };
                return Err(RpcError::new(
                    UNSUPPORTED_TRANSACTION_VERSION,
                    format!(
                        "Transaction version ({version}) is not supported by the requesting client. \
                         Please try the request again with the following configuration parameter: \
                         \"maxSupportedTransactionVersion\": {version}"
                    ),
                ));
            }
        };
        let bytes = bincode::serialize(&landed.transaction)
            .map_err(|error| RpcError::new(-32603, format!("Internal error: {error}")))?;
        let transaction = match encoding {
            UiTransactionEncoding::Binary => json!(bs58::encode(&bytes).into_string()),
            UiTransactionEncoding::Base58 => json!([bs58::encode(&bytes).into_string(), "base58"]),
            UiTransactionEncoding::Base64 => json!([BASE64.encode(&bytes), "base64"]),
            UiTransactionEncoding::Json | UiTransactionEncoding::JsonParsed => json!({
                "signatures": landed
                    .transaction
                    .signatures
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
                "message": message_json(&landed.transaction.message),
            }),
        };
        let err = landed.err.as_ref().and_then(ui_error);
        let meta = UiTransactionStatusMeta {
            err: err.clone(),
            status: match err {
                None => Ok(()),
                Some(err) => Err(err),
            },
            fee: landed.fee,
            pre_balances: landed.pre_balances.clone(),
            post_balances: landed.post_balances.clone(),
            inner_instructions: OptionSerializer::Some(Vec::new()),
            log_messages: OptionSerializer::Some(landed.log_messages.clone()),
            pre_token_balances: OptionSerializer::Some(
                landed
                    .pre_token_balances
                    .iter()
                    .map(ui_token_balance)
                    .collect(),
            ),
            post_token_balances: OptionSerializer::Some(
                landed
                    .post_token_balances
                    .iter()
                    .map(ui_token_balance)
                    .collect(),
            ),
            rewards: OptionSerializer::Some(Vec::new()),
            loaded_addresses: OptionSerializer::Some(UiLoadedAddresses::default()),
            return_data: OptionSerializer::Skip,
            compute_units_consumed: OptionSerializer::or_skip(
                self.ledger.compute_units_consumed(&signature),
            ),
            cost_units: OptionSerializer::Skip,
        };
        let mut result = json!({
            "slot": landed.slot,
            "transaction": transaction,
            "meta": meta,
            "blockTime": landed.block_time,
        });
        if let Some(version) = version {
            result["version"] = version;
        }
        Ok(result)
    }

    fn token_account_balance(&self, params: &Params) -> RpcResult {
        let address: String = params.required(0, "pubkey")?;
        let address = parse_pubkey(&address)?;
        let account = self
            .ledger
            .account(&address)
            .ok_or_else(|| RpcError::invalid_params("Invalid param: could not find account"))?;
        match account.data {
            LedgerAccountData::Token(token) => {
                let decimals = self.ledger.mint_decimals(&token.mint).unwrap_or(0);
                Ok(self.with_context(json!(token_amount(token.amount, decimals, false))))
            }
            LedgerAccountData::Mint { .. } => Err(RpcError::invalid_params(
                "Invalid param: not a v2.0 Token account",
            )),
            LedgerAccountData::System | LedgerAccountData::Program { .. } => Err(
                RpcError::invalid_params("Invalid param: not a Token account"),
            ),
        }
    }

    fn token_supply(&self, params: &Params) -> RpcResult {
        let address: String = params.required(0, "pubkey")?;
        let address = parse_pubkey(&address)?;
        let account = self
            .ledger
            .account(&address)
            .ok_or_else(|| RpcError::invalid_params("Invalid param: could not find account"))?;
        match account.data {
            LedgerAccountData::Mint { decimals, supply } => {
                Ok(self.with_context(json!(token_amount(supply, decimals, false))))
            }
            LedgerAccountData::Token(_) => Err(RpcError::invalid_params(
                "Invalid param: not a v2.0 Token mint",
            )),
            LedgerAccountData::System | LedgerAccountData::Program { .. } => {
                Err(RpcError::invalid_params("Invalid param: not a Token mint"))
            }
        }
    }

    fn token_accounts_by_owner(&self, params: &Params) -> RpcResult {
        let owner: String = params.required(0, "owner")?;
        let owner = parse_pubkey(&owner)?;
        let filter: RpcTokenAccountsFilter = params.required(1, "filter")?;
        let mint = match filter {
            RpcTokenAccountsFilter::Mint(mint) => {
                let mint = parse_pubkey(&mint)?;
                if self.ledger.mint_decimals(&mint).is_none() {
                    return Err(RpcError::invalid_params(
                        "Invalid param: could not find mint",
                    ));
                }
                Some(mint)
            }
            RpcTokenAccountsFilter::ProgramId(program) => {
                if parse_pubkey(&program)? != TOKEN_PROGRAM_ID {
                    return Err(RpcError::invalid_params(
                        "Invalid param: unrecognized Token program id",
                    ));
                }
                None
            }
        };
        let (encoding, slice) = account_config(params, 2)?;
        let mut accounts = Vec::new();
        for token in self.ledger.token_accounts_by_owner(&owner, mint.as_ref()) {
            let Some(account) = self.ledger.account(&token.address) else {
                continue;
            };
            accounts.push(RpcKeyedAccount {
                pubkey: token.address.to_string(),
                account: ui_account(&self.ledger, &account, encoding, slice)?,
            });
        }
        Ok(self.with_context(json!(accounts)))
    }

    /// Helius DAS `getTokenAccounts`: by mint and/or owner, ordered by address, page mode
    /// (1-based `page`) or keyset mode (`cursor` / `after` / `before`, base58 addresses).
    fn das_token_accounts(&self, params: Option<&Value>) -> RpcResult {
        let params: TokenAccountsParams = parse_value(named_params(params)?)?;
        let limit = params.limit.unwrap_or(DAS_DEFAULT_LIMIT);
        if limit > DAS_MAX_LIMIT {
            return Err(RpcError::invalid_params(format!(
                "Pagination Error. Limit should not be greater than {DAS_MAX_LIMIT}."
            )));
        }
        let keyset = params.cursor.is_some() || params.before.is_some() || params.after.is_some();
        // `page` excludes the keyset parameters, and `cursor` excludes `before`/`after`.
        let cursor_with_range =
            params.cursor.is_some() && (params.before.is_some() || params.after.is_some());
        if (params.page.is_some() && keyset) || cursor_with_range {
            return Err(RpcError::invalid_params(
                "Pagination Error. Only one pagination parameter supported per query.",
            ));
        }
        if params.page == Some(0) {
            return Err(RpcError::invalid_params(
                "Validation Error: page must be greater than 0",
            ));
        }
        let mint = params.mint.as_deref().map(das_pubkey).transpose()?;
        let owner = params.owner.as_deref().map(das_pubkey).transpose()?;
        let after = params
            .cursor
            .as_deref()
            .or(params.after.as_deref())
            .map(das_cursor)
            .transpose()?;
        let before = params.before.as_deref().map(das_cursor).transpose()?;
        let show_zero = params
            .options
            .as_ref()
            .or(params.display_options.as_ref())
            .is_some_and(|options| options.show_zero_balance);
        let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
        let skip = params.page.map_or(0, |page| {
            usize::try_from(page - 1)
                .unwrap_or(usize::MAX)
                .saturating_mul(limit_usize)
        });
        let page: Vec<TokenAccount> = match (mint, owner) {
            // By mint alone: a range walk of the mint's index, not the whole mint per page.
            (Some(mint), None) => self.ledger.token_accounts_by_mint_page(
                &mint,
                (after, before),
                show_zero,
                skip,
                limit_usize,
            ),
            (mint, Some(owner)) => self
                .ledger
                .token_accounts_by_owner(&owner, mint.as_ref())
                .into_iter()
                .filter(|account| show_zero || account.amount > 0)
                .filter(|account| after.is_none_or(|after| account.address > after))
                .filter(|account| before.is_none_or(|before| account.address < before))
                .skip(skip)
                .take(limit_usize)
                .collect(),
            (None, None) => {
                return Err(RpcError::invalid_params(
                    "Validation Error: Must provide either 'owner' or 'mint'",
                ));
            }
        };
        let token_accounts: Vec<Value> = page
            .iter()
            .map(|account| {
                json!({
                    "address": account.address.to_string(),
                    "mint": account.mint.to_string(),
                    "owner": account.owner.to_string(),
                    "amount": account.amount,
                    "delegated_amount": 0,
                    "frozen": false,
                })
            })
            .collect();
        let mut result = json!({
            "total": token_accounts.len(),
            "limit": limit,
            "last_indexed_slot": self.ledger.slot(),
            "token_accounts": token_accounts,
        });
        match params.page {
            Some(page) => result["page"] = json!(page),
            None => {
                if let Some(last) = page.last() {
                    result["cursor"] = json!(last.address.to_string());
                }
            }
        }
        Ok(result)
    }

    /// Helius `getPriorityFeeEstimate`: one level (`priorityLevel`, default `Medium`) or all.
    fn priority_fee_estimate(&self, params: Option<&Value>) -> RpcResult {
        let params: PriorityFeeParams = parse_value(named_params(params)?)?;
        let options = &params.options;
        if let Some(slots) = options.lookback_slots
            && !(1..=150).contains(&slots)
        {
            return Err(RpcError::invalid_params(
                "lookbackSlots must be between 1 and 150",
            ));
        }
        if let Some(encoded) = &params.transaction {
            let encoding = match options
                .transaction_encoding
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                None | Some("base58") => UiTransactionEncoding::Base58,
                Some("base64") => UiTransactionEncoding::Base64,
                Some(other) => {
                    return Err(RpcError::invalid_params(format!(
                        "Invalid transaction encoding: {other}"
                    )));
                }
            };
            decode_transaction(encoded, encoding)?;
        } else if let Some(keys) = &params.account_keys {
            for key in keys {
                parse_pubkey(key)?;
            }
        } else {
            return Err(RpcError::invalid_params(
                "Invalid params: either transaction or accountKeys must be provided",
            ));
        }
        let levels = self.priority_fee_levels();
        if options.include_all_priority_fee_levels {
            return Ok(json!({"priorityFeeLevels": levels}));
        }
        let estimate = match options
            .priority_level
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("medium") => levels.medium,
            Some("min") => levels.min,
            Some("low") => levels.low,
            Some("high") => levels.high,
            Some("veryhigh") => levels.very_high,
            Some("unsafemax") => levels.unsafe_max,
            Some(other) => {
                return Err(RpcError::invalid_params(format!(
                    "Invalid priority level: {other}"
                )));
            }
        };
        let estimate = if options.recommended {
            // Helius' recommendation: the median, at least 10,000 micro-lamports.
            levels.medium.max(10_000.0)
        } else {
            estimate
        };
        Ok(json!({"priorityFeeEstimate": estimate}))
    }

    /// `GET /_sandbox/ledger/accounts/{pubkey}`, `GET /_sandbox/ledger/transactions`,
    /// `POST /_sandbox/ledger/advance {"slots":n}`, `POST /_sandbox/ledger/airdrop
    /// {"pubkey","lamports"}`.
    pub fn control_routes(&self) -> Router {
        let accounts = self.ledger.clone();
        let transactions = self.ledger.clone();
        let advance = self.ledger.clone();
        let airdrop = self.ledger.clone();
        Router::new()
            .route(
                "/_sandbox/ledger/accounts/{pubkey}",
                get(move |Path(pubkey): Path<String>| {
                    let ledger = accounts.clone();
                    async move { control_account(&ledger, &pubkey) }
                }),
            )
            .route(
                "/_sandbox/ledger/transactions",
                get(move || {
                    let ledger = transactions.clone();
                    async move { control_transactions(&ledger) }
                }),
            )
            .route(
                "/_sandbox/ledger/advance",
                post(move |body: Bytes| {
                    let ledger = advance.clone();
                    async move { control_advance(&ledger, &body) }
                }),
            )
            .route(
                "/_sandbox/ledger/airdrop",
                post(move |body: Bytes| {
                    let ledger = airdrop.clone();
                    async move { control_airdrop(&ledger, &body) }
                }),
            )
    }
}

fn control_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

fn token_account_json(ledger: &Ledger, account: &TokenAccount) -> Value {
    let decimals = ledger.mint_decimals(&account.mint).unwrap_or(0);
    json!({
        "address": account.address.to_string(),
        "mint": account.mint.to_string(),
        "owner": account.owner.to_string(),
        "amount": account.amount,
        "decimals": decimals,
        "ui_amount_string": ledger::ui_amount_string(account.amount, decimals),
    })
}

fn control_account(ledger: &Ledger, pubkey: &str) -> Response {
    let Ok(address) = pubkey.parse::<Pubkey>() else {
        return control_error(StatusCode::BAD_REQUEST, format!("invalid pubkey: {pubkey}"));
    };
    let account = ledger.account(&address);
    let (token_account, mint) = match account.as_ref().map(|account| &account.data) {
        Some(LedgerAccountData::Token(token)) => (Some(token_account_json(ledger, token)), None),
        Some(LedgerAccountData::Mint { decimals, supply }) => {
            (None, Some(json!({"decimals": decimals, "supply": supply})))
        }
        _ => (None, None),
    };
    let owned: Vec<Value> = ledger
        .token_accounts_by_owner(&address, None)
        .iter()
        .map(|account| token_account_json(ledger, account))
        .collect();
    axum::Json(json!({
        "pubkey": address.to_string(),
        "exists": account.is_some(),
        "lamports": ledger.lamports(&address),
        "owner_program": account.as_ref().map(|account| account.owner_program().to_string()),
        "token_account": token_account,
        "mint": mint,
        "token_accounts": owned,
    }))
    .into_response()
}

fn control_transactions(ledger: &Ledger) -> Response {
    let transactions: Vec<Value> = ledger
        .received()
        .iter()
        .map(|received| {
            let status = ledger.signature_status(&received.signature);
            json!({
                "signature": received.signature.to_string(),
                "received_at": received
                    .received_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "skip_preflight": received.skip_preflight,
                "rejected": received.rejected,
                "dropped": received.dropped,
                "drop_reason": received.drop_reason,
                "duplicate": received.duplicate,
                "landed_slot": received.landed_slot,
                "err": received.err,
                "confirmation_status": status
                    .filter(|_| received.landed_slot.is_some())
                    .map(|status| status.confirmation_status),
            })
        })
        .collect();
    axum::Json(json!({"slot": ledger.slot(), "transactions": transactions})).into_response()
}

fn control_advance(ledger: &Ledger, body: &[u8]) -> Response {
    #[derive(Deserialize)]
    struct Advance {
        slots: u64,
    }
    match serde_json::from_slice::<Advance>(body) {
        Ok(advance) => {
            ledger.advance_slots(advance.slots);
            axum::Json(json!({"slot": ledger.slot(), "block_height": ledger.block_height()}))
                .into_response()
        }
        Err(error) => control_error(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"slots\":n}}: {error}"),
        ),
    }
}

fn control_airdrop(ledger: &Ledger, body: &[u8]) -> Response {
    #[derive(Deserialize)]
    struct Airdrop {
        pubkey: String,
        lamports: u64,
    }
    let airdrop = match serde_json::from_slice::<Airdrop>(body) {
        Ok(airdrop) => airdrop,
        Err(error) => {
            return control_error(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"pubkey\",\"lamports\"}}: {error}"),
            );
        }
    };
    let Ok(address) = airdrop.pubkey.parse::<Pubkey>() else {
        return control_error(
            StatusCode::BAD_REQUEST,
            format!("invalid pubkey: {}", airdrop.pubkey),
        );
    };
    ledger.airdrop(&address, airdrop.lamports);
    axum::Json(json!({"pubkey": address.to_string(), "lamports": ledger.lamports(&address)}))
        .into_response()
}
