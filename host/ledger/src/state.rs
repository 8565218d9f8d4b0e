//! [`CreditManager`]: the replicated state, derived from the set of ops.
//!
//! The state is a function of the set of valid signed ops a replica holds,
//! never of the order they arrived in: an op is applied only once
//! everything it relies on (its chain predecessor, the credits it claims,
//! its escrow and earlier escrow steps) is applied, and its validity looks
//! only at those. Conflicts (two ops at one chain position, two decisions
//! for one escrow step) are equivocations: the state is then recomputed
//! from the whole set under rules that do not depend on arrival order.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use p2pc_crypto::{PublicKey, SecretKey};

use crate::op::{
    Body, Decision, FUEL_PER_PRICE_UNIT, GENESIS_PREV, Op, OpId, Outcome, TaskHold, cost,
    decision_bytes,
};

/// The network's founding facts. Every replica of one network holds the
/// same genesis; its [`id`](Genesis::id) is signed into every op.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Genesis {
    /// A name for people; part of the id, so two networks with the same
    /// keys still differ.
    pub network: String,
    /// Keys allowed to mint.
    pub issuers: BTreeSet<PublicKey>,
    /// Credits that exist from the start. An account spends its allocation
    /// by naming the genesis id as a dep.
    pub allocations: BTreeMap<PublicKey, u64>,
    /// The shortest challenge window a hold may carry, in milliseconds.
    pub min_window_ms: u64,
    /// Who may arbitrate escrows.
    pub arbiters: ArbiterPolicy,
}

/// Which keys a hold may name as its arbiter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ArbiterPolicy {
    /// Any key other than the owner and the worker.
    #[default]
    Any,
    /// Only these keys.
    Listed(BTreeSet<PublicKey>),
}

impl Genesis {
    /// The network id: BLAKE3 of every field, in a fixed order.
    pub fn id(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(b"p2pc genesis v1\0");
        h.update(&(self.network.len() as u64).to_be_bytes());
        h.update(self.network.as_bytes());
        h.update(&(self.issuers.len() as u64).to_be_bytes());
        for k in &self.issuers {
            h.update(&k.to_bytes());
        }
        h.update(&(self.allocations.len() as u64).to_be_bytes());
        for (k, a) in &self.allocations {
            h.update(&k.to_bytes());
            h.update(&a.to_be_bytes());
        }
        h.update(&self.min_window_ms.to_be_bytes());
        match &self.arbiters {
            ArbiterPolicy::Any => {
                h.update(&[0]);
            }
            ArbiterPolicy::Listed(keys) => {
                h.update(&[1]);
                h.update(&(keys.len() as u64).to_be_bytes());
                for k in keys {
                    h.update(&k.to_bytes());
                }
            }
        }
        *h.finalize().as_bytes()
    }
}

/// What [`CreditManager::insert`] did with an op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Insert {
    /// Applied, with this many ops in all (it and those it unblocked).
    Applied(usize),
    /// Held back until what it relies on arrives.
    Waiting,
    /// Already held.
    Duplicate,
    /// Refused for good.
    Rejected(Reject),
    /// It revealed an equivocation; the state was recomputed.
    Equivocation,
}

/// Why an op was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Reject {
    /// Signed for another network.
    #[error("signed for another network")]
    WrongNetwork,
    /// The author's signature, or a decision's co-signature, fails.
    #[error("bad signature")]
    BadSignature,
    /// A mint by a key the genesis does not name.
    #[error("minted by a key that is not an issuer")]
    NotIssuer,
    /// The chain position or predecessor is wrong.
    #[error("wrong sequence number or predecessor")]
    BadChain,
    /// An amount is zero or overflows.
    #[error("bad amount")]
    BadAmount,
    /// Spends more than the credits in its causal past.
    #[error("insufficient credits: has {has}, needs {needs}")]
    Insufficient {
        /// Spendable credits.
        has: u64,
        /// Credits the op spends.
        needs: u64,
    },
    /// Claims a credit that is not to its author, or claims one twice.
    #[error("claims a credit that is not its author's or was claimed before")]
    BadDep,
    /// Breaks the escrow rules.
    #[error("escrow: {0}")]
    Escrow(&'static str),
    /// Written or signed by an account frozen for equivocating.
    #[error("the account is frozen for equivocation")]
    Frozen,
    /// Relies on an op that was refused.
    #[error("relies on a refused op")]
    BadParent,
}

/// Two signed statements that cannot both be honest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Proof {
    /// Two ops by one account at one sequence number.
    Chain {
        /// The account.
        account: PublicKey,
        /// The sequence number.
        seq: u64,
        /// The two ops.
        ops: (OpId, OpId),
    },
    /// Two decisions for one escrow step, both signed by `signer`.
    Decision {
        /// The key that signed both.
        signer: PublicKey,
        /// The two decisions.
        ops: (OpId, OpId),
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Account {
    seq: u64,
    head: OpId,
    balance: u64,
    claimed: BTreeSet<OpId>,
}

impl Account {
    fn row(&self) -> AccountRow {
        AccountRow {
            seq: self.seq,
            head: self.head,
            balance: self.balance,
        }
    }
}

/// An escrow's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Escrow {
    /// Whose credits are held.
    pub owner: PublicKey,
    /// Who runs the task.
    pub worker: PublicKey,
    /// Who arbitrates.
    pub arbiter: PublicKey,
    /// Credits per `unit` of fuel.
    pub price: u64,
    /// Fuel one unit of the price pays for: 1 for a v1 hold,
    /// [`FUEL_PER_PRICE_UNIT`] for a task hold.
    pub unit: u64,
    /// Most fuel paid for.
    pub fuel_limit: u64,
    /// The task a task hold pays for (BLAKE3 of its signed envelope).
    pub task: Option<[u8; 32]>,
    /// A task hold's deadline: from then owner and arbiter may refund it
    /// unsettled.
    pub deadline_ms: Option<u64>,
    /// Challenge window in milliseconds.
    pub window_ms: u64,
    /// Credits held.
    pub amount: u64,
    /// Collateral the worker is asked to lock.
    pub collateral: u64,
    /// The worker's bond op, once applied.
    pub bond: Option<OpId>,
    /// The settlement (step 1): its op, outcome and claimed time.
    pub settled: Option<(OpId, Outcome, u64)>,
    /// The final outcome (step 2).
    pub finalised: Option<(OpId, Outcome)>,
}

impl Escrow {
    /// What the worker is paid for `fuel_used`: the price times the fuel,
    /// rounded up, never more than is held.
    pub fn cost(&self, fuel_used: u64) -> u64 {
        cost(self.price, fuel_used, self.unit).map_or(self.amount, |c| c.min(self.amount))
    }

    /// The credits it releases once final: (to the worker, to the owner).
    pub fn split(&self, outcome: Outcome) -> (u64, u64) {
        let paid = match outcome {
            Outcome::Pay { fuel_used } => self.cost(fuel_used),
            _ => 0,
        };
        (paid, self.amount - paid)
    }
}

/// The ledger replica.
#[derive(Clone, Debug)]
pub struct CreditManager {
    genesis: Genesis,
    network: [u8; 32],
    ops: HashMap<OpId, Op>,
    slots: HashMap<(PublicKey, u64), OpId>,
    /// Every op held, by author and sequence number (two at one position
    /// if the author equivocated).
    chains: BTreeMap<(PublicKey, u64), Vec<OpId>>,
    decisions: HashMap<(OpId, u8), BTreeSet<OpId>>,
    proofs: Vec<Proof>,
    /// Account → lowest equivocated sequence number.
    frozen_from: BTreeMap<PublicKey, u64>,
    /// Keys that signed conflicting decisions.
    bad_signers: BTreeSet<PublicKey>,
    applied: HashSet<OpId>,
    rejected: HashMap<OpId, Reject>,
    /// Ops waiting, keyed by what they wait for.
    blocked: HashMap<OpId, Vec<OpId>>,
    accounts: BTreeMap<PublicKey, Account>,
    escrows: BTreeMap<OpId, Escrow>,
    /// Credits each applied op created: (receiver, amount).
    credits: HashMap<OpId, Vec<(PublicKey, u64)>>,
    /// For each receiver, the ops in `credits` paying it that it has not
    /// claimed: what [`incoming`](CreditManager::incoming) reads, so a
    /// draft costs what is owed to its author, not the whole history.
    unclaimed: HashMap<PublicKey, BTreeSet<OpId>>,
    minted: u128,
    /// What changed since [`take_dirty`](CreditManager::take_dirty).
    dirty: Dirty,
}

/// Derived rows changed since the last [`CreditManager::take_dirty`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dirty {
    /// Everything was recomputed: every row may have changed or vanished.
    pub all: bool,
    /// Accounts whose row changed.
    pub accounts: BTreeSet<PublicKey>,
    /// Escrows whose row changed.
    pub escrows: BTreeSet<OpId>,
}

/// Where a replica's credits are: spendable balances, credits sent but
/// not yet claimed by their receivers, and credits held in open escrows
/// (with their bonds). They add up to the credits minted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Supply {
    /// Spendable balances.
    pub spendable: u128,
    /// Sent, not yet claimed.
    pub unclaimed: u128,
    /// Locked in open escrows and their bonds.
    pub held: u128,
    /// Minted.
    pub minted: u128,
}

impl Supply {
    /// Whether the parts add up to the credits minted.
    pub fn balanced(&self) -> bool {
        self.spendable + self.unclaimed + self.held == self.minted
    }
}

/// An account's derived row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountRow {
    /// Sequence number of its last applied op.
    pub seq: u64,
    /// Id of that op.
    pub head: OpId,
    /// Spendable credits.
    pub balance: u64,
}

/// The effects of an op that can apply.
struct Plan {
    balance: u64,
    created: Vec<(PublicKey, u64)>,
    escrow_update: Option<(OpId, Escrow)>,
    bond_release: Option<(OpId, PublicKey, u64)>,
    minted: u64,
}

enum Try {
    Applied,
    Blocked(OpId),
    Rejected(Reject),
}

/// Key under which step-2 decisions wait for their escrow's step 1.
fn step_key(escrow: &OpId) -> OpId {
    *blake3::hash(&[&escrow[..], b"settled"].concat()).as_bytes()
}

/// Key under which claims on a bond wait for its escrow to be final.
fn final_key(escrow: &OpId) -> OpId {
    *blake3::hash(&[&escrow[..], b"final"].concat()).as_bytes()
}

/// Who a bond's collateral goes to once its escrow is final: back to the
/// worker if it was paid, to the owner if everything was refunded.
fn bond_receiver(escrow: &Escrow, outcome: Outcome) -> PublicKey {
    match outcome {
        Outcome::Refund => escrow.owner,
        _ => escrow.worker,
    }
}

impl CreditManager {
    /// An empty replica of the network founded by `genesis`.
    pub fn new(genesis: Genesis) -> Self {
        let mut this = Self {
            network: genesis.id(),
            genesis,
            ops: HashMap::new(),
            slots: HashMap::new(),
            chains: BTreeMap::new(),
            decisions: HashMap::new(),
            proofs: Vec::new(),
            frozen_from: BTreeMap::new(),
            bad_signers: BTreeSet::new(),
            applied: HashSet::new(),
            rejected: HashMap::new(),
            blocked: HashMap::new(),
            accounts: BTreeMap::new(),
            escrows: BTreeMap::new(),
            credits: HashMap::new(),
            unclaimed: HashMap::new(),
            minted: 0,
            dirty: Dirty::default(),
        };
        this.install_genesis();
        this
    }

    /// The genesis allocations: credits of a virtual op named by the
    /// network id, applied before anything else.
    fn install_genesis(&mut self) {
        let list: Vec<(PublicKey, u64)> = self
            .genesis
            .allocations
            .iter()
            .filter(|(_, a)| **a > 0)
            .map(|(k, a)| (*k, *a))
            .collect();
        self.minted = list.iter().map(|(_, a)| u128::from(*a)).sum();
        self.applied.insert(self.network);
        if !list.is_empty() {
            self.add_credits(self.network, list);
        }
    }

    /// The genesis this replica was founded on.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The network id ops must carry.
    pub fn network(&self) -> [u8; 32] {
        self.network
    }

    /// The checks that need nothing but the op: network and signatures.
    /// A failure here is the sender's fault, whatever else the op says.
    pub fn admit(&self, op: &Op) -> Result<(), Reject> {
        self.admit_inner(op, true)
    }

    fn admit_inner(&self, op: &Op, author: bool) -> Result<(), Reject> {
        if op.network != self.network {
            return Err(Reject::WrongNetwork);
        }
        if author && !op.signature_ok() {
            return Err(Reject::BadSignature);
        }
        if let Body::Decide(d) = &op.body
            && d.cosigner
                .verify(
                    &decision_bytes(&d.escrow, d.step, d.outcome, op.time_ms),
                    &d.cosignature,
                )
                .is_err()
        {
            return Err(Reject::BadSignature);
        }
        Ok(())
    }

    /// What [`insert`](Self::insert) would do with `op` now, changing
    /// nothing: `Applied(1)` if it would apply at once. An account must
    /// never sign two ops at one sequence number, even when the first was
    /// refused (replicas keep refused ops, so the second would be an
    /// equivocation); so a wallet checks a draft here before it signs the
    /// next one.
    pub fn check(&self, op: &Op) -> Insert {
        self.check_inner(op, true)
    }

    /// [`check`](Self::check) for an op [`draft`](Self::draft) just signed
    /// here with the author's own key: the author's signature, made a
    /// moment ago, is not verified (a verification costs more than the
    /// signing). A co-signer's signature on a decision still is.
    pub fn check_draft(&self, op: &Op) -> Insert {
        self.check_inner(op, false)
    }

    fn check_inner(&self, op: &Op, author: bool) -> Insert {
        let id = op.id();
        if self.ops.contains_key(&id) {
            return Insert::Duplicate;
        }
        if let Err(r) = self.admit_inner(op, author) {
            return Insert::Rejected(r);
        }
        if self.slots.contains_key(&(op.author, op.seq)) {
            return Insert::Equivocation;
        }
        match self.plan(id, op) {
            Ok(_) => Insert::Applied(1),
            Err(Try::Rejected(r)) => Insert::Rejected(r),
            Err(_) => Insert::Waiting,
        }
    }

    /// Takes an op from anywhere (a peer, a local user, the disk).
    pub fn insert(&mut self, op: Op) -> Insert {
        self.insert_inner(op, true)
    }

    /// [`insert`](Self::insert) for an op that [`check`](Self::check) just
    /// passed, unchanged, with nothing inserted in between: its signatures
    /// are not checked again (half the cost of a node's own ops).
    pub fn insert_checked(&mut self, op: Op) -> Insert {
        self.insert_inner(op, false)
    }

    fn insert_inner(&mut self, op: Op, admit: bool) -> Insert {
        let id = op.id();
        if self.ops.contains_key(&id) {
            return Insert::Duplicate;
        }
        if admit && let Err(r) = self.admit(&op) {
            return Insert::Rejected(r);
        }
        let conflict = self.index(id, &op);
        self.ops.insert(id, op);
        if conflict {
            self.recompute();
            return Insert::Equivocation;
        }
        let before = self.applied.len();
        self.settle(id);
        if let Some(r) = self.rejected.get(&id) {
            return Insert::Rejected(r.clone());
        }
        if self.applied.contains(&id) {
            Insert::Applied(self.applied.len() - before)
        } else {
            Insert::Waiting
        }
    }

    /// Records `op`'s chain slot and decision slot; true if it conflicts
    /// with an op already held (and records the proof).
    fn index(&mut self, id: OpId, op: &Op) -> bool {
        let mut conflict = false;
        self.chains.entry((op.author, op.seq)).or_default().push(id);
        match self.slots.get(&(op.author, op.seq)) {
            Some(other) if *other != id => {
                self.proofs.push(Proof::Chain {
                    account: op.author,
                    seq: op.seq,
                    ops: (*other.min(&id), *other.max(&id)),
                });
                let from = self.frozen_from.entry(op.author).or_insert(op.seq);
                *from = (*from).min(op.seq);
                conflict = true;
            }
            Some(_) => {}
            None => {
                self.slots.insert((op.author, op.seq), id);
            }
        }
        if let Body::Decide(d) = &op.body {
            let slot = self.decisions.entry((d.escrow, d.step)).or_default();
            let signers = [op.author, d.cosigner];
            for other in slot.iter() {
                let Some(Op {
                    author,
                    body: Body::Decide(od),
                    ..
                }) = self.ops.get(other)
                else {
                    continue;
                };
                for s in signers {
                    if s == *author || s == od.cosigner {
                        self.proofs.push(Proof::Decision {
                            signer: s,
                            ops: (*other.min(&id), *other.max(&id)),
                        });
                        self.bad_signers.insert(s);
                        conflict = true;
                    }
                }
            }
            slot.insert(id);
        }
        conflict
    }

    /// Forgets everything derived and applies every op held again, in id
    /// order; the result does not depend on the order ops arrived in.
    pub fn recompute(&mut self) {
        self.dirty.all = true;
        self.applied.clear();
        self.rejected.clear();
        self.blocked.clear();
        self.accounts.clear();
        self.escrows.clear();
        self.credits.clear();
        self.unclaimed.clear();
        self.install_genesis();
        let mut ids: Vec<OpId> = self.ops.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if !self.applied.contains(&id) && !self.rejected.contains_key(&id) {
                self.settle(id);
            }
        }
    }

    /// Tries `id`, then everything its application unblocks.
    fn settle(&mut self, id: OpId) {
        let mut work = vec![id];
        while let Some(id) = work.pop() {
            if self.applied.contains(&id) || self.rejected.contains_key(&id) {
                continue;
            }
            match self.try_apply(id) {
                Try::Applied => {
                    self.applied.insert(id);
                    if let Some(w) = self.blocked.remove(&id) {
                        work.extend(w);
                    }
                    if let Some(Body::Decide(d)) = self.ops.get(&id).map(|o| &o.body) {
                        let key = match d.step {
                            1 => step_key(&d.escrow),
                            _ => final_key(&d.escrow),
                        };
                        if let Some(w) = self.blocked.remove(&key) {
                            work.extend(w);
                        }
                    }
                }
                Try::Blocked(on) => self.blocked.entry(on).or_default().push(id),
                Try::Rejected(r) => {
                    self.rejected.insert(id, r);
                    // Whatever waited on it can never apply.
                    if let Some(w) = self.blocked.remove(&id) {
                        work.extend(w);
                    }
                }
            }
        }
    }

    fn try_apply(&mut self, id: OpId) -> Try {
        let op = self.ops[&id].clone();
        match self.plan(id, &op) {
            Ok(plan) => {
                self.commit(id, &op, plan);
                Try::Applied
            }
            Err(t) => t,
        }
    }

    /// Everything `op` would change, or why it cannot apply now. Reads
    /// only; [`commit`](Self::commit) writes.
    fn plan(&self, id: OpId, op: &Op) -> Result<Plan, Try> {
        if self
            .frozen_from
            .get(&op.author)
            .is_some_and(|s| op.seq >= *s)
        {
            return Err(Try::Rejected(Reject::Frozen));
        }
        // The chain. Borrowed: an account's claimed set grows with its
        // history, and plan runs for every op.
        let none = Account::default();
        let account = self.accounts.get(&op.author).unwrap_or(&none);
        if op.seq == 0 {
            return Err(Try::Rejected(Reject::BadChain));
        }
        if op.seq == 1 {
            if op.prev != GENESIS_PREV {
                return Err(Try::Rejected(Reject::BadChain));
            }
        } else if !self.applied.contains(&op.prev) {
            return Err(match self.rejected.get(&op.prev) {
                Some(_) => Try::Rejected(Reject::BadParent),
                None => Try::Blocked(op.prev),
            });
        } else if account.head != op.prev || account.seq + 1 != op.seq {
            return Err(Try::Rejected(Reject::BadChain));
        }
        // Credits claimed.
        let mut income: u64 = 0;
        let mut seen = BTreeSet::new();
        for dep in &op.deps {
            if !self.applied.contains(dep) {
                return Err(match self.rejected.get(dep) {
                    Some(_) => Try::Rejected(Reject::BadParent),
                    None => Try::Blocked(*dep),
                });
            }
            if !seen.insert(*dep) || account.claimed.contains(dep) {
                return Err(Try::Rejected(Reject::BadDep));
            }
            // A bond's collateral exists only once its escrow is final.
            if let Some(Op {
                body: Body::Bond { escrow },
                ..
            }) = self.ops.get(dep)
                && self
                    .escrows
                    .get(escrow)
                    .is_some_and(|e| e.finalised.is_none())
            {
                return Err(Try::Blocked(final_key(escrow)));
            }
            let to_me: u64 = self
                .credits
                .get(dep)
                .into_iter()
                .flatten()
                .filter(|(k, _)| *k == op.author)
                .map(|(_, a)| *a)
                .sum();
            if to_me == 0 {
                return Err(Try::Rejected(Reject::BadDep));
            }
            income = match income.checked_add(to_me) {
                Some(v) => v,
                None => return Err(Try::Rejected(Reject::BadAmount)),
            };
        }
        let Some(available) = account.balance.checked_add(income) else {
            return Err(Try::Rejected(Reject::BadAmount));
        };
        let mut debit = 0u64;
        let mut created: Vec<(PublicKey, u64)> = Vec::new();
        let mut escrow_update: Option<(OpId, Escrow)> = None;
        let mut bond_release: Option<(OpId, PublicKey, u64)> = None;
        let mut minted = 0u64;
        match &op.body {
            Body::Mint { to, amount } => {
                if !self.genesis.issuers.contains(&op.author) {
                    return Err(Try::Rejected(Reject::NotIssuer));
                }
                if *amount == 0 {
                    return Err(Try::Rejected(Reject::BadAmount));
                }
                created.push((*to, *amount));
                minted = *amount;
            }
            Body::Transfer { to, amount } => {
                if *amount == 0 {
                    return Err(Try::Rejected(Reject::BadAmount));
                }
                debit = *amount;
                created.push((*to, *amount));
            }
            Body::Hold {
                worker,
                arbiter,
                price,
                fuel_limit,
                window_ms,
                collateral,
            } => {
                let terms = TaskHold {
                    worker: *worker,
                    arbiter: *arbiter,
                    price: *price,
                    fuel_limit: *fuel_limit,
                    window_ms: *window_ms,
                    collateral: *collateral,
                    task: [0; 32],
                    deadline_ms: 0,
                };
                let escrow = self.open_escrow(op, &terms, 1, None)?;
                debit = escrow.amount;
                escrow_update = Some((id, escrow));
            }
            Body::TaskHold(terms) => {
                let escrow = self.open_escrow(
                    op,
                    terms,
                    FUEL_PER_PRICE_UNIT,
                    Some((terms.task, terms.deadline_ms)),
                )?;
                debit = escrow.amount;
                escrow_update = Some((id, escrow));
            }
            Body::Bond { escrow: hold } => {
                if !self.applied.contains(hold) {
                    return Err(match self.rejected.get(hold) {
                        Some(_) => Try::Rejected(Reject::BadParent),
                        None => Try::Blocked(*hold),
                    });
                }
                let Some(mut escrow) = self.escrows.get(hold).cloned() else {
                    return Err(Try::Rejected(Reject::Escrow("not an escrow")));
                };
                if escrow.worker != op.author {
                    return Err(Try::Rejected(Reject::Escrow(
                        "only the escrow's worker bonds",
                    )));
                }
                if escrow.collateral == 0 {
                    return Err(Try::Rejected(Reject::Escrow(
                        "the hold asks for no collateral",
                    )));
                }
                // Only the worker's own chain bonds, in order: deterministic.
                if escrow.bond.is_some() {
                    return Err(Try::Rejected(Reject::Escrow("already bonded")));
                }
                debit = escrow.collateral;
                escrow.bond = Some(id);
                if let Some((_, outcome)) = escrow.finalised {
                    bond_release = Some((id, bond_receiver(&escrow, outcome), escrow.collateral));
                }
                escrow_update = Some((*hold, escrow));
            }
            Body::Decide(d) => {
                if !self.applied.contains(&d.escrow) {
                    return Err(match self.rejected.get(&d.escrow) {
                        Some(_) => Try::Rejected(Reject::BadParent),
                        None => Try::Blocked(d.escrow),
                    });
                }
                let Some(mut escrow) = self.escrows.get(&d.escrow).cloned() else {
                    return Err(Try::Rejected(Reject::Escrow("not an escrow")));
                };
                let parties = [escrow.owner, escrow.worker, escrow.arbiter];
                let signers = [op.author, d.cosigner];
                if signers[0] == signers[1] || !signers.iter().all(|s| parties.contains(s)) {
                    return Err(Try::Rejected(Reject::Escrow("needs two different parties")));
                }
                // A frozen party's signature counts for nothing.
                if signers
                    .iter()
                    .any(|s| self.bad_signers.contains(s) || self.frozen_from.contains_key(s))
                {
                    return Err(Try::Rejected(Reject::Frozen));
                }
                // Of conflicting decisions, the smallest id stands.
                if self
                    .decisions
                    .get(&(d.escrow, d.step))
                    .and_then(|slot| slot.iter().next())
                    .is_some_and(|first| *first < id)
                {
                    return Err(Try::Rejected(Reject::Escrow(
                        "a conflicting decision stands",
                    )));
                }
                let has = |k: PublicKey| signers.contains(&k);
                match d.step {
                    1 => {
                        if escrow.settled.is_some() {
                            return Err(Try::Rejected(Reject::Escrow("already settled")));
                        }
                        // Without the worker, a task hold is refunded only
                        // at its deadline: the arbiter co-signs the time.
                        if d.outcome == Outcome::Refund
                            && !has(escrow.worker)
                            && escrow.deadline_ms.is_some_and(|t| op.time_ms < t)
                        {
                            return Err(Try::Rejected(Reject::Escrow(
                                "a refund without the worker waits for the hold's deadline",
                            )));
                        }
                        match d.outcome {
                            Outcome::Pay { fuel_used } if fuel_used > escrow.fuel_limit => {
                                return Err(Try::Rejected(Reject::Escrow(
                                    "pays for more fuel than held",
                                )));
                            }
                            Outcome::Confirm => {
                                return Err(Try::Rejected(Reject::Escrow("step 1 settles")));
                            }
                            _ => {}
                        }
                        escrow.settled = Some((id, d.outcome, op.time_ms));
                    }
                    2 => {
                        let Some((_, settled, at)) = escrow.settled else {
                            return Err(Try::Blocked(step_key(&d.escrow)));
                        };
                        if escrow.finalised.is_some() {
                            return Err(Try::Rejected(Reject::Escrow("already final")));
                        }
                        let window_end = at.saturating_add(escrow.window_ms);
                        let outcome = match d.outcome {
                            Outcome::Confirm => {
                                if !has(escrow.owner) && op.time_ms < window_end {
                                    return Err(Try::Rejected(Reject::Escrow(
                                        "worker and arbiter may confirm only after the window",
                                    )));
                                }
                                settled
                            }
                            dispute => {
                                if !(has(escrow.owner) && has(escrow.arbiter)) {
                                    return Err(Try::Rejected(Reject::Escrow(
                                        "a dispute is signed by owner and arbiter",
                                    )));
                                }
                                if op.time_ms >= window_end {
                                    return Err(Try::Rejected(Reject::Escrow(
                                        "the challenge window has closed",
                                    )));
                                }
                                if let Outcome::Pay { fuel_used } = dispute
                                    && fuel_used > escrow.fuel_limit
                                {
                                    return Err(Try::Rejected(Reject::Escrow(
                                        "pays for more fuel than held",
                                    )));
                                }
                                dispute
                            }
                        };
                        let (paid, rest) = escrow.split(outcome);
                        if paid > 0 {
                            created.push((escrow.worker, paid));
                        }
                        if rest > 0 {
                            created.push((escrow.owner, rest));
                        }
                        escrow.finalised = Some((id, outcome));
                        if let Some(bond) = escrow.bond {
                            bond_release =
                                Some((bond, bond_receiver(&escrow, outcome), escrow.collateral));
                        }
                    }
                    _ => return Err(Try::Rejected(Reject::Escrow("steps are 1 and 2"))),
                }
                escrow_update = Some((d.escrow, escrow));
            }
        }
        if available < debit {
            return Err(Try::Rejected(Reject::Insufficient {
                has: available,
                needs: debit,
            }));
        }
        Ok(Plan {
            balance: available - debit,
            created,
            escrow_update,
            bond_release,
            minted,
        })
    }

    /// The escrow a hold by `op` opens, or why it cannot.
    fn open_escrow(
        &self,
        op: &Op,
        terms: &TaskHold,
        unit: u64,
        task: Option<([u8; 32], u64)>,
    ) -> Result<Escrow, Try> {
        let amount = match cost(terms.price, terms.fuel_limit, unit) {
            Some(a) if a > 0 => a,
            _ => return Err(Try::Rejected(Reject::BadAmount)),
        };
        let (worker, arbiter) = (terms.worker, terms.arbiter);
        if worker == op.author || arbiter == op.author || worker == arbiter {
            return Err(Try::Rejected(Reject::Escrow(
                "owner, worker and arbiter must differ",
            )));
        }
        if terms.window_ms < self.genesis.min_window_ms {
            return Err(Try::Rejected(Reject::Escrow(
                "challenge window shorter than the network's minimum",
            )));
        }
        if let ArbiterPolicy::Listed(keys) = &self.genesis.arbiters
            && !keys.contains(&arbiter)
        {
            return Err(Try::Rejected(Reject::Escrow(
                "arbiter not allowed by the genesis",
            )));
        }
        Ok(Escrow {
            owner: op.author,
            worker,
            arbiter,
            price: terms.price,
            unit,
            fuel_limit: terms.fuel_limit,
            task: task.map(|t| t.0),
            deadline_ms: task.map(|t| t.1),
            window_ms: terms.window_ms,
            amount,
            collateral: terms.collateral,
            bond: None,
            settled: None,
            finalised: None,
        })
    }

    fn commit(&mut self, id: OpId, op: &Op, plan: Plan) {
        let Plan {
            balance,
            created,
            escrow_update,
            bond_release,
            minted,
        } = plan;
        let acc = self.accounts.entry(op.author).or_default();
        acc.seq = op.seq;
        acc.head = id;
        acc.balance = balance;
        acc.claimed.extend(op.deps.iter().copied());
        if let Some(owed) = self.unclaimed.get_mut(&op.author) {
            for d in &op.deps {
                owed.remove(d);
            }
        }
        if let Some((k, e)) = &escrow_update {
            self.escrows.insert(*k, e.clone());
        }
        if !created.is_empty() {
            self.add_credits(id, created);
        }
        if let Some((bond, to, amount)) = bond_release {
            self.add_credits(bond, vec![(to, amount)]);
        }
        self.minted += u128::from(minted);
        self.dirty.accounts.insert(op.author);
        if let Some((k, _)) = escrow_update {
            self.dirty.escrows.insert(k);
        }
    }

    /// Records the credits op `id` created, and who is owed them.
    fn add_credits(&mut self, id: OpId, list: Vec<(PublicKey, u64)>) {
        for (k, _) in &list {
            self.unclaimed.entry(*k).or_default().insert(id);
        }
        self.credits.insert(id, list);
    }

    /// Rows changed since the last call, for a store that persists them.
    pub fn take_dirty(&mut self) -> Dirty {
        std::mem::take(&mut self.dirty)
    }

    /// Every account's derived row.
    pub fn accounts(&self) -> impl Iterator<Item = (PublicKey, AccountRow)> + '_ {
        self.accounts.iter().map(|(k, a)| (*k, a.row()))
    }

    /// One account's derived row.
    pub fn account(&self, key: &PublicKey) -> Option<AccountRow> {
        self.accounts.get(key).map(Account::row)
    }

    /// Every escrow, by hold id.
    pub fn escrows(&self) -> impl Iterator<Item = (&OpId, &Escrow)> {
        self.escrows.iter()
    }

    /// Op `id`, if held.
    pub fn op(&self, id: &OpId) -> Option<&Op> {
        self.ops.get(id)
    }

    /// Number of ops held (applied, waiting or refused).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether no op is held.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The ops that concern `account`: written by it, paying it, or on an
    /// escrow it is party to; in its chain's order, then by time.
    pub fn history(&self, account: &PublicKey) -> Vec<&Op> {
        let mut out: Vec<&Op> = self
            .ops
            .iter()
            .filter(|(id, op)| {
                op.author == *account
                    || match &op.body {
                        Body::Mint { to, .. } | Body::Transfer { to, .. } => to == account,
                        Body::Hold {
                            worker, arbiter, ..
                        }
                        | Body::TaskHold(TaskHold {
                            worker, arbiter, ..
                        }) => worker == account || arbiter == account,
                        Body::Bond { escrow } | Body::Decide(Decision { escrow, .. }) => self
                            .escrows
                            .get(escrow)
                            .is_some_and(|e| e.owner == *account || e.worker == *account),
                    }
                    || self
                        .credits
                        .get(*id)
                        .is_some_and(|c| c.iter().any(|(k, _)| k == account))
            })
            .map(|(_, op)| op)
            .collect();
        out.sort_by_cached_key(|o| (o.time_ms, o.author != *account, o.seq, o.id()));
        out
    }

    /// For each account, the length of the gap-free prefix of its chain
    /// this replica holds (applied or not): what anti-entropy compares, so
    /// a peer sends everything after it, gaps included.
    pub fn held_heads(&self) -> BTreeMap<PublicKey, u64> {
        let mut out: BTreeMap<PublicKey, u64> = BTreeMap::new();
        for (author, seq) in self.chains.keys() {
            let next = out.get(author).map_or(1, |s| s + 1);
            if *seq == next {
                out.insert(*author, *seq);
            } else if next == 1 {
                out.insert(*author, 0);
            }
        }
        out
    }

    /// Ops by `author` with sequence numbers above `after`, in order,
    /// including both sides of any equivocation.
    pub fn ops_after(&self, author: &PublicKey, after: u64) -> Vec<&Op> {
        if after == u64::MAX {
            return Vec::new();
        }
        self.chains
            .range((*author, after + 1)..=(*author, u64::MAX))
            .flat_map(|(_, ids)| ids.iter().map(|id| &self.ops[id]))
            .collect()
    }

    /// Signs `key`'s next op: on top of the highest op of its chain this
    /// replica holds, claiming every credit sent to it so far (up to
    /// [`MAX_DEPS`](crate::MAX_DEPS)). Check it with
    /// [`check`](Self::check) before inserting or sending it.
    pub fn draft(&self, key: &SecretKey, time_ms: u64, body: Body) -> Op {
        let author = key.public();
        let (seq, prev) = self
            .chains
            .range((author, 0)..=(author, u64::MAX))
            .next_back()
            .map_or((0, GENESIS_PREV), |((_, seq), ids)| (*seq, ids[0]));
        let mut deps: Vec<OpId> = self
            .incoming(&author)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        deps.truncate(crate::op::MAX_DEPS);
        Op::sign(key, self.network, seq + 1, prev, time_ms, deps, body)
    }

    /// An account's spendable credits: those claimed, less those spent.
    pub fn balance(&self, account: &PublicKey) -> u64 {
        self.accounts.get(account).map_or(0, |a| a.balance)
    }

    /// Credits sent to `account` that it has not claimed yet, with the ops
    /// that carry them (name them as deps to spend them).
    pub fn incoming(&self, account: &PublicKey) -> Vec<(OpId, u64)> {
        let Some(owed) = self.unclaimed.get(account) else {
            return Vec::new();
        };
        owed.iter()
            .filter_map(|id| {
                let sum: u64 = self
                    .credits
                    .get(id)?
                    .iter()
                    .filter(|(k, _)| k == account)
                    .map(|(_, a)| a)
                    .sum();
                (sum > 0).then_some((*id, sum))
            })
            .collect()
    }

    /// The head of `account`'s chain: (sequence number, op id).
    pub fn head(&self, account: &PublicKey) -> (u64, OpId) {
        self.accounts
            .get(account)
            .map_or((0, GENESIS_PREV), |a| (a.seq, a.head))
    }

    /// The escrow created by hold `id`.
    pub fn escrow(&self, id: &OpId) -> Option<&Escrow> {
        self.escrows.get(id)
    }

    /// Every equivocation proof found.
    pub fn proofs(&self) -> &[Proof] {
        &self.proofs
    }

    /// Whether `account` is frozen.
    pub fn is_frozen(&self, account: &PublicKey) -> bool {
        self.frozen_from.contains_key(account) || self.bad_signers.contains(account)
    }

    /// Why op `id` was refused, if it was.
    pub fn rejection(&self, id: &OpId) -> Option<&Reject> {
        self.rejected.get(id)
    }

    /// Whether op `id` is applied.
    pub fn is_applied(&self, id: &OpId) -> bool {
        self.applied.contains(id)
    }

    /// Every op held, applied or not, in id order.
    pub fn ops(&self) -> Vec<&Op> {
        let mut v: Vec<(&OpId, &Op)> = self.ops.iter().collect();
        v.sort_unstable_by_key(|(id, _)| **id);
        v.into_iter().map(|(_, op)| op).collect()
    }

    /// Credits ever minted.
    pub fn minted(&self) -> u128 {
        self.minted
    }

    /// A digest of the whole derived state: equal digests, equal states.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        for (k, a) in &self.accounts {
            h.update(&k.to_bytes());
            h.update(&a.seq.to_be_bytes());
            h.update(&a.head);
            h.update(&a.balance.to_be_bytes());
            for c in &a.claimed {
                h.update(c);
            }
        }
        for (k, e) in &self.escrows {
            h.update(k);
            h.update(format!("{e:?}").as_bytes());
        }
        let mut applied: Vec<&OpId> = self.applied.iter().collect();
        applied.sort_unstable();
        for a in applied {
            h.update(a);
        }
        for (k, s) in &self.frozen_from {
            h.update(&k.to_bytes());
            h.update(&s.to_be_bytes());
        }
        for k in &self.bad_signers {
            h.update(&k.to_bytes());
        }
        h.update(&self.minted.to_be_bytes());
        *h.finalize().as_bytes()
    }

    /// Where the credits minted are now, on this replica.
    pub fn supply(&self) -> Supply {
        let spendable: u128 = self.accounts.values().map(|a| u128::from(a.balance)).sum();
        let claimed: BTreeSet<(PublicKey, OpId)> = self
            .accounts
            .iter()
            .flat_map(|(k, a)| a.claimed.iter().map(move |c| (*k, *c)))
            .collect();
        let mut unclaimed: u128 = 0;
        for (id, list) in &self.credits {
            for (k, a) in list {
                if !claimed.contains(&(*k, *id)) {
                    unclaimed += u128::from(*a);
                }
            }
        }
        let held: u128 = self
            .escrows
            .values()
            .filter(|e| e.finalised.is_none())
            .map(|e| {
                u128::from(e.amount)
                    + if e.bond.is_some() {
                        u128::from(e.collateral)
                    } else {
                        0
                    }
            })
            .sum();
        Supply {
            spendable,
            unclaimed,
            held,
            minted: self.minted,
        }
    }

    /// Checks the invariants: credits are conserved (spendable, unclaimed
    /// and held credits add up to those minted), no escrow is paid out
    /// twice, and recomputing the state from the ops gives the same state.
    pub fn verify(&self) -> Result<(), String> {
        let Supply {
            spendable,
            unclaimed,
            held,
            ..
        } = self.supply();
        if spendable + unclaimed + held != self.minted {
            return Err(format!(
                "supply drift: spendable {spendable} + unclaimed {unclaimed} + held {held} != minted {}",
                self.minted
            ));
        }
        let mut rebuilt = self.clone();
        rebuilt.recompute();
        if rebuilt.digest() != self.digest() {
            return Err("recomputing from the ops gives a different state".into());
        }
        Ok(())
    }
}
