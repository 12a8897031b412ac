//! What a caller may be granted ([`Permission`]), what can be owned ([`Resource`]),
//! and the "covers" relation between them that delegation, revocation and ownership
//! transfer are judged by.
//!
//! Everything here is pure and allocation-free.

use std::fmt;

use aedb_model::limits::MAX_KV_KEY_LEN;
use aedb_model::{Namespace, ProjectName, TableName};

/// Longest KV prefix a [`Permission::KvRead`] or [`Permission::KvWrite`] may name,
/// in bytes: a prefix longer than the longest key covers nothing.
pub const MAX_KV_PREFIX_LEN: usize = MAX_KV_KEY_LEN;

/// A right that can be granted to a caller.
///
/// Rights nest: [`GlobalAdmin`](Permission::GlobalAdmin) covers everything,
/// [`ProjectAdmin`](Permission::ProjectAdmin) everything inside one project (but no
/// global operation), [`ScopeAdmin`](Permission::ScopeAdmin) everything inside one
/// scope; the remaining variants are single rights. [`Permission::covers`] is that
/// order.
///
/// The three admin variants also carry the right to grant, revoke and transfer
/// ownership inside their reach, whatever the grant's `delegable` flag says.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// Everything, including global operations (checkpoint, backup, key rotation,
    /// metrics, audit, sessions) and creating projects.
    GlobalAdmin,
    /// Everything inside `project`: its scopes, tables, KV spaces and DDL.
    ProjectAdmin {
        /// The project.
        project: ProjectName,
    },
    /// Everything inside one scope: its tables (including table DDL) and KV space.
    ScopeAdmin {
        /// The project and scope.
        ns: Namespace,
    },
    /// Create, alter and drop any table in the scope.
    TableDdl {
        /// The project and scope.
        ns: Namespace,
    },
    /// Read (get, scan) one table.
    TableRead {
        /// The project and scope.
        ns: Namespace,
        /// The table.
        table: TableName,
    },
    /// Write (insert, upsert, update, delete) one table.
    TableWrite {
        /// The project and scope.
        ns: Namespace,
        /// The table.
        table: TableName,
    },
    /// Read (get, scan) the KV keys of the scope that start with `prefix`, compared
    /// byte-wise; the empty prefix is the whole KV space.
    KvRead {
        /// The project and scope.
        ns: Namespace,
        /// The key prefix, at most [`MAX_KV_PREFIX_LEN`] bytes.
        prefix: Vec<u8>,
    },
    /// Write (put, delete, numeric add/sub) the KV keys of the scope that start
    /// with `prefix`, compared byte-wise; the empty prefix is the whole KV space.
    KvWrite {
        /// The project and scope.
        ns: Namespace,
        /// The key prefix, at most [`MAX_KV_PREFIX_LEN`] bytes.
        prefix: Vec<u8>,
    },
}

impl Permission {
    /// The project this right is confined to; `None` for
    /// [`GlobalAdmin`](Permission::GlobalAdmin).
    pub fn project(&self) -> Option<&ProjectName> {
        match self {
            Permission::GlobalAdmin => None,
            Permission::ProjectAdmin { project } => Some(project),
            _ => self.namespace().map(|ns| &ns.project),
        }
    }

    /// The scope this right is confined to; `None` for the global and project
    /// admin rights.
    pub fn namespace(&self) -> Option<&Namespace> {
        match self {
            Permission::GlobalAdmin | Permission::ProjectAdmin { .. } => None,
            Permission::ScopeAdmin { ns }
            | Permission::TableDdl { ns }
            | Permission::TableRead { ns, .. }
            | Permission::TableWrite { ns, .. }
            | Permission::KvRead { ns, .. }
            | Permission::KvWrite { ns, .. } => Some(ns),
        }
    }

    /// Whether this is one of the admin rights (global, project, scope), which
    /// also carry the authority to grant and revoke inside their reach.
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Permission::GlobalAdmin
                | Permission::ProjectAdmin { .. }
                | Permission::ScopeAdmin { .. }
        )
    }

    /// Whether holding `self` implies holding `other`: everything `other` allows,
    /// `self` allows too.
    ///
    /// A KV right covers the same kind of right on the same scope whose prefix
    /// extends its own: `KvRead{b"ab"}` covers `KvRead{b"abc"}` and itself, but not
    /// `KvRead{b"a"}`, `KvRead{b""}` or any `KvWrite`. Table read and write are
    /// independent; [`TableDdl`](Permission::TableDdl) covers only itself.
    pub fn covers(&self, other: &Permission) -> bool {
        match self {
            Permission::GlobalAdmin => true,
            Permission::ProjectAdmin { project } => other.project() == Some(project),
            Permission::ScopeAdmin { ns } => other.namespace() == Some(ns),
            Permission::TableDdl { .. }
            | Permission::TableRead { .. }
            | Permission::TableWrite { .. } => self == other,
            Permission::KvRead { ns, prefix } => matches!(
                other,
                Permission::KvRead { ns: o_ns, prefix: o_prefix }
                    if o_ns == ns && o_prefix.starts_with(prefix)
            ),
            Permission::KvWrite { ns, prefix } => matches!(
                other,
                Permission::KvWrite { ns: o_ns, prefix: o_prefix }
                    if o_ns == ns && o_prefix.starts_with(prefix)
            ),
        }
    }

    /// Whether this right gives administrative authority over `resource` (the
    /// authority an owner has): true for `GlobalAdmin`, for `ProjectAdmin` of the
    /// resource's project and for `ScopeAdmin` of a scope or of a table's scope.
    pub fn administers(&self, resource: &Resource) -> bool {
        match self {
            Permission::GlobalAdmin => true,
            Permission::ProjectAdmin { project } => resource.project() == project,
            Permission::ScopeAdmin { ns } => resource.namespace() == Some(ns),
            _ => false,
        }
    }

    /// Whether the right names an engine-reserved (`_`-prefixed) project, scope or
    /// table. Such rights cannot be granted: reserved resources belong to the engine.
    pub fn names_reserved(&self) -> bool {
        let table_reserved = match self {
            Permission::TableRead { table, .. } | Permission::TableWrite { table, .. } => {
                table.is_reserved()
            }
            _ => false,
        };
        table_reserved
            || self.project().is_some_and(ProjectName::is_reserved)
            || self.namespace().is_some_and(|ns| ns.scope.is_reserved())
    }

    /// The KV prefix of a KV right.
    pub fn kv_prefix(&self) -> Option<&[u8]> {
        match self {
            Permission::KvRead { prefix, .. } | Permission::KvWrite { prefix, .. } => Some(prefix),
            _ => None,
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Permission::GlobalAdmin => f.write_str("GlobalAdmin"),
            Permission::ProjectAdmin { project } => write!(f, "ProjectAdmin({project})"),
            Permission::ScopeAdmin { ns } => write!(f, "ScopeAdmin({ns})"),
            Permission::TableDdl { ns } => write!(f, "TableDdl({ns})"),
            Permission::TableRead { ns, table } => write!(f, "TableRead({ns}/{table})"),
            Permission::TableWrite { ns, table } => write!(f, "TableWrite({ns}/{table})"),
            Permission::KvRead { ns, prefix } => {
                write!(f, "KvRead({ns}, prefix \"{}\")", prefix.escape_ascii())
            }
            Permission::KvWrite { ns, prefix } => {
                write!(f, "KvWrite({ns}, prefix \"{}\")", prefix.escape_ascii())
            }
        }
    }
}

/// Something that has an owner: a project, a scope or a table.
///
/// The engine records the creator as owner ([`PolicyState::set_owner`]). The owner
/// of a project has [`ProjectAdmin`](Permission::ProjectAdmin) rights over it, the
/// owner of a scope [`ScopeAdmin`](Permission::ScopeAdmin) rights, and the owner of
/// a table may read, write, alter and drop it and grant read and write on it.
///
/// [`PolicyState::set_owner`]: crate::PolicyState::set_owner
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// A project.
    Project(ProjectName),
    /// A scope.
    Scope(Namespace),
    /// A table.
    Table {
        /// The project and scope.
        ns: Namespace,
        /// The table.
        table: TableName,
    },
}

impl Resource {
    /// The project the resource is in (or is).
    pub fn project(&self) -> &ProjectName {
        match self {
            Resource::Project(project) => project,
            Resource::Scope(ns) | Resource::Table { ns, .. } => &ns.project,
        }
    }

    /// The scope the resource is in (or is); `None` for a project.
    pub fn namespace(&self) -> Option<&Namespace> {
        match self {
            Resource::Project(_) => None,
            Resource::Scope(ns) | Resource::Table { ns, .. } => Some(ns),
        }
    }

    /// Whether `other` is this resource or lies inside it.
    pub fn contains(&self, other: &Resource) -> bool {
        match self {
            Resource::Project(project) => other.project() == project,
            Resource::Scope(ns) => other.namespace() == Some(ns),
            Resource::Table { .. } => self == other,
        }
    }

    /// Whether the owner of this resource may grant `permission`: the project
    /// owner anything inside the project, the scope owner anything inside the
    /// scope, the table owner read and write on the table.
    pub fn owner_may_grant(&self, permission: &Permission) -> bool {
        match self {
            Resource::Project(project) => permission.project() == Some(project),
            Resource::Scope(ns) => permission.namespace() == Some(ns),
            Resource::Table { ns, table } => matches!(
                permission,
                Permission::TableRead { ns: p_ns, table: p_table }
                | Permission::TableWrite { ns: p_ns, table: p_table }
                    if p_ns == ns && p_table == table
            ),
        }
    }

    /// Whether `permission` is confined to this resource, i.e. is meaningless
    /// once the resource is gone. Used to drop the grants of a dropped resource.
    pub fn confines(&self, permission: &Permission) -> bool {
        self.owner_may_grant(permission)
    }

    /// Whether the resource has an engine-reserved (`_`-prefixed) name in any
    /// component. Reserved resources cannot be owned by callers.
    pub fn names_reserved(&self) -> bool {
        self.project().is_reserved()
            || self.namespace().is_some_and(|ns| ns.scope.is_reserved())
            || matches!(self, Resource::Table { table, .. } if table.is_reserved())
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Project(project) => write!(f, "project {project}"),
            Resource::Scope(ns) => write!(f, "scope {ns}"),
            Resource::Table { ns, table } => write!(f, "table {ns}/{table}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(p: &str, s: &str) -> Namespace {
        Namespace::parse(p, s).unwrap()
    }

    fn kv_read(prefix: &[u8]) -> Permission {
        Permission::KvRead {
            ns: ns("p", "s"),
            prefix: prefix.to_vec(),
        }
    }

    #[test]
    fn kv_prefixes_cover_byte_wise() {
        assert!(kv_read(b"ab").covers(&kv_read(b"abc")));
        assert!(kv_read(b"ab").covers(&kv_read(b"ab")));
        assert!(!kv_read(b"abc").covers(&kv_read(b"ab")));
        assert!(!kv_read(b"ab").covers(&kv_read(b"a")));
        assert!(!kv_read(b"ab").covers(&kv_read(b"")));
        assert!(kv_read(b"").covers(&kv_read(b"\xff")));
        assert!(!kv_read(b"a").covers(&Permission::KvWrite {
            ns: ns("p", "s"),
            prefix: b"ab".to_vec()
        }));
        assert!(!kv_read(b"").covers(&Permission::KvRead {
            ns: ns("p", "t"),
            prefix: b"ab".to_vec()
        }));
    }

    #[test]
    fn admin_rights_nest() {
        let project = ProjectName::new("p").unwrap();
        let pa = Permission::ProjectAdmin {
            project: project.clone(),
        };
        let sa = Permission::ScopeAdmin { ns: ns("p", "s") };
        assert!(Permission::GlobalAdmin.covers(&pa));
        assert!(pa.covers(&pa) && pa.covers(&sa) && pa.covers(&kv_read(b"")));
        assert!(!pa.covers(&Permission::GlobalAdmin));
        assert!(!pa.covers(&Permission::ProjectAdmin {
            project: ProjectName::new("q").unwrap()
        }));
        assert!(sa.covers(&sa) && sa.covers(&kv_read(b"x")));
        assert!(!sa.covers(&pa));
        assert!(!sa.covers(&Permission::ScopeAdmin { ns: ns("p", "t") }));
        let ddl = Permission::TableDdl { ns: ns("p", "s") };
        assert!(sa.covers(&ddl) && ddl.covers(&ddl) && !ddl.covers(&sa));
        assert!(pa.administers(&Resource::Scope(ns("p", "s"))));
        assert!(!sa.administers(&Resource::Project(project)));
    }

    #[test]
    fn reserved_names_are_detected() {
        let sys = Namespace::new(
            ProjectName::system(),
            aedb_model::ScopeName::new("s").unwrap(),
        );
        assert!(Permission::ScopeAdmin { ns: sys.clone() }.names_reserved());
        assert!(Resource::Scope(sys).names_reserved());
        let t = Permission::TableRead {
            ns: ns("p", "s"),
            table: TableName::reserved("_audit").unwrap(),
        };
        assert!(t.names_reserved());
        assert!(!kv_read(b"").names_reserved());
    }
}
