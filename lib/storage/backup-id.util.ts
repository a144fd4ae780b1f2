import { randomBytes } from 'node:crypto';

/** A backup id: the UTC time (sortable as text, no `:`), then 8 random hex digits. */
const BACKUP_ID = /^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z-[0-9a-f]{8}$/;

/** True for an id this library generates (and nothing that could be a path: no `/`, `.`, `..`). */
export function isBackupId(value: unknown): value is string {
  return typeof value === 'string' && BACKUP_ID.test(value);
}

/** The time part of an id, as a Date. */
export function backupIdTime(id: string): Date {
  const [date, time] = id.slice(0, 24).split('T');
  const [h, m, s, ms] = time.slice(0, -1).split('-');
  return new Date(`${date}T${h}:${m}:${s}.${ms}Z`);
}

/**
 * A new id for a backup taken at `now`, sorting after every id in `existing` (when the clock is
 * behind the newest backup, or two backups fall in one millisecond, the time is moved just past it).
 */
export function newBackupId(now: Date, existing: readonly string[]): string {
  let time = now.getTime();
  for (const id of existing) {
    const taken = backupIdTime(id).getTime();
    if (taken >= time) time = taken + 1;
  }
  const stamp = new Date(time).toISOString().replace(/[:.]/g, '-');
  return `${stamp}-${randomBytes(4).toString('hex')}`;
}
