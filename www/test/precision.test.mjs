// Output precisions: quantizeEmbeddings equals sentence-transformers' quantize_embeddings as
// numpy computes it (tests/fixtures/quantize_embeddings.json, written by
// tests/fixtures/quantize_embeddings.py from the PyTorch vectors of minilm.json), and embed()'s
// `precision` option gives those bytes, on workers and on the calling thread.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Embedder, quantizeEmbeddings, quantizeRanges } from '../src/index.js';
import { rejectsWith } from './util.mjs';

const root = fileURLToPath(new URL('../../', import.meta.url));
const fixtures = join(root, 'tests/fixtures');
const TINY = join(fixtures, 'tiny/mean-erf-norm');
const expected = JSON.parse(await readFile(join(fixtures, 'quantize_embeddings.json'), 'utf8'));
const reference = JSON.parse(await readFile(join(fixtures, 'minilm.json'), 'utf8'));
const vectors = Float32Array.from(reference.sentences.flatMap((s) => s.embedding));
const { dim, count } = expected;

test("quantizeEmbeddings equals sentence-transformers' quantize_embeddings (numpy) in every precision", () => {
  assert.equal(vectors.length, dim * count);
  for (const [precision, rows] of Object.entries(expected.precisions)) {
    const q = quantizeEmbeddings(vectors, dim, count, precision);
    const want = rows.flat();
    const kind = precision === 'int8' || precision === 'binary' ? Int8Array : Uint8Array;
    assert.ok(q.data instanceof kind, `${precision}: ${q.data.constructor.name}`);
    assert.equal(q.dim, rows[0].length, `${precision}: values per row`);
    const wrong = want.findIndex((x, i) => q.data[i] !== x);
    assert.equal(wrong, -1, `${precision}: value ${wrong} is ${q.data[wrong]}, numpy has ${want[wrong]}`);
  }
  // The same ranges passed explicitly give the same bytes; float32 is the input itself.
  const ranges = quantizeRanges(vectors, dim, count);
  assert.deepEqual(quantizeEmbeddings(vectors, dim, count, 'int8', ranges).data, quantizeEmbeddings(vectors, dim, count, 'int8').data);
  assert.equal(quantizeEmbeddings(vectors, dim, count, 'float32').data, vectors);
});

test('the cases numpy leaves undefined are pinned: out of range clamps, an empty range maps to its start', () => {
  const ranges = { min: [-1, 0, 5], max: [1, 0, 6] };
  const q = quantizeEmbeddings([-3, 0, 4, 3, 0, 7, 0, 0, 5.5], 3, 3, 'uint8', ranges).data;
  assert.deepEqual(Array.from(q), [0, 0, 0, 255, 0, 255, 127, 0, 127]);
  const s = quantizeEmbeddings([-3, 0, 4, 3, 0, 7], 3, 2, 'int8', [ranges.min, ranges.max]).data;
  assert.deepEqual(Array.from(s), [-128, -128, -128, 127, -128, 127]);
  // 10 values: two bytes a row, the second padded with zero bits.
  const b = quantizeEmbeddings([1, -1, 1, 1, 0, 0, 0, 1, 2, 2], 10, 1, 'ubinary').data;
  assert.deepEqual(Array.from(b), [0b10110001, 0b11000000]);
});

test('embed({ precision }) gives those bytes, as arrays and as a matrix, on workers and on this thread', async () => {
  const texts = ['the quick brown fox', 'a man is playing a guitar', 'hello world!', ''];
  for (const workers of [0, 2]) {
    const e = await Embedder.load(TINY, { device: 'cpu', workers });
    try {
      const floats = await e.embed(texts, { output: 'matrix' });
      for (const precision of ['int8', 'uint8', 'binary', 'ubinary']) {
        const want = quantizeEmbeddings(floats.data, floats.dim, floats.count, precision);
        const m = await e.embed(texts, { output: 'matrix', precision });
        assert.equal(m.count, texts.length);
        assert.equal(m.dim, want.dim);
        assert.deepEqual(m.data, want.data, `${precision}, ${workers} workers`);
        const rows = await e.embed(texts, { precision });
        assert.deepEqual(rows.map((r) => Array.from(r)).flat(), Array.from(want.data));
      }
      // A query against corpus ranges, after Matryoshka truncation.
      const ranges = quantizeRanges(floats.data, floats.dim, floats.count);
      const cut = { min: ranges.min.subarray(0, 8), max: ranges.max.subarray(0, 8) };
      const [q] = await e.embed('hello world!', { precision: 'int8', ranges: cut, truncateDim: 8 });
      assert.equal(q.length, 8);
      await rejectsWith(e.embed('x', { precision: 'int4' }), 'INPUT', /precision "int4"/);
      await rejectsWith(e.embed('x', { precision: 'binary', ranges }), 'INPUT', /ranges apply/);
      await rejectsWith(e.embed('x', { precision: 'int8', ranges: cut }), 'INPUT', /ranges: .*finite numbers/);
    } finally {
      e.dispose();
    }
  }
});
