//! The operator's side of the connection room: what the admin API and the metrics scrape ask
//! ([`NetCommand`], through a [`NetHandle`] from any thread: a queue and the loop's waker),
//! and the loop's answers: the peers, an operator's `connect` answered once it connected or
//! failed, `disconnect`, the connection figures, `stop`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;
use lnhub_conn::MessageCounts;
use mio::Waker;
use secp256k1::PublicKey;

use super::{Dialer, Node, MIN_BACKOFF};
use crate::config::PeerAddr;

/// What the admin API and the metrics scrape ask of the connection room.
pub enum NetCommand {
    /// The connected peers.
    Peers(Sender<Vec<PeerInfo>>),
    /// Dial a peer; answered once it is connected or the dial failed.
    Connect(PeerAddr, Sender<Result<(), String>>),
    /// Close a peer's connection; answered with whether it was connected.
    Disconnect(PublicKey, Sender<bool>),
    /// Connection figures for the metrics.
    Stats(Sender<NetStats>),
    /// Stop the daemon (as SIGTERM does).
    Stop,
}

/// A connected peer.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// Its node id.
    pub node_id: PublicKey,
    /// Its address.
    pub addr: SocketAddr,
    /// It connected to us.
    pub inbound: bool,
    /// We hold a channel with it (it is never turned away).
    pub has_channels: bool,
    /// Bytes waiting to be written to it.
    pub backlog: usize,
}

/// The connection room's figures.
#[derive(Debug, Clone, Default)]
pub struct NetStats {
    /// Peers connected (init exchanged).
    pub peers: usize,
    /// Open connections, handshakes included.
    pub connections: usize,
    /// Bytes read from peer sockets.
    pub bytes_received: u64,
    /// Bytes written to peer sockets.
    pub bytes_sent: u64,
    /// Messages by type, both ways.
    pub messages: MessageCounts,
}

/// Another thread's way to the connection room: a request, then a wake-up.
#[derive(Clone)]
pub struct NetHandle {
    pub(super) tx: Sender<NetCommand>,
    pub(super) waker: Arc<Waker>,
}

impl NetHandle {
    /// Hands `command` to the connection loop; false if it has stopped.
    pub fn send(&self, command: NetCommand) -> bool {
        self.tx.send(command).is_ok() && self.waker.wake().is_ok()
    }
}

impl Node {
    /// Answers the operator's requests.
    pub(super) fn commands(&mut self) {
        while let Ok(command) = self.commands_rx.try_recv() {
            match command {
                NetCommand::Peers(reply) => {
                    let peers = self
                        .by_node_id
                        .iter()
                        .filter_map(|(id, t)| {
                            let c = self.conns.get(t)?;
                            Some(PeerInfo {
                                node_id: *id,
                                addr: c.addr,
                                inbound: c.dialer.is_none(),
                                has_channels: self.channel_peers.contains(id),
                                backlog: c.conn.backlog(),
                            })
                        })
                        .collect();
                    let _ = reply.send(peers);
                }
                NetCommand::Connect(peer, reply) => self.operator_connect(peer, reply),
                NetCommand::Disconnect(node_id, reply) => {
                    let token = self.by_node_id.get(&node_id).copied();
                    if let Some(token) = token {
                        self.close(token, "disconnected by the operator".into());
                        self.finish(token);
                    }
                    let _ = reply.send(token.is_some());
                }
                NetCommand::Stats(reply) => {
                    let mut messages = self.closed_counts;
                    for c in self.conns.values() {
                        messages.add(c.conn.message_counts());
                    }
                    let _ = reply.send(NetStats {
                        peers: self.by_node_id.len(),
                        connections: self.conns.len(),
                        bytes_received: self.bytes_received,
                        bytes_sent: self.bytes_sent,
                        messages,
                    });
                }
                NetCommand::Stop => self.stopping = true,
            }
        }
    }

    /// The operator's `connect`: dials the peer (unless it is connected already) and answers
    /// once it is connected or the dial failed.
    pub(super) fn operator_connect(&mut self, peer: PeerAddr, reply: Sender<Result<(), String>>) {
        if peer.node_id == self.key.node_id {
            let _ = reply.send(Err("that is this node's own id".into()));
            return;
        }
        if self.by_node_id.contains_key(&peer.node_id) {
            let _ = reply.send(Ok(()));
            return;
        }
        let existing = self
            .dialers
            .iter()
            .position(|d| d.peer.node_id == peer.node_id && !d.retired);
        let index = match existing {
            // A configured peer, or a dial in progress: wait for it (with the operator's
            // address if it is a dial of theirs).
            Some(i) => i,
            None => {
                self.dialers.push(Dialer {
                    peer,
                    once: true,
                    retired: false,
                    token: None,
                    resolving: false,
                    next_attempt: Instant::now(),
                    backoff: MIN_BACKOFF,
                });
                self.dialers.len() - 1
            }
        };
        self.connect_waiters.entry(index).or_default().push(reply);
        let d = &self.dialers[index];
        if d.token.is_none() && !d.resolving {
            self.dial(index, Instant::now());
        }
    }

    /// Tells the operators waiting on dialer `index` how it went; an operator's dial that
    /// failed is retired (never dialled again).
    pub(super) fn answer_connect(&mut self, index: usize, result: Result<(), String>) {
        for reply in self.connect_waiters.remove(&index).unwrap_or_default() {
            let _ = reply.send(result.clone());
        }
        if result.is_err() && self.dialers[index].once {
            self.dialers[index].retired = true;
        }
    }
}
