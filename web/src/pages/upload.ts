// #/upload: upload type and task id, and Uppy's Dashboard sending files over tus to /files/.
//
// - 50 MiB PATCHes (under the CDN's 100 MB cap), retried with backoff.
// - A file of more than one chunk goes as up to PARALLEL_PARTS partial uploads side by side,
//   joined by a final upload (tus concatenation): one stream of PATCHes leaves the browser's
//   upload rate well under what it reaches with four (bench/clients.py, BENCHMARKS.md).
// - Resumable across reloads: Uppy's tus fingerprint (`tus-<file id>-<endpoint>`, the file id
//   made of name, type, size and mtime) keys the upload URL (the partial uploads' URLs) in
//   localStorage, so adding the same file again after a reload HEADs them and continues each
//   from the server's Upload-Offset.
// - A 4xx from the server (a malformed task id at creation, a 413 past the user's quota, ...)
//   is shown with the server's own plain-text message, in a banner and on the file.
// - A user with a quota sees "x of y used" under the form (GET /api/me), again after uploads.
// - The response that completes an upload carries `Batch-Id`: it becomes a link to the batch,
//   with its processing progress.
// The Uppy instance outlives the page: leaving #/upload does not stop an upload.
import Uppy, { type Meta } from '@uppy/core'
import Dashboard from '@uppy/dashboard'
import Tus, { type TusBody } from '@uppy/tus'

import { getJson, refreshUser, SESSION_EXPIRED, signOut, token, type BatchList, type Progress } from '../api'
import { isFinal, watchProgress } from '../progress'
import { banner, badge, formatBytes, h, progressBar, setProgress } from '../ui'

export const CHUNK_SIZE = 50 * 1024 * 1024
export const PARALLEL_PARTS = 4
export const RETRY_DELAYS = [0, 1000, 3000, 5000, 10000, 20000, 30000]
const RECENT_KEY = 'omr-tus.recent-uploads'
const TASK_ID = /^\d{8}$/

type UploadType = 'zip_with_qr' | 'zip_no_qr' | 'images'
interface UploadMeta extends Meta { filename?: string, filetype?: string, upload_type?: UploadType, task_id?: string }
interface Recent { name: string, size: number, batchId: string }

const TYPES: { value: UploadType, title: string, text: string }[] = [
  { value: 'zip_with_qr', title: 'ZIP with QR codes', text: 'Each sheet carries its QR code: the task is read from it.' },
  { value: 'zip_no_qr', title: 'ZIP without QR codes', text: 'All sheets belong to one task; student ids come from the file names.' },
  { value: 'images', title: 'Images, TIFF or PDF', text: 'One file of one task: JPEG, PNG, every TIFF page, every PDF page.' },
]

let state: { element: HTMLElement, uppy: Uppy<UploadMeta, TusBody>, stops: (() => void)[] } | null = null
let activityListener: ((text: string | null) => void) | null = null

/** Tells the header how the uploads are going while the user is on another page. */
export function onUploadActivity (listener: (text: string | null) => void): void {
  activityListener = listener
}

export function uploadPage (): HTMLElement {
  if (!state) state = create()
  return state.element
}

/** On sign-out: stops every upload (they stay resumable) and forgets the page. */
export function disposeUploads (): void {
  if (!state) return
  for (const stop of state.stops) stop()
  state.uppy.destroy()
  state.element.remove()
  state = null
  sessionStorage.removeItem(RECENT_KEY)
  activityListener?.(null)
}

function create (): NonNullable<typeof state> {
  const stops: (() => void)[] = []
  const messages = h('div', { class: 'messages', id: 'upload-messages' })
  const typeInputs = TYPES.map((type, i) => h('input', {
    type: 'radio', name: 'upload_type', value: type.value, id: `type-${type.value}`, checked: i === 0,
  }))
  const taskId = h('input', {
    id: 'task-id', name: 'task_id', type: 'text', inputmode: 'numeric', autocomplete: 'off',
    maxlength: 8, placeholder: 'e.g. 11600111', pattern: '\\d{8}', 'aria-describedby': 'task-id-help',
  })
  const taskHelp = h('small', { id: 'task-id-help', class: 'help' })
  const taskLabel = h('span', { class: 'label-extra' })
  const quotaNote = h('p', { class: 'quota-note muted', id: 'quota-note', hidden: true })
  const dashboard = h('div', { id: 'dashboard', class: 'dashboard' })
  const recentList = h('ul', { class: 'recent-list' })
  const recentCard = h('section', { class: 'card recent', hidden: true },
    h('h2', null, 'Uploaded in this session'), recentList)

  const uploadType = (): UploadType => (typeInputs.find((input) => input.checked)?.value ?? 'zip_with_qr') as UploadType
  const needsTask = (): boolean => uploadType() !== 'zip_with_qr'

  const uppy = new Uppy<UploadMeta, TusBody>({
    id: 'omr-upload',  // part of every file id, hence of the tus fingerprint: keep it stable
    autoProceed: false,
    restrictions: { allowedFileTypes: ['.zip', '.pdf', '.tif', '.tiff', '.jpg', '.jpeg', '.png'] },
    onBeforeUpload: (files) => {
      const problem = formProblem()
      if (problem) {
        messages.replaceChildren(banner('error', problem, 'Check the form'))
        taskId.focus()
        return false
      }
      return files
    },
  })
  uppy.use(Dashboard<UploadMeta, TusBody>, {
    inline: true, target: dashboard, width: '100%', height: 380, theme: 'light',
    proudlyDisplayPoweredByUppy: false, showRemoveButtonAfterComplete: true,
    fileManagerSelectionType: 'files',
    note: 'ZIP, PDF, TIFF, JPEG or PNG · sent in 50 MiB pieces, four streams at a time · an interrupted upload resumes when you add the same file again',
  })
  // Parallel parts through tus-js-client's own `parallelUploads` (its partial uploads, then a
  // final upload that concatenates them), which @uppy/tus passes through per file (file.tus):
  // Uppy keeps its Dashboard, queue, retries and fingerprint, and tus-js-client stores the
  // parts' URLs under that fingerprint, so a reload resumes every part. The final upload
  // carries the metadata and its creation completes the upload (Batch-Id); the parts carry
  // upload_type and task_id too (metadataForPartialUploads), so the server refuses a bad task
  // before the first byte rather than after the last.
  uppy.use(Tus<UploadMeta, TusBody>, {
    endpoint: new URL('/files/', location.href).href,
    chunkSize: CHUNK_SIZE,
    retryDelays: RETRY_DELAYS,
    limit: 2,
    removeFingerprintOnSuccess: true,  // the same file uploaded again later is a new upload
    allowedMetaFields: ['filename', 'filetype', 'upload_type'],
    headers: () => ({ Authorization: `Bearer ${token() ?? ''}` }),
    onShouldRetry: (error, _attempt, _options, next) => {
      const status = error?.originalResponse?.getStatus?.()
      if (status === 401) return false
      const retry = next(error)
      if (!retry && status !== undefined && status >= 400 && status < 500) {
        const text = serverText(error)
        if (text) error.message = text  // what Uppy shows on the file and in its toast
      }
      return retry
    },
  })

  const formProblem = (): string | null => {
    const value = taskId.value.trim()
    if (needsTask() && !value) return `A task id is required for “${TYPES.find((t) => t.value === uploadType())?.title}” uploads.`
    if (needsTask() && unknownTasks.has(value)) return unknownText(value)
    return null
  }

  // Sheets without a QR code are read with the task of the upload: a task that is not
  // registered is named before the first byte is sent (the server refuses it too).
  const unknownTasks = new Set<string>()
  const taskNote = h('div', { class: 'task-note', id: 'task-note', role: 'status', hidden: true })
  let checking = 0
  const unknownText = (value: string): string =>
    `Task ${value} is not registered: check the id, or ask an admin to register the task first.`
  const checkTask = async (): Promise<void> => {
    const value = taskId.value.trim()
    const ticket = ++checking
    taskNote.hidden = !(needsTask() && unknownTasks.has(value))
    if (!needsTask() || !TASK_ID.test(value)) return
    try {
      const answer = await getJson<{ registered: boolean }>(`/api/tasks/${value}/registered`)
      if (answer.registered) unknownTasks.delete(value)
      else unknownTasks.add(value)
    } catch { return }  // the server checks again when the upload is created
    if (ticket !== checking) return
    taskNote.textContent = unknownText(value)
    taskNote.hidden = !unknownTasks.has(value)
    taskId.classList.toggle('looks-wrong', unknownTasks.has(value))
  }

  // The form's values are the files' metadata right away, so a retry after a fix sends them too.
  const syncMeta = (): void => {
    const value = taskId.value.trim()
    uppy.setMeta({ upload_type: uploadType(), task_id: value })
    uppy.getPlugin('Tus')?.setOptions({
      allowedMetaFields: value ? ['filename', 'filetype', 'upload_type', 'task_id'] : ['filename', 'filetype', 'upload_type'],
      metadataForPartialUploads: value ? { upload_type: uploadType(), task_id: value } : { upload_type: uploadType() },
    })
    const required = needsTask()
    taskId.required = required
    taskLabel.textContent = required ? 'required' : 'optional'
    taskLabel.className = `label-extra ${required ? 'required' : ''}`
    taskHelp.textContent = required
      ? 'The 8-digit id of the exam these sheets belong to.'
      : 'Optional: the QR code on each sheet names its task.'
    taskId.classList.toggle('looks-wrong', value !== '' && !TASK_ID.test(value))
    void checkTask()
  }
  for (const input of typeInputs) input.addEventListener('change', syncMeta)
  taskId.addEventListener('input', syncMeta)
  syncMeta()

  // Parts side by side only where the server can join them (a store on S3 cannot): its
  // Tus-Extension says so, asked as the page opens and awaited before an upload starts, so a
  // file is split the same way whenever it is added (its stored parts then resume).
  const joinable = fetch('/files/', { method: 'OPTIONS' })
    .then((r) => (r.headers.get('Tus-Extension') ?? '').split(',').map((e) => e.trim()).includes('concatenation'))
    .catch(() => false)
  // The parts each file's upload created: a refused upload (a 4xx: quota, task) deletes them,
  // or they would go on sending, hold the user's quota and never be joined.
  const parts = new Map<string, Parts>()
  uppy.addPreProcessor(async (fileIDs) => {
    if (!await joinable) return
    for (const id of fileIDs) {
      const file = uppy.getFile(id)
      const created: Parts = { urls: [], refused: false }
      parts.set(id, created)
      uppy.setFileState(id, {
        tus: {
          ...file.tus,
          parallelUploads: partsFor(file.size ?? 0),
          onAfterResponse: (req: TusRequest, res: TusResponse) => {
            const location = res.getHeader('Location')
            if (req.getMethod() === 'POST' && res.getStatus() === 201 && location && req.getHeader('Upload-Concat') === 'partial') {
              created.urls.push(new URL(location, req.getURL()).href)
              if (created.refused) abandon(created)  // created after the refusal of another part
            }
          },
        },
      })
    }
  })
  uppy.on('file-added', (file) => {
    uppy.setFileMeta(file.id, { filename: file.name ?? 'upload', filetype: file.type || 'application/octet-stream' })
  })
  uppy.on('upload', () => { messages.replaceChildren() })
  uppy.on('complete', () => { void showUsage(quotaNote) })
  uppy.on('upload-error', (file, error, response) => {
    const err = error as Error & { originalResponse?: { getStatus (): number, getBody (): string } | null }
    const status = err.originalResponse?.getStatus?.() ?? response?.status ?? 0
    if (status === 401) { signOut(SESSION_EXPIRED); return }
    const created = file ? parts.get(file.id) : undefined
    if (created && status >= 400 && status < 500 && !RETRIABLE.includes(status)) {
      created.refused = true
      abandon(created)
    }
    const text = serverText(err) ?? err.message
    if (file && uppy.getFile(file.id)) uppy.setFileState(file.id, { error: text })
    const title = status >= 400 && status < 500
      ? `The server refused ${file?.name ?? 'the file'}`
      : `${file?.name ?? 'The file'} could not be uploaded`
    messages.appendChild(banner('error', text + (status ? ` (HTTP ${status})` : ''), title))
  })
  uppy.on('upload-success', (file, response) => {
    if (!file) return
    const header = response.body?.xhr?.getResponseHeader?.('Batch-Id') ?? null
    void batchFor(header, response.uploadURL).then((batchId) => {
      if (!batchId) {
        messages.appendChild(banner('warning', `${file.name} was uploaded, but its batch is not known yet. See the batches page.`))
        return
      }
      const recent = { name: file.name ?? 'upload', size: file.size ?? 0, batchId }
      remember(recent)
      addRecent(recent, true)
    })
  })
  uppy.on('progress', (percent) => {
    const running = uppy.getFiles().some((f) => f.progress.uploadStarted && !f.progress.uploadComplete && !f.error)
    activityListener?.(running ? `${percent}%` : null)
  })
  uppy.on('complete', () => { activityListener?.(null) })

  function addRecent (recent: Recent, fresh: boolean): void {
    recentCard.hidden = false
    const bar = progressBar(0, 'uploaded', `Processing of ${recent.name}`)
    const status = h('span', { class: 'recent-status' }, badge('uploaded'))
    const counts = h('span', { class: 'muted recent-counts' }, 'waiting for a worker…')
    const item = h('li', { class: `recent-item${fresh ? ' fresh' : ''}`, 'data-batch-id': recent.batchId },
      h('div', { class: 'recent-head' },
        h('span', { class: 'recent-name' }, recent.name),
        h('span', { class: 'muted' }, formatBytes(recent.size)),
        status,
        h('a', { class: 'btn btn-small batch-link', href: `#/batches/${encodeURIComponent(recent.batchId)}` },
          `Open batch ${recent.batchId.slice(0, 8)} →`)),
      bar, counts)
    recentList.prepend(item)
    stops.push(watchProgress(recent.batchId, (progress: Progress) => {
      setProgress(bar, progress.progress_percentage, progress.status)
      status.replaceChildren(badge(progress.status))
      counts.textContent = progress.total_sheets
        ? `${progress.processed_sheets + progress.failed_sheets} of ${progress.total_sheets} sheets read` +
          (progress.failed_sheets ? ` · ${progress.failed_sheets} failed` : '')
        : isFinal(progress.status) ? 'no sheets' : 'listing the pages…'
    }))
  }
  for (const recent of recalled().reverse()) addRecent(recent, false)

  const element = h('div', { class: 'page page-upload' },
    h('div', { class: 'page-head' },
      h('h1', null, 'Upload scanned sheets'),
      h('p', { class: 'muted' }, 'Each file becomes a batch; workers then read every sheet in it.')),
    messages,
    h('div', { class: 'upload-grid' },
      h('section', { class: 'card upload-form', 'aria-label': 'Upload settings' },
        h('fieldset', { class: 'types' },
          h('legend', null, 'Upload type'),
          TYPES.map((type, i) => h('label', { class: 'type-option', for: `type-${type.value}` },
            typeInputs[i],
            h('span', { class: 'type-text' }, h('strong', null, type.title), h('small', null, type.text))))),
        h('div', { class: 'field' },
          h('label', { for: 'task-id' }, 'Task id ', taskLabel), taskId, taskHelp, taskNote),
        quotaNote),
      h('section', { class: 'card upload-drop', 'aria-label': 'Files' }, dashboard)),
    recentCard)
  void showUsage(quotaNote)
  return { element, uppy, stops }
}

/** "1.2 GiB of 10 GiB used" for a user with a quota (the server refuses uploads past it). */
async function showUsage (note: HTMLElement): Promise<void> {
  const user = await refreshUser().catch(() => null)
  const quota = user?.quota_bytes
  note.hidden = quota === null || quota === undefined
  if (quota !== null && quota !== undefined) {
    note.textContent = `${formatBytes(user?.usage_bytes ?? 0)} of ${formatBytes(quota)} used`
  }
}

/** How many partial uploads a file goes as: one per chunk, at most PARALLEL_PARTS (a file of one
 * chunk stays a plain upload). Its size alone decides, so the file added again after a reload
 * is split as before and its stored parts resume. */
export function partsFor (size: number): number {
  return Math.max(1, Math.min(PARALLEL_PARTS, Math.ceil(size / CHUNK_SIZE)))
}

/** The request and response of tus-js-client's onAfterResponse, as far as the page reads them. */
interface TusRequest { getMethod (): string, getURL (): string, getHeader (name: string): string | undefined }
interface TusResponse { getStatus (): number, getHeader (name: string): string | undefined }
const RETRIABLE = [408, 409, 423, 429]  // answers that a retry of the same parts may get past

/** The partial uploads one upload of a file created, and whether the server refused it. */
interface Parts { urls: string[], refused: boolean }

/** Deletes the partial uploads of a refused upload (tus termination). One still sending holds
 * its lock (423): asked again until it has sent its request's bytes, then its next request
 * finds it gone. */
function abandon (parts: Parts): void {
  for (const url of parts.urls.splice(0)) void terminate(url)
}

async function terminate (url: string, attempts = 30): Promise<void> {
  for (let attempt = 0; attempt < attempts; attempt++) {
    const response = await fetch(url, {
      method: 'DELETE', headers: { 'Tus-Resumable': '1.0.0', Authorization: `Bearer ${token() ?? ''}` },
    }).catch(() => null)
    if (response !== null && response.status !== 423) return
    await new Promise((resolve) => setTimeout(resolve, 2000))
  }
}

/** The plain-text message of a tus error answer (tus routes answer errors as text). */
function serverText (error: unknown): string | null {
  const response = (error as { originalResponse?: { getBody? (): string } | null })?.originalResponse
  const body = response?.getBody?.()
  if (typeof body !== 'string' || !body.trim()) return null
  const text = body.trim()
  try {
    const parsed = JSON.parse(text)
    if (typeof parsed?.detail === 'string') return parsed.detail
  } catch { /* plain text, as tus errors are */ }
  return text.slice(0, 1000)
}

/** The batch of a completed upload: from its Batch-Id header, else looked up by upload id (an
 * upload resumed after it had completed ends with a HEAD, which carries no Batch-Id). */
async function batchFor (header: string | null, uploadURL: string | undefined): Promise<string | null> {
  if (header) return header
  const uploadId = uploadURL?.replace(/\/+$/, '').split('/').pop()
  if (!uploadId) return null
  for (let attempt = 0; attempt < 10; attempt++) {
    try {
      const list = await getJson<BatchList>(`/api/batches?upload_id=${encodeURIComponent(uploadId)}`)
      if (list.batches[0]) return list.batches[0].batch_id
    } catch { /* try again */ }
    await new Promise((resolve) => setTimeout(resolve, 500))
  }
  return null
}

function recalled (): Recent[] {
  try { return JSON.parse(sessionStorage.getItem(RECENT_KEY) ?? '[]') as Recent[] } catch { return [] }
}

function remember (recent: Recent): void {
  const list = [recent, ...recalled().filter((r) => r.batchId !== recent.batchId)].slice(0, 10)
  sessionStorage.setItem(RECENT_KEY, JSON.stringify(list))
}
