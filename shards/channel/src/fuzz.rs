//! A pair of channels driven by fuzz bytes (STYLE rule 11): the body of
//! the `channel_pair` cargo-fuzz target in `tests/fuzz`. Each input byte
//! picks a step (adds with amounts from the input, fulfills, fails, fee
//! updates, signatures, deliveries in order, persist completions,
//! `shutdown` (answered by the peer as soon as it may) and the closing
//! negotiation that follows (legacy `closing_signed`, or `option_simple_close`
//! when the first byte's top bit is set), disconnections, crash-restarts
//! from the last durable record, and
//! arbitrary decoded messages handed to a copy of a channel); after the
//! input, the pair is drained. It panics on any disagreement: an honest
//! message refused, commitments that differ, an HTLC lost or resolved
//! twice, a wrong final balance, a close that started and did not end in
//! a closing transaction on both sides (the same one with
//! `closing_signed`), a record (whole, or static and progress) that does
//! not decode to the channel that wrote it, or a panic inside the channel.
//!
//! Test-only code: keys are fixed, not secret; nothing here is used by the
//! state machine itself.

use std::collections::{BTreeMap, VecDeque};
use std::sync::OnceLock;

use bitcoin::hashes::{sha256, Hash, HashEngine};
use bitcoin::{Amount, OutPoint, Txid};
use lnhub_tx::keys::per_commitment_point;
use lnhub_tx::shachain::{generate_from_seed, MAX_INDEX};
use lnhub_tx::{ChannelParams, ChannelPublicKeys, ChannelType, Side, SideParams};
use lnhub_wire::msgs::ONION_PACKET_LEN;
use lnhub_wire::types::{ChannelId, Msat, PaymentHash, PaymentPreimage, Sat};
use lnhub_wire::Message;
use secp256k1::{All, PublicKey, Secp256k1, SecretKey};

use crate::{
    Channel, ChannelPolicy, ChannelSecrets, Effect, FundedChannel, RemovalKind, ShutdownTerms,
    SideLimits,
};

/// Steps one input may drive: bounds the work per input so the fuzzer
/// keeps its pace (each signature round costs milliseconds).
const MAX_STEPS: usize = 400;

/// Drain rounds after the input; a drain that does not converge is a bug.
const DRAIN_ROUNDS: usize = 1_000;

/// Funding of the fuzzed channel, in satoshi.
const FUNDING_SAT: u64 = 10_000_000;

/// What A pushed to B at opening.
const PUSH_MSAT: u64 = 3_000_000_000;

fn secp() -> &'static Secp256k1<All> {
    static SECP: OnceLock<Secp256k1<All>> = OnceLock::new();
    SECP.get_or_init(Secp256k1::new)
}

fn key(label: &str) -> SecretKey {
    let mut e = sha256::Hash::engine();
    e.input(b"lnhub-channel fuzz/");
    e.input(label.as_bytes());
    SecretKey::from_slice(&sha256::Hash::from_engine(e).to_byte_array())
        .expect("a hash is a valid key but with negligible probability")
}

fn keys(name: &str) -> (ChannelSecrets, ChannelPublicKeys) {
    let secp = secp();
    let k = |l: &str| key(&format!("{name}/{l}"));
    let p = |s: &SecretKey| PublicKey::from_secret_key(secp, s);
    let funding_key = k("funding");
    let htlc = k("htlc");
    let secrets = ChannelSecrets {
        funding_key,
        htlc_basepoint_secret: htlc,
        commitment_seed: k("seed").secret_bytes(),
    };
    let pubkeys = ChannelPublicKeys {
        funding_pubkey: p(&funding_key),
        revocation_basepoint: p(&k("revocation")),
        payment_basepoint: p(&k("payment")),
        delayed_payment_basepoint: p(&k("delayed")),
        htlc_basepoint: p(&htlc),
    };
    (secrets, pubkeys)
}

/// Two channels in normal operation, A the funder, from fixed keys.
pub fn fixed_pair(channel_type: ChannelType, feerate_per_kw: u32) -> (Channel, Channel) {
    let secp = secp();
    let (sa, pa) = keys("a");
    let (sb, pb) = keys("b");
    let point = |seed: &[u8; 32], n: u64| {
        per_commitment_point(secp, &generate_from_seed(seed, MAX_INDEX - n)).expect("valid")
    };
    let outpoint = OutPoint {
        txid: Txid::from_byte_array(key("funding-txid").secret_bytes()),
        vout: 0,
    };
    let side = |pubkeys, dust| SideParams {
        pubkeys,
        to_self_delay: 144,
        dust_limit: Amount::from_sat(dust),
    };
    let (side_a, side_b) = (side(pa, 546), side(pb, 354));
    let amount = Amount::from_sat(FUNDING_SAT);
    let limits = SideLimits {
        max_htlc_value_in_flight_msat: Msat(5_000_000_000),
        channel_reserve_satoshis: Sat(100_000),
        htlc_minimum_msat: Msat(1_000),
        max_accepted_htlcs: 12,
    };
    let policy = ChannelPolicy {
        max_dust_htlc_exposure_msat: Msat(5_000_000),
        min_feerate_per_kw: 253,
        max_feerate_per_kw: 100_000,
    };
    let channel_id = ChannelId(key("channel-id").secret_bytes());
    let funder_msat = FUNDING_SAT * 1000 - PUSH_MSAT;
    let make = |funder, local, remote, secrets: ChannelSecrets, peer_seed, to_local, to_remote| {
        Channel::from_funded(FundedChannel {
            channel_id,
            params: ChannelParams::new(outpoint, amount, funder, channel_type, local, remote)
                .expect("valid params"),
            local_limits: limits,
            remote_limits: limits,
            policy,
            to_local: Msat(to_local),
            to_remote: Msat(to_remote),
            feerate_per_kw,
            remote_first_per_commitment_point: point(peer_seed, 0),
            remote_second_per_commitment_point: point(peer_seed, 1),
            secrets,
            holder_signature: None,
            local_alias: None,
            outbox: None,
            shutdown_terms: ShutdownTerms::default(),
        })
    };
    let seed_a = sa.commitment_seed;
    let seed_b = sb.commitment_seed;
    let a = make(
        Side::Local,
        side_a,
        side_b,
        sa,
        &seed_b,
        funder_msat,
        PUSH_MSAT,
    );
    let b = make(
        Side::Remote,
        side_b,
        side_a,
        sb,
        &seed_a,
        PUSH_MSAT,
        funder_msat,
    );
    (a, b)
}

/// Reads the fuzz input.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u32(&mut self) -> u32 {
        let mut v = 0u32;
        for _ in 0..4 {
            v = (v << 8) | u32::from(self.u8().unwrap_or(0));
        }
        v
    }
}

struct Node {
    ch: Channel,
    inbox: VecDeque<Message>,
    persists: Vec<(u64, Vec<u8>)>,
    record: Vec<u8>,
    /// Our HTLCs: id -> (amount, preimage).
    sent: BTreeMap<u64, (u64, [u8; 32])>,
    /// id -> (fulfilled?, restart epoch).
    resolved: BTreeMap<u64, (bool, usize)>,
    /// Inbound HTLCs awaiting our decision: id -> must fail.
    forwardable: BTreeMap<u64, bool>,
    epoch: usize,
    /// Closing transactions reported.
    closing_txs: Vec<bitcoin::Transaction>,
}

fn record_of(ch: &Channel) -> Vec<u8> {
    let mut out = Vec::new();
    ch.encode(&mut out);
    out
}

impl Node {
    fn new(ch: Channel) -> Self {
        Node {
            record: record_of(&ch),
            ch,
            inbox: VecDeque::new(),
            persists: Vec::new(),
            sent: BTreeMap::new(),
            resolved: BTreeMap::new(),
            forwardable: BTreeMap::new(),
            epoch: 0,
            closing_txs: Vec::new(),
        }
    }
}

struct Pair {
    n: [Node; 2],
    next_preimage: u64,
    /// The last commitment number of each side compared across the two.
    compared: [Option<u64>; 2],
}

impl Pair {
    fn drain_effects(&mut self, i: usize) {
        while let Some(e) = self.n[i].ch.poll_effect() {
            match e {
                Effect::Send(m) => self.n[1 - i].inbox.push_back(m),
                Effect::Persist { seq } => {
                    let rec = record_of(&self.n[i].ch);
                    let back = Channel::decode(&rec).expect("a record decodes");
                    assert!(back == self.n[i].ch, "decode(encode(c)) == c");
                    let ch = &self.n[i].ch;
                    let (mut statics, mut progress) = (Vec::new(), Vec::new());
                    ch.encode_static(&mut statics);
                    ch.encode_progress(&mut progress);
                    let parts = Channel::decode_parts(&statics, &progress, &mut |s, id| {
                        ch.htlc_terms(s, id)
                    })
                    .expect("a static and a progress record decode");
                    assert!(parts == *ch, "decode_parts(static, progress) == c");
                    self.n[i].persists.push((seq, rec));
                }
                Effect::Forward {
                    htlc_id,
                    amount_msat,
                    payment_hash,
                    over_dust_exposure,
                    ..
                } => {
                    let (amount, preimage) = self.n[1 - i].sent[&htlc_id];
                    assert_eq!(amount, amount_msat.0, "forwarded amount");
                    assert_eq!(
                        sha256::Hash::hash(&preimage).to_byte_array(),
                        payment_hash.0,
                        "forwarded hash"
                    );
                    self.n[i].forwardable.insert(htlc_id, over_dust_exposure);
                }
                Effect::Resolved {
                    htlc_id,
                    resolution,
                } => {
                    let me = &mut self.n[i];
                    let (_, preimage) = me.sent[&htlc_id];
                    let fulfilled = match resolution {
                        RemovalKind::Fulfill(payment_preimage) => {
                            assert_eq!(payment_preimage.0, preimage, "preimage");
                            true
                        }
                        _ => false,
                    };
                    if let Some((was, epoch)) = me.resolved.insert(htlc_id, (fulfilled, me.epoch)) {
                        assert!(
                            was == fulfilled && epoch < me.epoch,
                            "HTLC {htlc_id} resolved twice"
                        );
                    }
                }
                Effect::BroadcastFunding { .. } => panic!("funding broadcast in normal operation"),
                Effect::ClosingTx { tx } => {
                    assert_eq!(
                        tx.input[0].previous_output,
                        self.n[i].ch.params().funding_outpoint(),
                        "a closing transaction spends the funding output"
                    );
                    self.n[i].closing_txs.push(tx);
                }
            }
        }
    }

    fn add(&mut self, i: usize, amount_msat: u64) {
        self.next_preimage += 1;
        let mut preimage = [0u8; 32];
        preimage[..8].copy_from_slice(&self.next_preimage.to_be_bytes());
        preimage[8] = i as u8;
        let hash = PaymentHash(sha256::Hash::hash(&preimage).to_byte_array());
        let me = &mut self.n[i];
        if let Ok(id) =
            me.ch
                .send_add_htlc(Msat(amount_msat), hash, 800_000, &[0; ONION_PACKET_LEN])
        {
            me.sent.insert(id, (amount_msat, preimage));
        }
    }

    fn remove(&mut self, i: usize, pick: u8, fulfill: bool) {
        if !self.n[i].ch.is_operational() {
            return;
        }
        let Some((&id, &must_fail)) = self.n[i]
            .forwardable
            .iter()
            .nth(usize::from(pick) % self.n[i].forwardable.len().max(1))
        else {
            return;
        };
        let preimage = self.n[1 - i].sent[&id].1;
        let me = &mut self.n[i];
        let r = if fulfill && !must_fail {
            me.ch.send_fulfill_htlc(id, PaymentPreimage(preimage))
        } else {
            me.ch.send_fail_htlc(id, vec![0xfa; 32])
        };
        r.expect("removing a committed HTLC");
        me.forwardable.remove(&id);
    }

    fn sign(&mut self, i: usize) -> bool {
        let secp = secp();
        let ch = &mut self.n[i].ch;
        match ch.stage_sign(secp).expect("signing is possible") {
            Some(staged) => {
                ch.apply_signed(staged.sign(secp));
                true
            }
            None => false,
        }
    }

    fn deliver(&mut self, i: usize) -> bool {
        let secp = secp();
        let Some(m) = self.n[i].inbox.pop_front() else {
            return false;
        };
        let ch = &mut self.n[i].ch;
        match handle(secp, ch, m) {
            // A closed channel drops what the peer repeats after a reconnection.
            Err(crate::ChannelError::Ignore(_)) if ch.is_closed() => {}
            r => r.expect("an honest message is accepted"),
        }
        true
    }

    /// Signs and queues node `i`'s next closing message, if it owes one.
    fn close_sign(&mut self, i: usize) -> bool {
        let ch = &mut self.n[i].ch;
        match ch
            .stage_closing_sign()
            .expect("an honest close can be signed")
        {
            Some(staged) => {
                ch.apply_closing_sign(staged.sign(secp()));
                true
            }
            None => false,
        }
    }

    fn persist(&mut self, i: usize) -> bool {
        let me = &mut self.n[i];
        let Some((seq, rec)) = me.persists.drain(..).max_by_key(|p| p.0) else {
            return false;
        };
        me.ch.handle_persisted(seq);
        me.record = rec;
        true
    }

    fn reconnect(&mut self) {
        for n in &mut self.n {
            n.ch.handle_disconnect();
            n.inbox.clear();
        }
        for n in &mut self.n {
            n.ch.handle_reconnect(secp());
        }
    }

    fn restart(&mut self, i: usize) {
        let me = &mut self.n[i];
        let mut ch = Channel::decode(&me.record).expect("the durable record decodes");
        ch.handle_restart();
        me.ch = ch;
        me.epoch += 1;
        me.persists.clear();
        let next = me.ch.book().next_local_htlc_id();
        let resolved = &me.resolved;
        me.sent
            .retain(|id, _| *id < next || resolved.contains_key(id));
        me.forwardable.clear();
        self.reconnect();
    }

    /// Every HTLC we sent is in the books or resolved; both sides agree
    /// on every commitment they both hold.
    fn check(&mut self) {
        for i in 0..2 {
            let me = &self.n[i];
            if !me.persists.is_empty() {
                continue;
            }
            for id in me.sent.keys() {
                assert!(
                    me.ch.book().htlc(Side::Local, *id).is_some() || me.resolved.contains_key(id),
                    "HTLC {id} lost"
                );
            }
            let peer = &self.n[1 - i];
            let n = me.ch.book().local_commitment_number();
            if peer.ch.book().remote_commitment_number() == n && self.compared[i] != Some(n) {
                self.compared[i] = Some(n);
                let secp = secp();
                let mine = self.n[i]
                    .ch
                    .commitment_tx(secp, crate::View::LocalCurrent)
                    .expect("builds");
                let theirs = self.n[1 - i]
                    .ch
                    .commitment_tx(secp, crate::View::RemoteCurrent)
                    .expect("builds");
                assert_eq!(mine.tx(), theirs.tx(), "both sides agree");
            }
        }
    }
}

/// Hands a message to a channel through the shard's router, the crypto
/// done inline.
fn handle(secp: &Secp256k1<All>, ch: &mut Channel, m: Message) -> Result<(), crate::ChannelError> {
    ch.handle_message(secp, m)?.finish(secp, ch)
}

/// Node `i`'s `shutdown` script (P2WPKH).
fn shutdown_script(i: usize) -> bitcoin::ScriptBuf {
    let mut v = vec![0x00, 20];
    v.extend([0x10 + i as u8; 20]);
    bitcoin::ScriptBuf::from_bytes(v)
}

/// Drives a pair of channels from `data` (see the module docs); panics on
/// any disagreement.
#[doc(hidden)]
pub fn fuzz_pair(data: &[u8]) {
    let mut input = Input(data);
    let Some(first) = input.u8() else { return };
    let channel_type = if first & 1 == 0 {
        ChannelType::Anchors
    } else {
        ChannelType::StaticRemoteKey
    };
    let feerate = 253 + u32::from(first >> 1) * 20;
    let (mut a, mut b) = fixed_pair(channel_type, feerate);
    let simple_close = first & 0x80 != 0;
    a.shutdown_terms.option_simple_close = simple_close;
    b.shutdown_terms.option_simple_close = simple_close;
    let mut p = Pair {
        n: [Node::new(a), Node::new(b)],
        next_preimage: 0,
        compared: [None; 2],
    };
    for _ in 0..MAX_STEPS {
        let Some(op) = input.u8() else { break };
        let i = usize::from(op & 1);
        match (op >> 1) % 60 {
            0..=9 => {
                let raw = input.u32();
                let amount = if raw & 1 == 0 {
                    u64::from(raw % 1_000_000)
                } else {
                    u64::from(raw) * 100
                };
                p.add(i, amount);
            }
            10..=15 => {
                let pick = input.u8().unwrap_or(0);
                p.remove(i, pick, op & 2 == 0);
            }
            16..=19 => {
                let _ = p.sign(i);
            }
            20..=35 => {
                let _ = p.deliver(i);
            }
            36..=47 => {
                let _ = p.persist(i);
            }
            48..=49 => {
                let rate = 253 + input.u32() % 20_000;
                let _ = p.n[0].ch.send_update_fee(rate);
            }
            50..=51 => p.reconnect(),
            57 => {
                let _ = p.n[i].ch.send_shutdown(shutdown_script(i));
            }
            58 => {
                let _ = p.close_sign(i);
            }
            52..=54 => p.restart(i),
            55..=56 => {
                // Arbitrary bytes as a peer message, to a copy.
                let len = usize::from(input.u8().unwrap_or(0));
                let take = len.min(input.0.len());
                let (bytes, rest) = input.0.split_at(take);
                input.0 = rest;
                if let Ok(m) = Message::decode(bytes) {
                    let mut copy = p.n[i].ch.clone();
                    let _ = handle(secp(), &mut copy, m);
                    while copy.poll_effect().is_some() {}
                }
            }
            _ => {
                // A hand-made hostile update for an existing id.
                let mut copy = p.n[i].ch.clone();
                let id = u64::from(input.u8().unwrap_or(0) % 4);
                let _ = copy.handle_update_fulfill_htlc(&lnhub_wire::msgs::UpdateFulfillHtlc {
                    channel_id: copy.channel_id(),
                    id,
                    payment_preimage: PaymentPreimage([op; 32]),
                    attribution_data: None,
                    unknown_tlvs: Vec::new(),
                });
                while copy.poll_effect().is_some() {}
            }
        }
        for (j, n) in p.n.iter_mut().enumerate() {
            if n.ch.needs_shutdown_reply() {
                let _ = n.ch.send_shutdown(shutdown_script(j));
            }
        }
        p.drain_effects(0);
        p.drain_effects(1);
        p.check();
    }
    drain(&mut p, simple_close);
}

/// Settles everything and checks the final balances.
fn drain(p: &mut Pair, simple_close: bool) {
    for _ in 0..DRAIN_ROUNDS {
        let mut progress = false;
        for i in 0..2 {
            while p.n[i].ch.is_operational() && !p.n[i].forwardable.is_empty() {
                p.remove(i, 0, i == 0);
                progress = true;
            }
            if p.n[i].ch.needs_shutdown_reply() {
                progress |= p.n[i].ch.send_shutdown(shutdown_script(i)).is_ok();
            }
            progress |= p.persist(i);
            progress |= p.deliver(i);
            progress |= p.sign(i);
            progress |= p.close_sign(i);
            p.drain_effects(0);
            p.drain_effects(1);
            p.check();
        }
        if !progress {
            for n in &p.n {
                assert!(n.ch.book().htlcs().is_empty(), "HTLCs left after the drain");
                assert_eq!(n.resolved.len(), n.sent.len(), "every HTLC resolved");
            }
            if p.n.iter().any(|n| n.ch.is_shutting_down()) {
                for (j, n) in p.n.iter().enumerate() {
                    let s = n.ch.shutdown_state();
                    assert_eq!(s.local_script(), Some(shutdown_script(j).as_script()));
                    assert_eq!(s.remote_script(), Some(shutdown_script(1 - j).as_script()));
                    assert!(
                        !n.closing_txs.is_empty(),
                        "a started close ends in a transaction"
                    );
                }
                if !simple_close {
                    assert_eq!(
                        p.n[0].closing_txs.last(),
                        p.n[1].closing_txs.last(),
                        "closing_signed ends in one transaction"
                    );
                }
            }
            let paid = |n: &Node| -> u64 {
                n.resolved
                    .iter()
                    .filter(|(_, r)| r.0)
                    .map(|(id, _)| n.sent[id].0)
                    .sum()
            };
            let expect_a = FUNDING_SAT * 1000 - PUSH_MSAT + paid(&p.n[1]) - paid(&p.n[0]);
            let mut htlcs = Vec::new();
            let a = p.n[0].ch.book().view(crate::View::LocalCurrent, &mut htlcs);
            assert_eq!(a.to_local_msat, expect_a, "final balance of A");
            return;
        }
    }
    panic!("the drain did not converge");
}

#[cfg(test)]
mod tests {
    #[test]
    fn smoke_inputs_pass() {
        // A few fixed inputs, so the target never rots.
        for data in [
            &[][..],
            &[0, 0, 0, 0, 100, 0, 32, 40, 72, 73, 41, 72, 73, 40, 41][..],
            // An HTLC, then shutdown from each side, settled by the drain.
            &[
                0, 0, 0, 0, 100, 0, 32, 40, 72, 73, 41, 72, 73, 40, 41, 114, 73, 72, 41, 40, 115,
            ][..],
            // The same with option_simple_close.
            &[
                0x80, 0, 0, 0, 100, 0, 32, 40, 72, 73, 41, 72, 73, 40, 41, 114, 73, 72, 41, 40, 115,
            ][..],
            &[
                1, 1, 0, 0, 1, 1, 33, 41, 73, 40, 72, 41, 73, 40, 72, 20, 0, 32, 41, 40,
            ][..],
            &[
                2, 0, 1, 2, 3, 4, 2, 5, 6, 7, 8, 32, 104, 40, 41, 72, 73, 106, 41, 40,
            ][..],
        ] {
            super::fuzz_pair(data);
        }
    }
}
