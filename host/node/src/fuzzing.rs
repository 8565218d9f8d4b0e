//! Bodies of the node's fuzz targets in `fuzz/`: every message a peer can
//! send it on the task protocol and on gossip, the chunk messages, and
//! `node.toml`. They run each decoder and check the node performs on what
//! it decoded, as the inbound path does; the normal test suite runs them
//! over generated inputs too. Each must never panic, whatever the input.

use p2pc_crypto::{Envelope, SecretKey};
use prost::Message;

use crate::messages::{
    ADVERT_KIND, Advert, PROGRESS_KIND, Progress, ReduceInput, TASK_KIND, TaskReply, TaskRequest,
    TaskSpec, check_receipt,
};

/// Opens `wire` as an envelope of `kind` and decodes its payload as `M`.
fn open<M: Message + Default>(wire: &[u8], kind: &str) -> Option<M> {
    let envelope = Envelope::decode_bounded(wire).ok()?;
    let opened = envelope.open(kind).ok()?;
    M::decode(opened.payload).ok()
}

/// A task-protocol request as a worker receives it: the request, the task
/// envelope and spec inside it, a reduce's inputs, the hold op, a
/// progress report; and the same bytes as a reply, as a submitter
/// receives one, with its receipt checked against a task.
pub fn task(data: &[u8]) {
    if let Ok(request) = TaskRequest::decode(data) {
        let again = TaskRequest::decode(request.encode_to_vec().as_slice())
            .expect("a decoded request re-encodes");
        assert_eq!(again, request, "task request round trip");
        if let Some(spec) = open::<TaskSpec>(&request.task, TASK_KIND) {
            let _ = ReduceInput::decode(spec.input.as_slice());
            let _ = p2pc_types::Cid::from_slice(&spec.bundle);
        }
        let _ = open::<Progress>(&request.progress, PROGRESS_KIND);
        let _ = p2pc_ledger::Op::from_bytes(&request.hold);
        if let Some(payout) = &request.payout {
            let _ = p2pc_ledger::Op::from_bytes(&payout.transfer);
        }
    }
    if let Ok(reply) = TaskReply::decode(data) {
        let worker = SecretKey::from_seed(&[7; 32]).public();
        let _ = check_receipt(&reply.receipt, data, &worker);
        let _ = open::<Advert>(&reply.advert, ADVERT_KIND);
    }
}

/// A gossiped offer: the envelope, the advert in it, and the market's
/// view of it (an impossible expiry is refused, never a panic).
pub fn advert(data: &[u8]) {
    for advert in [Advert::decode(data).ok(), open::<Advert>(data, ADVERT_KIND)]
        .into_iter()
        .flatten()
    {
        if let Some(offer) = crate::network::offer_of(&advert) {
            assert!(offer.expires_ms >= offer.issued_ms, "{offer:?}");
        }
    }
}

/// A chunk-protocol request and response.
pub fn chunk(data: &[u8]) {
    if let Ok(r) = p2pc_net::ChunkRequest::decode(data) {
        let again = p2pc_net::ChunkRequest::decode(r.encode_to_vec().as_slice())
            .expect("a decoded chunk request re-encodes");
        assert_eq!(again, r);
    }
    let _ = p2pc_net::ChunkResponse::decode(data);
}

/// `node.toml`: parsed, then every check a starting node makes.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = crate::NodeConfig::parse(text) else {
        return;
    };
    if config.check().is_ok() {
        let _ = config.api.address();
        let _ = config.market.pricing();
        let _ = config.reputation.config();
        let _ = config.market.default_validation();
        let _ = config.market.arbiter_keys();
    }
}

#[cfg(test)]
mod tests {
    use p2pc_crypto::fuzzing::inputs;

    use super::*;

    fn spec() -> TaskSpec {
        TaskSpec {
            task_id: vec![1; 16],
            deadline_unix_ms: 1_900_000_000_000,
            lease_ms: 10_000,
            ..TaskSpec::default()
        }
    }

    #[test]
    fn smoke_task_messages() {
        let key = SecretKey::from_seed(&[5; 32]);
        let request = TaskRequest {
            task: crate::messages::seal_task(&key, 1, &spec()).encode_to_vec(),
            hold: vec![0; 40],
            ..TaskRequest::default()
        };
        for input in inputs("task", &request.encode_to_vec(), 3000) {
            task(&input);
        }
        let reply = TaskReply::refusal("busy", "no slot");
        for input in inputs("task", &reply.encode_to_vec(), 1000) {
            task(&input);
        }
    }

    #[test]
    fn smoke_adverts_and_chunks() {
        let key = SecretKey::from_seed(&[6; 32]);
        let advert = Advert {
            issued_unix_ms: 1_800_000_000_000,
            expires_unix_ms: 1_800_000_060_000,
            price: 3,
            slots: 4,
            ..Advert::default()
        };
        let wire = Envelope::seal(&key, ADVERT_KIND, 1, advert.encode_to_vec()).encode_to_vec();
        for input in inputs("advert", &wire, 2000).into_iter().chain(inputs(
            "advert",
            &advert.encode_to_vec(),
            1000,
        )) {
            super::advert(&input);
        }
        let request = p2pc_net::ChunkRequest::default();
        for input in inputs("chunk", &request.encode_to_vec(), 500) {
            chunk(&input);
        }
    }

    #[test]
    fn smoke_node_toml() {
        let text = "[node]\nslots = 2\n[api]\nlisten = \"127.0.0.1:0\"\n[market]\nbase_price = 3\n";
        for input in inputs("config", text.as_bytes(), 2000) {
            config(&input);
        }
    }
}
