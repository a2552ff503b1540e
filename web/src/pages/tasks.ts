// #/tasks (admins): register a task by dropping the OMRChecker files an office already has
// (template.json, config.json, evaluation.json and the files they name), the list of tasks;
// #/tasks/{id}: the template drawn over a blank sheet, and the answer key to edit.
import { ApiError, getBlob, getJson, putJson, sendForm, SignedOut } from '../api'
import { banner, dateCell, h, loading, show } from '../ui'

interface TaskRow { task_id: string, name: string, created_at: string | null, updated_at: string | null }
interface TaskList { tasks: TaskRow[], total: number, limit: number, offset: number }
interface Task extends TaskRow {
  template: Record<string, unknown>, answer_key: Record<string, unknown> | null,
  config: Record<string, unknown> | null, assets: { name: string, size: number }[]
}

const JSON_FILES = ['template', 'config', 'evaluation'] as const
const MARKER_DEFAULT = 'omr_marker.jpg'  // OMRChecker's CropOnMarkers marker without relativePath
const UNUSED_SHOWN = 8  // files a dropped folder holds that nothing names (its scans): listed up to this

function failure (messages: HTMLElement, error: unknown, title: string): void {
  if (error instanceof SignedOut) return
  const status = error instanceof ApiError && error.status ? ` (HTTP ${error.status})` : ''
  show(messages, 'error', (error as Error).message + status, title)
}

/** Every string in a JSON document that may name a file (relativePath, reference, answer_key_csv_path, …). */
function namedFiles (data: unknown, into = new Set<string>()): Set<string> {
  if (Array.isArray(data)) for (const item of data) namedFiles(item, into)
  else if (data && typeof data === 'object') for (const item of Object.values(data)) namedFiles(item, into)
  else if (typeof data === 'string' && data.includes('.')) into.add(data)
  return into
}

function baseName (path: string): string {
  return path.split(/[\\/]/).pop() ?? path
}

/** A dropped file and its path inside the dropped folder (its name when a file was dropped). */
interface Dropped { path: string, file: File }

/** The files of dropped folders (walked whole) and files. */
async function droppedFiles (data: DataTransfer): Promise<Dropped[]> {
  const entries = Array.from(data.items, (item) => item.webkitGetAsEntry()).filter((e): e is FileSystemEntry => e !== null)
  if (entries.length === 0) return Array.from(data.files, (file) => ({ path: file.name, file }))
  const found: Dropped[] = []
  const walk = async (entry: FileSystemEntry, prefix: string): Promise<void> => {
    if (entry.isFile) {
      const file = await new Promise<File>((resolve, reject) => { (entry as FileSystemFileEntry).file(resolve, reject) })
      found.push({ path: prefix + entry.name, file })
    } else if (entry.isDirectory) {
      const reader = (entry as FileSystemDirectoryEntry).createReader()
      for (;;) {  // readEntries answers in batches until an empty one
        const batch = await new Promise<FileSystemEntry[]>((resolve, reject) => { reader.readEntries(resolve, reject) })
        if (batch.length === 0) break
        for (const child of batch) await walk(child, `${prefix}${entry.name}/`)
      }
    }
  }
  for (const entry of entries) await walk(entry, '')
  // one folder dropped: paths inside it, as its JSON files name them
  const top = entries.length === 1 && entries[0].isDirectory ? `${entries[0].name}/` : ''
  return found.map((d) => ({ path: d.path.slice(top.length), file: d.file }))
}

/** The dropped files sorted out: the three JSON files (at the top of a dropped folder), the
 * assets under the names the JSON uses (the same path, else the same file name), the names
 * nothing was dropped for, and files nothing names. */
async function sortFiles (files: Dropped[]): Promise<{
  documents: Partial<Record<typeof JSON_FILES[number], File>>, assets: Map<string, File>,
  missing: string[], unused: Dropped[], problem: string | null
}> {
  const documents: Partial<Record<typeof JSON_FILES[number], File>> = {}
  const others: Dropped[] = []
  for (const dropped of files) {
    const field = JSON_FILES.find((name) => dropped.path === `${name}.json`)
    if (field) documents[field] = dropped.file
    else others.push(dropped)
  }
  const names = new Set<string>()
  let problem: string | null = null
  for (const field of ['template', 'evaluation'] as const) {
    const file = documents[field]
    if (!file) continue
    let data: unknown
    try { data = JSON.parse(await file.text()) } catch (error) {
      problem = `${file.name} is not valid JSON: ${(error as Error).message}`
      continue
    }
    const record = (data && typeof data === 'object' ? data : {}) as Record<string, unknown>
    if (field === 'template') {
      const steps = Array.isArray(record.preProcessors) ? record.preProcessors as Record<string, unknown>[] : []
      namedFiles(steps, names)
      const markers = steps.filter((step) => step?.name === 'CropOnMarkers')
      if (markers.some((step) => !(step.options as Record<string, unknown> | undefined)?.relativePath)) names.add(MARKER_DEFAULT)
    } else {
      namedFiles(record.options, names)
    }
  }
  const assets = new Map<string, File>()
  const missing: string[] = []
  for (const name of names) {
    const found = others.find((d) => d.path === name) ?? others.find((d) => d.file.name === baseName(name))
    if (found) assets.set(name, found.file)
    else missing.push(name)
  }
  const used = new Set(assets.values())
  return { documents, assets, missing, unused: others.filter((d) => !used.has(d.file)), problem }
}

export function tasksPage (view: HTMLElement): () => void {
  let left = false
  const messages = h('div', { class: 'messages', id: 'tasks-messages' })
  const list = h('div', { class: 'card table-card' }, loading('Loading tasks…'))

  const load = async (): Promise<void> => {
    try {
      const answer = await getJson<TaskList>('/api/tasks?limit=1000')
      if (left) return
      list.replaceChildren(answer.tasks.length === 0
        ? h('div', { class: 'empty' }, h('p', null, 'No task is registered yet: drop its files above.'))
        : h('table', { class: 'table tasks-table' },
          h('thead', null, h('tr', null, h('th', null, 'Task'), h('th', null, 'Name'), h('th', null, 'Registered'), h('th', null, 'Changed'))),
          h('tbody', null, answer.tasks.map((task) => {
            const href = `#/tasks/${encodeURIComponent(task.task_id)}`
            const tr = h('tr', { class: 'clickable', 'data-task-id': task.task_id },
              h('td', { class: 'mono' }, h('a', { href, class: 'row-link' }, task.task_id)),
              h('td', null, task.name), h('td', null, dateCell(task.created_at)), h('td', null, dateCell(task.updated_at)))
            tr.addEventListener('click', (event) => { if (!(event.target as Element).closest('a')) location.hash = href })
            return tr
          }))))
    } catch (error) { if (!left) failure(messages, error, 'The tasks could not be loaded') }
  }

  view.replaceChildren(h('div', { class: 'page page-tasks' },
    h('div', { class: 'page-head' }, h('h1', null, 'Tasks'),
      h('p', { class: 'muted' }, 'Each exam’s sheet template and answer key, from the OMRChecker files you already have.')),
    messages, registerForm(messages, load), h('h2', null, 'Registered tasks'), list))
  void load()
  return () => { left = true }
}

function registerForm (messages: HTMLElement, reload: () => Promise<void>): HTMLElement {
  let files: Dropped[] = []
  const taskId = h('input', { id: 'new-task-id', type: 'text', inputmode: 'numeric', maxlength: 8, pattern: '\\d{8}', placeholder: 'e.g. 11600111', autocomplete: 'off' })
  const name = h('input', { id: 'new-task-name', type: 'text', maxlength: 256, placeholder: 'e.g. Physics, June' })
  const picker = h('input', { type: 'file', multiple: true, id: 'task-files', class: 'visually-hidden', accept: '.json,.csv,.png,.jpg,.jpeg' })
  const folderPicker = h('input', { type: 'file', webkitdirectory: true, id: 'task-folder', class: 'visually-hidden' })
  const checklist = h('ul', { class: 'file-checklist', id: 'task-checklist' })
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', disabled: true }, 'Register task')
  const drop = h('label', { class: 'dropzone', for: 'task-files', id: 'task-dropzone' },
    h('strong', null, 'Drop the OMRChecker folder, or template.json, config.json, evaluation.json and their files, here'),
    h('span', { class: 'muted' }, 'marker and reference images, answer_key.csv … — or click to choose them'), picker)

  const refresh = async (): Promise<void> => {
    const sorted = await sortFiles(files)
    const items: HTMLElement[] = []
    const line = (ok: boolean | null, text: string, note = ''): HTMLElement =>
      h('li', { class: ok === null ? 'item-unused' : ok ? 'item-ok' : 'item-missing' },
        h('span', { class: 'check', 'aria-hidden': 'true' }, ok === null ? '·' : ok ? '✓' : '✗'), text,
        note ? h('span', { class: 'muted' }, ` — ${note}`) : null)
    items.push(line(Boolean(sorted.documents.template), 'template.json', sorted.documents.template ? '' : 'required'))
    for (const field of ['config', 'evaluation'] as const) {
      if (sorted.documents[field]) items.push(line(true, `${field}.json`))
    }
    for (const [asset] of sorted.assets) items.push(line(true, asset, 'named by the template or evaluation'))
    for (const asset of sorted.missing) items.push(line(false, asset, 'named, not dropped yet'))
    for (const d of sorted.unused.slice(0, UNUSED_SHOWN)) items.push(line(null, d.path, 'not named by any file: not sent'))
    if (sorted.unused.length > UNUSED_SHOWN) items.push(line(null, `and ${sorted.unused.length - UNUSED_SHOWN} more files`, 'not sent'))
    checklist.replaceChildren(...(files.length ? items : []))
    submit.disabled = !sorted.documents.template
    if (sorted.problem) show(messages, 'error', sorted.problem, 'A file cannot be read')
  }
  const add = (added: Dropped[]): void => {
    const byPath = new Map(files.map((d) => [d.path, d]))
    for (const d of added) byPath.set(d.path, d)
    files = [...byPath.values()]
    void refresh()
  }
  folderPicker.addEventListener('change', () => {  // paths inside the chosen folder, as from a dropped one
    add(Array.from(folderPicker.files ?? [], (file) => ({ path: file.webkitRelativePath.replace(/^[^/]*\//, ''), file })))
    folderPicker.value = ''
  })
  picker.addEventListener('change', () => {
    add(Array.from(picker.files ?? [], (file) => ({ path: file.name, file })))
    picker.value = ''
  })
  drop.addEventListener('dragover', (event) => { event.preventDefault(); drop.classList.add('dragging') })
  drop.addEventListener('dragleave', () => { drop.classList.remove('dragging') })
  drop.addEventListener('drop', (event) => {
    event.preventDefault()
    drop.classList.remove('dragging')
    if (event.dataTransfer) {
      droppedFiles(event.dataTransfer).then(add, (error) => { failure(messages, error, 'The dropped files cannot be read') })
    }
  })
  const clear = h('button', { type: 'button', class: 'btn', onclick: () => { files = []; void refresh() } }, 'Clear files')

  const form = h('form', { class: 'card register-task', novalidate: true },
    h('h2', null, 'Register a task'),
    h('div', { class: 'form-row' },
      h('div', { class: 'field' }, h('label', { for: 'new-task-id' }, 'Task id'), taskId, h('small', { class: 'help' }, '8 digits, as on the sheets’ QR codes')),
      h('div', { class: 'field field-wide' }, h('label', { for: 'new-task-name' }, 'Name'), name)),
    drop, h('p', { class: 'help' }, 'Or ', h('label', { for: 'task-folder', class: 'link' }, 'choose the folder'), folderPicker, '.'),
    checklist, h('div', { class: 'toolbar' }, submit, clear))
  form.addEventListener('submit', (event) => {
    event.preventDefault()
    if (!/^\d{8}$/.test(taskId.value.trim())) {
      messages.replaceChildren(banner('error', 'The task id is 8 digits, as printed in the sheets’ QR codes.', 'Check the form'))
      taskId.focus()
      return
    }
    submit.disabled = true
    void (async () => {
      const sorted = await sortFiles(files)
      const body = new FormData()
      body.append('task_id', taskId.value.trim())
      if (name.value.trim()) body.append('name', name.value.trim())
      for (const field of JSON_FILES) {
        const file = sorted.documents[field]
        if (file) body.append(field, file, file.name)
      }
      for (const [asset, file] of sorted.assets) body.append('asset', file, asset)
      try {
        const task = await sendForm<Task>('POST', '/api/tasks', body)
        messages.replaceChildren(banner('success', h('span', null, `Task ${task.task_id} (${task.name}) is registered. `,
          h('a', { href: `#/tasks/${encodeURIComponent(task.task_id)}` }, 'See its template on a blank sheet →')), 'Task registered'))
        files = []
        form.reset()
        await refresh()
        await reload()
      } catch (error) {
        failure(messages, error, 'The task was not registered')
      } finally { submit.disabled = files.length === 0 }
    })()
  })
  return form
}

export function taskPage (view: HTMLElement, taskId: string): () => void {
  let left = false
  let imageUrl: string | null = null
  const path = `/api/tasks/${encodeURIComponent(taskId)}`
  const messages = h('div', { class: 'messages', id: 'task-messages' })
  const head = h('section', { class: 'card' }, loading('Loading the task…'))
  const figure = h('figure', { class: 'card task-preview' }, loading('Drawing the template on a blank sheet…'))
  const keyCard = h('section', { class: 'card answer-key' })

  const preview = async (): Promise<void> => {
    try {
      const { blob } = await getBlob(`${path}/preview.png`)
      if (left) return
      if (imageUrl) URL.revokeObjectURL(imageUrl)
      imageUrl = URL.createObjectURL(blob)
      figure.replaceChildren(
        h('a', { href: imageUrl, target: '_blank', rel: 'noopener' },
          h('img', { src: imageUrl, id: 'task-preview', alt: `Template of task ${taskId} over a blank sheet` })),
        h('figcaption', { class: 'muted' }, 'Each field block framed in its own colour, every bubble outlined; markers in red, the QR box in blue.'))
    } catch (error) {
      if (!left && !(error instanceof SignedOut)) {
        figure.replaceChildren(h('div', { class: 'image-missing' }, h('strong', null, 'No preview'), h('span', { class: 'muted' }, (error as Error).message)))
      }
    }
  }

  const render = (task: Task): void => {
    head.replaceChildren(
      h('div', { class: 'crumbs' }, h('a', { href: '#/tasks' }, 'Tasks'), ' / ', h('span', { class: 'mono' }, task.task_id)),
      h('h1', null, task.name),
      h('p', null, h('a', { href: `#/statistics/${encodeURIComponent(task.task_id)}`, id: 'task-statistics' }, 'Item analysis and rescoring progress')),
      h('dl', { class: 'facts' },
        fact('Task id', task.task_id, true), fact('Page', (task.template.pageDimensions as number[] | undefined)?.join(' × ') ?? '—'),
        fact('Field blocks', Object.keys((task.template.fieldBlocks as object | undefined) ?? {}).length),
        fact('Files', task.assets.map((a) => a.name).join(', ') || '—'),
        fact('Changed', dateCell(task.updated_at))))
    const editor = h('textarea', {
      id: 'answer-key', class: 'mono', rows: 14, spellcheck: 'false',
      'aria-label': 'Answer key (OMRChecker evaluation.json)',
    })
    editor.value = task.answer_key ? JSON.stringify(task.answer_key, null, 2) : ''
    const save = h('button', { type: 'button', class: 'btn btn-primary', id: 'save-key' }, 'Save answer key')
    save.addEventListener('click', () => {
      let key: unknown = null
      if (editor.value.trim()) {
        try { key = JSON.parse(editor.value) } catch (error) {
          show(messages, 'error', `The answer key is not valid JSON: ${(error as Error).message}`, 'Not saved')
          return
        }
      }
      save.disabled = true
      putJson<Task>(path, { name: task.name, template: task.template, config: task.config, answer_key: key })
        .then((saved) => {
          if (left) return
          show(messages, 'success', 'The sheets of this task are being rescored with the new key (progress under Item analysis).', 'Answer key saved')
          render(saved)
        }, (error) => { failure(messages, error, 'The answer key was not saved') })
        .finally(() => { save.disabled = false })
    })
    keyCard.replaceChildren(h('h2', null, 'Answer key'),
      h('p', { class: 'muted' }, 'As in OMRChecker’s evaluation.json: questions, answers and marking schemes. Empty: no scoring.'),
      editor, h('div', { class: 'toolbar' }, save))
  }

  view.replaceChildren(h('div', { class: 'page page-task' }, messages, head,
    h('div', { class: 'task-grid' }, figure, keyCard)))
  getJson<Task>(path).then((task) => { if (!left) render(task) },
    (error) => { if (!left) { head.replaceChildren(h('p', { class: 'muted' }, 'No task to show.')); failure(messages, error, 'The task could not be loaded') } })
  void preview()
  return () => {
    left = true
    if (imageUrl) { const url = imageUrl; setTimeout(() => URL.revokeObjectURL(url), 1000) }
  }
}

function fact (label: string, value: string | number | Node, mono = false): HTMLElement {
  return h('div', { class: 'fact' }, h('dt', null, label), h('dd', { class: mono ? 'mono' : null }, value))
}
