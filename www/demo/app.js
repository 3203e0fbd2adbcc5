// The demo page: loads the model (quantized by default), indexes the bundled corpus (WordNet
// definitions) into a SemanticIndex kept in IndexedDB, and answers queries. URL parameters
// (for tests and for trying things): device=auto|webgpu|cpu, dtype=q8|q4|f32, limit=N (index
// only the first N corpus documents).
import { Embedder, SemanticIndex, WembedError } from '../src/index.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const MODELS = { q8: 'all-MiniLM-L6-v2-q8', q4: 'all-MiniLM-L6-v2-q4', f32: 'all-MiniLM-L6-v2' };
const state = { embedder: null, index: null, busy: false };
window.demo = { state, ready: false, offlineReady: false };

const settings = {
  device: params.get('device') ?? localStorage.getItem('wembed-device') ?? 'auto',
  dtype: params.get('dtype') ?? localStorage.getItem('wembed-dtype') ?? 'q8',
  limit: Number(params.get('limit')) || Infinity,
};
$('device').value = settings.device;
$('dtype').value = settings.dtype;

function phase(text, done, total) {
  $('phase').textContent = text;
  $('progress').max = total || 1;
  $('progress').value = total ? done : 0;
}

function enable(on) {
  for (const id of ['query', 'search', 'add']) $(id).disabled = !on;
}

function indexName() {
  return `demo-${MODELS[settings.dtype]}-${Number.isFinite(settings.limit) ? settings.limit : 'all'}`;
}

async function start() {
  enable(false);
  state.index?.dispose();
  state.embedder?.dispose();
  state.index = state.embedder = null;
  window.demo.ready = false;
  const t0 = performance.now();
  const model = new URL(`../models/${MODELS[settings.dtype]}/`, location.href);
  try {
    state.embedder = await Embedder.load(model, {
      device: settings.device,
      // The q8 / q4 files keep their blocks whatever this says; 'f32' keeps the f32 file exact
      // (auto would store it as f16 on a GPU).
      dtype: settings.dtype === 'f32' ? 'f32' : 'auto',
      onProgress: ({ phase: step, file, loaded, total, cached, warning }) => {
        // A warning (the cache is full, say) is not progress: the model still loads.
        if (warning) console.warn(`wembed: ${file}: ${warning}`);
        else if (step === 'compile') phase('Preparing the model…', 1, 1);
        else if (step === 'download') phase(`${cached ? 'Reading' : 'Downloading'} ${file}: ${(loaded / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB`, loaded, total);
      },
    });
  } catch (e) {
    phase(`Could not load the model: ${e.message}${e.code ? ` (${e.code})` : ''}`, 0, 0);
    return;
  }
  const info = state.embedder.info;
  $('engine').innerHTML = '';
  const badge = (text, ok) => {
    const b = document.createElement('span');
    b.className = ok ? 'badge ok' : 'badge';
    b.textContent = text;
    $('engine').append(b);
  };
  badge(info.device === 'webgpu' ? 'WebGPU' : 'CPU (wasm)');
  badge(`${settings.dtype} weights`);
  badge(`${info.dim} dims`);
  if (window.demo.offlineReady) badge('works offline', true);
  $('engine').title = `${info.adapter} — ${info.deviceReason}`;
  const loadMs = performance.now() - t0;

  let index = null;
  try {
    index = await SemanticIndex.load(indexName(), state.embedder);
  } catch (e) {
    console.warn('saved index unusable, rebuilding:', e.message);
  }
  if (index) {
    state.index = index;
    phase(`Index restored from this browser: ${index.size} documents, ${index.chunkCount} chunks (model loaded in ${(loadMs / 1000).toFixed(1)} s)`, 1, 1);
  } else {
    const corpus = await (await fetch('./corpus.json')).json();
    const docs = corpus.docs.slice(0, settings.limit);
    state.index = SemanticIndex.create(state.embedder, { storage: 'int8' });
    const t1 = performance.now();
    const batch = 64;
    for (let i = 0; i < docs.length; i += batch) {
      await state.index.add(docs.slice(i, i + batch));
      phase(`Indexing the corpus: ${Math.min(i + batch, docs.length)} of ${docs.length} definitions`, Math.min(i + batch, docs.length), docs.length);
    }
    await state.index.save(indexName());
    const s = (performance.now() - t1) / 1000;
    phase(`Indexed ${docs.length} definitions in ${s.toFixed(1)} s (${(docs.length / s).toFixed(0)}/s) and saved the index in this browser`, 1, 1);
  }
  enable(true);
  window.demo.ready = true;
  if ($('query').value.trim()) search();
}

async function search() {
  const query = $('query').value.trim();
  if (!query || !state.index) return;
  let results;
  try {
    results = await state.index.search(query, { k: 8 });
  } catch (e) {
    $('timings').textContent = e instanceof WembedError ? `${e.message} (${e.code})` : String(e);
    return;
  }
  const list = $('results');
  list.innerHTML = '';
  results.forEach((r, i) => {
    const li = document.createElement('li');
    li.dataset.id = r.id;
    li.dataset.word = r.metadata.word ?? r.metadata.title ?? '';
    const [head, ...rest] = r.text.split(': ');
    li.innerHTML = `<span class="rank">${i + 1}.</span><div><span class="word"></span><span class="pos"></span><div class="text"></div></div><div class="score">${r.score.toFixed(3)}<div class="bar"></div></div>`;
    li.querySelector('.word').textContent = r.metadata.title ?? head;
    li.querySelector('.pos').textContent = r.metadata.pos ?? (r.chunk > 0 ? `part ${r.chunk + 1}` : 'your text');
    li.querySelector('.text').textContent = r.metadata.title ? r.text : rest.join(': ') || r.text;
    li.querySelector('.bar').style.width = `${Math.max(0, r.score) * 100}%`;
    list.append(li);
  });
  const t = results.timings;
  $('timings').textContent = `${results.length} results · query embedded in ${t.embedMs.toFixed(1)} ms · searched ${state.index.chunkCount} chunks in ${t.searchMs.toFixed(2)} ms`;
  window.demo.lastResults = results.map((r) => r.id);
}

$('search-form').addEventListener('submit', (e) => {
  e.preventDefault();
  search();
});

$('add').addEventListener('click', async () => {
  const text = $('own-text').value.trim();
  if (!text || !state.index) return;
  const title = $('own-title').value.trim() || text.slice(0, 40);
  $('add').disabled = true;
  try {
    await state.index.add([{ id: `own-${Date.now()}`, text, metadata: { title } }]);
    await state.index.save(indexName());
    $('own-text').value = '';
    $('own-title').value = '';
    phase(`Added “${title}”: ${state.index.size} documents, ${state.index.chunkCount} chunks, saved`, 1, 1);
  } catch (e) {
    phase(`Could not add the text: ${e.message}`, 0, 0);
  }
  $('add').disabled = false;
});

$('apply').addEventListener('click', () => {
  settings.device = $('device').value;
  settings.dtype = $('dtype').value;
  localStorage.setItem('wembed-device', settings.device);
  localStorage.setItem('wembed-dtype', settings.dtype);
  start();
});

fetch('./corpus.json')
  .then((r) => r.json())
  .then((c) => {
    $('credits').textContent = `Corpus: ${c.source}. ${c.notice} Model: sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0).`;
  })
  .catch(() => {});

if ('serviceWorker' in navigator) {
  navigator.serviceWorker
    .register('./sw.js')
    .then(() => navigator.serviceWorker.ready)
    .then(() => {
      window.demo.offlineReady = true;
    })
    .catch((e) => console.warn('no offline support:', e.message));
}

start();
