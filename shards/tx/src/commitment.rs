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
/// "Commitment Transaction Construction").
pub fn build_commitment(
    params: &ChannelParams,
    owner: Side,
    keys: &CommitmentKeys,
    spec: &CommitmentSpec<'_>,
) -> Result<CommitmentTx, CommitmentError> {
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
    let dust_limit = params.side(owner).dust_limit;
    let csv_delay = params.csv_delay_for(owner);

    // 1-2. Trim, then the base fee from the untrimmed count.
    let untrimmed: Vec<bool> = spec
        .htlcs
        .iter()
        .map(|h| {
            !fees::is_trimmed(
                channel_type,
                spec.feerate_per_kw,
                dust_limit,
                h.direction == HtlcDirection::Offered,
                h.amount_msat,
            )
        })
        .collect();
    let untrimmed_count = untrimmed.iter().filter(|u| **u).count();
    let base_fee = fees::commitment_base_fee(channel_type, spec.feerate_per_kw, untrimmed_count);

    // 3. Fee (and anchors) from the funder's balance.
    let mut to_local = Amount::from_sat(spec.to_local_msat / 1000);
    let mut to_remote = Amount::from_sat(spec.to_remote_msat / 1000);
    let funder_charge = if anchors {
        base_fee + ANCHOR_OUTPUT_VALUE + ANCHOR_OUTPUT_VALUE
    } else {
        base_fee
    };
    let funder_balance = if params.funder() == owner {
        &mut to_local
    } else {
        &mut to_remote
    };
    // The funder pays the anchors first, then as much base fee as it can (floor of 0).
    let anchors_paid = (*funder_balance).min(funder_charge).min(if anchors {
        ANCHOR_OUTPUT_VALUE + ANCHOR_OUTPUT_VALUE
    } else {
        Amount::ZERO
    });
    *funder_balance = funder_balance
        .checked_sub(funder_charge)
        .unwrap_or(Amount::ZERO);

    // Entries: (output, info, cltv tie-break key).
    let mut entries: Vec<(TxOut, OutputInfo, u32)> = Vec::with_capacity(untrimmed_count + 4);
    let htlc_keys = HtlcScriptKeys {
        revocation_pubkey: &keys.revocation_pubkey,
        local_htlc_pubkey: &keys.local_htlc_pubkey,
        remote_htlc_pubkey: &keys.remote_htlc_pubkey,
    };
    // 4-5. HTLC outputs.
    for (htlc_index, (h, keep)) in spec.htlcs.iter().zip(&untrimmed).enumerate() {
        if !keep {
            continue;
        }
        let script = match h.direction {
            HtlcDirection::Offered => {
                scripts::offered_htlc_script(htlc_keys, &h.payment_hash, anchors)
            }
            HtlcDirection::Received => {
                scripts::received_htlc_script(htlc_keys, &h.payment_hash, h.cltv_expiry, anchors)
            }
        };
        entries.push((
            TxOut {
                value: Amount::from_sat(h.amount_msat / 1000),
                script_pubkey: scripts::p2wsh(&script),
            },
            OutputInfo {
                kind: OutputKind::Htlc { htlc_index },
                witness_script: Some(script),
            },
            h.cltv_expiry,
        ));
    }
    // 6. to_local.
    let has_to_local = to_local >= dust_limit && to_local > Amount::ZERO;
    if has_to_local {
        let script = scripts::to_local_script(
            &keys.revocation_pubkey,
            csv_delay,
            &keys.local_delayed_pubkey,
        );
        entries.push((
            TxOut {
                value: to_local,
                script_pubkey: scripts::p2wsh(&script),
            },
            OutputInfo {
                kind: OutputKind::ToLocal,
                witness_script: Some(script),
            },
            0,
        ));
    }
    // 7. to_remote.
    let has_to_remote = to_remote >= dust_limit && to_remote > Amount::ZERO;
    if has_to_remote {
        let (script_pubkey, witness_script) = if anchors {
            let script = scripts::to_remote_anchors_script(&keys.remote_payment_pubkey);
            (scripts::p2wsh(&script), Some(script))
        } else {
            (scripts::to_remote_p2wpkh(&keys.remote_payment_pubkey), None)
        };
        entries.push((
            TxOut {
                value: to_remote,
                script_pubkey,
            },
            OutputInfo {
                kind: OutputKind::ToRemote,
                witness_script,
            },
            0,
        ));
    }
    // 8. Anchors.
    if anchors {
        let any_htlc = untrimmed_count > 0;
        for (present, side, kind) in [
            (has_to_local || any_htlc, owner, OutputKind::LocalAnchor),
            (
                has_to_remote || any_htlc,
                owner.other(),
                OutputKind::RemoteAnchor,
            ),
        ] {
            if present {
                let script = scripts::anchor_script(&params.side(side).pubkeys.funding_pubkey);
                entries.push((
                    TxOut {
                        value: ANCHOR_OUTPUT_VALUE,
                        script_pubkey: scripts::p2wsh(&script),
                    },
                    OutputInfo {
                        kind,
                        witness_script: Some(script),
                    },
                    0,
                ));
            }
        }
    }
    // 9. BIP 69 + CLTV order. Stable: fully identical outputs keep input order.
    entries.sort_by(|a, b| {
        a.0.value
            .cmp(&b.0.value)
            .then_with(|| {
                a.0.script_pubkey
                    .as_bytes()
                    .cmp(b.0.script_pubkey.as_bytes())
            })
            .then_with(|| a.2.cmp(&b.2))
    });

    let total: Amount = entries.iter().map(|e| e.0.value).sum();
    let anchors_created: Amount = entries
        .iter()
        .filter(|e| matches!(e.1.kind, OutputKind::LocalAnchor | OutputKind::RemoteAnchor))
        .map(|e| e.0.value)
        .sum();
    // Anchors are the funder's to pay: they may not be paid for out of trimmed HTLCs.
    if total > params.funding_amount() || anchors_created > anchors_paid {
        return Err(CommitmentError::OutputsExceedFunding);
    }

    let mut htlcs: Vec<HtlcOutput> = spec
        .htlcs
        .iter()
        .map(|h| HtlcOutput {
            htlc: *h,
            output_index: None,
        })
        .collect();
    let mut output = Vec::with_capacity(entries.len());
    let mut outputs = Vec::with_capacity(entries.len());
    for (i, (txout, info, _)) in entries.into_iter().enumerate() {
        if let OutputKind::Htlc { htlc_index } = info.kind {
            htlcs[htlc_index].output_index = Some(i as u32);
        }
        output.push(txout);
        outputs.push(info);
    }

    let (locktime, sequence) = obscured_locktime_and_sequence(params, spec.commitment_number);
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::from_consensus(locktime),
        input: vec![TxIn {
            previous_output: params.funding_outpoint(),
            script_sig: ScriptBuf::new(),
            sequence: Sequence(sequence),
            witness: Witness::new(),
        }],
        output,
    };
    Ok(CommitmentTx {
        owner,
        channel_type,
        commitment_number: spec.commitment_number,
        feerate_per_kw: spec.feerate_per_kw,
        keys: *keys,
        tx,
        outputs,
        htlcs,
        base_fee,
        csv_delay,
    })
}
