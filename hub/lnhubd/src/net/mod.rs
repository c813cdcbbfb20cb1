//! The connection room's shell: one mio event loop that owns every peer socket.
//!
//! It accepts inbound connections, dials configured peers (reconnecting with exponential
//! backoff), and drives one [`lnhub_conn::Connection`] per socket: the BOLT 8 handshake and
//! framing, BOLT 1 and the per-connection bounds are decided there, sans-IO and tested without
//! a socket. This file moves bytes, keeps time, hands channel messages to the shards and
//! enforces what spans connections:
//!
//! - admission ([`lnhub_conn::admission`]): handshakes have their own budget and a
//!   per-address limit, idle ones are cut when a newcomer needs the slot, peers without
//!   channels count against `max_peers`, peers with channels and peers we dial always get in;
//! - one memory budget for every connection's buffers together
//!   ([`memory_budget`]): past it, the connection holding the most is closed;
//! - log lines about unauthenticated connections are rate-limited and summarised;
//! - dialling never blocks the loop: host names are resolved on a helper thread;
//! - reads are drained to `WouldBlock` as mio's edge-triggered readiness requires, except
//!   while the connection pauses reading (a held message, a backlog): then reading resumes
//!   explicitly when the pause ends.
//!
//! `operator` answers what the admin API and the metrics scrape ask of the room.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use secp256k1::PublicKey;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use lnhub_conn::admission::{Admission, AdmissionConfig, Decision, LogBudget};
use lnhub_conn::{Connection, Event, Limits, MessageCounts, READ_CHUNK};
use lnhub_engine::{Engine, Input, Output};
use lnhub_peer::PeerConfig;
use lnhub_wire::msgs::Message;

use crate::config::{self, Config, PeerAddr};

mod operator;
use crate::keys::{self, NodeKey};
pub use operator::{NetCommand, NetHandle, NetStats, PeerInfo};

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
/// The loop's one waker: the engine has output, or a host name was resolved.
const WAKER: Token = Token(2);
const FIRST_CONN: usize = 3;

/// First reconnection delay; doubles after each failure up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Longest reconnection delay: a peer that comes back is found within a minute.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Each peer's share of the connection memory budget: a connection's fixed buffers
/// ([`lnhub_conn::MAX_FIXED_BYTES`], ~192 KiB, mostly unused on an idle link) and room for bursts; one
/// connection may use far more (its backlog up to [`lnhub_conn::MAX_BACKLOG`]) while others
/// use less.
pub const MEMORY_PER_PEER: usize = 256 * 1024;

/// All connection buffers together, at most: `max_peers` x [`MEMORY_PER_PEER`] (256 MiB at
/// the default 1,024 peers).
pub fn memory_budget(max_peers: usize) -> usize {
    max_peers.saturating_mul(MEMORY_PER_PEER)
}

/// Message types the hub sends only to peers it has a channel with: once one goes to a
/// peer, the peer is protected by admission (see [`lnhub_conn::admission`]).
const CHANNEL_PEER_TYPES: [u16; 3] = [
    36,  // channel_ready
    132, // commitment_signed
    136, // channel_reestablish
];

struct Conn {
    stream: TcpStream,
    /// The remote address (for a dial, the one we connected to).
    addr: SocketAddr,
    conn: Connection,
    /// Index into `Node::dialers` when we dialled this connection.
    dialer: Option<usize>,
    /// `Ready` seen: the peer is in `by_node_id`.
    ready: bool,
    /// The socket was not read to `WouldBlock` because the connection paused reading.
    unread: bool,
    /// Interest currently registered (to avoid needless reregistration).
    interest: Interest,
    /// Why the shell is closing it (the connection's own reason, or an I/O one).
    closing: Option<String>,
    /// Bytes counted for this connection in `Node::memory`.
    charged: usize,
}

struct Dialer {
    peer: PeerAddr,
    /// Added by the operator's `connect`: dialled until it connects once, never again after
    /// a failure (configured peers are redialled for ever).
    once: bool,
    /// Given up (an operator's dial that failed).
    retired: bool,
    token: Option<Token>,
    /// A host name is being resolved on a helper thread.
    resolving: bool,
    next_attempt: Instant,
    backoff: Duration,
}

/// The connection room: listener, connections, dialers.
pub struct Node {
    config: Config,
    key: NodeKey,
    peer_config: PeerConfig,
    limits: Limits,
    poll: Poll,
    waker: Arc<Waker>,
    listener: TcpListener,
    signals: Signals,
    conns: HashMap<Token, Conn>,
    by_node_id: HashMap<PublicKey, Token>,
    dialers: Vec<Dialer>,
    resolved_tx: Sender<(usize, io::Result<SocketAddr>)>,
    resolved_rx: Receiver<(usize, io::Result<SocketAddr>)>,
    admission: Admission<IpAddr>,
    /// Peers with channels (from the store, then from what the engine sends them).
    channel_peers: HashSet<PublicKey>,
    /// Log lines about unauthenticated connections.
    stranger_log: LogBudget,
    /// Bytes held by all connections' buffers, and the bound on it.
    memory: usize,
    memory_budget: usize,
    next_token: usize,
    scratch: Vec<u8>,
    plain: Vec<u8>,
    /// The channel engine (`None`: channels are refused at the connection level).
    engine: Option<Engine>,
    /// For each peer, the connection the engine's output is currently for (set when its shard
    /// confirms a connection with `Output::Connected`): output for any other is dropped.
    engine_conns: HashMap<PublicKey, Token>,
    /// The operator's requests ([`NetHandle`]).
    commands_tx: Sender<NetCommand>,
    commands_rx: Receiver<NetCommand>,
    /// Operators waiting for a dial to finish, by dialer.
    connect_waiters: HashMap<usize, Vec<Sender<Result<(), String>>>>,
    /// Bytes read from and written to peer sockets.
    bytes_received: u64,
    bytes_sent: u64,
    /// Messages of connections already closed (the live ones count their own).
    closed_counts: MessageCounts,
    /// The operator asked the daemon to stop.
    stopping: bool,
}

impl Node {
    /// Binds the listener and prepares the dialers; `engine` is started with the waker this
    /// loop creates. `channel_peers` are the peers the store holds channels with. Prints
    /// nothing yet.
    pub fn bind(
        config: Config,
        key: NodeKey,
        peer_config: PeerConfig,
        channel_peers: HashSet<PublicKey>,
        engine: impl FnOnce(Arc<Waker>) -> Result<Option<Engine>, String>,
    ) -> Result<Node, String> {
        let poll = Poll::new().map_err(|e| format!("event loop: {e}"))?;
        let waker =
            Arc::new(Waker::new(poll.registry(), WAKER).map_err(|e| format!("waker: {e}"))?);
        let engine = engine(waker.clone())?;
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
                once: false,
                retired: false,
                token: None,
                resolving: false,
                next_attempt: now,
                backoff: MIN_BACKOFF,
            })
            .collect();
        let (resolved_tx, resolved_rx) = crossbeam_channel::unbounded();
        let (commands_tx, commands_rx) = crossbeam_channel::unbounded();
        Ok(Node {
            commands_tx,
            commands_rx,
            connect_waiters: HashMap::new(),
            bytes_received: 0,
            bytes_sent: 0,
            closed_counts: MessageCounts::default(),
            stopping: false,
            admission: Admission::new(AdmissionConfig::new(config.max_peers)),
            memory_budget: memory_budget(config.max_peers),
            memory: 0,
            channel_peers,
            stranger_log: LogBudget::default(),
            limits: Limits::default(),
            config,
            key,
            peer_config,
            poll,
            waker,
            listener,
            signals,
            conns: HashMap::new(),
            by_node_id: HashMap::new(),
            dialers,
            resolved_tx,
            resolved_rx,
            next_token: FIRST_CONN,
            scratch: vec![0; READ_CHUNK],
            plain: Vec::with_capacity(READ_CHUNK),
            engine,
            engine_conns: HashMap::new(),
        })
    }

    /// A handle other threads use to reach the loop.
    pub fn handle(&self) -> NetHandle {
        NetHandle {
            tx: self.commands_tx.clone(),
            waker: self.waker.clone(),
        }
    }

    /// The channel engine's operator handle, if channels are on.
    pub fn engine_admin(&self) -> Option<lnhub_engine::Admin> {
        self.engine.as_ref().map(Engine::admin)
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
                    WAKER => {
                        self.engine_output();
                        self.retry_held();
                        self.dial_resolved();
                        self.commands();
                        if self.stopping {
                            info!("stop requested over RPC, shutting down");
                            self.shutdown();
                            return Ok(());
                        }
                    }
                    SIGNALS => {
                        if self.signals.pending().next().is_some() {
                            info!("signal received, shutting down");
                            self.shutdown();
                            return Ok(());
                        }
                    }
                    token => {
                        self.check_dial(token);
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
            if let Some(c) = self.conns.get_mut(&token) {
                self.bytes_sent += write_out(c).unwrap_or(0) as u64;
            }
            self.remove(token);
        }
    }

    fn alloc_token(&mut self) -> Token {
        let t = Token(self.next_token);
        self.next_token += 1;
        t
    }

    /// A line about an unauthenticated connection, within the rate limit.
    fn stranger_info(&mut self, now: Instant, line: impl FnOnce() -> String) {
        if self.stranger_log.allow(now) {
            info!("{}", line());
        }
    }

    fn accept_all(&mut self) {
        loop {
            let (mut stream, addr) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of file descriptors, most likely: say so, once per window.
                    let now = Instant::now();
                    self.stranger_info(now, || format!("accept failed: {e}"));
                    return;
                }
            };
            let now = Instant::now();
            let token = self.alloc_token();
            match self.admission.accept(token.0 as u64, addr.ip(), now) {
                Decision::Refuse(why) => {
                    self.stranger_info(now, || format!("refusing connection from {addr}: {why}"));
                    continue;
                }
                Decision::AdmitEvicting(old) => {
                    let old = Token(old as usize);
                    if let Some(c) = self.conns.get_mut(&old) {
                        c.closing = Some("idle handshake closed to make room".into());
                    }
                    self.remove(old);
                }
                Decision::Admit => {}
            }
            let _ = stream.set_nodelay(true);
            let ephemeral = match keys::fresh_secret() {
                Ok(k) => k,
                Err(e) => {
                    warn!("{e}");
                    self.admission.remove(token.0 as u64);
                    continue;
                }
            };
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut stream, token, Interest::READABLE)
            {
                warn!("cannot register {addr}: {e}");
                self.admission.remove(token.0 as u64);
                continue;
            }
            let conn = Connection::inbound(
                &self.key.secret,
                &ephemeral,
                self.peer_config.clone(),
                self.limits.clone(),
                now,
            );
            debug!("inbound connection from {addr}");
            self.conns
                .insert(token, Conn::new(stream, addr, conn, None));
            self.finish(token);
        }
    }

    /// Starts dialler `index`: at once for an IP address, after a helper thread resolved a
    /// host name (the loop never waits for a resolver).
    fn dial(&mut self, index: usize, now: Instant) {
        let peer = self.dialers[index].peer.clone();
        if let Ok(addr) = peer.addr.parse::<SocketAddr>() {
            return self.dial_addr(index, addr, now);
        }
        self.dialers[index].resolving = true;
        let tx = self.resolved_tx.clone();
        let waker = self.waker.clone();
        let host = peer.addr.clone();
        let spawned = std::thread::Builder::new()
            .name("resolver".into())
            .spawn(move || {
                let _ = tx.send((index, config::resolve(&host)));
                let _ = waker.wake();
            });
        if let Err(e) = spawned {
            self.dialers[index].resolving = false;
            info!(
                "dial {}@{} failed: no resolver thread: {e}",
                peer.node_id, peer.addr
            );
            self.backoff(index, now);
        }
    }

    /// Dials what the resolver threads found.
    fn dial_resolved(&mut self) {
        while let Ok((index, result)) = self.resolved_rx.try_recv() {
            self.dialers[index].resolving = false;
            let now = Instant::now();
            match result {
                Ok(addr) => self.dial_addr(index, addr, now),
                Err(e) => {
                    self.answer_connect(index, Err(format!("cannot resolve: {e}")));
                    let d = &self.dialers[index];
                    info!(
                        "dial {}@{} failed: cannot resolve: {e}; next attempt in {} s",
                        d.peer.node_id,
                        d.peer.addr,
                        d.backoff.as_secs()
                    );
                    self.backoff(index, now);
                }
            }
        }
    }

    fn dial_addr(&mut self, index: usize, addr: SocketAddr, now: Instant) {
        let node_id = self.dialers[index].peer.node_id;
        if self.by_node_id.contains_key(&node_id) {
            return; // It connected to us meanwhile.
        }
        let mut stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                self.answer_connect(index, Err(format!("dial {addr} failed: {e}")));
                info!(
                    "dial {node_id}@{addr} failed: {e}; next attempt in {} s",
                    self.dialers[index].backoff.as_secs()
                );
                return self.backoff(index, now);
            }
        };
        let _ = stream.set_nodelay(true);
        let token = self.alloc_token();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self.poll.registry().register(&mut stream, token, interest) {
            warn!("cannot register dial to {addr}: {e}");
            return self.backoff(index, now);
        }
        let ephemeral = match keys::fresh_secret() {
            Ok(k) => k,
            Err(e) => {
                warn!("{e}");
                return self.backoff(index, now);
            }
        };
        let conn = Connection::outbound(
            &self.key.secret,
            &node_id,
            &ephemeral,
            self.peer_config.clone(),
            self.limits.clone(),
            now,
        );
        let mut c = Conn::new(stream, addr, conn, Some(index));
        c.interest = interest;
        self.conns.insert(token, c);
        self.dialers[index].token = Some(token);
        debug!("dialing {node_id}@{addr}");
    }

    /// A dial that failed to connect says why in the socket's error (a refused connect
    /// would otherwise surface as a broken pipe on the first write).
    fn check_dial(&mut self, token: Token) {
        if let Some(c) = self.conns.get_mut(&token) {
            if c.dialer.is_some() && !c.ready && c.closing.is_none() {
                if let Ok(Some(e)) = c.stream.take_error() {
                    c.closing = Some(e.to_string());
                }
            }
        }
    }

    fn backoff(&mut self, index: usize, now: Instant) {
        // An operator's dial is tried once: whoever waits on it hears it failed (if the
        // failure was not already answered with its reason), and it is not tried again.
        if self.dialers[index].once {
            self.answer_connect(index, Err("dial failed".into()));
        }
        let d = &mut self.dialers[index];
        d.token = None;
        d.next_attempt = now + d.backoff;
        d.backoff = (d.backoff * 2).min(MAX_BACKOFF);
    }

    /// Reads while the connection wants bytes, handling each chunk's events before reading
    /// the next, so nothing accumulates beyond one chunk.
    fn read_ready(&mut self, token: Token) {
        loop {
            let Some(c) = self.conns.get_mut(&token) else {
                return;
            };
            if c.closing.is_some() {
                return;
            }
            if !c.conn.wants_read() {
                // Paused (a held message, a backlog): the bytes stay in the kernel, and
                // `finish` reads them when the pause ends.
                c.unread = true;
                return;
            }
            let n = match c.stream.read(&mut self.scratch) {
                Ok(0) => {
                    c.closing.get_or_insert_with(|| "closed by the peer".into());
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.unread = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    c.closing.get_or_insert_with(|| format!("read failed: {e}"));
                    return;
                }
            };
            self.bytes_received += n as u64;
            c.conn.receive(&self.scratch[..n]);
            self.dispatch(token);
        }
    }

    fn flush(&mut self, token: Token) {
        if let Some(c) = self.conns.get_mut(&token) {
            match write_out(c) {
                Ok(n) => self.bytes_sent += n as u64,
                Err(e) => {
                    c.closing
                        .get_or_insert_with(|| format!("write failed: {e}"));
                }
            }
        }
    }

    /// Handles what the connection has to say, until it has nothing more or pauses.
    fn dispatch(&mut self, token: Token) {
        let now = Instant::now();
        loop {
            let Some(c) = self.conns.get_mut(&token) else {
                return;
            };
            if c.closing.is_some() {
                return;
            }
            let Some(event) = c.conn.poll(now, &mut self.plain) else {
                return;
            };
            let node_id = c.conn.node_id();
            match (event, node_id) {
                (Event::Authenticated(node_id), _) => self.authenticated(token, node_id, now),
                (
                    Event::Ready {
                        features,
                        negotiated,
                    },
                    Some(node_id),
                ) => {
                    info!("peer {node_id} ready at {} (features {features:?})", c.addr);
                    c.ready = true;
                    self.peer_ready(token, node_id, negotiated);
                }
                (Event::Channel(msg), Some(node_id)) => {
                    let Some(engine) = &self.engine else {
                        refuse_channel_message(&mut c.conn, &msg, &mut self.plain);
                        continue;
                    };
                    // Back-pressure per socket: a message its shard has no room for is held,
                    // and nothing behind it is decoded (nor the socket read) until it is taken.
                    if let Err(Input::Peer { msg, .. }) =
                        engine.try_send(&node_id, Input::Peer { node_id, msg })
                    {
                        c.conn.hold(msg);
                    }
                }
                (Event::Gossip(msg), Some(node_id)) => {
                    debug!("gossip from {node_id}: type {}", msg.msg_type())
                }
                (Event::Error { channel_id, data }, Some(node_id)) => {
                    warn!("error from {node_id} on {channel_id}: {}", printable(&data))
                }
                (Event::Warning { channel_id, data }, Some(node_id)) => {
                    warn!(
                        "warning from {node_id} on {channel_id}: {}",
                        printable(&data)
                    )
                }
                (Event::Closed(reason), _) => {
                    c.closing.get_or_insert_with(|| reason.to_string());
                }
                (_, None) => {} // Every event past the handshake has a node id.
            }
        }
    }

    /// The handshake of `token` proved `node_id`: admission decides whether it stays.
    fn authenticated(&mut self, token: Token, node_id: PublicKey, now: Instant) {
        let Some(c) = self.conns.get(&token) else {
            return;
        };
        if node_id == self.key.node_id {
            // Only a dial to ourselves gets here (config refuses our id; nobody else holds
            // our key).
            return self.close(token, "that is this node's own id".into());
        }
        let protected = c.dialer.is_some()
            || self.channel_peers.contains(&node_id)
            || self.config.connect.iter().any(|p| p.node_id == node_id);
        if let Decision::Refuse(why) = self.admission.authenticated(token.0 as u64, protected) {
            let addr = c.addr;
            self.stranger_info(now, || format!("refusing {node_id} at {addr}: {why}"));
            if let Some(c) = self.conns.get_mut(&token) {
                c.conn.discard_output(); // No `init` for a refused peer.
            }
            self.close(token, why.to_string());
        }
    }

    /// `init` exchanged: the connection becomes the peer's live one and the engine learns it.
    fn peer_ready(
        &mut self,
        token: Token,
        node_id: PublicKey,
        negotiated: lnhub_wire::features::Features,
    ) {
        if let Some(&old) = self.by_node_id.get(&node_id) {
            if old != token {
                info!("{node_id} reconnected; closing its previous connection");
                self.close(old, "replaced by a new connection".into());
                self.remove(old);
            }
        }
        self.by_node_id.insert(node_id, token);
        if let Some(index) = self.conns.get(&token).and_then(|c| c.dialer) {
            self.answer_connect(index, Ok(()));
        }
        if let Some(engine) = &self.engine {
            engine.send(
                &node_id,
                Input::PeerConnected {
                    node_id,
                    connection: token.0 as u64,
                    features: negotiated,
                },
            );
        }
    }

    fn close(&mut self, token: Token, reason: String) {
        if let Some(c) = self.conns.get_mut(&token) {
            c.closing.get_or_insert(reason);
        }
    }

    /// After I/O on a connection: handles events, writes output, applies a close, keeps the
    /// memory budget, adjusts the registered interest, and resumes paused reading.
    fn finish(&mut self, token: Token) {
        loop {
            self.dispatch(token);
            let Some(c) = self.conns.get_mut(&token) else {
                return;
            };
            // Also when closing: a connection's last words (a `warning`) go out first, as far
            // as the socket takes them now.
            match write_out(c) {
                Ok(n) => self.bytes_sent += n as u64,
                Err(e) => {
                    c.closing
                        .get_or_insert_with(|| format!("write failed: {e}"));
                }
            }
            if c.closing.is_some() {
                return self.remove(token);
            }
            let now_holds = c.conn.memory();
            self.memory = self.memory - c.charged + now_holds;
            c.charged = now_holds;
            let want = if c.conn.backlog() > 0 {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if want != c.interest
                && self
                    .poll
                    .registry()
                    .reregister(&mut c.stream, token, want)
                    .is_ok()
            {
                c.interest = want;
            }
            let resume = c.unread && c.conn.wants_read();
            if self.memory > self.memory_budget {
                self.enforce_memory_budget();
            }
            if !resume {
                return;
            }
            // Leaving a pause: bytes may already wait in the kernel, and with edge-triggered
            // readiness no new event announces them. Read, then go round.
            self.read_ready(token);
        }
    }

    /// Closes the connections holding the most until all fit the budget again.
    fn enforce_memory_budget(&mut self) {
        while self.memory > self.memory_budget {
            let Some((&token, c)) = self.conns.iter().max_by_key(|(_, c)| c.charged) else {
                return;
            };
            warn!(
                "closing {} ({}): it holds {} KiB and all connections {} KiB, past the budget \
                 of {} KiB",
                c.conn.node_id().map(|n| n.to_string()).unwrap_or_default(),
                c.addr,
                c.charged / 1024,
                self.memory / 1024,
                self.memory_budget / 1024
            );
            self.close(token, "connection memory budget".into());
            self.remove(token);
        }
    }

    fn remove(&mut self, token: Token) {
        let Some(mut c) = self.conns.remove(&token) else {
            return;
        };
        self.closed_counts.add(c.conn.message_counts());
        self.memory -= c.charged;
        self.admission.remove(token.0 as u64);
        let _ = self.poll.registry().deregister(&mut c.stream);
        let reason = c.closing.take().unwrap_or_else(|| "closed".into());
        let now = Instant::now();
        if let Some(index) = c.dialer {
            if !c.ready {
                self.answer_connect(index, Err(format!("dial {} failed: {reason}", c.addr)));
                let d = &self.dialers[index];
                info!(
                    "dial {}@{} failed: {reason}; next attempt in {} s",
                    d.peer.node_id,
                    c.addr,
                    d.backoff.as_secs()
                );
            }
        } else if c.conn.is_handshaking() {
            let addr = c.addr;
            self.stranger_info(now, || {
                format!("connection from {addr} closed in the handshake: {reason}")
            });
        }
        if let Some(node_id) = c.conn.node_id().filter(|_| c.ready) {
            if self.engine_conns.get(&node_id) == Some(&token) {
                self.engine_conns.remove(&node_id);
            }
            if self.by_node_id.get(&node_id) == Some(&token) {
                self.by_node_id.remove(&node_id);
                info!("peer {node_id} disconnected: {reason}");
                if let Some(engine) = &self.engine {
                    // What the peer sent before it left still goes first (rare: blocking).
                    if let Some(msg) = c.conn.take_held() {
                        engine.send(&node_id, Input::Peer { node_id, msg });
                    }
                    engine.send(&node_id, Input::PeerDisconnected { node_id });
                }
            }
        }
        if let Some(index) = c.dialer {
            if self.dialers[index].token == Some(token) {
                if c.ready {
                    self.dialers[index].backoff = MIN_BACKOFF;
                }
                self.backoff(index, now);
            }
        }
    }

    /// Offers held messages to their shards again (a shard finished a turn, so its queue may
    /// have room); a connection whose message is taken decodes and reads again.
    fn retry_held(&mut self) {
        let Some(engine) = &self.engine else { return };
        let waiting: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.conn.has_held())
            .map(|(t, _)| *t)
            .collect();
        let mut resumed = Vec::new();
        for token in waiting {
            let Some(c) = self.conns.get_mut(&token) else {
                continue;
            };
            let (Some(node_id), Some(msg)) = (c.conn.node_id(), c.conn.take_held()) else {
                continue;
            };
            match engine.try_send(&node_id, Input::Peer { node_id, msg }) {
                Err(Input::Peer { msg, .. }) => c.conn.hold(msg),
                _ => resumed.push(token),
            }
        }
        for token in resumed {
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
            if let Some(msg) = &msg {
                if CHANNEL_PEER_TYPES.contains(&msg.msg_type())
                    && self.channel_peers.insert(node_id)
                {
                    if let Some(token) = self.by_node_id.get(&node_id) {
                        self.admission.protect(token.0 as u64);
                    }
                }
            }
            // Only to the connection the shard last confirmed, and only while it is the
            // peer's live one: output made for an earlier connection is dropped (its channels
            // retransmit what the peer needs after channel_reestablish).
            let live = self.by_node_id.get(&node_id);
            let Some(&token) = self.engine_conns.get(&node_id).filter(|t| Some(*t) == live) else {
                continue;
            };
            let Some(c) = self.conns.get_mut(&token) else {
                continue;
            };
            match msg {
                // A refused send closes the connection (its backlog is past the bound); the
                // close is polled in `finish`.
                Some(msg) => {
                    c.conn.send(&msg, &mut self.plain);
                }
                None => {
                    c.closing
                        .get_or_insert_with(|| "closed by the engine".into());
                }
            }
            if touched.last() != Some(&token) {
                touched.push(token);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for token in touched {
            self.finish(token);
        }
    }

    fn handle_timers(&mut self, now: Instant) {
        let due: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.conn.deadline().is_some_and(|t| now >= t))
            .map(|(t, _)| *t)
            .collect();
        for token in due {
            if let Some(c) = self.conns.get_mut(&token) {
                c.conn.handle_timeout(now, &mut self.plain);
            }
            self.finish(token);
        }
        if let Some(left_out) = self.stranger_log.summary(now) {
            info!(
                "{left_out} more line(s) about unauthenticated connections left out (at most {} \
                 per {} s)",
                self.stranger_log.lines_per_window(),
                lnhub_conn::admission::LOG_WINDOW.as_secs()
            );
        }
        for index in 0..self.dialers.len() {
            let d = &self.dialers[index];
            if d.token.is_none()
                && !d.resolving
                && !d.retired
                && now >= d.next_attempt
                && !self.by_node_id.contains_key(&d.peer.node_id)
            {
                self.dial(index, now);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let conns = self.conns.values().filter_map(|c| c.conn.deadline());
        let dials = self
            .dialers
            .iter()
            .filter(|d| d.token.is_none() && !d.resolving && !d.retired)
            .map(|d| d.next_attempt);
        conns.chain(dials).chain(self.stranger_log.deadline()).min()
    }
}

impl Conn {
    fn new(stream: TcpStream, addr: SocketAddr, conn: Connection, dialer: Option<usize>) -> Conn {
        Conn {
            stream,
            addr,
            conn,
            dialer,
            ready: false,
            unread: false,
            interest: Interest::READABLE,
            closing: None,
            charged: 0,
        }
    }
}

/// Without a channel engine every channel is unknown. BOLT 1 says to answer channel messages
/// (types 32-255) for unknown channels with an `error` for that channel_id, which also tells
/// an opener clearly that we do not accept channels.
fn refuse_channel_message(conn: &mut Connection, msg: &Message, plain: &mut Vec<u8>) {
    let channel_type = (32..=255).contains(&msg.msg_type());
    if let (true, Some(channel_id)) = (channel_type, msg.channel_id()) {
        let text = match msg {
            Message::OpenChannel(_) => "lnhub does not accept channels yet",
            _ => "unknown channel",
        };
        conn.send_error(channel_id, text, plain);
    }
}

/// Writes what the connection has to send, as far as the socket takes it; returns the bytes
/// written.
fn write_out(c: &mut Conn) -> io::Result<usize> {
    let mut written = 0;
    loop {
        let out = c.conn.output();
        if out.is_empty() {
            return Ok(written);
        }
        match c.stream.write(out) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                c.conn.consume(n);
                written += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Peer-supplied text made safe for one log line.
fn printable(data: &[u8]) -> String {
    String::from_utf8_lossy(&data[..data.len().min(200)])
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
