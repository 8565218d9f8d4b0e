//! Human-readable numbers for summaries.

use std::time::Duration;

/// `1234567` → `1,234,567`; `--fuel` and the other count flags read it
/// back.
pub fn thousands(n: u64) -> String {
    p2pc_types::Thousands(n).to_string()
}

/// Unix seconds as a date in UTC with how far it is from `now`:
/// `2026-12-01 21:40:00 UTC (3 days ago)`.
/// A time past the year 9999 (a bundle can claim one) is shown as its
/// number of seconds.
pub fn date(unix: u64, now: u64) -> String {
    /// 9999-12-31 23:59:59 UTC: RFC 3339 has four digits for the year.
    const LAST: u64 = 253_402_300_799;
    let stamp = if unix <= LAST {
        let when = std::time::UNIX_EPOCH + Duration::from_secs(unix);
        humantime::format_rfc3339_seconds(when)
            .to_string()
            .replace('T', " ")
            .replace('Z', " UTC")
    } else {
        format!("{unix} s after 1970 (past the year 9999)")
    };
    let relative = if unix == now {
        "now".to_owned()
    } else if unix < now {
        format!("{} ago", about(now - unix))
    } else {
        format!("in {}", about(unix - now))
    };
    format!("{stamp} ({relative})")
}

/// A span of seconds in its largest whole unit: `3 days`, `1 hour`.
fn about(secs: u64) -> String {
    const UNITS: &[(&str, u64)] = &[
        ("year", 365 * 86400),
        ("day", 86400),
        ("hour", 3600),
        ("minute", 60),
        ("second", 1),
    ];
    let (name, size) = UNITS
        .iter()
        .find(|(_, size)| secs >= *size)
        .copied()
        .unwrap_or(("second", 1));
    let n = secs / size;
    format!("{n} {name}{}", if n == 1 { "" } else { "s" })
}

/// A limit's duration exactly, in the form `--timeout` reads: `10s`,
/// `1m 30s`, `250ms`.
pub fn span(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Arguments as a shell would need them typed: plain words bare, anything
/// else in single quotes.
pub fn command_line(args: &[String]) -> String {
    let plain = |a: &str| {
        !a.is_empty()
            && a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_=.,/:+@%".contains(&b))
    };
    args.iter()
        .map(|a| {
            if plain(a) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `n` and a noun, plural unless `n` is one: `1 op`, `3 accounts`.
pub fn count(n: u64, noun: &str) -> String {
    format!("{} {noun}{}", thousands(n), if n == 1 { "" } else { "s" })
}

/// A duration with a unit that suits its size: `850µs`, `12.3ms`, `2.50s`.
pub fn duration(d: Duration) -> String {
    let us = d.as_micros();
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn dates_and_spans() {
        assert_eq!(
            date(1_796_155_237, 1_796_155_237 + 3 * 86400 + 5),
            "2026-12-01 20:00:37 UTC (3 days ago)"
        );
        assert_eq!(date(100, 40), "1970-01-01 00:01:40 UTC (in 1 minute)");
        assert_eq!(date(7, 7), "1970-01-01 00:00:07 UTC (now)");
        assert_eq!(span(Duration::from_millis(10_000)), "10s");
        assert_eq!(span(Duration::from_millis(90_250)), "1m 30s 250ms");
        assert_eq!(count(1, "op"), "1 op");
        let args = ["-c".to_owned(), "tr a-z A-Z".to_owned(), "it's".to_owned()];
        assert_eq!(command_line(&args), r"-c 'tr a-z A-Z' 'it'\''s'");
        assert_eq!(count(1000, "account"), "1,000 accounts");
    }

    #[test]
    fn picks_a_unit() {
        assert_eq!(duration(Duration::from_micros(850)), "850µs");
        assert_eq!(duration(Duration::from_micros(12_300)), "12.3ms");
        assert_eq!(duration(Duration::from_millis(2500)), "2.50s");
    }
}
