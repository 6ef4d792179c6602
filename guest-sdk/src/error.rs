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
/// A [`FlowError::fatal`] error says that no retry can help (a refused
/// payment, an input that can never be valid): the request ends in `error`
/// at once, and a step retried by [`Ctx::checkpoint_with`](crate::Ctx::checkpoint_with)
/// is not tried again. [`FlowError::with_details`] attaches JSON that the
/// API and the console show beside the message.
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
#[derive(Debug, Clone, PartialEq)]
pub struct FlowError {
    message: String,
    fatal: bool,
    details: Option<serde_json::Value>,
}

impl FlowError {
    /// A retryable error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        FlowError {
            message: message.into(),
            fatal: false,
            details: None,
        }
    }

    /// An error no retry can help: the request ends in `error` at once.
    ///
    /// ```
    /// use baton_guest::FlowError;
    ///
    /// let refused = FlowError::fatal("the card was declined");
    /// assert!(refused.is_fatal());
    /// assert!(!FlowError::new("the bank did not answer").is_fatal());
    /// ```
    pub fn fatal(message: impl Into<String>) -> Self {
        FlowError {
            fatal: true,
            ..FlowError::new(message)
        }
    }

    /// The same error carrying `details` (any JSON), which the API shows as
    /// `error_details` and the console beside the error.
    ///
    /// ```
    /// use baton_guest::FlowError;
    /// use baton_guest::serde_json::json;
    ///
    /// let e = FlowError::fatal("the card was declined").with_details(json!({"code": "insufficient_funds"}));
    /// assert_eq!(e.details(), Some(&json!({"code": "insufficient_funds"})));
    /// ```
    pub fn with_details(mut self, details: impl serde::Serialize) -> Self {
        self.details = serde_json::to_value(details).ok();
        self
    }

    /// The message, as the host will record it.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether no retry can help.
    pub fn is_fatal(&self) -> bool {
        self.fatal
    }

    /// The details, if any.
    pub fn details(&self) -> Option<&serde_json::Value> {
        self.details.as_ref()
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
