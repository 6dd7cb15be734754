//! US dollars in the config (exact decimals) and in reasons, as micro-dollars in between.

use amiwarden_sdk::Micros;
use serde::{Deserialize, Deserializer};

/// A non-negative amount of dollars, written in the config as `"10.00"` or `10` or `12.5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usd(pub Micros);

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(text) => text,
            serde_json::Value::Number(number) => number.to_string(),
            other => return Err(serde::de::Error::custom(format!("expected dollars like \"10.00\", got {other}"))),
        };
        parse_usd(&text).map(Usd).map_err(serde::de::Error::custom)
    }
}

/// `"12.40"` → 12_400_000 micros; at most six decimals, no sign, no exponent.
pub fn parse_usd(text: &str) -> Result<Micros, String> {
    let bad = || format!("`{text}` is not an amount of dollars like \"10.00\" (up to 6 decimals)");
    let trimmed = text.trim().trim_start_matches('$');
    let (whole, fraction) = trimmed.split_once('.').unwrap_or((trimmed, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 6 {
        return Err(bad());
    }
    let whole: Micros = whole.parse().map_err(|_| bad())?;
    let fraction: Micros = format!("{fraction:0<6}").parse().map_err(|_| bad())?;
    whole.checked_mul(1_000_000).and_then(|w| w.checked_add(fraction)).ok_or_else(bad)
}

/// `$12.40`, or more decimals when cents would hide a difference (`$12.400001`).
pub fn usd(micros: Micros) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    let (whole, fraction) = (abs / 1_000_000, abs % 1_000_000);
    let mut fraction = format!("{fraction:06}");
    while fraction.len() > 2 && fraction.ends_with('0') {
        fraction.pop();
    }
    format!("{sign}${whole}.{fraction}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_parse_exactly_to_micros() {
        let cases =
            [("10", 10_000_000), ("10.00", 10_000_000), ("12.4", 12_400_000), ("0.000001", 1), ("$5.5", 5_500_000)];
        for (text, micros) in cases {
            assert_eq!(parse_usd(text), Ok(micros), "{text}");
        }
        for bad in ["", "-1", "1.0000001", "1e3", "ten", ".5", "1.2.3"] {
            assert!(parse_usd(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dollars_print_with_cents_unless_that_hides_a_difference() {
        assert_eq!(usd(12_400_000), "$12.40");
        assert_eq!(usd(10_000_000), "$10.00");
        assert_eq!(usd(12_400_001), "$12.400001");
        assert_eq!(usd(-1_250_000), "-$1.25");
        assert_eq!(usd(0), "$0.00");
    }

    #[test]
    fn json_numbers_and_strings_are_both_accepted() {
        let from = |json: &str| serde_json::from_str::<Usd>(json);
        assert_eq!(from("\"10.01\"").ok(), Some(Usd(10_010_000)));
        assert_eq!(from("10.01").ok(), Some(Usd(10_010_000)));
        assert_eq!(from("7").ok(), Some(Usd(7_000_000)));
        assert!(from("true").is_err());
    }
}
