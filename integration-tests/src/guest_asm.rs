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

/// MSR_KVM_SYSTEM_TIME_NEW.
const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;

/// A long-mode guest at CPL0, loaded at `load`: enables kvmclock with its
/// pvclock structure at `pvclock`, then forever writes the guest's
/// clock in nanoseconds (system_time + scaled TSC delta, the pvclock ABI)
/// as 8 little-endian bytes to the debug console.
pub fn kvmclock_guest(load: u64, pvclock: u64) -> Vec<u8> {
    assemble(64, load, |a| {
        a.mov(ecx, MSR_KVM_SYSTEM_TIME_NEW).unwrap();
        a.mov(eax, (pvclock | 1) as u32).unwrap();
        a.xor(edx, edx).unwrap();
        a.wrmsr().unwrap();
        let mut sample = a.create_label();
        let mut negative = a.create_label();
        let mut scaled = a.create_label();
        let mut emit = a.create_label();
        a.set_label(&mut sample).unwrap();
        // Version odd: KVM is updating the structure; read again.
        a.mov(r8d, dword_ptr(pvclock)).unwrap();
        a.test(r8d, 1).unwrap();
        a.jnz(sample).unwrap();
        a.rdtsc().unwrap();
        a.shl(rdx, 32).unwrap();
        a.or(rax, rdx).unwrap();
        a.sub(rax, qword_ptr(pvclock + 8)).unwrap();
        a.movsx(ecx, byte_ptr(pvclock + 28)).unwrap();
        a.test(ecx, ecx).unwrap();
        a.js(negative).unwrap();
        a.shl(rax, cl).unwrap();
        a.jmp(scaled).unwrap();
        a.set_label(&mut negative).unwrap();
        a.neg(ecx).unwrap();
        a.shr(rax, cl).unwrap();
        a.set_label(&mut scaled).unwrap();
        a.mov(r9d, dword_ptr(pvclock + 24)).unwrap();
        a.mul(r9).unwrap();
        a.shrd(rax, rdx, 32).unwrap();
        a.add(rax, qword_ptr(pvclock + 16)).unwrap();
        a.mov(r10, rax).unwrap();
        a.cmp(r8d, dword_ptr(pvclock)).unwrap();
        a.jne(sample).unwrap();
        a.mov(ecx, 8).unwrap();
        a.set_label(&mut emit).unwrap();
        a.mov(al, r10b).unwrap();
        a.out(0xe9, al).unwrap();
        a.shr(r10, 8).unwrap();
        a.dec(ecx).unwrap();
        a.jnz(emit).unwrap();
        a.jmp(sample).unwrap();
    })
}

/// Writes `value` to CMOS/RTC register `index` (index port 0x70, data
/// 0x71; clobbers AL).
pub fn rtc_out(a: &mut CodeAssembler, index: i32, value: i32) {
    a.mov(al, index).unwrap();
    a.out(0x70, al).unwrap();
    a.mov(al, value).unwrap();
    a.out(0x71, al).unwrap();
}

/// Reads CMOS/RTC register `index` into AL.
pub fn rtc_in(a: &mut CodeAssembler, index: i32) {
    a.mov(al, index).unwrap();
    a.out(0x70, al).unwrap();
    a.in_(al, 0x71).unwrap();
}
