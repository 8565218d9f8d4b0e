//! The p2pc credit ledger's state machine, [`CreditManager`]: pure and
//! deterministic, with no I/O, no clock and no async. Every account (an
//! Ed25519 key) writes its own chain of signed [`Op`]s; replicas hold the
//! set of valid ops, merged by union, and derive identical balances and
//! escrows from it whatever order the ops arrived in.
//!
//! Not here: persistence, replication over the overlay, the genesis file
//! format and the CLI; they build on this crate.
//!
//! Modules:
//! - `op`: [`Op`], [`Body`], [`Decision`], [`Outcome`] and their signed
//!   bytes.
//! - `state`: [`CreditManager`], [`Genesis`], [`Insert`], [`Reject`],
//!   [`Proof`], [`Escrow`].

#![deny(missing_docs)]

mod op;
mod state;

pub use op::{
    Body, Decision, DecodeError, GENESIS_PREV, MAX_DEPS, Op, OpId, Outcome, cosign, decision_bytes,
};
pub use state::{ArbiterPolicy, CreditManager, Escrow, Genesis, Insert, Proof, Reject};
