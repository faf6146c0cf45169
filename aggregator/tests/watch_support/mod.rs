//! Shared by the watch tests: the real binary with a rules file whose broker URL sits in a file
//! (as a mounted Secret), a dedicated RabbitMQ user with a unique password and no queue
//! permissions (what the watch is meant to run as; removed when dropped), and `/metrics` reads.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use dwell_e2e::aggregator::Aggregator;

/// The management API of the test broker (`DWELL_TEST_RABBITMQ_MGMT`).
pub fn management_url() -> String {
    std::env::var("DWELL_TEST_RABBITMQ_MGMT").unwrap_or_else(|_| "http://127.0.0.1:15672".into())
}

/// A RabbitMQ user made for one test: `monitoring` tag, vhost `/` access with no permission on
/// any queue (passive declare needs none). Deleted on drop.
pub struct TestUser {
    /// The user name.
    pub name: String,
    /// Its password (unique: a test can look for it in logs).
    pub password: String,
    admin: String,
}

impl TestUser {
    /// Creates the user through the management API with the test URL's (admin) credentials.
    /// None (a loud skip) when the management API does not answer, unless services are required.
    pub fn create(test: &str, admin_url: &str) -> Option<Self> {
        let admin = admin_url
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('@'))
            .map(|(userinfo, _)| userinfo.to_string())
            .unwrap_or_else(|| "guest:guest".into());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let user = Self {
            name: format!("dwell-watch-{}-{nanos:x}", std::process::id()),
            password: format!("Pw-{nanos:x}-{}-s3cret", std::process::id()),
            admin,
        };
        let made = user.api(
            "PUT",
            &format!("/api/users/{}", user.name),
            &format!(r#"{{"password":"{}","tags":"monitoring"}}"#, user.password),
        ) && user.api(
            "PUT",
            &format!("/api/permissions/%2F/{}", user.name),
            r#"{"configure":"^$","write":"^$","read":"^$"}"#,
        );
        if made {
            return Some(user);
        }
        if std::env::var("DWELL_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!(
                "{test}: the RabbitMQ management API ({}) is required",
                management_url()
            );
        }
        eprintln!(
            "\n##### SKIPPED {test}: no RabbitMQ management API at {} #####\n",
            management_url()
        );
        None
    }

    /// The AMQP URL of this user on the broker `base_url` names (host, port, vhost kept).
    pub fn url(&self, base_url: &str) -> String {
        self.url_with_password(base_url, &self.password)
    }

    /// The same with another password (wrong credentials).
    pub fn url_with_password(&self, base_url: &str, password: &str) -> String {
        let (scheme, rest) = base_url.split_once("://").expect("URL");
        let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        format!("{scheme}://{}:{password}@{host}", self.name)
    }

    fn api(&self, method: &str, path: &str, body: &str) -> bool {
        Command::new("curl")
            .args([
                "-sS",
                "-f",
                "-o",
                "/dev/null",
                "--max-time",
                "10",
                "-u",
                &self.admin,
            ])
            .args([
                "-X",
                method,
                "-H",
                "content-type: application/json",
                "-d",
                body,
            ])
            .arg(format!("{}{path}", management_url()))
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "--max-time",
                "10",
                "-u",
                &self.admin,
                "-X",
                "DELETE",
            ])
            .arg(format!("{}/api/users/{}", management_url(), self.name))
            .status();
    }
}

/// Writes `url` to `dir/broker-url` (replacing it atomically, as a Secret update) and returns
/// the path.
pub fn write_url(dir: &Path, url: &str) -> PathBuf {
    let path = dir.join("broker-url");
    let tmp = dir.join("broker-url.tmp");
    std::fs::write(&tmp, format!("{url}\n")).expect("write url");
    std::fs::rename(&tmp, &path).expect("rename url");
    path
}

/// The sum of every `/metrics` sample of `name` whose labels include all of `labels`
/// (`broker="main"` …).
pub async fn metric(agg: &Aggregator, name: &str, labels: &[&str]) -> f64 {
    let text = metrics_text(agg).await;
    sum_of(&text, name, labels)
}

/// `/metrics` as text.
pub async fn metrics_text(agg: &Aggregator) -> String {
    let url = format!("{}/metrics", agg.metrics_url());
    dwell_e2e::kube::curl(&url, &agg.ca_file(), &[], &[])
        .await
        .body
}

/// The sum of the samples of `name` in a Prometheus text whose labels include `labels`.
pub fn sum_of(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
