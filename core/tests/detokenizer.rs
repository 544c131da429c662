//! Incremental detokenization with a real tokenizer (SmolLM2's byte-level BPE): no broken
//! UTF-8 mid-character, stop strings spanning tokens, streaming hold-back; and the engine's
//! text path end to end (stop strings, skip_special_tokens, `LLM::generate` / `LLM::chat`).

use std::path::PathBuf;

use serde_json::json;
use tessera_core::backend::cpu::CpuBackend;
use tessera_core::config::ModelConfig;
use tessera_core::engine::{Engine, EngineConfig, FinishReason, IncrementalDetokenizer, ModelRunner, LLM};
use tessera_core::models::load_model;
use tessera_core::sample::{RequestOutputKind, SamplingParams};
use tessera_core::sched::StopReason;
use tessera_core::tokenizer::Tokenizer;
use tessera_core::weights::DummyWeights;

fn tok_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tokenizers/smollm2")
}

fn tokenizer() -> Tokenizer {
    Tokenizer::from_file(tok_dir().join("tokenizer.json")).unwrap()
}

/// Feeds `ids` one at a time; returns the deltas.
fn stream(tok: &Tokenizer, d: &mut IncrementalDetokenizer, ids: &[u32]) -> (Vec<String>, Option<String>) {
    let mut deltas = Vec::new();
    for &t in ids {
        let stop = d.update(tok, &[t]).unwrap();
        deltas.push(d.get_next_output_text(stop.is_some(), true));
        if stop.is_some() {
            return (deltas, stop);
        }
    }
    (deltas, None)
}

#[test]
fn multibyte_characters_are_never_split() {
    let tok = tokenizer();
    let text = "Hi 世界! 🦀🦀 café — naïve Ωmega 𝔘nicode";
    let ids = tok.encode(text, false).unwrap();
    assert!(ids.len() > 10);
    // Some characters really are split across tokens here.
    assert!(ids.iter().any(|&t| tok.decode(&[t], false).unwrap().contains('\u{FFFD}')), "fixture should split a character");
    let mut d = IncrementalDetokenizer::new(&[], &SamplingParams::default());
    let (deltas, stop) = stream(&tok, &mut d, &ids);
    assert!(stop.is_none());
    for delta in &deltas {
        assert!(!delta.contains('\u{FFFD}'), "broken character in {delta:?}");
    }
    assert_eq!(deltas.concat(), text);
    assert_eq!(d.output_text, tok.decode(&ids, true).unwrap());
}

#[test]
fn prompt_context_keeps_the_first_tokens_leading_space() {
    let tok = tokenizer();
    let ids = tok.encode("Hello world and more", false).unwrap();
    let (prompt, out) = ids.split_at(1);
    let mut d = IncrementalDetokenizer::new(prompt, &SamplingParams::default());
    d.update(&tok, out).unwrap();
    assert_eq!(d.output_text, " world and more");
}

#[test]
fn stop_strings_spanning_tokens_truncate_the_text() {
    let tok = tokenizer();
    let text = "The quick brown fox jumps over the lazy dog";
    let ids = tok.encode(text, false).unwrap();
    assert!(!ids.iter().any(|&t| tok.decode(&[t], false).unwrap().contains("wn fo")), "the stop string must span tokens");
    for (include, want) in [(false, "The quick bro"), (true, "The quick brown fo")] {
        let p = SamplingParams { stop: vec!["zzz".into(), "wn fo".into()], include_stop_str_in_output: include, ..Default::default() };
        let mut d = IncrementalDetokenizer::new(&[], &p);
        let (deltas, stop) = stream(&tok, &mut d, &ids);
        assert_eq!(stop.as_deref(), Some("wn fo"));
        assert_eq!(d.output_text, want);
        assert_eq!(deltas.concat(), want, "streamed text never shows more than the final text");
    }
    // min_tokens defers stop strings.
    let p = SamplingParams { stop: vec!["quick".into()], min_tokens: 5, ..Default::default() };
    let mut d = IncrementalDetokenizer::new(&[], &p);
    let (_, stop) = stream(&tok, &mut d, &ids);
    assert_eq!(stop, None);
}

#[test]
fn streaming_holds_back_a_possible_partial_stop_string() {
    let tok = tokenizer();
    let ids = tok.encode("one two three four five", false).unwrap();
    let p = SamplingParams { stop: vec!["fiver".into()], ..Default::default() };
    let mut d = IncrementalDetokenizer::new(&[], &p);
    let (deltas, _) = stream(&tok, &mut d, &ids);
    let shown = deltas.concat();
    assert!(shown.len() <= "one two three four five".len() - 4, "the last 4 characters could start 'fiver': {shown:?}");
    let rest = d.get_next_output_text(true, true);
    assert_eq!(shown + &rest, "one two three four five");
}

/// A tiny llama with SmolLM2's vocabulary and random weights, with the real tokenizer.
fn dummy_engine() -> Engine<CpuBackend> {
    let mut c: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/llama/config.json")).unwrap(),
    )
    .unwrap();
    c["vocab_size"] = json!(49152);
    let config = ModelConfig::from_json_str(&c.to_string()).unwrap();
    let b = CpuBackend::new();
    let model = load_model(&b, &config, &DummyWeights { seed: 3, scale: 0.5 }).unwrap();
    let runner = ModelRunner::new(b, model, 64, 16).unwrap();
    Engine::new(runner, EngineConfig::new(512), Some(tokenizer()), vec![2]).unwrap()
}

#[test]
fn engine_text_stop_strings_and_llm_chat() {
    let template = std::fs::read_to_string(tok_dir().join("chat_template.jinja")).unwrap();
    let mut llm = LLM::new(dummy_engine(), Some(&template), None, Some("<|im_end|>".into())).unwrap();
    let tok = tokenizer();
    let free = SamplingParams { temperature: 1.0, seed: Some(5), ignore_eos: true, skip_special_tokens: false, ..SamplingParams::greedy(24) };
    let out = llm.generate(["Once upon a time"], &free).unwrap().remove(0);
    assert_eq!(out.prompt.as_deref(), Some("Once upon a time"));
    assert_eq!(out.prompt_token_ids, tok.encode("Once upon a time", true).unwrap());
    let o = &out.outputs[0];
    assert_eq!(o.text, tok.decode(&o.token_ids, false).unwrap(), "incremental text equals a full decode");
    // A stop string that spans two tokens of that text.
    let pieces: Vec<String> = o.token_ids.iter().map(|&t| tok.decode(&[t], false).unwrap()).collect();
    let i = (4..pieces.len() - 1).find(|&i| !pieces[i].is_empty() && !pieces[i + 1].is_empty() && !pieces[i].contains('\u{FFFD}') && !pieces[i + 1].contains('\u{FFFD}')).unwrap();
    let before: String = pieces[..i].concat();
    let stop = format!("{}{}", pieces[i].chars().last().unwrap(), pieces[i + 1].chars().next().unwrap());
    let stopped = llm.generate(["Once upon a time"], &SamplingParams { stop: vec![stop.clone()], ..free.clone() }).unwrap().remove(0);
    let s = &stopped.outputs[0];
    assert_eq!(s.finish_reason, Some(FinishReason::Stop));
    assert_eq!(s.stop_reason, Some(StopReason::Str(stop.clone())));
    let cut = o.text.find(&stop).unwrap();
    assert!(cut <= before.len() + pieces[i].len());
    assert_eq!(s.text, o.text[..cut]);
    assert_eq!(s.token_ids, o.token_ids[..s.token_ids.len()].to_vec());
    assert_no_blocks_held(&llm.engine);

    // Streaming deltas add up to the cumulative text.
    let e = &mut llm.engine;
    e.add_request("d", "Once upon a time", SamplingParams { output_kind: RequestOutputKind::Delta, ..free.clone() }).unwrap();
    let (mut text, mut toks) = (String::new(), Vec::new());
    while e.has_unfinished_requests() {
        for o in e.step().unwrap() {
            text.push_str(&o.outputs[0].text);
            toks.extend_from_slice(&o.outputs[0].token_ids);
        }
    }
    assert_eq!((text, toks), (o.text.clone(), o.token_ids.clone()));

    // Chat: the template is applied, its special tokens are not added twice.
    let conv = json!([{"role": "user", "content": "Hi there"}]);
    let rendered = llm.apply_chat_template(&conv).unwrap();
    assert!(rendered.starts_with("<|im_start|>system") && rendered.ends_with("<|im_start|>assistant\n"), "{rendered:?}");
    let out = llm.chat(&[conv.clone(), json!([{"role": "user", "content": "Bye"}])], &free).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].prompt.as_deref(), Some(rendered.as_str()));
    assert_eq!(out[0].prompt_token_ids, tok.encode(&rendered, false).unwrap());
    assert_eq!(out[0].prompt_token_ids[0], 1, "<|im_start|> once");
    assert!(out.iter().all(|o| o.finished && o.outputs[0].token_ids.len() == 24));
    // bad_words are never generated: pick a generated token that is a whole word by itself.
    let (banned, word) = o
        .token_ids
        .iter()
        .find_map(|&t| {
            let w = tok.decode(&[t], false).unwrap().trim().to_string();
            let single = |s: &str| tok.encode(s, false).unwrap() == vec![t];
            // vLLM adds the " word" variant only when it has as many tokens as "word".
            let spaced = tok.encode(&format!(" {w}"), false).unwrap();
            let plain = tok.encode(&w, false).unwrap();
            let ok = single(&w) || (spaced == vec![t] && plain.len() == 1);
            (!w.is_empty() && w.chars().all(char::is_alphanumeric) && ok).then_some((t, w))
        })
        .expect("some generated token is a plain word");
    let b = llm.generate(["Once upon a time"], &SamplingParams { bad_words: vec![word.clone()], ..free }).unwrap().remove(0);
    assert!(!b.outputs[0].token_ids.contains(&banned), "{word:?} was generated");
}

fn assert_no_blocks_held(e: &Engine<CpuBackend>) {
    let kv = &e.scheduler().kv_cache_manager;
    assert_eq!(kv.pool().num_free_blocks(), kv.num_usable_blocks());
}
