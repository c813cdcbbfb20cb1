//! lnhubd's on-chain wallet against a real regtest `bitcoind` (built by `scripts/bitcoind`;
//! skipped outside CI without it): an address from `newaddr` receives a mined coinbase, which
//! `listfunds` shows immature, then confirmed once 100 blocks deep; `withdraw` pays part of it
//! to another wallet (bitcoind's mempool takes the transaction) and the change comes back;
//! after a `kill -9` the wallet is the same and its next address is new; `withdraw all`
//! empties it. Bad requests get one-line errors.

use std::time::Duration;

use bitcoin::Txid;
use lnhub_tests::bitcoind::{bitcoind_binary, Bitcoind, TestWallet};
use lnhub_tests::{parse_metrics, wait_until, Hub};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);
const COINBASE: u64 = 50 * 100_000_000;

fn funds(hub: &Hub) -> Value {
    hub.cli(&["listfunds"]).unwrap()
}

/// Mines `n` blocks and waits until the hub's wallet has seen them.
fn mine(btc: &Bitcoind, hub: &Hub, n: u32) {
    btc.mine(n);
    let height = u64::from(btc.height());
    assert!(wait_until(T, || hub.cli(&["getinfo"]).unwrap()
        ["blockheight"]
        == height));
    // The wallet follows on the same thread, right after the height.
    std::thread::sleep(Duration::from_millis(200));
}

#[test]
fn the_wallet_receives_withdraws_and_survives_a_kill() {
    let Some(binary) = bitcoind_binary() else {
        return;
    };
    // The hub starts with the chain at genesis: its new wallet's birthday.
    let btc = Bitcoind::start(&binary);
    let (url, cookie) = (btc.url(), btc.cookie.display().to_string());
    let mut hub = Hub::start(&[
        "--bitcoind-rpc",
        &url,
        "--bitcoind-cookie",
        &cookie,
        "--metrics",
        "127.0.0.1:0",
    ]);
    let first = hub.cli(&["newaddr"]).unwrap()["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(first.starts_with("bcrt1q"), "a regtest P2WPKH: {first}");
    // Two blocks at once, both paying the wallet: both are read.
    btc.rpc("generatetoaddress", json!([2, first]));
    mine(&btc, &hub, 1);
    let f = funds(&hub);
    assert_eq!(f["immature_sat"], 2 * COINBASE, "{f}");
    assert_eq!(f["confirmed_sat"], 0, "{f}");
    mine(&btc, &hub, 100);
    assert!(
        wait_until(T, || funds(&hub)["confirmed_sat"] == 2 * COINBASE),
        "mature after 100 blocks: {}",
        funds(&hub)
    );
    let f = funds(&hub);
    let mut heights: Vec<u64> = f["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            assert_eq!(o["address"], first.as_str(), "{f}");
            o["confirmation_height"].as_u64().unwrap()
        })
        .collect();
    heights.sort();
    assert_eq!(heights, vec![1, 2], "{f}");

    // Withdraw 1 BTC at 2 sat/vB.
    let other = TestWallet::new(9);
    let to = other.address.to_string();
    let w = hub
        .cli(&["withdraw", &to, "100000000", "--sat-per-vb", "2"])
        .unwrap();
    let txid: Txid = w["txid"].as_str().unwrap().parse().unwrap();
    assert!(btc.in_mempool(&txid), "bitcoind took it: {w}");
    let f = funds(&hub);
    let left = f["confirmed_sat"].as_u64().unwrap() + f["unconfirmed_sat"].as_u64().unwrap();
    let fee = 2 * COINBASE - 100_000_000 - left;
    assert!(
        (200..2_000).contains(&fee),
        "about 2 sat/vB: fee {fee}, {f}"
    );
    mine(&btc, &hub, 1);
    assert!(wait_until(T, || funds(&hub)["confirmed_sat"] == left));
    // The metrics say the same.
    assert!(wait_until(T, || {
        let m = parse_metrics(&hub.scrape());
        let is = |k: &str, v: f64| m.get(k) == Some(&v);
        is("lnhub_wallet_balance_sat{state=\"confirmed\"}", left as f64)
            && is("lnhub_wallet_balance_sat{state=\"unconfirmed\"}", 0.0)
            && is("lnhub_chain_broadcasts_total", 1.0)
            && is("lnhub_chain_broadcasts_pending", 0.0)
    }));
    let tx = btc.rpc(
        "getrawtransaction",
        json!([
            txid.to_string(),
            true,
            btc.rpc("getbestblockhash", json!([]))
        ]),
    );
    assert!(
        tx["vout"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["value"] == 1.0 && o["scriptPubKey"]["address"] == to.as_str()),
        "{tx}"
    );

    // A kill -9: the same funds, and the next address is a new one.
    let before = funds(&hub);
    hub.kill_and_restart();
    assert!(wait_until(T, || funds(&hub) == before), "{}", funds(&hub));
    let second = hub.cli(&["newaddr"]).unwrap()["address"].clone();
    assert_ne!(second, first.as_str());

    // Errors: another network's address, more than there is, nonsense.
    let mainnet = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq";
    let e = hub.cli(&["withdraw", mainnet, "1000"]).unwrap_err();
    assert!(e.contains("network"), "{e}");
    let e = hub
        .cli(&["withdraw", &to, &(COINBASE * 2).to_string()])
        .unwrap_err();
    assert!(e.contains("cannot build"), "{e}");
    let e = hub.cli(&["withdraw", &to, "lots"]).unwrap_err();
    assert!(e.contains("amount_sat"), "{e}");

    // Everything out.
    let w = hub.cli(&["withdraw", &to, "all"]).unwrap();
    assert_eq!(w["outputs"], 1, "no change: {w}");
    mine(&btc, &hub, 1);
    assert!(wait_until(T, || {
        let f = funds(&hub);
        f["confirmed_sat"] == 0 && f["outputs"].as_array().unwrap().is_empty()
    }));
}

#[test]
fn without_a_chain_backend_there_is_no_wallet() {
    let hub = Hub::start(&[]);
    let e = hub.cli(&["listfunds"]).unwrap_err();
    assert!(e.contains("no on-chain wallet"), "{e}");
}
