// The CPU path off the calling thread: a few workers (worker.js), each with its own wasm
// instance and its own copy of the model (a page that is not cross-origin isolated has no
// shared memory). One embed() call is cut into pieces of whole batches, longest texts first,
// and each worker takes the next piece when it is free; the rows come back in input order.
// A text's vector does not depend on the batch it ran in (batches are packed, not padded), so
// the result is the calling thread's, bit for bit (the tests check it on two models).

import { WembedError, isNode, nodeModule, abortedError } from './common.js';
import { packagedWasm } from './runtime.js';

const MAX_AUTO_WORKERS = 4;
const DEFAULT_BATCH = 32;
/**
 * Most workers that share one text's forward pass (src/split.rs): they trade rows once per
 * layer, each with every other, so more parts cost more messages for fewer rows each.
 */
const MAX_SPLIT = 4;

/** Logical cores of this machine (the browser may round or cap what it says). */
async function cores() {
  if (isNode) {
    const os = await nodeModule('os');
    return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  }
  return globalThis.navigator?.hardwareConcurrency ?? 2;
}

/** Bytes of memory the workers may take together: a share of what the machine has. */
async function memoryBudget() {
  if (isNode) {
    const os = await nodeModule('os');
    return os.freemem() / 2;
  }
  // navigator.deviceMemory (Chromium) is in GiB, rounded and capped at 8; a quarter of it.
  return ((globalThis.navigator?.deviceMemory ?? 4) * 1024 ** 3) / 4;
}

/**
 * How many copies of a model of `modelBytes` the memory budget holds, one a worker: a worker
 * holds the file bytes while it loads and the weights after, about twice the files.
 */
export async function copiesThatFit(modelBytes) {
  return Math.floor((await memoryBudget()) / Math.max(1, 2 * modelBytes));
}

/**
 * How many workers `workers` asks for: 'auto' is one per core (at most four), fewer when each
 * worker's copy of the model (`modelBytes`) would not fit the memory budget. Not one less for
 * the page: its thread only posts texts and receives vectors during an embed, and the OS
 * gives it its turns beside busy workers (the rAF test in workers.test.mjs checks that it
 * keeps painting); leaving a core idle cost half the throughput on a 2-core machine.
 */
export async function workerCount(workers, modelBytes) {
  if (workers === 'auto' || workers === undefined) {
    return Math.max(1, Math.min(MAX_AUTO_WORKERS, await cores(), await copiesThatFit(modelBytes)));
  }
  if (!Number.isInteger(workers) || workers < 0 || workers > 64) {
    throw new WembedError('INPUT', `workers ${String(workers)}: give 'auto', 0 (the calling thread) or a whole number up to 64`);
  }
  return workers;
}

/** The wasm option as something a worker can use: relative URLs resolved against the page. */
function wasmSource(wasm) {
  if (wasm === undefined || wasm === null) return undefined;
  if (wasm instanceof URL) return wasm.href;
  if (typeof wasm === 'string') {
    const base = globalThis.location?.href;
    return base ? new URL(wasm, base).href : wasm;
  }
  return wasm; // bytes or a WebAssembly.Module: both survive structured clone
}

/** Compiled modules by source ('package:<build>' for the package's own), so workers skip compiling. */
const compiled = new Map();

async function compile(source, simd) {
  if (source === undefined) {
    const { url } = packagedWasm(simd);
    if (isNode) return WebAssembly.compile(await (await nodeModule('fs/promises')).readFile(url));
    source = url.href;
  }
  if (typeof source !== 'string') return WebAssembly.compile(source);
  const response = await fetch(source);
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return WebAssembly.compile(await response.arrayBuffer());
}

/**
 * What the workers instantiate: the module compiled once on this thread (a WebAssembly.Module
 * crosses to a worker without being compiled again, which is most of a worker's start), or
 * the wasm option as given when compiling here fails (the worker then reports why).
 */
export async function wasmForWorker(wasm, simd) {
  const source = wasmSource(wasm);
  if (source instanceof WebAssembly.Module) return source;
  const key = source === undefined ? `package:${packagedWasm(simd).build}` : typeof source === 'string' ? source : null;
  try {
    if (key === null) return await compile(source);
    if (!compiled.has(key)) {
      const p = compile(source, simd);
      compiled.set(key, p);
      p.catch(() => compiled.delete(key));
    }
    return await compiled.get(key);
  } catch {
    return source;
  }
}

const workerError = (message) => new WembedError('INTERNAL', message);

/** Workers could not be started here: WASM_LOAD, marked so that workers 'auto' can fall back. */
function startError(why) {
  const e = new WembedError(
    'WASM_LOAD',
    `cannot start wembed's workers (${why}); serve src/worker.js and pass its URL as workerUrl, or load with workers: 0`,
  );
  e.workersDidNotStart = true;
  return e;
}

/**
 * The pieces of one embed call (arrays of text indices, at most `size` each) for `workers`
 * workers that each take the next piece when free. Characters stand in for tokens. Many pieces
 * (more than two per worker): longest first, cut in runs, so the last pieces are the short
 * ones and the workers finish together. Few: dealt longest first to the pieces in turn, back
 * and forth, so each holds its share of the long texts; cut in runs, 16 paragraphs and 16
 * sentences in one call went 16 paragraphs to one worker and 16 sentences to the other.
 */
export function cutPieces(lengths, size, workers) {
  const n = lengths.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => lengths[b] - lengths[a] || a - b);
  const count = Math.ceil(n / size);
  const pieces = [];
  if (count > 2 * workers) {
    for (let i = 0; i < n; i += size) pieces.push(order.slice(i, i + size));
    return pieces;
  }
  for (let p = 0; p < count; p++) pieces.push([]);
  order.forEach((i, k) => {
    const round = Math.floor(k / count);
    const at = k % count;
    pieces[round % 2 === 0 ? at : count - 1 - at].push(i);
  });
  return pieces;
}

/** One worker and the calls waiting on it. */
class Slot {
  #worker;
  #node;
  #pending = new Map();
  #next = 0;
  dead = false;
  wasmBytes = 0;
  /** This worker's number in its pool (what the others' ports to it are named by). */
  index = -1;

  constructor(worker, node) {
    this.#worker = worker;
    this.#node = node;
    const onMessage = (msg) => this.#message(msg);
    const onDeath = (why) => this.#die(why);
    if (node) {
      worker.on('message', onMessage);
      worker.on('error', (e) => onDeath(`a worker failed: ${e?.message ?? e}`));
      worker.on('exit', (code) => onDeath(`a worker exited (code ${code})`));
      worker.unref();
    } else {
      worker.onmessage = (e) => onMessage(e.data);
      worker.onerror = (e) => {
        e.preventDefault?.();
        onDeath(`a worker failed: ${e.message ?? 'script error (could its file be loaded?)'}`);
      };
      worker.onmessageerror = () => onDeath('a worker sent a message that could not be read');
    }
  }

  static async start(url) {
    if (isNode) {
      const { Worker } = await nodeModule('worker_threads');
      // Through a variable: bundlers would otherwise copy worker.js as a raw asset for a
      // branch the browser never takes.
      const file = './worker.js';
      // A worker inherits Node's flags, and refuses --input-type (node --input-type=module -e).
      const execArgv = process.execArgv.filter((a, i, all) => !a.startsWith('--input-type') && all[i - 1] !== '--input-type');
      return new Slot(new Worker(url ?? new URL(file, import.meta.url), { execArgv }), true);
    }
    const worker = url
      ? new Worker(url, { type: 'module' })
      : new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    return new Slot(worker, false);
  }

  /** Sends `msg` without waiting for an answer (a message the worker handles out of turn). */
  post(msg) {
    if (this.dead) return;
    try {
      this.#worker.postMessage(msg);
    } catch {
      // the worker is going; its pending calls fail on their own
    }
  }

  /** Sends `msg`; resolves with the worker's value, rejects with its error as a WembedError. */
  call(msg, onProgress, transfer = []) {
    if (this.dead) return Promise.reject(workerError('wembed: this worker has stopped'));
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, onProgress });
      // A call in flight keeps Node alive; an idle pool does not.
      if (this.#node && this.#pending.size === 1) this.#worker.ref();
      try {
        this.#worker.postMessage({ ...msg, id }, transfer);
      } catch (e) {
        this.#settle(id);
        reject(new WembedError('INPUT', `cannot send this call to a worker: ${e?.message ?? e}`, { cause: e }));
      }
    });
  }

  #settle(id) {
    const p = this.#pending.get(id);
    this.#pending.delete(id);
    if (this.#node && this.#pending.size === 0 && !this.dead) this.#worker.unref();
    return p;
  }

  #message(msg) {
    if (typeof msg?.wasmBytes === 'number') this.wasmBytes = msg.wasmBytes;
    if (msg?.progress !== undefined) {
      this.#pending.get(msg.id)?.onProgress?.(msg.progress);
      return;
    }
    const p = this.#settle(msg.id);
    if (!p) return;
    if (msg.error) {
      if (msg.error.crashed) this.#die(null);
      const e = new WembedError(msg.error.code, msg.error.message);
      if (msg.error.crashed) e.crashed = true;
      if (msg.error.induced) e.induced = true;
      p.reject(e);
    } else {
      p.resolve(msg.value);
    }
  }

  #die(why) {
    if (this.dead) return;
    this.dead = true;
    this.terminate();
    for (const [id, p] of [...this.#pending]) {
      this.#pending.delete(id);
      const e = workerError(`wembed: ${why}; load the model again if this keeps happening`);
      e.crashed = true;
      e.why = why;
      p.reject(e);
    }
  }

  terminate() {
    this.dead = true;
    try {
      this.#worker.terminate();
    } catch {
      // already gone
    }
  }
}

/**
 * Options as a worker can receive them. A function, a Symbol or any object is the wrong type
 * for every embed option, and the wasm module says so the same way for `{}`; sending `{}`
 * instead keeps its message where structured clone would fail on the original.
 */
export function sendableOptions(options) {
  const out = {};
  for (const [k, v] of Object.entries(options)) out[k] = v !== null && (typeof v === 'object' || typeof v === 'function' || typeof v === 'symbol') ? {} : v;
  return out;
}

/** Files as a worker can receive them: what is not a Uint8Array is refused by name either way. */
export function sendableFiles(files) {
  const out = {};
  for (const [k, v] of Object.entries(files)) out[k] = v instanceof Uint8Array ? v : 0;
  return out;
}

/** "text 3 ..." of a piece's error, renumbered to the caller's index. */
function renumber(message, piece) {
  return message.replace(/\btext (\d+)\b/, (m, i) => (piece[i] === undefined ? m : `text ${piece[i]}`));
}

/** Workers that each hold the model, and how one call is spread over them. */
export class WorkerPool {
  #slots;
  info;
  /** Whether a single text's forward pass is shared by the workers (the model can be split). */
  #split;
  #splitCalls = 0;
  /** Parts that traded rows in the last one-text call (1: it ran whole on one worker); for tests. */
  lastSplitParts = 0;

  constructor(slots, info, split) {
    this.#slots = slots;
    this.info = info;
    this.#split = split;
  }

  /**
   * Starts `count` workers and loads the model in each: `files` (name -> Uint8Array, copied to
   * each), `options` ({ device: 'cpu', dtype, origin }), `wasm` (see wasmForWorker), `url`
   * (the worker script, when the bundler needs it given).
   */
  static async start(count, load) {
    const slots = [];
    try {
      const infos = await Promise.all(
        Array.from({ length: count }, async () => {
          let slot;
          try {
            slot = await Slot.start(load.url);
          } catch (e) {
            throw startError(e?.message ?? String(e));
          }
          slots.push(slot);
          return WorkerPool.#loadIn(slot, load).catch((e) => {
            // A worker that died without a word (its script missing, out of memory) did not
            // start; a worker's own error (a bad file, a panic) is the model's.
            throw e.why ? startError(e.why) : e;
          });
        }),
      );
      const split = slots.length > 1 && infos.every((i) => i.canSplit);
      if (split) await WorkerPool.#connect(slots.slice(0, MAX_SPLIT));
      return new WorkerPool(slots, infos[0].info, split);
    } catch (e) {
      for (const s of slots) s.terminate();
      throw e;
    }
  }

  /** Gives each of `slots` a port to every other: the split embed's rows go worker to worker. */
  static async #connect(slots) {
    const ports = slots.map(() => ({}));
    slots.forEach((s, i) => (s.index = i));
    for (let a = 0; a < slots.length; a++) {
      for (let b = a + 1; b < slots.length; b++) {
        const channel = new MessageChannel();
        ports[a][b] = channel.port1;
        ports[b][a] = channel.port2;
      }
    }
    await Promise.all(slots.map((s, i) => s.call({ type: 'peers', me: i, ports: ports[i] }, null, Object.values(ports[i]))));
  }

  static #loadIn(slot, load) {
    return slot.call({ type: 'load', files: sendableFiles(load.files), options: load.options, wasm: load.wasm });
  }

  /** Workers alive now. */
  get size() {
    return this.#slots.filter((s) => !s.dead).length;
  }

  /** Workers that share a single text's forward pass now (1: it runs on one). */
  get queryWorkers() {
    const connected = this.#slots.filter((s) => !s.dead && s.index >= 0).length;
    return this.#split && connected > 1 ? connected : 1;
  }

  /** Bytes of wasm memory the workers last reported, together. */
  get wasmBytes() {
    return this.#slots.reduce((sum, s) => sum + s.wasmBytes, 0);
  }

  /**
   * Embeds `texts` (an array of strings) with `options` over the workers: one Float32Array of
   * texts.length * dim floats, in input order. `onProgress(done, total)` sums the workers'.
   * When `signal` aborts, no further piece is handed out; the call settles with ABORTED once
   * the pieces the workers hold are done (so the next call starts clean).
   */
  async embed(texts, options, onProgress, dim, signal = null) {
    // A worker that crashed is dropped, not replaced: the others carry on.
    this.#slots = this.#slots.filter((s) => !s.dead);
    const slots = this.#slots;
    if (slots.length === 0) throw workerError("wembed: every worker of this model crashed; load the model again");
    options = sendableOptions(options);
    const n = texts.length;
    if (n === 0) {
      // Still one call, so bad options are an error as on the calling thread.
      await slots[0].call({ type: 'embed', texts: [], options });
      return new Float32Array(0);
    }
    if (n === 1 && this.queryWorkers > 1) return this.#embedSplit(texts[0], options, onProgress);
    const batch = Number.isInteger(options.batchSize) && options.batchSize >= 1 ? options.batchSize : DEFAULT_BATCH;
    const size = Math.max(1, Math.min(batch, Math.ceil(n / slots.length)));
    const pieces = cutPieces(texts.map((t) => t.length), size, slots.length);

    const out = new Float32Array(n * dim);
    let next = 0;
    let completed = 0;
    const partial = new Map();
    let failure = null;
    const report = () => {
      if (!onProgress) return;
      let done = completed;
      for (const d of partial.values()) done += d;
      try {
        onProgress(done, n);
      } catch {
        // A throwing callback is the caller's problem, not a failed embed.
      }
    };
    const worker = async (slot) => {
      while (!failure && !slot.dead && !signal?.aborted && next < pieces.length) {
        const k = next++;
        const piece = pieces[k];
        try {
          const flat = await slot.call({ type: 'embed', texts: piece.map((i) => texts[i]), options }, (done) => {
            partial.set(k, done);
            report();
          });
          piece.forEach((i, row) => out.set(flat.subarray(row * dim, (row + 1) * dim), i * dim));
          partial.delete(k);
          completed += piece.length;
        } catch (e) {
          partial.delete(k);
          const err = e instanceof WembedError ? e : new WembedError('INTERNAL', String(e?.message ?? e));
          const renumbered = new WembedError(err.code, renumber(err.message, piece));
          // The first text's error wins, as on the calling thread; a crash wins over all.
          const first = Number(/\btext (\d+)\b/.exec(renumbered.message)?.[1] ?? Infinity);
          if (!failure || (err.crashed && !failure.crashed) || (!failure.crashed && first < failure.first)) {
            failure = { error: renumbered, first, crashed: !!err.crashed };
          }
        }
      }
    };
    // Every worker finishes what it has before the call settles: the next call starts clean.
    await Promise.all(slots.map(worker));
    if (failure) throw failure.error;
    if (signal?.aborted) throw abortedError('the embed call', signal);
    if (completed < n) throw workerError('wembed: the workers stopped before the call finished; load the model again');
    return out;
  }

  /**
   * One text on every connected worker together (src/split.rs): each runs its share of the
   * text's rows and they trade rows per layer, so a query uses every core. A part that fails
   * stops the others (they would wait for its rows); the call fails with that part's error.
   */
  async #embedSplit(text, options, onProgress) {
    const group = this.#slots.filter((s) => !s.dead && s.index >= 0);
    const ids = group.map((s) => s.index);
    const call = this.#splitCalls++;
    let failure = null;
    const parts = group.map((slot, part) =>
      slot.call({ type: 'split', call, group: ids, text, options }).catch((e) => {
        const err = e instanceof WembedError ? e : new WembedError('INTERNAL', String(e?.message ?? e));
        // A crash wins over all; a part's own error over one it got from another's failure.
        if (!failure || (err.crashed && !failure.crashed) || (failure.induced && !err.induced && !failure.crashed)) {
          failure = err;
        }
        const why = `worker ${part} of the split embed failed: ${err.message}`;
        for (const other of group) if (other !== slot) other.post({ type: 'abortSplit', call, why });
        return null;
      }),
    );
    const values = await Promise.all(parts);
    if (failure) throw failure;
    if (!(values[0]?.vector instanceof Float32Array)) throw workerError('wembed: the split embed returned no vector');
    this.lastSplitParts = values.filter((v) => v.trades > 0).length || 1;
    try {
      onProgress?.(1, 1);
    } catch {
      // A throwing callback is the caller's problem, not a failed embed.
    }
    return values[0].vector;
  }

  /** Test hook: the next embed panics inside worker `index` (every worker when undefined). */
  async panicNextEmbed(index) {
    const slots = this.#slots.filter((s) => !s.dead);
    await Promise.all(slots.filter((_, i) => index === undefined || i === index).map((s) => s.call({ type: 'panicNextEmbed' })));
  }

  terminate() {
    for (const s of this.#slots) s.terminate();
    this.#slots = [];
  }
}
