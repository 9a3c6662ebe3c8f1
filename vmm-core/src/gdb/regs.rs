//! KVM's register structures and gdb's x86-64 register file
//! (`org.gnu.gdb.i386.core` + `.sse`, gdbstub_arch's `X86_64CoreRegs`),
//! both ways.
//!
//! gdb orders the general registers rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp,
//! r8-r15. Segment registers are the selectors only: a write that changes
//! one is refused, because a selector without its descriptor would give
//! the vCPU a segment the guest never loaded.

use gdbstub_arch::x86::reg::{X86SegmentRegs, X86_64CoreRegs, X87FpuInternalRegs};
use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};

/// What a vCPU's registers are read from and written to.
#[derive(Debug, Clone, Copy, Default)]
pub struct VcpuRegs {
    /// KVM_GET_REGS.
    pub regs: kvm_regs,
    /// KVM_GET_SREGS (segments, control registers).
    pub sregs: kvm_sregs,
    /// KVM_GET_FPU (x87 and SSE).
    pub fpu: kvm_fpu,
}

/// Why gdb's register values cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegsError {
    /// A segment selector differs from the vCPU's.
    #[error("gdb changed segment register {name} to {value:#x}: selectors cannot be written")]
    Segment {
        /// cs, ss, ds, es, fs or gs.
        name: &'static str,
        /// The value gdb sent.
        value: u32,
    },
}

/// gdb's view of `r`.
pub fn to_gdb(r: &VcpuRegs) -> X86_64CoreRegs {
    let g = &r.regs;
    let s = &r.sregs;
    let f = &r.fpu;
    let mut st = [[0u8; 10]; 8];
    for (dst, src) in st.iter_mut().zip(f.fpr.iter()) {
        dst.copy_from_slice(&src[..10]);
    }
    let mut xmm = [0u128; 16];
    for (dst, src) in xmm.iter_mut().zip(f.xmm.iter()) {
        *dst = u128::from_le_bytes(*src);
    }
    X86_64CoreRegs {
        regs: [
            g.rax, g.rbx, g.rcx, g.rdx, g.rsi, g.rdi, g.rbp, g.rsp, g.r8, g.r9, g.r10, g.r11,
            g.r12, g.r13, g.r14, g.r15,
        ],
        // RFLAGS bits 32-63 are reserved (zero).
        eflags: g.rflags as u32,
        rip: g.rip,
        segments: X86SegmentRegs {
            cs: u32::from(s.cs.selector),
            ss: u32::from(s.ss.selector),
            ds: u32::from(s.ds.selector),
            es: u32::from(s.es.selector),
            fs: u32::from(s.fs.selector),
            gs: u32::from(s.gs.selector),
        },
        st,
        fpu: X87FpuInternalRegs {
            fctrl: u32::from(f.fcw),
            fstat: u32::from(f.fsw),
            ftag: full_tag_word(f.ftwx),
            fiseg: (f.last_ip >> 32) as u32,
            fioff: f.last_ip as u32,
            foseg: (f.last_dp >> 32) as u32,
            fooff: f.last_dp as u32,
            fop: u32::from(f.last_opcode),
        },
        xmm,
        mxcsr: f.mxcsr,
    }
}

/// `r` with gdb's values put in: the general registers, RIP, RFLAGS and
/// the x87/SSE state. Returns the new state; the caller writes whichever
/// of `regs` and `fpu` changed.
pub fn from_gdb(r: &VcpuRegs, v: &X86_64CoreRegs) -> Result<VcpuRegs, RegsError> {
    let s = &r.sregs;
    let segments = [
        ("cs", s.cs.selector, v.segments.cs),
        ("ss", s.ss.selector, v.segments.ss),
        ("ds", s.ds.selector, v.segments.ds),
        ("es", s.es.selector, v.segments.es),
        ("fs", s.fs.selector, v.segments.fs),
        ("gs", s.gs.selector, v.segments.gs),
    ];
    for (name, have, value) in segments {
        if u32::from(have) != value {
            return Err(RegsError::Segment { name, value });
        }
    }
    let mut out = *r;
    let g = &mut out.regs;
    let [rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8, r9, r10, r11, r12, r13, r14, r15] = v.regs;
    (g.rax, g.rbx, g.rcx, g.rdx, g.rsi, g.rdi, g.rbp, g.rsp) =
        (rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp);
    (g.r8, g.r9, g.r10, g.r11, g.r12, g.r13, g.r14, g.r15) = (r8, r9, r10, r11, r12, r13, r14, r15);
    g.rip = v.rip;
    g.rflags = u64::from(v.eflags);
    let f = &mut out.fpu;
    for (dst, src) in f.fpr.iter_mut().zip(v.st.iter()) {
        dst[..10].copy_from_slice(src);
    }
    for (dst, src) in f.xmm.iter_mut().zip(v.xmm.iter()) {
        *dst = src.to_le_bytes();
    }
    f.fcw = v.fpu.fctrl as u16;
    f.fsw = v.fpu.fstat as u16;
    f.ftwx = abridged_tag_word(v.fpu.ftag);
    f.last_ip = (u64::from(v.fpu.fiseg) << 32) | u64::from(v.fpu.fioff);
    f.last_dp = (u64::from(v.fpu.foseg) << 32) | u64::from(v.fpu.fooff);
    f.last_opcode = v.fpu.fop as u16;
    f.mxcsr = v.mxcsr;
    Ok(out)
}

/// FXSAVE's abridged tag (one bit per register, 1 = in use) as the x87
/// tag word gdb shows (two bits per register, 11 = empty; in-use registers
/// are shown as valid, 00).
fn full_tag_word(abridged: u8) -> u32 {
    (0..8)
        .filter(|i| abridged & (1 << i) == 0)
        .fold(0, |tag, i| tag | (0b11 << (2 * i)))
}

/// The inverse of [`full_tag_word`]: any tag but 11 (empty) is in use.
fn abridged_tag_word(full: u32) -> u8 {
    (0..8)
        .filter(|i| (full >> (2 * i)) & 0b11 != 0b11)
        .fold(0, |tag, i| tag | (1 << i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VcpuRegs {
        let mut r = VcpuRegs::default();
        r.regs.rax = 1;
        r.regs.rbx = 2;
        r.regs.rsp = 0x8000;
        r.regs.r15 = 0xf;
        r.regs.rip = 0x10_0000;
        r.regs.rflags = 0x202;
        r.sregs.cs.selector = 0x10;
        r.sregs.ss.selector = 0x18;
        r.fpu.fcw = 0x37f;
        r.fpu.ftwx = 0b0000_0001;
        r.fpu.xmm[3][0] = 0xaa;
        r.fpu.mxcsr = 0x1f80;
        r.fpu.fpr[1][9] = 0x40;
        r
    }

    #[test]
    fn test_regs_to_gdb_order_and_fields() {
        let g = to_gdb(&sample());
        assert_eq!(g.regs[0], 1, "rax");
        assert_eq!(g.regs[1], 2, "rbx");
        assert_eq!(g.regs[7], 0x8000, "rsp is the eighth");
        assert_eq!(g.regs[15], 0xf, "r15");
        assert_eq!((g.rip, g.eflags), (0x10_0000, 0x202));
        assert_eq!((g.segments.cs, g.segments.ss), (0x10, 0x18));
        assert_eq!(g.fpu.fctrl, 0x37f);
        assert_eq!(g.fpu.ftag, 0xfffc, "st0 in use, the rest empty");
        assert_eq!(g.xmm[3], 0xaa);
        assert_eq!(g.st[1][9], 0x40);
        assert_eq!(g.mxcsr, 0x1f80);
    }

    #[test]
    fn test_regs_round_trip_and_write() {
        let r = sample();
        let mut g = to_gdb(&r);
        let back = from_gdb(&r, &g).unwrap();
        assert_eq!(back.regs, r.regs);
        assert_eq!(back.fpu.ftwx, r.fpu.ftwx);
        assert_eq!(back.fpu.xmm, r.fpu.xmm);
        g.regs[2] = 0x1234; // rcx
        g.rip = 0x10_0004;
        let changed = from_gdb(&r, &g).unwrap();
        assert_eq!((changed.regs.rcx, changed.regs.rip), (0x1234, 0x10_0004));
    }

    #[test]
    fn test_regs_segment_write_refused() {
        let r = sample();
        let mut g = to_gdb(&r);
        g.segments.ds = 0x2b;
        assert_eq!(
            from_gdb(&r, &g).unwrap_err(),
            RegsError::Segment {
                name: "ds",
                value: 0x2b
            }
        );
    }
}
