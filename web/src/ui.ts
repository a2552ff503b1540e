// Small DOM helpers: elements, banners, badges, progress bars and formatting.

type Child = Node | string | number | null | undefined | false
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>

/** h('a', {href: '#/x', class: 'btn'}, 'text', child): an element; `on*` attributes are listeners. */
export function h<K extends keyof HTMLElementTagNameMap> (tag: K, attrs: Attrs | null = null,
  ...children: (Child | Child[])[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag)
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value as EventListener)
    } else if (value === true) {
      element.setAttribute(name, '')
    } else {
      element.setAttribute(name, String(value))
    }
  }
  append(element, children)
  return element
}

function append (parent: Node, children: (Child | Child[])[]): void {
  for (const child of children) {
    if (Array.isArray(child)) append(parent, child)
    else if (child !== null && child !== undefined && child !== false) {
      parent.appendChild(child instanceof Node ? child : document.createTextNode(String(child)))
    }
  }
}

export function replace (parent: Element, ...children: (Child | Child[])[]): void {
  parent.replaceChildren()
  append(parent, children)
}

export type BannerKind = 'error' | 'success' | 'info' | 'warning'

/** A message box; errors are announced to screen readers (role=alert) and can be closed. */
export function banner (kind: BannerKind, message: string | Node, title?: string): HTMLElement {
  const box = h('div', { class: `banner banner-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    h('div', { class: 'banner-body' }, title ? h('strong', { class: 'banner-title' }, title) : null,
      h('span', { class: 'banner-message' }, message)),
    h('button', { class: 'banner-close', type: 'button', 'aria-label': 'Dismiss', onclick: () => box.remove() }, '×'))
  return box
}

/** Puts one banner in `slot` (replacing what was there). */
export function show (slot: Element, kind: BannerKind, message: string | Node, title?: string): HTMLElement {
  const box = banner(kind, message, title)
  slot.replaceChildren(box)
  return box
}

const STATUS_LABELS: Record<string, string> = {
  uploaded: 'Queued', processing: 'Processing', completed: 'Completed', failed: 'Failed',
  pending: 'Pending', ok: 'OK', needs_review: 'Needs review',
}

export function badge (status: string): HTMLElement {
  return h('span', { class: `badge badge-${status.replace(/[^a-z_]/gi, '')}`, 'data-status': status },
    STATUS_LABELS[status] ?? status)
}

/** A labelled progress bar; `value` in 0–100. */
export function progressBar (value: number, status: string, label?: string): HTMLElement {
  const pct = Math.max(0, Math.min(100, value))
  const bar = h('div', {
    class: `progress progress-${status}`, role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100,
    'aria-valuenow': Math.round(pct), 'aria-label': label ?? 'Progress',
  }, h('div', { class: 'progress-fill' }))
  ;(bar.firstElementChild as HTMLElement).style.width = `${pct}%`
  return bar
}

export function setProgress (bar: HTMLElement, value: number, status: string): void {
  const pct = Math.max(0, Math.min(100, value))
  bar.className = `progress progress-${status}`
  bar.setAttribute('aria-valuenow', String(Math.round(pct)))
  const fill = bar.firstElementChild as HTMLElement | null
  if (fill) fill.style.width = `${pct}%`
}

export function formatBytes (bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) return '—'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++ }
  return `${unit === 0 ? value : value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' })

export function formatDate (iso: string | null | undefined): string {
  if (!iso) return '—'
  const date = new Date(iso)
  return Number.isNaN(date.getTime()) ? iso : dateFormat.format(date)
}

export function dateCell (iso: string | null | undefined): HTMLElement {
  return h('time', { datetime: iso ?? '', title: iso ?? '' }, formatDate(iso))
}

/** A placeholder while something loads. */
export function loading (what = 'Loading…'): HTMLElement {
  return h('div', { class: 'loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), what)
}

/** Saves a blob under a file name, as a download. */
export function saveBlob (blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob)
  const link = h('a', { href: url, download: filename, hidden: true })
  document.body.appendChild(link)
  link.click()
  link.remove()
  setTimeout(() => URL.revokeObjectURL(url), 60_000)
}

export function shortId (id: string): string {
  return id.length > 12 ? `${id.slice(0, 8)}…` : id
}
