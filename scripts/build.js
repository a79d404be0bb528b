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
// The package's `dependencies` stay outside the bundle, installed with it: pino can
// start worker threads by file path, cli-progress is loaded only to draw a bar. What a
// run loads before its first call is bundled (devDependencies): csv-stringify and
// p-limit (and csv-parse, before the report got its own reader) as ~20 separate
// modules from node_modules cost ~10 ms of each start through the ES module loader
// (run chunk import 49-54 ms outside, 42-43 ms inside). parquetjs-lite is bundled too
// (its Parquet chunk is loaded by the first Parquet file), with `Buffer` bound to
// pipeline/sinks/safe-buffer.ts in the modules of it that call the deprecated
// `new Buffer()` (see there: Node's check at every such call took more of a 2,000-row
// file's encoding than anything else).
//
// Minified (whitespace, syntax and local names): V8 scans and pre-parses every byte of a
// module it loads, and the ~830 KB a run loads before its first call took ~15 ms less to
// its first request as ~410 KB (bench/HISTORY.md). Each file has a linked source map
// (the sources' paths and lines, no source text); the bin turns Node's source map
// support on under --debug, so the stack traces it shows name pipeline/*.ts and the
// SDK's files and lines, not the bundle's.
//
//   node scripts/build.js [outdir]     (default dist)
import { build } from 'esbuild';
import { rmSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * parquetjs-lite and node-int64 (the Parquet writer's CommonJS code), bundled into an ES
 * module, which is strict mode, with two changes to their source:
 * - so that they run there as from node_modules (where Node loads them as sloppy
 *   scripts): the Thrift types of gen-nodejs/parquet_types.js, assigned as implicit
 *   globals (`Statistics = module.exports.Statistics = ...`, a ReferenceError in strict
 *   mode), are declared in the module;
 * - so that they run faster: `Buffer` is bound to pipeline/sinks/safe-buffer.ts in the
 *   modules that call the deprecated `Buffer()` / `new Buffer()` (see there).
 */
const PARQUET_WRITER_MODULES = /[\\/]node_modules[\\/](parquetjs-lite|node-int64)[\\/].*\.js$/;
const SAFE_BUFFER = fileURLToPath(new URL('../pipeline/sinks/safe-buffer.ts', import.meta.url));

const strictParquetWriter = {
  name: 'strict-parquet-writer',
  setup(b) {
    b.onLoad({ filter: PARQUET_WRITER_MODULES }, async (args) => {
      const source = await readFile(args.path, 'utf8');
      const prelude = [];
      const implicit = [...source.matchAll(/^([A-Za-z_$][\w$]*) = module\.exports\.\1 = /gm)].map((m) => m[1]);
      if (implicit.length > 0) prelude.push(`var ${[...new Set(implicit)].join(', ')};`);
      if (/(^|[^.\w$])Buffer\s*\(/m.test(source)) prelude.push(`var Buffer = require(${JSON.stringify(SAFE_BUFFER)}).SafeBuffer;`);
      if (prelude.length === 0) return undefined;
      // One line, so the module's own line numbers (in stack traces) move by one only.
      return { contents: `${prelude.join(' ')}\n${source}`, loader: 'js', resolveDir: dirname(args.path) };
    });
  },
};

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
  plugins: [strictParquetWriter],
  minify: true,
  sourcemap: 'linked',
  sourcesContent: false,
});
