//! PVH boot end to end: a test kernel built here (an ELF with a Xen
//! `XEN_ELFNOTE_PHYS32_ENTRY` note, 32-bit code) checks that EBX points to
//! an `hvm_start_info` with the right magic and version and usable
//! addresses (debug-exit code per failed check), then dumps its entry state
//! (EBX, CR0, CR4, EFLAGS), `hvm_start_info`, the memory map, the command
//! line and every module's data and string through the debug console with
//! `rep outsb`; the host parses the dump and checks each value against what
//! it asked for and what the ABI requires.

use integration_tests::boot_protocol::{
    check_memory_map, check_modules, in_boot_info, BootModules, SeenModule,
};
use integration_tests::{expect_bad_input, require_kvm, run_self_checked, Dump, TempFile};
use vmm_core::loader::detect::XEN_ELFNOTE_PHYS32_ENTRY;
use vmm_core::loader::pvh::test_image;
use vmm_core::memory::layout::{CMDLINE_MAX_SIZE, CMDLINE_START};
use vmm_core::memory::MemoryLayout;

/// Where the test kernel's code is linked and loaded.
const KERNEL_BASE: u64 = 0x10_0000;
/// BSS after the code, so the kernel does not end on a page boundary and
/// the first module's alignment is the loader's doing.
const KERNEL_BSS: u64 = 0x123;
const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;

/// The guest's failure codes, written to the debug-exit port.
const CHECKS: [&str; 4] = [
    "magic is not XEN_HVM_START_MAGIC_VALUE",
    "version is not 1",
    "an address field does not fit in 32 bits",
    "cmdline_paddr, memmap_paddr or memmap_entries is 0",
];

/// The test kernel's code (kept apart: `code_asm::*` brings register names
/// such as `cr0` and `ebx` into scope).
mod guest {
    use super::{CHECKS, XEN_HVM_START_MAGIC};
    use integration_tests::assemble;
    use integration_tests::code_asm::*;
    use integration_tests::guest_asm::{dump_string, tag};
    use vmm_core::memory::layout::CMDLINE_MAX_SIZE;

    /// The PVH test kernel's 32-bit code, linked at `base`.
    pub fn pvh_guest(base: u64) -> Vec<u8> {
        assemble(32, base, |a| {
            let mut fails: Vec<CodeLabel> = (0..CHECKS.len()).map(|_| a.create_label()).collect();
            // A stack below the legacy hole, clear of the kernel and boot data
            // (the ABI leaves ESP unspecified).
            a.mov(esp, 0x8_0000u32).unwrap();
            // EFLAGS as entered, before anything changes DF (which the string
            // instructions below need clear).
            a.pushfd().unwrap();
            a.cld().unwrap();
            a.cmp(dword_ptr(ebx), XEN_HVM_START_MAGIC as i32).unwrap();
            a.jne(fails[0]).unwrap();
            a.cmp(dword_ptr(ebx + 4), 1).unwrap();
            a.jne(fails[1]).unwrap();
            // High halves of modlist_paddr, cmdline_paddr, memmap_paddr.
            a.mov(eax, dword_ptr(ebx + 20)).unwrap();
            a.or(eax, dword_ptr(ebx + 28)).unwrap();
            a.or(eax, dword_ptr(ebx + 44)).unwrap();
            a.jnz(fails[2]).unwrap();
            for off in [24, 40, 48] {
                a.cmp(dword_ptr(ebx + off), 0).unwrap();
                a.je(fails[3]).unwrap();
            }

            a.mov(edx, 0xe9).unwrap();
            // The entry state, for the host to judge: EBX, CR0, CR4, EFLAGS.
            tag(a, b"ES");
            a.mov(eax, cr4).unwrap();
            a.push(eax).unwrap();
            a.mov(eax, cr0).unwrap();
            a.push(eax).unwrap();
            a.push(ebx).unwrap();
            a.mov(esi, esp).unwrap();
            a.mov(ecx, 16).unwrap();
            a.rep().outsb().unwrap();
            a.pop(ebx).unwrap();
            a.add(esp, 12).unwrap();
            tag(a, b"SI");
            a.mov(esi, ebx).unwrap();
            a.mov(ecx, 56).unwrap();
            a.rep().outsb().unwrap();
            tag(a, b"MM");
            a.mov(esi, dword_ptr(ebx + 40)).unwrap();
            a.imul_3(ecx, dword_ptr(ebx + 48), 24).unwrap();
            a.rep().outsb().unwrap();
            tag(a, b"CL");
            a.mov(esi, dword_ptr(ebx + 24)).unwrap();
            dump_string(a, CMDLINE_MAX_SIZE as u32);
            tag(a, b"ML");
            a.mov(esi, dword_ptr(ebx + 16)).unwrap();
            a.mov(ecx, dword_ptr(ebx + 12)).unwrap();
            a.shl(ecx, 5).unwrap();
            a.rep().outsb().unwrap();
            // Each module's data and string, walking the module list.
            a.mov(ebp, dword_ptr(ebx + 16)).unwrap();
            a.mov(ebx, dword_ptr(ebx + 12)).unwrap();
            let mut next = a.create_label();
            let mut done = a.create_label();
            a.set_label(&mut next).unwrap();
            a.test(ebx, ebx).unwrap();
            a.jz(done).unwrap();
            tag(a, b"MD");
            a.mov(esi, dword_ptr(ebp)).unwrap();
            a.mov(ecx, dword_ptr(ebp + 8)).unwrap();
            a.rep().outsb().unwrap();
            tag(a, b"MS");
            a.mov(esi, dword_ptr(ebp + 16)).unwrap();
            dump_string(a, CMDLINE_MAX_SIZE as u32);
            a.add(ebp, 32).unwrap();
            a.dec(ebx).unwrap();
            a.jmp(next).unwrap();
            a.set_label(&mut done).unwrap();
            tag(a, b"EN");
            a.mov(al, 0).unwrap();
            a.out(0xf4, al).unwrap();
            a.hlt().unwrap();
            for (i, l) in fails.iter_mut().enumerate() {
                a.set_label(l).unwrap();
                a.mov(al, i as i32 + 1).unwrap();
                a.out(0xf4, al).unwrap();
                a.hlt().unwrap();
            }
        })
    }
}

/// The test kernel as an ELF64 or ELF32 PVH image; returns it and the
/// physical range it occupies.
fn pvh_kernel(is_64: bool) -> (Vec<u8>, (u64, u64)) {
    let code = guest::pvh_guest(KERNEL_BASE);
    let memsz = code.len() as u64 + KERNEL_BSS;
    let img = test_image::build_pvh(
        is_64,
        KERNEL_BASE as u32,
        &[(KERNEL_BASE, KERNEL_BASE, &code, memsz)],
    );
    (img, (KERNEL_BASE, KERNEL_BASE + memsz))
}

/// What the guest reported.
#[derive(Debug)]
struct Seen {
    /// EBX at entry.
    start_info_addr: u32,
    cr0: u32,
    cr4: u32,
    eflags: u32,
    flags: u32,
    rsdp_paddr: u64,
    reserved: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    memmap_paddr: u64,
    /// (addr, size, type, reserved)
    memmap: Vec<(u64, u64, u32, u32)>,
    cmdline: Vec<u8>,
    modules: Vec<SeenModule>,
}

fn parse_dump(bytes: &[u8]) -> Seen {
    let mut d = Dump::new(bytes);
    d.tag(b"ES");
    let start_info_addr = d.u32();
    let cr0 = d.u32();
    let cr4 = d.u32();
    let eflags = d.u32();
    d.tag(b"SI");
    let magic = d.u32();
    let version = d.u32();
    assert_eq!((magic, version), (XEN_HVM_START_MAGIC, 1));
    let flags = d.u32();
    let nr_modules = d.u32();
    let modlist_paddr = d.u64();
    let cmdline_paddr = d.u64();
    let rsdp_paddr = d.u64();
    let memmap_paddr = d.u64();
    let memmap_entries = d.u32();
    let reserved = d.u32();
    d.tag(b"MM");
    let memmap = (0..memmap_entries)
        .map(|_| (d.u64(), d.u64(), d.u32(), d.u32()))
        .collect();
    d.tag(b"CL");
    let cmdline = d.cstr().to_vec();
    d.tag(b"ML");
    let list: Vec<(u64, u64, u64, u64)> = (0..nr_modules)
        .map(|_| (d.u64(), d.u64(), d.u64(), d.u64()))
        .collect();
    let mut modules = Vec::new();
    for (paddr, size, string, res) in list {
        d.tag(b"MD");
        let data = d.take(size as usize).to_vec();
        d.tag(b"MS");
        let s = d.cstr().to_vec();
        modules.push(SeenModule {
            start: paddr,
            size,
            string_addr: string,
            reserved: res,
            data,
            string: s,
        });
    }
    d.tag(b"EN");
    d.assert_end();
    Seen {
        start_info_addr,
        cr0,
        cr4,
        eflags,
        flags,
        rsdp_paddr,
        reserved,
        modlist_paddr,
        cmdline_paddr,
        memmap_paddr,
        memmap,
        cmdline,
        modules,
    }
}

#[test]
fn test_pvh_elf64_start_info_memmap_cmdline_modules() {
    require_kvm();
    let (img, (kstart, kend)) = pvh_kernel(true);
    let kernel = TempFile::with_bytes(&img);
    let modules = BootModules::new();
    let cmdline = "console=ttyS0 earlyprintk=serial pvh=yes";
    let mut args = vec!["--kernel", kernel.path(), "--cmdline", cmdline];
    args.extend(modules.args());
    args.extend(["--memory", "64", "--timeout", "30"]);
    let run = run_self_checked(&args, &CHECKS);
    let seen = parse_dump(&run.stdout);

    assert!(
        in_boot_info(u64::from(seen.start_info_addr)) && seen.start_info_addr.is_multiple_of(8),
        "EBX {:#x}",
        seen.start_info_addr
    );
    // PVH kernels run on the PC platform: rsdp_paddr points at the ACPI RSDP.
    assert_eq!(
        (seen.flags, seen.rsdp_paddr, seen.reserved),
        (0, 0xe0000, 0)
    );
    for a in [seen.modlist_paddr, seen.memmap_paddr] {
        assert!(
            in_boot_info(a) && a.is_multiple_of(8),
            "{a:#x} outside the boot info area"
        );
    }
    assert!(
        (CMDLINE_START.0..CMDLINE_START.0 + CMDLINE_MAX_SIZE).contains(&seen.cmdline_paddr),
        "{:#x}",
        seen.cmdline_paddr
    );

    check_map(&seen, 64);

    assert_eq!(seen.cmdline, cmdline.as_bytes());

    let ram: Vec<(u64, u64)> = seen
        .memmap
        .iter()
        .filter(|&&(_, _, t, _)| t == 1)
        .map(|&(a, l, _, _)| (a, l))
        .collect();
    check_modules(&seen.modules, &modules.expected(), (kstart, kend), &ram);
}

#[test]
fn test_pvh_elf32_forced_format_no_cmdline_no_modules() {
    require_kvm();
    let (img, _) = pvh_kernel(false);
    let kernel = TempFile::with_bytes(&img);
    let run = run_self_checked(
        &[
            "--kernel",
            kernel.path(),
            "--format",
            "pvh",
            "--memory",
            "16",
            "--timeout",
            "30",
        ],
        &CHECKS,
    );
    let seen = parse_dump(&run.stdout);
    assert_eq!(seen.cmdline, b"", "no --cmdline: an empty command line");
    assert!(seen.modules.is_empty());
    // No modules: the list is "not present" (address 0).
    assert_eq!(seen.modlist_paddr, 0);
    check_map(&seen, 16);
}

/// The memory map covers the RAM of `mib` MiB, reserves the legacy hole,
/// the EBDA, start_info, its tables and the command line, and little else
/// (the GDT and the boot information are sized to what they hold).
fn check_map(seen: &Seen, mib: u64) {
    assert!(seen.memmap.iter().all(|e| e.3 == 0), "{:?}", seen.memmap);
    let map: Vec<(u64, u64, u32)> = seen.memmap.iter().map(|&(a, l, t, _)| (a, l, t)).collect();
    let start_info = u64::from(seen.start_info_addr);
    let mut must = vec![
        (start_info, start_info + 56),
        (seen.memmap_paddr, seen.memmap_paddr + 24 * map.len() as u64),
        (
            seen.cmdline_paddr,
            seen.cmdline_paddr + seen.cmdline.len() as u64 + 1,
        ),
    ];
    if seen.modlist_paddr != 0 {
        let n = seen.modules.len() as u64;
        must.push((seen.modlist_paddr, seen.modlist_paddr + 32 * n));
    }
    for m in &seen.modules {
        must.push((m.string_addr, m.string_addr + m.string.len() as u64 + 1));
    }
    check_memory_map(&map, &MemoryLayout::new(mib).unwrap(), true, &must, 0x1000);
}

/// CR0.ET: hard-wired to 1 since the 486, so not a "writable bit".
const CR0_ET: u32 = 1 << 4;
const CR0_PE: u32 = 1;

#[test]
fn test_pvh_entry_state_follows_abi() {
    require_kvm();
    let (img, _) = pvh_kernel(false);
    let kernel = TempFile::with_bytes(&img);
    let run = run_self_checked(&["--kernel", kernel.path(), "--timeout", "30"], &CHECKS);
    let seen = parse_dump(&run.stdout);
    // pvh.pandoc: "cr0: bit 0 (PE) must be set. All the other writeable bits
    // are cleared." (so paging, CD and NW are off); "cr4: all bits are
    // cleared"; "eflags: bit 17 (VM) must be cleared. Bit 9 (IF) must be
    // cleared. Bit 8 (TF) must be cleared."
    assert_eq!(
        seen.cr0 & !CR0_ET,
        CR0_PE,
        "CR0 {:#x}: only PE may be set (ET is hard-wired)",
        seen.cr0
    );
    assert_eq!(seen.cr4, 0, "CR4 {:#x}", seen.cr4);
    assert_eq!(
        seen.eflags & ((1 << 17) | (1 << 9) | (1 << 8)),
        0,
        "EFLAGS {:#x}",
        seen.eflags
    );
}

#[test]
fn test_pvh_is_detected_and_logged() {
    require_kvm();
    let (img, _) = pvh_kernel(true);
    let kernel = TempFile::with_bytes(&img);
    let run = run_self_checked(
        &["--kernel", kernel.path(), "-v", "--timeout", "30"],
        &CHECKS,
    );
    assert!(
        run.stderr.contains("loading as pvh"),
        "detection not reported: {}",
        run.stderr
    );
}

#[test]
fn test_pvh_bad_input() {
    let code = [0xf4u8; 16];
    let seg: &[test_image::Seg<'_>] = &[(KERNEL_BASE, KERNEL_BASE, &code, 16)];
    let with_entry = |entry: u32| {
        let desc = entry.to_le_bytes();
        test_image::build(
            true,
            KERNEL_BASE,
            seg,
            &[("Xen", XEN_ELFNOTE_PHYS32_ENTRY, &desc)],
        )
    };
    let outside_ram = TempFile::with_bytes(&with_entry(0x2000_0000));
    expect_bad_input(
        &[
            "--kernel",
            outside_ram.path(),
            "--memory",
            "16",
            "--timeout",
            "5",
        ],
        "0x20000000 is outside guest RAM",
    );
    let outside_image = TempFile::with_bytes(&with_entry(0x20_0000));
    expect_bad_input(
        &[
            "--kernel",
            outside_image.path(),
            "--memory",
            "16",
            "--timeout",
            "5",
        ],
        "0x200000 is not inside any loaded segment",
    );

    let ok = TempFile::with_bytes(&with_entry(KERNEL_BASE as u32));
    let long = "c".repeat(CMDLINE_MAX_SIZE as usize);
    expect_bad_input(
        &["--kernel", ok.path(), "--cmdline", &long, "--timeout", "5"],
        "command line of 65536 bytes",
    );
    // 2 MiB of RAM: 1 MiB - 4 KiB is free above the kernel.
    let big = TempFile::with_bytes(&vec![0x11; 0x10_0000]);
    expect_bad_input(
        &[
            "--kernel",
            ok.path(),
            "--initrd",
            big.path(),
            "--memory",
            "2",
            "--timeout",
            "5",
        ],
        "1048576 bytes) does not fit",
    );

    // --format pvh on an ELF without the note.
    let plain = TempFile::with_bytes(&test_image::build(true, KERNEL_BASE, seg, &[]));
    expect_bad_input(
        &[
            "--kernel",
            plain.path(),
            "--format",
            "pvh",
            "--timeout",
            "5",
        ],
        "XEN_ELFNOTE_PHYS32_ENTRY",
    );
}
