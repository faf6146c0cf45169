//! Waiting on real processes without fixed sleeps: poll a condition until it holds or a generous
//! deadline passes, and fail with the last observation.

use std::future::Future;
use std::time::Duration;

/// Calls `check` every `every` until it returns `Ok`, or fails after `deadline` with the last
/// `Err` (what was seen instead).
pub async fn until<T, F, Fut>(
    deadline: Duration,
    every: Duration,
    mut check: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(last) if tokio::time::Instant::now() >= end => {
                return Err(format!("not within {deadline:?}; last: {last}"));
            }
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}
