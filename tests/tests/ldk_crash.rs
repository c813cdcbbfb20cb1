//! `kill -9` under load loses nothing: LDK pays LDK through `lnhubd` (S -> hub -> R and back,
//! zero-conf channels, non-dust payments) while the hub is killed with SIGKILL at random instants and
//! restarted on the same data directory and port; both LDK nodes reconnect and resume their
//! channels with `channel_reestablish`.
//!
//! At the end: every payment is settled or failed on its payer, no HTLC is left on either
//! side, each payee claimed exactly what its payer saw succeed (each with the hub's exact fee,
//! and every settled payment's preimage reached the payer), the balances agree with that, and
//! the channels still carry a payment.
//!
//! CI kills the hub 10 times. The long run (200 kills) is one command:
//! `CRASH_KILLS=200 cargo test --release -p lnhub-tests --test ldk_crash -- --nocapture`;
//! `CRASH_SEED=N` replays a run's kill instants (printed at the start).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bitcoin::hashes::{sha256, Hash};
use lightning::events::Event;
use lightning::types::payment::PaymentHash;
use lnhub_tests::{payer_hub_payee, LdkNode, LdkNodeConfig, TempDir};

const T: Duration = Duration::from_secs(60);

/// The hub's default policy (README): 1,000 msat base, 100 ppm.
fn hub_fee(amount_msat: u64) -> u64 {
    1_000 + amount_msat * 100 / 1_000_000
}

/// Payments started in each round before the kill: enough that some are in every stage of
/// the dance when it lands.
const PER_ROUND: u64 = 8;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// xorshift64: the kill instants, from a printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing() {
    let kills = env_u64("CRASH_KILLS").unwrap_or(10);
    let seed = env_u64("CRASH_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1
    });
    eprintln!("ldk_crash: {kills} kills, CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let quiet = LdkNodeConfig {
        log_level: lightning::util::logger::Level::Warn,
        ..LdkNodeConfig::default()
    };
    let s = LdkNode::new("S", [0x71; 32], quiet.clone());
    let r = LdkNode::new("R", [0x72; 32], quiet);
    let (mut hub, _) = payer_hub_payee(&s, &r, TempDir::new("crash")).await;
    let hub_id = hub.node_id;
    let s_before = s.outbound_capacity(&hub_id);
    let r_before = r.outbound_capacity(&hub_id);

    s.wait_route_hint_ready(&hub_id, T)
        .await
        .expect("S learns the hub's channel_update");

    // Payments go S -> R in even rounds and R -> S in odd ones, so the hub's liquidity to R
    // lasts however many rounds run.
    let nodes = [&s, &r];
    let mut payments: Vec<(usize, PaymentHash, u64)> = Vec::new();
    let started = Instant::now();
    for kill in 0..kills {
        let payer = (kill % 2) as usize;
        for i in 0..PER_ROUND {
            // Above every dust limit: each HTLC is a real output with its own signatures.
            let amount = 1_000_000 + (kill * PER_ROUND + i) % 1_000 * 1_000;
            let invoice = nodes[1 - payer]
                .create_invoice(amount, "crash", Some(hub_id))
                .expect("invoice");
            let hash = PaymentHash(invoice.payment_hash().to_byte_array());
            nodes[payer]
                .pay_invoice(&invoice)
                .expect("the payer starts a payment");
            payments.push((payer, hash, amount));
        }
        // Kill at a random instant of the burst: before it reaches the hub, in the middle of
        // the commitment dance, or while preimages travel back.
        tokio::time::sleep(Duration::from_millis(rng.below(150))).await;
        hub.kill_and_restart();
        for node in nodes {
            // The killed hub's socket is closed by the kernel, but an LDK node may not see it
            // (seen: its read side paused on a full send buffer, it keeps the dead connection
            // until its ping times out, and refuses a new one meanwhile). Drop it as such a
            // node's ping timer eventually would, so the test runs at the hub's pace.
            if !node
                .wait(Duration::from_secs(2), |n| !n.is_connected(&hub_id))
                .await
            {
                node.disconnect(&hub_id);
                node.wait(Duration::from_secs(10), |n| !n.is_connected(&hub_id))
                    .await;
            }
            node.connect(hub_id, hub.addr)
                .await
                .unwrap_or_else(|e| panic!("kill {kill}: {e}"));
        }
        for node in nodes {
            node.wait_channels_usable(&hub_id, T)
                .await
                .unwrap_or_else(|e| {
                    panic!("kill {kill}: {e}\nhub log tail:\n{}", tail(&hub.log()))
                });
        }
    }

    // Every payment resolves on its payer.
    let all_resolved = || {
        payments
            .iter()
            .all(|(payer, hash, _)| nodes[*payer].resolved_payments().contains(hash))
    };
    let deadline = Instant::now() + T;
    while !all_resolved() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        all_resolved(),
        "every payment is sent or failed on its payer; S pending in/out {:?}, R {:?}\nhub log \
         tail:\n{}",
        s.pending_htlcs(),
        r.pending_htlcs(),
        tail(&hub.log())
    );
    let clear = s
        .wait(T, |_| {
            s.pending_htlcs() == (0, 0) && r.pending_htlcs() == (0, 0)
        })
        .await;
    assert!(
        clear,
        "HTLCs left pending: S in/out {:?}, R in/out {:?}",
        s.pending_htlcs(),
        r.pending_htlcs()
    );

    // Payer's outcomes and payee's claims agree, payment by payment.
    let events = [s.events(), r.events()];
    let mut paid = [0u64; 2];
    let mut received = [0u64; 2];
    let mut settled = 0;
    for (payer, hash, amount) in &payments {
        let payee = 1 - payer;
        let sent = events[*payer].iter().find_map(|e| match e {
            Event::PaymentSent {
                payment_hash,
                payment_preimage,
                fee_paid_msat,
                ..
            } if payment_hash == hash => Some((*payment_preimage, fee_paid_msat.unwrap_or(0))),
            _ => None,
        });
        let claimed = events[payee].iter().find_map(|e| match e {
            Event::PaymentClaimed {
                payment_hash,
                amount_msat,
                ..
            } if payment_hash == hash => Some(*amount_msat),
            _ => None,
        });
        match (sent, claimed) {
            (Some((preimage, fee)), Some(got)) => {
                assert_eq!(
                    sha256::Hash::hash(&preimage.0).to_byte_array(),
                    hash.0,
                    "{hash}: the payee's preimage reached the payer"
                );
                assert_eq!(fee, hub_fee(*amount), "{hash}: the hub's fee");
                assert_eq!(got, *amount, "{hash}: the payee got the amount");
                paid[*payer] += amount + fee;
                received[payee] += got;
                settled += 1;
            }
            (None, None) => {}
            (sent, claimed) => panic!("{hash}: payer sent {sent:?} but payee claimed {claimed:?}"),
        }
    }
    assert_eq!(
        s.outbound_capacity(&hub_id),
        s_before + received[0] - paid[0],
        "S's balance"
    );
    assert_eq!(
        r.outbound_capacity(&hub_id),
        r_before + received[1] - paid[1],
        "R's balance"
    );
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for e in s.onion_errors().iter().chain(r.onion_errors().iter()) {
        *codes.entry(format!("{} ({})", e.name, e.code)).or_default() += 1;
    }
    eprintln!(
        "ldk_crash: {settled}/{} payments settled across {kills} kills in {:.1} s; failures \
         seen by the payers: {codes:?}",
        payments.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(settled > 0, "payments settle across kills");

    // The channels still carry a payment.
    let amount = 2_000_000;
    let invoice = r.create_invoice(amount, "after", Some(hub_id)).unwrap();
    let hash = PaymentHash(invoice.payment_hash().to_byte_array());
    s.pay_invoice(&invoice).unwrap();
    let (_, fee) = s.wait_payment_sent(hash, T).await.unwrap_or_else(|e| {
        panic!(
            "a payment after the last restart: {e}\nhub log tail:\n{}",
            tail(&hub.log())
        )
    });
    assert_eq!(fee, hub_fee(amount));
    assert_eq!(r.wait_claimed(hash, T).await.unwrap(), amount);

    // The hub's forwarding log, read from its store once it has stopped: one settled entry per
    // settled payment (the last one included), with the fees S and R saw.
    tokio::time::sleep(Duration::from_millis(500)).await;
    hub.stop();
    let (db, _) = lnhub_store::Db::open(&hub.dir.0.join("store"), lnhub_store::Options::default())
        .expect("the store opens after the run");
    let log = db.reader().forwards(0, usize::MAX).expect("the log reads");
    let logged: Vec<_> = log
        .iter()
        .filter(|f| f.outcome == lnhub_schema::ForwardOutcome::Settled)
        .collect();
    let fees: u64 = paid.iter().sum::<u64>() - received.iter().sum::<u64>() + fee;
    assert_eq!(
        logged.len(),
        settled + 1,
        "a settled entry per settled payment"
    );
    assert_eq!(
        logged.iter().map(|f| f.fee_msat().0).sum::<u64>(),
        fees,
        "the logged fees are the fees paid"
    );
    eprintln!(
        "ldk_crash: forwarding log: {} entries, {} settled, {} msat of fees",
        log.len(),
        logged.len(),
        fees
    );
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
