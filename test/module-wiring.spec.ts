import {
  INestApplication,
  Injectable,
  Module,
  OnApplicationBootstrap,
  Scope,
  Type,
} from '@nestjs/common';
import { ModulesContainer } from '@nestjs/core';
import { EventEmitter2, EventEmitterModule } from '@nestjs/event-emitter';
import { ScheduleModule, SchedulerRegistry } from '@nestjs/schedule';
import { Test } from '@nestjs/testing';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  InjectPersistenceAdapters,
  PERSISTENCE_ADAPTERS,
  PERSISTENCE_AUTO_SAVE_INTERVAL,
  PersistedState,
  PersistedStateAdapter,
  PersistenceAdapter,
  PersistenceErrorCode,
  PersistenceModule,
  PersistenceStore,
  SaveMetadata,
  SessionManager,
} from 'nestjs-persistence';
import { filter, firstValueFrom } from 'rxjs';
import { CartAdapter, CartModule } from './fixtures/cart.adapter';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

async function boot(imports: unknown[], providers: unknown[] = []): Promise<INestApplication> {
  @Module({ imports: imports as never[], providers: providers as never[] })
  class AppModule {}
  const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  await app.init();
  return app;
}

/** Every provider instance of `type` in the whole application, whatever its token or module. */
function instancesOf(app: INestApplication, type: Type<unknown>): unknown[] {
  const found = new Set<unknown>();
  for (const module of app.get(ModulesContainer).values()) {
    for (const wrapper of module.providers.values()) {
      if (wrapper.instance instanceof type) found.add(wrapper.instance);
    }
  }
  return [...found];
}

// --- a feature module with its own state, registered through forFeature() --------------------------

@Injectable()
class CounterService {
  counts = new Map<string, number>();
}

@Module({ providers: [CounterService], exports: [CounterService] })
class CounterStateModule {}

@Injectable()
class CounterAdapter implements PersistenceAdapter<number> {
  readonly name = 'counters';
  constructor(private readonly counters: CounterService) {}
  snapshot(): ReadonlyMap<string, number> {
    return new Map(this.counters.counts);
  }
  restore(items: ReadonlyMap<string, number>): void {
    this.counters.counts = new Map(items);
  }
}

/** A provider of the feature module that injects the adapter forFeature() registered. */
@Injectable()
class CounterReport {
  constructor(readonly adapter: CounterAdapter) {}
}

@Module({
  imports: [
    CounterStateModule,
    PersistenceModule.forFeature([CounterAdapter], { imports: [CounterStateModule] }),
  ],
  providers: [CounterReport],
})
class CounterModule {}

// --- a feature module whose adapter is a decorated provider of its own ------------------------------

@Injectable()
class NotesService {
  notes = new Map<string, string>();
}

@PersistedState('notes')
class NotesAdapter implements PersistedStateAdapter<string> {
  constructor(private readonly service: NotesService) {}
  snapshot(): ReadonlyMap<string, string> {
    return new Map(this.service.notes);
  }
  restore(items: ReadonlyMap<string, string>): void {
    this.service.notes = new Map(items);
  }
}

@Module({ providers: [NotesService, NotesAdapter], exports: [NotesService] })
class NotesModule {}

/** Reads the injected list once the store has filled it. */
@Injectable()
class AdapterLister implements OnApplicationBootstrap {
  names: string[] = [];
  constructor(@InjectPersistenceAdapters() readonly adapters: readonly PersistenceAdapter[]) {}
  onApplicationBootstrap(): void {
    this.names = this.adapters.map((adapter) => adapter.name);
  }
}

describe('module wiring', () => {
  let dir: string;
  const apps: INestApplication[] = [];
  const open = async (imports: unknown[], providers: unknown[] = []) => {
    const app = await boot(imports, providers);
    apps.push(app);
    return app;
  };

  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    jest.useRealTimers();
    await removeDir(dir);
  });

  describe('the module brings what it needs', () => {
    it('forRoot() with its defaults works in an app without ScheduleModule or EventEmitterModule: auto-save runs', async () => {
      jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] });
      const app = await open([PersistenceModule.forRoot({ path: dir })]);
      const store = app.get(PersistenceStore);
      expect(store.isAutoSaveEnabled()).toBe(true);
      const saved = firstValueFrom(store.events$.pipe(filter((event) => event.type === 'saved')));
      app.get(SessionManager).create({ id: 's-1' });

      jest.advanceTimersByTime(300_000); // the default interval

      expect(await saved).toMatchObject({ type: 'saved', payload: { items: 1 } });
      // Its registry is its own: nothing named SchedulerRegistry appears in the application, and
      // no EventEmitter2 is created.
      expect(() => app.get(SchedulerRegistry, { strict: false })).toThrow();
      expect(instancesOf(app, SchedulerRegistry)).toHaveLength(1);
      expect(instancesOf(app, EventEmitter2)).toHaveLength(0);
    });

    it.each([
      ['before', () => [EventEmitterModule.forRoot(), ScheduleModule.forRoot()], 0],
      ['after', () => [EventEmitterModule.forRoot(), ScheduleModule.forRoot()], 1],
    ])(
      'with ScheduleModule and EventEmitterModule imported %s it, the store uses their instances and creates none',
      async (_order, others, position) => {
        const persistence = PersistenceModule.forRoot({ path: dir });
        const imports = position === 0 ? [...others(), persistence] : [persistence, ...others()];
        const app = await open(imports);

        expect(instancesOf(app, SchedulerRegistry)).toEqual([app.get(SchedulerRegistry)]);
        expect(instancesOf(app, EventEmitter2)).toEqual([app.get(EventEmitter2)]);
        // The auto-save interval is in the application's registry...
        expect(app.get(SchedulerRegistry).getIntervals()).toEqual([PERSISTENCE_AUTO_SAVE_INTERVAL]);
        // ...and the application's emitter carries the store's events.
        const fromEmitter: SaveMetadata[] = [];
        app.get(EventEmitter2).on('persistence.saved', (meta: SaveMetadata) => {
          fromEmitter.push(meta);
        });
        const meta = await app.get(PersistenceStore).saveAll();
        expect(fromEmitter).toEqual([meta]);
      },
    );
  });

  describe('adapters registered where they live', () => {
    it('forFeature() makes adapters providers of the feature module, collected and persisted by the root store', async () => {
      const first = await open(
        [PersistenceModule.forRoot({ path: dir, autoSave: false }), CounterModule],
        [AdapterLister],
      );
      expect(first.get(AdapterLister).names).toEqual([
        'sessions',
        'conversations',
        'focus',
        'counters',
      ]);
      // The same instance: the feature module's provider is the one the store persists.
      const adapter = first.get(CounterReport).adapter;
      expect(first.get<readonly PersistenceAdapter[]>(PERSISTENCE_ADAPTERS)).toContain(adapter);
      first.get(CounterService).counts.set('visits', 3);
      await first.close();
      apps.length = 0;

      const second = await open([
        PersistenceModule.forRoot({ path: dir, autoSave: false }),
        CounterModule,
      ]);
      expect(second.get(CounterService).counts.get('visits')).toBe(3);
    });

    it('@PersistedState() names a provider of any module, found at init; its dependencies come from that module', async () => {
      const first = await open([
        PersistenceModule.forRoot({ path: dir, autoSave: false, builtInAdapters: false }),
        NotesModule,
      ]);
      expect(first.get<readonly PersistenceAdapter[]>(PERSISTENCE_ADAPTERS)).toEqual([
        first.get(NotesAdapter),
      ]);
      expect(first.get<PersistedStateAdapter>(NotesAdapter).name).toBe('notes');
      first.get(NotesService).notes.set('n-1', 'buy milk');
      await first.get(PersistenceStore).saveAll();
      await first.get(PersistenceStore).checkpoint();
      expect(await readdir(join(dir, 'notes'))).toEqual(['n-1.json']);
      await first.close();
      apps.length = 0;

      const second = await open([
        PersistenceModule.forRoot({ path: dir, autoSave: false }),
        NotesModule,
      ]);
      expect(second.get(NotesService).notes.get('n-1')).toBe('buy milk');
    });

    it('builtInAdapters: false leaves the decorated built-in adapters out', async () => {
      const app = await open([
        PersistenceModule.forRoot({ path: dir, autoSave: false, builtInAdapters: false }),
      ]);
      expect(app.get<readonly PersistenceAdapter[]>(PERSISTENCE_ADAPTERS)).toEqual([]);
    });

    it('a duplicate name fails init naming both classes and their modules', async () => {
      @PersistedState('counters')
      class OtherCounterAdapter {
        snapshot = () => new Map();
        restore = () => undefined;
      }
      @Module({ providers: [OtherCounterAdapter] })
      class StatsModule {}

      const error = await open([
        PersistenceModule.forRoot({ path: dir, autoSave: false }),
        CounterModule,
        StatsModule,
      ]).catch((e: unknown) => e);

      expect(error).toMatchObject({ code: PersistenceErrorCode.InvalidAdapter });
      expect((error as Error).message).toMatch(/Two persistence adapters are named "counters"/);
      expect((error as Error).message).toContain(
        'CounterAdapter (PersistenceModule.forFeature() in CounterModule)',
      );
      expect((error as Error).message).toContain('OtherCounterAdapter (in StatsModule)');
    });

    it('a duplicate of a built-in name names PersistenceModule', async () => {
      @PersistedState('sessions')
      class MySessionsAdapter {
        snapshot = () => new Map();
        restore = () => undefined;
      }
      @Module({ providers: [MySessionsAdapter] })
      class MineModule {}
      await expect(
        open([PersistenceModule.forRoot({ path: dir, autoSave: false }), MineModule]),
      ).rejects.toMatchObject({
        code: PersistenceErrorCode.InvalidAdapter,
        message: expect.stringContaining(
          'SessionAdapter (in PersistenceModule) and MySessionsAdapter (in MineModule)',
        ),
      });
    });

    it('an adapter without a name fails init naming the class and its module', async () => {
      class NamelessAdapter {
        snapshot = () => new Map();
        restore = () => undefined;
      }
      @Module({ imports: [PersistenceModule.forFeature([NamelessAdapter])] })
      class NamelessModule {}
      await expect(
        open([PersistenceModule.forRoot({ path: dir, autoSave: false }), NamelessModule]),
      ).rejects.toMatchObject({
        code: PersistenceErrorCode.InvalidAdapter,
        message: expect.stringMatching(
          /NamelessAdapter \(PersistenceModule.forFeature\(\) in NamelessModule\) has no name.*@PersistedState/,
        ),
      });
    });

    it('a decorator name that contradicts the class name fails init', async () => {
      @PersistedState('carts')
      class WrongAdapter {
        readonly name = 'baskets';
        snapshot = () => new Map();
        restore = () => undefined;
      }
      @Module({ providers: [WrongAdapter] })
      class WrongModule {}
      await expect(
        open([PersistenceModule.forRoot({ path: dir, autoSave: false }), WrongModule]),
      ).rejects.toMatchObject({
        code: PersistenceErrorCode.InvalidAdapter,
        message: expect.stringContaining(
          'WrongAdapter (in WrongModule) is decorated @PersistedState("carts") but its name is "baskets"',
        ),
      });
    });

    it('a request-scoped decorated adapter fails init: the store needs one instance', async () => {
      @Injectable({ scope: Scope.REQUEST })
      @PersistedState('per-request')
      class ScopedAdapter {
        snapshot = () => new Map();
        restore = () => undefined;
      }
      @Module({ providers: [ScopedAdapter] })
      class ScopedModule {}
      await expect(
        open([PersistenceModule.forRoot({ path: dir, autoSave: false }), ScopedModule]),
      ).rejects.toMatchObject({
        code: PersistenceErrorCode.InvalidAdapter,
        message: expect.stringContaining(
          'ScopedAdapter (in ScopedModule) is request- or transient',
        ),
      });
    });
  });

  describe('the adapters option', () => {
    it('takes a provider class from the module that provides it', async () => {
      const app = await open([
        PersistenceModule.forRoot({ path: dir, autoSave: false, adapters: [CartAdapter] }),
        CartModule,
      ]);
      expect(app.get<readonly PersistenceAdapter[]>(PERSISTENCE_ADAPTERS)).toContain(
        app.get(CartAdapter, { strict: false }),
      );
    });

    it('a class listed there and also decorated counts once', async () => {
      const app = await open([
        PersistenceModule.forRoot({ path: dir, autoSave: false, adapters: [NotesAdapter] }),
        NotesModule,
      ]);
      const names = app.get<readonly PersistenceAdapter[]>(PERSISTENCE_ADAPTERS).map((a) => a.name);
      expect(names.filter((name) => name === 'notes')).toHaveLength(1);
    });

    it('does not create a class that is not a provider: init fails and says to use forFeature', async () => {
      @Injectable()
      class StandaloneAdapter {
        readonly name = 'standalone';
        snapshot = () => new Map();
        restore = () => undefined;
      }
      await expect(
        open([
          PersistenceModule.forRoot({ path: dir, autoSave: false, adapters: [StandaloneAdapter] }),
        ]),
      ).rejects.toMatchObject({
        code: PersistenceErrorCode.InvalidAdapter,
        message: expect.stringMatching(
          /StandaloneAdapter \(in the "adapters" option\) is not a provider of any module.*PersistenceModule\.forFeature\(\[StandaloneAdapter\]\).*providers/,
        ),
      });
    });
  });

  it('forFeature() without forRoot() fails init: its adapters would never be saved', async () => {
    @Module({
      imports: [PersistenceModule.forFeature([CounterAdapter], { imports: [CounterStateModule] })],
    })
    class OrphanModule {}
    const moduleRef = await Test.createTestingModule({ imports: [OrphanModule] }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await expect(app.init()).rejects.toMatchObject({
      code: PersistenceErrorCode.InvalidOptions,
      message: expect.stringContaining(
        'PersistenceModule.forFeature([CounterAdapter]) is imported, but the application has no store: import PersistenceModule.forRoot()',
      ) as unknown,
    });
    await app.close();
  });

  it('forFeature() whose adapter misses a dependency: Nest names the forFeature() call, not an internal module', async () => {
    @Module({
      imports: [PersistenceModule.forFeature([CounterAdapter])],
      providers: [CounterService],
    })
    class SameModule {}
    const compiled = Test.createTestingModule({
      imports: [PersistenceModule.forRoot({ path: dir, autoSave: false }), SameModule],
    }).compile();
    await expect(compiled).rejects.toThrow(
      /CounterService at index \[0\] is available in the PersistenceModule\.forFeature\(\[CounterAdapter\]\) module/,
    );
  });

  it('forFeature() rejects something that is not a list of classes', () => {
    expect(() => PersistenceModule.forFeature({} as never)).toThrow(
      expect.objectContaining({ code: PersistenceErrorCode.InvalidOptions }),
    );
  });
});
