/**
 * The record schemas as typed data: every version of `access_keys.v<N>.json`,
 * checked once when this module loads. Whatever derives from the columns (the
 * TypeScript record types, the DDL of every dialect, the README's type table)
 * reads them here, so a new version is one JSON file plus one line below.
 */
import v1 from './access_keys.v1.json' with { type: 'json' };
import v2 from './access_keys.v2.json' with { type: 'json' };
/** The logical column types; each consumer maps them (Parquet, CSV, SQL dialects). */
export const COLUMN_TYPES = ['string', 'timestamp', 'int32'];
/** The schema versions, oldest first. */
export const SCHEMA_VERSIONS = [1, 2];
/** The version new snapshots are written with. */
export const LATEST_SCHEMA_VERSION = 2;
const SPECS = {
    1: checkedSpec(v1, 'access_keys.v1.json'),
    2: checkedSpec(v2, 'access_keys.v2.json'),
};
/** The schema of `version`. */
export function schemaSpec(version) {
    return SPECS[version];
}
/** File name of the schema of `version`, inside schemas/. */
export function schemaFileName(version) {
    return `access_keys.v${version}.json`;
}
/**
 * Throws when `json` is not a well-formed schema: unknown types, duplicate
 * names, a sort or unique key naming no data column, a partition column that is
 * also a data column. A malformed schema file is a bug of this repository, so
 * this fails at import time rather than producing wrong DDL later.
 */
export function checkedSpec(json, file) {
    const problems = [];
    const spec = json;
    const isType = (t) => COLUMN_TYPES.includes(t);
    if (typeof spec.name !== 'string' || !Number.isInteger(spec.version))
        problems.push('name and an integer version are required');
    const names = new Set();
    for (const c of Array.isArray(spec.columns) ? spec.columns : []) {
        if (!/^[a-z][a-z0-9_]*$/.test(c.name))
            problems.push(`column name ${JSON.stringify(c.name)} is not snake_case`);
        if (names.has(c.name))
            problems.push(`column ${c.name} appears twice`);
        names.add(c.name);
        if (!isType(c.type))
            problems.push(`column ${c.name} has an unknown type ${JSON.stringify(c.type)}`);
        if (typeof c.nullable !== 'boolean')
            problems.push(`column ${c.name} needs nullable true or false`);
        if (typeof c.description !== 'string' || c.description === '')
            problems.push(`column ${c.name} needs a description`);
    }
    if (names.size === 0)
        problems.push('columns must list at least one column');
    for (const key of ['sort_key', 'unique_key']) {
        for (const name of spec[key] ?? [])
            if (!names.has(name))
                problems.push(`${key} names ${name}, which is not a data column`);
    }
    if (spec.partition !== undefined) {
        if (names.has(spec.partition.name))
            problems.push(`partition ${spec.partition.name} is also a data column`);
        if (!isType(spec.partition.type))
            problems.push(`partition ${spec.partition.name} has an unknown type`);
    }
    if (problems.length > 0)
        throw new Error(`schemas/${file} is malformed:\n${problems.join('\n')}`);
    return spec;
}
