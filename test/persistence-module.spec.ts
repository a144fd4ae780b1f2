import { INestApplication, Injectable, Module, OnApplicationBootstrap } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { EventEmitterModule } from '@nestjs/event-emitter';
import { ScheduleModule } from '@nestjs/schedule';
import { Test } from '@nestjs/testing';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  PERSISTENCE_ADAPTERS,
  PersistenceAdapter,
  PersistenceErrorCode,
  PersistenceModule,
  PersistenceModuleOptions,
  PersistenceOptionsFactory,
  PersistenceStore,
  SessionManager,
} from 'nestjs-persistence';
import { createApp } from './fixtures/app.factory';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

async function boot(imports: unknown[], providers: unknown[] = []): Promise<INestApplication> {
  @Module({ imports: imports as never[], providers: providers as never[] })
  class AppModule {}
  const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  await app.init();
  return app;
}

describe('PersistenceModule', () => {
  let dir: string;
  const apps: INestApplication[] = [];
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await removeDir(dir);
  });

  describe('options are validated at start-up', () => {
    const cases: Array<[string, PersistenceModuleOptions, RegExp]> = [
      [
        'format',
        { format: 'yaml' as never },
        /option "format" is invalid.*'json', 'json-compact', 'json-gzip'/,
      ],
      [
        'autoSave.interval',
        { autoSave: { interval: 0 } },
        /option "autoSave.interval" is invalid \(got 0\).*whole number of milliseconds/,
      ],
      ['autoSave.interval', { autoSave: { interval: -5 } }, /"autoSave.interval" is invalid/],
      ['autoSave.interval', { autoSave: { interval: 1.5 } }, /"autoSave.interval" is invalid/],
      [
        'autoSave',
        { autoSave: 'often' as never },
        /option "autoSave" is invalid.*\{ interval: milliseconds \} or false/,
      ],
      ['path', { path: '' }, /option "path" is invalid/],
      [
        'loadOnBoot',
        { loadOnBoot: 'yes' as never },
        /option "loadOnBoot" is invalid.*true or false/,
      ],
      ['ioConcurrency', { ioConcurrency: 0 }, /option "ioConcurrency" is invalid/],
      [
        'onUnreadable',
        { onUnreadable: 'ignore' as never },
        /option "onUnreadable" is invalid.*'fail'.*'start'/,
      ],
      [
        'logger',
        { logger: { log: () => undefined } as never },
        /option "logger" is invalid.*LoggerService.*or false/,
      ],
      ['adapters', { adapters: {} as never }, /option "adapters" is invalid/],
      [
        'format.extension',
        {
          format: {
            format: 'x',
            extension: 'x',
            serialize: () => Buffer.from(''),
            deserialize: () => 1,
          },
        },
        /option "format.extension" is invalid/,
      ],
    ];
    it.each(cases)(
      'a bad "%s" fails app.init() with an error naming the option and the fix',
      async (_name, options, message) => {
        const error = await createApp({ path: dir, ...options }).catch((e: unknown) => e);
        expect(error).toMatchObject({ code: PersistenceErrorCode.InvalidOptions });
        expect((error as Error).message).toMatch(message);
      },
    );

    it.each([
      ['autosave', { autosave: false, fromat: 'json' }, 'autoSave'],
      ['fromat', { fromat: 'json' }, 'format'],
      ['autoSave.intervall', { autoSave: { intervall: 1000 } }, 'autoSave.interval'],
      ['backups.kep', { backups: { directory: '../b', kep: 3 } }, 'backups.keep'],
      ['encryption.kye', { encryption: { kye: 'k' } }, 'encryption.key'],
      ['limits.maxFileByte', { limits: { maxFileByte: 10 } }, 'limits.maxFileBytes'],
      ['lock.leaseMS', { lock: { leaseMS: 1000 } }, 'lock.leaseMs'],
    ])(
      'an unknown option "%s" fails app.init() naming the closest known one',
      async (option, options, closest) => {
        const error = await createApp({ path: dir, ...(options as object) }).catch(
          (e: unknown) => e,
        );
        expect(error).toMatchObject({ code: PersistenceErrorCode.InvalidOptions });
        expect((error as Error).message).toContain(`"${option}" is not an option`);
        expect((error as Error).message).toContain(`Did you mean "${closest}"?`);
      },
    );

    it('lock.renewMs must be shorter than lock.leaseMs', async () => {
      const error = await createApp({
        path: dir,
        lock: { leaseMs: 1000, renewMs: 1000 },
      }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: PersistenceErrorCode.InvalidOptions });
      expect((error as Error).message).toMatch(/"lock.renewMs" is invalid \(got 1000\)/);
    });

    // Auto-save without ScheduleModule: see test/module-wiring.spec.ts.

    it('auto-save off needs no ScheduleModule', async () => {
      const app = await createApp({ path: dir, autoSave: false }, { schedule: false });
      apps.push(app);
      expect(app.get(PersistenceStore).isAutoSaveEnabled()).toBe(false);
    });

    it('applies the defaults: ./data under the working directory, json, auto-save every 5 minutes', async () => {
      const cwd = process.cwd();
      process.chdir(dir);
      try {
        const app = await boot([
          EventEmitterModule.forRoot(),
          ScheduleModule.forRoot(),
          PersistenceModule.forRoot(),
        ]);
        apps.push(app);
        const store = app.get(PersistenceStore);
        expect(store.path).toBe(join(dir, 'data'));
        expect(store.getSerializer().format).toBe('json');
        expect(store.isAutoSaveEnabled()).toBe(true);
      } finally {
        process.chdir(cwd);
      }
    });
  });

  describe('forRootAsync', () => {
    it('takes options from a factory with injected ConfigService', async () => {
      const app = await boot([
        ConfigModule.forRoot({
          ignoreEnvFile: true,
          load: [() => ({ STATE_DIR: dir, STATE_FORMAT: 'json-compact' })],
        }),
        EventEmitterModule.forRoot(),
        ScheduleModule.forRoot(),
        PersistenceModule.forRootAsync({
          imports: [ConfigModule],
          inject: [ConfigService],
          useFactory: (config: ConfigService) => ({
            path: config.getOrThrow<string>('STATE_DIR'),
            format: config.getOrThrow<'json-compact'>('STATE_FORMAT'),
            autoSave: false,
          }),
        }),
      ]);
      apps.push(app);
      const store = app.get(PersistenceStore);
      expect(store.path).toBe(dir);
      expect(store.getSerializer().format).toBe('json-compact');
    });

    it('takes options from a class (useClass) and validates them too', async () => {
      @Injectable()
      class OptionsFactory implements PersistenceOptionsFactory {
        createPersistenceOptions(): PersistenceModuleOptions {
          return { path: dir, autoSave: false, format: 'json-gzip' };
        }
      }
      const app = await boot([
        EventEmitterModule.forRoot(),
        PersistenceModule.forRootAsync({ useClass: OptionsFactory }),
      ]);
      apps.push(app);
      expect(app.get(PersistenceStore).getSerializer().format).toBe('json-gzip');

      @Injectable()
      class BadFactory implements PersistenceOptionsFactory {
        async createPersistenceOptions(): Promise<PersistenceModuleOptions> {
          return { path: dir, autoSave: { interval: -1 } };
        }
      }
      await expect(
        boot([PersistenceModule.forRootAsync({ useClass: BadFactory })]),
      ).rejects.toMatchObject({ code: PersistenceErrorCode.InvalidOptions });
    });

    it('takes options from an existing provider (useExisting)', async () => {
      @Injectable()
      class SharedOptions implements PersistenceOptionsFactory {
        createPersistenceOptions(): PersistenceModuleOptions {
          return { path: join(dir, 'shared'), autoSave: false };
        }
      }
      @Module({ providers: [SharedOptions], exports: [SharedOptions] })
      class OptionsModule {}
      const app = await boot([
        PersistenceModule.forRootAsync({ imports: [OptionsModule], useExisting: SharedOptions }),
      ]);
      apps.push(app);
      expect(app.get(PersistenceStore).path).toBe(join(dir, 'shared'));
    });
  });

  describe('providers', () => {
    it('isGlobal makes the store and managers injectable in every module', async () => {
      @Injectable()
      class Consumer {
        constructor(
          readonly store: PersistenceStore,
          readonly sessions: SessionManager,
        ) {}
      }
      @Module({ providers: [Consumer], exports: [Consumer] })
      class FeatureModule {}
      const app = await boot([
        PersistenceModule.forRoot({ path: dir, autoSave: false, isGlobal: true }),
        FeatureModule,
      ]);
      apps.push(app);
      const consumer = app.get(Consumer);
      expect(consumer.store).toBe(app.get(PersistenceStore));
      expect(consumer.sessions).toBe(app.get(SessionManager));
    });

    it('without isGlobal, a feature module cannot inject the store (Nest reports it)', async () => {
      @Injectable()
      class Consumer {
        constructor(readonly store: PersistenceStore) {}
      }
      @Module({ providers: [Consumer] })
      class FeatureModule {}
      await expect(
        boot([PersistenceModule.forRoot({ path: dir, autoSave: false }), FeatureModule]),
      ).rejects.toThrow(/PersistenceStore/);
    });

    it('the PERSISTENCE_ADAPTERS token lists every persisted adapter', async () => {
      const app = await createApp({ path: dir });
      apps.push(app);
      const adapters = app.get<readonly PersistenceAdapter[]>(PERSISTENCE_ADAPTERS);
      expect(adapters.map((a) => a.name)).toEqual(['sessions', 'conversations', 'focus']);
    });

    it('two applications in one process keep separate state', async () => {
      const a = await createApp({ path: join(dir, 'a') });
      const b = await createApp({ path: join(dir, 'b') });
      apps.push(a, b);
      a.get(SessionManager).create({ id: 'only-in-a' });
      expect(b.get(SessionManager).get('only-in-a')).toBeUndefined();
      await a.get(PersistenceStore).saveAll();
      await b.get(PersistenceStore).saveAll();
      await b.get(PersistenceStore).loadAll();
      expect(b.get(SessionManager).list()).toEqual([]);
      expect(a.get(SessionManager).list()).toHaveLength(1);
    });
  });

  describe('lifecycle', () => {
    it('has loaded the saved state before any onApplicationBootstrap hook of the application', async () => {
      await mkdir(join(dir, 'sessions'), { recursive: true });
      const data = {
        id: 'restored',
        status: 'active',
        createdAt: new Date().toISOString(),
        updatedAt: new Date().toISOString(),
        metadata: {},
      };
      await writeFile(
        join(dir, 'sessions', 'restored.json'),
        JSON.stringify({ id: 'restored', v: 1, data }),
      );
      const seen: string[][] = [];
      @Injectable()
      class Early implements OnApplicationBootstrap {
        constructor(private readonly sessions: SessionManager) {}
        onApplicationBootstrap(): void {
          seen.push(this.sessions.list().map((s) => s.id));
        }
      }
      const app = await createApp({ path: dir }, { providers: [Early] });
      apps.push(app);
      expect(seen).toEqual([['restored']]);
    });

    it('loadOnBoot: false starts empty', async () => {
      const first = await createApp({ path: dir });
      first.get(SessionManager).create({ id: 's' });
      await first.close();
      const app = await createApp({ path: dir, loadOnBoot: false });
      apps.push(app);
      expect(app.get(SessionManager).list()).toEqual([]);
    });

    it('saves on shutdown what changed since the last save, once', async () => {
      const app = await createApp({ path: dir });
      const store = app.get(PersistenceStore);
      let saves = 0;
      store.onSave(() => saves++);
      app.get(SessionManager).create({ id: 'late' });
      await app.close();
      expect(saves).toBe(1);
      await store.beforeApplicationShutdown();
      expect(saves).toBe(1);
      const next = await createApp({ path: dir });
      apps.push(next);
      expect(next.get(SessionManager).get('late')).toBeDefined();
    });

    it('waits for a save in flight before the shutdown save', async () => {
      const app = await createApp({ path: dir });
      const store = app.get(PersistenceStore);
      const order: string[] = [];
      store.onSave(() => order.push('saved'));
      app.get(SessionManager).create({ id: 'x' });
      const inFlight = store.saveAll().then(() => order.push('in-flight resolved'));
      await app.close();
      order.push('closed');
      await inFlight;
      expect(order).toEqual(['saved', 'in-flight resolved', 'saved', 'closed']);
    });

    it('saveOnShutdown: false does not save on close', async () => {
      const app = await createApp({ path: dir, saveOnShutdown: false });
      app.get(SessionManager).create({ id: 'lost' });
      await app.close();
      const next = await createApp({ path: dir });
      apps.push(next);
      expect(next.get(SessionManager).list()).toEqual([]);
    });

    it('a failed save on shutdown is reported and does not stop the shutdown', async () => {
      const adapter = {
        name: 'broken',
        snapshot: (): never => {
          throw new Error('cannot snapshot');
        },
        restore: () => undefined,
      };
      const app = await createApp({ path: dir, adapters: [adapter] });
      const errors: string[] = [];
      app.get(PersistenceStore).onError((e) => errors.push(`${e.operation}:${e.error.code}`));
      await expect(app.close()).resolves.toBeUndefined();
      expect(errors).toEqual([`shutdown:${PersistenceErrorCode.AdapterFailed}`]);
    });
  });
});
