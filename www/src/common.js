// Shared by the package's modules: the error type and the Node check.

export const isNode = typeof process !== 'undefined' && !!(process.versions && process.versions.node) && typeof window === 'undefined';

// Node built-ins, imported through a variable so that browser bundlers (Vite, esbuild) leave
// them alone instead of failing to resolve them.
export const nodeModule = (name) => import(/* @vite-ignore */ `node:${name}`);

/** An error from wembed, with a stable `code` to branch on. */
export class WembedError extends Error {
  constructor(code, message, options) {
    super(message, options);
    this.name = 'WembedError';
    this.code = code;
  }
}

/** Any error thrown across the wasm boundary, as a WembedError. */
export function wrap(err) {
  if (err instanceof WembedError) return err;
  if (err && typeof err.code === 'string') return new WembedError(err.code, err.message, { cause: err });
  if (err instanceof WebAssembly.RuntimeError) {
    return new WembedError('INTERNAL', `wembed's wasm module failed (${err.message}); load the model again`, { cause: err });
  }
  return new WembedError('INTERNAL', String(err && err.message ? err.message : err), { cause: err });
}


/** The error of a call whose AbortSignal fired: code ABORTED, the signal's reason as cause. */
export function abortedError(what, signal) {
  return new WembedError('ABORTED', `${what} was aborted`, { cause: signal?.reason });
}

/** `signal` checked to be an AbortSignal (or absent); INPUT otherwise. */
export function checkSignal(signal) {
  if (signal != null && !(typeof signal.aborted === 'boolean' && typeof signal.addEventListener === 'function')) {
    throw new WembedError('INPUT', 'option `signal` must be an AbortSignal');
  }
  return signal ?? null;
}
