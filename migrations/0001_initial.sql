-- 0001_initial: CreditBrain's whole SQLite schema. Forward-only: never edit this file once landed;
-- change the schema with a new 000N_*.sql registered in actors/src/store.rs (MIGRATIONS).
--
-- Conventions (DESIGN §1, §8):
-- * Money is INTEGER: lamports, USDC base units (6 decimals), micro-USD (1 USD = 1 000 000).
--   Key limits and grants are whole cents, i.e. multiples of 10 000 micro-USD.
-- * u64 token amounts (SPL balances, weights derived from them) are TEXT holding the canonical
--   decimal form (digits only, no leading zero, <= 18446744073709551615): SQLite INTEGER is i64 and
--   a u64 balance may exceed it, and a REAL would round. Sort/sum them in Rust as u64/u128.
-- * Timestamps are TEXT, UTC RFC 3339 with milliseconds and `Z` (2026-11-28T04:18:06.123Z), always
--   bound from Rust (`store::now_timestamp`); there are no SQL timestamp defaults. Every timestamp
--   column CHECKs that shape, so text order is time order everywhere (the old service mixed two).
-- * Wallets, mints and signatures are base58, case preserved (base58 is case-sensitive).
-- * Tables are STRICT, so a float can never land in an INTEGER (money) column.
-- * Foreign keys say their ON DELETE explicitly: history RESTRICTs (a strategy with runs cannot be
--   deleted, so the API answers 409), configuration and bookkeeping CASCADE.

-- strategies: one token community's configuration. Protects: enums and ranges are valid, ceilings
-- are whole cents, carry-over (un-granted micro-USD waiting for the next run) is never negative.
CREATE TABLE strategies (
    strategy_id             TEXT PRIMARY KEY NOT NULL CHECK (length(strategy_id) BETWEEN 1 AND 64),
    owner_wallet            TEXT NOT NULL
        CHECK (length(owner_wallet) BETWEEN 32 AND 44 AND owner_wallet NOT GLOB '*[^1-9A-HJ-NP-Za-km-z]*'),
    token_mint              TEXT NOT NULL
        CHECK (length(token_mint) BETWEEN 32 AND 44 AND token_mint NOT GLOB '*[^1-9A-HJ-NP-Za-km-z]*'),
    fee_source              TEXT NOT NULL DEFAULT 'CLAIMABLE_POSITIONS'
        CHECK (fee_source IN ('CLAIMABLE_POSITIONS', 'PARTNER_FEES')),
    threshold_lamports      INTEGER NOT NULL CHECK (threshold_lamports >= 0),
    slippage_bps            INTEGER NOT NULL CHECK (slippage_bps BETWEEN 0 AND 10000),
    distribution_mode       TEXT NOT NULL
        CHECK (distribution_mode IN ('OWNER_ONLY', 'TOP_N_HOLDERS', 'EQUAL_SPLIT',
                                     'WEIGHTED_BY_HOLDINGS', 'CUSTOM_LIST')),
    top_n                   INTEGER NOT NULL DEFAULT 100 CHECK (top_n >= 1),
    -- Raw token base units (u64 as decimal TEXT); holders below it do not qualify.
    min_holding_base_units  TEXT NOT NULL DEFAULT '0'
        CHECK (min_holding_base_units NOT GLOB '*[^0-9]*'
               AND length(min_holding_base_units) BETWEEN 1 AND 20
               AND (min_holding_base_units = '0' OR min_holding_base_units NOT GLOB '0*')
               AND (length(min_holding_base_units) < 20
                    OR min_holding_base_units <= '18446744073709551615')),
    -- Most one holder receives from one run (credits) / most one allowance may be (allowance).
    max_grant_micro_usd     INTEGER NOT NULL
        CHECK (max_grant_micro_usd > 0 AND max_grant_micro_usd % 10000 = 0),
    -- Most a key's limit may ever reach.
    max_key_limit_micro_usd INTEGER NOT NULL
        CHECK (max_key_limit_micro_usd > 0 AND max_key_limit_micro_usd % 10000 = 0),
    -- NULL = credits mode (usage never resets); otherwise allowance mode, as OpenRouter defines it.
    key_limit_reset         TEXT CHECK (key_limit_reset IN ('daily', 'weekly', 'monthly')),
    key_expiry_days         INTEGER NOT NULL CHECK (key_expiry_days >= 0), -- 0 = never
    reserve_bps             INTEGER NOT NULL CHECK (reserve_bps BETWEEN 0 AND 10000),
    cron_schedule           TEXT NOT NULL CHECK (length(trim(cron_schedule)) > 0), -- UTC
    status                  TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
    carry_over_micro_usd    INTEGER NOT NULL DEFAULT 0 CHECK (carry_over_micro_usd >= 0),
    created_at              TEXT NOT NULL
        CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    updated_at              TEXT NOT NULL
        CHECK (updated_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z')
) STRICT;

CREATE INDEX strategies_status ON strategies (status);
CREATE INDEX strategies_owner_wallet ON strategies (owner_wallet);

-- strategy_custom_weights: the CUSTOM_LIST distribution (wallet -> positive integer weight).
-- Protects: one weight per wallet per strategy, weights positive.
CREATE TABLE strategy_custom_weights (
    strategy_id TEXT NOT NULL REFERENCES strategies (strategy_id) ON DELETE CASCADE,
    wallet      TEXT NOT NULL
        CHECK (length(wallet) BETWEEN 32 AND 44 AND wallet NOT GLOB '*[^1-9A-HJ-NP-Za-km-z]*'),
    weight      INTEGER NOT NULL CHECK (weight > 0),
    created_at  TEXT NOT NULL
        CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    PRIMARY KEY (strategy_id, wallet)
) STRICT;

-- strategy_exclusions: wallets that never receive a grant for this strategy (on top of the
-- protocol and off-curve owners the daemon always excludes). Protects: no duplicates.
CREATE TABLE strategy_exclusions (
    strategy_id TEXT NOT NULL REFERENCES strategies (strategy_id) ON DELETE CASCADE,
    wallet      TEXT NOT NULL
        CHECK (length(wallet) BETWEEN 32 AND 44 AND wallet NOT GLOB '*[^1-9A-HJ-NP-Za-km-z]*'),
    note        TEXT,
    created_at  TEXT NOT NULL
        CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    PRIMARY KEY (strategy_id, wallet)
) STRICT;

-- runs: one pipeline run; the row is the checkpoint (DESIGN §4). `state` names the phase in
-- progress or next to run. Measured amounts are NULL until their phase has run, then the measured
-- value (0 with skipped_reason when skipped; never an estimate). Protects: valid states; error
-- columns set exactly when FAILED (so resume must clear them); finished_at set exactly when
-- COMPLETE or FAILED; I2 (allocated + carry_out = budget); at most one non-terminal run per
-- strategy (partial unique index below).
CREATE TABLE runs (
    run_id                  TEXT PRIMARY KEY NOT NULL CHECK (length(run_id) BETWEEN 1 AND 64),
    strategy_id             TEXT NOT NULL REFERENCES strategies (strategy_id) ON DELETE RESTRICT,
    state                   TEXT NOT NULL DEFAULT 'PENDING'
        CHECK (state IN ('PENDING', 'CLAIMING', 'SWAPPING', 'BRIDGING', 'ALLOCATING',
                         'PROVISIONING', 'COMPLETE', 'FAILED')),
    triggered_by            TEXT NOT NULL CHECK (triggered_by IN ('manual', 'schedule', 'api')),
    dry_run                 INTEGER NOT NULL DEFAULT 0 CHECK (dry_run IN (0, 1)),
    -- The strategy configuration the run started with (JSON), for traceability.
    strategy_snapshot       TEXT CHECK (strategy_snapshot IS NULL OR json_valid(strategy_snapshot)),
    resume_count            INTEGER NOT NULL DEFAULT 0 CHECK (resume_count >= 0),
    started_at              TEXT NOT NULL
        CHECK (started_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    finished_at             TEXT
        CHECK (finished_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    updated_at              TEXT NOT NULL
        CHECK (updated_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    -- CLAIMING: the signer's measured lamport delta.
    claimed_lamports        INTEGER CHECK (claimed_lamports >= 0),
    -- SWAPPING: lamports sent into the swap (claimed minus the SOL float) and USDC measured out.
    swap_in_lamports        INTEGER CHECK (swap_in_lamports >= 0),
    swapped_usdc_base_units INTEGER CHECK (swapped_usdc_base_units >= 0),
    -- BRIDGING (only with an EVM key): USDC minted on Base and the EVM mint transaction.
    bridged_usdc_base_units INTEGER CHECK (bridged_usdc_base_units >= 0),
    bridge_mint_tx_hash     TEXT,
    -- ALLOCATING: budget = what was split; headroom = what the pool allowed (I1);
    -- allocated = Σ non-skipped grants; carry_out = budget − allocated (I2).
    budget_micro_usd        INTEGER CHECK (budget_micro_usd >= 0),
    carry_in_micro_usd      INTEGER CHECK (carry_in_micro_usd >= 0),
    headroom_micro_usd      INTEGER CHECK (headroom_micro_usd >= 0),
    allocated_micro_usd     INTEGER CHECK (allocated_micro_usd >= 0),
    carry_out_micro_usd     INTEGER CHECK (carry_out_micro_usd >= 0),
    holders_count           INTEGER CHECK (holders_count >= 0),
    -- PROVISIONING
    keys_created            INTEGER CHECK (keys_created >= 0),
    keys_updated            INTEGER CHECK (keys_updated >= 0),
    keys_failed             INTEGER CHECK (keys_failed >= 0),
    -- Why a phase (or the whole run) did nothing, e.g. below_threshold, no_positions, no_holders.
    skipped_reason          TEXT,
    -- Names fixed by the operator runbook.
    error_code              TEXT,
    error_detail            TEXT,
    error_failed_state      TEXT
        CHECK (error_failed_state IN ('PENDING', 'CLAIMING', 'SWAPPING', 'BRIDGING', 'ALLOCATING',
                                      'PROVISIONING')),
    CHECK ((state = 'FAILED') = (error_code IS NOT NULL)),
    CHECK ((state = 'FAILED') = (error_failed_state IS NOT NULL)),
    CHECK (state = 'FAILED' OR error_detail IS NULL),
    CHECK ((state IN ('COMPLETE', 'FAILED')) = (finished_at IS NOT NULL)),
    CHECK (finished_at IS NULL OR finished_at >= started_at),
    CHECK (allocated_micro_usd IS NULL OR carry_out_micro_usd IS NULL OR budget_micro_usd IS NULL
           OR allocated_micro_usd + carry_out_micro_usd = budget_micro_usd)
) STRICT;

CREATE INDEX runs_strategy_started ON runs (strategy_id, started_at DESC);
-- Serves the runbook query: WHERE state = 'FAILED' ORDER BY started_at DESC LIMIT 10.
CREATE INDEX runs_state_started ON runs (state, started_at DESC);
CREATE INDEX runs_started ON runs (started_at DESC);
-- One active run per strategy, enforced by the database whoever starts or resumes it (I3).
CREATE UNIQUE INDEX runs_one_active_per_strategy ON runs (strategy_id)
    WHERE state NOT IN ('COMPLETE', 'FAILED');

-- audit_log: append-only history of runs (phase transitions, transactions, grants) and of
-- operator actions without a run (kill-switch toggles, strategy edits: run_id NULL). Protects:
-- rows are never updated or deleted (triggers below); the autoincrement id totally orders rows.
CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       TEXT REFERENCES runs (run_id) ON DELETE RESTRICT,
    -- No foreign key: the history of a deleted strategy stays.
    strategy_id  TEXT,
    phase        TEXT,
    action       TEXT NOT NULL CHECK (length(action) > 0),
    -- Who acted: scheduler, api, cli, worker, system ...
    actor        TEXT,
    details      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(details)),
    tx_signature TEXT,
    created_at   TEXT NOT NULL
        CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z')
) STRICT;

CREATE INDEX audit_log_run ON audit_log (run_id, id);
CREATE INDEX audit_log_created ON audit_log (created_at);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused');
END;

-- solana_transactions: the exactly-once protocol for claim, swap and burn (DESIGN §4, I3). The
-- signed bytes, signature and lastValidBlockHeight are stored BEFORE sending; after a crash the
-- row says whether to re-send the same bytes, read the landed result, or build a fresh one.
-- `purpose` names what the transaction is for inside its phase (e.g. claim:<position>:<i>, swap,
-- burn). Protects: a signature is recorded once; at most one live (pending or landed)
-- transaction per (run, phase, purpose) — a fresh one only after the old failed or expired.
CREATE TABLE solana_transactions (
    id                      INTEGER PRIMARY KEY,
    run_id                  TEXT NOT NULL REFERENCES runs (run_id) ON DELETE RESTRICT,
    phase                   TEXT NOT NULL
        CHECK (phase IN ('CLAIMING', 'SWAPPING', 'BRIDGING', 'ALLOCATING', 'PROVISIONING')),
    purpose                 TEXT NOT NULL CHECK (length(purpose) > 0),
    -- 1 for the first transaction of this purpose, +1 for each rebuild after expiry or failure.
    attempt                 INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    signature               TEXT NOT NULL UNIQUE
        CHECK (length(signature) BETWEEN 64 AND 88 AND signature NOT GLOB '*[^1-9A-HJ-NP-Za-km-z]*'),
    signed_tx               BLOB NOT NULL CHECK (length(signed_tx) > 0),
    last_valid_block_height INTEGER NOT NULL CHECK (last_valid_block_height >= 0),
    status                  TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'landed', 'failed', 'expired')),
    slot                    INTEGER CHECK (slot >= 0),
    error                   TEXT,
    -- Measured from the confirmed transaction's metadata (balance deltas), JSON.
    result                  TEXT CHECK (result IS NULL OR json_valid(result)),
    created_at              TEXT NOT NULL
        CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    updated_at              TEXT NOT NULL
        CHECK (updated_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    CHECK (status <> 'landed' OR slot IS NOT NULL),
    UNIQUE (run_id, phase, purpose, attempt)
) STRICT;

CREATE UNIQUE INDEX solana_transactions_one_live ON solana_transactions (run_id, phase, purpose)
    WHERE status IN ('pending', 'landed');
CREATE INDEX solana_transactions_run ON solana_transactions (run_id, phase, id);
CREATE INDEX solana_transactions_pending ON solana_transactions (created_at)
    WHERE status = 'pending';

-- user_keys: one row per OpenRouter key we created (or adopted). The plaintext key is kept only
-- encrypted, until the holder reveals it, then erased. Protects: at most one current key
-- (active or exhausted) per (strategy, holder) through a PARTIAL unique index, so a holder can get
-- a new key after the old one was revoked, expired or rotated (the old service's plain UNIQUE
-- forbade that); ciphertext and nonce come and go together; a revealed key holds no ciphertext.
CREATE TABLE user_keys (
    key_hash            TEXT PRIMARY KEY NOT NULL CHECK (length(key_hash) > 0),
    strategy_id         TEXT NOT NULL REFERENCES strategies (strategy_id) ON DELETE RESTRICT,
    holder_wallet       TEXT NOT NULL
        CHECK (length(holder_wallet) BETWEEN 32 AND 44
               AND holder_wallet NOT GLOB '*[^1-9A-HJ-NP-Za-km-z]*'),
    -- Deterministic (creditbrain-<strategy>-<wallet>) so a crash-orphaned key can be adopted.
    name                TEXT NOT NULL CHECK (length(name) > 0),
    limit_micro_usd     INTEGER NOT NULL CHECK (limit_micro_usd >= 0),
    usage_micro_usd     INTEGER NOT NULL DEFAULT 0 CHECK (usage_micro_usd >= 0),
    limit_reset         TEXT CHECK (limit_reset IN ('daily', 'weekly', 'monthly')),
    status              TEXT NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'exhausted', 'expired', 'revoked', 'rotated')),
    -- Rotation: the key that replaced this one.
    replaced_by_hash    TEXT REFERENCES user_keys (key_hash) ON DELETE RESTRICT,
    encrypted_key       BLOB,
    key_nonce           BLOB,
    revealed_at         TEXT
        CHECK (revealed_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    expires_at          TEXT
        CHECK (expires_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    -- Set once the key is deleted on OpenRouter (revoke, rotate), so a failed delete is retried.
    remote_deleted_at   TEXT
        CHECK (remote_deleted_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    created_at          TEXT NOT NULL
        CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    updated_at          TEXT NOT NULL
        CHECK (updated_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    last_synced_at      TEXT
        CHECK (last_synced_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    CHECK ((encrypted_key IS NULL) = (key_nonce IS NULL)),
    CHECK (revealed_at IS NULL OR encrypted_key IS NULL),
    CHECK (replaced_by_hash IS NULL OR replaced_by_hash <> key_hash)
) STRICT;

CREATE UNIQUE INDEX user_keys_one_current_per_holder ON user_keys (strategy_id, holder_wallet)
    WHERE status IN ('active', 'exhausted');
CREATE INDEX user_keys_holder ON user_keys (holder_wallet, status);
CREATE INDEX user_keys_strategy_status ON user_keys (strategy_id, status);
CREATE INDEX user_keys_expires ON user_keys (expires_at) WHERE status IN ('active', 'exhausted');
CREATE INDEX user_keys_created ON user_keys (created_at) WHERE status IN ('active', 'exhausted');

-- allocations: the per-run, per-holder grant ledger written by ALLOCATING (with the carry-over
-- and the state advance, in one transaction) and applied once by PROVISIONING. The absolute
-- target limit is stored BEFORE the OpenRouter call so a retry sends the same value (I3).
-- Protects: one row per holder per run; grants and targets are whole cents, never negative; an
-- applied live grant names the key it went to.
CREATE TABLE allocations (
    id                     INTEGER PRIMARY KEY,
    run_id                 TEXT NOT NULL REFERENCES runs (run_id) ON DELETE RESTRICT,
    holder_wallet          TEXT NOT NULL
        CHECK (length(holder_wallet) BETWEEN 32 AND 44
               AND holder_wallet NOT GLOB '*[^1-9A-HJ-NP-Za-km-z]*'),
    -- u64 token base units as canonical decimal TEXT (see the header).
    token_balance          TEXT NOT NULL
        CHECK (token_balance NOT GLOB '*[^0-9]*' AND length(token_balance) BETWEEN 1 AND 20
               AND (token_balance = '0' OR token_balance NOT GLOB '0*')
               AND (length(token_balance) < 20 OR token_balance <= '18446744073709551615')),
    -- The holder's weight in the split (balance, custom weight, or 1), u64 as decimal TEXT; the
    -- share is weight / Σ weight over the run's rows.
    weight                 TEXT NOT NULL
        CHECK (weight NOT GLOB '*[^0-9]*' AND length(weight) BETWEEN 1 AND 20
               AND (weight = '0' OR weight NOT GLOB '0*')
               AND (length(weight) < 20 OR weight <= '18446744073709551615')),
    grant_micro_usd        INTEGER NOT NULL
        CHECK (grant_micro_usd >= 0 AND grant_micro_usd % 10000 = 0),
    dry_run                INTEGER NOT NULL DEFAULT 0 CHECK (dry_run IN (0, 1)),
    status                 TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'applied', 'failed', 'skipped')),
    target_limit_micro_usd INTEGER
        CHECK (target_limit_micro_usd >= 0 AND target_limit_micro_usd % 10000 = 0),
    key_hash               TEXT REFERENCES user_keys (key_hash) ON DELETE RESTRICT,
    attempts               INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error             TEXT,
    applied_at             TEXT
        CHECK (applied_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    created_at             TEXT NOT NULL
        CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    updated_at             TEXT NOT NULL
        CHECK (updated_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    UNIQUE (run_id, holder_wallet),
    CHECK (status <> 'applied' OR dry_run = 1
           OR (key_hash IS NOT NULL AND target_limit_micro_usd IS NOT NULL AND applied_at IS NOT NULL))
) STRICT;

CREATE INDEX allocations_run_status ON allocations (run_id, status);
CREATE INDEX allocations_holder ON allocations (holder_wallet, run_id);
CREATE INDEX allocations_key ON allocations (key_hash) WHERE key_hash IS NOT NULL;

-- reveal_challenges: single-use nonces a holder signs with their wallet (ed25519) to reveal or
-- replace their key. `message` is the exact text to sign. Protects: a nonce exists once; it is
-- consumed by `UPDATE ... SET used_at = ? WHERE nonce = ? AND used_at IS NULL AND expires_at > ?`
-- (one winner); it expires after it was created.
CREATE TABLE reveal_challenges (
    nonce       TEXT PRIMARY KEY NOT NULL CHECK (length(nonce) >= 16),
    wallet      TEXT NOT NULL
        CHECK (length(wallet) BETWEEN 32 AND 44 AND wallet NOT GLOB '*[^1-9A-HJ-NP-Za-km-z]*'),
    -- NULL = every strategy the wallet holds keys in.
    strategy_id TEXT REFERENCES strategies (strategy_id) ON DELETE CASCADE,
    purpose     TEXT NOT NULL DEFAULT 'reveal' CHECK (purpose IN ('reveal', 'rotate')),
    message     TEXT NOT NULL CHECK (length(message) > 0),
    created_at  TEXT NOT NULL
        CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    expires_at  TEXT NOT NULL
        CHECK (expires_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    used_at     TEXT
        CHECK (used_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    CHECK (expires_at > created_at),
    CHECK (used_at IS NULL OR used_at >= created_at)
) STRICT;

CREATE INDEX reveal_challenges_wallet ON reveal_challenges (wallet, created_at);
CREATE INDEX reveal_challenges_expires ON reveal_challenges (expires_at);

-- usage_snapshots: OpenRouter usage per key as polled (DESIGN §5), kept for a retention period.
-- OpenRouter reports f64 USD; converted to micro-USD with explicit rounding at the boundary.
-- limit/limit_remaining are NULL when OpenRouter reports null (no limit). Protects: amounts are
-- integers, usage never negative; polled_at is indexed for retention pruning.
CREATE TABLE usage_snapshots (
    id                        INTEGER PRIMARY KEY,
    key_hash                  TEXT NOT NULL REFERENCES user_keys (key_hash) ON DELETE CASCADE,
    strategy_id               TEXT NOT NULL REFERENCES strategies (strategy_id) ON DELETE CASCADE,
    usage_micro_usd           INTEGER NOT NULL CHECK (usage_micro_usd >= 0),
    usage_daily_micro_usd     INTEGER NOT NULL CHECK (usage_daily_micro_usd >= 0),
    usage_weekly_micro_usd    INTEGER NOT NULL CHECK (usage_weekly_micro_usd >= 0),
    usage_monthly_micro_usd   INTEGER NOT NULL CHECK (usage_monthly_micro_usd >= 0),
    limit_micro_usd           INTEGER CHECK (limit_micro_usd >= 0),
    -- May be negative if OpenRouter lets usage overshoot the limit; recorded as reported.
    limit_remaining_micro_usd INTEGER,
    polled_at                 TEXT NOT NULL
        CHECK (polled_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z')
) STRICT;

CREATE INDEX usage_snapshots_polled ON usage_snapshots (polled_at);
CREATE INDEX usage_snapshots_key_polled ON usage_snapshots (key_hash, polled_at DESC);
CREATE INDEX usage_snapshots_strategy_polled ON usage_snapshots (strategy_id, polled_at DESC);

-- daily_run_counts: runs started per strategy per UTC day, whoever started them (MAX_DAILY_RUNS).
-- Check and count in one statement: INSERT ... ON CONFLICT DO UPDATE SET run_count = run_count + 1
-- WHERE run_count < :max. Protects: one counter per (strategy, day), never negative.
CREATE TABLE daily_run_counts (
    strategy_id TEXT NOT NULL REFERENCES strategies (strategy_id) ON DELETE CASCADE,
    utc_date    TEXT NOT NULL
        CHECK (utc_date GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]'),
    run_count   INTEGER NOT NULL DEFAULT 0 CHECK (run_count >= 0),
    updated_at  TEXT NOT NULL
        CHECK (updated_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    PRIMARY KEY (strategy_id, utc_date)
) STRICT;

-- run_leases: which daemon instance drives a strategy's active run. Held by heartbeat; an expired
-- lease may be taken over (INSERT ... ON CONFLICT (strategy_id) DO UPDATE ... WHERE
-- run_leases.expires_at < :now). Protects: one lease per strategy, one per run.
CREATE TABLE run_leases (
    strategy_id  TEXT PRIMARY KEY NOT NULL
        REFERENCES strategies (strategy_id) ON DELETE CASCADE,
    run_id       TEXT NOT NULL UNIQUE REFERENCES runs (run_id) ON DELETE CASCADE,
    instance_id  TEXT NOT NULL CHECK (length(instance_id) > 0),
    acquired_at  TEXT NOT NULL
        CHECK (acquired_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    heartbeat_at TEXT NOT NULL
        CHECK (heartbeat_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    expires_at   TEXT NOT NULL
        CHECK (expires_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    CHECK (heartbeat_at >= acquired_at),
    CHECK (expires_at > heartbeat_at)
) STRICT;

-- settings: runtime switches the operator can flip without a restart (kill_switch, toggled from
-- the CLI; every toggle is also written to audit_log). Protects: kill_switch is 'true' or 'false'.
CREATE TABLE settings (
    key        TEXT PRIMARY KEY NOT NULL CHECK (length(key) > 0),
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
        CHECK (updated_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    CHECK (key <> 'kill_switch' OR value IN ('true', 'false'))
) STRICT;

-- The seed row's time comes from SQLite; this strftime yields exactly the Rust format.
INSERT INTO settings (key, value, updated_at)
VALUES ('kill_switch', 'false', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));

-- pool_snapshots: the credit pool over time (DESIGN §1 I1, §5): OpenRouter's account totals, the
-- credit promised to holders and the reserve, and the run (if any) that took it. Protects:
-- balance is always total_credits − total_usage (generated), amounts are integers.
CREATE TABLE pool_snapshots (
    id                      INTEGER PRIMARY KEY,
    run_id                  TEXT REFERENCES runs (run_id) ON DELETE SET NULL,
    total_credits_micro_usd INTEGER NOT NULL CHECK (total_credits_micro_usd >= 0),
    total_usage_micro_usd   INTEGER NOT NULL CHECK (total_usage_micro_usd >= 0),
    -- May be negative if the account is overdrawn; then there is no headroom at all.
    balance_micro_usd       INTEGER GENERATED ALWAYS AS
        (total_credits_micro_usd - total_usage_micro_usd) VIRTUAL,
    promised_micro_usd      INTEGER NOT NULL CHECK (promised_micro_usd >= 0),
    reserve_micro_usd       INTEGER NOT NULL CHECK (reserve_micro_usd >= 0),
    taken_at                TEXT NOT NULL
        CHECK (taken_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z')
) STRICT;

CREATE INDEX pool_snapshots_taken ON pool_snapshots (taken_at);
