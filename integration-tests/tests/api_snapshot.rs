//! The API's snapshot calls end to end, through real Unix sockets (seccomp
//! on, as by default): a guest started over the API is paused and
//! snapshotted with `PUT /snapshot/create`; new `vmm-bin --api-sock`
//! processes load it with `PUT /snapshot/load` and the guest's output goes
//! on with no lost or repeated byte. The wrong-state calls and bad paths
//! get Firecracker's status codes and messages.

use std::path::{Path, PathBuf};
use std::time::Duration;

use integration_tests::api_client::{socket_path, ApiClient, VmmProcess};
use integration_tests::code_asm::*;
use integration_tests::{assemble, require_kvm, target_dir, TempFile};
use vmm_bin::exit_status;

const NOT_AFTER_START: &str =
    "The requested operation is not supported after starting the microVM.";
const NOT_BEFORE_START: &str =
    "The requested operation is not supported before starting the microVM.";
const WHILE_RUNNING: &str = "Create snapshot error: Cannot save the microVM state: Operation not allowed: save/restore unavailable while running";
const DIFF_UNTRACKED: &str = "The requested operation is not supported: Diff snapshots are not allowed on uVMs with dirty page tracking disabled.";
const LOAD_NOT_ALLOWED: &str = "Load snapshot error: Loading a microVM snapshot not allowed after configuring boot-specific resources.";

/// Long mode at CPL0: writes 0, 1, 2, ... (mod 256) to the debug console
/// forever, the count in AL.
fn counting_guest() -> TempFile {
    TempFile::with_bytes(&assemble(64, 0x1000, |a| {
        a.xor(eax, eax).unwrap();
        let mut top = a.create_label();
        a.set_label(&mut top).unwrap();
        a.out(0xe9, al).unwrap();
        a.inc(al).unwrap();
        a.jmp(top).unwrap();
    }))
}

/// A scratch directory for one test's snapshot files, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let d = target_dir()
            .join("api-snapshot-tests")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `vmm-bin --api-sock sock`, the guest's console on stdout.
fn serve(sock: &Path, extra: &[&str]) -> VmmProcess {
    let mut args = vec![
        "--api-sock",
        sock.to_str().unwrap(),
        "--mode",
        "long",
        "--serial",
        "stdio",
        "--timeout",
        "50",
    ];
    args.extend_from_slice(extra);
    VmmProcess::spawn(&args)
}

fn create_body(snap: &str, mem: &str, kind: &str) -> String {
    format!(r#"{{"snapshot_path": "{snap}", "mem_file_path": "{mem}", "snapshot_type": "{kind}"}}"#)
}

fn load_body(snap: &str, mem: &str, resume: bool) -> String {
    format!(
        r#"{{"snapshot_path": "{snap}", "mem_backend": {{"backend_path": "{mem}", "backend_type": "File"}}, "resume_vm": {resume}}}"#
    )
}

/// `after` continues `before`: its first byte is `before`'s last + 1, and
/// it counts up by one from there.
fn assert_continues(before: &[u8], after: &[u8]) {
    assert!(
        !before.is_empty() && after.len() > 10,
        "{} then {} bytes",
        before.len(),
        after.len()
    );
    let last = *before.last().unwrap();
    assert_eq!(
        after[0],
        last.wrapping_add(1),
        "the loaded guest's first byte follows the last one before the snapshot \
         (lost or repeated output otherwise)"
    );
    for (i, w) in after.windows(2).enumerate() {
        assert_eq!(
            w[1],
            w[0].wrapping_add(1),
            "byte {} breaks the count",
            i + 1
        );
    }
}

/// Starts the counting guest over the API, lets it run, and snapshots it
/// (full) into `dir`; returns its output before the snapshot. Checks the
/// create call's wrong-state answers on the way.
fn snapshot_a_running_guest(dir: &Dir) -> Vec<u8> {
    let guest = counting_guest();
    let sock = socket_path("snap-source");
    let vmm = serve(&sock, &[]);
    let mut c = ApiClient::connect(&sock);
    let (snap, mem) = (dir.file("vm.snap"), dir.file("vm.mem"));

    // Before the start: a runtime call.
    let r = c.put("/snapshot/create", &create_body(&snap, &mem, "Full"));
    assert_eq!((r.status, r.fault().as_str()), (400, NOT_BEFORE_START));
    assert_eq!(
        c.put(
            "/boot-source",
            &format!(r#"{{"kernel_image_path": "{}"}}"#, guest.path())
        )
        .status,
        204
    );
    assert_eq!(
        c.put(
            "/machine-config",
            r#"{"vcpu_count": 1, "mem_size_mib": 16}"#
        )
        .status,
        204
    );
    let r = c.put("/actions", r#"{"action_type": "InstanceStart"}"#);
    assert_eq!(r.status, 204, "{}", r.body);
    std::thread::sleep(Duration::from_millis(300));

    // Running: Firecracker's vCPUs refuse to be saved.
    let r = c.put("/snapshot/create", &create_body(&snap, &mem, "Full"));
    assert_eq!((r.status, r.fault().as_str()), (400, WHILE_RUNNING));
    assert!(!Path::new(&snap).exists(), "nothing written");
    // Loading into a started VM.
    let r = c.put("/snapshot/load", &load_body(&snap, &mem, true));
    assert_eq!((r.status, r.fault().as_str()), (400, NOT_AFTER_START));

    let r = c.patch("/vm", r#"{"state": "Paused"}"#);
    assert_eq!(r.status, 204, "{}", r.body);
    // A diff needs dirty-page tracking, which this VM was started without.
    let r = c.put("/snapshot/create", &create_body(&snap, &mem, "Diff"));
    assert_eq!((r.status, r.fault().as_str()), (400, DIFF_UNTRACKED));
    // A path that cannot be written: 400 naming it, and the VM is fine.
    let bad = dir.file("no-such-dir/vm.snap");
    let r = c.put("/snapshot/create", &create_body(&bad, &mem, "Full"));
    assert_eq!(r.status, 400);
    assert!(
        r.fault().starts_with("Create snapshot error: ") && r.fault().contains("no-such-dir"),
        "{}",
        r.fault()
    );
    let r = c.put("/snapshot/create", &create_body(&snap, &mem, "Full"));
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(c.get("/").body.contains(r#""state":"Paused""#));
    assert!(Path::new(&snap).exists() && Path::new(&mem).exists());

    vmm.signal(libc::SIGTERM);
    let end = vmm.wait();
    assert_eq!(end.status, 128 + libc::SIGTERM, "{}", end.stderr);
    assert!(!end.stdout.is_empty(), "the guest ran before the pause");
    end.stdout
}

#[test]
fn test_api_snapshot_create_then_load_in_new_processes_continues_the_guest() {
    require_kvm();
    let dir = Dir::new("round-trip");
    let before = snapshot_a_running_guest(&dir);
    let (snap, mem) = (dir.file("vm.snap"), dir.file("vm.mem"));

    // Loaded with resume_vm: the guest runs at once, to the exit budget.
    // A bad load first: 400 naming the path, and the process still takes
    // the good one (a failed load leaves nothing behind).
    let sock = socket_path("snap-resume");
    let vmm = serve(&sock, &["--max-exits", "3000"]);
    let mut c = ApiClient::connect(&sock);
    let missing = dir.file("missing.snap");
    let r = c.put("/snapshot/load", &load_body(&missing, &mem, true));
    assert_eq!(r.status, 400);
    assert!(
        r.fault()
            .starts_with("Load snapshot error: Failed to restore from snapshot: ")
            && r.fault().contains(&missing),
        "{}",
        r.fault()
    );
    let r = c.put("/snapshot/load", &load_body(&snap, &missing, true));
    assert_eq!(r.status, 400);
    assert!(r.fault().contains(&missing), "{}", r.fault());
    assert!(c.get("/").body.contains(r#""state":"Not started""#));
    let r = c.put("/snapshot/load", &load_body(&snap, &mem, true));
    assert_eq!(r.status, 204, "{}", r.body);
    let end = vmm.wait();
    assert_eq!(end.status, exit_status::LIMIT_REACHED, "{}", end.stderr);
    assert_continues(&before, &end.stdout);
    assert!(!sock.exists());

    // Loaded paused (the deprecated mem_file_path, diff tracking on): the
    // API serves the loaded VM's runtime calls; it runs once resumed.
    let sock = socket_path("snap-paused");
    let vmm = serve(&sock, &["--max-exits", "3000"]);
    let mut c = ApiClient::connect(&sock);
    let r = c.put(
        "/snapshot/load",
        &format!(
            r#"{{"snapshot_path": "{snap}", "mem_file_path": "{mem}", "track_dirty_pages": true}}"#
        ),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(c.get("/").body.contains(r#""state":"Paused""#));
    let config = c.get("/vm/config").body;
    assert!(
        config.contains(r#""mem_size_mib":16"#)
            && config.contains(r#""track_dirty_pages":true"#)
            && config.contains(r#""boot-source":null"#),
        "{config}"
    );
    // A load, or configuration, once a VM exists.
    let r = c.put("/snapshot/load", &load_body(&snap, &mem, true));
    assert_eq!((r.status, r.fault().as_str()), (400, NOT_AFTER_START));
    // Tracking is on: a diff of the loaded VM (into its memory file's
    // copy, so the original stays what the snapshot describes).
    let mem2 = dir.file("vm2.mem");
    std::fs::copy(&mem, &mem2).unwrap();
    let snap2 = dir.file("vm2.snap");
    let r = c.put("/snapshot/create", &create_body(&snap2, &mem2, "Diff"));
    assert_eq!(r.status, 204, "{}", r.body);
    let r = c.patch("/vm", r#"{"state": "Resumed"}"#);
    assert_eq!(r.status, 204, "{}", r.body);
    let end = vmm.wait();
    assert_eq!(end.status, exit_status::LIMIT_REACHED, "{}", end.stderr);
    assert_continues(&before, &end.stdout);
}

#[test]
fn test_api_snapshot_load_refused_after_boot_configuration() {
    let sock = socket_path("snap-refused");
    let kernel = TempFile::with_bytes(&[0xf4]);
    let vmm = serve(&sock, &[]);
    let mut c = ApiClient::connect(&sock);
    // Exactly one memory source, checked as the body is parsed.
    let r = c.put("/snapshot/load", r#"{"snapshot_path": "/s"}"#);
    assert_eq!(r.status, 400);
    assert!(
        r.fault()
            .contains("either `mem_backend` or `mem_file_path` is required"),
        "{}",
        r.fault()
    );
    let r = c.put(
        "/snapshot/load",
        r#"{"snapshot_path": "/s", "mem_file_path": "/m", "mem_backend": {"backend_path": "/m", "backend_type": "File"}}"#,
    );
    assert!(r.fault().contains("too many fields"), "{}", r.fault());
    let r = c.put(
        "/snapshot/load",
        r#"{"snapshot_path": "/s", "mem_backend": {"backend_path": "/u", "backend_type": "Uffd"}}"#,
    );
    assert_eq!(r.status, 400);
    assert!(r.fault().contains("Uffd"), "{}", r.fault());
    // The logger and metrics are not boot-specific: still allowed after.
    let metrics = TempFile::with_bytes(b"");
    let m = format!(r#"{{"metrics_path": "{}"}}"#, metrics.path());
    assert_eq!(c.put("/metrics", &m).status, 204);
    let r = c.put(
        "/snapshot/load",
        &load_body("/nonexistent.snap", "/m", false),
    );
    assert!(
        r.fault().starts_with("Load snapshot error: Failed"),
        "{}",
        r.fault()
    );
    // A boot source is.
    let r = c.put(
        "/boot-source",
        &format!(r#"{{"kernel_image_path": "{}"}}"#, kernel.path()),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let r = c.put("/snapshot/load", &load_body("/s", "/m", true));
    assert_eq!((r.status, r.fault().as_str()), (400, LOAD_NOT_ALLOWED));
    vmm.signal(libc::SIGTERM);
    let end = vmm.wait();
    assert_eq!(end.status, 128 + libc::SIGTERM, "{}", end.stderr);
}
