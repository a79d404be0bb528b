import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, test } from 'node:test';
import { renderTargets } from '../schemas/generate.ts';
import { checkedSpec, SCHEMA_VERSIONS, schemaSpec } from '../pipeline/schema-spec.ts';

describe('the schema files', () => {
  test('v2 keeps every v1 column in place, moves snapshot_id to the partition and only appends', () => {
    const v1 = schemaSpec(1);
    const v2 = schemaSpec(2);
    assert.equal(v1.partition, undefined);
    assert.equal(v2.partition?.name, 'snapshot_id');
    assert.equal(v2.partition?.type, 'string');
    const v1Data = v1.columns.filter((c) => c.name !== v2.partition?.name);
    // In place with the same name, type and nullability (a description may be made truer).
    const shape = (cs: typeof v1Data) => cs.map((c) => [c.name, c.type, c.nullable]);
    assert.deepEqual(shape(v2.columns.slice(0, v1Data.length)), shape(v1Data));
    assert.deepEqual(
      v2.columns.slice(v1Data.length).map((c) => [c.name, c.type, c.nullable]),
      [
        ['user_arn', 'string', false],
        ['user_path', 'string', false],
        ['user_create_date', 'timestamp', false],
        ['days_since_last_used', 'int32', true],
      ],
    );
    assert.deepEqual(v2.sort_key, v1.sort_key);
  });

  test('a column keeps its name, type and nullability in every version that has it', () => {
    const seen = new Map<string, string>();
    for (const version of SCHEMA_VERSIONS) {
      const spec = schemaSpec(version);
      for (const c of [...spec.columns, ...(spec.partition ? [{ ...spec.partition, nullable: false }] : [])]) {
        const shape = `${c.type} ${c.nullable ? 'null' : 'not null'}`;
        assert.equal(seen.get(c.name) ?? shape, shape, `${c.name} in v${version}`);
        seen.set(c.name, shape);
      }
    }
  });

  test('every version has a well-formed file whose version number matches its name', () => {
    for (const version of SCHEMA_VERSIONS) assert.equal(schemaSpec(version).version, version);
  });

  test('a malformed schema is refused with every problem listed', () => {
    const bad = {
      name: 'access_keys',
      version: 3,
      description: 'x',
      sort_key: ['missing'],
      partition: { name: 'a', type: 'string', description: 'x' },
      columns: [
        { name: 'a', type: 'string', nullable: false, description: 'x' },
        { name: 'a', type: 'float', nullable: 'no', description: '' },
      ],
    };
    assert.throws(
      () => checkedSpec(bad, 'bad.json'),
      (err: Error) =>
        err.message.startsWith('schemas/bad.json is malformed') &&
        ['appears twice', 'unknown type "float"', 'needs nullable', 'needs a description', 'sort_key names missing', 'partition a is also a data column'].every(
          (part) => err.message.includes(part),
        ),
    );
  });

  test('the generated record types and README tables are what the schema files say', async () => {
    for (const { path, text } of renderTargets()) assert.equal(await readFile(path, 'utf8'), text, path);
  });
});
