//! The smoke size of `benches/codec.rs`: each hot-path message it measures decodes to the
//! expected kind and encodes back to exactly its bytes.

use lnhub_wire::msgs::Message;

mod bench_messages;

#[test]
fn bench_messages_decode_and_encode_byte_exact() {
    let kinds = [128u16, 132, 133, 130];
    for ((name, bytes), kind) in bench_messages::hot_path_messages().into_iter().zip(kinds) {
        let msg = Message::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(msg.msg_type(), kind, "{name}");
        let mut out = Vec::new();
        msg.encode(&mut out);
        assert_eq!(out, bytes, "{name} re-encodes byte-exact");
    }
}
