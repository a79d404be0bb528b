// Mutation testing of the core modules: `make mutate` (README, "Mutation testing").
//
// One line per module: the module, and the fast unit test files written for it.
// A mutant runs only the files of this table that executed its code in the dry
// run (per-file coverage), never the CLI or crash suites (child processes, minutes).
export const MODULES = {
  'pipeline/checkpoint.ts': ['test/checkpoint.test.ts'],
  'pipeline/source/paginate.ts': ['test/paginate.test.ts'],
  'pipeline/source/budget.ts': ['test/budget.test.ts'],
  'pipeline/source/channel.ts': ['test/channel.test.ts'],
  'pipeline/source/fanout.ts': ['test/fanout.test.ts'],
  'pipeline/runs.ts': ['test/runs.test.ts', 'test/parts.test.ts'],
  'pipeline/snapshot.ts': ['test/snapshot.test.ts'],
  'pipeline/lease.ts': ['test/lease.test.ts'],
  'pipeline/errors.ts': ['test/errors.test.ts'],
  'pipeline/store/local.ts': ['test/store-local.test.ts'],
  'pipeline/source/csvRecords.ts': ['test/csv-records.test.ts'],
  // Against moto (test/support/s3.ts starts it once per run of the file).
  'pipeline/store/s3.ts': ['test/store-s3.test.ts', 'test/store-s3-faults.test.ts'],
};

// MUTATE_MODULE=<module of the table>: that module alone, against its own test files,
// with its own report (reports/mutation/<name>.json): what `make mutate` runs, one
// module after another (test/support/mutate.ts). Without it: every module at once,
// each mutant against every file of the table that covers it (hours on 2 cores).
const only = process.env.MUTATE_MODULE;
if (only !== undefined && !(only in MODULES)) throw new Error(`MUTATE_MODULE must be one of ${Object.keys(MODULES).join(', ')}, got ${only}`);
const name = only === undefined ? 'mutation' : only.replace(/^.*\//, '').replace(/\.ts$/, '');

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  mutate: only === undefined ? Object.keys(MODULES) : [only],
  // The TAP runner runs one test file per node process, in-process (no --test: that
  // would fork a child per file and lose the coverage), so Stryker learns which
  // files cover which mutant. The command runner would rerun everything per mutant.
  testRunner: 'tap',
  tap: {
    testFiles: only === undefined ? [...new Set(Object.values(MODULES).flat())] : MODULES[only],
    nodeArgs: ['--import', 'tsx', '--test-reporter=tap', '-r', '{{hookFile}}', '{{testFile}}'],
  },
  coverageAnalysis: 'perTest',
  // Mutants that do not compile are discarded before any test runs.
  checkers: ['typescript'],
  tsconfigFile: 'tsconfig.json',
  reporters: ['clear-text', 'progress', 'html', 'json'],
  clearTextReporter: { allowColor: false, logTests: false, reportTests: false, reportMutants: false },
  htmlReporter: { fileName: `reports/mutation/${name}.html` },
  jsonReporter: { fileName: `reports/mutation/${name}.json` },
  incrementalFile: `reports/mutation/incremental-${name}.json`,
  tempDirName: `reports/.stryker-tmp-${name}`,
  ignorePatterns: ['/export', '/bench/results.*'],
  thresholds: { high: 90, low: 85, break: null },
  // Two cores, shared: one runner per core; a timed-out mutant (an endless loop) counts as killed.
  concurrency: 2,
  timeoutMS: 10000,
};
