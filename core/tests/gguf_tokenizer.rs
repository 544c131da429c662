//! The tokenizer built from GGUF metadata: on the real SmolLM2 GGUF it gives exactly the ids of
//! transformers' own conversion of that file (tests/fixtures/tokenizers/smollm2/cases.json), and
//! a small SentencePiece-style (`llama`) vocabulary tokenizes with byte fallback and BOS.

mod gguf_common;

use gguf_common::{fixture, smollm2_path, GgufBuilder, V};
use serde_json::Value;
use tessera_core::tokenizer::{gguf_chat_template, gguf_tokenizer_config, Tokenizer};
use tessera_core::weights::gguf::GgufFile;

fn smollm2() -> GgufFile {
    let path = smollm2_path();
    let bytes = std::fs::read(&path).unwrap();
    GgufFile::parse(&path.display().to_string(), &bytes).unwrap()
}

#[test]
fn smollm2_ids_equal_transformers() {
    let g = smollm2();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(fixture("tokenizers/smollm2/cases.json")).unwrap()).unwrap();
    assert_eq!(tok.vocab_size(), cases["vocab_size"].as_u64().unwrap() as usize);
    for (t, id) in cases["token_ids"].as_object().unwrap() {
        assert_eq!(tok.token_to_id(t), Some(id.as_u64().unwrap() as u32), "token {t}");
    }
    let mut n = 0;
    for c in cases["cases"].as_array().unwrap() {
        let Some(text) = c["text"].as_str() else { continue };
        let ids = |k: &str| -> Vec<u32> { c[k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect() };
        assert_eq!(tok.encode(text, false).unwrap(), ids("ids"), "{text:?}");
        assert_eq!(tok.encode(text, true).unwrap(), ids("ids_with_special_tokens"), "{text:?} (special)");
        assert_eq!(tok.decode(&ids("ids"), false).unwrap(), c["decoded"].as_str().unwrap(), "{text:?} decode");
        assert_eq!(tok.decode(&ids("ids"), true).unwrap(), c["decoded_skip_special"].as_str().unwrap(), "{text:?} decode skip");
        n += 1;
    }
    assert!(n >= 15, "only {n} text cases");
}

#[test]
fn smollm2_tokenizer_json_matches_hf_conversion() {
    // Same vocabulary, merges and special tokens as transformers' tokenizer.json of this GGUF.
    let g = smollm2();
    let ours = tessera_core::tokenizer::gguf_tokenizer_json(&g).unwrap();
    let hf: Value = serde_json::from_str(&std::fs::read_to_string(fixture("tokenizers/smollm2/tokenizer.json")).unwrap()).unwrap();
    assert_eq!(ours["model"]["vocab"], hf["model"]["vocab"]);
    assert_eq!(ours["model"]["merges"], hf["model"]["merges"]);
    assert_eq!(ours["added_tokens"], hf["added_tokens"]);
    assert_eq!(ours["decoder"], hf["decoder"]);
    // The config and template: ChatML with SmolLM's default system prompt.
    let cfg = gguf_tokenizer_config(&g).unwrap();
    assert_eq!(cfg["bos_token"], "<|im_start|>");
    assert_eq!(cfg["eos_token"], "<|im_end|>");
    assert_eq!(cfg["add_bos_token"], false);
    let tmpl = gguf_chat_template(&g).unwrap().unwrap();
    let hf_tmpl = std::fs::read_to_string(fixture("tokenizers/smollm2/chat_template.jinja")).unwrap();
    assert_eq!(tmpl.trim_end(), hf_tmpl.trim_end());
}

fn spm_file(add_bos: Option<bool>) -> Vec<u8> {
    let mut toks: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0f32, 0.0, 0.0];
    for b in 0..256 {
        toks.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (t, s) in [("▁", -1.0), ("h", -2.0), ("e", -2.0), ("l", -2.0), ("o", -2.0), ("he", -3.0), ("ll", -3.0), ("hell", -4.0), ("hello", -5.0), ("▁hello", -6.0), ("w", -2.0), ("▁w", -3.0)] {
        toks.push(t.into());
        types.push(1);
        scores.push(s);
    }
    let mut b = GgufBuilder::new()
        .kv("general.architecture", V::Str("llama".into()))
        .kv("tokenizer.ggml.model", V::Str("llama".into()))
        .kv("tokenizer.ggml.tokens", V::Strs(toks))
        .kv("tokenizer.ggml.scores", V::F32s(scores))
        .kv("tokenizer.ggml.token_type", V::I32s(types))
        .kv("tokenizer.ggml.bos_token_id", V::U32(1))
        .kv("tokenizer.ggml.eos_token_id", V::U32(2))
        .kv("tokenizer.ggml.unknown_token_id", V::U32(0));
    if let Some(a) = add_bos {
        b = b.kv("tokenizer.ggml.add_bos_token", V::Bool(a));
    }
    b.build()
}

#[test]
fn spm_vocabulary_with_byte_fallback() {
    let bytes = spm_file(None);
    let g = GgufFile::parse("spm.gguf", &bytes).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let id = |t: &str| tok.token_to_id(t).unwrap();
    // "hello" gets the prefix space; unknown "z" falls back to its byte; BOS is added by default.
    assert_eq!(tok.encode("hello", true).unwrap(), vec![1, id("▁hello")]);
    assert_eq!(tok.encode("hello wz", false).unwrap(), vec![id("▁hello"), id("▁w"), id("<0x7A>")]);
    let ids = tok.encode("hello wz", false).unwrap();
    assert_eq!(tok.decode(&ids, false).unwrap(), "hello wz");
    assert_eq!(tok.encode("<s>hello", false).unwrap()[0], 1, "control tokens are matched as special");
    let no_bos = spm_file(Some(false));
    let tok = Tokenizer::from_gguf(&GgufFile::parse("spm.gguf", &no_bos).unwrap()).unwrap();
    assert_eq!(tok.encode("hello", true).unwrap(), vec![id("▁hello")]);
}

#[test]
fn tokenizer_metadata_errors_name_the_file() {
    let bytes = GgufBuilder::new().kv("tokenizer.ggml.model", V::Str("bert".into())).kv("tokenizer.ggml.tokens", V::Strs(vec!["a".into()])).build();
    let g = GgufFile::parse("bert.gguf", &bytes).unwrap();
    let e = Tokenizer::from_gguf(&g).unwrap_err().to_string();
    assert!(e.contains("bert.gguf") && e.contains("not supported"), "{e}");
    let bytes = GgufBuilder::new().kv("tokenizer.ggml.model", V::Str("gpt2".into())).build();
    let e = Tokenizer::from_gguf(&GgufFile::parse("x.gguf", &bytes).unwrap()).unwrap_err().to_string();
    assert!(e.contains("x.gguf") && e.contains("tokenizer.ggml.tokens"), "{e}");
    let bytes = GgufBuilder::new()
        .kv("tokenizer.ggml.model", V::Str("gpt2".into()))
        .kv("tokenizer.ggml.tokens", V::Strs(vec!["a".into()]))
        .kv("tokenizer.ggml.merges", V::Strs(vec![]))
        .kv("tokenizer.ggml.eos_token_id", V::U32(7))
        .build();
    let e = Tokenizer::from_gguf(&GgufFile::parse("x.gguf", &bytes).unwrap()).unwrap_err().to_string();
    assert!(e.contains("eos_token_id") && e.contains("past the vocabulary"), "{e}");
}
