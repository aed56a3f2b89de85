//! PROVISIONING, one allocation at a time, exactly once (DESIGN §4): the absolute target limit is
//! stored before OpenRouter is called, so a retry sends the same value; a holder without a key
//! gets one with a deterministic name, and a key of that name left by a crash is adopted rather
//! than duplicated; a new key's one-time plaintext is sealed in the vault before it is stored.

use std::collections::HashMap;

use chrono::Utc;
use serde_json::json;

use super::RunContext;
use super::phases::{PhaseError, audit};
use crate::openrouter::{
    CreateKey, Key, KeyUpdate, LimitReset as OpenRouterReset, actor as openrouter,
};
use crate::store::allocations::Allocation;
use crate::store::keys::NewUserKey;
use crate::store::runs::{Run, RunState};
use crate::store::strategies::StoredStrategy;
use crate::strategy::LimitReset;

/// What applying one allocation did.
pub(super) enum Applied {
    Created,
    ToppedUp,
    Adopted,
}

/// Counts for the run row and the audit log.
#[derive(Default)]
pub(super) struct Tally {
    pub created: u64,
    pub updated: u64,
    pub adopted: u64,
    pub failed: Vec<PhaseError>,
}

impl Tally {
    pub(super) fn count(&mut self, applied: Applied) {
        match applied {
            Applied::Created => self.created += 1,
            Applied::ToppedUp => self.updated += 1,
            Applied::Adopted => {
                self.adopted += 1;
                self.updated += 1;
            }
        }
    }
}

/// OpenRouter's keys by name, listed once per provisioning pass and only if a holder has no key:
/// the only way to find a key created just before a crash.
#[derive(Default)]
pub(super) struct OrphanIndex {
    by_name: Option<HashMap<String, Key>>,
}

impl OrphanIndex {
    async fn find(&mut self, context: &RunContext, name: &str) -> Result<Option<Key>, PhaseError> {
        if self.by_name.is_none() {
            let actor = context.openrouter()?;
            let keys = openrouter::list_all_keys(&actor, false, context.policy.call_timeout)
                .await
                .map_err(|error| PhaseError::new(error.code(), error.to_string()))?;
            self.by_name = Some(
                keys.into_iter()
                    .map(|key| (key.name.clone(), key))
                    .collect(),
            );
        }
        Ok(self
            .by_name
            .as_ref()
            .and_then(|keys| keys.get(name))
            .cloned())
    }
}

/// `creditbrain-<strategy>-<wallet>`: the same holder always maps to the same name.
pub fn key_name(strategy_id: &str, wallet: &str) -> String {
    format!("creditbrain-{strategy_id}-{wallet}")
}

fn openrouter_reset(reset: Option<LimitReset>) -> Option<OpenRouterReset> {
    reset.map(|reset| match reset {
        LimitReset::Daily => OpenRouterReset::Daily,
        LimitReset::Weekly => OpenRouterReset::Weekly,
        LimitReset::Monthly => OpenRouterReset::Monthly,
    })
}

pub(super) async fn apply(
    context: &RunContext,
    run: &Run,
    strategy: &StoredStrategy,
    allocation: &Allocation,
    orphans: &mut OrphanIndex,
) -> Result<Applied, PhaseError> {
    let spec = &strategy.spec;
    let actor = context.openrouter()?;
    let timeout = context.policy.call_timeout;
    let store = &context.store;
    let wallet = &allocation.holder_wallet;
    if let Some(key) = store.current_key(&run.strategy_id, wallet).await? {
        // Top-up: the new absolute limit, stored first; a retry after a crash finds it stored and
        // sends the same number instead of adding the grant again.
        let wanted = key
            .limit_micro_usd
            .saturating_add(allocation.grant_micro_usd)
            .min(spec.max_key_limit_micro_usd);
        let target = store
            .set_allocation_target(allocation.id, wanted, Some(&key.key_hash))
            .await?
            .ok_or_else(|| {
                PhaseError::new("DB_ERROR", format!("allocation {} vanished", allocation.id))
            })?;
        let hash = target.key_hash.clone().unwrap_or(key.key_hash.clone());
        openrouter::update_key(
            &actor,
            hash.clone(),
            KeyUpdate {
                limit_micro_usd: Some(Some(target.target_limit_micro_usd)),
                ..KeyUpdate::default()
            },
            timeout,
        )
        .await
        .map_err(|error| PhaseError::new(error.code(), error.to_string()))?;
        store
            .mark_allocation_applied(allocation.id, Some(&hash))
            .await?;
        audit(
            context,
            run,
            RunState::Provisioning,
            "key_topped_up",
            json!({
                "wallet": wallet,
                "keyHash": hash,
                "grantMicroUsd": allocation.grant_micro_usd,
                "limitMicroUsd": target.target_limit_micro_usd,
            }),
        )
        .await?;
        return Ok(Applied::ToppedUp);
    }

    let wanted = allocation.grant_micro_usd.min(spec.max_key_limit_micro_usd);
    let target = store
        .set_allocation_target(allocation.id, wanted, None)
        .await?
        .ok_or_else(|| {
            PhaseError::new("DB_ERROR", format!("allocation {} vanished", allocation.id))
        })?;
    let name = key_name(&run.strategy_id, wallet);
    let expires_at = (spec.key_expiry_days > 0)
        .then(|| Utc::now() + chrono::Duration::days(i64::from(spec.key_expiry_days)));

    if let Some(orphan) = orphans.find(context, &name).await? {
        // Created by an attempt that crashed before recording it. Its plaintext is gone (OpenRouter
        // shows it once), so the holder obtains it through a signed rotation; the key itself and
        // its limit are ours to set.
        store
            .insert_user_key(&NewUserKey {
                key_hash: orphan.hash.clone(),
                strategy_id: run.strategy_id.clone(),
                holder_wallet: wallet.clone(),
                name: name.clone(),
                limit_micro_usd: orphan.limit_micro_usd.unwrap_or(0).max(0),
                limit_reset: spec.key_limit_reset.map(|reset| reset.as_str().to_string()),
                encrypted: None,
                expires_at: orphan.expires_at,
            })
            .await?;
        openrouter::update_key(
            &actor,
            orphan.hash.clone(),
            KeyUpdate {
                limit_micro_usd: Some(Some(target.target_limit_micro_usd)),
                ..KeyUpdate::default()
            },
            timeout,
        )
        .await
        .map_err(|error| PhaseError::new(error.code(), error.to_string()))?;
        store
            .mark_allocation_applied(allocation.id, Some(&orphan.hash))
            .await?;
        audit(context, run, RunState::Provisioning, "key_adopted", json!({
            "wallet": wallet,
            "keyHash": orphan.hash,
            "limitMicroUsd": target.target_limit_micro_usd,
            "reason": "a key with this holder's name existed on OpenRouter but not in the ledger",
        }))
        .await?;
        return Ok(Applied::Adopted);
    }

    let created = openrouter::create_key(
        &actor,
        CreateKey {
            name: name.clone(),
            limit_micro_usd: Some(target.target_limit_micro_usd),
            limit_reset: openrouter_reset(spec.key_limit_reset),
            expires_at,
            include_byok_in_limit: None,
        },
        timeout,
    )
    .await
    .map_err(|error| PhaseError::new(error.code(), error.to_string()))?;
    let sealed = context
        .vault
        .encrypt(&created.plaintext, &created.key.hash)
        .map_err(|error| PhaseError::new("KEY_VAULT_ERROR", error.to_string()))?;
    store
        .insert_user_key(&NewUserKey {
            key_hash: created.key.hash.clone(),
            strategy_id: run.strategy_id.clone(),
            holder_wallet: wallet.clone(),
            name,
            limit_micro_usd: target.target_limit_micro_usd,
            limit_reset: spec.key_limit_reset.map(|reset| reset.as_str().to_string()),
            encrypted: Some(sealed.into_parts()),
            expires_at,
        })
        .await?;
    store
        .mark_allocation_applied(allocation.id, Some(&created.key.hash))
        .await?;
    audit(
        context,
        run,
        RunState::Provisioning,
        "key_created",
        json!({
            "wallet": wallet,
            "keyHash": created.key.hash,
            "limitMicroUsd": target.target_limit_micro_usd,
            "expiresAt": expires_at.map(|at| at.to_rfc3339()),
        }),
    )
    .await?;
    Ok(Applied::Created)
}
