//! The identities the state machine reasons about: who owns a request and
//! at which epoch.

use std::fmt;

/// A server's ID, kept in its data folder across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerId(String);

impl ServerId {
    /// Wraps a value read from the database or a caller.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A request's fencing epoch: every change of who may run the request moves
/// it on, and every write of an attempt names the epoch it started at, so a
/// write from an attempt that lost the request changes nothing.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Epoch(pub i64);

impl Epoch {
    /// The epoch of a request created without an attempt.
    pub const CREATED: Self = Self(0);

    /// The next epoch.
    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
