//! Interrupts on the PC platform, measured from inside the guest with its
//! TSC (whose rate the host reads from KVM), so host load cannot skew them:
//! PIT ticks against time, and the latency from raising an interrupt to the
//! guest's handler.

use integration_tests::code_asm::*;
use integration_tests::guest_asm::idt_gate64;
use integration_tests::{assemble, le_u64, require_kvm, run_vmm, TempFile};
use vmm_bin::exit_status::debug_exit_status;

const LOAD: u64 = 0x1000;
const IDTR: u64 = 0x1bf0;
const IDT: u64 = 0x1c00;
const STUBS: u64 = 0x1600;
const STUB_SIZE: u64 = 16;
const VECTORS: u64 = 0x30;
/// Guest variables.
const TICKS: u64 = 0x6000;
const TSC_AT: u64 = 0x6010;

/// Lays out main code at LOAD, `handlers` (vector, code built at a given
/// address) in the stub area, and an IDT whose other vectors report
/// exceptions (0x80 | vector through debug-exit) or EOI stray IRQs.
/// A handler: its vector and the code building it.
type Handler = (u64, fn(&mut CodeAssembler));

fn image(main: Vec<u8>, handlers: &[Handler]) -> Vec<u8> {
    let mut img = main;
    assert!(img.len() as u64 <= STUBS - LOAD);
    img.resize((STUBS - LOAD) as usize, 0x90);
    let mut targets = Vec::new();
    for v in 0..VECTORS {
        let at = STUBS + v * STUB_SIZE;
        targets.push(at);
        let code = assemble(64, at, |a| {
            if v < 0x20 {
                a.mov(al, (0x80 | v) as i32).unwrap();
                a.out(0xf4, al).unwrap();
            } else {
                a.push(rax).unwrap();
                a.mov(al, 0x20).unwrap();
                a.out(0x20, al).unwrap();
                a.pop(rax).unwrap();
                a.iretq().unwrap();
            }
        });
        assert!(code.len() as u64 <= STUB_SIZE);
        img.extend_from_slice(&code);
        img.resize((at + STUB_SIZE - LOAD) as usize, 0x90);
    }
    // Real handlers go after the stubs.
    let mut at = STUBS + VECTORS * STUB_SIZE;
    for (v, build) in handlers {
        let code = assemble(64, at, build);
        img.extend_from_slice(&code);
        targets[*v as usize] = at;
        at += code.len() as u64;
    }
    assert!(img.len() as u64 <= IDTR - LOAD);
    img.resize((IDTR - LOAD) as usize, 0);
    img.extend_from_slice(&((VECTORS * 16 - 1) as u16).to_le_bytes());
    img.extend_from_slice(&IDT.to_le_bytes());
    img.resize((IDT - LOAD) as usize, 0);
    for t in targets {
        img.extend_from_slice(&idt_gate64(t));
    }
    img
}

/// Remaps the PICs to 0x20/0x28 and leaves only IRQs in `unmasked` open.
fn init_pics(a: &mut CodeAssembler, master_mask: i32) {
    for (port, val) in [
        (0x20, 0x11),
        (0xa0, 0x11),
        (0x21, 0x20),
        (0xa1, 0x28),
        (0x21, 0x04),
        (0xa1, 0x02),
        (0x21, 0x01),
        (0xa1, 0x01),
        (0x21, master_mask),
        (0xa1, 0xff),
    ] {
        a.mov(al, val).unwrap();
        a.out(port, al).unwrap();
    }
}

/// Sends the 8 bytes at `addr` to the debug console.
fn dump_u64(a: &mut CodeAssembler, addr: u64) {
    a.mov(rsi, addr).unwrap();
    a.mov(ecx, 8).unwrap();
    a.mov(dx, 0xe9).unwrap();
    a.rep().outsb().unwrap();
}

/// The guest's TSC rate in kHz, as KVM reports it for a fresh vCPU.
fn guest_tsc_khz() -> u64 {
    let kvm = kvm_ioctls::Kvm::new().unwrap();
    let vm = kvm.create_vm().unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    u64::from(vcpu.get_tsc_khz().unwrap())
}

fn run(img: Vec<u8>) -> (i32, Vec<u8>, String) {
    let g = TempFile::with_bytes(&img);
    let out = run_vmm(&[
        "--kernel",
        g.path(),
        "--mode",
        "long",
        "--platform",
        "pc",
        "--serial",
        "stdio",
        "--timeout",
        "60",
    ]);
    (out.status, out.stdout_raw, out.stderr)
}

#[test]
fn test_pit_ticks_at_the_programmed_rate() {
    require_kvm();
    const WARMUP: i32 = 10;
    const COUNTED: i32 = 300;
    let main = assemble(64, LOAD, |a| {
        a.mov(rsp, 0x7000u64).unwrap();
        a.mov(qword_ptr(TICKS), 0).unwrap();
        a.lidt(ptr(IDTR)).unwrap();
        init_pics(a, 0xfe); // IRQ 0 only
                            // PIT channel 0, mode 2 (rate generator), divisor 1193: ~1000.15 Hz.
        a.mov(al, 0x34).unwrap();
        a.out(0x43, al).unwrap();
        a.mov(al, 1193 & 0xff).unwrap();
        a.out(0x40, al).unwrap();
        a.mov(al, 1193 >> 8).unwrap();
        a.out(0x40, al).unwrap();
        a.sti().unwrap();
        for (target, slot) in [(WARMUP, TSC_AT), (WARMUP + COUNTED, TSC_AT + 8)] {
            let mut wait = a.create_label();
            a.set_label(&mut wait).unwrap();
            a.hlt().unwrap();
            a.cmp(qword_ptr(TICKS), target).unwrap();
            a.jb(wait).unwrap();
            a.rdtsc().unwrap();
            a.shl(rdx, 32).unwrap();
            a.or(rax, rdx).unwrap();
            a.mov(qword_ptr(slot), rax).unwrap();
        }
        a.cli().unwrap();
        dump_u64(a, TSC_AT);
        dump_u64(a, TSC_AT + 8);
        a.mov(al, 0).unwrap();
        a.out(0xf4, al).unwrap();
    });
    let img = image(
        main,
        &[(0x20, |a| {
            a.inc(qword_ptr(TICKS)).unwrap();
            a.push(rax).unwrap();
            a.mov(al, 0x20).unwrap();
            a.out(0x20, al).unwrap();
            a.pop(rax).unwrap();
            a.iretq().unwrap();
        })],
    );
    let (st, out, stderr) = run(img);
    assert_eq!(st, debug_exit_status(0), "stderr: {stderr}");
    assert_eq!(out.len(), 16, "two TSC values expected: {out:?}");
    let (t0, t1) = (le_u64(&out, 0), le_u64(&out, 8));
    let khz = guest_tsc_khz();
    let ms = (t1 - t0) as f64 / khz as f64;
    let expected = f64::from(COUNTED) * 1193.0 / 1_193_182.0 * 1e3;
    eprintln!("PIT: {COUNTED} ticks took {ms:.1} ms of guest TSC (expected {expected:.1} ms)");
    assert!(
        (ms - expected).abs() < expected * 0.05,
        "{COUNTED} PIT ticks took {ms:.1} ms, expected {expected:.1} ms +- 5%"
    );
}

#[test]
fn test_interrupt_latency_from_raise_to_handler() {
    require_kvm();
    // The UART in loopback: writing THR puts the byte in RBR and raises the
    // receive interrupt (IRQ 4, irqfd). Latency = TSC at the handler's first
    // instruction minus TSC just before the write (includes the port exit).
    const SAMPLES: i32 = 50;
    const HANDLER_TSC: u64 = 0x6020;
    const BEFORE_TSC: u64 = 0x6028;
    const BEST: u64 = 0x6030;
    let main = assemble(64, LOAD, |a| {
        a.mov(rsp, 0x7000u64).unwrap();
        a.mov(qword_ptr(TICKS), 0).unwrap();
        a.mov(rax, -1i64).unwrap();
        a.mov(qword_ptr(BEST), rax).unwrap();
        a.lidt(ptr(IDTR)).unwrap();
        init_pics(a, 0xef); // IRQ 4 only
        a.mov(dx, 0x3fc).unwrap();
        a.mov(al, 0x18).unwrap(); // MCR: OUT2 + loopback
        a.out(dx, al).unwrap();
        a.mov(dx, 0x3f9).unwrap();
        a.mov(al, 0x01).unwrap(); // IER: received data
        a.out(dx, al).unwrap();
        a.sti().unwrap();
        let mut again = a.create_label();
        a.set_label(&mut again).unwrap();
        a.rdtsc().unwrap();
        a.shl(rdx, 32).unwrap();
        a.or(rax, rdx).unwrap();
        a.mov(qword_ptr(BEFORE_TSC), rax).unwrap();
        a.mov(dx, 0x3f8).unwrap();
        a.mov(al, b'x' as i32).unwrap();
        a.out(dx, al).unwrap();
        let mut wait = a.create_label();
        a.set_label(&mut wait).unwrap();
        a.cmp(qword_ptr(HANDLER_TSC), 0).unwrap();
        a.je(wait).unwrap();
        a.mov(rax, qword_ptr(HANDLER_TSC)).unwrap();
        a.sub(rax, qword_ptr(BEFORE_TSC)).unwrap();
        let mut keep = a.create_label();
        a.cmp(rax, qword_ptr(BEST)).unwrap();
        a.jae(keep).unwrap();
        a.mov(qword_ptr(BEST), rax).unwrap();
        a.set_label(&mut keep).unwrap();
        a.mov(qword_ptr(HANDLER_TSC), 0).unwrap();
        a.inc(qword_ptr(TICKS)).unwrap();
        a.cmp(qword_ptr(TICKS), SAMPLES).unwrap();
        a.jb(again).unwrap();
        a.cli().unwrap();
        a.mov(dx, 0x3fc).unwrap();
        a.mov(al, 0).unwrap(); // loopback off before dumping
        a.out(dx, al).unwrap();
        dump_u64(a, BEST);
        a.mov(al, 0).unwrap();
        a.out(0xf4, al).unwrap();
    });
    let img = image(
        main,
        &[(0x24, |a| {
            a.push(rax).unwrap();
            a.push(rdx).unwrap();
            a.rdtsc().unwrap();
            a.shl(rdx, 32).unwrap();
            a.or(rax, rdx).unwrap();
            a.mov(qword_ptr(HANDLER_TSC), rax).unwrap();
            a.mov(dx, 0x3f8).unwrap();
            a.in_(al, dx).unwrap(); // consume the byte
            a.mov(al, 0x20).unwrap();
            a.out(0x20, al).unwrap();
            a.pop(rdx).unwrap();
            a.pop(rax).unwrap();
            a.iretq().unwrap();
        })],
    );
    let (st, out, stderr) = run(img);
    assert_eq!(st, debug_exit_status(0), "stderr: {stderr}");
    assert_eq!(out.len(), 8, "one TSC delta expected: {out:?}");
    let best = le_u64(&out, 0);
    assert_ne!(best, u64::MAX, "no interrupt was ever delivered");
    let us = best as f64 / guest_tsc_khz() as f64 * 1e3;
    eprintln!("interrupt latency (UART loopback write -> handler), best of {SAMPLES}: {us:.1} us");
    assert!(best > 0);
}
