//! A guest that counts its boots in CMOS byte 0x40 (which a PC keeps across
//! a reset), prints the count and a newline on the debug console each boot,
//! and resets the machine through the i8042 (0xFE to port 0x64) until it
//! has booted `boots` times. Long mode at CPL0, loaded at 0x1000, PC
//! platform. It also checks that it boots into fresh RAM: a byte it sets
//! at 0x5000 must read 0 at the next boot, else it ends through debug-exit
//! with [`STALE_RAM`].

use iced_x86::code_asm::*;

use crate::assemble;

/// Where the guest is loaded.
pub const REBOOT_GUEST_LOAD: u64 = 0x1000;
/// Its debug-exit value once it has booted `boots` times (with `exit`).
pub const REBOOTS_DONE: u8 = 0x21;
/// Its debug-exit value when RAM survived a reboot.
pub const STALE_RAM: u8 = 0x3e;

/// The guest; after the last boot it exits through debug-exit
/// ([`REBOOTS_DONE`]) if `exit`, else it spins.
pub fn reboot_guest(boots: u8, exit: bool) -> Vec<u8> {
    const MARK: u64 = 0x5000;
    assemble(64, REBOOT_GUEST_LOAD, |a| {
        let mut stale = a.create_label();
        let mut done = a.create_label();
        let mut spin = a.create_label();
        a.mov(al, byte_ptr(MARK)).unwrap();
        a.test(al, al).unwrap();
        a.jnz(stale).unwrap();
        a.mov(byte_ptr(MARK), 0xaa).unwrap();
        // bl = ++CMOS[0x40]
        a.mov(al, 0x40).unwrap();
        a.out(0x70, al).unwrap();
        a.in_(al, 0x71).unwrap();
        a.inc(al).unwrap();
        a.mov(bl, al).unwrap();
        a.mov(al, 0x40).unwrap();
        a.out(0x70, al).unwrap();
        a.mov(al, bl).unwrap();
        a.out(0x71, al).unwrap();
        a.mov(al, bl).unwrap();
        a.add(al, b'0' as i32).unwrap();
        a.out(0xe9, al).unwrap();
        a.mov(al, b'\n' as i32).unwrap();
        a.out(0xe9, al).unwrap();
        a.cmp(bl, boots as i32).unwrap();
        a.jae(done).unwrap();
        a.mov(al, 0xfe).unwrap();
        a.out(0x64, al).unwrap();
        a.set_label(&mut spin).unwrap();
        a.jmp(spin).unwrap();
        a.set_label(&mut done).unwrap();
        if exit {
            a.mov(al, REBOOTS_DONE as i32).unwrap();
            a.out(0xf4, al).unwrap();
        }
        a.jmp(spin).unwrap();
        a.set_label(&mut stale).unwrap();
        a.mov(al, STALE_RAM as i32).unwrap();
        a.out(0xf4, al).unwrap();
        a.jmp(spin).unwrap();
    })
}
