//! The license files say what Cargo.toml's `license` field says.

use integration_tests::workspace_root;

#[test]
fn test_license_files_match_the_manifest() {
    let root = workspace_root();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let license = manifest
        .lines()
        .find_map(|l| l.strip_prefix("license = "))
        .expect("a license field in the workspace manifest")
        .trim_matches('"');
    assert_eq!(license, "Apache-2.0 OR BSD-3-Clause");
    let overview = std::fs::read_to_string(root.join("LICENSE")).unwrap();
    for (file, marker) in [
        (
            "LICENSE-APACHE",
            "Apache License\n                           Version 2.0",
        ),
        (
            "LICENSE-BSD-3-Clause",
            "Redistribution and use in source and binary forms",
        ),
    ] {
        assert!(overview.contains(file), "LICENSE names {file}");
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        assert!(text.contains(marker), "{file} is the license text");
    }
}
