#!/usr/bin/env node
// Entry point: runs the TypeScript sources through tsx's loader, so `npx iam-key-export`
// works right after `npm ci` with no build step.
import { register } from 'tsx/esm/api';

// The SDK warns on every process start that Node 20 leaves its support window;
// an operator gets that once from the README, not on every cron run.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

register();
const { main } = await import('../pipeline/cli.ts');
// Exit explicitly once the run is over: a stopped run may leave SDK timers
// (a retry backoff of up to 20 s) that must not keep the process alive.
process.exit(await main(process.argv.slice(2)));
