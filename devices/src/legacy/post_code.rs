//! The POST-code port 0x80: firmware and kernels write progress codes here
//! (a POST card shows them). Every byte is recorded with the time since the
//! VM started; optionally each is printed to stderr as it arrives.
//!
//! Linux also writes here as an I/O delay, so the record is bounded: the
//! newest [`POST_CODE_HISTORY`] codes are kept and the rest only counted.
//! Reads return all ones, as in QEMU.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vm_device::bus::{PioAddress, PioAddressOffset};
use vm_device::DevicePio;

use crate::lock;

mod state;
pub use state::{PostCodeState, POST_CODES_SAVED};

/// The conventional port.
pub const POST_CODE_PORT: u16 = 0x80;
/// How many codes are kept.
pub const POST_CODE_HISTORY: usize = 4096;

/// One recorded code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostCode {
    /// The byte written.
    pub code: u8,
    /// Time since the VM started.
    pub at: Duration,
}

struct Record {
    codes: VecDeque<PostCode>,
    total: u64,
}

/// The POST-code port device.
pub struct PostCodePort {
    start: Instant,
    print: bool,
    record: Mutex<Record>,
}

impl PostCodePort {
    /// A port timing codes from `start`; `print` writes each code to stderr
    /// as `post code=0xNN t=SECONDS`.
    pub fn new(start: Instant, print: bool) -> Self {
        PostCodePort {
            start,
            print,
            record: Mutex::new(Record {
                codes: VecDeque::new(),
                total: 0,
            }),
        }
    }

    /// The kept codes, oldest first.
    pub fn codes(&self) -> Vec<PostCode> {
        lock(&self.record).codes.iter().copied().collect()
    }

    /// How many codes were ever written.
    pub fn total(&self) -> u64 {
        lock(&self.record).total
    }
}

impl DevicePio for PostCodePort {
    fn pio_read(&self, _: PioAddress, _: PioAddressOffset, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn pio_write(&self, _: PioAddress, _: PioAddressOffset, data: &[u8]) {
        let at = self.start.elapsed();
        let mut rec = lock(&self.record);
        for &code in data.iter().take(1) {
            if rec.codes.len() == POST_CODE_HISTORY {
                rec.codes.pop_front();
            }
            rec.codes.push_back(PostCode { code, at });
            rec.total += 1;
            if self.print {
                eprintln!("post code={code:#04x} t={:.6}", at.as_secs_f64());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_post_codes_recorded_in_order_with_time() {
        let dev = PostCodePort::new(Instant::now(), false);
        dev.pio_write(PioAddress(0x80), 0, &[0x11]);
        dev.pio_write(PioAddress(0x80), 0, &[0x22]);
        let codes = dev.codes();
        assert_eq!(
            codes.iter().map(|c| c.code).collect::<Vec<_>>(),
            vec![0x11, 0x22]
        );
        assert!(codes[0].at <= codes[1].at);
        let mut d = [0u8];
        dev.pio_read(PioAddress(0x80), 0, &mut d);
        assert_eq!(d[0], 0xff);
    }

    #[test]
    fn test_post_code_history_is_bounded() {
        let dev = PostCodePort::new(Instant::now(), false);
        for i in 0..(POST_CODE_HISTORY + 10) {
            dev.pio_write(PioAddress(0x80), 0, &[i as u8]);
        }
        assert_eq!(dev.codes().len(), POST_CODE_HISTORY);
        assert_eq!(dev.total(), (POST_CODE_HISTORY + 10) as u64);
        assert_eq!(dev.codes()[0].code, 10);
    }
}
