import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { errorCode, PersistenceFileSystem } from './file-system.interface';
import { fsyncDirectory } from './fs.util';

/** Name of the lock file in the store folder. */
export const LOCK_FILE = '.lock';

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

/** Folders locked by this process, so two stores in one process cannot share a folder either. */
const lockedHere = new Set<string>();

/**
 * One writer per store folder: an exclusive lock file created with O_EXCL, holding pid and host.
 * A lock whose owner is gone (same host, pid no longer running) is taken over; the caller logs it.
 */
export class StoreLock {
  private owner?: LockOwner;

  constructor(
    private readonly fs: PersistenceFileSystem,
    private readonly root: string,
    private readonly fileMode: number,
  ) {}

  get path(): string {
    return join(this.root, LOCK_FILE);
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
    const owner: LockOwner = {
      pid: process.pid,
      host: hostname(),
      token: randomBytes(8).toString('hex'),
      since: new Date().toISOString(),
    };
    let replaced: LockOwner | undefined;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const handle = await this.fs.open(this.path, 'create', this.fileMode);
        try {
          await handle.write(Buffer.from(JSON.stringify(owner)), 0);
          await handle.sync();
        } finally {
          await handle.close();
        }
        await fsyncDirectory(this.fs, this.root);
        this.owner = owner;
        lockedHere.add(this.root);
        return replaced;
      } catch (error) {
        if (errorCode(error) !== 'EEXIST') throw error;
      }
      const current = await this.read();
      if (current && isAlive(current)) {
        throw new LockHeldError(current);
      }
      // Stale: move it aside under a unique name (only one contender wins the rename), then retry.
      const aside = join(this.root, `${LOCK_FILE}.stale-${randomBytes(4).toString('hex')}`);
      try {
        await this.fs.rename(this.path, aside);
        await this.fs.unlink(aside);
        replaced = current ?? { pid: 0, host: 'unknown', token: 'unreadable', since: '' };
      } catch (error) {
        if (errorCode(error) !== 'ENOENT') throw error;
      }
    }
    throw new LockHeldError(await this.read());
  }

  /** Releases the lock if this store still holds it. */
  async release(): Promise<void> {
    if (!this.owner) return;
    const current = await this.read().catch(() => undefined);
    if (current?.token === this.owner.token) {
      await this.fs.unlink(this.path).catch(() => undefined);
    }
    lockedHere.delete(this.root);
    this.owner = undefined;
  }

  /** Who holds the lock now, as written in the lock file; `undefined` when free or unreadable. */
  async read(): Promise<LockOwner | undefined> {
    try {
      const handle = await this.fs.open(this.path, 'read');
      try {
        const { size } = await handle.stat();
        const buffer = Buffer.alloc(Math.min(size, 4096));
        const read = await handle.read(buffer, 0, buffer.length, 0);
        const parsed = JSON.parse(buffer.subarray(0, read).toString('utf8')) as LockOwner;
        return typeof parsed.pid === 'number' && typeof parsed.host === 'string'
          ? parsed
          : undefined;
      } finally {
        await handle.close();
      }
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return undefined;
      return undefined; // unreadable: treated as stale
    }
  }
}

/** A lock from another host cannot be checked, so it counts as alive. */
export function isAlive(owner: LockOwner): boolean {
  if (owner.host !== hostname()) return true;
  if (owner.pid === process.pid) return false; // ours from a previous life (e.g. pid 1 in a container)
  try {
    process.kill(owner.pid, 0);
    return true;
  } catch (error) {
    return errorCode(error) === 'EPERM';
  }
}
