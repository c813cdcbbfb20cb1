//! The connection room's shell: one mio event loop that owns every peer socket.
//!
//! It accepts inbound connections, dials configured peers (reconnecting with exponential
//! backoff), runs the BOLT 8 handshake ([`lnhub_noise`]) and then each connection's BOLT 1
//! state machine ([`lnhub_peer`]). All protocol decisions live in those pure crates; this file
//! only moves bytes, keeps time and enforces the resource bounds:
//!
//! - at most `max_peers` connections; more are accepted and closed at once;
//! - a handshake must finish within [`HANDSHAKE_TIMEOUT`];
//! - at most [`MAX_OUTBOUND_BYTES`] wait to be written to one socket: above that the loop stops
//!   reading from that socket (back-pressure) until the peer has read its backlog;
//! - reads are drained to `WouldBlock` as mio's edge-triggered readiness requires.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use secp256k1::PublicKey;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use lnhub_engine::{Engine, Input, Output};
use lnhub_noise::{
    InitiatorHandshake, ResponderAwaitingActThree, ResponderHandshake, Transport, ACT_ONE_LEN,
    ACT_THREE_LEN, ACT_TWO_LEN,
};
use lnhub_peer::{Peer, PeerConfig, PeerEvent};
use lnhub_wire::msgs::Message;

use crate::config::{self, Config, PeerAddr};
use crate::keys::{self, NodeKey};

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const ENGINE: Token = Token(2);
const FIRST_CONN: usize = 3;

/// Time allowed for the three BOLT 8 acts; a connection that stalls longer only holds a slot.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes allowed to wait for one slow socket before we stop reading from it. Four largest
/// messages: enough for bursts, small enough that 1024 peers hold at most ~256 MiB.
pub const MAX_OUTBOUND_BYTES: usize = 4 * (65535 + 34);
/// First reconnection delay; doubles after each failure up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Longest reconnection delay: a peer that comes back is found within a minute.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Bytes waiting for one socket beyond which the peer is dropped: the engine does not stop
/// producing for a peer that stops reading, so this bounds what such a peer can make us hold.
pub const MAX_BACKLOG_BYTES: usize = 16 << 20;
/// Size of the read scratch buffer: one full BOLT 8 frame.
const READ_CHUNK: usize = 65535 + 34;

enum Handshake {
    Initiator(InitiatorHandshake),
    Responder(ResponderHandshake),
    ResponderActThree(ResponderAwaitingActThree),
}

// One per connection, so the size difference costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
enum Phase {
    Handshake {
        hs: Handshake,
        buf: Vec<u8>,
        deadline: Instant,
    },
    Active {
        transport: Transport,
        peer: Peer,
        node_id: PublicKey,
    },
}

struct Conn {
    stream: TcpStream,
    addr: SocketAddr,
    phase: Option<Phase>,
    outbound: Vec<u8>,
    written: usize,
    /// Index into `Node::dialers` when we dialed this connection.
    dialer: Option<usize>,
    /// The node id we dialed (the initiator knows it before the handshake).
    dialed_node_id: Option<PublicKey>,
    /// Channel messages its shard had no room for yet (at most one read chunk's worth): while
    /// any wait, the socket is not read.
    held: std::collections::VecDeque<Input>,
    /// Interest currently registered (to avoid needless reregistration).
    interest: Interest,
    closing: bool,
}

struct Dialer {
    peer: PeerAddr,
    token: Option<Token>,
    next_attempt: Instant,
    backoff: Duration,
}

/// The connection room: listener, connections, dialers.
pub struct Node {
    config: Config,
    key: NodeKey,
    peer_config: PeerConfig,
    poll: Poll,
    listener: TcpListener,
    signals: Signals,
    conns: HashMap<Token, Conn>,
    by_node_id: HashMap<PublicKey, Token>,
    dialers: Vec<Dialer>,
    next_token: usize,
    scratch: Vec<u8>,
    plain: Vec<u8>,
    /// Peer events produced while reading, handled in `finish` (reused buffer; at most one
    /// per message of one read chunk).
    events: Vec<PeerEvent>,
    /// The channel engine (`None`: channels are refused at the connection level).
    engine: Option<Engine>,
    /// For each peer, the connection the engine's output is currently for (set when its shard
    /// confirms a connection with `Output::Connected`): output for any other is dropped.
    engine_conns: HashMap<PublicKey, Token>,
}

impl Node {
    /// Binds the listener and prepares the dialers; `engine` is started with the waker this
    /// loop creates. Prints nothing yet.
    pub fn bind(
        config: Config,
        key: NodeKey,
        peer_config: PeerConfig,
        engine: impl FnOnce(std::sync::Arc<mio::Waker>) -> Result<Option<Engine>, String>,
    ) -> Result<Node, String> {
        let poll = Poll::new().map_err(|e| format!("event loop: {e}"))?;
        let waker = mio::Waker::new(poll.registry(), ENGINE).map_err(|e| format!("waker: {e}"))?;
        let engine = engine(std::sync::Arc::new(waker))?;
        let listen = config.listen;
        let cannot_listen = |e: io::Error| format!("cannot listen on {listen}: {e}");
        let mut listener = TcpListener::bind(listen).map_err(cannot_listen)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(cannot_listen)?;
        let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(|e| format!("signals: {e}"))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(|e| format!("signals: {e}"))?;
        let now = Instant::now();
        let dialers = config
            .connect
            .iter()
            .map(|p| Dialer {
                peer: p.clone(),
                token: None,
                next_attempt: now,
                backoff: MIN_BACKOFF,
            })
            .collect();
        Ok(Node {
            config,
            key,
            peer_config,
            poll,
            listener,
            signals,
            conns: HashMap::new(),
            by_node_id: HashMap::new(),
            dialers,
            next_token: FIRST_CONN,
            scratch: vec![0; READ_CHUNK],
            plain: Vec::with_capacity(READ_CHUNK),
            events: Vec::new(),
            engine,
            engine_conns: HashMap::new(),
        })
    }

    /// The address actually bound (resolves port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Runs until SIGINT or SIGTERM.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            self.handle_timers(now);
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    ENGINE => {
                        self.engine_output();
                        self.retry_held();
                    }
                    SIGNALS => {
                        if self.signals.pending().next().is_some() {
                            info!("signal received, shutting down");
                            self.shutdown();
                            return Ok(());
                        }
                    }
                    token => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read_ready(token);
                        }
                        if event.is_writable() {
                            self.flush(token);
                        }
                        self.finish(token);
                    }
                }
            }
        }
    }

    fn shutdown(&mut self) {
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for token in tokens {
            if let Some(conn) = self.conns.get_mut(&token) {
                conn.closing = true;
                let _ = write_out(conn);
            }
            self.remove(token);
        }
    }

    fn alloc_token(&mut self) -> Token {
        let t = Token(self.next_token);
        self.next_token += 1;
        t
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, addr)) => {
                    if self.conns.len() >= self.config.max_peers {
                        warn!("refusing connection from {addr}: max_peers reached");
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let token = self.alloc_token();
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut stream, token, Interest::READABLE)
                    {
                        warn!("cannot register {addr}: {e}");
                        continue;
                    }
                    let ephemeral = match keys::fresh_secret() {
                        Ok(k) => k,
                        Err(e) => {
                            warn!("{e}");
                            continue;
                        }
                    };
                    let hs = ResponderHandshake::new(&self.key.secret, &ephemeral);
                    debug!("inbound connection from {addr}");
                    self.conns.insert(
                        token,
                        Conn::new(stream, addr, Handshake::Responder(hs), None),
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn dial(&mut self, index: usize, now: Instant) {
        let peer = self.dialers[index].peer.clone();
        let attempt = config::resolve(&peer.addr).and_then(TcpStream::connect);
        let mut stream = match attempt {
            Ok(s) => s,
            Err(e) => {
                info!("dial {}@{} failed: {e}", peer.node_id, peer.addr);
                self.backoff(index, now);
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let token = self.alloc_token();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self.poll.registry().register(&mut stream, token, interest) {
            warn!("cannot register dial to {}: {e}", peer.addr);
            self.backoff(index, now);
            return;
        }
        let ephemeral = match keys::fresh_secret() {
            Ok(k) => k,
            Err(e) => {
                warn!("{e}");
                return;
            }
        };
        let (hs, act_one) = InitiatorHandshake::new(&self.key.secret, &peer.node_id, &ephemeral);
        let addr = stream
            .peer_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
        let mut conn = Conn::new(stream, addr, Handshake::Initiator(hs), Some(index));
        conn.interest = interest;
        conn.dialed_node_id = Some(peer.node_id);
        conn.outbound.extend_from_slice(&act_one);
        self.conns.insert(token, conn);
        self.dialers[index].token = Some(token);
        debug!("dialing {}@{}", peer.node_id, peer.addr);
    }

    fn backoff(&mut self, index: usize, now: Instant) {
        let d = &mut self.dialers[index];
        d.token = None;
        d.next_attempt = now + d.backoff;
        d.backoff = (d.backoff * 2).min(MAX_BACKOFF);
    }

    /// Reads until `WouldBlock` (or back-pressure), handling each chunk's messages and their
    /// events before reading the next, so nothing accumulates beyond one chunk.
    fn read_ready(&mut self, token: Token) {
        loop {
            let Some(conn) = self.conns.get_mut(&token) else {
                return;
            };
            if conn.closing || conn.backlog() > MAX_OUTBOUND_BYTES || !conn.held.is_empty() {
                // Back-pressure: leave the bytes in the kernel until the peer reads what we
                // sent, or until its shard has taken what we hold for it.
                return;
            }
            let n = match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    debug!("{} closed the connection", conn.addr);
                    conn.closing = true;
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("read from {} failed: {e}", conn.addr);
                    conn.closing = true;
                    return;
                }
            };
            let now = Instant::now();
            let data = &self.scratch[..n];
            if let Err(e) = conn.handle_bytes(
                data,
                now,
                &self.peer_config,
                &mut self.plain,
                &mut self.events,
            ) {
                info!("dropping {}: {e}", conn.addr);
                conn.closing = true;
                return;
            }
            self.dispatch(token);
        }
    }

    fn flush(&mut self, token: Token) {
        if let Some(conn) = self.conns.get_mut(&token) {
            if let Err(e) = write_out(conn) {
                debug!("write to {} failed: {e}", conn.addr);
                conn.closing = true;
            }
        }
    }

    /// Handles the events a connection's peer state machine produced.
    fn dispatch(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let Some(Phase::Active { peer, node_id, .. }) = &mut conn.phase else {
            return;
        };
        let node_id = *node_id;
        self.events.extend(std::iter::from_fn(|| peer.poll_event()));
        let mut ready = false;
        let mut common = lnhub_wire::features::Features::empty();
        for event in self.events.drain(..) {
            match event {
                PeerEvent::Ready {
                    features,
                    negotiated,
                } => {
                    info!(
                        "peer {node_id} ready at {} (features {features:?})",
                        conn.addr
                    );
                    ready = true;
                    common = negotiated;
                }
                PeerEvent::Channel(msg) => {
                    if let Some(engine) = &self.engine {
                        // Back-pressure per socket: once one message waits, the ones behind it
                        // wait too, and the socket is not read until they are all queued.
                        let input = Input::Peer { node_id, msg };
                        if !conn.held.is_empty() {
                            conn.held.push_back(input);
                        } else if let Err(input) = engine.try_send(&node_id, input) {
                            conn.held.push_back(input);
                        }
                        continue;
                    }
                    // No channel engine: every channel is unknown. BOLT 1 says to answer
                    // channel messages (types 32-255) for unknown channels with an `error`
                    // for that channel_id, which also tells an opener clearly that we do not
                    // accept channels.
                    let channel_type = (32..=255).contains(&msg.msg_type());
                    if let (true, Some(channel_id)) = (channel_type, msg.channel_id()) {
                        let text = match msg {
                            Message::OpenChannel(_) => "lnhub does not accept channels yet",
                            _ => "unknown channel",
                        };
                        peer.send_error(channel_id, text);
                    }
                }
                PeerEvent::Gossip(msg) => debug!("gossip from {node_id}: type {}", msg.msg_type()),
                PeerEvent::Error { channel_id, data } => {
                    warn!("error from {node_id} on {channel_id}: {}", printable(&data))
                }
                PeerEvent::Warning { channel_id, data } => {
                    warn!(
                        "warning from {node_id} on {channel_id}: {}",
                        printable(&data)
                    )
                }
                PeerEvent::Disconnect(reason) => {
                    info!("disconnecting {node_id}: {reason}");
                    conn.closing = true;
                }
            }
        }
        if ready {
            if let Some(&old) = self.by_node_id.get(&node_id) {
                if old != token {
                    info!("{node_id} reconnected; closing its previous connection");
                    self.remove(old);
                }
            }
            self.by_node_id.insert(node_id, token);
            if let Some(engine) = &self.engine {
                let connection = token.0 as u64;
                engine.send(
                    &node_id,
                    Input::PeerConnected {
                        node_id,
                        connection,
                        features: common.clone(),
                    },
                );
            }
        }
    }

    /// After I/O on a connection: handles events, encrypts and writes output, applies a
    /// close, and adjusts the registered interest.
    fn finish(&mut self, token: Token) {
        loop {
            self.dispatch(token);
            let Some(conn) = self.conns.get_mut(&token) else {
                return;
            };
            if let Err(e) = conn
                .pump_output(&mut self.plain)
                .map_err(io::Error::other)
                .and_then(|()| write_out(conn))
            {
                debug!("{}: {e}", conn.addr);
                conn.closing = true;
            }
            if conn.closing {
                return self.remove(token);
            }
            // Interest: writable while output is pending; readable unless back-pressured.
            let blocked = conn.backlog() > MAX_OUTBOUND_BYTES;
            let want = match (blocked, conn.backlog() > 0) {
                (true, _) => Interest::WRITABLE,
                (false, true) => Interest::READABLE | Interest::WRITABLE,
                (false, false) => Interest::READABLE,
            };
            if want == conn.interest {
                return;
            }
            let was_blocked = !conn.interest.is_readable();
            if self
                .poll
                .registry()
                .reregister(&mut conn.stream, token, want)
                .is_ok()
            {
                conn.interest = want;
            }
            if !(was_blocked && want.is_readable()) {
                return;
            }
            // Leaving back-pressure: bytes may already wait in the kernel, and with
            // edge-triggered readiness no new event announces them. Read, then go round.
            self.read_ready(token);
        }
    }

    fn remove(&mut self, token: Token) {
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        if let Some(Phase::Active { node_id, .. }) = conn.phase {
            if self.engine_conns.get(&node_id) == Some(&token) {
                self.engine_conns.remove(&node_id);
            }
            if self.by_node_id.get(&node_id) == Some(&token) {
                self.by_node_id.remove(&node_id);
                info!("peer {node_id} disconnected");
                if let Some(engine) = &self.engine {
                    // What the peer sent before it left still goes first (rare: blocking).
                    for input in conn.held.drain(..) {
                        engine.send(&node_id, input);
                    }
                    engine.send(&node_id, Input::PeerDisconnected { node_id });
                }
            }
        }
        if let Some(index) = conn.dialer {
            if self.dialers[index].token == Some(token) {
                let active = matches!(conn.phase, Some(Phase::Active { .. }));
                if active {
                    self.dialers[index].backoff = MIN_BACKOFF;
                }
                self.backoff(index, Instant::now());
            }
        }
    }

    /// Offers held messages to their shards again (a shard finished a turn, so its queue may
    /// have room); a connection whose messages are all queued is read again.
    fn retry_held(&mut self) {
        let Some(engine) = &self.engine else { return };
        let waiting: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.held.is_empty())
            .map(|(t, _)| *t)
            .collect();
        let mut resumed = Vec::new();
        for token in waiting {
            let Some(conn) = self.conns.get_mut(&token) else {
                continue;
            };
            let Some(Phase::Active { node_id, .. }) = &conn.phase else {
                continue;
            };
            let node_id = *node_id;
            while let Some(input) = conn.held.pop_front() {
                if let Err(input) = engine.try_send(&node_id, input) {
                    conn.held.push_front(input);
                    break;
                }
            }
            if conn.held.is_empty() {
                resumed.push(token);
            }
        }
        for token in resumed {
            // Edge-triggered readiness: bytes may already wait in the kernel.
            self.read_ready(token);
            self.finish(token);
        }
    }

    /// Sends what the shards produced to the peers' connections.
    fn engine_output(&mut self) {
        let Some(engine) = &self.engine else { return };
        let outputs: Vec<Output> = std::iter::from_fn(|| engine.try_output()).collect();
        let mut touched = Vec::new();
        for output in outputs {
            let (node_id, msg) = match output {
                Output::Connected {
                    node_id,
                    connection,
                } => {
                    let token = Token(connection as usize);
                    if self.by_node_id.get(&node_id) == Some(&token) {
                        self.engine_conns.insert(node_id, token);
                    } else {
                        self.engine_conns.remove(&node_id);
                    }
                    continue;
                }
                Output::Send { node_id, msg } => (node_id, Some(msg)),
                Output::Disconnect { node_id } => (node_id, None),
            };
            // Only to the connection the shard last confirmed, and only while it is the
            // peer's live one: output made for an earlier connection is dropped (its channels
            // retransmit what the peer needs after channel_reestablish).
            let live = self.by_node_id.get(&node_id);
            let Some(&token) = self.engine_conns.get(&node_id).filter(|t| Some(*t) == live) else {
                continue;
            };
            let Some(conn) = self.conns.get_mut(&token) else {
                continue;
            };
            match msg {
                Some(msg) => {
                    if let Err(e) = conn.send_message(&msg, &mut self.plain) {
                        info!("dropping {node_id}: {e}");
                        conn.closing = true;
                    }
                }
                None => conn.closing = true,
            }
            touched.push(token);
        }
        touched.dedup();
        for token in touched {
            self.finish(token);
        }
    }

    fn handle_timers(&mut self, now: Instant) {
        let due: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline().is_some_and(|t| now >= t))
            .map(|(t, _)| *t)
            .collect();
        for token in due {
            let Some(conn) = self.conns.get_mut(&token) else {
                continue;
            };
            match &mut conn.phase {
                Some(Phase::Handshake { .. }) => {
                    info!("handshake with {} timed out", conn.addr);
                    conn.closing = true;
                }
                Some(Phase::Active { peer, .. }) => peer.handle_timeout(now),
                None => {}
            }
            self.finish(token);
        }
        for index in 0..self.dialers.len() {
            let d = &self.dialers[index];
            if d.token.is_none()
                && now >= d.next_attempt
                && !self.by_node_id.contains_key(&d.peer.node_id)
            {
                self.dial(index, now);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let conns = self.conns.values().filter_map(Conn::deadline);
        let dials = self
            .dialers
            .iter()
            .filter(|d| d.token.is_none())
            .map(|d| d.next_attempt);
        conns.chain(dials).min()
    }
}

impl Conn {
    fn new(stream: TcpStream, addr: SocketAddr, hs: Handshake, dialer: Option<usize>) -> Conn {
        Conn {
            stream,
            addr,
            phase: Some(Phase::Handshake {
                hs,
                buf: Vec::with_capacity(ACT_THREE_LEN),
                deadline: Instant::now() + HANDSHAKE_TIMEOUT,
            }),
            outbound: Vec::with_capacity(4096),
            written: 0,
            dialer,
            dialed_node_id: None,
            held: std::collections::VecDeque::new(),
            interest: Interest::READABLE,
            closing: false,
        }
    }

    /// Encrypted bytes waiting for the socket.
    fn backlog(&self) -> usize {
        self.outbound.len() - self.written
    }

    /// When this connection's timers next need attention.
    fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            Some(Phase::Handshake { deadline, .. }) => Some(*deadline),
            Some(Phase::Active { peer, .. }) => peer.poll_timeout(),
            None => None,
        }
    }

    /// Consumes bytes read from the socket: handshake acts, then transport frames.
    fn handle_bytes(
        &mut self,
        mut data: &[u8],
        now: Instant,
        peer_config: &PeerConfig,
        plain: &mut Vec<u8>,
        events: &mut Vec<PeerEvent>,
    ) -> Result<(), String> {
        while !data.is_empty() {
            match self.phase.take() {
                Some(Phase::Handshake {
                    hs,
                    mut buf,
                    deadline,
                }) => {
                    let need = match hs {
                        Handshake::Initiator(_) => ACT_TWO_LEN,
                        Handshake::Responder(_) => ACT_ONE_LEN,
                        Handshake::ResponderActThree(_) => ACT_THREE_LEN,
                    };
                    let take = (need - buf.len()).min(data.len());
                    buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if buf.len() < need {
                        self.phase = Some(Phase::Handshake { hs, buf, deadline });
                        continue;
                    }
                    self.phase = Some(self.advance_handshake(hs, &buf, now, peer_config)?);
                }
                Some(Phase::Active {
                    mut transport,
                    mut peer,
                    node_id,
                }) => {
                    let result = feed_transport(&mut transport, &mut peer, data, now, events);
                    self.phase = Some(Phase::Active {
                        transport,
                        peer,
                        node_id,
                    });
                    result?;
                    data = &[];
                }
                None => return Err("connection in no phase".into()),
            }
        }
        self.pump_output(plain)
    }

    fn advance_handshake(
        &mut self,
        hs: Handshake,
        act: &[u8],
        now: Instant,
        peer_config: &PeerConfig,
    ) -> Result<Phase, String> {
        match hs {
            Handshake::Responder(r) => {
                let act: &[u8; ACT_ONE_LEN] = act.try_into().map_err(|_| "act one length")?;
                let (next, act_two) = r
                    .handle_act_one(act)
                    .map_err(|e| format!("handshake act one: {e}"))?;
                self.outbound.extend_from_slice(&act_two);
                let deadline = now + HANDSHAKE_TIMEOUT;
                Ok(Phase::Handshake {
                    hs: Handshake::ResponderActThree(next),
                    buf: Vec::with_capacity(ACT_THREE_LEN),
                    deadline,
                })
            }
            Handshake::ResponderActThree(r) => {
                let act: &[u8; ACT_THREE_LEN] = act.try_into().map_err(|_| "act three length")?;
                let (transport, node_id) = r
                    .handle_act_three(act)
                    .map_err(|e| format!("handshake act three: {e}"))?;
                debug!("handshake with {node_id} at {} complete", self.addr);
                Ok(Phase::Active {
                    transport,
                    peer: Peer::new(peer_config.clone(), now),
                    node_id,
                })
            }
            Handshake::Initiator(i) => {
                let act: &[u8; ACT_TWO_LEN] = act.try_into().map_err(|_| "act two length")?;
                let (act_three, transport) = i
                    .handle_act_two(act)
                    .map_err(|e| format!("handshake act two: {e}"))?;
                self.outbound.extend_from_slice(&act_three);
                let node_id = self.dialed_node_id.ok_or("initiator without node id")?;
                Ok(Phase::Active {
                    transport,
                    peer: Peer::new(peer_config.clone(), now),
                    node_id,
                })
            }
        }
    }

    /// Encrypts one message from the channel engine into the outbound buffer.
    fn send_message(&mut self, msg: &Message, plain: &mut Vec<u8>) -> Result<(), String> {
        let backlog = self.backlog();
        if backlog > MAX_BACKLOG_BYTES {
            return Err(format!("peer does not read: {backlog} bytes waiting"));
        }
        let Some(Phase::Active { transport, .. }) = &mut self.phase else {
            return Err("connection not active".into());
        };
        plain.clear();
        msg.encode(plain);
        transport
            .encrypt_message(plain, &mut self.outbound)
            .map_err(|e| e.to_string())
    }

    /// Encrypts every message the peer state machine wants to send.
    fn pump_output(&mut self, plain: &mut Vec<u8>) -> Result<(), String> {
        if let Some(Phase::Active {
            transport, peer, ..
        }) = &mut self.phase
        {
            loop {
                plain.clear();
                if !peer.poll_transmit(plain) {
                    break;
                }
                transport
                    .encrypt_message(plain, &mut self.outbound)
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

fn feed_transport(
    transport: &mut Transport,
    peer: &mut Peer,
    mut data: &[u8],
    now: Instant,
    events: &mut Vec<PeerEvent>,
) -> Result<(), String> {
    // The decoder holds at most one frame; offer the rest after draining what it holds.
    loop {
        let accepted = transport
            .feed(data)
            .map_err(|e| format!("transport: {e}"))?;
        data = &data[accepted..];
        while let Some(msg) = transport
            .next_message()
            .map_err(|e| format!("transport: {e}"))?
        {
            peer.handle_message(msg, now);
            events.extend(std::iter::from_fn(|| peer.poll_event()));
        }
        if data.is_empty() {
            return Ok(());
        }
    }
}

fn write_out(conn: &mut Conn) -> io::Result<()> {
    while conn.written < conn.outbound.len() {
        match conn.stream.write(&conn.outbound[conn.written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => conn.written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    if conn.written == conn.outbound.len() {
        conn.outbound.clear();
        conn.written = 0;
    } else if conn.written > conn.outbound.len() / 2 {
        conn.outbound.drain(..conn.written);
        conn.written = 0;
    }
    Ok(())
}

/// Peer-supplied text made safe for one log line.
fn printable(data: &[u8]) -> String {
    String::from_utf8_lossy(&data[..data.len().min(200)])
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
