//! What an operator deploys with: the systemd unit is one systemd accepts,
//! hardened. (The example config's keys and defaults are checked by the
//! `config` unit tests.)

use std::process::Command;

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let unit = std::fs::read_to_string(root.join("deploy/baton.service")).unwrap();
    // The unit as installed, pointing at this build's binary.
    let dir = tempfile::tempdir().unwrap();
    let installed = dir.path().join("baton.service");
    std::fs::write(
        &installed,
        unit.replace("/usr/local/bin/baton", env!("CARGO_BIN_EXE_baton")),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&installed)
        .output()
        .expect("systemd-analyze (Debian's systemd package) checks the unit");
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "{complaints}"
    );
    // The threshold is in tenths: fail above an exposure of 5.0 of 10.
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=50"])
        .arg(&installed)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    assert!(
        security.status.success() && report.contains("Overall exposure level"),
        "exposure above 5.0:\n{report}"
    );
}
