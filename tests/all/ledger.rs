//! The ledger over the overlay: real nodes on loopback replicate ops by
//! gossip and anti-entropy, converge after a partition heals, and shut
//! out peers that send garbage.

use std::time::Duration;

use p2pc_crypto::SecretKey;
use p2pc_ledger::sync::encode_ops;
use p2pc_ledger::{Body, CreditManager, Genesis};
use p2pc_node::api::Verified;
use p2pc_node::{BLOCK_SCORE, ComputeNode, LEDGER_TOPIC};
use p2pc_node::{LedgerAnswer, LedgerRequest};
use p2pc_testkit::{Cluster, WAIT, eventually, test_config};

use crate::support::runtime;

/// Keys for `n` nodes and a genesis giving each 1,000 credits, written to
/// `dir/genesis.toml`.
pub(crate) fn network(
    n: usize,
    dir: &std::path::Path,
) -> (Vec<SecretKey>, Genesis, std::path::PathBuf) {
    let keys: Vec<SecretKey> = (0..n)
        .map(|i| SecretKey::from_seed(&[100 + i as u8; 32]))
        .collect();
    let genesis = Genesis {
        network: "ledger-test".into(),
        allocations: keys.iter().map(|k| (k.public(), 1_000)).collect(),
        ..Genesis::default()
    };
    let path = dir.join("genesis.toml");
    std::fs::write(&path, genesis.to_toml()).expect("write genesis");
    (keys, genesis, path)
}

async fn transfer(node: &ComputeNode, to: &SecretKey, amount: u64) -> LedgerAnswer {
    node.ledger(LedgerRequest::Transfer {
        to: to.public(),
        amount,
    })
    .await
    .expect("transfer")
}

async fn verify(node: &ComputeNode) -> Verified {
    match node.ledger(LedgerRequest::Verify).await.expect("verify") {
        LedgerAnswer::Verify(v) => v,
        other => panic!("a verify answered {other:?}"),
    }
}

async fn balance(node: &ComputeNode, of: &SecretKey) -> u64 {
    match node
        .ledger(LedgerRequest::Balance {
            account: Some(of.public()),
        })
        .await
        .expect("balance")
    {
        LedgerAnswer::Balance(b) => b.balance + b.incoming,
        other => panic!("a balance answered {other:?}"),
    }
}

async fn peers_of(node: &ComputeNode) -> Vec<String> {
    node.client()
        .peers()
        .await
        .map(|p| p.into_iter().map(|p| p.peer_id).collect())
        .unwrap_or_default()
}

/// A bare overlay peer (no node behind it) connected to `node` and
/// subscribed to the ledger topic, to send whatever a test wants.
pub(crate) async fn bare_peer(
    key: &SecretKey,
    node: &ComputeNode,
) -> (p2pc_net::Client, tokio::task::JoinHandle<()>) {
    let config = p2pc_net::Config {
        mdns: false,
        ..Default::default()
    };
    // What it hears is of no interest: a dropped receiver is fine.
    let (peer, _, event_loop) = p2pc_net::new(key, config).expect("peer");
    let task = tokio::spawn(event_loop.run());
    peer.listen("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
        .await
        .expect("listen");
    peer.dial(node.addrs()[0].clone()).await.expect("dial");
    peer.subscribe(LEDGER_TOPIC).await.expect("subscribe");
    (peer, task)
}

#[test]
fn five_nodes_partitioned_in_two_keep_transacting_and_converge_after_healing() {
    runtime().block_on(async {
        let genesis_dir = tempfile::tempdir().expect("temp dir");
        let (keys, _genesis, path) = network(5, genesis_dir.path());
        let accounts: Vec<SecretKey> = (0..5)
            .map(|i| SecretKey::from_seed(&[100 + i as u8; 32]))
            .collect();
        let cluster = Cluster::start_keyed(keys, |_, c| {
            c.ledger.genesis = Some(path.clone());
            c.ledger.sync_interval = Duration::from_millis(500);
        })
        .await
        .expect("cluster");
        let node = |i: usize| cluster.node(i);
        let halves: [&[usize]; 2] = [&[0, 1], &[2, 3, 4]];

        // Within each half everyone is connected; across, nobody.
        for &i in &[3, 4] {
            node(i)
                .client()
                .dial(node(2).addrs()[0].clone())
                .await
                .expect("dial");
        }
        for (h, half) in halves.iter().enumerate() {
            for &i in *half {
                for &j in halves[1 - h] {
                    node(i)
                        .client()
                        .block(node(j).peer_id())
                        .await
                        .expect("block");
                }
            }
        }
        for (h, half) in halves.iter().enumerate() {
            for &i in *half {
                let others: Vec<String> = halves[1 - h]
                    .iter()
                    .map(|&j| node(j).peer_id().to_string())
                    .collect();
                eventually("the halves to part", WAIT, || async {
                    let peers = peers_of(node(i)).await;
                    (!peers.iter().any(|p| others.contains(p))).then_some(())
                })
                .await
                .expect("partition");
            }
        }

        // Each half transacts on its own, some of it paying the other half.
        for round in 1..=3u64 {
            transfer(node(0), &accounts[1], round).await;
            transfer(node(1), &accounts[2], 10 * round).await;
            transfer(node(2), &accounts[3], 100 + round).await;
            transfer(node(3), &accounts[4], 200 + round).await;
            transfer(node(4), &accounts[0], 300 + round).await;
        }
        let digest = |i: usize| node(i).ledger_digest().expect("a ledger");
        for half in halves {
            eventually("a half to agree within itself", WAIT, || async {
                half.iter()
                    .all(|&i| digest(i) == digest(half[0]))
                    .then_some(())
            })
            .await
            .expect("agreement within a half");
        }
        assert_ne!(digest(0), digest(2), "the halves saw different ops");

        // Heal: unblock and reconnect; anti-entropy on connect does the rest.
        for i in 0..5 {
            for j in 0..5 {
                if i != j {
                    node(i)
                        .client()
                        .unblock(node(j).peer_id())
                        .await
                        .expect("unblock");
                }
            }
        }
        node(2)
            .client()
            .dial(node(0).addrs()[0].clone())
            .await
            .expect("dial");
        eventually("all five replicas to converge", WAIT, || async {
            (1..5).all(|i| digest(i) == digest(0)).then_some(())
        })
        .await
        .expect("convergence");

        // Every transfer from both halves counts on every replica.
        let want = [
            1_000 - 6 + 906,
            1_000 + 6 - 60,
            1_000 + 60 - 306,
            1_000 + 306 - 606,
            1_000 + 606 - 906,
        ];
        for i in 0..5 {
            for (a, expected) in want.iter().enumerate() {
                assert_eq!(
                    balance(node(i), &accounts[a]).await,
                    *expected,
                    "node {i} account {a}"
                );
            }
            let report = verify(node(i)).await;
            assert!(report.ok, "{report:?}");
            assert_eq!(report.ops, 15, "{report:?}");
        }
        cluster.shutdown().await;
    });
}

#[test]
fn a_peer_sending_forged_ops_and_garbage_is_scored_down_and_blocked() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let (keys, genesis, path) = network(1, dir.path());
        let cluster = Cluster::start_keyed(keys, |_, c| {
            c.ledger.genesis = Some(path.clone());
        })
        .await
        .expect("cluster");
        let honest = cluster.node(0);

        // A rogue peer built from the same overlay crate.
        let rogue_key = SecretKey::generate();
        let (rogue, rogue_task) = bare_peer(&rogue_key, honest).await;

        // A well-framed op with a broken signature, gossiped until the
        // node hears it: scored down, not stored.
        let replica = CreditManager::new(genesis);
        let mut forged = replica.draft(
            &rogue_key,
            1,
            Body::Transfer {
                to: honest.public_key(),
                amount: 1,
            },
        );
        forged.signature.0[0] ^= 1;
        let frame = encode_ops([&forged]);
        let id = rogue.peer_id();
        eventually("the node to score the forger down", WAIT, || async {
            let _ = rogue.publish(LEDGER_TOPIC, frame.clone()).await;
            (honest.peer_score(&id) < 0).then_some(())
        })
        .await
        .expect("scored down");

        // Garbage anti-entropy requests until the node blocks it.
        eventually("the node to block the rogue", WAIT, || async {
            let _ = rogue
                .request_ledger(
                    honest.peer_id(),
                    b"garbage".to_vec(),
                    Duration::from_secs(5),
                )
                .await;
            (honest.peer_score(&id) <= BLOCK_SCORE).then_some(())
        })
        .await
        .expect("blocked");
        eventually("the rogue to be disconnected", WAIT, || async {
            (!peers_of(honest).await.contains(&id.to_string())).then_some(())
        })
        .await
        .expect("disconnected");
        // Blocked peers stay out: a new connection is refused by the node.
        let _ = rogue.dial(honest.addrs()[0].clone()).await;
        let sync = rogue
            .request_ledger(honest.peer_id(), Vec::new(), Duration::from_secs(5))
            .await;
        assert!(sync.is_err(), "a blocked peer was answered: {sync:?}");

        // The node is unharmed: nothing stored, and an honest peer syncs.
        let report = verify(honest).await;
        assert_eq!((report.ok, report.ops), (true, 0));
        let mut config = test_config(&dir.path().join("late"));
        config.ledger.genesis = Some(path.clone());
        config.node.bootstrap = honest.addrs();
        let late = ComputeNode::start(config, SecretKey::generate())
            .await
            .expect("late node");
        transfer(honest, &SecretKey::generate(), 7).await;
        eventually("the late node to catch up", WAIT, || async {
            let _ = late.ledger_sync(honest.peer_id()).await;
            (late.ledger_digest() == honest.ledger_digest()).then_some(())
        })
        .await
        .expect("caught up");
        late.shutdown().await;
        let _ = rogue.shutdown().await;
        rogue_task.abort();
        cluster.shutdown().await;
    });
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

#[test]
fn ops_dated_ahead_of_the_clock_wait_for_it() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        // Node 0, then two accounts whose clocks run ahead.
        let (keys, genesis, path) = network(3, dir.path());
        let mut keys = keys.into_iter();
        let node_key = keys.next().expect("three keys");
        let (far, soon) = (keys.next().expect("far"), keys.next().expect("soon"));
        let skew = Duration::from_secs(1);
        let cluster = Cluster::start_keyed(vec![node_key], |_, c| {
            c.ledger.genesis = Some(path.clone());
            c.ledger.max_clock_skew = skew;
        })
        .await
        .expect("cluster");
        let node = cluster.node(0);

        // A plain overlay peer gossips the ops.
        let (peer, peer_task) = bare_peer(&SecretKey::generate(), node).await;
        let replica = CreditManager::new(genesis);
        let pay = |key: &SecretKey, time_ms: u64| {
            replica.draft(
                key,
                time_ms,
                Body::Transfer {
                    to: node.public_key(),
                    amount: 5,
                },
            )
        };
        let gossip = |op: p2pc_ledger::Op, until: usize| {
            let frame = encode_ops([&op]);
            let peer = &peer;
            async move {
                eventually("the node to hear the op", WAIT, || async {
                    let _ = peer.publish(LEDGER_TOPIC, frame.clone()).await;
                    (node.ledger_future_ops() >= until).then_some(())
                })
                .await
                .expect("heard")
            }
        };
        let applied = || async { verify(node).await.ops };

        // An hour ahead: held, not applied, and not held against the peer.
        gossip(pay(&far, now_ms() + 3_600_000), 1).await;
        assert_eq!(applied().await, 0);
        assert_eq!(node.peer_score(&peer.peer_id()), 0);

        // A forged op from the future is refused at once, not parked.
        let mut forged = pay(&far, now_ms() + 3_600_000 + 1);
        forged.signature.0[0] ^= 1;
        let frame = encode_ops([&forged]);
        eventually("the node to score the forger down", WAIT, || async {
            let _ = peer.publish(LEDGER_TOPIC, frame.clone()).await;
            (node.peer_score(&peer.peer_id()) < 0).then_some(())
        })
        .await
        .expect("scored down");
        assert_eq!(node.ledger_future_ops(), 1);

        // Four seconds ahead: applied once the clock is within the skew
        // of its time, never before.
        let op = pay(&soon, now_ms() + 4_000);
        let due = op.time_ms - skew.as_millis() as u64;
        let frame = encode_ops([&op]);
        eventually("the op to be applied", WAIT, || async {
            let _ = peer.publish(LEDGER_TOPIC, frame.clone()).await;
            (applied().await == 1).then_some(())
        })
        .await
        .expect("applied");
        assert!(now_ms() >= due, "applied {} ms early", due - now_ms());
        assert_eq!(balance(node, &soon).await, 995);
        assert_eq!(
            (node.ledger_future_ops(), balance(node, &far).await),
            (1, 1_000)
        );
        let report = verify(node).await;
        assert_eq!(
            (report.ok, report.future_ops),
            (true, Some(1)),
            "{report:?}"
        );

        let _ = peer.shutdown().await;
        peer_task.abort();
        cluster.shutdown().await;
    });
}
