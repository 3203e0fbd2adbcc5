// The whole public API as a TypeScript user writes it, checked by types.test.mjs with
// `tsc --noEmit --strict` against src/index.d.ts. Lines marked @ts-expect-error must fail to
// compile: they are what the declarations must refuse.
import {
  Embedder,
  SemanticIndex,
  WembedError,
  isCached,
  clearCache,
  quantizeEmbeddings,
  quantizeRanges,
  type EmbedderInfo,
  type LoadOptions,
  type EmbedOptions,
  type Matrix,
  type SearchResults,
  type ProgressEvent,
  type LoadProgress,
  type LoadWarning,
  type ModelSource,
  type MemoryUsage,
} from '../../src/index.js';

export async function everything(): Promise<void> {
  const controller = new AbortController();
  const options: LoadOptions = {
    device: 'auto',
    dtype: 'q8',
    hubBase: 'http://127.0.0.1:8080',
    revision: 'main',
    cache: false,
    signal: controller.signal,
    timeout: 60_000,
    stallTimeout: 10_000,
    maxFileBytes: 1 << 30,
    simd: 'relaxed',
    workers: 'auto',
    workerUrl: new URL('./worker.js', 'http://127.0.0.1/'),
    queryDevice: 'webgpu',
    wasm: new URL('http://127.0.0.1/pkg/wembed_bg.wasm'),
    onProgress: (e: LoadProgress | LoadWarning) => {
      if ('warning' in e) console.warn(e.file, e.warning);
      else if (e.phase === 'download') console.log(e.file, e.loaded, e.total, e.cached);
      else console.log(e.phase);
    },
  };
  const sources: ModelSource[] = [
    'sentence-transformers/all-MiniLM-L6-v2',
    new URL('http://127.0.0.1/models/minilm'),
    new Map([['config.json', new Uint8Array()]]),
    { files: { 'config.json': new Uint8Array() } },
  ];
  const e = await Embedder.load(sources[0], options);
  const info: EmbedderInfo = e.info;
  const dtype: 'f32' | 'f16' | 'q8' | 'q4' = info.dtype;
  const device: 'webgpu' | 'cpu' = info.device;
  const wasm: 'simd128' | 'relaxed-simd' | 'custom' = info.wasm;
  const note: string | null = info.workerMemoryNote;
  console.log(dtype, device, wasm, note, info.adapter, info.deviceReason, info.digest, info.dim, info.maxTokens, info.model, info.workers);
  for (const w of info.warnings) console.log(w.file, w.warning);
  if (info.queryDevice === 'cpu' && info.queryTimes && info.queryMaxTokens !== undefined) {
    const sooner: number = info.queryTimes.webgpu - info.queryTimes.cpu;
    console.log(`one-text calls up to ${info.queryMaxTokens} tokens run ${sooner} ms sooner on the CPU`);
  }
  // @ts-expect-error info.dtype is what the weights are stored as, never 'auto'
  if (info.dtype === 'auto') throw new Error('unreachable');

  const embedOptions = {
    normalize: true,
    batchSize: 16,
    batchTokens: 2048,
    prompt: 'query: ',
    promptName: 'query',
    truncate: false,
    truncateDim: 128,
    signal: AbortSignal.timeout(10_000),
    onProgress: (done: number, total: number) => console.log(done, total),
  } satisfies EmbedOptions;
  const arrays: Float32Array[] = await e.embed(['a', 'b'], embedOptions);
  const one: Float32Array[] = await e.embed('a single text');
  const matrix: Matrix = await e.embed(['a'], { ...embedOptions, output: 'matrix' });
  console.log(arrays[0].length, one.length, matrix.data.length, matrix.dim, matrix.count);
  // @ts-expect-error the matrix form is not an array
  const wrong: Float32Array[] = await e.embed(['a'], { output: 'matrix' });
  console.log(wrong);
  // @ts-expect-error batchSize is a number
  await e.embed(['a'], { batchSize: '16' });
  // sentence-transformers' output precisions, typed by precision.
  const bits: Int8Array[] = await e.embed(['a'], { precision: 'binary' });
  const ranges = quantizeRanges(matrix.data, matrix.dim, matrix.count);
  const u8: Matrix<Uint8Array> = await e.embed(['a'], { output: 'matrix', precision: 'uint8', ranges });
  const i8: Int8Array = quantizeEmbeddings(matrix.data, matrix.dim, matrix.count, 'int8', [ranges.min, ranges.max]).data;
  console.log(bits[0].length, u8.dim, i8.length);
  // @ts-expect-error binary rows are bytes, not floats
  const floats: Float32Array[] = await e.embed(['a'], { precision: 'ubinary' });
  console.log(floats);
  const pieces: string[] = e.chunks('a long text', 64, 16);
  const memory: MemoryUsage = e.memoryUsage();
  console.log(pieces, memory.wasmBytes, memory.gpuBufferBytes, memory.workerWasmBytes);

  const index = SemanticIndex.create(e, { storage: 'int8', chunkTokens: 128, chunkOverlap: 32 });
  const ids: string[] = await index.add(['a text', { id: 'doc', text: 'another', metadata: { lang: 'en' } }], {
    onProgress: (done, total) => console.log(done, total),
  });
  const served: string[] = index.addVectors([{ id: 'server-1', text: 'from the server' }], new Float32Array(e.info.dim));
  index.addVectors(['two', 'rows'], [new Float32Array(e.info.dim), Array.from({ length: e.info.dim }, () => 0.5)]);
  console.log(served);
  const results: SearchResults = await index.search('query', { k: 5, filter: { lang: 'en' } });
  const byFunction = await index.search('query', { k: Infinity, filter: (metadata, id) => id !== 'doc' && !!metadata });
  for (const r of [...results, ...byFunction]) console.log(r.id, r.chunk, r.score, r.text, r.metadata);
  console.log(ids, results.timings.embedMs, results.timings.searchMs, index.size, index.chunkCount, index.has('doc'));
  console.log(index.info.storage, index.info.chunkTokens, index.info.model, index.info.dtype, index.info.digest, index.info.documents);
  index.remove('doc');
  const bytes: Uint8Array = index.serialize();
  const again: SemanticIndex = SemanticIndex.deserialize(bytes, e);
  await again.save('name');
  const loaded: SemanticIndex | null = await SemanticIndex.load('name', e);
  await SemanticIndex.delete('name');
  loaded?.dispose();
  again.dispose();
  index.dispose();

  const cached: boolean = await isCached('sentence-transformers/all-MiniLM-L6-v2', { hubBase: 'http://127.0.0.1', cache: true });
  const cleared: boolean = await clearCache();
  console.log(cached, cleared);
  try {
    e.dispose();
    await e.embed(['after dispose']);
  } catch (err) {
    if (err instanceof WembedError) {
      const code: string = err.code;
      console.log(code, err.message);
    }
  }
}
