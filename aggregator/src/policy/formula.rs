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

/// Why a formula does not compile or gives no value. The messages are what Explain and the
/// config errors show (`rules[0].formula: unknown variable "latency": …`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormulaError {
    /// Not CEL (the parser's own message; its error type is neither `Clone` nor `PartialEq`).
    #[error("does not compile: {0}")]
    Compile(String),
    /// A variable the engine does not provide.
    #[error(
        "unknown variable {0:?}: use a statistic (max, min, mean, count, rate, last, pNN such as \
         p90 or p99_9) or value, messages_ready, consumers, sources"
    )]
    UnknownVariable(String),
    /// `max`/`min` could not be declared (CEL's standard library claimed the name).
    #[error("{0}")]
    Functions(#[from] cel::DeclarationError),
    /// CEL failed while running (e.g. int and double mixed).
    #[error("formula failed: {0}")]
    Execution(#[source] cel::ExecutionError),
    /// The result is not a number (e.g. a bool), shown as CEL's value.
    #[error("formula returned {0}, not a number")]
    NotANumber(String),
    /// The result is infinite or NaN.
    #[error("formula returned {0}, not a finite number")]
    NotFinite(f64),
}

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
    pub fn compile(source: &str) -> Result<Self, FormulaError> {
        let program = Program::compile(source).map_err(|e| FormulaError::Compile(e.to_string()))?;
        let mut statistics = Vec::new();
        for var in program.references().variables() {
            if QUEUE_VARIABLES.contains(&var) {
                continue;
            }
            match Statistic::from_variable(var) {
                Some(s) => statistics.push(s),
                None => return Err(FormulaError::UnknownVariable(var.to_string())),
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
    pub fn evaluate(&self, vars: &BTreeMap<String, f64>) -> Result<f64, FormulaError> {
        let mut ctx = Context::default();
        ctx.add_function("max", cel::functions::max)?;
        ctx.add_function("min", cel::functions::min)?;
        for (name, value) in vars {
            ctx.add_variable_from_value(name.as_str(), *value);
        }
        let value = self
            .program
            .execute(&ctx)
            .map_err(FormulaError::Execution)?;
        let number = match value {
            Value::Float(f) => f,
            Value::Int(i) => i as f64,
            Value::UInt(u) => u as f64,
            other => return Err(FormulaError::NotANumber(format!("{other:?}"))),
        };
        if number.is_finite() {
            Ok(number)
        } else {
            Err(FormulaError::NotFinite(number))
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
        assert_eq!(e, FormulaError::UnknownVariable("latency".into()));
        assert!(
            e.to_string()
                .starts_with("unknown variable \"latency\": use a statistic"),
            "{e}"
        );
        let e = Formula::compile("p90 * ").expect_err("not CEL");
        assert!(e.to_string().starts_with("does not compile: "), "{e}");
    }

    #[test]
    fn runtime_errors_are_errors_not_panics() {
        let f = Formula::compile("p90 / 2").expect("compiles");
        assert!(
            matches!(
                f.evaluate(&vars(&[("p90", 10.0)])),
                Err(FormulaError::Execution(_))
            ),
            "int/double mixing"
        );
        let f = Formula::compile("p99_9 / 0.0").expect("compiles");
        let e = f.evaluate(&vars(&[("p99_9", 10.0)])).expect_err("infinity");
        assert_eq!(e, FormulaError::NotFinite(f64::INFINITY));
        assert_eq!(e.to_string(), "formula returned inf, not a finite number");
        let f = Formula::compile("p50 > 1.0").expect("compiles");
        let e = f.evaluate(&vars(&[("p50", 10.0)])).expect_err("bool");
        assert_eq!(e.to_string(), "formula returned Bool(true), not a number");
    }
}
