// #/sheets/{id}: the review page. The server-rendered aligned scan with every bubble drawn, next
// to the sheet's columns: answer, confidence, flags, and any correction. Doubtful answers are
// highlighted; an admin can correct each answer (PUT /api/sheets/{id}/answers/{column}).
import {
  ApiError, currentUser, getBlob, getJson, putJson, SignedOut, type Batch, type Results, type Sheet,
} from '../api'
import { badge, banner, formatDate, h, loading, replace, show } from '../ui'
import { fact } from './batch'

const DOUBT_FLAGS = new Set(['ambiguous', 'multiple'])
// The colours omr_tus/omr/review.py draws the bubbles with.
const LEGEND: [string, string][] = [['marked', 'marked'], ['ambiguous', 'doubtful'], ['blank', 'blank'], ['corrected', 'corrected']]

export function sheetPage (view: HTMLElement, sheetId: string): () => void {
  const path = `/api/sheets/${encodeURIComponent(sheetId)}`
  const admin = currentUser()?.is_admin === true
  const messages = h('div', { class: 'messages' })
  const head = h('section', { class: 'card sheet-head' }, loading('Loading the sheet…'))
  const figure = h('figure', { class: 'card review-image' }, loading('Rendering the review image…'))
  const tableCard = h('section', { class: 'card table-card answers-card' })
  let left = false
  let imageUrl: string | null = null
  let sheet: Sheet | null = null
  let imageRequest = 0

  const fail = (error: unknown, title: string): void => {
    if (!(error instanceof SignedOut) && !left) show(messages, 'error', (error as Error).message, title)
  }

  const loadImage = async (): Promise<void> => {
    const id = ++imageRequest
    try {
      const { blob } = await getBlob(`${path}/review.png`)
      if (left || id !== imageRequest) return
      if (imageUrl) URL.revokeObjectURL(imageUrl)
      imageUrl = URL.createObjectURL(blob)
      const img = h('img', { src: imageUrl, alt: `Aligned scan of sheet ${sheetId} with every bubble drawn`, id: 'review-image' })
      figure.replaceChildren(
        h('a', { href: imageUrl, target: '_blank', rel: 'noopener', title: 'Open full size' }, img),
        h('figcaption', null,
          h('span', { class: 'legend' }, 'The aligned scan as read:',
            LEGEND.map(([kind, text]) => h('span', { class: 'legend-item' }, h('i', { class: `swatch swatch-${kind}` }), text))),
          h('a', { href: imageUrl, target: '_blank', rel: 'noopener' }, 'Full size ↗')))
    } catch (error) {
      if (left || error instanceof SignedOut) return
      figure.replaceChildren(h('div', { class: 'image-missing' },
        h('strong', null, 'No review image'), h('span', { class: 'muted' }, (error as Error).message)))
    }
  }

  const load = async (): Promise<void> => {
    try {
      sheet = await getJson<Sheet>(path)
    } catch (error) {
      head.replaceChildren(h('p', { class: 'muted' }, 'No sheet to show.'))
      tableCard.replaceChildren()
      figure.replaceChildren()
      fail(error, 'The sheet could not be loaded')
      return
    }
    if (left) return
    render()
    void loadBatchContext(sheet)
  }

  const render = (): void => {
    if (!sheet) return
    renderHead(sheet)
    renderAnswers(sheet)
  }

  const batchName = h('span', null, '…')
  const nextLink = h('span', { class: 'next-review' })

  const renderHead = (s: Sheet): void => {
    const flagged = Object.values(s.flags ?? {}).filter((flags) => flags.some((f) => DOUBT_FLAGS.has(f))).length
    const corrected = Object.keys(s.corrections ?? {}).length
    head.dataset.status = s.status
    replace(head,
      h('div', { class: 'batch-title' },
        h('div', null,
          h('div', { class: 'crumbs' },
            h('a', { href: '#/batches' }, 'Batches'), ' / ',
            h('a', { href: `#/batches/${encodeURIComponent(s.batch_id)}`, id: 'back-to-batch' }, batchName), ' / ',
            h('span', null, `sheet ${s.sheet_id ?? sheetId}`)),
          h('h1', null, s.source, s.page > 1 ? h('span', { class: 'muted' }, ` · page ${s.page}`) : null)),
        h('div', { class: 'batch-status' }, badge(s.status), nextLink)),
      h('dl', { class: 'facts' },
        fact('Student', s.student_id ?? '—', 'student', true),
        fact('Task', s.task_id ?? '—', 'task', true),
        fact('Score', s.score ?? '—', 'score'),
        fact('Doubtful answers', flagged, 'doubtful'),
        fact('Corrected', corrected, 'corrected')),
      s.error ? h('div', { class: 'banner banner-error', role: 'alert' }, h('span', null, s.error)) : null)
  }

  const renderAnswers = (s: Sheet): void => {
    const columns = Object.keys(s.answers ?? {})
    if (columns.length === 0) {
      tableCard.replaceChildren(h('div', { class: 'empty' }, h('p', null, 'This sheet has no answers.')))
      return
    }
    const inputs: HTMLInputElement[] = []
    const rows = columns.map((column) => {
      const value = s.answers[column] ?? ''
      const flags = s.flags?.[column] ?? []
      const confidence = s.confidence?.[column]
      const correction = s.corrections?.[column]
      const doubtful = flags.some((f) => DOUBT_FLAGS.has(f))
      const tr = h('tr', {
        'data-column': column,
        class: [doubtful ? 'row-doubt' : '', correction ? 'row-corrected' : ''].filter(Boolean).join(' '),
      })
      let answerCell: HTMLElement
      if (admin) {
        const input = h('input', {
          type: 'text', class: 'answer-input mono', value, 'aria-label': `Answer ${column}`,
          'data-column': column, maxlength: 64, size: Math.max(4, value.length + 1), autocomplete: 'off',
          spellcheck: 'false', placeholder: 'blank',
        })
        const save = h('button', { type: 'button', class: 'btn btn-small btn-primary save', hidden: true }, 'Save')
        const changed = (): boolean => input.value.trim() !== value
        input.addEventListener('input', () => { save.hidden = !changed(); input.classList.remove('invalid') })
        input.addEventListener('keydown', (event) => {
          if (event.key === 'Enter') { event.preventDefault(); if (changed()) void correct(column, input, save); else focusNext(inputs, input) }
          if (event.key === 'Escape') { input.value = value; save.hidden = true; input.classList.remove('invalid') }
        })
        save.addEventListener('click', () => { void correct(column, input, save) })
        inputs.push(input)
        answerCell = h('td', { class: 'cell-answer' }, h('div', { class: 'answer-edit' }, input, save))
      } else {
        answerCell = h('td', { class: 'cell-answer' },
          value ? h('span', { class: 'answer mono' }, value) : h('span', { class: 'muted' }, 'blank'))
      }
      tr.append(
        h('th', { scope: 'row', class: 'mono' }, column),
        answerCell,
        h('td', { class: 'cell-confidence' }, confidence === undefined ? '—' : confidenceMeter(confidence)),
        h('td', { class: 'cell-flags' }, flags.length ? flags.map((f) => h('span', { class: `flag flag-${f}` }, f)) : null),
        h('td', { class: 'cell-correction' }, correction
          ? h('span', { class: 'correction' },
            h('span', null, `was ${correction.original === null || correction.original === undefined ? '—' : correction.original || 'blank'}`),
            h('span', { class: 'muted' }, `by ${correction.by ?? 'someone'}, ${formatDate(correction.at)}`))
          : null))
      return tr
    })
    tableCard.replaceChildren(
      h('table', { class: 'table answers-table' },
        h('thead', null, h('tr', null,
          h('th', null, 'Column'), h('th', null, admin ? 'Answer (editable)' : 'Answer'), h('th', null, 'Confidence'),
          h('th', null, 'Flags'), h('th', null, 'Correction'))),
        h('tbody', null, rows)))
  }

  const correct = async (column: string, input: HTMLInputElement, save: HTMLButtonElement): Promise<void> => {
    const value = input.value.trim()
    input.disabled = true
    save.disabled = true
    save.textContent = 'Saving…'
    try {
      sheet = await putJson<Sheet>(`${path}/answers/${encodeURIComponent(column)}`, { value })
      if (left) return
      render()
      messages.replaceChildren(banner('success', `${column} is now ${value || 'blank'}.`, 'Correction saved'))
      const next = tableCard.querySelector<HTMLInputElement>(`tr[data-column="${CSS.escape(column)}"]`)?.nextElementSibling
        ?.querySelector<HTMLInputElement>('.answer-input')
      next?.focus()
      void loadImage()
    } catch (error) {
      if (error instanceof SignedOut || left) return
      input.disabled = false
      save.disabled = false
      save.textContent = 'Save'
      input.classList.add('invalid')
      input.focus()
      const status = error instanceof ApiError ? ` (HTTP ${error.status})` : ''
      messages.replaceChildren(banner('error', (error as Error).message + status, `${column} was not corrected`))
    }
  }

  /** The batch's name for the crumbs, and the next sheet of the batch that needs review. */
  const loadBatchContext = async (s: Sheet): Promise<void> => {
    try {
      const batch = await getJson<Batch>(`/api/batches/${encodeURIComponent(s.batch_id)}`)
      if (!left) batchName.textContent = batch.filename ?? batch.batch_id
    } catch { batchName.textContent = s.batch_id }
    try {
      const review = await getJson<Results>(`/api/batches/${encodeURIComponent(s.batch_id)}/results?status=needs_review`)
      const ids = review.sheets.map((r) => String(r.sheet_id)).filter((id) => id !== 'undefined')
      const here = ids.indexOf(String(s.sheet_id ?? sheetId))
      const next = ids.find((_, i) => i > here && ids[i] !== String(sheetId)) ?? ids.find((id) => id !== String(sheetId))
      if (next && !left) {
        nextLink.replaceChildren(h('a', { class: 'btn btn-small', href: `#/sheets/${encodeURIComponent(next)}` },
          `Next to review (${ids.filter((id) => id !== String(sheetId)).length} left) →`))
      }
    } catch { /* optional */ }
  }

  view.replaceChildren(h('div', { class: 'page page-sheet' },
    messages, head,
    h('div', { class: 'review-grid' }, figure, tableCard)))
  void load()
  void loadImage()
  return () => {
    left = true
    if (imageUrl) {
      const url = imageUrl
      setTimeout(() => URL.revokeObjectURL(url), 1000)
    }
  }
}

function confidenceMeter (value: number): HTMLElement {
  const pct = Math.round(Math.max(0, Math.min(1, value)) * 100)
  const meter = h('span', { class: `meter ${pct < 60 ? 'meter-low' : pct < 85 ? 'meter-mid' : 'meter-high'}`, title: `${pct}%` },
    h('span', { class: 'meter-fill' }))
  ;(meter.firstElementChild as HTMLElement).style.width = `${pct}%`
  return h('span', { class: 'confidence' }, meter, h('span', { class: 'meter-text' }, `${pct}%`))
}

function focusNext (inputs: HTMLInputElement[], current: HTMLInputElement): void {
  const index = inputs.indexOf(current)
  inputs[index + 1]?.focus()
}
