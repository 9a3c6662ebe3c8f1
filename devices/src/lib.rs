//! The I/O side of a PC-compatible VM: a port-I/O/MMIO bus and the legacy
//! devices that sit on it.
//!
//! - [`bus::IoBus`] wraps rust-vmm's `vm_device::device_manager::IoManager`
//!   and adds what a VMM needs around it: reads nobody claims return all ones
//!   (an empty ISA bus), writes nobody claims are dropped, port accesses wider
//!   than the device they hit are split into byte cycles as on ISA, and every
//!   access is counted per port / MMIO range.
//! - [`legacy`]: one device per file, each named after the chip or
//!   convention it models: the 8250/16550 UART (on vm-superio), QEMU's
//!   isa-debug-exit, the Bochs/QEMU debug console, the POST-code port, the
//!   i8042 keyboard controller, the MC146818 RTC/CMOS and the ACPI PM
//!   register block (PM timer, S5 power-off).
//! - [`console::Console`]: the byte sink guest output goes to.
//! - [`irq::IrqLine`]: a device's interrupt line (none, or a KVM irqfd).
//! - [`timer`]: devices whose events come from time (RTC interrupts, the PM
//!   timer's carry) and that the VMM's main loop services on a timer.
//! - [`vm_event`]: how a device asks the VMM to end the VM, without knowing
//!   the VMM (like vm-superio's `Trigger` for interrupts).
//! - [`state`]: snapshot state. Every stateful device has a serialisable
//!   `<Device>State` with `state()` and `from_state()`;
//!   [`pc::PcDeviceStates`] gathers the platform's.
//!
//! Devices implement `vm_device::DevicePio` directly and never panic on guest
//! input; nothing here depends on KVM.
//!
//! `examples/uart_bus.rs` (`cargo run -p vmm-devices --example uart_bus`)
//! drives the UART and the debug console on a bus as a guest would.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use vm_device::bus::PioAddress;
//! use vmm_devices::bus::{Access, IoBus};
//! use vmm_devices::legacy::DebugCon;
//! use vmm_devices::console::Console;
//!
//! let console = Console::memory();
//! let mut bus = IoBus::new();
//! bus.register_pio("debugcon", PioAddress(0xe9), 1, Arc::new(DebugCon::new(console.clone())))
//!     .unwrap();
//!
//! bus.pio_write(PioAddress(0xe9), b"A");
//! assert_eq!(console.captured(), b"A");
//!
//! let mut byte = [0u8];
//! assert_eq!(bus.pio_read(PioAddress(0xe9), &mut byte), Access::Claimed);
//! assert_eq!(byte[0], 0xe9); // debugcon's presence signature
//! assert_eq!(bus.pio_read(PioAddress(0x64), &mut byte), Access::Unclaimed);
//! assert_eq!(byte[0], 0xff); // nothing there
//! ```

pub mod bus;
pub mod console;
pub mod irq;
pub mod legacy;
pub mod pc;
pub mod state;
pub mod timer;
pub mod virtio;
pub mod vm_event;

pub use bus::{Access, BusError, IoBus};
pub use console::Console;
pub use irq::IrqLine;
pub use vm_event::{VmEvent, VmEventSink};

/// Locks a device mutex, recovering the state if another thread panicked
/// while holding it: a device must keep answering the guest.
pub(crate) fn lock<T: ?Sized>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
