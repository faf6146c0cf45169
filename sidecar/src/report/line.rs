//! The report line protocol, shared by UDP datagrams and `text/plain` HTTP bodies:
//!
//! ```text
//! <queue> <timestamp>[s|ms|us] [0|1]
//! ```
//!
//! `<queue>` is the queue name (`-` means the sidecar's queue); `<timestamp>` is a decimal
//! integer, `0` or `-` when the delivery had none (counted as missing); the optional suffix gives
//! its unit (else the default unit); the optional last field is `1` when the delivery was
//! redelivered. Fields are separated by single spaces; anything else is rejected.

use crate::timestamp::Unit;

/// Longest accepted line, in bytes.
pub const MAX_LINE: usize = 512;

/// One reported delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The queue named by the reporter (`None`: the sidecar's own).
    pub queue: Option<String>,
    /// The raw timestamp (`None`: the delivery had none).
    pub timestamp: Option<u64>,
    /// The unit given with the timestamp.
    pub unit: Option<Unit>,
    /// The broker had delivered the message before.
    pub redelivered: bool,
}

/// Why a line was rejected (also the metrics `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Longer than [`MAX_LINE`].
    #[error("line longer than {MAX_LINE} bytes")]
    TooLong,
    /// Not `<queue> <timestamp> [flag]`.
    #[error("expected `<queue> <timestamp>[s|ms|us] [0|1]`")]
    Shape,
    /// The timestamp is not a decimal integer that fits 64 bits.
    #[error("timestamp is not a non-negative decimal integer")]
    Number,
    /// Unknown unit suffix.
    #[error("unit must be s, ms or us")]
    Unit,
    /// The redelivered flag is not 0 or 1.
    #[error("redelivered flag must be 0 or 1")]
    Flag,
}

impl LineError {
    /// The metrics `reason` label.
    pub fn reason(self) -> &'static str {
        match self {
            LineError::TooLong => "line_too_long",
            LineError::Shape => "malformed",
            LineError::Number => "bad_number",
            LineError::Unit => "bad_unit",
            LineError::Flag => "bad_flag",
        }
    }
}

/// Parses one line (without its line terminator).
pub fn parse(line: &str) -> Result<Delivery, LineError> {
    if line.len() > MAX_LINE {
        return Err(LineError::TooLong);
    }
    let mut fields = line.split(' ');
    let queue = fields
        .next()
        .filter(|q| !q.is_empty())
        .ok_or(LineError::Shape)?;
    let ts = fields
        .next()
        .filter(|t| !t.is_empty())
        .ok_or(LineError::Shape)?;
    let flag = fields.next();
    if fields.next().is_some() || queue.chars().any(char::is_control) {
        return Err(LineError::Shape);
    }
    let redelivered = match flag {
        None | Some("0") => false,
        Some("1") => true,
        Some(_) => return Err(LineError::Flag),
    };
    let (timestamp, unit) = if ts == "-" {
        (None, None)
    } else {
        let digits = ts.find(|c: char| !c.is_ascii_digit()).unwrap_or(ts.len());
        let (num, suffix) = ts.split_at(digits);
        if num.is_empty() || num.len() > 20 {
            return Err(LineError::Number);
        }
        let value: u64 = num.parse().map_err(|_| LineError::Number)?;
        let unit = match suffix {
            "" => None,
            "s" => Some(Unit::S),
            "ms" => Some(Unit::Ms),
            "us" => Some(Unit::Us),
            _ if suffix.starts_with(|c: char| c.is_ascii_alphabetic()) => {
                return Err(LineError::Unit);
            }
            _ => return Err(LineError::Number),
        };
        // `0` is "no timestamp", and a missing timestamp has no unit (the suffix is dropped, so
        // `q 0s` and `q 0` are the same delivery).
        match value {
            0 => (None, None),
            v => (Some(v), unit),
        }
    };
    Ok(Delivery {
        queue: (queue != "-").then(|| queue.to_owned()),
        timestamp,
        unit,
        redelivered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_lines() {
        assert_eq!(
            parse("orders 1795817979"),
            Ok(Delivery {
                queue: Some("orders".into()),
                timestamp: Some(1_795_817_979),
                unit: None,
                redelivered: false
            })
        );
        let d = parse("- 1795817979177ms 1").unwrap();
        assert_eq!(d.queue, None);
        assert_eq!(d.unit, Some(Unit::Ms));
        assert!(d.redelivered);
        assert_eq!(parse("q -").unwrap().timestamp, None);
        assert_eq!(parse("q 0").unwrap().timestamp, None);
        assert_eq!(parse("q 5us 0").unwrap().unit, Some(Unit::Us));
    }

    /// Fuzz regression (`fuzz/corpus/report_line/regression-zero-with-unit`): `order 0s 0` gave
    /// no timestamp but the unit `s`, so it did not equal the same line written back (`order -`).
    #[test]
    fn a_zero_timestamp_keeps_no_unit() {
        let none = Delivery {
            queue: Some("order".into()),
            timestamp: None,
            unit: None,
            redelivered: false,
        };
        for line in ["order 0s 0", "order 0ms", "order 0us", "order 0", "order -"] {
            assert_eq!(parse(line), Ok(none.clone()), "{line}");
        }
    }

    #[test]
    fn garbage_is_rejected() {
        for (line, err) in [
            ("", LineError::Shape),
            ("orders", LineError::Shape),
            ("orders  1", LineError::Shape),
            ("orders 1 1 extra", LineError::Shape),
            ("orders -5", LineError::Number),
            ("orders 1.5", LineError::Number),
            ("orders 99999999999999999999999", LineError::Number),
            ("orders 18446744073709551616", LineError::Number),
            ("orders 12h", LineError::Unit),
            ("orders 12 yes", LineError::Flag),
            ("orders ms", LineError::Number),
            ("or\u{7}ders 1", LineError::Shape),
        ] {
            assert_eq!(parse(line), Err(err), "{line:?}");
        }
        assert_eq!(parse(&"q ".repeat(300)), Err(LineError::TooLong));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse(&s);
        }
    }
}
