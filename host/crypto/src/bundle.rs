//! Signed component bundles: a component plus a manifest saying what it is,
//! what it asks for and who published it, signed by the publisher.
//!
//! File layout (documented for other languages in `docs/bundle-format.md`):
//! the 8 bytes `P2PCBNDL`, then one protobuf [`BundleFile`] message. The
//! manifest is kept as the exact bytes that were signed, so verification
//! never depends on re-encoding being canonical.

use std::collections::BTreeSet;

use bytes::Bytes;
use prost::Message;

use crate::{PublicKey, SecretKey, Signature};

/// First bytes of every bundle file.
pub const MAGIC: &[u8; 8] = b"P2PCBNDL";
/// Version of the bundle file format.
pub const FORMAT_VERSION: u32 = 1;
/// Largest bundle accepted (the component dominates).
pub const MAX_BUNDLE_BYTES: usize = 256 << 20;

const SIGNING_DOMAIN: &[u8] = b"p2pc bundle manifest v1\0";

/// The bundle file's single message.
#[derive(Clone, PartialEq, Message)]
pub struct BundleFile {
    /// [`FORMAT_VERSION`].
    #[prost(uint32, tag = "1")]
    pub format_version: u32,
    /// An encoded [`Manifest`], exactly as signed.
    #[prost(bytes = "bytes", tag = "2")]
    pub manifest: Bytes,
    /// Ed25519 signature over the manifest bytes; empty while unsigned.
    #[prost(bytes = "bytes", tag = "3")]
    pub signature: Bytes,
    /// The component. Decoding shares the input buffer rather than copying
    /// it (see [`BundleFile::from_vec`]).
    #[prost(bytes = "bytes", tag = "4")]
    pub component: Bytes,
}

/// What a bundle says about its component.
#[derive(Clone, PartialEq, Message)]
pub struct Manifest {
    /// Job name, e.g. `wordcount`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Job version, e.g. `1.2.0`.
    #[prost(string, tag = "2")]
    pub version: String,
    /// WIT world: `p2pc:job/job`, `p2pc:job/map-reduce` or `wasi:cli/command`.
    #[prost(string, tag = "3")]
    pub world: String,
    /// BLAKE3 of the component bytes.
    #[prost(bytes = "vec", tag = "4")]
    pub component_blake3: Vec<u8>,
    /// Size of the component in bytes.
    #[prost(uint64, tag = "5")]
    pub component_size: u64,
    /// Limits the publisher asks for.
    #[prost(message, optional, tag = "6")]
    pub limits: Option<RequestedLimits>,
    /// Capabilities the publisher asks for, e.g. `scratch`.
    #[prost(string, repeated, tag = "7")]
    pub capabilities: Vec<String>,
    /// The publisher's Ed25519 public key.
    #[prost(bytes = "vec", tag = "8")]
    pub publisher: Vec<u8>,
    /// When the bundle was made, seconds since the Unix epoch.
    #[prost(uint64, tag = "9")]
    pub created_unix: u64,
    /// When the bundle stops being valid, seconds since the Unix epoch; 0
    /// for never.
    #[prost(uint64, tag = "10")]
    pub expires_unix: u64,
    /// The executor the artifact needs: `wasm` (also when empty, as in
    /// bundles made before this field), `process` (a native program) or
    /// `container` (a root file system tarball).
    #[prost(string, tag = "11")]
    pub executor: String,
    /// Command-line arguments after the program name, for `process` and
    /// `container` bundles (and wasm commands).
    #[prost(string, repeated, tag = "12")]
    pub args: Vec<String>,
}

impl Manifest {
    /// The executor this bundle needs, `wasm` when the field is empty.
    pub fn executor(&self) -> &str {
        if self.executor.is_empty() {
            "wasm"
        } else {
            &self.executor
        }
    }
}

/// Limits a manifest asks for; 0 means "the runner's default".
#[derive(Clone, Copy, PartialEq, Message)]
pub struct RequestedLimits {
    /// Fuel.
    #[prost(uint64, tag = "1")]
    pub fuel: u64,
    /// Memory in bytes.
    #[prost(uint64, tag = "2")]
    pub memory_bytes: u64,
    /// Wall-clock time in milliseconds.
    #[prost(uint64, tag = "3")]
    pub timeout_ms: u64,
    /// Output in bytes.
    #[prost(uint64, tag = "4")]
    pub output_bytes: u64,
}

/// Which publishers a runner accepts bundles from.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum TrustPolicy {
    /// Any publisher whose signature verifies.
    #[default]
    Any,
    /// Only these publishers.
    Only(BTreeSet<PublicKey>),
}

impl TrustPolicy {
    /// Whether `key` is trusted.
    pub fn allows(&self, key: &PublicKey) -> bool {
        match self {
            TrustPolicy::Any => true,
            TrustPolicy::Only(keys) => keys.contains(key),
        }
    }
}

/// Why a bundle was refused. Each names the part that failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BundleError {
    /// Does not start with `P2PCBNDL`.
    #[error("not a p2pc bundle (the file does not start with P2PCBNDL)")]
    BadMagic,
    /// Over [`MAX_BUNDLE_BYTES`].
    #[error("bundle of {0} bytes is over the {MAX_BUNDLE_BYTES}-byte limit")]
    TooLarge(usize),
    /// The protobuf framing is broken.
    #[error("bundle is malformed: {0}")]
    Malformed(String),
    /// A format version this runner does not read.
    #[error(
        "bundle format version {0} is not supported (this runner reads version {FORMAT_VERSION})"
    )]
    UnsupportedVersion(u32),
    /// No signature yet.
    #[error("bundle is unsigned: sign it with `p2pctl bundle sign`")]
    Unsigned,
    /// The manifest's publisher field is not a key.
    #[error("bundle manifest names no valid publisher key")]
    BadPublisher,
    /// The signature does not match the manifest.
    #[error("bundle signature does not verify: the manifest or the signature was altered")]
    BadSignature,
    /// The component does not match the manifest.
    #[error("component does not match the manifest's BLAKE3 and size: the component was altered")]
    ComponentMismatch,
    /// Past its expiry.
    #[error("bundle expired at {expired_unix} (now {now_unix}, seconds since the Unix epoch)")]
    Expired {
        /// The manifest's expiry.
        expired_unix: u64,
        /// The verifier's clock.
        now_unix: u64,
    },
    /// Created in the future (beyond a small clock skew).
    #[error("bundle is dated {created_unix}, in the future (now {now_unix})")]
    NotYetValid {
        /// The manifest's creation time.
        created_unix: u64,
        /// The verifier's clock.
        now_unix: u64,
    },
    /// Signed by a publisher outside the trust policy.
    #[error("publisher {0} is not in this runner's trust policy")]
    Untrusted(PublicKey),
}

/// Clock skew tolerated for a bundle's creation time.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// A bundle whose signature, component hash, dates and publisher have all
/// been checked.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    /// The decoded manifest.
    pub manifest: Manifest,
    /// The publisher.
    pub publisher: PublicKey,
    /// The component bytes.
    pub component: Bytes,
    /// BLAKE3 of the signed manifest bytes: the bundle's identity.
    pub id: [u8; 32],
}

impl BundleFile {
    /// An unsigned bundle of `component` described by `manifest` (whose
    /// hash and size fields are filled in here).
    pub fn pack(mut manifest: Manifest, component: Vec<u8>) -> Self {
        manifest.component_blake3 = blake3::hash(&component).as_bytes().to_vec();
        manifest.component_size = component.len() as u64;
        Self {
            format_version: FORMAT_VERSION,
            manifest: manifest.encode_to_vec().into(),
            signature: Bytes::new(),
            component: component.into(),
        }
    }

    /// Signs the manifest. The manifest's publisher must be `key`.
    pub fn sign(&mut self, key: &SecretKey) -> Result<(), BundleError> {
        let manifest = self.manifest()?;
        if manifest.publisher != key.public().to_bytes() {
            return Err(BundleError::BadPublisher);
        }
        self.signature = Bytes::copy_from_slice(&key.sign(&signing_bytes(&self.manifest)).0);
        Ok(())
    }

    /// The decoded manifest, unverified.
    pub fn manifest(&self) -> Result<Manifest, BundleError> {
        Manifest::decode(&self.manifest[..])
            .map_err(|e| BundleError::Malformed(format!("manifest: {e}")))
    }

    /// The file bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + self.encoded_len());
        out.extend_from_slice(MAGIC);
        self.encode(&mut out).expect("a Vec grows as needed");
        out
    }

    /// Parses file bytes; checks framing only. Copies the input once; use
    /// [`from_vec`](Self::from_vec) to avoid even that.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BundleError> {
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge(bytes.len()));
        }
        Self::from_vec(bytes.to_vec())
    }

    /// Parses file bytes it takes ownership of without copying them: the
    /// component and manifest share the buffer.
    pub fn from_vec(bytes: Vec<u8>) -> Result<Self, BundleError> {
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge(bytes.len()));
        }
        let bytes = Bytes::from(bytes);
        if !bytes.starts_with(MAGIC) {
            return Err(BundleError::BadMagic);
        }
        let file = BundleFile::decode(bytes.slice(MAGIC.len()..))
            .map_err(|e| BundleError::Malformed(e.to_string()))?;
        if file.format_version != FORMAT_VERSION {
            return Err(BundleError::UnsupportedVersion(file.format_version));
        }
        Ok(file)
    }

    /// Checks everything: signature over the manifest, component against
    /// the manifest, dates against `now_unix`, publisher against `policy`.
    pub fn verify(
        self,
        policy: &TrustPolicy,
        now_unix: u64,
    ) -> Result<VerifiedBundle, BundleError> {
        if self.signature.is_empty() {
            return Err(BundleError::Unsigned);
        }
        let manifest = self.manifest()?;
        let publisher =
            PublicKey::from_bytes(&manifest.publisher).map_err(|_| BundleError::BadPublisher)?;
        let signature: [u8; 64] = self.signature[..]
            .try_into()
            .map_err(|_| BundleError::BadSignature)?;
        publisher
            .verify(&signing_bytes(&self.manifest), &Signature(signature))
            .map_err(|_| BundleError::BadSignature)?;
        if manifest.component_size != self.component.len() as u64
            || manifest.component_blake3 != blake3::hash(&self.component).as_bytes()
        {
            return Err(BundleError::ComponentMismatch);
        }
        if manifest.expires_unix != 0 && now_unix >= manifest.expires_unix {
            return Err(BundleError::Expired {
                expired_unix: manifest.expires_unix,
                now_unix,
            });
        }
        if manifest.created_unix > now_unix.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(BundleError::NotYetValid {
                created_unix: manifest.created_unix,
                now_unix,
            });
        }
        if !policy.allows(&publisher) {
            return Err(BundleError::Untrusted(publisher));
        }
        Ok(VerifiedBundle {
            id: *blake3::hash(&self.manifest).as_bytes(),
            manifest,
            publisher,
            component: self.component,
        })
    }
}

fn signing_bytes(manifest: &[u8]) -> Vec<u8> {
    [SIGNING_DOMAIN, manifest].concat()
}

/// Seconds since the Unix epoch by this machine's clock.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(key: &SecretKey) -> Manifest {
        Manifest {
            name: "demo".into(),
            version: "1.0.0".into(),
            world: "p2pc:job/job".into(),
            limits: Some(RequestedLimits {
                fuel: 1000,
                memory_bytes: 1 << 20,
                timeout_ms: 1000,
                output_bytes: 1024,
            }),
            capabilities: vec!["scratch".into()],
            publisher: key.public().to_bytes().to_vec(),
            created_unix: 1_000,
            expires_unix: 2_000,
            ..Manifest::default()
        }
    }

    fn signed(key: &SecretKey) -> Vec<u8> {
        let component: Vec<u8> = b"\0asm\x0d\0\x01\0"
            .iter()
            .copied()
            .chain((0..500).map(|i| i as u8))
            .collect();
        let mut b = BundleFile::pack(manifest(key), component);
        b.sign(key).expect("sign");
        b.to_bytes()
    }

    #[test]
    fn a_signed_bundle_verifies() {
        let key = SecretKey::generate();
        let v = BundleFile::from_bytes(&signed(&key))
            .expect("parse")
            .verify(&TrustPolicy::Any, 1_500)
            .expect("verify");
        assert_eq!(v.publisher, key.public());
        assert_eq!(v.manifest.name, "demo");
        assert_eq!(v.component.len(), 508);
    }

    #[test]
    fn flipping_any_byte_is_detected() {
        let key = SecretKey::generate();
        let bytes = signed(&key);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            let result =
                BundleFile::from_bytes(&bad).and_then(|b| b.verify(&TrustPolicy::Any, 1_500));
            assert!(result.is_err(), "flipping byte {i} went unnoticed");
        }
    }

    #[test]
    fn each_failure_names_what_failed() {
        let key = SecretKey::generate();
        let good = BundleFile::from_bytes(&signed(&key)).expect("parse");
        let verify = |b: BundleFile| b.verify(&TrustPolicy::Any, 1_500).err();

        let mut b = good.clone();
        let mut c = b.component.to_vec();
        c[20] ^= 1;
        b.component = c.into();
        assert_eq!(verify(b), Some(BundleError::ComponentMismatch));

        let mut b = good.clone();
        let mut sig = b.signature.to_vec();
        sig[3] ^= 1;
        b.signature = sig.into();
        assert_eq!(verify(b), Some(BundleError::BadSignature));

        let mut b = good.clone();
        let mut m = b.manifest().expect("manifest");
        m.name = "evil".into();
        b.manifest = m.encode_to_vec().into();
        assert_eq!(verify(b), Some(BundleError::BadSignature));

        let mut b = good.clone();
        b.signature = Bytes::new();
        assert_eq!(verify(b), Some(BundleError::Unsigned));

        assert!(matches!(
            good.clone().verify(&TrustPolicy::Any, 2_000),
            Err(BundleError::Expired { .. })
        ));
        assert!(matches!(
            good.clone().verify(&TrustPolicy::Any, 10),
            Err(BundleError::NotYetValid { .. })
        ));

        let stranger = SecretKey::generate().public();
        let policy = TrustPolicy::Only([stranger].into());
        assert_eq!(
            good.clone().verify(&policy, 1_500).err(),
            Some(BundleError::Untrusted(key.public()))
        );
        let policy = TrustPolicy::Only([key.public()].into());
        assert!(good.verify(&policy, 1_500).is_ok());

        assert_eq!(
            BundleFile::from_bytes(b"NOTABUNDLE").err(),
            Some(BundleError::BadMagic)
        );
    }

    #[test]
    fn only_the_named_publisher_can_sign() {
        let key = SecretKey::generate();
        let mut b = BundleFile::pack(manifest(&key), vec![1, 2, 3]);
        assert_eq!(
            b.sign(&SecretKey::generate()),
            Err(BundleError::BadPublisher)
        );
    }
}
