//! Outgoing HTTP, performed by the host.
//!
//! Requests are not journaled, so they are sent from a
//! [`checkpoint`](crate::Ctx::checkpoint) step, through the step's
//! [`http`](crate::Step::http): a replayed attempt does not run the step,
//! so it does not send them again, and a request outside a step does not
//! compile. Pass the step's [`key`](crate::Step::key) as
//! [`idempotency_key`](RequestBuilder::idempotency_key) so that the other
//! side can recognise a step that ran twice (a crash between the request
//! and the commit).
//!
//! ```no_run
//! use baton_guest::prelude::*;
//!
//! #[derive(Deserialize)]
//! struct Charge {
//!     id: String,
//! }
//!
//! fn charge(step: &Step, url: &str, cents: u64) -> Result<Charge, FlowError> {
//!     step.http()
//!         .post(url)
//!         .idempotency_key(step.key())
//!         .json(&baton_guest::serde_json::json!({ "cents": cents }))
//!         .send()?
//!         .error_for_status()?
//!         .json()
//! }
//! ```

use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::FlowError;
use crate::host;

/// The HTTP client of one step: [`Step::http`](crate::Step::http).
///
/// There is no other way to send a request, so one outside a step does not
/// compile:
///
/// ```compile_fail
/// use baton_guest::prelude::*;
///
/// fn flow(ctx: &mut Ctx) -> Result<(), FlowError> {
///     http::get("https://example.com").send()?; // no step: no client
///     ctx.checkpoint("after", |_| Ok(()))
/// }
/// ```
///
/// ```compile_fail
/// use baton_guest::prelude::*;
///
/// fn flow(ctx: &mut Ctx) -> Result<(), FlowError> {
///     let mut kept = None;
///     ctx.checkpoint("keep", |step| {
///         kept = Some(step.http()); // the client cannot outlive its step
///         Ok(())
///     })?;
///     kept.unwrap().get("https://example.com").send()?;
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Http<'step> {
    _step: PhantomData<&'step crate::Step>,
}

impl Http<'_> {
    pub(crate) fn new() -> Self {
        Http { _step: PhantomData }
    }

    /// Starts a `GET` request.
    pub fn get(&self, url: impl Into<String>) -> RequestBuilder {
        self.request("GET", url)
    }

    /// Starts a `POST` request.
    pub fn post(&self, url: impl Into<String>) -> RequestBuilder {
        self.request("POST", url)
    }

    /// Starts a `PUT` request.
    pub fn put(&self, url: impl Into<String>) -> RequestBuilder {
        self.request("PUT", url)
    }

    /// Starts a `DELETE` request.
    pub fn delete(&self, url: impl Into<String>) -> RequestBuilder {
        self.request("DELETE", url)
    }

    /// Starts a request with any method (`"PATCH"`, `"HEAD"`, ...).
    pub fn request(&self, method: impl Into<String>, url: impl Into<String>) -> RequestBuilder {
        RequestBuilder {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            error: None,
        }
    }
}

/// A request being built; [`send`](Self::send) sends it.
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// A failure while building (a body that does not serialize), reported
    /// by `send` so that the builder chain stays free of `?`.
    error: Option<Error>,
}

impl RequestBuilder {
    /// Adds a header (headers may repeat).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the `Idempotency-Key` header, usually to [`Step::key`](crate::Step::key).
    pub fn idempotency_key(self, key: impl Into<String>) -> Self {
        self.header("Idempotency-Key", key)
    }

    /// Sets the body to `value` as JSON and `Content-Type` to
    /// `application/json`.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => {
                self.body = body;
                self.header("Content-Type", "application/json")
            }
            Err(e) => {
                self.error = Some(Error::new(
                    ErrorKind::Body,
                    &self.method,
                    &self.url,
                    format!("the JSON body does not serialize: {e}"),
                ));
                self
            }
        }
    }

    /// Sets the body to these bytes (set `Content-Type` with
    /// [`header`](Self::header)).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sends the request through the host and waits for the answer.
    ///
    /// Returns `Err` only when no answer came (connection refused, invalid
    /// URL, timeout); an answer with any status is `Ok`. Chain
    /// [`Response::error_for_status`] to treat non-2xx answers as errors.
    pub fn send(self) -> Result<Response, Error> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let request = host::Request {
            method: self.method,
            url: self.url,
            headers: self.headers,
            body: self.body,
        };
        match host::http_send(&request) {
            Ok(answer) => Ok(Response {
                method: request.method,
                url: request.url,
                status: answer.status,
                headers: answer.headers,
                body: answer.body,
            }),
            Err(message) => Err(Error::new(
                ErrorKind::Transport,
                &request.method,
                &request.url,
                message,
            )),
        }
    }
}

/// The answer to a request.
#[derive(Debug, Clone)]
pub struct Response {
    method: String,
    url: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of the header `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All headers, in the order received.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body.
    pub fn bytes(&self) -> &[u8] {
        &self.body
    }

    /// The body as text; invalid UTF-8 is replaced by `U+FFFD`.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    ///
    /// Returns a [`FlowError`] (not an [`Error`]) so that it can end a
    /// checkpoint step: `|step| step.http().post(url).send()?.json()`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, FlowError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            FlowError::new(format!(
                "{} {}: the answer is not the expected JSON: {e}",
                self.method, self.url
            ))
        })
    }

    /// Returns the response when its status is 2xx and an [`Error`] naming
    /// the status otherwise.
    pub fn error_for_status(self) -> Result<Self, Error> {
        if self.is_success() {
            Ok(self)
        } else {
            let mut error = Error::new(
                ErrorKind::Status(self.status),
                &self.method,
                &self.url,
                format!("answered with status {}", self.status),
            );
            error.body = self.text();
            Err(error)
        }
    }
}

/// What went wrong with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorKind {
    /// The body could not be built.
    Body,
    /// No answer came.
    Transport,
    /// An answer came with this non-2xx status.
    Status(u16),
}

/// A request that got no answer, or (through
/// [`Response::error_for_status`]) an answer with a non-2xx status.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    method: String,
    url: String,
    message: String,
    body: String,
}

impl Error {
    fn new(kind: ErrorKind, method: &str, url: &str, message: impl Into<String>) -> Self {
        Error {
            kind,
            method: method.to_owned(),
            url: url.to_owned(),
            message: message.into(),
            body: String::new(),
        }
    }

    /// The status of the answer, when the error is a non-2xx answer.
    pub fn status(&self) -> Option<u16> {
        match self.kind {
            ErrorKind::Status(status) => Some(status),
            _ => None,
        }
    }

    /// Whether no answer came at all (the request may or may not have
    /// reached the other side).
    pub fn is_transport(&self) -> bool {
        self.kind == ErrorKind::Transport
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.method, self.url, self.message)?;
        if !self.body.is_empty() {
            // Error bodies can be whole HTML pages; a short prefix is enough
            // to tell what happened.
            let mut end = self.body.len().min(200);
            while !self.body.is_char_boundary(end) {
                end -= 1;
            }
            let ellipsis = if end < self.body.len() { "…" } else { "" };
            write!(f, " ({}{ellipsis})", self.body[..end].trim())?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}
