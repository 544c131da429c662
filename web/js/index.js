// tessera-web: run LLMs in the browser (WebGPU, or the CPU as a fallback) with an API shaped
// like the OpenAI client and WebLLM.
//
//   const engine = await createEngine({ model: 'https://…/model.gguf', onProgress });
//   for await (const c of await engine.chat.completions.create({ messages, stream: true }))
//     out += c.choices[0]?.delta?.content ?? '';
//
// createWorkerEngine(options) runs the same engine in a Web Worker (see worker.js).

import init, { ModelFiles, WebEngine, version as wasmVersion } from '../pkg/tessera_web.js';
import { Engine } from './engine.js';
import { fetchFile, resolveModelFiles } from './fetch.js';

export { Engine } from './engine.js';
export { CACHE_NAME, deleteModelCache, isModelCached } from './fetch.js';
export { createWorkerEngine } from './worker-client.js';

let initialized = null;

/** Loads the wasm module once (`wasm`: a URL, bytes or a compiled module; default: next to this package). */
export function initWasm(wasm) {
  if (!initialized) initialized = init(wasm === undefined ? undefined : { module_or_path: wasm });
  return initialized;
}

/** The package's (and engine's) version. */
export async function version() {
  await initWasm();
  return wasmVersion();
}

/** Whether this browser exposes WebGPU with an adapter. */
export async function hasWebGPU() {
  try {
    const gpu = typeof navigator !== 'undefined' ? navigator.gpu : undefined;
    return Boolean(gpu && (await gpu.requestAdapter()));
  } catch {
    return false;
  }
}

/**
 * Fetches a model (with progress, through Cache Storage) and builds an engine.
 * Options: model (URL of a .gguf or an HF-style folder), onProgress, device ('auto' |
 * 'webgpu' | 'cpu'), dtype, maxModelLen, kvCacheMiB, maxNumSeqs, maxNumBatchedTokens,
 * enablePrefixCaching, asyncScheduling, useCache, wasm, modelName, fetch.
 */
export async function createEngine(options = {}) {
  const { model, onProgress = () => {}, useCache = true } = options;
  if (typeof model !== 'string' || !model) throw new Error('createEngine needs { model: <URL of a .gguf file or a model folder> }');
  const report = (p) => {
    try {
      onProgress(p);
    } catch (e) {
      console.error('onProgress threw', e);
    }
  };
  report({ phase: 'init', progress: 0, text: 'loading the engine' });
  await initWasm(options.wasm);
  const fetchOpts = { useCache, fetchImpl: options.fetch || fetch };
  const list = await resolveModelFiles(model, fetchOpts);
  const sizes = new Map();
  let fromCache = true;
  const files = new ModelFiles();
  let downloaded = 0;
  for (const f of list) {
    const bytes = await fetchFile(f.url, {
      ...fetchOpts,
      optional: f.optional,
      onProgress: (p) => {
        sizes.set(f.name, p.total);
        fromCache = fromCache && p.fromCache;
        const total = [...sizes.values()].reduce((a, b) => a + b, 0);
        const loaded = downloaded + p.loaded;
        report({ phase: p.fromCache ? 'cache' : 'download', file: f.name, loaded, total, fromCache: p.fromCache,
          progress: total ? Math.min(loaded / total, 1) : 0,
          text: `${p.fromCache ? 'reading cache' : 'downloading'} ${f.name}: ${(loaded / 1048576).toFixed(1)} / ${(total / 1048576).toFixed(1)} MiB` });
      },
    });
    if (bytes) {
      downloaded += bytes.length;
      files.add(f.name, bytes);
    }
  }
  report({ phase: 'build', progress: 1, fromCache, text: 'building the model' });
  const engineOptions = {
    device: options.device || 'auto',
    dtype: options.dtype || 'auto',
    maxModelLen: options.maxModelLen ?? null,
    kvCacheMib: options.kvCacheMiB ?? 256,
    blockSize: options.blockSize ?? 16,
    maxNumSeqs: options.maxNumSeqs ?? 16,
    maxNumBatchedTokens: options.maxNumBatchedTokens ?? 512,
    enablePrefixCaching: options.enablePrefixCaching ?? true,
    asyncScheduling: options.asyncScheduling ?? null,
  };
  const wasm = await WebEngine.load(files, JSON.stringify(engineOptions));
  const name = options.modelName || model.replace(/[?#].*$/, '').replace(/\/$/, '').split('/').pop();
  const engine = new Engine(wasm, name);
  engine.fromCache = fromCache;
  engine.downloadedBytes = downloaded;
  report({ phase: 'ready', progress: 1, fromCache, text: `ready (${engine.info.device}, ${engine.info.adapter})` });
  return engine;
}
