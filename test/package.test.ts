/**
 * The shipped artifact itself: `npm pack`, `npm install -g --prefix <tmp>` of the
 * tarball, then the installed command as an operator runs it (compiled JavaScript,
 * no tsx), on whichever Node runs this suite. Plus the bin's answer in a checkout
 * whose dependencies are not installed.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmod, chown, cp, mkdir, mkdtemp, readdir, readFile, realpath, rm, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { startFakeIam } from './fake-iam/server.ts';
import { testEnv } from './support/cli.ts';
import { expectedRows, onlySnapshotDir, publishedRows, verifyManifest } from './support/expect.ts';
import { packAndInstall, PACKAGE_NAME, REPO_ROOT, withThisNode, type InstalledPackage } from './support/package.ts';

const TYPESCRIPT_TOOLING = ['tsx', 'typescript', 'ts-node', 'esbuild'];
/** The user a root-run suite drops to, so that read-only modes bind the command. */
const NOBODY = 65534;

let work: string;
let installed: InstalledPackage;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'ike-package-'));
  // Traversable by every user: the read-only test may run the command as nobody.
  await chmod(work, 0o755);
  installed = await packAndInstall(work);
});

after(async () => {
  if (!work) return;
  await makeWritable(work);
  await rm(work, { recursive: true, force: true });
});

interface Result {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs an executable to its end; `uid` also sets the group (same number, as for nobody). */
function run(file: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; uid?: number } = {}): Promise<Result> {
  const ids = options.uid === undefined ? {} : { uid: options.uid, gid: options.uid };
  const child = spawn(file, args, { env: withThisNode(options.env ?? testEnv()), cwd: options.cwd ?? work, stdio: ['ignore', 'pipe', 'pipe'], ...ids });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Every file under `dir` (not node_modules), relative, with `/` separators, sorted. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)).split(sep).join('/'))
    .filter((p) => !p.startsWith('node_modules/'))
    .sort();
}

/** Names of every package installed under `dir/node_modules`, at any depth. */
async function installedPackageNames(dir: string): Promise<Set<string>> {
  const names = new Set<string>();
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  for (const e of entries) {
    if (e.name !== 'package.json') continue;
    const parts = relative(dir, e.parentPath).split(sep);
    const at = parts.lastIndexOf('node_modules');
    // node_modules/<name>/package.json or node_modules/@scope/<name>/package.json only
    const rest = parts.slice(at + 1);
    if (at >= 0 && (rest.length === 1 || (rest.length === 2 && rest[0]!.startsWith('@')))) names.add(rest.join('/'));
  }
  return names;
}

/** Path, size and mtime of everything under `dirs`: equal before and after means nothing was written there. */
async function treeState(dirs: readonly string[]): Promise<string[]> {
  const lines: string[] = [];
  for (const dir of dirs) {
    lines.push(`${dir} ${(await stat(dir)).mtimeMs}`);
    for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
      const path = join(e.parentPath, e.name);
      const s = await stat(path);
      lines.push(`${path} ${s.size} ${s.mtimeMs}`);
    }
  }
  return lines.sort();
}

/** Removes every write permission from a whole tree (files and folders), keeping the others. */
async function makeReadOnly(dir: string): Promise<void> {
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.isSymbolicLink()) continue;
    const path = join(e.parentPath, e.name);
    await chmod(path, (await stat(path)).mode & 0o7555);
  }
  await chmod(dir, (await stat(dir)).mode & 0o7555);
}

/** Gives folders back their write permission, so the tree can be removed. */
async function makeWritable(dir: string): Promise<void> {
  await chmod(dir, 0o755);
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.isDirectory() && !e.isSymbolicLink()) await chmod(join(e.parentPath, e.name), 0o755);
  }
}

test('the tarball holds the built program (as this checkout builds it now), its bin, the schema, README and LICENSE, and nothing else', async (t) => {
  t.diagnostic(`npm pack (prepack build included) ${(installed.packMs / 1000).toFixed(1)} s, npm install -g ${(installed.installMs / 1000).toFixed(1)} s`);
  // The same build again: chunk names carry a hash of their content, so a stale dist/ shows.
  // Into a folder beside dist/: a chunk's hash covers its source map, whose paths to the
  // sources are relative to the folder the chunk is in.
  const fresh = join(REPO_ROOT, `.fresh-dist-${process.pid}`);
  let program: string[];
  try {
    const built = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts', 'build.js'), fresh], { cwd: REPO_ROOT, encoding: 'utf8' });
    assert.equal(built.status, 0, built.stderr);
    program = await filesUnder(fresh);
  } finally {
    await rm(fresh, { recursive: true, force: true });
  }
  assert.ok(program.includes('cli.js') && program.some((f) => f.startsWith('chunks/')), `the entry and its lazy chunks: ${program.join(', ')}`);
  const schemas = (await readdir(join(REPO_ROOT, 'schemas'))).filter((f) => f.endsWith('.json'));
  const expected = [
    'LICENSE',
    'README.md',
    'package.json',
    'bin/heap-flag.js',
    'bin/iam-key-export.js',
    'schemas/README.md',
    ...schemas.map((f) => `schemas/${f}`),
    ...program.map((f) => `dist/${f}`),
  ].sort();
  assert.deepEqual(await filesUnder(installed.packageDir), expected);
});

test('the installed package has no TypeScript tooling among its dependencies, at any depth', async () => {
  const pkg = JSON.parse(await readFile(join(installed.packageDir, 'package.json'), 'utf8')) as Record<string, Record<string, string> | undefined>;
  for (const field of ['dependencies', 'optionalDependencies', 'peerDependencies']) {
    for (const name of TYPESCRIPT_TOOLING) assert.equal(pkg[field]?.[name], undefined, `${name} in ${field}`);
  }
  const names = await installedPackageNames(installed.packageDir);
  assert.ok(names.has('pino') && names.has('cli-progress'), 'the runtime dependencies are installed');
  assert.ok(![...names].some((n) => n.startsWith('@aws-sdk/') || n.startsWith('@smithy/')), 'the AWS SDK is in the bundle, not installed beside it');
  assert.ok(!names.has('parquetjs-lite') && !names.has('node-int64'), 'the Parquet writer is in the bundle, not installed beside it');
  for (const name of TYPESCRIPT_TOOLING) assert.ok(!names.has(name), `${name} is not installed`);
  assert.deepEqual(await readdir(join(installed.prefix, 'lib', 'node_modules')), [PACKAGE_NAME]);
});

test('the installed command is the JavaScript bin, next to no TypeScript source, and prints the version', async () => {
  assert.equal(await realpath(installed.command), join(installed.packageDir, 'bin', 'iam-key-export.js'));
  assert.match(await readFile(installed.command, 'utf8'), /^#!\/usr\/bin\/env node\n/);
  assert.ok(!existsSync(join(installed.packageDir, 'pipeline')));
  const { version } = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
  const r = await run(installed.command, ['--version']);
  assert.deepEqual(r, { code: 0, stdout: `iam-key-export ${version}\n`, stderr: '' });
});

test('--help, --version and usage errors load no dependency: they run with node_modules absent', async () => {
  // What keeps them fast: the AWS SDK, parquetjs and pino load only for an export.
  const bare = join(work, 'bare');
  await cp(installed.packageDir, bare, { recursive: true, filter: (src) => !relative(installed.packageDir, src).split(sep).includes('node_modules') });
  const bin = join(bare, 'bin', 'iam-key-export.js');
  const help = await run(process.execPath, [bin, '--help']);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /--format/);
  assert.equal((await run(process.execPath, [bin, '--version'])).code, 0);
  const usage = await run(process.execPath, [bin, '--concurrency', '65']);
  assert.equal(usage.code, 2);
  assert.equal(usage.stderr.trim().split('\n').length, 1, usage.stderr);
  assert.match(usage.stderr, /--concurrency/);
});

test('with TMPDIR, HOME, the working folder and the package read-only, --version and --help write nothing and a 150-user export into --out is exact', async (t) => {
  const readOnly = join(work, 'read-only');
  const out = join(work, 'out');
  await mkdir(readOnly);
  await mkdir(out);
  // Root ignores permission bits: drop to nobody where that works, so the modes bind.
  let uid: number | undefined;
  if (process.getuid?.() === 0) {
    if (spawnSync(process.execPath, ['-e', '0'], { uid: NOBODY, gid: NOBODY, cwd: work }).status === 0) {
      uid = NOBODY;
      await chown(out, NOBODY, NOBODY);
    } else {
      t.diagnostic('running as root and nobody cannot start this node: read-only modes do not bind, only the before/after comparison checks');
    }
  }
  await makeReadOnly(readOnly);
  await makeReadOnly(installed.prefix);
  const watched = [readOnly, installed.prefix];
  const before = await treeState(watched);
  const fake = await startFakeIam({ users: 150, seed: 14 });
  try {
    const env = testEnv({ TMPDIR: readOnly, HOME: readOnly });
    const options = { env, cwd: readOnly, ...(uid === undefined ? {} : { uid }) };
    for (const flag of ['--version', '--help']) {
      const r = await run(installed.command, [flag], options);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, '');
    }
    // At the most calls at once that is allowed: each listens on the run's stop.
    const r = await run(installed.command, ['--endpoint-url', fake.url, '--out', out, '--quiet', '--concurrency', '64'], options);
    assert.equal(r.code, 0, r.stderr);
    // One summary line and nothing else: no warning of this Node or of a dependency.
    assert.match(r.stderr, /^iam-key-export: published snapshot \S+ to .*\n$/);
    const expected = expectedRows(fake);
    assert.ok(expected.length > 100);
    assert.deepEqual((await publishedRows(out, 'parquet')).rows, expected);
    const manifest = await verifyManifest(await onlySnapshotDir(out));
    assert.equal(manifest.users.seen, 150);
  } finally {
    await fake.close();
  }
  assert.deepEqual(await treeState(watched), before, 'nothing written to TMPDIR, HOME, the working folder or the package');
});

test("the installed command writes Parquet without Node's deprecated Buffer constructor, whose every call costs a stack trace", async () => {
  // Under --pending-deprecation Node warns (DEP0005) at the first `Buffer()` call from
  // anywhere, node_modules included: the vendored thrift code of parquetjs-lite makes
  // thousands a file unless the build binds its `Buffer` to SafeBuffer.
  const out = join(work, 'out-deprecation');
  const fake = await startFakeIam({ users: 40, seed: 9 });
  try {
    const r = await run(installed.command, ['--endpoint-url', fake.url, '--out', out, '--quiet', '--format', 'parquet'], { env: testEnv({ NODE_OPTIONS: '--pending-deprecation' }) });
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /DEP0005/);
    assert.deepEqual((await publishedRows(out, 'parquet')).rows, expectedRows(fake));
  } finally {
    await fake.close();
  }
});

test("the installed command ships source maps with its minified build, and --debug's stack trace names the sources' files and lines through them", async () => {
  // Nothing listens on port 1: GetCallerIdentity fails at once (one attempt), with a stack under --debug.
  const args = ['--endpoint-url', 'http://127.0.0.1:1', '--out', join(work, 'out-debug'), '--max-attempts', '1', '--quiet'];
  const entry = await readFile(join(installed.packageDir, 'dist', 'cli.js'), 'utf8');
  assert.match(entry, /\n\/\/# sourceMappingURL=cli\.js\.map\n?$/);
  assert.ok(existsSync(join(installed.packageDir, 'dist', 'cli.js.map')));
  const plain = await run(installed.command, args);
  assert.notEqual(plain.code, 0);
  assert.doesNotMatch(plain.stderr, /\n\s+at /, 'no stack without --debug');
  const debug = await run(installed.command, [...args, '--debug']);
  assert.equal(debug.code, plain.code, debug.stderr);
  assert.match(debug.stderr, /\n\s+at .*[\\/]pipeline[\\/]source[\\/]identity\.ts:\d+:\d+/, debug.stderr);
  assert.doesNotMatch(debug.stderr, /[\\/]dist[\\/]chunks[\\/]/, 'no frame left in the bundle');
});

test('in a checkout without node_modules the bin says in one line to run npm ci there, and exits 1', async () => {
  const checkout = await mkdtemp(join(tmpdir(), 'ike-clone-'));
  try {
    for (const part of ['bin', 'pipeline', 'schemas', 'package.json']) await cp(join(REPO_ROOT, part), join(checkout, part), { recursive: true });
    const r = await run(process.execPath, [join(checkout, 'bin', 'iam-key-export.js'), '--version'], { cwd: checkout, env: testEnv({ IAM_KEY_EXPORT_BUILD: '' }) });
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, `iam-key-export: dependencies are not installed; run \`npm ci\` in ${await realpath(checkout)}\n`);
  } finally {
    await rm(checkout, { recursive: true, force: true });
  }
});
