//! The device set's snapshot state: every stateful device's, together.
//! The stateless ones (debug-exit, debugcon) are rebuilt as new.

use serde::{Deserialize, Serialize};

use super::build::DeviceHandles;
use super::DeviceSet;
use crate::legacy::acpi_pm::AcpiPmState;
use crate::legacy::cmos::CmosState;
use crate::legacy::i8042::I8042State;
use crate::legacy::post_code::PostCodeState;
use crate::legacy::uart8250::UartState;

/// The state of every device of a set (the PC-only ones `None` on the
/// minimal set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcDeviceStates {
    /// Which set these are for.
    pub set: DeviceSet,
    /// COM1.
    pub uart: UartState,
    /// The POST-code port (diagnostic: see [`PostCodeState`]).
    pub post: PostCodeState,
    /// The keyboard controller.
    pub i8042: Option<I8042State>,
    /// The RTC/CMOS.
    pub cmos: Option<CmosState>,
    /// The ACPI PM block.
    pub acpi_pm: Option<AcpiPmState>,
}

impl DeviceHandles {
    /// Every device's state now. Take it while no vCPU runs (a paused
    /// VM), or the states may be from different moments.
    pub fn state(&self) -> PcDeviceStates {
        PcDeviceStates {
            set: self.set,
            uart: self.uart.state(),
            post: self.post.state(),
            i8042: self.i8042.as_ref().map(|d| d.state()),
            cmos: self.cmos.as_ref().map(|d| d.state()),
            acpi_pm: self.acpi_pm.as_ref().map(|d| d.state()),
        }
    }
}
