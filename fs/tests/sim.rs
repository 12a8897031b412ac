//! The simulated disk: POSIX-like behaviour, what power cuts keep and lose, stale
//! handles, fault injection, crash points and determinism.

use std::collections::{BTreeSet, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aedb_fs::{
    DiskImage, FaultOp, FileSystem, OpKind, OpenMode, SECTOR_SIZE, SharedFs, SimFault, SimFs,
    read_file, write_file,
};

const SEEDS: u64 = 200;

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

/// A disk with `/d` created and durable.
fn disk(seed: u64) -> Arc<SimFs> {
    let sim = SimFs::new(seed);
    sim.create_dir_all(&p("/d")).expect("mkdir");
    sim
}

/// Creates `path` with `bytes`, synced, and its directory entry synced.
fn durable_file(fs: &dyn FileSystem, path: &Path, bytes: &[u8]) {
    write_file(fs, path, bytes).expect("write");
    fs.sync_dir(path.parent().expect("parent"))
        .expect("sync dir");
}

fn contents(fs: &dyn FileSystem, path: &Path) -> Option<Vec<u8>> {
    match read_file(fs, path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

/// A pattern without zero bytes, so surviving bytes can be told from zero fill.
fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) | 1)
        .collect()
}

#[test]
fn sim_fs_is_send_sync_and_a_shared_fs() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SimFs>();
    let sim = SimFs::new(1);
    let fs: SharedFs = sim.shared();
    let coerced: SharedFs = sim.clone();
    fs.create_dir_all(&p("/x")).expect("mkdir");
    assert!(coerced.is_dir(&p("/x")));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let fs = fs.clone();
            std::thread::spawn(move || {
                let path = PathBuf::from(format!("/x/{i}"));
                let file = fs.open(&path, OpenMode::CreateNew).expect("create");
                for j in 0..50u64 {
                    file.write_all_at(&[i as u8 + 1; 8], j * 8).expect("write");
                }
                file.sync_data().expect("sync");
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(fs.read_dir(&p("/x")).expect("list").len(), 4);
    assert_eq!(fs.file_len(&p("/x/3")).expect("len"), 400);
}

#[test]
fn files_and_directories_behave_like_std() {
    let sim = SimFs::new(1);
    let fs: &dyn FileSystem = &*sim;
    // Missing directories.
    for mode in [
        OpenMode::Existing,
        OpenMode::Create,
        OpenMode::CreateNew,
        OpenMode::Truncate,
    ] {
        let err = fs.open(&p("/nope/f"), mode).expect_err("no dir");
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{mode:?}");
    }
    fs.create_dir_all(&p("/a/b/c")).expect("mkdir");
    fs.create_dir_all(&p("/a/b/c/")).expect("mkdir again");
    for dir in ["/a", "/a/b", "/a/b/c", "/", "/a/./b"] {
        assert!(fs.is_dir(&p(dir)) && fs.exists(&p(dir)), "{dir}");
    }
    assert_eq!(
        fs.open(&p("/a/b"), OpenMode::Create)
            .expect_err("a dir")
            .kind(),
        io::ErrorKind::IsADirectory
    );
    // Open modes.
    let missing = p("/a/b/f");
    assert_eq!(
        fs.open(&missing, OpenMode::Existing)
            .expect_err("missing")
            .kind(),
        io::ErrorKind::NotFound
    );
    let f = fs.open(&missing, OpenMode::CreateNew).expect("create");
    assert_eq!(
        fs.open(&missing, OpenMode::CreateNew)
            .expect_err("exists")
            .kind(),
        io::ErrorKind::AlreadyExists
    );
    // Positional I/O; a write past the end zero-fills the gap.
    f.write_all_at(b"world", 6).expect("write");
    f.write_all_at(b"hello", 0).expect("write");
    assert_eq!(&fs.read_whole(&missing).expect("read")[..], b"hello\0world");
    let mut buf = [0u8; 5];
    f.read_exact_at(&mut buf, 6).expect("read");
    assert_eq!(&buf, b"world");
    assert_eq!(
        f.read_exact_at(&mut buf, 7).expect_err("eof").kind(),
        io::ErrorKind::UnexpectedEof
    );
    assert_eq!(f.len().expect("len"), 11);
    assert_eq!(fs.file_len(&missing).expect("len"), 11);
    assert!(!f.is_empty().expect("len"));
    // Create keeps the contents, Truncate cuts them (and the old handle sees that).
    let again = fs.open(&missing, OpenMode::Create).expect("create");
    assert_eq!(again.len().expect("len"), 11);
    let cut = fs.open(&missing, OpenMode::Truncate).expect("truncate");
    assert!(cut.is_empty().expect("len") && f.is_empty().expect("len"));
    // read_dir: full paths of files and directories, as given.
    fs.open(&p("/a/b/g"), OpenMode::Create).expect("create");
    let listed: BTreeSet<PathBuf> = fs.read_dir(&p("/a/b")).expect("list").into_iter().collect();
    let expected: BTreeSet<PathBuf> = ["/a/b/c", "/a/b/f", "/a/b/g"].map(p).into();
    assert_eq!(listed, expected);
    assert_eq!(
        fs.read_dir(&p("/nope")).expect_err("missing").kind(),
        io::ErrorKind::NotFound
    );
    assert_eq!(
        fs.read_dir(&p("/a/b/f")).expect_err("a file").kind(),
        io::ErrorKind::NotADirectory
    );
    // Rename replaces the target and keeps the content; the source is gone.
    f.write_all_at(b"new", 0).expect("write");
    fs.rename(&p("/a/b/f"), &p("/a/b/g")).expect("rename");
    assert!(!fs.exists(&p("/a/b/f")));
    assert_eq!(read_file(fs, &p("/a/b/g")).expect("read"), b"new");
    fs.rename(&p("/a/b/g"), &p("/a/g"))
        .expect("rename across dirs");
    assert_eq!(read_file(fs, &p("/a/g")).expect("read"), b"new");
    assert_eq!(
        fs.rename(&p("/a/b/g"), &p("/a/h"))
            .expect_err("gone")
            .kind(),
        io::ErrorKind::NotFound
    );
    assert_eq!(
        fs.rename(&p("/a/g"), &p("/nope/h"))
            .expect_err("no dir")
            .kind(),
        io::ErrorKind::NotFound
    );
    // A handle keeps working on its (renamed) file.
    f.write_all_at(b"!", 3).expect("write");
    assert_eq!(read_file(fs, &p("/a/g")).expect("read"), b"new!");
    // Removal.
    fs.remove_file(&p("/a/g")).expect("remove");
    assert!(!fs.exists(&p("/a/g")));
    assert_eq!(
        fs.remove_file(&p("/a/g")).expect_err("missing").kind(),
        io::ErrorKind::NotFound
    );
    assert_eq!(
        fs.file_len(&p("/a/g")).expect_err("missing").kind(),
        io::ErrorKind::NotFound
    );
    // An open handle to a removed file still works.
    f.write_all_at(b"?", 4).expect("write");
    assert_eq!(f.len().expect("len"), 5);
    // A file in the way of a directory.
    fs.open(&p("/a/file"), OpenMode::Create).expect("create");
    assert!(fs.create_dir_all(&p("/a/file/sub")).is_err());
    // Relative paths live under the empty root.
    fs.create_dir_all(&p("rel/dir")).expect("mkdir");
    write_file(fs, &p("rel/dir/x"), b"x").expect("write");
    assert_eq!(read_file(fs, &p("./rel/dir/x")).expect("read"), b"x");
}

#[test]
fn set_len_and_allocate() {
    let sim = disk(1);
    let fs: &dyn FileSystem = &*sim;
    let path = p("/d/f");
    let f = fs.open(&path, OpenMode::CreateNew).expect("create");
    f.write_all_at(b"abcdef", 0).expect("write");
    f.allocate(4096).expect("allocate");
    assert_eq!(f.len().expect("len"), 4096);
    let bytes = read_file(fs, &path).expect("read");
    assert_eq!(&bytes[..6], b"abcdef");
    assert!(bytes[6..].iter().all(|&b| b == 0));
    f.allocate(10).expect("allocate never shrinks");
    assert_eq!(f.len().expect("len"), 4096);
    f.set_len(3).expect("shrink");
    assert_eq!(read_file(fs, &path).expect("read"), b"abc");
    f.set_len(5).expect("grow");
    assert_eq!(read_file(fs, &path).expect("read"), b"abc\0\0");
    // Large allocations are not stored byte by byte.
    f.allocate(1 << 40).expect("allocate a terabyte");
    assert_eq!(f.len().expect("len"), 1 << 40);
    let mut tail = [1u8; 4];
    f.read_exact_at(&mut tail, (1 << 40) - 4).expect("read");
    assert_eq!(tail, [0; 4]);
    assert_eq!(
        fs.read_whole(&path).expect_err("too big").kind(),
        io::ErrorKind::FileTooLarge
    );
    assert_eq!(
        f.write_all_at(b"x", 1 << 40).expect_err("too far").kind(),
        io::ErrorKind::FileTooLarge
    );
    f.set_len(5).expect("shrink");
    // None of it is durable until a sync.
    fs.sync_dir(&p("/d")).expect("sync dir");
    assert_eq!(sim.durable_image().files[&path], b"");
    f.sync_all().expect("sync");
    assert_eq!(sim.durable_image().files[&path], b"abc\0\0");
}

#[test]
fn synced_data_always_survives_unsynced_data_may_or_may_not() {
    let (mut kept, mut lost) = (0, 0);
    for seed in 0..SEEDS {
        let sim = disk(seed);
        let fs: &dyn FileSystem = &*sim;
        let path = p("/d/f");
        let f = fs.open(&path, OpenMode::CreateNew).expect("create");
        f.write_all_at(b"synced", 0).expect("write");
        f.sync_data().expect("sync");
        fs.sync_dir(&p("/d")).expect("sync dir");
        f.write_all_at(b"+unsynced", 6).expect("write");
        assert_eq!(read_file(fs, &path).expect("read"), b"synced+unsynced");
        sim.crash();
        let after = read_file(fs, &path).expect("the synced file survives");
        assert!(after.starts_with(b"synced"), "seed {seed}: {after:?}");
        match &after[6..] {
            b"" => lost += 1,
            b"+unsynced" => kept += 1,
            _ => {}
        }
        assert_eq!(sim.image(), sim.durable_image(), "seed {seed}");
        // Synced again after the crash: survives every later crash.
        let g = fs.open(&path, OpenMode::Existing).expect("reopen");
        g.write_all_at(b"!", 0).expect("write");
        g.sync_all().expect("sync");
        let image = sim.image();
        sim.crash();
        assert_eq!(sim.image(), image, "seed {seed}");
    }
    assert!(kept > 0 && lost > 0, "kept {kept}, lost {lost}");
}

#[test]
fn a_synced_file_whose_entry_was_not_synced_can_vanish() {
    let (mut vanished, mut survived) = (0, 0);
    for seed in 0..SEEDS {
        let sim = disk(seed);
        let fs: &dyn FileSystem = &*sim;
        write_file(fs, &p("/d/f"), b"data").expect("write and fsync");
        sim.crash();
        match contents(fs, &p("/d/f")) {
            None => vanished += 1,
            Some(bytes) => {
                assert_eq!(bytes, b"data", "seed {seed}");
                survived += 1;
            }
        }
    }
    assert!(vanished > 0 && survived > 0, "{vanished} / {survived}");
    for seed in 0..SEEDS {
        let sim = disk(seed);
        durable_file(&*sim, &p("/d/f"), b"data");
        sim.crash();
        assert_eq!(contents(&*sim, &p("/d/f")).as_deref(), Some(&b"data"[..]));
    }
}

#[test]
fn an_unsynced_removal_may_be_undone_a_synced_one_is_not() {
    let (mut back, mut gone) = (0, 0);
    for seed in 0..SEEDS {
        let sim = disk(seed);
        let fs: &dyn FileSystem = &*sim;
        durable_file(fs, &p("/d/f"), b"data");
        fs.remove_file(&p("/d/f")).expect("remove");
        sim.crash();
        match contents(fs, &p("/d/f")) {
            Some(bytes) => {
                assert_eq!(bytes, b"data");
                back += 1;
            }
            None => gone += 1,
        }
        fs.remove_file(&p("/d/g")).expect_err("never existed");
        if fs.exists(&p("/d/f")) {
            fs.remove_file(&p("/d/f")).expect("remove");
            fs.sync_dir(&p("/d")).expect("sync dir");
            sim.crash();
            assert!(!fs.exists(&p("/d/f")), "seed {seed}");
        }
    }
    assert!(back > 0 && gone > 0, "{back} / {gone}");
}

#[test]
fn a_rename_lands_whole_or_not_at_all() {
    // A durable file renamed: found under exactly one of its names.
    let (mut old, mut new) = (0, 0);
    for seed in 0..SEEDS {
        let sim = disk(seed);
        let fs: &dyn FileSystem = &*sim;
        durable_file(fs, &p("/d/x"), b"x");
        fs.rename(&p("/d/x"), &p("/d/y")).expect("rename");
        sim.crash();
        match (contents(fs, &p("/d/x")), contents(fs, &p("/d/y"))) {
            (Some(b), None) if b == b"x" => old += 1,
            (None, Some(b)) if b == b"x" => new += 1,
            other => panic!("seed {seed}: {other:?}"),
        }
    }
    assert!(old > 0 && new > 0, "{old} / {new}");
    // Synced after the rename: always the new name.
    for seed in 0..SEEDS {
        let sim = disk(seed);
        let fs: &dyn FileSystem = &*sim;
        durable_file(fs, &p("/d/x"), b"x");
        fs.rename(&p("/d/x"), &p("/d/y")).expect("rename");
        fs.sync_dir(&p("/d")).expect("sync dir");
        sim.crash();
        assert_eq!(contents(fs, &p("/d/x")), None);
        assert_eq!(contents(fs, &p("/d/y")).as_deref(), Some(&b"x"[..]));
    }
}

#[test]
fn replacing_a_file_by_rename_leaves_the_old_or_the_new_version() {
    let (mut old, mut new) = (0, 0);
    for seed in 0..SEEDS {
        let sim = disk(seed);
        let fs: &dyn FileSystem = &*sim;
        durable_file(fs, &p("/d/current"), b"old");
        write_file(fs, &p("/d/tmp"), b"new").expect("write tmp");
        fs.rename(&p("/d/tmp"), &p("/d/current")).expect("rename");
        sim.crash();
        let current = contents(fs, &p("/d/current")).expect("never neither");
        let tmp = contents(fs, &p("/d/tmp"));
        match current.as_slice() {
            b"old" => old += 1,
            b"new" => {
                assert_eq!(tmp, None, "seed {seed}: the new file under both names");
                new += 1;
            }
            other => panic!("seed {seed}: {other:?}"),
        }
        if let Some(tmp) = tmp {
            assert_eq!(tmp, b"new");
        }
    }
    assert!(old > 0 && new > 0, "{old} / {new}");
    for seed in 0..SEEDS {
        let sim = disk(seed);
        let fs: &dyn FileSystem = &*sim;
        durable_file(fs, &p("/d/current"), b"old");
        write_file(fs, &p("/d/tmp"), b"new").expect("write tmp");
        fs.rename(&p("/d/tmp"), &p("/d/current")).expect("rename");
        fs.sync_dir(&p("/d")).expect("sync dir");
        sim.crash();
        assert_eq!(contents(fs, &p("/d/current")).as_deref(), Some(&b"new"[..]));
        assert_eq!(contents(fs, &p("/d/tmp")), None);
    }
}

#[test]
fn a_cross_directory_rename_is_atomic_once_either_directory_is_synced() {
    for seed in 0..SEEDS {
        for sync_target in [true, false] {
            let sim = disk(seed);
            let fs: &dyn FileSystem = &*sim;
            fs.create_dir_all(&p("/e")).expect("mkdir");
            // The source's creation is not durable either.
            write_file(fs, &p("/d/x"), b"x").expect("write");
            fs.rename(&p("/d/x"), &p("/e/y")).expect("rename");
            fs.sync_dir(&p(if sync_target { "/e" } else { "/d" }))
                .expect("sync dir");
            sim.crash();
            assert_eq!(contents(fs, &p("/d/x")), None, "seed {seed}");
            assert_eq!(contents(fs, &p("/e/y")).as_deref(), Some(&b"x"[..]));
        }
    }
}

/// How a 1500-byte unsynced write at offset 0 of an empty file survived a crash.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Survival {
    None,
    Whole,
    /// Some sectors whole, the rest zeros (or cut off).
    Sectors,
    /// A sector partly written: its first bytes, then zeros or the end of the file.
    Torn,
}

fn survival(written: &[u8], after: &[u8]) -> Survival {
    assert!(after.len() <= written.len(), "grew: {}", after.len());
    let sector = SECTOR_SIZE as usize;
    let mut torn = false;
    for (i, chunk) in after.chunks(sector).enumerate() {
        let expect = &written[i * sector..(i * sector + chunk.len())];
        if chunk == expect || chunk.iter().all(|&b| b == 0) {
            continue; // whole (maybe cut short by the length) or absent
        }
        // Torn: a prefix of the sector, then zeros.
        let kept = chunk.iter().zip(expect).take_while(|(a, b)| a == b).count();
        assert!(
            chunk[kept..].iter().all(|&b| b == 0),
            "sector {i} is neither whole, absent nor torn"
        );
        torn = true;
    }
    // A length that ends inside a sector other than the last one also tears it.
    let cut_inside = !after.len().is_multiple_of(sector) && after.len() != written.len();
    if after.is_empty() {
        Survival::None
    } else if after == written {
        Survival::Whole
    } else if torn || cut_inside {
        Survival::Torn
    } else {
        Survival::Sectors
    }
}

#[test]
fn an_unsynced_write_survives_whole_not_at_all_by_sectors_or_torn() {
    let written = pattern(1500, 7);
    let mut seen = BTreeSet::new();
    for seed in 0..SEEDS {
        let sim = disk(seed);
        let fs: &dyn FileSystem = &*sim;
        let path = p("/d/f");
        let f = fs.open(&path, OpenMode::CreateNew).expect("create");
        f.sync_all().expect("sync");
        fs.sync_dir(&p("/d")).expect("sync dir");
        f.write_all_at(&written, 0).expect("write");
        sim.crash();
        let after = read_file(fs, &path).expect("the file is durable");
        seen.insert(survival(&written, &after));
    }
    let all: BTreeSet<Survival> = [
        Survival::None,
        Survival::Whole,
        Survival::Sectors,
        Survival::Torn,
    ]
    .into();
    assert_eq!(seen, all);
}

#[test]
fn unsynced_writes_survive_in_order_or_as_sector_subsets() {
    // Three writes to distinct sectors: every subset of them can survive, not only
    // prefixes (the disk reorders), and never anything but those bytes.
    let mut subsets = BTreeSet::new();
    for seed in 0..SEEDS {
        let sim = disk(seed);
        let fs: &dyn FileSystem = &*sim;
        let path = p("/d/f");
        let f = fs.open(&path, OpenMode::CreateNew).expect("create");
        f.allocate(3 * SECTOR_SIZE).expect("allocate");
        f.sync_all().expect("sync");
        fs.sync_dir(&p("/d")).expect("sync dir");
        for i in 0..3u64 {
            f.write_all_at(&[i as u8 + 1; 512], i * SECTOR_SIZE)
                .expect("write");
        }
        sim.crash();
        let after = read_file(fs, &path).expect("read");
        assert_eq!(after.len(), 3 * 512, "seed {seed}");
        let mut subset = 0u8;
        for (i, sector) in after.chunks(512).enumerate() {
            let value = i as u8 + 1;
            let kept = sector.iter().take_while(|&&b| b == value).count();
            assert!(sector[kept..].iter().all(|&b| b == 0), "seed {seed}");
            if kept == 512 {
                subset |= 1 << i;
            }
        }
        subsets.insert(subset);
    }
    assert_eq!(subsets.len(), 8, "{subsets:?}");
}

#[test]
fn unsynced_resizes_may_or_may_not_survive() {
    let mut lengths = BTreeSet::new();
    let mut allocated = BTreeSet::new();
    for seed in 0..SEEDS {
        let sim = disk(seed);
        let fs: &dyn FileSystem = &*sim;
        durable_file(fs, &p("/d/f"), &pattern(1000, 3));
        let f = fs.open(&p("/d/f"), OpenMode::Existing).expect("open");
        f.set_len(100).expect("shrink");
        sim.crash();
        let after = read_file(fs, &p("/d/f")).expect("read");
        assert_eq!(after, pattern(1000, 3)[..after.len()], "seed {seed}");
        lengths.insert(after.len());

        durable_file(fs, &p("/d/g"), b"abc");
        let g = fs.open(&p("/d/g"), OpenMode::Existing).expect("open");
        g.allocate(8192).expect("allocate");
        g.write_all_at(b"tail", 8000).expect("write");
        sim.crash();
        let after = read_file(fs, &p("/d/g")).expect("read");
        assert_eq!(&after[..3], b"abc", "seed {seed}");
        let tail_kept = after.len() >= 8004 && &after[8000..8004] == b"tail";
        for (i, &b) in after.iter().enumerate().skip(3) {
            // Zeros, or the write (perhaps torn).
            let written = i.checked_sub(8000).and_then(|j| b"tail".get(j));
            assert!(b == 0 || written == Some(&b), "seed {seed}: byte {i}");
        }
        allocated.insert((after.len(), tail_kept));
    }
    assert!(
        lengths.contains(&100) && lengths.contains(&1000),
        "{lengths:?}"
    );
    // Neither, the allocation alone (zeros), both, or the write alone.
    for case in [(3, false), (8192, false), (8192, true), (8004, true)] {
        assert!(allocated.contains(&case), "{case:?} not in {allocated:?}");
    }
}

#[test]
fn handles_and_locks_from_before_a_crash_are_stale() {
    let sim = disk(5);
    let fs: &dyn FileSystem = &*sim;
    durable_file(fs, &p("/d/f"), b"data");
    let f = fs.open(&p("/d/f"), OpenMode::Existing).expect("open");
    let lock = fs.try_lock(&p("/d/LOCK")).expect("lock");
    assert_eq!(
        fs.try_lock(&p("/d/LOCK")).expect_err("held").kind(),
        io::ErrorKind::WouldBlock
    );
    sim.crash();
    assert_eq!(sim.crash_count(), 1);
    let stale = io::ErrorKind::StaleNetworkFileHandle;
    let mut buf = [0u8; 1];
    assert_eq!(f.write_all_at(b"x", 0).expect_err("stale").kind(), stale);
    assert_eq!(
        f.read_exact_at(&mut buf, 0).expect_err("stale").kind(),
        stale
    );
    assert_eq!(f.len().expect_err("stale").kind(), stale);
    assert_eq!(f.is_empty().expect_err("stale").kind(), stale);
    assert_eq!(f.set_len(0).expect_err("stale").kind(), stale);
    assert_eq!(f.allocate(10).expect_err("stale").kind(), stale);
    assert_eq!(f.sync_data().expect_err("stale").kind(), stale);
    assert_eq!(f.sync_all().expect_err("stale").kind(), stale);
    // A crash released the lock; the old guard's drop does not release the new one.
    let relocked = fs.try_lock(&p("/d/LOCK")).expect("released by the crash");
    drop(lock);
    assert_eq!(
        fs.try_lock(&p("/d/LOCK")).expect_err("held").kind(),
        io::ErrorKind::WouldBlock
    );
    drop(relocked);
    let _again = fs.try_lock(&p("/d/LOCK")).expect("released on drop");
    // New handles work.
    let g = fs.open(&p("/d/f"), OpenMode::Existing).expect("reopen");
    g.read_exact_at(&mut buf, 0).expect("read");
    assert_eq!(&buf, b"d");
}

#[test]
fn injected_faults() {
    let sim = disk(1);
    let fs: &dyn FileSystem = &*sim;
    let path = p("/d/f");
    let f = fs.open(&path, OpenMode::CreateNew).expect("create");
    f.write_all_at(b"0123", 0).expect("write");

    // ENOSPC: StorageFull, no effect.
    sim.fail_next(FaultOp::Write, SimFault::NoSpace);
    let err = f.write_all_at(b"abcdef", 4).expect_err("enospc");
    assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    assert_eq!(read_file(fs, &path).expect("read"), b"0123");
    f.write_all_at(b"ok", 4).expect("one fault only");

    // EIO: raw OS error 5, no effect.
    sim.fail_next(FaultOp::Write, SimFault::Eio);
    let err = f.write_all_at(b"zz", 0).expect_err("eio");
    assert_eq!(err.raw_os_error(), Some(5));
    assert_eq!(read_file(fs, &path).expect("read"), b"0123ok");

    // A short write: exactly the first half lands (extending the file), then ENOSPC.
    sim.fail_next(FaultOp::Write, SimFault::ShortWrite);
    let err = f.write_all_at(b"ABCDEFG", 4).expect_err("short");
    assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    assert_eq!(read_file(fs, &path).expect("read"), b"0123ABC");

    // Faults wait for their kind of operation: a sync fault skips writes.
    sim.fail_next(FaultOp::Sync, SimFault::Eio);
    f.write_all_at(b"-", 7).expect("not a sync");
    fs.sync_dir(&p("/d")).expect("not a file sync");
    assert_eq!(f.sync_data().expect_err("eio").raw_os_error(), Some(5));
    assert_eq!(
        sim.durable_image().files[&path],
        b"",
        "the failed sync did nothing"
    );
    f.sync_data().expect("sync");
    assert_eq!(sim.durable_image().files[&path], b"0123ABC-");

    // The n-th matching operation.
    sim.fail_nth(FaultOp::Write, 3, SimFault::NoSpace);
    f.write_all_at(b"1", 0).expect("first");
    f.write_all_at(b"2", 0).expect("second");
    assert_eq!(
        f.write_all_at(b"3", 0).expect_err("third").kind(),
        io::ErrorKind::StorageFull
    );
    f.write_all_at(b"4", 0).expect("fourth");

    // Renames, removals, creations, resizes and dir syncs fail without effect.
    sim.fail_next(FaultOp::Rename, SimFault::Eio);
    fs.rename(&path, &p("/d/g")).expect_err("eio");
    assert!(fs.exists(&path) && !fs.exists(&p("/d/g")));
    sim.fail_next(FaultOp::Remove, SimFault::NoSpace);
    fs.remove_file(&path).expect_err("enospc");
    assert!(fs.exists(&path));
    sim.fail_next(FaultOp::Create, SimFault::ShortWrite);
    let err = fs.open(&p("/d/new"), OpenMode::Create).expect_err("enospc");
    assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    assert!(!fs.exists(&p("/d/new")));
    sim.fail_next(FaultOp::Create, SimFault::Eio);
    fs.create_dir_all(&p("/e")).expect_err("eio");
    assert!(!fs.exists(&p("/e")));
    sim.fail_next(FaultOp::Resize, SimFault::NoSpace);
    f.allocate(1 << 20).expect_err("enospc");
    assert_eq!(f.len().expect("len"), 8);
    sim.fail_next(FaultOp::SyncDir, SimFault::Eio);
    fs.open(&p("/d/h"), OpenMode::Create).expect("create");
    fs.sync_dir(&p("/d")).expect_err("eio");
    assert!(!sim.durable_image().files.contains_key(&p("/d/h")));

    // A predicate: the next write to one file only.
    let g = fs.open(&p("/d/h"), OpenMode::Existing).expect("open");
    sim.fail_when(
        |op| op.kind == OpKind::Write && op.path.ends_with("h") && op.offset >= 10,
        SimFault::Eio,
    );
    f.write_all_at(b"x", 20).expect("another file");
    g.write_all_at(b"x", 0).expect("too low");
    g.write_all_at(b"x", 10).expect_err("matches");
    g.write_all_at(b"x", 10).expect("fired once");

    // Disarmed.
    sim.fail_next(FaultOp::Any, SimFault::Eio);
    sim.clear_faults();
    f.sync_all().expect("cleared");
}

#[test]
fn a_crash_point_kills_the_machine_at_the_nth_mutating_operation() {
    /// Eight counted operations (the reads are not counted).
    fn workload(fs: &dyn FileSystem) -> io::Result<()> {
        fs.create_dir_all(&p("/w"))?; // 1
        let f = fs.open(&p("/w/tmp"), OpenMode::CreateNew)?; // 2
        f.write_all_at(b"version 2", 0)?; // 3
        f.read_exact_at(&mut [0; 4], 0)?;
        f.sync_data()?; // 4
        let _ = fs.exists(&p("/w/tmp"));
        fs.rename(&p("/w/tmp"), &p("/w/current"))?; // 5
        fs.sync_dir(&p("/w"))?; // 6
        f.set_len(7)?; // 7
        f.sync_all() // 8
    }
    let sim = SimFs::new(0);
    workload(&*sim).expect("workload");
    assert_eq!(sim.op_count(), 8);

    for n in 1..=8u64 {
        let sim = SimFs::new(n);
        sim.arm_crash_after(n);
        let err = workload(&*sim).expect_err("the machine dies");
        assert!(sim.is_dead());
        assert_eq!(sim.op_count(), n, "the n-th operation is where it died");
        assert_eq!(err.kind(), io::ErrorKind::Other);
        // Everything fails now, reads included.
        let fs: &dyn FileSystem = &*sim;
        assert!(fs.read_dir(&p("/")).is_err());
        assert!(fs.open(&p("/w/current"), OpenMode::Existing).is_err());
        assert!(!fs.exists(&p("/")) && !fs.is_dir(&p("/")));
        assert!(fs.create_dir_all(&p("/other")).is_err());
        assert_eq!(sim.op_count(), n, "a dead machine counts nothing");
        sim.crash();
        assert!(!sim.is_dead());
        // What survives: the rename landed (op 5 done, its dir synced) or not.
        let current = contents(fs, &p("/w/current"));
        if n > 6 {
            let bytes = current.expect("synced rename");
            assert!(bytes == b"version 2" || bytes == b"version", "n {n}");
        } else if let Some(bytes) = current {
            assert!(n > 5 && bytes == b"version 2", "n {n}: {bytes:?}");
        }
        // The disk works again.
        durable_file(fs, &p("/after"), b"alive");
    }

    // n == 0 (power_off): dead at once.
    let sim = SimFs::new(0);
    sim.power_off();
    assert!(sim.create_dir_all(&p("/x")).is_err());
    sim.crash();
    sim.create_dir_all(&p("/x")).expect("rebooted");
}

/// An exploration: crash after every prefix of an atomic-replace protocol; the file is
/// always whole, either version.
#[test]
fn exploring_every_crash_point_of_an_atomic_replace() {
    fn replace(fs: &dyn FileSystem, bytes: &[u8]) -> io::Result<()> {
        let tmp = p("/db/current.tmp");
        let file = fs.open(&tmp, OpenMode::Truncate)?;
        file.write_all_at(bytes, 0)?;
        file.sync_all()?;
        fs.rename(&tmp, &p("/db/current"))?;
        fs.sync_dir(&p("/db"))
    }
    let old = pattern(3000, 1);
    let new = pattern(5000, 2);
    let setup = |seed| {
        let sim = SimFs::new(seed);
        sim.create_dir_all(&p("/db")).expect("mkdir");
        replace(&*sim, &old).expect("setup");
        sim
    };
    let probe = setup(0);
    let base = probe.op_count();
    replace(&*probe, &new).expect("replace");
    let ops = probe.op_count() - base;
    assert_eq!(ops, 5);
    for n in 1..=ops + 1 {
        for seed in 0..20 {
            let sim = setup(seed);
            sim.arm_crash_after(n);
            let finished = replace(&*sim, &new).is_ok();
            assert_eq!(finished, n > ops);
            sim.crash();
            let current = contents(&*sim, &p("/db/current")).expect("always there");
            assert!(current == old || current == new, "n {n} seed {seed}");
            if finished {
                assert_eq!(current, new);
            }
        }
    }
}

/// A mixed workload: creates, writes, renames, removals, resizes, partial syncs.
fn mixed_workload(fs: &dyn FileSystem) {
    fs.create_dir_all(&p("/m/a")).expect("mkdir");
    fs.create_dir_all(&p("/m/b")).expect("mkdir");
    for i in 0..6u8 {
        let path = PathBuf::from(format!("/m/a/f{i}"));
        let f = fs.open(&path, OpenMode::Create).expect("create");
        f.write_all_at(&pattern(700 * usize::from(i + 1), i), 0)
            .expect("write");
        if i % 2 == 0 {
            f.sync_data().expect("sync");
        }
        f.write_all_at(&pattern(900, i + 100), 300).expect("write");
        if i == 3 {
            f.allocate(8192).expect("allocate");
        }
        if i == 4 {
            f.set_len(200).expect("shrink");
        }
    }
    fs.sync_dir(&p("/m/a")).expect("sync dir");
    fs.rename(&p("/m/a/f1"), &p("/m/b/g1")).expect("rename");
    fs.rename(&p("/m/a/f2"), &p("/m/a/f3")).expect("rename");
    fs.remove_file(&p("/m/a/f0")).expect("remove");
    write_file(fs, &p("/m/b/new"), b"new").expect("write");
}

#[test]
fn the_same_seed_and_operations_give_the_same_disk() {
    let mut distinct = HashSet::new();
    for seed in 0..SEEDS {
        let run = |crashes: usize| -> Vec<DiskImage> {
            let sim = SimFs::new(seed);
            mixed_workload(&*sim);
            let mut images = vec![sim.image(), sim.durable_image()];
            for _ in 0..crashes {
                sim.crash();
                images.push(sim.image());
                mixed_workload(&*sim);
            }
            images
        };
        let first = run(3);
        assert_eq!(first, run(3), "seed {seed}");
        // crash_with(seed) is a pure function of the seed, not of the disk's PRNG.
        let with = |disk_seed: u64| {
            let sim = SimFs::new(disk_seed);
            mixed_workload(&*sim);
            sim.crash_with(seed);
            sim.image()
        };
        assert_eq!(with(1), with(2), "seed {seed}");
        distinct.insert(first[2].clone());
    }
    assert!(
        distinct.len() > SEEDS as usize / 2,
        "{} outcomes",
        distinct.len()
    );
}

#[test]
fn reseeding_picks_the_crash_outcomes() {
    let sim = SimFs::new(1);
    assert_eq!(sim.seed(), 1);
    let after = |sim: &Arc<SimFs>, crash: &dyn Fn(&SimFs)| {
        mixed_workload(&**sim);
        crash(sim);
        sim.image()
    };
    // A disk created with seed 77, one reseeded to 77, and crash_with(77) agree.
    let created = after(&SimFs::new(77), &|sim| sim.crash());
    let reseeded = after(&SimFs::new(5), &|sim| {
        sim.reseed(77);
        sim.crash();
    });
    let with = after(&SimFs::new(5), &|sim| sim.crash_with(77));
    assert_eq!(created, reseeded);
    assert_eq!(created, with);
    sim.reseed(42);
    assert_eq!(sim.seed(), 42);
}

#[test]
fn durable_and_volatile_images() {
    let sim = disk(3);
    let fs: &dyn FileSystem = &*sim;
    durable_file(fs, &p("/d/a"), b"a");
    let f = fs.open(&p("/d/b"), OpenMode::CreateNew).expect("create");
    f.write_all_at(b"b", 0).expect("write");
    let volatile = sim.image();
    assert_eq!(volatile.files.len(), 2);
    assert_eq!(volatile.files[&p("/d/b")], b"b");
    let durable = sim.durable_image();
    assert_eq!(durable.files.len(), 1);
    assert_eq!(durable.files[&p("/d/a")], b"a");
    assert_eq!(durable.dirs, [p("/d")].into());
    // Whatever else a crash keeps, the durable image survives it.
    for seed in 0..SEEDS {
        let sim = disk(seed);
        durable_file(&*sim, &p("/d/a"), b"a");
        let f = sim.open(&p("/d/b"), OpenMode::CreateNew).expect("create");
        f.write_all_at(b"b", 0).expect("write");
        let durable = sim.durable_image();
        sim.crash();
        let after = sim.image();
        for (path, bytes) in &durable.files {
            assert_eq!(after.files.get(path), Some(bytes), "seed {seed}");
        }
    }
}

#[test]
fn directory_edge_cases() {
    let sim = disk(1);
    let fs: &dyn FileSystem = &*sim;
    write_file(fs, &p("/d/f"), b"f").expect("write");
    assert_eq!(
        fs.sync_dir(&p("/d/f")).expect_err("a file").kind(),
        io::ErrorKind::NotADirectory
    );
    assert_eq!(
        fs.sync_dir(&p("/nope")).expect_err("missing").kind(),
        io::ErrorKind::NotFound
    );
    assert_eq!(
        fs.rename(&p("/d"), &p("/e")).expect_err("a dir").kind(),
        io::ErrorKind::Unsupported
    );
    assert_eq!(
        fs.rename(&p("/d/f"), &p("/d"))
            .expect_err("onto a dir")
            .kind(),
        io::ErrorKind::IsADirectory
    );
    assert_eq!(
        fs.remove_file(&p("/d")).expect_err("a dir").kind(),
        io::ErrorKind::IsADirectory
    );
    assert_eq!(
        fs.read_whole(&p("/d")).expect_err("a dir").kind(),
        io::ErrorKind::IsADirectory
    );
    assert_eq!(fs.file_len(&p("/d")).expect("dir len"), 0);
    fs.rename(&p("/d/f"), &p("/d/./f")).expect("onto itself");
    assert_eq!(read_file(fs, &p("/d/f")).expect("read"), b"f");
    // Directories are durable at once, even in a never-synced parent.
    fs.create_dir_all(&p("/d/sub/deeper")).expect("mkdir");
    sim.crash();
    assert!(fs.is_dir(&p("/d/sub/deeper")));
    let listed = fs.read_dir(&p("/d/sub")).expect("list");
    assert_eq!(listed, vec![p("/d/sub/deeper")]);
}

#[test]
fn chained_renames_never_leave_a_file_under_two_names_or_none() {
    let mut outcomes = BTreeSet::new();
    for seed in 0..SEEDS {
        let sim = disk(seed);
        let fs: &dyn FileSystem = &*sim;
        for dir in ["/e", "/f"] {
            fs.create_dir_all(&p(dir)).expect("mkdir");
        }
        durable_file(fs, &p("/d/a"), b"A");
        durable_file(fs, &p("/d/z"), b"Z");
        // A moves along d/a -> e/n -> f/x; Z takes A's first name.
        fs.rename(&p("/d/a"), &p("/e/n")).expect("rename");
        fs.rename(&p("/e/n"), &p("/f/x")).expect("rename");
        fs.rename(&p("/d/z"), &p("/d/a")).expect("rename");
        sim.crash();
        let image = sim.image();
        for content in [b"A", b"Z"] {
            let names: Vec<&PathBuf> = image
                .files
                .iter()
                .filter(|(_, bytes)| bytes.as_slice() == content)
                .map(|(path, _)| path)
                .collect();
            assert_eq!(names.len(), 1, "seed {seed}: {image:?}");
        }
        outcomes.insert(image.files.keys().cloned().collect::<Vec<_>>());
    }
    // No rename; A's first; both of A's; A's first and Z's; all three. Z's alone (or with
    // A's second only) cannot land: it replaces d/a, whose earlier change is A leaving.
    assert_eq!(outcomes.len(), 5, "{outcomes:?}");

    // Syncing the last directory makes the chain durable.
    for seed in 0..SEEDS {
        let sim = disk(seed);
        let fs: &dyn FileSystem = &*sim;
        for dir in ["/e", "/f"] {
            fs.create_dir_all(&p(dir)).expect("mkdir");
        }
        durable_file(fs, &p("/d/a"), b"A");
        fs.rename(&p("/d/a"), &p("/e/n")).expect("rename");
        fs.rename(&p("/e/n"), &p("/f/x")).expect("rename");
        fs.sync_dir(&p("/f")).expect("sync dir");
        sim.crash();
        let files: Vec<PathBuf> = sim.image().files.into_keys().collect();
        assert_eq!(files, vec![p("/f/x")], "seed {seed}");
    }
}

#[test]
fn a_hard_link_is_a_second_name_of_the_same_file() {
    let sim = disk(3);
    let fs: &dyn FileSystem = &*sim;
    fs.create_dir_all(&p("/b")).expect("mkdir");
    durable_file(fs, &p("/d/run"), b"sealed");
    fs.hard_link(&p("/d/run"), &p("/b/run")).expect("link");
    assert_eq!(contents(fs, &p("/b/run")).as_deref(), Some(&b"sealed"[..]));
    // Both names reach one file: a write through either shows through the other.
    let f = fs.open(&p("/b/run"), OpenMode::Existing).expect("open");
    f.write_all_at(b"S", 0).expect("write");
    assert_eq!(contents(fs, &p("/d/run")).as_deref(), Some(&b"Sealed"[..]));
    // Removing the original leaves the link.
    fs.remove_file(&p("/d/run")).expect("remove");
    assert_eq!(contents(fs, &p("/b/run")).as_deref(), Some(&b"Sealed"[..]));
    // A link never replaces a name, and needs an existing file and directory.
    durable_file(fs, &p("/d/other"), b"x");
    let err = fs
        .hard_link(&p("/d/other"), &p("/b/run"))
        .expect_err("exists");
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    let err = fs
        .hard_link(&p("/d/missing"), &p("/b/m"))
        .expect_err("missing");
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    let err = fs
        .hard_link(&p("/d/other"), &p("/nodir/x"))
        .expect_err("no dir");
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    // Injected faults fail it without effect; EXDEV is what a copy falls back after.
    sim.fail_next(FaultOp::Link, SimFault::CrossDevice);
    let err = fs.hard_link(&p("/d/other"), &p("/b/o")).expect_err("exdev");
    assert_eq!(err.kind(), io::ErrorKind::CrossesDevices);
    assert!(aedb_fs::link_unsupported(&err));
    assert!(!fs.exists(&p("/b/o")));
    sim.fail_when(
        |op| op.kind == OpKind::Link && op.to == Some(Path::new("/b/o")),
        SimFault::Eio,
    );
    let err = fs.hard_link(&p("/d/other"), &p("/b/o")).expect_err("eio");
    assert!(!aedb_fs::link_unsupported(&err));
    assert!(!fs.exists(&p("/b/o")));
}

#[test]
fn a_hard_link_is_durable_once_its_directory_is_synced() {
    let mut kept = 0;
    let mut lost = 0;
    for seed in 0..SEEDS {
        let sim = disk(seed);
        let fs: &dyn FileSystem = &*sim;
        fs.create_dir_all(&p("/b")).expect("mkdir");
        durable_file(fs, &p("/d/run"), b"sealed");
        fs.hard_link(&p("/d/run"), &p("/b/synced")).expect("link");
        fs.sync_dir(&p("/b")).expect("sync");
        fs.hard_link(&p("/d/run"), &p("/b/unsynced")).expect("link");
        // The original goes, durably: the synced link keeps the file alive.
        fs.remove_file(&p("/d/run")).expect("remove");
        fs.sync_dir(&p("/d")).expect("sync");
        sim.crash();
        assert_eq!(contents(fs, &p("/d/run")), None, "seed {seed}");
        assert_eq!(
            contents(fs, &p("/b/synced")).as_deref(),
            Some(&b"sealed"[..]),
            "seed {seed}"
        );
        // The unsynced link landed or not, but never with other content.
        match contents(fs, &p("/b/unsynced")) {
            Some(bytes) => {
                assert_eq!(bytes, b"sealed", "seed {seed}");
                kept += 1;
            }
            None => lost += 1,
        }
    }
    assert!(kept > 0 && lost > 0, "kept {kept}, lost {lost}");
}
