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

use serde::{Deserialize, Serialize};

use vm_device::bus::{PioAddress, PioAddressOffset};
use vm_device::DevicePio;
use vm_superio::Trigger;

use crate::bus::byte_lane_port;
use crate::lock;
use crate::vm_event::{VmEvent, VmEventSink};

mod keyboard;
mod mouse;
mod state;
mod xlate;

pub use state::I8042State;

use keyboard::Keyboard;
pub use keyboard::{
    KBD_CMD_DEFAULTS, KBD_CMD_DISABLE, KBD_CMD_ECHO, KBD_CMD_ENABLE, KBD_CMD_GET_ID,
    KBD_CMD_RESEND, KBD_CMD_RESET, KBD_CMD_SCANCODE_SET, KBD_CMD_SET_LEDS, KBD_CMD_SET_RATE,
    KBD_ECHO, KBD_ID, KEY_QUEUE_CAP,
};
use mouse::Mouse;
pub use mouse::{
    AUX_CMD_DEFAULTS, AUX_CMD_DISABLE, AUX_CMD_ENABLE, AUX_CMD_GET_ID, AUX_CMD_READ_DATA,
    AUX_CMD_REMOTE, AUX_CMD_RESEND, AUX_CMD_RESET, AUX_CMD_RESET_WRAP, AUX_CMD_SCALE_1_1,
    AUX_CMD_SCALE_2_1, AUX_CMD_SET_RATE, AUX_CMD_SET_RES, AUX_CMD_SET_WRAP, AUX_CMD_STATUS,
    AUX_CMD_STREAM, AUX_ID,
};

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

/// Bytes each device (and the controller) queues for command replies.
pub const REPLY_QUEUE_CAP: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Source {
    /// The keyboard port (keyboard bytes and controller replies).
    Kbd,
    /// The mouse port.
    Aux,
}

/// What the next write to the data port is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Pending {
    Ram(u8),
    OutputPort,
    KbdObuf,
    AuxObuf,
    Aux,
}

/// Pushes `entry` (which carries `byte`) onto a bounded reply queue, the
/// keyboard's, the mouse's or the controller's; a guest that never reads
/// loses the newest replies, not host memory.
fn push_bounded<T>(q: &mut VecDeque<T>, entry: T, byte: u8, who: &str) {
    if q.len() < REPLY_QUEUE_CAP {
        q.push_back(entry);
    } else {
        log::debug!("i8042: {who} reply queue full, dropped {byte:#04x}");
    }
}

/// Side effects collected under the lock and applied after it.
#[derive(Default)]
struct Effects {
    reset: bool,
    kbd_irq: bool,
    aux_irq: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
        push_bounded(&mut self.controller, (b, src), b, "controller");
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
        xlate::translate(b, &mut self.xlate_break)
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

impl<T: Trigger> DevicePio for I8042<T> {
    fn pio_read(&self, base: PioAddress, offset: PioAddressOffset, data: &mut [u8]) {
        let mut fx = Effects::default();
        {
            let mut s = lock(&self.state);
            for (i, byte) in data.iter_mut().enumerate() {
                *byte = match byte_lane_port(base, offset, i) {
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
                match byte_lane_port(base, offset, i) {
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
mod tests;
