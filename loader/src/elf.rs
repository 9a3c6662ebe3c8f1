//! Static ELF32/ELF64 executables: `PT_LOAD` segments copied to their
//! physical addresses (`p_paddr`), entered at `e_entry` in 32-bit flat
//! protected mode (ELFCLASS32) or long mode (ELFCLASS64).
//!
//! Parsing is goblin's (the crate's only ELF reader); this module checks
//! every value the file controls (offsets, sizes, addresses) against the
//! file and guest RAM before a byte is copied. Multiboot and PVH kernels
//! load through the same code, and the streaming vmlinux loader checks its
//! segments with the same [`check_segment`].

use goblin::elf::header::{EM_386, EM_X86_64, ET_EXEC};
use goblin::elf::program_header::{ProgramHeader, PT_LOAD};
use goblin::elf::Elf;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use vmm_memory::MemoryLayout;

use crate::boot_spec::{BootMode, BootSpec, Entry, Handoff};

/// Errors loading an ELF image.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// goblin could not parse the headers (truncated or corrupt).
    #[error("corrupt or truncated ELF: {0}")]
    Parse(String),
    /// Not an x86 machine type.
    #[error("ELF machine type {0} is not x86 (EM_386 = 3) or x86-64 (EM_X86_64 = 62)")]
    Machine(u16),
    /// Not ET_EXEC.
    #[error("ELF type {0} is not an executable (ET_EXEC = 2); relocatable and position-independent files cannot be loaded")]
    NotExecutable(u16),
    /// No PT_LOAD segment.
    #[error("ELF has no PT_LOAD segment: nothing to load")]
    NoLoadSegments,
    /// A segment's file bytes lie outside the file.
    #[error("ELF segment {index}: file range offset {offset:#x} + {filesz:#x} bytes lies outside the {file_len}-byte file")]
    SegmentOutsideFile {
        /// Program header index.
        index: usize,
        /// p_offset.
        offset: u64,
        /// p_filesz.
        filesz: u64,
        /// The file's size.
        file_len: usize,
    },
    /// p_filesz > p_memsz.
    #[error("ELF segment {index}: p_filesz {filesz:#x} is larger than p_memsz {memsz:#x}")]
    SegmentSizes {
        /// Program header index.
        index: usize,
        /// p_filesz.
        filesz: u64,
        /// p_memsz.
        memsz: u64,
    },
    /// A segment does not fit in guest RAM.
    #[error("ELF segment {index} at physical address {paddr:#x} (+{memsz:#x} bytes) is outside guest RAM")]
    SegmentOutsideRam {
        /// Program header index.
        index: usize,
        /// p_paddr.
        paddr: u64,
        /// p_memsz.
        memsz: u64,
    },
    /// Two segments overlap in physical memory.
    #[error("ELF segments {a} and {b} overlap in physical memory")]
    SegmentsOverlap {
        /// First segment.
        a: usize,
        /// Second segment.
        b: usize,
    },
    /// The entry point is not in RAM.
    #[error("ELF entry point {0:#x} is outside guest RAM")]
    EntryOutsideRam(u64),
    /// Copying to guest memory failed.
    #[error("copying ELF segment to guest memory failed: {0}")]
    GuestMemory(#[from] vm_memory::GuestMemoryError),
}

/// One loadable segment, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfSegment {
    /// Physical load address.
    pub paddr: u64,
    /// Virtual address it was linked at.
    pub vaddr: u64,
    /// Offset of its bytes in the file.
    pub offset: u64,
    /// Bytes taken from the file.
    pub filesz: u64,
    /// Bytes in memory (the rest is zeroed).
    pub memsz: u64,
}

/// A validated ELF executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfImage {
    /// ELFCLASS64.
    pub is_64: bool,
    /// Physical entry point (e_entry, translated from a segment's virtual
    /// range to its physical one when they differ).
    pub entry: u64,
    /// Loadable segments.
    pub segments: Vec<ElfSegment>,
    /// Lowest physical address loaded.
    pub start: u64,
    /// One past the highest physical address loaded.
    pub end: u64,
}

impl ElfSegment {
    /// The segment a program header describes (not yet checked).
    pub fn of(ph: &ProgramHeader) -> Self {
        ElfSegment {
            paddr: ph.p_paddr,
            vaddr: ph.p_vaddr,
            offset: ph.p_offset,
            filesz: ph.p_filesz,
            memsz: ph.p_memsz,
        }
    }
}

impl ElfImage {
    /// Each loadable segment's `(paddr, memsz)`, for [`BootSpec::segments`].
    pub fn extents(&self) -> Vec<(GuestAddress, u64)> {
        self.segments
            .iter()
            .map(|s| (GuestAddress(s.paddr), s.memsz))
            .collect()
    }
}

/// Checks loadable segment `seg` (program header `index`): no more file
/// bytes than memory, all in RAM, clear of the segments already `accepted`.
/// (The boot structures are placed around the segments afterwards.) Shared
/// by every ELF parser of the crate.
pub fn check_segment(
    layout: &MemoryLayout,
    index: usize,
    seg: &ElfSegment,
    accepted: &[(usize, ElfSegment)],
) -> Result<(), ElfError> {
    if seg.filesz > seg.memsz {
        return Err(ElfError::SegmentSizes {
            index,
            filesz: seg.filesz,
            memsz: seg.memsz,
        });
    }
    if !layout.contains_range(GuestAddress(seg.paddr), seg.memsz) {
        return Err(ElfError::SegmentOutsideRam {
            index,
            paddr: seg.paddr,
            memsz: seg.memsz,
        });
    }
    // contains_range held for both, so the ends do not overflow.
    if let Some((other, _)) = accepted
        .iter()
        .find(|(_, o)| seg.paddr < o.paddr + o.memsz && o.paddr < seg.paddr + seg.memsz)
    {
        return Err(ElfError::SegmentsOverlap {
            a: *other,
            b: index,
        });
    }
    Ok(())
}

/// Where checked segments put an image: its physical entry point (from
/// `e_entry`) and the span `[start, end)` of its segments. Fails without
/// segments or with the entry outside RAM.
pub fn placement(
    e_entry: u64,
    segments: &[(usize, ElfSegment)],
    layout: &MemoryLayout,
) -> Result<(u64, u64, u64), ElfError> {
    if segments.is_empty() {
        return Err(ElfError::NoLoadSegments);
    }
    let e = e_entry;
    // An entry linked at a virtual address is entered at its physical twin:
    // the VMM's page tables are an identity map.
    let entry = segments
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.vaddr != s.paddr && e >= s.vaddr && e - s.vaddr < s.memsz)
        .map_or(e, |s| e - s.vaddr + s.paddr);
    if !layout.is_ram(GuestAddress(entry)) {
        return Err(ElfError::EntryOutsideRam(entry));
    }
    let start = segments.iter().map(|(_, s)| s.paddr).min().unwrap_or(0);
    let end = segments
        .iter()
        .map(|(_, s)| s.paddr + s.memsz)
        .max()
        .unwrap_or(0);
    Ok((entry, start, end))
}

/// Parses and validates `image` against `layout`.
pub fn parse_elf(image: &[u8], layout: &MemoryLayout) -> Result<ElfImage, ElfError> {
    let elf = Elf::parse(image).map_err(|e| ElfError::Parse(e.to_string()))?;
    let machine = elf.header.e_machine;
    if machine != EM_386 && machine != EM_X86_64 {
        return Err(ElfError::Machine(machine));
    }
    if elf.header.e_type != ET_EXEC {
        return Err(ElfError::NotExecutable(elf.header.e_type));
    }
    let mut segments: Vec<(usize, ElfSegment)> = Vec::new();
    for (index, ph) in elf.program_headers.iter().enumerate() {
        if ph.p_type != PT_LOAD || ph.p_memsz == 0 {
            continue;
        }
        let seg = ElfSegment::of(ph);
        let in_file = seg
            .offset
            .checked_add(seg.filesz)
            .is_some_and(|end| end <= image.len() as u64);
        if !in_file {
            return Err(ElfError::SegmentOutsideFile {
                index,
                offset: seg.offset,
                filesz: seg.filesz,
                file_len: image.len(),
            });
        }
        check_segment(layout, index, &seg, &segments)?;
        segments.push((index, seg));
    }
    let (entry, start, end) = placement(elf.header.e_entry, &segments, layout)?;
    let segments: Vec<ElfSegment> = segments.into_iter().map(|(_, s)| s).collect();
    Ok(ElfImage {
        is_64: elf.is_64,
        entry,
        segments,
        start,
        end,
    })
}

/// Copies the validated segments of `elf` from `image` into guest memory and
/// zeroes their BSS.
pub fn write_segments<M: GuestMemoryBackend>(
    mem: &M,
    image: &[u8],
    elf: &ElfImage,
) -> Result<(), ElfError> {
    for (index, s) in elf.segments.iter().enumerate() {
        let bytes = usize::try_from(s.offset)
            .ok()
            .zip(usize::try_from(s.offset.saturating_add(s.filesz)).ok())
            .and_then(|(from, to)| image.get(from..to))
            .ok_or(ElfError::SegmentOutsideFile {
                index,
                offset: s.offset,
                filesz: s.filesz,
                file_len: image.len(),
            })?;
        mem.write_slice(bytes, GuestAddress(s.paddr))?;
        let bss = (s.memsz - s.filesz) as usize;
        if bss > 0 {
            mem.write_slice(&vec![0u8; bss], GuestAddress(s.paddr + s.filesz))?;
        }
    }
    Ok(())
}

/// Loads a plain static ELF: 32-bit flat protected mode for ELFCLASS32, long
/// mode for ELFCLASS64, entered at e_entry.
pub fn load_elf<M: GuestMemoryBackend>(
    mem: &M,
    layout: &MemoryLayout,
    image: &[u8],
) -> Result<BootSpec, ElfError> {
    let elf = parse_elf(image, layout)?;
    write_segments(mem, image, &elf)?;
    Ok(BootSpec {
        mode: if elf.is_64 {
            BootMode::Long
        } else {
            BootMode::Protected
        },
        entry: Entry::Linear(GuestAddress(elf.entry)),
        image: (GuestAddress(elf.start), elf.end - elf.start),
        segments: elf.extents(),
        handoff: Handoff::None,
        plan: Default::default(),
    })
}

/// Builds minimal ELF executables for tests (this crate's and others').
pub mod test_image {
    /// One segment: `(paddr, vaddr, bytes, memsz)`.
    pub type Seg<'a> = (u64, u64, &'a [u8], u64);

    /// An ELF64 (`is_64`) or ELF32 x86 executable with `segs` and `entry`,
    /// each segment's bytes right after the previous one's.
    pub fn build(is_64: bool, entry: u64, segs: &[Seg<'_>]) -> Vec<u8> {
        build_with(is_64, entry, segs, |cursor, _| cursor)
    }

    /// Like [`build`], but each segment's bytes start at a file offset
    /// congruent to its `paddr` modulo 4 KiB, as a linker lays out a real
    /// vmlinux, so that its pages can be mapped rather than copied.
    pub fn build_paged(is_64: bool, entry: u64, segs: &[Seg<'_>]) -> Vec<u8> {
        build_with(is_64, entry, segs, |cursor, paddr| {
            let page = cursor & !0xfff;
            let at = page + (paddr & 0xfff) as usize;
            if at >= cursor {
                at
            } else {
                at + 0x1000
            }
        })
    }

    fn build_with(
        is_64: bool,
        entry: u64,
        segs: &[Seg<'_>],
        place: impl Fn(usize, u64) -> usize,
    ) -> Vec<u8> {
        let (ehsize, phsize) = if is_64 { (64usize, 56usize) } else { (52, 32) };
        let data_start = ehsize + phsize * segs.len();
        let mut out = vec![0u8; data_start];
        out[0..4].copy_from_slice(b"\x7fELF");
        out[4] = if is_64 { 2 } else { 1 };
        out[5] = 1; // little-endian
        out[6] = 1; // version
        let put = |o: &mut Vec<u8>, at: usize, v: u64, n: usize| {
            o[at..at + n].copy_from_slice(&v.to_le_bytes()[..n]);
        };
        put(&mut out, 16, 2, 2); // ET_EXEC
        put(&mut out, 18, if is_64 { 62 } else { 3 }, 2);
        put(&mut out, 20, 1, 4);
        let mut offsets = Vec::new();
        let mut cursor = data_start;
        for (paddr, _, bytes, _) in segs {
            cursor = place(cursor, *paddr);
            offsets.push(cursor);
            cursor += bytes.len();
        }
        if is_64 {
            put(&mut out, 24, entry, 8);
            put(&mut out, 32, ehsize as u64, 8); // e_phoff
            put(&mut out, 52, ehsize as u64, 2);
            put(&mut out, 54, phsize as u64, 2);
            put(&mut out, 56, segs.len() as u64, 2);
        } else {
            put(&mut out, 24, entry, 4);
            put(&mut out, 28, ehsize as u64, 4);
            put(&mut out, 40, ehsize as u64, 2);
            put(&mut out, 42, phsize as u64, 2);
            put(&mut out, 44, segs.len() as u64, 2);
        }
        for (i, (paddr, vaddr, bytes, memsz)) in segs.iter().enumerate() {
            let ph = ehsize + i * phsize;
            put(&mut out, ph, 1, 4); // PT_LOAD
            if is_64 {
                put(&mut out, ph + 4, 7, 4);
                put(&mut out, ph + 8, offsets[i] as u64, 8);
                put(&mut out, ph + 16, *vaddr, 8);
                put(&mut out, ph + 24, *paddr, 8);
                put(&mut out, ph + 32, bytes.len() as u64, 8);
                put(&mut out, ph + 40, *memsz, 8);
                put(&mut out, ph + 48, 0x1000, 8);
            } else {
                put(&mut out, ph + 4, offsets[i] as u64, 4);
                put(&mut out, ph + 8, *vaddr, 4);
                put(&mut out, ph + 12, *paddr, 4);
                put(&mut out, ph + 16, bytes.len() as u64, 4);
                put(&mut out, ph + 20, *memsz, 4);
                put(&mut out, ph + 24, 7, 4);
                put(&mut out, ph + 28, 0x1000, 4);
            }
        }
        for ((_, _, bytes, _), at) in segs.iter().zip(offsets) {
            out.resize(at, 0);
            out.extend_from_slice(bytes);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::test_image::build;
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn setup() -> (MemoryLayout, GuestMemoryMmap) {
        let layout = MemoryLayout::with_phys_bits(16, 40).unwrap();
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
        (layout, mem)
    }

    #[test]
    fn test_elf64_loads_segments_and_zeroes_bss() {
        let (layout, mem) = setup();
        mem.write_slice(&[0xaa; 16], GuestAddress(0x10_0004))
            .unwrap();
        let img = build(
            true,
            0x10_0000,
            &[(0x10_0000, 0x10_0000, &[0xf4, 1, 2, 3], 0x20)],
        );
        let spec = load_elf(&mem, &layout, &img).unwrap();
        assert_eq!(spec.mode, BootMode::Long);
        assert_eq!(spec.entry, Entry::Linear(GuestAddress(0x10_0000)));
        let mut b = [0u8; 8];
        mem.read_slice(&mut b, GuestAddress(0x10_0000)).unwrap();
        assert_eq!(b, [0xf4, 1, 2, 3, 0, 0, 0, 0]);
    }

    #[test]
    fn test_elf32_is_protected_mode_and_entry_translated() {
        let (layout, mem) = setup();
        let img = build(false, 0xc010_0000, &[(0x20_0000, 0xc010_0000, &[0xf4], 1)]);
        let spec = load_elf(&mem, &layout, &img).unwrap();
        assert_eq!(spec.mode, BootMode::Protected);
        assert_eq!(spec.entry, Entry::Linear(GuestAddress(0x20_0000)));
    }

    #[test]
    fn test_elf_rejects_bad_segments() {
        let (layout, _) = setup();
        let outside = build(true, 0x10_0000, &[(0x4000_0000, 0x4000_0000, &[0], 1)]);
        assert!(matches!(
            parse_elf(&outside, &layout),
            Err(ElfError::SegmentOutsideRam { .. })
        ));
        // Where the page tables would go by default: the structures make
        // room instead.
        let low = build(true, 0x9000, &[(0x9000, 0x9000, &[0], 1)]);
        assert!(parse_elf(&low, &layout).is_ok());
        let overlap = build(
            true,
            0x10_0000,
            &[
                (0x10_0000, 0x10_0000, &[0; 16], 16),
                (0x10_0008, 0x10_0008, &[0], 1),
            ],
        );
        assert!(matches!(
            parse_elf(&overlap, &layout),
            Err(ElfError::SegmentsOverlap { a: 0, b: 1 })
        ));
        let sizes = build(true, 0x10_0000, &[(0x10_0000, 0x10_0000, &[0; 16], 8)]);
        assert!(matches!(
            parse_elf(&sizes, &layout),
            Err(ElfError::SegmentSizes { .. })
        ));
        let entry = build(true, 0x4000_0000, &[(0x10_0000, 0x10_0000, &[0], 1)]);
        assert!(matches!(
            parse_elf(&entry, &layout),
            Err(ElfError::EntryOutsideRam(0x4000_0000))
        ));
    }

    #[test]
    fn test_elf_rejects_truncated_and_lying_offsets() {
        let (layout, _) = setup();
        let img = build(true, 0x10_0000, &[(0x10_0000, 0x10_0000, &[0; 64], 64)]);
        assert!(matches!(
            parse_elf(&img[..img.len() - 1], &layout),
            Err(ElfError::SegmentOutsideFile { .. })
        ));
        assert!(matches!(
            parse_elf(&img[..40], &layout),
            Err(ElfError::Parse(_))
        ));
        let mut machine = img.clone();
        machine[18] = 40; // ARM
        assert!(matches!(
            parse_elf(&machine, &layout),
            Err(ElfError::Machine(40))
        ));
        let mut dyn_ = img;
        dyn_[16] = 3; // ET_DYN
        assert!(matches!(
            parse_elf(&dyn_, &layout),
            Err(ElfError::NotExecutable(3))
        ));
    }
}
