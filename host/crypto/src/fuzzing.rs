//! Bodies of the fuzz targets in `fuzz/`, kept here so the normal test
//! suite can run them too (a corpus-free smoke run) and they cannot rot.
//! Each must never panic, whatever the input.

use prost::Message;

use crate::{BundleFile, Envelope, TrustPolicy};

/// Decodes `data` as a bundle file; if that works, checks that verification
/// returns (never panics) and that re-encoding gives the same bundle.
pub fn bundle(data: &[u8]) {
    let Ok(file) = BundleFile::from_bytes(data) else {
        return;
    };
    let _ = file.manifest();
    let again = BundleFile::from_bytes(&file.to_bytes())
        .expect("a decoded bundle re-encodes to a decodable one");
    assert_eq!(again, file, "bundle encoding round trip");
    let _ = file.verify(&TrustPolicy::Any, 1_800_000_000);
}

/// Decodes `data` as an envelope; if that works, checks that opening it
/// returns (never panics) and that re-encoding gives the same envelope.
pub fn envelope(data: &[u8]) {
    let Ok(env) = Envelope::decode_bounded(data) else {
        return;
    };
    let again =
        Envelope::decode_bounded(&env.encode_to_vec()).expect("a decoded envelope re-encodes");
    assert_eq!(again, env, "envelope encoding round trip");
    let kind = env.kind.clone();
    let _ = env.open(&kind);
}

/// The content key the `sealed` target's blobs are sealed under.
pub fn sealed_key() -> crate::ContentKey {
    crate::ContentKey::from_bytes([5; 32])
}

/// Opens `data` as a sealed blob under [`sealed_key`], in memory and as a
/// stream: both must agree (the same plaintext, or both refuse), and
/// nothing may panic. Also tries `data` as a wrapped key.
pub fn sealed(data: &[u8]) {
    use std::io::Read;
    let key = sealed_key();
    let whole = crate::seal::open_bytes(&key, data);
    let mut streamed = Vec::new();
    let stream = crate::OpeningReader::new(data, &key).read_to_end(&mut streamed);
    match (&whole, stream) {
        (Ok(plain), Ok(_)) => assert_eq!(plain, &streamed, "in memory and streamed differ"),
        (Err(_), Err(_)) => {}
        (w, s) => panic!("in memory {w:?}, streamed {s:?}"),
    }
    let reader = crate::SealKey::generate();
    let (enc, ciphertext) = data.split_at(data.len().min(32));
    let wrapped = crate::WrappedKey {
        enc: enc.to_vec(),
        ciphertext: ciphertext.to_vec(),
    };
    let _ = reader.unwrap(&wrapped, &[0; 32], b"fuzz");
    let _ = reader
        .reply_key(b"fuzz")
        .unwrap(&wrapped, &[0; 32], b"fuzz");
}

/// Writes `bytes` as a seed of fuzz target `target` under the directory
/// `$P2PC_FUZZ_SEEDS`, when it is set (`scripts/fuzz.sh` sets it while it
/// runs the smoke tests, so each target starts from valid encodings).
pub fn seed(target: &str, bytes: &[u8]) {
    let Some(dir) = std::env::var_os("P2PC_FUZZ_SEEDS") else {
        return;
    };
    let dir = std::path::Path::new(&dir).join(target);
    let name = blake3::hash(bytes).to_hex();
    let _ =
        std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join(&name[..16]), bytes));
}

/// Deterministic inputs for a corpus-free smoke run of a fuzz body: `n`
/// of them, random bytes and mutations (bit flips, truncations, splices)
/// of the valid encoding `valid`, which is also kept as a [`seed`] of
/// fuzz target `target`. Every crate's fuzz tests use it.
pub fn inputs(target: &str, valid: &[u8], n: usize) -> Vec<Vec<u8>> {
    seed(target, valid);
    let mut x = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut v = valid.to_vec();
        match i % 4 {
            0 => v = (0..(next() % 300) as usize).map(|_| next() as u8).collect(),
            1 => {
                for _ in 0..1 + next() % 4 {
                    let at = (next() as usize) % v.len().max(1);
                    if let Some(b) = v.get_mut(at) {
                        *b ^= 1 << (next() % 8);
                    }
                }
            }
            2 => v.truncate((next() as usize) % (v.len() + 1)),
            _ => {
                let at = (next() as usize) % (v.len() + 1);
                let junk: Vec<u8> = (0..next() % 16).map(|_| next() as u8).collect();
                v.splice(at..at, junk);
            }
        }
        out.push(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Manifest, SecretKey};

    #[test]
    fn smoke_bundle_decoding() {
        let key = SecretKey::from_seed(&[3; 32]);
        let manifest = Manifest {
            name: "f".into(),
            publisher: key.public().to_bytes().to_vec(),
            ..Manifest::default()
        };
        let mut file = BundleFile::pack(manifest, b"\0asm\x0d\0\x01\0component".to_vec());
        file.sign(&key).expect("sign");
        let valid = file.to_bytes();
        bundle(&valid);
        for input in inputs("bundle", &valid, 3000) {
            bundle(&input);
        }
    }

    #[test]
    fn smoke_sealed_blobs() {
        let text: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        let valid = crate::seal::seal_bytes(&sealed_key(), &text);
        sealed(&valid);
        // Whole-blob mutations are slow at this size; a few hundred cover
        // the header, the segment boundaries and the tail.
        for input in inputs("sealed", &valid, 400) {
            sealed(&input);
        }
    }

    #[test]
    fn smoke_envelope_decoding() {
        let valid = Envelope::seal(
            &SecretKey::from_seed(&[4; 32]),
            "p2pc/fuzz/1",
            9,
            b"payload".to_vec(),
        )
        .encode_to_vec();
        envelope(&valid);
        for input in inputs("envelope", &valid, 3000) {
            envelope(&input);
        }
    }
}
