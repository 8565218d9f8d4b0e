use std::fmt;
use std::str::FromStr;

use ed25519_dalek::Signer;
use zeroize::Zeroizing;

/// The public half of an Ed25519 key: the identity of a user or a node.
/// Written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

/// A private Ed25519 key. It never prints, serializes or leaves this crate
/// except encrypted by the keystore; it is wiped from memory on drop.
pub struct SecretKey(ed25519_dalek::SigningKey);

/// Why bytes or text are not a key or a signature.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// Not 64 hex digits.
    #[error("a public key is 64 hex digits: {0}")]
    BadHex(String),
    /// Not a valid point on the curve.
    #[error("not a valid Ed25519 public key")]
    InvalidPoint,
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
}

/// Keys decompressed before, by their bytes. Point decompression is a
/// field exponentiation, about a third of a signature check, and a network
/// has few keys that sign many messages: ledger ops, envelopes, and the
/// keys inside them. Bounded; cleared when full.
struct KeyCache {
    verifying: std::collections::HashMap<[u8; 32], ed25519_dalek::VerifyingKey>,
    peers: std::collections::HashMap<[u8; 32], libp2p_identity::PeerId>,
}

const KEY_CACHE: usize = 4096;

static KEYS: std::sync::Mutex<Option<KeyCache>> = std::sync::Mutex::new(None);

fn with_cache<T>(f: impl FnOnce(&mut KeyCache) -> T) -> T {
    let mut guard = KEYS.lock().unwrap_or_else(|e| e.into_inner());
    let cache = guard.get_or_insert_with(|| KeyCache {
        verifying: std::collections::HashMap::new(),
        peers: std::collections::HashMap::new(),
    });
    f(cache)
}

/// The decompressed key for `bytes`, from the cache when it was seen.
fn verifying_key(bytes: &[u8; 32]) -> Result<ed25519_dalek::VerifyingKey, KeyError> {
    if let Some(k) = with_cache(|c| c.verifying.get(bytes).copied()) {
        return Ok(k);
    }
    let key = ed25519_dalek::VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::InvalidPoint)?;
    with_cache(|c| {
        if c.verifying.len() >= KEY_CACHE {
            c.verifying.clear();
        }
        c.verifying.insert(*bytes, key);
    });
    Ok(key)
}

impl PublicKey {
    /// The 32 raw bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// A key from raw bytes, checked to be a valid curve point.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| KeyError::InvalidPoint)?;
        verifying_key(&arr)?;
        Ok(Self(arr))
    }

    /// Checks `signature` over `message`. Strict verification: rejects
    /// small-order keys and non-canonical signatures, so no signature has a
    /// second valid encoding (which would defeat replay detection by hash).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), KeyError> {
        let key = verifying_key(&self.0)?;
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &sig)
            .map_err(|_| KeyError::BadSignature)
    }

    /// The libp2p `PeerId` of a node with this key.
    pub fn peer_id(&self) -> libp2p_identity::PeerId {
        if let Some(p) = with_cache(|c| c.peers.get(&self.0).copied()) {
            return p;
        }
        let key = libp2p_identity::ed25519::PublicKey::try_from_bytes(&self.0)
            .expect("a PublicKey is always a valid Ed25519 point");
        let peer = libp2p_identity::PublicKey::from(key).to_peer_id();
        with_cache(|c| {
            if c.peers.len() >= KEY_CACHE {
                c.peers.clear();
            }
            c.peers.insert(self.0, peer);
        });
        peer
    }

    /// The Ed25519 key a peer id was derived from, if it was derived from
    /// one (p2pc peer ids always are).
    pub fn from_peer_id(peer: &libp2p_identity::PeerId) -> Option<Self> {
        let digest = peer.as_ref().digest();
        let key = libp2p_identity::PublicKey::try_decode_protobuf(digest).ok()?;
        let ed = key.try_into_ed25519().ok()?;
        Some(Self(ed.to_bytes()))
    }

    /// A short form for people: the first 8 hex digits.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(s.trim()).map_err(|_| KeyError::BadHex(s.to_owned()))?;
        if bytes.len() != 32 {
            return Err(KeyError::BadHex(s.to_owned()));
        }
        Self::from_bytes(&bytes)
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", hex::encode(&self.0[..8]))
    }
}

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).expect("the OS random source is available");
        Self::from_seed(&seed)
    }

    /// The key with this 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// The 32-byte seed; only the keystore sees it, to encrypt it.
    pub(crate) fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }

    /// The libp2p keypair for a node with this key, so the node's `PeerId`
    /// is derived from its p2pc identity.
    pub fn to_libp2p(&self) -> libp2p_identity::Keypair {
        let mut seed = self.seed();
        let secret = libp2p_identity::ed25519::SecretKey::try_from_bytes(seed.as_mut())
            .expect("32 bytes are a valid Ed25519 secret");
        libp2p_identity::Keypair::from(libp2p_identity::ed25519::Keypair::from(secret))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_reject() {
        let key = SecretKey::generate();
        let sig = key.sign(b"hello");
        key.public().verify(b"hello", &sig).expect("verifies");
        assert_eq!(
            key.public().verify(b"hellO", &sig),
            Err(KeyError::BadSignature)
        );
        let other = SecretKey::generate();
        assert_eq!(
            other.public().verify(b"hello", &sig),
            Err(KeyError::BadSignature)
        );
    }

    #[test]
    fn text_round_trip_and_bad_text() {
        let key = SecretKey::generate().public();
        assert_eq!(key.to_string().parse::<PublicKey>(), Ok(key));
        assert!("abc".parse::<PublicKey>().is_err());
        assert!("zz".repeat(32).parse::<PublicKey>().is_err());
    }

    #[test]
    fn peer_id_is_derived_from_the_same_key() {
        let key = SecretKey::from_seed(&[9; 32]);
        let via_libp2p = key.to_libp2p().public().to_peer_id();
        assert_eq!(key.public().peer_id(), via_libp2p);
        assert_eq!(PublicKey::from_peer_id(&via_libp2p), Some(key.public()));
        // Stable across runs: the PeerId is a pure function of the key.
        assert_eq!(
            SecretKey::from_seed(&[9; 32]).public().peer_id(),
            via_libp2p
        );
        assert_ne!(
            SecretKey::from_seed(&[8; 32]).public().peer_id(),
            via_libp2p
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = SecretKey::from_seed(&[0x42; 32]);
        let text = format!("{key:?}");
        assert!(!text.contains(&hex::encode([0x42; 32])), "{text}");
    }
}
