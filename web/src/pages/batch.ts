// #/batches/{id}: the batch (file, size, sha256, status, counts), live progress while it is
// read, and its sheets: filter all / needs_review / failed, a link to each sheet's review page,
// and the results as CSV (fetched with the bearer token, saved under the server's file name).
// "Delete batch…" asks on the page before it removes the batch, its results and every stored
// copy of its file (DELETE /api/batches/{id}), then goes back to the list.
import { currentUser, deleteResource, getBlob, getJson, SignedOut, type Batch, type Progress, type Results, type SheetResult } from '../api'
import { isFinal, watchProgress } from '../progress'
import { badge, dateCell, formatBytes, h, loading, progressBar, replace, saveBlob, setProgress, show } from '../ui'
import { typeLabel } from './batches'

const PAGE = 200  // sheets per page of the table
const REFRESH_WHILE_PROCESSING = 4000  // ms between two reloads of the table while workers read

const FILTERS: { value: string, label: string }[] = [
  { value: '', label: 'All sheets' },
  { value: 'needs_review', label: 'Needs review' },
  { value: 'failed', label: 'Failed' },
]

export function batchPage (view: HTMLElement, batchId: string): () => void {
  const path = `/api/batches/${encodeURIComponent(batchId)}`
  const messages = h('div', { class: 'messages' })
  const headCard = h('section', { class: 'card batch-head' }, loading('Loading the batch…'))
  const sheetsCard = h('div', { class: 'card table-card' })
  const filterBar = h('div', { class: 'segmented', role: 'group', 'aria-label': 'Show sheets' })
  const csvButton = h('button', { type: 'button', class: 'btn', id: 'download-csv' }, 'Download CSV')
  let filter = ''
  let offset = 0
  let lastResultsAt = 0
  const pager = h('div', { class: 'pager' })
  let left = false
  let stop: (() => void) | null = null
  let lastDone = -1
  let resultsRequest = 0
  let refreshTimer: ReturnType<typeof setTimeout> | undefined

  const fail = (error: unknown, title: string): void => {
    if (!(error instanceof SignedOut) && !left) show(messages, 'error', (error as Error).message, title)
  }

  const loadBatch = async (): Promise<void> => {
    let batch: Batch
    try {
      batch = await getJson<Batch>(path)
    } catch (error) {
      headCard.replaceChildren(h('p', { class: 'muted' }, 'No batch to show.'))
      fail(error, 'The batch could not be loaded')
      return
    }
    if (left) return
    renderHead(batch)
    if (!isFinal(batch.status) || !batch.sha256) {
      stop = watchProgress(batch.batch_id, (progress) => { void onProgress(progress) })
    }
  }

  const onProgress = async (progress: Progress): Promise<void> => {
    const bar = headCard.querySelector<HTMLElement>('.progress')
    if (bar) setProgress(bar, progress.progress_percentage, progress.status)
    const done = progress.processed_sheets + progress.failed_sheets
    if (done !== lastDone || isFinal(progress.status)) {
      lastDone = done
      // counts and sha256 (computed once the file is in durable storage) come with the batch
      try {
        const batch = await getJson<Batch>(path)
        if (!left) renderHead(batch)
      } catch (error) { fail(error, 'The batch could not be refreshed') }
      scheduleResults(isFinal(progress.status))
    }
  }

  const renderHead = (batch: Batch): void => {
    const done = batch.processed_sheets + batch.failed_sheets
    const pct = batch.total_sheets ? 100 * done / batch.total_sheets : isFinal(batch.status) ? 100 : 0
    headCard.dataset.status = batch.status
    replace(headCard,
      h('div', { class: 'batch-title' },
        h('div', null,
          h('div', { class: 'crumbs' }, h('a', { href: '#/batches' }, 'Batches'), ' / ', h('span', { class: 'mono' }, batch.batch_id)),
          h('h1', { class: 'batch-filename' }, batch.filename ?? batch.batch_id)),
        h('div', { class: 'batch-status' }, badge(batch.status))),
      progressBar(pct, batch.status, 'Processing progress'),
      h('dl', { class: 'facts' },
        fact('Sheets', batch.total_sheets ? String(batch.total_sheets) : (isFinal(batch.status) ? '0' : '…'), 'total'),
        fact('Read', String(batch.processed_sheets), 'processed'),
        fact('Failed', String(batch.failed_sheets), 'failed'),
        fact('Size', formatBytes(batch.size), 'size'),
        fact('Type', typeLabel(batch.upload_type), 'type'),
        fact('Task', batch.task_id ? taskLink(batch.task_id) : 'from QR codes', 'task'),
        fact('Uploaded', dateCell(batch.created_at), 'created'),
        fact('Completed', dateCell(batch.completed_at), 'completed'),
        batch.file_deleted_at ? fact('File deleted', dateCell(batch.file_deleted_at), 'file-deleted') : null),
      h('div', { class: 'sha' },
        h('span', { class: 'sha-label' }, 'SHA-256'),
        h('code', { class: 'mono', id: 'batch-sha256' }, batch.sha256 ?? 'being computed…')),
      batch.error ? h('div', { class: 'banner banner-error', role: 'alert' }, h('span', null, batch.error)) : null,
      batch.skipped.length
        ? h('details', { class: 'skipped' },
          h('summary', null, `${batch.skipped.length} file${batch.skipped.length > 1 ? 's' : ''} in the upload skipped`),
          h('ul', null, batch.skipped.map((s) => h('li', null, h('code', null, s.entry), ' — ', s.reason))))
        : null)
  }

  const deleteButton = h('button', { type: 'button', class: 'btn btn-danger', id: 'delete-batch' }, 'Delete batch…')
  const confirmSlot = h('div', { class: 'confirm-slot' })
  deleteButton.addEventListener('click', () => {
    const name = headCard.querySelector('.batch-filename')?.textContent ?? batchId
    const yes = h('button', { type: 'button', class: 'btn btn-danger', id: 'delete-confirm' }, 'Delete for good')
    const no = h('button', { type: 'button', class: 'btn', id: 'delete-cancel' }, 'Cancel')
    const box = h('div', { class: 'banner banner-warning confirm', role: 'alertdialog', 'aria-label': 'Confirm the deletion' },
      h('span', null, `Delete ${name}? Its sheets, answers and corrections and every stored copy of the file are removed for good. An audit record of the deletion is kept.`),
      h('span', { class: 'confirm-actions' }, yes, no))
    no.addEventListener('click', () => { confirmSlot.replaceChildren(); deleteButton.disabled = false })
    yes.addEventListener('click', async () => {
      yes.disabled = no.disabled = true
      yes.textContent = 'Deleting…'
      try {
        await deleteResource(path)
        location.hash = '#/batches'
      } catch (error) {
        confirmSlot.replaceChildren()
        deleteButton.disabled = false
        fail(error, 'The batch could not be deleted')
      }
    })
    deleteButton.disabled = true
    confirmSlot.replaceChildren(box)
    yes.focus()
  })

  /** Reloads the table soon: at once when the batch is done, else at most every few seconds. */
  const scheduleResults = (final: boolean): void => {
    if (final && refreshTimer !== undefined) { clearTimeout(refreshTimer); refreshTimer = undefined }
    if (refreshTimer !== undefined) return
    const wait = final ? 0 : Math.max(300, lastResultsAt + REFRESH_WHILE_PROCESSING - Date.now())
    refreshTimer = setTimeout(() => { refreshTimer = undefined; void loadResults() }, wait)
  }

  const loadResults = async (): Promise<void> => {
    const id = ++resultsRequest
    lastResultsAt = Date.now()
    const query = new URLSearchParams({ limit: String(PAGE), offset: String(offset) })
    if (filter) query.set('status', filter)
    let results: Results
    try {
      results = await getJson<Results>(`${path}/results?${query}`)
    } catch (error) {
      if (id === resultsRequest) {
        sheetsCard.replaceChildren(h('p', { class: 'empty muted' }, 'No results to show.'))
        fail(error, 'The results could not be loaded')
      }
      return
    }
    if (left || id !== resultsRequest) return
    renderSheets(results.sheets)
    renderPager(results.sheets.length)
  }

  const renderPager = (count: number): void => {
    if (offset === 0 && count < PAGE) { pager.replaceChildren(); return }
    pager.replaceChildren(
      h('span', { class: 'muted' }, count ? `Sheets ${offset + 1}–${offset + count}` : 'No more sheets'),
      h('button', {
        type: 'button', class: 'btn btn-small', disabled: offset === 0,
        onclick: () => { offset = Math.max(0, offset - PAGE); void loadResults() },
      }, '← Previous'),
      h('button', {
        type: 'button', class: 'btn btn-small', disabled: count < PAGE,
        onclick: () => { offset += PAGE; void loadResults() },
      }, 'Next →'))
  }

  const renderSheets = (sheets: SheetResult[]): void => {
    if (sheets.length === 0) {
      sheetsCard.replaceChildren(h('div', { class: 'empty' }, h('p', null,
        filter === 'needs_review' ? 'No sheet needs review.' : filter === 'failed' ? 'No sheet failed.' : 'No sheets read yet.')))
      return
    }
    sheetsCard.replaceChildren(h('table', { class: 'table sheets-table' },
      h('thead', null, h('tr', null,
        h('th', null, 'Source'), h('th', { class: 'num' }, 'Page'), h('th', null, 'Student'), h('th', null, 'Task'),
        h('th', null, 'Status'), h('th', { class: 'num' }, 'Score'), h('th', null, 'Doubts'), h('th', null, 'Error'),
        h('th', null, ''))),
      h('tbody', null, sheets.map(sheetRow))))
  }

  const sheetRow = (sheet: SheetResult): HTMLElement => {
    const href = sheet.sheet_id !== undefined && sheet.sheet_id !== null ? `#/sheets/${encodeURIComponent(String(sheet.sheet_id))}` : null
    const doubtful = Object.entries(sheet.flags ?? {}).filter(([, flags]) => flags.some((f) => f !== 'blank'))
    const tr = h('tr', { class: href ? 'clickable' : '', 'data-sheet-id': sheet.sheet_id ?? '', 'data-status': sheet.status },
      h('td', null, href ? h('a', { href, class: 'row-link' }, sheet.source) : sheet.source),
      h('td', { class: 'num' }, sheet.page),
      h('td', { class: 'mono' }, sheet.student_id ?? '—'),
      h('td', { class: 'mono' }, sheet.task_id ? taskLink(sheet.task_id) : '—'),
      h('td', null, badge(sheet.status)),
      h('td', { class: 'num' }, sheet.rescoring ? h('span', { class: 'muted', title: 'The answer key changed; being rescored' }, 'rescoring…') : sheet.score ?? '—'),
      h('td', null, doubtful.length
        ? h('span', { class: 'doubts', title: doubtful.map(([col, flags]) => `${col}: ${flags.join(', ')}`).join('\n') },
          `${doubtful.length} answer${doubtful.length > 1 ? 's' : ''}`)
        : h('span', { class: 'muted' }, '—')),
      h('td', { class: 'cell-error' }, sheet.error ?? ''),
      h('td', { class: 'actions' }, href ? h('a', { class: 'btn btn-small', href }, 'Review') : null))
    if (href) tr.addEventListener('click', (event) => { if (!(event.target as Element).closest('a')) location.hash = href })
    return tr
  }

  const renderFilters = (): void => {
    const current = FILTERS.find((f) => f.value === filter)
    csvButton.textContent = filter && current ? `Download CSV (${current.label.toLowerCase()})` : 'Download CSV'
    filterBar.replaceChildren(...FILTERS.map((f) => h('button', {
      type: 'button', class: `segment${f.value === filter ? ' active' : ''}`, 'aria-pressed': String(f.value === filter),
      'data-filter': f.value || 'all',
      onclick: () => {
        filter = f.value
        offset = 0
        renderFilters()
        sheetsCard.replaceChildren(loading('Loading sheets…'))
        void loadResults()
      },
    }, f.label)))
  }

  csvButton.addEventListener('click', async () => {
    if (csvButton.disabled) return
    csvButton.disabled = true
    const label = csvButton.textContent
    csvButton.textContent = 'Preparing CSV…'
    try {
      const query = filter ? `?status=${encodeURIComponent(filter)}` : ''
      const { blob, filename } = await getBlob(`${path}/results.csv${query}`)
      saveBlob(blob, filename ?? `${batchId}-results.csv`)
    } catch (error) {
      fail(error, 'The CSV could not be downloaded')
    } finally {
      csvButton.disabled = false
      csvButton.textContent = label
    }
  })

  renderFilters()
  sheetsCard.replaceChildren(loading('Loading sheets…'))
  view.replaceChildren(h('div', { class: 'page page-batch' },
    messages, headCard,
    h('div', { class: 'batch-actions' }, deleteButton), confirmSlot,
    h('div', { class: 'section-head' },
      h('h2', null, 'Sheets'),
      h('div', { class: 'toolbar' }, filterBar, csvButton)),
    sheetsCard, pager))
  void loadBatch()
  void loadResults()
  return () => {
    left = true
    stop?.()
    if (refreshTimer !== undefined) clearTimeout(refreshTimer)
  }
}

/** A task id; for an admin, a link to the task's item analysis. */
function taskLink (taskId: string): string | HTMLElement {
  if (!currentUser()?.is_admin) return taskId
  return h('a', { href: `#/statistics/${encodeURIComponent(taskId)}`, class: 'task-link', title: 'Item analysis of this task' }, taskId)
}

export function fact (label: string, value: string | number | Node, key: string, mono = false): HTMLElement {
  return h('div', { class: 'fact' }, h('dt', null, label), h('dd', { 'data-fact': key, class: mono ? 'mono' : null }, value))
}
