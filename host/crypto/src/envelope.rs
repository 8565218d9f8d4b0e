//! Signed envelopes: the one form every message takes when it crosses the
//! network, and the one place it is verified.
//!
//! An envelope carries its author's public key, a `kind` naming what the
//! payload is (so a signature over one kind of message can never be passed
//! off as another), a per-author sequence number against replay, the
//! payload, and an Ed25519 signature over all of them.

use std::collections::HashMap;

use prost::Message;

use crate::{PublicKey, SecretKey, Signature};

/// Wire version of the envelope format.
pub const ENVELOPE_VERSION: u32 = 1;

/// Largest encoded envelope [`Envelope::decode`] accepts. Bulk data moves as
/// content-addressed chunks, never inside envelopes.
pub const MAX_ENVELOPE_BYTES: usize = 4 << 20;

const DOMAIN: &[u8] = b"p2pc envelope v1\0";

/// A signed message. Build one with [`Envelope::seal`]; check one with
/// [`Envelope::open`].
#[derive(Clone, PartialEq, Message)]
pub struct Envelope {
    /// Format version; [`ENVELOPE_VERSION`].
    #[prost(uint32, tag = "1")]
    pub version: u32,
    /// What the payload is, e.g. `p2pc/task/1`.
    #[prost(string, tag = "2")]
    pub kind: String,
    /// The author's Ed25519 public key (32 bytes).
    #[prost(bytes = "vec", tag = "3")]
    pub author: Vec<u8>,
    /// Strictly increasing per author and kind; a repeat is a replay.
    #[prost(uint64, tag = "4")]
    pub sequence: u64,
    /// The message itself.
    #[prost(bytes = "vec", tag = "5")]
    pub payload: Vec<u8>,
    /// Ed25519 signature (64 bytes) over the other fields.
    #[prost(bytes = "vec", tag = "6")]
    pub signature: Vec<u8>,
}

/// Why an envelope was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Larger than [`MAX_ENVELOPE_BYTES`].
    #[error("envelope of {0} bytes is over the {MAX_ENVELOPE_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not a protobuf envelope.
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// A version this node does not speak.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u32),
    /// Sealed as another kind of message.
    #[error("envelope holds a {found:?} message where a {expected:?} was expected")]
    WrongKind {
        /// What the envelope says it holds.
        found: String,
        /// What the receiver asked for.
        expected: String,
    },
    /// The author field is not an Ed25519 key.
    #[error("envelope author is not a valid Ed25519 key")]
    BadAuthor,
    /// The signature does not match the contents.
    #[error("envelope signature does not verify: it was forged or altered")]
    BadSignature,
    /// The sequence number was seen before.
    #[error(
        "replayed envelope: sequence {sequence} from {author} is not above the last seen, {last}"
    )]
    Replayed {
        /// The author.
        author: PublicKey,
        /// The envelope's sequence number.
        sequence: u64,
        /// The highest sequence number already accepted.
        last: u64,
    },
}

/// The verified contents of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened<'a> {
    /// Who signed it.
    pub author: PublicKey,
    /// What it holds.
    pub kind: &'a str,
    /// Its sequence number.
    pub sequence: u64,
    /// The payload.
    pub payload: &'a [u8],
}

impl Envelope {
    /// Signs `payload` as a message of `kind` with sequence number
    /// `sequence`.
    pub fn seal(key: &SecretKey, kind: &str, sequence: u64, payload: Vec<u8>) -> Self {
        let author = key.public();
        let signature = key.sign(&signed_bytes(kind, &author, sequence, &payload));
        Self {
            version: ENVELOPE_VERSION,
            kind: kind.to_owned(),
            author: author.to_bytes().to_vec(),
            sequence,
            payload,
            signature: signature.0.to_vec(),
        }
    }

    /// Decodes an envelope from the wire, bounded in size. Decoding checks
    /// nothing cryptographic; call [`open`](Self::open).
    pub fn decode_bounded(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge(bytes.len()));
        }
        Self::decode(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))
    }

    /// Verifies the envelope is a `kind` message signed by its author and
    /// returns its contents. Replay is checked separately, by the
    /// receiver's [`ReplayGuard`].
    pub fn open(&self, kind: &str) -> Result<Opened<'_>, EnvelopeError> {
        if self.version != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(self.version));
        }
        if self.kind != kind {
            return Err(EnvelopeError::WrongKind {
                found: self.kind.clone(),
                expected: kind.to_owned(),
            });
        }
        let author = PublicKey::from_bytes(&self.author).map_err(|_| EnvelopeError::BadAuthor)?;
        let signature: [u8; 64] = self
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| EnvelopeError::BadSignature)?;
        author
            .verify(
                &signed_bytes(&self.kind, &author, self.sequence, &self.payload),
                &Signature(signature),
            )
            .map_err(|_| EnvelopeError::BadSignature)?;
        Ok(Opened {
            author,
            kind: &self.kind,
            sequence: self.sequence,
            payload: &self.payload,
        })
    }
}

/// The exact bytes signed: a domain tag, then every field, each
/// length-prefixed, so no two different envelopes sign the same bytes.
fn signed_bytes(kind: &str, author: &PublicKey, sequence: u64, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + kind.len() + payload.len() + 64);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&(kind.len() as u64).to_be_bytes());
    m.extend_from_slice(kind.as_bytes());
    m.extend_from_slice(&author.to_bytes());
    m.extend_from_slice(&sequence.to_be_bytes());
    m.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    m.extend_from_slice(payload);
    m
}

/// Remembers the highest sequence number accepted per author and kind, and
/// refuses anything not above it.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    last: HashMap<(PublicKey, String), u64>,
}

impl ReplayGuard {
    /// An empty guard.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `opened` if its sequence number is above every one seen from
    /// its author for its kind, and records it.
    pub fn accept(&mut self, opened: &Opened<'_>) -> Result<(), EnvelopeError> {
        let key = (opened.author, opened.kind.to_owned());
        match self.last.get(&key) {
            Some(&last) if opened.sequence <= last => Err(EnvelopeError::Replayed {
                author: opened.author,
                sequence: opened.sequence,
                last,
            }),
            _ => {
                self.last.insert(key, opened.sequence);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_envelopes_open_and_altered_ones_do_not() {
        let key = SecretKey::generate();
        let env = Envelope::seal(&key, "p2pc/test/1", 7, b"payload".to_vec());
        let wire = env.encode_to_vec();
        let back = Envelope::decode_bounded(&wire).expect("decodes");
        let opened = back.open("p2pc/test/1").expect("opens");
        assert_eq!(
            (opened.author, opened.sequence, opened.payload),
            (key.public(), 7, &b"payload"[..])
        );

        assert!(matches!(
            back.open("p2pc/other/1"),
            Err(EnvelopeError::WrongKind { .. })
        ));

        // Flip every byte of the wire form: never a valid envelope with
        // other contents.
        for i in 0..wire.len() {
            let mut bad = wire.clone();
            bad[i] ^= 0x01;
            if let Ok(env) = Envelope::decode_bounded(&bad) {
                assert!(
                    env.open("p2pc/test/1").is_err(),
                    "byte {i} flipped still opens"
                );
            }
        }

        // Another key cannot claim authorship.
        let mut forged = env.clone();
        forged.author = SecretKey::generate().public().to_bytes().to_vec();
        assert_eq!(forged.open("p2pc/test/1"), Err(EnvelopeError::BadSignature));
    }

    #[test]
    fn replays_are_refused() {
        let key = SecretKey::generate();
        let mut guard = ReplayGuard::new();
        let e1 = Envelope::seal(&key, "k", 1, vec![]);
        let e2 = Envelope::seal(&key, "k", 2, vec![]);
        guard.accept(&e1.open("k").expect("opens")).expect("first");
        guard.accept(&e2.open("k").expect("opens")).expect("second");
        assert!(matches!(
            guard.accept(&e1.open("k").expect("opens")),
            Err(EnvelopeError::Replayed { last: 2, .. })
        ));
        assert!(matches!(
            guard.accept(&e2.open("k").expect("opens")),
            Err(EnvelopeError::Replayed { .. })
        ));
    }

    #[test]
    fn oversized_input_is_refused_before_decoding() {
        let big = vec![0u8; MAX_ENVELOPE_BYTES + 1];
        assert_eq!(
            Envelope::decode_bounded(&big),
            Err(EnvelopeError::TooLarge(MAX_ENVELOPE_BYTES + 1))
        );
    }
}
