//! The Firecracker-compatible API socket and config file, end to end:
//! `vmm-bin` serving a real Unix socket (seccomp on, as by default), driven
//! over HTTP/1.1 by `integration_tests::api_client`.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use integration_tests::api_client::{socket_path, ApiClient, VmmProcess};
use integration_tests::code_asm::*;
use integration_tests::{assemble, require_kvm, run_vmm, workspace_root, TempFile};
use vmm_bin::exit_status::{self, debug_exit_status};

const NOT_AFTER_START: &str =
    "The requested operation is not supported after starting the microVM.";
const NOT_BEFORE_START: &str =
    "The requested operation is not supported before starting the microVM.";

/// Long mode at CPL0: `jmp $` forever.
fn spinning_guest() -> TempFile {
    TempFile::with_bytes(&assemble(64, 0x1000, |a| {
        let mut top = a.create_label();
        a.set_label(&mut top).unwrap();
        a.jmp(top).unwrap();
    }))
}

/// `vmm-bin --api-sock sock` for a raw long-mode guest the API names.
fn serve(sock: &Path, extra: &[&str]) -> VmmProcess {
    let mut args = vec![
        "--api-sock",
        sock.to_str().unwrap(),
        "--mode",
        "long",
        "--serial",
        "none",
        "--timeout",
        "50",
    ];
    args.extend_from_slice(extra);
    VmmProcess::spawn(&args)
}

fn boot_source(kernel: &str) -> String {
    format!(r#"{{"kernel_image_path": "{kernel}"}}"#)
}

#[test]
fn test_api_configure_start_and_wrong_state_calls() {
    require_kvm();
    let guest = spinning_guest();
    let sock = socket_path("lifecycle");
    let metrics = TempFile::with_bytes(b"");
    let vmm = serve(&sock, &[]);
    let mut c = ApiClient::connect(&sock);

    let meta = std::fs::symlink_metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let r = c.get("/");
    assert_eq!(r.status, 200);
    assert!(r.body.contains(r#""state":"Not started""#), "{}", r.body);
    assert!(
        r.body.contains(r#""id":"anonymous-instance""#),
        "{}",
        r.body
    );
    let r = c.get("/version");
    assert!(r.body.contains(r#""firecracker_version":"#), "{}", r.body);

    // Runtime actions before the start.
    let r = c.put("/actions", r#"{"action_type": "SendCtrlAltDel"}"#);
    assert_eq!((r.status, r.fault().as_str()), (400, NOT_BEFORE_START));
    // Starting with no kernel.
    let r = c.put("/actions", r#"{"action_type": "InstanceStart"}"#);
    assert_eq!(r.status, 400);
    assert!(
        r.fault().starts_with("Start microvm error"),
        "{}",
        r.fault()
    );

    // Configuration, and its errors.
    let r = c.put(
        "/boot-source",
        r#"{"kernel_image_path": "/nonexistent/vmlinux"}"#,
    );
    assert_eq!(r.status, 400);
    assert!(
        r.fault().contains("The kernel file cannot be opened"),
        "{}",
        r.fault()
    );
    assert_eq!(
        c.put("/boot-source", &boot_source(guest.path())).status,
        204
    );
    let r = c.put(
        "/machine-config",
        r#"{"vcpu_count": 1, "mem_size_mib": 16, "smt": true}"#,
    );
    assert_eq!(r.status, 400);
    assert!(r.fault().contains("smt"), "{}", r.fault());
    let r = c.put(
        "/machine-config",
        r#"{"vcpu_count": 1, "mem_size_mib": 16}"#,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let r = c.get("/machine-config");
    assert!(r.body.contains(r#""mem_size_mib":16"#), "{}", r.body);
    let r = c.put(
        "/metrics",
        &format!(r#"{{"metrics_path": "{}"}}"#, metrics.path()),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    // Malformed JSON and unknown fields.
    let r = c.put("/machine-config", r#"{"vcpu_count": 1,"#);
    assert_eq!(r.status, 400);
    assert!(
        r.fault()
            .starts_with("An error occurred when deserializing the json body of a request"),
        "{}",
        r.fault()
    );
    let r = c.put(
        "/machine-config",
        r#"{"vcpu_count": 1, "mem_size_mib": 16, "cpus": 2}"#,
    );
    assert_eq!(r.status, 400);
    assert!(r.fault().contains("unknown field `cpus`"), "{}", r.fault());
    // Firecracker answers 400 for an invalid path.
    let r = c.get("/no/such/path");
    assert_eq!(
        (r.status, r.fault().as_str()),
        (400, "Invalid request method and/or path: GET no.")
    );
    // The configuration as Firecracker prints it.
    let r = c.get("/vm/config");
    assert!(
        r.body
            .contains(&format!(r#""kernel_image_path":"{}""#, guest.path())),
        "{}",
        r.body
    );
    assert!(r.body.contains(r#""balloon":null"#), "{}", r.body);

    // Start.
    let r = c.put("/actions", r#"{"action_type": "InstanceStart"}"#);
    assert_eq!(r.status, 204, "{}", r.body);
    let r = c.get("/");
    assert!(r.body.contains(r#""state":"Running""#), "{}", r.body);
    // Pre-boot calls after the start: Firecracker's error.
    for (path, body) in [
        ("/boot-source", boot_source(guest.path())),
        (
            "/machine-config",
            r#"{"vcpu_count": 1, "mem_size_mib": 32}"#.to_string(),
        ),
        (
            "/actions",
            r#"{"action_type": "InstanceStart"}"#.to_string(),
        ),
        ("/entropy", "{}".to_string()),
    ] {
        let r = c.put(path, &body);
        assert_eq!(
            (r.status, r.fault().as_str()),
            (400, NOT_AFTER_START),
            "{path}"
        );
    }
    // The running VM's configuration is what it was built from.
    let r = c.get("/machine-config");
    assert!(r.body.contains(r#""mem_size_mib":16"#), "{}", r.body);
    // FlushMetrics writes a record now (the periodic one is 60 s away).
    let r = c.put("/actions", r#"{"action_type": "FlushMetrics"}"#);
    assert_eq!(r.status, 204, "{}", r.body);
    let written = std::fs::read_to_string(metrics.path()).unwrap();
    assert!(
        written.lines().count() >= 1 && written.starts_with('{'),
        "{written:?}"
    );
    // Snapshots of a running VM, and loads into a started one: refused
    // as Firecracker refuses them (tests/api_snapshot.rs takes and loads
    // them).
    let r = c.put(
        "/snapshot/create",
        r#"{"snapshot_path": "/tmp/s", "mem_file_path": "/tmp/m"}"#,
    );
    assert_eq!(r.status, 400);
    assert!(
        r.fault()
            .ends_with("save/restore unavailable while running"),
        "{}",
        r.fault()
    );
    let r = c.put(
        "/snapshot/load",
        r#"{"snapshot_path": "/tmp/s", "mem_file_path": "/tmp/m"}"#,
    );
    assert_eq!((r.status, r.fault().as_str()), (400, NOT_AFTER_START));
    // The same connection served all of this (keep-alive).
    assert!(!r.close);

    vmm.signal(libc::SIGTERM);
    let end = vmm.wait();
    assert_eq!(end.status, 128 + libc::SIGTERM, "{}", end.stderr);
    assert!(!sock.exists(), "socket left behind");
}

#[test]
fn test_api_bad_requests_never_disturb_the_vm() {
    require_kvm();
    let guest = spinning_guest();
    let sock = socket_path("bad");
    let vmm = serve(&sock, &[]);
    let mut c = ApiClient::connect(&sock);
    assert_eq!(
        c.put("/boot-source", &boot_source(guest.path())).status,
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
    assert_eq!(
        c.put("/actions", r#"{"action_type": "InstanceStart"}"#)
            .status,
        204
    );

    // An oversized body: 400 and the connection closed, before the body is
    // even sent.
    let mut big = ApiClient::connect(&sock);
    let r = big.send_raw(b"PUT /machine-config HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n");
    assert_eq!(r.status, 400);
    assert!(r.fault().contains("larger than 65536"), "{}", r.fault());
    assert!(r.close);
    assert!(big.is_closed());
    // Garbage and an oversized head.
    let mut junk = ApiClient::connect(&sock);
    let r = junk.send_raw(b"\x00\x01\x02 nonsense\r\n\r\n");
    assert_eq!(r.status, 400);
    assert!(junk.is_closed());
    let mut head = ApiClient::connect(&sock);
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(10_000));
    let r = head.send_raw(long.as_bytes());
    assert_eq!(r.status, 400);
    assert!(r.fault().contains("head is larger"), "{}", r.fault());

    // The first client's connection and the VM are untouched.
    let r = c.get("/");
    assert!(r.body.contains(r#""state":"Running""#), "{}", r.body);
    let mut fresh = ApiClient::connect(&sock);
    assert_eq!(fresh.get("/version").status, 200);

    vmm.signal(libc::SIGINT);
    let end = vmm.wait();
    assert_eq!(end.status, 128 + libc::SIGINT, "{}", end.stderr);
    assert!(!sock.exists());
}

#[test]
fn test_api_ctrl_alt_del_reaches_the_guest_keyboard() {
    require_kvm();
    // Polls the i8042 for four bytes, echoes each to the debug console,
    // then exits through isa-debug-exit.
    let guest = TempFile::with_bytes(&assemble(64, 0x1000, |a| {
        a.mov(ecx, 4).unwrap();
        let mut wait = a.create_label();
        a.set_label(&mut wait).unwrap();
        a.in_(al, 0x64).unwrap();
        a.test(al, 1).unwrap();
        a.jz(wait).unwrap();
        a.in_(al, 0x60).unwrap();
        a.out(0xe9, al).unwrap();
        a.dec(ecx).unwrap();
        a.jnz(wait).unwrap();
        a.mov(al, 0x21).unwrap();
        a.out(0xf4, al).unwrap();
        let mut spin = a.create_label();
        a.set_label(&mut spin).unwrap();
        a.jmp(spin).unwrap();
    }));
    let sock = socket_path("cad");
    let vmm = VmmProcess::spawn(&[
        "--api-sock",
        sock.to_str().unwrap(),
        "--mode",
        "long",
        "--platform",
        "pc",
        "--timeout",
        "50",
    ]);
    let mut c = ApiClient::connect(&sock);
    assert_eq!(
        c.put("/boot-source", &boot_source(guest.path())).status,
        204
    );
    assert_eq!(
        c.put(
            "/machine-config",
            r#"{"vcpu_count": 1, "mem_size_mib": 32}"#
        )
        .status,
        204
    );
    assert_eq!(
        c.put("/actions", r#"{"action_type": "InstanceStart"}"#)
            .status,
        204
    );
    let r = c.put("/actions", r#"{"action_type": "SendCtrlAltDel"}"#);
    assert_eq!(r.status, 204, "{}", r.body);
    let end = vmm.wait();
    assert_eq!(end.status, debug_exit_status(0x21), "{}", end.stderr);
    // Set 2 make codes 14 11 E0 71, through the 8042's default translation
    // to set 1: left Ctrl 1D, left Alt 38, Delete E0 53.
    assert_eq!(end.stdout, [0x1d, 0x38, 0xe0, 0x53], "{}", end.stderr);
    assert!(!sock.exists());
}

#[test]
fn test_api_logger_writes_firecracker_format_lines() {
    require_kvm();
    let sock = socket_path("logger");
    let log = TempFile::with_bytes(b"");
    let vmm = serve(&sock, &["--id", "vm-42"]);
    let mut c = ApiClient::connect(&sock);
    let r = c.put(
        "/logger",
        &format!(
            r#"{{"log_path": "{}", "level": "info", "show_level": true}}"#,
            log.path()
        ),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(c.get("/").body.contains(r#""id":"vm-42""#));
    let r = c.put("/logger", r#"{"level": "verbose"}"#);
    assert_eq!(r.status, 400);
    assert!(
        r.fault().contains("unknown log level `verbose`"),
        "{}",
        r.fault()
    );
    vmm.signal(libc::SIGTERM);
    let end = vmm.wait();
    assert_eq!(end.status, 128 + libc::SIGTERM, "{}", end.stderr);
    let text = std::fs::read_to_string(log.path()).unwrap();
    // The API thread logs each request after answering it.
    let line = text
        .lines()
        .find(|l| l.contains("API: GET / -> 200"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains(" [vm-42:api:INFO] "), "{line}");
}

#[test]
fn test_api_drives_root_first_and_refusals() {
    let sock = socket_path("drives");
    let (a, b) = (
        TempFile::with_bytes(&[0; 512]),
        TempFile::with_bytes(&[0; 512]),
    );
    let vmm = serve(&sock, &[]);
    let mut c = ApiClient::connect(&sock);
    let drive = |id: &str, path: &str, root: bool| {
        format!(
            r#"{{"drive_id": "{id}", "path_on_host": "{path}", "is_root_device": {root}, "is_read_only": false}}"#
        )
    };
    assert_eq!(
        c.put("/drives/data", &drive("data", a.path(), false))
            .status,
        204
    );
    assert_eq!(
        c.put("/drives/rootfs", &drive("rootfs", b.path(), true))
            .status,
        204
    );
    let r = c.put("/drives/other", &drive("other", a.path(), true));
    assert_eq!(
        (r.status, r.fault().as_str()),
        (
            400,
            "Drive config error: A root block device already exists!"
        )
    );
    let r = c.put("/drives/data", &drive("nope", a.path(), false));
    assert_eq!(
        r.fault(),
        "The id from the path does not match the id from the body!"
    );
    let r = c.put(
        "/drives/data",
        &format!(
            r#"{{"drive_id": "data", "path_on_host": "{}", "is_root_device": false, "rate_limiter": {{"ops": {{"size": 10, "refill_time": 100}}}}}}"#,
            a.path()
        ),
    );
    assert_eq!(r.status, 400);
    assert!(r.fault().contains("rate_limiter"), "{}", r.fault());
    let r = c.put(
        "/network-interfaces/eth0",
        r#"{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "01:00:00:00:00:01"}"#,
    );
    assert_eq!(r.status, 400);
    assert!(r.fault().contains("multicast"), "{}", r.fault());
    assert_eq!(
        c.put("/vsock", r#"{"guest_cid": 3, "uds_path": "/tmp/v.sock"}"#)
            .status,
        204
    );
    assert_eq!(c.put("/entropy", "{}").status, 204);
    let r = c.get("/vm/config");
    let root = r.body.find(r#""drive_id":"rootfs""#).unwrap();
    let data = r.body.find(r#""drive_id":"data""#).unwrap();
    assert!(root < data, "root first: {}", r.body);
    assert!(
        r.body.contains(r#""entropy":{"rate_limiter":null}"#),
        "{}",
        r.body
    );
    assert!(r.body.contains(r#""guest_cid":3"#), "{}", r.body);
    drop(vmm);
    // Killed outright: its file stays (the next start would replace it).
    let _ = std::fs::remove_file(&sock);
}

#[test]
fn test_api_stale_socket_is_replaced_and_live_one_refused() {
    require_kvm();
    let sock = socket_path("stale");
    // A socket file nobody listens on: what a killed VMM leaves.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let vmm = serve(&sock, &[]);
    let mut c = ApiClient::connect(&sock);
    assert_eq!(c.get("/").status, 200);
    // A second VMM on the live socket: bad input, and the first keeps it.
    let second = run_vmm(&["--api-sock", sock.to_str().unwrap()]);
    assert_eq!(second.status, exit_status::BAD_INPUT, "{}", second.stderr);
    assert!(
        second.stderr.contains("another process is listening"),
        "{}",
        second.stderr
    );
    assert_eq!(c.get("/").status, 200);
    vmm.signal(libc::SIGTERM);
    assert_eq!(vmm.wait().status, 128 + libc::SIGTERM);
    assert!(!sock.exists());
}

#[test]
fn test_config_file_boots_a_guest() {
    require_kvm();
    let hello = workspace_root().join("integration-tests/guests/hello.bin");
    let config = TempFile::with_bytes(
        format!(
            r#"{{"boot-source": {{"kernel_image_path": "{}"}},
                "machine-config": {{"vcpu_count": 1, "mem_size_mib": 16}},
                "drives": [], "balloon": null}}"#,
            hello.display()
        )
        .as_bytes(),
    );
    // Flags fill what the file leaves out (the registers hello.bin adds).
    let out = run_vmm(&[
        "--config-file",
        config.path(),
        "--no-api",
        "--reg",
        "rax=2",
        "--reg",
        "rbx=2",
        "--timeout",
        "20",
    ]);
    assert_eq!(out.status, exit_status::HALTED, "{}", out.stderr);
    assert_eq!(out.stdout, "4\n");
}

#[test]
fn test_config_file_with_api_starts_at_once() {
    require_kvm();
    let guest = spinning_guest();
    let config = TempFile::with_bytes(
        format!(
            r#"{{"boot-source": {{"kernel_image_path": "{}"}}, "machine-config": {{"vcpu_count": 1, "mem_size_mib": 24}}}}"#,
            guest.path()
        )
        .as_bytes(),
    );
    let sock = socket_path("file-api");
    let vmm = serve(&sock, &["--config-file", config.path()]);
    let mut c = ApiClient::connect(&sock);
    assert!(c.get("/").body.contains(r#""state":"Running""#));
    assert!(c.get("/vm/config").body.contains(r#""mem_size_mib":24"#));
    let r = c.put("/boot-source", &boot_source(guest.path()));
    assert_eq!(r.fault(), NOT_AFTER_START);
    vmm.signal(libc::SIGTERM);
    assert_eq!(vmm.wait().status, 128 + libc::SIGTERM);
    assert!(!sock.exists());
}

#[test]
fn test_config_file_errors_are_bad_input_naming_the_field() {
    let config = TempFile::with_bytes(
        br#"{"boot-source": {"kernel_image_path": "k"}, "machine-config": {"vcpu_count": 1, "mem_size_mib": 16, "cpu_count": 2}}"#,
    );
    let out = run_vmm(&["--config-file", config.path()]);
    assert_eq!(out.status, exit_status::BAD_INPUT, "{}", out.stderr);
    assert!(
        out.stderr.contains("unknown field `cpu_count`"),
        "{}",
        out.stderr
    );
    let config = TempFile::with_bytes(br#"{"balloon": {"amount_mib": 1, "deflate_on_oom": true}}"#);
    let out = run_vmm(&["--config-file", config.path()]);
    assert_eq!(out.status, exit_status::BAD_INPUT);
    assert!(
        out.stderr.contains("balloon section is not supported"),
        "{}",
        out.stderr
    );
    // No kernel and neither an API nor a file.
    let out = run_vmm(&[]);
    assert_eq!(out.status, exit_status::BAD_INPUT);
    assert!(out.stderr.contains("--kernel"), "{}", out.stderr);
}

/// The `io_out` count in the last metrics record of `path`.
fn io_outs(path: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap();
    let last = text
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no record: {text:?}"));
    let at = last
        .find(r#""io_out":"#)
        .map_or(0, |i| i + r#""io_out":"#.len());
    if at == 0 {
        return 0;
    }
    last[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

#[test]
fn test_api_pause_and_resume() {
    require_kvm();
    // Writes port 0x10 for ever: every write is an exit the metrics count.
    let guest = TempFile::with_bytes(&assemble(64, 0x1000, |a| {
        let mut top = a.create_label();
        a.set_label(&mut top).unwrap();
        a.out(0x10, al).unwrap();
        a.jmp(top).unwrap();
    }));
    let sock = socket_path("pause");
    let metrics = TempFile::with_bytes(b"");
    let vmm = serve(&sock, &[]);
    let mut c = ApiClient::connect(&sock);
    let r = c.patch("/vm", r#"{"state": "Paused"}"#);
    assert_eq!((r.status, r.fault().as_str()), (400, NOT_BEFORE_START));
    assert_eq!(
        c.put("/boot-source", &boot_source(guest.path())).status,
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
    let m = format!(r#"{{"metrics_path": "{}"}}"#, metrics.path());
    assert_eq!(c.put("/metrics", &m).status, 204);
    assert_eq!(
        c.put("/actions", r#"{"action_type": "InstanceStart"}"#)
            .status,
        204
    );
    let flush = |c: &mut ApiClient| {
        let r = c.put("/actions", r#"{"action_type": "FlushMetrics"}"#);
        assert_eq!(r.status, 204, "{}", r.body);
        io_outs(metrics.path())
    };
    std::thread::sleep(std::time::Duration::from_millis(200));

    let r = c.patch("/vm", r#"{"state": "Paused"}"#);
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(c.get("/").body.contains(r#""state":"Paused""#));
    let paused_at = flush(&mut c);
    assert!(paused_at > 0, "the guest ran before the pause");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(flush(&mut c), paused_at, "the guest ran while paused");
    // Pausing a paused VM is a no-op.
    assert_eq!(c.patch("/vm", r#"{"state": "Paused"}"#).status, 204);

    let r = c.patch("/vm", r#"{"state": "Resumed"}"#);
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(c.get("/").body.contains(r#""state":"Running""#));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(flush(&mut c) > paused_at, "the guest did not run on");
    let r = c.patch("/vm", r#"{"state": "Stopped"}"#);
    assert_eq!(r.status, 400);
    assert!(
        r.fault().contains("unknown variant `Stopped`"),
        "{}",
        r.fault()
    );

    vmm.signal(libc::SIGTERM);
    let end = vmm.wait();
    assert_eq!(end.status, 128 + libc::SIGTERM, "{}", end.stderr);
    assert!(!sock.exists());
}
