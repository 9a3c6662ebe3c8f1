//! Multiboot v1 end to end: test kernels built here (one loaded by the
//! a.out kludge address fields, one ELF32 loaded by its program headers)
//! check what they can of the machine state and the information structure
//! the specification promises, then dump the structure, the memory map, the
//! command line, the boot loader name and every module through the debug
//! console; the host parses the dump and checks each value exactly.

use integration_tests::boot_protocol::{
    check_memory_map, check_modules, in_boot_info, BootModules, SeenModule, E820_RAM,
};
use integration_tests::{expect_bad_input, le_u32, require_kvm, run_self_checked, Dump, TempFile};
use vmm_core::loader::elf::test_image as elf_image;
use vmm_core::loader::multiboot::test_image::{
    header, AOUT_KLUDGE, MEMORY_INFO, PAGE_ALIGN, VIDEO_MODE,
};
use vmm_core::loader::multiboot::BOOT_LOADER_NAME;
use vmm_core::memory::MemoryLayout;

/// Where both test kernels load (physically).
const KERNEL_BASE: u32 = 0x10_0000;
/// Where the ELF kernel is linked (virtually); its entry is translated.
const ELF_VIRT_BASE: u32 = 0xc010_0000;
/// BSS after the code, so the kernel does not end on a page boundary and
/// the first module's alignment is the loader's doing.
const KERNEL_BSS: u32 = 0x123;
/// The bytes the a.out kernel's load starts with (file offset 0x40).
const AOUT_MARKER: &[u8; 16] = b"MBOOT-AOUT-START";
const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;
/// Size of the information structure the guest dumps (0.6.96: up to the
/// framebuffer fields).
const INFO_SIZE: usize = 116;

/// Information flags the guest requires: mem_* (0), cmdline (2), mods (3),
/// mmap (6), boot_loader_name (9).
const INFO_REQUIRED: u32 = 1 | 1 << 2 | 1 << 3 | 1 << 6 | 1 << 9;
/// Information flags that claim what this VMM does not provide: boot_device
/// (1), a.out symbols (4), ELF sections (5), VBE (11), framebuffer (12).
const INFO_NOT_PROVIDED: u32 = 1 << 1 | 1 << 4 | 1 << 5 | 1 << 11 | 1 << 12;

/// The guest's failure codes, written to the debug-exit port (code i + 1).
const CHECKS: [&str; 7] = [
    "EAX is not 0x2BADB002",
    "an information flag it needs is clear (0, 2, 3, 6, 9)",
    "an information flag claims something not provided (1, 4, 5, 11, 12)",
    "a pointer or module lies outside RAM (below (mem_upper + 1024) KiB)",
    "a memory map entry's size is not 20, or the entries do not end at mmap_addr + mmap_length",
    "a module is not page-aligned (header flag bit 0)",
    "the loaded bytes are wrong: marker at load_addr, or nonzero bytes after the code (BSS)",
];

/// The test kernel's code (kept apart: `code_asm::*` brings register names
/// such as `cr0` and `ebx` into scope).
mod guest {
    use super::{BOOTLOADER_MAGIC, CHECKS, INFO_NOT_PROVIDED, INFO_REQUIRED, INFO_SIZE};
    use integration_tests::assemble;
    use integration_tests::code_asm::*;
    use integration_tests::guest_asm::{dump_string, tag};

    /// The kernel's 32-bit code, placed at `ip`. With `marker`, it checks
    /// that the dword at `load_addr` is `marker` (the a.out kludge's file
    /// offset arithmetic). It checks that the 16 bytes after itself are
    /// zero (BSS).
    pub fn code(ip: u32, marker: Option<(u32, u32)>) -> Vec<u8> {
        // Absolute operands are 4 bytes whatever their value, so the second
        // pass, told where the code ends, has the first pass's length.
        let first = code_with_end(ip, marker, 0);
        let end = ip + first.len() as u32;
        let code = code_with_end(ip, marker, end);
        assert_eq!(code.len(), first.len(), "guest code length changed");
        code
    }

    fn code_with_end(ip: u32, marker: Option<(u32, u32)>, end: u32) -> Vec<u8> {
        assemble(32, u64::from(ip), |a| {
            let mut fails: Vec<CodeLabel> = (0..CHECKS.len()).map(|_| a.create_label()).collect();
            // The specification leaves ESP undefined: a stack in low RAM,
            // clear of the kernel and the boot data.
            a.mov(esp, 0x8_0000u32).unwrap();
            // EFLAGS and EAX as entered, for the dump.
            a.pushfd().unwrap();
            a.push(eax).unwrap();
            a.cld().unwrap();
            a.cmp(eax, BOOTLOADER_MAGIC as i32).unwrap();
            a.jne(fails[0]).unwrap();

            a.mov(eax, dword_ptr(ebx)).unwrap();
            a.mov(ecx, eax).unwrap();
            a.and(ecx, INFO_REQUIRED as i32).unwrap();
            a.cmp(ecx, INFO_REQUIRED as i32).unwrap();
            a.jne(fails[1]).unwrap();
            a.test(eax, INFO_NOT_PROVIDED as i32).unwrap();
            a.jnz(fails[2]).unwrap();

            // EDI = end of upper memory = (mem_upper + 1024) KiB.
            a.mov(edi, dword_ptr(ebx + 8)).unwrap();
            a.add(edi, 1024).unwrap();
            a.shl(edi, 10).unwrap();
            for off in [16, 24, 48, 64] {
                a.cmp(dword_ptr(ebx + off), edi).unwrap();
                a.jae(fails[3]).unwrap();
            }
            a.mov(eax, dword_ptr(ebx + 48)).unwrap();
            a.add(eax, dword_ptr(ebx + 44)).unwrap();
            a.cmp(eax, edi).unwrap();
            a.ja(fails[3]).unwrap();

            // Walk the memory map as the specification says to: the next
            // entry is at this one + size + 4.
            let mut mm_next = a.create_label();
            let mut mm_done = a.create_label();
            a.mov(esi, dword_ptr(ebx + 48)).unwrap();
            a.mov(ecx, esi).unwrap();
            a.add(ecx, dword_ptr(ebx + 44)).unwrap();
            a.set_label(&mut mm_next).unwrap();
            a.cmp(esi, ecx).unwrap();
            a.jae(mm_done).unwrap();
            a.cmp(dword_ptr(esi), 20).unwrap();
            a.jne(fails[4]).unwrap();
            a.mov(eax, dword_ptr(esi)).unwrap();
            a.lea(esi, ptr(esi + eax + 4)).unwrap();
            a.jmp(mm_next).unwrap();
            a.set_label(&mut mm_done).unwrap();
            a.cmp(esi, ecx).unwrap();
            a.jne(fails[4]).unwrap();

            // Modules: page-aligned, start <= end, inside RAM.
            let mut mod_next = a.create_label();
            let mut mod_done = a.create_label();
            a.mov(ebp, dword_ptr(ebx + 24)).unwrap();
            a.mov(ecx, dword_ptr(ebx + 20)).unwrap();
            a.set_label(&mut mod_next).unwrap();
            a.test(ecx, ecx).unwrap();
            a.jz(mod_done).unwrap();
            a.mov(eax, dword_ptr(ebp)).unwrap();
            a.test(eax, 0xfff).unwrap();
            a.jnz(fails[5]).unwrap();
            a.cmp(eax, dword_ptr(ebp + 4)).unwrap();
            a.ja(fails[3]).unwrap();
            a.cmp(dword_ptr(ebp + 4), edi).unwrap();
            a.ja(fails[3]).unwrap();
            a.add(ebp, 16).unwrap();
            a.dec(ecx).unwrap();
            a.jmp(mod_next).unwrap();
            a.set_label(&mut mod_done).unwrap();

            if let Some((load_addr, value)) = marker {
                a.cmp(dword_ptr(u64::from(load_addr)), value as i32)
                    .unwrap();
                a.jne(fails[6]).unwrap();
            }
            // The 16 bytes after the code are BSS (the a.out file has junk
            // there that load_end_addr excludes).
            a.mov(eax, dword_ptr(u64::from(end))).unwrap();
            for off in [4, 8, 12] {
                a.or(eax, dword_ptr(u64::from(end + off))).unwrap();
            }
            a.jnz(fails[6]).unwrap();

            a.mov(edx, 0xe9).unwrap();
            // Entry state: EBX, CR0, EAX, EFLAGS.
            tag(a, b"ES");
            a.mov(eax, cr0).unwrap();
            a.push(eax).unwrap();
            a.push(ebx).unwrap();
            a.mov(esi, esp).unwrap();
            a.mov(ecx, 16).unwrap();
            a.rep().outsb().unwrap();
            a.add(esp, 16).unwrap();
            tag(a, b"MI");
            a.mov(esi, ebx).unwrap();
            a.mov(ecx, INFO_SIZE as u32).unwrap();
            a.rep().outsb().unwrap();
            tag(a, b"MM");
            a.mov(esi, dword_ptr(ebx + 48)).unwrap();
            a.mov(ecx, dword_ptr(ebx + 44)).unwrap();
            a.rep().outsb().unwrap();
            tag(a, b"CL");
            a.mov(esi, dword_ptr(ebx + 16)).unwrap();
            dump_string(a, 0x1_0000);
            tag(a, b"BL");
            a.mov(esi, dword_ptr(ebx + 64)).unwrap();
            dump_string(a, 0x1_0000);
            tag(a, b"ML");
            a.mov(esi, dword_ptr(ebx + 24)).unwrap();
            a.mov(ecx, dword_ptr(ebx + 20)).unwrap();
            a.shl(ecx, 4).unwrap();
            a.rep().outsb().unwrap();
            // Each module's data and string, walking the module list.
            a.mov(ebp, dword_ptr(ebx + 24)).unwrap();
            a.mov(ebx, dword_ptr(ebx + 20)).unwrap();
            let mut next = a.create_label();
            let mut done = a.create_label();
            a.set_label(&mut next).unwrap();
            a.test(ebx, ebx).unwrap();
            a.jz(done).unwrap();
            tag(a, b"MD");
            a.mov(esi, dword_ptr(ebp)).unwrap();
            a.mov(ecx, dword_ptr(ebp + 4)).unwrap();
            a.sub(ecx, esi).unwrap();
            a.rep().outsb().unwrap();
            tag(a, b"MS");
            a.mov(esi, dword_ptr(ebp + 8)).unwrap();
            dump_string(a, 0x1_0000);
            a.add(ebp, 16).unwrap();
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

/// A kernel image and the physical range `[start, end)` it occupies.
struct Kernel {
    image: Vec<u8>,
    start: u64,
    end: u64,
}

/// A flat kernel loaded by the a.out kludge fields, header flags `flags`
/// (bit 16 added). File: 0x40 bytes of junk (not loaded), the marker
/// (loaded at `KERNEL_BASE`), the 48-byte header (asking for an 80x25 text
/// mode), the code, 16 more bytes of junk past `load_end_addr`.
fn aout_kernel(flags: u32) -> Kernel {
    let header_len = 48u32;
    let code_addr = KERNEL_BASE + AOUT_MARKER.len() as u32 + header_len;
    let marker = le_u32(AOUT_MARKER, 0);
    let code = guest::code(code_addr, Some((KERNEL_BASE, marker)));
    let load_end = code_addr + code.len() as u32;
    let bss_end = load_end + KERNEL_BSS;
    let mut image = vec![0xee; 0x40];
    image.extend_from_slice(AOUT_MARKER);
    image.extend(header(
        flags | AOUT_KLUDGE,
        &[
            KERNEL_BASE + AOUT_MARKER.len() as u32,
            KERNEL_BASE,
            load_end,
            bss_end,
            code_addr,
            1,
            80,
            25,
            0,
        ],
    ));
    assert_eq!(image.len() as u32, 0x40 + 16 + header_len);
    image.extend(&code);
    image.extend([0xee; 16]);
    Kernel {
        image,
        start: KERNEL_BASE.into(),
        end: bss_end.into(),
    }
}

/// An ELF32 kernel: one segment linked at `ELF_VIRT_BASE`, loaded at
/// `KERNEL_BASE`, starting with a 12-byte header (no address fields) and
/// then the code; e_entry is the code's virtual address.
fn elf_kernel() -> Kernel {
    let mut seg = header(PAGE_ALIGN | MEMORY_INFO, &[]);
    seg.extend(guest::code(KERNEL_BASE + 12, None));
    let memsz = seg.len() as u64 + u64::from(KERNEL_BSS);
    let image = elf_image::build(
        false,
        u64::from(ELF_VIRT_BASE) + 12,
        &[(KERNEL_BASE.into(), ELF_VIRT_BASE.into(), &seg, memsz)],
    );
    // The header sits where the segment's bytes start: after the ELF
    // header and one program header, 4-byte aligned, within 8 KiB.
    assert_eq!(&image[52 + 32..52 + 32 + 4], &0x1bad_b002u32.to_le_bytes());
    Kernel {
        image,
        start: KERNEL_BASE.into(),
        end: u64::from(KERNEL_BASE) + memsz,
    }
}

/// What the guest reported.
#[derive(Debug)]
struct Seen {
    ebx: u32,
    cr0: u32,
    eax: u32,
    eflags: u32,
    /// The information structure's raw bytes.
    info: Vec<u8>,
    /// `(size, base_addr, length, type)` per entry, walked by `size`.
    mmap: Vec<(u32, u64, u64, u32)>,
    cmdline: Vec<u8>,
    boot_loader_name: Vec<u8>,
    modules: Vec<SeenModule>,
}

impl Seen {
    fn field(&self, off: usize) -> u32 {
        le_u32(&self.info, off)
    }
}

fn parse_dump(bytes: &[u8]) -> Seen {
    let mut d = Dump::new(bytes);
    d.tag(b"ES");
    let (ebx, cr0, eax, eflags) = (d.u32(), d.u32(), d.u32(), d.u32());
    d.tag(b"MI");
    let info = d.take(INFO_SIZE).to_vec();
    d.tag(b"MM");
    let mmap_len = le_u32(&info, 44) as usize;
    let mmap_bytes = d.take(mmap_len);
    let mut mmap = Vec::new();
    let mut m = Dump::new(mmap_bytes);
    while m.at < mmap_len {
        let size = m.u32();
        let entry_start = m.at;
        let (base, len, ty) = (m.u64(), m.u64(), m.u32());
        m.at = entry_start + size as usize;
        mmap.push((size, base, len, ty));
    }
    d.tag(b"CL");
    let cmdline = d.cstr().to_vec();
    d.tag(b"BL");
    let boot_loader_name = d.cstr().to_vec();
    d.tag(b"ML");
    let count = le_u32(&info, 20);
    let list: Vec<(u32, u32, u32, u32)> = (0..count)
        .map(|_| (d.u32(), d.u32(), d.u32(), d.u32()))
        .collect();
    let mut modules = Vec::new();
    for (start, end, string_addr, reserved) in list {
        d.tag(b"MD");
        let data = d.take((end - start) as usize).to_vec();
        d.tag(b"MS");
        let string = d.cstr().to_vec();
        modules.push(SeenModule {
            start: start.into(),
            size: (end - start).into(),
            string_addr: string_addr.into(),
            reserved: reserved.into(),
            data,
            string,
        });
    }
    d.tag(b"EN");
    d.assert_end();
    Seen {
        ebx,
        cr0,
        eax,
        eflags,
        info,
        mmap,
        cmdline,
        boot_loader_name,
        modules,
    }
}

/// Boots `kernel` with a command line, an initrd and a named module in
/// 64 MiB, and checks everything the guest reports.
fn boot_and_check(kernel: &Kernel) {
    const MEMORY_MIB: u64 = 64;
    let file = TempFile::with_bytes(&kernel.image);
    let modules = BootModules::new();
    let cmdline = "console=ttyS0 root=/dev/ram0 mb=1";
    let mut args = vec!["--kernel", file.path(), "--cmdline", cmdline];
    args.extend(modules.args());
    args.extend(["--memory", "64", "--timeout", "30"]);
    let run = run_self_checked(&args, &CHECKS);
    let seen = parse_dump(&run.stdout);

    // Machine state (specification 3.2): EAX magic, EBX the structure,
    // CR0 PE set and PG clear, EFLAGS VM and IF clear.
    assert_eq!(seen.eax, BOOTLOADER_MAGIC);
    assert!(in_boot_info(seen.ebx), "EBX {:#x}", seen.ebx);
    assert_eq!(seen.cr0 & 1, 1, "CR0 {:#x}: PE clear", seen.cr0);
    assert_eq!(seen.cr0 & (1 << 31), 0, "CR0 {:#x}: paging on", seen.cr0);
    assert_eq!(
        seen.eflags & ((1 << 17) | (1 << 9)),
        0,
        "EFLAGS {:#x}",
        seen.eflags
    );

    // Exactly: mem_*, cmdline, mods, mmap, boot_loader_name.
    assert_eq!(seen.field(0), INFO_REQUIRED, "flags {:#x}", seen.field(0));
    // mem_lower/mem_upper as a BIOS reports the memory there is: below
    // 640 KiB up to the EBDA (the BDA's base memory, 639 KiB), and from
    // 1 MiB to the first hole; the boot structures' small reserved ranges
    // do not shrink them.
    let layout = MemoryLayout::new(MEMORY_MIB).unwrap();
    assert_eq!(
        (seen.field(4), seen.field(8)),
        (639, 63 * 1024),
        "64 MiB: 639 KiB below the EBDA, 63 MiB above 1 MiB"
    );
    // Not provided, so zero: boot_device, syms, drives, config table, APM,
    // VBE and framebuffer fields.
    assert_eq!(seen.field(12), 0);
    assert!(seen.info[28..44].iter().all(|&b| b == 0));
    assert!(seen.info[52..64].iter().all(|&b| b == 0));
    assert!(seen.info[68..].iter().all(|&b| b == 0));

    // The memory map: each entry's size 20 (not counting itself); it covers
    // RAM, reserves the legacy hole, the EBDA and everything the kernel was
    // pointed at, and little else.
    for a in [seen.field(24), seen.field(48), seen.field(64)] {
        assert!(in_boot_info(a), "{a:#x} outside the boot info area");
    }
    assert!(seen.mmap.iter().all(|e| e.0 == 20), "{:?}", seen.mmap);
    assert_eq!(seen.field(44) as usize, 24 * seen.mmap.len());
    let map: Vec<(u64, u64, u32)> = seen.mmap.iter().map(|&(_, b, l, t)| (b, l, t)).collect();
    let at = |off: usize| u64::from(seen.field(off));
    let cmdline_end = at(16) + seen.cmdline.len() as u64 + 1;
    let name_end = at(64) + seen.boot_loader_name.len() as u64 + 1;
    let low = check_memory_map(
        &map,
        &layout,
        true,
        &[
            (u64::from(seen.ebx), u64::from(seen.ebx) + INFO_SIZE as u64),
            (at(48), at(48) + at(44)),
            (at(24), at(24) + 16 * at(20)),
            (at(16), cmdline_end),
            (at(64), name_end),
        ],
        0x1000,
    );
    assert!(
        low.iter().all(|&(s, _)| s >= 0x500),
        "the IVT and BDA are RAM: {low:x?}"
    );

    // As GRUB and QEMU: the kernel path, a space, the arguments.
    assert_eq!(
        String::from_utf8_lossy(&seen.cmdline),
        format!("{} {cmdline}", file.path())
    );
    assert_eq!(seen.boot_loader_name, BOOT_LOADER_NAME.as_bytes());
    assert!(!BOOT_LOADER_NAME.is_empty());

    let expected = modules.expected();
    assert_eq!(seen.field(20) as usize, expected.len());
    let ram: Vec<(u64, u64)> = map
        .iter()
        .filter(|e| e.2 == E820_RAM)
        .map(|e| (e.0, e.1))
        .collect();
    check_modules(&seen.modules, &expected, (kernel.start, kernel.end), &ram);
}

#[test]
fn test_multiboot_aout_kludge_kernel() {
    require_kvm();
    boot_and_check(&aout_kernel(PAGE_ALIGN | MEMORY_INFO | VIDEO_MODE));
}

#[test]
fn test_multiboot_elf32_kernel() {
    require_kvm();
    boot_and_check(&elf_kernel());
}

#[test]
fn test_multiboot_unknown_required_flag_is_refused() {
    let kernel = aout_kernel(PAGE_ALIGN | MEMORY_INFO | 1 << 5);
    let file = TempFile::with_bytes(&kernel.image);
    expect_bad_input(
        &["--kernel", file.path(), "--timeout", "30"],
        "required bit 5",
    );
}

#[test]
fn test_multiboot_bad_checksum_with_forced_format_is_refused() {
    let mut kernel = aout_kernel(PAGE_ALIGN | MEMORY_INFO);
    // The checksum word of the header at file offset 0x50.
    kernel.image[0x58] ^= 0x10;
    let file = TempFile::with_bytes(&kernel.image);
    let run = expect_bad_input(
        &[
            "--kernel",
            file.path(),
            "--format",
            "multiboot",
            "--timeout",
            "30",
        ],
        "Multiboot",
    );
    assert!(run.stderr.contains("checksum"), "{}", run.stderr);
}

#[test]
fn test_multiboot_module_too_large_names_its_size() {
    let kernel = aout_kernel(PAGE_ALIGN | MEMORY_INFO);
    let file = TempFile::with_bytes(&kernel.image);
    // 8 MiB of RAM: 7 MiB above 1 MiB, part of it taken by the kernel.
    let big = TempFile::with_bytes(&vec![0x42; 7 << 20]);
    let run = expect_bad_input(
        &[
            "--kernel",
            file.path(),
            "--initrd",
            big.path(),
            "--memory",
            "8",
            "--timeout",
            "30",
        ],
        "7340032 bytes",
    );
    assert!(run.stderr.contains("module 0"), "{}", run.stderr);
}

#[test]
fn test_multiboot_aout_load_end_past_file_is_refused() {
    let mut kernel = aout_kernel(PAGE_ALIGN | MEMORY_INFO);
    // load_end_addr (header offset 0x50 + 20) moved 1 MiB further, checksum
    // unchanged because load_end_addr is not part of it.
    let at = 0x50 + 20;
    let v = le_u32(&kernel.image, at) + (1 << 20);
    kernel.image[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let file = TempFile::with_bytes(&kernel.image);
    let run = expect_bad_input(
        &["--kernel", file.path(), "--timeout", "30"],
        "load_end_addr",
    );
    assert!(
        run.stderr.contains(&format!("{v:#x}")),
        "names the value: {}",
        run.stderr
    );
}
