//! The HTTP status of each typed error. The API and the console map errors
//! here, once, and answer the error's own sentence.

use axum::http::StatusCode;
use baton_core::store::StoreError;

use crate::http::accounts::AccountError;
use crate::requests::{SendError, SubmitError};
use crate::vcs::deploy::DeployError;
use crate::vcs::repository::SyncError;

/// The HTTP status that answers a typed error. The API and the console
/// both map errors here, once.
pub trait HttpStatus: std::fmt::Display {
    /// The status to answer with.
    fn http_status(&self) -> StatusCode;
}

impl HttpStatus for StoreError {
    fn http_status(&self) -> StatusCode {
        match self {
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Refused(_)
            | StoreError::Fenced { .. }
            | StoreError::KeyTaken { .. }
            | StoreError::VersionReplaced { .. } => StatusCode::CONFLICT,
            StoreError::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl HttpStatus for SubmitError {
    fn http_status(&self) -> StatusCode {
        match self {
            SubmitError::InvalidInput(_) => StatusCode::BAD_REQUEST,
            SubmitError::UnknownFlow { .. } => StatusCode::NOT_FOUND,
            SubmitError::InvalidKey => StatusCode::BAD_REQUEST,
            SubmitError::Store(e) => e.http_status(),
        }
    }
}

impl HttpStatus for SendError {
    fn http_status(&self) -> StatusCode {
        match self {
            SendError::InvalidName | SendError::InvalidPayload(_) | SendError::InvalidKey => {
                StatusCode::BAD_REQUEST
            }
            SendError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            SendError::Store(e) => e.http_status(),
        }
    }
}

impl HttpStatus for DeployError {
    fn http_status(&self) -> StatusCode {
        match self {
            DeployError::Invalid(_) => StatusCode::BAD_REQUEST,
            DeployError::Diverges(_) => StatusCode::CONFLICT,
            DeployError::Store(e) => e.http_status(),
        }
    }
}

impl HttpStatus for AccountError {
    fn http_status(&self) -> StatusCode {
        match self {
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Wait(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Store(e) => e.http_status(),
        }
    }
}

impl HttpStatus for SyncError {
    fn http_status(&self) -> StatusCode {
        match self {
            SyncError::NotConfigured => StatusCode::NOT_FOUND,
            SyncError::Refused(_) => StatusCode::CONFLICT,
            SyncError::Git(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}
