//! A clock the fuzz input drives, for the devices that read time (CMOS RTC,
//! ACPI PM timer): every run is reproducible from its input alone, and the
//! input decides when time moves and by how much.

use std::sync::atomic::{AtomicU64, Ordering};

use vmm_devices::legacy::{MonotonicClock, RtcClock};

/// Host time as far as the devices know: a wall-clock start plus the
/// nanoseconds the input has advanced it by.
#[derive(Debug)]
pub struct FuzzClock {
    start_secs: i64,
    start_nanos: u32,
    elapsed_ns: AtomicU64,
}

/// Host wall-clock starts the input may pick are kept within this many
/// seconds of the epoch (about 544 years either way): a real host clock is
/// never further off, and the guest controls its own offset from it anyway.
pub const MAX_START_SECS: i64 = 1 << 34;

impl FuzzClock {
    /// A clock starting at `start_secs` (clamped to
    /// ±[`MAX_START_SECS`]) plus `start_nanos` (taken modulo 10^9).
    pub fn new(start_secs: i64, start_nanos: u32) -> Self {
        FuzzClock {
            start_secs: start_secs.clamp(-MAX_START_SECS, MAX_START_SECS),
            start_nanos: start_nanos % 1_000_000_000,
            elapsed_ns: AtomicU64::new(0),
        }
    }

    /// Moves time forward (saturating: a monotonic clock never wraps).
    pub fn advance(&self, ns: u64) {
        let now = self.elapsed_ns.load(Ordering::Relaxed);
        self.elapsed_ns
            .store(now.saturating_add(ns), Ordering::Relaxed);
    }

    /// Nanoseconds advanced so far.
    pub fn elapsed_ns(&self) -> u64 {
        self.elapsed_ns.load(Ordering::Relaxed)
    }
}

impl RtcClock for FuzzClock {
    fn now(&self) -> (i64, u32) {
        let total = i128::from(self.start_nanos) + i128::from(self.elapsed_ns());
        let secs = i128::from(self.start_secs) + total / 1_000_000_000;
        let secs = i64::try_from(secs).unwrap_or(i64::MAX);
        (secs, (total % 1_000_000_000) as u32)
    }
}

impl MonotonicClock for FuzzClock {
    fn now_ns(&self) -> u64 {
        self.elapsed_ns()
    }
}
