//! The PC's real-time clock and CMOS RAM: a Motorola MC146818A at ports
//! 0x70 (index) and 0x71 (data), as in the IBM PC/AT.
//!
//! References: the Motorola MC146818A datasheet (register map, registers A-D,
//! the update cycle, BCD/binary and 12/24-hour data modes); the IBM PC/AT
//! Technical Reference for the index port's NMI-mask bit and the century byte
//! at 0x32; QEMU `hw/rtc/mc146818rtc.c` for the PC conventions a guest
//! expects (reset values of registers A-D, UIP for the last 244 us of each
//! second); QEMU `hw/i386/pc.c` (`pc_cmos_init`) for the memory-size bytes
//! firmware leaves in CMOS, and SeaBIOS `src/hw/rtc.h` / `src/fw/paravirt.c`
//! (`qemu_preinit`), which reads them back to size RAM.
//!
//! # Model
//! - **Index port** (0x70): bits 0-6 select one of 128 CMOS bytes; bit 7 set
//!   masks NMI ([`Cmos::nmi_masked`] reports the last value; the VMM decides
//!   what to do with it). The port is write-only on the AT: reads return
//!   0xff, as in QEMU.
//! - **Time** (0x00 seconds, 0x02 minutes, 0x04 hours, 0x06 day of week
//!   (1 = Sunday), 0x07 day of month, 0x08 month, 0x09 year in century, 0x32
//!   century): computed on every read from an [`RtcClock`] plus an offset the
//!   guest controls, encoded per register B's DM bit (BCD or binary) and
//!   24/12 bit (12-hour mode: 1-12 with bit 7 = PM). The calendar conversion
//!   is written here (proleptic Gregorian, no dependency).
//! - **Setting the time**: while register B's SET bit is set, or register A's
//!   divider is held in reset (DV2-0 = 11x), updates stop and the time bytes
//!   are plain storage, exactly as on the chip. When the clock restarts, the
//!   written bytes become the new time: the device keeps the difference to
//!   the host clock. The sub-second phase follows the datasheet: after SET
//!   is cleared the divider's phase is unchanged (it never stopped); after
//!   the divider leaves reset the first update comes 500 ms later. A write
//!   to a time byte while the clock runs takes effect at once (as in QEMU).
//!   The day of week is a counter of its own, as on the chip: a value the
//!   guest writes is kept and advances with the date. Out-of-range values
//!   are taken arithmetically (day 32 is the next month's first day, hour 25
//!   the next day's 1:00); a month outside 1-12 is clamped into that range.
//! - **Register A** (0x0A): UIP (bit 7, read-only) is set during the last
//!   244.140625 us (8 periods of the 32.768 kHz time base) before each
//!   second boundary while the clock runs, so a guest that reads the time
//!   when UIP is clear has that long before the bytes change. DV2-0 and
//!   RS3-0 are writable; DV = 000, 001 and 010 all run the clock at real
//!   time (a PC's time base is always the 32.768 kHz crystal), 11x holds it.
//! - **Register B** (0x0B): writable; setting SET clears UIE and UIP, as the
//!   datasheet says.
//! - **Register C** (0x0C): read-only interrupt flags, cleared by reading.
//!   PF, AF and UF are computed when read: PF if a periodic-rate edge (rate
//!   per RS3-0 on the 32.768 kHz base) passed since the last read, UF if an
//!   update (second boundary) passed, AF if an update reached a time matching
//!   the alarm bytes (0x01/0x03/0x05; a byte with bits 7-6 = 11 matches any
//!   value). IRQF is set if a flag and its enable bit in register B are both
//!   set.
//! - **Register D** (0x0D): VRT (bit 7) is always set: the RAM and time are
//!   valid. Writes are ignored.
//! - **Interrupts** (IRQ 8, [`Cmos::with_interrupt`]): the IRQ pin is
//!   IRQF. ISA IRQ 8 is edge-triggered, so the line (a KVM irqfd) is pulsed
//!   when IRQF goes from 0 to 1: when a flag sets while its enable bit is
//!   set, or an enable bit is set while its flag already is (as QEMU does).
//!   While IRQF stays set no further pulse is sent, however many events
//!   pass; reading register C clears the flags and IRQF, and the next event
//!   pulses again. The device has no thread: it is a
//!   [`TimedDevice`], and the VMM's main loop calls [`TimedDevice::service`]
//!   when the next enabled event is due (the next periodic edge with PIE,
//!   the next update with UIE, the next update matching the alarm bytes
//!   with AIE), or never while IRQF is pending. A guest access that brings
//!   the next event forward (reading C, enabling an interrupt, a new rate,
//!   alarm or time) writes the [`Rearm`] eventfd so the loop asks again.
//!   Host time advances everything, alarm match included. An event the
//!   guest reads from register C before the loop got to it raises no pulse
//!   (as if the read had come first).
//! - **Cost**: at most two main-loop wake-ups per interrupt delivered (the
//!   timer, and the re-arm when the handler reads C), none while IRQF
//!   waits: a periodic interrupt at 8192 Hz (RS = 3) costs up to 16384
//!   wake-ups a second of the VMM's main thread while the guest services
//!   it, and nothing if it stops reading C.
//! - **Alarm listener** ([`Cmos::with_alarm_listener`]): told whenever the
//!   alarm interrupt rises (AF with AIE); on the PC platform that is the
//!   ACPI PM block's RTC_STS, its RTC wake from S3 and its SCI.
//! - **CMOS RAM** (0x0E-0x7F except 0x32): plain storage. At construction it
//!   holds the memory-size bytes firmware fills (see [`CmosMemorySizes`])
//!   and the standard checksum over 0x10-0x2D at 0x2E/0x2F.
//! - **Byte lanes**: the device decodes two ports; a wider access is handled
//!   byte by byte at consecutive ports (a 16-bit `out` to 0x70 writes the
//!   index, then the data with that index). Bytes beyond the two ports read
//!   0xff and are ignored when written.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vm_device::bus::{PioAddress, PioAddressOffset};
use vm_device::DevicePio;
use vm_superio::Trigger;

use crate::bus::byte_lane_port;
use crate::irq::IrqLine;
use crate::lock;
use crate::timer::{delay_until, Rearm, TimedDevice};

mod calendar;
mod state;

pub use calendar::{
    civil_from_days, civil_from_unix, days_from_civil, unix_from_civil, CivilTime, RtcClock,
    SystemClock,
};
use calendar::{host_ns, time_slot, Calendar};
pub use state::CmosState;

/// The index port (write-only; bit 7 masks NMI).
pub const CMOS_INDEX_PORT: u16 = 0x70;
/// The data port.
pub const CMOS_DATA_PORT: u16 = 0x71;
/// Ports the device decodes, from [`CMOS_INDEX_PORT`].
pub const CMOS_PORT_COUNT: u16 = 2;
/// Bytes of CMOS (the index is 7 bits).
pub const CMOS_SIZE: usize = 128;
/// The ISA IRQ line the RTC raises.
pub const RTC_IRQ: u32 = 8;

/// Index port bit 7: NMI disabled.
pub const CMOS_INDEX_NMI_DISABLE: u8 = 0x80;
/// Index port bits 0-6: the register index.
pub const CMOS_INDEX_MASK: u8 = 0x7f;

/// Seconds.
pub const RTC_SECONDS: u8 = 0x00;
/// Seconds alarm.
pub const RTC_SECONDS_ALARM: u8 = 0x01;
/// Minutes.
pub const RTC_MINUTES: u8 = 0x02;
/// Minutes alarm.
pub const RTC_MINUTES_ALARM: u8 = 0x03;
/// Hours.
pub const RTC_HOURS: u8 = 0x04;
/// Hours alarm.
pub const RTC_HOURS_ALARM: u8 = 0x05;
/// Day of week, 1 = Sunday.
pub const RTC_DAY_OF_WEEK: u8 = 0x06;
/// Day of month.
pub const RTC_DAY_OF_MONTH: u8 = 0x07;
/// Month.
pub const RTC_MONTH: u8 = 0x08;
/// Year within the century.
pub const RTC_YEAR: u8 = 0x09;
/// Status register A.
pub const RTC_REG_A: u8 = 0x0a;
/// Status register B.
pub const RTC_REG_B: u8 = 0x0b;
/// Status register C.
pub const RTC_REG_C: u8 = 0x0c;
/// Status register D.
pub const RTC_REG_D: u8 = 0x0d;
/// Century (IBM PC/AT convention; the FADT's CENTURY field points here).
pub const CMOS_CENTURY: u8 = 0x32;

/// Register A: update in progress.
pub const REG_A_UIP: u8 = 0x80;
/// Register A: divider select bits DV2-0.
pub const REG_A_DV_MASK: u8 = 0x70;
/// Register A: rate select bits RS3-0.
pub const REG_A_RS_MASK: u8 = 0x0f;
/// Register A reset value: 32.768 kHz time base, 1024 Hz periodic rate.
pub const REG_A_DEFAULT: u8 = 0x26;
/// Register B: SET, updates inhibited.
pub const REG_B_SET: u8 = 0x80;
/// Register B: periodic interrupt enable.
pub const REG_B_PIE: u8 = 0x40;
/// Register B: alarm interrupt enable.
pub const REG_B_AIE: u8 = 0x20;
/// Register B: update-ended interrupt enable.
pub const REG_B_UIE: u8 = 0x10;
/// Register B: square-wave enable.
pub const REG_B_SQWE: u8 = 0x08;
/// Register B: data mode, 1 = binary, 0 = BCD.
pub const REG_B_DM: u8 = 0x04;
/// Register B: 1 = 24-hour mode, 0 = 12-hour mode.
pub const REG_B_24H: u8 = 0x02;
/// Register B: daylight-saving enable (stored; no DST adjustment is made).
pub const REG_B_DSE: u8 = 0x01;
/// Register B reset value: 24-hour, BCD, no interrupts.
pub const REG_B_DEFAULT: u8 = REG_B_24H;
/// Register C: an enabled interrupt flag is set.
pub const REG_C_IRQF: u8 = 0x80;
/// Register C: periodic interrupt flag.
pub const REG_C_PF: u8 = 0x40;
/// Register C: alarm flag.
pub const REG_C_AF: u8 = 0x20;
/// Register C: update-ended flag.
pub const REG_C_UF: u8 = 0x10;
/// Register D: valid RAM and time.
pub const REG_D_VRT: u8 = 0x80;
/// 12-hour mode: PM flag in the hours byte.
pub const HOURS_PM: u8 = 0x80;
/// Alarm bytes with bits 7-6 set match any value.
pub const ALARM_DONT_CARE: u8 = 0xc0;

/// Base memory in KiB, low byte (high at 0x16).
pub const CMOS_BASE_MEM_LO: u8 = 0x15;
/// Base memory in KiB, high byte.
pub const CMOS_BASE_MEM_HI: u8 = 0x16;
/// Extended memory (above 1 MiB) in KiB, low byte (high at 0x18).
pub const CMOS_EXT_MEM_LO: u8 = 0x17;
/// Extended memory in KiB, high byte.
pub const CMOS_EXT_MEM_HI: u8 = 0x18;
/// Standard checksum over 0x10-0x2D, high byte (low at 0x2F).
pub const CMOS_CHECKSUM_HI: u8 = 0x2e;
/// Standard checksum, low byte.
pub const CMOS_CHECKSUM_LO: u8 = 0x2f;
/// Extended memory as found by POST, in KiB, low byte (high at 0x31).
pub const CMOS_EXT_MEM_POST_LO: u8 = 0x30;
/// Extended memory as found by POST, high byte.
pub const CMOS_EXT_MEM_POST_HI: u8 = 0x31;
/// Memory between 16 MiB and the end of low RAM in 64 KiB blocks, low byte.
pub const CMOS_MEM_ABOVE_16M_LO: u8 = 0x34;
/// Memory between 16 MiB and the end of low RAM, high byte.
pub const CMOS_MEM_ABOVE_16M_HI: u8 = 0x35;
/// Memory above 4 GiB in 64 KiB blocks, bits 0-7 (QEMU/SeaBIOS).
pub const CMOS_MEM_ABOVE_4G_LO: u8 = 0x5b;
/// Memory above 4 GiB in 64 KiB blocks, bits 8-15.
pub const CMOS_MEM_ABOVE_4G_MID: u8 = 0x5c;
/// Memory above 4 GiB in 64 KiB blocks, bits 16-23.
pub const CMOS_MEM_ABOVE_4G_HI: u8 = 0x5d;

/// Base (conventional) memory the PC reports, in KiB.
pub const BASE_MEMORY_KIB: u64 = 640;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// The guest RAM layout the memory-size bytes describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmosMemorySizes {
    /// End of RAM below 4 GiB, in bytes (RAM is `[0, below_4g_end)`).
    pub below_4g_end: u64,
    /// Bytes of RAM from 4 GiB up.
    pub above_4g_size: u64,
}

struct State {
    index: u8,
    nmi_masked: bool,
    /// Alarm bytes, registers A and B, and the RAM; time bytes and C/D are
    /// computed instead.
    ram: [u8; CMOS_SIZE],
    /// The time keeping behind the time bytes, UIP and register C.
    calendar: Calendar,
    /// The IRQ pin (IRQF) as of the last access or service.
    irqf: bool,
    /// AF with AIE as of the last access or service: the alarm listener is
    /// told when it rises.
    alarm_irq: bool,
    /// When the VMM's timer was last told to call [`TimedDevice::service`]
    /// (host ns), if at all.
    armed: Option<i128>,
}

/// Told whenever the RTC raises its alarm interrupt (AF with AIE): the ACPI
/// PM block's RTC_STS and RTC wake. Called on whichever thread brought the
/// RTC up to date (a vCPU thread or the VMM's main loop), outside the
/// RTC's lock.
pub trait RtcAlarmListener: Send + Sync {
    /// The alarm interrupt rose.
    fn rtc_alarm(&self);
}

/// What an access or a service call must do once the lock is released.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Effects {
    /// IRQF rose: pulse the IRQ line.
    pulse: bool,
    /// The alarm interrupt rose: tell the listener.
    alarm: bool,
}

/// The MC146818A RTC and CMOS RAM.
pub struct Cmos {
    clock: Arc<dyn RtcClock>,
    state: Mutex<State>,
    irq: IrqLine,
    rearm: Rearm,
    alarm_listener: Option<Arc<dyn RtcAlarmListener>>,
    /// IRQ pulses sent.
    interrupts: AtomicU64,
}

impl std::fmt::Debug for Cmos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cmos").finish_non_exhaustive()
    }
}

impl Cmos {
    /// An RTC reading `clock`, with CMOS memory-size bytes describing `mem`.
    pub fn new(mem: CmosMemorySizes, clock: Arc<dyn RtcClock>) -> Self {
        let now = host_ns(clock.as_ref());
        let mut ram = [0u8; CMOS_SIZE];
        ram[usize::from(RTC_REG_A)] = REG_A_DEFAULT;
        ram[usize::from(RTC_REG_B)] = REG_B_DEFAULT;
        fill_memory_sizes(&mut ram, mem);
        Cmos {
            clock,
            state: Mutex::new(State {
                index: 0,
                nmi_masked: false,
                ram,
                calendar: Calendar::new(now),
                irqf: false,
                alarm_irq: false,
                armed: None,
            }),
            irq: IrqLine::None,
            rearm: Rearm::none(),
            alarm_listener: None,
            interrupts: AtomicU64::new(0),
        }
    }

    /// Connects IRQ 8: `irq` is pulsed on each rise of IRQF, `rearm` is
    /// written when a guest access brings the next interrupt forward (see
    /// the module docs). Without it the flags still work for guests that
    /// poll register C.
    pub fn with_interrupt(mut self, irq: IrqLine, rearm: Rearm) -> Self {
        self.irq = irq;
        self.rearm = rearm;
        self
    }

    /// Tells `listener` whenever the alarm interrupt rises.
    pub fn with_alarm_listener(mut self, listener: Arc<dyn RtcAlarmListener>) -> Self {
        self.alarm_listener = Some(listener);
        self
    }

    /// IRQ pulses sent so far.
    pub fn interrupts(&self) -> u64 {
        self.interrupts.load(Ordering::Relaxed)
    }

    /// After a guest access to the data port: raises what rose, and tells
    /// the loop if the next event is now earlier than its timer.
    fn after_guest_access(&self, now: i128) {
        let (fx, earlier) = {
            let mut s = lock(&self.state);
            let fx = s.sync_irq();
            let next = s.next_event(now);
            let earlier = match (next, s.armed) {
                (Some(n), Some(a)) => n < a,
                (Some(_), None) => true,
                // A later or no event: the armed timer fires early and
                // service() finds nothing due, which is cheaper than a
                // wake-up per guest access.
                (None, _) => false,
            };
            if earlier {
                s.armed = next;
            }
            (fx, earlier)
        };
        self.apply(fx);
        if earlier {
            self.rearm.notify();
        }
    }

    fn apply(&self, fx: Effects) {
        if fx.pulse {
            self.interrupts.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = self.irq.trigger() {
                log::warn!("rtc-cmos: raising IRQ {RTC_IRQ} failed: {e}");
            }
        }
        if fx.alarm {
            if let Some(l) = &self.alarm_listener {
                l.rtc_alarm();
            }
        }
    }

    /// Whether the guest's last index write set bit 7 (NMI disabled).
    pub fn nmi_masked(&self) -> bool {
        lock(&self.state).nmi_masked
    }

    /// The guest's current RTC time as seconds since the Unix epoch (what
    /// the time registers show, or would show once updates resume).
    pub fn guest_time(&self) -> i64 {
        let now = host_ns(self.clock.as_ref());
        let s = lock(&self.state);
        s.calendar.guest_secs(s.reg_b(), now)
    }

    fn read_port(&self, port: u16, now: i128) -> u8 {
        match port {
            CMOS_DATA_PORT => {
                let mut s = lock(&self.state);
                let index = s.index;
                s.read_register(index, now)
            }
            // The index port is write-only; QEMU reads it as 0xff too.
            _ => 0xff,
        }
    }

    fn write_port(&self, port: u16, value: u8, now: i128) {
        let mut s = lock(&self.state);
        match port {
            CMOS_INDEX_PORT => {
                s.index = value & CMOS_INDEX_MASK;
                s.nmi_masked = value & CMOS_INDEX_NMI_DISABLE != 0;
            }
            CMOS_DATA_PORT => {
                let index = s.index;
                s.write_register(index, value, now);
            }
            _ => {}
        }
    }
}

fn fill_memory_sizes(ram: &mut [u8; CMOS_SIZE], mem: CmosMemorySizes) {
    let mut put16 = |lo: u8, v: u64| {
        let v = v.min(0xffff);
        ram[usize::from(lo)] = v as u8;
        ram[usize::from(lo) + 1] = (v >> 8) as u8;
    };
    // QEMU pc_cmos_init: base memory is what lies below 640 KiB.
    put16(
        CMOS_BASE_MEM_LO,
        (mem.below_4g_end / KIB).min(BASE_MEMORY_KIB),
    );
    // Extended memory: KiB above 1 MiB, capped at 0xffff (the "next 64 MiB").
    let ext = mem.below_4g_end.saturating_sub(MIB) / KIB;
    put16(CMOS_EXT_MEM_LO, ext);
    put16(CMOS_EXT_MEM_POST_LO, ext);
    // SeaBIOS reads the rest of low RAM from these: 64 KiB blocks above 16 MiB.
    put16(
        CMOS_MEM_ABOVE_16M_LO,
        mem.below_4g_end.saturating_sub(16 * MIB) / (64 * KIB),
    );
    // High RAM in 64 KiB blocks, 24 bits (QEMU's extension).
    let high = (mem.above_4g_size / (64 * KIB)).min(0xff_ffff);
    ram[usize::from(CMOS_MEM_ABOVE_4G_LO)] = high as u8;
    ram[usize::from(CMOS_MEM_ABOVE_4G_MID)] = (high >> 8) as u8;
    ram[usize::from(CMOS_MEM_ABOVE_4G_HI)] = (high >> 16) as u8;
    // The AT checksum: 16-bit sum of 0x10-0x2D, high byte first.
    let sum: u16 = ram[0x10..=0x2d]
        .iter()
        .fold(0u16, |a, &b| a.wrapping_add(u16::from(b)));
    ram[usize::from(CMOS_CHECKSUM_HI)] = (sum >> 8) as u8;
    ram[usize::from(CMOS_CHECKSUM_LO)] = sum as u8;
}

impl TimedDevice for Cmos {
    fn service(&self) -> Option<Duration> {
        let now = host_ns(self.clock.as_ref());
        let (fx, next) = {
            let mut s = lock(&self.state);
            s.accumulate(now);
            let fx = s.sync_irq();
            let next = s.next_event(now);
            s.armed = next;
            (fx, next)
        };
        self.apply(fx);
        next.map(|at| delay_until(at, now))
    }
}

impl State {
    fn reg_a(&self) -> u8 {
        self.ram[usize::from(RTC_REG_A)]
    }

    fn alarm_bytes(&self) -> [u8; 3] {
        [
            self.ram[usize::from(RTC_SECONDS_ALARM)],
            self.ram[usize::from(RTC_MINUTES_ALARM)],
            self.ram[usize::from(RTC_HOURS_ALARM)],
        ]
    }

    /// Re-evaluates the IRQ pin and the alarm interrupt from the flags and
    /// enables (each flag of register C sits at its enable's bit in B).
    fn sync_irq(&mut self) -> Effects {
        let flags = self.calendar.flags();
        let reg_b = self.reg_b();
        let irqf = flags & reg_b & (REG_B_PIE | REG_B_AIE | REG_B_UIE) != 0;
        let alarm = flags & REG_C_AF != 0 && reg_b & REG_B_AIE != 0;
        let fx = Effects {
            pulse: irqf && !self.irqf,
            alarm: alarm && !self.alarm_irq,
        };
        self.irqf = irqf;
        self.alarm_irq = alarm;
        fx
    }

    /// When the loop must next call [`TimedDevice::service`] (host ns):
    /// the earliest enabled event that would raise IRQF (none while it is
    /// set), and the next alarm with AIE while AF is clear (for the alarm
    /// listener, even while IRQF waits).
    fn next_event(&self, now: i128) -> Option<i128> {
        let (reg_a, reg_b) = (self.reg_a(), self.reg_b());
        let mut times = Vec::with_capacity(3);
        if !self.irqf {
            if reg_b & REG_B_PIE != 0 {
                times.push(self.calendar.next_periodic_ns(reg_a, now));
            }
            if reg_b & REG_B_UIE != 0 {
                times.push(self.calendar.next_update_ns(reg_a, reg_b, now));
            }
        }
        if reg_b & REG_B_AIE != 0 && self.calendar.flags() & REG_C_AF == 0 {
            let alarm = self.alarm_bytes();
            times.push(self.calendar.next_alarm_ns(reg_a, reg_b, alarm, now));
        }
        times.into_iter().flatten().min()
    }

    fn reg_b(&self) -> u8 {
        self.ram[usize::from(RTC_REG_B)]
    }

    /// Brings the calendar's register C flags up to host time `now`.
    fn accumulate(&mut self, now: i128) {
        let alarm = self.alarm_bytes();
        let (reg_a, reg_b) = (self.reg_a(), self.reg_b());
        self.calendar.accumulate(reg_a, reg_b, alarm, now);
    }

    fn read_register(&mut self, index: u8, now: i128) -> u8 {
        self.accumulate(now);
        if let Some(slot) = time_slot(index) {
            return self.calendar.time_byte(slot, self.reg_b(), now);
        }
        match index {
            RTC_REG_A => self.reg_a() | self.calendar.uip(self.reg_a(), self.reg_b(), now),
            RTC_REG_C => self.calendar.take_reg_c(self.reg_b()),
            RTC_REG_D => REG_D_VRT,
            _ => self.ram[usize::from(index & CMOS_INDEX_MASK)],
        }
    }

    fn write_register(&mut self, index: u8, value: u8, now: i128) {
        self.accumulate(now);
        if let Some(slot) = time_slot(index) {
            let reg_b = self.reg_b();
            self.calendar.set_time_byte(slot, value, reg_b, now);
            return;
        }
        match index {
            RTC_REG_A => {
                let (old, reg_b) = (self.reg_a(), self.reg_b());
                // UIP is status, never stored.
                let new = value & !REG_A_UIP;
                self.calendar.write_reg_a(old, new, reg_b, now);
                self.ram[usize::from(RTC_REG_A)] = new;
            }
            RTC_REG_B => {
                let value = if value & REG_B_SET != 0 {
                    value & !REG_B_UIE
                } else {
                    value
                };
                let (reg_a, old) = (self.reg_a(), self.reg_b());
                self.calendar.write_reg_b(reg_a, old, value, now);
                self.ram[usize::from(RTC_REG_B)] = value;
            }
            // Read-only.
            RTC_REG_C | RTC_REG_D => {}
            _ => self.ram[usize::from(index & CMOS_INDEX_MASK)] = value,
        }
    }
}

impl DevicePio for Cmos {
    fn pio_read(&self, base: PioAddress, offset: PioAddressOffset, data: &mut [u8]) {
        let now = host_ns(self.clock.as_ref());
        let mut data_port = false;
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = match port_at(base, offset, i) {
                Some(port) => {
                    data_port |= port == CMOS_DATA_PORT;
                    self.read_port(port, now)
                }
                None => 0xff,
            };
        }
        if data_port {
            self.after_guest_access(now);
        }
    }

    fn pio_write(&self, base: PioAddress, offset: PioAddressOffset, data: &[u8]) {
        let now = host_ns(self.clock.as_ref());
        let mut data_port = false;
        for (i, &byte) in data.iter().enumerate() {
            if let Some(port) = port_at(base, offset, i) {
                data_port |= port == CMOS_DATA_PORT;
                self.write_port(port, byte, now);
            }
        }
        if data_port {
            self.after_guest_access(now);
        }
    }
}

/// The port byte lane `i` of an access lands on, if it is one of ours.
fn port_at(base: PioAddress, offset: PioAddressOffset, i: usize) -> Option<u16> {
    byte_lane_port(base, offset, i)
        .filter(|p| (CMOS_INDEX_PORT..CMOS_INDEX_PORT + CMOS_PORT_COUNT).contains(p))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod irq_tests;
