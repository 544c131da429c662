//! `WebEngine`: the continuous-batching engine (`LLM` over `Engine`) on WebGPU or the CPU,
//! driven from JavaScript one `step` at a time.
//!
//! ```text
//! JS: addChat / addCompletion (between steps) ──▶ Engine::add_request (waiting queue)
//! JS loop: await step() ──▶ Engine::step_async (schedule, forward, sample, detokenize)
//!          ◀── JSON [RequestOutput (delta)]        ... yields to the event loop ...
//! ```
//! Requests added while a step runs wait in the JavaScript wrapper; the engine is borrowed
//! for the whole step, so a call during one fails with `WebError::Busy` instead of racing.

use std::cell::RefCell;
use std::rc::Rc;

use serde::Deserialize;
use serde_json::Value;
use tessera_core::backend::cpu::CpuBackend;
use tessera_core::backend::{Backend, Op};
use tessera_core::engine::{Engine, EngineConfig, ModelRunner, Prompt, LLM};
use tessera_core::kv::{blocks_for, num_blocks_for, KvCache};
use tessera_core::models::load_model;
use tessera_core::sample::{RequestOutputKind, SamplingParams};
use wasm_bindgen::prelude::*;

use crate::error::{parse_json, Result, WebError};
use crate::files::{ModelFiles, ModelParts, Weights};

/// Options of [`WebEngine::load`] (JSON; every field optional).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LoadOptions {
    /// "webgpu", "cpu" or "auto" (WebGPU when the browser has it, else the CPU).
    pub device: String,
    /// "auto" (f16 where the adapter has shader-f16), "float32" or "float16" (WebGPU only).
    pub dtype: String,
    /// Longest prompt + output (default: the model's, at most 4096).
    pub max_model_len: Option<usize>,
    /// KV-cache size in MiB.
    pub kv_cache_mib: u64,
    pub block_size: usize,
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
    pub enable_prefix_caching: bool,
    /// The engine's async scheduling: each step is submitted before the previous one's
    /// sampled ids are mapped back (requests without logprobs or penalties; see
    /// `tessera_core::engine`). Default:
    /// on for WebGPU, off on the CPU (its steps run on the calling thread).
    pub async_scheduling: Option<bool>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            device: "auto".into(),
            dtype: "auto".into(),
            max_model_len: None,
            kv_cache_mib: 256,
            block_size: 16,
            max_num_seqs: 16,
            max_num_batched_tokens: 512,
            enable_prefix_caching: true,
            async_scheduling: None,
        }
    }
}

enum AnyLlm {
    Cpu(LLM<CpuBackend>),
    #[cfg(target_arch = "wasm32")]
    Gpu(LLM<tessera_core::backend::wgpu::WgpuBackend>),
}

/// Runs `$body` with `$l` bound to the concrete `LLM<_>`.
macro_rules! with_llm {
    ($any:expr, $l:ident => $body:expr) => {
        match $any {
            AnyLlm::Cpu($l) => $body,
            #[cfg(target_arch = "wasm32")]
            AnyLlm::Gpu($l) => $body,
        }
    };
}

/// A loaded model and its engine.
#[wasm_bindgen]
pub struct WebEngine {
    llm: Rc<RefCell<Option<AnyLlm>>>,
    info: String,
}

#[wasm_bindgen]
impl WebEngine {
    /// Builds the model in `files` on the device `options_json` asks for.
    pub async fn load(files: ModelFiles, options_json: String) -> std::result::Result<WebEngine, JsError> {
        Ok(Self::load_inner(files, &options_json).await?)
    }

    /// JSON: device, adapter, dtype, architecture, max_model_len, KV blocks, chat template presence.
    pub fn info(&self) -> String {
        self.info.clone()
    }

    /// Queues a chat request: `messages_json` is an array of `{role, content}`, `params_json`
    /// vLLM-named sampling parameters. Returns the prompt's token count.
    #[wasm_bindgen(js_name = addChat)]
    pub fn add_chat(&self, request_id: String, messages_json: String, params_json: String) -> std::result::Result<usize, JsError> {
        let messages: Value = parse_json("messages", &messages_json)?;
        Ok(self.add(request_id, Input::Chat(messages), &params_json)?)
    }

    /// Queues a text completion request (special tokens such as BOS added as the tokenizer says).
    #[wasm_bindgen(js_name = addCompletion)]
    pub fn add_completion(&self, request_id: String, prompt: String, params_json: String) -> std::result::Result<usize, JsError> {
        Ok(self.add(request_id, Input::Text(prompt), &params_json)?)
    }

    /// Queues a completion request given as token ids (no special tokens added).
    #[wasm_bindgen(js_name = addTokens)]
    pub fn add_tokens(&self, request_id: String, prompt: Vec<u32>, params_json: String) -> std::result::Result<usize, JsError> {
        Ok(self.add(request_id, Input::Tokens(prompt), &params_json)?)
    }

    /// Runs one engine step; resolves to a JSON array of vLLM-shaped `RequestOutput`s
    /// (deltas) of the requests that progressed.
    pub fn step(&self) -> js_sys::Promise {
        let cell = self.llm.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            match step_json(&cell).await {
                Ok(s) => Ok(JsValue::from_str(&s)),
                Err(e) => Err(JsError::from(e).into()),
            }
        })
    }

    /// Aborts a request; returns whether it was known.
    pub fn abort(&self, request_id: String) -> std::result::Result<bool, JsError> {
        let mut guard = self.llm.try_borrow_mut().map_err(|_| WebError::Busy)?;
        let any = guard.as_mut().ok_or(WebError::Unloaded)?;
        Ok(with_llm!(any, l => l.engine.abort_request(&request_id)))
    }

    #[wasm_bindgen(js_name = hasUnfinished)]
    pub fn has_unfinished(&self) -> bool {
        match self.llm.try_borrow() {
            Ok(g) => g.as_ref().is_some_and(|any| with_llm!(any, l => l.engine.has_unfinished_requests())),
            Err(_) => true,
        }
    }

    /// JSON engine counters (running, waiting, KV usage, prefix-cache hits, tokens, steps).
    pub fn stats(&self) -> std::result::Result<String, JsError> {
        let guard = self.llm.try_borrow().map_err(|_| WebError::Busy)?;
        let any = guard.as_ref().ok_or(WebError::Unloaded)?;
        let s = with_llm!(any, l => l.engine.stats());
        Ok(serde_json::json!({
            "num_running": s.num_running,
            "num_waiting": s.num_waiting,
            "kv_cache_usage": s.kv_cache_usage,
            "num_preemptions_total": s.num_preemptions_total,
            "prefix_cache_queries_total": s.prefix_cache_queries_total,
            "prefix_cache_hits_total": s.prefix_cache_hits_total,
            "prompt_tokens_total": s.prompt_tokens_total,
            "generation_tokens_total": s.generation_tokens_total,
            "num_steps_total": s.num_steps_total,
            "last_step_tokens": s.last_step_tokens,
        })
        .to_string())
    }

    /// Frees the model and its KV cache (GPU buffers included); later calls fail.
    pub fn unload(&self) -> std::result::Result<(), JsError> {
        let mut guard = self.llm.try_borrow_mut().map_err(|_| WebError::Busy)?;
        guard.take();
        Ok(())
    }
}

enum Input {
    Chat(Value),
    Text(String),
    Tokens(Vec<u32>),
}

/// One engine step; its outputs as JSON.
async fn step_json(cell: &RefCell<Option<AnyLlm>>) -> Result<String> {
    let mut guard = cell.try_borrow_mut().map_err(|_| WebError::Busy)?;
    let any = guard.as_mut().ok_or(WebError::Unloaded)?;
    let outs = with_llm!(any, l => l.engine.step_async().await)?;
    Ok(serde_json::to_string(&outs).expect("outputs serialize"))
}

impl WebEngine {
    fn add(&self, request_id: String, input: Input, params_json: &str) -> Result<usize> {
        let mut params: SamplingParams = parse_json("sampling parameters", params_json)?;
        params.output_kind = RequestOutputKind::Delta;
        let mut guard = self.llm.try_borrow_mut().map_err(|_| WebError::Busy)?;
        let any = guard.as_mut().ok_or(WebError::Unloaded)?;
        with_llm!(any, l => {
            let prompt = match input {
                Input::Chat(m) => l.chat_prompt(&m)?,
                Input::Text(t) => Prompt::Text(t),
                Input::Tokens(ids) => Prompt::Tokens(ids),
            };
            let n = match &prompt {
                Prompt::TextTokens(_, ids) | Prompt::Tokens(ids) => ids.len(),
                Prompt::Text(t) => l.engine.tokenizer().map_or(0, |tok| tok.encode(t, true).map_or(0, |v| v.len())),
            };
            l.engine.add_request(request_id, prompt, params)?;
            Ok(n)
        })
    }

    async fn load_inner(files: ModelFiles, options_json: &str) -> Result<WebEngine> {
        let opts: LoadOptions = if options_json.trim().is_empty() { LoadOptions::default() } else { parse_json("load options", options_json)? };
        let parts = files.into_parts()?;
        let device = opts.device.as_str();
        if !matches!(device, "auto" | "webgpu" | "cpu") {
            return Err(WebError::Device(opts.device.clone()));
        }
        #[cfg(target_arch = "wasm32")]
        if device != "cpu" {
            match open_webgpu(&opts.dtype).await {
                Ok(b) => {
                    let info = b.adapter_info();
                    let adapter = if info.name.is_empty() {
                        "WebGPU adapter (name hidden by the browser)".to_string()
                    } else {
                        format!("{} ({:?})", info.name, info.backend)
                    };
                    return build(parts, b, &opts, "webgpu", &adapter);
                }
                Err(e) if device == "webgpu" => return Err(e),
                Err(e) => tracing::warn!(error = %e, "WebGPU unavailable; using the CPU backend"),
            }
        }
        #[cfg(not(target_arch = "wasm32"))]
        if device == "webgpu" {
            return Err(WebError::NoWebGpu("this build is not running in a browser".into()));
        }
        build(parts, CpuBackend::new(), &opts, "cpu", "tessera CPU backend (wasm32)")
    }
}

#[cfg(target_arch = "wasm32")]
async fn open_webgpu(dtype: &str) -> Result<tessera_core::backend::wgpu::WgpuBackend> {
    use tessera_core::backend::wgpu::{WgpuBackend, WgpuOptions};
    use tessera_core::tensor::DType;
    let dtype = match dtype {
        "auto" => None,
        "float32" => Some(DType::F32),
        "float16" => Some(DType::F16),
        other => return Err(WebError::NoWebGpu(format!("dtype {other:?}: expected auto, float32 or float16"))),
    };
    WgpuBackend::new(WgpuOptions { dtype, ..Default::default() }).await.map_err(|e| WebError::NoWebGpu(e.to_string()))
}

/// The model on `backend`, its KV cache and the engine around them.
fn build<B: Backend>(parts: ModelParts, backend: B, opts: &LoadOptions, device: &str, adapter: &str) -> Result<WebEngine>
where
    AnyLlm: From<LLM<B>>,
{
    let ModelParts { config, generation, tokenizer, chat_template, mut weights } = parts;
    if let Weights::Gguf(w) = &mut weights {
        let quant = w.info("model.layers.0.mlp.down_proj.weight").map(|(_, d)| d).filter(|d| d.is_quantized());
        if let Some(dtype) = quant {
            let direct = backend.supports(Op::Upload, dtype) && backend.supports(Op::Matmul, dtype);
            w.set_dequantize_on_load(!direct);
        }
    }
    let model = load_model(&backend, &config, weights.source())?;
    drop(weights);
    let max_model_len = opts.max_model_len.unwrap_or(config.max_position_embeddings.min(4096));
    let per_block = KvCache::<B::Tensor>::bytes_per_block(
        config.num_hidden_layers,
        opts.block_size,
        config.kv_size(),
        backend.activation_dtype().size(),
    );
    let wanted = (blocks_for(max_model_len, opts.block_size) * opts.max_num_seqs + 1) as u64 * per_block as u64;
    let memory = wanted.min(opts.kv_cache_mib << 20);
    let num_blocks = num_blocks_for(memory, per_block, None)?;
    let dtype = backend.activation_dtype().to_string();
    let mut runner = ModelRunner::new(backend, model, num_blocks, opts.block_size)?;
    // Decode steps replay a recorded graph (dispatches + bind groups made once), as natively:
    // in a browser every dispatch encoded costs the page's thread far more than on Vulkan.
    runner.enable_decode_graphs(opts.max_num_seqs, max_model_len);
    let eos = if generation.eos_token_ids.is_empty() { config.eos_token_ids.clone() } else { generation.eos_token_ids.clone() };
    let token = |id: Option<u32>| id.and_then(|id| tokenizer.as_ref()?.id_to_token(id));
    let (bos_token, eos_token) = (token(config.bos_token_id), token(eos.first().copied()));
    let engine_config = EngineConfig {
        max_num_seqs: opts.max_num_seqs,
        max_num_batched_tokens: opts.max_num_batched_tokens.max(opts.block_size),
        enable_prefix_caching: opts.enable_prefix_caching,
        async_scheduling: opts.async_scheduling.unwrap_or(device == "webgpu"),
        ..EngineConfig::new(max_model_len)
    };
    let has_chat_template = chat_template.is_some();
    let engine = Engine::new(runner, engine_config, tokenizer, eos)?;
    let llm = LLM::new(engine, chat_template.as_deref(), bos_token, eos_token)?;
    let info = serde_json::json!({
        "device": device,
        "adapter": adapter,
        "dtype": dtype,
        "architecture": config.architecture,
        "num_hidden_layers": config.num_hidden_layers,
        "vocab_size": config.vocab_size,
        "max_model_len": max_model_len,
        "num_kv_blocks": num_blocks,
        "block_size": opts.block_size,
        "has_chat_template": has_chat_template,
    })
    .to_string();
    tracing::info!(%info, "model loaded");
    Ok(WebEngine { llm: Rc::new(RefCell::new(Some(llm.into()))), info })
}

impl From<LLM<CpuBackend>> for AnyLlm {
    fn from(l: LLM<CpuBackend>) -> Self {
        AnyLlm::Cpu(l)
    }
}

#[cfg(target_arch = "wasm32")]
impl From<LLM<tessera_core::backend::wgpu::WgpuBackend>> for AnyLlm {
    fn from(l: LLM<tessera_core::backend::wgpu::WgpuBackend>) -> Self {
        AnyLlm::Gpu(l)
    }
}

#[cfg(test)]
mod tests {
    //! The engine natively on the CPU backend: the llama fixture (config.json +
    //! safetensors, no tokenizer) loaded from bytes as the browser hands them over.
    use super::*;

    fn fixture() -> (ModelFiles, Value) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/llama");
        let mut files = ModelFiles::new();
        for name in ["config.json", "generation_config.json", "model.safetensors"] {
            files.add(name.into(), std::fs::read(dir.join(name)).unwrap());
        }
        let reference = serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
        (files, reference)
    }

    fn ids(v: &Value) -> Vec<u32> {
        v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
    }

    #[test]
    fn two_batched_requests_match_the_transformers_fixture() {
        let (files, r) = fixture();
        let e = pollster::block_on(WebEngine::load_inner(files, r#"{"device":"cpu","maxModelLen":128}"#)).unwrap();
        let info: Value = serde_json::from_str(&e.info()).unwrap();
        assert_eq!(info["device"], "cpu");
        assert_eq!(info["has_chat_template"], false);
        let cases = r["cases"].as_array().unwrap();
        let params = r#"{"temperature":0,"max_tokens":20,"ignore_eos":true}"#;
        for (i, c) in cases.iter().take(2).enumerate() {
            e.add(format!("r{i}"), Input::Tokens(ids(&c["prompt_token_ids"])), params).unwrap();
        }
        let mut got: Vec<Vec<u32>> = vec![Vec::new(); 2];
        let mut steps = 0;
        while e.has_unfinished() {
            let outs: Value = serde_json::from_str(&pollster::block_on(step_json(&e.llm)).unwrap()).unwrap();
            steps += 1;
            for o in outs.as_array().unwrap() {
                let i: usize = o["request_id"].as_str().unwrap()[1..].parse().unwrap();
                got[i].extend(ids(&o["outputs"][0]["token_ids"]));
            }
        }
        for (i, c) in cases.iter().take(2).enumerate() {
            assert_eq!(got[i], ids(&c["greedy_token_ids"])[..20], "request {i}");
        }
        assert!(steps <= 21, "{steps} steps for two 20-token requests: not batched");
        // Text needs a tokenizer, which this model lacks: a clear error, not a panic.
        let err = e.add("t".into(), Input::Text("hi".into()), params).unwrap_err();
        assert!(err.to_string().contains("tokenizer"), "{err}");
        e.unload().unwrap();
        assert!(matches!(e.add("x".into(), Input::Tokens(vec![1]), params), Err(WebError::Unloaded)));
    }
}
