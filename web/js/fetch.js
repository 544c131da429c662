// Model files over HTTP with download progress, kept in the browser's Cache Storage so a
// second load of the same URL reads the cache instead of the network.
// resolveModelFiles(url): a `.gguf` URL is one file; any other URL is an HF-style folder
// (config.json, tokenizer files, model.safetensors or its shard index).

export const CACHE_NAME = 'tessera-models-v1';

/** Cache Storage, where the page may use it (secure contexts; not Node). */
async function openCache() {
  try {
    if (typeof caches === 'undefined') return null;
    return await caches.open(CACHE_NAME);
  } catch {
    return null;
  }
}

/** Reads a response body, reporting `(loaded, total)` after every chunk. */
async function readBody(response, total, onChunk) {
  if (!response.body || !response.body.getReader) {
    const buf = new Uint8Array(await response.arrayBuffer());
    onChunk(buf.length, total || buf.length);
    return buf;
  }
  const reader = response.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    onChunk(loaded, total || loaded);
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(loaded);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

/**
 * Fetches `url` (from Cache Storage when it is there). `onProgress` gets
 * `{ file, loaded, total, fromCache }`. Returns the bytes, or null for a 404 when `optional`.
 */
export async function fetchFile(url, { onProgress = () => {}, optional = false, useCache = true, fetchImpl = fetch } = {}) {
  const cache = useCache ? await openCache() : null;
  const file = url.split('/').pop();
  if (cache) {
    const hit = await cache.match(url);
    if (hit) {
      const total = Number(hit.headers.get('content-length')) || 0;
      return readBody(hit, total, (loaded, t) => onProgress({ file, url, loaded, total: t, fromCache: true }));
    }
  }
  const response = await fetchImpl(url);
  if (response.status === 404 && optional) return null;
  if (!response.ok) throw new Error(`fetching ${url}: HTTP ${response.status} ${response.statusText}`);
  const total = Number(response.headers.get('content-length')) || 0;
  const bytes = await readBody(response, total, (loaded, t) => onProgress({ file, url, loaded, total: t, fromCache: false }));
  if (cache) {
    const headers = { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length) };
    try {
      await cache.put(url, new Response(bytes, { headers }));
    } catch (e) {
      console.warn(`tessera: not caching ${url}: ${e}`);
    }
  }
  return bytes;
}

/** The files a model URL stands for: `[{ name, url, optional }]`, shards resolved. */
export async function resolveModelFiles(url, fetchOpts) {
  const clean = url.replace(/[?#].*$/, '');
  if (clean.endsWith('.gguf')) return [{ name: clean.split('/').pop(), url, optional: false }];
  const base = url.endsWith('/') ? url : `${url}/`;
  const files = [
    { name: 'config.json', url: `${base}config.json`, optional: false },
    { name: 'tokenizer.json', url: `${base}tokenizer.json`, optional: false },
    { name: 'tokenizer_config.json', url: `${base}tokenizer_config.json`, optional: true },
    { name: 'generation_config.json', url: `${base}generation_config.json`, optional: true },
    { name: 'chat_template.jinja', url: `${base}chat_template.jinja`, optional: true },
  ];
  const index = await fetchFile(`${base}model.safetensors.index.json`, { ...fetchOpts, optional: true });
  if (index) {
    const map = JSON.parse(new TextDecoder().decode(index)).weight_map || {};
    for (const shard of [...new Set(Object.values(map))].sort()) {
      files.push({ name: shard, url: `${base}${shard}`, optional: false });
    }
  } else {
    files.push({ name: 'model.safetensors', url: `${base}model.safetensors`, optional: false });
  }
  return files;
}

/** Whether every file of `url` is in Cache Storage already. */
export async function isModelCached(url) {
  const cache = await openCache();
  if (!cache) return false;
  const files = await resolveModelFiles(url, { useCache: true });
  for (const f of files) {
    if (!f.optional && !(await cache.match(f.url))) return false;
  }
  return true;
}

/** Drops every cached file of `url` (or the whole tessera cache when `url` is omitted). */
export async function deleteModelCache(url) {
  if (typeof caches === 'undefined') return;
  if (!url) {
    await caches.delete(CACHE_NAME);
    return;
  }
  const cache = await caches.open(CACHE_NAME);
  for (const f of await resolveModelFiles(url, { useCache: true })) await cache.delete(f.url);
}
