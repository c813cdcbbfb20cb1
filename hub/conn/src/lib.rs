//! One peer connection, from its first byte to its last, as a sans-IO state machine; and the
//! connection room's admission rules ([`admission`]).
//!
//! A [`Connection`] is what the event loop keeps per socket. Inside, it runs the BOLT 8
//! handshake ([`lnhub_noise`]), then BOLT 8 framing, then BOLT 1 ([`lnhub_peer`]). Everything
//! that decides what happens to a peer's bytes lives here, so it is tested without a socket;
//! the event loop only moves bytes, keeps time and hands channel messages to the shards.
//!
//! Call protocol:
//!
//! 1. [`Connection::inbound`] for an accepted socket, [`Connection::outbound`] for a dialled
//!    one (its act one is queued at once).
//! 2. While [`Connection::wants_read`], read at most [`READ_CHUNK`] bytes from the socket and
//!    pass them to [`Connection::receive`].
//! 3. Drain [`Connection::poll`] until it returns `None`; it decodes lazily, one handshake act
//!    or one message per step. A [`Event::Channel`] message the shard cannot take yet goes
//!    back with [`Connection::hold`]: nothing behind it is decoded until
//!    [`Connection::take_held`] returns it and the caller delivered it.
//! 4. Write [`Connection::output`] to the socket and report what was written with
//!    [`Connection::consume`]; then poll again (a drained backlog resumes decoding).
//! 5. Call [`Connection::handle_timeout`] at [`Connection::deadline`].
//! 6. After [`Event::Closed`] the caller closes the socket (flushing [`Connection::output`]
//!    first if it can: a final `warning` may be there).
//!
//! Back-pressure and bounds, per connection:
//!
//! - input: at most one read chunk waits undecoded, one frame in the decoder, one message
//!   held for a full shard; while a message is held or the backlog is above
//!   [`Limits::pause_reading_above`], nothing more is decoded and the socket is not read;
//! - output: above [`Limits::max_backlog`] unwritten bytes the connection is closed (the
//!   engine keeps producing for a peer that stops reading). A peer can make us write at most
//!   one message past the pause point ([`MAX_PONG_BYTES`](lnhub_peer::MAX_PONG_BYTES) per
//!   `ping`), since decoding stops there;
//! - so a connection holds at most [`MAX_FIXED_BYTES`] plus its backlog
//!   ([`Connection::memory`] says how much it holds now).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod admission;
mod fuzz;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use lnhub_metrics::labels::{message_index, MESSAGE_SLOTS};
use lnhub_noise::{
    InitiatorHandshake, ResponderAwaitingActThree, ResponderHandshake, Transport, ACT_ONE_LEN,
    ACT_THREE_LEN, ACT_TWO_LEN, MAX_FRAME_LEN, MAX_MESSAGE_LEN, RECEIVE_BUFFER_LEN,
};
use lnhub_peer::{DisconnectReason, Peer, PeerConfig, PeerEvent};
use lnhub_wire::features::Features;
use lnhub_wire::msgs::Message;
use lnhub_wire::types::ChannelId;
use secp256k1::{PublicKey, SecretKey};

#[doc(hidden)]
pub use fuzz::{fuzz_connection, FuzzOutcome};

/// Most bytes to pass to one [`Connection::receive`]: one full BOLT 8 frame.
pub const READ_CHUNK: usize = MAX_FRAME_LEN;

/// Bytes a connection holds apart from its output backlog, at most: the frame decoder's
/// buffer, one read chunk not yet decoded, one held message, and the handshake's acts.
pub const MAX_FIXED_BYTES: usize =
    RECEIVE_BUFFER_LEN + READ_CHUNK + MAX_MESSAGE_LEN + ACT_THREE_LEN + 1024;

/// Output capacity kept once a backlog is written: a burst's buffer is given back.
const KEEP_OUTPUT_CAPACITY: usize = 16 * 1024;

/// Time and size limits of one connection.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time allowed for the three BOLT 8 acts.
    pub handshake_timeout: Duration,
    /// Unwritten bytes above which nothing more is decoded and the socket is not read.
    pub pause_reading_above: usize,
    /// Unwritten bytes above which the connection is closed.
    pub max_backlog: usize,
}

/// Default [`Limits::handshake_timeout`]: an honest peer needs a few round trips.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`Limits::pause_reading_above`]: four largest frames, enough for any burst of
/// replies.
pub const PAUSE_READING_ABOVE: usize = 4 * MAX_FRAME_LEN;
/// Default [`Limits::max_backlog`]: room for a full channel's retransmission (483
/// `update_add_htlc` of 1,452 bytes each, ~700 KB) several times over.
pub const MAX_BACKLOG: usize = 4 << 20;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            handshake_timeout: HANDSHAKE_TIMEOUT,
            pause_reading_above: PAUSE_READING_ABOVE,
            max_backlog: MAX_BACKLOG,
        }
    }
}

/// Why a connection closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Close {
    /// The BOLT 8 handshake did not finish within [`Limits::handshake_timeout`].
    HandshakeTimeout,
    /// A handshake act failed its checks (wrong version, bad key, bad tag).
    Handshake(String),
    /// The encrypted framing failed (bad tag: the connection cannot continue).
    Transport(String),
    /// BOLT 1 decided to disconnect.
    Peer(DisconnectReason),
    /// The peer does not read what we send.
    Backlog {
        /// Unwritten bytes when the limit was hit.
        bytes: usize,
    },
}

impl std::fmt::Display for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Close::HandshakeTimeout => write!(f, "handshake timed out"),
            Close::Handshake(e) => write!(f, "handshake: {e}"),
            Close::Transport(e) => write!(f, "transport: {e}"),
            Close::Peer(reason) => write!(f, "{reason}"),
            Close::Backlog { bytes } => write!(f, "peer does not read: {bytes} bytes waiting"),
        }
    }
}

/// What the rest of the node must learn from a connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The BOLT 8 handshake completed: the peer proved it holds `node_id`'s key.
    Authenticated(PublicKey),
    /// `init` exchanged and features negotiated: channel messages may flow now.
    Ready {
        /// The peer's feature bits.
        features: Features,
        /// The features both sides use.
        negotiated: Features,
    },
    /// A BOLT 2 message for its channel's shard ([`Connection::hold`] it if the shard is full).
    Channel(Message),
    /// A BOLT 7 gossip message.
    Gossip(Message),
    /// The peer sent `error` for `channel_id` (all channels if zero).
    Error {
        /// The channel concerned.
        channel_id: ChannelId,
        /// The peer's text, for the log only.
        data: Vec<u8>,
    },
    /// The peer sent `warning`.
    Warning {
        /// The channel concerned (zero: the connection).
        channel_id: ChannelId,
        /// The peer's text.
        data: Vec<u8>,
    },
    /// The connection is over: close the socket.
    Closed(Close),
}

// One per connection, so the size difference costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
enum Phase {
    /// We dialled `remote`; act one is sent, act two awaited.
    AwaitingActTwo(InitiatorHandshake, PublicKey),
    /// Accepted; act one awaited.
    AwaitingActOne(ResponderHandshake),
    /// Act two sent; act three awaited.
    AwaitingActThree(ResponderAwaitingActThree),
    /// Authenticated: encrypted messages flow.
    Active { transport: Transport, peer: Peer },
    /// Closed: nothing more is decoded or sent.
    Closed,
}

/// One peer connection. See the module docs for the call protocol.
pub struct Connection {
    phase: Phase,
    /// When the handshake must be done.
    handshake_deadline: Instant,
    limits: Limits,
    peer_config: PeerConfig,
    node_id: Option<PublicKey>,
    /// Received bytes not yet decoded: `inbox[inbox_start..]`.
    inbox: Vec<u8>,
    inbox_start: usize,
    /// Encrypted bytes to write: `output[written..]`.
    output: Vec<u8>,
    written: usize,
    held: Option<Message>,
    /// At most a handful: one step's events (a message's, plus a close).
    events: VecDeque<Event>,
    counts: MessageCounts,
}

/// Messages a connection received and sent, by type
/// (`lnhub_metrics::labels::message_index`): plain counters the shell folds into the
/// metrics when they are scraped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageCounts {
    /// Received, per type slot.
    pub received: [u64; MESSAGE_SLOTS],
    /// Sent, per type slot.
    pub sent: [u64; MESSAGE_SLOTS],
}

impl Default for MessageCounts {
    fn default() -> MessageCounts {
        MessageCounts {
            received: [0; MESSAGE_SLOTS],
            sent: [0; MESSAGE_SLOTS],
        }
    }
}

impl MessageCounts {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &MessageCounts) {
        for (a, b) in self.received.iter_mut().zip(other.received) {
            *a += b;
        }
        for (a, b) in self.sent.iter_mut().zip(other.sent) {
            *a += b;
        }
    }
}

/// The type of an encoded message (its first two bytes).
fn type_slot(encoded: &[u8]) -> usize {
    match encoded {
        [a, b, ..] => message_index(u16::from_be_bytes([*a, *b])),
        _ => MESSAGE_SLOTS - 1,
    }
}

impl Connection {
    /// A connection we accepted, with `ephemeral` a fresh random key (BOLT 8).
    pub fn inbound(
        local: &SecretKey,
        ephemeral: &SecretKey,
        peer_config: PeerConfig,
        limits: Limits,
        now: Instant,
    ) -> Connection {
        let hs = ResponderHandshake::new(local, ephemeral);
        Connection::new(Phase::AwaitingActOne(hs), None, peer_config, limits, now)
    }

    /// A connection we dialled to `remote`, with `ephemeral` a fresh random key; act one is
    /// queued in [`Connection::output`].
    pub fn outbound(
        local: &SecretKey,
        remote: &PublicKey,
        ephemeral: &SecretKey,
        peer_config: PeerConfig,
        limits: Limits,
        now: Instant,
    ) -> Connection {
        let (hs, act_one) = InitiatorHandshake::new(local, remote, ephemeral);
        let mut conn = Connection::new(
            Phase::AwaitingActTwo(hs, *remote),
            Some(*remote),
            peer_config,
            limits,
            now,
        );
        conn.output.extend_from_slice(&act_one);
        conn
    }

    fn new(
        phase: Phase,
        node_id: Option<PublicKey>,
        peer_config: PeerConfig,
        limits: Limits,
        now: Instant,
    ) -> Connection {
        Connection {
            phase,
            handshake_deadline: now + limits.handshake_timeout,
            limits,
            peer_config,
            node_id,
            inbox: Vec::new(),
            inbox_start: 0,
            output: Vec::new(),
            written: 0,
            held: None,
            events: VecDeque::new(),
            counts: MessageCounts::default(),
        }
    }

    /// The peer's node id: known from the start when we dialled, after the handshake when it
    /// dialled us.
    pub fn node_id(&self) -> Option<PublicKey> {
        self.node_id
    }

    /// True until the BOLT 8 handshake completed (the peer is not yet authenticated).
    pub fn is_handshaking(&self) -> bool {
        matches!(
            self.phase,
            Phase::AwaitingActOne(_) | Phase::AwaitingActTwo(..) | Phase::AwaitingActThree(_)
        )
    }

    /// True once closed (an [`Event::Closed`] was or is about to be polled).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Whether the socket should be read now: open, every received byte decoded (but a
    /// partial handshake act), no message held, and the backlog below
    /// [`Limits::pause_reading_above`].
    pub fn wants_read(&self) -> bool {
        let undecoded = self.inbox.len() - self.inbox_start;
        let drained = match self.act_len() {
            Some(need) => undecoded < need,
            None => undecoded == 0,
        };
        !self.is_closed()
            && drained
            && self.held.is_none()
            && self.backlog() <= self.limits.pause_reading_above
    }

    /// The length of the handshake act awaited, if any.
    fn act_len(&self) -> Option<usize> {
        match &self.phase {
            Phase::AwaitingActOne(_) => Some(ACT_ONE_LEN),
            Phase::AwaitingActTwo(..) => Some(ACT_TWO_LEN),
            Phase::AwaitingActThree(_) => Some(ACT_THREE_LEN),
            Phase::Active { .. } | Phase::Closed => None,
        }
    }

    /// Takes bytes read from the socket (at most [`READ_CHUNK`], and only while
    /// [`Connection::wants_read`]); they are decoded by [`Connection::poll`].
    pub fn receive(&mut self, data: &[u8]) {
        debug_assert!(
            self.wants_read() || self.is_closed(),
            "receive while paused"
        );
        if self.is_closed() {
            return;
        }
        if self.inbox_start > 0 {
            self.inbox.drain(..self.inbox_start);
            self.inbox_start = 0;
        }
        self.inbox.extend_from_slice(data);
    }

    /// The next event, decoding one more act or message when none is queued; `None` when
    /// nothing more can be done until more bytes arrive, the held message is taken, or the
    /// backlog drains. `scratch` is a buffer the caller lends (plaintext of our replies).
    pub fn poll(&mut self, now: Instant, scratch: &mut Vec<u8>) -> Option<Event> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Some(event);
            }
            if self.held.is_some() || self.backlog() > self.limits.pause_reading_above {
                return None;
            }
            if !self.step(now, scratch) {
                return None;
            }
        }
    }

    /// Gives back a channel message its shard could not take: decoding stops until
    /// [`Connection::take_held`] returns it.
    pub fn hold(&mut self, msg: Message) {
        debug_assert!(self.held.is_none(), "one message held at a time");
        self.held = Some(msg);
    }

    /// The held message, for the caller to offer its shard again (and [`Connection::hold`]
    /// it again if the shard is still full).
    pub fn take_held(&mut self) -> Option<Message> {
        self.held.take()
    }

    /// Whether a message is held.
    pub fn has_held(&self) -> bool {
        self.held.is_some()
    }

    /// The messages this connection received and sent so far, by type.
    pub fn message_counts(&self) -> &MessageCounts {
        &self.counts
    }

    /// Encrypts `msg` from the engine for the peer. Past [`Limits::max_backlog`] the
    /// connection closes instead (polled as [`Event::Closed`]); before the peer is active the
    /// message is dropped. Returns whether it was queued.
    pub fn send(&mut self, msg: &Message, scratch: &mut Vec<u8>) -> bool {
        let backlog = self.backlog();
        if backlog > self.limits.max_backlog {
            self.close(Close::Backlog { bytes: backlog });
            return false;
        }
        let Phase::Active { transport, .. } = &mut self.phase else {
            return false;
        };
        scratch.clear();
        msg.encode(scratch);
        match transport.encrypt_message(scratch, &mut self.output) {
            Ok(()) => {
                self.counts.sent[type_slot(scratch)] += 1;
                true
            }
            Err(e) => {
                self.close(Close::Transport(e.to_string()));
                false
            }
        }
    }

    /// Sends `error` for `channel_id` (BOLT 1), keeping the connection.
    pub fn send_error(&mut self, channel_id: ChannelId, text: &str, scratch: &mut Vec<u8>) {
        if let Phase::Active { peer, .. } = &mut self.phase {
            peer.send_error(channel_id, text);
            self.pump(scratch);
        }
    }

    /// Encrypted bytes waiting for the socket.
    pub fn output(&self) -> &[u8] {
        &self.output[self.written..]
    }

    /// Marks the first `n` bytes of [`Connection::output`] written.
    pub fn consume(&mut self, n: usize) {
        self.written = (self.written + n).min(self.output.len());
        if self.written == self.output.len() {
            self.output.clear();
            self.written = 0;
            if self.output.capacity() > KEEP_OUTPUT_CAPACITY {
                self.output.shrink_to(KEEP_OUTPUT_CAPACITY);
            }
        } else if self.written > self.output.len() / 2 {
            self.output.drain(..self.written);
            self.written = 0;
        }
    }

    /// Drops every unwritten byte: for a connection refused right after its handshake, which
    /// gets no `init`.
    pub fn discard_output(&mut self) {
        self.output = Vec::new();
        self.written = 0;
    }

    /// Unwritten bytes.
    pub fn backlog(&self) -> usize {
        self.output.len() - self.written
    }

    /// Bytes this connection's buffers hold now (capacity, not length: what the allocator
    /// gave). At most [`MAX_FIXED_BYTES`] plus the backlog and one message.
    pub fn memory(&self) -> usize {
        let decoder = match &self.phase {
            Phase::Active { .. } => RECEIVE_BUFFER_LEN,
            _ => 0,
        };
        decoder + self.inbox.capacity() + self.output.capacity()
    }

    /// When [`Connection::handle_timeout`] must next be called.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Active { peer, .. } => peer.poll_timeout(),
            Phase::Closed => None,
            _ => Some(self.handshake_deadline),
        }
    }

    /// Advances timers: the handshake deadline, then BOLT 1's ping and pong.
    pub fn handle_timeout(&mut self, now: Instant, scratch: &mut Vec<u8>) {
        match &mut self.phase {
            Phase::Closed => {}
            Phase::Active { peer, .. } => {
                peer.handle_timeout(now);
                self.drain_peer(scratch);
                self.pump(scratch);
            }
            _ => {
                if now >= self.handshake_deadline {
                    self.close(Close::HandshakeTimeout);
                }
            }
        }
    }

    /// Closes the connection for `reason` (polled as [`Event::Closed`]).
    fn close(&mut self, reason: Close) {
        if self.is_closed() {
            return;
        }
        self.phase = Phase::Closed;
        self.held = None;
        self.events.push_back(Event::Closed(reason));
    }

    /// Decodes one act or one message; false when the input has nothing complete.
    fn step(&mut self, now: Instant, scratch: &mut Vec<u8>) -> bool {
        let need = match (&self.phase, self.act_len()) {
            (Phase::Closed, _) => return false,
            (_, Some(need)) => need,
            (_, None) => return self.step_active(now, scratch),
        };
        if self.inbox.len() - self.inbox_start < need {
            return false;
        }
        let mut act = [0u8; ACT_THREE_LEN];
        let act = &mut act[..need];
        act.copy_from_slice(&self.inbox[self.inbox_start..self.inbox_start + need]);
        self.inbox_start += need;
        let next = match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::AwaitingActOne(hs) => hs.handle_act_one_slice(act).map(|(hs, act_two)| {
                self.output.extend_from_slice(&act_two);
                Phase::AwaitingActThree(hs)
            }),
            Phase::AwaitingActThree(hs) => {
                hs.handle_act_three_slice(act).map(|(transport, node_id)| {
                    self.node_id = Some(node_id);
                    self.activate(transport, node_id, now)
                })
            }
            Phase::AwaitingActTwo(hs, remote) => {
                hs.handle_act_two_slice(act).map(|(act_three, transport)| {
                    self.output.extend_from_slice(&act_three);
                    self.activate(transport, remote, now)
                })
            }
            Phase::Active { .. } | Phase::Closed => unreachable!("matched above"),
        };
        match next {
            Ok(phase) => {
                self.phase = phase;
                self.pump(scratch);
            }
            // The phase is Closed already (taken above); say why.
            Err(e) => self
                .events
                .push_back(Event::Closed(Close::Handshake(e.to_string()))),
        }
        true
    }

    fn activate(&mut self, transport: Transport, node_id: PublicKey, now: Instant) -> Phase {
        self.events.push_back(Event::Authenticated(node_id));
        Phase::Active {
            transport,
            peer: Peer::new(self.peer_config.clone(), now),
        }
    }

    /// One message: decoded if the decoder holds one, else more input fed to the decoder.
    fn step_active(&mut self, now: Instant, scratch: &mut Vec<u8>) -> bool {
        let Phase::Active { transport, peer } = &mut self.phase else {
            return false;
        };
        match transport.next_message() {
            Ok(Some(msg)) => {
                self.counts.received[type_slot(msg)] += 1;
                peer.handle_message(msg, now);
                self.drain_peer(scratch);
                self.pump(scratch);
                return true;
            }
            Ok(None) => {}
            Err(e) => {
                self.close(Close::Transport(e.to_string()));
                return true;
            }
        }
        if self.inbox_start == self.inbox.len() {
            return false;
        }
        match transport.feed(&self.inbox[self.inbox_start..]) {
            Ok(accepted) => {
                self.inbox_start += accepted;
                accepted > 0
            }
            Err(e) => {
                self.close(Close::Transport(e.to_string()));
                true
            }
        }
    }

    /// Moves the BOLT 1 state machine's events into ours.
    fn drain_peer(&mut self, scratch: &mut Vec<u8>) {
        let Phase::Active { peer, .. } = &mut self.phase else {
            return;
        };
        let mut close = None;
        while let Some(event) = peer.poll_event() {
            let event = match event {
                PeerEvent::Ready {
                    features,
                    negotiated,
                } => Event::Ready {
                    features,
                    negotiated,
                },
                PeerEvent::Channel(msg) => Event::Channel(msg),
                PeerEvent::Gossip(msg) => Event::Gossip(msg),
                PeerEvent::Error { channel_id, data } => Event::Error { channel_id, data },
                PeerEvent::Warning { channel_id, data } => Event::Warning { channel_id, data },
                PeerEvent::Disconnect(reason) => {
                    close = Some(Close::Peer(reason));
                    continue;
                }
            };
            self.events.push_back(event);
        }
        if let Some(reason) = close {
            // BOLT 1's last words (a `warning`) are encrypted before the close.
            self.pump(scratch);
            self.close(reason);
        }
    }

    /// Encrypts what BOLT 1 wants to send (init, pong, ping, warning, error).
    fn pump(&mut self, scratch: &mut Vec<u8>) {
        let Phase::Active { transport, peer } = &mut self.phase else {
            return;
        };
        loop {
            scratch.clear();
            if !peer.poll_transmit(scratch) {
                return;
            }
            if let Err(e) = transport.encrypt_message(scratch, &mut self.output) {
                return self.close(Close::Transport(e.to_string()));
            }
            self.counts.sent[type_slot(scratch)] += 1;
        }
    }
}
