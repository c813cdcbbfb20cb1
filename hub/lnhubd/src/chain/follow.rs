//! The chain thread: follows bitcoind's best chain (the [`Tracker`]), reads each new block
//! once (a few kept for the wallet and the watcher to share), feeds the funding-output
//! [`Watcher`] and the wallet, tells the shards the height and their channels' news, and
//! serves the shards' requests and the operator's wallet commands in between.

use std::collections::{HashMap, VecDeque};
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash as _;
use bitcoin::{Amount, FeeRate, OutPoint, Transaction, Txid};
use crossbeam_channel::{select, Receiver, Sender};
use lnhub_chain::{ChainEvent, Header, Position, Tracker, Watch, Watcher, DEFAULT_WINDOW};
use lnhub_engine::{ChainRequest, FundingStatus, Input};
use lnhub_wire::types::{ChannelId, ShortChannelId};
use serde_json::{json, Value};

use super::{encode_hex, from_hex, summaries, tell_shards, ChainSource, ChainStats, POLL};
use crate::wallet::HubWallet;

/// Blocks kept after reading them (the watcher and the wallet read the same ones).
const RECENT_BLOCKS: usize = 8;

/// What the operator asks of the wallet (answered on the chain thread, which owns it).
pub enum WalletCommand {
    /// A new receive address.
    NewAddress(Sender<Result<Value, String>>),
    /// Unspent outputs and balances.
    ListFunds(Sender<Result<Value, String>>),
    /// Pays `amount` (everything when `None`) to `address`, at `sat_per_vb` or the
    /// estimate, and broadcasts it.
    Withdraw {
        /// Where to.
        address: String,
        /// How much.
        amount: Option<Amount>,
        /// The feerate in sat/vB, if the operator gives one.
        sat_per_vb: Option<u64>,
        /// Where the answer goes.
        reply: Sender<Result<Value, String>>,
    },
}

/// Follows the node on a thread of its own: every new height goes to every shard; the
/// shards' requests ([`ChainRequest`], from `requests`) are served: funding outputs watched
/// through every block connected and disconnected ([`Watcher`]) and their news sent to the
/// asking shard ([`Input::Funding`]), transactions broadcast and broadcast again at each
/// block until they confirm. The wallet, if any, is fed every block and answers `commands`.
pub fn follow<S: ChainSource>(
    node: S,
    tracker: Tracker,
    engine: lnhub_engine::Admin,
    stats: Arc<ChainStats>,
    requests: Receiver<(usize, ChainRequest)>,
    wallet: Option<(HubWallet, Receiver<WalletCommand>)>,
) -> Result<(), String> {
    let (wallet, commands) = match wallet {
        Some((w, c)) => (Some(w), c),
        None => (None, crossbeam_channel::never()),
    };
    let mut follower = Follower {
        node,
        tracker,
        engine,
        stats,
        watcher: Watcher::new(),
        owners: HashMap::new(),
        broadcasts: HashMap::new(),
        unaccounted: Vec::new(),
        unread: VecDeque::new(),
        recent: VecDeque::new(),
        wallet,
        last_error: None,
    };
    std::thread::Builder::new()
        .name("chain".into())
        .spawn(move || follower.run(&requests, commands))
        .map(|_| ())
        .map_err(|e| format!("chain thread: {e}"))
}

struct Follower<S> {
    node: S,
    tracker: Tracker,
    engine: lnhub_engine::Admin,
    stats: Arc<ChainStats>,
    watcher: Watcher<ChannelId>,
    /// The shard that asked about each watched channel (it owns the channel).
    owners: HashMap<ChannelId, usize>,
    /// Transactions to broadcast until they confirm, by channel.
    broadcasts: HashMap<Txid, (Option<ChannelId>, Transaction)>,
    /// Watched outputs the node's UTXO set does not hold: unconfirmed, or spent while we were
    /// not watching. The recent blocks are read again for them ([`Follower::rescan`]).
    unaccounted: Vec<ChannelId>,
    /// Blocks the tracker connected that the watcher has not read yet (a failed read is
    /// tried again at the next poll).
    unread: VecDeque<Header>,
    /// The last blocks read.
    recent: VecDeque<(bitcoin::BlockHash, Arc<bitcoin::Block>)>,
    wallet: Option<HubWallet>,
    last_error: Option<(String, Instant)>,
}

impl<S: ChainSource> Follower<S> {
    fn run(
        &mut self,
        requests: &Receiver<(usize, ChainRequest)>,
        mut commands: Receiver<WalletCommand>,
    ) {
        // The wallet catches up with the blocks it missed while we were stopped.
        if let Err(e) = self.sync_wallet() {
            self.warn(e);
        }
        let mut events = Vec::new();
        let mut next_poll = Instant::now() + POLL;
        loop {
            let timeout = next_poll.saturating_duration_since(Instant::now());
            select! {
                recv(requests) -> r => match r {
                    Ok((shard, request)) => {
                        self.serve(shard, request);
                        // A burst of requests (every channel after a restart) is answered
                        // once.
                        if requests.is_empty() {
                            self.report_changes();
                            self.publish();
                        }
                    }
                    // The engine is gone: the daemon is stopping.
                    Err(_) => return,
                },
                recv(commands) -> c => match c {
                    Ok(c) => {
                        self.command(c);
                        self.publish();
                    }
                    // No admin API (it is off): nothing more will come.
                    Err(_) => commands = crossbeam_channel::never(),
                },
                default(timeout) => {}
            }
            // Requests and commands never hold back the poll for long.
            if Instant::now() < next_poll {
                continue;
            }
            next_poll = Instant::now() + POLL;
            if !self.unaccounted.is_empty() {
                match self.rescan() {
                    Ok(()) => self.report_changes(),
                    Err(e) => self.warn(format!("reading recent blocks again: {e}")),
                }
            }
            let before = self.tracker.tip().map(|t| t.hash);
            let result = self.poll(&mut events);
            if let Err(e) = result {
                self.stats.poll_errors.fetch_add(1, Ordering::Relaxed);
                self.warn(e);
                continue;
            }
            self.last_error = None;
            if self.tracker.tip().map(|t| t.hash) == before {
                continue;
            }
            if let Some(height) = self.tracker.height() {
                log::info!("chain: height {height}");
                tell_shards(&self.engine, height);
                self.rebroadcast();
            }
            self.report_changes();
            self.publish();
        }
    }

    /// Sets the gauges the metrics read.
    fn publish(&self) {
        let s = &self.stats;
        s.watched
            .store(self.watcher.watched().count() as u64, Ordering::Relaxed);
        s.pending
            .store(self.broadcasts.len() as u64, Ordering::Relaxed);
        if let Some(w) = &self.wallet {
            for (gauge, sat) in s.wallet.iter().zip(w.balances()) {
                gauge.store(sat, Ordering::Relaxed);
            }
        }
    }

    /// Logs a failure, once a minute for the same one.
    fn warn(&mut self, e: String) {
        let repeat = self
            .last_error
            .as_ref()
            .is_some_and(|(l, at)| *l == e && at.elapsed() < Duration::from_secs(60));
        if !repeat {
            log::warn!("chain: {e}");
            self.last_error = Some((e, Instant::now()));
        }
    }

    /// Moves to the node's tip: the watcher reads every block connected (and forgets what
    /// disconnected ones said), then the wallet follows.
    fn poll(&mut self, events: &mut Vec<ChainEvent>) -> Result<(), String> {
        let tip = self.node.best()?;
        let node = &mut self.node;
        self.tracker
            .update(tip, |h| node.header(h), events)
            .map_err(|e| format!("{e:?}"))?;
        for e in events.drain(..) {
            match e {
                ChainEvent::Disconnected(h) => {
                    self.stats.disconnected.fetch_add(1, Ordering::Relaxed);
                    log::warn!(
                        "chain: block {} at height {} left the best chain",
                        encode_hex(&h.hash),
                        h.height
                    );
                    match self.unread.iter().position(|u| u.hash == h.hash) {
                        Some(i) => {
                            self.unread.remove(i);
                        }
                        None => self.watcher.block_disconnected(h.hash),
                    }
                }
                ChainEvent::Connected(h) => {
                    self.stats.connected.fetch_add(1, Ordering::Relaxed);
                    log::debug!(
                        "chain: block {} at height {}",
                        encode_hex(&h.hash),
                        h.height
                    );
                    self.unread.push_back(h);
                }
            }
        }
        while let Some(h) = self.unread.front().copied() {
            if self.watcher.watched().next().is_some() {
                let block = self.block(&encode_hex(&h.hash))?;
                self.watcher
                    .block_connected(h.hash, h.height, &summaries(&block));
            }
            self.unread.pop_front();
        }
        self.sync_wallet()
    }

    /// Block `hash`, from the last ones read or from the node.
    fn block(&mut self, hash: &str) -> Result<Arc<bitcoin::Block>, String> {
        let key = bitcoin::BlockHash::from_str(hash).map_err(|e| format!("{hash}: {e}"))?;
        if let Some((_, b)) = self.recent.iter().find(|(h, _)| *h == key) {
            return Ok(b.clone());
        }
        let block = Arc::new(self.node.block(hash)?);
        if self.recent.len() == RECENT_BLOCKS {
            self.recent.pop_front();
        }
        self.recent.push_back((key, block.clone()));
        Ok(block)
    }

    /// Brings the wallet to the tip: from the highest block it holds that is still in the
    /// best chain (a wallet this start created: from the tip itself, its birthday), every
    /// block in order, then one write.
    fn sync_wallet(&mut self) -> Result<(), String> {
        let (Some(wallet), Some(tip)) = (self.wallet.as_mut(), self.tracker.tip().copied()) else {
            return Ok(());
        };
        // A wallet created by this start has never given out an address: it starts at the
        // tip, not at genesis (decided at the first sync only).
        let fresh = wallet.take_fresh();
        if wallet.height() == tip.height
            && wallet
                .checkpoints()
                .first()
                .is_some_and(|(_, h)| encode_hex_rev(h) == encode_hex(&tip.hash))
        {
            return Ok(());
        }
        let mut meet = None;
        for (height, hash) in wallet.checkpoints() {
            if height > tip.height {
                continue;
            }
            if self.node.block_hash(height)? == hash {
                meet = Some((height, hash));
                break;
            }
        }
        let Some(mut at) = meet else {
            return Err("the wallet shares no block with bitcoind's chain".into());
        };
        let from = if fresh && at.0 == 0 {
            tip.height.max(1)
        } else {
            at.0 + 1
        };
        for height in from..=tip.height {
            let hash = self.node.block_hash(height)?;
            let block = self.block(&hash.to_string())?;
            let wallet = self.wallet.as_mut().expect("checked above");
            wallet.apply_block(&block, height, at)?;
            at = (height, hash);
        }
        self.wallet.as_mut().expect("checked above").commit()
    }

    /// Answers an operator's wallet command.
    fn command(&mut self, command: WalletCommand) {
        let Some(wallet) = self.wallet.as_mut() else {
            return;
        };
        match command {
            WalletCommand::NewAddress(reply) => {
                let answer = wallet
                    .new_address()
                    .map(|a| json!({"address": a.to_string()}));
                let _ = reply.send(answer);
            }
            WalletCommand::ListFunds(reply) => {
                let _ = reply.send(Ok(wallet.list_funds()));
            }
            WalletCommand::Withdraw {
                address,
                amount,
                sat_per_vb,
                reply,
            } => {
                let _ = reply.send(self.withdraw(&address, amount, sat_per_vb));
            }
        }
    }

    fn withdraw(
        &mut self,
        address: &str,
        amount: Option<Amount>,
        sat_per_vb: Option<u64>,
    ) -> Result<Value, String> {
        let sat_per_kw = match sat_per_vb {
            Some(v) => v.saturating_mul(250),
            None => u64::from(self.node.fee_rate()),
        };
        let fee_rate = FeeRate::from_sat_per_kwu(sat_per_kw);
        let wallet = self.wallet.as_mut().ok_or("no wallet")?;
        let address = wallet.parse_address(address)?;
        let tx = wallet.pay_to(address.script_pubkey(), amount, fee_rate)?;
        let txid = tx.compute_txid();
        if let Err(e) = self.node.broadcast(&tx) {
            // Never sent: its coins are the wallet's again.
            if let Some(w) = self.wallet.as_mut() {
                w.abandon(txid)?;
            }
            return Err(format!("{txid}: {e}"));
        }
        self.stats.broadcasts.fetch_add(1, Ordering::Relaxed);
        log::info!("wallet: withdrew to {address} in {txid}");
        // Sent again at each block until it confirms.
        self.broadcasts.insert(txid, (None, tx.clone()));
        Ok(json!({
            "txid": txid.to_string(),
            "fee_sat_per_kw": sat_per_kw,
            "outputs": tx.output.len(),
        }))
    }

    fn serve(&mut self, shard: usize, request: ChainRequest) {
        match request {
            ChainRequest::Watch {
                channel_id,
                outpoint,
                depth,
                restored,
            } => {
                self.owners.insert(channel_id, shard);
                let watched = lnhub_chain::OutPoint {
                    txid: outpoint.txid.to_byte_array(),
                    vout: outpoint.vout,
                };
                self.watcher.watch(
                    channel_id,
                    Watch {
                        outpoint: watched,
                        report_depth: depth,
                    },
                );
                if let Err(e) = self.catch_up(&channel_id, &outpoint, restored) {
                    self.warn(format!("funding {outpoint} of channel {channel_id}: {e}"));
                }
            }
            ChainRequest::Broadcast { channel_id, tx } => {
                // Our funding transaction becomes the wallet's once it goes out.
                if let Some(w) = self.wallet.as_mut() {
                    if let Err(e) = w.broadcasting(&tx) {
                        self.warn(e);
                    }
                }
                self.send_tx(Some(channel_id), &tx);
                self.broadcasts
                    .insert(tx.compute_txid(), (Some(channel_id), tx));
            }
            ChainRequest::Fund {
                temporary_channel_id,
                script,
                amount,
            } => {
                let fee_rate = FeeRate::from_sat_per_kwu(u64::from(self.node.fee_rate()));
                let tx = match self.wallet.as_mut() {
                    Some(w) => w.fund(script, Amount::from_sat(amount.0), fee_rate),
                    None => Err("no on-chain wallet".into()),
                };
                match &tx {
                    Ok(tx) => log::info!(
                        "wallet: funding transaction {} for channel {temporary_channel_id}",
                        tx.compute_txid()
                    ),
                    Err(e) => log::warn!("wallet: cannot fund channel {temporary_channel_id}: {e}"),
                }
                let _ = self.engine.send(
                    shard,
                    Input::FundingTx {
                        temporary_channel_id,
                        tx,
                    },
                );
            }
            ChainRequest::Abandon { txid } => {
                if let Some(w) = self.wallet.as_mut() {
                    if let Err(e) = w.abandon(txid) {
                        self.warn(e);
                    }
                }
            }
            ChainRequest::Forget { channel_id } => {
                self.unaccounted.retain(|id| *id != channel_id);
                self.watcher.forget(&channel_id);
                self.owners.remove(&channel_id);
                self.broadcasts.retain(|_, (id, _)| *id != Some(channel_id));
            }
        }
    }

    /// A funding output already confirmed when it is first watched (after a restart, or a
    /// funding that confirmed before the channel's establishment ended): the node's
    /// `gettxout` gives its confirmations, the block at that height its position.
    fn catch_up(
        &mut self,
        channel_id: &ChannelId,
        outpoint: &OutPoint,
        restored: bool,
    ) -> Result<(), String> {
        if self.watcher.is_confirmed(channel_id) {
            return Ok(());
        }
        let Some((confirmations, best)) = self.node.confirmations(outpoint)? else {
            // Unconfirmed, or (restored after a stop) spent already: recent blocks say which.
            if restored {
                self.unaccounted.push(*channel_id);
            }
            return Ok(());
        };
        let best = self.node.header(&best)?;
        let height = (u64::from(best.height) + 1)
            .checked_sub(confirmations)
            .and_then(|h| u32::try_from(h).ok())
            .ok_or("gettxout: more confirmations than blocks")?;
        let (hash, txs) = self.block_at(height)?;
        let txid = outpoint.txid.to_byte_array();
        let index = txs
            .iter()
            .position(|t| t.txid == txid)
            .ok_or("the funding transaction is not in the block gettxout names")?;
        self.watcher.set_confirmed(
            channel_id,
            Position {
                height,
                block: hash,
                tx_index: u32::try_from(index).map_err(|_| "transaction index")?,
            },
        );
        Ok(())
    }

    /// Reads the last [`DEFAULT_WINDOW`] blocks again for outputs the node's UTXO set did not
    /// hold when they were first watched: a funding that confirmed and was spent (a channel
    /// closed on chain while lnhubd was stopped) is found there, with its spender. Older
    /// than that, it is logged as not found.
    fn rescan(&mut self) -> Result<(), String> {
        let Some(tip) = self.tracker.height() else {
            return Ok(());
        };
        let from = tip.saturating_sub(DEFAULT_WINDOW as u32 - 1);
        log::info!(
            "chain: {} watched output(s) not in the UTXO set: reading blocks {from}..={tip} again",
            self.unaccounted.len()
        );
        for height in from..=tip {
            let (hash, txs) = self.block_at(height)?;
            self.watcher.block_connected(hash, height, &txs);
        }
        for id in std::mem::take(&mut self.unaccounted) {
            if self.watcher.is_spent(&id) {
                log::info!("chain: channel {id}: its funding was spent while we were away");
            } else if !self.watcher.is_confirmed(&id) {
                log::debug!("chain: channel {id}: funding not confirmed in the last blocks");
            }
        }
        Ok(())
    }

    /// The best chain's block at `height`: its hash (as the tracker holds hashes) and what
    /// the watcher needs of its transactions.
    fn block_at(
        &mut self,
        height: u32,
    ) -> Result<(lnhub_chain::BlockHash, Vec<lnhub_chain::TxSummary>), String> {
        let hash = self.node.block_hash(height)?.to_string();
        let block = self.block(&hash)?;
        let key = from_hex(&hash).ok_or("getblockhash: not a block hash")?;
        Ok((key, summaries(&block)))
    }

    /// Tells each watched channel's shard what changed at the tip.
    fn report_changes(&mut self) {
        let Some(tip) = self.tracker.height() else {
            return;
        };
        let mut changes = Vec::new();
        self.watcher.changes(tip, &mut changes);
        for (channel_id, status) in changes {
            let Some(shard) = self.owners.get(&channel_id).copied() else {
                continue;
            };
            let vout = self
                .watcher
                .watch_of(&channel_id)
                .map_or(0, |w| w.outpoint.vout);
            let scid = status.confirmed.and_then(|p| {
                let vout = u16::try_from(vout).ok()?;
                ShortChannelId::new(p.height, p.tx_index, vout)
            });
            let status = FundingStatus {
                scid,
                depth: status.depth,
                spent: status
                    .spent
                    .map(|(txid, _, depth)| (Txid::from_byte_array(txid), depth)),
            };
            log::debug!("chain: channel {channel_id}: {status:?}");
            let _ = self
                .engine
                .send(shard, Input::Funding { channel_id, status });
        }
    }

    /// Broadcasts again every transaction not yet confirmed.
    fn rebroadcast(&mut self) {
        // A funding transaction is done once the watcher saw it confirm, a closing one once
        // the funding is spent (by it, or by whatever won), a withdrawal once the wallet
        // holds it confirmed.
        let (watcher, wallet) = (&self.watcher, &self.wallet);
        self.broadcasts.retain(|txid, (id, _)| match id {
            Some(id) => {
                let funding_confirmed = watcher.is_confirmed(id)
                    && watcher
                        .watch_of(id)
                        .is_some_and(|w| w.outpoint.txid == txid.to_byte_array());
                !(funding_confirmed || watcher.is_spent(id))
            }
            None => wallet.as_ref().is_some_and(|w| !w.is_confirmed(*txid)),
        });
        let pending: Vec<(Option<ChannelId>, Transaction)> = self
            .broadcasts
            .values()
            .map(|(id, tx)| (*id, tx.clone()))
            .collect();
        for (id, tx) in pending {
            self.send_tx(id, &tx);
        }
    }

    fn send_tx(&mut self, channel_id: Option<ChannelId>, tx: &Transaction) {
        let txid = tx.compute_txid();
        let of = channel_id.map_or("the wallet".to_string(), |c| format!("channel {c}"));
        match self.node.broadcast(tx) {
            Ok(true) => {
                self.stats.broadcasts.fetch_add(1, Ordering::Relaxed);
                log::info!("chain: broadcast {txid} ({of})")
            }
            Ok(false) => log::debug!("chain: {txid} already known"),
            Err(e) => self.warn(format!("broadcasting {txid} of {of}: {e}")),
        }
    }
}

/// A bitcoin block hash as bitcoind writes it.
fn encode_hex_rev(hash: &bitcoin::BlockHash) -> String {
    hash.to_string()
}
