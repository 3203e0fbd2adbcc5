// SemanticIndex in Node (wasm CPU path, all-MiniLM-L6-v2): add, search, filter, remove,
// chunking, persistence, and the refusals (another model, damaged bytes, bad input).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Embedder, SemanticIndex } from '../src/index.js';
import { cosine, rejectsWith } from './util.mjs';

/** Asserts `fn()` throws a WembedError of `code` (message matching `pattern`). */
function throwsWith(fn, code, pattern, label) {
  assert.throws(fn, (e) => {
    assert.equal(e?.name, 'WembedError', `${label ?? ''}: expected a WembedError, got ${e?.stack ?? e}`);
    assert.equal(e.code, code, `${label ?? ''}: ${e.message}`);
    if (pattern) assert.match(e.message, pattern, label);
    return true;
  });
}

/** Saved index bytes as their parts: the header and the vector index's header, labels, floats. */
function splitIndex(bytes) {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = dv.getUint32(8, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + len)));
  const vec = bytes.slice(12 + len);
  const vlen = new DataView(vec.buffer).getUint32(8, true);
  const inner = JSON.parse(new TextDecoder().decode(vec.subarray(12, 12 + vlen)));
  const body = vec.slice(12 + vlen);
  const labels = new Uint32Array(body.buffer.slice(0, inner.count * 4));
  return { header, inner, labels, floats: body.subarray(inner.count * 4) };
}

/** The inverse of splitIndex, for forging. */
function joinIndex({ header, inner, labels, floats }) {
  const enc = (x) => new TextEncoder().encode(JSON.stringify(x));
  const h = enc(header);
  const ih = enc(inner);
  const out = new Uint8Array(12 + h.length + 12 + ih.length + labels.byteLength + floats.length);
  const dv = new DataView(out.buffer);
  out.set(new TextEncoder().encode('WEMBSIX1'), 0);
  dv.setUint32(8, h.length, true);
  out.set(h, 12);
  let at = 12 + h.length;
  out.set(new TextEncoder().encode('WEMBIDX1'), at);
  dv.setUint32(at + 8, ih.length, true);
  out.set(ih, at + 12);
  at += 12 + ih.length;
  out.set(new Uint8Array(labels.buffer, labels.byteOffset, labels.byteLength), at);
  out.set(floats, at + labels.byteLength);
  return out;
}

const root = fileURLToPath(new URL('../../', import.meta.url));
const minilm = join(root, 'assets/models/all-MiniLM-L6-v2');
const tiny = join(root, 'tests/fixtures/tiny/mean-erf-norm');
const reference = JSON.parse(await readFile(join(root, 'tests/fixtures/minilm.json'), 'utf8'));
const LONG = reference.sentences.map((s) => s.text).reduce((a, b) => (b.length > a.length ? b : a));

const DOCS = [
  { id: 'bread', text: 'To bake bread, mix flour, water, yeast and salt, knead the dough and let it rise before baking it in a hot oven.', metadata: { topic: 'food' } },
  { id: 'rocket', text: 'The rocket lifted off and carried the satellite into orbit around the Earth.', metadata: { topic: 'science' } },
  { id: 'match', text: 'The striker scored a goal in the last minute and the team won the football match.', metadata: { topic: 'sport' } },
  { id: 'python', text: 'Python is a programming language used for data analysis and building web applications.', metadata: { topic: 'tech' } },
  { id: 'cats', text: 'Cats are small furry pets that sleep most of the day and chase mice at night.', metadata: { topic: 'animals' } },
  { id: 'history', text: LONG, metadata: { topic: 'history' } },
];
const QUERIES = [
  ['how do I make a loaf of bread at home', 'bread'],
  ['space launch into orbit', 'rocket'],
  ['who won the soccer game', 'match'],
  ['a language for coding', 'python'],
  ['my kitten likes to nap', 'cats'],
  ['when did machine translation start', 'history'],
];

const embedder = await Embedder.load(minilm, { device: 'cpu', dtype: 'f32' });


async function built(storage) {
  const index = SemanticIndex.create(embedder, { storage, chunkTokens: 64, chunkOverlap: 16 });
  const progress = [];
  await index.add(DOCS, { onProgress: (done, total) => progress.push([done, total]) });
  assert.ok(progress.length > 0 && progress.at(-1)[0] === progress.at(-1)[1], 'progress reaches the total');
  return index;
}

test('every storage finds the right document and scores are sorted cosines', async () => {
  for (const storage of ['f32', 'int8', 'binary']) {
    const index = await built(storage);
    assert.equal(index.size, DOCS.length);
    assert.ok(index.chunkCount > DOCS.length, 'the long text is cut into several chunks');
    for (const [query, want] of QUERIES) {
      const results = await index.search(query, { k: 3 });
      assert.equal(results[0].id, want, `${storage}: "${query}" -> ${results.map((r) => r.id)}`);
      assert.ok(results.every((r, i) => i === 0 || results[i - 1].score >= r.score));
      assert.ok(results[0].score > 0.2 && results[0].score <= 1.0001);
      assert.deepEqual(results[0].metadata, DOCS.find((d) => d.id === want).metadata);
      assert.ok(DOCS.find((d) => d.id === results[0].id).text.includes(results[0].text), 'chunk text is from its document');
      assert.ok(results.timings.searchMs >= 0 && results.timings.embedMs > 0);
    }
    index.dispose();
  }
});

test('long documents point back to their chunk', async () => {
  const index = await built('int8');
  const hits = await index.search('the Georgetown experiment translated Russian sentences', { k: 20, filter: { topic: 'history' } });
  assert.ok(hits.length > 1 && hits.every((h) => h.id === 'history'));
  const chunks = new Set(hits.map((h) => h.chunk));
  assert.equal(chunks.size, hits.length, 'each chunk once');
  assert.match(hits[0].text, /Georgetown/);
  index.dispose();
});

test('filters, removal, replacement, empty index and k beyond the index', async () => {
  const index = await built('int8');
  const science = await index.search('how do I make bread', { k: 5, filter: { topic: 'science' } });
  assert.deepEqual([...new Set(science.map((r) => r.id))], ['rocket']);
  const fn = await index.search('how do I make bread', { k: 5, filter: (m, id) => id !== 'bread' && m.topic !== 'history' });
  assert.ok(fn.length === 4 && fn.every((r) => r.id !== 'bread'));
  assert.deepEqual(await index.search('bread', { filter: { topic: 'nothing' } }), []);

  assert.equal(index.remove('bread'), true);
  assert.equal(index.remove('bread'), false);
  assert.equal(index.size, DOCS.length - 1);
  assert.ok((await index.search('how do I make bread', { k: 50 })).every((r) => r.id !== 'bread'));
  const all = await index.search('anything at all', { k: 1000 });
  assert.equal(all.length, index.chunkCount, 'k beyond the index returns every chunk');

  await index.add({ id: 'cats', text: 'Dogs are loyal animals that love long walks.', metadata: { topic: 'animals' } });
  assert.equal(index.size, DOCS.length - 1, 'same id replaces');
  assert.equal((await index.search('a loyal dog', { k: 1 }))[0].text, 'Dogs are loyal animals that love long walks.');

  const empty = SemanticIndex.create(embedder);
  assert.deepEqual(await empty.search('hello'), []);
  await rejectsWith(empty.search(''), 'INPUT', /non-empty/);
  await rejectsWith(empty.search('x', { k: 0 }), 'INPUT', /k must/);
  await rejectsWith(empty.add([{ id: 'blank', text: '   ' }]), 'INPUT', /no text/);
  await rejectsWith(empty.add([{ id: 'a', text: 'x' }, { id: 'a', text: 'y' }]), 'INPUT', /twice/);
  await rejectsWith(empty.add([{ id: 'n' }]), 'INPUT', /text string/);
  assert.equal(empty.size, 0, 'failed adds add nothing');
  assert.throws(() => SemanticIndex.create(embedder, { storage: 'pq' }), /storage "pq"/);
  empty.dispose();
  await rejectsWith(empty.search('x'), 'DISPOSED');
  index.dispose();
});

test('an index persists to a file and refuses another model or dtype', async () => {
  const index = await built('binary');
  const before = await index.search('who won the soccer game', { k: 4 });
  const dir = await mkdtemp(join(tmpdir(), 'wembed-index-'));
  const file = join(dir, 'index.bin');
  await index.save(file);
  const loaded = await SemanticIndex.load(file, embedder);
  assert.deepEqual(loaded.info, index.info);
  assert.deepEqual(await loaded.search('who won the soccer game', { k: 4 }), before);
  assert.equal(await SemanticIndex.load(join(dir, 'missing.bin'), embedder), null);

  const bytes = index.serialize();
  const other = await Embedder.load(tiny, { device: 'cpu' });
  assert.throws(() => SemanticIndex.deserialize(bytes, other), (e) => e.code === 'MODEL_MISMATCH' && /cannot be compared/.test(e.message));
  const q8 = await Embedder.load(minilm, { device: 'cpu', dtype: 'q8' });
  assert.throws(() => SemanticIndex.deserialize(bytes, q8), (e) => e.code === 'MODEL_MISMATCH' && /dtype q8/.test(e.message));
  for (const cut of [4, 40, bytes.length - 3]) {
    assert.throws(() => SemanticIndex.deserialize(bytes.subarray(0, cut), embedder), (e) => e.code === 'BAD_FILE', `cut at ${cut}`);
  }
  other.dispose();
  q8.dispose();
  loaded.dispose();
  index.dispose();
});

test('k beyond the index, null options and null fields are the whole index or the defaults', async () => {
  const index = await built('int8');
  const all = index.chunkCount;
  for (const k of [2 ** 32, 2 ** 32 + 1, 2 ** 53, 1e300, Infinity, Number.MAX_VALUE]) {
    assert.equal((await index.search('who won the soccer game', { k })).length, all, `k = ${k}`);
  }
  const filtered = await index.search('bread', { k: 1e300, filter: { topic: 'food' } });
  assert.deepEqual(filtered.map((r) => r.id), ['bread']);
  assert.equal((await index.search('bread', null)).length, Math.min(10, all));
  assert.equal((await index.search('bread', { k: null, filter: null })).length, Math.min(10, all));
  for (const k of [0, -1, 1.5, NaN, -Infinity, '3', 3n]) await rejectsWith(index.search('bread', { k }), 'INPUT', /k must/);
  await rejectsWith(index.search('bread', { filter: 'food' }), 'INPUT', /filter/);
  await rejectsWith(index.search('bread', { filter: () => { throw new Error('no'); } }), 'INPUT', /filter threw/);
  const empty = SemanticIndex.create(embedder, null);
  await empty.add({ text: 'hello there', metadata: null }, null);
  assert.deepEqual((await empty.search('hello', { k: Infinity }))[0].metadata, {});
  assert.ok((await empty.search('hello')).timings);
  empty.dispose();
  index.dispose();
});

test('an automatic id never replaces another document, not even in concurrent adds', async () => {
  const index = SemanticIndex.create(embedder);
  // The old scheme named the n-th automatic document doc-{nextLabel}-{i}.
  await index.add({ id: 'doc-1-0', text: 'A document someone named on purpose.' });
  await index.add({ id: 'doc-0', text: 'Another one, named like an automatic id.' });
  const [auto] = await index.add('An unnamed document.');
  assert.ok(!['doc-1-0', 'doc-0'].includes(auto), auto);
  assert.equal(index.size, 3);
  const both = await Promise.all([index.add('unnamed one'), index.add('unnamed two'), index.add(['three', 'four'])]);
  assert.equal(new Set(both.flat()).size, 4, JSON.stringify(both));
  assert.equal(index.size, 7);
  const mixed = await index.add(['five', { id: 'doc-6', text: 'named six' }, 'seven']);
  assert.equal(new Set(mixed).size, 3);
  assert.equal(index.size, 10);
  assert.equal((await index.search('A document someone named on purpose.', { k: 1 }))[0].id, 'doc-1-0');
  await rejectsWith(index.add({ id: { toString: () => 'x' }, text: 'an object id' }), 'INPUT', /id must be/);
  index.dispose();
});

test('metadata that cannot be saved fails at add(), and later changes by the caller do not reach the index', async () => {
  const index = SemanticIndex.create(embedder, { storage: 'f32' });
  const cycle = { a: 1 };
  cycle.self = cycle;
  const deep = {};
  let at = deep;
  for (let i = 0; i < 100_000; i++) at = at.next = {};
  const bad = [
    ['a BigInt', { n: 10n }, /bigint/],
    ['a cycle', cycle, /cycle/],
    ['a function', { f() {} }, /function/],
    ['a symbol', { s: Symbol('x') }, /symbol/],
    ['NaN', { x: NaN }, /NaN/],
    ['Infinity', { x: [1, Infinity] }, /Infinity/],
    ['a Date', { when: new Date(0) }, /Date/],
    ['a Map', { m: new Map() }, /Map/],
    ['a typed array', { v: new Float32Array(2) }, /Float32Array/],
    ['an array', [1, 2], /not an object/],
    ['a string', 'topic', /not an object/],
    ['a throwing getter', { get x() { throw new Error('getter'); } }, /getter/],
    ['deep nesting', deep, /./],
  ];
  for (const [what, metadata, pattern] of bad) {
    await rejectsWith(index.add({ id: 'm', text: 'some text', metadata }), 'INPUT', pattern);
    assert.equal(index.size, 0, what);
  }
  const metadata = { topic: 'food', tags: ['a', 'b'], nested: { n: 1 }, gone: undefined };
  await index.add({ id: 'm', text: 'To bake bread, knead the dough.', metadata });
  metadata.topic = 'changed';
  metadata.tags.push('c');
  const [hit] = await index.search('bread', { k: 1 });
  assert.deepEqual(hit.metadata, { topic: 'food', tags: ['a', 'b'], nested: { n: 1 } });
  const back = SemanticIndex.deserialize(index.serialize(), embedder);
  assert.deepEqual((await back.search('bread', { k: 1 }))[0].metadata, hit.metadata);
  back.dispose();
  index.dispose();
});

test('a forged or damaged index is BAD_FILE or MODEL_MISMATCH, never wrong results or a TypeError', async () => {
  const index = await built('int8');
  const good = index.serialize();
  const parts = () => splitIndex(good);
  const forged = (label, change, code = 'BAD_FILE', pattern) => {
    const p = parts();
    change(p);
    throwsWith(() => SemanticIndex.deserialize(joinIndex(p), embedder), code, pattern, label);
  };
  // The parts put back together are the same index.
  const same = SemanticIndex.deserialize(joinIndex(parts()), embedder);
  assert.equal(same.chunkCount, index.chunkCount);
  same.dispose();

  forged('a header of {}', (p) => (p.header = {}));
  forged('a header of null', (p) => (p.header = null));
  forged('a header that is a list', (p) => (p.header = []));
  forged('nextLabel 0', (p) => (p.header.nextLabel = 0), 'BAD_FILE', /nextLabel/);
  forged('nextLabel equal to the last label', (p) => (p.header.nextLabel = Math.max(...p.header.chunks.map((c) => c[0]))), 'BAD_FILE', /nextLabel/);
  forged('nextLabel as a string', (p) => (p.header.nextLabel = String(p.header.nextLabel)));
  forged('nextLabel negative', (p) => (p.header.nextLabel = -1));
  forged('nextLabel beyond u32', (p) => (p.header.nextLabel = 2 ** 40));
  forged('options missing', (p) => delete p.header.options);
  forged('storage unknown', (p) => (p.header.options.storage = 'pq'));
  forged('storage not the vectors\'', (p) => (p.header.options.storage = 'f32'), 'BAD_FILE', /int8/);
  forged('chunkTokens 0', (p) => (p.header.options.chunkTokens = 0));
  forged('chunkOverlap a string', (p) => (p.header.options.chunkOverlap = '16'));
  forged('docs an object', (p) => (p.header.docs = {}));
  forged('chunks a string', (p) => (p.header.chunks = 'x'));
  forged('a chunk naming an unknown document', (p) => (p.header.chunks[0][1] = 'nobody'), 'BAD_FILE', /nobody|claimed/);
  forged('a document without chunks', (p) => (p.header.docs[0][2] = []), 'BAD_FILE', /no chunks/);
  forged('a document naming chunks that are not there', (p) => p.header.docs[0][2].push(999_999), 'BAD_FILE', /999999/);
  forged('a document dropped, its chunks left', (p) => p.header.docs.splice(1, 1), 'BAD_FILE', /is not there|does not list/);
  forged('a chunk dropped', (p) => p.header.chunks.splice(0, 1));
  forged('a chunk twice', (p) => p.header.chunks.push(p.header.chunks[0]));
  forged('a document twice', (p) => p.header.docs.push(p.header.docs[0]));
  forged('a chunk label as a string', (p) => (p.header.chunks[0][0] = String(p.header.chunks[0][0])));
  forged('a chunk text as a number', (p) => (p.header.chunks[0][3] = 5));
  forged('a chunk of three fields', (p) => p.header.chunks[0].pop());
  forged('metadata null', (p) => (p.header.docs[0][1] = null));
  forged('a document id as a number', (p) => (p.header.docs[0][0] = 5));
  forged('a vector labelled with no chunk', (p) => (p.labels[0] = 777_777), 'BAD_FILE', /777777|label/);
  forged('two vectors with one label', (p) => (p.labels[1] = p.labels[0]));
  forged('vectors of another width', (p) => {
    p.inner.dim = 128;
    p.inner.count = Math.floor(p.floats.length / (4 * 128 + 4));
    p.labels = Uint32Array.from({ length: p.inner.count }, (_, i) => i);
    p.floats = p.floats.subarray(0, p.inner.count * 4 * 128);
  }, 'MODEL_MISMATCH', /128-dimensional/);
  forged('a model key of another model', (p) => (p.inner.model = JSON.stringify({ model: 'other', dtype: 'f32', digest: null })), 'MODEL_MISMATCH');
  forged('a model key that is no key', (p) => (p.inner.model = 'nonsense'), 'BAD_FILE', /no model/);
  for (const junk of [new Uint8Array(0), new Uint8Array(12), new TextEncoder().encode('WEMBSIX1\xff\xff\xff\xff')]) {
    throwsWith(() => SemanticIndex.deserialize(junk, embedder), 'BAD_FILE');
  }
  throwsWith(() => SemanticIndex.deserialize('WEMBSIX1', embedder), 'INPUT');
  throwsWith(() => SemanticIndex.deserialize({ length: 1e12 }, embedder), 'INPUT');
  throwsWith(() => SemanticIndex.deserialize(good, null), 'INPUT');
  throwsWith(() => SemanticIndex.create({}), 'INPUT');
  await rejectsWith(SemanticIndex.load(42, embedder), 'INPUT');
  index.dispose();
});

test('an index knows its model by its weights: two in-memory models with one label differ', async () => {
  const names = ['config.json', 'tokenizer.json', 'model.safetensors', 'modules.json', '1_Pooling/config.json', 'sentence_bert_config.json', 'config_sentence_transformers.json'];
  const files = {};
  for (const n of names) files[n] = new Uint8Array(await readFile(join(tiny, n)));
  const weights = files['model.safetensors'].slice();
  const start = 8 + Number(new DataView(weights.buffer).getBigUint64(0, true));
  new DataView(weights.buffer).setFloat32(start + 64, 0.25, true);
  const a = await Embedder.load({ files }, { device: 'cpu' });
  const b = await Embedder.load({ files: { ...files, 'model.safetensors': weights } }, { device: 'cpu' });
  const fromFolder = await Embedder.load(tiny, { device: 'cpu' });
  assert.equal(a.info.model, b.info.model, 'both are labelled alike');
  const opts = { storage: 'f32', chunkTokens: 16, chunkOverlap: 4 };
  const index = SemanticIndex.create(a, opts);
  await index.add(['the quick brown fox', 'a man is playing a guitar']);
  const bytes = index.serialize();
  assert.equal(typeof a.info.digest, 'string', 'Embedder info carries a digest of the weights');
  throwsWith(() => SemanticIndex.deserialize(bytes, b), 'MODEL_MISMATCH', /cannot be compared/);
  // The same bytes from a folder are the same model, whatever the label.
  const same = SemanticIndex.deserialize(bytes, fromFolder);
  assert.equal(same.info.digest, a.info.digest);
  same.dispose();
  index.dispose();
  for (const e of [a, b, fromFolder]) e.dispose();
});

test('disposing during add() or search() is DISPOSED, not a wasm error', async () => {
  const index = SemanticIndex.create(embedder);
  const adding = index.add('a text that is being embedded while the index goes away');
  index.dispose();
  await rejectsWith(adding, 'DISPOSED');
  const other = await built('f32');
  const searching = other.search('bread');
  other.dispose();
  await rejectsWith(searching, 'DISPOSED');
});

test("server-side vectors: sentence-transformers' own vectors, searched with queries embedded here", async () => {
  // The fixture's vectors are sentence-transformers' on PyTorch: what a server would have
  // written. Each sentence, embedded here as a query, finds its own vector first.
  const index = SemanticIndex.create(embedder, { storage: 'f32' });
  const docs = reference.sentences.map((s, i) => ({ id: `s${i}`, text: s.text, metadata: { i } }));
  const flat = Float32Array.from(reference.sentences.flatMap((s) => s.embedding));
  assert.deepEqual(index.addVectors(docs, flat), docs.map((d) => d.id));
  assert.equal(index.size, docs.length);
  let found = 0;
  for (const s of reference.sentences) {
    if (s.text.trim() === '') continue; // no query
    const [best] = await index.search(s.text, { k: 1 });
    // Its own vector, or one equal to it: a repeated text, or a text that shares its first
    // 256 tokens (the model's limit) with another.
    const twin = reference.sentences[best.metadata.i].embedding;
    assert.ok(cosine(twin, s.embedding) > 0.99999, `query ${JSON.stringify(s.text.slice(0, 60))} found ${JSON.stringify(best.text.slice(0, 60))}`);
    assert.ok(best.score > 0.99999, `${JSON.stringify(s.text.slice(0, 60))}: score ${best.score}`);
    found++;
  }
  assert.ok(found > 20, `only ${found} distinct sentences`);
  // One array per document works too; wrong shapes and values are INPUT, and change nothing.
  const again = SemanticIndex.create(embedder, { storage: 'int8' });
  again.addVectors([{ id: 'a', text: 'a' }], [reference.sentences[0].embedding]);
  assert.throws(() => again.addVectors(['x', 'y'], flat.subarray(0, 384)), (e) => e.code === 'INPUT' && /2 documents need 768/.test(e.message));
  assert.throws(() => again.addVectors(['x'], [[1, 2, 3]]), (e) => e.code === 'INPUT' && /384 values/.test(e.message));
  assert.throws(() => again.addVectors(['x'], [new Array(384).fill(NaN)]), (e) => e.code === 'INPUT' && /finite/.test(e.message));
  assert.equal(again.size, 1);
});
