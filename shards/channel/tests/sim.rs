//! Deterministic two-party simulator: two channel state machines in one
//! thread, driven by a seeded PRNG through random interleavings of adds,
//! fulfills, fails, fee updates, signatures, deliveries, persist
//! completions, `shutdown` (about a quarter of the seeds start a
//! cooperative close, after which no HTLC is added and the rest settle,
//! then the fee negotiation runs: legacy `closing_signed`, or
//! `closing_complete` / `closing_sig` on the seeds that negotiate
//! `option_simple_close`, with random dust limits on both sides)
//! and disconnections (messages in flight lost, then
//! `channel_reestablish`); crash-restarts, which replace one side by
//! `Channel::decode` of the record it last made durable (captured when its
//! `Effect::Persist` was polled, current once acknowledged), drop every
//! message in flight and reconnect; and, on a copy of a channel, arbitrary
//! hostile messages, which must never make it panic. Every record written
//! (and the state at random steps) must decode to an equal channel. After every step: both sides agree on every commitment
//! (and every signature verifies, or the receiver refuses it), value is
//! conserved exactly in every view, no HTLC is lost or resolved twice.
//! Every closing transaction a side reports carries two valid funding
//! signatures and pays each side at most its balance.
//! At the end the channel is drained and the final balances are checked;
//! a close that started has ended in a closing transaction on both sides
//! (the same one with `closing_signed`).
//!
//! Half the seeds open their channel through the real establishment
//! exchange (`Establishing` in both roles), half build it directly.
//!
//! `cargo test -p lnhub-channel --test sim` runs the default seeds;
//! `SIM_SEEDS=N` runs N seeds (from `SIM_SEED_START`, default 0),
//! `SIM_SEED=S` exactly one, `SIM_TRACE=1` prints every message. A failure
//! prints its seed.
//!
//! Long because one simulator is one piece: its nodes, its random
//! peers (honest and hostile), its interleavings and its end-of-run
//! checks share their state, and splitting them would only scatter it.

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bitcoin::hashes::{sha256, Hash};
use common::{establish_pair, pair_with_terms, receive_commitment, sign, Agreement, Rng};
use lnhub_channel::{Channel, Effect, RemovalKind, SendError, ShutdownTerms, View};
use lnhub_tx::{ChannelType, Side};
use lnhub_wire::msgs::ONION_PACKET_LEN;
use lnhub_wire::types::{Msat, PaymentHash, PaymentPreimage, Sat};
use lnhub_wire::Message;
use secp256k1::{All, Secp256k1};

/// Seeds of a default run (what CI runs): a few thousand interleavings,
/// about two minutes on two cores. Longer runs: `SIM_SEEDS`.
const DEFAULT_SEEDS: u64 = 3_000;

/// Random steps per seed before the drain.
const STEPS: usize = 250;

/// Upper bound on drain steps: a drain that does not converge is a bug.
const DRAIN_STEPS: usize = 2_000;

/// What the offerer knows about an HTLC it sent.
#[derive(Clone, Copy)]
struct Sent {
    amount_msat: u64,
    preimage: [u8; 32],
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    Fulfilled,
    Failed,
}

struct Node {
    name: &'static str,
    ch: Channel,
    /// Messages from the peer, in order.
    inbox: VecDeque<Message>,
    /// Persist sequence numbers requested and not yet completed.
    persists: Vec<u64>,
    /// HTLCs we offered, by id.
    sent: BTreeMap<u64, Sent>,
    /// How each of our HTLCs was resolved.
    resolved: BTreeMap<u64, Outcome>,
    /// Inbound HTLCs committed and not yet removed by us.
    forwardable: BTreeSet<u64>,
    /// Inbound HTLCs we must fail (dust exposure).
    must_fail: BTreeSet<u64>,
    /// Inbound HTLCs reported by `Forward`, with the restart epoch they
    /// were reported in (a restart may report them again).
    forwarded: BTreeMap<u64, usize>,
    /// Records captured when `Persist { seq }` was polled.
    pending_records: Vec<(u64, Vec<u8>)>,
    /// The last record made durable (its persist acknowledged).
    record: Vec<u8>,
    /// How many times this node restarted.
    epoch: usize,
    /// Restart epoch in which each resolution was reported.
    resolved_epoch: BTreeMap<u64, usize>,
    /// Closing transactions reported (`Effect::ClosingTx`).
    closing_txs: Vec<bitcoin::Transaction>,
}

impl Node {
    fn new(name: &'static str, ch: Channel) -> Self {
        Node {
            name,
            inbox: VecDeque::new(),
            persists: Vec::new(),
            sent: BTreeMap::new(),
            resolved: BTreeMap::new(),
            forwardable: BTreeSet::new(),
            must_fail: BTreeSet::new(),
            forwarded: BTreeMap::new(),
            pending_records: Vec::new(),
            closing_txs: Vec::new(),
            record: encode(&ch),
            epoch: 0,
            resolved_epoch: BTreeMap::new(),
            ch,
        }
    }
}

struct Sim {
    secp: Secp256k1<All>,
    rng: Rng,
    a: Node,
    b: Node,
    /// (owner is A?, commitment number) pairs already compared.
    compared: BTreeSet<(bool, u64)>,
    onion: [u8; ONION_PACKET_LEN],
    disconnects: usize,
    hostile_messages: usize,
    restarts: usize,
    round_trips: usize,
    /// Index of the funder (0 = A).
    funder: usize,
    /// A's balance at the start.
    a_start_msat: u64,
}

impl Sim {
    fn node(&mut self, i: usize) -> &mut Node {
        if i == 0 {
            &mut self.a
        } else {
            &mut self.b
        }
    }

    fn nodes(&mut self, i: usize) -> (&mut Node, &mut Node) {
        if i == 0 {
            (&mut self.a, &mut self.b)
        } else {
            (&mut self.b, &mut self.a)
        }
    }

    /// Drains one node's effects into the peer's inbox and the books.
    fn drain_effects(&mut self, i: usize) -> Result<(), String> {
        let (me, peer) = self.nodes(i);
        while let Some(e) = me.ch.poll_effect() {
            match e {
                Effect::Send(m) => {
                    if std::env::var("SIM_TRACE").is_ok() {
                        eprintln!("{} -> {}", me.name, msg_name(&m));
                    }
                    peer.inbox.push_back(m)
                }
                Effect::Persist { seq } => {
                    me.persists.push(seq);
                    let record = encode(&me.ch);
                    round_trip(&me.ch, &record).map_err(|e| format!("{}: {e}", me.name))?;
                    me.pending_records.push((seq, record));
                }
                Effect::BroadcastFunding { .. } => {
                    return Err(format!(
                        "{} broadcasts funding in normal operation",
                        me.name
                    ))
                }
                Effect::Forward {
                    htlc_id,
                    amount_msat,
                    payment_hash,
                    over_dust_exposure,
                    ..
                } => {
                    if over_dust_exposure {
                        me.must_fail.insert(htlc_id);
                    }
                    let s = peer
                        .sent
                        .get(&htlc_id)
                        .ok_or(format!("{} forwards unknown HTLC {htlc_id}", me.name))?;
                    if s.amount_msat != amount_msat.0
                        || sha256::Hash::hash(&s.preimage).to_byte_array() != payment_hash.0
                    {
                        return Err(format!("{} forwards HTLC {htlc_id} altered", me.name));
                    }
                    if let Some(epoch) = me.forwarded.insert(htlc_id, me.epoch) {
                        if epoch == me.epoch {
                            return Err(format!("{} forwards HTLC {htlc_id} twice", me.name));
                        }
                    }
                    me.forwardable.insert(htlc_id);
                }
                Effect::ClosingTx { tx } => {
                    check_closing_tx(&me.ch, &tx).map_err(|e| format!("{}: {e}", me.name))?;
                    me.closing_txs.push(tx);
                }
                Effect::Resolved {
                    htlc_id,
                    resolution,
                } => {
                    let s = me
                        .sent
                        .get(&htlc_id)
                        .ok_or(format!("{} resolves unknown HTLC {htlc_id}", me.name))?;
                    let outcome = match resolution {
                        RemovalKind::Fulfill(payment_preimage) => {
                            if payment_preimage.0 != s.preimage {
                                return Err(format!("{} HTLC {htlc_id}: wrong preimage", me.name));
                            }
                            Outcome::Fulfilled
                        }
                        RemovalKind::Fail(..) | RemovalKind::FailMalformed { .. } => {
                            Outcome::Failed
                        }
                    };
                    // After a restart a resolution may be reported again
                    // (at least once), never differently.
                    let epoch = me.resolved_epoch.insert(htlc_id, me.epoch);
                    match me.resolved.insert(htlc_id, outcome) {
                        Some(o) if o == outcome && epoch.is_some_and(|e| e < me.epoch) => {}
                        Some(_) => {
                            return Err(format!("{} HTLC {htlc_id} resolved twice", me.name))
                        }
                        None => {}
                    }
                }
            }
        }
        Ok(())
    }

    fn add(&mut self, i: usize) -> Result<(), String> {
        let dust = self.rng.chance(1, 4);
        let amount = if dust {
            self.rng.range(1_000, 700_000)
        } else {
            self.rng.range(700_000, 400_000_000)
        };
        let preimage = self.rng.bytes32();
        let hash = PaymentHash(sha256::Hash::hash(&preimage).to_byte_array());
        let cltv = self.rng.range(800_000, 801_000) as u32;
        let onion = self.onion;
        let n = self.node(i);
        match n.ch.send_add_htlc(Msat(amount), hash, cltv, &onion) {
            Ok(id) => {
                n.sent.insert(
                    id,
                    Sent {
                        amount_msat: amount,
                        preimage,
                    },
                );
                Ok(())
            }
            Err(
                SendError::InsufficientBalance
                | SendError::TooManyHtlcs
                | SendError::InFlightExceeded
                | SendError::DustExposure
                | SendError::NotOperational
                | SendError::ShuttingDown,
            ) => Ok(()),
            Err(e) => Err(format!("{} add refused: {e}", n.name)),
        }
    }

    fn remove(&mut self, i: usize, force_fulfill: Option<bool>) -> Result<(), String> {
        let k = self.rng.next_u64() as usize;
        let fulfill = force_fulfill.unwrap_or_else(|| self.rng.chance(2, 3));
        let malformed = self.rng.chance(1, 5);
        let (me, peer) = self.nodes(i);
        let Some(&id) = me.forwardable.iter().nth(k % me.forwardable.len().max(1)) else {
            return Ok(());
        };
        let r = if fulfill && !me.must_fail.contains(&id) {
            let preimage = peer.sent[&id].preimage;
            me.ch.send_fulfill_htlc(id, PaymentPreimage(preimage))
        } else if malformed {
            me.ch
                .send_fail_malformed_htlc(id, [7; 32], 0x8000 | 0x4000 | 5)
        } else {
            me.ch.send_fail_htlc(id, vec![0xfa; 32])
        };
        match r {
            Ok(()) => {
                me.forwardable.remove(&id);
                Ok(())
            }
            Err(SendError::NotOperational) => Ok(()),
            Err(e) => Err(format!("{} removal of {id} refused: {e}", me.name)),
        }
    }

    /// Node `i`'s `shutdown` script (P2WPKH, one per node).
    fn script(i: usize) -> bitcoin::ScriptBuf {
        let mut v = vec![0x00, 20];
        v.extend([0x10 + i as u8; 20]);
        bitcoin::ScriptBuf::from_bytes(v)
    }

    /// Node `i` starts (or answers) the cooperative close.
    fn shutdown(&mut self, i: usize) -> Result<(), String> {
        let n = self.node(i);
        match n.ch.send_shutdown(Self::script(i)) {
            Ok(())
            | Err(
                SendError::PendingUpdates
                | SendError::NotOperational
                | SendError::ShutdownAlreadySent,
            ) => Ok(()),
            Err(e) => Err(format!("{} shutdown refused: {e}", n.name)),
        }
    }

    fn fee(&mut self) -> Result<(), String> {
        let feerate = self.rng.range(253, 6_000) as u32;
        let funder = self.funder;
        match self.node(funder).ch.send_update_fee(feerate) {
            Ok(())
            | Err(
                SendError::InsufficientBalance
                | SendError::DustExposure
                | SendError::NotOperational
                | SendError::UpdatesFrozen,
            ) => Ok(()),
            Err(e) => Err(format!("update_fee refused: {e}")),
        }
    }

    /// Signs the peer's next commitment if there is anything to sign,
    /// through either the per-stage helper or an engine-style batch.
    fn sign(&mut self, i: usize) -> Result<bool, String> {
        let secp = self.secp.clone();
        let batch = self.rng.chance(1, 2);
        let n = self.node(i);
        if !batch {
            return sign(&secp, &mut n.ch).map_err(|e| format!("{} cannot sign: {e}", n.name));
        }
        let Some(staged) =
            n.ch.stage_sign(&secp)
                .map_err(|e| format!("{} cannot sign: {e}", n.name))?
        else {
            return Ok(false);
        };
        let mut sigs = Vec::new();
        lnhub_tx::batch::sign_batch(&secp, staged.jobs(), &mut sigs);
        n.ch.apply_signed(staged.with_signatures(sigs));
        Ok(true)
    }

    /// Signs node `i`'s next closing message, if it owes one, through the
    /// per-stage helper or an engine-style batch.
    fn close_sign(&mut self, i: usize) -> Result<bool, String> {
        let secp = self.secp.clone();
        let batch = self.rng.chance(1, 2);
        let n = self.node(i);
        let Some(staged) =
            n.ch.stage_closing_sign()
                .map_err(|e| format!("{} cannot sign its closing message: {e}", n.name))?
        else {
            return Ok(false);
        };
        let signed = if batch {
            let mut sigs = Vec::new();
            lnhub_tx::batch::sign_batch(&secp, staged.jobs(), &mut sigs);
            staged.with_signatures(sigs)
        } else {
            staged.sign(&secp)
        };
        n.ch.apply_closing_sign(signed);
        Ok(true)
    }

    fn deliver(&mut self, i: usize) -> Result<bool, String> {
        let secp = self.secp.clone();
        let batch = self.rng.chance(1, 2);
        let n = self.node(i);
        let Some(m) = n.inbox.pop_front() else {
            return Ok(false);
        };
        if std::env::var("SIM_TRACE").is_ok() {
            let b = n.ch.book();
            eprintln!(
                "{} <- {} (local {}, remote {}, next remote id {}, link {:?})",
                n.name,
                msg_name(&m),
                b.local_commitment_number(),
                b.remote_commitment_number(),
                b.next_remote_htlc_id(),
                n.ch.link()
            );
        }
        // The shard's router; with `batch`, the commitment's signatures are checked the
        // shard's way (one batch), otherwise one by one.
        let r = match n.ch.handle_message(&secp, m) {
            Ok(lnhub_channel::Routed::NotForChannel(t)) => {
                return Err(format!("{} got unexpected message type {t}", n.name))
            }
            Ok(lnhub_channel::Routed::Commitment(m)) if !batch => {
                receive_commitment(&secp, &mut n.ch, m)
            }
            Ok(routed) => routed.finish(&secp, &mut n.ch),
            Err(e) => Err(e),
        };
        match r {
            // A closed channel drops what the peer repeats after a
            // reconnection (its `shutdown`, a restarted negotiation).
            Err(lnhub_channel::ChannelError::Ignore(_)) if n.ch.is_closed() => {}
            r => r.map_err(|e| format!("{} refused a message: {e}", n.name))?,
        }
        Ok(true)
    }

    /// A hostile peer: a random, well-formed but arbitrary message is
    /// handed to a copy of node `i`'s channel. Whatever it is, the channel
    /// must answer with a result, never a panic (peer bytes never panic).
    fn hostile(&mut self, i: usize) -> Result<(), String> {
        let secp = self.secp.clone();
        let m = self.random_message(i);
        let mut ch = self.node(i).ch.clone();
        let name = msg_name(&m);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // Through the shard's router, like any peer message.
            let r = ch
                .handle_message(&secp, m)
                .and_then(|routed| routed.finish(&secp, &mut ch));
            // Whatever happened, the copy still answers queries.
            let _ = ch.can_sign();
            while ch.poll_effect().is_some() {}
            r
        }));
        match outcome {
            Ok(_) => {
                self.hostile_messages += 1;
                Ok(())
            }
            Err(_) => Err(format!("a hostile {name} made the channel panic")),
        }
    }

    fn random_message(&mut self, i: usize) -> Message {
        use lnhub_wire::msgs::*;
        let channel_id = self.node(i).ch.channel_id();
        let next_id = self.node(i).ch.book().next_remote_htlc_id();
        let r = &mut self.rng;
        let small = |r: &mut Rng| r.range(0, 4);
        let id = if r.chance(1, 2) {
            next_id
        } else {
            r.next_u64() % (next_id + 3)
        };
        let amount = match r.range(0, 3) {
            0 => r.next_u64(),
            1 => r.range(0, 2_000),
            _ => r.range(0, 10_000_000_000),
        };
        let key = secp256k1::SecretKey::from_slice(&r.bytes32())
            .unwrap_or(secp256k1::SecretKey::from_slice(&[1; 32]).expect("valid"));
        let point = secp256k1::PublicKey::from_secret_key(&self.secp, &key);
        let sig = self
            .secp
            .sign_ecdsa(&secp256k1::Message::from_digest(r.bytes32()), &key);
        match r.range(0, 12) {
            0 => Message::UpdateAddHtlc(UpdateAddHtlc {
                channel_id,
                id,
                amount_msat: Msat(amount),
                payment_hash: PaymentHash(r.bytes32()),
                cltv_expiry: if r.chance(1, 4) {
                    r.next_u64() as u32
                } else {
                    800_000
                },
                onion_routing_packet: [0; ONION_PACKET_LEN],
                blinded_path: None,
                unknown_tlvs: Vec::new(),
            }),
            1 => Message::UpdateFulfillHtlc(UpdateFulfillHtlc {
                channel_id,
                id: small(r),
                payment_preimage: PaymentPreimage(r.bytes32()),
                attribution_data: None,
                unknown_tlvs: Vec::new(),
            }),
            2 => Message::UpdateFailHtlc(UpdateFailHtlc {
                channel_id,
                id: small(r),
                reason: vec![0; r.range(0, 300) as usize],
                attribution_data: None,
                unknown_tlvs: Vec::new(),
            }),
            3 => Message::UpdateFailMalformedHtlc(UpdateFailMalformedHtlc {
                channel_id,
                id: small(r),
                sha256_of_onion: r.bytes32(),
                failure_code: r.next_u64() as u16,
                unknown_tlvs: Vec::new(),
            }),
            4 => Message::UpdateFee(UpdateFee {
                channel_id,
                feerate_per_kw: r.next_u64() as u32 >> r.range(0, 32),
                unknown_tlvs: Vec::new(),
            }),
            5 => Message::CommitmentSigned(CommitmentSigned {
                channel_id,
                signature: sig,
                htlc_signature: vec![sig; r.range(0, 5) as usize],
                funding_txid: None,
                unknown_tlvs: Vec::new(),
            }),
            6 => Message::RevokeAndAck(RevokeAndAck {
                channel_id,
                per_commitment_secret: if r.chance(1, 4) { [0; 32] } else { r.bytes32() },
                next_per_commitment_point: point,
                unknown_tlvs: Vec::new(),
            }),
            7 => Message::Shutdown(Shutdown {
                channel_id,
                scriptpubkey: match r.range(0, 3) {
                    0 => Self::script(1 - i).to_bytes(),
                    1 => {
                        let mut v = vec![r.range(0, 0x61) as u8, r.range(0, 42) as u8];
                        v.resize(2 + r.range(0, 42) as usize, 7);
                        v
                    }
                    _ => r.bytes32()[..r.range(0, 32) as usize].to_vec(),
                },
                unknown_tlvs: Vec::new(),
            }),
            8 => Message::ClosingSigned(ClosingSigned {
                channel_id,
                fee_satoshis: Sat(amount / 1000),
                signature: sig,
                fee_range: r.chance(1, 2).then(|| FeeRange {
                    min_fee_satoshis: Sat(r.range(0, 5_000)),
                    max_fee_satoshis: Sat(r.range(0, 50_000)),
                }),
                unknown_tlvs: Vec::new(),
            }),
            9 | 10 => {
                let (closer, closee) = (Self::script(1 - i).to_bytes(), Self::script(i).to_bytes());
                let fee = Sat(amount / 1000);
                let locktime = r.range(0, 3) as u32;
                let pick = |r: &mut Rng| r.chance(1, 2).then_some(sig);
                let (one, two, three) = (pick(r), pick(r), pick(r));
                if r.chance(1, 2) {
                    Message::ClosingComplete(ClosingComplete {
                        channel_id,
                        closer_scriptpubkey: closer,
                        closee_scriptpubkey: closee,
                        fee_satoshis: fee,
                        locktime,
                        closer_output_only: one,
                        closee_output_only: two,
                        closer_and_closee_outputs: three,
                        unknown_tlvs: Vec::new(),
                    })
                } else {
                    Message::ClosingSig(ClosingSig {
                        channel_id,
                        closer_scriptpubkey: closee,
                        closee_scriptpubkey: closer,
                        fee_satoshis: fee,
                        locktime,
                        closer_output_only: one,
                        closee_output_only: two,
                        closer_and_closee_outputs: three,
                        unknown_tlvs: Vec::new(),
                    })
                }
            }
            _ => Message::ChannelReestablish(ChannelReestablish {
                channel_id,
                next_commitment_number: r.next_u64() % 8,
                next_revocation_number: r.next_u64() % 8,
                your_last_per_commitment_secret: r.bytes32(),
                my_current_per_commitment_point: point,
                next_funding: None,
                my_current_funding_locked: None,
                unknown_tlvs: Vec::new(),
            }),
        }
    }

    /// The connection drops (messages in flight are lost) and comes back.
    fn reconnect(&mut self) {
        if std::env::var("SIM_TRACE").is_ok() {
            eprintln!("-- reconnect");
        }
        self.disconnects += 1;
        let secp = self.secp.clone();
        for n in [&mut self.a, &mut self.b] {
            n.ch.handle_disconnect();
            n.inbox.clear();
        }
        for n in [&mut self.a, &mut self.b] {
            n.ch.handle_reconnect(&secp);
        }
    }

    fn persist(&mut self, i: usize) -> bool {
        let n = self.node(i);
        match n.persists.iter().max() {
            Some(&seq) => {
                n.ch.handle_persisted(seq);
                n.persists.clear();
                let (_, record) = n
                    .pending_records
                    .drain(..)
                    .max_by_key(|(s, _)| *s)
                    .expect("a record per persist request");
                n.record = record;
                true
            }
            None => false,
        }
    }

    /// Node `i` crashes and restarts from its last durable record; every
    /// message in flight is lost; both reconnect.
    fn restart(&mut self, i: usize) -> Result<(), String> {
        if std::env::var("SIM_TRACE").is_ok() {
            eprintln!("-- restart {}", self.node(i).name);
        }
        self.restarts += 1;
        let secp = self.secp.clone();
        let (me, peer) = self.nodes(i);
        let mut ch = Channel::decode(&me.record)
            .map_err(|e| format!("{} cannot decode its record: {e}", me.name))?;
        ch.handle_restart();
        me.ch = ch;
        me.epoch += 1;
        me.persists.clear();
        me.pending_records.clear();
        // Our adds after the record were never committed: the engine adds
        // them again or fails them upstream; here they are forgotten.
        let next_local = me.ch.book().next_local_htlc_id();
        let resolved = &me.resolved;
        let forgotten: Vec<u64> = me
            .sent
            .keys()
            .copied()
            .filter(|id| *id >= next_local && !resolved.contains_key(id))
            .collect();
        for id in &forgotten {
            // Never committed, so the peer cannot have forwarded it.
            if peer.forwarded.contains_key(id) {
                return Err(format!("{} lost HTLC {id} the peer forwarded", me.name));
            }
            me.sent.remove(id);
        }
        // Inbound HTLCs still undecided in the record are reported again
        // (now if irrevocable in it, else once they are).
        me.forwardable.clear();
        me.inbox.clear();
        peer.inbox.clear();
        peer.ch.handle_disconnect();
        me.ch.handle_reconnect(&secp);
        peer.ch.handle_reconnect(&secp);
        Ok(())
    }

    fn step(&mut self) -> Result<(), String> {
        let i = self.rng.range(0, 2) as usize;
        match self.rng.range(0, 100) {
            0..=19 => self.add(i)?,
            20..=31 => self.remove(i, None)?,
            32..=34 => self.fee()?,
            35 => self.reconnect(),
            90 | 91 => self.restart(i)?,
            92 => self.shutdown(i)?,
            93 | 94 => {
                self.close_sign(i)?;
            }
            36 => self.hostile(i)?,
            37..=55 => {
                self.sign(i)?;
            }
            56..=85 => {
                self.deliver(i)?;
            }
            _ => {
                self.persist(i);
            }
        }
        self.after_step()
    }

    fn after_step(&mut self) -> Result<(), String> {
        // BOLT 2: reply to the peer's shutdown once nothing is pending.
        for i in 0..2 {
            if self.node(i).ch.needs_shutdown_reply() {
                self.shutdown(i)?;
            }
        }
        self.drain_effects(0)?;
        self.drain_effects(1)?;
        if self.rng.chance(1, 10) {
            let i = self.rng.range(0, 2) as usize;
            let n = self.node(i);
            round_trip(&n.ch, &encode(&n.ch)).map_err(|e| format!("{}: {e}", n.name))?;
            self.round_trips += 1;
        }
        self.check()
    }

    /// Invariants that hold after every step.
    fn check(&mut self) -> Result<(), String> {
        let secp = self.secp.clone();
        for i in 0..2 {
            let (me, peer) = self.nodes(i);
            // Value conserved in every view (the book asserts it too).
            let cap = me.ch.book().capacity_msat();
            let mut htlcs = Vec::new();
            for v in [
                View::LocalCurrent,
                View::LocalNext,
                View::RemoteCurrent,
                View::RemoteNext,
            ] {
                let s = me.ch.book().view(v, &mut htlcs);
                let total: u64 = s.to_local_msat
                    + s.to_remote_msat
                    + htlcs.iter().map(|h| h.amount_msat).sum::<u64>();
                if total != cap {
                    return Err(format!("{} {v:?}: {total} msat != capacity {cap}", me.name));
                }
            }
            // No HTLC lost: every unresolved HTLC we sent is in our book
            // (or its resolution waits for a persist), and every HTLC in
            // our book was sent.
            let all_released = me.persists.is_empty();
            for (id, s) in &me.sent {
                let h = me.ch.book().htlc(Side::Local, *id);
                match (h, me.resolved.get(id)) {
                    (None, None) if all_released => {
                        return Err(format!("{} lost HTLC {id}", me.name))
                    }
                    (Some(h), _) if h.amount_msat.0 != s.amount_msat => {
                        return Err(format!("{} HTLC {id} amount changed", me.name))
                    }
                    _ => {}
                }
            }
            for h in me.ch.book().htlcs() {
                let known = match h.offerer {
                    Side::Local => me.sent.contains_key(&h.id),
                    Side::Remote => peer.sent.contains_key(&h.id),
                };
                if !known {
                    return Err(format!(
                        "{} holds unknown HTLC {:?} {}",
                        me.name, h.offerer, h.id
                    ));
                }
            }
        }
        // Both sides agree on each commitment, once both hold it.
        for i in 0..2 {
            let (me, peer) = self.nodes(i);
            let n = me.ch.book().local_commitment_number();
            if peer.ch.book().remote_commitment_number() != n {
                continue;
            }
            let key = (i == 0, n);
            if self.compared.contains(&key) {
                continue;
            }
            let (me, peer) = self.nodes(i);
            let mine = me
                .ch
                .commitment_tx(&secp, View::LocalCurrent)
                .map_err(|e| format!("{}: {e}", me.name))?;
            let theirs = peer
                .ch
                .commitment_tx(&secp, View::RemoteCurrent)
                .map_err(|e| format!("{}: {e}", peer.name))?;
            if mine.tx() != theirs.tx() {
                return Err(format!(
                    "{}'s commitment {n} differs between the two sides",
                    me.name
                ));
            }
            self.compared.insert(key);
        }
        Ok(())
    }

    /// Stops new payments, settles everything, runs to quiescence.
    fn drain(&mut self) -> Result<(), String> {
        for _ in 0..DRAIN_STEPS {
            let mut progress = false;
            for i in 0..2 {
                while self.node(i).ch.is_operational() && !self.node(i).forwardable.is_empty() {
                    let fulfill = self.rng.chance(1, 2);
                    self.remove(i, Some(fulfill))?;
                    progress = true;
                }
                progress |= self.persist(i);
                progress |= self.deliver(i)?;
                progress |= self.sign(i)?;
                progress |= self.close_sign(i)?;
                self.after_step()?;
            }
            if !progress {
                return self.check_final();
            }
        }
        Err("the drain did not converge".into())
    }

    fn check_final(&mut self) -> Result<(), String> {
        for i in 0..2 {
            let (me, _) = self.nodes(i);
            if !me.ch.book().htlcs().is_empty() {
                return Err(format!("{} still holds HTLCs after the drain", me.name));
            }
            if me.resolved.len() != me.sent.len() {
                return Err(format!(
                    "{} resolved {} of {} HTLCs",
                    me.name,
                    me.resolved.len(),
                    me.sent.len()
                ));
            }
        }
        // A close started by either side ends with both shutdowns
        // exchanged, each side holding the other's script, and a closing
        // transaction on both sides.
        let started = self.a.ch.is_shutting_down() || self.b.ch.is_shutting_down();
        if started {
            for i in 0..2 {
                let (me, _) = self.nodes(i);
                if me.closing_txs.is_empty() {
                    return Err(format!("{} never got a closing transaction", me.name));
                }
            }
            if !self.a.ch.shutdown_terms().option_simple_close
                && self.a.closing_txs.last() != self.b.closing_txs.last()
            {
                return Err("the two sides closed with different transactions".into());
            }
            for i in 0..2 {
                let (me, _) = self.nodes(i);
                let s = me.ch.shutdown_state();
                if s.local_script() != Some(Self::script(i).as_script())
                    || s.remote_script() != Some(Self::script(1 - i).as_script())
                {
                    return Err(format!(
                        "{} did not complete the shutdown exchange",
                        me.name
                    ));
                }
            }
        }
        // Final balances: start plus fulfilled received minus fulfilled sent.
        let paid = |n: &Node| -> u64 {
            n.resolved
                .iter()
                .filter(|(_, o)| **o == Outcome::Fulfilled)
                .map(|(id, _)| n.sent[id].amount_msat)
                .sum()
        };
        let (a_paid, b_paid) = (paid(&self.a), paid(&self.b));
        let mut htlcs = Vec::new();
        let a = self.a.ch.book().view(View::LocalCurrent, &mut htlcs);
        let b = self.b.ch.book().view(View::LocalCurrent, &mut htlcs);
        let expect_a = (self.a_start_msat + b_paid)
            .checked_sub(a_paid)
            .ok_or("A paid more than it had")?;
        if a.to_local_msat != expect_a || b.to_remote_msat != expect_a {
            return Err(format!(
                "final balance of A: {} / {} msat, expected {expect_a}",
                a.to_local_msat, b.to_remote_msat
            ));
        }
        Ok(())
    }
}

/// Coverage counters summed over a run, printed so a sim that stopped
/// exercising anything is noticed.
#[derive(Default, Debug)]
struct Stats {
    htlcs: usize,
    fulfilled: usize,
    failed: usize,
    commitments_compared: usize,
    max_in_flight: usize,
    failed_for_dust: usize,
    disconnects: usize,
    hostile_messages: usize,
    restarts: usize,
    round_trips: usize,
    /// Seeds that ended with both shutdowns exchanged.
    shutdowns: usize,
    /// Closing transactions reported (both sides counted).
    closing_txs: usize,
    /// Seeds that closed with `option_simple_close`.
    simple_closes: usize,
}

/// A reported closing transaction spends the funding output with two
/// valid funding signatures and pays each side at most its balance.
fn check_closing_tx(ch: &Channel, tx: &bitcoin::Transaction) -> Result<(), String> {
    let secp = Secp256k1::verification_only();
    let params = ch.params();
    if tx.input.len() != 1 || tx.input[0].previous_output != params.funding_outpoint() {
        return Err("closing transaction does not spend the funding output".into());
    }
    let w = &tx.input[0].witness;
    if w.len() != 4 || w.last() != Some(params.funding_script().as_bytes()) {
        return Err("closing transaction witness is not a 2-of-2 spend".into());
    }
    let msg = lnhub_tx::sighash::funding_input(tx, params);
    let keys = [
        params.side(Side::Local).pubkeys.funding_pubkey,
        params.side(Side::Remote).pubkeys.funding_pubkey,
    ];
    let mut ok = 0;
    for element in [w.nth(1), w.nth(2)] {
        let der = element.ok_or("missing signature")?;
        let der = der.split_last().ok_or("empty signature")?.1;
        let sig = secp256k1::ecdsa::Signature::from_der(der).map_err(|e| e.to_string())?;
        if keys
            .iter()
            .any(|k| secp.verify_ecdsa(&msg, &sig, k).is_ok())
        {
            ok += 1;
        }
    }
    if ok != 2 {
        return Err(format!(
            "closing transaction has {ok} valid signatures of 2"
        ));
    }
    let mut htlcs = Vec::new();
    let view = ch.book().view(View::LocalCurrent, &mut htlcs);
    for (side, script) in [
        (Side::Local, ch.shutdown_state().local_script()),
        (Side::Remote, ch.shutdown_state().remote_script()),
    ] {
        let paid: u64 = tx
            .output
            .iter()
            .filter(|o| Some(o.script_pubkey.as_script()) == script)
            .map(|o| o.value.to_sat())
            .sum();
        if paid > view.balance_of(side) / 1000 {
            return Err(format!(
                "closing transaction pays {side:?} more than it has"
            ));
        }
    }
    Ok(())
}

impl Stats {
    /// Adds another run's counters (maxima for `max_in_flight`).
    fn add(&mut self, o: &Stats) {
        self.htlcs += o.htlcs;
        self.fulfilled += o.fulfilled;
        self.failed += o.failed;
        self.commitments_compared += o.commitments_compared;
        self.max_in_flight = self.max_in_flight.max(o.max_in_flight);
        self.failed_for_dust += o.failed_for_dust;
        self.disconnects += o.disconnects;
        self.hostile_messages += o.hostile_messages;
        self.restarts += o.restarts;
        self.round_trips += o.round_trips;
        self.shutdowns += o.shutdowns;
        self.closing_txs += o.closing_txs;
        self.simple_closes += o.simple_closes;
    }
}

/// The channel's record.
fn encode(ch: &Channel) -> Vec<u8> {
    let mut out = Vec::new();
    ch.encode(&mut out);
    out
}

/// `decode(encode(ch)) == ch`, field for field.
fn round_trip(ch: &Channel, record: &[u8]) -> Result<(), String> {
    let back = Channel::decode(record).map_err(|e| format!("record does not decode: {e}"))?;
    if back != *ch {
        return Err(format!(
            "record decodes to a different channel:\n{back:?}\nvs\n{ch:?}"
        ));
    }
    Ok(())
}

/// A short description of a message for traces.
fn msg_name(m: &Message) -> String {
    match m {
        Message::UpdateAddHtlc(m) => format!("add {} {}", m.id, m.amount_msat),
        Message::UpdateFulfillHtlc(m) => format!("fulfill {}", m.id),
        Message::UpdateFailHtlc(m) => format!("fail {}", m.id),
        Message::UpdateFailMalformedHtlc(m) => format!("malformed {}", m.id),
        Message::UpdateFee(m) => format!("fee {}", m.feerate_per_kw),
        Message::CommitmentSigned(m) => {
            format!("commitment_signed ({} htlcs)", m.htlc_signature.len())
        }
        Message::RevokeAndAck(_) => "revoke_and_ack".into(),
        Message::ChannelReestablish(m) => format!(
            "reestablish nc {} nr {}",
            m.next_commitment_number, m.next_revocation_number
        ),
        other => format!("{}", other.msg_type()),
    }
}

fn run(seed: u64, stats: &mut Stats) -> Result<(), String> {
    let secp = Secp256k1::new();
    let mut rng = Rng::new(seed);
    let channel_type = if rng.chance(1, 2) {
        ChannelType::Anchors
    } else {
        ChannelType::StaticRemoteKey
    };
    let mut agreement = Agreement::default_for(channel_type);
    agreement.feerate_per_kw = rng.range(253, 5_000) as u32;
    agreement.limits_a.max_accepted_htlcs = rng.range(3, 40) as u16;
    agreement.limits_b.max_accepted_htlcs = rng.range(3, 40) as u16;
    agreement.dust_limit_a = rng.range(354, 3_000);
    agreement.dust_limit_b = rng.range(354, 3_000);
    let (funder, fundee) = if rng.chance(1, 2) {
        let scid_alias = rng.chance(1, 2);
        establish_pair(&secp, seed, &agreement, scid_alias)
    } else {
        let terms = ShutdownTerms {
            option_simple_close: rng.chance(1, 2),
            ..ShutdownTerms::default()
        };
        pair_with_terms(&secp, seed, &agreement, terms.clone(), terms)
    };
    let funder_is_a = rng.chance(1, 2);
    let (a, b) = if funder_is_a {
        (funder, fundee)
    } else {
        (fundee, funder)
    };
    let funder_msat = agreement.funding_sat * 1000 - agreement.push_msat;
    let a_start_msat = if funder_is_a {
        funder_msat
    } else {
        agreement.push_msat
    };
    let mut sim = Sim {
        secp,
        rng,
        a: Node::new("A", a),
        b: Node::new("B", b),
        compared: BTreeSet::new(),
        onion: [0; ONION_PACKET_LEN],
        disconnects: 0,
        hostile_messages: 0,
        restarts: 0,
        round_trips: 0,
        funder: if funder_is_a { 0 } else { 1 },
        a_start_msat,
    };
    for _ in 0..STEPS {
        sim.step()?;
        stats.max_in_flight = stats.max_in_flight.max(sim.a.ch.book().htlcs().len());
    }
    sim.drain()?;
    for n in [&sim.a, &sim.b] {
        stats.htlcs += n.sent.len();
        stats.fulfilled += n
            .resolved
            .values()
            .filter(|o| **o == Outcome::Fulfilled)
            .count();
        stats.failed += n
            .resolved
            .values()
            .filter(|o| **o == Outcome::Failed)
            .count();
    }
    stats.commitments_compared += sim.compared.len();
    stats.disconnects += sim.disconnects;
    stats.hostile_messages += sim.hostile_messages;
    stats.restarts += sim.restarts;
    stats.round_trips += sim.round_trips;
    stats.failed_for_dust += sim.a.must_fail.len() + sim.b.must_fail.len();
    stats.shutdowns += usize::from(sim.a.ch.is_shutting_down());
    stats.closing_txs += sim.a.closing_txs.len() + sim.b.closing_txs.len();
    stats.simple_closes +=
        usize::from(sim.a.ch.shutdown_terms().option_simple_close && !sim.a.closing_txs.is_empty());
    Ok(())
}

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("SIM_SEED") {
        return vec![s.parse().expect("SIM_SEED is a u64")];
    }
    let n = std::env::var("SIM_SEEDS")
        .ok()
        .map(|s| s.parse().expect("SIM_SEEDS is a count"))
        .unwrap_or(DEFAULT_SEEDS);
    let start = std::env::var("SIM_SEED_START")
        .ok()
        .map(|s| s.parse().expect("SIM_SEED_START is a u64"))
        .unwrap_or(0);
    (start..start + n).collect()
}

/// Runs `seeds`, returning the failing ones.
fn run_all(seeds: &[u64], stats: &mut Stats) -> Vec<u64> {
    let mut failures = Vec::new();
    for &seed in seeds {
        if let Err(e) = run(seed, stats) {
            eprintln!("sim seed {seed} failed: {e} (rerun with SIM_SEED={seed})");
            failures.push(seed);
        }
    }
    failures
}

/// Every seed runs alone and deterministically; the seeds are spread over
/// the machine's cores.
#[test]
fn two_channels_agree_under_random_interleavings() {
    let seeds = seeds();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = seeds.len().div_ceil(threads).max(1);
    let results: Vec<(Vec<u64>, Stats)> = std::thread::scope(|s| {
        let handles: Vec<_> = seeds
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let mut stats = Stats::default();
                    let failures = run_all(part, &mut stats);
                    (failures, stats)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a sim thread panicked"))
            .collect()
    });
    let mut failures = Vec::new();
    let mut stats = Stats::default();
    for (f, st) in results {
        failures.extend(f);
        stats.add(&st);
    }
    eprintln!("sim coverage over {} seeds: {stats:?}", seeds.len());
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
}
