//! The body of the gateway's fuzz target in `fuzz/`: what an API client
//! sends as a JSON body or a `Range` header, decoded as the routes decode
//! it. (A live node's routes are also fuzzed over HTTP by schemathesis in
//! the test script.) The normal test suite runs it over generated inputs.
//! It must never panic.

use crate::types::{FetchBlob, PackBundle, SubmitJob, Transfer};

/// `data` as each JSON body a route takes, and as a `Range` header against a
/// blob whose length the first eight bytes give.
pub fn bodies(data: &[u8]) {
    let _ = serde_json::from_slice::<SubmitJob>(data);
    let _ = serde_json::from_slice::<PackBundle>(data);
    let _ = serde_json::from_slice::<FetchBlob>(data);
    let _ = serde_json::from_slice::<Transfer>(data);
    if let (Some(len), Ok(text)) = (
        data.get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("eight bytes"))),
        std::str::from_utf8(data.get(8..).unwrap_or_default()),
    ) {
        for len in [len, len % 4096] {
            if let Ok((start, end)) = crate::routes::parse_range(text, len) {
                assert!(
                    start <= end && end <= len,
                    "{text:?} of {len}: {start}..{end}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use p2pc_crypto::fuzzing::inputs;

    #[test]
    fn smoke_api_bodies() {
        let job = br#"{"bundle":"ab","input":{"text":"hi"},"shards":2,"validation":"2-of-3","timeout_ms":5}"#;
        for input in inputs("api_bodies", job, 2000) {
            super::bodies(&input);
        }
        let mut range = 1000u64.to_le_bytes().to_vec();
        range.extend_from_slice(b"bytes=10-99");
        for input in inputs("api_bodies", &range, 2000) {
            super::bodies(&input);
        }
    }
}
