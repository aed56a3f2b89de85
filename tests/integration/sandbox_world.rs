//! The sandbox as a whole, in-process: the seeded world seen through the fakes' public APIs (DAS
//! holders, Bags positions), the control API, and the daemon configuration it produces.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use creditbrain::config::Config;
use creditbrain::sandbox::ledger::LedgerOptions;
use creditbrain::sandbox::world::{INCINERATOR, WorldOptions};
use creditbrain::sandbox::{Sandbox, SandboxOptions};
use serde_json::{Value, json};
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::Signer;

async fn small_sandbox() -> Sandbox {
    Sandbox::start(SandboxOptions {
        world: WorldOptions {
            holders: 60,
            ..WorldOptions::default()
        },
        ledger: LedgerOptions {
            slot_duration: Duration::from_millis(50),
            ..LedgerOptions::default()
        },
        ..SandboxOptions::default()
    })
    .await
    .expect("sandbox starts")
}

/// Every token account of `mint` through DAS `getTokenAccounts`, page by page.
async fn das_accounts(sandbox: &Sandbox, mint: &Pubkey, show_zero: bool) -> Vec<Value> {
    let http = reqwest::Client::new();
    let url = format!("{}/?api-key={}", sandbox.helius_url, sandbox.helius_api_key);
    let mut accounts = Vec::new();
    for page in 1.. {
        let body = json!({
            "jsonrpc": "2.0", "id": "1", "method": "getTokenAccounts",
            "params": {"mint": mint.to_string(), "page": page, "limit": 25,
                       "options": {"showZeroBalance": show_zero}}
        });
        let reply: Value = http
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let batch = reply["result"]["token_accounts"]
            .as_array()
            .expect("token_accounts")
            .clone();
        if batch.is_empty() {
            break;
        }
        accounts.extend(batch);
    }
    accounts
}

#[tokio::test]
async fn the_seeded_holder_set_exercises_every_filter() {
    let sandbox = small_sandbox().await;
    let mint = sandbox.world.token_mint;
    let visible = das_accounts(&sandbox, &mint, false).await;
    let all = das_accounts(&sandbox, &mint, true).await;
    assert!(
        all.len() > visible.len(),
        "empty accounts exist and are hidden by default"
    );
    assert!(
        visible
            .iter()
            .all(|account| account["amount"].as_u64().unwrap() > 0)
    );

    let mut per_owner: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for account in &visible {
        let entry = per_owner
            .entry(account["owner"].as_str().unwrap().to_string())
            .or_default();
        entry.0 += 1;
        entry.1 += account["amount"].as_u64().unwrap();
    }
    assert!(
        per_owner.values().any(|(accounts, _)| *accounts >= 2),
        "owners with several accounts"
    );

    let owners: BTreeSet<Pubkey> = per_owner
        .keys()
        .map(|owner| owner.parse().unwrap())
        .collect();
    let off_curve: Vec<&Pubkey> = owners.iter().filter(|owner| !owner.is_on_curve()).collect();
    assert!(
        off_curve.len() >= 2,
        "program-derived owners present: {off_curve:?}"
    );
    assert!(
        owners.contains(&INCINERATOR),
        "a protocol address holds tokens"
    );
    for wallet in &sandbox.world.holder_wallets {
        assert!(owners.contains(wallet), "holder {wallet} visible");
    }
    assert_eq!(
        owners.len(),
        sandbox.world.holder_wallets.len() + sandbox.world.excluded_owners.len(),
        "every owner is a holder or an excluded owner"
    );
}

#[tokio::test]
async fn the_signer_is_funded_and_owns_the_fee_positions() {
    let sandbox = small_sandbox().await;
    let signer = sandbox.world.signer.pubkey();
    assert_eq!(
        sandbox.ledger.lamports(&signer),
        WorldOptions::default().signer_lamports
    );
    let positions: Value = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/token-launch/claimable-positions",
            sandbox.bags_url
        ))
        .query(&[("wallet", signer.to_string())])
        .header("x-api-key", &sandbox.bags_api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let claimable: u64 = positions["response"]
        .as_array()
        .unwrap()
        .iter()
        .map(|position| {
            position["totalClaimableLamportsUserShare"]
                .as_u64()
                .unwrap()
        })
        .sum();
    let seeded: u64 = sandbox
        .world
        .positions
        .iter()
        .map(|(_, lamports)| lamports)
        .sum();
    assert_eq!(claimable, seeded);

    let summary: Value = reqwest::get(format!("{}/_sandbox", sandbox.control_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(summary["signer"], signer.to_string());
    assert_eq!(summary["signer_lamports"], sandbox.ledger.lamports(&signer));
}

#[tokio::test]
async fn the_daemon_configuration_points_at_the_fakes() {
    let sandbox = small_sandbox().await;
    let mut vars = sandbox.daemon_vars();
    vars.insert("API_AUTH_TOKEN".into(), "sandbox-token-for-test".into());
    let config = Config::from_vars(&vars).unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(config.signer_pubkey, sandbox.world.signer.pubkey());
    assert_eq!(
        config.openrouter_base_url,
        format!("{}/api/v1", sandbox.openrouter_url)
    );
    assert_eq!(
        config.bags_api_base_url,
        format!("{}/api/v1", sandbox.bags_url)
    );
    assert_eq!(
        config.distribution_token_mint,
        Some(sandbox.world.token_mint)
    );
    assert!(
        config
            .helius_rpc_url
            .expose()
            .starts_with(&sandbox.helius_url)
    );
    assert_eq!(config.solana_rpc_url.expose(), sandbox.rpc_url);
}
