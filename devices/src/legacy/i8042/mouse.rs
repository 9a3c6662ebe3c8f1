//! The PS/2 mouse on the 8042's auxiliary port: a standard mouse (ID 0)
//! that never moves, with its command/reply state machine (reset, status,
//! sample rate, resolution, scaling, stream/remote and wrap modes).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{push_bounded, DEV_ACK, DEV_BAT_OK, DEV_RESEND};

/// A standard PS/2 mouse's ID.
pub const AUX_ID: u8 = 0x00;

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

const AUX_DEFAULT_RATE: u8 = 100;
pub(super) const AUX_DEFAULT_RES: u8 = 2; // 4 counts/mm
const AUX_MAX_RES: u8 = 3;
/// The lowest byte a mouse treats as a command.
const AUX_FIRST_CMD: u8 = AUX_CMD_SCALE_1_1;
/// A motionless stream packet: no buttons, bit 3 always set.
pub(super) const AUX_IDLE_PACKET: [u8; 3] = [0x08, 0x00, 0x00];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum AuxOption {
    Resolution,
    SampleRate,
}

/// The mouse's state; the controller drains `replies` into its output
/// buffer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Mouse {
    pub(super) replies: VecDeque<u8>,
    option: Option<AuxOption>,
    sample_rate: u8,
    resolution: u8,
    scaling_2_1: bool,
    reporting: bool,
    remote: bool,
    wrap: bool,
    pub(super) last_sent: u8,
}

impl Mouse {
    pub(super) fn new() -> Self {
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
        for &b in bytes {
            push_bounded(&mut self.replies, b, b, "mouse");
        }
    }

    fn defaults(&mut self) {
        self.sample_rate = AUX_DEFAULT_RATE;
        self.resolution = AUX_DEFAULT_RES;
        self.scaling_2_1 = false;
        self.reporting = false;
    }

    pub(super) fn receive(&mut self, v: u8) {
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
