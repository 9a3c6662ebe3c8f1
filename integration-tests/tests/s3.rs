//! ACPI S3 (suspend to RAM) and the wake through the RTC alarm, the way
//! kvm-unit-tests' `s3.flat` does it: a long-mode guest finds the FADT and
//! FACS, puts a real-mode stub's address in the FACS waking vector, sets
//! PM1_EN.RTC_EN, programs the RTC alarm 2 s ahead with AIE, and writes
//! PM1_CNT = SLP_TYP 1 (`\_S3_`) | SLP_EN. The stub, entered in real mode at
//! the vector, reports through debug-exit what it finds: WAK_STS and
//! RTC_STS in PM1_STS, the guest's marker untouched (no instruction ran
//! after the sleep), AF in RTC register C.

use std::time::Duration;

use integration_tests::code_asm::*;
use integration_tests::guest_asm::{rtc_in, rtc_out};
use integration_tests::{assemble, require_kvm, run_vmm_until, TempFile};
use vmm_bin::exit_status::{debug_exit_status, LIMIT_REACHED};

const LOAD: u64 = 0x1000;
/// The real-mode stub: the waking vector (CS = 0x300, IP = 0).
const STUB: u64 = 0x3000;
/// Written 0 before the sleep, 1 by any instruction after it.
const MARKER: u64 = 0x5000;
/// PM1a_EVT_BLK as the FADT gives it, for the real-mode stub.
const PM1A_EVT: u64 = 0x5008;
/// Debug-exit values: tables not found, still running after SLP_EN.
const NOT_FOUND: i32 = 0x61;
const DID_NOT_SLEEP: i32 = 0x7e;
/// The stub's report: 0x10 | WAK_STS (1) | RTC_STS (2) | marker clean (4)
/// | RTC AF (8).
const WOKE_ALL_OK: u32 = 0x1f;

fn print(a: &mut CodeAssembler, text: &[u8]) {
    a.mov(dx, 0xe9).unwrap();
    for &b in text {
        a.mov(al, i32::from(b)).unwrap();
        a.out(dx, al).unwrap();
    }
}

/// The first run, in long mode. `rtc_en`: set PM1_EN.RTC_EN (without it
/// the alarm must not wake the VM).
fn sleeper(rtc_en: bool) -> Vec<u8> {
    assemble(64, LOAD, |a| {
        let mut fail = a.create_label();
        // RSDP in the BIOS area, XSDT at +24, its entries from +36.
        let mut scan = a.create_label();
        let mut found = a.create_label();
        a.mov(rsi, 0xe_0000u64).unwrap();
        a.mov(rax, u64::from_le_bytes(*b"RSD PTR ")).unwrap();
        a.set_label(&mut scan).unwrap();
        a.cmp(qword_ptr(rsi), rax).unwrap();
        a.je(found).unwrap();
        a.add(rsi, 16).unwrap();
        a.cmp(rsi, 0x10_0000).unwrap();
        a.jb(scan).unwrap();
        a.jmp(fail).unwrap();
        a.set_label(&mut found).unwrap();
        a.mov(rbx, qword_ptr(rsi + 24)).unwrap();
        a.mov(ecx, dword_ptr(rbx + 4)).unwrap();
        a.add(rcx, rbx).unwrap();
        a.lea(rdi, qword_ptr(rbx + 36)).unwrap();
        let mut next = a.create_label();
        let mut fadt = a.create_label();
        a.set_label(&mut next).unwrap();
        a.cmp(rdi, rcx).unwrap();
        a.jae(fail).unwrap();
        a.mov(rdx, qword_ptr(rdi)).unwrap();
        a.cmp(dword_ptr(rdx), u32::from_le_bytes(*b"FACP") as i32)
            .unwrap();
        a.je(fadt).unwrap();
        a.add(rdi, 8).unwrap();
        a.jmp(next).unwrap();
        a.set_label(&mut fadt).unwrap();
        // FADT: FIRMWARE_CTRL +36, PM1a_EVT_BLK +56, PM1a_CNT_BLK +64.
        a.mov(ebx, dword_ptr(rdx + 36)).unwrap();
        a.mov(r12d, dword_ptr(rdx + 56)).unwrap();
        a.mov(r13d, dword_ptr(rdx + 64)).unwrap();
        a.cmp(dword_ptr(rbx), u32::from_le_bytes(*b"FACS") as i32)
            .unwrap();
        a.jne(fail).unwrap();
        a.mov(dword_ptr(rbx + 12), STUB as i32).unwrap();
        a.mov(dword_ptr(MARKER), 0).unwrap();
        a.mov(dword_ptr(PM1A_EVT), r12d).unwrap();
        // PM1_STS: clear everything (write 1s); PM1_EN: RTC_EN or nothing.
        a.mov(edx, r12d).unwrap();
        a.mov(ax, 0xffff).unwrap();
        a.out(dx, ax).unwrap();
        a.add(edx, 2).unwrap();
        a.mov(ax, if rtc_en { 0x0400 } else { 0 }).unwrap();
        a.out(dx, ax).unwrap();
        // RTC in binary mode; the alarm at (seconds + 2) % 60, any minute
        // and hour; AIE.
        rtc_out(a, 0x0b, 0x06);
        let mut uip = a.create_label();
        a.set_label(&mut uip).unwrap();
        rtc_in(a, 0x0a);
        a.test(al, 0x80).unwrap();
        a.jnz(uip).unwrap();
        rtc_in(a, 0x00);
        a.add(al, 2).unwrap();
        let mut no_wrap = a.create_label();
        a.cmp(al, 60).unwrap();
        a.jb(no_wrap).unwrap();
        a.sub(al, 60).unwrap();
        a.set_label(&mut no_wrap).unwrap();
        a.mov(bl, al).unwrap();
        a.mov(al, 0x01).unwrap();
        a.out(0x70, al).unwrap();
        a.mov(al, bl).unwrap();
        a.out(0x71, al).unwrap();
        rtc_out(a, 0x03, 0xc0);
        rtc_out(a, 0x05, 0xc0);
        rtc_in(a, 0x0c);
        rtc_out(a, 0x0b, 0x26);
        print(a, b"sleep\n");
        // S3: SLP_TYP 1, SLP_EN.
        a.mov(edx, r13d).unwrap();
        a.mov(ax, 0x2400).unwrap();
        a.out(dx, ax).unwrap();
        // Never reached if the VM slept at once.
        a.mov(dword_ptr(MARKER), 1).unwrap();
        a.mov(al, DID_NOT_SLEEP).unwrap();
        a.out(0xf4, al).unwrap();
        a.set_label(&mut fail).unwrap();
        a.mov(al, NOT_FOUND).unwrap();
        a.out(0xf4, al).unwrap();
        a.hlt().unwrap();
    })
}

/// The waking vector's code, 16-bit, at CS:0.
fn stub() -> Vec<u8> {
    assemble(16, 0, |a| {
        print(a, b"woke\n");
        a.mov(bl, 0x10).unwrap();
        a.mov(dx, word_ptr(PM1A_EVT)).unwrap();
        a.in_(ax, dx).unwrap();
        for (bit, flag) in [(0x8000, 1), (0x0400, 2)] {
            let mut skip = a.create_label();
            a.test(ax, bit).unwrap();
            a.jz(skip).unwrap();
            a.or(bl, flag).unwrap();
            a.set_label(&mut skip).unwrap();
        }
        let mut dirty = a.create_label();
        a.cmp(dword_ptr(MARKER), 0).unwrap();
        a.jne(dirty).unwrap();
        a.or(bl, 4).unwrap();
        a.set_label(&mut dirty).unwrap();
        rtc_in(a, 0x0c);
        let mut no_af = a.create_label();
        a.test(al, 0x20).unwrap();
        a.jz(no_af).unwrap();
        a.or(bl, 8).unwrap();
        a.set_label(&mut no_af).unwrap();
        a.mov(al, bl).unwrap();
        a.out(0xf4, al).unwrap();
        a.hlt().unwrap();
    })
}

fn image(rtc_en: bool) -> Vec<u8> {
    let mut img = sleeper(rtc_en);
    assert!(img.len() as u64 <= STUB - LOAD);
    img.resize((STUB - LOAD) as usize, 0x90);
    img.extend_from_slice(&stub());
    img
}

fn run(rtc_en: bool, cpus: &str, limit: Duration) -> integration_tests::StreamedRun {
    let g = TempFile::with_bytes(&image(rtc_en));
    run_vmm_until(
        &[
            "--kernel",
            g.path(),
            "--mode",
            "long",
            "--platform",
            "pc",
            "--cpus",
            cpus,
            "--timeout",
            "20",
            "-v",
        ],
        |_| false,
        limit,
    )
}

fn check_wake(cpus: &str) {
    require_kvm();
    let r = run(true, cpus, Duration::from_secs(60));
    let report = format!(
        "status {:?}, lines {:?}, stderr: {}",
        r.status, r.lines, r.stderr
    );
    let sleep = r
        .find("sleep")
        .unwrap_or_else(|| panic!("never slept: {report}"));
    let woke = r
        .find("woke")
        .unwrap_or_else(|| panic!("never woke at the FACS vector: {report}"));
    let slept = (woke.0 - sleep.0).as_secs_f64();
    eprintln!("S3 ({cpus} vCPU): slept {slept:.3} s, woke in real mode at the FACS vector");
    assert_eq!(
        r.status,
        Some(debug_exit_status(WOKE_ALL_OK)),
        "the stub reports 0x10 | WAK_STS 1 | RTC_STS 2 | marker clean 4 | AF 8: {report}"
    );
    // The alarm was set 2 s ahead at some fraction of a second.
    assert!((0.9..2.3).contains(&slept), "slept {slept:.3} s: {report}");
    assert!(r.stderr.contains("suspended (ACPI S3)"), "{report}");
    assert!(
        r.stderr.contains("resumes at RealMode { vector: 12288 }"),
        "the boot processor resumed at the FACS vector 0x3000: {report}"
    );
}

#[test]
fn test_s3_wakes_by_rtc_alarm_at_the_facs_vector() {
    check_wake("1");
}

#[test]
fn test_s3_wakes_with_the_ap_left_waiting_for_sipi() {
    // The AP never started: it sits in KVM_RUN waiting for SIPI and must
    // be stopped for the sleep and reset to wait-for-SIPI at the wake.
    check_wake("2");
}

#[test]
fn test_s3_without_rtc_en_sleeps_on() {
    require_kvm();
    let g = TempFile::with_bytes(&image(false));
    let r = run_vmm_until(
        &[
            "--kernel",
            g.path(),
            "--mode",
            "long",
            "--platform",
            "pc",
            "--timeout",
            "4",
        ],
        |_| false,
        Duration::from_secs(30),
    );
    let report = format!(
        "status {:?}, lines {:?}, stderr: {}",
        r.status, r.lines, r.stderr
    );
    assert!(r.find("sleep").is_some(), "{report}");
    assert!(r.find("woke").is_none(), "woke without RTC_EN: {report}");
    assert_eq!(
        r.status,
        Some(LIMIT_REACHED),
        "the timeout ends it: {report}"
    );
}
