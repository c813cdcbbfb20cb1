//! The small value types the BOLTs name (BOLT 1 "Fundamental Types", BOLT 7
//! "Definition of `short_channel_id`", BOLT 2 "Definition of `channel_id`"),
//! as newtypes so amounts, ids and hashes cannot be mixed up.
//!
//! All byte arrays are kept in wire order. Deriving a `channel_id` from a
//! funding outpoint, or hashing a preimage, is left to the crates that own
//! the cryptography.

use core::fmt;
use core::str::FromStr;

/// `short_channel_id` (BOLT 7): 3 bytes block height, 3 bytes transaction
/// index, 2 bytes output index, big-endian in one u64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ShortChannelId(pub u64);

/// Largest block height or tx index: each is a 3-byte field (BOLT 7).
const SCID_MAX_24: u32 = 0xff_ffff;

impl ShortChannelId {
    /// Packs the three parts; `None` if block or tx does not fit in 24 bits.
    pub fn new(block: u32, tx: u32, output: u16) -> Option<Self> {
        if block > SCID_MAX_24 || tx > SCID_MAX_24 {
            return None;
        }
        Some(ShortChannelId(
            (u64::from(block) << 40) | (u64::from(tx) << 16) | u64::from(output),
        ))
    }

    /// The block height of the funding transaction.
    pub fn block(self) -> u32 {
        (self.0 >> 40) as u32
    }

    /// The index of the funding transaction in its block.
    pub fn tx(self) -> u32 {
        ((self.0 >> 16) as u32) & SCID_MAX_24
    }

    /// The funding output index.
    pub fn output(self) -> u16 {
        self.0 as u16
    }
}

impl fmt::Display for ShortChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.block(), self.tx(), self.output())
    }
}

/// Why a string is not a `BLOCKxTXxOUTPUT` short channel id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseScidError;

impl fmt::Display for ParseScidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected BLOCKxTXxOUTPUT with 24-bit block and tx, 16-bit output")
    }
}

impl std::error::Error for ParseScidError {}

impl FromStr for ShortChannelId {
    type Err = ParseScidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split('x');
        let mut next = || parts.next().ok_or(ParseScidError);
        let block = next()?.parse::<u32>().map_err(|_| ParseScidError)?;
        let tx = next()?.parse::<u32>().map_err(|_| ParseScidError)?;
        let output = next()?.parse::<u16>().map_err(|_| ParseScidError)?;
        if parts.next().is_some() {
            return Err(ParseScidError);
        }
        ShortChannelId::new(block, tx, output).ok_or(ParseScidError)
    }
}

macro_rules! byte_newtype {
    ($($(#[$m:meta])* $name:ident;)*) => {$(
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub [u8; 32]);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl fmt::Display for $name {
            /// Lower-case hex of the wire bytes.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    )*};
}

byte_newtype! {
    /// `channel_id` (BOLT 2): funding txid XOR output index, or a temporary
    /// id before funding; all zeroes in `error`/`warning` means every channel.
    ChannelId;
    /// `chain_hash` (BOLT 0/7): the chain's genesis block hash, wire order.
    ChainHash;
    /// `payment_hash`: SHA256 of the preimage.
    PaymentHash;
    /// `payment_preimage`: the secret that settles an HTLC.
    PaymentPreimage;
    /// A transaction id in wire (internal) byte order, as in `funding_txid`.
    Txid;
}

impl ChainHash {
    /// Bitcoin mainnet genesis hash, wire order (BOLT 7 gives this hex).
    pub const BITCOIN: ChainHash = ChainHash([
        0x6f, 0xe2, 0x8c, 0x0a, 0xb6, 0xf1, 0xb3, 0x72, 0xc1, 0xa6, 0xa2, 0x46, 0xae, 0x63, 0xf7,
        0x4f, 0x93, 0x1e, 0x83, 0x65, 0xe1, 0x5a, 0x08, 0x9c, 0x68, 0xd6, 0x19, 0x00, 0x00, 0x00,
        0x00, 0x00,
    ]);
    /// Bitcoin testnet3 genesis hash, wire order.
    pub const TESTNET: ChainHash = ChainHash([
        0x43, 0x49, 0x7f, 0xd7, 0xf8, 0x26, 0x95, 0x71, 0x08, 0xf4, 0xa3, 0x0f, 0xd9, 0xce, 0xc3,
        0xae, 0xba, 0x79, 0x97, 0x20, 0x84, 0xe9, 0x0e, 0xad, 0x01, 0xea, 0x33, 0x09, 0x00, 0x00,
        0x00, 0x00,
    ]);
    /// Bitcoin testnet4 genesis hash, wire order.
    pub const TESTNET4: ChainHash = ChainHash([
        0x43, 0xf0, 0x8b, 0xda, 0xb0, 0x50, 0xe3, 0x5b, 0x56, 0x7c, 0x86, 0x4b, 0x91, 0xf4, 0x7f,
        0x50, 0xae, 0x72, 0x5a, 0xe2, 0xde, 0x53, 0xbc, 0xfb, 0xba, 0xf2, 0x84, 0xda, 0x00, 0x00,
        0x00, 0x00,
    ]);
    /// Default signet genesis hash, wire order.
    pub const SIGNET: ChainHash = ChainHash([
        0xf6, 0x1e, 0xee, 0x3b, 0x63, 0xa3, 0x80, 0xa4, 0x77, 0xa0, 0x63, 0xaf, 0x32, 0xb2, 0xbb,
        0xc9, 0x7c, 0x9f, 0xf9, 0xf0, 0x1f, 0x2c, 0x42, 0x25, 0xe9, 0x73, 0x98, 0x81, 0x08, 0x00,
        0x00, 0x00,
    ]);
    /// Regtest genesis hash, wire order.
    pub const REGTEST: ChainHash = ChainHash([
        0x06, 0x22, 0x6e, 0x46, 0x11, 0x1a, 0x0b, 0x59, 0xca, 0xaf, 0x12, 0x60, 0x43, 0xeb, 0x5b,
        0xbf, 0x28, 0xc3, 0x4f, 0x3a, 0x5e, 0x33, 0x2a, 0x1f, 0xc7, 0xb2, 0xb7, 0x3c, 0xf1, 0x88,
        0x91, 0x0f,
    ]);
}

impl ChannelId {
    /// All zeroes: "every channel" / "the connection" in `error` and
    /// `warning` (BOLT 1).
    pub const ZERO: ChannelId = ChannelId([0; 32]);

    /// True for the all-zero id that `error`/`warning` use for "all
    /// channels" / "the connection" (BOLT 1).
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 32]
    }
}

macro_rules! amount_newtype {
    ($($(#[$m:meta])* $name:ident, $unit:literal;)*) => {$(
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u64);

        impl $name {
            /// Sum, or `None` on overflow.
            pub fn checked_add(self, rhs: Self) -> Option<Self> {
                self.0.checked_add(rhs.0).map($name)
            }

            /// Difference, or `None` if it would go below zero.
            pub fn checked_sub(self, rhs: Self) -> Option<Self> {
                self.0.checked_sub(rhs.0).map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!("{}", $unit), self.0)
            }
        }
    )*};
}

amount_newtype! {
    /// An amount in millisatoshi (`*_msat` fields).
    Msat, "msat";
    /// An amount in satoshi (`*_satoshis` fields).
    Sat, "sat";
}

/// Millisatoshi per satoshi (1 sat = 1000 msat, BOLT 0 glossary).
const MSAT_PER_SAT: u64 = 1000;

impl Sat {
    /// The same amount in msat, or `None` on overflow.
    pub fn to_msat(self) -> Option<Msat> {
        self.0.checked_mul(MSAT_PER_SAT).map(Msat)
    }
}

impl Msat {
    /// Whole satoshis, rounded down (as BOLT 3 does for outputs).
    pub fn to_sat_floor(self) -> Sat {
        Sat(self.0 / MSAT_PER_SAT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scid_parts_display_and_parse() {
        let s = ShortChannelId::new(539_268, 845, 1).unwrap();
        assert_eq!((s.block(), s.tx(), s.output()), (539_268, 845, 1));
        assert_eq!(s.to_string(), "539268x845x1");
        assert_eq!("539268x845x1".parse(), Ok(s));
        assert_eq!("0x0x550".parse::<ShortChannelId>().unwrap().0, 550);
        assert!("16777216x0x0".parse::<ShortChannelId>().is_err());
        assert!("1x2".parse::<ShortChannelId>().is_err());
        assert!("1x2x3x4".parse::<ShortChannelId>().is_err());
    }

    #[test]
    fn amounts_are_checked() {
        assert_eq!(Msat(1).checked_sub(Msat(2)), None);
        assert_eq!(Msat(u64::MAX).checked_add(Msat(1)), None);
        assert_eq!(Sat(2).to_msat(), Some(Msat(2000)));
        assert_eq!(Msat(1999).to_sat_floor(), Sat(1));
    }
}
