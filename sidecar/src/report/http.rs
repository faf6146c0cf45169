//! HTTP transport of the report source: `POST /v1/report` with one delivery or a batch, as JSON
//! or as `text/plain` lines of the line protocol. A request is taken whole or refused whole (4xx
//! with a JSON error), so a client never has to guess which part of a batch counted.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Intake;
use super::line::{self, Delivery};
use crate::timestamp::Unit;

/// Largest accepted body, in bytes.
pub const MAX_BODY: usize = 64 * 1024;
/// Most deliveries in one request.
pub const MAX_BATCH: usize = 4096;

/// One delivery in JSON: `{"queue": "orders", "timestamp": 1795817979, "unit": "s", "redelivered": false}`;
/// every field but `timestamp` is optional (`null` or `0` means the delivery had none).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonDelivery {
    #[serde(default)]
    queue: Option<String>,
    timestamp: Option<u64>,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    redelivered: bool,
}

/// Serves the report endpoint on `listener` until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    intake: Arc<Intake>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(intake))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// The endpoint's routes (public for in-process tests).
pub fn router(intake: Arc<Intake>) -> Router {
    Router::new()
        .route("/v1/report", post(report))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(intake)
}

async fn report(
    State(intake): State<Arc<Intake>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let status = rejection.status();
            let reason = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "body_too_large"
            } else {
                "bad_body"
            };
            return refuse(&intake, status, reason, &rejection.body_text());
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let deliveries = match parse_body(content_type, &body) {
        Ok(d) => d,
        Err(r) => return refuse(&intake, r.status, r.reason, &r.message),
    };
    if let Some(q) = deliveries
        .iter()
        .filter_map(|d| d.queue.as_deref())
        .find(|q| !intake.is_own_queue(q))
    {
        let msg = format!("this sidecar observes another queue than {q:?}");
        return refuse(&intake, StatusCode::BAD_REQUEST, "unknown_queue", &msg);
    }
    let accepted = deliveries.len();
    for d in deliveries {
        // Queues were checked above, so every delivery is recorded.
        let _ = intake.accept(d, "http");
    }
    (StatusCode::OK, axum::Json(json!({ "accepted": accepted }))).into_response()
}

fn refuse(intake: &Intake, status: StatusCode, reason: &str, message: &str) -> Response {
    intake.reject("http", reason);
    let body = json!({ "error": message, "reason": reason });
    (status, axum::Json(body)).into_response()
}

/// Why a body was refused as a whole: the status it is answered with, the metrics `reason`
/// label and the message for the client (which never quotes more than a field name or a line
/// number of the body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 400, 413 or 415.
    pub status: StatusCode,
    /// The `reason` label of `report_rejected_total`.
    pub reason: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Parses a request body by its `Content-Type` (the header's value; parameters such as
/// `charset` are ignored) into 1 to [`MAX_BATCH`] deliveries, or refuses it whole. The queue
/// names are checked by the caller, which knows the sidecar's queue. Pure, so it is fuzzed
/// (`fuzz/`) without a server.
pub fn parse_body(content_type: &str, body: &[u8]) -> Result<Vec<Delivery>, Refusal> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let parsed = match media.as_str() {
        "application/json" => parse_json(body),
        "text/plain" => parse_text(body),
        _ => {
            return Err(Refusal {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                reason: "unsupported_media_type",
                message: "Content-Type must be application/json or text/plain".into(),
            });
        }
    };
    let deliveries = parsed.map_err(|(reason, message)| Refusal {
        status: if reason == "batch_too_large" {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        },
        reason,
        message,
    })?;
    if deliveries.len() > MAX_BATCH {
        return Err(Refusal {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            reason: "batch_too_large",
            message: format!("at most {MAX_BATCH} deliveries per request"),
        });
    }
    Ok(deliveries)
}

type ParseError = (&'static str, String);

fn parse_text(body: &[u8]) -> Result<Vec<Delivery>, ParseError> {
    let text = std::str::from_utf8(body).map_err(|_| ("not_utf8", "body is not UTF-8".into()))?;
    let mut out = Vec::new();
    for (n, l) in text.split('\n').enumerate() {
        let l = l.strip_suffix('\r').unwrap_or(l);
        if l.is_empty() {
            continue;
        }
        let d = line::parse(l).map_err(|e| (e.reason(), format!("line {}: {e}", n + 1)))?;
        out.push(d);
        if out.len() > MAX_BATCH {
            break;
        }
    }
    if out.is_empty() {
        return Err(("empty", "no deliveries in the body".into()));
    }
    Ok(out)
}

fn parse_json(body: &[u8]) -> Result<Vec<Delivery>, ParseError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ("bad_json", format!("invalid JSON: {e}")))?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        one @ serde_json::Value::Object(_) => vec![one],
        _ => {
            return Err((
                "bad_json",
                "expected an object or an array of objects".into(),
            ));
        }
    };
    if items.is_empty() {
        return Err(("empty", "no deliveries in the body".into()));
    }
    if items.len() > MAX_BATCH {
        return Err((
            "batch_too_large",
            format!("at most {MAX_BATCH} deliveries per request"),
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let j: JsonDelivery = serde_json::from_value(item)
                .map_err(|e| ("bad_json", format!("delivery {i}: {e}")))?;
            let unit = match j.unit.as_deref() {
                None => None,
                Some(u) => Some(Unit::parse(u).ok_or_else(|| {
                    (
                        "bad_unit",
                        format!("delivery {i}: unit must be s, ms, us or auto"),
                    )
                })?),
            };
            if j.queue
                .as_deref()
                .is_some_and(|q| q.is_empty() || q.len() > 255)
            {
                return Err(("malformed", format!("delivery {i}: bad queue name")));
            }
            // As in the line protocol: 0 is no timestamp, and no timestamp has no unit.
            let timestamp = j.timestamp.filter(|&t| t != 0);
            Ok(Delivery {
                queue: j.queue.filter(|q| q != "-"),
                timestamp,
                unit: unit.filter(|_| timestamp.is_some()),
                redelivered: j.redelivered,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shapes() {
        let one =
            parse_json(br#"{"queue":"q","timestamp":5,"unit":"ms","redelivered":true}"#).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].unit, Some(Unit::Ms));
        assert!(one[0].redelivered);
        let many = parse_json(br#"[{"timestamp":5},{"timestamp":null}]"#).unwrap();
        assert_eq!(many[1].timestamp, None);
        // The fuzz target's promise (the line protocol's regression `order 0s 0`): no
        // timestamp, no unit, whatever unit was sent.
        let zero = parse_json(br#"[{"timestamp":0,"unit":"ms"},{"unit":"s"}]"#).unwrap();
        assert!(
            zero.iter()
                .all(|d| d.timestamp.is_none() && d.unit.is_none())
        );
        for bad in [
            &br#"{"timestamp":-5}"#[..],
            br#"{"timestamp":1.5}"#,
            br#"{"timestamp":"5"}"#,
            br#"{"timestamp":5,"extra":1}"#,
            br#"{"timestamp":5,"unit":"h"}"#,
            br#"[]"#,
            br#"42"#,
            br#"{"timestamp":5"#,
            br#"{"timestamp":99999999999999999999999}"#,
        ] {
            assert!(parse_json(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn bodies_are_refused_whole_with_their_status() {
        let many = format!("[{}]", vec![r#"{"timestamp":1}"#; MAX_BATCH + 1].join(","));
        let refusal = parse_body("application/json", many.as_bytes()).unwrap_err();
        assert_eq!(
            (refusal.status, refusal.reason),
            (StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large")
        );
        let lines = "- 5\n".repeat(MAX_BATCH + 1);
        let refusal = parse_body("text/plain", lines.as_bytes()).unwrap_err();
        assert_eq!(refusal.status, StatusCode::PAYLOAD_TOO_LARGE);
        let xml = parse_body("application/xml", b"<x/>").unwrap_err();
        assert_eq!(xml.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let bad = parse_body("text/plain; charset=utf-8", b"orders 12h").unwrap_err();
        assert_eq!(
            (bad.status, bad.reason),
            (StatusCode::BAD_REQUEST, "bad_unit")
        );
        let ok = parse_body("Application/JSON", br#"{"timestamp":5}"#).unwrap();
        assert_eq!(ok[0].timestamp, Some(5));
    }
}
