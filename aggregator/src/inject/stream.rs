//! A stream of Kubernetes documents in, the same stream out with the selected workloads injected:
//! what `dwell-aggregator inject` (and so Helm's post-renderer) runs. YAML in, YAML out: the
//! stream is split at its `---` lines (YAML ends a block scalar at a column-0 marker, so this is
//! where documents end), every document that is not injected is copied byte for byte with its
//! separator, and an injected one is written anew, keeping its key order and its leading
//! comments (Helm's `# Source:` line) but not comments inside it. JSON in (a value or several
//! concatenated, e.g. `kubectl get -o json`), JSON out, with the same pass-through rule.

use std::fmt::Write as _;

use super::node::{self, Node};
use super::workload::{self, ObjectError, ObjectOutcome};
use super::{InjectSettings, Selection, Skip};

/// Largest stream read (a bound, like every input): far above any chart's rendered output.
pub const MAX_INPUT_BYTES: usize = 64 << 20;

/// What happened to each pod template of the stream, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// `(document number from 1, object, result)`.
    pub templates: Vec<(usize, String, Result<(), Skip>)>,
}

impl Report {
    /// How many templates were injected.
    pub fn injected(&self) -> usize {
        self.templates.iter().filter(|t| t.2.is_ok()).count()
    }
}

/// Why a stream could not be injected (nothing is written then).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// A document is not valid YAML or JSON.
    #[error("document {document}: {reason}")]
    Parse {
        /// Its number, from 1.
        document: usize,
        /// The parser's message.
        reason: String,
    },
    /// A workload could not be injected.
    #[error("document {document}: {source}")]
    Inject {
        /// Its number, from 1.
        document: usize,
        /// The object and why.
        source: ObjectError,
    },
    /// More than [`MAX_INPUT_BYTES`].
    #[error("input is larger than {MAX_INPUT_BYTES} bytes")]
    TooLarge,
}

/// Injects every selected workload of `input` (see the module doc).
pub fn inject_stream(
    input: &str,
    settings: &InjectSettings,
    selection: Selection,
) -> Result<(String, Report), StreamError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(StreamError::TooLarge);
    }
    if input.trim_start().starts_with(['{', '[']) {
        inject_json(input, settings, selection)
    } else {
        inject_yaml(input, settings, selection)
    }
}

/// Injects one parsed document, recording its templates; the new document if it changed.
fn inject_document(
    parsed: &Node,
    document: usize,
    settings: &InjectSettings,
    selection: Selection,
    report: &mut Report,
) -> Result<Option<Node>, StreamError> {
    let outcome: ObjectOutcome = workload::inject_object(parsed, settings, selection)
        .map_err(|source| StreamError::Inject { document, source })?;
    for (object, result) in &outcome.templates {
        report.templates.push((document, object.clone(), *result));
    }
    Ok(outcome.changed)
}

fn inject_yaml(
    input: &str,
    settings: &InjectSettings,
    selection: Selection,
) -> Result<(String, Report), StreamError> {
    let mut out = String::with_capacity(input.len() + 4096);
    let mut report = Report::default();
    for (i, (separator, body)) in split_documents(input).into_iter().enumerate() {
        let document = i + 1;
        out.push_str(separator);
        let parsed = node::from_yaml(body).map_err(|e| StreamError::Parse {
            document,
            reason: e.to_string(),
        })?;
        match inject_document(&parsed, document, settings, selection, &mut report)? {
            None => out.push_str(body),
            Some(changed) => {
                out.push_str(leading_comments(body));
                let text = node::to_yaml(&changed).map_err(|e| StreamError::Parse {
                    document,
                    reason: e.to_string(),
                })?;
                out.push_str(&text);
            }
        }
    }
    Ok((out, report))
}

/// `(separator line, body)` per document; the first separator may be empty.
fn split_documents(input: &str) -> Vec<(&str, &str)> {
    let mut docs = Vec::new();
    let (mut sep_start, mut body_start) = (0, 0);
    let mut offset = 0;
    for line in input.split_inclusive('\n') {
        if is_separator(line) {
            docs.push((&input[sep_start..body_start], &input[body_start..offset]));
            sep_start = offset;
            body_start = offset + line.len();
        }
        offset += line.len();
    }
    docs.push((&input[sep_start..body_start], &input[body_start..]));
    // A stream that starts with `---` has an empty first "document" before it: fold it away.
    if docs.len() > 1 && docs[0].0.is_empty() && docs[0].1.is_empty() {
        docs.remove(0);
    }
    docs
}

/// `---` alone on a line (or followed by blanks or a comment).
fn is_separator(line: &str) -> bool {
    let line = line.trim_end_matches(['\n', '\r']);
    match line.strip_prefix("---") {
        Some(rest) => rest.is_empty() || rest.starts_with([' ', '\t']) && is_blank_or_comment(rest),
        None => false,
    }
}

fn is_blank_or_comment(rest: &str) -> bool {
    let rest = rest.trim_start();
    rest.is_empty() || rest.starts_with('#')
}

/// The comment and blank lines a document starts with.
fn leading_comments(body: &str) -> &str {
    let mut end = 0;
    for line in body.split_inclusive('\n') {
        let t = line.trim();
        if !(t.is_empty() || t.starts_with('#')) {
            break;
        }
        end += line.len();
    }
    &body[..end]
}

fn inject_json(
    input: &str,
    settings: &InjectSettings,
    selection: Selection,
) -> Result<(String, Report), StreamError> {
    let mut out = String::with_capacity(input.len() + 4096);
    let mut report = Report::default();
    let mut values = serde_json::Deserializer::from_str(input).into_iter::<Node>();
    let mut start = 0;
    let mut document = 0;
    loop {
        let before = values.byte_offset();
        let Some(next) = values.next() else { break };
        document += 1;
        let parsed = next.map_err(|e| StreamError::Parse {
            document,
            reason: e.to_string(),
        })?;
        let end = values.byte_offset();
        match inject_document(&parsed, document, settings, selection, &mut report)? {
            None => out.push_str(&input[start..end]),
            Some(changed) => {
                // Keep the whitespace before the value; write the value itself anew.
                let value_start =
                    before + input[before..end].len() - input[before..end].trim_start().len();
                out.push_str(&input[start..value_start]);
                let text =
                    serde_json::to_string_pretty(&changed).map_err(|e| StreamError::Parse {
                        document,
                        reason: e.to_string(),
                    })?;
                let _ = write!(out, "{text}");
            }
        }
        start = end;
    }
    out.push_str(&input[start..]);
    Ok((out, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_at_separator_lines_only() {
        let input = "a: 1\n---\nb: |\n  ---x\n--- # two\nc: 3\n---\n";
        let docs = split_documents(input);
        assert_eq!(
            docs,
            vec![
                ("", "a: 1\n"),
                ("---\n", "b: |\n  ---x\n"),
                ("--- # two\n", "c: 3\n"),
                ("---\n", "")
            ]
        );
        let joined: String = docs.iter().map(|(s, b)| format!("{s}{b}")).collect();
        assert_eq!(joined, input);
        assert_eq!(split_documents("---\na: 1\n"), vec![("---\n", "a: 1\n")]);
        assert!(!is_separator("---x\n"));
        assert!(is_separator("---\r\n"));
    }

    #[test]
    fn streams_without_workloads_come_out_byte_for_byte() {
        let settings = InjectSettings::default();
        for input in [
            "# only a comment\n",
            "",
            "apiVersion: v1\nkind: ConfigMap   # odd spacing kept\nmetadata: {name: x}\n---\n\n",
            "{\"apiVersion\": \"v1\", \"kind\": \"Service\"}\n  {\"kind\": \"List\", \"items\": []}",
        ] {
            let (out, report) = inject_stream(input, &settings, Selection::All).unwrap();
            assert_eq!(out, input);
            assert_eq!(report.injected(), 0);
        }
    }

    #[test]
    fn errors_name_the_document() {
        let settings = InjectSettings::default();
        let err = inject_stream("a: 1\n---\na: [\n", &settings, Selection::All).unwrap_err();
        assert!(
            matches!(err, StreamError::Parse { document: 2, .. }),
            "{err}"
        );
        let err = inject_stream("{\"a\": 1} {", &settings, Selection::All).unwrap_err();
        assert!(
            matches!(err, StreamError::Parse { document: 2, .. }),
            "{err}"
        );
    }
}
