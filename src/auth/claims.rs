//! What a verified token's claims say: who, in which role, tenant and groups, until when; and
//! the checks a deployment asks of them (issuer, audience). Where the role, tenant and groups
//! are is configurable, as dotted paths, for identity providers that nest them (Keycloak's
//! `realm_access.roles`).

use super::{
    valid_group_id, AuthError, Identity, Role, LEEWAY_SECS, MAX_TOKEN_GROUPS, MAX_USER_ID_BYTES,
};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Claims holding the user id, in order of preference.
const USER_ID_CLAIMS: [&str; 5] = ["uid", "user_id", "userId", "sub", "id"];

/// Where a claim is: object keys from the top, separated by dots in its configured form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    text: String,
    keys: Vec<String>,
}

impl ClaimPath {
    /// From its dotted form (`role`, `realm_access.roles`); `None` when a part is empty.
    pub fn parse(text: &str) -> Option<ClaimPath> {
        let keys: Vec<String> = text.split('.').map(str::to_owned).collect();
        if keys.iter().any(String::is_empty) {
            return None;
        }
        Some(ClaimPath {
            text: text.to_owned(),
            keys,
        })
    }

    fn find<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        let (first, rest) = self.keys.split_first()?;
        let mut value = claims.get(first)?;
        for key in rest {
            value = value.get(key)?;
        }
        Some(value).filter(|v| !v.is_null())
    }
}

/// What the router requires of a token's claims, and where it reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRules {
    /// `iss` must equal this, when set.
    pub issuer: Option<String>,
    /// `aud` (a string or an array) must hold this, when set.
    pub audience: Option<String>,
    /// Where the role is (a string, or an array whose first known role counts).
    pub role: ClaimPath,
    /// Where the tenant is.
    pub tenant: ClaimPath,
    /// Where the groups are.
    pub groups: ClaimPath,
    /// Refuse a token without `exp`.
    pub require_exp: bool,
    /// Refuse a token whose `exp` is more than this many seconds ahead, when set.
    pub max_lifetime: Option<u64>,
}

impl Default for ClaimRules {
    fn default() -> Self {
        let path = |text| ClaimPath {
            text: String::from(text),
            keys: vec![String::from(text)],
        };
        ClaimRules {
            issuer: None,
            audience: None,
            role: path("role"),
            tenant: path("tenant"),
            groups: path("channelIds"),
            require_exp: false,
            max_lifetime: None,
        }
    }
}

impl ClaimRules {
    /// Reads who the verified claims speak for, checking `exp`, `nbf`, `iss` and `aud`.
    pub fn identity(&self, claims: &Value, now: u64) -> Result<Identity, AuthError> {
        let object = match claims {
            // A bare user id, as VoicePing's mobile tokens carry: nothing else to check.
            Value::String(_) if self.issuer.is_some() => return Err(AuthError::Issuer),
            Value::String(_) if self.audience.is_some() => return Err(AuthError::Audience),
            Value::String(_) if self.require_exp => return Err(AuthError::NoExpiry),
            Value::String(id) => return Ok(Identity::user(user_id(id)?, Role::Mobile)),
            Value::Object(object) => object,
            _ => return Err(AuthError::NoUserId),
        };
        let expires_at = match object.get("exp") {
            None | Some(Value::Null) => None,
            Some(exp) => {
                let exp = exp.as_f64().ok_or(AuthError::Malformed)?;
                if (now as f64) > exp + LEEWAY_SECS as f64 {
                    return Err(AuthError::Expired);
                }
                Some(exp.max(0.0) as u64)
            }
        };
        match expires_at {
            None if self.require_exp => return Err(AuthError::NoExpiry),
            Some(exp)
                if self
                    .max_lifetime
                    .is_some_and(|max| exp > now.saturating_add(max)) =>
            {
                return Err(AuthError::TooLongLived)
            }
            _ => {}
        }
        if let Some(nbf) = object.get("nbf") {
            let nbf = nbf.as_f64().ok_or(AuthError::Malformed)?;
            if (now + LEEWAY_SECS) as f64 <= nbf {
                return Err(AuthError::NotYetValid);
            }
        }
        if let Some(issuer) = &self.issuer {
            if object.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(AuthError::Issuer);
            }
        }
        if let Some(audience) = &self.audience {
            let listed = match object.get("aud") {
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
                _ => false,
            };
            if !listed {
                return Err(AuthError::Audience);
            }
        }
        let id = USER_ID_CLAIMS
            .iter()
            .find_map(|claim| id_text(object.get(*claim)?))
            .ok_or(AuthError::NoUserId)?;
        Ok(Identity {
            user_id: user_id(&id)?,
            role: self.role_of(object)?,
            tenant: self.tenant_of(object)?,
            groups: self.groups_of(object)?,
            expires_at,
        })
    }

    fn role_of(&self, claims: &Map<String, Value>) -> Result<Role, AuthError> {
        match self.role.find(claims) {
            None => Ok(Role::Mobile),
            Some(Value::String(role)) => {
                Role::parse(role).ok_or_else(|| AuthError::BadRole(role.clone()))
            }
            Some(Value::Array(roles)) => roles
                .iter()
                .find_map(|r| Role::parse(r.as_str()?))
                .ok_or_else(|| AuthError::BadRole(Value::Array(roles.clone()).to_string())),
            Some(other) => Err(AuthError::BadRole(other.to_string())),
        }
    }

    fn tenant_of(&self, claims: &Map<String, Value>) -> Result<Option<Arc<str>>, AuthError> {
        let Some(value) = self.tenant.find(claims) else {
            return Ok(None);
        };
        id_text(value)
            .filter(|t| {
                !t.is_empty() && t.len() <= MAX_USER_ID_BYTES && !t.chars().any(char::is_control)
            })
            .map(|t| Some(Arc::from(t)))
            .ok_or_else(|| {
                AuthError::BadClaim(
                    self.tenant.text.clone(),
                    "must be a string (at most 256 bytes, no control characters) or a number",
                )
            })
    }

    fn groups_of(&self, claims: &Map<String, Value>) -> Result<Option<Arc<[Arc<str>]>>, AuthError> {
        let bad = |why| AuthError::BadClaim(self.groups.text.clone(), why);
        match self.groups.find(claims) {
            None => Ok(None),
            Some(Value::Array(ids)) if ids.len() > MAX_TOKEN_GROUPS => {
                Err(bad("lists more than 1000 groups"))
            }
            Some(Value::Array(ids)) => ids
                .iter()
                .map(|id| id_text(id).filter(|g| valid_group_id(g)).map(Arc::from))
                .collect::<Option<Arc<[Arc<str>]>>>()
                .map(Some)
                .ok_or_else(|| {
                    bad("must hold only strings and numbers (group ids of 1 to 128 bytes)")
                }),
            Some(_) => Err(bad("must be an array of group ids")),
        }
    }
}

/// A claim that names something (a user, tenant or group): a string, or a number as its text.
fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn user_id(id: &str) -> Result<Arc<str>, AuthError> {
    if id.is_empty() || id.len() > MAX_USER_ID_BYTES || id.chars().any(char::is_control) {
        return Err(AuthError::NoUserId);
    }
    Ok(Arc::from(id))
}
