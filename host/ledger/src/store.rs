//! [`Ledger`]: a [`CreditManager`] kept on disk in fjall.
//!
//! Keyspaces: `ops` (op id → op bytes), `accounts` (key → derived row),
//! `escrows` (hold id → derived row), `meta` (`network` → genesis id),
//! `records` (what a service recorded with the ops it caused).
//! Every insert writes its ops and the rows they changed in one batch,
//! synced to disk (`PersistMode::SyncAll`) before the insert returns: an
//! acknowledged op survives a crash, and a crash leaves either the whole
//! batch or none of it. [`Ledger::insert_buffered`] writes the batch
//! without the sync, for ops a node may lose in a crash and learn again
//! (its peers' ops, or its own before one shared [`Persister::sync`]
//! makes many durable at once). On open the state is rebuilt from the ops alone;
//! [`Ledger::verify`] checks that rebuild against the rows on disk, the
//! live state and the invariants.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use p2pc_crypto::PublicKey;

use crate::op::{Op, OpId};
use crate::state::{CreditManager, Escrow, Genesis, Insert, Reject};

/// What went wrong with the ledger's database.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database could not be opened (often: a running node holds it).
    #[error("cannot open the ledger at {path}: {source} (is a node using it?)")]
    Open {
        /// Its directory.
        path: PathBuf,
        /// What fjall said.
        source: fjall::Error,
    },
    /// The database belongs to another network.
    #[error(
        "the ledger at {path} belongs to network {stored}, but the genesis file names network {genesis}"
    )]
    OtherNetwork {
        /// Its directory.
        path: PathBuf,
        /// The network id on disk.
        stored: String,
        /// The genesis file's network id.
        genesis: String,
    },
    /// Stored bytes are damaged.
    #[error("the ledger at {path} is damaged: {what}")]
    Corrupt {
        /// Its directory.
        path: PathBuf,
        /// What is damaged.
        what: String,
    },
    /// A write failed earlier; nothing more is written until reopened.
    #[error("an earlier write to the ledger failed; restart to recover from disk")]
    Poisoned,
    /// fjall reported an error.
    #[error("ledger database: {0}")]
    Db(#[from] fjall::Error),
}

/// What [`Ledger::verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Ops on disk.
    pub ops: usize,
    /// Of those, applied.
    pub applied: usize,
    /// Accounts with a chain.
    pub accounts: usize,
    /// Escrows, and of those still open.
    pub escrows: (usize, usize),
    /// Credits ever minted (genesis allocations included).
    pub minted: u128,
    /// Equivocation proofs.
    pub proofs: usize,
    /// Every broken invariant; empty when all hold.
    pub problems: Vec<String>,
}

/// A ledger replica on disk.
pub struct Ledger {
    path: PathBuf,
    db: Database,
    ops: Keyspace,
    accounts: Keyspace,
    escrows: Keyspace,
    /// What services record with the ops they cause, so the two are
    /// written together or not at all (the issuer's webhook event ids
    /// with their mints). Not derived from the ops: never rewritten.
    records: Keyspace,
    state: CreditManager,
    poisoned: bool,
}

const ACK: PersistMode = PersistMode::SyncAll;

/// A key and value a service records with the ops it causes
/// ([`Ledger::insert_recorded`]).
pub type Record = (Vec<u8>, Vec<u8>);

/// Syncs a [`Ledger`]'s writes to disk ([`Ledger::persister`]).
#[derive(Clone)]
pub struct Persister(Database);

impl Persister {
    /// Makes everything written so far durable.
    pub fn sync(&self) -> Result<(), LedgerError> {
        self.0.persist(ACK).map_err(Into::into)
    }
}

impl Ledger {
    /// Opens (or creates) the ledger in `dir` for the network `genesis`
    /// founds, and rebuilds its state from the ops on disk.
    pub fn open(dir: impl AsRef<Path>, genesis: Genesis) -> Result<Self, LedgerError> {
        let path = dir.as_ref().to_owned();
        let open_err = |source| LedgerError::Open {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&path).map_err(|e| open_err(e.into()))?;
        let db = Database::builder(&path).open().map_err(open_err)?;
        let ks = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default);
        let (ops, accounts, escrows, meta, records) = (
            ks("ops")?,
            ks("accounts")?,
            ks("escrows")?,
            ks("meta")?,
            ks("records")?,
        );
        let network = genesis.id();
        match meta.get(b"network")? {
            Some(stored) if stored.as_ref() != network => {
                return Err(LedgerError::OtherNetwork {
                    path,
                    stored: hex::encode(stored),
                    genesis: hex::encode(network),
                });
            }
            Some(_) => {}
            None => {
                let mut batch = db.batch().durability(Some(ACK));
                batch.insert(&meta, b"network", network);
                batch.commit()?;
            }
        }
        let state = Self::rebuild(&path, &ops, genesis)?;
        Ok(Self {
            path,
            db,
            ops,
            accounts,
            escrows,
            records,
            state,
            poisoned: false,
        })
    }

    fn rebuild(
        path: &Path,
        ops: &Keyspace,
        genesis: Genesis,
    ) -> Result<CreditManager, LedgerError> {
        let mut state = CreditManager::new(genesis);
        for item in ops.iter() {
            let (key, value) = item.into_inner()?;
            let op = Op::from_bytes(&value).map_err(|e| LedgerError::Corrupt {
                path: path.to_owned(),
                what: format!("op {}: {e}", hex::encode(&key)),
            })?;
            if op.id().as_slice() != key.as_ref() {
                return Err(LedgerError::Corrupt {
                    path: path.to_owned(),
                    what: format!("op {} is stored under the wrong id", hex::encode(&key)),
                });
            }
            if let Insert::Rejected(r @ (Reject::BadSignature | Reject::WrongNetwork)) =
                state.insert(op)
            {
                return Err(LedgerError::Corrupt {
                    path: path.to_owned(),
                    what: format!("op {}: {r}", hex::encode(&key)),
                });
            }
        }
        // Rows on disk are rewritten from this state by the next insert.
        state.take_dirty();
        Ok(state)
    }

    /// The replica's state.
    pub fn state(&self) -> &CreditManager {
        &self.state
    }

    /// The directory it lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Inserts one op; see [`insert_many`](Self::insert_many).
    pub fn insert(&mut self, op: Op) -> Result<Insert, LedgerError> {
        Ok(self
            .insert_many(vec![op])?
            .pop()
            .expect("one result per op"))
    }

    /// Inserts ops and, before returning, writes every op kept (applied,
    /// waiting, refused on its merits, or equivocating; not duplicates,
    /// forgeries or another network's ops) and the rows they changed in
    /// one synced batch.
    pub fn insert_many(&mut self, ops: Vec<Op>) -> Result<Vec<Insert>, LedgerError> {
        self.insert_with(ops, Some(ACK), true)
    }

    /// Inserts one op that [`CreditManager::check`] just passed on this
    /// ledger's state, unchanged, without checking its signatures again,
    /// written as [`insert_buffered`](Self::insert_buffered) writes.
    pub fn insert_checked(&mut self, op: Op) -> Result<Insert, LedgerError> {
        Ok(self
            .insert_with(vec![op], None, false)?
            .pop()
            .expect("one result per op"))
    }

    /// [`insert_many`](Self::insert_many) without the sync: the batch is
    /// whole or absent after a crash, but may be absent. A later synced
    /// insert or [`Persister::sync`] makes it durable too (the journal is
    /// written in order).
    pub fn insert_buffered(&mut self, ops: Vec<Op>) -> Result<Vec<Insert>, LedgerError> {
        self.insert_with(ops, None, true)
    }

    /// Inserts `ops` as [`insert_many`](Self::insert_many) does, and
    /// writes `records` (key, value) in the same synced batch: after a
    /// crash either the ops and the records are on disk, or neither is.
    /// The records are written whatever became of the ops (a duplicate
    /// included), so a caller can record that it acted on something once.
    pub fn insert_recorded(
        &mut self,
        ops: Vec<Op>,
        records: &[Record],
    ) -> Result<Vec<Insert>, LedgerError> {
        self.insert_inner(ops, Some(ACK), true, records)
    }

    /// [`insert_recorded`](Self::insert_recorded) for ops that
    /// [`CreditManager::check`] just passed on this ledger's state (their
    /// signatures are not checked again), without the sync: the
    /// ops and the records are one batch, whole or absent after a crash,
    /// but possibly absent until a later synced insert or
    /// [`Persister::sync`] (the journal is written in order). A caller
    /// acknowledges nothing before that sync; many such writes can then
    /// share one sync (group commit).
    pub fn insert_recorded_buffered(
        &mut self,
        ops: Vec<Op>,
        records: &[Record],
    ) -> Result<Vec<Insert>, LedgerError> {
        self.insert_inner(ops, None, false, records)
    }

    /// A value [`insert_recorded`](Self::insert_recorded) wrote under `key`.
    pub fn record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.records.get(key)?.map(|v| v.to_vec()))
    }

    /// Every record whose key starts with `prefix`, in key order.
    pub fn records(&self, prefix: &[u8]) -> Result<Vec<Record>, LedgerError> {
        let mut out = Vec::new();
        for item in self.records.prefix(prefix) {
            let (k, v) = item.into_inner()?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// A handle that syncs what was written, usable without the ledger
    /// borrowed (so a sync need not hold a lock around the ledger).
    pub fn persister(&self) -> Persister {
        Persister(self.db.clone())
    }

    fn insert_with(
        &mut self,
        ops: Vec<Op>,
        durability: Option<PersistMode>,
        admit: bool,
    ) -> Result<Vec<Insert>, LedgerError> {
        self.insert_inner(ops, durability, admit, &[])
    }

    fn insert_inner(
        &mut self,
        ops: Vec<Op>,
        durability: Option<PersistMode>,
        admit: bool,
        records: &[Record],
    ) -> Result<Vec<Insert>, LedgerError> {
        if self.poisoned {
            return Err(LedgerError::Poisoned);
        }
        let mut batch = self.db.batch().durability(durability);
        for (k, v) in records {
            batch.insert(&self.records, k.as_slice(), v.as_slice());
        }
        let mut results = Vec::with_capacity(ops.len());
        let mut kept = 0;
        for op in ops {
            let bytes = op.to_bytes();
            let id = op.id();
            let r = if admit {
                self.state.insert(op)
            } else {
                self.state.insert_checked(op)
            };
            if !matches!(
                r,
                Insert::Duplicate | Insert::Rejected(Reject::BadSignature | Reject::WrongNetwork)
            ) {
                batch.insert(&self.ops, id, bytes);
                kept += 1;
            }
            results.push(r);
        }
        if kept == 0 && records.is_empty() {
            return Ok(results);
        }
        let dirty = self.state.take_dirty();
        if dirty.all {
            for item in self.accounts.iter() {
                batch.remove(&self.accounts, item.key()?);
            }
            for item in self.escrows.iter() {
                batch.remove(&self.escrows, item.key()?);
            }
            for (k, row) in self.state.accounts() {
                batch.insert(&self.accounts, k.to_bytes(), account_row(row));
            }
            for (id, e) in self.state.escrows() {
                batch.insert(&self.escrows, *id, escrow_row(e));
            }
        } else {
            for k in &dirty.accounts {
                if let Some(row) = self.state.account(k) {
                    batch.insert(&self.accounts, k.to_bytes(), account_row(row));
                }
            }
            for id in &dirty.escrows {
                if let Some(e) = self.state.escrow(id) {
                    batch.insert(&self.escrows, *id, escrow_row(e));
                }
            }
        }
        if let Err(e) = batch.commit() {
            // Memory now holds ops the disk may not: stop writing.
            self.poisoned = true;
            return Err(e.into());
        }
        Ok(results)
    }

    /// Rebuilds the state from the ops on disk and checks it: the
    /// invariants hold, it equals the live state, and the rows on disk
    /// are exactly its rows.
    pub fn verify(&self) -> Result<Report, LedgerError> {
        let rebuilt = Self::rebuild(&self.path, &self.ops, self.state.genesis().clone())?;
        let mut problems = Vec::new();
        if let Err(e) = rebuilt.verify() {
            problems.push(e);
        }
        if rebuilt.digest() != self.state.digest() {
            problems.push("the state rebuilt from disk differs from the live state".into());
        }
        let mut want: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for (k, row) in rebuilt.accounts() {
            want.insert(k.to_bytes().to_vec(), account_row(row));
        }
        let mut have: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for item in self.accounts.iter() {
            let (k, v) = item.into_inner()?;
            have.insert(k.to_vec(), v.to_vec());
        }
        diff_rows("account", &want, &have, &mut problems);
        want.clear();
        have.clear();
        for (id, e) in rebuilt.escrows() {
            want.insert(id.to_vec(), escrow_row(e));
        }
        for item in self.escrows.iter() {
            let (k, v) = item.into_inner()?;
            have.insert(k.to_vec(), v.to_vec());
        }
        diff_rows("escrow", &want, &have, &mut problems);
        let ops = rebuilt.ops();
        Ok(Report {
            ops: ops.len(),
            applied: ops.iter().filter(|o| rebuilt.is_applied(&o.id())).count(),
            accounts: rebuilt.accounts().count(),
            escrows: (
                rebuilt.escrows().count(),
                rebuilt
                    .escrows()
                    .filter(|(_, e)| e.finalised.is_none())
                    .count(),
            ),
            minted: rebuilt.minted(),
            proofs: rebuilt.proofs().len(),
            problems,
        })
    }
}

/// What the derived rows on disk add up to, against the live state:
/// [`Ledger::audit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audit {
    /// The live state's supply.
    pub memory: crate::state::Supply,
    /// The same sums with the spendable balances read from the account
    /// rows on disk.
    pub disk: crate::state::Supply,
    /// Account and escrow rows on disk that differ from the live state,
    /// are missing, or have no account or escrow behind them.
    pub rows_differing: usize,
    /// The first few of them, for people.
    pub examples: Vec<String>,
}

impl Ledger {
    /// Reads the derived rows on disk and adds them up against the live
    /// state, without rebuilding anything from the ops (so it is cheap
    /// enough to run every few seconds): a replica whose rows were edited
    /// or damaged on disk no longer balances.
    pub fn audit(&self) -> Result<Audit, LedgerError> {
        let memory = self.state.supply();
        let mut disk = memory;
        disk.spendable = 0;
        let mut rows_differing = 0;
        let mut examples = Vec::new();
        let mut note = |what: String| {
            rows_differing += 1;
            if examples.len() < 5 {
                examples.push(what);
            }
        };
        let mut seen = 0usize;
        for item in self.accounts.iter() {
            let (k, v) = item.into_inner()?;
            seen += 1;
            // seq (8), head (32), balance (8).
            match <[u8; 8]>::try_from(v.get(40..48).unwrap_or_default()) {
                Ok(b) if v.len() == 48 => disk.spendable += u128::from(u64::from_be_bytes(b)),
                _ => note(format!("account row {} is malformed", hex::encode(&k))),
            }
            let live = PublicKey::from_bytes(&k)
                .ok()
                .and_then(|key| self.state.account(&key));
            match live {
                Some(row) if account_row(row) == v.as_ref() => {}
                Some(_) => note(format!(
                    "account row {} differs from memory",
                    hex::encode(&k)
                )),
                None => note(format!("account row {} has no account", hex::encode(&k))),
            }
        }
        let accounts = self.state.accounts().count();
        if seen < accounts {
            note(format!("{} account rows are missing", accounts - seen));
        }
        seen = 0;
        for item in self.escrows.iter() {
            let (k, v) = item.into_inner()?;
            seen += 1;
            let live = OpId::try_from(k.as_ref())
                .ok()
                .and_then(|id| self.state.escrow(&id));
            match live {
                Some(e) if escrow_row(e) == v.as_ref() => {}
                Some(_) => note(format!(
                    "escrow row {} differs from memory",
                    hex::encode(&k)
                )),
                None => note(format!("escrow row {} has no escrow", hex::encode(&k))),
            }
        }
        let escrows = self.state.escrows().count();
        if seen < escrows {
            note(format!("{} escrow rows are missing", escrows - seen));
        }
        Ok(Audit {
            memory,
            disk,
            rows_differing,
            examples,
        })
    }
}

fn diff_rows(
    what: &str,
    want: &BTreeMap<Vec<u8>, Vec<u8>>,
    have: &BTreeMap<Vec<u8>, Vec<u8>>,
    problems: &mut Vec<String>,
) {
    for (k, v) in want {
        match have.get(k) {
            Some(h) if h == v => {}
            Some(_) => problems.push(format!(
                "{what} row {} differs from the ops",
                hex::encode(k)
            )),
            None => problems.push(format!("{what} row {} is missing", hex::encode(k))),
        }
    }
    for k in have.keys().filter(|k| !want.contains_key(*k)) {
        problems.push(format!(
            "{what} row {} has no ops behind it",
            hex::encode(k)
        ));
    }
}

fn account_row(row: crate::state::AccountRow) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    out.extend_from_slice(&row.seq.to_be_bytes());
    out.extend_from_slice(&row.head);
    out.extend_from_slice(&row.balance.to_be_bytes());
    out
}

fn escrow_row(e: &Escrow) -> Vec<u8> {
    fn key(out: &mut Vec<u8>, k: &PublicKey) {
        out.extend_from_slice(&k.to_bytes());
    }
    fn step(out: &mut Vec<u8>, id: Option<&OpId>) {
        match id {
            Some(id) => {
                out.push(1);
                out.extend_from_slice(id);
            }
            None => out.push(0),
        }
    }
    let mut out = Vec::with_capacity(256);
    key(&mut out, &e.owner);
    key(&mut out, &e.worker);
    key(&mut out, &e.arbiter);
    for n in [e.price, e.fuel_limit, e.window_ms, e.amount, e.collateral] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    step(&mut out, e.bond.as_ref());
    step(&mut out, e.settled.as_ref().map(|(id, _, _)| id));
    if let Some((_, o, t)) = e.settled {
        o.encode(&mut out);
        out.extend_from_slice(&t.to_be_bytes());
    }
    step(&mut out, e.finalised.as_ref().map(|(id, _)| id));
    if let Some((_, o)) = e.finalised {
        o.encode(&mut out);
    }
    out
}
