//! From `--model` to a runnable model: resolve the path (local folder, hub id, `.gguf` file,
//! hub id + `--gguf-file`, or the default model when `--model` is omitted), read
//! config.json / generation_config.json / tokenizer files (or the GGUF metadata), open the
//! weights, build the model on the chosen backend and size its KV cache.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use tessera_core::backend::cpu::CpuBackend;
use tessera_core::backend::{Backend, Op};
use tessera_core::config::{GenerationConfig, ModelConfig};
use tessera_core::engine::ModelRunner;
use tessera_core::kv::blocks_for;
use tessera_core::models::load_model;
use tessera_core::tokenizer::{effective_chat_template, gguf_chat_template, Tokenizer, TokenizerConfig};
use tessera_core::weights::{DummyWeights, GgufWeights, SafetensorsWeights, WeightSource};

use crate::default_model::{ensure_default_model, DEFAULT_MODEL_NAME};
use crate::hub::{resolve_file, resolve_model_files, HubOptions};

/// `--load-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadFormat {
    /// safetensors for a folder (GGUF files need `gguf`).
    Auto,
    Safetensors,
    Gguf,
    /// Random weights from config.json alone.
    Dummy,
}

/// `--dtype`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DTypeArg {
    Auto,
    Float32,
    Float16,
    Bfloat16,
}

/// `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    /// CUDA when this build has it and an NVIDIA GPU is present, else the CPU.
    Auto,
    Cpu,
    Cuda,
    Wgpu,
}

/// Everything that decides how a model is loaded.
#[derive(Clone, Debug, clap::Args)]
pub struct ModelArgs {
    /// A local model folder (config.json + safetensors + tokenizer files), a `.gguf` file, or
    /// a Hugging Face repo id (`owner/name`, fetched through the HF cache; honours HF_HOME,
    /// HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE). Omitted: SmolLM2-135M-Instruct (Q4_1 GGUF),
    /// fetched once into ~/.cache/tessera/models (`TESSERA_CACHE`).
    #[arg(long, default_value_t = String::new(), hide_default_value = true)]
    pub model: String,
    /// With a hub repo id as --model: the GGUF file of that repo to run.
    #[arg(long)]
    pub gguf_file: Option<String>,
    /// Branch, tag or commit of a hub model.
    #[arg(long, default_value = "main")]
    pub revision: String,
    #[arg(long, value_enum, default_value = "auto")]
    pub load_format: LoadFormat,
    /// Compute dtype. The CPU backend computes in float32 (`auto`).
    #[arg(long, value_enum, default_value = "auto")]
    pub dtype: DTypeArg,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceArg,
    /// Longest prompt + output, in tokens (default: the model's max_position_embeddings).
    #[arg(long)]
    pub max_model_len: Option<usize>,
    /// Tokens per KV-cache block.
    #[arg(long, default_value_t = 16)]
    pub block_size: usize,
    /// KV-cache size in bytes (suffixes K, M, G, KiB, MiB, GiB allowed); default: room for
    /// 256 sequences of max_model_len, at most 4 GiB.
    #[arg(long, value_parser = parse_bytes)]
    pub kv_cache_memory: Option<u64>,
    /// Exactly this many KV-cache blocks (including the reserved null block), whatever the memory.
    #[arg(long)]
    pub num_gpu_blocks_override: Option<usize>,
    /// GPU devices: the fraction of the device's memory tessera may use (weights, KV cache and
    /// activations); the KV cache gets what the loaded weights and an activation reserve leave.
    /// `--kv-cache-memory` / `--num-gpu-blocks-override` take precedence.
    #[arg(long, default_value_t = 0.9)]
    pub gpu_memory_utilization: f64,
    /// GGUF: dequantize quantized weights to f32 on load and multiply them with f32
    /// activations, instead of the CPU's integer kernels (activations quantized to Q8 per row).
    /// These are the numerics of backends that dequantize weights (the wgpu backend, in the
    /// browser too), so their greedy output can be checked token for token.
    #[arg(long)]
    pub gguf_dequantize: bool,
    /// CPU backend: the instruction-set level of the quantized kernels (scalar, avx2,
    /// avx512vnni; default: the best this CPU has). `scalar` runs the portable kernels that
    /// the WebAssembly build (the browser's CPU fallback) runs.
    #[arg(long)]
    pub cpu_isa: Option<String>,
}

/// `4096`, `512M`, `4GiB`, ... -> bytes.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return Err(format!("{s:?}: expected bytes, e.g. 4294967296, 512MiB or 4GiB")),
    };
    num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)).ok_or_else(|| format!("{s:?}: expected bytes, e.g. 512MiB"))
}

/// Blocks of the KV cache: `--num-gpu-blocks-override`, else as many as `--kv-cache-memory`
/// holds (default: 256 sequences of `max_model_len`, at most 4 GiB), null block included.
fn kv_num_blocks<B: Backend>(
    args: &ModelArgs,
    config: &ModelConfig,
    max_model_len: usize,
    backend: &B,
    device_budget: Option<u64>,
) -> Result<usize> {
    if args.block_size == 0 {
        bail!("--block-size must be at least 1");
    }
    let per_block = tessera_core::kv::KvCache::<B::Tensor>::bytes_per_block(
        config.num_hidden_layers,
        args.block_size,
        config.kv_size(),
        backend.activation_dtype().size(),
    );
    let default = ((blocks_for(max_model_len, args.block_size) * 256 + 1) as u64 * per_block as u64).min(4 << 30);
    let memory = args.kv_cache_memory.or(device_budget).unwrap_or(default);
    let n = tessera_core::kv::num_blocks_for(memory, per_block, args.num_gpu_blocks_override)?;
    if (n - 1) * args.block_size < max_model_len {
        tracing::warn!(blocks = n, block_size = args.block_size, max_model_len, "the KV cache cannot hold one sequence of max_model_len");
    }
    tracing::info!(blocks = n, block_size = args.block_size, mib = (n * per_block) as f64 / (1 << 20) as f64, "KV cache");
    Ok(n)
}

impl ModelArgs {
    /// The model's name for messages and the API (the default model's when `--model` is omitted).
    pub fn model_name(&self) -> &str {
        if self.model.is_empty() {
            DEFAULT_MODEL_NAME
        } else {
            &self.model
        }
    }
}

/// A loaded model and what surrounds it.
pub struct LoadedModel<B: Backend = CpuBackend> {
    pub path: PathBuf,
    pub config: ModelConfig,
    pub generation: GenerationConfig,
    pub tokenizer: Option<Tokenizer>,
    pub chat_template: Option<String>,
    pub max_model_len: usize,
    pub runner: ModelRunner<B>,
    /// The CUDA GPU's (name, total memory in bytes); None on other backends. Engine defaults
    /// that follow the device (`args::default_max_num_batched_tokens`) read it.
    pub gpu: Option<(String, u64)>,
    /// The step size (tokens) the CUDA activation reserve was sized for; None elsewhere.
    pub activation_tokens: Option<usize>,
}

impl<B: Backend> LoadedModel<B> {
    /// eos ids: generation_config.json's, else config.json's.
    pub fn eos_token_ids(&self) -> Vec<u32> {
        if self.generation.eos_token_ids.is_empty() {
            self.config.eos_token_ids.clone()
        } else {
            self.generation.eos_token_ids.clone()
        }
    }
}

fn read_optional(dir: &Path, name: &str) -> Result<Option<String>> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Loads `args.model` on the CPU backend, with a KV cache sized by `--kv-cache-memory` /
/// `--num-gpu-blocks-override`. Other devices: [`load_with`] and their backend's constructor
/// ([`load_cuda`] for CUDA); [`with_model!`](crate::with_model) picks by `--device`.
pub fn load(args: &ModelArgs) -> Result<LoadedModel> {
    match resolve_device(args.device) {
        DeviceArg::Auto | DeviceArg::Cpu => {}
        DeviceArg::Wgpu if cfg!(feature = "wgpu") => {
            bail!("--device wgpu: only `tessera generate` runs on the wgpu backend so far")
        }
        DeviceArg::Cuda if cfg!(feature = "cuda") => {
            bail!("--device cuda: load it with load_cuda (internal error: the command did not dispatch on --device)")
        }
        DeviceArg::Cuda | DeviceArg::Wgpu => {
            bail!("--device {:?}: this build of tessera has only the CPU backend; rebuild with `--features cuda`/`wgpu`", args.device)
        }
    }
    if !matches!(args.dtype, DTypeArg::Auto | DTypeArg::Float32) {
        bail!("--dtype {:?}: the CPU backend computes in float32; use --dtype auto or float32", args.dtype);
    }
    // Every caller (generate, chat: the main thread; serve: the engine thread) runs the model
    // on the thread that loads it, so that thread joins rayon's pool as a worker and each op's
    // parallel loop starts locally (see `init_global_threads`). A pool built earlier (bench
    // --threads) is kept. With one core the default pool stays: its only worker would then be
    // this thread, and work handed to the pool by another thread would wait for it.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores > 1 {
        if let Err(e) = tessera_core::backend::cpu::init_global_threads(cores) {
            tracing::debug!("cpu thread pool already set up: {e}");
        }
    }
    if let Some(name) = &args.cpu_isa {
        let level = tessera_core::quant::isa::Level::from_name(name)
            .ok_or_else(|| anyhow!("--cpu-isa {name:?}: expected scalar, avx2 or avx512vnni"))?;
        tessera_core::backend::cpu::set_default_isa(level)?;
    }
    load_with(args, CpuBackend::new())
}

/// `--device auto` made concrete: CUDA when this build has the CUDA backend and an NVIDIA GPU
/// is visible, else the CPU. Other values are returned as given.
pub fn resolve_device(d: DeviceArg) -> DeviceArg {
    if d != DeviceArg::Auto {
        return d;
    }
    #[cfg(feature = "cuda")]
    if crate::cuda::gpu_present() {
        return DeviceArg::Cuda;
    }
    DeviceArg::Cpu
}

/// Runs `$body` with `$m` bound to the model `$args` (a [`ModelArgs`]) names, loaded on the
/// backend `--device` picks (`auto`: CUDA when a GPU is present, else CPU). `$body` is
/// compiled once per backend, so it may call generic functions over `LoadedModel<B>`.
#[macro_export]
macro_rules! with_model {
    ($args:expr, |$m:ident| $body:expr) => {{
        let __args: &$crate::load::ModelArgs = $args;
        match $crate::load::resolve_device(__args.device) {
            #[cfg(feature = "cuda")]
            $crate::load::DeviceArg::Cuda => {
                let $m = $crate::load::load_cuda(__args)?;
                $body
            }
            #[cfg(feature = "wgpu")]
            $crate::load::DeviceArg::Wgpu => {
                let $m = $crate::load::load_with(__args, $crate::load::wgpu_backend(__args)?)?;
                $body
            }
            _ => {
                let $m = $crate::load::load(__args)?;
                $body
            }
        }
    }};
}

/// The CUDA backend `--device cuda` asks for (GPU 0): `--dtype auto` = bfloat16. No GPU, driver
/// or CUDA library is a clear error. Compiles (or loads from the disk cache) every kernel.
#[cfg(feature = "cuda")]
pub fn cuda_backend(args: &ModelArgs) -> Result<crate::cuda::CudaBackend> {
    use tessera_core::tensor::DType;
    let dtype = match args.dtype {
        DTypeArg::Auto | DTypeArg::Bfloat16 => DType::BF16,
        DTypeArg::Float16 => DType::F16,
        DTypeArg::Float32 => DType::F32,
    };
    let b = crate::cuda::CudaBackend::new(0, dtype)?;
    let secs = b.load_kernels()?;
    let info = b.device_info();
    tracing::info!(gpu = %info.name, arch = %b.arch(), dtype = %dtype, kernel_compile_secs = secs, "CUDA backend");
    Ok(b)
}

/// Bytes kept free for one step's activations, logits and cuBLAS workspaces, on top of the
/// weights and the KV cache: a step of `step_tokens` tokens with every intermediate alive in
/// f32 (an over-estimate: the model frees as it goes), the logits of `RESERVE_SEQS` rows
/// three times (activation dtype, f32 copies for sampling), 512 MiB.
#[cfg(feature = "cuda")]
pub(crate) fn activation_reserve(c: &ModelConfig, step_tokens: usize) -> u64 {
    const RESERVE_SEQS: u64 = 256;
    let per_token = 4 * c.hidden_size + 3 * c.intermediate_size + c.q_size() + 2 * c.kv_size();
    step_tokens as u64 * per_token as u64 * 4 + RESERVE_SEQS * c.vocab_size as u64 * 4 * 3 + (512 << 20)
}

/// The KV cache's share of the GPU after the weights are in: `--gpu-memory-utilization` of
/// the device's memory, less what is in use now (weights, context, other processes), less the
/// activation reserve. Too little left is a clear error naming the numbers.
#[cfg(feature = "cuda")]
fn cuda_kv_budget(b: &crate::cuda::CudaBackend, c: &ModelConfig, util: f64, step_tokens: usize) -> Result<Option<u64>> {
    const GIB: f64 = (1u64 << 30) as f64;
    b.release_pool_memory()?;
    let (free, total) = b.memory_info()?;
    let used = total.saturating_sub(free) as u64;
    let limit = (total as f64 * util) as u64;
    let reserve = activation_reserve(c, step_tokens);
    let budget = limit.saturating_sub(used).saturating_sub(reserve);
    tracing::info!(
        total_gib = total as f64 / GIB,
        in_use_after_weights_gib = used as f64 / GIB,
        activation_reserve_gib = reserve as f64 / GIB,
        activation_reserve_tokens = step_tokens,
        kv_budget_gib = budget as f64 / GIB,
        gpu_memory_utilization = util,
        "GPU memory"
    );
    if budget == 0 {
        bail!(
            "--gpu-memory-utilization {util}: {:.2} GiB of the device's {:.2} GiB are in use after loading the weights and \
             {:.2} GiB are kept for activations, which leaves nothing for the KV cache; raise --gpu-memory-utilization, \
             free the GPU, or pass --kv-cache-memory",
            used as f64 / GIB,
            total as f64 / GIB,
            reserve as f64 / GIB
        );
    }
    Ok(Some(budget))
}

/// Loads `args.model` on GPU 0 with a KV cache sized from the device memory left after the
/// weights (`--gpu-memory-utilization`), unless `--kv-cache-memory` /
/// `--num-gpu-blocks-override` say otherwise. Logs the GPU, dtype, KV blocks and the kernel
/// compile time.
#[cfg(feature = "cuda")]
pub fn load_cuda(args: &ModelArgs) -> Result<LoadedModel<crate::cuda::CudaBackend>> {
    let util = args.gpu_memory_utilization;
    if !(util > 0.0 && util <= 1.0) {
        bail!("--gpu-memory-utilization {util}: expected a fraction in (0, 1]");
    }
    let t0 = std::time::Instant::now();
    let b = cuda_backend(args)?;
    let kernel_secs = t0.elapsed().as_secs_f64();
    let (gpu, dtype) = (b.device_info().name.clone(), b.activation_dtype());
    let total = b.device_info().total_memory as u64;
    // The reserve covers the largest step any entry point takes by default on this GPU (the
    // offline budget); a larger `--max-num-batched-tokens` is warned about when the engine
    // is built (`EngineArgs::max_num_batched_tokens`).
    let step_tokens = crate::cli::args::default_max_num_batched_tokens(crate::cli::args::UsageContext::Offline, Some((&gpu, total)));
    let mut m = load_with_budget(args, b, &|b, c| cuda_kv_budget(b, c, util, step_tokens))?;
    m.gpu = Some((gpu.clone(), total));
    m.activation_tokens = Some(step_tokens);
    tracing::info!(
        %gpu,
        %dtype,
        kv_blocks = m.runner.num_blocks(),
        block_size = m.runner.block_size(),
        kv_tokens = (m.runner.num_blocks() - 1) * m.runner.block_size(),
        kernel_secs,
        "CUDA model ready"
    );
    Ok(m)
}

/// The wgpu backend `--device wgpu` asks for: `--dtype auto` = f16 where the adapter has
/// shader-f16, else f32.
#[cfg(feature = "wgpu")]
pub fn wgpu_backend(args: &ModelArgs) -> Result<tessera_core::backend::wgpu::WgpuBackend> {
    use tessera_core::backend::wgpu::{WgpuBackend, WgpuOptions};
    use tessera_core::tensor::DType;
    let dtype = match args.dtype {
        DTypeArg::Auto => None,
        DTypeArg::Float32 => Some(DType::F32),
        DTypeArg::Float16 => Some(DType::F16),
        DTypeArg::Bfloat16 => bail!("--dtype bfloat16: WebGPU has no bfloat16; use float16 or float32"),
    };
    let b = WgpuBackend::new_blocking(WgpuOptions { dtype, ..Default::default() })?;
    tracing::info!(adapter = %b.adapter_info().name, dtype = %b.activation_dtype(), "wgpu backend");
    Ok(b)
}

/// Loads `args.model` onto `backend` (whatever `--device` chose), with a KV cache sized
/// by `--kv-cache-memory` / `--num-gpu-blocks-override`.
pub fn load_with<B: Backend>(args: &ModelArgs, backend: B) -> Result<LoadedModel<B>> {
    load_with_budget(args, backend, &|_, _| Ok(None))
}

/// Computes the KV cache's bytes once the weights are on the backend (None: the default).
type KvBudget<'a, B> = &'a dyn Fn(&B, &ModelConfig) -> Result<Option<u64>>;

/// [`load_with`], the KV cache sized by `budget` unless the flags fix it.
fn load_with_budget<B: Backend>(args: &ModelArgs, backend: B, budget: KvBudget<'_, B>) -> Result<LoadedModel<B>> {
    if let Some(path) = resolve_gguf(args)? {
        return load_gguf(args, &path, backend, budget);
    }
    let opts = HubOptions::from_env().with_revision(args.revision.clone());
    let resolved = resolve_model_files(&args.model, &opts, args.load_format != LoadFormat::Dummy)?;
    let dir = resolved.path;
    if !dir.is_dir() {
        bail!("{}: expected a model folder holding config.json", dir.display());
    }
    let config_path = dir.join("config.json");
    let config_text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("{}: cannot read config.json (is this a Hugging Face model folder?)", dir.display()))?;
    let config = ModelConfig::from_json_str(&config_text).with_context(|| config_path.display().to_string())?;
    let generation = match read_optional(&dir, "generation_config.json")? {
        Some(t) => GenerationConfig::from_json_str(&t).with_context(|| dir.join("generation_config.json").display().to_string())?,
        None => GenerationConfig::default(),
    };
    let tokenizer = if dir.join("tokenizer.json").exists() {
        Some(Tokenizer::from_file(dir.join("tokenizer.json"))?)
    } else {
        None
    };
    let tok_config_text = read_optional(&dir, "tokenizer_config.json")?;
    if let Some(t) = &tok_config_text {
        TokenizerConfig::from_json_str(t).with_context(|| dir.join("tokenizer_config.json").display().to_string())?;
    }
    let jinja = read_optional(&dir, "chat_template.jinja")?;
    let chat_template =
        effective_chat_template(tok_config_text.as_deref().map(str::as_bytes), jinja.as_deref().map(str::as_bytes), false)?;

    let weights: Box<dyn WeightSource> = match args.load_format {
        LoadFormat::Dummy => Box::new(DummyWeights::default()),
        _ => Box::new(SafetensorsWeights::from_dir(&dir)?),
    };
    let t0 = std::time::Instant::now();
    let model = load_model(&backend, &config, weights.as_ref()).map_err(|e| anyhow!("{}: {e}", dir.display()))?;
    tracing::info!(
        architecture = %config.architecture,
        layers = config.num_hidden_layers,
        weights = %weights.describe(),
        secs = t0.elapsed().as_secs_f32(),
        "model loaded"
    );
    let max_model_len = args.max_model_len.unwrap_or(config.max_position_embeddings);
    let device_budget = if args.kv_cache_memory.is_some() || args.num_gpu_blocks_override.is_some() { None } else { budget(&backend, &config)? };
    let num_blocks = kv_num_blocks(args, &config, max_model_len, &backend, device_budget)?;
    let runner = ModelRunner::new(backend, model, num_blocks, args.block_size)?;
    Ok(LoadedModel { path: dir, config, generation, tokenizer, chat_template, max_model_len, runner, gpu: None, activation_tokens: None })
}

/// The GGUF file `args` names, if any: the default model (no `--model`), a `.gguf` path, a hub
/// repo + `--gguf-file`, or a folder holding exactly one `.gguf` and no config.json.
pub fn resolve_gguf(args: &ModelArgs) -> Result<Option<PathBuf>> {
    resolve_gguf_path(&args.model, args.gguf_file.as_deref(), &args.revision, args.load_format == LoadFormat::Gguf)
}

/// [`resolve_gguf`] from its parts: `model` ("" = the default model), `--gguf-file`,
/// `--revision`, and whether any existing file is to be read as GGUF (`--load-format gguf`).
pub fn resolve_gguf_path(model: &str, gguf_file: Option<&str>, revision: &str, force: bool) -> Result<Option<PathBuf>> {
    if model.is_empty() {
        if gguf_file.is_some() {
            bail!("--gguf-file needs --model <hub repo id>");
        }
        return ensure_default_model().map(Some);
    }
    let local = Path::new(model);
    if let Some(file) = gguf_file {
        if local.is_dir() {
            return Ok(Some(local.join(file)));
        }
        let opts = HubOptions::from_env().with_revision(revision.to_string());
        return Ok(Some(resolve_file(model, file, &opts)?));
    }
    if local.is_file() && (model.ends_with(".gguf") || force) {
        return Ok(Some(local.to_path_buf()));
    }
    if model.ends_with(".gguf") {
        bail!("{model}: no such GGUF file");
    }
    if local.is_dir() && !local.join("config.json").exists() {
        let ggufs: Vec<PathBuf> = std::fs::read_dir(local)
            .with_context(|| format!("reading {}", local.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
            .collect();
        match ggufs.len() {
            0 => {}
            1 => return Ok(ggufs.into_iter().next()),
            _ => bail!("{}: several .gguf files and no config.json; pick one with --gguf-file NAME", local.display()),
        }
    }
    Ok(None)
}

/// A GGUF model: config, tokenizer and chat template from its metadata. Weights stay in their
/// block format where the backend multiplies them directly, else are dequantized to f32.
fn load_gguf<B: Backend>(args: &ModelArgs, path: &Path, backend: B, budget: KvBudget<'_, B>) -> Result<LoadedModel<B>> {
    if args.load_format == LoadFormat::Safetensors {
        bail!("{}: --load-format safetensors given for a GGUF file", path.display());
    }
    let mut weights = GgufWeights::open(path)?;
    let config = ModelConfig::from_map(&weights.hf_config()?).with_context(|| path.display().to_string())?;
    let generation =
        GenerationConfig { bos_token_id: config.bos_token_id, eos_token_ids: config.eos_token_ids.clone(), ..Default::default() };
    let tokenizer = Tokenizer::from_gguf(weights.gguf()).with_context(|| path.display().to_string())?;
    let chat_template = gguf_chat_template(weights.gguf())?;
    let quant = weights.info("model.layers.0.mlp.down_proj.weight").map(|(_, d)| d).filter(|d| d.is_quantized());
    if let Some(dtype) = quant {
        let direct = backend.supports(Op::Upload, dtype) && backend.supports(Op::Matmul, dtype);
        let dequantize = !direct || args.gguf_dequantize;
        weights.set_dequantize_on_load(dequantize);
        tracing::info!(%dtype, dequantize_on_load = dequantize, "GGUF weights");
    }
    let t0 = std::time::Instant::now();
    let weights: Box<dyn WeightSource> = match args.load_format {
        LoadFormat::Dummy => Box::new(DummyWeights::default()),
        _ => Box::new(weights),
    };
    let model = load_model(&backend, &config, weights.as_ref()).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    tracing::info!(architecture = %config.architecture, weights = %weights.describe(), secs = t0.elapsed().as_secs_f32(), "model loaded");
    let max_model_len = args.max_model_len.unwrap_or(config.max_position_embeddings);
    let device_budget = if args.kv_cache_memory.is_some() || args.num_gpu_blocks_override.is_some() { None } else { budget(&backend, &config)? };
    let num_blocks = kv_num_blocks(args, &config, max_model_len, &backend, device_budget)?;
    let runner = ModelRunner::new(backend, model, num_blocks, args.block_size)?;
    Ok(LoadedModel { path: path.to_path_buf(), config, generation, tokenizer: Some(tokenizer), chat_template, max_model_len, runner, gpu: None, activation_tokens: None })
}

#[cfg(all(test, feature = "cuda"))]
mod tests {
    use super::*;

    #[test]
    fn the_activation_reserve_follows_the_step_size() {
        let c = ModelConfig::from_json_str(include_str!("../../scripts/gpu/smollm3-3b-config.json")).expect("config");
        let (small, large) = (activation_reserve(&c, 2048), activation_reserve(&c, 16384));
        // Every token of a step: 4 hidden + 3 intermediate + q + 2 kv widths, f32.
        let per_token = (4 * 2048 + 3 * 11008 + 2048 + 2 * 512) * 4;
        assert_eq!(large - small, 14336 * per_token);
        // SmolLM3-3B's 16384-token step keeps under 4 GiB: a small share of an 80 GB card.
        assert!(large > 3 << 30 && large < 4 << 30, "{large}");
    }
}
