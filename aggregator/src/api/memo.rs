//! The response memo: the rendered body of each metric value request (by its exact path and
//! query), kept while the answer it renders holds, and served before routing. A repeated read
//! (the HPA every 15 s, many HPAs on one metric, a kube-apiserver retry storm) then costs the
//! lookup, the caller's authentication and the request count, not routing, parsing, the
//! engine's answer copied out and JSON rendering (BENCHMARKS.md note A).
//!
//! Exact: a body is served only while the engine says the answer behind it still holds (its
//! result cache's validity: rules, the namespace's stamp, the clock), and rendering is a pure
//! function of the path, the query and that answer. Only `200` answers are kept; anything the
//! memo does not hold, any caller it cannot authenticate, and any caller the authorizer does not
//! allow without waiting (a review not cached yet, or a denial), goes through the router.
//! Bounded in entries and bytes.
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Response, header};
use dashmap::DashMap;
use hyper::body::Bytes;

use super::ApiState;
use super::types::APPLICATION_JSON;
use crate::provider::{CustomQuery, ExternalQuery, MetricValue, ProviderError};

/// Most requests remembered.
const MAX_ENTRIES: usize = 1024;
/// Most body bytes held in all (a Pods answer over 1 000 pods is ~200 kB).
const MAX_BYTES: usize = 16 << 20;

/// Says, when asked later, whether an answer still holds.
pub type Holds = Arc<dyn Fn() -> bool + Send + Sync>;

/// Values as an answer shares them (the engine's result cache hands out the same ones).
pub type SharedValues = Result<Arc<[MetricValue]>, ProviderError>;

/// Answers that come with their [`Holds`] (the engine's, from its result cache). Without one
/// the memo is off.
pub trait HeldAnswers: Send + Sync + 'static {
    /// A custom-metrics answer, and (for values) whether it still holds.
    fn custom_held(&self, q: &CustomQuery) -> (SharedValues, Option<Holds>);
    /// An external-metrics answer, and (for values) whether it still holds.
    fn external_held(&self, q: &ExternalQuery) -> (SharedValues, Option<Holds>);
}

/// One remembered response.
struct Memo {
    holds: Holds,
    body: Bytes,
    route: &'static str,
}

/// The memo.
#[derive(Default)]
pub struct ResponseMemo {
    entries: DashMap<Box<str>, Arc<Memo>>,
    bytes: AtomicUsize,
}

impl std::fmt::Debug for ResponseMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseMemo")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl ResponseMemo {
    /// Remembers `body`, the `200` answer of `path_and_query` under `route`, while `holds`.
    pub fn put(&self, path_and_query: &str, route: &'static str, body: Bytes, holds: Holds) {
        if body.len() > MAX_BYTES / 4 {
            return;
        }
        if self.entries.len() >= MAX_ENTRIES
            || self.bytes.load(Ordering::Relaxed) + body.len() > MAX_BYTES
        {
            self.entries.retain(|_, m| (m.holds)());
            if self.entries.len() >= MAX_ENTRIES || self.held_bytes() + body.len() > MAX_BYTES {
                self.entries.clear();
            }
            self.bytes.store(self.held_bytes(), Ordering::Relaxed);
        }
        let added = body.len();
        let old = self
            .entries
            .insert(path_and_query.into(), Arc::new(Memo { holds, body, route }));
        // Approximate under concurrent puts; recounted whenever it says the memo is full.
        let removed = old.map_or(0, |m| m.body.len());
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((b + added).saturating_sub(removed))
            });
    }

    fn held_bytes(&self) -> usize {
        self.entries.iter().map(|m| m.body.len()).sum()
    }

    /// The remembered response to `req`, if there is one that still holds and the caller is
    /// authenticated and authorized as the router would require; counted as the router counts.
    pub fn serve<B>(&self, state: &ApiState, req: &Request<B>) -> Option<Response<Body>> {
        if req.method() != Method::GET {
            return None;
        }
        let start = Instant::now();
        let memo = self
            .entries
            .get(req.uri().path_and_query()?.as_str())
            .map(|m| m.value().clone())?;
        if !(memo.holds)() {
            return None;
        }
        // Refused callers, and callers whose authorization needs a review not cached yet, go
        // through the router, which answers them (401, 403, or after the review) as always.
        if !super::auth::admitted_now(state, req) {
            return None;
        }
        let mut response = Response::new(Body::from(memo.body.clone()));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(APPLICATION_JSON),
        );
        state
            .telemetry
            .observe_http(memo.route, 200, start.elapsed().as_secs_f64());
        Some(response)
    }

    /// Number of responses remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests;
