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
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

/// A tiny xorshift64 generator: enough randomness without a `rand` dependency.
pub struct XorShift(u64);

impl XorShift {
    /// Seeded from the clock, the process id and `extra` (for per-thread streams).
    pub fn seeded(extra: u64) -> XorShift {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = nanos
            ^ (u64::from(std::process::id()) << 32)
            ^ extra.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        XorShift(seed | 1)
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
    /// Lines it wrote that [`KillableChild::lines`] had not handed out yet.
    pub rest: Vec<String>,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Ended {
    /// Whether SIGKILL ended it.
    pub fn killed(&self) -> bool {
        self.status.signal() == Some(9)
    }
}

impl KillableChild {
    /// Starts `test` of this test binary with `envs` set.
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

    /// Reads lines until one starts with `word`; returns the rest of that line. Panics
    /// if the child exits or stays silent for `timeout` first.
    pub fn wait_for_line(&self, word: &str, timeout: std::time::Duration) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(timeout)
                .unwrap_or_else(|e| panic!("no {word} line from the child: {e}"));
            if let Some(rest) = line.trim().strip_prefix(word) {
                return rest.trim().to_owned();
            }
        }
    }

    /// Waits for the child to exit on its own and collects its output.
    pub fn wait(self) -> Ended {
        self.end(false)
    }

    /// SIGKILLs the child (unless it already exited), reaps it, and collects the rest of
    /// its output.
    pub fn kill(self) -> Ended {
        self.end(true)
    }

    fn end(mut self, kill: bool) -> Ended {
        if kill {
            // Ignore the result: a child that exited on its own is reported by the status.
            let _ = self.child.kill();
        }
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
