//! lnhubd and LDK on a real regtest `bitcoind` (built by `scripts/bitcoind`; skipped outside CI
//! without it): an LDK node S, funded from mined coins, opens a channel to the hub that is
//! **not** zero-conf; the hub asks for 3 confirmations, watches the funding output, and is
//! ready only at that depth, across a reorg that takes the funding's first block away. S then
//! pays R (zero-conf to the hub) through the channel, closes it cooperatively, and the hub
//! broadcasts the closing transaction (bitcoind's mempool takes it), tracks it to the close
//! depth and retires the channel, keeping a summary for `listclosedchannels`; the hub's side
//! of the close is in its on-chain wallet.

use std::sync::Arc;
use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, Txid};
use lightning::types::payment::PaymentHash;
use lnhub_tests::bitcoind::{bitcoind_binary, Bitcoind, TestWallet};
use lnhub_tests::{wait_until, Hub, InboundChannelPolicy, LdkNode, LdkNodeConfig};
use serde_json::Value;

const T: Duration = Duration::from_secs(20);

fn hub_height(hub: &Hub) -> u64 {
    hub.cli(&["getinfo"]).unwrap()["blockheight"]
        .as_u64()
        .unwrap()
}

/// Mines `n` blocks and waits until the hub follows.
fn mine(btc: &Bitcoind, hub: &Hub, n: u32) -> Vec<BlockHash> {
    let hashes: Vec<BlockHash> = btc.mine(n).iter().map(|h| h.parse().unwrap()).collect();
    let height = u64::from(btc.height());
    assert!(
        wait_until(T, || hub_height(hub) == height),
        "hub at {height}"
    );
    hashes
}

/// A hub following `btc`, retiring closed channels at 3 confirmations, trusting `trusted`
/// (if any) with zero-conf channels.
fn chain_hub(btc: &Bitcoind, trusted: Option<&LdkNode>) -> Hub {
    let (url, cookie) = (btc.url(), btc.cookie.display().to_string());
    let mut args = vec![
        "--bitcoind-rpc".to_string(),
        url,
        "--bitcoind-cookie".to_string(),
        cookie,
        "--close-depth".to_string(),
        "3".to_string(),
    ];
    if let Some(node) = trusted {
        args.extend(["--trusted-peer".to_string(), node.node_id.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Hub::start(&args)
}

/// An LDK node following `btc` whose funding transactions spend `wallet`'s coins.
fn ldk_with_wallet(btc: &Bitcoind, name: &str, seed: u8, wallet: &Arc<TestWallet>) -> LdkNode {
    let config = LdkNodeConfig {
        wallet: Some(Arc::clone(wallet)),
        ..LdkNodeConfig::default()
    };
    LdkNode::new(name, [seed; 32], config.following(btc))
}

/// The hub's `listfunds`, and its outputs of transaction `txid`.
fn wallet_outputs_of(hub: &Hub, txid: &Txid) -> (Value, Vec<Value>) {
    let funds = hub.cli(&["listfunds"]).unwrap();
    let ours = funds["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| {
            o["outpoint"]
                .as_str()
                .unwrap()
                .starts_with(&txid.to_string())
        })
        .cloned()
        .collect();
    (funds, ours)
}

/// The hub's channel with `peer`, if it lists one.
fn hub_channel(hub: &Hub, peer: &str) -> Option<Value> {
    let list = hub.cli(&["listchannels", "--peer", peer]).unwrap();
    list["channels"].as_array().unwrap().first().cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldk_opens_a_channel_on_chain_pays_through_it_and_closes_it_on_chain() {
    let Some(binary) = bitcoind_binary() else {
        return;
    };
    let btc = Bitcoind::start(&binary);
    let wallet = Arc::new(TestWallet::new(7));
    btc.fund_wallet(&wallet, 1);
    let s = ldk_with_wallet(&btc, "S", 0x53, &wallet);
    let r = LdkNode::new(
        "R",
        [0x52; 32],
        LdkNodeConfig {
            inbound_channels: InboundChannelPolicy::Reject,
            ..LdkNodeConfig::default()
        }
        .following(&btc),
    );
    // R is trusted (its zero-conf channel brings the hub outbound liquidity); S is not.
    let hub = chain_hub(&btc, Some(&r));
    assert!(wait_until(T, || hub_height(&hub) == 101));
    s.connect(hub.node_id, hub.addr).await.unwrap();
    r.connect(hub.node_id, hub.addr).await.unwrap();
    r.open_zero_conf_channel(hub.node_id, 1_000_000, 500_000_000)
        .await
        .expect("R -> hub channel");
    r.wait_route_hint_ready(&hub.node_id, T).await.unwrap();

    // S opens; the hub wants 3 confirmations.
    let (chan, funding) = s
        .open_channel_pending(hub.node_id, 500_000, 0)
        .await
        .unwrap();
    assert_eq!(
        s.channel(&chan).unwrap().confirmations_required,
        Some(3),
        "the hub's minimum_depth for a peer it does not trust"
    );
    let txid = funding.compute_txid();
    assert_eq!(s.broadcast_to(&btc).unwrap(), vec![txid]);
    let sid = s.node_id.to_string();
    assert!(hub_channel(&hub, &sid).is_none(), "still in establishment");

    // One confirmation, then a reorg takes the block away: not ready.
    let first = mine(&btc, &hub, 1)[0];
    s.sync_chain(&btc);
    btc.invalidate(&first);
    assert!(btc.in_mempool(&txid), "back in the mempool");
    btc.mine_empty();
    s.sync_chain(&btc);
    // The empty block is at the same height as the one it replaced: the hub sees the tip
    // change, not the height.
    assert!(wait_until(T, || hub.log().contains("left the best chain")));
    mine(&btc, &hub, 2);
    s.sync_chain(&btc);
    assert!(
        hub_channel(&hub, &sid).is_none(),
        "2 confirmations after the reorg: not ready"
    );
    assert!(!s.channel(&chan).unwrap().is_channel_ready);
    mine(&btc, &hub, 1);
    s.sync_chain(&btc);
    s.wait_channels_usable(&hub.node_id, T).await.unwrap();
    let scid = s.channel(&chan).unwrap().short_channel_id.unwrap();
    let real = format!(
        "{}x{}x{}",
        scid >> 40,
        (scid >> 16) & 0xff_ffff,
        scid & 0xffff
    );
    assert!(
        wait_until(T, || hub_channel(&hub, &sid)
            .is_some_and(|c| c["real_short_channel_id"] == real.as_str())),
        "the hub knows the channel by its real scid {real}: {:?}",
        hub_channel(&hub, &sid)
    );
    let c = hub_channel(&hub, &sid).unwrap();
    assert_eq!(c["capacity_msat"], 500_000_000);
    assert!(c["funding_outpoint"]
        .as_str()
        .unwrap()
        .starts_with(&txid.to_string()));

    // S pays R through the hub.
    let amount = 10_000_000;
    let invoice = r
        .create_invoice(amount, "on chain", Some(hub.node_id))
        .unwrap();
    let hash = PaymentHash(invoice.payment_hash().to_byte_array());
    s.pay_invoice(&invoice).unwrap();
    s.wait_payment_sent(hash, T).await.unwrap();
    assert_eq!(r.wait_claimed(hash, T).await.unwrap(), amount);

    // S closes cooperatively: the hub broadcasts the closing transaction.
    s.close_channel(&chan, &hub.node_id).unwrap();
    assert!(
        wait_until(T, || hub_channel(&hub, &sid).is_some_and(|c| c["state"]
            == "closed"
            && c["closing_txid"].is_string())),
        "{:?}",
        hub_channel(&hub, &sid)
    );
    let closing: Txid = hub_channel(&hub, &sid).unwrap()["closing_txid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        wait_until(T, || btc.in_mempool(&closing)),
        "the hub's broadcast reached bitcoind's mempool"
    );
    assert!(hub.log().contains(&format!("broadcast {closing}")));

    // Mined: kept until 3 confirmations, then retired.
    mine(&btc, &hub, 2);
    std::thread::sleep(Duration::from_secs(1));
    assert!(hub_channel(&hub, &sid).is_some(), "2 confirmations: kept");
    mine(&btc, &hub, 1);
    assert!(
        wait_until(T, || hub_channel(&hub, &sid).is_none()),
        "retired at the close depth"
    );
    let closed = hub.cli(&["listclosedchannels"]).unwrap();
    let closed = closed["channels"].as_array().unwrap();
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0]["closing_txid"], closing.to_string());
    assert_eq!(closed[0]["real_short_channel_id"], real.as_str());
    assert_eq!(closed[0]["peer"], sid.as_str());
    assert_eq!(closed[0]["capacity_msat"], 500_000_000);
    assert_eq!(
        closed[0]["final_local_balance_msat"],
        amount + 2_000,
        "what S paid through the hub, with the hub's fee (1,000 msat + 100 ppm)"
    );
    let height = btc.height();
    assert_eq!(closed[0]["closing_height"], height - 2);
    // The hub's side of the close paid its on-chain wallet.
    let (funds, ours) = wallet_outputs_of(&hub, &closing);
    assert_eq!(ours.len(), 1, "{funds}");
    assert_eq!(ours[0]["amount_sat"], (amount + 2_000) / 1_000, "{funds}");
    assert_eq!(funds["confirmed_sat"], (amount + 2_000) / 1_000);
    s.sync_chain(&btc);
    assert!(s.wait(T, |n| n.channel(&chan).is_none()).await);
    if std::env::var_os("LNHUB_TEST_LOG").is_some() {
        eprintln!("{}", hub.log());
    }
}

/// Waits until S sees the hub gone, then connects again.
async fn reconnect(s: &LdkNode, hub: &Hub) {
    s.disconnect(&hub.node_id);
    assert!(s.wait(T, |n| !n.is_connected(&hub.node_id)).await);
    s.connect(hub.node_id, hub.addr).await.unwrap();
}

/// What the chain said survives restarts, because the chain is asked again: a `kill -9`
/// during an opening (the funding 1 block deep) and the hub still sends `channel_ready` at
/// the third confirmation; after another, the channel's real scid is known again. A second
/// channel force-closed by S (its commitment mined) is failed by the hub. The first channel,
/// closed cooperatively, has its closing transaction mined while the hub is stopped: at the
/// next start the hub finds the spend in the recent blocks and retires the channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_chain_said_is_found_again_after_restarts() {
    let Some(binary) = bitcoind_binary() else {
        return;
    };
    let btc = Bitcoind::start(&binary);
    let wallet = Arc::new(TestWallet::new(8));
    btc.fund_wallet(&wallet, 2);
    let s = ldk_with_wallet(&btc, "S", 0x54, &wallet);
    let mut hub = chain_hub(&btc, None);
    let sid = s.node_id.to_string();
    s.connect(hub.node_id, hub.addr).await.unwrap();
    let (one, funding) = s
        .open_channel_pending(hub.node_id, 400_000, 0)
        .await
        .unwrap();
    let funding_one = funding.compute_txid().to_string();
    s.broadcast_to(&btc).unwrap();
    mine(&btc, &hub, 1);
    hub.kill_and_restart();
    reconnect(&s, &hub).await;
    mine(&btc, &hub, 2);
    s.sync_chain(&btc);
    s.wait_channels_usable(&hub.node_id, T).await.unwrap();
    let scid = s.channel(&one).unwrap().short_channel_id.unwrap();
    let real = format!(
        "{}x{}x{}",
        scid >> 40,
        (scid >> 16) & 0xff_ffff,
        scid & 0xffff
    );
    hub.kill_and_restart();
    reconnect(&s, &hub).await;
    let real_scid_of = |hub: &Hub, funding: &str| {
        let list = hub.cli(&["listchannels"]).unwrap();
        list["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["funding_outpoint"].as_str().unwrap().starts_with(funding))
            .map(|c| (c["real_short_channel_id"].clone(), c["state"].clone()))
    };
    assert!(
        wait_until(T, || real_scid_of(&hub, &funding_one)
            .is_some_and(|(r, _)| r == real.as_str())),
        "the real scid is asked of the chain again: {:?}",
        real_scid_of(&hub, &funding_one)
    );

    // A second channel, force-closed by S: its commitment on chain fails it at the hub.
    let (two, funding) = s
        .open_channel_pending(hub.node_id, 300_000, 0)
        .await
        .unwrap();
    let funding_two = funding.compute_txid().to_string();
    s.broadcast_to(&btc).unwrap();
    mine(&btc, &hub, 3);
    s.sync_chain(&btc);
    assert!(
        s.wait(T, |n| n.channel(&two).is_some_and(|c| c.is_usable))
            .await
    );
    s.force_close(&two, &hub.node_id).unwrap();
    // LDK hands its commitment over with its next events.
    let mut sent = Vec::new();
    assert!(
        s.wait(T, |n| {
            sent.extend(n.broadcast_to(&btc).expect("bitcoind takes S's commitment"));
            !sent.is_empty()
        })
        .await
    );
    assert_eq!(sent.len(), 1, "{sent:?}");
    mine(&btc, &hub, 1);
    assert!(
        wait_until(T, || real_scid_of(&hub, &funding_two)
            .is_some_and(|(_, state)| state == "failed")),
        "{:?}",
        real_scid_of(&hub, &funding_two)
    );
    assert!(hub.log().contains("a commitment is on chain"));

    // The first channel closes cooperatively; its closing transaction is mined while the
    // hub is stopped.
    s.close_channel(&one, &hub.node_id).unwrap();
    let closing = || {
        hub_channel(&hub, &sid)
            .into_iter()
            .chain(
                hub.cli(&["listchannels"]).unwrap()["channels"]
                    .as_array()
                    .unwrap()
                    .clone(),
            )
            .find_map(|c| c["closing_txid"].as_str().map(str::to_string))
    };
    assert!(wait_until(T, || closing().is_some()));
    let closing: Txid = closing().unwrap().parse().unwrap();
    assert!(wait_until(T, || btc.in_mempool(&closing)));
    hub.kill();
    btc.mine(3);
    hub.restart();
    assert!(
        wait_until(T, || real_scid_of(&hub, &funding_one).is_none()),
        "retired at the next start"
    );
    assert!(hub.log().contains("spent while we were away"));
    let closed = hub.cli(&["listclosedchannels"]).unwrap();
    assert_eq!(
        closed["channels"][0]["closing_txid"],
        closing.to_string(),
        "{closed}"
    );
    assert!(
        real_scid_of(&hub, &funding_two).is_some(),
        "the failed one is kept"
    );
}

/// The hub opens a channel itself: its wallet (funded from a mined coinbase) funds a channel
/// to LDK node L, which accepts it (not zero-conf, 3 confirmations); the funding transaction
/// reaches bitcoind's mempool once L's `funding_signed` is durable; at 3 confirmations the
/// channel is usable both ways and the hub's own. P pays L through it, then the operator
/// closes it (`closechannel`, the hub as funder proposing the fee); the closing transaction
/// is mined, the channel retired, and the wallet holds the hub's side of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_opens_a_channel_with_its_wallet_forwards_over_it_and_closes_it() {
    let Some(binary) = bitcoind_binary() else {
        return;
    };
    let btc = Bitcoind::start(&binary);
    btc.mine(1);
    let p = LdkNode::new("P", [0x50; 32], LdkNodeConfig::default().following(&btc));
    let mut l_config = LdkNodeConfig {
        inbound_channels: InboundChannelPolicy::Accept,
        ..LdkNodeConfig::default()
    }
    .following(&btc);
    l_config.user_config.channel_handshake_config.minimum_depth = 3;
    let mut l = LdkNode::new("L", [0x4c; 32], l_config);
    let l_addr = l.listen().await;
    let hub = chain_hub(&btc, Some(&p));
    // Coins for the wallet.
    let address = hub.cli(&["newaddr"]).unwrap()["address"].clone();
    btc.rpc("generatetoaddress", serde_json::json!([1, address]));
    mine(&btc, &hub, 100);
    assert!(wait_until(T, || hub.cli(&["listfunds"]).unwrap()
        ["confirmed_sat"]
        == 5_000_000_000u64));

    let lid = l.node_id.to_string();
    hub.cli(&["connect", &format!("{lid}@{l_addr}")]).unwrap();
    let e = hub.cli(&["openchannel", &lid, "1000"]).unwrap_err();
    assert!(e.contains("amount_sat"), "{e}");
    hub.cli(&["openchannel", &lid, "400000"]).unwrap();
    let mempool = || btc.rpc("getrawmempool", serde_json::json!([]));
    assert!(
        wait_until(T, || mempool().as_array().is_some_and(|m| m.len() == 1)),
        "the funding transaction is broadcast after funding_signed"
    );
    let funding: Txid = mempool()[0].as_str().unwrap().parse().unwrap();
    assert!(l.wait(T, |n| n.list_channels().len() == 1).await);
    let chan = l.list_channels()[0].channel_id;
    mine(&btc, &hub, 2);
    l.sync_chain(&btc);
    assert!(
        hub_channel(&hub, &lid).is_none(),
        "2 confirmations: not ready"
    );
    mine(&btc, &hub, 1);
    l.sync_chain(&btc);
    l.wait_channels_usable(&hub.node_id, T).await.unwrap();
    assert!(wait_until(T, || hub_channel(&hub, &lid).is_some()));
    let c = hub_channel(&hub, &lid).unwrap();
    assert_eq!(c["opener"], "local", "{c}");
    assert_eq!(c["capacity_msat"], 400_000_000);
    assert!(c["funding_outpoint"]
        .as_str()
        .unwrap()
        .starts_with(&funding.to_string()));

    // P (zero-conf to the hub) pays L over the hub's channel.
    p.connect(hub.node_id, hub.addr).await.unwrap();
    p.open_zero_conf_channel(hub.node_id, 1_000_000, 0)
        .await
        .expect("P -> hub channel");
    l.wait_route_hint_ready(&hub.node_id, T).await.unwrap();
    let amount = 30_000_000;
    let invoice = l
        .create_invoice(amount, "over the hub's channel", Some(hub.node_id))
        .unwrap();
    let hash = PaymentHash(invoice.payment_hash().to_byte_array());
    // P's expiries count from its view of the chain.
    p.sync_chain(&btc);
    p.pay_invoice(&invoice).unwrap();
    p.wait_payment_sent(hash, T).await.unwrap();
    assert_eq!(l.wait_claimed(hash, T).await.unwrap(), amount);

    // The operator closes it; mined and retired, the wallet holds our side.
    let id = c["channel_id"].as_str().unwrap().to_string();
    hub.cli(&["closechannel", &id]).unwrap();
    assert!(
        wait_until(T, || hub_channel(&hub, &lid)
            .is_some_and(|c| c["closing_txid"].is_string())),
        "{:?}",
        hub_channel(&hub, &lid)
    );
    let closing: Txid = hub_channel(&hub, &lid).unwrap()["closing_txid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait_until(T, || btc.in_mempool(&closing)));
    mine(&btc, &hub, 3);
    assert!(
        wait_until(T, || hub_channel(&hub, &lid).is_none()),
        "retired"
    );
    let (funds, ours) = wallet_outputs_of(&hub, &closing);
    assert_eq!(ours.len(), 1, "{funds}");
    let back = ours[0]["amount_sat"].as_u64().unwrap();
    assert!(
        back < 400_000 - amount / 1000 && back > 400_000 - amount / 1000 - 5_000,
        "our side, less what L was paid and the closing fee: {back}"
    );
    l.sync_chain(&btc);
    assert!(l.wait(T, |n| n.channel(&chan).is_none()).await);
}
