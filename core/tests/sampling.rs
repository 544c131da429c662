//! Sampling without a model: parameter validation names the field, the logits processors
//! compute vLLM's values, the per-request RNG stream is counter-based, and empirical
//! top-k / top-p / min-p / temperature distributions match the intended ones (chi-square).

use std::collections::BTreeMap;

use tessera_core::sample::{
    apply_logits_processors, candidate_set, sample_row, top_logprobs, Rng, RowContext, RowSampling, SamplingParams,
};

fn err(p: SamplingParams) -> String {
    p.validate(Some(100)).unwrap_err().to_string()
}

#[test]
fn validation_errors_name_the_field() {
    let d = SamplingParams::default;
    let cases: Vec<(SamplingParams, &str)> = vec![
        (SamplingParams { n: 0, ..d() }, "`n`"),
        (SamplingParams { temperature: -0.5, ..d() }, "`temperature`"),
        (SamplingParams { temperature: f32::NAN, ..d() }, "`temperature`"),
        (SamplingParams { top_p: 0.0, ..d() }, "`top_p`"),
        (SamplingParams { top_p: 1.5, ..d() }, "`top_p`"),
        (SamplingParams { top_k: -2, ..d() }, "`top_k`"),
        (SamplingParams { min_p: 1.5, ..d() }, "`min_p`"),
        (SamplingParams { presence_penalty: 3.0, ..d() }, "`presence_penalty`"),
        (SamplingParams { frequency_penalty: -2.5, ..d() }, "`frequency_penalty`"),
        (SamplingParams { repetition_penalty: 0.0, ..d() }, "`repetition_penalty`"),
        (SamplingParams { max_tokens: Some(0), ..d() }, "`max_tokens`"),
        (SamplingParams { min_tokens: 20, max_tokens: Some(10), ..d() }, "`min_tokens`"),
        (SamplingParams { stop: vec![String::new()], ..d() }, "`stop`"),
        (SamplingParams { logit_bias: BTreeMap::from([(5, 101.0)]), ..d() }, "`logit_bias`"),
        (SamplingParams { logit_bias: BTreeMap::from([(100, 1.0)]), ..d() }, "`logit_bias`"),
        (SamplingParams { allowed_token_ids: Some(vec![]), ..d() }, "`allowed_token_ids`"),
        (SamplingParams { allowed_token_ids: Some(vec![1, 200]), ..d() }, "`allowed_token_ids`"),
        (SamplingParams { stop_token_ids: vec![100], ..d() }, "`stop_token_ids`"),
    ];
    for (p, field) in cases {
        let e = err(p.clone());
        assert!(e.contains(field), "{p:?}: {e}");
    }
    assert!(d().validate(Some(100)).is_ok());
    assert!(SamplingParams { top_k: -1, ..d() }.validate(None).is_ok(), "-1 disables top_k like vLLM");
    // Serde: vLLM's JSON field names.
    let p: SamplingParams = serde_json::from_str(r#"{"temperature": 0, "max_tokens": 5, "stop": ["x"], "logit_bias": {"3": -1.5}}"#).unwrap();
    assert!(p.is_greedy() && p.max_tokens == Some(5) && p.stop == vec!["x"] && p.logit_bias[&3] == -1.5);
}

#[test]
fn the_rng_stream_is_a_pure_function_of_seed_and_index() {
    let mut r = Rng::new(42);
    for k in 0..100 {
        assert_eq!(r.next_u64(), Rng::nth_u64(42, k));
    }
    assert_ne!(Rng::nth_u64(42, 0), Rng::nth_u64(43, 0));
    assert!((0..1000).map(|k| Rng::nth_f64(7, k)).all(|u| (0.0..1.0).contains(&u)));
}

fn ctx<'a>(p: &'a SamplingParams, prompt: &'a [u32], output: &'a [u32], bad: &'a [Vec<u32>]) -> RowContext<'a> {
    RowContext { params: p, prompt, output, eos_token_ids: &[7], bad_words: bad }
}

#[test]
fn processors_follow_vllm_semantics() {
    let base = vec![2.0f32, -2.0, 1.0, 1.0, 0.5, 0.0, 3.0, 4.0];
    // Repetition: tokens in prompt or output; positive divided, negative multiplied.
    let p = SamplingParams { repetition_penalty: 2.0, ..SamplingParams::default() };
    let mut l = base.clone();
    apply_logits_processors(&mut l, &ctx(&p, &[0], &[1], &[]));
    assert_eq!(&l[..3], &[1.0, -4.0, 1.0]);
    // Frequency (per occurrence) and presence (once), output tokens only.
    let p = SamplingParams { frequency_penalty: 0.5, presence_penalty: 0.25, ..SamplingParams::default() };
    let mut l = base.clone();
    apply_logits_processors(&mut l, &ctx(&p, &[3], &[2, 2, 4], &[]));
    assert_eq!((l[2], l[3], l[4]), (1.0 - 1.0 - 0.25, 1.0, 0.5 - 0.5 - 0.25));
    // Bias, allowed ids, bad words (single token always; multi-token after its prefix).
    let p = SamplingParams {
        logit_bias: BTreeMap::from([(5, 10.0)]),
        allowed_token_ids: Some(vec![0, 2, 5, 6]),
        ..SamplingParams::default()
    };
    let bad = vec![vec![6], vec![1, 0]];
    let mut l = base.clone();
    apply_logits_processors(&mut l, &ctx(&p, &[], &[3, 1], &bad));
    assert_eq!(l[5], 10.0);
    assert_eq!(l[2], 1.0);
    for t in [0, 1, 3, 4, 6, 7] {
        assert_eq!(l[t], f32::NEG_INFINITY, "token {t}");
    }
    let mut l = base.clone();
    apply_logits_processors(&mut l, &ctx(&p, &[], &[3], &bad));
    assert_eq!(l[0], 2.0, "bad word [1, 0] only after 1");
    // min_tokens suppresses eos and stop tokens until reached (not eos with ignore_eos).
    let p = SamplingParams { min_tokens: 2, stop_token_ids: vec![6], ..SamplingParams::default() };
    let mut l = base.clone();
    apply_logits_processors(&mut l, &ctx(&p, &[], &[1], &[]));
    assert_eq!((l[6], l[7]), (f32::NEG_INFINITY, f32::NEG_INFINITY));
    let mut l = base.clone();
    apply_logits_processors(&mut l, &ctx(&p, &[], &[1, 1], &[]));
    assert_eq!((l[6], l[7]), (3.0, 4.0));
    let p = SamplingParams { min_tokens: 2, ignore_eos: true, ..SamplingParams::default() };
    let mut l = base.clone();
    apply_logits_processors(&mut l, &ctx(&p, &[], &[], &[]));
    assert_eq!(l[7], 4.0);
}

const LOGITS: [f32; 8] = [2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -2.0];

/// The intended distribution, computed here from first principles.
fn intended(temp: f64, top_k: usize, top_p: f64, min_p: f64) -> Vec<f64> {
    let w: Vec<f64> = LOGITS.iter().map(|&x| (x as f64 / temp).exp()).collect(); // already sorted desc
    let mut keep = vec![true; w.len()];
    for (i, k) in keep.iter_mut().enumerate() {
        *k = top_k == 0 || i < top_k;
    }
    let mass: f64 = w.iter().zip(&keep).filter(|x| *x.1).map(|x| x.0).sum();
    let mut before = 0.0;
    for i in 0..w.len() {
        if keep[i] {
            if i > 0 && before >= top_p * mass {
                keep[i] = false;
            }
            before += w[i];
        }
    }
    for i in 0..w.len() {
        if w[i] < min_p * w[0] {
            keep[i] = false;
        }
    }
    let total: f64 = w.iter().zip(&keep).filter(|x| *x.1).map(|x| x.0).sum();
    w.iter().zip(&keep).map(|(w, k)| if *k { w / total } else { 0.0 }).collect()
}

#[test]
fn empirical_distributions_match_the_intended_ones() {
    const N: u64 = 20_000;
    let cases = [(1.0, 0, 1.0, 0.0), (0.7, 0, 1.0, 0.0), (1.0, 3, 1.0, 0.0), (1.0, 0, 0.7, 0.0), (1.0, 0, 1.0, 0.2), (1.3, 5, 0.9, 0.05)];
    for (ci, &(t, k, p, m)) in cases.iter().enumerate() {
        let want = intended(t, k, p, m);
        let mut counts = [0u64; 8];
        for i in 0..N {
            let r = RowSampling { temperature: t as f32, top_k: k as u32, top_p: p as f32, min_p: m as f32, uniform: Rng::nth_f64(1000 + ci as u64, i) };
            counts[sample_row(&LOGITS, &r) as usize] += 1;
        }
        let mut chi2 = 0.0;
        let mut dof = 0;
        for (c, w) in counts.iter().zip(&want) {
            if *w == 0.0 {
                assert_eq!(*c, 0, "case {ci}: a token outside the allowed set was drawn: {counts:?} vs {want:?}");
            } else {
                let e = w * N as f64;
                chi2 += (*c as f64 - e).powi(2) / e;
                dof += 1;
            }
        }
        // 99.9th percentile of chi-square with <= 7 dof is 24.3.
        assert!(chi2 < 24.3, "case {ci} (T={t}, k={k}, p={p}, min_p={m}): chi2 {chi2:.1} over {} dof: {counts:?} vs {want:?}", dof - 1);
        // The kernel's candidate set agrees with the intended support.
        let r = RowSampling { temperature: t as f32, top_k: k as u32, top_p: p as f32, min_p: m as f32, uniform: 0.5 };
        let support: Vec<u32> = candidate_set(&LOGITS, &r).iter().map(|x| x.0).collect();
        let want_support: Vec<u32> = (0..8).filter(|&i| want[i as usize] > 0.0).collect();
        assert_eq!(support, want_support, "case {ci}");
    }
    // Explicit supports for the single-knob cases.
    assert_eq!(intended(1.0, 3, 1.0, 0.0).iter().filter(|&&x| x > 0.0).count(), 3);
    assert_eq!(intended(1.0, 0, 0.7, 0.0).iter().filter(|&&x| x > 0.0).count(), 3, "0.40 + 0.24 < 0.7 <= + 0.15");
    assert_eq!(intended(1.0, 0, 1.0, 0.2).iter().filter(|&&x| x > 0.0).count(), 4, "e^-1.5 = 0.22 >= 0.2 > e^-2");
}

#[test]
fn greedy_is_argmax_and_logprobs_include_the_chosen_token() {
    let r = RowSampling::greedy();
    assert_eq!(sample_row(&[0.0, 3.0, 3.0, 1.0], &r), 1, "first index on ties");
    let lp = top_logprobs(&[-0.1, -3.0, -2.0, -5.0], 2, 3);
    assert_eq!(lp, vec![(0, -0.1), (2, -2.0), (3, -5.0)]);
    assert_eq!(top_logprobs(&[-0.1, -3.0, -2.0], 2, 2).len(), 2);
}
