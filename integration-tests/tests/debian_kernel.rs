//! A real kernel nobody here wrote: Debian's cloud kernel bzImage, fetched by
//! scripts/fetch-debian-kernel.sh (scripts/test.sh runs it). Its early boot
//! log over the UART must show our command line and our memory map (RAM,
//! the legacy hole and EBDA reserved, the boot structures reserved and
//! nothing else).
//! It cannot reach userspace on these machines (see the notes), so the run is
//! stopped once the e820 map has been printed.

use std::time::Duration;

use integration_tests::boot_protocol::{check_memory_map, E820_RAM, E820_RESERVED};
use integration_tests::{require_kvm, run_vmm_until, workspace_root};
use vmm_core::memory::MemoryLayout;

const MEMORY_MIB: u64 = 128;
const CMDLINE: &str = "console=ttyS0 earlyprintk=serial,ttyS0,115200 reboot=k panic=-1";

/// A `BIOS-e820: [mem 0x...-0x...] usable` line as `(start, length,
/// type)`.
fn parse_e820_line(line: &str) -> Option<(u64, u64, u32)> {
    let rest = &line[line.find("BIOS-e820: [mem ")? + "BIOS-e820: [mem ".len()..];
    let (range, kind) = rest.split_once("] ")?;
    let (a, b) = range.split_once('-')?;
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    let (start, last) = (hex(a)?, hex(b)?);
    let kind = match kind.trim() {
        "usable" => E820_RAM,
        "reserved" => E820_RESERVED,
        _ => return None,
    };
    Some((start, last - start + 1, kind))
}

#[test]
fn test_debian_kernel_prints_banner_cmdline_and_our_e820_map() {
    require_kvm();
    let kernel = workspace_root().join("target/debian-kernel/vmlinuz");
    assert!(
        kernel.exists(),
        "{} is missing: run scripts/fetch-debian-kernel.sh (scripts/test.sh does)",
        kernel.display()
    );
    let mem = MEMORY_MIB.to_string();
    let args = [
        "--kernel",
        kernel.to_str().unwrap(),
        "--memory",
        &mem,
        "--cmdline",
        CMDLINE,
        "--timeout",
        "170",
    ];
    // Stop at the first line after the e820 block.
    let seen_e820 = std::cell::Cell::new(false);
    let run = run_vmm_until(
        &args,
        |line| {
            let is_e820 = line.contains("BIOS-e820:");
            let done = seen_e820.get() && !is_e820;
            seen_e820.set(seen_e820.get() || is_e820);
            done
        },
        Duration::from_secs(180),
    );
    let log: Vec<&str> = run.lines.iter().map(|(_, l)| l.as_str()).collect();
    let context = format!("serial log:\n{}\nstderr:\n{}", log.join("\n"), run.stderr);
    assert!(run.find("Linux version ").is_some(), "no banner; {context}");
    let cmd = run.find("Command line: ").expect("no 'Command line:' line");
    assert!(
        cmd.1.ends_with(&format!("Command line: {CMDLINE}")),
        "command line differs: {:?}",
        cmd.1
    );
    let lines: Vec<&str> = log
        .iter()
        .copied()
        .filter(|l| l.contains("BIOS-e820:"))
        .collect();
    let map: Vec<(u64, u64, u32)> = lines
        .iter()
        .map(|l| parse_e820_line(l).unwrap_or_else(|| panic!("unparsed {l:?}; {context}")))
        .collect();
    // The zero page, command line, GDT and page tables: about 29 KiB.
    check_memory_map(
        &map,
        &MemoryLayout::new(MEMORY_MIB).unwrap(),
        true,
        &[],
        0x8000,
    );
    assert!(
        run.matched,
        "the log stopped before the e820 map ended; {context}"
    );
    let banner_at = run.find("Linux version ").unwrap().0;
    eprintln!(
        "debian kernel: banner after {:.2}s",
        banner_at.as_secs_f64()
    );
}
