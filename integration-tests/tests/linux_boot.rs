//! Linux x86 64-bit boot protocol end to end: a test kernel built here is
//! started as a vmlinux, inside synthesized bzImages (every codec with an
//! encoder, decompressed on the host and found by auto-detection) and
//! through a bzImage's own 64-bit entry (`--bzimage-entry`).
//!
//! The kernel checks what the protocol promises on its own (that it runs
//! 64-bit code, `boot_flag`, "HdrS", `type_of_loader`, a sane E820 count
//! and types, a command line pointer, a page-aligned initrd; one debug-exit
//! code per failed check), then dumps RSI, CR0, CR4, the whole zero page, the
//! NUL-terminated command line and the initrd bytes with `rep outsb` to the
//! debug console. The host parses the dump and asserts exact values: the
//! E820 table covers the RAM and reserves the legacy hole, the EBDA, the
//! zero page and the command line (and little else), the command line and
//! initrd bytes are what it passed, the initrd is page-aligned RAM above the
//! kernel, and the setup header is the image's with the loader's fields.
//! Bad input through the CLI ends with status 2 and a message naming it.
//! The kernel cache is exercised end to end: a first start fills it, a
//! second maps the kernel from it, a changed file is never served the old
//! entry.

use std::time::Duration;

use integration_tests::boot_protocol::{check_memory_map, E820_RAM};
use integration_tests::{
    expect_bad_input, le_u32, le_u64, require_kvm, run_self_checked, Dump, TempFile,
};
use vmm_core::loader::elf::test_image::{build, build_paged};
use vmm_core::loader::linux::cache::SETTLE;
use vmm_core::loader::linux::test_image::{bzimage, compress, BzImageSpec, Codec};
use vmm_core::loader::linux::DEFAULT_CMDLINE;
use vmm_core::memory::layout::ZERO_PAGE_START;
use vmm_core::memory::MemoryLayout;

const MEM_MIB: u64 = 64;
const MEM: &str = "64";
/// Where the vmlinux test kernel is linked and loaded.
const KERNEL_BASE: u64 = 0x10_0000;
/// Memory the vmlinux occupies (code plus BSS), so the kernel's end is not
/// its file size.
const KERNEL_MEMSZ: u64 = 0x1_2345;
/// The guest's failure codes, written to the debug-exit port.
const CHECKS: [&str; 8] = [
    "64-bit immediate did not survive: not running 64-bit code",
    "boot_flag is not 0xaa55",
    "header is not \"HdrS\"",
    "type_of_loader is not 0xff",
    "e820_entries is 0 or above 128",
    "an e820 entry's type is neither 1 (RAM) nor 2 (reserved)",
    "cmd_line_ptr is 0",
    "ramdisk_image is not page-aligned",
];

/// The test kernel's code (kept apart: `code_asm::*` brings register names
/// into scope).
mod guest {
    use super::CHECKS;
    use integration_tests::assemble;
    use integration_tests::code_asm::*;
    use integration_tests::guest_asm::tag;

    /// The 64-bit test kernel linked at `base`.
    pub fn kernel(base: u64) -> Vec<u8> {
        assemble(64, base, |a| {
            let mut fails: Vec<CodeLabel> = (0..CHECKS.len()).map(|_| a.create_label()).collect();
            // The protocol gives no stack: one below the legacy hole, clear
            // of the kernel and the boot data.
            a.mov(rsp, 0x8_0000u64).unwrap();
            a.cld().unwrap();
            a.mov(r15, rsi).unwrap();
            // Only 64-bit code keeps all 64 bits of a mov immediate.
            a.mov(rax, 0x1_2345_6789u64).unwrap();
            a.shr(rax, 32).unwrap();
            a.cmp(rax, 1).unwrap();
            a.jne(fails[0]).unwrap();
            a.cmp(word_ptr(r15 + 0x1fe), 0xaa55u32 as i32).unwrap();
            a.jne(fails[1]).unwrap();
            a.cmp(dword_ptr(r15 + 0x202), 0x5372_6448).unwrap();
            a.jne(fails[2]).unwrap();
            a.cmp(byte_ptr(r15 + 0x210), 0xff).unwrap();
            a.jne(fails[3]).unwrap();
            a.movzx(ecx, byte_ptr(r15 + 0x1e8)).unwrap();
            a.test(ecx, ecx).unwrap();
            a.jz(fails[4]).unwrap();
            a.cmp(ecx, 128).unwrap();
            a.ja(fails[4]).unwrap();
            a.lea(rbx, qword_ptr(r15 + 0x2d0)).unwrap();
            let mut next = a.create_label();
            let mut ok = a.create_label();
            a.set_label(&mut next).unwrap();
            a.mov(eax, dword_ptr(rbx + 16)).unwrap();
            a.cmp(eax, 1).unwrap();
            a.je(ok).unwrap();
            a.cmp(eax, 2).unwrap();
            a.jne(fails[5]).unwrap();
            a.set_label(&mut ok).unwrap();
            a.add(rbx, 20).unwrap();
            a.dec(ecx).unwrap();
            a.jnz(next).unwrap();
            a.cmp(dword_ptr(r15 + 0x228), 0).unwrap();
            a.je(fails[6]).unwrap();
            a.test(dword_ptr(r15 + 0x218), 0xfff).unwrap();
            a.jnz(fails[7]).unwrap();

            a.mov(edx, 0xe9).unwrap();
            // Entry state: RSI, CR0, CR4.
            tag(a, b"ES");
            a.mov(rax, cr4).unwrap();
            a.push(rax).unwrap();
            a.mov(rax, cr0).unwrap();
            a.push(rax).unwrap();
            a.push(r15).unwrap();
            a.mov(rsi, rsp).unwrap();
            a.mov(ecx, 24).unwrap();
            a.rep().outsb().unwrap();
            a.add(rsp, 24).unwrap();
            tag(a, b"ZP");
            a.mov(rsi, r15).unwrap();
            a.mov(ecx, 4096).unwrap();
            a.rep().outsb().unwrap();
            // The command line with its NUL.
            tag(a, b"CL");
            a.mov(esi, dword_ptr(r15 + 0x228)).unwrap();
            a.mov(rdi, rsi).unwrap();
            a.xor(eax, eax).unwrap();
            a.mov(ecx, 0x1_0000).unwrap();
            a.repne().scasb().unwrap();
            a.mov(rcx, rdi).unwrap();
            a.sub(rcx, rsi).unwrap();
            a.rep().outsb().unwrap();
            tag(a, b"RD");
            a.mov(esi, dword_ptr(r15 + 0x218)).unwrap();
            a.mov(ecx, dword_ptr(r15 + 0x21c)).unwrap();
            a.rep().outsb().unwrap();
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

/// The test kernel as an ELF64 vmlinux at [`KERNEL_BASE`].
fn vmlinux() -> Vec<u8> {
    let code = guest::kernel(KERNEL_BASE);
    build(
        true,
        KERNEL_BASE,
        &[(KERNEL_BASE, KERNEL_BASE, &code, KERNEL_MEMSZ)],
    )
}

/// What the guest reported.
#[derive(Debug)]
struct Seen {
    rsi: u64,
    cr0: u64,
    cr4: u64,
    zero_page: Vec<u8>,
    /// The command line as found, without its NUL.
    cmdline: Vec<u8>,
    initrd: Vec<u8>,
}

impl Seen {
    fn e820(&self) -> Vec<(u64, u64, u32)> {
        let n = usize::from(self.zero_page[0x1e8]);
        (0..n)
            .map(|i| {
                let at = 0x2d0 + 20 * i;
                (
                    le_u64(&self.zero_page, at),
                    le_u64(&self.zero_page, at + 8),
                    le_u32(&self.zero_page, at + 16),
                )
            })
            .collect()
    }

    fn ramdisk(&self) -> (u64, u64) {
        (
            u64::from(le_u32(&self.zero_page, 0x218)),
            u64::from(le_u32(&self.zero_page, 0x21c)),
        )
    }
}

fn parse_dump(bytes: &[u8]) -> Seen {
    let mut d = Dump::new(bytes);
    d.tag(b"ES");
    let (rsi, cr0, cr4) = (d.u64(), d.u64(), d.u64());
    d.tag(b"ZP");
    let zero_page = d.take(4096).to_vec();
    d.tag(b"CL");
    let cmdline = d.cstr().to_vec();
    d.tag(b"RD");
    let size = le_u32(&zero_page, 0x21c) as usize;
    let initrd = d.take(size).to_vec();
    d.tag(b"EN");
    d.assert_end();
    Seen {
        rsi,
        cr0,
        cr4,
        zero_page,
        cmdline,
        initrd,
    }
}

/// Boots `kernel` with `extra` arguments; returns what the guest saw.
fn boot(kernel: &[u8], extra: &[&str]) -> Seen {
    require_kvm();
    let k = TempFile::with_bytes(kernel);
    let mut args = vec!["--kernel", k.path(), "--memory", MEM, "--timeout", "20"];
    args.extend_from_slice(extra);
    let run = run_self_checked(&args, &CHECKS);
    parse_dump(&run.stdout)
}

/// The protocol's promises every boot must keep.
fn check_common(seen: &Seen, cmdline: &str, initrd: Option<&[u8]>, kernel_end: u64) {
    let layout = MemoryLayout::new(MEM_MIB).unwrap();
    assert_eq!(seen.rsi, ZERO_PAGE_START.0, "RSI must hold the zero page");
    assert_ne!(seen.cr0 & (1 << 31), 0, "paging is on (CR0.PG)");
    assert_ne!(seen.cr4 & (1 << 5), 0, "PAE is on (CR4.PAE)");
    assert_eq!(seen.zero_page[0x210], 0xff, "type_of_loader");
    let ptr = u64::from(le_u32(&seen.zero_page, 0x228));
    // The zero page, the command line, the GDT and the page tables: the
    // structures a long-mode Linux entry needs, 29 KiB or so.
    let e820 = seen.e820();
    check_memory_map(
        &e820,
        &layout,
        true,
        &[
            (seen.rsi, seen.rsi + 4096),
            (ptr, ptr + seen.cmdline.len() as u64 + 1),
        ],
        0x8000,
    );
    assert!(
        ptr < 0xa_0000 && layout.contains_range(vm_memory::GuestAddress(ptr), 4096),
        "cmd_line_ptr {ptr:#x} must be low RAM below 0xa0000"
    );
    assert_eq!(String::from_utf8_lossy(&seen.cmdline), cmdline);
    let (addr, size) = seen.ramdisk();
    match initrd {
        None => assert_eq!((addr, size), (0, 0)),
        Some(data) => {
            assert_eq!(size, data.len() as u64);
            assert_eq!(seen.initrd, data, "initrd bytes differ");
            assert_eq!(addr % 4096, 0, "initrd at {addr:#x} is not page-aligned");
            assert!(
                layout.contains_range(vm_memory::GuestAddress(addr), size),
                "initrd [{addr:#x}, +{size:#x}) is not RAM"
            );
            assert!(
                addr >= kernel_end,
                "initrd at {addr:#x} overlaps the kernel"
            );
            assert!(
                e820.iter()
                    .any(|&(s, l, t)| t == E820_RAM && s <= addr && addr + size <= s + l),
                "initrd [{addr:#x}, +{size:#x}) is not in a usable E820 entry"
            );
            // As high as possible: no page-aligned start fits above it.
            assert!(addr + size + 4096 > layout.low_ram_end());
        }
    }
}

fn initrd_bytes() -> Vec<u8> {
    (0..3000u32).map(|i| (i * 31 + 7) as u8).collect()
}

#[test]
fn test_linux_vmlinux_boot_protocol() {
    let rd = initrd_bytes();
    let rd_file = TempFile::with_bytes(&rd);
    let cmdline = "console=ttyS0 root=/dev/ram0 rdinit=/init quiet";
    let seen = boot(
        &vmlinux(),
        &[
            "--format",
            "linux",
            "--cmdline",
            cmdline,
            "--initrd",
            rd_file.path(),
        ],
    );
    check_common(&seen, cmdline, Some(&rd), KERNEL_BASE + KERNEL_MEMSZ);
    // The header made up for a vmlinux.
    assert_eq!(&seen.zero_page[0x1fe..0x200], &[0x55, 0xaa]);
    assert_eq!(&seen.zero_page[0x202..0x206], b"HdrS");
}

#[test]
fn test_linux_vmlinux_default_cmdline_without_initrd() {
    let seen = boot(&vmlinux(), &["--format", "linux"]);
    check_common(&seen, DEFAULT_CMDLINE, None, KERNEL_BASE + KERNEL_MEMSZ);
    assert!(DEFAULT_CMDLINE.contains("console=ttyS0"));
}

/// The synthesized bzImage's header as the kernel must see it: the image's
/// bytes from 0x1f1 to the header's end, with the loader's fields written.
fn check_header(seen: &Seen, img: &[u8], code32_start: Option<u32>) {
    let end = 0x202 + usize::from(img[0x201]);
    let mut want = img[0x1f1..end].to_vec();
    let mut put =
        |off: usize, v: &[u8]| want[off - 0x1f1..off - 0x1f1 + v.len()].copy_from_slice(v);
    put(0x210, &[0xff]);
    put(0x218, &seen.zero_page[0x218..0x220]);
    put(0x228, &seen.zero_page[0x228..0x22c]);
    if let Some(c) = code32_start {
        put(0x214, &c.to_le_bytes());
    }
    assert_eq!(&seen.zero_page[0x1f1..end], &want[..], "setup header");
    assert!(seen.zero_page[end..0x290].iter().all(|&b| b == 0));
}

#[test]
fn test_linux_bzimage_host_decompressed_every_codec() {
    let elf = vmlinux();
    let rd = initrd_bytes();
    let rd_file = TempFile::with_bytes(&rd);
    let mut booted = Vec::new();
    for codec in Codec::ALL {
        let Some(payload) = compress(codec, &elf) else {
            continue;
        };
        let img = bzimage(&BzImageSpec::default(), &payload);
        let cmdline = format!("console=ttyS0 codec={codec}");
        // No --format: the bzImage must be recognised by its header.
        let seen = boot(&img, &["--cmdline", &cmdline, "--initrd", rd_file.path()]);
        check_common(&seen, &cmdline, Some(&rd), KERNEL_BASE + KERNEL_MEMSZ);
        check_header(&seen, &img, None);
        booted.push(codec);
    }
    assert!(
        booted.contains(&Codec::Gzip)
            && booted.contains(&Codec::Zstd)
            && booted.contains(&Codec::Xz)
    );
}

/// The test kernel as a vmlinux laid out like a linked one (file offset
/// congruent to the address modulo 4 KiB), its code padded to `pages`
/// pages so that whole pages, the entry among them, can be mapped.
fn paged_vmlinux(pages: usize) -> Vec<u8> {
    let mut code = guest::kernel(KERNEL_BASE);
    assert!(code.len() <= pages * 4096 && pages * 4096 <= KERNEL_MEMSZ as usize);
    code.resize(pages * 4096, 0xcc);
    build_paged(
        true,
        KERNEL_BASE,
        &[(KERNEL_BASE, KERNEL_BASE, &code, KERNEL_MEMSZ)],
    )
}

#[test]
fn test_linux_bzimage_kernel_cache_fill_hit_and_changed_file() {
    require_kvm();
    let dir = std::env::temp_dir().join(format!("vmm-it-kernel-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_s = dir.to_str().unwrap().to_string();
    let rd = initrd_bytes();
    let rd_file = TempFile::with_bytes(&rd);
    let img = |pages| {
        let payload = compress(Codec::Gzip, &paged_vmlinux(pages)).unwrap();
        bzimage(&BzImageSpec::default(), &payload)
    };
    let k = TempFile::with_bytes(&img(3));
    let cmdline = "console=ttyS0 cached";
    let boot_logged = |cache_args: &[&str], want: &[&str]| {
        // A file changed within SETTLE is not cached: wait it out.
        std::thread::sleep(SETTLE + Duration::from_millis(100));
        let mut args = vec![
            "-v",
            "--kernel",
            k.path(),
            "--memory",
            MEM,
            "--timeout",
            "20",
        ];
        args.extend_from_slice(&["--cmdline", cmdline, "--initrd", rd_file.path()]);
        args.extend_from_slice(cache_args);
        let run = run_self_checked(&args, &CHECKS);
        for w in want {
            assert!(
                run.stderr.contains(w),
                "{args:?}: no {w:?} in {}",
                run.stderr
            );
        }
        let seen = parse_dump(&run.stdout);
        check_common(&seen, cmdline, Some(&rd), KERNEL_BASE + KERNEL_MEMSZ);
        (run.stdout, run.stderr)
    };
    let with_cache = ["--kernel-cache", dir_s.as_str()];
    let (filled, _) = boot_logged(
        &with_cache,
        &["decompressed on the host into the kernel cache"],
    );
    // 3 pages mapped, the entry point among them; only the guest's
    // report is compared, byte for byte.
    let (hit, _) = boot_logged(
        &with_cache,
        &["from the kernel cache", "12288 bytes mapped"],
    );
    assert!(
        hit == filled,
        "a cache hit must give the guest what a fill did"
    );
    let entries = || std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(entries(), 1);

    // Rewritten in place: a new key, so a fill, never the stale entry.
    std::fs::write(k.path(), img(4)).unwrap();
    boot_logged(&with_cache, &["into the kernel cache"]);
    boot_logged(&with_cache, &["16384 bytes mapped"]);
    assert_eq!(entries(), 2);

    // --no-kernel-cache neither reads nor writes it.
    let (_, log) = boot_logged(&["--no-kernel-cache"], &["decompressed on the host"]);
    assert!(!log.contains("kernel cache"), "{log}");
    assert_eq!(entries(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn test_linux_bzimage_own_64bit_entry() {
    // The protected-mode part: 0x200 bytes, then the kernel at its 64-bit
    // entry (load address + 0x200); pref_address says where it loads.
    let load = 0x20_0000u64;
    let mut pm = vec![0xccu8; 0x200];
    pm.extend_from_slice(&guest::kernel(load + 0x200));
    let spec = BzImageSpec {
        pm_code: pm,
        pref_address: load,
        init_size: 0x8_0000,
        ..Default::default()
    };
    let img = bzimage(&spec, b"never decompressed on the host");
    let rd = initrd_bytes();
    let rd_file = TempFile::with_bytes(&rd);
    let seen = boot(&img, &["--bzimage-entry", "--initrd", rd_file.path()]);
    check_common(&seen, DEFAULT_CMDLINE, Some(&rd), load + 0x8_0000);
    check_header(&seen, &img, Some(load as u32));
}

#[test]
fn test_linux_bad_input_through_the_cli() {
    let gz = compress(Codec::Gzip, &vmlinux()).unwrap();
    let spec = BzImageSpec::default();

    let unknown = TempFile::with_bytes(&bzimage(&spec, b"\xde\xad\xbe\xefpayload"));
    expect_bad_input(
        &["--kernel", unknown.path(), "--memory", MEM],
        "de ad be ef",
    );

    let old = TempFile::with_bytes(&bzimage(
        &BzImageSpec {
            version: 0x0205,
            ..spec.clone()
        },
        &gz,
    ));
    expect_bad_input(&["--kernel", old.path(), "--memory", MEM], "2.05");

    let short = TempFile::with_bytes(&bzimage(
        &BzImageSpec {
            cmdline_size: 20,
            ..spec.clone()
        },
        &gz,
    ));
    let long = "x".repeat(21);
    let out = expect_bad_input(
        &[
            "--kernel",
            short.path(),
            "--memory",
            MEM,
            "--cmdline",
            &long,
        ],
        "21 bytes",
    );
    assert!(out.stderr.contains("at most 20"), "{}", out.stderr);

    // 4 MiB of RAM, the kernel at 1 MiB: 3.5 MiB cannot go above it.
    let kernel = TempFile::with_bytes(&bzimage(&spec, &gz));
    let big = 3584 * 1024;
    let rd = TempFile::with_bytes(&vec![0u8; big]);
    expect_bad_input(
        &[
            "--kernel",
            kernel.path(),
            "--memory",
            "4",
            "--initrd",
            rd.path(),
        ],
        &format!("initrd of {big} bytes"),
    );

    let corrupt = {
        let mut p = gz.clone();
        let mid = p.len() / 2;
        p[mid] ^= 0xff;
        TempFile::with_bytes(&bzimage(&spec, &p))
    };
    expect_bad_input(
        &["--kernel", corrupt.path(), "--memory", MEM],
        "corrupt gzip",
    );

    let elf = vmlinux();
    let truncated = TempFile::with_bytes(&elf[..elf.len() - 16]);
    expect_bad_input(
        &[
            "--kernel",
            truncated.path(),
            "--format",
            "linux",
            "--memory",
            MEM,
        ],
        "vmlinux",
    );
}
