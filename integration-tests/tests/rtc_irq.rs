//! RTC interrupts (IRQ 8 through the slave 8259, a KVM irqfd) on the PC
//! platform, seen from a long-mode guest whose handler reads register C
//! and counts each flag. The guest prints a line at fixed counts; the test
//! times the lines on the host, so the rates are host-measured:
//!
//! - periodic at 64 Hz (register A = 0x2a): 192 ticks between two lines;
//! - update-ended: four lines a second apart;
//! - alarm: set 2 s ahead (seconds byte; minutes and hours don't care),
//!   it arrives within that second, at the second it was set for.
//!
//! Every interrupt within a phase must find IRQF set in register C (no
//! spurious pulse).

use std::time::Duration;

use integration_tests::code_asm::*;
use integration_tests::guest_asm::{idt_gate64, rtc_in, rtc_out};
use integration_tests::{assemble, require_kvm, run_vmm_until, TempFile};
use vmm_bin::exit_status::debug_exit_status;

const LOAD: u64 = 0x1000;
const STUBS: u64 = 0x1600;
const STUB_SIZE: u64 = 16;
const HANDLER: u64 = 0x1900;
const IDTR: u64 = 0x1bf0;
const IDT: u64 = 0x1c00;
const VECTORS: u64 = 0x30;
/// IRQ 8 with the slave PIC based at 0x28.
const RTC_VECTOR: u64 = 0x28;
/// Guest counters, written by the handler.
const PF: u64 = 0x6000;
const UF: u64 = 0x6008;
const AF: u64 = 0x6010;
const SPURIOUS: u64 = 0x6018;
const IRQS: u64 = 0x6020;
/// Non-zero once a phase is under way: only then does an interrupt with
/// IRQF clear count as spurious. At a phase change the guest reads C with
/// interrupts off, so an IRQ 8 already latched by the PIC for the old
/// phase is taken right after and finds C clear, as on real hardware.
const STEADY: u64 = 0x6028;

const WARMUP: i32 = 16;
const COUNTED: i32 = 192;
const RATE_HZ: f64 = 64.0;

/// Prints `text` on the debug console (DX = 0xe9).
fn print(a: &mut CodeAssembler, text: &[u8]) {
    for &b in text {
        a.mov(al, i32::from(b)).unwrap();
        a.out(dx, al).unwrap();
    }
}

/// Waits with interrupts on until the counter at `addr` reaches `n`
/// (sti; hlt is atomic, so an interrupt cannot slip in before the hlt).
fn wait_for(a: &mut CodeAssembler, addr: u64, n: i32) {
    let mut again = a.create_label();
    let mut done = a.create_label();
    a.set_label(&mut again).unwrap();
    a.cli().unwrap();
    a.cmp(qword_ptr(addr), n).unwrap();
    a.jae(done).unwrap();
    a.sti().unwrap();
    a.hlt().unwrap();
    a.jmp(again).unwrap();
    a.set_label(&mut done).unwrap();
    a.sti().unwrap();
}

fn guest() -> Vec<u8> {
    let main = assemble(64, LOAD, |a| {
        a.mov(rsp, 0x7000u64).unwrap();
        for v in [PF, UF, AF, SPURIOUS, IRQS] {
            a.mov(qword_ptr(v), 0).unwrap();
        }
        a.mov(qword_ptr(STEADY), 1).unwrap();
        a.lidt(ptr(IDTR)).unwrap();
        // 8259s at 0x20/0x28; open the cascade (IRQ 2) and IRQ 8 only.
        for (port, val) in [
            (0x20, 0x11),
            (0xa0, 0x11),
            (0x21, 0x20),
            (0xa1, 0x28),
            (0x21, 0x04),
            (0xa1, 0x02),
            (0x21, 0x01),
            (0xa1, 0x01),
            (0x21, 0xfb),
            (0xa1, 0xfe),
        ] {
            a.mov(al, val).unwrap();
            a.out(port, al).unwrap();
        }
        a.mov(dx, 0xe9).unwrap();
        // Periodic: 32.768 kHz base, RS = 1010 (64 Hz); PIE, 24 h, BCD.
        // C is read first: enabling PIE while PF is already set (the
        // 1024 Hz reset rate has been setting it) interrupts at once.
        rtc_out(a, 0x0a, 0x2a);
        rtc_in(a, 0x0c);
        rtc_out(a, 0x0b, 0x42);
        a.sti().unwrap();
        wait_for(a, PF, WARMUP);
        print(a, b"P0\n");
        wait_for(a, PF, WARMUP + COUNTED);
        print(a, b"P1\n");
        // Update-ended only.
        a.cli().unwrap();
        rtc_out(a, 0x0b, 0x12);
        rtc_in(a, 0x0c);
        a.mov(qword_ptr(UF), 0).unwrap();
        a.mov(qword_ptr(STEADY), 0).unwrap();
        for (i, line) in [b"U1\n", b"U2\n", b"U3\n", b"U4\n"].iter().enumerate() {
            wait_for(a, UF, i as i32 + 1);
            a.mov(qword_ptr(STEADY), 1).unwrap();
            print(a, *line);
        }
        // Alarm 2 s ahead, binary mode: seconds alarm = (now + 2) % 60.
        a.cli().unwrap();
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
        a.mov(qword_ptr(AF), 0).unwrap();
        a.mov(qword_ptr(STEADY), 0).unwrap();
        rtc_out(a, 0x0b, 0x26);
        // "A<'0' + second>"
        a.mov(al, b'A' as i32).unwrap();
        a.out(dx, al).unwrap();
        a.mov(al, bl).unwrap();
        a.add(al, 0x30).unwrap();
        a.out(dx, al).unwrap();
        print(a, b"\n");
        wait_for(a, AF, 1);
        a.cli().unwrap();
        rtc_in(a, 0x00);
        a.add(al, 0x30).unwrap();
        a.mov(bl, al).unwrap();
        a.mov(al, b'F' as i32).unwrap();
        a.out(dx, al).unwrap();
        a.mov(al, bl).unwrap();
        a.out(dx, al).unwrap();
        print(a, b"\n");
        // "S<'0' + spurious>", then exit.
        a.mov(al, b'S' as i32).unwrap();
        a.out(dx, al).unwrap();
        a.mov(al, byte_ptr(SPURIOUS)).unwrap();
        a.add(al, 0x30).unwrap();
        a.out(dx, al).unwrap();
        print(a, b"\n");
        a.mov(al, 0).unwrap();
        a.out(0xf4, al).unwrap();
    });
    let handler = assemble(64, HANDLER, |a| {
        a.push(rax).unwrap();
        a.inc(qword_ptr(IRQS)).unwrap();
        rtc_in(a, 0x0c);
        for (bit, counter) in [(0x40, PF), (0x10, UF), (0x20, AF)] {
            let mut skip = a.create_label();
            a.test(al, bit).unwrap();
            a.jz(skip).unwrap();
            a.inc(qword_ptr(counter)).unwrap();
            a.set_label(&mut skip).unwrap();
        }
        let mut irqf = a.create_label();
        a.test(al, 0x80).unwrap();
        a.jnz(irqf).unwrap();
        a.cmp(qword_ptr(STEADY), 0).unwrap();
        a.je(irqf).unwrap();
        a.inc(qword_ptr(SPURIOUS)).unwrap();
        a.set_label(&mut irqf).unwrap();
        a.mov(al, 0x20).unwrap();
        a.out(0xa0, al).unwrap();
        a.out(0x20, al).unwrap();
        a.pop(rax).unwrap();
        a.iretq().unwrap();
    });
    let mut img = main;
    assert!(
        img.len() as u64 <= STUBS - LOAD,
        "main is {} bytes",
        img.len()
    );
    img.resize((STUBS - LOAD) as usize, 0x90);
    for v in 0..VECTORS {
        let at = STUBS + v * STUB_SIZE;
        let stub = assemble(64, at, |a| {
            if v < 0x20 {
                // Exception: exit with 0x80 | vector.
                a.mov(al, (0x80 | v) as i32).unwrap();
                a.out(0xf4, al).unwrap();
            } else {
                a.push(rax).unwrap();
                a.mov(al, 0x20).unwrap();
                if v >= 0x28 {
                    a.out(0xa0, al).unwrap();
                }
                a.out(0x20, al).unwrap();
                a.pop(rax).unwrap();
                a.iretq().unwrap();
            }
        });
        assert!(stub.len() as u64 <= STUB_SIZE);
        img.extend_from_slice(&stub);
        img.resize((at + STUB_SIZE - LOAD) as usize, 0x90);
    }
    img.resize((HANDLER - LOAD) as usize, 0x90);
    img.extend_from_slice(&handler);
    assert!(img.len() as u64 <= IDTR - LOAD);
    img.resize((IDTR - LOAD) as usize, 0);
    img.extend_from_slice(&((VECTORS * 16 - 1) as u16).to_le_bytes());
    img.extend_from_slice(&IDT.to_le_bytes());
    img.resize((IDT - LOAD) as usize, 0);
    for v in 0..VECTORS {
        let target = if v == RTC_VECTOR {
            HANDLER
        } else {
            STUBS + v * STUB_SIZE
        };
        img.extend_from_slice(&idt_gate64(target));
    }
    img
}

#[test]
fn test_rtc_periodic_update_and_alarm_interrupts() {
    require_kvm();
    let g = TempFile::with_bytes(&guest());
    let run = run_vmm_until(
        &[
            "--kernel",
            g.path(),
            "--mode",
            "long",
            "--platform",
            "pc",
            "--timeout",
            "60",
        ],
        |_| false,
        Duration::from_secs(90),
    );
    let report = format!(
        "status {:?}, lines {:?}, stderr: {}",
        run.status, run.lines, run.stderr
    );
    let at = |tag: &str| {
        run.lines
            .iter()
            .find(|(_, l)| l.starts_with(tag))
            .unwrap_or_else(|| panic!("no {tag} line: {report}"))
            .clone()
    };
    // Periodic: 192 ticks between P0 and P1.
    let dt = (at("P1").0 - at("P0").0).as_secs_f64();
    let rate = f64::from(COUNTED) / dt;
    eprintln!("RTC periodic: {COUNTED} interrupts in {dt:.3} s = {rate:.2} Hz (programmed 64 Hz)");
    assert!(
        (rate - RATE_HZ).abs() < RATE_HZ * 0.05,
        "periodic rate {rate:.2} Hz, want 64 Hz +- 5%: {report}"
    );
    // Update-ended: about one per second.
    let u: Vec<f64> = ["U1", "U2", "U3", "U4"]
        .iter()
        .map(|t| at(t).0.as_secs_f64())
        .collect();
    let gaps: Vec<f64> = u.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!("RTC update-ended: gaps {gaps:.3?} s");
    for g in &gaps {
        assert!((0.8..1.2).contains(g), "update gap {g:.3} s: {report}");
    }
    let mean = (u[3] - u[0]) / 3.0;
    assert!(
        (mean - 1.0).abs() < 0.05,
        "mean update gap {mean:.3} s: {report}"
    );
    // Alarm: set for second S (2 s ahead), fires within that second, at S.
    let (set_t, set_line) = at("A");
    let (fire_t, fire_line) = at("F");
    let wait = (fire_t - set_t).as_secs_f64();
    let want = set_line.as_bytes()[1];
    let got = fire_line.as_bytes()[1];
    eprintln!(
        "RTC alarm: set for second {}, fired at second {} after {wait:.3} s",
        want - 0x30,
        got - 0x30
    );
    assert_eq!(got, want, "the alarm fired at another second: {report}");
    assert!(
        (0.9..2.2).contains(&wait),
        "alarm after {wait:.3} s: {report}"
    );
    assert_eq!(at("S").1, "S0", "interrupts with IRQF clear: {report}");
    assert_eq!(run.status, Some(debug_exit_status(0)), "{report}");
}
