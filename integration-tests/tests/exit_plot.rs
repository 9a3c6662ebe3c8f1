//! `--exit-plot PATH.svg`: a picture of the run that parses as XML and has
//! one series (a `class="exits-<kind>"`) per exit kind seen.

use std::collections::BTreeSet;

use integration_tests::{require_kvm, run_vmm, target_dir, workspace_root};
use vmm_bin::exit_status;

fn guest(name: &str) -> String {
    workspace_root()
        .join("integration-tests/guests")
        .join(name)
        .display()
        .to_string()
}

fn plot_path(name: &str) -> std::path::PathBuf {
    let dir = target_dir().join("test-exit-plots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

/// The series classes of an SVG document, and all its text.
fn series_and_text(svg: &str) -> (BTreeSet<String>, String) {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not XML: {e}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let mut classes = BTreeSet::new();
    let mut text = String::new();
    for node in doc.descendants() {
        if let Some(c) = node.attribute("class") {
            classes.extend(
                c.split_whitespace()
                    .filter(|c| c.starts_with("exits-"))
                    .map(str::to_string),
            );
        }
        if node.is_text() {
            text.push_str(node.text().unwrap_or(""));
            text.push('\n');
        }
    }
    (classes, text)
}

#[test]
fn test_exit_plot_of_three_exits() {
    require_kvm();
    let path = plot_path("hello.svg");
    let out = run_vmm(&[
        "--kernel",
        &guest("hello.bin"),
        "--reg",
        "rax=2",
        "--reg",
        "rbx=2",
        "--exit-plot",
        path.to_str().unwrap(),
        "--timeout",
        "20",
    ]);
    assert_eq!(out.status, exit_status::HALTED, "stderr: {}", out.stderr);
    let svg = std::fs::read_to_string(&path).expect("the plot was written");
    let (classes, text) = series_and_text(&svg);
    let want: BTreeSet<String> = ["exits-io_out", "exits-hlt"].map(String::from).into();
    assert_eq!(classes, want, "one series per exit kind seen");
    assert!(text.contains("3 exits in"), "{text}");
    assert!(text.contains("io_out (KVM_EXIT_IO out): 2"), "{text}");
    assert!(text.contains("hlt (KVM_EXIT_HLT): 1"), "{text}");
    for phase in [
        "image loaded",
        "KVM VM created",
        "guest entered",
        "run ended",
    ] {
        assert!(text.contains(phase), "phase {phase} missing: {text}");
    }
}

#[test]
fn test_exit_plot_of_a_long_run() {
    require_kvm();
    let path = plot_path("counter.svg");
    let out = run_vmm(&[
        "--kernel",
        &guest("counter.bin"),
        "--load-addr",
        "0x10000",
        "--entry",
        "0x1000:0",
        "--max-exits",
        "30000",
        "--exit-plot",
        path.to_str().unwrap(),
        "--timeout",
        "50",
    ]);
    assert_eq!(
        out.status,
        exit_status::LIMIT_REACHED,
        "stderr: {}",
        out.stderr
    );
    let svg = std::fs::read_to_string(&path).expect("the plot was written");
    let (classes, text) = series_and_text(&svg);
    let want: BTreeSet<String> = ["exits-io_out".to_string()].into();
    assert_eq!(classes, want);
    assert!(text.contains("30,000 exits in"), "{text}");
    // Bounded: at most 120 bars plus the legend's swatch.
    let bars = svg.matches("class=\"exits-io_out\"").count();
    assert!((2..=121).contains(&bars), "{bars} bars");
}

#[test]
fn test_exit_plot_into_a_missing_directory_is_bad_input_before_the_guest_runs() {
    require_kvm();
    let out = run_vmm(&[
        "--kernel",
        &guest("hello.bin"),
        "--reg",
        "rax=2",
        "--reg",
        "rbx=2",
        "--exit-plot",
        "/nonexistent-dir-for-vmm-tests/plot.svg",
        "--timeout",
        "20",
    ]);
    assert_eq!(out.status, exit_status::BAD_INPUT, "stderr: {}", out.stderr);
    assert!(
        out.stderr
            .contains("/nonexistent-dir-for-vmm-tests/plot.svg"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "", "the guest must not have run");
}
