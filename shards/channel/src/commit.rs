//! The commitment dance (BOLT 2 "Committing Updates So Far:
//! `commitment_signed`" and "Completing the Transition to the Updated
//! State: `revoke_and_ack`"), with real BOLT 3 transactions from
//! `lnhub-tx` and the signature work staged for the engine (DESIGN "stage,
//! verify, apply").
//!
//! - Sending: [`Channel::stage_sign`] builds the peer's next commitment and
//!   returns a [`StagedSign`]: the sighashes (the HTLC ones from
//!   [`HtlcSighasher`], which neither builds the HTLC transactions nor
//!   allocates per HTLC) and keys to sign. The engine signs many of them
//!   together (`lnhub_tx::batch::sign_batch`) or calls [`StagedSign::sign`];
//!   [`Channel::apply_signed`] then advances the books and queues the
//!   `commitment_signed` behind a persist.
//! - Receiving: [`Channel::stage_commitment_signed`] builds our next
//!   commitment and returns a [`StagedVerify`] holding every signature
//!   check. Only [`StagedVerify::verify`] or [`verify_batch`] make the
//!   [`Verified`] that [`Channel::apply_commitment_signed`] takes; it
//!   advances the books and queues our `revoke_and_ack` behind a persist.
//! - [`Channel::handle_revoke_and_ack`] checks the revealed secret against
//!   the point we used and the shachain store, then advances the books.
//!
//! Each stage's commitment is built into the one the last applied stage
//! held (the channel's spare), so staging round after round reuses its
//! scripts and vectors instead of allocating two scripts per HTLC output;
//! a stage dropped unapplied only costs the next build its allocations.
//!
//! Not yet staged: per-commitment key derivation and the secret-to-point
//! check of `revoke_and_ack` run inline (a few point multiplications per
//! commitment, shared by all its HTLCs).

use lnhub_tx::batch::{self, SigCheck, SignJob};
use lnhub_tx::keys::{derive_privkey_from_basepoint, per_commitment_point};
use lnhub_tx::shachain::{generate_from_seed, MAX_INDEX};
use lnhub_tx::{
    accounting, build_commitment, build_commitment_into, CommitmentError, CommitmentKeys,
    CommitmentSpec, CommitmentTx, HtlcSighasher, Side,
};
use lnhub_wire::msgs::{CommitmentSigned, RevokeAndAck};
use lnhub_wire::Message;
use secp256k1::ecdsa::Signature;
use secp256k1::{PublicKey, Secp256k1, SecretKey, Signing, Verification};

use crate::channel::Channel;
use crate::effects::Effect;
use crate::error::ChannelError;
use crate::htlc::View;

/// Which state machine, in which state, a stage came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// The channel id (the temporary one during establishment).
    pub(crate) channel_id: lnhub_wire::types::ChannelId,
    /// The state version.
    pub(crate) version: u64,
}

/// The peer's next commitment, built and ready to be signed.
#[derive(Clone, Debug)]
pub struct StagedSign {
    /// The channel (or temporary channel) it was staged from, and that
    /// channel's state version then: applied only to that exact state.
    pub(crate) stamp: Stamp,
    pub(crate) commitment: CommitmentTx,
    pub(crate) jobs: Vec<SignJob>,
}

impl StagedSign {
    /// The signatures to make: the funding signature, then one per HTLC
    /// output in output order.
    pub fn jobs(&self) -> &[SignJob] {
        &self.jobs
    }

    /// The commitment being signed (owned by the peer).
    pub fn commitment(&self) -> &CommitmentTx {
        &self.commitment
    }

    /// Signs every job here (plain RFC 6979), for callers that do not
    /// batch across channels.
    pub fn sign<C: Signing + Sync>(self, secp: &Secp256k1<C>) -> SignedCommitment {
        let mut sigs = Vec::with_capacity(self.jobs.len());
        batch::sign_batch(secp, &self.jobs, &mut sigs);
        SignedCommitment { staged: self, sigs }
    }

    /// Attaches signatures the caller made for [`jobs`](Self::jobs), same
    /// order.
    pub fn with_signatures(self, sigs: Vec<Signature>) -> SignedCommitment {
        assert_eq!(sigs.len(), self.jobs.len(), "one signature per sign job");
        SignedCommitment { staged: self, sigs }
    }
}

/// A [`StagedSign`] with its signatures.
#[derive(Clone, Debug)]
pub struct SignedCommitment {
    pub(crate) staged: StagedSign,
    pub(crate) sigs: Vec<Signature>,
}

/// Our next commitment as the peer's `commitment_signed` claims to sign
/// it, with the checks still to run.
#[derive(Clone, Debug)]
pub struct StagedVerify {
    /// See [`StagedSign`]'s stamp.
    pub(crate) stamp: Stamp,
    pub(crate) commitment: CommitmentTx,
    pub(crate) checks: Vec<SigCheck>,
    pub(crate) signature: Signature,
    pub(crate) htlc_signatures: Vec<Signature>,
    /// Our point of the commitment after the one being signed, for the
    /// `revoke_and_ack` that answers it (computed here so applying does no
    /// curve arithmetic).
    pub(crate) next_point: PublicKey,
}

impl StagedVerify {
    /// The signature checks: the commitment signature, then one per HTLC
    /// output in output order.
    pub fn checks(&self) -> &[SigCheck] {
        &self.checks
    }

    /// Our commitment being signed.
    pub fn commitment(&self) -> &CommitmentTx {
        &self.commitment
    }

    /// Runs the checks; `Err` carries the action for a bad signature.
    pub fn verify<C: Verification + Sync>(
        self,
        secp: &Secp256k1<C>,
    ) -> Result<Verified, ChannelError> {
        match batch::verify_batch(secp, &self.checks) {
            Ok(()) => Ok(Verified(self)),
            Err(e) => Err(bad_signature(&e.failed)),
        }
    }
}

fn bad_signature(failed: &[usize]) -> ChannelError {
    match failed.first() {
        Some(0) => ChannelError::close("commitment_signed: invalid commitment signature"),
        Some(i) => ChannelError::close(format!(
            "commitment_signed: invalid htlc_signature {}",
            i - 1
        )),
        None => ChannelError::close("commitment_signed: invalid signature"),
    }
}

/// Verifies the checks of many staged commitments (of any channels) in
/// one parallel batch; one result per input, same order.
pub fn verify_batch<C: Verification + Sync>(
    secp: &Secp256k1<C>,
    staged: Vec<StagedVerify>,
) -> Vec<Result<Verified, ChannelError>> {
    let all: Vec<SigCheck> = staged
        .iter()
        .flat_map(|s| s.checks.iter().copied())
        .collect();
    let failed = match batch::verify_batch(secp, &all) {
        Ok(()) => Vec::new(),
        Err(e) => e.failed,
    };
    let mut start = 0;
    staged
        .into_iter()
        .map(|s| {
            let end = start + s.checks.len();
            let mine: Vec<usize> = failed
                .iter()
                .filter(|i| (start..end).contains(*i))
                .map(|i| i - start)
                .collect();
            start = end;
            if mine.is_empty() {
                Ok(Verified(s))
            } else {
                Err(bad_signature(&mine))
            }
        })
        .collect()
}

/// A [`StagedVerify`] whose signatures all verified. Only this module
/// makes one.
#[derive(Clone, Debug)]
pub struct Verified(pub(crate) StagedVerify);

/// Our per-commitment secret of commitment `n`.
fn local_secret(seed: &[u8; 32], n: u64) -> [u8; 32] {
    generate_from_seed(seed, MAX_INDEX - n)
}

impl Channel {
    /// This channel and its current state version.
    pub(crate) fn stamp(&self) -> Stamp {
        Stamp {
            channel_id: self.channel_id,
            version: self.version,
        }
    }

    /// Our `per_commitment_point` of commitment `n`.
    pub(crate) fn local_point<C: Signing>(&self, secp: &Secp256k1<C>, n: u64) -> PublicKey {
        per_commitment_point(secp, &local_secret(&self.secrets.commitment_seed, n))
            .expect("a shachain secret is a valid key but with negligible probability")
    }

    /// Builds the commitment of `view` with the owner's point `point`
    /// (into `spare`, reusing its allocations, if given) and checks its
    /// value accounting.
    fn build_view<C: Verification>(
        &mut self,
        secp: &Secp256k1<C>,
        view: View,
        point: &PublicKey,
        spare: Option<CommitmentTx>,
    ) -> Result<CommitmentTx, ChannelError> {
        let owner = view.owner();
        let mut htlcs = core::mem::take(&mut self.scratch);
        let s = self.book.view(view, &mut htlcs);
        let spec = CommitmentSpec {
            commitment_number: s.commitment_number,
            feerate_per_kw: s.feerate_per_kw,
            to_local_msat: s.to_local_msat,
            to_remote_msat: s.to_remote_msat,
            htlcs: &htlcs,
        };
        let keys = match CommitmentKeys::derive_for(secp, &self.params, owner, point, &spec) {
            Ok(keys) => keys,
            Err(e) => {
                self.scratch = htlcs;
                return Err(ChannelError::close(format!(
                    "per_commitment_point unusable for {view:?}: {e}"
                )));
            }
        };
        let built = match spare {
            Some(mut c) => {
                build_commitment_into(&mut c, &self.params, owner, &keys, &spec).map(|()| c)
            }
            None => build_commitment(&self.params, owner, &keys, &spec),
        };
        let result = match built {
            Ok(c) => {
                if let Err(e) = accounting::check_commitment_value(&self.params, &spec, &c) {
                    panic!("commitment {view:?} must account for every satoshi: {e}");
                }
                Ok(c)
            }
            Err(e @ CommitmentError::OutputsExceedFunding) => Err(ChannelError::close(format!(
                "commitment {view:?} cannot be built: {e}"
            ))),
            Err(e) => panic!("the books must always give a buildable {view:?}: {e}"),
        };
        self.scratch = htlcs;
        result
    }

    /// The commitment transaction of `view` (current ones only make sense
    /// once signed), for inspection and tests.
    pub fn commitment_tx<C: Signing + Verification>(
        &mut self,
        secp: &Secp256k1<C>,
        view: View,
    ) -> Result<CommitmentTx, ChannelError> {
        let point = match view {
            View::LocalCurrent => self.local_point(secp, self.book.local_commitment_number()),
            View::LocalNext => self.local_point(secp, self.book.local_commitment_number() + 1),
            View::RemoteCurrent => self.remote_current_point,
            View::RemoteNext => self
                .remote_next_point
                .ok_or_else(|| ChannelError::Ignore("awaiting revoke_and_ack".into()))?,
        };
        self.build_view(secp, view, &point, None)
    }

    /// Stages our `commitment_signed`: `None` if there is nothing to sign
    /// or we still await the peer's `revoke_and_ack` (its next point).
    pub fn stage_sign<C: Signing + Verification>(
        &mut self,
        secp: &Secp256k1<C>,
    ) -> Result<Option<StagedSign>, ChannelError> {
        if !self.can_sign() {
            return Ok(None);
        }
        let point = self.remote_next_point.expect("checked by can_sign");
        let spare = self.spare.take();
        let commitment = self
            .build_view(secp, View::RemoteNext, &point, spare)
            .map_err(|e| self.fail(e))?;
        let mut jobs = Vec::with_capacity(1 + commitment.htlcs().len());
        jobs.push(SignJob {
            msg: commitment.sighash(&self.params),
            key: self.secrets.funding_key,
        });
        if commitment.htlc_indices_in_output_order().next().is_some() {
            let htlc_key = derive_privkey_from_basepoint(
                &self.secrets.htlc_basepoint_secret,
                &self.params.side(Side::Local).pubkeys.htlc_basepoint,
                &point,
            )
            .map_err(|e| self.fail(ChannelError::close(format!("htlc key: {e}"))))?;
            let sighasher = HtlcSighasher::new(&commitment);
            for i in commitment.htlc_indices_in_output_order() {
                jobs.push(SignJob {
                    msg: sighasher
                        .remote_sighash(i)
                        .expect("an HTLC in output order has an output"),
                    key: htlc_key,
                });
            }
        }
        Ok(Some(StagedSign {
            stamp: self.stamp(),
            commitment,
            jobs,
        }))
    }

    /// Applies a signed stage: the peer's commitment advances and our
    /// `commitment_signed` is queued behind a persist.
    pub fn apply_signed(&mut self, signed: SignedCommitment) {
        assert_eq!(
            signed.staged.stamp,
            self.stamp(),
            "a stage is applied to its own channel before any other input reaches it"
        );
        assert_eq!(
            signed.staged.commitment.commitment_number(),
            self.book.remote_commitment_number() + 1,
            "we sign the peer's next commitment"
        );
        self.book.on_send_commitment();
        self.remote_prev_point = Some(self.remote_current_point);
        self.remote_current_point = self
            .remote_next_point
            .take()
            .expect("signing needs the peer's next point");
        self.version += 1;
        self.request_persist();
        let mut sigs = signed.sigs;
        let signature = sigs.remove(0);
        let msg = CommitmentSigned {
            channel_id: self.channel_id,
            signature,
            htlc_signature: sigs,
            funding_txid: None,
            unknown_tlvs: Vec::new(),
        };
        self.last_commitment_signed = Some(msg.clone());
        self.last_commitment_seq = self.take_send_seq();
        self.emit(Effect::Send(Message::CommitmentSigned(msg)));
        self.maybe_reply_shutdown();
        self.spare = Some(signed.staged.commitment);
    }

    /// Stages the peer's `commitment_signed`: builds our next commitment
    /// and the signature checks (BOLT 2 receiver requirements; the
    /// signatures themselves are checked by [`StagedVerify::verify`]).
    pub fn stage_commitment_signed<C: Signing + Verification>(
        &mut self,
        secp: &Secp256k1<C>,
        msg: CommitmentSigned,
    ) -> Result<StagedVerify, ChannelError> {
        self.check_input(&msg.channel_id)?;
        if let Some(txid) = msg.funding_txid {
            let ours = self.params.funding_outpoint().txid;
            if txid.0 != bitcoin::hashes::Hash::to_byte_array(ours) {
                return Err(ChannelError::Ignore(
                    "commitment_signed for another funding transaction".into(),
                ));
            }
        }
        let n = self.book.local_commitment_number() + 1;
        let point = match self.next_local_point {
            Some((cached, point)) if cached == n => point,
            _ => self.local_point(secp, n),
        };
        let next_point = self.local_point(secp, n + 1);
        self.next_local_point = Some((n + 1, next_point));
        let spare = self.spare.take();
        let commitment = self
            .build_view(secp, View::LocalNext, &point, spare)
            .map_err(|e| self.fail(e))?;
        let outputs = commitment.htlc_indices_in_output_order().count();
        if msg.htlc_signature.len() != outputs {
            return Err(self.fail(ChannelError::close(format!(
                "commitment_signed has {} htlc_signatures for {outputs} HTLC outputs",
                msg.htlc_signature.len()
            ))));
        }
        let remote_funding = self.params.side(Side::Remote).pubkeys.funding_pubkey;
        let mut checks = Vec::with_capacity(1 + outputs);
        checks.push(SigCheck {
            msg: commitment.sighash(&self.params),
            sig: msg.signature,
            pubkey: remote_funding,
        });
        if let Some(htlc_keys) = commitment.keys().htlc.filter(|_| outputs > 0) {
            let sighasher = HtlcSighasher::new(&commitment);
            for (i, sig) in commitment
                .htlc_indices_in_output_order()
                .zip(&msg.htlc_signature)
            {
                checks.push(SigCheck {
                    msg: sighasher
                        .remote_sighash(i)
                        .expect("an HTLC in output order has an output"),
                    sig: *sig,
                    pubkey: htlc_keys.remote_htlc_pubkey,
                });
            }
        }
        Ok(StagedVerify {
            stamp: self.stamp(),
            commitment,
            checks,
            signature: msg.signature,
            htlc_signatures: msg.htlc_signature,
            next_point,
        })
    }

    /// Applies the outcome of verifying a staged `commitment_signed`. On
    /// success our commitment advances, the old one is revoked, and our
    /// `revoke_and_ack` is queued behind a persist (with any HTLCs this
    /// made irrevocable). A failed verification fails the channel and
    /// returns its error.
    pub fn apply_commitment_signed(
        &mut self,
        verified: Result<Verified, ChannelError>,
    ) -> Result<(), ChannelError> {
        let v = verified.map_err(|e| self.fail(e))?;
        let staged = v.0;
        assert_eq!(
            staged.stamp,
            self.stamp(),
            "a stage is applied to its own channel before any other input reaches it"
        );
        let revoked = self.book.local_commitment_number();
        assert_eq!(
            staged.commitment.commitment_number(),
            revoked + 1,
            "the peer signs our next commitment"
        );
        let mut events = core::mem::take(&mut self.events);
        self.book.on_recv_commitment(&mut |e| events.push(e));
        self.events = events;
        self.holder_signatures = Some((staged.signature, staged.htlc_signatures));
        self.version += 1;
        self.request_persist();
        self.last_revoke_seq = self.take_send_seq();
        let raa = RevokeAndAck {
            channel_id: self.channel_id,
            per_commitment_secret: local_secret(&self.secrets.commitment_seed, revoked),
            next_per_commitment_point: staged.next_point,
            unknown_tlvs: Vec::new(),
        };
        self.emit(Effect::Send(Message::RevokeAndAck(raa)));
        self.emit_book_events();
        self.spare = Some(staged.commitment);
        Ok(())
    }

    /// Our `revoke_and_ack` revoking our commitment `revoked`.
    pub(crate) fn revoke_and_ack_for<C: Signing>(
        &self,
        secp: &Secp256k1<C>,
        revoked: u64,
    ) -> RevokeAndAck {
        RevokeAndAck {
            channel_id: self.channel_id,
            per_commitment_secret: local_secret(&self.secrets.commitment_seed, revoked),
            next_per_commitment_point: self.local_point(secp, revoked + 2),
            unknown_tlvs: Vec::new(),
        }
    }

    /// Our per-commitment secret of commitment `n`.
    pub(crate) fn local_secret(&self, n: u64) -> [u8; 32] {
        local_secret(&self.secrets.commitment_seed, n)
    }

    /// The peer's `revoke_and_ack` (BOLT 2 receiver requirements).
    pub fn handle_revoke_and_ack<C: Signing>(
        &mut self,
        secp: &Secp256k1<C>,
        msg: &RevokeAndAck,
    ) -> Result<(), ChannelError> {
        self.check_input(&msg.channel_id)?;
        self.check_revoke(secp, msg).map_err(|e| self.fail(e))?;
        let mut events = core::mem::take(&mut self.events);
        self.book.on_recv_revoke(&mut |e| events.push(e));
        self.events = events;
        self.remote_prev_point = None;
        self.remote_next_point = Some(msg.next_per_commitment_point);
        self.last_commitment_signed = None;
        self.version += 1;
        self.request_persist();
        self.emit_book_events();
        Ok(())
    }

    fn check_revoke<C: Signing>(
        &mut self,
        secp: &Secp256k1<C>,
        msg: &RevokeAndAck,
    ) -> Result<(), ChannelError> {
        let expected = self
            .remote_prev_point
            .ok_or_else(|| ChannelError::close("revoke_and_ack without a commitment to revoke"))?;
        let secret = SecretKey::from_slice(&msg.per_commitment_secret)
            .map_err(|_| ChannelError::close("per_commitment_secret is not a valid secret key"))?;
        if PublicKey::from_secret_key(secp, &secret) != expected {
            return Err(ChannelError::close(
                "per_commitment_secret does not match the previous per_commitment_point",
            ));
        }
        let revoked = self.book.remote_commitment_number() - 1;
        self.remote_secrets
            .insert(MAX_INDEX - revoked, msg.per_commitment_secret)
            .map_err(|e| ChannelError::close(format!("per_commitment_secret: {e}")))
    }
}
