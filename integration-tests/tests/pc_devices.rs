//! The PC platform's own devices seen from a guest: the RTC/CMOS (time
//! against the host's, memory-size bytes), the i8042 reset line and the ACPI
//! S5 power-off, each with its documented exit status.

use integration_tests::code_asm::*;
use integration_tests::{assemble, le_u32, require_kvm, run_vmm, TempFile};
use vmm_bin::exit_status::{self, debug_exit_status};

fn run_pc(code: Vec<u8>, extra: &[&str]) -> integration_tests::Output {
    let g = TempFile::with_bytes(&code);
    let mut args = vec![
        "--kernel",
        g.path(),
        "--mode",
        "long",
        "--platform",
        "pc",
        "--timeout",
        "20",
    ];
    args.extend_from_slice(extra);
    run_vmm(&args)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn bcd(v: u8) -> i64 {
    i64::from((v >> 4) * 10 + (v & 0xf))
}

#[test]
fn test_rtc_time_matches_host_and_memory_bytes() {
    require_kvm();
    // Registers to dump, read after waiting for update-in-progress to clear.
    const REGS: [u8; 10] = [0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32, 0x0b, 0x34, 0x35];
    let code = assemble(64, 0x1000, |a| {
        let mut uip = a.create_label();
        a.set_label(&mut uip).unwrap();
        a.mov(al, 0x0a).unwrap();
        a.out(0x70, al).unwrap();
        a.in_(al, 0x71).unwrap();
        a.test(al, 0x80).unwrap();
        a.jnz(uip).unwrap();
        for r in REGS {
            a.mov(al, r as i32).unwrap();
            a.out(0x70, al).unwrap();
            a.in_(al, 0x71).unwrap();
            a.out(0xe9, al).unwrap();
        }
        a.mov(al, 0).unwrap();
        a.out(0xf4, al).unwrap();
    });
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let out = run_pc(code, &["--memory", "128"]);
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(out.status, debug_exit_status(0), "{}", out.stderr);
    let r = &out.stdout_raw;
    assert_eq!(r.len(), REGS.len(), "{r:?}");
    let status_b = r[7];
    assert_eq!(
        status_b & 0x06,
        0x02,
        "BCD, 24-hour mode by default (status B {status_b:#x})"
    );
    let (sec, min, hour, day, mon, yr, cent) = (
        bcd(r[0]),
        bcd(r[1]),
        bcd(r[2]),
        bcd(r[3]),
        bcd(r[4]),
        bcd(r[5]),
        bcd(r[6]),
    );
    let t = days_from_civil(cent * 100 + yr, mon, day) * 86_400 + hour * 3600 + min * 60 + sec;
    assert!(
        t >= before - 2 && t <= after + 2,
        "guest RTC {cent}{yr:02}-{mon:02}-{day:02} {hour:02}:{min:02}:{sec:02} ({t}) vs host [{before}, {after}]"
    );
    // Memory between 16 MiB and the end of RAM in 64 KiB blocks: 112 MiB.
    let blocks = u16::from_le_bytes([r[8], r[9]]);
    assert_eq!(blocks, (128 - 16) * 16);
}

#[test]
fn test_i8042_reset_command_ends_vm_with_reset_status() {
    require_kvm();
    let code = assemble(64, 0x1000, |a| {
        a.mov(al, 0xfe).unwrap();
        a.out(0x64, al).unwrap();
        let mut spin = a.create_label();
        a.set_label(&mut spin).unwrap();
        a.jmp(spin).unwrap();
    });
    let out = run_pc(code, &[]);
    assert_eq!(out.status, exit_status::GUEST_RESET, "{}", out.stderr);
    assert!(
        out.stderr.contains("guest requested a reset"),
        "{}",
        out.stderr
    );
}

#[test]
fn test_acpi_s5_powers_off_cleanly() {
    require_kvm();
    // PM1a_CNT at 0x604: SLP_TYP = 5 (the DSDT's \_S5_), SLP_EN.
    let code = assemble(64, 0x1000, |a| {
        a.mov(dx, 0x604).unwrap();
        a.mov(ax, (5 << 10) | (1 << 13)).unwrap();
        a.out(dx, ax).unwrap();
        let mut spin = a.create_label();
        a.set_label(&mut spin).unwrap();
        a.jmp(spin).unwrap();
    });
    let out = run_pc(code, &["-v"]);
    assert_eq!(out.status, exit_status::HALTED, "{}", out.stderr);
    assert!(out.stderr.contains("powered off"), "{}", out.stderr);
}

#[test]
fn test_pm_timer_counts_at_3_58_mhz() {
    require_kvm();
    // Two PM timer reads around ~1000 port exits; the 24-bit counter must
    // advance, and by a plausible amount (not more than 2^23: it would wrap).
    let code = assemble(64, 0x1000, |a| {
        a.mov(dx, 0x608).unwrap();
        a.in_(eax, dx).unwrap();
        a.mov(dword_ptr(0x6000u64), eax).unwrap();
        a.mov(ecx, 1000).unwrap();
        let mut l = a.create_label();
        a.set_label(&mut l).unwrap();
        a.out(0x80, al).unwrap();
        a.dec(ecx).unwrap();
        a.jnz(l).unwrap();
        a.in_(eax, dx).unwrap();
        a.mov(dword_ptr(0x6004u64), eax).unwrap();
        a.mov(rsi, 0x6000u64).unwrap();
        a.mov(ecx, 8).unwrap();
        a.mov(dx, 0xe9).unwrap();
        a.rep().outsb().unwrap();
        a.mov(al, 0).unwrap();
        a.out(0xf4, al).unwrap();
    });
    let out = run_pc(code, &[]);
    assert_eq!(out.status, debug_exit_status(0), "{}", out.stderr);
    let r = &out.stdout_raw;
    let (t0, t1) = (le_u32(r, 0), le_u32(r, 4));
    assert!(
        t0 < 1 << 24 && t1 < 1 << 24,
        "24-bit timer: {t0:#x} {t1:#x}"
    );
    let ticks = t1.wrapping_sub(t0) & 0xff_ffff;
    assert!(
        ticks > 0 && ticks < 1 << 23,
        "PM timer advanced {ticks} ticks"
    );
}
