// A hostile-input corpus through the npm API in Node: corrupt, truncated and forged files of
// every kind the loader reads, absurd configs, wrong option types, odd and huge texts, calls
// after dispose(), concurrent calls, forged saved indexes, and a hub that fails, lies, stalls
// or never answers. Every case must settle within its own timeout with a WembedError of the
// expected code or a defined result; afterwards a valid load must still give the reference
// vectors. The tiny models make most cases milliseconds; MiniLM is loaded once, at the end.
// HOSTILE_ONLY=<regex> runs the cases whose names match.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, mkdtemp, cp, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Embedder, SemanticIndex, WembedError } from '../src/index.js';
import { cosine } from './util.mjs';
import { hostileHub } from './hostile-server.mjs';

const root = fileURLToPath(new URL('../../', import.meta.url));
const minilm = join(root, 'assets/models/all-MiniLM-L6-v2');
const tiny = join(root, 'tests/fixtures/tiny/mean-erf-norm');
const reference = JSON.parse(await readFile(join(root, 'tests/fixtures/minilm.json'), 'utf8'));
const FILES = ['config.json', 'tokenizer.json', 'model.safetensors', 'modules.json', '1_Pooling/config.json', 'sentence_bert_config.json', 'config_sentence_transformers.json'];
const JSON_FILES = FILES.filter((f) => f.endsWith('.json'));
const ONLY = process.env.HOSTILE_ONLY ? new RegExp(process.env.HOSTILE_ONLY) : null;

const base = {};
for (const f of FILES) base[f] = new Uint8Array(await readFile(join(tiny, f)));
const config = JSON.parse(new TextDecoder().decode(base['config.json']));
const gguf = new Uint8Array(await readFile(join(root, 'tests/fixtures/gguf/tiny-bert-q8_0.gguf')));
const enc = (x) => new TextEncoder().encode(typeof x === 'string' ? x : JSON.stringify(x));
const HTML = enc('<!doctype html><html><body>Please sign in</body></html>');

// ---- the runner --------------------------------------------------------------------------

const cases = [];
/** A case: `run` must reject with a WembedError whose code is in `codes`, or (when `ok` is
 * given) resolve with a value `ok` accepts. */
function add(name, run, { codes = [], ok = null, timeout = 10_000 } = {}) {
  cases.push({ name, run, codes: [].concat(codes), ok, timeout });
}
const fails = (name, code, run, timeout) => add(name, run, { codes: code, timeout });
const defined = (name, run, ok, codes = [], timeout) => add(name, run, { ok, codes, timeout });

async function runCase(c) {
  let timer;
  const hang = new Promise((resolve) => {
    timer = setTimeout(() => resolve({ hung: true }), c.timeout);
  });
  const t0 = performance.now();
  const outcome = await Promise.race([
    Promise.resolve()
      .then(c.run)
      .then((value) => ({ value }), (error) => ({ error })),
    hang,
  ]);
  clearTimeout(timer);
  const ms = performance.now() - t0;
  if (outcome.hung) return `did not settle within ${c.timeout} ms`;
  if ('error' in outcome) {
    const e = outcome.error;
    if (!(e instanceof WembedError)) return `threw a raw ${e?.name ?? typeof e}: ${e?.message ?? e}`;
    if (!c.codes.includes(e.code)) return `${e.code} (${e.message}), expected ${c.codes.join(' or ') || 'a result'}`;
    return null;
  }
  if (!c.ok) return `resolved (${describe(outcome.value)}), expected ${c.codes.join(' or ')}`;
  try {
    const verdict = c.ok(outcome.value);
    if (verdict === false) return `resolved with a wrong result: ${describe(outcome.value)}`;
  } catch (e) {
    return `resolved with a wrong result: ${e.message}`;
  }
  void ms;
  return null;
}

function describe(v) {
  try {
    const s = JSON.stringify(v, (_, x) => (ArrayBuffer.isView(x) ? `${x.constructor.name}(${x.length})` : x));
    return s === undefined ? String(v) : s.slice(0, 120);
  } catch {
    return String(v);
  }
}

// ---- what the cases check ----------------------------------------------------------------

const finite = (v) => v instanceof Float32Array && v.length > 0 && v.every(Number.isFinite);
/** n finite vectors of one width. */
const vectors = (n) => (vs) => {
  assert.ok(Array.isArray(vs), 'an array of vectors');
  assert.equal(vs.length, n);
  for (const v of vs) assert.ok(finite(v) && v.length === vs[0].length, 'finite vectors of one width');
  return true;
};

/** Loads `source`, embeds one text, disposes; resolves with the vector. */
async function loadAndEmbed(source, options = { device: 'cpu' }, text = 'the quick brown fox jumps') {
  const e = await Embedder.load(source, options);
  try {
    const [v] = await e.embed([text]);
    return v;
  } finally {
    e.dispose();
  }
}
const withFile = (name, bytes) => {
  const files = { ...base };
  if (bytes === null) delete files[name];
  else files[name] = bytes;
  return { files };
};
const withConfig = (change) => {
  const c = structuredClone(config);
  change(c);
  return withFile('config.json', enc(c));
};

function xorshift(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) & 0xff;
  };
}
const randomBytes = (n, seed) => {
  const r = xorshift(seed);
  return Uint8Array.from({ length: n }, r);
};

// ---- 1. every file, corrupt or truncated -------------------------------------------------

for (const f of FILES) {
  const bytes = base[f];
  const optional = !['config.json', 'tokenizer.json', 'model.safetensors'].includes(f);
  // A broken optional file is still a broken file; a valid-but-empty one may be accepted.
  const codes = f === 'tokenizer.json' ? ['BAD_FILE', 'TOKENIZER'] : ['BAD_FILE'];
  // The last cut drops the closing brace (a file may end in a newline that is safe to lose).
  let end = bytes.length;
  while (end > 0 && [0x0a, 0x0d, 0x20].includes(bytes[end - 1])) end--;
  const cuts = [0, 1, 7, bytes.length >> 1, end - 1];
  for (const n of cuts) fails(`${f} cut to ${n} bytes`, codes, () => loadAndEmbed(withFile(f, bytes.slice(0, n))));
  fails(`${f} as random bytes`, codes, () => loadAndEmbed(withFile(f, randomBytes(bytes.length, 7 + f.length))));
  fails(`${f} as 0xff bytes (not UTF-8)`, codes, () => loadAndEmbed(withFile(f, new Uint8Array(64).fill(0xff))));
  fails(`${f} as an HTML page`, codes, () => loadAndEmbed(withFile(f, HTML)));
  if (f.endsWith('.json')) {
    for (const doc of ['null', '"a string"', '12', 'true', '[[[[[[[[[[', '{"a":', `${'['.repeat(100_000)}`]) {
      fails(`${f} holding ${doc.slice(0, 12)}`, codes, () => loadAndEmbed(withFile(f, enc(doc))));
    }
    // JSON of the wrong shape: an error, or (where every field is optional) a working model.
    for (const doc of ['{}', '[]']) {
      if (optional) defined(`${f} holding ${doc}`, () => loadAndEmbed(withFile(f, enc(doc))), finite, codes);
      else fails(`${f} holding ${doc}`, codes, () => loadAndEmbed(withFile(f, enc(doc))));
    }
  }
  // 1_Pooling/config.json is named by modules.json: without it the model is incomplete.
  if (optional) defined(`${f} absent`, () => loadAndEmbed(withFile(f, null)), finite, f.includes('/') ? ['IO', 'BAD_FILE'] : []);
  else fails(`${f} absent`, ['BAD_FILE', 'IO', 'INPUT'], () => loadAndEmbed(withFile(f, null)));
}
for (const name of ['model.safetensors', 'tokenizer.json', 'config.json']) {
  fails(`${name} as a string, not bytes`, 'INPUT', () => loadAndEmbed({ files: { ...base, [name]: 'not bytes' } }));
  fails(`${name} as an ArrayBuffer, not a Uint8Array`, 'INPUT', () => loadAndEmbed({ files: { ...base, [name]: base[name].buffer } }));
}

// ---- 2. absurd configs -------------------------------------------------------------------

const CONFIGS = [
  ['hidden_size 0', (c) => (c.hidden_size = 0)],
  ['hidden_size -36', (c) => (c.hidden_size = -36)],
  ['hidden_size 36.5', (c) => (c.hidden_size = 36.5)],
  ['hidden_size "36"', (c) => (c.hidden_size = '36')],
  ['hidden_size null', (c) => (c.hidden_size = null)],
  ['hidden_size 2^31', (c) => (c.hidden_size = 2 ** 31)],
  ['hidden_size 2^53', (c) => (c.hidden_size = 2 ** 53)],
  ['hidden_size 1e300', (c) => (c.hidden_size = 1e300)],
  ['num_attention_heads 0', (c) => (c.num_attention_heads = 0)],
  ['num_attention_heads 5 (does not divide 36)', (c) => (c.num_attention_heads = 5)],
  ['num_attention_heads 72', (c) => (c.num_attention_heads = 72)],
  ['num_attention_heads -3', (c) => (c.num_attention_heads = -3)],
  ['num_hidden_layers 10,000', (c) => (c.num_hidden_layers = 10_000)],
  ['num_hidden_layers 2^31', (c) => (c.num_hidden_layers = 2 ** 31)],
  ['num_hidden_layers 2^32', (c) => (c.num_hidden_layers = 2 ** 32)],
  ['num_hidden_layers -1', (c) => (c.num_hidden_layers = -1)],
  ['num_hidden_layers 3 (weights for 2)', (c) => (c.num_hidden_layers = 3)],
  ['vocab_size 1', (c) => (c.vocab_size = 1)],
  ['vocab_size 0', (c) => (c.vocab_size = 0)],
  ['vocab_size 2^40', (c) => (c.vocab_size = 2 ** 40)],
  ['intermediate_size 0', (c) => (c.intermediate_size = 0)],
  ['intermediate_size 2^31', (c) => (c.intermediate_size = 2 ** 31)],
  ['max_position_embeddings 0', (c) => (c.max_position_embeddings = 0)],
  ['max_position_embeddings 1', (c) => (c.max_position_embeddings = 1)],
  ['max_position_embeddings 2^31', (c) => (c.max_position_embeddings = 2 ** 31)],
  ['max_position_embeddings 1e15', (c) => (c.max_position_embeddings = 1e15)],
  ['type_vocab_size 2^31', (c) => (c.type_vocab_size = 2 ** 31)],
  ['hidden_act "swishy"', (c) => (c.hidden_act = 'swishy')],
  ['hidden_act 5', (c) => (c.hidden_act = 5)],
  ['model_type "no-such-model"', (c) => (c.model_type = 'no-such-model')],
  ['model_type missing, architectures unknown', (c) => {
    delete c.model_type;
    c.architectures = ['NoSuchModel'];
  }],
  ['layer_norm_eps "small"', (c) => (c.layer_norm_eps = 'small')],
];
// A config the weights do not match is BAD_WEIGHTS (a weight missing or of the wrong shape).
for (const [name, change] of CONFIGS) fails(`config ${name}`, ['BAD_FILE', 'UNSUPPORTED', 'BAD_WEIGHTS'], () => loadAndEmbed(withConfig(change)));
// A negative epsilon makes the variance negative: refused as a config, or as a non-finite output.
defined('config pad_token_id 2^40 (unused by BERT)', () => loadAndEmbed(withConfig((c) => (c.pad_token_id = 2 ** 40))), finite, ['BAD_FILE']);
for (const eps of [-1, -1e-12, -1e30]) {
  fails(`config layer_norm_eps ${eps}`, ['BAD_FILE', 'BAD_WEIGHTS'], () => loadAndEmbed(withConfig((c) => (c.layer_norm_eps = eps))));
}
// Pooling takes the transformer's width; a wrong stated width may be refused or ignored.
defined('1_Pooling word_embedding_dimension 2^31', () =>
  loadAndEmbed(withFile('1_Pooling/config.json', enc({ ...JSON.parse(new TextDecoder().decode(base['1_Pooling/config.json'])), word_embedding_dimension: 2 ** 31 }))), (v) => finite(v) && v.length === 36, ['BAD_FILE']);
fails('1_Pooling with no pooling mode', ['BAD_FILE', 'UNSUPPORTED'], () =>
  loadAndEmbed(withFile('1_Pooling/config.json', enc({ word_embedding_dimension: 36, pooling_mode_mean_tokens: false }))));
defined('sentence_bert_config max_seq_length 2^31 (capped by the model)', () => loadAndEmbed(withFile('sentence_bert_config.json', enc({ max_seq_length: 2 ** 31 }))), finite, ['BAD_FILE']);
fails('sentence_bert_config max_seq_length -5', 'BAD_FILE', () => loadAndEmbed(withFile('sentence_bert_config.json', enc({ max_seq_length: -5 }))));
fails('config_sentence_transformers default_prompt_name naming no prompt', ['BAD_FILE', 'INPUT'], () =>
  loadAndEmbed(withFile('config_sentence_transformers.json', enc({ prompts: {}, default_prompt_name: 'query' }))));
fails('config_sentence_transformers prompts as a list', 'BAD_FILE', () => loadAndEmbed(withFile('config_sentence_transformers.json', enc({ prompts: ['a'] }))));

// ---- 3. weights: forged safetensors and values that overflow -----------------------------

const weights = base['model.safetensors'];
const stHeaderLen = Number(new DataView(weights.buffer, weights.byteOffset).getBigUint64(0, true));
const stHeader = JSON.parse(new TextDecoder().decode(weights.subarray(8, 8 + stHeaderLen)));
const stData = weights.subarray(8 + stHeaderLen);
/** model.safetensors with its header changed by `change` (data as it was). */
function forgedSafetensors(change, data = stData) {
  const h = structuredClone(stHeader);
  change(h);
  const hb = enc(h);
  const out = new Uint8Array(8 + hb.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  out.set(data, 8 + hb.length);
  return out;
}
const tensors = Object.keys(stHeader).filter((k) => k !== '__metadata__');
const first = tensors[0];
const embeddingName = tensors.find((t) => /word_embeddings/.test(t)) ?? first;
const SAFETENSORS = [
  ['header length 2^64-1', () => { const w = weights.slice(); new DataView(w.buffer).setBigUint64(0, 2n ** 64n - 1n, true); return w; }],
  ['header length past the end', () => { const w = weights.slice(); new DataView(w.buffer).setBigUint64(0, BigInt(w.length), true); return w; }],
  ['header length 2^32+8', () => { const w = weights.slice(); new DataView(w.buffer).setBigUint64(0, 2n ** 32n + 8n, true); return w; }],
  ['a dtype "F99"', () => forgedSafetensors((h) => (h[first].dtype = 'F99'))],
  ['a shape that does not match its bytes', () => forgedSafetensors((h) => (h[first].shape = [h[first].shape[0] + 1, ...h[first].shape.slice(1)]))],
  ['a shape of [2^32, 2^32]', () => forgedSafetensors((h) => (h[first].shape = [2 ** 32, 2 ** 32]))],
  ['a shape with -1', () => forgedSafetensors((h) => (h[first].shape = [-1]))],
  ['offsets past the data', () => forgedSafetensors((h) => (h[first].data_offsets = [0, stData.length + 4096]))],
  ['offsets reversed', () => forgedSafetensors((h) => (h[first].data_offsets = [h[first].data_offsets[1], h[first].data_offsets[0]]))],
  ['offsets of 2^60', () => forgedSafetensors((h) => (h[first].data_offsets = [2 ** 60, 2 ** 60 + 4]))],
  ['two tensors over the same bytes', () => forgedSafetensors((h) => (h[tensors[1]].data_offsets = h[first].data_offsets))],
  ['the word embeddings missing', () => forgedSafetensors((h) => delete h[embeddingName])],
  ['the word embeddings renamed', () => forgedSafetensors((h) => { h['nonsense.weight'] = h[embeddingName]; delete h[embeddingName]; })],
  ['a header that is a list', () => { const hb = enc([1, 2]); const out = new Uint8Array(8 + hb.length); new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true); out.set(hb, 8); return out; }],
];
// A broken container is BAD_FILE; a tensor of the wrong dtype, shape or name may be BAD_WEIGHTS.
const SEMANTIC = /dtype|shape|embeddings/;
for (const [name, make] of SAFETENSORS) {
  fails(`model.safetensors: ${name}`, SEMANTIC.test(name) ? ['BAD_FILE', 'BAD_WEIGHTS'] : 'BAD_FILE', () => loadAndEmbed(withFile('model.safetensors', make())));
}
/** model.safetensors with every float of the word embeddings set to `value`. */
function weightsOf(value) {
  const w = weights.slice();
  const t = stHeader[embeddingName];
  const dv = new DataView(w.buffer);
  const start = 8 + stHeaderLen + t.data_offsets[0];
  if (t.dtype !== 'F32') throw new Error(`the tiny model's ${embeddingName} is ${t.dtype}`);
  for (let at = start; at < 8 + stHeaderLen + t.data_offsets[1]; at += 4) dv.setFloat32(at, value, true);
  return w;
}
// The output must be finite or an error: never NaN vectors handed back.
for (const [name, value] of [['NaN', NaN], ['Infinity', Infinity], ['-Infinity', -Infinity], ['1e38', 1e38], ['3e38', 3e38]]) {
  fails(`word embeddings all ${name}`, ['BAD_WEIGHTS', 'BAD_FILE'], () => loadAndEmbed(withFile('model.safetensors', weightsOf(value))));
}
defined('word embeddings all 0', () => loadAndEmbed(withFile('model.safetensors', weightsOf(0))), finite, ['BAD_WEIGHTS']);

// ---- 4. GGUF files -----------------------------------------------------------------------

/** Byte offsets of a GGUF file's fields: each tensor info's dims, type and offset. */
function ggufLayout(b) {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let at = 8;
  const u64 = () => { const v = Number(dv.getBigUint64(at, true)); at += 8; return v; };
  const u32 = () => { const v = dv.getUint32(at, true); at += 4; return v; };
  const str = () => { const n = u64(); at += n; };
  const SIZES = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const value = (type) => {
    if (type === 8) return str();
    if (type === 9) {
      const t = u32();
      const n = u64();
      for (let i = 0; i < n; i++) value(t);
      return;
    }
    at += SIZES[type];
  };
  const nTensors = u64();
  const nKv = u64();
  const kvStart = at;
  for (let i = 0; i < nKv; i++) {
    str();
    value(u32());
  }
  const infos = [];
  for (let i = 0; i < nTensors; i++) {
    str();
    const ndimAt = at;
    const nd = u32();
    const dimsAt = at;
    at += 8 * nd;
    const typeAt = at;
    u32();
    const offsetAt = at;
    u64();
    infos.push({ ndimAt, dimsAt, typeAt, offsetAt });
  }
  return { kvStart, infos };
}
const layout = ggufLayout(gguf);
const ggufWith = (change) => {
  const b = gguf.slice();
  change(new DataView(b.buffer), b);
  return b;
};
const GGUF = [
  ['cut to 0 bytes', () => gguf.slice(0, 0)],
  ['cut to 4 bytes', () => gguf.slice(0, 4)],
  ['cut to 23 bytes', () => gguf.slice(0, 23)],
  ['cut in its metadata', () => gguf.slice(0, layout.kvStart + 40)],
  ['cut in half', () => gguf.slice(0, gguf.length >> 1)],
  ['cut by one byte', () => gguf.slice(0, gguf.length - 1)],
  ['a wrong magic', () => ggufWith((dv) => dv.setUint32(0, 0x46554747 ^ 0xff, true))],
  ['version 99', () => ggufWith((dv) => dv.setUint32(4, 99, true))],
  ['a tensor count of 2^32-1', () => ggufWith((dv) => dv.setBigUint64(8, 2n ** 32n - 1n, true))],
  ['a tensor count of 2^63', () => ggufWith((dv) => dv.setBigUint64(8, 2n ** 63n, true))],
  ['a metadata count of 2^32-1', () => ggufWith((dv) => dv.setBigUint64(16, 2n ** 32n - 1n, true))],
  ['a metadata count of 2^64-1', () => ggufWith((dv) => dv.setBigUint64(16, 2n ** 64n - 1n, true))],
  ['a key length of 2^63', () => ggufWith((dv) => dv.setBigUint64(layout.kvStart, 2n ** 63n, true))],
  ['a key length of 2^32', () => ggufWith((dv) => dv.setBigUint64(layout.kvStart, 2n ** 32n, true))],
  ['an unaligned tensor offset', () => ggufWith((dv) => dv.setBigUint64(layout.infos[1].offsetAt, dv.getBigUint64(layout.infos[1].offsetAt, true) + 1n, true))],
  ['two tensors at one offset', () => ggufWith((dv) => dv.setBigUint64(layout.infos[1].offsetAt, dv.getBigUint64(layout.infos[0].offsetAt, true), true))],
  ['a tensor offset past the end', () => ggufWith((dv) => dv.setBigUint64(layout.infos[0].offsetAt, 2n ** 40n, true))],
  ['a tensor of 100 dimensions', () => ggufWith((dv) => dv.setUint32(layout.infos[0].ndimAt, 100, true))],
  ['a dimension of 2^40', () => ggufWith((dv) => dv.setBigUint64(layout.infos[0].dimsAt, 2n ** 40n, true))],
  ['a dimension of 0', () => ggufWith((dv) => dv.setBigUint64(layout.infos[0].dimsAt, 0n, true))],
  ['a tensor type 999', () => ggufWith((dv) => dv.setUint32(layout.infos[0].typeAt, 999, true))],
  ['random bytes after the header', () => ggufWith((_, b) => b.set(randomBytes(b.length - 24, 99), 24))],
  ['random bytes', () => randomBytes(gguf.length, 5)],
];
for (const [name, make] of GGUF) {
  const codes = /dimension|tensor type/.test(name) ? ['BAD_FILE', 'UNSUPPORTED', 'BAD_WEIGHTS'] : ['BAD_FILE', 'UNSUPPORTED'];
  fails(`GGUF: ${name}`, codes, () => loadAndEmbed({ files: { 'model.gguf': make() } }));
}
defined('GGUF: the real file', () => loadAndEmbed({ files: { 'model.gguf': gguf } }), finite);

// ---- 5. wrong option and argument types --------------------------------------------------

const SOURCES = [
  ['42', 42, 'INPUT'],
  ['null', null, 'INPUT'],
  ['undefined', undefined, 'INPUT'],
  ['an empty string', '', 'INPUT'],
  ['a string with spaces', 'a b c', 'INPUT'],
  ['a Symbol', Symbol('model'), 'INPUT'],
  ['a missing folder', join(root, 'no/such/folder'), 'IO'],
  ['a missing file:// folder', 'file:///no/such/folder', 'IO'],
  ['{}', {}, ['BAD_FILE', 'INPUT', 'IO']],
  ['{ files: {} }', { files: {} }, ['BAD_FILE', 'INPUT', 'IO']],
  ['{ files: 5 }', { files: 5 }, ['INPUT', 'BAD_FILE']],
  ['a Map of strings', new Map([['config.json', '{}']]), 'INPUT'],
  ['an ftp URL', new URL('ftp://example.invalid/model'), ['INPUT', 'FETCH']],
];
for (const [name, source, codes] of SOURCES) fails(`source ${name}`, codes, () => loadAndEmbed(source));
const LOAD_OPTIONS = [
  ['device 5', { device: 5 }],
  ['device "tpu"', { device: 'tpu' }],
  ['device {}', { device: {} }],
  ['dtype "x"', { dtype: 'x' }],
  ['dtype 5', { dtype: 5 }],
  ['onProgress 5', { onProgress: 5 }],
  ['timeout "soon"', { timeout: 'soon' }],
  ['timeout -1', { timeout: -1 }],
  ['stallTimeout 0', { stallTimeout: 0 }],
  ['maxFileBytes "big"', { maxFileBytes: 'big' }],
  ['signal "stop"', { signal: 'stop' }],
  ['queryDevice "cpu"', { queryDevice: 'cpu' }],
  ['queryDevice true', { queryDevice: true }],
];
for (const [name, opts] of LOAD_OPTIONS) fails(`load option ${name}`, 'INPUT', () => loadAndEmbed(tiny, { device: 'cpu', ...opts }));
defined('load options null', () => loadAndEmbed(tiny, null), finite);
defined('load option device null', () => loadAndEmbed(tiny, { device: null }), finite);
defined('load option dtype null', () => loadAndEmbed(tiny, { device: 'cpu', dtype: null }), finite);
fails('load with an aborted signal', 'ABORTED', () => loadAndEmbed(tiny, { device: 'cpu', signal: AbortSignal.abort() }));

// One embedder for the call-level cases (loaded lazily, by the first of them).
let shared = null;
const embedder = async () => (shared ??= await Embedder.load(tiny, { device: 'cpu' }));
const embedWith = (texts, opts) => async () => (await embedder()).embed(texts, opts);
const EMBED_OPTIONS = [
  ['batchSize -1', { batchSize: -1 }],
  ['batchSize 0', { batchSize: 0 }],
  ['batchSize NaN', { batchSize: NaN }],
  ['batchSize 1.5', { batchSize: 1.5 }],
  ['batchSize "3"', { batchSize: '3' }],
  ['batchSize Infinity', { batchSize: Infinity }],
  ['batchTokens 0', { batchTokens: 0 }],
  ['truncateDim 0', { truncateDim: 0 }],
  ['truncateDim 1.5', { truncateDim: 1.5 }],
  ['truncateDim past dim', { truncateDim: 100000 }],
  ['batchTokens 2.5', { batchTokens: 2.5 }],
  ['batchTokens "64"', { batchTokens: '64' }],
  ['normalize "yes"', { normalize: 'yes' }],
  ['normalize 1', { normalize: 1 }],
  ['truncate "no"', { truncate: 'no' }],
  ['prompt 5', { prompt: 5 }],
  ['promptName 5', { promptName: 5 }],
  ['promptName "nope"', { promptName: 'nope' }],
  ['onProgress 5', { onProgress: 5 }],
];
for (const [name, opts] of EMBED_OPTIONS) fails(`embed option ${name}`, 'INPUT', embedWith(['hello'], opts));
defined('embed options null', embedWith(['hello'], null), vectors(1));
defined('embed option batchSize null', embedWith(['hello'], { batchSize: null }), vectors(1));
defined('embed option batchSize 2^53', embedWith(['hello', 'world'], { batchSize: 2 ** 53 }), vectors(2), ['INPUT']);
defined('embed option truncateDim 8', embedWith(['hello', 'world'], { truncateDim: 8 }), (vs) => vectors(2)(vs) && vs[0].length === 8);
defined('embed option batchTokens 1 (every text alone)', embedWith(['hello', 'world'], { batchTokens: 1 }), vectors(2));
defined('embed option normalize false', embedWith(['hello'], { normalize: false }), vectors(1));
defined('embed with a throwing onProgress', embedWith(['hello', 'world'], { onProgress: () => { throw new Error('callback'); } }), vectors(2), ['INPUT']);

// ---- 6. texts: odd, huge, and not texts --------------------------------------------------

const TEXTS = [
  ['a 1,000,000-character text', ['word '.repeat(200_000)]],
  ['a 1,000,000-character text without spaces', ['x'.repeat(1_000_000)]],
  ['a lone high surrogate', ['\uD800']],
  ['a lone low surrogate in a word', ['ab\uDC00cd']],
  ['surrogates reversed', ['\uDC00\uD800']],
  ['NUL characters', ['\0\0\0']],
  ['a text of only control characters', ['\x01\x02\x03\x1b\x7f']],
  ['an empty text', ['']],
  ['only whitespace', [' \t\n\r\u00a0\u2028']],
  ['10,000 combining marks', [`a${'\u0301'.repeat(10_000)}`]],
  ['emoji and zero-width joiners', ['👩‍👩‍👧‍👦🏳️‍🌈'.repeat(50)]],
  ['right-to-left and bidi controls', ['\u202Eolleh\u202C שלום مرحبا']],
  ['a BOM and a replacement character', ['\uFEFF\uFFFDhello']],
  ['10,000 texts', Array.from({ length: 10_000 }, (_, i) => `text number ${i}`)],
  ['1,000 empty texts', Array.from({ length: 1000 }, () => '')],
  ['an empty list', []],
];
for (const [name, texts] of TEXTS) defined(`embed ${name}`, embedWith(texts), vectors(texts.length), [], 30_000);
defined('a single string', embedWith('hello'), vectors(1));
const sparse = ['a', 'b', 'c'];
delete sparse[1];
const throwing = ['a', 'b'];
Object.defineProperty(throwing, 1, { get() { throw new Error('getter'); } });
const revoked = Proxy.revocable(['a'], {});
revoked.revoke();
const NOT_TEXTS = [
  ['texts 5', 5],
  ['texts null', null],
  ['texts undefined', undefined],
  ['texts {}', {}],
  ['texts a Set', new Set(['a'])],
  ['texts an array-like', { length: 1, 0: 'a' }],
  ['texts with a number', ['a', 5]],
  ['texts with null', ['a', null]],
  ['texts with undefined', ['a', undefined]],
  ['texts with an object', ['a', { toString: () => 'b' }]],
  ['texts with a String object', [new String('a')]],
  ['a sparse array', sparse],
  ['an array with a throwing getter', throwing],
  ['a revoked Proxy', revoked.proxy],
  ['a Proxy that throws on length', new Proxy(['a'], { get: (t, k) => { if (k === 'length') throw new Error('length'); return t[k]; } })],
];
for (const [name, texts] of NOT_TEXTS) fails(`embed ${name}`, 'INPUT', embedWith(texts));
defined('embed a Proxy over an array', embedWith(new Proxy(['a', 'b'], {})), vectors(2), ['INPUT']);
defined('the embedder still works after bad texts', embedWith(['still here']), vectors(1));

const CHUNKS = [
  ['chunks of 5', [5], 'INPUT'],
  ['chunks of null', [null], 'INPUT'],
  ['chunks overlap equal to size', ['some text here', 8, 8], 'INPUT'],
  ['chunks of size 0', ['some text here', 0, 0], 'INPUT'],
  ['chunks of size -1', ['some text here', -1, 0], 'INPUT'],
  ['chunks of size NaN', ['some text here', NaN, 0], 'INPUT'],
  ['chunks of size 1.5', ['some text here', 1.5, 0], 'INPUT'],
  ['chunks of size "8"', ['some text here', '8', 0], 'INPUT'],
];
for (const [name, args, code] of CHUNKS) fails(name, code, async () => (await embedder()).chunks(...args));
// A size beyond the model's is the model's: the same chunks as a size of a million.
const LONG_TEXT = 'some text here and there '.repeat(40);
for (const size of [1e300, 2 ** 32 + 8, 2 ** 53, Infinity]) {
  defined(`chunks of size ${size} (capped by the model)`, async () => {
    const e = await embedder();
    return [e.chunks(LONG_TEXT, size, 4), e.chunks(LONG_TEXT, 1_000_000, 4)];
  }, ([a, b]) => (assert.deepEqual(a, b), true), ['INPUT']);
}

// ---- 7. after dispose() ------------------------------------------------------------------

async function disposed() {
  const e = await Embedder.load(tiny, { device: 'cpu' });
  e.dispose();
  return e;
}
fails('embed after dispose', 'DISPOSED', async () => (await disposed()).embed(['x']));
fails('chunks after dispose', 'DISPOSED', async () => (await disposed()).chunks('x'));
defined('dispose twice', async () => { const e = await disposed(); e.dispose(); return e.info; }, (i) => i.dim === 36);
defined('an embed called before dispose() in the same tick still runs', async () => {
  const e = await Embedder.load(tiny, { device: 'cpu' });
  const first = e.embed(['called first']);
  e.dispose();
  return first;
}, vectors(1));
fails('index add on a disposed embedder', 'DISPOSED', async () => {
  const e = await Embedder.load(tiny, { device: 'cpu' });
  const index = SemanticIndex.create(e, { chunkTokens: 16, chunkOverlap: 4 });
  e.dispose();
  return index.add('hello there');
});
for (const [name, call] of [
  ['add', (i) => i.add('x')],
  ['search', (i) => i.search('x')],
  ['remove', async (i) => i.remove('x')],
  ['serialize', async (i) => i.serialize()],
  ['save', (i) => i.save(join(tmpdir(), 'wembed-never.bin'))],
]) {
  fails(`index ${name} after dispose`, 'DISPOSED', async () => {
    const index = SemanticIndex.create(await embedder(), { chunkTokens: 16, chunkOverlap: 4 });
    index.dispose();
    return call(index);
  });
}

// ---- 8. 50 concurrent calls, each equal to its sequential result -------------------------

const CONCURRENT = Array.from({ length: 50 }, (_, i) => (i % 7 === 0 ? ['a', 'b c', `text ${i}`] : `sentence number ${i} ${'x '.repeat(i % 13)}`));
let sequential = null;
let concurrent = null;
async function concurrentRuns() {
  if (!concurrent) {
    concurrent = (async () => {
      const e = await Embedder.load(tiny, { device: 'cpu' });
      sequential = [];
      for (const t of CONCURRENT) sequential.push(await e.embed(t));
      const all = await Promise.all(CONCURRENT.map((t, i) => e.embed(t, i % 5 === 0 ? { batchSize: 1 } : {})));
      e.dispose();
      return all;
    })();
  }
  return concurrent;
}
CONCURRENT.forEach((_, i) =>
  defined(`concurrent call ${i} equals its sequential result`, async () => (await concurrentRuns())[i], (vs) => {
    assert.equal(vs.length, sequential[i].length);
    vs.forEach((v, j) => assert.deepEqual(Array.from(v), Array.from(sequential[i][j])));
    return true;
  }),
);

// ---- 9. saved indexes, forged ------------------------------------------------------------

let savedIndex = null;
async function goodIndex() {
  if (!savedIndex) {
    const index = SemanticIndex.create(await embedder(), { storage: 'int8', chunkTokens: 16, chunkOverlap: 4 });
    await index.add([{ id: 'a', text: 'the quick brown fox jumps over the lazy dog again and again', metadata: { n: 1 } }, 'a man plays a guitar', 'bread and butter']);
    savedIndex = index.serialize();
    index.dispose();
  }
  return savedIndex;
}
/** The saved index with its JSON header or its vector index's header changed. */
async function forgedIndex(changeHeader, changeInner) {
  const bytes = await goodIndex();
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = dv.getUint32(8, true);
  let header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + len)));
  let vec = bytes.slice(12 + len);
  // A change function edits in place, or returns a replacement (null included).
  if (changeHeader) {
    const r = changeHeader(header);
    if (r !== undefined) header = r;
  }
  if (changeInner) {
    const vlen = new DataView(vec.buffer).getUint32(8, true);
    let inner = JSON.parse(new TextDecoder().decode(vec.subarray(12, 12 + vlen)));
    const r = changeInner(inner);
    if (r !== undefined) inner = r;
    const ib = enc(inner);
    const body = vec.subarray(12 + vlen);
    const v2 = new Uint8Array(12 + ib.length + body.length);
    v2.set(vec.subarray(0, 8));
    new DataView(v2.buffer).setUint32(8, ib.length, true);
    v2.set(ib, 12);
    v2.set(body, 12 + ib.length);
    vec = v2;
  }
  const hb = enc(header);
  const out = new Uint8Array(12 + hb.length + vec.length);
  out.set(bytes.subarray(0, 8));
  new DataView(out.buffer).setUint32(8, hb.length, true);
  out.set(hb, 12);
  out.set(vec, 12 + hb.length);
  return out;
}
const deserialize = (make) => async () => {
  const index = SemanticIndex.deserialize(await make(), await embedder());
  try {
    return await index.search('fox', { k: 5 });
  } finally {
    index.dispose();
  }
};
const INDEXES = [
  ['cut to 0 bytes', async () => (await goodIndex()).slice(0, 0)],
  ['cut to 11 bytes', async () => (await goodIndex()).slice(0, 11)],
  ['cut in its header', async () => (await goodIndex()).slice(0, 40)],
  ['cut in its vectors', async () => { const b = await goodIndex(); return b.slice(0, b.length - 5); }],
  ['a header length of 2^32-1', async () => { const b = (await goodIndex()).slice(); new DataView(b.buffer).setUint32(8, 2 ** 32 - 1, true); return b; }],
  ['random bytes', async () => randomBytes((await goodIndex()).length, 3)],
  ['a header of {}', () => forgedIndex(() => ({}))],
  ['a header of null', () => forgedIndex(() => null)],
  ['nextLabel 0', () => forgedIndex((h) => { h.nextLabel = 0; })],
  ['nextLabel "9"', () => forgedIndex((h) => { h.nextLabel = '9'; })],
  ['a chunk naming an unknown document', () => forgedIndex((h) => { h.chunks[0][1] = 'ghost'; })],
  ['a document whose labels have no chunks', () => forgedIndex((h) => { h.docs[0][2] = [4242]; })],
  ['a document with no labels', () => forgedIndex((h) => { h.docs[0][2] = []; })],
  ['docs as an object', () => forgedIndex((h) => { h.docs = { a: 1 }; })],
  ['options of the wrong types', () => forgedIndex((h) => { h.options = { storage: 5, chunkTokens: 'x' }; })],
  ['vectors of dimension 2^30', () => forgedIndex(null, (i) => { i.dim = 2 ** 30; })],
  ['vectors of dimension 2^32+36', () => forgedIndex(null, (i) => { i.dim = 2 ** 32 + 36; })],
  ['vectors of dimension 0', () => forgedIndex(null, (i) => { i.dim = 0; })],
  ['a vector count of 2^40', () => forgedIndex(null, (i) => { i.count = 2 ** 40; })],
  ['a vector count of 2^62', () => forgedIndex(null, (i) => { i.count = 2 ** 62; })],
  ['an unknown storage', () => forgedIndex(null, (i) => { i.storage = 'pq'; })],
  ['a model key of another model', () => forgedIndex(null, (i) => { i.model = JSON.stringify({ model: 'someone else', dtype: 'f32', digest: null }); })],
];
for (const [name, make] of INDEXES) fails(`index ${name}`, ['BAD_FILE', 'MODEL_MISMATCH'], deserialize(make));
defined('index as saved', deserialize(goodIndex), (hits) => hits.length >= 3 && hits.every((h) => typeof h.id === 'string' && Number.isFinite(h.score)));
const searchIn = (opts) => async () => {
  const index = SemanticIndex.deserialize(await goodIndex(), await embedder());
  try {
    return { hits: await index.search('fox', opts), count: index.chunkCount };
  } finally {
    index.dispose();
  }
};
for (const k of [2 ** 32, 2 ** 32 + 1, 1e300, Infinity]) defined(`index search k = ${k}`, searchIn({ k }), ({ hits, count }) => hits.length === count);
for (const k of [0, -1, NaN, 'all', 2.5]) fails(`index search k = ${String(k)}`, 'INPUT', searchIn({ k }));
for (const [name, metadata] of [['a BigInt', { n: 1n }], ['a function', { f: () => 1 }], ['a cycle', (() => { const o = {}; o.o = o; return o; })()]]) {
  fails(`index add with ${name} in metadata`, 'INPUT', async () => {
    const index = SemanticIndex.create(await embedder(), { chunkTokens: 16, chunkOverlap: 4 });
    try {
      return await index.add({ text: 'hello', metadata });
    } finally {
      index.dispose();
    }
  });
}

// ---- 10. module paths that climb out of the folder ---------------------------------------

const outside = await mkdtemp(join(tmpdir(), 'wembed-hostile-'));
const climbing = join(outside, 'model');
await cp(tiny, climbing, { recursive: true });
await mkdir(join(outside, 'secret'));
await writeFile(join(outside, 'secret', 'config.json'), JSON.stringify({ word_embedding_dimension: 36, pooling_mode_cls_token: true }));
for (const p of ['../secret', '../../../../../../tmp', join(outside, 'secret'), '1_Pooling/../../secret', '..\\secret', 'file:///etc', '%2e%2e/secret']) {
  fails(`modules.json path ${JSON.stringify(p)}`, 'BAD_FILE', async () => {
    const dir = await mkdtemp(join(outside, 'case-'));
    await cp(climbing, dir, { recursive: true });
    await writeFile(join(dir, 'modules.json'), JSON.stringify([{ path: '' }, { path: p, type: 'sentence_transformers.models.Pooling' }]));
    return loadAndEmbed(dir);
  });
}

// ---- 11. a hub that fails, lies, stalls or never answers ---------------------------------

let hub = null;
const hubLoad = (id, opts = {}) => async () => {
  hub ??= await hostileHub({ tiny });
  return loadAndEmbed(`tiny/${id}`, { device: 'cpu', hubBase: hub.url, cache: false, timeout: 4000, stallTimeout: 700, ...opts });
};
const HUB = [
  ['500 for config.json', '500-config', 'FETCH'],
  ['500 for the weights', '500-weights', 'FETCH'],
  ['500 for modules.json (optional, still a failure)', '500-modules', 'FETCH'],
  ['404 for the tokenizer', '404-tokenizer', 'FETCH'],
  ['404 for everything', '404-all', 'FETCH'],
  ['HTML for config.json', 'html-config', ['BAD_FILE', 'FETCH']],
  ['HTML for the tokenizer', 'html-tokenizer', ['BAD_FILE', 'TOKENIZER', 'FETCH']],
  ['HTML for the weights', 'html-weights', ['BAD_FILE', 'FETCH']],
  ['HTML for modules.json', 'html-modules', ['BAD_FILE', 'FETCH']],
  ['HTML for 1_Pooling/config.json', 'html-pooling', ['BAD_FILE', 'FETCH']],
  ['a truncated weights body', 'truncate-weights', 'FETCH'],
  ['a truncated tokenizer body', 'truncate-tokenizer', 'FETCH'],
  // Node's fetch stops reading at content-length, so the file arrives cut: FETCH or BAD_FILE.
  ['a weights body longer than its content-length', 'long-weights', ['FETCH', 'BAD_FILE']],
  ['a config body longer than its content-length', 'long-config', ['FETCH', 'BAD_FILE']],
  ['a reset connection', 'reset-weights', 'FETCH'],
  ['a bad gzip stream', 'badgzip-tokenizer', 'FETCH'],
  ['a stall after the headers', 'stall-weights', 'FETCH'],
  ['a stall in the pooling config', 'stall-pooling', 'FETCH'],
  ['a server that never answers', 'silent-all', 'FETCH'],
  ['a server that never answers for one optional file', 'silent-sbert', 'FETCH'],
  ['files of two commits', 'commit-weights', 'FETCH'],
];
for (const [name, id, codes] of HUB) fails(`hub: ${name}`, codes, hubLoad(id), 6000);
fails('hub: never answers, total timeout only', 'FETCH', hubLoad('silent-config', { timeout: 500, stallTimeout: 60_000 }), 6000);
fails('hub: never answers, aborted by the caller', 'ABORTED', hubLoad('silent-all', { signal: AbortSignal.timeout(300), stallTimeout: 60_000 }), 6000);
fails('hub: a chunked body over maxFileBytes', 'FETCH', hubLoad('chunked-weights', { maxFileBytes: 10_000 }), 6000);
defined('hub: a valid gzip body', hubLoad('gzip-all'), finite, [], 6000);
defined('hub: a chunked body', hubLoad('chunked-weights'), finite, [], 6000);
defined('hub: the files as they are', hubLoad('ok-all'), finite, [], 6000);

// ---- the run -----------------------------------------------------------------------------

after(async () => {
  await hub?.close();
  shared?.dispose();
});

test('the hostile corpus: every case settles with the right code or a defined result', { timeout: 300_000 }, async () => {
  const chosen = ONLY ? cases.filter((c) => ONLY.test(c.name)) : cases;
  const wrong = [];
  const t0 = performance.now();
  for (const c of chosen) {
    const why = await runCase(c);
    if (why) {
      wrong.push(`${c.name}: ${why}`);
      console.log(`  wrong: ${c.name}: ${why}`);
    }
  }
  const seconds = ((performance.now() - t0) / 1000).toFixed(1);
  console.log(`hostile corpus: ${chosen.length} cases in ${seconds} s, ${wrong.length} wrong`);

  // After all of it, a valid model still loads and gives the reference vectors.
  const e = await Embedder.load(minilm, { device: 'cpu', dtype: 'f32' });
  const samples = reference.sentences.slice(0, 4);
  const vs = await e.embed(samples.map((s) => s.text));
  samples.forEach((s, i) => {
    const c = cosine(vs[i], s.embedding);
    assert.ok(c >= 0.99999, `after the corpus: ${JSON.stringify(s.text)} cosine ${c}`);
  });
  e.dispose();
  assert.ok(ONLY || chosen.length >= 200, `only ${chosen.length} cases`);
  assert.deepEqual(wrong, [], `${wrong.length} of ${chosen.length} cases were wrong:\n${wrong.join('\n')}`);
});
