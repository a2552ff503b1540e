// The omr-tus web page: hash routes, the header, and the page of each route.
//   #/login  #/upload  #/batches  #/batches/{id}  #/sheets/{id}  #/statistics/{task_id}
//   (admins) #/users  #/tasks  #/tasks/{id}  #/storage
import '@uppy/core/css/style.min.css'
import '@uppy/dashboard/css/style.min.css'
import './styles.css'

import { currentUser, onSignOut, refreshUser, signOut, SignedOut, token } from './api'
import { batchPage } from './pages/batch'
import { batchesPage } from './pages/batches'
import { loginPage } from './pages/login'
import { sheetPage } from './pages/sheet'
import { statisticsPage } from './pages/statistics'
import { storagePage } from './pages/storage'
import { taskPage, tasksPage } from './pages/tasks'
import { disposeUploads, onUploadActivity, uploadPage } from './pages/upload'
import { usersPage } from './pages/users'
import { h, replace, show } from './ui'

/** What a page returns: an optional clean-up run when the user leaves it (timers, requests). */
export type Cleanup = (() => void) | void

const app = document.getElementById('app') as HTMLElement
let cleanup: Cleanup
let renderId = 0

const navLinks: Record<string, HTMLAnchorElement> = {}
const ADMIN_PAGES: Record<string, string> = { users: 'Users', tasks: 'Tasks', storage: 'Storage' }  // nav entries only admins see
const uploadActivity = h('span', { class: 'nav-activity', hidden: true })

function header (): HTMLElement {
  const user = currentUser()
  navLinks.upload = h('a', { href: '#/upload', class: 'nav-link' }, 'Upload', uploadActivity)
  navLinks.batches = h('a', { href: '#/batches', class: 'nav-link' }, user?.is_admin ? 'All batches' : 'My batches')
  for (const name of Object.keys(ADMIN_PAGES)) delete navLinks[name]
  if (user?.is_admin) {
    for (const [name, title] of Object.entries(ADMIN_PAGES)) {
      navLinks[name] = h('a', { href: `#/${name}`, class: 'nav-link', 'data-nav': name }, title)
    }
  }
  return h('header', { class: 'topbar' },
    h('div', { class: 'topbar-inner' },
      h('a', { class: 'brand', href: '#/upload', 'aria-label': 'omr-tus home' },
        h('span', { class: 'brand-mark', 'aria-hidden': 'true' }, h('i'), h('i'), h('i'), h('i')),
        h('span', { class: 'brand-name' }, 'omr-tus'),
        h('span', { class: 'brand-tagline' }, 'Exam sheet uploads')),
      h('nav', { class: 'nav', 'aria-label': 'Main' }, Object.values(navLinks)),
      h('div', { class: 'user' },
        h('span', { class: 'user-avatar', 'aria-hidden': 'true' }, (user?.username ?? '?').slice(0, 1).toUpperCase()),
        h('span', { class: 'user-name', 'data-testid': 'user-name' }, user?.username ?? ''),
        user?.is_admin ? h('span', { class: 'user-role' }, 'admin') : null,
        h('button', {
          type: 'button', class: 'btn btn-ghost btn-small logout', onclick: () => {
            signOut()
          },
        }, 'Sign out'))))
}

function footer (): HTMLElement {
  return h('footer', { class: 'footer' },
    h('span', null, 'omr-tus — resumable uploads and optical mark recognition of exam sheets'),
    h('a', { href: '/openapi.json', target: '_blank', rel: 'noopener' }, 'API (OpenAPI)'))
}

let shell: { root: HTMLElement, view: HTMLElement } | null = null

function layout (): HTMLElement {
  if (!shell) {
    const view = h('main', { class: 'view', id: 'view' })
    shell = { root: h('div', { class: 'shell' }, header(), view, footer()), view }
  }
  if (shell.root.parentElement !== app) replace(app, shell.root)
  return shell.view
}

onSignOut(() => {
  disposeUploads()
  shell = null
})

onUploadActivity((text) => {
  uploadActivity.textContent = text ?? ''
  uploadActivity.hidden = !text
})

function parseRoute (): string[] {
  const hash = location.hash.replace(/^#\/?/, '').split('?')[0]
  return hash.split('/').filter(Boolean).map(decodeURIComponent)
}

async function render (): Promise<void> {
  const id = ++renderId
  if (typeof cleanup === 'function') cleanup()
  cleanup = undefined
  const [page = '', param] = parseRoute()

  if (page === 'login' || !token()) {
    if (page !== 'login') { location.replace('#/login'); return }
    shell = null
    const view = h('main', { class: 'view view-login' })
    replace(app, view)
    cleanup = loginPage(view)
    return
  }
  if (!currentUser()) {
    try { await refreshUser() } catch (error) { if (error instanceof SignedOut) return }
    if (id !== renderId) return
  }

  const view = layout()
  for (const [name, link] of Object.entries(navLinks)) {
    const active = name === page || (name === 'batches' && page === 'sheets')
    link.classList.toggle('active', active)
    if (active) link.setAttribute('aria-current', 'page')
    else link.removeAttribute('aria-current')
  }
  view.replaceChildren()
  try {
    switch (page) {
      case 'upload':
        view.appendChild(uploadPage())
        break
      case 'batches':
        cleanup = param ? batchPage(view, param) : batchesPage(view)
        break
      case 'sheets':
        if (!param) { location.replace('#/batches'); return }
        cleanup = sheetPage(view, param)
        break
      case 'statistics':
        if (!param) { location.replace('#/batches'); return }
        cleanup = statisticsPage(view, param)
        break
      case 'users':
      case 'tasks':
      case 'storage':
        if (!currentUser()?.is_admin) { location.replace('#/upload'); return }
        cleanup = page === 'users' ? usersPage(view) : page === 'storage' ? storagePage(view) : param ? taskPage(view, param) : tasksPage(view)
        break
      default:
        location.replace('#/upload')
        return
    }
  } catch (error) {
    if (!(error instanceof SignedOut)) show(view, 'error', (error as Error).message, 'This page failed to open')
  }
  document.title = `${titles[page] ?? 'omr-tus'} — omr-tus`
  window.scrollTo(0, 0)
}

const titles: Record<string, string> = { upload: 'Upload', batches: 'Batches', sheets: 'Review', statistics: 'Item analysis', login: 'Sign in', ...ADMIN_PAGES }

window.addEventListener('hashchange', () => { void render() })
window.addEventListener('unhandledrejection', (event) => {
  if (event.reason instanceof SignedOut) event.preventDefault()
})
void render()
