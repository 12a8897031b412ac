//! Server identity: [`ServerProfileId`] (random, per host), [`ServerEnvironmentProfile`]
//! (fingerprints captured at boot) and [`ServerEnvHash`], the checked hash of the latter
//! that capsules carry and the manifest persists for audit.
//!
//! # Environment hash (version 1)
//!
//! `field(x) = u32_le(len(x)) || x`. Every field is length-prefixed, in a fixed order, after
//! a domain label, so the encoding is injective: two different profiles never produce the
//! same input to SHA-256 (no ambiguity from moving bytes between adjacent fields).
//!
//! ```text
//! ServerEnvHash = SHA-256( field(b"aedb/ihp/v1/server-env")
//!                       || field(hostname) || field(os) || field(os_version)
//!                       || field(binary_sha256)            32 bytes
//!                       || field(tls_certificate_fingerprint)  0 bytes when no TLS
//!                       || field(deployment) || field(region) )
//! ```

use std::fmt;
use std::io::Read;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::config::IhpConfig;
use crate::hexstr::{ParseHexError, parse_hex, write_hex};

/// Domain label of the environment hash.
pub const ENV_HASH_DOMAIN: &[u8] = b"aedb/ihp/v1/server-env";

/// The random 128-bit identity of one server (host or process group), generated at
/// provisioning. Capsules name the profile that issued them.
///
/// ```
/// use aedb_session::ServerProfileId;
/// let id = ServerProfileId::from_bytes([0xab; 16]);
/// assert_eq!(id.to_string(), "abababababababababababababababab");
/// assert_eq!(id.to_string().parse::<ServerProfileId>(), Ok(id));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerProfileId([u8; 16]);

impl ServerProfileId {
    /// A fresh id from the OS CSPRNG.
    pub fn generate() -> Result<ServerProfileId, ProfileError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|err| ProfileError::Randomness {
            reason: err.to_string(),
        })?;
        Ok(ServerProfileId(bytes))
    }

    /// Wraps stored bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> ServerProfileId {
        ServerProfileId(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for ServerProfileId {
    /// 32 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for ServerProfileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerProfileId({self})")
    }
}

impl FromStr for ServerProfileId {
    type Err = ParseHexError;

    /// Exactly 32 hex digits (either case).
    fn from_str(text: &str) -> Result<ServerProfileId, ParseHexError> {
        parse_hex(text).map(ServerProfileId)
    }
}

/// SHA-256 of a [`ServerEnvironmentProfile`] (see the module docs for the exact input).
/// Not secret: it is carried in every capsule header and persisted for audit.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerEnvHash([u8; 32]);

impl ServerEnvHash {
    /// Wraps stored bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> ServerEnvHash {
        ServerEnvHash(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ServerEnvHash {
    /// 64 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for ServerEnvHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerEnvHash({self})")
    }
}

impl FromStr for ServerEnvHash {
    type Err = ParseHexError;

    /// Exactly 64 hex digits (either case).
    fn from_str(text: &str) -> Result<ServerEnvHash, ParseHexError> {
        parse_hex(text).map(ServerEnvHash)
    }
}

/// The fingerprints of the environment a server runs in, captured at boot (see
/// [`ServerEnvironmentProfile::capture`]) or assembled by provisioning. Hash it with
/// [`compute_server_env_hash_checked`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerEnvironmentProfile {
    /// Host name. Required.
    pub hostname: String,
    /// Operating system family, e.g. `linux`. Required.
    pub os: String,
    /// Operating system / kernel release, e.g. `6.8.0-45-generic`. Required.
    pub os_version: String,
    /// SHA-256 of the server binary.
    pub binary_sha256: [u8; 32],
    /// Fingerprint of the server's TLS certificate (e.g. SHA-256 of its DER); empty when the
    /// server terminates no TLS itself.
    pub tls_certificate_fingerprint: Vec<u8>,
    /// Deployment name, e.g. `prod-eu`. Required.
    pub deployment: String,
    /// Region or zone; may be empty.
    pub region: String,
}

/// A field of [`ServerEnvironmentProfile`], named in [`ProfileError`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProfileField {
    /// [`ServerEnvironmentProfile::hostname`].
    Hostname,
    /// [`ServerEnvironmentProfile::os`].
    Os,
    /// [`ServerEnvironmentProfile::os_version`].
    OsVersion,
    /// [`ServerEnvironmentProfile::tls_certificate_fingerprint`].
    TlsCertificateFingerprint,
    /// [`ServerEnvironmentProfile::deployment`].
    Deployment,
    /// [`ServerEnvironmentProfile::region`].
    Region,
}

impl fmt::Display for ProfileField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProfileField::Hostname => "hostname",
            ProfileField::Os => "os",
            ProfileField::OsVersion => "os_version",
            ProfileField::TlsCertificateFingerprint => "tls_certificate_fingerprint",
            ProfileField::Deployment => "deployment",
            ProfileField::Region => "region",
        })
    }
}

/// Why a server profile could not be hashed, captured or generated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// A required field is empty.
    #[error("server profile field `{field}` is empty")]
    Empty {
        /// The field.
        field: ProfileField,
    },
    /// A field is longer than the configured `max_fingerprint_len`.
    #[error("server profile field `{field}` is {len} bytes; the limit is {max}")]
    TooLong {
        /// The field.
        field: ProfileField,
        /// Its length in bytes.
        len: usize,
        /// [`IhpConfig::max_fingerprint_len`].
        max: usize,
    },
    /// The OS random number generator failed.
    #[error("OS randomness unavailable: {reason}")]
    Randomness {
        /// The OS error, as text.
        reason: String,
    },
    /// A fingerprint could not be read from the host.
    #[error("cannot capture `{what}`: {reason}")]
    Capture {
        /// What was being read.
        what: &'static str,
        /// The I/O error, as text.
        reason: String,
    },
}

impl ServerEnvironmentProfile {
    /// Captures this host's fingerprints: host name and kernel release (from `/proc` on
    /// Linux, else `HOSTNAME` / `unknown`), [`std::env::consts::OS`], and the SHA-256 of the
    /// running executable. `tls_certificate_fingerprint` is left empty for the host to
    /// fill in. Validate with [`compute_server_env_hash_checked`].
    pub fn capture(
        deployment: &str,
        region: &str,
    ) -> Result<ServerEnvironmentProfile, ProfileError> {
        let hostname = read_trimmed("/proc/sys/kernel/hostname")
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .ok_or(ProfileError::Capture {
                what: "hostname",
                reason: "neither /proc/sys/kernel/hostname nor HOSTNAME is set".to_owned(),
            })?;
        let os_version =
            read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".to_owned());
        let binary_sha256 = hash_current_exe()?;
        Ok(ServerEnvironmentProfile {
            hostname,
            os: std::env::consts::OS.to_owned(),
            os_version,
            binary_sha256,
            tls_certificate_fingerprint: Vec::new(),
            deployment: deployment.to_owned(),
            region: region.to_owned(),
        })
    }

    /// The variable-length fields in hash order, each with whether it may be empty.
    fn checked_fields(&self) -> [(ProfileField, &[u8], bool); 6] {
        [
            (ProfileField::Hostname, self.hostname.as_bytes(), false),
            (ProfileField::Os, self.os.as_bytes(), false),
            (ProfileField::OsVersion, self.os_version.as_bytes(), false),
            (
                ProfileField::TlsCertificateFingerprint,
                &self.tls_certificate_fingerprint,
                true,
            ),
            (ProfileField::Deployment, self.deployment.as_bytes(), false),
            (ProfileField::Region, self.region.as_bytes(), true),
        ]
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn hash_current_exe() -> Result<[u8; 32], ProfileError> {
    let capture_err = |err: std::io::Error| ProfileError::Capture {
        what: "binary_sha256",
        reason: err.to_string(),
    };
    let path = std::env::current_exe().map_err(capture_err)?;
    let mut file = std::fs::File::open(path).map_err(capture_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(capture_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// Checks every field of `profile` against `config` (required fields non-empty, each at
/// most [`IhpConfig::max_fingerprint_len`] bytes) and only then hashes it (module docs give
/// the exact encoding). The first failing field, in hash order, is named in the error.
///
/// ```
/// use aedb_session::{
///     IhpConfig, ProfileError, ProfileField, ServerEnvironmentProfile,
///     compute_server_env_hash_checked,
/// };
/// let mut profile = ServerEnvironmentProfile {
///     hostname: "db-1".into(),
///     os: "linux".into(),
///     os_version: "6.8.0".into(),
///     binary_sha256: [7; 32],
///     tls_certificate_fingerprint: vec![],
///     deployment: "prod-eu".into(),
///     region: "eu-west-1a".into(),
/// };
/// let config = IhpConfig::default();
/// let hash = compute_server_env_hash_checked(&profile, &config)?;
/// assert_eq!(hash.to_string().len(), 64);
/// profile.hostname.clear();
/// assert_eq!(
///     compute_server_env_hash_checked(&profile, &config),
///     Err(ProfileError::Empty { field: ProfileField::Hostname })
/// );
/// # Ok::<(), ProfileError>(())
/// ```
pub fn compute_server_env_hash_checked(
    profile: &ServerEnvironmentProfile,
    config: &IhpConfig,
) -> Result<ServerEnvHash, ProfileError> {
    let fields = profile.checked_fields();
    let max = config.max_fingerprint_len();
    for (field, bytes, may_be_empty) in fields {
        if bytes.is_empty() && !may_be_empty {
            return Err(ProfileError::Empty { field });
        }
        if bytes.len() > max {
            return Err(ProfileError::TooLong {
                field,
                len: bytes.len(),
                max,
            });
        }
    }
    let [hostname, os, os_version, tls, deployment, region] = fields.map(|(_, bytes, _)| bytes);
    let mut hasher = Sha256::new();
    for part in [
        ENV_HASH_DOMAIN,
        hostname,
        os,
        os_version,
        &profile.binary_sha256[..],
        tls,
        deployment,
        region,
    ] {
        // Fits: every part is at most MAX_FINGERPRINT_LEN_CAP (or 32) bytes.
        hasher.update((part.len() as u32).to_le_bytes());
        hasher.update(part);
    }
    Ok(ServerEnvHash(hasher.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> ServerEnvironmentProfile {
        ServerEnvironmentProfile {
            hostname: "db-1".into(),
            os: "linux".into(),
            os_version: "6.8.0".into(),
            binary_sha256: [7; 32],
            tls_certificate_fingerprint: vec![1, 2, 3],
            deployment: "prod".into(),
            region: "eu".into(),
        }
    }

    fn hash(p: &ServerEnvironmentProfile) -> Result<ServerEnvHash, ProfileError> {
        compute_server_env_hash_checked(p, &IhpConfig::default())
    }

    #[test]
    fn ids_and_hashes_print_and_parse_as_hex() {
        let id = ServerProfileId::from_bytes(
            *b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f",
        );
        assert_eq!(id.to_string(), "000102030405060708090a0b0c0d0e0f");
        assert_eq!(
            format!("{id:?}"),
            "ServerProfileId(000102030405060708090a0b0c0d0e0f)"
        );
        assert_eq!("000102030405060708090A0B0C0D0E0F".parse(), Ok(id));
        assert_eq!(
            "00".parse::<ServerProfileId>(),
            Err(ParseHexError::WrongLength {
                expected: 32,
                found: 2
            })
        );
        assert_eq!(
            "z00102030405060708090a0b0c0d0e0f".parse::<ServerProfileId>(),
            Err(ParseHexError::InvalidDigit { at: 0 })
        );
        let h = ServerEnvHash::from_bytes([0xfe; 32]);
        assert_eq!(h.to_string(), "fe".repeat(32));
        assert_eq!(h.to_string().parse(), Ok(h));
        assert_eq!(h.as_bytes(), &[0xfe; 32]);
        let a = ServerProfileId::generate().unwrap();
        let b = ServerProfileId::generate().unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn hash_is_pinned() {
        // Pins the encoding in the module docs (recompute only with a version bump).
        let mut expected = Sha256::new();
        for part in [
            &b"aedb/ihp/v1/server-env"[..],
            b"db-1",
            b"linux",
            b"6.8.0",
            &[7; 32],
            &[1, 2, 3],
            b"prod",
            b"eu",
        ] {
            expected.update((part.len() as u32).to_le_bytes());
            expected.update(part);
        }
        let expected: [u8; 32] = expected.finalize().into();
        assert_eq!(hash(&profile()).unwrap().as_bytes(), &expected);
    }

    #[test]
    fn lengths_are_checked_before_hashing() {
        let config = IhpConfig::builder().max_fingerprint_len(8).build().unwrap();
        let check = |p: &ServerEnvironmentProfile| compute_server_env_hash_checked(p, &config);
        assert!(check(&profile()).is_ok());

        let mut p = profile();
        p.hostname = "a".repeat(8);
        assert!(check(&p).is_ok());
        p.hostname = "a".repeat(9);
        assert_eq!(
            check(&p),
            Err(ProfileError::TooLong {
                field: ProfileField::Hostname,
                len: 9,
                max: 8
            })
        );

        for (field, set) in [
            (
                ProfileField::Hostname,
                (|p: &mut ServerEnvironmentProfile| p.hostname.clear()) as fn(&mut _),
            ),
            (ProfileField::Os, |p| p.os.clear()),
            (ProfileField::OsVersion, |p| p.os_version.clear()),
            (ProfileField::Deployment, |p| p.deployment.clear()),
        ] {
            let mut p = profile();
            set(&mut p);
            assert_eq!(check(&p), Err(ProfileError::Empty { field }), "{field}");
        }
        // Optional fields may be empty.
        let mut p = profile();
        p.region.clear();
        p.tls_certificate_fingerprint.clear();
        assert!(check(&p).is_ok());

        let mut p = profile();
        p.tls_certificate_fingerprint = vec![0; 9];
        assert_eq!(
            check(&p),
            Err(ProfileError::TooLong {
                field: ProfileField::TlsCertificateFingerprint,
                len: 9,
                max: 8
            })
        );
        p.region = "r".repeat(100);
        // The first failing field in hash order is reported.
        assert!(matches!(
            check(&p),
            Err(ProfileError::TooLong {
                field: ProfileField::TlsCertificateFingerprint,
                ..
            })
        ));
        let mut p = profile();
        p.region = "r".repeat(9);
        assert!(matches!(
            check(&p),
            Err(ProfileError::TooLong {
                field: ProfileField::Region,
                ..
            })
        ));
    }

    #[test]
    fn moving_bytes_between_fields_changes_the_hash() {
        let base = profile();
        let mut a = base.clone();
        a.hostname = "db-1l".into();
        a.os = "inux".into();
        let mut b = base.clone();
        b.os = "linux6".into();
        b.os_version = ".8.0".into();
        let mut c = base.clone();
        c.deployment = "prodeu".into();
        c.region = String::new();
        let mut d = base.clone();
        d.tls_certificate_fingerprint = vec![];
        d.deployment = "\u{1}\u{2}\u{3}prod".into();
        let hashes: Vec<_> = [&base, &a, &b, &c, &d]
            .into_iter()
            .map(|p| hash(p).unwrap())
            .collect();
        for i in 0..hashes.len() {
            for j in i + 1..hashes.len() {
                assert_ne!(hashes[i], hashes[j], "{i} vs {j}");
            }
        }
        let mut e = base.clone();
        e.binary_sha256[31] ^= 1;
        assert_ne!(hash(&e).unwrap(), hash(&base).unwrap());
    }

    #[test]
    fn capture_reads_this_host() {
        let p = ServerEnvironmentProfile::capture("test", "").unwrap();
        assert!(!p.hostname.is_empty());
        assert_eq!(p.os, std::env::consts::OS);
        assert_ne!(p.binary_sha256, [0; 32]);
        assert!(hash(&p).is_ok());
    }
}
