//! Key derivation (BOLT 3, "Keys").
//!
//! Every commitment uses fresh keys derived from long-lived *basepoints* and
//! the commitment's `per_commitment_point`, so that a watcher holding old
//! per-commitment secrets learns nothing about current transactions:
//!
//! - `pubkey = basepoint + SHA256(per_commitment_point || basepoint) * G`
//!   ([`derive_pubkey`], [`derive_privkey`]) for `localpubkey`,
//!   `local_htlcpubkey`, `remote_htlcpubkey`, `local_delayedpubkey` and
//!   `remote_delayedpubkey`;
//! - `revocationpubkey = revocation_basepoint * SHA256(revocation_basepoint ||
//!   per_commitment_point) + per_commitment_point * SHA256(per_commitment_point
//!   || revocation_basepoint)` ([`derive_revocation_pubkey`]) and its private
//!   key once the per-commitment secret is revealed
//!   ([`derive_revocation_privkey`]);
//! - `remotepubkey` is the remote `payment_basepoint` itself (both channel
//!   types this crate supports imply `option_static_remotekey`).
//!
//! [`CommitmentKeys`] bundles the keys of one commitment transaction. The
//! caller supplies the `per_commitment_point` (its own, from
//! [`crate::shachain::generate_from_seed`] and [`per_commitment_point`], or
//! the peer's, from `revoke_and_ack`/`channel_ready`).

use bitcoin::hashes::{sha256, Hash, HashEngine};
use secp256k1::{PublicKey, Scalar, Secp256k1, SecretKey, Signing, Verification};

use crate::commitment::CommitmentSpec;
use crate::params::{ChannelParams, Side};

/// Key derivation failed. With honest inputs this happens with probability
/// about 2^-128 (a hash at or above the curve order, or a sum at infinity);
/// with a peer-chosen point it means the point is unusable and the channel
/// operation must be refused (the peer sent a bad `per_commitment_point`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// A SHA256 tweak was not a valid scalar, or a tweak produced the point
    /// at infinity / the zero key.
    InvalidTweak,
    /// A 32-byte per-commitment secret is not a valid private key (zero or
    /// at or above the curve order).
    InvalidSecret,
}

impl core::fmt::Display for KeyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            KeyError::InvalidTweak => {
                f.write_str("key tweak out of range or resulting key invalid")
            }
            KeyError::InvalidSecret => {
                f.write_str("per-commitment secret is not a valid private key")
            }
        }
    }
}

impl std::error::Error for KeyError {}

/// SHA256(a || b) over two compressed points, as a scalar.
fn tweak(a: &PublicKey, b: &PublicKey) -> Result<Scalar, KeyError> {
    let mut engine = sha256::Hash::engine();
    engine.input(&a.serialize());
    engine.input(&b.serialize());
    let hash = sha256::Hash::from_engine(engine);
    Scalar::from_be_bytes(hash.to_byte_array()).map_err(|_| KeyError::InvalidTweak)
}

/// `per_commitment_point = per_commitment_secret * G`.
pub fn per_commitment_point<C: Signing>(
    secp: &Secp256k1<C>,
    per_commitment_secret: &[u8; 32],
) -> Result<PublicKey, KeyError> {
    let secret =
        SecretKey::from_slice(per_commitment_secret).map_err(|_| KeyError::InvalidSecret)?;
    Ok(PublicKey::from_secret_key(secp, &secret))
}

/// `basepoint + SHA256(per_commitment_point || basepoint) * G`.
pub fn derive_pubkey<C: Verification>(
    secp: &Secp256k1<C>,
    basepoint: &PublicKey,
    per_commitment_point: &PublicKey,
) -> Result<PublicKey, KeyError> {
    let t = tweak(per_commitment_point, basepoint)?;
    basepoint
        .add_exp_tweak(secp, &t)
        .map_err(|_| KeyError::InvalidTweak)
}

/// `basepoint_secret + SHA256(per_commitment_point || basepoint)`: the
/// private key of [`derive_pubkey`]'s result.
pub fn derive_privkey<C: Signing>(
    secp: &Secp256k1<C>,
    basepoint_secret: &SecretKey,
    per_commitment_point: &PublicKey,
) -> Result<SecretKey, KeyError> {
    let basepoint = PublicKey::from_secret_key(secp, basepoint_secret);
    derive_privkey_from_basepoint(basepoint_secret, &basepoint, per_commitment_point)
}

/// [`derive_privkey`] given the basepoint too (`basepoint_secret * G`,
/// which the caller already holds: computing it is a point
/// multiplication, the tweak itself one hash and one scalar addition).
pub fn derive_privkey_from_basepoint(
    basepoint_secret: &SecretKey,
    basepoint: &PublicKey,
    per_commitment_point: &PublicKey,
) -> Result<SecretKey, KeyError> {
    let t = tweak(per_commitment_point, basepoint)?;
    basepoint_secret
        .add_tweak(&t)
        .map_err(|_| KeyError::InvalidTweak)
}

/// `revocationpubkey` from the revocation basepoint of the side that will
/// be able to punish and the `per_commitment_point` of the commitment's
/// owner.
pub fn derive_revocation_pubkey<C: Verification>(
    secp: &Secp256k1<C>,
    revocation_basepoint: &PublicKey,
    per_commitment_point: &PublicKey,
) -> Result<PublicKey, KeyError> {
    let rb_tweak = tweak(revocation_basepoint, per_commitment_point)?;
    let pcp_tweak = tweak(per_commitment_point, revocation_basepoint)?;
    let a = revocation_basepoint
        .mul_tweak(secp, &rb_tweak)
        .map_err(|_| KeyError::InvalidTweak)?;
    let b = per_commitment_point
        .mul_tweak(secp, &pcp_tweak)
        .map_err(|_| KeyError::InvalidTweak)?;
    a.combine(&b).map_err(|_| KeyError::InvalidTweak)
}

/// `revocationprivkey`, computable once the owner of the commitment has
/// revealed its `per_commitment_secret`.
pub fn derive_revocation_privkey<C: Signing>(
    secp: &Secp256k1<C>,
    revocation_basepoint_secret: &SecretKey,
    per_commitment_secret: &SecretKey,
) -> Result<SecretKey, KeyError> {
    let revocation_basepoint = PublicKey::from_secret_key(secp, revocation_basepoint_secret);
    let per_commitment_point = PublicKey::from_secret_key(secp, per_commitment_secret);
    let rb_tweak = tweak(&revocation_basepoint, &per_commitment_point)?;
    let pcp_tweak = tweak(&per_commitment_point, &revocation_basepoint)?;
    let a = revocation_basepoint_secret
        .mul_tweak(&rb_tweak)
        .map_err(|_| KeyError::InvalidTweak)?;
    let b = per_commitment_secret
        .mul_tweak(&pcp_tweak)
        .map_err(|_| KeyError::InvalidTweak)?;
    a.add_tweak(&Scalar::from(b))
        .map_err(|_| KeyError::InvalidTweak)
}

/// The long-lived public keys one side announces in `open_channel` /
/// `accept_channel` (BOLT 2 field names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelPublicKeys {
    /// `funding_pubkey`: this side's key in the 2-of-2 and its anchor.
    pub funding_pubkey: PublicKey,
    /// `revocation_basepoint`: lets this side punish the *other* side's
    /// revoked commitments.
    pub revocation_basepoint: PublicKey,
    /// `payment_basepoint`: with `option_static_remotekey`, the key of this
    /// side's `to_remote` output on the other side's commitment.
    pub payment_basepoint: PublicKey,
    /// `delayed_payment_basepoint`: base of this side's delayed `to_local`.
    pub delayed_payment_basepoint: PublicKey,
    /// `htlc_basepoint`: base of this side's HTLC keys.
    pub htlc_basepoint: PublicKey,
}

/// The per-commitment keys of one commitment transaction, named from the
/// point of view of its owner ("local" = the side that can broadcast it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitmentKeys {
    /// The owner's `per_commitment_point` for this commitment number.
    pub per_commitment_point: PublicKey,
    /// `revocationpubkey`: from the other side's revocation basepoint.
    pub revocation_pubkey: PublicKey,
    /// `local_delayedpubkey`: the owner's delayed key (to_local and HTLC tx
    /// outputs).
    pub local_delayed_pubkey: PublicKey,
    /// `remotepubkey`: the other side's `payment_basepoint`
    /// (`option_static_remotekey`).
    pub remote_payment_pubkey: PublicKey,
    /// The HTLC keys, which only HTLC outputs use: `None` when derived
    /// with [`CommitmentKeys::derive_for`] for a commitment whose HTLCs
    /// are all trimmed.
    pub htlc: Option<HtlcKeys>,
}

/// The two keys of a commitment's HTLC output scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HtlcKeys {
    /// `local_htlcpubkey`: the owner's HTLC key.
    pub local_htlc_pubkey: PublicKey,
    /// `remote_htlcpubkey`: the other side's HTLC key.
    pub remote_htlc_pubkey: PublicKey,
}

impl CommitmentKeys {
    /// Derives all the keys of the commitment owned by `owner` whose
    /// per-commitment point is `per_commitment_point` (the owner's).
    pub fn derive<C: Verification>(
        secp: &Secp256k1<C>,
        params: &ChannelParams,
        owner: Side,
        per_commitment_point: &PublicKey,
    ) -> Result<Self, KeyError> {
        Self::derive_with(secp, params, owner, per_commitment_point, true)
    }

    /// Derives the keys the commitment of `spec` uses: the HTLC keys only
    /// if one of its HTLCs is above the owner's dust limit (is given an
    /// output). Each derived key is a point multiplication; a commitment
    /// whose HTLCs are all trimmed (small payments) needs two of the four.
    pub fn derive_for<C: Verification>(
        secp: &Secp256k1<C>,
        params: &ChannelParams,
        owner: Side,
        per_commitment_point: &PublicKey,
        spec: &CommitmentSpec<'_>,
    ) -> Result<Self, KeyError> {
        let htlc = crate::commitment::has_htlc_outputs(params, owner, spec);
        Self::derive_with(secp, params, owner, per_commitment_point, htlc)
    }

    fn derive_with<C: Verification>(
        secp: &Secp256k1<C>,
        params: &ChannelParams,
        owner: Side,
        per_commitment_point: &PublicKey,
        htlc: bool,
    ) -> Result<Self, KeyError> {
        let own = &params.side(owner).pubkeys;
        let other = &params.side(owner.other()).pubkeys;
        let htlc = if htlc {
            Some(HtlcKeys {
                local_htlc_pubkey: derive_pubkey(secp, &own.htlc_basepoint, per_commitment_point)?,
                remote_htlc_pubkey: derive_pubkey(
                    secp,
                    &other.htlc_basepoint,
                    per_commitment_point,
                )?,
            })
        } else {
            None
        };
        Ok(CommitmentKeys {
            per_commitment_point: *per_commitment_point,
            revocation_pubkey: derive_revocation_pubkey(
                secp,
                &other.revocation_basepoint,
                per_commitment_point,
            )?,
            local_delayed_pubkey: derive_pubkey(
                secp,
                &own.delayed_payment_basepoint,
                per_commitment_point,
            )?,
            remote_payment_pubkey: other.payment_basepoint,
            htlc,
        })
    }
}
