//! Strategies as a domain type: the typed, validated [`StrategySpec`]; the raw [`StrategyInput`] an
//! API or CLI sends (also the shape of a [`StrategyPatch`]); the environment's
//! [`StrategyDefaults`]; and the validation between them, which reports every problem at once.
//!
//! Amounts arrive as exact decimal text in the runbook's units (SOL, USD, percent) and leave as
//! integers (lamports, micro-USD, basis points): money never passes through a float (DESIGN §1,
//! I2). The database's CHECKs are the last line of defence, not the first.
//!
//! Owner wallet and token mint are immutable once a strategy exists (as in the old API): its runs,
//! allocations, holder keys and carry-over all belong to that owner's fees and that token's
//! holders, so re-pointing it would hand one community's carry-over to another. A patch may repeat
//! the current values (a full PUT) but not change them; create a new strategy instead.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{Duration, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use solana_sdk::pubkey::Pubkey;

use crate::schedule::CronSchedule;

pub const LAMPORTS_PER_SOL: u64 = 1_000_000_000;
pub const MICRO_USD_PER_USD: i64 = 1_000_000;
/// Key limits and grants are whole cents (OpenRouter's granularity we commit to).
pub const MICRO_USD_PER_CENT: i64 = 10_000;

/// FEE_THRESHOLD_SOL's range (runbook: min 1, max 100 SOL); a strategy's threshold obeys it too.
pub const MIN_THRESHOLD_LAMPORTS: u64 = LAMPORTS_PER_SOL;
pub const MAX_THRESHOLD_LAMPORTS: u64 = 100 * LAMPORTS_PER_SOL;
/// SWAP_SLIPPAGE_BPS's range (runbook: 0–1000).
pub const MAX_SLIPPAGE_BPS: u16 = 1000;
/// CREDIT_POOL_RESERVE_PCT's range (runbook: 0–50 %), in basis points.
pub const MAX_RESERVE_BPS: u16 = 5000;
/// The smallest per-grant ceiling (DEFAULT_KEY_LIMIT_USD min 1) and key-limit ceiling
/// (MAX_KEY_LIMIT_USD min 1).
pub const MIN_LIMIT_MICRO_USD: i64 = MICRO_USD_PER_USD;
/// MAX_KEY_LIMIT_USD's maximum (runbook: 10 000).
pub const MAX_KEY_LIMIT_MICRO_USD: i64 = 10_000 * MICRO_USD_PER_USD;
/// Keeps `now + key_expiry_days` far from chrono's limits (same bound as KEY_EXPIRY_DAYS).
pub const MAX_KEY_EXPIRY_DAYS: u32 = 36_500;

/// Declares a closed set of words (parsed case-insensitively) and their enum.
macro_rules! word_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($variant:ident => $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored word (also the environment's and the API's).
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                let text = text.trim();
                $name::ALL
                    .iter()
                    .copied()
                    .find(|value| value.as_str().eq_ignore_ascii_case(text))
                    .ok_or_else(|| {
                        let words: Vec<&str> = $name::ALL.iter().map($name::as_str).collect();
                        format!("must be one of {}, got {text:?}", words.join(", "))
                    })
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(|e| serde::de::Error::custom(format!("{}: {e}", $what)))
            }
        }
    };
}

word_enum!(
    /// Which Bags fee vaults a strategy claims (FEE_SOURCE).
    FeeSource, "fee source" {
        ClaimablePositions => "CLAIMABLE_POSITIONS",
        PartnerFees => "PARTNER_FEES",
    }
);
word_enum!(
    /// How a run's budget is split among holders (DESIGN §4, DISTRIBUTION_MODE).
    DistributionMode, "distribution mode" {
        OwnerOnly => "OWNER_ONLY",
        TopNHolders => "TOP_N_HOLDERS",
        EqualSplit => "EQUAL_SPLIT",
        WeightedByHoldings => "WEIGHTED_BY_HOLDINGS",
        CustomList => "CUSTOM_LIST",
    }
);
word_enum!(
    /// OpenRouter's `limit_reset`; absent (`None`) means credits mode (DESIGN §5).
    LimitReset, "limit reset" { Daily => "daily", Weekly => "weekly", Monthly => "monthly" }
);
word_enum!(
    /// Whether the Scheduler fires the strategy.
    StrategyStatus, "strategy status" { Active => "active", Paused => "paused" }
);

/// A validated strategy: every field typed and within range, cross-field rules held. Lists are
/// sorted by wallet (base58 text order, the order the store reads them back in), so a spec
/// survives a round trip through the database unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrategySpec {
    pub owner_wallet: Pubkey,
    pub token_mint: Pubkey,
    pub fee_source: FeeSource,
    /// Claimable fees below this do not start a claim (the run completes as skipped).
    pub threshold_lamports: u64,
    pub slippage_bps: u16,
    pub distribution_mode: DistributionMode,
    /// Used by TOP_N_HOLDERS; kept (≥ 1) whatever the mode, so switching modes needs no new value.
    pub top_n: u32,
    /// CUSTOM_LIST weights: unique wallets, weights in `1..=i64::MAX` (SQLite's INTEGER).
    pub custom_weights: Vec<(Pubkey, u64)>,
    /// Wallets that never receive a grant; unique.
    pub exclusions: Vec<Pubkey>,
    /// Token base units a holder needs to qualify.
    pub min_holding_base_units: u64,
    /// Most one holder receives from one run (credits) / most one allowance may be (allowance);
    /// whole cents, `MIN_LIMIT_MICRO_USD..=max_key_limit_micro_usd`.
    pub max_grant_micro_usd: i64,
    /// Most a key's limit may ever reach; whole cents, `MIN_LIMIT_MICRO_USD..=MAX_KEY_LIMIT_MICRO_USD`.
    pub max_key_limit_micro_usd: i64,
    /// `None` = credits mode.
    pub key_limit_reset: Option<LimitReset>,
    /// 0 = keys never expire.
    pub key_expiry_days: u32,
    pub reserve_bps: u16,
    pub schedule: CronSchedule,
    pub status: StrategyStatus,
}

/// The environment's defaults for what a new strategy leaves out, filled by the daemon from its
/// `Config` (FEE_SOURCE, FEE_THRESHOLD_SOL, SWAP_SLIPPAGE_BPS, DISTRIBUTION_*, DEFAULT_KEY_LIMIT_USD,
/// MAX_KEY_LIMIT_USD, KEY_LIMIT_RESET, KEY_EXPIRY_DAYS, CREDIT_POOL_RESERVE_PCT, CRON_EXPRESSION,
/// MIN_CRON_INTERVAL_HOURS). The enums parse from the config's words (`as_str`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrategyDefaults {
    /// DISTRIBUTION_TOKEN_MINT; when `None` every new strategy must name its token.
    pub token_mint: Option<Pubkey>,
    pub fee_source: FeeSource,
    pub threshold_lamports: u64,
    pub slippage_bps: u16,
    pub distribution_mode: DistributionMode,
    pub top_n: u32,
    /// DEFAULT_KEY_LIMIT_USD.
    pub max_grant_micro_usd: i64,
    /// MAX_KEY_LIMIT_USD.
    pub max_key_limit_micro_usd: i64,
    pub key_limit_reset: Option<LimitReset>,
    pub key_expiry_days: u32,
    pub reserve_bps: u16,
    /// CRON_EXPRESSION (already checked against the minimum interval by the config).
    pub cron_schedule: CronSchedule,
    /// MIN_CRON_INTERVAL_HOURS: a strategy's schedule may not fire closer together than this.
    pub min_cron_interval_hours: u32,
}

/// A strategy as an API or CLI sends it: every field optional text, in the runbook's units.
/// JSON numbers are accepted wherever text is (their exact JSON text is what gets parsed).
///
/// Creating ([`StrategySpec::from_input`]): an absent field takes the environment's default
/// (`ownerWallet` has none; `tokenMint` has one only when DISTRIBUTION_TOKEN_MINT is set).
/// Patching ([`StrategySpec::apply_patch`]): an absent field keeps its current value; a given
/// list replaces the whole list (`[]` empties it).
///
/// `keyLimitReset` takes `daily`, `weekly`, `monthly` or `null` (credits mode), as the env var
/// does; a JSON `null` means the same as the text `"null"` (not "absent").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StrategyInput {
    /// Base58 address of the wallet whose Bags fees are claimed (the signer).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text"
    )]
    pub owner_wallet: Option<String>,
    /// Base58 mint of the community's token.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text"
    )]
    pub token_mint: Option<String>,
    /// `CLAIMABLE_POSITIONS` or `PARTNER_FEES`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text"
    )]
    pub fee_source: Option<String>,
    /// SOL, up to 9 decimals, 1–100.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text"
    )]
    pub threshold_sol: Option<String>,
    /// Integer basis points, 0–1000.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text"
    )]
    pub slippage_bps: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text"
    )]
    pub distribution_mode: Option<String>,
    /// Integer ≥ 1.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text"
    )]
    pub top_n: Option<String>,
    /// CUSTOM_LIST: wallet → positive integer weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_weights: Option<Vec<CustomWeightInput>>,
    /// Base58 wallets that never receive a grant.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text_list"
    )]
    pub exclusions: Option<Vec<String>>,
    /// Integer token base units (not UI units: the token's decimals are the chain's business).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text"
    )]
    pub min_holding_base_units: Option<String>,
    /// USD, whole cents, at least 1.00 and at most `maxKeyLimitUsd` (CLI `--key-limit`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text"
    )]
    pub max_grant_usd: Option<String>,
    /// USD, whole cents, 1.00–10000.00.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text"
    )]
    pub max_key_limit_usd: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text_or_null"
    )]
    pub key_limit_reset: Option<String>,
    /// Integer days, 0 (never) to 36500.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text"
    )]
    pub key_expiry_days: Option<String>,
    /// Percent, up to 2 decimals, 0–50.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text"
    )]
    pub reserve_pct: Option<String>,
    /// Classic 5-field cron, UTC.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text"
    )]
    pub schedule: Option<String>,
    /// `active` or `paused`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text"
    )]
    pub status: Option<String>,
}

/// A patch has the input's shape; only its given fields change (see [`StrategyInput`]).
pub type StrategyPatch = StrategyInput;

/// One CUSTOM_LIST entry as sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomWeightInput {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text"
    )]
    pub wallet: Option<String>,
    /// Positive integer.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text"
    )]
    pub weight: Option<String>,
}

/// Every problem found, each as `(field, message)`; fields are the input's JSON names
/// (`maxGrantUsd`, `customWeights[2].weight`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StrategyErrors {
    pub problems: Vec<(String, String)>,
}

impl StrategyErrors {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push((field.into(), message.into()));
    }

    /// The fields named, in order (a field may appear more than once).
    pub fn fields(&self) -> Vec<&str> {
        self.problems
            .iter()
            .map(|(field, _)| field.as_str())
            .collect()
    }
}

impl fmt::Display for StrategyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid strategy: {} problem(s)", self.problems.len())?;
        for (field, message) in &self.problems {
            write!(f, "\n  {field}: {message}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StrategyErrors {}

/// Field names, as the input's JSON names them.
mod field {
    pub const OWNER_WALLET: &str = "ownerWallet";
    pub const TOKEN_MINT: &str = "tokenMint";
    pub const FEE_SOURCE: &str = "feeSource";
    pub const THRESHOLD_SOL: &str = "thresholdSol";
    pub const SLIPPAGE_BPS: &str = "slippageBps";
    pub const DISTRIBUTION_MODE: &str = "distributionMode";
    pub const TOP_N: &str = "topN";
    pub const CUSTOM_WEIGHTS: &str = "customWeights";
    pub const EXCLUSIONS: &str = "exclusions";
    pub const MIN_HOLDING: &str = "minHoldingBaseUnits";
    pub const MAX_GRANT_USD: &str = "maxGrantUsd";
    pub const MAX_KEY_LIMIT_USD: &str = "maxKeyLimitUsd";
    pub const KEY_LIMIT_RESET: &str = "keyLimitReset";
    pub const KEY_EXPIRY_DAYS: &str = "keyExpiryDays";
    pub const RESERVE_PCT: &str = "reservePct";
    pub const SCHEDULE: &str = "schedule";
    pub const STATUS: &str = "status";
}

/// What an absent input field falls back to, and how to name that fallback in a message.
struct Base {
    owner_wallet: Option<Pubkey>,
    token_mint: Option<Pubkey>,
    fee_source: FeeSource,
    threshold_lamports: u64,
    slippage_bps: u16,
    distribution_mode: DistributionMode,
    top_n: u32,
    custom_weights: Vec<(Pubkey, u64)>,
    exclusions: Vec<Pubkey>,
    min_holding_base_units: u64,
    max_grant_micro_usd: i64,
    max_key_limit_micro_usd: i64,
    key_limit_reset: Option<LimitReset>,
    key_expiry_days: u32,
    reserve_bps: u16,
    schedule: CronSchedule,
    status: StrategyStatus,
    /// True when patching: owner and mint may not change.
    patching: bool,
    /// "the default" / "the current value".
    origin: &'static str,
}

impl StrategySpec {
    /// Validates a new strategy: given fields parsed and range-checked, absent ones from
    /// `defaults`, cross-field rules checked, every problem collected.
    pub fn from_input(
        input: &StrategyInput,
        defaults: &StrategyDefaults,
    ) -> Result<StrategySpec, StrategyErrors> {
        let base = Base {
            owner_wallet: None,
            token_mint: defaults.token_mint,
            fee_source: defaults.fee_source,
            threshold_lamports: defaults.threshold_lamports,
            slippage_bps: defaults.slippage_bps,
            distribution_mode: defaults.distribution_mode,
            top_n: defaults.top_n,
            custom_weights: Vec::new(),
            exclusions: Vec::new(),
            min_holding_base_units: 0,
            max_grant_micro_usd: defaults.max_grant_micro_usd,
            max_key_limit_micro_usd: defaults.max_key_limit_micro_usd,
            key_limit_reset: defaults.key_limit_reset,
            key_expiry_days: defaults.key_expiry_days,
            reserve_bps: defaults.reserve_bps,
            schedule: defaults.cron_schedule.clone(),
            status: StrategyStatus::Active,
            patching: false,
            origin: "the default",
        };
        resolve(input, base, defaults.min_cron_interval_hours)
    }

    /// Applies a patch: only the given fields change, and the result is validated as a whole
    /// (a new `maxKeyLimitUsd` below the current `maxGrantUsd` is refused). Owner wallet and
    /// token mint are immutable: giving the current value is fine, another one is a problem.
    /// A given `schedule` is checked against `min_cron_interval_hours`; the current one is not
    /// re-checked (it was valid when set).
    pub fn apply_patch(
        &self,
        patch: &StrategyPatch,
        min_cron_interval_hours: u32,
    ) -> Result<StrategySpec, StrategyErrors> {
        let base = Base {
            owner_wallet: Some(self.owner_wallet),
            token_mint: Some(self.token_mint),
            fee_source: self.fee_source,
            threshold_lamports: self.threshold_lamports,
            slippage_bps: self.slippage_bps,
            distribution_mode: self.distribution_mode,
            top_n: self.top_n,
            custom_weights: self.custom_weights.clone(),
            exclusions: self.exclusions.clone(),
            min_holding_base_units: self.min_holding_base_units,
            max_grant_micro_usd: self.max_grant_micro_usd,
            max_key_limit_micro_usd: self.max_key_limit_micro_usd,
            key_limit_reset: self.key_limit_reset,
            key_expiry_days: self.key_expiry_days,
            reserve_bps: self.reserve_bps,
            schedule: self.schedule.clone(),
            status: self.status,
            patching: true,
            origin: "the current value",
        };
        resolve(patch, base, min_cron_interval_hours)
    }

    /// The spec as JSON (camelCase; integers in their stored units; u64 token amounts as decimal
    /// strings, as the database keeps them), e.g. for a run's `strategy_snapshot`.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "ownerWallet": self.owner_wallet.to_string(),
            "tokenMint": self.token_mint.to_string(),
            "feeSource": self.fee_source.as_str(),
            "thresholdLamports": self.threshold_lamports,
            "slippageBps": self.slippage_bps,
            "distributionMode": self.distribution_mode.as_str(),
            "topN": self.top_n,
            "customWeights": self
                .custom_weights
                .iter()
                .map(|(wallet, weight)| json!({"wallet": wallet.to_string(), "weight": weight}))
                .collect::<Vec<_>>(),
            "exclusions": self.exclusions.iter().map(Pubkey::to_string).collect::<Vec<_>>(),
            "minHoldingBaseUnits": self.min_holding_base_units.to_string(),
            "maxGrantMicroUsd": self.max_grant_micro_usd,
            "maxKeyLimitMicroUsd": self.max_key_limit_micro_usd,
            "keyLimitReset": self.key_limit_reset.map(|reset| reset.as_str()),
            "keyExpiryDays": self.key_expiry_days,
            "reserveBps": self.reserve_bps,
            "schedule": self.schedule.source(),
            "status": self.status.as_str(),
        })
    }
}

/// Parses every given field over `base`, then checks the cross-field rules.
fn resolve(
    input: &StrategyInput,
    base: Base,
    min_cron_interval_hours: u32,
) -> Result<StrategySpec, StrategyErrors> {
    let mut errors = StrategyErrors::default();
    let origin = base.origin;

    let owner_wallet = identity(
        &mut errors,
        field::OWNER_WALLET,
        input.owner_wallet.as_deref(),
        base.owner_wallet,
        base.patching,
        "is required: the base58 address of the wallet whose fees are claimed",
    );
    let token_mint = identity(
        &mut errors,
        field::TOKEN_MINT,
        input.token_mint.as_deref(),
        base.token_mint,
        base.patching,
        "is required (DISTRIBUTION_TOKEN_MINT is not set): the base58 mint of the token",
    );
    let fee_source = given(
        &mut errors,
        field::FEE_SOURCE,
        &input.fee_source,
        base.fee_source,
        |t| t.parse(),
    );
    let threshold_lamports = given(
        &mut errors,
        field::THRESHOLD_SOL,
        &input.threshold_sol,
        base.threshold_lamports,
        |t| {
            amount(
                t,
                9,
                MIN_THRESHOLD_LAMPORTS,
                MAX_THRESHOLD_LAMPORTS,
                "a SOL amount",
                "1 lamport = 0.000000001 SOL",
            )
        },
    );
    let slippage_bps = given(
        &mut errors,
        field::SLIPPAGE_BPS,
        &input.slippage_bps,
        base.slippage_bps,
        |t| integer(t, 0, u64::from(MAX_SLIPPAGE_BPS)),
    );
    let distribution_mode = given(
        &mut errors,
        field::DISTRIBUTION_MODE,
        &input.distribution_mode,
        base.distribution_mode,
        |t| t.parse(),
    );
    let top_n = given(&mut errors, field::TOP_N, &input.top_n, base.top_n, |t| {
        integer(t, 1, u64::from(u32::MAX))
    });
    let custom_weights = match &input.custom_weights {
        Some(list) => custom_weights(&mut errors, list),
        None => Some(base.custom_weights),
    };
    let exclusions = match &input.exclusions {
        Some(list) => exclusions(&mut errors, list),
        None => Some(base.exclusions),
    };
    let min_holding_base_units = given(
        &mut errors,
        field::MIN_HOLDING,
        &input.min_holding_base_units,
        base.min_holding_base_units,
        |t| integer(t, 0, u64::MAX),
    );
    let max_grant_micro_usd = given(
        &mut errors,
        field::MAX_GRANT_USD,
        &input.max_grant_usd,
        base.max_grant_micro_usd,
        usd,
    );
    let max_key_limit_micro_usd = given(
        &mut errors,
        field::MAX_KEY_LIMIT_USD,
        &input.max_key_limit_usd,
        base.max_key_limit_micro_usd,
        usd,
    );
    let key_limit_reset = given(
        &mut errors,
        field::KEY_LIMIT_RESET,
        &input.key_limit_reset,
        base.key_limit_reset,
        |t| {
            if t.trim().eq_ignore_ascii_case("null") {
                Ok(None)
            } else {
                t.parse::<LimitReset>()
                    .map(Some)
                    .map_err(|_| format!("must be one of daily, weekly, monthly, null, got {t:?}"))
            }
        },
    );
    let key_expiry_days = given(
        &mut errors,
        field::KEY_EXPIRY_DAYS,
        &input.key_expiry_days,
        base.key_expiry_days,
        |t| integer(t, 0, u64::from(MAX_KEY_EXPIRY_DAYS)),
    );
    let reserve_bps = given(
        &mut errors,
        field::RESERVE_PCT,
        &input.reserve_pct,
        base.reserve_bps,
        |t| {
            amount(
                t,
                2,
                0,
                u64::from(MAX_RESERVE_BPS),
                "a percentage",
                "the reserve is kept in basis points, 0.01 %",
            )
        },
    );
    let schedule = given(
        &mut errors,
        field::SCHEDULE,
        &input.schedule,
        base.schedule,
        |t| schedule(t, min_cron_interval_hours),
    );
    let status = given(
        &mut errors,
        field::STATUS,
        &input.status,
        base.status,
        |t| t.parse(),
    );

    // Cross-field rules, checked only between values that parsed (a bad one is reported once).
    if let (Some(grant), Some(limit)) = (max_grant_micro_usd, max_key_limit_micro_usd)
        && grant > limit
    {
        let (field, message) = if input.max_grant_usd.is_none() && input.max_key_limit_usd.is_some()
        {
            (
                field::MAX_KEY_LIMIT_USD,
                format!(
                    "must be at least maxGrantUsd ({}, {origin}), got {}",
                    format_usd(grant),
                    format_usd(limit)
                ),
            )
        } else {
            let whose = if input.max_key_limit_usd.is_some() {
                String::new()
            } else {
                format!(", {origin}")
            };
            (
                field::MAX_GRANT_USD,
                format!(
                    "must not exceed maxKeyLimitUsd ({}{whose}), got {}",
                    format_usd(limit),
                    format_usd(grant)
                ),
            )
        };
        errors.push(field, message);
    }
    if distribution_mode == Some(DistributionMode::CustomList)
        && custom_weights.as_ref().is_some_and(Vec::is_empty)
    {
        errors.push(
            field::CUSTOM_WEIGHTS,
            "must list at least one wallet and weight when distributionMode is CUSTOM_LIST",
        );
    }

    if !errors.problems.is_empty() {
        return Err(errors);
    }
    // With no problem recorded every value is `Some`.
    let missing = || StrategyErrors {
        problems: vec![(
            "(internal)".to_owned(),
            "a value was missing without a reported problem; please report this bug".to_owned(),
        )],
    };
    Ok(StrategySpec {
        owner_wallet: owner_wallet.ok_or_else(missing)?,
        token_mint: token_mint.ok_or_else(missing)?,
        fee_source: fee_source.ok_or_else(missing)?,
        threshold_lamports: threshold_lamports.ok_or_else(missing)?,
        slippage_bps: slippage_bps.ok_or_else(missing)?,
        distribution_mode: distribution_mode.ok_or_else(missing)?,
        top_n: top_n.ok_or_else(missing)?,
        custom_weights: custom_weights.ok_or_else(missing)?,
        exclusions: exclusions.ok_or_else(missing)?,
        min_holding_base_units: min_holding_base_units.ok_or_else(missing)?,
        max_grant_micro_usd: max_grant_micro_usd.ok_or_else(missing)?,
        max_key_limit_micro_usd: max_key_limit_micro_usd.ok_or_else(missing)?,
        key_limit_reset: key_limit_reset.ok_or_else(missing)?,
        key_expiry_days: key_expiry_days.ok_or_else(missing)?,
        reserve_bps: reserve_bps.ok_or_else(missing)?,
        schedule: schedule.ok_or_else(missing)?,
        status: status.ok_or_else(missing)?,
    })
}

/// The parsed given value, or the base value when absent; `None` (and a problem) when invalid.
fn given<T>(
    errors: &mut StrategyErrors,
    field: &str,
    text: &Option<String>,
    base: T,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    match text {
        None => Some(base),
        Some(text) => match parse(text.trim()) {
            Ok(value) => Some(value),
            Err(message) => {
                errors.push(field, message);
                None
            }
        },
    }
}

/// Owner wallet / token mint: required when there is no base, immutable when patching.
fn identity(
    errors: &mut StrategyErrors,
    field: &str,
    text: Option<&str>,
    base: Option<Pubkey>,
    patching: bool,
    required: &str,
) -> Option<Pubkey> {
    match (text, base) {
        (None, Some(base)) => Some(base),
        (None, None) => {
            errors.push(field, required);
            None
        }
        (Some(text), base) => match pubkey(text) {
            Err(message) => {
                errors.push(field, message);
                None
            }
            Ok(key) if patching && base.is_some_and(|base| base != key) => {
                errors.push(
                    field,
                    "is immutable: a strategy's runs, keys and carry-over belong to its owner \
                     and token; create a new strategy instead",
                );
                None
            }
            Ok(key) => Some(key),
        },
    }
}

fn pubkey(text: &str) -> Result<Pubkey, String> {
    let text = text.trim();
    // `Pubkey::from_str` decodes base58 and requires exactly 32 bytes.
    Pubkey::from_str(text)
        .map_err(|_| format!("must be a base58 Solana address (32 bytes), got {text:?}"))
}

/// Digits only (no sign, exponent or separator), within `min..=max`, converted to `T`.
fn integer<T: TryFrom<u64>>(text: &str, min: u64, max: u64) -> Result<T, String> {
    let range = if max == u64::MAX {
        format!("of at least {min}")
    } else {
        format!("from {min} to {max}")
    };
    let parsed = (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse::<u64>().ok())
        .flatten()
        .filter(|value| (min..=max).contains(value))
        .and_then(|value| T::try_from(value).ok());
    parsed.ok_or_else(|| format!("must be an integer {range}, got {text:?}"))
}

/// An exact decimal in `10^-decimals` units within `min..=max` (units), converted to `T`.
fn amount<T: TryFrom<u64>>(
    text: &str,
    decimals: u32,
    min: u64,
    max: u64,
    what: &str,
    smallest: &str,
) -> Result<T, String> {
    let show = |units: u64| format_decimal(units, decimals);
    let expected = format!(
        "must be {what} from {} to {} with at most {decimals} decimals",
        show(min),
        show(max)
    );
    match parse_decimal(text, decimals) {
        Ok(units) if (min..=max).contains(&units) => {
            T::try_from(units).map_err(|_| format!("{expected}, got {text:?}"))
        }
        Err(DecimalError::TooManyDecimals) => Err(format!("{expected} ({smallest}), got {text:?}")),
        Ok(_) | Err(_) => Err(format!("{expected}, got {text:?}")),
    }
}

/// USD in whole cents, `MIN_LIMIT_MICRO_USD..=MAX_KEY_LIMIT_MICRO_USD`, as micro-USD.
fn usd(text: &str) -> Result<i64, String> {
    let min = (MIN_LIMIT_MICRO_USD / MICRO_USD_PER_CENT).unsigned_abs();
    let max = (MAX_KEY_LIMIT_MICRO_USD / MICRO_USD_PER_CENT).unsigned_abs();
    let cents: i64 = amount(text, 2, min, max, "a USD amount", "limits are whole cents")?;
    Ok(cents * MICRO_USD_PER_CENT)
}

fn schedule(text: &str, min_cron_interval_hours: u32) -> Result<CronSchedule, String> {
    let schedule = CronSchedule::parse(text).map_err(|e| format!("{e}, got {text:?}"))?;
    if min_cron_interval_hours > 0 {
        let minimum = Duration::hours(i64::from(min_cron_interval_hours));
        if let Some((earlier, later)) = schedule.first_gap_shorter_than(Utc::now(), minimum) {
            let gap = (later - earlier).num_minutes();
            let gap = if gap % 60 == 0 {
                format!("{} h", gap / 60)
            } else {
                format!("{gap} min")
            };
            return Err(format!(
                "{text:?} fires {gap} apart (at {} and {}), less than the minimum interval of \
                 {min_cron_interval_hours} h (MIN_CRON_INTERVAL_HOURS)",
                earlier.format("%Y-%m-%d %H:%M UTC"),
                later.format("%H:%M UTC"),
            ));
        }
    }
    Ok(schedule)
}

fn custom_weights(
    errors: &mut StrategyErrors,
    list: &[CustomWeightInput],
) -> Option<Vec<(Pubkey, u64)>> {
    let before = errors.problems.len();
    let mut seen: BTreeMap<Pubkey, usize> = BTreeMap::new();
    let mut weights = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let wallet_field = format!("{}[{i}].wallet", field::CUSTOM_WEIGHTS);
        let weight_field = format!("{}[{i}].weight", field::CUSTOM_WEIGHTS);
        let wallet = match entry.wallet.as_deref() {
            None => {
                errors.push(&wallet_field, "is required");
                None
            }
            Some(text) => match pubkey(text) {
                Ok(key) => match seen.get(&key) {
                    Some(first) => {
                        errors.push(
                            &wallet_field,
                            format!(
                                "is listed twice (also {}[{first}]); give each wallet one weight",
                                field::CUSTOM_WEIGHTS
                            ),
                        );
                        None
                    }
                    None => {
                        seen.insert(key, i);
                        Some(key)
                    }
                },
                Err(message) => {
                    errors.push(&wallet_field, message);
                    None
                }
            },
        };
        // SQLite's INTEGER is i64: a weight above it could not be stored.
        let weight = match entry.weight.as_deref() {
            None => {
                errors.push(&weight_field, "is required");
                None
            }
            Some(text) => match integer::<u64>(text.trim(), 1, i64::MAX.unsigned_abs()) {
                Ok(weight) => Some(weight),
                Err(message) => {
                    errors.push(&weight_field, message);
                    None
                }
            },
        };
        if let (Some(wallet), Some(weight)) = (wallet, weight) {
            weights.push((wallet, weight));
        }
    }
    if errors.problems.len() > before {
        return None;
    }
    weights.sort_by_cached_key(|(wallet, _)| wallet.to_string());
    Some(weights)
}

fn exclusions(errors: &mut StrategyErrors, list: &[String]) -> Option<Vec<Pubkey>> {
    let before = errors.problems.len();
    let mut seen: BTreeMap<Pubkey, usize> = BTreeMap::new();
    for (i, text) in list.iter().enumerate() {
        let item = format!("{}[{i}]", field::EXCLUSIONS);
        match pubkey(text) {
            Ok(key) => {
                if let Some(first) = seen.get(&key) {
                    errors.push(
                        item,
                        format!("is listed twice (also {}[{first}])", field::EXCLUSIONS),
                    );
                } else {
                    seen.insert(key, i);
                }
            }
            Err(message) => errors.push(item, message),
        }
    }
    if errors.problems.len() > before {
        return None;
    }
    let mut wallets: Vec<Pubkey> = seen.into_keys().collect();
    wallets.sort_by_cached_key(Pubkey::to_string);
    Some(wallets)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecimalError {
    Syntax,
    TooManyDecimals,
    TooLarge,
}

/// A non-negative decimal (`5`, `10.5`) as an exact count of `10^-decimals` units.
fn parse_decimal(text: &str, decimals: u32) -> Result<u64, DecimalError> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
        return Err(DecimalError::Syntax);
    }
    let fraction = fraction.unwrap_or("");
    let places = u32::try_from(fraction.len()).map_err(|_| DecimalError::TooManyDecimals)?;
    if places > decimals {
        return Err(DecimalError::TooManyDecimals);
    }
    let whole: u64 = whole.parse().map_err(|_| DecimalError::TooLarge)?;
    let fraction_units = if fraction.is_empty() {
        0
    } else {
        // `places <= decimals <= 9` here, so the parse and the scaling fit.
        let value: u64 = fraction.parse().map_err(|_| DecimalError::Syntax)?;
        value * 10u64.pow(decimals - places)
    };
    whole
        .checked_mul(10u64.pow(decimals))
        .and_then(|units| units.checked_add(fraction_units))
        .ok_or(DecimalError::TooLarge)
}

/// `units` of `10^-decimals` without trailing zeros (`5`, `0.5`, `0.000000001`).
fn format_decimal(units: u64, decimals: u32) -> String {
    let scale = 10u64.pow(decimals);
    let (whole, fraction) = (units / scale, units % scale);
    if fraction == 0 {
        return whole.to_string();
    }
    let fraction = format!("{fraction:0width$}", width = decimals as usize);
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

/// `$12.34` from micro-USD (whole cents shown; the spec's amounts are whole cents).
pub fn format_usd(micro_usd: i64) -> String {
    let sign = if micro_usd < 0 { "-" } else { "" };
    let cents = (micro_usd / MICRO_USD_PER_CENT).unsigned_abs();
    format!("{sign}${}.{:02}", cents / 100, cents % 100)
}

/// Accepts a JSON string or number as text (a number's own JSON text: no float rounding for
/// what serde_json keeps exactly); null counts as absent.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(value) => scalar_text(value)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// As [`text`], but a JSON null is the word `null` (for `keyLimitReset`: credits mode).
fn text_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(Some("null".to_owned())),
        Some(value) => scalar_text(value)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

fn text_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    match Option::<Vec<serde_json::Value>>::deserialize(d)? {
        None => Ok(None),
        Some(values) => values
            .into_iter()
            .map(scalar_text)
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

fn scalar_text(value: serde_json::Value) -> Result<String, String> {
    match value {
        serde_json::Value::String(text) => Ok(text),
        serde_json::Value::Number(number) => Ok(number.to_string()),
        other => Err(format!("expected a string or a number, got {other}")),
    }
}

#[cfg(test)]
mod tests;
