//! Reveal challenges: single-use, expiring messages a holder signs with their wallet to receive
//! (or replace) their OpenRouter key. A challenge is consumed by exactly one winner.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Store, StoreError, format_timestamp};

/// What a signed challenge authorizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChallengePurpose {
    /// Receive the plaintext of keys awaiting reveal.
    Reveal,
    /// Replace a lost key (a new key with the remaining limit).
    Rotate,
}

impl ChallengePurpose {
    pub fn as_str(&self) -> &'static str {
        match self {
            ChallengePurpose::Reveal => "reveal",
            ChallengePurpose::Rotate => "rotate",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "reveal" => Some(ChallengePurpose::Reveal),
            "rotate" => Some(ChallengePurpose::Rotate),
            _ => None,
        }
    }
}

/// A row of `reveal_challenges`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub nonce: String,
    pub wallet: String,
    /// `None`: every strategy the wallet holds keys in.
    pub strategy_id: Option<String>,
    pub purpose: ChallengePurpose,
    /// The exact text the wallet signs.
    pub message: String,
    pub created_at: String,
    pub expires_at: String,
    pub used_at: Option<String>,
}

fn challenge_from_row(row: &SqliteRow) -> Result<Challenge, sqlx::Error> {
    let purpose: String = row.try_get("purpose")?;
    Ok(Challenge {
        nonce: row.try_get("nonce")?,
        wallet: row.try_get("wallet")?,
        strategy_id: row.try_get("strategy_id")?,
        purpose: ChallengePurpose::parse(&purpose).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "purpose".into(),
            source: format!("unknown purpose {purpose:?}").into(),
        })?,
        message: row.try_get("message")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
    })
}

impl Store {
    /// Records a new challenge.
    pub async fn insert_challenge(&self, challenge: &Challenge) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO reveal_challenges
                 (nonce, wallet, strategy_id, purpose, message, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&challenge.nonce)
        .bind(&challenge.wallet)
        .bind(&challenge.strategy_id)
        .bind(challenge.purpose.as_str())
        .bind(&challenge.message)
        .bind(&challenge.created_at)
        .bind(&challenge.expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn challenge(&self, nonce: &str) -> Result<Option<Challenge>, StoreError> {
        let row = sqlx::query("SELECT * FROM reveal_challenges WHERE nonce = ?")
            .bind(nonce)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(challenge_from_row).transpose()?)
    }

    /// Consumes an unused, unexpired challenge: true for exactly one caller.
    pub async fn consume_challenge(
        &self,
        nonce: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now = format_timestamp(now);
        let done = sqlx::query(
            "UPDATE reveal_challenges SET used_at = ?
             WHERE nonce = ? AND used_at IS NULL AND expires_at > ?",
        )
        .bind(&now)
        .bind(nonce)
        .bind(&now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A wallet's challenges issued since `since` (bounds how many one wallet may hold open).
    pub async fn open_challenges(
        &self,
        wallet: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM reveal_challenges
             WHERE wallet = ? AND used_at IS NULL AND expires_at > ?",
        )
        .bind(wallet)
        .bind(format_timestamp(now))
        .fetch_one(self.pool())
        .await?;
        Ok(count.unsigned_abs())
    }

    /// Deletes challenges that expired before `before` (used or not): they prove nothing more.
    pub async fn prune_challenges(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM reveal_challenges WHERE expires_at < ?")
            .bind(format_timestamp(before))
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}
