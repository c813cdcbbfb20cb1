//! `lnhubd` as a separate process against LDK over loopback TCP: BOLT 8 handshake and BOLT 1
//! `init`/`ping`/`pong` in both directions, dial-out with reconnection, and a misbehaving peer
//! dropped while a good one stays connected.

use std::time::Duration;

use lnhub_tests::{Hub, LdkPeer, RawPeer};
use lnhub_wire::msgs::Message;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Drives LDK's ping timer `ticks` times, `gap` apart. LDK pings on a tick and drops a peer
/// that has sent nothing (no pong) by the next one, so staying connected proves pongs came.
async fn ldk_ping_rounds(ldk: &LdkPeer, ticks: usize, gap: Duration) {
    for _ in 0..ticks {
        ldk.pm.timer_tick_occurred();
        tokio::time::sleep(gap).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldk_connects_to_hub_and_pings_are_answered_both_ways() {
    // The hub pings after 1 s of silence and gives 2 s for the pong.
    let hub = Hub::start(&["--ping-interval-secs", "1", "--pong-timeout-secs", "2"]);
    let ldk = LdkPeer::new("ldk", [7; 32]);
    ldk.connect(hub.node_id, hub.addr).await;

    assert!(
        ldk.wait(CONNECT_TIMEOUT, |l| l.is_connected(&hub.node_id))
            .await,
        "LDK never got the hub's init"
    );
    let ready = format!("peer {} ready", ldk.node_id);
    assert!(
        hub.wait_for_log(&ready, CONNECT_TIMEOUT),
        "hub never got LDK's init"
    );

    // The features LDK saw are the ones lnhubd sends.
    let details = ldk.pm.peer_by_node_id(&hub.node_id).unwrap();
    assert!(details.init_features.requires_static_remote_key());
    assert!(details.init_features.requires_variable_length_onion());
    assert!(details.init_features.supports_anchors_zero_fee_htlc_tx());
    assert!(details.init_features.supports_scid_privacy());
    assert!(details.init_features.supports_zero_conf());

    // LDK -> hub pings: five rounds, each must be answered before the next tick.
    ldk_ping_rounds(&ldk, 5, Duration::from_millis(400)).await;
    assert!(
        ldk.is_connected(&hub.node_id),
        "LDK dropped the hub: a ping went unanswered"
    );

    // Hub -> LDK pings: LDK stays silent now, so in 4 s the hub pings at least twice and would
    // drop LDK after 2 s without a pong.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        ldk.is_connected(&hub.node_id),
        "connection lost while the hub pinged"
    );
    let log = hub.log();
    assert!(
        !log.contains("no pong received"),
        "hub saw a missing pong:\n{log}"
    );
    assert!(
        !log.contains(&format!("peer {} disconnected", ldk.node_id)),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_dials_out_to_ldk_and_reconnects() {
    let ldk = LdkPeer::new("ldk-listen", [9; 32]);
    let addr = ldk.listen().await;
    let target = format!("{}@{}", ldk.node_id, addr);
    let hub = Hub::start(&["--connect", &target]);

    assert!(
        ldk.wait(CONNECT_TIMEOUT, |l| l.is_connected(&hub.node_id))
            .await,
        "hub never dialed LDK"
    );
    assert!(hub.wait_for_log(&format!("peer {} ready", ldk.node_id), CONNECT_TIMEOUT));
    let details = ldk.pm.peer_by_node_id(&hub.node_id).unwrap();
    assert!(
        details.is_inbound_connection,
        "LDK should see the hub's connection as inbound"
    );

    // LDK drops the connection; the hub dials again after its first backoff (1 s).
    ldk.pm.disconnect_by_node_id(hub.node_id);
    assert!(hub.wait_for_log(
        &format!("peer {} disconnected", ldk.node_id),
        CONNECT_TIMEOUT
    ));
    assert!(
        ldk.wait(CONNECT_TIMEOUT, |l| l.is_connected(&hub.node_id))
            .await,
        "hub did not reconnect"
    );
    ldk_ping_rounds(&ldk, 3, Duration::from_millis(300)).await;
    assert!(ldk.is_connected(&hub.node_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_peers_are_dropped_while_ldk_keeps_its_connection() {
    let hub = Hub::start(&[]);
    let ldk = LdkPeer::new("ldk-good", [11; 32]);
    ldk.connect(hub.node_id, hub.addr).await;
    assert!(
        ldk.wait(CONNECT_TIMEOUT, |l| l.is_connected(&hub.node_id))
            .await
    );

    let (node_id, addr) = (hub.node_id, hub.addr);
    let outcome = tokio::task::spawn_blocking(move || {
        // 1. Garbage after the handshake: the first frame fails its MAC, the hub closes.
        let mut garbage = RawPeer::connect(&node_id, addr, 21).expect("handshake");
        let init = garbage.recv().expect("recv").expect("hub's init");
        assert!(
            matches!(Message::decode(&init), Ok(Message::Init(_))),
            "first message is init"
        );
        garbage.send_raw(&[0xa5; 200]).unwrap();
        let after = garbage.recv_until_closed();

        // 2. A well-framed message of unknown even type after init: warning, then close.
        let mut rude = RawPeer::connect(&node_id, addr, 31).expect("handshake");
        let init = rude.recv().expect("recv").expect("hub's init");
        rude.send(&init).unwrap(); // echo the hub's own init back: valid features and chain
        rude.send(&[0x9c, 0x40, 1, 2, 3]).unwrap(); // type 40000: even, unknown
        let msgs = rude.recv_until_closed().expect("read until close");
        (after.map(|m| m.len()), msgs)
    })
    .await
    .unwrap();
    assert!(
        matches!(outcome.0, Ok(0) | Err(_)),
        "hub must close on a bad frame: {:?}",
        outcome.0
    );
    let warned = outcome
        .1
        .iter()
        .any(|m| matches!(Message::decode(m), Ok(Message::Warning(_))));
    assert!(
        warned,
        "hub should send a warning before closing: {:?}",
        outcome.1
    );

    // The good peer never noticed.
    ldk_ping_rounds(&ldk, 3, Duration::from_millis(300)).await;
    assert!(
        ldk.is_connected(&hub.node_id),
        "the good peer lost its connection"
    );
}

#[test]
fn channel_messages_for_unknown_channels_get_an_error_for_that_channel() {
    use lnhub_wire::msgs::UpdateFee;
    use lnhub_wire::types::ChannelId;

    let hub = Hub::start(&[]);
    let mut peer = RawPeer::connect(&hub.node_id, hub.addr, 41).expect("handshake");
    let init = peer.recv().unwrap().expect("hub's init");
    peer.send(&init).unwrap();
    let channel_id = ChannelId([0x42; 32]);
    let mut msg = Vec::new();
    Message::UpdateFee(UpdateFee {
        channel_id,
        feerate_per_kw: 253,
        unknown_tlvs: Vec::new(),
    })
    .encode(&mut msg);
    peer.send(&msg).unwrap();
    let reply = peer.recv().unwrap().expect("a reply, not a close");
    match Message::decode(&reply) {
        Ok(Message::Error(e)) => assert_eq!(e.channel_id, channel_id),
        other => panic!("expected error for the channel, got {other:?}"),
    }
}
