// Uploads one file with tus-js-client in Node, optionally aborting part-way and resuming
// with a brand-new Upload object, and prints one JSON line with what happened.
//
//   node upload.mjs ENDPOINT TOKEN FILE [OPTIONS_JSON]
//
// OPTIONS_JSON (all optional):
//   chunkSize       bytes per PATCH (default 1 MiB; required by tus-js-client for streams)
//   source          "file" (fs.createReadStream(FILE), the default) or "buffer" (the whole file read first)
//   metadata        Upload-Metadata object (default {filename: basename(FILE)})
//   abortAfterBytes abort the first Upload once the server has accepted at least this many bytes
//                   (checked after each chunk), then resume in a new Upload
//   abortMidChunkAt abort the first Upload while a PATCH body is being sent, once this many bytes
//                   of the file have been handed to the socket (the server keeps what arrived)
//   resumeWith      "previous" (findPreviousUploads + resumeFromPreviousUpload through a
//                   FileUrlStorage, the default) or "uploadUrl" (the first Upload's URL)
//   urlStorage      file for FileUrlStorage (default: FILE + ".tus-urls.json")
//   retryDelays     passed on (default [] — a test should see failures, not retries, unless it asks)
//   timeoutMs       give up after this long (default 60000)
//
// Output (stdout, one JSON line): {ok, url, uploadUrls, batchId, size, patches, resume, error}
//   uploadUrls: the URL each Upload worked on (a resumed one reports the same URL again)
//   patches: [{upload, offset, status, newOffset}] for every PATCH answered, in order (upload 1 or 2)
//   resume: {offset} — the offset the second Upload started from (from its HEAD), or null
import * as fs from 'node:fs'
import * as path from 'node:path'
import * as tus from 'tus-js-client'

const [endpoint, token, file, optionsJson] = process.argv.slice(2)
if (!endpoint || !token || !file) {
  console.error('usage: node upload.mjs ENDPOINT TOKEN FILE [OPTIONS_JSON]')
  process.exit(2)
}
const opts = JSON.parse(optionsJson || '{}')
const chunkSize = opts.chunkSize ?? 1024 * 1024
const size = fs.statSync(file).size
const result = { ok: false, url: null, uploadUrls: [], batchId: null, size, patches: [], resume: null, error: null }

function finish (code) {
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(code))
}
const timer = setTimeout(() => { result.error = `timed out after ${opts.timeoutMs ?? 60000} ms`; finish(1) },
  opts.timeoutMs ?? 60000)

function source () {
  return opts.source === 'buffer' ? fs.readFileSync(file) : fs.createReadStream(file)
}

// Common options; `phase` is 1 for the first Upload and 2 for the resumed one.
function options (phase, extra) {
  return {
    endpoint,
    chunkSize,
    retryDelays: opts.retryDelays ?? [],
    headers: { Authorization: `Bearer ${token}` },
    metadata: opts.metadata ?? { filename: path.basename(file) },
    uploadSize: size,
    urlStorage: new tus.FileUrlStorage(opts.urlStorage ?? file + '.tus-urls.json'),
    storeFingerprintForResuming: true,
    removeFingerprintOnSuccess: false,
    onBeforeRequest (req) {
      if (req.getMethod() === 'HEAD' && phase === 2 && result.resume === null) result.resume = { offset: null }
    },
    onAfterResponse (req, res) {
      const method = req.getMethod()
      if (method === 'HEAD' && phase === 2 && result.resume && result.resume.offset === null) {
        result.resume.offset = Number(res.getHeader('Upload-Offset'))
      }
      if (method === 'PATCH') {
        const offset = Number(req.getHeader('Upload-Offset'))
        const newOffset = Number(res.getHeader('Upload-Offset'))
        result.patches.push({ upload: phase, offset, status: res.getStatus(), newOffset })
        const batchId = res.getHeader('Batch-Id')
        if (batchId) result.batchId = batchId
      }
    },
    ...extra,
  }
}

// Starts an Upload and settles when it succeeds ('done'), is aborted by us ('aborted') or fails.
function start (phase, extra, beforeStart = async () => {}) {
  let upload
  const settled = new Promise((resolve, reject) => {
    const abort = () => {
      if (upload._abortRequested) return
      upload._abortRequested = true
      upload.abort().then(() => resolve('aborted'), reject)
    }
    upload = new tus.Upload(source(), options(phase, {
      ...extra,
      onUploadUrlAvailable () { result.uploadUrls.push(upload.url) },
      onProgress (sent) {
        if (phase === 1 && opts.abortMidChunkAt != null && sent >= opts.abortMidChunkAt) abort()
      },
      onChunkComplete (_chunk, accepted) {
        if (phase === 1 && opts.abortAfterBytes != null && accepted >= opts.abortAfterBytes) abort()
      },
      onSuccess () { resolve('done') },
      onError (err) { reject(err) },
    }))
    beforeStart(upload).then(() => upload.start(), reject)
  })
  return { upload, settled }
}

async function main () {
  const aborting = opts.abortAfterBytes != null || opts.abortMidChunkAt != null
  const first = start(1, {})
  const outcome = await first.settled
  result.url = first.upload.url
  if (!aborting) return
  if (outcome === 'done') throw new Error('the upload finished before it could be aborted')

  let second
  if ((opts.resumeWith ?? 'previous') === 'uploadUrl') {
    second = start(2, { uploadUrl: first.upload.url })
  } else {
    second = start(2, {}, async (upload) => {
      const previous = await upload.findPreviousUploads()
      if (previous.length !== 1) throw new Error(`expected 1 previous upload, found ${previous.length}`)
      upload.resumeFromPreviousUpload(previous[0])
    })
  }
  await second.settled
  result.url = second.upload.url
}

main().then(
  () => { result.ok = true; clearTimeout(timer); finish(0) },
  (err) => { result.error = String(err && err.stack ? err.stack : err); clearTimeout(timer); finish(1) },
)
