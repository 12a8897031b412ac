//! Validated identifiers: project, scope, table and column names, and the
//! [`Namespace`] (project + scope) that KV spaces and tables live in.
//!
//! A name is 1..=[`MAX_NAME_LEN`] bytes of `[A-Za-z0-9_-]`. Names given by users
//! must not start with `_`: that prefix is reserved for names the engine creates
//! itself, such as the [`ProjectName::system`] project that holds system tables.
//! Internal code that needs a reserved name uses the `reserved` constructors.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// The longest name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// The prefix that marks engine-reserved names.
pub const RESERVED_PREFIX: char = '_';

/// Which kind of name a [`NameError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NameKind {
    /// A [`ProjectName`].
    Project,
    /// A [`ScopeName`].
    Scope,
    /// A [`TableName`].
    Table,
    /// A [`ColumnName`].
    Column,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Project => "project",
            NameKind::Scope => "scope",
            NameKind::Table => "table",
            NameKind::Column => "column",
        })
    }
}

/// Why a string is not a valid name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is the empty string.
    #[error("{kind} name is empty; names are 1..={MAX_NAME_LEN} bytes of [A-Za-z0-9_-]")]
    Empty {
        /// Kind of name.
        kind: NameKind,
    },
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("{kind} name is {len} bytes; the maximum is {MAX_NAME_LEN}")]
    TooLong {
        /// Kind of name.
        kind: NameKind,
        /// Its length in bytes.
        len: usize,
    },
    /// The name contains a character outside `[A-Za-z0-9_-]`.
    #[error("{kind} name {name:?} has {ch:?} at byte {position}; only [A-Za-z0-9_-] is allowed")]
    InvalidChar {
        /// Kind of name.
        kind: NameKind,
        /// The offending name.
        name: String,
        /// The first offending character.
        ch: char,
        /// Its byte offset.
        position: usize,
    },
    /// The name starts with `_`, which is reserved for engine-created names.
    #[error("{kind} name {name:?} starts with '_', which is reserved for system names")]
    Reserved {
        /// Kind of name.
        kind: NameKind,
        /// The offending name.
        name: String,
    },
}

fn validate(kind: NameKind, s: &str, allow_reserved: bool) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if s.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { kind, len: s.len() });
    }
    if let Some((position, ch)) = s
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    {
        return Err(NameError::InvalidChar {
            kind,
            name: s.to_owned(),
            ch,
            position,
        });
    }
    if !allow_reserved && s.starts_with(RESERVED_PREFIX) {
        return Err(NameError::Reserved {
            kind,
            name: s.to_owned(),
        });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $ty(Arc<str>);

        impl $ty {
            /// Validates a user-supplied name: 1..=64 bytes of `[A-Za-z0-9_-]`,
            /// not starting with `_`.
            pub fn new(name: &str) -> Result<Self, NameError> {
                validate($kind, name, false)?;
                Ok($ty(Arc::from(name)))
            }

            /// Validates a name that may be reserved (start with `_`).
            ///
            /// For engine-internal names and for decoding names that were
            /// validated when first written; never for user input.
            pub fn reserved(name: &str) -> Result<Self, NameError> {
                validate($kind, name, true)?;
                Ok($ty(Arc::from(name)))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Whether the name is reserved for the engine (starts with `_`).
            pub fn is_reserved(&self) -> bool {
                self.0.starts_with(RESERVED_PREFIX)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($ty), &*self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = NameError;
            fn try_from(name: &str) -> Result<Self, NameError> {
                $ty::new(name)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = NameError;
            fn from_str(name: &str) -> Result<Self, NameError> {
                $ty::new(name)
            }
        }
    };
}

name_type!(
    /// The name of a project, the top level of the hierarchy.
    ProjectName,
    NameKind::Project
);
name_type!(
    /// The name of a scope inside a project.
    ScopeName,
    NameKind::Scope
);
name_type!(
    /// The name of a table inside a namespace.
    TableName,
    NameKind::Table
);
name_type!(
    /// The name of a column in a table schema.
    ColumnName,
    NameKind::Column
);

/// The name of the reserved project that holds system tables.
pub const SYSTEM_PROJECT: &str = "_system";

impl ProjectName {
    /// The reserved `_system` project, home of the system tables.
    pub fn system() -> ProjectName {
        ProjectName(Arc::from(SYSTEM_PROJECT))
    }

    /// Whether this is the `_system` project.
    pub fn is_system(&self) -> bool {
        &*self.0 == SYSTEM_PROJECT
    }
}

/// A project and a scope: the unit that owns one KV space and a set of tables.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Namespace {
    /// The project.
    pub project: ProjectName,
    /// The scope inside the project.
    pub scope: ScopeName,
}

impl Namespace {
    /// Pairs a project and a scope.
    pub fn new(project: ProjectName, scope: ScopeName) -> Namespace {
        Namespace { project, scope }
    }

    /// Validates both user-supplied names and pairs them.
    pub fn parse(project: &str, scope: &str) -> Result<Namespace, NameError> {
        Ok(Namespace {
            project: ProjectName::new(project)?,
            scope: ScopeName::new(scope)?,
        })
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.project, self.scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        for s in ["a", "A-b_9", &"x".repeat(64)] {
            assert_eq!(ProjectName::new(s).unwrap().as_str(), s);
            assert_eq!(ColumnName::new(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn empty_is_rejected() {
        assert_eq!(
            ScopeName::new(""),
            Err(NameError::Empty {
                kind: NameKind::Scope
            })
        );
    }

    #[test]
    fn too_long_is_rejected() {
        assert_eq!(
            TableName::new(&"x".repeat(65)),
            Err(NameError::TooLong {
                kind: NameKind::Table,
                len: 65
            })
        );
    }

    #[test]
    fn invalid_char_is_rejected() {
        let err = ColumnName::new("ab c").unwrap_err();
        assert_eq!(
            err,
            NameError::InvalidChar {
                kind: NameKind::Column,
                name: "ab c".into(),
                ch: ' ',
                position: 2
            }
        );
        assert!(matches!(
            ProjectName::new("é"),
            Err(NameError::InvalidChar { ch: 'é', .. })
        ));
        assert!(matches!(
            ProjectName::new("a/b"),
            Err(NameError::InvalidChar { ch: '/', .. })
        ));
    }

    #[test]
    fn reserved_prefix_needs_reserved_constructor() {
        assert!(matches!(
            ProjectName::new("_system"),
            Err(NameError::Reserved { .. })
        ));
        let sys = ProjectName::reserved("_system").unwrap();
        assert_eq!(sys, ProjectName::system());
        assert!(sys.is_system() && sys.is_reserved());
        assert!(ProjectName::reserved("").is_err());
        assert!(ProjectName::reserved("_a b").is_err());
    }

    #[test]
    fn namespace_parse_and_display() {
        let ns = Namespace::parse("p", "s").unwrap();
        assert_eq!(ns.to_string(), "p/s");
        assert!(Namespace::parse("p", "_s").is_err());
    }
}
