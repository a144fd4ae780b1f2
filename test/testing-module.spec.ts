import { Injectable, Module } from '@nestjs/common';
import { SchedulerRegistry, ScheduleModule } from '@nestjs/schedule';
import { Test } from '@nestjs/testing';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import {
  MemoryManager,
  PersistenceErrorCode,
  PersistenceModule,
  PersistenceStore,
  SessionManager,
} from 'nestjs-persistence';
import { InMemoryStorage, PersistenceTestingModule } from 'nestjs-persistence/testing';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * The recipes of docs/testing.md, as an application's own tests would use them: a service under
 * test with PersistenceTestingModule, a restart on the same InMemoryStorage, and the application's
 * real module with its PersistenceModule swapped by overrideModule().
 */

@Injectable()
class ChatService {
  constructor(
    private readonly sessions: SessionManager,
    private readonly memory: MemoryManager,
  ) {}

  start(user: string): string {
    const session = this.sessions.create({ metadata: { user } });
    const conversation = this.memory.create({ sessionId: session.id });
    this.memory.addMessage(conversation.id, { role: 'user', content: 'Hello' });
    return conversation.id;
  }
}

async function compile(storage?: InMemoryStorage) {
  const moduleRef = await Test.createTestingModule({
    imports: [ScheduleModule.forRoot(), PersistenceTestingModule.forRoot({ storage })],
    providers: [ChatService],
  }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  await app.init();
  return app;
}

/** How many of each kind of resource keeps the process alive now (timers, sockets, handles). */
function resources(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const kind of process.getActiveResourcesInfo())
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
  return counts;
}

describe('PersistenceTestingModule', () => {
  it('runs the store on memory: saves, a restart on the same InMemoryStorage, no auto-save timer', async () => {
    const storage = new InMemoryStorage();
    const app = await compile(storage);
    const id = app.get(ChatService).start('ada');
    expect(app.get(SchedulerRegistry).getIntervals()).toEqual([]);
    const saved = await app.get(PersistenceStore).saveAll();
    expect(saved.items).toBeGreaterThanOrEqual(2);
    expect(storage.ids('conversations')).toEqual([id]);
    await app.close();

    const again = await compile(storage);
    expect(
      again
        .get(MemoryManager)
        .get(id)
        ?.messages.map((m) => m.content),
    ).toEqual(['Hello']);
    await again.close();

    const fresh = await compile();
    expect(fresh.get(MemoryManager).list()).toEqual([]);
    await fresh.close();
  });

  it('leaves no timer or handle open after app.close()', async () => {
    const before = resources();
    const app = await compile();
    app.get(ChatService).start('ada');
    await app.get(PersistenceStore).saveAll();
    await app.close();
    await new Promise((resolve) => setImmediate(resolve));
    const grown = [...resources()].filter(([kind, n]) => n > (before.get(kind) ?? 0));
    expect(grown).toEqual([]);
  });

  it('replaces the application module’s PersistenceModule with overrideModule()', async () => {
    const dir = await makeTempDir();
    try {
      const persistence = PersistenceModule.forRoot({ path: join(dir, 'state') });
      @Module({ imports: [persistence], providers: [ChatService] })
      class AppModule {}
      const moduleRef = await Test.createTestingModule({ imports: [AppModule] })
        .overrideModule(persistence)
        .useModule(PersistenceTestingModule.forRoot())
        .compile();
      const app = moduleRef.createNestApplication({ logger: false });
      await app.init();
      app.get(ChatService).start('ada');
      await app.get(PersistenceStore).saveAll();
      await app.close();
      await expect(access(join(dir, 'state'))).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      await removeDir(dir);
    }
  });

  it('refuses a storage that is not an InMemoryStorage, saying what to pass', () => {
    expect(() => PersistenceTestingModule.forRoot({ storage: {} as InMemoryStorage })).toThrow(
      expect.objectContaining({
        code: PersistenceErrorCode.InvalidOptions,
        message: expect.stringContaining('Pass a new InMemoryStorage()') as unknown,
      }),
    );
  });
});
