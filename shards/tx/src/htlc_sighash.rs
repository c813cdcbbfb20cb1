//! BIP 143 sighashes of HTLC-timeout and HTLC-success transactions without
//! building them (and without allocating).
//!
//! Staging a `commitment_signed` (signing the peer's commitment or checking
//! the peer's signatures on ours) needs one HTLC-transaction sighash per
//! untrimmed HTLC. [`crate::htlc_tx`] builds a whole [`bitcoin::Transaction`]
//! for that (input and output vectors, two scripts, a copy of the HTLC
//! script) only to hash it, and recomputes the commitment's txid each
//! time. The channel must not allocate per HTLC in steady state, so
//! [`HtlcSighasher`] computes the same digests directly:
//!
//! - once per commitment: its txid, the nSequence, the `hashSequence` and
//!   the P2WSH program of the owner's delayed script (the HTLC
//!   transaction's only output), the script built in a stack buffer
//!   ([`scripts::to_local_wscript_hash`]);
//! - per HTLC: `hashPrevouts` (its single outpoint), `hashOutputs` (its
//!   single output), then the BIP 143 preimage streamed into a SHA-256
//!   engine, with the HTLC witness script borrowed from the commitment.
//!
//! The HTLC transaction has one input and one output at index 0, so
//! `SIGHASH_SINGLE` hashes the same output as `SIGHASH_ALL`, and
//! `ANYONECANPAY` zeroes `hashPrevouts` and `hashSequence` (BIP 143). The
//! tests check every digest against [`crate::HtlcTx::sighash`] (the
//! `bitcoin` crate's `SighashCache` on the built transaction).

use bitcoin::hashes::{sha256d, Hash, HashEngine};
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::transaction::Version;
use bitcoin::{Txid, WScriptHash};
use secp256k1::Message;

use crate::commitment::CommitmentTx;
use crate::htlc::{self, HtlcTxError};
use crate::scripts;

/// Computes the HTLC-transaction sighashes of one commitment without
/// allocating. Build it once per commitment ([`HtlcSighasher::new`] hashes
/// the whole commitment for its txid), then ask for each HTLC.
#[derive(Clone, Copy, Debug)]
pub struct HtlcSighasher<'a> {
    commitment: &'a CommitmentTx,
    txid: Txid,
    sequence: u32,
    hash_sequence: sha256d::Hash,
    output_program: WScriptHash,
}

impl<'a> HtlcSighasher<'a> {
    /// Precomputes what every HTLC transaction of `commitment` shares.
    pub fn new(commitment: &'a CommitmentTx) -> Self {
        let sequence = htlc::sequence(commitment.channel_type()).0;
        let keys = commitment.keys();
        HtlcSighasher {
            commitment,
            txid: commitment.txid(),
            sequence,
            hash_sequence: sha256d::Hash::hash(&sequence.to_le_bytes()),
            output_program: scripts::to_local_wscript_hash(
                &keys.revocation_pubkey,
                commitment.csv_delay(),
                &keys.local_delayed_pubkey,
            ),
        }
    }

    /// The commitment it hashes for.
    pub fn commitment(&self) -> &'a CommitmentTx {
        self.commitment
    }

    /// The message the non-owner signs for HTLC `htlc_index` (index into
    /// the commitment's spec): equal to
    /// [`HtlcTx::remote_sighash`](crate::HtlcTx::remote_sighash).
    pub fn remote_sighash(&self, htlc_index: usize) -> Result<Message, HtlcTxError> {
        self.sighash(
            htlc_index,
            htlc::remote_sighash_type(self.commitment.channel_type()),
        )
    }

    /// The message the owner signs (`SIGHASH_ALL`): equal to
    /// [`HtlcTx::local_sighash`](crate::HtlcTx::local_sighash).
    pub fn local_sighash(&self, htlc_index: usize) -> Result<Message, HtlcTxError> {
        self.sighash(htlc_index, EcdsaSighashType::All)
    }

    /// The BIP 143 sighash of input 0 of HTLC `htlc_index`'s transaction
    /// with an explicit type: equal to
    /// [`HtlcTx::sighash`](crate::HtlcTx::sighash).
    pub fn sighash(
        &self,
        htlc_index: usize,
        sighash_type: EcdsaSighashType,
    ) -> Result<Message, HtlcTxError> {
        let stage = htlc::second_stage(self.commitment, htlc_index)?;
        let vout = stage.output_index.to_le_bytes();
        let zero = [0u8; 32];
        let (base, anyone_can_pay) = split_anyonecanpay(sighash_type);
        let hash_prevouts = (!anyone_can_pay).then(|| {
            let mut e = sha256d::Hash::engine();
            e.input(self.txid.as_byte_array());
            e.input(&vout);
            sha256d::Hash::from_engine(e)
        });
        let hash_sequence =
            (!anyone_can_pay && base != EcdsaSighashType::Single && base != EcdsaSighashType::None)
                .then_some(self.hash_sequence);
        // ALL hashes every output, SINGLE the one at the input's index:
        // here both are output 0, the only one. NONE hashes none.
        let hash_outputs = (base != EcdsaSighashType::None).then(|| {
            let mut e = sha256d::Hash::engine();
            e.input(&stage.value.to_sat().to_le_bytes());
            // scriptPubKey: compact size 34, OP_0, push 32, program.
            e.input(&[34, 0x00, 32]);
            e.input(self.output_program.as_byte_array());
            sha256d::Hash::from_engine(e)
        });

        let mut e = sha256d::Hash::engine();
        e.input(&Version::TWO.0.to_le_bytes());
        e.input(hash_prevouts.as_ref().map_or(&zero, |h| h.as_byte_array()));
        e.input(hash_sequence.as_ref().map_or(&zero, |h| h.as_byte_array()));
        e.input(self.txid.as_byte_array());
        e.input(&vout);
        let script = stage.htlc_script.as_bytes();
        input_compact_size(&mut e, script.len() as u64);
        e.input(script);
        e.input(&stage.htlc_value.to_sat().to_le_bytes());
        e.input(&self.sequence.to_le_bytes());
        e.input(hash_outputs.as_ref().map_or(&zero, |h| h.as_byte_array()));
        e.input(&stage.lock_time.to_consensus_u32().to_le_bytes());
        e.input(&sighash_type.to_u32().to_le_bytes());
        Ok(Message::from_digest(
            sha256d::Hash::from_engine(e).to_byte_array(),
        ))
    }
}

/// The base type and the ANYONECANPAY flag (as BIP 143 uses them).
fn split_anyonecanpay(t: EcdsaSighashType) -> (EcdsaSighashType, bool) {
    use EcdsaSighashType::*;
    match t {
        All => (All, false),
        None => (None, false),
        Single => (Single, false),
        AllPlusAnyoneCanPay => (All, true),
        NonePlusAnyoneCanPay => (None, true),
        SinglePlusAnyoneCanPay => (Single, true),
    }
}

/// Bitcoin's CompactSize encoding of `n`, streamed.
fn input_compact_size(e: &mut impl HashEngine, n: u64) {
    match n {
        0..=0xfc => e.input(&[n as u8]),
        0xfd..=0xffff => {
            e.input(&[0xfd]);
            e.input(&(n as u16).to_le_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            e.input(&[0xfe]);
            e.input(&(n as u32).to_le_bytes());
        }
        _ => {
            e.input(&[0xff]);
            e.input(&n.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::consensus::encode::VarInt;
    use bitcoin::consensus::Encodable;
    use bitcoin::hashes::sha256;

    #[test]
    fn compact_size_matches_consensus_encoding() {
        for n in [
            0u64,
            1,
            0xfc,
            0xfd,
            0xfe,
            0xffff,
            0x1_0000,
            0xffff_ffff,
            0x1_0000_0000,
            u64::MAX,
        ] {
            let mut ours = sha256::Hash::engine();
            input_compact_size(&mut ours, n);
            let mut theirs = sha256::Hash::engine();
            VarInt(n).consensus_encode(&mut theirs).unwrap();
            assert_eq!(
                sha256::Hash::from_engine(ours),
                sha256::Hash::from_engine(theirs),
                "{n}"
            );
        }
    }
}
