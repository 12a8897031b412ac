//! Persistence of the policy: [`PolicyRecord`]s and their binary codec.
//!
//! The engine stores records as KV values in a reserved system namespace — either
//! one value per change ([`AuthzChange::records`](crate::AuthzChange::records)),
//! or the whole policy ([`PolicyState::to_records`](crate::PolicyState::to_records))
//! in one value with [`encode_records`] — and rebuilds the state at open with
//! [`PolicyState::from_records`](crate::PolicyState::from_records).
//!
//! # Format (version 1)
//!
//! Hand-written, little-endian. Decoders check every length against its limit and
//! the remaining input before allocating, reject unknown tags, undefined flag bits
//! and trailing bytes, and never panic. The encoding is canonical: anything that
//! decodes re-encodes to the same bytes.
//!
//! ```text
//! record      = version:u8 (= 1)  tag:u8  body
//!   tag 0 Bootstrap    = caller(admin)
//!   tag 1 Grant        = caller(grantee) permission flags:u8 caller(granted_by)
//!                        flags: bit 0 delegable, bit 1 delegated basis; others 0
//!   tag 2 Revoke       = caller(grantee) permission caller(granted_by)
//!   tag 3 OwnerSet     = resource caller(owner)
//!   tag 4 OwnerCleared = resource
//! caller      = len:u8 (1..=128) UTF-8 bytes      ("_system" is the system caller)
//! name        = len:u8 (1..=64) bytes              (validated as a project/scope/table name)
//! ns          = name(project) name(scope)
//! permission  = tag:u8 then
//!   0 GlobalAdmin | 1 ProjectAdmin name | 2 ScopeAdmin ns | 3 TableDdl ns
//!   4 TableRead ns name | 5 TableWrite ns name | 6 KvRead ns prefix | 7 KvWrite ns prefix
//! prefix      = len:u32 (0..=4096) bytes
//! resource    = tag:u8 then 0 Project name | 1 Scope ns | 2 Table ns name
//! record list = version:u8 (= 1) count:u32 then count × (len:u32 record)
//! ```

use aedb_model::name::MAX_NAME_LEN;
use aedb_model::{NameError, Namespace, ProjectName, ScopeName, TableName};
use aedb_types::reader::{ByteReader, LenPrefix};

use crate::permission::{MAX_KV_PREFIX_LEN, Permission, Resource};
use crate::policy::{Grant, GrantBasis};
use crate::{CallerId, CallerIdError, MAX_CALLER_ID_LEN};

/// The version byte of [`PolicyRecord`] encodings and of record lists.
pub const POLICY_RECORD_VERSION: u8 = 1;

/// One persisted policy fact or change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyRecord {
    /// `admin` holds `GlobalAdmin`, granted by the system caller (delegable).
    Bootstrap {
        /// The admin.
        admin: CallerId,
    },
    /// A grant exists (replacing one with the same grantee, permission and
    /// granter).
    Grant {
        /// The grant.
        grant: Grant,
        /// On what authority it was made.
        basis: GrantBasis,
    },
    /// The grant identified by grantee, permission and granter is gone.
    Revoke {
        /// Who held it.
        grantee: CallerId,
        /// The right.
        permission: Permission,
        /// Who granted it.
        granted_by: CallerId,
    },
    /// `owner` owns `resource`.
    OwnerSet {
        /// The resource.
        resource: Resource,
        /// Its owner.
        owner: CallerId,
    },
    /// `resource` has no owner any more.
    OwnerCleared {
        /// The resource.
        resource: Resource,
    },
}

/// A persisted record could not be applied to the policy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplayErrorKind {
    /// The system caller as grantee or owner.
    #[error("the system caller cannot be a grantee or an owner")]
    SystemCaller,
    /// A reserved project, scope or table name in a grant or owner record.
    #[error("a grant or owner names a reserved resource")]
    ReservedName,
    /// A KV prefix over the limit.
    #[error("KV prefix is {len} bytes; the maximum is {MAX_KV_PREFIX_LEN}")]
    PrefixTooLong {
        /// Length of the prefix.
        len: usize,
    },
    /// A revoke of a grant that does not exist.
    #[error("revoke of a grant that does not exist")]
    UnknownGrant,
    /// An owner cleared from a resource that has none.
    #[error("owner cleared from a resource that has none")]
    UnknownOwner,
}

/// A persisted policy record list could not be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("policy record {index}: {kind}")]
pub struct ReplayError {
    /// Position of the record in the list.
    pub index: usize,
    /// What is wrong.
    pub kind: ReplayErrorKind,
}

/// A field of a policy record failed its own validation: the error inside
/// [`DecodeErrorKind::Domain`](aedb_types::DecodeErrorKind::Domain).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyFieldError {
    /// An invalid project, scope or table name.
    #[error(transparent)]
    Name(#[from] NameError),
    /// An invalid caller id.
    #[error(transparent)]
    Caller(#[from] CallerIdError),
}

/// What is wrong with the bytes of a policy record, without the position.
pub type DecodeErrorKind = aedb_types::DecodeErrorKind<PolicyFieldError>;

/// Bytes that are not a valid policy record, and where decoding stopped.
pub type DecodeError = aedb_types::DecodeError<PolicyFieldError>;

/// What decode errors name as the thing being decoded.
const CONTEXT: &str = "policy record";

impl PolicyRecord {
    /// Encodes the record (version byte included).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out);
        out
    }

    /// Appends the encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(POLICY_RECORD_VERSION);
        match self {
            PolicyRecord::Bootstrap { admin } => {
                out.push(0);
                put_caller(out, admin);
            }
            PolicyRecord::Grant { grant, basis } => {
                out.push(1);
                put_caller(out, &grant.grantee);
                put_permission(out, &grant.permission);
                let mut flags = 0u8;
                if grant.delegable {
                    flags |= FLAG_DELEGABLE;
                }
                if *basis == GrantBasis::Delegated {
                    flags |= FLAG_DELEGATED;
                }
                out.push(flags);
                put_caller(out, &grant.granted_by);
            }
            PolicyRecord::Revoke {
                grantee,
                permission,
                granted_by,
            } => {
                out.push(2);
                put_caller(out, grantee);
                put_permission(out, permission);
                put_caller(out, granted_by);
            }
            PolicyRecord::OwnerSet { resource, owner } => {
                out.push(3);
                put_resource(out, resource);
                put_caller(out, owner);
            }
            PolicyRecord::OwnerCleared { resource } => {
                out.push(4);
                put_resource(out, resource);
            }
        }
    }

    /// Decodes one record; the whole input must be consumed.
    pub fn decode(bytes: &[u8]) -> Result<PolicyRecord, DecodeError> {
        let mut r = Reader::new(CONTEXT, bytes);
        let record = r.record()?;
        r.finish()?;
        Ok(record)
    }
}

/// Encodes a list of records as one value (for example a full
/// [`PolicyState::to_records`](crate::PolicyState::to_records)).
pub fn encode_records(records: &[PolicyRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + records.len() * 48);
    out.push(POLICY_RECORD_VERSION);
    put_u32(&mut out, records.len());
    let mut buf = Vec::new();
    for record in records {
        buf.clear();
        record.encode_into(&mut buf);
        put_u32(&mut out, buf.len());
        out.extend_from_slice(&buf);
    }
    out
}

/// Decodes a list made by [`encode_records`].
pub fn decode_records(bytes: &[u8]) -> Result<Vec<PolicyRecord>, DecodeError> {
    let mut r = Reader::new("policy record list", bytes);
    r.version()?;
    // Every entry needs at least a 4-byte length and a 3-byte record.
    const MIN_ENTRY: usize = 4 + 3;
    let count = r.count(LenPrefix::U32, "policy record", MIN_ENTRY, u64::MAX)?;
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        let len = r.u32()? as usize;
        let start = r.pos();
        let body = r.bytes(len)?;
        let record = PolicyRecord::decode(body).map_err(|e| e.shifted(start))?;
        records.push(record);
    }
    r.finish()?;
    Ok(records)
}

const FLAG_DELEGABLE: u8 = 0b01;
const FLAG_DELEGATED: u8 = 0b10;

fn put_u32(out: &mut Vec<u8>, n: usize) {
    // Lengths are bounded far below u32::MAX by the model's limits; a list of
    // more than 4 Gi records cannot be held in memory as encodings anyway.
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_short(out: &mut Vec<u8>, s: &str) {
    // Callers and names are at most 128 and 64 bytes (validated types).
    out.push(u8::try_from(s.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(s.as_bytes());
}

fn put_caller(out: &mut Vec<u8>, caller: &CallerId) {
    put_short(out, caller.as_str());
}

fn put_ns(out: &mut Vec<u8>, ns: &Namespace) {
    put_short(out, ns.project.as_str());
    put_short(out, ns.scope.as_str());
}

fn put_permission(out: &mut Vec<u8>, permission: &Permission) {
    match permission {
        Permission::GlobalAdmin => out.push(0),
        Permission::ProjectAdmin { project } => {
            out.push(1);
            put_short(out, project.as_str());
        }
        Permission::ScopeAdmin { ns } => {
            out.push(2);
            put_ns(out, ns);
        }
        Permission::TableDdl { ns } => {
            out.push(3);
            put_ns(out, ns);
        }
        Permission::TableRead { ns, table } | Permission::TableWrite { ns, table } => {
            out.push(if matches!(permission, Permission::TableRead { .. }) {
                4
            } else {
                5
            });
            put_ns(out, ns);
            put_short(out, table.as_str());
        }
        Permission::KvRead { ns, prefix } | Permission::KvWrite { ns, prefix } => {
            out.push(if matches!(permission, Permission::KvRead { .. }) {
                6
            } else {
                7
            });
            put_ns(out, ns);
            put_u32(out, prefix.len());
            out.extend_from_slice(prefix);
        }
    }
}

fn put_resource(out: &mut Vec<u8>, resource: &Resource) {
    match resource {
        Resource::Project(project) => {
            out.push(0);
            put_short(out, project.as_str());
        }
        Resource::Scope(ns) => {
            out.push(1);
            put_ns(out, ns);
        }
        Resource::Table { ns, table } => {
            out.push(2);
            put_ns(out, ns);
            put_short(out, table.as_str());
        }
    }
}

type Reader<'a> = ByteReader<'a, PolicyFieldError>;

/// The policy record's field readers on top of the shared [`ByteReader`].
trait ReadPolicy<'a> {
    fn version(&mut self) -> Result<(), DecodeError>;
    fn short_str(
        &mut self,
        what: &'static str,
        max: usize,
    ) -> Result<(usize, &'a str), DecodeError>;
    fn caller(&mut self) -> Result<CallerId, DecodeError>;
    fn name<T>(
        &mut self,
        what: &'static str,
        parse: fn(&str) -> Result<T, NameError>,
    ) -> Result<T, DecodeError>;
    fn project(&mut self) -> Result<ProjectName, DecodeError>;
    fn table(&mut self) -> Result<TableName, DecodeError>;
    fn ns(&mut self) -> Result<Namespace, DecodeError>;
    fn prefix(&mut self) -> Result<Vec<u8>, DecodeError>;
    fn permission(&mut self) -> Result<Permission, DecodeError>;
    fn resource(&mut self) -> Result<Resource, DecodeError>;
    fn record(&mut self) -> Result<PolicyRecord, DecodeError>;
}

impl<'a> ReadPolicy<'a> for Reader<'a> {
    fn version(&mut self) -> Result<(), DecodeError> {
        let found = self.u8()?;
        if found != POLICY_RECORD_VERSION {
            return Err(self.back(1).err(DecodeErrorKind::UnsupportedVersion {
                found: found.into(),
                supported: POLICY_RECORD_VERSION.into(),
            }));
        }
        Ok(())
    }

    /// A `len:u8` string of at most `max` bytes, as UTF-8; the error points at
    /// its length byte.
    fn short_str(
        &mut self,
        what: &'static str,
        max: usize,
    ) -> Result<(usize, &'a str), DecodeError> {
        let at = self.pos();
        Ok((at, self.str(LenPrefix::U8, what, max)?))
    }

    fn caller(&mut self) -> Result<CallerId, DecodeError> {
        self.field(|r| {
            let (_, s) = r.short_str("caller id", MAX_CALLER_ID_LEN)?;
            Ok(CallerId::from_stored(s))
        })
    }

    fn name<T>(
        &mut self,
        what: &'static str,
        parse: fn(&str) -> Result<T, NameError>,
    ) -> Result<T, DecodeError> {
        self.field(|r| Ok(parse(r.short_str(what, MAX_NAME_LEN)?.1)))
    }

    fn project(&mut self) -> Result<ProjectName, DecodeError> {
        self.name("project name", ProjectName::reserved)
    }

    fn table(&mut self) -> Result<TableName, DecodeError> {
        self.name("table name", TableName::reserved)
    }

    fn ns(&mut self) -> Result<Namespace, DecodeError> {
        let project = self.project()?;
        let scope = self.name("scope name", ScopeName::reserved)?;
        Ok(Namespace::new(project, scope))
    }

    fn prefix(&mut self) -> Result<Vec<u8>, DecodeError> {
        Ok(self
            .prefixed(LenPrefix::U32, "KV prefix", MAX_KV_PREFIX_LEN)?
            .to_vec())
    }

    fn permission(&mut self) -> Result<Permission, DecodeError> {
        Ok(match self.tag("permission", 7)? {
            0 => Permission::GlobalAdmin,
            1 => Permission::ProjectAdmin {
                project: self.project()?,
            },
            2 => Permission::ScopeAdmin { ns: self.ns()? },
            3 => Permission::TableDdl { ns: self.ns()? },
            4 => Permission::TableRead {
                ns: self.ns()?,
                table: self.table()?,
            },
            5 => Permission::TableWrite {
                ns: self.ns()?,
                table: self.table()?,
            },
            6 => Permission::KvRead {
                ns: self.ns()?,
                prefix: self.prefix()?,
            },
            _ => Permission::KvWrite {
                ns: self.ns()?,
                prefix: self.prefix()?,
            },
        })
    }

    fn resource(&mut self) -> Result<Resource, DecodeError> {
        Ok(match self.tag("resource", 2)? {
            0 => Resource::Project(self.project()?),
            1 => Resource::Scope(self.ns()?),
            _ => Resource::Table {
                ns: self.ns()?,
                table: self.table()?,
            },
        })
    }

    fn record(&mut self) -> Result<PolicyRecord, DecodeError> {
        self.version()?;
        Ok(match self.tag("policy record", 4)? {
            0 => PolicyRecord::Bootstrap {
                admin: self.caller()?,
            },
            1 => {
                let grantee = self.caller()?;
                let permission = self.permission()?;
                let flags = self.u8()?;
                if flags & !(FLAG_DELEGABLE | FLAG_DELEGATED) != 0 {
                    return Err(self.back(1).err(DecodeErrorKind::InvalidByte {
                        what: "grant flags",
                        byte: flags,
                    }));
                }
                let granted_by = self.caller()?;
                PolicyRecord::Grant {
                    grant: Grant {
                        grantee,
                        permission,
                        delegable: flags & FLAG_DELEGABLE != 0,
                        granted_by,
                    },
                    basis: if flags & FLAG_DELEGATED != 0 {
                        GrantBasis::Delegated
                    } else {
                        GrantBasis::Administrative
                    },
                }
            }
            2 => PolicyRecord::Revoke {
                grantee: self.caller()?,
                permission: self.permission()?,
                granted_by: self.caller()?,
            },
            3 => PolicyRecord::OwnerSet {
                resource: self.resource()?,
                owner: self.caller()?,
            },
            _ => PolicyRecord::OwnerCleared {
                resource: self.resource()?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns() -> Namespace {
        Namespace::parse("bank", "eu").unwrap()
    }

    fn caller(name: &str) -> CallerId {
        CallerId::new(name).unwrap()
    }

    fn samples() -> Vec<PolicyRecord> {
        vec![
            PolicyRecord::Bootstrap {
                admin: caller("root"),
            },
            PolicyRecord::Grant {
                grant: Grant {
                    grantee: caller("alice"),
                    permission: Permission::KvRead {
                        ns: ns(),
                        prefix: b"acct/\xff".to_vec(),
                    },
                    delegable: true,
                    granted_by: caller("root"),
                },
                basis: GrantBasis::Delegated,
            },
            PolicyRecord::Revoke {
                grantee: caller("alice"),
                permission: Permission::GlobalAdmin,
                granted_by: CallerId::system(),
            },
            PolicyRecord::OwnerSet {
                resource: Resource::Table {
                    ns: ns(),
                    table: TableName::new("ledger").unwrap(),
                },
                owner: caller("bob"),
            },
            PolicyRecord::OwnerCleared {
                resource: Resource::Project(ProjectName::new("bank").unwrap()),
            },
        ]
    }

    /// Pins the wire format: these bytes must keep decoding to these records.
    #[test]
    fn golden_encodings() {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let golden = [
            "0100".to_owned() + "04726f6f74",
            "0101".to_owned()
                + "05616c696365"
                + "06"
                + "0462616e6b"
                + "026575"
                + "06000000"
                + "616363742fff"
                + "03"
                + "04726f6f74",
            "0102".to_owned() + "05616c696365" + "00" + "075f73797374656d",
            "0103".to_owned() + "02" + "0462616e6b" + "026575" + "066c6564676572" + "03626f62",
            "0104".to_owned() + "00" + "0462616e6b",
        ];
        for (record, golden) in samples().iter().zip(golden) {
            assert_eq!(hex(&record.encode()), golden, "{record:?}");
        }
    }

    #[test]
    fn records_round_trip() {
        for record in samples() {
            let bytes = record.encode();
            assert_eq!(PolicyRecord::decode(&bytes).unwrap(), record);
        }
        let list = encode_records(&samples());
        assert_eq!(decode_records(&list).unwrap(), samples());
        assert_eq!(decode_records(&encode_records(&[])).unwrap(), vec![]);
    }

    #[test]
    fn bad_bytes_are_typed_errors() {
        let good = samples()[1].encode();
        for cut in 0..good.len() {
            assert!(PolicyRecord::decode(&good[..cut]).is_err(), "cut {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(
            PolicyRecord::decode(&trailing).unwrap_err().kind,
            DecodeErrorKind::TrailingBytes { count: 1 }
        ));
        let mut version = good.clone();
        version[0] = 2;
        assert!(matches!(
            PolicyRecord::decode(&version).unwrap_err().kind,
            DecodeErrorKind::UnsupportedVersion { found: 2, .. }
        ));
        let mut flags = good.clone();
        let flag_at = good.len() - 6;
        flags[flag_at] = 0x04;
        assert_eq!(
            PolicyRecord::decode(&flags).unwrap_err(),
            DecodeError::new(
                "policy record",
                flag_at,
                DecodeErrorKind::InvalidByte {
                    what: "grant flags",
                    byte: 0x04
                }
            )
        );
        // A forged caller name is refused.
        let forged = [1, 0, 6, b'_', b'a', b'd', b'm', b'i', b'n'];
        assert!(matches!(
            PolicyRecord::decode(&forged).unwrap_err().kind,
            DecodeErrorKind::Domain(PolicyFieldError::Caller(CallerIdError::Reserved))
        ));
        // Huge prefix length is refused before allocating.
        let mut huge = vec![1, 1, 1, b'a', 6, 1, b'p', 1, b's'];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            PolicyRecord::decode(&huge).unwrap_err().kind,
            DecodeErrorKind::LengthTooLarge {
                what: "KV prefix",
                ..
            }
        ));
        // Huge record count is refused before allocating.
        let mut list = vec![1];
        list.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_records(&list).unwrap_err().kind,
            DecodeErrorKind::CountTooLarge {
                what: "policy record",
                ..
            }
        ));
    }
}
