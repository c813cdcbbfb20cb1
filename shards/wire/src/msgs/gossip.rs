//! BOLT 7 gossip messages ("The `announcement_signatures` Message" through
//! "Query Messages").
//!
//! The three signed announcements keep any bytes after their known fields
//! as `excess_data`, since the signature covers them; the query messages
//! carry TLV streams. Verifying signatures and decoding `encoded_short_ids`
//! are left to the gossip layer.

use secp256k1::ecdsa::Signature;
use secp256k1::PublicKey;

use crate::features::Features;
use crate::msgs::codec::{fixed_struct, wire_message, TlvValue};
use crate::types::{ChainHash, ChannelId, Msat, ShortChannelId};
use crate::{bigsize, DecodeError, Reader};

wire_message! {
    /// `announcement_signatures` (type 259): signatures for a public channel.
    AnnouncementSignatures = 259 {
        /// The channel.
        channel_id: ChannelId,
        /// The channel's short id.
        short_channel_id: ShortChannelId,
        /// Signature by the node key.
        node_signature: Signature,
        /// Signature by the funding key.
        bitcoin_signature: Signature,
    }
    tlvs {}
}

wire_message! {
    /// `channel_announcement` (type 256): proof a channel exists.
    ChannelAnnouncement = 256 {
        /// Signature by `node_id_1`.
        node_signature_1: Signature,
        /// Signature by `node_id_2`.
        node_signature_2: Signature,
        /// Signature by `bitcoin_key_1`.
        bitcoin_signature_1: Signature,
        /// Signature by `bitcoin_key_2`.
        bitcoin_signature_2: Signature,
        /// Channel features.
        features: Features,
        /// The chain.
        chain_hash: ChainHash,
        /// The funding output.
        short_channel_id: ShortChannelId,
        /// Lesser node id.
        node_id_1: PublicKey,
        /// Greater node id.
        node_id_2: PublicKey,
        /// Funding key of `node_id_1`.
        bitcoin_key_1: PublicKey,
        /// Funding key of `node_id_2`.
        bitcoin_key_2: PublicKey,
    }
    excess_data
}

wire_message! {
    /// `node_announcement` (type 257): a node's metadata.
    NodeAnnouncement = 257 {
        /// Signature by `node_id`.
        signature: Signature,
        /// Node features.
        features: Features,
        /// Strictly increasing per node.
        timestamp: u32,
        /// The node.
        node_id: PublicKey,
        /// Display colour.
        rgb_color: [u8; 3],
        /// Display name, zero padded.
        alias: [u8; 32],
        /// Address descriptors, kept raw (unknown types must survive).
        addresses: Vec<u8>,
    }
    excess_data
}

wire_message! {
    /// `channel_update` (type 258): one direction's forwarding policy.
    ChannelUpdate = 258 {
        /// Signature by the originating node.
        signature: Signature,
        /// The chain.
        chain_hash: ChainHash,
        /// The channel.
        short_channel_id: ShortChannelId,
        /// Strictly increasing per channel direction.
        timestamp: u32,
        /// Bit 0 `must_be_one`, bit 1 `dont_forward`.
        message_flags: u8,
        /// Bit 0 `direction`, bit 1 `disable`.
        channel_flags: u8,
        /// CLTV delta this hop subtracts.
        cltv_expiry_delta: u16,
        /// Smallest HTLC forwarded.
        htlc_minimum_msat: Msat,
        /// Base fee.
        fee_base_msat: u32,
        /// Proportional fee.
        fee_proportional_millionths: u32,
        /// Largest HTLC forwarded.
        htlc_maximum_msat: Msat,
    }
    excess_data
}

/// A one-byte encoding type followed by the encoded bytes (`query_flags`
/// and `timestamps_tlv` share this shape).
macro_rules! encoded_tlv {
    ($(#[$m:meta])* $name:ident { $(#[$fm:meta])* $field:ident }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            /// 0 = uncompressed (the only encoding left in BOLT 7).
            pub encoding_type: u8,
            $(#[$fm])*
            pub $field: Vec<u8>,
        }

        impl TlvValue for $name {
            fn decode_tlv(typ: u64, value: &[u8]) -> Result<Self, DecodeError> {
                let (&encoding_type, rest) =
                    value.split_first().ok_or(DecodeError::TlvBadLength { typ })?;
                Ok($name { encoding_type, $field: rest.to_vec() })
            }
            fn tlv_len(&self) -> usize {
                1 + self.$field.len()
            }
            fn encode_tlv(&self, out: &mut Vec<u8>) {
                out.push(self.encoding_type);
                out.extend_from_slice(&self.$field);
            }
        }
    };
}

encoded_tlv! {
    /// `query_flags` TLV of `query_short_channel_ids` (type 1).
    QueryFlags {
        /// One BigSize flag set per queried channel, encoded.
        encoded_query_flags
    }
}

encoded_tlv! {
    /// `timestamps_tlv` of `reply_channel_range` (type 1).
    EncodedTimestamps {
        /// `channel_update_timestamps` per channel, encoded.
        encoded_timestamps
    }
}

/// `query_option` TLV of `query_channel_range` (type 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryOption {
    /// Bit 0: want timestamps; bit 1: want checksums (minimal BigSize).
    pub query_option_flags: u64,
}

impl TlvValue for QueryOption {
    fn decode_tlv(typ: u64, value: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(value);
        let query_option_flags = r.bigsize()?;
        if !r.is_empty() {
            return Err(DecodeError::TlvBadLength { typ });
        }
        Ok(QueryOption { query_option_flags })
    }
    fn tlv_len(&self) -> usize {
        bigsize::encoded_len(self.query_option_flags)
    }
    fn encode_tlv(&self, out: &mut Vec<u8>) {
        bigsize::write(out, self.query_option_flags)
    }
}

/// Bytes of one `channel_update_checksums` entry (two u32).
const CHECKSUMS_LEN: usize = 8;

fixed_struct! {
    /// `channel_update_checksums` subtype (BOLT 7).
    ChannelUpdateChecksums (CHECKSUMS_LEN) {
        /// Checksum of `node_id_1`'s update, 0 if none.
        checksum_node_id_1: u32,
        /// Checksum of `node_id_2`'s update, 0 if none.
        checksum_node_id_2: u32,
    }
}

/// `checksums_tlv` (type 3): `...*channel_update_checksums`.
impl TlvValue for Vec<ChannelUpdateChecksums> {
    fn decode_tlv(typ: u64, value: &[u8]) -> Result<Self, DecodeError> {
        let chunks = value.chunks_exact(CHECKSUMS_LEN);
        if !chunks.remainder().is_empty() {
            return Err(DecodeError::TlvBadLength { typ });
        }
        chunks
            .map(|c| crate::msgs::codec::decode_exact(typ, c))
            .collect()
    }
    fn tlv_len(&self) -> usize {
        self.len() * CHECKSUMS_LEN
    }
    fn encode_tlv(&self, out: &mut Vec<u8>) {
        self.iter()
            .for_each(|c| crate::msgs::codec::Field::write(c, out))
    }
}

wire_message! {
    /// `query_short_channel_ids` (type 261).
    QueryShortChannelIds = 261 {
        /// The chain.
        chain_hash: ChainHash,
        /// Encoding byte + short ids.
        encoded_short_ids: Vec<u8>,
    }
    tlvs {
        /// Type 1 `query_flags`.
        1 => query_flags: QueryFlags,
    }
}

wire_message! {
    /// `reply_short_channel_ids_end` (type 262).
    ReplyShortChannelIdsEnd = 262 {
        /// The chain.
        chain_hash: ChainHash,
        /// 0 if the replier lacks up-to-date information for this chain.
        full_information: u8,
    }
    tlvs {}
}

wire_message! {
    /// `query_channel_range` (type 263).
    QueryChannelRange = 263 {
        /// The chain.
        chain_hash: ChainHash,
        /// First block.
        first_blocknum: u32,
        /// Number of blocks.
        number_of_blocks: u32,
    }
    tlvs {
        /// Type 1 `query_option`.
        1 => query_option: QueryOption,
    }
}

wire_message! {
    /// `reply_channel_range` (type 264).
    ReplyChannelRange = 264 {
        /// The chain.
        chain_hash: ChainHash,
        /// First block covered.
        first_blocknum: u32,
        /// Number of blocks covered.
        number_of_blocks: u32,
        /// 1 on the last reply.
        sync_complete: u8,
        /// Encoding byte + short ids.
        encoded_short_ids: Vec<u8>,
    }
    tlvs {
        /// Type 1 `timestamps_tlv`.
        1 => timestamps_tlv: EncodedTimestamps,
        /// Type 3 `checksums_tlv`.
        3 => checksums_tlv: Vec<ChannelUpdateChecksums>,
    }
}

wire_message! {
    /// `gossip_timestamp_filter` (type 265).
    GossipTimestampFilter = 265 {
        /// The chain.
        chain_hash: ChainHash,
        /// Start of the window.
        first_timestamp: u32,
        /// Length of the window.
        timestamp_range: u32,
    }
    tlvs {}
}
