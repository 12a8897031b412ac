//! Nothing that holds a key or a PIN prints it: `Debug`/`Display` of every key-holding type,
//! configuration and error is searched for the secret in hex (both cases), decimal and raw
//! text forms.

use aedb_keys::{
    DerivationRequest, HsmConfig, InMemoryKeyProvider, KEY_LEN, KeyError, KeyProvider, KeyPurpose,
    MasterKeyId, SecretKey, SecretString, TokenSelector,
};
use aedb_types::{DatabaseId, KeyEpoch};
use proptest::prelude::*;

/// Every printable form of any 3-byte window of `secret` (and the whole secret), so a
/// partial leak is caught too.
fn forms(secret: &[u8]) -> Vec<String> {
    let mut forms = vec![
        hex::encode(secret),
        hex::encode_upper(secret),
        format!("{secret:?}"),
    ];
    if let Ok(text) = std::str::from_utf8(secret) {
        forms.push(text.to_owned());
    }
    for window in secret.windows(3) {
        forms.push(hex::encode(window));
        forms.push(hex::encode_upper(window));
        forms.push(format!("{}, {}, {}", window[0], window[1], window[2]));
        forms.push(format!(
            "{:#04x}, {:#04x}, {:#04x}",
            window[0], window[1], window[2]
        ));
    }
    forms
}

fn assert_hidden(shown: &str, secret: &[u8]) {
    for form in forms(secret) {
        assert!(
            !shown.contains(&form),
            "secret form {form:?} appears in: {shown}"
        );
    }
}

fn everything(value: &(impl std::fmt::Debug + ?Sized)) -> String {
    format!("{value:?}\n{value:#?}")
}

fn request() -> DerivationRequest<'static> {
    DerivationRequest::new(
        KeyPurpose::Wal,
        KeyEpoch::FIRST,
        DatabaseId::from_bytes([0; 16]),
    )
}

#[test]
fn fixed_secrets_are_hidden_everywhere() {
    let master = [0xA7u8; KEY_LEN];
    let key = SecretKey::new(master);
    let shown = everything(&key);
    assert_eq!(format!("{key:?}"), "SecretKey(<redacted>)");
    assert_hidden(&shown, &master);
    assert!(!shown.contains("167"), "{shown}");

    let pin = SecretString::from("314159");
    assert_hidden(&everything(&pin), b"314159");

    let provider = InMemoryKeyProvider::new("prod", master)
        .unwrap()
        .with_version(2, [0x3C; KEY_LEN])
        .unwrap();
    let shown = format!("{} {}", everything(&provider), provider.describe());
    assert_hidden(&shown, &master);
    assert_hidden(&shown, &[0x3C; KEY_LEN]);
}

#[test]
fn errors_built_around_secrets_do_not_carry_them() {
    let master = [0x5Eu8; KEY_LEN];
    let mut shown = String::new();
    let invalid = InMemoryKeyProvider::new("bad alias", master).unwrap_err();
    let duplicate = InMemoryKeyProvider::new("ok", master)
        .unwrap()
        .with_version(1, master)
        .unwrap_err();
    let provider = InMemoryKeyProvider::new("ok", master).unwrap();
    let missing = provider
        .derive(&MasterKeyId::new("ok", 7).unwrap(), &request())
        .unwrap_err();
    for err in [invalid, duplicate, missing] {
        shown.push_str(&format!("{err} {err:?}\n"));
    }
    assert!(shown.contains("InvalidAlias") && shown.contains("DuplicateVersion"));
    assert!(shown.contains("KeyNotFound"));
    assert_hidden(&shown, &master);
}

#[test]
fn hsm_config_debug_redacts_the_pin() {
    let config = HsmConfig::new(
        "/usr/lib/softhsm/libsofthsm2.so",
        "aedb-test",
        SecretString::from("pin-271828"),
        MasterKeyId::new("prod", 3).unwrap(),
    )
    .allow_extractable(false);
    let shown = everything(&config);
    assert!(shown.contains("SecretString(<redacted>)"), "{shown}");
    assert!(
        shown.contains("prod") && shown.contains("aedb-test"),
        "{shown}"
    );
    assert_hidden(&shown, b"pin-271828");
    assert_eq!(
        TokenSelector::Label("aedb-test".into()).to_string(),
        r#"label "aedb-test""#
    );
    assert_eq!(TokenSelector::Slot(4).to_string(), "slot 4");
}

proptest! {
    #[test]
    fn random_keys_never_print(
        master in any::<[u8; KEY_LEN]>(),
        older in any::<[u8; KEY_LEN]>(),
    ) {
        let key = SecretKey::new(master);
        prop_assert_eq!(format!("{key:?}"), "SecretKey(<redacted>)");
        let provider = InMemoryKeyProvider::new("prod", older)
            .unwrap()
            .with_version(2, master)
            .unwrap();
        let current = provider.current_master().unwrap();
        let subkey = provider.derive(&current, &request()).unwrap();
        let subkey_bytes = subkey.with_bytes(|b| *b);
        let shown = format!(
            "{}{}{}{}",
            everything(&key),
            everything(&provider),
            everything(&subkey),
            provider.describe()
        );
        assert_hidden(&shown, &master);
        assert_hidden(&shown, &older);
        assert_hidden(&shown, &subkey_bytes);
    }

    #[test]
    fn random_pins_never_print(pin in "[0-9A-Za-z!@#%^&*_-]{6,24}") {
        let secret = SecretString::from(pin.as_str());
        let config = HsmConfig::new(
            "/usr/lib/softhsm/libsofthsm2.so",
            "aedb-test",
            secret.duplicate(),
            MasterKeyId::new("prod", 1).unwrap(),
        );
        let shown = format!("{}{}", everything(&secret), everything(&config));
        prop_assert!(shown.contains("<redacted>"));
        assert_hidden(&shown, pin.as_bytes());
    }
}

#[test]
fn key_error_for_login_names_no_pin() {
    // The login error is built without access to the PIN; check its text is generic.
    let err = KeyError::LoginFailed {
        token: "aedb-test".into(),
        reason: aedb_keys::LoginFailure::PinIncorrect,
    };
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("user PIN was rejected"), "{shown}");
    assert!(shown.contains("aedb-test"), "{shown}");
}
