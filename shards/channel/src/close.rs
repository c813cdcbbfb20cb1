//! Cooperative close, first phase (BOLT 2 "Channel Close", "Closing
//! Initiation: `shutdown`"): [`Channel::send_shutdown`] and
//! [`Channel::handle_shutdown`], the script forms both sides may use, and
//! the freeze on new HTLCs that follows a `shutdown`.
//!
//! - Either side starts with `shutdown` and its `scriptpubkey`. From then on
//!   no new `update_add_htlc` is sent or accepted; existing HTLCs are
//!   still fulfilled or failed (and `update_fee` still works) so the
//!   channel can drain.
//! - We send `shutdown` only when no update of ours (or acknowledgement of
//!   the peer's) waits to be signed into the peer's commitment
//!   ([`crate::SendError::PendingUpdates`] otherwise); we refuse the peer's
//!   `shutdown` if it still owes us such a signature.
//! - On the peer's `shutdown` we reply with ours as soon as nothing is
//!   pending for the peer: at once if we committed an
//!   `upfront_shutdown_script` ([`ShutdownTerms`]), otherwise the caller
//!   picks a script and calls [`Channel::send_shutdown`] when
//!   [`Channel::needs_shutdown_reply`] says so.
//! - Our `shutdown` is durable before it leaves (an [`crate::Effect::Persist`]
//!   gates it) and is retransmitted after every `channel_reestablish`
//!   ([`crate::reestablish`], in send-sequence order).
//!
//! - Once a `shutdown` is out and the channel is empty with nothing
//!   outstanding, no update may be sent or accepted any more
//!   ([`Channel::updates_frozen`]): we refuse to send an `update_fee` then
//!   ([`crate::SendError::UpdatesFrozen`]). A peer's `update_fee` is still
//!   taken: our view can be frozen while the peer's is not (it may not
//!   have our last `revoke_and_ack` yet), and the update only delays
//!   [`Channel::closing_ready`] until it is committed.
//!
//! The fee negotiation once the HTLCs are gone is [`crate::closing`]
//! (legacy `closing_signed`) or [`crate::simple_close`]
//! (`option_simple_close`: `closing_complete` / `closing_sig`).

use bitcoin::{Script, ScriptBuf};
use lnhub_tx::Side;
use lnhub_wire::msgs::Shutdown;
use lnhub_wire::Message;

use crate::channel::Channel;
use crate::effects::Effect;
use crate::error::{ChannelError, SendError};
use crate::htlc::UpdateState;

/// Longest witness program BOLT 2 allows in a future-version `shutdown`
/// script (BIP 141's limit).
const MAX_WITNESS_PROGRAM_LEN: usize = 40;

/// Shortest witness program BIP 141 allows.
const MIN_WITNESS_PROGRAM_LEN: usize = 2;

/// What was agreed about closing when the channel was opened; fixed for
/// the channel's life.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShutdownTerms {
    /// Both `init` messages advertised `option_shutdown_anysegwit`: segwit
    /// versions 1 to 16 are valid `shutdown` scripts. Default `false`
    /// (lnhub does not advertise it), which accepts only v0 programs and
    /// the legacy forms from the peer.
    pub option_shutdown_anysegwit: bool,
    /// The non-empty `upfront_shutdown_script` we sent in `open_channel` /
    /// `accept_channel`: our `shutdown` must carry exactly it, and we reply
    /// with it on our own. Default `None` (lnhub sends it empty).
    pub local_upfront_shutdown_script: Option<ScriptBuf>,
    /// The peer's non-empty `upfront_shutdown_script`, when both sides
    /// advertised `option_upfront_shutdown_script`: its `shutdown` must
    /// carry exactly it. Default `None`.
    pub remote_upfront_shutdown_script: Option<ScriptBuf>,
    /// Both `init` messages advertised `option_simple_close`: the fee
    /// negotiation is `closing_complete` / `closing_sig` ([`crate::simple_close`])
    /// instead of `closing_signed`, and `OP_RETURN` scripts are valid.
    /// Default `false`.
    pub option_simple_close: bool,
}

/// How far the `shutdown` exchange has got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShutdownState {
    /// Our `shutdown`: its script and the send sequence number that orders
    /// its retransmission among our other messages.
    pub(crate) local: Option<(ScriptBuf, u64)>,
    /// The script of the peer's `shutdown`.
    pub(crate) remote: Option<ScriptBuf>,
}

impl ShutdownState {
    /// Our script, once we sent `shutdown`.
    pub fn local_script(&self) -> Option<&Script> {
        self.local.as_ref().map(|(s, _)| s.as_script())
    }

    /// The peer's script, once it sent `shutdown`.
    pub fn remote_script(&self) -> Option<&Script> {
        self.remote.as_deref()
    }

    /// Either side sent `shutdown`.
    pub fn started(&self) -> bool {
        self.local.is_some() || self.remote.is_some()
    }
}

/// Whether `script` is a `scriptpubkey` BOLT 2 allows in `shutdown`:
/// P2WPKH, P2WSH, with `anysegwit` a witness program of version 1 to 16
/// (one push of 2 to 40 bytes), and with `option_simple_close` an
/// `OP_RETURN` with a single push of 6 to 80 bytes. `legacy` also admits
/// P2PKH and P2SH, which old nodes send and which we accept from a peer
/// (BOLT 2 rationale: backwards compatibility) but never send.
pub fn is_valid_shutdown_script(script: &Script, terms: &ShutdownTerms, legacy: bool) -> bool {
    if legacy && (script.is_p2pkh() || script.is_p2sh()) {
        return true;
    }
    if terms.option_simple_close && is_op_return_form(script) {
        return true;
    }
    let anysegwit = terms.option_shutdown_anysegwit;
    match script.as_bytes() {
        [0x00, 20, program @ ..] => program.len() == 20,
        [0x00, 32, program @ ..] => program.len() == 32,
        // OP_1 (0x51) to OP_16 (0x60), then a single direct push.
        [version, len, program @ ..] if anysegwit && (0x51..=0x60).contains(version) => {
            let len = usize::from(*len);
            (MIN_WITNESS_PROGRAM_LEN..=MAX_WITNESS_PROGRAM_LEN).contains(&len)
                && program.len() == len
        }
        _ => false,
    }
}

/// `OP_RETURN` followed by one push of 6 to 80 bytes: a direct push of 6
/// to 75, or `OP_PUSHDATA1` with 76 to 80 (BOLT 2 `shutdown`, form 4).
fn is_op_return_form(script: &Script) -> bool {
    match script.as_bytes() {
        [0x6a, 0x4c, len, data @ ..] => (76..=80).contains(len) && data.len() == usize::from(*len),
        [0x6a, len, data @ ..] => (6..=75).contains(len) && data.len() == usize::from(*len),
        _ => false,
    }
}

/// The Bitcoin Core dust threshold of an output paying `script` (BOLT 3
/// "Dust Limits"): what an output must carry to relay. `OP_RETURN` is never
/// dust; unknown forms get the largest threshold.
pub fn dust_threshold(script: &Script) -> u64 {
    let b = script.as_bytes();
    if b.first() == Some(&0x6a) {
        0
    } else if script.is_p2pkh() {
        546
    } else if script.is_p2sh() {
        540
    } else if script.is_p2wpkh() {
        294
    } else if script.is_p2wsh() {
        330
    } else if script.is_witness_program() {
        354
    } else {
        546
    }
}

/// `value` sat paid to `script` would not relay (below its
/// [`dust_threshold`]; never for `OP_RETURN`, whose threshold is 0).
pub(crate) fn is_dust(script: &Script, value: u64) -> bool {
    value < dust_threshold(script)
}

impl Channel {
    /// The `shutdown` exchange so far.
    pub fn shutdown_state(&self) -> &ShutdownState {
        &self.shutdown
    }

    /// What was agreed about closing at establishment.
    pub fn shutdown_terms(&self) -> &ShutdownTerms {
        &self.shutdown_terms
    }

    /// Either side sent `shutdown`: no new HTLCs in either direction.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.started()
    }

    /// BOLT 2: once a `shutdown` was sent, no HTLC remains in either
    /// commitment and no update, signature or revocation is outstanding,
    /// no side may send any update (in particular `update_fee`): the fee
    /// negotiation may start at any moment and must see both commitments
    /// final.
    pub fn updates_frozen(&self) -> bool {
        self.shutdown.started()
            && self.book.htlcs().is_empty()
            && self.book.fee_updates().is_empty()
            && !self.awaiting_revoke()
            && !self.book.has_changes_for_remote()
    }

    /// The peer sent `shutdown` and we have not replied: BOLT 2 requires
    /// our `shutdown` once nothing is pending for the peer. Call
    /// [`Channel::send_shutdown`] (after signing, if
    /// [`Channel::can_sign`]). Never true when we committed an upfront
    /// script: we then reply on our own.
    pub fn needs_shutdown_reply(&self) -> bool {
        self.shutdown.remote.is_some() && self.shutdown.local.is_none()
    }

    /// Starts (or answers) the cooperative close: queues our `shutdown`
    /// paying our funds to `script`, behind a persist. Refused, with
    /// nothing sent, if the channel is not operational, we already sent
    /// one, the script is not an allowed form (or not the upfront script
    /// we committed), or updates still wait to be signed into the peer's
    /// commitment (sign first).
    pub fn send_shutdown(&mut self, script: ScriptBuf) -> Result<(), SendError> {
        if !self.is_operational() {
            return Err(SendError::NotOperational);
        }
        if self.shutdown.local.is_some() {
            return Err(SendError::ShutdownAlreadySent);
        }
        if let Some(upfront) = &self.shutdown_terms.local_upfront_shutdown_script {
            if *upfront != script {
                return Err(SendError::InvalidShutdownScript);
            }
        }
        if !is_valid_shutdown_script(&script, &self.shutdown_terms, false) {
            return Err(SendError::InvalidShutdownScript);
        }
        if self.book.has_changes_for_remote() {
            return Err(SendError::PendingUpdates);
        }
        self.queue_shutdown(script);
        Ok(())
    }

    /// Records and queues our `shutdown` (checks done by the caller).
    fn queue_shutdown(&mut self, script: ScriptBuf) {
        let seq = self.take_send_seq();
        let msg = self.shutdown_message(&script);
        self.shutdown.local = Some((script, seq));
        self.version += 1;
        self.request_persist();
        self.emit(Effect::Send(Message::Shutdown(msg)));
    }

    /// Our `shutdown` message for `script`.
    pub(crate) fn shutdown_message(&self, script: &Script) -> Shutdown {
        Shutdown {
            channel_id: self.channel_id,
            scriptpubkey: script.to_bytes(),
            unknown_tlvs: Vec::new(),
        }
    }

    /// Replies to the peer's `shutdown` with our committed upfront script
    /// if it is due and nothing is pending for the peer; called after the
    /// peer's `shutdown` and after each of our `commitment_signed`.
    pub(crate) fn maybe_reply_shutdown(&mut self) {
        if !self.needs_shutdown_reply() || self.book.has_changes_for_remote() {
            return;
        }
        if let Some(script) = self.shutdown_terms.local_upfront_shutdown_script.clone() {
            self.queue_shutdown(script);
        }
    }

    /// The peer's `shutdown` (BOLT 2 receiver requirements).
    pub fn handle_shutdown(&mut self, msg: &Shutdown) -> Result<(), ChannelError> {
        self.check_input(&msg.channel_id)?;
        let script = ScriptBuf::from_bytes(msg.scriptpubkey.clone());
        let valid = is_valid_shutdown_script(&script, &self.shutdown_terms, true);
        if let Some(previous) = &self.shutdown.remote {
            // The retransmission BOLT 2 requires after a reconnection. With
            // `option_simple_close` it carries the peer's latest script,
            // which a `closing_complete` may have changed.
            if *previous == script {
                return Ok(());
            }
            if self.shutdown_terms.option_simple_close
                && valid
                && self.shutdown_terms.remote_upfront_shutdown_script.is_none()
            {
                self.shutdown.remote = Some(script);
                self.closing.simple.remote_script = None;
                self.version += 1;
                self.request_persist();
                return Ok(());
            }
            return Err(ChannelError::Warn(
                "second shutdown with a different scriptpubkey".into(),
            ));
        }
        if !valid {
            return Err(ChannelError::Warn(
                "shutdown scriptpubkey is not an allowed form".into(),
            ));
        }
        if let Some(upfront) = &self.shutdown_terms.remote_upfront_shutdown_script {
            if *upfront != script {
                return Err(ChannelError::Warn(
                    "shutdown scriptpubkey differs from upfront_shutdown_script".into(),
                ));
            }
        }
        if self.peer_owes_signature() {
            return Err(ChannelError::Warn(
                "shutdown while updates are pending on our commitment".into(),
            ));
        }
        self.shutdown.remote = Some(script);
        self.version += 1;
        self.request_persist();
        self.maybe_reply_shutdown();
        Ok(())
    }

    /// Whether an update waits for the peer's `commitment_signed` to reach
    /// our commitment: one of the peer's not yet signed, or one of ours the
    /// peer acknowledged but has not yet signed for us (the mirror of
    /// [`crate::book::Book::has_changes_for_remote`]).
    fn peer_owes_signature(&self) -> bool {
        let pending = |proposer: Side, s: UpdateState| match proposer {
            Side::Remote => s == UpdateState::Announced,
            Side::Local => s == UpdateState::ReceiverRevoked,
        };
        self.book.htlcs().iter().any(|h| {
            pending(h.offerer, h.add_state)
                || h.removal
                    .as_ref()
                    .is_some_and(|r| pending(h.offerer.other(), r.state))
        }) || self
            .book
            .fee_updates()
            .iter()
            .any(|f| pending(self.book.funder(), f.state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(bytes: &[u8]) -> ScriptBuf {
        ScriptBuf::from_bytes(bytes.to_vec())
    }

    fn push(version: u8, len: usize) -> ScriptBuf {
        let mut v = vec![version, len as u8];
        v.extend(std::iter::repeat_n(7, len));
        s(&v)
    }

    /// BOLT 2 `shutdown`: "MUST set `scriptpubkey` in one of the following
    /// forms", and the receiver's "if the `scriptpubkey` is not in one of
    /// the above forms".
    #[test]
    fn shutdown_script_forms() {
        let p2pkh = {
            let mut v = vec![0x76, 0xa9, 20];
            v.extend([1; 20]);
            v.extend([0x88, 0xac]);
            s(&v)
        };
        let p2sh = {
            let mut v = vec![0xa9, 20];
            v.extend([1; 20]);
            v.push(0x87);
            s(&v)
        };
        let cases: &[(&str, ScriptBuf, bool, bool, bool)] = &[
            // name, script, anysegwit, legacy, valid
            ("p2wpkh", push(0x00, 20), false, false, true),
            ("p2wsh", push(0x00, 32), false, false, true),
            ("v0 of 21 bytes", push(0x00, 21), true, true, false),
            (
                "v0 truncated",
                s(&push(0x00, 20).as_bytes()[..21]),
                false,
                true,
                false,
            ),
            ("p2tr without anysegwit", push(0x51, 32), false, true, false),
            ("p2tr with anysegwit", push(0x51, 32), true, false, true),
            (
                "v16 of 40 with anysegwit",
                push(0x60, 40),
                true,
                false,
                true,
            ),
            (
                "v16 of 41 with anysegwit",
                push(0x60, 41),
                true,
                false,
                false,
            ),
            ("v1 of 1 with anysegwit", push(0x51, 1), true, false, false),
            (
                "OP_PUSHDATA1 program",
                s(&[0x51, 0x4c, 2, 1, 1]),
                true,
                false,
                false,
            ),
            ("p2pkh from the peer", p2pkh.clone(), false, true, true),
            ("p2pkh from us", p2pkh, true, false, false),
            ("p2sh from the peer", p2sh.clone(), false, true, true),
            ("p2sh from us", p2sh, true, false, false),
            ("empty", s(&[]), true, true, false),
            (
                "OP_RETURN",
                s(&[0x6a, 6, 1, 2, 3, 4, 5, 6]),
                true,
                true,
                false,
            ),
        ];
        for (name, script, anysegwit, legacy, valid) in cases {
            let terms = ShutdownTerms {
                option_shutdown_anysegwit: *anysegwit,
                ..ShutdownTerms::default()
            };
            assert_eq!(
                is_valid_shutdown_script(script, &terms, *legacy),
                *valid,
                "{name}"
            );
        }
    }

    /// BOLT 2 `shutdown` form 4, only with `option_simple_close`:
    /// `OP_RETURN` and one push of 6 to 75 bytes, or `OP_PUSHDATA1` of 76
    /// to 80.
    #[test]
    fn op_return_forms_need_simple_close() {
        let op_return = |prefix: &[u8], len: usize| {
            let mut v = prefix.to_vec();
            v.extend(std::iter::repeat_n(9, len));
            s(&v)
        };
        let simple = ShutdownTerms {
            option_simple_close: true,
            option_shutdown_anysegwit: true,
            ..ShutdownTerms::default()
        };
        let cases: &[(&str, ScriptBuf, bool)] = &[
            ("push 6", op_return(&[0x6a, 6], 6), true),
            ("push 75", op_return(&[0x6a, 75], 75), true),
            ("push 5", op_return(&[0x6a, 5], 5), false),
            ("push 6 short", op_return(&[0x6a, 6], 5), false),
            ("pushdata1 76", op_return(&[0x6a, 0x4c, 76], 76), true),
            ("pushdata1 80", op_return(&[0x6a, 0x4c, 80], 80), true),
            ("pushdata1 81", op_return(&[0x6a, 0x4c, 81], 81), false),
            ("pushdata1 75", op_return(&[0x6a, 0x4c, 75], 75), false),
            (
                "two pushes",
                op_return(&[0x6a, 6, 1, 2, 3, 4, 5, 6, 1], 1),
                false,
            ),
            ("bare OP_RETURN", s(&[0x6a]), false),
        ];
        for (name, script, valid) in cases {
            assert_eq!(
                is_valid_shutdown_script(script, &simple, false),
                *valid,
                "{name}"
            );
            assert!(
                !is_valid_shutdown_script(script, &ShutdownTerms::default(), true),
                "{name} without option_simple_close"
            );
        }
        assert_eq!(dust_threshold(&op_return(&[0x6a, 6], 6)), 0);
        assert_eq!(dust_threshold(&push(0x00, 20)), 294);
        assert_eq!(dust_threshold(&push(0x00, 32)), 330);
        assert_eq!(dust_threshold(&push(0x51, 32)), 354);
    }
}
