//! `--on-reset reboot`: a guest reset (the i8042's 0xFE pulse) tears the
//! VM down and boots it again from its configuration, in the same process;
//! the guest (`integration_tests::reboot_guest`) counts its boots in CMOS
//! RAM, which a PC keeps across a reset, checks it boots into fresh RAM,
//! and resets until its third boot. The default stays `exit` (status 14).
//! Through the API, the handle survives the reboots: pause, resume and
//! metrics reach the VM's latest boot.

use std::time::{Duration, Instant};

use integration_tests::api_client::{socket_path, ApiClient, VmmProcess};
use integration_tests::reboot_guest::{reboot_guest, REBOOTS_DONE};
use integration_tests::{require_kvm, run_vmm, TempFile};
use vmm_bin::exit_status::{self, debug_exit_status};

fn raw_pc_args(guest: &TempFile) -> Vec<String> {
    [
        "--kernel",
        guest.path(),
        "--mode",
        "long",
        "--platform",
        "pc",
        "--memory",
        "16",
        "--timeout",
        "30",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn test_reset_exits_with_status_14_by_default() {
    require_kvm();
    let guest = TempFile::with_bytes(&reboot_guest(3, true));
    let out = run_vmm(&args(&raw_pc_args(&guest)));
    assert_eq!(out.status, exit_status::GUEST_RESET, "{}", out.stderr);
    assert_eq!(out.stdout, "1\n");
    let mut a = raw_pc_args(&guest);
    a.extend(["--on-reset".into(), "exit".into()]);
    assert_eq!(run_vmm(&args(&a)).status, exit_status::GUEST_RESET);
}

#[test]
fn test_on_reset_reboot_boots_again_with_cmos_kept_and_fresh_ram() {
    require_kvm();
    let guest = TempFile::with_bytes(&reboot_guest(3, true));
    let metrics = TempFile::with_bytes(b"");
    let mut a = raw_pc_args(&guest);
    a.extend([
        "--on-reset".into(),
        "reboot".into(),
        "--metrics-file".into(),
        metrics.path().into(),
    ]);
    let out = run_vmm(&args(&a));
    assert_eq!(
        out.status,
        debug_exit_status(u32::from(REBOOTS_DONE)),
        "three boots, then debug-exit; stderr: {}",
        out.stderr
    );
    assert_eq!(out.stdout, "1\n2\n3\n");
    let record = std::fs::read_to_string(metrics.path()).unwrap();
    assert!(record.contains(r#""reboots":2"#), "{record}");
}

/// The `reboots` count in the last metrics record of `path` (0 if none).
fn reboots(path: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let Some(last) = text.lines().last() else {
        return 0;
    };
    let key = r#""reboots":"#;
    last.find(key).map_or(0, |i| {
        last[i + key.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or(0)
    })
}

#[test]
fn test_api_handle_keeps_working_across_reboots() {
    require_kvm();
    // Spins after its third boot.
    let guest = TempFile::with_bytes(&reboot_guest(3, false));
    let metrics = TempFile::with_bytes(b"");
    let sock = socket_path("reboot");
    let vmm = VmmProcess::spawn(&[
        "--api-sock",
        sock.to_str().unwrap(),
        "--mode",
        "long",
        "--platform",
        "pc",
        "--serial",
        "stdio",
        "--on-reset",
        "reboot",
        "--timeout",
        "50",
    ]);
    let mut c = ApiClient::connect(&sock);
    let put = |c: &mut ApiClient, path: &str, body: String| {
        let r = c.put(path, &body);
        assert_eq!(r.status, 204, "{path}: {}", r.body);
    };
    put(
        &mut c,
        "/boot-source",
        format!(r#"{{"kernel_image_path": "{}"}}"#, guest.path()),
    );
    put(
        &mut c,
        "/machine-config",
        r#"{"vcpu_count": 1, "mem_size_mib": 16}"#.into(),
    );
    put(
        &mut c,
        "/metrics",
        format!(r#"{{"metrics_path": "{}"}}"#, metrics.path()),
    );
    put(
        &mut c,
        "/actions",
        r#"{"action_type": "InstanceStart"}"#.into(),
    );
    // The metrics flushed through the handle report the latest boot.
    let until = Instant::now() + Duration::from_secs(20);
    while reboots(metrics.path()) < 2 {
        assert!(Instant::now() < until, "no second reboot within 20 s");
        std::thread::sleep(Duration::from_millis(50));
        put(
            &mut c,
            "/actions",
            r#"{"action_type": "FlushMetrics"}"#.into(),
        );
    }
    let r = c.patch("/vm", r#"{"state": "Paused"}"#);
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(c.get("/").body.contains(r#""state":"Paused""#));
    let r = c.patch("/vm", r#"{"state": "Resumed"}"#);
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(c.get("/").body.contains(r#""state":"Running""#));
    vmm.signal(libc::SIGTERM);
    let end = vmm.wait();
    assert_eq!(end.status, 128 + libc::SIGTERM, "{}", end.stderr);
    assert_eq!(end.stdout, b"1\n2\n3\n");
    assert!(!sock.exists());
}
