//! Helpers shared by the HTTP clients (Bags, Helius, Solana RPC, OpenRouter): error texts that
//! say why a request failed, and `Retry-After` parsing.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// An error and its sources on one line: reqwest's own `Display` stops at "error sending
/// request", which says nothing about why (refused, DNS, TLS ...).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3); a date in the past means
/// "now".
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // Not in RFC 9110, but some proxies send fractional seconds.
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(1e9)));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some(
        at.signed_duration_since(now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_names_every_cause_once() {
        let inner =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let outer = std::io::Error::other(inner);
        assert_eq!(error_chain(&outer), "connection refused");
        #[derive(Debug, thiserror::Error)]
        #[error("error sending request")]
        struct Wrapper(#[source] std::io::Error);
        let wrapped = Wrapper(std::io::Error::other("dns failed"));
        assert_eq!(error_chain(&wrapped), "error sending request: dns failed");
    }
}
