//! Talking to the aggregator's metrics API with real clients: `kubectl get --raw` through a
//! kubeconfig that trusts the aggregator's certificate (`certificate-authority-data`), and `curl`
//! where a test must set headers kubectl does not (Accept, If-None-Match) or pick the HTTP version.
//! A kubeconfig may carry a client certificate (`client-certificate-data`/`client-key-data`).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

/// What `kubectl get --raw` printed and whether it succeeded.
#[derive(Debug, Clone)]
pub struct RawOutput {
    /// Exit status was 0 (the server answered 2xx).
    pub success: bool,
    /// The response body on success.
    pub stdout: String,
    /// kubectl's error text on failure, e.g. `Error from server (NotFound): <Status message>`.
    pub stderr: String,
}

impl RawOutput {
    /// The body parsed as JSON, or a message with everything kubectl printed.
    pub fn json(&self) -> Result<serde_json::Value, String> {
        if !self.success {
            return Err(format!("kubectl failed: {}", self.stderr));
        }
        serde_json::from_str(&self.stdout).map_err(|e| format!("not JSON ({e}): {}", self.stdout))
    }
}

/// A kubeconfig pointing at one aggregator, and `kubectl` calls through it.
#[derive(Debug, Clone)]
pub struct Kubectl {
    kubeconfig: PathBuf,
}

/// Standard base64 (RFC 4648, padded), for `certificate-authority-data`.
pub fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A kubeconfig for `server` (e.g. `https://127.0.0.1:6443`) trusting `ca_pem`. The user has a
/// dummy bearer token so kubectl does not prompt; the aggregator does not authenticate.
pub fn kubeconfig_yaml(server: &str, ca_pem: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: dwell\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {}\nusers:\n- name: dwell\n  user:\n    token: unused\n\
         contexts:\n- name: dwell\n  context:\n    cluster: dwell\n    user: dwell\n\
         current-context: dwell\n",
        base64(ca_pem.as_bytes())
    )
}

/// A kubeconfig for `server` trusting `ca_pem` whose user presents a client certificate.
pub fn kubeconfig_yaml_with_cert(
    server: &str,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: dwell\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {}\nusers:\n- name: dwell\n  user:\n    \
         client-certificate-data: {}\n    client-key-data: {}\n\
         contexts:\n- name: dwell\n  context:\n    cluster: dwell\n    user: dwell\n\
         current-context: dwell\n",
        base64(ca_pem.as_bytes()),
        base64(cert_pem.as_bytes()),
        base64(key_pem.as_bytes()),
    )
}

impl Kubectl {
    /// Writes `dir/kubeconfig-<name>` for `server` trusting `ca_pem`, presenting the client
    /// certificate `cert_pem` with `key_pem`.
    pub fn with_client_cert(
        dir: &Path,
        name: &str,
        server: &str,
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> std::io::Result<Self> {
        let kubeconfig = dir.join(format!("kubeconfig-{name}"));
        std::fs::write(
            &kubeconfig,
            kubeconfig_yaml_with_cert(server, ca_pem, cert_pem, key_pem),
        )?;
        Ok(Self { kubeconfig })
    }

    /// Writes `dir/kubeconfig` for `server` trusting `ca_pem`.
    pub fn new(dir: &Path, server: &str, ca_pem: &str) -> std::io::Result<Self> {
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(server, ca_pem))?;
        Ok(Self { kubeconfig })
    }

    /// The kubeconfig file.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `kubectl --kubeconfig … get --raw PATH` (PATH may carry a query string).
    pub async fn get_raw(&self, path: &str) -> RawOutput {
        let output = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--request-timeout=30s", "get", "--raw", path])
            .stdin(Stdio::null())
            .output()
            .await;
        match output {
            Ok(o) => RawOutput {
                success: o.status.success(),
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            },
            Err(e) => RawOutput {
                success: false,
                stdout: String::new(),
                stderr: format!("cannot run kubectl: {e}"),
            },
        }
    }

    /// `get_raw` parsed as JSON; panics with kubectl's output when it fails.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        match self.get_raw(path).await.json() {
            Ok(v) => v,
            Err(e) => panic!("GET {path}: {e}"),
        }
    }
}

/// An HTTP response as curl saw it.
#[derive(Debug, Clone)]
pub struct CurlResponse {
    /// The HTTP status code (0 when curl failed before a response, e.g. TLS verification).
    pub status: u16,
    /// `http_version` as curl reports it: `1.1` or `2`.
    pub http_version: String,
    /// Response headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
    /// curl's stderr (its error when `status` is 0).
    pub stderr: String,
}

impl CurlResponse {
    /// The first header named `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `curl` a URL trusting `ca_file`, with extra request headers and curl flags (e.g.
/// `--http1.1`, `--http2`).
pub async fn curl(
    url: &str,
    ca_file: &Path,
    headers: &[(&str, &str)],
    flags: &[&str],
) -> CurlResponse {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "30",
        "-D",
        "-",
        "-w",
        "\n%{http_version}",
    ])
    .arg("--cacert")
    .arg(ca_file)
    .args(flags);
    for (k, v) in headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    cmd.arg(url).stdin(Stdio::null());
    let (stdout, stderr) = match cmd.output().await {
        Ok(o) => (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ),
        Err(e) => (String::new(), format!("cannot run curl: {e}")),
    };
    parse_curl(&stdout, stderr)
}

fn parse_curl(stdout: &str, stderr: String) -> CurlResponse {
    let (rest, http_version) = stdout.rsplit_once('\n').unwrap_or(("", stdout));
    let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    CurlResponse {
        status,
        http_version: http_version.trim().to_string(),
        headers,
        body: body.to_string(),
        stderr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn parses_curl_output() {
        let out = "HTTP/2 304 \r\netag: \"x\"\r\nvary: Accept\r\n\r\n\n2";
        let r = parse_curl(out, String::new());
        assert_eq!(r.status, 304);
        assert_eq!(r.header("etag"), Some("\"x\""));
        assert_eq!(r.http_version, "2");
        assert_eq!(r.body, "\n".trim_end());
    }
}
