//! Who is connecting: JWT verification with the algorithm pinned by the configured key.
//!
//! The header's `alg` is only ever compared with what the key allows: an HMAC secret accepts
//! HS256/384/512, an RSA key RS256, an EC P-256 key ES256, a JWKS key what it declares. `none` is
//! never accepted. `exp` and `nbf` are checked when present.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use thiserror::Error;

mod claims;

pub use claims::{ClaimPath, ClaimRules};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 5;

/// Longest user id accepted, in bytes.
pub const MAX_USER_ID_BYTES: usize = 256;

/// The most groups a token's `channelIds` may list.
pub const MAX_TOKEN_GROUPS: usize = 1000;

/// The longest group id, in bytes.
pub const MAX_GROUP_ID_BYTES: usize = 128;

/// What a connection may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A handset: counts as presence, may heartbeat.
    Mobile,
    /// A web client: watches presence.
    Web,
    /// A monitoring dashboard: watches presence.
    Dashboard,
}

impl Role {
    /// Parses the `role` claim.
    pub fn parse(value: &str) -> Option<Role> {
        match value {
            "mobile" => Some(Role::Mobile),
            "web" => Some(Role::Web),
            "dashboard" => Some(Role::Dashboard),
            _ => None,
        }
    }

    /// The claim value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Mobile => "mobile",
            Role::Web => "web",
            Role::Dashboard => "dashboard",
        }
    }

    /// Whether this role receives presence frames.
    pub fn watches_presence(self) -> bool {
        matches!(self, Role::Web | Role::Dashboard)
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id from the token, as a string.
    pub user_id: Arc<str>,
    /// The role from the token (`mobile` when absent).
    pub role: Role,
    /// The `tenant` claim, when present (numbers are kept as their decimal text).
    pub tenant: Option<Arc<str>>,
    /// The `channelIds` claim (the groups the token allows), when present; ids as strings.
    pub groups: Option<Arc<[Arc<str>]>>,
    /// The `exp` claim (seconds since the epoch), when present.
    pub expires_at: Option<u64>,
}

impl Identity {
    /// The identity of a token that carries nothing but a user id.
    pub fn user(user_id: Arc<str>, role: Role) -> Identity {
        Identity {
            user_id,
            role,
            tenant: None,
            groups: None,
            expires_at: None,
        }
    }
}

/// Why a token was refused. The message is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// No token was given.
    #[error("missing token")]
    Missing,
    /// An `Authorization` header whose scheme is not `Bearer`.
    #[error("the Authorization header must be \"Bearer <token>\"")]
    NotBearer,
    /// Not a JWT.
    #[error("malformed token")]
    Malformed,
    /// The header names an algorithm the configured key does not allow.
    #[error("token algorithm {0} is not accepted")]
    Algorithm(String),
    /// No configured key has the token's `kid`.
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("invalid token signature")]
    BadSignature,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` has not come yet.
    #[error("token not valid yet")]
    NotYetValid,
    /// None of the user id claims holds a usable id.
    #[error("token has no user id (uid, user_id, userId, sub or id: 1 to 256 bytes, no control characters)")]
    NoUserId,
    /// A `role` other than mobile, web or dashboard.
    #[error("unknown role {0:?}: expected mobile, web or dashboard")]
    BadRole(String),
    /// A claim this router reads has the wrong shape.
    #[error("claim {0} {1}")]
    BadClaim(String, &'static str),
    /// `iss` is not the configured issuer.
    #[error("token issuer is not accepted")]
    Issuer,
    /// `aud` does not name the configured audience.
    #[error("token audience is not accepted")]
    Audience,
    /// No `exp`, and `PRESENCE_REQUIRE_EXP` asks for one.
    #[error("token has no exp, and this router requires one")]
    NoExpiry,
    /// `exp` further ahead than `PRESENCE_MAX_TOKEN_AGE`.
    #[error("token expiry is further ahead than this router accepts")]
    TooLongLived,
    /// The keys come from an identity provider that has not answered yet.
    #[error("the token keys are not loaded yet: retry shortly")]
    KeysUnavailable,
}

/// Why a configured key could not be loaded.
#[derive(Debug, Error)]
pub enum KeyError {
    /// The PEM is neither an RSA nor an EC P-256 public key.
    #[error("not an RSA or EC P-256 public key in PEM form")]
    Pem,
    /// The JWKS file is not a JWK set.
    #[error("not a JWK set: {0}")]
    Jwks(String),
    /// The JWK set holds no key this router can use.
    #[error("the JWK set has no RSA or EC P-256 signing key")]
    NoUsableKey,
}

#[derive(Clone)]
struct PinnedKey {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

/// Verifies tokens against the configured key(s), and their claims against [`ClaimRules`].
/// Cheap to clone; clones share the keys, which a JWKS refresh replaces
/// ([`Verifier::set_jwks`]).
#[derive(Clone)]
pub struct Verifier {
    keys: Arc<RwLock<Arc<[PinnedKey]>>>,
    rules: Arc<ClaimRules>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys().len())
            .field("rules", &self.rules)
            .finish()
    }
}

impl Verifier {
    /// Accepts HS256/384/512 tokens signed with `secret`.
    pub fn hmac(secret: &[u8]) -> Self {
        Self::single(PinnedKey {
            kid: None,
            algorithms: vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
            key: DecodingKey::from_secret(secret),
        })
    }

    /// Accepts RS256 (RSA key) or ES256 (EC P-256 key) tokens signed by the key's owner.
    pub fn public_key_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let (algorithm, key) = match DecodingKey::from_rsa_pem(pem) {
            Ok(key) => (Algorithm::RS256, key),
            Err(_) => (
                Algorithm::ES256,
                DecodingKey::from_ec_pem(pem).map_err(|_| KeyError::Pem)?,
            ),
        };
        Ok(Self::single(PinnedKey {
            kid: None,
            algorithms: vec![algorithm],
            key,
        }))
    }

    /// No key yet: tokens are refused until [`Verifier::set_jwks`] brings one (the keys of an
    /// identity provider, fetched later).
    pub fn awaiting_jwks() -> Self {
        Verifier::from_keys(Vec::new())
    }

    /// Replaces the keys with those of a JWK set; the old ones stay when it has none usable.
    /// Returns how many keys it holds.
    pub fn set_jwks(&self, json: &str) -> Result<usize, KeyError> {
        let keys = Verifier::jwks(json)?.keys();
        let count = keys.len();
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
        Ok(count)
    }

    /// Whether any key is loaded.
    pub fn has_keys(&self) -> bool {
        !self.keys().is_empty()
    }

    /// The same keys, with claims read and checked by `rules`.
    pub fn with_rules(self, rules: ClaimRules) -> Self {
        Verifier {
            keys: self.keys,
            rules: Arc::new(rules),
        }
    }

    fn keys(&self) -> Arc<[PinnedKey]> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn from_keys(keys: Vec<PinnedKey>) -> Self {
        Verifier {
            keys: Arc::new(RwLock::new(keys.into())),
            rules: Arc::default(),
        }
    }

    /// Accepts tokens signed by any RSA or EC P-256 key of a JWK set, each with its own algorithm.
    pub fn jwks(json: &str) -> Result<Self, KeyError> {
        let set: JwkSet = serde_json::from_str(json).map_err(|e| KeyError::Jwks(e.to_string()))?;
        let keys: Vec<PinnedKey> = set
            .keys
            .iter()
            .filter_map(|jwk| {
                // A key published for encryption only is never a signing key.
                if jwk.common.public_key_use == Some(jsonwebtoken::jwk::PublicKeyUse::Encryption) {
                    return None;
                }
                let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
                    (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => {
                        Algorithm::RS256
                    }
                    (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
                        if ec.curve == EllipticCurve::P256 =>
                    {
                        Algorithm::ES256
                    }
                    _ => return None,
                };
                Some(PinnedKey {
                    kid: jwk.common.key_id.clone(),
                    algorithms: vec![algorithm],
                    key: DecodingKey::from_jwk(jwk).ok()?,
                })
            })
            .collect();
        if keys.is_empty() {
            return Err(KeyError::NoUsableKey);
        }
        Ok(Verifier::from_keys(keys))
    }

    fn single(key: PinnedKey) -> Self {
        Verifier::from_keys(vec![key])
    }

    /// Checks `token` at `now` (seconds since the epoch) and says who it belongs to.
    pub fn verify(&self, token: &str, now: u64) -> Result<Identity, AuthError> {
        let (message, signature) = token.rsplit_once('.').ok_or(AuthError::Malformed)?;
        let (_, payload) = message.split_once('.').ok_or(AuthError::Malformed)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        let keys = self.keys();
        if keys.is_empty() {
            return Err(AuthError::KeysUnavailable);
        }
        let candidates: Vec<&PinnedKey> = match &header.kid {
            Some(kid) if keys.iter().any(|k| k.kid.is_some()) => {
                let found: Vec<_> = keys
                    .iter()
                    .filter(|k| k.kid.as_ref() == Some(kid))
                    .collect();
                if found.is_empty() {
                    return Err(AuthError::UnknownKey);
                }
                found
            }
            _ => keys.iter().collect(),
        };
        let allowed: Vec<&PinnedKey> = candidates
            .into_iter()
            .filter(|k| k.algorithms.contains(&header.alg))
            .collect();
        if allowed.is_empty() {
            return Err(AuthError::Algorithm(format!("{:?}", header.alg)));
        }
        let verified = allowed.iter().any(|k| {
            jsonwebtoken::crypto::verify(signature, message.as_bytes(), &k.key, header.alg)
                .unwrap_or(false)
        });
        if !verified {
            return Err(AuthError::BadSignature);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| AuthError::Malformed)?;
        let claims: Value = serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)?;
        self.rules.identity(&claims, now)
    }
}

/// Whether `group` is a group id the router accepts (from a token or a USER_ADD): 1 to
/// [`MAX_GROUP_ID_BYTES`] bytes, no control characters.
pub fn valid_group_id(group: &str) -> bool {
    !group.is_empty() && group.len() <= MAX_GROUP_ID_BYTES && !group.chars().any(char::is_control)
}

/// Mints an HS256 token for `user_id` with `role`, valid for `ttl` from `now` (epoch seconds).
pub fn mint(
    secret: &[u8],
    user_id: &str,
    role: Role,
    ttl: Duration,
    now: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    mint_with(secret, user_id, role, ttl, now, &[])
}

/// The same, with `extra` claims (e.g. `("channelIds", json!(["18"]))`).
pub fn mint_with(
    secret: &[u8],
    user_id: &str,
    role: Role,
    ttl: Duration,
    now: u64,
    extra: &[(&str, Value)],
) -> Result<String, jsonwebtoken::errors::Error> {
    let mut claims = json!({
        "userId": user_id,
        "role": role.as_str(),
        "iat": now,
        "exp": now.saturating_add(ttl.as_secs()),
    });
    if let Some(all) = claims.as_object_mut() {
        all.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
}

/// Seconds since the epoch, now.
pub fn now_secs() -> u64 {
    jsonwebtoken::get_current_timestamp()
}
