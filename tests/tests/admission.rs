//! Strangers cannot lock out a channel: with `max_peers` idle sockets held open from the
//! channel peers' own address, `max_peers` authenticated strangers connected and a flood of
//! bad handshakes, a channel peer still reconnects and forwards, a further stranger is
//! refused without an `init`, and the hub's log about all of it stays a few lines.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use lightning::types::payment::PaymentHash;
use lnhub_tests::{Hub, LdkNode, LdkNodeConfig, RawPeer};

const T: Duration = Duration::from_secs(20);
const MAX_PEERS: usize = 4;

async fn pay(s: &LdkNode, r: &LdkNode, hub: &Hub, amount: u64) {
    let invoice = r
        .create_invoice(amount, "admission", Some(hub.node_id))
        .unwrap();
    let hash = PaymentHash(bitcoin::hashes::Hash::to_byte_array(
        *invoice.payment_hash(),
    ));
    s.pay_invoice(&invoice).unwrap();
    s.wait_payment_sent(hash, T)
        .await
        .expect("the payment succeeds");
    assert_eq!(r.wait_claimed(hash, T).await.expect("R claims"), amount);
}

/// Lines of the hub's log about unauthenticated connections (each rate-limited kind).
fn stranger_lines(log: &str) -> usize {
    log.lines()
        .filter(|l| {
            l.contains("closed in the handshake")
                || l.contains("refusing connection from")
                || l.contains("refusing 0") // an authenticated stranger: "refusing <id> at"
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_and_strangers_do_not_lock_out_a_channel_peer() {
    let quiet = LdkNodeConfig {
        log_level: lightning::util::logger::Level::Warn,
        ..LdkNodeConfig::default()
    };
    let s = LdkNode::new("S", [0x71; 32], quiet.clone());
    let r = LdkNode::new("R", [0x72; 32], quiet);
    let (sid, rid) = (s.node_id.to_string(), r.node_id.to_string());
    let max_peers = MAX_PEERS.to_string();
    let hub = Hub::start(&[
        "--trusted-peer",
        &sid,
        "--trusted-peer",
        &rid,
        "--max-peers",
        &max_peers,
    ]);
    s.connect(hub.node_id, hub.addr).await.unwrap();
    r.connect(hub.node_id, hub.addr).await.unwrap();
    s.open_zero_conf_channel(hub.node_id, 1_000_000, 0)
        .await
        .unwrap();
    r.open_zero_conf_channel(hub.node_id, 1_000_000, 500_000_000)
        .await
        .unwrap();
    r.wait_route_hint_ready(&hub.node_id, T).await.unwrap();
    pay(&s, &r, &hub, 1_000_000).await;

    let (hub_id, addr) = (hub.node_id, hub.addr);
    let started = Instant::now();
    let (idle, strangers, refused_got) = tokio::task::spawn_blocking(move || {
        // A flood of bad handshakes: act one of the wrong version, 300 times, each read until
        // the hub closes it (so the flood is over before the strangers come).
        for _ in 0..300 {
            if let Ok(mut sock) = TcpStream::connect(addr) {
                let _ = std::io::Write::write_all(&mut sock, &[0xff; 50]);
                let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = sock.read(&mut [0u8; 64]);
            }
        }
        // max_peers authenticated strangers (no channels) take every peer slot...
        let strangers: Vec<RawPeer> = (0..MAX_PEERS as u8)
            .map(|i| {
                let mut p = RawPeer::connect(&hub_id, addr, 0x90 + 2 * i).expect("a free slot");
                p.recv().unwrap().expect("the hub's init");
                p
            })
            .collect();
        // ... so one more is refused, and gets no init.
        let mut refused = RawPeer::connect(&hub_id, addr, 0xb0).expect("handshake");
        let refused_got = refused.recv_until_closed().map(|m| m.len()).unwrap_or(0);
        // max_peers x 25 idle sockets from the channel peers' own address, held open.
        let idle: Vec<TcpStream> = (0..MAX_PEERS * 25)
            .filter_map(|_| TcpStream::connect(addr).ok())
            .collect();
        (idle, strangers, refused_got)
    })
    .await
    .unwrap();
    assert_eq!(refused_got, 0, "a refused stranger gets no message");
    assert_eq!(idle.len(), MAX_PEERS * 25, "sockets open");

    // Past the handshake grace, the channel peer comes back through all of that.
    tokio::time::sleep(Duration::from_secs(3)).await;
    r.reconnect(hub.node_id, hub.addr)
        .await
        .expect("R reconnects past the idle sockets and the strangers");
    pay(&s, &r, &hub, 2_000_000).await;

    // The hub holds at most a few handshakes from one address: the other idle sockets were
    // closed (refused, or cut to make room for R).
    let mut open = 0;
    for mut sock in idle {
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut b = [0u8; 64];
        if !matches!(sock.read(&mut b), Ok(0)) {
            open += 1;
        }
    }
    assert!(
        open <= lnhub_conn::admission::MAX_HANDSHAKES_PER_ADDRESS,
        "{open} idle sockets still held"
    );
    drop(strangers);

    // Hundreds of unauthenticated events, a few lines: 10 per 10 s window, then a summary.
    assert!(
        hub.wait_for_log("about unauthenticated connections left out", T),
        "a summary of what was left out"
    );
    let elapsed_windows = started.elapsed().as_secs() / 10 + 1;
    let lines = stranger_lines(&hub.log());
    assert!(
        lines as u64 <= 10 * elapsed_windows,
        "{lines} lines about strangers in {elapsed_windows} window(s)"
    );
}
