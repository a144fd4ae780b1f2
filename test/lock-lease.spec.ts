import { INestApplication } from '@nestjs/common';
import { readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  PersistenceErrorCode,
  PersistenceErrorEvent,
  PersistenceEvents,
  PersistenceStore,
  SessionManager,
} from 'nestjs-persistence';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { PersistenceError } from '../lib/errors/persistence.error';
import { NodeFileSystem } from '../lib/storage/node-file-system';
import { LOCK_FILE, LockHeldError, LockOwner, StoreLock } from '../lib/storage/store.lock';
import { createApp } from './fixtures/app.factory';
import { InFlightFileSystem } from './fixtures/in-flight-fs';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * The lock's lease, in one process with Jest fake timers (the file system is real): a lock of
 * another host that nobody renews is taken over after a whole lease and not before; an owner on
 * another host that renews is never taken over; an owner that finds another record in `.lock` at
 * its renewal reports the loss and writes nothing more. Other hosts are simulated with the internal
 * `host` setting. The same with real processes: test/lock-race.spec.ts, test/single-writer.spec.ts.
 */

const LEASE = { leaseMs: 30_000, renewMs: 10_000 };

/** The real file system, its calls in flight counted (see {@link advance}). */
const disk = new InFlightFileSystem(new NodeFileSystem());

/** Advances fake time by `ms` in steps; after each, waits until the real I/O it started is done. */
async function advance(ms: number, step = 250): Promise<void> {
  await disk.idle();
  for (let done = 0; done < ms; done += step) {
    await jest.advanceTimersByTimeAsync(Math.min(step, ms - done));
    await disk.idle();
  }
}

const foreign = (host: string, token: string): Buffer =>
  Buffer.from(JSON.stringify({ pid: 2 ** 22 + 1, host, token, since: '2020-01-01T00:00:00Z' }));

/** A promise's outcome, observable without awaiting it. */
function track<T>(promise: Promise<T>): { value?: T; error?: unknown; settled: boolean } {
  const state: { value?: T; error?: unknown; settled: boolean } = { settled: false };
  promise.then(
    (value) => Object.assign(state, { value, settled: true }),
    (error: unknown) => Object.assign(state, { error, settled: true }),
  );
  return state;
}

describe('the lock lease (fake timers)', () => {
  let dir: string;
  const locks: StoreLock[] = [];
  const apps: INestApplication[] = [];
  beforeEach(async () => {
    dir = await makeTempDir('persistence-lease-');
    jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] });
  });
  afterEach(async () => {
    jest.useRealTimers();
    for (const app of apps.splice(0)) await app.close();
    for (const lock of locks.splice(0)) await lock.release();
    await removeDir(dir);
  });

  const lockOf = (host: string, onLost?: (error: PersistenceError) => void): StoreLock => {
    const lock = new StoreLock(disk.fs, dir, 0o600, { ...LEASE, host }, onLost);
    locks.push(lock);
    return lock;
  };

  it('a lock of another host that nobody renews is taken over after a whole lease, not before', async () => {
    const stale = foreign('old-pod', 'gone');
    await writeFile(join(dir, LOCK_FILE), stale);
    const acquiring = track(lockOf('new-pod').acquire());
    await advance(LEASE.leaseMs - 1000);
    expect(acquiring.settled).toBe(false);
    expect(await readFile(join(dir, LOCK_FILE))).toEqual(stale);
    await advance(5000); // the lease, and one more look
    expect(acquiring.error).toBeUndefined();
    expect(acquiring.value).toMatchObject({ host: 'old-pod', token: 'gone' });
    expect(JSON.parse(await readFile(join(dir, LOCK_FILE), 'utf8'))).toMatchObject({
      host: 'new-pod',
      lease: LEASE.leaseMs,
    });
  });

  it('an owner of another host renews its lock, and is never taken over while it does', async () => {
    const owner = lockOf('pod-a');
    await owner.acquire();
    const token = owner.holder!.token;
    const contender = track(lockOf('pod-b').acquire());
    await advance(LEASE.renewMs + 3000);
    expect(contender.error).toBeInstanceOf(LockHeldError);
    expect((contender.error as LockHeldError).owner).toMatchObject({ host: 'pod-a', token });
    // Long after a lease, the owner still holds it, renewed once per renewMs.
    const later = track(lockOf('pod-c').acquire());
    await advance(4 * LEASE.leaseMs);
    expect(later.error).toBeInstanceOf(LockHeldError);
    const record = JSON.parse(await readFile(join(dir, LOCK_FILE), 'utf8')) as LockOwner;
    expect(record).toMatchObject({ host: 'pod-a', token });
    expect(record.beat).toBeGreaterThanOrEqual(4);
    expect(owner.lostError).toBeUndefined();
  });

  it('an owner whose lock was taken over stops writing: PERSISTENCE_LOCK_LOST, reported once', async () => {
    const reported: PersistenceError[] = [];
    const owner = lockOf('pod-a', (error) => reported.push(error));
    await owner.acquire();
    expect(owner.writable()).toBeUndefined(); // within the lease: no wait, no I/O
    // Another host took it over (its record renamed over ours, as a take-over does).
    await writeFile(join(dir, 'other'), foreign('pod-b', 'new-owner'));
    await rename(join(dir, 'other'), join(dir, LOCK_FILE));
    await advance(LEASE.renewMs + 1000);
    expect(reported.map((e) => e.code)).toEqual([PersistenceErrorCode.LockLost]);
    expect(reported[0].message).toContain('on pod-b');
    await expect(owner.writable()).rejects.toMatchObject({ code: PersistenceErrorCode.LockLost });
    await advance(3 * LEASE.renewMs);
    expect(reported).toHaveLength(1);
    await owner.release();
    expect(await readFile(join(dir, LOCK_FILE))).toEqual(foreign('pod-b', 'new-owner'));
  });

  it('an owner that cannot renew for a whole lease refuses writes until a renewal succeeds', async () => {
    let failing = false;
    // A fault that cannot be produced for real on demand: the folder refuses new links (EIO).
    const faulty = new Proxy(disk.fs, {
      get: (target, property) =>
        property === 'link' && failing
          ? () => Promise.reject(Object.assign(new Error('EIO: link'), { code: 'EIO' }))
          : (Reflect.get(target, property, target) as unknown),
    });
    const owner = new StoreLock(faulty, dir, 0o600, { ...LEASE, host: 'pod-a' });
    locks.push(owner);
    await owner.acquire();
    failing = true;
    await advance(LEASE.leaseMs - 1000);
    expect(owner.writable()).toBeUndefined(); // the last confirmed renewal is less than a lease ago
    await advance(2000);
    await expect(owner.writable()).rejects.toMatchObject({
      code: PersistenceErrorCode.IoFailed,
      message: expect.stringContaining('renew the lock of') as unknown,
    });
    expect(owner.lostError).toBeUndefined(); // not lost: unconfirmed
    failing = false;
    await expect(owner.writable()).resolves.toBeUndefined(); // renews first, then allows
    expect(owner.writable()).toBeUndefined();
  });

  it('an application that lost its lock saves nothing more, says so, and leaves the new owner’s files alone', async () => {
    const store = join(dir, 'store');
    const app = await createApp(
      { path: store, lock: { ...LEASE, host: 'pod-a' } },
      { fileSystem: disk.fs },
    );
    apps.push(app);
    const errors: PersistenceErrorEvent[] = [];
    app.get(EventEmitter2).on(PersistenceEvents.Error, (event: PersistenceErrorEvent) => {
      errors.push(event);
    });
    app.get(SessionManager).create({ id: 'before' });
    await app.get(PersistenceStore).saveAll();
    const taken = foreign('pod-b', 'new-owner');
    await writeFile(join(dir, 'other'), taken);
    await rename(join(dir, 'other'), join(store, LOCK_FILE));
    const journal = await stat(join(store, '.journal'));
    await advance(LEASE.renewMs + 1000);
    expect(errors.map((e) => e.error.code)).toEqual([PersistenceErrorCode.LockLost]);
    app.get(SessionManager).create({ id: 'after' });
    await expect(app.get(PersistenceStore).saveAll()).rejects.toMatchObject({
      code: PersistenceErrorCode.LockLost,
    });
    await expect(app.get(PersistenceStore).checkpoint()).rejects.toMatchObject({
      code: PersistenceErrorCode.LockLost,
    });
    const status = await app.get(PersistenceStore).getStatus();
    expect(status.writable).toBe(false);
    expect((await stat(join(store, '.journal'))).size).toBe(journal.size);
    expect(await readFile(join(store, LOCK_FILE))).toEqual(taken);
  });

  it('a store folder removed for longer than a lease is still recreated by the save after next', async () => {
    const store = join(dir, 'store');
    const app = await createApp(
      { path: store, lock: { ...LEASE, host: 'pod-a' } },
      { fileSystem: disk.fs },
    );
    apps.push(app);
    app.get(SessionManager).create({ id: 'kept' });
    await app.get(PersistenceStore).saveAll();
    await rm(store, { recursive: true });
    await advance(2 * LEASE.leaseMs); // renewals fail meanwhile: the folder is gone
    app.get(SessionManager).create({ id: 'new' });
    await expect(app.get(PersistenceStore).saveAll()).rejects.toMatchObject({
      code: PersistenceErrorCode.IoFailed,
      message: expect.stringContaining('was removed while the application ran') as unknown,
    });
    await app.get(PersistenceStore).saveAll(); // recreates the folder and its lock, writes it all
    await app.get(PersistenceStore).checkpoint();
    expect(JSON.parse(await readFile(join(store, LOCK_FILE), 'utf8'))).toMatchObject({
      host: 'pod-a',
    });
    expect((await readdir(join(store, 'sessions'))).length).toBe(2);
  });

  it('the renewal timer runs only while the lock is held', async () => {
    const owner = lockOf('pod-a');
    await owner.acquire();
    expect(jest.getTimerCount()).toBe(1);
    await owner.release();
    expect(jest.getTimerCount()).toBe(0);
  });
});
