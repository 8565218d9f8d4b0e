//! A node process for the memory bench: one `ComputeNode` and its gateway,
//! as `p2pctl node start` runs them, with loopback addresses and data in
//! the directory given. It prints `ready <multiaddr>`, then answers each
//! line `peers` on stdin with `peers N`, and stops when stdin closes.
//!
//! Usage: `p2pc-bench-node DIR [BOOTSTRAP_MULTIADDR]`

use std::io::BufRead;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("a directory"));
    let bootstrap = args.next();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let mut config = p2pc_testkit::test_config(&dir);
        config.api.listen = "127.0.0.1:0".into();
        if let Some(b) = bootstrap {
            config.node.bootstrap = vec![b.parse().expect("a multiaddr")];
        }
        let key = p2pc_crypto::SecretKey::generate();
        let node = p2pc_node::ComputeNode::start(config, key)
            .await
            .expect("node starts");
        let gateway = p2pc_api::serve(node.handle()).await.expect("gateway");
        let addr = format!("{}/p2p/{}", node.addrs()[0], node.peer_id());
        println!("ready {addr}");
        let (lines, mut asks) = tokio::sync::mpsc::channel::<String>(4);
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if lines.blocking_send(line).is_err() {
                    break;
                }
            }
        });
        while let Some(line) = asks.recv().await {
            if line.trim() == "peers" {
                let n = node.client().peers().await.map(|p| p.len()).unwrap_or(0);
                println!("peers {n}");
            }
        }
        gateway.shutdown().await;
        node.shutdown().await;
    });
}
