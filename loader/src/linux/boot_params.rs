//! Filling the zero page (`struct boot_params`, Documentation/arch/x86/
//! zero-page.rst): the E820 map, the command line and the initrd.

use linux_loader::cmdline::Cmdline;
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, E820_MAX_ENTRIES_ZEROPAGE};
use vmm_memory::layout::CMDLINE_MAX_SIZE;
use vmm_memory::{BootPlan, MapEntry, MemoryLayout};

use super::LinuxError;

/// Page size: initrds are placed page-aligned.
const PAGE: u64 = 0x1000;

/// Fills `e820_table`/`e820_entries` with exactly `map` (the boot plan's
/// memory map).
pub fn set_e820(params: &mut boot_params, map: &[MapEntry]) -> Result<(), LinuxError> {
    if map.len() > E820_MAX_ENTRIES_ZEROPAGE {
        return Err(LinuxError::TooManyE820Entries(map.len()));
    }
    params.e820_table = [boot_e820_entry::default(); E820_MAX_ENTRIES_ZEROPAGE];
    for (slot, e) in params.e820_table.iter_mut().zip(map) {
        *slot = boot_e820_entry {
            addr: e.start,
            size: e.len,
            r#type: e.kind.e820_type(),
        };
    }
    // Cannot truncate: checked against E820_MAX_ENTRIES_ZEROPAGE (128).
    params.e820_entries = map.len() as u8;
    Ok(())
}

/// Checks `line` against the kernel's limit `max` (bytes without the NUL;
/// also bounded by the VMM's command-line area) and builds linux-loader's
/// [`Cmdline`] from it.
pub fn build_cmdline(line: &str, max: u32) -> Result<Cmdline, LinuxError> {
    let area_max = CMDLINE_MAX_SIZE - 1;
    let max = u64::from(max).min(area_max);
    // linux-loader trims surrounding whitespace; measure what is written.
    let trimmed = line.trim();
    if trimmed.len() as u64 > max {
        return Err(LinuxError::CmdlineTooLong {
            len: trimmed.len(),
            max,
        });
    }
    // `max + 1` (the NUL) fits in usize: it is at most CMDLINE_MAX_SIZE.
    let mut cmdline =
        Cmdline::new(max as usize + 1).map_err(|e| LinuxError::Cmdline(e.to_string()))?;
    cmdline
        .insert_str(trimmed)
        .map_err(|e| LinuxError::Cmdline(e.to_string()))?;
    Ok(cmdline)
}

/// The value of the last `mem=<size>` option before any ` -- `, if it
/// parses: boot.rst makes `mem=` an option to both the kernel and the boot
/// loader, bounding where an initrd may go.
pub fn mem_option(cmdline: &str) -> Option<u64> {
    cmdline
        .split_ascii_whitespace()
        .take_while(|w| *w != "--")
        .filter_map(|w| w.strip_prefix("mem="))
        .filter_map(memparse)
        .last()
}

/// The kernel's `memparse`: an integer in C notation (decimal, 0x hex, 0
/// octal) with an optional K/M/G/T/P/E suffix (case-insensitive).
fn memparse(s: &str) -> Option<u64> {
    let digits_end = s
        .find(|c: char| !c.is_ascii_hexdigit() && c != 'x' && c != 'X')
        .unwrap_or(s.len());
    let (mut num, mut suffix) = s.split_at(digits_end);
    // A trailing 'E'/'e' looks like a hex digit but is the exabyte suffix
    // unless the number is hex.
    let is_hex = num.len() > 2 && (num.starts_with("0x") || num.starts_with("0X"));
    if !is_hex && suffix.is_empty() && (num.ends_with('e') || num.ends_with('E')) {
        (num, suffix) = s.split_at(s.len() - 1);
    }
    let value = if is_hex {
        u64::from_str_radix(&num[2..], 16).ok()?
    } else if num.len() > 1 && num.starts_with('0') {
        u64::from_str_radix(&num[1..], 8).ok()?
    } else {
        num.parse::<u64>().ok()?
    };
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        "e" => 60,
        _ => return None,
    };
    value.checked_mul(1u64 << shift)
}

/// Where an initrd of `size` bytes goes: page-aligned, as high as possible
/// below `min(initrd_addr_max + 1, end of RAM below 4 GiB, mem=)`, not
/// below `kernel_end` (the end of everything the kernel occupies while it
/// starts), and below any boot structure of `plan` in the way.
pub fn place_initrd(
    layout: &MemoryLayout,
    plan: &BootPlan,
    size: u64,
    kernel_end: u64,
    initrd_addr_max: u32,
    mem_limit: Option<u64>,
) -> Result<u64, LinuxError> {
    let top = (u64::from(initrd_addr_max) + 1)
        .min(layout.low_ram_end())
        .min(mem_limit.unwrap_or(u64::MAX));
    let too_large = || LinuxError::InitrdTooLarge {
        size,
        kernel_end,
        top,
    };
    let mut start = top.checked_sub(size).ok_or_else(too_large)? & !(PAGE - 1);
    // Structures are placed low and few: step below each one in the way.
    while let Some(s) = plan.overlapping(start, size) {
        start = s.start.checked_sub(size).ok_or_else(too_large)? & !(PAGE - 1);
    }
    if start < kernel_end || !layout.contains_range(vm_memory::GuestAddress(start), size) {
        return Err(too_large());
    }
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_memory::layout::MIB;

    #[test]
    fn test_e820_equals_the_map() {
        for mib in [1, 64, 3072, 5000] {
            let layout = MemoryLayout::with_phys_bits(mib, 40).unwrap();
            let mut p = boot_params::default();
            let map = layout.firmware_map();
            set_e820(&mut p, &map).unwrap();
            assert_eq!(usize::from(p.e820_entries), map.len());
            for (i, e) in map.iter().enumerate() {
                let t = p.e820_table[i];
                assert_eq!(
                    ({ t.addr }, { t.size }, { t.r#type }),
                    (e.start, e.len, e.kind.e820_type())
                );
            }
            assert!(p.e820_table[map.len()..].iter().all(|t| { t.size } == 0));
        }
    }

    #[test]
    fn test_cmdline_limit_names_both_lengths() {
        assert!(build_cmdline(&"a".repeat(255), 255).is_ok());
        let e = build_cmdline(&"a".repeat(256), 255).unwrap_err();
        assert!(matches!(
            e,
            LinuxError::CmdlineTooLong { len: 256, max: 255 }
        ));
        assert!(
            e.to_string().contains("256") && e.to_string().contains("255"),
            "{e}"
        );
        // The VMM's area bounds it too, whatever the header says.
        let e = build_cmdline(&"a".repeat(70_000), u32::MAX).unwrap_err();
        assert!(matches!(e, LinuxError::CmdlineTooLong { max, .. } if max == CMDLINE_MAX_SIZE - 1));
        let e = build_cmdline("caf\u{e9}", 100).unwrap_err();
        assert!(matches!(e, LinuxError::Cmdline(_)), "{e}");
        let c = build_cmdline("  console=ttyS0 -- init  ", 100).unwrap();
        assert_eq!(
            c.as_cstring().unwrap().to_str().unwrap(),
            "console=ttyS0 -- init"
        );
        assert_eq!(
            build_cmdline("", 0)
                .unwrap()
                .as_cstring()
                .unwrap()
                .as_bytes(),
            b""
        );
    }

    #[test]
    fn test_mem_option_parses_like_memparse() {
        assert_eq!(mem_option("console=ttyS0 mem=64M"), Some(64 * MIB));
        assert_eq!(mem_option("mem=0x1000000"), Some(0x100_0000));
        assert_eq!(mem_option("mem=1g mem=512k"), Some(512 << 10));
        assert_eq!(mem_option("mem=010"), Some(8));
        assert_eq!(mem_option("mem=2E"), Some(2u64 << 60));
        assert_eq!(mem_option("mem=nopentium"), None);
        assert_eq!(mem_option("memmap=1M mymem=5"), None);
        assert_eq!(mem_option("ro -- mem=64M"), None);
        assert_eq!(mem_option("mem=99999999999E"), None);
    }

    #[test]
    fn test_initrd_goes_high_page_aligned_and_must_fit() {
        let none = BootPlan::default();
        let layout = MemoryLayout::with_phys_bits(64, 40).unwrap();
        let a = place_initrd(&layout, &none, 5000, 2 * MIB, 0x7fff_ffff, None).unwrap();
        assert_eq!(a, 64 * MIB - 0x2000);
        assert_eq!(a % PAGE, 0);
        // initrd_addr_max is the highest byte it may occupy.
        let a = place_initrd(
            &layout,
            &none,
            0x2_0000,
            2 * MIB,
            0x37ff_ffff.min(16 * MIB as u32 - 1),
            None,
        )
        .unwrap();
        assert_eq!(a, 16 * MIB - 0x2_0000);
        // mem= lowers the ceiling.
        let a = place_initrd(&layout, &none, 4096, 2 * MIB, 0x7fff_ffff, Some(32 * MIB)).unwrap();
        assert_eq!(a, 32 * MIB - 4096);
        // Exactly fills the room above the kernel.
        let a = place_initrd(&layout, &none, 62 * MIB, 2 * MIB, 0x7fff_ffff, None).unwrap();
        assert_eq!(a, 2 * MIB);
        let e = place_initrd(&layout, &none, 62 * MIB + 1, 2 * MIB, 0x7fff_ffff, None).unwrap_err();
        assert!(e.to_string().contains(&(62 * MIB + 1).to_string()), "{e}");
        let e = place_initrd(&layout, &none, u64::MAX, 2 * MIB, 0x7fff_ffff, None).unwrap_err();
        assert!(matches!(e, LinuxError::InitrdTooLarge { .. }));
        // A large guest: the initrd stays below the 32-bit hole.
        let big = MemoryLayout::with_phys_bits(5000, 40).unwrap();
        let a = place_initrd(&big, &none, 4096, 2 * MIB, u32::MAX, None).unwrap();
        assert_eq!(a + 4096, big.low_ram_end());
    }

    #[test]
    fn test_initrd_steps_below_boot_structures() {
        let layout = MemoryLayout::with_phys_bits(64, 40).unwrap();
        // A command line placed at the very top of RAM (the image took all
        // the low places).
        let plan = vmm_memory::boot_plan::plan(
            &layout,
            &[vmm_memory::Occupied::new("the image", 0, 0x3ff_f000)],
            &vmm_memory::Needs {
                cmdline: Some(0x10),
                ..Default::default()
            },
        )
        .unwrap();
        let cmdline = plan.get(vmm_memory::Structure::Cmdline).unwrap();
        assert_eq!(cmdline.start, 0x3ff_f000);
        let a = place_initrd(&layout, &plan, 0x1000, 2 * MIB, 0x7fff_ffff, None).unwrap();
        assert!(a + 0x1000 <= cmdline.start, "initrd at {a:#x}");
        assert_eq!(a, cmdline.start - 0x1000);
        // No room below it above the kernel: refused.
        let e = place_initrd(&layout, &plan, 0x10_0000, 0x3f8_0000, 0x7fff_ffff, None).unwrap_err();
        assert!(matches!(e, LinuxError::InitrdTooLarge { .. }), "{e}");
    }
}
