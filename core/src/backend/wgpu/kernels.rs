//! The WGSL sources (`shaders/*.wgsl`, embedded) and the pipeline cache.
//!
//! A kernel is (shader file, entry point, specialization). The specialization is a preamble
//! put in front of `common.wgsl` and the shader's source:
//!
//! ```text
//! enable f16;              only if some alias is f16
//! alias X = f16;           one storage-type alias per tensor role (X, W, O, ...), from the
//! alias W = f32;           dtypes of the actual arguments (weights may stay f32 while
//! const WG: u32 = 256u;    activations are f16); plus sizes chosen from the device limits
//! ```
//! Bind group layouts are explicit: binding 0 is the op's uniform parameters, the others are
//! storage buffers with the access the op declares. Pipelines are compiled once per
//! (shader, entry, specialization, layout) and cached for the backend's lifetime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::device::Gpu;
use super::tensor::device_err;
use crate::backend::Result;
use crate::tensor::DType;

/// One WGSL file of `shaders/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Shader {
    Embedding,
    Elementwise,
    Act,
    RmsNorm,
    Rope,
    Kv,
    Attention,
    Argmax,
    Matmul,
    QMatmul,
    QEmbedding,
    Sample,
}

const COMMON: &str = include_str!("../../../../shaders/common.wgsl");
/// GGUF block decoders, put in front of the quantized ops' sources.
const GGUF_BLOCKS: &str = include_str!("../../../../shaders/gguf_blocks.wgsl");
/// The register tile of the tiled matmuls, appended to their sources.
const TILE: &str = include_str!("../../../../shaders/tile.wgsl");
/// What the matmuls share (parameters, reduction, the fused decode kernels), appended too.
const MATMUL_MANY: &str = include_str!("../../../../shaders/matmul_many.wgsl");
/// `paged_attention`'s write of the new K/V rows, appended when the kernel sets FKV = 1.
const ATTENTION_KV: &str = include_str!("../../../../shaders/attention_kv.wgsl");
/// `paged_attention`'s L2 prefetch of the weights read next, appended when PFN > 0.
const ATTENTION_PF: &str = include_str!("../../../../shaders/attention_pf.wgsl");
/// `paged_attention` over key splits and `attention_merge`, appended when SPLITS > 1.
const ATTENTION_MERGE: &str = include_str!("../../../../shaders/attention_merge.wgsl");
/// The sum of squares' reduction of RMSNorm and the norm prologue, appended to both.
const ROW_SUM: &str = include_str!("../../../../shaders/row_sum.wgsl");
/// The norm-prologue decode kernels, appended to a matmul kernel that sets NORM = 1.
const NORM_MATMUL: &str = include_str!("../../../../shaders/norm_matmul.wgsl");
/// The attention-merge-prologue decode matvec, appended to a matmul kernel that sets MRG = 1.
const MERGE_MATMUL: &str = include_str!("../../../../shaders/merge_matmul.wgsl");
/// Subgroup reductions (`sg_add`, `sg_max`, `sg_xor`), appended where SG > 0.
const SUBGROUP: &str = include_str!("../../../../shaders/subgroup.wgsl");
/// Their stand-ins where SG = 0 (never called: every use is behind `SG > 0u`), so the
/// sources need no subgroup builtin the device may lack.
const NO_SUBGROUP: &str = "
fn sg_add(v: f32) -> f32 { return v; }
fn sg_max(v: f32) -> f32 { return v; }
fn sg_xor(v: f32, mask: u32) -> f32 { return v; }
";

impl Shader {
    fn source(self) -> &'static str {
        match self {
            Shader::Embedding => include_str!("../../../../shaders/embedding.wgsl"),
            Shader::Elementwise => include_str!("../../../../shaders/elementwise.wgsl"),
            Shader::Act => include_str!("../../../../shaders/act.wgsl"),
            Shader::RmsNorm => include_str!("../../../../shaders/rms_norm.wgsl"),
            Shader::Rope => include_str!("../../../../shaders/rope.wgsl"),
            Shader::Kv => include_str!("../../../../shaders/kv.wgsl"),
            Shader::Attention => include_str!("../../../../shaders/attention.wgsl"),
            Shader::Argmax => include_str!("../../../../shaders/argmax.wgsl"),
            Shader::Matmul => include_str!("../../../../shaders/matmul.wgsl"),
            Shader::QMatmul => include_str!("../../../../shaders/qmatmul.wgsl"),
            Shader::QEmbedding => include_str!("../../../../shaders/qembedding.wgsl"),
            Shader::Sample => include_str!("../../../../shaders/sample.wgsl"),
        }
    }

    /// Whether the source reads GGUF blocks (and needs `gguf_blocks.wgsl` and `QT`).
    fn reads_blocks(self) -> bool {
        matches!(self, Shader::QMatmul | Shader::QEmbedding)
    }

    /// Whether the source has a tiled matmul (and needs `tile.wgsl`, `matmul_many.wgsl` and
    /// the weight slots).
    fn has_tile(self) -> bool {
        matches!(self, Shader::Matmul | Shader::QMatmul)
    }

    /// Whether the source reduces with subgroups where it can (const SG, `subgroup.wgsl`).
    fn uses_subgroups(self) -> bool {
        matches!(self, Shader::Matmul | Shader::QMatmul | Shader::Attention | Shader::RmsNorm)
    }
}

/// Storage access of one binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Access {
    Read,
    ReadWrite,
}

/// A kernel with its specialization: what the pipeline cache is keyed by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Kernel {
    pub shader: Shader,
    pub entry: &'static str,
    /// Storage-type aliases: (alias name, dtype).
    pub types: Vec<(&'static str, DType)>,
    /// u32 constants: (name, value).
    pub consts: Vec<(&'static str, u32)>,
    /// Storage bindings 1.. : (binding index, access).
    pub layout: Vec<(u32, Access)>,
}

impl Kernel {
    pub fn new(shader: Shader, entry: &'static str) -> Self {
        Kernel { shader, entry, types: Vec::new(), consts: Vec::new(), layout: Vec::new() }
    }

    pub fn ty(mut self, alias: &'static str, dtype: DType) -> Self {
        self.types.push((alias, dtype));
        self
    }

    pub fn konst(mut self, name: &'static str, value: u32) -> Self {
        self.consts.push((name, value));
        self
    }

    /// Declares storage binding `index` read-only.
    pub fn read(mut self, index: u32) -> Self {
        self.layout.push((index, Access::Read));
        self
    }

    /// Declares storage binding `index` read-write.
    pub fn rw(mut self, index: u32) -> Self {
        self.layout.push((index, Access::ReadWrite));
        self
    }

    /// The value of const `name` (0 if the kernel does not set it).
    pub fn konst_value(&self, name: &str) -> u32 {
        self.konst_of(name, 0)
    }

    /// The same specialization (same source) at another entry point.
    pub fn entry_point(mut self, entry: &'static str) -> Self {
        self.entry = entry;
        self
    }

    /// Replaces the storage layout: `(binding, read_write)` pairs (an entry point that uses
    /// fewer bindings than the shader declares).
    pub fn layout_only(mut self, bindings: &[(u32, bool)]) -> Self {
        self.layout = bindings.iter().map(|&(i, rw)| (i, if rw { Access::ReadWrite } else { Access::Read })).collect();
        self
    }

    /// The full WGSL text of this specialization.
    fn wgsl(&self) -> String {
        let mut s = String::new();
        if self.types.iter().any(|(_, d)| *d == DType::F16) {
            s.push_str("enable f16;\n");
        }
        for (alias, d) in &self.types {
            let ty = match d {
                DType::F16 => "f16",
                DType::U32 => "u32",
                _ => "f32",
            };
            s.push_str(&format!("alias {alias} = {ty};\n"));
        }
        for (name, v) in &self.consts {
            s.push_str(&format!("const {name}: u32 = {v}u;\n"));
        }
        s.push_str(COMMON);
        s.push('\n');
        if self.shader.uses_subgroups() {
            if self.consts.iter().all(|(n, _)| *n != "SG") {
                s.push_str("const SG: u32 = 0u;\n");
            }
            s.push_str(if self.konst_of("SG", 0) > 0 { SUBGROUP } else { NO_SUBGROUP });
            s.push('\n');
        }
        if self.shader.reads_blocks() {
            s.push_str(GGUF_BLOCKS);
            s.push('\n');
        }
        s.push_str(self.shader.source());
        if self.shader.has_tile() {
            s.push('\n');
            s.push_str(TILE);
            s.push('\n');
            s.push_str(MATMUL_MANY);
            s.push_str(&self.slots());
            if self.konst_of("NORM", 0) != 0 {
                s.push('\n');
                s.push_str(NORM_MATMUL);
                s.push_str(ROW_SUM);
            }
            if self.konst_of("MRG", 0) != 0 {
                s.push('\n');
                s.push_str(MERGE_MATMUL);
            }
        }
        if self.shader == Shader::RmsNorm {
            s.push('\n');
            s.push_str(ROW_SUM);
        }
        if self.shader == Shader::Attention {
            s.push_str(self.fused_kv());
            s.push('\n');
            s.push_str(if self.konst_of("SPLITS", 1) > 1 { ATTENTION_MERGE } else { "fn put_partial(i: u32, v: f32) {}\n" });
            if self.konst_of("PFN", 0) > 0 {
                s.push('\n');
                s.push_str(ATTENTION_PF);
            } else {
                s.push_str("const PFN: u32 = 0u;\nfn prefetch_weights(e: u32, li: u32) {}\n");
            }
        }
        s
    }

    /// The value of const `name` (`default` if the kernel does not set it).
    fn konst_of(&self, name: &str, default: u32) -> u32 {
        self.consts.iter().find(|(n, _)| *n == name).map_or(default, |&(_, v)| v)
    }

    /// The weight slots of a matmul kernel (`matmul_many.wgsl`): bindings of weights and
    /// biases 1 .. NW and outputs 1 .. NO (slot 0's are the shader's own), and `wl` (word i
    /// of weight slot `wsel`), `bias_of(s, c)`, `put(s, i, v)` switching over them. With one
    /// slot, `wl` reads slot 0 directly (the single matmuls' loops stay as they were). `xl(i)`
    /// reads x, or with NORM = 1 the row `norm_matmul.wgsl` stages, whose bindings (`nw`, and
    /// `res` / `sum_out` where HR = 1) and `norm_in` are declared here too.
    fn slots(&self) -> String {
        let (nw, no) = (self.konst_of("NW", 1), self.konst_of("NO", 1));
        let (w, elem) = if self.shader == Shader::QMatmul { ("wq", "u32") } else { ("w", "W") };
        let mut s = String::new();
        let (mut wl, mut bias_of, mut put) = (String::new(), String::new(), String::new());
        for i in 1..nw {
            s.push_str(&format!("@group(0) @binding({}) var<storage, read> {w}{i}: array<{elem}>;\n", 2 + 3 * i));
            s.push_str(&format!("@group(0) @binding({}) var<storage, read> bias{i}: array<BT>;\n", 3 + 3 * i));
            wl.push_str(&format!("        case {i}u: {{ return {w}{i}[i]; }}\n"));
            bias_of.push_str(&format!("        case {i}u: {{ return f32(bias{i}[c]); }}\n"));
        }
        for i in 1..no {
            s.push_str(&format!("@group(0) @binding({}) var<storage, read_write> out{i}: array<O>;\n", 4 + 3 * i));
            put.push_str(&format!("        case {i}u: {{ out{i}[i] = O(v); }}\n"));
        }
        if nw == 1 {
            s.push_str(&format!("fn wl(i: u32) -> {elem} {{\n    return {w}[i];\n}}\n"));
        } else {
            s.push_str(&format!("fn wl(i: u32) -> {elem} {{\n    switch wsel {{\n{wl}        default: {{ return {w}[i]; }}\n    }}\n}}\n"));
        }
        s.push_str(&format!("fn bias_of(s: u32, c: u32) -> f32 {{\n    switch s {{\n{bias_of}        default: {{ return f32(bias[c]); }}\n    }}\n}}\n"));
        s.push_str(&format!("fn put(s: u32, i: u32, v: f32) {{\n    switch s {{\n{put}        default: {{ out[i] = O(v); }}\n    }}\n}}\n"));
        if self.konst_of("MRG", 0) != 0 {
            s.push_str("@group(0) @binding(20) var<storage, read> part_in: array<f32>;\n");
            s.push_str("@group(0) @binding(21) var<storage, read_write> merged_out: array<O>;\n");
            s.push_str("fn xl(i: u32) -> f32 {\n    return xn[i - xbase];\n}\n");
            return s;
        }
        if self.konst_of("NORM", 0) == 0 {
            s.push_str("fn xl(i: u32) -> f32 {\n    return f32(x[i]);\n}\n");
            return s;
        }
        s.push_str("@group(0) @binding(20) var<storage, read> nw: array<NWT>;\n");
        s.push_str("fn xl(i: u32) -> f32 {\n    return xn[i - xbase];\n}\n");
        if self.konst_of("HR", 0) != 0 {
            s.push_str("@group(0) @binding(21) var<storage, read> res: array<R>;\n");
            s.push_str("@group(0) @binding(22) var<storage, read_write> sum_out: array<O>;\n");
            s.push_str("fn norm_in(i: u32, store: bool) -> f32 {\n    let v = O(f32(x[i]) + f32(res[i]));\n");
            s.push_str("    if (store) {\n        sum_out[i] = v;\n    }\n    return f32(v);\n}\n");
        } else {
            s.push_str("fn norm_in(i: u32, store: bool) -> f32 {\n    return f32(x[i]);\n}\n");
        }
        s
    }
}

impl Kernel {
    /// `attention.wgsl`'s caches and new-K/V hooks: read-only caches and the cache alone
    /// (FKV = 0), or the write of this step's K/V folded in (FKV = 1: `attention_kv.wgsl`).
    fn fused_kv(&self) -> &'static str {
        if self.konst_of("FKV", 0) == 0 {
            return "
@group(0) @binding(2) var<storage, read> k_cache: array<KV>;
@group(0) @binding(3) var<storage, read> v_cache: array<KV>;
fn stage_new_kv(t: u32, h: u32, li: u32) {}
fn key4(is_v: bool, j: u32, pos: u32, base: u32, c: u32) -> vec4<f32> {
    return kv4(is_v, base, c);
}
";
        }
        ATTENTION_KV
    }
}

/// A compiled pipeline and the layout its bind groups are made with.
pub(crate) struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    /// The entry point (profiles are kept per entry).
    pub entry: &'static str,
}

/// Pipelines compiled so far.
pub(crate) struct PipelineCache {
    pipelines: Mutex<HashMap<Kernel, Arc<Pipeline>>>,
    /// Whether wgpu zero-fills workgroup memory at the start of every workgroup (its default;
    /// `TESSERA_WGPU_ZERO_WG=0` turns it off: every shader here writes its workgroup
    /// memory before reading it, so the fill is pure cost).
    zero_workgroup_memory: bool,
    /// Compile without naga's loop bounding and integer-division guards
    /// (`ShaderRuntimeChecks`; buffer bounds checks stay): every loop here has a bound and
    /// no divisor is zero (sizes are checked before dispatching), so they are pure cost: the
    /// counter naga adds to every loop keeps the driver from unrolling the matvec and
    /// attention loops (decode +14 % Q4_1, +32 % f16 on an H100). Native only (the browser
    /// compiles WGSL itself); `TESSERA_WGPU_TRUSTED=0` keeps the checks (for comparisons).
    trusted: bool,
}

impl PipelineCache {
    pub fn new() -> Self {
        PipelineCache {
            pipelines: Mutex::default(),
            zero_workgroup_memory: std::env::var("TESSERA_WGPU_ZERO_WG").map_or(true, |v| v != "0"),
            trusted: cfg!(not(target_arch = "wasm32")) && std::env::var("TESSERA_WGPU_TRUSTED").map_or(true, |v| v != "0"),
        }
    }

    /// The pipeline of `k`, compiling it on first use.
    pub fn get(&self, gpu: &Gpu, k: &Kernel) -> Result<Arc<Pipeline>> {
        let mut map = self.pipelines.lock().map_err(|_| device_err("pipeline cache poisoned"))?;
        if let Some(p) = map.get(k) {
            return Ok(p.clone());
        }
        let p = Arc::new(compile(gpu, k, self.zero_workgroup_memory, self.trusted)?);
        map.insert(k.clone(), p.clone());
        Ok(p)
    }

    /// How many pipelines were compiled.
    pub fn len(&self) -> usize {
        self.pipelines.lock().map(|m| m.len()).unwrap_or(0)
    }
}

fn compile(gpu: &Gpu, k: &Kernel, zero_workgroup_memory: bool, trusted: bool) -> Result<Pipeline> {
    let d = &gpu.device;
    let label = format!("{:?}::{}", k.shader, k.entry);
    gpu.errors.check("before compiling a shader")?;
    let desc = wgpu::ShaderModuleDescriptor { label: Some(&label), source: wgpu::ShaderSource::Wgsl(k.wgsl().into()) };
    let module = if trusted {
        let mut checks = wgpu::ShaderRuntimeChecks::checked();
        checks.force_loop_bounding = false;
        checks.int_div_checks = false;
        // SAFETY: every loop of shaders/*.wgsl has a bound (strides of at least 1 up to a
        // limit) and every divisor is a nonzero constant or a size the ops check before
        // dispatching; buffer bounds checks stay on.
        unsafe { d.create_shader_module_trusted(desc, checks) }
    } else {
        d.create_shader_module(desc)
    };
    let mut entries = vec![wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }];
    for &(binding, access) in &k.layout {
        entries.push(wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only: access == Access::Read },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        });
    }
    let layout = d.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(&label), entries: &entries });
    let pipeline_layout = d.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(&label),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let pipeline = d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(&label),
        layout: Some(&pipeline_layout),
        module: &module,
        entry_point: Some(k.entry),
        compilation_options: wgpu::PipelineCompilationOptions { zero_initialize_workgroup_memory: zero_workgroup_memory, ..Default::default() },
        cache: None,
    });
    gpu.errors.check(&format!("compiling {}:{} ({:?}, {:?})", shader_file(k.shader), k.entry, k.types, k.consts))?;
    Ok(Pipeline { pipeline, layout, entry: k.entry })
}

fn shader_file(s: Shader) -> &'static str {
    match s {
        Shader::Embedding => "shaders/embedding.wgsl",
        Shader::Elementwise => "shaders/elementwise.wgsl",
        Shader::Act => "shaders/act.wgsl",
        Shader::RmsNorm => "shaders/rms_norm.wgsl",
        Shader::Rope => "shaders/rope.wgsl",
        Shader::Kv => "shaders/kv.wgsl",
        Shader::Attention => "shaders/attention.wgsl (+ attention_kv.wgsl with FKV)",
        Shader::Argmax => "shaders/argmax.wgsl",
        Shader::Matmul => "shaders/matmul.wgsl (+ tile.wgsl, matmul_many.wgsl)",
        Shader::QMatmul => "shaders/qmatmul.wgsl (+ gguf_blocks.wgsl, tile.wgsl, matmul_many.wgsl)",
        Shader::QEmbedding => "shaders/qembedding.wgsl (+ gguf_blocks.wgsl)",
        Shader::Sample => "shaders/sample.wgsl",
    }
}

/// The `QT` code of `gguf_blocks.wgsl` for a block format the shaders decode.
pub(crate) fn block_code(d: DType) -> Option<u32> {
    Some(match d {
        DType::Q4_0 => 0,
        DType::Q4_1 => 1,
        DType::Q5_0 => 2,
        DType::Q5_1 => 3,
        DType::Q8_0 => 4,
        DType::Q4_K => 5,
        DType::Q5_K => 6,
        DType::Q6_K => 7,
        _ => return None,
    })
}
