//! `pool-status`: the OpenRouter account's balance against what is promised to holders, the
//! reserve, grants not yet applied, what the next run may grant, and the runway.

use std::path::Path;

use super::exit;
use super::format::{self, print_fields, print_json};
use super::session::{OutputArgs, request, unexpected};
use crate::admin::protocol::{AdminRequest, AdminResponse};
use crate::ops::PoolView;

pub async fn pool_status(socket: &Path, output: &OutputArgs) -> i32 {
    let json = output.json;
    let pool = match request(socket, json, AdminRequest::PoolStatus).await {
        Ok(AdminResponse::Pool(pool)) => pool,
        Ok(other) => return unexpected(&other, json),
        Err(code) => return code,
    };
    if json {
        print_json(&pool);
    } else {
        print_pool(&pool);
    }
    exit::OK
}

fn print_pool(pool: &PoolView) {
    out!("credit pool (checked at {})", pool.checked_at);
    print_fields(&[
        ("balance", format::usd(pool.balance_micro_usd)),
        ("promised", format::usd(pool.promised_micro_usd)),
        (
            "reserve",
            format!(
                "{} ({} of the balance)",
                format::usd(pool.reserve_micro_usd),
                format::percent(u64::from(pool.reserve_bps))
            ),
        ),
        ("open grants", format::usd(pool.open_grants_micro_usd)),
        ("available", format::usd(pool.available_micro_usd)),
        (
            "runway",
            pool.runway_secs
                .map(format::duration)
                .unwrap_or_else(|| "unknown".to_string()),
        ),
        ("total credits", format::usd(pool.total_credits_micro_usd)),
        ("total usage", format::usd(pool.total_usage_micro_usd)),
    ]);
    if pool.available_micro_usd == 0 {
        out!(
            "nothing is available to grant: fund the OpenRouter account (see RUNBOOK: credit pool exhausted)"
        );
    }
}
