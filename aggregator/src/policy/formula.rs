//! A rule's optional CEL formula, compiled once when the configuration loads.
//!
//! Every variable is a double (CEL does not mix int and double in arithmetic, so write `2.0`, not
//! `2`): the statistics (`max`, `min`, `mean`, `count`, `rate`, `last`, any `pNN` with `_` for the
//! dot, e.g. `p99_9`), `value` (the rule's own statistic), and the queue state
//! (`messages_ready`, `consumers`) and `sources` (how many sources fed the value). `max(a, b)`
//! and `min(a, b)` are available besides the CEL standard library.
use std::collections::BTreeMap;
use std::sync::Arc;

use cel::{Context, Program, Value};

use super::statistic::Statistic;

/// Names a formula can use besides the statistics.
pub const QUEUE_VARIABLES: [&str; 4] = ["value", "messages_ready", "consumers", "sources"];

/// A compiled formula.
#[derive(Clone)]
pub struct Formula {
    source: String,
    program: Arc<Program>,
    statistics: Vec<Statistic>,
}

impl std::fmt::Debug for Formula {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Formula").field(&self.source).finish()
    }
}

impl PartialEq for Formula {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Formula {
    /// Compiles `source`, checking that every variable it uses is one the engine provides.
    pub fn compile(source: &str) -> Result<Self, String> {
        let program = Program::compile(source).map_err(|e| format!("does not compile: {e}"))?;
        let mut statistics = Vec::new();
        for var in program.references().variables() {
            if QUEUE_VARIABLES.contains(&var) {
                continue;
            }
            match Statistic::from_variable(var) {
                Some(s) => statistics.push(s),
                None => {
                    return Err(format!(
                        "unknown variable {var:?}: use a statistic (max, min, mean, count, rate, \
                         last, pNN such as p90 or p99_9) or value, messages_ready, consumers, sources"
                    ));
                }
            }
        }
        Ok(Self {
            source: source.to_string(),
            program: Arc::new(program),
            statistics,
        })
    }

    /// The formula's text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The statistics the formula reads (the engine computes only these).
    pub fn statistics(&self) -> &[Statistic] {
        &self.statistics
    }

    /// Evaluates with `vars` (name → value); the result must be a finite number.
    pub fn evaluate(&self, vars: &BTreeMap<String, f64>) -> Result<f64, String> {
        let mut ctx = Context::default();
        ctx.add_function("max", cel::functions::max)
            .map_err(|e| e.to_string())?;
        ctx.add_function("min", cel::functions::min)
            .map_err(|e| e.to_string())?;
        for (name, value) in vars {
            ctx.add_variable_from_value(name.as_str(), *value);
        }
        let value = self
            .program
            .execute(&ctx)
            .map_err(|e| format!("formula failed: {e}"))?;
        let number = match value {
            Value::Float(f) => f,
            Value::Int(i) => i as f64,
            Value::UInt(u) => u as f64,
            other => return Err(format!("formula returned {other:?}, not a number")),
        };
        if number.is_finite() {
            Ok(number)
        } else {
            Err(format!("formula returned {number}, not a finite number"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn the_sketch_formula_works() {
        let f =
            Formula::compile("p90 > 120.0 ? p90 * 2.0 : max(p90, double(messages_ready) / 50.0)")
                .expect("compiles");
        assert_eq!(f.statistics(), &[Statistic::Percentile(90.0)]);
        let v = f.evaluate(&vars(&[("p90", 10.0), ("messages_ready", 1000.0)]));
        assert_eq!(v, Ok(20.0));
        let v = f.evaluate(&vars(&[("p90", 130.0), ("messages_ready", 0.0)]));
        assert_eq!(v, Ok(260.0));
    }

    #[test]
    fn bad_formulas_are_rejected_at_compile_time() {
        assert!(Formula::compile("p90 * ").is_err());
        let e = Formula::compile("latency * 2.0").expect_err("unknown variable");
        assert!(e.contains("latency"), "{e}");
    }

    #[test]
    fn runtime_errors_are_errors_not_panics() {
        let f = Formula::compile("p90 / 2").expect("compiles");
        assert!(
            f.evaluate(&vars(&[("p90", 10.0)])).is_err(),
            "int/double mixing"
        );
        let f = Formula::compile("p99_9 / 0.0").expect("compiles");
        assert!(f.evaluate(&vars(&[("p99_9", 10.0)])).is_err(), "infinity");
        let f = Formula::compile("p50 > 1.0").expect("compiles");
        assert!(f.evaluate(&vars(&[("p50", 10.0)])).is_err(), "bool");
    }
}
