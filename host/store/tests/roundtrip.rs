//! Blobs go in and come out byte for byte, at every size around the chunk
//! boundary, across a reopen; bookkeeping (list, pin, remove, gc) works.

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
