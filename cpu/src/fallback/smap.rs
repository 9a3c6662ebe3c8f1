//! `clac` / `stac`: clear or set EFLAGS.AC (Intel SDM, CLAC and STAC). They
//! raise #UD at CPL > 0 (and without SMAP in CPUID or with a LOCK prefix,
//! which the caller checks).

use super::{Action, Ctx, Exception, RFLAGS_AC};

/// Sets EFLAGS.AC to `on` and advances RIP.
pub(crate) fn set_ac(ctx: &Ctx<'_>, on: bool) -> Action {
    if ctx.cpl > 0 {
        return Action::Raise(Exception::InvalidOpcode);
    }
    let mut regs = ctx.regs_after();
    if on {
        regs.rflags |= RFLAGS_AC;
    } else {
        regs.rflags &= !RFLAGS_AC;
    }
    Action::Complete(Box::new(regs))
}
