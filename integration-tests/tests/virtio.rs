//! virtio-mmio devices end to end, driven by a freestanding driver guest
//! (`integration-tests/guests/virtio/guest.c`) that finds its devices on the
//! kernel command line (`virtio_mmio.device=4K@<base>:<gsi>`), initialises
//! them as virtio 1.2 section 3.1.1 says, and waits for every completion
//! through the device's interrupt (IOAPIC pin = GSI). Linux's own drivers
//! cannot be reached on these hosts (its kernel-mode code is emulated), so
//! this guest is the proof that the transport and devices work as a driver
//! sees them.

use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use integration_tests::{
    expect_bad_input, require_kvm, run_vmm, spawn_vmm, virtio_guest, virtio_guest_pvh, vmm_command,
    LoopDevice, Output, TempFile,
};

/// The guest's lines "key value" (debug console on stdout).
fn value<'a>(out: &'a Output, key: &str) -> &'a str {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no '{key}' line in:\n{}\n{}", out.stdout, out.stderr))
}

/// Runs the guest's test `vtest` with the device flags `args`; the guest
/// ends with debug-exit 0 (status 1) when it got through.
fn run_guest(vtest: &str, args: &[&str]) -> Output {
    require_kvm();
    let guest = virtio_guest().to_str().expect("utf-8 path").to_string();
    let cmdline = format!("vtest={vtest}");
    let mut all = vec![
        "--kernel",
        guest.as_str(),
        "--cmdline",
        cmdline.as_str(),
        "--timeout",
        "30",
    ];
    all.extend_from_slice(args);
    let out = run_vmm(&all);
    assert_eq!(
        out.status, 1,
        "guest did not finish:\n{}\n{}",
        out.stdout, out.stderr
    );
    assert!(out.stdout.contains("done"), "{}", out.stdout);
    out
}

#[test]
fn test_virtio_rng_fills_requests_with_host_entropy_through_interrupts() {
    let out = run_guest("rng", &["--rng"]);
    assert!(
        out.stdout.contains("device 0 type 4 at 0xfeb00000 gsi 5"),
        "discovered from the command line: {}",
        out.stdout
    );
    let draws: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("rng 32 "))
        .collect();
    assert_eq!(draws.len(), 2, "{}", out.stdout);
    for d in &draws {
        assert_eq!(d.len(), 64);
        assert_ne!(*d, "0".repeat(64), "bytes were written");
    }
    assert_ne!(draws[0], draws[1], "two requests, two different draws");
    // The guest waits for each completion by interrupt, so at least one
    // came; two edges on the same IOAPIC pin before the first is taken
    // merge into one (as on hardware), so "2" is the usual count, not a
    // guarantee.
    let irqs: u32 = value(&out, "irqs").parse().expect("a number");
    assert!(
        (1..=2).contains(&irqs),
        "interrupts for two completions: {irqs}"
    );
}

#[test]
fn test_virtio_console_output_reaches_its_file_exactly() {
    let file = TempFile::with_bytes(b"stale");
    let arg = format!("file:{}", file.path());
    // Two devices: the console takes the second slot after the rng.
    let out = run_guest("console", &["--rng", "--virtio-console", &arg]);
    assert!(
        out.stdout.contains("device 1 type 3 at 0xfeb01000 gsi 6"),
        "{}",
        out.stdout
    );
    assert_eq!(
        value(&out, "tx-used"),
        "0",
        "transmit buffers are not written"
    );
    assert_eq!(std::fs::read(file.path()).unwrap(), b"hello from hvc0\n");
}

#[test]
fn test_virtio_console_on_stdio_takes_stdin_as_hvc0_input() {
    require_kvm();
    let guest = virtio_guest().to_str().expect("utf-8 path").to_string();
    let message = "typed-on-the-host-stdin";
    let cmdline = format!("vtest=console vtest-input={message}");
    let mut child = vmm_command()
        .args([
            "--kernel",
            &guest,
            "--cmdline",
            &cmdline,
            "--virtio-console",
            "stdio",
            "--timeout",
            "30",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vmm-bin");
    // Written before the driver is up: the bytes wait in the console's
    // queue (or the pipe) and reach the guest once it posts buffers.
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(message.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    drop(stdin);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("rx {message}\n")),
        "hvc0 received stdin: {stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("hello from hvc0\n"),
        "hvc0 output on stdout: {stdout}"
    );
}

#[test]
fn test_virtio_devices_are_announced_on_the_command_line_and_at_info_level() {
    require_kvm();
    let guest = virtio_guest().to_str().unwrap().to_string();
    let out = run_vmm(&[
        "--kernel",
        &guest,
        "--cmdline",
        "vtest=rng",
        "--rng",
        "--virtio-console",
        "none",
        "--timeout",
        "30",
        "-v",
    ]);
    assert!(
        out.stderr
            .contains("virtio Console at 0xfeb01000, GSI 6 (virtio_mmio.device=4K@0xfeb01000:6)"),
        "{}",
        out.stderr
    );
}

#[test]
fn test_virtio_vsock_unusable_socket_paths_are_bad_input_naming_the_path() {
    let g = TempFile::with_bytes(&[0xf4]);
    // A regular file where the socket should go: refused, never replaced.
    let file = TempFile::with_bytes(b"not a socket");
    let arg = format!("cid=3,socket={}", file.path());
    let out = run_vmm(&["--kernel", g.path(), "--vsock", &arg]);
    assert_eq!(out.status, 2, "{}", out.stderr);
    assert!(out.stderr.contains(file.path()), "{}", out.stderr);
    assert!(out.stderr.contains("not a socket"), "{}", out.stderr);
    assert_eq!(std::fs::read(file.path()).unwrap(), b"not a socket");
    // A directory that does not exist.
    let missing = "/nonexistent-vmm-test-dir/v.sock";
    let arg = format!("cid=3,socket={missing}");
    let out = run_vmm(&["--kernel", g.path(), "--vsock", &arg]);
    assert_eq!(out.status, 2, "{}", out.stderr);
    assert!(out.stderr.contains(missing), "{}", out.stderr);
}

/// A scratch directory for one test's sockets, removed on drop.
struct SocketDir(std::path::PathBuf);

impl SocketDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vmm-vsock-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        SocketDir(dir)
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Reads one `\n`-terminated line from `s` (byte by byte: what follows is
/// the stream's).
fn read_line(s: &mut UnixStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).expect("reading the line") == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// Accepts one connection on `listener` within `limit` (the guest may
/// never come).
fn accept_within(listener: &UnixListener, limit: Duration) -> Option<UnixStream> {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok((s, _)) = listener.accept() {
            s.set_nonblocking(false).unwrap();
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Connects to the VMM's socket and asks for guest port `port`.
fn connect_port(path: &std::path::Path, port: u32) -> UnixStream {
    let mut s = UnixStream::connect(path).expect("the VMM listens on its socket");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(format!("CONNECT {port}\n").as_bytes()).unwrap();
    s
}

/// The `OK <port>` line of an accepted host connection; returns the port.
fn expect_ok(s: &mut UnixStream) -> u32 {
    let line = read_line(s);
    let port = line
        .strip_prefix("OK ")
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("expected OK <port>, got {line:?}"));
    assert!(port >= 1 << 30, "host-side ports start at 2^30: {port}");
    port
}

#[test]
fn test_virtio_vsock_host_and_guest_connections_with_credit_flow_control() {
    require_kvm();
    let dir = SocketDir::new("e2e");
    let path = dir.0.join("v.sock");
    // A stale socket file from an earlier run is replaced.
    drop(UnixListener::bind(&path).unwrap());
    // Guest connections to host port 5678 land here.
    let port_listener = UnixListener::bind(dir.0.join("v.sock_5678")).unwrap();
    let host_side = std::thread::spawn(move || {
        let mut s = accept_within(&port_listener, Duration::from_secs(50))
            .expect("the guest connected to host port 5678");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut hello = [0u8; 16];
        s.read_exact(&mut hello).unwrap();
        s.write_all(b"hello from host").unwrap();
        // The guest then shuts down both ways: end of file.
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        (hello, rest)
    });
    let guest = virtio_guest().to_str().unwrap().to_string();
    let vsock = format!("cid=3,socket={}", path.display());
    let mut vm = spawn_vmm(&[
        "--kernel",
        &guest,
        "--cmdline",
        "vtest=vsock",
        "--vsock",
        &vsock,
        "--timeout",
        "50",
    ]);
    let wait = Duration::from_secs(40);
    vm.wait_line("listening 1234", wait);

    // (a) Host to guest port 1234: the guest echoes uppercased.
    let mut s = connect_port(&path, 1234);
    let host_port = expect_ok(&mut s);
    let accepted = vm.wait_line("accepted 1234", wait);
    assert_eq!(accepted, format!("accepted 1234 from {host_port}"));
    s.write_all(b"ping from host").unwrap();
    let mut echo = [0u8; 14];
    s.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"PING FROM HOST");
    assert_eq!(vm.wait_line("rx ", wait), "rx ping from host");
    drop(s);
    // The host closed both ways: the guest is told so.
    assert_eq!(vm.wait_line("end 1234", wait), "end 1234 shutdown 3");

    // A guest port nobody listens on: the guest resets, the VMM closes the
    // host's socket without an OK line (as Firecracker does).
    let mut s = connect_port(&path, 4444);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("closed, not reset");
    assert!(
        rest.is_empty(),
        "no OK line: {:?}",
        String::from_utf8_lossy(&rest)
    );
    vm.wait_line("refused 4444", wait);

    // (c) Credit: the guest's buffer is 4096 bytes, the host sends 16 KiB.
    let mut s = connect_port(&path, 1235);
    expect_ok(&mut s);
    let sent: Vec<u8> = (0..16384u32).map(|i| (i * 7 % 251) as u8).collect();
    s.write_all(&sent).unwrap();
    vm.wait_line("credit-bytes 16384", wait);
    drop(s);
    vm.wait_line("end 1235", wait);

    // (b) The guest connects to host ports 5679 (nobody) and 5678.
    let out = vm.finish();
    assert_eq!(
        out.status, 1,
        "guest did not finish:\n{}\n{}",
        out.stdout, out.stderr
    );
    assert!(out.stdout.contains("done"), "{}", out.stdout);
    assert_eq!(value(&out, "vsock-cid"), "3");
    assert_eq!(value(&out, "credit-order-ok"), "1", "all bytes, in order");
    assert_eq!(value(&out, "credit-violations"), "0");
    // The guest returns credit only for a full buffer: the device filled
    // it each time and never went beyond.
    assert_eq!(value(&out, "credit-max-outstanding"), "4096");
    assert_eq!(value(&out, "connect 5679 op"), "3", "RST: nobody listens");
    assert_eq!(value(&out, "connect 5678 op"), "2", "RESPONSE");
    assert_eq!(value(&out, "reply"), "hello from host");
    assert_eq!(value(&out, "closed"), "5678");
    let (hello, rest) = host_side.join().expect("host side");
    assert_eq!(&hello, b"hello from guest");
    assert!(rest.is_empty());
}

/// Real mode: prints "R\n" on the UART, then spins until stopped.
const PRINT_AND_SPIN: &[u8] = &[
    0xba, 0xf8, 0x03, // mov dx, 0x3f8
    0xb0, b'R', 0xee, // mov al, 'R'; out dx, al
    0xb0, b'\n', 0xee, // mov al, '\n'; out dx, al
    0xeb, 0xfe, // jmp $
];

fn vsock_arg(path: &std::path::Path) -> String {
    format!("cid=3,socket={}", path.display())
}

#[test]
fn test_virtio_vsock_socket_file_is_removed_when_the_guest_exits() {
    require_kvm();
    let dir = SocketDir::new("exit");
    let path = dir.0.join("v.sock");
    // A killed VMM's socket (nobody listens): replaced.
    drop(UnixListener::bind(&path).unwrap());
    let hlt = TempFile::with_bytes(&[0xf4]);
    let out = run_vmm(&["--kernel", hlt.path(), "--vsock", &vsock_arg(&path)]);
    assert_eq!(out.status, 0, "the guest halts: {}", out.stderr);
    assert!(!path.exists(), "the socket file outlived the VMM");
}

#[test]
fn test_virtio_vsock_socket_file_is_removed_after_a_start_up_error() {
    let dir = SocketDir::new("error");
    let path = dir.0.join("v.sock");
    // The socket is bound before the kernel is loaded, which then fails.
    let empty = TempFile::with_bytes(&[]);
    let out = run_vmm(&["--kernel", empty.path(), "--vsock", &vsock_arg(&path)]);
    assert_eq!(out.status, 2, "{}", out.stderr);
    assert!(out.stderr.contains("empty"), "{}", out.stderr);
    assert!(!path.exists(), "the socket file outlived the VMM");
}

/// Starts a spinning guest with a vsock device, waits until its socket
/// listens, sends `signals` one after the other, `gap` apart; the socket
/// file must be gone once the VMM has ended, with status 128 + the first
/// signal. Returns the VMM's output.
fn vsock_socket_removed_after(name: &str, signals: &[i32], gap: Duration) -> Output {
    require_kvm();
    let dir = SocketDir::new(name);
    let path = dir.0.join("v.sock");
    let guest = TempFile::with_bytes(PRINT_AND_SPIN);
    let vsock = vsock_arg(&path);
    let mut vm = spawn_vmm(&[
        "--kernel",
        guest.path(),
        "--vsock",
        &vsock,
        "--timeout",
        "60",
    ]);
    vm.wait_line("R", Duration::from_secs(30));
    let live = UnixStream::connect(&path);
    assert!(
        live.is_ok(),
        "the VMM listens on {}: {live:?}",
        path.display()
    );
    drop(live);
    for (i, &s) in signals.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(gap);
        }
        vm.signal(s);
    }
    let out = vm.finish();
    assert_eq!(out.status, 128 + signals[0], "{}", out.stderr);
    assert!(
        !path.exists(),
        "the socket file outlived the VMM: {}",
        out.stderr
    );
    out
}

#[test]
fn test_virtio_vsock_socket_file_is_removed_after_sigterm() {
    let out = vsock_socket_removed_after("sigterm", &[libc::SIGTERM], Duration::ZERO);
    assert!(out.stderr.contains("stopped by SIGTERM"), "{}", out.stderr);
}

#[test]
fn test_virtio_vsock_socket_file_is_removed_after_sigint() {
    let out = vsock_socket_removed_after("sigint", &[libc::SIGINT], Duration::ZERO);
    assert!(out.stderr.contains("stopped by SIGINT"), "{}", out.stderr);
}

#[test]
fn test_virtio_vsock_socket_file_is_removed_after_a_forced_exit() {
    // A second signal while the VMM is stopping ends it at once, from the
    // signal handler, without the orderly report ("stopped by ..."). Two
    // signals sent together merge into one, and one sent too late finds the
    // VMM gone: a few tries with a short gap catch it mid-stop.
    let mut forced = 0;
    for attempt in 0..10u32 {
        let gap = Duration::from_micros(100 + 100 * u64::from(attempt % 4));
        let out = vsock_socket_removed_after(
            &format!("forced{attempt}"),
            &[libc::SIGTERM, libc::SIGTERM],
            gap,
        );
        if !out.stderr.contains("stopped by") {
            forced += 1;
            if forced == 2 {
                break;
            }
        }
    }
    assert!(
        forced > 0,
        "no try caught the VMM while it stopped: the forced exit went untested"
    );
}

#[test]
fn test_virtio_vsock_live_socket_is_refused_and_kept() {
    let dir = SocketDir::new("live");
    let path = dir.0.join("v.sock");
    // Another process (another VMM, say) listens there.
    let theirs = UnixListener::bind(&path).unwrap();
    let hlt = TempFile::with_bytes(&[0xf4]);
    let out = run_vmm(&["--kernel", hlt.path(), "--vsock", &vsock_arg(&path)]);
    assert_eq!(out.status, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(&path.display().to_string()),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("listening there"), "{}", out.stderr);
    // Their socket is untouched: still there, still answering.
    let _c = UnixStream::connect(&path).expect("their socket still listens");
    theirs.set_nonblocking(true).unwrap();
    assert!(theirs.accept().is_ok());
}

/// A 16-sector disk image: a marker in sector 0, sector `i` filled with
/// byte `i` after that.
fn disk_image() -> (TempFile, Vec<u8>) {
    let mut bytes: Vec<u8> = (0..16u8).flat_map(|i| [i; 512]).collect();
    bytes[..30].copy_from_slice(b"marker in sector 0 of the dis\0");
    (TempFile::with_bytes(&bytes), bytes)
}

fn disk_arg(file: &TempFile, extra: &str) -> String {
    format!("path={}{extra}", file.path())
}

/// Asserts the guest printed `key value` for every pair.
fn expect_lines(out: &Output, pairs: &[(&str, &str)]) {
    for (k, v) in pairs {
        assert_eq!(value(out, k), *v, "line {k:?} in:\n{}", out.stdout);
    }
}

#[test]
fn test_virtio_blk_reads_writes_flushes_and_identifies() {
    let (file, before) = disk_image();
    let disk = disk_arg(&file, ",serial=blk-serial-1");
    let out = run_guest("blk", &["--disk", &disk]);
    assert!(
        out.stdout.contains("device 0 type 2 at 0xfeb00000 gsi 5"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("boot pvh"), "the vmlinux entry");
    expect_lines(
        &out,
        &[
            ("features-ro", "0"),
            ("features-flush", "1"),
            // Offered because the temp dir's filesystem has PUNCH_HOLE and
            // ZERO_RANGE (ext4 here; the unit tests say so if not).
            ("features-discard", "1"),
            ("features-write-zeroes", "1"),
            ("capacity", "16"),
            ("seg_max", "254"),
            ("blk_size", "512"),
            ("get-id-status", "0"),
            ("get-id-used", "21"),
            ("id", "blk-serial-1"),
            ("read0-status", "0"),
            ("read0-used", "513"),
            ("sector0", "marker in sector 0 of the dis"),
            ("write1-status", "0"),
            ("write1-used", "1"),
            ("flush-status", "0"),
            ("flush-used", "1"),
            ("read1-status", "0"),
            ("read1-used", "513"),
            ("read1-matches", "1"),
            ("write-zeroes-status", "0"),
            ("write-zeroes-used", "1"),
            ("read8-status", "0"),
            ("zeroed", "1"),
            ("oob-status", "1"),
            ("oob-used", "1"),
            ("oob-straddle-status", "1"),
            ("oob-straddle-used", "1"),
            ("oob-untouched", "1"),
            ("unsupported-status", "2"),
            ("unsupported-used", "1"),
        ],
    );
    // The guest waits for each completion by interrupt; two can merge into
    // one when the guest sees the used ring before the first is delivered.
    let irqs: u32 = value(&out, "irqs").parse().unwrap();
    assert!(
        (1..=10).contains(&irqs),
        "{irqs} interrupts for 10 completions"
    );
    assert_eq!(
        std::fs::read(file.path()).unwrap(),
        blk_guest_wrote(&before, true),
        "only sector 1 (written) and sectors 8-15 (zeroed) changed"
    );
}

/// The image after the `blk` guest mode ran on a writable disk: sector 1
/// written, and sectors 8-15 zeroed if WRITE_ZEROES was offered.
fn blk_guest_wrote(before: &[u8], write_zeroes: bool) -> Vec<u8> {
    let mut want = before.to_vec();
    want[512..543].copy_from_slice(b"written by the guest, sector 1\0");
    want[543..1024].fill(0x5a);
    if write_zeroes {
        want[4096..8192].fill(0);
    }
    want
}

/// `--disk path=/dev/loopN`: a host block device, whose size comes from
/// the device (BLKGETSIZE64; its st_size is 0), locked like a file,
/// honouring readonly=on, offering DISCARD/WRITE_ZEROES as its queue says.
#[test]
fn test_virtio_blk_on_a_host_block_device() {
    require_kvm();
    let (file, before) = disk_image();
    let dev = LoopDevice::attach(file.path());
    let node = std::fs::metadata(dev.path()).unwrap();
    assert_eq!(node.len(), 0, "a block device's st_size says nothing");
    // Probed as the device thread would: the kernel zeroes in "hardware"
    // (the loop driver's fallocate on its file) when this is set.
    let zeroes = dev.queue_limit("write_zeroes_max_bytes") > 0;
    let offered = if zeroes { "1" } else { "0" };
    let guest = virtio_guest().to_str().unwrap().to_string();

    // Read-only first: nothing may change.
    let ro = format!("path={},readonly=on", dev.path());
    let out = run_guest("blk", &["--disk", &ro]);
    expect_lines(
        &out,
        &[
            ("features-ro", "1"),
            ("features-discard", "0"),
            ("features-write-zeroes", "0"),
            ("capacity", "16"),
            ("sector0", "marker in sector 0 of the dis"),
            ("write1-status", "1"),
            ("write-zeroes-status", "none"),
        ],
    );
    assert_eq!(std::fs::read(file.path()).unwrap(), before, "unchanged");

    // Someone else's exclusive lock on the device keeps us out.
    {
        let holder = std::fs::File::open(dev.path()).unwrap();
        // SAFETY: flock(2) on a descriptor we own.
        let r = unsafe { libc::flock(holder.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(r, 0, "the test takes the lock");
        let rw = format!("path={}", dev.path());
        let out = expect_bad_input(&["--kernel", &guest, "--disk", &rw], dev.path());
        assert!(out.stderr.contains("in use"), "{}", out.stderr);
    }

    let rw = format!("path={},serial=loop-disk", dev.path());
    let out = run_guest("blk", &["--disk", &rw]);
    let mut lines = vec![
        ("features-ro", "0"),
        ("features-discard", offered),
        ("features-write-zeroes", offered),
        ("capacity", "16"),
        ("id", "loop-disk"),
        ("read0-status", "0"),
        ("sector0", "marker in sector 0 of the dis"),
        ("write1-status", "0"),
        ("flush-status", "0"),
        ("read1-matches", "1"),
        ("oob-status", "1"),
        ("oob-straddle-status", "1"),
        ("oob-untouched", "1"),
    ];
    if zeroes {
        lines.extend([("write-zeroes-status", "0"), ("zeroed", "1")]);
    } else {
        lines.push(("write-zeroes-status", "none"));
    }
    expect_lines(&out, &lines);
    // Through the loop device into its file (the VMM synced at exit).
    assert_eq!(
        std::fs::read(file.path()).unwrap(),
        blk_guest_wrote(&before, zeroes),
        "the guest's writes are in the backing file"
    );
}

/// A read-only block device (`losetup -r`) opens read-write without
/// complaint and then fails every write: a writable disk on it is refused,
/// a read-only one works.
#[test]
fn test_virtio_blk_read_only_block_device_needs_readonly_on() {
    require_kvm();
    let (file, before) = disk_image();
    let dev = LoopDevice::attach_read_only(file.path());
    let guest = virtio_guest().to_str().unwrap().to_string();
    let rw = format!("path={}", dev.path());
    let out = expect_bad_input(&["--kernel", &guest, "--disk", &rw], dev.path());
    assert!(
        out.stderr.contains("read-only block device"),
        "{}",
        out.stderr
    );
    let ro = format!("path={},readonly=on", dev.path());
    let out = run_guest("blk", &["--disk", &ro]);
    expect_lines(
        &out,
        &[
            ("features-ro", "1"),
            ("capacity", "16"),
            ("sector0", "marker in sector 0 of the dis"),
            ("write1-status", "1"),
        ],
    );
    assert_eq!(std::fs::read(file.path()).unwrap(), before, "unchanged");
}

#[test]
fn test_virtio_blk_read_only_disk_refuses_writes() {
    let (file, before) = disk_image();
    let disk = disk_arg(&file, ",readonly=on");
    let out = run_guest("blk", &["--disk", &disk]);
    expect_lines(
        &out,
        &[
            ("features-ro", "1"),
            ("features-discard", "0"),
            ("features-write-zeroes", "0"),
            ("read0-status", "0"),
            ("write1-status", "1"),
            ("write1-used", "1"),
            ("flush-status", "0"),
            ("read1-matches", "0"),
            ("write-zeroes-status", "none"),
            ("id", ""),
        ],
    );
    assert_eq!(
        std::fs::read(file.path()).unwrap(),
        before,
        "file unchanged"
    );
}

/// Holds `flock(op)` on `file` for the guard's life.
struct Flock {
    _file: std::fs::File,
}

impl Flock {
    fn new(file: &TempFile, op: i32) -> Self {
        let f = std::fs::File::open(file.path()).unwrap();
        // SAFETY: flock(2) on a descriptor we own.
        let r = unsafe { libc::flock(f.as_raw_fd(), op | libc::LOCK_NB) };
        assert_eq!(r, 0, "the test takes the lock");
        Flock { _file: f }
    }
}

#[test]
fn test_virtio_blk_locked_image_is_refused_naming_it() {
    let (file, _) = disk_image();
    let guest = virtio_guest().to_str().unwrap().to_string();
    {
        let _lock = Flock::new(&file, libc::LOCK_EX);
        for extra in ["", ",readonly=on"] {
            let disk = disk_arg(&file, extra);
            let out = expect_bad_input(&["--kernel", &guest, "--disk", &disk], file.path());
            assert!(out.stderr.contains("in use"), "{}", out.stderr);
        }
    }
    // A reader's shared lock keeps writers out, not other readers: the
    // read-only disk opens (and the VM runs the guest to the end).
    let _lock = Flock::new(&file, libc::LOCK_SH);
    let disk = disk_arg(&file, "");
    let out = expect_bad_input(&["--kernel", &guest, "--disk", &disk], file.path());
    assert!(out.stderr.contains("in use"), "{}", out.stderr);
    let disk = disk_arg(&file, ",readonly=on");
    let out = run_guest("blk", &["--disk", &disk]);
    expect_lines(&out, &[("read0-status", "0"), ("features-ro", "1")]);
}

#[test]
fn test_virtio_blk_bad_disks_are_bad_input() {
    let guest = virtio_guest().to_str().unwrap().to_string();
    let tiny = TempFile::with_bytes(&[0; 100]);
    let cases = [
        (format!("path={}", tiny.path()), tiny.path().to_string()),
        (
            "path=/nonexistent/disk.img".to_string(),
            "/nonexistent/disk.img".to_string(),
        ),
        ("path=/tmp".to_string(), "a directory".to_string()),
        (
            format!("path={},serial={}", tiny.path(), "x".repeat(21)),
            "at most 20".to_string(),
        ),
    ];
    for (disk, needle) in &cases {
        expect_bad_input(&["--kernel", &guest, "--disk", disk], needle);
    }
}

#[test]
fn test_virtio_blk_hostile_driver_gets_errors_and_the_device_recovers() {
    let (file, _) = disk_image();
    let disk = disk_arg(&file, "");
    let out = run_guest("hostile", &["--disk", &disk]);
    expect_lines(
        &out,
        &[
            // QueueNum 3 (not a power of two) at DRIVER_OK.
            ("bad-size-needs-reset", "1"),
            // Feature bit 62, never offered.
            ("unoffered-features-ok", "0"),
            // A data buffer at 8 TiB: IOERR, the device keeps going.
            ("beyond-ram-status", "1"),
            // Descriptor 1 chains back to 0: the device asks for a reset.
            ("loop-needs-reset", "1"),
            // After a reset (and a notify of queue 5, which has no queue),
            // a read works.
            ("after-read-status", "0"),
        ],
    );
    assert!(
        !out.stdout.contains("beyond-ram-needs-reset"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("loop-used"), "{}", out.stdout);
}

/// A guest writes sector 2 (acknowledged, write-back, never flushed by the
/// guest) and waits; `signal` stops the VMM; the write must be in the file.
/// Meanwhile a second VM on the same image is refused.
fn blk_write_survives(signal: i32) {
    require_kvm();
    let (file, before) = disk_image();
    let guest = virtio_guest().to_str().unwrap().to_string();
    let disk = disk_arg(&file, "");
    let mut vm = spawn_vmm(&[
        "--kernel",
        &guest,
        "--cmdline",
        "vtest=blk-write-spin",
        "--disk",
        &disk,
        "--timeout",
        "60",
        "-v",
    ]);
    vm.wait_line("write2-status 0", Duration::from_secs(30));
    vm.wait_line("waiting for the host", Duration::from_secs(10));
    // The image is locked while the first VM runs.
    let out = expect_bad_input(&["--kernel", &guest, "--disk", &disk], file.path());
    assert!(out.stderr.contains("in use"), "{}", out.stderr);
    vm.signal(signal);
    let done = vm.finish();
    assert_eq!(done.status, 128 + signal, "{}", done.stderr);
    assert!(
        done.stderr.contains("writes synced at shutdown"),
        "the device thread's shutdown ran fdatasync: {}",
        done.stderr
    );
    let after = std::fs::read(file.path()).unwrap();
    let mut want = before;
    want[1024..1056].copy_from_slice(b"durable after SIGTERM, sector 2\0");
    want[1056..1536].fill(0x3c);
    assert_eq!(after, want);
}

#[test]
fn test_virtio_blk_acknowledged_write_is_on_disk_after_sigterm() {
    blk_write_survives(libc::SIGTERM);
}

#[test]
fn test_virtio_blk_acknowledged_write_is_on_disk_after_sigint() {
    blk_write_survives(libc::SIGINT);
}

#[test]
fn test_virtio_blk_bench_guest_on_the_pvh_entry() {
    // The PVH build (the one QEMU's microvm boots in bench-block.sh) on
    // vmm-bin: PVH entry, 8 reads of 64 KiB in flight over 1 MiB.
    require_kvm();
    let file = TempFile::with_bytes(&vec![0x5a; 1 << 20]);
    let guest = virtio_guest_pvh().to_str().unwrap().to_string();
    let disk = disk_arg(&file, ",readonly=on");
    let out = run_vmm(&[
        "--kernel",
        &guest,
        "--cmdline",
        "vtest=blk-bench vtest-count=40",
        "--disk",
        &disk,
        "--timeout",
        "30",
    ]);
    assert_eq!(out.status, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("boot pvh"), "{}", out.stdout);
    expect_lines(
        &out,
        &[
            ("bench-requests", "40"),
            ("bench-errors", "0"),
            ("bench-bytes", "2621440"),
        ],
    );
}
