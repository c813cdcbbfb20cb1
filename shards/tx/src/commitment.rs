//! The commitment transaction (BOLT 3, "Commitment Transaction" and
//! "Commitment Transaction Construction").
//!
//! [`build_commitment`] follows the spec's construction algorithm step by
//! step: obscured commitment number in locktime and sequence, trimming
//! against the *owner's* `dust_limit_satoshis`, the base fee (and, with
//! anchors, 2 * 330 sat) taken from the funder, HTLC / balance / anchor
//! outputs, then BIP 69 ordering with the CLTV tie-break. The result keeps,
//! for every output, what it is, and for every HTLC, which output it became
//! (or that it was trimmed), so the caller can pair `htlc_signatures` with
//! HTLCs without re-deriving anything.
//!
//! [`build_commitment_into`] builds into a commitment built before,
//! reusing its vectors and every output's script buffers: a channel builds
//! a commitment per round, and allocating two scripts per HTLC output each
//! time would make staging cost allocations in proportion to its HTLCs.
//! Its outputs are written in construction order then sorted together with
//! their descriptions in place (a heapsort, so no buffer is needed).
//!
//! Signing is the caller's: [`CommitmentTx::sighash`] gives the message for
//! the funding input, [`CommitmentTx::signed`] assembles the witness.

use bitcoin::absolute::LockTime;
use bitcoin::hashes::sha256;
use bitcoin::transaction::Version;
use bitcoin::{Amount, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use secp256k1::Message;

use crate::fees::{self, ANCHOR_OUTPUT_VALUE};
use crate::keys::CommitmentKeys;
use crate::params::{ChannelParams, ChannelType, Side};
use crate::scripts::{self, HtlcScriptKeys};
use crate::shachain::MAX_INDEX;
use crate::sighash;

/// Upper byte of the commitment locktime (0x20): puts the locktime in the
/// past (a timestamp in 1987) so it never delays the transaction, while
/// marking it as a Lightning commitment.
const LOCKTIME_UPPER: u32 = 0x20 << 24;

/// Upper byte of the commitment input sequence (0x80): the disable flag of
/// BIP 68, so the low 24 bits carry data and impose no relative lock.
const SEQUENCE_UPPER: u32 = 0x80 << 24;

/// Mask of the 24 bits of the obscured number that go in each field.
const LOW_24_BITS: u64 = 0xff_ffff;

/// Direction of an HTLC from the point of view of the commitment's owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HtlcDirection {
    /// The owner offered it (BOLT 3 "Offered HTLC Outputs"; resolved by the
    /// owner through HTLC-timeout).
    Offered,
    /// The owner received it (BOLT 3 "Received HTLC Outputs"; resolved by
    /// the owner through HTLC-success).
    Received,
}

/// One committed HTLC, as the state machine knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HtlcSpec {
    /// The caller's identifier (e.g. `htlc_id` plus a direction bit);
    /// carried through untouched.
    pub id: u64,
    /// Offered or received, seen from the commitment's owner.
    pub direction: HtlcDirection,
    /// `amount_msat`.
    pub amount_msat: u64,
    /// `cltv_expiry`.
    pub cltv_expiry: u32,
    /// `payment_hash`.
    pub payment_hash: sha256::Hash,
}

/// The state one commitment transaction commits to, seen from its owner.
#[derive(Clone, Copy, Debug)]
pub struct CommitmentSpec<'a> {
    /// The commitment number (48 bits; counts up from 0).
    pub commitment_number: u64,
    /// `feerate_per_kw`.
    pub feerate_per_kw: u32,
    /// The owner's balance, excluding HTLCs, before fees and anchors.
    pub to_local_msat: u64,
    /// The other side's balance, excluding HTLCs, before fees and anchors.
    pub to_remote_msat: u64,
    /// All committed HTLCs, in the caller's order.
    pub htlcs: &'a [HtlcSpec],
}

impl CommitmentSpec<'_> {
    /// Everything the spec commits: both balances and every HTLC, in msat. Must equal the
    /// funding amount.
    pub fn committed_msat(&self) -> u128 {
        u128::from(self.to_local_msat)
            + u128::from(self.to_remote_msat)
            + self
                .htlcs
                .iter()
                .map(|h| u128::from(h.amount_msat))
                .sum::<u128>()
    }
}

/// What a commitment output is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutputKind {
    /// The owner's delayed, revocable balance.
    ToLocal,
    /// The other side's balance.
    ToRemote,
    /// The owner's anchor (`to_local_anchor`).
    LocalAnchor,
    /// The other side's anchor (`to_remote_anchor`).
    RemoteAnchor,
    /// An HTLC; the index is into [`CommitmentSpec::htlcs`].
    Htlc {
        /// Index of the HTLC in the spec's list.
        htlc_index: usize,
    },
}

/// Description of one output of the commitment transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputInfo {
    /// What the output is.
    pub kind: OutputKind,
    /// The witness script of the P2WSH output, or `None` for the legacy
    /// P2WPKH `to_remote`.
    pub witness_script: Option<ScriptBuf>,
}

/// One HTLC of the spec and where it went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HtlcOutput {
    /// The HTLC as given.
    pub htlc: HtlcSpec,
    /// Its output index, or `None` if trimmed (its value went to the fee).
    pub output_index: Option<u32>,
}

/// Why a commitment transaction cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitmentError {
    /// The commitment number does not fit in 48 bits.
    CommitmentNumberTooLarge(u64),
    /// Balances plus HTLCs do not add up to the funding amount: the state
    /// machine's books are wrong (a bug, never the peer's input).
    BalanceMismatch {
        /// `funding_satoshis * 1000`.
        funding_msat: u64,
        /// `to_local_msat + to_remote_msat + sum(htlc amount_msat)`.
        committed_msat: u128,
    },
    /// The funder cannot pay for the anchors it must create: the outputs
    /// would exceed the funding amount. BOLT 2 reserve rules prevent this;
    /// the update that led here must be refused.
    OutputsExceedFunding,
    /// An HTLC is given an output but the keys were derived without the
    /// HTLC keys ([`CommitmentKeys::derive_for`] of another spec): a bug.
    MissingHtlcKeys,
}

impl core::fmt::Display for CommitmentError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CommitmentError::CommitmentNumberTooLarge(n) => {
                write!(f, "commitment number {n} exceeds 48 bits")
            }
            CommitmentError::BalanceMismatch {
                funding_msat,
                committed_msat,
            } => write!(
                f,
                "balances and HTLCs sum to {committed_msat} msat, funding is {funding_msat} msat"
            ),
            CommitmentError::MissingHtlcKeys => {
                f.write_str("an HTLC output needs the HTLC keys, derived without them")
            }
            CommitmentError::OutputsExceedFunding => {
                f.write_str("commitment outputs would exceed the funding amount")
            }
        }
    }
}

impl std::error::Error for CommitmentError {}

/// An unsigned commitment transaction and what each part of it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitmentTx {
    owner: Side,
    channel_type: ChannelType,
    commitment_number: u64,
    feerate_per_kw: u32,
    keys: CommitmentKeys,
    tx: Transaction,
    outputs: Vec<OutputInfo>,
    htlcs: Vec<HtlcOutput>,
    base_fee: Amount,
    csv_delay: u16,
}

impl CommitmentTx {
    /// The side that can broadcast this transaction.
    pub fn owner(&self) -> Side {
        self.owner
    }

    /// The channel type it was built for.
    pub fn channel_type(&self) -> ChannelType {
        self.channel_type
    }

    /// The (unobscured) commitment number.
    pub fn commitment_number(&self) -> u64 {
        self.commitment_number
    }

    /// `feerate_per_kw` it was built with (HTLC transactions reuse it).
    pub fn feerate_per_kw(&self) -> u32 {
        self.feerate_per_kw
    }

    /// The per-commitment keys used.
    pub fn keys(&self) -> &CommitmentKeys {
        &self.keys
    }

    /// The CSV delay on the owner's `to_local` and HTLC-transaction outputs.
    pub fn csv_delay(&self) -> u16 {
        self.csv_delay
    }

    /// The unsigned transaction (empty witness).
    pub fn tx(&self) -> &Transaction {
        &self.tx
    }

    /// Its txid (the witness does not change it).
    pub fn txid(&self) -> Txid {
        self.tx.compute_txid()
    }

    /// One entry per output of [`tx`](Self::tx), same order.
    pub fn outputs(&self) -> &[OutputInfo] {
        &self.outputs
    }

    /// One entry per HTLC of the spec, same order.
    pub fn htlcs(&self) -> &[HtlcOutput] {
        &self.htlcs
    }

    /// Indices (into the spec's HTLC list) of the untrimmed HTLCs in output
    /// order: the order of `commitment_signed.htlc_signatures`.
    pub fn htlc_indices_in_output_order(&self) -> impl Iterator<Item = usize> + '_ {
        self.outputs.iter().filter_map(|o| match o.kind {
            OutputKind::Htlc { htlc_index } => Some(htlc_index),
            _ => None,
        })
    }

    /// The base fee (from expected weight and feerate), before trimmed dust.
    pub fn base_fee(&self) -> Amount {
        self.base_fee
    }

    /// Total value of the outputs.
    pub fn output_total(&self) -> Amount {
        self.tx.output.iter().map(|o| o.value).sum()
    }

    /// The index of the first output of `kind`, if present.
    pub fn output_index(&self, kind: OutputKind) -> Option<u32> {
        self.outputs
            .iter()
            .position(|o| o.kind == kind)
            .map(|i| i as u32)
    }

    /// The message both sides sign with their funding keys (SIGHASH_ALL).
    pub fn sighash(&self, params: &ChannelParams) -> Message {
        sighash::funding_input(&self.tx, params)
    }

    /// The transaction with the funding witness filled in. `local_sig` and
    /// `remote_sig` are the funding-key signatures of the channel's
    /// [`Side::Local`] and [`Side::Remote`] (not owner-relative).
    pub fn signed(
        &self,
        params: &ChannelParams,
        local_sig: &secp256k1::ecdsa::Signature,
        remote_sig: &secp256k1::ecdsa::Signature,
    ) -> Transaction {
        let mut tx = self.tx.clone();
        tx.input[0].witness = crate::witness::funding(params, local_sig, remote_sig);
        tx
    }
}

/// The obscured commitment number's two halves: (locktime, sequence).
pub fn obscured_locktime_and_sequence(
    params: &ChannelParams,
    commitment_number: u64,
) -> (u32, u32) {
    let obscured = (commitment_number ^ params.obscuring_factor()) & MAX_INDEX;
    let locktime = LOCKTIME_UPPER | (obscured & LOW_24_BITS) as u32;
    let sequence = SEQUENCE_UPPER | ((obscured >> 24) & LOW_24_BITS) as u32;
    (locktime, sequence)
}

/// Builds the unsigned commitment transaction owned by `owner` (BOLT 3
/// "Commitment Transaction Construction"). To build round after round
/// without allocating per output, see [`build_commitment_into`].
pub fn build_commitment(
    params: &ChannelParams,
    owner: Side,
    keys: &CommitmentKeys,
    spec: &CommitmentSpec<'_>,
) -> Result<CommitmentTx, CommitmentError> {
    let mut commitment = CommitmentTx {
        owner,
        channel_type: params.channel_type(),
        commitment_number: spec.commitment_number,
        feerate_per_kw: spec.feerate_per_kw,
        keys: *keys,
        tx: Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: Vec::new(),
            output: Vec::new(),
        },
        outputs: Vec::new(),
        htlcs: Vec::new(),
        base_fee: Amount::ZERO,
        csv_delay: 0,
    };
    build_commitment_into(&mut commitment, params, owner, keys, spec)?;
    Ok(commitment)
}

/// Builds the same commitment as [`build_commitment`] into `out`, a
/// commitment built before (of any channel), reusing its allocations: the
/// output, HTLC and input vectors, and every output's witness script and
/// `scriptPubKey` buffer. With as many outputs as `out` had, nothing is
/// allocated; each output beyond them allocates its two scripts once.
///
/// On error `out` is left unchanged (every check runs before it is
/// touched).
pub fn build_commitment_into(
    out: &mut CommitmentTx,
    params: &ChannelParams,
    owner: Side,
    keys: &CommitmentKeys,
    spec: &CommitmentSpec<'_>,
) -> Result<(), CommitmentError> {
    let plan = Plan::new(params, owner, spec)?;
    let htlc_keys = match (&keys.htlc, plan.untrimmed_count) {
        (_, 0) => None,
        (Some(k), _) => Some(HtlcScriptKeys::new(
            &keys.revocation_pubkey,
            &k.local_htlc_pubkey,
            &k.remote_htlc_pubkey,
        )),
        (None, _) => return Err(CommitmentError::MissingHtlcKeys),
    };
    let channel_type = plan.channel_type;
    let anchors = channel_type.has_anchors();
    out.owner = owner;
    out.channel_type = channel_type;
    out.commitment_number = spec.commitment_number;
    out.feerate_per_kw = spec.feerate_per_kw;
    out.keys = *keys;
    out.base_fee = plan.base_fee;
    out.csv_delay = plan.csv_delay;
    out.htlcs.clear();
    out.htlcs.extend(spec.htlcs.iter().map(|h| HtlcOutput {
        htlc: *h,
        output_index: None,
    }));

    let mut slots = Slots::new(&mut out.tx.output, &mut out.outputs, plan.output_count);
    // A legacy `to_remote` has no witness script: give it the slot that
    // had none, so no script buffer is dropped here and allocated there.
    if plan.to_remote.is_some() && !anchors {
        slots.place_scriptless(plan.untrimmed_count + usize::from(plan.to_local.is_some()));
    }
    // 4-5. HTLC outputs.
    for (htlc_index, h) in spec.htlcs.iter().enumerate() {
        let Some(htlc_keys) = htlc_keys.filter(|_| plan.keeps(h)) else {
            continue;
        };
        let kind = OutputKind::Htlc { htlc_index };
        let value = Amount::from_sat(h.amount_msat / 1000);
        slots.push_p2wsh(value, kind, |buf| match h.direction {
            HtlcDirection::Offered => {
                scripts::offered_htlc_script_in(buf, htlc_keys, &h.payment_hash, anchors)
            }
            HtlcDirection::Received => scripts::received_htlc_script_in(
                buf,
                htlc_keys,
                &h.payment_hash,
                h.cltv_expiry,
                anchors,
            ),
        });
    }
    // 6. to_local.
    if let Some(value) = plan.to_local {
        slots.push_p2wsh(value, OutputKind::ToLocal, |buf| {
            scripts::to_local_script_in(
                buf,
                &keys.revocation_pubkey,
                plan.csv_delay,
                &keys.local_delayed_pubkey,
            )
        });
    }
    // 7. to_remote.
    if let Some(value) = plan.to_remote {
        let remote_payment_pubkey = &keys.remote_payment_pubkey;
        if anchors {
            slots.push_p2wsh(value, OutputKind::ToRemote, |buf| {
                scripts::to_remote_anchors_script_in(buf, remote_payment_pubkey)
            });
        } else {
            slots.push_p2wpkh(value, OutputKind::ToRemote, remote_payment_pubkey);
        }
    }
    // 8. Anchors.
    for (present, side, kind) in [
        (plan.local_anchor, owner, OutputKind::LocalAnchor),
        (plan.remote_anchor, owner.other(), OutputKind::RemoteAnchor),
    ] {
        if present {
            let funding_pubkey = &params.side(side).pubkeys.funding_pubkey;
            slots.push_p2wsh(ANCHOR_OUTPUT_VALUE, kind, |buf| {
                scripts::anchor_script_in(buf, funding_pubkey)
            });
        }
    }
    slots.finish();
    // 9. BIP 69 + CLTV order.
    let mut sorting = Sorting {
        output: &mut out.tx.output,
        info: &mut out.outputs,
        htlcs: spec.htlcs,
    };
    sorting.sort();
    for (i, info) in out.outputs.iter().enumerate() {
        if let OutputKind::Htlc { htlc_index } = info.kind {
            out.htlcs[htlc_index].output_index = Some(i as u32);
        }
    }

    let (locktime, sequence) = obscured_locktime_and_sequence(params, spec.commitment_number);
    out.tx.version = Version::TWO;
    out.tx.lock_time = LockTime::from_consensus(locktime);
    out.tx.input.truncate(1);
    let input = TxIn {
        previous_output: params.funding_outpoint(),
        script_sig: ScriptBuf::new(),
        sequence: Sequence(sequence),
        witness: Witness::new(),
    };
    match out.tx.input.first_mut() {
        Some(first) => *first = input,
        None => out.tx.input.push(input),
    }
    Ok(())
}

/// Whether the commitment of `spec` owned by `owner` has an HTLC output:
/// an HTLC above the owner's dust limit once its second-stage fee is
/// counted (BOLT 3 "Trimmed Outputs"). Without one it needs no HTLC keys.
pub fn has_htlc_outputs(params: &ChannelParams, owner: Side, spec: &CommitmentSpec<'_>) -> bool {
    let (channel_type, dust_limit) = (params.channel_type(), params.side(owner).dust_limit);
    spec.htlcs
        .iter()
        .any(|h| untrimmed(channel_type, spec.feerate_per_kw, dust_limit, h))
}

/// Whether `h` gets an output on a commitment of this type and feerate
/// whose owner's dust limit is `dust_limit`.
fn untrimmed(
    channel_type: ChannelType,
    feerate_per_kw: u32,
    dust_limit: Amount,
    h: &HtlcSpec,
) -> bool {
    !fees::is_trimmed(
        channel_type,
        feerate_per_kw,
        dust_limit,
        h.direction == HtlcDirection::Offered,
        h.amount_msat,
    )
}

/// Everything a commitment's outputs are, computed and checked from the
/// spec before any output is written (so a refused build leaves the
/// target untouched).
struct Plan {
    channel_type: ChannelType,
    feerate_per_kw: u32,
    /// The owner's dust limit: what is trimmed.
    dust_limit: Amount,
    csv_delay: u16,
    base_fee: Amount,
    untrimmed_count: usize,
    /// `to_local`'s value, if above dust.
    to_local: Option<Amount>,
    /// `to_remote`'s value, if above dust.
    to_remote: Option<Amount>,
    local_anchor: bool,
    remote_anchor: bool,
    output_count: usize,
}

impl Plan {
    fn new(
        params: &ChannelParams,
        owner: Side,
        spec: &CommitmentSpec<'_>,
    ) -> Result<Plan, CommitmentError> {
        if spec.commitment_number > MAX_INDEX {
            return Err(CommitmentError::CommitmentNumberTooLarge(
                spec.commitment_number,
            ));
        }
        let funding_msat = params.funding_amount().to_sat() * 1000;
        let committed_msat = spec.committed_msat();
        if committed_msat != u128::from(funding_msat) {
            return Err(CommitmentError::BalanceMismatch {
                funding_msat,
                committed_msat,
            });
        }
        let channel_type = params.channel_type();
        let anchors = channel_type.has_anchors();
        let mut plan = Plan {
            channel_type,
            feerate_per_kw: spec.feerate_per_kw,
            dust_limit: params.side(owner).dust_limit,
            csv_delay: params.csv_delay_for(owner),
            base_fee: Amount::ZERO,
            untrimmed_count: 0,
            to_local: None,
            to_remote: None,
            local_anchor: false,
            remote_anchor: false,
            output_count: 0,
        };

        // 1-2. Trim, then the base fee from the untrimmed count.
        let (mut untrimmed_count, mut htlc_total) = (0, Amount::ZERO);
        for h in spec.htlcs.iter().filter(|h| plan.keeps(h)) {
            untrimmed_count += 1;
            htlc_total += Amount::from_sat(h.amount_msat / 1000);
        }
        plan.untrimmed_count = untrimmed_count;
        plan.base_fee =
            fees::commitment_base_fee(channel_type, spec.feerate_per_kw, plan.untrimmed_count);

        // 3. Fee (and anchors) from the funder's balance.
        let mut to_local = Amount::from_sat(spec.to_local_msat / 1000);
        let mut to_remote = Amount::from_sat(spec.to_remote_msat / 1000);
        let both_anchors = ANCHOR_OUTPUT_VALUE + ANCHOR_OUTPUT_VALUE;
        let funder_charge = if anchors {
            plan.base_fee + both_anchors
        } else {
            plan.base_fee
        };
        let funder_balance = if params.funder() == owner {
            &mut to_local
        } else {
            &mut to_remote
        };
        // The funder pays the anchors first, then as much base fee as it can (floor of 0).
        let anchors_paid = (*funder_balance).min(funder_charge).min(if anchors {
            both_anchors
        } else {
            Amount::ZERO
        });
        *funder_balance = funder_balance
            .checked_sub(funder_charge)
            .unwrap_or(Amount::ZERO);

        // 6-8. Which balance and anchor outputs exist.
        let dust_limit = plan.dust_limit;
        let above_dust = |v: Amount| (v >= dust_limit && v > Amount::ZERO).then_some(v);
        plan.to_local = above_dust(to_local);
        plan.to_remote = above_dust(to_remote);
        let any_htlc = plan.untrimmed_count > 0;
        plan.local_anchor = anchors && (plan.to_local.is_some() || any_htlc);
        plan.remote_anchor = anchors && (plan.to_remote.is_some() || any_htlc);
        let anchor_count = usize::from(plan.local_anchor) + usize::from(plan.remote_anchor);
        plan.output_count = plan.untrimmed_count
            + usize::from(plan.to_local.is_some())
            + usize::from(plan.to_remote.is_some())
            + anchor_count;

        let anchors_created = ANCHOR_OUTPUT_VALUE * anchor_count as u64;
        let total = htlc_total
            + plan.to_local.unwrap_or(Amount::ZERO)
            + plan.to_remote.unwrap_or(Amount::ZERO)
            + anchors_created;
        // Anchors are the funder's to pay: they may not be paid for out of trimmed HTLCs.
        if total > params.funding_amount() || anchors_created > anchors_paid {
            return Err(CommitmentError::OutputsExceedFunding);
        }
        Ok(plan)
    }

    /// Whether `h` gets an output (is not trimmed).
    fn keeps(&self, h: &HtlcSpec) -> bool {
        untrimmed(self.channel_type, self.feerate_per_kw, self.dust_limit, h)
    }
}

/// Capacity of every witness-script buffer: the longest witness script
/// of a commitment (an HTLC one), so any buffer fits any output's script
/// and reusing buffers across outputs of different kinds never grows them.
const WITNESS_SCRIPT_CAPACITY: usize = scripts::HTLC_SCRIPT_MAX_LEN;
const _: () = assert!(scripts::TO_LOCAL_SCRIPT_MAX_LEN <= WITNESS_SCRIPT_CAPACITY);

/// The output vectors of a commitment being refilled in construction
/// order: slot `len` of both is overwritten in place (its script buffers
/// reused), or pushed past the previous end.
struct Slots<'a> {
    output: &'a mut Vec<TxOut>,
    info: &'a mut Vec<OutputInfo>,
    len: usize,
}

impl<'a> Slots<'a> {
    fn new(output: &'a mut Vec<TxOut>, info: &'a mut Vec<OutputInfo>, count: usize) -> Self {
        // Both vectors always have the same length; reserve for the larger.
        let grow = count.saturating_sub(info.len());
        output.reserve(grow);
        info.reserve(grow);
        Slots {
            output,
            info,
            len: 0,
        }
    }

    /// Moves a previous slot without a witness script to `index`, if there
    /// is one and `index` is a previous slot.
    fn place_scriptless(&mut self, index: usize) {
        if index >= self.info.len() {
            return;
        }
        if let Some(p) = self.info.iter().position(|o| o.witness_script.is_none()) {
            self.output.swap(p, index);
            self.info.swap(p, index);
        }
    }

    /// The next slot, with its previous script buffers taken out
    /// (emptied, or new ones past the previous end).
    fn next(&mut self) -> (&mut TxOut, &mut OutputInfo, Vec<u8>, Option<Vec<u8>>) {
        if self.len == self.info.len() {
            self.output.push(TxOut {
                value: Amount::ZERO,
                script_pubkey: ScriptBuf::new(),
            });
            self.info.push(OutputInfo {
                kind: OutputKind::ToLocal,
                witness_script: None,
            });
        }
        let (txout, info) = (&mut self.output[self.len], &mut self.info[self.len]);
        self.len += 1;
        let spk = core::mem::take(&mut txout.script_pubkey).into_bytes();
        let witness = info.witness_script.take().map(ScriptBuf::into_bytes);
        (txout, info, spk, witness)
    }

    /// A P2WSH output whose witness script `script` writes into the buffer
    /// it is given.
    fn push_p2wsh(
        &mut self,
        value: Amount,
        kind: OutputKind,
        script: impl FnOnce(Vec<u8>) -> ScriptBuf,
    ) {
        let (txout, info, spk, witness) = self.next();
        let mut buf = witness.unwrap_or_default();
        buf.clear();
        buf.reserve(WITNESS_SCRIPT_CAPACITY);
        let witness_script = script(buf);
        txout.value = value;
        txout.script_pubkey = scripts::p2wsh_in(spk, &witness_script);
        info.kind = kind;
        info.witness_script = Some(witness_script);
    }

    /// The legacy P2WPKH `to_remote` (no witness script).
    fn push_p2wpkh(&mut self, value: Amount, kind: OutputKind, pubkey: &secp256k1::PublicKey) {
        let (txout, info, mut spk, _) = self.next();
        spk.clear();
        spk.reserve(scripts::P2WSH_LEN);
        txout.value = value;
        txout.script_pubkey = scripts::to_remote_p2wpkh_in(spk, pubkey);
        info.kind = kind;
    }

    /// Drops the slots this build did not use.
    fn finish(self) {
        self.output.truncate(self.len);
        self.info.truncate(self.len);
    }
}

/// Sorts a commitment's outputs and their descriptions together (BIP 69
/// then CLTV), in place with a heapsort: no buffer, and O(n log n) for
/// however many HTLCs a peer commits. The order is total (ties broken by
/// construction order), so it equals the stable sort the spec implies.
struct Sorting<'a> {
    output: &'a mut [TxOut],
    info: &'a mut [OutputInfo],
    htlcs: &'a [HtlcSpec],
}

impl Sorting<'_> {
    /// BIP 69 (value, then `scriptPubKey`), then CLTV expiry (0 for
    /// non-HTLC outputs), then construction order: HTLCs by index, then
    /// `to_local`, `to_remote` and the two anchors.
    fn less(&self, a: usize, b: usize) -> bool {
        let key = |i: usize| {
            let n = self.htlcs.len();
            let (cltv, rank) = match self.info[i].kind {
                OutputKind::Htlc { htlc_index } => (self.htlcs[htlc_index].cltv_expiry, htlc_index),
                OutputKind::ToLocal => (0, n),
                OutputKind::ToRemote => (0, n + 1),
                OutputKind::LocalAnchor => (0, n + 2),
                OutputKind::RemoteAnchor => (0, n + 3),
            };
            let o = &self.output[i];
            (o.value, o.script_pubkey.as_bytes(), cltv, rank)
        };
        key(a) < key(b)
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.output.swap(a, b);
        self.info.swap(a, b);
    }

    /// Restores the max-heap property below `root` within `..end`.
    fn sift_down(&mut self, mut root: usize, end: usize) {
        loop {
            let mut child = 2 * root + 1;
            if child >= end {
                return;
            }
            if child + 1 < end && self.less(child, child + 1) {
                child += 1;
            }
            if !self.less(root, child) {
                return;
            }
            self.swap(root, child);
            root = child;
        }
    }

    fn sort(&mut self) {
        let n = self.output.len();
        for root in (0..n / 2).rev() {
            self.sift_down(root, n);
        }
        for end in (1..n).rev() {
            self.swap(0, end);
            self.sift_down(0, end);
        }
    }
}
