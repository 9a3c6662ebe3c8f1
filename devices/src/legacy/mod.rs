//! Legacy PC devices, one per file, named after the chip or convention.

pub mod debug_exit;
pub mod debugcon;
pub mod post_code;
pub mod uart8250;

pub use debug_exit::DebugExit;
pub use debugcon::DebugCon;
pub use post_code::{PostCode, PostCodePort};
pub use uart8250::{NoIrq, Uart8250};
