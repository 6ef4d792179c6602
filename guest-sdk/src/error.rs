//! The error a flow or a step returns.

use std::fmt;

/// Why a flow attempt or one of its steps failed.
///
/// A `FlowError` returned from a flow ends the attempt: the host retries the
/// request according to the flow's properties (`max_retries`,
/// `retry_interval`, ...) and records the message when no retry is left.
/// Inside [`Ctx::checkpoint`](crate::Ctx::checkpoint) an `Err` leaves the step
/// uncommitted, so the next attempt runs it again.
///
/// It converts from the errors a flow meets most (`&str`, `String`,
/// [`serde_json::Error`], [`http::Error`](crate::http::Error)), so `?` works
/// on them directly.
///
/// ```
/// use baton_guest::FlowError;
///
/// fn check(quantity: u32) -> Result<u32, FlowError> {
///     if quantity == 0 {
///         return Err(FlowError::new("quantity must be positive"));
///     }
///     Ok(quantity)
/// }
/// assert_eq!(check(0).unwrap_err().to_string(), "quantity must be positive");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowError {
    message: String,
}

impl FlowError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        FlowError {
            message: message.into(),
        }
    }

    /// The message, as the host will record it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FlowError {}

impl From<&str> for FlowError {
    fn from(message: &str) -> Self {
        FlowError::new(message)
    }
}

impl From<String> for FlowError {
    fn from(message: String) -> Self {
        FlowError::new(message)
    }
}

impl From<serde_json::Error> for FlowError {
    fn from(error: serde_json::Error) -> Self {
        FlowError::new(format!("JSON error: {error}"))
    }
}

impl From<crate::http::Error> for FlowError {
    fn from(error: crate::http::Error) -> Self {
        FlowError::new(error.to_string())
    }
}
