/**
 * SafeBuffer (pipeline/sinks/safe-buffer.ts): what the build binds `Buffer` to in the
 * bundled Parquet writer's modules that call the deprecated `new Buffer()`. It must give
 * the same bytes as Node's deprecated form, be Node's Buffer for everything else, and
 * never reach Node's deprecation check.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SafeBuffer } from '../pipeline/sinks/safe-buffer.ts';

const Legacy = SafeBuffer as unknown as { new (arg: unknown, encodingOrOffset?: unknown, length?: unknown): Buffer } & typeof Buffer;

test('a size gives that many zero bytes; an array, a string with its encoding, an ArrayBuffer view give what Buffer.from gives', () => {
  const sized = new Legacy(5);
  assert.ok(Buffer.isBuffer(sized));
  assert.deepEqual([...sized], [0, 0, 0, 0, 0]);
  assert.deepEqual([...(SafeBuffer(3) as Buffer)], [0, 0, 0], 'called without new too');
  assert.deepEqual(new Legacy([1, 2, 255, 256]), Buffer.from([1, 2, 255, 256]));
  assert.equal(new Legacy('héllo', 'utf8').toString('hex'), Buffer.from('héllo', 'utf8').toString('hex'));
  assert.equal(new Legacy('aGk=', 'base64').toString(), 'hi');
  const bytes = new Uint8Array([9, 8, 7, 6]);
  const view = new Legacy(bytes.buffer, 1, 2);
  assert.deepEqual([...view], [8, 7]);
  view[0] = 1;
  assert.equal(bytes[1], 1, 'a view of the same memory, as Buffer.from(arrayBuffer, offset, length)');
  assert.throws(() => new Legacy(4, 'utf8'), TypeError);
});

test("everything else is Node's Buffer: its statics, its prototype, instanceof either way", () => {
  assert.ok(Buffer.from('x') instanceof Legacy);
  assert.ok(new Legacy(2) instanceof Buffer);
  assert.equal(Legacy.prototype, Buffer.prototype);
  assert.equal(Legacy.concat([Legacy.from('a'), Legacy.alloc(1, 'b')]).toString(), 'ab');
  assert.ok(Legacy.isBuffer(Legacy.allocUnsafe(1)));
  assert.equal(Legacy.byteLength('é'), 2);
});

test("it never reaches Node's deprecation check, which Buffer() itself does (DEP0005 under --pending-deprecation)", () => {
  const module = JSON.stringify(fileURLToPath(new URL('../pipeline/sinks/safe-buffer.ts', import.meta.url)));
  const script = (call: string) =>
    `process.on('warning', (w) => console.log('warning', w.code)); const { SafeBuffer } = await import(${module}); const B = SafeBuffer; ${call}; setTimeout(() => console.log('done'), 10);`;
  const runIt = (call: string) => {
    const r = spawnSync(process.execPath, ['--pending-deprecation', '--import', 'tsx', '--input-type=module', '-e', script(call)], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  };
  assert.equal(runIt("new B(4); new B([1]); new B('a', 'utf8'); B(2)"), 'done\n');
  assert.match(runIt('Buffer(4)'), /warning DEP0005/, 'the check this test relies on');
});
