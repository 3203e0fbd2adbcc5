// One model in a worker: a module Web Worker in the browser, a worker_threads Worker in Node.
// The pool (pool.js) sends it { id, type, ... } messages and gets { id, value } or
// { id, error: { code, message, crashed } } back, plus { id, progress } during an embed.
// Messages are handled one at a time, in order, so a call never interleaves with another.
// No top-level await: Vite bundles workers as classic scripts by default.

import { WasmEmbedder, __testPanicNextEmbed } from '../pkg/wembed.js';
import { isNode, nodeModule } from './common.js';
import { ensureWasm, runTask, fromWasm, currentGeneration, wasmMemoryBytes } from './runtime.js';

let embedder = null;
let generation = -1;

function send(port, message, transfer) {
  message.wasmBytes = wasmMemoryBytes();
  port.postMessage(message, transfer ?? []);
}

async function handle(port, msg) {
  switch (msg.type) {
    case 'load': {
      await ensureWasm(msg.wasm);
      generation = currentGeneration();
      embedder = await runTask((wake) => WasmEmbedder.load(msg.files, msg.options, wake));
      // One short text through the model before the first call: a wasm engine starts a module
      // on its baseline compiler and optimizes the hot functions only once they have run, so
      // without this a worker's first calls ran at a fraction of its later speed.
      // A model that fails on this text fails the same way on the caller's first call, with
      // the caller's text in the message: only a crash of the instance ends the load here.
      try {
        await runTask((wake) => embedder.embed(['wembed warms up its kernels here.'], {}, null, wake));
      } catch (e) {
        if (generation !== currentGeneration()) throw e;
      }
      return embedder.info();
    }
    case 'embed': {
      if (!embedder || generation !== currentGeneration()) {
        throw Object.assign(new Error('this worker lost its model'), { code: 'INTERNAL' });
      }
      const onProgress = (done) => send(port, { id: msg.id, progress: done });
      return runTask((wake) => embedder.embed(msg.texts, msg.options, onProgress, wake));
    }
    case 'panicNextEmbed':
      __testPanicNextEmbed();
      return null;
    default:
      throw Object.assign(new Error(`unknown message ${String(msg.type)}`), { code: 'INTERNAL' });
  }
}

function serve(port) {
  let queue = Promise.resolve();
  return (msg) => {
    queue = queue.then(async () => {
      try {
        const value = await handle(port, msg);
        send(port, { id: msg.id, value }, value instanceof Float32Array ? [value.buffer] : []);
      } catch (e) {
        const err = fromWasm(e);
        // A trap replaced this worker's wasm instance: its model is gone, the pool replaces it.
        const crashed = generation !== currentGeneration();
        send(port, { id: msg.id, error: { code: err.code, message: err.message, crashed } });
      }
    });
  };
}

if (isNode) {
  nodeModule('worker_threads').then(({ parentPort }) => {
    const onMessage = serve(parentPort);
    parentPort.on('message', onMessage);
  });
} else {
  const onMessage = serve(self);
  self.onmessage = (e) => onMessage(e.data);
}
