/*
 * A fresh application using the packed tarball as a user installs it (.ci/package-check): strict
 * TypeScript with skipLibCheck off, no optional peers (ioredis, pg, msgpackr, @nestjs/terminus). It
 * boots, saves state, boots again on the same folder and checks that the state came back.
 */
import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EventEmitterModule, OnEvent } from '@nestjs/event-emitter';
import { ScheduleModule } from '@nestjs/schedule';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  MemoryManager,
  PersistenceEvents,
  PersistenceModule,
  PersistenceStore,
  SaveMetadata,
  SessionManager,
} from 'nestjs-persistence';
import { InMemoryStorage, PersistenceTestingModule } from 'nestjs-persistence/testing';

@Injectable()
class SavedCounter {
  saves = 0;

  @OnEvent(PersistenceEvents.Saved)
  onSaved(meta: SaveMetadata): void {
    if (meta.items > 0) this.saves++;
  }
}

async function boot(path: string) {
  @Module({
    imports: [
      EventEmitterModule.forRoot(),
      ScheduleModule.forRoot(),
      PersistenceModule.forRoot({ path, autoSave: false }),
    ],
    providers: [SavedCounter],
  })
  class AppModule {}
  const app = await NestFactory.createApplicationContext(AppModule, { logger: ['error', 'warn'] });
  await app.init();
  return app;
}

async function main(): Promise<void> {
  const path = await mkdtemp(join(tmpdir(), 'nestjs-persistence-package-'));
  try {
    const first = await boot(path);
    const session = first.get(SessionManager).create({ metadata: { user: 'ada' } });
    const conversation = first.get(MemoryManager).create({ sessionId: session.id });
    first.get(MemoryManager).addMessage(conversation.id, { role: 'user', content: 'Hello' });
    await first.get(PersistenceStore).saveAll();
    const saves = first.get(SavedCounter).saves;
    await first.close();

    const second = await boot(path);
    const back = second.get(MemoryManager).get(conversation.id);
    const user = second.get(SessionManager).get(session.id)?.metadata.user;
    await second.close();
    if (saves < 1) throw new Error('no persistence.saved event reached @OnEvent');
    if (back?.messages[0]?.content !== 'Hello' || user !== 'ada') {
      throw new Error(`state did not come back: ${JSON.stringify({ back, user })}`);
    }
    const storage = new InMemoryStorage();
    @Module({ imports: [PersistenceTestingModule.forRoot({ storage })] })
    class TestingModule {}
    const inMemory = await NestFactory.createApplicationContext(TestingModule, { logger: false });
    await inMemory.init();
    inMemory.get(SessionManager).create({ id: 'in-memory' });
    await inMemory.get(PersistenceStore).saveAll();
    await inMemory.close();
    if (storage.ids('sessions').join() !== 'in-memory') throw new Error('testing entry: not saved');
    console.log('package check: booted, saved, restarted, state came back (files and in-memory)');
  } finally {
    await rm(path, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
