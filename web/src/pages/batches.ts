// #/batches: the user's batches (every batch for an admin), with live progress bars for the
// ones still being read.
import { currentUser, getJson, SignedOut, type Batch, type BatchList, type Progress } from '../api'
import { isFinal, watchProgress } from '../progress'
import { badge, dateCell, formatBytes, h, loading, progressBar, setProgress, show } from '../ui'

const PAGE = 50

export function batchesPage (view: HTMLElement): () => void {
  const stops: (() => void)[] = []
  const stopAll = (): void => { for (const stop of stops.splice(0)) stop() }
  const messages = h('div', { class: 'messages' })
  const body = h('div', { class: 'card table-card' }, loading('Loading batches…'))
  const pager = h('div', { class: 'pager' })
  const statusFilter = h('select', { id: 'status-filter', 'aria-label': 'Status' },
    h('option', { value: '' }, 'Any status'),
    ...['uploaded', 'processing', 'completed', 'failed'].map((s) => h('option', { value: s }, s[0].toUpperCase() + s.slice(1))))
  let offset = 0
  let left = false

  const load = async (): Promise<void> => {
    stopAll()
    const query = new URLSearchParams({ limit: String(PAGE), offset: String(offset) })
    if (statusFilter.value) query.set('status', statusFilter.value)
    let list: BatchList
    try {
      list = await getJson<BatchList>(`/api/batches?${query}`)
    } catch (error) {
      if (!(error instanceof SignedOut) && !left) show(messages, 'error', (error as Error).message, 'The batches could not be loaded')
      return
    }
    if (left) return
    messages.replaceChildren()
    render(list)
  }

  const render = (list: BatchList): void => {
    if (list.batches.length === 0) {
      body.replaceChildren(h('div', { class: 'empty' },
        h('p', null, statusFilter.value ? 'No batch has this status.' : 'No batches yet.'),
        h('a', { class: 'btn btn-primary', href: '#/upload' }, 'Upload scanned sheets')))
      pager.replaceChildren()
      return
    }
    const rows = list.batches.map((batch) => row(batch))
    body.replaceChildren(h('table', { class: 'table batches-table' },
      h('thead', null, h('tr', null,
        h('th', null, 'File'), h('th', null, 'Type'), h('th', null, 'Task'), h('th', null, 'Status'),
        h('th', { class: 'col-progress' }, 'Progress'), h('th', { class: 'num' }, 'Size'), h('th', null, 'Uploaded'))),
      h('tbody', null, rows)))
    const last = Math.min(list.offset + list.batches.length, list.total)
    if (list.total <= list.limit && list.offset === 0) { pager.replaceChildren(); return }
    pager.replaceChildren(
      h('span', { class: 'muted' }, `${list.offset + 1}–${last} of ${list.total}`),
      h('button', {
        type: 'button', class: 'btn btn-small', disabled: list.offset === 0,
        onclick: () => { offset = Math.max(0, offset - PAGE); void load() },
      }, '← Newer'),
      h('button', {
        type: 'button', class: 'btn btn-small', disabled: last >= list.total,
        onclick: () => { offset += PAGE; void load() },
      }, 'Older →'))
  }

  const row = (batch: Batch): HTMLElement => {
    const href = `#/batches/${encodeURIComponent(batch.batch_id)}`
    const status = h('td', { class: 'cell-status' }, badge(batch.status))
    const pct = batch.total_sheets ? 100 * (batch.processed_sheets + batch.failed_sheets) / batch.total_sheets
      : isFinal(batch.status) ? 100 : 0
    const bar = progressBar(pct, batch.status, `Progress of ${batch.filename ?? batch.batch_id}`)
    const counts = h('span', { class: 'progress-text' }, countText(batch))
    const tr = h('tr', { class: 'clickable', 'data-batch-id': batch.batch_id, 'data-status': batch.status },
      h('td', null, h('a', { href, class: 'row-link' }, batch.filename ?? batch.batch_id),
        batch.error ? h('div', { class: 'cell-error' }, batch.error) : null),
      h('td', null, typeLabel(batch.upload_type)),
      h('td', { class: 'mono' }, batch.task_id ?? '—'),
      status,
      h('td', { class: 'col-progress' }, bar, counts),
      h('td', { class: 'num' }, formatBytes(batch.size)),
      h('td', null, dateCell(batch.created_at)))
    tr.addEventListener('click', (event) => {
      if (!(event.target as Element).closest('a')) location.hash = href
    })
    if (!isFinal(batch.status)) {
      stops.push(watchProgress(batch.batch_id, (progress: Progress) => {
        setProgress(bar, progress.progress_percentage, progress.status)
        status.replaceChildren(badge(progress.status))
        tr.dataset.status = progress.status
        counts.textContent = countText(progress)
      }))
    }
    return tr
  }

  statusFilter.addEventListener('change', () => { offset = 0; void load() })
  const user = currentUser()
  view.replaceChildren(h('div', { class: 'page page-batches' },
    h('div', { class: 'page-head page-head-row' },
      h('div', null,
        h('h1', null, user?.is_admin ? 'All batches' : 'My batches'),
        h('p', { class: 'muted' }, user?.is_admin
          ? 'Every batch of every user. Bars move while workers read the sheets.'
          : 'Your uploads. Bars move while workers read the sheets.')),
      h('div', { class: 'toolbar' }, statusFilter,
        h('button', { type: 'button', class: 'btn', onclick: () => { void load() } }, 'Refresh'),
        h('a', { class: 'btn btn-primary', href: '#/upload' }, 'Upload'))),
    messages, body, pager))
  void load()
  return () => { left = true; stopAll() }
}

export function typeLabel (type: string): string {
  return { zip_with_qr: 'ZIP · QR', zip_no_qr: 'ZIP · no QR', images: 'Images' }[type] ?? type
}

function countText (p: { total_sheets: number, processed_sheets: number, failed_sheets: number, status: string }): string {
  if (!p.total_sheets) return p.status === 'uploaded' ? 'Waiting for a worker' : isFinal(p.status) ? 'No sheets' : 'Listing pages…'
  const done = p.processed_sheets + p.failed_sheets
  return `${done}/${p.total_sheets} sheets` + (p.failed_sheets ? ` · ${p.failed_sheets} failed` : '')
}
