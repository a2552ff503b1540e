// The API client of the page: the bearer token in sessionStorage, JSON calls, blobs, and the
// one rule for a 401 anywhere: forget the session and go back to the login page.

export const TOKEN_KEY = 'omr-tus.token'  // also read by /lib/chunked-upload.js
const USER_KEY = 'omr-tus.user'
const FLASH_KEY = 'omr-tus.flash'
const NEXT_KEY = 'omr-tus.next'

export interface User {
  id: number | string | null, username: string, is_admin: boolean,
  quota_bytes?: number | null, usage_bytes?: number
}

export interface Batch {
  batch_id: string, upload_id: string, filename: string | null, size: number, sha256: string | null,
  upload_type: string, task_id: string | null, status: BatchStatus, total_sheets: number,
  processed_sheets: number, failed_sheets: number, created_at: string | null, updated_at: string | null,
  completed_at: string | null, skipped: { entry: string, reason: string }[], error: string | null,
  file_deleted_at?: string | null
}
export type BatchStatus = 'uploaded' | 'processing' | 'completed' | 'failed'
export interface BatchList { batches: Batch[], total: number, limit: number, offset: number }
export interface Progress {
  batch_id: string, status: BatchStatus, total_sheets: number, processed_sheets: number,
  failed_sheets: number, progress_percentage: number
}
export interface SheetResult {
  sheet_id?: number | string, source: string, page: number, task_id: string | null, student_id: string | null,
  status: string, score: number | null, answers: Record<string, string>, flags: Record<string, string[]>,
  confidence: Record<string, number>, error: string | null, rescoring?: boolean
}
export interface Results { batch_id: string, sheets: SheetResult[] }
export interface Correction { value: string, original: string | null, by: string | null, at: string | null }
export interface Sheet extends SheetResult {
  batch_id: string, corrections?: Record<string, Correction>
}

export class ApiError extends Error {
  readonly status: number
  constructor (message: string, status: number) {
    super(message)
    this.name = 'ApiError'
    this.status = status
  }
}

/** Thrown after a 401 has sent the user back to the login page: callers just stop. */
export class SignedOut extends Error {
  constructor () { super('signed out'); this.name = 'SignedOut' }
}

export function token (): string | null {
  return sessionStorage.getItem(TOKEN_KEY)
}

let cachedUser: User | null = null

export function currentUser (): User | null {
  if (cachedUser) return cachedUser
  const raw = sessionStorage.getItem(USER_KEY)
  if (!raw) return null
  try { cachedUser = JSON.parse(raw) as User } catch { cachedUser = null }
  return cachedUser
}

function setSession (accessToken: string, user: User): void {
  sessionStorage.setItem(TOKEN_KEY, accessToken)
  sessionStorage.setItem(USER_KEY, JSON.stringify(user))
  cachedUser = user
}

const signOutListeners: (() => void)[] = []
export function onSignOut (listener: () => void): void { signOutListeners.push(listener) }

/** Forgets the session; with a message, the login page shows it. */
export function signOut (message?: string): void {
  const hadSession = token() !== null
  sessionStorage.removeItem(TOKEN_KEY)
  sessionStorage.removeItem(USER_KEY)
  cachedUser = null
  if (message) sessionStorage.setItem(FLASH_KEY, message)
  if (hadSession) for (const listener of signOutListeners) listener()
  if (location.hash !== '#/login') {
    if (message && !location.hash.startsWith('#/login')) sessionStorage.setItem(NEXT_KEY, location.hash)
    location.hash = '#/login'
  }
}

export function takeFlash (): string | null {
  const message = sessionStorage.getItem(FLASH_KEY)
  sessionStorage.removeItem(FLASH_KEY)
  return message
}

export function takeNext (): string | null {
  const next = sessionStorage.getItem(NEXT_KEY)
  sessionStorage.removeItem(NEXT_KEY)
  return next
}

export const SESSION_EXPIRED = 'Your session has expired or was revoked. Please sign in again.'

/** The readable message of an error answer: `{"detail"}` on /api, plain text on tus routes. */
export async function errorMessage (response: Response): Promise<string> {
  const text = await response.text().catch(() => '')
  try {
    const body = JSON.parse(text)
    if (typeof body?.detail === 'string') return body.detail
    if (body?.detail) return JSON.stringify(body.detail)
  } catch { /* not JSON */ }
  return text.trim() || `${response.status} ${response.statusText}`
}

async function send (path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers)
  const bearer = token()
  if (bearer) headers.set('Authorization', `Bearer ${bearer}`)
  let response: Response
  try {
    response = await fetch(path, { ...init, headers })
  } catch (error) {
    if ((error as Error)?.name === 'AbortError') throw error
    throw new ApiError(`The server cannot be reached (${(error as Error).message}). Check your connection.`, 0)
  }
  if (response.status === 401) {
    signOut(SESSION_EXPIRED)
    throw new SignedOut()
  }
  if (!response.ok) throw new ApiError(await errorMessage(response), response.status)
  return response
}

export async function getJson<T> (path: string, signal?: AbortSignal): Promise<T> {
  const response = await send(path, { headers: { Accept: 'application/json' }, signal })
  return await response.json() as T
}

export async function putJson<T> (path: string, body: unknown): Promise<T> {
  return await sendJson<T>('PUT', path, body)
}

/** A JSON body (POST, PUT, PATCH) answered with JSON. */
export async function sendJson<T> (method: string, path: string, body: unknown): Promise<T> {
  const response = await send(path, {
    method, body: JSON.stringify(body),
    headers: { Accept: 'application/json', 'Content-Type': 'application/json' },
  })
  return await response.json() as T
}

/** A DELETE answered with 204. */
export async function deleteResource (path: string): Promise<void> {
  await send(path, { method: 'DELETE' })
}

/** A multipart form (files) answered with JSON. */
export async function sendForm<T> (method: string, path: string, form: FormData): Promise<T> {
  const response = await send(path, { method, body: form, headers: { Accept: 'application/json' } })
  return await response.json() as T
}

/** A protected file (an image, a CSV) as a blob, with the name from Content-Disposition. */
export async function getBlob (path: string, signal?: AbortSignal): Promise<{ blob: Blob, filename: string | null }> {
  const response = await send(path, { signal })
  return { blob: await response.blob(), filename: filenameOf(response.headers.get('Content-Disposition')) }
}

/** `attachment; filename="a.csv"; filename*=UTF-8''a%20b.csv` → the best name in it. */
export function filenameOf (disposition: string | null): string | null {
  if (!disposition) return null
  const extended = /filename\*\s*=\s*([^']*)'[^']*'([^;]+)/i.exec(disposition)
  if (extended) {
    try { return decodeURIComponent(extended[2].trim().replace(/^"|"$/g, '')) } catch { /* fall back */ }
  }
  const plain = /filename\s*=\s*("((?:[^"\\]|\\.)*)"|[^;]+)/i.exec(disposition)
  if (!plain) return null
  return (plain[2] !== undefined ? plain[2].replace(/\\(.)/g, '$1') : plain[1]).trim() || null
}

export async function login (username: string, password: string): Promise<User> {
  let response: Response
  try {
    response = await fetch('/api/auth/login', {
      method: 'POST', body: new URLSearchParams({ username, password }),
      headers: { Accept: 'application/json' },
    })
  } catch (error) {
    throw new ApiError(`The server cannot be reached (${(error as Error).message}).`, 0)
  }
  if (!response.ok) {
    const message = await errorMessage(response)
    throw new ApiError(response.status === 401 ? message || 'Wrong username or password.' : message, response.status)
  }
  const { access_token: accessToken } = await response.json() as { access_token: string }
  sessionStorage.setItem(TOKEN_KEY, accessToken)
  const user = await fetchMe(username)
  setSession(accessToken, user)
  return user
}

/** GET /api/me; a server without it yet counts the user as a non-admin of that name. */
async function fetchMe (fallbackName: string): Promise<User> {
  try {
    const me = await getJson<User>('/api/me')
    return {
      id: me.id ?? null, username: me.username, is_admin: Boolean(me.is_admin),
      quota_bytes: me.quota_bytes ?? null, usage_bytes: me.usage_bytes ?? 0,
    }
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      return { id: null, username: fallbackName, is_admin: false }
    }
    throw error
  }
}

/** Checks a stored session when the page opens (the token may have expired meanwhile). */
export async function refreshUser (): Promise<User | null> {
  const bearer = token()
  if (!bearer) return null
  const user = await fetchMe(currentUser()?.username ?? 'user')
  setSession(bearer, user)
  return user
}
