/** Stage toRecord: AccessKeyMetadata + its user → a record (without derived columns). */
import { ExportError } from '../errors.ts';
import { mapRecords, type BaseRecord, type SourceKey } from '../items.ts';
import { itemTransform } from './transform.ts';

export interface SnapshotStamp {
  readonly snapshotTime: Date;
}

/** Builds the record of one key. The last-used columns stay null until `enrichLastUsed`. */
export function toRecord(source: SourceKey, stamp: SnapshotStamp): BaseRecord {
  const { key, user } = source;
  if (!key.AccessKeyId || !key.Status || !key.CreateDate) {
    throw new ExportError('SOURCE_FAILED', `ListAccessKeys for user ${user.userName} returned a key without AccessKeyId, Status or CreateDate`, { user: user.userName });
  }
  if (user.createDate === null) {
    throw new ExportError('SOURCE_FAILED', `ListUsers returned user ${user.userName} without CreateDate`, { user: user.userName });
  }
  return {
    snapshot_time: stamp.snapshotTime,
    account_id: user.accountId,
    user_name: user.userName,
    user_id: user.userId,
    access_key_id: key.AccessKeyId,
    status: key.Status,
    create_date: key.CreateDate,
    last_used_date: null,
    last_used_service: null,
    last_used_region: null,
    user_arn: user.arn,
    user_path: user.path,
    user_create_date: new Date(user.createDate),
    days_since_last_used: null,
  };
}

/** The toRecord stage as a Transform over items. */
export function toRecordStage(stamp: SnapshotStamp) {
  return itemTransform(mapRecords((s: SourceKey) => toRecord(s, stamp)));
}
