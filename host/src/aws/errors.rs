//! EC2 errors classified by error code into the few kinds the backend branches on.

use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

/// What kind of failure an EC2 call had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `RequestLimitExceeded` and friends: retryable (the SDK already retried).
    Throttled,
    /// The image, snapshot or template does not exist (any more).
    NotFound,
    /// The snapshot is still used by an image.
    InUse,
    /// HTTP 500 without an error code: the endpoint (an emulator) lacks the operation.
    NotImplemented,
    /// DryRun: the caller would have been allowed.
    DryRunAllowed,
    /// The caller is not allowed (IAM).
    Unauthorized,
    /// A 5xx with an error code, a timeout or a connection failure.
    Transient,
    /// `ResourceLimitExceeded`: EC2 holds too many of something in progress (for
    /// CopyImage: 100 copies in progress per destination region); it passes with time.
    LimitExceeded,
    /// Anything else: a bad request, a limit, ...
    Other,
}

/// A failed EC2 call, with the operation name and the code EC2 gave.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.describe())]
pub struct ApiError {
    pub operation: &'static str,
    pub kind: ErrorKind,
    pub code: Option<String>,
    pub message: String,
}

const THROTTLING_CODES: &[&str] =
    &["RequestLimitExceeded", "Throttling", "ThrottlingException", "EC2ThrottledException"];
const NOT_FOUND_CODES: &[&str] = &[
    "InvalidAMIID.NotFound",
    "InvalidAMIID.Unavailable",
    "InvalidSnapshot.NotFound",
    "InvalidLaunchTemplateId.NotFound",
    "InvalidLaunchTemplateName.NotFoundException",
];

impl ApiError {
    /// Classifies an SDK error by its EC2 error code, then by HTTP status.
    pub fn from_sdk<E>(operation: &'static str, err: &SdkError<E, HttpResponse>) -> ApiError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let code = err.code().map(str::to_string);
        let status = err.raw_response().map(|r| r.status().as_u16());
        let message = err.message().map(str::to_string).unwrap_or_else(|| causes(err));
        let kind =
            classify(code.as_deref(), status, matches!(err, SdkError::TimeoutError(_) | SdkError::DispatchFailure(_)));
        ApiError { operation, kind, code, message }
    }

    /// A call whose task did not finish (it panicked): a failed call, never an answer.
    pub fn unfinished(operation: &'static str, err: &tokio::task::JoinError) -> ApiError {
        ApiError { operation, kind: ErrorKind::Other, code: None, message: format!("the task making it ended: {err}") }
    }

    /// Whether the thing acted on is gone.
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    fn describe(&self) -> String {
        match (self.kind, &self.code) {
            (ErrorKind::NotImplemented, _) => format!(
                "{} is not implemented by this EC2 endpoint (HTTP 500 without an error code; the moto emulator lacks it)",
                self.operation
            ),
            (_, Some(code)) => format!("{} failed: {code}: {}", self.operation, self.message),
            (_, None) => format!("{} failed: {}", self.operation, self.message),
        }
    }
}

/// An error and its causes in one line, each by its `Display` (the SDK's own rendering,
/// `DisplayErrorContext`, appends the whole `Debug` form: kilobytes for one missing
/// credential). No credentials at all gets the ways to provide them.
pub fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    let mut text = parts.join(": ");
    if text.contains("no credentials found in chain") || text.contains("credentials provider was not enabled") {
        text = format!(
            "no AWS credentials found (environment keys, --profile or AWS_PROFILE, SSO via `aws sso login`, web identity, container or instance role); {text}"
        );
    }
    text
}

/// The kind of an error from its code, HTTP status and whether it never got an answer.
pub fn classify(code: Option<&str>, status: Option<u16>, no_answer: bool) -> ErrorKind {
    match code {
        Some(c) if THROTTLING_CODES.contains(&c) => ErrorKind::Throttled,
        Some(c) if NOT_FOUND_CODES.contains(&c) => ErrorKind::NotFound,
        Some("InvalidSnapshot.InUse") => ErrorKind::InUse,
        Some("ResourceLimitExceeded") => ErrorKind::LimitExceeded,
        Some("DryRunOperation") => ErrorKind::DryRunAllowed,
        Some("UnauthorizedOperation" | "AuthFailure" | "AccessDenied" | "AccessDeniedException") => {
            ErrorKind::Unauthorized
        }
        Some("InvalidAction" | "UnsupportedOperation" | "NotImplemented") => ErrorKind::NotImplemented,
        None if status == Some(500) => ErrorKind::NotImplemented,
        _ if no_answer || status.is_some_and(|s| s >= 500) => ErrorKind::Transient,
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_ec2_error_code_first() {
        let cases = [
            (Some("RequestLimitExceeded"), Some(503), ErrorKind::Throttled),
            (Some("Throttling"), Some(400), ErrorKind::Throttled),
            (Some("InvalidAMIID.NotFound"), Some(400), ErrorKind::NotFound),
            (Some("InvalidSnapshot.NotFound"), Some(400), ErrorKind::NotFound),
            (Some("InvalidSnapshot.InUse"), Some(400), ErrorKind::InUse),
            (Some("ResourceLimitExceeded"), Some(400), ErrorKind::LimitExceeded),
            (Some("DryRunOperation"), Some(412), ErrorKind::DryRunAllowed),
            (Some("UnauthorizedOperation"), Some(403), ErrorKind::Unauthorized),
            (Some("InternalError"), Some(500), ErrorKind::Transient),
            (None, Some(500), ErrorKind::NotImplemented),
            (None, Some(503), ErrorKind::Transient),
            (Some("InvalidParameterValue"), Some(400), ErrorKind::Other),
        ];
        for (code, status, want) in cases {
            assert_eq!(classify(code, status, false), want, "{code:?} {status:?}");
        }
        assert_eq!(classify(None, None, true), ErrorKind::Transient, "a timeout is transient");
    }

    #[test]
    fn a_missing_operation_says_the_endpoint_lacks_it() {
        let err = ApiError {
            operation: "EnableImageDeprecation",
            kind: ErrorKind::NotImplemented,
            code: None,
            message: "<html>".into(),
        };
        let text = err.to_string();
        assert!(text.contains("EnableImageDeprecation is not implemented"), "{text}");
        assert!(text.contains("moto"), "{text}");
    }
}
