//! The scale target of the closed-loop tests: a "Deployment" of consumer pods, each a [`worker`]
//! task with its own [`Sidecar`] process, that the harness's HPA scales up and down. Pod names
//! never repeat (`binder-0`, `binder-1`, …), as with a ReplicaSet.
//!
//! [`worker`]: crate::worker

use std::sync::Arc;
use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::hpa::calculator::{Pod as HpaPod, PodPhase};
use crate::sidecar::{Sidecar, SidecarConfig};
use crate::worker::{self, Ledger, WorkerConfig};

/// The pod template.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Name prefix of the pods.
    pub name: String,
    /// Worker settings (its `report_udp` is filled in per pod).
    pub worker: WorkerConfig,
    /// Sidecar settings (`pod` is filled in per pod); None: workers without sidecars.
    pub sidecar: Option<SidecarConfig>,
}

impl FleetConfig {
    /// Pods named `name-N` consuming `queue` at `amqp_url`, `processing` per message, each with
    /// `sidecar` (see [`SidecarConfig::binder`]) or none.
    pub fn new(
        name: &str,
        amqp_url: &str,
        queue: &str,
        processing: Duration,
        sidecar: Option<SidecarConfig>,
    ) -> Self {
        Self {
            name: name.into(),
            worker: WorkerConfig {
                amqp_url: amqp_url.into(),
                queue: queue.into(),
                processing,
                report_udp: None,
            },
            sidecar,
        }
    }
}

struct RunningPod {
    name: String,
    cancel: CancellationToken,
    worker: JoinHandle<()>,
    sidecar: Option<Sidecar>,
}

/// The running pods and the shared ledger of what they consumed.
pub struct Fleet {
    config: FleetConfig,
    pods: Vec<RunningPod>,
    next_id: usize,
    /// Pods told to stop, still finishing (as Terminating pods, they no longer count).
    stopping: JoinSet<()>,
    /// What every worker acked.
    pub ledger: Arc<Ledger>,
}

impl Fleet {
    /// An empty fleet.
    pub fn new(config: FleetConfig) -> Self {
        Self {
            config,
            pods: Vec::new(),
            next_id: 0,
            stopping: JoinSet::new(),
            ledger: Arc::new(Ledger::default()),
        }
    }

    /// How many pods run.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// True with no pods.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// The pods as the HPA's pod lister sees them (all Running once started).
    pub fn hpa_pods(&self) -> Vec<HpaPod> {
        self.pods
            .iter()
            .map(|p| HpaPod {
                name: p.name.clone(),
                phase: PodPhase::Running,
            })
            .collect()
    }

    /// Names of the running pods.
    pub fn names(&self) -> Vec<String> {
        self.pods.iter().map(|p| p.name.clone()).collect()
    }

    async fn start_one(&mut self) -> Result<(), String> {
        let name = format!("{}-{}", self.config.name, self.next_id);
        self.next_id += 1;
        let mut worker_config = self.config.worker.clone();
        let sidecar = match &self.config.sidecar {
            Some(template) => {
                let mut c = template.clone();
                c.pod = name.clone();
                let s = Sidecar::start(&c).await?;
                match s.tap {
                    // The tap reads every delivery off the worker's own connection.
                    Some(tap) => {
                        worker_config.amqp_url = crate::tap::via(&worker_config.amqp_url, tap)
                    }
                    None => worker_config.report_udp = Some(s.report_udp),
                }
                Some(s)
            }
            None => None,
        };
        let cancel = CancellationToken::new();
        let worker = tokio::spawn(worker::run(
            worker_config,
            self.ledger.clone(),
            cancel.clone(),
        ));
        self.pods.push(RunningPod {
            name,
            cancel,
            worker,
            sidecar,
        });
        Ok(())
    }

    /// Starts or stops pods until `n` run. The newest go first; a stopping pod leaves the count
    /// at once and finishes in the background (its message acked, then its sidecar's goodbye).
    pub async fn scale_to(&mut self, n: usize) -> Result<(), String> {
        while self.pods.len() < n {
            self.start_one().await?;
        }
        while self.pods.len() > n {
            let Some(pod) = self.pods.pop() else { break };
            pod.cancel.cancel();
            self.stopping.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(15), pod.worker).await;
                if let Some(s) = pod.sidecar {
                    s.stop().await;
                }
            });
        }
        Ok(())
    }

    /// Stops every pod and waits until all have finished.
    pub async fn shutdown(&mut self) {
        let _ = self.scale_to(0).await;
        while self.stopping.join_next().await.is_some() {}
    }
}
