/**
 * The client of the legacy upload API, for the existing frontend. The server serves this module
 * (built from web/lib/chunked-upload.ts) as an ES module at `/lib/chunked-upload.js`:
 *
 * ```ts
 * import { setAuthToken, uploadFileInChunks, pollBatchProgress } from '/lib/chunked-upload.js'
 *
 * setAuthToken(accessToken)                  // once, after POST /api/auth/login
 * const batchId = await uploadFileInChunks(file, 'zip_with_qr', null, (p) => {
 *   console.log(`${p.percentage}% (chunk ${p.currentChunk}/${p.chunksTotal})`)
 * })
 * const final = await pollBatchProgress(batchId, (p) => console.log(p.progress_percentage))
 * ```
 *
 * - A file of at most 100 MiB (`DIRECT_UPLOAD_LIMIT`) goes in one request,
 *   `POST /api/batches/upload` (multipart `file`, `upload_type`, `task_id`).
 * - A larger one goes through `POST /api/batches/upload-chunk` in 50 MiB chunks (`CHUNK_SIZE`),
 *   one after the other. Chunk 0's answer gives the `upload_id` the other chunks carry, and the
 *   final chunk's answer gives the `batch_id`.
 * - A chunk that fails for a network error, a timeout, a 408, a 429 or a 5xx is sent again,
 *   at most 3 times, after 1 s, 2 s and 4 s. The server stores a retried chunk once.
 * - Any other 4xx stops the upload. The promise then rejects with an `UploadError` whose
 *   `message` is the server's `detail` (e.g. `Invalid task_id '123': it must be exactly 8 digits`)
 *   and whose `status` is the HTTP status.
 *
 * **The bearer token** comes from, in order:
 * 1. `options.token`, the optional last argument of `uploadFileInChunks` and `pollBatchProgress`;
 * 2. the token set with `setAuthToken(token)`;
 * 3. the token the omr-tus web page keeps in `sessionStorage` (`omr-tus.token`), so a page served
 *    by omr-tus needs no set-up at all.
 *
 * **The server** is the page's origin unless `options.baseUrl` or `setBaseUrl(url)` names another
 * one, e.g. `https://omr.example.org`. That server must then allow the page's origin in
 * `OMR_TUS_CORS_ORIGINS`.
 *
 * Both functions take an `AbortSignal` as `options.signal`.
 */

export type UploadType = 'zip_with_qr' | 'zip_no_qr' | 'images'

/** What `onProgress` receives while a file is uploaded. `currentChunk` counts from 1. */
export interface ChunkProgress {
  /** 0–100, with two decimals, over the whole file */
  percentage: number
  /** The chunk being sent, 1-based (1 for a direct upload) */
  currentChunk: number
  /** How many chunks the file has (1 for a direct upload) */
  chunksTotal: number
  bytesUploaded: number
  bytesTotal: number
}

/** The answer of `GET /api/batches/{id}/progress`. */
export interface BatchProgress {
  batch_id: string
  status: 'uploaded' | 'processing' | 'completed' | 'failed'
  total_sheets: number
  processed_sheets: number
  failed_sheets: number
  progress_percentage: number
}

export interface ClientOptions {
  /** Bearer token for this call (else `setAuthToken`'s, else the web page's session). */
  token?: string | null
  /** Server origin, e.g. `https://omr.example.org` (else `setBaseUrl`'s, else the page's origin). */
  baseUrl?: string
  /** Cancels the upload or the polling; the promise then rejects with an `AbortError`. */
  signal?: AbortSignal
}

export interface UploadOptions extends ClientOptions {
  /** Bytes per chunk (default 50 MiB; the server accepts at most 100 MiB). */
  chunkSize?: number
  /** Files up to this size go in one request to /api/batches/upload (default 100 MiB). */
  directUploadLimit?: number
  /** Retries of one failed chunk (default 3). */
  retries?: number
  /** First retry delay in ms, doubled at each retry (default 1000). */
  retryDelay?: number
}

export interface PollOptions extends ClientOptions {
  /** Milliseconds between two requests (default 1000). */
  interval?: number
}

export const CHUNK_SIZE = 50 * 1024 * 1024
export const DIRECT_UPLOAD_LIMIT = 100 * 1024 * 1024
export const TOKEN_STORAGE_KEY = 'omr-tus.token'

/** An upload or poll the server refused, or that failed after its retries. */
export class UploadError extends Error {
  /** The HTTP status, 0 for a network error. */
  readonly status: number
  /** The server's `detail`, if it sent one. */
  readonly detail: string | null
  constructor (message: string, status: number, detail: string | null = null) {
    super(message)
    this.name = 'UploadError'
    this.status = status
    this.detail = detail
  }
}

let authToken: string | null = null
let baseUrl = ''

/** Sets the bearer token every later call sends (null: back to the web page's session token). */
export function setAuthToken (token: string | null): void {
  authToken = token
}

/** Sets the server the calls go to, e.g. `https://omr.example.org` ('' : the page's origin). */
export function setBaseUrl (url: string): void {
  baseUrl = url.replace(/\/+$/, '')
}

function tokenFor (options: ClientOptions): string | null {
  if (options.token) return options.token
  if (authToken) return authToken
  try {
    return globalThis.sessionStorage?.getItem(TOKEN_STORAGE_KEY) ?? null
  } catch {
    return null
  }
}

function urlFor (options: ClientOptions, path: string): string {
  return (options.baseUrl !== undefined ? options.baseUrl.replace(/\/+$/, '') : baseUrl) + path
}

function abortError (): DOMException {
  return new DOMException('The upload was aborted', 'AbortError')
}

function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) { reject(abortError()); return }
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clearTimeout(timer); reject(abortError()) }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

interface Answer { status: number, body: any, text: string }

/** One multipart POST with upload progress (fetch cannot report it, XMLHttpRequest can). */
function post (url: string, form: FormData, token: string | null, signal: AbortSignal | undefined,
  onUploadProgress: (loaded: number) => void): Promise<Answer> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) { reject(abortError()); return }
    const xhr = new XMLHttpRequest()
    xhr.open('POST', url)
    if (token) xhr.setRequestHeader('Authorization', `Bearer ${token}`)
    xhr.setRequestHeader('Accept', 'application/json')
    xhr.upload.onprogress = (event) => onUploadProgress(event.loaded)
    const onAbort = (): void => xhr.abort()
    signal?.addEventListener('abort', onAbort, { once: true })
    const done = (): void => signal?.removeEventListener('abort', onAbort)
    xhr.onload = () => {
      done()
      let body: any = null
      try { body = xhr.responseText ? JSON.parse(xhr.responseText) : null } catch { body = null }
      resolve({ status: xhr.status, body, text: xhr.responseText })
    }
    xhr.onerror = () => { done(); resolve({ status: 0, body: null, text: 'network error' }) }
    xhr.ontimeout = () => { done(); resolve({ status: 0, body: null, text: 'timeout' }) }
    xhr.onabort = () => { done(); reject(abortError()) }
    xhr.send(form)
  })
}

function detailOf (answer: Answer): string | null {
  const detail = answer.body?.detail
  if (typeof detail === 'string') return detail
  if (detail !== undefined && detail !== null) return JSON.stringify(detail)
  return answer.text ? answer.text.trim().slice(0, 500) || null : null
}

function retryable (status: number): boolean {
  return status === 0 || status === 408 || status === 429 || status >= 500
}

function refused (answer: Answer, what: string): UploadError {
  const detail = detailOf(answer)
  if (answer.status === 0) return new UploadError(`${what} failed: ${answer.text}`, 0)
  return new UploadError(detail ?? `${what} failed with HTTP ${answer.status}`, answer.status, detail)
}

/** Sends one request, again after 1 s, 2 s, 4 s... while it fails in a retryable way. */
async function withRetries (send: () => Promise<Answer>, what: string, retries: number, delay: number,
  signal?: AbortSignal): Promise<Answer> {
  for (let attempt = 0; ; attempt++) {
    const answer = await send()
    if (answer.status >= 200 && answer.status < 300) return answer
    if (!retryable(answer.status) || attempt >= retries) throw refused(answer, what)
    await sleep(delay * 2 ** attempt, signal)
  }
}

function percent (done: number, total: number): number {
  return total > 0 ? Math.min(100, Math.round((10000 * done) / total) / 100) : 100
}

/**
 * Uploads `file` and resolves with the id of the batch it became.
 *
 * @param file the File (or Blob; its name is then `upload.bin`)
 * @param uploadType `zip_with_qr`, `zip_no_qr` or `images`
 * @param taskId the 8-digit task id, required for `zip_no_qr` and `images` (null/'' otherwise)
 * @param onProgress called as bytes leave: `{percentage, currentChunk, chunksTotal, ...}`
 * @param options `{token, baseUrl, signal, chunkSize, directUploadLimit, retries, retryDelay}`
 */
export async function uploadFileInChunks (file: File | Blob, uploadType: UploadType | string,
  taskId?: string | null, onProgress?: (progress: ChunkProgress) => void,
  options: UploadOptions = {}): Promise<string> {
  const token = tokenFor(options)
  const { signal } = options
  const chunkSize = options.chunkSize ?? CHUNK_SIZE
  const directLimit = options.directUploadLimit ?? DIRECT_UPLOAD_LIMIT
  const retries = options.retries ?? 3
  const retryDelay = options.retryDelay ?? 1000
  const filename = (file as File).name || 'upload.bin'
  const total = file.size
  const report = (bytes: number, currentChunk: number, chunksTotal: number): void => {
    onProgress?.({ percentage: percent(bytes, total), currentChunk, chunksTotal, bytesUploaded: bytes, bytesTotal: total })
  }

  if (total <= directLimit) {
    report(0, 1, 1)
    const answer = await withRetries(() => {
      const form = new FormData()
      form.append('upload_type', uploadType)
      if (taskId) form.append('task_id', taskId)
      form.append('file', file, filename)  // last: the server reads the fields first
      return post(urlFor(options, '/api/batches/upload'), form, token, signal,
        (loaded) => report(Math.min(loaded, total), 1, 1))
    }, 'Upload', retries, retryDelay, signal)
    if (!answer.body?.batch_id) throw new UploadError('The server answered without a batch_id', answer.status)
    report(total, 1, 1)
    return answer.body.batch_id as string
  }

  const chunks = Math.ceil(total / chunkSize)
  let uploadId: string | null = null
  for (let index = 0; index < chunks; index++) {
    const start = index * chunkSize
    const end = Math.min(total, start + chunkSize)
    const blob = file.slice(start, end)
    report(start, index + 1, chunks)
    const answer: Answer = await withRetries(() => {
      const form = new FormData()
      form.append('chunk_index', String(index))
      form.append('total_chunks', String(chunks))
      form.append('filename', filename)
      form.append('upload_type', uploadType)
      if (taskId) form.append('task_id', taskId)
      if (uploadId) form.append('upload_id', uploadId)
      form.append('is_final_chunk', index === chunks - 1 ? 'true' : 'false')
      form.append('chunk', blob, filename)  // after the fields that say where it goes
      return post(urlFor(options, '/api/batches/upload-chunk'), form, token, signal,
        (loaded) => report(start + Math.min(loaded, end - start), index + 1, chunks))
    }, `Chunk ${index + 1}/${chunks}`, retries, retryDelay, signal)
    if (index === 0) {
      uploadId = answer.body?.upload_id ?? null
      if (!uploadId) throw new UploadError('The server answered chunk 1 without an upload_id', answer.status)
    }
    if (index === chunks - 1) {
      report(total, chunks, chunks)
      if (!answer.body?.batch_id) throw new UploadError('The server answered the final chunk without a batch_id', answer.status)
      return answer.body.batch_id as string
    }
  }
  throw new UploadError('unreachable: no chunks were sent', 0)
}

/**
 * Polls `GET /api/batches/{batchId}/progress` every second until the batch is `completed` or
 * `failed`, calling `onProgress` with each answer; resolves with the last one. Network errors and
 * 5xx answers are retried; a 4xx (e.g. 404 for a batch that is not yours) rejects.
 */
export async function pollBatchProgress (batchId: string, onProgress?: (progress: BatchProgress) => void,
  options: PollOptions = {}): Promise<BatchProgress> {
  const interval = options.interval ?? 1000
  const { signal } = options
  const url = urlFor(options, `/api/batches/${encodeURIComponent(batchId)}/progress`)
  let failures = 0
  for (;;) {
    if (signal?.aborted) throw abortError()
    const token = tokenFor(options)
    let answer: Answer
    try {
      const response = await fetch(url, {
        headers: { Accept: 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
        signal,
      })
      const text = await response.text()
      let body: any = null
      try { body = text ? JSON.parse(text) : null } catch { body = null }
      answer = { status: response.status, body, text }
    } catch (error) {
      if ((error as Error)?.name === 'AbortError') throw error
      answer = { status: 0, body: null, text: String(error) }
    }
    if (answer.status === 200 && answer.body) {
      failures = 0
      const progress = answer.body as BatchProgress
      onProgress?.(progress)
      if (progress.status === 'completed' || progress.status === 'failed') return progress
    } else if (!retryable(answer.status) || ++failures > 30) {
      throw refused(answer, 'Progress request')
    }
    await sleep(interval, signal)
  }
}
