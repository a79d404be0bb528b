/** Stage deriveAge: key_age_days, whole days from create_date to snapshot_time. */
import { mapRecords, type BaseRecord } from '../items.ts';
import type { AccessKeyRecord } from '../schema.ts';
import { itemTransform } from './transform.ts';

const DAY_MS = 86_400_000;

/**
 * Whole days (floor) from `from` to `snapshotTime`. A moment after the snapshot
 * started (a key created, or used, while a long run pages) counts as 0 days rather
 * than negative, so the columns stay non-negative ages.
 */
export function wholeDays(from: Date, snapshotTime: Date): number {
  return Math.max(0, Math.floor((snapshotTime.getTime() - from.getTime()) / DAY_MS));
}

/** key_age_days: whole days from the key's creation to the snapshot. */
export const keyAgeDays = wholeDays;

/** Completes a record with its age. */
export function deriveAge(record: BaseRecord): AccessKeyRecord {
  return { ...record, key_age_days: keyAgeDays(record.create_date, record.snapshot_time) };
}

/** The deriveAge stage as a Transform over items. */
export function deriveAgeStage() {
  return itemTransform(mapRecords(deriveAge));
}
