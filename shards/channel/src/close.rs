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
//! The fee negotiation once the HTLCs are gone is [`crate::closing`]
//! (legacy `closing_signed`). Left to later work: `option_simple_close`
//! (`closing_complete` / `closing_sig`), and the BOLT 2 ban on further
//! updates once negotiation starts.

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
/// P2WPKH, P2WSH, and with `anysegwit` a witness program of version 1 to
/// 16 (one push of 2 to 40 bytes). `legacy` also admits P2PKH and P2SH,
/// which old nodes send and which we accept from a peer (BOLT 2 rationale:
/// backwards compatibility) but never send.
pub fn is_valid_shutdown_script(script: &Script, anysegwit: bool, legacy: bool) -> bool {
    if legacy && (script.is_p2pkh() || script.is_p2sh()) {
        return true;
    }
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
        if !is_valid_shutdown_script(
            &script,
            self.shutdown_terms.option_shutdown_anysegwit,
            false,
        ) {
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
        if let Some(previous) = &self.shutdown.remote {
            // The retransmission BOLT 2 requires after a reconnection.
            return if *previous == script {
                Ok(())
            } else {
                Err(ChannelError::Warn(
                    "second shutdown with a different scriptpubkey".into(),
                ))
            };
        }
        if !is_valid_shutdown_script(&script, self.shutdown_terms.option_shutdown_anysegwit, true) {
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
            assert_eq!(
                is_valid_shutdown_script(script, *anysegwit, *legacy),
                *valid,
                "{name}"
            );
        }
    }
}
