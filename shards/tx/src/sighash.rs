//! Sighashes (BIP 143, segwit v0) as [`secp256k1::Message`]s, and plain
//! RFC 6979 signing.
//!
//! Every input this crate builds spends a segwit v0 output. Signatures use
//! `SIGHASH_ALL`, except the peer's signature on an HTLC transaction of an
//! `option_anchors` channel, which uses `SIGHASH_SINGLE|SIGHASH_ANYONECANPAY`
//! so the holder can attach fee inputs and outputs (BOLT 3 "HTLC-Timeout and
//! HTLC-Success Transactions", BOLT 5).
//!
//! Signing is plain RFC 6979 ([`sign`]): no low-R grinding, because fees
//! use BOLT 3's expected weights (73-byte signatures) and the BOLT 3 vectors
//! are plain RFC 6979 signatures.

use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{Amount, Script, Transaction};
use secp256k1::{ecdsa::Signature, Message, Secp256k1, SecretKey, Signing};

use crate::params::ChannelParams;

/// BIP 143 sighash of input `input_index` of `tx`, spending a P2WSH output
/// of `value` with `witness_script`.
///
/// # Panics
/// If `input_index` is not an input of `tx` (a caller bug).
pub fn p2wsh(
    tx: &Transaction,
    input_index: usize,
    witness_script: &Script,
    value: Amount,
    sighash_type: EcdsaSighashType,
) -> Message {
    let hash = SighashCache::new(tx)
        .p2wsh_signature_hash(input_index, witness_script, value, sighash_type)
        .unwrap_or_else(|_| panic!("sighash input index {input_index} must be an input of the tx"));
    Message::from(hash)
}

/// BIP 143 sighash of input `input_index` spending a P2WPKH output
/// (`script_pubkey`) of `value` with `SIGHASH_ALL`.
///
/// # Panics
/// If `input_index` is not an input of `tx` or `script_pubkey` is not
/// P2WPKH (caller bugs).
pub fn p2wpkh(
    tx: &Transaction,
    input_index: usize,
    script_pubkey: &Script,
    value: Amount,
) -> Message {
    let hash = SighashCache::new(tx)
        .p2wpkh_signature_hash(input_index, script_pubkey, value, EcdsaSighashType::All)
        .unwrap_or_else(|e| panic!("p2wpkh sighash of input {input_index} must exist: {e}"));
    Message::from(hash)
}

/// Sighash of input 0 of `tx` spending the channel's funding output with
/// `SIGHASH_ALL` (commitment and closing transactions).
pub fn funding_input(tx: &Transaction, params: &ChannelParams) -> Message {
    p2wsh(
        tx,
        0,
        params.funding_script(),
        params.funding_amount(),
        EcdsaSighashType::All,
    )
}

/// Plain RFC 6979 ECDSA (no low-R grinding) with the caller's context.
pub fn sign<C: Signing>(secp: &Secp256k1<C>, msg: &Message, key: &SecretKey) -> Signature {
    secp.sign_ecdsa(msg, key)
}
