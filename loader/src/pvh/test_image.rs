//! Builds minimal PVH kernels for tests (this crate's and others'): an ELF32
//! or ELF64 x86 executable with `PT_LOAD` segments and one `PT_NOTE` segment
//! holding ELF notes, such as the Xen `XEN_ELFNOTE_PHYS32_ENTRY` note.

use crate::detect::XEN_ELFNOTE_PHYS32_ENTRY;
pub use crate::elf::test_image::Seg;

/// One ELF note: `(name, n_type, descriptor)`. The name is written
/// NUL-terminated, name and descriptor padded to 4 bytes as Xen's and
/// Linux's `ELFNOTE` macros do.
pub type Note<'a> = (&'a str, u32, &'a [u8]);

/// The bytes of one note as it appears in a note segment.
pub fn note_bytes(name: &str, n_type: u32, desc: &[u8]) -> Vec<u8> {
    let pad = |v: &mut Vec<u8>| v.resize(v.len().div_ceil(4) * 4, 0);
    let mut out = Vec::new();
    out.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&n_type.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad(&mut out);
    out.extend_from_slice(desc);
    pad(&mut out);
    out
}

/// A `XEN_ELFNOTE_PHYS32_ENTRY` note's descriptor for `entry`, 4 bytes
/// (`.long`, as current Linux writes it).
pub fn phys32_entry_desc(entry: u32) -> [u8; 4] {
    entry.to_le_bytes()
}

/// An ELF64 (`is_64`) or ELF32 x86 executable with `segs` (as
/// [`crate::elf::test_image::build`] takes them), `entry` as `e_entry` and
/// `notes` in one `PT_NOTE` segment (none if `notes` is empty).
pub fn build(is_64: bool, entry: u64, segs: &[Seg<'_>], notes: &[Note<'_>]) -> Vec<u8> {
    let (ehsize, phsize) = if is_64 { (64usize, 56usize) } else { (52, 32) };
    let note_data: Vec<u8> = notes
        .iter()
        .flat_map(|(name, t, desc)| note_bytes(name, *t, desc))
        .collect();
    let phnum = segs.len() + usize::from(!notes.is_empty());
    let notes_at = ehsize + phsize * phnum;
    let mut out = vec![0u8; notes_at];
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
    if is_64 {
        put(&mut out, 24, entry, 8);
        put(&mut out, 32, ehsize as u64, 8);
        put(&mut out, 52, ehsize as u64, 2);
        put(&mut out, 54, phsize as u64, 2);
        put(&mut out, 56, phnum as u64, 2);
    } else {
        put(&mut out, 24, entry, 4);
        put(&mut out, 28, ehsize as u64, 4);
        put(&mut out, 40, ehsize as u64, 2);
        put(&mut out, 42, phsize as u64, 2);
        put(&mut out, 44, phnum as u64, 2);
    }
    // (p_type, p_flags, offset, vaddr, paddr, filesz, memsz, align)
    let mut phdrs = Vec::new();
    let mut cursor = notes_at + note_data.len();
    for (paddr, vaddr, bytes, memsz) in segs {
        let len = bytes.len() as u64;
        phdrs.push((
            1u64,
            7u64,
            cursor as u64,
            *vaddr,
            *paddr,
            len,
            *memsz,
            0x1000,
        ));
        cursor += bytes.len();
    }
    if !notes.is_empty() {
        let len = note_data.len() as u64;
        phdrs.push((4, 4, notes_at as u64, 0, 0, len, len, 4));
    }
    for (i, (ty, flags, off, vaddr, paddr, filesz, memsz, align)) in phdrs.into_iter().enumerate() {
        let ph = ehsize + i * phsize;
        put(&mut out, ph, ty, 4);
        if is_64 {
            put(&mut out, ph + 4, flags, 4);
            put(&mut out, ph + 8, off, 8);
            put(&mut out, ph + 16, vaddr, 8);
            put(&mut out, ph + 24, paddr, 8);
            put(&mut out, ph + 32, filesz, 8);
            put(&mut out, ph + 40, memsz, 8);
            put(&mut out, ph + 48, align, 8);
        } else {
            put(&mut out, ph + 4, off, 4);
            put(&mut out, ph + 8, vaddr, 4);
            put(&mut out, ph + 12, paddr, 4);
            put(&mut out, ph + 16, filesz, 4);
            put(&mut out, ph + 20, memsz, 4);
            put(&mut out, ph + 24, flags, 4);
            put(&mut out, ph + 28, align, 4);
        }
    }
    out.extend_from_slice(&note_data);
    for (_, _, bytes, _) in segs {
        out.extend_from_slice(bytes);
    }
    out
}

/// A PVH kernel: `segs` loaded, `phys32_entry` in a `XEN_ELFNOTE_PHYS32_ENTRY`
/// note, and `e_entry` equal to it.
pub fn build_pvh(is_64: bool, phys32_entry: u32, segs: &[Seg<'_>]) -> Vec<u8> {
    let desc = phys32_entry_desc(phys32_entry);
    build(
        is_64,
        u64::from(phys32_entry),
        segs,
        &[("Xen", XEN_ELFNOTE_PHYS32_ENTRY, &desc)],
    )
}
