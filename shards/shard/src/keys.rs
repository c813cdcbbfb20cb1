//! Key material the engine derives: per-channel keys and the signature on our own
//! `channel_update`s.
//!
//! Channel keys come from `HMAC-SHA256(node_secret, tag || peer || temporary_channel_id ||
//! nonce)`, one derivation per key. The `nonce` is a counter that starts at a value the shell
//! draws from the OS at start-up ([`KeySource::new`]), so two channels never share keys even if
//! a peer reuses a `temporary_channel_id` or the process restarts: sharing a commitment seed
//! would let a peer turn the revocation secrets of one channel against the other.

use bitcoin::hashes::sha256;
use bitcoin::hashes::{sha256d, Hash, HashEngine, Hmac, HmacEngine};
use lnhub_channel::{ChannelSecrets, LocalKeys};
use lnhub_tx::ChannelPublicKeys;
use lnhub_wire::msgs::ChannelUpdate;
use lnhub_wire::types::ChannelId;
use secp256k1::{Message as SecpMessage, PublicKey, Secp256k1, SecretKey, Signing};

/// Derives fresh keys for each channel we accept or open.
#[derive(Clone)]
pub struct KeySource {
    node_secret: SecretKey,
    nonce: u64,
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeySource(nonce {})", self.nonce)
    }
}

impl KeySource {
    /// `nonce_start` must differ between runs (the shell passes OS randomness).
    pub fn new(node_secret: SecretKey, nonce_start: u64) -> KeySource {
        KeySource {
            node_secret,
            nonce: nonce_start,
        }
    }

    fn derive(
        &self,
        peer: &PublicKey,
        temporary_channel_id: &ChannelId,
        nonce: u64,
        label: &str,
    ) -> [u8; 32] {
        let mut engine = HmacEngine::<sha256::Hash>::new(&self.node_secret.secret_bytes());
        engine.input(b"lnhub channel keys/");
        engine.input(label.as_bytes());
        engine.input(&peer.serialize());
        engine.input(&temporary_channel_id.0);
        engine.input(&nonce.to_be_bytes());
        Hmac::<sha256::Hash>::from_engine(engine).to_byte_array()
    }

    /// A fresh `temporary_channel_id` for a channel we open to `peer`.
    pub fn temporary_channel_id(&mut self, peer: &PublicKey) -> ChannelId {
        let nonce = self.nonce;
        self.nonce = self.nonce.wrapping_add(1);
        ChannelId(self.derive(peer, &ChannelId::ZERO, nonce, "temporary channel id"))
    }

    /// Keys for a new channel with `peer`.
    pub fn channel_keys<C: Signing>(
        &mut self,
        secp: &Secp256k1<C>,
        peer: &PublicKey,
        temporary_channel_id: &ChannelId,
    ) -> LocalKeys {
        let nonce = self.nonce;
        self.nonce = self.nonce.wrapping_add(1);
        let key = |label: &str| {
            let mut bytes = self.derive(peer, temporary_channel_id, nonce, label);
            loop {
                // A hash is a valid key but with probability ~2^-128; hash again if not.
                if let Ok(k) = SecretKey::from_slice(&bytes) {
                    return k;
                }
                bytes = sha256::Hash::hash(&bytes).to_byte_array();
            }
        };
        let funding_key = key("funding");
        let htlc = key("htlc");
        let public = |s: &SecretKey| PublicKey::from_secret_key(secp, s);
        LocalKeys {
            pubkeys: ChannelPublicKeys {
                funding_pubkey: public(&funding_key),
                revocation_basepoint: public(&key("revocation")),
                payment_basepoint: public(&key("payment")),
                delayed_payment_basepoint: public(&key("delayed")),
                htlc_basepoint: public(&htlc),
            },
            secrets: ChannelSecrets {
                funding_key,
                htlc_basepoint_secret: htlc,
                commitment_seed: self.derive(peer, temporary_channel_id, nonce, "seed"),
            },
        }
    }
}

/// Our `shutdown` script for `channel_id`: P2WPKH to a key derived from the node secret and the
/// channel id alone (`HMAC-SHA256(node_secret, "lnhub shutdown/" || channel_id)`), so the
/// closing output's key can be derived again from the node secret at any time (the on-chain
/// wallet, a later issue, sweeps it). Deterministic: a retransmitted `shutdown` repeats it.
pub fn shutdown_script<C: Signing>(
    secp: &Secp256k1<C>,
    node_secret: &SecretKey,
    channel_id: &ChannelId,
) -> bitcoin::ScriptBuf {
    let mut engine = HmacEngine::<sha256::Hash>::new(&node_secret.secret_bytes());
    engine.input(b"lnhub shutdown/");
    engine.input(&channel_id.0);
    let mut bytes = Hmac::<sha256::Hash>::from_engine(engine).to_byte_array();
    let key = loop {
        // A hash is a valid key but with probability ~2^-128; hash again if not.
        if let Ok(k) = SecretKey::from_slice(&bytes) {
            break k;
        }
        bytes = sha256::Hash::hash(&bytes).to_byte_array();
    };
    let public = bitcoin::CompressedPublicKey(PublicKey::from_secret_key(secp, &key));
    bitcoin::ScriptBuf::new_p2wpkh(&public.wpubkey_hash())
}

/// Offset of the signed part of an encoded `channel_update`: 2 bytes of type and the 64-byte
/// signature come first (BOLT 7: "the signature covers the rest of the message").
const CHANNEL_UPDATE_SIGNED_OFFSET: usize = 2 + 64;

/// Signs `update` with our node key (BOLT 7 "The `channel_update` Message": the signature of
/// the double-SHA256 of everything after the signature field).
pub fn sign_channel_update<C: Signing>(
    secp: &Secp256k1<C>,
    node_secret: &SecretKey,
    update: &mut ChannelUpdate,
) {
    let mut bytes = Vec::with_capacity(160);
    lnhub_wire::msgs::Message::ChannelUpdate(update.clone()).encode(&mut bytes);
    let mut engine = sha256d::Hash::engine();
    engine.input(&bytes[CHANNEL_UPDATE_SIGNED_OFFSET..]);
    let digest = sha256d::Hash::from_engine(engine).to_byte_array();
    update.signature = secp.sign_ecdsa(&SecpMessage::from_digest(digest), node_secret);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shutdown script is a P2WPKH BOLT 2 accepts, the same for a channel every time and
    /// different between channels.
    #[test]
    fn shutdown_scripts_are_stable_per_channel() {
        let secp = Secp256k1::new();
        let secret = SecretKey::from_slice(&[3; 32]).unwrap();
        let a = shutdown_script(&secp, &secret, &ChannelId([1; 32]));
        assert!(a.is_p2wpkh());
        assert_eq!(a, shutdown_script(&secp, &secret, &ChannelId([1; 32])));
        assert_ne!(a, shutdown_script(&secp, &secret, &ChannelId([2; 32])));
    }

    #[test]
    fn every_channel_gets_fresh_keys_even_for_a_reused_temporary_id() {
        let secp = Secp256k1::new();
        let node = SecretKey::from_slice(&[3; 32]).unwrap();
        let peer = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[4; 32]).unwrap());
        let mut source = KeySource::new(node, 1);
        let temp = ChannelId([9; 32]);
        let a = source.channel_keys(&secp, &peer, &temp);
        let b = source.channel_keys(&secp, &peer, &temp);
        assert_ne!(a.pubkeys.funding_pubkey, b.pubkeys.funding_pubkey);
        assert_ne!(a.secrets.commitment_seed, b.secrets.commitment_seed);
        // A restart with another nonce start never meets the first run's keys.
        let mut again = KeySource::new(node, 1_000_000);
        assert_ne!(
            again
                .channel_keys(&secp, &peer, &temp)
                .pubkeys
                .funding_pubkey,
            a.pubkeys.funding_pubkey
        );
    }

    #[test]
    fn channel_update_signature_verifies_over_the_signed_part() {
        let secp = Secp256k1::new();
        let node = SecretKey::from_slice(&[5; 32]).unwrap();
        let mut update = ChannelUpdate {
            signature: secp.sign_ecdsa(&SecpMessage::from_digest([1; 32]), &node),
            chain_hash: lnhub_wire::types::ChainHash::REGTEST,
            short_channel_id: lnhub_wire::types::ShortChannelId(42),
            timestamp: 1,
            message_flags: 1,
            channel_flags: 0,
            cltv_expiry_delta: 40,
            htlc_minimum_msat: lnhub_wire::types::Msat(1),
            fee_base_msat: 1000,
            fee_proportional_millionths: 100,
            htlc_maximum_msat: lnhub_wire::types::Msat(1_000_000),
            excess_data: Vec::new(),
        };
        sign_channel_update(&secp, &node, &mut update);
        let mut bytes = Vec::new();
        lnhub_wire::msgs::Message::ChannelUpdate(update.clone()).encode(&mut bytes);
        let digest = sha256d::Hash::hash(&bytes[CHANNEL_UPDATE_SIGNED_OFFSET..]).to_byte_array();
        let node_id = PublicKey::from_secret_key(&secp, &node);
        secp.verify_ecdsa(
            &SecpMessage::from_digest(digest),
            &update.signature,
            &node_id,
        )
        .unwrap();
    }
}
