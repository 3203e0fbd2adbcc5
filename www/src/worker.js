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

// A single text embedded by several workers together (pool.js, src/split.rs): the pool gives
// each worker ports to the others once ('peers'); per layer the Rust side calls exchange()
// with this worker's rows, which go straight to the other parts, and waits for theirs.
let me = -1;
const peers = new Map(); // worker index -> MessagePort
const inbox = new Map(); // `${call}:${step}` -> Map(part -> Float32Array)
const aborted = new Map(); // call -> why
let split = null; // { call, group, part, step, waiting }

function onPeer(m) {
  if (m.abort !== undefined) {
    abortSplit(m.call, m.abort);
    return;
  }
  const key = `${m.call}:${m.step}`;
  if (!inbox.has(key)) inbox.set(key, new Map());
  inbox.get(key).set(m.part, m.rows);
  deliver();
}

/** Settles the exchange waiting in this worker, if it can be. */
function deliver() {
  const w = split?.waiting;
  if (!w) return;
  const why = aborted.get(split.call);
  if (why !== undefined) {
    split.waiting = null;
    w.reject(Object.assign(new Error(why), { code: 'INTERNAL' }));
    return;
  }
  const got = inbox.get(w.key);
  if ((got?.size ?? 0) < w.parts - 1) return;
  inbox.delete(w.key);
  split.waiting = null;
  w.resolve(Array.from({ length: w.parts }, (_, p) => (p === split.part ? w.rows : got.get(p))));
}

function abortSplit(call, why) {
  aborted.set(call, why);
  if (split?.call === call) deliver();
}

/** What the Rust side calls per layer: sends `rows` to parts 0..parts, resolves with all parts' rows. */
function exchange(rows, parts) {
  const { call, group, part } = split;
  const step = split.step++;
  for (let p = 0; p < parts; p++) {
    if (p !== part) peers.get(group[p]).postMessage({ call, step, part, rows });
  }
  return new Promise((resolve, reject) => {
    split.waiting = { key: `${call}:${step}`, parts, rows, resolve, reject };
    deliver();
  });
}

async function embedSplit(msg) {
  const part = msg.group.indexOf(me);
  // What is left of earlier calls (an aborted one's rows) goes; a faster peer's rows of this
  // call may already be here.
  for (const key of inbox.keys()) if (Number(key.split(':')[0]) < msg.call) inbox.delete(key);
  for (const call of aborted.keys()) if (call < msg.call) aborted.delete(call);
  split = { call: msg.call, group: msg.group, part, step: 0, waiting: null };
  try {
    const vector = await runTask((wake) => embedder.embedSplit(msg.text, msg.options, part, msg.group.length, exchange, wake));
    // Trades made: 0 where the text ran whole (too short to cut, or not this part's).
    return { vector, trades: split.step };
  } catch (e) {
    // The others may be waiting on this part's rows: they stop too.
    const induced = aborted.has(msg.call);
    const why = `worker ${part} of the split embed failed: ${e?.message ?? e}`;
    for (const id of msg.group) if (id !== me) peers.get(id)?.postMessage({ call: msg.call, abort: why });
    if (induced && e && typeof e === 'object') e.induced = true;
    throw e;
  } finally {
    split = null;
  }
}

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
      return { info: embedder.info(), canSplit: embedder.canSplit() };
    }
    case 'peers': {
      me = msg.me;
      for (const [id, port] of Object.entries(msg.ports)) {
        peers.set(Number(id), port);
        if (isNode) port.on('message', onPeer);
        else port.onmessage = (e) => onPeer(e.data);
      }
      return null;
    }
    case 'split': {
      if (!embedder || generation !== currentGeneration()) {
        throw Object.assign(new Error('this worker lost its model'), { code: 'INTERNAL' });
      }
      return embedSplit(msg);
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
    // Out of turn: the split call it stops is the one the queue is waiting on.
    if (msg?.type === 'abortSplit') {
      abortSplit(msg.call, msg.why);
      return;
    }
    queue = queue.then(async () => {
      try {
        const value = await handle(port, msg);
        send(port, { id: msg.id, value }, value instanceof Float32Array ? [value.buffer] : []);
      } catch (e) {
        const err = fromWasm(e);
        // A trap replaced this worker's wasm instance: its model is gone, the pool replaces it.
        const crashed = generation !== currentGeneration();
        // Induced: a split embed that failed because another part did (pool.js reports that one).
        const induced = !!e?.induced;
        send(port, { id: msg.id, error: { code: err.code, message: err.message, crashed, induced } });
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
