//! Where the VMM's boot structures go: a planner that puts each structure
//! the VMM writes into guest RAM (GDT, page tables, zero page, boot
//! information, command line, ACPI and MP tables, BIOS data) where no byte
//! of the image is, rather than making the image keep clear of fixed
//! windows.
//!
//! Inputs: what the image occupies ([`Occupied`]: each loaded segment, and
//! any memory the kernel uses before it reads the memory map) and what the
//! boot needs ([`Needs`]: only what the entry mode and boot protocol use; a
//! 32-bit entry gets no page tables, a real-mode entry no GDT). Output: an
//! address for every structure ([`BootPlan`]), or an error naming the
//! structure and the image range that needs its bytes ([`PlanError`]).
//!
//! Every structure has a preferred address, its place in the fixed layout of
//! [`crate::layout`], so an image that leaves room gets exactly that layout,
//! and windows it may move within when the image is in the way:
//!
//! | structure | preferred | may move within |
//! |---|---|---|
//! | IVT, BDA | 0, 0x400 | nowhere: left out when the image is there |
//! | EBDA (1 KiB) | 0x9fc00 | the highest free KiB below 640 KiB |
//! | ACPI RSDP | 0xe0000 | `[0xe0000, 0x100000)`, the EBDA's first KiB (ACPI 6.5 §5.2.5.1) |
//! | MP floating pointer | 0xf0000 | `[0xf0000, 0x100000)`, the EBDA's first KiB (MP 1.4 §4) |
//! | BIOS stubs | 0xff000 | `[0xf0000, 0x100000)` (segment 0xf000) |
//! | ACPI tables, MP table | after their pointer | the BIOS area, then any RAM below 4 GiB |
//! | GDT, page tables, zero page, boot information, command line | 0x500, 0x9000, 0x7000, 0x10000, 0x20000 | RAM below 640 KiB, then RAM from 1 MiB to 4 GiB |
//!
//! Each is placed at its preferred address when that is free, else at the
//! lowest free address of its windows (the EBDA: the highest), checked
//! against the bytes it really occupies. Whatever is placed is reserved in
//! the memory map every protocol reports ([`BootPlan::memory_map`]), except
//! the IVT and BDA, which every PC firmware reports as RAM (Multiboot's
//! `mem_lower` and Linux's low-memory handling expect the map's first entry
//! to start at 0).

use std::fmt;

use vm_memory::GuestAddress;

use crate::layout::{
    MapEntry, MapKind, MemoryLayout, ACPI_TABLES_START, BDA_END, BDA_START, BIOS_STUBS_LEN,
    BIOS_STUBS_START, BOOT_GDT_MAX_ENTRIES, BOOT_GDT_START, BOOT_INFO_START, BOOT_PAGE_TABLES_END,
    CMDLINE_START, HIGH_MEMORY_START, IVT_START, LEGACY_HOLE_END, LEGACY_HOLE_START,
    MMIO_HOLE_START, MPTABLE_START, PML4_START, ZERO_PAGE_START,
};

/// Bytes of the boot GDT.
pub const GDT_LEN: u64 = 8 * BOOT_GDT_MAX_ENTRIES;
/// Bytes of the long-mode page tables (PML4, PDPT, four page directories).
pub const PAGE_TABLES_LEN: u64 = BOOT_PAGE_TABLES_END.0 - PML4_START.0;
/// Bytes of Linux's zero page.
pub const ZERO_PAGE_LEN: u64 = 0x1000;
/// Bytes of the real-mode interrupt vector table.
pub const IVT_LEN: u64 = BDA_START.0 - IVT_START.0;
/// Bytes of the BIOS data area.
pub const BDA_LEN: u64 = BDA_END.0 - BDA_START.0;
/// Bytes of the extended BIOS data area: one KiB, the unit the BDA counts
/// base memory in.
pub const EBDA_LEN: u64 = 0x400;
/// The EBDA's own first bytes (its size in KiB at offset 0); an RSDP or MP
/// floating pointer placed in the EBDA goes after them.
pub const EBDA_HEADER_LEN: u64 = 0x10;
/// Bytes of the ACPI 2.0+ RSDP.
pub const RSDP_LEN: u64 = 36;
/// Bytes of the MP floating pointer structure.
pub const MP_FLOATING_POINTER_LEN: u64 = 16;

/// Where an OS searches for the ACPI RSDP in the BIOS area.
const BIOS_AREA: (u64, u64) = (ACPI_TABLES_START.0, LEGACY_HOLE_END);
/// The BIOS ROM area (segment 0xf000): MP search range, BIOS stubs.
const BIOS_ROM: (u64, u64) = (MPTABLE_START.0, LEGACY_HOLE_END);
/// Low RAM above the BDA, below the legacy hole.
const LOW: (u64, u64) = (BDA_END.0, LEGACY_HOLE_START);
/// RAM from 1 MiB to the 32-bit MMIO hole: 32-bit pointers reach it and the
/// long-mode identity map covers it.
const HIGH32: (u64, u64) = (HIGH_MEMORY_START.0, MMIO_HOLE_START);

/// A structure the VMM writes into guest RAM at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Structure {
    /// The real-mode interrupt vector table (real-mode starts on the PC
    /// platform).
    Ivt,
    /// The BIOS data area (every start on the PC platform).
    Bda,
    /// The extended BIOS data area (every start on the PC platform).
    Ebda,
    /// The ACPI root system description pointer.
    AcpiRsdp,
    /// The MP floating pointer structure.
    MpFloatingPointer,
    /// The real-mode interrupt handlers the IVT points at.
    BiosStubs,
    /// The ACPI tables the RSDP leads to (FACS, DSDT, FADT, MADT, RSDT,
    /// XSDT).
    AcpiTables,
    /// The MP configuration table.
    MpTable,
    /// The GDT for protected and long mode entry.
    Gdt,
    /// The identity-mapping page tables for long mode entry.
    PageTables,
    /// Linux's zero page (`struct boot_params`).
    ZeroPage,
    /// Multiboot's information structure or PVH's `hvm_start_info`, with
    /// their memory map, module list and strings.
    BootInfo,
    /// The kernel command line, NUL included.
    Cmdline,
}

impl Structure {
    /// Every structure, in the order the planner places them: the fixed
    /// ones, then those the specifications confine most, then the rest.
    pub const ALL: [Structure; 13] = [
        Structure::Ivt,
        Structure::Bda,
        Structure::Ebda,
        Structure::AcpiRsdp,
        Structure::MpFloatingPointer,
        Structure::AcpiTables,
        Structure::MpTable,
        Structure::BiosStubs,
        Structure::Gdt,
        Structure::PageTables,
        Structure::ZeroPage,
        Structure::BootInfo,
        Structure::Cmdline,
    ];

    /// What errors and logs call it.
    pub fn name(self) -> &'static str {
        match self {
            Structure::Ivt => "the real-mode interrupt vector table",
            Structure::Bda => "the BIOS data area",
            Structure::Ebda => "the extended BIOS data area",
            Structure::AcpiRsdp => "the ACPI RSDP",
            Structure::MpFloatingPointer => "the MP floating pointer",
            Structure::BiosStubs => "the BIOS interrupt stubs",
            Structure::AcpiTables => "the ACPI tables",
            Structure::MpTable => "the MP configuration table",
            Structure::Gdt => "the boot GDT",
            Structure::PageTables => "the long-mode page tables",
            Structure::ZeroPage => "the Linux zero page",
            Structure::BootInfo => "the boot information",
            Structure::Cmdline => "the command line",
        }
    }

    /// Whether the memory map calls it reserved (all but the IVT and BDA,
    /// which PC firmware reports as RAM).
    pub fn is_reserved_in_map(self) -> bool {
        !matches!(self, Structure::Ivt | Structure::Bda)
    }
}

impl fmt::Display for Structure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Guest-physical bytes the image needs, `[start, end)`, named for errors
/// ("ELF segment 1", "the raw image").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occupied {
    /// What it is.
    pub what: String,
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl Occupied {
    /// `len` bytes at `start` (the end saturates).
    pub fn new(what: impl Into<String>, start: u64, len: u64) -> Self {
        Occupied {
            what: what.into(),
            start,
            end: start.saturating_add(len),
        }
    }
}

/// The sizes of the PC platform's firmware tables, which their writer
/// knows before anything is placed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FirmwareSizes {
    /// Bytes of the ACPI tables after the RSDP, from a 64-byte aligned start
    /// (the FACS first).
    pub acpi_tables: u64,
    /// Bytes of the MP configuration table.
    pub mp_table: u64,
}

/// What a boot needs placed. Everything defaults to "not needed".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// The boot GDT (protected and long mode entries).
    pub gdt: bool,
    /// The long-mode page tables (long mode entries).
    pub page_tables: bool,
    /// Linux's zero page.
    pub zero_page: bool,
    /// The boot information area, bytes.
    pub boot_info: Option<u64>,
    /// The command line, bytes with the NUL.
    pub cmdline: Option<u64>,
    /// The PC platform's firmware: BDA, EBDA, ACPI and MP tables.
    pub pc: Option<FirmwareSizes>,
    /// With `pc`: a real-mode entry, which also gets the IVT and its stubs.
    pub real_mode_bios: bool,
}

/// A placed structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// Which.
    pub what: Structure,
    /// Its first byte.
    pub start: u64,
    /// Its bytes.
    pub len: u64,
}

impl Placed {
    /// One past its last byte.
    pub fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// Where every structure of a boot goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootPlan {
    placed: Vec<Placed>,
    skipped: Vec<(Structure, String)>,
}

/// A structure that cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Every place the structure may go is taken by the image (or by a
    /// structure the image pushed there).
    #[error("{structure} ({len} bytes) has no room where it may go ({windows}): {blocker} at [{blocker_start:#x}, {blocker_end:#x}) needs those bytes")]
    Collision {
        /// The structure.
        structure: Structure,
        /// Its bytes.
        len: u64,
        /// Where it may go.
        windows: &'static str,
        /// What stands where it would go (an image range, or a structure).
        blocker: String,
        /// Where that starts.
        blocker_start: u64,
        /// Where that ends.
        blocker_end: u64,
    },
    /// Guest RAM does not reach where the structure may go.
    #[error("{structure} ({len} bytes) does not fit in the guest RAM where it may go ({windows})")]
    NoRam {
        /// The structure.
        structure: Structure,
        /// Its bytes.
        len: u64,
        /// Where it may go.
        windows: &'static str,
    },
}

/// The most entries [`BootPlan::memory_map`] can have for `layout`: each
/// reserved range splits a RAM entry in at most three.
pub fn max_map_entries(layout: &MemoryLayout) -> usize {
    layout.firmware_map().len() + 2 * Structure::ALL.len()
}

/// `v` rounded up to `align` (a power of two); `None` on overflow.
fn align_up(v: u64, align: u64) -> Option<u64> {
    Some(v.checked_add(align - 1)? & !(align - 1))
}

/// Who holds a range while planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    /// `occupied[i]`.
    Image(usize),
    /// A placed structure.
    Structure(Structure),
}

/// How one structure may be placed.
struct Rule {
    what: Structure,
    len: u64,
    align: u64,
    prefer: Option<u64>,
    windows: Vec<(u64, u64)>,
    /// Where it may go, for errors.
    describe: &'static str,
    /// Search from the top of each window down.
    highest: bool,
    /// A structure it may sit inside (the EBDA for the pointers).
    nest_in: Option<Structure>,
}

struct Planner<'a> {
    layout: &'a MemoryLayout,
    occupied: &'a [Occupied],
    taken: Vec<(u64, u64, Holder)>,
    plan: BootPlan,
}

impl<'a> Planner<'a> {
    fn new(layout: &'a MemoryLayout, occupied: &'a [Occupied]) -> Self {
        let taken = occupied
            .iter()
            .enumerate()
            .filter(|(_, o)| o.end > o.start)
            .map(|(i, o)| (o.start, o.end, Holder::Image(i)))
            .collect();
        Planner {
            layout,
            occupied,
            taken,
            plan: BootPlan::default(),
        }
    }

    /// The first range taken in `[start, end)`, other than `nest_in`.
    fn conflict(&self, start: u64, end: u64, nest_in: Option<Structure>) -> Option<(u64, u64)> {
        self.taken
            .iter()
            .filter(|(_, _, h)| nest_in.is_none_or(|n| *h != Holder::Structure(n)))
            .find(|&&(s, e, _)| s < end && e > start)
            .map(|&(s, e, _)| (s, e))
    }

    fn holder_name(&self, start: u64, end: u64) -> Option<(String, u64, u64)> {
        self.taken
            .iter()
            .find(|&&(s, e, _)| s < end && e > start)
            .map(|&(s, e, h)| {
                let name = match h {
                    Holder::Image(i) => self.occupied[i].what.clone(),
                    Holder::Structure(st) => st.name().to_string(),
                };
                (name, s, e)
            })
    }

    fn free(&self, start: u64, len: u64, nest_in: Option<Structure>) -> bool {
        start.checked_add(len).is_some_and(|end| {
            self.layout.contains_range(GuestAddress(start), len)
                && self.conflict(start, end, nest_in).is_none()
        })
    }

    /// The lowest (or highest) aligned free address for `len` bytes in
    /// `window`.
    fn search(&self, rule: &Rule, window: (u64, u64)) -> Option<u64> {
        let (len, align) = (rule.len, rule.align);
        for r in self.layout.ram_ranges() {
            let lo = window.0.max(r.start.0);
            let hi = window.1.min(r.end());
            if hi <= lo || hi - lo < len {
                continue;
            }
            if rule.highest {
                let mut at = (hi - len) & !(align - 1);
                while at >= lo {
                    match self.conflict(at, at + len, rule.nest_in) {
                        None => return Some(at),
                        Some((s, _)) => match s.checked_sub(len) {
                            Some(below) => at = below & !(align - 1),
                            None => break,
                        },
                    }
                }
            } else {
                let mut at = align_up(lo, align)?;
                while at.checked_add(len).is_some_and(|end| end <= hi) {
                    match self.conflict(at, at + len, rule.nest_in) {
                        None => return Some(at),
                        Some((_, e)) => at = align_up(e, align)?,
                    }
                }
            }
        }
        None
    }

    fn take(&mut self, what: Structure, start: u64, len: u64) {
        self.taken
            .push((start, start + len, Holder::Structure(what)));
        self.plan.placed.push(Placed { what, start, len });
    }

    /// Places `rule`'s structure, or says what is in the way.
    fn place(&mut self, rule: Rule) -> Result<Placed, PlanError> {
        let len = rule.len.max(1);
        let rule = Rule { len, ..rule };
        let preferred = rule.prefer.filter(|&p| {
            p % rule.align == 0
                && rule
                    .windows
                    .iter()
                    .any(|&(s, e)| p >= s && p.saturating_add(len) <= e)
                && self.free(p, len, rule.nest_in)
        });
        let found = preferred.or_else(|| rule.windows.iter().find_map(|&w| self.search(&rule, w)));
        match found {
            Some(at) => {
                self.take(rule.what, at, len);
                Ok(Placed {
                    what: rule.what,
                    start: at,
                    len,
                })
            }
            None => Err(self.why_not(&rule)),
        }
    }

    /// The error for a structure that found no room: what stands at its
    /// preferred address, else in its first window, else missing RAM.
    fn why_not(&self, rule: &Rule) -> PlanError {
        let first = rule.prefer.map(|p| (p, p.saturating_add(rule.len)));
        let blocker = first
            .into_iter()
            .chain(rule.windows.iter().copied())
            .find_map(|(s, e)| self.holder_name(s, e));
        match blocker {
            Some((blocker, blocker_start, blocker_end)) => PlanError::Collision {
                structure: rule.what,
                len: rule.len,
                windows: rule.describe,
                blocker,
                blocker_start,
                blocker_end,
            },
            None => PlanError::NoRam {
                structure: rule.what,
                len: rule.len,
                windows: rule.describe,
            },
        }
    }

    /// Places a structure with a fixed address if nothing is there; else
    /// records why it was left out.
    fn place_fixed(&mut self, what: Structure, start: u64, len: u64) {
        if self.free(start, len, None) {
            self.take(what, start, len);
        } else {
            let why = match self.holder_name(start, start + len) {
                Some((name, s, e)) => format!("{name} occupies [{s:#x}, {e:#x})"),
                None => "it is not guest RAM".to_string(),
            };
            self.plan.skipped.push((what, why));
        }
    }

    /// Like [`Self::place`], but a structure that finds no room is left out
    /// instead of failing the boot.
    fn place_optional(&mut self, rule: Rule) -> Option<Placed> {
        let what = rule.what;
        match self.place(rule) {
            Ok(p) => Some(p),
            Err(e) => {
                self.plan.skipped.push((what, e.to_string()));
                None
            }
        }
    }
}

/// A rule for one of the structures that may go anywhere low.
fn low_rule(
    what: Structure,
    len: u64,
    align: u64,
    prefer: GuestAddress,
    describe: &'static str,
) -> Rule {
    Rule {
        what,
        len,
        align,
        prefer: Some(prefer.0),
        windows: vec![LOW, HIGH32],
        describe,
        highest: false,
        nest_in: None,
    }
}

const LOW_OR_HIGH32: &str = "RAM in [0x500, 0xa0000) or [0x100000, 0xc0000000)";

/// Places what `needs` asks for around `occupied` in `layout`'s RAM.
pub fn plan(
    layout: &MemoryLayout,
    occupied: &[Occupied],
    needs: &Needs,
) -> Result<BootPlan, PlanError> {
    let mut p = Planner::new(layout, occupied);
    if let Some(sizes) = needs.pc {
        if needs.real_mode_bios {
            p.place_fixed(Structure::Ivt, IVT_START.0, IVT_LEN);
        }
        p.place_fixed(Structure::Bda, BDA_START.0, BDA_LEN);
        let ebda = p.place_optional(Rule {
            what: Structure::Ebda,
            len: EBDA_LEN,
            align: EBDA_LEN,
            prefer: Some(LEGACY_HOLE_START - EBDA_LEN),
            windows: vec![LOW],
            describe: "the highest free KiB below 0xa0000",
            highest: true,
            nest_in: None,
        });
        // The pointers may also go in the EBDA's first KiB, after its
        // header.
        let in_ebda = ebda.map(|e| (e.start + EBDA_HEADER_LEN, e.end()));
        let rsdp = p.place(Rule {
            what: Structure::AcpiRsdp,
            len: RSDP_LEN,
            align: 16,
            prefer: Some(ACPI_TABLES_START.0),
            windows: [BIOS_AREA].into_iter().chain(in_ebda).collect(),
            describe: "[0xe0000, 0x100000) or the EBDA's first KiB, where ACPI 6.5 §5.2.5.1 has a guest search",
            highest: false,
            nest_in: Some(Structure::Ebda),
        })?;
        let fp = p.place(Rule {
            what: Structure::MpFloatingPointer,
            len: MP_FLOATING_POINTER_LEN,
            align: 16,
            prefer: Some(MPTABLE_START.0),
            windows: [BIOS_ROM].into_iter().chain(in_ebda).collect(),
            describe:
                "[0xf0000, 0x100000) or the EBDA's first KiB, where MP 1.4 §4 has a guest search",
            highest: false,
            nest_in: Some(Structure::Ebda),
        })?;
        let after = |ptr: Placed, align: u64| {
            let in_bios = ptr.start >= BIOS_AREA.0 && ptr.start < BIOS_AREA.1;
            in_bios.then(|| align_up(ptr.end(), align)).flatten()
        };
        const TABLES: &str =
            "RAM in [0xe0000, 0x100000), [0x500, 0xa0000) or [0x100000, 0xc0000000)";
        if sizes.acpi_tables > 0 {
            p.place(Rule {
                what: Structure::AcpiTables,
                len: sizes.acpi_tables,
                align: 64,
                prefer: after(rsdp, 64),
                windows: vec![BIOS_AREA, LOW, HIGH32],
                describe: TABLES,
                highest: false,
                nest_in: None,
            })?;
        }
        if sizes.mp_table > 0 {
            p.place(Rule {
                what: Structure::MpTable,
                len: sizes.mp_table,
                align: 16,
                prefer: after(fp, 16),
                windows: vec![BIOS_AREA, LOW, HIGH32],
                describe: TABLES,
                highest: false,
                nest_in: None,
            })?;
        }
        if needs.real_mode_bios {
            p.place(Rule {
                what: Structure::BiosStubs,
                len: BIOS_STUBS_LEN,
                align: 16,
                prefer: Some(BIOS_STUBS_START.0),
                windows: vec![BIOS_ROM],
                describe: "[0xf0000, 0x100000), segment 0xf000",
                highest: false,
                nest_in: None,
            })?;
        }
    }
    if needs.gdt {
        p.place(low_rule(
            Structure::Gdt,
            GDT_LEN,
            8,
            BOOT_GDT_START,
            LOW_OR_HIGH32,
        ))?;
    }
    if needs.page_tables {
        p.place(low_rule(
            Structure::PageTables,
            PAGE_TABLES_LEN,
            0x1000,
            PML4_START,
            LOW_OR_HIGH32,
        ))?;
    }
    if needs.zero_page {
        p.place(low_rule(
            Structure::ZeroPage,
            ZERO_PAGE_LEN,
            0x1000,
            ZERO_PAGE_START,
            LOW_OR_HIGH32,
        ))?;
    }
    if let Some(len) = needs.boot_info {
        p.place(low_rule(
            Structure::BootInfo,
            len,
            8,
            BOOT_INFO_START,
            LOW_OR_HIGH32,
        ))?;
    }
    if let Some(len) = needs.cmdline {
        p.place(low_rule(
            Structure::Cmdline,
            len,
            16,
            CMDLINE_START,
            LOW_OR_HIGH32,
        ))?;
    }
    Ok(p.plan)
}

impl BootPlan {
    /// Every placed structure, in placement order.
    pub fn placed(&self) -> &[Placed] {
        &self.placed
    }

    /// The structures left out (the IVT or BDA under the image, an EBDA
    /// with no free KiB below 640 KiB), each with why.
    pub fn skipped(&self) -> &[(Structure, String)] {
        &self.skipped
    }

    /// Where `what` was placed, if it was.
    pub fn get(&self, what: Structure) -> Option<Placed> {
        self.placed.iter().copied().find(|p| p.what == what)
    }

    /// The address of `what`, if it was placed.
    pub fn addr(&self, what: Structure) -> Option<GuestAddress> {
        self.get(what).map(|p| GuestAddress(p.start))
    }

    /// The first placed structure overlapping `[start, start + len)`.
    pub fn overlapping(&self, start: u64, len: u64) -> Option<Placed> {
        let end = start.saturating_add(len.max(1));
        self.placed
            .iter()
            .copied()
            .find(|p| p.start < end && p.end() > start)
    }

    /// The ranges the memory map reserves for the placed structures,
    /// `[start, end)`, sorted and merged.
    pub fn reserved(&self) -> Vec<(u64, u64)> {
        let mut ranges: Vec<(u64, u64)> = self
            .placed
            .iter()
            .filter(|p| p.what.is_reserved_in_map())
            .map(|p| (p.start, p.end()))
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (s, e) in ranges {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
    }

    /// The memory map a guest is told about: `layout`'s
    /// [`MemoryLayout::firmware_map`] with every reserved structure carved
    /// out of its RAM entries, neighbours of one kind merged. Sorted,
    /// covering exactly the RAM ranges.
    pub fn memory_map(&self, layout: &MemoryLayout) -> Vec<MapEntry> {
        let reserved = self.reserved();
        let mut out: Vec<MapEntry> = Vec::new();
        let mut push = |start: u64, end: u64, kind: MapKind| {
            if end <= start {
                return;
            }
            match out.last_mut() {
                Some(last) if last.kind == kind && last.start + last.len == start => {
                    last.len += end - start;
                }
                _ => out.push(MapEntry {
                    start,
                    len: end - start,
                    kind,
                }),
            }
        };
        for e in layout.firmware_map() {
            let end = e.start + e.len;
            if e.kind != MapKind::Ram {
                push(e.start, end, e.kind);
                continue;
            }
            let mut at = e.start;
            for &(s, t) in reserved.iter().filter(|&&(s, t)| s < end && t > e.start) {
                push(at, s.max(e.start), MapKind::Ram);
                push(s.max(e.start), t.min(end), MapKind::Reserved);
                at = at.max(t.min(end));
            }
            push(at, end, MapKind::Ram);
        }
        out
    }

    /// Base memory in KiB as the BDA reports it (word 0x413): up to the
    /// EBDA, or all 640 KiB without one.
    pub fn base_memory_kib(&self) -> u16 {
        let top = self
            .addr(Structure::Ebda)
            .map_or(LEGACY_HOLE_START, |a| a.0);
        (top / 1024) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(mib: u64) -> MemoryLayout {
        MemoryLayout::with_phys_bits(mib, 40).unwrap()
    }

    const PC: FirmwareSizes = FirmwareSizes {
        acpi_tables: 0x500,
        mp_table: 0x120,
    };

    fn multiboot() -> Needs {
        Needs {
            gdt: true,
            boot_info: Some(0x300),
            cmdline: Some(40),
            pc: Some(PC),
            ..Needs::default()
        }
    }

    fn linux() -> Needs {
        Needs {
            gdt: true,
            page_tables: true,
            zero_page: true,
            cmdline: Some(100),
            pc: Some(PC),
            ..Needs::default()
        }
    }

    fn addrs(plan: &BootPlan) -> Vec<(Structure, u64)> {
        plan.placed().iter().map(|p| (p.what, p.start)).collect()
    }

    /// No placed structure overlaps another (except a pointer inside the
    /// EBDA) or any occupied range, and each lies in RAM.
    fn assert_sound(plan: &BootPlan, layout: &MemoryLayout, occupied: &[Occupied]) {
        let placed = plan.placed();
        for (i, a) in placed.iter().enumerate() {
            assert!(layout.contains_range(GuestAddress(a.start), a.len), "{a:?}");
            for o in occupied {
                assert!(a.end() <= o.start || a.start >= o.end, "{a:?} over {o:?}");
            }
            for b in &placed[i + 1..] {
                let nested = [a.what, b.what].contains(&Structure::Ebda)
                    && [a.what, b.what]
                        .iter()
                        .any(|w| matches!(w, Structure::AcpiRsdp | Structure::MpFloatingPointer));
                if !nested {
                    assert!(a.end() <= b.start || a.start >= b.end(), "{a:?} and {b:?}");
                }
            }
        }
    }

    #[test]
    fn test_plan_free_image_gets_the_fixed_layout() {
        let l = layout(64);
        let occupied = [Occupied::new("ELF segment 0", 0x10_0000, 0x1000)];
        let plan = plan(&l, &occupied, &linux()).unwrap();
        assert_eq!(
            addrs(&plan),
            [
                (Structure::Bda, 0x400),
                (Structure::Ebda, 0x9_fc00),
                (Structure::AcpiRsdp, 0xe_0000),
                (Structure::MpFloatingPointer, 0xf_0000),
                (Structure::AcpiTables, 0xe_0040),
                (Structure::MpTable, 0xf_0010),
                (Structure::Gdt, 0x500),
                (Structure::PageTables, 0x9000),
                (Structure::ZeroPage, 0x7000),
                (Structure::Cmdline, 0x2_0000),
            ]
        );
        assert_eq!(plan.get(Structure::Cmdline).unwrap().len, 100);
        assert_eq!(plan.base_memory_kib(), 639);
        assert!(plan.skipped().is_empty());
    }

    #[test]
    fn test_plan_reserves_only_what_the_mode_needs() {
        let l = layout(16);
        let plan = plan(&l, &[], &multiboot()).unwrap();
        assert!(plan.get(Structure::PageTables).is_none());
        assert!(plan.get(Structure::ZeroPage).is_none());
        assert!(plan.get(Structure::Ivt).is_none());
        assert!(plan.get(Structure::BiosStubs).is_none());
        let real = Needs {
            pc: Some(PC),
            real_mode_bios: true,
            ..Needs::default()
        };
        let plan = super::plan(&l, &[], &real).unwrap();
        assert!(plan.get(Structure::Gdt).is_none(), "real mode needs no GDT");
        assert_eq!(plan.addr(Structure::Ivt), Some(GuestAddress(0)));
        assert_eq!(
            plan.addr(Structure::BiosStubs),
            Some(GuestAddress(0xf_f000))
        );
        // The minimal platform: nothing of the PC.
        let bare = super::plan(&l, &[], &Needs::default()).unwrap();
        assert!(bare.placed().is_empty());
    }

    #[test]
    fn test_plan_realmode_flat_at_0x8000_loads() {
        // kvm-unit-tests' realmode.flat: one segment [0x8000, 0xa86c), a
        // 32-bit Multiboot entry: no page tables, so nothing moves.
        let l = layout(16);
        let occupied = [Occupied::new("ELF segment 0", 0x8000, 0x286c)];
        let plan = plan(&l, &occupied, &multiboot()).unwrap();
        assert_sound(&plan, &l, &occupied);
        assert_eq!(plan.addr(Structure::BootInfo), Some(BOOT_INFO_START));
        // As a long-mode image it would push the page tables elsewhere.
        let long = Needs {
            page_tables: true,
            ..multiboot()
        };
        let plan = super::plan(&l, &occupied, &long).unwrap();
        assert_sound(&plan, &l, &occupied);
        assert_eq!(plan.addr(Structure::PageTables), Some(GuestAddress(0x1000)));
    }

    #[test]
    fn test_plan_header_segment_at_0xff000_moves_nothing_it_does_not_need() {
        let l = layout(16);
        let occupied = [
            Occupied::new("ELF segment 0", 0xf_f000, 0x94),
            Occupied::new("ELF segment 1", 0x10_0000, 0x40),
        ];
        let plan = plan(&l, &occupied, &multiboot()).unwrap();
        assert_sound(&plan, &l, &occupied);
        // A real-mode start would need the stubs there: they move down.
        let real = Needs {
            pc: Some(PC),
            real_mode_bios: true,
            ..Needs::default()
        };
        let plan = super::plan(&l, &occupied, &real).unwrap();
        assert_sound(&plan, &l, &occupied);
        let stubs = plan.get(Structure::BiosStubs).unwrap();
        assert!((0xf_0000..0xf_f000).contains(&stubs.start), "{stubs:?}");
    }

    #[test]
    fn test_plan_moves_the_pointers_within_their_search_ranges() {
        let l = layout(16);
        // The whole BIOS area is the image's.
        let occupied = [Occupied::new("ELF segment 3", 0xe_0000, 0x2_0000)];
        let plan = plan(&l, &occupied, &linux()).unwrap();
        assert_sound(&plan, &l, &occupied);
        let ebda = plan.get(Structure::Ebda).unwrap();
        for w in [Structure::AcpiRsdp, Structure::MpFloatingPointer] {
            let p = plan.get(w).unwrap();
            assert!(
                p.start >= ebda.start + EBDA_HEADER_LEN && p.end() <= ebda.start + 1024,
                "{p:?} outside the EBDA's first KiB {ebda:?}"
            );
            assert_eq!(p.start % 16, 0);
        }
        // Their tables go to low RAM instead.
        let tables = plan.get(Structure::AcpiTables).unwrap();
        assert!(tables.end() <= LEGACY_HOLE_START, "{tables:?}");
        // Part of the area taken: the RSDP moves up, still inside it.
        let occupied = [Occupied::new("ELF segment 0", 0xe_0000, 0x100)];
        let plan = super::plan(&l, &occupied, &linux()).unwrap();
        assert_eq!(plan.addr(Structure::AcpiRsdp), Some(GuestAddress(0xe_0100)));
    }

    #[test]
    fn test_plan_true_overlap_names_both() {
        let l = layout(16);
        // Everything an RSDP may use: the BIOS area and all of low RAM (no
        // EBDA can be placed, so the pointer has nowhere to go).
        let occupied = [
            Occupied::new("the raw image", 0, 0x10_0000),
            Occupied::new("ELF segment 1", 0x10_0000, 0x1000),
        ];
        let e = plan(&l, &occupied, &linux()).unwrap_err();
        assert!(
            matches!(
                &e,
                PlanError::Collision {
                    structure: Structure::AcpiRsdp,
                    blocker,
                    blocker_start: 0,
                    blocker_end: 0x10_0000,
                    ..
                } if blocker == "the raw image"
            ),
            "{e}"
        );
        let msg = e.to_string();
        assert!(msg.contains("the ACPI RSDP (36 bytes)"), "{msg}");
        assert!(msg.contains("the raw image at [0x0, 0x100000)"), "{msg}");
        assert!(msg.contains("0xe0000"), "{msg}");
    }

    #[test]
    fn test_plan_fixed_ones_are_left_out_under_the_image() {
        let l = layout(16);
        let occupied = [Occupied::new("the raw image", 0, 0x600)];
        let real = Needs {
            pc: Some(PC),
            real_mode_bios: true,
            ..Needs::default()
        };
        let plan = plan(&l, &occupied, &real).unwrap();
        assert!(plan.get(Structure::Ivt).is_none() && plan.get(Structure::Bda).is_none());
        let skipped: Vec<Structure> = plan.skipped().iter().map(|s| s.0).collect();
        assert_eq!(skipped, [Structure::Ivt, Structure::Bda]);
        assert!(
            plan.skipped()[0].1.contains("the raw image"),
            "{:?}",
            plan.skipped()
        );
    }

    #[test]
    fn test_plan_ebda_goes_below_an_image_at_the_top_of_base_memory() {
        let l = layout(16);
        let occupied = [Occupied::new("ELF segment 0", 0x9_0000, 0x1_0000)];
        let plan = plan(&l, &occupied, &multiboot()).unwrap();
        assert_eq!(plan.addr(Structure::Ebda), Some(GuestAddress(0x8_fc00)));
        assert_eq!(plan.base_memory_kib(), (0x8_fc00 / 1024) as u16);
    }

    #[test]
    fn test_plan_no_ram_is_named() {
        // 1 MiB guest, long mode, but the image fills low RAM: the page
        // tables have nowhere else to go.
        let l = layout(1);
        let occupied = [Occupied::new("the raw image", 0x500, 0x9_fb00)];
        let needs = Needs {
            gdt: true,
            page_tables: true,
            ..Needs::default()
        };
        let e = plan(&l, &occupied, &needs).unwrap_err();
        assert!(
            matches!(
                e,
                PlanError::Collision {
                    structure: Structure::Gdt,
                    ..
                }
            ),
            "{e}"
        );
        let tiny = [Occupied::new("the raw image", 0x500, 0x9_fb00 - 0x100)];
        let e = plan(&l, &tiny, &needs).unwrap_err();
        assert!(
            matches!(
                e,
                PlanError::Collision {
                    structure: Structure::PageTables,
                    ..
                }
            ),
            "{e}"
        );
        let huge = Needs {
            cmdline: Some(2 << 20),
            ..Needs::default()
        };
        let e = plan(&l, &[], &huge).unwrap_err();
        assert!(matches!(e, PlanError::NoRam { .. }), "{e}");
    }

    #[test]
    fn test_memory_map_reserves_what_was_placed() {
        let l = layout(64);
        let plan = plan(&l, &[], &linux()).unwrap();
        let map = plan.memory_map(&l);
        let kinds: Vec<(u64, u64, MapKind)> =
            map.iter().map(|e| (e.start, e.len, e.kind)).collect();
        use MapKind::{Ram, Reserved};
        assert_eq!(
            kinds,
            [
                (0, 0x500, Ram),
                (0x500, GDT_LEN, Reserved),
                (0x500 + GDT_LEN, 0x7000 - 0x500 - GDT_LEN, Ram),
                (0x7000, 0x1000, Reserved),
                (0x8000, 0x1000, Ram),
                (0x9000, 0x6000, Reserved),
                (0xf000, 0x2_0000 - 0xf000, Ram),
                (0x2_0000, 100, Reserved),
                (0x2_0000 + 100, 0x9_fc00 - 0x2_0000 - 100, Ram),
                // The EBDA merges with the legacy hole.
                (0x9_fc00, 0x10_0000 - 0x9_fc00, Reserved),
                (0x10_0000, 63 << 20, Ram),
            ]
        );
        assert!(map.len() <= max_map_entries(&l));
        // Nothing placed: the layout's map.
        assert_eq!(BootPlan::default().memory_map(&l), l.firmware_map());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn prop_plan_is_sound_and_the_map_covers_ram(
                segs in proptest::collection::vec((0u64..0x20_0000, 1u64..0x4_0000), 0..4),
                long in any::<bool>(),
                pc in any::<bool>(),
                real in any::<bool>(),
            ) {
                let l = layout(16);
                let occupied: Vec<Occupied> = segs
                    .iter()
                    .enumerate()
                    .map(|(i, &(s, n))| Occupied::new(format!("segment {i}"), s, n))
                    .collect();
                let needs = Needs {
                    gdt: !real,
                    page_tables: long && !real,
                    zero_page: long,
                    boot_info: Some(0x400),
                    cmdline: Some(64),
                    pc: pc.then_some(PC),
                    real_mode_bios: real,
                };
                let plan = match plan(&l, &occupied, &needs) {
                    Ok(plan) => plan,
                    Err(e) => {
                        // Only the image can be in the way in 16 MiB.
                        prop_assert!(matches!(e, PlanError::Collision { .. }), "{}", e);
                        return Ok(());
                    }
                };
                {
                    assert_sound(&plan, &l, &occupied);
                    let map = plan.memory_map(&l);
                    prop_assert!(map.len() <= max_map_entries(&l));
                    let total: u64 = map.iter().map(|e| e.len).sum();
                    prop_assert_eq!(total, l.size());
                    for w in map.windows(2) {
                        prop_assert!(w[0].start + w[0].len <= w[1].start);
                    }
                    for p in plan.placed().iter().filter(|p| p.what.is_reserved_in_map()) {
                        prop_assert!(map.iter().any(|e| e.kind == MapKind::Reserved
                            && e.start <= p.start && p.end() <= e.start + e.len), "{:?}", p);
                    }
                }
            }
        }
    }
}
