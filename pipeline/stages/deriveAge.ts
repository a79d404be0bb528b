/** Stage deriveAge: key_age_days, whole days from create_date to snapshot_time. */
import { mapRecords, type BaseRecord } from '../items.ts';
import type { AccessKeyRecord } from '../schema.ts';
import { itemTransform } from './transform.ts';

const DAY_MS = 86_400_000;

/**
 * Whole days (floor) from `createDate` to `snapshotTime`. A key created after the
 * snapshot started (possible while a long run pages) counts as 0 days old rather
 * than negative, so the column stays a non-negative age.
 */
export function keyAgeDays(createDate: Date, snapshotTime: Date): number {
  return Math.max(0, Math.floor((snapshotTime.getTime() - createDate.getTime()) / DAY_MS));
}

/** Completes a record with its age. */
export function deriveAge(record: BaseRecord): AccessKeyRecord {
  return { ...record, key_age_days: keyAgeDays(record.create_date, record.snapshot_time) };
}

/** The deriveAge stage as a Transform over items. */
export function deriveAgeStage() {
  return itemTransform(mapRecords(deriveAge));
}
