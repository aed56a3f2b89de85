//! How the CLI shows things to a person: exact amounts from integers (micro-USD as `$12.34`,
//! lamports as SOL, USDC base units as USDC), durations, aligned tables and `name  value` blocks.
//! Integer in, text out: no amount passes through a float.

use serde_json::Value;

/// Decimal places of each unit's base integer.
const MICRO_USD_DECIMALS: u32 = 6;
const LAMPORT_DECIMALS: u32 = 9;
const USDC_DECIMALS: u32 = 6;

/// `magnitude / 10^scale` exactly, with at least `min_decimals` decimals and no trailing zeros
/// beyond them.
fn decimal(magnitude: u128, scale: u32, min_decimals: usize) -> String {
    let unit = 10u128.pow(scale);
    let whole = magnitude / unit;
    let fraction = format!("{:0width$}", magnitude % unit, width = scale as usize);
    let kept = fraction.trim_end_matches('0');
    let kept = if kept.len() < min_decimals {
        &fraction[..min_decimals.min(fraction.len())]
    } else {
        kept
    };
    if kept.is_empty() {
        whole.to_string()
    } else {
        format!("{whole}.{kept}")
    }
}

/// Micro-USD as dollars: `$12.34` for whole cents, every digit otherwise (`$0.000123`).
pub fn usd(micro_usd: i64) -> String {
    let sign = if micro_usd < 0 { "-" } else { "" };
    let magnitude = u128::from(micro_usd.unsigned_abs());
    format!("{sign}${}", decimal(magnitude, MICRO_USD_DECIMALS, 2))
}

/// Lamports as SOL: `6 SOL`, `0.005 SOL`.
pub fn sol(lamports: u64) -> String {
    format!("{} SOL", decimal(u128::from(lamports), LAMPORT_DECIMALS, 0))
}

/// USDC base units as USDC: `823.45 USDC`.
pub fn usdc(base_units: u64) -> String {
    format!("{} USDC", decimal(u128::from(base_units), USDC_DECIMALS, 2))
}

/// Basis points as a percentage: `10%`, `12.5%`.
pub fn percent(bps: u64) -> String {
    format!("{}%", decimal(u128::from(bps), 2, 0))
}

/// A runway or age in the largest two units: `3 days 4 hours`, `5 hours 2 minutes`, `40 seconds`.
pub fn duration(secs: u64) -> String {
    let units = [
        ("day", 86_400),
        ("hour", 3_600),
        ("minute", 60),
        ("second", 1),
    ];
    let mut parts = Vec::new();
    let mut rest = secs;
    for (name, size) in units {
        let count = rest / size;
        if count > 0 || (parts.is_empty() && size == 1) {
            parts.push(format!(
                "{count} {name}{}",
                if count == 1 { "" } else { "s" }
            ));
            rest -= count * size;
        }
        if parts.len() == 2 {
            break;
        }
        if !parts.is_empty() && count == 0 {
            // `3 days 0 hours` says nothing the first part did not.
            break;
        }
    }
    parts.join(" ")
}

/// `-` for an absent value.
pub fn or_dash<T>(value: Option<T>, show: impl FnOnce(T) -> String) -> String {
    value.map(show).unwrap_or_else(|| "-".to_string())
}

/// A phase output or audit field named like a column (`claimed_lamports`, `budgetMicroUsd`),
/// shown in its unit: `claimed 6 SOL`, `budget $12.00`. Unknown names show their JSON value.
pub fn labelled_amount(name: &str, value: &Value) -> String {
    let snake = to_snake(name);
    let (label, shown) = if let Some(label) = snake.strip_suffix("_lamports") {
        (label, value.as_u64().map(sol))
    } else if let Some(label) = snake.strip_suffix("_usdc_base_units") {
        (label, value.as_u64().map(usdc))
    } else if let Some(label) = snake.strip_suffix("_micro_usd") {
        (label, value.as_i64().map(usd))
    } else {
        (snake.as_str(), None)
    };
    let shown = shown.unwrap_or_else(|| match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    });
    format!("{} {shown}", label.replace('_', " "))
}

fn to_snake(name: &str) -> String {
    let mut snake = String::with_capacity(name.len() + 4);
    for character in name.chars() {
        if character.is_ascii_uppercase() {
            snake.push('_');
            snake.push(character.to_ascii_lowercase());
        } else {
            snake.push(character);
        }
    }
    snake
}

/// `  name  value` lines with the values aligned.
pub fn print_fields(rows: &[(&str, String)]) {
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    for (name, value) in rows {
        out!("  {name:width$}  {value}");
    }
}

/// Columns aligned on the widest cell; the last column is not padded.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Prints the table indented by `indent` spaces.
    pub fn print(&self, indent: usize) {
        let mut widths: Vec<usize> = self.headers.iter().map(|header| header.len()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let last = row.len().saturating_sub(1);
            let mut line = " ".repeat(indent);
            for (index, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if index == last {
                    line.push_str(cell);
                } else {
                    let pad = width - cell.chars().count();
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            out!("{}", line.trim_end());
        }
    }
}

/// Pretty JSON for `--json` output.
pub fn print_json(value: &impl serde::Serialize) {
    out!(
        "{}",
        serde_json::to_string_pretty(value).expect("views serialize")
    );
}

/// One JSON object on one line (for streams of events).
pub fn print_json_line(value: &impl serde::Serialize) {
    out!("{}", serde_json::to_string(value).expect("views serialize"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_are_exact() {
        assert_eq!(usd(12_340_000), "$12.34");
        assert_eq!(usd(0), "$0.00");
        assert_eq!(usd(5), "$0.000005");
        assert_eq!(usd(1_234_500), "$1.2345");
        assert_eq!(usd(-1_500_000), "-$1.50");
        assert_eq!(usd(i64::MIN), "-$9223372036854.775808");
        assert_eq!(sol(6_000_000_000), "6 SOL");
        assert_eq!(sol(5_000_000), "0.005 SOL");
        assert_eq!(sol(0), "0 SOL");
        assert_eq!(usdc(823_450_000), "823.45 USDC");
        assert_eq!(usdc(1), "0.000001 USDC");
        assert_eq!(percent(1000), "10%");
        assert_eq!(percent(1250), "12.5%");
        assert_eq!(percent(5), "0.05%");
    }

    #[test]
    fn durations_use_the_two_largest_units() {
        assert_eq!(duration(0), "0 seconds");
        assert_eq!(duration(40), "40 seconds");
        assert_eq!(duration(3 * 86_400 + 4 * 3_600 + 59), "3 days 4 hours");
        assert_eq!(duration(86_400), "1 day");
        assert_eq!(duration(86_400 + 120), "1 day");
        assert_eq!(duration(5 * 3_600 + 120), "5 hours 2 minutes");
    }

    #[test]
    fn outputs_show_in_their_units() {
        assert_eq!(
            labelled_amount("claimed_lamports", &json!(6_000_000_000u64)),
            "claimed 6 SOL"
        );
        assert_eq!(
            labelled_amount("carryOutMicroUsd", &json!(1_230_000)),
            "carry out $1.23"
        );
        assert_eq!(
            labelled_amount("swapped_usdc_base_units", &json!(5_000_000)),
            "swapped 5.00 USDC"
        );
        assert_eq!(
            labelled_amount("skipped_reason", &json!("below_threshold")),
            "skipped reason below_threshold"
        );
        assert_eq!(
            labelled_amount("holders_count", &json!(12)),
            "holders count 12"
        );
    }
}
