// OpenAI-shaped requests and responses: request fields -> the engine's (vLLM-named)
// sampling parameters, and the engine's RequestOutput deltas -> chat.completion(.chunk) /
// text_completion objects.

/** Sampling parameters for the engine from an OpenAI request (plus vLLM extras). */
export function samplingParams(req) {
  const p = {};
  const copy = (from, to = from) => {
    if (req[from] !== undefined && req[from] !== null) p[to] = req[from];
  };
  copy('temperature');
  copy('top_p');
  copy('top_k');
  copy('min_p');
  copy('seed');
  copy('n');
  copy('presence_penalty');
  copy('frequency_penalty');
  copy('repetition_penalty');
  copy('min_tokens');
  copy('ignore_eos');
  copy('stop_token_ids');
  copy('logit_bias');
  copy('max_completion_tokens', 'max_tokens');
  copy('max_tokens');
  if (typeof req.stop === 'string') p.stop = [req.stop];
  else if (Array.isArray(req.stop)) p.stop = req.stop;
  if (p.max_tokens === undefined) p.max_tokens = null;
  return p;
}

/** Converts a `messages` array to what the chat template expects (text parts joined). */
export function templateMessages(messages) {
  if (!Array.isArray(messages) || messages.length === 0) throw new Error('messages must be a non-empty array');
  return messages.map((m) => {
    if (!m || typeof m.role !== 'string') throw new Error('every message needs a role');
    let content = m.content ?? '';
    if (Array.isArray(content)) {
      content = content.map((part) => {
        if (part.type !== 'text') throw new Error(`unsupported content part type ${part.type}`);
        return part.text;
      }).join('');
    }
    return { ...m, content };
  });
}

/** Builds chunks and the final response of one request from engine outputs. */
export class ResponseBuilder {
  constructor({ id, kind, model, req }) {
    this.id = id;
    this.kind = kind; // 'chat' | 'text'
    this.model = model;
    this.created = Math.floor(Date.now() / 1000);
    this.withIds = Boolean(req.return_token_ids);
    this.includeUsage = Boolean(req.stream_options && req.stream_options.include_usage);
    this.promptTokens = 0;
    this.promptTokenIds = null;
    this.cachedTokens = 0;
    this.choices = new Map(); // index -> { text, ids, finish, roleSent }
  }

  choice(index) {
    if (!this.choices.has(index)) this.choices.set(index, { text: '', ids: [], finish: null, roleSent: false });
    return this.choices.get(index);
  }

  /** Folds one RequestOutput (delta) in; returns the chunk to stream. */
  push(out) {
    if (out.prompt_token_ids && out.prompt_token_ids.length) {
      this.promptTokens = out.prompt_token_ids.length;
      this.promptTokenIds = out.prompt_token_ids;
    }
    if (out.num_cached_tokens) this.cachedTokens = out.num_cached_tokens;
    const choices = out.outputs.map((o) => {
      const c = this.choice(o.index);
      c.text += o.text;
      c.ids.push(...o.token_ids);
      if (o.finish_reason) c.finish = o.finish_reason;
      const finish = o.finish_reason || null;
      let ch;
      if (this.kind === 'chat') {
        const delta = { content: o.text };
        if (!c.roleSent) {
          delta.role = 'assistant';
          c.roleSent = true;
        }
        ch = { index: o.index, delta, logprobs: null, finish_reason: finish };
      } else {
        ch = { index: o.index, text: o.text, logprobs: null, finish_reason: finish };
      }
      if (this.withIds) ch.token_ids = o.token_ids;
      return ch;
    });
    return this.chunk(choices);
  }

  chunk(choices) {
    const object = this.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    return { id: this.id, object, created: this.created, model: this.model, choices };
  }

  usage() {
    let completion = 0;
    for (const c of this.choices.values()) completion += c.ids.length;
    return {
      prompt_tokens: this.promptTokens,
      completion_tokens: completion,
      total_tokens: this.promptTokens + completion,
      prompt_tokens_details: { cached_tokens: this.cachedTokens },
    };
  }

  /** The final chunk carrying only usage (OpenAI's `stream_options.include_usage`). */
  usageChunk() {
    return { ...this.chunk([]), usage: this.usage() };
  }

  /** Marks unfinished choices as aborted (interrupt / unload). */
  abort() {
    const choices = [];
    for (const [index, c] of this.choices) {
      if (!c.finish) {
        c.finish = 'abort';
        choices.push(this.kind === 'chat'
          ? { index, delta: {}, logprobs: null, finish_reason: 'abort' }
          : { index, text: '', logprobs: null, finish_reason: 'abort' });
      }
    }
    if (this.choices.size === 0) {
      this.choice(0).finish = 'abort';
      choices.push(this.kind === 'chat'
        ? { index: 0, delta: {}, logprobs: null, finish_reason: 'abort' }
        : { index: 0, text: '', logprobs: null, finish_reason: 'abort' });
    }
    return this.chunk(choices);
  }

  /** The whole (non-streaming) response. */
  response() {
    const indices = [...this.choices.keys()].sort((a, b) => a - b);
    const choices = indices.map((index) => {
      const c = this.choices.get(index);
      const ch = this.kind === 'chat'
        ? { index, message: { role: 'assistant', content: c.text }, logprobs: null, finish_reason: c.finish }
        : { index, text: c.text, logprobs: null, finish_reason: c.finish };
      if (this.withIds) ch.token_ids = c.ids;
      return ch;
    });
    const object = this.kind === 'chat' ? 'chat.completion' : 'text_completion';
    const r = { id: this.id, object, created: this.created, model: this.model, choices, usage: this.usage() };
    if (this.withIds) r.prompt_token_ids = this.promptTokenIds;
    return r;
  }
}
