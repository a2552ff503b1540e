// #/login: username and password → POST /api/auth/login; the token goes to sessionStorage.
import { login, takeFlash, takeNext } from '../api'
import { h, show } from '../ui'

export function loginPage (view: HTMLElement): () => void {
  const messages = h('div', { class: 'messages' })
  const username = h('input', {
    id: 'username', name: 'username', type: 'text', autocomplete: 'username', required: true,
    autocapitalize: 'none', spellcheck: 'false',
  })
  const password = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true })
  const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block' }, 'Sign in')
  let busy = false

  const form = h('form', { class: 'login-form', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'username' }, 'Username'), username),
    h('div', { class: 'field' }, h('label', { for: 'password' }, 'Password'), password),
    submit)

  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    if (busy) return
    if (!username.value.trim() || !password.value) {
      show(messages, 'error', 'Enter your username and password.')
      ;(username.value.trim() ? password : username).focus()
      return
    }
    busy = true
    submit.disabled = true
    submit.textContent = 'Signing in…'
    try {
      await login(username.value.trim(), password.value)
      location.hash = takeNext() ?? '#/upload'
    } catch (error) {
      show(messages, 'error', (error as Error).message, 'Sign-in failed')
      password.select()
    } finally {
      busy = false
      submit.disabled = false
      submit.textContent = 'Sign in'
    }
  })

  const flash = takeFlash()
  if (flash) show(messages, 'warning', flash)

  view.replaceChildren(h('div', { class: 'login-card card' },
    h('div', { class: 'login-brand' },
      h('span', { class: 'brand-mark brand-mark-large', 'aria-hidden': 'true' }, h('i'), h('i'), h('i'), h('i')),
      h('h1', null, 'omr-tus'),
      h('p', { class: 'muted' }, 'Upload scanned exam sheets and review what was read.')),
    messages, form))
  username.focus()
  return () => {}
}
