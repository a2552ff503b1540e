// #/statistics/{task_id} (admins): the item analysis of a task — sheets, KR-20 and, per question,
// a chart of its difficulty, its discrimination and how often each choice was marked — the
// analysis as CSV, and while the task's sheets are rescored after a change of its answer key,
// how far that has got.
import { getBlob, getJson, SignedOut } from '../api'
import { h, loading, progressBar, replace, saveBlob, setProgress, show } from '../ui'
import { fact } from './batch'
import './statistics.css'

export interface QuestionStatistics {
  question: string, difficulty: number | null, discrimination: number | null, choices: Record<string, number>
}
export interface Statistics { task_id: string, sheets: number, kr20: number | null, questions: QuestionStatistics[] }
export interface Rescoring { active: boolean, key_version: number, sheets_done: number, sheets_total: number }
interface TaskSummary { task_id: string, name: string, rescoring: Rescoring | null }

const LOW_DISCRIMINATION = 0.2  // the usual rule of thumb: below it a question tells strong and weak students apart poorly
const POLL_RESCORING = 2000  // ms

export function statisticsPage (view: HTMLElement, taskId: string): () => void {
  const path = `/api/tasks/${encodeURIComponent(taskId)}`
  const messages = h('div', { class: 'messages' })
  const head = h('section', { class: 'card batch-head' }, loading('Computing the item analysis…'))
  const rescoring = h('div', { class: 'rescoring', id: 'rescoring', hidden: true })
  const grid = h('div', { class: 'stat-grid', id: 'stat-grid' })
  const csvButton = h('button', { type: 'button', class: 'btn', id: 'download-statistics-csv' }, 'Download CSV')
  let left = false
  let timer: ReturnType<typeof setTimeout> | undefined

  const fail = (error: unknown, title: string): void => {
    if (!(error instanceof SignedOut) && !left) show(messages, 'error', (error as Error).message, title)
  }

  const watchRescoring = async (): Promise<void> => {
    let task: TaskSummary
    try { task = await getJson<TaskSummary>(path) } catch (error) { fail(error, 'The task could not be loaded'); return }
    if (left) return
    renderRescoring(task.rescoring)
    if (task.rescoring?.active) timer = setTimeout(() => { void watchRescoring() }, POLL_RESCORING)
  }

  const renderRescoring = (state: Rescoring | null): void => {
    rescoring.hidden = !state?.active
    if (!state?.active) return
    const pct = state.sheets_total ? 100 * state.sheets_done / state.sheets_total : 0
    const bar = rescoring.querySelector<HTMLElement>('.progress')
    if (bar) setProgress(bar, pct, 'processing')
    else replace(rescoring, h('span', { class: 'rescoring-label' }), progressBar(pct, 'processing', 'Rescoring progress'))
    ;(rescoring.firstElementChild as HTMLElement).textContent =
      `The answer key changed: rescoring the sheets, ${state.sheets_done} of ${state.sheets_total} done. ` +
      'Scores of sheets not rescored yet are not shown; this analysis already uses the new key.'
  }

  const load = async (): Promise<void> => {
    let task: TaskSummary
    let stats: Statistics
    try {
      [task, stats] = await Promise.all([getJson<TaskSummary>(path), getJson<Statistics>(`${path}/statistics`)])
    } catch (error) {
      head.replaceChildren(h('p', { class: 'muted' }, 'No item analysis to show.'))
      fail(error, 'The item analysis could not be computed')
      return
    }
    if (left) return
    renderHead(task, stats)
    renderRescoring(task.rescoring)
    if (task.rescoring?.active) timer = setTimeout(() => { void watchRescoring() }, POLL_RESCORING)
    grid.replaceChildren(...stats.questions.map((q) => questionCard(q, stats.sheets)))
    if (stats.sheets === 0) grid.replaceChildren(h('div', { class: 'card empty' }, h('p', null, 'No sheet of this task has been read yet.')))
  }

  const renderHead = (task: TaskSummary, stats: Statistics): void => {
    const known = stats.questions.filter((q) => q.discrimination !== null)
    const weak = known.filter((q) => (q.discrimination ?? 0) < LOW_DISCRIMINATION).length
    const answered = stats.questions.filter((q) => q.difficulty !== null)
    const mean = answered.length ? answered.reduce((sum, q) => sum + (q.difficulty ?? 0), 0) / answered.length : null
    replace(head,
      h('div', { class: 'batch-title' },
        h('div', null,
          h('div', { class: 'crumbs' }, h('a', { href: '#/batches' }, 'Batches'), ' / ', 'Task ', h('span', { class: 'mono' }, task.task_id)),
          h('h1', null, `Item analysis: ${task.name}`))),
      h('dl', { class: 'facts' },
        fact('Sheets', h('span', { id: 'stat-sheets' }, String(stats.sheets)), 'sheets'),
        fact('Questions', String(stats.questions.length), 'questions'),
        fact('KR-20', h('span', { id: 'stat-kr20' }, number(stats.kr20)), 'kr20'),
        fact('Mean difficulty', number(mean), 'mean-difficulty'),
        fact(`Discrimination < ${LOW_DISCRIMINATION}`, `${weak} of ${known.length}`, 'weak')),
      h('p', { class: 'muted stat-note' },
        'Over the task\'s sheets read OK or in review, corrections applied (failed sheets are left out). ',
        'Difficulty: the share of sheets that earned the question\'s full marks. ',
        'Discrimination: the point-biserial correlation of right/wrong with the number right on the other questions. ',
        'KR-20: the reliability of the whole test.'))
  }

  csvButton.addEventListener('click', async () => {
    if (csvButton.disabled) return
    csvButton.disabled = true
    try {
      const { blob, filename } = await getBlob(`${path}/statistics.csv`)
      saveBlob(blob, filename ?? `${taskId}-statistics.csv`)
    } catch (error) {
      fail(error, 'The CSV could not be downloaded')
    } finally {
      csvButton.disabled = false
    }
  })

  view.replaceChildren(h('div', { class: 'page page-statistics' },
    messages, head, rescoring,
    h('div', { class: 'section-head' }, h('h2', null, 'Questions'), h('div', { class: 'toolbar' }, csvButton)),
    grid))
  void load()
  return () => {
    left = true
    if (timer !== undefined) clearTimeout(timer)
  }
}

function number (value: number | null): string {
  return value === null ? '—' : value.toFixed(2)
}

const SVG = 'http://www.w3.org/2000/svg'

function svg (tag: string, attrs: Record<string, string | number>, ...children: (SVGElement | string)[]): SVGElement {
  const element = document.createElementNS(SVG, tag)
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value))
  for (const child of children) element.append(child)
  return element
}

const WIDTH = 280
const BAR_X = 104
const BAR_W = 132
const CHOICES_TOP = 66
const CHOICES_H = 70

/** One question: difficulty (0–1) and discrimination (−1–1, from a zero line) as bars, and a
 * column per choice, its height the share of sheets that marked it. */
export function questionCard (q: QuestionStatistics, sheets: number): HTMLElement {
  const weak = q.discrimination !== null && q.discrimination < LOW_DISCRIMINATION
  const choices = Object.entries(q.choices)
  const describe = `${q.question}: difficulty ${number(q.difficulty)}, discrimination ${number(q.discrimination)}; ` +
    choices.map(([value, count]) => `${value === '' ? 'blank' : value} ${count}`).join(', ')
  const zero = BAR_X + BAR_W / 2
  const disc = q.discrimination ?? 0
  const slot = Math.min(40, (WIDTH - 20) / Math.max(choices.length, 1))
  const columns = choices.map(([value, count], i) => {
    const share = sheets ? count / sheets : 0
    const height = Math.max(share * CHOICES_H, count ? 1 : 0)
    const x = 10 + i * slot
    return svg('g', { class: `stat-choice${value === '' ? ' stat-choice-blank' : ''}`, 'data-choice': value },
      svg('rect', { x: x + 4, y: CHOICES_TOP + CHOICES_H - height, width: slot - 8, height, rx: 2 }),
      svg('text', { x: x + slot / 2, y: CHOICES_TOP + CHOICES_H - height - 4, 'text-anchor': 'middle', class: 'stat-count' }, String(count)),
      svg('text', { x: x + slot / 2, y: CHOICES_TOP + CHOICES_H + 14, 'text-anchor': 'middle', class: 'stat-label' }, value === '' ? '—' : value))
  })
  const chart = svg('svg', { viewBox: `0 0 ${WIDTH} ${CHOICES_TOP + CHOICES_H + 20}`, role: 'img', 'aria-label': describe, class: 'stat-chart' },
    svg('title', {}, describe),
    svg('text', { x: 0, y: 14, class: 'stat-label' }, 'Difficulty'),
    svg('rect', { x: BAR_X, y: 4, width: BAR_W, height: 12, rx: 3, class: 'stat-track' }),
    svg('rect', { x: BAR_X, y: 4, width: (q.difficulty ?? 0) * BAR_W, height: 12, rx: 3, class: 'stat-difficulty' }),
    svg('text', { x: WIDTH, y: 14, 'text-anchor': 'end', class: 'stat-value' }, number(q.difficulty)),
    svg('text', { x: 0, y: 38, class: 'stat-label' }, 'Discrimination'),
    svg('rect', { x: BAR_X, y: 28, width: BAR_W, height: 12, rx: 3, class: 'stat-track' }),
    svg('rect', {
      x: disc < 0 ? zero + disc * BAR_W / 2 : zero, y: 28, width: Math.abs(disc) * BAR_W / 2, height: 12,
      class: `stat-discrimination${weak ? ' stat-weak' : ''}`,
    }),
    svg('line', { x1: zero, x2: zero, y1: 25, y2: 43, class: 'stat-zero' }),
    svg('text', { x: WIDTH, y: 38, 'text-anchor': 'end', class: 'stat-value' }, number(q.discrimination)),
    svg('line', { x1: 0, x2: WIDTH, y1: CHOICES_TOP + CHOICES_H, y2: CHOICES_TOP + CHOICES_H, class: 'stat-axis' }),
    ...columns)
  return h('article', { class: `card stat-card${weak ? ' stat-card-weak' : ''}`, 'data-question': q.question },
    h('header', { class: 'stat-head' }, h('strong', null, q.question), weak ? h('span', { class: 'stat-flag' }, 'low discrimination') : null),
    chart)
}
