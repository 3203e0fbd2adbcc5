// The demo page in Debian's headless Chromium (playwright-core): it loads the quantized model,
// indexes the first 300 corpus documents with a progress bar, answers queries, and, with the
// server stopped, reloads from its service worker and IndexedDB and answers them the same.
// A screenshot goes to www/test-output/demo.png. Needs scripts/build-demo.sh first (the test
// command runs it).
import { launchChromium } from './util.mjs';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

import { serve } from '../demo/serve.mjs';
import { close } from './server.mjs';

const www = fileURLToPath(new URL('../', import.meta.url));
const root = fileURLToPath(new URL('../../', import.meta.url));
// (query, the word whose definition must come first)
const QUERIES = [
  ['a juicy citrus fruit', 'orange'],
  ['the egg-laying female of an ant colony', 'queen'],
  ['the hours between sunset and sunrise', 'night'],
  ['the red liquid the heart pumps around the body', 'blood'],
];

let server, browser, page;

before(async () => {
  await stat(`${root}/assets/demo/corpus.json`).catch(() => {
    throw new Error('assets/demo is missing: run scripts/build-demo.sh (the test command does)');
  });
  server = await serve(0);
  browser = await launchChromium();
  page = await (await browser.newContext({ viewport: { width: 900, height: 900 } })).newPage();
  page.on('console', (m) => process.stderr.write(`[page] ${m.text()}\n`));
});

after(async () => {
  await browser?.close();
  if (server?.listening) await close(server);
});

async function ask(query) {
  await page.fill('#query', query);
  await page.press('#query', 'Enter');
  await page.waitForFunction(() => document.querySelectorAll('#results li').length > 0 && /results/.test(document.getElementById('timings').textContent));
  const rows = await page.$$eval('#results li', (lis) => lis.map((li) => [li.dataset.id, li.dataset.word, li.querySelector('.score').textContent]));
  // Clear for the next query, so waiting sees its own results.
  await page.evaluate(() => {
    document.getElementById('results').innerHTML = '';
    document.getElementById('timings').textContent = '';
  });
  return rows;
}

test("the demo's service worker keeps every module of the package for offline use", async () => {
  // A module left out of SHELL loads online and breaks the page offline (it did: precision.js).
  const sw = await readFile(join(www, 'demo/sw.js'), 'utf8');
  const modules = (await readdir(join(www, 'src'))).filter((f) => f.endsWith('.js'));
  for (const m of modules) assert.ok(sw.includes(`'../src/${m}'`), `sw.js does not cache src/${m}`);
});

test('the demo indexes, searches, and works again offline', async () => {
  const port = server.address().port;
  const progress = [];
  await page.exposeFunction('reportProgress', (v) => progress.push(v));
  await page.goto(`http://127.0.0.1:${port}/demo/?device=cpu&limit=300`);
  await page.evaluate(() => {
    const bar = document.getElementById('progress');
    new MutationObserver(() => window.reportProgress(bar.value / bar.max)).observe(bar, { attributes: true });
  });
  await page.waitForFunction(() => window.demo?.ready && window.demo.offlineReady, null, { timeout: 600_000 });
  assert.ok(progress.some((p) => p > 0 && p < 1), 'the progress bar moved');
  assert.match(await page.textContent('#phase'), /Indexed 300 definitions/);
  assert.match(await page.textContent('#engine'), /CPU \(wasm\)/);
  assert.match(await page.textContent('#engine'), /q8 weights/);

  const first = [];
  for (const [query, word] of QUERIES) {
    const rows = await ask(query);
    assert.equal(rows[0][1], word, `"${query}" -> ${rows.map((r) => r[1]).join(', ')}`);
    first.push(rows.map((r) => r[0]));
  }
  await mkdir(`${www}/test-output`, { recursive: true });
  await page.fill('#query', QUERIES[0][0]);
  await page.press('#query', 'Enter');
  await page.waitForSelector('#results li');
  await page.screenshot({ path: `${www}/test-output/demo.png`, fullPage: true });

  // The network goes away: the page, the wasm, the model and the index come from this browser.
  await close(server);
  await page.reload();
  await page.waitForFunction(() => window.demo?.ready, null, { timeout: 300_000 });
  assert.match(await page.textContent('#phase'), /restored from this browser: 300 documents/);
  for (const [i, [query]] of QUERIES.entries()) {
    const rows = await ask(query);
    assert.deepEqual(rows.map((r) => r[0]), first[i], `"${query}" offline`);
  }
});
