import { INestApplication, Injectable } from '@nestjs/common';
import { OnEvent } from '@nestjs/event-emitter';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  PersistenceErrorCode,
  PersistenceEvent,
  PersistenceEvents,
  PersistenceStore,
  SaveMetadata,
  SessionManager,
} from 'nestjs-persistence';
import { filter, firstValueFrom, map, toArray } from 'rxjs';
import { createApp } from './fixtures/app.factory';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/** Subscribes in its constructor, before the store loads at init. */
@Injectable()
class EarlySubscriber {
  readonly seen: PersistenceEvent[] = [];
  constructor(store: PersistenceStore) {
    store.events$.subscribe((event) => this.seen.push(event));
  }
}

@Injectable()
class SavedListener {
  readonly saved: SaveMetadata[] = [];
  @OnEvent(PersistenceEvents.Saved)
  onSaved(meta: SaveMetadata): void {
    this.saved.push(meta);
  }
}

describe('PersistenceStore.events$', () => {
  let dir: string;
  let app: INestApplication | undefined;

  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    await app?.close();
    app = undefined;
    await removeDir(dir);
  });

  it('emits a save with the payload the callback and @OnEvent receive', async () => {
    app = await createApp({ path: dir }, { providers: [SavedListener] });
    const store = app.get(PersistenceStore);
    const events: PersistenceEvent[] = [];
    const fromCallback: SaveMetadata[] = [];
    store.events$.subscribe((event) => events.push(event));
    store.onSave((meta) => fromCallback.push(meta));
    app.get(SessionManager).create({ id: 's-1' });

    const meta = await store.saveAll();

    expect(events).toEqual([{ type: 'saved', payload: meta }]);
    expect(events[0].payload).toBe(fromCallback[0]);
    expect(events[0].payload).toBe(app.get(SavedListener).saved[0]);
    expect(meta).toMatchObject({ items: 1, changed: 1 });
  });

  it('delivers the boot load to a subscriber made before init, and later loads as they happen', async () => {
    const first = await createApp({ path: dir });
    first.get(SessionManager).create({ id: 'kept' });
    await first.close(); // saves on shutdown

    app = await createApp({ path: dir }, { providers: [EarlySubscriber] });
    const seen = app.get(EarlySubscriber).seen;
    await new Promise((resolve) => setImmediate(resolve)); // boot events go out after bootstrap
    expect(seen).toEqual([
      { type: 'loaded', payload: expect.objectContaining({ items: 1, path: dir }) },
    ]);

    await app.get(PersistenceStore).loadAll();
    expect(seen.map((e) => e.type)).toEqual(['loaded', 'loaded']);
  });

  it("emits a failed checkpoint as an error of operation 'checkpoint', and remembers it", async () => {
    app = await createApp({ path: dir });
    const store = app.get(PersistenceStore);
    const errors = firstValueFrom(
      store.events$.pipe(
        filter((event) => event.type === 'error'),
        map((event) => event.payload),
      ),
    );
    app.get(SessionManager).create({ id: 's-1' });
    await store.saveAll(); // committed in the journal
    // A file where the checkpoint must write a folder: a real ENOTDIR/EEXIST from the kernel.
    await rm(join(dir, 'sessions'), { recursive: true, force: true });
    await writeFile(join(dir, 'sessions'), 'not a folder');

    await expect(store.checkpoint()).rejects.toMatchObject({
      code: PersistenceErrorCode.IoFailed,
      operation: 'checkpoint',
    });
    const event = await errors;
    expect(event.operation).toBe('checkpoint');
    expect(event.error.code).toBe(PersistenceErrorCode.IoFailed);
    expect(store.getLastError()).toMatchObject({
      code: PersistenceErrorCode.IoFailed,
      operation: 'checkpoint',
      message: event.error.message,
      timestamp: expect.any(Date),
    });
    await rm(join(dir, 'sessions'));
  });

  it('completes when the application closes, after the shutdown save', async () => {
    app = await createApp({ path: dir });
    const store = app.get(PersistenceStore);
    const all = firstValueFrom(store.events$.pipe(toArray()));
    app.get(SessionManager).create({ id: 's-1' });

    await app.close();
    app = undefined;

    const events = await all; // resolves only on complete
    expect(events.map((e) => e.type)).toEqual(['saved']);
    expect(events[0].payload).toMatchObject({ items: 1 });
    // A late subscriber is told at once that nothing more will come.
    const late = await firstValueFrom(store.events$.pipe(toArray()));
    expect(late).toEqual([]);
  });

  it('an unsubscribed observer receives nothing more', async () => {
    app = await createApp({ path: dir });
    const store = app.get(PersistenceStore);
    const events: PersistenceEvent[] = [];
    const subscription = store.events$.subscribe((event) => events.push(event));
    await store.saveAll();
    subscription.unsubscribe();
    await store.saveAll();
    expect(events).toHaveLength(1);
  });
});
