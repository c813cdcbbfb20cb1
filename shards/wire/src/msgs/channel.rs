//! BOLT 2 channel messages ("Channel Establishment v1", "Channel
//! Quiescence", "Channel Close", "Normal Operation", "Message
//! Retransmission") with their TLV extensions.
//!
//! Shapes only: whether a value is acceptable (dust limits, fee ranges,
//! HTLC ids) is the channel state machine's decision.

use secp256k1::ecdsa::Signature;
use secp256k1::PublicKey;

use crate::features::Features;
use crate::msgs::codec::{fixed_struct, wire_message, Field, TlvValue};
use crate::types::{
    ChainHash, ChannelId, Msat, PaymentHash, PaymentPreimage, Sat, ShortChannelId, Txid,
};
use crate::{DecodeError, Reader};

/// Size of `onion_routing_packet` (BOLT 4 "Packet Structure": version 1 +
/// key 33 + hop_payloads 1300 + HMAC 32).
pub const ONION_PACKET_LEN: usize = 1366;

/// Hold times in `attribution_data` (BOLT 4: one per hop, up to 20 hops).
pub const ATTRIBUTION_HOLD_TIMES: usize = 20;
/// Truncated HMACs in `attribution_data` (BOLT 4: 20+19+...+1 = 210).
pub const ATTRIBUTION_HMACS: usize = 210;
/// Bytes of `attribution_data`: 20 u32 hold times + 210 4-byte HMACs.
pub const ATTRIBUTION_DATA_LEN: usize = ATTRIBUTION_HOLD_TIMES * 4 + ATTRIBUTION_HMACS * 4;

/// `attribution_data` TLV (BOLT 2 `update_fulfill_htlc_tlvs` /
/// `update_fail_htlc_tlvs` type 1), kept as its 920 raw bytes; the onion
/// crate interprets it.
#[derive(Clone, PartialEq, Eq)]
pub struct AttributionData(pub [u8; ATTRIBUTION_DATA_LEN]);

impl core::fmt::Debug for AttributionData {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "AttributionData({:02x?}..)", &self.0[..8])
    }
}

impl AttributionData {
    /// `htlc_hold_times[i]`, in 100 ms units; `None` past the 20th.
    pub fn htlc_hold_time(&self, i: usize) -> Option<u32> {
        if i >= ATTRIBUTION_HOLD_TIMES {
            return None;
        }
        let b: [u8; 4] = self.0[i * 4..i * 4 + 4].try_into().ok()?;
        Some(u32::from_be_bytes(b))
    }

    /// `truncated_hmacs[i]`; `None` past the 210th.
    pub fn truncated_hmac(&self, i: usize) -> Option<[u8; 4]> {
        if i >= ATTRIBUTION_HMACS {
            return None;
        }
        let off = ATTRIBUTION_HOLD_TIMES * 4 + i * 4;
        self.0[off..off + 4].try_into().ok()
    }
}

impl Field for AttributionData {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.array().map(AttributionData)
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0)
    }
}

impl TlvValue for AttributionData {
    fn decode_tlv(typ: u64, value: &[u8]) -> Result<Self, DecodeError> {
        crate::msgs::codec::decode_exact(typ, value)
    }
    fn tlv_len(&self) -> usize {
        ATTRIBUTION_DATA_LEN
    }
    fn encode_tlv(&self, out: &mut Vec<u8>) {
        self.write(out)
    }
}

fixed_struct! {
    /// `fee_range` TLV of `closing_signed` (type 1).
    FeeRange (16) {
        /// Lowest acceptable closing fee.
        min_fee_satoshis: Sat,
        /// Highest acceptable closing fee.
        max_fee_satoshis: Sat,
    }
}

fixed_struct! {
    /// `next_funding` TLV of `channel_reestablish` (type 1).
    NextFunding (33) {
        /// The interactive funding transaction being (re)signed.
        next_funding_txid: Txid,
        /// Which signatures to retransmit.
        retransmit_flags: u8,
    }
}

fixed_struct! {
    /// `my_current_funding_locked` TLV of `channel_reestablish` (type 5).
    MyCurrentFundingLocked (33) {
        /// The latest funding transaction the sender considers locked.
        my_current_funding_locked_txid: Txid,
        /// Which announcement signatures to retransmit.
        retransmit_flags: u8,
    }
}

wire_message! {
    /// `open_channel` (type 32): the funder proposes a channel.
    OpenChannel = 32 {
        /// The chain the channel lives on.
        chain_hash: ChainHash,
        /// Id until the funding outpoint is known.
        temporary_channel_id: ChannelId,
        /// Channel capacity.
        funding_satoshis: Sat,
        /// Amount given to the acceptor at open.
        push_msat: Msat,
        /// Outputs below this are not created on the sender's commitment.
        dust_limit_satoshis: Sat,
        /// Cap on outstanding HTLC value towards the sender.
        max_htlc_value_in_flight_msat: Msat,
        /// Reserve the acceptor must keep.
        channel_reserve_satoshis: Sat,
        /// Smallest HTLC the sender accepts.
        htlc_minimum_msat: Msat,
        /// Initial commitment fee rate.
        feerate_per_kw: u32,
        /// CSV delay on the acceptor's to_self outputs.
        to_self_delay: u16,
        /// Maximum HTLCs the acceptor may offer.
        max_accepted_htlcs: u16,
        /// Key of the 2-of-2 funding output.
        funding_pubkey: PublicKey,
        /// Revocation basepoint.
        revocation_basepoint: PublicKey,
        /// Payment basepoint.
        payment_basepoint: PublicKey,
        /// Delayed payment basepoint.
        delayed_payment_basepoint: PublicKey,
        /// HTLC basepoint.
        htlc_basepoint: PublicKey,
        /// Per-commitment point for commitment 0.
        first_per_commitment_point: PublicKey,
        /// Bit 0 `announce_channel`.
        channel_flags: u8,
    }
    tlvs {
        /// Type 0 `upfront_shutdown_script` (`shutdown_scriptpubkey`; empty
        /// means none).
        0 => upfront_shutdown_script: Vec<u8>,
        /// Type 1 `channel_type`.
        1 => channel_type: Features,
    }
}

wire_message! {
    /// `accept_channel` (type 33): the acceptor's answer to `open_channel`.
    AcceptChannel = 33 {
        /// Echoes `open_channel`.
        temporary_channel_id: ChannelId,
        /// Outputs below this are not created on the sender's commitment.
        dust_limit_satoshis: Sat,
        /// Cap on outstanding HTLC value towards the sender.
        max_htlc_value_in_flight_msat: Msat,
        /// Reserve the funder must keep.
        channel_reserve_satoshis: Sat,
        /// Smallest HTLC the sender accepts.
        htlc_minimum_msat: Msat,
        /// Confirmations the acceptor waits for.
        minimum_depth: u32,
        /// CSV delay on the funder's to_self outputs.
        to_self_delay: u16,
        /// Maximum HTLCs the funder may offer.
        max_accepted_htlcs: u16,
        /// Key of the 2-of-2 funding output.
        funding_pubkey: PublicKey,
        /// Revocation basepoint.
        revocation_basepoint: PublicKey,
        /// Payment basepoint.
        payment_basepoint: PublicKey,
        /// Delayed payment basepoint.
        delayed_payment_basepoint: PublicKey,
        /// HTLC basepoint.
        htlc_basepoint: PublicKey,
        /// Per-commitment point for commitment 0.
        first_per_commitment_point: PublicKey,
    }
    tlvs {
        /// Type 0 `upfront_shutdown_script`.
        0 => upfront_shutdown_script: Vec<u8>,
        /// Type 1 `channel_type`.
        1 => channel_type: Features,
    }
}

wire_message! {
    /// `funding_created` (type 34): the funder's outpoint and signature.
    FundingCreated = 34 {
        /// Echoes `open_channel`.
        temporary_channel_id: ChannelId,
        /// Funding transaction id.
        funding_txid: Txid,
        /// Funding output index.
        funding_output_index: u16,
        /// Signature of the acceptor's first commitment.
        signature: Signature,
    }
    tlvs {}
}

wire_message! {
    /// `funding_signed` (type 35): the acceptor's signature.
    FundingSigned = 35 {
        /// The real channel id.
        channel_id: ChannelId,
        /// Signature of the funder's first commitment.
        signature: Signature,
    }
    tlvs {}
}

wire_message! {
    /// `channel_ready` (type 36): funding is deep enough.
    ChannelReady = 36 {
        /// The channel.
        channel_id: ChannelId,
        /// Per-commitment point for commitment 1.
        second_per_commitment_point: PublicKey,
    }
    tlvs {
        /// Type 1 `short_channel_id` (`alias`).
        1 => short_channel_id: ShortChannelId,
    }
}

wire_message! {
    /// `stfu` (type 2): quiescence request/ack.
    Stfu = 2 {
        /// The channel.
        channel_id: ChannelId,
        /// 1 if the sender initiated quiescence.
        initiator: u8,
    }
    tlvs {}
}

wire_message! {
    /// `shutdown` (type 38): start closing.
    Shutdown = 38 {
        /// The channel.
        channel_id: ChannelId,
        /// Where the sender's funds go.
        scriptpubkey: Vec<u8>,
    }
    tlvs {}
}

wire_message! {
    /// `closing_signed` (type 39): legacy fee negotiation.
    ClosingSigned = 39 {
        /// The channel.
        channel_id: ChannelId,
        /// Proposed fee.
        fee_satoshis: Sat,
        /// Signature of the closing transaction with that fee.
        signature: Signature,
    }
    tlvs {
        /// Type 1 `fee_range`.
        1 => fee_range: FeeRange,
    }
}

wire_message! {
    /// `closing_complete` (type 40): simple close proposal.
    ClosingComplete = 40 {
        /// The channel.
        channel_id: ChannelId,
        /// The closer's output script.
        closer_scriptpubkey: Vec<u8>,
        /// The closee's output script.
        closee_scriptpubkey: Vec<u8>,
        /// Fee paid by the closer.
        fee_satoshis: Sat,
        /// Closing transaction locktime.
        locktime: u32,
    }
    tlvs {
        /// Type 1 `closer_output_only` (`sig`).
        1 => closer_output_only: Signature,
        /// Type 2 `closee_output_only` (`sig`).
        2 => closee_output_only: Signature,
        /// Type 3 `closer_and_closee_outputs` (`sig`).
        3 => closer_and_closee_outputs: Signature,
    }
}

wire_message! {
    /// `closing_sig` (type 41): the closee's signature for a simple close.
    ClosingSig = 41 {
        /// The channel.
        channel_id: ChannelId,
        /// The closer's output script.
        closer_scriptpubkey: Vec<u8>,
        /// The closee's output script.
        closee_scriptpubkey: Vec<u8>,
        /// Fee paid by the closer.
        fee_satoshis: Sat,
        /// Closing transaction locktime.
        locktime: u32,
    }
    tlvs {
        /// Type 1 `closer_output_only` (`sig`).
        1 => closer_output_only: Signature,
        /// Type 2 `closee_output_only` (`sig`).
        2 => closee_output_only: Signature,
        /// Type 3 `closer_and_closee_outputs` (`sig`).
        3 => closer_and_closee_outputs: Signature,
    }
}

wire_message! {
    /// `update_add_htlc` (type 128): offer an HTLC.
    UpdateAddHtlc = 128 {
        /// The channel.
        channel_id: ChannelId,
        /// HTLC id, incrementing from 0.
        id: u64,
        /// Amount offered.
        amount_msat: Msat,
        /// Payment hash.
        payment_hash: PaymentHash,
        /// Absolute expiry height.
        cltv_expiry: u32,
        /// BOLT 4 onion, inline (no allocation per HTLC).
        onion_routing_packet: [u8; ONION_PACKET_LEN],
    }
    tlvs {
        /// Type 0 `blinded_path` (`path_key`).
        0 => blinded_path: PublicKey,
    }
}

wire_message! {
    /// `update_fulfill_htlc` (type 130): settle an HTLC with its preimage.
    UpdateFulfillHtlc = 130 {
        /// The channel.
        channel_id: ChannelId,
        /// HTLC id.
        id: u64,
        /// The preimage.
        payment_preimage: PaymentPreimage,
    }
    tlvs {
        /// Type 1 `attribution_data`.
        1 => attribution_data: AttributionData,
    }
}

wire_message! {
    /// `update_fail_htlc` (type 131): fail an HTLC with an onion error.
    UpdateFailHtlc = 131 {
        /// The channel.
        channel_id: ChannelId,
        /// HTLC id.
        id: u64,
        /// Encrypted failure reason.
        reason: Vec<u8>,
    }
    tlvs {
        /// Type 1 `attribution_data`.
        1 => attribution_data: AttributionData,
    }
}

wire_message! {
    /// `update_fail_malformed_htlc` (type 135): the onion was unparsable.
    UpdateFailMalformedHtlc = 135 {
        /// The channel.
        channel_id: ChannelId,
        /// HTLC id.
        id: u64,
        /// SHA256 of the onion received.
        sha256_of_onion: [u8; 32],
        /// A BADONION failure code.
        failure_code: u16,
    }
    tlvs {}
}

wire_message! {
    /// `commitment_signed` (type 132): sign the peer's next commitment.
    CommitmentSigned = 132 {
        /// The channel.
        channel_id: ChannelId,
        /// Commitment signature.
        signature: Signature,
        /// One signature per HTLC output, in output order.
        htlc_signature: Vec<Signature>,
    }
    tlvs {
        /// Type 1 `funding_txid` (splicing: which funding this signs).
        1 => funding_txid: Txid,
    }
}

wire_message! {
    /// `revoke_and_ack` (type 133): revoke the previous commitment.
    RevokeAndAck = 133 {
        /// The channel.
        channel_id: ChannelId,
        /// Secret of the revoked commitment.
        per_commitment_secret: [u8; 32],
        /// Point for the commitment after next.
        next_per_commitment_point: PublicKey,
    }
    tlvs {}
}

wire_message! {
    /// `update_fee` (type 134): the funder changes the commitment fee rate.
    UpdateFee = 134 {
        /// The channel.
        channel_id: ChannelId,
        /// New fee rate.
        feerate_per_kw: u32,
    }
    tlvs {}
}

wire_message! {
    /// `channel_reestablish` (type 136): resynchronise after reconnecting.
    ChannelReestablish = 136 {
        /// The channel.
        channel_id: ChannelId,
        /// Next commitment number the sender expects to receive.
        next_commitment_number: u64,
        /// Next revocation number the sender expects to receive.
        next_revocation_number: u64,
        /// Last per-commitment secret received, or zeroes.
        your_last_per_commitment_secret: [u8; 32],
        /// The sender's current per-commitment point.
        my_current_per_commitment_point: PublicKey,
    }
    tlvs {
        /// Type 1 `next_funding`.
        1 => next_funding: NextFunding,
        /// Type 5 `my_current_funding_locked`.
        5 => my_current_funding_locked: MyCurrentFundingLocked,
    }
}
