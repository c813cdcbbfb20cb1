//! `lnhubd` following a real regtest `bitcoind` (built by `scripts/bitcoind`): the height in
//! `getinfo` and in the metrics follows the node as blocks are mined, a reorg (a block
//! invalidated, a longer branch mined) is followed with the blocks that left logged, and a
//! bitcoind of another network or with wrong credentials stops start-up with one line.

use std::time::Duration;

use lnhub_tests::bitcoind::{bitcoind_binary, Bitcoind};
use lnhub_tests::{parse_metrics, wait_until, Hub};
use serde_json::json;

const T: Duration = Duration::from_secs(20);

fn hub_height(hub: &Hub) -> u64 {
    hub.cli(&["getinfo"]).unwrap()["blockheight"]
        .as_u64()
        .unwrap()
}

#[test]
fn the_hub_follows_bitcoind_through_blocks_and_a_reorg() {
    let Some(binary) = bitcoind_binary() else {
        return;
    };
    let node = Bitcoind::start(&binary);
    node.mine(101);
    let url = node.url();
    let cookie = node.cookie.display().to_string();
    let hub = Hub::start(&[
        "--bitcoind-rpc",
        &url,
        "--bitcoind-cookie",
        &cookie,
        "--metrics",
        "127.0.0.1:0",
    ]);
    let info = hub.cli(&["getinfo"]).unwrap();
    assert_eq!(info["chain_backend"], format!("bitcoind {url}"));
    assert!(
        wait_until(T, || hub_height(&hub) == 101),
        "the hub starts at the node's height"
    );
    node.mine(5);
    assert!(wait_until(T, || hub_height(&hub) == 106), "and follows it");
    let m = parse_metrics(&hub.scrape());
    assert_eq!(m["lnhub_block_height"], 106.0);

    // A reorg: blocks 105 and 106 invalidated (the node falls back to 104), then a longer
    // branch of three is mined from there.
    let hash_105 = node.rpc("getblockhash", json!([105]));
    let old_106 = node.rpc("getblockhash", json!([106]));
    node.rpc("invalidateblock", json!([hash_105]));
    assert_eq!(node.height(), 104);
    assert!(
        wait_until(T, || hub_height(&hub) == 104),
        "the hub goes back"
    );
    node.mine_other(3);
    assert!(
        wait_until(T, || hub_height(&hub) == 107),
        "and onto the new branch"
    );
    let log = hub.log();
    assert!(
        log.contains(&format!(
            "block {} at height 106 left the best chain",
            old_106.as_str().unwrap()
        )),
        "the reorg is logged"
    );
    // 5 blocks, then 3 on the new branch; the two invalidated ones left.
    let m = parse_metrics(&hub.scrape());
    assert_eq!(m["lnhub_chain_blocks_connected_total"], 8.0);
    assert_eq!(m["lnhub_chain_blocks_disconnected_total"], 2.0);
    assert_eq!(m["lnhub_chain_poll_errors_total"], 0.0);
    assert_eq!(m["lnhub_block_height"], 107.0);
}

#[test]
fn a_wrong_network_or_wrong_credentials_stop_start_up_with_one_line() {
    let Some(binary) = bitcoind_binary() else {
        return;
    };
    let node = Bitcoind::start(&binary);
    let url = node.url();
    let cookie = node.cookie.display().to_string();
    let run = |args: &[&str]| {
        let dir = lnhub_tests::TempDir::new("chain-refused");
        let out = std::process::Command::new(lnhub_tests::lnhubd_path())
            .arg("--data-dir")
            .arg(&dir.0)
            .args(["--listen", "127.0.0.1:0", "--rpc-listen", "off"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    };
    let e = run(&[
        "--network",
        "signet",
        "--bitcoind-rpc",
        &url,
        "--bitcoind-cookie",
        &cookie,
    ]);
    assert!(e.contains("follows \"regtest\", not \"signet\""), "{e}");
    assert_eq!(
        e.lines().filter(|l| l.starts_with("lnhubd:")).count(),
        1,
        "{e}"
    );
    let e = run(&[
        "--bitcoind-rpc",
        &url,
        "--bitcoind-rpc-user",
        "nobody",
        "--bitcoind-rpc-password",
        "wrong",
    ]);
    assert!(e.contains("refused our credentials"), "{e}");
}

/// `--bitcoind auto`: lnhubd runs the cached regtest bitcoind itself (data in
/// `<data-dir>/bitcoind`) and follows it; after a `kill -9` of lnhubd, the next start stops
/// the node left running and starts it again on the same chain; `lnhub-cli stop` stops both.
#[test]
fn bitcoind_auto_runs_a_regtest_node_with_the_hub() {
    if bitcoind_binary().is_none() {
        return;
    }
    let mut hub = Hub::start(&["--bitcoind", "auto"]);
    let info = hub.cli(&["getinfo"]).unwrap();
    let backend = info["chain_backend"].as_str().unwrap().to_string();
    assert!(backend.ends_with(" (run by lnhubd)"), "{backend}");
    let addr: std::net::SocketAddr = backend
        .trim_start_matches("bitcoind http://")
        .trim_end_matches(" (run by lnhubd)")
        .parse()
        .unwrap();
    let dir = hub.dir.0.join("bitcoind");
    let node = Bitcoind::attach(addr, dir.join("regtest/.cookie"));
    node.mine(3);
    assert!(wait_until(T, || hub_height(&hub) == 3));
    let pid = |dir: &std::path::Path| -> u32 {
        std::fs::read_to_string(dir.join("bitcoind.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let first = pid(&dir);

    // Killed, lnhubd leaves its bitcoind running; the next start stops it and runs a new
    // one on the same chain.
    hub.kill_and_restart();
    assert!(wait_until(T, || hub_height(&hub) == 3), "the same chain");
    let second = pid(&dir);
    assert_ne!(first, second);
    assert!(
        !std::path::Path::new(&format!("/proc/{first}")).exists(),
        "the orphan was stopped"
    );
    hub.cli(&["stop"]).unwrap();
    assert!(wait_until(T, || !hub.is_running()));
    assert!(
        wait_until(T, || !std::path::Path::new(&format!("/proc/{second}"))
            .exists()),
        "a clean stop stops the node too"
    );
}
