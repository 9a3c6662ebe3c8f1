//! Error messages in the command line's terms. Library errors describe the
//! problem in the library's own words ("no kernel image given", "a CPU mode
//! applies to raw images only"); here they gain the flag that fixes them.

use vmm_core::cpu::BootStateError;
use vmm_core::error::RawOption;
use vmm_core::loader::linux::payload::PayloadError;
use vmm_core::loader::linux::LinuxError;
use vmm_core::loader::LoadError;
use vmm_core::VmmError;

/// The flag that sets a raw-image option.
fn raw_flag(option: RawOption) -> &'static str {
    match option {
        RawOption::Mode => "--mode",
        RawOption::LoadAddr => "--load-addr",
        RawOption::Entry => "--entry",
    }
}

/// The one-line message vmm-bin prints for `e`.
pub fn message(e: &VmmError) -> String {
    match e {
        VmmError::NoKernel => format!("{e} (use --kernel PATH)"),
        VmmError::RawOnlyOption { option, format } => format!(
            "{} applies to raw images only, but the image is {format}",
            raw_flag(*option)
        ),
        VmmError::CpuCount { requested, max } => {
            format!("--cpus {requested} is out of range: this host's KVM allows 1 to {max}")
        }
        VmmError::SmpNeedsPc { .. } => format!("{e}: add --platform pc"),
        VmmError::BootState(BootStateError::RealModeEntry(_)) => format!("{e} (--entry SEG:OFF)"),
        VmmError::BootState(BootStateError::OverlapsBootTables { .. }) => {
            format!("{e} (--load-addr)")
        }
        VmmError::Load { path, source } => match load_hint(source) {
            Some(Hint::Replace(text)) => format!("loading {path}: {text}"),
            Some(Hint::Append(flag)) => format!("{e} ({flag})"),
            None => e.to_string(),
        },
        _ => e.to_string(),
    }
}

enum Hint {
    /// The whole message, in the flags' words.
    Replace(String),
    /// The flag that does what the message suggests.
    Append(&'static str),
}

fn load_hint(e: &LoadError) -> Option<Hint> {
    match e {
        LoadError::FormatMismatch { asked, why } => Some(Hint::Replace(format!(
            "--format {asked} contradicts the image: {why}"
        ))),
        LoadError::Linux(
            LinuxError::NoPayload { .. }
            | LinuxError::ProtocolTooOld { .. }
            | LinuxError::Payload(PayloadError::Unsupported { .. } | PayloadError::NotBuilt { .. }),
        ) => Some(Hint::Append("--bzimage-entry")),
        LoadError::Linux(LinuxError::ModulesUnsupported(_)) => Some(Hint::Append(
            "--module is for Multiboot and PVH; use --initrd",
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_hints_name_the_flag() {
        assert_eq!(
            message(&VmmError::NoKernel),
            "no kernel image given (use --kernel PATH)"
        );
        let e = VmmError::RawOnlyOption {
            option: RawOption::LoadAddr,
            format: vmm_core::loader::Format::Elf,
        };
        assert!(message(&e).starts_with("--load-addr applies to raw images only"));
        assert!(!e.to_string().contains("--"), "{e}");
        let e = VmmError::Load {
            path: "k".into(),
            source: LoadError::FormatMismatch {
                asked: vmm_core::loader::Format::Elf,
                why: "no ELF magic".into(),
            },
        };
        assert_eq!(
            message(&e),
            "loading k: --format elf contradicts the image: no ELF magic"
        );
        assert!(!e.to_string().contains("--"), "{e}");
        let e = VmmError::Load {
            path: "k".into(),
            source: LoadError::Linux(LinuxError::NoPayload {
                offset: 0,
                length: 0,
            }),
        };
        assert!(
            message(&e).ends_with("(--bzimage-entry)"),
            "{}",
            message(&e)
        );
        let e = VmmError::SmpNeedsPc { cpus: 2 };
        assert!(message(&e).ends_with("add --platform pc"));
        assert!(!e.to_string().contains("--"), "{e}");
    }
}
