//! The guest SDK's own tests and doctests, native: among them the
//! `compile_fail` examples that prove an HTTP request outside a step, or a
//! step's client kept past its step, does not compile. The SDK has a
//! workspace of its own, so the workspace's test command runs it here.

use std::process::Command;

#[test]
fn the_guest_sdk_passes_its_own_tests() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest-sdk");
    let status = Command::new(cargo)
        .args(["test", "--quiet"])
        .current_dir(&sdk)
        .status()
        .expect("running cargo test in guest-sdk");
    assert!(status.success(), "the guest SDK's tests failed (see above)");
}
