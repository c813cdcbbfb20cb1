//! HTLC-timeout and HTLC-success transactions (BOLT 3, "HTLC-Timeout and
//! HTLC-Success Transactions").
//!
//! Each untrimmed HTLC output of a commitment is spent by one second-stage
//! transaction: HTLC-timeout for an HTLC the owner offered (locktime =
//! `cltv_expiry`), HTLC-success for one it received (locktime 0, needs the
//! preimage). Both pay to the owner's delayed, revocable script. Without
//! anchors they pay a fee from the HTLC amount; with `option_anchors` they
//! pay no fee, use nSequence 1, and the non-owner signs with
//! `SIGHASH_SINGLE|SIGHASH_ANYONECANPAY`.

use bitcoin::absolute::LockTime;
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::transaction::Version;
use bitcoin::{ecdsa, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
use secp256k1::Message;

use crate::commitment::{CommitmentTx, HtlcDirection};
use crate::fees;
use crate::params::ChannelType;
use crate::scripts;
use crate::sighash;

/// Which second-stage transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HtlcTxKind {
    /// Spends an offered HTLC after `cltv_expiry`.
    Timeout,
    /// Spends a received HTLC with its preimage.
    Success,
}

/// Why an HTLC transaction cannot be built or finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HtlcTxError {
    /// No HTLC with this index in the commitment's spec.
    NoSuchHtlc(usize),
    /// The HTLC was trimmed: it has no output and no HTLC transaction.
    Trimmed(usize),
    /// An HTLC-success witness needs the preimage; an HTLC-timeout one
    /// takes none.
    PreimageMismatch,
}

impl core::fmt::Display for HtlcTxError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HtlcTxError::NoSuchHtlc(i) => write!(f, "no HTLC with index {i}"),
            HtlcTxError::Trimmed(i) => write!(f, "HTLC {i} is trimmed and has no HTLC transaction"),
            HtlcTxError::PreimageMismatch => {
                f.write_str("preimage required for HTLC-success and only for it")
            }
        }
    }
}

impl std::error::Error for HtlcTxError {}

/// An unsigned HTLC-timeout or HTLC-success transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HtlcTx {
    kind: HtlcTxKind,
    htlc_index: usize,
    channel_type: ChannelType,
    tx: Transaction,
    htlc_script: ScriptBuf,
    htlc_value: Amount,
}

impl HtlcTx {
    /// Timeout or success.
    pub fn kind(&self) -> HtlcTxKind {
        self.kind
    }

    /// Index of the HTLC in the commitment's spec.
    pub fn htlc_index(&self) -> usize {
        self.htlc_index
    }

    /// The unsigned transaction.
    pub fn tx(&self) -> &Transaction {
        &self.tx
    }

    /// Witness script of the commitment output it spends.
    pub fn htlc_script(&self) -> &ScriptBuf {
        &self.htlc_script
    }

    /// Value of the commitment output it spends.
    pub fn htlc_value(&self) -> Amount {
        self.htlc_value
    }

    /// Sighash type of the non-owner's (`remotehtlcsig`) signature:
    /// `SIGHASH_SINGLE|SIGHASH_ANYONECANPAY` with anchors, else `SIGHASH_ALL`.
    pub fn remote_sighash_type(&self) -> EcdsaSighashType {
        remote_sighash_type(self.channel_type)
    }

    /// The message the non-owner signs (sent in `htlc_signatures`).
    pub fn remote_sighash(&self) -> Message {
        self.sighash(self.remote_sighash_type())
    }

    /// The message the owner signs when broadcasting (`SIGHASH_ALL`).
    pub fn local_sighash(&self) -> Message {
        self.sighash(EcdsaSighashType::All)
    }

    /// The sighash of input 0 with an explicit type.
    pub fn sighash(&self, sighash_type: EcdsaSighashType) -> Message {
        sighash::p2wsh(
            &self.tx,
            0,
            &self.htlc_script,
            self.htlc_value,
            sighash_type,
        )
    }

    /// The transaction with its witness: `0 <remotehtlcsig> <localhtlcsig>
    /// <payment_preimage>` (success) or `0 <remotehtlcsig> <localhtlcsig> <>`
    /// (timeout). Pass the preimage exactly for HTLC-success.
    pub fn signed(
        &self,
        remote_sig: &secp256k1::ecdsa::Signature,
        local_sig: &secp256k1::ecdsa::Signature,
        payment_preimage: Option<&[u8; 32]>,
    ) -> Result<Transaction, HtlcTxError> {
        let last: &[u8] = match (self.kind, payment_preimage) {
            (HtlcTxKind::Success, Some(p)) => p,
            (HtlcTxKind::Timeout, None) => &[],
            _ => return Err(HtlcTxError::PreimageMismatch),
        };
        let remote = ecdsa::Signature {
            signature: *remote_sig,
            sighash_type: self.remote_sighash_type(),
        };
        let local = ecdsa::Signature {
            signature: *local_sig,
            sighash_type: EcdsaSighashType::All,
        };
        let mut w = Witness::new();
        w.push([]);
        w.push(remote.serialize());
        w.push(local.serialize());
        w.push(last);
        w.push(self.htlc_script.as_bytes());
        let mut tx = self.tx.clone();
        tx.input[0].witness = w;
        Ok(tx)
    }
}

/// Everything about the second-stage transaction of one HTLC output that
/// does not need the transaction itself: shared by [`htlc_tx`] and the
/// allocation-free [`crate::htlc_sighash`] so both build the same thing.
pub(crate) struct SecondStage<'a> {
    /// Timeout or success.
    pub(crate) kind: HtlcTxKind,
    /// Index of the commitment output it spends.
    pub(crate) output_index: u32,
    /// Witness script of that output (borrowed from the commitment).
    pub(crate) htlc_script: &'a ScriptBuf,
    /// Value of that output.
    pub(crate) htlc_value: Amount,
    /// Value of the single output: `htlc_value` minus the second-stage fee.
    pub(crate) value: Amount,
    /// `cltv_expiry` (timeout) or 0 (success).
    pub(crate) lock_time: LockTime,
}

/// The input's nSequence: 1 under anchors (CPFP carve-out), else 0.
pub(crate) fn sequence(channel_type: ChannelType) -> Sequence {
    match channel_type {
        ChannelType::Anchors => Sequence(1),
        ChannelType::StaticRemoteKey => Sequence(0),
    }
}

/// Sighash type of the non-owner's signature on an HTLC transaction of a
/// `channel_type` channel.
pub(crate) fn remote_sighash_type(channel_type: ChannelType) -> EcdsaSighashType {
    match channel_type {
        ChannelType::Anchors => EcdsaSighashType::SinglePlusAnyoneCanPay,
        ChannelType::StaticRemoteKey => EcdsaSighashType::All,
    }
}

/// Looks up HTLC `htlc_index` of `commitment` and works out its
/// second-stage transaction's fields, without allocating.
///
/// # Panics
/// If the commitment is inconsistent (an HTLC output without its witness
/// script, or an untrimmed HTLC below its second-stage fee): a bug in
/// [`crate::build_commitment`].
pub(crate) fn second_stage(
    commitment: &CommitmentTx,
    htlc_index: usize,
) -> Result<SecondStage<'_>, HtlcTxError> {
    let entry = commitment
        .htlcs()
        .get(htlc_index)
        .ok_or(HtlcTxError::NoSuchHtlc(htlc_index))?;
    let output_index = entry.output_index.ok_or(HtlcTxError::Trimmed(htlc_index))?;
    let htlc = entry.htlc;
    let channel_type = commitment.channel_type();
    let feerate = commitment.feerate_per_kw();
    let (kind, fee, lock_time) = match htlc.direction {
        HtlcDirection::Offered => (
            HtlcTxKind::Timeout,
            fees::htlc_timeout_fee(channel_type, feerate),
            LockTime::from_consensus(htlc.cltv_expiry),
        ),
        HtlcDirection::Received => (
            HtlcTxKind::Success,
            fees::htlc_success_fee(channel_type, feerate),
            LockTime::ZERO,
        ),
    };
    let htlc_value = commitment.tx().output[output_index as usize].value;
    let htlc_script = commitment.outputs()[output_index as usize]
        .witness_script
        .as_ref()
        .unwrap_or_else(|| panic!("HTLC output {output_index} must carry its witness script"));
    let value = htlc_value
        .checked_sub(fee)
        .unwrap_or_else(|| panic!("untrimmed HTLC {htlc_index} must cover its second-stage fee"));
    Ok(SecondStage {
        kind,
        output_index,
        htlc_script,
        htlc_value,
        value,
        lock_time,
    })
}

/// Builds the HTLC transaction spending HTLC `htlc_index` (index into the
/// commitment's spec) of `commitment`.
///
/// This allocates a whole [`Transaction`]; to sign or verify many HTLC
/// transactions of one commitment, [`crate::htlc_sighash::HtlcSighasher`]
/// gives the same sighashes without allocating.
pub fn htlc_tx(commitment: &CommitmentTx, htlc_index: usize) -> Result<HtlcTx, HtlcTxError> {
    let stage = second_stage(commitment, htlc_index)?;
    let channel_type = commitment.channel_type();
    let keys = commitment.keys();
    let out_script = scripts::to_local_script(
        &keys.revocation_pubkey,
        commitment.csv_delay(),
        &keys.local_delayed_pubkey,
    );
    let tx = Transaction {
        version: Version::TWO,
        lock_time: stage.lock_time,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: commitment.txid(),
                vout: stage.output_index,
            },
            script_sig: ScriptBuf::new(),
            sequence: sequence(channel_type),
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: stage.value,
            script_pubkey: scripts::p2wsh(&out_script),
        }],
    };
    Ok(HtlcTx {
        kind: stage.kind,
        htlc_index,
        channel_type,
        tx,
        htlc_script: stage.htlc_script.clone(),
        htlc_value: stage.htlc_value,
    })
}
