// AbortSignal on embed, in Node, on the calling thread and on workers: an aborted call rejects
// with ABORTED before it has embedded everything, a call aborted before its turn never runs,
// and the embedder gives the same vectors afterwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Embedder } from '../src/index.js';
import { rejectsWith } from './util.mjs';

const root = fileURLToPath(new URL('../../', import.meta.url));
const tiny = join(root, 'tests/fixtures/tiny/mean-erf-norm');
const texts = Array.from({ length: 400 }, (_, i) => `text number ${i} ${'word '.repeat(i % 20)}`);

for (const workers of [0, 2]) {
  test(`embed with an AbortSignal (workers: ${workers})`, async () => {
    const e = await Embedder.load(tiny, { device: 'cpu', workers });
    try {
      const want = await e.embed(texts.slice(0, 5));
      // Aborted before the call: nothing runs.
      await rejectsWith(e.embed(texts, { signal: AbortSignal.abort('no') }), 'ABORTED', /aborted/);
      // Aborted at the first progress report: the call stops short of the end.
      const controller = new AbortController();
      const seen = [];
      const stopped = e.embed(texts, {
        batchSize: 4,
        signal: controller.signal,
        onProgress: (done, total) => {
          seen.push([done, total]);
          controller.abort(new Error('enough'));
        },
      });
      await rejectsWith(stopped, 'ABORTED', /aborted/);
      assert.ok(seen.length > 0 && seen.at(-1)[0] < texts.length, `progress ${JSON.stringify(seen.slice(-3))}`);
      // Aborted while queued behind another call: the first finishes, the second never runs.
      const queued = new AbortController();
      const first = e.embed(texts.slice(0, 50));
      const second = e.embed(texts, { signal: queued.signal });
      queued.abort();
      assert.equal((await first).length, 50);
      await rejectsWith(second, 'ABORTED');
      // The embedder is as it was.
      assert.deepEqual(await e.embed(texts.slice(0, 5)), want);
      await rejectsWith(e.embed(['x'], { signal: 'soon' }), 'INPUT', /AbortSignal/);
    } finally {
      e.dispose();
    }
  });
}
