// `Engine`: the OpenAI-shaped API over the wasm `WebEngine`. One loop drives
// `WebEngine.step()`; requests created while a step runs are queued and added between
// steps, so every request that arrives together is batched by the engine's scheduler.
//
//   create() ─▶ pending ─▶ (between steps) addChat/addCompletion ─▶ engine
//   loop: await step() ─▶ deltas ─▶ ResponseBuilder ─▶ Stream (async iterator) ─▶ caller
//         then yield to the event loop so the page stays responsive

import { ResponseBuilder, samplingParams, templateMessages } from './openai.js';

/** A pushed-to async iterator of chunks. */
class Stream {
  constructor(onCancel) {
    this.items = [];
    this.waiters = [];
    this.done = false;
    this.error = null;
    this.onCancel = onCancel;
  }

  push(item) {
    const w = this.waiters.shift();
    if (w) w.resolve({ value: item, done: false });
    else this.items.push(item);
  }

  end(error = null) {
    if (this.done) return;
    this.done = true;
    this.error = error;
    for (const w of this.waiters.splice(0)) {
      if (error) w.reject(error);
      else w.resolve({ value: undefined, done: true });
    }
  }

  next() {
    if (this.items.length) return Promise.resolve({ value: this.items.shift(), done: false });
    if (this.done) return this.error ? Promise.reject(this.error) : Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Stopping the iteration early (break) aborts the request. */
  return() {
    if (!this.done) this.onCancel();
    this.end();
    this.items = [];
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}

/** Lets the event loop run (rendering, input) between engine steps. */
function yieldToEventLoop() {
  if (typeof MessageChannel !== 'undefined') {
    return new Promise((resolve) => {
      const ch = new MessageChannel();
      ch.port1.onmessage = () => {
        ch.port1.close(); // an open port would keep Node's event loop alive
        resolve();
      };
      ch.port2.postMessage(null);
    });
  }
  return new Promise((resolve) => setTimeout(resolve, 0));
}

let nextId = 0;

export class Engine {
  /** @param wasm a loaded `WebEngine`; @param model the model's name in responses */
  constructor(wasm, model) {
    this.wasm = wasm;
    this.model = model;
    this.info = JSON.parse(wasm.info());
    this.pending = [];
    this.active = new Map(); // request id -> { builder, stream }
    this.running = false;
    this.unloaded = false;
    this.chat = { completions: { create: (req) => this.create('chat', req) } };
    this.completions = { create: (req) => this.create('text', req) };
  }

  /** Engine counters (running, waiting, prefix-cache hits, tokens, steps). */
  stats() {
    return JSON.parse(this.wasm.stats());
  }

  async create(kind, req) {
    if (this.unloaded) throw new Error('the engine was unloaded');
    if (!req || typeof req !== 'object') throw new Error('create() needs a request object');
    const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${Date.now().toString(36)}-${nextId++}`;
    let input;
    if (kind === 'chat') input = JSON.stringify(templateMessages(req.messages));
    else if (typeof req.prompt === 'string') input = req.prompt;
    else if (Array.isArray(req.prompt) && req.prompt.every(Number.isInteger)) input = Uint32Array.from(req.prompt);
    else throw new Error('completions.create() needs a prompt: a string or an array of token ids');
    const params = JSON.stringify(samplingParams(req));
    const builder = new ResponseBuilder({ id, kind, model: this.model, req });
    const stream = new Stream(() => this.abort(id));
    await new Promise((resolve, reject) => {
      this.pending.push({ op: 'add', id, kind, input, params, builder, stream, resolve, reject });
      this.kick();
    });
    if (req.signal) {
      if (req.signal.aborted) this.abort(id);
      else req.signal.addEventListener('abort', () => this.abort(id), { once: true });
    }
    if (req.stream) return stream;
    for await (const chunk of stream) void chunk;
    return builder.response();
  }

  /** Aborts one request by id (its stream ends with finish_reason "abort"). */
  abort(id) {
    this.pending.push({ op: 'abort', id });
    this.kick();
  }

  /** Stops every running request (WebLLM's interruptGenerate). */
  interrupt() {
    for (const p of this.pending) if (p.op === 'add') this.pending.push({ op: 'abort', id: p.id });
    for (const id of this.active.keys()) this.pending.push({ op: 'abort', id });
    this.kick();
  }

  /** Frees the model (GPU memory included); pending and running requests end as aborted. */
  async unload() {
    if (this.unloaded) return;
    this.unloaded = true;
    this.interrupt();
    while (this.running) await yieldToEventLoop();
    this.drain();
    this.wasm.unload();
    this.wasm.free();
  }

  kick() {
    if (!this.running) this.loop();
  }

  /** Applies queued adds and aborts (only ever between steps). */
  drain() {
    for (const p of this.pending.splice(0)) {
      if (p.op === 'add') {
        if (this.unloaded) {
          p.reject(new Error('the engine was unloaded'));
          continue;
        }
        try {
          if (p.kind === 'chat') this.wasm.addChat(p.id, p.input, p.params);
          else if (typeof p.input === 'string') this.wasm.addCompletion(p.id, p.input, p.params);
          else this.wasm.addTokens(p.id, p.input, p.params);
          this.active.set(p.id, { builder: p.builder, stream: p.stream });
          p.resolve();
        } catch (e) {
          p.reject(e instanceof Error ? e : new Error(String(e)));
        }
      } else {
        const r = this.active.get(p.id);
        if (!r) continue;
        this.wasm.abort(p.id);
        this.active.delete(p.id);
        r.stream.push(r.builder.abort());
        r.stream.end();
      }
    }
  }

  async loop() {
    this.running = true;
    try {
      for (;;) {
        this.drain();
        if (this.active.size === 0 || this.unloaded) break;
        const outs = JSON.parse(await this.wasm.step());
        for (const o of outs) {
          const r = this.active.get(o.request_id);
          if (!r) continue;
          r.stream.push(r.builder.push(o));
          if (o.finished) {
            if (r.builder.includeUsage) r.stream.push(r.builder.usageChunk());
            this.active.delete(o.request_id);
            r.stream.end();
          }
        }
        await yieldToEventLoop();
      }
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      for (const [id, r] of this.active) {
        r.stream.end(err);
        this.active.delete(id);
      }
      for (const p of this.pending.splice(0)) if (p.op === 'add') p.reject(err);
    } finally {
      this.running = false;
    }
    if (this.pending.length && !this.unloaded) this.kick();
  }
}
