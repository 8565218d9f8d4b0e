//! Sealed blobs: bytes encrypted once under a fresh content key, in a
//! stream of authenticated segments, with that key wrapped by HPKE
//! (RFC 9180: X25519, HKDF-SHA256, ChaCha20-Poly1305) for each reader.
//!
//! A sealed blob is an ordinary blob to the store and the overlay: it is
//! chunked, named by its hash and served by any provider. Only a holder of
//! the content key reads it, and the key travels only wrapped to a
//! reader's X25519 key, bound to what the reader is to use it for.
//!
//! Format (`p2pc/sealed/1`, `docs/protocols/sealing.md`): a 64-byte header
//! (magic, version, segment size, a random salt, and a commitment to the
//! content key), then the plaintext in segments of [`SEGMENT`] bytes, each
//! encrypted with ChaCha20-Poly1305 under the content key with a nonce of
//! its index and a last-segment flag and the header as associated data.
//! The last segment is always shorter than [`SEGMENT`] (empty when the
//! plaintext is a whole number of segments), so a reader knows which one
//! is last from its length alone. Altered, dropped, reordered, truncated
//! or appended segments each fail with their own error.
//!
//! Not here: who reads what (the node binds each wrap to a job, a task, a
//! submitter and a reader), and key storage beyond [`SealKey`]'s file.

use std::io::{self, Read};
use std::path::Path;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use zeroize::Zeroizing;

use crate::SecretKey;

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Wrap = hpke::aead::ChaCha20Poly1305;

/// Plaintext bytes per segment.
pub const SEGMENT: usize = 64 * 1024;
/// Bytes a segment's authentication tag adds.
pub const TAG: usize = 16;
/// Bytes of the header.
pub const HEADER_LEN: usize = 64;
const MAGIC: &[u8; 8] = b"p2pcseal";
const VERSION: u8 = 1;
const SEGMENT_LOG2: u8 = 16;
/// HPKE's `info`: what every wrap of this format is for.
const WRAP_INFO: &[u8] = b"p2pc/sealed/1 content key";

/// Why a sealed blob or a wrapped key was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealError {
    /// Not a sealed blob of a format this build reads.
    #[error("not a sealed blob: {0}")]
    NotSealed(&'static str),
    /// The key given is not the one the blob was sealed with.
    #[error("the sealed blob was not sealed with this key")]
    WrongKey,
    /// A segment failed authentication: altered, moved, or from another
    /// blob.
    #[error(
        "sealed blob: segment {0} fails authentication (altered, reordered, or from another blob)"
    )]
    Tampered(u64),
    /// The blob ends before its last segment.
    #[error("sealed blob: truncated after segment {0} (its last segment is missing)")]
    Truncated(u64),
    /// A wrapped key that does not open with this reader's key for this
    /// use: for another reader, another task, or altered.
    #[error("the wrapped key does not open: it is for another reader or another task, or altered")]
    Unwrap,
    /// A public key or wrapped key of the wrong shape.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The seal key file could not be read or written.
    #[error("seal key file {path}: {message}")]
    KeyFile {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

impl From<SealError> for io::Error {
    fn from(e: SealError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// The error inside an I/O error from an [`OpeningReader`], if it is one.
pub fn seal_error(e: &io::Error) -> Option<&SealError> {
    e.get_ref().and_then(|inner| inner.downcast_ref())
}

/// The random key one blob is sealed under.
#[derive(Clone)]
pub struct ContentKey(Zeroizing<[u8; 32]>);

impl ContentKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        getrandom::fill(k.as_mut()).expect("the OS random source is available");
        Self(k)
    }

    /// The key with these bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// What the header commits to: readers check it, so one ciphertext
    /// cannot open under two keys to two plaintexts (ChaCha20-Poly1305
    /// alone does not rule that out).
    fn commitment(&self) -> [u8; 32] {
        blake3::derive_key("p2pc/sealed/1 key commitment", self.0.as_ref())
    }

    /// A keyed digest of `plaintext` under a key derived from this one.
    /// Workers name a sealed task's output by the digest under the input's
    /// key: replicas of one task agree on it, and nobody without the key
    /// can test a guess of the output against it.
    pub fn digest(&self, plaintext: &[u8]) -> [u8; 32] {
        let mut h = self.digester();
        h.update(plaintext);
        *h.finalize().as_bytes()
    }

    /// [`ContentKey::digest`] of bytes fed a piece at a time.
    pub fn digester(&self) -> blake3::Hasher {
        let key = blake3::derive_key("p2pc/sealed/1 output digest", self.0.as_ref());
        blake3::Hasher::new_keyed(&key)
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(self.0.as_ref().into())
    }
}

impl std::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentKey(..)")
    }
}

/// The size of the sealed form of `len` plaintext bytes.
pub fn sealed_len(len: u64) -> u64 {
    let segment = SEGMENT as u64;
    let full = len / segment;
    HEADER_LEN as u64 + full * (segment + TAG as u64) + (len % segment) + TAG as u64
}

fn nonce(index: u64, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(last);
    n.into()
}

fn header(key: &ContentKey) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8] = VERSION;
    h[9] = SEGMENT_LOG2;
    getrandom::fill(&mut h[16..32]).expect("the OS random source is available");
    h[32..].copy_from_slice(&key.commitment());
    h
}

fn check_header(h: &[u8], key: &ContentKey) -> Result<(), SealError> {
    if &h[..8] != MAGIC {
        return Err(SealError::NotSealed("no p2pcseal magic"));
    }
    if h[8] != VERSION || h[9] != SEGMENT_LOG2 || h[10..16] != [0; 6] {
        return Err(SealError::NotSealed(
            "a version or segment size this build does not read",
        ));
    }
    if h[32..HEADER_LEN] != key.commitment() {
        return Err(SealError::WrongKey);
    }
    Ok(())
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Seals what it reads from `R`: reading it yields the sealed blob, one
/// segment in memory at a time.
pub struct SealingReader<R> {
    input: R,
    cipher: ChaCha20Poly1305,
    header: [u8; HEADER_LEN],
    index: u64,
    /// Sealed bytes ready to hand out, and how many were handed out.
    out: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<R: Read> SealingReader<R> {
    /// Seals `input` under `key`.
    pub fn new(input: R, key: &ContentKey) -> Self {
        let header = header(key);
        Self {
            input,
            cipher: key.cipher(),
            header,
            index: 0,
            out: header.to_vec(),
            pos: 0,
            done: false,
        }
    }

    fn next_segment(&mut self) -> io::Result<()> {
        self.out.clear();
        self.out.resize(SEGMENT, 0);
        let n = read_full(&mut self.input, &mut self.out)?;
        self.out.truncate(n);
        let last = n < SEGMENT;
        let tag = self
            .cipher
            .encrypt_in_place_detached(&nonce(self.index, last), &self.header, &mut self.out)
            .map_err(|_| io::Error::other("segment encryption failed"))?;
        self.out.extend_from_slice(&tag);
        self.pos = 0;
        self.index += 1;
        self.done = last;
        Ok(())
    }
}

impl<R: Read> Read for SealingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.out.len() {
            if self.done {
                return Ok(0);
            }
            self.next_segment()?;
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Opens a sealed blob read from `R`: reading it yields the plaintext,
/// each segment checked before any of its bytes are handed out. Errors
/// are I/O errors of kind `InvalidData` carrying a [`SealError`]
/// ([`seal_error`]).
pub struct OpeningReader<R> {
    input: R,
    cipher: ChaCha20Poly1305,
    key: ContentKey,
    header: Option<[u8; HEADER_LEN]>,
    index: u64,
    out: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<R: Read> OpeningReader<R> {
    /// Opens `input` with `key`.
    pub fn new(input: R, key: &ContentKey) -> Self {
        Self {
            input,
            cipher: key.cipher(),
            key: key.clone(),
            header: None,
            index: 0,
            out: Vec::with_capacity(SEGMENT + TAG),
            pos: 0,
            done: false,
        }
    }

    fn read_header(&mut self) -> io::Result<[u8; HEADER_LEN]> {
        let mut h = [0u8; HEADER_LEN];
        if read_full(&mut self.input, &mut h)? < HEADER_LEN {
            return Err(SealError::NotSealed("shorter than its header").into());
        }
        check_header(&h, &self.key)?;
        Ok(h)
    }

    fn next_segment(&mut self, header: [u8; HEADER_LEN]) -> io::Result<()> {
        self.out.clear();
        self.out.resize(SEGMENT + TAG, 0);
        let n = read_full(&mut self.input, &mut self.out)?;
        if n < TAG {
            return Err(SealError::Truncated(self.index.saturating_sub(1)).into());
        }
        let last = n < SEGMENT + TAG;
        let mut tag = [0u8; TAG];
        tag.copy_from_slice(&self.out[n - TAG..n]);
        self.out.truncate(n - TAG);
        self.cipher
            .decrypt_in_place_detached(
                &nonce(self.index, last),
                &header,
                &mut self.out,
                (&tag).into(),
            )
            .map_err(|_| SealError::Tampered(self.index))?;
        self.pos = 0;
        self.index += 1;
        self.done = last;
        Ok(())
    }
}

impl<R: Read> Read for OpeningReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let header = match self.header {
            Some(h) => h,
            None => {
                let h = self.read_header()?;
                self.header = Some(h);
                h
            }
        };
        while self.pos == self.out.len() {
            if self.done {
                return Ok(0);
            }
            self.next_segment(header)?;
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Seals `plaintext` under `key`, in memory: the same bytes as a
/// [`SealingReader`], without its segment buffer.
pub fn seal_bytes(key: &ContentKey, plaintext: &[u8]) -> Vec<u8> {
    let cipher = key.cipher();
    let header = header(key);
    let mut out =
        Vec::with_capacity(usize::try_from(sealed_len(plaintext.len() as u64)).unwrap_or(0));
    out.extend_from_slice(&header);
    let full = plaintext.len() / SEGMENT;
    for i in 0..=full {
        let start = i * SEGMENT;
        let end = (start + SEGMENT).min(plaintext.len());
        let at = out.len();
        out.extend_from_slice(&plaintext[start..end]);
        let tag = cipher
            .encrypt_in_place_detached(&nonce(i as u64, i == full), &header, &mut out[at..])
            .expect("a segment encrypts");
        out.extend_from_slice(&tag);
    }
    out
}

/// Opens a sealed blob held in memory, with the checks of an
/// [`OpeningReader`].
pub fn open_bytes(key: &ContentKey, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    let Some(header) = sealed.get(..HEADER_LEN) else {
        return Err(SealError::NotSealed("shorter than its header"));
    };
    check_header(header, key)?;
    let cipher = key.cipher();
    let mut body = &sealed[HEADER_LEN..];
    let mut out = Vec::with_capacity(body.len());
    let mut index = 0u64;
    loop {
        if body.len() < TAG {
            return Err(SealError::Truncated(index.saturating_sub(1)));
        }
        let n = body.len().min(SEGMENT + TAG);
        let last = n < SEGMENT + TAG;
        let (segment, rest) = body.split_at(n);
        let (text, tag) = segment.split_at(n - TAG);
        let at = out.len();
        out.extend_from_slice(text);
        cipher
            .decrypt_in_place_detached(&nonce(index, last), header, &mut out[at..], tag.into())
            .map_err(|_| SealError::Tampered(index))?;
        if last {
            return Ok(out);
        }
        body = rest;
        index += 1;
    }
}

/// A reader's X25519 public key (32 bytes), published in its offer.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SealPublic([u8; 32]);

impl SealPublic {
    /// The key's 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// The key with these bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        let b: [u8; 32] = bytes
            .try_into()
            .map_err(|_| SealError::Malformed("seal key: not 32 bytes"))?;
        <Kem as hpke::Kem>::PublicKey::from_bytes(&b)
            .map_err(|_| SealError::Malformed("seal key"))?;
        Ok(Self(b))
    }

    fn hpke(&self) -> <Kem as hpke::Kem>::PublicKey {
        <Kem as hpke::Kem>::PublicKey::from_bytes(&self.0).expect("checked when made")
    }
}

impl std::fmt::Debug for SealPublic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealPublic({})", hex::encode(&self.0[..8]))
    }
}

/// A content key wrapped for one reader: HPKE's encapsulated key and the
/// sealed content key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    /// HPKE's encapsulated key (32 bytes).
    pub enc: Vec<u8>,
    /// The content key, sealed (32 bytes and a tag).
    pub ciphertext: Vec<u8>,
}

/// Wraps `key` for `reader`, bound to `binding` (what the reader is to
/// use it for) and to `blob` (the sealed blob's name): it opens only with
/// the same binding and blob. With `reply`, the reader also learns a key
/// to wrap its answer's key with ([`ReplyKey`]).
pub fn wrap(
    reader: &SealPublic,
    key: &ContentKey,
    reply: Option<&ReplyKey>,
    blob: &[u8; 32],
    binding: &[u8],
) -> WrappedKey {
    PreparedWrap::new(reader).wrap(key, reply, blob, binding)
}

/// The public-key half of a [`wrap`] for one reader, done ahead of time:
/// HPKE's encapsulation (an ephemeral X25519 key and the agreement with
/// the reader's key) depends only on the reader, so a sender can prepare
/// it off the path of the task it will carry. Each is used once.
pub struct PreparedWrap {
    reader: SealPublic,
    enc: Vec<u8>,
    ctx: hpke::aead::AeadCtxS<Wrap, Kdf, Kem>,
}

impl PreparedWrap {
    /// Prepares a wrap for `reader`.
    pub fn new(reader: &SealPublic) -> Self {
        let (enc, ctx) =
            hpke::setup_sender::<Wrap, Kdf, Kem>(&OpModeS::Base, &reader.hpke(), WRAP_INFO)
                .expect("a checked key encapsulates");
        Self {
            reader: *reader,
            enc: enc.to_bytes().to_vec(),
            ctx,
        }
    }

    /// The reader it was prepared for.
    pub fn reader(&self) -> SealPublic {
        self.reader
    }

    /// [`wrap`], with the encapsulation already done: the same bytes on
    /// the wire.
    pub fn wrap(
        mut self,
        key: &ContentKey,
        reply: Option<&ReplyKey>,
        blob: &[u8; 32],
        binding: &[u8],
    ) -> WrappedKey {
        let mut plain = Zeroizing::new(Vec::with_capacity(64));
        plain.extend_from_slice(key.0.as_ref());
        if let Some(r) = reply {
            plain.extend_from_slice(r.0.as_ref());
        }
        let ciphertext = self
            .ctx
            .seal(&plain, &wrap_aad(blob, binding))
            .expect("a fresh context seals one message");
        WrappedKey {
            enc: self.enc,
            ciphertext,
        }
    }
}

/// A secret a request carries inside its HPKE wrap, so the answer's key
/// can be wrapped back to the requester with a symmetric cipher rather
/// than a second HPKE exchange (as Oblivious HTTP answers a request
/// encrypted with HPKE). The requester derives it from its own seal key
/// and the request ([`SealKey::reply_key`]), so it need keep nothing to
/// open the answer later.
#[derive(Clone)]
pub struct ReplyKey(Zeroizing<[u8; 32]>);

impl ReplyKey {
    /// Wraps `key` (the answer's content key) for the requester, bound to
    /// `blob` and `binding` like an HPKE wrap.
    pub fn wrap(&self, key: &ContentKey, blob: &[u8; 32], binding: &[u8]) -> WrappedKey {
        use chacha20poly1305::aead::Aead;
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).expect("the OS random source is available");
        let ciphertext = chacha20poly1305::XChaCha20Poly1305::new(self.0.as_ref().into())
            .encrypt(
                (&nonce).into(),
                chacha20poly1305::aead::Payload {
                    msg: key.0.as_ref(),
                    aad: &wrap_aad(blob, binding),
                },
            )
            .expect("encrypting 32 bytes cannot fail");
        WrappedKey {
            enc: nonce.to_vec(),
            ciphertext,
        }
    }

    /// Opens what [`ReplyKey::wrap`] made, for the same blob and binding.
    pub fn unwrap(
        &self,
        wrapped: &WrappedKey,
        blob: &[u8; 32],
        binding: &[u8],
    ) -> Result<ContentKey, SealError> {
        use chacha20poly1305::aead::Aead;
        let nonce: [u8; 24] = wrapped
            .enc
            .as_slice()
            .try_into()
            .map_err(|_| SealError::Malformed("wrapped reply key"))?;
        let key = Zeroizing::new(
            chacha20poly1305::XChaCha20Poly1305::new(self.0.as_ref().into())
                .decrypt(
                    (&nonce).into(),
                    chacha20poly1305::aead::Payload {
                        msg: &wrapped.ciphertext,
                        aad: &wrap_aad(blob, binding),
                    },
                )
                .map_err(|_| SealError::Unwrap)?,
        );
        let bytes: [u8; 32] = key
            .as_slice()
            .try_into()
            .map_err(|_| SealError::Malformed("wrapped key: not a 32-byte key"))?;
        Ok(ContentKey::from_bytes(bytes))
    }
}

impl std::fmt::Debug for ReplyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplyKey(..)")
    }
}

fn wrap_aad(blob: &[u8; 32], binding: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(32 + binding.len());
    aad.extend_from_slice(blob);
    aad.extend_from_slice(binding);
    aad
}

/// An X25519 key a node reads sealed blobs with. Its own key, not the
/// node's Ed25519 key reused; kept in the keystore directory, encrypted
/// under a key derived from the node key, so it is as safe at rest as the
/// node key is.
pub struct SealKey {
    secret: <Kem as hpke::Kem>::PrivateKey,
    public: SealPublic,
    /// Derives reply keys; from the secret, so it lasts as long as it.
    reply_root: Zeroizing<[u8; 32]>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SealKeyFile {
    format: String,
    version: u32,
    public_key: String,
    created_unix: u64,
    nonce: String,
    sealed_secret: String,
}

const KEY_FILE_FORMAT: &str = "p2pc-seal-key";

impl SealKey {
    /// A fresh key.
    pub fn generate() -> Self {
        let mut ikm = Zeroizing::new([0u8; 32]);
        getrandom::fill(ikm.as_mut()).expect("the OS random source is available");
        Self::from_secret(&ikm)
    }

    fn from_secret(bytes: &[u8; 32]) -> Self {
        let secret = <Kem as hpke::Kem>::PrivateKey::from_bytes(bytes)
            .expect("every 32 bytes are an X25519 secret");
        let public = SealPublic(<Kem as hpke::Kem>::sk_to_pk(&secret).to_bytes().into());
        let reply_root = Zeroizing::new(blake3::derive_key("p2pc/sealed/1 reply keys", bytes));
        Self {
            secret,
            public,
            reply_root,
        }
    }

    /// The public half.
    pub fn public(&self) -> SealPublic {
        self.public
    }

    /// The reply key this node uses for the request `context` names: the
    /// same every time, so an answer opens after a restart too.
    pub fn reply_key(&self, context: &[u8]) -> ReplyKey {
        let mut h = blake3::Hasher::new_keyed(&self.reply_root);
        h.update(context);
        ReplyKey(Zeroizing::new(*h.finalize().as_bytes()))
    }

    /// Opens a key wrapped for this reader, for `binding` and `blob`, and
    /// the reply key that came with it, if one did.
    pub fn unwrap(
        &self,
        wrapped: &WrappedKey,
        blob: &[u8; 32],
        binding: &[u8],
    ) -> Result<(ContentKey, Option<ReplyKey>), SealError> {
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&wrapped.enc)
            .map_err(|_| SealError::Malformed("wrapped key"))?;
        let key = Zeroizing::new(
            hpke::single_shot_open::<Wrap, Kdf, Kem>(
                &OpModeR::Base,
                &self.secret,
                &enc,
                WRAP_INFO,
                &wrapped.ciphertext,
                &wrap_aad(blob, binding),
            )
            .map_err(|_| SealError::Unwrap)?,
        );
        let (content, reply) = match key.len() {
            32 => (&key[..], None),
            64 => (&key[..32], Some(&key[32..])),
            _ => {
                return Err(SealError::Malformed(
                    "wrapped key: not one or two 32-byte keys",
                ));
            }
        };
        let bytes: [u8; 32] = content.try_into().expect("32 bytes");
        let reply = reply.map(|r| {
            let r: [u8; 32] = r.try_into().expect("32 bytes");
            ReplyKey(Zeroizing::new(r))
        });
        Ok((ContentKey::from_bytes(bytes), reply))
    }

    /// The seal key kept at `path`, created there (private to this user)
    /// if there is none. `node` is the node's key, which protects it.
    pub fn load_or_create(path: &Path, node: &SecretKey) -> Result<Self, SealError> {
        let fail = |message: String| SealError::KeyFile {
            path: path.display().to_string(),
            message,
        };
        let wrap_key = Zeroizing::new(blake3::derive_key(
            "p2pc seal key file v1",
            node.seed().as_ref(),
        ));
        let cipher = chacha20poly1305::XChaCha20Poly1305::new(wrap_key.as_ref().into());
        match std::fs::read(path) {
            Ok(bytes) => {
                let file: SealKeyFile =
                    serde_json::from_slice(&bytes).map_err(|e| fail(format!("damaged: {e}")))?;
                if file.format != KEY_FILE_FORMAT || file.version != 1 {
                    return Err(fail(format!(
                        "format {} version {} is not one this build reads",
                        file.format, file.version
                    )));
                }
                let nonce =
                    hex::decode(&file.nonce).map_err(|_| fail("nonce is not hex".into()))?;
                let nonce: [u8; 24] = nonce
                    .try_into()
                    .map_err(|_| fail("nonce is not 24 bytes".into()))?;
                let mut secret = Zeroizing::new(
                    hex::decode(&file.sealed_secret)
                        .map_err(|_| fail("sealed_secret is not hex".into()))?,
                );
                use chacha20poly1305::aead::Aead;
                let opened = Zeroizing::new(
                    cipher
                        .decrypt(
                            (&nonce).into(),
                            chacha20poly1305::aead::Payload {
                                msg: &secret,
                                aad: file.public_key.as_bytes(),
                            },
                        )
                        .map_err(|_| {
                            fail("does not open with this node's key (it belongs to another node key, or is damaged)".into())
                        })?,
                );
                secret.clear();
                let bytes: [u8; 32] = opened
                    .as_slice()
                    .try_into()
                    .map_err(|_| fail("the secret is not 32 bytes".into()))?;
                let key = Self::from_secret(&bytes);
                if hex::encode(key.public.0) != file.public_key {
                    return Err(fail("its public key does not match its secret".into()));
                }
                Ok(key)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut secret = Zeroizing::new([0u8; 32]);
                getrandom::fill(secret.as_mut()).expect("the OS random source is available");
                let key = Self::from_secret(&secret);
                let public_key = hex::encode(key.public.0);
                let mut nonce = [0u8; 24];
                getrandom::fill(&mut nonce).expect("the OS random source is available");
                use chacha20poly1305::aead::Aead;
                let sealed = cipher
                    .encrypt(
                        (&nonce).into(),
                        chacha20poly1305::aead::Payload {
                            msg: secret.as_ref(),
                            aad: public_key.as_bytes(),
                        },
                    )
                    .map_err(|_| fail("cannot encrypt".into()))?;
                let file = SealKeyFile {
                    format: KEY_FILE_FORMAT.into(),
                    version: 1,
                    public_key,
                    created_unix: crate::now_unix(),
                    nonce: hex::encode(nonce),
                    sealed_secret: hex::encode(sealed),
                };
                let json = serde_json::to_vec_pretty(&file).expect("key files serialize");
                write_private(path, &json).map_err(|e| fail(e.to_string()))?;
                Ok(key)
            }
            Err(e) => Err(fail(e.to_string())),
        }
    }
}

/// Writes a new file readable by this user only, atomically.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist_noclobber(path).map_err(|e| e.error)?;
    Ok(())
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealKey({:?})", self.public)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn round_trips_at_every_boundary() {
        let key = ContentKey::generate();
        for len in [
            0,
            1,
            SEGMENT - 1,
            SEGMENT,
            SEGMENT + 1,
            3 * SEGMENT,
            3 * SEGMENT + 7,
        ] {
            let plain = sample(len);
            let sealed = seal_bytes(&key, &plain);
            assert_eq!(sealed.len() as u64, sealed_len(len as u64), "{len}");
            assert_eq!(open_bytes(&key, &sealed).expect("opens"), plain, "{len}");
            // The streaming reader reads what the in-memory sealer wrote,
            // and the in-memory opener what the streaming sealer wrote.
            let mut streamed = Vec::new();
            OpeningReader::new(sealed.as_slice(), &key)
                .read_to_end(&mut streamed)
                .expect("streams");
            assert_eq!(streamed, plain, "{len}");
            let mut resealed = Vec::new();
            SealingReader::new(plain.as_slice(), &key)
                .read_to_end(&mut resealed)
                .expect("seals");
            assert_eq!(open_bytes(&key, &resealed).expect("opens"), plain, "{len}");
        }
    }

    #[test]
    fn refuses_every_kind_of_damage() {
        let key = ContentKey::generate();
        let plain = sample(3 * SEGMENT + 100);
        let sealed = seal_bytes(&key, &plain);
        let seg = SEGMENT + TAG;
        let body = |i: usize| HEADER_LEN + i * seg;

        let mut flipped = sealed.clone();
        flipped[body(1) + 5] ^= 1;
        assert_eq!(open_bytes(&key, &flipped), Err(SealError::Tampered(1)));

        let mut dropped = sealed[..body(1)].to_vec();
        dropped.extend_from_slice(&sealed[body(2)..]);
        assert_eq!(open_bytes(&key, &dropped), Err(SealError::Tampered(1)));

        let mut swapped = sealed[..body(0)].to_vec();
        swapped.extend_from_slice(&sealed[body(1)..body(2)]);
        swapped.extend_from_slice(&sealed[body(0)..body(1)]);
        swapped.extend_from_slice(&sealed[body(2)..]);
        assert_eq!(open_bytes(&key, &swapped), Err(SealError::Tampered(0)));

        assert_eq!(
            open_bytes(&key, &sealed[..body(3)]),
            Err(SealError::Truncated(2))
        );
        // Bytes appended run into the last segment, which then fails.
        let mut longer = sealed.clone();
        longer.push(0);
        assert_eq!(open_bytes(&key, &longer), Err(SealError::Tampered(3)));

        let mut header = sealed.clone();
        header[20] ^= 1;
        assert_eq!(open_bytes(&key, &header), Err(SealError::Tampered(0)));

        assert_eq!(
            open_bytes(&ContentKey::generate(), &sealed),
            Err(SealError::WrongKey)
        );
        assert!(matches!(
            open_bytes(&key, b"plain"),
            Err(SealError::NotSealed(_))
        ));

        // A segment from another blob under the same key still fails: the
        // header (with its random salt) is bound into every segment.
        let other = seal_bytes(&key, &plain);
        let mut mixed = sealed[..body(1)].to_vec();
        mixed.extend_from_slice(&other[body(1)..]);
        assert_eq!(open_bytes(&key, &mixed), Err(SealError::Tampered(1)));
    }

    #[test]
    fn wraps_open_only_for_their_reader_and_binding() {
        let reader = SealKey::generate();
        let other = SealKey::generate();
        let key = ContentKey::generate();
        let blob = [7u8; 32];
        let reply = reader.reply_key(b"request");
        let w = wrap(&reader.public(), &key, Some(&reply), &blob, b"task a");
        let (opened, got) = reader.unwrap(&w, &blob, b"task a").expect("opens");
        assert_eq!(opened.0.as_ref(), key.0.as_ref());
        let got = got.expect("the reply key came too");
        assert_eq!(got.0.as_ref(), reply.0.as_ref());
        // The answer's key, wrapped back under the reply key.
        let answer = ContentKey::generate();
        let back = got.wrap(&answer, &[9; 32], b"answer");
        let opened = reader
            .reply_key(b"request")
            .unwrap(&back, &[9; 32], b"answer")
            .expect("the requester re-derives its reply key");
        assert_eq!(opened.0.as_ref(), answer.0.as_ref());
        assert_eq!(
            reader
                .reply_key(b"other")
                .unwrap(&back, &[9; 32], b"answer")
                .err(),
            Some(SealError::Unwrap)
        );
        assert_eq!(
            got.unwrap(&back, &[9; 32], b"other binding").err(),
            Some(SealError::Unwrap)
        );
        assert_eq!(
            other.unwrap(&w, &blob, b"task a").err(),
            Some(SealError::Unwrap)
        );
        assert_eq!(
            reader.unwrap(&w, &blob, b"task b").err(),
            Some(SealError::Unwrap)
        );
        assert_eq!(
            reader.unwrap(&w, &[8; 32], b"task a").err(),
            Some(SealError::Unwrap)
        );
        let prepared = PreparedWrap::new(&reader.public()).wrap(&key, None, &blob, b"task a");
        let (opened, none) = reader
            .unwrap(&prepared, &blob, b"task a")
            .expect("prepared opens");
        assert_eq!(opened.0.as_ref(), key.0.as_ref());
        assert!(none.is_none());
        let mut bent = w.clone();
        bent.ciphertext[0] ^= 1;
        assert_eq!(
            reader.unwrap(&bent, &blob, b"task a").err(),
            Some(SealError::Unwrap)
        );
    }

    #[test]
    fn the_key_file_survives_a_restart_and_only_for_its_node() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.seal");
        let node = SecretKey::generate();
        let a = SealKey::load_or_create(&path, &node).expect("created");
        let b = SealKey::load_or_create(&path, &node).expect("loaded");
        assert_eq!(a.public(), b.public());
        let err = SealKey::load_or_create(&path, &SecretKey::generate()).expect_err("other node");
        assert!(err.to_string().contains("does not open"), "{err}");
    }
}
