//! Test guests written for the GNU assembler and linked with GNU ld in the
//! test, the way users build theirs (a tutorial's `ld -m elf_i386 -Ttext
//! 0x100000`, a linker script like kvm-unit-tests'), so the images carry
//! whatever program headers the host's binutils makes.

use std::path::PathBuf;
use std::process::Command;

use crate::target_dir;

/// How to link a guest.
#[derive(Debug, Clone, Copy)]
pub enum Link<'a> {
    /// `ld -m elf_i386 -e start` with these arguments (`-Ttext ADDR`).
    Args(&'a [&'a str]),
    /// `ld -m elf_i386 -T SCRIPT` with this linker script.
    Script(&'a str),
}

fn run(what: &str, cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{what} is needed to build this test's guest ({e}): install binutils")
    });
    assert!(
        out.status.success(),
        "{what} failed on the test guest:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Assembles `source` (32-bit GNU as syntax) and links it as `link` says;
/// returns the ELF's path. Each `name` gets its own directory, so tests
/// building different guests may run at once. Panics (the test fails) with
/// the tools' output if they are missing or refuse the source.
pub fn build_elf32(name: &str, source: &str, link: Link<'_>) -> PathBuf {
    let dir = target_dir().join("gnu-guests").join(name);
    std::fs::create_dir_all(&dir).expect("create the guest's build directory");
    let (src, obj, elf) = (
        dir.join("guest.S"),
        dir.join("guest.o"),
        dir.join("guest.elf"),
    );
    std::fs::write(&src, source).expect("write the guest's source");
    run(
        "as",
        Command::new("as").arg("--32").arg("-o").arg(&obj).arg(&src),
    );
    let mut ld = Command::new("ld");
    ld.args(["-m", "elf_i386", "--no-warn-rwx-segments", "-o"])
        .arg(&elf);
    match link {
        Link::Args(args) => {
            ld.args(["-e", "start"]).args(args);
        }
        Link::Script(script) => {
            let path = dir.join("guest.ld");
            std::fs::write(&path, script).expect("write the linker script");
            ld.arg("-T").arg(path);
        }
    }
    run("ld", ld.arg(&obj));
    elf
}

/// The `PT_LOAD` program headers of an ELF32 image: `(p_paddr, p_memsz)`.
pub fn elf32_loads(image: &[u8]) -> Vec<(u32, u32)> {
    let u16_at = |o: usize| u16::from_le_bytes([image[o], image[o + 1]]);
    let u32_at = |o: usize| crate::le_u32(image, o);
    assert_eq!(&image[..5], b"\x7fELF\x01", "not an ELF32 image");
    let (phoff, phentsize, phnum) = (
        u32_at(28) as usize,
        usize::from(u16_at(42)),
        usize::from(u16_at(44)),
    );
    (0..phnum)
        .map(|i| phoff + i * phentsize)
        .filter(|&ph| u32_at(ph) == 1)
        .map(|ph| (u32_at(ph + 12), u32_at(ph + 20)))
        .collect()
}
