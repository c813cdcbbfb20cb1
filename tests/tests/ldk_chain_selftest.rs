//! Self-test of the [`LdkNode`] harness on a real regtest `bitcoind` (built by
//! `scripts/bitcoind`; skipped outside CI without it): a channel funded by a real transaction
//! of the test wallet, confirmed by mined blocks, through a reorg.
//!
//! A (funded by the wallet) opens a 100,000 sat channel to B, which accepts it without
//! zero-conf and asks for 3 confirmations. The funding transaction spends the wallet's coins
//! (change back to it) and passes bitcoind's mempool checks. Mined in one block, both nodes see
//! one confirmation and the channel is not usable. That block is then invalidated (the funding
//! transaction goes back to the mempool) and replaced by an empty one: both nodes unconfirm it.
//! Mined again one block higher, it reaches three confirmations: the channel becomes usable,
//! its SCID names the new block, and A pays B's invoice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use bitcoin::{Amount, BlockHash, Txid};
use lightning::chain::Confirm;
use lightning::types::payment::PaymentHash;
use lnhub_tests::bitcoind::{bitcoind_binary, Bitcoind, TestWallet};
use lnhub_tests::ldk_node::ChannelSummary;
use lnhub_tests::{InboundChannelPolicy, LdkNode, LdkNodeConfig};

const T: Duration = Duration::from_secs(10);

fn mine_one(btc: &Bitcoind) -> BlockHash {
    btc.mine(1)[0].parse().unwrap()
}

fn block_has(btc: &Bitcoind, block: &BlockHash, txid: Txid) -> bool {
    btc.block(block)
        .txdata
        .iter()
        .any(|tx| tx.compute_txid() == txid)
}

/// The one channel of `node` (with the other node).
fn only_channel(node: &LdkNode) -> ChannelSummary {
    let chans = node.list_channels();
    assert_eq!(chans.len(), 1, "{}: {chans:?}", node.name);
    chans.into_iter().next().unwrap()
}

/// Syncs both nodes to `btc` and checks what each sees of the funding transaction.
fn sync_and_check(btc: &Bitcoind, nodes: [&LdkNode; 2], height: u32, confirmations: u32) {
    for n in nodes {
        assert_eq!(n.sync_chain(btc), height, "{}", n.name);
        assert_eq!(n.best_block_height(), height, "{}", n.name);
        let c = only_channel(n);
        assert_eq!(
            c.confirmations.unwrap_or(0),
            confirmations,
            "{}: {c:?}",
            n.name
        );
        if confirmations < 3 {
            assert!(!c.is_channel_ready && !c.is_usable, "{}: {c:?}", n.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_funded_mined_reorged_and_confirmed_on_regtest() {
    let Some(binary) = bitcoind_binary() else {
        return;
    };
    let start = Instant::now();
    let btc = Bitcoind::start(&binary);
    let wallet = Arc::new(TestWallet::new(1));
    btc.fund_wallet(&wallet, 2);
    assert_eq!(btc.height(), 102);
    assert_eq!(wallet.balance(), Amount::from_sat(2 * 50 * 100_000_000));

    let a_config = LdkNodeConfig {
        wallet: Some(Arc::clone(&wallet)),
        ..LdkNodeConfig::default()
    }
    .following(&btc);
    let mut b_config = LdkNodeConfig {
        inbound_channels: InboundChannelPolicy::Accept,
        ..LdkNodeConfig::default()
    }
    .following(&btc);
    b_config.user_config.channel_handshake_config.minimum_depth = 3;
    let a = LdkNode::new("A", [0x61; 32], a_config);
    let mut b = LdkNode::new("B", [0x62; 32], b_config);
    assert_eq!(a.best_block_height(), 102);
    let b_addr = b.listen().await;
    a.connect(b.node_id, b_addr).await.unwrap();

    // The funding transaction: the wallet's coin in, the channel and change out.
    let (chan, funding) = a.open_channel_pending(b.node_id, 100_000, 0).await.unwrap();
    let txid = funding.compute_txid();
    let spent = funding.input[0].previous_output;
    assert_eq!(funding.input.len(), 1, "{funding:?}");
    assert!(!wallet.utxos().iter().any(|(o, _)| *o == spent), "spent");
    assert_eq!(funding.output.len(), 2, "{funding:?}");
    assert!(funding
        .output
        .iter()
        .any(|o| o.value == Amount::from_sat(100_000) && o.script_pubkey.is_p2wsh()));
    assert!(funding
        .output
        .iter()
        .any(|o| o.script_pubkey == wallet.script_pubkey));
    let ca = a.channel(&chan).unwrap();
    assert_eq!(ca.confirmations_required, Some(3), "B's depth: {ca:?}");
    assert!(!ca.is_channel_ready, "not zero-conf: {ca:?}");

    assert_eq!(a.broadcast_to(&btc).unwrap(), vec![txid]);
    assert!(btc.in_mempool(&txid));
    assert_eq!(a.broadcast_to(&btc).unwrap(), vec![], "offered once");
    let again = btc.accept(&funding).unwrap_err();
    assert!(again.contains("already"), "{again}");

    // One confirmation: not ready.
    let first = mine_one(&btc);
    assert!(block_has(&btc, &first, txid));
    sync_and_check(&btc, [&a, &b], 103, 1);

    // Reorg: the block leaves, the funding transaction returns to the mempool, an empty block
    // takes height 103.
    btc.invalidate(&first);
    assert_eq!(btc.height(), 102);
    assert!(btc.in_mempool(&txid), "back in the mempool");
    let empty = btc.mine_empty();
    assert_eq!(btc.block(&empty).txdata.len(), 1, "only the coinbase");
    sync_and_check(&btc, [&a, &b], 103, 0);
    // LDK keeps the SCID of block 103 until the transaction confirms elsewhere (checked below).
    assert_eq!(
        only_channel(&a).short_channel_id.map(|s| s >> 40),
        Some(103)
    );

    // Confirmed again at 104, then two more blocks.
    let second = mine_one(&btc);
    assert!(block_has(&btc, &second, txid));
    sync_and_check(&btc, [&a, &b], 104, 1);
    for n in [&a, &b] {
        // The ChannelManager watches it in the new block (ChannelMonitors watch only spends).
        let watched = n.channel_manager.get_relevant_txids();
        assert!(
            watched
                .iter()
                .any(|(t, h, blk)| *t == txid && *h == 104 && *blk == Some(second)),
            "{}: {watched:?}",
            n.name
        );
    }
    mine_one(&btc);
    sync_and_check(&btc, [&a, &b], 105, 2);
    mine_one(&btc);
    sync_and_check(&btc, [&a, &b], 106, 3);
    a.wait_channels_usable(&b.node_id, T).await.unwrap();
    b.wait_channels_usable(&a.node_id, T).await.unwrap();
    let ca = a.channel(&chan).unwrap();
    let scid = ca.short_channel_id.expect("a real SCID");
    let vout = funding
        .output
        .iter()
        .position(|o| o.script_pubkey.is_p2wsh())
        .unwrap() as u64;
    assert_eq!(
        (scid >> 40, (scid >> 16) & 0xff_ffff, scid & 0xffff),
        (104, 1, vout),
        "block 104 (the new branch), after the coinbase: {ca:?}"
    );
    assert_eq!(only_channel(&b).short_channel_id, Some(scid));

    let amount = 20_000_000;
    let invoice = b.create_invoice(amount, "real chain", None).unwrap();
    let hash = PaymentHash(invoice.payment_hash().to_byte_array());
    a.pay_invoice(&invoice).unwrap();
    a.wait_payment_sent(hash, T).await.unwrap();
    assert_eq!(b.wait_claimed(hash, T).await.unwrap(), amount);
    eprintln!("real-chain selftest took {:?}", start.elapsed());
}
