//! `--explain`: every step of the KVM flow, one line each, as it happens,
//! in KVM's own names (`KVM_CREATE_VM`, `KVM_SET_REGS`, `KVM_EXIT_IO`...).
//!
//! The library never prints: the lines go to an [`ExplainSink`] the front
//! end supplies (vmm-bin writes them to stderr). Set-up steps are told by
//! [`crate::Vm::create`] and the device wiring; exits by the exit
//! dispatcher, which observes them through
//! [`vmm_cpu::ExitHandler::observe_exit`] only while an [`Explainer`]
//! exists, so a run without `--explain` pays one predictable branch per
//! exit.
//!
//! A long run does not flood: after [`LINES_PER_KEY`] lines for one
//! (exit reason, direction, port or device) key, further exits of that
//! key are only counted, and [`Explainer::finish`] prints one
//! `... 99,980 more KVM_EXIT_IO out on port 0x10` line per key at the end.
//! At most [`MAX_KEYS`] keys are tracked; exits beyond them share one
//! counter, so memory stays bounded whatever the guest does.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

use kvm_bindings::{kvm_regs, kvm_sregs};
use vmm_cpu::boot_state::get_reg;
use vmm_cpu::exit_record::exit_reason_name;
use vmm_cpu::{ExitFields, ExitKind, ExitRecord, Reg};
use vmm_devices::IoBus;

use crate::lock;

/// Where explain lines go: called once per line, without the newline,
/// possibly from several threads (one line per call, so they never
/// interleave).
pub type ExplainSink = Arc<dyn Fn(&str) + Send + Sync>;

/// Lines printed per exit key before further exits of that key are only
/// counted.
pub const LINES_PER_KEY: u64 = 20;

/// Distinct exit keys counted separately; exits of further keys share one
/// counter.
pub const MAX_KEYS: usize = 64;

/// Elements of a string I/O exit shown before `...`.
const MAX_ELEMENTS_SHOWN: usize = 8;

/// What exits are grouped by for the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ExitKey {
    Io {
        write: bool,
        port: u16,
    },
    /// Claimed MMIO is keyed by its device's base, unclaimed by 4 KiB page.
    Mmio {
        write: bool,
        base: u64,
        device: bool,
    },
    Other(ExitKind),
}

impl ExitKey {
    fn describe(&self) -> String {
        match *self {
            ExitKey::Io { write, port } => format!(
                "KVM_EXIT_IO {} on port {port:#x}",
                if write { "out" } else { "in" }
            ),
            ExitKey::Mmio {
                write,
                base,
                device,
            } => format!(
                "KVM_EXIT_MMIO {} {} {base:#x}",
                if write { "writes" } else { "reads" },
                if device {
                    "to the device at"
                } else {
                    "in the page at"
                }
            ),
            ExitKey::Other(ExitKind::Interrupted) => "interrupted KVM_RUN calls".to_string(),
            ExitKey::Other(kind) => format!("{} exits", kind.name()),
        }
    }
}

#[derive(Default)]
struct ExitCounts {
    /// Exits seen per key, in first-seen order of their keys' lines.
    seen: BTreeMap<ExitKey, u64>,
    /// Exits of keys beyond [`MAX_KEYS`].
    overflow: u64,
    total: u64,
}

/// Tells the steps of one VM through an [`ExplainSink`], and keeps the
/// per-key exit counts that bound the exit lines.
pub struct Explainer {
    sink: ExplainSink,
    vcpus: u64,
    counts: Mutex<ExitCounts>,
}

impl Explainer {
    /// An explainer writing to `sink` for a VM of `vcpus` vCPUs (exit lines
    /// name their vCPU when there is more than one).
    pub fn new(sink: ExplainSink, vcpus: u64) -> Self {
        Explainer {
            sink,
            vcpus,
            counts: Mutex::default(),
        }
    }

    /// Writes one line.
    pub fn say(&self, line: &str) {
        (self.sink)(line);
    }

    /// Tells one exit (or counts it, past [`LINES_PER_KEY`]), with what the
    /// VMM does with it: the device on `bus` that claims the access.
    pub fn exit(&self, rec: &ExitRecord<'_>, bus: &IoBus) {
        let key = exit_key(rec, bus);
        let n = {
            let mut c = lock(&self.counts);
            c.total += 1;
            let tracked = c.seen.len() < MAX_KEYS || c.seen.contains_key(&key);
            if tracked {
                let n = c.seen.entry(key).or_insert(0);
                *n += 1;
                *n
            } else {
                c.overflow += 1;
                // Untracked keys get no lines at all.
                u64::MAX
            }
        };
        // Exits that end a vCPU are always told: there is one per vCPU.
        let ends = matches!(rec.fields, ExitFields::Stop(_));
        if n > LINES_PER_KEY && !ends {
            return;
        }
        let mut line = String::new();
        if self.vcpus > 1 {
            let _ = write!(line, "[vCPU {}] ", rec.vcpu);
        }
        line.push_str(&exit_line(rec, bus));
        if n == LINES_PER_KEY && !ends {
            line.push_str(" (from here on, exits like this are only counted)");
        }
        self.say(&line);
    }

    /// The summary of the exits that were only counted, one line per key,
    /// then the total; also written to the sink.
    pub fn finish(&self) -> Vec<String> {
        let c = lock(&self.counts);
        let mut lines: Vec<String> = c
            .seen
            .iter()
            .filter(|(_, n)| **n > LINES_PER_KEY)
            .map(|(key, n)| {
                format!(
                    "... {} more {}",
                    group_thousands(n - LINES_PER_KEY),
                    key.describe()
                )
            })
            .collect();
        if c.overflow > 0 {
            lines.push(format!(
                "... {} more exits of other kinds, ports and addresses (more than {MAX_KEYS} kinds of exit seen)",
                group_thousands(c.overflow)
            ));
        }
        lines.push(format!(
            "{} exit{} in all (KVM_RUN returns, kicks included)",
            group_thousands(c.total),
            if c.total == 1 { "" } else { "s" }
        ));
        drop(c);
        for l in &lines {
            self.say(l);
        }
        lines
    }
}

/// Calls `line` and writes what it returns when there is an explainer:
/// nothing is formatted when `--explain` is off.
pub(crate) fn say(explain: &Option<Arc<Explainer>>, line: impl FnOnce() -> String) {
    if let Some(e) = explain {
        e.say(&line());
    }
}

fn exit_key(rec: &ExitRecord<'_>, bus: &IoBus) -> ExitKey {
    match rec.fields {
        ExitFields::Io { port, write, .. } => ExitKey::Io { write, port },
        ExitFields::Mmio { addr, write, .. } => match bus.mmio_device_name(addr) {
            Some((_, base)) => ExitKey::Mmio {
                write,
                base,
                device: true,
            },
            None => ExitKey::Mmio {
                write,
                base: addr & !0xfff,
                device: false,
            },
        },
        _ => ExitKey::Other(rec.kind),
    }
}

/// `n` with a comma every three digits (`99,980`).
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// An element's little-endian value, `2 * len` hex digits.
fn hex_value(bytes: &[u8]) -> String {
    let mut s = String::from("0x");
    for b in bytes.iter().rev() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The character a one-byte write shows, for text.
fn shown_char(b: u8) -> Option<String> {
    match b {
        b'\n' => Some("'\\n'".into()),
        b'\r' => Some("'\\r'".into()),
        0x20..=0x7e => Some(format!("'{}'", b as char)),
        _ => None,
    }
}

fn data_field(data: &[u8], size: usize) -> String {
    let size = size.max(1);
    let mut s = String::from("data");
    for element in data.chunks(size).take(MAX_ELEMENTS_SHOWN) {
        s.push(' ');
        s.push_str(&hex_value(element));
        if let ([b], true) = (element, data.len() == 1) {
            if let Some(c) = shown_char(*b) {
                let _ = write!(s, " {c}");
            }
        }
    }
    if data.len() > size * MAX_ELEMENTS_SHOWN {
        s.push_str(" ...");
    }
    s
}

/// One exit's line: its reason, the `kvm_run` fields for it, and (after
/// `->`) what the VMM does with it.
pub fn exit_line(rec: &ExitRecord<'_>, bus: &IoBus) -> String {
    let reason = exit_reason_name(rec.reason);
    match rec.fields {
        ExitFields::Io {
            port,
            write,
            size,
            count,
            data,
        } => {
            let dir = if write { "out" } else { "in" };
            let what = match (bus.pio_device_name(port), write) {
                (Some(dev), _) => dev.to_string(),
                (None, true) => "no device there: the write is dropped".to_string(),
                (None, false) => "no device there: the guest reads all ones".to_string(),
            };
            format!(
                "KVM_EXIT_IO: port {port:#x} {dir}, size {size}, count {count}, {} -> {what}",
                data_field(data, usize::from(size))
            )
        }
        ExitFields::Mmio { addr, write, data } => {
            let dir = if write { "write" } else { "read" };
            let what = match (bus.mmio_device_name(addr), write) {
                (Some((dev, base)), _) => format!("{dev} (offset {:#x})", addr - base),
                (None, true) => "no device there: the write is dropped".to_string(),
                (None, false) => "no device there: the guest reads all ones".to_string(),
            };
            format!(
                "KVM_EXIT_MMIO: address {addr:#x} {dir}, length {}, {} -> {what}",
                data.len(),
                data_field(data, data.len())
            )
        }
        ExitFields::Stop(stop) => {
            let reason =
                reason.map_or_else(|| format!("exit reason {}", rec.reason), str::to_string);
            format!("{reason}: {stop} -> vCPU {} leaves its run loop", rec.vcpu)
        }
        ExitFields::Errno(errno) => {
            let (name, why) = match errno {
                libc::EINTR => ("EINTR", "a signal (the VMM's kick) interrupted it"),
                libc::EAGAIN => ("EAGAIN", "the vCPU was woken from wait-for-SIPI"),
                _ => ("an error", "retried"),
            };
            format!(
                "KVM_RUN returned {name}: {why} -> vCPU {} checks whether to stop, else runs on",
                rec.vcpu
            )
        }
        ExitFields::None => {
            let reason =
                reason.map_or_else(|| format!("exit reason {}", rec.reason), str::to_string);
            format!("{reason} -> vCPU {} runs on", rec.vcpu)
        }
    }
}

/// The KVM_SET_SREGS line: the mode and what defines it.
pub fn sregs_line(s: &kvm_sregs) -> String {
    let mode = if s.cr0 & 1 == 0 {
        "16-bit real mode"
    } else if s.efer & (1 << 10) != 0 {
        "64-bit long mode"
    } else {
        "32-bit protected mode"
    };
    let mut line = format!(
        "KVM_SET_SREGS: {mode}: CS selector {:#x} base {:#x}, CR0 {:#x}, CR4 {:#x}, EFER {:#x}",
        s.cs.selector, s.cs.base, s.cr0, s.cr4, s.efer
    );
    if s.cr0 & (1 << 31) != 0 {
        let _ = write!(line, ", CR3 {:#x}", s.cr3);
    }
    if s.cr0 & 1 != 0 {
        let _ = write!(line, ", GDT {:#x} limit {:#x}", s.gdt.base, s.gdt.limit);
    }
    line
}

/// The KVM_SET_REGS line: RIP, RFLAGS and every register `set` names (the
/// boot protocol's and the user's), with their final values.
pub fn regs_line(r: &kvm_regs, set: &[(Reg, u64)]) -> String {
    let mut line = format!("KVM_SET_REGS: RIP {:#x}, RFLAGS {:#x}", r.rip, r.rflags);
    let mut shown = vec![Reg::Rip, Reg::Rflags];
    for (reg, _) in set {
        if !shown.contains(reg) {
            shown.push(*reg);
            let _ = write!(
                line,
                ", {} {:#x}",
                reg.name().to_uppercase(),
                get_reg(r, *reg)
            );
        }
    }
    line.push_str(" (every other register 0)");
    line
}

/// The final-state line: RIP, RFLAGS, the eight classic registers, and
/// R8-R15 where they are not zero.
pub fn final_regs_line(vcpu: u64, r: &kvm_regs) -> String {
    let mut line = format!(
        "KVM_GET_REGS (vCPU {vcpu} at the end): RIP {:#x}, RFLAGS {:#x}",
        r.rip, r.rflags
    );
    let classic = [
        ("RAX", r.rax),
        ("RBX", r.rbx),
        ("RCX", r.rcx),
        ("RDX", r.rdx),
        ("RSI", r.rsi),
        ("RDI", r.rdi),
        ("RSP", r.rsp),
        ("RBP", r.rbp),
    ];
    for (name, v) in classic {
        let _ = write!(line, ", {name} {v:#x}");
    }
    let high = [
        ("R8", r.r8),
        ("R9", r.r9),
        ("R10", r.r10),
        ("R11", r.r11),
        ("R12", r.r12),
        ("R13", r.r13),
        ("R14", r.r14),
        ("R15", r.r15),
    ];
    for (name, v) in high.into_iter().filter(|(_, v)| *v != 0) {
        let _ = write!(line, ", {name} {v:#x}");
    }
    line
}

/// A size in the unit that reads best (`128 MiB`, `12 bytes`).
pub fn size_text(bytes: u64) -> String {
    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    match bytes {
        b if b >= GIB && b.is_multiple_of(GIB) => format!("{} GiB", b / GIB),
        b if b >= MIB && b.is_multiple_of(MIB) => format!("{} MiB", b / MIB),
        b if b >= KIB && b.is_multiple_of(KIB) => format!("{} KiB", b / KIB),
        1 => "1 byte".to_string(),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;
    use vmm_cpu::VcpuStop;

    fn collector() -> (ExplainSink, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        (
            Arc::new(move |s: &str| l.lock().unwrap().push(s.to_string())),
            lines,
        )
    }

    fn io(port: u16, write: bool, size: u8, data: &[u8]) -> ExitRecord<'_> {
        ExitRecord {
            vcpu: 0,
            at: Instant::now(),
            kind: if write {
                ExitKind::IoOut
            } else {
                ExitKind::IoIn
            },
            reason: kvm_bindings::KVM_EXIT_IO,
            fields: ExitFields::Io {
                port,
                write,
                size,
                count: (data.len() / usize::from(size)) as u32,
                data,
            },
        }
    }

    #[test]
    fn test_group_thousands() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1000), "1,000");
        assert_eq!(group_thousands(99_980), "99,980");
        assert_eq!(group_thousands(10_000_000), "10,000,000");
    }

    #[test]
    fn test_exit_line_io_names_fields_and_device() {
        let bus = IoBus::new();
        let line = exit_line(&io(0x3f8, true, 1, &[0x34]), &bus);
        assert_eq!(
            line,
            "KVM_EXIT_IO: port 0x3f8 out, size 1, count 1, data 0x34 '4' -> no device there: the write is dropped"
        );
        let line = exit_line(&io(0x10, true, 2, &[1, 0, 2, 0]), &bus);
        assert!(
            line.contains("size 2, count 2, data 0x0001 0x0002"),
            "{line}"
        );
        let line = exit_line(&io(0x64, false, 1, &[0xff]), &bus);
        assert!(
            line.contains("in, size 1") && line.contains("reads all ones"),
            "{line}"
        );
    }

    #[test]
    fn test_exit_line_stop_and_internal_error() {
        let bus = IoBus::new();
        let stop = VcpuStop::InternalError(vmm_cpu::InternalError {
            suberror: 1,
            data: vec![],
            insn: Some(vec![0x0f, 0x01, 0xc1]),
            decoded: None,
            not_handled: None,
        });
        let rec = ExitRecord {
            vcpu: 0,
            at: Instant::now(),
            kind: ExitKind::InternalError,
            reason: kvm_bindings::KVM_EXIT_INTERNAL_ERROR,
            fields: ExitFields::Stop(&stop),
        };
        let line = exit_line(&rec, &bus);
        assert!(line.starts_with("KVM_EXIT_INTERNAL_ERROR: "), "{line}");
        assert!(
            line.contains("suberror 1") && line.contains("0f 01 c1"),
            "{line}"
        );
    }

    #[test]
    fn test_explainer_bounds_lines_and_summarises_exactly() {
        let (sink, lines) = collector();
        let e = Explainer::new(sink, 1);
        let bus = IoBus::new();
        for i in 0..100_000u32 {
            let v = (i as u16).to_le_bytes();
            e.exit(&io(0x10, true, 2, &v), &bus);
        }
        e.exit(&io(0x3f8, true, 1, b"x"), &bus);
        let told = lines.lock().unwrap().len();
        assert_eq!(told, LINES_PER_KEY as usize + 1);
        assert!(lines.lock().unwrap()[LINES_PER_KEY as usize - 1].contains("only counted"));
        let summary = e.finish();
        assert_eq!(
            summary,
            vec![
                "... 99,980 more KVM_EXIT_IO out on port 0x10".to_string(),
                "100,001 exits in all (KVM_RUN returns, kicks included)".to_string(),
            ]
        );
    }

    #[test]
    fn test_explainer_keys_are_bounded() {
        let (sink, lines) = collector();
        let e = Explainer::new(sink, 2);
        let bus = IoBus::new();
        for port in 0..1000u16 {
            e.exit(&io(port, false, 1, &[0xff]), &bus);
        }
        assert_eq!(lines.lock().unwrap().len(), MAX_KEYS);
        assert!(lines.lock().unwrap()[0].starts_with("[vCPU 0] KVM_EXIT_IO"));
        let summary = e.finish();
        assert!(
            summary[0].starts_with("... 936 more exits of other kinds"),
            "{summary:?}"
        );
    }

    #[test]
    fn test_regs_and_sregs_lines() {
        let r =
            vmm_cpu::boot_state::entry_regs(0x1000, &[(Reg::Rax, 2), (Reg::Rbx, 2), (Reg::Rax, 3)]);
        assert_eq!(
            regs_line(&r, &[(Reg::Rax, 2), (Reg::Rbx, 2), (Reg::Rax, 3)]),
            "KVM_SET_REGS: RIP 0x1000, RFLAGS 0x2, RAX 0x3, RBX 0x2 (every other register 0)"
        );
        let long = vmm_cpu::boot_state::flat_mode_sregs(kvm_sregs::default(), true, 0x500, 0x9000);
        let line = sregs_line(&long);
        assert!(
            line.contains("64-bit long mode") && line.contains("CR3 0x9000"),
            "{line}"
        );
        assert!(sregs_line(&kvm_sregs::default()).contains("16-bit real mode"));
        let fin = final_regs_line(
            0,
            &kvm_regs {
                rip: 0x100c,
                r9: 5,
                ..Default::default()
            },
        );
        assert!(
            fin.contains("RIP 0x100c") && fin.contains("R9 0x5") && !fin.contains("R8 "),
            "{fin}"
        );
    }

    #[test]
    fn test_size_text() {
        assert_eq!(size_text(128 << 20), "128 MiB");
        assert_eq!(size_text(12), "12 bytes");
        assert_eq!(size_text(12288), "12 KiB");
        assert_eq!(size_text(2 << 30), "2 GiB");
    }
}
