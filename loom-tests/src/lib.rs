//! loom models of aedb's hand-written concurrency protocols.
//!
//! The models live in `tests/` and compile only under `--cfg loom`; they drive the
//! production code of `aedb-sync` (the group-commit hand-off, the completion slot, the
//! mailbox model and snapshot publication) through loom's exhaustive scheduler:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 \
//!     cargo test -p aedb-loom-tests --release --target-dir target/loom
//! ```
//!
//! This crate owns no runtime code.
#![forbid(unsafe_code)]
