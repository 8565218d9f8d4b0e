//! The worker side of `/p2pc/task/1`: checks a signed task, fetches what it
//! lacks, runs it and signs a receipt.

use std::sync::Arc;
use std::time::{Duration, Instant};

use p2pc_crypto::{BundleFile, Envelope, PublicKey, VerifiedBundle};
use p2pc_net::PeerId;
use p2pc_sandbox::{Artifact, Call, Grants, Limits, Mode, SandboxExecutor, Task};
use p2pc_store::Cid;
use p2pc_types::ByteSize;
use prost::Message;
use tracing::{debug, info};

use crate::messages::{
    ADVERT_KIND, Advert, INLINE_BYTES, MAX_DEADLINE_MS, RECEIPT_KIND, Receipt, TASK_KIND,
    TaskReply, TaskRequest, TaskSpec, blob_id, now_unix_ms,
};
use crate::node::Shared;

/// A refusal: a code a program can branch on and a message for people.
struct Refusal(&'static str, String);

impl From<Refusal> for TaskReply {
    fn from(r: Refusal) -> Self {
        refuse(r.0, r.1)
    }
}

fn refuse(code: &str, message: impl Into<String>) -> TaskReply {
    TaskReply {
        refused_code: code.to_owned(),
        refused: message.into(),
        ..TaskReply::default()
    }
}

impl Shared {
    /// This worker's signed advert.
    pub(crate) fn advert(&self) -> Envelope {
        let limits = &self.config.limits;
        let mut executors = vec!["wasm".to_owned()];
        if self.process.is_some() {
            executors.push("process".into());
        }
        if self.container.is_some() {
            executors.push("container".into());
        }
        let advert = Advert {
            executors,
            free_slots: self.slots.available_permits() as u32,
            slots: self.config.node.slots as u32,
            max_fuel: limits.fuel,
            max_memory: limits.memory.0,
            max_timeout_ms: limits.timeout.as_millis() as u64,
            max_output: limits.output.0,
            issued_unix_ms: now_unix_ms(),
        };
        Envelope::seal(
            &self.key,
            ADVERT_KIND,
            self.next_sequence(),
            advert.encode_to_vec(),
        )
    }

    /// Answers one task-protocol request from `peer`.
    pub(crate) async fn handle_task(self: &Arc<Self>, peer: PeerId, request: &[u8]) -> TaskReply {
        let request = match TaskRequest::decode(request) {
            Ok(r) => r,
            Err(e) => return refuse("malformed", format!("malformed task request: {e}")),
        };
        if request.describe {
            return TaskReply {
                advert: self.advert().encode_to_vec(),
                ..TaskReply::default()
            };
        }
        let envelope = match Envelope::decode_bounded(&request.task) {
            Ok(e) => e,
            Err(e) => return refuse("malformed", e.to_string()),
        };
        let opened = match envelope.open(TASK_KIND) {
            Ok(o) => o,
            Err(e) => return refuse("bad_signature", e.to_string()),
        };
        let submitter = opened.author;
        if !self.submitters.allows(&submitter) {
            return refuse(
                "untrusted_submitter",
                format!(
                    "tasks signed by {submitter} are not accepted here: the key is not in this \
                     worker's [trust] submitters list"
                ),
            );
        }
        let spec = match TaskSpec::decode(opened.payload) {
            Ok(s) => s,
            Err(e) => return refuse("malformed", format!("malformed task: {e}")),
        };
        if !spec.worker.is_empty() && spec.worker != self.public.to_bytes() {
            return refuse("wrong_worker", "the task names another worker");
        }
        let now = now_unix_ms();
        if spec.deadline_unix_ms <= now {
            return refuse("expired", "the task's deadline has passed");
        }
        if spec.deadline_unix_ms > now + MAX_DEADLINE_MS {
            return refuse(
                "bad_deadline",
                "the task's deadline is more than a day away",
            );
        }
        if spec.task_id.len() != 16 {
            return refuse("malformed", "a task id is 16 bytes");
        }
        if !self.remember_task(submitter, &spec.task_id, spec.deadline_unix_ms, now) {
            return refuse(
                "replayed",
                format!(
                    "task {} from {submitter} was already received",
                    hex::encode(&spec.task_id)
                ),
            );
        }
        let limits = match self.task_limits(&spec) {
            Ok(l) => l,
            Err(refusal) => return refusal.into(),
        };
        let left = Duration::from_millis(spec.deadline_unix_ms - now);
        let _slot = match tokio::time::timeout(left, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => return refuse("busy", "no slot came free before the task's deadline"),
        };
        let task_digest = blake3::hash(&request.task);
        let started = Instant::now();
        let (Some(bundle_cid), Some(input_cid)) =
            (Cid::from_slice(&spec.bundle), Cid::from_slice(&spec.input))
        else {
            return refuse("malformed", "bundle and input are 32-byte blob names");
        };
        let bundle = match self.bundle(bundle_cid, peer).await {
            Ok(b) => b,
            Err(refusal) => return refusal.into(),
        };
        let input = if !spec.inline_input.is_empty() || input_cid == blob_id(&[]) {
            if blob_id(&spec.inline_input) != input_cid {
                return refuse(
                    "malformed",
                    "the inline input does not match the input's name",
                );
            }
            spec.inline_input.to_vec()
        } else {
            if let Err(e) = crate::fetch::fetch(&self.client, &self.store, input_cid, &[peer]).await
            {
                return refuse("fetch_failed", format!("cannot fetch the input: {e}"));
            }
            match self.store.get_bytes(&input_cid) {
                Ok(b) => b,
                Err(e) => return refuse("internal", format!("cannot read the input: {e}")),
            }
        };
        info!(task = %hex::encode(&spec.task_id), %peer, bundle = %bundle.manifest.name, "running task");
        let executor = bundle.manifest.executor().to_owned();
        let argv = match p2pc_types::argv(&bundle.manifest.args, &spec.args) {
            Ok(argv) => argv,
            Err(e) => return refuse("malformed", format!("the task's arguments: {e}")),
        };
        let task = Task {
            mode: if executor == "wasm" {
                Mode::derived(blake3::hash(&bundle.component).as_bytes(), &input, &argv)
            } else {
                Mode::Nondeterministic
            },
            call: Call::Run(input),
            limits,
            grants: Grants::default(),
            args: spec.args.clone(),
        };
        let artifact = Artifact {
            bytes: bundle.component.clone(),
            name: bundle.manifest.name.clone(),
            args: bundle.manifest.args.clone(),
        };
        let outcome = match executor.as_str() {
            "wasm" => self.wasm.execute(&artifact, task).await,
            "process" => match &self.process {
                Some(e) => e.execute(&artifact, task).await,
                None => {
                    return refuse(
                        "executor_unavailable",
                        "this worker does not offer the process executor",
                    );
                }
            },
            "container" => match &self.container {
                Some(e) => e.execute(&artifact, task).await,
                None => {
                    return refuse(
                        "executor_unavailable",
                        "this worker does not offer the container executor",
                    );
                }
            },
            other => {
                return refuse(
                    "executor_unavailable",
                    format!("no {other:?} executor here"),
                );
            }
        };
        let mut receipt = Receipt {
            task_id: spec.task_id.clone(),
            task_digest: task_digest.as_bytes().to_vec(),
            submitter: submitter.to_bytes().to_vec(),
            fuel_used: outcome.usage.fuel_used,
            peak_memory: outcome.usage.peak_memory,
            wall_us: started.elapsed().as_micros() as u64,
            ..Receipt::default()
        };
        let mut inline = bytes::Bytes::new();
        match outcome.result {
            Ok(output) => {
                receipt.outcome = "ok".into();
                receipt.output_len = output.len() as u64;
                if output.len() <= INLINE_BYTES {
                    // Small outputs travel in the reply and are not kept:
                    // the receipt's name for them lets the submitter check.
                    receipt.output = blob_id(&output).as_bytes().to_vec();
                    inline = output.into();
                } else {
                    let info = match self.store.put_bytes(&output) {
                        Ok(i) => i,
                        Err(e) => {
                            return refuse("internal", format!("cannot store the output: {e}"));
                        }
                    };
                    receipt.output = info.id.as_bytes().to_vec();
                    self.announce(info.id);
                }
            }
            Err(e) => {
                receipt.outcome = e.code().to_owned();
                receipt.message = e.to_string();
            }
        }
        debug!(task = %hex::encode(&spec.task_id), outcome = %receipt.outcome, "task finished");
        let signed = Envelope::seal(
            &self.key,
            RECEIPT_KIND,
            self.next_sequence(),
            receipt.encode_to_vec(),
        );
        TaskReply {
            receipt: signed.encode_to_vec(),
            inline_output: inline,
            ..TaskReply::default()
        }
    }

    /// Records (submitter, task id) until the task's deadline; false if it
    /// was already there.
    fn remember_task(&self, submitter: PublicKey, id: &[u8], deadline: u64, now: u64) -> bool {
        let mut seen = self.seen_tasks.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > 4096 {
            seen.retain(|_, d| *d > now);
        }
        seen.insert((submitter, id.to_vec()), deadline).is_none()
    }

    fn task_limits(&self, spec: &TaskSpec) -> Result<Limits, Refusal> {
        let max = &self.config.limits;
        let over = |what: &str, asked: String, most: String| {
            Err(Refusal(
                "over_limits",
                format!("the task asks for {asked} of {what}; this worker allows at most {most}"),
            ))
        };
        if spec.fuel > max.fuel {
            return over("fuel", spec.fuel.to_string(), max.fuel.to_string());
        }
        if spec.memory > max.memory.0 {
            return over(
                "memory",
                ByteSize(spec.memory).to_string(),
                max.memory.to_string(),
            );
        }
        if Duration::from_millis(spec.timeout_ms) > max.timeout {
            return over(
                "time",
                format!("{}ms", spec.timeout_ms),
                format!("{}ms", max.timeout.as_millis()),
            );
        }
        if spec.output > max.output.0 {
            return over(
                "output",
                ByteSize(spec.output).to_string(),
                max.output.to_string(),
            );
        }
        let d = Limits::DEFAULT;
        Ok(Limits {
            fuel: if spec.fuel == 0 {
                d.fuel.min(max.fuel)
            } else {
                spec.fuel
            },
            memory: if spec.memory == 0 {
                d.memory.min(max.memory)
            } else {
                ByteSize(spec.memory)
            },
            timeout: if spec.timeout_ms == 0 {
                d.timeout.min(max.timeout)
            } else {
                Duration::from_millis(spec.timeout_ms)
            },
            output: if spec.output == 0 {
                d.output.min(max.output)
            } else {
                ByteSize(spec.output)
            },
            ..d
        })
    }

    /// The verified bundle stored as blob `cid`, fetched from `peer` (or
    /// any provider) when missing. Verified bundles are kept in memory.
    async fn bundle(
        self: &Arc<Self>,
        cid: Cid,
        peer: PeerId,
    ) -> Result<Arc<VerifiedBundle>, Refusal> {
        let now = p2pc_crypto::now_unix();
        let cached = self
            .bundles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&cid)
            .cloned();
        if let Some(b) = cached
            && (b.manifest.expires_unix == 0 || now < b.manifest.expires_unix)
        {
            return Ok(b);
        }
        if let Err(e) = crate::fetch::fetch(&self.client, &self.store, cid, &[peer]).await {
            return Err(Refusal(
                "fetch_failed",
                format!("cannot fetch the bundle: {e}"),
            ));
        }
        let bytes = self
            .store
            .get_bytes(&cid)
            .map_err(|e| Refusal("internal", format!("cannot read the bundle: {e}")))?;
        let verified = BundleFile::from_vec(bytes)
            .and_then(|f| f.verify(&self.publishers, now))
            .map_err(|e| Refusal("bad_bundle", format!("bundle refused: {e}")))?;
        let verified = Arc::new(verified);
        let mut cache = self.bundles.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= 64 {
            cache.clear();
        }
        cache.insert(cid, verified.clone());
        Ok(verified)
    }
}
