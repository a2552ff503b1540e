// #/storage (admins): what the incoming store (the RAM disk, or a bucket) and the durable
// directory hold and have free, and every user's stored bytes against their quota, largest
// first (GET /api/storage; `omr-tus storage` prints the same).
import { ApiError, getJson, SignedOut } from '../api'
import { formatBytes, h, loading, progressBar, show } from '../ui'

interface Store {
  kind: 'directory' | 'bucket', path?: string, bucket?: string, prefix?: string,
  used_bytes?: number, free_bytes?: number, total_bytes?: number, files?: number, truncated?: boolean
}
interface UserUsage { id: number, username: string, usage_bytes: number, quota_bytes: number | null }
interface Storage { incoming: Store, durable: Store, users: UserUsage[] }

const STORES: { key: 'incoming' | 'durable', title: string, text: string }[] = [
  { key: 'incoming', title: 'Incoming', text: 'Uploads in progress, and completed ones not yet moved.' },
  { key: 'durable', title: 'Durable', text: 'Completed uploads, kept for their batches.' },
]

function storeCard (title: string, text: string, store: Store, key: string): HTMLElement {
  if (store.kind === 'bucket') {
    return h('section', { class: 'card store-card', id: `store-${key}`, 'data-kind': 'bucket' },
      h('h2', null, title), h('p', { class: 'muted' }, text),
      h('p', null, 'S3 bucket ', h('code', null, `${store.bucket ?? ''}/${store.prefix ?? ''}`),
        ': a bucket has no free space to measure, and is not listed.'))
  }
  const used = store.used_bytes ?? 0
  const free = store.free_bytes ?? 0
  const share = used + free > 0 ? 100 * used / (used + free) : 0
  const files = `${store.files ?? 0}${store.truncated ? '+' : ''} files`
  return h('section', { class: 'card store-card', id: `store-${key}`, 'data-kind': 'directory' },
    h('h2', null, title), h('p', { class: 'muted' }, text),
    h('p', null, h('code', { class: 'store-path' }, store.path ?? '')),
    progressBar(share, share >= 90 ? 'failed' : 'processing', `${title} store: used of used and free`),
    h('p', { class: 'store-figures' },
      h('span', { class: 'store-used', 'data-bytes': used }, `${formatBytes(used)} used`), ' · ',
      h('span', { class: 'store-free', 'data-bytes': free }, `${formatBytes(free)} free`), ' · ',
      h('span', { class: 'store-files' }, files)),
    store.truncated ? h('p', { class: 'muted' }, 'Too many files to count them all: the figures stop at the first 100,000.') : null)
}

function userRow (user: UserUsage): HTMLElement {
  const quota = user.quota_bytes
  const share = quota ? Math.min(100, 100 * user.usage_bytes / quota) : 0
  return h('tr', { 'data-username': user.username },
    h('th', { scope: 'row' }, user.username),
    h('td', { class: 'cell-usage', 'data-usage': user.usage_bytes }, formatBytes(user.usage_bytes)),
    h('td', { class: 'cell-quota', 'data-quota': quota ?? '' }, quota === null ? h('span', { class: 'muted' }, 'no limit') : formatBytes(quota)),
    h('td', null, quota === null ? null : progressBar(share, share >= 90 ? 'failed' : 'processing', `Storage of ${user.username}`)))
}

export function storagePage (view: HTMLElement): () => void {
  let left = false
  const messages = h('div', { class: 'messages', id: 'storage-messages' })
  const body = h('div', { class: 'storage-body' }, loading('Measuring the stores…'))

  const load = async (): Promise<void> => {
    try {
      const storage = await getJson<Storage>('/api/storage')
      if (left) return
      body.replaceChildren(
        h('div', { class: 'store-grid' }, STORES.map((s) => storeCard(s.title, s.text, storage[s.key], s.key))),
        h('div', { class: 'card table-card' },
          h('table', { class: 'table', id: 'storage-users' },
            h('thead', null, h('tr', null,
              h('th', null, 'User'), h('th', null, 'Stored'), h('th', null, 'Quota'), h('th', null, 'Used'))),
            h('tbody', null, storage.users.map(userRow)))))
    } catch (error) {
      if (error instanceof SignedOut || left) return
      const status = error instanceof ApiError && error.status ? ` (HTTP ${error.status})` : ''
      show(messages, 'error', (error as Error).message + status, 'The storage figures could not be loaded')
    }
  }

  view.replaceChildren(h('div', { class: 'page page-storage', id: 'storage-page' },
    h('div', { class: 'page-head page-head-row' },
      h('div', null, h('h1', null, 'Storage'),
        h('p', { class: 'muted' }, 'What the stores hold and have free, and what each user stores.')),
      h('div', { class: 'toolbar' }, h('button', { type: 'button', class: 'btn', onclick: () => { void load() } }, 'Refresh'))),
    messages, body))
  void load()
  return () => { left = true }
}
