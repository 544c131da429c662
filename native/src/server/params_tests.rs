//! Unit tests of request validation (`params.rs`): every rule, its status and its message.

use super::*;
use crate::server::json::parse_body;
use crate::server::protocol::CompletionRequest;
use axum::http::StatusCode;

const LIMITS: Limits = Limits { max_model_len: 128, vocab_size: 512 };

fn check(body: &str) -> Result<SamplingConfig, ApiError> {
    let r: CompletionRequest = parse_body(body.as_bytes())?;
    validate(&r.sampling, r.sampling.max_tokens, Some(16), r.logprobs, &GenDefaults::default(), LIMITS)
}

fn bad(body: &str, param: &str, needle: &str) {
    let e = check(body).expect_err(body);
    assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(e.body().error.param.as_deref(), Some(param), "{body}: {e}");
    assert!(e.to_string().contains(needle), "{body}: {e:?} lacks {needle:?}");
}

#[test]
fn defaults_are_vllms() {
    let c = check(r#"{"prompt": "x"}"#).unwrap();
    assert_eq!((c.n, c.temperature, c.top_p, c.top_k, c.min_p), (1, 1.0, 1.0, 0, 0.0));
    assert_eq!(c.repetition_penalty, 1.0);
    assert_eq!(c.max_tokens, Some(16));
    assert!(c.skip_special_tokens && !c.ignore_eos && c.logprobs.is_none());
}

#[test]
fn ranges_with_numbers_in_messages() {
    bad(r#"{"prompt":"x","temperature":-0.5}"#, "temperature", "-0.5");
    bad(r#"{"prompt":"x","top_p":0}"#, "top_p", "(0, 1], got 0");
    bad(r#"{"prompt":"x","top_p":1.5}"#, "top_p", "1.5");
    bad(r#"{"prompt":"x","n":0}"#, "n", "at least 1, got 0");
    bad(r#"{"prompt":"x","n":100000}"#, "n", "100000");
    bad(r#"{"prompt":"x","logprobs":21}"#, "logprobs", "21");
    bad(r#"{"prompt":"x","logprobs":-1}"#, "logprobs", "-1");
    bad(r#"{"prompt":"x","max_tokens":-3}"#, "max_tokens", "-3");
    bad(r#"{"prompt":"x","max_tokens":0}"#, "max_tokens", "got 0");
    bad(r#"{"prompt":"x","top_k":-2}"#, "top_k", "-2");
    bad(r#"{"prompt":"x","min_p":1.5}"#, "min_p", "1.5");
    bad(r#"{"prompt":"x","presence_penalty":3}"#, "presence_penalty", "3");
    bad(r#"{"prompt":"x","frequency_penalty":-2.5}"#, "frequency_penalty", "-2.5");
    bad(r#"{"prompt":"x","repetition_penalty":0}"#, "repetition_penalty", "got 0");
    bad(r#"{"prompt":"x","min_tokens":20,"max_tokens":10}"#, "min_tokens", "max_tokens=10, got 20");
    bad(r#"{"prompt":"x","stop":["a",""]}"#, "stop", "empty");
    bad(r#"{"prompt":"x","logit_bias":{"abc":1}}"#, "logit_bias", "abc");
    bad(r#"{"prompt":"x","logit_bias":{"9999":1}}"#, "logit_bias", "9999");
    bad(r#"{"prompt":"x","stop_token_ids":[512]}"#, "stop_token_ids", "512");
    bad(r#"{"prompt":"x","best_of":3}"#, "best_of", "3");
    bad(r#"{"prompt":"x","stream_options":{"include_usage":true}}"#, "stream_options", "stream=True");
}

#[test]
fn accepted_values() {
    let c = check(r#"{"prompt":"x","top_k":-1,"temperature":0,"seed":-1,"stop":"\n","logit_bias":{"5":500}}"#).unwrap();
    assert_eq!(c.top_k, 0);
    assert_eq!(c.temperature, 0.0);
    assert_eq!(c.seed, Some(u64::MAX));
    assert_eq!(c.stop, vec!["\n".to_string()]);
    assert_eq!(c.logit_bias, vec![(5, 100.0)]);
    let c = check(r#"{"prompt":"x","stream":true,"stream_options":{"include_usage":true},"logprobs":0}"#).unwrap();
    assert_eq!(c.logprobs, Some(0));
}

#[test]
fn generation_config_defaults_apply_when_unset() {
    let r: CompletionRequest = parse_body(br#"{"prompt":"x","top_p":0.5}"#).unwrap();
    let d = GenDefaults { temperature: Some(0.6), top_p: Some(0.9), top_k: Some(40), ..Default::default() };
    let c = validate(&r.sampling, None, None, None, &d, LIMITS).unwrap();
    assert_eq!((c.temperature, c.top_p, c.top_k), (0.6, 0.5, 40));
    assert_eq!(c.max_tokens, None);
}

#[test]
fn max_model_len_is_enforced_with_numbers() {
    assert_eq!(resolve_max_tokens(100, None, 128).unwrap(), 28);
    assert_eq!(resolve_max_tokens(100, Some(28), 128).unwrap(), 28);
    let e = resolve_max_tokens(100, Some(29), 128).unwrap_err();
    let m = e.to_string();
    assert!(m.contains("128") && m.contains("129") && m.contains("100") && m.contains("29"), "{m}");
    let e = resolve_max_tokens(128, None, 128).unwrap_err();
    assert!(e.to_string().contains("128 input tokens"), "{e}");
    assert_eq!(e.status(), StatusCode::BAD_REQUEST);
}
