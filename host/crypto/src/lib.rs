//! Identity and authenticity for p2pc: Ed25519 keys, the encrypted
//! keystore that holds them, signed envelopes for every network message,
//! and signed component bundles.
//!
//! Nothing here does network or database I/O; the keystore reads and writes
//! its own files. Private keys leave this crate only encrypted.
//!
//! Modules:
//! - `keys`: [`PublicKey`], [`SecretKey`], [`Signature`]; libp2p `PeerId`s.
//! - `keystore`: [`Keystore`], passphrase-encrypted key files.
//! - `envelope`: [`Envelope`], [`ReplayGuard`]: signed, replay-checked messages.
//! - `bundle`: [`BundleFile`], [`Manifest`], [`TrustPolicy`]: signed components.
//! - `seal`: sealed blobs ([`SealingReader`], [`OpeningReader`]) and HPKE
//!   key wrapping ([`wrap`], [`SealKey`]): end-to-end secrecy of task data.

#![deny(missing_docs)]

mod bundle;
mod envelope;
#[doc(hidden)]
pub mod fuzzing;
mod keys;
mod keystore;
pub mod seal;

pub use bundle::{
    BundleError, BundleFile, FORMAT_VERSION as BUNDLE_FORMAT_VERSION, MAGIC as BUNDLE_MAGIC,
    MAX_BUNDLE_BYTES, Manifest, RequestedLimits, TrustPolicy, VerifiedBundle, now_unix,
};
pub use envelope::{Envelope, EnvelopeError, MAX_ENVELOPE_BYTES, Opened, ReplayGuard};
pub use keys::{KeyError, PublicKey, SecretKey, Signature};
pub use keystore::{KdfParams, KeyInfo, Keystore, KeystoreError};
pub use seal::{
    ContentKey, OpeningReader, PreparedWrap, ReplyKey, SealError, SealKey, SealPublic,
    SealingReader, WrappedKey, wrap,
};
