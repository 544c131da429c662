//! config.json parsing: transformers 5 files and older ones give the same model, and each
//! family's quirks land where the graph reads them.

use serde_json::{json, Value};
use tessera_core::config::{Family, LayerType, ModelConfig, RopeScaling};

fn fixture(name: &str) -> Value {
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models").join(name).join("config.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn parse(v: &Value) -> ModelConfig {
    ModelConfig::from_json_str(&v.to_string()).unwrap()
}

/// Rewrites a transformers 5 config the way transformers 4.x wrote it.
fn to_v4(mut v: Value) -> Value {
    let o = v.as_object_mut().unwrap();
    let rp = o.remove("rope_parameters").unwrap();
    if let Some(full) = rp.get("full_attention") {
        o.insert("rope_theta".into(), full["rope_theta"].clone());
        o.insert("rope_local_base_freq".into(), rp["sliding_attention"]["rope_theta"].clone());
        let mut s = full.clone();
        s.as_object_mut().unwrap().remove("rope_theta");
        o.insert("rope_scaling".into(), s);
    } else {
        let mut s = rp.as_object().unwrap().clone();
        o.insert("rope_theta".into(), s.remove("rope_theta").unwrap());
        if let Some(p) = s.remove("partial_rotary_factor") {
            o.insert("partial_rotary_factor".into(), p);
        }
        let kind = s.remove("rope_type").unwrap();
        if kind != "default" {
            s.insert("type".into(), kind); // the oldest spelling
            o.insert("rope_scaling".into(), Value::Object(s));
        } else {
            o.insert("rope_scaling".into(), Value::Null);
        }
    }
    v
}

#[test]
fn old_and_new_config_files_agree() {
    for name in ["llama", "mistral", "qwen2", "qwen3", "smollm3", "phi3", "gemma3"] {
        let new = parse(&fixture(name));
        let old = parse(&to_v4(fixture(name)));
        assert_eq!(new.layers, old.layers, "{name}: layers differ between v5 and v4 files");
        assert_eq!(new.head_dim, old.head_dim);
        assert_eq!(new.attention_scale, old.attention_scale);
    }
}

#[test]
fn family_quirks_are_read() {
    let c = parse(&fixture("llama"));
    assert_eq!((c.family, c.head_dim, c.tie_word_embeddings), (Family::Llama, 16, false));
    assert!(matches!(c.layers[0].rope.as_ref().unwrap().scaling, RopeScaling::Llama3 { .. }));

    let c = parse(&fixture("qwen2"));
    assert!(c.attention_bias, "Qwen2 always has q/k/v bias");
    assert_eq!(c.layers[0].sliding_window, None);
    assert_eq!(c.layers[1].sliding_window, Some(24));

    let c = parse(&fixture("qwen3"));
    assert_eq!(c.head_dim, 32);
    assert!(matches!(c.layers[0].rope.as_ref().unwrap().scaling, RopeScaling::Dynamic { factor } if factor == 2.0));

    let c = parse(&fixture("smollm3"));
    let rope: Vec<bool> = c.layers.iter().map(|l| l.rope.is_some()).collect();
    assert_eq!(rope, [true, true, true, false]);

    let c = parse(&fixture("gemma3"));
    assert_eq!(c.layers[0].layer_type, LayerType::SlidingAttention);
    assert_eq!(c.layers[0].sliding_window, Some(16));
    assert_eq!(c.layers[1].sliding_window, None);
    assert_eq!(c.layers[0].rope.as_ref().unwrap().theta, 10000.0);
    assert_eq!(c.layers[1].rope.as_ref().unwrap().theta, 1e6);
    assert!((c.attention_scale - 24f32.powf(-0.5)).abs() < 1e-7);
    assert_eq!(c.final_logit_softcapping, Some(30.0));
    assert!(c.tie_word_embeddings);

    let c = parse(&fixture("phi3"));
    assert_eq!(c.layers[0].rope.as_ref().unwrap().rotary_dim, 8, "partial_rotary_factor 0.5 of head_dim 16");
    assert_eq!(c.layers[0].sliding_window, None);

    let c = parse(&fixture("mistral"));
    assert!(c.layers.iter().all(|l| l.sliding_window == Some(32)));
}

#[test]
fn derived_fields_when_absent() {
    // Older Gemma 3 files: no layer_types, a sliding_window_pattern instead.
    let mut g = to_v4(fixture("gemma3"));
    g.as_object_mut().unwrap().remove("layer_types");
    g["sliding_window_pattern"] = json!(2);
    let c = parse(&g);
    let kinds: Vec<LayerType> = c.layers.iter().map(|l| l.layer_type).collect();
    use LayerType::*;
    assert_eq!(kinds, [SlidingAttention, FullAttention, SlidingAttention, FullAttention]);

    // SmolLM3 without the list: every 4th layer is NoPE.
    let mut s = fixture("smollm3");
    s.as_object_mut().unwrap().remove("no_rope_layers");
    let c = parse(&s);
    assert_eq!(c.layers.iter().map(|l| l.rope.is_some()).collect::<Vec<_>>(), [true, true, true, false]);

    // Qwen2 keeps sliding_window in the file but ignores it without use_sliding_window.
    let mut q = fixture("qwen2");
    q["use_sliding_window"] = json!(false);
    assert!(parse(&q).layers.iter().all(|l| l.sliding_window.is_none()));

    // No num_key_value_heads = MHA; eos as a list.
    let mut l = fixture("llama");
    l.as_object_mut().unwrap().remove("num_key_value_heads");
    l["eos_token_id"] = json!([2, 7]);
    let c = parse(&l);
    assert_eq!(c.num_key_value_heads, c.num_attention_heads);
    assert_eq!(c.eos_token_ids, [2, 7]);
}
