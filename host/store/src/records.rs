//! Job records kept by a submitting node: opaque bytes under a key, in
//! the `jobs` keyspace. The store neither reads nor checks them (the node
//! owns their format); it writes them in the same commit as the output
//! blobs they name, so a record never names an output the store lacks.

use crate::blob::{Staged, Store};
use crate::{BlobInfo, Result};

/// One change to the `jobs` keyspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobWrite {
    /// Set the record under `key`.
    Put {
        /// The job's key.
        key: Vec<u8>,
        /// Its record, in the node's format.
        value: Vec<u8>,
    },
    /// Remove the record under `key`.
    Remove {
        /// The job's key.
        key: Vec<u8>,
    },
}

impl Store {
    /// Stores `outputs` as blobs and applies `writes` in one durable
    /// commit: one pack file and one sync however many there are, so a
    /// node can group the records of many small jobs into one write.
    /// Returns the outputs' infos, in order.
    pub fn commit_jobs(&self, outputs: &[&[u8]], writes: &[JobWrite]) -> Result<Vec<BlobInfo>> {
        self.check_writable()?;
        let _shared = self
            .inner()
            .gc_lock
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let mut staged = Staged::default();
        let mut infos = Vec::with_capacity(outputs.len());
        for output in outputs {
            let (id, len, chunks) = self.stage_bytes(output, &mut staged)?;
            infos.push(BlobInfo {
                id,
                len,
                chunks,
                pinned: false,
            });
        }
        let mut batch = self.inner().db.batch().durability(Some(crate::blob::ACK));
        staged.commit_into(self, &mut batch)?;
        let ks = &self.inner().ks;
        for write in writes {
            match write {
                JobWrite::Put { key, value } => {
                    batch.insert(&ks.jobs, key.as_slice(), value.as_slice())
                }
                JobWrite::Remove { key } => batch.remove(&ks.jobs, key.as_slice()),
            }
        }
        self.write(|| batch.commit())?;
        for info in &mut infos {
            info.pinned = self.is_pinned(&info.id)?;
        }
        Ok(infos)
    }

    /// The record under `key` in the `jobs` keyspace.
    pub fn job_record(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.inner().ks.jobs.get(key)?.map(|v| v.to_vec()))
    }

    /// Every record in the `jobs` keyspace whose key starts with
    /// `prefix`, ordered by key.
    pub fn job_records(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self.inner().ks.jobs.prefix(prefix) {
            let (key, value) = item.into_inner()?;
            out.push((key.to_vec(), value.to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_outputs_commit_together_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = {
            let store = Store::open(dir.path()).expect("open");
            let infos = store
                .commit_jobs(
                    &[b"first output", b"second output", b""],
                    &[
                        JobWrite::Put {
                            key: b"job-1".to_vec(),
                            value: b"running".to_vec(),
                        },
                        JobWrite::Put {
                            key: b"job-2".to_vec(),
                            value: b"done".to_vec(),
                        },
                    ],
                )
                .expect("commit");
            assert_eq!(infos.len(), 3);
            store
                .commit_jobs(
                    &[],
                    &[JobWrite::Remove {
                        key: b"job-1".to_vec(),
                    }],
                )
                .expect("commit");
            (infos[0].id, infos[1].id)
        };
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.get_bytes(&a).expect("a"), b"first output");
        assert_eq!(store.get_bytes(&b).expect("b"), b"second output");
        assert_eq!(store.job_record(b"job-1").expect("read"), None);
        assert_eq!(
            store.job_records(b"job-").expect("list"),
            vec![(b"job-2".to_vec(), b"done".to_vec())]
        );
        assert!(store.job_records(b"other").expect("list").is_empty());
    }
}
