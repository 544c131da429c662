//! `ApiError`: every error the server returns, rendered as OpenAI's error JSON
//! (`{"error": {"message", "type", "param", "code"}}`) with the matching HTTP status.
//!
//! `type` follows vLLM (`BadRequestError`, `NotFoundError`, ...) and `code` is the numeric
//! status, as vLLM's `ErrorResponse` has it. Bad input is always a 4xx, never a 500.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// 400: an invalid parameter or malformed body. `param` names the offending field.
    #[error("{message}")]
    BadRequest { message: String, param: Option<String> },
    /// 401: `--api-key` is set and the request's bearer token is missing or wrong.
    #[error("Unauthorized: missing or invalid API key")]
    Unauthorized,
    /// 404: an unknown model name or route.
    #[error("{0}")]
    NotFound(String),
    /// 405: a known route with the wrong method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 413: the request body is over the server's limit.
    #[error("request body is too large (the limit is {limit} bytes)")]
    PayloadTooLarge { limit: usize },
    /// 503: the model is still loading, or the server is shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a failure inside the server or engine (never caused by the request's shape).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 about one named parameter.
    pub fn param(param: &str, message: impl Into<String>) -> Self {
        ApiError::BadRequest { message: message.into(), param: Some(param.to_string()) }
    }

    /// A 400 not tied to one parameter.
    pub fn bad(message: impl Into<String>) -> Self {
        ApiError::BadRequest { message: message.into(), param: None }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error's `type`, named as vLLM names them.
    pub fn error_type(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "BadRequestError",
            ApiError::Unauthorized => "AuthenticationError",
            ApiError::NotFound(_) => "NotFoundError",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowedError",
            ApiError::PayloadTooLarge { .. } => "PayloadTooLargeError",
            ApiError::Unavailable(_) => "ServiceUnavailableError",
            ApiError::Internal(_) => "InternalServerError",
        }
    }

    /// The JSON body (also sent as an SSE `data:` event when a stream fails midway).
    pub fn body(&self) -> ErrorBody {
        let param = match self {
            ApiError::BadRequest { param, .. } => param.clone(),
            _ => None,
        };
        ErrorBody {
            error: ErrorInfo {
                message: self.to_string(),
                r#type: self.error_type().to_string(),
                param,
                code: self.status().as_u16(),
            },
        }
    }
}

/// `{"error": {...}}`.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    pub error: ErrorInfo,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorInfo {
    pub message: String,
    pub r#type: String,
    pub param: Option<String>,
    pub code: u16,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(self, ApiError::Internal(_)) {
            tracing::error!(error = %self, "internal server error");
        }
        (self.status(), axum::Json(self.body())).into_response()
    }
}

impl From<tessera_core::tokenizer::TokenizerError> for ApiError {
    fn from(e: tessera_core::tokenizer::TokenizerError) -> Self {
        // Tokenizer and template errors come from the request's content (a template that
        // raises on these messages, text that cannot be encoded): the client's to fix.
        ApiError::bad(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_statuses() {
        let e = ApiError::param("temperature", "temperature must be non-negative, got -1");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let v = serde_json::to_value(e.body()).unwrap();
        assert_eq!(v["error"]["type"], "BadRequestError");
        assert_eq!(v["error"]["param"], "temperature");
        assert_eq!(v["error"]["code"], 400);
        assert_eq!(v["error"]["message"], "temperature must be non-negative, got -1");
        assert_eq!(ApiError::Unauthorized.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(ApiError::NotFound("x".into()).status(), StatusCode::NOT_FOUND);
        assert_eq!(ApiError::PayloadTooLarge { limit: 10 }.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(ApiError::Unavailable("loading".into()).status(), StatusCode::SERVICE_UNAVAILABLE);
        let v = serde_json::to_value(ApiError::NotFound("no".into()).body()).unwrap();
        assert!(v["error"]["param"].is_null());
    }
}
