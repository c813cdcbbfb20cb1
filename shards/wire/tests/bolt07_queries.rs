//! BOLT 7 gossip query vectors (`bolt07/extended-queries.json` of the spec
//! repository): each message decodes to its type and re-encodes byte for
//! byte, TLVs (query flags, timestamps, checksums) included.

use lnhub_wire::msgs::{QueryChannelRange, ReplyChannelRange};
use lnhub_wire::Message;

/// BOLT 7 `bolt07/extended-queries.json`: (whole message hex, message type).
const EXTENDED_QUERIES: &[(&str, u16)] = &[
    ("01070f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206000186a0000005dc", 263),
    ("01070f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206000088b800000064010103", 263),
    ("01080f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206000b8a06000005dc01001900000000000000008e0000000000003c69000000000045a6c4", 264),
    ("01080f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206000006400000006e01001601789c636000833e08659309a65878be010010a9023a", 264),
    ("01080f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e22060001ddde000005dc01001900000000000000304300000000000778d6000000000046e1c1011900000282c1000e77c5000778ad00490ab00000b57800955bff031800000457000008ae00000d050000115c000015b300001a0a", 264),
    ("01080f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e22060001ddde000005dc01001801789c63600001036730c55e710d4cbb3d3c080017c303b1012201789c63606a3ac8c0577e9481bd622d8327d7060686ad150c53a3ff0300554707db031800000457000008ae00000d050000115c000015b300001a0a", 264),
    ("01050f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206001900000000000000008e0000000000003c69000000000045a6c4", 261),
    ("01050f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206001801789c63600001c12b608a69e73e30edbaec0800203b040e", 261),
    ("01050f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e22060019000000000000002fc80000000000003cc4000000000045a6c4010c01789c6364620100000e0008", 261),
    ("01050f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206001801789c63600001f30a30c5b0cd144cb92e3b020017c6034a010c01789c6364620100000e0008", 261),
];

#[test]
fn extended_queries_round_trip() {
    for &(hex, msg_type) in EXTENDED_QUERIES {
        let bytes = hex::decode(hex).unwrap();
        let msg = Message::decode(&bytes).unwrap_or_else(|e| panic!("{hex}: {e}"));
        assert_eq!(msg.msg_type(), msg_type);
        assert!(!matches!(msg, Message::Unknown { .. }));
        let mut out = Vec::new();
        msg.encode(&mut out);
        assert_eq!(out, bytes);
    }
}

#[test]
fn extended_queries_fields() {
    let decode = |i: usize| Message::decode(&hex::decode(EXTENDED_QUERIES[i].0).unwrap()).unwrap();
    let Message::QueryChannelRange(QueryChannelRange {
        first_blocknum,
        number_of_blocks,
        query_option,
        ..
    }) = decode(1)
    else {
        panic!("vector 1 is query_channel_range")
    };
    assert_eq!((first_blocknum, number_of_blocks), (35000, 100));
    assert_eq!(
        query_option.map(|q| q.query_option_flags),
        Some(3),
        "timestamps | checksums"
    );
    let Message::ReplyChannelRange(ReplyChannelRange { checksums_tlv, .. }) = decode(4) else {
        panic!("vector 4 is reply_channel_range")
    };
    let first = checksums_tlv.expect("vector 4 has checksums")[0];
    assert_eq!(
        (first.checksum_node_id_1, first.checksum_node_id_2),
        (1111, 2222)
    );
}
