//! KeyMaintenance against the sandbox OpenRouter fake (real HTTP on loopback, through a supervised
//! OpenRouterActor) and a real SQLite store: reconcile reports each kind of drift, changes nothing
//! without `fix` and repairs what it may with it; rotation replaces old keys with their remaining
//! limit and a sealed plaintext, finishes an interrupted rotation, and retries a failed delete.

use std::sync::Arc;
use std::time::Duration;

use creditbrain::sandbox::faults::{ErrorStyle, Fault, FaultMode, FaultRule, Faults};
use creditbrain::sandbox::openrouter::{KeySnapshot, LimitReset as FakeReset, OpenRouterFake};
use creditbrain::sandbox::serve_on_loopback;
use creditbrain_actors::keys_maintenance::{
    self, FixOutcome, KeyMaintenance, KeyMaintenanceArgs, KeyMaintenanceMsg, ReconcileReport,
};
use creditbrain_actors::keyvault::{KeyVault, Sealed};
use creditbrain_actors::openrouter::{
    CreateKey, KeyUpdate, LimitReset, OpenRouterActor, OpenRouterArgs, OpenRouterClient,
    OpenRouterMsg,
};
use creditbrain_actors::resilience::{Breaker, BreakerConfig, Integration, RetryPolicy};
use creditbrain_actors::run::provision::key_name;
use creditbrain_actors::secret::Secret;
use creditbrain_actors::store::allocations::{NewAllocation, insert_allocations};
use creditbrain_actors::store::keys::{KeyStatus, NewUserKey, UserKey};
use creditbrain_actors::store::runs::{NewRun, RunState, TriggeredBy};
use creditbrain_actors::store::{Store, now_timestamp};
use creditbrain_actors::supervisor::{
    ActorSlot, ChildSpec, RestartCounts, RestartPolicy, Supervisor, SupervisorArgs, SupervisorMsg,
};
use ractor::{Actor, ActorRef};
use solana_sdk::signature::{Keypair, Signer};
use tokio::task::JoinHandle;

use crate::support::eventually;

const MANAGEMENT_KEY: &str = "sk-or-v1-keys-maintenance-test-key-77777777";
const STRATEGY: &str = "km-strategy-1";
const USD: i64 = 1_000_000;
/// Generous for a whole job: every retry of every call it makes.
const JOB_TIMEOUT: Duration = Duration::from_secs(60);
const LONG_AGO: &str = "2020-01-01T00:00:00.000Z";
const ROTATION_AFTER: Duration = Duration::from_secs(90 * 24 * 3600);
const DELETE_ROUTE: &str = "DELETE /api/v1/keys/{hash}";

/// The fake behind its fault layer, a store on a temp database with one strategy, and an
/// OpenRouterActor under a supervisor (which publishes its slot).
struct World {
    _dir: tempfile::TempDir,
    store: Store,
    fake: OpenRouterFake,
    faults: Faults,
    /// Talks to the fake directly: changes "behind CreditBrain's back".
    client: OpenRouterClient,
    openrouter: ActorSlot<OpenRouterMsg>,
    vault: KeyVault,
    supervisor: ActorRef<SupervisorMsg>,
    server: JoinHandle<()>,
}

impl Drop for World {
    fn drop(&mut self) {
        self.supervisor.stop(None);
        self.server.abort();
    }
}

impl World {
    async fn start() -> Self {
        let fake = OpenRouterFake::new(MANAGEMENT_KEY.to_string(), 1_000 * USD);
        let faults = Faults::new();
        let router = faults.wrap("openrouter", ErrorStyle::OpenRouter, fake.router());
        let (address, server) = serve_on_loopback(router).await.expect("serve the fake");
        let client = OpenRouterClient::new(
            format!("http://{address}/api/v1"),
            Secret::new(MANAGEMENT_KEY),
            Duration::from_secs(5),
        );
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("creditbrain.db"))
            .await
            .unwrap();
        insert_strategy(&store, STRATEGY).await;

        let openrouter = ActorSlot::default();
        let args = OpenRouterArgs {
            client: client.clone(),
            // Never opens in these tests: a failing delete must not stop the next call.
            breaker: Breaker::new(
                Integration::OpenRouter,
                BreakerConfig {
                    failure_threshold: 1_000,
                    cooldown: Duration::from_secs(1),
                },
            ),
            retry: RetryPolicy {
                max_attempts: 2,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
            },
            max_concurrency: 4,
        };
        let child = ChildSpec::new("openrouter", openrouter.clone(), move || {
            (OpenRouterActor, args.clone())
        });
        let (supervisor, _join) = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                children: vec![Arc::new(child)],
                policy: RestartPolicy::default(),
                instance: format!("keys-maintenance-{}", uuid::Uuid::new_v4()),
                restart_counts: RestartCounts::default(),
            },
        )
        .await
        .expect("spawn the supervisor");
        assert!(
            openrouter.get().is_some(),
            "the supervisor started its child"
        );
        Self {
            _dir: dir,
            store,
            fake,
            faults,
            client,
            openrouter,
            vault: KeyVault::from_key_bytes([7; 32]),
            supervisor,
            server,
        }
    }

    async fn maintenance(
        &self,
        rotation_after: Duration,
        rotation_check_interval: Duration,
    ) -> ActorRef<KeyMaintenanceMsg> {
        let (actor, _join) = Actor::spawn(
            None,
            KeyMaintenance,
            KeyMaintenanceArgs {
                store: self.store.clone(),
                openrouter: self.openrouter.clone(),
                vault: self.vault.clone(),
                rotation_after,
                rotation_check_interval,
                call_timeout: Duration::from_secs(20),
            },
        )
        .await
        .expect("spawn key maintenance");
        actor
    }

    /// What provisioning does for a new holder: a key created on OpenRouter with the holder's
    /// name and recorded with its sealed plaintext.
    async fn provision(&self, wallet: &str, limit: i64, reset: Option<LimitReset>) -> String {
        let name = key_name(STRATEGY, wallet);
        let created = self
            .client
            .create_key(&CreateKey {
                name: name.clone(),
                limit_micro_usd: Some(limit),
                limit_reset: reset,
                ..CreateKey::default()
            })
            .await
            .unwrap();
        let sealed = self
            .vault
            .encrypt(&created.plaintext, &created.key.hash)
            .unwrap();
        self.store
            .insert_user_key(&NewUserKey {
                key_hash: created.key.hash.clone(),
                strategy_id: STRATEGY.to_string(),
                holder_wallet: wallet.to_string(),
                name,
                limit_micro_usd: limit,
                limit_reset: reset.map(|reset| reset.as_str().to_string()),
                encrypted: Some(sealed.into_parts()),
                expires_at: None,
            })
            .await
            .unwrap();
        created.key.hash
    }

    /// A key created on OpenRouter only (the ledger never hears of it).
    async fn create_behind_our_back(&self, name: &str, limit: Option<i64>) -> String {
        self.client
            .create_key(&CreateKey {
                name: name.to_string(),
                limit_micro_usd: limit,
                ..CreateKey::default()
            })
            .await
            .unwrap()
            .key
            .hash
    }

    async fn set_remote_limit(&self, hash: &str, limit: Option<i64>) {
        self.client
            .update_key(
                hash,
                &KeyUpdate {
                    limit_micro_usd: Some(limit),
                    ..KeyUpdate::default()
                },
            )
            .await
            .unwrap();
    }

    async fn backdate(&self, hash: &str) {
        sqlx::query("UPDATE user_keys SET created_at = ? WHERE key_hash = ?")
            .bind(LONG_AGO)
            .bind(hash)
            .execute(self.store.pool())
            .await
            .unwrap();
    }

    async fn ledger_key(&self, hash: &str) -> UserKey {
        self.store
            .key_by_hash(hash)
            .await
            .unwrap()
            .expect("in the ledger")
    }

    /// Live keys on the fake named for `wallet`.
    fn remote_keys_of(&self, wallet: &str) -> Vec<KeySnapshot> {
        let name = key_name(STRATEGY, wallet);
        self.fake
            .keys()
            .into_iter()
            .filter(|key| key.name == name)
            .collect()
    }

    fn remote_key(&self, hash: &str) -> Option<KeySnapshot> {
        self.fake.keys().into_iter().find(|key| key.hash == hash)
    }

    async fn audit_actions(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT action FROM audit_log ORDER BY id")
            .fetch_all(self.store.pool())
            .await
            .unwrap()
    }

    fn fail_deletes(&self) {
        self.faults
            .try_add_rule(FaultRule {
                fake: "openrouter".into(),
                route: Some(DELETE_ROUTE.into()),
                latency: None,
                mode: Some(FaultMode::Always {
                    fault: Fault::ServerError { status: 500 },
                }),
            })
            .unwrap();
    }
}

async fn insert_strategy(store: &Store, strategy_id: &str) {
    let now = now_timestamp();
    sqlx::query(
        "INSERT INTO strategies (strategy_id, owner_wallet, token_mint, threshold_lamports,
            slippage_bps, distribution_mode, max_grant_micro_usd, max_key_limit_micro_usd,
            key_expiry_days, reserve_bps, cron_schedule, created_at, updated_at)
         VALUES (?, 'So11111111111111111111111111111111111111112',
                 'EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v', 0, 50, 'EQUAL_SPLIT',
                 10000000, 100000000, 0, 0, '0 */6 * * *', ?, ?)",
    )
    .bind(strategy_id)
    .bind(&now)
    .bind(&now)
    .execute(store.pool())
    .await
    .unwrap();
}

fn wallet() -> String {
    Keypair::new().pubkey().to_string()
}

/// The fake's masked preview of a plaintext key (`sk-or-v1-abc...xyz`).
fn mask(plaintext: &str) -> String {
    format!(
        "{}...{}",
        &plaintext[..12],
        &plaintext[plaintext.len() - 3..]
    )
}

async fn reconcile(actor: &ActorRef<KeyMaintenanceMsg>, fix: bool) -> ReconcileReport {
    keys_maintenance::reconcile(actor, fix, "test", JOB_TIMEOUT)
        .await
        .expect("reconcile")
}

#[tokio::test]
async fn reconcile_finds_nothing_when_ledger_and_openrouter_agree() {
    let world = World::start().await;
    let maintenance = world
        .maintenance(ROTATION_AFTER, Duration::from_secs(3600))
        .await;
    world.provision(&wallet(), 5 * USD, None).await;
    world.provision(&wallet(), 12_340_000, None).await;
    world
        .provision(&wallet(), 3 * USD, Some(LimitReset::Monthly))
        .await;
    // Not ours to judge: another name, and a strategy this database does not have.
    world.create_behind_our_back("my-laptop", Some(USD)).await;
    world
        .create_behind_our_back(&key_name("other-deployment", &wallet()), Some(USD))
        .await;
    let before = world.fake.keys();

    for fix in [false, true] {
        let report = reconcile(&maintenance, fix).await;
        assert!(report.is_empty(), "{report:#?}");
        assert_eq!(report.counts, Default::default());
        assert_eq!(report.openrouter_keys, 5);
        assert_eq!(report.ledger_current_keys, 3);
        assert_eq!(report.ignored_keys, 2);
        assert_eq!(report.fix_requested, fix);
    }
    assert_eq!(world.fake.keys(), before, "nothing changed on OpenRouter");
}

#[tokio::test]
async fn reconcile_reports_every_kind_of_drift_and_changes_nothing_without_fix() {
    let world = World::start().await;
    let maintenance = world
        .maintenance(ROTATION_AFTER, Duration::from_secs(3600))
        .await;
    // Missing: deleted on OpenRouter behind our back.
    let missing_wallet = wallet();
    let missing = world.provision(&missing_wallet, 5 * USD, None).await;
    world.client.delete_key(&missing).await.unwrap();
    // Limit mismatch: raised on OpenRouter.
    let raised = world.provision(&wallet(), 5 * USD, None).await;
    world.set_remote_limit(&raised, Some(7 * USD)).await;
    // Orphan: a key with a holder's name that the ledger never recorded.
    let orphan_wallet = wallet();
    let orphan = world
        .create_behind_our_back(&key_name(STRATEGY, &orphan_wallet), Some(3 * USD))
        .await;
    // Duplicates: two unknown keys with one name, and an unknown key beside a ledger key.
    let twice = key_name(STRATEGY, &wallet());
    let first = world.create_behind_our_back(&twice, Some(USD)).await;
    let second = world.create_behind_our_back(&twice, Some(USD)).await;
    let beside_wallet = wallet();
    let recorded = world.provision(&beside_wallet, 2 * USD, None).await;
    let stray = world
        .create_behind_our_back(&key_name(STRATEGY, &beside_wallet), Some(2 * USD))
        .await;
    // Disabled on OpenRouter.
    let disabled = world.provision(&wallet(), USD, None).await;
    world
        .client
        .update_key(
            &disabled,
            &KeyUpdate {
                disabled: Some(true),
                ..KeyUpdate::default()
            },
        )
        .await
        .unwrap();
    // Revoked in the ledger, still on OpenRouter.
    let revoked = world.provision(&wallet(), USD, None).await;
    world
        .store
        .set_key_status(&revoked, KeyStatus::Revoked)
        .await
        .unwrap();

    let remote_before = world.fake.keys();
    let ledger_before = world.store.all_user_keys().await.unwrap();
    let audit_before = world.audit_actions().await;
    let report = reconcile(&maintenance, false).await;

    let hashes = |items: Vec<&str>| items.into_iter().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        report
            .missing
            .iter()
            .map(|m| m.key_hash.as_str())
            .collect::<Vec<_>>(),
        [missing.as_str()]
    );
    assert_eq!(report.missing[0].holder_wallet, missing_wallet);
    assert_eq!(report.limit_mismatch.len(), 1, "{report:#?}");
    assert_eq!(report.limit_mismatch[0].key_hash, raised);
    assert_eq!(report.limit_mismatch[0].ledger_limit_micro_usd, 5 * USD);
    assert_eq!(
        report.limit_mismatch[0].openrouter_limit_micro_usd,
        Some(7 * USD)
    );
    assert_eq!(report.orphaned.len(), 1, "{report:#?}");
    assert_eq!(report.orphaned[0].key_hash, orphan);
    assert_eq!(report.orphaned[0].strategy_id, STRATEGY);
    assert_eq!(report.orphaned[0].holder_wallet, orphan_wallet);
    assert_eq!(report.orphaned[0].limit_micro_usd, Some(3 * USD));
    assert_eq!(report.duplicate_names.len(), 2, "{report:#?}");
    let unknown_pair = report
        .duplicate_names
        .iter()
        .find(|duplicate| duplicate.name == twice)
        .expect("two unknown keys with one name");
    let mut pair = hashes(vec![&first, &second]);
    pair.sort();
    assert_eq!(unknown_pair.key_hashes, pair);
    assert_eq!(unknown_pair.ledger_key_hash, None);
    let beside = report
        .duplicate_names
        .iter()
        .find(|duplicate| duplicate.name == key_name(STRATEGY, &beside_wallet))
        .expect("an unknown key beside the holder's key");
    let mut pair = hashes(vec![&recorded, &stray]);
    pair.sort();
    assert_eq!(beside.key_hashes, pair);
    assert_eq!(beside.ledger_key_hash.as_deref(), Some(recorded.as_str()));
    assert_eq!(report.disabled.len(), 1);
    assert_eq!(report.disabled[0].key_hash, disabled);
    assert_eq!(report.pending_delete.len(), 1);
    assert_eq!(report.pending_delete[0].key_hash, revoked);
    assert_eq!(report.pending_delete[0].status, "revoked");
    let counts = report.counts;
    assert_eq!(
        (
            counts.missing,
            counts.orphaned,
            counts.limit_mismatch,
            counts.duplicate_names,
            counts.disabled,
            counts.pending_delete,
        ),
        (1, 1, 1, 2, 1, 1)
    );
    assert_eq!((counts.fixed, counts.failed), (0, 0));
    assert!(
        report
            .missing
            .iter()
            .map(|item| &item.fix)
            .chain(report.orphaned.iter().map(|item| &item.fix))
            .all(Option::is_none)
    );

    assert_eq!(
        world.fake.keys(),
        remote_before,
        "a report changes nothing remotely"
    );
    assert_eq!(world.store.all_user_keys().await.unwrap(), ledger_before);
    assert_eq!(world.audit_actions().await, audit_before);
}

#[tokio::test]
async fn reconcile_with_fix_repairs_missing_orphans_and_limits_then_finds_nothing() {
    let world = World::start().await;
    let maintenance = world
        .maintenance(ROTATION_AFTER, Duration::from_secs(3600))
        .await;
    let missing = world.provision(&wallet(), 5 * USD, None).await;
    world.client.delete_key(&missing).await.unwrap();
    let raised = world.provision(&wallet(), 5 * USD, None).await;
    world.set_remote_limit(&raised, Some(7 * USD)).await;
    let unlimited = world.provision(&wallet(), 4 * USD, None).await;
    world.set_remote_limit(&unlimited, None).await;
    // An orphan that has spent: adopted with its limit and usage.
    let orphan_wallet = wallet();
    let orphan = world
        .create_behind_our_back(&key_name(STRATEGY, &orphan_wallet), Some(3 * USD))
        .await;
    world.fake.add_usage(&orphan, 1_234_567).unwrap();
    // An orphan above the strategy's per-key maximum ($100): capped on OpenRouter too.
    let big_wallet = wallet();
    let big = world
        .create_behind_our_back(&key_name(STRATEGY, &big_wallet), Some(500 * USD))
        .await;

    let report = reconcile(&maintenance, true).await;
    assert_eq!(report.counts.missing, 1, "{report:#?}");
    assert_eq!(report.counts.orphaned, 2);
    assert_eq!(report.counts.limit_mismatch, 2);
    assert_eq!(report.counts.fixed, 5, "{report:#?}");
    for outcome in report
        .missing
        .iter()
        .map(|item| &item.fix)
        .chain(report.orphaned.iter().map(|item| &item.fix))
        .chain(report.limit_mismatch.iter().map(|item| &item.fix))
    {
        assert_eq!(outcome, &Some(FixOutcome::Fixed));
    }

    // Missing: revoked, with nothing left to delete remotely.
    let revoked = world.ledger_key(&missing).await;
    assert_eq!(revoked.status, KeyStatus::Revoked);
    assert!(revoked.remote_deleted_at.is_some());
    assert!(
        world
            .store
            .keys_pending_remote_delete()
            .await
            .unwrap()
            .is_empty()
    );
    // Limits back to the ledger's.
    assert_eq!(
        world.remote_key(&raised).unwrap().limit_micro_usd,
        Some(5 * USD)
    );
    assert_eq!(
        world.remote_key(&unlimited).unwrap().limit_micro_usd,
        Some(4 * USD)
    );
    // Orphans adopted as their holders' current keys, without a plaintext.
    let adopted = world
        .store
        .current_key(STRATEGY, &orphan_wallet)
        .await
        .unwrap()
        .expect("adopted");
    assert_eq!(adopted.key_hash, orphan);
    assert_eq!(adopted.limit_micro_usd, 3 * USD);
    assert_eq!(adopted.usage_micro_usd, 1_234_567);
    assert!(!adopted.has_encrypted_key());
    assert_eq!(adopted.name, key_name(STRATEGY, &orphan_wallet));
    let capped = world
        .store
        .current_key(STRATEGY, &big_wallet)
        .await
        .unwrap()
        .expect("adopted");
    assert_eq!(capped.key_hash, big);
    assert_eq!(capped.limit_micro_usd, 100 * USD);
    assert_eq!(
        world.remote_key(&big).unwrap().limit_micro_usd,
        Some(100 * USD)
    );
    // Nothing deleted on OpenRouter.
    assert_eq!(world.fake.keys().len(), 4);

    let actions = world.audit_actions().await;
    for action in [
        "key_revoked_missing",
        "key_adopted",
        "key_limit_restored",
        "keys_reconciled",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
    assert_eq!(actions.iter().filter(|a| *a == "key_adopted").count(), 2);
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "key_limit_restored")
            .count(),
        2
    );

    let again = reconcile(&maintenance, false).await;
    assert!(again.is_empty(), "{again:#?}");
    assert_eq!(again.ledger_current_keys, 4);
}

#[tokio::test]
async fn rotation_replaces_old_keys_with_their_remaining_limit_and_a_sealed_plaintext() {
    let world = World::start().await;
    let maintenance = world
        .maintenance(ROTATION_AFTER, Duration::from_secs(3600))
        .await;
    // A credits key that has spent $3.456789 of $10, expiring far ahead.
    let credits_wallet = wallet();
    let expires_at: chrono::DateTime<chrono::Utc> = "2099-01-02T03:04:05.000Z".parse().unwrap();
    let name = key_name(STRATEGY, &credits_wallet);
    let created = world
        .client
        .create_key(&CreateKey {
            name: name.clone(),
            limit_micro_usd: Some(10 * USD),
            expires_at: Some(expires_at),
            ..CreateKey::default()
        })
        .await
        .unwrap();
    let old_credits = created.key.hash.clone();
    world
        .store
        .insert_user_key(&NewUserKey {
            key_hash: old_credits.clone(),
            strategy_id: STRATEGY.into(),
            holder_wallet: credits_wallet.clone(),
            name,
            limit_micro_usd: 10 * USD,
            limit_reset: None,
            encrypted: Some(
                world
                    .vault
                    .encrypt(&created.plaintext, &old_credits)
                    .unwrap()
                    .into_parts(),
            ),
            expires_at: Some(expires_at),
        })
        .await
        .unwrap();
    world.fake.add_usage(&old_credits, 3_456_789).unwrap();
    world.backdate(&old_credits).await;
    // An allowance key: the same allowance, whatever was used this period.
    let allowance_wallet = wallet();
    let old_allowance = world
        .provision(&allowance_wallet, 5 * USD, Some(LimitReset::Monthly))
        .await;
    world.fake.add_usage(&old_allowance, USD).unwrap();
    world.backdate(&old_allowance).await;
    // A young key: not due.
    let young_wallet = wallet();
    let young = world.provision(&young_wallet, 2 * USD, None).await;

    let report = keys_maintenance::rotate_due(&maintenance, "test", JOB_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(report.rotated.len(), 2, "{report:#?}");
    assert!(
        report.failed.is_empty() && report.deferred.is_empty(),
        "{report:#?}"
    );
    assert!(report.remote_delete_failed.is_empty(), "{report:#?}");
    assert!(report.rotated.iter().all(|rotated| rotated.old_deleted));

    // Credits: $10 − $3.456789 = $6.543211, floored to $6.54.
    let remote = world.remote_keys_of(&credits_wallet);
    assert_eq!(
        remote.len(),
        1,
        "exactly one live key for the holder: {remote:#?}"
    );
    let new_credits = remote[0].hash.clone();
    assert_ne!(new_credits, old_credits);
    assert_eq!(remote[0].limit_micro_usd, Some(6_540_000));
    assert_eq!(remote[0].limit_reset, None);
    assert_eq!(remote[0].expires_at, Some(expires_at));
    let current = world
        .store
        .current_key(STRATEGY, &credits_wallet)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.key_hash, new_credits);
    assert_eq!(current.limit_micro_usd, 6_540_000);
    assert_eq!(current.usage_micro_usd, 0);
    assert_eq!(
        current.expires_at.as_deref(),
        Some("2099-01-02T03:04:05.000Z")
    );
    // The new plaintext opens with the vault, bound to the new hash, and is the key OpenRouter
    // created (its masked preview matches).
    let sealed = Sealed::from((
        current.encrypted_key.clone().unwrap(),
        current.key_nonce.unwrap(),
    ));
    let plaintext = world.vault.decrypt(&sealed, &new_credits).unwrap();
    assert!(plaintext.expose().starts_with("sk-or-v1-"));
    assert_eq!(mask(plaintext.expose()), remote[0].label);
    assert!(world.vault.decrypt(&sealed, &old_credits).is_err());
    let old = world.ledger_key(&old_credits).await;
    assert_eq!(old.status, KeyStatus::Rotated);
    assert_eq!(old.replaced_by_hash.as_deref(), Some(new_credits.as_str()));
    assert!(old.remote_deleted_at.is_some());
    assert!(!old.has_encrypted_key());
    assert_eq!(old.usage_micro_usd, 3_456_789);
    assert!(
        world.remote_key(&old_credits).is_none(),
        "the old key is deleted"
    );

    // Allowance: the same $5 monthly allowance.
    let remote = world.remote_keys_of(&allowance_wallet);
    assert_eq!(remote.len(), 1, "{remote:#?}");
    assert_ne!(remote[0].hash, old_allowance);
    assert_eq!(remote[0].limit_micro_usd, Some(5 * USD));
    assert_eq!(remote[0].limit_reset, Some(FakeReset::Monthly));
    let current = world
        .store
        .current_key(STRATEGY, &allowance_wallet)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.key_hash, remote[0].hash);
    assert_eq!(current.limit_reset.as_deref(), Some("monthly"));
    assert_eq!(
        world.ledger_key(&old_allowance).await.status,
        KeyStatus::Rotated
    );

    // The young key is untouched.
    assert_eq!(world.ledger_key(&young).await.status, KeyStatus::Active);
    assert_eq!(world.remote_keys_of(&young_wallet)[0].hash, young);

    let actions = world.audit_actions().await;
    assert_eq!(actions.iter().filter(|a| *a == "key_rotated").count(), 2);
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "key_remote_deleted")
            .count(),
        2
    );
    assert!(
        world
            .store
            .keys_pending_remote_delete()
            .await
            .unwrap()
            .is_empty()
    );
    // The new keys are young: a second pass does nothing, and the ledger agrees with OpenRouter.
    let second = keys_maintenance::rotate_due(&maintenance, "test", JOB_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(second, Default::default());
    assert!(reconcile(&maintenance, false).await.is_empty());
}

#[tokio::test]
async fn a_failed_delete_leaves_the_old_key_pending_and_the_next_pass_deletes_it() {
    let world = World::start().await;
    let maintenance = world
        .maintenance(ROTATION_AFTER, Duration::from_secs(3600))
        .await;
    let holder = wallet();
    let old = world.provision(&holder, 10 * USD, None).await;
    world.backdate(&old).await;
    world.fail_deletes();

    let report = keys_maintenance::rotate_due(&maintenance, "test", JOB_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(report.rotated.len(), 1, "{report:#?}");
    assert!(!report.rotated[0].old_deleted);
    assert_eq!(report.remote_delete_failed.len(), 1);
    assert_eq!(report.remote_delete_failed[0].key_hash, old);
    assert_eq!(
        report.remote_delete_failed[0].code,
        "OPENROUTER_SERVER_ERROR"
    );
    let new = report.rotated[0].new_key_hash.clone();
    // The rotation stands; the old key waits for its delete, frozen so it cannot spend.
    let pending = world.store.keys_pending_remote_delete().await.unwrap();
    assert_eq!(
        pending
            .iter()
            .map(|key| key.key_hash.as_str())
            .collect::<Vec<_>>(),
        [old.as_str()]
    );
    assert_eq!(world.remote_keys_of(&holder).len(), 2);
    assert_eq!(world.remote_key(&old).unwrap().limit_micro_usd, Some(0));
    assert_eq!(
        world
            .store
            .current_key(STRATEGY, &holder)
            .await
            .unwrap()
            .unwrap()
            .key_hash,
        new
    );
    // A reconcile sees a pending delete, not a duplicate or a drifted limit.
    let drift = reconcile(&maintenance, false).await;
    assert_eq!(drift.pending_delete.len(), 1, "{drift:#?}");
    assert_eq!(drift.pending_delete[0].key_hash, old);
    assert!(
        drift.duplicate_names.is_empty() && drift.limit_mismatch.is_empty(),
        "{drift:#?}"
    );

    world.faults.clear(Some("openrouter"));
    let next = keys_maintenance::rotate_due(&maintenance, "test", JOB_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(next.remote_deleted, std::slice::from_ref(&old));
    assert!(next.rotated.is_empty() && next.remote_delete_failed.is_empty());
    let remote = world.remote_keys_of(&holder);
    assert_eq!(remote.len(), 1);
    assert_eq!(remote[0].hash, new);
    assert!(
        world
            .store
            .keys_pending_remote_delete()
            .await
            .unwrap()
            .is_empty()
    );
    assert!(world.ledger_key(&old).await.remote_deleted_at.is_some());
    assert!(reconcile(&maintenance, false).await.is_empty());
}

#[tokio::test]
async fn a_rotation_interrupted_before_it_was_recorded_is_completed_by_the_next_pass() {
    let world = World::start().await;
    let maintenance = world
        .maintenance(ROTATION_AFTER, Duration::from_secs(3600))
        .await;
    let holder = wallet();
    let old = world.provision(&holder, 10 * USD, None).await;
    world.backdate(&old).await;
    // What a crash between creating the new key and recording it leaves: the old key frozen
    // and an unknown key with the holder's name.
    world.set_remote_limit(&old, Some(0)).await;
    let leftover = world
        .create_behind_our_back(&key_name(STRATEGY, &holder), Some(10 * USD))
        .await;

    let drift = reconcile(&maintenance, false).await;
    assert_eq!(drift.duplicate_names.len(), 1, "{drift:#?}");
    assert_eq!(
        drift.duplicate_names[0].ledger_key_hash.as_deref(),
        Some(old.as_str())
    );
    assert_eq!(drift.limit_mismatch.len(), 1);
    assert!(drift.orphaned.is_empty());

    let report = keys_maintenance::rotate_due(&maintenance, "test", JOB_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        report.leftovers_deleted,
        std::slice::from_ref(&leftover),
        "{report:#?}"
    );
    assert_eq!(report.rotated.len(), 1);
    assert_eq!(report.rotated[0].limit_micro_usd, 10 * USD);
    let remote = world.remote_keys_of(&holder);
    assert_eq!(remote.len(), 1, "{remote:#?}");
    assert_ne!(remote[0].hash, old);
    assert_ne!(remote[0].hash, leftover);
    assert_eq!(
        world
            .store
            .current_key(STRATEGY, &holder)
            .await
            .unwrap()
            .unwrap()
            .key_hash,
        remote[0].hash
    );
    assert!(
        world
            .audit_actions()
            .await
            .iter()
            .any(|action| action == "rotation_leftover_deleted")
    );
    assert!(reconcile(&maintenance, false).await.is_empty());
}

#[tokio::test]
async fn explicit_rotation_and_repairs_wait_for_a_run_in_progress() {
    let world = World::start().await;
    let maintenance = world
        .maintenance(ROTATION_AFTER, Duration::from_secs(3600))
        .await;
    let holder = wallet();
    let first = world.provision(&holder, 4 * USD, None).await;

    // A young key is rotated on request.
    let rotated = keys_maintenance::rotate(&maintenance, STRATEGY, &holder, "api", JOB_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(rotated.old_key_hash, first);
    assert_eq!(rotated.limit_micro_usd, 4 * USD);
    assert!(rotated.old_deleted);
    let second = rotated.new_key_hash.clone();
    assert_eq!(
        world
            .store
            .current_key(STRATEGY, &holder)
            .await
            .unwrap()
            .unwrap()
            .key_hash,
        second
    );
    let error = keys_maintenance::rotate(&maintenance, STRATEGY, &wallet(), "api", JOB_TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "KEY_NOT_FOUND");

    // While a run is in progress nothing is rotated or repaired.
    let run = world
        .store
        .create_run(
            &NewRun {
                run_id: None,
                strategy_id: STRATEGY.into(),
                triggered_by: TriggeredBy::Manual,
                dry_run: false,
                strategy_snapshot: serde_json::Value::Null,
            },
            0,
        )
        .await
        .unwrap()
        .run;
    world.backdate(&second).await;
    let orphan_wallet = wallet();
    world
        .create_behind_our_back(&key_name(STRATEGY, &orphan_wallet), Some(USD))
        .await;
    let remote_before = world.fake.keys();
    let error = keys_maintenance::rotate(&maintenance, STRATEGY, &holder, "api", JOB_TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "RUN_IN_PROGRESS");
    let pass = keys_maintenance::rotate_due(&maintenance, "test", JOB_TIMEOUT)
        .await
        .unwrap();
    assert!(pass.rotated.is_empty(), "{pass:#?}");
    assert_eq!(pass.deferred.len(), 1);
    assert_eq!(pass.deferred[0].code, "RUN_IN_PROGRESS");
    let report = reconcile(&maintenance, true).await;
    assert_eq!(report.orphaned.len(), 1);
    assert!(matches!(
        report.orphaned[0].fix,
        Some(FixOutcome::Deferred { .. })
    ));
    assert_eq!(
        world.fake.keys(),
        remote_before,
        "nothing changed on OpenRouter"
    );
    assert_eq!(
        world
            .store
            .current_key(STRATEGY, &orphan_wallet)
            .await
            .unwrap(),
        None
    );

    // The run fails with the holder's top-up still open on this key: a resume would apply it
    // to this very key, so the key waits until the allocation is settled.
    let allocation = {
        let mut conn = world.store.pool().acquire().await.unwrap();
        insert_allocations(
            &mut conn,
            &run.run_id,
            &[NewAllocation {
                wallet: holder.clone(),
                token_balance: 1,
                weight: 1,
                grant_micro_usd: USD,
                dry_run: false,
            }],
        )
        .await
        .unwrap()
        .remove(0)
    };
    world
        .store
        .set_allocation_target(allocation.id, 5 * USD, Some(&second))
        .await
        .unwrap();
    world
        .store
        .mark_allocation_failed(allocation.id, "OPENROUTER_TIMEOUT")
        .await
        .unwrap();
    world
        .store
        .fail(&run.run_id, RunState::Pending, "TEST", "ended by the test")
        .await
        .unwrap();
    let pass = keys_maintenance::rotate_due(&maintenance, "test", JOB_TIMEOUT)
        .await
        .unwrap();
    assert!(pass.rotated.is_empty(), "{pass:#?}");
    assert_eq!(pass.deferred.len(), 1);
    assert_eq!(pass.deferred[0].code, "ALLOCATION_OPEN");
    assert_eq!(
        world.fake.keys(),
        remote_before,
        "nothing changed on OpenRouter"
    );

    // Once the run has ended and its allocation is settled, both go ahead.
    world
        .store
        .mark_allocation_skipped(allocation.id, "settled by the test")
        .await
        .unwrap();
    let pass = keys_maintenance::rotate_due(&maintenance, "test", JOB_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(pass.rotated.len(), 1, "{pass:#?}");
    assert_eq!(pass.rotated[0].old_key_hash, second);
    let report = reconcile(&maintenance, true).await;
    assert_eq!(report.orphaned[0].fix, Some(FixOutcome::Fixed));
    assert!(reconcile(&maintenance, false).await.is_empty());
}

#[tokio::test]
async fn the_timer_rotates_due_keys() {
    let world = World::start().await;
    let holder = wallet();
    let old = world.provision(&holder, 3 * USD, None).await;
    world.backdate(&old).await;
    let _maintenance = world
        .maintenance(ROTATION_AFTER, Duration::from_millis(1))
        .await;
    let new = eventually(Duration::from_secs(20), || async {
        world
            .store
            .current_key(STRATEGY, &holder)
            .await
            .unwrap()
            .filter(|key| key.key_hash != old)
            .map(|key| key.key_hash)
    })
    .await;
    eventually(Duration::from_secs(20), || async {
        (world.remote_keys_of(&holder).len() == 1).then_some(())
    })
    .await;
    assert_eq!(world.remote_keys_of(&holder)[0].hash, new);
    let rotated: Option<String> = sqlx::query_scalar(
        "SELECT actor FROM audit_log WHERE action = 'key_rotated' ORDER BY id LIMIT 1",
    )
    .fetch_one(world.store.pool())
    .await
    .unwrap();
    assert_eq!(rotated.as_deref(), Some("scheduler"));
}
