//! Plain static ELF executables end to end: ELF32 entered in 32-bit flat
//! protected mode, ELF64 in long mode, both found by auto-detection; an
//! entry linked at a high virtual address; several segments with data and
//! BSS; and the bad inputs the ELF loader must refuse with a message naming
//! the value.

use integration_tests::{expect_bad_input, require_kvm, run_vmm, TempFile};
use vmm_bin::exit_status;
use vmm_core::loader::elf::test_image::{build, Seg};

/// Guest code (kept in its own module: `code_asm::*` brings register names
/// into scope).
mod guest {
    use integration_tests::assemble;
    use integration_tests::code_asm::*;

    /// Writes `text` to the UART (COM1 THR), one `out` per byte.
    pub fn print(a: &mut CodeAssembler, text: &str) {
        a.mov(edx, 0x3f8).unwrap();
        for b in text.bytes() {
            a.mov(al, i32::from(b)).unwrap();
            a.out(dx, al).unwrap();
        }
    }

    /// Writes `value` to the debug-exit port and stops.
    pub fn exit(a: &mut CodeAssembler, value: u8) {
        a.mov(al, i32::from(value)).unwrap();
        a.out(0xf4, al).unwrap();
        a.hlt().unwrap();
    }

    /// 32-bit code at `base`: prints `text` if CR0 says protected mode
    /// without paging (PE set, PG clear), else exits with 1.
    pub fn protected_print(base: u64, text: &str) -> Vec<u8> {
        assemble(32, base, |a| {
            let mut bad = a.create_label();
            a.mov(eax, cr0).unwrap();
            a.and(eax, 0x8000_0001u32 as i32).unwrap();
            a.cmp(eax, 1).unwrap();
            a.jne(bad).unwrap();
            print(a, text);
            a.hlt().unwrap();
            a.set_label(&mut bad).unwrap();
            exit(a, 1);
        })
    }

    /// 64-bit code at `base`: prints `text` if 64-bit arithmetic works (in
    /// any other mode the REX prefixes decode differently), else exits 1.
    pub fn long_print(base: u64, text: &str) -> Vec<u8> {
        assemble(64, base, |a| {
            let mut bad = a.create_label();
            a.mov(rax, 0x1_0000_0002u64).unwrap();
            a.shr(rax, 32).unwrap();
            a.cmp(rax, 1).unwrap();
            a.jne(bad).unwrap();
            print(a, text);
            a.hlt().unwrap();
            a.set_label(&mut bad).unwrap();
            exit(a, 1);
        })
    }

    /// 64-bit code at `base` that prints the NUL-terminated string at
    /// `msg`, checks `bss_len` bytes at `bss` and `pure_bss_len` at
    /// `pure_bss` read as zero (else exits 2) and that the byte at `marker`
    /// is 0xAA (else exits 3), then prints "bss zero\n" and halts.
    pub fn multi_segment(
        base: u64,
        msg: u64,
        bss: u64,
        bss_len: u64,
        pure_bss: u64,
        pure_bss_len: u64,
        marker: u64,
    ) -> Vec<u8> {
        assemble(64, base, |a| {
            let mut lp = a.create_label();
            let mut printed = a.create_label();
            let mut not_zero = a.create_label();
            let mut no_marker = a.create_label();
            a.cld().unwrap();
            a.mov(rsi, msg).unwrap();
            a.mov(edx, 0x3f8).unwrap();
            a.set_label(&mut lp).unwrap();
            a.lodsb().unwrap();
            a.test(al, al).unwrap();
            a.jz(printed).unwrap();
            a.out(dx, al).unwrap();
            a.jmp(lp).unwrap();
            a.set_label(&mut printed).unwrap();
            for (start, len) in [(bss, bss_len), (pure_bss, pure_bss_len)] {
                a.mov(rdi, start).unwrap();
                a.mov(rcx, len).unwrap();
                a.xor(eax, eax).unwrap();
                a.repe().scasb().unwrap();
                a.jne(not_zero).unwrap();
            }
            a.mov(rbx, marker).unwrap();
            a.cmp(byte_ptr(rbx), 0xaa).unwrap();
            a.jne(no_marker).unwrap();
            print(a, "bss zero\n");
            a.hlt().unwrap();
            a.set_label(&mut not_zero).unwrap();
            exit(a, 2);
            a.set_label(&mut no_marker).unwrap();
            exit(a, 3);
        })
    }

    /// 64-bit code: `ud2` at its first `pad` bytes, then prints `text`.
    pub fn long_print_after_traps(base: u64, pad: usize, text: &str) -> Vec<u8> {
        let mut code: Vec<u8> = [0x0f, 0x0b].repeat(pad / 2);
        code.extend(long_print(base + code.len() as u64, text));
        code
    }
}

/// Runs `kernel` with `extra` arguments and a timeout; asserts it halted
/// (status 0) after printing exactly `expect`.
fn run_expect(kernel: &[u8], extra: &[&str], expect: &str) {
    require_kvm();
    let k = TempFile::with_bytes(kernel);
    let mut args = vec!["--kernel", k.path(), "--timeout", "20"];
    args.extend_from_slice(extra);
    let out = run_vmm(&args);
    assert_eq!(
        (out.status, out.stdout.as_str()),
        (exit_status::HALTED, expect),
        "stderr: {}",
        out.stderr
    );
}

const BASE: u64 = 0x10_0000;

#[test]
fn test_elf32_static_runs_in_protected_mode() {
    let code = guest::protected_print(BASE, "ELF32 protected\n");
    let img = build(false, BASE, &[(BASE, BASE, &code, code.len() as u64)]);
    run_expect(&img, &[], "ELF32 protected\n");
}

#[test]
fn test_elf32_detection_is_reported() {
    require_kvm();
    let code = guest::protected_print(BASE, "x");
    let k = TempFile::with_bytes(&build(
        false,
        BASE,
        &[(BASE, BASE, &code, code.len() as u64)],
    ));
    let out = run_vmm(&["--kernel", k.path(), "-v", "--timeout", "20"]);
    assert_eq!(out.status, exit_status::HALTED, "{}", out.stderr);
    assert!(
        out.stderr.contains("loading as elf (ELF32 executable)"),
        "{}",
        out.stderr
    );
}

#[test]
fn test_elf64_static_runs_in_long_mode() {
    let base = 0x20_0000;
    let code = guest::long_print(base, "ELF64 long\n");
    // Entered at e_entry, not at the segment start: two bytes of ud2 first.
    let mut image = vec![0x0f, 0x0b];
    image.extend(guest::long_print(base + 2, "ELF64 long\n"));
    let img = build(true, base + 2, &[(base, base, &image, image.len() as u64)]);
    run_expect(&img, &[], "ELF64 long\n");
    // And the same code entered at the start of its segment.
    let img = build(true, base, &[(base, base, &code, code.len() as u64)]);
    run_expect(&img, &["--memory", "16"], "ELF64 long\n");
}

#[test]
fn test_elf64_high_virtual_entry_is_translated() {
    // Linked at -2 GiB + 1 MiB (as kernels are), loaded at 1 MiB. Entering
    // anywhere but paddr + 0x20 faults: the bytes before are ud2 and the
    // virtual address is not mapped (the VMM's page tables are an identity
    // map of the first 4 GiB).
    let vaddr = 0xffff_ffff_8010_0000u64;
    let code = guest::long_print_after_traps(BASE, 0x20, "high entry\n");
    let img = build(
        true,
        vaddr + 0x20,
        &[(BASE, vaddr, &code, code.len() as u64)],
    );
    run_expect(&img, &[], "high entry\n");
}

/// Where [`run_multi_segment`] puts the guest's segments.
struct Placement {
    code: u64,
    data: u64,
    bss_len: u64,
    marker: u64,
    pure_bss: u64,
    pure_bss_len: u64,
}

/// Runs [`guest::multi_segment`] with its code, data-plus-BSS, marker and
/// pure-BSS segments at `p`, printing `msg`; the segments go into the ELF in
/// `order` (indexes into that list).
fn run_multi_segment(p: &Placement, msg: &[u8], order: [usize; 4]) {
    let code = guest::multi_segment(
        p.code,
        p.data,
        p.data + msg.len() as u64,
        p.bss_len,
        p.pure_bss,
        p.pure_bss_len,
        p.marker,
    );
    // Fresh guest RAM is zero, so a loader that forgot to zero BSS would go
    // unnoticed; one that copied p_memsz bytes from the file instead of
    // p_filesz would not: the bytes after the data segment's in the file
    // are the marker segment's 0xAA (and then trailing 0x55 filler).
    let marker = vec![0xaau8; p.bss_len as usize];
    let all: [Seg<'_>; 4] = [
        (p.code, p.code, &code, code.len() as u64),
        (p.data, p.data, msg, msg.len() as u64 + p.bss_len),
        (p.marker, p.marker, &marker, marker.len() as u64),
        (p.pure_bss, p.pure_bss, &[], p.pure_bss_len),
    ];
    let segs = order.map(|i| all[i]);
    let mut img = build(true, p.code, &segs);
    img.extend(vec![0x55u8; 0x4000]);
    let text = String::from_utf8_lossy(&msg[..msg.len() - 1]).into_owned();
    run_expect(&img, &[], &format!("{text}bss zero\n"));
}

#[test]
fn test_elf_multi_segment_data_and_bss() {
    let p = Placement {
        code: BASE,
        data: 0x30_0000,
        bss_len: 0x2345,
        marker: 0x40_0000,
        pure_bss: 0x50_0000,
        pure_bss_len: 0x1800,
    };
    run_multi_segment(&p, b"data segment ok\n\0", [0, 1, 2, 3]);
}

#[test]
fn test_elf_sparse_segments_straddle_the_page_tables() {
    // Data and its BSS at 0x1000, a marker page at 0x8000, code at 1 MiB:
    // the span covers the long-mode page tables (0x9000-0xf000) and the
    // zero page, no segment does. Odd but legal; it must run.
    let p = Placement {
        code: BASE,
        data: 0x1000,
        bss_len: 0x800,
        marker: 0x8000,
        pure_bss: 0x4_0000,
        pure_bss_len: 0x1000,
    };
    run_multi_segment(&p, b"sparse ok\n\0", [1, 2, 3, 0]);
}

fn one_segment(paddr: u64, bytes: &[u8]) -> Vec<u8> {
    build(true, paddr, &[(paddr, paddr, bytes, bytes.len() as u64)])
}

#[test]
fn test_elf_truncated() {
    let img = one_segment(BASE, &[0xf4; 64]);
    let headers_cut = TempFile::with_bytes(&img[..40]);
    expect_bad_input(
        &["--kernel", headers_cut.path(), "--timeout", "5"],
        "corrupt or truncated ELF",
    );
    let data_cut = &img[..img.len() - 1];
    let f = TempFile::with_bytes(data_cut);
    expect_bad_input(
        &["--kernel", f.path(), "--timeout", "5"],
        &format!("outside the {}-byte file", data_cut.len()),
    );
}

#[test]
fn test_elf_segment_outside_ram() {
    let f = TempFile::with_bytes(&one_segment(0x400_0000, &[0xf4; 16]));
    expect_bad_input(
        &["--kernel", f.path(), "--memory", "64", "--timeout", "5"],
        "physical address 0x4000000 (+0x10 bytes) is outside guest RAM",
    );
    // Straddling the end of RAM.
    let f = TempFile::with_bytes(&one_segment(0x3ff_fff8, &[0xf4; 16]));
    expect_bad_input(
        &["--kernel", f.path(), "--memory", "64", "--timeout", "5"],
        "0x3fffff8",
    );
}

#[test]
fn test_elf_overlapping_segments() {
    let a = [0xf4u8; 0x100];
    let f = TempFile::with_bytes(&build(
        true,
        BASE,
        &[
            (BASE, BASE, &a, 0x100),
            (BASE + 0xff, BASE + 0xff, &a, 0x100),
        ],
    ));
    expect_bad_input(
        &["--kernel", f.path(), "--timeout", "5"],
        "segments 0 and 1 overlap",
    );
}

#[test]
fn test_elf_sparse_segments_where_the_boot_structures_would_go_run() {
    // A long-mode program whose data sits where the page tables would go
    // (0x9000), its marker where the GDT would (0x500) and its pure BSS at
    // the zero page's place: the GDT and page tables move elsewhere, and
    // the program's bytes stay its own.
    let p = Placement {
        code: BASE,
        data: 0x9000,
        bss_len: 0x800,
        marker: 0x500,
        pure_bss: 0x7000,
        pure_bss_len: 0x1000,
    };
    run_multi_segment(&p, b"around the tables\n\0", [2, 0, 3, 1]);
}

#[test]
fn test_elf_format_on_raw_file() {
    let f = TempFile::with_bytes(&[0xf4; 64]);
    expect_bad_input(
        &["--kernel", f.path(), "--format", "elf", "--timeout", "5"],
        "--format elf contradicts the image: no ELF magic",
    );
}

#[test]
fn test_elf_rejects_raw_only_mode_option() {
    let f = TempFile::with_bytes(&one_segment(BASE, &[0xf4; 16]));
    expect_bad_input(
        &["--kernel", f.path(), "--mode", "long", "--timeout", "5"],
        "--mode applies to raw images only, but the image is elf",
    );
}

/// The committed ELF64 guest of the start-up bench, as the bench runs it.
fn hello_reset(extra: &[&str]) -> integration_tests::Output {
    let path = integration_tests::workspace_root().join("integration-tests/guests/hello_reset.elf");
    let mut args = vec!["--kernel", path.to_str().unwrap(), "--timeout", "20"];
    args.extend_from_slice(extra);
    run_vmm(&args)
}

#[test]
fn test_hello_reset_elf_triple_faults_without_an_i8042() {
    require_kvm();
    let out = hello_reset(&[]);
    assert_eq!(out.stdout, "hello\n", "{}", out.stderr);
    assert_eq!(out.status, exit_status::TRIPLE_FAULT, "{}", out.stderr);
}

#[test]
fn test_hello_reset_elf_resets_through_the_i8042_on_a_pc() {
    require_kvm();
    let out = hello_reset(&["--platform", "pc"]);
    assert_eq!(out.stdout, "hello\n", "{}", out.stderr);
    assert_eq!(out.status, exit_status::GUEST_RESET, "{}", out.stderr);
    assert!(
        out.stderr.contains("guest requested a reset"),
        "{}",
        out.stderr
    );
}
