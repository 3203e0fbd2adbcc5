// The wasm CPU path with q8 weights (integer kernels, src/backend/cpu/qmatmul.rs) against the
// PyTorch fp32 fixtures: the bar is a worst cosine of 0.999.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Embedder } from '../src/index.js';
import { cosine } from './util.mjs';

const root = fileURLToPath(new URL('../../', import.meta.url));
const reference = JSON.parse(await readFile(join(root, 'tests/fixtures/minilm.json'), 'utf8'));

test('all-MiniLM-L6-v2 with q8 weights on the wasm CPU path stays within 0.999 of PyTorch', async () => {
  const embedder = await Embedder.load(join(root, 'assets/models/all-MiniLM-L6-v2'), { device: 'cpu', dtype: 'q8' });
  assert.equal(embedder.info.dtype, 'q8');
  const vectors = await embedder.embed(reference.sentences.map((s) => s.text));
  const worst = Math.min(...reference.sentences.map((s, i) => cosine(vectors[i], s.embedding)));
  assert.ok(worst >= 0.999, `worst cosine ${worst}`);
  console.log(`wasm CPU, q8: worst cosine ${worst.toFixed(6)} over ${vectors.length} texts`);
  embedder.dispose();
});
