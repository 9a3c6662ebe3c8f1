//! Error messages in the command line's terms. Library errors describe the
//! problem in the library's own words ("no kernel image given", "a CPU mode
//! applies to raw images only"); here they gain the flag that fixes them.

use vmm_core::error::RawOption;
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
        VmmError::OverlapsFirmwareTables { .. } => {
            format!("{e}; load it elsewhere or use --platform minimal")
        }
        _ => e.to_string(),
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
        let e = VmmError::SmpNeedsPc { cpus: 2 };
        assert!(message(&e).ends_with("add --platform pc"));
        assert!(!e.to_string().contains("--"), "{e}");
    }
}
