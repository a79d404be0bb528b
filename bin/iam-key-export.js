#!/usr/bin/env node
// Entry point. Which code it runs is decided by what lies next to it:
// - a development checkout (pipeline/cli.ts present): the TypeScript sources through
//   tsx, so tests, `make demo` and `npm exec` run the tree as it is, never a stale build;
//   without node_modules there, one line saying to run `npm ci` in that folder, exit 1;
// - an installed package (no sources; `npm pack` ships dist/): the built dist/cli.js,
//   which starts fast and writes nothing (tsx would compile and cache in TMPDIR).
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { capHeapGrowth, heapGrowingPercent } from './heap-flag.js';

// From the first full collection on: see heap-flag.js.
const heapPercent = heapGrowingPercent(process.execArgv, process.env);
if (heapPercent !== null) capHeapGrowth(heapPercent);

// The SDK warns on every process start that Node 20 leaves its support window;
// an operator gets that once from the README, not on every cron run.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

// The build is minified: with --debug, stack traces go through its source maps (read
// only then, for the modules loaded after this) to the files and lines of the sources.
if (process.argv.includes('--debug')) process.setSourceMapsEnabled(true);

// IAM_KEY_EXPORT_BUILD=test-dist runs a checkout's compiled build in that folder when it is
// there (make test builds it once, so the hundreds of runs the tests start do not each
// compile the sources); an installed package has none and ignores it.
const testBuild = process.env.IAM_KEY_EXPORT_BUILD === 'test-dist' && existsSync(new URL('../test-dist/cli.js', import.meta.url));
const { main } =
  testBuild ? await import('../test-dist/cli.js')
  : existsSync(new URL('../pipeline/cli.ts', import.meta.url)) ? await loadSources()
  : await import('../dist/cli.js');
const code = await main(process.argv.slice(2));
// Exit explicitly once stdout and stderr are flushed: a timer the SDK left pending
// (a retry backoff, an idle socket) must not keep a finished or stopped run alive.
await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
process.exit(code);

async function loadSources() {
  let tsx;
  try {
    tsx = await import('tsx/esm/api');
  } catch (err) {
    if (err?.code !== 'ERR_MODULE_NOT_FOUND') throw err;
    process.stderr.write(`iam-key-export: dependencies are not installed; run \`npm ci\` in ${dirname(dirname(fileURLToPath(import.meta.url)))}\n`);
    process.exit(1);
  }
  tsx.register();
  return import('../pipeline/cli.ts');
}

/** Resolves once everything written to `stream` so far has been handed to the OS. */
function flushed(stream) {
  // An empty write completes after every earlier one; its callback also runs when
  // the reader went away (EPIPE), which must not hold the exit either.
  return new Promise((resolve) => stream.write('', () => resolve()));
}
