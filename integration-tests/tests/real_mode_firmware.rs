//! What a PC BIOS leaves for a real-mode program, on the PC platform: the
//! 8259s at vectors 0x08/0x70 with the BIOS's mask, PIT channel 0 at
//! 18.2 Hz, an IVT of `iret` stubs (EOI-sending for the IRQ vectors, a tick
//! counter for the timer) and the BIOS data area. Freestanding real-mode
//! guests that program none of it rely on it; the minimal platform keeps
//! the bare reset state.

use std::time::Duration;

use integration_tests::code_asm::*;
use integration_tests::{assemble, require_kvm, run_vmm, run_vmm_until, TempFile};
use vmm_bin::exit_status::debug_exit_status;

const LOAD: u64 = 0x1000;
/// Guest variables (DS = 0).
const TICKS: u64 = 0x6000;
const KBD: u64 = 0x6002;
const AUX: u64 = 0x6004;

/// Real-mode prologue: interrupts off, DS = SS = 0, a stack.
fn prologue(a: &mut CodeAssembler) {
    a.cli().unwrap();
    a.xor(ax, ax).unwrap();
    a.mov(ds, ax).unwrap();
    a.mov(ss, ax).unwrap();
    a.mov(sp, 0x7000).unwrap();
}

/// Where the guests' own interrupt handlers go (16-bit code has no
/// label-relative `lea` in the assembler, so they sit at fixed addresses).
const HANDLER: [u64; 2] = [0x1800, 0x1900];

/// Points IVT entry `vector` at `handler` (segment 0).
fn set_vector(a: &mut CodeAssembler, vector: u64, handler: u64) {
    a.mov(word_ptr(vector * 4), handler as i32).unwrap();
    a.mov(word_ptr(vector * 4 + 2), 0).unwrap();
}

/// `main` at LOAD and each handler at its HANDLER address, as one image.
fn image(main: Vec<u8>, handlers: &[Vec<u8>]) -> Vec<u8> {
    let mut img = main;
    for (code, at) in handlers.iter().zip(HANDLER) {
        assert!(img.len() as u64 <= at - LOAD, "code overlaps a handler");
        img.resize((at - LOAD) as usize, 0xf4);
        img.extend_from_slice(code);
    }
    img
}

fn say(a: &mut CodeAssembler, text: &[u8]) {
    for &b in text {
        a.mov(al, i32::from(b)).unwrap();
        a.out(0xe9, al).unwrap();
    }
}

/// `hlt` until the word at `var` is at least `target`.
fn wait_for(a: &mut CodeAssembler, var: u64, target: i32) {
    let mut again = a.create_label();
    a.set_label(&mut again).unwrap();
    a.hlt().unwrap();
    a.cmp(word_ptr(var), target).unwrap();
    a.jb(again).unwrap();
}

fn pc_real(img: &[u8]) -> TempFile {
    TempFile::with_bytes(img)
}

/// The guest's own IRQ 0 handler counts ticks; it never programs the PIC
/// or the PIT. It reports once after the first tick and again `N` ticks
/// later; the host times the two lines. Guest code is emulated here, but
/// the guest spends its time in `hlt`, and `N` ticks span 3 s so that a few
/// ms of reporting latency stay far inside the 5% bound.
#[test]
fn test_timer_ticks_at_18_2_hz_through_the_ivt() {
    require_kvm();
    const N: i32 = 55;
    let main = assemble(16, LOAD, |a| {
        prologue(a);
        a.mov(word_ptr(TICKS), 0).unwrap();
        set_vector(a, 0x08, HANDLER[0]);
        a.sti().unwrap();
        wait_for(a, TICKS, 1);
        say(a, b"first\n");
        wait_for(a, TICKS, 1 + N);
        say(a, b"last\n");
        a.cli().unwrap();
        a.mov(al, 0).unwrap();
        a.out(0xf4, al).unwrap();
    });
    let handler = assemble(16, HANDLER[0], |a| {
        a.push(ax).unwrap();
        a.inc(word_ptr(TICKS)).unwrap();
        a.mov(al, 0x20).unwrap();
        a.out(0x20, al).unwrap();
        a.pop(ax).unwrap();
        a.iret().unwrap();
    });
    let img = image(main, &[handler]);
    let g = pc_real(&img);
    let run = run_vmm_until(
        &[
            "--kernel",
            g.path(),
            "--mode",
            "real",
            "--platform",
            "pc",
            "--timeout",
            "30",
        ],
        |l| l == "last",
        Duration::from_secs(40),
    );
    let first = run.find("first").map(|(t, _)| *t);
    let last = run.find("last").map(|(t, _)| *t);
    let (Some(first), Some(last)) = (first, last) else {
        panic!(
            "the guest's timer handler never ran {N} times: lines {:?}, status {:?}, stderr {}",
            run.lines, run.status, run.stderr
        );
    };
    let measured = (last - first).as_secs_f64();
    let expected = f64::from(N) * 65536.0 / 1_193_182.0;
    eprintln!(
        "{N} timer ticks took {measured:.3} s of host time (18.2 Hz: {expected:.3} s), {:.2} Hz",
        f64::from(N) / measured
    );
    assert!(
        (measured - expected).abs() <= expected * 0.05,
        "{N} ticks took {measured:.3} s, expected {expected:.3} s +- 5%"
    );
}

/// IRQ 1 and IRQ 12 (through the slave and the cascade) raised by the
/// i8042's "write output buffer" commands arrive at vectors 0x09 and 0x74;
/// `int 0x10`, `int 0x13` and `int 0x1a` return; the BIOS timer stub counts
/// ticks in the BDA and sends its EOI (else a second tick never comes); the
/// BDA holds COM1, the EBDA segment, the equipment word and the base
/// memory size.
#[test]
fn test_pic_vectors_iret_stubs_and_bda() {
    require_kvm();
    let main = assemble(16, LOAD, |a| {
        prologue(a);
        a.mov(ax, 0x1234).unwrap();
        a.int(0x10).unwrap();
        a.int(0x13).unwrap();
        a.int(0x1a).unwrap();
        a.cmp(ax, 0x1234).unwrap();
        let mut same = a.create_label();
        a.je(same).unwrap();
        a.mov(al, 0x70).unwrap();
        a.out(0xf4, al).unwrap();
        a.set_label(&mut same).unwrap();
        say(a, b"I");
        a.mov(word_ptr(KBD), 0).unwrap();
        a.mov(word_ptr(AUX), 0).unwrap();
        set_vector(a, 0x09, HANDLER[0]);
        set_vector(a, 0x74, HANDLER[1]);
        // i8042: enable the aux interrupt and port (CTR 0x47).
        a.mov(al, 0x60).unwrap();
        a.out(0x64, al).unwrap();
        a.mov(al, 0x47).unwrap();
        a.out(0x60, al).unwrap();
        a.sti().unwrap();
        // A keyboard byte (IRQ 1), then a mouse byte (IRQ 12).
        a.mov(al, 0xd2).unwrap();
        a.out(0x64, al).unwrap();
        a.mov(al, 0x5a).unwrap();
        a.out(0x60, al).unwrap();
        wait_for(a, KBD, 1);
        a.mov(al, 0xd3).unwrap();
        a.out(0x64, al).unwrap();
        a.mov(al, 0xa5).unwrap();
        a.out(0x60, al).unwrap();
        wait_for(a, AUX, 1);
        // Three BIOS timer ticks counted in the BDA.
        a.mov(bx, word_ptr(0x46c)).unwrap();
        a.add(bx, 3).unwrap();
        let mut tick = a.create_label();
        a.set_label(&mut tick).unwrap();
        a.hlt().unwrap();
        a.mov(cx, word_ptr(0x46c)).unwrap();
        a.sub(cx, bx).unwrap();
        a.js(tick).unwrap();
        a.cli().unwrap();
        say(a, b"T");
        for addr in [KBD, AUX, 0x400, 0x40e, 0x410, 0x413] {
            a.mov(ax, word_ptr(addr)).unwrap();
            a.out(0xe9, al).unwrap();
            a.mov(al, ah).unwrap();
            a.out(0xe9, al).unwrap();
        }
        a.mov(al, 0).unwrap();
        a.out(0xf4, al).unwrap();
    });
    let handlers: Vec<Vec<u8>> = [(HANDLER[0], false), (HANDLER[1], true)]
        .into_iter()
        .map(|(at, slave)| {
            assemble(16, at, |a| {
                a.push(ax).unwrap();
                a.in_(al, 0x60).unwrap();
                a.mov(ah, 1).unwrap();
                a.mov(word_ptr(if slave { AUX } else { KBD }), ax).unwrap();
                a.mov(al, 0x20).unwrap();
                if slave {
                    a.out(0xa0, al).unwrap();
                }
                a.out(0x20, al).unwrap();
                a.pop(ax).unwrap();
                a.iret().unwrap();
            })
        })
        .collect();
    let img = image(main, &handlers);
    let g = pc_real(&img);
    let out = run_vmm(&[
        "--kernel",
        g.path(),
        "--mode",
        "real",
        "--platform",
        "pc",
        "--timeout",
        "30",
    ]);
    assert_eq!(
        out.status,
        debug_exit_status(0),
        "stdout {:?} stderr {}",
        out.stdout_raw,
        out.stderr
    );
    let o = &out.stdout_raw;
    assert_eq!(&o[..2], b"IT", "{o:02x?}");
    let w = |i: usize| u16::from_le_bytes([o[2 + 2 * i], o[3 + 2 * i]]);
    assert_eq!(w(0), 0x015a, "keyboard byte through vector 0x09");
    assert_eq!(w(1), 0x01a5, "mouse byte through vector 0x74");
    assert_eq!(w(2), 0x3f8, "BDA COM1");
    assert_eq!(w(3), 0x9fc0, "BDA EBDA segment: the EBDA at 0x9fc00");
    assert_eq!(w(4), 0x0206, "BDA equipment word");
    assert_eq!(w(5), 639, "BDA base memory KiB: up to the EBDA");
}

/// The minimal platform: no IVT, no BDA (all zero), as before.
#[test]
fn test_minimal_platform_keeps_the_bare_state() {
    require_kvm();
    let img = assemble(16, LOAD, |a| {
        prologue(a);
        for addr in [0x20u64, 0x22, 0x40, 0x400, 0x410, 0x413] {
            a.mov(ax, word_ptr(addr)).unwrap();
            a.out(0xe9, al).unwrap();
            a.mov(al, ah).unwrap();
            a.out(0xe9, al).unwrap();
        }
        a.hlt().unwrap();
    });
    let g = pc_real(&img);
    let out = run_vmm(&["--kernel", g.path(), "--mode", "real", "--timeout", "20"]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert_eq!(out.stdout_raw, vec![0u8; 12]);
}
