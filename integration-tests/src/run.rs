//! Building `vmm-bin` and running it with a watchdog: to completion
//! ([`run_vmm`], [`run_raw`]) or while reading its output line by line
//! ([`run_vmm_until`]) or in the background while the test plays a host-side
//! peer ([`spawn_vmm`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Panics with a clear message when `/dev/kvm` cannot be opened: these tests
/// exist to run guests, so a machine without KVM must fail them, not skip.
pub fn require_kvm() {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        panic!("this test needs /dev/kvm (read/write), which this machine lacks: {e}");
    }
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration-tests sits in the workspace")
        .to_path_buf()
}

/// The target `.cargo/config.toml` builds for.
pub const BUILD_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Path to a freshly built `vmm-bin` (built once per test process with the
/// same profile as the tests).
pub fn vmm_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = !cfg!(debug_assertions);
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "vmm-bin"])
            .current_dir(workspace_root());
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo runs");
        assert!(status.success(), "building vmm-bin failed");
        // .cargo/config.toml names the target (for its static link), so
        // binaries are under the triple.
        target_dir()
            .join(BUILD_TARGET)
            .join(if release { "release" } else { "debug" })
            .join("vmm-bin")
    })
}

/// A command that runs `vmm-bin` with its kernel cache (on by default)
/// under the target directory instead of the user's `~/.cache`, shared by
/// all tests: entries are keyed by file identity, and test kernels are
/// fresh files, so they do not hit each other's entries.
pub fn vmm_command() -> Command {
    let mut cmd = Command::new(vmm_bin());
    cmd.env("XDG_CACHE_HOME", test_cache_home());
    cmd
}

/// The `XDG_CACHE_HOME` every test run of `vmm-bin` gets.
fn test_cache_home() -> PathBuf {
    target_dir().join("test-xdg-cache")
}

/// The cargo target directory.
pub fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"))
}

/// What a `vmm-bin` run produced.
#[derive(Debug)]
pub struct Output {
    /// Exit status (-1 if killed by a signal).
    pub status: i32,
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard output, byte for byte (guests that dump binary data).
    pub stdout_raw: Vec<u8>,
    /// Standard error.
    pub stderr: String,
    /// Wall time of the process.
    pub elapsed: Duration,
}

/// How long any single `vmm-bin` process may run before the test kills it
/// and fails: a watchdog on top of the VMM's own `--timeout`.
pub const PROCESS_WATCHDOG: Duration = Duration::from_secs(60);

/// Runs `vmm-bin` with `args`, killing it after [`PROCESS_WATCHDOG`].
pub fn run_vmm(args: &[&str]) -> Output {
    run_vmm_wrapped(&[], args)
}

/// [`run_vmm`] through a wrapper command (`["ip", "netns", "exec", NS]`):
/// runs `wrapper... vmm-bin args...`, with the same environment and
/// watchdog.
pub fn run_vmm_wrapped(wrapper: &[&str], args: &[&str]) -> Output {
    // Build first: the watchdog times the VMM, not cargo.
    vmm_bin();
    let start = Instant::now();
    let mut cmd = match wrapper.split_first() {
        None => vmm_command(),
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest)
                .arg(vmm_bin())
                .env("XDG_CACHE_HOME", test_cache_home());
            c
        }
    };
    let mut child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {wrapper:?} vmm-bin failed: {e}"));
    // Drain pipes on threads so a chatty guest cannot block on a full pipe.
    let mut out_pipe = child.stdout.take().expect("piped");
    let mut err_pipe = child.stderr.take().expect("piped");
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut out_pipe, &mut s).ok();
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut err_pipe, &mut s).ok();
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait works") {
            break st;
        }
        if start.elapsed() > PROCESS_WATCHDOG {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vmm-bin {args:?} still running after {PROCESS_WATCHDOG:?}: hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout_raw = out_t.join().expect("reader");
    let stdout = String::from_utf8_lossy(&stdout_raw).into_owned();
    let stderr = String::from_utf8_lossy(&err_t.join().expect("reader")).into_owned();
    Output {
        status: status.code().unwrap_or(-1),
        stdout,
        stdout_raw,
        stderr,
        elapsed: start.elapsed(),
    }
}
/// A `vmm-bin` run whose stdout was read line by line as it arrived.
#[derive(Debug)]
pub struct StreamedRun {
    /// Each stdout line (without `\r`/`\n`) with the time since spawn.
    pub lines: Vec<(Duration, String)>,
    /// Whether `stop_when` matched (the process was then killed).
    pub matched: bool,
    /// Exit status if the process ended by itself.
    pub status: Option<i32>,
    /// Standard error.
    pub stderr: String,
}

impl StreamedRun {
    /// The first line containing `needle`, with its arrival time.
    pub fn find(&self, needle: &str) -> Option<&(Duration, String)> {
        self.lines.iter().find(|(_, l)| l.contains(needle))
    }
}

/// Runs `vmm-bin` with `args`, reading stdout as it comes; kills it as soon
/// as `stop_when(line)` is true or after `limit`.
pub fn run_vmm_until(
    args: &[&str],
    stop_when: impl Fn(&str) -> bool,
    limit: Duration,
) -> StreamedRun {
    use std::io::BufRead;
    // Build first: the limit times the VMM, not cargo.
    vmm_bin();
    let start = Instant::now();
    let (mut child, out, mut err_pipe) = spawn_piped(args);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(out);
        let mut buf = Vec::new();
        while reader
            .read_until(b'\n', &mut buf)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            let line = String::from_utf8_lossy(&buf)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            if tx.send((start.elapsed(), line)).is_err() {
                break;
            }
            buf.clear();
        }
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut err_pipe, &mut s).ok();
        s
    });
    let mut lines = Vec::new();
    let mut matched = false;
    while start.elapsed() < limit {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok((t, line)) => {
                let hit = stop_when(&line);
                lines.push((t, line));
                if hit {
                    matched = true;
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if child.try_wait().ok().flatten().is_some() {
                    // Drain whatever is left, then stop.
                    while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
                        lines.push(l);
                    }
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                // Stdout closed: the process is exiting; give it a moment
                // to be reaped so its status is known.
                let until = start.elapsed() + Duration::from_secs(2);
                while child.try_wait().ok().flatten().is_none() && start.elapsed() < until {
                    std::thread::sleep(Duration::from_millis(10));
                }
                break;
            }
        }
    }
    let status = match child.try_wait().ok().flatten() {
        Some(st) => st.code(),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    };
    let stderr = String::from_utf8_lossy(&err_t.join().expect("reader")).into_owned();
    StreamedRun {
        lines,
        matched,
        status,
        stderr,
    }
}
/// A `vmm-bin` run with stdout as bytes (guests that dump binary data).
#[derive(Debug)]
pub struct RawRun {
    /// Exit status.
    pub status: i32,
    /// Standard output, byte for byte.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: String,
}

/// [`run_vmm`], keeping stdout as bytes.
pub fn run_raw(args: &[&str]) -> RawRun {
    let out = run_vmm(args);
    RawRun {
        status: out.status,
        stdout: out.stdout_raw,
        stderr: out.stderr,
    }
}

/// A `vmm-bin` run in the background: the test reads the guest's stdout
/// lines as they come ([`Self::wait_line`]) while it plays a host-side
/// peer (a socket, a file), then collects the end ([`Self::finish`]).
/// Killed on drop if still running.
#[derive(Debug)]
pub struct Background {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
    start: Instant,
}

/// Starts `vmm-bin` with `args`, stdin closed, stdout and stderr piped.
fn spawn_piped(
    args: &[&str],
) -> (
    std::process::Child,
    std::process::ChildStdout,
    std::process::ChildStderr,
) {
    let mut child = vmm_command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vmm-bin starts");
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    (child, out, err)
}

/// Starts `vmm-bin` with `args` in the background (pass `--timeout` too:
/// the VMM's own watchdog).
pub fn spawn_vmm(args: &[&str]) -> Background {
    use std::io::BufRead;
    vmm_bin();
    let (child, out, mut err_pipe) = spawn_piped(args);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line).trim_end().to_string();
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut err_pipe, &mut s).ok();
        s
    });
    Background {
        child,
        lines: rx,
        seen: Vec::new(),
        stderr: Some(stderr),
        start: Instant::now(),
    }
}

impl Background {
    /// Waits for a stdout line containing `needle` and returns it; panics
    /// with everything seen so far if none comes within `limit` or the
    /// process ends first.
    pub fn wait_line(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    let stderr = self.stderr.take().and_then(|t| t.join().ok());
                    panic!(
                        "no line with {needle:?} from vmm-bin ({e:?}, after {:?}); stdout so far:\n{}\nstderr:\n{}",
                        self.start.elapsed(),
                        self.seen.join("\n"),
                        String::from_utf8_lossy(&stderr.unwrap_or_default())
                    );
                }
            }
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) on our own child's pid, which has not been
        // reaped (we hold the Child and have not waited).
        let r = unsafe { libc::kill(pid, signal) };
        assert_eq!(r, 0, "kill({pid}, {signal})");
    }

    /// Waits for the process to end (killing it after
    /// [`PROCESS_WATCHDOG`] from the start) and returns all its output.
    pub fn finish(mut self) -> Output {
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("wait works") {
                break st;
            }
            if self.start.elapsed() > PROCESS_WATCHDOG {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "vmm-bin still running after {PROCESS_WATCHDOG:?}: hung; stdout:\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // The reader thread ends at end of file.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        let stderr = self.stderr.take().and_then(|t| t.join().ok());
        let stdout = self.seen.join("\n");
        Output {
            status: status.code().unwrap_or(-1),
            stdout_raw: stdout.clone().into_bytes(),
            stdout,
            stderr: String::from_utf8_lossy(&stderr.unwrap_or_default()).into_owned(),
            elapsed: self.start.elapsed(),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
