//! Names of the things a request involves. Each is its own type, so a
//! server ID cannot be passed where a request ID is meant.

use std::fmt;

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a value read from the database or a caller.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The value as stored.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The owned value.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
    };
}

name_type!(
    /// A request's ID: a UUIDv7 for requests started by a caller, or
    /// `<schedule>-<tick>` for scheduled ones.
    RequestId
);
name_type!(
    /// A server's ID, kept in its data folder across restarts.
    ServerId
);
name_type!(
    /// A flow's name, as the component declares it.
    FlowName
);
name_type!(
    /// A flow version: the content hash of its component.
    VersionHash
);

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
