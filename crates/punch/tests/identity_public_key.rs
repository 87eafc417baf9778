//! `PublicKey` text, serde and SPKI forms round-trip, and Ed25519 signatures verify only for the
//! signing key and the signed message.

use punch::identity::{Identity, ParsePublicKeyError, PublicKey};

#[test]
fn text_form_is_64_lowercase_hex_and_round_trips() {
    let key = PublicKey::from_bytes(*b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\xf0\xf1\xf2\xf3\xf4\xf5\xf6\xf7\xf8\xf9\xfa\xfb\xfc\xfd\xfe\xff");
    let text = key.to_string();
    assert_eq!(
        text,
        "000102030405060708090a0b0c0d0e0ff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"
    );
    assert_eq!(text.parse::<PublicKey>().unwrap(), key);
    assert_eq!(text.to_uppercase().parse::<PublicKey>().unwrap(), key);
    assert_eq!(format!("{key:?}"), format!("PublicKey({text})"));

    let random = Identity::generate().public_key();
    assert_eq!(random.to_string().parse::<PublicKey>().unwrap(), random);
}

#[test]
fn malformed_text_is_rejected() {
    assert_eq!(
        "abcd".parse::<PublicKey>(),
        Err(ParsePublicKeyError::Length(4))
    );
    let mut bad = "0".repeat(64);
    bad.replace_range(10..11, "g");
    assert_eq!(
        bad.parse::<PublicKey>(),
        Err(ParsePublicKeyError::InvalidHex(10))
    );
    assert!(format!("{}0", "0".repeat(64)).parse::<PublicKey>().is_err());
    // 64 bytes but not 64 characters.
    assert!("é".repeat(32).parse::<PublicKey>().is_err());
}

#[test]
fn serde_uses_hex_text_for_json() {
    let key = Identity::generate().public_key();
    let json = serde_json::to_string(&key).unwrap();
    assert_eq!(json, format!("\"{key}\""));
    assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), key);
    assert!(serde_json::from_str::<PublicKey>("\"00\"").is_err());
}

#[test]
fn spki_is_the_fixed_ed25519_prefix_and_the_key() {
    let key = Identity::generate().public_key();
    let spki = key.to_spki();
    assert_eq!(
        spki[..12],
        [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]
    );
    assert_eq!(&spki[12..], key.as_bytes());
    assert_eq!(PublicKey::from_spki(&spki), Some(key));
    assert_eq!(PublicKey::from_spki(&spki[..43]), None);
    let mut longer = spki.to_vec();
    longer.push(0);
    assert_eq!(PublicKey::from_spki(&longer), None);
    let mut other_alg = spki;
    other_alg[8] = 0x71; // Ed448's OID 1.3.101.113
    assert_eq!(PublicKey::from_spki(&other_alg), None);
}

#[test]
fn signatures_verify_only_for_the_signer_and_message() {
    let alice = Identity::generate();
    let bob = Identity::generate();
    let sig = alice.sign(b"register me");
    assert!(alice.public_key().verify(b"register me", &sig));
    assert!(!alice.public_key().verify(b"register you", &sig));
    assert!(!bob.public_key().verify(b"register me", &sig));
    let mut tampered = sig;
    tampered[0] ^= 1;
    assert!(!alice.public_key().verify(b"register me", &tampered));
    // Debug never prints the private key.
    let debug = format!("{alice:?}");
    assert!(debug.contains(&alice.public_key().to_string()));
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// RFC 8032 §7.1 TEST 2, loaded from a PKCS#8 v1 document (RFC 8410 §7, as OpenSSL writes).
#[test]
fn rfc8032_vector_from_pkcs8_v1() {
    let seed = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
    let pkcs8 = hex(&format!("302e020100300506032b657004220420{seed}"));
    let identity = Identity::from_pkcs8_der(&pkcs8).expect("PKCS#8 v1 accepted");
    assert_eq!(
        identity.public_key().to_string(),
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
    );
    let sig = identity.sign(&[0x72]);
    assert_eq!(
        sig.to_vec(),
        hex(concat!(
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da",
            "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
        ))
    );
    assert!(identity.public_key().verify(&[0x72], &sig));
    assert!(Identity::from_pkcs8_der(b"junk").is_err());
    assert!(Identity::from_pkcs8_der(&pkcs8[..pkcs8.len() - 1]).is_err());
}
