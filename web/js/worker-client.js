// createWorkerEngine: the Engine API in the page, the engine itself in a Web Worker
// (worker.js), so long steps never block the page. Chunks arrive by postMessage.

let nextCall = 0;

class WorkerEngine {
  constructor(worker) {
    this.worker = worker;
    this.calls = new Map(); // call id -> handlers
    this.info = null;
    this.model = null;
    this.chat = { completions: { create: (req) => this.create('chat', req) } };
    this.completions = { create: (req) => this.create('text', req) };
    worker.onmessage = (e) => {
      const h = this.calls.get(e.data.id);
      if (h) h(e.data);
    };
    worker.onerror = (e) => {
      const err = new Error(`worker error: ${e.message || e}`);
      for (const h of this.calls.values()) h({ type: 'error', error: { message: err.message } });
    };
  }

  call(msg, onMessage) {
    const id = nextCall++;
    return new Promise((resolve, reject) => {
      this.calls.set(id, (m) => {
        if (m.type === 'error') {
          this.calls.delete(id);
          reject(new Error(m.error.message));
        } else if (m.type === 'result') {
          this.calls.delete(id);
          resolve(m.value);
        } else {
          onMessage(m, resolve, id);
        }
      });
      this.worker.postMessage({ ...msg, id });
    });
  }

  async load(options) {
    const { onProgress = () => {}, ...rest } = options;
    const r = await this.call({ type: 'load', options: rest }, (m) => m.type === 'progress' && onProgress(m.progress));
    this.info = r.info;
    this.model = r.model;
    this.fromCache = r.fromCache;
    return this;
  }

  async create(kind, req) {
    const { signal, ...request } = req;
    if (!request.stream) {
      const p = this.call({ type: 'create', kind, request }, () => {});
      if (signal) signal.addEventListener('abort', () => this.interrupt(), { once: true });
      return p;
    }
    const items = [];
    const waiters = [];
    let done = false;
    let error = null;
    let callId = null;
    const push = (v) => (waiters.length ? waiters.shift().resolve({ value: v, done: false }) : items.push(v));
    const finish = (err) => {
      done = true;
      error = err;
      for (const w of waiters.splice(0)) (err ? w.reject(err) : w.resolve({ value: undefined, done: true }));
    };
    const started = new Promise((resolve, reject) => {
      const id = nextCall++;
      callId = id;
      this.calls.set(id, (m) => {
        if (m.type === 'started') resolve();
        else if (m.type === 'chunk') push(m.chunk);
        else if (m.type === 'end') {
          this.calls.delete(id);
          finish(null);
        } else if (m.type === 'error') {
          this.calls.delete(id);
          const err = new Error(m.error.message);
          reject(err);
          finish(err);
        }
      });
      this.worker.postMessage({ type: 'create', kind, request, id });
    });
    await started;
    const cancel = () => this.call({ type: 'cancel', target: callId }, () => {});
    if (signal) signal.addEventListener('abort', cancel, { once: true });
    return {
      next: () => {
        if (items.length) return Promise.resolve({ value: items.shift(), done: false });
        if (done) return error ? Promise.reject(error) : Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => waiters.push({ resolve, reject }));
      },
      return: () => {
        if (!done) cancel();
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  interrupt() {
    return this.call({ type: 'interrupt' }, () => {});
  }

  stats() {
    return this.call({ type: 'stats' }, () => {});
  }

  async unload() {
    await this.call({ type: 'unload' }, () => {});
    this.worker.terminate();
  }
}

/**
 * The engine of createEngine(options), running in a Web Worker. `worker`: a Worker running
 * tessera-web's worker.js (default: one started from this package's worker.js).
 */
export async function createWorkerEngine(options = {}) {
  const { worker, ...rest } = options;
  const w = worker || new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  const engine = new WorkerEngine(w);
  try {
    return await engine.load(rest);
  } catch (e) {
    w.terminate();
    throw e;
  }
}
