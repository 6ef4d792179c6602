//! Named fault points, for tests that must stop a server at an exact place.
//!
//! `BATON_FAULT=<name>` makes the process stop itself (SIGSTOP) the first
//! time it passes the point of that name, as a long pause or a partition
//! would stop it there; the test resumes it with SIGCONT. Only debug builds
//! (the ones tests run) read the variable: in a release build every point
//! is an empty function, so no setting can trigger one in production.

/// Where a server is paused inside a claim's transaction, after its UPDATE
/// took the request's row lock and before it commits.
pub const PAUSE_IN_CLAIM: &str = "pause-in-claim";

/// Passes the fault point `name`.
#[cfg(debug_assertions)]
pub fn point(name: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static PASSED: AtomicBool = AtomicBool::new(false);
    if std::env::var("BATON_FAULT").is_ok_and(|fault| fault == name)
        && !PASSED.swap(true, Ordering::SeqCst)
    {
        eprintln!("baton: fault point {name}: stopping this process");
        let _ = std::process::Command::new("kill")
            .args(["-STOP", &std::process::id().to_string()])
            .status();
    }
}

/// Passes the fault point `name` (nothing happens in a release build).
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn point(_name: &str) {}
