import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { basename } from 'node:path';
import { errorCode, PersistenceFileSystem } from './file-system.interface';
import { LOCK_FILE } from './on-disk.names';

/* Reading the lock's files (`.lock` and its claims): their owner record, and the hash that names them. */

/** A contender's lock content before it is linked into place: `.lock.new-<host hash>-<pid>-<random>`. */
export const TEMP_PREFIX = `${LOCK_FILE}.new-`;
/** Exclusive right to remove one exact stale file: `.lock.takeover-<hash of its name and bytes>`. */
export const CLAIM_PREFIX = `${LOCK_FILE}.takeover-`;

/** True for the lock file and the lock's own temporary and claim files. */
export function isLockFileName(name: string): boolean {
  return name === LOCK_FILE || name.startsWith(`${LOCK_FILE}.`);
}

/** Bytes of a lock or claim file that are read (and hashed); real ones are about 120 bytes. */
const MAX_LOCK_BYTES = 64 * 1024;

/** Who holds a store: written into the lock file as JSON. */
export interface LockOwner {
  pid: number;
  host: string;
  token: string;
  since: string;
  /** The owner's `lock.leaseMs`: a waiter on another host waits at least this long. */
  lease?: number;
  /** Renewals so far: each one writes a new record, so the bytes a waiter watches change. */
  beat?: number;
}

/** A lock or claim file as read: the hash of its exact bytes, and its owner when it parses. */
export interface LockFile {
  id: string;
  owner?: LockOwner;
}

export const sha256 = (data: string | Uint8Array): string =>
  createHash('sha256').update(data).digest('hex');

/** Identity of a lock or claim file: the hash of its size and (first {@link MAX_LOCK_BYTES}) bytes. */
export const fileId = (size: number, bytes: Uint8Array): string =>
  sha256(Buffer.concat([Buffer.from(`${size}\n`), bytes]));

/** A lock or claim file: undefined when missing; its bytes' hash, and its owner when it parses. */
export async function readLockFile(
  fs: PersistenceFileSystem,
  path: string,
): Promise<LockFile | undefined> {
  let handle;
  try {
    handle = await fs.open(path, 'read');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    throw error;
  }
  try {
    const { size } = await handle.stat();
    const buffer = Buffer.alloc(Math.min(size, MAX_LOCK_BYTES));
    let length = 0;
    while (length < buffer.length) {
      const read = await handle.read(buffer, length, buffer.length - length, length);
      if (read === 0) break;
      length += read;
    }
    const bytes = buffer.subarray(0, length);
    return { id: fileId(size, bytes), owner: parseLockOwner(bytes) };
  } finally {
    await handle.close();
  }
}

/** The owner recorded in a lock or claim file, or undefined when it is not a valid record. */
export function parseLockOwner(bytes: Buffer): LockOwner | undefined {
  try {
    const value = JSON.parse(bytes.toString('utf8')) as Partial<LockOwner> | null;
    if (
      typeof value === 'object' &&
      value !== null &&
      Number.isSafeInteger(value.pid) &&
      (value.pid as number) > 0 &&
      typeof value.host === 'string' &&
      typeof value.token === 'string'
    ) {
      return {
        pid: value.pid as number,
        host: value.host,
        token: value.token,
        since: typeof value.since === 'string' ? value.since : '',
        ...(Number.isSafeInteger(value.lease) && (value.lease as number) > 0
          ? { lease: value.lease }
          : {}),
        ...(Number.isSafeInteger(value.beat) ? { beat: value.beat } : {}),
      };
    }
  } catch {
    // not JSON: unreadable
  }
  return undefined;
}

/** Short hash of a host name, used in temporary file names. */
export const hostTag = (host: string = hostname()): string => sha256(host).slice(0, 8);

/** The claim that gives one contender the right to remove `target` while it holds the bytes `id`. */
export const claimName = (target: string, id: string): string =>
  `${CLAIM_PREFIX}${sha256(`${basename(target)}\n${id}`).slice(0, 32)}`;

/** Name of the claim on the file `target` (a path or a name) while it holds exactly `content`. */
export const claimFileName = (target: string, content: Uint8Array): string =>
  claimName(target, fileId(content.length, content));

/** Name of a temporary lock file of process `pid` on this host (`suffix`: random hex). */
export const lockTempFileName = (pid: number, suffix: string, host: string = hostname()): string =>
  `${TEMP_PREFIX}${hostTag(host)}-${pid}-${suffix}`;
