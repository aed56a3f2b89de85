//! Pure parsers for configuration values: strict integers, exact decimals, strict booleans, URLs,
//! hex and base64 keys. They know nothing of variable names; `config.rs` turns their errors into
//! messages (and keeps secret values out of them).

use reqwest::Url;

/// Digits only: no sign, no exponent, no separators, no surrounding junk (`12abc`, `1e3`, `-1`,
/// `+5` and `` are all refused). `None` also when the value does not fit in a `u64`.
pub(crate) fn parse_u64(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecimalError {
    /// Not `digits` or `digits.digits`.
    Syntax,
    /// More fractional digits than the unit allows (e.g. a fraction of a lamport or of a cent).
    TooManyDecimals,
    /// Does not fit in a `u64` once scaled.
    TooLarge,
}

/// Parses a non-negative decimal (`5`, `10.5`, `0.000000001`) into an integer count of
/// `10^-decimals` units, exactly: money never goes through a float (DESIGN §1, I2).
pub(crate) fn parse_decimal(text: &str, decimals: u32) -> Result<u64, DecimalError> {
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
    let scale = 10u64.pow(decimals);
    let whole: u64 = whole.parse().map_err(|_| DecimalError::TooLarge)?;
    let fraction_units = if fraction.is_empty() {
        0
    } else {
        // `places <= decimals <= 18`, so both the parse and the scaling fit.
        let value: u64 = fraction.parse().map_err(|_| DecimalError::Syntax)?;
        value * 10u64.pow(decimals - places)
    };
    whole
        .checked_mul(scale)
        .and_then(|units| units.checked_add(fraction_units))
        .ok_or(DecimalError::TooLarge)
}

/// Renders `units` of `10^-decimals` as a decimal without trailing zeros (`5`, `0.000000001`).
pub(crate) fn format_decimal(units: u64, decimals: u32) -> String {
    let scale = 10u64.pow(decimals);
    let (whole, fraction) = (units / scale, units % scale);
    if fraction == 0 {
        return whole.to_string();
    }
    let fraction = format!("{fraction:0width$}", width = decimals as usize);
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

/// The only words accepted as booleans. The old service used JS truthiness, so `"false"` meant
/// true and its own example file switched on DRY_RUN and the kill switch (original §14 item 7).
pub(crate) const BOOLEAN_WORDS: &str = "true, false, 1, 0, yes, no (any case)";

pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// An absolute http(s) URL with a host. The message never quotes the value (URLs may carry keys).
pub(crate) fn parse_http_url(text: &str) -> Result<Url, &'static str> {
    let url = Url::parse(text).map_err(|_| "must be an absolute http:// or https:// URL")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must use http:// or https://");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host");
    }
    Ok(url)
}

/// A base URL that paths are appended to: no query or fragment, no trailing slash (so
/// `format!("{base}/keys")` never produces `//keys`).
pub(crate) fn parse_base_url(text: &str) -> Result<String, &'static str> {
    let url = parse_http_url(text)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(
            "must not have a query string or fragment (it is a base URL that paths are appended to)",
        );
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// `scheme://host[:port]` followed by `/<redacted>` when anything else (path, query, user info)
/// is present: RPC providers put API keys in the query (Helius) or in the path (others).
pub(crate) fn redact_url(text: &str) -> String {
    let Ok(url) = Url::parse(text) else {
        return "<redacted>".to_owned();
    };
    let origin = url.origin().ascii_serialization();
    if origin == "null" {
        return "<redacted>".to_owned();
    }
    let bare = url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if bare {
        origin
    } else {
        format!("{origin}/<redacted>")
    }
}

/// Exactly 64 hex digits, optionally `0x`-prefixed, as 32 bytes.
pub(crate) fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let hex = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Standard base64 (RFC 4648 alphabet, `=` padding optional but correct) decoding to exactly 32
/// bytes. Hand-written because it is one call site and 20 lines, not worth a crate.
pub(crate) fn parse_base64_32(text: &str) -> Option<[u8; 32]> {
    let unpadded = text.strip_suffix('=').unwrap_or(text);
    // 32 bytes = 43 base64 characters (+ one `=` when padded).
    if unpadded.len() != 43 || unpadded.contains('=') {
        return None;
    }
    let mut out = [0u8; 32];
    let mut accumulator: u32 = 0;
    let mut bits = 0;
    let mut written = 0;
    for c in unpadded.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        // Only the low `bits` bits matter; older ones fall off the top harmlessly.
        accumulator = (accumulator << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(written)? = (accumulator >> bits) as u8;
            written += 1;
        }
    }
    // 43 × 6 = 258 bits: 256 of data and 2 that must be zero in canonical encoding.
    if written != 32 || accumulator & ((1 << bits) - 1) != 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_digits_only() {
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64("007"), Some(7));
        assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
        for junk in [
            "",
            "12abc",
            "1e3",
            "-1",
            "+5",
            "1.0",
            "1_000",
            " 1",
            "18446744073709551616",
        ] {
            assert_eq!(parse_u64(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse_decimal("0.000000001", 9), Ok(1));
        assert_eq!(parse_decimal("5", 9), Ok(5_000_000_000));
        assert_eq!(parse_decimal("100", 9), Ok(100_000_000_000));
        assert_eq!(parse_decimal("1.5", 9), Ok(1_500_000_000));
        assert_eq!(parse_decimal("10.5", 2), Ok(1050));
        assert_eq!(parse_decimal("10.55", 2), Ok(1055));
        assert_eq!(parse_decimal("0.1", 2), Ok(10));
        // 0.1 + 0.2 style float drift cannot happen: 0.3 is exactly 30 cents.
        assert_eq!(parse_decimal("0.3", 2), Ok(30));
        assert_eq!(
            parse_decimal("10.555", 2),
            Err(DecimalError::TooManyDecimals)
        );
        assert_eq!(
            parse_decimal("0.0000000001", 9),
            Err(DecimalError::TooManyDecimals)
        );
        for junk in [
            "", ".5", "5.", "1e3", "-1", "+1", "1,5", "abc", "1.2.3", " 1",
        ] {
            assert_eq!(
                parse_decimal(junk, 9),
                Err(DecimalError::Syntax),
                "{junk:?}"
            );
        }
        assert_eq!(parse_decimal("18446744074", 9), Err(DecimalError::TooLarge));
        assert_eq!(
            parse_decimal("99999999999999999999999", 2),
            Err(DecimalError::TooLarge)
        );
    }

    #[test]
    fn decimals_render_without_trailing_zeros() {
        assert_eq!(format_decimal(5_000_000_000, 9), "5");
        assert_eq!(format_decimal(1, 9), "0.000000001");
        assert_eq!(format_decimal(1050, 2), "10.5");
        assert_eq!(format_decimal(0, 2), "0");
    }

    #[test]
    fn booleans_are_strict() {
        for (text, value) in [
            ("true", true),
            ("TRUE", true),
            ("Yes", true),
            ("1", true),
            ("false", false),
            ("False", false),
            ("NO", false),
            ("0", false),
        ] {
            assert_eq!(parse_bool(text), Some(value), "{text}");
        }
        for junk in ["on", "off", "2", "", "t", "y", "truthy", "-1"] {
            assert_eq!(parse_bool(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn urls() {
        assert!(parse_http_url("https://example.com/x?a=1").is_ok());
        assert!(parse_http_url("http://127.0.0.1:8899").is_ok());
        assert!(parse_http_url("ftp://example.com").is_err());
        assert!(parse_http_url("example.com").is_err());
        assert!(parse_http_url("unix:/tmp/x").is_err());
        assert_eq!(
            parse_base_url("https://openrouter.ai/api/v1/").unwrap(),
            "https://openrouter.ai/api/v1"
        );
        assert_eq!(
            parse_base_url("http://127.0.0.1:9000").unwrap(),
            "http://127.0.0.1:9000"
        );
        assert!(parse_base_url("https://x.io/api?key=1").is_err());
    }

    #[test]
    fn redacted_urls_keep_only_the_origin() {
        assert_eq!(
            redact_url("https://mainnet.helius-rpc.com/?api-key=abc"),
            "https://mainnet.helius-rpc.com/<redacted>"
        );
        assert_eq!(
            redact_url("https://x.quiknode.pro/tok3n/"),
            "https://x.quiknode.pro/<redacted>"
        );
        assert_eq!(
            redact_url("http://user:pw@127.0.0.1:8899"),
            "http://127.0.0.1:8899/<redacted>"
        );
        assert_eq!(redact_url("http://127.0.0.1:8899"), "http://127.0.0.1:8899");
        assert_eq!(redact_url("not a url"), "<redacted>");
    }

    #[test]
    fn hex_keys() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let bytes = parse_hex32(hex).unwrap();
        assert_eq!(bytes[0], 0x00);
        assert_eq!(bytes[15], 0xff);
        assert_eq!(bytes[31], 0xff);
        assert_eq!(parse_hex32(&format!("0x{hex}")), Some(bytes));
        assert_eq!(parse_hex32(&hex[..62]), None);
        assert_eq!(parse_hex32(&format!("{hex}00")), None);
        assert_eq!(parse_hex32(&hex.replace('a', "g")), None);
    }

    #[test]
    fn base64_keys() {
        // 32 bytes 0..=31, encoded with the standard alphabet.
        let expected: [u8; 32] = std::array::from_fn(|i| i as u8);
        let encoded = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        assert_eq!(parse_base64_32(encoded), Some(expected));
        assert_eq!(
            parse_base64_32(encoded.trim_end_matches('=')),
            Some(expected)
        );
        let all_ones = format!("{}8=", "/".repeat(42));
        assert_eq!(parse_base64_32(&all_ones), Some([0xff; 32]));
        // Wrong length, URL-safe alphabet, non-canonical trailing bits, stray padding.
        assert_eq!(parse_base64_32("AAEC"), None);
        assert_eq!(
            parse_base64_32("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh_="),
            None
        );
        assert_eq!(
            parse_base64_32("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9="),
            None
        );
        assert_eq!(
            parse_base64_32("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=="),
            None
        );
    }
}
