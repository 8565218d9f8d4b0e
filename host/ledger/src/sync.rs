//! The replication messages, and the pure halves of anti-entropy: what a
//! replica asks for, and what it answers. Transport is the caller's.
//!
//! - Gossip carries [`encode_ops`] batches: new ops, and both ops of every
//!   equivocation a replica finds.
//! - Anti-entropy is pull: the asker sends a [`SyncRequest`] naming, per
//!   account, how much of its chain it holds without gaps; the answerer
//!   sends every op after that, plus both ops of every proof it holds,
//!   up to a byte budget, and says whether more remain. The asker
//!   repeats until nothing more remains.

use std::collections::BTreeMap;

use p2pc_crypto::PublicKey;

use crate::op::{DecodeError, Op};
use crate::state::{CreditManager, Proof};

/// A malformed replication message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed ledger sync message: {0}")]
pub struct SyncError(&'static str);

impl From<DecodeError> for SyncError {
    fn from(_: DecodeError) -> Self {
        SyncError("an op in it is malformed")
    }
}

/// Most ops one message carries.
pub const MAX_OPS_PER_MESSAGE: usize = 16_384;
/// Most accounts one request names.
pub const MAX_HEADS_PER_REQUEST: usize = 100_000;

/// Frames ops: a count, then each op's length and bytes.
pub fn encode_ops<'a>(ops: impl IntoIterator<Item = &'a Op>) -> Vec<u8> {
    let mut out = vec![0; 4];
    let mut n: u32 = 0;
    for op in ops {
        let bytes = op.to_bytes();
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(&bytes);
        n += 1;
    }
    out[..4].copy_from_slice(&n.to_be_bytes());
    out
}

/// Reads [`encode_ops`] output. The frame must be well formed; each op in
/// it is decoded on its own, so one bad op does not hide the others.
pub fn decode_ops(bytes: &[u8]) -> Result<Vec<Result<Op, DecodeError>>, SyncError> {
    let (n, mut rest) = split_u32(bytes)?;
    if n as usize > MAX_OPS_PER_MESSAGE {
        return Err(SyncError("too many ops"));
    }
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let (len, tail) = split_u32(rest)?;
        if tail.len() < len as usize {
            return Err(SyncError("truncated"));
        }
        let (op, tail) = tail.split_at(len as usize);
        out.push(Op::from_bytes(op));
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(SyncError("trailing bytes"));
    }
    Ok(out)
}

fn split_u32(bytes: &[u8]) -> Result<(u32, &[u8]), SyncError> {
    if bytes.len() < 4 {
        return Err(SyncError("truncated"));
    }
    let (head, rest) = bytes.split_at(4);
    Ok((u32::from_be_bytes(head.try_into().expect("4 bytes")), rest))
}

/// An anti-entropy request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncRequest {
    /// The asker's network id; a replica of another network answers
    /// nothing.
    pub network: [u8; 32],
    /// Per account, the gap-free chain prefix the asker holds.
    pub heads: BTreeMap<PublicKey, u64>,
}

impl SyncRequest {
    /// What `state` should ask a peer for.
    pub fn of(state: &CreditManager) -> Self {
        Self {
            network: state.network(),
            heads: state.held_heads(),
        }
    }

    /// Its bytes: network, count, then (key, seq) pairs.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(36 + self.heads.len() * 40);
        out.extend_from_slice(&self.network);
        out.extend_from_slice(&(self.heads.len() as u32).to_be_bytes());
        for (k, s) in &self.heads {
            out.extend_from_slice(&k.to_bytes());
            out.extend_from_slice(&s.to_be_bytes());
        }
        out
    }

    /// Reads [`encode`](Self::encode) output.
    pub fn decode(bytes: &[u8]) -> Result<Self, SyncError> {
        if bytes.len() < 36 {
            return Err(SyncError("truncated"));
        }
        let (network, rest) = bytes.split_at(32);
        let (n, mut rest) = split_u32(rest)?;
        if n as usize > MAX_HEADS_PER_REQUEST {
            return Err(SyncError("too many accounts"));
        }
        if rest.len() != n as usize * 40 {
            return Err(SyncError("wrong length"));
        }
        let mut heads = BTreeMap::new();
        while !rest.is_empty() {
            let (entry, tail) = rest.split_at(40);
            let key =
                PublicKey::from_bytes(&entry[..32]).map_err(|_| SyncError("bad public key"))?;
            let seq = u64::from_be_bytes(entry[32..].try_into().expect("8 bytes"));
            heads.insert(key, seq);
            rest = tail;
        }
        Ok(Self {
            network: network.try_into().expect("32 bytes"),
            heads,
        })
    }
}

/// What `state` answers to `request`: the ops the asker lacks, at most
/// `budget` bytes of them (at least one op if any is missing), and whether
/// more remain.
pub fn answer(state: &CreditManager, request: &SyncRequest, budget: usize) -> (Vec<Op>, bool) {
    if request.network != state.network() {
        return (Vec::new(), false);
    }
    let mut out: Vec<Op> = Vec::new();
    let mut size = 0usize;
    let mut push = |op: &Op, out: &mut Vec<Op>| -> bool {
        let len = op.to_bytes().len() + 4;
        if (!out.is_empty() && size + len > budget) || out.len() >= MAX_OPS_PER_MESSAGE {
            return false;
        }
        size += len;
        out.push(op.clone());
        true
    };
    // Proofs first: they are few and change how everything else applies.
    for proof in state.proofs() {
        let (a, b) = match proof {
            Proof::Chain { ops, .. } | Proof::Decision { ops, .. } => ops,
        };
        for id in [a, b] {
            if let Some(op) = state.op(id)
                && request.heads.get(&op.author).is_some_and(|h| *h >= op.seq)
                && !push(op, &mut out)
            {
                return (out, true);
            }
        }
    }
    for (author, _) in state.held_heads() {
        let after = request.heads.get(&author).copied().unwrap_or(0);
        for op in state.ops_after(&author, after) {
            if !push(op, &mut out) {
                return (out, true);
            }
        }
    }
    (out, false)
}
