//! `cmpxchg16b` m128 (Intel SDM, CMPXCHG8B/CMPXCHG16B): compare RDX:RAX
//! with the operand; if equal, ZF = 1 and the operand becomes RCX:RBX;
//! otherwise ZF = 0 and RDX:RAX gets the operand. No other flag changes.
//!
//! The access is a locked write whatever the outcome (the processor writes
//! the old value back on a mismatch), so the page must be writable. The
//! operand must be 16-byte aligned (#GP(0) otherwise). It runs as a real
//! `lock cmpxchg16b` on the host mapping, so it is atomic against the
//! guest's other vCPUs. An operand outside guest RAM (MMIO, past the end of
//! RAM) cannot be accessed atomically and raises #GP(0).

use super::address::{linear_address, translate, Access};
use super::host_atomic::{self, HostAccessError};
use super::{Action, Ctx, Exception, RFLAGS_ZF};

/// Performs the compare-exchange and sets RAX, RDX and ZF.
pub(crate) fn cmpxchg16b(ctx: &Ctx<'_>) -> Action {
    let la = match linear_address(ctx, 0, 16) {
        Ok(la) => la,
        Err(e) => return Action::Raise(e),
    };
    if !la.is_multiple_of(16) {
        return Action::Raise(Exception::GeneralProtection(0));
    }
    let gpa = match translate(ctx, la, Access::Write) {
        Ok(gpa) => gpa,
        Err(e) => return Action::Raise(e),
    };
    let r = &ctx.regs;
    match host_atomic::cmpxchg16b(ctx.mem, gpa, (r.rax, r.rdx), (r.rbx, r.rcx)) {
        Ok((equal, (lo, hi))) => {
            let mut regs = ctx.regs_after();
            if equal {
                regs.rflags |= RFLAGS_ZF;
            } else {
                regs.rflags &= !RFLAGS_ZF;
                regs.rax = lo;
                regs.rdx = hi;
            }
            Action::Complete(Box::new(regs))
        }
        Err(HostAccessError::Misaligned | HostAccessError::NotRam) => {
            Action::Raise(Exception::GeneralProtection(0))
        }
    }
}
