//! The payment phase: every established node driven by a few event-loop threads ([`drive`]),
//! not a thread each, so that thousands of peers cost the generator what their payments
//! cost rather than thousands of threads' scheduling.
//!
//! A worker owns its nodes' sockets (non-blocking, registered with one `mio::Poll`). On each
//! wake-up it reads what arrived for the nodes the poll names and hands it to their channels,
//! then, for those nodes (and for every node at each tick), offers new payments (closed loop:
//! up to `in_flight` outstanding; open loop: what the schedule says is due), signs, acts on
//! the channels' effects and writes what they have to send. A socket whose buffer is full is
//! written again once the poll says it is writable; a connection that wanted no more input
//! for a while is read again on the next pass.

use std::os::fd::AsRawFd;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::*;

/// How long a worker waits for its sockets in closed loop before it looks at the run's flags.
const CLOSED_LOOP_TICK: Duration = Duration::from_millis(50);
/// The same in open loop: the send schedule is kept to the millisecond.
const OPEN_LOOP_TICK: Duration = Duration::from_millis(1);

/// One node paying its partner and being paid, driven by a worker ([`drive`]).
pub struct Payer {
    node: Node,
    channel: Channel,
    partner_alias: ShortChannelId,
    /// What we offer the hub per payment: the amount and the hub's fee to the partner.
    offered: Msat,
    /// Our HTLCs' expiry: the final hop's plus the hub's delta to the partner.
    cltv: u32,
    report: NodeReport,
    outgoing: HashMap<u64, Outgoing>,
    counter: u64,
    onion: Box<OnionPacket>,
    payloads: (Vec<u8>, Vec<u8>),
    started: Instant,
    offered_total: u64,
    /// Output waits for the socket to take it.
    blocked: bool,
    /// The connection stopped reading before the socket was drained.
    unread: bool,
}

impl Payer {
    /// Node `established`, once every node has its channel (the partner's alias and the
    /// hub's policy towards it are known).
    pub fn new(established: Established) -> Result<Payer, String> {
        let Established {
            mut node,
            mut channel,
        } = established;
        let index = node.config.index;
        let partner = index ^ 1;
        let (partner_alias, policy) = node
            .shared
            .aliases
            .lock()
            .expect("aliases")
            .get(partner)
            .copied()
            .flatten()
            .ok_or_else(|| format!("node {index}: partner {partner} has no channel"))?;
        let amount = node.config.amount_msat;
        let offered = Msat(amount + policy.fee_msat(amount));
        let cltv = node.config.height + FINAL_CLTV_DELTA + u32::from(policy.cltv_expiry_delta);
        node.stream
            .set_nonblocking(true)
            .map_err(|e| format!("node {index}: {e}"))?;
        // What arrived during establishment goes first.
        for msg in std::mem::take(&mut node.pending) {
            channel
                .handle_message(&node.secp, msg)
                .and_then(|routed| routed.finish(&node.secp, &mut channel))
                .map_err(|e| format!("node {index}: the hub's message: {e:?}"))?;
        }
        Ok(Payer {
            node,
            channel,
            partner_alias,
            offered,
            cltv,
            report: NodeReport {
                latency_us: Histogram::new_with_bounds(1, 600_000_000, 3)
                    .expect("histogram bounds"),
                failures: BTreeMap::new(),
                bad_preimages: 0,
                unknown_payments: 0,
            },
            outgoing: HashMap::new(),
            counter: 0,
            onion: Box::new([0u8; ONION_PACKET_LEN]),
            payloads: (Vec::new(), Vec::new()),
            started: Instant::now(),
            offered_total: 0,
            blocked: false,
            unread: false,
        })
    }

    /// Whether the run is over for this node: told to exit with nothing outstanding.
    fn finished(&self) -> bool {
        let shared = &self.node.shared;
        shared.stop.load(Ordering::Relaxed)
            && shared.exit.load(Ordering::Relaxed)
            && self.outgoing.is_empty()
    }

    /// Offers what the loop allows and the channel can carry, then signs, acts on the
    /// effects and writes.
    fn step(&mut self) -> Result<(), String> {
        self.take_events()?;
        let stop = self.node.shared.stop.load(Ordering::Relaxed);
        let (limit, due) = match self.node.config.rate {
            None => (self.node.config.in_flight, u64::MAX),
            Some(rate) => (
                MAX_HTLCS,
                (self.started.elapsed().as_secs_f64() * rate) as u64,
            ),
        };
        while !stop && self.outgoing.len() < limit && self.offered_total < due {
            self.counter += 1;
            let node = &self.node;
            let preimage = hash(&[
                b"preimage",
                &node.config.secret.secret_bytes(),
                &self.counter.to_be_bytes(),
            ]);
            let payment_hash = hash(&[&preimage]);
            let session_key = key_from(hash(&[b"session", &preimage]));
            let secrets = build_payment_onion(
                &node.secp,
                &session_key,
                &node.config,
                (&node.config.hub_id, self.partner_alias),
                &node.config.partner,
                &payment_hash,
                &mut self.payloads,
                &mut self.onion,
            )?;
            let hash = PaymentHash(payment_hash);
            match self
                .channel
                .send_add_htlc(self.offered, hash, self.cltv, &self.onion)
            {
                Ok(htlc_id) => {
                    self.offered_total += 1;
                    let shared = &self.node.shared;
                    shared.remember(payment_hash, preimage);
                    shared.outstanding.fetch_add(1, Ordering::Relaxed);
                    self.outgoing.insert(
                        htlc_id,
                        Outgoing {
                            hash: payment_hash,
                            started: Instant::now(),
                            measured: shared.measuring.load(Ordering::Relaxed),
                            secrets,
                        },
                    );
                }
                // Not now (our balance, the HTLC count): the partner's payments will make
                // room.
                Err(_) => break,
            }
        }
        self.node
            .settle_effects(&mut self.channel, &mut self.outgoing, &mut self.report)?;
        self.write()
    }

    /// Reads what the socket holds (until it would block, or the connection wants no more
    /// for now) and hands the hub's messages to the channel.
    fn read(&mut self) -> Result<(), String> {
        let index = self.node.config.index;
        loop {
            if !self.node.conn.wants_read() {
                self.unread = true;
                break;
            }
            match self.node.stream.read(&mut self.node.read_buf) {
                Ok(0) => return Err(format!("node {index}: the hub closed the connection")),
                Ok(n) => self.node.conn.receive(&self.node.read_buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.unread = false;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("node {index}: read: {e}")),
            }
            self.take_events()?;
        }
        self.take_events()
    }

    /// The connection's events: our channel's messages to the channel; a close or an
    /// `error` ends the node.
    fn take_events(&mut self) -> Result<(), String> {
        let index = self.node.config.index;
        let now = Instant::now();
        while let Some(event) = self.node.conn.poll(now, &mut self.node.scratch) {
            match event {
                // Only our channel's messages reach it.
                Event::Channel(msg) if msg.channel_id() == Some(self.channel.channel_id()) => {
                    self.channel
                        .handle_message(&self.node.secp, msg)
                        .and_then(|routed| routed.finish(&self.node.secp, &mut self.channel))
                        .map_err(|e| format!("node {index}: the hub's message: {e:?}"))?;
                }
                Event::Closed(why) => {
                    return Err(format!("node {index}: connection closed: {why}"));
                }
                Event::Error { data, .. } => {
                    return Err(format!(
                        "node {index}: the hub sent an error: {}",
                        String::from_utf8_lossy(&data)
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes what the connection has to send, as far as the socket takes it.
    fn write(&mut self) -> Result<(), String> {
        while !self.node.conn.output().is_empty() {
            match self.node.stream.write(self.node.conn.output()) {
                Ok(n) => self.node.conn.consume(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.blocked = true;
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("node {}: write: {e}", self.node.config.index)),
            }
        }
        self.blocked = false;
        Ok(())
    }
}

/// Drives `payers` until the run's `exit` flag and each has nothing outstanding: returns
/// their reports and the errors of those that failed (a failed node stops; the others go on).
pub fn drive(mut payers: Vec<Payer>) -> (Vec<NodeReport>, Vec<String>) {
    let mut errors = Vec::new();
    let mut poll = match Poll::new() {
        Ok(poll) => poll,
        Err(e) => return (Vec::new(), vec![format!("poll: {e}")]),
    };
    let mut live = vec![true; payers.len()];
    for (i, p) in payers.iter().enumerate() {
        let fd = p.node.stream.as_raw_fd();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = poll
            .registry()
            .register(&mut SourceFd(&fd), Token(i), interest)
        {
            errors.push(format!("node {}: poll: {e}", p.node.config.index));
            live[i] = false;
        }
    }
    let tick = match payers.first().and_then(|p| p.node.config.rate) {
        Some(_) => OPEN_LOOP_TICK,
        None => CLOSED_LOOP_TICK,
    };
    let mut events = Events::with_capacity(1024);
    let mut woken = vec![false; payers.len()];
    let mut last_sweep = Instant::now();
    loop {
        if let Err(e) = poll.poll(&mut events, Some(tick)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                errors.push(format!("poll: {e}"));
                break;
            }
        }
        woken.iter_mut().for_each(|w| *w = false);
        for event in events.iter() {
            let i = event.token().0;
            if live.get(i).copied().unwrap_or(false) {
                woken[i] = true;
                if event.is_readable() || event.is_read_closed() {
                    payers[i].unread = true;
                }
            }
        }
        // Every node at each tick (the flags, the open-loop schedule, the connection's
        // timers); otherwise those the poll named and those with bytes left either way.
        let sweep = last_sweep.elapsed() >= tick;
        if sweep {
            last_sweep = Instant::now();
        }
        for (i, p) in payers.iter_mut().enumerate() {
            if !live[i] || !(sweep || woken[i] || p.unread || p.blocked) {
                continue;
            }
            let result = if p.unread { p.read() } else { Ok(()) }.and_then(|()| p.step());
            if let Err(e) = result {
                errors.push(e);
                live[i] = false;
                let fd = p.node.stream.as_raw_fd();
                let _ = poll.registry().deregister(&mut SourceFd(&fd));
            }
        }
        if payers
            .iter()
            .zip(&live)
            .all(|(p, live)| !live || p.finished())
        {
            break;
        }
    }
    // Let the last revocations reach the hub.
    for (p, live) in payers.iter_mut().zip(&live) {
        if *live && p.node.stream.set_nonblocking(false).is_ok() {
            let _ = p.node.flush();
        }
    }
    (payers.into_iter().map(|p| p.report).collect(), errors)
}
