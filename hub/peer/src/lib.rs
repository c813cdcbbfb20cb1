//! One Lightning peer connection's BOLT 1 behaviour, as a sans-IO state machine.
//!
//! A [`Peer`] sits between the BOLT 8 transport (which hands it whole decrypted messages) and
//! the channel engine. It owns what BOLT 1 asks of a connection: `init` goes out first and
//! nothing else leaves before the peer's `init` arrived; features are negotiated (unknown even
//! bits, missing dependencies or no common chain close the connection); `ping` is answered
//! with `pong` by the size rules; an idle connection is pinged and dropped when the `pong`
//! does not come; `warning` and `error` are reported. Channel (BOLT 2) and gossip (BOLT 7)
//! messages are handed out as [`PeerEvent`]s for the rooms that own them.
//!
//! The caller owns the socket, the clock and the buffers. Call protocol:
//!
//! 1. [`Peer::new`] once the BOLT 8 handshake completed; it queues our `init`.
//! 2. Feed each decrypted message to [`Peer::handle_message`].
//! 3. After any `handle_*` call, drain [`Peer::poll_transmit`] (bytes to encrypt and send)
//!    and [`Peer::poll_event`] (what the rest of the node must know).
//! 4. Call [`Peer::handle_timeout`] when [`Peer::poll_timeout`] is reached.
//! 5. After [`PeerEvent::Disconnect`] the caller closes the socket; the peer then accepts
//!    nothing more (its queued output, e.g. a final `warning`, may still be flushed).
//!
//! What is bounded: at most [`MAX_QUEUED_CONTROL`] control messages wait for the socket (a
//! peer that pings faster than it reads its pongs is disconnected), and at most
//! [`MAX_QUEUED_EVENTS`] events wait for the caller (the caller must drain after each call).

#![deny(missing_docs)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use lnhub_wire::features::{self, Features};
use lnhub_wire::msgs::{ErrorMessage, Init, Message, Ping, Pong, Warning};
use lnhub_wire::types::{ChainHash, ChannelId};
use lnhub_wire::DecodeError;

/// Control messages (init, pong, ping, warning) waiting for the socket. Every one of them is
/// a response to at most one received message, so a handful covers any honest peer; more
/// means the peer does not read what it asks for.
pub const MAX_QUEUED_CONTROL: usize = 16;

/// Events waiting for the caller: at most one per handled message plus a disconnect, as long
/// as the caller drains after each call, which the call protocol requires.
pub const MAX_QUEUED_EVENTS: usize = 4;

/// The largest `num_pong_bytes` we answer (BOLT 1: 65532 and above means "no reply").
pub const MAX_PONG_BYTES: u16 = 65531;

/// The features lnhub offers in `init` (BOLT 9): the ASSUMED features set as required, as
/// BOLT 9 lets nodes assume them; the channel types it accepts offered as optional. The
/// daemon sends these, and peers built on lnhub's crates (the load generator) send them too,
/// so both ends agree on every channel type the hub takes.
pub fn lnhub_features() -> Features {
    let mut f = Features::empty();
    for required in [
        features::DATA_LOSS_PROTECT,
        features::VAR_ONION_OPTIN,
        features::STATIC_REMOTEKEY,
        features::PAYMENT_SECRET,
    ] {
        f.set_required(required);
    }
    for optional in [
        features::ANCHORS,
        features::SHUTDOWN_ANYSEGWIT,
        features::SIMPLE_CLOSE,
        features::CHANNEL_TYPE,
        features::SCID_ALIAS,
        features::ZEROCONF,
    ] {
        f.set_optional(optional);
    }
    f
}

/// Static settings of a connection, derived once from the validated daemon config.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Features we send in `init`.
    pub features: Features,
    /// The chain we serve (sent as `networks`, and a peer with no common chain is dropped).
    pub chain_hash: ChainHash,
    /// Idle time after which we ping.
    pub ping_interval: Duration,
    /// Time we wait for a `pong`, and for the peer's `init` after the handshake.
    pub pong_timeout: Duration,
}

/// Why a connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The peer's first message was not `init`.
    NoInitFirst,
    /// `init` did not arrive in time.
    InitTimeout,
    /// The peer requires features we do not know or do not support.
    UnsupportedFeatures(String),
    /// The peer's `networks` has no chain in common with ours.
    NoCommonChain,
    /// A message could not be decoded (unknown even type included).
    Malformed(DecodeError),
    /// No `pong` within the deadline.
    PongTimeout,
    /// A `pong` whose length matches no `ping` we sent.
    UnexpectedPong,
    /// The peer asks for more responses than it reads.
    Flooding,
    /// The peer sent an `error` for all channels (all-zero `channel_id`).
    ErrorReceived,
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoInitFirst => f.write_str("first message was not init"),
            Self::InitTimeout => f.write_str("no init received in time"),
            Self::UnsupportedFeatures(s) => write!(f, "unsupported features: {s}"),
            Self::NoCommonChain => f.write_str("no common chain in init networks"),
            Self::Malformed(e) => write!(f, "malformed message: {e}"),
            Self::PongTimeout => f.write_str("no pong received in time"),
            Self::UnexpectedPong => f.write_str("pong matches no ping"),
            Self::Flooding => f.write_str("peer does not read its responses"),
            Self::ErrorReceived => f.write_str("peer sent a connection-wide error"),
        }
    }
}

/// What the rest of the node must learn from this connection.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerEvent {
    /// `init` exchanged and features negotiated: channel messages may flow now.
    Ready {
        /// The peer's feature bits (global and local merged).
        features: Features,
        /// The features both sides use ([`features::negotiate`] of ours and the peer's).
        negotiated: Features,
    },
    /// A BOLT 2 message for the channel identified inside it.
    Channel(Message),
    /// A BOLT 7 gossip message.
    Gossip(Message),
    /// The peer sent `error`: fail the given channel (all channels if `channel_id` is zero).
    Error {
        /// The channel the error is about; all-zero means every channel with this peer.
        channel_id: ChannelId,
        /// The peer's text, for the log only (never interpreted).
        data: Vec<u8>,
    },
    /// The peer sent `warning`: log it, nothing else.
    Warning {
        /// The channel it is about (zero: the connection).
        channel_id: ChannelId,
        /// The peer's text.
        data: Vec<u8>,
    },
    /// Close the connection. Channels stay as they are (BOLT 1: a missing pong MUST NOT fail
    /// them) unless an `Error` event said otherwise.
    Disconnect(DisconnectReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Our `init` is queued; waiting for the peer's.
    AwaitingInit { deadline: Instant },
    /// Normal operation.
    Active,
    /// Disconnect decided: nothing more is accepted.
    Closed,
}

/// One connection's BOLT 1 state. See the module docs for the call protocol.
#[derive(Debug)]
pub struct Peer {
    config: PeerConfig,
    state: State,
    remote_features: Features,
    control: VecDeque<Message>,
    events: VecDeque<PeerEvent>,
    last_received: Instant,
    /// Sent ping waiting for its pong: when it was sent and the pong length asked for.
    ping_outstanding: Option<(Instant, u16)>,
}

impl Peer {
    /// A connection whose transport just came up at `now`; queues our `init`.
    pub fn new(config: PeerConfig, now: Instant) -> Peer {
        let init = Init {
            global_features: Features::empty(),
            features: config.features.clone(),
            networks: Some(vec![config.chain_hash]),
            remote_addr: None,
            ..Init::default()
        };
        let deadline = now + config.pong_timeout;
        let mut control = VecDeque::with_capacity(MAX_QUEUED_CONTROL);
        control.push_back(Message::Init(init));
        Peer {
            config,
            state: State::AwaitingInit { deadline },
            remote_features: Features::empty(),
            control,
            events: VecDeque::with_capacity(MAX_QUEUED_EVENTS),
            last_received: now,
            ping_outstanding: None,
        }
    }

    /// True once `init` was exchanged and until the connection is closed.
    pub fn is_active(&self) -> bool {
        self.state == State::Active
    }

    /// The peer's features (empty before its `init`).
    pub fn remote_features(&self) -> &Features {
        &self.remote_features
    }

    /// Handles one decrypted message (starting with its 2-byte type).
    pub fn handle_message(&mut self, bytes: &[u8], now: Instant) {
        if self.state == State::Closed {
            return;
        }
        self.last_received = now;
        let msg = match Message::decode(bytes) {
            Ok(msg) => msg,
            Err(e) => {
                // BOLT 1: an unknown even type MUST close the connection; a malformed known
                // message MAY be answered with a warning before closing. Both get the warning:
                // it tells the peer's operator why.
                self.queue_warning(&format!("malformed message: {e}"));
                return self.disconnect(DisconnectReason::Malformed(e));
            }
        };
        match self.state {
            State::AwaitingInit { .. } => match msg {
                Message::Init(init) => self.handle_init(init),
                // Unknown odd messages may precede init: ignore them (BOLT 1).
                Message::Unknown { .. } => {}
                _ => self.disconnect(DisconnectReason::NoInitFirst),
            },
            State::Active => self.handle_active(msg),
            State::Closed => {}
        }
    }

    fn handle_init(&mut self, init: Init) {
        let remote = init.features.union(&init.global_features);
        let negotiated = match features::negotiate(&self.config.features, &remote) {
            Ok(n) => n,
            Err(e) => {
                self.queue_warning(&format!("unsupported features: {e}"));
                return self.disconnect(DisconnectReason::UnsupportedFeatures(e.to_string()));
            }
        };
        if let Some(networks) = &init.networks {
            if !networks.contains(&self.config.chain_hash) {
                self.queue_warning("no common chain");
                return self.disconnect(DisconnectReason::NoCommonChain);
            }
        }
        self.remote_features = remote.clone();
        self.state = State::Active;
        self.push_event(PeerEvent::Ready {
            features: remote,
            negotiated,
        });
    }

    fn handle_active(&mut self, msg: Message) {
        match msg {
            // A second init on the same connection is not defined by BOLT 1; ignoring it is
            // what the major implementations do.
            Message::Init(_) => {}
            Message::Ping(ping) => self.handle_ping(&ping),
            Message::Pong(pong) => self.handle_pong(&pong),
            Message::Error(ErrorMessage {
                channel_id, data, ..
            }) => {
                let all = channel_id == ChannelId::ZERO;
                self.push_event(PeerEvent::Error { channel_id, data });
                if all {
                    self.disconnect(DisconnectReason::ErrorReceived);
                }
            }
            Message::Warning(Warning {
                channel_id, data, ..
            }) => self.push_event(PeerEvent::Warning { channel_id, data }),
            Message::Unknown { .. } => {}
            msg if msg.channel_id().is_some() => self.push_event(PeerEvent::Channel(msg)),
            msg => self.push_event(PeerEvent::Gossip(msg)),
        }
    }

    fn handle_ping(&mut self, ping: &Ping) {
        if ping.num_pong_bytes > MAX_PONG_BYTES {
            return; // BOLT 1: MUST ignore.
        }
        let pong = Pong {
            ignored: vec![0; ping.num_pong_bytes as usize],
            ..Default::default()
        };
        self.queue_control(Message::Pong(pong));
    }

    fn handle_pong(&mut self, pong: &Pong) {
        match self.ping_outstanding {
            Some((_, want)) if pong.ignored.len() == want as usize => self.ping_outstanding = None,
            _ => self.disconnect(DisconnectReason::UnexpectedPong),
        }
    }

    /// Advances timers: pings an idle peer, drops one that does not answer.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Closed => {}
            State::AwaitingInit { deadline } => {
                if now >= deadline {
                    self.disconnect(DisconnectReason::InitTimeout);
                }
            }
            State::Active => match self.ping_outstanding {
                Some((sent, _)) if now >= sent + self.config.pong_timeout => {
                    self.disconnect(DisconnectReason::PongTimeout)
                }
                Some(_) => {}
                None if now >= self.last_received + self.config.ping_interval => {
                    // No pong bytes asked and none sent: liveness only. The zeroed padding
                    // of the spec's synthetic traffic buys nothing on a hub's busy links.
                    let ping = Ping {
                        num_pong_bytes: 0,
                        ignored: Vec::new(),
                        ..Default::default()
                    };
                    self.queue_control(Message::Ping(ping));
                    self.ping_outstanding = Some((now, 0));
                }
                None => {}
            },
        }
    }

    /// When [`Peer::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Closed => None,
            State::AwaitingInit { deadline } => Some(deadline),
            State::Active => Some(match self.ping_outstanding {
                Some((sent, _)) => sent + self.config.pong_timeout,
                None => self.last_received + self.config.ping_interval,
            }),
        }
    }

    /// Appends the next message to send (plaintext, with its type) to `out`; false when none.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        match self.control.pop_front() {
            Some(msg) => {
                msg.encode(out);
                true
            }
            None => false,
        }
    }

    /// The next event for the rest of the node.
    pub fn poll_event(&mut self) -> Option<PeerEvent> {
        self.events.pop_front()
    }

    /// Sends `error` for `channel_id` (BOLT 1) and keeps the connection.
    pub fn send_error(&mut self, channel_id: ChannelId, text: &str) {
        let msg = ErrorMessage {
            channel_id,
            data: text.as_bytes().to_vec(),
            ..Default::default()
        };
        self.queue_control(Message::Error(msg));
    }

    fn queue_warning(&mut self, text: &str) {
        let msg = Warning {
            channel_id: ChannelId::ZERO,
            data: text.as_bytes().to_vec(),
            ..Default::default()
        };
        self.queue_control(Message::Warning(msg));
    }

    fn queue_control(&mut self, msg: Message) {
        if self.control.len() >= MAX_QUEUED_CONTROL {
            return self.disconnect(DisconnectReason::Flooding);
        }
        self.control.push_back(msg);
    }

    fn push_event(&mut self, event: PeerEvent) {
        // The caller drains after every call, so the bound is only hit by a caller bug.
        assert!(
            self.events.len() < MAX_QUEUED_EVENTS,
            "peer events not drained by the caller"
        );
        self.events.push_back(event);
    }

    fn disconnect(&mut self, reason: DisconnectReason) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.push_event(PeerEvent::Disconnect(reason));
    }
}

#[cfg(test)]
mod tests;
