//! Forwarding: HTLCs that became irrevocably committed are peeled in one batch and decided;
//! accepted ones go to the outgoing channel's shard, which adds them (or refuses them with the
//! exact BOLT 4 failure); resolutions travel back to the incoming channel, and forward links
//! are kept (durably) until the incoming side is resolved.

use super::*;

impl Shard {
    /// Peels every HTLC that became irrevocably committed, in one rayon batch, and decides.
    pub(super) fn peel_and_decide(&mut self, io: &mut dyn Io) {
        if self.to_peel.is_empty() {
            return;
        }
        let mut work = std::mem::take(&mut self.to_peel);
        // An HTLC already being resolved is not forwarded again: after a restart its incoming
        // channel re-reports it while its forward's stored resolution settles it; handed off
        // after that, its outgoing shard (whose link may be gone) would take it for new.
        let slots = &self.slots;
        work.retain(|w| {
            slots.get(&w.channel_id).is_some_and(|s| {
                s.channel
                    .book()
                    .htlc(lnhub_tx::Side::Remote, w.htlc_id)
                    .is_some_and(|h| h.removal.is_none())
            })
        });
        if work.is_empty() {
            return;
        }
        self.peel_slots.resize_with(work.len(), PeelSlot::default);
        {
            let slots = &self.slots;
            let inputs: Vec<PeelInput<'_>> = work
                .iter()
                .filter_map(|w| {
                    let onion = slots.get(&w.channel_id)?.channel.inbound_onion(w.htlc_id)?;
                    Some(PeelInput {
                        packet: onion,
                        payment_hash: &w.payment_hash.0,
                        path_key: None,
                    })
                })
                .collect();
            assert_eq!(
                inputs.len(),
                work.len(),
                "an HTLC reported for forwarding keeps its onion"
            );
            peel_batch(
                &self.secp,
                &self.config.node_secret,
                &inputs,
                &mut self.peel_slots[..work.len()],
            );
        }
        self.counters.onions_peeled_total += work.len() as u64;
        self.counters.peel_batch.observe(work.len() as u64);
        // The hub's replay set is asked once for the whole batch: every onion that peeled.
        let mut onions = std::mem::take(&mut self.replay_queries);
        onions.clear();
        onions.extend(
            work.iter()
                .zip(&self.peel_slots)
                .filter(|(_, slot)| slot.result.is_ok())
                .map(|(w, slot)| {
                    let hop = &slot.hop;
                    (*hop.shared_secret(), hop.replay_expiry(w.cltv_expiry))
                }),
        );
        let mut verdicts = std::mem::take(&mut self.replay_verdicts);
        io.check_replays(&onions, &mut verdicts);
        let mut verdicts_iter = verdicts.drain(..);
        for (i, w) in work.iter().enumerate() {
            let slot = &self.peel_slots[i];
            let origin = Origin {
                shard: self.config.index,
                channel_id: w.channel_id,
                htlc_id: w.htlc_id,
            };
            let hop = match &slot.result {
                Err(OnionFailure::Malformed {
                    failure_code,
                    sha256_of_onion,
                    ..
                }) => {
                    let (code, hash) = (*failure_code, *sha256_of_onion);
                    self.fail_incoming_malformed(w.channel_id, w.htlc_id, hash, code);
                    continue;
                }
                Err(OnionFailure::Fail {
                    shared_secret,
                    message,
                    ..
                }) => {
                    let (ss, message) = (*shared_secret, message.clone());
                    self.fail_incoming_here(w.channel_id, w.htlc_id, Some(ss), message);
                    continue;
                }
                Ok(()) => &slot.hop,
            };
            let shared_secret = *hop.shared_secret();
            // BOLT 4: an onion seen before is refused. Expiries the forward decision rejects
            // anyway (too soon, too far) are left to it.
            let expiry = hop.replay_expiry(w.cltv_expiry);
            let replays_before = self.replays_seen.len();
            let verdict = verdicts_iter
                .next()
                .expect("one replay verdict per peeled onion");
            match verdict {
                // Recorded with this shard's next commit, which a failure or a forward within
                // the shard waits for; a forward handed to another shard takes the entry along,
                // to be written with its outgoing HTLC (below).
                Ok(()) => self.replays_seen.push((
                    expiry,
                    ReplaySet::tag(&shared_secret),
                    w.channel_id,
                    w.htlc_id,
                )),
                Err(ReplayError::AlreadyExpired) | Err(ReplayError::TooFarAhead) => {}
                // The HTLC that first carried the onion, reported again after a restart.
                Err(ReplayError::Replayed)
                    if self
                        .restored_replays
                        .get(&ReplaySet::tag(&shared_secret))
                        .is_some_and(|first| *first == (w.channel_id, w.htlc_id)) => {}
                Err(ReplayError::Replayed) | Err(ReplayError::Full) => {
                    self.counters.replays_refused_total += 1;
                    let failure = FailureMessage::TemporaryNodeFailure;
                    self.fail_incoming_here(w.channel_id, w.htlc_id, Some(shared_secret), failure);
                    continue;
                }
            }
            let action = match hop.instructions(w.amount_msat, w.cltv_expiry) {
                Ok(action) => action,
                Err(OnionFailure::Malformed {
                    failure_code,
                    sha256_of_onion,
                    ..
                }) => {
                    self.fail_incoming_malformed(
                        w.channel_id,
                        w.htlc_id,
                        sha256_of_onion,
                        failure_code,
                    );
                    continue;
                }
                Err(OnionFailure::Fail { message, .. }) => {
                    self.fail_incoming_here(w.channel_id, w.htlc_id, Some(shared_secret), message);
                    continue;
                }
            };
            self.incoming
                .insert((w.channel_id, w.htlc_id), (shared_secret, self.clock));
            let forward = match action {
                HopAction::Forward(f) => f,
                HopAction::Receive(_) => {
                    // lnhub is a hub: it issues no invoices, so it is never a payee.
                    let failure = FailureMessage::IncorrectOrUnknownPaymentDetails {
                        htlc_msat: w.amount_msat,
                        height: self.height,
                    };
                    self.fail_incoming_here(w.channel_id, w.htlc_id, Some(shared_secret), failure);
                    continue;
                }
            };
            let route = forward
                .short_channel_id
                .and_then(|scid| self.routes.get(&scid).copied());
            let (Some(route), Some(scid)) = (route, forward.short_channel_id) else {
                self.fail_incoming_here(
                    w.channel_id,
                    w.htlc_id,
                    Some(shared_secret),
                    FailureMessage::UnknownNextPeer,
                );
                continue;
            };
            let next = hop.next_packet().expect("a forward hop has a next packet");
            let replay =
                if route.shard != self.config.index && self.replays_seen.len() > replays_before {
                    self.replays_seen
                        .pop()
                        .map(|(expiry, tag, ..)| (expiry, tag))
                } else {
                    None
                };
            let handoff = HandOff {
                replay,
                origin,
                out_channel_id: route.channel_id,
                request: Request {
                    incoming_amount_msat: w.amount_msat,
                    incoming_cltv_expiry: w.cltv_expiry,
                    short_channel_id: scid,
                    amt_to_forward: forward.amt_to_forward,
                    outgoing_cltv_value: forward.outgoing_cltv_value,
                    blinded: None,
                },
                payment_hash: w.payment_hash,
                onion: *next,
                committed_at: self.clock,
            };
            if route.shard == self.config.index {
                self.pending.push_back(Input::Add(handoff));
            } else {
                io.to_shard(route.shard, Input::Add(handoff));
            }
        }
        drop(verdicts_iter);
        self.replay_queries = onions;
        self.replay_verdicts = verdicts;
    }

    /// Logs an incoming HTLC of this shard that the hub fails itself.
    pub(super) fn log_failed_here(
        &mut self,
        channel_id: ChannelId,
        htlc_id: u64,
        failure_code: u16,
    ) {
        let in_amount_msat = self
            .slots
            .get(&channel_id)
            .and_then(|s| s.channel.book().htlc(lnhub_tx::Side::Remote, htlc_id))
            .map_or(Msat(0), |h| h.amount_msat);
        self.log_forward(crate::forwards::refused(
            channel_id,
            htlc_id,
            in_amount_msat,
            self.now,
            ForwardOutcome::FailedHere { failure_code },
        ));
    }

    /// Fails an incoming HTLC of this shard whose onion we could not parse
    /// (`update_fail_malformed_htlc`: no shared secret is needed, the peer builds the failure),
    /// counted and logged like any failure of ours.
    pub(super) fn fail_incoming_malformed(
        &mut self,
        channel_id: ChannelId,
        htlc_id: u64,
        sha256_of_onion: [u8; 32],
        failure_code: u16,
    ) {
        self.counters.forwards_failed_total += 1;
        self.log_failed_here(channel_id, htlc_id, failure_code);
        self.pending.push_back(Input::Resolve {
            channel_id,
            htlc_id,
            upstream: Upstream::FailedHereMalformed {
                sha256_of_onion,
                failure_code,
            },
            link: None,
        });
    }

    /// Fails an incoming HTLC of this shard with a failure we create.
    pub(super) fn fail_incoming_here(
        &mut self,
        channel_id: ChannelId,
        htlc_id: u64,
        ss: Option<[u8; 32]>,
        failure: FailureMessage,
    ) {
        if let Some(ss) = ss {
            self.incoming
                .insert((channel_id, htlc_id), (ss, self.clock));
        }
        self.counters.forwards_failed_total += 1;
        self.log_failed_here(channel_id, htlc_id, failure.failure_code());
        let upstream = Upstream::FailedHere(failure);
        self.pending.push_back(Input::Resolve {
            channel_id,
            htlc_id,
            upstream,
            link: None,
        });
    }

    /// The outgoing shard's half of a forward: apply the outgoing channel's policy and add.
    pub(super) fn add_outgoing(&mut self, h: HandOff) {
        if let Some((expiry, tag)) = h.replay {
            self.replays_seen
                .push((expiry, tag, h.origin.channel_id, h.origin.htlc_id));
        }
        if self.origins.contains(&h.origin) {
            // Already forwarded: a restart re-reported the incoming HTLC.
            return;
        }
        let bounce = |shard: &mut Shard, upstream: Upstream| {
            shard.counters.forwards_failed_total += 1;
            shard.log_forward(crate::forwards::refused(
                h.origin.channel_id,
                h.origin.htlc_id,
                h.request.incoming_amount_msat,
                shard.now,
                crate::forwards::outcome_of(&upstream),
            ));
            // The refusal goes upstream once its log entry is durable (another shard's
            // batches are not ordered with this one's).
            let input = Input::Resolve {
                channel_id: h.origin.channel_id,
                htlc_id: h.origin.htlc_id,
                upstream,
                link: None,
            };
            if h.origin.shard == shard.config.index {
                shard.pending.push_back(input);
            } else {
                shard.held.push((h.origin.shard, input));
            }
        };
        let Some(slot) = self.slots.get_mut(&h.out_channel_id) else {
            return bounce(self, Upstream::FailedHere(FailureMessage::UnknownNextPeer));
        };
        let view = OutgoingChannel {
            short_channel_id: slot.scid,
            policy: slot.policy,
            disabled: slot.disabled,
            usable: slot.connected && slot.channel.is_operational(),
            // The channel itself checks liquidity, reserve, dust and slots when the HTLC is
            // added; a refusal there is reported as temporary_channel_failure below.
            available_msat: Msat(u64::MAX),
            free_htlc_slots: u16::MAX,
        };
        match decide(
            &h.request,
            Some(&view),
            self.height,
            self.now,
            &self.config.limits,
        ) {
            Decision::Forward {
                amount_msat,
                cltv_expiry,
                ..
            } => {
                match slot
                    .channel
                    .send_add_htlc(amount_msat, h.payment_hash, cltv_expiry, &h.onion)
                {
                    Ok(out_htlc_id) => {
                        let link = ForwardLink {
                            out_channel_id: h.out_channel_id,
                            out_htlc_id,
                            origin: h.origin,
                            in_amount_msat: h.request.incoming_amount_msat,
                            out_amount_msat: amount_msat,
                            added_at: self.now,
                            resolution: None,
                        };
                        self.links
                            .insert((h.out_channel_id, out_htlc_id), link.clone());
                        self.origins.insert(h.origin);
                        self.new_links.push(link);
                        self.touched.insert(h.out_channel_id);
                        self.counters.forwards_total += 1;
                        let latency = self.clock.saturating_sub(h.committed_at);
                        self.counters.forward_add_nanos.observe(latency);
                    }
                    Err(e) => {
                        log::debug!("forward to {}: channel refused: {e:?}", h.out_channel_id);
                        let failure = FailureMessage::TemporaryChannelFailure {
                            channel_update: Vec::new(),
                        };
                        bounce(self, Upstream::FailedHere(failure))
                    }
                }
            }
            Decision::Fail(failure) => bounce(self, Upstream::FailedHere(failure)),
            Decision::FailMalformed {
                failure_code,
                sha256_of_onion,
            } => bounce(
                self,
                Upstream::FailedHereMalformed {
                    sha256_of_onion,
                    failure_code,
                },
            ),
        }
    }

    /// An outgoing HTLC of ours resolved: pass it upstream.
    pub(super) fn resolved_outgoing(
        &mut self,
        channel_id: ChannelId,
        htlc_id: u64,
        resolution: RemovalKind,
        io: &mut dyn Io,
    ) {
        let Some(link) = self.links.get_mut(&(channel_id, htlc_id)) else {
            log::warn!("channel {channel_id}: HTLC {htlc_id} resolved with no forward link");
            return;
        };
        let upstream = match resolution {
            RemovalKind::Fulfill(payment_preimage) => Upstream::Fulfilled(payment_preimage),
            RemovalKind::Fail(reason) => Upstream::FailedDownstream(reason),
            RemovalKind::FailMalformed {
                sha256_of_onion,
                failure_code,
            } => Upstream::FailedMalformed {
                sha256_of_onion,
                failure_code,
            },
        };
        // Durable with the outgoing channel's write that reports it (same commit).
        link.resolution = Some(upstream.clone());
        let origin = link.origin;
        self.new_links.push(link.clone());
        let link_key = Some((self.config.index, channel_id, htlc_id));
        self.send_upstream(origin, upstream, link_key, io);
    }

    pub(super) fn send_upstream(
        &mut self,
        origin: Origin,
        upstream: Upstream,
        link: Option<LinkKey>,
        io: &mut dyn Io,
    ) {
        let input = Input::Resolve {
            channel_id: origin.channel_id,
            htlc_id: origin.htlc_id,
            upstream,
            link,
        };
        if origin.shard == self.config.index {
            self.pending.push_back(input);
        } else {
            io.to_shard(origin.shard, input);
        }
    }

    /// The incoming shard's half of a resolution: settle or fail the incoming HTLC.
    pub(super) fn resolve_incoming(
        &mut self,
        channel_id: ChannelId,
        htlc_id: u64,
        upstream: Upstream,
        link: Option<LinkKey>,
        io: &mut dyn Io,
    ) {
        let Some(slot) = self.slots.get_mut(&channel_id) else {
            log::warn!("resolution for unknown channel {channel_id}");
            return;
        };
        // After a restart the shared secret is gone from memory: peel the kept onion again.
        let (ss, committed_at) = match self.incoming.get(&(channel_id, htlc_id)) {
            Some((ss, at)) => (Some(*ss), Some(*at)),
            None => (
                repeel(&self.secp, &self.config.node_secret, &slot.channel, htlc_id),
                None,
            ),
        };
        let packet = &mut self.packet;
        let result = match &upstream {
            Upstream::Fulfilled(preimage) => slot.channel.send_fulfill_htlc(htlc_id, *preimage),
            Upstream::FailedHereMalformed {
                sha256_of_onion,
                failure_code,
            } => slot
                .channel
                .send_fail_malformed_htlc(htlc_id, *sha256_of_onion, *failure_code),
            failure => {
                let Some(ss) = ss else {
                    log::error!(
                        "channel {channel_id}: no shared secret for HTLC {htlc_id}; cannot fail it"
                    );
                    return;
                };
                match failure {
                    Upstream::FailedDownstream(reason) => {
                        packet.clear();
                        packet.extend_from_slice(reason);
                        obfuscate_error_packet(&ss, packet);
                    }
                    Upstream::FailedMalformed {
                        sha256_of_onion,
                        failure_code,
                    } => {
                        if malformed_to_error_packet(&ss, *failure_code, *sha256_of_onion, packet)
                            .is_err()
                        {
                            // Downstream sent a code without BADONION: report it as ours.
                            let f = Failure::new(FailureMessage::TemporaryChannelFailure {
                                channel_update: Vec::new(),
                            });
                            create_error_packet(&ss, &f, packet).expect("a short failure fits");
                        }
                    }
                    Upstream::FailedHere(message) => {
                        let f = Failure::new(message.clone());
                        create_error_packet(&ss, &f, packet)
                            .expect("our failures fit a u16 length");
                    }
                    Upstream::Fulfilled(_) | Upstream::FailedHereMalformed { .. } => {
                        unreachable!("matched above")
                    }
                }
                slot.channel.send_fail_htlc(htlc_id, packet.clone())
            }
        };
        match result {
            Ok(()) => {
                // Measured from the commitment this process saw (none after a restart).
                let latency = committed_at.map(|at| self.clock.saturating_sub(at));
                if matches!(upstream, Upstream::Fulfilled(_)) {
                    self.counters.fulfills_total += 1;
                    if let Some(l) = latency {
                        self.counters.forward_settle_nanos.observe(l);
                    }
                } else if let Some(l) = latency {
                    self.counters.forward_fail_nanos.observe(l);
                }
                self.incoming.remove(&(channel_id, htlc_id));
                self.touched.insert(channel_id);
                if let Some(link) = link {
                    self.hold_link_done(link);
                }
            }
            Err(SendError::UnknownHtlc) => {
                // Already resolved (a restart re-reported it): nothing left to do.
                self.incoming.remove(&(channel_id, htlc_id));
                if let Some(link) = link {
                    self.hold_link_done(link);
                }
            }
            Err(SendError::NotOperational) => {
                // Peer away: keep it and retry when the channel is back.
                log::debug!("channel {channel_id}: resolution of HTLC {htlc_id} parked");
                slot.parked.push((htlc_id, upstream, link));
            }
            Err(e) => log::error!("channel {channel_id}: cannot resolve HTLC {htlc_id}: {e:?}"),
        }
        let _ = io;
    }

    /// The outgoing shard may forget the forward link once this shard's next batch (with the
    /// incoming HTLC's resolution) is durable.
    pub(super) fn hold_link_done(&mut self, (shard, channel_id, htlc_id): LinkKey) {
        self.held.push((
            shard,
            Input::LinkDone {
                channel_id,
                htlc_id,
            },
        ));
    }

    pub(super) fn retry_parked(&mut self, io: &mut dyn Io) {
        let ids: Vec<ChannelId> = self
            .slots
            .iter()
            .filter(|(_, s)| !s.parked.is_empty() && s.channel.is_operational())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let parked = std::mem::take(&mut self.slots.get_mut(&id).expect("listed").parked);
            for (htlc_id, upstream, link) in parked {
                self.resolve_incoming(id, htlc_id, upstream, link, io);
            }
        }
    }
}

/// The shared secret of an incoming HTLC, from its onion (kept by the channel while the HTLC
/// is in flight); `None` if the onion does not peel (it was failed as malformed).
fn repeel(
    secp: &Secp256k1<All>,
    node_secret: &SecretKey,
    channel: &Channel,
    htlc_id: u64,
) -> Option<[u8; 32]> {
    let htlc = channel.book().htlc(lnhub_tx::Side::Remote, htlc_id)?;
    let mut hop = lnhub_onion::PeeledHop::new();
    lnhub_onion::peel(
        secp,
        node_secret,
        &htlc.onion_routing_packet,
        &htlc.payment_hash.0,
        None,
        &mut hop,
    )
    .ok()?;
    Some(*hop.shared_secret())
}
