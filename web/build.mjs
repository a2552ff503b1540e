// Builds the web page and the legacy client module into omr_tus/web_dist/ (served by
// omr_tus/api/webpage.py; inside the Python package, so `pip install .` puts a page built
// before it into the wheel):
//   web_dist/index.html                  the page, naming its hashed assets
//   web_dist/assets/app-<hash>.js|.css   the app (Uppy Dashboard + Tus, routes, styles), cached forever
//   web_dist/lib/chunked-upload.js       the ES module the existing frontend imports, at a stable URL
// The new tree is written beside the old one and swapped in, so a running server never sees half a build.
import * as esbuild from 'esbuild'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { brotliCompressSync, constants, gzipSync } from 'node:zlib'

const root = dirname(fileURLToPath(import.meta.url))
const out = join(root, '..', 'omr_tus', 'web_dist')
const next = `${out}.next`
const old = `${out}.old`
rmSync(next, { recursive: true, force: true })
mkdirSync(next, { recursive: true })

const common = { bundle: true, format: 'esm', target: ['es2022'], logLevel: 'warning', legalComments: 'linked' }

const app = await esbuild.build({
  ...common,
  entryPoints: { app: join(root, 'src/main.ts') },
  outdir: join(next, 'assets'),
  entryNames: '[name]-[hash]',
  assetNames: '[name]-[hash]',
  minify: true,
  sourcemap: 'linked',
  metafile: true,
  define: { 'process.env.NODE_ENV': '"production"' },
})

const entry = Object.entries(app.metafile.outputs).find(([file, meta]) => meta.entryPoint && file.endsWith('.js'))
if (!entry || !entry[1].cssBundle) throw new Error('build: the app bundle or its stylesheet is missing')
const js = basename(entry[0])
const css = basename(entry[1].cssBundle)

const libSource = readFileSync(join(root, 'lib/chunked-upload.ts'), 'utf8')
const libDoc = /^\/\*\*[\s\S]*?\*\//.exec(libSource)?.[0] ?? ''
await esbuild.build({
  ...common,
  entryPoints: [join(root, 'lib/chunked-upload.ts')],
  banner: { js: `${libDoc}\n// Built from web/lib/chunked-upload.ts by web/build.mjs.` },
  outfile: join(next, 'lib/chunked-upload.js'),
  minify: false,
  sourcemap: 'linked',
})

const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const html = readFileSync(join(root, 'index.html'), 'utf8')
  .replaceAll('%APP_JS%', `/assets/${js}`)
  .replaceAll('%APP_CSS%', `/assets/${css}`)
  .replaceAll('%BUILD%', createHash('sha256').update(js + css).digest('hex').slice(0, 12))
writeFileSync(join(next, 'index.html'), html)
writeFileSync(join(next, 'build.json'), JSON.stringify({ app: js, css, name: version.name, built_at: new Date().toISOString() }, null, 2) + '\n')

// Precompressed siblings: aiohttp's FileResponse sends them to clients that accept them.
for (const dir of ['assets', 'lib']) {
  for (const name of readdirSync(join(next, dir))) {
    if (!/\.(js|css)$/.test(name)) continue
    const data = readFileSync(join(next, dir, name))
    writeFileSync(join(next, dir, `${name}.gz`), gzipSync(data, { level: 9 }))
    writeFileSync(join(next, dir, `${name}.br`), brotliCompressSync(data, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }))
  }
}

rmSync(old, { recursive: true, force: true })
if (existsSync(out)) renameSync(out, old)
renameSync(next, out)
rmSync(old, { recursive: true, force: true })
console.log(`web: built omr_tus/web_dist/ (index.html, assets/${js}, assets/${css}, lib/chunked-upload.js)`)
