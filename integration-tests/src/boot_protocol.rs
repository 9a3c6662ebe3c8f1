//! What the boot-protocol tests (Multiboot, PVH, Linux) share: the modules
//! they pass, and the checks on where the VMM put them and its boot data.

use vmm_core::memory::layout::{BOOT_INFO_MAX_SIZE, BOOT_INFO_START};
use vmm_core::memory::MemoryLayout;

use crate::pattern::xorshift_bytes;
use crate::temp_file::TempFile;

/// Whether `addr` lies where the VMM writes boot information for an image
/// that leaves its preferred place free (as the tests' kernels do).
pub fn in_boot_info(addr: impl Into<u64>) -> bool {
    (BOOT_INFO_START.0..BOOT_INFO_START.0 + BOOT_INFO_MAX_SIZE).contains(&addr.into())
}

/// The E820 type of usable RAM.
pub const E820_RAM: u32 = 1;
/// The E820 type of reserved memory.
pub const E820_RESERVED: u32 = 2;

/// Checks a memory map a guest was given, `(start, length, type)` per
/// entry, against what the VMM promises: sorted, covering exactly the RAM
/// of `layout`, RAM or reserved only; the legacy hole `[0xa0000, 1 MiB)`
/// reserved, with `pc` the EBDA below it (`[0x9fc00, 0xa0000)`) too; each
/// range of `must_reserve` (`[start, end)`: the structures the guest was
/// pointed at) inside a reserved entry; and no more than `max_low` bytes
/// reserved below the EBDA (the boot structures are sized to what they
/// hold). Returns the reserved ranges below 640 KiB, `[start, end)`.
pub fn check_memory_map(
    map: &[(u64, u64, u32)],
    layout: &MemoryLayout,
    pc: bool,
    must_reserve: &[(u64, u64)],
    max_low: u64,
) -> Vec<(u64, u64)> {
    assert!(!map.is_empty());
    for w in map.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0, "entries out of order: {map:x?}");
    }
    let total: u64 = map.iter().map(|e| e.1).sum();
    assert_eq!(
        total,
        layout.size(),
        "the map does not add up to RAM: {map:x?}"
    );
    for &(start, len, kind) in map {
        assert!(
            layout.contains_range(vm_memory::GuestAddress(start), len),
            "[{start:#x}, +{len:#x}) is not RAM"
        );
        assert!(
            kind == E820_RAM || kind == E820_RESERVED,
            "type {kind} at {start:#x}"
        );
    }
    let reserved = |from: u64, to: u64| {
        map.iter()
            .any(|&(s, l, t)| t == E820_RESERVED && s <= from && to <= s + l)
    };
    assert!(
        reserved(0xa_0000, 0x10_0000),
        "legacy hole not reserved: {map:x?}"
    );
    if pc {
        assert!(reserved(0x9_fc00, 0xa_0000), "EBDA not reserved: {map:x?}");
    }
    for &(from, to) in must_reserve {
        assert!(
            reserved(from, to),
            "[{from:#x}, {to:#x}) is not reserved: {map:x?}"
        );
    }
    let low: Vec<(u64, u64)> = map
        .iter()
        .filter(|&&(s, _, t)| t == E820_RESERVED && s < 0xa_0000)
        .map(|&(s, l, _)| (s, (s + l).min(0xa_0000)))
        .collect();
    let low_bytes: u64 = low
        .iter()
        .map(|&(s, e)| e.min(0x9_fc00).saturating_sub(s))
        .sum();
    assert!(
        low_bytes <= max_low,
        "{low_bytes:#x} bytes reserved below the EBDA, more than {max_low:#x}: {map:x?}"
    );
    assert_eq!(map[0].0, 0, "the map starts at 0");
    assert_eq!(map[0].2, E820_RAM, "the IVT and BDA stay RAM: {map:x?}");
    low
}

/// A module's bytes: a pattern that a misplaced or shifted copy would not
/// reproduce, different for each `seed`.
pub fn module_bytes(len: usize, seed: u32) -> Vec<u8> {
    xorshift_bytes(len, seed.wrapping_mul(2_654_435_761) | 1)
}

/// The two modules the Multiboot and PVH tests pass: `--initrd` (module 0,
/// whose string is its path) and a `--module` whose string has a comma.
#[derive(Debug)]
pub struct BootModules {
    initrd_data: Vec<u8>,
    module_data: Vec<u8>,
    initrd: TempFile,
    module_arg: String,
    _module: TempFile,
}

impl Default for BootModules {
    fn default() -> Self {
        Self::new()
    }
}

impl BootModules {
    /// The string of the second module.
    pub const MODULE_STRING: &'static str = "second module, with a comma";

    /// Writes both modules (3001 and 333 bytes) to temporary files.
    pub fn new() -> Self {
        let initrd_data = module_bytes(3001, 1);
        let module_data = module_bytes(333, 2);
        let initrd = TempFile::with_bytes(&initrd_data);
        let module = TempFile::with_bytes(&module_data);
        let module_arg = format!("{},{}", module.path(), Self::MODULE_STRING);
        BootModules {
            initrd_data,
            module_data,
            initrd,
            module_arg,
            _module: module,
        }
    }

    /// `--initrd PATH --module PATH,STRING`.
    pub fn args(&self) -> [&str; 4] {
        ["--initrd", self.initrd.path(), "--module", &self.module_arg]
    }

    /// Each module's data and string, in order.
    pub fn expected(&self) -> [(&[u8], &str); 2] {
        [
            (&self.initrd_data, self.initrd.path()),
            (&self.module_data, Self::MODULE_STRING),
        ]
    }
}

/// A module list entry as a guest reported it, and what it found at the
/// entry's addresses.
#[derive(Debug)]
pub struct SeenModule {
    /// Where the module starts.
    pub start: u64,
    /// Its size in bytes.
    pub size: u64,
    /// Where its string is.
    pub string_addr: u64,
    /// The entry's reserved field.
    pub reserved: u64,
    /// The bytes at `[start, start + size)`.
    pub data: Vec<u8>,
    /// The NUL-terminated string at `string_addr` (without the NUL).
    pub string: Vec<u8>,
}

/// Checks the modules a guest saw are `expected` (data and string each, in
/// order): each page-aligned, after the one before it, clear of the kernel
/// at `[kernel.0, kernel.1)`, inside one of the RAM ranges `ram` (`(start,
/// len)`: the usable entries of the memory map the guest got, which
/// reserves the boot structures), its reserved field 0 and its string in
/// the boot info area. The first starts at the first page boundary after
/// the kernel, which must not end on one (so the alignment is the loader's
/// doing).
pub fn check_modules(
    seen: &[SeenModule],
    expected: &[(&[u8], &str)],
    kernel: (u64, u64),
    ram: &[(u64, u64)],
) {
    let (kernel_start, kernel_end) = kernel;
    assert_eq!(seen.len(), expected.len());
    let mut prev_end = kernel_end;
    for (i, (m, (want, name))) in seen.iter().zip(expected).enumerate() {
        let (start, size) = (m.start, m.size);
        let end = start + size;
        assert!(
            start.is_multiple_of(0x1000),
            "module {i} at {start:#x} not page-aligned"
        );
        assert!(
            start >= prev_end,
            "module {i} at {start:#x} overlaps what precedes it (ends {prev_end:#x})"
        );
        assert!(
            start >= kernel_end || end <= kernel_start,
            "module {i} over the kernel"
        );
        assert!(
            ram.iter().any(|&(a, len)| start >= a && end <= a + len),
            "module {i} [{start:#x}, {end:#x}) not in a RAM entry"
        );
        assert_eq!(size, want.len() as u64, "module {i} size");
        assert_eq!(m.data.as_slice(), *want, "module {i} bytes");
        assert_eq!(m.reserved, 0);
        assert!(
            in_boot_info(m.string_addr),
            "module {i} string at {:#x}",
            m.string_addr
        );
        assert_eq!(m.string.as_slice(), name.as_bytes(), "module {i} string");
        prev_end = end;
    }
    assert_ne!(kernel_end % 0x1000, 0, "the kernel ends on a page boundary");
    assert_eq!(seen[0].start, kernel_end.div_ceil(0x1000) * 0x1000);
}
