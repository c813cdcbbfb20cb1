//! LDK pays LDK through `lnhubd` (a separate process) over loopback TCP.
//!
//! S (sender) and R (receiver) are independent LDK nodes. Both open zero-conf anchors channels
//! to the hub, which trusts them; R pushes part of its capacity to the hub so the hub can pay
//! R. R's BOLT 11 invoice carries a route hint through the hub (the hub's alias and fees from
//! the hub's private `channel_update`); S pays it and must see `PaymentSent` with R's preimage
//! and exactly the hub's fee, and R must see the payment claimed.

use std::time::Duration;

use bitcoin::hashes::{sha256, Hash};
use lightning::types::payment::PaymentHash;
use lnhub_tests::{Hub, LdkNode, LdkNodeConfig};

const T: Duration = Duration::from_secs(20);

fn hash_of(invoice: &lightning_invoice::Bolt11Invoice) -> PaymentHash {
    PaymentHash(invoice.payment_hash().to_byte_array())
}

/// The hub's default policy (README): 1,000 msat base, 100 ppm.
fn hub_fee(amount_msat: u64) -> u64 {
    1_000 + amount_msat * 100 / 1_000_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldk_pays_ldk_through_lnhubd() {
    let s = LdkNode::new("S", [0x51; 32], LdkNodeConfig::default());
    let r = LdkNode::new("R", [0x52; 32], LdkNodeConfig::default());
    let (sid, rid) = (s.node_id.to_string(), r.node_id.to_string());
    let hub = Hub::start(&[
        "--dev-memory-store",
        "--trusted-peer",
        &sid,
        "--trusted-peer",
        &rid,
    ]);

    s.connect(hub.node_id, hub.addr)
        .await
        .expect("S connects to the hub");
    r.connect(hub.node_id, hub.addr)
        .await
        .expect("R connects to the hub");
    s.open_zero_conf_channel(hub.node_id, 1_000_000, 0)
        .await
        .expect("S -> hub channel");
    // R funds its channel and gives the hub half of it: the hub's outbound liquidity to R.
    r.open_zero_conf_channel(hub.node_id, 1_000_000, 500_000_000)
        .await
        .expect("R -> hub channel");
    r.wait_route_hint_ready(&hub.node_id, T)
        .await
        .expect("R learns the hub's channel_update");

    let amount = 25_000_000;
    let invoice = r
        .create_invoice(amount, "through lnhub", Some(hub.node_id))
        .unwrap();
    let hash = hash_of(&invoice);
    s.pay_invoice(&invoice).unwrap();
    let (preimage, fee) = s
        .wait_payment_sent(hash, T)
        .await
        .expect("S's payment succeeds");
    assert_eq!(
        sha256::Hash::hash(&preimage.0).to_byte_array(),
        hash.0,
        "R's preimage"
    );
    assert_eq!(fee, hub_fee(amount), "S paid exactly the hub's fee");
    assert_eq!(r.wait_claimed(hash, T).await.expect("R claims"), amount);
}
