//! What a PC BIOS leaves in low memory: the BIOS data area and the EBDA for
//! every program it starts (Xen and Linux read the EBDA segment and base
//! memory from the BDA), and for a real-mode program (a boot sector, a
//! DOS-era program) the interrupt vector table and the handlers it points
//! at. The interrupt controllers and timer are set with
//! [`crate::platform::bios_pic_state`] and [`crate::platform::bios_pit_state`]
//! when the VM is created. Everything goes where the boot plan put it.
//!
//! - **IVT** at [`IVT_START`]: 256 far pointers into the stub area
//!   (preferably [`BIOS_STUBS_START`], always in segment 0xf000). Every
//!   vector returns (`iret`),
//!   so `int 0x10` and friends come back with registers unchanged; the
//!   hardware-IRQ vectors 0x09-0x0f and 0x70-0x77 send the end-of-interrupt
//!   a BIOS's default IRQ handler sends (SeaBIOS `handle_hwpic1/2`); the
//!   timer vector 0x08 counts the BDA's ticks since midnight, calls
//!   `int 0x1c` (the user timer hook) and sends its EOI, as SeaBIOS's
//!   `handle_08` does.
//! - **BDA** at [`BDA_START`]: COM1's port, the equipment word (FPU, PS/2
//!   mouse, one serial port), the EBDA's segment and the base memory below
//!   it in KiB (639 with the EBDA at its preferred 0x9fc00), the tick count
//!   from the host's time of day.
//! - **EBDA**: 1 KiB, its size in KiB in its first byte, as SeaBIOS leaves
//!   it; the ACPI RSDP and MP floating pointer may live in it when the image
//!   needs the BIOS area.
//!
//! The stubs are 16-bit code assembled by hand (this crate has no
//! assembler); the unit tests decode them.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryError};
use vmm_devices::legacy::uart8250::COM1_PORT;
use vmm_memory::boot_plan::{BDA_LEN, EBDA_LEN};
use vmm_memory::layout::BIOS_STUBS_LEN;
#[cfg(doc)]
use vmm_memory::layout::{BDA_START, BIOS_STUBS_START, IVT_START};
use vmm_memory::{BootPlan, Structure};

/// The 8259 vector bases a PC BIOS programs (IRQ 0-7, IRQ 8-15).
pub const MASTER_VECTOR_BASE: u8 = 0x08;
/// The slave PIC's vector base.
pub const SLAVE_VECTOR_BASE: u8 = 0x70;
/// The real-mode segment of the stub area.
pub const STUB_SEGMENT: u16 = 0xf000;

/// BDA offsets (from 0x400) and values.
const BDA_COM1: u64 = 0x00;
const BDA_EBDA_SEGMENT: u64 = 0x0e;
const BDA_EQUIPMENT: u64 = 0x10;
const BDA_BASE_MEMORY_KIB: u64 = 0x13;
const BDA_TICKS: u64 = 0x6c;
/// Equipment word: x87 FPU (bit 1), PS/2 mouse (bit 2), one serial port
/// (bits 11:9); no floppy, EGA-or-later video bits 0.
pub const EQUIPMENT_WORD: u16 = 0x0002 | 0x0004 | (1 << 9);
/// The EBDA's size in KiB, in its first byte.
pub const EBDA_SIZE_KIB: u8 = (EBDA_LEN / 1024) as u8;
/// Linear address of segment 0xf000, where the stubs' offsets count from.
const STUB_SEGMENT_BASE: u64 = (STUB_SEGMENT as u64) << 4;
/// Timer ticks per day at 1193182 Hz / 65536 (the BIOS's midnight wrap).
pub const TICKS_PER_DAY: u32 = 0x0018_00b0;

/// The stubs: their offsets in the stub area and their bytes.
const IRET_AT: u16 = 0x00;
const MASTER_EOI_AT: u16 = 0x10;
const SLAVE_EOI_AT: u16 = 0x20;
const TIMER_AT: u16 = 0x40;

/// `iret`.
const IRET: &[u8] = &[0xcf];
/// `push ax; mov al, 0x20; out 0x20, al; pop ax; iret`.
const MASTER_EOI: &[u8] = &[0x50, 0xb0, 0x20, 0xe6, 0x20, 0x58, 0xcf];
/// `push ax; mov al, 0x20; out 0xa0, al; out 0x20, al; pop ax; iret`.
const SLAVE_EOI: &[u8] = &[0x50, 0xb0, 0x20, 0xe6, 0xa0, 0xe6, 0x20, 0x58, 0xcf];
/// IRQ 0: count the tick (wrapping at midnight and setting the BDA's
/// midnight flag), call the user hook, send the EOI.
const TIMER: &[u8] = &[
    0x1e, // push ds
    0x50, // push ax
    0x31, 0xc0, // xor ax, ax
    0x8e, 0xd8, // mov ds, ax
    0x66, 0xff, 0x06, 0x6c, 0x04, // inc dword [0x46c]
    0x66, 0x81, 0x3e, 0x6c, 0x04, 0xb0, 0x00, 0x18, 0x00, // cmp dword [0x46c], 0x1800b0
    0x72, 0x0e, // jb +14
    0x66, 0xc7, 0x06, 0x6c, 0x04, 0x00, 0x00, 0x00, 0x00, // mov dword [0x46c], 0
    0xc6, 0x06, 0x70, 0x04, 0x01, // mov byte [0x470], 1
    0xcd, 0x1c, // int 0x1c
    0xb0, 0x20, // mov al, 0x20
    0xe6, 0x20, // out 0x20, al
    0x58, // pop ax
    0x1f, // pop ds
    0xcf, // iret
];

/// The stub area's contents: the stubs at their offsets, `hlt` elsewhere.
fn stub_area() -> Vec<u8> {
    let mut area = vec![0xf4; BIOS_STUBS_LEN as usize];
    for (at, code) in [
        (IRET_AT, IRET),
        (MASTER_EOI_AT, MASTER_EOI),
        (SLAVE_EOI_AT, SLAVE_EOI),
        (TIMER_AT, TIMER),
    ] {
        area[usize::from(at)..usize::from(at) + code.len()].copy_from_slice(code);
    }
    area
}

/// The handler the IVT gives `vector`, as an offset in [`STUB_SEGMENT`],
/// for stubs whose area starts at offset `area` of the segment.
pub fn vector_target(vector: u8, area: u16) -> u16 {
    let at = match vector {
        MASTER_VECTOR_BASE => TIMER_AT,
        v if v > MASTER_VECTOR_BASE && v < MASTER_VECTOR_BASE + 8 => MASTER_EOI_AT,
        v if (SLAVE_VECTOR_BASE..SLAVE_VECTOR_BASE + 8).contains(&v) => SLAVE_EOI_AT,
        _ => IRET_AT,
    };
    area + at
}

/// The interrupt vector table: 256 (offset, segment) pairs, for stubs at
/// offset `area` of [`STUB_SEGMENT`].
fn ivt(area: u16) -> Vec<u8> {
    let mut t = Vec::with_capacity(1024);
    for v in 0..=255u8 {
        t.extend_from_slice(&vector_target(v, area).to_le_bytes());
        t.extend_from_slice(&STUB_SEGMENT.to_le_bytes());
    }
    t
}

/// The BIOS data area's 256 bytes: COM1, the EBDA's segment (0: none),
/// the equipment word, base memory in KiB, the ticks since midnight.
fn bda(ebda: Option<u64>, base_memory_kib: u16, seconds_today: u64) -> Vec<u8> {
    let mut b = vec![0u8; BDA_LEN as usize];
    let mut put = |off: u64, bytes: &[u8]| {
        let off = off as usize;
        b[off..off + bytes.len()].copy_from_slice(bytes);
    };
    put(BDA_COM1, &COM1_PORT.to_le_bytes());
    // The planner keeps the EBDA below 640 KiB: its segment fits 16 bits.
    let segment = ebda.map_or(0, |a| (a >> 4) as u16);
    put(BDA_EBDA_SEGMENT, &segment.to_le_bytes());
    put(BDA_EQUIPMENT, &EQUIPMENT_WORD.to_le_bytes());
    put(BDA_BASE_MEMORY_KIB, &base_memory_kib.to_le_bytes());
    put(BDA_TICKS, &ticks_at(seconds_today).to_le_bytes());
    b
}

/// Ticks since midnight for `seconds_today` (what SeaBIOS derives from the
/// RTC at boot).
pub fn ticks_at(seconds_today: u64) -> u32 {
    ((seconds_today % 86_400) * 1_193_182 / 65_536).min(u64::from(TICKS_PER_DAY) - 1) as u32
}

/// Writes the BIOS data area and the EBDA's header where `plan` put them
/// (each only if placed: an image at 0x400 gets no BDA). Every boot on the
/// PC platform gets them.
pub fn write_bios_data<M: GuestMemoryBackend>(
    mem: &M,
    plan: &BootPlan,
    seconds_today: u64,
) -> Result<(), GuestMemoryError> {
    let ebda = plan.get(Structure::Ebda);
    if let Some(at) = plan.addr(Structure::Bda) {
        let bytes = bda(ebda.map(|e| e.start), plan.base_memory_kib(), seconds_today);
        mem.write_slice(&bytes, at)?;
    }
    if let Some(e) = ebda {
        mem.write_obj(EBDA_SIZE_KIB, GuestAddress(e.start))?;
    }
    Ok(())
}

/// Writes the stubs and the IVT pointing at them where `plan` put them
/// (for a real-mode start on the PC platform; the IVT only if placed: an
/// image at address 0 keeps its own).
pub fn write_real_mode_firmware<M: GuestMemoryBackend>(
    mem: &M,
    plan: &BootPlan,
) -> Result<(), GuestMemoryError> {
    let Some(stubs) = plan.get(Structure::BiosStubs) else {
        return Ok(());
    };
    // The planner keeps the stubs in segment 0xf000.
    let Some(area) = stubs
        .start
        .checked_sub(STUB_SEGMENT_BASE)
        .and_then(|o| u16::try_from(o).ok())
        .filter(|o| u64::from(*o) + BIOS_STUBS_LEN <= 0x1_0000)
    else {
        log::warn!(
            "BIOS stubs at {:#x} are outside segment {STUB_SEGMENT:#x}: no IVT written",
            stubs.start
        );
        return Ok(());
    };
    mem.write_slice(&stub_area(), GuestAddress(stubs.start))?;
    if let Some(at) = plan.addr(Structure::Ivt) {
        mem.write_slice(&ivt(area), at)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
    use vm_memory::GuestMemoryMmap;

    fn disassemble(code: &[u8]) -> Vec<String> {
        let mut d = Decoder::new(16, code, DecoderOptions::NONE);
        let mut f = IntelFormatter::new();
        let mut out = Vec::new();
        while d.can_decode() {
            let i = d.decode();
            assert!(!i.is_invalid(), "bad bytes in {code:02x?}");
            let mut s = String::new();
            f.format(&i, &mut s);
            out.push(s);
        }
        out
    }

    #[test]
    fn test_stubs_decode_to_what_they_say() {
        assert_eq!(disassemble(IRET), ["iret"]);
        assert_eq!(
            disassemble(MASTER_EOI),
            ["push ax", "mov al,20h", "out 20h,al", "pop ax", "iret"]
        );
        assert_eq!(
            disassemble(SLAVE_EOI),
            [
                "push ax",
                "mov al,20h",
                "out 0A0h,al",
                "out 20h,al",
                "pop ax",
                "iret"
            ]
        );
        let timer = disassemble(TIMER);
        assert_eq!(
            timer,
            [
                "push ds",
                "push ax",
                "xor ax,ax",
                "mov ds,ax",
                "inc dword ptr [46Ch]",
                "cmp dword ptr [46Ch],1800B0h",
                "jb short 0024h",
                "mov dword ptr [46Ch],0",
                "mov byte ptr [470h],1",
                "int 1Ch",
                "mov al,20h",
                "out 20h,al",
                "pop ax",
                "pop ds",
                "iret"
            ]
        );
        // The jb lands on `int 1Ch`.
        assert_eq!(&TIMER[0x24..0x26], &[0xcd, 0x1c]);
    }

    #[test]
    fn test_ivt_points_every_vector_at_a_stub() {
        let area = (0xf_f000 - STUB_SEGMENT_BASE) as u16;
        let t = ivt(area);
        assert_eq!(t.len(), 1024);
        let entry = |v: usize| {
            let off = u16::from_le_bytes([t[v * 4], t[v * 4 + 1]]);
            let seg = u16::from_le_bytes([t[v * 4 + 2], t[v * 4 + 3]]);
            (u64::from(seg) << 4) + u64::from(off)
        };
        let stubs = stub_area();
        let code_at = |linear: u64| stubs[(linear - 0xf_f000) as usize];
        assert_eq!(entry(0x08), 0xf_f000 + u64::from(TIMER_AT));
        for v in [0x09, 0x0c, 0x0f] {
            assert_eq!(entry(v), 0xf_f000 + u64::from(MASTER_EOI_AT));
        }
        for v in [0x70, 0x74, 0x77] {
            assert_eq!(entry(v), 0xf_f000 + u64::from(SLAVE_EOI_AT));
        }
        for v in [0x00, 0x07, 0x10, 0x13, 0x1c, 0x6f, 0x78, 0xff] {
            assert_eq!(code_at(entry(v)), 0xcf, "vector {v:#x} is a plain iret");
        }
    }

    fn plan(occupied: &[vmm_memory::Occupied], real_mode: bool) -> BootPlan {
        let layout = vmm_memory::MemoryLayout::with_phys_bits(1, 40).unwrap();
        let needs = vmm_memory::Needs {
            pc: Some(vmm_memory::FirmwareSizes {
                acpi_tables: 0x400,
                mp_table: 0x100,
            }),
            real_mode_bios: real_mode,
            ..Default::default()
        };
        vmm_memory::boot_plan::plan(&layout, occupied, &needs).unwrap()
    }

    #[test]
    fn test_bda_ebda_and_low_memory_respect() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let p = plan(&[], true);
        write_bios_data(&mem, &p, 3600).unwrap();
        write_real_mode_firmware(&mem, &p).unwrap();
        let r16 = |a: u64| mem.read_obj::<u16>(GuestAddress(a)).unwrap();
        assert_eq!(r16(0x400), 0x3f8);
        assert_eq!(r16(0x40e), 0x9fc0, "EBDA segment");
        assert_eq!(r16(0x410), 0x0206);
        assert_eq!(r16(0x413), 639, "base memory below the EBDA");
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x9_fc00)).unwrap(), 1);
        assert_eq!(mem.read_obj::<u32>(GuestAddress(0x46c)).unwrap(), 65543);
        assert_eq!(r16(0x20), 0xf000 + TIMER_AT);
        assert_eq!(r16(0x22), STUB_SEGMENT);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0xf_f000)).unwrap(), 0xcf);

        // With an image at [0, 0x600), only the stubs (and the EBDA) are
        // written.
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let p = plan(&[vmm_memory::Occupied::new("the image", 0, 0x600)], true);
        write_bios_data(&mem, &p, 0).unwrap();
        write_real_mode_firmware(&mem, &p).unwrap();
        assert_eq!(mem.read_obj::<u32>(GuestAddress(0x20)).unwrap(), 0);
        assert_eq!(mem.read_obj::<u16>(GuestAddress(0x40e)).unwrap(), 0);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0xf_f000)).unwrap(), 0xcf);

        // The stubs moved (the image is at 0xff000): the IVT follows them.
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let r16 = |a: u64| mem.read_obj::<u16>(GuestAddress(a)).unwrap();
        let p = plan(
            &[vmm_memory::Occupied::new("the image", 0xf_f000, 0x1000)],
            true,
        );
        write_real_mode_firmware(&mem, &p).unwrap();
        let stubs = p.get(Structure::BiosStubs).unwrap().start;
        assert_ne!(stubs, 0xf_f000);
        assert_eq!(
            (u64::from(r16(0x20)) + 0xf_0000, r16(0x22)),
            (stubs + u64::from(TIMER_AT), STUB_SEGMENT)
        );
        assert_eq!(mem.read_obj::<u8>(GuestAddress(stubs)).unwrap(), 0xcf);

        // Not a real-mode start: a BDA, no IVT, no stubs.
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let p = plan(&[], false);
        write_bios_data(&mem, &p, 0).unwrap();
        write_real_mode_firmware(&mem, &p).unwrap();
        assert_eq!(mem.read_obj::<u16>(GuestAddress(0x413)).unwrap(), 639);
        assert_eq!(mem.read_obj::<u32>(GuestAddress(0x20)).unwrap(), 0);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0xf_f000)).unwrap(), 0);

        assert!(ticks_at(86_399) < TICKS_PER_DAY);
        assert_eq!(ticks_at(86_400), 0);
    }
}
