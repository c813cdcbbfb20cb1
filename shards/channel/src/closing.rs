//! Cooperative close, second phase: the legacy fee negotiation (BOLT 2
//! "Legacy Closing Negotiation: `closing_signed`") and the final mutual
//! close transaction (BOLT 3 "Legacy Closing Transaction"), plus the
//! staging types both negotiations share (`option_simple_close` is
//! [`crate::simple_close`]).
//!
//! - It starts once both `shutdown`s are exchanged, no HTLC remains on
//!   either commitment and no update waits to be signed or revoked
//!   ([`Channel::closing_ready`]).
//! - Signatures are staged like commitments: [`Channel::stage_closing_sign`]
//!   returns a [`StagedClosingSign`] (the funder's first proposal, the
//!   reply decided by the last `closing_signed`, or an `option_simple_close`
//!   message), [`Channel::apply_closing_sign`] queues what it signs behind a
//!   persist. The peer's messages go through [`Channel::stage_closing_signed`]
//!   (or `stage_closing_complete` / `stage_closing_sig`),
//!   [`StagedClosingVerify::verify`] and [`Channel::apply_closing_verified`].
//! - Fees: our estimate is the current commitment feerate times the weight
//!   of the signed closing transaction. We always send a `fee_range`: the
//!   funder `[fee / 2, min(fee * 2, its balance)]`; the fundee, which does
//!   not pay, `[fee / 2, the funder's balance]` (so at least the funder's
//!   maximum). The fundee accepts a proposal inside both ranges (replying
//!   with the same fee) and otherwise proposes the nearest fee of the
//!   overlap; the funder replies with any fee in the overlap. A peer that
//!   sends no `fee_range` gets the old rules: its fee must lie strictly
//!   between its previous one and our last (since the connection began),
//!   and we agree when it is inside our range, otherwise we counter with
//!   the midpoint (our estimate, the first time). Equal fees end the
//!   negotiation with [`Effect::ClosingTx`], after which the channel takes
//!   no input ([`Channel::is_closed`]).
//! - Dust (BOLT 3): each signer removes the outputs below its own
//!   `dust_limit_satoshis`, and MAY drop its own output. We sign the
//!   transaction with our dust limit; the peer's signature is checked
//!   against every variant it may have signed (its dust limit, with and
//!   without its own output, or exactly our transaction when it agrees
//!   with our fee). When the fees agree, the final transaction
//!   is the one the peer signed: our reply signs that variant, and if the
//!   peer repeated our fee on another variant than ours we sign its
//!   variant once more (without sending anything). A variant with an
//!   output below its script's relay dust threshold fails the channel
//!   (BOLT 2).
//!
//! A finished negotiation survives a lost last message: after
//! `channel_reestablish` a closed funder sends its final `closing_signed`
//! again (the fee as the whole `fee_range`), and a closed fundee answers a
//! restarted negotiation with it.
//!
//! The negotiation timeout ("MUST fail the channel" without a reply): the
//! caller, which knows the clock, watches [`Channel::awaiting_closing_reply`]
//! and calls [`Channel::handle_closing_timeout`].

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
use crate::close::is_dust;
use crate::commit::Stamp;
use crate::effects::Effect;
use crate::error::ChannelError;
use crate::htlc::View;
use crate::simple_close::{SimpleState, SimpleVerify, SimpleWork};

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

/// Which legacy closing transaction a `closing_signed` signature is for
/// (BOLT 3: each signer uses its own dust limit and may drop its own
/// output; a peer agreeing with us may sign exactly our transaction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Variant {
    /// Built with the peer's dust limit.
    Peer = 0,
    /// Built with the peer's dust limit, without the peer's output.
    PeerWithoutOwn = 1,
    /// The one we sign: our dust limit.
    Ours = 2,
}

impl Variant {
    pub(crate) fn from_u8(v: u8) -> Option<Variant> {
        match v {
            0 => Some(Variant::Peer),
            1 => Some(Variant::PeerWithoutOwn),
            2 => Some(Variant::Ours),
            _ => None,
        }
    }
}

/// The peer's last `closing_signed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Received {
    /// `fee_satoshis`.
    pub(crate) fee: u64,
    /// Its verified signature.
    pub(crate) sig: Signature,
    /// The transaction it signs.
    pub(crate) variant: Variant,
}

/// How far the closing negotiation has got. The legacy `closing_signed`
/// part is reset by a disconnection (BOLT 2: the negotiation restarts on
/// reconnection) unless it ended; `simple` is the `option_simple_close`
/// part.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClosingState {
    /// Our last `closing_signed` and our signature in it.
    pub(crate) sent: Option<(Proposal, Signature)>,
    /// The peer's last `closing_signed`.
    pub(crate) received: Option<Received>,
    /// The `closing_signed` we owe (or the final signature), to be staged
    /// and signed.
    pub(crate) pending: Option<Proposal>,
    /// The latest fully signed closing transaction.
    pub(crate) tx: Option<Transaction>,
    /// `closing_complete` / `closing_sig` progress.
    pub(crate) simple: SimpleState,
}

impl ClosingState {
    /// Our last proposal.
    pub fn sent(&self) -> Option<Proposal> {
        self.sent.map(|(p, _)| p)
    }

    /// The fee of the peer's last `closing_signed`.
    pub fn received_fee(&self) -> Option<u64> {
        self.received.map(|r| r.fee)
    }

    /// The latest agreed, fully signed closing transaction.
    pub fn tx(&self) -> Option<&Transaction> {
        self.tx.as_ref()
    }

    /// The `option_simple_close` progress.
    pub fn simple(&self) -> &SimpleState {
        &self.simple
    }
}

/// What a staged closing signature is for.
#[derive(Clone, Debug)]
pub(crate) enum SignFor {
    /// Our `closing_signed` with this proposal (`send`: a new message; not
    /// when we only sign the peer's variant of a fee we already sent).
    Legacy { proposal: Proposal, send: bool },
    /// An `option_simple_close` message.
    Simple(SimpleWork),
}

/// Our next closing signature(s), ready to be signed: one transaction and
/// one job each.
#[derive(Clone, Debug)]
pub struct StagedClosingSign {
    pub(crate) stamp: Stamp,
    pub(crate) what: SignFor,
    pub(crate) txs: Vec<Transaction>,
    pub(crate) jobs: Vec<SignJob>,
}

impl StagedClosingSign {
    /// The signatures to make (our funding key over the funding input of
    /// each transaction).
    pub fn jobs(&self) -> &[SignJob] {
        &self.jobs
    }

    /// The legacy fee being proposed, if this is a `closing_signed`.
    pub fn proposal(&self) -> Option<Proposal> {
        match self.what {
            SignFor::Legacy { proposal, .. } => Some(proposal),
            SignFor::Simple(_) => None,
        }
    }

    /// Signs the jobs (plain RFC 6979).
    pub fn sign<C: Signing>(self, secp: &Secp256k1<C>) -> SignedClosing {
        let sigs = self
            .jobs
            .iter()
            .map(|j| sighash::sign(secp, &j.msg, &j.key))
            .collect();
        SignedClosing { staged: self, sigs }
    }

    /// Attaches the signatures the caller made for [`jobs`](Self::jobs),
    /// in order.
    pub fn with_signatures(self, sigs: Vec<Signature>) -> SignedClosing {
        assert_eq!(sigs.len(), self.jobs.len(), "one signature per job");
        SignedClosing { staged: self, sigs }
    }
}

/// A [`StagedClosingSign`] with its signatures.
#[derive(Clone, Debug)]
pub struct SignedClosing {
    pub(crate) staged: StagedClosingSign,
    pub(crate) sigs: Vec<Signature>,
}

/// What we do once the peer's `closing_signed` signature checks out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The fee equals our last one: the negotiation is over.
    Done,
    /// Sign and send this proposal.
    Reply(Proposal),
}

/// What a staged signature check is for.
#[derive(Clone, Debug)]
pub(crate) enum VerifyFor {
    /// The peer's `closing_signed` with `fee`.
    Legacy { fee: u64, answer: Answer },
    /// An `option_simple_close` message.
    Simple(SimpleVerify),
}

/// A peer's closing message, with its signature check still to run: the
/// candidate transactions it may sign, in order of preference.
#[derive(Clone, Debug)]
pub struct StagedClosingVerify {
    pub(crate) stamp: Stamp,
    pub(crate) what: VerifyFor,
    /// `(transaction, check, variant)`: the legacy variants; one entry
    /// for `option_simple_close` (its variant is not used).
    pub(crate) candidates: Vec<(Transaction, SigCheck, Variant)>,
}

impl StagedClosingVerify {
    /// The signature checks, one per candidate transaction: the signature
    /// is valid if any one passes.
    pub fn checks(&self) -> impl Iterator<Item = &SigCheck> {
        self.candidates.iter().map(|c| &c.1)
    }

    /// Runs the checks; `Err` carries the action for a bad signature.
    pub fn verify<C: Verification>(
        self,
        secp: &Secp256k1<C>,
    ) -> Result<VerifiedClosing, ChannelError> {
        let valid = self
            .candidates
            .iter()
            .position(|(_, c, _)| secp.verify_ecdsa(&c.msg, &c.sig, &c.pubkey).is_ok());
        self.checked(valid)
    }

    /// Attaches the result of the caller's own checks: the index of the
    /// candidate whose check passed, if any.
    pub fn checked(self, valid: Option<usize>) -> Result<VerifiedClosing, ChannelError> {
        match valid {
            Some(i) if i < self.candidates.len() => Ok(VerifiedClosing {
                staged: self,
                index: i,
            }),
            _ => Err(match self.what {
                VerifyFor::Legacy { .. } => {
                    ChannelError::close("closing_signed: invalid signature")
                }
                VerifyFor::Simple(_) => ChannelError::Warn("closing signature is invalid".into()),
            }),
        }
    }
}

/// A [`StagedClosingVerify`] whose signature is valid for one candidate.
#[derive(Clone, Debug)]
pub struct VerifiedClosing {
    pub(crate) staged: StagedClosingVerify,
    pub(crate) index: usize,
}

/// `lo <= v <= hi`.
fn within(v: u64, lo: u64, hi: u64) -> bool {
    lo <= v && v <= hi
}

/// A dummy DER signature for weight estimates (71 bytes encoded).
pub(crate) fn dummy_signature() -> Signature {
    Signature::from_compact(&[1; 64]).expect("a valid compact signature")
}

impl Channel {
    /// The closing negotiation so far.
    pub fn closing_state(&self) -> &ClosingState {
        &self.closing
    }

    /// A closing transaction is agreed and signed. With legacy
    /// `closing_signed` the channel then takes no more input; with
    /// `option_simple_close` it still answers `closing_complete` (a peer
    /// may replace its transaction).
    pub fn is_closed(&self) -> bool {
        self.closing.tx.is_some()
    }

    /// The latest fully signed closing transaction, to broadcast (again after a restart).
    pub fn closing_tx(&self) -> Option<&Transaction> {
        self.closing.tx.as_ref()
    }

    /// The funding output was spent on chain by something other than an agreed closing
    /// transaction (a commitment: the channel was force-closed). The channel takes no more
    /// updates; the returned error is the one to give the peer.
    pub fn handle_funding_spent(&mut self, txid: &bitcoin::Txid) -> ChannelError {
        self.version += 1;
        self.fail(ChannelError::close(format!(
            "funding output spent on chain by {txid}"
        )))
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

    /// Closing messages flow: not failed, connection reestablished (closed
    /// or not).
    pub(crate) fn closing_link_up(&self) -> bool {
        !self.failed && self.link == crate::channel::Link::Up
    }

    /// `side`'s balance on our current commitment (the same on both once
    /// no update is outstanding).
    pub(crate) fn balance_msat(&self, side: Side) -> u64 {
        let mut htlcs = Vec::new();
        self.book
            .view(View::LocalCurrent, &mut htlcs)
            .balance_of(side)
    }

    /// The funding input's sighash of `tx` and a job to sign it.
    pub(crate) fn funding_job(&self, tx: &Transaction) -> SignJob {
        SignJob {
            msg: sighash::funding_input(tx, &self.params),
            key: self.secrets.funding_key,
        }
    }

    /// The check of the peer's funding signature `sig` on `tx`.
    pub(crate) fn funding_check(&self, tx: &Transaction, sig: Signature) -> SigCheck {
        SigCheck {
            msg: sighash::funding_input(tx, &self.params),
            sig,
            pubkey: self.params.side(Side::Remote).pubkeys.funding_pubkey,
        }
    }

    /// A legacy closing transaction with `fee`: both outputs from the
    /// `shutdown` scripts, outputs below `signer`'s dust limit removed,
    /// and `signer`'s own output dropped if `drops_own`.
    fn legacy_tx(&self, fee: u64, signer: Side, drops_own: bool) -> Result<Transaction, String> {
        let script = |side: Side| match side {
            Side::Local => self.shutdown.local.as_ref().map(|(s, _)| s.clone()),
            Side::Remote => self.shutdown.remote.clone(),
        };
        let out = |side: Side| CloseOutput {
            script_pubkey: script(side).unwrap_or_else(ScriptBuf::new),
            balance_msat: self.balance_msat(side),
        };
        let (local, remote) = (out(Side::Local), out(Side::Remote));
        let keep = |side: Side| !(drops_own && side == signer);
        legacy_closing(
            &self.params,
            keep(Side::Local).then_some(&local),
            keep(Side::Remote).then_some(&remote),
            Amount::from_sat(fee),
            self.params.side(signer).dust_limit,
        )
        .map_err(|e| format!("closing transaction with fee {fee}: {e}"))
    }

    /// The transaction we sign when proposing `fee` (our dust limit).
    fn our_legacy_tx(&self, fee: u64) -> Result<Transaction, String> {
        self.legacy_tx(fee, Side::Local, false)
    }

    /// The legacy closing transaction `variant` with `fee`.
    fn variant_tx(&self, fee: u64, variant: Variant) -> Result<Transaction, String> {
        match variant {
            Variant::Peer => self.legacy_tx(fee, Side::Remote, false),
            Variant::PeerWithoutOwn => self.legacy_tx(fee, Side::Remote, true),
            Variant::Ours => self.our_legacy_tx(fee),
        }
    }

    /// The funder's balance in whole satoshis: the most any fee can be.
    fn funder_balance_sat(&self) -> u64 {
        self.balance_msat(self.book.funder()) / 1000
    }

    /// Our fee estimate and range: the current feerate times the weight
    /// of the signed transaction (73-byte signatures).
    fn our_proposal(&self) -> Result<Proposal, ChannelError> {
        let mut tx = self.our_legacy_tx(0).map_err(ChannelError::Warn)?;
        let dummy = dummy_signature();
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

    /// Stages our next closing signature(s): with `option_simple_close`
    /// our `closing_sig` or `closing_complete` ([`crate::simple_close`]);
    /// otherwise the funder's opening `closing_signed` once
    /// [`Channel::closing_ready`], or the reply the peer's last message
    /// called for. `None` when nothing is owed.
    pub fn stage_closing_sign(&mut self) -> Result<Option<StagedClosingSign>, ChannelError> {
        if self.shutdown_terms.option_simple_close {
            return self.stage_simple_sign();
        }
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
        // Agreeing with the peer's fee: sign the very transaction it signed.
        let tx = match self.closing.received {
            Some(r) if r.fee == proposal.fee => self.variant_tx(r.fee, r.variant),
            _ => self.our_legacy_tx(proposal.fee),
        }
        .map_err(ChannelError::Warn)?;
        let send = self.closing.sent.is_none_or(|(p, _)| p.fee != proposal.fee);
        Ok(Some(StagedClosingSign {
            stamp: self.stamp(),
            what: SignFor::Legacy { proposal, send },
            jobs: vec![self.funding_job(&tx)],
            txs: vec![tx],
        }))
    }

    /// Applies our signed closing message: queues it behind a persist;
    /// a `closing_signed` repeating the peer's fee (or a `closing_sig`)
    /// ends with [`Effect::ClosingTx`].
    pub fn apply_closing_sign(&mut self, signed: SignedClosing) {
        let SignedClosing { staged, sigs } = signed;
        assert_eq!(
            staged.stamp,
            self.stamp(),
            "a stage is applied to its own channel before any other input reaches it"
        );
        let SignFor::Legacy { proposal: p, send } = staged.what else {
            return self.apply_simple_sign(staged, sigs);
        };
        let (tx, sig) = (staged.txs[0].clone(), sigs[0]);
        self.closing.pending = None;
        self.closing.sent = Some((p, sig));
        self.version += 1;
        self.request_persist();
        if send {
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
        }
        if let Some(r) = self.closing.received {
            if r.fee == p.fee {
                self.finish_closing(tx, sig, r.sig);
            }
        }
    }

    /// Our last `closing_signed` of a finished legacy negotiation, its fee
    /// as the whole `fee_range`: retransmitted when the peer may have
    /// missed it.
    pub(crate) fn final_closing_signed(&self) -> Option<ClosingSigned> {
        if !self.is_closed() || self.shutdown_terms.option_simple_close {
            return None;
        }
        let (p, signature) = self.closing.sent?;
        Some(ClosingSigned {
            channel_id: self.channel_id,
            fee_satoshis: Sat(p.fee),
            signature,
            fee_range: Some(FeeRange {
                min_fee_satoshis: Sat(p.fee),
                max_fee_satoshis: Sat(p.fee),
            }),
            unknown_tlvs: Vec::new(),
        })
    }

    /// Both signatures of `tx`: store it and report it.
    pub(crate) fn finish_closing(
        &mut self,
        mut tx: Transaction,
        local: Signature,
        remote: Signature,
    ) {
        tx.input[0].witness = witness::funding(&self.params, &local, &remote);
        self.closing.tx = Some(tx.clone());
        self.version += 1;
        self.request_persist();
        self.emit(Effect::ClosingTx { tx });
    }

    /// The peer's `closing_signed` (BOLT 2 receiver requirements): checks
    /// the fee against the ranges and builds the transactions it may sign.
    pub fn stage_closing_signed(
        &mut self,
        msg: &ClosingSigned,
    ) -> Result<StagedClosingVerify, ChannelError> {
        if self.is_closed() {
            // The peer restarted a negotiation we finished: our final
            // message was lost with a connection. Repeat it so the peer can
            // finish too (as funder we already did on reestablish).
            if self.closing_link_up() && self.book.funder() == Side::Remote {
                if let Some(m) = self.final_closing_signed() {
                    self.emit(Effect::Send(Message::ClosingSigned(m)));
                }
            }
            return Err(ChannelError::Ignore("channel is closed".into()));
        }
        self.check_input(&msg.channel_id)?;
        if self.shutdown_terms.option_simple_close {
            return Err(ChannelError::Warn(
                "closing_signed with option_simple_close negotiated".into(),
            ));
        }
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
        let answer = self.legacy_answer(msg, fee, funder)?;
        let primary = self
            .legacy_tx(fee, Side::Remote, false)
            .map_err(|e| self.fail(ChannelError::close(e)))?;
        // BOLT 2: "if one of the outputs in the closing transaction is
        // below the dust limit for its scriptpubkey: MUST fail the channel".
        if let Some(o) = primary
            .output
            .iter()
            .find(|o| is_dust(&o.script_pubkey, o.value.to_sat()))
        {
            return Err(self.fail(ChannelError::close(format!(
                "closing transaction output of {} sat is below its relay dust threshold",
                o.value.to_sat()
            ))));
        }
        let mut candidates: Vec<(Transaction, SigCheck, Variant)> = Vec::with_capacity(3);
        let check = self.funding_check(&primary, msg.signature);
        candidates.push((primary, check, Variant::Peer));
        // The other transactions the peer may have signed, when they differ.
        for variant in [Variant::PeerWithoutOwn, Variant::Ours] {
            if let Ok(tx) = self.variant_tx(fee, variant) {
                if candidates.iter().all(|c| c.0 != tx) {
                    let check = self.funding_check(&tx, msg.signature);
                    candidates.push((tx, check, variant));
                }
            }
        }
        Ok(StagedClosingVerify {
            stamp: self.stamp(),
            what: VerifyFor::Legacy { fee, answer },
            candidates,
        })
    }

    /// What a valid `closing_signed` with `fee` calls for (BOLT 2 receiver
    /// rules), or the action if it breaks them.
    fn legacy_answer(
        &mut self,
        msg: &ClosingSigned,
        fee: u64,
        funder: bool,
    ) -> Result<Answer, ChannelError> {
        let ours = match self.closing.sent {
            Some((p, _)) => p,
            None => self.our_proposal()?,
        };
        if self.closing.sent.is_some_and(|(p, _)| p.fee == fee) {
            return Ok(Answer::Done);
        }
        if let Some(range) = &msg.fee_range {
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
                return Ok(Answer::Reply(Proposal { fee, ..ours }));
            }
            return Ok(Answer::Reply(Proposal {
                fee: fee.clamp(lo, hi),
                ..ours
            }));
        }
        // No fee_range: the old rules. The fee must make progress: strictly
        // between our last fee and the peer's previous one.
        if let (Some((sent, _)), Some(prev)) = (self.closing.sent, self.closing.received) {
            let (lo, hi) = (sent.fee.min(prev.fee), sent.fee.max(prev.fee));
            if !(lo < fee && fee < hi) {
                return Err(ChannelError::Warn(format!(
                    "closing_signed fee {fee} not strictly between {lo} and {hi}"
                )));
            }
        }
        if within(fee, ours.min, ours.max) {
            return Ok(Answer::Reply(Proposal { fee, ..ours }));
        }
        let counter = match self.closing.sent {
            None => ours.fee,
            // Strictly between the two, when an integer is.
            Some((sent, _)) => {
                let mid = fee.min(sent.fee) + fee.abs_diff(sent.fee) / 2;
                if mid == fee || mid == sent.fee {
                    fee
                } else {
                    mid
                }
            }
        };
        Ok(Answer::Reply(Proposal {
            fee: counter,
            ..ours
        }))
    }

    /// Whether our last closing message waits for the peer's answer: a
    /// `closing_signed` whose fee the peer has not repeated (and no reply
    /// of ours is owed), or a `closing_complete` without its `closing_sig`.
    /// The caller starts its clock when this turns true.
    pub fn awaiting_closing_reply(&self) -> bool {
        if !self.closing_link_up() {
            return false;
        }
        if self.shutdown_terms.option_simple_close {
            return self.closing.simple.sent.is_some();
        }
        !self.is_closed() && self.closing.sent.is_some() && self.closing.pending.is_none()
    }

    /// The caller's clock says the peer left our closing message
    /// unanswered too long ([`Channel::awaiting_closing_reply`] since). BOLT
    /// 2: for `closing_signed` "MUST fail the channel" (returned as
    /// [`ChannelError::Close`], the channel is failed); for
    /// `closing_complete` "SHOULD close the connection"
    /// ([`ChannelError::Warn`]: the exchange restarts on reconnection).
    /// `Ok` if nothing is awaited.
    pub fn handle_closing_timeout(&mut self) -> Result<(), ChannelError> {
        if !self.awaiting_closing_reply() {
            return Ok(());
        }
        if self.shutdown_terms.option_simple_close {
            return Err(ChannelError::Warn(
                "no closing_sig for our closing_complete in time".into(),
            ));
        }
        Err(self.fail(ChannelError::close(
            "no answer to our closing_signed in time",
        )))
    }

    /// Stages a peer's closing negotiation message (`closing_signed`,
    /// `closing_complete` or `closing_sig`); `None` for any other message.
    pub fn stage_closing_message(
        &mut self,
        msg: &Message,
    ) -> Option<Result<StagedClosingVerify, ChannelError>> {
        Some(match msg {
            Message::ClosingSigned(m) => self.stage_closing_signed(m),
            Message::ClosingComplete(m) => self.stage_closing_complete(m),
            Message::ClosingSig(m) => self.stage_closing_sig(m),
            _ => return None,
        })
    }

    /// Applies a checked closing message: for `closing_signed`, ends the
    /// negotiation if the fee is ours, otherwise records the reply for
    /// [`Channel::stage_closing_sign`]; for `option_simple_close` see
    /// [`crate::simple_close`].
    pub fn apply_closing_verified(
        &mut self,
        verified: Result<VerifiedClosing, ChannelError>,
    ) -> Result<(), ChannelError> {
        let v = match verified {
            Ok(v) => v,
            Err(e @ ChannelError::Close(_)) => return Err(self.fail(e)),
            Err(e) => return Err(e),
        };
        assert_eq!(
            v.staged.stamp,
            self.stamp(),
            "a stage is applied to its own channel before any other input reaches it"
        );
        let VerifiedClosing { staged, index } = v;
        let (tx, check, variant) = staged.candidates.into_iter().nth(index).expect("checked");
        let (fee, answer) = match staged.what {
            VerifyFor::Legacy { fee, answer } => (fee, answer),
            VerifyFor::Simple(s) => return self.apply_simple_verified(s, tx, check.sig),
        };
        self.closing.received = Some(Received {
            fee,
            sig: check.sig,
            variant,
        });
        self.version += 1;
        match answer {
            Answer::Done => {
                let (p, local) = self.closing.sent.expect("Done answers our own fee");
                if self.our_legacy_tx(p.fee).as_ref() == Ok(&tx) {
                    self.finish_closing(tx, local, check.sig);
                } else {
                    // The peer signed another variant: sign that one too.
                    self.closing.pending = Some(p);
                    self.request_persist();
                }
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
            self.closing.sent = None;
            self.closing.received = None;
            self.closing.pending = None;
        }
        self.closing.simple.on_disconnect();
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
                    to.apply_closing_verified(verified).expect("valid");
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
        let p = staged.proposal().expect("closing_signed");
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
