//! virtio-mmio devices end to end, driven by a freestanding driver guest
//! (`integration-tests/guests/virtio/guest.c`) that finds its devices on the
//! kernel command line (`virtio_mmio.device=4K@<base>:<gsi>`), initialises
//! them as virtio 1.2 section 3.1.1 says, and waits for every completion
//! through the device's interrupt (IOAPIC pin = GSI). Linux's own drivers
//! cannot be reached on these hosts (its kernel-mode code is emulated), so
//! this guest is the proof that the transport and devices work as a driver
//! sees them.

use std::io::Write;
use std::process::Stdio;

use integration_tests::{require_kvm, run_vmm, virtio_guest, vmm_command, Output, TempFile};

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
    assert_eq!(value(&out, "irqs"), "2", "one interrupt per completion");
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
fn test_virtio_devices_not_built_yet_are_refused_as_bad_input() {
    let g = TempFile::with_bytes(&[0xf4]);
    let out = run_vmm(&[
        "--kernel",
        g.path(),
        "--vsock",
        "cid=3,socket=/tmp/none.sock",
    ]);
    assert_eq!(out.status, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("virtio Vsock devices are not implemented yet"),
        "{}",
        out.stderr
    );
}
