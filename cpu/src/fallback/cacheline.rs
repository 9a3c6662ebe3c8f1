//! `clwb`, `clflushopt`, `clflush` m8: write back / flush a cache line.
//!
//! Guest RAM is ordinary host memory, so neither has an architectural
//! effect the guest can observe; what remains is the operand check: "subject
//! to all permission checking and faults associated with a byte load"
//! (Intel SDM, CLFLUSH/CLWB). A line whose physical address is not guest RAM
//! (an MMIO hole, past the end of RAM) is no fault on hardware either: the
//! flush simply finds nothing to write back.

use super::address::{linear_address, translate, Access};
use super::{Action, Ctx};

/// Checks the operand like a byte load and advances RIP.
pub(crate) fn flush(ctx: &Ctx<'_>) -> Action {
    let checked = linear_address(ctx, 0, 1).and_then(|la| translate(ctx, la, Access::Read));
    match checked {
        Ok(_) => Action::Complete(Box::new(ctx.regs_after())),
        Err(e) => Action::Raise(e),
    }
}
