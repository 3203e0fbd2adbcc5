// The wasm instance and the calls into it. The async calls (load, embed) come back from Rust
// as tasks that this module polls itself (src/wasm/task.rs says why), each poll inside a
// `try`: a panic traps the instance, the trap surfaces here as an exception, the call rejects
// with code INTERNAL and the panic's message, and the instance is replaced before the next
// call. Polls run as event-loop tasks (not microtasks), so a long embed lets the page paint.

import initWasm, { setPanicReporter, reinitAfterCrash } from '../pkg/wembed.js';
import { WembedError, wrap, isNode, nodeModule } from './common.js';

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

/** Loads the wasm module once: from `wasm` (a URL or bytes) if given, else from beside this file. */
export function ensureWasm(wasm) {
  if (!ready) {
    ready = (async () => {
      let source = wasm;
      if (!source) {
        // Vite and Node resolve this as is; with esbuild, serve pkg/wembed_bg.wasm and pass its
        // URL as the `wasm` option.
        const url = new URL('../pkg/wembed_bg.wasm', import.meta.url);
        source = isNode ? await (await nodeModule('fs/promises')).readFile(url) : url;
      }
      exports = await initWasm({ module_or_path: source });
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
export function runTask(start) {
  return new Promise((resolve, reject) => {
    let task;
    let queued = false;
    const fail = (e) => reject(fromWasm(e));
    const step = () => {
      queued = false;
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
    wake();
  });
}
