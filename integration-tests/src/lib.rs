//! Helpers for the KVM integration tests: building test guests with the
//! iced-x86 assembler, writing them to temporary files, and running the
//! `vmm-bin` binary with a watchdog.
//!
//! Every test that runs a guest needs `/dev/kvm`; [`require_kvm`] fails the
//! test loudly (never skips it) when it is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use iced_x86::code_asm;

mod virtio_guest;
use iced_x86::code_asm::CodeAssembler;
pub use virtio_guest::virtio_guest;

/// Assembles a guest for `bitness` (16, 32 or 64) at address `ip`.
pub fn assemble(bitness: u32, ip: u64, build: impl FnOnce(&mut CodeAssembler)) -> Vec<u8> {
    let mut a = CodeAssembler::new(bitness).expect("valid bitness");
    build(&mut a);
    a.assemble(ip).expect("guest assembles")
}

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
        target_dir()
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
    cmd.env("XDG_CACHE_HOME", target_dir().join("test-xdg-cache"));
    cmd
}

/// The cargo target directory.
pub fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"))
}

/// A temporary file deleted on drop.
pub struct TempFile(PathBuf);

impl TempFile {
    /// Writes `bytes` to a new temporary file.
    pub fn with_bytes(bytes: &[u8]) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "vmm-test-{}-{}.bin",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, bytes).expect("temp file written");
        TempFile(path)
    }

    /// Its path as a string.
    pub fn path(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
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
    // Build first: the watchdog times the VMM, not cargo.
    vmm_bin();
    let start = Instant::now();
    let mut child = vmm_command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vmm-bin starts");
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

/// The documented exit statuses (see `vmm-bin --help`).
pub mod status {
    /// Guest halted.
    pub const HALTED: i32 = 0;
    /// Bad usage or input.
    pub const BAD_INPUT: i32 = 2;
    /// Triple fault.
    pub const TRIPLE_FAULT: i32 = 4;
    /// `--max-exits` or `--timeout` reached.
    pub const LIMIT_REACHED: i32 = 6;
    /// KVM unavailable.
    pub const KVM_UNAVAILABLE: i32 = 8;
    /// vCPU fault.
    pub const VCPU_FAULT: i32 = 10;
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
    let mut child = vmm_command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vmm-bin starts");
    let out = child.stdout.take().expect("piped");
    let mut err_pipe = child.stderr.take().expect("piped");
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
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
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

/// Reads the tagged binary dumps the boot-protocol test kernels write to the
/// debug console: 2-byte tags, little-endian integers, NUL-terminated
/// strings. Every read panics with the offset if the dump ends early.
#[derive(Debug)]
pub struct Dump<'a> {
    /// The whole dump.
    pub bytes: &'a [u8],
    /// The read position.
    pub at: usize,
}

impl<'a> Dump<'a> {
    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let s = self.bytes.get(self.at..self.at + n).unwrap_or_else(|| {
            panic!(
                "dump ends at {} (wanted {n} bytes at {})",
                self.bytes.len(),
                self.at
            )
        });
        self.at += n;
        s
    }

    /// Expects the 2-byte tag `t` next.
    pub fn tag(&mut self, t: &[u8; 2]) {
        let at = self.at;
        let got = self.take(2);
        assert_eq!(
            got,
            t,
            "tag {:?} expected at dump offset {at}",
            String::from_utf8_lossy(t)
        );
    }

    /// A NUL-terminated string (without the NUL).
    pub fn cstr(&mut self) -> &'a [u8] {
        let len = self.bytes[self.at..]
            .iter()
            .position(|&b| b == 0)
            .expect("NUL-terminated string in dump");
        let s = self.take(len);
        self.take(1);
        s
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().expect("4 bytes"))
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().expect("8 bytes"))
    }
}

/// Code emitters and data for test kernels.
pub mod guest_asm {
    use iced_x86::code_asm::*;

    /// A 64-bit interrupt gate to `handler` through the VMM's boot code
    /// segment (0x10). Interrupt test guests run in long mode: on the
    /// development machines' nested KVM a 32-bit `iret` fails emulation.
    pub fn idt_gate64(handler: u64) -> [u8; 16] {
        let mut g = [0u8; 16];
        g[0..2].copy_from_slice(&(handler as u16).to_le_bytes());
        g[2..4].copy_from_slice(&0x10u16.to_le_bytes());
        g[5] = 0x8e; // present, DPL 0, interrupt gate
        g[6..8].copy_from_slice(&((handler >> 16) as u16).to_le_bytes());
        g[8..12].copy_from_slice(&((handler >> 32) as u32).to_le_bytes());
        g
    }

    /// Writes a two-byte tag to the debug console (DX must be 0xe9).
    pub fn tag(a: &mut CodeAssembler, t: &[u8; 2]) {
        for &b in t {
            a.mov(al, i32::from(b)).expect("mov");
            a.out(dx, al).expect("out");
        }
    }

    /// 32-bit code: dumps the NUL-terminated string at ESI (NUL included,
    /// at most `max` bytes scanned) to the port in DX.
    pub fn dump_string(a: &mut CodeAssembler, max: u32) {
        a.mov(edi, esi).expect("mov");
        a.xor(eax, eax).expect("xor");
        a.mov(ecx, max).expect("mov");
        a.repne().scasb().expect("scasb");
        a.mov(ecx, edi).expect("mov");
        a.sub(ecx, esi).expect("sub");
        a.rep().outsb().expect("outsb");
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
