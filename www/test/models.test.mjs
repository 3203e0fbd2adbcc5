// Every architecture through the npm package in Node, as a user loads it: each tiny model of
// tests/fixtures/tiny (from its folder, and from a hub over HTTP: the Dense modules' weights
// come along) against its sentence-transformers vectors, and all-mpnet-base-v2 against PyTorch.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Embedder } from '../src/index.js';
import { cosine } from './util.mjs';
import { hubServer, close, url } from './server.mjs';

const root = fileURLToPath(new URL('../../', import.meta.url));
const fixtures = join(root, 'tests/fixtures/tiny');
const variants = (await readdir(fixtures)).sort();
const models = Object.fromEntries(variants.map((v) => [`tiny/${v}`, join(fixtures, v)]));
const hub = await hubServer(models);
after(() => close(hub));

/** Embeds the reference texts with `source` and checks each pooled vector against PyTorch's. */
async function matches(source, reference, opts) {
  const e = await Embedder.load(source, { device: 'cpu', dtype: 'f32', workers: 0, cache: false, ...opts });
  try {
    const texts = reference.sentences.map((s) => s.text);
    const vectors = await e.embed(texts, { promptName: reference.prompt_name ?? undefined, batchSize: 3 });
    reference.sentences.forEach((s, i) => {
      const c = cosine(vectors[i], s.pooled);
      assert.ok(c >= 0.99999, `${reference.variant} from ${opts.hubBase ? 'the hub' : 'its folder'}: ${JSON.stringify(s.text)} cosine ${c}`);
    });
  } finally {
    e.dispose();
  }
}

test('every tiny architecture matches sentence-transformers, from its folder and from a hub', async () => {
  assert.ok(variants.includes('dense-tanh') && variants.includes('gemma3-bidirectional'), variants.join(' '));
  for (const v of variants) {
    const reference = JSON.parse(await readFile(join(fixtures, v, 'reference.json'), 'utf8'));
    await matches(join(fixtures, v), reference, {});
    await matches(`tiny/${v}`, reference, { hubBase: url(hub) });
  }
});

test('a Dense module whose weights the hub lacks is a named error, not a silent skip', async () => {
  const server = await hubServer({ 'tiny/no-dense': join(fixtures, 'dense-tanh') }, { hide: ['2_Dense/model.safetensors'] });
  try {
    await assert.rejects(
      Embedder.load('tiny/no-dense', { device: 'cpu', workers: 0, cache: false, hubBase: url(server) }),
      (e) => e.code === 'FETCH' && /2_Dense\/model\.safetensors/.test(e.message),
    );
  } finally {
    await close(server);
  }
});

test('all-mpnet-base-v2 in the npm package matches PyTorch', async () => {
  const reference = JSON.parse(await readFile(join(root, 'tests/fixtures/mpnet.json'), 'utf8'));
  const e = await Embedder.load(join(root, 'assets/models/all-mpnet-base-v2'), { device: 'cpu', dtype: 'f32', workers: 0 });
  try {
    assert.equal(e.info.dim, 768);
    const sentences = reference.sentences.slice(0, 12);
    const vectors = await e.embed(sentences.map((s) => s.text));
    sentences.forEach((s, i) => {
      const c = cosine(vectors[i], s.embedding);
      assert.ok(c >= 0.99999, `${JSON.stringify(s.text)}: cosine ${c}`);
    });
  } finally {
    e.dispose();
  }
});
