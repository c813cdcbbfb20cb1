//! Bounded label values: BOLT 4 failure codes and BOLT message types by name. Anything else a
//! peer could send maps to one catch-all value, so no input can grow the series count.

/// BOLT 4 failure codes and their spec names.
pub const FAILURE_CODES: &[(u16, &str)] = &[
    (0x4001, "invalid_realm"),
    (0x2002, "temporary_node_failure"),
    (0x6002, "permanent_node_failure"),
    (0x6003, "required_node_feature_missing"),
    (0xC004, "invalid_onion_version"),
    (0xC005, "invalid_onion_hmac"),
    (0xC006, "invalid_onion_key"),
    (0x1007, "temporary_channel_failure"),
    (0x4008, "permanent_channel_failure"),
    (0x4009, "required_channel_feature_missing"),
    (0x400A, "unknown_next_peer"),
    (0x100B, "amount_below_minimum"),
    (0x100C, "fee_insufficient"),
    (0x100D, "incorrect_cltv_expiry"),
    (0x100E, "expiry_too_soon"),
    (0x400F, "incorrect_or_unknown_payment_details"),
    (0x0012, "final_incorrect_cltv_expiry"),
    (0x0013, "final_incorrect_htlc_amount"),
    (0x1014, "channel_disabled"),
    (0x0015, "expiry_too_far"),
    (0x4016, "invalid_onion_payload"),
    (0x0017, "mpp_timeout"),
    (0xC018, "invalid_onion_blinding"),
];

/// The `code` label of an unknown or absent failure code.
pub const UNKNOWN_CODE: &str = "unknown";

/// The label value of a failure code: its BOLT 4 name, or [`UNKNOWN_CODE`].
pub fn failure_code(code: Option<u16>) -> &'static str {
    code.and_then(|c| FAILURE_CODES.iter().find(|(k, _)| *k == c))
        .map_or(UNKNOWN_CODE, |(_, name)| name)
}

/// The index of a failure code in [`FAILURE_CODES`], or `FAILURE_CODES.len()` for any other:
/// counters per code are arrays of `FAILURE_CODES.len() + 1`.
pub fn failure_index(code: u16) -> usize {
    FAILURE_CODES
        .iter()
        .position(|(k, _)| *k == code)
        .unwrap_or(FAILURE_CODES.len())
}

/// The label of a [`failure_index`].
pub fn failure_index_label(index: usize) -> &'static str {
    FAILURE_CODES.get(index).map_or(UNKNOWN_CODE, |(_, n)| n)
}

/// Slots of a per-failure-code counter array.
pub const FAILURE_SLOTS: usize = FAILURE_CODES.len() + 1;

/// BOLT message types (BOLT 1, 2, 7) and their spec names.
pub const MESSAGE_TYPES: &[(u16, &str)] = &[
    (1, "warning"),
    (2, "stfu"),
    (16, "init"),
    (17, "error"),
    (18, "ping"),
    (19, "pong"),
    (32, "open_channel"),
    (33, "accept_channel"),
    (34, "funding_created"),
    (35, "funding_signed"),
    (36, "channel_ready"),
    (38, "shutdown"),
    (39, "closing_signed"),
    (40, "closing_complete"),
    (41, "closing_sig"),
    (128, "update_add_htlc"),
    (130, "update_fulfill_htlc"),
    (131, "update_fail_htlc"),
    (132, "commitment_signed"),
    (133, "revoke_and_ack"),
    (134, "update_fee"),
    (135, "update_fail_malformed_htlc"),
    (136, "channel_reestablish"),
    (256, "channel_announcement"),
    (257, "node_announcement"),
    (258, "channel_update"),
    (259, "announcement_signatures"),
    (261, "query_short_channel_ids"),
    (262, "reply_short_channel_ids_end"),
    (263, "query_channel_range"),
    (264, "reply_channel_range"),
    (265, "gossip_timestamp_filter"),
];

/// Slots of a per-message-type counter array: the known types, then `other`.
pub const MESSAGE_SLOTS: usize = MESSAGE_TYPES.len() + 1;

/// The slot of a message type in a per-type counter array.
pub fn message_index(msg_type: u16) -> usize {
    MESSAGE_TYPES
        .iter()
        .position(|(t, _)| *t == msg_type)
        .unwrap_or(MESSAGE_TYPES.len())
}

/// The `type` label of a slot: the message's name, or `other`.
pub fn message_label(index: usize) -> &'static str {
    MESSAGE_TYPES.get(index).map_or("other", |(_, n)| n)
}
