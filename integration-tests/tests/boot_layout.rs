//! The boot structures make room for the image: legal images that used to
//! be refused because they sat where the VMM's fixed structures were, built
//! here with the host's GNU as and ld the way their authors build them,
//! load and run; the BIOS data area says what a PC firmware says; and an
//! image that really needs the bytes a structure must have is refused with
//! both named.
//!
//! - A realmode.flat-style Multiboot kernel (kvm-unit-tests): one segment
//!   `[0x8000, 0xa86c)` over the long-mode page tables' preferred place,
//!   entered in 32-bit mode (which needs no page tables), dropping to real
//!   mode itself.
//! - A tutorial Multiboot kernel linked with `ld -m elf_i386 -Ttext
//!   0x100000`: binutils gives it a read-only segment holding its ELF
//!   headers at 0xff000, in the BIOS area.
//! - The BDA of every PC boot: COM1, the EBDA's segment, the equipment
//!   word, base memory; none on the minimal platform.

use std::path::PathBuf;
use std::sync::OnceLock;

use integration_tests::gnu_guest::{build_elf32, elf32_loads, Link};
use integration_tests::{expect_bad_input, le_u32, require_kvm, run_self_checked, Dump, TempFile};

/// kvm-unit-tests' realmode.lds, reduced: everything in one section from
/// 0x8000, no ELF headers loaded.
const REALMODE_LDS: &str = r#"
OUTPUT_FORMAT("elf32-i386")
ENTRY(start)
SECTIONS
{
    . = 0x8000;
    .text : { *(.init) *(.text) }
}
"#;

/// A Multiboot kernel at 0x8000 of realmode.flat's size (0x286c bytes):
/// checks EAX, checks that the tail of its own segment (over where the
/// page tables would go) still holds its bytes, then leaves protected mode
/// through a 16-bit segment as realmode.flat does and prints from real
/// mode.
const REALMODE_S: &str = r#"
    .code32
    .section .init, "ax"
    .globl start
image_start:
    .align 4
    .long 0x1BADB002
    .long 0
    .long -0x1BADB002
start:
    cli
    cmp $0x2BADB002, %eax
    jne fail_magic
    mov $pattern, %esi
    mov $(image_end - pattern), %ecx
1:  cmpb $0x5a, (%esi)
    jne fail_pattern
    inc %esi
    loop 1b
    lgdtl gdt_desc
    ljmp $0x08, $pm16
    .code16
pm16:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %cr0, %eax
    and $0xfffffffe, %eax
    mov %eax, %cr0
    ljmp $0, $real
real:
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %ss
    mov $0x7c00, %sp
    mov $msg, %si
    mov $0xe9, %dx
2:  lodsb
    test %al, %al
    jz 3f
    out %al, %dx
    jmp 2b
3:  mov $0, %al
    out %al, $0xf4
    hlt
    .code32
fail_magic:
    mov $1, %al
    out %al, $0xf4
    hlt
fail_pattern:
    mov $2, %al
    out %al, $0xf4
    hlt
    .align 8
gdt:
    .quad 0
    .quad 0x00009a000000ffff
    .quad 0x000093000000ffff
gdt_desc:
    .word gdt_desc - gdt - 1
    .long gdt
msg:
    .asciz "realmode ok\n"
pattern:
    .fill 0x286c - (pattern - image_start), 1, 0x5a
image_end:
"#;

const REALMODE_CHECKS: [&str; 2] = [
    "EAX is not the Multiboot magic",
    "the kernel's own bytes at the end of its segment were overwritten",
];

/// A tutorial Multiboot kernel (the header first in .text): checks EAX and
/// that its ELF header segment at 0xff000 holds the ELF magic, then dumps
/// the BDA's COM1, EBDA segment, equipment word and base memory, the
/// EBDA's first byte and the information structure's mem_lower.
const TUTORIAL_S: &str = r#"
    .text
    .globl start
    .align 4
    .long 0x1BADB002
    .long 0
    .long -0x1BADB002
start:
    cmp $0x2BADB002, %eax
    jne fail_magic
    cmpl $0x464c457f, 0xff000
    jne fail_header
    mov $0xe9, %dx
    mov $'B', %al
    out %al, %dx
    mov $'D', %al
    out %al, %dx
    mov $0x400, %esi
    mov $2, %ecx
    rep outsb
    mov $0x40e, %esi
    mov $2, %ecx
    rep outsb
    mov $0x410, %esi
    mov $2, %ecx
    rep outsb
    mov $0x413, %esi
    mov $2, %ecx
    rep outsb
    movzwl 0x40e, %esi
    shl $4, %esi
    mov $1, %ecx
    rep outsb
    lea 4(%ebx), %esi
    mov $4, %ecx
    rep outsb
    mov $'E', %al
    out %al, %dx
    mov $'N', %al
    out %al, %dx
    mov $0, %al
    out %al, $0xf4
    hlt
fail_magic:
    mov $1, %al
    out %al, $0xf4
    hlt
fail_header:
    mov $2, %al
    out %al, $0xf4
    hlt
"#;

const TUTORIAL_CHECKS: [&str; 2] = [
    "EAX is not the Multiboot magic",
    "no ELF header at 0xff000: the header segment was not loaded or was overwritten",
];

fn read(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).expect("read the built guest")
}

#[test]
fn test_realmode_style_multiboot_kernel_at_0x8000_runs() {
    require_kvm();
    let elf = build_elf32("realmode-style", REALMODE_S, Link::Script(REALMODE_LDS));
    assert_eq!(
        elf32_loads(&read(&elf)),
        [(0x8000, 0x286c)],
        "binutils laid the guest out differently from realmode.flat"
    );
    let path = elf.to_str().unwrap();
    let run = run_self_checked(&["--kernel", path, "--timeout", "20"], &REALMODE_CHECKS);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "realmode ok\n");
}

/// What the tutorial guest dumped.
struct Bda {
    com1: u16,
    ebda_segment: u16,
    equipment: u16,
    base_kib: u16,
    ebda_first: u8,
    mem_lower: u32,
}

/// The tutorial guest, built once for the tests that run it.
fn tutorial() -> &'static std::path::Path {
    static ELF: OnceLock<PathBuf> = OnceLock::new();
    ELF.get_or_init(|| {
        build_elf32(
            "tutorial-multiboot",
            TUTORIAL_S,
            Link::Args(&["-Ttext", "0x100000"]),
        )
    })
}

fn run_tutorial(extra: &[&str]) -> Bda {
    let elf = tutorial();
    let loads = elf32_loads(&read(elf));
    assert!(
        loads.iter().any(|&(paddr, _)| paddr == 0xf_f000),
        "binutils made no header segment at 0xff000 ({loads:x?}): the case this test is about"
    );
    let path = elf.to_str().unwrap();
    let mut args = vec!["--kernel", path, "--timeout", "20"];
    args.extend_from_slice(extra);
    let run = run_self_checked(&args, &TUTORIAL_CHECKS);
    let mut d = Dump::new(&run.stdout);
    d.tag(b"BD");
    let mut u16_ = || u16::from_le_bytes([d.take(1)[0], d.take(1)[0]]);
    let (com1, ebda_segment, equipment, base_kib) = (u16_(), u16_(), u16_(), u16_());
    let ebda_first = d.take(1)[0];
    let mem_lower = le_u32(d.take(4), 0);
    d.tag(b"EN");
    d.assert_end();
    Bda {
        com1,
        ebda_segment,
        equipment,
        base_kib,
        ebda_first,
        mem_lower,
    }
}

#[test]
fn test_tutorial_multiboot_kernel_with_header_segment_at_0xff000_runs_and_sees_the_bda() {
    require_kvm();
    // Multiboot gets the PC platform: ACPI, MP table, BDA and EBDA, all
    // placed around the kernel's three segments.
    let bda = run_tutorial(&[]);
    assert_eq!(bda.com1, 0x3f8, "COM1 base");
    assert_eq!(bda.ebda_segment, 0x9fc0, "EBDA segment (at 0x9fc00)");
    assert_eq!(
        bda.equipment, 0x0206,
        "equipment: FPU, PS/2 mouse, one serial port"
    );
    assert_eq!(bda.base_kib, 639, "base memory ends at the EBDA");
    assert_eq!(bda.ebda_first, 1, "the EBDA's size in KiB");
    assert_eq!(bda.mem_lower, 639, "mem_lower agrees with the BDA");
}

#[test]
fn test_minimal_platform_has_no_bda() {
    require_kvm();
    let bda = run_tutorial(&["--platform", "minimal"]);
    assert_eq!(
        (bda.com1, bda.ebda_segment, bda.equipment, bda.base_kib),
        (0, 0, 0, 0),
        "the minimal platform has no firmware"
    );
    assert_eq!(bda.mem_lower, 640, "no EBDA: all 640 KiB");
}

#[test]
fn test_image_needing_the_rsdp_bytes_is_refused_naming_both() {
    // A raw real-mode image over all of the first MiB on the PC platform:
    // the RSDP has nowhere a guest would search (the BIOS area is the
    // image's, and no EBDA fits below 640 KiB).
    let img = TempFile::with_bytes(&vec![0xf4; 0x10_0000]);
    let out = expect_bad_input(
        &[
            "--kernel",
            img.path(),
            "--load-addr",
            "0",
            "--platform",
            "pc",
            "--memory",
            "4",
            "--timeout",
            "5",
        ],
        "the ACPI RSDP (36 bytes) has no room",
    );
    assert!(
        out.stderr
            .contains("the image at [0x0, 0x100000) needs those bytes"),
        "{}",
        out.stderr
    );
}
