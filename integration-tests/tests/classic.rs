//! The two guests of the classic KVM example, run through the CLI exactly as
//! the README shows.

use integration_tests::{require_kvm, run_vmm, workspace_root};
use vmm_bin::exit_status;

fn guest(name: &str) -> String {
    workspace_root()
        .join("integration-tests/guests")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn test_hello_prints_4_and_halts() {
    require_kvm();
    let out = run_vmm(&[
        "--kernel",
        &guest("hello.bin"),
        "--reg",
        "rax=2",
        "--reg",
        "rbx=2",
        "--timeout",
        "20",
    ]);
    assert_eq!(out.stdout, "4\n", "stderr: {}", out.stderr);
    assert_eq!(out.status, exit_status::HALTED, "stderr: {}", out.stderr);
}

#[test]
fn test_hello_uses_the_registers_given() {
    require_kvm();
    let out = run_vmm(&[
        "--kernel",
        &guest("hello.bin"),
        "--reg",
        "rax=3",
        "--reg",
        "rbx=5",
        "--timeout",
        "20",
    ]);
    assert_eq!(out.stdout, "8\n", "stderr: {}", out.stderr);
}

#[test]
fn test_counter_traces_until_exit_limit() {
    require_kvm();
    let out = run_vmm(&[
        "--kernel",
        &guest("counter.bin"),
        "--load-addr",
        "0x10000",
        "--entry",
        "0x1000:0",
        "--trace-io",
        "--max-exits",
        "6",
        "--timeout",
        "20",
    ]);
    let trace: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("io "))
        .collect();
    let expected: Vec<String> = (0..6)
        .map(|i| format!("io out port=0x0010 size=2 value={i:#06x}"))
        .collect();
    assert_eq!(trace, expected, "stderr: {}", out.stderr);
    assert_eq!(out.status, exit_status::LIMIT_REACHED);
    assert!(
        out.stderr.contains("exit limit reached (6 exits)"),
        "{}",
        out.stderr
    );
}

#[test]
fn test_committed_guests_match_their_source() {
    // A binary may be committed only if rebuilding its source gives it back.
    let dir = std::env::temp_dir().join(format!("vmm-guests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let st = std::process::Command::new(workspace_root().join("integration-tests/guests/build.sh"))
        .arg(&dir)
        .status()
        .expect("guests/build.sh runs (needs GNU as and objcopy from binutils)");
    assert!(st.success(), "guests/build.sh failed");
    for name in [
        "hello.bin",
        "counter.bin",
        "counter_stop.bin",
        "hello_reset.elf",
    ] {
        let rebuilt = std::fs::read(dir.join(name)).unwrap();
        let committed =
            std::fs::read(workspace_root().join(format!("integration-tests/guests/{name}")))
                .unwrap();
        assert_eq!(
            rebuilt, committed,
            "integration-tests/guests/{name} differs from its .S source"
        );
    }
    assert_eq!(
        std::fs::read(workspace_root().join("integration-tests/guests/hello.bin")).unwrap(),
        [0xba, 0xf8, 0x03, 0x00, 0xd8, 0x04, 0x30, 0xee, 0xb0, 0x0a, 0xee, 0xf4],
        "the classic example's exact bytes"
    );
    std::fs::remove_dir_all(&dir).ok();
}
