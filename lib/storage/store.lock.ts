import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { PersistenceError } from '../errors/persistence.error';
import { writeNewFile } from './atomic-write';
import { errorCode, PersistenceFileSystem } from './file-system.interface';
import { fsyncDirectory } from './fs.util';
import { LockLease, LockTiming, RenewOutcome } from './lock.lease';
import {
  CLAIM_PREFIX,
  claimName,
  fileId,
  hostTag,
  lockTempFileName,
  LockOwner,
  readLockFile,
  TEMP_PREFIX,
} from './lock.file';
import { LockWatch } from './lock.watch';
import { LOCK_FILE } from './on-disk.names';

export type { LockOwner };
export { claimFileName, isLockFileName, lockTempFileName } from './lock.file';
export { LOCK_FILE };

/** Attempts before giving up while another live contender is taking over a stale lock. */
const MAX_ATTEMPTS = 50;
/** Longest pause between two attempts, in milliseconds (the pause doubles from 1 ms, with jitter). */
const MAX_BACKOFF_MS = 100;
/** Claims of claims followed at most (each level needs a contender that crashed mid take-over). */
const MAX_CLAIM_DEPTH = 8;
/** Longest lease a lock record may ask waiters for (a larger or missing one: the waiter's own). */
const MAX_RECORDED_LEASE_MS = 24 * 60 * 60 * 1000;

/** The lease of `lock: {}`: see `LockOptions` (`lib/interfaces/persistence-module-options.interface.ts`). */
export const DEFAULT_LOCK_TIMING: LockTiming = { leaseMs: 30_000, renewMs: 10_000 };

/** How a store takes its lock: the lease, and (tests only) the host name it writes and compares. */
export interface LockSettings extends LockTiming {
  host?: string;
}

/** The store is held by a live process. */
export class LockHeldError extends Error {
  constructor(readonly owner: LockOwner | undefined) {
    super('held');
  }
}

/** What a take-over attempt found. */
type TakeOver =
  { kind: 'done' } | { kind: 'changed' } | { kind: 'busy'; by: LockOwner | undefined };

/**
 * Folders locked (or being locked) by this process, with the host name used: two stores in one
 * process cannot share one (a test may simulate stores of other hosts in one process).
 */
const lockedHere = new Set<string>();
/** Tokens of locks this process holds or is acquiring: a file naming our pid with another token is stale. */
const tokensHere = new Set<string>();

/** Reported as the replaced owner when the stale lock could not be parsed. */
const UNREADABLE: LockOwner = { pid: 0, host: 'unknown', token: 'unreadable', since: '' };

/**
 * One writer per store folder, race-free between processes (docs/on-disk-format.md, "One writer"):
 *  1. the owner record (pid, host, token, since, lease) is written whole into a unique temporary
 *     file and fsynced, then `link()`ed to `.lock`: the link fails atomically (EEXIST) when `.lock`
 *     exists, so exactly one contender wins, and `.lock` never exists empty or half written;
 *  2. the owner renews its record every `renewMs` ({@link LockLease}): a new record replaces its own
 *     under the claim on its current bytes (below), so a renewal and a take-over never interleave;
 *  3. a stale lock is one whose owner is gone: on this host, its pid is not running; from another
 *     host, its bytes stayed the same for a whole lease on the waiter's clock ({@link LockWatch});
 *     or it cannot be parsed (damaged: a record is only linked into place whole and fsynced). It is
 *     identified by the hash of its bytes; a contender replaces it only while holding the claim
 *     `.lock.takeover-<hash>` (also created by `link()`, so only one holds it) and only if `.lock`
 *     still has those exact bytes, by `rename()`-ing its temporary file over it (one atomic step,
 *     so nobody slips in between); the others then find the new, live owner;
 *  4. a claim whose holder died is itself a stale file, removed the same way (a claim on the claim).
 * The caller logs a take-over. Leftover temporary and claim files of dead processes are removed by
 * the next owner.
 */
export class StoreLock {
  private owner?: LockOwner;
  /** Hash of the bytes of our record in `.lock`: what a renewal expects to find there. */
  private ownId?: string;
  private lease?: LockLease;
  private readonly host: string;
  private readonly watch: LockWatch;
  /** How long the take-over of the last acquire waited for an unrenewed lock of another host. */
  private waitedMs?: number;

  constructor(
    private readonly fs: PersistenceFileSystem,
    private readonly root: string,
    private readonly fileMode: number,
    private readonly settings: LockSettings = DEFAULT_LOCK_TIMING,
    private readonly onLost: (error: PersistenceError) => void = () => undefined,
  ) {
    this.host = settings.host ?? hostname();
    this.watch = new LockWatch(
      (path) => readLockFile(this.fs, path),
      () => this.claims(),
      Math.max(1, Math.min(1000, Math.floor(settings.renewMs / 2))),
    );
  }

  /** The record this store wrote into `.lock`, while it holds the lock. */
  get holder(): LockOwner | undefined {
    return this.owner;
  }

  get path(): string {
    return join(this.root, LOCK_FILE);
  }

  /** Milliseconds the last take-over waited for an unrenewed lock of another host (else undefined). */
  get unrenewedMs(): number | undefined {
    return this.waitedMs;
  }

  /** Why this store may not write (it lost its lock), or undefined. */
  get lostError(): PersistenceError | undefined {
    return this.lease?.lostError;
  }

  /**
   * `undefined` while this store may write without waiting; otherwise a promise that confirms the
   * lock first, rejecting with `PERSISTENCE_LOCK_LOST` (see {@link LockLease.writable}).
   */
  writable(): Promise<void> | undefined {
    return this.lease?.writable();
  }

  /** Who holds the lock now, as written in the lock file; `undefined` when free or unreadable. */
  async currentOwner(): Promise<LockOwner | undefined> {
    return (await readLockFile(this.fs, this.path).catch(() => undefined))?.owner;
  }

  /** Takes the lock; returns the stale owner it replaced, if any. Throws `LockHeldError`. */
  async acquire(): Promise<LockOwner | undefined> {
    const here = `${this.host}\0${this.root}`;
    if (lockedHere.has(here)) {
      throw new LockHeldError({
        pid: process.pid,
        host: this.host,
        token: 'this process',
        since: '',
      });
    }
    lockedHere.add(here);
    const owner: LockOwner = {
      pid: process.pid,
      host: this.host,
      token: randomBytes(8).toString('hex'),
      since: new Date().toISOString(),
      lease: this.settings.leaseMs,
    };
    tokensHere.add(owner.token);
    const bytes = Buffer.from(JSON.stringify(owner));
    const temp = this.tempPath();
    const started = performance.now();
    this.waitedMs = undefined;
    try {
      await writeNewFile(this.fs, temp, bytes, this.fileMode);
      try {
        const replaced = await this.publish(temp);
        this.owner = owner;
        this.ownId = fileId(bytes.length, bytes);
        this.lease = new LockLease(
          this.path,
          this.settings,
          () => this.renew(),
          this.onLost,
          started,
        );
        await this.removeLeftovers(temp);
        return replaced;
      } finally {
        await this.fs.unlink(temp).catch(() => undefined);
      }
    } catch (error) {
      if (!this.owner) {
        lockedHere.delete(here);
        tokensHere.delete(owner.token);
      }
      throw error;
    }
  }

  /** Stops renewing and releases the lock if this store still holds it. */
  async release(): Promise<void> {
    if (!this.owner) return;
    await this.lease?.stop();
    this.lease = undefined;
    const current = await readLockFile(this.fs, this.path).catch(() => undefined);
    if (current?.owner?.token === this.owner.token) {
      await this.fs.unlink(this.path).catch(() => undefined);
    }
    lockedHere.delete(`${this.host}\0${this.root}`);
    tokensHere.delete(this.owner.token);
    this.owner = undefined;
    this.ownId = undefined;
  }

  /**
   * Replaces our record by a renewed one (the next `beat`), under the claim on our current bytes so
   * that it never interleaves with a take-over; finds out whether another process has the lock now.
   */
  private async renew(): Promise<RenewOutcome> {
    const owner = this.owner;
    const ownId = this.ownId;
    if (!owner || !ownId) return { kind: 'busy' };
    const next: LockOwner = { ...owner, beat: (owner.beat ?? 0) + 1 };
    const bytes = Buffer.from(JSON.stringify(next));
    const temp = this.tempPath();
    // No fsync: readers see the content without one, and after a crash of this host its owner is
    // gone anyway (an empty or torn record is stale). A renewal costs no trip to the disk.
    await writeNewFile(this.fs, temp, bytes, this.fileMode, false);
    const claim = join(this.root, claimName(this.path, ownId));
    try {
      try {
        await this.fs.link(temp, claim);
      } catch (error) {
        if (errorCode(error) !== 'EEXIST') throw error;
        const current = await readLockFile(this.fs, this.path);
        return current?.id === ownId ? { kind: 'busy' } : { kind: 'lost', owner: current?.owner };
      }
      try {
        const current = await readLockFile(this.fs, this.path);
        if (current?.id !== ownId) return { kind: 'lost', owner: current?.owner };
        await this.fs.rename(temp, this.path);
        this.owner = next;
        this.ownId = fileId(bytes.length, bytes);
        return { kind: 'renewed' };
      } finally {
        await this.fs.unlink(claim).catch(() => undefined);
      }
    } finally {
      await this.fs.unlink(temp).catch(() => undefined);
    }
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
      const current = await readLockFile(this.fs, this.path);
      if (!current) continue; // released meanwhile: race again at once
      if (current.owner && this.isLocal(current.owner)) {
        if (this.isAliveHere(current.owner)) throw new LockHeldError(current.owner);
      } else if (current.owner) {
        const lease = this.leaseOf(current.owner);
        const seen = await this.watch.unchangedFor(this.path, current, lease, true);
        if (seen !== 'unchanged') {
          // Renewed, or replaced by a new owner: alive, unless it is gone or of this host.
          const { now } = seen;
          if (now?.owner && !this.isLocal(now.owner)) throw new LockHeldError(now.owner);
          continue;
        }
        this.waitedMs = lease;
      }
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
    const name = claimName(target, id);
    const claim = join(this.root, name);
    try {
      await this.fs.link(source, claim);
    } catch (error) {
      if (errorCode(error) !== 'EEXIST') throw error;
      const holder = await readLockFile(this.fs, claim);
      if (!holder) return { kind: 'changed' };
      if (depth >= MAX_CLAIM_DEPTH) return { kind: 'busy', by: holder.owner };
      if (holder.owner && this.isLocal(holder.owner)) {
        if (this.isAliveHere(holder.owner)) return { kind: 'busy', by: holder.owner };
      } else if (holder.owner && !this.watch.isStaleClaim(name, holder.id)) {
        const lease = this.leaseOf(holder.owner);
        if ((await this.watch.unchangedFor(claim, holder, lease, false)) !== 'unchanged') {
          return { kind: 'changed' };
        }
      }
      const outcome = await this.takeOver(source, claim, holder.id, depth + 1);
      return outcome.kind === 'busy' ? outcome : { kind: 'changed' };
    }
    try {
      const current = await readLockFile(this.fs, target);
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
   * Removes what crashed contenders left: their temporary files (named with host and pid), claims on
   * bytes that no longer exist (nobody can ever claim them again: every record has its own token),
   * and claims of dead contenders of this host (by the claim protocol). Best effort: the lock is
   * held either way, and leftovers are harmless.
   */
  private async removeLeftovers(temp: string): Promise<void> {
    try {
      const tag = hostTag(this.host);
      for (const entry of await this.fs.readdir(this.root)) {
        const path = join(this.root, entry.name);
        if (entry.type !== 'file' || path === temp) continue;
        if (entry.name.startsWith(TEMP_PREFIX)) {
          const [entryTag, pid] = entry.name.slice(TEMP_PREFIX.length).split('-');
          if (entryTag === tag && (Number(pid) === process.pid || !isRunning(Number(pid)))) {
            await this.fs.unlink(path).catch(() => undefined);
          }
        }
      }
      await this.removeOrphanClaims();
      for (const [name, id] of await this.claims()) {
        const path = join(this.root, name);
        const holder = await readLockFile(this.fs, path);
        if (holder?.id === id && holder.owner && this.isLocal(holder.owner)) {
          if (!this.isAliveHere(holder.owner)) await this.takeOver(this.path, path, id, 1);
        }
      }
    } catch {
      // Leftovers stay until the next start: they block nothing.
    }
  }

  /** Removes claims whose target (`.lock` or a claim) no longer holds the bytes they claim. */
  private async removeOrphanClaims(): Promise<void> {
    const claims = await this.claims();
    const lock = await readLockFile(this.fs, this.path);
    for (let removed = true; removed;) {
      removed = false;
      const claimed = new Set([...claims].map(([name, id]) => claimName(name, id)));
      if (lock) claimed.add(claimName(this.path, lock.id));
      for (const name of claims.keys()) {
        if (claimed.has(name)) continue;
        await this.fs.unlink(join(this.root, name)).catch(() => undefined);
        claims.delete(name);
        removed = true;
      }
    }
  }

  /** The claim files of the folder: name → hash of their bytes. */
  private async claims(): Promise<Map<string, string>> {
    const claims = new Map<string, string>();
    for (const entry of await this.fs.readdir(this.root)) {
      if (entry.type !== 'file' || !entry.name.startsWith(CLAIM_PREFIX)) continue;
      const file = await readLockFile(this.fs, join(this.root, entry.name));
      if (file) claims.set(entry.name, file.id);
    }
    return claims;
  }

  /** A new temporary file name of this process for a record. */
  private tempPath(): string {
    return join(
      this.root,
      lockTempFileName(process.pid, randomBytes(4).toString('hex'), this.host),
    );
  }

  /** True when `owner` is of this host: its pid can be checked. */
  private isLocal(owner: LockOwner): boolean {
    return owner.host === this.host;
  }

  /** An owner of this host is alive while its pid runs (our own pid: with a token we hold). */
  private isAliveHere(owner: LockOwner): boolean {
    // Our own pid: alive only with a token this process holds (else ours from a previous life, e.g.
    // pid 1 in a container).
    if (owner.pid === process.pid) return tokensHere.has(owner.token);
    return isRunning(owner.pid);
  }

  /** How long a record of another host must stay unchanged: the longer of its lease and ours. */
  private leaseOf(owner: LockOwner): number {
    const recorded = owner.lease ?? 0;
    return Math.max(this.settings.leaseMs, recorded <= MAX_RECORDED_LEASE_MS ? recorded : 0);
  }
}

/**
 * For a look without waiting (the CLI): a lock of this host is alive while its pid runs; one of
 * another host counts as alive (only watching it for a lease tells, as a start does).
 */
export function isAlive(owner: LockOwner): boolean {
  if (owner.host !== hostname()) return true;
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
