//! Loading an ELF64 x86-64 vmlinux into guest memory while it streams out of
//! the payload decompressor, so the decompressed kernel (53 MB for a
//! distribution kernel) is never held whole: each piece goes straight from
//! the decompressor's buffer to the segments' physical addresses, and no
//! memory is touched twice.
//!
//! The ELF header and program headers come first in a vmlinux (`e_phoff` is
//! 64), so goblin parses them as soon as the stream holds them (from the
//! bytes seen so far), and they are validated with the
//! checks [`crate::elf::parse_elf`] makes on a whole file plus the Linux
//! ones: ELF64 x86-64, the image and entry in the identity-mapped RAM below
//! 4 GiB, the entry at or above 1 MiB. Whether every segment's file bytes
//! lie inside the file is known only at the end of the stream and checked
//! there; a stream that fails this (or anything else) has written part of
//! the kernel, which is harmless because the load fails and no guest runs.

use std::time::Duration;
use std::time::Instant;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use vmm_memory::layout::HIGH_MEMORY_START;
use vmm_memory::MemoryLayout;

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::header::{
    header32, header64, Header, EI_CLASS, EI_DATA, ELFCLASS32, ELFCLASS64, ELFDATA2LSB, EM_386,
    EM_X86_64, ET_EXEC,
};
use goblin::elf::program_header::{program_header64::SIZEOF_PHDR, ProgramHeader, PT_LOAD};
use goblin::elf::Elf;

use super::payload::first_bytes;
use super::{LinuxError, LoadedKernel};
use crate::elf::{check_segment, placement, ElfError, ElfSegment};

/// `e_phnum` value meaning the count is in section header 0 (PN_XNUM).
const PN_XNUM: u16 = 0xffff;
/// How far into the file the program headers may end. A vmlinux has them
/// right after the 64-byte ELF header; the cap bounds what is buffered when
/// a stream's first pieces are small.
pub const HEADERS_MAX: u64 = 1 << 20;

/// A vmlinux's entry and segments, validated against the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmlinuxHeaders {
    /// Physical entry point (`e_entry`, translated from a segment's virtual
    /// range to its physical one when they differ).
    pub entry: u64,
    /// Loadable segments with their program header index.
    pub segments: Vec<(usize, ElfSegment)>,
    /// Lowest physical address loaded.
    pub start: u64,
    /// One past the highest physical address loaded.
    pub end: u64,
}

/// The ELF header of a vmlinux whose first bytes are `head` (starting with
/// the ELF magic), checked, and where its program headers end; `None` while
/// `head` is shorter than the header.
fn elf_header(head: &[u8]) -> Result<Option<(Header, u64)>, LinuxError> {
    let header_len = match head.get(EI_CLASS) {
        Some(&ELFCLASS32) => header32::SIZEOF_EHDR,
        _ => header64::SIZEOF_EHDR,
    };
    if head.len() < header_len {
        return Ok(None);
    }
    let hdr = Elf::parse_header(head).map_err(|e| ElfError::Parse(e.to_string()))?;
    let data = hdr.e_ident[EI_DATA];
    if data != ELFDATA2LSB {
        return Err(ElfError::Parse(format!(
            "EI_DATA {data} is not little-endian (1): not an x86-64 kernel"
        ))
        .into());
    }
    let (class, machine) = (hdr.e_ident[EI_CLASS], hdr.e_machine);
    if machine != EM_386 && machine != EM_X86_64 {
        return Err(ElfError::Machine(machine).into());
    }
    if class != ELFCLASS64 || machine != EM_X86_64 {
        return Err(LinuxError::NotX86_64 {
            class: if class == ELFCLASS64 { 64 } else { 32 },
            machine,
        });
    }
    if hdr.e_type != ET_EXEC {
        return Err(ElfError::NotExecutable(hdr.e_type).into());
    }
    let (phoff, phentsize, phnum) = (hdr.e_phoff, hdr.e_phentsize, hdr.e_phnum);
    if usize::from(phentsize) != SIZEOF_PHDR {
        return Err(ElfError::Parse(format!(
            "e_phentsize {phentsize} is not the ELF64 program header size {SIZEOF_PHDR}"
        ))
        .into());
    }
    if phnum == PN_XNUM {
        return Err(ElfError::Parse(
            "e_phnum is PN_XNUM (0xffff): extended program header numbering is not supported"
                .to_string(),
        )
        .into());
    }
    let end = phoff
        .checked_add(u64::from(phnum) * SIZEOF_PHDR as u64)
        .filter(|&end| end <= HEADERS_MAX)
        .ok_or_else(|| {
            ElfError::Parse(format!(
                "{phnum} program headers at e_phoff {phoff:#x} end past the first {HEADERS_MAX:#x} bytes, where a kernel's are"
            ))
        })?;
    Ok(Some((hdr, end)))
}

/// Parses and validates the headers of a vmlinux whose first bytes are
/// `head` (starting with the ELF magic), or returns `None` if `head` is too
/// short to hold them. Checks everything [`crate::elf::parse_elf`] and the
/// Linux boot protocol require except whether segments lie inside the file
/// ([`check_in_file`]).
pub fn parse_headers(
    head: &[u8],
    layout: &MemoryLayout,
) -> Result<Option<VmlinuxHeaders>, LinuxError> {
    let Some((hdr, phdrs_end)) = elf_header(head)? else {
        return Ok(None);
    };
    // elf_header capped it at HEADERS_MAX.
    let phdrs_end = phdrs_end as usize;
    if head.len() < phdrs_end {
        return Ok(None);
    }
    let ctx = Ctx::new(Container::Big, Endian::Little);
    let phdrs = ProgramHeader::parse(head, hdr.e_phoff as usize, usize::from(hdr.e_phnum), ctx)
        .map_err(|e| ElfError::Parse(e.to_string()))?;
    let mut segments: Vec<(usize, ElfSegment)> = Vec::new();
    for (index, ph) in phdrs.iter().enumerate() {
        if ph.p_type != PT_LOAD || ph.p_memsz == 0 {
            continue;
        }
        let seg = ElfSegment::of(ph);
        check_segment(layout, index, &seg, &segments)?;
        segments.push((index, seg));
    }
    let (entry, start, end) = placement(hdr.e_entry, &segments, layout)?;
    // The VMM's page tables identity-map only the first 4 GiB, where the
    // protocol wants the kernel mapped at entry.
    let ram_end = layout.low_ram_end();
    if end > ram_end || entry >= ram_end {
        return Err(LinuxError::KernelOutsideRam {
            start,
            end,
            ram_end,
        });
    }
    // boot.rst: the protected-mode kernel runs from 1 MiB up; below is the
    // real-mode area and the VMM's boot structures.
    if entry < HIGH_MEMORY_START.0 {
        return Err(LinuxError::EntryBelowHighMemory(entry));
    }
    Ok(Some(VmlinuxHeaders {
        entry,
        segments,
        start,
        end,
    }))
}

/// Checks that every segment's file bytes lie inside a `file_len`-byte file.
pub fn check_in_file(headers: &VmlinuxHeaders, file_len: u64) -> Result<(), LinuxError> {
    for &(index, s) in &headers.segments {
        if s.offset.checked_add(s.filesz).is_none_or(|e| e > file_len) {
            return Err(ElfError::SegmentOutsideFile {
                index,
                offset: s.offset,
                filesz: s.filesz,
                file_len: usize::try_from(file_len).unwrap_or(usize::MAX),
            }
            .into());
        }
    }
    Ok(())
}

/// Zeroes for BSS.
static ZEROES: [u8; 64 << 10] = [0; 64 << 10];

/// Loads a vmlinux handed over in consecutive pieces ([`Self::feed`]), then
/// finishes the segments ([`Self::finish`]).
pub struct VmlinuxLoader<'a, M> {
    mem: &'a M,
    layout: &'a MemoryLayout,
    /// What the stream is, for errors ("image", "lz4-decompressed bzImage
    /// payload").
    what: String,
    headers: Option<VmlinuxHeaders>,
    /// The stream's first bytes while they are too few for the headers.
    pending: Vec<u8>,
    /// Bytes received so far.
    len: u64,
    /// Time spent writing guest memory, for the load timing log.
    writing: Duration,
    placing: Placing,
}

/// Whether a [`VmlinuxLoader`] writes guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placing {
    /// Copy the segments to their addresses and zero their BSS.
    Copy,
    /// Only validate: the stream is going somewhere else (the kernel
    /// cache) and will be loaded from there.
    ValidateOnly,
}

impl<'a, M: GuestMemoryBackend> VmlinuxLoader<'a, M> {
    /// A loader for a stream described as `what` in errors.
    pub fn new(mem: &'a M, layout: &'a MemoryLayout, what: String, placing: Placing) -> Self {
        VmlinuxLoader {
            placing,
            mem,
            layout,
            what,
            headers: None,
            pending: Vec::new(),
            len: 0,
            writing: Duration::ZERO,
        }
    }

    fn not_elf(&self, first: &[u8]) -> LinuxError {
        LinuxError::NotElf {
            what: self.what.clone(),
            first: first_bytes(first),
        }
    }

    /// Takes the next `piece` of the stream: validates the headers once
    /// they are complete and copies the bytes that belong to segments into
    /// guest memory.
    pub fn feed(&mut self, piece: &[u8]) -> Result<(), LinuxError> {
        let pos = self.len;
        self.len += piece.len() as u64;
        if self.headers.is_some() {
            return self.route(pos, piece);
        }
        if self.pending.is_empty() {
            if let Some(h) = self.try_headers(piece)? {
                self.headers = Some(h);
                return self.route(pos, piece);
            }
        }
        // Rare: the first pieces are too short for the headers. Keep them
        // until they are not (try_headers bounds this by HEADERS_MAX).
        self.pending.extend_from_slice(piece);
        let head = std::mem::take(&mut self.pending);
        match self.try_headers(&head)? {
            Some(h) => {
                self.headers = Some(h);
                self.route(0, &head)
            }
            None => {
                self.pending = head;
                Ok(())
            }
        }
    }

    fn try_headers(&self, head: &[u8]) -> Result<Option<VmlinuxHeaders>, LinuxError> {
        let magic = b"\x7fELF";
        if !magic.starts_with(&head[..head.len().min(magic.len())]) {
            return Err(self.not_elf(head));
        }
        if head.len() < magic.len() {
            return Ok(None);
        }
        parse_headers(head, self.layout)
    }

    /// Copies the parts of `piece` (at `pos` in the file) that are segment
    /// bytes to their physical addresses.
    fn route(&mut self, pos: u64, piece: &[u8]) -> Result<(), LinuxError> {
        if self.placing == Placing::ValidateOnly {
            return Ok(());
        }
        let t = Instant::now();
        let headers = self.headers.as_ref().ok_or_else(|| self.not_elf(piece))?;
        let piece_end = pos + piece.len() as u64;
        for (_, s) in &headers.segments {
            let from = pos.max(s.offset);
            let to = piece_end.min(s.offset.saturating_add(s.filesz));
            if from < to {
                let bytes = &piece[(from - pos) as usize..(to - pos) as usize];
                self.mem
                    .write_slice(bytes, GuestAddress(s.paddr + (from - s.offset)))
                    .map_err(LinuxError::KernelWrite)?;
            }
        }
        self.writing += t.elapsed();
        Ok(())
    }

    /// Ends the stream: checks that it held every segment's bytes, zeroes the
    /// segments' BSS and says where the kernel is.
    pub fn finish(self) -> Result<(LoadedKernel, Duration), LinuxError> {
        let Some(headers) = &self.headers else {
            return Err(missing_headers(&self.pending, self.len, &self.what));
        };
        check_in_file(headers, self.len)?;
        let t = Instant::now();
        if self.placing == Placing::Copy {
            zero_bss(self.mem, headers)?;
        }
        Ok((headers.loaded(), self.writing + t.elapsed()))
    }
}

impl VmlinuxHeaders {
    /// Where this kernel is once loaded.
    pub fn loaded(&self) -> LoadedKernel {
        LoadedKernel {
            segments: self
                .segments
                .iter()
                .map(|(_, s)| (GuestAddress(s.paddr), s.memsz))
                .collect(),
            entry: self.entry,
            start: self.start,
            end: self.end,
            footprint_end: self.end,
        }
    }
}

/// The error for a `len`-byte vmlinux described as `what` whose headers
/// never completed; `head` is what it held.
pub(super) fn missing_headers(head: &[u8], len: u64, what: &str) -> LinuxError {
    let magic = b"\x7fELF";
    if !head.starts_with(magic) {
        return LinuxError::NotElf {
            what: what.to_string(),
            first: first_bytes(head),
        };
    }
    let needed = match elf_header(head) {
        Ok(end) => end.map_or(header64::SIZEOF_EHDR as u64, |(_, end)| end),
        Err(e) => return e,
    };
    ElfError::Parse(format!(
        "the {len}-byte {what} ends inside its ELF headers, which need {needed} bytes"
    ))
    .into()
}

/// Zeroes the part of each segment past its file bytes.
pub(super) fn zero_bss<M: GuestMemoryBackend>(
    mem: &M,
    headers: &VmlinuxHeaders,
) -> Result<(), LinuxError> {
    for (_, s) in &headers.segments {
        let mut at = s.paddr + s.filesz;
        let end = s.paddr + s.memsz;
        while at < end {
            let n = (end - at).min(ZEROES.len() as u64);
            mem.write_slice(&ZEROES[..n as usize], GuestAddress(at))
                .map_err(LinuxError::KernelWrite)?;
            at += n;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::parse_elf;
    use crate::elf::test_image::build;
    use vm_memory::GuestMemoryMmap;

    const MIB: u64 = 1 << 20;

    fn layout() -> MemoryLayout {
        MemoryLayout::with_phys_bits(64, 40).unwrap()
    }

    /// What the whole-file validator says, in the same shape.
    fn via_parse_elf(img: &[u8], layout: &MemoryLayout) -> Result<VmlinuxHeaders, String> {
        let e = parse_elf(img, layout).map_err(|e| e.to_string())?;
        Ok(VmlinuxHeaders {
            entry: e.entry,
            segments: Vec::new(),
            start: e.start,
            end: e.end,
        })
    }

    fn via_stream(img: &[u8], layout: &MemoryLayout) -> Result<VmlinuxHeaders, String> {
        let h = parse_headers(img, layout)
            .map_err(|e| e.to_string())?
            .ok_or("too short")?;
        check_in_file(&h, img.len() as u64).map_err(|e| e.to_string())?;
        Ok(VmlinuxHeaders {
            segments: Vec::new(),
            ..h
        })
    }

    #[test]
    fn test_vmlinux_headers_agree_with_parse_elf() {
        let l = layout();
        let code = [0xf4u8; 64];
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "plain",
                build(true, 0x10_0000, &[(0x10_0000, 0x10_0000, &code, 0x2000)]),
            ),
            (
                "virtual entry",
                build(
                    true,
                    0xffff_ffff_8100_0010,
                    &[
                        (0x100_0000, 0xffff_ffff_8100_0000, &code, 0x1000),
                        (0x200_0000, 0xffff_ffff_8200_0000, &code, 0x40),
                    ],
                ),
            ),
            (
                "outside RAM",
                build(true, 0x10_0000, &[(63 * MIB, 63 * MIB, &code, 2 * MIB)]),
            ),
            (
                "a segment where the page tables would go",
                build(
                    true,
                    0x10_0000,
                    &[
                        (0x9000, 0x9000, &code, 0x40),
                        (0x10_0000, 0x10_0000, &code, 0x40),
                    ],
                ),
            ),
            (
                "overlap",
                build(
                    true,
                    0x10_0000,
                    &[
                        (0x10_0000, 0x10_0000, &code, 0x100),
                        (0x10_0080, 0x10_0080, &code, 0x40),
                    ],
                ),
            ),
            (
                "entry outside RAM",
                build(true, 0x8000_0000, &[(0x10_0000, 0x10_0000, &code, 0x40)]),
            ),
            (
                "filesz > memsz",
                build(true, 0x10_0000, &[(0x10_0000, 0x10_0000, &code, 0x10)]),
            ),
        ];
        for (name, img) in &cases {
            let (a, b) = (via_parse_elf(img, &l), via_stream(img, &l));
            assert_eq!(a.is_ok(), b.is_ok(), "{name}: {a:?} vs {b:?}");
            if let (Ok(a), Ok(b)) = (a, b) {
                assert_eq!(a, b, "{name}");
            }
            // Truncating the segment bytes fails both, as outside the file.
            let cut = &img[..img.len() - 1];
            let (a, b) = (via_parse_elf(cut, &l), via_stream(cut, &l));
            assert!(a.is_err() && b.is_err(), "{name} truncated: {a:?} vs {b:?}");
        }
    }

    #[test]
    fn test_vmlinux_header_errors() {
        let l = layout();
        let good = build(true, 0x10_0000, &[(0x10_0000, 0x10_0000, &[0xf4; 16], 16)]);
        // Too short is "need more", not an error.
        assert!(parse_headers(&good[..10], &l).unwrap().is_none());
        assert!(parse_headers(&good[..100], &l).unwrap().is_none());
        assert!(parse_headers(&good, &l).unwrap().is_some());

        let with = |at: usize, bytes: &[u8]| {
            let mut v = good.clone();
            v[at..at + bytes.len()].copy_from_slice(bytes);
            v
        };
        let err = |img: &[u8]| parse_headers(img, &l).unwrap_err();
        assert!(matches!(
            err(&with(18, &40u16.to_le_bytes())),
            LinuxError::Vmlinux(ElfError::Machine(40))
        ));
        assert!(matches!(
            err(&with(16, &3u16.to_le_bytes())),
            LinuxError::Vmlinux(ElfError::NotExecutable(3))
        ));
        assert!(err(&with(5, &[2])).to_string().contains("little-endian"));
        assert!(err(&with(54, &32u16.to_le_bytes()))
            .to_string()
            .contains("e_phentsize 32"));
        assert!(err(&with(56, &[0xff, 0xff]))
            .to_string()
            .contains("PN_XNUM"));
        assert!(err(&with(32, &(2 * MIB).to_le_bytes()))
            .to_string()
            .contains("e_phoff 0x200000"));
        let e32 = build(false, 0x10_0000, &[(0x10_0000, 0x10_0000, &[0xf4], 1)]);
        assert!(matches!(
            err(&e32),
            LinuxError::NotX86_64 {
                class: 32,
                machine: 3
            }
        ));
        let low = build(true, 0x8_0000, &[(0x8_0000, 0x8_0000, &[0xf4], 1)]);
        assert!(matches!(
            err(&low),
            LinuxError::EntryBelowHighMemory(0x8_0000)
        ));
        let none = build(true, 0x10_0000, &[]);
        assert!(matches!(
            err(&none),
            LinuxError::Vmlinux(ElfError::NoLoadSegments)
        ));
    }

    #[test]
    fn test_vmlinux_loader_any_piece_sizes_and_bss() {
        let l = layout();
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8 + 1).collect();
        let img = build(
            true,
            0x20_0000,
            &[
                (0x20_0000, 0x20_0000, &data[..3000], 0x2000),
                (0x40_0000, 0x40_0000, &data[3000..], 2000),
            ],
        );
        for piece in [1, 7, 64, 100, 4096, img.len()] {
            let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), (64 * MIB) as usize)])
                .unwrap();
            // Stale bytes where the BSS goes must be cleared.
            mem.write_slice(&[0xaa; 0x100], GuestAddress(0x20_0000 + 3000))
                .unwrap();
            let mut loader = VmlinuxLoader::new(&mem, &l, "image".into(), Placing::Copy);
            for p in img.chunks(piece) {
                loader.feed(p).unwrap();
            }
            let (k, _) = loader.finish().unwrap();
            assert_eq!(
                (k.entry, k.start, k.end),
                (0x20_0000, 0x20_0000, 0x40_0000 + 2000)
            );
            let mut back = vec![0u8; 0x2000];
            mem.read_slice(&mut back, GuestAddress(0x20_0000)).unwrap();
            assert_eq!(&back[..3000], &data[..3000], "piece {piece}");
            assert!(back[3000..].iter().all(|&b| b == 0), "piece {piece}");
            let mut back = vec![0u8; 2000];
            mem.read_slice(&mut back, GuestAddress(0x40_0000)).unwrap();
            assert_eq!(&back[..], &data[3000..], "piece {piece}");
        }
    }

    #[test]
    fn test_vmlinux_loader_stream_errors() {
        let l = layout();
        let mem =
            GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), (64 * MIB) as usize)]).unwrap();
        let img = build(
            true,
            0x20_0000,
            &[(0x20_0000, 0x20_0000, &[0xf4; 300], 300)],
        );
        let run = |pieces: &[&[u8]]| {
            let mut loader = VmlinuxLoader::new(&mem, &l, "test stream".into(), Placing::Copy);
            for p in pieces {
                loader.feed(p)?;
            }
            loader.finish().map(|(k, _)| k)
        };
        // Not an ELF: at the first wrong byte, even across pieces.
        let e = run(&[b"M", b"Z junk"]).unwrap_err();
        assert!(
            matches!(&e, LinuxError::NotElf { what, first } if what == "test stream" && first == "4d"),
            "{e}"
        );
        let e = run(&[b"\x7f", b"Xjunk"]).unwrap_err();
        assert!(
            matches!(&e, LinuxError::NotElf { first, .. } if first == "7f 58 6a 75 6e 6b"),
            "{e}"
        );
        assert!(matches!(run(&[b"\x7fE"]), Err(LinuxError::NotElf { .. })));
        // Ends inside the headers.
        let e = run(&[&img[..70]]).unwrap_err();
        assert!(e.to_string().contains("need 120 bytes"), "{e}");
        // Ends inside a segment.
        let e = run(&[&img[..200], &img[200..img.len() - 1]]).unwrap_err();
        assert!(
            matches!(e, LinuxError::Vmlinux(ElfError::SegmentOutsideFile { .. })),
            "{e}"
        );
        assert!(run(&[&img[..3], &img[3..]]).is_ok());
    }
}
