//! `resource.Quantity` strings as the HPA reads them: the metric clients call
//! `Quantity.MilliValue()` on every value and every target (`k8s: pkg/controller/podautoscaler/
//! metrics/client.go`, `horizontal.go` `computeReplicasForMetric`), so the model works in
//! milli-units. Grammar from `apimachinery: pkg/api/resource/quantity.go` (`ParseQuantity`) and
//! `suffix.go`: `<signedNumber><suffix>` with decimal SI (`n u m "" k M G T P E`), binary SI
//! (`Ki … Ei`) or a decimal exponent (`e3`, `E-2`).

use thiserror::Error;

/// A quantity string that `ParseQuantity` would reject.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid quantity {0:?}")]
pub struct QuantityError(pub String);

/// Parses a Kubernetes quantity and returns `MilliValue()`: the value × 1000, rounded up
/// (`Quantity.ScaledValue(-3)` rounds away from zero on positive values).
pub fn milli_value(s: &str) -> Result<i64, QuantityError> {
    let err = || QuantityError(s.to_owned());
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(err());
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{int_part}{frac_part}");
    let mut mantissa: i128 = 0;
    for d in digits.bytes() {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(i128::from(d - b'0')))
            .ok_or_else(err)?;
    }
    let mut exp10 = -(frac_part.len() as i32);
    match suffix {
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "" => {}
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
            let power = match suffix {
                "Ki" => 1,
                "Mi" => 2,
                "Gi" => 3,
                "Ti" => 4,
                "Pi" => 5,
                _ => 6,
            };
            mantissa = mantissa.checked_mul(1024_i128.pow(power)).ok_or_else(err)?;
        }
        exp if exp.starts_with(['e', 'E']) => {
            let e: i32 = exp[1..].parse().map_err(|_| err())?;
            exp10 = exp10.checked_add(e).ok_or_else(err)?;
        }
        _ => return Err(err()),
    }
    // value × 1000 = mantissa × 10^(exp10 + 3), rounded up.
    let scale = exp10 + 3;
    let milli = if scale >= 0 {
        10_i128
            .checked_pow(scale as u32)
            .and_then(|p| mantissa.checked_mul(p))
            .ok_or_else(err)?
    } else {
        let divisor = 10_i128.checked_pow((-scale) as u32);
        match divisor {
            Some(d) => (mantissa + d - 1) / d,
            // Smaller than any representable milli-unit: rounds up to 1 unless zero.
            None => i128::from(mantissa > 0),
        }
    };
    let milli = if negative { -milli } else { milli };
    i64::try_from(milli).map_err(|_| err())
}

#[cfg(test)]
mod tests {
    use super::milli_value;

    #[test]
    fn plain_and_suffixed_values_scale_to_milli() {
        assert_eq!(milli_value("12"), Ok(12_000));
        assert_eq!(milli_value("1500m"), Ok(1_500));
        assert_eq!(milli_value("2k"), Ok(2_000_000));
        assert_eq!(milli_value("1Ki"), Ok(1_024_000));
        assert_eq!(milli_value("1.5"), Ok(1_500));
        assert_eq!(milli_value("3e2"), Ok(300_000));
        assert_eq!(milli_value("-2"), Ok(-2_000));
    }

    #[test]
    fn milli_value_rounds_up() {
        // MilliValue() of 1500u is 1.5m, reported as 2m.
        assert_eq!(milli_value("1500u"), Ok(2));
        assert_eq!(milli_value("1n"), Ok(1));
        assert_eq!(milli_value("0.0001"), Ok(1));
    }

    #[test]
    fn garbage_is_rejected() {
        for bad in ["", "m", "1x", "1..2", "--1", "1e", "1Zi", "abc"] {
            assert!(milli_value(bad).is_err(), "{bad:?} accepted");
        }
    }
}
