//! Channel parameters fixed at opening (BOLT 2 `open_channel` /
//! `accept_channel` / `funding_created`), validated once and turned into the
//! derived values every commitment needs: the funding witness script and the
//! commitment-number obscuring factor (BOLT 3, "Funding Transaction Output"
//! and "Commitment Transaction").

use bitcoin::hashes::{sha256, Hash, HashEngine};
use bitcoin::{Amount, OutPoint, ScriptBuf, TxOut};

use crate::keys::ChannelPublicKeys;
use crate::scripts;

/// Which side of the channel. Transactions are described from the point of
/// view of a commitment's *owner*: "local" is the owner, "remote" the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// This node.
    Local,
    /// The channel peer.
    Remote,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Local => Side::Remote,
            Side::Remote => Side::Local,
        }
    }
}

/// The commitment format negotiated in `channel_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelType {
    /// `option_static_remotekey`: `to_remote` is P2WPKH to the remote
    /// `payment_basepoint`; HTLC transactions pay their own fee.
    StaticRemoteKey,
    /// `option_anchors` (with static remote key): two 330-sat anchors,
    /// `to_remote` and HTLC outputs CSV-1 locked, zero-fee HTLC transactions
    /// signed by the peer with `SIGHASH_SINGLE|SIGHASH_ANYONECANPAY`.
    Anchors,
}

impl ChannelType {
    /// Whether `option_anchors` applies.
    pub fn has_anchors(self) -> bool {
        matches!(self, ChannelType::Anchors)
    }
}

/// What one side announced for itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SideParams {
    /// The side's basepoints and funding key.
    pub pubkeys: ChannelPublicKeys,
    /// `to_self_delay` *announced by this side*: the CSV delay it imposes on
    /// the **other** side's `to_local` and HTLC-transaction outputs.
    pub to_self_delay: u16,
    /// `dust_limit_satoshis` of this side: applied when trimming this side's
    /// own commitment transactions.
    pub dust_limit: Amount,
}

/// Invalid channel parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamsError {
    /// Both sides use the same funding pubkey (the 2-of-2 would be a
    /// 1-of-1 in disguise).
    SameFundingPubkey,
    /// `funding_satoshis` above the 21M BTC supply.
    FundingAmountTooLarge,
    /// A `to_self_delay` of 0 removes the penalty window.
    ZeroToSelfDelay,
}

impl core::fmt::Display for ParamsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ParamsError::SameFundingPubkey => "both sides use the same funding_pubkey",
            ParamsError::FundingAmountTooLarge => "funding amount exceeds the bitcoin supply",
            ParamsError::ZeroToSelfDelay => "to_self_delay is zero",
        })
    }
}

impl std::error::Error for ParamsError {}

/// Validated channel parameters plus the values derived from them once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelParams {
    funding_outpoint: OutPoint,
    funding_amount: Amount,
    funder: Side,
    channel_type: ChannelType,
    local: SideParams,
    remote: SideParams,
    funding_script: ScriptBuf,
    funding_script_pubkey: ScriptBuf,
    obscuring_factor: u64,
}

impl ChannelParams {
    /// Validates the parameters; `funder` is the side that sent
    /// `open_channel` (it pays the commitment fee and the anchors).
    pub fn new(
        funding_outpoint: OutPoint,
        funding_amount: Amount,
        funder: Side,
        channel_type: ChannelType,
        local: SideParams,
        remote: SideParams,
    ) -> Result<Self, ParamsError> {
        if local.pubkeys.funding_pubkey == remote.pubkeys.funding_pubkey {
            return Err(ParamsError::SameFundingPubkey);
        }
        if funding_amount > Amount::MAX_MONEY {
            return Err(ParamsError::FundingAmountTooLarge);
        }
        if local.to_self_delay == 0 || remote.to_self_delay == 0 {
            return Err(ParamsError::ZeroToSelfDelay);
        }
        let funding_script = scripts::funding_script(
            &local.pubkeys.funding_pubkey,
            &remote.pubkeys.funding_pubkey,
        );
        let funding_script_pubkey = ScriptBuf::new_p2wsh(&funding_script.wscript_hash());
        let (opener, accepter) = match funder {
            Side::Local => (&local, &remote),
            Side::Remote => (&remote, &local),
        };
        let obscuring_factor = obscuring_factor(
            &opener.pubkeys.payment_basepoint,
            &accepter.pubkeys.payment_basepoint,
        );
        Ok(ChannelParams {
            funding_outpoint,
            funding_amount,
            funder,
            channel_type,
            local,
            remote,
            funding_script,
            funding_script_pubkey,
            obscuring_factor,
        })
    }

    /// The funding outpoint (`funding_txid`, `funding_output_index`).
    pub fn funding_outpoint(&self) -> OutPoint {
        self.funding_outpoint
    }

    /// `funding_satoshis`.
    pub fn funding_amount(&self) -> Amount {
        self.funding_amount
    }

    /// The side that opened the channel and pays the commitment fee.
    pub fn funder(&self) -> Side {
        self.funder
    }

    /// The negotiated commitment format.
    pub fn channel_type(&self) -> ChannelType {
        self.channel_type
    }

    /// One side's announced parameters.
    pub fn side(&self, side: Side) -> &SideParams {
        match side {
            Side::Local => &self.local,
            Side::Remote => &self.remote,
        }
    }

    /// The funding 2-of-2 witness script.
    pub fn funding_script(&self) -> &ScriptBuf {
        &self.funding_script
    }

    /// The funding output (P2WSH of [`funding_script`](Self::funding_script)).
    pub fn funding_output(&self) -> TxOut {
        TxOut {
            value: self.funding_amount,
            script_pubkey: self.funding_script_pubkey.clone(),
        }
    }

    /// The lower 48 bits of `SHA256(opener payment_basepoint || accepter
    /// payment_basepoint)`, XORed into the commitment number.
    pub fn obscuring_factor(&self) -> u64 {
        self.obscuring_factor
    }

    /// The CSV delay on the `to_local` and HTLC-transaction outputs of the
    /// commitment owned by `owner`: the `to_self_delay` its peer announced.
    pub fn csv_delay_for(&self, owner: Side) -> u16 {
        self.side(owner.other()).to_self_delay
    }
}

/// Lower 48 bits of SHA256(opener basepoint || accepter basepoint).
fn obscuring_factor(opener: &secp256k1::PublicKey, accepter: &secp256k1::PublicKey) -> u64 {
    let mut engine = sha256::Hash::engine();
    engine.input(&opener.serialize());
    engine.input(&accepter.serialize());
    let hash = sha256::Hash::from_engine(engine).to_byte_array();
    let mut low = [0u8; 8];
    low[2..].copy_from_slice(&hash[26..]);
    u64::from_be_bytes(low)
}
