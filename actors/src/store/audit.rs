//! The audit log in the store: appending entries (inside a caller's transaction or on their own)
//! and reading them back. The table is append-only (triggers refuse UPDATE and DELETE), and an
//! append that fails is an error for the caller, never swallowed (the old service dropped them,
//! original-behaviour §14 item 21).

use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, Row, SqliteExecutor};

use super::{Store, StoreError, now_timestamp};

/// One entry to append. `run_id` / `strategy_id` are `None` for operator actions without a run
/// (kill switch toggles) or without a strategy.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    pub run_id: Option<String>,
    pub strategy_id: Option<String>,
    /// The run state the entry is about (`CLAIMING` ...), if any.
    pub phase: Option<String>,
    /// What happened, a stable snake_case word (`state_advanced`, `kill_switch_on` ...).
    pub action: String,
    /// Who acted: `scheduler`, `api`, `cli`, `worker`, `system` ...
    pub actor: Option<String>,
    /// What an operator needs: amounts, counts, reasons. `Null` is stored as `{}`.
    pub details: serde_json::Value,
    /// The Solana transaction the entry is about, if any.
    pub tx_signature: Option<String>,
}

impl AuditEntry {
    /// An entry with only its action set; fill the rest with the builder methods.
    pub fn new(action: impl Into<String>) -> Self {
        Self {
            run_id: None,
            strategy_id: None,
            phase: None,
            action: action.into(),
            actor: None,
            details: serde_json::Value::Null,
            tx_signature: None,
        }
    }

    pub fn run(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }

    pub fn strategy(mut self, strategy_id: impl Into<String>) -> Self {
        self.strategy_id = Some(strategy_id.into());
        self
    }

    pub fn phase(mut self, phase: impl Into<String>) -> Self {
        self.phase = Some(phase.into());
        self
    }

    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    pub fn tx_signature(mut self, signature: impl Into<String>) -> Self {
        self.tx_signature = Some(signature.into());
        self
    }
}

/// A stored audit row. `id` totally orders rows (autoincrement).
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    pub run_id: Option<String>,
    pub strategy_id: Option<String>,
    pub phase: Option<String>,
    pub action: String,
    pub actor: Option<String>,
    pub details: serde_json::Value,
    pub tx_signature: Option<String>,
    pub created_at: String,
}

// Written out because sqlx's `macros` feature (and its derive) is off to halve the build.
impl FromRow<'_, SqliteRow> for AuditRecord {
    fn from_row(row: &SqliteRow) -> Result<Self, sqlx::Error> {
        let details: String = row.try_get("details")?;
        Ok(Self {
            id: row.try_get("id")?,
            run_id: row.try_get("run_id")?,
            strategy_id: row.try_get("strategy_id")?,
            phase: row.try_get("phase")?,
            action: row.try_get("action")?,
            actor: row.try_get("actor")?,
            details: serde_json::from_str(&details).map_err(|e| sqlx::Error::ColumnDecode {
                index: "details".to_owned(),
                source: Box::new(e),
            })?,
            tx_signature: row.try_get("tx_signature")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// Appends `entry` through `executor`: a pool (its own autocommit write) or a connection inside a
/// caller's transaction (so the entry commits, or rolls back, with what it describes). Returns
/// the row id. A refusal (empty action, unknown run) is an error.
pub async fn append_audit<'e, E: SqliteExecutor<'e>>(
    executor: E,
    entry: &AuditEntry,
) -> Result<i64, StoreError> {
    let details = match &entry.details {
        serde_json::Value::Null => "{}".to_owned(),
        details => details.to_string(),
    };
    let id = sqlx::query_scalar(
        "INSERT INTO audit_log (run_id, strategy_id, phase, action, actor, details, tx_signature,
             created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         RETURNING id",
    )
    .bind(&entry.run_id)
    .bind(&entry.strategy_id)
    .bind(&entry.phase)
    .bind(&entry.action)
    .bind(&entry.actor)
    .bind(details)
    .bind(&entry.tx_signature)
    .bind(now_timestamp())
    .fetch_one(executor)
    .await?;
    Ok(id)
}

impl Store {
    /// Appends `entry` in its own write. Inside a transaction use [`append_audit`] with the
    /// transaction's connection instead.
    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        append_audit(self.pool(), entry).await
    }

    /// Every entry of a run, oldest first.
    pub async fn audit_for_run(&self, run_id: &str) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(
            sqlx::query_as::<_, AuditRecord>(
                "SELECT * FROM audit_log WHERE run_id = ? ORDER BY id",
            )
            .bind(run_id)
            .fetch_all(self.pool())
            .await?,
        )
    }

    /// The newest `limit` entries, newest first.
    pub async fn recent_audit(&self, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(
            sqlx::query_as::<_, AuditRecord>("SELECT * FROM audit_log ORDER BY id DESC LIMIT ?")
                .bind(i64::from(limit))
                .fetch_all(self.pool())
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    async fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn entries_read_back_in_order_and_newest_first() {
        let (_dir, store) = temp_store().await;
        let first = store
            .append_audit(
                &AuditEntry::new("kill_switch_on")
                    .actor("cli")
                    .details(json!({"previous": false})),
            )
            .await
            .unwrap();
        let second = store
            .append_audit(&AuditEntry::new("note").strategy("s-gone"))
            .await
            .unwrap();
        assert!(second > first);

        let recent = store.recent_audit(10).await.unwrap();
        assert_eq!(
            recent.iter().map(|r| r.id).collect::<Vec<_>>(),
            [second, first]
        );
        assert_eq!(recent[1].action, "kill_switch_on");
        assert_eq!(recent[1].actor.as_deref(), Some("cli"));
        assert_eq!(recent[1].details, json!({"previous": false}));
        assert_eq!(
            recent[0].details,
            json!({}),
            "null details are stored as {{}}"
        );
        assert_eq!(
            recent[0].strategy_id.as_deref(),
            Some("s-gone"),
            "no FK: a deleted strategy's history stays"
        );
        assert_eq!(store.recent_audit(1).await.unwrap().len(), 1);
        assert!(store.audit_for_run("none").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_refused_append_is_an_error() {
        let (_dir, store) = temp_store().await;
        let error = store.append_audit(&AuditEntry::new("")).await.unwrap_err();
        assert!(error.is_check_violation(), "{error}");
        let error = store
            .append_audit(&AuditEntry::new("x").run("no-such-run"))
            .await
            .unwrap_err();
        assert!(error.is_foreign_key_violation(), "{error}");
    }

    #[tokio::test]
    async fn audit_rows_cannot_be_updated_or_deleted() {
        let (_dir, store) = temp_store().await;
        let id = store.append_audit(&AuditEntry::new("x")).await.unwrap();
        for sql in [
            "UPDATE audit_log SET action = 'y' WHERE id = ?",
            "DELETE FROM audit_log WHERE id = ?",
        ] {
            let error: StoreError = sqlx::query(sql)
                .bind(id)
                .execute(store.pool())
                .await
                .expect_err(sql)
                .into();
            assert!(error.to_string().contains("append-only"), "{error}");
        }
        assert_eq!(store.recent_audit(5).await.unwrap()[0].action, "x");
    }
}
