import { INestApplication } from '@nestjs/common';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  FocusManager,
  MemoryManager,
  PersistenceErrorCode,
  SessionManager,
} from 'nestjs-persistence';
import { createApp } from './fixtures/app.factory';
import { saveToFiles } from './fixtures/state';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('built-in managers', () => {
  let dir: string;
  const apps: INestApplication[] = [];
  const open = async (): Promise<INestApplication> => {
    const app = await createApp({ path: dir });
    apps.push(app);
    return app;
  };
  const reopen = async (app: INestApplication): Promise<INestApplication> => {
    await app.close(); // saves on shutdown
    apps.splice(apps.indexOf(app), 1);
    return open();
  };
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await removeDir(dir);
  });

  describe('SessionManager', () => {
    it('creates, gets, updates, lists and deletes sessions', async () => {
      const app = await open();
      const sessions = app.get(SessionManager);
      const created = sessions.create({ metadata: { user: 'ann' } });
      expect(created.id).toMatch(UUID);
      expect(created).toMatchObject({ status: 'active', metadata: { user: 'ann' } });
      expect(created.createdAt).toBeInstanceOf(Date);
      expect(sessions.get(created.id)).toBe(created);
      const updated = sessions.update(created.id, { status: 'paused' });
      expect(updated).toMatchObject({
        id: created.id,
        status: 'paused',
        metadata: { user: 'ann' },
      });
      expect(updated.updatedAt.getTime()).toBeGreaterThanOrEqual(created.updatedAt.getTime());
      expect(sessions.list()).toEqual([updated]);
      expect(sessions.delete(created.id)).toBe(true);
      expect(sessions.delete(created.id)).toBe(false);
      expect(sessions.get(created.id)).toBeUndefined();
    });

    it('hands out read-only sessions, and copies the metadata it is given', async () => {
      const app = await open();
      const metadata = { nested: { n: 1 } };
      const session = app.get(SessionManager).create({ id: 's', metadata });
      metadata.nested.n = 2;
      expect(session.metadata).toEqual({ nested: { n: 1 } });
      expect(() => {
        (session as { status: string }).status = 'hacked';
      }).toThrow(TypeError);
      expect(() => {
        (session.metadata.nested as { n: number }).n = 3;
      }).toThrow(TypeError);
    });

    it('refuses a duplicate id, an empty id and updates of unknown sessions', async () => {
      const sessions = (await open()).get(SessionManager);
      sessions.create({ id: 'dup' });
      expect(() => sessions.create({ id: 'dup' })).toThrow(/already exists/);
      expect(() => sessions.create({ id: '' })).toThrow(
        expect.objectContaining({ code: PersistenceErrorCode.InvalidId }),
      );
      expect(() => sessions.update('ghost', { status: 'x' })).toThrow(
        expect.objectContaining({
          code: PersistenceErrorCode.NotFound,
          message: 'Session "ghost" does not exist. Create it first, or check the id.',
        }),
      );
    });

    it('round-trips every field, with dates as Dates', async () => {
      const app = await open();
      const before = app
        .get(SessionManager)
        .create({ id: 'rt', status: 'custom-status', metadata: { a: [1, { b: null }] } });
      const after = (await reopen(app)).get(SessionManager).get('rt');
      expect(after).toEqual(before);
      expect(after?.createdAt).toBeInstanceOf(Date);
    });
  });

  describe('MemoryManager', () => {
    it('keeps messages in order with ids, roles, timestamps and metadata', async () => {
      const app = await open();
      const memory = app.get(MemoryManager);
      const conversation = memory.create({ title: 'Chat', sessionId: 's1' });
      expect(conversation.id).toMatch(UUID);
      const roles = ['system', 'user', 'assistant', 'tool'] as const;
      const messages = roles.map((role, i) =>
        memory.addMessage(conversation.id, { role, content: `m${i}`, metadata: { i } }),
      );
      expect(messages[0].id).toMatch(UUID);
      const stored = memory.get(conversation.id);
      expect(stored?.messages).toEqual(messages);
      expect(stored?.title).toBe('Chat');
      expect(memory.list()).toHaveLength(1);
      expect(memory.delete(conversation.id)).toBe(true);
      expect(memory.get(conversation.id)).toBeUndefined();
    });

    it('refuses messages to unknown conversations and unknown roles', async () => {
      const memory = (await open()).get(MemoryManager);
      expect(() => memory.addMessage('ghost', { role: 'user', content: 'x' })).toThrow(
        expect.objectContaining({ code: PersistenceErrorCode.NotFound }),
      );
      memory.create({ id: 'c' });
      expect(() => memory.addMessage('c', { role: 'robot' as never, content: 'x' })).toThrow(
        expect.objectContaining({
          code: PersistenceErrorCode.InvalidInput,
          message:
            'MemoryManager.addMessage(): role is "robot", not one of user, assistant, system, tool. ' +
            'Pass one of user, assistant, system, tool.',
        }),
      );
      expect(memory.get('c')?.messages).toEqual([]);
    });

    it('round-trips a conversation of 200 messages exactly', async () => {
      const app = await open();
      const memory = app.get(MemoryManager);
      memory.create({ id: 'long' });
      for (let i = 0; i < 200; i++) {
        memory.addMessage('long', {
          role: i % 2 ? 'assistant' : 'user',
          content: `message ${i} "quoted" \n ünïcödé`,
        });
      }
      const before = memory.get('long');
      const after = (await reopen(app)).get(MemoryManager).get('long');
      expect(after).toEqual(before);
      expect(after?.messages[199].timestamp).toBeInstanceOf(Date);
    });
  });

  describe('FocusManager', () => {
    it('pushes and pops focus entries as a stack', async () => {
      const focus = (await open()).get(FocusManager);
      const chain = focus.create({ name: 'debugging' });
      expect(chain.id).toMatch(UUID);
      const a = focus.pushFocus(chain.id, { type: 'file', target: 'a.ts' });
      const b = focus.pushFocus(chain.id, { type: 'line', target: '42', context: { col: 7 } });
      expect(focus.currentFocus(chain.id)).toEqual(b);
      expect(focus.popFocus(chain.id)).toEqual(b);
      expect(focus.get(chain.id)?.items).toEqual([a]);
      expect(focus.popFocus(chain.id)).toEqual(a);
      expect(focus.popFocus(chain.id)).toBeUndefined();
      expect(focus.list()).toHaveLength(1);
      expect(focus.delete(chain.id)).toBe(true);
      expect(() => focus.pushFocus(chain.id, { type: 'x', target: 'y' })).toThrow(
        expect.objectContaining({ code: PersistenceErrorCode.NotFound }),
      );
    });

    it('round-trips chains with their items', async () => {
      const app = await open();
      const focus = app.get(FocusManager);
      focus.create({ id: 'c', metadata: { owner: 'me' } });
      focus.pushFocus('c', { type: 'file', target: 'x.ts', context: { line: 1 } });
      focus.pushFocus('c', { type: 'symbol', target: 'main' });
      const before = focus.get('c');
      const after = (await reopen(app)).get(FocusManager).get('c');
      expect(after).toEqual(before);
      expect(after?.items[0].createdAt).toBeInstanceOf(Date);
    });
  });

  it('ids that are not safe file names round-trip and stay inside the store folder', async () => {
    const app = await open();
    const ids = ['../../escape', 'a/b', 'CON', '.', 'émoji 🎉', 'x'.repeat(5000), 'Case', 'case'];
    for (const id of ids) app.get(SessionManager).create({ id });
    await saveToFiles(app);
    expect((await readdir(dir)).filter((n) => !n.startsWith('.')).sort()).toEqual([
      'conversations',
      'focus',
      'sessions',
    ]);
    await expect(readdir(join(dir, '..', '..', 'escape'))).rejects.toThrow(/ENOENT/);
    expect(await readdir(join(dir, 'sessions'))).toHaveLength(ids.length);
    const next = await reopen(app);
    expect(
      next
        .get(SessionManager)
        .list()
        .map((s) => s.id)
        .sort(),
    ).toEqual([...ids].sort());
  });
});
