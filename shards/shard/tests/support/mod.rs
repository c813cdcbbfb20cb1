//! What the shard's establishment and chain tests share: a recording `Io`, a hub shard, the
//! peer's side built on the channel crate's own state machines, and turns that return what the
//! hub sent and asked of the chain.

// Each test binary uses part of it.
#![allow(dead_code, unused_imports)]

#[path = "../../../channel/tests/common/mod.rs"]
pub mod testing;

pub use std::collections::{HashMap, HashSet, VecDeque};

pub use bitcoin::absolute::LockTime;
pub use bitcoin::hashes::{sha256d, Hash};
pub use bitcoin::transaction::Version;
pub use bitcoin::{OutPoint, ScriptBuf, Sequence, Transaction, TxIn, Txid, Witness};
pub use lnhub_channel::{
    Effect, EstablishConfig, Establishing, LocalKeys, NegotiatedType, OpenRequest, PeerContext,
};
pub use lnhub_forward::{Limits, Policy};
pub use lnhub_onion::{ReplayConfig, ReplayError, ReplaySet};
pub use lnhub_shard::{
    ChainRequest, ChannelState, FundingStatus, Input, Io, MemoryStore, OpenConfig, PolicyChange,
    Route, Shard, ShardConfig, ShardReport,
};
pub use lnhub_tx::ChannelType;
pub use lnhub_wire::msgs::{ChannelReestablish, Message};
pub use lnhub_wire::types::{ChainHash, ChannelId, Msat, Sat, ShortChannelId};
pub use secp256k1::{All, PublicKey, Secp256k1, SecretKey};

/// The unix time the shard starts at.
pub const T0: u64 = 1_700_000_000;

thread_local! {
    /// Routes the shard published for the other shards ([`Io::publish_route`]), in this test.
    pub static PUBLISHED: std::cell::RefCell<Vec<(ShortChannelId, Route)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

pub struct Collect {
    pub to_peers: HashMap<PublicKey, VecDeque<Message>>,
    pub disconnected: Vec<PublicKey>,
    pub replays: ReplaySet,
    pub reports: Vec<(u64, ShardReport)>,
    pub chain: Vec<ChainRequest>,
}

impl Default for Collect {
    fn default() -> Collect {
        Collect {
            to_peers: HashMap::new(),
            disconnected: Vec::new(),
            replays: ReplaySet::new(ReplayConfig::default(), 100),
            reports: Vec::new(),
            chain: Vec::new(),
        }
    }
}

impl Io for Collect {
    fn connected(&mut self, _: &PublicKey, _: u64) {}
    fn send(&mut self, node_id: &PublicKey, msg: Message) {
        self.to_peers.entry(*node_id).or_default().push_back(msg);
    }
    fn disconnect(&mut self, node_id: &PublicKey) {
        self.disconnected.push(*node_id);
    }
    fn to_shard(&mut self, _: usize, _: Input) {
        panic!("one shard only");
    }
    fn publish_route(&mut self, scid: ShortChannelId, route: Route) {
        PUBLISHED.with(|p| p.borrow_mut().push((scid, route)));
    }
    fn check_replays(
        &mut self,
        onions: &[([u8; 32], u32)],
        results: &mut Vec<Result<(), ReplayError>>,
    ) {
        lnhub_shard::check_replays_in(&mut self.replays, onions, results);
    }
    fn replays_at_height(&mut self, height: u32, forgotten: &mut Vec<(u32, u128)>) {
        lnhub_shard::replays_at_height_in(&mut self.replays, height, forgotten);
    }
    fn report(&mut self, id: u64, report: ShardReport) {
        self.reports.push((id, report));
    }
    fn chain(&mut self, request: ChainRequest) {
        self.chain.push(request);
    }
}

pub fn establish_config() -> EstablishConfig {
    lnhub_shard::default_establish_config(ChainHash::REGTEST)
}

pub const POLICY: Policy = Policy {
    fee_base_msat: 1_000,
    fee_proportional_millionths: 100,
    cltv_expiry_delta: 80,
    htlc_minimum_msat: Msat(1),
    htlc_maximum_msat: Msat(u64::MAX),
};

pub fn hub(secp: &Secp256k1<All>, trusted: &[PublicKey], open: bool) -> (Shard, PublicKey) {
    let node_secret = SecretKey::from_slice(&[0x11; 32]).unwrap();
    let config = ShardConfig {
        index: 0,
        node_secret,
        limits: Limits::default(),
        chain_hash: ChainHash::REGTEST,
        close_depth: lnhub_shard::DEFAULT_CLOSE_DEPTH,
        close_script: None,
        open: open.then(|| OpenConfig {
            establish: establish_config(),
            trusted_peers: trusted.iter().copied().collect::<HashSet<_>>(),
            default_policy: POLICY,
            key_nonce_start: 7,
        }),
    };
    (
        Shard::new(config, 100, T0),
        PublicKey::from_secret_key(secp, &node_secret),
    )
}

pub fn funder(secp: &Secp256k1<All>, zeroconf: bool) -> Establishing {
    funder_with(secp, zeroconf, false)
}

/// [`funder`], with `option_simple_close` negotiated when `simple_close`.
pub fn funder_with(secp: &Secp256k1<All>, zeroconf: bool, simple_close: bool) -> Establishing {
    let k = testing::node_keys(secp, 99, "funder");
    let req = OpenRequest {
        temporary_channel_id: ChannelId([0x77; 32]),
        funding_satoshis: Sat(1_000_000),
        push_msat: Msat(100_000_000),
        feerate_per_kw: 253,
        channel_type: NegotiatedType {
            commitment: ChannelType::Anchors,
            scid_alias: true,
            zeroconf,
        },
        announce: false,
        alias: Some(ShortChannelId(0x0100_0000_0001_0001)),
    };
    let ctx = PeerContext {
        trusted_for_zeroconf: true,
        shutdown_anysegwit: simple_close,
        simple_close,
        ..PeerContext::default()
    };
    Establishing::open(
        secp,
        establish_config(),
        LocalKeys {
            secrets: k.secrets,
            pubkeys: k.pubkeys,
        },
        ctx,
        req,
    )
    .expect("a valid open request")
}

pub fn sent(e: &mut Establishing) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(effect) = e.poll_effect() {
        match effect {
            Effect::Send(m) => out.push(m),
            Effect::Persist { seq } => e.handle_persisted(seq),
            _ => {}
        }
    }
    out
}

pub fn turn(
    shard: &mut Shard,
    store: &mut MemoryStore,
    peer: PublicKey,
    msgs: Vec<Message>,
) -> Vec<Message> {
    let mut io = Collect::default();
    let inputs = msgs
        .into_iter()
        .map(|msg| Input::Peer { node_id: peer, msg });
    shard.turn(T0, inputs, store, &mut io).unwrap();
    assert!(io.disconnected.is_empty(), "the hub disconnected a peer");
    io.to_peers.remove(&peer).map(Vec::from).unwrap_or_default()
}

/// A zero-conf funder opens to the hub up to the hub's reply to `funding_created`: returns
/// the funder (with `funding_created` sent) and that reply.
pub fn open_to_funding_signed(
    secp: &Secp256k1<All>,
    shard: &mut Shard,
    store: &mut MemoryStore,
    peer: PublicKey,
) -> (Establishing, Vec<Message>) {
    open_to_funding_signed_with(secp, shard, store, peer, false)
}

/// [`open_to_funding_signed`], with `option_simple_close` on the funder's side when
/// `simple_close` (the hub's side comes from the features of the peer's connection).
pub fn open_to_funding_signed_with(
    secp: &Secp256k1<All>,
    shard: &mut Shard,
    store: &mut MemoryStore,
    peer: PublicKey,
    simple_close: bool,
) -> (Establishing, Vec<Message>) {
    let mut f = funder_with(secp, true, simple_close);
    let replies = turn(shard, store, peer, sent(&mut f));
    let [Message::AcceptChannel(accept)] = &replies[..] else {
        panic!("{replies:?}")
    };
    assert_eq!(accept.minimum_depth, 0, "zero-conf for a trusted peer");
    f.handle_accept_channel(accept)
        .expect("hub's parameters are acceptable");

    fund(secp, &mut f);
    let commits_before = store.commits;
    let replies = turn(shard, store, peer, sent(&mut f));
    assert!(
        store.commits > commits_before,
        "funding_signed only after a durable write"
    );
    (f, replies)
}

/// The funder builds its funding transaction (spending a made-up input: nothing here checks
/// it) and signs the hub's commitment 0: `funding_created` is queued.
pub fn fund(secp: &Secp256k1<All>, f: &mut Establishing) {
    let tx = fabricated_tx(5, vec![f.funding_output().unwrap()]);
    let staged = f.stage_funding(secp, &tx, 0).unwrap();
    f.apply_funding_signature(staged.sign(secp));
}

/// A transaction paying `outputs`, spending output 0 of a made-up transaction (all bytes
/// `input`): nothing in these tests checks its input.
pub fn fabricated_tx(input: u8, outputs: Vec<bitcoin::TxOut>) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: Txid::from_byte_array([input; 32]),
                vout: 0,
            },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: outputs,
    }
}

/// Opens a zero-conf channel from a trusted peer through the shard: returns the peer's side
/// (a `Channel` in normal operation) and the channel id.
pub fn opened(
    secp: &Secp256k1<All>,
    shard: &mut Shard,
    store: &mut MemoryStore,
    peer: PublicKey,
    simple_close: bool,
) -> (lnhub_channel::Channel, ChannelId) {
    let (mut f, replies) = open_to_funding_signed_with(secp, shard, store, peer, simple_close);
    let [Message::FundingSigned(signed), Message::ChannelReady(ready)] = &replies[..] else {
        panic!("{replies:?}")
    };
    let staged = f.stage_funding_signed(secp, signed).unwrap();
    f.apply_funding_signed(staged.verify(secp)).unwrap();
    f.handle_channel_ready(ready).unwrap();
    f.handle_funding_depth(0);
    turn(shard, store, peer, sent(&mut f));
    let id = f.channel_id().unwrap();
    (f.into_channel(), id)
}

/// What the peer's channel queued: its messages and the closing transactions it reported
/// (persists completed at once).
pub fn peer_out(ch: &mut lnhub_channel::Channel) -> (Vec<Message>, Vec<Transaction>) {
    let (mut msgs, mut txs) = (Vec::new(), Vec::new());
    while let Some(e) = ch.poll_effect() {
        match e {
            Effect::Send(m) => msgs.push(m),
            Effect::Persist { seq } => ch.handle_persisted(seq),
            Effect::ClosingTx { tx } => txs.push(tx),
            other => panic!("unexpected {other:?}"),
        }
    }
    (msgs, txs)
}

/// One turn with `inputs`; what the hub sent `peer` and asked of the chain.
pub fn turn_with(
    shard: &mut Shard,
    store: &mut MemoryStore,
    peer: PublicKey,
    inputs: Vec<Input>,
) -> (Vec<Message>, Vec<ChainRequest>) {
    let mut io = Collect::default();
    shard.turn(T0, inputs, store, &mut io).unwrap();
    let sent = io.to_peers.remove(&peer).map(Vec::from).unwrap_or_default();
    (sent, io.chain)
}

/// The peer's side of a channel the hub opens: accepts with `minimum_depth` 3.
pub fn fundee(secp: &Secp256k1<All>, open: &lnhub_wire::msgs::OpenChannel) -> Establishing {
    let k = testing::node_keys(secp, 98, "fundee");
    let ctx = PeerContext::default();
    Establishing::accept(
        secp,
        establish_config(),
        LocalKeys {
            secrets: k.secrets,
            pubkeys: k.pubkeys,
        },
        ctx,
        open,
        Some(ShortChannelId(0x0100_0000_0002_0002)),
    )
    .expect("the hub's open_channel is acceptable")
}

/// `msgs` from `peer`, as shard inputs.
pub fn from_peer(peer: PublicKey, msgs: Vec<Message>) -> Vec<Input> {
    msgs.into_iter()
        .map(|msg| Input::Peer { node_id: peer, msg })
        .collect()
}

/// The operator's `open` (an [`Input::OpenChannel`]) makes the hub send `open_channel`; the
/// peer's side takes it ([`fundee`]). Returns the temporary channel id and the peer's side,
/// with its `accept_channel` queued.
pub fn hub_opens(
    secp: &Secp256k1<All>,
    shard: &mut Shard,
    store: &mut MemoryStore,
    peer: PublicKey,
    open: Input,
) -> (ChannelId, Establishing) {
    let (out, _) = turn_with(shard, store, peer, vec![open]);
    let [Message::OpenChannel(open)] = &out[..] else {
        panic!("the hub sends open_channel: {out:?}")
    };
    (open.temporary_channel_id, fundee(secp, open))
}
