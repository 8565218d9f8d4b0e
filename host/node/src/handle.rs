//! [`Handle`]: what a client of a running node (the gateway) may ask of
//! it. Every method is typed and async; blocking work (the store, files)
//! runs off the async threads. The handle never exposes the swarm, the
//! sandbox or the database itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use p2pc_crypto::{BundleFile, Keystore, Manifest, RequestedLimits, TrustPolicy};
use p2pc_net::{PeerId, PeerInfo};
use p2pc_store::{BundleRecord, Cid, Store};

use crate::api::{ConfigSummary, Drained, OfferView, PriceView, ReputationView};
use crate::network::Submission;
use crate::node::Services;
use crate::worker::announce;
use crate::{
    ComputeNode, Error, FetchStats, JobInfo, JobLogs, LedgerAnswer, LedgerRequest, NodeConfig,
    Result, Status,
};

/// The token's file name in the data directory.
pub const TOKEN_FILE: &str = "api.token";
/// The Unix socket the gateway serves in the data directory.
pub const SOCKET_FILE: &str = "api.sock";
/// Where a running node writes the URL its TCP listener got.
pub const URL_FILE: &str = "api.url";

/// A cheap, cloneable handle on a running node's services.
#[derive(Clone)]
pub struct Handle {
    pub(crate) services: Services,
}

impl ComputeNode {
    /// A handle for a client such as the gateway.
    pub fn handle(&self) -> Handle {
        (**self).clone()
    }
}

/// What to pack into a bundle, with a key from the node's keystore.
#[derive(Clone, Debug)]
pub struct Pack {
    /// The component, as a stored blob.
    pub component: Cid,
    /// The job's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The key in `<data_dir>/keys` that signs it.
    pub key: String,
    /// The key's passphrase, if it has one.
    pub passphrase: Option<String>,
    /// Arguments the program always gets.
    pub args: Vec<String>,
    /// What the job asks for (0: the runner's default).
    pub limits: RequestedLimits,
    /// Capabilities it asks for.
    pub capabilities: Vec<String>,
}

impl Handle {
    /// The node's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.services.config.node.data_dir.clone()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &NodeConfig {
        &self.services.config
    }

    /// The content-addressed store (blobs, bundles).
    pub fn store(&self) -> &Store {
        &self.services.store
    }

    /// What the node sees.
    pub async fn status(&self) -> Result<Status> {
        self.services.status().await
    }

    /// The peers connected.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>> {
        Ok(self.services.client.peers().await?)
    }

    /// The configuration, as a client may see it (no secrets in it).
    pub fn config_summary(&self) -> ConfigSummary {
        let c = &self.services.config;
        ConfigSummary {
            data_dir: c.node.data_dir.display().to_string(),
            listen: c.node.listen.iter().map(ToString::to_string).collect(),
            bootstrap: c.node.bootstrap.iter().map(ToString::to_string).collect(),
            mdns: c.node.mdns,
            slots: self.services.worker.slots().1 as u32,
            ledger: self.services.replica.is_some(),
            arbiter: c.arbiter.enabled,
            base_price: c.market.base_price,
            validation: c.market.validation.clone(),
            max_fuel: c.limits.fuel,
            max_memory: c.limits.memory.bytes(),
            max_timeout_ms: u64::try_from(c.limits.timeout.as_millis()).unwrap_or(u64::MAX),
            api_listen: c.api.listen.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// The event stream.
    pub fn events(&self) -> &crate::Events {
        &self.services.telemetry.events
    }

    /// The metrics in Prometheus text (0.0.4), or in OpenMetrics text;
    /// gauges are read from the services first.
    pub async fn metrics_text(&self, openmetrics: bool) -> String {
        let s = &self.services;
        let m = &s.telemetry.metrics;
        let (submitted, running) = s.network.live_states();
        for (state, n) in [("submitted", submitted), ("running", running)] {
            m.jobs
                .get_or_create(&crate::metrics::State {
                    state: state.to_owned(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        m.peers
            .set(i64::try_from(s.client.peer_count()).unwrap_or(i64::MAX));
        m.uptime
            .set(i64::try_from(s.started.elapsed().as_secs()).unwrap_or(i64::MAX));
        if let Some(r) = &s.replica
            && let Ok((locked, balance)) = r.locked_and_balance().await
        {
            m.escrow_locked
                .set(i64::try_from(locked).unwrap_or(i64::MAX));
            m.balance.set(i64::try_from(balance).unwrap_or(i64::MAX));
        }
        if s.replica.is_some() && s.config.market.base_price > 0 {
            m.price
                .set(i64::try_from(s.market.price()).unwrap_or(i64::MAX));
        }
        m.encode(openmetrics)
    }

    /// Counts one gateway request.
    pub fn count_request(&self, request: &crate::ApiRequest) {
        self.services
            .telemetry
            .metrics
            .api_requests
            .get_or_create(request)
            .inc();
    }

    /// The history, the points after `since_unix_ms` only if given.
    pub fn history(&self, since_unix_ms: Option<u64>) -> crate::Timeline {
        self.services.history.get(since_unix_ms)
    }

    /// The health checker's findings: the last run's if it is younger
    /// than a second, otherwise a new run's.
    pub async fn health(&self) -> crate::HealthReport {
        self.services.health.check(Duration::from_secs(1)).await
    }

    /// Stops taking new tasks; those running finish.
    pub fn drain(&self) -> Drained {
        let running = self.services.worker.drain();
        tracing::info!(running, "draining: no new task is taken");
        Drained {
            running: running as u64,
        }
    }

    /// Tells the network this node provides blob `cid`.
    pub fn announce(&self, cid: Cid) {
        announce(&self.services.client, cid);
    }

    /// Fetches a blob from the network, asking `hints` first.
    pub async fn fetch(&self, cid: Cid, hints: &[PeerId]) -> Result<FetchStats> {
        Ok(crate::fetch::fetch_counted(
            &self.services.client,
            &self.services.store,
            cid,
            hints,
            &self.services.telemetry.metrics,
        )
        .await?)
    }

    /// Verifies a signed bundle file and keeps it.
    pub async fn add_bundle(&self, file: Vec<u8>) -> Result<BundleRecord> {
        let store = self.services.store.clone();
        let record = crate::blocking(move || -> Result<_> {
            let file = BundleFile::from_vec(file)
                .map_err(|e| Error::Control(format!("not a usable bundle: {e}")))?;
            let bytes = file.to_bytes();
            let v = file
                .verify(&TrustPolicy::Any, p2pc_crypto::now_unix())
                .map_err(|e| Error::Control(format!("the bundle does not verify: {e}")))?;
            Ok(store.put_bundle(bundle_record(&v), &bytes)?)
        })
        .await?;
        self.announce(record.file);
        Ok(record)
    }

    /// The bundles kept.
    pub async fn bundles(&self) -> Result<Vec<BundleRecord>> {
        let store = self.services.store.clone();
        crate::blocking(move || store.bundles()).await
    }

    /// One bundle's record and manifest.
    pub async fn bundle(&self, id: Cid) -> Result<(BundleRecord, Manifest)> {
        let store = self.services.store.clone();
        crate::blocking(move || -> Result<_> {
            let record = store
                .bundle(&id)?
                .ok_or_else(|| Error::NotFound(format!("no bundle {id} on this node")))?;
            let file = BundleFile::from_vec(store.get_bytes(&record.file)?)
                .map_err(|e| Error::Io(format!("the stored bundle {id} is damaged: {e}")))?;
            let manifest = file
                .manifest()
                .map_err(|e| Error::Io(format!("the stored bundle {id} is damaged: {e}")))?;
            Ok((record, manifest))
        })
        .await
    }

    /// The bytes of bundle `id`'s file, or of a blob that holds a bundle
    /// file.
    pub async fn bundle_bytes(&self, id: Cid) -> Result<Vec<u8>> {
        let store = self.services.store.clone();
        crate::blocking(move || -> Result<_> {
            let blob = match store.bundle(&id)? {
                Some(record) => record.file,
                None => id,
            };
            store.get_bytes(&blob).map_err(|e| match e {
                p2pc_store::Error::NotFound(_) => {
                    Error::NotFound(format!("no bundle or blob {id} on this node"))
                }
                other => other.into(),
            })
        })
        .await
    }

    /// Packs a stored wasm component into a bundle signed with a key of
    /// the node's keystore, and keeps it.
    pub async fn pack_bundle(&self, pack: Pack) -> Result<BundleRecord> {
        if pack.name.is_empty() || pack.version.is_empty() {
            return Err(Error::Control("a bundle needs a name and a version".into()));
        }
        p2pc_types::check_args(&pack.args).map_err(|e| Error::Control(format!("args: {e}")))?;
        let store = self.services.store.clone();
        let keys = self.data_dir().join("keys");
        let component = pack.component;
        let bytes = crate::blocking(move || match store.get_bytes(&component) {
            Err(p2pc_store::Error::NotFound(_)) => Err(Error::NotFound(format!(
                "no blob {component} on this node: upload the component first"
            ))),
            other => other.map_err(Error::from),
        })
        .await?;
        let world = detect_world(&bytes).await?.to_string();
        let (name, passphrase) = (pack.key.clone(), pack.passphrase.clone());
        let secret = crate::blocking(move || unlock(&keys, &name, passphrase.as_deref())).await?;
        let created = p2pc_crypto::now_unix();
        let manifest = Manifest {
            name: pack.name,
            version: pack.version,
            world,
            args: pack.args,
            limits: Some(pack.limits),
            capabilities: pack.capabilities,
            publisher: secret.public().to_bytes().to_vec(),
            created_unix: created,
            ..Manifest::default()
        };
        let mut file = BundleFile::pack(manifest, bytes);
        file.sign(&secret)
            .map_err(|e| Error::Control(format!("cannot sign: {e}")))?;
        self.add_bundle(file.to_bytes()).await
    }

    /// Submits a job.
    pub async fn submit(&self, submission: Submission) -> Result<String> {
        self.services.network.submit(submission).await
    }

    /// A job's record.
    pub async fn job(&self, id: &str) -> Result<JobInfo> {
        self.services.network.job(id).await
    }

    /// The jobs kept, newest first, at most `limit`.
    pub async fn jobs(&self, limit: usize) -> Result<Vec<JobInfo>> {
        self.services.network.jobs(limit).await
    }

    /// Waits until a job ends or `timeout` passes; its record then.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<JobInfo> {
        self.services.network.wait(id, timeout).await
    }

    /// A job's logs and receipts.
    pub async fn logs(&self, id: &str) -> Result<JobLogs> {
        self.services.network.logs(id).await
    }

    /// A finished job's output.
    pub async fn output(&self, id: &str) -> Result<bytes::Bytes> {
        self.services.network.output(id).await
    }

    /// Cancels a running job.
    pub fn cancel(&self, id: &str) -> Result<()> {
        self.services.network.cancel(id)
    }

    /// A ledger query or transfer.
    pub async fn ledger(&self, request: LedgerRequest) -> Result<LedgerAnswer> {
        self.services.replica()?.command(request).await
    }

    fn issuer(&self) -> Result<&crate::issuer::Issuer> {
        self.services.issuer.as_ref().ok_or_else(|| {
            Error::NotFound(
                "this node runs no issuer service ([issuer] key is not set in node.toml)".into(),
            )
        })
    }

    fn own_payouts(&self) -> Result<&crate::payout::Payouts> {
        self.services.payouts.as_ref().ok_or_else(|| {
            Error::Control("this node has no ledger ([ledger] genesis): nothing to pay out".into())
        })
    }

    /// Verifies and acts on one webhook from payment provider `provider`
    /// (the issuer service): `signature` is its signature header, `body`
    /// the raw bytes as received.
    pub async fn issuer_webhook(
        &self,
        provider: &str,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<crate::api::WebhookReceipt> {
        let now = crate::messages::now_unix_ms() / 1000;
        self.issuer()?.webhook(provider, signature, body, now).await
    }

    /// The issuer service's summary.
    pub async fn issuer_status(&self) -> Result<crate::api::IssuerStatus> {
        self.issuer()?.status().await
    }

    /// The payments the issuer has recorded.
    pub async fn issuer_payments(&self) -> Result<Vec<crate::api::PaymentView>> {
        self.issuer()?.payments().await
    }

    /// The payouts the issuer has recorded.
    pub async fn issuer_payouts(&self) -> Result<Vec<crate::api::PayoutView>> {
        self.issuer()?.payouts().await
    }

    /// The issuer's operator says payout `id` was sent or failed (a failed
    /// one's credits go back to the operator who asked).
    pub async fn issuer_update_payout(
        &self,
        id: &str,
        update: crate::api::PayoutUpdate,
    ) -> Result<crate::api::PayoutView> {
        self.issuer()?.update(id, update).await
    }

    /// Asks the network's issuer to pay out some of this node's credits.
    pub async fn request_payout(
        &self,
        body: crate::api::PayoutRequestBody,
    ) -> Result<crate::api::PayoutView> {
        self.own_payouts()?.request(body).await
    }

    /// This node's payout requests, refreshed from the issuer.
    pub async fn payouts(&self) -> Result<Vec<crate::api::PayoutView>> {
        self.own_payouts()?.list().await
    }

    /// The fresh offers held, cheapest first.
    pub fn offers(&self) -> Vec<OfferView> {
        self.services.offers()
    }

    /// This node's price as a worker.
    pub fn price(&self) -> PriceView {
        self.services.price()
    }

    /// Reputation records: `peer`'s, or all, best first.
    pub fn reputation(&self, peer: Option<&PeerId>) -> Vec<ReputationView> {
        self.services.reputation(peer)
    }
}

/// What the store records of a verified bundle (`file` is filled in when
/// it is stored).
pub fn bundle_record(v: &p2pc_crypto::VerifiedBundle) -> BundleRecord {
    BundleRecord {
        id: Cid(v.id),
        name: v.manifest.name.clone(),
        version: v.manifest.version.clone(),
        world: if v.manifest.world.is_empty() {
            v.manifest.executor().to_owned()
        } else {
            v.manifest.world.clone()
        },
        publisher: v.publisher.to_string(),
        component: Cid::of(&v.component),
        file: Cid([0; 32]),
    }
}

fn unlock(dir: &Path, name: &str, passphrase: Option<&str>) -> Result<p2pc_crypto::SecretKey> {
    let ks = Keystore::open(dir).map_err(|e| Error::Io(format!("keystore: {e}")))?;
    let encrypted = ks
        .is_encrypted(name)
        .map_err(|e| Error::NotFound(format!("key {name:?}: {e}")))?;
    if encrypted && passphrase.is_none() {
        return Err(Error::Control(format!(
            "key {name:?} is encrypted: give its passphrase"
        )));
    }
    ks.unlock(name, passphrase)
        .map_err(|e| Error::Control(format!("cannot unlock key {name:?}: {e}")))
}

/// Loads the component in a throwaway sandbox to learn (and check) its
/// world, so no bundle names a world its component does not have.
pub async fn detect_world(component: &[u8]) -> Result<p2pc_sandbox::World> {
    let exec = p2pc_sandbox::WasmExecutor::new(p2pc_sandbox::Config {
        max_concurrent: 1,
        ..p2pc_sandbox::Config::default()
    })
    .map_err(|e| Error::Executor(e.to_string()))?;
    exec.load(component)
        .await
        .map(|p| p.world())
        .map_err(|e| Error::Control(format!("cannot bundle this component: {e}")))
}

/// Writes a fresh token to `<dir>/api.token` unless one is there.
pub fn ensure_token(dir: &Path) -> Result<()> {
    let path = dir.join(TOKEN_FILE);
    if path.exists() {
        return Ok(());
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| Error::Io(format!("no randomness: {e}")))?;
    write_private(&path, hex::encode(raw).as_bytes())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::Io(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::Io(format!("cannot write {}: {e}", path.display())))
}

/// The API token of the node whose data directory is `dir`.
pub fn read_token(dir: &Path) -> Result<String> {
    let path = dir.join(TOKEN_FILE);
    let token = std::fs::read_to_string(&path).map_err(|e| {
        Error::Io(format!(
            "cannot read the API token {}: {e} (run `p2pctl node init` first)",
            path.display()
        ))
    })?;
    Ok(token.trim().to_owned())
}
