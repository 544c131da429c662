// The packed npm tarball, installed into a fresh folder, under Node: its exports and types
// are there, the wasm initializes from bytes, and the real model runs on the CPU backend
// through the OpenAI-shaped API: streaming and whole chats agree, two requests at once are
// batched without changing the greedy answer, seeded sampling repeats, a completion, an
// interrupt, unload.
//
// Run from the folder the tarball was installed into. env: GGUF (model path), EXPECTED
// (JSON written by web-e2e.sh: { max_tokens, chat: {content}, pair: [{content} x2] }).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import * as tessera from 'tessera-web';

const t0 = Date.now();
const log = (...a) => console.log(`[pack ${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
const expected = JSON.parse(fs.readFileSync(process.env.EXPECTED, 'utf8'));
const gguf = process.env.GGUF;

// Exports and files of the package.
for (const name of ['createEngine', 'createWorkerEngine', 'initWasm', 'version', 'hasWebGPU', 'isModelCached', 'deleteModelCache', 'Engine']) {
  assert.equal(typeof tessera[name], 'function', `export ${name}`);
}
assert.equal(tessera.CACHE_NAME, 'tessera-models-v1');
const require = createRequire(import.meta.url);
const pkgJson = require('tessera-web/package.json');
const root = require.resolve('tessera-web/package.json').replace(/package\.json$/, '');
for (const f of [pkgJson.types, 'js/worker.js', 'pkg/tessera_web_bg.wasm', 'pkg/tessera_web.d.ts', 'README.md']) {
  assert.ok(fs.existsSync(root + f.replace(/^\.\//, '')), `packed file ${f}`);
}
assert.match(fs.readFileSync(root + pkgJson.types, 'utf8'), /export function createEngine/);

// The wasm from bytes (Node has no fetch of file: URLs), then the version it reports.
await tessera.initWasm(fs.readFileSync(root + 'pkg/tessera_web_bg.wasm'));
assert.equal(await tessera.version(), pkgJson.version);
assert.equal(await tessera.hasWebGPU(), false);

// The real model on the CPU backend; files come through a fetch that reads the local file.
const localFetch = async (url) => {
  if (!url.endsWith('.gguf')) return new Response('not found', { status: 404 });
  const bytes = fs.readFileSync(gguf);
  return new Response(bytes, { headers: { 'content-length': String(bytes.length) } });
};
const phases = new Set();
const engine = await tessera.createEngine({
  model: 'http://models.invalid/SmolLM2-135M-Instruct.Q4_1.gguf',
  device: 'cpu',
  fetch: localFetch,
  maxModelLen: 1024,
  onProgress: (p) => phases.add(p.phase),
});
log(`loaded: ${JSON.stringify(engine.info)}`);
assert.equal(engine.info.device, 'cpu');
assert.ok(phases.has('download') && phases.has('ready'), `progress phases ${[...phases]}`);

// Greedy streaming chat, then the same request whole: identical answers.
const content = expected.chat.content;
const maxTokens = expected.max_tokens;
const stream = await engine.chat.completions.create({
  messages: [{ role: 'user', content }],
  stream: true, temperature: 0, max_tokens: maxTokens, return_token_ids: true,
  stream_options: { include_usage: true },
});
let text = '';
const ids = [];
let usage = null;
let finish = null;
let first = true;
for await (const c of stream) {
  assert.equal(c.object, 'chat.completion.chunk');
  if (c.usage) usage = c.usage;
  const ch = c.choices[0];
  if (!ch) continue;
  if (first) assert.equal(ch.delta.role, 'assistant');
  first = false;
  text += ch.delta.content ?? '';
  ids.push(...ch.token_ids);
  if (ch.finish_reason) finish = ch.finish_reason;
}
log(`chat (wasm CPU): ${JSON.stringify(text)} ${JSON.stringify(ids)} finish=${finish}`);
assert.ok(ids.length > 0 && ids.length <= maxTokens);
assert.equal(usage.completion_tokens, ids.length);
assert.ok(finish === 'stop' || finish === 'length');
const whole = await engine.chat.completions.create({
  messages: [{ role: 'user', content }], temperature: 0, max_tokens: maxTokens, return_token_ids: true,
});
assert.equal(whole.object, 'chat.completion');
assert.deepEqual(whole.choices[0].token_ids, ids, 'stream and whole response differ');
assert.equal(whole.choices[0].message.content, text);
assert.ok(whole.usage.prompt_tokens_details.cached_tokens >= 16, `prefix cache unused: ${JSON.stringify(whole.usage)}`);

// Two requests at once are batched (fewer steps than one after the other) and the greedy
// one answers exactly as alone (batch invariance); seeded sampling is reproducible.
const before = engine.stats();
const seeded = { messages: [{ role: 'user', content: expected.pair[1].content }], temperature: 0.8, seed: 7, max_tokens: maxTokens, return_token_ids: true };
const [again, sampled] = await Promise.all([
  engine.chat.completions.create({ messages: [{ role: 'user', content }], temperature: 0, max_tokens: maxTokens, return_token_ids: true }),
  engine.chat.completions.create(seeded),
]);
const steps = engine.stats().num_steps_total - before.num_steps_total;
assert.deepEqual(again.choices[0].token_ids, ids, 'greedy answer changed inside a batch');
const lens = [again.choices[0].token_ids.length, sampled.choices[0].token_ids.length];
assert.ok(steps <= Math.max(...lens) + 1, `${steps} steps for ${lens} tokens: not batched`);
const resampled = await engine.chat.completions.create(seeded);
assert.deepEqual(resampled.choices[0].token_ids, sampled.choices[0].token_ids, 'the same seed sampled differently');

// A non-streaming text completion, and interrupt() ending a running stream.
const done = await engine.completions.create({ prompt: 'The capital of France is', max_tokens: 4, temperature: 0 });
assert.equal(done.object, 'text_completion');
assert.equal(done.usage.completion_tokens, 4);
assert.ok(done.choices[0].text.length > 0);
const long = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Count to one hundred.' }], stream: true, max_tokens: 200, temperature: 0 });
let n = 0;
let reason = null;
for await (const c of long) {
  n += 1;
  if (n === 2) engine.interrupt();
  if (c.choices[0]?.finish_reason) reason = c.choices[0].finish_reason;
}
assert.equal(reason, 'abort');
assert.ok(n < 20, `interrupt took ${n} chunks`);
await engine.unload();
await assert.rejects(engine.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }] }), /unloaded/);
log('ok: packed package works under Node');
