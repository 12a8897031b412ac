//! [`MasterKeyId`], the non-secret name of one master key version.

use std::fmt;

use crate::error::KeyError;

/// The non-secret identity of one master key version: an alias (a key family, e.g.
/// `"prod-eu"`) and a version (1, 2, ... — rotation adds the next version).
///
/// Displayed as `alias:vN`, which is also the PKCS#11 `CKA_LABEL` of the key object in
/// [`crate::HsmKeyProvider`]'s token. Safe to log and to record in manifests.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MasterKeyId {
    alias: String,
    version: u32,
}

impl MasterKeyId {
    /// Longest accepted alias, in bytes.
    pub const MAX_ALIAS_LEN: usize = 64;

    /// Validates and builds an id.
    ///
    /// # Errors
    /// [`KeyError::InvalidAlias`] unless the alias is 1..=[`Self::MAX_ALIAS_LEN`] characters
    /// from `A-Z a-z 0-9 . _ -` (so `alias:vN` labels parse unambiguously);
    /// [`KeyError::InvalidVersion`] for version 0.
    pub fn new(alias: impl Into<String>, version: u32) -> Result<MasterKeyId, KeyError> {
        let alias = alias.into();
        validate_alias(&alias)?;
        if version == 0 {
            return Err(KeyError::InvalidVersion { alias });
        }
        Ok(MasterKeyId { alias, version })
    }

    /// The key family name.
    pub fn alias(&self) -> &str {
        &self.alias
    }

    /// The version within the alias (>= 1).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The same alias at another version.
    ///
    /// # Errors
    /// [`KeyError::InvalidVersion`] for version 0.
    pub fn with_version(&self, version: u32) -> Result<MasterKeyId, KeyError> {
        MasterKeyId::new(self.alias.clone(), version)
    }

    /// The PKCS#11 object label of this key: `"<alias>:v<version>"`, e.g. `"prod:v2"`.
    pub fn label(&self) -> String {
        self.to_string()
    }
}

impl std::str::FromStr for MasterKeyId {
    type Err = KeyError;

    /// Parses the `alias:vN` form that [`MasterKeyId`]'s `Display` writes (and that the
    /// manifest records).
    fn from_str(s: &str) -> Result<MasterKeyId, KeyError> {
        let malformed = || KeyError::InvalidAlias {
            alias: s.to_owned(),
            reason: "expected the form alias:vN",
        };
        let (alias, version) = s.rsplit_once(":v").ok_or_else(malformed)?;
        let version = version.parse::<u32>().map_err(|_| malformed())?;
        MasterKeyId::new(alias, version)
    }
}

impl fmt::Display for MasterKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:v{}", self.alias, self.version)
    }
}

fn validate_alias(alias: &str) -> Result<(), KeyError> {
    let reason = if alias.is_empty() {
        Some("it is empty")
    } else if alias.len() > MasterKeyId::MAX_ALIAS_LEN {
        Some("it is too long")
    } else if !alias
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("it contains a character outside A-Z a-z 0-9 . _ -")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(KeyError::InvalidAlias {
            alias: alias.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_key_id_parses_its_display_form() {
        let id = super::MasterKeyId::new("prod.master", 12).unwrap();
        assert_eq!(id.to_string().parse::<super::MasterKeyId>().unwrap(), id);
        assert!("nocolon".parse::<super::MasterKeyId>().is_err());
        assert!("a:vx".parse::<super::MasterKeyId>().is_err());
        assert!("a:v0".parse::<super::MasterKeyId>().is_err());
    }

    #[test]
    fn ids_validate_alias_and_version() {
        let id = MasterKeyId::new("prod-eu_1.a", 3).unwrap();
        assert_eq!(id.to_string(), "prod-eu_1.a:v3");
        assert_eq!(id.label(), "prod-eu_1.a:v3");
        assert_eq!((id.alias(), id.version()), ("prod-eu_1.a", 3));
        assert_eq!(id.with_version(4).unwrap().version(), 4);
        for bad in ["", "a:b", "a b", "ä", &"x".repeat(65)] {
            assert!(
                matches!(MasterKeyId::new(bad, 1), Err(KeyError::InvalidAlias { .. })),
                "{bad:?}"
            );
        }
        assert!(MasterKeyId::new("x".repeat(64), 1).is_ok());
        assert!(matches!(
            MasterKeyId::new("prod", 0),
            Err(KeyError::InvalidVersion { .. })
        ));
    }
}
