// tessera-web demo: pick a model URL, load it (progress bar, Cache Storage), chat with
// streaming output and tokens/s, stop button. Query parameters: ?model=URL&device=cpu|webgpu|auto
// &worker=0|1&autoload=1. The page exposes its state as window.tesseraDemo (for tests).

import { createEngine, createWorkerEngine, hasWebGPU } from '../js/index.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const DEFAULT_MODEL = new URL('/models/SmolLM2-135M-Instruct.Q4_1.gguf', location.href).href;

const state = { engine: null, messages: [], busy: false, lastError: null, loads: 0, webgpu: null };
window.tesseraDemo = state;

function setStatus(text) {
  $('load-status').textContent = text;
}

function setBusy(busy) {
  state.busy = busy;
  $('send-btn').disabled = busy || !state.engine;
  $('stop-btn').disabled = !busy;
  $('prompt').disabled = !state.engine;
}

function addMessage(role, text) {
  const el = document.createElement('div');
  el.className = `msg ${role}`;
  el.dataset.role = role;
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text;
  el.append(body);
  $('messages').append(el);
  $('messages').scrollTop = $('messages').scrollHeight;
  return el;
}

async function load() {
  const model = $('model-url').value.trim();
  if (!model) return;
  $('load-btn').disabled = true;
  if (state.engine) await unload();
  const started = performance.now();
  const useWorker = $('use-worker').checked;
  const options = {
    model,
    device: $('device').value,
    onProgress: (p) => {
      $('load-progress').value = p.progress ?? 0;
      setStatus(p.text || p.phase);
    },
  };
  try {
    state.engine = useWorker ? await createWorkerEngine(options) : await createEngine(options);
    state.loads += 1;
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    const i = state.engine.info;
    setStatus(`ready: ${i.architecture}, ${i.num_hidden_layers} layers on ${i.device} (${i.adapter}, ${i.dtype})`
      + `${useWorker ? ' in a worker' : ''}; loaded in ${secs} s${state.engine.fromCache ? ' from the browser cache' : ''}`);
    document.body.dataset.modelState = 'ready';
    document.body.dataset.fromCache = String(Boolean(state.engine.fromCache));
    $('unload-btn').disabled = false;
  } catch (e) {
    state.lastError = String(e && e.message ? e.message : e);
    setStatus(`failed to load: ${state.lastError}`);
    document.body.dataset.modelState = 'error';
  } finally {
    $('load-btn').disabled = false;
    setBusy(false);
  }
}

async function unload() {
  const e = state.engine;
  state.engine = null;
  $('unload-btn').disabled = true;
  document.body.dataset.modelState = 'none';
  setBusy(false);
  if (e) await e.unload();
  setStatus('no model loaded');
}

async function send(ev) {
  ev.preventDefault();
  const text = $('prompt').value.trim();
  if (!text || !state.engine || state.busy) return;
  $('prompt').value = '';
  addMessage('user', text);
  state.messages.push({ role: 'user', content: text });
  const el = addMessage('assistant', '');
  el.dataset.state = 'streaming';
  const body = el.querySelector('.text');
  const meta = document.createElement('span');
  meta.className = 'meta';
  el.append(meta);
  setBusy(true);
  const ids = [];
  let reply = '';
  let finish = null;
  let first = null;
  const t0 = performance.now();
  try {
    const stream = await state.engine.chat.completions.create({
      messages: state.messages,
      stream: true,
      temperature: Number($('temperature').value),
      top_p: Number($('top-p').value),
      max_tokens: Number($('max-tokens').value),
      return_token_ids: true,
      stream_options: { include_usage: true },
    });
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      if (!c) continue;
      if (first === null) first = performance.now();
      reply += c.delta.content || '';
      ids.push(...(c.token_ids || []));
      if (c.finish_reason) finish = c.finish_reason;
      body.textContent = reply;
      const secs = (performance.now() - first) / 1000;
      const rate = ids.length > 1 && secs > 0 ? ((ids.length - 1) / secs).toFixed(1) : '–';
      const speed = `${ids.length} tokens · ${rate} tok/s · first token ${((first - t0) / 1000).toFixed(2)} s`;
      meta.textContent = speed;
      $('speed').textContent = speed;
      $('messages').scrollTop = $('messages').scrollHeight;
    }
    state.messages.push({ role: 'assistant', content: reply });
  } catch (e) {
    state.lastError = String(e && e.message ? e.message : e);
    addMessage('error', `error: ${state.lastError}`);
    finish = 'error';
  } finally {
    el.dataset.tokenIds = JSON.stringify(ids);
    el.dataset.finishReason = finish || '';
    el.dataset.state = 'done';
    setBusy(false);
  }
}

async function init() {
  $('model-url').value = params.get('model') || DEFAULT_MODEL;
  for (const url of [DEFAULT_MODEL]) {
    const o = document.createElement('option');
    o.value = url;
    $('model-presets').append(o);
  }
  state.webgpu = await hasWebGPU();
  document.body.dataset.webgpu = String(state.webgpu);
  if (!state.webgpu) {
    $('webgpu-warning').hidden = false;
    $('device').value = 'cpu';
  }
  if (params.get('device')) $('device').value = params.get('device');
  if (params.get('worker') === '0') $('use-worker').checked = false;
  $('load-btn').onclick = load;
  $('unload-btn').onclick = unload;
  $('chat-form').onsubmit = send;
  $('stop-btn').onclick = () => state.engine && state.engine.interrupt();
  $('clear-btn').onclick = () => {
    state.messages = [];
    $('messages').replaceChildren();
    $('speed').textContent = '';
  };
  $('prompt').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) send(e);
  });
  document.body.dataset.modelState = 'none';
  if (params.get('autoload') === '1') load();
}

init();
