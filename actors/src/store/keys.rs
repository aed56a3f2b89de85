//! The key ledger in the store (`user_keys`): one row per OpenRouter key created or adopted for a
//! holder, its limit and usage as last known, its lifecycle, and its sealed plaintext until the
//! holder reveals it (taken and erased at most once).
//!
//! The schema keeps at most one *current* key (active or exhausted) per (strategy, holder); a
//! second current insert is a unique violation ([`StoreError::is_unique_violation`]), which is
//! how "never two keys for one holder" (I3) holds even against a racing writer.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, FromRow, Row, SqliteConnection};

use super::{Store, StoreError, format_timestamp, now_timestamp};

/// Length of the AES-GCM nonce stored in `key_nonce` (see `keyvault`).
pub const NONCE_LEN: usize = 12;

/// A key's lifecycle state (`user_keys.status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyStatus {
    /// Usable, with credit left.
    Active,
    /// Usage reached the limit; still the holder's current key (a top-up reactivates it).
    Exhausted,
    /// Past `expires_at`.
    Expired,
    /// Withdrawn by the operator.
    Revoked,
    /// Replaced by a newer key (`replaced_by_hash`).
    Rotated,
}

impl KeyStatus {
    pub const ALL: [KeyStatus; 5] = [
        KeyStatus::Active,
        KeyStatus::Exhausted,
        KeyStatus::Expired,
        KeyStatus::Revoked,
        KeyStatus::Rotated,
    ];

    /// The stored form.
    pub fn as_str(&self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Exhausted => "exhausted",
            KeyStatus::Expired => "expired",
            KeyStatus::Revoked => "revoked",
            KeyStatus::Rotated => "rotated",
        }
    }

    /// Active or exhausted: the holder's current key, at most one per (strategy, holder).
    pub fn is_current(&self) -> bool {
        matches!(self, KeyStatus::Active | KeyStatus::Exhausted)
    }
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        KeyStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| format!("unknown key status {text:?}"))
    }
}

/// A row of `user_keys`.
#[derive(Clone, PartialEq, Eq)]
pub struct UserKey {
    /// OpenRouter's hash of the key (its id in the management API).
    pub key_hash: String,
    pub strategy_id: String,
    pub holder_wallet: String,
    /// `creditbrain-<strategy>-<wallet>`.
    pub name: String,
    pub limit_micro_usd: i64,
    pub usage_micro_usd: i64,
    /// `daily`, `weekly`, `monthly`, or `None` (credits mode).
    pub limit_reset: Option<String>,
    pub status: KeyStatus,
    /// The key that replaced this one (rotation).
    pub replaced_by_hash: Option<String>,
    /// The sealed plaintext (keyvault ciphertext with its tag); `None` once revealed or erased.
    pub encrypted_key: Option<Vec<u8>>,
    /// The nonce of `encrypted_key`; set exactly when it is.
    pub key_nonce: Option<[u8; NONCE_LEN]>,
    pub revealed_at: Option<String>,
    pub expires_at: Option<String>,
    pub remote_deleted_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub last_synced_at: Option<String>,
}

impl UserKey {
    /// True while the sealed plaintext is stored (not yet revealed).
    pub fn has_encrypted_key(&self) -> bool {
        self.encrypted_key.is_some()
    }
}

// The ciphertext is useless without the vault key, but it is still the holder's secret in a
// form: only its length is shown. The nonce is omitted for the same reason.
impl fmt::Debug for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserKey")
            .field("key_hash", &self.key_hash)
            .field("strategy_id", &self.strategy_id)
            .field("holder_wallet", &self.holder_wallet)
            .field("name", &self.name)
            .field("limit_micro_usd", &self.limit_micro_usd)
            .field("usage_micro_usd", &self.usage_micro_usd)
            .field("limit_reset", &self.limit_reset)
            .field("status", &self.status)
            .field("replaced_by_hash", &self.replaced_by_hash)
            .field(
                "encrypted_key_len",
                &self.encrypted_key.as_ref().map(Vec::len),
            )
            .field("revealed_at", &self.revealed_at)
            .field("expires_at", &self.expires_at)
            .field("remote_deleted_at", &self.remote_deleted_at)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("last_synced_at", &self.last_synced_at)
            .finish()
    }
}

fn decode_error(column: &str, message: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: message.into(),
    }
}

fn nonce_from_blob(column: &str, blob: Vec<u8>) -> Result<[u8; NONCE_LEN], sqlx::Error> {
    <[u8; NONCE_LEN]>::try_from(blob.as_slice()).map_err(|_| {
        decode_error(
            column,
            format!("expected {NONCE_LEN} bytes, found {}", blob.len()),
        )
    })
}

// Written out because sqlx's `macros` feature (and its derive) is off to halve the build.
impl FromRow<'_, SqliteRow> for UserKey {
    fn from_row(row: &SqliteRow) -> Result<Self, sqlx::Error> {
        let status: String = row.try_get("status")?;
        let key_nonce: Option<Vec<u8>> = row.try_get("key_nonce")?;
        Ok(Self {
            key_hash: row.try_get("key_hash")?,
            strategy_id: row.try_get("strategy_id")?,
            holder_wallet: row.try_get("holder_wallet")?,
            name: row.try_get("name")?,
            limit_micro_usd: row.try_get("limit_micro_usd")?,
            usage_micro_usd: row.try_get("usage_micro_usd")?,
            limit_reset: row.try_get("limit_reset")?,
            status: status.parse().map_err(|e| decode_error("status", e))?,
            replaced_by_hash: row.try_get("replaced_by_hash")?,
            encrypted_key: row.try_get("encrypted_key")?,
            key_nonce: key_nonce
                .map(|blob| nonce_from_blob("key_nonce", blob))
                .transpose()?,
            revealed_at: row.try_get("revealed_at")?,
            expires_at: row.try_get("expires_at")?,
            remote_deleted_at: row.try_get("remote_deleted_at")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            last_synced_at: row.try_get("last_synced_at")?,
        })
    }
}

/// What [`Store::insert_user_key`] writes: a new current (`active`) key.
#[derive(Clone, PartialEq, Eq)]
pub struct NewUserKey {
    pub key_hash: String,
    pub strategy_id: String,
    pub holder_wallet: String,
    pub name: String,
    pub limit_micro_usd: i64,
    pub limit_reset: Option<String>,
    /// The sealed plaintext `(ciphertext, nonce)` from the keyvault, or `None` when there is no
    /// plaintext to keep (an adopted orphan: OpenRouter never shows a plaintext twice).
    pub encrypted: Option<(Vec<u8>, [u8; NONCE_LEN])>,
    /// `None` = never expires.
    pub expires_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for NewUserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUserKey")
            .field("key_hash", &self.key_hash)
            .field("strategy_id", &self.strategy_id)
            .field("holder_wallet", &self.holder_wallet)
            .field("name", &self.name)
            .field("limit_micro_usd", &self.limit_micro_usd)
            .field("limit_reset", &self.limit_reset)
            .field(
                "encrypted_key_len",
                &self
                    .encrypted
                    .as_ref()
                    .map(|(ciphertext, _)| ciphertext.len()),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Inserts `new` as an `active` key on `conn` (a pool connection or an open transaction, so the
/// caller can commit it with other writes). A unique violation means the holder already has a
/// current key for the strategy, or the hash is already recorded.
pub async fn insert_user_key_on(
    conn: &mut SqliteConnection,
    new: &NewUserKey,
) -> Result<UserKey, StoreError> {
    let now = now_timestamp();
    let (ciphertext, nonce) = match &new.encrypted {
        Some((ciphertext, nonce)) => (Some(ciphertext.as_slice()), Some(nonce.as_slice())),
        None => (None, None),
    };
    let key = sqlx::query_as::<_, UserKey>(
        "INSERT INTO user_keys (key_hash, strategy_id, holder_wallet, name, limit_micro_usd,
             usage_micro_usd, limit_reset, status, encrypted_key, key_nonce, expires_at,
             created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, 0, ?, 'active', ?, ?, ?, ?, ?)
         RETURNING *",
    )
    .bind(&new.key_hash)
    .bind(&new.strategy_id)
    .bind(&new.holder_wallet)
    .bind(&new.name)
    .bind(new.limit_micro_usd)
    .bind(&new.limit_reset)
    .bind(ciphertext)
    .bind(nonce)
    .bind(new.expires_at.map(format_timestamp))
    .bind(&now)
    .bind(&now)
    .fetch_one(conn)
    .await?;
    Ok(key)
}

impl Store {
    /// Inserts `new` as the holder's `active` key (see [`insert_user_key_on`]).
    pub async fn insert_user_key(&self, new: &NewUserKey) -> Result<UserKey, StoreError> {
        let mut conn = self.pool().acquire().await?;
        insert_user_key_on(&mut conn, new).await
    }

    /// The holder's current (active or exhausted) key for a strategy; there is at most one.
    pub async fn current_key(
        &self,
        strategy_id: &str,
        holder_wallet: &str,
    ) -> Result<Option<UserKey>, StoreError> {
        Ok(sqlx::query_as::<_, UserKey>(
            "SELECT * FROM user_keys
             WHERE strategy_id = ? AND holder_wallet = ? AND status IN ('active', 'exhausted')",
        )
        .bind(strategy_id)
        .bind(holder_wallet)
        .fetch_optional(self.pool())
        .await?)
    }

    /// One key by its OpenRouter hash.
    pub async fn key_by_hash(&self, key_hash: &str) -> Result<Option<UserKey>, StoreError> {
        Ok(
            sqlx::query_as::<_, UserKey>("SELECT * FROM user_keys WHERE key_hash = ?")
                .bind(key_hash)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// A strategy's keys whose status is one of `statuses` (every key when `statuses` is
    /// empty), oldest first.
    pub async fn keys_for_strategy(
        &self,
        strategy_id: &str,
        statuses: &[KeyStatus],
    ) -> Result<Vec<UserKey>, StoreError> {
        let filter = if statuses.is_empty() {
            String::new()
        } else {
            // Only `?` placeholders are spliced in; the values are bound.
            format!(" AND status IN ({})", vec!["?"; statuses.len()].join(", "))
        };
        let sql = format!(
            "SELECT * FROM user_keys WHERE strategy_id = ?{filter}
             ORDER BY created_at, key_hash"
        );
        let mut query = sqlx::query_as::<_, UserKey>(AssertSqlSafe(sql)).bind(strategy_id);
        for status in statuses {
            query = query.bind(status.as_str());
        }
        Ok(query.fetch_all(self.pool()).await?)
    }

    /// Every key of a wallet, across strategies and statuses (current ones first, then newest
    /// first), e.g. for a reveal.
    pub async fn keys_for_holder(&self, holder_wallet: &str) -> Result<Vec<UserKey>, StoreError> {
        Ok(sqlx::query_as::<_, UserKey>(
            "SELECT * FROM user_keys WHERE holder_wallet = ?
             ORDER BY status NOT IN ('active', 'exhausted'), created_at DESC, key_hash",
        )
        .bind(holder_wallet)
        .fetch_all(self.pool())
        .await?)
    }

    /// Records the key's limit as now set on OpenRouter. False when there is no such key.
    pub async fn set_key_limit(
        &self,
        key_hash: &str,
        limit_micro_usd: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE user_keys SET limit_micro_usd = ?, updated_at = ? WHERE key_hash = ?",
        )
        .bind(limit_micro_usd)
        .bind(now_timestamp())
        .bind(key_hash)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Folds a polled usage figure into the key, with the time it was read. False when there is
    /// no such key.
    pub async fn set_key_usage(
        &self,
        key_hash: &str,
        usage_micro_usd: i64,
        synced_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE user_keys SET usage_micro_usd = ?, last_synced_at = ?, updated_at = ?
             WHERE key_hash = ?",
        )
        .bind(usage_micro_usd)
        .bind(format_timestamp(synced_at))
        .bind(now_timestamp())
        .bind(key_hash)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets the key's status. False when there is no such key. Making a key current again
    /// (active/exhausted) while the holder has another current key is a unique violation.
    /// Rotation goes through [`Store::mark_rotated`], which also records the replacement.
    pub async fn set_key_status(
        &self,
        key_hash: &str,
        status: KeyStatus,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE user_keys SET status = ?, updated_at = ? WHERE key_hash = ?")
                .bind(status.as_str())
                .bind(now_timestamp())
                .bind(key_hash)
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Takes the sealed plaintext for a reveal: in one write transaction, reads the ciphertext
    /// and nonce, erases them and sets `revealed_at`. Returns `None` when the key does not
    /// exist or holds no ciphertext (already revealed, or never had one), so of any number of
    /// concurrent callers at most one ever receives it: a plaintext is revealed at most once.
    ///
    /// The erasure is committed before this returns, i.e. before the holder has the plaintext;
    /// if delivery then fails the key is lost, and the holder replaces it by signed rotation.
    pub async fn take_encrypted_key(
        &self,
        key_hash: &str,
    ) -> Result<Option<(Vec<u8>, [u8; NONCE_LEN])>, StoreError> {
        // IMMEDIATE: the write lock is held from the read on, so no second reader can see the
        // ciphertext between our read and our erase.
        let mut tx = self.begin_write().await?;
        let row: Option<(Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT encrypted_key, key_nonce FROM user_keys
             WHERE key_hash = ? AND encrypted_key IS NOT NULL AND key_nonce IS NOT NULL",
        )
        .bind(key_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((ciphertext, nonce)) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let nonce = nonce_from_blob("key_nonce", nonce)?;
        let now = now_timestamp();
        let done = sqlx::query(
            "UPDATE user_keys
             SET encrypted_key = NULL, key_nonce = NULL, revealed_at = ?, updated_at = ?
             WHERE key_hash = ? AND encrypted_key IS NOT NULL",
        )
        .bind(&now)
        .bind(&now)
        .bind(key_hash)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            // Unreachable under the write lock; refuse to hand out what was not erased.
            tx.rollback().await?;
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some((ciphertext, nonce)))
    }

    /// Rotation: in one write transaction, marks `old_hash` (which must be the current key of
    /// `new`'s strategy and holder) `rotated`, erases its unrevealed ciphertext (that key is
    /// about to be deleted), inserts `new` as the holder's active key and records it as the
    /// replacement. Returns the new key, or `None` (nothing written) when `old_hash` is not that
    /// holder's current key, e.g. already rotated by a concurrent caller.
    ///
    /// One transaction because the schema allows one current key per holder: the old key must
    /// leave `active` before the new one can enter, and no crash may leave the holder with none.
    pub async fn mark_rotated(
        &self,
        old_hash: &str,
        new: &NewUserKey,
    ) -> Result<Option<UserKey>, StoreError> {
        let mut tx = self.begin_write().await?;
        let now = now_timestamp();
        let retired = sqlx::query(
            "UPDATE user_keys
             SET status = 'rotated', encrypted_key = NULL, key_nonce = NULL, updated_at = ?
             WHERE key_hash = ? AND strategy_id = ? AND holder_wallet = ?
               AND status IN ('active', 'exhausted')",
        )
        .bind(&now)
        .bind(old_hash)
        .bind(&new.strategy_id)
        .bind(&new.holder_wallet)
        .execute(&mut *tx)
        .await?;
        if retired.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(None);
        }
        let key = insert_user_key_on(&mut tx, new).await?;
        sqlx::query("UPDATE user_keys SET replaced_by_hash = ? WHERE key_hash = ?")
            .bind(&key.key_hash)
            .bind(old_hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(key))
    }

    /// Records that the key was deleted on OpenRouter (revoke, rotation). Idempotent: the first
    /// time is kept. False when there is no such key.
    pub async fn mark_remote_deleted(&self, key_hash: &str) -> Result<bool, StoreError> {
        let now = now_timestamp();
        let done = sqlx::query(
            "UPDATE user_keys
             SET remote_deleted_at = COALESCE(remote_deleted_at, ?), updated_at = ?
             WHERE key_hash = ?",
        )
        .bind(&now)
        .bind(&now)
        .bind(key_hash)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Revoked or rotated keys not yet deleted on OpenRouter, oldest first: the deletes to
    /// (re)try.
    pub async fn keys_pending_remote_delete(&self) -> Result<Vec<UserKey>, StoreError> {
        Ok(sqlx::query_as::<_, UserKey>(
            "SELECT * FROM user_keys
             WHERE status IN ('revoked', 'rotated') AND remote_deleted_at IS NULL
             ORDER BY updated_at, key_hash",
        )
        .fetch_all(self.pool())
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const WALLET_A: &str = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM";
    const WALLET_B: &str = "HN7cABqLq46Es1jh92dQQisAq662SmxELLLsHHe4YWrH";

    async fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("creditbrain.db"))
            .await
            .unwrap();
        for strategy_id in ["s1", "s2"] {
            let now = now_timestamp();
            sqlx::query(
                "INSERT INTO strategies (strategy_id, owner_wallet, token_mint,
                     threshold_lamports, slippage_bps, distribution_mode, max_grant_micro_usd,
                     max_key_limit_micro_usd, key_expiry_days, reserve_bps, cron_schedule,
                     created_at, updated_at)
                 VALUES (?, '7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU',
                     'EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v', 0, 50, 'EQUAL_SPLIT',
                     10000000, 100000000, 0, 0, '0 * * * *', ?, ?)",
            )
            .bind(strategy_id)
            .bind(&now)
            .bind(&now)
            .execute(store.pool())
            .await
            .unwrap();
        }
        (dir, store)
    }

    fn new_key(hash: &str, strategy_id: &str, wallet: &str) -> NewUserKey {
        NewUserKey {
            key_hash: hash.to_string(),
            strategy_id: strategy_id.to_string(),
            holder_wallet: wallet.to_string(),
            name: format!("creditbrain-{strategy_id}-{wallet}"),
            limit_micro_usd: 5_000_000,
            limit_reset: Some("monthly".to_string()),
            encrypted: Some((vec![0xde, 0xad, 0xbe, 0xef, 0x42], [7u8; NONCE_LEN])),
            expires_at: Some(Utc.with_ymd_and_hms(2027, 1, 2, 3, 4, 5).unwrap()),
        }
    }

    #[tokio::test]
    async fn inserted_keys_read_back_exactly() {
        let (_dir, store) = temp_store().await;
        let new = new_key("h1", "s1", WALLET_A);
        let key = store.insert_user_key(&new).await.unwrap();
        assert_eq!(key.key_hash, "h1");
        assert_eq!(key.status, KeyStatus::Active);
        assert_eq!(key.limit_micro_usd, 5_000_000);
        assert_eq!(key.usage_micro_usd, 0);
        assert_eq!(key.limit_reset.as_deref(), Some("monthly"));
        assert_eq!(
            key.encrypted_key.as_deref(),
            Some(&[0xde, 0xad, 0xbe, 0xef, 0x42][..])
        );
        assert_eq!(key.key_nonce, Some([7u8; NONCE_LEN]));
        assert_eq!(key.expires_at.as_deref(), Some("2027-01-02T03:04:05.000Z"));
        assert_eq!(key.revealed_at, None);
        assert_eq!(store.key_by_hash("h1").await.unwrap(), Some(key.clone()));
        assert_eq!(
            store.current_key("s1", WALLET_A).await.unwrap(),
            Some(key.clone())
        );
        assert_eq!(store.current_key("s2", WALLET_A).await.unwrap(), None);
        assert_eq!(store.key_by_hash("nope").await.unwrap(), None);

        // An adopted key has no plaintext and may never expire.
        let adopted = store
            .insert_user_key(&NewUserKey {
                encrypted: None,
                expires_at: None,
                limit_reset: None,
                ..new_key("h2", "s2", WALLET_A)
            })
            .await
            .unwrap();
        assert!(!adopted.has_encrypted_key());
        assert_eq!((adopted.key_nonce, adopted.expires_at), (None, None));
    }

    #[tokio::test]
    async fn debug_shows_no_ciphertext() {
        let (_dir, store) = temp_store().await;
        let new = new_key("h1", "s1", WALLET_A);
        let key = store.insert_user_key(&new).await.unwrap();
        for shown in [format!("{key:?}"), format!("{new:?}")] {
            assert!(shown.contains("encrypted_key_len: Some(5)"), "{shown}");
            // 0xde = 222, 0xad = 173: no byte of the ciphertext appears.
            assert!(!shown.contains("222") && !shown.contains("173"), "{shown}");
        }
    }

    #[tokio::test]
    async fn one_current_key_per_holder() {
        let (_dir, store) = temp_store().await;
        store
            .insert_user_key(&new_key("h1", "s1", WALLET_A))
            .await
            .unwrap();
        let error = store
            .insert_user_key(&new_key("h2", "s1", WALLET_A))
            .await
            .unwrap_err();
        assert!(error.is_unique_violation(), "{error}");
        // Exhausted is still current.
        assert!(
            store
                .set_key_status("h1", KeyStatus::Exhausted)
                .await
                .unwrap()
        );
        let error = store
            .insert_user_key(&new_key("h2", "s1", WALLET_A))
            .await
            .unwrap_err();
        assert!(error.is_unique_violation(), "{error}");
        // Other holders and other strategies are independent.
        store
            .insert_user_key(&new_key("h3", "s1", WALLET_B))
            .await
            .unwrap();
        store
            .insert_user_key(&new_key("h4", "s2", WALLET_A))
            .await
            .unwrap();
        // The same hash twice is refused whatever the holder.
        let error = store
            .insert_user_key(&new_key("h3", "s2", WALLET_B))
            .await
            .unwrap_err();
        assert!(error.is_unique_violation(), "{error}");

        // Once revoked, the holder may get a new key.
        assert!(
            store
                .set_key_status("h1", KeyStatus::Revoked)
                .await
                .unwrap()
        );
        assert_eq!(store.current_key("s1", WALLET_A).await.unwrap(), None);
        store
            .insert_user_key(&new_key("h2", "s1", WALLET_A))
            .await
            .unwrap();
        assert_eq!(
            store
                .current_key("s1", WALLET_A)
                .await
                .unwrap()
                .unwrap()
                .key_hash,
            "h2"
        );
        // ...and the revoked one cannot come back while h2 is current.
        let error = store
            .set_key_status("h1", KeyStatus::Active)
            .await
            .unwrap_err();
        assert!(error.is_unique_violation(), "{error}");
        assert!(
            !store
                .set_key_status("nope", KeyStatus::Revoked)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn the_plaintext_is_taken_at_most_once() {
        let (_dir, store) = temp_store().await;
        store
            .insert_user_key(&new_key("h1", "s1", WALLET_A))
            .await
            .unwrap();
        let taken = store.take_encrypted_key("h1").await.unwrap();
        assert_eq!(
            taken,
            Some((vec![0xde, 0xad, 0xbe, 0xef, 0x42], [7u8; NONCE_LEN]))
        );
        let key = store.key_by_hash("h1").await.unwrap().unwrap();
        assert_eq!((key.encrypted_key, key.key_nonce), (None, None));
        assert!(key.revealed_at.is_some());
        assert_eq!(store.take_encrypted_key("h1").await.unwrap(), None);
        assert_eq!(store.take_encrypted_key("nope").await.unwrap(), None);

        // Concurrent takers: exactly one wins.
        store
            .insert_user_key(&new_key("h2", "s1", WALLET_B))
            .await
            .unwrap();
        let takers: Vec<_> = (0..6)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.take_encrypted_key("h2").await.unwrap() })
            })
            .collect();
        let mut won = 0;
        for taker in takers {
            won += usize::from(taker.await.unwrap().is_some());
        }
        assert_eq!(won, 1);
    }

    #[tokio::test]
    async fn limits_usage_and_lists() {
        let (_dir, store) = temp_store().await;
        store
            .insert_user_key(&new_key("h1", "s1", WALLET_A))
            .await
            .unwrap();
        store
            .insert_user_key(&new_key("h2", "s1", WALLET_B))
            .await
            .unwrap();
        store
            .insert_user_key(&new_key("h3", "s2", WALLET_A))
            .await
            .unwrap();
        assert!(store.set_key_limit("h1", 12_340_000).await.unwrap());
        let synced = Utc.with_ymd_and_hms(2026, 11, 28, 4, 18, 6).unwrap();
        assert!(store.set_key_usage("h1", 1_234_567, synced).await.unwrap());
        let key = store.key_by_hash("h1").await.unwrap().unwrap();
        assert_eq!(key.limit_micro_usd, 12_340_000);
        assert_eq!(key.usage_micro_usd, 1_234_567);
        assert_eq!(
            key.last_synced_at.as_deref(),
            Some("2026-11-28T04:18:06.000Z")
        );
        assert!(!store.set_key_limit("nope", 1).await.unwrap());
        assert!(!store.set_key_usage("nope", 1, synced).await.unwrap());
        let error = store.set_key_limit("h1", -1).await.unwrap_err();
        assert!(error.is_check_violation(), "{error}");

        store
            .set_key_status("h2", KeyStatus::Expired)
            .await
            .unwrap();
        let hashes = |keys: Vec<UserKey>| keys.into_iter().map(|k| k.key_hash).collect::<Vec<_>>();
        let mut all = hashes(store.keys_for_strategy("s1", &[]).await.unwrap());
        all.sort();
        assert_eq!(all, ["h1", "h2"]);
        assert_eq!(
            hashes(
                store
                    .keys_for_strategy("s1", &[KeyStatus::Active, KeyStatus::Exhausted])
                    .await
                    .unwrap()
            ),
            ["h1"]
        );
        assert_eq!(
            hashes(
                store
                    .keys_for_strategy("s1", &[KeyStatus::Expired])
                    .await
                    .unwrap()
            ),
            ["h2"]
        );
        assert!(
            store
                .keys_for_strategy("s2", &[KeyStatus::Revoked])
                .await
                .unwrap()
                .is_empty()
        );
        let mut of_a = hashes(store.keys_for_holder(WALLET_A).await.unwrap());
        of_a.sort();
        assert_eq!(of_a, ["h1", "h3"]);
    }

    #[tokio::test]
    async fn rotation_replaces_the_current_key_atomically() {
        let (_dir, store) = temp_store().await;
        store
            .insert_user_key(&new_key("old", "s1", WALLET_A))
            .await
            .unwrap();
        // Not the holder's key: nothing happens.
        assert_eq!(
            store
                .mark_rotated("old", &new_key("new", "s1", WALLET_B))
                .await
                .unwrap(),
            None
        );
        assert_eq!(store.key_by_hash("new").await.unwrap(), None);

        let new = store
            .mark_rotated("old", &new_key("new", "s1", WALLET_A))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(new.status, KeyStatus::Active);
        let old = store.key_by_hash("old").await.unwrap().unwrap();
        assert_eq!(old.status, KeyStatus::Rotated);
        assert_eq!(old.replaced_by_hash.as_deref(), Some("new"));
        assert!(!old.has_encrypted_key());
        assert_eq!(
            store
                .current_key("s1", WALLET_A)
                .await
                .unwrap()
                .unwrap()
                .key_hash,
            "new"
        );
        // A second rotation of the same old key does nothing.
        assert_eq!(
            store
                .mark_rotated("old", &new_key("newer", "s1", WALLET_A))
                .await
                .unwrap(),
            None
        );
        // A failed insert rolls the whole rotation back.
        let error = store
            .mark_rotated("new", &new_key("old", "s1", WALLET_A))
            .await
            .unwrap_err();
        assert!(error.is_unique_violation(), "{error}");
        assert_eq!(
            store.key_by_hash("new").await.unwrap().unwrap().status,
            KeyStatus::Active
        );

        let pending = store.keys_pending_remote_delete().await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].key_hash, "old");
        assert!(store.mark_remote_deleted("old").await.unwrap());
        let first = store
            .key_by_hash("old")
            .await
            .unwrap()
            .unwrap()
            .remote_deleted_at;
        assert!(first.is_some());
        assert!(store.mark_remote_deleted("old").await.unwrap());
        assert_eq!(
            store
                .key_by_hash("old")
                .await
                .unwrap()
                .unwrap()
                .remote_deleted_at,
            first
        );
        assert!(store.keys_pending_remote_delete().await.unwrap().is_empty());
        assert!(!store.mark_remote_deleted("nope").await.unwrap());
    }

    #[test]
    fn statuses_round_trip() {
        for status in KeyStatus::ALL {
            assert_eq!(status.as_str().parse::<KeyStatus>(), Ok(status));
        }
        assert!("ACTIVE".parse::<KeyStatus>().is_err());
    }
}
