//! The Intel 8042 keyboard controller of the PC/AT and PS/2 (data port 0x60,
//! status/command port 0x64), with a PS/2 keyboard on its first port and a
//! PS/2 mouse on its auxiliary port.
//!
//! References: IBM PS/2 Hardware Interface Technical Reference, "Keyboard
//! and Auxiliary Device Controller" (status register, command byte,
//! controller commands, output port) and "Keyboard and Auxiliary Device"
//! (device commands and replies); Linux `drivers/input/serio/i8042.c`,
//! `i8042.h` and `i8042-io.h` (the probe this model must satisfy) and
//! `drivers/input/keyboard/atkbd.c` / `drivers/input/mouse/psmouse-base.c`;
//! QEMU `hw/input/pckbd.c` and `hw/input/ps2.c` (what PC guests are used
//! to from a virtual 8042).
//!
//! # Model
//! - One device object answers both ports; it dispatches on the port an
//!   access lands on ([`I8042_DATA_PORT`], [`I8042_COMMAND_PORT`]), so the
//!   VMM registers it on two one-port ranges. Any other port reads 0xff and
//!   ignores writes; a wider access is handled byte by byte at consecutive
//!   ports.
//! - Commands and data are processed when written, so IBF (input buffer
//!   full) always reads 0. The **output buffer** holds one byte (OBF; AUXDATA
//!   if it came from the mouse). Behind it wait bounded queues: controller
//!   replies (and bytes injected with 0xD2/0xD3) first, then the keyboard's
//!   bytes (command replies before scancodes), then the mouse's. Reading
//!   port 0x60 takes the byte and loads the next; reading it when OBF is
//!   clear returns the last byte again, like the chip's stale buffer.
//! - **Interrupts**: IRQ1 is raised when a keyboard (or controller) byte
//!   enters the output buffer while command-byte bit 0 is set, IRQ12 when a
//!   mouse byte does while bit 1 is set, and also when the guest sets the
//!   enable bit while such a byte waits: the line's level is tracked and
//!   each rising edge calls the [`Trigger`].
//! - **Command byte** (controller RAM byte 0, commands 0x20/0x60): the
//!   interrupt enables, SYS (mirrored into status bit 2), the keyboard and
//!   mouse disable bits (also set/cleared by 0xAD/0xAE and 0xA7/0xA8) and
//!   XLATE. The other 31 RAM bytes are readable and writable through
//!   0x21-0x3F / 0x61-0x7F, as on the chip. At power-on the controller is in
//!   the state a PC BIOS leaves it: command byte 0x65 (keyboard interrupt,
//!   SYS, mouse disabled, translation on: SeaBIOS leaves 0x61 and the SYS
//!   flag set by its self-test) and the status SYS flag set.
//! - **Controller commands**: 0xA7/0xA8 disable/enable the mouse port, 0xA9
//!   and 0xAB test the interfaces (0x00, no error), 0xAA self-test (0x55,
//!   sets SYS), 0xAD/0xAE disable/enable the keyboard port, 0xD0/0xD1
//!   read/write the output port (bit 0 low resets the CPU; bit 1 is the A20
//!   gate, which is stored but not emulated: A20 is always on), 0xD2/0xD3 put
//!   the next data byte in the output buffer as if from the keyboard/mouse
//!   (this is the loopback Linux uses to find the AUX port and test IRQ12),
//!   0xD4 sends the next data byte to the mouse, 0xF0-0xFF pulse output-port
//!   lines: a pulse of bit 0 (0xFE and every even command) resets the CPU,
//!   reported as [`VmEvent::Reset`]. A write to port 0x60 with no command
//!   waiting goes to the keyboard and clears the keyboard-disable bit (as in
//!   QEMU); 0xD4 likewise clears the mouse-disable bit. Other commands
//!   (password, test inputs, vendor extensions) are ignored and logged: no
//!   reply, so a guest waiting for one times out as on a chip without them.
//! - **Keyboard** (MF2, scancode set 2 by default): 0xFF reset (0xFA, then
//!   0xAA), 0xFE resend, 0xF6 defaults, 0xF5 disable scanning, 0xF4 enable,
//!   0xF3 typematic rate (then the rate byte), 0xF2 identify (0xFA 0xAB
//!   0x83), 0xF0 get/set scancode set (then 0 to read it: a second 0xFA and
//!   the set number; or 1-3 to select it), 0xEE echo (0xEE), 0xED set LEDs
//!   (then the LED byte), 0xF7-0xFA (set-3 key modes, acknowledged); every
//!   reply is 0xFA unless stated. Anything else, or a
//!   bad option byte, gets 0xFE (resend). A command byte arriving instead of
//!   an option starts that command.
//! - **Translation**: with XLATE set, every byte from the keyboard goes
//!   through the 8042's set-2-to-set-1 table on its way to the output buffer,
//!   and a 0xF0 break prefix is folded into bit 7 of the next byte; so the
//!   identify reply reads 0xAB 0x41 (Linux expects either form).
//! - **Mouse** (a standard PS/2 mouse, ID 0x00, that never moves): 0xFF
//!   reset (0xFA 0xAA 0x00), 0xFE resend, 0xF6 defaults, 0xF5/0xF4 disable/
//!   enable reporting, 0xF3 sample rate (then the rate), 0xF2 ID (0xFA
//!   0x00), 0xF0 remote mode, 0xEE/0xEC set/reset wrap (echo) mode, 0xEB
//!   read data (a packet with no motion), 0xEA stream mode, 0xE9 status (3
//!   bytes), 0xE8 resolution (then 0-3), 0xE7/0xE6 scaling. Unknown: 0xFE.
//!   A mouse is present, rather than an empty AUX port, because hobby OSes
//!   commonly wait for the mouse's 0xFA without a timeout; Linux's psmouse
//!   finds a "PS/2 Generic Mouse" and its extension probes (Synaptics, ALPS,
//!   IntelliMouse) fail cleanly on the standard status and ID replies.
//! - **Host input**: [`I8042::key_press`] queues scancode bytes as the
//!   keyboard sends them (set 2 unless the guest chose another set). The
//!   keyboard's buffer and the output buffer together hold [`KEY_QUEUE_CAP`]
//!   bytes, like a real keyboard's 16-byte buffer (Linux's probe flushes at
//!   most 16 bytes and declares the controller absent beyond that); a press that
//!   does not fit, or comes while scanning is disabled, is dropped whole and
//!   counted ([`I8042::dropped_key_bytes`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use vm_device::bus::{PioAddress, PioAddressOffset};
use vm_device::DevicePio;
use vm_superio::Trigger;

use crate::lock;
use crate::vm_event::{VmEvent, VmEventSink};

/// The data port (read: output buffer; write: data / parameter).
pub const I8042_DATA_PORT: u16 = 0x60;
/// The status (read) and command (write) port.
pub const I8042_COMMAND_PORT: u16 = 0x64;
/// The keyboard's ISA IRQ.
pub const I8042_KBD_IRQ: u32 = 1;
/// The mouse's ISA IRQ.
pub const I8042_AUX_IRQ: u32 = 12;

/// Status: output buffer full.
pub const STS_OBF: u8 = 0x01;
/// Status: input buffer full (always 0 here).
pub const STS_IBF: u8 = 0x02;
/// Status: system flag (self-test passed / command byte bit 2).
pub const STS_SYS: u8 = 0x04;
/// Status: A2, the last write was to the command port.
pub const STS_CMD: u8 = 0x08;
/// Status: keyboard not inhibited by the keylock.
pub const STS_UNLOCKED: u8 = 0x10;
/// Status: the output buffer holds a mouse byte.
pub const STS_AUXDATA: u8 = 0x20;
/// Status: timeout error (never set).
pub const STS_TIMEOUT: u8 = 0x40;
/// Status: parity error (never set).
pub const STS_PARITY: u8 = 0x80;

/// Command byte: keyboard interrupt (IRQ1) enable.
pub const CTR_KBDINT: u8 = 0x01;
/// Command byte: mouse interrupt (IRQ12) enable.
pub const CTR_AUXINT: u8 = 0x02;
/// Command byte: system flag.
pub const CTR_SYS: u8 = 0x04;
/// Command byte: ignore the keylock (AT only; stored).
pub const CTR_IGNKEYLOCK: u8 = 0x08;
/// Command byte: keyboard port disabled.
pub const CTR_KBDDIS: u8 = 0x10;
/// Command byte: mouse port disabled.
pub const CTR_AUXDIS: u8 = 0x20;
/// Command byte: translate keyboard bytes to scancode set 1.
pub const CTR_XLATE: u8 = 0x40;
/// The command byte at power-on (what firmware leaves).
pub const CTR_DEFAULT: u8 = CTR_KBDINT | CTR_SYS | CTR_AUXDIS | CTR_XLATE;

/// Controller command: read controller RAM byte 0 (the command byte); 0x21-
/// 0x3F read bytes 1-31.
pub const CMD_READ_CTR: u8 = 0x20;
/// Controller command: write the command byte (next data byte); 0x61-0x7F
/// write RAM bytes 1-31.
pub const CMD_WRITE_CTR: u8 = 0x60;
/// Controller command: disable the mouse port.
pub const CMD_AUX_DISABLE: u8 = 0xa7;
/// Controller command: enable the mouse port.
pub const CMD_AUX_ENABLE: u8 = 0xa8;
/// Controller command: test the mouse interface.
pub const CMD_AUX_TEST: u8 = 0xa9;
/// Controller command: self-test.
pub const CMD_SELF_TEST: u8 = 0xaa;
/// Controller command: test the keyboard interface.
pub const CMD_KBD_TEST: u8 = 0xab;
/// Controller command: disable the keyboard port.
pub const CMD_KBD_DISABLE: u8 = 0xad;
/// Controller command: enable the keyboard port.
pub const CMD_KBD_ENABLE: u8 = 0xae;
/// Controller command: read the output port.
pub const CMD_READ_OUTPUT: u8 = 0xd0;
/// Controller command: write the output port (next data byte).
pub const CMD_WRITE_OUTPUT: u8 = 0xd1;
/// Controller command: next data byte into the output buffer, as keyboard data.
pub const CMD_WRITE_KBD_OBUF: u8 = 0xd2;
/// Controller command: next data byte into the output buffer, as mouse data.
pub const CMD_WRITE_AUX_OBUF: u8 = 0xd3;
/// Controller command: send the next data byte to the mouse.
pub const CMD_WRITE_AUX: u8 = 0xd4;
/// Controller command: pulse output-port bit 0, resetting the CPU.
pub const CMD_PULSE_RESET: u8 = 0xfe;
/// Controller self-test passed.
pub const REPLY_SELF_TEST_OK: u8 = 0x55;
/// Interface test passed.
pub const REPLY_INTERFACE_OK: u8 = 0x00;

/// Output port: CPU reset line (active low).
pub const OUT_RESET: u8 = 0x01;
/// Output port: A20 gate.
pub const OUT_A20: u8 = 0x02;
/// Output port: keyboard output buffer full.
pub const OUT_KBD_OBF: u8 = 0x10;
/// Output port: mouse output buffer full.
pub const OUT_AUX_OBF: u8 = 0x20;
/// Output port at power-on: not in reset, A20 on, unused lines high (QEMU).
pub const OUT_DEFAULT: u8 = 0xcf;

/// Keyboard/mouse reply: acknowledge.
pub const DEV_ACK: u8 = 0xfa;
/// Keyboard/mouse reply: resend (the byte was not understood).
pub const DEV_RESEND: u8 = 0xfe;
/// Keyboard/mouse reply: basic assurance test passed.
pub const DEV_BAT_OK: u8 = 0xaa;
/// Keyboard reply to echo.
pub const KBD_ECHO: u8 = 0xee;
/// The MF2 keyboard's ID bytes (untranslated).
pub const KBD_ID: [u8; 2] = [0xab, 0x83];
/// A standard PS/2 mouse's ID.
pub const AUX_ID: u8 = 0x00;

/// Keyboard command: set LEDs.
pub const KBD_CMD_SET_LEDS: u8 = 0xed;
/// Keyboard command: echo.
pub const KBD_CMD_ECHO: u8 = 0xee;
/// Keyboard command: get/set scancode set.
pub const KBD_CMD_SCANCODE_SET: u8 = 0xf0;
/// Keyboard command: identify.
pub const KBD_CMD_GET_ID: u8 = 0xf2;
/// Keyboard command: set typematic rate/delay.
pub const KBD_CMD_SET_RATE: u8 = 0xf3;
/// Keyboard command: enable scanning.
pub const KBD_CMD_ENABLE: u8 = 0xf4;
/// Keyboard command: default and disable scanning.
pub const KBD_CMD_DISABLE: u8 = 0xf5;
/// Keyboard command: set defaults.
pub const KBD_CMD_DEFAULTS: u8 = 0xf6;
/// Keyboard command: resend the last byte.
pub const KBD_CMD_RESEND: u8 = 0xfe;
/// Keyboard command: reset and self-test.
pub const KBD_CMD_RESET: u8 = 0xff;

/// Mouse command: scaling 1:1.
pub const AUX_CMD_SCALE_1_1: u8 = 0xe6;
/// Mouse command: scaling 2:1.
pub const AUX_CMD_SCALE_2_1: u8 = 0xe7;
/// Mouse command: set resolution.
pub const AUX_CMD_SET_RES: u8 = 0xe8;
/// Mouse command: status request.
pub const AUX_CMD_STATUS: u8 = 0xe9;
/// Mouse command: stream mode.
pub const AUX_CMD_STREAM: u8 = 0xea;
/// Mouse command: read data.
pub const AUX_CMD_READ_DATA: u8 = 0xeb;
/// Mouse command: leave wrap mode.
pub const AUX_CMD_RESET_WRAP: u8 = 0xec;
/// Mouse command: enter wrap (echo) mode.
pub const AUX_CMD_SET_WRAP: u8 = 0xee;
/// Mouse command: remote mode.
pub const AUX_CMD_REMOTE: u8 = 0xf0;
/// Mouse command: get ID.
pub const AUX_CMD_GET_ID: u8 = 0xf2;
/// Mouse command: set sample rate.
pub const AUX_CMD_SET_RATE: u8 = 0xf3;
/// Mouse command: enable data reporting.
pub const AUX_CMD_ENABLE: u8 = 0xf4;
/// Mouse command: disable data reporting.
pub const AUX_CMD_DISABLE: u8 = 0xf5;
/// Mouse command: set defaults.
pub const AUX_CMD_DEFAULTS: u8 = 0xf6;
/// Mouse command: resend.
pub const AUX_CMD_RESEND: u8 = 0xfe;
/// Mouse command: reset.
pub const AUX_CMD_RESET: u8 = 0xff;

/// Bytes the keyboard buffers for host key presses.
pub const KEY_QUEUE_CAP: usize = 16;
/// Bytes each device (and the controller) queues for command replies.
pub const REPLY_QUEUE_CAP: usize = 16;

/// Scancode set 2 break prefix, folded into bit 7 by translation.
const SET2_BREAK: u8 = 0xf0;
const KBD_DEFAULT_RATE: u8 = 0x2b; // 10.9 characters/s after 500 ms
const AUX_DEFAULT_RATE: u8 = 100;
const AUX_DEFAULT_RES: u8 = 2; // 4 counts/mm
const AUX_MAX_RES: u8 = 3;
/// The lowest byte a mouse treats as a command.
const AUX_FIRST_CMD: u8 = AUX_CMD_SCALE_1_1;
/// A motionless stream packet: no buttons, bit 3 always set.
const AUX_IDLE_PACKET: [u8; 3] = [0x08, 0x00, 0x00];

/// The 8042's set-2-to-set-1 table for bytes below 0x80 (IBM PS/2 technical
/// reference; the same table Bochs and QEMU use). Bytes from 0x80 up pass
/// through, except 0x83 (F7) and 0x84 (SysRq).
#[rustfmt::skip]
const XLATE: [u8; 128] = [
    0xff, 0x43, 0x41, 0x3f, 0x3d, 0x3b, 0x3c, 0x58, 0x64, 0x44, 0x42, 0x40, 0x3e, 0x0f, 0x29, 0x59,
    0x65, 0x38, 0x2a, 0x70, 0x1d, 0x10, 0x02, 0x5a, 0x66, 0x71, 0x2c, 0x1f, 0x1e, 0x11, 0x03, 0x5b,
    0x67, 0x2e, 0x2d, 0x20, 0x12, 0x05, 0x04, 0x5c, 0x68, 0x39, 0x2f, 0x21, 0x14, 0x13, 0x06, 0x5d,
    0x69, 0x31, 0x30, 0x23, 0x22, 0x15, 0x07, 0x5e, 0x6a, 0x72, 0x32, 0x24, 0x16, 0x08, 0x09, 0x5f,
    0x6b, 0x33, 0x25, 0x17, 0x18, 0x0b, 0x0a, 0x60, 0x6c, 0x34, 0x35, 0x26, 0x27, 0x19, 0x0c, 0x61,
    0x6d, 0x73, 0x28, 0x74, 0x1a, 0x0d, 0x62, 0x6e, 0x3a, 0x36, 0x1c, 0x1b, 0x75, 0x2b, 0x63, 0x76,
    0x55, 0x56, 0x77, 0x78, 0x79, 0x7a, 0x0e, 0x7b, 0x7c, 0x4f, 0x7d, 0x4b, 0x47, 0x7e, 0x7f, 0x6f,
    0x52, 0x53, 0x50, 0x4c, 0x4d, 0x48, 0x01, 0x45, 0x57, 0x4e, 0x51, 0x4a, 0x37, 0x49, 0x46, 0x54,
];

/// Translates one set-2 byte (no break prefix) to set 1.
fn set2_to_set1(b: u8) -> u8 {
    match b {
        0x00..=0x7f => XLATE[usize::from(b)],
        0x83 => 0x41,
        0x84 => 0x54,
        _ => b,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The keyboard port (keyboard bytes and controller replies).
    Kbd,
    /// The mouse port.
    Aux,
}

/// What the next write to the data port is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Ram(u8),
    OutputPort,
    KbdObuf,
    AuxObuf,
    Aux,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KbdOption {
    Leds,
    ScancodeSet,
    Rate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuxOption {
    Resolution,
    SampleRate,
}

/// Pushes onto a bounded reply queue; a guest that never reads loses the
/// newest replies, not host memory.
fn push_bounded(q: &mut VecDeque<u8>, bytes: &[u8], who: &str) {
    for &b in bytes {
        if q.len() < REPLY_QUEUE_CAP {
            q.push_back(b);
        } else {
            log::debug!("i8042: {who} reply queue full, dropped {b:#04x}");
        }
    }
}

struct Keyboard {
    replies: VecDeque<u8>,
    keys: VecDeque<u8>,
    option: Option<KbdOption>,
    scanning: bool,
    scancode_set: u8,
    leds: u8,
    rate: u8,
    last_sent: u8,
}

impl Keyboard {
    fn new() -> Self {
        Keyboard {
            replies: VecDeque::new(),
            keys: VecDeque::new(),
            option: None,
            scanning: true,
            scancode_set: 2,
            leds: 0,
            rate: KBD_DEFAULT_RATE,
            last_sent: DEV_ACK,
        }
    }

    fn reply(&mut self, bytes: &[u8]) {
        push_bounded(&mut self.replies, bytes, "keyboard");
    }

    fn defaults(&mut self) {
        self.keys.clear();
        self.rate = KBD_DEFAULT_RATE;
    }

    fn receive(&mut self, v: u8) {
        if let Some(option) = self.option.take() {
            let accepted = match option {
                KbdOption::Leds if v & 0xf8 == 0 => {
                    self.leds = v;
                    true
                }
                KbdOption::ScancodeSet if v == 0 => {
                    let set = self.scancode_set;
                    self.reply(&[DEV_ACK, set]);
                    return;
                }
                KbdOption::ScancodeSet if v <= 3 => {
                    self.scancode_set = v;
                    true
                }
                KbdOption::Rate if v & 0x80 == 0 => {
                    self.rate = v;
                    true
                }
                _ => false,
            };
            if accepted {
                self.reply(&[DEV_ACK]);
                return;
            }
            // A command where an option was due starts that command.
            if v < KBD_CMD_SET_LEDS {
                self.reply(&[DEV_RESEND]);
                return;
            }
        }
        match v {
            KBD_CMD_SET_LEDS => self.expect(KbdOption::Leds),
            KBD_CMD_ECHO => self.reply(&[KBD_ECHO]),
            KBD_CMD_SCANCODE_SET => self.expect(KbdOption::ScancodeSet),
            KBD_CMD_GET_ID => self.reply(&[DEV_ACK, KBD_ID[0], KBD_ID[1]]),
            KBD_CMD_SET_RATE => self.expect(KbdOption::Rate),
            KBD_CMD_ENABLE => {
                self.keys.clear();
                self.scanning = true;
                self.reply(&[DEV_ACK]);
            }
            KBD_CMD_DISABLE => {
                self.defaults();
                self.scanning = false;
                self.reply(&[DEV_ACK]);
            }
            KBD_CMD_DEFAULTS => {
                self.defaults();
                self.scanning = true;
                self.reply(&[DEV_ACK]);
            }
            // Set-3 "all keys" typematic/make/break modes: accepted, no
            // effect in sets 1 and 2.
            0xf7..=0xfa => self.reply(&[DEV_ACK]),
            KBD_CMD_RESEND => {
                let last = self.last_sent;
                self.reply(&[last]);
            }
            KBD_CMD_RESET => {
                self.defaults();
                self.replies.clear();
                self.scanning = true;
                self.scancode_set = 2;
                self.leds = 0;
                self.reply(&[DEV_ACK, DEV_BAT_OK]);
            }
            _ => {
                log::debug!("i8042: unknown keyboard command {v:#04x}");
                self.reply(&[DEV_RESEND]);
            }
        }
    }

    fn expect(&mut self, option: KbdOption) {
        self.option = Some(option);
        self.reply(&[DEV_ACK]);
    }
}

struct Mouse {
    replies: VecDeque<u8>,
    option: Option<AuxOption>,
    sample_rate: u8,
    resolution: u8,
    scaling_2_1: bool,
    reporting: bool,
    remote: bool,
    wrap: bool,
    last_sent: u8,
}

impl Mouse {
    fn new() -> Self {
        Mouse {
            replies: VecDeque::new(),
            option: None,
            sample_rate: AUX_DEFAULT_RATE,
            resolution: AUX_DEFAULT_RES,
            scaling_2_1: false,
            reporting: false,
            remote: false,
            wrap: false,
            last_sent: DEV_ACK,
        }
    }

    fn reply(&mut self, bytes: &[u8]) {
        push_bounded(&mut self.replies, bytes, "mouse");
    }

    fn defaults(&mut self) {
        self.sample_rate = AUX_DEFAULT_RATE;
        self.resolution = AUX_DEFAULT_RES;
        self.scaling_2_1 = false;
        self.reporting = false;
    }

    fn receive(&mut self, v: u8) {
        if self.wrap && v != AUX_CMD_RESET_WRAP && v != AUX_CMD_RESET {
            self.reply(&[v]);
            return;
        }
        if let Some(option) = self.option.take() {
            match option {
                AuxOption::Resolution if v <= AUX_MAX_RES => {
                    self.resolution = v;
                    self.reply(&[DEV_ACK]);
                    return;
                }
                AuxOption::SampleRate if v < AUX_FIRST_CMD => {
                    self.sample_rate = v;
                    self.reply(&[DEV_ACK]);
                    return;
                }
                _ if v < AUX_FIRST_CMD => {
                    self.reply(&[DEV_RESEND]);
                    return;
                }
                // A command where an option was due starts that command.
                _ => {}
            }
        }
        match v {
            AUX_CMD_SCALE_1_1 | AUX_CMD_SCALE_2_1 => {
                self.scaling_2_1 = v == AUX_CMD_SCALE_2_1;
                self.reply(&[DEV_ACK]);
            }
            AUX_CMD_SET_RES => self.expect(AuxOption::Resolution),
            AUX_CMD_STATUS => {
                let status = u8::from(self.remote) << 6
                    | u8::from(self.reporting) << 5
                    | u8::from(self.scaling_2_1) << 4;
                let (res, rate) = (self.resolution, self.sample_rate);
                self.reply(&[DEV_ACK, status, res, rate]);
            }
            AUX_CMD_STREAM => {
                self.remote = false;
                self.reply(&[DEV_ACK]);
            }
            AUX_CMD_READ_DATA => {
                self.reply(&[DEV_ACK]);
                self.reply(&AUX_IDLE_PACKET);
            }
            AUX_CMD_RESET_WRAP => {
                self.wrap = false;
                self.reply(&[DEV_ACK]);
            }
            AUX_CMD_SET_WRAP => {
                self.wrap = true;
                self.reply(&[DEV_ACK]);
            }
            AUX_CMD_REMOTE => {
                self.remote = true;
                self.reply(&[DEV_ACK]);
            }
            AUX_CMD_GET_ID => self.reply(&[DEV_ACK, AUX_ID]),
            AUX_CMD_SET_RATE => self.expect(AuxOption::SampleRate),
            AUX_CMD_ENABLE | AUX_CMD_DISABLE => {
                self.reporting = v == AUX_CMD_ENABLE;
                self.reply(&[DEV_ACK]);
            }
            AUX_CMD_DEFAULTS => {
                self.defaults();
                self.reply(&[DEV_ACK]);
            }
            AUX_CMD_RESEND => {
                let last = self.last_sent;
                self.reply(&[last]);
            }
            AUX_CMD_RESET => {
                self.defaults();
                self.replies.clear();
                self.remote = false;
                self.wrap = false;
                self.reply(&[DEV_ACK, DEV_BAT_OK, AUX_ID]);
            }
            _ => {
                log::debug!("i8042: unknown mouse command {v:#04x}");
                self.reply(&[DEV_RESEND]);
            }
        }
    }

    fn expect(&mut self, option: AuxOption) {
        self.option = Some(option);
        self.reply(&[DEV_ACK]);
    }
}

/// Side effects collected under the lock and applied after it.
#[derive(Default)]
struct Effects {
    reset: bool,
    kbd_irq: bool,
    aux_irq: bool,
}

struct State {
    /// Controller RAM; byte 0 is the command byte.
    ram: [u8; 32],
    sys_flag: bool,
    last_write_was_command: bool,
    output_port: u8,
    pending: Option<Pending>,
    obuf: Option<(u8, Source)>,
    last_data: u8,
    controller: VecDeque<(u8, Source)>,
    kbd: Keyboard,
    aux: Mouse,
    /// A set-2 break prefix was swallowed by translation.
    xlate_break: bool,
    kbd_level: bool,
    aux_level: bool,
    dropped_key_bytes: u64,
}

impl State {
    fn new() -> Self {
        let mut ram = [0u8; 32];
        ram[0] = CTR_DEFAULT;
        State {
            ram,
            sys_flag: true,
            last_write_was_command: false,
            output_port: OUT_DEFAULT,
            pending: None,
            obuf: None,
            last_data: 0,
            controller: VecDeque::new(),
            kbd: Keyboard::new(),
            aux: Mouse::new(),
            xlate_break: false,
            kbd_level: false,
            aux_level: false,
            dropped_key_bytes: 0,
        }
    }

    fn ctr(&self) -> u8 {
        self.ram[0]
    }

    fn set_ctr(&mut self, v: u8) {
        self.ram[0] = v;
        self.sys_flag = v & CTR_SYS != 0;
    }

    fn status(&self) -> u8 {
        let mut s = STS_UNLOCKED;
        match self.obuf {
            Some((_, Source::Kbd)) => s |= STS_OBF,
            Some((_, Source::Aux)) => s |= STS_OBF | STS_AUXDATA,
            None => {}
        }
        if self.sys_flag {
            s |= STS_SYS;
        }
        if self.last_write_was_command {
            s |= STS_CMD;
        }
        s
    }

    fn controller_reply(&mut self, b: u8, src: Source) {
        if self.controller.len() < REPLY_QUEUE_CAP {
            self.controller.push_back((b, src));
        } else {
            log::debug!("i8042: controller reply queue full, dropped {b:#04x}");
        }
    }

    fn output_port_value(&self) -> u8 {
        let mut v = self.output_port & !(OUT_KBD_OBF | OUT_AUX_OBF);
        match self.obuf {
            Some((_, Source::Kbd)) => v |= OUT_KBD_OBF,
            Some((_, Source::Aux)) => v |= OUT_AUX_OBF,
            None => {}
        }
        v
    }

    fn command(&mut self, cmd: u8, fx: &mut Effects) {
        self.last_write_was_command = true;
        // A new command abandons a parameter still awaited.
        self.pending = None;
        match cmd {
            0x20..=0x3f => {
                let v = self.ram[usize::from(cmd & 0x1f)];
                self.controller_reply(v, Source::Kbd);
            }
            0x60..=0x7f => self.pending = Some(Pending::Ram(cmd & 0x1f)),
            CMD_AUX_DISABLE => self.ram[0] |= CTR_AUXDIS,
            CMD_AUX_ENABLE => self.ram[0] &= !CTR_AUXDIS,
            CMD_AUX_TEST | CMD_KBD_TEST => self.controller_reply(REPLY_INTERFACE_OK, Source::Kbd),
            CMD_SELF_TEST => {
                self.sys_flag = true;
                self.controller_reply(REPLY_SELF_TEST_OK, Source::Kbd);
            }
            CMD_KBD_DISABLE => self.ram[0] |= CTR_KBDDIS,
            CMD_KBD_ENABLE => self.ram[0] &= !CTR_KBDDIS,
            CMD_READ_OUTPUT => {
                let v = self.output_port_value();
                self.controller_reply(v, Source::Kbd);
            }
            CMD_WRITE_OUTPUT => self.pending = Some(Pending::OutputPort),
            CMD_WRITE_KBD_OBUF => self.pending = Some(Pending::KbdObuf),
            CMD_WRITE_AUX_OBUF => self.pending = Some(Pending::AuxObuf),
            CMD_WRITE_AUX => self.pending = Some(Pending::Aux),
            // Pulse output-port lines: bits 0-3 of the command select them,
            // active low; line 0 is the CPU reset.
            0xf0..=0xff => {
                if cmd & OUT_RESET == 0 {
                    fx.reset = true;
                }
            }
            _ => log::debug!("i8042: controller command {cmd:#04x} not implemented, ignored"),
        }
    }

    fn data(&mut self, v: u8, fx: &mut Effects) {
        self.last_write_was_command = false;
        match self.pending.take() {
            Some(Pending::Ram(0)) => self.set_ctr(v),
            Some(Pending::Ram(i)) => self.ram[usize::from(i & 0x1f)] = v,
            Some(Pending::OutputPort) => {
                self.output_port = v;
                if v & OUT_RESET == 0 {
                    fx.reset = true;
                }
            }
            Some(Pending::KbdObuf) => self.controller_reply(v, Source::Kbd),
            Some(Pending::AuxObuf) => self.controller_reply(v, Source::Aux),
            Some(Pending::Aux) => {
                self.ram[0] &= !CTR_AUXDIS;
                self.aux.receive(v);
            }
            None => {
                self.ram[0] &= !CTR_KBDDIS;
                self.kbd.receive(v);
            }
        }
    }

    fn read_data(&mut self) -> u8 {
        if let Some((b, _)) = self.obuf.take() {
            self.last_data = b;
            // OBF drops, and the interrupt line with it: the next byte is a
            // new edge for the (edge-triggered) ISA interrupt.
            self.kbd_level = false;
            self.aux_level = false;
        }
        self.last_data
    }

    /// Moves the next waiting byte into an empty output buffer.
    fn fill(&mut self) {
        if self.obuf.is_some() {
            return;
        }
        if let Some(e) = self.controller.pop_front() {
            self.obuf = Some(e);
            return;
        }
        if self.ctr() & CTR_KBDDIS == 0 {
            while let Some(b) = self.kbd.replies.pop_front().or_else(|| {
                if self.kbd.scanning {
                    self.kbd.keys.pop_front()
                } else {
                    None
                }
            }) {
                self.kbd.last_sent = b;
                if let Some(t) = self.translate(b) {
                    self.obuf = Some((t, Source::Kbd));
                    return;
                }
            }
        }
        if self.ctr() & CTR_AUXDIS == 0 {
            if let Some(b) = self.aux.replies.pop_front() {
                self.aux.last_sent = b;
                self.obuf = Some((b, Source::Aux));
            }
        }
    }

    fn translate(&mut self, b: u8) -> Option<u8> {
        if self.ctr() & CTR_XLATE == 0 {
            return Some(b);
        }
        if b == SET2_BREAK {
            self.xlate_break = true;
            return None;
        }
        let brk = if std::mem::take(&mut self.xlate_break) {
            0x80
        } else {
            0
        };
        Some(set2_to_set1(b) | brk)
    }

    /// Loads the output buffer and works out interrupt edges.
    fn settle(&mut self, fx: &mut Effects) {
        self.fill();
        let ctr = self.ctr();
        let kbd = matches!(self.obuf, Some((_, Source::Kbd))) && ctr & CTR_KBDINT != 0;
        let aux = matches!(self.obuf, Some((_, Source::Aux))) && ctr & CTR_AUXINT != 0;
        fx.kbd_irq = kbd && !self.kbd_level;
        fx.aux_irq = aux && !self.aux_level;
        self.kbd_level = kbd;
        self.aux_level = aux;
    }
}

/// The 8042 keyboard controller with its keyboard and mouse.
pub struct I8042<T: Trigger> {
    sink: Arc<dyn VmEventSink>,
    kbd_irq: T,
    aux_irq: T,
    state: Mutex<State>,
}

impl<T: Trigger> std::fmt::Debug for I8042<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("I8042").finish_non_exhaustive()
    }
}

impl<T: Trigger> I8042<T> {
    /// A controller reporting CPU resets to `sink`, raising IRQ1 through
    /// `kbd_irq` and IRQ12 through `aux_irq`.
    pub fn new(sink: Arc<dyn VmEventSink>, kbd_irq: T, aux_irq: T) -> Self {
        I8042 {
            sink,
            kbd_irq,
            aux_irq,
            state: Mutex::new(State::new()),
        }
    }

    /// Queues scancode bytes from the host keyboard, in the set the
    /// keyboard is in (set 2 unless the guest changed it; the controller
    /// translates to set 1 if the guest asked for that). Returns false, and
    /// counts the bytes as dropped, if the keyboard is not scanning or its
    /// buffer cannot take them all.
    pub fn key_press(&self, scancode: &[u8]) -> bool {
        let mut fx = Effects::default();
        let queued = {
            let mut s = lock(&self.state);
            // The output buffer counts: at most KEY_QUEUE_CAP bytes are
            // readable, so a flush of 16 bytes always empties it.
            let held = s.kbd.keys.len() + usize::from(s.obuf.is_some());
            let fits = held.saturating_add(scancode.len()) <= KEY_QUEUE_CAP;
            if s.kbd.scanning && fits {
                s.kbd.keys.extend(scancode);
                s.settle(&mut fx);
                true
            } else {
                s.dropped_key_bytes = s.dropped_key_bytes.saturating_add(scancode.len() as u64);
                false
            }
        };
        self.apply(fx);
        queued
    }

    /// Scancode bytes dropped because the keyboard buffer was full or
    /// scanning was disabled.
    pub fn dropped_key_bytes(&self) -> u64 {
        lock(&self.state).dropped_key_bytes
    }

    /// The command byte (for diagnostics).
    pub fn command_byte(&self) -> u8 {
        lock(&self.state).ctr()
    }

    fn apply(&self, fx: Effects) {
        if fx.kbd_irq {
            if let Err(e) = self.kbd_irq.trigger() {
                log::debug!("i8042: raising IRQ1 failed: {e:?}");
            }
        }
        if fx.aux_irq {
            if let Err(e) = self.aux_irq.trigger() {
                log::debug!("i8042: raising IRQ12 failed: {e:?}");
            }
        }
        if fx.reset {
            log::info!("i8042: CPU reset requested");
            self.sink.vm_event(VmEvent::Reset);
        }
    }
}

/// The port byte lane `i` of an access lands on.
fn port_at(base: PioAddress, offset: PioAddressOffset, i: usize) -> Option<u16> {
    u64::from(base.0)
        .checked_add(u64::from(offset))?
        .checked_add(i as u64)
        .and_then(|p| u16::try_from(p).ok())
}

impl<T: Trigger> DevicePio for I8042<T> {
    fn pio_read(&self, base: PioAddress, offset: PioAddressOffset, data: &mut [u8]) {
        let mut fx = Effects::default();
        {
            let mut s = lock(&self.state);
            for (i, byte) in data.iter_mut().enumerate() {
                *byte = match port_at(base, offset, i) {
                    Some(I8042_DATA_PORT) => {
                        let b = s.read_data();
                        s.settle(&mut fx);
                        b
                    }
                    Some(I8042_COMMAND_PORT) => s.status(),
                    _ => 0xff,
                };
            }
        }
        self.apply(fx);
    }

    fn pio_write(&self, base: PioAddress, offset: PioAddressOffset, data: &[u8]) {
        let mut fx = Effects::default();
        {
            let mut s = lock(&self.state);
            for (i, &byte) in data.iter().enumerate() {
                match port_at(base, offset, i) {
                    Some(I8042_DATA_PORT) => s.data(byte, &mut fx),
                    Some(I8042_COMMAND_PORT) => s.command(byte, &mut fx),
                    _ => continue,
                }
                s.settle(&mut fx);
            }
        }
        self.apply(fx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm_event::RecordingSink;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default, Clone)]
    struct CountIrq(Arc<AtomicUsize>);

    impl CountIrq {
        fn count(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    impl Trigger for CountIrq {
        type E = std::convert::Infallible;
        fn trigger(&self) -> Result<(), Self::E> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    struct Rig {
        dev: I8042<CountIrq>,
        sink: Arc<RecordingSink>,
        kbd: CountIrq,
        aux: CountIrq,
    }

    fn rig() -> Rig {
        let sink = Arc::new(RecordingSink::default());
        let (kbd, aux) = (CountIrq::default(), CountIrq::default());
        Rig {
            dev: I8042::new(sink.clone(), kbd.clone(), aux.clone()),
            sink,
            kbd,
            aux,
        }
    }

    impl Rig {
        fn status(&self) -> u8 {
            let mut d = [0u8];
            self.dev.pio_read(PioAddress(I8042_COMMAND_PORT), 0, &mut d);
            d[0]
        }
        fn cmd(&self, c: u8) {
            self.dev.pio_write(PioAddress(I8042_COMMAND_PORT), 0, &[c]);
        }
        fn write(&self, v: u8) {
            self.dev.pio_write(PioAddress(I8042_DATA_PORT), 0, &[v]);
        }
        fn read(&self) -> u8 {
            let mut d = [0u8];
            self.dev.pio_read(PioAddress(I8042_DATA_PORT), 0, &mut d);
            d[0]
        }
        /// Reads everything in the output buffer, as Linux's i8042_flush.
        fn drain(&self) -> Vec<u8> {
            let mut out = Vec::new();
            while self.status() & STS_OBF != 0 {
                out.push(self.read());
                assert!(out.len() <= 4096, "output never empties");
            }
            out
        }
        /// Drains and records whether each byte came with AUXDATA.
        fn drain_tagged(&self) -> Vec<(u8, bool)> {
            let mut out = Vec::new();
            loop {
                let st = self.status();
                if st & STS_OBF == 0 {
                    return out;
                }
                out.push((self.read(), st & STS_AUXDATA != 0));
            }
        }
        fn kbd_cmd(&self, bytes: &[u8]) -> Vec<u8> {
            for &b in bytes {
                self.write(b);
            }
            self.drain()
        }
        fn aux_cmd(&self, bytes: &[u8]) -> Vec<(u8, bool)> {
            for &b in bytes {
                self.cmd(CMD_WRITE_AUX);
                self.write(b);
            }
            self.drain_tagged()
        }
        fn read_ctr(&self) -> u8 {
            self.cmd(CMD_READ_CTR);
            assert_eq!(self.status() & (STS_OBF | STS_AUXDATA), STS_OBF);
            self.read()
        }
        fn write_ctr(&self, v: u8) {
            self.cmd(CMD_WRITE_CTR);
            self.write(v);
        }
    }

    #[test]
    fn test_i8042_power_on_state() {
        let r = rig();
        let st = r.status();
        assert_eq!(st & STS_OBF, 0, "no stale data: Linux's flush must end");
        assert_eq!(st & STS_IBF, 0);
        assert_ne!(st & STS_SYS, 0, "self-test passed at POST");
        assert_ne!(st & STS_UNLOCKED, 0, "keylock not engaged");
        assert_eq!(r.read_ctr(), CTR_DEFAULT);
        assert_eq!(r.kbd.count(), 1, "the CTR reply raised IRQ1 (KBDINT set)");
        assert!(r.sink.events().is_empty());
    }

    /// The sequence Linux's i8042 driver runs at probe (i8042.c:
    /// i8042_controller_check, _selftest, _init, i8042_check_mux,
    /// i8042_check_aux), step by step.
    #[test]
    fn test_i8042_linux_probe_sequence() {
        let r = rig();
        // i8042_controller_check: flush.
        assert!(r.drain().is_empty());
        // i8042_controller_selftest.
        r.cmd(CMD_SELF_TEST);
        assert_eq!(r.drain(), vec![REPLY_SELF_TEST_OK]);
        // i8042_controller_init: stable CTR, then KBDDIS and no KBDINT.
        let ctr = r.read_ctr();
        assert_eq!(r.read_ctr(), ctr);
        assert_ne!(ctr & CTR_XLATE, 0, "translated keyboard, not direct");
        let ctr = (ctr | CTR_KBDDIS) & !CTR_KBDINT;
        r.write_ctr(ctr);
        assert_eq!(r.read_ctr(), ctr);
        assert!(r.drain().is_empty());
        // i8042_set_mux_mode: loopback F0, 56, A4: the last coming back
        // unchanged means "no active multiplexing".
        for v in [0xf0, 0x56, 0xa4] {
            r.cmd(CMD_WRITE_AUX_OBUF);
            r.write(v);
            assert_eq!(r.drain_tagged(), vec![(v, true)]);
        }
        // i8042_check_aux: AUX_LOOP 0x5a.
        r.cmd(CMD_WRITE_AUX_OBUF);
        r.write(0x5a);
        assert_eq!(r.drain_tagged(), vec![(0x5a, true)]);
        // i8042_toggle_aux(false/true) reads back AUXDIS.
        r.cmd(CMD_AUX_DISABLE);
        assert_ne!(r.read_ctr() & CTR_AUXDIS, 0);
        r.cmd(CMD_AUX_ENABLE);
        assert_eq!(r.read_ctr() & CTR_AUXDIS, 0);
        // AUX IRQ test: with AUXINT enabled, a loopback raises IRQ12.
        let ctr = r.read_ctr();
        r.write_ctr((ctr & !CTR_AUXDIS) | CTR_AUXINT);
        let before = r.aux.count();
        r.cmd(CMD_WRITE_AUX_OBUF);
        r.write(0xa5);
        assert_eq!(r.aux.count(), before + 1);
        assert_eq!(r.drain_tagged(), vec![(0xa5, true)]);
        // Enabling the keyboard port with its interrupt for atkbd.
        let ctr = r.read_ctr();
        r.write_ctr((ctr & !CTR_KBDDIS) | CTR_KBDINT);
        // atkbd_probe: GETID through the translating controller.
        assert_eq!(r.kbd_cmd(&[KBD_CMD_GET_ID]), vec![DEV_ACK, 0xab, 0x41]);
        // psmouse: reset and ID.
        assert_eq!(
            r.aux_cmd(&[AUX_CMD_RESET]),
            vec![(DEV_ACK, true), (DEV_BAT_OK, true), (AUX_ID, true)]
        );
        assert_eq!(
            r.aux_cmd(&[AUX_CMD_GET_ID]),
            vec![(DEV_ACK, true), (AUX_ID, true)]
        );
        assert!(r.sink.events().is_empty());
    }

    #[test]
    fn test_i8042_controller_commands() {
        let r = rig();
        r.cmd(CMD_AUX_TEST);
        assert_eq!(r.drain(), vec![REPLY_INTERFACE_OK]);
        r.cmd(CMD_KBD_TEST);
        assert_eq!(r.drain(), vec![REPLY_INTERFACE_OK]);
        r.cmd(CMD_KBD_DISABLE);
        assert_ne!(r.read_ctr() & CTR_KBDDIS, 0);
        r.cmd(CMD_KBD_ENABLE);
        assert_eq!(r.read_ctr() & CTR_KBDDIS, 0);
        r.cmd(CMD_AUX_ENABLE);
        assert_eq!(r.read_ctr() & CTR_AUXDIS, 0);
        r.cmd(CMD_AUX_DISABLE);
        assert_ne!(r.read_ctr() & CTR_AUXDIS, 0);
        // Output port: default, then written (A20 off, no reset).
        r.cmd(CMD_READ_OUTPUT);
        assert_eq!(r.drain(), vec![OUT_DEFAULT]);
        r.cmd(CMD_WRITE_OUTPUT);
        r.write(0xdd);
        r.cmd(CMD_READ_OUTPUT);
        assert_eq!(r.drain(), vec![0xdd & !(OUT_KBD_OBF | OUT_AUX_OBF)]);
        assert!(r.sink.events().is_empty());
        // Controller RAM bytes 1-31.
        for i in 1..32u8 {
            r.cmd(CMD_WRITE_CTR + i);
            r.write(i ^ 0xa0);
        }
        for i in 1..32u8 {
            r.cmd(CMD_READ_CTR + i);
            assert_eq!(r.drain(), vec![i ^ 0xa0]);
        }
        // D2: as if from the keyboard (IRQ1 with KBDINT), not translated.
        let k = r.kbd.count();
        r.cmd(CMD_WRITE_KBD_OBUF);
        r.write(0x1c);
        assert_eq!(r.kbd.count(), k + 1);
        assert_eq!(r.drain_tagged(), vec![(0x1c, false)]);
        // D3 with AUXINT clear: data, AUXDATA, no IRQ12.
        let a = r.aux.count();
        r.cmd(CMD_WRITE_AUX_OBUF);
        r.write(0x77);
        assert_eq!(r.drain_tagged(), vec![(0x77, true)]);
        assert_eq!(r.aux.count(), a);
    }

    #[test]
    fn test_i8042_status_flags() {
        let r = rig();
        r.cmd(CMD_READ_CTR);
        assert_ne!(r.status() & STS_CMD, 0, "A2: last write was a command");
        let ctr = r.read();
        r.write_ctr(ctr & !CTR_SYS);
        assert_eq!(r.status() & STS_CMD, 0, "last write was data");
        assert_eq!(r.status() & STS_SYS, 0, "SYS follows the command byte");
        r.cmd(CMD_SELF_TEST);
        assert_ne!(r.status() & STS_SYS, 0, "self-test sets SYS");
        assert_eq!(r.status() & (STS_OBF | STS_AUXDATA), STS_OBF);
        assert_eq!(r.read(), REPLY_SELF_TEST_OK);
        assert_eq!(r.status() & STS_OBF, 0);
        // Reading with OBF clear gives the last byte again.
        assert_eq!(r.read(), REPLY_SELF_TEST_OK);
        assert_eq!(r.status() & (STS_IBF | STS_TIMEOUT | STS_PARITY), 0);
    }

    #[test]
    fn test_i8042_reset_commands() {
        let r = rig();
        r.cmd(CMD_PULSE_RESET);
        assert_eq!(r.sink.events(), vec![VmEvent::Reset]);
        // 0xFF pulses nothing; every even F-command pulses the reset line.
        let r = rig();
        r.cmd(0xff);
        r.cmd(0xfd);
        assert!(r.sink.events().is_empty());
        r.cmd(0xf0);
        assert_eq!(r.sink.events(), vec![VmEvent::Reset]);
        // Output port write with bit 0 low.
        let r = rig();
        r.cmd(CMD_WRITE_OUTPUT);
        r.write(0xde);
        assert_eq!(r.sink.events(), vec![VmEvent::Reset]);
    }

    #[test]
    fn test_i8042_keyboard_commands_translated_and_raw() {
        let r = rig();
        assert_eq!(r.kbd_cmd(&[KBD_CMD_RESET]), vec![DEV_ACK, DEV_BAT_OK]);
        assert_eq!(r.kbd_cmd(&[KBD_CMD_GET_ID]), vec![DEV_ACK, 0xab, 0x41]);
        assert_eq!(r.kbd_cmd(&[KBD_CMD_ENABLE]), vec![DEV_ACK]);
        assert_eq!(r.kbd_cmd(&[KBD_CMD_DISABLE]), vec![DEV_ACK]);
        assert_eq!(r.kbd_cmd(&[KBD_CMD_DEFAULTS]), vec![DEV_ACK]);
        assert_eq!(r.kbd_cmd(&[KBD_CMD_SET_LEDS, 0x07]), vec![DEV_ACK, DEV_ACK]);
        assert_eq!(r.kbd_cmd(&[KBD_CMD_SET_RATE, 0x20]), vec![DEV_ACK, DEV_ACK]);
        assert_eq!(r.kbd_cmd(&[KBD_CMD_ECHO]), vec![KBD_ECHO]);
        // Scancode set 2, read through translation: 0x41.
        assert_eq!(
            r.kbd_cmd(&[KBD_CMD_SCANCODE_SET, 0]),
            vec![DEV_ACK, DEV_ACK, 0x41]
        );
        // Untranslated.
        let ctr = r.read_ctr();
        r.write_ctr(ctr & !CTR_XLATE);
        assert_eq!(r.kbd_cmd(&[KBD_CMD_GET_ID]), vec![DEV_ACK, 0xab, 0x83]);
        assert_eq!(
            r.kbd_cmd(&[KBD_CMD_SCANCODE_SET, 0]),
            vec![DEV_ACK, DEV_ACK, 2]
        );
        assert_eq!(
            r.kbd_cmd(&[KBD_CMD_SCANCODE_SET, 3]),
            vec![DEV_ACK, DEV_ACK]
        );
        assert_eq!(
            r.kbd_cmd(&[KBD_CMD_SCANCODE_SET, 0]),
            vec![DEV_ACK, DEV_ACK, 3]
        );
        assert_eq!(
            r.kbd_cmd(&[KBD_CMD_SCANCODE_SET, 1]),
            vec![DEV_ACK, DEV_ACK]
        );
        assert_eq!(
            r.kbd_cmd(&[KBD_CMD_SCANCODE_SET, 0]),
            vec![DEV_ACK, DEV_ACK, 1]
        );
        // Bad options: resend.
        assert_eq!(
            r.kbd_cmd(&[KBD_CMD_SCANCODE_SET, 4]),
            vec![DEV_ACK, DEV_RESEND]
        );
        assert_eq!(
            r.kbd_cmd(&[KBD_CMD_SET_LEDS, 0x08]),
            vec![DEV_ACK, DEV_RESEND]
        );
        // A command in place of an option runs.
        assert_eq!(
            r.kbd_cmd(&[KBD_CMD_SET_RATE, KBD_CMD_ECHO]),
            vec![DEV_ACK, KBD_ECHO]
        );
        // Resend repeats the last byte sent.
        assert_eq!(r.kbd_cmd(&[KBD_CMD_RESEND]), vec![KBD_ECHO]);
        // Set-3 modes acknowledged.
        assert_eq!(r.kbd_cmd(&[0xf8]), vec![DEV_ACK]);
        // Reset restores set 2.
        assert_eq!(r.kbd_cmd(&[KBD_CMD_RESET]), vec![DEV_ACK, DEV_BAT_OK]);
        assert_eq!(
            r.kbd_cmd(&[KBD_CMD_SCANCODE_SET, 0]),
            vec![DEV_ACK, DEV_ACK, 2]
        );
    }

    #[test]
    fn test_i8042_unknown_keyboard_commands_get_resend() {
        let r = rig();
        for v in [0x00u8, 0x12, 0x80, 0xab, 0xec, 0xef, 0xf1, 0xfb, 0xfc, 0xfd] {
            assert_eq!(r.kbd_cmd(&[v]), vec![DEV_RESEND], "command {v:#x}");
        }
    }

    #[test]
    fn test_i8042_writing_to_keyboard_enables_its_port() {
        let r = rig();
        r.cmd(CMD_KBD_DISABLE);
        assert_eq!(r.kbd_cmd(&[KBD_CMD_ECHO]), vec![KBD_ECHO]);
        assert_eq!(r.read_ctr() & CTR_KBDDIS, 0);
        r.cmd(CMD_AUX_DISABLE);
        assert_eq!(
            r.aux_cmd(&[AUX_CMD_GET_ID]),
            vec![(DEV_ACK, true), (AUX_ID, true)]
        );
        assert_eq!(r.read_ctr() & CTR_AUXDIS, 0);
    }

    #[test]
    fn test_i8042_mouse_commands() {
        let r = rig();
        let acked = |bytes: &[u8]| -> Vec<(u8, bool)> {
            std::iter::once(DEV_ACK)
                .chain(bytes.iter().copied())
                .map(|b| (b, true))
                .collect()
        };
        assert_eq!(r.aux_cmd(&[AUX_CMD_RESET]), acked(&[DEV_BAT_OK, AUX_ID]));
        assert_eq!(
            r.aux_cmd(&[AUX_CMD_STATUS]),
            acked(&[0x00, AUX_DEFAULT_RES, 100])
        );
        // Sample rate 200, resolution 3, scaling 2:1, reporting on, remote.
        assert_eq!(r.aux_cmd(&[AUX_CMD_SET_RATE, 200]), acked(&[DEV_ACK]));
        assert_eq!(r.aux_cmd(&[AUX_CMD_SET_RES, 3]), acked(&[DEV_ACK]));
        assert_eq!(r.aux_cmd(&[AUX_CMD_SCALE_2_1]), acked(&[]));
        assert_eq!(r.aux_cmd(&[AUX_CMD_ENABLE]), acked(&[]));
        assert_eq!(r.aux_cmd(&[AUX_CMD_REMOTE]), acked(&[]));
        assert_eq!(r.aux_cmd(&[AUX_CMD_STATUS]), acked(&[0x70, 3, 200]));
        assert_eq!(r.aux_cmd(&[AUX_CMD_STREAM]), acked(&[]));
        assert_eq!(r.aux_cmd(&[AUX_CMD_SCALE_1_1]), acked(&[]));
        assert_eq!(r.aux_cmd(&[AUX_CMD_DISABLE]), acked(&[]));
        assert_eq!(r.aux_cmd(&[AUX_CMD_STATUS]), acked(&[0x00, 3, 200]));
        assert_eq!(r.aux_cmd(&[AUX_CMD_DEFAULTS]), acked(&[]));
        assert_eq!(r.aux_cmd(&[AUX_CMD_STATUS]), acked(&[0x00, 2, 100]));
        assert_eq!(r.aux_cmd(&[AUX_CMD_READ_DATA]), acked(&AUX_IDLE_PACKET));
        // Bad resolution: resend.
        assert_eq!(r.aux_cmd(&[AUX_CMD_SET_RES, 9]), acked(&[DEV_RESEND]));
        // Synaptics probe (E8 00 x4, E9) must not see 0x47 in byte 2.
        let mut seq = Vec::new();
        for _ in 0..4 {
            seq.extend([AUX_CMD_SET_RES, 0]);
        }
        seq.push(AUX_CMD_STATUS);
        let got = r.aux_cmd(&seq);
        assert_eq!(got[got.len() - 2].0, 0, "resolution 0, not Synaptics' 0x47");
        // IntelliMouse knock (200, 100, 80) still reports a plain mouse.
        let got = r.aux_cmd(&[
            AUX_CMD_SET_RATE,
            200,
            AUX_CMD_SET_RATE,
            100,
            AUX_CMD_SET_RATE,
            80,
            AUX_CMD_GET_ID,
        ]);
        assert_eq!(got.last(), Some(&(AUX_ID, true)));
        // Wrap mode echoes until EC.
        assert_eq!(r.aux_cmd(&[AUX_CMD_SET_WRAP]), acked(&[]));
        assert_eq!(
            r.aux_cmd(&[0x12, AUX_CMD_GET_ID]),
            vec![(0x12, true), (AUX_CMD_GET_ID, true)]
        );
        assert_eq!(r.aux_cmd(&[AUX_CMD_RESET_WRAP]), acked(&[]));
        assert_eq!(r.aux_cmd(&[AUX_CMD_GET_ID]), acked(&[AUX_ID]));
        // Unknown, then resend of the last byte.
        assert_eq!(r.aux_cmd(&[0x00]), vec![(DEV_RESEND, true)]);
        assert_eq!(r.aux_cmd(&[AUX_CMD_RESEND]), vec![(DEV_RESEND, true)]);
    }

    #[test]
    fn test_i8042_key_press_translation() {
        let r = rig();
        // 'A' make/break in set 2: 1C, F0 1C -> set 1: 1E, 9E.
        assert!(r.dev.key_press(&[0x1c]));
        assert!(r.dev.key_press(&[0xf0, 0x1c]));
        // Up arrow: E0 75 / E0 F0 75 -> E0 48 / E0 C8.
        assert!(r.dev.key_press(&[0xe0, 0x75]));
        assert!(r.dev.key_press(&[0xe0, 0xf0, 0x75]));
        // F7 (0x83) -> 0x41.
        assert!(r.dev.key_press(&[0x83]));
        assert_eq!(r.drain(), vec![0x1e, 0x9e, 0xe0, 0x48, 0xe0, 0xc8, 0x41]);
        // Without translation the bytes pass untouched.
        let ctr = r.read_ctr();
        r.write_ctr(ctr & !CTR_XLATE);
        assert!(r.dev.key_press(&[0xf0, 0x1c]));
        assert_eq!(r.drain(), vec![0xf0, 0x1c]);
        // The whole table: every set-2 make code has a set-1 code below 0x80
        // (except 0x00, the overrun code, which becomes 0xFF).
        for b in 1..0x80u8 {
            assert!(set2_to_set1(b) < 0x80, "{b:#x}");
        }
        assert_eq!(set2_to_set1(0x00), 0xff);
        assert_eq!(set2_to_set1(DEV_ACK), DEV_ACK);
        assert_eq!(set2_to_set1(DEV_BAT_OK), DEV_BAT_OK);
    }

    #[test]
    fn test_i8042_key_queue_is_bounded_and_counts_drops() {
        let r = rig();
        let mut accepted = 0u64;
        for i in 0..100_000u32 {
            if r.dev
                .key_press(&[(i % 0x70) as u8 + 1, 0xf0, (i % 0x70) as u8 + 1])
            {
                accepted += 3;
            }
        }
        assert!(accepted <= KEY_QUEUE_CAP as u64 + 3);
        assert_eq!(r.dev.dropped_key_bytes(), 300_000 - accepted);
        let out = r.drain();
        // Breaks fold into one byte under translation: 2 out per 3 in.
        assert_eq!(out.len() as u64, accepted / 3 * 2);
        assert!(out.len() <= 16, "Linux's flush limit");
        // Room again after draining.
        assert!(r.dev.key_press(&[0x1c]));
        assert_eq!(r.drain(), vec![0x1e]);
        // Scanning disabled: presses dropped.
        assert_eq!(r.kbd_cmd(&[KBD_CMD_DISABLE]), vec![DEV_ACK]);
        let before = r.dev.dropped_key_bytes();
        assert!(!r.dev.key_press(&[0x1c, 0xf0, 0x1c]));
        assert_eq!(r.dev.dropped_key_bytes(), before + 3);
        assert!(r.drain().is_empty());
        assert_eq!(r.kbd_cmd(&[KBD_CMD_ENABLE]), vec![DEV_ACK]);
        assert!(r.dev.key_press(&[0x1c]));
        assert_eq!(r.drain(), vec![0x1e]);
    }

    #[test]
    fn test_i8042_keys_wait_while_keyboard_port_disabled() {
        let r = rig();
        r.cmd(CMD_KBD_DISABLE);
        assert!(r.dev.key_press(&[0x1c]));
        assert_eq!(r.status() & STS_OBF, 0);
        r.cmd(CMD_KBD_ENABLE);
        assert_eq!(r.drain(), vec![0x1e]);
    }

    #[test]
    fn test_i8042_interrupts_follow_ctr_and_output_buffer() {
        let r = rig();
        // KBDINT on at power-on: each key byte entering the buffer is an edge.
        assert!(r.dev.key_press(&[0x1c, 0x32]));
        assert_eq!(r.kbd.count(), 1);
        let _ = r.read();
        assert_eq!(r.kbd.count(), 2, "next byte loaded, new edge");
        let _ = r.read();
        assert_eq!(r.kbd.count(), 2);
        // KBDINT off: no interrupt; turning it on with data waiting raises it.
        r.write_ctr(CTR_DEFAULT & !CTR_KBDINT);
        assert_eq!(r.kbd.count(), 2);
        assert!(r.dev.key_press(&[0x1c]));
        assert_eq!(r.kbd.count(), 2);
        r.write_ctr(CTR_DEFAULT);
        assert_eq!(r.kbd.count(), 3);
        assert_eq!(r.drain(), vec![0x1e]);
        // Mouse bytes raise IRQ12 only, when AUXINT is set.
        r.write_ctr((CTR_DEFAULT | CTR_AUXINT) & !CTR_AUXDIS);
        let (k, a) = (r.kbd.count(), r.aux.count());
        assert_eq!(
            r.aux_cmd(&[AUX_CMD_GET_ID]),
            vec![(DEV_ACK, true), (AUX_ID, true)]
        );
        assert_eq!(r.aux.count(), a + 2);
        assert_eq!(r.kbd.count(), k);
        assert_eq!(
            r.dev.command_byte(),
            (CTR_DEFAULT | CTR_AUXINT) & !CTR_AUXDIS
        );
    }

    #[test]
    fn test_i8042_every_command_and_data_value_is_safe() {
        let r = rig();
        for cmd in 0..=255u8 {
            for data in [0x00u8, 0x5a, 0xff] {
                r.cmd(cmd);
                r.write(data);
                let _ = r.drain();
            }
        }
        // Resets only from F0-FF with bit 0 clear (8 commands, each run
        // three times) and D1 with data bit 0 clear (0x00 and 0x5a).
        let resets = r.sink.events().len();
        assert_eq!(resets, 8 * 3 + 2);
        assert!(r.sink.events().iter().all(|e| *e == VmEvent::Reset));
        // A flood of commands without reading stays bounded.
        let r = rig();
        for _ in 0..10_000 {
            r.write(KBD_CMD_GET_ID);
            r.cmd(CMD_SELF_TEST);
            r.cmd(CMD_WRITE_AUX);
            r.write(AUX_CMD_STATUS);
        }
        assert!(r.drain().len() <= 3 * REPLY_QUEUE_CAP + 1);
    }

    #[test]
    fn test_i8042_ports_and_byte_lanes() {
        let r = rig();
        r.cmd(CMD_SELF_TEST);
        // A 16-bit read at 0x60 reads the data, then port 0x61 (not ours).
        let mut d = [0u8; 2];
        r.dev.pio_read(PioAddress(I8042_DATA_PORT), 0, &mut d);
        assert_eq!(d, [REPLY_SELF_TEST_OK, 0xff]);
        // Dispatch is on the port: base 0x60 + offset 4 is the status port.
        let mut d = [0u8];
        r.dev.pio_read(PioAddress(I8042_DATA_PORT), 4, &mut d);
        assert_eq!(d[0] & STS_UNLOCKED, STS_UNLOCKED);
        // Other ports: 0xff, writes ignored.
        r.dev.pio_read(PioAddress(0x62), 0, &mut d);
        assert_eq!(d[0], 0xff);
        r.dev.pio_write(PioAddress(0x65), 0, &[CMD_PULSE_RESET]);
        r.dev
            .pio_write(PioAddress(0xffff), 0xffff, &[CMD_PULSE_RESET]);
        r.dev.pio_read(PioAddress(0xffff), 0xffff, &mut [0u8; 3]);
        r.dev.pio_write(PioAddress(I8042_COMMAND_PORT), 0, &[]);
        assert!(r.sink.events().is_empty());
        // A 2-byte write at 0x64 writes the command, then port 0x65.
        r.dev
            .pio_write(PioAddress(I8042_COMMAND_PORT), 0, &[CMD_PULSE_RESET, 0]);
        assert_eq!(r.sink.events(), vec![VmEvent::Reset]);
    }
}
