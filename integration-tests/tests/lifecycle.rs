//! Stopping from outside: SIGINT/SIGTERM end the VM cleanly with their
//! documented statuses; metrics are written as JSON at exit and periodically.

use std::process::Stdio;
use std::time::{Duration, Instant};

use integration_tests::{require_kvm, run_vmm, vmm_command, workspace_root};
use vmm_bin::exit_status;

fn counter() -> String {
    workspace_root()
        .join("integration-tests/guests/counter.bin")
        .display()
        .to_string()
}

/// Starts the never-ending counter guest, sends `signal` once it runs, and
/// returns (status, stderr, time from signal to exit).
fn stop_with(signal: i32) -> (i32, String, Duration) {
    let child = vmm_command()
        .args(["--kernel", &counter(), "--timeout", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let sent = Instant::now();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        sent.elapsed(),
    )
}

#[test]
fn test_sigint_stops_vm_with_status_130() {
    require_kvm();
    let (st, stderr, took) = stop_with(libc::SIGINT);
    assert_eq!(st, 128 + libc::SIGINT, "{stderr}");
    assert!(stderr.contains("stopped by SIGINT"), "{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?} to stop");
}

#[test]
fn test_sigterm_stops_vm_with_status_143() {
    require_kvm();
    let (st, stderr, _) = stop_with(libc::SIGTERM);
    assert_eq!(st, 128 + libc::SIGTERM, "{stderr}");
    assert!(stderr.contains("stopped by SIGTERM"), "{stderr}");
}

#[test]
fn test_metrics_file_matches_stats() {
    require_kvm();
    let path = std::env::temp_dir().join(format!("vmm-metrics-{}.json", std::process::id()));
    let p = path.to_str().unwrap();
    let out = run_vmm(&[
        "--kernel",
        &counter(),
        "--max-exits",
        "500",
        "--stats",
        "--metrics-file",
        p,
        "--timeout",
        "20",
    ]);
    assert_eq!(out.status, exit_status::LIMIT_REACHED, "{}", out.stderr);
    let json = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert!(json.contains("\"io_out\":500"), "{json}");
    assert!(
        json.contains("\"exit_latency_ns\":{\"io_out\":{\"count\":500,"),
        "{json}"
    );
    assert!(
        json.starts_with('{') && json.trim_end().ends_with('}'),
        "{json}"
    );
    assert!(
        out.stderr.contains("io_out           count=500 p50="),
        "{}",
        out.stderr
    );
}

#[test]
fn test_metrics_file_written_periodically() {
    require_kvm();
    let path =
        std::env::temp_dir().join(format!("vmm-metrics-periodic-{}.json", std::process::id()));
    let p = path.to_str().unwrap().to_string();
    let mut child = vmm_command()
        .args([
            "--kernel",
            &counter(),
            "--timeout",
            "3",
            "--metrics-file",
            &p,
            "--metrics-interval",
            "0.2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let during = std::fs::read_to_string(&path).expect("metrics written while running");
    let st = child.wait().unwrap();
    let after = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(st.code(), Some(exit_status::LIMIT_REACHED));
    assert!(during.contains("\"io_out\":"), "{during}");
    assert_ne!(
        during, after,
        "the final report differs from the periodic one"
    );
}

/// The start-up phases `--stats` prints, as (name, ms), and its total.
fn startup_phases(stderr: &str) -> (Vec<(String, f64)>, f64) {
    let mut phases = Vec::new();
    let mut total = None;
    for line in stderr.lines() {
        if let Some(t) = line
            .trim()
            .strip_prefix("startup (VMM start to guest entry)=")
        {
            total = t.strip_suffix("ms").and_then(|t| t.parse::<f64>().ok());
        } else if total.is_some() && line.starts_with("    ") {
            let mut words = line.split_whitespace();
            if let (Some(name), Some(ms), None) = (words.next(), words.next(), words.next()) {
                let ms = ms.strip_suffix("ms").and_then(|m| m.parse::<f64>().ok());
                phases.push((
                    name.to_string(),
                    ms.expect("a phase line ends in a time in ms"),
                ));
            }
        }
    }
    (phases, total.expect("--stats prints the start-up total"))
}

#[test]
fn test_stats_show_every_startup_phase() {
    require_kvm();
    let path = std::env::temp_dir().join(format!("vmm-startup-{}.json", std::process::id()));
    let hello = workspace_root().join("integration-tests/guests/hello.bin");
    let out = run_vmm(&[
        "--kernel",
        hello.to_str().unwrap(),
        "--reg",
        "rax=2",
        "--reg",
        "rbx=2",
        "--stats",
        "--metrics-file",
        path.to_str().unwrap(),
        "--timeout",
        "20",
    ]);
    assert_eq!(out.status, exit_status::HALTED, "{}", out.stderr);
    let (phases, total) = startup_phases(&out.stderr);
    let names: Vec<&str> = phases.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "parse",
            "memory",
            "load",
            "kvm_setup",
            "devices",
            "seccomp",
            "threads",
            "first_entry"
        ],
        "{}",
        out.stderr
    );
    // Consecutive intervals: they add up to the total (each rounded to 1 us).
    let sum: f64 = phases.iter().map(|(_, ms)| ms).sum();
    assert!(
        (sum - total).abs() <= 0.001 * phases.len() as f64,
        "phases add up to {sum} ms, total {total} ms: {}",
        out.stderr
    );
    // KVM set-up and the seccomp filters cost something on any host.
    for name in ["kvm_setup", "seccomp"] {
        let ms = phases.iter().find(|(n, _)| n == name).map(|(_, ms)| *ms);
        assert!(ms.is_some_and(|ms| ms > 0.0), "{name}: {}", out.stderr);
    }
    let json = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).ok();
    for name in names {
        assert!(
            json.contains(&format!("\"{name}\":")),
            "{name} missing: {json}"
        );
    }
    assert!(json.contains("\"startup_phases_ns\":{\"parse\":"), "{json}");
}

#[test]
fn test_stats_without_seccomp_measure_no_filter_time() {
    require_kvm();
    let hello = workspace_root().join("integration-tests/guests/hello.bin");
    let out = run_vmm(&[
        "--kernel",
        hello.to_str().unwrap(),
        "--no-seccomp",
        "--stats",
        "--timeout",
        "20",
    ]);
    assert_eq!(out.status, exit_status::HALTED, "{}", out.stderr);
    let (phases, _) = startup_phases(&out.stderr);
    let seccomp = phases
        .iter()
        .find(|(n, _)| n == "seccomp")
        .map(|(_, ms)| *ms);
    assert_eq!(seccomp, Some(0.0), "{}", out.stderr);
}
