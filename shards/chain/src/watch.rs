//! Funding outputs under watch: where each one confirmed and what spent it, kept true across
//! reorgs, and the changes worth telling the channel's shard.
//!
//! The shell feeds [`Watcher`] every block the [`crate::Tracker`] connects (the block's
//! transactions, reduced to [`TxSummary`]) and every block it disconnects; a funding found
//! confirmed some other way (at start-up, by asking the node about the output) is given with
//! [`Watcher::set_confirmed`]. [`Watcher::changes`] then says, for each watched output whose
//! [`Status`] changed since it was last reported, the new one. Depths are capped per watch
//! ([`Watch::report_depth`]), so a channel long confirmed costs nothing per block.

use std::collections::HashMap;
use std::hash::Hash;

use crate::BlockHash;

/// A transaction id (compared only; byte order does not matter here).
pub type Txid = [u8; 32];

/// A transaction output: its transaction and index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutPoint {
    /// The transaction.
    pub txid: Txid,
    /// The output index.
    pub vout: u32,
}

/// What the watcher needs of a transaction in a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxSummary {
    /// Its id.
    pub txid: Txid,
    /// The outputs its inputs spend.
    pub spends: Vec<OutPoint>,
}

/// Where a transaction confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The block's height.
    pub height: u32,
    /// The block's hash (a reorg that removes it removes the confirmation).
    pub block: BlockHash,
    /// The transaction's index in the block.
    pub tx_index: u32,
}

/// What to watch for one output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    /// The funding output.
    pub outpoint: OutPoint,
    /// Depths are reported up to this one (the channel's `minimum_depth`, or the depth at
    /// which a spend is final); beyond it only a change of position or spender is.
    pub report_depth: u32,
}

/// A watched output's state at a tip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    /// Where the output's transaction confirmed, if it did.
    pub confirmed: Option<Position>,
    /// Its confirmations, capped at the watch's `report_depth` (0 unconfirmed).
    pub depth: u32,
    /// The transaction spending the output, where it confirmed, and its confirmations
    /// (capped like `depth`).
    pub spent: Option<(Txid, Position, u32)>,
}

#[derive(Debug)]
struct Entry {
    watch: Watch,
    confirmed: Option<Position>,
    spent: Option<(Txid, Position)>,
    reported: Option<Status>,
}

/// The watched outputs, by the caller's key (a channel id).
#[derive(Debug)]
pub struct Watcher<K> {
    entries: HashMap<K, Entry>,
    by_txid: HashMap<Txid, Vec<K>>,
    by_outpoint: HashMap<OutPoint, K>,
}

impl<K> Default for Watcher<K> {
    fn default() -> Self {
        Watcher {
            entries: HashMap::new(),
            by_txid: HashMap::new(),
            by_outpoint: HashMap::new(),
        }
    }
}

impl<K: Copy + Eq + Hash> Watcher<K> {
    /// An empty watcher.
    pub fn new() -> Watcher<K> {
        Watcher::default()
    }

    /// Watches `watch` under `key`. Watching a key again changes its report depth and keeps
    /// what is known of the same output; another output starts over.
    pub fn watch(&mut self, key: K, watch: Watch) {
        if let Some(e) = self.entries.get_mut(&key) {
            if e.watch.outpoint == watch.outpoint {
                e.watch.report_depth = watch.report_depth;
                e.reported = None;
                return;
            }
            self.forget(&key);
        }
        self.by_txid
            .entry(watch.outpoint.txid)
            .or_default()
            .push(key);
        self.by_outpoint.insert(watch.outpoint, key);
        self.entries.insert(
            key,
            Entry {
                watch,
                confirmed: None,
                spent: None,
                reported: None,
            },
        );
    }

    /// Stops watching `key`.
    pub fn forget(&mut self, key: &K) {
        let Some(e) = self.entries.remove(key) else {
            return;
        };
        if let Some(keys) = self.by_txid.get_mut(&e.watch.outpoint.txid) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.by_txid.remove(&e.watch.outpoint.txid);
            }
        }
        self.by_outpoint.remove(&e.watch.outpoint);
    }

    /// Whether `key` is watched.
    pub fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// The watched keys and outputs.
    pub fn watched(&self) -> impl Iterator<Item = (K, Watch)> + '_ {
        self.entries.iter().map(|(k, e)| (*k, e.watch))
    }

    /// What is watched under `key`.
    pub fn watch_of(&self, key: &K) -> Option<Watch> {
        self.entries.get(key).map(|e| e.watch)
    }

    /// Whether `key`'s output is known to be confirmed.
    pub fn is_confirmed(&self, key: &K) -> bool {
        self.entries.get(key).is_some_and(|e| e.confirmed.is_some())
    }

    /// Whether `key`'s output is known to be spent.
    pub fn is_spent(&self, key: &K) -> bool {
        self.entries.get(key).is_some_and(|e| e.spent.is_some())
    }

    /// `key`'s output confirmed at `position`, learnt other than from a connected block.
    pub fn set_confirmed(&mut self, key: &K, position: Position) {
        if let Some(e) = self.entries.get_mut(key) {
            e.confirmed = Some(position);
        }
    }

    /// `key`'s output spent by `txid` at `position`, learnt other than from a connected
    /// block (a scan of blocks the node connected while we were away).
    pub fn set_spent(&mut self, key: &K, txid: Txid, position: Position) {
        if let Some(e) = self.entries.get_mut(key) {
            e.spent = Some((txid, position));
        }
    }

    /// Block `block` at `height` joined the best chain with `txs`, in block order.
    pub fn block_connected(&mut self, block: BlockHash, height: u32, txs: &[TxSummary]) {
        if self.entries.is_empty() {
            return;
        }
        for (index, tx) in txs.iter().enumerate() {
            let position = Position {
                height,
                block,
                tx_index: u32::try_from(index).unwrap_or(u32::MAX),
            };
            if let Some(keys) = self.by_txid.get(&tx.txid) {
                for key in keys {
                    let e = self.entries.get_mut(key).expect("indexed keys are watched");
                    e.confirmed = Some(position);
                }
            }
            for spent in &tx.spends {
                if let Some(key) = self.by_outpoint.get(spent) {
                    let e = self.entries.get_mut(key).expect("indexed keys are watched");
                    e.spent = Some((tx.txid, position));
                }
            }
        }
    }

    /// Block `block` left the best chain: what it confirmed is unconfirmed again.
    pub fn block_disconnected(&mut self, block: BlockHash) {
        for e in self.entries.values_mut() {
            if e.confirmed.is_some_and(|p| p.block == block) {
                e.confirmed = None;
            }
            if e.spent.is_some_and(|(_, p)| p.block == block) {
                e.spent = None;
            }
        }
    }

    /// `key`'s status with the best chain at `tip` (its height).
    pub fn status(&self, key: &K, tip: u32) -> Option<Status> {
        let e = self.entries.get(key)?;
        let depth = |p: &Position| {
            tip.checked_sub(p.height)
                .map_or(0, |d| d.saturating_add(1))
                .min(e.watch.report_depth)
        };
        Some(Status {
            confirmed: e.confirmed,
            depth: e.confirmed.as_ref().map_or(0, depth),
            spent: e.spent.map(|(txid, p)| (txid, p, depth(&p))),
        })
    }

    /// Every watched output whose status at `tip` differs from the one last reported (all
    /// of them the first time), each now counted as reported.
    pub fn changes(&mut self, tip: u32, out: &mut Vec<(K, Status)>) {
        let keys: Vec<K> = self.entries.keys().copied().collect();
        for key in keys {
            let status = self.status(&key, tip).expect("listed keys are watched");
            let e = self.entries.get_mut(&key).expect("listed keys are watched");
            if e.reported != Some(status) {
                e.reported = Some(status);
                out.push((key, status));
            }
        }
    }
}
