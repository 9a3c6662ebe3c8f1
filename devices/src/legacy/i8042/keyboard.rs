//! The PS/2 keyboard on the 8042's first port: its command/reply state
//! machine (reset, identify, scancode set, typematic rate, LEDs, scanning)
//! and the buffer host key presses wait in before the controller takes them.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{push_bounded, DEV_ACK, DEV_BAT_OK, DEV_RESEND};

/// Keyboard reply to echo.
pub const KBD_ECHO: u8 = 0xee;
/// The MF2 keyboard's ID bytes (untranslated).
pub const KBD_ID: [u8; 2] = [0xab, 0x83];

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

/// Bytes the keyboard buffers for host key presses.
pub const KEY_QUEUE_CAP: usize = 16;
const KBD_DEFAULT_RATE: u8 = 0x2b; // 10.9 characters/s after 500 ms

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum KbdOption {
    Leds,
    ScancodeSet,
    Rate,
}

/// The keyboard's state; the controller drains `replies` (then `keys`,
/// while `scanning`) into its output buffer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Keyboard {
    pub(super) replies: VecDeque<u8>,
    pub(super) keys: VecDeque<u8>,
    option: Option<KbdOption>,
    pub(super) scanning: bool,
    scancode_set: u8,
    leds: u8,
    rate: u8,
    pub(super) last_sent: u8,
}

impl Keyboard {
    pub(super) fn new() -> Self {
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
        for &b in bytes {
            push_bounded(&mut self.replies, b, b, "keyboard");
        }
    }

    fn defaults(&mut self) {
        self.keys.clear();
        self.rate = KBD_DEFAULT_RATE;
    }

    pub(super) fn receive(&mut self, v: u8) {
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
