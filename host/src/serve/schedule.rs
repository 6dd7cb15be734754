//! The schedule of enforcement runs: a cron expression in UTC (seconds optional), and
//! which tick is due now. Ticks missed while the service was down coalesce: after any
//! downtime one run is due, not one per missed tick.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use croner::Cron;

use crate::model::Timestamp;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    text: String,
}

fn utc(t: Timestamp) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp(t.0, 0)
}

impl Schedule {
    /// Parses a cron expression: five fields (minute granularity) or six (with seconds
    /// first), or an alias such as `@hourly`; always in UTC.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let cron = Cron::from_str(text.trim()).map_err(|e| format!("`{text}` is not a cron expression: {e}"))?;
        Ok(Schedule { cron, text: text.trim().to_string() })
    }

    /// The expression as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        self.cron.find_next_occurrence(&utc(t)?, false).ok().map(|d| Timestamp(d.timestamp()))
    }

    /// The latest tick at or before `t`.
    pub fn last_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        self.cron.find_previous_occurrence(&utc(t)?, true).ok().map(|d| Timestamp(d.timestamp()))
    }

    /// The tick due at `now`, if any: the latest tick after `handled` (the last tick a run
    /// was made for) and at or before `now`. Every tick missed since `handled` comes down
    /// to this one. With nothing handled yet, no tick before `started` is due.
    pub fn due(&self, handled: Option<Timestamp>, started: Timestamp, now: Timestamp) -> Option<Timestamp> {
        let latest = self.last_at_or_before(now)?;
        let floor = handled.unwrap_or(Timestamp(started.0.saturating_sub(1)));
        (latest > floor).then_some(latest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn cron_expressions_parse_with_seconds_optional_in_utc() {
        let rows = [
            ("0 3 * * *", "2026-11-24T10:00:00Z", Some("2026-11-25T03:00:00Z")),
            ("*/15 * * * *", "2026-11-24T10:07:00Z", Some("2026-11-24T10:15:00Z")),
            ("30 0 3 * * *", "2026-11-24T10:00:00Z", Some("2026-11-25T03:00:30Z")),
            ("@hourly", "2026-11-24T10:00:00Z", Some("2026-11-24T11:00:00Z")),
            ("0 0 29 2 *", "2026-11-24T00:00:00Z", Some("2028-02-29T00:00:00Z")),
            ("0 0 1 1 MON", "2026-11-24T00:00:00Z", Some("2027-01-01T00:00:00Z")),
            ("0 0 * * MON", "2026-11-24T00:00:00Z", Some("2026-11-30T00:00:00Z")),
        ];
        for (expr, after, want) in rows {
            let s = Schedule::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
            assert_eq!(s.next_after(t(after)), want.map(t), "{expr} after {after}");
        }
        for bad in ["", "* * *", "61 * * * *", "every day", "0 0 31 13 *"] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn missed_ticks_after_downtime_run_once_and_nothing_is_due_twice() {
        let s = Schedule::parse("0 * * * *").unwrap();
        let started = t("2026-11-24T09:30:00Z");
        assert_eq!(s.due(None, started, t("2026-11-24T09:59:59Z")), None, "nothing before the first tick");
        assert_eq!(s.due(None, started, t("2026-11-24T10:00:00Z")), Some(t("2026-11-24T10:00:00Z")));
        let handled = Some(t("2026-11-24T10:00:00Z"));
        assert_eq!(s.due(handled, started, t("2026-11-24T10:30:00Z")), None, "the tick is handled");
        // Down from 10:30 to 15:10: five ticks missed, one run due, for the latest.
        assert_eq!(s.due(handled, started, t("2026-11-24T15:10:00Z")), Some(t("2026-11-24T15:00:00Z")));
        // A tick exactly at start counts; one a second before does not.
        assert_eq!(s.due(None, t("2026-11-24T10:00:00Z"), t("2026-11-24T10:00:00Z")), Some(t("2026-11-24T10:00:00Z")));
        assert_eq!(s.due(None, t("2026-11-24T10:00:01Z"), t("2026-11-24T10:30:00Z")), None);
    }
}
