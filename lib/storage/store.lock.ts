import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { basename, join } from 'node:path';
import { writeNewFile } from './atomic-write';
import { errorCode, PersistenceFileSystem } from './file-system.interface';
import { fsyncDirectory } from './fs.util';
import { LOCK_FILE } from './on-disk.names';

export { LOCK_FILE };

/** A contender's lock content before it is linked into place: `.lock.new-<host hash>-<pid>-<random>`. */
const TEMP_PREFIX = `${LOCK_FILE}.new-`;
/** Exclusive right to remove one exact stale file: `.lock.takeover-<hash of its name and bytes>`. */
const CLAIM_PREFIX = `${LOCK_FILE}.takeover-`;
/** Left by versions before 0.2 when they crashed while moving a stale lock aside. */
const OLD_ASIDE_PREFIX = `${LOCK_FILE}.stale-`;

/** Bytes of a lock or claim file that are read (and hashed); real ones are about 120 bytes. */
const MAX_LOCK_BYTES = 64 * 1024;
/** Attempts before giving up while another live contender is taking over a stale lock. */
const MAX_ATTEMPTS = 50;
/** Longest pause between two attempts, in milliseconds (the pause doubles from 1 ms, with jitter). */
const MAX_BACKOFF_MS = 100;
/** Claims of claims followed at most (each level needs a contender that crashed mid take-over). */
const MAX_CLAIM_DEPTH = 8;

/** True for the lock file and the lock's own temporary and claim files. */
export function isLockFileName(name: string): boolean {
  return name === LOCK_FILE || name.startsWith(`${LOCK_FILE}.`);
}

/** Who holds a store: written into the lock file as JSON. */
export interface LockOwner {
  pid: number;
  host: string;
  token: string;
  since: string;
}

/** The store is held by a live process. */
export class LockHeldError extends Error {
  constructor(readonly owner: LockOwner | undefined) {
    super('held');
  }
}

/** A lock or claim file as read: the hash of its exact bytes, and its owner when it parses. */
interface LockFile {
  id: string;
  owner?: LockOwner;
}

/** What a take-over attempt found. */
type TakeOver =
  { kind: 'done' } | { kind: 'changed' } | { kind: 'busy'; by: LockOwner | undefined };

/** Folders locked (or being locked) by this process: two stores in one process cannot share one. */
const lockedHere = new Set<string>();
/** Tokens of locks this process holds or is acquiring: a file naming our pid with another token is stale. */
const tokensHere = new Set<string>();

/** Reported as the replaced owner when the stale lock could not be parsed. */
const UNREADABLE: LockOwner = { pid: 0, host: 'unknown', token: 'unreadable', since: '' };

const sha256 = (data: string | Uint8Array): string =>
  createHash('sha256').update(data).digest('hex');

/** Short hash of this host's name, used in temporary file names. */
export const hostTag = (): string => sha256(hostname()).slice(0, 8);

/** Identity of a lock or claim file: the hash of its size and (first {@link MAX_LOCK_BYTES}) bytes. */
const fileId = (size: number, bytes: Uint8Array): string =>
  sha256(Buffer.concat([Buffer.from(`${size}\n`), bytes]));

/** The claim that gives one contender the right to remove `target` while it holds the bytes `id`. */
const claimName = (target: string, id: string): string =>
  `${CLAIM_PREFIX}${sha256(`${basename(target)}\n${id}`).slice(0, 32)}`;

/** Name of the claim on the file `target` (a path or a name) while it holds exactly `content`. */
export const claimFileName = (target: string, content: Uint8Array): string =>
  claimName(target, fileId(content.length, content));

/** Name of a temporary lock file of process `pid` on this host (`suffix`: random hex). */
export const lockTempFileName = (pid: number, suffix: string): string =>
  `${TEMP_PREFIX}${hostTag()}-${pid}-${suffix}`;

/**
 * One writer per store folder, race-free between processes (docs/on-disk-format.md, "One writer"):
 *  1. the owner record (pid, host, token, since) is written whole into a unique temporary file and
 *     fsynced, then `link()`ed to `.lock`: the link fails atomically (EEXIST) when `.lock` exists, so
 *     exactly one contender wins, and `.lock` never exists empty or half written;
 *  2. a lock whose owner is gone (same host, pid not running), or that cannot be parsed (left by an
 *     older version), is identified by the hash of its bytes; a contender replaces it only while
 *     holding the claim `.lock.takeover-<hash>` (also created by `link()`, so only one holds it) and
 *     only if `.lock` still has those exact bytes, by `rename()`-ing its temporary file over it (one
 *     atomic step, so nobody slips in between); the others then find the new, live owner;
 *  3. a claim whose holder died is itself a stale file, removed the same way (a claim on the claim).
 * The caller logs a take-over. Leftover temporary and claim files of dead processes are removed by
 * the next owner.
 */
export class StoreLock {
  private owner?: LockOwner;

  constructor(
    private readonly fs: PersistenceFileSystem,
    private readonly root: string,
    private readonly fileMode: number,
  ) {}

  /** The record this store wrote into `.lock`, while it holds the lock. */
  get holder(): LockOwner | undefined {
    return this.owner;
  }

  get path(): string {
    return join(this.root, LOCK_FILE);
  }

  /** Who holds the lock now, as written in the lock file; `undefined` when free or unreadable. */
  async currentOwner(): Promise<LockOwner | undefined> {
    return (await this.read(this.path).catch(() => undefined))?.owner;
  }

  /** Takes the lock; returns the stale owner it replaced, if any. Throws `LockHeldError`. */
  async acquire(): Promise<LockOwner | undefined> {
    if (lockedHere.has(this.root)) {
      throw new LockHeldError({
        pid: process.pid,
        host: hostname(),
        token: 'this process',
        since: '',
      });
    }
    lockedHere.add(this.root);
    const owner: LockOwner = {
      pid: process.pid,
      host: hostname(),
      token: randomBytes(8).toString('hex'),
      since: new Date().toISOString(),
    };
    tokensHere.add(owner.token);
    const temp = join(this.root, lockTempFileName(process.pid, randomBytes(4).toString('hex')));
    try {
      await writeNewFile(this.fs, temp, Buffer.from(JSON.stringify(owner)), this.fileMode);
      try {
        const replaced = await this.publish(temp);
        this.owner = owner;
        await this.removeLeftovers(temp);
        return replaced;
      } finally {
        await this.fs.unlink(temp).catch(() => undefined);
      }
    } catch (error) {
      if (!this.owner) {
        lockedHere.delete(this.root);
        tokensHere.delete(owner.token);
      }
      throw error;
    }
  }

  /** Releases the lock if this store still holds it. */
  async release(): Promise<void> {
    if (!this.owner) return;
    const current = await this.read(this.path).catch(() => undefined);
    if (current?.owner?.token === this.owner.token) {
      await this.fs.unlink(this.path).catch(() => undefined);
    }
    lockedHere.delete(this.root);
    tokensHere.delete(this.owner.token);
    this.owner = undefined;
  }

  /**
   * Links `temp` to `.lock`; a stale `.lock` is replaced by `temp` under its claim. Returns the owner
   * it replaced, if any.
   */
  private async publish(temp: string): Promise<LockOwner | undefined> {
    let blocker: LockOwner | undefined;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      try {
        await this.fs.link(temp, this.path);
        await this.syncOrUndo();
        return undefined;
      } catch (error) {
        if (errorCode(error) !== 'EEXIST') throw error;
      }
      const current = await this.read(this.path);
      if (!current) continue; // released meanwhile: race again at once
      if (current.owner && isAlive(current.owner)) throw new LockHeldError(current.owner);
      const outcome = await this.takeOver(temp, this.path, current.id, 0);
      if (outcome.kind === 'done') return current.owner ?? UNREADABLE;
      if (outcome.kind === 'busy') {
        blocker = outcome.by ?? current.owner;
        await backOff(attempt);
      }
    }
    throw new LockHeldError(blocker);
  }

  /**
   * Under the claim on `target` holding exactly the bytes hashed as `id` (a link from `source`, so
   * only one contender holds it), checks that `target` still holds them, then replaces it by `source`
   * (the lock itself: `rename()`, one atomic step, so nobody can slip in between) or removes it (a
   * stale claim). A claim left by a dead contender is removed first, the same way.
   */
  private async takeOver(
    source: string,
    target: string,
    id: string,
    depth: number,
  ): Promise<TakeOver> {
    const claim = join(this.root, claimName(target, id));
    try {
      await this.fs.link(source, claim);
    } catch (error) {
      if (errorCode(error) !== 'EEXIST') throw error;
      const holder = await this.read(claim);
      if (!holder) return { kind: 'changed' };
      if ((holder.owner && isAlive(holder.owner)) || depth >= MAX_CLAIM_DEPTH) {
        return { kind: 'busy', by: holder.owner };
      }
      const outcome = await this.takeOver(source, claim, holder.id, depth + 1);
      return outcome.kind === 'busy' ? outcome : { kind: 'changed' };
    }
    try {
      const current = await this.read(target);
      if (current?.id !== id) return { kind: 'changed' };
      if (target === this.path) {
        await this.fs.rename(source, target);
        await this.syncOrUndo();
      } else {
        await this.fs.unlink(target);
        await fsyncDirectory(this.fs, this.root);
      }
      return { kind: 'done' };
    } finally {
      await this.fs.unlink(claim).catch(() => undefined);
    }
  }

  /** Makes our new `.lock` durable; if that fails, removes it again (we do not hold the store). */
  private async syncOrUndo(): Promise<void> {
    try {
      await fsyncDirectory(this.fs, this.root);
    } catch (error) {
      await this.fs.unlink(this.path).catch(() => undefined);
      throw error;
    }
  }

  /**
   * Removes what crashed contenders left: their temporary files (named with host and pid) and their
   * claims (by the claim protocol). Best effort: the lock is held either way, and leftovers are
   * harmless.
   */
  private async removeLeftovers(temp: string): Promise<void> {
    try {
      const tag = hostTag();
      for (const entry of await this.fs.readdir(this.root)) {
        const path = join(this.root, entry.name);
        if (entry.type !== 'file' || path === temp) continue;
        if (entry.name.startsWith(TEMP_PREFIX)) {
          const [entryTag, pid] = entry.name.slice(TEMP_PREFIX.length).split('-');
          if (entryTag === tag && (Number(pid) === process.pid || !isRunning(Number(pid)))) {
            await this.fs.unlink(path).catch(() => undefined);
          }
        } else if (entry.name.startsWith(CLAIM_PREFIX)) {
          const holder = await this.read(path);
          if (holder && !(holder.owner && isAlive(holder.owner))) {
            await this.takeOver(this.path, path, holder.id, 1);
          }
        } else if (entry.name.startsWith(OLD_ASIDE_PREFIX)) {
          await this.fs.unlink(path).catch(() => undefined);
        }
      }
    } catch {
      // Leftovers stay until the next start: they block nothing.
    }
  }

  /** A lock or claim file: undefined when missing; its bytes' hash, and its owner when it parses. */
  private async read(path: string): Promise<LockFile | undefined> {
    let handle;
    try {
      handle = await this.fs.open(path, 'read');
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
      return { id: fileId(size, bytes), owner: parse(bytes) };
    } finally {
      await handle.close();
    }
  }
}

/** The owner recorded in a lock or claim file, or undefined when it is not a valid record. */
function parse(bytes: Buffer): LockOwner | undefined {
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
      };
    }
  } catch {
    // not JSON: unreadable
  }
  return undefined;
}

/** A lock from another host cannot be checked, so it counts as alive. */
export function isAlive(owner: LockOwner): boolean {
  if (owner.host !== hostname()) return true;
  // Our own pid: alive only with a token this process holds (else ours from a previous life, e.g.
  // pid 1 in a container).
  if (owner.pid === process.pid) return tokensHere.has(owner.token);
  return isRunning(owner.pid);
}

/** True when a process with this pid exists on this host. */
export function isRunning(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errorCode(error) === 'EPERM';
  }
}

/** A short pause before the next attempt: doubling from 1 ms up to {@link MAX_BACKOFF_MS}, with jitter. */
function backOff(attempt: number): Promise<void> {
  const ceiling = Math.min(2 ** attempt, MAX_BACKOFF_MS);
  return new Promise((resolve) => setTimeout(resolve, ceiling / 2 + (Math.random() * ceiling) / 2));
}
