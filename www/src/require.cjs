// wembed is an ES module (its wasm and workers are found through import.meta.url). This is what
// `require('wembed')` finds, so CommonJS code gets a clear message instead of ERR_REQUIRE_ESM.
throw new Error(
  "wembed is an ES module: use `import { Embedder } from 'wembed'`, or from CommonJS `const { Embedder } = await import('wembed')`",
);
