export type Device = 'auto' | 'webgpu' | 'cpu';
export type Dtype = 'f32' | 'f16' | 'q8' | 'q4';

export interface ProgressEvent {
  /** File name inside the model folder, e.g. "model.safetensors". */
  file: string;
  loaded: number;
  total: number;
  /** True when the file came from the cache. */
  cached: boolean;
}

export interface LoadOptions {
  device?: Device;
  dtype?: Dtype;
  onProgress?: (event: ProgressEvent) => void;
  /** Base URL of a Hugging Face-style hub: files at {hubBase}/{id}/resolve/{revision}/{file}. */
  hubBase?: string;
  revision?: string;
  /** Cache fetched files (Cache API) so later loads work offline. Default true. */
  cache?: boolean;
  fetch?: typeof fetch;
  /** Where wembed_bg.wasm is (URL or bytes), for bundlers that do not copy it (esbuild). */
  wasm?: string | URL | BufferSource;
}

export interface EmbedOptions {
  normalize?: boolean;
  batchSize?: number;
  prompt?: string;
  promptName?: string;
  /** Cut texts longer than the model's limit (default true); false makes them an error. */
  truncate?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export interface Matrix {
  data: Float32Array;
  dim: number;
  count: number;
}

export interface EmbedderInfo {
  device: 'webgpu' | 'cpu';
  adapter: string;
  deviceReason: string;
  dtype: Dtype;
  dim: number;
  maxTokens: number;
  model: string;
}

export type ModelSource = string | URL | Map<string, Uint8Array> | { files: Record<string, Uint8Array> };

export class WembedError extends Error {
  /** IO, BAD_FILE, BAD_WEIGHTS, UNSUPPORTED, INPUT, TOKENIZER, BACKEND, FETCH, WASM_LOAD, DISPOSED, INTERNAL */
  code: string;
}

export class Embedder {
  static load(source: ModelSource, options?: LoadOptions): Promise<Embedder>;
  readonly info: EmbedderInfo;
  embed(texts: string | string[], options?: EmbedOptions & { output?: 'arrays' }): Promise<Float32Array[]>;
  embed(texts: string | string[], options: EmbedOptions & { output: 'matrix' }): Promise<Matrix>;
  dispose(): void;
}

export function isCached(source: ModelSource, options?: Pick<LoadOptions, 'hubBase' | 'revision'>): Promise<boolean>;
export function clearCache(): Promise<boolean>;
