//! Seccomp is on by default: a forbidden system call on a vCPU thread ends
//! the process through SIGSYS with a clear message, and every VMM thread of
//! a running VM is confined (`Seccomp: 2` in /proc).

use std::process::{Command, Stdio};
use std::time::Duration;

use integration_tests::{require_kvm, vmm_command, workspace_root};

#[test]
fn test_forbidden_call_in_vcpu_thread_is_blocked() {
    require_kvm();
    let out = Command::new(env!("CARGO_BIN_EXE_seccomp_probe"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(128 + libc::SIGSYS),
        "stderr: {stderr}"
    );
    let expected = format!("blocked forbidden system call {:06}", libc::SYS_socket);
    assert!(stderr.contains(&expected), "stderr: {stderr}");
    assert!(!stderr.contains("NOT blocked"), "stderr: {stderr}");
}

#[test]
fn test_probe_device_really_calls_socket_without_seccomp() {
    // The control experiment: the same probe with seccomp off gets its socket.
    require_kvm();
    let out = Command::new(env!("CARGO_BIN_EXE_seccomp_probe"))
        .arg("--no-seccomp")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(
        stderr.contains("socket() was NOT blocked"),
        "stderr: {stderr}"
    );
}

/// (thread name, Seccomp mode) of every task of `pid`.
fn seccomp_modes(pid: u32) -> Vec<(String, String)> {
    let mut modes = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        modes.push((field("Name:"), field("Seccomp:")));
    }
    modes
}

#[test]
fn test_every_vmm_thread_reports_seccomp_filter_mode() {
    require_kvm();
    let counter = workspace_root().join("integration-tests/guests/counter.bin");
    let mut child = vmm_command()
        .args(["--kernel", counter.to_str().unwrap(), "--timeout", "3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let modes = seccomp_modes(child.id());
    child.wait().unwrap();
    // KVM's own kernel workers (kvm-nx-lpage-recovery and the like) show up
    // as tasks of the process but run no VMM code: they are not ours to filter.
    let ours: Vec<_> = modes
        .iter()
        .filter(|(name, _)| !name.starts_with("kvm-"))
        .collect();
    assert!(
        ours.iter().any(|(n, _)| n == "vcpu0"),
        "no vcpu0 thread: {modes:?}"
    );
    assert!(
        ours.len() >= 2,
        "expected the main and vCPU threads: {modes:?}"
    );
    for (name, mode) in &ours {
        assert_eq!(
            mode, "2",
            "thread {name} is not under a seccomp filter: {modes:?}"
        );
    }
}

#[test]
fn test_no_seccomp_flag_leaves_threads_unfiltered() {
    require_kvm();
    let counter = workspace_root().join("integration-tests/guests/counter.bin");
    let mut child = vmm_command()
        .args([
            "--kernel",
            counter.to_str().unwrap(),
            "--timeout",
            "2",
            "--no-seccomp",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let modes = seccomp_modes(child.id());
    child.wait().unwrap();
    assert!(modes.iter().all(|(_, m)| m == "0"), "{modes:?}");
}
