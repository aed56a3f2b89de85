//! `list-keys` (holders' keys with limits and usage; never a plaintext, which only the holder's
//! signed reveal ever sees) and `reconcile` (the ledger against OpenRouter, optionally repaired).

use std::path::Path;

use clap::Args;
use serde_json::Value;

use super::exit;
use super::format::{self, Table, or_dash, print_json};
use super::session::{OutputArgs, request, unexpected};
use crate::admin::protocol::{AdminRequest, AdminResponse, ReconcileReply};
use crate::ops::KeyView;

/// `creditbrain list-keys`.
#[derive(Args, Debug)]
pub struct ListKeysArgs {
    /// Only this strategy's keys.
    #[arg(long, value_name = "STRATEGY_ID")]
    pub strategy: Option<String>,
    /// Only this holder's keys.
    #[arg(long, value_name = "WALLET")]
    pub wallet: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `creditbrain reconcile`.
#[derive(Args, Debug)]
pub struct ReconcileArgs {
    /// Repair what can be repaired (missing keys, orphans, limit mismatches); audited.
    #[arg(long)]
    pub fix: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub async fn list_keys(socket: &Path, args: &ListKeysArgs) -> i32 {
    let json = args.output.json;
    let request_message = AdminRequest::ListKeys {
        strategy_id: args.strategy.clone(),
        wallet: args.wallet.clone(),
    };
    let keys = match request(socket, json, request_message).await {
        Ok(AdminResponse::Keys { keys }) => keys,
        Ok(other) => return unexpected(&other, json),
        Err(code) => return code,
    };
    if json {
        print_json(&keys);
    } else {
        print_keys(&keys);
    }
    exit::OK
}

fn print_keys(keys: &[KeyView]) {
    if keys.is_empty() {
        out!("no keys");
        return;
    }
    let mut table = Table::new(&[
        "KEY HASH", "STATUS", "LIMIT", "USAGE", "RESET", "REVEAL", "EXPIRES", "STRATEGY", "HOLDER",
    ]);
    for key in keys {
        let reveal = match (&key.revealed_at, key.awaiting_reveal) {
            (_, true) => "awaiting".to_string(),
            (Some(at), false) => format!("revealed {at}"),
            (None, false) => "-".to_string(),
        };
        table.row(vec![
            key.key_hash.clone(),
            key.status.clone(),
            format::usd(key.limit_micro_usd),
            format::usd(key.usage_micro_usd),
            or_dash(key.limit_reset.clone(), |reset| reset),
            reveal,
            or_dash(key.expires_at.clone(), |at| at),
            key.strategy_id.clone(),
            key.holder_wallet.clone(),
        ]);
    }
    table.print(0);
    let active = keys.iter().filter(|key| key.status == "active").count();
    out!("{} key(s), {active} active", keys.len());
}

pub async fn reconcile(socket: &Path, args: &ReconcileArgs) -> i32 {
    let json = args.output.json;
    let reply = match request(socket, json, AdminRequest::Reconcile { fix: args.fix }).await {
        Ok(AdminResponse::Reconciled(reply)) => reply,
        Ok(other) => return unexpected(&other, json),
        Err(code) => return code,
    };
    if json {
        print_json(&reply);
    } else {
        print_reconcile(&reply);
    }
    if reply.drift_remaining == 0 {
        exit::OK
    } else {
        exit::FAILURE
    }
}

/// The report's categories: (JSON list, heading, what it means).
const CATEGORIES: [(&str, &str, &str); 6] = [
    (
        "missing",
        "missing",
        "current in the ledger, absent on OpenRouter",
    ),
    (
        "orphaned",
        "orphaned",
        "on OpenRouter with a holder's name, unknown to the ledger",
    ),
    (
        "limitMismatch",
        "limit mismatch",
        "OpenRouter's limit differs from the ledger's",
    ),
    (
        "duplicateNames",
        "duplicate names",
        "several OpenRouter keys for one holder (needs a person)",
    ),
    (
        "disabled",
        "disabled",
        "current in the ledger, disabled on OpenRouter",
    ),
    (
        "pendingDelete",
        "pending delete",
        "rotated or revoked, still on OpenRouter (the rotation pass deletes it)",
    ),
];

fn print_reconcile(reply: &ReconcileReply) {
    let report = &reply.report;
    let count = |key: &str| report[key].as_u64().unwrap_or(0);
    let mode = if report["fixRequested"] == true {
        "with --fix"
    } else {
        "report only"
    };
    out!(
        "reconcile ({mode}): {} OpenRouter keys, {} current ledger keys, {} ignored",
        count("openrouterKeys"),
        count("ledgerCurrentKeys"),
        count("ignoredKeys"),
    );
    let width = CATEGORIES
        .iter()
        .map(|(_, heading, _)| heading.len())
        .max()
        .unwrap_or(0);
    for (key, heading, meaning) in CATEGORIES {
        let items = report[key].as_array().map(Vec::as_slice).unwrap_or(&[]);
        out!("  {heading:width$}  {:>4}  {meaning}", items.len());
        for item in items {
            out!("      {}", drift_item(item));
        }
    }
    let counts = &report["counts"];
    if report["fixRequested"] == true {
        let n = |key: &str| counts[key].as_u64().unwrap_or(0);
        out!(
            "repairs: {} fixed, {} deferred, {} skipped, {} failed",
            n("fixed"),
            n("deferred"),
            n("skipped"),
            n("failed")
        );
    }
    match reply.drift_remaining {
        0 => out!("no drift"),
        remaining if report["fixRequested"] == true => {
            out!("{remaining} finding(s) remain; see above")
        }
        remaining => {
            out!("{remaining} finding(s); `creditbrain reconcile --fix` repairs what it can")
        }
    }
}

/// One finding on one line: the key, the holder, the amounts, and what the repair did.
fn drift_item(item: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(hashes) = item["keyHashes"].as_array() {
        parts.push(format!("name {}", item["name"].as_str().unwrap_or("?")));
        let hashes: Vec<&str> = hashes.iter().filter_map(Value::as_str).collect();
        parts.push(format!("keys {}", hashes.join(", ")));
    }
    if let Some(hash) = item["keyHash"].as_str() {
        parts.push(format!("key {hash}"));
    }
    if let Some(wallet) = item["holderWallet"].as_str() {
        parts.push(format!("holder {wallet}"));
    }
    if let Some(strategy) = item["strategyId"].as_str() {
        parts.push(format!("strategy {strategy}"));
    }
    for (key, label) in [
        ("ledgerLimitMicroUsd", "ledger limit"),
        ("openrouterLimitMicroUsd", "OpenRouter limit"),
        ("limitMicroUsd", "limit"),
        ("usageMicroUsd", "usage"),
    ] {
        // An explicit null limit means OpenRouter has no limit on the key.
        match item.get(key) {
            Some(Value::Null) => parts.push(format!("{label} none")),
            Some(value) => {
                if let Some(micro) = value.as_i64() {
                    parts.push(format!("{label} {}", format::usd(micro)));
                }
            }
            None => {}
        }
    }
    if let Some(status) = item["status"].as_str() {
        parts.push(status.to_string());
    }
    if let Some(fix) = item.get("fix").filter(|fix| !fix.is_null()) {
        let outcome = fix["outcome"].as_str().unwrap_or("?");
        let why = fix["reason"]
            .as_str()
            .or_else(|| fix["message"].as_str())
            .map(|why| format!(" ({why})"))
            .unwrap_or_default();
        parts.push(format!("→ {outcome}{why}"));
    }
    parts.join("  ")
}
