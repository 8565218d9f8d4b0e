//! The submitter side of `/p2pc/task/1`: jobs this node sends to workers,
//! their state, and the checks on what comes back.
//!
//! Job records live in memory: they do not survive a restart of the node,
//! but their outputs do, as blobs in the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2pc_crypto::{BundleFile, PublicKey, TrustPolicy};
use p2pc_net::{PeerId, RequestFailure};
use p2pc_store::Cid;
use prost::Message;
use serde::Serialize;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::messages::{
    INLINE_BYTES, TaskReply, TaskRequest, TaskSpec, blob_id, check_receipt, now_unix_ms, seal_task,
};
use crate::node::{ComputeNode, Shared};
use crate::{Error, Result};

/// Where a job stands.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum JobState {
    /// Looking for a worker and sending the task.
    Submitted,
    /// Sent to a worker; waiting for its receipt.
    Running {
        /// The worker's peer id.
        worker: String,
    },
    /// A verified receipt came back.
    Done {
        /// The worker's peer id.
        worker: String,
        /// `ok` or the task error's code.
        outcome: String,
        /// The error's message, when not ok.
        message: String,
        /// The output blob, present in the local store, when ok.
        output: Option<String>,
        /// Output length.
        output_len: u64,
        /// Fuel the worker reports.
        fuel_used: u64,
        /// Peak memory the worker reports.
        peak_memory: u64,
    },
    /// The job could not be completed.
    Failed {
        /// What went wrong.
        error: String,
    },
}

impl JobState {
    /// Whether the job has finished, one way or the other.
    pub fn is_final(&self) -> bool {
        matches!(self, JobState::Done { .. } | JobState::Failed { .. })
    }
}

/// What to submit.
#[derive(Clone, Debug)]
pub struct Submission {
    /// The signed bundle file's bytes.
    pub bundle: Vec<u8>,
    /// The input.
    pub input: Vec<u8>,
    /// The worker to send it to; otherwise one is chosen.
    pub to: Option<PeerId>,
    /// How long the job may take, from submission to receipt.
    pub timeout: Duration,
    /// Arguments for the program, after the bundle's own.
    pub args: Vec<String>,
}

#[derive(Default)]
pub(crate) struct Jobs {
    jobs: Mutex<HashMap<String, watch::Sender<JobState>>>,
    /// Outputs small enough to come inline, kept with the job record
    /// rather than written to the store (one fsync less per tiny task).
    outputs: Mutex<HashMap<String, bytes::Bytes>>,
}

impl Jobs {
    pub(crate) fn len(&self) -> usize {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn insert(&self, id: String) -> watch::Sender<JobState> {
        let (tx, _) = watch::channel(JobState::Submitted);
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx.clone());
        tx
    }

    pub(crate) fn inline_output(&self, id: &str) -> Option<bytes::Bytes> {
        self.outputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    fn get(&self, id: &str) -> Option<watch::Receiver<JobState>> {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .map(|tx| tx.subscribe())
    }
}

impl ComputeNode {
    /// Submits a job; returns its id at once. Follow it with
    /// [`job`](Self::job) or [`wait`](Self::wait).
    pub async fn submit(&self, submission: Submission) -> Result<String> {
        self.shared.submit(submission).await
    }

    /// A job's state.
    pub fn job(&self, id: &str) -> Result<JobState> {
        self.shared.job(id)
    }

    /// Waits up to `timeout` for a job to finish.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<JobState> {
        self.shared.wait(id, timeout).await
    }

    /// A finished job's output: kept with the job when it came inline,
    /// otherwise read (verified) from the store.
    pub fn output(&self, id: &str) -> Result<Vec<u8>> {
        if let Some(bytes) = self.shared.jobs.inline_output(id) {
            return Ok(bytes.to_vec());
        }
        match self.shared.job(id)? {
            JobState::Done {
                output: Some(cid), ..
            } => {
                let cid: Cid = cid
                    .parse()
                    .map_err(|_| Error::Submit("bad output id".into()))?;
                Ok(self.shared.store.get_bytes(&cid)?)
            }
            other => Err(Error::Submit(format!("job {id} has no output: {other:?}"))),
        }
    }

    /// The workers this node has heard adverts from.
    pub fn workers(&self) -> Vec<PeerId> {
        self.shared
            .adverts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect()
    }
}

impl Shared {
    pub(crate) fn job(&self, id: &str) -> Result<JobState> {
        self.jobs
            .get(id)
            .map(|rx| rx.borrow().clone())
            .ok_or_else(|| Error::NoSuchJob(id.to_owned()))
    }

    pub(crate) async fn wait(&self, id: &str, timeout: Duration) -> Result<JobState> {
        let mut rx = self
            .jobs
            .get(id)
            .ok_or_else(|| Error::NoSuchJob(id.to_owned()))?;
        let waited = tokio::time::timeout(timeout, async {
            rx.wait_for(JobState::is_final).await.map(|s| s.clone())
        })
        .await;
        match waited {
            Ok(Ok(state)) => Ok(state),
            Ok(Err(_)) => Err(Error::NoSuchJob(id.to_owned())),
            Err(_) => Ok(rx.borrow().clone()),
        }
    }

    pub(crate) async fn submit(self: &Arc<Self>, submission: Submission) -> Result<String> {
        // Check the bundle here first, so a bad one fails at once with the
        // bundle's own error rather than as a worker's refusal.
        let verified = BundleFile::from_bytes(&submission.bundle)
            .and_then(|f| f.verify(&TrustPolicy::Any, p2pc_crypto::now_unix()))
            .map_err(|e| Error::Submit(format!("the bundle is not valid: {e}")))?;
        p2pc_types::argv(&verified.manifest.args, &submission.args)
            .map_err(|e| Error::Submit(format!("the job's arguments: {e}")))?;
        // The same bundle is stored once, however many jobs use it.
        let bundle = blob_id(&submission.bundle);
        if !self.store.has(&bundle)? {
            self.store.put_bytes(&submission.bundle)?;
            self.announce(bundle);
        }
        let input = blob_id(&submission.input);
        if submission.input.len() > INLINE_BYTES && !self.store.has(&input)? {
            self.store.put_bytes(&submission.input)?;
            self.announce(input);
        }
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| Error::Io(format!("no randomness: {e}")))?;
        let job_id = hex::encode(id);
        let state = self.jobs.insert(job_id.clone());
        let requested = verified.manifest.limits.unwrap_or_default();
        let spec = TaskSpec {
            task_id: id.to_vec(),
            bundle: bundle.as_bytes().to_vec(),
            input: input.as_bytes().to_vec(),
            fuel: requested.fuel,
            memory: requested.memory_bytes,
            timeout_ms: requested.timeout_ms,
            output: requested.output_bytes,
            deadline_unix_ms: now_unix_ms() + submission.timeout.as_millis() as u64,
            worker: Vec::new(),
            inline_input: if submission.input.len() <= INLINE_BYTES {
                submission.input.into()
            } else {
                bytes::Bytes::new()
            },
            args: submission.args,
        };
        let shared = self.clone();
        let job = job_id.clone();
        tokio::spawn(async move {
            let end = match shared
                .run_job(&job, spec, submission.to, submission.timeout, &state)
                .await
            {
                Ok(done) => done,
                Err(e) => JobState::Failed {
                    error: e.to_string(),
                },
            };
            info!(%job, state = ?end, "job finished");
            state.send_replace(end);
        });
        Ok(job_id)
    }

    async fn run_job(
        self: &Arc<Self>,
        job: &str,
        mut spec: TaskSpec,
        to: Option<PeerId>,
        timeout: Duration,
        state: &watch::Sender<JobState>,
    ) -> Result<JobState> {
        let started = tokio::time::Instant::now();
        let worker = match to {
            Some(p) => p,
            None => self.choose_worker().await?,
        };
        let worker_key = PublicKey::from_peer_id(&worker)
            .ok_or_else(|| Error::Submit(format!("{worker} is not an Ed25519 peer id")))?;
        spec.worker = worker_key.to_bytes().to_vec();
        let task_wire = seal_task(&self.key, self.next_sequence(), &spec).encode_to_vec();
        state.send_replace(JobState::Running {
            worker: worker.to_string(),
        });
        let request = TaskRequest {
            task: task_wire.clone(),
            describe: false,
        }
        .encode_to_vec();
        let left = timeout.saturating_sub(started.elapsed());
        let mut answer = self
            .client
            .request_task(worker, request.clone(), left)
            .await;
        if let Err(p2pc_net::Error::Request {
            kind: RequestFailure::Unreachable,
            ..
        }) = &answer
        {
            // No address known for the worker yet: look it up and retry.
            if self.client.find_peer(worker).await.unwrap_or(false) {
                let left = timeout.saturating_sub(started.elapsed());
                answer = self.client.request_task(worker, request, left).await;
            }
        }
        let answer = answer.map_err(|e| match e {
            p2pc_net::Error::Request {
                kind: RequestFailure::ConnectionClosed,
                ..
            } => Error::Submit(format!(
                "worker {worker} went away before answering (its connection closed)"
            )),
            p2pc_net::Error::Timeout(t) => {
                Error::Submit(format!("worker {worker} did not answer within {t:?}"))
            }
            other => Error::Submit(format!("worker {worker}: {other}")),
        })?;
        let reply = TaskReply::decode(answer.as_slice())
            .map_err(|e| Error::Submit(format!("worker {worker} sent a malformed reply: {e}")))?;
        if !reply.refused.is_empty() {
            return Err(Error::Submit(format!(
                "worker {worker} refused the task ({}): {}",
                reply.refused_code, reply.refused
            )));
        }
        let receipt = check_receipt(&reply.receipt, &task_wire, &worker_key)
            .map_err(|e| Error::Submit(format!("receipt from {worker} rejected: {e}")))?;
        if receipt.task_id != spec.task_id {
            return Err(Error::Submit(format!(
                "receipt from {worker} rejected: wrong task id"
            )));
        }
        let mut output = None;
        if receipt.outcome == "ok" {
            let cid = Cid::from_slice(&receipt.output)
                .ok_or_else(|| Error::Submit("receipt names no output".into()))?;
            if !reply.inline_output.is_empty() || receipt.output_len == 0 {
                if blob_id(&reply.inline_output) != cid {
                    return Err(Error::Submit(format!(
                        "receipt from {worker} rejected: the output sent does not match the output it names"
                    )));
                }
                self.jobs
                    .outputs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(job.to_owned(), reply.inline_output.clone());
            } else {
                let left = timeout.saturating_sub(started.elapsed());
                tokio::time::timeout(
                    left,
                    crate::fetch::fetch(&self.client, &self.store, cid, &[worker]),
                )
                .await
                .map_err(|_| {
                    Error::Submit("fetching the output took past the job's timeout".into())
                })??;
            }
            output = Some(cid.to_string());
        }
        Ok(JobState::Done {
            worker: worker.to_string(),
            outcome: receipt.outcome,
            message: receipt.message,
            output,
            output_len: receipt.output_len,
            fuel_used: receipt.fuel_used,
            peak_memory: receipt.peak_memory,
        })
    }

    /// A worker for a task: the advertised one with the most free slots, or
    /// failing adverts, the first connected peer that describes itself.
    async fn choose_worker(self: &Arc<Self>) -> Result<PeerId> {
        let best = {
            let adverts = self.adverts.lock().unwrap_or_else(|e| e.into_inner());
            adverts
                .iter()
                .filter(|(p, _)| **p != self.client.peer_id())
                .max_by_key(|(p, (_, a))| (a.free_slots, std::cmp::Reverse(p.to_string())))
                .map(|(p, _)| *p)
        };
        if let Some(p) = best {
            return Ok(p);
        }
        let describe = TaskRequest {
            task: Vec::new(),
            describe: true,
        }
        .encode_to_vec();
        let peers = self.client.peers().await?;
        let mut asks = futures::stream::FuturesUnordered::new();
        for info in peers {
            let Ok(peer) = info.peer_id.parse::<PeerId>() else {
                continue;
            };
            let client = self.client.clone();
            let req = describe.clone();
            asks.push(async move {
                (
                    peer,
                    client.request_task(peer, req, Duration::from_secs(3)).await,
                )
            });
        }
        use futures::StreamExt;
        while let Some((peer, answer)) = asks.next().await {
            match answer.map(|a| TaskReply::decode(a.as_slice())) {
                Ok(Ok(reply)) if !reply.advert.is_empty() => return Ok(peer),
                Ok(_) => {}
                Err(e) => warn!(%peer, error = %e, "describe failed"),
            }
        }
        Err(Error::Submit(
            "no worker found: no adverts heard and no connected peer answered; \
             connect to a worker or name one with --to"
                .into(),
        ))
    }
}
