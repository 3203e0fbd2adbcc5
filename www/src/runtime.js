// The wasm instance and the calls into it. The async calls (load, embed) come back from Rust
// as tasks that this module polls itself (src/wasm/task.rs says why), each poll inside a
// `try`: a panic traps the instance, the trap surfaces here as an exception, the call rejects
// with code INTERNAL and the panic's message, and the instance is replaced before the next
// call. Polls run as event-loop tasks (not microtasks), so a long embed lets the page paint.

import initWasm, { setPanicReporter, reinitAfterCrash } from '../pkg/wembed.js';
import { WembedError, wrap, isNode, nodeModule, abortedError } from './common.js';

let ready = null;
let exports = null;
/** Bumped each time a crashed instance is replaced: objects of an older one are dead. */
let generation = 0;
let crashed = false;
let lastPanic = null;

function reportPanic(message) {
  // One line: Rust's panic message puts the location on a line of its own.
  lastPanic = String(message).replace(/\s*\n\s*/g, ' ');
}

/**
 * A 51-byte module whose one function computes with `i32x4.relaxed_dot_i8x16_i7x16_add_s`, the
 * relaxed SIMD instruction wembed's integer kernels use, with the operands as they use them (a
 * signed first side, a 7-bit second): `(func (result i32) (i32x4.extract_lane 0
 * (i32x4.relaxed_dot... (i8x16.splat -3) (i8x16.splat 5) (i32x4.splat 7))))`, 4 · (-3 · 5) + 7
 * = -53. Engines without relaxed SIMD reject it. Node 20's V8 behind
 * --experimental-wasm-relaxed-simd runs it and returns -120: its relaxed dot is wrong for a
 * negative first side, and the relaxed build's q8 vectors came out at cosine 0 there. Chromium
 * returns -53.
 */
const RELAXED_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 127, 3, 2, 1, 0, 7, 5, 1, 1, 102, 0, 0, 10, 22, 1, 20, 0,
  65, 125, 253, 15, 65, 5, 253, 15, 65, 7, 253, 17, 253, 147, 2, 253, 27, 0, 11,
]);

let relaxedChecked = null;

/** Whether the engine has relaxed SIMD and computes the probe's dot product right (once). */
export function relaxedSimdWorks() {
  if (relaxedChecked === null) {
    try {
      relaxedChecked =
        WebAssembly.validate(RELAXED_PROBE) &&
        new WebAssembly.Instance(new WebAssembly.Module(RELAXED_PROBE)).exports.f() === -53;
    } catch {
      // an engine that cannot even parse the probe has no relaxed SIMD
      relaxedChecked = false;
    }
  }
  return relaxedChecked;
}

/**
 * Which of the package's wasm builds to run: 'relaxed-simd' (pkg/wembed_relaxed_bg.wasm) when
 * `simd` is 'auto' (the default) or 'relaxed' and the engine runs relaxed SIMD right
 * ([`relaxedSimdWorks`]: Chromium; not Node 20, flag or not), else 'simd128'
 * (pkg/wembed_bg.wasm). Relaxed SIMD is the default where it works: it has a fused f32
 * multiply-add (`f32x4.relaxed_madd`) for the f32 matmuls, and for the integer ones a dot of
 * 16 int8 products whose speed depends on the machine, so the build races it against
 * SIMD128's at load (Kernel::plan_wasm in src/backend/cpu/qmatmul.rs). In headless Chromium
 * 156 on this project's x86 machine, all-MiniLM-L6-v2 on one worker, batch 32 (2026-12-07):
 * f32 176.2 sentences/s against SIMD128's 141.2, 8.4 paragraphs/s against 7.1. Both
 * URLs are written out for bundlers (Vite copies both); with esbuild, serve one and pass its
 * URL as the `wasm` option.
 */
export function packagedWasm(simd = 'auto') {
  return (simd === 'auto' || simd === 'relaxed') && relaxedSimdWorks()
    ? { build: 'relaxed-simd', url: new URL('../pkg/wembed_relaxed_bg.wasm', import.meta.url) }
    : { build: 'simd128', url: new URL('../pkg/wembed_bg.wasm', import.meta.url) };
}

/** Which wasm build this thread runs: 'relaxed-simd', 'simd128', or 'custom' (the `wasm` option). */
export let wasmBuild = null;

/**
 * Loads the wasm module once: from `wasm` (a URL or bytes) if given, else the package's build
 * that `simd` asks for (see packagedWasm). The first load on a thread decides.
 */
export function ensureWasm(wasm, simd) {
  if (!ready) {
    ready = (async () => {
      let source = wasm;
      let build = 'custom';
      if (!source) {
        const packaged = packagedWasm(simd);
        build = packaged.build;
        source = isNode ? await (await nodeModule('fs/promises')).readFile(packaged.url) : packaged.url;
      }
      exports = await initWasm({ module_or_path: source });
      wasmBuild = build;
      setPanicReporter(reportPanic);
    })().catch((e) => {
      ready = null;
      throw new WembedError('WASM_LOAD', `cannot load wembed's wasm module: ${e.message}`, { cause: e });
    });
  }
  return ready.then(() => {
    if (crashed) {
      // The first call into the instance after reinitAfterCrash() builds a fresh one.
      crashed = false;
      lastPanic = null;
      setPanicReporter(reportPanic);
    }
  });
}

/** Which instance is live now; an object made under another one cannot be used. */
export function currentGeneration() {
  return crashed ? -1 : generation;
}

/** Bytes of wasm linear memory now (it only grows). */
export function wasmMemoryBytes() {
  return exports ? exports.memory.buffer.byteLength : 0;
}

/**
 * `e` as a WembedError. A trap (WebAssembly.RuntimeError: a panic, a stack overflow, memory
 * exhausted) leaves the instance unusable: it is marked for replacement and the error says so.
 */
export function fromWasm(e) {
  if (e instanceof WebAssembly.RuntimeError) {
    if (!crashed) {
      crashed = true;
      generation += 1;
      try {
        reinitAfterCrash();
      } catch {
        // nothing more to do: the next ensureWasm() reports what fails
      }
    }
    const why = lastPanic ? `panicked: ${lastPanic}` : `failed: ${e.message}`;
    return new WembedError(
      'INTERNAL',
      `wembed ${why}. This is a bug in wembed (please report it); the model was unloaded, load it again`,
      { cause: e },
    );
  }
  return wrap(e);
}

const schedule = isNode || typeof MessageChannel === 'undefined'
  ? (f) => (typeof setImmediate === 'function' ? setImmediate(f) : setTimeout(f, 0))
  : (() => {
      // A message is a task without setTimeout's 4 ms clamp.
      const channel = new MessageChannel();
      const queue = [];
      channel.port1.onmessage = () => queue.shift()?.();
      return (f) => {
        queue.push(f);
        channel.port2.postMessage(0);
      };
    })();

/**
 * Runs the task that `start(wake)` returns (a WasmTask) to completion: its value, or its error
 * as a WembedError. `start` runs now, so what it reads is read before this returns.
 */
export function runTask(start, signal = null) {
  return new Promise((resolve, reject) => {
    let task;
    let queued = false;
    const settle = () => signal?.removeEventListener('abort', wake);
    const fail = (e) => {
      settle();
      reject(fromWasm(e));
    };
    const step = () => {
      queued = false;
      // Aborted: the task is dropped where it waits (between waves of batches, or for a GPU
      // read-back whose buffer then goes unused), so nothing it holds outlives the call.
      if (signal?.aborted) {
        task.free();
        settle();
        reject(abortedError('the embed call', signal));
        return;
      }
      let done;
      try {
        done = task.poll();
      } catch (e) {
        if (!(e instanceof WebAssembly.RuntimeError)) task.free();
        fail(e);
        return;
      }
      if (done) {
        const value = task.result();
        task.free();
        settle();
        resolve(value);
      }
    };
    const wake = () => {
      if (!queued) {
        queued = true;
        schedule(step);
      }
    };
    try {
      task = start(wake);
    } catch (e) {
      fail(e);
      return;
    }
    signal?.addEventListener('abort', wake, { once: true });
    wake();
  });
}
