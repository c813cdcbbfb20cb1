//! Mutual-close transactions (BOLT 3, "Legacy Closing Transaction" for
//! `closing_signed`, and "Closing Transaction" for `option_simple_close`'s
//! `closing_complete` / `closing_sig`).
//!
//! Both spend the funding output with one input and one or two outputs in
//! BIP 69 order. The negotiation (who proposes which fee, which variant to
//! accept) is BOLT 2's and stays with the caller; signing uses
//! [`crate::sighash::funding_input`] and [`crate::witness::funding`].

use bitcoin::absolute::LockTime;
use bitcoin::transaction::Version;
use bitcoin::{Amount, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};

use crate::params::{ChannelParams, Side};

/// nSequence of the simple-close input: 0xFFFFFFFD signals RBF (BIP 125),
/// since either side may later send a new `closing_complete` with more fee.
pub const SIMPLE_CLOSE_SEQUENCE: u32 = 0xFFFF_FFFD;

/// Why a closing transaction cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClosingError {
    /// The fee exceeds the balance of the side that pays it.
    FeeExceedsBalance,
    /// No output would remain.
    NoOutputs,
}

impl core::fmt::Display for ClosingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ClosingError::FeeExceedsBalance => "closing fee exceeds the payer's balance",
            ClosingError::NoOutputs => "closing transaction would have no output",
        })
    }
}

impl std::error::Error for ClosingError {}

/// One side's final output request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseOutput {
    /// The side's `scriptpubkey` from `shutdown` (or `closing_complete`).
    pub script_pubkey: ScriptBuf,
    /// The side's final balance.
    pub balance_msat: u64,
}

fn tx_with(
    params: &ChannelParams,
    sequence: u32,
    lock_time: u32,
    mut outputs: Vec<TxOut>,
) -> Transaction {
    outputs.sort_by(|a, b| {
        a.value
            .cmp(&b.value)
            .then_with(|| a.script_pubkey.as_bytes().cmp(b.script_pubkey.as_bytes()))
    });
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::from_consensus(lock_time),
        input: vec![TxIn {
            previous_output: params.funding_outpoint(),
            script_sig: ScriptBuf::new(),
            sequence: Sequence(sequence),
            witness: Witness::new(),
        }],
        output: outputs,
    }
}

/// The legacy (`closing_signed`) closing transaction as signed by the side
/// whose `dust_limit_satoshis` is `dust_limit`: balances rounded down,
/// `fee` from the funder's output, outputs below `dust_limit` removed.
/// `local`/`remote` are the channel's sides; `None` drops that side's
/// output (a node MAY eliminate its own output).
pub fn legacy_closing(
    params: &ChannelParams,
    local: Option<&CloseOutput>,
    remote: Option<&CloseOutput>,
    fee: Amount,
    dust_limit: Amount,
) -> Result<Transaction, ClosingError> {
    let mut outputs = Vec::with_capacity(2);
    for (side, out) in [(Side::Local, local), (Side::Remote, remote)] {
        let Some(out) = out else { continue };
        let mut value = Amount::from_sat(out.balance_msat / 1000);
        if side == params.funder() {
            value = value
                .checked_sub(fee)
                .ok_or(ClosingError::FeeExceedsBalance)?;
        }
        if value >= dust_limit {
            outputs.push(TxOut {
                value,
                script_pubkey: out.script_pubkey.clone(),
            });
        }
    }
    if outputs.is_empty() {
        return Err(ClosingError::NoOutputs);
    }
    Ok(tx_with(params, Sequence::MAX.0, 0, outputs))
}

/// The `option_simple_close` closing transaction: the closer pays `fee`
/// from its own output; an `OP_RETURN` output carries 0 sat; `None` omits a
/// side's output (the side with lesser funds may omit its own).
pub fn simple_closing(
    params: &ChannelParams,
    closer: Option<&CloseOutput>,
    closee: Option<&CloseOutput>,
    fee: Amount,
    locktime: u32,
) -> Result<Transaction, ClosingError> {
    let mut outputs = Vec::with_capacity(2);
    if let Some(out) = closer {
        let value = if out.script_pubkey.is_op_return() {
            Amount::ZERO
        } else {
            Amount::from_sat(out.balance_msat / 1000)
                .checked_sub(fee)
                .ok_or(ClosingError::FeeExceedsBalance)?
        };
        outputs.push(TxOut {
            value,
            script_pubkey: out.script_pubkey.clone(),
        });
    }
    if let Some(out) = closee {
        let value = if out.script_pubkey.is_op_return() {
            Amount::ZERO
        } else {
            Amount::from_sat(out.balance_msat / 1000)
        };
        outputs.push(TxOut {
            value,
            script_pubkey: out.script_pubkey.clone(),
        });
    }
    if outputs.is_empty() {
        return Err(ClosingError::NoOutputs);
    }
    Ok(tx_with(params, SIMPLE_CLOSE_SEQUENCE, locktime, outputs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ChannelPublicKeys;
    use crate::params::{ChannelType, SideParams};
    use bitcoin::hashes::Hash;
    use secp256k1::{PublicKey, Secp256k1, SecretKey};

    fn params(funder: Side) -> ChannelParams {
        let secp = Secp256k1::new();
        let key =
            |b: u8| PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[b; 32]).unwrap());
        let side = |b: u8| SideParams {
            pubkeys: ChannelPublicKeys {
                funding_pubkey: key(b),
                revocation_basepoint: key(b + 1),
                payment_basepoint: key(b + 2),
                delayed_payment_basepoint: key(b + 3),
                htlc_basepoint: key(b + 4),
            },
            to_self_delay: 144,
            dust_limit: Amount::from_sat(546),
        };
        let outpoint = bitcoin::OutPoint {
            txid: bitcoin::Txid::all_zeros(),
            vout: 1,
        };
        ChannelParams::new(
            outpoint,
            Amount::from_sat(100_000),
            funder,
            ChannelType::Anchors,
            side(1),
            side(10),
        )
        .unwrap()
    }

    fn out(byte: u8, balance_msat: u64) -> CloseOutput {
        let hash = bitcoin::WPubkeyHash::from_byte_array([byte; 20]);
        CloseOutput {
            script_pubkey: ScriptBuf::new_p2wpkh(&hash),
            balance_msat,
        }
    }

    #[test]
    fn legacy_fee_from_funder_dust_removed_sorted() {
        let p = params(Side::Remote);
        let local = out(1, 60_000_999);
        let remote = out(2, 39_999_001);
        let tx = legacy_closing(
            &p,
            Some(&local),
            Some(&remote),
            Amount::from_sat(500),
            Amount::from_sat(546),
        )
        .unwrap();
        assert_eq!(tx.input[0].sequence, Sequence::MAX);
        assert_eq!(tx.lock_time, LockTime::ZERO);
        let values: Vec<u64> = tx.output.iter().map(|o| o.value.to_sat()).collect();
        assert_eq!(values, vec![39_499, 60_000]);
        // Remote's output below dust after the fee: removed.
        let remote = out(2, 1_000_000);
        let tx = legacy_closing(
            &p,
            Some(&local),
            Some(&remote),
            Amount::from_sat(500),
            Amount::from_sat(546),
        )
        .unwrap();
        assert_eq!(tx.output.len(), 1);
        assert_eq!(
            legacy_closing(
                &p,
                None,
                Some(&remote),
                Amount::from_sat(5_000),
                Amount::from_sat(546)
            ),
            Err(ClosingError::FeeExceedsBalance)
        );
    }

    #[test]
    fn simple_close_closer_pays_op_return_zero() {
        let p = params(Side::Local);
        let closer = out(9, 70_000_000);
        let op_return = CloseOutput {
            script_pubkey: ScriptBuf::new_op_return([0u8; 4]),
            balance_msat: 30_000_000,
        };
        let tx = simple_closing(
            &p,
            Some(&closer),
            Some(&op_return),
            Amount::from_sat(700),
            800_000,
        )
        .unwrap();
        assert_eq!(tx.input[0].sequence, Sequence(SIMPLE_CLOSE_SEQUENCE));
        assert_eq!(tx.lock_time, LockTime::from_consensus(800_000));
        assert_eq!(tx.output[0].value, Amount::ZERO);
        assert_eq!(tx.output[1].value, Amount::from_sat(69_300));
        assert_eq!(
            simple_closing(&p, None, None, Amount::ZERO, 0),
            Err(ClosingError::NoOutputs)
        );
    }
}
