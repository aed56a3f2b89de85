//! The OpenRouter management API client: typed requests and responses, dollars converted to
//! integer micro-USD at this boundary, errors mapped from `{"error":{"code","message"}}`.
//!
//! So far it reads the account balance (`GET /credits`), which readiness probes and the pool use.

use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;

/// The management API, authenticated with the management key.
#[derive(Clone)]
pub struct OpenRouterClient {
    http: reqwest::Client,
    base_url: String,
    management_key: Secret,
}

/// The account's credits, in micro-USD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credits {
    pub total_credits_micro_usd: i64,
    pub total_usage_micro_usd: i64,
}

impl Credits {
    /// What the account can still spend: `total_credits − total_usage`.
    pub fn balance_micro_usd(&self) -> i64 {
        self.total_credits_micro_usd - self.total_usage_micro_usd
    }
}

#[derive(thiserror::Error, Debug)]
pub enum OpenRouterError {
    #[error("openrouter request timed out")]
    Timeout,
    #[error("openrouter unreachable: {0}")]
    Connect(String),
    #[error("openrouter answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("openrouter response not understood: {0}")]
    Decode(String),
}

#[derive(Deserialize)]
struct DataEnvelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct CreditsBody {
    total_credits: f64,
    total_usage: f64,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: String,
}

impl OpenRouterClient {
    /// `base_url` without a trailing slash, e.g. `https://openrouter.ai/api/v1`.
    pub fn new(base_url: impl Into<String>, management_key: Secret, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("creditbrain/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a reqwest client with rustls and timeouts always builds");
        Self {
            http,
            base_url: base_url.into().trim_end_matches('/').to_string(),
            management_key,
        }
    }

    /// `GET /credits`: the account's total credits and usage.
    pub async fn credits(&self) -> Result<Credits, OpenRouterError> {
        let body: CreditsBody = self.get_data("/credits").await?;
        Ok(Credits {
            total_credits_micro_usd: usd_to_micro_usd(body.total_credits)?,
            total_usage_micro_usd: usd_to_micro_usd(body.total_usage)?,
        })
    }

    async fn get_data<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
    ) -> Result<T, OpenRouterError> {
        let response = self
            .http
            .get(format!("{}{path}", self.base_url))
            .bearer_auth(self.management_key.expose())
            .send()
            .await
            .map_err(map_transport_error)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(map_transport_error)?;
        if !status.is_success() {
            // OpenRouter's error body; fall back to the status text when it is something else.
            let message = serde_json::from_slice::<ErrorEnvelope>(&bytes)
                .map(|envelope| envelope.error.message)
                .unwrap_or_else(|_| status.canonical_reason().unwrap_or("error").to_string());
            return Err(OpenRouterError::Status {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice::<DataEnvelope<T>>(&bytes)
            .map(|envelope| envelope.data)
            .map_err(|error| OpenRouterError::Decode(error.to_string()))
    }
}

fn map_transport_error(error: reqwest::Error) -> OpenRouterError {
    if error.is_timeout() {
        OpenRouterError::Timeout
    } else {
        // Without the URL: it carries no secret today, but error text travels into logs and replies.
        OpenRouterError::Connect(error.without_url().to_string())
    }
}

/// Dollars (a JSON float) to micro-USD, rounding half away from zero to the nearest micro-dollar.
///
/// OpenRouter reports dollars as floats; rounding at one micro-dollar keeps every cent exact and
/// is far finer than any amount we grant. Non-finite or out-of-range values are refused.
pub fn usd_to_micro_usd(usd: f64) -> Result<i64, OpenRouterError> {
    let micro = (usd * 1_000_000.0).round();
    if !micro.is_finite() || micro.abs() > 9.0e15 {
        return Err(OpenRouterError::Decode(format!(
            "dollar amount out of range: {usd}"
        )));
    }
    Ok(micro as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_convert_to_exact_micro_dollars() {
        assert_eq!(usd_to_micro_usd(0.0).unwrap(), 0);
        assert_eq!(usd_to_micro_usd(10.5).unwrap(), 10_500_000);
        // 0.1 + 0.2 is 0.30000000000000004 as a float; rounding gives the exact cents.
        assert_eq!(usd_to_micro_usd(0.1 + 0.2).unwrap(), 300_000);
        assert_eq!(usd_to_micro_usd(123.4567894).unwrap(), 123_456_789);
        assert_eq!(usd_to_micro_usd(-1.25).unwrap(), -1_250_000);
        assert!(usd_to_micro_usd(f64::NAN).is_err());
        assert!(usd_to_micro_usd(1e300).is_err());
    }
}
