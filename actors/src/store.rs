//! The store: opens the SQLite database (WAL, foreign keys, busy timeout), runs the embedded
//! migrations, and owns the one timestamp format and the store's error type. All SQL lives in
//! `store` and its submodules.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::SqlSafeStr;
use sqlx::error::ErrorKind;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

#[cfg(test)]
mod tests;

pub mod allocations;
pub mod allowance;
pub mod audit;
pub mod cancel;
pub mod key_queries;
pub mod keys;
pub mod pool;
pub mod reveal;
pub mod runs;
pub mod stats;
pub mod strategies;
pub mod transactions;
pub mod usage;

/// The migrations compiled into the binary: `(version, description, sql)`, in version order.
///
/// Each entry mirrors a file `migrations/<version as 4 digits>_<description with '_'>.sql`, the
/// way sqlx names them, so the bookkeeping in `_sqlx_migrations` matches what `sqlx migrate`
/// would write. Adding a migration is adding its file and one line here; a unit test fails if a
/// file in `migrations/` is missing from this list (or misnamed, or differs from what is embedded).
/// Landed migrations are never edited: sqlx stores their checksum and refuses a changed one.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "initial",
    include_str!("../../migrations/0001_initial.sql"),
)];

/// SQLite waits this long for a competing writer before answering SQLITE_BUSY.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections in the pool. WAL lets readers run beside the one writer; writers queue on
/// SQLite's lock (up to [`BUSY_TIMEOUT`]).
const MAX_CONNECTIONS: u32 = 8;

/// The one timestamp format: UTC RFC 3339 with milliseconds and `Z`, e.g.
/// `2026-11-28T04:18:06.123Z` (24 characters, so text order is time order). SQLite's
/// `strftime('%Y-%m-%dT%H:%M:%fZ', 'now')` yields the same shape.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// Errors from the store.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// The database file's directory could not be created.
    #[error("cannot create database directory {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The database file could not be opened or created.
    #[error("cannot open database {}: {source}", path.display())]
    Open { path: PathBuf, source: sqlx::Error },
    /// Applying or validating the embedded migrations failed (includes a landed migration
    /// that was edited, or a database migrated by a newer binary).
    #[error("database migration failed: {0}")]
    Migrate(MigrateError),
    /// SQLITE_BUSY / SQLITE_LOCKED: another writer held the database past the busy timeout.
    /// Callers report it as `DB_LOCKED`.
    #[error("database is locked: {0}")]
    Locked(sqlx::Error),
    /// Any other database error (constraint violations included; see the `is_*` helpers).
    #[error("database error: {0}")]
    Sqlx(sqlx::Error),
}

impl StoreError {
    /// True for SQLITE_BUSY / SQLITE_LOCKED.
    pub fn is_locked(&self) -> bool {
        matches!(self, StoreError::Locked(_))
    }

    /// A UNIQUE or PRIMARY KEY constraint refused the write (e.g. a second active key for a
    /// holder, a second live transaction for one purpose, a second active run of a strategy).
    pub fn is_unique_violation(&self) -> bool {
        self.database_error_kind() == Some(ErrorKind::UniqueViolation)
    }

    /// A FOREIGN KEY constraint refused the write (e.g. deleting a strategy that has runs).
    pub fn is_foreign_key_violation(&self) -> bool {
        match self {
            // SQLite implements ON DELETE RESTRICT with an internal trigger, so that refusal
            // comes as SQLITE_CONSTRAINT_TRIGGER (which sqlx maps to `Other`) with this message;
            // a missing parent comes as SQLITE_CONSTRAINT_FOREIGNKEY.
            StoreError::Sqlx(sqlx::Error::Database(db)) => {
                db.kind() == ErrorKind::ForeignKeyViolation
                    || db.message().contains("FOREIGN KEY constraint failed")
            }
            _ => false,
        }
    }

    /// A CHECK constraint refused the write (a bad enum value, a negative amount ...).
    pub fn is_check_violation(&self) -> bool {
        self.database_error_kind() == Some(ErrorKind::CheckViolation)
    }

    fn database_error_kind(&self) -> Option<ErrorKind> {
        match self {
            StoreError::Sqlx(sqlx::Error::Database(db)) => Some(db.kind()),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if is_busy(&error) {
            StoreError::Locked(error)
        } else {
            StoreError::Sqlx(error)
        }
    }
}

impl From<MigrateError> for StoreError {
    fn from(error: MigrateError) -> Self {
        match error {
            MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) if is_busy(&e) => {
                StoreError::Locked(e)
            }
            other => StoreError::Migrate(other),
        }
    }
}

/// SQLITE_BUSY (5) or SQLITE_LOCKED (6), in any of their extended forms (the primary code is
/// the low byte of the extended code sqlx reports).
fn is_busy(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
        _ => false,
    }
}

/// The database: a cloneable handle on the SQLite pool.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Creates the parent directory, opens (creating) the SQLite file with WAL,
    /// synchronous=FULL, foreign_keys=ON and a 5 s busy timeout, runs pending migrations and
    /// returns the store. Opening an up-to-date database changes nothing.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|source| StoreError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
        }

        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit survives power loss, not only a process crash. The exactly-once
            // protocol persists a signed transaction *before* sending it; under NORMAL a power
            // cut could forget that record after the transaction went out. Our write rate is
            // low (checkpoints, not hot loops), so the extra fsync per commit is cheap.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);

        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|source| match StoreError::from(source) {
                StoreError::Sqlx(source) => StoreError::Open {
                    path: path.to_path_buf(),
                    source,
                },
                other => other,
            })?;

        if let Err(error) = migrator().run(&pool).await {
            pool.close().await;
            return Err(error.into());
        }

        tracing::debug!(path = %path.display(), "database open");
        Ok(Store { pool })
    }

    /// A round trip to the database (`SELECT 1`), for health probes.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query_scalar::<_, i64>("SELECT 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(())
    }

    /// Closes the pool and waits for its connections to close; the last one checkpoints the
    /// WAL into the database file. Later calls on this store fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The pool, for queries in the store's submodules.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Begins a write transaction with `BEGIN IMMEDIATE`: it takes the write lock up front
    /// (waiting up to the busy timeout), so a transaction that reads and then writes cannot fail
    /// with SQLITE_BUSY halfway, which a deferred `BEGIN` can under WAL without waiting. Use it
    /// for every checkpoint (read state, write outputs, advance state).
    pub async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// The migrator over [`MIGRATIONS`], embedded in the binary (no `migrate!()` macro needed).
pub fn migrator() -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|&(version, description, sql)| {
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                sql.into_sql_str(),
                // Same opt-out marker sqlx reads from migration files.
                sql.starts_with("-- no-transaction"),
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
}

/// Now, in the one timestamp format ([`TIMESTAMP_FORMAT`]).
pub fn now_timestamp() -> String {
    format_timestamp(Utc::now())
}

/// `t` in the one timestamp format: `2026-11-28T04:18:06.123Z` (milliseconds truncated).
pub fn format_timestamp(t: DateTime<Utc>) -> String {
    t.format(TIMESTAMP_FORMAT).to_string()
}

/// Parses a timestamp written by [`format_timestamp`]; any other shape is refused.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    if text.len() != 24 {
        return None;
    }
    NaiveDateTime::parse_from_str(text, TIMESTAMP_FORMAT)
        .ok()
        .map(|t| t.and_utc())
}

/// The UTC calendar day of `t` as `YYYY-MM-DD` (the key of `daily_run_counts`).
pub fn format_utc_date(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}
