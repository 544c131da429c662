// The Web Worker side of createWorkerEngine: hosts one Engine and answers the page's
// messages ({ type: 'load' | 'create' | 'abort' | 'interrupt' | 'stats' | 'unload' }).
// Start it with `new Worker(new URL('tessera-web/worker', import.meta.url), { type: 'module' })`.

import { createEngine } from './index.js';

let engine = null;
const streams = new Map(); // call id -> async iterator

const reply = (id, msg) => postMessage({ id, ...msg });
const errorOf = (e) => ({ message: e && e.message ? e.message : String(e) });

async function handle(msg) {
  const { id, type } = msg;
  switch (type) {
    case 'load': {
      const opts = { ...msg.options, onProgress: (p) => reply(id, { type: 'progress', progress: p }) };
      engine = await createEngine(opts);
      return reply(id, { type: 'result', value: { info: engine.info, model: engine.model, fromCache: engine.fromCache } });
    }
    case 'create': {
      if (!engine) throw new Error('no model loaded');
      const create = msg.kind === 'chat' ? engine.chat.completions.create : engine.completions.create;
      const { signal, ...req } = msg.request;
      void signal;
      const result = await create(req);
      if (!req.stream) return reply(id, { type: 'result', value: result });
      streams.set(id, result);
      reply(id, { type: 'started' });
      try {
        for await (const chunk of result) reply(id, { type: 'chunk', chunk });
        reply(id, { type: 'end' });
      } finally {
        streams.delete(id);
      }
      return undefined;
    }
    case 'cancel': {
      const s = streams.get(msg.target);
      if (s) s.return();
      return reply(id, { type: 'result', value: true });
    }
    case 'interrupt':
      if (engine) engine.interrupt();
      return reply(id, { type: 'result', value: true });
    case 'stats':
      return reply(id, { type: 'result', value: engine ? engine.stats() : null });
    case 'unload':
      if (engine) await engine.unload();
      engine = null;
      return reply(id, { type: 'result', value: true });
    default:
      throw new Error(`unknown message type ${type}`);
  }
}

self.onmessage = (e) => {
  handle(e.data).catch((err) => reply(e.data.id, { type: 'error', error: errorOf(err) }));
};
