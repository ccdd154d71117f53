//! The one place where errors become gRPC statuses.
//!
//! Handlers return [`ApiError`]; core errors ([`crate::error::Error`]) convert into it. The
//! mapping to [`tonic::Status`] codes, messages and `google.rpc` details is exhaustive and
//! lives here only, so a new error kind cannot slip through with an arbitrary code.

use crate::error::Error;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field (`text`, `items[3].text`).
    pub field: String,
    /// What is wrong, naming the limit.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> FieldViolation {
        FieldViolation {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Everything a handler can fail with.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// The request is invalid; INVALID_ARGUMENT with `google.rpc.BadRequest` details.
    BadRequest(Vec<FieldViolation>),
    /// No model is loaded yet; UNAVAILABLE.
    NotLoaded,
    /// The server is at its concurrency limit; RESOURCE_EXHAUSTED.
    Overloaded {
        /// The limit.
        limit: usize,
    },
    /// The request ran past its deadline; DEADLINE_EXCEEDED.
    DeadlineExceeded,
    /// A bundle could not be loaded; FAILED_PRECONDITION saying why.
    BundleRefused(String),
    /// A reload is refused because of where the bundle is; PERMISSION_DENIED.
    PathNotAllowed(String),
    /// Missing or wrong admin token; UNAUTHENTICATED.
    Unauthenticated(&'static str),
    /// The server is shutting down; UNAVAILABLE.
    ShuttingDown,
    /// A bug (a panic, a lost worker); INTERNAL, with no internals in the message.
    Internal(String),
}

impl ApiError {
    /// A single-field bad request.
    pub fn field(field: impl Into<String>, description: impl Into<String>) -> ApiError {
        ApiError::BadRequest(vec![FieldViolation::new(field, description)])
    }

    /// The gRPC code.
    pub fn code(&self) -> Code {
        match self {
            ApiError::BadRequest(_) => Code::InvalidArgument,
            ApiError::NotLoaded | ApiError::ShuttingDown => Code::Unavailable,
            ApiError::Overloaded { .. } => Code::ResourceExhausted,
            ApiError::DeadlineExceeded => Code::DeadlineExceeded,
            ApiError::BundleRefused(_) => Code::FailedPrecondition,
            ApiError::PathNotAllowed(_) => Code::PermissionDenied,
            ApiError::Unauthenticated(_) => Code::Unauthenticated,
            ApiError::Internal(_) => Code::Internal,
        }
    }

    /// The message: lowercase, no trailing punctuation, naming the field and limit.
    pub fn message(&self) -> String {
        match self {
            ApiError::BadRequest(v) => {
                let parts: Vec<String> = v
                    .iter()
                    .map(|f| format!("{}: {}", f.field, f.description))
                    .collect();
                format!("invalid request: {}", parts.join("; "))
            }
            ApiError::NotLoaded => "no model is loaded yet".to_string(),
            ApiError::Overloaded { limit } => {
                format!("server is at its limit of {limit} requests in flight, retry with backoff")
            }
            ApiError::DeadlineExceeded => "deadline exceeded before the request finished".into(),
            ApiError::BundleRefused(why) => {
                format!("bundle refused, previous model still serving: {why}")
            }
            ApiError::PathNotAllowed(why) => why.clone(),
            ApiError::Unauthenticated(why) => (*why).to_string(),
            ApiError::ShuttingDown => "server is shutting down".to_string(),
            ApiError::Internal(what) => format!("internal error: {what}"),
        }
    }

    /// The `google.rpc.Status` form, for per-item errors of batches and streams.
    pub fn to_rpc_status(&self) -> tonic_types::pb::Status {
        let status = tonic::Status::from(self.clone());
        // `details()` holds the encoded google.rpc.Status with code, message and details
        match <tonic_types::pb::Status as prost::Message>::decode(status.details()) {
            Ok(s) if s.code == status.code() as i32 => s,
            _ => tonic_types::pb::Status {
                code: status.code() as i32,
                message: status.message().to_string(),
                details: Vec::new(),
            },
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> tonic::Status {
        let code = e.code();
        let message = e.message();
        match &e {
            ApiError::BadRequest(v) => {
                let mut details = ErrorDetails::new();
                for f in v {
                    details.add_bad_request_violation(f.field.clone(), f.description.clone());
                }
                tonic::Status::with_error_details(code, message, details)
            }
            ApiError::Overloaded { .. } => tonic::Status::with_error_details(
                code,
                message,
                ErrorDetails::with_retry_info(Some(std::time::Duration::from_millis(50))),
            ),
            ApiError::BundleRefused(why) => {
                let mut details = ErrorDetails::new();
                details.add_precondition_failure_violation("BUNDLE", "bundle_path", why.clone());
                tonic::Status::with_error_details(code, message, details)
            }
            _ => {
                // keep `details` a valid google.rpc.Status so clients can always decode it
                tonic::Status::with_error_details(code, message, ErrorDetails::new())
            }
        }
    }
}

impl From<Error> for ApiError {
    /// Core errors as the server sees them. Only `classify` (invalid input) and bundle loading
    /// (everything else) reach here.
    fn from(e: Error) -> ApiError {
        match e {
            Error::InvalidInput(why) => ApiError::field("text", why),
            e @ (Error::Bundle { .. } | Error::Rules { .. } | Error::Io { .. }) => {
                ApiError::BundleRefused(e.to_string())
            }
            e @ (Error::Data { .. } | Error::Training(_)) => ApiError::Internal(e.to_string()),
        }
    }
}

/// Maps a status produced outside the handlers (by tonic itself) to the one clients should
/// see: tonic answers an expired `grpc-timeout` with CANCELLED.
pub fn normalize_transport_status(code: Code, message: &str) -> Code {
    if code == Code::Cancelled && message.contains("Timeout expired") {
        Code::DeadlineExceeded
    } else {
        code
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::RpcStatusExt;

    #[test]
    fn bad_request_carries_field_violations() {
        let s: tonic::Status = ApiError::BadRequest(vec![
            FieldViolation::new("items[2].text", "text is empty"),
            FieldViolation::new("items[5].text", "text is 20000 bytes, the limit is 16384"),
        ])
        .into();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("items[5].text"));
        let br = s.get_details_bad_request().unwrap();
        assert_eq!(br.field_violations.len(), 2);
        assert_eq!(br.field_violations[0].field, "items[2].text");
    }

    #[test]
    fn rpc_status_keeps_details() {
        let s = ApiError::field("text", "text is empty").to_rpc_status();
        assert_eq!(s.code, Code::InvalidArgument as i32);
        let br = s.get_details_bad_request().unwrap();
        assert_eq!(br.field_violations[0].field, "text");
        let s = ApiError::Internal("worker lost".into()).to_rpc_status();
        assert_eq!(s.code, Code::Internal as i32);
        assert!(s.message.contains("worker lost"));
    }

    #[test]
    fn core_errors_map_exhaustively() {
        assert_eq!(
            ApiError::from(Error::InvalidInput("empty".into())).code(),
            Code::InvalidArgument
        );
        assert_eq!(
            ApiError::from(Error::bundle("/b", "model.bin is corrupt")).code(),
            Code::FailedPrecondition
        );
        assert_eq!(
            ApiError::from(Error::Training("x".into())).code(),
            Code::Internal
        );
        assert_eq!(
            normalize_transport_status(Code::Cancelled, "Timeout expired"),
            Code::DeadlineExceeded
        );
    }
}
