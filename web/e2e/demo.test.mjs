// End-to-end test of the demo page in headless Chromium (playwright-core, /usr/bin/chromium,
// WebGPU on SwiftShader): load the real model through the page, chat, and compare the
// streamed greedy answer token for token with the native `tessera generate` reference; then
// two concurrent requests (batched: fewer engine steps than run one after the other) and a
// second load served from Cache Storage (no new download); without WebGPU the page says so.
// Screenshots go to $ARTIFACTS_DIR.
//
// env: DEMO_URL (http://127.0.0.1:PORT/demo/), EXPECTED (JSON file written by web-e2e.sh:
// { max_tokens, pair_max_tokens, chat: {content, text, token_ids}, pair: [{content, text, token_ids} x2] }),
// ARTIFACTS_DIR, DEVICE (webgpu | cpu), WORKER (1 | 0).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const env = (k, d) => process.env[k] ?? d;
const demoUrl = env('DEMO_URL');
const expected = JSON.parse(fs.readFileSync(env('EXPECTED'), 'utf8'));
const artifacts = env('ARTIFACTS_DIR', 'target/artifacts');
const device = env('DEVICE', 'webgpu');
const worker = env('WORKER', '1');
const LOAD_TIMEOUT = 300_000;
const GEN_TIMEOUT = 420_000;
fs.mkdirSync(artifacts, { recursive: true });

const t0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);

const browser = await chromium.launch({
  executablePath: env('CHROMIUM', '/usr/bin/chromium'),
  headless: true,
  args: ['--no-sandbox', '--enable-unsafe-webgpu', '--ignore-gpu-blocklist'],
});
const context = await browser.newContext({ viewport: { width: 1000, height: 900 } });
const modelRequests = [];
context.on('request', (r) => {
  if (r.url().includes('/models/')) modelRequests.push(r.url());
});
const page = await context.newPage();
page.on('console', (m) => log(`page ${m.type()}: ${m.text()}`));
page.on('pageerror', (e) => log(`page error: ${e}`));
const shot = async (name) => {
  const file = path.join(artifacts, name);
  await page.screenshot({ path: file, fullPage: true });
  log(`screenshot ${file}`);
};

async function loadModel() {
  const url = `${demoUrl}?device=${device}&worker=${worker}`;
  await page.goto(url);
  await page.waitForFunction(() => document.body.dataset.modelState === 'none');
  const webgpu = await page.evaluate(() => document.body.dataset.webgpu);
  if (device === 'webgpu') assert.equal(webgpu, 'true', 'navigator.gpu has no adapter: WebGPU is missing in this Chromium');
  await page.click('#load-btn');
  await page.waitForFunction(() => document.body.dataset.modelState !== 'none', null, { timeout: LOAD_TIMEOUT, polling: 500 });
  const status = await page.textContent('#load-status');
  log(`load: ${status}`);
  assert.equal(await page.evaluate(() => document.body.dataset.modelState), 'ready', status);
  assert.ok(status.includes(` on ${device} `), `expected the model on ${device}: ${status}`);
  return page.evaluate(() => document.body.dataset.fromCache === 'true');
}

// 0. Without WebGPU the page says so and falls back to the CPU device.
{
  const bare = await context.newPage();
  await bare.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined }));
  await bare.goto(`${demoUrl}?worker=0`);
  await bare.waitForFunction(() => document.body.dataset.modelState === 'none');
  assert.equal(await bare.evaluate(() => document.body.dataset.webgpu), 'false');
  assert.ok(await bare.isVisible('#webgpu-warning'), 'no WebGPU warning shown');
  assert.match(await bare.textContent('#webgpu-warning'), /WebGPU is not available/);
  assert.equal(await bare.inputValue('#device'), 'cpu');
  const file = path.join(artifacts, 'demo-no-webgpu.png');
  await bare.screenshot({ path: file });
  log(`screenshot ${file}`);
  await bare.close();
}

// 1. First load: downloaded (not cached), one request for the model file.
const firstFromCache = await loadModel();
assert.equal(firstFromCache, false, 'the first load must download the model');
const ggufRequests = modelRequests.filter((u) => u.endsWith('.gguf')).length;
assert.equal(ggufRequests, 1, `expected one download of the model, saw ${modelRequests}`);

// 2. Chat through the UI, greedy; compare with the native reference token for token.
await page.fill('#temperature', '0');
await page.fill('#max-tokens', String(expected.max_tokens));
await page.fill('#prompt', expected.chat.content);
await page.click('#send-btn');
await page.waitForSelector('.msg.assistant[data-state="done"]', { timeout: GEN_TIMEOUT });
const got = await page.$eval('.msg.assistant', (el) => ({
  text: el.querySelector('.text').textContent,
  ids: JSON.parse(el.dataset.tokenIds),
  finish: el.dataset.finishReason,
  meta: el.querySelector('.meta').textContent,
}));
log(`browser: ${JSON.stringify(got)}`);
log(`native:  ${JSON.stringify(expected.chat.text)} ${JSON.stringify(expected.chat.token_ids)}`);
await shot('demo.png');
assert.deepEqual(got.ids, expected.chat.token_ids, 'streamed token ids differ from tessera generate --device cpu');
assert.equal(got.text, expected.chat.text, 'streamed text differs from tessera generate --device cpu');
assert.ok(/tok\/s/.test(got.meta), `tokens/s missing: ${got.meta}`);

// 3. Two concurrent requests through the package API: batched by the engine (fewer steps
//    than one after the other) and each equal to its own native reference.
const pair = await page.evaluate(async (pairExp) => {
  const engine = window.tesseraDemo.engine;
  const before = await engine.stats();
  const req = (content) => engine.chat.completions.create({
    messages: [{ role: 'user', content }], temperature: 0, max_tokens: pairExp.max_tokens, return_token_ids: true,
  });
  const rs = await Promise.all(pairExp.items.map((p) => req(p.content)));
  const after = await engine.stats();
  return { steps: after.num_steps_total - before.num_steps_total, results: rs.map((r) => ({ text: r.choices[0].message.content, ids: r.choices[0].token_ids, usage: r.usage, object: r.object })) };
}, { max_tokens: expected.pair_max_tokens, items: expected.pair });
log(`concurrent: ${JSON.stringify(pair)}`);
pair.results.forEach((r, i) => {
  assert.equal(r.object, 'chat.completion');
  assert.deepEqual(r.ids, expected.pair[i].token_ids, `concurrent request ${i}: token ids differ from native`);
  assert.equal(r.text, expected.pair[i].text);
  assert.equal(r.usage.completion_tokens, r.ids.length);
  // The default system prompt's full KV blocks were computed by the first chat.
  assert.ok(r.usage.prompt_tokens_details.cached_tokens >= 16, `no prefix-cache hit: ${JSON.stringify(r.usage)}`);
});
const lens = pair.results.map((r) => r.ids.length);
// The second request joins the first's steps: in the same first step, or, when the worker's
// loop took the first request alone, at step 3 (async scheduling queues step 2 behind step 1
// before the next message is read): at most two steps more than the longer one alone.
assert.ok(pair.steps <= Math.max(...lens) + 2, `two concurrent requests took ${pair.steps} steps for ${lens} tokens: not batched`);
assert.ok(pair.steps < lens[0] + lens[1], `not batched: ${pair.steps} steps`);

// 4. Reload and load again: served from Cache Storage, no new download.
const seen = modelRequests.length;
const secondFromCache = await loadModel();
assert.equal(secondFromCache, true, 'the second load must come from Cache Storage');
const network = modelRequests.slice(seen).filter((u) => u.endsWith('.gguf'));
assert.equal(network.length, 0, `the second load downloaded the model again: ${network}`);
await shot('demo-reloaded.png');

await browser.close();
log('ok: demo page e2e passed');
