//! Code emitters and data for test kernels.

use iced_x86::code_asm::*;

/// Assembles a guest for `bitness` (16, 32 or 64) at address `ip`.
pub fn assemble(bitness: u32, ip: u64, build: impl FnOnce(&mut CodeAssembler)) -> Vec<u8> {
    let mut a = CodeAssembler::new(bitness).expect("valid bitness");
    build(&mut a);
    a.assemble(ip).expect("guest assembles")
}

/// A 64-bit interrupt gate to `handler` through the VMM's boot code
/// segment (0x10). Interrupt test guests run in long mode: on the
/// development machines' nested KVM a 32-bit `iret` fails emulation.
pub fn idt_gate64(handler: u64) -> [u8; 16] {
    let mut g = [0u8; 16];
    g[0..2].copy_from_slice(&(handler as u16).to_le_bytes());
    g[2..4].copy_from_slice(&0x10u16.to_le_bytes());
    g[5] = 0x8e; // present, DPL 0, interrupt gate
    g[6..8].copy_from_slice(&((handler >> 16) as u16).to_le_bytes());
    g[8..12].copy_from_slice(&((handler >> 32) as u32).to_le_bytes());
    g
}

/// Writes a two-byte tag to the debug console (DX must be 0xe9).
pub fn tag(a: &mut CodeAssembler, t: &[u8; 2]) {
    for &b in t {
        a.mov(al, i32::from(b)).expect("mov");
        a.out(dx, al).expect("out");
    }
}

/// 32-bit code: dumps the NUL-terminated string at ESI (NUL included,
/// at most `max` bytes scanned) to the port in DX.
pub fn dump_string(a: &mut CodeAssembler, max: u32) {
    a.mov(edi, esi).expect("mov");
    a.xor(eax, eax).expect("xor");
    a.mov(ecx, max).expect("mov");
    a.repne().scasb().expect("scasb");
    a.mov(ecx, edi).expect("mov");
    a.sub(ecx, esi).expect("sub");
    a.rep().outsb().expect("outsb");
}
