//! The one duration grammar of every flag and config field of both binaries.
//!
//! A duration is one or more `<number><unit>` terms, largest first or not (`500ms`, `30s`, `1.5s`,
//! `5m`, `1h`, `7d`, `1m30s`), or a bare number of seconds (`3`). Units: `ms`, `s`, `m`, `h`, `d`.
//! It must be at least 1 ms and at most [`MAX`] (about 31.7 years, the longest age a summary
//! holds), so no caller has to think about zero, overflow or precision.
use std::time::Duration;

/// The longest duration accepted: 10⁹ seconds.
pub const MAX: Duration = Duration::from_secs(1_000_000_000);

/// Why a duration was refused; the message quotes the text and says what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing was given.
    #[error("empty duration: expected e.g. 500ms, 30s, 1.5s, 5m, 1h, 7d or 1m30s")]
    Empty,
    /// Not a sequence of `<number><unit>` terms.
    #[error("invalid duration {0:?}: expected e.g. 500ms, 30s, 1.5s, 5m, 1h, 7d or 1m30s")]
    Syntax(String),
    /// A term's unit is not one of ms, s, m, h, d.
    #[error("invalid duration {text:?}: unknown unit {unit:?} (ms, s, m, h, d)")]
    Unit {
        /// The whole text.
        text: String,
        /// The unit found.
        unit: String,
    },
    /// Below one millisecond (zero included).
    #[error("invalid duration {0:?}: must be at least 1ms")]
    TooShort(String),
    /// Longer than [`MAX`].
    #[error("invalid duration {0:?}: longer than 1000000000s")]
    TooLong(String),
}

/// Parses a duration (see the module doc).
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let syntax = || DurationError::Syntax(s.to_owned());
    let too_long = || DurationError::TooLong(s.to_owned());
    let mut total_ns: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_ns: u128 = match unit {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            // A bare number is seconds, but only as the whole text ("1m30" is a typo).
            "" if number_len == s.len() => 1_000_000_000,
            "" => return Err(syntax()),
            _ if unit.chars().all(|c| c.is_ascii_alphabetic()) => {
                return Err(DurationError::Unit {
                    text: s.to_owned(),
                    unit: unit.to_owned(),
                });
            }
            _ => return Err(syntax()),
        };
        total_ns = total_ns
            .checked_add(term_ns(number, unit_ns).ok_or_else(syntax)?)
            .ok_or_else(too_long)?;
        rest = after;
    }
    if total_ns < 1_000_000 {
        return Err(DurationError::TooShort(s.to_owned()));
    }
    if total_ns > MAX.as_nanos() {
        return Err(too_long());
    }
    let secs = u64::try_from(total_ns / 1_000_000_000).map_err(|_| too_long())?;
    // The remainder is below 10⁹, so it fits.
    Ok(Duration::new(secs, (total_ns % 1_000_000_000) as u32))
}

/// `number` (digits, optionally one `.` and more digits) times `unit_ns`, in nanoseconds; digits
/// below a nanosecond are dropped. None when `number` is not a number.
fn term_ns(number: &str, unit_ns: u128) -> Option<u128> {
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && frac.is_empty() || !digits(whole) || !digits(frac) {
        return None;
    }
    if whole.len() > 20 {
        // Beyond any accepted duration; keeps the arithmetic in range.
        return Some(u128::MAX);
    }
    let mut ns = if whole.is_empty() {
        0
    } else {
        whole.parse::<u128>().ok()?.checked_mul(unit_ns)?
    };
    let mut scale = unit_ns;
    for b in frac.bytes() {
        scale /= 10;
        if scale == 0 {
            break;
        }
        ns = ns.checked_add(u128::from(b - b'0') * scale)?;
    }
    Some(ns)
}

/// Parses a duration into whole milliseconds (sub-millisecond digits are dropped).
pub fn parse_ms(text: &str) -> Result<i64, DurationError> {
    // At most 10¹² ms, so the cast cannot wrap.
    parse(text).map(|d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses() {
        let ms = |t| parse(t).map(|d| d.as_millis());
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms("30s"), Ok(30_000));
        assert_eq!(ms("1.5s"), Ok(1_500));
        assert_eq!(ms(".5s"), Ok(500));
        assert_eq!(ms("5m"), Ok(300_000));
        assert_eq!(ms("1h"), Ok(3_600_000));
        assert_eq!(ms("7d"), Ok(604_800_000));
        assert_eq!(ms("1m30s"), Ok(90_000));
        assert_eq!(ms("1h0m5s250ms"), Ok(3_605_250));
        assert_eq!(ms("3"), Ok(3_000), "a bare number is seconds");
        assert_eq!(ms("0.25"), Ok(250));
        assert_eq!(ms(" 2s "), Ok(2_000));
        assert_eq!(parse("1.0000005ms"), Ok(Duration::new(0, 1_000_000)));
        assert_eq!(parse_ms("1.9ms"), Ok(1));
    }

    #[test]
    fn bad_forms_are_refused_with_a_reason() {
        assert_eq!(parse(""), Err(DurationError::Empty));
        for bad in ["s", "-5s", "1m30", "1..5s", ".s", "5 s", "1s-", "+1s"] {
            assert!(
                matches!(parse(bad), Err(DurationError::Syntax(_))),
                "{bad}: {:?}",
                parse(bad)
            );
        }
        assert!(matches!(parse("3x"), Err(DurationError::Unit { unit, .. }) if unit == "x"));
        assert!(matches!(parse("2sec"), Err(DurationError::Unit { .. })));
        assert!(matches!(parse("1e3s"), Err(DurationError::Unit { unit, .. }) if unit == "e"));
        for short in ["0", "0s", "0.5ms", "0ms0s"] {
            assert_eq!(parse(short), Err(DurationError::TooShort(short.into())));
        }
        for long in ["1000000001s", "99999999999999999999999999s", "40000d"] {
            assert_eq!(parse(long), Err(DurationError::TooLong(long.into())));
        }
        assert_eq!(parse("1000000000s"), Ok(MAX));
    }

    proptest::proptest! {
        /// Whatever the text, parsing never panics, and what parses is within [1 ms, MAX].
        #[test]
        fn never_panics_and_stays_in_range(text in "[0-9.smhd ]{0,24}") {
            if let Ok(d) = parse(&text) {
                proptest::prop_assert!(d >= Duration::from_millis(1) && d <= MAX);
            }
        }

        /// `<n>ms`, `<n>s` and `<a>m<b>s` mean what they say.
        #[test]
        fn terms_add_up(a in 0u64..10_000, b in 1u64..10_000) {
            proptest::prop_assert_eq!(parse(&format!("{b}ms")), Ok(Duration::from_millis(b)));
            proptest::prop_assert_eq!(parse(&format!("{b}s")), Ok(Duration::from_secs(b)));
            proptest::prop_assert_eq!(
                parse(&format!("{a}m{b}s")),
                Ok(Duration::from_secs(a * 60 + b))
            );
        }
    }
}
