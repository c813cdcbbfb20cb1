//! Setup and control messages (BOLT 1 "Setup Messages", "Control
//! Messages"): `init`, `error`, `warning`, `ping`, `pong`.
//!
//! Decoding only; the connection rules (feature negotiation, replying to a
//! ping, when to close) belong to the peer state machine.

use crate::features::Features;
use crate::msgs::codec::wire_message;
use crate::types::{ChainHash, ChannelId};

wire_message! {
    #[derive(Default)]
    /// `init` (type 16): the first message each side sends.
    Init = 16 {
        /// Legacy `globalfeatures`; kept verbatim for round trips. Use
        /// [`Init::merged_features`] for the bits that apply.
        global_features: Features,
        /// The feature bits of the sender.
        features: Features,
    }
    tlvs {
        /// Type 1 `networks`: the chains the sender is interested in.
        1 => networks: Vec<ChainHash>,
        /// Type 3 `remote_addr`: the receiver's address as the sender sees it
        /// (an `address descriptor`, kept raw).
        3 => remote_addr: Vec<u8>,
    }
}

impl Init {
    /// `features` OR `global_features`: BOLT 1 says a receiver treats the
    /// union as the sender's feature set.
    pub fn merged_features(&self) -> Features {
        self.features.union(&self.global_features)
    }
}

wire_message! {
    #[derive(Default)]
    /// `error` (type 17): a channel (or, with an all-zero id, every channel)
    /// has failed.
    ErrorMessage = 17 {
        /// The failed channel, or all zeroes for all channels.
        channel_id: ChannelId,
        /// Diagnostic data, usually ASCII.
        data: Vec<u8>,
    }
    tlvs {}
}

wire_message! {
    #[derive(Default)]
    /// `warning` (type 1): something went wrong, the connection may close.
    Warning = 1 {
        /// The channel concerned, or all zeroes for the connection.
        channel_id: ChannelId,
        /// Diagnostic data, usually ASCII.
        data: Vec<u8>,
    }
    tlvs {}
}

wire_message! {
    #[derive(Default)]
    /// `ping` (type 18): keep-alive, and traffic padding.
    Ping = 18 {
        /// How many `ignored` bytes the `pong` should carry.
        num_pong_bytes: u16,
        /// Padding.
        ignored: Vec<u8>,
    }
    tlvs {}
}

wire_message! {
    #[derive(Default)]
    /// `pong` (type 19): the answer to a `ping`.
    Pong = 19 {
        /// Padding, `num_pong_bytes` long.
        ignored: Vec<u8>,
    }
    tlvs {}
}
