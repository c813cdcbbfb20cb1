//! Shared fixtures for the channel tests: a seeded PRNG and a pair of
//! channels in normal operation built from agreed parameters (what
//! establishment will produce), plus helpers that do the staged crypto
//! inline.

#![allow(dead_code)]

use bitcoin::hashes::{sha256, Hash, HashEngine};
use bitcoin::{Amount, OutPoint, Txid};
use lnhub_channel::{
    Channel, ChannelError, ChannelPolicy, ChannelSecrets, FundedChannel, ShutdownTerms, SideLimits,
};
use lnhub_tx::keys::per_commitment_point;
use lnhub_tx::shachain::{generate_from_seed, MAX_INDEX};
use lnhub_tx::{ChannelParams, ChannelPublicKeys, ChannelType, Side, SideParams};
use lnhub_wire::msgs::CommitmentSigned;
use lnhub_wire::types::{ChannelId, Msat, Sat};
use secp256k1::{All, PublicKey, Secp256k1, SecretKey};

/// SplitMix64: tiny, seedable, good enough to pick interleavings.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (hi exclusive, hi > lo).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next_u64() % den < num
    }

    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for c in b.chunks_mut(8) {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        b
    }
}

fn key(seed: u64, label: &str) -> SecretKey {
    let mut e = sha256::Hash::engine();
    e.input(&seed.to_le_bytes());
    e.input(label.as_bytes());
    SecretKey::from_slice(&sha256::Hash::from_engine(e).to_byte_array())
        .expect("a hash is a valid key but with negligible probability")
}

/// One side's keys.
pub struct NodeKeys {
    pub secrets: ChannelSecrets,
    pub pubkeys: ChannelPublicKeys,
}

pub fn node_keys(secp: &Secp256k1<All>, seed: u64, name: &str) -> NodeKeys {
    let k = |l: &str| key(seed, &format!("{name}/{l}"));
    let p = |s: &SecretKey| PublicKey::from_secret_key(secp, s);
    let funding_key = k("funding");
    let htlc = k("htlc");
    let mut commitment_seed = [0u8; 32];
    commitment_seed.copy_from_slice(&k("seed").secret_bytes());
    NodeKeys {
        pubkeys: ChannelPublicKeys {
            funding_pubkey: p(&funding_key),
            revocation_basepoint: p(&k("revocation")),
            payment_basepoint: p(&k("payment")),
            delayed_payment_basepoint: p(&k("delayed")),
            htlc_basepoint: p(&htlc),
        },
        secrets: ChannelSecrets {
            funding_key,
            htlc_basepoint_secret: htlc,
            commitment_seed,
        },
    }
}

/// Everything both sides agreed on at opening.
#[derive(Clone, Copy, Debug)]
pub struct Agreement {
    pub channel_type: ChannelType,
    pub funding_sat: u64,
    /// What the funder (A) gave to B at opening.
    pub push_msat: u64,
    pub feerate_per_kw: u32,
    pub dust_limit_a: u64,
    pub dust_limit_b: u64,
    /// Limits A announced (bind B) and B announced (bind A).
    pub limits_a: SideLimits,
    pub limits_b: SideLimits,
    pub policy: ChannelPolicy,
}

impl Agreement {
    pub fn default_for(channel_type: ChannelType) -> Self {
        let limits = SideLimits {
            max_htlc_value_in_flight_msat: Msat(5_000_000_000),
            channel_reserve_satoshis: Sat(100_000),
            htlc_minimum_msat: Msat(1_000),
            max_accepted_htlcs: 30,
        };
        Agreement {
            channel_type,
            funding_sat: 10_000_000,
            push_msat: 3_000_000_000,
            feerate_per_kw: 2_500,
            dust_limit_a: 546,
            dust_limit_b: 354,
            limits_a: limits,
            limits_b: limits,
            policy: ChannelPolicy {
                max_dust_htlc_exposure_msat: Msat(5_000_000),
                min_feerate_per_kw: 253,
                max_feerate_per_kw: 100_000,
            },
        }
    }
}

fn remote_point(secp: &Secp256k1<All>, seed: &[u8; 32], n: u64) -> PublicKey {
    per_commitment_point(secp, &generate_from_seed(seed, MAX_INDEX - n)).expect("valid")
}

/// Two channels, A (funder) and B, in normal operation.
pub fn pair(secp: &Secp256k1<All>, seed: u64, a: &Agreement) -> (Channel, Channel) {
    pair_with_terms(
        secp,
        seed,
        a,
        ShutdownTerms::default(),
        ShutdownTerms::default(),
    )
}

/// [`pair`], with what each side agreed about closing (A's view, B's).
pub fn pair_with_terms(
    secp: &Secp256k1<All>,
    seed: u64,
    a: &Agreement,
    terms_a: ShutdownTerms,
    terms_b: ShutdownTerms,
) -> (Channel, Channel) {
    let ka = node_keys(secp, seed, "a");
    let kb = node_keys(secp, seed, "b");
    let outpoint = OutPoint {
        txid: Txid::from_byte_array(key(seed, "funding-txid").secret_bytes()),
        vout: 0,
    };
    let side_a = SideParams {
        pubkeys: ka.pubkeys,
        to_self_delay: 144,
        dust_limit: Amount::from_sat(a.dust_limit_a),
    };
    let side_b = SideParams {
        pubkeys: kb.pubkeys,
        to_self_delay: 144,
        dust_limit: Amount::from_sat(a.dust_limit_b),
    };
    let amount = Amount::from_sat(a.funding_sat);
    let params_a = ChannelParams::new(
        outpoint,
        amount,
        Side::Local,
        a.channel_type,
        side_a,
        side_b,
    )
    .expect("valid params");
    let params_b = ChannelParams::new(
        outpoint,
        amount,
        Side::Remote,
        a.channel_type,
        side_b,
        side_a,
    )
    .expect("valid params");
    let channel_id = ChannelId(key(seed, "channel-id").secret_bytes());
    let funder_msat = a.funding_sat * 1000 - a.push_msat;
    let ch_a = Channel::from_funded(FundedChannel {
        channel_id,
        params: params_a,
        local_limits: a.limits_a,
        remote_limits: a.limits_b,
        policy: a.policy,
        to_local: Msat(funder_msat),
        to_remote: Msat(a.push_msat),
        feerate_per_kw: a.feerate_per_kw,
        remote_first_per_commitment_point: remote_point(secp, &kb.secrets.commitment_seed, 0),
        remote_second_per_commitment_point: remote_point(secp, &kb.secrets.commitment_seed, 1),
        secrets: ka.secrets.clone(),
        holder_signature: None,
        local_alias: None,
        outbox: None,
        shutdown_terms: terms_a,
    });
    let ch_b = Channel::from_funded(FundedChannel {
        channel_id,
        params: params_b,
        local_limits: a.limits_b,
        remote_limits: a.limits_a,
        policy: a.policy,
        to_local: Msat(a.push_msat),
        to_remote: Msat(funder_msat),
        feerate_per_kw: a.feerate_per_kw,
        remote_first_per_commitment_point: remote_point(secp, &ka.secrets.commitment_seed, 0),
        remote_second_per_commitment_point: remote_point(secp, &ka.secrets.commitment_seed, 1),
        secrets: kb.secrets,
        holder_signature: None,
        local_alias: None,
        outbox: None,
        shutdown_terms: terms_b,
    });
    (ch_a, ch_b)
}

/// Stages, signs and applies our next `commitment_signed` (if any).
pub fn sign(secp: &Secp256k1<All>, ch: &mut Channel) -> Result<bool, ChannelError> {
    match ch.stage_sign(secp)? {
        Some(staged) => {
            ch.apply_signed(staged.sign(secp));
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Stages, signs and applies our next closing message (if any).
pub fn sign_closing(secp: &Secp256k1<All>, ch: &mut Channel) -> Result<bool, ChannelError> {
    match ch.stage_closing_sign()? {
        Some(staged) => {
            ch.apply_closing_sign(staged.sign(secp));
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Stages, verifies and applies the peer's `commitment_signed`.
pub fn receive_commitment(
    secp: &Secp256k1<All>,
    ch: &mut Channel,
    msg: CommitmentSigned,
) -> Result<(), ChannelError> {
    let staged = ch.stage_commitment_signed(secp, msg)?;
    let verified = staged.verify(secp);
    ch.apply_commitment_signed(verified)
}

/// What a channel reported while pumping.
#[derive(Debug, Default)]
pub struct Reported {
    pub broadcasts: Vec<bitcoin::Txid>,
    pub forwards: Vec<u64>,
    pub resolved: Vec<(u64, lnhub_channel::RemovalKind)>,
    pub closing_txs: Vec<bitcoin::Transaction>,
}

/// Hands one peer message to a channel.
pub fn deliver(
    secp: &Secp256k1<All>,
    ch: &mut Channel,
    m: lnhub_wire::Message,
) -> Result<(), ChannelError> {
    match ch.handle_message(secp, m)? {
        lnhub_channel::Routed::NotForChannel(t) => panic!("unexpected message type {t}"),
        routed => routed.finish(secp, ch),
    }
}

/// Drains `ch`'s effects, completing every persist at once; returns the
/// messages it sent.
pub fn drain(ch: &mut Channel, out: &mut Reported) -> Vec<lnhub_wire::Message> {
    use lnhub_channel::Effect;
    let mut msgs = Vec::new();
    while let Some(e) = ch.poll_effect() {
        match e {
            Effect::Send(m) => msgs.push(m),
            Effect::Persist { seq } => ch.handle_persisted(seq),
            Effect::Forward { htlc_id, .. } => out.forwards.push(htlc_id),
            Effect::BroadcastFunding { funding_txid } => out.broadcasts.push(funding_txid),
            Effect::ClosingTx { tx } => out.closing_txs.push(tx),
            Effect::Resolved {
                htlc_id,
                resolution,
            } => out.resolved.push((htlc_id, resolution)),
        }
    }
    msgs
}

/// Runs two channels to quiescence: persists complete at once, messages
/// are delivered in order, each side signs whenever it can.
pub fn pump(
    secp: &Secp256k1<All>,
    a: &mut Channel,
    b: &mut Channel,
) -> Result<(Reported, Reported), ChannelError> {
    let (mut ra, mut rb) = (Reported::default(), Reported::default());
    let (mut to_a, mut to_b) = (
        std::collections::VecDeque::new(),
        std::collections::VecDeque::new(),
    );
    loop {
        let mut progress = sign(secp, a)? | sign(secp, b)?;
        to_b.extend(drain(a, &mut ra));
        to_a.extend(drain(b, &mut rb));
        if let Some(m) = to_b.pop_front() {
            deliver(secp, b, m)?;
            progress = true;
        }
        if let Some(m) = to_a.pop_front() {
            deliver(secp, a, m)?;
            progress = true;
        }
        if !progress {
            return Ok((ra, rb));
        }
    }
}

/// The same two channels as [`pair`], but opened through the real
/// establishment exchange (funder A), so that what `into_channel` hands
/// over is exercised too.
pub fn establish_pair(
    secp: &Secp256k1<All>,
    seed: u64,
    a: &Agreement,
    scid_alias: bool,
) -> (Channel, Channel) {
    use bitcoin::absolute::LockTime;
    use bitcoin::transaction::Version;
    use bitcoin::{ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
    use lnhub_channel::{
        EstablishConfig, Establishing, LocalKeys, NegotiatedType, OpenRequest, PeerContext,
        PeerParamLimits,
    };
    use lnhub_wire::types::{ChainHash, ShortChannelId};
    use lnhub_wire::Message;

    let config = |dust: u64, limits: &SideLimits| EstablishConfig {
        chain_hash: ChainHash::REGTEST,
        dust_limit_satoshis: Sat(dust),
        to_self_delay: 144,
        max_htlc_value_in_flight_msat: limits.max_htlc_value_in_flight_msat,
        channel_reserve_proportional_millionths: (limits.channel_reserve_satoshis.0 * 1_000_000
            / a.funding_sat) as u32,
        htlc_minimum_msat: limits.htlc_minimum_msat,
        max_accepted_htlcs: limits.max_accepted_htlcs,
        minimum_depth: 1,
        policy: a.policy,
        peer_limits: PeerParamLimits {
            max_to_self_delay: 2016,
            min_funding_satoshis: Sat(1),
            max_htlc_minimum_msat: Msat(u64::MAX),
            min_max_htlc_value_in_flight_msat: Msat(0),
            max_channel_reserve_proportional_millionths: 1_000_000,
            min_max_accepted_htlcs: 1,
            max_dust_limit_satoshis: Sat(u64::MAX),
            max_minimum_depth: 144,
        },
    };
    let ctx = PeerContext {
        large_channels: false,
        trusted_for_zeroconf: false,
        ..PeerContext::default()
    };
    let keys = |name: &str| {
        let k = node_keys(secp, seed, name);
        LocalKeys {
            secrets: k.secrets,
            pubkeys: k.pubkeys,
        }
    };
    let sent = |e: &mut Establishing| {
        let mut out = Vec::new();
        while let Some(effect) = e.poll_effect() {
            match effect {
                lnhub_channel::Effect::Send(m) => out.push(m),
                lnhub_channel::Effect::Persist { seq } => e.handle_persisted(seq),
                _ => {}
            }
        }
        out
    };
    let t = NegotiatedType {
        commitment: a.channel_type,
        scid_alias,
        zeroconf: false,
    };
    let req = OpenRequest {
        temporary_channel_id: ChannelId(key(seed, "temporary").secret_bytes()),
        funding_satoshis: Sat(a.funding_sat),
        push_msat: Msat(a.push_msat),
        feerate_per_kw: a.feerate_per_kw,
        channel_type: t,
        announce: !scid_alias,
        alias: Some(ShortChannelId(seed)),
    };
    let mut fa = Establishing::open(
        secp,
        config(a.dust_limit_a, &a.limits_a),
        keys("a"),
        ctx,
        req,
    )
    .expect("a valid request");
    let Some(Message::OpenChannel(open)) = sent(&mut fa).pop() else {
        panic!("open_channel")
    };
    let cb = config(a.dust_limit_b, &a.limits_b);
    let mut fb = Establishing::accept(secp, cb, keys("b"), ctx, &open, Some(ShortChannelId(!seed)))
        .expect("acceptable");
    let Some(Message::AcceptChannel(accept)) = sent(&mut fb).pop() else {
        panic!("accept_channel")
    };
    fa.handle_accept_channel(&accept).expect("acceptable");
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: Txid::from_byte_array(key(seed, "wallet").secret_bytes()),
                vout: 0,
            },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![fa.funding_output().expect("known") as TxOut],
    };
    let staged = fa.stage_funding(secp, &tx, 0).expect("our own funding");
    fa.apply_funding_signature(staged.sign(secp));
    let Some(Message::FundingCreated(created)) = sent(&mut fa).pop() else {
        panic!("funding_created")
    };
    let staged = fb.stage_funding_created(secp, &created).expect("valid");
    let to_sign = fb
        .apply_funding_created(secp, staged.verify(secp))
        .expect("valid signature");
    fb.apply_funding_signed_signature(to_sign.sign(secp));
    let Some(Message::FundingSigned(signed)) = sent(&mut fb).pop() else {
        panic!("funding_signed")
    };
    let staged = fa.stage_funding_signed(secp, &signed).expect("valid");
    fa.apply_funding_signed(staged.verify(secp))
        .expect("valid signature");
    fa.handle_funding_depth(1);
    fb.handle_funding_depth(1);
    let Some(Message::ChannelReady(ra)) = sent(&mut fa).pop() else {
        panic!("channel_ready from A")
    };
    let Some(Message::ChannelReady(rb)) = sent(&mut fb).pop() else {
        panic!("channel_ready from B")
    };
    fa.handle_channel_ready(&rb).expect("valid");
    fb.handle_channel_ready(&ra).expect("valid");
    (fa.into_channel(), fb.into_channel())
}

/// The establishment configuration the establishment tests share:
/// regtest, `minimum_depth` 3, and bounds on the peer that the fixtures'
/// parameters meet.
pub fn establish_config() -> lnhub_channel::EstablishConfig {
    lnhub_channel::EstablishConfig {
        chain_hash: lnhub_wire::types::ChainHash::REGTEST,
        dust_limit_satoshis: Sat(546),
        to_self_delay: 144,
        max_htlc_value_in_flight_msat: Msat(5_000_000_000),
        channel_reserve_proportional_millionths: 10_000,
        htlc_minimum_msat: Msat(1),
        max_accepted_htlcs: 483,
        minimum_depth: 3,
        policy: ChannelPolicy {
            max_dust_htlc_exposure_msat: Msat(5_000_000),
            min_feerate_per_kw: 253,
            max_feerate_per_kw: 100_000,
        },
        peer_limits: lnhub_channel::PeerParamLimits {
            max_to_self_delay: 2016,
            min_funding_satoshis: Sat(20_000),
            max_htlc_minimum_msat: Msat(1_000_000),
            min_max_htlc_value_in_flight_msat: Msat(1_000_000),
            max_channel_reserve_proportional_millionths: 200_000,
            min_max_accepted_htlcs: 5,
            max_dust_limit_satoshis: Sat(10_000),
            max_minimum_depth: 144,
        },
    }
}
