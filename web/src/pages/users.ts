// #/users (admins): every user with role, state, quota and usage; create a user, disable or
// enable one, reset a password, change a role, set a quota. The server keeps one enabled admin
// and says so (409) when a change would leave none.
import { ApiError, currentUser, getJson, sendJson, SignedOut } from '../api'
import { banner, dateCell, formatBytes, h, loading, progressBar, show } from '../ui'

export interface AdminUser {
  id: number, username: string, role: 'user' | 'admin', is_admin: boolean, disabled: boolean,
  disabled_at: string | null, quota_bytes: number | null, usage_bytes: number, created_at: string | null
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }

/** "20 GiB", "500M", "1.5 g", "" (no limit) → bytes, null for no limit; undefined if unreadable. */
export function parseBytes (text: string): number | null | undefined {
  const value = text.trim().toLowerCase()
  if (value === '' || value === 'none' || value === 'unlimited') return null
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/.exec(value)
  if (!match) return undefined
  return Math.round(Number(match[1]) * UNITS[match[2]])
}

function quotaText (bytes: number | null): string {
  return bytes === null ? '' : formatBytes(bytes).replace(/\.0 /, ' ')
}

export function usersPage (view: HTMLElement): () => void {
  let left = false
  const messages = h('div', { class: 'messages', id: 'users-messages' })
  const body = h('div', { class: 'card table-card' }, loading('Loading users…'))
  const me = currentUser()

  const fail = (error: unknown, title: string): void => {
    if (error instanceof SignedOut || left) return
    const status = error instanceof ApiError && error.status ? ` (HTTP ${error.status})` : ''
    show(messages, 'error', (error as Error).message + status, title)
  }

  const load = async (): Promise<void> => {
    try {
      const { users } = await getJson<{ users: AdminUser[] }>('/api/users')
      if (!left) render(users)
    } catch (error) { fail(error, 'The users could not be loaded') }
  }

  const change = async (user: AdminUser, values: Record<string, unknown>, done: string): Promise<void> => {
    try {
      const changed = await sendJson<AdminUser>('PATCH', `/api/users/${user.id}`, values)
      if (left) return
      show(messages, 'success', done.replace('{name}', changed.username), 'Saved')
      await load()
    } catch (error) { fail(error, `${user.username} was not changed`) }
  }

  const render = (users: AdminUser[]): void => {
    body.replaceChildren(h('table', { class: 'table users-table' },
      h('thead', null, h('tr', null,
        h('th', null, 'User'), h('th', null, 'Role'), h('th', null, 'State'), h('th', null, 'Quota'),
        h('th', null, 'Stored'), h('th', null, 'Created'), h('th', null, 'Password'))),
      h('tbody', null, users.map(row))))
  }

  const row = (user: AdminUser): HTMLElement => {
    const role = h('select', { 'aria-label': `Role of ${user.username}`, class: 'role-select' },
      h('option', { value: 'user', selected: user.role === 'user' }, 'user'),
      h('option', { value: 'admin', selected: user.role === 'admin' }, 'admin'))
    role.addEventListener('change', () => {
      void change(user, { role: role.value }, `{name} is now ${role.value === 'admin' ? 'an admin' : 'a user'}.`)
    })
    const state = h('button', {
      type: 'button', class: `btn btn-small ${user.disabled ? '' : 'btn-danger'}`, 'data-action': user.disabled ? 'enable' : 'disable',
      onclick: () => {
        if (!user.disabled && !confirm(`Disable ${user.username}? They are signed out and cannot sign in until enabled again.`)) return
        void change(user, { disabled: !user.disabled }, `{name} is ${user.disabled ? 'enabled' : 'disabled'}.`)
      },
    }, user.disabled ? 'Enable' : 'Disable')
    const quota = h('input', {
      type: 'text', class: 'quota-input', value: quotaText(user.quota_bytes), placeholder: 'no limit', size: 9,
      'aria-label': `Quota of ${user.username}`,
    })
    const saveQuota = (): void => {
      const bytes = parseBytes(quota.value)
      if (bytes === undefined) { show(messages, 'error', `“${quota.value}” is not a size: write e.g. 500 MiB, 20 GiB, or leave it empty for no limit.`, 'Quota not saved'); return }
      if (bytes === user.quota_bytes) return
      void change(user, { quota_bytes: bytes }, bytes === null ? '{name} has no quota.' : `{name} may store ${formatBytes(bytes)}.`)
    }
    quota.addEventListener('keydown', (event) => { if (event.key === 'Enter') saveQuota() })
    const quotaSave = h('button', { type: 'button', class: 'btn btn-small', onclick: saveQuota }, 'Set')
    const used = user.quota_bytes ? Math.min(100, 100 * user.usage_bytes / user.quota_bytes) : 0
    const password = h('input', {
      type: 'password', class: 'password-input', placeholder: 'new password', autocomplete: 'new-password',
      size: 12, 'aria-label': `New password for ${user.username}`,
    })
    const reset = h('button', {
      type: 'button', class: 'btn btn-small',
      onclick: () => {
        if (password.value.length < 8) { show(messages, 'error', 'A password has at least 8 characters.', 'Password not reset'); return }
        void change(user, { password: password.value }, 'The password of {name} is reset; their sessions are signed out.')
      },
    }, 'Reset')
    return h('tr', { 'data-username': user.username, 'data-state': user.disabled ? 'disabled' : 'enabled', class: user.disabled ? 'row-disabled' : null },
      h('th', { scope: 'row' }, user.username, user.username === me?.username ? h('span', { class: 'muted' }, ' (you)') : null),
      h('td', null, role),
      h('td', null, h('span', { class: `badge badge-${user.disabled ? 'failed' : 'completed'}` }, user.disabled ? 'Disabled' : 'Enabled'), ' ', state),
      h('td', null, h('div', { class: 'inline-edit' }, quota, quotaSave)),
      h('td', { class: 'cell-usage', 'data-usage': user.usage_bytes },
        h('span', null, formatBytes(user.usage_bytes), user.quota_bytes !== null ? h('span', { class: 'muted' }, ` of ${formatBytes(user.quota_bytes)}`) : null),
        user.quota_bytes !== null ? progressBar(used, used >= 90 ? 'failed' : 'processing', `Storage of ${user.username}`) : null),
      h('td', null, dateCell(user.created_at)),
      h('td', null, h('div', { class: 'inline-edit' }, password, reset)))
  }

  view.replaceChildren(h('div', { class: 'page page-users' },
    h('div', { class: 'page-head page-head-row' },
      h('div', null, h('h1', null, 'Users'),
        h('p', { class: 'muted' }, 'Who may upload, who administers, and how much each may store.')),
      h('div', { class: 'toolbar' }, h('button', { type: 'button', class: 'btn', onclick: () => { void load() } }, 'Refresh'))),
    messages, createForm(messages, () => load(), fail), body))
  void load()
  return () => { left = true }
}

function createForm (messages: HTMLElement, reload: () => Promise<void>,
  fail: (error: unknown, title: string) => void): HTMLElement {
  const username = h('input', { id: 'new-username', type: 'text', required: true, maxlength: 64, autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false' })
  const password = h('input', { id: 'new-password', type: 'password', required: true, minlength: 8, autocomplete: 'new-password' })
  const role = h('select', { id: 'new-role' }, h('option', { value: 'user' }, 'user'), h('option', { value: 'admin' }, 'admin'))
  const quota = h('input', { id: 'new-quota', type: 'text', placeholder: 'no limit, or e.g. 20 GiB' })
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create user')
  const form = h('form', { class: 'card create-user', novalidate: true },
    h('h2', null, 'New user'),
    h('div', { class: 'form-row' },
      h('div', { class: 'field' }, h('label', { for: 'new-username' }, 'Username'), username),
      h('div', { class: 'field' }, h('label', { for: 'new-password' }, 'Password'), password, h('small', { class: 'help' }, 'At least 8 characters')),
      h('div', { class: 'field' }, h('label', { for: 'new-role' }, 'Role'), role),
      h('div', { class: 'field' }, h('label', { for: 'new-quota' }, 'Quota'), quota),
      h('div', { class: 'field field-submit' }, submit)))
  form.addEventListener('submit', (event) => {
    event.preventDefault()
    const bytes = parseBytes(quota.value)
    if (!username.value.trim() || password.value.length < 8 || bytes === undefined) {
      messages.replaceChildren(banner('error', bytes === undefined
        ? `“${quota.value}” is not a size: write e.g. 500 MiB or 20 GiB, or leave it empty.`
        : 'A user needs a name and a password of at least 8 characters.', 'Check the form'))
      return
    }
    submit.disabled = true
    void sendJson<AdminUser>('POST', '/api/users', {
      username: username.value.trim(), password: password.value, role: role.value, quota_bytes: bytes,
    }).then(async (user) => {
      messages.replaceChildren(banner('success', `${user.username} can now sign in.`, 'User created'))
      form.reset()
      await reload()
    }, (error) => { fail(error, 'The user was not created') }).finally(() => { submit.disabled = false })
  })
  return form
}
