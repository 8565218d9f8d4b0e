//! Signed bundles kept by the node: each bundle file is stored as a pinned
//! blob, with a small record describing it. The store does not verify
//! signatures; callers verify a bundle (with `p2pc-crypto`) before adding it.

use p2pc_types::Cid;
use serde::{Deserialize, Serialize};

use crate::{Error, Result, Store};

/// What the store records about a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BundleRecord {
    /// The bundle's identity: BLAKE3 of its signed manifest bytes.
    #[schema(value_type = String)]
    pub id: Cid,
    /// Job name.
    pub name: String,
    /// Job version.
    pub version: String,
    /// WIT world of the component.
    pub world: String,
    /// Publisher's public key, hex.
    pub publisher: String,
    /// BLAKE3 of the component.
    #[schema(value_type = String)]
    pub component: Cid,
    /// The blob holding the whole bundle file.
    #[schema(value_type = String)]
    pub file: Cid,
}

impl Store {
    /// Stores a verified bundle: its file as a pinned blob, then its record.
    /// `record.file` is filled in here.
    pub fn put_bundle(&self, mut record: BundleRecord, file: &[u8]) -> Result<BundleRecord> {
        let blob = self.put_bytes(file)?;
        self.pin(&blob.id)?;
        record.file = blob.id;
        let value = serde_json::to_vec(&record).expect("bundle records serialize");
        let mut batch = self.inner().db.batch().durability(Some(crate::blob::ACK));
        batch.insert(&self.inner().ks.bundles, record.id.as_bytes(), value);
        self.write(|| batch.commit())?;
        Ok(record)
    }

    /// The record of bundle `id`, if stored.
    pub fn bundle(&self, id: &Cid) -> Result<Option<BundleRecord>> {
        match self.inner().ks.bundles.get(id.as_bytes())? {
            Some(v) => Ok(Some(
                serde_json::from_slice(&v).map_err(|_| Error::CorruptRecord(*id))?,
            )),
            None => Ok(None),
        }
    }

    /// Every stored bundle, ordered by id.
    pub fn bundles(&self) -> Result<Vec<BundleRecord>> {
        let mut out = Vec::new();
        for item in self.inner().ks.bundles.iter() {
            let (key, value) = item.into_inner()?;
            let id = Cid::from_slice(&key).unwrap_or(Cid([0; 32]));
            out.push(serde_json::from_slice(&value).map_err(|_| Error::CorruptRecord(id))?);
        }
        Ok(out)
    }

    /// Forgets bundle `id` and unpins its file (freed by `remove` + `gc`).
    pub fn remove_bundle(&self, id: &Cid) -> Result<bool> {
        let Some(record) = self.bundle(id)? else {
            return Ok(false);
        };
        let mut batch = self.inner().db.batch().durability(Some(crate::blob::ACK));
        batch.remove(&self.inner().ks.bundles, id.as_bytes());
        self.write(|| batch.commit())?;
        self.unpin(&record.file)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_are_kept_with_their_file_pinned() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        let record = BundleRecord {
            id: Cid::of(b"manifest"),
            name: "hello".into(),
            version: "1.0.0".into(),
            world: "p2pc:job/job".into(),
            publisher: "00".repeat(32),
            component: Cid::of(b"component"),
            file: Cid([0; 32]),
        };
        let stored = store
            .put_bundle(record.clone(), b"P2PCBNDL...")
            .expect("put");
        assert_eq!(store.bundle(&record.id).expect("get"), Some(stored.clone()));
        assert_eq!(store.bundles().expect("list"), vec![stored.clone()]);
        assert_eq!(store.get_bytes(&stored.file).expect("file"), b"P2PCBNDL...");
        assert!(matches!(store.remove(&stored.file), Err(Error::Pinned(_))));
        assert!(store.remove_bundle(&record.id).expect("remove"));
        assert!(store.remove(&stored.file).expect("file now removable"));
    }
}
