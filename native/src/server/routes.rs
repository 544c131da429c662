//! The small endpoints: `/health`, `/version`, `/v1/models`, `/tokenize`, `/detokenize`,
//! `/metrics`, `/openapi.json`, plus the API-key check and the JSON 404/405 fallbacks.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use super::chat::{normalize_messages, render, RenderOpts};
use super::error::ApiError;
use super::generate::blocking;
use super::json::ApiJson;
use super::protocol::{DetokenizeRequest, DetokenizeResponse, ModelCard, ModelList, TokenizeRequest, TokenizeResponse};
use super::state::AppState;

/// 200 once the model is loaded and the engine runs, 503 before.
pub async fn health(State(state): State<AppState>) -> Response {
    if state.is_ready() {
        StatusCode::OK.into_response()
    } else {
        ApiError::Unavailable("the model is still loading".into()).into_response()
    }
}

pub async fn version() -> Json<Value> {
    Json(serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }))
}

pub async fn models(State(state): State<AppState>) -> Result<Json<ModelList>, ApiError> {
    let m = state.model()?;
    let data = m
        .names
        .iter()
        .map(|n| ModelCard {
            id: n.clone(),
            object: "model",
            created: m.created,
            owned_by: "tessera",
            root: m.root.clone(),
            parent: None,
            max_model_len: m.max_model_len,
        })
        .collect();
    Ok(Json(ModelList { object: "list", data }))
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics().render()).into_response()
}

pub async fn openapi() -> Json<Value> {
    Json(super::openapi::document())
}

pub async fn tokenize(State(state): State<AppState>, ApiJson(req): ApiJson<TokenizeRequest>) -> Result<Json<TokenizeResponse>, ApiError> {
    let (m, _) = state.model_for(req.model.as_deref())?;
    blocking(move || {
        let tok = m.tokenizer()?;
        let ids = match (&req.prompt, &req.messages) {
            (Some(p), None) => tok.encode(p, req.add_special_tokens.unwrap_or(true))?,
            (None, Some(msgs)) => {
                let messages = normalize_messages(msgs)?;
                let opts = RenderOpts {
                    template: None,
                    add_generation_prompt: req.add_generation_prompt.unwrap_or(true),
                    continue_final_message: req.continue_final_message.unwrap_or(false),
                    tools: None,
                    documents: None,
                    kwargs: req.chat_template_kwargs.clone().unwrap_or_default(),
                };
                let text = render(&m, &messages, &opts)?;
                tok.encode(&text, req.add_special_tokens.unwrap_or(false))?
            }
            _ => return Err(ApiError::bad("give exactly one of `prompt` or `messages`")),
        };
        let token_strs = req.return_token_strs.unwrap_or(false).then(|| ids.iter().map(|&i| tok.id_to_token(i).unwrap_or_default()).collect());
        Ok(Json(TokenizeResponse { count: ids.len(), max_model_len: m.max_model_len, tokens: ids, token_strs }))
    })
    .await
}

pub async fn detokenize(State(state): State<AppState>, ApiJson(req): ApiJson<DetokenizeRequest>) -> Result<Json<DetokenizeResponse>, ApiError> {
    let (m, _) = state.model_for(req.model.as_deref())?;
    let tok = m.tokenizer()?;
    let mut ids = Vec::with_capacity(req.tokens.len());
    for &t in &req.tokens {
        if t < 0 || t as u64 >= m.vocab_size as u64 {
            return Err(ApiError::param("tokens", format!("token id {t} is out of range for the model's vocabulary of {} tokens", m.vocab_size)));
        }
        ids.push(t as u32);
    }
    Ok(Json(DetokenizeResponse { prompt: tok.decode(&ids, false)? }))
}

/// `--api-key`: `/v1/*` needs `Authorization: Bearer <key>` (vLLM guards only `/v1`).
pub async fn require_api_key(State(state): State<AppState>, headers: HeaderMap, req: Request, next: Next) -> Response {
    if let Some(key) = &state.config().api_key {
        if req.uri().path().starts_with("/v1") && req.method() != axum::http::Method::OPTIONS {
            let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
            if !given.is_some_and(|g| constant_time_eq(g.trim().as_bytes(), key.as_bytes())) {
                return ApiError::Unauthorized.into_response();
            }
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!("no route for {} {}", req.method(), req.uri().path()))
}

pub async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::MethodNotAllowed(format!("method {} is not allowed for {}", req.method(), req.uri().path()))
}
