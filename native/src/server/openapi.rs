//! The OpenAPI 3.0 document served at `/openapi.json` (hand-written: it describes the wire
//! format of `protocol/`, including vLLM's extras, and the error shape of every failure).

use serde_json::{json, Value};

fn error_responses() -> Value {
    let err = json!({"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}});
    json!({
        "400": {"description": "Invalid request", "content": err},
        "401": {"description": "Missing or wrong API key", "content": err},
        "404": {"description": "Unknown model", "content": err},
        "413": {"description": "Request body too large", "content": err},
        "503": {"description": "The model is loading", "content": err},
    })
}

fn post(summary: &str, schema: &str, response: &str, streams: bool) -> Value {
    let mut ok = json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{response}")}}});
    if streams {
        ok["text/event-stream"] = json!({"schema": {"type": "string"}});
    }
    let mut responses = error_responses();
    responses["200"] = json!({"description": "OK", "content": ok});
    json!({"post": {
        "summary": summary,
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}},
        "responses": responses,
    }})
}

fn get(summary: &str, content: Value) -> Value {
    json!({"get": {"summary": summary, "responses": {"200": {"description": "OK", "content": content}, "503": {"description": "Loading"}}}})
}

/// Sampling and output fields shared by both generation endpoints.
fn sampling_properties() -> Value {
    let int = |desc: &str| json!({"type": "integer", "nullable": true, "description": desc});
    let boolean = |desc: &str| json!({"type": "boolean", "nullable": true, "description": desc});
    json!({
        "model": {"type": "string", "nullable": true, "description": "A served model name"},
        "n": {"type": "integer", "minimum": 1, "maximum": 128, "nullable": true},
        "best_of": int("Must equal n when given"),
        "max_tokens": {"type": "integer", "minimum": 1, "nullable": true},
        "temperature": {"type": "number", "minimum": 0, "nullable": true},
        "top_p": {"type": "number", "exclusiveMinimum": true, "minimum": 0, "maximum": 1, "nullable": true},
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2, "nullable": true},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2, "nullable": true},
        "logit_bias": {"type": "object", "nullable": true, "additionalProperties": {"type": "number"}},
        "seed": int("Seed of the request's sampler"),
        "stop": {"nullable": true, "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "stream": boolean("Stream server-sent events"),
        "stream_options": {"type": "object", "nullable": true, "properties": {
            "include_usage": {"type": "boolean", "nullable": true},
            "continuous_usage_stats": {"type": "boolean", "nullable": true}}},
        "user": {"type": "string", "nullable": true},
        "echo": boolean("Prepend the prompt to the output"),
        "top_k": {"type": "integer", "minimum": -1, "nullable": true},
        "min_p": {"type": "number", "minimum": 0, "maximum": 1, "nullable": true},
        "repetition_penalty": {"type": "number", "exclusiveMinimum": true, "minimum": 0, "nullable": true},
        "min_tokens": {"type": "integer", "minimum": 0, "nullable": true},
        "ignore_eos": boolean("Keep generating after end-of-sequence tokens"),
        "skip_special_tokens": boolean("Drop special tokens from the text"),
        "spaces_between_special_tokens": boolean(""),
        "stop_token_ids": {"type": "array", "nullable": true, "items": {"type": "integer", "minimum": 0}},
        "include_stop_str_in_output": boolean(""),
        "allowed_token_ids": {"type": "array", "nullable": true, "items": {"type": "integer", "minimum": 0}},
        "bad_words": {"type": "array", "nullable": true, "items": {"type": "string"}},
        "priority": int("Lower runs first under the priority policy"),
        "prompt_logprobs": {"type": "integer", "minimum": 0, "maximum": 20, "nullable": true},
        "add_special_tokens": boolean("Add the tokenizer's special tokens (BOS) to the prompt"),
        "return_token_ids": boolean("Also return token ids"),
        "request_id": {"type": "string", "nullable": true},
        "extra_body": {"type": "object", "nullable": true, "description": "Merged into the request"},
    })
}

fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

/// The whole document.
pub fn document() -> Value {
    let usage = json!({"type": "object", "properties": {
        "prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"}}});
    let completion_props = with(
        sampling_properties(),
        json!({
            "prompt": {"oneOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}},
                {"type": "array", "items": {"type": "integer", "minimum": 0}},
                {"type": "array", "items": {"type": "array", "items": {"type": "integer", "minimum": 0}}}]},
            "suffix": {"type": "string", "nullable": true, "description": "Not supported (must be empty)"},
            "logprobs": {"type": "integer", "minimum": 0, "maximum": 20, "nullable": true},
        }),
    );
    let message = json!({"type": "object", "required": ["role"], "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool", "function"]},
        "content": {"nullable": true, "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "object", "required": ["type", "text"], "properties": {
                "type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}}}}]},
        "name": {"type": "string"},
        "tool_call_id": {"type": "string"},
        "tool_calls": {"type": "array", "items": {"type": "object"}}}});
    let chat_props = with(
        sampling_properties(),
        json!({
            "messages": {"type": "array", "minItems": 1, "items": message},
            "max_completion_tokens": {"type": "integer", "minimum": 1, "nullable": true},
            "logprobs": {"type": "boolean", "nullable": true},
            "top_logprobs": {"type": "integer", "minimum": 0, "maximum": 20, "nullable": true},
            "tools": {"type": "array", "nullable": true, "items": {"type": "object"}},
            "tool_choice": {"nullable": true, "description": "\"none\" or unset"},
            "parallel_tool_calls": {"type": "boolean", "nullable": true},
            "response_format": {"type": "object", "nullable": true, "properties": {"type": {"type": "string", "enum": ["text"]}}},
            "documents": {"type": "array", "nullable": true, "items": {"type": "object"}},
            "add_generation_prompt": {"type": "boolean", "nullable": true},
            "continue_final_message": {"type": "boolean", "nullable": true},
            "chat_template": {"type": "string", "nullable": true},
            "chat_template_kwargs": {"type": "object", "nullable": true},
        }),
    );
    let choice_common = json!({"index": {"type": "integer"}, "finish_reason": {"type": "string", "nullable": true},
        "stop_reason": {"nullable": true, "oneOf": [{"type": "string"}, {"type": "integer"}]}});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "tessera", "version": env!("CARGO_PKG_VERSION"),
                 "description": "OpenAI-compatible API of tessera (vLLM-compatible extras)"},
        "paths": {
            "/v1/completions": post("Create a completion", "CompletionRequest", "CompletionResponse", true),
            "/v1/chat/completions": post("Create a chat completion", "ChatCompletionRequest", "ChatCompletionResponse", true),
            "/tokenize": post("Tokenize a prompt or a conversation", "TokenizeRequest", "TokenizeResponse", false),
            "/detokenize": post("Detokenize token ids", "DetokenizeRequest", "DetokenizeResponse", false),
            "/v1/models": get("List the served models", json!({"application/json": {"schema": {"$ref": "#/components/schemas/ModelList"}}})),
            "/health": get("200 once the model is loaded", json!({})),
            "/version": get("Server version", json!({"application/json": {"schema": {"type": "object", "properties": {"version": {"type": "string"}}}}})),
            "/metrics": get("Prometheus metrics (vLLM's names)", json!({"text/plain": {"schema": {"type": "string"}}})),
        },
        "components": {"schemas": {
            "ErrorResponse": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
                "required": ["message", "type", "code"], "properties": {
                    "message": {"type": "string"}, "type": {"type": "string"},
                    "param": {"type": "string", "nullable": true}, "code": {"type": "integer"}}}}},
            "CompletionRequest": {"type": "object", "required": ["prompt"], "properties": completion_props},
            "ChatCompletionRequest": {"type": "object", "required": ["messages"], "properties": chat_props},
            "Usage": usage,
            "CompletionResponse": {"type": "object", "properties": {
                "id": {"type": "string"}, "object": {"type": "string"}, "created": {"type": "integer"}, "model": {"type": "string"},
                "choices": {"type": "array", "items": {"type": "object", "properties": with(choice_common.clone(), json!({
                    "text": {"type": "string"}, "logprobs": {"type": "object", "nullable": true}}))}},
                "usage": {"$ref": "#/components/schemas/Usage"}}},
            "ChatCompletionResponse": {"type": "object", "properties": {
                "id": {"type": "string"}, "object": {"type": "string"}, "created": {"type": "integer"}, "model": {"type": "string"},
                "choices": {"type": "array", "items": {"type": "object", "properties": with(choice_common, json!({
                    "message": {"type": "object", "properties": {"role": {"type": "string"}, "content": {"type": "string", "nullable": true}}},
                    "logprobs": {"type": "object", "nullable": true}}))}},
                "usage": {"$ref": "#/components/schemas/Usage"}}},
            "TokenizeRequest": {"type": "object", "properties": {
                "model": {"type": "string", "nullable": true},
                "prompt": {"type": "string"},
                "messages": {"type": "array", "minItems": 1, "items": message},
                "add_special_tokens": {"type": "boolean", "nullable": true},
                "add_generation_prompt": {"type": "boolean", "nullable": true},
                "return_token_strs": {"type": "boolean", "nullable": true}}},
            "TokenizeResponse": {"type": "object", "properties": {
                "count": {"type": "integer"}, "max_model_len": {"type": "integer"},
                "tokens": {"type": "array", "items": {"type": "integer"}},
                "token_strs": {"type": "array", "items": {"type": "string"}}}},
            "DetokenizeRequest": {"type": "object", "required": ["tokens"], "properties": {
                "model": {"type": "string", "nullable": true},
                "tokens": {"type": "array", "items": {"type": "integer", "minimum": 0}}}},
            "DetokenizeResponse": {"type": "object", "properties": {"prompt": {"type": "string"}}},
            "ModelList": {"type": "object", "properties": {"object": {"type": "string"}, "data": {"type": "array", "items": {
                "type": "object", "properties": {"id": {"type": "string"}, "object": {"type": "string"}, "created": {"type": "integer"},
                "owned_by": {"type": "string"}, "root": {"type": "string"}, "max_model_len": {"type": "integer"}}}}}},
        }},
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn document_lists_every_endpoint() {
        let d = super::document();
        for p in ["/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize", "/v1/models", "/health", "/version", "/metrics"] {
            assert!(d["paths"].get(p).is_some(), "{p}");
        }
        assert!(d["components"]["schemas"]["CompletionRequest"]["properties"].get("top_k").is_some());
        assert!(d["components"]["schemas"]["ChatCompletionRequest"]["properties"].get("messages").is_some());
    }
}
