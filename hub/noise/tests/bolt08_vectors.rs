//! BOLT 8 Appendix A, "Transport Test Vectors", transcribed as tables: every
//! initiator and responder handshake case (including all failure cases, each
//! with its specific error) and the message encryption test with its two key
//! rotations. The hex strings were extracted by script from the spec text,
//! never retyped.

use lnhub_noise::{
    Act, HandshakeError, InitiatorHandshake, ResponderHandshake, Transport, KEY_ROTATION_INTERVAL,
};
use secp256k1::{PublicKey, Secp256k1, SecretKey};

struct InitiatorCase {
    name: &'static str,
    rs_pub: &'static str,
    ls_priv: &'static str,
    ls_pub: &'static str,
    e_priv: &'static str,
    e_pub: &'static str,
    act_one_out: &'static str,
    act_two_in: &'static str,
    expect: Result<InitiatorOk, HandshakeError>,
}

struct InitiatorOk {
    act_three_out: &'static str,
    sk: &'static str,
    rk: &'static str,
}

struct ResponderCase {
    name: &'static str,
    ls_priv: &'static str,
    ls_pub: &'static str,
    e_priv: &'static str,
    e_pub: &'static str,
    act_one_in: &'static str,
    /// `None` when the case fails at act one.
    act_two_out: Option<&'static str>,
    /// `None` when the case fails at act one.
    act_three_in: Option<&'static str>,
    expect: Result<ResponderOk, HandshakeError>,
}

struct ResponderOk {
    sk: &'static str,
    rk: &'static str,
}

fn bytes(s: &str) -> Vec<u8> {
    hex::decode(s).expect("table hex is valid")
}

fn secret(s: &str) -> SecretKey {
    SecretKey::from_slice(&bytes(s)).expect("table secret keys are valid")
}

fn public(s: &str) -> PublicKey {
    PublicKey::from_slice(&bytes(s)).expect("table public keys are valid")
}

fn check_pub(secp: &Secp256k1<secp256k1::All>, priv_hex: &str, pub_hex: &str, name: &str) {
    assert_eq!(
        PublicKey::from_secret_key(secp, &secret(priv_hex)),
        public(pub_hex),
        "{name}: table key pair is consistent"
    );
}

#[test]
fn initiator_vectors() {
    let secp = Secp256k1::new();
    assert_eq!(INITIATOR_CASES.len(), 5);
    for case in INITIATOR_CASES {
        check_pub(&secp, case.ls_priv, case.ls_pub, case.name);
        check_pub(&secp, case.e_priv, case.e_pub, case.name);
        let (hs, act_one) = InitiatorHandshake::new(
            &secret(case.ls_priv),
            &public(case.rs_pub),
            &secret(case.e_priv),
        );
        assert_eq!(
            hex::encode(act_one),
            case.act_one_out,
            "{}: act one",
            case.name
        );
        let result = hs.handle_act_two_slice(&bytes(case.act_two_in));
        match (&case.expect, result) {
            (Ok(ok), Ok((act_three, transport))) => {
                assert_eq!(
                    hex::encode(act_three),
                    ok.act_three_out,
                    "{}: act three",
                    case.name
                );
                let (sk, rk, sck, rck) = transport.keys_for_tests();
                assert_eq!(hex::encode(sk), ok.sk, "{}: sk", case.name);
                assert_eq!(hex::encode(rk), ok.rk, "{}: rk", case.name);
                assert_eq!(hex::encode(sck), MSG_CK, "{}: final ck", case.name);
                assert_eq!(sck, rck, "{}: rck = sck = ck", case.name);
            }
            (Err(want), Err(got)) => assert_eq!(&got, want, "{}", case.name),
            (want, got) => panic!(
                "{}: expected ok={}, got ok={}",
                case.name,
                want.is_ok(),
                got.is_ok()
            ),
        }
    }
}

#[test]
fn responder_vectors() {
    let secp = Secp256k1::new();
    assert_eq!(RESPONDER_CASES.len(), 10);
    for case in RESPONDER_CASES {
        check_pub(&secp, case.ls_priv, case.ls_pub, case.name);
        check_pub(&secp, case.e_priv, case.e_pub, case.name);
        let hs = ResponderHandshake::new(&secret(case.ls_priv), &secret(case.e_priv));
        let after_one = hs.handle_act_one_slice(&bytes(case.act_one_in));
        let (waiting, act_two) = match (&case.expect, after_one) {
            (_, Ok(next)) => next,
            (Err(want), Err(got)) => {
                assert_eq!(&got, want, "{}", case.name);
                assert_eq!(got.act(), Act::One, "{}", case.name);
                assert!(case.act_two_out.is_none(), "{}: table shape", case.name);
                continue;
            }
            (Ok(_), Err(got)) => panic!("{}: act one failed: {got}", case.name),
        };
        assert_eq!(
            Some(hex::encode(act_two).as_str()),
            case.act_two_out,
            "{}: act two",
            case.name
        );
        let act_three = bytes(case.act_three_in.expect("table shape: act three present"));
        match (&case.expect, waiting.handle_act_three_slice(&act_three)) {
            (Ok(ok), Ok((transport, remote_static))) => {
                let (sk, rk, sck, rck) = transport.keys_for_tests();
                assert_eq!(hex::encode(sk), ok.sk, "{}: sk", case.name);
                assert_eq!(hex::encode(rk), ok.rk, "{}: rk", case.name);
                assert_eq!(hex::encode(sck), MSG_CK, "{}: final ck", case.name);
                assert_eq!(sck, rck, "{}: rck = sck = ck", case.name);
                // The initiator of Appendix A has static key 0x11..11.
                assert_eq!(
                    remote_static,
                    public(INITIATOR_CASES[0].ls_pub),
                    "{}: rs",
                    case.name
                );
            }
            (Err(want), Err(got)) => {
                assert_eq!(&got, want, "{}", case.name);
                assert_eq!(got.act(), Act::Three, "{}", case.name);
            }
            (want, got) => panic!(
                "{}: expected ok={}, got ok={}",
                case.name,
                want.is_ok(),
                got.is_ok()
            ),
        }
    }
}

#[test]
fn failure_case_count() {
    let failures = INITIATOR_CASES.iter().filter(|c| c.expect.is_err()).count()
        + RESPONDER_CASES.iter().filter(|c| c.expect.is_err()).count();
    assert_eq!(failures, 13);
}

fn key(s: &str) -> [u8; 32] {
    bytes(s).try_into().expect("32-byte key")
}

#[test]
fn message_encryption_vectors() {
    let plaintext = bytes(MSG_PLAINTEXT);
    let mut sender = Transport::from_keys(key(MSG_SK), key(MSG_RK), key(MSG_CK));
    // The receiving side of the same session: its rk is the sender's sk.
    let mut receiver = Transport::from_keys(key(MSG_RK), key(MSG_SK), key(MSG_CK));
    let last = MSG_OUTPUTS.last().expect("outputs").0;
    let mut out = Vec::new();
    let mut checked = 0;
    let mut rotations = 0;
    for index in 0..=last {
        out.clear();
        sender
            .encrypt_message(&plaintext, &mut out)
            .expect("short message");
        if let Some((_, want)) = MSG_OUTPUTS.iter().find(|(i, _)| *i == index) {
            assert_eq!(hex::encode(&out), *want, "message {index}");
            checked += 1;
        }
        if let Some((_, ck, k)) = MSG_ROTATIONS.iter().find(|(i, _, _)| *i == index) {
            let (sk, _, sck, _) = sender.keys_for_tests();
            assert_eq!(hex::encode(sk), *k, "key after message {index}");
            assert_eq!(hex::encode(sck), *ck, "ck after message {index}");
            rotations += 1;
        }
        assert_eq!(receiver.feed(&out), Ok(out.len()));
        assert_eq!(
            receiver.next_message(),
            Ok(Some(&plaintext[..])),
            "message {index}"
        );
        assert_eq!(receiver.next_message(), Ok(None));
    }
    assert_eq!(checked, 6);
    assert_eq!(rotations, 2);
    assert_eq!(KEY_ROTATION_INTERVAL, 1000);
}

/// The handshake's transport and the message test start from the same keys.
#[test]
fn handshake_transport_produces_first_message_vector() {
    let case = &INITIATOR_CASES[0];
    let (hs, _) = InitiatorHandshake::new(
        &secret(case.ls_priv),
        &public(case.rs_pub),
        &secret(case.e_priv),
    );
    let act_two: [u8; 50] = bytes(case.act_two_in).try_into().expect("50 bytes");
    let (_, mut transport) = hs.handle_act_two(&act_two).expect("successful case");
    let mut out = Vec::new();
    transport
        .encrypt_message(&bytes(MSG_PLAINTEXT), &mut out)
        .expect("short message");
    assert_eq!(hex::encode(&out), MSG_OUTPUTS[0].1);
}

/// BOLT 8 Appendix A, "Initiator Tests" (all 5 cases).
const INITIATOR_CASES: &[InitiatorCase] = &[
    InitiatorCase {
        name: "transport-initiator successful handshake",
        rs_pub: "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7",
        ls_priv: "1111111111111111111111111111111111111111111111111111111111111111",
        ls_pub: "034f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa",
        e_priv: "1212121212121212121212121212121212121212121212121212121212121212",
        e_pub: "036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f7",
        act_one_out: "00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a",
        act_two_in: "0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae",
        expect: Ok(InitiatorOk {
            act_three_out: "00b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139ba",
            sk: "969ab31b4d288cedf6218839b27a3e2140827047f2c0f01bf5c04435d43511a9",
            rk: "bb9020b8965f4df047e07f955f3c4b88418984aadc5cdb35096b9ea8fa5c3442",
        }),
    },
    InitiatorCase {
        name: "transport-initiator act2 short read test",
        rs_pub: "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7",
        ls_priv: "1111111111111111111111111111111111111111111111111111111111111111",
        ls_pub: "034f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa",
        e_priv: "1212121212121212121212121212121212121212121212121212121212121212",
        e_pub: "036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f7",
        act_one_out: "00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a",
        act_two_in: "0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730",
        expect: Err(HandshakeError::WrongLength { act: Act::Two, expected: 50, actual: 49 }),
    },
    InitiatorCase {
        name: "transport-initiator act2 bad version test",
        rs_pub: "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7",
        ls_priv: "1111111111111111111111111111111111111111111111111111111111111111",
        ls_pub: "034f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa",
        e_priv: "1212121212121212121212121212121212121212121212121212121212121212",
        e_pub: "036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f7",
        act_one_out: "00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a",
        act_two_in: "0102466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae",
        expect: Err(HandshakeError::BadVersion { act: Act::Two, version: 1 }),
    },
    InitiatorCase {
        name: "transport-initiator act2 bad key serialization test",
        rs_pub: "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7",
        ls_priv: "1111111111111111111111111111111111111111111111111111111111111111",
        ls_pub: "034f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa",
        e_priv: "1212121212121212121212121212121212121212121212121212121212121212",
        e_pub: "036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f7",
        act_one_out: "00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a",
        act_two_in: "0004466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae",
        expect: Err(HandshakeError::BadPubkey { act: Act::Two }),
    },
    InitiatorCase {
        name: "transport-initiator act2 bad MAC test",
        rs_pub: "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7",
        ls_priv: "1111111111111111111111111111111111111111111111111111111111111111",
        ls_pub: "034f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa",
        e_priv: "1212121212121212121212121212121212121212121212121212121212121212",
        e_pub: "036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f7",
        act_one_out: "00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a",
        act_two_in: "0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730af",
        expect: Err(HandshakeError::BadTag { act: Act::Two }),
    },
];

/// BOLT 8 Appendix A, "Responder Tests" (all 10 cases).
const RESPONDER_CASES: &[ResponderCase] = &[
    ResponderCase {
        name: "transport-responder successful handshake",
        ls_priv: "2121212121212121212121212121212121212121212121212121212121212121",
        ls_pub: "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7",
        e_priv: "2222222222222222222222222222222222222222222222222222222222222222",
        e_pub: "02466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f27",
        act_one_in: "00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a",
        act_two_out: Some("0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae"),
        act_three_in: Some("00b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139ba"),
        expect: Ok(ResponderOk {
            sk: "bb9020b8965f4df047e07f955f3c4b88418984aadc5cdb35096b9ea8fa5c3442",
            rk: "969ab31b4d288cedf6218839b27a3e2140827047f2c0f01bf5c04435d43511a9",
        }),
    },
    ResponderCase {
        name: "transport-responder act1 short read test",
        ls_priv: "2121212121212121212121212121212121212121212121212121212121212121",
        ls_pub: "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7",
        e_priv: "2222222222222222222222222222222222222222222222222222222222222222",
        e_pub: "02466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f27",
        act_one_in: "00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c",
        act_two_out: None,
        act_three_in: None,
        expect: Err(HandshakeError::WrongLength { act: Act::One, expected: 50, actual: 49 }),
    },
    ResponderCase {
        name: "transport-responder act1 bad version test",
        ls_priv: "2121212121212121212121212121212121212121212121212121212121212121",
        ls_pub: "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7",
        e_priv: "2222222222222222222222222222222222222222222222222222222222222222",
        e_pub: "02466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f27",
        act_one_in: "01036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a",
        act_two_out: None,
        act_three_in: None,
        expect: Err(HandshakeError::BadVersion { act: Act::One, version: 1 }),
    },
    ResponderCase {
        name: "transport-responder act1 bad key serialization test",
        ls_priv: "2121212121212121212121212121212121212121212121212121212121212121",
        ls_pub: "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7",
        e_priv: "2222222222222222222222222222222222222222222222222222222222222222",
        e_pub: "02466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f27",
        act_one_in: "00046360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a",
        act_two_out: None,
        act_three_in: None,
        expect: Err(HandshakeError::BadPubkey { act: Act::One }),
    },
    ResponderCase {
        name: "transport-responder act1 bad MAC test",
        ls_priv: "2121212121212121212121212121212121212121212121212121212121212121",
        ls_pub: "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7",
        e_priv: "2222222222222222222222222222222222222222222222222222222222222222",
        e_pub: "02466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f27",
        act_one_in: "00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6b",
        act_two_out: None,
        act_three_in: None,
        expect: Err(HandshakeError::BadTag { act: Act::One }),
    },
    ResponderCase {
        name: "transport-responder act3 bad version test",
        ls_priv: "2121212121212121212121212121212121212121212121212121212121212121",
        ls_pub: "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7",
        e_priv: "2222222222222222222222222222222222222222222222222222222222222222",
        e_pub: "02466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f27",
        act_one_in: "00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a",
        act_two_out: Some("0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae"),
        act_three_in: Some("01b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139ba"),
        expect: Err(HandshakeError::BadVersion { act: Act::Three, version: 1 }),
    },
    ResponderCase {
        name: "transport-responder act3 short read test",
        ls_priv: "2121212121212121212121212121212121212121212121212121212121212121",
        ls_pub: "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7",
        e_priv: "2222222222222222222222222222222222222222222222222222222222222222",
        e_pub: "02466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f27",
        act_one_in: "00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a",
        act_two_out: Some("0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae"),
        act_three_in: Some("00b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139"),
        expect: Err(HandshakeError::WrongLength { act: Act::Three, expected: 66, actual: 65 }),
    },
    ResponderCase {
        name: "transport-responder act3 bad MAC for ciphertext test",
        ls_priv: "2121212121212121212121212121212121212121212121212121212121212121",
        ls_pub: "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7",
        e_priv: "2222222222222222222222222222222222222222222222222222222222222222",
        e_pub: "02466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f27",
        act_one_in: "00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a",
        act_two_out: Some("0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae"),
        act_three_in: Some("00c9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139ba"),
        expect: Err(HandshakeError::BadCiphertext),
    },
    ResponderCase {
        name: "transport-responder act3 bad rs test",
        ls_priv: "2121212121212121212121212121212121212121212121212121212121212121",
        ls_pub: "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7",
        e_priv: "2222222222222222222222222222222222222222222222222222222222222222",
        e_pub: "02466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f27",
        act_one_in: "00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a",
        act_two_out: Some("0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae"),
        act_three_in: Some("00bfe3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa2235536ad09a8ee351870c2bb7f78b754a26c6cef79a98d25139c856d7efd252c2ae73c"),
        expect: Err(HandshakeError::BadPubkey { act: Act::Three }),
    },
    ResponderCase {
        name: "transport-responder act3 bad MAC test",
        ls_priv: "2121212121212121212121212121212121212121212121212121212121212121",
        ls_pub: "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7",
        e_priv: "2222222222222222222222222222222222222222222222222222222222222222",
        e_pub: "02466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f27",
        act_one_in: "00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a",
        act_two_out: Some("0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae"),
        act_three_in: Some("00b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139bb"),
        expect: Err(HandshakeError::BadTag { act: Act::Three }),
    },
];

/// BOLT 8 Appendix A, "Message Encryption Tests": initial keys.
const MSG_CK: &str = "919219dbb2920afa8db80f9a51787a840bcf111ed8d588caf9ab4be716e42b01";
const MSG_SK: &str = "969ab31b4d288cedf6218839b27a3e2140827047f2c0f01bf5c04435d43511a9";
const MSG_RK: &str = "bb9020b8965f4df047e07f955f3c4b88418984aadc5cdb35096b9ea8fa5c3442";
const MSG_PLAINTEXT: &str = "68656c6c6f";
/// Key rotations: (after message index, new ck, new k).
const MSG_ROTATIONS: &[(usize, &str, &str)] = &[
    (
        499,
        "cc2c6e467efc8067720c2d09c139d1f77731893aad1defa14f9bf3c48d3f1d31",
        "3fbdc101abd1132ca3a0ae34a669d8d9ba69a587e0bb4ddd59524541cf4813d8",
    ),
    (
        999,
        "728366ed68565dc17cf6dd97330a859a6a56e87e2beef3bd828a4c4a54d8df06",
        "9e0477f9850dca41e42db0e4d154e3a098e5a000d995e421849fcd5df27882bd",
    ),
];
/// Wire bytes of message `index`: (index, ciphertext).
const MSG_OUTPUTS: &[(usize, &str)] = &[
    (
        0,
        "cf2b30ddf0cf3f80e7c35a6e6730b59fe802473180f396d88a8fb0db8cbcf25d2f214cf9ea1d95",
    ),
    (
        1,
        "72887022101f0b6753e0c7de21657d35a4cb2a1f5cde2650528bbc8f837d0f0d7ad833b1a256a1",
    ),
    (
        500,
        "178cb9d7387190fa34db9c2d50027d21793c9bc2d40b1e14dcf30ebeeeb220f48364f7a4c68bf8",
    ),
    (
        501,
        "1b186c57d44eb6de4c057c49940d79bb838a145cb528d6e8fd26dbe50a60ca2c104b56b60e45bd",
    ),
    (
        1000,
        "4a2f3cc3b5e78ddb83dcb426d9863d9d9a723b0337c89dd0b005d89f8d3c05c52b76b29b740f09",
    ),
    (
        1001,
        "2ecd8c8a5629d0d02ab457a0fdd0f7b90a192cd46be5ecb6ca570bfc5e268338b1a16cf4ef2d36",
    ),
];
