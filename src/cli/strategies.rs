//! `create-strategy`, `list-strategies`, `update-strategy`, `delete-strategy`: options are passed
//! to the daemon as text in the runbook's units; the daemon validates (one set of rules for the
//! CLI and the HTTP API) and the CLI prints every rejected field.

use std::path::Path;

use clap::Args;
use creditbrain_actors::strategy::{CustomWeightInput, StrategyInput};
use serde_json::Value;

use super::exit;
use super::format::{self, Table, or_dash, print_fields, print_json};
use super::session::{OutputArgs, request, unexpected, usage_error};
use crate::admin::protocol::{AdminRequest, AdminResponse};

/// The strategy fields both `create-strategy` and `update-strategy` take. Values are checked by
/// the daemon, so the allowed ranges live in one place.
#[derive(Args, Clone, Debug, Default)]
pub struct StrategyOptions {
    /// Fee vaults to claim: CLAIMABLE_POSITIONS or PARTNER_FEES.
    #[arg(long = "source", value_name = "SOURCE")]
    pub fee_source: Option<String>,
    /// OWNER_ONLY, TOP_N_HOLDERS, EQUAL_SPLIT, WEIGHTED_BY_HOLDINGS or CUSTOM_LIST.
    #[arg(long = "distribution", value_name = "MODE")]
    pub distribution_mode: Option<String>,
    /// Holders served in TOP_N_HOLDERS mode (integer, at least 1).
    #[arg(long, value_name = "N")]
    pub top_n: Option<String>,
    /// The most one holder receives from one run (credits) or the largest allowance, in USD,
    /// whole cents (DEFAULT_KEY_LIMIT_USD).
    #[arg(long = "key-limit", value_name = "USD")]
    pub max_grant_usd: Option<String>,
    /// The most a key's limit may ever reach, in USD (MAX_KEY_LIMIT_USD).
    #[arg(long = "max-key-limit", value_name = "USD")]
    pub max_key_limit_usd: Option<String>,
    /// daily, weekly or monthly (allowance mode), or null (credits mode).
    #[arg(long, value_name = "PERIOD")]
    pub key_limit_reset: Option<String>,
    /// Days until a new key expires; 0 means never.
    #[arg(long, value_name = "DAYS")]
    pub key_expiry_days: Option<String>,
    /// Percent of the pool balance held in reserve, 0–50.
    #[arg(long = "reserve", value_name = "PCT")]
    pub reserve_pct: Option<String>,
    /// Claimable SOL needed before a run claims, 1–100.
    #[arg(long = "threshold", value_name = "SOL")]
    pub threshold_sol: Option<String>,
    /// Swap slippage tolerance in basis points, 0–1000.
    #[arg(long, value_name = "BPS")]
    pub slippage_bps: Option<String>,
    /// The smallest balance that qualifies a holder, in token base units.
    #[arg(long = "min-holding", value_name = "BASE_UNITS")]
    pub min_holding_base_units: Option<String>,
    /// Automatic runs: a 5-field cron expression, UTC.
    #[arg(long, value_name = "CRON")]
    pub schedule: Option<String>,
    /// A wallet that never receives a grant (repeat for several; replaces the whole list).
    #[arg(long = "exclude", value_name = "WALLET")]
    pub exclusions: Vec<String>,
    /// A CUSTOM_LIST entry as WALLET=WEIGHT (repeat for several; replaces the whole list).
    #[arg(long = "weight", value_name = "WALLET=WEIGHT", value_parser = parse_weight)]
    pub weights: Vec<CustomWeightInput>,
    /// active or paused.
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
}

fn parse_weight(text: &str) -> Result<CustomWeightInput, String> {
    match text.split_once('=') {
        Some((wallet, weight)) if !wallet.is_empty() && !weight.is_empty() => {
            Ok(CustomWeightInput {
                wallet: Some(wallet.to_string()),
                weight: Some(weight.to_string()),
            })
        }
        _ => Err(format!("expected WALLET=WEIGHT, got {text:?}")),
    }
}

impl StrategyOptions {
    /// The input the daemon validates; options not given stay absent.
    fn input(&self) -> StrategyInput {
        StrategyInput {
            fee_source: self.fee_source.clone(),
            threshold_sol: self.threshold_sol.clone(),
            slippage_bps: self.slippage_bps.clone(),
            distribution_mode: self.distribution_mode.clone(),
            top_n: self.top_n.clone(),
            custom_weights: (!self.weights.is_empty()).then(|| self.weights.clone()),
            exclusions: (!self.exclusions.is_empty()).then(|| self.exclusions.clone()),
            min_holding_base_units: self.min_holding_base_units.clone(),
            max_grant_usd: self.max_grant_usd.clone(),
            max_key_limit_usd: self.max_key_limit_usd.clone(),
            key_limit_reset: self.key_limit_reset.clone(),
            key_expiry_days: self.key_expiry_days.clone(),
            reserve_pct: self.reserve_pct.clone(),
            schedule: self.schedule.clone(),
            status: self.status.clone(),
            ..StrategyInput::default()
        }
    }
}

/// `creditbrain create-strategy`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The wallet whose Bags fees are claimed (the daemon's signer).
    #[arg(long, value_name = "WALLET")]
    pub owner: String,
    /// The community's token mint (default: DISTRIBUTION_TOKEN_MINT).
    #[arg(long, value_name = "MINT")]
    pub token_mint: Option<String>,
    #[command(flatten)]
    pub options: StrategyOptions,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `creditbrain list-strategies`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only strategies with this status: active or paused.
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `creditbrain update-strategy`.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// The strategy to change.
    #[arg(long, value_name = "STRATEGY_ID")]
    pub id: String,
    #[command(flatten)]
    pub options: StrategyOptions,
    /// Empty the exclusion list.
    #[arg(long, conflicts_with = "exclusions")]
    pub clear_exclusions: bool,
    /// Empty the CUSTOM_LIST weights.
    #[arg(long, conflicts_with = "weights")]
    pub clear_weights: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `creditbrain delete-strategy`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// The strategy to delete (refused once it has runs: pause it instead).
    #[arg(long, value_name = "STRATEGY_ID")]
    pub id: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub async fn create(socket: &Path, args: &CreateArgs) -> i32 {
    let json = args.output.json;
    let strategy = StrategyInput {
        owner_wallet: Some(args.owner.clone()),
        token_mint: args.token_mint.clone(),
        ..args.options.input()
    };
    match request(socket, json, AdminRequest::CreateStrategy { strategy }).await {
        Ok(AdminResponse::Strategy { strategy }) => {
            show_strategy("created strategy", &strategy, json);
            exit::OK
        }
        Ok(other) => unexpected(&other, json),
        Err(code) => code,
    }
}

pub async fn list(socket: &Path, args: &ListArgs) -> i32 {
    let json = args.output.json;
    let status = args.status.clone();
    let strategies = match request(socket, json, AdminRequest::ListStrategies { status }).await {
        Ok(AdminResponse::Strategies { strategies }) => strategies,
        Ok(other) => return unexpected(&other, json),
        Err(code) => return code,
    };
    if json {
        print_json(&strategies);
        return exit::OK;
    }
    if strategies.is_empty() {
        out!("no strategies");
        return exit::OK;
    }
    let mut table = Table::new(&[
        "STRATEGY",
        "STATUS",
        "DISTRIBUTION",
        "THRESHOLD",
        "KEY LIMIT",
        "RESERVE",
        "CARRY-OVER",
        "SCHEDULE (UTC)",
        "OWNER",
    ]);
    for strategy in &strategies {
        table.row(vec![
            text(strategy, "strategyId"),
            text(strategy, "status"),
            distribution(strategy),
            or_dash(strategy["thresholdLamports"].as_u64(), format::sol),
            or_dash(strategy["maxGrantMicroUsd"].as_i64(), format::usd),
            or_dash(strategy["reserveBps"].as_u64(), format::percent),
            or_dash(strategy["carryOverMicroUsd"].as_i64(), format::usd),
            text(strategy, "schedule"),
            text(strategy, "ownerWallet"),
        ]);
    }
    table.print(0);
    exit::OK
}

pub async fn update(socket: &Path, args: &UpdateArgs) -> i32 {
    let json = args.output.json;
    let mut patch = args.options.input();
    if args.clear_exclusions {
        patch.exclusions = Some(Vec::new());
    }
    if args.clear_weights {
        patch.custom_weights = Some(Vec::new());
    }
    if patch == StrategyInput::default() {
        return usage_error("update-strategy needs at least one option to change (see --help)");
    }
    let request_message = AdminRequest::UpdateStrategy {
        strategy_id: args.id.clone(),
        patch,
    };
    match request(socket, json, request_message).await {
        Ok(AdminResponse::Strategy { strategy }) => {
            show_strategy("updated strategy", &strategy, json);
            exit::OK
        }
        Ok(other) => unexpected(&other, json),
        Err(code) => code,
    }
}

pub async fn delete(socket: &Path, args: &DeleteArgs) -> i32 {
    let json = args.output.json;
    let strategy_id = args.id.clone();
    match request(socket, json, AdminRequest::DeleteStrategy { strategy_id }).await {
        Ok(AdminResponse::StrategyDeleted { strategy_id }) => {
            if json {
                print_json(&serde_json::json!({ "deleted": strategy_id }));
            } else {
                out!("deleted strategy {strategy_id}");
            }
            exit::OK
        }
        Ok(other) => unexpected(&other, json),
        Err(code) => code,
    }
}

/// A strategy as JSON, or a heading and one aligned line per field.
pub fn show_strategy(heading: &str, strategy: &Value, json: bool) {
    if json {
        print_json(strategy);
        return;
    }
    out!("{heading} {}", text(strategy, "strategyId"));
    print_fields(&strategy_fields(strategy));
}

/// Every field of a strategy in the runbook's units.
pub fn strategy_fields(strategy: &Value) -> Vec<(&'static str, String)> {
    let list = |key: &str| -> String {
        let items: Vec<String> = strategy[key]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|item| match item {
                        Value::String(wallet) => wallet.clone(),
                        entry => format!(
                            "{}={}",
                            entry["wallet"].as_str().unwrap_or("?"),
                            entry["weight"]
                        ),
                    })
                    .collect()
            })
            .unwrap_or_default();
        if items.is_empty() {
            "-".to_string()
        } else {
            items.join(", ")
        }
    };
    let reset = match strategy["keyLimitReset"].as_str() {
        Some(period) => format!("{period} (allowance mode)"),
        None => "null (credits mode)".to_string(),
    };
    let expiry = match strategy["keyExpiryDays"].as_u64() {
        Some(0) => "never".to_string(),
        Some(days) => format!("{days} days"),
        None => "-".to_string(),
    };
    vec![
        ("status", text(strategy, "status")),
        ("owner wallet", text(strategy, "ownerWallet")),
        ("token mint", text(strategy, "tokenMint")),
        ("fee source", text(strategy, "feeSource")),
        (
            "threshold",
            or_dash(strategy["thresholdLamports"].as_u64(), format::sol),
        ),
        (
            "slippage",
            or_dash(strategy["slippageBps"].as_u64(), |bps| format!("{bps} bps")),
        ),
        ("distribution", distribution(strategy)),
        ("custom weights", list("customWeights")),
        ("exclusions", list("exclusions")),
        (
            "min holding",
            format!("{} base units", text(strategy, "minHoldingBaseUnits")),
        ),
        (
            "key limit",
            or_dash(strategy["maxGrantMicroUsd"].as_i64(), |micro| {
                format!("{} per holder per run", format::usd(micro))
            }),
        ),
        (
            "max key limit",
            or_dash(strategy["maxKeyLimitMicroUsd"].as_i64(), format::usd),
        ),
        ("key limit reset", reset),
        ("key expiry", expiry),
        (
            "reserve",
            or_dash(strategy["reserveBps"].as_u64(), format::percent),
        ),
        ("schedule", format!("{} (UTC)", text(strategy, "schedule"))),
        (
            "carry-over",
            or_dash(strategy["carryOverMicroUsd"].as_i64(), format::usd),
        ),
        ("created", text(strategy, "createdAt")),
        ("updated", text(strategy, "updatedAt")),
    ]
}

fn distribution(strategy: &Value) -> String {
    let mode = text(strategy, "distributionMode");
    match strategy["topN"].as_u64() {
        Some(n) if mode == "TOP_N_HOLDERS" => format!("{mode} (top {n})"),
        _ => mode,
    }
}

/// A string field, or `-`.
pub fn text(value: &Value, key: &str) -> String {
    match &value[key] {
        Value::String(text) => text.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}
