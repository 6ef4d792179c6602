//! The guest SDK's own tests and doctests, and the example flows' tests,
//! native: among them the `compile_fail` examples that prove an HTTP request
//! outside a step, or a step's client kept past its step, does not compile,
//! and `crash_at_every_checkpoint` on every example flow. The SDK and the
//! flows have workspaces of their own, so the workspace's test command runs
//! them here.

use std::path::Path;
use std::process::Command;

fn cargo_test(workspace: &str, args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(workspace);
    let status = Command::new(cargo)
        .args(["test", "--quiet"])
        .args(args)
        .current_dir(&dir)
        .status()
        .unwrap_or_else(|e| panic!("running cargo test in {workspace}: {e}"));
    assert!(
        status.success(),
        "the tests in {workspace} failed (see above)"
    );
}

#[test]
fn the_guest_sdk_passes_its_own_tests() {
    cargo_test("guest-sdk", &["--features", "testing"]);
}

#[test]
fn the_example_flows_pass_their_own_tests() {
    cargo_test("flows", &[]);
}
