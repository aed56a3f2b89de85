//! Unit tests of the store: opening and migrating, the embedded-migration list, and the
//! invariants the schema itself enforces (append-only audit, RESTRICT, partial unique indexes,
//! CHECKs, the timestamp format).

use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use sqlx::{Row, SqlitePool};

use super::*;

const OWNER: &str = "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU";
const MINT: &str = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";
const HOLDER_A: &str = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM";
const HOLDER_B: &str = "HN7cABqLq46Es1jh92dQQisAq662SmxELLLsHHe4YWrH";
const SIG_1: &str =
    "5VERv8NMvzbJMEkV8xnrLkEaWRtSz9CosKDYjCJjBRnbJLgp8uirBgmQpjKhoR4tjF3ZpRzrFmBV6UjKdiSZkQUW";
const SIG_2: &str =
    "4sGjMW1sUnHzSxGspuhpqLDx6wiyjNtZAMdL4VZHirAn4sGjMW1sUnHzSxGspuhpqLDx6wiyjNtZAMdL4VZHirAn";
const SIG_3: &str =
    "3sGjMW1sUnHzSxGspuhpqLDx6wiyjNtZAMdL4VZHirAn4sGjMW1sUnHzSxGspuhpqLDx6wiyjNtZAMdL4VZHirAn";

async fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("creditbrain.db"))
        .await
        .expect("open");
    (dir, store)
}

/// `Sqlx` errors pass through `StoreError::from`, as the store's query functions will.
async fn exec(pool: &SqlitePool, sql: &'static str) -> Result<u64, StoreError> {
    Ok(sqlx::query(sql).execute(pool).await?.rows_affected())
}

async fn insert_strategy(pool: &SqlitePool, strategy_id: &str) {
    let now = now_timestamp();
    sqlx::query(
        "INSERT INTO strategies (strategy_id, owner_wallet, token_mint, threshold_lamports,
             slippage_bps, distribution_mode, top_n, max_grant_micro_usd, max_key_limit_micro_usd,
             key_limit_reset, key_expiry_days, reserve_bps, cron_schedule, created_at, updated_at)
         VALUES (?, ?, ?, 5000000000, 50, 'TOP_N_HOLDERS', 100, 10000000, 100000000,
             'monthly', 365, 1000, '0 */6 * * *', ?, ?)",
    )
    .bind(strategy_id)
    .bind(OWNER)
    .bind(MINT)
    .bind(&now)
    .bind(&now)
    .execute(pool)
    .await
    .expect("insert strategy");
}

/// Inserts a run in `state`, filling the columns the CHECKs tie to it.
async fn insert_run(
    pool: &SqlitePool,
    run_id: &str,
    strategy_id: &str,
    state: &str,
    started_at: &str,
) -> Result<(), StoreError> {
    let terminal = state == "COMPLETE" || state == "FAILED";
    let failed = state == "FAILED";
    sqlx::query(
        "INSERT INTO runs (run_id, strategy_id, state, triggered_by, started_at, finished_at,
             updated_at, error_code, error_detail, error_failed_state)
         VALUES (?, ?, ?, 'manual', ?, ?, ?, ?, ?, ?)",
    )
    .bind(run_id)
    .bind(strategy_id)
    .bind(state)
    .bind(started_at)
    .bind(terminal.then(|| started_at.to_owned()))
    .bind(started_at)
    .bind(failed.then_some("SWAP_TX_FAILED"))
    .bind(failed.then(|| format!("detail of {run_id}")))
    .bind(failed.then_some("SWAPPING"))
    .execute(pool)
    .await?;
    Ok(())
}

async fn insert_key(
    pool: &SqlitePool,
    key_hash: &str,
    holder: &str,
    status: &str,
) -> Result<(), StoreError> {
    let now = now_timestamp();
    sqlx::query(
        "INSERT INTO user_keys (key_hash, strategy_id, holder_wallet, name, limit_micro_usd,
             status, encrypted_key, key_nonce, created_at, updated_at)
         VALUES (?, 's1', ?, ?, 10000000, ?, x'00ff', x'0102', ?, ?)",
    )
    .bind(key_hash)
    .bind(holder)
    .bind(format!("creditbrain-s1-{holder}"))
    .bind(status)
    .bind(&now)
    .bind(&now)
    .execute(pool)
    .await?;
    Ok(())
}

async fn insert_tx(
    pool: &SqlitePool,
    signature: &str,
    purpose: &str,
    attempt: i64,
) -> Result<(), StoreError> {
    let now = now_timestamp();
    sqlx::query(
        "INSERT INTO solana_transactions (run_id, phase, purpose, attempt, signature, signed_tx,
             last_valid_block_height, created_at, updated_at)
         VALUES ('r1', 'CLAIMING', ?, ?, ?, x'01020304', 1000, ?, ?)",
    )
    .bind(purpose)
    .bind(attempt)
    .bind(signature)
    .bind(&now)
    .bind(&now)
    .execute(pool)
    .await?;
    Ok(())
}

fn is_timestamp_shape(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 24
        && text.ends_with('Z')
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[13] == b':'
        && bytes[16] == b':'
        && bytes[19] == b'.'
        && [0..4, 5..7, 8..10, 11..13, 14..16, 17..19, 20..23]
            .into_iter()
            .all(|range| bytes[range].iter().all(u8::is_ascii_digit))
}

#[tokio::test]
async fn store_open_creates_nested_dir_migrates_and_sets_pragmas() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not/yet/there/creditbrain.db");
    let store = Store::open(&path).await.expect("open");
    assert!(path.is_file());

    let pool = store.pool();
    let applied: Vec<(i64, String, bool)> =
        sqlx::query_as("SELECT version, description, success FROM _sqlx_migrations")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(applied, vec![(1, "initial".to_owned(), true)]);

    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
         AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            "allocations",
            "audit_log",
            "daily_run_counts",
            "pool_snapshots",
            "reveal_challenges",
            "run_leases",
            "runs",
            "settings",
            "solana_transactions",
            "strategies",
            "strategy_custom_weights",
            "strategy_exclusions",
            "usage_snapshots",
            "user_keys",
        ]
    );

    // Pragmas are per connection: hold several at once so more than one is checked.
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(pool.acquire().await.unwrap());
    }
    for conn in &mut conns {
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        assert_eq!(journal, "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        assert_eq!(fk, 1);
        let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        assert_eq!(busy, 5000);
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        assert_eq!(synchronous, 2, "FULL: commits survive power loss");
    }
    drop(conns);

    store.ping().await.expect("ping");
    store.close().await;
    assert!(
        store.ping().await.is_err(),
        "a closed store refuses queries"
    );
}

#[tokio::test]
async fn store_open_twice_is_a_noop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("creditbrain.db");
    let store = Store::open(&path).await.unwrap();
    insert_strategy(store.pool(), "s1").await;
    let installed_on: String =
        sqlx::query_scalar("SELECT CAST(installed_on AS TEXT) FROM _sqlx_migrations")
            .fetch_one(store.pool())
            .await
            .unwrap();
    store.close().await;

    let store = Store::open(&path).await.expect("second open");
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT version, CAST(installed_on AS TEXT) FROM _sqlx_migrations ORDER BY version",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(rows, vec![(1, installed_on)], "nothing re-applied");
    let strategies: i64 = sqlx::query_scalar("SELECT count(*) FROM strategies")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(strategies, 1, "data kept");
    let kill_switches: i64 =
        sqlx::query_scalar("SELECT count(*) FROM settings WHERE key = 'kill_switch'")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(kill_switches, 1, "seed not duplicated");
    store.close().await;
}

#[tokio::test]
async fn store_open_refuses_an_edited_landed_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("creditbrain.db");
    let store = Store::open(&path).await.unwrap();
    // Simulate a database migrated with different 0001 content.
    exec(
        store.pool(),
        "UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 1",
    )
    .await
    .unwrap();
    store.close().await;

    let error = Store::open(&path).await.expect_err("checksum mismatch");
    assert!(
        matches!(error, StoreError::Migrate(MigrateError::VersionMismatch(1))),
        "{error:?}"
    );
}

#[tokio::test]
async fn store_open_names_the_path_it_cannot_create() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let error = Store::open(&blocker.join("sub/creditbrain.db"))
        .await
        .expect_err("parent is a file");
    assert!(matches!(error, StoreError::Io { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&*blocker.to_string_lossy()),
        "{error}"
    );
}

#[tokio::test]
async fn store_close_checkpoints_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("creditbrain.db");
    let store = Store::open(&path).await.unwrap();
    insert_strategy(store.pool(), "s1").await;
    let mut wal = path.clone().into_os_string();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    assert!(wal.exists(), "WAL in use while open");
    store.close().await;
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "WAL checkpointed and removed on close");

    // The data is in the main file: readable without the WAL.
    let store = Store::open(&path).await.unwrap();
    let strategies: i64 = sqlx::query_scalar("SELECT count(*) FROM strategies")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(strategies, 1);
    store.close().await;
}

#[tokio::test]
async fn store_busy_database_maps_to_locked() {
    let (dir, store) = temp_store().await;
    insert_strategy(store.pool(), "s1").await;
    let mut writer = store.begin_write().await.expect("write lock");
    sqlx::query("UPDATE strategies SET status = 'paused'")
        .execute(&mut *writer)
        .await
        .unwrap();

    // A second connection that does not wait: the write lock is held, so SQLITE_BUSY.
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("creditbrain.db"))
        .busy_timeout(Duration::ZERO);
    let other = SqlitePool::connect_with(options).await.unwrap();
    let error: StoreError = sqlx::query("UPDATE strategies SET status = 'active'")
        .execute(&other)
        .await
        .expect_err("locked")
        .into();
    assert!(error.is_locked(), "{error:?}");
    assert!(!error.is_unique_violation());

    writer.commit().await.unwrap();
    exec(&other, "UPDATE strategies SET status = 'active'")
        .await
        .expect("free again");
    other.close().await;
    store.close().await;
}

#[tokio::test]
async fn store_runbook_failed_runs_query_works() {
    let (_dir, store) = temp_store().await;
    let pool = store.pool();
    insert_strategy(pool, "s1").await;
    let base = Utc.with_ymd_and_hms(2026, 11, 28, 4, 0, 0).unwrap();
    // 12 failed runs, one minute apart, inserted out of order; completed runs in between.
    for i in [3, 11, 0, 7, 1, 9, 2, 10, 4, 6, 5, 8] {
        let started = format_timestamp(base + chrono::Duration::minutes(i));
        insert_run(pool, &format!("failed-{i:02}"), "s1", "FAILED", &started)
            .await
            .unwrap();
    }
    for i in 0..3 {
        let started = format_timestamp(base + chrono::Duration::minutes(100 + i));
        insert_run(pool, &format!("done-{i}"), "s1", "COMPLETE", &started)
            .await
            .unwrap();
    }

    const RUNBOOK: &str = "SELECT run_id, state, error_code, error_detail FROM runs WHERE state = 'FAILED' ORDER BY started_at DESC LIMIT 10;";
    let rows = sqlx::query(RUNBOOK)
        .fetch_all(pool)
        .await
        .expect("runbook query");
    let got: Vec<(String, String, String, String)> = rows
        .iter()
        .map(|row| {
            (
                row.get("run_id"),
                row.get("state"),
                row.get("error_code"),
                row.get("error_detail"),
            )
        })
        .collect();
    let expected: Vec<_> = (2..12)
        .rev()
        .map(|i| {
            (
                format!("failed-{i:02}"),
                "FAILED".to_owned(),
                "SWAP_TX_FAILED".to_owned(),
                format!("detail of failed-{i:02}"),
            )
        })
        .collect();
    assert_eq!(got, expected);

    // And it is served by an index, not a scan of every run.
    let plan: Vec<String> = sqlx::query(
        "EXPLAIN QUERY PLAN SELECT run_id, state, error_code, error_detail FROM runs WHERE state = 'FAILED' ORDER BY started_at DESC LIMIT 10",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .iter()
    .map(|row| row.get::<String, _>("detail"))
    .collect();
    assert!(
        plan.iter().any(|d| d.contains("runs_state_started")),
        "{plan:?}"
    );
    store.close().await;
}

#[tokio::test]
async fn store_audit_log_is_append_only() {
    let (_dir, store) = temp_store().await;
    let pool = store.pool();
    insert_strategy(pool, "s1").await;
    insert_run(pool, "r1", "s1", "PENDING", &now_timestamp())
        .await
        .unwrap();
    let now = now_timestamp();
    for (run_id, action) in [
        (Some("r1"), "transition:PENDING->CLAIMING"),
        (None, "kill_switch:on"),
    ] {
        sqlx::query(
            "INSERT INTO audit_log (run_id, phase, action, details, created_at)
             VALUES (?, 'PENDING', ?, '{\"by\":\"cli\"}', ?)",
        )
        .bind(run_id)
        .bind(action)
        .bind(&now)
        .execute(pool)
        .await
        .expect("append");
    }

    let update = exec(pool, "UPDATE audit_log SET action = 'rewritten'").await;
    let error = update.expect_err("UPDATE refused");
    assert!(error.to_string().contains("append-only"), "{error}");
    let delete = exec(pool, "DELETE FROM audit_log").await;
    let error = delete.expect_err("DELETE refused");
    assert!(error.to_string().contains("append-only"), "{error}");

    let rows: Vec<(i64, Option<String>, String)> =
        sqlx::query_as("SELECT id, run_id, action FROM audit_log ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![
            (
                1,
                Some("r1".to_owned()),
                "transition:PENDING->CLAIMING".to_owned()
            ),
            (2, None, "kill_switch:on".to_owned()),
        ]
    );

    let bad_json = exec(
        pool,
        "INSERT INTO audit_log (action, details, created_at)
         VALUES ('x', 'not json', '2026-11-28T04:18:06.123Z')",
    )
    .await;
    assert!(
        bad_json
            .expect_err("details must be JSON")
            .is_check_violation()
    );
    store.close().await;
}

#[tokio::test]
async fn store_deleting_a_strategy_with_runs_is_refused() {
    let (_dir, store) = temp_store().await;
    let pool = store.pool();
    insert_strategy(pool, "s1").await;
    insert_run(pool, "r1", "s1", "COMPLETE", &now_timestamp())
        .await
        .unwrap();
    let error = exec(pool, "DELETE FROM strategies WHERE strategy_id = 's1'")
        .await
        .expect_err("RESTRICT");
    assert!(error.is_foreign_key_violation(), "{error:?}");

    // A strategy without history goes, with its configuration rows.
    insert_strategy(pool, "s2").await;
    let now = now_timestamp();
    sqlx::query(
        "INSERT INTO strategy_exclusions (strategy_id, wallet, created_at) VALUES ('s2', ?, ?)",
    )
    .bind(HOLDER_A)
    .bind(&now)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO strategy_custom_weights (strategy_id, wallet, weight, created_at)
         VALUES ('s2', ?, 3, ?)",
    )
    .bind(HOLDER_B)
    .bind(&now)
    .execute(pool)
    .await
    .unwrap();
    assert_eq!(
        exec(pool, "DELETE FROM strategies WHERE strategy_id = 's2'")
            .await
            .unwrap(),
        1
    );
    let leftovers: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM strategy_exclusions)
              + (SELECT count(*) FROM strategy_custom_weights)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(leftovers, 0, "configuration cascades");

    // A run for an unknown strategy is refused too.
    let error = insert_run(pool, "r9", "nope", "PENDING", &now_timestamp())
        .await
        .expect_err("FK");
    assert!(error.is_foreign_key_violation(), "{error:?}");
    store.close().await;
}

#[tokio::test]
async fn store_one_current_key_per_holder() {
    let (_dir, store) = temp_store().await;
    let pool = store.pool();
    insert_strategy(pool, "s1").await;
    insert_key(pool, "hash-a1", HOLDER_A, "active")
        .await
        .unwrap();

    let error = insert_key(pool, "hash-a2", HOLDER_A, "active")
        .await
        .expect_err("two active keys for one holder");
    assert!(error.is_unique_violation(), "{error:?}");
    let error = insert_key(pool, "hash-a2", HOLDER_A, "exhausted")
        .await
        .expect_err("an exhausted key is still the current one");
    assert!(error.is_unique_violation(), "{error:?}");
    insert_key(pool, "hash-b1", HOLDER_B, "active")
        .await
        .expect("another holder");

    // After revocation the holder can be provisioned again (the old service could not).
    exec(
        pool,
        "UPDATE user_keys SET status = 'revoked' WHERE key_hash = 'hash-a1'",
    )
    .await
    .unwrap();
    insert_key(pool, "hash-a2", HOLDER_A, "active")
        .await
        .expect("new key after revoke");
    exec(
        pool,
        "UPDATE user_keys SET status = 'rotated', replaced_by_hash = 'hash-a3'
         WHERE key_hash = 'hash-a2'",
    )
    .await
    .expect_err("replaced_by_hash must name a known key");
    exec(
        pool,
        "UPDATE user_keys SET status = 'rotated' WHERE key_hash = 'hash-a2'",
    )
    .await
    .unwrap();
    insert_key(pool, "hash-a3", HOLDER_A, "active")
        .await
        .expect("new key after rotation");
    let current: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM user_keys WHERE holder_wallet = ? AND status IN ('active', 'exhausted')",
    )
    .bind(HOLDER_A)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(current, 1);

    // Reveal erases the ciphertext: a revealed key holding ciphertext is refused.
    let revealed = exec(
        pool,
        "UPDATE user_keys SET revealed_at = '2026-11-28T04:18:06.123Z' WHERE key_hash = 'hash-a3'",
    )
    .await;
    assert!(revealed.expect_err("ciphertext kept").is_check_violation());
    exec(
        pool,
        "UPDATE user_keys SET revealed_at = '2026-11-28T04:18:06.123Z', encrypted_key = NULL,
             key_nonce = NULL WHERE key_hash = 'hash-a3'",
    )
    .await
    .expect("reveal and erase");
    store.close().await;
}

#[tokio::test]
async fn store_one_live_solana_transaction_per_purpose() {
    let (_dir, store) = temp_store().await;
    let pool = store.pool();
    insert_strategy(pool, "s1").await;
    insert_run(pool, "r1", "s1", "CLAIMING", &now_timestamp())
        .await
        .unwrap();
    insert_tx(pool, SIG_1, "claim:pos-1", 1).await.unwrap();

    let error = insert_tx(pool, SIG_2, "claim:pos-1", 2)
        .await
        .expect_err("a second live tx for the same purpose");
    assert!(error.is_unique_violation(), "{error:?}");
    insert_tx(pool, SIG_2, "claim:pos-2", 1)
        .await
        .expect("another purpose");
    let error = insert_tx(pool, SIG_2, "claim:pos-3", 1)
        .await
        .expect_err("a signature is recorded once");
    assert!(error.is_unique_violation(), "{error:?}");

    // Landed needs a slot; landed is still live.
    let landed = exec(
        pool,
        "UPDATE solana_transactions SET status = 'landed' WHERE purpose = 'claim:pos-1'",
    )
    .await;
    assert!(landed.expect_err("slot missing").is_check_violation());
    exec(
        pool,
        "UPDATE solana_transactions SET status = 'landed', slot = 42 WHERE purpose = 'claim:pos-1'",
    )
    .await
    .unwrap();
    assert!(
        insert_tx(pool, SIG_3, "claim:pos-1", 2)
            .await
            .expect_err("landed is live")
            .is_unique_violation()
    );

    // Once expired, a fresh transaction for that purpose may be built.
    exec(
        pool,
        "UPDATE solana_transactions SET status = 'expired', slot = NULL WHERE purpose = 'claim:pos-1'",
    )
    .await
    .unwrap();
    insert_tx(pool, SIG_3, "claim:pos-1", 2)
        .await
        .expect("rebuild after expiry");
    store.close().await;
}

#[tokio::test]
async fn store_one_active_run_per_strategy() {
    let (_dir, store) = temp_store().await;
    let pool = store.pool();
    insert_strategy(pool, "s1").await;
    insert_run(pool, "r1", "s1", "SWAPPING", &now_timestamp())
        .await
        .unwrap();
    let error = insert_run(pool, "r2", "s1", "PENDING", &now_timestamp())
        .await
        .expect_err("second active run");
    assert!(error.is_unique_violation(), "{error:?}");
    // A policy-blocked run is recorded FAILED and does not count as active.
    insert_run(pool, "r3", "s1", "FAILED", &now_timestamp())
        .await
        .expect("recorded failure");
    let finish = "UPDATE runs SET state = 'COMPLETE', finished_at = updated_at WHERE run_id = 'r1'";
    exec(pool, finish).await.unwrap();
    insert_run(pool, "r2", "s1", "PENDING", &now_timestamp())
        .await
        .expect("after the first completed");
    store.close().await;
}

#[tokio::test]
async fn store_checks_reject_bad_values() {
    let (_dir, store) = temp_store().await;
    let pool = store.pool();
    insert_strategy(pool, "s1").await;

    let bad_state = insert_run(pool, "r0", "s1", "FUNDING", &now_timestamp()).await;
    assert!(bad_state.expect_err("FUNDING is gone").is_check_violation());
    let sqlite_format = insert_run(pool, "r0", "s1", "PENDING", "2026-11-28 04:18:06").await;
    assert!(
        sqlite_format
            .expect_err("datetime('now') format refused")
            .is_check_violation()
    );

    insert_run(pool, "r1", "s1", "CLAIMING", &now_timestamp())
        .await
        .unwrap();
    for (what, sql) in [
        (
            "negative amount",
            "UPDATE runs SET claimed_lamports = -1 WHERE run_id = 'r1'",
        ),
        (
            "FAILED without error columns",
            "UPDATE runs SET state = 'FAILED', finished_at = updated_at WHERE run_id = 'r1'",
        ),
        (
            "error columns left on a running run",
            "UPDATE runs SET error_code = 'X' WHERE run_id = 'r1'",
        ),
        (
            "COMPLETE without finished_at",
            "UPDATE runs SET state = 'COMPLETE' WHERE run_id = 'r1'",
        ),
        (
            "I2: allocated + carry_out must equal budget",
            "UPDATE runs SET budget_micro_usd = 100, allocated_micro_usd = 60,
                 carry_out_micro_usd = 30 WHERE run_id = 'r1'",
        ),
        (
            "bad strategy status",
            "UPDATE strategies SET status = 'ERROR'",
        ),
        (
            "ceiling not whole cents",
            "UPDATE strategies SET max_grant_micro_usd = 10000001",
        ),
        (
            "negative carry-over",
            "UPDATE strategies SET carry_over_micro_usd = -5",
        ),
        (
            "bad limit reset",
            "UPDATE strategies SET key_limit_reset = 'yearly'",
        ),
        (
            "kill switch must be true or false",
            "UPDATE settings SET value = 'yes' WHERE key = 'kill_switch'",
        ),
    ] {
        let error = exec(pool, sql).await.expect_err(what);
        assert!(error.is_check_violation(), "{what}: {error:?}");
    }
    // STRICT tables: a float never lands in an INTEGER money column.
    let float = exec(
        pool,
        "UPDATE runs SET claimed_lamports = 1.5 WHERE run_id = 'r1'",
    )
    .await
    .expect_err("REAL in INTEGER column");
    assert!(float.to_string().contains("cannot store REAL"), "{float}");
    exec(
        pool,
        "UPDATE runs SET budget_micro_usd = 100, allocated_micro_usd = 70,
             carry_out_micro_usd = 30 WHERE run_id = 'r1'",
    )
    .await
    .expect("I2 holds");

    // Allocations: u64 balances as canonical decimal text, grants in whole cents.
    let insert_allocation = |wallet: &'static str, balance: &'static str, grant: i64| {
        let now = now_timestamp();
        async move {
            sqlx::query(
                "INSERT INTO allocations (run_id, holder_wallet, token_balance, weight,
                     grant_micro_usd, created_at, updated_at)
                 VALUES ('r1', ?, ?, ?, ?, ?, ?)",
            )
            .bind(wallet)
            .bind(balance)
            .bind(balance)
            .bind(grant)
            .bind(&now)
            .bind(&now)
            .execute(pool)
            .await
            .map_err(StoreError::from)
        }
    };
    for (what, balance, grant) in [
        ("above u64::MAX", "18446744073709551616", 10_000),
        ("leading zero", "0123", 10_000),
        ("not a number", "12e3", 10_000),
        ("grant not whole cents", "1000", 10_001),
        ("negative grant", "1000", -10_000),
    ] {
        let error = insert_allocation(HOLDER_A, balance, grant)
            .await
            .expect_err(what);
        assert!(error.is_check_violation(), "{what}: {error:?}");
    }
    insert_allocation(HOLDER_A, "18446744073709551615", 250_000)
        .await
        .expect("u64::MAX fits");
    let error = insert_allocation(HOLDER_A, "5", 10_000)
        .await
        .expect_err("one row per holder per run");
    assert!(error.is_unique_violation(), "{error:?}");
    let applied_without_key = exec(
        pool,
        "UPDATE allocations SET status = 'applied', applied_at = updated_at",
    )
    .await;
    assert!(
        applied_without_key
            .expect_err("an applied grant names its key")
            .is_check_violation()
    );
    let balance: String = sqlx::query_scalar("SELECT token_balance FROM allocations")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(balance.parse::<u64>().unwrap(), u64::MAX);
    store.close().await;
}

#[tokio::test]
async fn store_settings_seed_kill_switch_false() {
    let (_dir, store) = temp_store().await;
    let (value, updated_at): (String, String) =
        sqlx::query_as("SELECT value, updated_at FROM settings WHERE key = 'kill_switch'")
            .fetch_one(store.pool())
            .await
            .expect("seeded");
    assert_eq!(value, "false");
    assert!(is_timestamp_shape(&updated_at), "{updated_at}");
    store.close().await;
}

#[tokio::test]
async fn store_timestamps_have_one_format() {
    let now = now_timestamp();
    assert!(is_timestamp_shape(&now), "{now}");
    assert_eq!(now.len(), 24);
    assert!(now.ends_with('Z'));

    let t = Utc
        .with_ymd_and_hms(2026, 11, 28, 4, 18, 6)
        .unwrap()
        .checked_add_signed(chrono::Duration::microseconds(123_999))
        .unwrap();
    assert_eq!(format_timestamp(t), "2026-11-28T04:18:06.123Z", "truncated");
    let whole = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
    assert_eq!(format_timestamp(whole), "2026-01-02T03:04:05.000Z");
    assert_eq!(format_utc_date(whole), "2026-01-02");
    assert_eq!(parse_timestamp("2026-01-02T03:04:05.000Z"), Some(whole));
    assert_eq!(parse_timestamp("2026-01-02T03:04:05Z"), None);
    assert_eq!(parse_timestamp("2026-01-02 03:04:05.000"), None);

    // Text order is time order.
    let earlier = format_timestamp(whole);
    let later = format_timestamp(whole + chrono::Duration::milliseconds(1));
    assert!(earlier < later);

    // SQLite's strftime gives the same shape, and the schema accepts exactly that shape.
    let (_dir, store) = temp_store().await;
    let from_sql: String = sqlx::query_scalar("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(is_timestamp_shape(&from_sql), "{from_sql}");
    let from_rust = parse_timestamp(&now).unwrap();
    let from_sql_parsed = parse_timestamp(&from_sql).expect("same format");
    assert!((from_sql_parsed - from_rust).num_seconds().abs() < 60);
    store.close().await;
}

/// Every file in `migrations/` must be a correctly named, embedded migration, identical to the
/// embedded text; versions are 1, 2, 3 ... with no gaps.
#[tokio::test]
async fn store_every_migration_file_is_embedded() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut files: Vec<(i64, String, String)> = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("migrations directory") {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(entry.file_type().unwrap().is_file(), "{name}: not a file");
        let stem = name
            .strip_suffix(".sql")
            .unwrap_or_else(|| panic!("{name}: migrations end in .sql"));
        assert!(
            !stem.ends_with(".up") && !stem.ends_with(".down"),
            "{name}: migrations are forward-only (no .up/.down)"
        );
        let (version, description) = stem
            .split_once('_')
            .unwrap_or_else(|| panic!("{name}: expected NNNN_description.sql"));
        assert!(
            version.len() == 4 && version.bytes().all(|b| b.is_ascii_digit()),
            "{name}: version must be 4 digits"
        );
        assert!(
            !description.is_empty()
                && description
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{name}: description must be snake_case"
        );
        let sql = std::fs::read_to_string(entry.path()).unwrap();
        files.push((version.parse().unwrap(), description.replace('_', " "), sql));
    }
    files.sort_by_key(|(version, _, _)| *version);

    let embedded: Vec<(i64, String, String)> = MIGRATIONS
        .iter()
        .map(|&(v, d, s)| (v, d.to_owned(), s.to_owned()))
        .collect();
    let names = |list: &[(i64, String, String)]| -> Vec<(i64, String)> {
        list.iter().map(|(v, d, _)| (*v, d.clone())).collect()
    };
    assert_eq!(
        names(&files),
        names(&embedded),
        "migrations/ and store::MIGRATIONS differ: register each file there"
    );
    for ((version, _, on_disk), (_, _, compiled)) in files.iter().zip(&embedded) {
        assert!(
            on_disk == compiled,
            "migration {version}: embedded text differs from the file"
        );
    }
    for (i, (version, _, _)) in files.iter().enumerate() {
        assert_eq!(
            *version,
            i as i64 + 1,
            "versions are 1, 2, 3 ... without gaps"
        );
    }

    // sqlx's own reading of the directory (what `sqlx migrate` would apply) matches the
    // embedded migrator: same versions, descriptions, checksums and transaction mode.
    let from_dir = Migrator::new(dir.as_path())
        .await
        .expect("sqlx resolves migrations/");
    let summary = |m: &Migrator| -> Vec<(i64, String, Vec<u8>, bool)> {
        m.iter()
            .map(|m| {
                (
                    m.version,
                    m.description.to_string(),
                    m.checksum.to_vec(),
                    m.no_tx,
                )
            })
            .collect()
    };
    assert_eq!(summary(&from_dir), summary(&migrator()));
}
