//! Cooperative close, second phase: the legacy fee negotiation (BOLT 2
//! "Legacy Closing Negotiation: `closing_signed`") and the final mutual
//! close transaction (BOLT 3 "Legacy Closing Transaction").
//!
//! - It starts once both `shutdown`s are exchanged, no HTLC remains on
//!   either commitment and no update waits to be signed or revoked
//!   ([`Channel::closing_ready`]).
//! - Signatures are staged like commitments: [`Channel::stage_closing_sign`]
//!   returns a [`StagedClosingSign`] (the funder's first proposal, or the
//!   reply decided by the last `closing_signed`), [`Channel::apply_closing_sign`]
//!   queues our `closing_signed` behind a persist. The peer's message goes
//!   through [`Channel::stage_closing_signed`], [`StagedClosingVerify::verify`]
//!   and [`Channel::apply_closing_signed`].
//! - Fees: our estimate is the current commitment feerate times the weight
//!   of the signed closing transaction. We always send a `fee_range`: the
//!   funder `[fee / 2, min(fee * 2, its balance)]`; the fundee, which does
//!   not pay, `[fee / 2, the funder's balance]` (so at least the funder's
//!   maximum). The fundee accepts a proposal inside both ranges (replying
//!   with the same fee) and otherwise proposes the nearest fee of the
//!   overlap; the funder replies with any fee in the overlap. Equal fees end
//!   the negotiation with [`Effect::ClosingTx`], after which the channel
//!   takes no input ([`Channel::is_closed`]).
//! - Outputs below the larger of the two `dust_limit_satoshis` are removed
//!   by both sides, so both sign the same transaction.
//!
//! Not done: a peer's `closing_signed` without `fee_range` is accepted
//! when its fee is in our range and otherwise answered with a warning
//! (BOLT 2 asks for a counter-proposal "strictly between"); only the
//! two-output variant of the peer's transaction is checked (a peer that
//! drops its own output is warned); the negotiation timeout is the
//! caller's.

use bitcoin::{Amount, ScriptBuf, Transaction};
use lnhub_tx::batch::{SigCheck, SignJob};
use lnhub_tx::closing::{legacy_closing, CloseOutput};
use lnhub_tx::{sighash, witness, Side};
use lnhub_wire::msgs::{ClosingSigned, FeeRange};
use lnhub_wire::types::Sat;
use lnhub_wire::Message;
use secp256k1::ecdsa::Signature;
use secp256k1::{Secp256k1, Signing, Verification};

use crate::channel::Channel;
use crate::commit::Stamp;
use crate::effects::Effect;
use crate::error::ChannelError;
use crate::htlc::View;

/// A fee and the range around it we sent or will send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// `fee_satoshis`.
    pub fee: u64,
    /// `min_fee_satoshis` of our `fee_range`.
    pub min: u64,
    /// `max_fee_satoshis` of our `fee_range`.
    pub max: u64,
}

/// How far the `closing_signed` exchange has got. Reset by a
/// disconnection (BOLT 2: the negotiation restarts on reconnection)
/// unless it ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClosingState {
    /// Our last `closing_signed` and our signature in it.
    pub(crate) sent: Option<(Proposal, Signature)>,
    /// The peer's last `closing_signed`: fee and its (verified) signature.
    pub(crate) received: Option<(u64, Signature)>,
    /// The `closing_signed` we owe, to be staged and signed.
    pub(crate) pending: Option<Proposal>,
    /// The fully signed closing transaction, once agreed.
    pub(crate) tx: Option<Transaction>,
}

impl ClosingState {
    /// Our last proposal.
    pub fn sent(&self) -> Option<Proposal> {
        self.sent.map(|(p, _)| p)
    }

    /// The fee of the peer's last `closing_signed`.
    pub fn received_fee(&self) -> Option<u64> {
        self.received.map(|(f, _)| f)
    }

    /// The agreed, fully signed closing transaction.
    pub fn tx(&self) -> Option<&Transaction> {
        self.tx.as_ref()
    }
}

/// Our `closing_signed` for one fee, ready to be signed.
#[derive(Clone, Debug)]
pub struct StagedClosingSign {
    stamp: Stamp,
    proposal: Proposal,
    tx: Transaction,
    job: SignJob,
}

impl StagedClosingSign {
    /// The one signature to make (our funding key over the funding input).
    pub fn job(&self) -> &SignJob {
        &self.job
    }

    /// The fee being proposed.
    pub fn proposal(&self) -> Proposal {
        self.proposal
    }

    /// Signs the job (plain RFC 6979).
    pub fn sign<C: Signing>(self, secp: &Secp256k1<C>) -> SignedClosing {
        let sig = sighash::sign(secp, &self.job.msg, &self.job.key);
        SignedClosing { staged: self, sig }
    }

    /// Attaches a signature the caller made for [`job`](Self::job).
    pub fn with_signature(self, sig: Signature) -> SignedClosing {
        SignedClosing { staged: self, sig }
    }
}

/// A [`StagedClosingSign`] with its signature.
#[derive(Clone, Debug)]
pub struct SignedClosing {
    staged: StagedClosingSign,
    sig: Signature,
}

/// What we do once the peer's signature checks out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// The fee equals our last one: the negotiation is over.
    Done,
    /// Sign and send this proposal.
    Reply(Proposal),
}

/// The peer's `closing_signed`, with the signature check still to run.
#[derive(Clone, Debug)]
pub struct StagedClosingVerify {
    stamp: Stamp,
    fee: u64,
    tx: Transaction,
    check: SigCheck,
    answer: Answer,
}

impl StagedClosingVerify {
    /// The signature check (the peer's funding key over the funding input).
    pub fn check(&self) -> &SigCheck {
        &self.check
    }

    /// Runs the check; `Err` carries the action for a bad signature.
    pub fn verify<C: Verification>(
        self,
        secp: &Secp256k1<C>,
    ) -> Result<VerifiedClosing, ChannelError> {
        secp.verify_ecdsa(&self.check.msg, &self.check.sig, &self.check.pubkey)
            .map_err(|_| ChannelError::close("closing_signed: invalid signature"))?;
        Ok(VerifiedClosing(self))
    }

    /// Attaches the result of the caller's own (batched) check.
    pub fn checked(self, valid: bool) -> Result<VerifiedClosing, ChannelError> {
        if valid {
            Ok(VerifiedClosing(self))
        } else {
            Err(ChannelError::close("closing_signed: invalid signature"))
        }
    }
}

/// A [`StagedClosingVerify`] whose signature is valid.
#[derive(Clone, Debug)]
pub struct VerifiedClosing(StagedClosingVerify);

/// `lo <= v <= hi`.
fn within(v: u64, lo: u64, hi: u64) -> bool {
    lo <= v && v <= hi
}

impl Channel {
    /// The `closing_signed` exchange so far.
    pub fn closing_state(&self) -> &ClosingState {
        &self.closing
    }

    /// The closing transaction is agreed and signed: the channel takes no
    /// more input.
    pub fn is_closed(&self) -> bool {
        self.closing.tx.is_some()
    }

    /// Both `shutdown`s are exchanged, no HTLC is left on either
    /// commitment and no update or revocation is outstanding: fee
    /// negotiation may run.
    pub fn closing_ready(&self) -> bool {
        self.shutdown.local.is_some()
            && self.shutdown.remote.is_some()
            && self.book.htlcs().is_empty()
            && self.book.fee_updates().is_empty()
            && !self.awaiting_revoke()
            && !self.book.has_changes_for_remote()
    }

    /// `side`'s balance on our current commitment (the same on both once
    /// no update is outstanding).
    fn balance_msat(&self, side: Side) -> u64 {
        let mut htlcs = Vec::new();
        self.book
            .view(View::LocalCurrent, &mut htlcs)
            .balance_of(side)
    }

    /// Both sides' closing outputs (balances of the current commitment).
    fn close_outputs(&self) -> (CloseOutput, CloseOutput) {
        let local = self.shutdown.local.as_ref().map(|(s, _)| s.clone());
        let remote = self.shutdown.remote.clone();
        let out = |script: Option<ScriptBuf>, side: Side| CloseOutput {
            script_pubkey: script.unwrap_or_default(),
            balance_msat: self.balance_msat(side),
        };
        (out(local, Side::Local), out(remote, Side::Remote))
    }

    /// The closing transaction with `fee` (both sides' outputs, the larger
    /// dust limit), or why it cannot exist.
    fn closing_tx(&self, fee: u64) -> Result<Transaction, String> {
        let (local, remote) = self.close_outputs();
        let dust = self
            .params
            .side(Side::Local)
            .dust_limit
            .max(self.params.side(Side::Remote).dust_limit);
        legacy_closing(
            &self.params,
            Some(&local),
            Some(&remote),
            Amount::from_sat(fee),
            dust,
        )
        .map_err(|e| format!("closing transaction with fee {fee}: {e}"))
    }

    /// The funder's balance in whole satoshis: the most any fee can be.
    fn funder_balance_sat(&self) -> u64 {
        self.balance_msat(self.book.funder()) / 1000
    }

    /// Our fee estimate and range: the current feerate times the weight
    /// of the signed transaction (73-byte signatures).
    fn our_proposal(&self) -> Result<Proposal, ChannelError> {
        let mut tx = self.closing_tx(0).map_err(ChannelError::Warn)?;
        let dummy = Signature::from_compact(&[1; 64]).expect("a valid compact signature");
        tx.input[0].witness = witness::funding(&self.params, &dummy, &dummy);
        // The dummy signatures encode in 71 bytes; DER allows 73.
        let weight = tx.weight().to_wu() + 4;
        let feerate = u64::from(self.book.feerate(View::LocalCurrent));
        let cap = self.funder_balance_sat();
        let fee = (feerate * weight / 1000).min(cap);
        let max = if self.book.funder() == Side::Local {
            fee.saturating_mul(2).min(cap)
        } else {
            cap
        };
        Ok(Proposal {
            fee,
            min: fee / 2,
            max,
        })
    }

    /// Stages our next `closing_signed`: the funder's opening proposal
    /// once [`Channel::closing_ready`], or the reply the peer's last
    /// message called for. `None` when nothing is owed.
    pub fn stage_closing_sign(&mut self) -> Result<Option<StagedClosingSign>, ChannelError> {
        if !self.is_operational() || self.is_closed() || !self.closing_ready() {
            return Ok(None);
        }
        let proposal = match self.closing.pending {
            Some(p) => p,
            None if self.book.funder() == Side::Local && self.closing.sent.is_none() => {
                self.our_proposal()?
            }
            None => return Ok(None),
        };
        let tx = self.closing_tx(proposal.fee).map_err(ChannelError::Warn)?;
        let job = SignJob {
            msg: sighash::funding_input(&tx, &self.params),
            key: self.secrets.funding_key,
        };
        Ok(Some(StagedClosingSign {
            stamp: self.stamp(),
            proposal,
            tx,
            job,
        }))
    }

    /// Queues our signed `closing_signed` behind a persist; if it repeats
    /// the peer's fee, the negotiation ends with [`Effect::ClosingTx`].
    pub fn apply_closing_sign(&mut self, signed: SignedClosing) {
        let SignedClosing { staged, sig } = signed;
        assert_eq!(
            staged.stamp,
            self.stamp(),
            "a stage is applied to its own channel before any other input reaches it"
        );
        let p = staged.proposal;
        self.closing.pending = None;
        self.closing.sent = Some((p, sig));
        self.version += 1;
        self.request_persist();
        self.emit(Effect::Send(Message::ClosingSigned(ClosingSigned {
            channel_id: self.channel_id,
            fee_satoshis: Sat(p.fee),
            signature: sig,
            fee_range: Some(FeeRange {
                min_fee_satoshis: Sat(p.min),
                max_fee_satoshis: Sat(p.max),
            }),
            unknown_tlvs: Vec::new(),
        })));
        if let Some((fee, remote_sig)) = self.closing.received {
            if fee == p.fee {
                self.finish_closing(staged.tx, sig, remote_sig);
            }
        }
    }

    /// Both signatures of `tx`: store it and report it.
    fn finish_closing(&mut self, mut tx: Transaction, local: Signature, remote: Signature) {
        tx.input[0].witness = witness::funding(&self.params, &local, &remote);
        self.closing.tx = Some(tx.clone());
        self.version += 1;
        self.request_persist();
        self.emit(Effect::ClosingTx { tx });
    }

    /// The peer's `closing_signed` (BOLT 2 receiver requirements): checks
    /// the fee against the ranges and builds the transaction it signs.
    pub fn stage_closing_signed(
        &mut self,
        msg: &ClosingSigned,
    ) -> Result<StagedClosingVerify, ChannelError> {
        if self.is_closed() {
            return Err(ChannelError::Ignore("channel is closed".into()));
        }
        self.check_input(&msg.channel_id)?;
        if !self.closing_ready() {
            return Err(ChannelError::Warn(
                "closing_signed before shutdown is complete and the channel is empty".into(),
            ));
        }
        let fee = msg.fee_satoshis.0;
        let funder = self.book.funder() == Side::Local;
        if funder && self.closing.sent.is_none() {
            return Err(ChannelError::Warn(
                "closing_signed from the fundee before the funder's".into(),
            ));
        }
        if fee > self.funder_balance_sat() {
            return Err(self.fail(ChannelError::close(
                "closing_signed fee exceeds the funder's balance",
            )));
        }
        let ours = match self.closing.sent {
            Some((p, _)) => p,
            None => self.our_proposal()?,
        };
        let answer = if self.closing.sent.is_some_and(|(p, _)| p.fee == fee) {
            Answer::Done
        } else if let Some(range) = &msg.fee_range {
            let (lo, hi) = (
                range.min_fee_satoshis.0.max(ours.min),
                range.max_fee_satoshis.0.min(ours.max),
            );
            if range.min_fee_satoshis.0 > range.max_fee_satoshis.0 || lo > hi {
                return Err(ChannelError::Warn(format!(
                    "closing_signed fee_range does not overlap ours [{}, {}]",
                    ours.min, ours.max
                )));
            }
            if funder || self.closing.sent.is_some() {
                if !within(fee, lo, hi) || self.closing.sent.is_some() && !funder {
                    return Err(self.fail(ChannelError::close(format!(
                        "closing_signed fee {fee} outside the agreed fee_range [{lo}, {hi}]"
                    ))));
                }
                Answer::Reply(Proposal { fee, ..ours })
            } else {
                Answer::Reply(Proposal {
                    fee: fee.clamp(lo, hi),
                    ..ours
                })
            }
        } else if within(fee, ours.min, ours.max) {
            Answer::Reply(Proposal { fee, ..ours })
        } else {
            return Err(ChannelError::Warn(format!(
                "closing_signed fee {fee} outside our range [{}, {}]",
                ours.min, ours.max
            )));
        };
        let tx = self
            .closing_tx(fee)
            .map_err(|e| self.fail(ChannelError::close(e)))?;
        let check = SigCheck {
            msg: sighash::funding_input(&tx, &self.params),
            sig: msg.signature,
            pubkey: self.params.side(Side::Remote).pubkeys.funding_pubkey,
        };
        Ok(StagedClosingVerify {
            stamp: self.stamp(),
            fee,
            tx,
            check,
            answer,
        })
    }

    /// Applies a checked `closing_signed`: ends the negotiation if the fee
    /// is ours, otherwise records the reply for
    /// [`Channel::stage_closing_sign`].
    pub fn apply_closing_signed(
        &mut self,
        verified: Result<VerifiedClosing, ChannelError>,
    ) -> Result<(), ChannelError> {
        let v = verified.map_err(|e| self.fail(e))?.0;
        assert_eq!(
            v.stamp,
            self.stamp(),
            "a stage is applied to its own channel before any other input reaches it"
        );
        self.closing.received = Some((v.fee, v.check.sig));
        self.version += 1;
        match v.answer {
            Answer::Done => {
                let (_, local) = self.closing.sent.expect("Done answers our own fee");
                self.finish_closing(v.tx, local, v.check.sig);
            }
            Answer::Reply(p) => {
                self.closing.pending = Some(p);
                self.request_persist();
            }
        }
        Ok(())
    }

    /// A disconnection restarts an unfinished negotiation.
    pub(crate) fn reset_closing(&mut self) {
        if !self.is_closed() {
            self.closing = ClosingState::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lnhub_tx::ChannelType;

    fn script(tag: u8) -> ScriptBuf {
        let mut v = vec![0x00, 20];
        v.extend([tag; 20]);
        ScriptBuf::from_bytes(v)
    }

    /// Delivers everything `from` queued to `to` (persists done at once);
    /// returns the closing transactions `from` reported.
    fn flush(
        secp: &Secp256k1<secp256k1::All>,
        from: &mut Channel,
        to: &mut Channel,
    ) -> Vec<Transaction> {
        let mut txs = Vec::new();
        while let Some(e) = from.poll_effect() {
            match e {
                Effect::Send(Message::Shutdown(m)) => to.handle_shutdown(&m).expect("shutdown"),
                Effect::Send(Message::ClosingSigned(m)) => {
                    let staged = to.stage_closing_signed(&m).expect("in range");
                    let verified = staged.verify(secp);
                    to.apply_closing_signed(verified).expect("valid");
                }
                Effect::Send(other) => panic!("unexpected {other:?}"),
                Effect::Persist { seq } => from.handle_persisted(seq),
                Effect::ClosingTx { tx } => txs.push(tx),
                other => panic!("unexpected {other:?}"),
            }
        }
        txs
    }

    fn sign_next(secp: &Secp256k1<secp256k1::All>, ch: &mut Channel) -> Option<Proposal> {
        let staged = ch.stage_closing_sign().expect("buildable")?;
        let p = staged.proposal();
        ch.apply_closing_sign(staged.sign(secp));
        Some(p)
    }

    /// The funder opens below the fundee's minimum with a range reaching
    /// into it: the fundee counters with the lowest fee of the overlap, the
    /// funder repeats it (three messages), both hold the same transaction.
    #[test]
    fn fundee_counters_and_funder_repeats() {
        let secp = Secp256k1::new();
        let (mut a, mut b) = crate::fuzz::fixed_pair(ChannelType::Anchors, 2_500);
        a.send_shutdown(script(1)).expect("A");
        flush(&secp, &mut a, &mut b);
        b.send_shutdown(script(2)).expect("B");
        flush(&secp, &mut b, &mut a);
        let estimate = a.our_proposal().expect("estimate");
        assert!(estimate.fee >= 8, "a fee to halve");
        a.closing.pending = Some(Proposal {
            fee: estimate.fee / 4,
            min: 1,
            max: estimate.fee,
        });
        assert_eq!(
            sign_next(&secp, &mut a).map(|p| p.fee),
            Some(estimate.fee / 4)
        );
        assert!(flush(&secp, &mut a, &mut b).is_empty());
        let counter = sign_next(&secp, &mut b).expect("B counters");
        assert_eq!(counter.fee, estimate.min, "lowest fee of the overlap");
        assert!(flush(&secp, &mut b, &mut a).is_empty(), "B waits for A");
        assert_eq!(sign_next(&secp, &mut a).map(|p| p.fee), Some(counter.fee));
        let from_a = flush(&secp, &mut a, &mut b);
        assert_eq!(from_a.len(), 1, "A agreed when repeating B's fee");
        let from_b = flush(&secp, &mut b, &mut a);
        assert_eq!(from_a, from_b, "B agreed on receiving its own fee");
        assert!(a.is_closed() && b.is_closed());
        assert_eq!(sign_next(&secp, &mut a), None);
    }
}
