// Live processing progress: GET /api/batches/{id}/progress every second until the batch is
// completed or failed. One request at a time per batch; stop() ends it (page left).
import { getJson, SignedOut, type Progress } from './api'

export const POLL_INTERVAL = 1000

export function isFinal (status: string): boolean {
  return status === 'completed' || status === 'failed'
}

export function watchProgress (batchId: string, onUpdate: (progress: Progress) => void,
  onError?: (error: Error) => void): () => void {
  const controller = new AbortController()
  let timer: ReturnType<typeof setTimeout> | undefined
  let failures = 0
  const tick = async (): Promise<void> => {
    try {
      const progress = await getJson<Progress>(`/api/batches/${encodeURIComponent(batchId)}/progress`, controller.signal)
      failures = 0
      if (controller.signal.aborted) return
      onUpdate(progress)
      if (isFinal(progress.status)) return
    } catch (error) {
      if (controller.signal.aborted || error instanceof SignedOut) return
      failures++
      onError?.(error as Error)
      if (failures > 60) return
    }
    timer = setTimeout(() => { void tick() }, POLL_INTERVAL * Math.min(5, 1 + Math.floor(failures / 5)))
  }
  void tick()
  return () => {
    controller.abort()
    if (timer !== undefined) clearTimeout(timer)
  }
}
