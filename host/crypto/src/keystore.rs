//! The keystore: one JSON file per key in a directory, the private key
//! encrypted with a passphrase (argon2id key derivation, XChaCha20-Poly1305).
//!
//! Files are created once and never rewritten: creating a key writes a
//! temporary file, syncs it, and links it into place only if no key of that
//! name exists. A wrong passphrase, a damaged file or an unknown version is
//! an error that leaves the file untouched. The format is documented in
//! `docs/keystore-format.md`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{PublicKey, SecretKey};

const FORMAT: &str = "p2pc-key";
const VERSION: u32 = 1;
const EXTENSION: &str = "key";

/// Argon2id cost parameters. Stored in each key file, so a key is always
/// unlocked with the parameters it was locked with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl KdfParams {
    /// The default for new keys: 64 MiB, 3 passes, 1 lane (above the OWASP
    /// minimum of 19 MiB and 2 passes; about a quarter second here).
    pub const DEFAULT: KdfParams = KdfParams {
        m_cost_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 1,
    };

    /// The most a key file may demand, so a hostile file cannot make
    /// unlocking exhaust memory or time.
    const MAX: KdfParams = KdfParams {
        m_cost_kib: 1024 * 1024,
        t_cost: 16,
        p_cost: 8,
    };

    /// Cheap parameters for tests only.
    #[doc(hidden)]
    pub const INSECURE_FAST: KdfParams = KdfParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };

    fn derive(&self, passphrase: &str, salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
        let params = Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| KeystoreError::Corrupt(format!("argon2 parameters: {e}")))?;
        let mut key = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase.as_bytes(), salt, key.as_mut())
            .map_err(|e| KeystoreError::Corrupt(format!("argon2: {e}")))?;
        Ok(key)
    }
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    format: String,
    version: u32,
    name: String,
    public_key: PublicKey,
    created_unix: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encryption: Option<Encryption>,
    /// Present only for keys created with `--insecure-no-passphrase`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    insecure_seed: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Encryption {
    kdf: String,
    kdf_params: KdfParams,
    salt: String,
    cipher: String,
    nonce: String,
    ciphertext: String,
}

/// What the keystore tells about a key without unlocking it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// The key's name in the keystore.
    pub name: String,
    /// Its public key.
    pub public_key: PublicKey,
    /// The libp2p peer id of a node using it.
    pub peer_id: String,
    /// Whether it is protected by a passphrase.
    pub encrypted: bool,
    /// When it was created (seconds since the Unix epoch).
    pub created_unix: u64,
}

/// Why a keystore operation failed. The key file is unchanged in every case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    /// No key of that name.
    #[error("no key named {0:?} in the keystore")]
    NotFound(String),
    /// A key of that name exists and would be overwritten.
    #[error("a key named {0:?} already exists; keys are never overwritten")]
    Exists(String),
    /// Names are file names: letters, digits, `-`, `_`, `.`.
    #[error("invalid key name {0:?}: use letters, digits, '-', '_' and '.' (at most 64)")]
    BadName(String),
    /// The passphrase does not decrypt the key.
    #[error("wrong passphrase for key {0:?}")]
    WrongPassphrase(String),
    /// The key is encrypted and no passphrase was given.
    #[error("key {0:?} is encrypted: a passphrase is needed")]
    PassphraseNeeded(String),
    /// The file is not a readable key file.
    #[error("key file is damaged: {0}")]
    Corrupt(String),
    /// A newer or unknown file format.
    #[error("key file version {0} is not supported (this p2pc reads version {VERSION})")]
    UnsupportedVersion(u32),
    /// The file system said no.
    #[error("keystore I/O on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// A directory of key files.
#[derive(Clone, Debug)]
pub struct Keystore {
    dir: PathBuf,
    kdf: KdfParams,
}

impl Keystore {
    /// Opens (creating if needed, private to this user) the keystore in `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, KeystoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| KeystoreError::Io {
            path: dir.clone(),
            source,
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
                KeystoreError::Io {
                    path: dir.clone(),
                    source,
                }
            })?;
        }
        Ok(Self {
            dir,
            kdf: KdfParams::DEFAULT,
        })
    }

    /// Uses other argon2 parameters for keys created from now on.
    pub fn with_kdf(mut self, kdf: KdfParams) -> Self {
        self.kdf = kdf;
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Generates a key named `name`, encrypted with `passphrase` (or stored
    /// in the clear when `passphrase` is `None`).
    pub fn create(&self, name: &str, passphrase: Option<&str>) -> Result<KeyInfo, KeystoreError> {
        self.store(name, &SecretKey::generate(), passphrase)
    }

    /// Stores an existing secret key under `name`.
    pub fn store(
        &self,
        name: &str,
        key: &SecretKey,
        passphrase: Option<&str>,
    ) -> Result<KeyInfo, KeystoreError> {
        check_name(name)?;
        let path = self.path(name);
        if path.exists() {
            return Err(KeystoreError::Exists(name.to_owned()));
        }
        let public_key = key.public();
        let seed = key.seed();
        let (encryption, insecure_seed) = match passphrase {
            Some(p) => (Some(self.encrypt(name, &public_key, p, &seed)?), None),
            None => (None, Some(hex::encode(seed.as_ref()))),
        };
        let file = KeyFile {
            format: FORMAT.into(),
            version: VERSION,
            name: name.to_owned(),
            public_key,
            created_unix: crate::now_unix(),
            encryption,
            insecure_seed,
        };
        let json = Zeroizing::new(serde_json::to_vec_pretty(&file).expect("key files serialize"));
        self.write_new(&path, name, &json)?;
        Ok(info(&file))
    }

    /// Copies a key file from elsewhere into the keystore under `name`,
    /// byte for byte (so it keeps its encryption). The file is checked
    /// first. The name inside the file stays the one it was created with,
    /// because that name is bound into its ciphertext.
    pub fn import_file(&self, name: &str, from: &Path) -> Result<KeyInfo, KeystoreError> {
        check_name(name)?;
        let bytes = Zeroizing::new(fs::read(from).map_err(|source| KeystoreError::Io {
            path: from.to_owned(),
            source,
        })?);
        let file = parse(&bytes)?;
        let path = self.path(name);
        if path.exists() {
            return Err(KeystoreError::Exists(name.to_owned()));
        }
        self.write_new(&path, name, &bytes)?;
        Ok(KeyInfo {
            name: name.to_owned(),
            ..info(&file)
        })
    }

    /// Every key, sorted by name. Damaged files are reported, not skipped.
    pub fn list(&self) -> Result<Vec<KeyInfo>, KeystoreError> {
        let entries = fs::read_dir(&self.dir).map_err(|source| KeystoreError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut keys = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|source| KeystoreError::Io {
                    path: self.dir.clone(),
                    source,
                })?
                .path();
            if path.extension().is_some_and(|e| e == EXTENSION)
                && let Some(name) = path.file_stem().and_then(|s| s.to_str())
            {
                keys.push(self.info(name)?);
            }
        }
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(keys)
    }

    /// What the keystore knows about `name`, without unlocking it.
    pub fn info(&self, name: &str) -> Result<KeyInfo, KeystoreError> {
        let file = self.read(name)?;
        Ok(KeyInfo {
            name: name.to_owned(),
            ..info(&file)
        })
    }

    /// Whether key `name` needs a passphrase.
    pub fn is_encrypted(&self, name: &str) -> Result<bool, KeystoreError> {
        Ok(self.read(name)?.encryption.is_some())
    }

    /// Decrypts key `name`.
    pub fn unlock(&self, name: &str, passphrase: Option<&str>) -> Result<SecretKey, KeystoreError> {
        let file = self.read(name)?;
        let seed: Zeroizing<[u8; 32]> = match (&file.encryption, &file.insecure_seed) {
            (Some(enc), _) => {
                let passphrase =
                    passphrase.ok_or_else(|| KeystoreError::PassphraseNeeded(name.to_owned()))?;
                decrypt(&file, enc, passphrase)?
            }
            (None, Some(seed_hex)) => {
                let bytes = Zeroizing::new(
                    hex::decode(seed_hex).map_err(|_| corrupt("insecure_seed is not hex"))?,
                );
                Zeroizing::new(
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| corrupt("insecure_seed is not 32 bytes"))?,
                )
            }
            (None, None) => return Err(corrupt("neither encryption nor insecure_seed")),
        };
        let key = SecretKey::from_seed(&seed);
        if key.public() != file.public_key {
            return Err(corrupt(
                "the private key does not match the recorded public key",
            ));
        }
        Ok(key)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.{EXTENSION}"))
    }

    fn read(&self, name: &str) -> Result<KeyFile, KeystoreError> {
        check_name(name)?;
        let path = self.path(name);
        let bytes = match fs::read(&path) {
            Ok(b) => Zeroizing::new(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeystoreError::NotFound(name.to_owned()));
            }
            Err(source) => return Err(KeystoreError::Io { path, source }),
        };
        parse(&bytes)
    }

    fn encrypt(
        &self,
        name: &str,
        public: &PublicKey,
        passphrase: &str,
        seed: &[u8; 32],
    ) -> Result<Encryption, KeystoreError> {
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut salt).expect("the OS random source is available");
        getrandom::fill(&mut nonce).expect("the OS random source is available");
        let key = self.kdf.derive(passphrase, &salt)?;
        let cipher = XChaCha20Poly1305::new(key.as_ref().into());
        let aad = associated_data(name, public);
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: seed,
                    aad: &aad,
                },
            )
            .expect("encrypting 32 bytes cannot fail");
        Ok(Encryption {
            kdf: "argon2id".into(),
            kdf_params: self.kdf,
            salt: hex::encode(salt),
            cipher: "xchacha20poly1305".into(),
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
        })
    }

    /// Writes `bytes` as a new file at `path`, durably, failing if the name
    /// is taken (even by a writer racing this one).
    fn write_new(&self, path: &Path, name: &str, bytes: &[u8]) -> Result<(), KeystoreError> {
        let io = |source| KeystoreError::Io {
            path: path.to_owned(),
            source,
        };
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(io)?;
        tmp.write_all(bytes).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist_noclobber(path).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                KeystoreError::Exists(name.to_owned())
            } else {
                io(e.error)
            }
        })?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)
    }
}

fn parse(bytes: &[u8]) -> Result<KeyFile, KeystoreError> {
    #[derive(Deserialize)]
    struct Header {
        format: String,
        version: u32,
    }
    let header: Header =
        serde_json::from_slice(bytes).map_err(|e| corrupt(&format!("not a key file: {e}")))?;
    if header.format != FORMAT {
        return Err(corrupt(&format!(
            "format is {:?}, not {FORMAT:?}",
            header.format
        )));
    }
    if header.version != VERSION {
        return Err(KeystoreError::UnsupportedVersion(header.version));
    }
    serde_json::from_slice(bytes).map_err(|e| corrupt(&e.to_string()))
}

fn decrypt(
    file: &KeyFile,
    enc: &Encryption,
    passphrase: &str,
) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    if enc.kdf != "argon2id" || enc.cipher != "xchacha20poly1305" {
        return Err(corrupt(&format!(
            "unknown algorithms {} / {}",
            enc.kdf, enc.cipher
        )));
    }
    let p = enc.kdf_params;
    let max = KdfParams::MAX;
    if p.m_cost_kib > max.m_cost_kib || p.t_cost > max.t_cost || p.p_cost > max.p_cost {
        return Err(corrupt("argon2 parameters are beyond what p2pc accepts"));
    }
    let salt = hex::decode(&enc.salt).map_err(|_| corrupt("salt is not hex"))?;
    let nonce: [u8; 24] = hex::decode(&enc.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| corrupt("nonce is not 24 bytes of hex"))?;
    let ciphertext = hex::decode(&enc.ciphertext).map_err(|_| corrupt("ciphertext is not hex"))?;
    let key = p.derive(passphrase, &salt)?;
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let aad = associated_data(&file.name, &file.public_key);
    // A wrong passphrase and a tampered ciphertext look the same to an AEAD;
    // the damaged-file checks above catch most tampering first.
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| KeystoreError::WrongPassphrase(file.name.clone()))?,
    );
    Ok(Zeroizing::new(
        plain
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("plaintext is not 32 bytes"))?,
    ))
}

/// Binds the key's name and public key to its ciphertext, so neither can be
/// swapped in the file without decryption failing.
fn associated_data(name: &str, public: &PublicKey) -> Vec<u8> {
    format!("{FORMAT} v{VERSION}\0{name}\0{public}").into_bytes()
}

fn check_name(name: &str) -> Result<(), KeystoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(KeystoreError::BadName(name.to_owned()))
    }
}

fn corrupt(why: &str) -> KeystoreError {
    KeystoreError::Corrupt(why.to_owned())
}

fn info(file: &KeyFile) -> KeyInfo {
    KeyInfo {
        name: file.name.clone(),
        public_key: file.public_key,
        peer_id: file.public_key.peer_id().to_string(),
        encrypted: file.encryption.is_some(),
        created_unix: file.created_unix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Keystore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let ks = Keystore::open(dir.path().join("keys"))
            .expect("open")
            .with_kdf(KdfParams::INSECURE_FAST);
        (dir, ks)
    }

    #[test]
    fn round_trip() {
        let (_d, ks) = store();
        let info = ks.create("alice", Some("correct horse")).expect("create");
        let key = ks.unlock("alice", Some("correct horse")).expect("unlock");
        assert_eq!(key.public(), info.public_key);
        assert!(info.encrypted);
        assert_eq!(ks.list().expect("list"), vec![info]);
    }

    #[test]
    fn failures_leave_the_file_unchanged() {
        let (_d, ks) = store();
        ks.create("bob", Some("right")).expect("create");
        let path = ks.path("bob");
        let original = fs::read(&path).expect("read");

        assert!(matches!(
            ks.unlock("bob", Some("wrong")),
            Err(KeystoreError::WrongPassphrase(_))
        ));
        assert!(matches!(
            ks.unlock("bob", None),
            Err(KeystoreError::PassphraseNeeded(_))
        ));
        assert!(matches!(
            ks.create("bob", Some("other")),
            Err(KeystoreError::Exists(_))
        ));
        assert_eq!(fs::read(&path).expect("read"), original);

        // Truncated and corrupted copies are reported as damaged and stay
        // exactly as they were.
        for damaged in [
            original[..original.len() / 2].to_vec(),
            flip(&original, b"ciphertext"),
        ] {
            fs::write(&path, &damaged).expect("damage");
            let err = ks.unlock("bob", Some("right")).expect_err("must fail");
            assert!(
                matches!(
                    err,
                    KeystoreError::Corrupt(_) | KeystoreError::WrongPassphrase(_)
                ),
                "{err}"
            );
            assert_eq!(fs::read(&path).expect("read"), damaged);
        }

        let mut future: serde_json::Value = serde_json::from_slice(&original).expect("json");
        future["version"] = 99.into();
        fs::write(&path, serde_json::to_vec(&future).expect("json")).expect("write");
        assert!(matches!(
            ks.unlock("bob", Some("right")),
            Err(KeystoreError::UnsupportedVersion(99))
        ));
    }

    #[test]
    fn swapping_the_public_key_is_detected() {
        let (_d, ks) = store();
        ks.create("carol", Some("pw")).expect("create");
        let path = ks.path("carol");
        let mut v: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).expect("read")).expect("json");
        v["public_key"] = SecretKey::generate().public().to_string().into();
        fs::write(&path, serde_json::to_vec(&v).expect("json")).expect("write");
        assert!(ks.unlock("carol", Some("pw")).is_err());
    }

    #[test]
    fn insecure_keys_and_names() {
        let (_d, ks) = store();
        let info = ks.create("plain", None).expect("create");
        assert!(!info.encrypted);
        assert_eq!(
            ks.unlock("plain", None).expect("unlock").public(),
            info.public_key
        );
        for bad in ["", "../x", ".hidden", "a/b", &"x".repeat(65)] {
            assert!(
                matches!(ks.create(bad, None), Err(KeystoreError::BadName(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            ks.unlock("nobody", None),
            Err(KeystoreError::NotFound(_))
        ));
    }

    #[test]
    fn import_keeps_the_key_usable() {
        let (_d, ks) = store();
        ks.create("orig", Some("pw")).expect("create");
        let (_d2, other) = store();
        let imported = other.import_file("copy", &ks.path("orig")).expect("import");
        assert_eq!(imported.name, "copy");
        let key = other.unlock("copy", Some("pw")).expect("unlock imported");
        assert_eq!(key.public(), ks.info("orig").expect("info").public_key);
    }

    /// Flips a byte in the hex value that follows `field` in the JSON.
    fn flip(json: &[u8], field: &[u8]) -> Vec<u8> {
        let mut out = json.to_vec();
        let at = out
            .windows(field.len())
            .position(|w| w == field)
            .expect("field present")
            + field.len()
            + 10;
        out[at] = if out[at] == b'0' { b'1' } else { b'0' };
        out
    }
}
