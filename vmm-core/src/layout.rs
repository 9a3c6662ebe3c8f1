//! Where the VMM's devices live: ports, widths and IRQ lines, in one place.
//! (The guest RAM map lives in `vmm_memory::layout`.)

use vmm_devices::legacy::{debug_exit, debugcon, post_code, uart8250};

/// COM1 8250/16550A UART base port.
pub const COM1_PORT: u16 = uart8250::COM1_PORT;
/// Ports the UART decodes.
pub const COM1_WIDTH: u16 = uart8250::UART_REGISTER_COUNT;
/// QEMU isa-debug-exit port.
pub const DEBUG_EXIT_PORT: u16 = debug_exit::DEBUG_EXIT_PORT;
/// Its width.
pub const DEBUG_EXIT_WIDTH: u16 = debug_exit::DEBUG_EXIT_WIDTH;
/// Bochs/QEMU debug console port.
pub const DEBUGCON_PORT: u16 = debugcon::DEBUGCON_PORT;
/// POST-code port.
pub const POST_CODE_PORT: u16 = post_code::POST_CODE_PORT;
