//! Timestamps: seconds since the Unix epoch, written as RFC 3339 text in every file.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Seconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

/// Seconds in a day.
pub const DAY: i64 = 86_400;

impl Timestamp {
    /// The current wall-clock time, truncated to seconds. Only the CLI calls this;
    /// everything below it takes the evaluation time as a value.
    pub fn now() -> Timestamp {
        Timestamp(OffsetDateTime::now_utc().unix_timestamp())
    }

    /// This time plus `days` days.
    pub fn plus_days(self, days: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(days.saturating_mul(DAY)))
    }
}

impl FromStr for Timestamp {
    type Err = String;

    /// Accepts RFC 3339 (`2026-11-24T00:00:00Z`), a plain date (`2026-11-24`, midnight
    /// UTC), or `@SECONDS`, the form `Display` falls back to for times RFC 3339 cannot
    /// write (so every timestamp written can be read back).
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(seconds) = s.strip_prefix('@')
            && let Ok(n) = seconds.parse::<i64>()
        {
            return Ok(Timestamp(n));
        }
        if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
            return Ok(Timestamp(t.unix_timestamp()));
        }
        let date_format = time::macros::format_description!("[year]-[month]-[day]");
        time::Date::parse(s, &date_format)
            .map(|d| Timestamp(d.midnight().assume_utc().unix_timestamp()))
            .map_err(|_| format!("`{s}` is not a date: expected RFC 3339 like 2026-11-24T00:00:00Z or 2026-11-24"))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match OffsetDateTime::from_unix_timestamp(self.0).ok().and_then(|t| t.format(&Rfc3339).ok()) {
            Some(text) => f.write_str(&text),
            None => write!(f, "@{}", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// In a schema: the text `Display` writes (RFC 3339, UTC).
impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A time in RFC 3339, UTC (2026-11-24T00:00:00Z); `@SECONDS` since the Unix epoch for a time RFC 3339 cannot write",
        })
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_rfc3339() {
        let t: Timestamp = "2026-11-24T01:02:03Z".parse().unwrap();
        assert_eq!(t.to_string(), "2026-11-24T01:02:03Z");
        let d: Timestamp = "2026-11-24".parse().unwrap();
        assert_eq!(d.to_string(), "2026-11-24T00:00:00Z");
        assert!("yesterday".parse::<Timestamp>().is_err());
    }

    #[test]
    fn every_timestamp_written_can_be_read_back() {
        for t in [i64::MIN, -62_135_596_801, -1, 0, 1_795_000_000, 400_000_000_020, i64::MAX] {
            let text = Timestamp(t).to_string();
            assert_eq!(text.parse::<Timestamp>(), Ok(Timestamp(t)), "{text}");
            let json = serde_json::to_string(&Timestamp(t)).unwrap();
            assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), Timestamp(t), "{json}");
        }
    }
}
