//! Port and MMIO dispatch seen from a guest: the debug console, the POST
//! port, string I/O, unclaimed ports and MMIO, --trace-io and --stats.

use integration_tests::code_asm::*;
use integration_tests::{assemble, require_kvm, run_vmm, TempFile};
use vmm_bin::exit_status::{self, debug_exit_status};

#[test]
fn test_debugcon_output_and_readback() {
    require_kvm();
    let code = assemble(16, 0x1000, |a| {
        a.mov(al, b'e' as i32).unwrap();
        a.out(0xe9, al).unwrap();
        a.in_(al, 0xe9).unwrap(); // reads back 0xe9
        a.out(0xf4, al).unwrap(); // debug-exit with it
    });
    let g = TempFile::with_bytes(&code);
    let out = run_vmm(&["--kernel", g.path(), "--timeout", "20"]);
    assert_eq!(out.stdout, "e");
    assert_eq!(out.status, debug_exit_status(0xe9), "{}", out.stderr);
}

#[test]
fn test_rep_outsb_sends_every_byte_in_order() {
    require_kvm();
    // The message sits at 0x1040, after the code.
    let mut code = assemble(16, 0x1000, |a| {
        a.mov(si, 0x1040).unwrap();
        a.mov(cx, 11).unwrap();
        a.mov(dx, 0xe9).unwrap();
        a.cld().unwrap();
        a.rep().outsb().unwrap();
        a.hlt().unwrap();
    });
    assert!(code.len() <= 0x40);
    code.resize(0x40, 0x90);
    code.extend_from_slice(b"hello world");
    let g = TempFile::with_bytes(&code);
    let out = run_vmm(&["--kernel", g.path(), "--timeout", "20"]);
    assert_eq!(
        (out.status, out.stdout.as_str()),
        (exit_status::HALTED, "hello world"),
        "{}",
        out.stderr
    );
}

#[test]
fn test_rep_insw_from_unclaimed_port_reads_all_ones() {
    require_kvm();
    // rep insw x4 from port 0x64 into a buffer, then write the buffer out
    // through debugcon and the trace shows one line per element.
    let code = assemble(16, 0x1000, |a| {
        a.mov(di, 0x3000).unwrap();
        a.mov(cx, 4).unwrap();
        a.mov(dx, 0x64).unwrap();
        a.cld().unwrap();
        a.rep().insw().unwrap();
        a.mov(ax, word_ptr(0x3006)).unwrap();
        a.out(0x10, ax).unwrap();
        a.hlt().unwrap();
    });
    let g = TempFile::with_bytes(&code);
    let out = run_vmm(&["--kernel", g.path(), "--trace-io", "--timeout", "20"]);
    assert_eq!(out.status, exit_status::HALTED, "{}", out.stderr);
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("io "))
        .collect();
    assert_eq!(
        lines,
        [
            "io in port=0x0064 size=2 value=0xffff",
            "io in port=0x0064 size=2 value=0xffff",
            "io in port=0x0064 size=2 value=0xffff",
            "io in port=0x0064 size=2 value=0xffff",
            "io out port=0x0010 size=2 value=0xffff",
        ]
    );
}

#[test]
fn test_unclaimed_mmio_traced_and_reads_all_ones() {
    require_kvm();
    let code = assemble(32, 0x1000, |a| {
        a.mov(ebx, 0xd000_0000u32).unwrap();
        a.mov(dword_ptr(ebx), 0x1234_5678).unwrap();
        a.mov(eax, dword_ptr(ebx)).unwrap();
        a.hlt().unwrap();
    });
    let g = TempFile::with_bytes(&code);
    let out = run_vmm(&[
        "--kernel",
        g.path(),
        "--mode",
        "protected",
        "--trace-io",
        "--stats",
        "--timeout",
        "20",
    ]);
    assert_eq!(out.status, exit_status::HALTED, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("mmio write addr=0xd0000000 size=4 value=0x12345678\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("mmio read addr=0xd0000000 size=4 value=0xffffffff\n"),
        "{}",
        out.stderr
    );
    // --stats: per-kind counts and the unclaimed page.
    assert!(out.stderr.contains("mmio_write       1"), "{}", out.stderr);
    assert!(
        out.stderr.contains("mmio page 0xd0000000"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("in_kvm_run="), "{}", out.stderr);
}

#[test]
fn test_post_codes_printed_with_time() {
    require_kvm();
    let code = assemble(16, 0x1000, |a| {
        for c in [0x11, 0x22, 0x33] {
            a.mov(al, c).unwrap();
            a.out(0x80, al).unwrap();
        }
        a.hlt().unwrap();
    });
    let g = TempFile::with_bytes(&code);
    let out = run_vmm(&["--kernel", g.path(), "--post-codes", "--timeout", "20"]);
    let codes: Vec<&str> = out
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("post code="))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(codes, ["0x11", "0x22", "0x33"], "{}", out.stderr);
    assert!(out
        .stderr
        .lines()
        .filter(|l| l.starts_with("post "))
        .all(|l| l.contains(" t=")));
}

#[test]
fn test_serial_to_file_and_none() {
    require_kvm();
    let hello = integration_tests::workspace_root().join("integration-tests/guests/hello.bin");
    let dest = std::env::temp_dir().join(format!("vmm-serial-{}.txt", std::process::id()));
    let arg = format!("file:{}", dest.display());
    let out = run_vmm(&[
        "--kernel",
        hello.to_str().unwrap(),
        "--reg",
        "rax=1",
        "--reg",
        "rbx=1",
        "--serial",
        &arg,
        "--timeout",
        "20",
    ]);
    assert_eq!(out.status, exit_status::HALTED, "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "2\n");
    std::fs::remove_file(&dest).ok();
    let out = run_vmm(&[
        "--kernel",
        hello.to_str().unwrap(),
        "--serial",
        "none",
        "--timeout",
        "20",
    ]);
    assert_eq!((out.status, out.stdout.as_str()), (exit_status::HALTED, ""));
}
