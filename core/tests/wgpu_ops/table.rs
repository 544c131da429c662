//! The op-parity table's cases (the `Kind`s of cases.rs with their shapes), and the filter
//! that picks some by name; part of the `cases` module (cases.rs includes it).

use super::{Case, Kind};
use tessera_core::backend::{Activation, RopeStyle};
use tessera_core::tensor::DType;

fn case(name: &str, kind: Kind) -> Case {
    let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    Case { name: name.to_string(), seed, kind }
}

/// Every case of the table.
pub fn all_cases() -> Vec<Case> {
    use Kind::*;
    let mut v = vec![
        case("embedding/small", Embedding { vocab: 50, hidden: 37, tokens: 13, scale: 1.0 }),
        case("embedding/scaled", Embedding { vocab: 1000, hidden: 256, tokens: 5, scale: 16.0 }),
        case("embedding/one", Embedding { vocab: 7, hidden: 3, tokens: 1, scale: 0.5 }),
        case("add/odd", Add { shape: vec![13, 37] }),
        case("add/one", Add { shape: vec![1] }),
        case("add/wide", Add { shape: vec![4, 1024] }),
        case("rms_norm/odd", RmsNorm { rows: 5, width: 37, group: 37, offset: 0.0, f32_weight: false }),
        case("rms_norm/gemma", RmsNorm { rows: 3, width: 1024, group: 1024, offset: 1.0, f32_weight: false }),
        case("rms_norm/per_head", RmsNorm { rows: 7, width: 256, group: 64, offset: 0.0, f32_weight: false }),
        case("rms_norm/tiny_group", RmsNorm { rows: 4, width: 9, group: 3, offset: 0.0, f32_weight: false }),
        case("rms_norm/f32_weight", RmsNorm { rows: 6, width: 576, group: 576, offset: 0.0, f32_weight: true }),
        case("add_rms_norm/odd", AddRmsNorm { rows: 5, group: 37, offset: 0.0 }),
        case("add_rms_norm/gemma", AddRmsNorm { rows: 9, group: 576, offset: 1.0 }),
        case("gather_rows/repeats", GatherRows { rows: 10, cols: 37, count: 6 }),
        case("softcap/logits", Softcap { rows: 4, cols: 100, cap: 30.0 }),
        case("argmax/random", Argmax { rows: 3, cols: 1000, special: 0 }),
        case("argmax/wide", Argmax { rows: 2, cols: 3001, special: 0 }),
        case("argmax/ties", Argmax { rows: 4, cols: 50, special: 1 }),
        case("argmax/nan", Argmax { rows: 4, cols: 77, special: 2 }),
    ];
    for (m, k, n, bias) in [
        (1, 64, 96, false),
        (1, 300, 257, true),
        (3, 17, 5, false),
        (7, 128, 33, true),
        (8, 64, 64, false),
        (70, 300, 257, true),
        (128, 64, 96, false),
        (9, 1, 3, true),
        (5, 0, 4, true),
    ] {
        v.push(case(&format!("matmul/{m}x{k}x{n}{}", if bias { "+bias" } else { "" }), Matmul { m, k, n, bias, f32_weight: false }));
    }
    v.push(case("matmul/f32_weight_vec", Matmul { m: 2, k: 96, n: 50, bias: true, f32_weight: true }));
    v.push(case("matmul/f32_weight_tiled", Matmul { m: 33, k: 96, n: 50, bias: true, f32_weight: true }));
    for (dtype, k) in [
        (DType::Q4_0, 96),
        (DType::Q4_1, 288),
        (DType::Q5_0, 160),
        (DType::Q5_1, 64),
        (DType::Q8_0, 224),
        (DType::Q4_K, 256),
        (DType::Q5_K, 512),
        (DType::Q6_K, 768),
    ] {
        let q = dtype.hf_name().to_lowercase();
        for (m, n, bias) in [(1, 33, false), (3, 257, true), (8, 70, false), (70, 129, true)] {
            v.push(case(&format!("qmatmul/{q}/{m}x{k}x{n}{}", if bias { "+bias" } else { "" }), QMatmul { m, k, n, dtype, bias }));
        }
        v.push(case(&format!("qembedding/{q}"), QEmbedding { vocab: 37, hidden: k, tokens: 9, dtype, scale: 1.5 }));
    }
    // The fused decode matmuls (one dispatch for M < 8 on the wgpu backend, the tiled
    // matmuls per weight above): float and every GGUF format, M = 1, 2, 5 and 33.
    let many = |m, k, ns: &[usize], bias, quant, f32_weight| MatmulMany { m, k, ns: ns.to_vec(), bias, quant, f32_weight };
    for (m, bias) in [(1, false), (2, true), (5, false), (33, true)] {
        let b = if bias { "+bias" } else { "" };
        v.push(case(&format!("matmul_many/{m}x67x[65,19,19]{b}"), many(m, 67, &[65, 19, 19], bias, None, false)));
    }
    v.push(case("matmul_many/f32_weight", many(2, 96, &[50, 17, 17], true, None, true)));
    v.push(case("matmul_many/two", many(1, 64, &[33, 70], true, None, false)));
    v.push(case("matmul_many/four", many(3, 40, &[9, 31, 5, 12], false, None, false)));
    let formats = [(DType::Q4_0, 96), (DType::Q4_1, 288), (DType::Q5_0, 160), (DType::Q5_1, 64), (DType::Q8_0, 224), (DType::Q4_K, 256), (DType::Q5_K, 512), (DType::Q6_K, 768)];
    let acts = [(Activation::Silu, "silu"), (Activation::GeluTanh, "gelu_tanh"), (Activation::Gelu, "gelu")];
    for (i, &(dtype, k)) in formats.iter().enumerate() {
        let q = dtype.hf_name().to_lowercase();
        let (m, bias) = [(1, false), (2, true), (5, true)][i % 3];
        let b = if bias { "+bias" } else { "" };
        v.push(case(&format!("matmul_many/{q}/{m}x{k}x[33,17,17]{b}"), many(m, k, &[33, 17, 17], bias, Some(dtype), false)));
        let (act, a) = acts[i % 3];
        v.push(case(&format!("gated_matmul/{q}/{a}/{m}x{k}x33{b}"), GatedMatmul { m, k, n: 33, bias, quant: Some(dtype), act }));
    }
    v.push(case("matmul_many/q4_k/9x256x[33,17,17]", many(9, 256, &[33, 17, 17], true, Some(DType::Q4_K), false)));
    v.push(case("gated_matmul/q4_1/silu/9x288x33", GatedMatmul { m: 9, k: 288, n: 33, bias: false, quant: Some(DType::Q4_1), act: Activation::Silu }));
    for (act, name) in acts {
        for (m, bias) in [(1, false), (2, true), (5, false), (33, true)] {
            let b = if bias { "+bias" } else { "" };
            v.push(case(&format!("gated_matmul/{name}/{m}x67x65{b}"), GatedMatmul { m, k: 67, n: 65, bias, quant: None, act }));
        }
    }
    // The norm folded into the decode matvecs (one dispatch for M < 8 on the wgpu backend;
    // M = 9 runs add_rms_norm / rms_norm then the tiled matmuls).
    let norm = |m, k, ns: &[usize], bias, quant, residual, offset, f32_norm, act| NormMatmul { m, k, ns: ns.to_vec(), bias, quant, residual, offset, f32_norm, act };
    for (i, (m, residual, offset)) in [(1, true, 0.0), (2, false, 0.0), (5, true, 1.0), (9, true, 0.0), (1, false, 1.0)].into_iter().enumerate() {
        let tag = format!("{m}x{}{}", if residual { "+res" } else { "" }, if offset != 0.0 { "+gemma" } else { "" });
        let f32_norm = i % 2 == 0;
        v.push(case(&format!("norm_matmul_many/{tag}/576x[64,32,32]"), norm(m, 576, &[64, 32, 32], i == 2, None, residual, offset, f32_norm, None)));
        v.push(case(&format!("norm_matmul_many/{tag}/67x[65,19]"), norm(m, 67, &[65, 19], false, None, residual, offset, f32_norm, None)));
        let (act, a) = acts[i % 3];
        v.push(case(&format!("norm_gated_matmul/{tag}/{a}/96x70"), norm(m, 96, &[70], i == 1, None, residual, offset, f32_norm, Some(act))));
    }
    v.push(case("norm_matmul_many/one_weight/1x+res/64x[96]", norm(1, 64, &[96], true, None, true, 0.0, true, None)));
    v.push(case("norm_matmul_many/wide/1x+res/2000x[40,24,24]", norm(1, 2000, &[40, 24, 24], false, None, true, 0.0, true, None)));
    for (i, (dtype, k)) in [(DType::Q4_1, 288), (DType::Q8_0, 224), (DType::Q4_K, 256), (DType::Q6_K, 768)].into_iter().enumerate() {
        let q = dtype.hf_name().to_lowercase();
        let (m, residual) = [(1, true), (3, false), (1, true), (2, true)][i];
        let r = if residual { "+res" } else { "" };
        v.push(case(&format!("norm_matmul_many/{q}/{m}x{r}/{k}x[33,17,17]"), norm(m, k, &[33, 17, 17], i == 1, Some(dtype), residual, 0.0, true, None)));
        let (act, a) = acts[i % 3];
        v.push(case(&format!("norm_gated_matmul/{q}/{m}x{r}/{a}/{k}x40"), norm(m, k, &[40], false, Some(dtype), residual, 0.0, true, Some(act))));
    }
    for (act, name) in acts {
        v.push(case(&format!("act_mul/{name}"), ActMul { rows: 13, cols: 37, act }));
        v.push(case(&format!("act_mul/{name}_row"), ActMul { rows: 1, cols: 1536, act }));
    }
    let rope = |tokens, heads, head_dim, rotary_dim, style, per_token, scaling, max_pos| Rope {
        tokens,
        heads,
        head_dim,
        rotary_dim,
        style,
        per_token,
        scaling,
        max_pos,
    };
    v.push(case("rope/neox", rope(7, 3, 64, 64, RopeStyle::Neox, false, 1.0, 64)));
    v.push(case("rope/interleaved", rope(5, 2, 32, 32, RopeStyle::Interleaved, false, 1.0, 64)));
    v.push(case("rope/partial", rope(6, 4, 64, 32, RopeStyle::Neox, false, 1.0, 300)));
    v.push(case("rope/per_token_scaled", rope(9, 2, 48, 48, RopeStyle::Neox, true, 1.3, 2000)));
    v.push(case("rope/far_positions", rope(8, 1, 128, 128, RopeStyle::Neox, false, 1.0, 100_000)));
    v.push(case("rope/interleaved_partial", rope(3, 5, 10, 6, RopeStyle::Interleaved, true, 0.9, 40)));
    v.push(case("write_kv/padded", WriteKv { blocks: 6, block_size: 4, k_width: 24, v_width: 24, tokens: 9 }));
    v.push(case("write_kv/widths", WriteKv { blocks: 5, block_size: 3, k_width: 10, v_width: 6, tokens: 7 }));
    let attn = |seqs: &[(usize, usize)], heads, kv_heads, head_dim, block_size, window, softcap, pad_rows| Attention {
        seqs: seqs.to_vec(),
        heads,
        kv_heads,
        head_dim,
        block_size,
        window,
        softcap,
        pad_rows,
    };
    v.push(case("attention/decode_gqa", attn(&[(1, 17), (1, 1), (1, 40)], 4, 2, 32, 16, None, None, 0)));
    v.push(case("attention/prefill_mix", attn(&[(5, 5), (3, 20), (1, 33)], 4, 1, 64, 16, None, None, 0)));
    v.push(case("attention/window", attn(&[(9, 9), (4, 30)], 2, 2, 16, 4, Some(7), None, 0)));
    v.push(case("attention/softcap_pad", attn(&[(3, 12), (2, 2)], 3, 1, 24, 5, None, Some(20.0), 2)));
    v.push(case("attention/head_dim_80", attn(&[(2, 70)], 2, 1, 80, 16, None, None, 0)));
    v.push(case("attention/head_dim_256", attn(&[(3, 7)], 2, 2, 256, 4, None, Some(50.0), 0)));
    v.push(case("attention/long_window", attn(&[(2, 300), (1, 150)], 2, 1, 32, 16, Some(100), None, 0)));
    v.push(case("attention/block_size_1", attn(&[(4, 6)], 1, 1, 8, 1, None, None, 1)));
    v.push(case("attention/empty_seq", attn(&[(0, 5), (3, 3)], 2, 1, 16, 4, None, None, 0)));
    let rka = |seq_lens: &[usize], heads, kv_heads, head_dim, rotary_dim, style| RopeKvAttention { seq_lens: seq_lens.to_vec(), heads, kv_heads, head_dim, rotary_dim, style };
    v.push(case("rope_kv_attention/neox", rka(&[5, 40, 17], 4, 2, 16, 16, RopeStyle::Neox)));
    v.push(case("rope_kv_attention/interleaved_partial", rka(&[9, 1], 3, 1, 24, 12, RopeStyle::Interleaved)));
    v
}

/// The cases whose name contains `filter` (all when `None`); an error if none does.
pub fn select(filter: Option<&str>) -> Result<Vec<Case>, String> {
    let cases: Vec<Case> = all_cases().into_iter().filter(|c| filter.is_none_or(|f| c.name.contains(f))).collect();
    if cases.is_empty() {
        return Err(format!("op filter {filter:?} matches no case"));
    }
    Ok(cases)
}
