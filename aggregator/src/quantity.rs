//! Canonical Kubernetes `resource.Quantity` strings for metric values: `"42"` for whole numbers,
//! `"1500m"` for fractions. Never an exponent, never a decimal point, so every Go client parses it
//! and `MilliValue()` (what the HPA reads) gets exactly the milli-units we meant.

/// Largest magnitude we format: the HPA computes `ceil(v × 1000)` as an int64, which must not
/// overflow (2^63 ≈ 9.22e18 milli-units).
pub const MAX_ABS: f64 = 9.2e15;

/// Why a value cannot be rendered as a Quantity.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum QuantityError {
    /// NaN or ±infinity.
    #[error("value {0} is not a finite number")]
    NotFinite(f64),
    /// `|v| ≥ 9.2e15`: its milli-value would overflow an int64.
    #[error("value {0} is out of range (|v| must be below 9.2e15)")]
    OutOfRange(f64),
}

/// Formats `value` canonically, rounding up to the next milli-unit as `MilliValue()` does.
///
/// A value already on a milli-unit (up to float noise, e.g. `0.29 × 1000 = 290.00000000000006`)
/// is not bumped up.
pub fn format(value: f64) -> Result<String, QuantityError> {
    if !value.is_finite() {
        return Err(QuantityError::NotFinite(value));
    }
    if value.abs() >= MAX_ABS {
        return Err(QuantityError::OutOfRange(value));
    }
    let scaled = value * 1000.0;
    let nearest = scaled.round();
    // Float noise from the ×1000 is far below 1e-6 milli-units at these magnitudes.
    let milli = if (scaled - nearest).abs() <= 1e-6 + scaled.abs() * 1e-12 {
        nearest
    } else {
        scaled.ceil()
    };
    // In range by the guard above: |milli| < 9.2e18 < i64::MAX.
    let milli = milli as i64;
    Ok(if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_have_no_suffix() {
        assert_eq!(format(42.0).unwrap(), "42");
        assert_eq!(format(0.0).unwrap(), "0");
        assert_eq!(format(-0.0).unwrap(), "0");
        assert_eq!(format(-5.0).unwrap(), "-5");
        assert_eq!(format(1e15).unwrap(), "1000000000000000");
    }

    #[test]
    fn fractions_become_milli_units() {
        assert_eq!(format(1.5).unwrap(), "1500m");
        assert_eq!(format(0.001).unwrap(), "1m");
        assert_eq!(format(0.29).unwrap(), "290m");
        assert_eq!(format(2.675).unwrap(), "2675m");
        assert_eq!(format(-1.5).unwrap(), "-1500m");
        assert_eq!(format(1.0 / 3.0).unwrap(), "334m");
    }

    #[test]
    fn sub_milli_rounds_up_like_milli_value() {
        assert_eq!(format(0.0001).unwrap(), "1m");
        // Below a millionth of a milli-unit is float noise, not a value.
        assert_eq!(format(1e-300).unwrap(), "0");
        assert_eq!(format(-0.0001).unwrap(), "0");
        assert_eq!(format(41.9999).unwrap(), "42");
    }

    #[test]
    fn rejects_non_finite_and_huge() {
        assert!(matches!(format(f64::NAN), Err(QuantityError::NotFinite(_))));
        assert!(matches!(
            format(f64::INFINITY),
            Err(QuantityError::NotFinite(_))
        ));
        assert!(matches!(
            format(f64::NEG_INFINITY),
            Err(QuantityError::NotFinite(_))
        ));
        assert!(matches!(format(9.2e15), Err(QuantityError::OutOfRange(_))));
        assert!(matches!(format(-1e300), Err(QuantityError::OutOfRange(_))));
        assert!(format(9.1e15).is_ok());
    }

    #[test]
    fn never_exponent_or_point() {
        for v in [1e-9, 0.5, 123.456, 9.1e15, -9.1e15, 1e10 + 0.5, 7.0e-4] {
            let s = format(v).unwrap();
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_digit() || c == '-' || c == 'm'),
                "{v} -> {s}"
            );
        }
    }
}
