//! Witness scripts and output scripts (BOLT 3, "Funding Transaction Output"
//! and "Commitment Transaction Outputs").
//!
//! Each function returns the *witness script* (the script hashed into a
//! P2WSH output and revealed when spending it); [`p2wsh`] turns it into the
//! `scriptPubKey`. The only non-P2WSH output is the legacy `to_remote`
//! (P2WPKH, [`to_remote_p2wpkh`]). Opcode sequences follow the spec text
//! line by line so they can be compared by eye.
//!
//! Each script a commitment output owns also has an `_in` form writing
//! into a given buffer, so [`crate::build_commitment_into`] can rebuild a
//! commitment in the allocations of the previous one.

use bitcoin::hashes::{hash160, ripemd160, sha256, Hash};
use bitcoin::opcodes::all::*;
use bitcoin::script::Builder;
use bitcoin::{ScriptBuf, WPubkeyHash, WScriptHash};
use secp256k1::PublicKey;

/// Anchor outputs' CSV: after 16 blocks anyone may sweep an anchor, so
/// unspent anchors do not pollute the UTXO set.
pub const ANCHOR_CSV: i64 = 16;

/// HTLC and `to_remote` outputs under `option_anchors` carry a 1-block CSV
/// so that they cannot be spent in the same block (CPFP carve-out).
pub const ANCHOR_OUTPUT_CSV: i64 = 1;

/// Push a compressed key.
fn key(b: Builder, pk: &PublicKey) -> Builder {
    b.push_key(&bitcoin::PublicKey::new(*pk))
}

/// Length of the longest HTLC witness script: the received one under
/// anchors with a 5-byte `cltv_expiry` push (BOLT 3's 139 bytes is the
/// legacy one with a 3-byte expiry). Scripts are built in a buffer of this
/// capacity so each is one allocation, not one per doubling.
pub const HTLC_SCRIPT_MAX_LEN: usize = 144;

/// Length of a P2WSH `scriptPubKey`, the longest one a commitment has
/// (P2WPKH is 22).
pub const P2WSH_LEN: usize = 34;

/// The P2WSH `scriptPubKey` of a witness script (`OP_0 <32-byte hash>`),
/// in one exact allocation.
pub fn p2wsh(witness_script: &ScriptBuf) -> ScriptBuf {
    p2wsh_in(Vec::with_capacity(P2WSH_LEN), witness_script)
}

/// [`p2wsh`] written into `buf` (its contents replaced, its allocation
/// kept if large enough).
pub fn p2wsh_in(mut buf: Vec<u8>, witness_script: &ScriptBuf) -> ScriptBuf {
    buf.clear();
    buf.reserve(P2WSH_LEN);
    buf.extend_from_slice(&[OP_PUSHBYTES_0.to_u8(), OP_PUSHBYTES_32.to_u8()]);
    buf.extend_from_slice(witness_script.wscript_hash().as_byte_array());
    ScriptBuf::from_bytes(buf)
}

/// A cleared `buf` as a script builder: scripts written through it keep
/// its allocation when it is large enough.
fn builder_in(mut buf: Vec<u8>) -> Builder {
    buf.clear();
    Builder::from(buf)
}

/// `2 <pubkey1> <pubkey2> 2 OP_CHECKMULTISIG`, keys in lexicographic order
/// of their compressed encoding.
pub fn funding_script(a: &PublicKey, b: &PublicKey) -> ScriptBuf {
    let (first, second) = if a.serialize() <= b.serialize() {
        (a, b)
    } else {
        (b, a)
    };
    let builder = Builder::new().push_int(2);
    let builder = key(builder, first);
    let builder = key(builder, second);
    builder
        .push_int(2)
        .push_opcode(OP_CHECKMULTISIG)
        .into_script()
}

/// `to_local` (and HTLC-transaction output) witness script: revocable by
/// `revocation_pubkey`, else spendable by `delayed_pubkey` after
/// `to_self_delay` blocks.
pub fn to_local_script(
    revocation_pubkey: &PublicKey,
    to_self_delay: u16,
    delayed_pubkey: &PublicKey,
) -> ScriptBuf {
    to_local_script_in(
        Vec::with_capacity(TO_LOCAL_SCRIPT_MAX_LEN),
        revocation_pubkey,
        to_self_delay,
        delayed_pubkey,
    )
}

/// [`to_local_script`] written into `buf` (its contents replaced, its
/// allocation kept if large enough).
pub fn to_local_script_in(
    buf: Vec<u8>,
    revocation_pubkey: &PublicKey,
    to_self_delay: u16,
    delayed_pubkey: &PublicKey,
) -> ScriptBuf {
    let b = builder_in(buf).push_opcode(OP_IF);
    let b = key(b, revocation_pubkey)
        .push_opcode(OP_ELSE)
        .push_int(i64::from(to_self_delay))
        .push_opcode(OP_CSV)
        .push_opcode(OP_DROP);
    key(b, delayed_pubkey)
        .push_opcode(OP_ENDIF)
        .push_opcode(OP_CHECKSIG)
        .into_script()
}

/// Length of the longest [`to_local_script`]: `OP_IF`, a 33-byte key push,
/// `OP_ELSE`, a delay push of at most 4 bytes (`to_self_delay` is a `u16`,
/// at most 3 bytes as a script number), `OP_CSV OP_DROP`, a 33-byte key
/// push, `OP_ENDIF OP_CHECKSIG`.
pub const TO_LOCAL_SCRIPT_MAX_LEN: usize = 1 + 34 + 1 + 4 + 2 + 34 + 2;

/// [`to_local_script`] written into a stack buffer instead of a
/// [`ScriptBuf`]: the bytes are `buf[..len]` of the returned `(buf, len)`.
/// Byte-identical to [`to_local_script`] (tested for every delay), for
/// callers that must not allocate.
pub fn to_local_script_array(
    revocation_pubkey: &PublicKey,
    to_self_delay: u16,
    delayed_pubkey: &PublicKey,
) -> ([u8; TO_LOCAL_SCRIPT_MAX_LEN], usize) {
    let mut buf = [0u8; TO_LOCAL_SCRIPT_MAX_LEN];
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        buf[len..len + bytes.len()].copy_from_slice(bytes);
        len += bytes.len();
    };
    put(&[OP_IF.to_u8(), 33]);
    put(&revocation_pubkey.serialize());
    put(&[OP_ELSE.to_u8()]);
    // `Builder::push_int`: OP_0, OP_1..OP_16, else a minimal script number.
    match to_self_delay {
        0 => put(&[OP_PUSHBYTES_0.to_u8()]),
        1..=16 => put(&[OP_PUSHNUM_1.to_u8() + (to_self_delay as u8 - 1)]),
        _ => {
            let le = u32::from(to_self_delay).to_le_bytes();
            let mut n = if to_self_delay > 0xff { 2 } else { 1 };
            let mut num = [le[0], le[1], 0];
            // A set top bit would make it negative: add a zero sign byte.
            if num[n - 1] & 0x80 != 0 {
                num[n] = 0;
                n += 1;
            }
            put(&[n as u8]);
            put(&num[..n]);
        }
    }
    put(&[OP_CSV.to_u8(), OP_DROP.to_u8(), 33]);
    put(&delayed_pubkey.serialize());
    put(&[OP_ENDIF.to_u8(), OP_CHECKSIG.to_u8()]);
    (buf, len)
}

/// The P2WSH program (SHA-256) of [`to_local_script`], without
/// allocating.
pub fn to_local_wscript_hash(
    revocation_pubkey: &PublicKey,
    to_self_delay: u16,
    delayed_pubkey: &PublicKey,
) -> WScriptHash {
    let (buf, len) = to_local_script_array(revocation_pubkey, to_self_delay, delayed_pubkey);
    WScriptHash::hash(&buf[..len])
}

/// Length of a P2WPKH `scriptPubKey` (`OP_0 <20-byte hash>`).
pub const P2WPKH_LEN: usize = 22;

/// Legacy `to_remote`: P2WPKH to `remotepubkey`. This is a `scriptPubKey`,
/// not a witness script.
pub fn to_remote_p2wpkh(remote_pubkey: &PublicKey) -> ScriptBuf {
    to_remote_p2wpkh_in(Vec::with_capacity(P2WPKH_LEN), remote_pubkey)
}

/// [`to_remote_p2wpkh`] written into `buf` (its contents replaced, its
/// allocation kept if large enough).
pub fn to_remote_p2wpkh_in(buf: Vec<u8>, remote_pubkey: &PublicKey) -> ScriptBuf {
    let hash = WPubkeyHash::hash(&remote_pubkey.serialize());
    builder_in(buf)
        .push_opcode(OP_PUSHBYTES_0)
        .push_slice(hash.to_byte_array())
        .into_script()
}

/// `option_anchors` `to_remote` witness script:
/// `<remotepubkey> OP_CHECKSIGVERIFY 1 OP_CHECKSEQUENCEVERIFY`.
pub fn to_remote_anchors_script(remote_pubkey: &PublicKey) -> ScriptBuf {
    to_remote_anchors_script_in(Vec::new(), remote_pubkey)
}

/// [`to_remote_anchors_script`] written into `buf` (its contents replaced,
/// its allocation kept if large enough).
pub fn to_remote_anchors_script_in(buf: Vec<u8>, remote_pubkey: &PublicKey) -> ScriptBuf {
    key(builder_in(buf), remote_pubkey)
        .push_opcode(OP_CHECKSIGVERIFY)
        .push_int(ANCHOR_OUTPUT_CSV)
        .push_opcode(OP_CSV)
        .into_script()
}

/// Anchor witness script: `<funding_pubkey> OP_CHECKSIG OP_IFDUP OP_NOTIF
/// OP_16 OP_CHECKSEQUENCEVERIFY OP_ENDIF`.
pub fn anchor_script(funding_pubkey: &PublicKey) -> ScriptBuf {
    anchor_script_in(Vec::new(), funding_pubkey)
}

/// [`anchor_script`] written into `buf` (its contents replaced, its
/// allocation kept if large enough).
pub fn anchor_script_in(buf: Vec<u8>, funding_pubkey: &PublicKey) -> ScriptBuf {
    key(builder_in(buf), funding_pubkey)
        .push_opcode(OP_CHECKSIG)
        .push_opcode(OP_IFDUP)
        .push_opcode(OP_NOTIF)
        .push_int(ANCHOR_CSV)
        .push_opcode(OP_CSV)
        .push_opcode(OP_ENDIF)
        .into_script()
}

/// `OP_DUP OP_HASH160 <RIPEMD160(SHA256(revocationpubkey))> OP_EQUAL OP_IF
/// OP_CHECKSIG OP_ELSE <remote_htlcpubkey> OP_SWAP OP_SIZE 32 OP_EQUAL`,
/// the prefix shared by both HTLC scripts.
fn htlc_prefix(buf: Vec<u8>, keys: &HtlcScriptKeys<'_>) -> Builder {
    let b = builder_in(buf)
        .push_opcode(OP_DUP)
        .push_opcode(OP_HASH160)
        .push_slice(keys.revocation_hash)
        .push_opcode(OP_EQUAL)
        .push_opcode(OP_IF)
        .push_opcode(OP_CHECKSIG)
        .push_opcode(OP_ELSE);
    key(b, keys.remote_htlc_pubkey)
        .push_opcode(OP_SWAP)
        .push_opcode(OP_SIZE)
        .push_int(32)
        .push_opcode(OP_EQUAL)
}

/// `<RIPEMD160(payment_hash)>`.
fn ripemd_of_payment_hash(payment_hash: &sha256::Hash) -> [u8; 20] {
    ripemd160::Hash::hash(payment_hash.as_byte_array()).to_byte_array()
}

/// `1 OP_CHECKSEQUENCEVERIFY OP_DROP` under anchors, then the closing
/// `OP_ENDIF`.
fn htlc_suffix(b: Builder, anchors: bool) -> ScriptBuf {
    let b = if anchors {
        b.push_int(ANCHOR_OUTPUT_CSV)
            .push_opcode(OP_CSV)
            .push_opcode(OP_DROP)
    } else {
        b
    };
    b.push_opcode(OP_ENDIF).into_script()
}

/// The per-commitment keys an HTLC script needs, with the revocation key's
/// HASH160 computed once for all the HTLC scripts of a commitment.
#[derive(Clone, Copy, Debug)]
pub struct HtlcScriptKeys<'a> {
    /// `RIPEMD160(SHA256(revocationpubkey))`.
    revocation_hash: [u8; 20],
    /// `local_htlcpubkey` (the commitment owner's).
    local_htlc_pubkey: &'a PublicKey,
    /// `remote_htlcpubkey`.
    remote_htlc_pubkey: &'a PublicKey,
}

impl<'a> HtlcScriptKeys<'a> {
    /// The keys of one commitment's HTLC scripts.
    pub fn new(
        revocation_pubkey: &PublicKey,
        local_htlc_pubkey: &'a PublicKey,
        remote_htlc_pubkey: &'a PublicKey,
    ) -> Self {
        HtlcScriptKeys {
            revocation_hash: hash160::Hash::hash(&revocation_pubkey.serialize()).to_byte_array(),
            local_htlc_pubkey,
            remote_htlc_pubkey,
        }
    }
}

/// Offered HTLC witness script (the owner offered it; it times out back to
/// the owner through an HTLC-timeout transaction).
pub fn offered_htlc_script(
    keys: HtlcScriptKeys<'_>,
    payment_hash: &sha256::Hash,
    anchors: bool,
) -> ScriptBuf {
    offered_htlc_script_in(
        Vec::with_capacity(HTLC_SCRIPT_MAX_LEN),
        keys,
        payment_hash,
        anchors,
    )
}

/// [`offered_htlc_script`] written into `buf` (its contents replaced, its
/// allocation kept if large enough).
pub fn offered_htlc_script_in(
    buf: Vec<u8>,
    keys: HtlcScriptKeys<'_>,
    payment_hash: &sha256::Hash,
    anchors: bool,
) -> ScriptBuf {
    let b = htlc_prefix(buf, &keys)
        .push_opcode(OP_NOTIF)
        .push_opcode(OP_DROP)
        .push_int(2)
        .push_opcode(OP_SWAP);
    let b = key(b, keys.local_htlc_pubkey)
        .push_int(2)
        .push_opcode(OP_CHECKMULTISIG)
        .push_opcode(OP_ELSE)
        .push_opcode(OP_HASH160)
        .push_slice(ripemd_of_payment_hash(payment_hash))
        .push_opcode(OP_EQUALVERIFY)
        .push_opcode(OP_CHECKSIG)
        .push_opcode(OP_ENDIF);
    htlc_suffix(b, anchors)
}

/// Received HTLC witness script (the owner received it; it is claimed with
/// the preimage through an HTLC-success transaction).
pub fn received_htlc_script(
    keys: HtlcScriptKeys<'_>,
    payment_hash: &sha256::Hash,
    cltv_expiry: u32,
    anchors: bool,
) -> ScriptBuf {
    received_htlc_script_in(
        Vec::with_capacity(HTLC_SCRIPT_MAX_LEN),
        keys,
        payment_hash,
        cltv_expiry,
        anchors,
    )
}

/// [`received_htlc_script`] written into `buf` (its contents replaced, its
/// allocation kept if large enough).
pub fn received_htlc_script_in(
    buf: Vec<u8>,
    keys: HtlcScriptKeys<'_>,
    payment_hash: &sha256::Hash,
    cltv_expiry: u32,
    anchors: bool,
) -> ScriptBuf {
    let b = htlc_prefix(buf, &keys)
        .push_opcode(OP_IF)
        .push_opcode(OP_HASH160)
        .push_slice(ripemd_of_payment_hash(payment_hash))
        .push_opcode(OP_EQUALVERIFY)
        .push_int(2)
        .push_opcode(OP_SWAP);
    let b = key(b, keys.local_htlc_pubkey)
        .push_int(2)
        .push_opcode(OP_CHECKMULTISIG)
        .push_opcode(OP_ELSE)
        .push_opcode(OP_DROP)
        .push_int(i64::from(cltv_expiry))
        .push_opcode(OP_CLTV)
        .push_opcode(OP_DROP)
        .push_opcode(OP_CHECKSIG)
        .push_opcode(OP_ENDIF);
    htlc_suffix(b, anchors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secp256k1::{Secp256k1, SecretKey};

    #[test]
    fn to_local_array_matches_builder_for_every_delay() {
        let secp = Secp256k1::signing_only();
        let a = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[1; 32]).unwrap());
        let b = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[2; 32]).unwrap());
        for delay in 0..=u16::MAX {
            let built = to_local_script(&a, delay, &b);
            let (buf, len) = to_local_script_array(&a, delay, &b);
            assert_eq!(&buf[..len], built.as_bytes(), "delay {delay}");
            assert_eq!(to_local_wscript_hash(&a, delay, &b), built.wscript_hash());
        }
    }

    #[test]
    fn p2wsh_matches_the_library_and_htlc_scripts_fit() {
        let secp = Secp256k1::signing_only();
        let a = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[1; 32]).unwrap());
        let script = to_local_script(&a, 144, &a);
        assert_eq!(p2wsh(&script), ScriptBuf::new_p2wsh(&script.wscript_hash()));
        let p2wpkh = to_remote_p2wpkh(&a);
        assert_eq!(
            p2wpkh,
            ScriptBuf::new_p2wpkh(&WPubkeyHash::hash(&a.serialize()))
        );
        assert_eq!(p2wpkh.len(), P2WPKH_LEN);
        let keys = HtlcScriptKeys::new(&a, &a, &a);
        let hash = sha256::Hash::hash(b"x");
        let longest = received_htlc_script(keys, &hash, u32::MAX, true);
        assert_eq!(longest.len(), HTLC_SCRIPT_MAX_LEN);
        assert_eq!(received_htlc_script(keys, &hash, 500_000, false).len(), 139);
        assert!(offered_htlc_script(keys, &hash, true).len() <= HTLC_SCRIPT_MAX_LEN);
    }
}
