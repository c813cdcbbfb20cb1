//! A real regtest `bitcoind` for the chain tests: the binary `scripts/bitcoind` builds from
//! the Bitcoin Core source vendored in `libbitcoinkernel-sys`, started on free loopback ports
//! with its own data directory, and stopped (killed) on drop.
//!
//! The binary is `LNHUB_BITCOIND` (`.ci/run` sets it from `scripts/bitcoind`), else the
//! script's cache for the crate version it builds. Missing in CI (`CI` set), a test that needs
//! it fails; elsewhere it is skipped with a note saying how to get it.
//!
//! [`TestWallet`] is a one-key regtest wallet (P2WPKH) for real transactions: funded by
//! [`Bitcoind::fund_wallet`] (coinbases, matured), it builds and signs transactions spending
//! its coins ([`TestWallet::build_tx`]) that [`Bitcoind::send`] submits. LDK nodes fund their
//! channels with it (`LdkNodeConfig::wallet`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bitcoin::consensus::encode::deserialize_hex;
use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{
    absolute::LockTime, transaction::Version, Address, Amount, Block, BlockHash,
    CompressedPublicKey, Network, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid,
    Witness,
};
use serde_json::{json, Value};

use crate::{basic_auth, http, TempDir};

/// The `libbitcoinkernel-sys` version `scripts/bitcoind` builds by default.
const CRATE_VERSION: &str = "0.4.1";

/// The `bitcoind` binary, if there is one; `None` (after saying why) outside CI when
/// it is missing; in CI a missing binary panics.
pub fn bitcoind_binary() -> Option<PathBuf> {
    let path = match std::env::var_os("LNHUB_BITCOIND") {
        Some(p) => PathBuf::from(p),
        None => {
            let root = std::env::var_os("LNHUB_CACHE")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/lnhub")))
                .unwrap_or_else(|| PathBuf::from(".cache/lnhub"));
            root.join(format!("bitcoind-{CRATE_VERSION}/bin/bitcoind"))
        }
    };
    if path.exists() {
        return Some(path);
    }
    let why = format!(
        "no bitcoind at {}: run scripts/bitcoind (builds it once, ~10 minutes) or set \
         LNHUB_BITCOIND",
        path.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("skipped: {why}");
    None
}

/// A running regtest `bitcoind`: ours, or one we only talk to ([`Bitcoind::attach`]).
pub struct Bitcoind {
    child: Option<Child>,
    /// Its data directory (removed on drop), when we started it.
    pub dir: Option<TempDir>,
    /// Its RPC address.
    pub rpc: SocketAddr,
    /// Its cookie file.
    pub cookie: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Bitcoind {
    /// Starts `binary` on regtest and waits until its RPC answers.
    pub fn start(binary: &PathBuf) -> Bitcoind {
        let dir = TempDir::new("bitcoind");
        let rpc_port = free_port();
        let child = Command::new(binary)
            .arg("-regtest")
            .arg(format!("-datadir={}", dir.0.display()))
            .arg(format!("-rpcport={rpc_port}"))
            .args([
                "-server",
                "-listen=0",
                "-rpcbind=127.0.0.1",
                "-rpcallowip=127.0.0.1",
                "-fallbackfee=0.0002",
                "-printtoconsole=0",
                "-txindex=0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bitcoind");
        let node = Bitcoind {
            child: Some(child),
            rpc: SocketAddr::from(([127, 0, 0, 1], rpc_port)),
            cookie: dir.0.join("regtest/.cookie"),
            dir: Some(dir),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if node.cookie.exists() && node.try_rpc("getblockchaininfo", json!([])).is_ok() {
                return node;
            }
            assert!(Instant::now() < deadline, "bitcoind did not answer in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A node someone else runs (lnhubd's `--bitcoind auto`), reached at `rpc` with `cookie`.
    pub fn attach(rpc: SocketAddr, cookie: PathBuf) -> Bitcoind {
        Bitcoind {
            child: None,
            dir: None,
            rpc,
            cookie,
        }
    }

    /// `http://127.0.0.1:<port>`, for `--bitcoind-rpc`.
    pub fn url(&self) -> String {
        format!("http://{}", self.rpc)
    }

    fn try_rpc(&self, method: &str, params: Value) -> Result<Value, String> {
        let cookie = std::fs::read_to_string(&self.cookie).map_err(|e| e.to_string())?;
        let auth = basic_auth(cookie.trim());
        let body = json!({"jsonrpc": "1.0", "id": 1, "method": method, "params": params});
        let (status, text) = http(
            self.rpc,
            "POST",
            "/",
            &[("Authorization", &auth)],
            body.to_string().as_bytes(),
        )
        .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{status}: {e}"))?;
        match v.get("error") {
            Some(e) if !e.is_null() => Err(e.to_string()),
            _ => Ok(v["result"].clone()),
        }
    }

    /// Calls `method`; panics with bitcoind's error.
    pub fn rpc(&self, method: &str, params: Value) -> Value {
        self.try_rpc(method, params)
            .unwrap_or_else(|e| panic!("bitcoind {method}: {e}"))
    }

    /// Mines `n` blocks to a fixed regtest address; returns their hashes.
    pub fn mine(&self, n: u32) -> Vec<String> {
        // P2WPKH of the public key of secret 1 (regtest): nobody spends these in the tests.
        let address = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
        let hashes = self.rpc("generatetoaddress", json!([n, address]));
        Self::hashes(hashes)
    }

    /// Mines `n` blocks paying another script (`OP_TRUE`): after `invalidateblock`, blocks
    /// mined as before in the same second would be the invalidated ones again, which the node
    /// refuses.
    pub fn mine_other(&self, n: u32) -> Vec<String> {
        let hashes = self.rpc("generatetodescriptor", json!([n, "raw(51)"]));
        Self::hashes(hashes)
    }

    fn hashes(hashes: Value) -> Vec<String> {
        hashes
            .as_array()
            .expect("block hashes")
            .iter()
            .map(|h| h.as_str().unwrap().to_string())
            .collect()
    }

    /// The best height.
    pub fn height(&self) -> u32 {
        self.rpc("getblockcount", json!([])).as_u64().unwrap() as u32
    }

    /// The best block: `(hash, height)`.
    pub fn tip(&self) -> (BlockHash, u32) {
        let info = self.rpc("getblockchaininfo", json!([]));
        let hash = info["bestblockhash"].as_str().expect("bestblockhash");
        let height = info["blocks"].as_u64().expect("blocks") as u32;
        (hash.parse().expect("block hash"), height)
    }

    /// The hash of the best chain's block at `height`.
    pub fn block_hash(&self, height: u32) -> BlockHash {
        let hash = self.rpc("getblockhash", json!([height]));
        hash.as_str()
            .expect("block hash")
            .parse()
            .expect("block hash")
    }

    /// The block `hash` (any block the node has, in the best chain or not).
    pub fn block(&self, hash: &BlockHash) -> Block {
        let hex = self.rpc("getblock", json!([hash.to_string(), 0]));
        deserialize_hex(hex.as_str().expect("block hex")).expect("a block")
    }

    /// The header of block `hash` (any header the node has).
    pub fn header(&self, hash: &BlockHash) -> bitcoin::block::Header {
        let hex = self.rpc("getblockheader", json!([hash.to_string(), false]));
        deserialize_hex(hex.as_str().expect("header hex")).expect("a header")
    }

    /// Whether block `hash` is in the best chain (`getblockheader` confirmations >= 0); `None`
    /// when the node does not know it.
    pub fn in_best_chain(&self, hash: &BlockHash) -> Option<bool> {
        let header = self
            .try_rpc("getblockheader", json!([hash.to_string(), true]))
            .ok()?;
        Some(header["confirmations"].as_i64().expect("confirmations") >= 0)
    }

    /// `invalidateblock`: the block and its descendants leave the best chain (their
    /// transactions return to the mempool).
    pub fn invalidate(&self, hash: &BlockHash) {
        self.rpc("invalidateblock", json!([hash.to_string()]));
    }

    /// `reconsiderblock`: undoes [`Bitcoind::invalidate`].
    pub fn reconsider(&self, hash: &BlockHash) {
        self.rpc("reconsiderblock", json!([hash.to_string()]));
    }

    /// Mines `n` blocks paying `address`; returns their hashes.
    pub fn mine_to(&self, n: u32, address: &Address) -> Vec<BlockHash> {
        let hashes = self.rpc("generatetoaddress", json!([n, address.to_string()]));
        Self::hashes(hashes)
            .iter()
            .map(|h| h.parse().expect("block hash"))
            .collect()
    }

    /// Mines one block with no transaction but its coinbase (`generateblock`), whatever the
    /// mempool holds; paying `OP_TRUE` like [`Bitcoind::mine_other`].
    pub fn mine_empty(&self) -> BlockHash {
        let v = self.rpc("generateblock", json!(["raw(51)", []]));
        v["hash"]
            .as_str()
            .expect("hash")
            .parse()
            .expect("block hash")
    }

    /// Pays `wallet` the coinbases of `blocks` new blocks, then mines 100 more (to
    /// [`Bitcoind::mine`]'s address) so they mature; the wallet learns its coins from the
    /// blocks. On regtest each coinbase is worth 50 BTC below height 150.
    pub fn fund_wallet(&self, wallet: &TestWallet, blocks: u32) {
        let hashes = self.mine_to(blocks, &wallet.address);
        for hash in hashes {
            let block = self.block(&hash);
            wallet.add_outputs(&block.txdata[0]);
        }
        self.mine(100);
    }

    /// `testmempoolaccept` for `tx`: `Err` with Core's reject reason.
    pub fn accept(&self, tx: &Transaction) -> Result<(), String> {
        let hex = bitcoin::consensus::encode::serialize_hex(tx);
        let v = self.try_rpc("testmempoolaccept", json!([[hex]]))?;
        let r = &v[0];
        if r["allowed"].as_bool() == Some(true) {
            Ok(())
        } else {
            Err(format!(
                "{} {}",
                r["reject-reason"].as_str().unwrap_or("?"),
                r["reject-details"].as_str().unwrap_or("")
            )
            .trim()
            .to_string())
        }
    }

    /// [`Bitcoind::accept`], then `sendrawtransaction`: `Err` with Core's reason.
    pub fn try_send(&self, tx: &Transaction) -> Result<Txid, String> {
        self.accept(tx)?;
        let hex = bitcoin::consensus::encode::serialize_hex(tx);
        let txid = self.try_rpc("sendrawtransaction", json!([hex]))?;
        Ok(txid.as_str().expect("txid").parse().expect("txid"))
    }

    /// [`Bitcoind::try_send`]; panics with Core's reject reason.
    pub fn send(&self, tx: &Transaction) -> Txid {
        self.try_send(tx)
            .unwrap_or_else(|e| panic!("bitcoind refused {}: {e}", tx.compute_txid()))
    }

    /// Whether `txid` is in the mempool.
    pub fn in_mempool(&self, txid: &Txid) -> bool {
        self.try_rpc("getmempoolentry", json!([txid.to_string()]))
            .is_ok()
    }
}

/// A one-key regtest wallet: P2WPKH of a secret derived from a seed byte. It knows the coins
/// [`Bitcoind::fund_wallet`] gave it and the change of its own transactions, and marks coins
/// spent when it builds a transaction (it never learns of confirmations or reorgs). Its state
/// is behind a mutex, so one `Arc<TestWallet>` can serve several threads (LDK's event handler).
#[derive(Debug)]
pub struct TestWallet {
    secret: SecretKey,
    /// Its public key.
    pub public_key: CompressedPublicKey,
    /// Its regtest address.
    pub address: Address,
    /// Its output script (P2WPKH).
    pub script_pubkey: ScriptBuf,
    utxos: Mutex<Vec<(OutPoint, TxOut)>>,
}

/// Virtual size of a P2WPKH input with a 72-byte signature (rounded up).
const P2WPKH_INPUT_VBYTES: u64 = 69;
/// Outputs below this are not created (change is dropped into the fee instead).
const DUST_SAT: u64 = 546;

impl TestWallet {
    /// The wallet whose secret is `sha256("lnhub test wallet" || seed)`.
    pub fn new(seed: u8) -> TestWallet {
        let mut data = b"lnhub test wallet".to_vec();
        data.push(seed);
        let secret = SecretKey::from_slice(&sha256::Hash::hash(&data).to_byte_array())
            .expect("a valid secret");
        let public_key = CompressedPublicKey(secret.public_key(&Secp256k1::signing_only()));
        let address = Address::p2wpkh(&public_key, Network::Regtest);
        TestWallet {
            secret,
            public_key,
            script_pubkey: address.script_pubkey(),
            address,
            utxos: Mutex::new(Vec::new()),
        }
    }

    /// Remembers the outputs of `tx` paying this wallet as unspent.
    pub fn add_outputs(&self, tx: &Transaction) {
        let txid = tx.compute_txid();
        let mut utxos = self.utxos.lock().unwrap();
        for (vout, out) in tx.output.iter().enumerate() {
            if out.script_pubkey == self.script_pubkey {
                utxos.push((OutPoint::new(txid, vout as u32), out.clone()));
            }
        }
    }

    /// The coins it considers unspent.
    pub fn utxos(&self) -> Vec<(OutPoint, TxOut)> {
        self.utxos.lock().unwrap().clone()
    }

    /// The sum of [`TestWallet::utxos`].
    pub fn balance(&self) -> Amount {
        self.utxos().iter().map(|(_, o)| o.value).sum()
    }

    /// [`TestWallet::try_build_tx`]; panics when the wallet cannot pay.
    pub fn build_tx(&self, outputs: Vec<TxOut>, fee_sat_per_vb: u64) -> Transaction {
        self.try_build_tx(outputs, fee_sat_per_vb)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A signed transaction paying `outputs` (in that order) at about `fee_sat_per_vb`
    /// (never below it), spending its coins in the order it learnt them, with change back to
    /// itself as the last output (unless dust). The coins spent are forgotten and the change
    /// remembered at once, so a later transaction may spend it unconfirmed.
    pub fn try_build_tx(
        &self,
        outputs: Vec<TxOut>,
        fee_sat_per_vb: u64,
    ) -> Result<Transaction, String> {
        let mut utxos = self.utxos.lock().unwrap();
        let want: u64 = outputs.iter().map(|o| o.value.to_sat()).sum();
        let output_vbytes = |outs: &[TxOut]| -> u64 { outs.iter().map(|o| o.size() as u64).sum() };
        // Version, locktime, counts, segwit marker and flag: 11 vbytes (rounded up).
        let base_vbytes = 11 + output_vbytes(&outputs);
        let change_vbytes = TxOut {
            value: Amount::ZERO,
            script_pubkey: self.script_pubkey.clone(),
        }
        .size() as u64;
        let (mut n, mut have) = (0usize, 0u64);
        let fee = loop {
            let fee =
                (base_vbytes + change_vbytes + P2WPKH_INPUT_VBYTES * n as u64) * fee_sat_per_vb;
            if n > 0 && have >= want + fee {
                break fee;
            }
            let Some((_, out)) = utxos.get(n) else {
                return Err(format!(
                    "test wallet: {have} sat in {n} coins cannot pay {want} sat + fee"
                ));
            };
            have += out.value.to_sat();
            n += 1;
        };
        let spent: Vec<(OutPoint, TxOut)> = utxos.drain(..n).collect();
        let mut tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: spent
                .iter()
                .map(|(outpoint, _)| TxIn {
                    previous_output: *outpoint,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                    witness: Witness::new(),
                })
                .collect(),
            output: outputs,
        };
        let change = have - want - fee;
        if change >= DUST_SAT {
            tx.output.push(TxOut {
                value: Amount::from_sat(change),
                script_pubkey: self.script_pubkey.clone(),
            });
        }
        let secp = Secp256k1::signing_only();
        let mut witnesses = Vec::with_capacity(spent.len());
        let mut cache = SighashCache::new(&tx);
        for (i, (_, prev)) in spent.iter().enumerate() {
            let sighash = cache
                .p2wpkh_signature_hash(i, &prev.script_pubkey, prev.value, EcdsaSighashType::All)
                .map_err(|e| format!("sighash: {e}"))?;
            let signature =
                secp.sign_ecdsa(&Message::from_digest(sighash.to_byte_array()), &self.secret);
            let signature = bitcoin::ecdsa::Signature {
                signature,
                sighash_type: EcdsaSighashType::All,
            };
            witnesses.push(Witness::p2wpkh(&signature, &self.public_key.0));
        }
        for (input, witness) in tx.input.iter_mut().zip(witnesses) {
            input.witness = witness;
        }
        let txid = tx.compute_txid();
        for (vout, out) in tx.output.iter().enumerate() {
            if out.script_pubkey == self.script_pubkey {
                utxos.push((OutPoint::new(txid, vout as u32), out.clone()));
            }
        }
        Ok(tx)
    }
}

impl Drop for Bitcoind {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
