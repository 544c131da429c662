//! Chat template parity with transformers' `apply_chat_template(..., tokenize=False)`, on cases
//! recorded by tests/fixtures/make_templates.py (SmolLM2, Llama 3.2, SmolLM3 and a probe template).
//! The recorder pinned `datetime.now()` to each case's "now"; the renderer gets the same clock.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value};
use tessera_core::tokenizer::{ChatTemplate, ChatTemplateInputs, TokenizerError};

fn templates_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/templates")
}

fn fixed_clock(iso: &str) -> tessera_core::tokenizer::Clock {
    let now = chrono::NaiveDateTime::parse_from_str(iso, "%Y-%m-%dT%H:%M:%S").expect("case `now`");
    Arc::new(move || now)
}

fn template(name: &str, now: &str) -> ChatTemplate {
    let source = std::fs::read_to_string(templates_dir().join(format!("{name}.jinja")))
        .expect("template file");
    ChatTemplate::with_clock(&source, fixed_clock(now)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn no_extra() -> Map<String, Value> {
    Map::new()
}

#[test]
fn every_recorded_case_matches_transformers() {
    let text = std::fs::read_to_string(templates_dir().join("cases.json")).expect("cases.json");
    let cases: Vec<Value> = serde_json::from_str(&text).expect("cases.json is JSON");
    let mut per_template: BTreeMap<String, usize> = BTreeMap::new();
    let mut errors = 0;
    for (i, case) in cases.iter().enumerate() {
        let name = case["template"].as_str().unwrap();
        *per_template.entry(name.to_string()).or_default() += 1;
        let tmpl = template(name, case["now"].as_str().unwrap());
        let extra = case["kwargs"].as_object().cloned().unwrap_or_default();
        let inputs = ChatTemplateInputs {
            messages: &case["messages"],
            add_generation_prompt: case["add_generation_prompt"].as_bool().unwrap(),
            bos_token: case["bos_token"].as_str(),
            eos_token: case["eos_token"].as_str(),
            tools: Some(&case["tools"]).filter(|v| !v.is_null()),
            documents: Some(&case["documents"]).filter(|v| !v.is_null()),
            extra: &extra,
        };
        let got = tmpl.render(&inputs);
        match (
            case["expected"].as_str(),
            case["expected_error_contains"].as_str(),
        ) {
            (Some(expected), None) => {
                let got = got.unwrap_or_else(|e| panic!("case {i} ({name}) failed: {e}"));
                if got != expected {
                    panic!("case {i} ({name}) differs from transformers\n--- expected\n{expected}\n--- got\n{got}\n---");
                }
            }
            (None, Some(needle)) => {
                errors += 1;
                match got {
                    Err(TokenizerError::TemplateException { message }) => {
                        assert!(
                            message.contains(needle),
                            "case {i} ({name}): {message:?} lacks {needle:?}"
                        )
                    }
                    other => panic!(
                        "case {i} ({name}): expected raise_exception({needle:?}), got {other:?}"
                    ),
                }
            }
            _ => panic!("case {i}: needs exactly one of expected / expected_error_contains"),
        }
    }
    for name in ["smollm2", "llama3", "smollm3", "probes"] {
        assert!(
            per_template.get(name).copied().unwrap_or(0) >= 3,
            "too few {name} cases: {per_template:?}"
        );
    }
    assert!(errors >= 3, "expected raise_exception cases, got {errors}");
}

#[test]
fn syntax_error_is_reported_at_compile_time() {
    for bad in [
        "{% for m in %}x{% endfor %}",
        "{{ messages[0 }}",
        "{% if x %}never closed",
    ] {
        match ChatTemplate::new(bad) {
            Err(e @ TokenizerError::TemplateSyntax { .. }) => assert!(
                e.to_string().starts_with("chat template syntax error:"),
                "{e}"
            ),
            other => panic!("expected TemplateSyntax for {bad:?}, got {other:?}"),
        }
    }
}

#[test]
fn raise_exception_carries_its_message() {
    let tmpl = ChatTemplate::new(
        "{% for m in messages %}{% if m.role == 'bad' %}{{ raise_exception('role ' + m.role + ' is not allowed') }}{% endif %}{% endfor %}ok",
    )
    .unwrap();
    let extra = no_extra();
    let good = serde_json::json!([{"role": "user", "content": "hi"}]);
    assert_eq!(
        tmpl.render(&ChatTemplateInputs::new(&good, &extra))
            .unwrap(),
        "ok"
    );
    let bad = serde_json::json!([{"role": "bad", "content": "hi"}]);
    let err = tmpl
        .render(&ChatTemplateInputs::new(&bad, &extra))
        .unwrap_err();
    assert!(
        matches!(&err, TokenizerError::TemplateException { message } if message == "role bad is not allowed"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "chat template raised an exception: role bad is not allowed"
    );
}

#[test]
fn render_errors_are_not_exceptions() {
    let tmpl = ChatTemplate::new("{{ messages[0].content + 1 }}").unwrap();
    let extra = no_extra();
    let msgs = serde_json::json!([{"role": "user", "content": "hi"}]);
    let err = tmpl
        .render(&ChatTemplateInputs::new(&msgs, &extra))
        .unwrap_err();
    assert!(
        matches!(err, TokenizerError::TemplateRender { .. }),
        "{err:?}"
    );
}

#[test]
fn bad_inputs_are_rejected_like_transformers() {
    let tmpl = ChatTemplate::new("{{ messages | length }}").unwrap();
    let extra = no_extra();
    let empty = serde_json::json!([]);
    let err = tmpl
        .render(&ChatTemplateInputs::new(&empty, &extra))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("Cannot apply chat template to an empty conversation"),
        "{err}"
    );
    let not_objects = serde_json::json!(["hi"]);
    let err = tmpl
        .render(&ChatTemplateInputs::new(&not_objects, &extra))
        .unwrap_err();
    assert!(
        err.to_string().contains("messages[0] must be an object"),
        "{err}"
    );

    let msgs = serde_json::json!([{"role": "user", "content": "hi"}]);
    let mut reserved = Map::new();
    reserved.insert("messages".into(), Value::Null);
    let err = tmpl
        .render(&ChatTemplateInputs::new(&msgs, &reserved))
        .unwrap_err();
    assert!(
        matches!(err, TokenizerError::InvalidInput { .. })
            && err.to_string().contains("`messages`"),
        "{err}"
    );

    let tools = serde_json::json!(["not a schema"]);
    let inputs = ChatTemplateInputs {
        tools: Some(&tools),
        ..ChatTemplateInputs::new(&msgs, &extra)
    };
    assert!(matches!(
        tmpl.render(&inputs),
        Err(TokenizerError::InvalidInput { .. })
    ));
}

#[test]
fn extra_kwargs_override_special_tokens_and_reach_the_template() {
    let tmpl = ChatTemplate::new("{{ bos_token }}|{{ eos_token }}|{{ enable_thinking }}|{{ tools }}|{{ documents }}|{{ add_generation_prompt }}").unwrap();
    let msgs = serde_json::json!([{"role": "user", "content": "hi"}]);
    let mut extra = Map::new();
    extra.insert("eos_token".into(), Value::from("<override>"));
    extra.insert("enable_thinking".into(), Value::from(false));
    let inputs = ChatTemplateInputs {
        bos_token: Some("<s>"),
        eos_token: Some("</s>"),
        ..ChatTemplateInputs::new(&msgs, &extra)
    };
    assert_eq!(
        tmpl.render(&inputs).unwrap(),
        "<s>|<override>|False|None|None|False"
    );
}

#[test]
fn tojson_does_not_html_escape_and_keeps_key_order() {
    let tmpl = ChatTemplate::new("{{ messages[0] | tojson }}").unwrap();
    let extra = no_extra();
    let msgs: Value = serde_json::from_str(
        r#"[{"role": "user", "z": 1, "content": "<a href='x'>&</a>", "a": 2.0}]"#,
    )
    .unwrap();
    assert_eq!(
        tmpl.render(&ChatTemplateInputs::new(&msgs, &extra))
            .unwrap(),
        r#"{"role": "user", "z": 1, "content": "<a href='x'>&</a>", "a": 2.0}"#
    );
}

#[test]
fn strftime_now_reads_the_injected_clock() {
    let mut tmpl = ChatTemplate::with_clock(
        "{{ strftime_now('%d %B %Y') }}",
        fixed_clock("2024-12-25T08:00:00"),
    )
    .unwrap();
    let extra = no_extra();
    let msgs = serde_json::json!([{"role": "user", "content": "hi"}]);
    assert_eq!(
        tmpl.render(&ChatTemplateInputs::new(&msgs, &extra))
            .unwrap(),
        "25 December 2024"
    );
    tmpl.set_clock(fixed_clock("2001-02-03T04:05:06"));
    assert_eq!(
        tmpl.render(&ChatTemplateInputs::new(&msgs, &extra))
            .unwrap(),
        "03 February 2001"
    );
    let system = ChatTemplate::new("{{ strftime_now('%Y') }}").unwrap();
    let year = system
        .render(&ChatTemplateInputs::new(&msgs, &extra))
        .unwrap();
    assert!(
        year.len() == 4 && year.bytes().all(|b| b.is_ascii_digit()),
        "{year}"
    );
}

#[test]
fn trailing_newline_of_the_template_is_dropped_like_jinja2() {
    let tmpl = ChatTemplate::new("{{ messages[0].content }}\n").unwrap();
    let extra = no_extra();
    let msgs = serde_json::json!([{"role": "user", "content": "hi"}]);
    assert_eq!(
        tmpl.render(&ChatTemplateInputs::new(&msgs, &extra))
            .unwrap(),
        "hi"
    );
}

#[test]
fn templates_and_tokenizers_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ChatTemplate>();
    assert_send_sync::<tessera_core::tokenizer::Tokenizer>();
    let tmpl = Arc::new(ChatTemplate::new("{{ messages[0].content }}").unwrap());
    let handles: Vec<_> = (0..2)
        .map(|i| {
            let tmpl = Arc::clone(&tmpl);
            std::thread::spawn(move || {
                let msgs = serde_json::json!([{"role": "user", "content": format!("thread {i}")}]);
                let extra = Map::new();
                tmpl.render(&ChatTemplateInputs::new(&msgs, &extra))
                    .unwrap()
            })
        })
        .collect();
    let out: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(out, ["thread 0", "thread 1"]);
}
