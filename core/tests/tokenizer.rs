//! Tokenizer and tokenizer_config.json parity with transformers, on fixtures recorded by
//! tests/fixtures/make_templates.py (SmolLM2-135M-Instruct's tokenizer converted from its GGUF).

use std::path::PathBuf;

use serde_json::Value;
use tessera_core::tokenizer::{
    effective_chat_template, ChatTemplateSpec, Tokenizer, TokenizerConfig, TokenizerError,
};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn smollm2_dir() -> PathBuf {
    fixtures().join("tokenizers/smollm2")
}

fn load_cases() -> Value {
    let text =
        std::fs::read_to_string(smollm2_dir().join("cases.json")).expect("tokenizer cases.json");
    serde_json::from_str(&text).expect("cases.json is JSON")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

#[test]
fn encode_and_decode_match_transformers() {
    let tok =
        Tokenizer::from_file(smollm2_dir().join("tokenizer.json")).expect("load tokenizer.json");
    let meta = load_cases();
    let cases = meta["cases"].as_array().expect("cases");
    assert!(
        cases.len() >= 15,
        "expected the full fixture, got {} cases",
        cases.len()
    );
    let mut encoded = 0;
    for (i, case) in cases.iter().enumerate() {
        let case_ids = ids(&case["ids"]);
        if let Some(text) = case["text"].as_str() {
            assert_eq!(
                tok.encode(text, false).unwrap(),
                case_ids,
                "case {i} encode(add_special_tokens=False) of {text:?}"
            );
            assert_eq!(
                tok.encode(text, true).unwrap(),
                ids(&case["ids_with_special_tokens"]),
                "case {i} encode(add_special_tokens=True) of {text:?}"
            );
            encoded += 1;
        }
        assert_eq!(
            tok.decode(&case_ids, false).unwrap(),
            case["decoded"].as_str().unwrap(),
            "case {i} decode(skip_special_tokens=False) of {case_ids:?}"
        );
        assert_eq!(
            tok.decode(&case_ids, true).unwrap(),
            case["decoded_skip_special"].as_str().unwrap(),
            "case {i} decode(skip_special_tokens=True) of {case_ids:?}"
        );
    }
    assert!(encoded >= 15);
}

#[test]
fn vocabulary_matches_transformers() {
    let bytes = std::fs::read(smollm2_dir().join("tokenizer.json")).unwrap();
    let tok = Tokenizer::from_bytes(&bytes).unwrap();
    let meta = load_cases();
    assert_eq!(
        tok.vocab_size() as u64,
        meta["vocab_size"].as_u64().unwrap()
    );
    for (token, id) in meta["token_ids"].as_object().unwrap() {
        let id = id.as_u64().unwrap() as u32;
        assert_eq!(tok.token_to_id(token), Some(id), "token_to_id({token:?})");
        assert_eq!(
            tok.id_to_token(id).as_deref(),
            Some(token.as_str()),
            "id_to_token({id})"
        );
    }
    assert_eq!(tok.token_to_id("<|no such token|>"), None);
    let bos = meta["bos_token"].as_str().unwrap();
    assert_eq!(tok.token_to_id(bos), Some(1));
}

#[test]
fn malformed_tokenizer_json_is_an_error() {
    for bad in [
        &b"{not json"[..],
        b"{\"version\": \"1.0\"}",
        b"",
        b"[1, 2, 3]",
    ] {
        match Tokenizer::from_bytes(bad) {
            Err(TokenizerError::TokenizerJson { message }) => {
                let shown = TokenizerError::TokenizerJson {
                    message: message.clone(),
                }
                .to_string();
                assert!(shown.starts_with("tokenizer.json: "), "{shown}");
                assert!(!message.is_empty());
            }
            other => panic!(
                "expected TokenizerJson error for {:?}, got {other:?}",
                String::from_utf8_lossy(bad)
            ),
        }
    }
    match Tokenizer::from_file(smollm2_dir().join("missing.json")) {
        Err(TokenizerError::Io { path, .. }) => assert!(path.ends_with("missing.json")),
        other => panic!("expected Io error, got {other:?}"),
    }
}

#[test]
fn clean_up_tokenization_spaces_follows_transformers() {
    // transformers 5.24 ignores clean_up_tokenization_spaces=True for BPE tokenizers:
    // decode(ids, clean_up_tokenization_spaces=True) returned the text unchanged for SmolLM2
    let mut tok = Tokenizer::from_file(smollm2_dir().join("tokenizer.json")).unwrap();
    let text = "Hi , there . It is n't , is it ? I 'm sure !";
    let ids = tok.encode(text, false).unwrap();
    tok.set_clean_up_tokenization_spaces(true);
    assert_eq!(tok.decode(&ids, false).unwrap(), text);

    // a WordPiece tokenizer gets the cleanup
    let wordpiece = r###"{
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": false},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100,
                  "vocab": {"[UNK]": 0, "hi": 1, ",": 2, "there": 3, ".": 4, "is": 5, "n't": 6}}
    }"###;
    let mut tok = Tokenizer::from_bytes(wordpiece.as_bytes()).unwrap();
    let ids = [1, 2, 3, 4, 5, 6];
    assert_eq!(tok.decode(&ids, false).unwrap(), "hi , there . is n't");
    tok.set_clean_up_tokenization_spaces(true);
    assert_eq!(tok.decode(&ids, false).unwrap(), "hi, there. isn't");
}

#[test]
fn tokenizer_config_of_the_fixture() {
    let cfg = TokenizerConfig::from_file(smollm2_dir().join("tokenizer_config.json")).unwrap();
    assert_eq!(cfg.bos_token.as_deref(), Some("<|im_start|>"));
    assert_eq!(cfg.eos_token.as_deref(), Some("<|im_end|>"));
    assert_eq!(cfg.pad_token.as_deref(), Some("<|im_end|>"));
    assert_eq!(cfg.unk_token.as_deref(), Some("<|endoftext|>"));
    assert_eq!(cfg.model_max_length, None, "int(1e30) means unbounded");
    assert_eq!(
        cfg.chat_template, None,
        "transformers 5 saves the template as chat_template.jinja"
    );
    let map = cfg.special_tokens_map();
    assert_eq!(
        map.keys().collect::<Vec<_>>(),
        ["bos_token", "eos_token", "unk_token", "pad_token"]
    );
}

#[test]
fn tokenizer_config_field_forms() {
    let cfg = TokenizerConfig::from_json_str(
        r#"{
            "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
            "eos_token": "</s>",
            "pad_token": null,
            "add_bos_token": true,
            "add_eos_token": false,
            "clean_up_tokenization_spaces": true,
            "model_max_length": 8192,
            "chat_template": [
                {"name": "default", "template": "D"},
                {"name": "tool_use", "template": "T"}
            ]
        }"#,
    )
    .unwrap();
    assert_eq!(cfg.bos_token.as_deref(), Some("<s>"));
    assert_eq!(cfg.eos_token.as_deref(), Some("</s>"));
    assert_eq!(cfg.pad_token, None);
    assert_eq!(
        (cfg.add_bos_token, cfg.add_eos_token),
        (Some(true), Some(false))
    );
    assert_eq!(cfg.clean_up_tokenization_spaces, Some(true));
    assert_eq!(cfg.model_max_length, Some(8192));
    let spec = cfg.chat_template.unwrap();
    assert_eq!(spec.select(false).unwrap(), "D");
    assert_eq!(spec.select(true).unwrap(), "T");
    assert_eq!(spec.named("tool_use"), Some("T"));

    let only_rag = ChatTemplateSpec::Named(vec![("rag".into(), "R".into())]);
    match only_rag.select(false) {
        Err(e @ TokenizerError::NoSuchChatTemplate { .. }) => {
            assert!(e.to_string().contains("[\"rag\"]"), "{e}")
        }
        other => panic!("expected NoSuchChatTemplate, got {other:?}"),
    }
}

#[test]
fn bad_tokenizer_config_fields_name_file_and_field() {
    let cases = [
        (
            r#"{"eos_token": 3}"#,
            "tokenizer_config.json: field `eos_token` must be a string or {\"content\": ...}, got 3",
        ),
        (
            r#"{"bos_token": {"id": 1}}"#,
            "tokenizer_config.json: field `bos_token` must be a string or {\"content\": ...}, got {\"id\":1}",
        ),
        (r#"{"add_bos_token": "yes"}"#, "tokenizer_config.json: field `add_bos_token` must be a boolean, got \"yes\""),
        (
            r#"{"chat_template": 7}"#,
            "tokenizer_config.json: field `chat_template` must be a string or a list of {\"name\": ..., \"template\": ...}, got 7",
        ),
        (
            r#"{"chat_template": [{"name": "default"}]}"#,
            "tokenizer_config.json: field `chat_template[0]` must be {\"name\": string, \"template\": string}, got {\"name\":\"default\"}",
        ),
        (
            r#"{"model_max_length": -5}"#,
            "tokenizer_config.json: field `model_max_length` must be a non-negative integer, got -5",
        ),
    ];
    for (json, want) in cases {
        let err = TokenizerConfig::from_json_str(json).expect_err(json);
        assert!(
            matches!(err, TokenizerError::InvalidField { .. }),
            "{err:?}"
        );
        assert_eq!(err.to_string(), want);
    }
    let err = TokenizerConfig::from_json_str("{oops").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("tokenizer_config.json: invalid JSON"),
        "{err}"
    );
    let err = TokenizerConfig::from_json_str("[]").unwrap_err();
    assert!(err.to_string().contains("must be a JSON object"), "{err}");
}

#[test]
fn standalone_chat_template_file_wins() {
    let jinja = std::fs::read(smollm2_dir().join("chat_template.jinja")).unwrap();
    let gguf_template = std::fs::read(fixtures().join("templates/smollm2.jinja")).unwrap();
    assert_eq!(
        jinja, gguf_template,
        "the converted tokenizer carries the GGUF's template"
    );

    let config = br#"{"chat_template": "from config"}"#;
    let named = br#"{"chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}]}"#;
    let jinja_text = String::from_utf8(jinja.clone()).unwrap();
    assert_eq!(
        effective_chat_template(Some(config), Some(&jinja), false).unwrap(),
        Some(jinja_text.clone())
    );
    assert_eq!(
        effective_chat_template(Some(named), Some(&jinja), true).unwrap(),
        Some(jinja_text.clone())
    );
    assert_eq!(
        effective_chat_template(None, Some(&jinja), false).unwrap(),
        Some(jinja_text)
    );
    assert_eq!(
        effective_chat_template(Some(config), None, false)
            .unwrap()
            .as_deref(),
        Some("from config")
    );
    assert_eq!(
        effective_chat_template(Some(named), None, false)
            .unwrap()
            .as_deref(),
        Some("D")
    );
    assert_eq!(
        effective_chat_template(Some(named), None, true)
            .unwrap()
            .as_deref(),
        Some("T")
    );
    assert_eq!(
        effective_chat_template(Some(b"{}"), None, false).unwrap(),
        None
    );
    assert_eq!(effective_chat_template(None, None, false).unwrap(), None);
    let err = effective_chat_template(None, Some(&[0xff, 0xfe]), false).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("chat_template.jinja: not UTF-8"),
        "{err}"
    );
    let err = effective_chat_template(Some(br#"{"eos_token": []}"#), None, false).unwrap_err();
    assert!(err.to_string().contains("field `eos_token`"), "{err}");
}
