//! `dwell-aggregator inject`: reads Kubernetes YAML or JSON from files or stdin, writes the
//! injected stream to stdout and one line per pod template to stderr. Helm's post-renderer
//! contract is exactly this: manifests on stdin, manifests on stdout, a non-zero exit (and nothing
//! on stdout) on failure. Several files are written one after the other, separated by `---`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::stream::{self, MAX_INPUT_BYTES, StreamError};
use super::{InjectSettings, Selection};

/// Why the command failed (stdout then holds nothing).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// An input could not be read.
    #[error("{input}: {source}")]
    Read {
        /// The file, or `stdin`.
        input: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An input is larger than [`MAX_INPUT_BYTES`] or not UTF-8.
    #[error("{input}: {reason}")]
    Input {
        /// The file, or `stdin`.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// An input could not be injected.
    #[error("{input}: {source}")]
    Inject {
        /// The file, or `stdin`.
        input: String,
        /// The document and why.
        source: StreamError,
    },
    /// stdout could not be written.
    #[error("writing the output: {0}")]
    Write(std::io::Error),
}

/// Runs the command: `files` (none, or `-`: stdin) → `stdout`, a report → `stderr`.
pub fn run(
    settings: &InjectSettings,
    selection: Selection,
    files: &[PathBuf],
    stdin: impl Read,
    mut stdout: impl Write,
    mut stderr: impl Write,
) -> Result<(), CommandError> {
    let mut stdin = Some(stdin);
    let inputs: Vec<&Path> = if files.is_empty() {
        vec![Path::new("-")]
    } else {
        files.iter().map(PathBuf::as_path).collect()
    };
    let mut out = String::new();
    let mut lines = String::new();
    for (i, path) in inputs.iter().enumerate() {
        let input = if *path == Path::new("-") {
            "stdin".to_owned()
        } else {
            path.display().to_string()
        };
        let text = if *path == Path::new("-") {
            let reader = stdin.take().ok_or_else(|| CommandError::Input {
                input: input.clone(),
                reason: "stdin can be read only once".into(),
            })?;
            read_bounded(reader, &input)?
        } else {
            let file = std::fs::File::open(path).map_err(|source| CommandError::Read {
                input: input.clone(),
                source,
            })?;
            read_bounded(file, &input)?
        };
        let (injected, report) =
            stream::inject_stream(&text, settings, selection).map_err(|source| {
                CommandError::Inject {
                    input: input.clone(),
                    source,
                }
            })?;
        if i > 0 {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str("---\n");
        }
        out.push_str(&injected);
        for (document, object, result) in &report.templates {
            let what = match result {
                Ok(()) => "injected",
                Err(skip) => skip.as_str(),
            };
            lines.push_str(&format!("{input}: document {document}: {object}: {what}\n"));
        }
    }
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(CommandError::Write)?;
    // The report is a courtesy: a closed stderr must not fail a run whose output is written.
    let _ = stderr.write_all(lines.as_bytes());
    Ok(())
}

fn read_bounded(reader: impl Read, input: &str) -> Result<String, CommandError> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_INPUT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| CommandError::Read {
            input: input.to_owned(),
            source,
        })?;
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(CommandError::Input {
            input: input.to_owned(),
            reason: format!("larger than {MAX_INPUT_BYTES} bytes"),
        });
    }
    String::from_utf8(bytes).map_err(|_| CommandError::Input {
        input: input.to_owned(),
        reason: "not UTF-8".into(),
    })
}
