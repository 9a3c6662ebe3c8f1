//! Interrupt-driven serial input on the PC platform: the guest enables the
//! UART's receive interrupt (IRQ 4 through the in-kernel PIC, delivered by
//! irqfd), and its handler echoes every byte the test writes to the VMM's
//! stdin. Nothing may be lost or reordered, even when the input is much
//! larger than the UART FIFO and the VMM's queue (flow control).

use std::io::Write;
use std::process::Stdio;

use integration_tests::code_asm::*;
use integration_tests::guest_asm::idt_gate64;
use integration_tests::{assemble, require_kvm, vmm_command, TempFile};
use vmm_bin::exit_status::debug_exit_status;

const LOAD: u64 = 0x1000;
const HANDLER: u64 = 0x1400;
/// Stubs for every other vector: exceptions report their vector through
/// debug-exit (so a test failure says which), stray IRQs are acknowledged.
const STUBS: u64 = 0x1600;
const STUB_SIZE: u64 = 16;
const IDTR: u64 = 0x1bf0;
const IDT: u64 = 0x1c00;
const QUIT_FLAG: u64 = 0x6000;
/// IRQ 4 after remapping the master PIC to vector 0x20.
const COM1_VECTOR: u64 = 0x24;
/// Vectors the IDT covers: exceptions and both PICs' IRQs.
const VECTORS: u64 = 0x30;

/// Long-mode guest: PIC remapped to 0x20, only IRQ 4 unmasked, UART RX
/// interrupt on; the handler echoes bytes until it sees 'q'.
fn echo_guest() -> Vec<u8> {
    let main = assemble(64, LOAD, |a| {
        // A stack for interrupt frames (the entry state leaves RSP = 0).
        a.mov(rsp, 0x7000u64).unwrap();
        a.mov(dword_ptr(QUIT_FLAG), 0).unwrap();
        a.lidt(ptr(IDTR)).unwrap();
        // 8259A init: ICW1-ICW4 for both PICs, vector bases 0x20/0x28.
        for (port, val) in [
            (0x20, 0x11),
            (0xa0, 0x11),
            (0x21, 0x20),
            (0xa1, 0x28),
            (0x21, 0x04),
            (0xa1, 0x02),
            (0x21, 0x01),
            (0xa1, 0x01),
            (0x21, 0xef),
            (0xa1, 0xff), // mask all but IRQ 4
        ] {
            a.mov(al, val).unwrap();
            a.out(port, al).unwrap();
        }
        a.mov(dx, 0x3fc).unwrap(); // MCR: OUT2 gates the IRQ on a PC
        a.mov(al, 0x08).unwrap();
        a.out(dx, al).unwrap();
        a.mov(dx, 0x3f9).unwrap(); // IER: received-data interrupt
        a.mov(al, 0x01).unwrap();
        a.out(dx, al).unwrap();
        let mut idle = a.create_label();
        a.set_label(&mut idle).unwrap();
        a.sti().unwrap();
        a.hlt().unwrap();
        a.cmp(dword_ptr(QUIT_FLAG), 0).unwrap();
        a.je(idle).unwrap();
        a.mov(al, 1).unwrap();
        a.out(0xf4, al).unwrap();
    });
    let handler = assemble(64, HANDLER, |a| {
        a.push(rax).unwrap();
        a.push(rdx).unwrap();
        let mut more = a.create_label();
        let mut done = a.create_label();
        a.set_label(&mut more).unwrap();
        a.mov(dx, 0x3fd).unwrap(); // LSR
        a.in_(al, dx).unwrap();
        a.test(al, 1).unwrap(); // data ready
        a.jz(done).unwrap();
        a.mov(dx, 0x3f8).unwrap();
        a.in_(al, dx).unwrap();
        a.out(dx, al).unwrap(); // echo
        a.cmp(al, b'q' as i32).unwrap();
        a.jne(more).unwrap();
        a.mov(dword_ptr(QUIT_FLAG), 1).unwrap();
        a.jmp(more).unwrap();
        a.set_label(&mut done).unwrap();
        a.mov(al, 0x20).unwrap(); // EOI
        a.out(0x20, al).unwrap();
        a.pop(rdx).unwrap();
        a.pop(rax).unwrap();
        a.iretq().unwrap();
    });
    let mut image = main;
    assert!(image.len() <= (HANDLER - LOAD) as usize);
    image.resize((HANDLER - LOAD) as usize, 0x90);
    image.extend_from_slice(&handler);
    assert!(image.len() as u64 <= STUBS - LOAD);
    image.resize((STUBS - LOAD) as usize, 0x90);
    for v in 0..VECTORS {
        let stub = assemble(64, STUBS + v * STUB_SIZE, |a| {
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
        image.extend_from_slice(&stub);
        image.resize((STUBS - LOAD + (v + 1) * STUB_SIZE) as usize, 0x90);
    }
    assert!(image.len() as u64 <= IDTR - LOAD);
    image.resize((IDTR - LOAD) as usize, 0);
    let limit = (VECTORS * 16 - 1) as u16;
    image.extend_from_slice(&limit.to_le_bytes());
    image.extend_from_slice(&IDT.to_le_bytes());
    image.resize((IDT - LOAD) as usize, 0);
    for v in 0..VECTORS {
        let target = if v == COM1_VECTOR {
            HANDLER
        } else {
            STUBS + v * STUB_SIZE
        };
        image.extend_from_slice(&idt_gate64(target));
    }
    image
}

fn echo(input: &[u8]) -> (i32, Vec<u8>, String) {
    let g = TempFile::with_bytes(&echo_guest());
    let mut child = vmm_command()
        .args([
            "--kernel",
            g.path(),
            "--mode",
            "long",
            "--platform",
            "pc",
            "--timeout",
            "60",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    // Write from another thread: with flow control the pipe fills and this
    // write blocks until the guest has read enough.
    let writer = std::thread::spawn(move || {
        for chunk in data.chunks(997) {
            stdin.write_all(chunk).unwrap();
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn test_serial_interrupts_echo_input() {
    require_kvm();
    let (st, stdout, stderr) = echo(b"hello, guest\nq");
    assert_eq!(st, debug_exit_status(1), "stderr: {stderr}");
    assert_eq!(stdout, b"hello, guest\nq");
}

#[test]
fn test_serial_input_larger_than_fifo_is_not_lost() {
    require_kvm();
    // 20 KB: far beyond the 64-byte FIFO and the 4 KiB host-side queue.
    let mut input: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    input.retain(|b| *b != b'q');
    input.push(b'q');
    let (st, stdout, stderr) = echo(&input);
    assert_eq!(st, debug_exit_status(1), "stderr: {stderr}");
    assert_eq!(stdout.len(), input.len());
    assert!(stdout == input, "echo differs from input (order or loss)");
}
