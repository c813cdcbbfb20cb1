//! Feature bit vectors (BOLT 9 "Assigned Feature Flags", BOLT 1 "The `init`
//! Message" feature rules).
//!
//! Bits count from the least significant bit of the LAST byte (bit 0 is
//! `0x01` of the final byte). Features come in pairs: the even bit means
//! "required", the odd bit "optional"; a receiver treats a pair with both
//! bits set as required. [`Features`] keeps the bytes exactly as received
//! (so signed gossip re-encodes byte for byte) but builds minimal vectors
//! itself. [`negotiate`] applies the BOLT 1 receive rules; choosing what
//! to advertise is the caller's.

use core::fmt;

use crate::{DecodeError, Reader};

/// Bits per byte of a feature vector.
const BITS_PER_BYTE: usize = 8;

/// A named feature pair, identified by its even (required) bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Feature {
    /// The BOLT 9 name, e.g. `option_anchors`.
    pub name: &'static str,
    /// The even bit of the pair; `even_bit + 1` is the optional bit.
    pub even_bit: usize,
    /// BOLT 9 marks it ASSUMED: every node behaves as if it were set, so a
    /// peer may omit it.
    pub assumed: bool,
}

macro_rules! features {
    ($($(#[$m:meta])* $konst:ident = ($name:literal, $bit:literal, $assumed:literal);)*) => {
        $(
            $(#[$m])*
            pub const $konst: Feature = Feature { name: $name, even_bit: $bit, assumed: $assumed };
        )*
        /// Every feature pair of the BOLT 9 table, in bit order.
        pub const KNOWN_FEATURES: &[Feature] = &[$($konst),*];
    };
}

features! {
    /// Bits 0/1, ASSUMED: `channel_reestablish` carries data-loss fields.
    DATA_LOSS_PROTECT = ("option_data_loss_protect", 0, true);
    /// Bits 4/5: commit to a shutdown script in `open_channel`.
    UPFRONT_SHUTDOWN_SCRIPT = ("option_upfront_shutdown_script", 4, false);
    /// Bits 6/7: gossip query messages (BOLT 7).
    GOSSIP_QUERIES = ("gossip_queries", 6, false);
    /// Bits 8/9, ASSUMED: TLV onion payloads.
    VAR_ONION_OPTIN = ("var_onion_optin", 8, true);
    /// Bits 10/11: extended gossip queries (flags, timestamps, checksums).
    GOSSIP_QUERIES_EX = ("gossip_queries_ex", 10, false);
    /// Bits 12/13, ASSUMED: `to_remote` pays the static `payment_basepoint`.
    STATIC_REMOTEKEY = ("option_static_remotekey", 12, true);
    /// Bits 14/15, ASSUMED: `payment_secret` in final-hop payloads.
    PAYMENT_SECRET = ("payment_secret", 14, true);
    /// Bits 16/17: receive multi-part payments (needs `payment_secret`).
    BASIC_MPP = ("basic_mpp", 16, false);
    /// Bits 18/19: channels of 2^24 sat and more.
    SUPPORT_LARGE_CHANNEL = ("option_support_large_channel", 18, false);
    /// Bits 22/23: anchor outputs with zero-fee HTLC transactions.
    ANCHORS = ("option_anchors", 22, false);
    /// Bits 24/25: blinded paths.
    ROUTE_BLINDING = ("option_route_blinding", 24, false);
    /// Bits 26/27: future segwit versions in `shutdown`.
    SHUTDOWN_ANYSEGWIT = ("option_shutdown_anysegwit", 26, false);
    /// Bits 28/29: v2 channel open (dual funding).
    DUAL_FUND = ("option_dual_fund", 28, false);
    /// Bits 34/35: quiescence (`stfu`).
    QUIESCE = ("option_quiesce", 34, false);
    /// Bits 36/37: attribution data in `update_fail_htlc`/`update_fulfill_htlc`.
    ATTRIBUTION_DATA = ("option_attribution_data", 36, false);
    /// Bits 38/39: forward onion messages.
    ONION_MESSAGES = ("option_onion_messages", 38, false);
    /// Bits 42/43: store peers' encrypted backups.
    PROVIDE_STORAGE = ("option_provide_storage", 42, false);
    /// Bits 44/45, ASSUMED: `channel_type` in channel opens.
    CHANNEL_TYPE = ("option_channel_type", 44, true);
    /// Bits 46/47: short channel id aliases.
    SCID_ALIAS = ("option_scid_alias", 46, false);
    /// Bits 48/49: payment metadata (invoices only).
    PAYMENT_METADATA = ("option_payment_metadata", 48, false);
    /// Bits 50/51: zero-conf channel types (needs `option_scid_alias`).
    ZEROCONF = ("option_zeroconf", 50, false);
    /// Bits 60/61: `closing_complete`/`closing_sig` (needs
    /// `option_shutdown_anysegwit`).
    SIMPLE_CLOSE = ("option_simple_close", 60, false);
    /// Bits 62/63: splicing.
    SPLICE = ("option_splice", 62, false);
}

/// `(feature, dependency)`: setting the first requires setting the second
/// (BOLT 9 "Dependencies" column; anchors on static_remotekey per BOLT 2
/// "Defined Channel Types").
pub const DEPENDENCIES: &[(Feature, Feature)] = &[
    (BASIC_MPP, PAYMENT_SECRET),
    (ANCHORS, STATIC_REMOTEKEY),
    (ZEROCONF, SCID_ALIAS),
    (SIMPLE_CLOSE, SHUTDOWN_ANYSEGWIT),
];

/// Why a feature vector is unacceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureError {
    /// The peer requires (even bit) something we do not support (BOLT 1:
    /// fail the connection).
    UnknownRequired {
        /// The even bit.
        bit: usize,
    },
    /// We require something the peer does not offer.
    MissingRequired {
        /// The even bit of the feature we require.
        bit: usize,
    },
    /// A feature is set without a feature it depends on (BOLT 1: fail the
    /// connection).
    MissingDependency {
        /// The feature that is set.
        feature: &'static str,
        /// The dependency that is missing.
        needs: &'static str,
    },
}

impl fmt::Display for FeatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeatureError::UnknownRequired { bit } => {
                write!(f, "unknown required feature bit {bit}")
            }
            FeatureError::MissingRequired { bit } => {
                write!(f, "peer does not support our required feature bit {bit}")
            }
            FeatureError::MissingDependency { feature, needs } => {
                write!(f, "feature {feature} set without its dependency {needs}")
            }
        }
    }
}

impl std::error::Error for FeatureError {}

/// A feature bit vector in wire order (BOLT 9).
///
/// Equality compares the bits, ignoring leading zero bytes; the bytes
/// themselves are kept as received for byte-exact re-encoding.
#[derive(Clone, Default)]
pub struct Features {
    /// Wire order: `bytes[len - 1]` holds bits 0..8.
    bytes: Vec<u8>,
}

impl Features {
    /// No bits set (encodes as zero bytes).
    pub fn empty() -> Self {
        Features { bytes: Vec::new() }
    }

    /// The vector exactly as it appears on the wire (leading zero bytes
    /// kept).
    pub fn from_wire_bytes(bytes: &[u8]) -> Self {
        Features {
            bytes: bytes.to_vec(),
        }
    }

    /// A minimal vector with exactly `bits` set.
    pub fn from_bits(bits: &[usize]) -> Self {
        let mut f = Features::empty();
        bits.iter().for_each(|&b| f.set_bit(b));
        f
    }

    /// The bytes as stored (as received, or minimal if built here).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes without leading zero bytes.
    pub fn minimal_bytes(&self) -> &[u8] {
        let skip = self.bytes.iter().take_while(|&&b| b == 0).count();
        &self.bytes[skip..]
    }

    /// True if no bit is set.
    pub fn is_empty(&self) -> bool {
        self.minimal_bytes().is_empty()
    }

    /// Whether `bit` is set.
    pub fn has_bit(&self, bit: usize) -> bool {
        let idx = bit / BITS_PER_BYTE;
        idx < self.bytes.len()
            && self.bytes[self.bytes.len() - 1 - idx] & (1 << (bit % BITS_PER_BYTE)) != 0
    }

    /// Sets `bit`, growing the vector at the front as needed.
    pub fn set_bit(&mut self, bit: usize) {
        let idx = bit / BITS_PER_BYTE;
        if idx >= self.bytes.len() {
            let grow = idx + 1 - self.bytes.len();
            self.bytes.splice(0..0, core::iter::repeat_n(0, grow));
        }
        let pos = self.bytes.len() - 1 - idx;
        self.bytes[pos] |= 1 << (bit % BITS_PER_BYTE);
    }

    /// Clears `bit` and drops leading zero bytes.
    pub fn clear_bit(&mut self, bit: usize) {
        let idx = bit / BITS_PER_BYTE;
        if idx < self.bytes.len() {
            let pos = self.bytes.len() - 1 - idx;
            self.bytes[pos] &= !(1 << (bit % BITS_PER_BYTE));
        }
        let skip = self.bytes.len() - self.minimal_bytes().len();
        self.bytes.drain(..skip);
    }

    /// Every set bit, ascending.
    pub fn bits(&self) -> impl Iterator<Item = usize> + '_ {
        self.bytes.iter().rev().enumerate().flat_map(|(i, &byte)| {
            (0..BITS_PER_BYTE)
                .filter(move |b| byte & (1 << b) != 0)
                .map(move |b| i * BITS_PER_BYTE + b)
        })
    }

    /// Sets the optional (odd) bit of `f`, clearing the required one.
    pub fn set_optional(&mut self, f: Feature) {
        self.clear_bit(f.even_bit);
        self.set_bit(f.even_bit + 1);
    }

    /// Sets the required (even) bit of `f`, clearing the optional one.
    pub fn set_required(&mut self, f: Feature) {
        self.clear_bit(f.even_bit + 1);
        self.set_bit(f.even_bit);
    }

    /// Clears both bits of `f`.
    pub fn clear(&mut self, f: Feature) {
        self.clear_bit(f.even_bit);
        self.clear_bit(f.even_bit + 1);
    }

    /// Either bit of the pair is set.
    pub fn supports(&self, f: Feature) -> bool {
        self.has_bit(f.even_bit) || self.has_bit(f.even_bit + 1)
    }

    /// The even bit is set (both bits set also counts as required).
    pub fn requires(&self, f: Feature) -> bool {
        self.has_bit(f.even_bit)
    }

    /// The first even bit set whose pair is not in `known`.
    pub fn first_unknown_required(&self, known: &[Feature]) -> Option<usize> {
        self.bits()
            .filter(|b| b % 2 == 0)
            .find(|&b| !known.iter().any(|f| f.even_bit == b))
    }

    /// Checks every [`DEPENDENCIES`] entry, including those on ASSUMED
    /// features: use it on vectors we build. `ignore_assumed` skips
    /// dependencies on ASSUMED features, which peers may leave unset.
    pub fn check_dependencies(&self, ignore_assumed: bool) -> Result<(), FeatureError> {
        for &(feature, dep) in DEPENDENCIES {
            if self.supports(feature) && !self.supports(dep) && !(ignore_assumed && dep.assumed) {
                return Err(FeatureError::MissingDependency {
                    feature: feature.name,
                    needs: dep.name,
                });
            }
        }
        Ok(())
    }

    /// Bitwise OR (how `init` merges `globalfeatures` into `features`).
    pub fn union(&self, other: &Features) -> Features {
        let mut out = Features::empty();
        self.bits().chain(other.bits()).for_each(|b| out.set_bit(b));
        out
    }

    /// Reads a u16 length and that many bytes (BOLT 1/7 feature fields).
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Features::from_wire_bytes(r.u16_prefixed()?))
    }

    /// Appends the u16 length and the stored bytes.
    pub fn write(&self, out: &mut Vec<u8>) {
        let len = u16::try_from(self.bytes.len())
            .expect("a feature vector holds at most 65535 bytes (u16 length prefix)");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.bytes);
    }
}

impl PartialEq for Features {
    fn eq(&self, other: &Self) -> bool {
        self.minimal_bytes() == other.minimal_bytes()
    }
}

impl Eq for Features {}

impl fmt::Debug for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.bits()).finish()
    }
}

/// The features both sides use, per BOLT 1/9 receive rules.
///
/// Fails if `remote` requires a feature `local` does not support (ASSUMED
/// features count as supported), if `local` requires one `remote` does not
/// offer, or if `remote` breaks a non-ASSUMED dependency. The result holds
/// every known feature both sides support (ASSUMED ones if either side
/// signals them), required if either side requires it, else optional.
/// Unknown odd bits are ignored.
pub fn negotiate(local: &Features, remote: &Features) -> Result<Features, FeatureError> {
    remote.check_dependencies(true)?;
    let supported = |fs: &Features, bit: usize| {
        fs.has_bit(bit & !1)
            || fs.has_bit(bit | 1)
            || KNOWN_FEATURES
                .iter()
                .any(|f| f.assumed && f.even_bit == bit & !1)
    };
    if let Some(bit) = remote.bits().find(|&b| b % 2 == 0 && !supported(local, b)) {
        return Err(FeatureError::UnknownRequired { bit });
    }
    if let Some(bit) = local.bits().find(|&b| b % 2 == 0 && !supported(remote, b)) {
        return Err(FeatureError::MissingRequired { bit });
    }
    let mut common = Features::empty();
    for &f in KNOWN_FEATURES {
        let signalled = local.supports(f) || remote.supports(f);
        let both = supported(local, f.even_bit) && supported(remote, f.even_bit);
        if signalled && both {
            if local.requires(f) || remote.requires(f) {
                common.set_required(f);
            } else {
                common.set_optional(f);
            }
        }
    }
    Ok(common)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_zero_is_lsb_of_last_byte() {
        let f = Features::from_bits(&[0, 9]);
        assert_eq!(f.as_bytes(), [0x02, 0x01]);
        assert!(f.has_bit(0) && f.has_bit(9) && !f.has_bit(8) && !f.has_bit(1000));
        assert_eq!(f.bits().collect::<Vec<_>>(), [0, 9]);
    }

    #[test]
    fn clear_strips_leading_zero_bytes() {
        let mut f = Features::from_bits(&[1, 17]);
        f.clear_bit(17);
        assert_eq!(f.as_bytes(), [0x02]);
        f.clear_bit(1);
        assert!(f.as_bytes().is_empty() && f.is_empty());
    }

    #[test]
    fn wire_bytes_kept_but_equality_by_bits() {
        let a = Features::from_wire_bytes(&[0, 0, 0x20]);
        let b = Features::from_bits(&[5]);
        assert_eq!(a, b);
        let mut out = Vec::new();
        a.write(&mut out);
        assert_eq!(out, [0, 3, 0, 0, 0x20]);
    }

    #[test]
    fn supports_and_requires() {
        let mut f = Features::empty();
        f.set_optional(ANCHORS);
        assert!(f.supports(ANCHORS) && !f.requires(ANCHORS));
        f.set_required(ANCHORS);
        assert!(f.requires(ANCHORS) && !f.has_bit(23));
        let both = Features::from_bits(&[22, 23]);
        assert!(both.requires(ANCHORS), "both bits set counts as required");
        f.clear(ANCHORS);
        assert!(!f.supports(ANCHORS));
    }

    #[test]
    fn known_table_is_bolt9() {
        let bits: Vec<usize> = KNOWN_FEATURES.iter().map(|f| f.even_bit).collect();
        assert_eq!(
            bits,
            [
                0, 4, 6, 8, 10, 12, 14, 16, 18, 22, 24, 26, 28, 34, 36, 38, 42, 44, 46, 48, 50, 60,
                62
            ]
        );
        assert_eq!(
            Features::from_bits(&[23, 100]).first_unknown_required(KNOWN_FEATURES),
            Some(100)
        );
        assert_eq!(
            Features::from_bits(&[22, 101]).first_unknown_required(KNOWN_FEATURES),
            None
        );
    }

    #[test]
    fn dependencies() {
        let zc = Features::from_bits(&[51]);
        assert_eq!(
            zc.check_dependencies(false),
            Err(FeatureError::MissingDependency {
                feature: "option_zeroconf",
                needs: "option_scid_alias"
            })
        );
        assert!(Features::from_bits(&[51, 47])
            .check_dependencies(false)
            .is_ok());
        let sc = Features::from_bits(&[61]);
        assert!(sc.check_dependencies(true).is_err());
        let anchors = Features::from_bits(&[23]);
        assert!(anchors.check_dependencies(false).is_err());
        assert!(
            anchors.check_dependencies(true).is_ok(),
            "static_remotekey is ASSUMED"
        );
        let mpp = Features::from_bits(&[17]);
        assert!(mpp.check_dependencies(false).is_err());
    }

    #[test]
    fn negotiate_common_optional_and_required() {
        let local = Features::from_bits(&[23, 27, 35, 47, 61]);
        let remote = Features::from_bits(&[22, 27, 39, 46, 61, 1001]);
        let common = negotiate(&local, &remote).unwrap();
        assert_eq!(common, Features::from_bits(&[22, 27, 46, 61]));
    }

    #[test]
    fn negotiate_rejects_unknown_required() {
        let local = Features::from_bits(&[23]);
        let remote = Features::from_bits(&[100]);
        assert_eq!(
            negotiate(&local, &remote),
            Err(FeatureError::UnknownRequired { bit: 100 })
        );
        let remote = Features::from_bits(&[34]);
        assert_eq!(
            negotiate(&local, &remote),
            Err(FeatureError::UnknownRequired { bit: 34 })
        );
    }

    #[test]
    fn negotiate_rejects_our_required_missing() {
        let local = Features::from_bits(&[22]);
        let remote = Features::from_bits(&[27]);
        assert_eq!(
            negotiate(&local, &remote),
            Err(FeatureError::MissingRequired { bit: 22 })
        );
    }

    #[test]
    fn negotiate_assumed_features_need_no_bits() {
        // Remote requires var_onion_optin (ASSUMED); we need not signal it.
        let local = Features::from_bits(&[23]);
        let remote = Features::from_bits(&[8, 23]);
        let common = negotiate(&local, &remote).unwrap();
        assert!(common.requires(VAR_ONION_OPTIN) && common.supports(ANCHORS));
        // We require static_remotekey; a peer that leaves it out is fine.
        let local = Features::from_bits(&[12]);
        assert!(negotiate(&local, &Features::empty()).is_ok());
    }

    #[test]
    fn negotiate_checks_remote_dependencies() {
        let local = Features::from_bits(&[47, 51]);
        let remote = Features::from_bits(&[51]);
        assert!(matches!(
            negotiate(&local, &remote),
            Err(FeatureError::MissingDependency { .. })
        ));
    }
}
