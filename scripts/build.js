// Builds what ships: dist/, the CLI as one ES module bundle (esbuild), its lazy parts
// (Organizations, STS role credentials, S3, DDL...) as chunks loaded only by the runs
// that need them.
//
// Why a bundle and not tsc's file-per-module output: the AWS SDK is ~80 packages of
// CommonJS, and loading them one by one through Node's ES module loader was most of
// the time before the first IAM call (measured with --cpu-prof; the c=16 bench's
// spawn-to-first-request went from ~600 ms to ~360 ms on this machine). Types are
// checked by `tsc --noEmit` (make test), not here.
//
// The package's `dependencies` stay outside the bundle, installed with it:
// parquetjs-lite requires optional codecs by name at run time, pino can start
// worker threads by file path, cli-progress is loaded only to draw a bar. What a run
// loads before its first call is bundled (devDependencies): csv-stringify and p-limit
// (and csv-parse, before the report got its own reader) as ~20 separate modules from
// node_modules cost ~10 ms of each start through the ES module loader (run chunk
// import 49-54 ms outside, 42-43 ms inside).
//
//   node scripts/build.js [outdir]     (default dist)
import { build } from 'esbuild';
import { rmSync, readFileSync } from 'node:fs';

const outdir = process.argv[2] ?? 'dist';
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
rmSync(outdir, { recursive: true, force: true });
await build({
  entryPoints: ['pipeline/cli.ts'],
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // The SDK's ES module builds (its `module` field): the bundler's input they are made for.
  mainFields: ['module', 'main'],
  external: Object.keys(pkg.dependencies),
  // CommonJS code inside the bundle may still call require() for Node's own modules.
  banner: { js: "import { createRequire as __ikeCreateRequire } from 'node:module'; const require = __ikeCreateRequire(import.meta.url);" },
  chunkNames: 'chunks/[name]-[hash]',
  logLevel: 'warning',
  legalComments: 'linked',
});
