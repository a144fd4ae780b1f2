import { Injectable, INestApplication, Module, OnModuleInit } from '@nestjs/common';
import { EventEmitterModule } from '@nestjs/event-emitter';
import { ScheduleModule } from '@nestjs/schedule';
import { Test } from '@nestjs/testing';
import { AsyncLocalStorage } from 'node:async_hooks';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  MemoryManager,
  PersistenceAdapter,
  PersistenceError,
  PersistenceErrorCode,
  PersistenceErrorEvent,
  PersistenceModule,
  PersistenceModuleOptions,
  PersistenceStore,
  SessionManager,
} from 'nestjs-persistence';
import { createApp, RecordingLogger } from './fixtures/app.factory';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * "Nothing accepted is ever lost": each describe is one class of data loss found by using the
 * module through its public API, and each test fails on the code before the fix.
 */

const codeOf = (error: unknown): string | undefined => (error as PersistenceError).code;

/** Whether this process may mount a tmpfs (root with mount permitted), decided at collection. */
function tmpfsProblem(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root';
  try {
    execFileSync('mount', ['--version'], { stdio: 'pipe' });
    return undefined;
  } catch {
    return 'no mount command';
  }
}

describe('nothing accepted is ever lost', () => {
  let dir: string;
  const apps: INestApplication[] = [];
  const open = async (
    options: PersistenceModuleOptions = {},
    extra: Parameters<typeof createApp>[1] = {},
  ): Promise<INestApplication> => {
    const app = await createApp({ path: dir, ...options }, extra);
    apps.push(app);
    return app;
  };
  const closeAll = async (): Promise<void> => {
    while (apps.length > 0) await apps.pop()!.close();
  };
  const errorsOf = (app: INestApplication): PersistenceErrorEvent[] => {
    const errors: PersistenceErrorEvent[] = [];
    app.get(PersistenceStore).onError((e) => errors.push(e));
    return errors;
  };

  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    await closeAll();
    await removeDir(dir);
  });

  describe('limits hold on both sides (the writer refuses what the reader would)', () => {
    it('an item over maxFileBytes is refused at save, its last version kept and loaded, and backup works', async () => {
      const limits = { maxFileBytes: 64 * 1024 };
      let app = await open({ limits });
      const memory = app.get(MemoryManager);
      memory.create({ id: 'c' });
      memory.addMessage('c', { role: 'user', content: 'small' });
      await app.get(PersistenceStore).saveAll();
      const errors = errorsOf(app);
      memory.addMessage('c', { role: 'user', content: 'x'.repeat(100 * 1024) });
      await expect(app.get(PersistenceStore).saveAll()).rejects.toMatchObject({
        code: PersistenceErrorCode.SaveIncomplete,
      });
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatchObject({ adapter: 'conversations', itemId: 'c' });
      expect(errors[0].error.code).toBe(PersistenceErrorCode.ItemTooLarge);
      const backup = await app
        .get(PersistenceStore)
        .backup(join(dir, '..', `${randomBytes(4).toString('hex')}-b`));
      expect(backup.files).toBe(1);
      await closeAll();
      app = await open({ limits });
      const loaded = app.get(MemoryManager).get('c');
      expect(loaded?.messages.map((m) => m.content)).toEqual(['small']);
      expect(await readdir(join(dir))).not.toContain('.quarantine');
      await removeDir(backup.path);
    });

    it('a gzip item that would inflate past maxInflatedBytes is refused at save (22M CJK characters, scaled down)', async () => {
      const limits = { maxInflatedBytes: 64 * 1024 };
      let app = await open({ format: 'json-gzip', limits });
      const memory = app.get(MemoryManager);
      memory.create({ id: 'cjk' });
      await app.get(PersistenceStore).saveAll();
      const errors = errorsOf(app);
      // 30,000 CJK characters: 90 KB of UTF-8, a few hundred bytes gzipped.
      memory.addMessage('cjk', { role: 'user', content: '漢'.repeat(30_000) });
      await expect(app.get(PersistenceStore).saveAll()).rejects.toMatchObject({
        code: PersistenceErrorCode.SaveIncomplete,
      });
      expect(errors.map((e) => e.error.code)).toEqual([PersistenceErrorCode.ItemTooLarge]);
      await closeAll();
      app = await open({ format: 'json-gzip', limits });
      expect(app.get(MemoryManager).get('cjk')?.messages).toEqual([]);
      expect(await readdir(dir)).not.toContain('.quarantine');
    });
  });

  describe('saves never delete or overwrite what the store did not load', () => {
    it('loadOnBoot: false, then close: every item on disk is still there', async () => {
      let app = await open();
      app.get(SessionManager).create({ id: 'a', metadata: { n: 1 } });
      app.get(SessionManager).create({ id: 'b' });
      await closeAll();
      app = await open({ loadOnBoot: false });
      app.get(SessionManager).create({ id: 'new' });
      await closeAll(); // saves on shutdown
      app = await open();
      expect(
        app
          .get(SessionManager)
          .list()
          .map((s) => s.id)
          .sort(),
      ).toEqual(['a', 'b', 'new']);
      expect(app.get(SessionManager).get('a')?.metadata).toEqual({ n: 1 });
    });

    it('loadOnBoot: false: an item with the id of a file not loaded is not saved over it until loadAll()', async () => {
      let app = await open();
      app.get(SessionManager).create({ id: 'a', status: 'on-disk' });
      await closeAll();
      app = await open({ loadOnBoot: false });
      const errors = errorsOf(app);
      const store = app.get(PersistenceStore);
      app.get(SessionManager).create({ id: 'a', status: 'in-memory' });
      await expect(store.saveAll()).rejects.toMatchObject({
        code: PersistenceErrorCode.SaveIncomplete,
      });
      expect(errors.map((e) => [e.error.code, e.itemId])).toEqual([
        [PersistenceErrorCode.UnloadedItem, 'a'],
      ]);
      expect(store.listUnloaded()).toEqual([
        expect.objectContaining({
          adapter: 'sessions',
          id: 'a',
          path: join(dir, 'sessions', 'a.json'),
        }),
      ]);
      await store.loadAll();
      expect(app.get(SessionManager).get('a')?.status).toBe('on-disk');
      expect(store.listUnloaded()).toEqual([]);
    });

    it('a file that could not be decrypted is never overwritten by a new item of its id; the right key reads it', async () => {
      const right = { key: randomBytes(32) };
      const wrong = { key: randomBytes(32) };
      let app = await open({ encryption: right });
      app.get(SessionManager).create({ id: 'secret', metadata: { v: 'original' } });
      await closeAll();
      const file = join(dir, 'sessions', 'secret.json.enc');
      const before = await readFile(file);
      app = await open({ encryption: wrong, onUnreadable: 'start' });
      expect(app.get(SessionManager).get('secret')).toBeUndefined();
      const errors = errorsOf(app);
      app.get(SessionManager).create({ id: 'secret', metadata: { v: 'recreated' } });
      await expect(app.get(PersistenceStore).saveAll()).rejects.toMatchObject({
        code: PersistenceErrorCode.SaveIncomplete,
      });
      expect(errors.map((e) => e.error.code)).toEqual([PersistenceErrorCode.UnloadedItem]);
      await closeAll();
      expect(await readFile(file)).toEqual(before);
      app = await open({ encryption: right });
      expect(app.get(SessionManager).get('secret')?.metadata).toEqual({ v: 'original' });
    });

    it('discardUnloaded() sets the unreadable file aside (never deleted) and lets the next save write the item', async () => {
      const right = { key: randomBytes(32) };
      let app = await open({ encryption: right });
      app.get(SessionManager).create({ id: 's', metadata: { v: 1 } });
      await closeAll();
      const before = await readFile(join(dir, 'sessions', 's.json.enc'));
      app = await open({ encryption: { key: randomBytes(32) }, onUnreadable: 'start' });
      const store = app.get(PersistenceStore);
      const moved = await store.discardUnloaded('sessions', 's');
      expect(moved).toHaveLength(1);
      expect(moved[0]).toContain(join(dir, '.quarantine', 'sessions'));
      expect(await readFile(moved[0])).toEqual(before);
      app.get(SessionManager).create({ id: 's', metadata: { v: 2 } });
      await store.saveAll();
      await expect(store.discardUnloaded('sessions', 's')).resolves.toEqual([]);
    });
  });

  describe('clear() keeps what the store did not load, and its protection', () => {
    it('after clear(), an undecryptable file is still listed, refuses a save of its id, and discardUnloaded() sets it aside', async () => {
      const right = { key: randomBytes(32) };
      let app = await open({ encryption: right });
      app.get(SessionManager).create({ id: 's', metadata: { v: 'original' } });
      await closeAll();
      const file = join(dir, 'sessions', 's.json.enc');
      const before = await readFile(file);
      app = await open({
        encryption: { key: randomBytes(32) },
        saveOnShutdown: false,
        onUnreadable: 'start',
      });
      const store = app.get(PersistenceStore);
      const errors = errorsOf(app);
      await store.clear();
      expect(store.listUnloaded()).toEqual([
        expect.objectContaining({ adapter: 'sessions', id: 's', path: file }),
      ]);
      app.get(SessionManager).create({ id: 's', metadata: { v: 'recreated' } });
      await expect(store.saveAll()).rejects.toMatchObject({
        code: PersistenceErrorCode.SaveIncomplete,
      });
      expect(errors.map((e) => [e.error.code, e.itemId])).toEqual([
        [PersistenceErrorCode.UnloadedItem, 's'],
      ]);
      expect(await readFile(file)).toEqual(before);
      const moved = await store.discardUnloaded('sessions', 's');
      expect(moved).toHaveLength(1);
      expect(await readFile(moved[0])).toEqual(before);
      await store.saveAll(); // now the new item may be written
      expect(store.listUnloaded()).toEqual([]);
    });
  });

  describe('restore() never deletes what this code cannot read', () => {
    it('loadOnBoot: false: files of another key stay (or go to .quarantine/), readable ones are replaced', async () => {
      const other = { key: randomBytes(32) };
      const mine = { key: randomBytes(32) };
      let app = await open({ encryption: other });
      app.get(SessionManager).create({ id: 'kept', metadata: { v: 'other key' } });
      app.get(SessionManager).create({ id: 'in-backup', metadata: { v: 'other key' } });
      await closeAll();
      app = await open({ encryption: mine, onUnreadable: 'start' });
      app.get(SessionManager).create({ id: 'readable', metadata: { v: 'mine' } });
      await closeAll();
      const kept = await readFile(join(dir, 'sessions', 'kept.json.enc'));
      const inBackup = await readFile(join(dir, 'sessions', 'in-backup.json.enc'));
      // A backup, with this store's key, holding `in-backup` only.
      const source = await makeTempDir();
      const backup = join(await makeTempDir(), 'b');
      const maker = await createApp({ path: source, encryption: mine });
      maker.get(SessionManager).create({ id: 'in-backup', metadata: { v: 'backup' } });
      await maker.get(PersistenceStore).saveAll();
      await maker.get(PersistenceStore).backup(backup);
      await maker.close();
      await removeDir(source);

      app = await open({ encryption: mine, loadOnBoot: false, saveOnShutdown: false });
      await app.get(PersistenceStore).restore(backup);
      await removeDir(join(backup, '..'));
      const sessions = app.get(SessionManager);
      expect(sessions.get('in-backup')?.metadata).toEqual({ v: 'backup' });
      expect(sessions.get('readable')).toBeUndefined(); // replaced: restore asked for it
      expect(await readFile(join(dir, 'sessions', 'kept.json.enc'))).toEqual(kept);
      const [aside] = await readdir(join(dir, '.quarantine', 'sessions'));
      expect(await readFile(join(dir, '.quarantine', 'sessions', aside))).toEqual(inBackup);
      expect(
        app
          .get(PersistenceStore)
          .listUnloaded()
          .map((u) => u.id),
      ).toEqual(['kept']);
    });
  });

  describe('a saveAll() always takes its snapshot after the call', () => {
    it.each(['clear', 'loadAll', 'restore'] as const)(
      'saveAll() after %s() runs a save of its own',
      async (operation) => {
        let release: () => void = () => undefined;
        let gated = false;
        let snapshots = 0;
        const gate: PersistenceAdapter = {
          name: 'gate',
          snapshot: async () => {
            snapshots++;
            if (gated) await new Promise<void>((resolve) => (release = resolve));
            return new Map();
          },
          restore: () => undefined,
        };
        const app = await open({ adapters: [gate] });
        const store = app.get(PersistenceStore);
        const sessions = app.get(SessionManager);
        sessions.create({ id: 'kept' });
        await store.saveAll();
        const backup = join(dir, '..', `${randomBytes(4).toString('hex')}-backup`);
        await store.backup(backup);
        gated = true;
        const running = store.saveAll(); // holds the queue
        await new Promise((resolve) => setImmediate(resolve));
        const first = store.saveAll(); // queued behind it
        const other =
          operation === 'clear'
            ? store.clear()
            : operation === 'loadAll'
              ? store.loadAll()
              : store.restore(backup);
        sessions.create({ id: 'after' });
        const second = store.saveAll();
        expect(second).not.toBe(first);
        gated = false;
        release();
        await Promise.all([running, first, other, second]);
        expect(snapshots).toBe(4); // the first save, the gated one, the queued one, the second
        await closeAll();
        const reopened = await open({ saveOnShutdown: false });
        // The state of the second call's moment is on disk, whatever the operation did before it.
        const ids = reopened
          .get(SessionManager)
          .list()
          .map((s) => s.id)
          .sort();
        // clear() keeps memory, so the second save writes everything again; loadAll() reads back
        // what the first save wrote; restore() puts the backup (without "after") in memory.
        expect(ids).toEqual(operation === 'restore' ? ['kept'] : ['after', 'kept']);
        await removeDir(backup);
      },
    );
  });

  describe('lifecycle: no leaks, no hangs, no deadlocks', () => {
    it('a boot that fails after this module started releases the folder to a retry in the same process', async () => {
      let app = await open();
      app.get(SessionManager).create({ id: 'x' });
      await closeAll();

      @Injectable()
      class Broken implements OnModuleInit {
        onModuleInit(): void {
          throw new Error('a service of the app failed to start');
        }
      }
      @Module({
        imports: [
          EventEmitterModule.forRoot(),
          ScheduleModule.forRoot(),
          PersistenceModule.forRoot({ path: dir, autoSave: false }),
        ],
        providers: [Broken],
      })
      class BrokenApp {}
      const moduleRef = await Test.createTestingModule({ imports: [BrokenApp] }).compile();
      const failed = moduleRef.createNestApplication({ logger: false });
      await expect(failed.init()).rejects.toThrow('a service of the app failed to start');
      // No app.close() for the failed one: the retry must still get the folder.
      app = await open();
      expect(app.get(SessionManager).get('x')).toBeDefined();
      app.get(SessionManager).create({ id: 'y' });
      await app.get(PersistenceStore).saveAll();
      await closeAll();
      app = await open();
      expect(
        app
          .get(SessionManager)
          .list()
          .map((s) => s.id)
          .sort(),
      ).toEqual(['x', 'y']);
    });

    it('an adapter restore() that awaits the store is refused with REENTRANT_CALL instead of deadlocking the boot', async () => {
      let refusal: unknown;
      @Injectable()
      class ReentrantAdapter implements PersistenceAdapter {
        readonly name = 'reentrant';
        constructor(private readonly store: PersistenceStore) {}
        snapshot(): ReadonlyMap<string, unknown> {
          return new Map([['one', { v: 1 }]]);
        }
        async restore(): Promise<void> {
          try {
            await this.store.saveAll();
          } catch (error) {
            refusal = error;
          }
        }
      }
      await open({ adapters: [ReentrantAdapter] }, { providers: [ReentrantAdapter] });
      expect(codeOf(refusal)).toBe(PersistenceErrorCode.ReentrantCall);
      expect((refusal as Error).message).toMatch(/inside adapter "reentrant"/);
    });

    it('with only the built-in managers the store never turns AsyncLocalStorage on (a custom adapter does)', async () => {
      // Its promise hooks would make every promise of the application slower; the built-in
      // adapters run no application code, so nothing in their calls can call the store back.
      const run = jest.spyOn(AsyncLocalStorage.prototype, 'run');
      try {
        let app = await open();
        app.get(SessionManager).create({ id: 'a' });
        app.get(MemoryManager).create({ id: 'c' });
        await app.get(PersistenceStore).saveAll();
        await closeAll();
        app = await open(); // load: revive() and restore() of each built-in adapter
        expect(app.get(SessionManager).get('a')).toBeDefined();
        await app.get(PersistenceStore).saveAll();
        expect(run).not.toHaveBeenCalled();
        await closeAll();
        @Injectable()
        class PlainAdapter implements PersistenceAdapter {
          readonly name = 'plain';
          snapshot(): ReadonlyMap<string, unknown> {
            return new Map([['one', { v: 1 }]]);
          }
          restore(): void {}
        }
        app = await open({ adapters: [PlainAdapter] }, { providers: [PlainAdapter] });
        await app.get(PersistenceStore).saveAll();
        expect(run).toHaveBeenCalled();
      } finally {
        run.mockRestore();
      }
    });

    it('work an adapter leaves behind (a callback that runs after its call returned) may call the store', async () => {
      let later: Promise<unknown> | undefined;
      @Injectable()
      class SchedulingAdapter implements PersistenceAdapter {
        readonly name = 'scheduling';
        constructor(private readonly store: PersistenceStore) {}
        snapshot(): ReadonlyMap<string, unknown> {
          return new Map([['one', { v: 1 }]]);
        }
        restore(): void {
          // Same async context as restore(), but it runs once restore() has returned.
          setImmediate(() => {
            later = this.store.saveAll();
          });
        }
      }
      await open({ adapters: [SchedulingAdapter] }, { providers: [SchedulingAdapter] });
      while (!later) await new Promise((resolve) => setImmediate(resolve));
      await expect(later).resolves.toMatchObject({ adapters: { scheduling: 1 } });
    });

    it('a snapshot() that never settles does not hang shutdown; the other adapters are saved', async () => {
      jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] });
      try {
        const stuck: PersistenceAdapter = {
          name: 'stuck',
          snapshot: () => new Promise(() => undefined),
          restore: () => undefined,
        };
        const app = await open({ adapters: [stuck], adapterTimeout: 2_000 });
        app.get(SessionManager).create({ id: 'saved-at-shutdown' });
        apps.length = 0;
        let closed = false;
        const closing = app.close().then(() => (closed = true));
        for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
        expect(closed).toBe(false);
        jest.advanceTimersByTime(2_000);
        await closing;
        expect(closed).toBe(true);
      } finally {
        jest.useRealTimers();
      }
      const reopened = await open();
      expect(reopened.get(SessionManager).get('saved-at-shutdown')).toBeDefined();
    });
  });

  describe('start-up in ordinary deployments', () => {
    it('a store path that is a symlink, and a new folder under a symlinked parent, both work', async () => {
      const real = join(dir, 'shared');
      await mkdir(real);
      await symlink(real, join(dir, 'current'));
      for (const path of [join(dir, 'current'), join(dir, 'current', 'data', 'nested')]) {
        let app = await open({ path });
        app.get(SessionManager).create({ id: 'linked' });
        await closeAll();
        app = await open({ path });
        expect(app.get(SessionManager).get('linked')).toBeDefined();
        await closeAll();
      }
      expect(await readdir(join(real, 'data', 'nested', 'sessions'))).toEqual(['linked.json']);
    });

    const mountProblem = tmpfsProblem();
    (mountProblem ? it.skip : it)(
      `after a shutdown on a full disk, the next start loads the committed state and reports the problem${mountProblem ? ` (skipped: ${mountProblem})` : ''}`,
      async () => {
        const disk = join(dir, 'disk');
        await mkdir(disk);
        execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', disk]);
        try {
          const path = join(disk, 'store');
          let app = await open({ path, checkpointBytes: 10 * 1024 * 1024 });
          for (let i = 0; i < 20; i++) {
            app.get(SessionManager).create({ id: `s${i}`, metadata: { pad: 'p'.repeat(2_000) } });
          }
          await app.get(PersistenceStore).saveAll(); // in the journal, not yet in item files
          // Fill the disk, then shut down: the shutdown checkpoint cannot write the item files.
          const filler = Buffer.alloc(4096, 1);
          for (let i = 0; ; i++) {
            try {
              await writeFile(join(disk, `filler-${i}`), filler);
            } catch {
              break;
            }
          }
          await closeAll();
          const logger = new RecordingLogger();
          app = await open({ path }, { logger });
          expect(app.get(SessionManager).list()).toHaveLength(20);
          expect(logger.lines.filter((l) => l.startsWith('error '))).toEqual([
            expect.stringMatching(/Recovery could not write 1 committed save\(s\).*ENOSPC/),
          ]);
          // Once there is room again, the deferred checkpoint goes through and nothing was lost.
          for (const name of await readdir(disk)) {
            if (name.startsWith('filler-')) await rm(join(disk, name));
          }
          await app.get(PersistenceStore).checkpoint();
          expect((await readdir(join(path, 'sessions'))).length).toBe(20);
          await closeAll();
        } finally {
          await closeAll();
          execFileSync('umount', [disk]);
        }
      },
    );

    it.each([
      ['undefined', undefined],
      ['null', null],
      ['{ path: undefined }', { path: undefined }],
    ])('a forRootAsync factory that returns %s fails with INVALID_OPTIONS', async (_, value) => {
      @Module({
        imports: [
          EventEmitterModule.forRoot(),
          ScheduleModule.forRoot(),
          PersistenceModule.forRootAsync({
            useFactory: () => value as unknown as PersistenceModuleOptions,
          }),
        ],
      })
      class AsyncApp {}
      const moduleRef = await Test.createTestingModule({ imports: [AsyncApp] }).compile();
      const app = moduleRef.createNestApplication({ logger: false });
      await expect(app.init()).rejects.toMatchObject({ code: PersistenceErrorCode.InvalidOptions });
      await app.close();
    });
  });

  describe('custom values JSON cannot carry exactly are refused at save, never silently changed', () => {
    const cases: Array<[string, unknown]> = [
      ['undefined', undefined],
      ['a function', () => 1],
      ['a symbol', Symbol('s')],
      ['a toJSON() returning undefined', { toJSON: () => undefined }],
      ['a Map', { m: new Map([['a', 1]]) }],
      ['a Set', { s: new Set([1]) }],
      ['a RegExp', { r: /x/ }],
      ['an Error', { e: new Error('x') }],
      ['NaN', { n: Number.NaN }],
      ['Infinity', { n: Number.POSITIVE_INFINITY }],
      ['a key whose value is undefined', { a: 1, b: undefined }],
      ['a nested Date (no revive)', { at: new Date(0) }],
      ['a BigInt', { n: BigInt(1) }],
      [
        'a cycle',
        (() => {
          const o: Record<string, unknown> = {};
          o.self = o;
          return o;
        })(),
      ],
    ];
    it.each(cases)(
      '%s: SERIALIZE_FAILED for that item, its last version kept, the rest saved',
      async (_, bad) => {
        const value = new Map<string, unknown>([
          ['good', { ok: true }],
          ['bad', { version: 1 }],
        ]);
        const adapter: PersistenceAdapter = {
          name: 'custom',
          snapshot: () => new Map(value),
          restore: () => undefined,
        };
        let app = await open({ adapters: [adapter] });
        await app.get(PersistenceStore).saveAll();
        const errors = errorsOf(app);
        value.set('bad', bad);
        value.set('good', { ok: 'changed' });
        await expect(app.get(PersistenceStore).saveAll()).rejects.toMatchObject({
          code: PersistenceErrorCode.SaveIncomplete,
        });
        expect(errors.map((e) => [e.itemId, e.error.code])).toEqual([
          ['bad', PersistenceErrorCode.SerializeFailed],
        ]);
        await closeAll();
        let restored: ReadonlyMap<string, unknown> | undefined;
        app = await open({
          adapters: [
            {
              name: 'custom',
              snapshot: () => new Map(),
              restore: (items) => void (restored = items),
            },
          ],
          saveOnShutdown: false,
        });
        expect(restored).toEqual(
          new Map<string, unknown>([
            ['good', { ok: 'changed' }],
            ['bad', { version: 1 }],
          ]),
        );
        expect(await readdir(dir)).not.toContain('.quarantine');
      },
    );

    it('with a revive(), Dates and class instances are written as JSON and rebuilt by revive()', async () => {
      class Slot {
        constructor(
          readonly at: Date,
          readonly label: string,
        ) {}
      }
      const slot = new Slot(new Date('2026-01-02T03:04:05.678Z'), 'x');
      const revive = (raw: unknown): Slot => {
        const value = raw as { at: string; label: string };
        return new Slot(new Date(value.at), value.label);
      };
      let app = await open({
        adapters: [
          {
            name: 'slots',
            snapshot: () => new Map([['s', slot]]),
            revive,
            restore: () => undefined,
          },
        ],
      });
      await app.get(PersistenceStore).saveAll();
      await closeAll();
      let restored: ReadonlyMap<string, unknown> | undefined;
      app = await open({
        adapters: [
          {
            name: 'slots',
            snapshot: () => new Map(),
            revive,
            restore: (items) => void (restored = items),
          },
        ],
        saveOnShutdown: false,
      });
      expect(restored?.get('s')).toStrictEqual(slot);
    });
  });

  describe('changes made in place', () => {
    it('an adapter that mutates the object it handed out is saved again (bytes are compared)', async () => {
      const cart = { items: ['apple'] };
      const adapter: PersistenceAdapter = {
        name: 'carts',
        snapshot: () => new Map([['cart', cart]]),
        restore: () => undefined,
      };
      let app = await open({ adapters: [adapter] });
      const store = app.get(PersistenceStore);
      await store.saveAll();
      cart.items.push('pear'); // same object, changed in place
      const meta = await store.saveAll();
      expect(meta.changed).toBe(1);
      await closeAll();
      let restored: ReadonlyMap<string, unknown> | undefined;
      app = await open({
        adapters: [
          { name: 'carts', snapshot: () => new Map(), restore: (items) => void (restored = items) },
        ],
        saveOnShutdown: false,
      });
      expect(restored?.get('cart')).toEqual({ items: ['apple', 'pear'] });
    });
  });

  describe('errors name the adapter and the problem', () => {
    it.each([
      ['null', null, /returned null, not a Map/],
      ['a plain object', { a: 1 }, /returned a plain object, not a Map/],
      ['a string', 'abc', /returned a string, not a Map/],
    ])(
      'a snapshot() that returns %s is ADAPTER_FAILED for that adapter; nothing of it is saved',
      async (_, value, message) => {
        const adapter: PersistenceAdapter = {
          name: 'odd',
          snapshot: () => value as unknown as ReadonlyMap<string, unknown>,
          restore: () => undefined,
        };
        const app = await open({ adapters: [adapter] });
        const errors = errorsOf(app);
        app.get(SessionManager).create({ id: 's' });
        await expect(app.get(PersistenceStore).saveAll()).rejects.toMatchObject({
          code: PersistenceErrorCode.SaveIncomplete,
        });
        expect(errors).toHaveLength(1);
        expect(errors[0]).toMatchObject({ adapter: 'odd' });
        expect(errors[0].error.code).toBe(PersistenceErrorCode.AdapterFailed);
        expect(errors[0].error.message).toMatch(message);
        expect(errors[0].error.message).toContain('"odd"');
        await app.get(PersistenceStore).checkpoint();
        expect(await readdir(join(dir, 'odd'))).toEqual([]);
        expect(await readdir(join(dir, 'sessions'))).toEqual(['s.json']);
      },
    );

    it('a snapshot with a duplicate id is ADAPTER_FAILED and counted once, not twice', async () => {
      const entries: Array<[string, unknown]> = [
        ['a', { v: 1 }],
        ['a', { v: 2 }],
      ];
      const mapLike = {
        size: 2,
        entries: () => entries[Symbol.iterator](),
      } as unknown as ReadonlyMap<string, unknown>;
      const app = await open({
        adapters: [{ name: 'dup', snapshot: () => mapLike, restore: () => undefined }],
      });
      const errors = errorsOf(app);
      const meta = await app
        .get(PersistenceStore)
        .saveAll()
        .catch((error: PersistenceError) => error);
      expect(codeOf(meta)).toBe(PersistenceErrorCode.SaveIncomplete);
      expect(errors.map((e) => [e.adapter, e.error.code])).toEqual([
        ['dup', PersistenceErrorCode.AdapterFailed],
      ]);
      expect(errors[0].error.message).toMatch(/returned the id "a" twice/);
    });
  });
});
