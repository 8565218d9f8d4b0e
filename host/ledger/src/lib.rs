//! The p2pc credit ledger. Its heart is [`CreditManager`], a pure and
//! deterministic state machine with no I/O, no clock and no async: every
//! account (an Ed25519 key) writes its own chain of signed [`Op`]s;
//! replicas hold the set of valid ops, merged by union, and derive
//! identical balances and escrows from it whatever order the ops arrived
//! in. Around it: the genesis file ([`Genesis::load`]) and [`Ledger`], the
//! state kept on disk in fjall.
//!
//! Not here: replication over the overlay (`p2pc-node`) and the CLI.
//!
//! Modules:
//! - `op`: [`Op`], [`Body`], [`TaskHold`], [`Decision`], [`Outcome`] and
//!   their bytes.
//! - `state`: [`CreditManager`], [`Genesis`], [`Insert`], [`Reject`],
//!   [`Proof`], [`Escrow`].
//! - `genesis`: the genesis file format.
//! - `store`: [`Ledger`], durable and verifiable.
//! - `future`: [`FutureOps`], ops waiting for the local clock to reach
//!   their claimed time (the one place a clock is consulted, passed in).
//! - [`sync`]: the replication messages and anti-entropy's pure halves.
//! - [`fuzzing`]: the bodies of the fuzz targets over all of the above.

#![deny(missing_docs)]

mod future;
pub mod fuzzing;
mod genesis;
mod op;
mod state;
mod store;
pub mod sync;

pub use future::{FutureOps, Offer};
pub use genesis::GenesisError;
pub use op::{
    Body, Decision, DecodeError, FUEL_PER_PRICE_UNIT, GENESIS_PREV, MAX_DEPS, Op, OpId, Outcome,
    TaskHold, cosign, cost, decision_bytes,
};
pub use state::{
    AccountRow, ArbiterPolicy, CreditManager, Dirty, Escrow, Genesis, Insert, Proof, Reject, Supply,
};
pub use store::{Audit, Ledger, LedgerError, Persister, Record, Report};
