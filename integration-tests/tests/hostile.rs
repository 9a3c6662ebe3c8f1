//! Hostile guests: whatever a guest does, the VMM must not panic, hang, or
//! grow without bound, and it must end with the documented exit status.
//!
//! Each test builds a small guest with the iced-x86 assembler and runs it
//! through the `vmm-bin` CLI, always with `--timeout` (and the helpers'
//! process watchdog on top). Counts are checked exactly where the VMM decides
//! them (the bus counts every port/MMIO element; `--max-exits` is exact);
//! where KVM decides (how many elements of a string I/O instruction one exit
//! carries) the bounds that any correct KVM obeys are checked instead.
//!
//! Costs on these machines (see /work/shared/notes/kvm-on-these-machines.md):
//! every guest instruction here is emulated (~0.6 us) and every exit to
//! userspace costs ~10 us, so guests keep loops tight and exit counts in the
//! hundreds of thousands at most.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use integration_tests::code_asm::*;
use integration_tests::pattern::xorshift_bytes;
use integration_tests::{
    assemble, assert_no_panic, require_kvm, run_vmm, tail, vmm_bin, vmm_command, Output, TempFile,
    PROCESS_WATCHDOG,
};
use vmm_bin::exit_status::{self, debug_exit_status};

// ---------------------------------------------------------------------------
// Running guests and reading what the VMM reports
// ---------------------------------------------------------------------------

/// Writes `image` to a temporary file and runs it with `args`, which must
/// include `--timeout` (a hostile guest may never stop by itself).
fn run_image(image: &[u8], args: &[&str]) -> Output {
    assert!(
        args.contains(&"--timeout"),
        "every hostile run needs --timeout: {args:?}"
    );
    // Build vmm-bin first: run_vmm's watchdog starts before it builds.
    vmm_bin();
    let g = TempFile::with_bytes(image);
    let mut full = vec!["--kernel", g.path()];
    full.extend_from_slice(args);
    let out = run_vmm(&full);
    assert_no_panic(&out.stderr);
    out
}

/// One row of the `--stats` "accesses by port / MMIO range" table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BusRow {
    /// `pio 0x03f8`, `mmio page 0x8000000`, `mmio other pages`...
    key: String,
    /// The device name, `-` for none.
    device: String,
    reads: u64,
    writes: u64,
    unclaimed_reads: u64,
    unclaimed_writes: u64,
}

/// The `--stats` report (see vmm-core/src/stats.rs for its format).
#[derive(Debug, Default)]
struct Stats {
    exits: BTreeMap<String, u64>,
    rows: Vec<BusRow>,
}

impl Stats {
    /// Parses the report from stderr; panics if it is missing.
    fn parse(stderr: &str) -> Stats {
        let mut lines = stderr.lines().skip_while(|l| *l != "exits by kind:");
        assert!(
            lines.next().is_some(),
            "no --stats report in stderr:\n{}",
            tail(stderr)
        );
        let mut stats = Stats::default();
        for line in lines.by_ref() {
            if line == "accesses by port / MMIO range:" {
                break;
            }
            let mut it = line.split_whitespace();
            let (Some(kind), Some(n), None) = (it.next(), it.next(), it.next()) else {
                panic!("malformed exit line {line:?}");
            };
            stats.exits.insert(kind.to_string(), n.parse().unwrap());
        }
        for line in lines {
            if line == "exit handling latency (us):" {
                break;
            }
            // `  {key} {device} reads=R writes=W unclaimed_reads=U unclaimed_writes=V`,
            // where the key itself may contain spaces.
            let (head, counts) = line
                .split_once(" reads=")
                .unwrap_or_else(|| panic!("malformed bus row {line:?}"));
            let (key, device) = head.trim().rsplit_once(' ').unwrap();
            let counts = format!("reads={counts}");
            let fields: Vec<(&str, u64)> = counts
                .split_whitespace()
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k, v.parse().unwrap())
                })
                .collect();
            let names: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
            assert_eq!(
                names,
                ["reads", "writes", "unclaimed_reads", "unclaimed_writes"],
                "{line:?}"
            );
            stats.rows.push(BusRow {
                key: key.trim().to_string(),
                device: device.to_string(),
                reads: fields[0].1,
                writes: fields[1].1,
                unclaimed_reads: fields[2].1,
                unclaimed_writes: fields[3].1,
            });
        }
        stats
    }

    /// Exits of `kind` (0 when the report omits it, as it does for zero).
    fn exits(&self, kind: &str) -> u64 {
        self.exits.get(kind).copied().unwrap_or(0)
    }

    /// The row for `key` (e.g. `pio 0x03f8`).
    fn row(&self, key: &str) -> &BusRow {
        self.rows
            .iter()
            .find(|r| r.key == key)
            .unwrap_or_else(|| panic!("no bus row {key:?}"))
    }

    /// (reads, writes, unclaimed reads, unclaimed writes) of `key`.
    fn counts(&self, key: &str) -> (u64, u64, u64, u64) {
        let r = self.row(key);
        (r.reads, r.writes, r.unclaimed_reads, r.unclaimed_writes)
    }
}

/// One sample taken while a guest runs: its exits of one kind so far (from
/// the `--metrics-file` JSON) and the VMM's resident set size.
#[derive(Debug, Clone, Copy)]
struct Sample {
    exits: u64,
    rss_kib: u64,
}

/// What [`run_vmm_sampled`] saw.
struct SampledRun {
    status: i32,
    stdout: Vec<u8>,
    stderr: String,
    samples: Vec<Sample>,
}

/// `"kind":N` from a `--metrics-file` JSON document.
fn metrics_exits(json: &str, kind: &str) -> Option<u64> {
    let (_, rest) = json.split_once(&format!("\"{kind}\":"))?;
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

/// VmRSS of `pid` in KiB, while it runs.
fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `vmm-bin` with `args`, which must write `--metrics-file metrics`
/// periodically, sampling every few milliseconds how many `kind` exits the
/// metrics report and the process's VmRSS. Within one process RSS is stable
/// to the page once the guest runs, so comparing samples of one run shows
/// growth without the run-to-run noise of comparing peak RSS of two runs.
fn run_vmm_sampled(args: &[&str], metrics: &std::path::Path, kind: &str) -> SampledRun {
    assert!(args.contains(&"--timeout"), "{args:?}");
    vmm_bin();
    let start = Instant::now();
    let mut child = vmm_command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vmm-bin starts");
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut out_pipe, &mut s).ok();
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut err_pipe, &mut s).ok();
        s
    });
    let mut samples = Vec::new();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > PROCESS_WATCHDOG {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vmm-bin {args:?} still running after {PROCESS_WATCHDOG:?}: hung");
        }
        // RSS first: the exit count read after it is then never behind it.
        let rss = vm_rss_kib(child.id());
        let exits = std::fs::read_to_string(metrics)
            .ok()
            .and_then(|j| metrics_exits(&j, kind));
        if let (Some(rss_kib), Some(exits)) = (rss, exits) {
            samples.push(Sample { exits, rss_kib });
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let run = SampledRun {
        status: status.code().unwrap_or(-1),
        stdout: out_t.join().unwrap(),
        stderr: String::from_utf8_lossy(&err_t.join().unwrap()).into_owned(),
        samples,
    };
    assert_no_panic(&run.stderr);
    run
}

/// Emits `hlt`: on the minimal platform (what raw images get) it ends the VM
/// with status 0, the guest's "I got here".
fn halt(a: &mut CodeAssembler) {
    a.hlt().unwrap();
}

/// Emits `mov al, code; out 0xf4, al`: the guest reports a failed self-check,
/// and the run ends with `debug_exit_status(code)` instead of 0 (the `hlt`
/// after it is never reached).
fn fail_with(a: &mut CodeAssembler, code: u8) {
    a.mov(al, i32::from(code)).unwrap();
    a.out(0xf4, al).unwrap();
    a.hlt().unwrap();
}

// ---------------------------------------------------------------------------
// 1. Every port, every size
// ---------------------------------------------------------------------------

/// The debug-exit device's ports: any write there ends the VM by design.
const DEBUG_EXIT: std::ops::Range<u32> = 0xf4..0xf8;
/// The first port from which a dword write reaches the debug-exit range (the
/// bus splits a straddling access into byte cycles, see devices/src/bus.rs).
const DWORD_REACHES_DEBUG_EXIT: u32 = 0xf1;

/// `in` and `out` of sizes 1, 2, 4 at ports `[from, to)`, 32-bit code.
fn emit_port_scan(a: &mut CodeAssembler, from: u32, to: u32) {
    a.mov(edx, from).unwrap();
    let mut top = a.create_label();
    a.set_label(&mut top).unwrap();
    a.in_(al, dx).unwrap();
    a.in_(ax, dx).unwrap();
    a.in_(eax, dx).unwrap();
    a.out(dx, al).unwrap();
    a.out(dx, ax).unwrap();
    a.out(dx, eax).unwrap();
    a.inc(edx).unwrap();
    a.cmp(edx, to).unwrap();
    a.jne(top).unwrap();
}

#[test]
fn test_every_port_every_size_reaches_hlt() {
    require_kvm();
    let code = assemble(32, 0x1000, |a| {
        // Every access whose bytes stay off the debug-exit ports.
        emit_port_scan(a, 0, DWORD_REACHES_DEBUG_EXIT);
        emit_port_scan(a, DEBUG_EXIT.end, 0x1_0000);
        // 0xf1..0xf8: reads of every size (reading debug-exit is harmless)...
        a.mov(edx, DWORD_REACHES_DEBUG_EXIT).unwrap();
        let mut reads = a.create_label();
        a.set_label(&mut reads).unwrap();
        a.in_(al, dx).unwrap();
        a.in_(ax, dx).unwrap();
        a.in_(eax, dx).unwrap();
        a.inc(edx).unwrap();
        a.cmp(edx, DEBUG_EXIT.end).unwrap();
        a.jne(reads).unwrap();
        // ...and the writes that stop short of 0xf4: bytes at 0xf1-0xf3,
        // words at 0xf1-0xf2.
        for port in 0xf1..0xf4 {
            a.mov(edx, port).unwrap();
            a.out(dx, al).unwrap();
        }
        for port in 0xf1..0xf3 {
            a.mov(edx, port).unwrap();
            a.out(dx, ax).unwrap();
        }
        halt(a);
    });
    let out = run_image(
        &code,
        &[
            "--mode",
            "protected",
            "--platform",
            "minimal",
            "--serial",
            "none",
            "--stats",
            "--timeout",
            "50",
        ],
    );
    assert_eq!(out.status, exit_status::HALTED, "{}", tail(&out.stderr));
    assert_eq!(out.stdout, "", "--serial none prints nothing");
    let s = Stats::parse(&out.stderr);
    let scanned = u64::from(DWORD_REACHES_DEBUG_EXIT) + u64::from(0x1_0000 - DEBUG_EXIT.end);
    assert_eq!(s.exits("io_in"), 3 * 0x1_0000, "one exit per `in`");
    assert_eq!(s.exits("io_out"), 3 * scanned + 3 + 2, "one exit per `out`");
    assert_eq!(s.exits("hlt"), 1);
    assert_eq!(s.exits("mmio_read") + s.exits("mmio_write"), 0);
    // One counter per port, and no more: the table is bounded by the port
    // space whatever the guest does.
    let pio_rows = s.rows.iter().filter(|r| r.key.starts_with("pio ")).count();
    assert_eq!(pio_rows, 0x1_0000);
    // What each access was, by the bus's documented rules: unclaimed reads
    // and writes are counted as such; an access that starts off a device but
    // reaches one is split into byte cycles and counts as claimed.
    assert_eq!(s.counts("pio 0x05a5"), (0, 0, 3, 3));
    assert_eq!(s.counts("pio 0xffff"), (0, 0, 3, 3), "no wrap to port 0");
    assert_eq!(s.counts("pio 0x0000"), (0, 0, 3, 3));
    assert_eq!(s.row("pio 0x03f8").device, "uart8250");
    assert_eq!(s.counts("pio 0x03f8"), (3, 3, 0, 0));
    assert_eq!(
        s.counts("pio 0x03ff"),
        (3, 3, 0, 0),
        "split at the UART's end"
    );
    // 0x3f6: byte and word miss the UART, the dword reaches 0x3f8.
    assert_eq!(s.counts("pio 0x03f6"), (1, 1, 2, 2));
    assert_eq!(s.row("pio 0x00e9").device, "debugcon");
    assert_eq!(s.counts("pio 0x00e9"), (3, 3, 0, 0));
    assert_eq!(s.counts("pio 0x0080"), (3, 3, 0, 0), "post-code port");
    assert_eq!(s.row("pio 0x00f4").device, "debug-exit");
    assert_eq!(s.counts("pio 0x00f4"), (3, 0, 0, 0));
    assert_eq!(s.counts("pio 0x00f7"), (3, 0, 0, 0));
    // 0xf3: the byte read misses, word and dword reads reach 0xf4.
    assert_eq!(s.counts("pio 0x00f3"), (2, 0, 1, 1));
    assert_eq!(s.counts("pio 0x00f1"), (1, 0, 2, 2));
}

#[test]
fn test_debug_exit_ports_end_the_vm_at_every_size() {
    require_kvm();
    // (port, access size, value in eax, value the device sees)
    let cases: [(u16, u8, u32, u32); 8] = [
        (0xf4, 1, 0x1234_5612, 0x12),
        (0xf4, 2, 0x1234_0134, 0x0134),
        (0xf4, 4, 0x1234_5678, 0x1234_5678),
        (0xf7, 1, 0x0000_0005, 0x05),
        (0xf6, 2, 0x0000_0b0a, 0x0b0a),
        // Accesses running past the device's end or starting below it are
        // split into byte cycles: the first byte on a debug-exit port wins.
        (0xf5, 4, 0x4433_2211, 0x11),
        (0xf3, 2, 0x0000_2211, 0x22),
        (0xf1, 4, 0x4433_2211, 0x44),
    ];
    for (port, size, eax_value, seen) in cases {
        let code = assemble(32, 0x1000, |a| {
            a.mov(eax, eax_value).unwrap();
            a.mov(edx, u32::from(port)).unwrap();
            match size {
                1 => a.out(dx, al).unwrap(),
                2 => a.out(dx, ax).unwrap(),
                _ => a.out(dx, eax).unwrap(),
            }
            // Reaching this means the write did not end the VM.
            halt(a);
        });
        let out = run_image(
            &code,
            &["--mode", "protected", "--stats", "--timeout", "20"],
        );
        assert_eq!(
            out.status,
            debug_exit_status(seen),
            "out to {port:#x} size {size}: {}",
            out.stderr
        );
        assert_eq!(Stats::parse(&out.stderr).exits("io_out"), 1);
    }
}

#[test]
fn test_debug_exit_by_string_output_stops_at_first_element() {
    require_kvm();
    // `rep outsb` of 100 bytes to 0xf4: the first byte ends the VM, and the
    // instruction is not resumed for the other 99.
    let mut code = assemble(16, 0x1000, |a| {
        a.cld().unwrap();
        a.mov(si, 0x1100).unwrap();
        a.mov(cx, 100).unwrap();
        a.mov(dx, 0xf4).unwrap();
        a.rep().outsb().unwrap();
        halt(a);
    });
    code.resize(0x100, 0);
    code.extend((0x21u8..).take(100));
    let out = run_image(&code, &["--stats", "--timeout", "20"]);
    assert_eq!(out.status, debug_exit_status(0x21), "{}", out.stderr);
    assert_eq!(Stats::parse(&out.stderr).exits("io_out"), 1);
}

// ---------------------------------------------------------------------------
// 2. MMIO everywhere outside RAM
// ---------------------------------------------------------------------------

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// Guest RAM of the MMIO scan: everything from here to 4 GiB is unbacked.
const SCAN_RAM_MIB: u64 = 128;
/// The value written at every size (truncated to it).
const MMIO_PATTERN: u64 = 0x1122_3344_5566_7788;

/// At `[rbx]`: writes of 1, 2, 4, 8 bytes of r8, then reads of 1, 2, 4, 8
/// bytes, each checked to be all ones (what an unclaimed read returns), or
/// the guest reports `fail` through debug-exit.
fn emit_mmio_probe(a: &mut CodeAssembler, fail: CodeLabel) {
    a.mov(byte_ptr(rbx), r8b).unwrap();
    a.mov(word_ptr(rbx), r8w).unwrap();
    a.mov(dword_ptr(rbx), r8d).unwrap();
    a.mov(qword_ptr(rbx), r8).unwrap();
    a.movzx(eax, byte_ptr(rbx)).unwrap();
    a.cmp(eax, 0xff).unwrap();
    a.jne(fail).unwrap();
    a.movzx(eax, word_ptr(rbx)).unwrap();
    a.cmp(eax, 0xffff).unwrap();
    a.jne(fail).unwrap();
    a.mov(eax, dword_ptr(rbx)).unwrap();
    a.cmp(eax, -1).unwrap();
    a.jne(fail).unwrap();
    a.mov(rax, qword_ptr(rbx)).unwrap();
    a.cmp(rax, -1).unwrap();
    a.jne(fail).unwrap();
}

/// Probes `[from, to)` every `step` bytes.
fn emit_mmio_sweep(a: &mut CodeAssembler, from: u64, to: u64, step: u64, fail: CodeLabel) {
    a.mov(rbx, from).unwrap();
    a.mov(r9, to).unwrap();
    let mut top = a.create_label();
    a.set_label(&mut top).unwrap();
    emit_mmio_probe(a, fail);
    a.add(rbx, i32::try_from(step).unwrap()).unwrap();
    a.cmp(rbx, r9).unwrap();
    a.jne(top).unwrap();
}

#[test]
fn test_mmio_sweep_outside_ram_is_bounded_and_traced() {
    require_kvm();
    // The VMM identity-maps only the first 4 GiB. To reach further the guest
    // adds two page directories of its own, in RAM at 2 MiB: PDPT[4] maps
    // [4 GiB, 5 GiB) and PDPT[63] maps the last 2 MiB below 64 GiB (36
    // physical address bits, the architectural minimum with PAE, so every
    // host can map it). Anything unmapped would be a #PF with no IDT: a
    // triple fault, which is tested on its own below.
    const PD_4G: u64 = 0x20_0000;
    const PD_64G: u64 = 0x20_1000;
    let top_64g = 64 * GIB - 8;
    let top_4g = 4 * GIB - 8;
    let code = assemble(64, 0x1000, |a| {
        let mut fail = a.create_label();
        a.mov(r8, MMIO_PATTERN).unwrap();
        // PDPT = PML4[0] & address mask.
        a.mov(rax, cr3).unwrap();
        a.mov(rcx, 0x000f_ffff_ffff_f000u64).unwrap();
        a.mov(rsi, rax).unwrap();
        a.and(rsi, rcx).unwrap();
        a.mov(rdi, qword_ptr(rsi)).unwrap();
        a.and(rdi, rcx).unwrap();
        a.mov(qword_ptr(rdi + 4 * 8), (PD_4G | 3) as i32).unwrap();
        a.mov(qword_ptr(rdi + 63 * 8), (PD_64G | 3) as i32).unwrap();
        // PD_4G[i] = (4 GiB + i * 2 MiB) | PS | RW | P.
        a.mov(rdx, (4 * GIB) | 0x83).unwrap();
        a.mov(edi, PD_4G as u32).unwrap();
        a.mov(ecx, 512).unwrap();
        let mut fill = a.create_label();
        a.set_label(&mut fill).unwrap();
        a.mov(qword_ptr(rdi), rdx).unwrap();
        a.add(rdx, (2 * MIB) as i32).unwrap();
        a.add(rdi, 8).unwrap();
        a.dec(ecx).unwrap();
        a.jne(fill).unwrap();
        a.mov(rdx, (64 * GIB - 2 * MIB) | 0x83).unwrap();
        a.mov(edi, (PD_64G + 511 * 8) as u32).unwrap();
        a.mov(qword_ptr(rdi), rdx).unwrap();
        // Reload CR3 so no stale "not present" translation survives.
        a.mov(cr3, rax).unwrap();

        emit_mmio_sweep(a, SCAN_RAM_MIB * MIB, 4 * GIB, 2 * MIB, fail);
        a.mov(rbx, top_4g).unwrap();
        emit_mmio_probe(a, fail);
        emit_mmio_sweep(a, 4 * GIB, 5 * GIB, 2 * MIB, fail);
        a.mov(rbx, top_64g).unwrap();
        emit_mmio_probe(a, fail);
        halt(a);
        a.set_label(&mut fail).unwrap();
        fail_with(a, 0x3c);
    });
    let mem = SCAN_RAM_MIB.to_string();
    let out = run_image(
        &code,
        &[
            "--mode",
            "long",
            "--platform",
            "minimal",
            "--memory",
            &mem,
            "--trace-io",
            "--stats",
            "--timeout",
            "40",
        ],
    );
    assert_eq!(
        out.status,
        exit_status::HALTED,
        "0x79 = an unclaimed read was not all ones\n{}",
        tail(&out.stderr)
    );

    let below_4g = (4 * GIB - SCAN_RAM_MIB * MIB) / (2 * MIB);
    let above_4g = GIB / (2 * MIB);
    let probes = below_4g + 1 + above_4g + 1;
    let s = Stats::parse(&out.stderr);
    assert_eq!(s.exits("mmio_write"), 4 * probes);
    assert_eq!(s.exits("mmio_read"), 4 * probes);

    // Every probe is on its own page; the bus counts the first 1024 pages
    // separately and the rest in one row.
    let pages: Vec<&BusRow> = s
        .rows
        .iter()
        .filter(|r| r.key.starts_with("mmio page "))
        .collect();
    assert_eq!(pages.len(), 1024);
    assert_eq!(pages[0].key, format!("mmio page {:#x}", SCAN_RAM_MIB * MIB));
    assert_eq!(
        pages[1023].key,
        format!("mmio page {:#x}", SCAN_RAM_MIB * MIB + 1023 * 2 * MIB)
    );
    assert!(pages
        .iter()
        .all(|r| (r.reads, r.writes, r.unclaimed_reads, r.unclaimed_writes) == (0, 0, 4, 4)));
    assert_eq!(
        s.counts("mmio other pages"),
        (0, 0, 4 * (probes - 1024), 4 * (probes - 1024))
    );
    assert_eq!(s.rows.len(), 1024 + 1, "no other bus rows: {:?}", s.rows);

    // The trace: one line per access, in the documented format.
    let trace: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("mmio "))
        .collect();
    assert_eq!(trace.len() as u64, 8 * probes);
    let expect = |addr: u64| -> Vec<String> {
        let mut v: Vec<String> = [1usize, 2, 4, 8]
            .iter()
            .map(|n| {
                let mask = if *n == 8 {
                    u64::MAX
                } else {
                    (1 << (8 * n)) - 1
                };
                format!(
                    "mmio write addr={addr:#x} size={n} value={:#0w$x}",
                    MMIO_PATTERN & mask,
                    w = 2 + 2 * n
                )
            })
            .collect();
        v.extend([1usize, 2, 4, 8].iter().map(|n| {
            format!(
                "mmio read addr={addr:#x} size={n} value=0x{}",
                "ff".repeat(*n)
            )
        }));
        v
    };
    assert_eq!(trace[..8], expect(SCAN_RAM_MIB * MIB));
    assert_eq!(trace[8..16], expect(SCAN_RAM_MIB * MIB + 2 * MIB));
    let at = |i: u64| &trace[(8 * i) as usize..(8 * i + 8) as usize];
    assert_eq!(at(below_4g), expect(top_4g));
    assert_eq!(at(below_4g + 1), expect(4 * GIB));
    assert_eq!(at(probes - 1), expect(top_64g));
}

// ---------------------------------------------------------------------------
// 3. String I/O with the largest counts
// ---------------------------------------------------------------------------

/// An unclaimed port for the string I/O tests.
const NOBODY: u16 = 0x5a5;
/// Elements per 16-bit `rep` string instruction: the largest CX.
const MAX_CX: u64 = 0xffff;

/// 16-bit: `rep ins`/`rep outs` of `size` bytes with CX = 0xffff at port dx,
/// with SI/DI starting at 0 in the segment DS = ES.
fn emit_rep16(a: &mut CodeAssembler, input: bool, size: u8) {
    a.xor(si, si).unwrap();
    a.xor(di, di).unwrap();
    a.mov(cx, MAX_CX as u32).unwrap();
    let rep = a.rep();
    match (input, size) {
        (true, 1) => rep.insb().unwrap(),
        (true, 2) => rep.insw().unwrap(),
        (true, _) => rep.insd().unwrap(),
        (false, 1) => rep.outsb().unwrap(),
        (false, 2) => rep.outsw().unwrap(),
        (false, _) => rep.outsd().unwrap(),
    }
}

/// 16-bit: `cmp <size> [disp], value; jne fail`.
fn emit_check16(a: &mut CodeAssembler, disp: u32, size: u8, value: u32, fail: CodeLabel) {
    match size {
        1 => a.cmp(byte_ptr(disp), value as i32).unwrap(),
        2 => a.cmp(word_ptr(disp), value as i32).unwrap(),
        _ => a.cmp(dword_ptr(disp), value as i32).unwrap(),
    }
    a.jne(fail).unwrap();
}

/// 16-bit: clears the first and last elements' places, runs `rep ins` of
/// `size` with CX = 0xffff, and checks both now hold `value` (its low
/// `size` bytes), or jumps to `fail`.
fn emit_ins16_checked(a: &mut CodeAssembler, size: u8, value: u32, fail: CodeLabel) {
    // The last element's offset: DI wraps past 0xffff for words and dwords.
    let last = ((MAX_CX as u32 - 1) * u32::from(size)) & 0xffff;
    for at in [0, 0xfff8, 0xfffc] {
        a.mov(dword_ptr(at).ds(), 0).unwrap();
    }
    emit_rep16(a, true, size);
    let value = if size == 4 {
        value
    } else {
        value & ((1 << (8 * u32::from(size))) - 1)
    };
    emit_check16(a, 0, size, value, fail);
    emit_check16(a, last, size, value, fail);
}

#[test]
fn test_string_io_with_largest_counts() {
    require_kvm();
    // Real mode; the data segment 0x3000 (linear 0x30000, RAM) is the source
    // of every `outs` and the destination of every `ins`, SI/DI wrapping
    // within it as 16-bit addressing does.
    let code = assemble(16, 0x1000, |a| {
        let mut fail = a.create_label();
        a.cld().unwrap();
        a.mov(ax, 0x3000).unwrap();
        a.mov(ds, ax).unwrap();
        a.mov(es, ax).unwrap();
        // An unclaimed port: writes dropped, reads all ones per element.
        a.mov(dx, u32::from(NOBODY)).unwrap();
        for size in [1, 2, 4] {
            emit_rep16(a, false, size);
        }
        for size in [1u8, 2, 4] {
            emit_ins16_checked(a, size, 0xffff_ffff, fail);
        }
        // The debug console: every byte goes to the (discarded) console; a
        // read returns 0xe9 in the byte at 0xe9 and all ones above it.
        a.mov(dx, 0xe9).unwrap();
        for size in [1, 2, 4] {
            emit_rep16(a, false, size);
        }
        for (size, value) in [(1u8, 0xe9u32), (2, 0xffe9), (4, 0xffff_ffe9)] {
            emit_ins16_checked(a, size, value, fail);
        }
        halt(a);
        a.set_label(&mut fail).unwrap();
        fail_with(a, 0x33);
    });
    let out = run_image(
        &code,
        &[
            "--platform",
            "minimal",
            "--serial",
            "none",
            "--stats",
            "--timeout",
            "50",
        ],
    );
    assert_eq!(
        out.status,
        exit_status::HALTED,
        "0x67 = ins stored the wrong bytes\n{}",
        tail(&out.stderr)
    );
    assert_eq!(out.stdout, "");
    let s = Stats::parse(&out.stderr);
    // The bus sees every element, whatever the number of exits.
    assert_eq!(
        s.counts(&format!("pio {NOBODY:#06x}")),
        (0, 0, 3 * MAX_CX, 3 * MAX_CX)
    );
    assert_eq!(s.counts("pio 0x00e9"), (3 * MAX_CX, 3 * MAX_CX, 0, 0));
    // KVM decides how many elements one exit carries: at least one, and at
    // most a page of data (the size of kvm_run's PIO data area). Per
    // direction: two ports, three sizes, 0xffff elements each.
    let elements = 2 * 3 * MAX_CX;
    let min: u64 = [1, 2, 4]
        .iter()
        .map(|size| 2 * (MAX_CX * size).div_ceil(4096))
        .sum();
    for kind in ["io_in", "io_out"] {
        let n = s.exits(kind);
        assert!(
            (min..=elements).contains(&n),
            "{kind}: {n} exits for {elements} elements"
        );
    }
}

#[test]
fn test_string_io_large_count_in_protected_mode() {
    require_kvm();
    // 32-bit: ECX beyond 16 bits. 1 MiB read by `rep insd` from an unclaimed
    // port into RAM at 1 MiB, then 64 KiB written back by `rep outsd`.
    const INSD: u32 = 0x4_0000;
    const OUTSD: u32 = 0x4000;
    let code = assemble(32, 0x1000, |a| {
        let mut fail = a.create_label();
        a.cld().unwrap();
        a.mov(edx, u32::from(NOBODY)).unwrap();
        a.mov(edi, 0x10_0000).unwrap();
        a.mov(ecx, INSD).unwrap();
        a.rep().insd().unwrap();
        a.cmp(ecx, 0).unwrap();
        a.jne(fail).unwrap();
        a.cmp(edi, 0x10_0000 + 4 * INSD).unwrap();
        a.jne(fail).unwrap();
        a.cmp(dword_ptr(0x10_0000 + 4 * INSD - 4), -1).unwrap();
        a.jne(fail).unwrap();
        a.mov(esi, 0x10_0000).unwrap();
        a.mov(ecx, OUTSD).unwrap();
        a.rep().outsd().unwrap();
        halt(a);
        a.set_label(&mut fail).unwrap();
        fail_with(a, 0x34);
    });
    let out = run_image(
        &code,
        &[
            "--mode",
            "protected",
            "--platform",
            "minimal",
            "--stats",
            "--timeout",
            "40",
        ],
    );
    assert_eq!(out.status, exit_status::HALTED, "{}", tail(&out.stderr));
    let s = Stats::parse(&out.stderr);
    assert_eq!(
        s.counts(&format!("pio {NOBODY:#06x}")),
        (0, 0, u64::from(INSD), u64::from(OUTSD))
    );
    // Between one element and one page of data per exit (see above).
    let ins = s.exits("io_in");
    assert!(
        ((4 * u64::from(INSD)).div_ceil(4096)..=u64::from(INSD)).contains(&ins),
        "{ins} io_in exits"
    );
    let outs = s.exits("io_out");
    assert!(
        ((4 * u64::from(OUTSD)).div_ceil(4096)..=u64::from(OUTSD)).contains(&outs),
        "{outs} io_out exits"
    );
}

// ---------------------------------------------------------------------------
// 4. Writes straddling the end of RAM
// ---------------------------------------------------------------------------

#[test]
fn test_writes_straddling_end_of_ram() {
    require_kvm();
    // --memory 1: RAM is [0, 1 MiB); what lies above is MMIO to KVM. An
    // access crossing the boundary is split: the RAM part lands in RAM, the
    // rest goes to the bus (unclaimed: dropped, reads all ones).
    const END: u32 = 0x10_0000;
    let code = assemble(32, 0x1000, |a| {
        let mut fail = a.create_label();
        a.cld().unwrap();
        // Dword at END-2: dd cc in RAM, bb aa to MMIO at END.
        a.mov(esi, END - 2).unwrap();
        a.mov(dword_ptr(esi), 0xaabb_ccddu32 as i32).unwrap();
        a.movzx(eax, word_ptr(esi)).unwrap();
        a.cmp(eax, 0xccdd).unwrap();
        a.jne(fail).unwrap();
        // Read back across the boundary: RAM bytes, then all ones.
        a.mov(eax, dword_ptr(esi)).unwrap();
        a.cmp(eax, 0xffff_ccddu32 as i32).unwrap();
        a.jne(fail).unwrap();
        // rep stosb from END-16, 64 bytes: 16 in RAM, 48 beyond.
        a.mov(edi, END - 16).unwrap();
        a.mov(ecx, 64).unwrap();
        a.mov(al, 0xab).unwrap();
        a.rep().stosb().unwrap();
        a.cmp(ecx, 0).unwrap();
        a.jne(fail).unwrap();
        for off in [16, 4] {
            a.cmp(dword_ptr(END - off), 0xabab_ababu32 as i32).unwrap();
            a.jne(fail).unwrap();
        }
        halt(a);
        a.set_label(&mut fail).unwrap();
        fail_with(a, 0x44);
    });
    let out = run_image(
        &code,
        &[
            "--mode",
            "protected",
            "--memory",
            "1",
            "--trace-io",
            "--stats",
            "--timeout",
            "20",
        ],
    );
    assert_eq!(
        out.status,
        exit_status::HALTED,
        "0x89 = RAM part wrong\n{}",
        tail(&out.stderr)
    );
    let trace: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("mmio "))
        .collect();
    let mut expect = vec![
        "mmio write addr=0x100000 size=2 value=0xaabb".to_string(),
        "mmio read addr=0x100000 size=2 value=0xffff".to_string(),
    ];
    expect.extend(
        (0..48u64).map(|i| format!("mmio write addr={:#x} size=1 value=0xab", 0x10_0000 + i)),
    );
    assert_eq!(trace, expect);
    let s = Stats::parse(&out.stderr);
    assert_eq!((s.exits("mmio_write"), s.exits("mmio_read")), (49, 1));
}

#[test]
fn test_string_input_straddling_end_of_ram() {
    require_kvm();
    // `rep insb` of 8 bytes from the debug console into [END - 4, END + 4):
    // half lands in RAM, half beyond it. How KVM batches the port reads and
    // the MMIO writes is its business; what reaches the bus must be exactly
    // the 8 reads and the 4 bytes above RAM.
    const END: u32 = 0x10_0000;
    let code = assemble(32, 0x1000, |a| {
        let mut fail = a.create_label();
        a.cld().unwrap();
        a.mov(edi, END - 4).unwrap();
        a.mov(ecx, 8).unwrap();
        a.mov(edx, 0xe9).unwrap();
        a.rep().insb().unwrap();
        a.cmp(ecx, 0).unwrap();
        a.jne(fail).unwrap();
        a.cmp(edi, END + 4).unwrap();
        a.jne(fail).unwrap();
        a.cmp(dword_ptr(END - 4), 0xe9e9_e9e9u32 as i32).unwrap();
        a.jne(fail).unwrap();
        halt(a);
        a.set_label(&mut fail).unwrap();
        fail_with(a, 0x45);
    });
    let out = run_image(
        &code,
        &[
            "--mode",
            "protected",
            "--memory",
            "1",
            "--trace-io",
            "--stats",
            "--timeout",
            "20",
        ],
    );
    assert_eq!(
        out.status,
        exit_status::HALTED,
        "0x8b = RAM part or registers wrong\n{}",
        out.stderr
    );
    let s = Stats::parse(&out.stderr);
    assert_eq!(s.counts("pio 0x00e9"), (8, 0, 0, 0));
    assert_eq!(s.exits("mmio_read"), 0);
    // Reassemble the bytes the MMIO writes carried, by address.
    let mut beyond = BTreeMap::new();
    for line in out.stderr.lines().filter(|l| l.starts_with("mmio ")) {
        let rest = line
            .strip_prefix("mmio write addr=0x")
            .unwrap_or_else(|| panic!("unexpected {line:?}"));
        let (addr, rest) = rest.split_once(" size=").unwrap();
        let (size, value) = rest.split_once(" value=0x").unwrap();
        let addr = u64::from_str_radix(addr, 16).unwrap();
        let size: u64 = size.parse().unwrap();
        let value = u64::from_str_radix(value, 16).unwrap();
        for i in 0..size {
            let byte = (value >> (8 * i)) as u8;
            assert!(
                beyond.insert(addr + i, byte).is_none(),
                "{addr:#x}+{i} twice"
            );
        }
    }
    let want: BTreeMap<u64, u8> = (0..4).map(|i| (u64::from(END) + i, 0xe9)).collect();
    assert_eq!(beyond, want, "bytes written above RAM");
}

// ---------------------------------------------------------------------------
// 5, 6. Guests that never exit: only the watchdog can end them
// ---------------------------------------------------------------------------

/// Runs a guest that never stops by itself with `--timeout 1` and checks it
/// ended by the timeout: status 6, not before the second, and not long
/// after (a generous bound to catch hangs, not to time the VMM).
fn assert_ended_by_timeout(what: &str, image: &[u8], mode: &str, platform: &str) {
    let out = run_image(
        image,
        &["--mode", mode, "--platform", platform, "--timeout", "1"],
    );
    assert_eq!(
        out.status,
        exit_status::LIMIT_REACHED,
        "{what}: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("timeout reached after 1."),
        "{what}: {}",
        out.stderr
    );
    assert!(
        out.elapsed >= Duration::from_secs(1),
        "{what}: ended after {:?}, before its timeout",
        out.elapsed
    );
    assert!(
        out.elapsed < Duration::from_secs(11),
        "{what}: took {:?} to stop after a 1 s timeout",
        out.elapsed
    );
}

#[test]
fn test_spinning_guests_are_ended_by_timeout() {
    require_kvm();
    let jmp_self = |bits| {
        assemble(bits, 0x1000, |a| {
            let mut top = a.create_label();
            a.set_label(&mut top).unwrap();
            a.jmp(top).unwrap();
        })
    };
    assert_ended_by_timeout("real-mode jmp $", &jmp_self(16), "real", "minimal");
    assert_ended_by_timeout("long-mode jmp $", &jmp_self(64), "long", "minimal");
    let pause_loop = assemble(64, 0x1000, |a| {
        a.cli().unwrap();
        let mut top = a.create_label();
        a.set_label(&mut top).unwrap();
        a.pause().unwrap();
        a.jmp(top).unwrap();
    });
    assert_ended_by_timeout("long-mode pause loop", &pause_loop, "long", "minimal");
    // Exits as fast as it can: the stop must be noticed between exits too.
    let out_flood = assemble(16, 0x1000, |a| {
        a.mov(dx, u32::from(NOBODY)).unwrap();
        let mut top = a.create_label();
        a.set_label(&mut top).unwrap();
        a.out(dx, al).unwrap();
        a.jmp(top).unwrap();
    });
    assert_ended_by_timeout("real-mode out flood", &out_flood, "real", "minimal");
    // With the PC platform's in-kernel irqchip, hlt no longer ends the VM:
    // with interrupts off the vCPU sleeps inside KVM_RUN forever.
    let cli_hlt = assemble(64, 0x1000, |a| {
        a.cli().unwrap();
        a.hlt().unwrap();
    });
    assert_ended_by_timeout("long-mode cli; hlt (pc)", &cli_hlt, "long", "pc");
    // An INIT IPI to itself through the local APIC's ICR parks the only
    // vCPU in wait-for-SIPI inside KVM_RUN.
    let self_init = assemble(64, 0x1000, |a| {
        a.mov(ebx, 0xfee0_0300u32).unwrap();
        // INIT, level assert, destination shorthand "all including self".
        a.mov(dword_ptr(rbx), 0x000c_4500).unwrap();
        let mut spin = a.create_label();
        a.set_label(&mut spin).unwrap();
        a.jmp(spin).unwrap();
    });
    assert_ended_by_timeout("long-mode INIT IPI to self (pc)", &self_init, "long", "pc");
}

#[test]
fn test_hypercalls_spinning_in_kvm_are_ended_by_timeout() {
    require_kvm();
    // On these machines vmcall/vmmcall never exit to userspace: the vCPU
    // spins inside KVM_RUN, so only the watchdog's kick ends the VM. (A
    // stock KVM answers an unknown hypercall with -ENOSYS in rax and goes
    // on; the `jmp $` after it keeps the expected outcome the same there.)
    for (bits, mode) in [(64, "long"), (16, "real")] {
        for vmmcall in [false, true] {
            let code = assemble(bits, 0x1000, |a| {
                if vmmcall {
                    a.vmmcall().unwrap();
                } else {
                    a.vmcall().unwrap();
                }
                let mut spin = a.create_label();
                a.set_label(&mut spin).unwrap();
                a.jmp(spin).unwrap();
            });
            let what = format!(
                "{} in {mode} mode",
                if vmmcall { "vmmcall" } else { "vmcall" }
            );
            assert_ended_by_timeout(&what, &code, mode, "minimal");
        }
    }
}

// ---------------------------------------------------------------------------
// 7. Instructions KVM cannot emulate here
// ---------------------------------------------------------------------------

#[test]
fn test_emulation_failures_are_vcpu_faults_with_instruction_bytes() {
    require_kvm();
    // The instructions the nested KVM of these machines cannot emulate at
    // CPL0 (see the notes): KVM_EXIT_INTERNAL_ERROR, which the VMM reports as
    // a vCPU fault (status 10) with the instruction bytes. On a host that
    // runs guest code natively they would simply execute. The emulation
    // fallback (on by default) finishes cmpxchg16b and rdtscp; this is the
    // path without it (tests/emulation_fallback.rs covers the fallback).
    let cases: Vec<(&str, u32, Vec<u8>)> = vec![
        (
            "long",
            64,
            assemble(64, 0x1000, |a| {
                a.mov(esi, 0x2000).unwrap();
                a.cmpxchg16b(xmmword_ptr(rsi)).unwrap();
            }),
        ),
        ("long", 64, assemble(64, 0x1000, |a| a.xgetbv().unwrap())),
        (
            "long",
            64,
            assemble(64, 0x1000, |a| a.popcnt(eax, ebx).unwrap()),
        ),
        ("long", 64, assemble(64, 0x1000, |a| a.rdtscp().unwrap())),
        ("long", 64, assemble(64, 0x1000, |a| a.int3().unwrap())),
        ("protected", 32, assemble(32, 0x1000, |a| a.int3().unwrap())),
        (
            "protected",
            32,
            assemble(32, 0x1000, |a| a.popcnt(eax, ebx).unwrap()),
        ),
        // With the IDT limit 0 the VMM sets up, `int 0x80` would be a #GP,
        // then a double fault, then a triple fault (status 4) on hardware;
        // KVM here cannot emulate `int n` outside real mode and reports an
        // emulation failure instead, which the VMM must pass on as is.
        (
            "protected",
            32,
            assemble(32, 0x1000, |a| a.int(0x80).unwrap()),
        ),
        ("long", 64, assemble(64, 0x1000, |a| a.int(0x80).unwrap())),
        // icebp (int1) fails the same way.
        ("long", 64, assemble(64, 0x1000, |a| a.int1().unwrap())),
    ];
    for (mode, bits, code) in cases {
        // The instruction under test is the last one in each guest.
        let insn = last_instruction(bits, &code);
        let hex = hex_bytes(&insn);
        let mut image = code.clone();
        // If it did not fault, a hlt would say so (status 0, not 10).
        image.push(0xf4);
        let out = run_image(
            &image,
            &[
                "--mode",
                mode,
                "--platform",
                "minimal",
                "--timeout",
                "20",
                "--no-emulation-fallback",
            ],
        );
        assert_eq!(
            out.status,
            exit_status::VCPU_FAULT,
            "{hex} in {mode} mode: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("emulation failure"),
            "{hex}: {}",
            out.stderr
        );
        // KVM hands over the bytes it fetched from the instruction on; the
        // VMM decodes them and names the instruction with its own bytes,
        // lowercase hex pairs in parentheses (the hlt after it is not part
        // of it).
        let want = format!("({hex})");
        assert!(
            out.stderr.contains(&want),
            "{hex} in {mode} mode: no {want:?} in {}",
            out.stderr
        );
    }
}

#[test]
fn test_executing_outside_ram_is_a_vcpu_fault() {
    require_kvm();
    // --memory 1: jump to 1 MiB, where there is no RAM to fetch from. KVM
    // cannot emulate an instruction fetch from MMIO: an emulation failure.
    let code = assemble(32, 0x1000, |a| {
        a.mov(eax, 0x10_0000).unwrap();
        a.jmp(eax).unwrap();
    });
    let out = run_image(
        &code,
        &[
            "--mode",
            "protected",
            "--platform",
            "minimal",
            "--memory",
            "1",
            "--stats",
            "--timeout",
            "20",
        ],
    );
    assert_eq!(out.status, exit_status::VCPU_FAULT, "{}", out.stderr);
    assert!(out.stderr.contains("emulation failure"), "{}", out.stderr);
    let s = Stats::parse(&out.stderr);
    assert_eq!(s.exits("internal_error"), 1);
    assert_eq!(s.exits("mmio_read") + s.exits("mmio_write"), 0);
}

/// The bytes of the last instruction of `code`, decoded with iced.
fn last_instruction(bits: u32, code: &[u8]) -> Vec<u8> {
    let mut d = iced_x86::Decoder::with_ip(bits, code, 0x1000, iced_x86::DecoderOptions::NONE);
    let mut last = 0..0;
    while d.can_decode() {
        let start = d.position();
        let _ = d.decode();
        last = start..d.position();
    }
    code[last].to_vec()
}

/// Bytes as `kvm` prints them: space-separated lowercase hex.
fn hex_bytes(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------
// 8. Triple faults
// ---------------------------------------------------------------------------

#[test]
fn test_triple_faults_in_32_and_64_bit_modes() {
    require_kvm();
    // No IDT (limit 0): any exception escalates to a triple fault. (`int
    // 0x80` would too on hardware, but KVM here fails to emulate it: see the
    // emulation-failure test. Real mode has no triple fault here at all.)
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("ud2", "long", assemble(64, 0x1000, |a| a.ud2().unwrap())),
        (
            "ud2",
            "protected",
            assemble(32, 0x1000, |a| a.ud2().unwrap()),
        ),
        (
            "#DE",
            "protected",
            assemble(32, 0x1000, |a| {
                a.xor(edx, edx).unwrap();
                a.xor(ecx, ecx).unwrap();
                a.div(ecx).unwrap();
            }),
        ),
        (
            "#GP (null selector into SS)",
            "protected",
            assemble(32, 0x1000, |a| {
                a.xor(eax, eax).unwrap();
                a.mov(ss, ax).unwrap();
            }),
        ),
        (
            // The VMM maps only the first 4 GiB.
            "#PF above 4 GiB",
            "long",
            assemble(64, 0x1000, |a| {
                a.mov(rbx, 8 * GIB).unwrap();
                a.mov(rax, qword_ptr(rbx)).unwrap();
            }),
        ),
        (
            "#GP (wrmsr to an MSR that does not exist)",
            "long",
            assemble(64, 0x1000, |a| {
                a.mov(ecx, 0x1234_5678).unwrap();
                a.xor(eax, eax).unwrap();
                a.xor(edx, edx).unwrap();
                a.wrmsr().unwrap();
            }),
        ),
        (
            // An instruction breakpoint (DR0, enabled in DR7) on the hlt.
            "#DB (hardware breakpoint)",
            "protected",
            {
                let arm = |target: u32| {
                    assemble(32, 0x1000, |a| {
                        a.mov(eax, target).unwrap();
                        a.mov(dr0, eax).unwrap();
                        a.mov(eax, 1).unwrap();
                        a.mov(dr7, eax).unwrap();
                    })
                };
                // `mov eax, imm32` has one encoding: the length is known.
                arm(0x1000 + arm(0).len() as u32)
            },
        ),
        (
            "#GP (non-canonical address)",
            "long",
            assemble(64, 0x1000, |a| {
                a.mov(rbx, 0x8000_0000_0000_0000u64).unwrap();
                a.mov(rax, qword_ptr(rbx)).unwrap();
            }),
        ),
    ];
    for (what, mode, code) in cases {
        let mut image = code;
        image.push(0xf4);
        let out = run_image(
            &image,
            &["--mode", mode, "--platform", "minimal", "--timeout", "20"],
        );
        assert_eq!(
            out.status,
            exit_status::TRIPLE_FAULT,
            "{what} in {mode} mode: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("triple fault"),
            "{what}: {}",
            out.stderr
        );
    }
}

// ---------------------------------------------------------------------------
// 9. Exit floods and --max-exits
// ---------------------------------------------------------------------------

#[test]
fn test_out_flood_is_ended_by_max_exits_exactly() {
    require_kvm();
    let code = assemble(16, 0x1000, |a| {
        a.mov(dx, u32::from(NOBODY)).unwrap();
        let mut top = a.create_label();
        a.set_label(&mut top).unwrap();
        a.out(dx, al).unwrap();
        a.jmp(top).unwrap();
    });
    let out = run_image(
        &code,
        &["--max-exits", "100000", "--stats", "--timeout", "40"],
    );
    assert_eq!(
        out.status,
        exit_status::LIMIT_REACHED,
        "{}",
        tail(&out.stderr)
    );
    assert!(
        out.stderr.contains("exit limit reached (100000 exits)"),
        "{}",
        out.stderr
    );
    let s = Stats::parse(&out.stderr);
    assert_eq!(s.exits("io_out"), 100_000);
    assert_eq!(s.counts(&format!("pio {NOBODY:#06x}")), (0, 0, 0, 100_000));
}

#[test]
fn test_mixed_exit_flood_counts_every_kind_against_max_exits() {
    require_kvm();
    // out, in, MMIO write, MMIO read, forever. With --memory 1 the real-mode
    // address 0xffff:0x10 (1 MiB) is outside RAM.
    let code = assemble(16, 0x1000, |a| {
        a.mov(ax, 0xffff).unwrap();
        a.mov(es, ax).unwrap();
        a.mov(dx, u32::from(NOBODY)).unwrap();
        let mut top = a.create_label();
        a.set_label(&mut top).unwrap();
        a.out(dx, al).unwrap();
        a.in_(al, dx).unwrap();
        a.mov(byte_ptr(0x10).es(), al).unwrap();
        a.mov(al, byte_ptr(0x10).es()).unwrap();
        a.jmp(top).unwrap();
    });
    let out = run_image(
        &code,
        &[
            "--memory",
            "1",
            "--max-exits",
            "40001",
            "--stats",
            "--timeout",
            "40",
        ],
    );
    assert_eq!(
        out.status,
        exit_status::LIMIT_REACHED,
        "{}",
        tail(&out.stderr)
    );
    let s = Stats::parse(&out.stderr);
    assert_eq!(
        (
            s.exits("io_out"),
            s.exits("io_in"),
            s.exits("mmio_write"),
            s.exits("mmio_read")
        ),
        (10_001, 10_000, 10_000, 10_000)
    );
    assert_eq!(s.counts("mmio page 0x100000"), (0, 0, 10_000, 10_000));
}

// ---------------------------------------------------------------------------
// 10. Console floods
// ---------------------------------------------------------------------------

/// Bytes the UART flood sends: pseudo-random (NULs and newlines included),
/// and not ending in a newline, so a line-buffered sink must flush its tail.
fn flood_data(len: usize) -> Vec<u8> {
    let mut v = xorshift_bytes(len, 0x1234_5678);
    if v.last() == Some(&b'\n') {
        *v.last_mut().unwrap() = b'x';
    }
    v
}

/// Where the flood's data sits in guest memory (the image is loaded at
/// 0x1000, its code padded to one page).
const FLOOD_DATA: u32 = 0x2000;
/// Bytes sent through the UART by the flood.
const FLOOD_LEN: usize = 128 * 1024;

/// 32-bit: `rep outsb` of the flood data to the UART, then hlt.
fn uart_flood_image() -> Vec<u8> {
    let mut image = assemble(32, 0x1000, |a| {
        a.cld().unwrap();
        a.mov(esi, FLOOD_DATA).unwrap();
        a.mov(ecx, FLOOD_LEN as u32).unwrap();
        a.mov(edx, 0x3f8).unwrap();
        a.rep().outsb().unwrap();
        halt(a);
    });
    image.resize((FLOOD_DATA - 0x1000) as usize, 0);
    image.extend_from_slice(&flood_data(FLOOD_LEN));
    image
}

#[test]
fn test_uart_flood_to_file_is_complete_and_exact() {
    require_kvm();
    let path = std::env::temp_dir().join(format!("vmm-hostile-uart-{}.out", std::process::id()));
    let serial = format!("file:{}", path.display());
    let out = run_image(
        &uart_flood_image(),
        &[
            "--mode",
            "protected",
            "--platform",
            "minimal",
            "--serial",
            &serial,
            "--stats",
            "--timeout",
            "40",
        ],
    );
    let written = std::fs::read(&path);
    std::fs::remove_file(&path).ok();
    assert_eq!(out.status, exit_status::HALTED, "{}", out.stderr);
    assert_eq!(out.stdout, "", "file console writes nothing to stdout");
    let written = written.expect("serial file exists");
    let want = flood_data(FLOOD_LEN);
    assert_eq!(written.len(), want.len(), "bytes in the serial file");
    assert!(
        written == want,
        "serial file differs from what the guest sent"
    );
    let s = Stats::parse(&out.stderr);
    assert_eq!(s.counts("pio 0x03f8"), (0, FLOOD_LEN as u64, 0, 0));
}

#[test]
fn test_uart_flood_with_serial_none() {
    require_kvm();
    let out = run_image(
        &uart_flood_image(),
        &[
            "--mode",
            "protected",
            "--platform",
            "minimal",
            "--serial",
            "none",
            "--stats",
            "--timeout",
            "40",
        ],
    );
    assert_eq!(out.status, exit_status::HALTED, "{}", out.stderr);
    assert_eq!(out.stdout, "");
    let s = Stats::parse(&out.stderr);
    assert_eq!(s.counts("pio 0x03f8"), (0, FLOOD_LEN as u64, 0, 0));
}

#[test]
fn test_uart_loopback_flood_is_bounded_by_the_fifo() {
    require_kvm();
    // In loopback mode (MCR bit 4) what the guest transmits is received by
    // the UART itself. 1000 bytes sent without reading any: the receive FIFO
    // keeps what fits (64 bytes in vm-superio's 16550A) and drops the rest,
    // as a real UART's overrun does. The guest then drains it and reports
    // through the debug console: count (2 bytes), first and last byte.
    let code = assemble(16, 0x1000, |a| {
        a.mov(dx, 0x3fc).unwrap();
        a.mov(al, 0x10).unwrap();
        a.out(dx, al).unwrap();
        a.mov(dx, 0x3f8).unwrap();
        a.xor(al, al).unwrap();
        a.mov(cx, 1000).unwrap();
        let mut send = a.create_label();
        a.set_label(&mut send).unwrap();
        a.out(dx, al).unwrap();
        a.inc(al).unwrap();
        a.loop_(send).unwrap();
        // bx = count, di = first byte, bp = last byte.
        a.xor(bx, bx).unwrap();
        a.mov(di, 0xffff).unwrap();
        let mut drain = a.create_label();
        let mut done = a.create_label();
        a.set_label(&mut drain).unwrap();
        a.mov(dx, 0x3fd).unwrap();
        a.in_(al, dx).unwrap();
        a.test(al, 1).unwrap();
        a.jz(done).unwrap();
        a.mov(dx, 0x3f8).unwrap();
        a.in_(al, dx).unwrap();
        a.movzx(bp, al).unwrap();
        a.cmp(bx, 0).unwrap();
        let mut not_first = a.create_label();
        a.jne(not_first).unwrap();
        a.mov(di, bp).unwrap();
        a.set_label(&mut not_first).unwrap();
        a.inc(bx).unwrap();
        // A FIFO that never empties would keep the guest here forever.
        a.cmp(bx, 2000).unwrap();
        a.jb(drain).unwrap();
        a.set_label(&mut done).unwrap();
        for reg in [bx, di, bp] {
            a.mov(ax, reg).unwrap();
            a.out(0xe9, al).unwrap();
        }
        a.mov(al, bh).unwrap();
        a.out(0xe9, al).unwrap();
        halt(a);
    });
    let out = run_image(&code, &["--platform", "minimal", "--timeout", "20"]);
    assert_eq!(out.status, exit_status::HALTED, "{}", out.stderr);
    // count low, first, last, count high.
    assert_eq!(out.stdout.as_bytes(), [64, 0, 63, 0], "{}", out.stderr);
}

#[test]
fn test_console_flood_does_not_grow_memory() {
    require_kvm();
    // An endless flood to both consoles (UART and port 0xe9) with --serial
    // none, ended by --max-exits. The guest touches no new memory after its
    // first round, so the VMM's RSS must not grow with the bytes it discards.
    // RSS is sampled after 20,000 exits (everything set up, the flood under
    // way) and over two later windows of 100,000 console bytes each. A leak
    // grows both windows; a one-off step (glibc making a malloc arena when
    // threads contend on a busy host, about 130-190 KiB) grows at most one.
    const BASELINE_AT: u64 = 20_000;
    const WINDOW: u64 = 100_000;
    const LATER_BY: u64 = 2 * WINDOW;
    let image = {
        let mut image = assemble(32, 0x1000, |a| {
            a.cld().unwrap();
            let mut top = a.create_label();
            a.set_label(&mut top).unwrap();
            for port in [0x3f8, 0xe9] {
                a.mov(esi, FLOOD_DATA).unwrap();
                a.mov(ecx, 4096).unwrap();
                a.mov(edx, port).unwrap();
                a.rep().outsb().unwrap();
            }
            a.jmp(top).unwrap();
        });
        image.resize((FLOOD_DATA - 0x1000) as usize, 0);
        image.extend_from_slice(&flood_data(4096));
        image
    };
    let g = TempFile::with_bytes(&image);
    let metrics =
        std::env::temp_dir().join(format!("vmm-hostile-flood-{}.json", std::process::id()));
    let metrics_path = metrics.to_str().unwrap();
    let max_exits = BASELINE_AT + LATER_BY + 50_000;
    let max_exits_arg = max_exits.to_string();
    let run = run_vmm_sampled(
        &[
            "--kernel",
            g.path(),
            "--mode",
            "protected",
            "--platform",
            "minimal",
            "--memory",
            "16",
            "--serial",
            "none",
            "--max-exits",
            &max_exits_arg,
            "--metrics-file",
            metrics_path,
            "--metrics-interval",
            "0.02",
            "--timeout",
            "40",
        ],
        &metrics,
        "io_out",
    );
    std::fs::remove_file(&metrics).ok();
    assert_eq!(run.status, exit_status::LIMIT_REACHED, "{}", run.stderr);
    assert!(run.stdout.is_empty(), "--serial none printed something");
    let samples = &run.samples;
    let base = samples
        .iter()
        .find(|s| s.exits >= BASELINE_AT)
        .unwrap_or_else(|| panic!("no sample after {BASELINE_AT} exits: {samples:?}"));
    // Samples that report the whole budget were taken after the VM stopped,
    // while the VMM tears down and reports: not the flood's doing.
    let mid = samples
        .iter()
        .find(|s| s.exits >= base.exits + WINDOW && s.exits < max_exits)
        .unwrap_or_else(|| panic!("no sample {WINDOW} exits after {base:?}: {samples:?}"));
    let later: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.exits >= mid.exits + WINDOW && s.exits < max_exits)
        .collect();
    assert!(
        !later.is_empty(),
        "no sample {WINDOW} exits after {mid:?}: {samples:?}"
    );
    let peak = later.iter().map(|s| s.rss_kib).max().unwrap();
    let first = mid.rss_kib.saturating_sub(base.rss_kib);
    let second = peak.saturating_sub(mid.rss_kib);
    // One byte kept per byte discarded would add ~100 KiB to each window.
    assert!(
        first.min(second) <= 48,
        "VmRSS grew in both windows: {} KiB at {} exits, {} KiB at {} exits, {peak} KiB by {} exits",
        base.rss_kib,
        base.exits,
        mid.rss_kib,
        mid.exits,
        later.last().unwrap().exits
    );
}
