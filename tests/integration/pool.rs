//! The PoolActor in the daemon: headroom from the OpenRouter fake's credits and the key ledger
//! (invariant I1), readings recorded, runway from measured usage.

use std::time::Duration;

use creditbrain_actors::pool::pool_status;
use creditbrain_actors::store::keys::NewUserKey;

use crate::support::TestDaemon;

const USD: i64 = 1_000_000;

async fn insert_strategy(daemon: &TestDaemon) -> String {
    let now = creditbrain_actors::store::now_timestamp();
    sqlx::query(
        "INSERT INTO strategies (strategy_id, owner_wallet, token_mint, threshold_lamports,
            slippage_bps, distribution_mode, max_grant_micro_usd, max_key_limit_micro_usd,
            key_expiry_days, reserve_bps, cron_schedule, created_at, updated_at)
         VALUES ('pool-test', 'So11111111111111111111111111111111111111112',
                 'EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v', 0, 50, 'TOP_N_HOLDERS',
                 10000000, 100000000, 365, 1000, '0 */6 * * *', ?, ?)",
    )
    .bind(&now)
    .bind(&now)
    .execute(daemon.daemon.handle.store.pool())
    .await
    .unwrap();
    "pool-test".to_string()
}

fn key(strategy: &str, hash: &str, wallet: &str, limit: i64, reset: Option<&str>) -> NewUserKey {
    NewUserKey {
        key_hash: hash.into(),
        strategy_id: strategy.into(),
        holder_wallet: wallet.into(),
        name: format!("creditbrain-{strategy}-{wallet}"),
        limit_micro_usd: limit,
        limit_reset: reset.map(str::to_string),
        encrypted: None,
        expires_at: None,
    }
}

#[tokio::test]
async fn headroom_is_balance_minus_reserve_minus_promised_and_readings_give_a_runway() {
    let daemon = TestDaemon::start().await;
    let store = &daemon.daemon.handle.store;
    let strategy = insert_strategy(&daemon).await;
    // A credits key with $10 limit, $4 used: $6 promised. An allowance key of $5: all promised.
    let credits_key = key(
        &strategy,
        "hash-a",
        "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T",
        10 * USD,
        None,
    );
    store.insert_user_key(&credits_key).await.unwrap();
    store
        .set_key_usage("hash-a", 4 * USD, chrono::Utc::now())
        .await
        .unwrap();
    let allowance = key(
        &strategy,
        "hash-b",
        "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin",
        5 * USD,
        Some("monthly"),
    );
    store.insert_user_key(&allowance).await.unwrap();
    daemon.credits.fake.set_credits(200 * USD, 50 * USD);

    let pool = daemon.daemon.handle.pool.get().expect("pool actor running");
    let report = pool_status(&pool, 1_000, None, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(report.status.balance_micro_usd, 150 * USD);
    assert_eq!(report.status.promised_micro_usd, 11 * USD);
    assert_eq!(report.status.reserve_micro_usd, 15 * USD);
    assert_eq!(report.status.headroom_micro_usd, 124 * USD);
    assert_eq!(report.runway_secs, None, "one reading measures no usage");

    // Usage grows by $10 between two readings: a runway appears, from measurement alone.
    tokio::time::sleep(Duration::from_millis(20)).await;
    daemon.credits.fake.set_credits(200 * USD, 60 * USD);
    let later = pool_status(&pool, 1_000, None, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(later.status.headroom_micro_usd, 115 * USD);
    assert!(later.runway_secs.is_some(), "{later:?}");
    let history = store.pool_history(10).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].total_usage_micro_usd, 60 * USD, "newest first");
    daemon.stop().await;
}

#[tokio::test]
async fn an_unreachable_openrouter_is_an_error_with_its_code_not_a_guess() {
    let daemon = TestDaemon::start().await;
    daemon
        .credits
        .set_mode(crate::support::CreditsMode::Failing);
    let pool = daemon.daemon.handle.pool.get().unwrap();
    let error = pool_status(&pool, 1_000, None, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(error.code().starts_with("OPENROUTER_"), "{}", error.code());
    assert!(
        daemon
            .daemon
            .handle
            .store
            .pool_history(10)
            .await
            .unwrap()
            .is_empty()
    );
    daemon.stop().await;
}
