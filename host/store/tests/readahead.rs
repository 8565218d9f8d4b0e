//! A large blob is read and verified ahead of its reader on other threads:
//! the bytes come out in order and whole, a damaged chunk in the middle
//! still gives every byte before it and then the error (again on a second
//! try, never a hang), a seek starts reading ahead from the new place, and
//! a reader dropped half way stops its workers.

use std::io::Read;

use p2pc_store::{CHUNK_SIZE, Error, Store};

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn a_large_blob_reads_back_whole_in_order_and_from_any_offset() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path()).expect("open");
    let bytes = data(40 * CHUNK_SIZE + 123, 1);
    let id = store.put_bytes(&bytes).expect("put").id;
    // Odd read sizes, so reads straddle chunks.
    let mut reader = store.get_ahead(&id).expect("get");
    let mut out = Vec::new();
    let mut buf = vec![0u8; 77_777];
    loop {
        let n = reader.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert!(out == bytes, "the bytes come back as they went in");
    for offset in [
        0,
        1,
        CHUNK_SIZE as u64,
        7 * CHUNK_SIZE as u64 + 5,
        bytes.len() as u64 - 1,
    ] {
        let mut reader = store.get_ahead(&id).expect("get");
        reader.seek_to(offset).expect("seek");
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).expect("read");
        assert!(rest == bytes[offset as usize..], "from {offset}");
    }
    // Dropped half way: nothing waits on it.
    let mut reader = store.get_ahead(&id).expect("get");
    let mut half = vec![0u8; 10 * CHUNK_SIZE];
    reader.read_exact(&mut half).expect("read");
    drop(reader);
    assert_eq!(store.get_bytes(&id).expect("again").len(), bytes.len());
}

#[test]
fn a_damaged_chunk_read_ahead_gives_the_bytes_before_it_then_the_error() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path()).expect("open");
    let bytes = data(24 * CHUNK_SIZE, 2);
    let id = store.put_bytes(&bytes).expect("put").id;
    let victim = store.chunk_ids(&id).expect("chunks")[13];
    let mut bad = bytes[13 * CHUNK_SIZE..14 * CHUNK_SIZE].to_vec();
    bad[9] ^= 1;
    store.put_chunk_unchecked(&victim, &bad).expect("damage");
    let mut reader = store.get_ahead(&id).expect("get");
    let mut good = vec![0u8; 13 * CHUNK_SIZE];
    reader
        .read_exact(&mut good)
        .expect("the chunks before the damage");
    assert!(good == bytes[..13 * CHUNK_SIZE]);
    for attempt in 0..2 {
        let e = reader.read(&mut [0u8; 16]).expect_err("the damaged chunk");
        match reader.take_error(e) {
            Error::CorruptChunk { chunk, .. } => assert_eq!(chunk, victim, "try {attempt}"),
            other => panic!("try {attempt}: {other:?}"),
        }
    }
}
