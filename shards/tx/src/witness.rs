//! Witness stacks for every spend of the outputs this crate creates (BOLT 3
//! "Commitment Transaction Outputs"; the penalty and sweep paths are used by
//! BOLT 5 on-chain handling).
//!
//! Each function takes signatures with their sighash type
//! ([`bitcoin::ecdsa::Signature`]) and the witness script, and returns the
//! complete witness (script last). `<>` is the empty vector MINIMALIF
//! requires for "false".

use bitcoin::sighash::EcdsaSighashType;
use bitcoin::{ecdsa, Script, Witness};
use secp256k1::PublicKey;

use crate::params::ChannelParams;

/// A `SIGHASH_ALL` signature.
pub fn sig_all(sig: &secp256k1::ecdsa::Signature) -> ecdsa::Signature {
    ecdsa::Signature {
        signature: *sig,
        sighash_type: EcdsaSighashType::All,
    }
}

/// `0 <signature_for_pubkey1> <signature_for_pubkey2> <funding_script>`:
/// spends the funding output. `local_sig`/`remote_sig` are by the channel's
/// local and remote funding keys; they are put in pubkey order here.
pub fn funding(
    params: &ChannelParams,
    local_sig: &secp256k1::ecdsa::Signature,
    remote_sig: &secp256k1::ecdsa::Signature,
) -> Witness {
    let local_key = params
        .side(crate::Side::Local)
        .pubkeys
        .funding_pubkey
        .serialize();
    let remote_key = params
        .side(crate::Side::Remote)
        .pubkeys
        .funding_pubkey
        .serialize();
    let (first, second) = if local_key <= remote_key {
        (local_sig, remote_sig)
    } else {
        (remote_sig, local_sig)
    };
    let mut w = Witness::new();
    w.push([]);
    w.push(sig_all(first).serialize());
    w.push(sig_all(second).serialize());
    w.push(params.funding_script().as_bytes());
    w
}

/// `<local_delayedsig> <>`: the owner collects `to_local` (or an HTLC
/// transaction's output) after `to_self_delay`; the input's `nSequence`
/// must be `to_self_delay`.
pub fn to_local_delayed(sig: &ecdsa::Signature, witness_script: &Script) -> Witness {
    let mut w = Witness::new();
    w.push(sig.serialize());
    w.push([]);
    w.push(witness_script.as_bytes());
    w
}

/// `<revocation_sig> 1`: penalty spend of a revoked `to_local` or HTLC
/// transaction output.
pub fn to_local_penalty(sig: &ecdsa::Signature, witness_script: &Script) -> Witness {
    let mut w = Witness::new();
    w.push(sig.serialize());
    w.push([1]);
    w.push(witness_script.as_bytes());
    w
}

/// `<revocation_sig> <revocationpubkey>`: penalty spend of a revoked
/// commitment's HTLC output (offered or received).
pub fn htlc_penalty(
    sig: &ecdsa::Signature,
    revocation_pubkey: &PublicKey,
    witness_script: &Script,
) -> Witness {
    let mut w = Witness::new();
    w.push(sig.serialize());
    w.push(revocation_pubkey.serialize());
    w.push(witness_script.as_bytes());
    w
}

/// `<remotehtlcsig> <payment_preimage>`: the non-owner claims an offered
/// HTLC with the preimage (nSequence 1 under anchors).
pub fn offered_htlc_preimage(
    sig: &ecdsa::Signature,
    payment_preimage: &[u8; 32],
    witness_script: &Script,
) -> Witness {
    let mut w = Witness::new();
    w.push(sig.serialize());
    w.push(payment_preimage);
    w.push(witness_script.as_bytes());
    w
}

/// `<remotehtlcsig> <>`: the non-owner times out a received HTLC (locktime
/// at least `cltv_expiry`; nSequence 1 under anchors).
pub fn received_htlc_timeout(sig: &ecdsa::Signature, witness_script: &Script) -> Witness {
    let mut w = Witness::new();
    w.push(sig.serialize());
    w.push([]);
    w.push(witness_script.as_bytes());
    w
}

/// `<sig> <pubkey>`: spends the legacy P2WPKH `to_remote`.
pub fn to_remote_p2wpkh(sig: &ecdsa::Signature, pubkey: &PublicKey) -> Witness {
    Witness::p2wpkh(sig, pubkey)
}

/// `<remote_sig>`: spends the anchors `to_remote` (nSequence 1), or an
/// anchor by its owner (any nSequence).
pub fn single_sig(sig: &ecdsa::Signature, witness_script: &Script) -> Witness {
    let mut w = Witness::new();
    w.push(sig.serialize());
    w.push(witness_script.as_bytes());
    w
}

/// `<>`: anyone sweeps an anchor after 16 blocks (nSequence 16).
pub fn anchor_sweep(witness_script: &Script) -> Witness {
    let mut w = Witness::new();
    w.push([]);
    w.push(witness_script.as_bytes());
    w
}
