//! `ApiJson<T>`: the request-body extractor. It replaces axum's `Json`, whose rejections are
//! plain-text 4xx/422s, so that every malformed body gets OpenAI's error JSON:
//!
//! ```text
//! body bytes ──(over the limit: 413)──> serde_json::Value ──(syntax, invalid UTF-8: 400)
//!   ──> must be an object (400) ──> merge "extra_body" ──> T, field path in `param` (400)
//! ```
//!
//! `extra_body`: the openai client merges `extra_body` into the top level itself; a client
//! that sends a literal `"extra_body": {...}` gets the same treatment here (keys already at
//! the top level win).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ApiError;
use super::state::AppState;

/// A JSON request body parsed into `T`, with OpenAI-shaped errors.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config().max_body_bytes;
        let bytes = match Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(rejection) => {
                let resp = rejection.into_response();
                return Err(if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge { limit }
                } else {
                    ApiError::bad(format!("could not read the request body (status {})", resp.status()))
                });
            }
        };
        parse_body(&bytes).map(ApiJson)
    }
}

/// Parses a request body; public for the unit tests.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad("the request body is empty; expected a JSON object"));
    }
    let mut value: Value = serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Io | serde_json::error::Category::Eof => {
            ApiError::bad(format!("the request body is not valid JSON (it ends early): {e}"))
        }
        _ => ApiError::bad(format!("the request body is not valid JSON: {e}")),
    })?;
    let Some(obj) = value.as_object_mut() else {
        return Err(ApiError::bad(format!("the request body must be a JSON object, got {}", json_kind(&value))));
    };
    if let Some(extra) = obj.remove("extra_body") {
        match extra {
            Value::Object(extra) => {
                for (k, v) in extra {
                    obj.entry(k).or_insert(v);
                }
            }
            Value::Null => {}
            other => return Err(ApiError::param("extra_body", format!("extra_body must be an object, got {}", json_kind(&other)))),
        }
    }
    let culprit_of = |v: &Value| culprit::<T>(v);
    let original = (value.as_object().map_or(0, |o| o.len()) <= MAX_KEYS_TO_PROBE).then(|| value.clone());
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." || path.is_empty() {
            // Fields of `#[serde(flatten)]` structs lose their path; find the field by probing.
            match original.as_ref().and_then(culprit_of) {
                Some(k) => ApiError::param(&k, format!("invalid value for `{k}`: {inner}")),
                None => ApiError::bad(format!("invalid request: {inner}")),
            }
        } else {
            let param = path.split(['.', '[']).next().unwrap_or(&path).to_string();
            ApiError::param(&param, format!("invalid value for `{path}`: {inner}"))
        }
    })
}

/// Bodies with more top-level keys than this are not probed for the failing field.
const MAX_KEYS_TO_PROBE: usize = 64;

/// The top-level key whose removal makes `T` parse (or turns the error into its absence).
fn culprit<T: DeserializeOwned>(v: &Value) -> Option<String> {
    let obj = v.as_object()?;
    for k in obj.keys() {
        let mut o = obj.clone();
        o.remove(k);
        match serde_json::from_value::<T>(Value::Object(o)) {
            Ok(_) => return Some(k.clone()),
            Err(e) if e.to_string().contains(&format!("missing field `{k}`")) => return Some(k.clone()),
            Err(_) => {}
        }
    }
    None
}

/// "a string", "an array", ... for messages.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::protocol::{ChatCompletionRequest, CompletionRequest};

    fn err<T: DeserializeOwned + std::fmt::Debug>(body: &[u8]) -> ApiError {
        parse_body::<T>(body).unwrap_err()
    }

    #[test]
    fn malformed_bodies_are_400s() {
        for body in [&b""[..], b"   ", b"{", b"{\"prompt\": }", b"[1,2]", b"\"x\"", b"null"] {
            let e = err::<CompletionRequest>(body);
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{body:?}: {e}");
        }
    }

    #[test]
    fn invalid_utf8_is_400() {
        let e = err::<CompletionRequest>(b"{\"prompt\": \"\xff\xfe\"}");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e = err::<CompletionRequest>(br#"{"prompt": "\ud800"}"#);
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn wrong_types_name_the_param() {
        let e = err::<CompletionRequest>(br#"{"prompt": "hi", "temperature": "hot"}"#);
        assert_eq!(e.body().error.param.as_deref(), Some("temperature"), "{e}");
        let e = err::<ChatCompletionRequest>(br#"{"messages": "hi"}"#);
        assert_eq!(e.body().error.param.as_deref(), Some("messages"), "{e}");
        let e = err::<ChatCompletionRequest>(br#"{"model": "m"}"#);
        assert!(e.to_string().contains("messages"), "{e}");
    }

    #[test]
    fn extra_body_merges_without_overriding() {
        let r: CompletionRequest =
            parse_body(br#"{"prompt": "hi", "top_k": 5, "extra_body": {"top_k": 7, "min_p": 0.1}}"#).unwrap();
        assert_eq!(r.sampling.top_k, Some(5));
        assert_eq!(r.sampling.min_p, Some(0.1));
        let e = err::<CompletionRequest>(br#"{"prompt": "hi", "extra_body": 3}"#);
        assert_eq!(e.body().error.param.as_deref(), Some("extra_body"));
    }
}
