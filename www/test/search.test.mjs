// SemanticIndex in Node (wasm CPU path, all-MiniLM-L6-v2): add, search, filter, remove,
// chunking, persistence, and the refusals (another model, damaged bytes, bad input).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Embedder, SemanticIndex } from '../src/index.js';
import { rejectsWith } from './util.mjs';

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

const embedder = await Embedder.load(minilm, { device: 'cpu' });


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
