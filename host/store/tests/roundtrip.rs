//! Blobs go in and come out byte for byte, at every size around the chunk
//! boundary, across a reopen; bookkeeping (list, pin, remove, gc) works. A
//! large blob read ahead on other threads (`get_ahead`) comes out in order
//! and whole, from any offset; a damaged chunk in the middle still gives
//! every byte before it and then the error (again on a second try, never a
//! hang); a reader dropped half way stops its workers.

use std::io::Read;

use p2pc_store::{CHUNK_SIZE, Cid, Error, Store};

/// Pseudo-random bytes (xorshift), so no two chunks are alike and nothing
/// compresses.
fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(seed);
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
fn sizes_around_the_chunk_boundary_round_trip_across_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sizes = [
        0,
        1,
        CHUNK_SIZE - 1,
        CHUNK_SIZE,
        CHUNK_SIZE + 1,
        3 * CHUNK_SIZE + 17,
    ];
    let mut ids = Vec::new();
    {
        let store = Store::open(dir.path()).expect("open");
        for (i, &len) in sizes.iter().enumerate() {
            let bytes = data(len, i as u8);
            let info = store.put_bytes(&bytes).expect("put");
            assert_eq!(info.len, len as u64);
            assert_eq!(info.chunks, len.div_ceil(CHUNK_SIZE) as u64);
            assert_eq!(store.get_bytes(&info.id).expect("get"), bytes, "size {len}");
            ids.push((info.id, bytes));
        }
    }
    let store = Store::open(dir.path()).expect("reopen");
    for (id, bytes) in &ids {
        assert!(store.has(id).expect("has"));
        assert_eq!(&store.get_bytes(id).expect("get after reopen"), bytes);
    }
    assert_eq!(store.list().expect("list").len(), sizes.len());
}

#[test]
fn a_blob_is_named_by_its_chunk_list() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open");
    let bytes = data(2 * CHUNK_SIZE + 5, 1);
    let info = store.put_bytes(&bytes).expect("put");
    let list: Vec<u8> = bytes
        .chunks(CHUNK_SIZE)
        .flat_map(|c| *Cid::of(c).as_bytes())
        .collect();
    assert_eq!(info.id, Cid::of(&list));
    assert_eq!(store.put_bytes(b"").expect("empty").id, Cid::of(b""));
    // Same bytes, same name, stored once.
    assert_eq!(store.put_bytes(&bytes).expect("again").id, info.id);
}

#[test]
fn a_corrupt_chunk_is_detected_on_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open");
    let bytes = data(3 * CHUNK_SIZE, 7);
    let info = store.put_bytes(&bytes).expect("put");
    let victim = store.chunk_ids(&info.id).expect("chunks")[1];
    let mut bad = bytes[CHUNK_SIZE..2 * CHUNK_SIZE].to_vec();
    bad[100] ^= 0x80;
    store.put_chunk_unchecked(&victim, &bad).expect("damage");
    match store.get_bytes(&info.id) {
        Err(Error::CorruptChunk { blob, chunk }) => assert_eq!((blob, chunk), (info.id, victim)),
        other => panic!(
            "expected a corrupt-chunk error, got {:?}",
            other.map(|b| b.len())
        ),
    }
}

#[test]
fn a_byte_flipped_in_the_database_files_is_never_returned_as_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bytes = data(4 * CHUNK_SIZE, 3);
    let id = Store::open(dir.path())
        .expect("open")
        .put_bytes(&bytes)
        .expect("put")
        .id;

    // Find a distinctive run of the blob's bytes in the files on disk and
    // flip one bit of it.
    let needle = &bytes[CHUNK_SIZE + 1000..CHUNK_SIZE + 1064];
    let mut flipped = false;
    for entry in walk(dir.path()) {
        let mut file = std::fs::read(&entry).expect("read db file");
        if let Some(at) = file.windows(needle.len()).position(|w| w == needle) {
            file[at + 10] ^= 0x01;
            std::fs::write(&entry, file).expect("write db file");
            flipped = true;
        }
    }
    assert!(flipped, "the blob's bytes were found on disk");

    // Reopening may already notice (fjall checksums its journal); if it
    // does not, reading must.
    if let Ok(store) = Store::open(dir.path())
        && let Ok(read) = store.get_bytes(&id)
    {
        panic!(
            "damaged data was returned as blob {id} ({} bytes)",
            read.len()
        );
    }
}

#[test]
fn pin_remove_and_gc() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open");
    let a = store.put_bytes(&data(CHUNK_SIZE * 2, 1)).expect("put a");
    let b = store.put_bytes(&data(CHUNK_SIZE, 2)).expect("put b");

    store.pin(&a.id).expect("pin");
    assert!(store.info(&a.id).expect("info").pinned);
    assert!(matches!(store.remove(&a.id), Err(Error::Pinned(_))));
    store.unpin(&a.id).expect("unpin");
    assert!(store.remove(&a.id).expect("remove"));
    assert!(!store.remove(&a.id).expect("remove again"));
    assert!(matches!(store.get(&a.id), Err(Error::NotFound(_))));

    let stats = store.gc().expect("gc");
    assert_eq!(stats.chunks_removed, 2);
    assert_eq!(
        store.get_bytes(&b.id).expect("b survives gc"),
        data(CHUNK_SIZE, 2)
    );
    assert_eq!(store.gc().expect("gc again").chunks_removed, 0);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_large_blob_reads_back_whole_in_order_and_from_any_offset() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path()).expect("open");
    let bytes = data(40 * CHUNK_SIZE + 123, 41);
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
    let bytes = data(24 * CHUNK_SIZE, 42);
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
