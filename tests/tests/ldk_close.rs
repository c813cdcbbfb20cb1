//! Cooperative close between LDK and `lnhubd` (a separate process) over loopback TCP: BOLT 2
//! `shutdown` and the legacy `closing_signed` negotiation (LDK 0.2 does not implement
//! `option_simple_close`).
//!
//! S opens a zero-conf anchors channel to the hub and pays R through it, so both sides of the
//! S–hub channel hold funds. Then:
//! - S closes: the hub answers `shutdown` with its own and agrees a fee with S; S reports a
//!   cooperative closure and broadcasts a closing transaction that pays the hub exactly its
//!   balance (S, the funder, pays the fee) to a P2WPKH, and the hub logs the same transaction;
//! - a close started while an HTLC is in flight waits for it: the payment still settles.

use std::time::Duration;

use bitcoin::hashes::Hash;
use lightning::events::ClosureReason;
use lightning::types::payment::PaymentHash;
use lnhub_tests::{payer_hub_payee, Hub, LdkNode, LdkNodeConfig, TempDir};

const T: Duration = Duration::from_secs(20);

/// The hub's default policy (README): 1,000 msat base, 100 ppm.
fn hub_fee(amount_msat: u64) -> u64 {
    1_000 + amount_msat * 100 / 1_000_000
}

/// S and R with zero-conf channels to a hub that trusts them, R's route hint ready; R claims
/// payments itself when `auto_claim`.
async fn setup(
    seed: u8,
    auto_claim: bool,
) -> (LdkNode, LdkNode, Hub, lightning::ln::types::ChannelId) {
    let s = LdkNode::new("S", [seed; 32], LdkNodeConfig::default());
    let r_config = LdkNodeConfig {
        auto_claim,
        ..LdkNodeConfig::default()
    };
    let r = LdkNode::new("R", [seed + 1; 32], r_config);
    let (hub, s_chan) = payer_hub_payee(&s, &r, TempDir::new("hub")).await;
    (s, r, hub, s_chan)
}

/// S pays R `amount` msat through the hub and both see it settle.
async fn pay(s: &LdkNode, r: &LdkNode, hub: &Hub, amount: u64) -> PaymentHash {
    let invoice = r
        .create_invoice(amount, "close", Some(hub.node_id))
        .unwrap();
    let hash = PaymentHash(invoice.payment_hash().to_byte_array());
    s.pay_invoice(&invoice).unwrap();
    s.wait_payment_sent(hash, T)
        .await
        .expect("payment succeeds");
    r.wait_claimed(hash, T).await.expect("R claims");
    hash
}

/// The closing transaction S broadcast for its channel: a 2-of-2 spend (four witness items)
/// paying the hub `hub_sat` to a P2WPKH.
fn closing_tx_paying(s: &LdkNode, hub_sat: u64) -> bitcoin::Transaction {
    let txs = s.broadcast_txs();
    txs.iter()
        .find(|tx| {
            tx.input.len() == 1
                && tx.input[0].witness.len() == 4
                && tx
                    .output
                    .iter()
                    .any(|o| o.value.to_sat() == hub_sat && o.script_pubkey.is_p2wpkh())
        })
        .cloned()
        .unwrap_or_else(|| panic!("no closing transaction paying the hub {hub_sat} sat: {txs:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldk_closes_a_channel_with_lnhubd_cooperatively() {
    let (s, r, hub, s_chan) = setup(0x71, true).await;
    let amount = 25_000_000;
    pay(&s, &r, &hub, amount).await;
    let hub_sat = (amount + hub_fee(amount)) / 1000;

    s.close_channel(&s_chan, &hub.node_id)
        .expect("S starts the close");
    assert!(
        s.wait(T, |s| s.closures().iter().any(|(id, reason)| *id == s_chan
            && *reason
                == ClosureReason::LocallyInitiatedCooperativeClosure))
            .await,
        "S reports a cooperative closure: {:?}",
        s.closures()
    );
    let tx = closing_tx_paying(&s, hub_sat);
    let txid = tx.compute_txid().to_string();
    assert!(
        hub.wait_for_log(&format!("closed cooperatively: tx {txid}"), T),
        "the hub signed the same transaction {txid}"
    );
    assert_eq!(tx.output.len(), 2, "both sides keep an output");
    assert!(s.channel(&s_chan).is_none(), "S forgot the channel");
    // R's channel with the hub is untouched.
    assert!(r.list_channels().iter().all(|c| c.is_usable));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_waits_for_the_htlc_in_flight() {
    let (s, r, hub, s_chan) = setup(0x73, false).await;
    // R holds the payment (no claim yet): the HTLC stays on S's channel with the hub.
    let amount = 30_000_000;
    let invoice = r.create_invoice(amount, "held", Some(hub.node_id)).unwrap();
    let hash = PaymentHash(invoice.payment_hash().to_byte_array());
    s.pay_invoice(&invoice).unwrap();
    r.wait_claimable(hash, T).await.expect("R has the HTLC");
    let preimage = r.claimable_preimage(hash).expect("R's own invoice");
    s.close_channel(&s_chan, &hub.node_id)
        .expect("S starts the close");
    assert!(
        hub.wait_for_log("shutdown sent", T),
        "the hub answers S's shutdown while the HTLC is in flight"
    );
    assert!(s.closures().is_empty(), "no close while an HTLC is pending");
    r.claim(preimage);
    s.wait_payment_sent(hash, T)
        .await
        .expect("the payment settles during shutdown");
    assert!(
        s.wait(T, |s| s.closures().iter().any(|(id, _)| *id == s_chan))
            .await,
        "then the channel closes"
    );
    let hub_sat = (amount + hub_fee(amount)) / 1000;
    closing_tx_paying(&s, hub_sat);
}
