//! Legacy PC devices, one per file, named after the chip or convention.

pub mod acpi_pm;
pub mod cmos;
pub mod debug_exit;
pub mod debugcon;
pub mod i8042;
pub mod post_code;
pub mod uart8250;

pub use acpi_pm::{AcpiPm, InstantClock, MonotonicClock, S3_SLP_TYP, S5_SLP_TYP};
pub use cmos::{Cmos, CmosMemorySizes, RtcAlarmListener, RtcClock, SystemClock};
pub use debug_exit::DebugExit;
pub use debugcon::DebugCon;
pub use i8042::I8042;
pub use post_code::{PostCode, PostCodePort};
pub use uart8250::{NoIrq, Uart8250};
