//! virtio devices across a snapshot: the freestanding driver guest
//! (`integration-tests/guests/virtio/guest.c`) makes a virtio-blk request
//! available without notifying the device (as a notify the device drops
//! while the VMM pauses), and is snapshotted through the API while it waits
//! for the completion; a new `vmm-bin --restore` process reopens the same
//! image, serves that request and the guest's further ones, and the guest
//! finishes.

use std::path::Path;
use std::time::{Duration, Instant};

use integration_tests::api_client::{socket_path, ApiClient, VmmProcess};
use integration_tests::{require_kvm, run_vmm, target_dir, virtio_guest, TempFile};

/// Waits until `path` contains `needle` (the guest's console file).
fn wait_for_line(path: &Path, needle: &str) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < until,
            "no '{needle}' from the guest within 30 s: {text:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn test_snapshot_blk_request_made_before_the_snapshot_is_served_after_restore() {
    require_kvm();
    let dir = target_dir()
        .join("snapshot-virtio-tests")
        .join(format!("blk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let image = TempFile::with_bytes(&[0u8; 64 * 512]);
    let console = dir.join("console.txt");
    let (snap, mem) = (dir.join("vm.snap"), dir.join("vm.mem"));
    let guest = virtio_guest().to_str().unwrap().to_string();
    let disk = format!("path={},serial=snapdisk", image.path());
    let serial = format!("file:{}", console.display());
    let sock = socket_path("snap-blk");

    let vmm = VmmProcess::spawn(&[
        "--api-sock",
        sock.to_str().unwrap(),
        "--kernel",
        &guest,
        "--cmdline",
        "vtest=blk-snap vtest-rounds=16",
        "--disk",
        &disk,
        "--serial",
        &serial,
        "--timeout",
        "50",
    ]);
    let mut c = ApiClient::connect(&sock);
    let r = c.put("/actions", r#"{"action_type": "InstanceStart"}"#);
    assert_eq!(r.status, 204, "{}", r.body);
    wait_for_line(&console, "posted-unnotified");
    let r = c.patch("/vm", r#"{"state": "Paused"}"#);
    assert_eq!(r.status, 204, "{}", r.body);
    let body = format!(
        r#"{{"snapshot_path": "{}", "mem_file_path": "{}"}}"#,
        snap.display(),
        mem.display()
    );
    let r = c.put("/snapshot/create", &body);
    assert_eq!(r.status, 204, "{}", r.body);
    // The first VMM ends (its lock on the image goes with it); the request
    // was never served there.
    vmm.signal(libc::SIGTERM);
    let end = vmm.wait();
    assert_eq!(end.status, 128 + libc::SIGTERM, "{}", end.stderr);
    let before = std::fs::read_to_string(&console).unwrap();
    assert!(!before.contains("unnotified-status"), "{before}");
    assert_eq!(
        &std::fs::read(image.path()).unwrap()[3 * 512..4 * 512],
        &[0u8; 512][..],
        "sector 3 not written before the snapshot"
    );

    let out = run_vmm(&[
        "--restore",
        snap.to_str().unwrap(),
        "--restore-mem",
        mem.to_str().unwrap(),
        "--resume",
        "--timeout",
        "30",
    ]);
    assert_eq!(
        out.status, 1,
        "the restored guest finishes (debug-exit 0):\n{}\n{}",
        out.stdout, out.stderr
    );
    for line in [
        "unnotified-status 0",
        "unnotified-used 1",
        "rounds 16",
        "round-errors 0",
        "done",
    ] {
        assert!(
            out.stdout.lines().any(|l| l == line),
            "no '{line}' in:\n{}",
            out.stdout
        );
    }
    let bytes = std::fs::read(image.path()).unwrap();
    assert!(
        bytes[3 * 512..].starts_with(b"made available before the snapshot"),
        "the request made before the snapshot reached the image"
    );
    // The rounds' last writes: sector 4 + i % 8 holds i + 1 for the last
    // round that wrote it (i = 8..15).
    for i in 8u8..16 {
        let s = 4 + usize::from(i % 8);
        assert!(
            bytes[s * 512..(s + 1) * 512].iter().all(|&b| b == i + 1),
            "sector {s}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
