//! The child-process harness the crash and lifecycle tests share: the test binary re-runs
//! one of its own tests as a child process that reports progress as lines on stdout, and
//! the parent kills it with SIGKILL at a moment of its choosing (or waits for its exit
//! code), then checks what recovery finds.
//!
//! Child entry points are `#[ignore]`d tests, so a normal run does not count them as
//! passing tests; the parent starts them with `--ignored --exact <name>`.

// Each test binary uses a part of the harness.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The environment variable that fixes the seed of every [`XorShift`] (the parent's kill
/// times and the child's workload); the parent passes its seed on to every child.
pub const SEED_ENV: &str = "AEDB_CRASH_SEED";

/// What the child's panic hook writes to stderr before it aborts the process.
pub const CHILD_PANIC_MARKER: &str = "CHILD PANIC";

/// This process's seed: [`SEED_ENV`] when set, otherwise drawn from the clock and the
/// process id (once; every call returns the same value).
pub fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| match std::env::var(SEED_ENV) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_ENV}={v:?} is not a u64")),
        Err(_) => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ (u64::from(std::process::id()) << 32)
        }
    })
}

/// How to replay a run with this process's seed, for failure messages.
pub fn replay_hint() -> String {
    let seed = seed();
    format!("seed {seed}; replay with {SEED_ENV}={seed}")
}

/// In the parent, at the start of a crash loop: prints the seed (libtest shows it with the
/// output of a failing test). The returned guard holds the hint for assertion messages
/// and prints it again if the test fails while the guard lives.
pub fn announce_seed(test: &str) -> SeedGuard {
    let hint = replay_hint();
    println!("{test}: {hint}");
    SeedGuard { hint }
}

/// See [`announce_seed`].
pub struct SeedGuard {
    /// `seed N; replay with AEDB_CRASH_SEED=N`.
    pub hint: String,
}

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("crash test failed with {}", self.hint);
        }
    }
}

/// A tiny xorshift64 generator: enough randomness without a `rand` dependency.
pub struct XorShift(u64);

impl XorShift {
    /// Seeded from [`seed`] and `extra` (for per-thread streams).
    pub fn seeded(extra: u64) -> XorShift {
        XorShift((seed() ^ extra.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x % n
    }
}

/// In the child: the value of the child's environment variable `env`, or `None` in a
/// normal test run (the entry point then does nothing). When it is set, installs a panic
/// hook that writes the panic to stderr and **aborts** the process, so a panic on any
/// thread (a worker as well as the test's own) ends the child at once with `SIGABRT`
/// instead of leaving it running until the parent's `SIGKILL` hides it.
pub fn child_env(env: &str) -> Option<std::ffi::OsString> {
    let value = std::env::var_os(env)?;
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        // Straight to the stderr file descriptor (not through libtest's output capture),
        // the panic first: the parent may kill the child while the backtrace resolves.
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{CHILD_PANIC_MARKER}: thread '{name}' {info}");
        let _ = writeln!(err, "{}", std::backtrace::Backtrace::force_capture());
        std::process::abort();
    }));
    Some(value)
}

/// In the child: writes one protocol line to stdout and flushes it, so the parent sees
/// it before any kill.
pub fn emit(line: &str) {
    // One `write` of the whole line (pipe writes this small are atomic), with a leading
    // newline to keep it apart from libtest's "test name ... " prefix.
    let mut out = std::io::stdout().lock();
    out.write_all(format!("\n{line}\n").as_bytes())
        .expect("write to stdout");
    out.flush().expect("flush stdout");
}

/// Kill cycles: the environment variable `env` (a number) or `default`.
pub fn cycles(env: &str, default: u64) -> u64 {
    std::env::var(env)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{env} is a number")))
        .unwrap_or(default)
}

/// A child run of the test `test` of this binary, its stdout arriving line by line on
/// [`KillableChild::lines`]. Dropping it SIGKILLs and reaps the child, so a failing test
/// leaves no process behind.
pub struct KillableChild {
    child: Child,
    /// The child's stdout lines, as they arrive.
    pub lines: Receiver<String>,
    stdout_reader: Option<JoinHandle<()>>,
    stderr_reader: Option<JoinHandle<String>>,
}

/// How a child ended.
pub struct Ended {
    /// Its exit status.
    pub status: ExitStatus,
    /// Whether the parent sent SIGKILL while the child was still running.
    pub kill_sent: bool,
    /// Lines it wrote that [`KillableChild::lines`] had not handed out yet.
    pub rest: Vec<String>,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

const SIGKILL: i32 = 9;

impl Ended {
    /// Whether the SIGKILL the parent sent ended it.
    pub fn killed(&self) -> bool {
        self.kill_sent && self.status.signal() == Some(SIGKILL)
    }

    /// Whether the child reported a panic on stderr (its panic hook's marker, or the
    /// standard panic message).
    pub fn panicked(&self) -> bool {
        self.stderr.contains(CHILD_PANIC_MARKER) || self.stderr.contains("panicked at")
    }

    /// How the child ended, in words, with its stderr.
    pub fn describe(&self) -> String {
        let how = match (self.status.signal(), self.status.code()) {
            (Some(SIGKILL), _) if self.kill_sent => "was killed by the parent's SIGKILL".to_owned(),
            (Some(SIGKILL), _) => "died of a SIGKILL the parent did not send".to_owned(),
            (Some(6), _) => "aborted (SIGABRT: a panic, see stderr)".to_owned(),
            (Some(signal), _) => format!("died of signal {signal}"),
            (None, Some(code)) if self.kill_sent => {
                format!("exited on its own with code {code} just before the parent's kill")
            }
            (None, Some(code)) => format!("exited with code {code}"),
            (None, None) => format!("ended with {:?}", self.status),
        };
        format!("the child {how}\n--- child stderr ---\n{}", self.stderr)
    }

    /// Fails the test unless the SIGKILL the parent sent ended the child and the child
    /// reported no panic. `context` leads the message (say which cycle, and the seed).
    pub fn assert_killed(&self, context: &str) {
        assert!(
            !self.panicked(),
            "{context}: the child panicked; {}",
            self.describe()
        );
        assert!(
            self.killed(),
            "{context}: expected the child to die of the parent's SIGKILL, but {}",
            self.describe()
        );
    }

    /// Fails the test unless the child exited on its own with `code` and reported no
    /// panic.
    pub fn assert_exit_code(&self, code: i32, context: &str) {
        assert!(
            !self.panicked(),
            "{context}: the child panicked; {}",
            self.describe()
        );
        assert!(
            !self.kill_sent && self.status.code() == Some(code),
            "{context}: expected the child to exit with code {code}, but {}",
            self.describe()
        );
    }
}

impl KillableChild {
    /// Starts `test` of this test binary with `envs` set, and [`SEED_ENV`] set to this
    /// process's [`seed`].
    pub fn spawn(test: &str, envs: &[(&str, String)]) -> KillableChild {
        let exe = std::env::current_exe().expect("test binary path");
        let mut child = Command::new(exe)
            .args([
                "--ignored",
                "--exact",
                test,
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SEED_ENV, seed().to_string())
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let mut stderr = child.stderr.take().expect("child stderr");
        let (tx, lines) = mpsc::channel::<String>();
        let stdout_reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        KillableChild {
            child,
            lines,
            stdout_reader: Some(stdout_reader),
            stderr_reader: Some(stderr_reader),
        }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line, or `None` once the child has exited and every line was
    /// read. Fails the test (with the child's stderr) if the child stays silent for
    /// `timeout`; `what` says what the parent was waiting for.
    pub fn recv_line(&mut self, timeout: Duration, what: &str) -> Option<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => self.fail(&format!(
                "the child stayed silent for {timeout:?} waiting for {what}"
            )),
        }
    }

    /// Reads lines until one starts with `word`; returns the rest of that line. Fails
    /// the test (with the child's stderr) if the child exits or stays silent for
    /// `timeout` first.
    pub fn wait_for_line(&mut self, word: &str, timeout: Duration) -> String {
        loop {
            let Some(line) = self.recv_line(timeout, word) else {
                self.fail(&format!("the child exited without a {word} line"));
            };
            if let Some(rest) = line.trim().strip_prefix(word) {
                return rest.trim().to_owned();
            }
        }
    }

    /// Kills and reaps the child and fails the test with `message`, how the child
    /// ended, its stderr and the seed.
    pub fn fail(&mut self, message: &str) -> ! {
        let ended = self.end(true);
        panic!("{message} ({}): {}", replay_hint(), ended.describe());
    }

    /// Waits for the child to exit on its own and collects its output.
    pub fn wait(mut self) -> Ended {
        self.end(false)
    }

    /// SIGKILLs the child (unless it already exited), reaps it, and collects the rest of
    /// its output.
    pub fn kill(mut self) -> Ended {
        self.end(true)
    }

    fn end(&mut self, kill: bool) -> Ended {
        // Only a child still running is sent the signal, so `Ended::killed` can tell the
        // parent's SIGKILL from an exit (or abort) of the child's own.
        let kill_sent = kill
            && match self.child.try_wait().expect("poll the child") {
                Some(_) => false,
                None => {
                    self.child.kill().expect("SIGKILL the child");
                    true
                }
            };
        let status = self.child.wait().expect("wait for child");
        if let Some(reader) = self.stdout_reader.take() {
            reader.join().expect("stdout reader");
        }
        let rest = self.lines.try_iter().collect();
        let stderr = self
            .stderr_reader
            .take()
            .map(|r| r.join().expect("stderr reader"))
            .unwrap_or_default();
        Ended {
            status,
            kill_sent,
            rest,
            stderr,
        }
    }
}

impl Drop for KillableChild {
    fn drop(&mut self) {
        // Errors mean the child is already gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
