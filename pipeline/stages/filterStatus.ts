/** Stage filterStatus: keeps only keys whose status is one of --status (all when none given). */
import { mapRecords } from '../items.ts';
import type { AccessKeyRecord } from '../schema.ts';
import { itemTransform } from './transform.ts';

/** True when `record` passes the filter; an empty list keeps everything. */
export function keepStatus(record: AccessKeyRecord, statuses: readonly string[]): boolean {
  return statuses.length === 0 || statuses.includes(record.status);
}

/** The filterStatus stage as a Transform over items (STATE items always pass). */
export function filterStatusStage(statuses: readonly string[]) {
  return itemTransform(mapRecords((r: AccessKeyRecord) => (keepStatus(r, statuses) ? r : undefined)));
}
