// Uploads one file with tus-js-client in Node, optionally aborting part-way and resuming
// with a brand-new Upload object, and prints one JSON line with what happened.
//
//   node upload.mjs ENDPOINT TOKEN FILE [OPTIONS_JSON]
//
// OPTIONS_JSON (all optional):
//   chunkSize       bytes per PATCH (default 1 MiB; required by tus-js-client for streams)
//   source          "file" (fs.createReadStream(FILE), the default), "buffer" (the whole file read first)
//                   or "stream" (a plain Readable of the file, of unknown size to tus-js-client: uploadSize is set)
//   bodyPieces      send each request body with Transfer-Encoding: chunked, one HTTP chunk per piece of
//                   these sizes in bytes (cycled), as a proxy that streams request bodies does
//   metadata        Upload-Metadata object (default {filename: basename(FILE), upload_type: zip_with_qr})
//   abortAfterBytes abort the first Upload once the server has accepted at least this many bytes
//                   (checked after each chunk), then resume in a new Upload
//   abortMidChunkAt drop the first Upload's connection inside a PATCH body: the PATCH covering this
//                   file offset sends the bytes before it, stalls until they have left the socket,
//                   then the Upload is aborted (what the server keeps of them is up to the server)
//   resumeWith      "previous" (findPreviousUploads + resumeFromPreviousUpload through a
//                   FileUrlStorage, the default) or "uploadUrl" (the first Upload's URL)
//   urlStorage      file for FileUrlStorage (default: FILE + ".tus-urls.json")
//   retryDelays     passed on (default [] — a test should see failures, not retries, unless it asks)
//   timeoutMs       give up after this long (default 60000)
//   tusOptions      more tus-js-client options, passed on as they are (uploadDataDuringCreation,
//                   uploadLengthDeferred, parallelUploads, overridePatchMethod, protocol: 'ietf-draft-05', ...)
//
// Output (stdout, one JSON line): {ok, url, uploadUrls, batchId, batchIds, size, bytesAccepted, patches, resume,
//                                  requests, error}
//   batchId: the first Batch-Id header seen on any response; batchIds: all of them, in order
//   bytesAccepted: the sum over PATCHes answered 2xx of the offset they moved (bytes the server took from us)
//   uploadUrls: the URL each Upload worked on (a resumed one reports the same URL again)
//   patches: [{upload, offset, status, newOffset}] for every PATCH answered, in order (upload 1 or 2)
//   resume: {offset} — the offset the second Upload started from (from its HEAD), or null
//   requests: {interop: the distinct Upload-Draft-Interop-Version values sent, tusResumable: whether any
//             request carried Tus-Resumable} (which protocol the client spoke)
import * as fs from 'node:fs'
import * as path from 'node:path'
import { PassThrough, Readable, Transform } from 'node:stream'
import * as tus from 'tus-js-client'

const [endpoint, token, file, optionsJson] = process.argv.slice(2)
if (!endpoint || !token || !file) {
  console.error('usage: node upload.mjs ENDPOINT TOKEN FILE [OPTIONS_JSON]')
  process.exit(2)
}
const opts = JSON.parse(optionsJson || '{}')
const chunkSize = opts.chunkSize ?? 1024 * 1024
const size = fs.statSync(file).size
const result = { ok: false, url: null, uploadUrls: [], batchId: null, batchIds: [], size, bytesAccepted: 0, patches: [], resume: null, requests: { interop: [], tusResumable: false }, error: null }

function finish (code) {
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(code))
}
const timer = setTimeout(() => { result.error = `timed out after ${opts.timeoutMs ?? 60000} ms`; finish(1) },
  opts.timeoutMs ?? 60000)

function source () {
  if (opts.source === 'buffer') return fs.readFileSync(file)
  if (opts.source === 'stream') return fs.createReadStream(file).pipe(new PassThrough())
  return fs.createReadStream(file)
}

// Cuts a body (a Buffer or a Readable) into pieces of the given sizes, cycled; the result has no
// size, so Node sends it with Transfer-Encoding: chunked, each piece as one HTTP chunk.
function inPieces (body, sizes) {
  let next = 0
  const cutter = new Transform({
    transform (data, _enc, done) {
      for (let at = 0; at < data.length;) {
        const size = sizes[next++ % sizes.length]
        this.push(data.subarray(at, at + size))
        at += size
      }
      done()
    },
  })
  return (body instanceof Readable ? body : Readable.from([body])).pipe(cutter)
}

class ChunkedBodyHttpStack extends tus.DefaultHttpStack {
  constructor (sizes) {
    super()
    this.sizes = sizes
  }

  createRequest (method, url) {
    const req = super.createRequest(method, url)
    const send = req.send.bind(req)
    req.send = (body) => send(body == null ? body : inPieces(body, this.sizes))
    return req
  }
}

// An HTTP stack that sends only the first part of the PATCH body that covers `at`, keeps the
// request open (its Content-Length promises the rest) and calls `stalled()` once that part
// has been written to the socket, so the client can drop the connection mid-body.
class StallingHttpStack extends tus.DefaultHttpStack {
  constructor (at, stalled) {
    super()
    this.at = at
    this.stalled = stalled
  }

  createRequest (method, url) {
    const req = super.createRequest(method, url)
    if (method !== 'PATCH') return req
    const send = req.send.bind(req)
    req.send = (body) => {
      const offset = Number(req.getHeader('Upload-Offset'))
      const size = body?.size ?? 0
      if (this.at == null || this.at < offset || this.at >= offset + size) return send(body)
      const keep = this.at - offset
      this.at = null // only once
      const held = new PassThrough()
      held.size = size
      if (body instanceof Readable) {
        let passed = 0
        body.pipe(new Transform({
          transform (data, _enc, done) {
            const take = Math.max(0, Math.min(data.length, keep - passed))
            passed += data.length
            done(null, take ? data.subarray(0, take) : undefined)
          },
        })).pipe(held, { end: false })
      } else {
        held.write(body.subarray(0, keep))
      }
      const sent = send(held)
      const watch = setInterval(() => {
        const request = req.getUnderlyingObject()
        const socket = request?.socket
        if (socket && socket.bytesWritten >= keep && held.readableLength === 0 &&
            request.writableLength === 0 && socket.writableLength === 0) {
          clearInterval(watch)
          this.stalled()
        }
      }, 10)
      return sent.finally(() => clearInterval(watch))
    }
    return req
  }
}

// Common options; `phase` is 1 for the first Upload and 2 for the resumed one.
function options (phase, extra) {
  return {
    endpoint,
    chunkSize,
    retryDelays: opts.retryDelays ?? [],
    headers: { Authorization: `Bearer ${token}` },
    metadata: opts.metadata ?? { filename: path.basename(file), upload_type: 'zip_with_qr' },
    ...(opts.source === 'stream' ? { uploadSize: size } : {}),
    ...(opts.bodyPieces ? { httpStack: new ChunkedBodyHttpStack(opts.bodyPieces) } : {}),
    urlStorage: new tus.FileUrlStorage(opts.urlStorage ?? file + '.tus-urls.json'),
    storeFingerprintForResuming: true,
    removeFingerprintOnSuccess: false,
    onBeforeRequest (req) {
      const interop = req.getHeader('Upload-Draft-Interop-Version')
      if (interop != null && !result.requests.interop.includes(interop)) result.requests.interop.push(interop)
      if (req.getHeader('Tus-Resumable') != null) result.requests.tusResumable = true
      if (req.getMethod() === 'HEAD' && phase === 2 && result.resume === null) result.resume = { offset: null }
    },
    onAfterResponse (req, res) {
      const method = req.getMethod()
      if (method === 'HEAD' && phase === 2 && result.resume && result.resume.offset === null) {
        result.resume.offset = Number(res.getHeader('Upload-Offset'))
      }
      if (method === 'PATCH' || req.getHeader('X-HTTP-Method-Override') === 'PATCH') {
        const offset = Number(req.getHeader('Upload-Offset'))
        const newOffset = Number(res.getHeader('Upload-Offset'))
        result.patches.push({ upload: phase, offset, status: res.getStatus(), newOffset })
        if (res.getStatus() >= 200 && res.getStatus() < 300 && newOffset > offset) result.bytesAccepted += newOffset - offset
      }
      const batchId = res.getHeader('Batch-Id')
      if (batchId) {
        result.batchIds.push(batchId)
        result.batchId = result.batchId ?? batchId
      }
    },
    ...opts.tusOptions,
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
      onChunkComplete (_chunk, accepted) {
        if (phase === 1 && opts.abortAfterBytes != null && accepted >= opts.abortAfterBytes) abort()
      },
      ...(phase === 1 && opts.abortMidChunkAt != null
        ? { httpStack: new StallingHttpStack(opts.abortMidChunkAt, abort) }
        : {}),
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
