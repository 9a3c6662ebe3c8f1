//! A real kernel nobody here wrote: Debian's cloud kernel bzImage, fetched by
//! scripts/fetch-debian-kernel.sh (scripts/test.sh runs it). Its early boot
//! log over the UART must show our command line and exactly our memory map.
//! It cannot reach userspace on these machines (see the notes), so the run is
//! stopped once the e820 map has been printed.

use std::time::Duration;

use integration_tests::{require_kvm, run_vmm_until, workspace_root};
use vmm_core::memory::{MapKind, MemoryLayout};

const MEMORY_MIB: u64 = 128;
const CMDLINE: &str = "console=ttyS0 earlyprintk=serial,ttyS0,115200 reboot=k panic=-1";

/// The `BIOS-e820:` lines Linux prints for a map entry.
fn e820_line(start: u64, len: u64, kind: MapKind) -> String {
    let kind = match kind {
        MapKind::Ram => "usable",
        MapKind::Reserved => "reserved",
    };
    format!(
        "BIOS-e820: [mem {start:#018x}-{:#018x}] {kind}",
        start + len - 1
    )
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
    let expected: Vec<String> = MemoryLayout::new(MEMORY_MIB)
        .unwrap()
        .firmware_map()
        .iter()
        .map(|e| e820_line(e.start, e.len, e.kind))
        .collect();
    let got: Vec<String> = log
        .iter()
        .filter_map(|l| l.find("BIOS-e820:").map(|i| l[i..].to_string()))
        .collect();
    assert_eq!(got, expected, "{context}");
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
