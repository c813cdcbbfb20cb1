//! LDK pays LDK through `lnhubd` (a separate process) over loopback TCP.
//!
//! S (sender) and R (receiver) are independent LDK nodes. Both open zero-conf anchors channels
//! to the hub, which trusts them; R pushes part of its capacity to the hub so the hub can pay
//! R. R's BOLT 11 invoice carries a route hint through the hub (the hub's alias and fees from
//! the hub's private `channel_update`); S pays it and must see `PaymentSent` with R's preimage
//! and exactly the hub's fee, and R must see the payment claimed.
//!
//! The same workload through `ldk-hub` (an LDK node as the hub, in its own process, with a
//! `FilesystemStore`) keeps the `ldk_forward` bench's LDK row from rotting: the payments
//! settle with the same fee as through `lnhubd`, and the store holds what LDK wrote.

use std::time::Duration;

use bitcoin::hashes::{sha256, Hash};
use lightning::types::payment::PaymentHash;
use lnhub_tests::{payer_ldk_hub_payee, Hub, LdkNode, LdkNodeConfig, TempDir, CHANNEL_SAT};

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
    let hub = Hub::start(&["--trusted-peer", &sid, "--trusted-peer", &rid]);

    s.connect(hub.node_id, hub.addr)
        .await
        .expect("S connects to the hub");
    r.connect(hub.node_id, hub.addr)
        .await
        .expect("R connects to the hub");
    let s_chan = s
        .open_zero_conf_channel(hub.node_id, 1_000_000, 0)
        .await
        .expect("S -> hub channel");
    let details = s.channel(&s_chan).expect("S's channel");
    assert!(
        details.is_anchors,
        "anchors negotiated with the hub: {details:?}"
    );
    assert_eq!(details.confirmations_required, Some(0), "zero-conf");
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

/// 1,000 payments S -> hub -> R with up to 400 in flight at once: every one succeeds, each
/// with the hub's exact fee, and R claims every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_payments_with_up_to_400_in_flight() {
    const PAYMENTS: usize = 1_000;
    const IN_FLIGHT: usize = 400;
    // Above every dust limit (546 sat), so each HTLC is a real output with its own signatures;
    // small enough that R's route hint keeps room while 400 are in flight (LDK counts its own
    // in-flight HTLCs against a hint whose capacity already excludes them).
    const AMOUNT: u64 = 600_000;
    let quiet = LdkNodeConfig {
        log_level: lightning::util::logger::Level::Warn,
        ..LdkNodeConfig::default()
    };
    let s = LdkNode::new("S", [0x61; 32], quiet.clone());
    let mut r_config = quiet;
    // R accepts as many HTLCs as BOLT 2 allows, so the hub can have 400 in flight to it.
    r_config
        .user_config
        .channel_handshake_config
        .our_max_accepted_htlcs = 483;
    let r = LdkNode::new("R", [0x62; 32], r_config);
    let (sid, rid) = (s.node_id.to_string(), r.node_id.to_string());
    let hub = Hub::start(&["--trusted-peer", &sid, "--trusted-peer", &rid]);
    s.connect(hub.node_id, hub.addr).await.unwrap();
    r.connect(hub.node_id, hub.addr).await.unwrap();
    s.open_zero_conf_channel(hub.node_id, 2_000_000, 0)
        .await
        .unwrap();
    r.open_zero_conf_channel(hub.node_id, 2_000_000, 1_500_000_000)
        .await
        .unwrap();
    r.wait_route_hint_ready(&hub.node_id, T).await.unwrap();

    let started = std::time::Instant::now();
    let mut pending = std::collections::VecDeque::new();
    let mut done = 0;
    let mut sent = 0;
    // S's router finding no room at a given instant (RouteNotFound before anything reaches the
    // hub: LDK counts a fulfilled HTLC against the channel until the commitment that removes it
    // is revoked, so a burst of new payments can find every slot taken): S waits for its oldest
    // payment and tries again, as a payer would. Bounded, so a channel that stopped draining
    // still fails the test.
    let mut no_route = 0;
    while done < PAYMENTS {
        while sent < PAYMENTS && pending.len() < IN_FLIGHT {
            let invoice = r
                .create_invoice(AMOUNT, "burst", Some(hub.node_id))
                .unwrap();
            match s.pay_invoice(&invoice) {
                Ok(_) => {
                    pending.push_back(hash_of(&invoice));
                    sent += 1;
                }
                Err(e) if e.contains("RouteNotFound") && !pending.is_empty() && no_route < 50 => {
                    no_route += 1;
                    break;
                }
                Err(e) => panic!(
                    "payment {sent} could not be sent ({} in flight, {no_route} times no route \
                     before): {e}\nhub log tail:\n{}",
                    pending.len(),
                    tail(&hub.log())
                ),
            }
        }
        let hash = pending.pop_front().expect("a payment in flight");
        let (_, fee) = s
            .wait_payment_sent(hash, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "payment {done} failed: {e}\nhub log tail:\n{}",
                    tail(&hub.log())
                )
            });
        assert_eq!(fee, hub_fee(AMOUNT));
        assert_eq!(r.wait_claimed(hash, T).await.unwrap(), AMOUNT);
        done += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{PAYMENTS} payments through lnhubd in {secs:.1} s ({:.0}/s); S found no route {no_route} \
         time(s) and waited for a payment to settle",
        PAYMENTS as f64 / secs
    );
}

/// `ldk-hub` as the hub: 1-sat and 1,000-sat payments (three of each, all in flight at once)
/// settle with `lnhubd`'s default fee, R claims each amount, a peer the hub does not trust gets
/// no zero-conf channel, and on stop the hub's `FilesystemStore` holds the ChannelManager and
/// both channels' monitors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldk_pays_ldk_through_an_ldk_hub_process() {
    let s = LdkNode::new("S", [0x71; 32], LdkNodeConfig::default());
    let r = LdkNode::new("R", [0x72; 32], LdkNodeConfig::default());
    let (mut hub, s_chan) = payer_ldk_hub_payee(
        &s,
        &r,
        env!("CARGO_BIN_EXE_ldk-hub"),
        TempDir::new("ldk-hub"),
        &[],
        CHANNEL_SAT,
    )
    .await;
    assert_eq!(
        s.channel(&s_chan)
            .expect("S's channel")
            .confirmations_required,
        Some(0),
        "zero-conf for a trusted peer"
    );

    let amounts = [1_000, 1_000_000, 1_000, 1_000_000, 1_000, 1_000_000];
    let mut hashes = Vec::new();
    for amount in amounts {
        let invoice = r
            .create_invoice(amount, "through an LDK hub", Some(hub.node_id))
            .unwrap();
        s.pay_invoice(&invoice).unwrap();
        hashes.push(hash_of(&invoice));
    }
    let mut received = 0;
    for (hash, amount) in hashes.into_iter().zip(amounts) {
        let (preimage, fee) = s
            .wait_payment_sent(hash, T)
            .await
            .expect("S's payment succeeds");
        assert_eq!(sha256::Hash::hash(&preimage.0).to_byte_array(), hash.0);
        assert_eq!(
            fee,
            hub_fee(amount),
            "the LDK hub charges lnhubd's default fee"
        );
        assert_eq!(r.wait_claimed(hash, T).await.expect("R claims"), amount);
        received += amount;
    }
    assert_eq!(received, 3_003_000);

    // A stranger's channel is accepted, but not zero-conf.
    let u = LdkNode::new("U", [0x73; 32], LdkNodeConfig::default());
    u.connect(hub.node_id, hub.addr).await.unwrap();
    let (u_chan, _) = u
        .open_channel_pending(hub.node_id, 100_000, 0)
        .await
        .expect("the hub accepts the stranger's channel");
    let u_details = u.channel(&u_chan).expect("U's channel");
    assert!(
        u_details.confirmations_required.is_some_and(|c| c > 0) && !u_details.is_channel_ready,
        "{u_details:?}"
    );

    let line = hub.stop().expect("ldk-hub prints its store's totals");
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    // store: <writes> writes, <bytes> bytes (ChannelManager <w> writes <b> bytes,
    // ChannelMonitor <w> writes <b> bytes)
    assert_eq!(numbers.len(), 6, "{line}");
    assert!(numbers[2] > 0 && numbers[4] > 0, "both persisted: {line}");
    assert_eq!(numbers[0], numbers[2] + numbers[4], "{line}");
    let store = hub.store_dir();
    assert!(store.join("manager").is_file(), "{}", store.display());
    let monitors = std::fs::read_dir(store.join("monitors"))
        .expect("monitors dir")
        .count();
    assert_eq!(monitors, 3, "S's, R's and U's channels");
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
