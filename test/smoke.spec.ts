import { INestApplication } from '@nestjs/common';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { FocusManager, MemoryManager, PersistenceStore, SessionManager } from 'nestjs-persistence';
import { createApp } from './fixtures/app.factory';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

describe('smoke', () => {
  let dir: string;
  let app: INestApplication | undefined;
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    await app?.close();
    await removeDir(dir);
  });

  it('saves and loads across two apps', async () => {
    app = await createApp({ path: dir });
    app.get(SessionManager).create({ id: 's1', metadata: { user: 'ann' } });
    const memory = app.get(MemoryManager);
    memory.create({ id: 'c1' });
    memory.addMessage('c1', { role: 'user', content: 'hi' });
    app.get(FocusManager).create({ id: 'f1' });
    const meta = await app.get(PersistenceStore).saveAll();
    expect(meta.items).toBe(3);
    await app.close();
    expect((await readdir(join(dir, 'sessions'))).sort()).toEqual(['s1.json']);
    app = await createApp({ path: dir });
    const conv = app.get(MemoryManager).get('c1');
    expect(conv?.messages[0].content).toBe('hi');
    expect(conv?.messages[0].timestamp).toBeInstanceOf(Date);
  });
});
