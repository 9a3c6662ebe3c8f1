//! `--explain`: every KVM step and exit on stderr, in order, with the
//! values that matter; long runs summarised, not flooded.

use integration_tests::{require_kvm, run_vmm, workspace_root, TempFile};
use vmm_bin::exit_status;

fn guest(name: &str) -> String {
    workspace_root()
        .join("integration-tests/guests")
        .join(name)
        .display()
        .to_string()
}

/// The index of the first line (at or after `from`) starting with `prefix`.
fn find_from(lines: &[&str], from: usize, prefix: &str) -> usize {
    match lines[from..].iter().position(|l| l.starts_with(prefix)) {
        Some(i) => from + i,
        None => panic!(
            "no line starting with {prefix:?} after line {from}:\n{}",
            lines.join("\n")
        ),
    }
}

#[test]
fn test_explain_classic_guest_lists_the_kvm_steps_in_order() {
    require_kvm();
    let out = run_vmm(&[
        "--kernel",
        &guest("hello.bin"),
        "--reg",
        "rax=2",
        "--reg",
        "rbx=2",
        "--explain",
        "--timeout",
        "20",
    ]);
    assert_eq!(out.status, exit_status::HALTED, "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "4\n", "the guest's output is unchanged");
    let lines: Vec<&str> = out.stderr.lines().collect();
    // The image is copied into guest RAM before KVM is opened: all input
    // is checked first.
    let image = find_from(
        &lines,
        0,
        "image (raw): 12 bytes copied to guest-physical [0x1000, 0x100c)",
    );
    let steps = [
        "open /dev/kvm: KVM_GET_API_VERSION = 12",
        "KVM_CREATE_VM",
        "KVM_SET_USER_MEMORY_REGION: slot 0, guest-physical 0x0, size 0x8000000 (128 MiB), host address 0x",
        "KVM_CREATE_VCPU 0: ",
        "KVM_SET_CPUID2: ",
        "KVM_SET_SREGS: 16-bit real mode: CS selector 0x0 base 0x0, CR0 0x60000010, CR4 0x0, EFER 0x0",
        "KVM_SET_REGS: RIP 0x1000, RFLAGS 0x2, RAX 0x2, RBX 0x2 (every other register 0)",
        "KVM_RUN: vCPU 0 enters the guest",
        "KVM_EXIT_IO: port 0x3f8 out, size 1, count 1, data 0x34 '4' -> uart8250",
        "KVM_EXIT_IO: port 0x3f8 out, size 1, count 1, data 0x0a '\\n' -> uart8250",
        "KVM_EXIT_HLT: guest halted -> vCPU 0 leaves its run loop",
        "KVM_GET_REGS (vCPU 0 at the end): RIP 0x100c, RFLAGS 0x2, RAX 0xa, RBX 0x2, RCX 0x0, RDX 0x3f8,",
        "3 exits in all",
        "the run ends: guest halted (vCPU 0); the VMM handled 2 port/MMIO exits",
    ];
    let mut at = image + 1;
    for step in steps {
        at = find_from(&lines, at, step) + 1;
    }
    let vcpu = lines[find_from(&lines, 0, "KVM_CREATE_VCPU 0")];
    assert!(
        vcpu.contains("KVM_GET_VCPU_MMAP_SIZE = ")
            && vcpu.contains("bytes) mapped at host address 0x"),
        "{vcpu}"
    );
    let cpuid = lines[find_from(&lines, 0, "KVM_SET_CPUID2")];
    let entries: u32 = cpuid
        .trim_start_matches("KVM_SET_CPUID2: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no entry count in {cpuid}"));
    assert!(entries > 0, "{cpuid}");
    // Exactly the two port exits and the halt: no other exit lines.
    let exits = lines.iter().filter(|l| l.starts_with("KVM_EXIT_")).count();
    assert_eq!(exits, 3, "{}", out.stderr);
    // The minimal platform: no irqchip, no PIT, no irqfds.
    assert!(!out.stderr.contains("KVM_CREATE_IRQCHIP"), "{}", out.stderr);
    assert!(!out.stderr.contains("KVM_IRQFD"), "{}", out.stderr);
}

#[test]
fn test_explain_counter_is_summarised_not_flooded() {
    require_kvm();
    let out = run_vmm(&[
        "--kernel",
        &guest("counter.bin"),
        "--load-addr",
        "0x10000",
        "--entry",
        "0x1000:0",
        "--max-exits",
        "100000",
        "--explain",
        "--timeout",
        "50",
    ]);
    assert_eq!(
        out.status,
        exit_status::LIMIT_REACHED,
        "stderr: {}",
        out.stderr
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(lines.len() < 50, "{} lines: flooded", lines.len());
    let io: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("KVM_EXIT_IO: port 0x10 out, size 2, count 1, data 0x"))
        .collect();
    assert_eq!(io.len(), 20, "{}", out.stderr);
    assert!(
        io[0].contains("data 0x0000 -> no device there"),
        "{}",
        io[0]
    );
    assert!(
        io[19].contains("data 0x0013")
            && io[19].ends_with("(from here on, exits like this are only counted)"),
        "{}",
        io[19]
    );
    assert!(
        lines.contains(&"... 99,980 more KVM_EXIT_IO out on port 0x10"),
        "{}",
        out.stderr
    );
    assert!(lines.contains(&"100,000 exits in all (KVM_RUN returns, kicks included)"));
    // AX counted 0..99999, and the last `out` left AX = 99999 = 0x1869f;
    // its low 16 bits: the guest's AX after `inc` wraps at 16 bits.
    let last = lines[find_from(&lines, 0, "KVM_GET_REGS (vCPU 0 at the end)")];
    assert!(
        last.contains(&format!("RAX {:#x}", 99_999u32 & 0xffff)),
        "{last}"
    );
}

#[test]
fn test_explain_pc_platform_shows_irqchip_pit_and_irqfds() {
    require_kvm();
    // mov al, 0; out 0xf4, al: debug-exit with value 0.
    let image = TempFile::with_bytes(&[0xb0, 0x00, 0xe6, 0xf4]);
    let out = run_vmm(&[
        "--kernel",
        image.path(),
        "--platform",
        "pc",
        "--explain",
        "--timeout",
        "20",
    ]);
    assert_eq!(
        out.status, 1,
        "debug-exit 0: status 1; stderr: {}",
        out.stderr
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    let mut at = 0;
    for step in [
        "KVM_CREATE_VM",
        "KVM_SET_USER_MEMORY_REGION: slot 0",
        "KVM_CREATE_IRQCHIP",
        "KVM_CREATE_PIT2",
        "KVM_CREATE_VCPU 0",
        "KVM_SET_CPUID2",
        "KVM_SET_LAPIC, KVM_SET_MSRS, KVM_SET_FPU",
        "KVM_SET_SREGS: 16-bit real mode",
        "firmware tables written: ACPI RSDP at 0xe0000",
        "KVM_IRQFD: an eventfd now raises GSI 4",
        "KVM_RUN: vCPU 0",
        "KVM_EXIT_IO: port 0xf4 out, size 1, count 1, data 0x00 -> debug-exit",
    ] {
        at = find_from(&lines, at, step) + 1;
    }
}

#[test]
fn test_without_explain_nothing_is_told() {
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
    assert_eq!(out.stdout, "4\n");
    assert!(!out.stderr.contains("KVM_"), "{}", out.stderr);
}
