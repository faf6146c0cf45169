//! Durations as people write them in config: `500ms`, `30s`, `5m`, `1h`, `1m30s`.

/// Parses a duration into milliseconds; must be positive.
pub fn parse_ms(text: &str) -> Result<i64, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration {text:?}: expected e.g. 500ms, 30s, 5m, 1h"
            ));
        }
        let n: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => {
                return Err(format!(
                    "invalid duration {text:?}: missing unit (ms, s, m, h)"
                ));
            }
            u => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {u:?} (ms, s, m, h)"
                ));
            }
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(factor)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("invalid duration {text:?}: too large"))?;
    }
    if total <= 0 {
        return Err(format!("invalid duration {text:?}: must be positive"));
    }
    Ok(total)
}

/// clap value parser for duration flags.
pub fn parse_flag(text: &str) -> Result<std::time::Duration, String> {
    parse_ms(text).map(|ms| std::time::Duration::from_millis(ms as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_ms("500ms"), Ok(500));
        assert_eq!(parse_ms("30s"), Ok(30_000));
        assert_eq!(parse_ms("5m"), Ok(300_000));
        assert_eq!(parse_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_ms("1m30s"), Ok(90_000));
        for bad in ["", "30", "s", "3x", "0s", "-5s", "99999999999999999999s"] {
            assert!(parse_ms(bad).is_err(), "{bad}");
        }
    }
}
