//! Self-test of the [`LdkNode`] harness without the hub: LDK nodes talk to each other over
//! loopback TCP with zero-conf anchor channels and no blocks.
//!
//! * two nodes: A opens to B, pays B's invoice and keysends, also after fabricated blocks
//!   confirmed the funding transaction;
//! * three nodes A -> B -> C over private channels, B in the hub's role: C's invoice carries a
//!   route hint through B (B's alias and B's `channel_update` fees), A pays it, B forwards;
//!   then with C disconnected the payment fails at B (a decoded onion error), and after a
//!   reconnect it succeeds.

use std::time::{Duration, Instant};

use bitcoin::hashes::{sha256, Hash};
use lightning::types::payment::PaymentHash;
use lnhub_tests::{LdkNode, LdkNodeConfig};

const T: Duration = Duration::from_secs(10);

fn seed(b: u8) -> [u8; 32] {
    [b; 32]
}

fn hash_of(invoice: &lightning_invoice::Bolt11Invoice) -> PaymentHash {
    PaymentHash(invoice.payment_hash().to_byte_array())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_zero_conf_anchors_invoice_and_keysend() {
    let start = Instant::now();
    let a = LdkNode::new("A", seed(1), LdkNodeConfig::default());
    let mut b = LdkNode::new("B", seed(2), LdkNodeConfig::default());
    let b_addr = b.listen().await;
    a.connect(b.node_id, b_addr).await.unwrap();

    let chan = a
        .open_zero_conf_channel(b.node_id, 1_000_000, 0)
        .await
        .unwrap();
    let ca = a.channel(&chan).expect("A's channel");
    assert!(ca.is_anchors, "{ca:?}");
    assert!(ca.is_outbound && !ca.is_announced);
    assert_eq!(ca.confirmations_required, Some(0));
    assert_eq!(ca.short_channel_id, None, "nothing was mined");
    assert!(ca.inbound_scid_alias.is_some() && ca.outbound_scid_alias.is_some());
    b.wait_channels_usable(&a.node_id, T).await.unwrap();
    assert_eq!(a.broadcast_txs().len(), 1, "the funding transaction");
    assert_eq!(b.list_peers().len(), 1);

    let invoice = b.create_invoice(50_000_000, "selftest", None).unwrap();
    let hash = hash_of(&invoice);
    a.pay_invoice(&invoice).unwrap();
    let (preimage, fee) = a.wait_payment_sent(hash, T).await.unwrap();
    assert_eq!(sha256::Hash::hash(&preimage.0).to_byte_array(), hash.0);
    assert_eq!(fee, 0, "direct payment");
    assert_eq!(b.wait_claimed(hash, T).await.unwrap(), 50_000_000);

    let (_, ks_hash) = a.keysend(b.node_id, 1_234_000).unwrap();
    a.wait_payment_sent(ks_hash, T).await.unwrap();
    assert_eq!(b.wait_claimed(ks_hash, T).await.unwrap(), 1_234_000);

    // Fabricated blocks: heights move, then the funding transaction confirms on both sides
    // (same fabricated chain) and the channel gets a real SCID while staying usable.
    for n in [&a, &b] {
        n.connect_blocks(3);
        n.confirm_transaction(&a.broadcast_txs()[0]);
        assert_eq!(n.best_block_height(), 4);
    }
    let scid = a.channel(&chan).unwrap().short_channel_id;
    assert_eq!(scid.map(|s| s >> 40), Some(4), "block 4, tx 0, output 0");
    let (_, ks_hash) = a.keysend(b.node_id, 1_000).unwrap();
    a.wait_payment_sent(ks_hash, T).await.unwrap();

    // Balances settle once the commitment dance is over.
    assert!(
        b.wait(T, |b| b.list_channels()[0].outbound_capacity_msat
            > 40_000_000)
            .await,
        "{:?}",
        b.list_channels()
    );
    eprintln!("two-node selftest took {:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_route_hint_through_middle_node() {
    let start = Instant::now();
    let a = LdkNode::new("A", seed(11), LdkNodeConfig::default());
    let mut b = LdkNode::new("B", seed(12), LdkNodeConfig::default());
    let c = LdkNode::new("C", seed(13), LdkNodeConfig::default());
    let b_addr = b.listen().await;
    a.connect(b.node_id, b_addr).await.unwrap();
    c.connect(b.node_id, b_addr).await.unwrap();

    // As with the hub: both edge nodes open zero-conf channels to B; C pushes half so it can
    // receive.
    a.open_zero_conf_channel(b.node_id, 1_000_000, 0)
        .await
        .unwrap();
    let c_chan = c
        .open_zero_conf_channel(b.node_id, 1_000_000, 500_000_000)
        .await
        .unwrap();
    b.wait_channels_usable(&a.node_id, T).await.unwrap();
    b.wait_channels_usable(&c.node_id, T).await.unwrap();

    // C needs B's channel_update (fees) and B's alias before it can hint the channel.
    c.wait_route_hint_ready(&b.node_id, T).await.unwrap();
    let cc = c.channel(&c_chan).unwrap();
    let (base, ppm, cltv) = cc.counterparty_forwarding_info.unwrap();
    assert_eq!((base, ppm), (1000, 0), "B's default forwarding fees");

    let amount = 20_000_000;
    let invoice = c.create_invoice(amount, "via B", Some(b.node_id)).unwrap();
    let hints = invoice.route_hints();
    assert_eq!(hints.len(), 1, "{hints:?}");
    let hop = &hints[0].0[0];
    assert_eq!(hop.src_node_id, b.node_id);
    assert_eq!(Some(hop.short_channel_id), cc.inbound_scid_alias);
    assert_eq!(hop.cltv_expiry_delta, cltv);
    // B knows that SCID as its own alias for the channel with C.
    let bc = b
        .list_channels()
        .into_iter()
        .find(|ch| ch.counterparty == c.node_id)
        .unwrap();
    assert_eq!(bc.outbound_scid_alias, Some(hop.short_channel_id));

    let hash = hash_of(&invoice);
    a.pay_invoice(&invoice).unwrap();
    let (preimage, fee) = a.wait_payment_sent(hash, T).await.unwrap();
    assert_eq!(sha256::Hash::hash(&preimage.0).to_byte_array(), hash.0);
    assert_eq!(fee, 1000, "B's base fee");
    assert_eq!(c.wait_claimed(hash, T).await.unwrap(), amount);

    // B cannot reach C: the payment fails at B with a decoded failure onion.
    let invoice2 = c
        .create_invoice(5_000_000, "offline", Some(b.node_id))
        .unwrap();
    let hash2 = hash_of(&invoice2);
    c.disconnect(&b.node_id);
    assert!(
        b.wait(T, |b| !b.is_connected(&c.node_id)).await,
        "B still sees C"
    );
    a.pay_invoice(&invoice2).unwrap();
    let failure = a.wait_payment_failed(hash2, T).await.unwrap();
    assert!(!failure.paths.is_empty(), "{failure:?}");
    let e = failure.onion_errors.first().expect("a decoded onion error");
    assert_eq!(e.from, b.node_id, "{failure:?}");
    assert_eq!(
        e.code & 0x1000,
        0x1000,
        "UPDATE flag, e.g. channel disabled: {e:?}"
    );

    // After a reconnect the channel is usable again and a new invoice gets paid.
    c.reconnect(b.node_id, b_addr).await.unwrap();
    b.wait_channels_usable(&c.node_id, T).await.unwrap();
    let invoice3 = c
        .create_invoice(5_000_000, "back", Some(b.node_id))
        .unwrap();
    let hash3 = hash_of(&invoice3);
    a.pay_invoice(&invoice3).unwrap();
    a.wait_payment_sent(hash3, T).await.unwrap();
    assert_eq!(c.wait_claimed(hash3, T).await.unwrap(), 5_000_000);
    eprintln!("three-node selftest took {:?}", start.elapsed());
}
