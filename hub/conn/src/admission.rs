//! Who gets a connection slot, and how much a stranger can make us log.
//!
//! A socket costs us a slot before it has proved anything, so strangers must not be able to
//! take the slots that peers with channels need. The rules ([`Admission`]):
//!
//! - Connections still in the BOLT 8 handshake (inbound only: we chose whom we dial) have
//!   their own budget, [`AdmissionConfig::max_handshakes`], and at most
//!   [`AdmissionConfig::max_handshakes_per_address`] from one address.
//! - Under pressure the idle are cut early: when a budget is full, a new connection takes the
//!   slot of the oldest handshake of the same group (the address, or all) if that one has
//!   waited longer than [`AdmissionConfig::handshake_grace`]; an honest peer's handshake takes
//!   a few round trips, so only connections that sit idle lose their slot. If every handshake
//!   is younger, the new connection is refused.
//! - Authenticated peers count against [`AdmissionConfig::max_peers`], except protected ones
//!   (peers we have channels with, and peers we dial): they always get in, so a flood of
//!   strangers never locks out a channel.
//!
//! [`LogBudget`] rate-limits the log lines about unauthenticated connections: a few per
//! window, then a count of what was left out.
//!
//! Addresses are the caller's type `A` (an IP address in the daemon); connections are named
//! by the caller's ids. Time comes in as an argument.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The admission limits.
#[derive(Debug, Clone)]
pub struct AdmissionConfig {
    /// Authenticated peers that are not protected.
    pub max_peers: usize,
    /// Inbound connections in the BOLT 8 handshake.
    pub max_handshakes: usize,
    /// Inbound connections in the handshake from one address.
    pub max_handshakes_per_address: usize,
    /// How long a handshake keeps its slot against a newcomer.
    pub handshake_grace: Duration,
}

/// Default [`AdmissionConfig::max_handshakes`].
pub const MAX_HANDSHAKES: usize = 128;
/// Default [`AdmissionConfig::max_handshakes_per_address`]: a few peers behind one NAT.
pub const MAX_HANDSHAKES_PER_ADDRESS: usize = 8;
/// Default [`AdmissionConfig::handshake_grace`]: far above a handshake's few round trips.
pub const HANDSHAKE_GRACE: Duration = Duration::from_secs(2);

impl AdmissionConfig {
    /// The defaults around `max_peers`.
    pub fn new(max_peers: usize) -> AdmissionConfig {
        AdmissionConfig {
            max_peers,
            max_handshakes: MAX_HANDSHAKES,
            max_handshakes_per_address: MAX_HANDSHAKES_PER_ADDRESS,
            handshake_grace: HANDSHAKE_GRACE,
        }
    }
}

/// The decision on a new connection or a newly authenticated peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let it in.
    Admit,
    /// Let it in, closing connection `evict` (an idle handshake) to make room.
    AdmitEvicting(u64),
    /// Close it.
    Refuse(Refusal),
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every handshake slot is taken by a recent handshake.
    Handshakes,
    /// Every handshake slot of this address is taken by a recent handshake.
    Address,
    /// `max_peers` unprotected peers are connected.
    Peers,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Handshakes => "too many connections in the handshake",
            Refusal::Address => "too many connections in the handshake from this address",
            Refusal::Peers => "max_peers reached",
        })
    }
}

/// The admission state: handshakes by age and address, unprotected peers.
#[derive(Debug)]
pub struct Admission<A> {
    config: AdmissionConfig,
    /// Inbound handshakes by (start, id): the first is the oldest.
    handshakes: BTreeMap<(Instant, u64), A>,
    /// Each handshake's key in `handshakes`.
    handshake_keys: HashMap<u64, Instant>,
    by_address: HashMap<A, usize>,
    /// Authenticated peers counted against `max_peers`.
    peers: HashSet<u64>,
}

impl<A: Hash + Eq + Clone> Admission<A> {
    /// No connections yet.
    pub fn new(config: AdmissionConfig) -> Admission<A> {
        Admission {
            config,
            handshakes: BTreeMap::new(),
            handshake_keys: HashMap::new(),
            by_address: HashMap::new(),
            peers: HashSet::new(),
        }
    }

    /// Inbound connections in the handshake.
    pub fn handshakes(&self) -> usize {
        self.handshakes.len()
    }

    /// Authenticated peers counted against `max_peers`.
    pub fn peers(&self) -> usize {
        self.peers.len()
    }

    /// A socket `id` was accepted from `address` at `now`. On admission it is counted as a
    /// handshake (and an evicted one is forgotten: the caller closes it).
    pub fn accept(&mut self, id: u64, address: A, now: Instant) -> Decision {
        let from_address = self.by_address.get(&address).copied().unwrap_or(0);
        let mut decision = Decision::Admit;
        if from_address >= self.config.max_handshakes_per_address {
            match self.oldest_idle(Some(&address), now) {
                Some(evict) => decision = Decision::AdmitEvicting(evict),
                None => return Decision::Refuse(Refusal::Address),
            }
        } else if self.handshakes.len() >= self.config.max_handshakes {
            match self.oldest_idle(None, now) {
                Some(evict) => decision = Decision::AdmitEvicting(evict),
                None => return Decision::Refuse(Refusal::Handshakes),
            }
        }
        if let Decision::AdmitEvicting(evict) = decision {
            self.remove(evict);
        }
        self.handshakes.insert((now, id), address.clone());
        self.handshake_keys.insert(id, now);
        *self.by_address.entry(address).or_insert(0) += 1;
        decision
    }

    /// Connection `id` (inbound or dialled) completed its handshake as a peer that is
    /// `protected` (has channels with us, or we dial it). Its handshake slot is freed; an
    /// unprotected peer takes a peer slot if one is free.
    pub fn authenticated(&mut self, id: u64, protected: bool) -> Decision {
        self.end_handshake(id);
        if protected {
            return Decision::Admit;
        }
        if self.peers.len() >= self.config.max_peers {
            return Decision::Refuse(Refusal::Peers);
        }
        self.peers.insert(id);
        Decision::Admit
    }

    /// Peer `id` turned out to be protected (a channel with it opened): it no longer counts
    /// against `max_peers`.
    pub fn protect(&mut self, id: u64) {
        self.peers.remove(&id);
    }

    /// Connection `id` is gone, whatever its state.
    pub fn remove(&mut self, id: u64) {
        self.end_handshake(id);
        self.peers.remove(&id);
    }

    fn end_handshake(&mut self, id: u64) {
        let Some(start) = self.handshake_keys.remove(&id) else {
            return;
        };
        if let Some(address) = self.handshakes.remove(&(start, id)) {
            if let Some(n) = self.by_address.get_mut(&address) {
                *n -= 1;
                if *n == 0 {
                    self.by_address.remove(&address);
                }
            }
        }
    }

    /// The oldest handshake (from `address`, or from anywhere) older than the grace period.
    fn oldest_idle(&self, address: Option<&A>, now: Instant) -> Option<u64> {
        self.handshakes
            .iter()
            .take_while(|((start, _), _)| {
                now.saturating_duration_since(*start) > self.config.handshake_grace
            })
            .find(|(_, a)| address.is_none_or(|want| *a == want))
            .map(|((_, id), _)| *id)
    }
}

/// A rate limit on a kind of log line: [`LogBudget::lines_per_window`] lines per window, the
/// rest counted and reported once the window ends.
#[derive(Debug)]
pub struct LogBudget {
    lines_per_window: u32,
    window: Duration,
    window_start: Option<Instant>,
    used: u32,
    suppressed: u64,
}

/// Default lines per window of [`LogBudget`].
pub const LOG_LINES_PER_WINDOW: u32 = 10;
/// Default window of [`LogBudget`].
pub const LOG_WINDOW: Duration = Duration::from_secs(10);

impl Default for LogBudget {
    fn default() -> LogBudget {
        LogBudget::new(LOG_LINES_PER_WINDOW, LOG_WINDOW)
    }
}

impl LogBudget {
    /// `lines_per_window` lines per `window`.
    pub fn new(lines_per_window: u32, window: Duration) -> LogBudget {
        LogBudget {
            lines_per_window,
            window,
            window_start: None,
            used: 0,
            suppressed: 0,
        }
    }

    /// Lines allowed per window.
    pub fn lines_per_window(&self) -> u32 {
        self.lines_per_window
    }

    /// Whether one more line may be written at `now` (if not, it is counted).
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.window_start {
            Some(start) if now < start + self.window => {}
            _ => {
                // A new window; what the last one left out is reported by `summary`.
                self.window_start = Some(now);
                self.used = 0;
            }
        }
        if self.used < self.lines_per_window {
            self.used += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// Once the window in which lines were left out has ended: how many, reset to zero.
    pub fn summary(&mut self, now: Instant) -> Option<u64> {
        let start = self.window_start?;
        if self.suppressed == 0 || now < start + self.window {
            return None;
        }
        self.window_start = None;
        Some(std::mem::take(&mut self.suppressed))
    }

    /// When [`LogBudget::summary`] will have something to say.
    pub fn deadline(&self) -> Option<Instant> {
        (self.suppressed > 0)
            .then_some(self.window_start)
            .flatten()
            .map(|start| start + self.window)
    }
}
