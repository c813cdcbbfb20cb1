//! Cooperative close with `option_simple_close` (BOLT 2 "Closing
//! Negotiation: `closing_complete` and `closing_sig`", BOLT 3 "Closing
//! Transaction"): each side proposes a closing transaction paying its own
//! fee, the other signs it.
//!
//! Message sequences, once [`Channel::closing_ready`] (both `shutdown`s,
//! no HTLC, nothing outstanding):
//!
//! ```text
//! closer                                   closee
//!   closing_complete(closer script, closee script, fee, locktime, sigs) ->
//!                  <- closing_sig(same fields, the one signature it used)
//! ```
//!
//! Both sides are closers at once (two independent transactions, either
//! may confirm). As closer we stage our `closing_complete` through
//! [`Channel::stage_closing_sign`] once per connection until a
//! `closing_sig` answers it ([`SimpleState::proposed`]); as closee we
//! verify the peer's `closing_complete` ([`Channel::stage_closing_complete`],
//! [`crate::StagedClosingVerify::verify`],
//! [`Channel::apply_closing_verified`]), then sign the same transaction
//! and answer with `closing_sig` ([`Channel::stage_closing_sign`] again).
//! Each finished transaction is reported with [`Effect::ClosingTx`]; the
//! channel keeps answering later `closing_complete`s (a peer may bump its
//! fee or change its script).
//!
//! Which outputs: the side with the smaller balance may leave its own
//! output out; a dust output (Bitcoin Core's relay threshold for its
//! script, [`crate::close::dust_threshold`]) is always left out; an
//! `OP_RETURN` output carries 0 sat. We propose the current commitment
//! feerate times the signed weight, capped at our balance, and do not
//! propose at all when our balance cannot pay it (the peer, with the
//! funds, proposes its own). Our locktime is 0.
//!
//! Errors: a `closing_complete` naming another script for us, an invalid
//! closer script, a fee above the closer's balance, a missing or invalid
//! signature, and a `closing_sig` that does not match what we sent all
//! get a warning and a disconnection (BOLT 2 allows this or failing the
//! channel; the channel survives and the exchange restarts on
//! reconnection, where `shutdown` carries the latest scripts).

use bitcoin::{Amount, ScriptBuf, Transaction};
use lnhub_tx::closing::{simple_closing, CloseOutput};
use lnhub_tx::{witness, Side};
use lnhub_wire::msgs::{ClosingComplete, ClosingSig};
use lnhub_wire::types::{ChannelId, Sat};
use lnhub_wire::Message;
use secp256k1::ecdsa::Signature;

use crate::channel::Channel;
use crate::close::{is_dust, is_valid_shutdown_script};
use crate::closing::{
    dummy_signature, SignFor, StagedClosingSign, StagedClosingVerify, Variant, VerifyFor,
};
use crate::effects::Effect;
use crate::error::ChannelError;
use crate::htlc::View;

/// Which transaction a `closing_complete` / `closing_sig` signature is
/// for (its TLV type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigField {
    /// Type 1 `closer_output_only`.
    CloserOnly = 1,
    /// Type 2 `closee_output_only`.
    CloseeOnly = 2,
    /// Type 3 `closer_and_closee_outputs`.
    Both = 3,
}

impl SigField {
    /// The field of TLV type `t`.
    pub fn from_type(t: u8) -> Option<SigField> {
        match t {
            1 => Some(SigField::CloserOnly),
            2 => Some(SigField::CloseeOnly),
            3 => Some(SigField::Both),
            _ => None,
        }
    }

    fn keeps_closer(self) -> bool {
        self != SigField::CloseeOnly
    }

    fn keeps_closee(self) -> bool {
        self != SigField::CloserOnly
    }
}

/// The fields a `closing_complete` and its `closing_sig` share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseTerms {
    /// `closer_scriptpubkey`.
    pub closer_script: ScriptBuf,
    /// `closee_scriptpubkey`.
    pub closee_script: ScriptBuf,
    /// `fee_satoshis`, paid by the closer.
    pub fee: u64,
    /// `locktime`.
    pub locktime: u32,
}

/// Our `closing_complete` waiting for its `closing_sig`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentComplete {
    /// What it proposed.
    pub terms: CloseTerms,
    /// Our signatures in it, by field.
    pub sigs: Vec<(SigField, Signature)>,
}

/// A verified `closing_complete` of the peer, our `closing_sig` to sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingSig {
    /// What it proposed.
    pub terms: CloseTerms,
    /// The transaction we chose.
    pub field: SigField,
    /// The peer's signature of it.
    pub remote_sig: Signature,
}

/// `option_simple_close` progress.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimpleState {
    /// The peer's latest script, from its last `closing_complete` (`None`:
    /// the one of its `shutdown`).
    pub(crate) remote_script: Option<ScriptBuf>,
    /// Our `closing_complete` waiting for `closing_sig` (dropped by a
    /// disconnection: the exchange restarts).
    pub(crate) sent: Option<SentComplete>,
    /// A `closing_sig` answered our proposal: we do not propose again.
    pub(crate) proposed: bool,
    /// The peer's verified `closing_complete`, to be signed.
    pub(crate) pending: Option<PendingSig>,
}

impl SimpleState {
    /// Our `closing_complete` waiting for `closing_sig`.
    pub fn sent(&self) -> Option<&SentComplete> {
        self.sent.as_ref()
    }

    /// Whether a `closing_sig` answered one of our proposals.
    pub fn proposed(&self) -> bool {
        self.proposed
    }

    /// The exchange restarts on reconnection.
    pub(crate) fn on_disconnect(&mut self) {
        self.sent = None;
        self.pending = None;
    }
}

/// What a staged simple-close signature is for.
#[derive(Clone, Debug)]
pub(crate) enum SimpleWork {
    /// Our `closing_complete`: one signature per field, in order.
    Complete {
        terms: CloseTerms,
        fields: Vec<SigField>,
    },
    /// Our `closing_sig` answering the peer's `closing_complete`.
    Sig(PendingSig),
}

/// What a staged simple-close check is for.
#[derive(Clone, Debug)]
pub(crate) enum SimpleVerify {
    /// The peer's `closing_complete`: sign `field` of `terms` next.
    Complete { terms: CloseTerms, field: SigField },
    /// The peer's `closing_sig` for our `closing_complete`.
    Sig { field: SigField },
}

/// The three optional signatures of a `closing_complete` / `closing_sig`.
fn sig_of(
    field: SigField,
    closer_only: Option<Signature>,
    closee_only: Option<Signature>,
    both: Option<Signature>,
) -> Option<Signature> {
    match field {
        SigField::CloserOnly => closer_only,
        SigField::CloseeOnly => closee_only,
        SigField::Both => both,
    }
}

/// `(closer_output_only, closee_output_only, closer_and_closee_outputs)`
/// carrying `sigs`.
type SigTlvs = (Option<Signature>, Option<Signature>, Option<Signature>);

fn tlvs(sigs: &[(SigField, Signature)]) -> SigTlvs {
    let get = |f: SigField| sigs.iter().find(|(g, _)| *g == f).map(|(_, s)| *s);
    (
        get(SigField::CloserOnly),
        get(SigField::CloseeOnly),
        get(SigField::Both),
    )
}

impl Channel {
    /// Our current output script: that of our `shutdown`.
    fn local_close_script(&self) -> Option<ScriptBuf> {
        self.shutdown.local.as_ref().map(|(s, _)| s.clone())
    }

    /// The peer's latest output script.
    fn remote_close_script(&self) -> Option<ScriptBuf> {
        self.closing
            .simple
            .remote_script
            .clone()
            .or_else(|| self.shutdown.remote.clone())
    }

    /// The `option_simple_close` transaction `closer` proposes with
    /// `terms`, keeping the outputs `field` names.
    fn simple_tx(
        &self,
        closer: Side,
        terms: &CloseTerms,
        field: SigField,
    ) -> Result<Transaction, String> {
        let closer_out = CloseOutput {
            script_pubkey: terms.closer_script.clone(),
            balance_msat: self.balance_msat(closer),
        };
        let closee_out = CloseOutput {
            script_pubkey: terms.closee_script.clone(),
            balance_msat: self.balance_msat(closer.other()),
        };
        simple_closing(
            &self.params,
            field.keeps_closer().then_some(&closer_out),
            field.keeps_closee().then_some(&closee_out),
            Amount::from_sat(terms.fee),
            terms.locktime,
        )
        .map_err(|e| format!("closing transaction with fee {}: {e}", terms.fee))
    }

    /// Our `closing_sig` if one is owed, else our `closing_complete` if we
    /// may propose.
    pub(crate) fn stage_simple_sign(&mut self) -> Result<Option<StagedClosingSign>, ChannelError> {
        if !self.closing_link_up() || !self.closing_ready() {
            return Ok(None);
        }
        if let Some(p) = self.closing.simple.pending.clone() {
            let tx = self
                .simple_tx(Side::Remote, &p.terms, p.field)
                .map_err(ChannelError::Warn)?;
            return Ok(Some(StagedClosingSign {
                stamp: self.stamp(),
                jobs: vec![self.funding_job(&tx)],
                txs: vec![tx],
                what: SignFor::Simple(SimpleWork::Sig(p)),
            }));
        }
        let s = &self.closing.simple;
        if s.sent.is_some() || s.proposed {
            return Ok(None);
        }
        let Some((terms, fields)) = self.our_close_terms()? else {
            return Ok(None);
        };
        let mut txs = Vec::with_capacity(fields.len());
        for f in &fields {
            txs.push(
                self.simple_tx(Side::Local, &terms, *f)
                    .map_err(ChannelError::Warn)?,
            );
        }
        Ok(Some(StagedClosingSign {
            stamp: self.stamp(),
            jobs: txs.iter().map(|tx| self.funding_job(tx)).collect(),
            txs,
            what: SignFor::Simple(SimpleWork::Complete { terms, fields }),
        }))
    }

    /// What we propose as closer and which transactions we sign (BOLT 2
    /// sender requirements), or `None` when our balance cannot pay the fee
    /// or no output would be above dust.
    fn our_close_terms(&self) -> Result<Option<(CloseTerms, Vec<SigField>)>, ChannelError> {
        let (Some(ours), Some(theirs)) = (self.local_close_script(), self.remote_close_script())
        else {
            return Ok(None);
        };
        let mut terms = CloseTerms {
            closer_script: ours,
            closee_script: theirs,
            fee: 0,
            locktime: 0,
        };
        let mut tx = self
            .simple_tx(Side::Local, &terms, SigField::Both)
            .map_err(ChannelError::Warn)?;
        let dummy = dummy_signature();
        tx.input[0].witness = witness::funding(&self.params, &dummy, &dummy);
        let weight = tx.weight().to_wu() + 4;
        let feerate = u64::from(self.book.feerate(View::LocalCurrent));
        let estimate = feerate * weight / 1000;
        let (local, remote) = (
            self.balance_msat(Side::Local),
            self.balance_msat(Side::Remote),
        );
        let balance = local / 1000;
        if balance < estimate {
            return Ok(None);
        }
        terms.fee = estimate;
        let closer_value = if terms.closer_script.is_op_return() {
            0
        } else {
            balance - estimate
        };
        let closer_dust = is_dust(&terms.closer_script, closer_value);
        let closee_dust = is_dust(&terms.closee_script, remote / 1000);
        let fields = if local < remote {
            // The lesser side may (and with a dust output must) leave its
            // own output out; it never keeps only its own.
            if closer_dust {
                vec![SigField::CloseeOnly]
            } else {
                vec![SigField::Both]
            }
        } else if closee_dust {
            vec![SigField::CloserOnly]
        } else {
            vec![SigField::CloserOnly, SigField::Both]
        };
        let all_dust = match fields[..] {
            [SigField::CloseeOnly] => closee_dust,
            [SigField::CloserOnly] => closer_dust,
            _ => false,
        };
        Ok((!all_dust).then_some((terms, fields)))
    }

    /// Applies our signed `closing_complete` or `closing_sig`.
    pub(crate) fn apply_simple_sign(&mut self, staged: StagedClosingSign, sigs: Vec<Signature>) {
        let SignFor::Simple(work) = staged.what else {
            unreachable!("legacy stages are applied by apply_closing_sign")
        };
        self.version += 1;
        self.request_persist();
        match work {
            SimpleWork::Complete { terms, fields } => {
                let sigs: Vec<_> = fields.into_iter().zip(sigs).collect();
                let (closer_only, closee_only, both) = tlvs(&sigs);
                self.emit(Effect::Send(Message::ClosingComplete(ClosingComplete {
                    channel_id: self.channel_id,
                    closer_scriptpubkey: terms.closer_script.to_bytes(),
                    closee_scriptpubkey: terms.closee_script.to_bytes(),
                    fee_satoshis: Sat(terms.fee),
                    locktime: terms.locktime,
                    closer_output_only: closer_only,
                    closee_output_only: closee_only,
                    closer_and_closee_outputs: both,
                    unknown_tlvs: Vec::new(),
                })));
                self.closing.simple.sent = Some(SentComplete { terms, sigs });
            }
            SimpleWork::Sig(p) => {
                let sig = sigs[0];
                let (closer_only, closee_only, both) = tlvs(&[(p.field, sig)]);
                self.closing.simple.pending = None;
                self.emit(Effect::Send(Message::ClosingSig(ClosingSig {
                    channel_id: self.channel_id,
                    closer_scriptpubkey: p.terms.closer_script.to_bytes(),
                    closee_scriptpubkey: p.terms.closee_script.to_bytes(),
                    fee_satoshis: Sat(p.terms.fee),
                    locktime: p.terms.locktime,
                    closer_output_only: closer_only,
                    closee_output_only: closee_only,
                    closer_and_closee_outputs: both,
                    unknown_tlvs: Vec::new(),
                })));
                let tx = staged.txs.into_iter().next().expect("one transaction");
                self.finish_closing(tx, sig, p.remote_sig);
            }
        }
    }

    /// Refuses a simple-close message when the protocol does not allow it
    /// now.
    fn check_simple_input(&self, channel_id: &ChannelId) -> Result<(), ChannelError> {
        self.check_input_when(channel_id, true)?;
        if !self.shutdown_terms.option_simple_close {
            return Err(ChannelError::Warn(
                "closing_complete/closing_sig without option_simple_close".into(),
            ));
        }
        if !self.closing_ready() {
            return Err(ChannelError::Warn(
                "closing message before shutdown is complete and the channel is empty".into(),
            ));
        }
        Ok(())
    }

    /// The peer's `closing_complete` (BOLT 2 closee requirements): picks
    /// the transaction to sign and stages the check of the peer's
    /// signature on it.
    pub fn stage_closing_complete(
        &mut self,
        msg: &ClosingComplete,
    ) -> Result<StagedClosingVerify, ChannelError> {
        self.check_simple_input(&msg.channel_id)?;
        let fee = msg.fee_satoshis.0;
        if fee > self.balance_msat(Side::Remote) / 1000 {
            return Err(ChannelError::Warn(format!(
                "closing_complete fee {fee} exceeds the closer's balance"
            )));
        }
        let closee_script = ScriptBuf::from_bytes(msg.closee_scriptpubkey.clone());
        if Some(&closee_script) != self.local_close_script().as_ref() {
            return Err(ChannelError::Warn(
                "closing_complete closee_scriptpubkey is not our latest script".into(),
            ));
        }
        let closer_script = ScriptBuf::from_bytes(msg.closer_scriptpubkey.clone());
        if !is_valid_shutdown_script(&closer_script, &self.shutdown_terms, true) {
            return Err(ChannelError::Warn(
                "closing_complete closer_scriptpubkey is not an allowed form".into(),
            ));
        }
        if let Some(upfront) = &self.shutdown_terms.remote_upfront_shutdown_script {
            if *upfront != closer_script {
                return Err(ChannelError::Warn(
                    "closing_complete closer_scriptpubkey differs from upfront_shutdown_script"
                        .into(),
                ));
            }
        }
        let local_value = if closee_script.is_op_return() {
            0
        } else {
            self.balance_msat(Side::Local) / 1000
        };
        let both = msg.closer_and_closee_outputs;
        let field = if is_dust(&closee_script, local_value) {
            SigField::CloserOnly
        } else if both.is_some() {
            SigField::Both
        } else {
            SigField::CloseeOnly
        };
        let sig = sig_of(field, msg.closer_output_only, msg.closee_output_only, both).ok_or_else(
            || {
                ChannelError::Warn(format!(
                    "closing_complete lacks the signature we must use ({field:?})"
                ))
            },
        )?;
        let terms = CloseTerms {
            closer_script,
            closee_script,
            fee,
            locktime: msg.locktime,
        };
        let tx = self
            .simple_tx(Side::Remote, &terms, field)
            .map_err(ChannelError::Warn)?;
        let check = self.funding_check(&tx, sig);
        Ok(StagedClosingVerify {
            stamp: self.stamp(),
            what: VerifyFor::Simple(SimpleVerify::Complete { terms, field }),
            candidates: vec![(tx, check, Variant::Ours)],
        })
    }

    /// The peer's `closing_sig` (BOLT 2 requirements for its receiver).
    pub fn stage_closing_sig(
        &mut self,
        msg: &ClosingSig,
    ) -> Result<StagedClosingVerify, ChannelError> {
        self.check_simple_input(&msg.channel_id)?;
        let Some(sent) = &self.closing.simple.sent else {
            return Err(ChannelError::Warn(
                "closing_sig without a closing_complete of ours".into(),
            ));
        };
        let t = &sent.terms;
        if msg.closer_scriptpubkey != t.closer_script.as_bytes()
            || msg.closee_scriptpubkey != t.closee_script.as_bytes()
            || msg.fee_satoshis.0 != t.fee
            || msg.locktime != t.locktime
        {
            return Err(ChannelError::Warn(
                "closing_sig does not match our closing_complete".into(),
            ));
        }
        let present: Vec<(SigField, Signature)> = [
            (SigField::CloserOnly, msg.closer_output_only),
            (SigField::CloseeOnly, msg.closee_output_only),
            (SigField::Both, msg.closer_and_closee_outputs),
        ]
        .into_iter()
        .filter_map(|(f, s)| s.map(|s| (f, s)))
        .collect();
        let [(field, sig)] = present[..] else {
            return Err(ChannelError::Warn(format!(
                "closing_sig carries {} signatures, not one",
                present.len()
            )));
        };
        if !sent.sigs.iter().any(|(f, _)| *f == field) {
            return Err(ChannelError::Warn(format!(
                "closing_sig signs {field:?}, which our closing_complete did not offer"
            )));
        }
        let terms = t.clone();
        let tx = self
            .simple_tx(Side::Local, &terms, field)
            .map_err(ChannelError::Warn)?;
        let check = self.funding_check(&tx, sig);
        Ok(StagedClosingVerify {
            stamp: self.stamp(),
            what: VerifyFor::Simple(SimpleVerify::Sig { field }),
            candidates: vec![(tx, check, Variant::Ours)],
        })
    }

    /// Applies a verified `closing_complete` (our `closing_sig` is now
    /// owed) or `closing_sig` (our transaction is complete).
    pub(crate) fn apply_simple_verified(
        &mut self,
        what: SimpleVerify,
        tx: Transaction,
        remote_sig: Signature,
    ) -> Result<(), ChannelError> {
        self.version += 1;
        match what {
            SimpleVerify::Complete { terms, field } => {
                // BOLT 2: "MUST use `closer_scriptpubkey` for its own future
                // `closing_complete` messages".
                self.closing.simple.remote_script = Some(terms.closer_script.clone());
                self.closing.simple.pending = Some(PendingSig {
                    terms,
                    field,
                    remote_sig,
                });
            }
            SimpleVerify::Sig { field } => {
                let sent = self
                    .closing
                    .simple
                    .sent
                    .take()
                    .expect("a closing_sig is staged against our closing_complete");
                let (_, local) = *sent
                    .sigs
                    .iter()
                    .find(|(f, _)| *f == field)
                    .expect("checked at staging");
                self.closing.simple.proposed = true;
                self.finish_closing(tx, local, remote_sig);
            }
        }
        Ok(())
    }
}
