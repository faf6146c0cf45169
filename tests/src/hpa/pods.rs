//! The scale target's pods as the replica calculator sees them: phase, the `Ready` condition and a
//! deletion timestamp, sorted by `groupPods` (Pods metrics) and counted by `getReadyPodsCount`
//! (Object and External `Value` targets). The two disagree on purpose, and the model keeps both:
//! a Running pod that is not Ready still counts for a Pods metric, but not as a ready pod; a pod
//! that is being deleted but still Ready is ignored by `groupPods` and counted as ready.
//!
//! Source: `k8s: pkg/controller/podautoscaler/replica_calculator.go` (`groupPods`,
//! `getReadyPodsCount`, `removeMetricsForPods`), read at the commit cited in `calculator.rs`.

use std::collections::{BTreeMap, BTreeSet};

/// A pod's state as `groupPods` and `getReadyPodsCount` read it (phase, `Ready`, deletion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPhase {
    /// Phase Running and `Ready=True`: counted everywhere.
    Running,
    /// Phase Running, `Ready=False`: counted by Pods metrics (`groupPods` checks readiness only
    /// for the CPU resource), not by `getReadyPodsCount`.
    Unready,
    /// Phase Pending: "unready" for Pods metrics (its value is dropped; 0 on a scale-up).
    Pending,
    /// `deletionTimestamp` set while still Running and Ready: ignored by `groupPods`, but
    /// `getReadyPodsCount` does not look at deletion and counts it.
    Terminating,
    /// `deletionTimestamp` set and not (Running and Ready): ignored everywhere.
    TerminatingUnready,
    /// Phase Failed (terminal): ignored everywhere.
    Failed,
    /// Phase Succeeded (terminal): ignored everywhere.
    Succeeded,
}

impl PodPhase {
    /// `getReadyPodsCount`: phase Running and `podutil.IsPodReady`.
    pub fn counts_as_ready(self) -> bool {
        matches!(self, PodPhase::Running | PodPhase::Terminating)
    }
}

/// A pod matched by the scale target's selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// `metadata.name`, matched against `describedObject.name` of the Pods metric items.
    pub name: String,
    /// Its state.
    pub phase: PodPhase,
}

/// `groupPods`' four outputs for a non-CPU metric.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodGroups {
    /// Pods with a value that count (`readyPodCount`).
    pub ready: usize,
    /// Pending pods (their values are dropped).
    pub unready: BTreeSet<String>,
    /// Running pods without a value.
    pub missing: BTreeSet<String>,
    /// Terminal pods and pods being deleted (their values are dropped).
    pub ignored: BTreeSet<String>,
}

/// `groupPods` with `resource == ""` (Pods metrics): the CPU-only readiness and start-time
/// checks never apply, so a Running pod is ready whatever its `Ready` condition says.
pub fn group_pods(pods: &[Pod], metrics: &BTreeMap<String, i64>) -> PodGroups {
    let mut groups = PodGroups::default();
    for pod in pods {
        match pod.phase {
            PodPhase::Terminating
            | PodPhase::TerminatingUnready
            | PodPhase::Failed
            | PodPhase::Succeeded => {
                groups.ignored.insert(pod.name.clone());
            }
            PodPhase::Pending => {
                groups.unready.insert(pod.name.clone());
            }
            PodPhase::Running | PodPhase::Unready if !metrics.contains_key(&pod.name) => {
                groups.missing.insert(pod.name.clone());
            }
            PodPhase::Running | PodPhase::Unready => groups.ready += 1,
        }
    }
    groups
}

/// `getReadyPodsCount`: `None` when the selector matched no pod (Go's "no pods returned by
/// selector while calculating replica count").
pub fn ready_pod_count(pods: &[Pod]) -> Option<usize> {
    if pods.is_empty() {
        return None;
    }
    Some(pods.iter().filter(|p| p.phase.counts_as_ready()).count())
}
