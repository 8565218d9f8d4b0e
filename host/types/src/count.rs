use std::fmt;

/// Why a string is not a count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid number {input:?}: {reason} (expected e.g. 1000000, 1,000,000, 1_000_000, 10M or 2.5G)"
)]
pub struct ParseCountError {
    input: String,
    reason: &'static str,
}

/// Decimal suffixes of a count: `k` thousand, `M` million, `G` billion, `T`
/// trillion. Case-insensitive, as people type them.
const SUFFIXES: &[(char, u64)] = &[
    ('k', 1_000),
    ('m', 1_000_000),
    ('g', 1_000_000_000),
    ('t', 1_000_000_000_000),
];

/// Parses a count such as a fuel limit the way people write one and the way
/// p2pctl prints one: `10000000000`, `10,000,000,000`, `10_000_000_000`,
/// `10G`, `2.5M`.
///
/// Digit separators (`,` or `_`) may stand only between digits. A fraction is
/// allowed only where the suffix makes it whole (`2.5k` is 2500, `2.5` is
/// refused). Negative numbers get an error that says so.
pub fn parse_count(s: &str) -> Result<u64, ParseCountError> {
    let err = |reason| ParseCountError {
        input: s.to_owned(),
        reason,
    };
    let trimmed = s.trim();
    if trimmed.starts_with('-') {
        return Err(err("it cannot be negative"));
    }
    let (number, multiplier) = match trimmed.chars().last() {
        Some(c) if c.is_ascii_alphabetic() => {
            let m = SUFFIXES
                .iter()
                .find(|(name, _)| *name == c.to_ascii_lowercase())
                .map(|(_, m)| *m)
                .ok_or_else(|| err("unknown suffix (k, M, G and T are known)"))?;
            (trimmed[..trimmed.len() - 1].trim_end(), m)
        }
        _ => (trimmed, 1),
    };
    let number = strip_separators(number).map_err(err)?;
    scale(&number, multiplier).map_err(err)
}

/// `1,000` and `1_000` → `1000`. A separator stands between digits of the
/// whole part, and every group after the first has three digits, so a
/// slip such as `1,0000` is an error rather than a different number.
pub(crate) fn strip_separators(number: &str) -> Result<String, &'static str> {
    if number.is_empty() {
        return Err("no number");
    }
    let (whole, fraction) = match number.find('.') {
        Some(i) => number.split_at(i),
        None => (number, ""),
    };
    if fraction.contains([',', '_']) {
        return Err("digit separators go in the whole part only");
    }
    let groups: Vec<&str> = whole.split([',', '_']).collect();
    if groups.len() > 1 {
        let all_digits = |g: &str| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit());
        if !groups.iter().all(|g| all_digits(g)) {
            return Err("a digit separator must stand between digits");
        }
        if groups[0].len() > 3 || groups[1..].iter().any(|g| g.len() != 3) {
            return Err("digits between separators come in groups of three");
        }
    }
    Ok(groups.concat() + fraction)
}

/// `number × multiplier` in integers; a decimal fraction only where the
/// product is whole.
pub(crate) fn scale(number: &str, multiplier: u64) -> Result<u64, &'static str> {
    if !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err("not a number");
    }
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) if !f.contains('.') => (w, f),
        Some(_) => return Err("not a number"),
        None => (number, ""),
    };
    if whole.is_empty() && fraction.is_empty() {
        return Err("no number");
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| "too large")?
    };
    let mut value = whole.checked_mul(multiplier).ok_or("too large")?;
    // Exact decimal arithmetic: each fractional digit is a tenth of the last.
    let mut unit = multiplier;
    for digit in fraction.bytes().map(|b| u64::from(b - b'0')) {
        if digit != 0 && !unit.is_multiple_of(10) {
            return Err("not a whole number");
        }
        unit /= 10;
        value = value.checked_add(digit * unit).ok_or("too large")?;
    }
    Ok(value)
}

/// A count printed with thousands separators: `10,000,000,000`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thousands(pub u64);

impl fmt::Display for Thousands {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.0.to_string();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                f.write_str(",")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_people_write() {
        let cases = [
            ("0", 0),
            ("1000", 1000),
            ("1,000", 1000),
            ("1_000", 1000),
            ("10,000,000,000", 10_000_000_000),
            ("10k", 10_000),
            ("10K", 10_000),
            ("10M", 10_000_000),
            ("10G", 10_000_000_000),
            ("2.5G", 2_500_000_000),
            ("1.234k", 1234),
            (" 3 M ", 3_000_000),
            ("1T", 1_000_000_000_000),
            ("18446744073709551615", u64::MAX),
        ];
        for (input, n) in cases {
            assert_eq!(parse_count(input), Ok(n), "{input}");
        }
    }

    #[test]
    fn reads_what_p2pctl_prints() {
        for n in [0, 7, 999, 1000, 2711, 1_234_567, u64::MAX] {
            let printed = Thousands(n).to_string();
            assert_eq!(parse_count(&printed), Ok(n), "{printed}");
        }
        assert_eq!(Thousands(2711).to_string(), "2,711");
    }

    #[test]
    fn refuses_nonsense_with_a_reason() {
        let cases = [
            ("-5", "negative"),
            ("-1,000", "negative"),
            ("", "no number"),
            ("M", "no number"),
            ("1,,000", "between digits"),
            ("1,0000", "groups of three"),
            ("1,0", "groups of three"),
            ("1000,000", "groups of three"),
            ("1.000,5", "whole part only"),
            (",1000", "between digits"),
            ("1000_", "between digits"),
            ("2.5", "whole"),
            ("1.0001k", "whole"),
            ("10X", "suffix"),
            ("1.2.3", "not a number"),
            ("0x10", "not a number"),
            ("18446744073709551616", "too large"),
            ("18446744073709552G", "too large"),
        ];
        for (input, why) in cases {
            let e = parse_count(input).expect_err(input).to_string();
            assert!(e.contains(why), "{input}: {e}");
        }
    }
}
