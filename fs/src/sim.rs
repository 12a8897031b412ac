//! A deterministic simulated disk for power-loss testing: [`SimFs`].

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{DirLockGuard, DiskFile, FileBytes, FileSystem, OpenMode, SharedFs};

/// The size of the sectors a power cut writes whole or not at all (except one torn sector).
pub const SECTOR_SIZE: u64 = 512;

/// The largest offset a write may reach, and the largest file [`FileSystem::read_whole`]
/// copies: 1 GiB. Lengths set by `set_len` / `allocate` may go higher (the zeros past the
/// last written byte are not stored).
pub const MAX_DATA_LEN: u64 = 1 << 30;

/// A fault [`SimFs::fail_next`] injects into an operation. The failing operation has no
/// effect, except for the first half of a [`SimFault::ShortWrite`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SimFault {
    /// EIO: an error with [`io::Error::raw_os_error`] `Some(5)`.
    Eio,
    /// ENOSPC: an error of kind [`io::ErrorKind::StorageFull`].
    NoSpace,
    /// On a write: the first half of the buffer (`buf.len() / 2` bytes, at the requested
    /// offset) is written (volatile, like any write), then the call fails as
    /// [`SimFault::NoSpace`] does. On any other operation: the same as `NoSpace`.
    ShortWrite,
    /// EXDEV: an error with [`io::Error::raw_os_error`] `Some(18)` (kind
    /// [`io::ErrorKind::CrossesDevices`]), what a real [`FileSystem::hard_link`] answers
    /// when its two paths are on different devices (the simulated disk is one device).
    CrossDevice,
}

/// A counted operation, as [`SimOp::kind`] names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// [`FileSystem::open`] in a creating mode.
    Create,
    /// [`DiskFile::write_all_at`].
    Write,
    /// [`DiskFile::set_len`].
    SetLen,
    /// [`DiskFile::allocate`].
    Allocate,
    /// [`DiskFile::sync_data`].
    SyncData,
    /// [`DiskFile::sync_all`].
    SyncAll,
    /// [`FileSystem::sync_dir`].
    SyncDir,
    /// [`FileSystem::rename`].
    Rename,
    /// [`FileSystem::remove_file`].
    Remove,
    /// [`FileSystem::hard_link`].
    Link,
    /// [`FileSystem::create_dir_all`].
    CreateDir,
    /// [`FileSystem::try_lock`].
    Lock,
}

/// Which operations a fault from [`SimFs::fail_next`] applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultOp {
    /// Every counted operation.
    Any,
    /// [`DiskFile::write_all_at`].
    Write,
    /// [`DiskFile::set_len`] and [`DiskFile::allocate`].
    Resize,
    /// [`DiskFile::sync_data`] and [`DiskFile::sync_all`] (not [`FileSystem::sync_dir`]).
    Sync,
    /// [`FileSystem::sync_dir`].
    SyncDir,
    /// [`FileSystem::rename`].
    Rename,
    /// [`FileSystem::remove_file`].
    Remove,
    /// [`FileSystem::hard_link`].
    Link,
    /// The operations that create: `open` in a creating mode, `create_dir_all`, `try_lock`.
    Create,
}

impl FaultOp {
    /// Whether an operation of `kind` is one of these.
    pub fn matches(self, kind: OpKind) -> bool {
        match self {
            FaultOp::Any => true,
            FaultOp::Write => kind == OpKind::Write,
            FaultOp::Resize => matches!(kind, OpKind::SetLen | OpKind::Allocate),
            FaultOp::Sync => matches!(kind, OpKind::SyncData | OpKind::SyncAll),
            FaultOp::SyncDir => kind == OpKind::SyncDir,
            FaultOp::Rename => kind == OpKind::Rename,
            FaultOp::Remove => kind == OpKind::Remove,
            FaultOp::Link => kind == OpKind::Link,
            FaultOp::Create => matches!(kind, OpKind::Create | OpKind::CreateDir | OpKind::Lock),
        }
    }
}

/// A counted operation about to run, as a [`SimFs::fail_when`] predicate sees it.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct SimOp<'a> {
    /// What it is.
    pub kind: OpKind,
    /// The path it is on: the file's path as opened (for file operations), the source of
    /// a rename or the original of a hard link, the directory of a `sync_dir`.
    pub path: &'a Path,
    /// The destination of a rename, the new name of a hard link.
    pub to: Option<&'a Path>,
    /// The offset of a write (0 otherwise).
    pub offset: u64,
    /// The length of a write's buffer, or the length of a `set_len` / `allocate` (0
    /// otherwise).
    pub len: u64,
}

/// The files and directories of a [`SimFs`], in one of its two views, for comparisons.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DiskImage {
    /// Every directory (the roots left out).
    pub dirs: BTreeSet<PathBuf>,
    /// Every file's path (its directory joined with its name) and content.
    pub files: BTreeMap<PathBuf, Vec<u8>>,
}

/// The simulated disk: in memory, deterministic, losing unsynced changes on a power cut.
///
/// Create it with [`SimFs::new`]; use it as a [`SharedFs`] through [`SimFs::shared`] (or
/// by coercing an `Arc<SimFs>`), and keep the `Arc<SimFs>` to cut the power.
///
/// # The model
///
/// Everything lives in memory. Paths are opaque: they are normalised only by dropping
/// `.` components and trailing separators (`..` is *not* resolved), and the roots (`/`,
/// and the empty path for relative names) always exist.
///
/// * **Files** are inodes, separate from their names. Each has a *volatile* content (what
///   reads see: every write since it was created) and a *durable* content (what the last
///   completed [`DiskFile::sync_data`] / [`DiskFile::sync_all`] covered; the two calls are
///   treated alike). Writes past the end zero-fill the gap; [`DiskFile::set_len`] and
///   [`DiskFile::allocate`] (which grows with zeros and never shrinks) are volatile until a
///   sync too. The inode remembers every unsynced change, in order.
/// * **Directories** map names to inodes. Each has *volatile* entries (what lookups see)
///   and *durable* entries (as of the last [`FileSystem::sync_dir`] of exactly that
///   directory). Creations, renames and removals since are remembered, in order, as
///   pending entry changes. A rename is one change: syncing *either* directory of a
///   cross-directory rename makes the whole rename durable (as ext4's journal does), and
///   with it the earlier pending changes of the names it touches. A hard link
///   ([`FileSystem::hard_link`]) is one more entry naming the same inode: a pending
///   creation in the link's directory, durable after its `sync_dir`; the file lives on
///   while any name (or handle) reaches it.
/// * **Directories themselves** are simplified: [`FileSystem::create_dir_all`] is
///   immediately durable, and directories can be neither removed nor renamed (only files
///   are renamed; renaming a directory fails with [`io::ErrorKind::Unsupported`]).
///   [`FileSystem::file_len`] of a directory is 0; [`FileSystem::sync_dir`] of a file
///   fails with [`io::ErrorKind::NotADirectory`].
///
/// # A power cut
///
/// [`SimFs::crash`] (or [`SimFs::crash_with`] with an explicit seed) replaces the whole
/// state with what a power loss could leave, choosing with a seeded PRNG:
///
/// * every directory gets its durable entries plus some of its pending changes (creates,
///   removals, renames): each change gets a coin flip, and one that lands brings along
///   what a journal would have written before it, the earlier changes of the same names.
///   A rename lands whole or not at all, so a file renamed after its name was made durable
///   is found under exactly one of its names (even after a chain of renames);
/// * every surviving file gets its durable content plus one of: none of its unsynced
///   changes; all of them; a prefix of them in order (the change after the prefix maybe
///   cut short at a sector boundary, maybe with a torn last sector); or any subset of
///   its changes at sector granularity (each 512-byte-aligned piece of each write, each
///   `set_len` / `allocate` independently), whole pieces only: sectors are atomic, and
///   only the sector being written when the power failed (the prefix case) tears. The
///   length follows from the changes that survive: the durable
///   length, grown as the surviving writes need, cut or grown by a surviving `set_len`;
///   regions that a surviving extension covers but whose data did not survive read as
///   zeros. Files no surviving directory entry names are gone.
///
/// The result is the new baseline (durable = volatile). Every [`DiskFile`] and
/// [`DirLockGuard`] from before the crash is stale: its operations fail with
/// [`io::ErrorKind::StaleNetworkFileHandle`], and all locks are released. Armed faults
/// and crash points are cleared; the operation counter keeps counting.
///
/// Same seed and same sequence of operations give the same result: all state is kept in
/// ordered maps, and the PRNG is drawn from in a fixed order.
///
/// # Counted operations, crash points and faults
///
/// The *mutating* operations are counted ([`SimFs::op_count`]): `open` in a creating mode
/// ([`OpenMode::Create`], [`OpenMode::CreateNew`], [`OpenMode::Truncate`]; counted even
/// when the file exists), `write_all_at`, `set_len`, `allocate`, `sync_data`, `sync_all`,
/// `rename`, `remove_file`, `hard_link`, `create_dir_all`, `sync_dir` and `try_lock` (which
/// may create its file). An operation is counted when attempted, before its arguments are checked.
/// Reads (`read_exact_at`, `len`, `read_whole`, `read_dir`, `exists`, `is_dir`,
/// `file_len`, `open` with [`OpenMode::Existing`]) are not counted and cannot be made to
/// fail, except by a dead machine. Operations on stale handles fail without being counted.
///
/// [`SimFs::arm_crash_after`]`(n)` kills the machine at the `n`-th counted operation from
/// now: that operation fails without effect, and every later operation (reads included;
/// [`FileSystem::exists`] and [`FileSystem::is_dir`] answer `false`) fails too, until
/// [`SimFs::crash`] reboots the machine.
///
/// [`SimFs::fail_next`], [`SimFs::fail_nth`] and [`SimFs::fail_when`] make one later
/// counted operation fail with a [`SimFault`]: EIO, ENOSPC, a short write, or EXDEV (a
/// link across devices).
///
/// ```
/// use aedb_fs::{FileSystem, OpenMode, SimFs};
/// use std::path::Path;
///
/// let sim = SimFs::new(7);
/// let fs = sim.shared();
/// fs.create_dir_all(Path::new("/db"))?;
/// let file = fs.open(Path::new("/db/data"), OpenMode::CreateNew)?;
/// file.write_all_at(b"kept", 0)?;
/// file.sync_data()?;
/// fs.sync_dir(Path::new("/db"))?;
/// file.write_all_at(b" maybe", 4)?; // never synced
/// sim.crash();
/// let bytes = aedb_fs::read_file(&*fs, Path::new("/db/data"))?;
/// assert!(bytes.starts_with(b"kept"));
/// assert!(file.len().is_err()); // a handle from before the crash is stale
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct SimFs {
    inner: Arc<Shared>,
}

/// The state, behind the one lock every handle shares.
struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

type Ino = u64;
type Entries = BTreeMap<OsString, Ino>;
type Predicate = Box<dyn Fn(&SimOp<'_>) -> bool + Send>;

struct State {
    seed: u64,
    rng: Rng,
    /// Bumped by every crash; handles and lock guards remember the epoch they belong to.
    epoch: u64,
    ops: u64,
    crash_at: Option<u64>,
    dead: bool,
    faults: Vec<ArmedFault>,
    next_ino: Ino,
    inodes: BTreeMap<Ino, Inode>,
    /// The volatile view: every directory (roots included) and its file entries.
    dirs: BTreeMap<PathBuf, Entries>,
    /// The durable entries of every directory (same keys as `dirs`).
    durable_dirs: BTreeMap<PathBuf, Entries>,
    /// Entry changes not yet made durable, oldest first.
    pending: Vec<EntryChange>,
    next_group: u64,
    locks: BTreeMap<PathBuf, u64>,
    next_lock: u64,
}

struct ArmedFault {
    matches: Predicate,
    remaining: u64,
    fault: SimFault,
}

/// One change of one directory entry: `dir/name` now names `ino` (`Some`) or nothing.
/// The two halves of a rename share a group; a crash keeps or drops a whole group.
struct EntryChange {
    dir: PathBuf,
    name: OsString,
    ino: Option<Ino>,
    group: u64,
}

#[derive(Default)]
struct Inode {
    data: Content,
    durable: Content,
    /// Changes to the content since the last sync, oldest first.
    pending: Vec<Change>,
    handles: usize,
}

#[derive(Clone)]
enum Change {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
    Allocate(u64),
}

/// A file's content: `bytes`, then zeros up to `len` (`bytes.len() <= len`).
#[derive(Clone, Debug, Default)]
struct Content {
    bytes: Vec<u8>,
    len: u64,
}

impl Content {
    fn write(&mut self, offset: u64, data: &[u8]) {
        let start = to_usize(offset);
        let end = start + data.len();
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        self.bytes[start..end].copy_from_slice(data);
        self.len = self.len.max(end as u64);
    }

    fn set_len(&mut self, len: u64) {
        if len < self.bytes.len() as u64 {
            self.bytes.truncate(to_usize(len));
        }
        self.len = len;
    }

    fn apply(&mut self, change: &Change) {
        match change {
            Change::Write { offset, data } => self.write(*offset, data),
            Change::SetLen(len) => self.set_len(*len),
            Change::Allocate(len) => self.len = self.len.max(*len),
        }
    }

    fn read(&self, buf: &mut [u8], offset: u64) -> bool {
        let Some(end) = offset.checked_add(buf.len() as u64) else {
            return false;
        };
        if end > self.len {
            return false;
        }
        let have = self.bytes.len() as u64;
        let from_bytes = end.min(have).saturating_sub(offset);
        if from_bytes > 0 {
            let start = to_usize(offset);
            let n = to_usize(from_bytes);
            buf[..n].copy_from_slice(&self.bytes[start..start + n]);
        }
        buf[to_usize(from_bytes)..].fill(0);
        true
    }

    fn to_vec(&self) -> io::Result<Vec<u8>> {
        if self.len > MAX_DATA_LEN {
            return Err(too_large());
        }
        let mut out = self.bytes.clone();
        out.resize(to_usize(self.len), 0);
        Ok(out)
    }
}

/// Offsets below [`MAX_DATA_LEN`] (checked before any byte is stored) fit a `usize`.
fn to_usize(n: u64) -> usize {
    usize::try_from(n).expect("offsets are bounded by MAX_DATA_LEN")
}

/// SplitMix64: tiny, fast, and plenty for choosing crash outcomes.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
}

fn normalize(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

fn is_root(path: &Path) -> bool {
    path.parent().is_none()
}

/// `(parent, name)` of a normalised path that can name a file.
fn split(path: &Path) -> io::Result<(PathBuf, OsString)> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((parent.to_path_buf(), name.to_os_string())),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("SimFs: {} cannot name a file", path.display()),
        )),
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("SimFs: {}: no such file or directory", path.display()),
    )
}

fn is_a_directory(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::IsADirectory,
        format!("SimFs: {} is a directory", path.display()),
    )
}

fn dead() -> io::Error {
    io::Error::other("SimFs: the simulated machine lost power; call SimFs::crash to reboot it")
}

fn stale() -> io::Error {
    io::Error::new(
        io::ErrorKind::StaleNetworkFileHandle,
        "SimFs: stale handle from before a power cut",
    )
}

fn too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("SimFs: files hold at most {MAX_DATA_LEN} bytes of data"),
    )
}

fn fault_error(fault: SimFault) -> io::Error {
    match fault {
        SimFault::Eio => io::Error::from_raw_os_error(5),
        SimFault::CrossDevice => io::Error::from_raw_os_error(18),
        SimFault::NoSpace | SimFault::ShortWrite => io::Error::new(
            io::ErrorKind::StorageFull,
            "SimFs: injected ENOSPC (no space left on device)",
        ),
    }
}

impl State {
    fn new(seed: u64) -> State {
        let mut dirs = BTreeMap::new();
        for root in ["/", ""] {
            dirs.insert(PathBuf::from(root), Entries::new());
        }
        State {
            seed,
            rng: Rng(seed),
            epoch: 0,
            ops: 0,
            crash_at: None,
            dead: false,
            faults: Vec::new(),
            next_ino: 1,
            inodes: BTreeMap::new(),
            durable_dirs: dirs.clone(),
            dirs,
            pending: Vec::new(),
            next_group: 0,
            locks: BTreeMap::new(),
            next_lock: 0,
        }
    }

    fn alive(&self) -> io::Result<()> {
        if self.dead { Err(dead()) } else { Ok(()) }
    }

    /// Counts a mutating operation and applies the crash point and the armed faults:
    /// `Err` if the machine is (or just went) dead, `Ok(Some(fault))` if a fault fires.
    fn begin(&mut self, op: &SimOp<'_>) -> io::Result<Option<SimFault>> {
        self.alive()?;
        self.ops += 1;
        if self.crash_at.is_some_and(|at| self.ops >= at) {
            self.crash_at = None;
            self.dead = true;
            return Err(dead());
        }
        for i in 0..self.faults.len() {
            let armed = &mut self.faults[i];
            if (armed.matches)(op) {
                armed.remaining -= 1;
                if armed.remaining == 0 {
                    return Ok(Some(self.faults.remove(i).fault));
                }
            }
        }
        Ok(None)
    }

    /// Like [`State::begin`], for operations a short write means nothing to.
    fn begin_plain(&mut self, op: &SimOp<'_>) -> io::Result<()> {
        match self.begin(op)? {
            Some(fault) => Err(fault_error(fault)),
            None => Ok(()),
        }
    }

    fn ensure_dir(&mut self, dir: &Path) {
        if !self.dirs.contains_key(dir) {
            self.dirs.insert(dir.to_path_buf(), Entries::new());
            self.durable_dirs.insert(dir.to_path_buf(), Entries::new());
        }
    }

    fn is_dir(&self, path: &Path) -> bool {
        is_root(path) || self.dirs.contains_key(path)
    }

    fn lookup(&self, path: &Path) -> Option<Ino> {
        let (parent, name) = split(path).ok()?;
        self.dirs.get(&parent)?.get(&name).copied()
    }

    /// Checks that `path` can name a file in an existing directory.
    fn file_slot(&mut self, path: &Path) -> io::Result<(PathBuf, OsString)> {
        if self.is_dir(path) {
            return Err(is_a_directory(path));
        }
        let (parent, name) = split(path)?;
        if !self.is_dir(&parent) {
            return Err(not_found(path));
        }
        self.ensure_dir(&parent);
        Ok((parent, name))
    }

    /// Points (or, with `None`, stops pointing) `dir/name` at an inode, volatile.
    fn set_entry(&mut self, dir: &Path, name: &OsStr, ino: Option<Ino>, group: u64) {
        let entries = self.dirs.get_mut(dir).expect("the directory exists");
        match ino {
            Some(ino) => entries.insert(name.to_os_string(), ino),
            None => entries.remove(name),
        };
        self.pending.push(EntryChange {
            dir: dir.to_path_buf(),
            name: name.to_os_string(),
            ino,
            group,
        });
    }

    fn new_group(&mut self) -> u64 {
        self.next_group += 1;
        self.next_group
    }

    fn create_file(&mut self, dir: &Path, name: &OsStr) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(ino, Inode::default());
        let group = self.new_group();
        self.set_entry(dir, name, Some(ino), group);
        ino
    }

    fn change(&mut self, ino: Ino, change: Change) {
        let inode = self
            .inodes
            .get_mut(&ino)
            .expect("open files keep their inode");
        inode.data.apply(&change);
        inode.pending.push(change);
    }

    /// Makes `dir`'s pending entry changes durable, with what they depend on (see
    /// [`landing`]): the other half of a rename, and the earlier changes of the names
    /// they touch, in whatever directory.
    fn sync_dir(&mut self, dir: &Path) {
        let seeds = self
            .pending
            .iter()
            .filter(|c| c.dir == dir)
            .map(|c| c.group)
            .collect();
        let committed = landing(&self.pending, seeds);
        for change in std::mem::take(&mut self.pending) {
            if committed.contains(&change.group) {
                apply_entry_change(&mut self.durable_dirs, change);
            } else {
                self.pending.push(change);
            }
        }
        debug_assert_eq!(self.durable_dirs[dir], self.dirs[dir]);
        self.collect_garbage();
    }

    /// Drops the inodes nothing can reach any more: no entry (volatile, durable or
    /// pending) names them and no handle has them open.
    fn collect_garbage(&mut self) {
        let mut live: BTreeSet<Ino> = BTreeSet::new();
        for entries in self.dirs.values().chain(self.durable_dirs.values()) {
            live.extend(entries.values().copied());
        }
        live.extend(self.pending.iter().filter_map(|c| c.ino));
        self.inodes
            .retain(|ino, inode| inode.handles > 0 || live.contains(ino));
    }

    fn image(&self, durable: bool) -> DiskImage {
        let mut image = DiskImage::default();
        let dirs = if durable {
            &self.durable_dirs
        } else {
            &self.dirs
        };
        for (dir, entries) in dirs {
            if !is_root(dir) {
                image.dirs.insert(dir.clone());
            }
            for (name, ino) in entries {
                let inode = &self.inodes[ino];
                let content = if durable { &inode.durable } else { &inode.data };
                let bytes = content.to_vec().expect("the image fits in memory");
                image.files.insert(dir.join(name), bytes);
            }
        }
        image
    }

    /// Replaces the state with what a power cut leaves (see the [`SimFs`] documentation).
    fn crash(&mut self, rng: &mut Rng) {
        // The directory entries: the durable ones, plus the pending changes whose coin
        // came up, with what they depend on.
        let mut coins: BTreeMap<u64, bool> = BTreeMap::new();
        for change in &self.pending {
            coins.entry(change.group).or_insert_with(|| rng.coin());
        }
        let seeds = coins
            .into_iter()
            .filter(|&(_, c)| c)
            .map(|(g, _)| g)
            .collect();
        let landed = landing(&self.pending, seeds);
        let mut dirs = self.durable_dirs.clone();
        for change in std::mem::take(&mut self.pending) {
            if landed.contains(&change.group) {
                apply_entry_change(&mut dirs, change);
            }
        }
        // A file entry a directory was made over (after its removal) loses to it.
        let dir_paths: BTreeSet<PathBuf> = dirs.keys().cloned().collect();
        for (dir, entries) in &mut dirs {
            entries.retain(|name, _| !dir_paths.contains(&dir.join(name)));
        }
        // The files: the ones still named, each with its surviving content.
        let live: BTreeSet<Ino> = dirs.values().flat_map(|e| e.values().copied()).collect();
        let mut inodes = BTreeMap::new();
        for (ino, inode) in std::mem::take(&mut self.inodes) {
            if live.contains(&ino) {
                let content = surviving_content(&inode, rng);
                inodes.insert(
                    ino,
                    Inode {
                        durable: content.clone(),
                        data: content,
                        pending: Vec::new(),
                        handles: 0,
                    },
                );
            }
        }
        self.inodes = inodes;
        self.durable_dirs = dirs.clone();
        self.dirs = dirs;
        self.epoch += 1;
        self.dead = false;
        self.crash_at = None;
        self.faults.clear();
        self.locks.clear();
    }
}

fn apply_entry_change(dirs: &mut BTreeMap<PathBuf, Entries>, change: EntryChange) {
    let entries = dirs.get_mut(&change.dir).expect("directories are durable");
    match change.ino {
        Some(ino) => entries.insert(change.name, ino),
        None => entries.remove(&change.name),
    };
}

/// The change groups that reach the disk when `seeds` do: a group lands whole (both
/// halves of a rename), and a change lands only after every earlier change of the same
/// name (a journal replays in order). So every name ends with a prefix of its history,
/// and a file is never left under two names, or none, by renames that landed out of order.
fn landing(pending: &[EntryChange], seeds: BTreeSet<u64>) -> BTreeSet<u64> {
    type Name<'a> = (&'a Path, &'a OsStr);
    let mut by_name: BTreeMap<Name<'_>, Vec<usize>> = BTreeMap::new();
    let mut by_group: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    let mut rank = Vec::with_capacity(pending.len());
    for (i, change) in pending.iter().enumerate() {
        let history = by_name.entry((&change.dir, &change.name)).or_default();
        rank.push(history.len());
        history.push(i);
        by_group.entry(change.group).or_default().push(i);
    }
    // Per name, how many of its first changes are already known to land.
    let mut forced: BTreeMap<Name<'_>, usize> = BTreeMap::new();
    let mut landed = BTreeSet::new();
    let mut work: Vec<u64> = seeds.into_iter().collect();
    while let Some(group) = work.pop() {
        if !landed.insert(group) {
            continue;
        }
        for &i in by_group.get(&group).into_iter().flatten() {
            let name = (pending[i].dir.as_path(), pending[i].name.as_os_str());
            let done = forced.entry(name).or_insert(0);
            while *done < rank[i] {
                work.push(pending[by_name[&name][*done]].group);
                *done += 1;
            }
        }
    }
    landed
}

/// Splits a write at sector boundaries of the file.
fn sectors(offset: u64, data: &[u8]) -> Vec<Change> {
    let mut pieces = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let pos = offset + at as u64;
        let room = (SECTOR_SIZE - pos % SECTOR_SIZE) as usize;
        let n = room.min(data.len() - at);
        pieces.push(Change::Write {
            offset: pos,
            data: data[at..at + n].to_vec(),
        });
        at += n;
    }
    pieces
}

/// Cuts a sector-sized write piece to its first `1..len` bytes (a torn sector), if it
/// has more than one byte.
fn tear(change: &mut Change, rng: &mut Rng) {
    if let Change::Write { data, .. } = change
        && data.len() > 1
    {
        let keep = 1 + rng.below(data.len() as u64 - 1);
        data.truncate(to_usize(keep));
    }
}

/// The content a power cut leaves of a file: its durable content plus a seeded choice
/// among its unsynced changes.
fn surviving_content(inode: &Inode, rng: &mut Rng) -> Content {
    let pending = &inode.pending;
    if pending.is_empty() {
        return inode.durable.clone();
    }
    let mut content = inode.durable.clone();
    match rng.below(4) {
        // Nothing unsynced reached the disk.
        0 => {}
        // Everything did.
        1 => return inode.data.clone(),
        // A prefix of the changes, the next one cut short at a sector boundary, its last
        // sector possibly torn.
        2 => {
            let k = to_usize(rng.below(pending.len() as u64 + 1));
            for change in &pending[..k] {
                content.apply(change);
            }
            if let Some(Change::Write { offset, data }) = pending.get(k) {
                let pieces = sectors(*offset, data);
                let whole = to_usize(rng.below(pieces.len() as u64));
                for piece in &pieces[..whole] {
                    content.apply(piece);
                }
                if rng.coin() {
                    let mut torn = pieces[whole].clone();
                    tear(&mut torn, rng);
                    content.apply(&torn);
                }
            }
        }
        // Any subset of the sector pieces and resizes (sectors are atomic; only the
        // sector being written when the power failed, the prefix case above, tears).
        _ => {
            let mut pieces: Vec<Change> = Vec::new();
            for change in pending {
                let split = match change {
                    Change::Write { offset, data } => sectors(*offset, data),
                    other => vec![other.clone()],
                };
                for change in split {
                    if rng.coin() {
                        pieces.push(change);
                    }
                }
            }
            for piece in &pieces {
                content.apply(piece);
            }
        }
    }
    content
}

impl SimFs {
    /// A new, empty simulated disk (only the roots `/` and the empty path exist), whose
    /// power cuts are chosen by a PRNG seeded with `seed`.
    pub fn new(seed: u64) -> Arc<SimFs> {
        Arc::new(SimFs {
            inner: Arc::new(Shared {
                state: Mutex::new(State::new(seed)),
            }),
        })
    }

    /// This disk as the engine holds a file system.
    pub fn shared(self: &Arc<Self>) -> SharedFs {
        Arc::clone(self) as SharedFs
    }

    /// The seed given to [`SimFs::new`] or the last [`SimFs::reseed`].
    pub fn seed(&self) -> u64 {
        self.inner.lock().seed
    }

    /// Restarts the PRNG that [`SimFs::crash`] draws from with `seed`.
    pub fn reseed(&self, seed: u64) {
        let mut state = self.inner.lock();
        state.seed = seed;
        state.rng = Rng(seed);
    }

    /// Cuts the power and reboots: the state becomes what a power loss leaves, chosen by
    /// the disk's PRNG (which advances), and every earlier handle and lock goes stale.
    /// Also revives a machine a crash point killed. See the [`SimFs`] documentation.
    pub fn crash(&self) {
        let mut state = self.inner.lock();
        let mut rng = state.rng.clone();
        state.crash(&mut rng);
        state.rng = rng;
    }

    /// [`SimFs::crash`], with the outcome chosen by a PRNG seeded with `seed` (the disk's
    /// own PRNG is left alone).
    pub fn crash_with(&self, seed: u64) {
        self.inner.lock().crash(&mut Rng(seed));
    }

    /// How many counted (mutating) operations have been attempted since the disk was
    /// created (crashes do not reset it).
    pub fn op_count(&self) -> u64 {
        self.inner.lock().ops
    }

    /// How many power cuts the disk has been through.
    pub fn crash_count(&self) -> u64 {
        self.inner.lock().epoch
    }

    /// Kills the machine at the `n`-th counted operation from now (`n >= 1`): the first
    /// `n - 1` run normally, the `n`-th fails with an error and no effect, and every
    /// operation after it fails too until [`SimFs::crash`]. `n == 0` kills it at once.
    /// Replaces an earlier crash point.
    pub fn arm_crash_after(&self, n: u64) {
        let mut state = self.inner.lock();
        if n == 0 {
            state.dead = true;
            state.crash_at = None;
        } else {
            state.crash_at = Some(state.ops + n);
        }
    }

    /// Kills the machine now: the same as `arm_crash_after(0)`.
    pub fn power_off(&self) {
        self.arm_crash_after(0);
    }

    /// Whether the machine is dead (a crash point was reached), waiting for
    /// [`SimFs::crash`].
    pub fn is_dead(&self) -> bool {
        self.inner.lock().dead
    }

    /// Makes the next counted operation of kind `op` fail with `fault`.
    pub fn fail_next(&self, op: FaultOp, fault: SimFault) {
        self.fail_nth(op, 1, fault);
    }

    /// Makes the `n`-th next counted operation of kind `op` (`n >= 1`; the first is the
    /// next one) fail with `fault`. Several armed faults count independently; when two
    /// would fire on the same operation, the one armed first does and the other waits for
    /// the next matching operation.
    pub fn fail_nth(&self, op: FaultOp, n: u64, fault: SimFault) {
        self.fail_nth_when(move |o| op.matches(o.kind), n, fault);
    }

    /// Makes the next counted operation for which `predicate` holds fail with `fault`.
    /// The predicate sees every counted operation (until it fires) and runs with the
    /// disk's lock held: it must not call the disk.
    pub fn fail_when<F>(&self, predicate: F, fault: SimFault)
    where
        F: Fn(&SimOp<'_>) -> bool + Send + 'static,
    {
        self.fail_nth_when(predicate, 1, fault);
    }

    fn fail_nth_when<F>(&self, predicate: F, n: u64, fault: SimFault)
    where
        F: Fn(&SimOp<'_>) -> bool + Send + 'static,
    {
        self.inner.lock().faults.push(ArmedFault {
            matches: Box::new(predicate),
            remaining: n.max(1),
            fault,
        });
    }

    /// Disarms every fault not yet fired.
    pub fn clear_faults(&self) {
        self.inner.lock().faults.clear();
    }

    /// The durable view: what a power cut that keeps nothing unsynced would leave.
    ///
    /// # Panics
    ///
    /// If a file is longer than [`MAX_DATA_LEN`].
    pub fn durable_image(&self) -> DiskImage {
        self.inner.lock().image(true)
    }

    /// The volatile view: what reads see now. Equal to [`SimFs::durable_image`] right
    /// after a crash.
    ///
    /// # Panics
    ///
    /// If a file is longer than [`MAX_DATA_LEN`].
    pub fn image(&self) -> DiskImage {
        self.inner.lock().image(false)
    }
}

impl fmt::Debug for SimFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("SimFs")
            .field("seed", &state.seed)
            .field("ops", &state.ops)
            .field("crashes", &state.epoch)
            .field("dead", &state.dead)
            .field("files", &state.inodes.len())
            .finish_non_exhaustive()
    }
}

/// An open file of a [`SimFs`].
struct SimFile {
    shared: Arc<Shared>,
    ino: Ino,
    epoch: u64,
    path: PathBuf,
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile")
            .field("path", &self.path)
            .field("ino", &self.ino)
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl SimFile {
    /// The state, if the machine is alive and this handle is not stale.
    fn state(&self) -> io::Result<MutexGuard<'_, State>> {
        let state = self.shared.lock();
        state.alive()?;
        if state.epoch != self.epoch {
            return Err(stale());
        }
        Ok(state)
    }

    fn op(&self, kind: OpKind, offset: u64, len: u64) -> SimOp<'_> {
        SimOp {
            kind,
            path: &self.path,
            to: None,
            offset,
            len,
        }
    }

    fn resize(&self, kind: OpKind, len: u64) -> io::Result<()> {
        let mut state = self.state()?;
        state.begin_plain(&self.op(kind, 0, len))?;
        let current = state.inodes[&self.ino].data.len;
        match kind {
            OpKind::SetLen => state.change(self.ino, Change::SetLen(len)),
            _ if len > current => state.change(self.ino, Change::Allocate(len)),
            _ => {}
        }
        Ok(())
    }

    fn sync(&self, kind: OpKind) -> io::Result<()> {
        let mut state = self.state()?;
        state.begin_plain(&self.op(kind, 0, 0))?;
        let inode = state
            .inodes
            .get_mut(&self.ino)
            .expect("open files keep their inode");
        inode.durable = inode.data.clone();
        inode.pending.clear();
        Ok(())
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if state.epoch == self.epoch
            && let Some(inode) = state.inodes.get_mut(&self.ino)
        {
            inode.handles -= 1;
        }
    }
}

impl DiskFile for SimFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut state = self.state()?;
        let fault = state.begin(&self.op(OpKind::Write, offset, buf.len() as u64))?;
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > MAX_DATA_LEN) {
            return Err(too_large());
        }
        let written = match fault {
            None => buf,
            Some(SimFault::ShortWrite) => &buf[..buf.len() / 2],
            Some(fault) => return Err(fault_error(fault)),
        };
        if !written.is_empty() {
            let change = Change::Write {
                offset,
                data: written.to_vec(),
            };
            state.change(self.ino, change);
        }
        match fault {
            Some(fault) => Err(fault_error(fault)),
            None => Ok(()),
        }
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let state = self.state()?;
        if state.inodes[&self.ino].data.read(buf, offset) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "SimFs: read past the end of the file",
            ))
        }
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.state()?.inodes[&self.ino].data.len)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.resize(OpKind::SetLen, len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.resize(OpKind::Allocate, len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.sync(OpKind::SyncData)
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync(OpKind::SyncAll)
    }
}

/// A [`SimFs`] lock, released on drop (unless a crash released it first).
struct SimLock {
    shared: Arc<Shared>,
    path: PathBuf,
    id: u64,
}

impl fmt::Debug for SimLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimLock").field("path", &self.path).finish()
    }
}

impl DirLockGuard for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if state.locks.get(&self.path) == Some(&self.id) {
            state.locks.remove(&self.path);
        }
    }
}

impl SimFs {
    fn state(&self) -> io::Result<MutexGuard<'_, State>> {
        let state = self.inner.lock();
        state.alive()?;
        Ok(state)
    }

    fn handle(&self, state: &mut State, ino: Ino, path: PathBuf) -> Arc<dyn DiskFile> {
        state
            .inodes
            .get_mut(&ino)
            .expect("named files have an inode")
            .handles += 1;
        Arc::new(SimFile {
            shared: Arc::clone(&self.inner),
            ino,
            epoch: state.epoch,
            path,
        })
    }
}

fn not_a_directory_or_missing(state: &State, path: &Path) -> io::Error {
    match state.lookup(path) {
        Some(_) => io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("SimFs: {} is a file", path.display()),
        ),
        None => not_found(path),
    }
}

fn plain_op(kind: OpKind, path: &Path) -> SimOp<'_> {
    SimOp {
        kind,
        path,
        to: None,
        offset: 0,
        len: 0,
    }
}

impl FileSystem for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DiskFile>> {
        let mut state = self.state()?;
        if mode != OpenMode::Existing {
            state.begin_plain(&plain_op(OpKind::Create, path))?;
        }
        let path = normalize(path);
        let (dir, name) = state.file_slot(&path)?;
        let ino = match (state.lookup(&path), mode) {
            (Some(_), OpenMode::CreateNew) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("SimFs: {} exists", path.display()),
                ));
            }
            (Some(ino), OpenMode::Truncate) => {
                state.change(ino, Change::SetLen(0));
                ino
            }
            (Some(ino), _) => ino,
            (None, OpenMode::Existing) => return Err(not_found(&path)),
            (None, _) => state.create_file(&dir, &name),
        };
        Ok(self.handle(&mut state, ino, path))
    }

    fn read_whole(&self, path: &Path) -> io::Result<FileBytes> {
        let state = self.state()?;
        let path = normalize(path);
        if state.is_dir(&path) {
            return Err(is_a_directory(&path));
        }
        let ino = state.lookup(&path).ok_or_else(|| not_found(&path))?;
        Ok(FileBytes::Owned(state.inodes[&ino].data.to_vec()?))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state()?;
        state.begin_plain(&SimOp {
            kind: OpKind::Rename,
            path: from,
            to: Some(to),
            offset: 0,
            len: 0,
        })?;
        let (from, to) = (normalize(from), normalize(to));
        if state.is_dir(&from) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("SimFs: {}: only files can be renamed", from.display()),
            ));
        }
        let ino = state.lookup(&from).ok_or_else(|| not_found(&from))?;
        let (from_dir, from_name) = split(&from)?;
        let (to_dir, to_name) = state.file_slot(&to)?;
        if from == to {
            return Ok(());
        }
        let group = state.new_group();
        state.set_entry(&from_dir, &from_name, None, group);
        state.set_entry(&to_dir, &to_name, Some(ino), group);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state()?;
        state.begin_plain(&plain_op(OpKind::Remove, path))?;
        let path = normalize(path);
        if state.is_dir(&path) {
            return Err(is_a_directory(&path));
        }
        state.lookup(&path).ok_or_else(|| not_found(&path))?;
        let (dir, name) = split(&path)?;
        let group = state.new_group();
        state.set_entry(&dir, &name, None, group);
        Ok(())
    }

    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()> {
        let mut state = self.state()?;
        state.begin_plain(&SimOp {
            kind: OpKind::Link,
            path: original,
            to: Some(link),
            offset: 0,
            len: 0,
        })?;
        let (original, link) = (normalize(original), normalize(link));
        if state.is_dir(&original) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "SimFs: {}: directories cannot be linked",
                    original.display()
                ),
            ));
        }
        let ino = state
            .lookup(&original)
            .ok_or_else(|| not_found(&original))?;
        let (dir, name) = state.file_slot(&link)?;
        if state.lookup(&link).is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("SimFs: {} exists", link.display()),
            ));
        }
        let group = state.new_group();
        state.set_entry(&dir, &name, Some(ino), group);
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state()?;
        state.begin_plain(&plain_op(OpKind::CreateDir, path))?;
        let path = normalize(path);
        let missing: Vec<&Path> = path
            .ancestors()
            .take_while(|dir| !state.is_dir(dir))
            .collect();
        for dir in missing.into_iter().rev() {
            if state.lookup(dir).is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("SimFs: {} exists and is a file", dir.display()),
                ));
            }
            state.ensure_dir(dir);
        }
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let state = self.state()?;
        let dir = normalize(path);
        if !state.is_dir(&dir) {
            return Err(not_a_directory_or_missing(&state, &dir));
        }
        let mut names: BTreeSet<&OsStr> = BTreeSet::new();
        if let Some(entries) = state.dirs.get(&dir) {
            names.extend(entries.keys().map(OsString::as_os_str));
        }
        for sub in state.dirs.keys() {
            if sub.parent() == Some(dir.as_path())
                && let Some(name) = sub.file_name()
            {
                names.insert(name);
            }
        }
        Ok(names.into_iter().map(|name| path.join(name)).collect())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state()?;
        state.begin_plain(&plain_op(OpKind::SyncDir, path))?;
        let dir = normalize(path);
        if !state.is_dir(&dir) {
            return Err(not_a_directory_or_missing(&state, &dir));
        }
        state.ensure_dir(&dir);
        state.sync_dir(&dir);
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let Ok(state) = self.state() else {
            return false;
        };
        let path = normalize(path);
        state.is_dir(&path) || state.lookup(&path).is_some()
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.state()
            .is_ok_and(|state| state.is_dir(&normalize(path)))
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        let state = self.state()?;
        let path = normalize(path);
        if state.is_dir(&path) {
            return Ok(0);
        }
        let ino = state.lookup(&path).ok_or_else(|| not_found(&path))?;
        Ok(state.inodes[&ino].data.len)
    }

    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn DirLockGuard>> {
        let mut state = self.state()?;
        state.begin_plain(&plain_op(OpKind::Lock, path))?;
        let path = normalize(path);
        let (dir, name) = state.file_slot(&path)?;
        if state.locks.contains_key(&path) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("SimFs: {} is locked", path.display()),
            ));
        }
        if state.lookup(&path).is_none() {
            state.create_file(&dir, &name);
        }
        state.next_lock += 1;
        let id = state.next_lock;
        state.locks.insert(path.clone(), id);
        Ok(Box::new(SimLock {
            shared: Arc::clone(&self.inner),
            path,
            id,
        }))
    }
}
