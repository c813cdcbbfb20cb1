//! The on-chain wallet: `bdk_wallet` with keys derived from the node secret, its change sets
//! persisted in the store's `wallet` table (one record per change, merged at start-up), fed
//! the blocks the chain thread follows. It gives the operator addresses (`newaddr`), its coins
//! (`listfunds`) and withdrawals (`withdraw`), all answered on the chain thread, which owns it.
//!
//! Keys: a BIP 32 master key from SHA-256 of a tag and the node secret, and BIP 84 descriptors
//! (`wpkh`, account 0; receive `/0/*`, change `/1/*`). Nothing secret is stored or logged: the
//! change sets hold the public descriptors only.
//!
//! Blocks: from the last block the wallet holds that is still in the best chain, every block
//! up to the tip is applied in order (`apply_block_connected_to` for the first, which moves
//! the wallet off a branch a reorg left, `apply_block` for the rest). A wallet created now
//! starts at the tip: it has never given out an address, so nothing older concerns it.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use bdk_wallet::bitcoin::bip32::Xpriv;
use bdk_wallet::bitcoin::{Address, Amount, Block, FeeRate, Network, OutPoint, Transaction, Txid};
use bdk_wallet::chain::{BlockId, ChainPosition, Merge};
use bdk_wallet::descriptor::IntoWalletDescriptor;
use bdk_wallet::signer::SignersContainer;
use bdk_wallet::{ChangeSet, KeychainKind, SignOptions, Wallet};
use bitcoin::hashes::{sha256, Hash};
use lnhub_schema::{encode_wallet, wallet_key, Batch, Table};
use secp256k1::SecretKey;
use serde_json::{json, Value};

/// The wallet and where its changes are written.
pub struct HubWallet {
    wallet: Wallet,
    /// The signers of both keychains (their private keys stay here, not in the wallet).
    signers: [SignersContainer; 2],
    store: lnhub_store::Handle,
    next_seq: u64,
    batch: Batch,
    /// Created by this start and not yet synced: it starts at the tip.
    fresh: bool,
    /// Funding transactions built and not yet broadcast, with the outputs they spend: kept
    /// out of other transactions, but only in memory, so a crash before the broadcast (which
    /// waits for the peer's `funding_signed` to be durable) leaves the coins free.
    reserved: HashMap<Txid, Vec<OutPoint>>,
}

/// The bitcoin network of our network name.
pub fn network(name: &str) -> Network {
    match name {
        "bitcoin" | "mainnet" => Network::Bitcoin,
        "testnet" => Network::Testnet,
        "signet" => Network::Signet,
        _ => Network::Regtest,
    }
}

/// The receive and change descriptors (with their private keys: never logged).
fn descriptors(node_secret: &SecretKey, network: Network) -> Result<(String, String), String> {
    let mut tagged = b"lnhub wallet seed".to_vec();
    tagged.extend_from_slice(&node_secret.secret_bytes());
    let seed = sha256::Hash::hash(&tagged).to_byte_array();
    let master = Xpriv::new_master(network, &seed).map_err(|e| format!("wallet key: {e}"))?;
    let coin = u32::from(network != Network::Bitcoin);
    Ok((
        format!("wpkh({master}/84'/{coin}'/0'/0/*)"),
        format!("wpkh({master}/84'/{coin}'/0'/1/*)"),
    ))
}

impl HubWallet {
    /// Opens the wallet of `node_secret` from its stored change sets (`Loaded::wallet`), or
    /// creates it; its changes go to the store through `store`.
    pub fn open(
        node_secret: &SecretKey,
        network_name: &str,
        stored: &[(u64, Vec<u8>)],
        store: lnhub_store::Handle,
    ) -> Result<HubWallet, String> {
        let network = network(network_name);
        let (receive, change) = descriptors(node_secret, network)?;
        let mut merged = ChangeSet::default();
        for (seq, bytes) in stored {
            let set: ChangeSet = serde_json::from_slice(bytes)
                .map_err(|e| format!("wallet change set {seq} does not decode: {e}"))?;
            merged.merge(set);
        }
        let next_seq = stored.last().map_or(0, |(s, _)| s + 1);
        let loaded = Wallet::load()
            .descriptor(KeychainKind::External, Some(receive.clone()))
            .descriptor(KeychainKind::Internal, Some(change.clone()))
            .check_network(network)
            .load_wallet_no_persist(merged)
            .map_err(|e| format!("the stored wallet does not load: {e}"))?;
        let fresh = loaded.is_none();
        let wallet = match loaded {
            Some(w) => w,
            None => Wallet::create(receive.clone(), change.clone())
                .network(network)
                .create_wallet_no_persist()
                .map_err(|e| format!("cannot create the wallet: {e}"))?,
        };
        let signer = |descriptor: String, kind| {
            let (_, keymap) = descriptor
                .into_wallet_descriptor(wallet.secp_ctx(), network.into())
                .map_err(|e| format!("wallet descriptor: {e}"))?;
            Ok::<_, String>(SignersContainer::build(
                keymap,
                wallet.public_descriptor(kind),
                wallet.secp_ctx(),
            ))
        };
        let signers = [
            signer(receive, KeychainKind::External)?,
            signer(change, KeychainKind::Internal)?,
        ];
        let mut w = HubWallet {
            wallet,
            signers,
            store,
            next_seq,
            batch: Batch::new(),
            fresh,
            reserved: HashMap::new(),
        };
        w.persist()?;
        Ok(w)
    }

    /// Writes what changed since the last write (one record), and waits until it is durable.
    fn persist(&mut self) -> Result<(), String> {
        let Some(staged) = self.wallet.take_staged() else {
            return Ok(());
        };
        if staged.is_empty() {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&staged).map_err(|e| format!("wallet change set: {e}"))?;
        self.batch.clear();
        self.batch
            .put_with(Table::Wallet, &wallet_key(self.next_seq), |out| {
                encode_wallet(out, &bytes)
            });
        self.store
            .commit(&mut self.batch)
            .map_err(|e| format!("writing the wallet: {e}"))?;
        self.next_seq += 1;
        Ok(())
    }

    /// Whether the wallet was created by this start and has not been synced yet (once).
    pub fn take_fresh(&mut self) -> bool {
        std::mem::take(&mut self.fresh)
    }

    /// The height of the last block the wallet holds.
    pub fn height(&self) -> u32 {
        self.wallet.latest_checkpoint().height()
    }

    /// The wallet's blocks from the top down (height, hash), to find where it meets the best
    /// chain.
    pub fn checkpoints(&self) -> Vec<(u32, bitcoin::BlockHash)> {
        self.wallet
            .checkpoints()
            .map(|cp| (cp.height(), cp.hash()))
            .collect()
    }

    /// Applies `block` at `height`, which follows the wallet's block `connected_to`
    /// (`(height - 1, its hash)` unless the wallet starts or returns from a reorg there).
    pub fn apply_block(
        &mut self,
        block: &Block,
        height: u32,
        connected_to: (u32, bitcoin::BlockHash),
    ) -> Result<(), String> {
        let (h, hash) = connected_to;
        self.wallet
            .apply_block_connected_to(block, height, BlockId { height: h, hash })
            .map_err(|e| format!("wallet: block {} at {height}: {e}", block.block_hash()))
    }

    /// Writes what the blocks applied changed.
    pub fn commit(&mut self) -> Result<(), String> {
        self.persist()
    }

    /// Where this run's cooperative closes pay us: the first change address not yet used
    /// (the same one again if the last run's closes never used it).
    pub fn close_script(&mut self) -> Result<bitcoin::ScriptBuf, String> {
        let info = self.wallet.next_unused_address(KeychainKind::Internal);
        self.persist()?;
        Ok(info.address.script_pubkey())
    }

    /// A new receive address.
    pub fn new_address(&mut self) -> Result<Address, String> {
        let info = self.wallet.reveal_next_address(KeychainKind::External);
        self.persist()?;
        Ok(info.address)
    }

    /// The wallet's unspent outputs and balances, as `listfunds` answers.
    pub fn list_funds(&self) -> Value {
        let network = self.wallet.network();
        let outputs: Vec<Value> = self
            .wallet
            .list_unspent()
            .map(|o| {
                let height = match o.chain_position {
                    ChainPosition::Confirmed { anchor, .. } => Some(anchor.block_id.height),
                    ChainPosition::Unconfirmed { .. } => None,
                };
                json!({
                    "outpoint": o.outpoint.to_string(),
                    "amount_sat": o.txout.value.to_sat(),
                    "address": Address::from_script(&o.txout.script_pubkey, network)
                        .map(|a| a.to_string())
                        .ok(),
                    "confirmation_height": height,
                    "change": o.keychain == KeychainKind::Internal,
                })
            })
            .collect();
        let b = self.wallet.balance();
        json!({
            "outputs": outputs,
            "confirmed_sat": b.confirmed.to_sat(),
            "unconfirmed_sat": (b.trusted_pending + b.untrusted_pending).to_sat(),
            "immature_sat": b.immature.to_sat(),
        })
    }

    /// A signed transaction paying `amount` (everything, less the fee, when `None`) to
    /// `script` at `fee_rate`, to broadcast now: its inputs and change are recorded in the
    /// wallet as unconfirmed.
    pub fn pay_to(
        &mut self,
        script: bitcoin::ScriptBuf,
        amount: Option<Amount>,
        fee_rate: FeeRate,
    ) -> Result<Transaction, String> {
        let tx = self.build(script, amount, fee_rate)?;
        self.record(&tx)?;
        Ok(tx)
    }

    /// A signed funding transaction paying `amount` to `script`, not yet to broadcast: its
    /// inputs are reserved until [`HubWallet::broadcasting`] or [`HubWallet::abandon`].
    pub fn fund(
        &mut self,
        script: bitcoin::ScriptBuf,
        amount: Amount,
        fee_rate: FeeRate,
    ) -> Result<Transaction, String> {
        let tx = self.build(script, Some(amount), fee_rate)?;
        let inputs = tx.input.iter().map(|i| i.previous_output).collect();
        self.reserved.insert(tx.compute_txid(), inputs);
        Ok(tx)
    }

    /// `tx` is about to be broadcast: a reserved funding transaction becomes the wallet's
    /// (recorded as unconfirmed); any other is already.
    pub fn broadcasting(&mut self, tx: &Transaction) -> Result<(), String> {
        if self.reserved.remove(&tx.compute_txid()).is_some() {
            self.record(tx)?;
        }
        Ok(())
    }

    /// Whether the wallet holds `txid` as confirmed.
    pub fn is_confirmed(&self, txid: Txid) -> bool {
        self.wallet
            .get_tx(txid)
            .is_some_and(|t| matches!(t.chain_position, ChainPosition::Confirmed { .. }))
    }

    fn record(&mut self, tx: &Transaction) -> Result<(), String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.wallet.apply_unconfirmed_txs([(tx.clone(), now)]);
        self.persist()
    }

    fn build(
        &mut self,
        script: bitcoin::ScriptBuf,
        amount: Option<Amount>,
        fee_rate: FeeRate,
    ) -> Result<Transaction, String> {
        let reserved: Vec<OutPoint> = self.reserved.values().flatten().copied().collect();
        let mut builder = self.wallet.build_tx();
        builder.fee_rate(fee_rate).unspendable(reserved);
        match amount {
            Some(a) => {
                builder.add_recipient(script, a);
            }
            None => {
                builder.drain_wallet().drain_to(script);
            }
        }
        let mut psbt = builder
            .finish()
            .map_err(|e| format!("cannot build the transaction: {e}"))?;
        let [receive, change] = &self.signers;
        let finalized = self
            .wallet
            .sign_with_signers(&mut psbt, &[receive, change], SignOptions::default())
            .map_err(|e| format!("cannot sign: {e}"))?;
        if !finalized {
            return Err("the wallet could not sign every input".into());
        }
        psbt.extract_tx()
            .map_err(|e| format!("cannot extract the transaction: {e}"))
    }

    /// A transaction built here that will never be broadcast: its inputs are spendable
    /// again (a reserved funding is released; a recorded one is evicted).
    pub fn abandon(&mut self, txid: Txid) -> Result<(), String> {
        log::info!("wallet: abandoned {txid}, never broadcast");
        if self.reserved.remove(&txid).is_some() {
            return Ok(());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.wallet.apply_evicted_txs([(txid, now)]);
        self.persist()
    }

    /// The balance (sat): confirmed, unconfirmed, immature.
    pub fn balances(&self) -> [u64; 3] {
        let b = self.wallet.balance();
        [
            b.confirmed.to_sat(),
            (b.trusted_pending + b.untrusted_pending).to_sat(),
            b.immature.to_sat(),
        ]
    }

    /// `address` checked against the wallet's network.
    pub fn parse_address(&self, address: &str) -> Result<Address, String> {
        Address::from_str(address)
            .map_err(|e| format!("{address:?} is not an address: {e}"))?
            .require_network(self.wallet.network())
            .map_err(|_| {
                format!(
                    "{address:?} is not an address of this network ({})",
                    self.wallet.network()
                )
            })
    }
}
