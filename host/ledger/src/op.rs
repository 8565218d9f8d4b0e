//! Signed ledger operations and their exact signed bytes.

use p2pc_crypto::{PublicKey, SecretKey, Signature};

/// An operation's name: BLAKE3 of its signed bytes and signature.
pub type OpId = [u8; 32];

/// The `prev` of an account's first operation.
pub const GENESIS_PREV: OpId = [0; 32];

/// Most credits an op may claim at once; bounds a decoded op's size.
pub const MAX_DEPS: usize = 1024;

const DOMAIN: &[u8] = b"p2pc ledger op v1\0";
const DECISION_DOMAIN: &[u8] = b"p2pc escrow decision v1\0";

/// One signed step in an account's chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// The network (the genesis id) it is valid in, so an op cannot be
    /// replayed into another network.
    pub network: [u8; 32],
    /// The account writing it.
    pub author: PublicKey,
    /// Position in the author's chain, from 1.
    pub seq: u64,
    /// Id of the author's op at `seq - 1`, or [`GENESIS_PREV`].
    pub prev: OpId,
    /// The author's claimed time, Unix milliseconds. Only escrow windows
    /// read it, and only as the signers claimed it: never a replica's clock.
    pub time_ms: u64,
    /// Ops whose credits to the author this op claims: mints and transfers
    /// to it, and final escrow decisions paying it.
    pub deps: Vec<OpId>,
    /// What it does.
    pub body: Body,
    /// The author's signature over everything above.
    pub signature: Signature,
}

/// What an op does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Creates credits (issuers named in the genesis only).
    Mint {
        /// Receiver.
        to: PublicKey,
        /// Credits.
        amount: u64,
    },
    /// Moves credits from the author to `to`.
    Transfer {
        /// Receiver.
        to: PublicKey,
        /// Credits.
        amount: u64,
    },
    /// Locks `price * fuel_limit` of the author's credits (hold v1, kind
    /// 3: a price per unit of fuel, no task and no deadline). Still
    /// decoded and applied; nodes now sign [`Body::TaskHold`].
    Hold {
        /// Who runs the task.
        worker: PublicKey,
        /// Who decides when owner and worker disagree.
        arbiter: PublicKey,
        /// Credits per unit of fuel.
        price: u64,
        /// Most fuel paid for.
        fuel_limit: u64,
        /// How long a settlement may be disputed, in milliseconds.
        window_ms: u64,
        /// Credits the worker locks with a [`Body::Bond`]; forfeited to the
        /// owner if the escrow ends in a refund. 0: none.
        collateral: u64,
    },
    /// Locks the credits one task may cost (hold v2, kind 6).
    TaskHold(TaskHold),
    /// The worker locks the hold's collateral against escrow `escrow`.
    Bond {
        /// The hold op.
        escrow: OpId,
    },
    /// A decision on an escrow, signed by the author and one other party.
    Decide(Decision),
}

/// Fuel one unit of a [`TaskHold`]'s price pays for: prices are in
/// credits per million fuel, so the default limit of 10^10 fuel at the
/// cheapest price (1) locks 10^4 credits, not 10^10.
pub const FUEL_PER_PRICE_UNIT: u64 = 1_000_000;

/// What `fuel` costs at `price` credits per `unit` fuel, rounded up, or
/// `None` past `u64`.
pub fn cost(price: u64, fuel: u64, unit: u64) -> Option<u64> {
    let n = u128::from(price) * u128::from(fuel);
    let unit = u128::from(unit.max(1));
    u64::try_from(n.div_ceil(unit)).ok()
}

/// The terms of a hold bound to one task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskHold {
    /// Who runs the task.
    pub worker: PublicKey,
    /// Who decides when owner and worker disagree, and co-signs a refund
    /// once the deadline passed with no settlement.
    pub arbiter: PublicKey,
    /// Credits per million fuel ([`FUEL_PER_PRICE_UNIT`]).
    pub price: u64,
    /// Most fuel paid for: the task's fuel limit.
    pub fuel_limit: u64,
    /// How long a settlement may be disputed, in milliseconds.
    pub window_ms: u64,
    /// Credits the worker locks with a [`Body::Bond`]; forfeited to the
    /// owner if the escrow ends in a refund. 0: none.
    pub collateral: u64,
    /// BLAKE3 of the signed task envelope this hold pays for: the worker
    /// runs that task and no other on it.
    pub task: [u8; 32],
    /// Unix milliseconds after which owner and arbiter may refund an
    /// unsettled hold without the worker.
    pub deadline_ms: u64,
}

/// A step of an escrow's state machine, agreed by two of its three parties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The hold op.
    pub escrow: OpId,
    /// 1: settle. 2: confirm the settlement (final) or dispute it (final).
    pub step: u8,
    /// What is decided.
    pub outcome: Outcome,
    /// The second signer.
    pub cosigner: PublicKey,
    /// Its signature over the decision.
    pub cosignature: Signature,
}

/// What a decision says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Pay the worker for this much fuel; refund the owner the rest.
    Pay {
        /// Fuel used, at most the hold's limit.
        fuel_used: u64,
    },
    /// Refund the owner everything.
    Refund,
    /// Step 2: the settlement stands.
    Confirm,
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

impl Outcome {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Outcome::Pay { fuel_used } => {
                out.push(1);
                out.extend_from_slice(&fuel_used.to_be_bytes());
            }
            Outcome::Refund => out.push(2),
            Outcome::Confirm => out.push(3),
        }
    }
}

/// The bytes both parties to a decision sign, including the time the
/// decision claims, so neither can move it across a challenge window alone.
pub fn decision_bytes(escrow: &OpId, step: u8, outcome: Outcome, time_ms: u64) -> Vec<u8> {
    let mut out = DECISION_DOMAIN.to_vec();
    out.extend_from_slice(escrow);
    out.push(step);
    outcome.encode(&mut out);
    out.extend_from_slice(&time_ms.to_be_bytes());
    out
}

impl Op {
    /// The exact bytes the author signs: a domain tag, then every field,
    /// each with a fixed size or a length prefix.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = DOMAIN.to_vec();
        out.extend_from_slice(&self.network);
        out.extend_from_slice(&self.author.to_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.prev);
        out.extend_from_slice(&self.time_ms.to_be_bytes());
        out.extend_from_slice(&(self.deps.len() as u64).to_be_bytes());
        for d in &self.deps {
            out.extend_from_slice(d);
        }
        match &self.body {
            Body::Mint { to, amount } => {
                out.push(1);
                out.extend_from_slice(&to.to_bytes());
                out.extend_from_slice(&amount.to_be_bytes());
            }
            Body::Transfer { to, amount } => {
                out.push(2);
                out.extend_from_slice(&to.to_bytes());
                out.extend_from_slice(&amount.to_be_bytes());
            }
            Body::Hold {
                worker,
                arbiter,
                price,
                fuel_limit,
                window_ms,
                collateral,
            } => {
                out.push(3);
                out.extend_from_slice(&worker.to_bytes());
                out.extend_from_slice(&arbiter.to_bytes());
                out.extend_from_slice(&price.to_be_bytes());
                out.extend_from_slice(&fuel_limit.to_be_bytes());
                out.extend_from_slice(&window_ms.to_be_bytes());
                out.extend_from_slice(&collateral.to_be_bytes());
            }
            Body::Bond { escrow } => {
                out.push(5);
                out.extend_from_slice(escrow);
            }
            Body::TaskHold(h) => {
                out.push(6);
                out.extend_from_slice(&h.worker.to_bytes());
                out.extend_from_slice(&h.arbiter.to_bytes());
                out.extend_from_slice(&h.price.to_be_bytes());
                out.extend_from_slice(&h.fuel_limit.to_be_bytes());
                out.extend_from_slice(&h.window_ms.to_be_bytes());
                out.extend_from_slice(&h.collateral.to_be_bytes());
                out.extend_from_slice(&h.task);
                out.extend_from_slice(&h.deadline_ms.to_be_bytes());
            }
            Body::Decide(d) => {
                out.push(4);
                put(
                    &mut out,
                    &decision_bytes(&d.escrow, d.step, d.outcome, self.time_ms),
                );
                out.extend_from_slice(&d.cosigner.to_bytes());
                out.extend_from_slice(&d.cosignature.0);
            }
        }
        out
    }

    /// The op's id.
    pub fn id(&self) -> OpId {
        let mut h = blake3::Hasher::new();
        h.update(&self.signed_bytes());
        h.update(&self.signature.0);
        *h.finalize().as_bytes()
    }

    /// The op as stored and sent: its signed bytes, then the signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.signed_bytes();
        out.extend_from_slice(&self.signature.0);
        out
    }

    /// Parses [`to_bytes`](Self::to_bytes) output. Checks the form only;
    /// signatures are checked when the op is inserted into a ledger.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        if r.take(DOMAIN.len())? != DOMAIN {
            return Err(DecodeError("not a p2pc ledger op"));
        }
        let network = r.array()?;
        let author = r.key()?;
        let seq = r.u64()?;
        let prev = r.array()?;
        let time_ms = r.u64()?;
        let n = r.u64()?;
        if n > MAX_DEPS as u64 {
            return Err(DecodeError("too many deps"));
        }
        let deps = (0..n).map(|_| r.array()).collect::<Result<_, _>>()?;
        let body = match r.u8()? {
            1 => Body::Mint {
                to: r.key()?,
                amount: r.u64()?,
            },
            2 => Body::Transfer {
                to: r.key()?,
                amount: r.u64()?,
            },
            3 => Body::Hold {
                worker: r.key()?,
                arbiter: r.key()?,
                price: r.u64()?,
                fuel_limit: r.u64()?,
                window_ms: r.u64()?,
                collateral: r.u64()?,
            },
            4 => {
                let len = r.u64()?;
                let inner = r.take(usize::try_from(len).map_err(|_| DecodeError("truncated"))?)?;
                let mut d = Reader(inner);
                if d.take(DECISION_DOMAIN.len())? != DECISION_DOMAIN {
                    return Err(DecodeError("bad decision"));
                }
                let escrow = d.array()?;
                let step = d.u8()?;
                let outcome = match d.u8()? {
                    1 => Outcome::Pay {
                        fuel_used: d.u64()?,
                    },
                    2 => Outcome::Refund,
                    3 => Outcome::Confirm,
                    _ => return Err(DecodeError("unknown outcome")),
                };
                if d.u64()? != time_ms || !d.0.is_empty() {
                    return Err(DecodeError("bad decision"));
                }
                Body::Decide(Decision {
                    escrow,
                    step,
                    outcome,
                    cosigner: r.key()?,
                    cosignature: Signature(r.array()?),
                })
            }
            5 => Body::Bond { escrow: r.array()? },
            6 => Body::TaskHold(TaskHold {
                worker: r.key()?,
                arbiter: r.key()?,
                price: r.u64()?,
                fuel_limit: r.u64()?,
                window_ms: r.u64()?,
                collateral: r.u64()?,
                task: r.array()?,
                deadline_ms: r.u64()?,
            }),
            _ => return Err(DecodeError("unknown op kind")),
        };
        let signature = Signature(r.array()?);
        if !r.0.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(Op {
            network,
            author,
            seq,
            prev,
            time_ms,
            deps,
            body,
            signature,
        })
    }

    /// Signs a new op for `network`.
    pub fn sign(
        key: &SecretKey,
        network: [u8; 32],
        seq: u64,
        prev: OpId,
        time_ms: u64,
        deps: Vec<OpId>,
        body: Body,
    ) -> Self {
        let mut op = Op {
            network,
            author: key.public(),
            seq,
            prev,
            time_ms,
            deps,
            body,
            signature: Signature([0; 64]),
        };
        op.signature = key.sign(&op.signed_bytes());
        op
    }

    /// Whether the author's signature verifies.
    pub fn signature_ok(&self) -> bool {
        self.author
            .verify(&self.signed_bytes(), &self.signature)
            .is_ok()
    }
}

/// A co-signature on a decision, made by the second party.
pub fn cosign(
    key: &SecretKey,
    escrow: &OpId,
    step: u8,
    outcome: Outcome,
    time_ms: u64,
) -> Signature {
    key.sign(&decision_bytes(escrow, step, outcome, time_ms))
}

/// A byte string that is not a well-formed op.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed ledger op: {0}")]
pub struct DecodeError(&'static str);

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn key(&mut self) -> Result<PublicKey, DecodeError> {
        PublicKey::from_bytes(&self.array::<32>()?).map_err(|_| DecodeError("bad public key"))
    }
}
