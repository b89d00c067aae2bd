//! Token verification without sockets: every key kind, every claim form.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use presence_router::auth::{AuthError, Identity, Role, Verifier};
use serde_json::{json, Value};

const NOW: u64 = 1_800_000_000;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn hs(alg: Algorithm, claims: Value) -> String {
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(b"secret"),
    )
    .expect("sign")
}

fn identity(user: &str, role: Role) -> Identity {
    Identity::user(user.into(), role)
}

#[test]
fn hmac_accepts_hs256_384_512_and_every_user_id_claim() {
    let v = Verifier::hmac(b"secret");
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        assert_eq!(
            v.verify(&hs(alg, json!({"uid": "a"})), NOW),
            Ok(identity("a", Role::Mobile))
        );
    }
    for claim in ["uid", "user_id", "userId", "sub", "id"] {
        let token = hs(Algorithm::HS256, json!({ claim: 7, "role": "web" }));
        assert_eq!(
            v.verify(&token, NOW),
            Ok(identity("7", Role::Web)),
            "{claim}"
        );
    }
    let preferred = hs(Algorithm::HS256, json!({"sub": "second", "uid": "first"}));
    assert_eq!(
        v.verify(&preferred, NOW).map(|i| i.user_id),
        Ok("first".into())
    );
}

#[test]
fn a_bare_string_payload_is_the_user_id() {
    let v = Verifier::hmac(b"secret");
    assert_eq!(
        v.verify(&hs(Algorithm::HS256, json!("driver-9")), NOW),
        Ok(identity("driver-9", Role::Mobile))
    );
}

#[test]
fn exp_and_nbf_are_checked_when_present() {
    let v = Verifier::hmac(b"secret");
    let expired = hs(Algorithm::HS256, json!({"uid": "a", "exp": NOW - 60}));
    assert_eq!(v.verify(&expired, NOW), Err(AuthError::Expired));
    let early = hs(Algorithm::HS256, json!({"uid": "a", "nbf": NOW + 60}));
    assert_eq!(v.verify(&early, NOW), Err(AuthError::NotYetValid));
    let fine = hs(
        Algorithm::HS256,
        json!({"uid": "a", "exp": NOW + 60, "nbf": NOW - 60}),
    );
    assert!(v.verify(&fine, NOW).is_ok());
}

/// `tenant` and `channelIds` (numbers or strings, kept as text) and `exp` reach the identity.
#[test]
fn tenant_groups_and_expiry_are_read_from_the_claims() {
    let v = Verifier::hmac(b"secret");
    let token = hs(
        Algorithm::HS256,
        json!({"uid": "a", "tenant": 7, "channelIds": [18, "night-shift"], "exp": NOW + 60}),
    );
    let who = v.verify(&token, NOW).expect("valid");
    assert_eq!(who.tenant.as_deref(), Some("7"));
    let groups: Vec<&str> = who
        .groups
        .iter()
        .flat_map(|g| g.iter())
        .map(|g| &**g)
        .collect();
    assert_eq!(groups, ["18", "night-shift"]);
    assert_eq!(who.expires_at, Some(NOW + 60));
    for (claims, claim) in [
        (json!({"uid": "a", "channelIds": "18"}), "channelIds"),
        (json!({"uid": "a", "channelIds": [{"id": 1}]}), "channelIds"),
        (json!({"uid": "a", "tenant": ["x"]}), "tenant"),
        (json!({"uid": "a", "tenant": "a\u{1f}b"}), "tenant"),
        (
            json!({"uid": "a", "channelIds": (0..10_000).collect::<Vec<_>>()}),
            "channelIds",
        ),
        (
            json!({"uid": "a", "channelIds": ["x".repeat(129)]}),
            "channelIds",
        ),
        (json!({"uid": "a", "channelIds": [""]}), "channelIds"),
    ] {
        match v.verify(&hs(Algorithm::HS256, claims), NOW) {
            Err(AuthError::BadClaim(name, _)) => assert_eq!(name, claim),
            other => panic!("{claim}: {other:?}"),
        }
    }
}

#[test]
fn claims_without_a_user_or_with_an_unknown_role_are_refused() {
    let v = Verifier::hmac(b"secret");
    assert_eq!(
        v.verify(&hs(Algorithm::HS256, json!({"name": "x"})), NOW),
        Err(AuthError::NoUserId)
    );
    assert_eq!(
        v.verify(&hs(Algorithm::HS256, json!({"uid": ""})), NOW),
        Err(AuthError::NoUserId)
    );
    assert_eq!(
        v.verify(
            &hs(Algorithm::HS256, json!({"uid": "a", "role": "root"})),
            NOW
        ),
        Err(AuthError::BadRole("root".into()))
    );
}

#[test]
fn rs256_and_es256_public_keys_pin_their_algorithm() {
    let rsa = Verifier::public_key_pem(&fixture("rsa_public.pem")).expect("RSA key");
    let rs = encode(
        &Header::new(Algorithm::RS256),
        &json!({"uid": "r"}),
        &EncodingKey::from_rsa_pem(&fixture("rsa_private.pem")).expect("key"),
    )
    .expect("sign");
    assert_eq!(rsa.verify(&rs, NOW), Ok(identity("r", Role::Mobile)));
    assert!(matches!(
        rsa.verify(&hs(Algorithm::HS256, json!({"uid": "r"})), NOW),
        Err(AuthError::Algorithm(_))
    ));

    let ec = Verifier::public_key_pem(&fixture("ec_public.pem")).expect("EC key");
    let es = encode(
        &Header::new(Algorithm::ES256),
        &json!({"uid": "e", "role": "dashboard"}),
        &EncodingKey::from_ec_pem(&fixture("ec_private.pem")).expect("key"),
    )
    .expect("sign");
    assert_eq!(ec.verify(&es, NOW), Ok(identity("e", Role::Dashboard)));
    assert!(matches!(ec.verify(&rs, NOW), Err(AuthError::Algorithm(_))));
}

#[test]
fn jwks_keys_are_found_by_kid() {
    let json = String::from_utf8(fixture("jwks.json")).expect("utf8");
    let v = Verifier::jwks(&json).expect("JWKS");
    let key = EncodingKey::from_rsa_pem(&fixture("rsa_private.pem")).expect("key");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-rsa".into());
    let token = encode(&header, &json!({"uid": "k"}), &key).expect("sign");
    assert_eq!(v.verify(&token, NOW), Ok(identity("k", Role::Mobile)));
    header.kid = Some("other".into());
    let unknown = encode(&header, &json!({"uid": "k"}), &key).expect("sign");
    assert_eq!(v.verify(&unknown, NOW), Err(AuthError::UnknownKey));
    assert!(Verifier::jwks(r#"{"keys":[]}"#).is_err());
}

#[test]
fn tampered_and_malformed_tokens_are_refused() {
    let v = Verifier::hmac(b"secret");
    let token = hs(Algorithm::HS256, json!({"uid": "a"}));
    let (head, sig) = token.rsplit_once('.').expect("three parts");
    let forged_payload = format!(
        "{}.{}.{sig}",
        head.split('.').next().expect("header"),
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            r#"{"uid":"admin"}"#
        )
    );
    assert_eq!(v.verify(&forged_payload, NOW), Err(AuthError::BadSignature));
    for junk in ["", "a", "a.b", "a.b.c", "...."] {
        assert!(v.verify(junk, NOW).is_err(), "{junk:?}");
    }
}
