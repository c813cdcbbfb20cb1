//! `channel_type` negotiation (BOLT 2 "The `open_channel` Message",
//! "Defined Channel Types"; BOLT 9 bit numbers).
//!
//! A channel type is a feature bitmap with exactly one of the defined
//! shapes: `option_static_remotekey` (bit 12) or `option_anchors` with
//! `option_static_remotekey` (bits 22 and 12), each optionally with
//! `option_scid_alias` (bit 46) and/or `option_zeroconf` (bit 50). Only the
//! even (required) bits are used, which is the smallest bitmap; anything
//! else is not a defined type.

use lnhub_tx::ChannelType;
use lnhub_wire::features::Features;

/// `option_static_remotekey`.
const BIT_STATIC_REMOTEKEY: usize = 12;
/// `option_anchors`.
const BIT_ANCHORS: usize = 22;
/// `option_scid_alias`.
const BIT_SCID_ALIAS: usize = 46;
/// `option_zeroconf`.
const BIT_ZEROCONF: usize = 50;

/// A defined channel type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NegotiatedType {
    /// The commitment format.
    pub commitment: ChannelType,
    /// `option_scid_alias`: only aliases route to this channel; it cannot
    /// be announced.
    pub scid_alias: bool,
    /// `option_zeroconf`: usable before the funding confirms
    /// (`minimum_depth` 0); only with a peer we trust.
    pub zeroconf: bool,
}

impl NegotiatedType {
    /// Parses a `channel_type`; `None` if it is not a defined type.
    pub fn from_features(f: &Features) -> Option<Self> {
        let mut t = NegotiatedType {
            commitment: ChannelType::StaticRemoteKey,
            scid_alias: false,
            zeroconf: false,
        };
        let mut has_static = false;
        for bit in f.bits() {
            match bit {
                BIT_STATIC_REMOTEKEY => has_static = true,
                BIT_ANCHORS => t.commitment = ChannelType::Anchors,
                BIT_SCID_ALIAS => t.scid_alias = true,
                BIT_ZEROCONF => t.zeroconf = true,
                _ => return None,
            }
        }
        has_static.then_some(t)
    }

    /// The `channel_type` bitmap.
    pub fn to_features(self) -> Features {
        let mut bits = vec![BIT_STATIC_REMOTEKEY];
        if self.commitment.has_anchors() {
            bits.push(BIT_ANCHORS);
        }
        if self.scid_alias {
            bits.push(BIT_SCID_ALIAS);
        }
        if self.zeroconf {
            bits.push(BIT_ZEROCONF);
        }
        Features::from_bits(&bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defined_types_round_trip_and_others_are_refused() {
        for commitment in [ChannelType::StaticRemoteKey, ChannelType::Anchors] {
            for scid_alias in [false, true] {
                for zeroconf in [false, true] {
                    let t = NegotiatedType {
                        commitment,
                        scid_alias,
                        zeroconf,
                    };
                    assert_eq!(NegotiatedType::from_features(&t.to_features()), Some(t));
                }
            }
        }
        // Odd bits, a missing static_remotekey, unknown bits: undefined.
        assert_eq!(
            NegotiatedType::from_features(&Features::from_bits(&[13])),
            None
        );
        assert_eq!(
            NegotiatedType::from_features(&Features::from_bits(&[22])),
            None
        );
        assert_eq!(
            NegotiatedType::from_features(&Features::from_bits(&[12, 14])),
            None
        );
        assert_eq!(NegotiatedType::from_features(&Features::empty()), None);
    }
}
