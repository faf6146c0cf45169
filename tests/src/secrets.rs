//! Known secrets for the "never in logs or errors" test (`tests/secrets_in_logs.rs`): values made
//! fresh per run, so none can turn up in a log line by chance, and the check that no printed
//! line holds any of them.
//!
//! Each secret is searched for by its distinctive core (a random hex string) as well as whole,
//! so an encoded or truncated copy (a percent-encoded password, a token cut at a dot, a PEM body
//! line of a private key) is found too.

use rand::Rng;

/// The secrets a run uses, each with what it is (for the failure message).
#[derive(Debug, Default)]
pub struct Secrets {
    needles: Vec<(String, String)>,
}

/// A secret found in a printed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// What the secret is (`broker password`, `ingest token`, …).
    pub what: String,
    /// The line that holds it.
    pub line: String,
}

/// A random lower-case hex string of `n` characters.
fn hex(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

impl Secrets {
    /// No secret yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new secret value `<prefix><24 random hex>`, registered as `what`.
    pub fn fresh(&mut self, what: &str, prefix: &str) -> String {
        let core = hex(24);
        self.add(what, &core);
        format!("{prefix}{core}")
    }

    /// Registers `value` as a secret. A value under 12 characters would match innocent text, so
    /// it is refused (a test bug, hence the panic).
    pub fn add(&mut self, what: &str, value: &str) {
        assert!(
            value.len() >= 12,
            "{what}: a secret under 12 characters is no needle"
        );
        self.needles.push((what.to_owned(), value.to_owned()));
    }

    /// Registers a PEM private key: every base64 body line (a log line might show any piece)
    /// and the whole body without line breaks.
    pub fn add_private_key(&mut self, what: &str, pem: &str) {
        let body: Vec<&str> = pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("-----"))
            .collect();
        assert!(!body.is_empty(), "{what}: no PEM body");
        for line in &body {
            // The last line may be short; the others are 64 characters.
            if line.len() >= 12 {
                self.add(what, line);
            }
        }
        self.add(what, &body.concat());
    }

    /// Every (secret, line) pair where a line of `lines` holds a registered secret.
    pub fn leaks<S: AsRef<str>>(&self, lines: &[S]) -> Vec<Leak> {
        let mut out = Vec::new();
        for line in lines {
            let line = line.as_ref();
            if let Some((what, _)) = self.needles.iter().find(|(_, n)| line.contains(n.as_str())) {
                out.push(Leak {
                    what: what.clone(),
                    line: line.to_owned(),
                });
            }
        }
        out
    }

    /// Fails naming `source`, the secret and the line, when any line of `lines` holds a secret.
    /// Also fails on an empty `lines`: a check of nothing proves nothing.
    pub fn assert_absent<S: AsRef<str>>(&self, source: &str, lines: &[S]) {
        assert!(!lines.is_empty(), "{source} printed nothing to check");
        let leaks = self.leaks(lines);
        assert!(
            leaks.is_empty(),
            "{source} printed {} line(s) holding a secret:\n{}",
            leaks.len(),
            leaks
                .iter()
                .map(|l| format!("  [{}] {}", l.what, l.line))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    /// How many needles are registered (each secret gives one or more).
    pub fn len(&self) -> usize {
        self.needles.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_secret_is_found_whole_encoded_or_cut() {
        let mut s = Secrets::new();
        let password = s.fresh("password", "pw/");
        let encoded = password.replace('/', "%2F");
        assert!(s.leaks(&[format!("amqp://u:{encoded}@h")]).len() == 1);
        assert!(s.leaks(&[format!("amqp://u:{password}@h")]).len() == 1);
        assert!(s.leaks(&["amqp://u:***@h"]).is_empty());
        assert_ne!(Secrets::new().fresh("a", ""), Secrets::new().fresh("a", ""));
    }

    #[test]
    fn any_line_of_a_private_key_is_a_leak() {
        let key = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\nabcdefghijklmnopq\n-----END PRIVATE KEY-----\n";
        let mut s = Secrets::new();
        s.add_private_key("key", key);
        assert_eq!(s.leaks(&["x abcdefghijklmnopq y"]).len(), 1);
        assert_eq!(s.leaks(&["-----BEGIN PRIVATE KEY-----"]).len(), 0);
        assert_eq!(s.len(), 3);
    }

    #[test]
    #[should_panic(expected = "printed nothing")]
    fn checking_no_output_fails() {
        Secrets::new().assert_absent("quiet", &Vec::<String>::new());
    }
}
