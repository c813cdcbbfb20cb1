//! Shared test setup: the Appendix C channel (keys, funding, HTLCs) as
//! lnhub-tx types.
#![allow(dead_code)]

use std::str::FromStr;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::{Amount, OutPoint, Txid};
use lnhub_tx::{
    ChannelParams, ChannelPublicKeys, ChannelType, CommitmentKeys, HtlcDirection, HtlcSpec, Side,
    SideParams,
};
use secp256k1::{All, PublicKey, Secp256k1, SecretKey};

use crate::vectors::appendix_c as c;

/// Hex to bytes (test tables are trusted).
pub fn h(s: &str) -> Vec<u8> {
    hex::decode(s).expect("table hex")
}

/// Hex to a 32-byte array.
pub fn h32(s: &str) -> [u8; 32] {
    h(s).try_into().expect("32 bytes")
}

/// Hex to a public key.
pub fn pk(s: &str) -> PublicKey {
    PublicKey::from_slice(&h(s)).expect("table pubkey")
}

/// Hex to a secret key.
pub fn sk(s: &str) -> SecretKey {
    SecretKey::from_slice(&h(s)).expect("table secret")
}

/// DER hex to a signature.
pub fn sig(s: &str) -> secp256k1::ecdsa::Signature {
    secp256k1::ecdsa::Signature::from_der(&h(s)).expect("table signature")
}

/// A key the vectors never use (the local revocation basepoint and the
/// remote delayed basepoint play no role in local commitments).
pub fn unused_point(secp: &Secp256k1<All>, byte: u8) -> PublicKey {
    PublicKey::from_secret_key(secp, &SecretKey::from_slice(&[byte; 32]).expect("valid"))
}

/// The Appendix C channel: local is the funder, remote's `to_self_delay`
/// is 144 (the delay on local's outputs), local's dust limit as given.
pub fn params(secp: &Secp256k1<All>, channel_type: ChannelType, local_dust: u64) -> ChannelParams {
    params_with(
        secp,
        channel_type,
        local_dust,
        354,
        Side::Local,
        c::FUNDING_AMOUNT_SATOSHI,
    )
}

/// The Appendix C keys with any funder, dust limits and funding amount.
pub fn params_with(
    secp: &Secp256k1<All>,
    channel_type: ChannelType,
    local_dust: u64,
    remote_dust: u64,
    funder: Side,
    funding_sat: u64,
) -> ChannelParams {
    let local = SideParams {
        pubkeys: ChannelPublicKeys {
            funding_pubkey: pk(c::LOCAL_FUNDING_PUBKEY),
            revocation_basepoint: unused_point(secp, 0x55),
            payment_basepoint: pk(c::LOCAL_PAYMENT_BASEPOINT),
            delayed_payment_basepoint: pk(c::LOCAL_DELAYED_PAYMENT_BASEPOINT),
            htlc_basepoint: pk(c::LOCAL_HTLC_BASEPOINT),
        },
        to_self_delay: 720,
        dust_limit: Amount::from_sat(local_dust),
    };
    let remote = SideParams {
        pubkeys: ChannelPublicKeys {
            funding_pubkey: pk(c::REMOTE_FUNDING_PUBKEY),
            revocation_basepoint: pk(c::REMOTE_REVOCATION_BASEPOINT),
            payment_basepoint: pk(c::REMOTE_PAYMENT_BASEPOINT),
            delayed_payment_basepoint: unused_point(secp, 0x66),
            htlc_basepoint: pk(c::REMOTE_HTLC_BASEPOINT),
        },
        to_self_delay: c::LOCAL_DELAY,
        dust_limit: Amount::from_sat(remote_dust),
    };
    let outpoint = OutPoint {
        txid: Txid::from_str(c::FUNDING_TXID).expect("txid"),
        vout: c::FUNDING_OUTPUT_INDEX,
    };
    ChannelParams::new(
        outpoint,
        Amount::from_sat(funding_sat),
        funder,
        channel_type,
        local,
        remote,
    )
    .expect("valid params")
}

/// Keys of local's commitment 42.
pub fn local_keys(secp: &Secp256k1<All>, params: &ChannelParams) -> CommitmentKeys {
    CommitmentKeys::derive(
        secp,
        params,
        Side::Local,
        &pk(c::LOCAL_PER_COMMITMENT_POINT),
    )
    .expect("derivable")
}

/// The spec HTLCs with the given numbers, as seen by local.
pub fn htlcs(ids: &[u64]) -> Vec<HtlcSpec> {
    ids.iter()
        .map(|id| {
            let t = c::HTLCS[*id as usize];
            HtlcSpec {
                id: t.id,
                direction: if t.received {
                    HtlcDirection::Received
                } else {
                    HtlcDirection::Offered
                },
                amount_msat: t.amount_msat,
                cltv_expiry: t.expiry,
                payment_hash: sha256::Hash::hash(&h(t.payment_preimage)),
            }
        })
        .collect()
}

/// The preimage of spec HTLC `id`.
pub fn preimage(id: u64) -> [u8; 32] {
    h32(c::HTLCS[id as usize].payment_preimage)
}

/// Serialized transaction as hex.
pub fn tx_hex(tx: &bitcoin::Transaction) -> String {
    bitcoin::consensus::encode::serialize_hex(tx)
}

/// A random commitment's contents for property tests: `raw` HTLCs as
/// `(offered, amount_msat, cltv_expiry, hash byte)` (ids in order; few
/// distinct hash bytes, so identical outputs and the CLTV tie-break occur),
/// a funding of whole satoshis covering them plus `extra_msat`, and the
/// rest split `local_share` per mille to the local side. Returns the HTLCs,
/// the funding in satoshis, and the local and remote balances in msat.
pub fn random_commitment_parts(
    raw: &[(bool, u64, u32, u8)],
    extra_msat: u64,
    local_share: u64,
) -> (Vec<HtlcSpec>, u64, u64, u64) {
    let htlcs: Vec<HtlcSpec> = raw
        .iter()
        .enumerate()
        .map(|(i, (offered, amount_msat, cltv, hash))| HtlcSpec {
            id: i as u64,
            direction: if *offered {
                HtlcDirection::Offered
            } else {
                HtlcDirection::Received
            },
            amount_msat: *amount_msat,
            cltv_expiry: *cltv,
            payment_hash: sha256::Hash::hash(&[*hash]),
        })
        .collect();
    let htlc_msat: u64 = htlcs.iter().map(|h| h.amount_msat).sum();
    let funding_sat = (htlc_msat + extra_msat).div_ceil(1000);
    let balances_msat = funding_sat * 1000 - htlc_msat;
    let to_local_msat = balances_msat / 1000 * local_share;
    (
        htlcs,
        funding_sat,
        to_local_msat,
        balances_msat - to_local_msat,
    )
}
