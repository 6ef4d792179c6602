//! What an operator deploys with: the systemd unit is one systemd accepts,
//! hardened, and `baton doctor` tells what a server needs before it starts.
//! (The example config's keys and defaults are checked by the `config`
//! unit tests.)

mod support;

use std::process::Command;

use support::{Server, Setup};

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

/// `baton doctor` on a fresh machine warns about what `baton up` will
/// create; beside a running server it finds the database migrated and the
/// folders writable, and fails on the port taken and on a storage folder
/// that is not the cluster's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_what_is_missing_and_what_is_wrong() {
    let doctor = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_baton"))
            .arg("doctor")
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        let line = |check: &str| {
            out.lines()
                .find(|l| l[5..].starts_with(&format!("{check} ")))
                .unwrap_or_else(|| panic!("no {check} line in {out}"))
                .to_owned()
        };
        (
            output.status.success(),
            line("database"),
            line("data"),
            line("storage"),
            line("listen"),
        )
    };

    let fresh = tempfile::tempdir().unwrap();
    let data = fresh.path().join("data");
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (ok, database, data_line, storage, listen) = doctor(&[
        "--data",
        &data.display().to_string(),
        "--listen",
        &free.to_string(),
    ]);
    assert!(ok);
    assert!(
        database.starts_with("warn ") && database.contains("does not exist yet"),
        "{database}"
    );
    assert!(data_line.starts_with("warn "), "{data_line}");
    assert!(storage.starts_with("warn "), "{storage}");
    assert!(
        listen.starts_with("ok ") && listen.contains("is free"),
        "{listen}"
    );

    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::sqlite(dir.path());
    let server = Server::start(dir.path(), "solo", &setup).await;
    let taken = server.base.trim_start_matches("http://").to_owned();
    let storage_path = setup.storage.display().to_string();
    let args = [
        "--data",
        &server.data.display().to_string(),
        "--database",
        &setup.database,
        "--storage",
        &storage_path,
        "--listen",
        &taken,
    ];
    let (ok, database, data_line, storage, listen) = doctor(&args);
    assert!(!ok, "the port is taken");
    assert!(
        database.starts_with("ok ") && database.contains("migrations applied"),
        "{database}"
    );
    assert!(
        data_line.starts_with("ok ") && data_line.contains("writable"),
        "{data_line}"
    );
    assert!(
        storage.starts_with("ok ") && storage.contains("writable"),
        "{storage}"
    );
    assert!(
        listen.starts_with("FAIL ") && listen.contains(&taken),
        "{listen}"
    );

    // A storage folder without the cluster's objects: not the shared one.
    let empty = tempfile::tempdir().unwrap();
    let mut elsewhere = args.map(str::to_owned);
    elsewhere[5] = empty.path().display().to_string();
    let elsewhere: Vec<&str> = elsewhere.iter().map(String::as_str).collect();
    let (_, _, _, storage, _) = doctor(&elsewhere);
    assert!(
        storage.starts_with("FAIL ") && storage.contains("mounted"),
        "{storage}"
    );
}
