//! The op-parity table: every case builds its inputs from a seed, runs one op on any
//! `Backend` and returns the outputs, so the same case runs on the CPU reference and on the
//! backend under test. Generic and async (read-backs are async), so the browser run
//! (wasm-bindgen-test) can include this file unchanged.
//!
//! In f16 runs the random inputs are rounded to f16 first and uploaded as f16, so both
//! backends see identical values and only the computation differs.

use tessera_core::backend::{decode_first, Activation, AttentionMetadata, AttentionParams, Backend, BackendError, Normed, RopeParams, RopeStyle};
use tessera_core::tensor::{DType, HostTensor};

// The table itself (every case and its shapes): table.rs, next to this file.
#[path = "table.rs"]
mod table;
pub use table::select;

/// xorshift64*: a tiny seeded PRNG.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % u64::from(n.max(1))) as u32
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i as u32 + 1) as usize);
        }
    }
}

/// Storage dtype of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dt {
    F32,
    F16,
}

impl Dt {
    /// ‖out − ref‖∞ / ‖ref‖∞ must stay below this.
    pub fn tolerance(self) -> f64 {
        match self {
            Dt::F32 => 1e-5,
            Dt::F16 => 1e-2,
        }
    }
}

/// What a case computes, with its shapes.
#[derive(Clone, Debug)]
pub enum Kind {
    Embedding { vocab: usize, hidden: usize, tokens: usize, scale: f32 },
    /// `f32_weight`: the weight (and bias) stay f32 in f16 runs (f32 checkpoints).
    Matmul { m: usize, k: usize, n: usize, bias: bool, f32_weight: bool },
    Add { shape: Vec<usize> },
    RmsNorm { rows: usize, width: usize, group: usize, offset: f32, f32_weight: bool },
    AddRmsNorm { rows: usize, group: usize, offset: f32 },
    Rope { tokens: usize, heads: usize, head_dim: usize, rotary_dim: usize, style: RopeStyle, per_token: bool, scaling: f32, max_pos: u32 },
    ActMul { rows: usize, cols: usize, act: Activation },
    WriteKv { blocks: usize, block_size: usize, k_width: usize, v_width: usize, tokens: usize },
    /// `seqs`: (q_len, seq_len) per sequence; `pad_rows` query rows after the last sequence.
    Attention {
        seqs: Vec<(usize, usize)>,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        block_size: usize,
        window: Option<usize>,
        softcap: Option<f32>,
        pad_rows: usize,
    },
    /// A decode step's attention part as the layers call it: `rope(q)`, `rope(k)`, `write_kv`,
    /// `paged_attention`, one query per sequence of `seq_lens`; outputs the attention, q and
    /// the k cache (the wgpu backend defers the ropes into write_kv / attention).
    RopeKvAttention { seq_lens: Vec<usize>, heads: usize, kv_heads: usize, head_dim: usize, rotary_dim: usize, style: RopeStyle },
    GatherRows { rows: usize, cols: usize, count: usize },
    Softcap { rows: usize, cols: usize, cap: f32 },
    /// `special`: 0 = random, 1 = many ties, 2 = a NaN in every other row.
    Argmax { rows: usize, cols: usize, special: u8 },
    /// `x · wᵀ` with w `[n, k]` in a GGUF block format (random blocks). The reference is the
    /// CPU backend on the dequantized f32 weight (its own quantized path rounds x to Q8).
    QMatmul { m: usize, k: usize, n: usize, dtype: DType, bias: bool },
    /// Embedding rows of a table in a GGUF block format.
    QEmbedding { vocab: usize, hidden: usize, tokens: usize, dtype: DType, scale: f32 },
    /// `matmul_many`: weights `[n, k]` for each n of `ns` on one x (q/k/v); `quant` = a GGUF
    /// block format (else float, kept f32 in f16 runs with `f32_weight`); outputs all.
    MatmulMany { m: usize, k: usize, ns: Vec<usize>, bias: bool, quant: Option<DType>, f32_weight: bool },
    /// `gated_matmul`: act(x · gateᵀ (+ bg)) * (x · upᵀ (+ bu)), gate and up `[n, k]`.
    GatedMatmul { m: usize, k: usize, n: usize, bias: bool, quant: Option<DType>, act: Activation },
    /// `norm_matmul_many` (`act: None`) or `norm_gated_matmul` (`act`, two weights `[ns[0], k]`)
    /// of `rms_norm(x (+ residual))` (norm weight f32 with `f32_norm`, as GGUF keeps it; Gemma's
    /// `offset`); outputs the products, then `x + residual`.
    NormMatmul {
        m: usize,
        k: usize,
        ns: Vec<usize>,
        bias: bool,
        quant: Option<DType>,
        residual: bool,
        offset: f32,
        f32_norm: bool,
        act: Option<Activation>,
    },
}

#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub seed: u64,
    pub kind: Kind,
}

/// An output read back to the host.
#[derive(Debug)]
pub enum Out {
    F(Vec<f32>),
    U(Vec<u32>),
}

// ---- inputs ---------------------------------------------------------------------------------

fn round(v: Vec<f32>, dt: Dt) -> Vec<f32> {
    match dt {
        Dt::F32 => v,
        Dt::F16 => v.into_iter().map(|x| half::f16::from_f32(x).to_f32()).collect(),
    }
}

fn values(rng: &mut Rng, n: usize, amp: f32, dt: Dt) -> Vec<f32> {
    round((0..n).map(|_| rng.f32() * amp).collect(), dt)
}

/// `values` as a host tensor of the run's dtype (values are already representable).
fn host(values: &[f32], shape: &[usize], dt: Dt) -> HostTensor<'static> {
    match dt {
        Dt::F32 => HostTensor::from_f32(values, shape),
        Dt::F16 => HostTensor {
            dtype: DType::F16,
            shape: shape.to_vec(),
            data: values.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect::<Vec<u8>>().into(),
        },
    }
}

struct Inputs<'b, B: Backend> {
    be: &'b B,
    rng: Rng,
    dt: Dt,
}

impl<B: Backend> Inputs<'_, B> {
    /// A random float tensor (amplitude `amp`); f32 storage when `keep_f32`.
    fn float(&mut self, shape: &[usize], amp: f32, keep_f32: bool) -> Result<B::Tensor, BackendError> {
        let dt = if keep_f32 { Dt::F32 } else { self.dt };
        let v = values(&mut self.rng, shape.iter().product(), amp, dt);
        self.be.upload(&host(&v, shape, dt))
    }
    fn ids(&mut self, n: usize, below: u32) -> Result<B::Tensor, BackendError> {
        let v: Vec<u32> = (0..n).map(|_| self.rng.below(below)).collect();
        self.be.upload_u32(&v, &[n])
    }
}

/// Random blocks of `dtype` for `numel` elements: random bytes, with every f16 field of a block
/// (scales, mins) set to a small finite value so no block decodes to inf / NaN.
pub fn random_blocks(rng: &mut Rng, dtype: DType, numel: usize) -> Vec<u8> {
    let (bl, bb) = (dtype.block_len(), dtype.block_bytes());
    let halves: &[usize] = match dtype {
        DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => &[0, 2],
        DType::Q6_K => &[208],
        _ => &[0],
    };
    let amp = if bl == 256 { 0.004 } else { 0.05 };
    let mut bytes: Vec<u8> = (0..numel / bl * bb).map(|_| rng.next_u64() as u8).collect();
    for block in bytes.chunks_exact_mut(bb) {
        for &at in halves {
            let v = half::f16::from_f32(rng.f32() * amp);
            block[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
    bytes
}

/// A quantized weight as the backend under test gets it (raw blocks) or, on the CPU
/// reference, dequantized to f32 (the exact values the shaders decode).
fn quant_weight<B: Backend>(be: &B, rng: &mut Rng, dtype: DType, shape: &[usize]) -> Result<B::Tensor, BackendError> {
    let blocks = random_blocks(rng, dtype, shape.iter().product());
    let t = HostTensor { dtype, shape: shape.to_vec(), data: blocks.into() };
    if be.name() == "cpu" {
        be.upload(&HostTensor::from_f32(&t.to_f32(), shape))
    } else {
        be.upload(&t)
    }
}

async fn floats<B: Backend>(be: &B, t: &B::Tensor) -> Result<Out, BackendError> {
    Ok(Out::F(be.to_host(t).await?.to_f32()))
}

async fn uints<B: Backend>(be: &B, t: &B::Tensor) -> Result<Out, BackendError> {
    Ok(Out::U(be.to_host(t).await?.to_u32()))
}

// ---- running a case -------------------------------------------------------------------------

/// Runs `c` on `be` with inputs of `dt` and returns its outputs.
pub async fn run<B: Backend>(be: &B, c: &Case, dt: Dt) -> Result<Vec<Out>, BackendError> {
    let mut inp = Inputs { be, rng: Rng::new(c.seed), dt };
    match &c.kind {
        Kind::Embedding { vocab, hidden, tokens, scale } => {
            let table = inp.float(&[*vocab, *hidden], 1.0, false)?;
            let ids = inp.ids(*tokens, *vocab as u32)?;
            Ok(vec![floats(be, &be.embedding(&table, &ids, *scale)?).await?])
        }
        Kind::Matmul { m, k, n, bias, f32_weight } => {
            let x = inp.float(&[*m, *k], 1.0, false)?;
            let w = inp.float(&[*n, *k], 0.5, *f32_weight)?;
            let b = if *bias { Some(inp.float(&[*n], 1.0, *f32_weight)?) } else { None };
            Ok(vec![floats(be, &be.matmul(&x, &w, b.as_ref())?).await?])
        }
        Kind::Add { shape } => {
            let a = inp.float(shape, 2.0, false)?;
            let b = inp.float(shape, 2.0, false)?;
            Ok(vec![floats(be, &be.add(&a, &b)?).await?])
        }
        Kind::RmsNorm { rows, width, group, offset, f32_weight } => {
            let x = inp.float(&[*rows, *width], 3.0, false)?;
            let w = inp.float(&[*group], 1.0, *f32_weight)?;
            Ok(vec![floats(be, &be.rms_norm(&x, &w, 1e-6, *offset)?).await?])
        }
        Kind::AddRmsNorm { rows, group, offset } => {
            let x = inp.float(&[*rows, *group], 3.0, false)?;
            let r = inp.float(&[*rows, *group], 3.0, false)?;
            let w = inp.float(&[*group], 1.0, false)?;
            let (normed, sum) = be.add_rms_norm(&x, &r, &w, 1e-5, *offset)?;
            Ok(vec![floats(be, &normed).await?, floats(be, &sum).await?])
        }
        Kind::Rope { tokens, heads, head_dim, rotary_dim, style, per_token, scaling, max_pos } => {
            let mut x = inp.float(&[*tokens, heads * head_dim], 1.0, false)?;
            let positions: Vec<u32> = (0..*tokens).map(|_| inp.rng.below(*max_pos)).collect();
            let positions = be.upload_u32(&positions, &[*tokens])?;
            let half = rotary_dim / 2;
            let rows = if *per_token { *tokens } else { 1 };
            let freqs: Vec<f32> = (0..rows)
                .flat_map(|r| (0..half).map(move |i| (10000f64 * (1.0 + r as f64)).powf(-((2 * i) as f64) / *rotary_dim as f64) as f32))
                .collect();
            let shape = if *per_token { vec![*tokens, half] } else { vec![half] };
            let inv_freq = be.upload(&HostTensor::from_f32(&freqs, &shape))?;
            let p = RopeParams { head_dim: *head_dim, rotary_dim: *rotary_dim, style: *style, attention_scaling: *scaling };
            be.rope(&mut x, &positions, &inv_freq, p)?;
            Ok(vec![floats(be, &x).await?])
        }
        Kind::ActMul { rows, cols, act } => {
            let g = inp.float(&[*rows, *cols], 6.0, false)?;
            let u = inp.float(&[*rows, *cols], 2.0, false)?;
            Ok(vec![floats(be, &be.act_mul(&g, &u, *act)?).await?])
        }
        Kind::WriteKv { blocks, block_size, k_width, v_width, tokens } => {
            let mut kc = inp.float(&[*blocks, *block_size, *k_width], 1.0, false)?;
            let mut vc = inp.float(&[*blocks, *block_size, *v_width], 1.0, false)?;
            let k = inp.float(&[*tokens, *k_width], 1.0, false)?;
            let v = inp.float(&[*tokens, *v_width], 1.0, false)?;
            let mut slots: Vec<u32> = (0..(blocks * block_size) as u32).collect();
            inp.rng.shuffle(&mut slots);
            slots.truncate(*tokens);
            slots[1] = u32::MAX;
            slots[tokens - 1] = u32::MAX;
            let slots = be.upload_u32(&slots, &[*tokens])?;
            be.write_kv(&mut kc, &mut vc, &k, &v, &slots)?;
            Ok(vec![floats(be, &kc).await?, floats(be, &vc).await?])
        }
        Kind::Attention { seqs, heads, kv_heads, head_dim, block_size, window, softcap, pad_rows } => {
            let bs = *block_size;
            let need: usize = seqs.iter().map(|&(_, l)| l.div_ceil(bs)).sum();
            let num_blocks = need + 4;
            let mut free: Vec<u32> = (1..num_blocks as u32).collect();
            inp.rng.shuffle(&mut free);
            let max_blocks = seqs.iter().map(|&(_, l)| l.div_ceil(bs)).max().unwrap_or(0) + 1;
            let (mut tables, mut qsl, mut lens) = (vec![0u32; seqs.len() * max_blocks], vec![0u32], Vec::new());
            for (b, &(q_len, seq_len)) in seqs.iter().enumerate() {
                for j in 0..seq_len.div_ceil(bs) {
                    tables[b * max_blocks + j] = free.pop().expect("enough blocks");
                }
                qsl.push(qsl[b] + q_len as u32);
                lens.push(seq_len as u32);
            }
            let tokens = *qsl.last().unwrap() as usize + pad_rows;
            let q = inp.float(&[tokens, heads * head_dim], 1.0, false)?;
            let kc = inp.float(&[num_blocks, bs, kv_heads * head_dim], 1.0, false)?;
            let vc = inp.float(&[num_blocks, bs, kv_heads * head_dim], 1.0, false)?;
            let meta = AttentionMetadata {
                query_start_loc: be.upload_u32(&qsl, &[seqs.len() + 1])?,
                seq_lens: be.upload_u32(&lens, &[seqs.len()])?,
                block_tables: be.upload_u32(&tables, &[seqs.len(), max_blocks])?,
                seq_order: be.upload_u32(&decode_first(&qsl).0, &[seqs.len()])?,
                num_seqs: seqs.len(),
                num_decode_seqs: decode_first(&qsl).1,
                max_blocks_per_seq: max_blocks,
                block_size: bs,
                max_query_len: seqs.iter().map(|s| s.0).max().unwrap_or(0),
                max_seq_len: seqs.iter().map(|s| s.1).max().unwrap_or(0),
            };
            let p = AttentionParams {
                num_heads: *heads,
                num_kv_heads: *kv_heads,
                head_dim: *head_dim,
                scale: 1.0 / (*head_dim as f32).sqrt() * 2.0,
                sliding_window: *window,
                softcap: *softcap,
            };
            Ok(vec![floats(be, &be.paged_attention(&q, &kc, &vc, &meta, &p)?).await?])
        }
        Kind::RopeKvAttention { seq_lens, heads, kv_heads, head_dim, rotary_dim, style } => {
            let (bs, n) = (4usize, seq_lens.len());
            let max_blocks = seq_lens.iter().map(|l| l.div_ceil(bs)).max().unwrap_or(0);
            let num_blocks = n * max_blocks + 1;
            let mut free: Vec<u32> = (1..num_blocks as u32).collect();
            inp.rng.shuffle(&mut free);
            let mut tables = vec![0u32; n * max_blocks];
            let mut slots = Vec::new();
            for (b, &l) in seq_lens.iter().enumerate() {
                for j in 0..l.div_ceil(bs) {
                    tables[b * max_blocks + j] = free.pop().expect("enough blocks");
                }
                slots.push(tables[b * max_blocks + (l - 1) / bs] * bs as u32 + ((l - 1) % bs) as u32);
            }
            let positions: Vec<u32> = seq_lens.iter().map(|&l| l as u32 - 1).collect();
            let mut q = inp.float(&[n, heads * head_dim], 1.0, false)?;
            let mut k = inp.float(&[n, kv_heads * head_dim], 1.0, false)?;
            let v = inp.float(&[n, kv_heads * head_dim], 1.0, false)?;
            let mut kc = inp.float(&[num_blocks, bs, kv_heads * head_dim], 1.0, false)?;
            let mut vc = inp.float(&[num_blocks, bs, kv_heads * head_dim], 1.0, false)?;
            let half = rotary_dim / 2;
            let freqs: Vec<f32> = (0..half).map(|i| 10000f32.powf(-((2 * i) as f32) / *rotary_dim as f32)).collect();
            let inv_freq = be.upload(&HostTensor::from_f32(&freqs, &[half]))?;
            let positions = be.upload_u32(&positions, &[n])?;
            let rp = RopeParams { head_dim: *head_dim, rotary_dim: *rotary_dim, style: *style, attention_scaling: 1.0 };
            be.rope(&mut q, &positions, &inv_freq, rp)?;
            be.rope(&mut k, &positions, &inv_freq, rp)?;
            be.write_kv(&mut kc, &mut vc, &k, &v, &be.upload_u32(&slots, &[n])?)?;
            let qsl: Vec<u32> = (0..=n as u32).collect();
            let (order, decodes) = decode_first(&qsl);
            let meta = AttentionMetadata {
                query_start_loc: be.upload_u32(&qsl, &[n + 1])?,
                seq_lens: be.upload_u32(&seq_lens.iter().map(|&l| l as u32).collect::<Vec<_>>(), &[n])?,
                block_tables: be.upload_u32(&tables, &[n, max_blocks])?,
                seq_order: be.upload_u32(&order, &[n])?,
                num_seqs: n,
                num_decode_seqs: decodes,
                max_blocks_per_seq: max_blocks,
                block_size: bs,
                max_query_len: 1,
                max_seq_len: seq_lens.iter().copied().max().unwrap_or(0),
            };
            let p = AttentionParams {
                num_heads: *heads,
                num_kv_heads: *kv_heads,
                head_dim: *head_dim,
                scale: 1.0 / (*head_dim as f32).sqrt(),
                sliding_window: None,
                softcap: None,
            };
            let o = be.paged_attention(&q, &kc, &vc, &meta, &p)?;
            Ok(vec![floats(be, &o).await?, floats(be, &q).await?, floats(be, &kc).await?])
        }
        Kind::GatherRows { rows, cols, count } => {
            let x = inp.float(&[*rows, *cols], 1.0, false)?;
            let idx = inp.ids(*count, *rows as u32)?;
            Ok(vec![floats(be, &be.gather_rows(&x, &idx)?).await?])
        }
        Kind::Softcap { rows, cols, cap } => {
            let x = inp.float(&[*rows, *cols], 60.0, false)?;
            Ok(vec![floats(be, &be.softcap(&x, *cap)?).await?])
        }
        Kind::Argmax { rows, cols, special } => {
            let mut v = values(&mut inp.rng, rows * cols, 4.0, dt);
            match special {
                1 => v.iter_mut().for_each(|x| *x = x.round()),
                2 => (0..*rows).step_by(2).for_each(|r| v[r * cols + (r * 7 + 3) % cols] = f32::NAN),
                _ => {}
            }
            let x = be.upload(&host(&v, &[*rows, *cols], dt))?;
            Ok(vec![uints(be, &be.argmax(&x)?).await?])
        }
        Kind::QMatmul { m, k, n, dtype, bias } => {
            let x = inp.float(&[*m, *k], 1.0, false)?;
            let w = quant_weight(be, &mut inp.rng, *dtype, &[*n, *k])?;
            let b = if *bias { Some(inp.float(&[*n], 1.0, false)?) } else { None };
            Ok(vec![floats(be, &be.matmul(&x, &w, b.as_ref())?).await?])
        }
        Kind::QEmbedding { vocab, hidden, tokens, dtype, scale } => {
            let table = quant_weight(be, &mut inp.rng, *dtype, &[*vocab, *hidden])?;
            let ids = inp.ids(*tokens, *vocab as u32)?;
            Ok(vec![floats(be, &be.embedding(&table, &ids, *scale)?).await?])
        }
        Kind::MatmulMany { m, k, ns, bias, quant, f32_weight } => {
            let x = inp.float(&[*m, *k], 1.0, false)?;
            let mut ws = Vec::new();
            for &n in ns {
                let w = match quant {
                    Some(d) => quant_weight(be, &mut inp.rng, *d, &[n, *k])?,
                    None => inp.float(&[n, *k], 0.5, *f32_weight)?,
                };
                let b = if *bias { Some(inp.float(&[n], 1.0, *f32_weight)?) } else { None };
                ws.push((w, b));
            }
            let parts: Vec<_> = ws.iter().map(|(w, b)| (w, b.as_ref())).collect();
            let mut outs = Vec::new();
            for t in be.matmul_many(&x, &parts)? {
                outs.push(floats(be, &t).await?);
            }
            Ok(outs)
        }
        Kind::GatedMatmul { m, k, n, bias, quant, act } => {
            let x = inp.float(&[*m, *k], 1.0, false)?;
            let mut ws = Vec::new();
            for _ in 0..2 {
                let w = match quant {
                    Some(d) => quant_weight(be, &mut inp.rng, *d, &[*n, *k])?,
                    None => inp.float(&[*n, *k], 0.5, false)?,
                };
                let b = if *bias { Some(inp.float(&[*n], 1.0, false)?) } else { None };
                ws.push((w, b));
            }
            let h = be.gated_matmul(&x, (&ws[0].0, ws[0].1.as_ref()), (&ws[1].0, ws[1].1.as_ref()), *act)?;
            Ok(vec![floats(be, &h).await?])
        }
        Kind::NormMatmul { m, k, ns, bias, quant, residual, offset, f32_norm, act } => {
            let x = inp.float(&[*m, *k], 3.0, false)?;
            let r = if *residual { Some(inp.float(&[*m, *k], 3.0, false)?) } else { None };
            let nw = inp.float(&[*k], 1.0, *f32_norm)?;
            let mut ws = Vec::new();
            let count = if act.is_some() { 2 } else { ns.len() };
            for i in 0..count {
                let n = ns[i.min(ns.len() - 1)];
                let w = match quant {
                    Some(d) => quant_weight(be, &mut inp.rng, *d, &[n, *k])?,
                    None => inp.float(&[n, *k], 0.5, false)?,
                };
                let b = if *bias { Some(inp.float(&[n], 1.0, false)?) } else { None };
                ws.push((w, b));
            }
            let parts: Vec<_> = ws.iter().map(|(w, b)| (w, b.as_ref())).collect();
            let n = Normed { x: &x, residual: r.as_ref(), weight: &nw, eps: 1e-5, offset: *offset };
            let (outs, sum) = match act {
                Some(a) => {
                    let (h, sum) = be.norm_gated_matmul(n, parts[0], parts[1], *a)?;
                    (vec![h], sum)
                }
                None => be.norm_matmul_many(n, &parts)?,
            };
            if sum.is_some() != *residual {
                return Err(BackendError::Shape { op: tessera_core::backend::Op::AddRmsNorm, detail: "x + residual returned iff a residual is given".into() });
            }
            let mut got = Vec::new();
            for t in outs.iter().chain(sum.as_ref()) {
                got.push(floats(be, t).await?);
            }
            Ok(got)
        }
    }
}

/// Compares the outputs of a case: `Err` says what differs.
pub fn compare(got: &[Out], want: &[Out], dt: Dt) -> Result<f64, String> {
    if got.len() != want.len() {
        return Err(format!("{} outputs, expected {}", got.len(), want.len()));
    }
    let mut worst = 0.0f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        match (g, w) {
            (Out::U(g), Out::U(w)) => {
                if g != w {
                    return Err(format!("output {i}: {g:?} != {w:?}"));
                }
            }
            (Out::F(g), Out::F(w)) => {
                if g.len() != w.len() {
                    return Err(format!("output {i}: {} values, expected {}", g.len(), w.len()));
                }
                if let Some(j) = (0..g.len()).find(|&j| g[j].is_nan() != w[j].is_nan()) {
                    return Err(format!("output {i}: element {j} is {} (reference {}): unwritten or NaN", g[j], w[j]));
                }
                let diff = g.iter().zip(w).map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs()).filter(|d| !d.is_nan()).fold(0.0, f64::max);
                let norm = w.iter().map(|b| f64::from(*b).abs()).filter(|d| !d.is_nan()).fold(0.0, f64::max);
                let e = if norm == 0.0 { diff } else { diff / norm };
                if e >= dt.tolerance() {
                    return Err(format!("output {i}: relative error {e:e} >= {:e}", dt.tolerance()));
                }
                worst = worst.max(e);
            }
            _ => return Err(format!("output {i}: kinds differ")),
        }
    }
    Ok(worst)
}
