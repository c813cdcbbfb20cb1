//! Every message a routing hub exchanges (BOLT 1 "Lightning Message
//! Format"; message definitions in BOLT 1, 2 and 7), and the [`Message`]
//! enum that decodes and encodes them by type.
//!
//! A message is a 2-byte big-endian type followed by its fields and an
//! optional TLV extension. Unknown odd types decode to
//! [`Message::Unknown`] (ignore them); unknown even types are
//! [`DecodeError::UnknownEvenType`] (close the connection). Decoding is
//! byte-exact: unknown odd TLV records and gossip `excess_data` are kept,
//! so `encode` reproduces the input. Framing (BOLT 8) is the caller's.

pub mod channel;
pub(crate) mod codec;
pub mod gossip;
pub mod setup;

pub use channel::*;
pub use gossip::*;
pub use setup::*;

use crate::types::ChannelId;
use crate::{DecodeError, Reader};

macro_rules! messages {
    ($($(#[$m:meta])* $variant:ident($ty:ident)),* $(,)?) => {
        /// Any decoded message.
        ///
        /// Large (the inline 1366-byte onion): boxing the big variants would
        /// cost an allocation per HTLC on the hot path, so the size is kept.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Message {
            $( $(#[$m])* $variant($ty), )*
            /// An unknown odd type: BOLT 1 says ignore it. Its body is
            /// dropped; `encode` writes only the type.
            Unknown {
                /// The message type (odd).
                msg_type: u16,
            },
        }

        impl Message {
            /// Decodes one whole message: `buf` starts with the 2-byte type
            /// and ends where the message ends.
            pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
                let mut r = Reader::new(buf);
                let msg_type = r.u16()?;
                match msg_type {
                    $( $ty::MSG_TYPE => $ty::decode_body(&mut r).map(Message::$variant), )*
                    t if t % 2 == 1 => Ok(Message::Unknown { msg_type: t }),
                    t => Err(DecodeError::UnknownEvenType(t)),
                }
            }

            /// Appends the type and body to `out` (the caller reuses it).
            pub fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.msg_type().to_be_bytes());
                match self {
                    $( Message::$variant(m) => m.encode_body(out), )*
                    Message::Unknown { .. } => {}
                }
            }

            /// The BOLT message type.
            pub fn msg_type(&self) -> u16 {
                match self {
                    $( Message::$variant(_) => $ty::MSG_TYPE, )*
                    Message::Unknown { msg_type } => *msg_type,
                }
            }
        }

        $(
            impl From<$ty> for Message {
                fn from(m: $ty) -> Message {
                    Message::$variant(m)
                }
            }
        )*
    };
}

messages! {
    /// BOLT 1 `init`.
    Init(Init),
    /// BOLT 1 `error`.
    Error(ErrorMessage),
    /// BOLT 1 `warning`.
    Warning(Warning),
    /// BOLT 1 `ping`.
    Ping(Ping),
    /// BOLT 1 `pong`.
    Pong(Pong),
    /// BOLT 2 `open_channel`.
    OpenChannel(OpenChannel),
    /// BOLT 2 `accept_channel`.
    AcceptChannel(AcceptChannel),
    /// BOLT 2 `funding_created`.
    FundingCreated(FundingCreated),
    /// BOLT 2 `funding_signed`.
    FundingSigned(FundingSigned),
    /// BOLT 2 `channel_ready`.
    ChannelReady(ChannelReady),
    /// BOLT 2 `stfu`.
    Stfu(Stfu),
    /// BOLT 2 `shutdown`.
    Shutdown(Shutdown),
    /// BOLT 2 `closing_signed`.
    ClosingSigned(ClosingSigned),
    /// BOLT 2 `closing_complete`.
    ClosingComplete(ClosingComplete),
    /// BOLT 2 `closing_sig`.
    ClosingSig(ClosingSig),
    /// BOLT 2 `update_add_htlc`.
    UpdateAddHtlc(UpdateAddHtlc),
    /// BOLT 2 `update_fulfill_htlc`.
    UpdateFulfillHtlc(UpdateFulfillHtlc),
    /// BOLT 2 `update_fail_htlc`.
    UpdateFailHtlc(UpdateFailHtlc),
    /// BOLT 2 `update_fail_malformed_htlc`.
    UpdateFailMalformedHtlc(UpdateFailMalformedHtlc),
    /// BOLT 2 `commitment_signed`.
    CommitmentSigned(CommitmentSigned),
    /// BOLT 2 `revoke_and_ack`.
    RevokeAndAck(RevokeAndAck),
    /// BOLT 2 `update_fee`.
    UpdateFee(UpdateFee),
    /// BOLT 2 `channel_reestablish`.
    ChannelReestablish(ChannelReestablish),
    /// BOLT 7 `channel_announcement`.
    ChannelAnnouncement(ChannelAnnouncement),
    /// BOLT 7 `node_announcement`.
    NodeAnnouncement(NodeAnnouncement),
    /// BOLT 7 `channel_update`.
    ChannelUpdate(ChannelUpdate),
    /// BOLT 7 `announcement_signatures`.
    AnnouncementSignatures(AnnouncementSignatures),
    /// BOLT 7 `query_short_channel_ids`.
    QueryShortChannelIds(QueryShortChannelIds),
    /// BOLT 7 `reply_short_channel_ids_end`.
    ReplyShortChannelIdsEnd(ReplyShortChannelIdsEnd),
    /// BOLT 7 `query_channel_range`.
    QueryChannelRange(QueryChannelRange),
    /// BOLT 7 `reply_channel_range`.
    ReplyChannelRange(ReplyChannelRange),
    /// BOLT 7 `gossip_timestamp_filter`.
    GossipTimestampFilter(GossipTimestampFilter),
}

/// Whether `msg_type` is a BOLT 2 channel message, to be routed to the
/// channel named by its `channel_id` (`stfu` = 2, and the channel and
/// commitment ranges 32..=255 of BOLT 1 "Lightning Message Format").
pub fn is_channel_message(msg_type: u16) -> bool {
    matches!(msg_type, 2 | 32..=255)
}

impl Message {
    /// The channel a BOLT 2 message belongs to (the temporary id for
    /// `open_channel`, `accept_channel` and `funding_created`). Also given
    /// for `error`/`warning` (all zeroes = the connection) and
    /// `announcement_signatures`; `None` for other messages.
    pub fn channel_id(&self) -> Option<ChannelId> {
        Some(match self {
            Message::OpenChannel(m) => m.temporary_channel_id,
            Message::AcceptChannel(m) => m.temporary_channel_id,
            Message::FundingCreated(m) => m.temporary_channel_id,
            Message::FundingSigned(m) => m.channel_id,
            Message::ChannelReady(m) => m.channel_id,
            Message::Stfu(m) => m.channel_id,
            Message::Shutdown(m) => m.channel_id,
            Message::ClosingSigned(m) => m.channel_id,
            Message::ClosingComplete(m) => m.channel_id,
            Message::ClosingSig(m) => m.channel_id,
            Message::UpdateAddHtlc(m) => m.channel_id,
            Message::UpdateFulfillHtlc(m) => m.channel_id,
            Message::UpdateFailHtlc(m) => m.channel_id,
            Message::UpdateFailMalformedHtlc(m) => m.channel_id,
            Message::CommitmentSigned(m) => m.channel_id,
            Message::RevokeAndAck(m) => m.channel_id,
            Message::UpdateFee(m) => m.channel_id,
            Message::ChannelReestablish(m) => m.channel_id,
            Message::Error(m) => m.channel_id,
            Message::Warning(m) => m.channel_id,
            Message::AnnouncementSignatures(m) => m.channel_id,
            _ => return None,
        })
    }
}

/// Fuzz entry point: decode `data`; if it decodes, re-encode and check the
/// bytes decode to the same message and re-encode identically.
#[doc(hidden)]
pub fn fuzz_decode(data: &[u8]) {
    if let Ok(msg) = Message::decode(data) {
        let mut out = Vec::with_capacity(data.len());
        msg.encode(&mut out);
        let again = Message::decode(&out).expect("re-encoded message must decode");
        assert_eq!(again, msg, "decode(encode(m)) must equal m");
        let mut out2 = Vec::with_capacity(out.len());
        again.encode(&mut out2);
        assert_eq!(out, out2, "encoding must be deterministic");
        if !matches!(msg, Message::Unknown { .. }) {
            assert_eq!(out, data, "known messages re-encode byte for byte");
        }
    }
}
