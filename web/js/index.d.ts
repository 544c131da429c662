// Types of tessera-web's public API (js/index.js): an OpenAI-shaped chat / completions
// engine running in the browser on WebGPU (or the CPU), in the page or in a Web Worker.

export type Device = 'auto' | 'webgpu' | 'cpu';

export interface LoadProgress {
  phase: 'init' | 'download' | 'cache' | 'build' | 'ready';
  /** 0..1 over all model files. */
  progress: number;
  text: string;
  file?: string;
  loaded?: number;
  total?: number;
  fromCache?: boolean;
}

export interface EngineOptions {
  /** URL of a `.gguf` file, or of an HF-style folder (config.json, tokenizer.json, *.safetensors). */
  model: string;
  onProgress?: (p: LoadProgress) => void;
  /** 'auto' (default): WebGPU when the browser has it, else the CPU backend. */
  device?: Device;
  /** Activation / KV dtype on WebGPU: 'auto' (f16 where shader-f16 exists), 'float32', 'float16'. */
  dtype?: 'auto' | 'float32' | 'float16';
  /** Longest prompt + output in tokens (default: the model's, at most 4096). */
  maxModelLen?: number;
  /** KV-cache size in MiB (default 256). */
  kvCacheMiB?: number;
  blockSize?: number;
  /** Most requests batched together (default 16). */
  maxNumSeqs?: number;
  /** Token budget of one engine step (default 512). */
  maxNumBatchedTokens?: number;
  enablePrefixCaching?: boolean;
  /** Submit each engine step before the previous one's tokens are read back (requests without logprobs or penalties; default: on for WebGPU). */
  asyncScheduling?: boolean;
  /** Keep model files in Cache Storage (default true). */
  useCache?: boolean;
  /** The wasm module: URL, bytes or compiled module (default: pkg/tessera_web_bg.wasm next to this file). */
  wasm?: string | URL | BufferSource | WebAssembly.Module;
  /** Model name reported in responses (default: the URL's last part). */
  modelName?: string;
  /** fetch implementation for model files (default: globalThis.fetch). */
  fetch?: typeof fetch;
}

export interface WorkerEngineOptions extends EngineOptions {
  /** A Worker running `tessera-web/worker` (default: started from this package). */
  worker?: Worker;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool' | string;
  content: string | Array<{ type: 'text'; text: string }>;
  [key: string]: unknown;
}

export interface SamplingRequest {
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  seed?: number;
  n?: number;
  stop?: string | string[];
  stop_token_ids?: number[];
  presence_penalty?: number;
  frequency_penalty?: number;
  repetition_penalty?: number;
  logit_bias?: Record<string, number>;
  min_tokens?: number;
  ignore_eos?: boolean;
  /** Adds `token_ids` to every choice (and `prompt_token_ids` to full responses), as vLLM does. */
  return_token_ids?: boolean;
  stream_options?: { include_usage?: boolean };
  /** Aborting ends the request with finish_reason "abort". */
  signal?: AbortSignal;
}

export type FinishReason = 'stop' | 'length' | 'abort' | null;

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Prompt tokens served from the engine's prefix cache. */
  prompt_tokens_details: { cached_tokens: number };
}

export interface ChatCompletionRequest extends SamplingRequest {
  messages: ChatMessage[];
  stream?: boolean;
}

export interface CompletionRequest extends SamplingRequest {
  /** Text (special tokens such as BOS added as the tokenizer says) or token ids. */
  prompt: string | number[];
  stream?: boolean;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    delta: { role?: 'assistant'; content?: string };
    logprobs: null;
    finish_reason: FinishReason;
    token_ids?: number[];
  }>;
  usage?: Usage;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    message: { role: 'assistant'; content: string };
    logprobs: null;
    finish_reason: FinishReason;
    token_ids?: number[];
  }>;
  usage: Usage;
  prompt_token_ids?: number[];
}

export interface Completion {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: Array<{ index: number; text: string; logprobs: null; finish_reason: FinishReason; token_ids?: number[] }>;
  usage?: Usage;
  prompt_token_ids?: number[];
}

export interface EngineInfo {
  device: 'webgpu' | 'cpu';
  adapter: string;
  dtype: string;
  architecture: string;
  num_hidden_layers: number;
  vocab_size: number;
  max_model_len: number;
  num_kv_blocks: number;
  block_size: number;
  has_chat_template: boolean;
}

export interface EngineStats {
  num_running: number;
  num_waiting: number;
  kv_cache_usage: number;
  num_preemptions_total: number;
  prefix_cache_queries_total: number;
  prefix_cache_hits_total: number;
  prompt_tokens_total: number;
  generation_tokens_total: number;
  num_steps_total: number;
  last_step_tokens: number;
}

export interface ChatCompletions {
  create(req: ChatCompletionRequest & { stream: true }): Promise<AsyncIterableIterator<ChatCompletionChunk>>;
  create(req: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
  create(req: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterableIterator<ChatCompletionChunk>>;
}

export interface Completions {
  create(req: CompletionRequest & { stream: true }): Promise<AsyncIterableIterator<Completion>>;
  create(req: CompletionRequest & { stream?: false }): Promise<Completion>;
  create(req: CompletionRequest): Promise<Completion | AsyncIterableIterator<Completion>>;
}

export interface EngineApi {
  readonly chat: { completions: ChatCompletions };
  readonly completions: Completions;
  /** Device, adapter, dtype and model facts. */
  readonly info: EngineInfo;
  /** The model's name in responses. */
  readonly model: string;
  /** Whether the model files came from Cache Storage. */
  readonly fromCache: boolean;
  /** Stops every running request (their streams end with finish_reason "abort"). */
  interrupt(): void | Promise<unknown>;
  /** Frees the model and its GPU memory. */
  unload(): Promise<void>;
  stats(): EngineStats | Promise<EngineStats>;
}

export declare class Engine implements EngineApi {
  readonly chat: { completions: ChatCompletions };
  readonly completions: Completions;
  readonly info: EngineInfo;
  readonly model: string;
  readonly fromCache: boolean;
  interrupt(): void;
  unload(): Promise<void>;
  stats(): EngineStats;
  /** Aborts one request by its response id. */
  abort(id: string): void;
}

/** Fetches the model (progress, Cache Storage) and builds an engine in this thread. */
export function createEngine(options: EngineOptions): Promise<Engine>;
/** The same engine in a Web Worker; every method is answered by message. */
export function createWorkerEngine(options: WorkerEngineOptions): Promise<EngineApi>;
/** Loads the wasm module once (done by createEngine). */
export function initWasm(wasm?: EngineOptions['wasm']): Promise<unknown>;
export function version(): Promise<string>;
export function hasWebGPU(): Promise<boolean>;
export function isModelCached(url: string): Promise<boolean>;
export function deleteModelCache(url?: string): Promise<void>;
export const CACHE_NAME: string;
