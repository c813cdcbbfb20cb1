//! Failures through `lnhubd`, seen by an LDK sender, over the topology of `ldk_pay.rs`:
//! S (LDK) -> hub (`lnhubd`) -> R (LDK), zero-conf anchors channels opened by S and R, R
//! pushing 500,000 sat to the hub.
//!
//! Forwarding failures use hand-built routes (`ChannelManager::send_payment_with_route`) so the
//! test controls exactly what the hub is asked to do; each must come back to S as the right
//! BOLT 4 code from the hub's node id (LDK's decoded onion error, see
//! [`lnhub_tests::PaymentFailure`]). The disconnect tests run a burst of invoice payments and
//! drop S's (or R's) connection to the hub while HTLCs are in flight: after reconnection every
//! payment must end settled or failed, consistently on S and R, with no HTLC left pending and
//! the balances adding up.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use lightning::events::Event;
use lightning::ln::channelmanager::{PaymentId, RecipientOnionFields};
use lightning::routing::router::{Path, Route, RouteHop};
use lightning::types::features::{ChannelFeatures, NodeFeatures};
use lightning::types::payment::PaymentHash;
use lnhub_tests::{payer_hub_payee, Hub, LdkNode, LdkNodeConfig, PaymentFailure, TempDir};

const T: Duration = Duration::from_secs(20);

/// The hub's default policy (README): 1,000 msat base, 100 ppm, CLTV delta 80.
fn hub_fee(amount_msat: u64) -> u64 {
    1_000 + amount_msat * 100 / 1_000_000
}
const HUB_CLTV_DELTA: u32 = 80;
/// CLTV delta we give R as the final hop (above LDK's minimum final delta).
const FINAL_CLTV_DELTA: u32 = 144;

/// BOLT 4 failure codes.
const UNKNOWN_NEXT_PEER: u16 = 0x4000 | 10;
const TEMPORARY_CHANNEL_FAILURE: u16 = 0x1000 | 7;
const AMOUNT_BELOW_MINIMUM: u16 = 0x1000 | 11;
const FEE_INSUFFICIENT: u16 = 0x1000 | 12;
const INCORRECT_CLTV_EXPIRY: u16 = 0x1000 | 13;
const EXPIRY_TOO_SOON: u16 = 0x1000 | 14;

/// S -> hub -> R, both channels usable, R's route hint through the hub ready.
struct Net {
    hub: Hub,
    s: LdkNode,
    r: LdkNode,
    /// The SCID S uses for its channel to the hub (first hop of S's routes).
    s_first_hop: u64,
    /// The hub's alias for its channel to R (what onions ask the hub to forward to).
    hub_to_r: u64,
}

async fn setup(hub_config: Option<&str>) -> Net {
    let s = LdkNode::new("S", [0x61; 32], LdkNodeConfig::default());
    let r = LdkNode::new("R", [0x62; 32], LdkNodeConfig::default());
    let dir = TempDir::new("hub");
    if let Some(toml) = hub_config {
        std::fs::write(dir.0.join("lnhub.toml"), toml).expect("write lnhub.toml");
    }
    let (hub, _) = payer_hub_payee(&s, &r, dir).await;
    let s_first_hop = s
        .channel_manager
        .list_channels()
        .iter()
        .find(|c| c.counterparty.node_id == hub.node_id)
        .and_then(|c| c.get_outbound_payment_scid())
        .expect("S's outbound SCID to the hub");
    let hub_to_r = r
        .list_channels()
        .iter()
        .find(|c| c.counterparty == hub.node_id)
        .and_then(|c| c.inbound_scid_alias)
        .expect("the hub's alias for R's channel");
    Net {
        hub,
        s,
        r,
        s_first_hop,
        hub_to_r,
    }
}

/// What S's hand-built route S -> hub -> R asks of the hub.
#[derive(Clone, Copy)]
struct Ask {
    /// `amt_to_forward` to R.
    amount_msat: u64,
    /// What S pays the hub.
    fee_msat: u64,
    /// Blocks between the hub's incoming and outgoing expiry.
    hub_cltv_delta: u32,
    /// The SCID the onion asks the hub to forward to.
    next_scid: u64,
    /// R's final CLTV delta.
    final_cltv_delta: u32,
}

impl Net {
    fn ask(&self, amount_msat: u64) -> Ask {
        Ask {
            amount_msat,
            fee_msat: hub_fee(amount_msat),
            hub_cltv_delta: HUB_CLTV_DELTA,
            next_scid: self.hub_to_r,
            final_cltv_delta: FINAL_CLTV_DELTA,
        }
    }

    /// Sends S's payment along the hand-built route; R knows the payment (hash and secret).
    fn send_route(&self, ask: Ask) -> PaymentHash {
        let (hash, secret) = self
            .r
            .channel_manager
            .create_inbound_payment(Some(ask.amount_msat), 3600, None)
            .expect("R creates an inbound payment");
        let hops = vec![
            RouteHop {
                pubkey: self.hub.node_id,
                node_features: NodeFeatures::empty(),
                short_channel_id: self.s_first_hop,
                channel_features: ChannelFeatures::empty(),
                fee_msat: ask.fee_msat,
                cltv_expiry_delta: ask.hub_cltv_delta,
                maybe_announced_channel: false,
            },
            RouteHop {
                pubkey: self.r.node_id,
                node_features: self.r.channel_manager.node_features(),
                short_channel_id: ask.next_scid,
                channel_features: ChannelFeatures::empty(),
                fee_msat: ask.amount_msat,
                cltv_expiry_delta: ask.final_cltv_delta,
                maybe_announced_channel: false,
            },
        ];
        let route = Route {
            paths: vec![Path {
                hops,
                blinded_tail: None,
            }],
            route_params: None,
        };
        self.s
            .channel_manager
            .send_payment_with_route(
                route,
                hash,
                RecipientOnionFields::secret_only(secret),
                PaymentId(hash.0),
            )
            .expect("S sends along the route");
        hash
    }

    /// Sends along the route, waits for the failure, and checks it is `code` from the hub,
    /// blaming the hub's outgoing channel `ask.next_scid`, and not permanent for the payment
    /// (the hub is not the recipient).
    async fn expect_hub_failure(&self, ask: Ask, code: u16) -> PaymentFailure {
        let hash = self.send_route(ask);
        let failure = self
            .s
            .wait_payment_failed(hash, T)
            .await
            .expect("S's payment fails");
        let e = failure
            .onion_errors
            .iter()
            .find(|e| e.payment_hash == Some(hash))
            .unwrap_or_else(|| panic!("no decoded onion error for {hash}: {failure:?}"));
        assert_eq!(e.from, self.hub.node_id, "failing node: {failure:?}");
        assert_eq!(e.code, code, "failure code ({}): {failure:?}", e.name);
        assert_eq!(failure.paths.len(), 1, "one failed path: {failure:?}");
        let path = &failure.paths[0];
        assert!(path.initial_send_error.is_none(), "{failure:?}");
        assert_eq!(
            path.short_channel_id,
            Some(ask.next_scid),
            "LDK blames the hub's outgoing channel: {failure:?}"
        );
        assert!(
            !path.payment_failed_permanently,
            "an intermediate hop's failure is not the recipient's: {failure:?}"
        );
        let r_saw_it = self.r.events().iter().any(
            |e| matches!(e, Event::PaymentClaimable { payment_hash, .. } if *payment_hash == hash),
        );
        assert!(!r_saw_it, "R never saw the HTLC");
        failure
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_next_channel() {
    let net = setup(None).await;
    let mut ask = net.ask(10_000_000);
    ask.next_scid = 0x00ab_cdef_0012_3456;
    net.expect_hub_failure(ask, UNKNOWN_NEXT_PEER).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fee_one_msat_short() {
    let net = setup(None).await;
    let mut ask = net.ask(10_000_000);
    ask.fee_msat -= 1;
    net.expect_hub_failure(ask, FEE_INSUFFICIENT).await;
    // The exact fee goes through on the same channels.
    let hash = net.send_route(net.ask(10_000_000));
    let (_, fee) = net.s.wait_payment_sent(hash, T).await.expect("exact fee");
    assert_eq!(fee, hub_fee(10_000_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amount_below_configured_minimum() {
    let net = setup(Some("htlc_minimum_msat = 10000\n")).await;
    net.expect_hub_failure(net.ask(9_999), AMOUNT_BELOW_MINIMUM)
        .await;
    let hash = net.send_route(net.ask(10_000));
    net.s
        .wait_payment_sent(hash, T)
        .await
        .expect("the minimum itself is forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cltv_delta_too_small_and_expiry_too_soon() {
    let net = setup(None).await;
    let mut ask = net.ask(10_000_000);
    ask.hub_cltv_delta = HUB_CLTV_DELTA - 1;
    net.expect_hub_failure(ask, INCORRECT_CLTV_EXPIRY).await;
    // The hub is at height 0 and keeps 18 blocks for an outgoing HTLC: an outgoing expiry of
    // 1 + 10 (LDK's height + 1, plus the final delta) is too soon.
    let mut ask = net.ask(10_000_000);
    ask.final_cltv_delta = 10;
    net.expect_hub_failure(ask, EXPIRY_TOO_SOON).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_liquidity_towards_r() {
    let net = setup(None).await;
    // The hub holds 500,000 sat in R's channel, minus R's reserve for it; S can send more.
    let amount = 600_000_000;
    let invoice = net
        .r
        .create_invoice(amount, "too big for the hub", Some(net.hub.node_id))
        .unwrap();
    let hash = PaymentHash(invoice.payment_hash().to_byte_array());
    net.s.pay_invoice(&invoice).expect("S finds a route");
    let failure = net
        .s
        .wait_payment_failed(hash, T)
        .await
        .expect("S's payment fails");
    let e = failure
        .onion_errors
        .iter()
        .find(|e| e.payment_hash == Some(hash))
        .unwrap_or_else(|| panic!("no decoded onion error: {failure:?}"));
    assert_eq!(e.from, net.hub.node_id, "{failure:?}");
    assert_eq!(e.code, TEMPORARY_CHANNEL_FAILURE, "{failure:?}");
    assert!(
        failure.paths.iter().all(|p| !p.payment_failed_permanently),
        "{failure:?}"
    );
    // The same liquidity check on a hand-built route, blaming the hub's channel to R.
    net.expect_hub_failure(net.ask(amount), TEMPORARY_CHANNEL_FAILURE)
        .await;
}

// ---- disconnects in the middle of a burst ----

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    S,
    R,
}

async fn burst_with_disconnect(who: Who) {
    const N: u64 = 50;
    let net = setup(None).await;
    let hub = net.hub.node_id;
    let s_before = net.s.outbound_capacity(&hub);
    let r_before = net.r.outbound_capacity(&hub);

    let mut payments = Vec::new();
    for i in 0..N {
        let amount = 1_000_000 + i * 1_000;
        let invoice = net
            .r
            .create_invoice(amount, "burst", Some(hub))
            .expect("invoice");
        let hash = PaymentHash(invoice.payment_hash().to_byte_array());
        payments.push((hash, amount, invoice));
    }
    for (_, _, invoice) in &payments {
        net.s.pay_invoice(invoice).expect("S starts a payment");
    }
    // Cut the connection once the burst is moving: something claimed or in flight at R.
    let moving = net
        .s
        .wait(T, |_| {
            net.r.pending_htlcs().0 > 0
                || net
                    .r
                    .events()
                    .iter()
                    .any(|e| matches!(e, Event::PaymentClaimed { .. }))
        })
        .await;
    assert!(moving, "the burst reaches R");
    let node = match who {
        Who::S => &net.s,
        Who::R => &net.r,
    };
    node.disconnect(&hub);
    let resolved_at_cut = resolved(&net.s, &payments).len();
    let (s_in, s_out) = net.s.pending_htlcs();
    eprintln!(
        "cut {who:?} with {resolved_at_cut}/{N} payments resolved on S, S pending HTLCs \
         in/out {s_in}/{s_out}"
    );
    assert!(
        resolved_at_cut < N as usize,
        "some payments were still in flight when the connection dropped"
    );
    node.reconnect(hub, net.hub.addr)
        .await
        .expect("reconnects and reestablishes");

    // Every payment resolves on S.
    let deadline = Instant::now() + T;
    while resolved(&net.s, &payments).len() < payments.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = resolved(&net.s, &payments);
    assert_eq!(
        done.len(),
        payments.len(),
        "every payment is sent or failed on S ({} resolved); S pending in/out {:?}, R {:?}",
        done.len(),
        net.s.pending_htlcs(),
        net.r.pending_htlcs()
    );

    // No HTLC left in any channel on either side.
    let clear = net
        .s
        .wait(T, |_| {
            net.s.pending_htlcs() == (0, 0) && net.r.pending_htlcs() == (0, 0)
        })
        .await;
    assert!(
        clear,
        "HTLCs left pending: S in/out {:?}, R in/out {:?}",
        net.s.pending_htlcs(),
        net.r.pending_htlcs()
    );

    // S's outcomes and R's claims agree, payment by payment.
    let s_events = net.s.events();
    let r_events = net.r.events();
    let mut sent_total = 0;
    let mut claimed_total = 0;
    let mut sent = 0;
    for (hash, amount, _) in &payments {
        let s_fee = s_events.iter().find_map(|e| match e {
            Event::PaymentSent {
                payment_hash,
                fee_paid_msat,
                ..
            } if payment_hash == hash => Some(fee_paid_msat.unwrap_or(0)),
            _ => None,
        });
        let r_claimed = r_events.iter().find_map(|e| match e {
            Event::PaymentClaimed {
                payment_hash,
                amount_msat,
                ..
            } if payment_hash == hash => Some(*amount_msat),
            _ => None,
        });
        match (s_fee, r_claimed) {
            (Some(fee), Some(got)) => {
                assert_eq!(fee, hub_fee(*amount), "{hash}: S paid the hub's fee");
                assert_eq!(got, *amount, "{hash}: R got the amount");
                sent_total += amount + fee;
                claimed_total += got;
                sent += 1;
            }
            (None, None) => {}
            (s, r) => panic!("{hash}: S sent with fee {s:?} but R claimed {r:?}"),
        }
    }
    eprintln!("{sent}/{N} payments settled after disconnecting {who:?}");
    assert!(sent > 0, "some payments settle");

    // Balances: S's spendable balance fell by what it paid, R's rose by what it got (both
    // funded their channel, so their reserve and commitment fee are unchanged with no HTLC).
    let s_after = net.s.outbound_capacity(&hub);
    let r_after = net.r.outbound_capacity(&hub);
    assert_eq!(s_before - s_after, sent_total, "S's balance");
    assert_eq!(r_after - r_before, claimed_total, "R's balance");
}

/// Payment hashes of `payments` with `PaymentSent` or `PaymentFailed` on `s`.
fn resolved(s: &LdkNode, payments: &[(PaymentHash, u64, impl Sized)]) -> HashSet<PaymentHash> {
    let done = s.resolved_payments();
    payments
        .iter()
        .map(|p| p.0)
        .filter(|h| done.contains(h))
        .collect()
}

/// S drops its connection in the middle of a burst and reconnects. Regression test for a race
/// in which output a shard made for the old connection (a `revoke_and_ack`) reached the new
/// one before our `channel_reestablish` and made LDK force-close: output is now tied to the
/// connection the shard confirmed (`Output::Connected`), and a peer's inputs keep their order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_disconnects_mid_burst() {
    burst_with_disconnect(Who::S).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_disconnects_mid_burst() {
    burst_with_disconnect(Who::R).await;
}

/// `lnhub-cli setchannelfee` on the hub's channel to R: R receives the new `channel_update`
/// (LDK's forwarding info for the hub), and once the grace period is over a payment paying
/// the old fee fails with `fee_insufficient` while one paying the new fee goes through,
/// charged exactly the new fee.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setchannelfee_changes_the_fee_charged() {
    let mut net = setup(Some("policy_grace_secs = 1\n")).await;
    let scid = net.hub_to_r;
    let scid = format!(
        "{}x{}x{}",
        scid >> 40,
        (scid >> 16) & 0xff_ffff,
        scid & 0xffff
    );
    let out = net
        .hub
        .cli(&[
            "setchannelfee",
            &scid,
            "--base-msat",
            "5000",
            "--ppm",
            "1000",
        ])
        .expect("setchannelfee");
    let updated = out["updated"].as_array().unwrap();
    assert_eq!(updated.len(), 1, "{out}");
    assert_eq!(updated[0]["policy"]["fee_base_msat"], 5000);
    assert_eq!(updated[0]["policy"]["fee_proportional_millionths"], 1000);
    assert!(
        net.r
            .wait(T, |r| r
                .list_channels()
                .iter()
                .any(|c| c.counterparty == net.hub.node_id
                    && c.counterparty_forwarding_info
                        == Some((5000, 1000, HUB_CLTV_DELTA as u16))))
            .await,
        "R received the hub's new channel_update: {:?}",
        net.r.list_channels()
    );
    // Past the grace period the old fee is refused...
    tokio::time::sleep(Duration::from_millis(1500)).await;
    net.expect_hub_failure(net.ask(10_000_000), FEE_INSUFFICIENT)
        .await;
    // ...and the new one charged.
    let mut ask = net.ask(10_000_000);
    ask.fee_msat = 5_000 + 10_000_000 * 1_000 / 1_000_000;
    let hash = net.send_route(ask);
    let (_, fee) = net.s.wait_payment_sent(hash, T).await.expect("new fee");
    assert_eq!(fee, 15_000);
    let channels = net.hub.cli(&["listchannels"]).unwrap();
    let to_r = channels["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["short_channel_id"] == scid.as_str())
        .expect("the channel to R")
        .clone();
    assert_eq!(to_r["policy"]["fee_base_msat"], 5000);
    assert_eq!(to_r["previous_policy"]["policy"]["fee_base_msat"], 1000);
    // The policy is durable: after a kill -9 the channel has it, and the peer's alias.
    net.hub.kill_and_restart();
    let channels = net.hub.cli(&["listchannels"]).unwrap();
    let again = channels["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["short_channel_id"] == scid.as_str())
        .expect("the channel to R after the restart")
        .clone();
    assert_eq!(again["policy"], to_r["policy"]);
    assert_eq!(again["peer_alias"], to_r["peer_alias"]);
    assert!(again["peer_alias"].is_string());
}
