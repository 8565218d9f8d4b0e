use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A number of bytes, written the way people write sizes: `512`, `64KiB`,
/// `1.5GiB`, `10MB`. Binary (`KiB`, `MiB`, `GiB`, `TiB`) and decimal (`kB`,
/// `MB`, `GB`, `TB`) units are both accepted, case-insensitively; a bare
/// number is bytes, and digits may be grouped with `,` or `_`
/// (`1,048,576`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// `n` kibibytes.
    pub const fn kib(n: u64) -> Self {
        Self(n * 1024)
    }

    /// `n` mebibytes.
    pub const fn mib(n: u64) -> Self {
        Self(n * 1024 * 1024)
    }

    /// `n` gibibytes.
    pub const fn gib(n: u64) -> Self {
        Self(n * 1024 * 1024 * 1024)
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

/// Why a string is not a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {input:?}: {reason} (expected e.g. 512, 64KiB, 1.5GiB, 10MB, 1,000,000)")]
pub struct ParseSizeError {
    input: String,
    reason: &'static str,
}

const UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("k", 1000),
    ("kb", 1000),
    ("kib", 1 << 10),
    ("m", 1000 * 1000),
    ("mb", 1000 * 1000),
    ("mib", 1 << 20),
    ("g", 1000 * 1000 * 1000),
    ("gb", 1000 * 1000 * 1000),
    ("gib", 1 << 30),
    ("t", 1000 * 1000 * 1000 * 1000),
    ("tb", 1000 * 1000 * 1000 * 1000),
    ("tib", 1 << 40),
];

impl FromStr for ByteSize {
    type Err = ParseSizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseSizeError {
            input: s.to_owned(),
            reason,
        };
        let trimmed = s.trim();
        if trimmed.starts_with('-') {
            return Err(err("a size cannot be negative"));
        }
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | ',' | '_')))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let number = crate::count::strip_separators(number).map_err(err)?;
        let unit = unit.trim().to_ascii_lowercase();
        let multiplier = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, m)| *m)
            .ok_or_else(|| err("unknown unit"))?;

        // Integers are exact; a fraction is allowed only where it names whole
        // bytes after scaling (so "1.5KiB" is fine and "0.3B" is not).
        if let Ok(n) = number.parse::<u64>() {
            return n
                .checked_mul(multiplier)
                .map(ByteSize)
                .ok_or_else(|| err("too large"));
        }
        let value: f64 = number.parse().map_err(|_| err("not a number"))?;
        let bytes = value * multiplier as f64;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(err("too large"));
        }
        if bytes.fract() != 0.0 {
            return Err(err("not a whole number of bytes"));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    /// Exact when the size is a whole number of a binary unit (`64MiB`),
    /// otherwise one decimal place (`1.3MiB`) or plain bytes below 1 KiB.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const STEPS: &[(&str, u64)] = &[
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (name, unit) in STEPS {
            if self.0 >= *unit {
                return if self.0.is_multiple_of(*unit) {
                    write!(f, "{}{name}", self.0 / unit)
                } else {
                    write!(f, "{:.1}{name}", self.0 as f64 / *unit as f64)
                };
            }
        }
        write!(f, "{}B", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        let cases = [
            ("0", 0),
            ("512", 512),
            ("512B", 512),
            ("64KiB", 64 * 1024),
            ("64kib", 64 * 1024),
            ("10MB", 10_000_000),
            ("64MiB", 64 << 20),
            ("1.5GiB", 3 << 29),
            (" 2 GiB ", 2 << 30),
            ("1TiB", 1 << 40),
            ("1,048,576", 1 << 20),
            ("1_000KiB", 1000 << 10),
        ];
        for (input, bytes) in cases {
            assert_eq!(input.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{input}");
        }
    }

    #[test]
    fn rejects_nonsense() {
        for input in [
            "",
            "MiB",
            "12 parsecs",
            "1.2.3MiB",
            "-5",
            "0.3B",
            "99999999999TiB",
        ] {
            let err = input.parse::<ByteSize>().expect_err(input);
            assert!(err.to_string().contains("invalid size"), "{err}");
        }
    }

    #[test]
    fn displays_round_trip_for_whole_units() {
        for size in [
            ByteSize(0),
            ByteSize(1000),
            ByteSize::kib(3),
            ByteSize::mib(64),
            ByteSize::gib(2),
        ] {
            let text = size.to_string();
            assert_eq!(text.parse::<ByteSize>(), Ok(size), "{text}");
        }
        assert_eq!(ByteSize(1536 * 1024).to_string(), "1.5MiB");
    }
}
