//! The GGUF reader and weight source: valid files parse (v2, v3, alignment, every metadata
//! type), hostile ones give clear errors naming the file and field (never a panic), a bounded
//! random-mutation run never panics, and HF names / Q-K un-permutation / config mapping work.

mod gguf_common;

use gguf_common::{GgufBuilder, V};
use tessera_core::config::ModelConfig;
use tessera_core::tensor::DType;
use tessera_core::weights::gguf::{GgufError, GgufFile, GgufValue};
use tessera_core::weights::{FileBytes, GgufWeights, WeightSource, WeightsError};

fn parse(bytes: &[u8]) -> Result<GgufFile, GgufError> {
    GgufFile::parse("t.gguf", bytes)
}

fn tiny() -> GgufBuilder {
    GgufBuilder::new()
        .kv("general.architecture", V::Str("llama".into()))
        .kv("general.name", V::Str("tiny".into()))
        .kv("llama.block_count", V::U32(1))
        .f32_tensor("output_norm.weight", &[4], &[1.0, 2.0, 3.0, 4.0])
        .tensor("blk.0.ffn_down.weight", &[32, 2], 2, vec![0u8; 36])
}

#[test]
fn valid_file_parses_all_value_types() {
    let b = tiny()
        .kv("a.i32", V::I32(-5))
        .kv("a.u64", V::U64(1 << 40))
        .kv("a.f32", V::F32(0.5))
        .kv("a.bool", V::Bool(true))
        .kv("a.strs", V::Strs(vec!["x".into(), "ü".into()]))
        .kv("a.f32s", V::F32s(vec![1.0, -1.0]));
    let bytes = b.build();
    let g = parse(&bytes).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.str("general.architecture").unwrap(), Some("llama"));
    assert_eq!(g.get("a.i32"), Some(&GgufValue::I32(-5)));
    assert_eq!(g.u64("a.u64").unwrap(), Some(1 << 40));
    assert_eq!(g.f64("a.f32").unwrap(), Some(0.5));
    assert_eq!(g.bool("a.bool").unwrap(), Some(true));
    assert_eq!(g.array("a.strs").unwrap().unwrap()[1], GgufValue::String("ü".into()));
    assert!(g.u64("general.name").unwrap_err().to_string().contains("general.name"));
    assert_eq!(g.tensors().len(), 2);
    let t = g.tensor("blk.0.ffn_down.weight").unwrap();
    assert_eq!((t.shape(), t.size, t.start % 32), (vec![2, 32], 36, 0));
    // v2 is the same layout.
    let mut v2 = tiny();
    v2.version = 2;
    assert_eq!(parse(&v2.build()).unwrap().version, 2);
    // A custom alignment is honoured.
    let mut a = tiny().kv("general.alignment", V::U32(64));
    a.alignment = 64;
    let bytes = a.build();
    let g = parse(&bytes).unwrap();
    assert_eq!((g.alignment, g.data_start % 64), (64, 0));
}

fn err(bytes: &[u8]) -> String {
    let e = parse(bytes).expect_err("must fail");
    let s = e.to_string();
    assert!(s.starts_with("t.gguf: "), "error does not name the file: {s}");
    s
}

#[test]
fn header_errors() {
    assert!(err(b"").contains("truncated"));
    assert!(err(b"GGML\x03\0\0\0").contains("not a GGUF file"));
    let mut b = tiny().build();
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert!(err(&b).contains("version 1 is not supported"));
    b[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(err(&b).contains("big-endian"));
    let mut b = tiny().build();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(err(&b).contains("tensor_count = 18446744073709551615 is impossible"));
    let mut b = tiny().build();
    b[16..24].copy_from_slice(&(1u64 << 50).to_le_bytes());
    assert!(err(&b).contains("metadata_kv_count"));
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = tiny().build();
    for n in 0..bytes.len() - 1 {
        // Cutting inside the tensor data makes that tensor run past the end.
        assert!(parse(&bytes[..n]).is_err(), "prefix of {n} bytes parsed");
    }
    let e = err(&bytes[..bytes.len() - 1]);
    assert!(e.contains("blk.0.ffn_down.weight") && e.contains("past the end"), "{e}");
}

/// Offset of the first byte after `needle` in `bytes`.
fn after(bytes: &[u8], needle: &str) -> usize {
    bytes.windows(needle.len()).position(|w| w == needle.as_bytes()).unwrap() + needle.len()
}

#[test]
fn metadata_errors() {
    // String length past EOF (the length of general.name's value).
    let mut b = tiny().build();
    let at = after(&b, "general.name") + 4;
    b[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let e = err(&b);
    assert!(e.contains("truncated") && e.contains("general.name"), "{e}");
    // Unknown value type.
    let mut b = tiny().build();
    let at = after(&b, "general.name");
    b[at..at + 4].copy_from_slice(&77u32.to_le_bytes());
    assert!(err(&b).contains("`general.name` has unknown value type 77"));
    // Absurd array length.
    let bytes = tiny().kv("a.f32s", V::F32s(vec![1.0])).build();
    let mut b = bytes.clone();
    let at = after(&b, "a.f32s") + 8;
    b[at..at + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    assert!(err(&b).contains("length of array `a.f32s`"));
    // Invalid UTF-8 in a key, a bool that is not 0/1, duplicate keys, bad alignment.
    let mut b = tiny().build();
    let at = after(&b, "general.nam");
    b[at - 1] = 0xff;
    assert!(err(&b).contains("not valid UTF-8"));
    let mut b = tiny().kv("a.bool", V::Bool(true)).build();
    let at = after(&b, "a.bool") + 4;
    b[at] = 2;
    assert!(err(&b).contains("a.bool"));
    assert!(err(&tiny().kv("general.name", V::Str("again".into())).build()).contains("`general.name` appears twice"));
    assert!(err(&tiny().kv("general.alignment", V::U32(3)).build()).contains("general.alignment"));
    assert!(err(&tiny().kv("general.alignment", V::U64(32)).build()).contains("general.alignment"));
}

#[test]
fn tensor_errors() {
    let one = |dims: &[u64], ty: u32, data: Vec<u8>| GgufBuilder::new().tensor("w", dims, ty, data).build();
    assert!(err(&one(&[4], 99, vec![0; 16])).contains("tensor `w` has unknown ggml type 99"));
    assert!(err(&one(&[1 << 40, 1 << 40], 0, vec![])).contains("overflows"));
    assert!(err(&one(&[1 << 40], 0, vec![])).contains("past the end"));
    assert!(err(&one(&[1 << 62], 0, vec![])).contains("byte size overflows"));
    assert!(err(&one(&[33], 2, vec![0; 18])).contains("not whole Q4_0 blocks"));
    assert!(err(&one(&[], 0, vec![])).contains("n_dims = 0"));
    assert!(err(&one(&[1, 1, 1, 1, 1], 0, vec![0; 4])).contains("n_dims = 5"));
    // Offsets: misaligned, past EOF, overflowing.
    let set_offset = |off: u64| {
        let mut b = one(&[4], 0, vec![0; 16]);
        let at = after(&b, "w") + 4 + 8 + 4;
        b[at..at + 8].copy_from_slice(&off.to_le_bytes());
        b
    };
    assert!(err(&set_offset(4)).contains("not aligned to 32 bytes"));
    assert!(err(&set_offset(1 << 20)).contains("past the end"));
    assert!(err(&set_offset(u64::MAX - 31)).contains("past the end"));
    let dup = GgufBuilder::new().f32_tensor("w", &[1], &[1.0]).f32_tensor("w", &[1], &[2.0]).build();
    assert!(err(&dup).contains("tensor `w` appears twice"));
    // A known type tessera cannot read parses, and fails when loaded, naming it.
    let b = tiny().tensor("blk.0.ffn_up.weight", &[256, 1], 15, vec![0; 292]).build();
    let w = GgufWeights::from_bytes("t.gguf", FileBytes::Owned(b)).unwrap();
    let e = w.get("model.layers.0.mlp.up_proj.weight", &[1, 256]).unwrap_err().to_string();
    assert!(e.contains("blk.0.ffn_up.weight") && e.contains("Q8_K"), "{e}");
}

/// SplitMix64, for the bounded mutation run.
fn next(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[test]
fn random_mutations_never_panic() {
    let base = tiny()
        .kv("tokenizer.ggml.tokens", V::Strs(vec!["a".into(), "b".into()]))
        .tensor("blk.0.attn_q.weight", &[256, 2], 12, vec![7; 288])
        .build();
    let mut seed = 42u64;
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..3000 {
        let mut b = base.clone();
        for _ in 0..1 + next(&mut seed) % 4 {
            let at = (next(&mut seed) % b.len() as u64) as usize;
            match next(&mut seed) % 4 {
                0 => b[at] ^= 1 << (next(&mut seed) % 8),
                1 => b[at] = next(&mut seed) as u8,
                2 => b.truncate(at),
                _ => {
                    let v = [u64::MAX, 1 << 40, 0, 31, 99, 1 << 31][(next(&mut seed) % 6) as usize];
                    let end = (at + 8).min(b.len());
                    b[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
                }
            }
            if b.is_empty() {
                break;
            }
        }
        match GgufWeights::from_bytes("m.gguf", FileBytes::Owned(b)) {
            Ok(w) => {
                ok += 1;
                for name in w.hf_names() {
                    if let Ok(t) = w.get_any(&name) {
                        let _ = t.to_f32();
                    }
                }
                let _ = w.hf_config();
            }
            Err(e) => {
                failed += 1;
                assert!(e.to_string().starts_with("m.gguf: "), "{e}");
            }
        }
    }
    assert!(ok > 0 && failed > 0, "ok {ok}, failed {failed}");
}

/// llama.cpp's permutation (convert_hf_to_gguf.py `permute`): rows reshaped as
/// (heads, 2, d/2) with the last two axes swapped.
fn llama_cpp_permute(rows: &[Vec<f32>], heads: usize) -> Vec<Vec<f32>> {
    let d = rows.len() / heads;
    let mut out = vec![vec![]; rows.len()];
    for h in 0..heads {
        for i in 0..d / 2 {
            for j in 0..2 {
                out[h * d + i * 2 + j] = rows[h * d + j * (d / 2) + i].clone();
            }
        }
    }
    out
}

#[test]
fn llama_q_k_rows_are_unpermuted_and_names_mapped() {
    let (hidden, heads, kv_heads, d) = (8usize, 2usize, 1usize, 4usize);
    let rows = |n: usize, base: f32| -> Vec<Vec<f32>> { (0..n).map(|r| (0..hidden).map(|c| base + (r * 100 + c) as f32).collect()).collect() };
    let q = rows(heads * d, 0.0);
    let k = rows(kv_heads * d, 5000.0);
    let flat = |r: &[Vec<f32>]| r.concat();
    let b = GgufBuilder::new()
        .kv("general.architecture", V::Str("llama".into()))
        .kv("llama.attention.head_count", V::U32(heads as u32))
        .kv("llama.attention.head_count_kv", V::U32(kv_heads as u32))
        .f32_tensor("blk.0.attn_q.weight", &[hidden as u64, (heads * d) as u64], &flat(&llama_cpp_permute(&q, heads)))
        .f32_tensor("blk.0.attn_k.weight", &[hidden as u64, (kv_heads * d) as u64], &flat(&llama_cpp_permute(&k, kv_heads)))
        .f32_tensor("blk.0.attn_v.weight", &[hidden as u64, (kv_heads * d) as u64], &flat(&k))
        .build();
    let w = GgufWeights::from_bytes("p.gguf", FileBytes::Owned(b)).unwrap();
    let get = |n: &str, s: &[usize]| w.get(n, s).unwrap().to_f32();
    assert_eq!(get("model.layers.0.self_attn.q_proj.weight", &[8, 8]), flat(&q));
    assert_eq!(get("model.layers.0.self_attn.k_proj.weight", &[4, 8]), flat(&k));
    assert_eq!(get("model.layers.0.self_attn.v_proj.weight", &[4, 8]), flat(&k));
    assert!(w.contains("model.layers.0.self_attn.q_proj.weight"));
    assert!(!w.contains("lm_head.weight"));
    let e = w.get("model.layers.0.self_attn.q_proj.weight", &[8, 4]).unwrap_err();
    assert!(matches!(e, WeightsError::Shape { .. }) && e.to_string().contains("blk.0.attn_q.weight"), "{e}");
    let e = w.get("model.layers.0.mlp.up_proj.weight", &[8, 8]).unwrap_err().to_string();
    assert!(e.contains("blk.0.ffn_up.weight") && e.contains("p.gguf"), "{e}");
}

#[test]
fn quantized_tensors_borrowed_or_dequantized_on_load() {
    // One Q8_0 row of 32: d = 1, q = 0..32.
    let mut block = half::f16::from_f32(1.0).to_le_bytes().to_vec();
    block.extend((0..32u8).map(|i| i as i8 as u8));
    let b = tiny().tensor("blk.0.ffn_up.weight", &[32, 1], 8, block).build();
    let mut w = GgufWeights::from_bytes("q.gguf", FileBytes::Owned(b)).unwrap();
    let t = w.get("model.layers.0.mlp.up_proj.weight", &[1, 32]).unwrap();
    assert_eq!((t.dtype, t.data.len()), (DType::Q8_0, 34));
    assert!(matches!(t.data, std::borrow::Cow::Borrowed(_)));
    w.set_dequantize_on_load(true);
    let t = w.get("model.layers.0.mlp.up_proj.weight", &[1, 32]).unwrap();
    assert_eq!(t.dtype, DType::F32);
    assert_eq!(t.to_f32(), (0..32).map(|i| i as f32).collect::<Vec<_>>());
}

#[test]
fn config_from_metadata() {
    let b = GgufBuilder::new()
        .kv("general.architecture", V::Str("qwen3".into()))
        .kv("qwen3.context_length", V::U32(4096))
        .kv("qwen3.embedding_length", V::U32(64))
        .kv("qwen3.block_count", V::U32(2))
        .kv("qwen3.feed_forward_length", V::U32(128))
        .kv("qwen3.attention.head_count", V::U32(4))
        .kv("qwen3.attention.head_count_kv", V::U32(2))
        .kv("qwen3.attention.key_length", V::U32(32))
        .kv("qwen3.rope.freq_base", V::F32(1_000_000.0))
        .kv("qwen3.attention.layer_norm_rms_epsilon", V::F32(1e-6))
        .kv("tokenizer.ggml.tokens", V::Strs((0..100).map(|i| format!("t{i}")).collect()))
        .kv("tokenizer.ggml.eos_token_id", V::U32(7))
        .build();
    let w = GgufWeights::from_bytes("c.gguf", FileBytes::Owned(b)).unwrap();
    let map = w.hf_config().unwrap();
    assert_eq!(map["rms_norm_eps"], 1e-6);
    let c = ModelConfig::from_map(&map).unwrap();
    assert_eq!(c.architecture, "Qwen3ForCausalLM");
    assert_eq!((c.vocab_size, c.hidden_size, c.head_dim, c.num_key_value_heads), (100, 64, 32, 2));
    assert_eq!((c.max_position_embeddings, c.tie_word_embeddings, c.eos_token_ids.clone()), (4096, true, vec![7]));
    assert_eq!(c.layers[0].rope.as_ref().unwrap().theta, 1_000_000.0);
    let b = GgufBuilder::new().kv("general.architecture", V::Str("mamba".into())).build();
    let e = GgufWeights::from_bytes("m.gguf", FileBytes::Owned(b)).err().unwrap().to_string();
    assert!(e.contains("m.gguf") && e.contains("\"mamba\" is not supported"), "{e}");
}

/// sum_i bits(v[i]) * (i + 1) mod 2^64, as make_gguf_fixtures.py computes it.
fn checksum(v: &[f32]) -> u64 {
    v.iter().enumerate().fold(0u64, |acc, (i, x)| acc.wrapping_add((x.to_bits() as u64).wrapping_mul(i as u64 + 1)))
}

#[test]
fn file_written_by_gguf_py_reads_back_exactly_and_runs() {
    let path = gguf_common::fixture("gguf/tiny.gguf");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(gguf_common::fixture("gguf/tiny.json")).unwrap()).unwrap();
    let mut w = GgufWeights::open(&path).unwrap();
    let arch = w.architecture().to_string();
    assert_eq!(arch, "qwen2");
    for (gname, e) in expected.as_object().unwrap() {
        let info = w.gguf().tensor(gname).unwrap();
        assert_eq!(info.ggml_type.name(), e["type"], "{gname}");
        let hf = w.hf_names().into_iter().find(|n| tessera_core::weights::gguf::hf_to_gguf_name(&arch, n).unwrap().0 == *gname).unwrap();
        let t = w.get_any(&hf).unwrap();
        let shape: Vec<usize> = e["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
        assert_eq!(t.shape, shape, "{gname}");
        let v = t.to_f32();
        let first: Vec<f32> = e["first"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        assert_eq!(&v[..4], &first[..], "{gname}");
        assert_eq!(checksum(&v).to_string(), e["checksum"].as_str().unwrap(), "{gname}: values differ from gguf-py's dequantize");
    }
    let config = ModelConfig::from_map(&w.hf_config().unwrap()).unwrap();
    assert_eq!((config.architecture.as_str(), config.attention_bias, config.tie_word_embeddings), ("Qwen2ForCausalLM", true, true));
    assert_eq!((config.vocab_size, config.num_key_value_heads, config.intermediate_size), (10, 1, 32));
    let tok = tessera_core::tokenizer::Tokenizer::from_gguf(w.gguf()).unwrap();
    assert_eq!(tok.encode("abc a<|im_end|>", false).unwrap(), vec![8, 6, 2]);
    // Every tensor the qwen2 graph asks for is there; a forward pass runs on the CPU.
    w.set_dequantize_on_load(true);
    let b = tessera_core::backend::cpu::CpuBackend::new();
    let model = tessera_core::models::load_model(&b, &config, &w).unwrap();
    let mut r = tessera_core::engine::ModelRunner::new(b, model, 4, 16).unwrap();
    let p = tessera_core::engine::GenerateParams {
        max_tokens: 3,
        temperature: 0.0,
        ignore_eos: true,
        logprobs: None,
        seed: 0,
        eos_token_ids: vec![],
        max_model_len: 32,
    };
    let out = tessera_core::engine::generate(&mut r, &[1, 8, 6], &p).unwrap();
    assert_eq!(out.outputs[0].token_ids.len(), 3);
}

#[test]
fn names_round_trip_for_every_architecture() {
    use tessera_core::weights::gguf::{gguf_to_hf_name, hf_to_gguf_name, Fixup};
    let common = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight", "model.layers.7.input_layernorm.weight",
        "model.layers.7.self_attn.o_proj.weight", "model.layers.7.mlp.down_proj.weight"];
    let per_arch: &[(&str, &[&str])] = &[
        ("llama", &["model.layers.7.self_attn.q_proj.weight", "model.layers.7.self_attn.k_proj.weight", "model.layers.7.mlp.gate_proj.weight", "model.layers.7.mlp.up_proj.weight", "model.layers.7.post_attention_layernorm.weight"]),
        ("qwen2", &["model.layers.7.self_attn.q_proj.bias", "model.layers.7.self_attn.v_proj.bias", "model.layers.7.mlp.up_proj.weight"]),
        ("qwen3", &["model.layers.7.self_attn.q_norm.weight", "model.layers.7.self_attn.k_norm.weight"]),
        ("gemma3", &["model.layers.7.pre_feedforward_layernorm.weight", "model.layers.7.post_feedforward_layernorm.weight", "model.layers.7.post_attention_layernorm.weight", "model.layers.7.self_attn.q_norm.weight"]),
        ("phi3", &["model.layers.7.self_attn.qkv_proj.weight", "model.layers.7.mlp.gate_up_proj.weight"]),
    ];
    for (arch, names) in per_arch {
        for hf in common.iter().chain(names.iter()) {
            let (g, _) = hf_to_gguf_name(arch, hf).unwrap_or_else(|| panic!("{arch}: no GGUF name for {hf}"));
            assert_eq!(gguf_to_hf_name(arch, &g).as_deref(), Some(*hf), "{arch}: {hf} -> {g} -> back");
        }
    }
    assert_eq!(hf_to_gguf_name("llama", "model.layers.0.self_attn.q_proj.weight").unwrap().1, Fixup::UnpermuteQ);
    assert_eq!(hf_to_gguf_name("qwen2", "model.layers.0.self_attn.q_proj.weight").unwrap().1, Fixup::None);
    assert_eq!(hf_to_gguf_name("gemma3", "model.layers.0.post_feedforward_layernorm.weight").unwrap(), ("blk.0.post_ffw_norm.weight".into(), Fixup::MinusOne));
    assert_eq!(hf_to_gguf_name("gemma3", "model.norm.weight").unwrap().1, Fixup::MinusOne);
    assert_eq!(hf_to_gguf_name("llama", "model.layers.x.mlp.up_proj.weight"), None);
    // Gemma norms come back without llama.cpp's +1.
    let b = GgufBuilder::new().kv("general.architecture", V::Str("gemma3".into())).f32_tensor("output_norm.weight", &[2], &[1.5, 0.25]).build();
    let w = GgufWeights::from_bytes("g.gguf", FileBytes::Owned(b)).unwrap();
    assert_eq!(w.get("model.norm.weight", &[2]).unwrap().to_f32(), vec![0.5, -0.75]);
}
