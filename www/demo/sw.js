// The demo's service worker: after the first visit the page, the package, the wasm module and
// the corpus come from this cache, so the demo works with the network off. Model files are
// not cached here: the package keeps them in its own Cache API store ('wembed-models-v2').
// App files go network-first (a rebuilt page shows at once), falling back to the cache.
const CACHE = 'wembed-demo-v3';
const SHELL = [
  './',
  './index.html',
  './app.js',
  './corpus.json',
  '../src/index.js',
  '../src/common.js',
  '../src/files.js',
  '../src/runtime.js',
  '../src/pool.js',
  '../src/queries.js',
  '../src/worker.js',
  '../src/search.js',
  '../src/precision.js',
  '../src/diskcache.js',
  '../pkg/wembed.js',
  '../pkg/wembed_bg.wasm',
  '../pkg/wembed_relaxed_bg.wasm',
];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(self.clients.claim());
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== location.origin || url.pathname.startsWith('/models/')) return;
  event.respondWith(
    (async () => {
      const cache = await caches.open(CACHE);
      try {
        const response = await fetch(event.request);
        if (response.ok) await cache.put(event.request, response.clone());
        return response;
      } catch (e) {
        const hit = await cache.match(event.request, { ignoreSearch: event.request.mode === 'navigate' });
        if (hit) return hit;
        throw e;
      }
    })(),
  );
});
