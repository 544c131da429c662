//! A tokenizer from GGUF metadata (`tokenizer.ggml.*`), as the tokenizer.json (and
//! tokenizer_config.json) HF would have for the same model; `Tokenizer::from_bytes` then runs it.
//!
//! ```text
//! tokenizer.ggml.model = gpt2   -> ByteLevel BPE; pre-tokenizer from tokenizer.ggml.pre
//!                                  (llama.cpp's regex for it), merges from tokenizer.ggml.merges
//! tokenizer.ggml.model = llama  -> SentencePiece-style BPE with byte fallback: "▁" for spaces
//!                                  (prefix space per add_space_prefix), merges from the file or
//!                                  derived from tokens + scores
//! token_type 3 (control)        -> added special tokens; 4 (user-defined) -> added tokens
//! add_bos_token / add_eos_token -> post-processor template
//! ```

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::error::{Result, TokenizerError};
use super::hf::Tokenizer;
use crate::weights::gguf::{GgufFile, GgufValue};

const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

fn err(g: &GgufFile, message: impl Into<String>) -> TokenizerError {
    TokenizerError::InvalidFile { file: "GGUF tokenizer metadata", message: format!("{}: {}", g.file, message.into()) }
}

fn meta<T>(g: &GgufFile, r: crate::weights::gguf::Result<T>) -> Result<T> {
    r.map_err(|e| err(g, e.to_string()))
}

impl Tokenizer {
    /// The tokenizer described by a GGUF file's metadata.
    pub fn from_gguf(g: &GgufFile) -> Result<Tokenizer> {
        let json = gguf_tokenizer_json(g)?;
        Tokenizer::from_bytes(json.to_string().as_bytes())
    }
}

fn strings<'a>(g: &GgufFile, key: &str, arr: &'a [GgufValue]) -> Result<Vec<&'a str>> {
    arr.iter().map(|v| v.as_str().ok_or_else(|| err(g, format!("`{key}` must be an array of strings")))).collect()
}

/// The token strings (`tokenizer.ggml.tokens`).
fn tokens(g: &GgufFile) -> Result<Vec<&str>> {
    let arr = meta(g, g.array("tokenizer.ggml.tokens"))?.ok_or_else(|| err(g, "no `tokenizer.ggml.tokens`"))?;
    strings(g, "tokenizer.ggml.tokens", arr)
}

fn special_id(g: &GgufFile, what: &str, n: usize) -> Result<Option<u32>> {
    let key = format!("tokenizer.ggml.{what}_token_id");
    match meta(g, g.u64(&key))? {
        Some(id) if id as usize >= n => Err(err(g, format!("`{key}` = {id} is past the vocabulary ({n} tokens)"))),
        Some(id) => Ok(Some(id as u32)),
        None => Ok(None),
    }
}

/// tokenizer.json (as a JSON value) for the file's tokenizer.
pub fn gguf_tokenizer_json(g: &GgufFile) -> Result<Value> {
    let model_kind = meta(g, g.str("tokenizer.ggml.model"))?.ok_or_else(|| err(g, "no `tokenizer.ggml.model`"))?;
    let toks = tokens(g)?;
    let n = toks.len();
    let types: Vec<i64> = match meta(g, g.array("tokenizer.ggml.token_type"))? {
        Some(a) if a.len() == n => a.iter().map(|v| v.as_i64().unwrap_or(1)).collect(),
        Some(a) => return Err(err(g, format!("`tokenizer.ggml.token_type` has {} entries for {n} tokens", a.len()))),
        None => vec![1; n],
    };
    let added: Vec<Value> = (0..n)
        .filter(|&i| types[i] == CONTROL || types[i] == USER_DEFINED)
        .map(|i| {
            json!({"id": i, "content": toks[i], "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": types[i] == CONTROL})
        })
        .collect();
    let add_bos = meta(g, g.bool("tokenizer.ggml.add_bos_token"))?;
    let add_eos = meta(g, g.bool("tokenizer.ggml.add_eos_token"))?.unwrap_or(false);
    let bos = special_id(g, "bos", n)?;
    let eos = special_id(g, "eos", n)?;
    let unk = special_id(g, "unknown", n)?;

    let (model, normalizer, pre_tokenizer, decoder, add_bos) = match model_kind {
        "gpt2" => {
            let merges = merges_from_file(g)?.ok_or_else(|| err(g, "a gpt2 tokenizer needs `tokenizer.ggml.merges`"))?;
            let vocab: Map<String, Value> = toks.iter().enumerate().map(|(i, t)| (t.to_string(), json!(i))).collect();
            let model = json!({"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                               "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
                               "ignore_merges": false, "vocab": vocab, "merges": merges});
            let pre = meta(g, g.str("tokenizer.ggml.pre"))?.unwrap_or("default");
            let (normalizer, pre_tok) = byte_level_pre_tokenizer(pre);
            let decoder = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true});
            (model, normalizer, pre_tok, decoder, add_bos.unwrap_or(false))
        }
        "llama" => {
            let scores: Vec<f64> = match meta(g, g.array("tokenizer.ggml.scores"))? {
                Some(a) if a.len() == n => a.iter().map(|v| v.as_f64().unwrap_or(0.0)).collect(),
                Some(a) => return Err(err(g, format!("`tokenizer.ggml.scores` has {} entries for {n} tokens", a.len()))),
                None => vec![0.0; n],
            };
            let merges = match merges_from_file(g)? {
                Some(m) => m,
                None => spm_merges(&toks, &scores, &types),
            };
            let vocab: Map<String, Value> = toks.iter().enumerate().map(|(i, t)| (t.to_string(), json!(i))).collect();
            let unk_token = unk.map(|u| toks[u as usize]);
            let model = json!({"type": "BPE", "dropout": null, "unk_token": unk_token, "continuing_subword_prefix": null,
                               "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
                               "ignore_merges": false, "vocab": vocab, "merges": merges});
            let prefix = meta(g, g.bool("tokenizer.ggml.add_space_prefix"))?.unwrap_or(true);
            let mut norm = vec![];
            if prefix {
                norm.push(json!({"type": "Prepend", "prepend": "\u{2581}"}));
            }
            norm.push(json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}));
            let mut dec = vec![
                json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
                json!({"type": "ByteFallback"}),
                json!({"type": "Fuse"}),
            ];
            if prefix {
                dec.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
            }
            let normalizer = json!({"type": "Sequence", "normalizers": norm});
            let decoder = json!({"type": "Sequence", "decoders": dec});
            (model, normalizer, Value::Null, decoder, add_bos.unwrap_or(true))
        }
        other => return Err(err(g, format!("tokenizer.ggml.model {other:?} is not supported (gpt2, llama)"))),
    };
    let post = post_processor(&toks, if add_bos { bos } else { None }, if add_eos { eos } else { None });
    Ok(json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": normalizer, "pre_tokenizer": pre_tokenizer, "post_processor": post,
        "decoder": decoder, "model": model,
    }))
}

/// tokenizer_config.json (as a JSON value): special tokens, add_bos/eos and the chat template.
pub fn gguf_tokenizer_config(g: &GgufFile) -> Result<Value> {
    let toks = tokens(g)?;
    let n = toks.len();
    let mut c = Map::new();
    c.insert("backend".into(), json!("tokenizers"));
    c.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    for (what, key) in [("bos", "bos_token"), ("eos", "eos_token"), ("padding", "pad_token"), ("unknown", "unk_token")] {
        if let Some(id) = special_id(g, what, n)? {
            c.insert(key.into(), json!(toks[id as usize]));
        }
    }
    let llama = meta(g, g.str("tokenizer.ggml.model"))? == Some("llama");
    let add_bos = meta(g, g.bool("tokenizer.ggml.add_bos_token"))?.unwrap_or(llama);
    c.insert("add_bos_token".into(), json!(add_bos));
    c.insert("add_eos_token".into(), json!(meta(g, g.bool("tokenizer.ggml.add_eos_token"))?.unwrap_or(false)));
    c.insert("clean_up_tokenization_spaces".into(), json!(false));
    if let Some(t) = gguf_chat_template(g)? {
        c.insert("chat_template".into(), json!(t));
    }
    Ok(Value::Object(c))
}

/// `tokenizer.chat_template`, if the file has one.
pub fn gguf_chat_template(g: &GgufFile) -> Result<Option<String>> {
    Ok(meta(g, g.str("tokenizer.chat_template"))?.map(str::to_string))
}

/// `tokenizer.ggml.merges` ("a b" strings) as tokenizer.json pairs.
fn merges_from_file(g: &GgufFile) -> Result<Option<Vec<Value>>> {
    let Some(arr) = meta(g, g.array("tokenizer.ggml.merges"))? else { return Ok(None) };
    let m = strings(g, "tokenizer.ggml.merges", arr)?;
    m.iter()
        .map(|s| {
            s.split_once(' ').map(|(a, b)| json!([a, b])).ok_or_else(|| err(g, format!("merge {s:?} is not two tokens separated by a space")))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Merges for a SentencePiece vocabulary without explicit merges: every split of a normal
/// token into two vocabulary pieces, ranked by the merged token's score (highest first), as
/// `tokenizers`' SentencePiece converter does.
fn spm_merges(toks: &[&str], scores: &[f64], types: &[i64]) -> Vec<Value> {
    let ids: HashMap<&str, usize> = toks.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let mut found: Vec<(f64, usize, usize, usize)> = Vec::new();
    for (id, tok) in toks.iter().enumerate() {
        if types[id] != 1 {
            continue;
        }
        for (k, _) in tok.char_indices().skip(1) {
            let (a, b) = tok.split_at(k);
            if let (Some(&ia), Some(&ib)) = (ids.get(a), ids.get(b)) {
                found.push((scores[id], id, ia, ib));
            }
        }
    }
    found.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    found.into_iter().map(|(_, _, a, b)| json!([toks[a], toks[b]])).collect()
}

/// ByteLevel pre-tokenization for llama.cpp's `tokenizer.ggml.pre` values (their regexes as
/// the HF tokenizers of those models spell them). Returns (normalizer, pre_tokenizer).
fn byte_level_pre_tokenizer(pre: &str) -> (Value, Value) {
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |re: &str| json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false});
    let seq = |v: Vec<Value>| json!({"type": "Sequence", "pretokenizers": v});
    match pre {
        // Digits one by one, then GPT-2's regex (SmolLM, StarCoder and relatives).
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva" => {
            (Value::Null, seq(vec![json!({"type": "Digits", "individual_digits": true}), byte_level(true)]))
        }
        "llama3" | "llama-bpe" | "smaug-bpe" | "falcon3" | "pixtral" => (Value::Null, seq(vec![split(LLAMA3), byte_level(false)])),
        "qwen2" | "deepseek-r1-qwen" => (json!({"type": "NFC"}), seq(vec![split(QWEN2), byte_level(false)])),
        "default" | "gpt2" | "gpt-2" => (Value::Null, byte_level(true)),
        other => {
            tracing::warn!(pre = other, "unknown tokenizer.ggml.pre; using GPT-2's pre-tokenizer");
            (Value::Null, byte_level(true))
        }
    }
}

/// TemplateProcessing adding BOS / EOS when `add_special_tokens` is set.
fn post_processor(toks: &[&str], bos: Option<u32>, eos: Option<u32>) -> Value {
    let mut single = vec![];
    let mut pair = vec![];
    let mut special = Map::new();
    let mut tok = |id: u32| {
        let t = toks[id as usize];
        special.insert(t.to_string(), json!({"id": t, "ids": [id], "tokens": [t]}));
        json!({"SpecialToken": {"id": t, "type_id": 0}})
    };
    let b = bos.map(&mut tok);
    let e = eos.map(&mut tok);
    for (out, seqs) in [(&mut single, vec!["A"]), (&mut pair, vec!["A", "B"])] {
        for (k, s) in seqs.into_iter().enumerate() {
            out.extend(b.clone());
            out.push(json!({"Sequence": {"id": s, "type_id": k}}));
            out.extend(e.clone());
        }
    }
    json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special})
}
