import { INestApplication, Injectable, Module } from '@nestjs/common';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as api from 'nestjs-persistence';
import * as postgresEntry from 'nestjs-persistence/postgres';
import * as redisEntry from 'nestjs-persistence/redis';
import * as testingEntry from 'nestjs-persistence/testing';
import {
  FocusManager,
  MemoryManager,
  PersistenceErrorCode,
  PersistenceModule,
  PersistenceModuleOptions,
  PersistenceOptionsFactory,
  PersistenceStore,
} from 'nestjs-persistence';
import { Test } from '@nestjs/testing';
import * as ts from 'typescript';
import { createApp } from './fixtures/app.factory';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

const ROOT = join(__dirname, '..');

/** Calls `fn` and returns the PersistenceError code and message it threw. */
function thrown(fn: () => unknown): { code: unknown; message: string } {
  try {
    fn();
  } catch (error) {
    return { code: (error as api.PersistenceError).code, message: (error as Error).message };
  }
  throw new Error('expected a throw');
}

/** A record without the times, which differ between two calls. */
function withoutTimes(value: object): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(value).filter(([key]) => !['createdAt', 'updatedAt'].includes(key)),
  );
}

describe('public API', () => {
  it('exports the runtime values a user needs, and no internals', () => {
    expect(Object.keys(api).sort()).toEqual(
      [
        'AutoSerializer',
        'CompactJsonSerializer',
        'FocusManager',
        'InjectPersistenceAdapters',
        'JsonGzipSerializer',
        'JsonSerializer',
        'LocalBackupTarget',
        'MESSAGE_ROLES',
        'MemoryManager',
        'MsgpackSerializer',
        'NodeFileSystem',
        'PERSISTENCE_ADAPTERS',
        'PERSISTENCE_AUTO_SAVE_DEBOUNCE',
        'PERSISTENCE_AUTO_SAVE_INTERVAL',
        'PERSISTENCE_BACKUP_CRON',
        'PERSISTENCE_MODULE_OPTIONS',
        'PersistedState',
        'PersistenceAdapter',
        'PersistenceError',
        'PersistenceErrorCode',
        'PersistenceEvents',
        'PersistenceFileSystem',
        'PersistenceModule',
        'PersistenceStore',
        'QUARANTINE_DIR',
        'SessionManager',
        'StorageDriver',
        'TrackedStateAdapter',
        'detectFormat',
        'isPersistenceError',
      ].sort(),
    );
  });

  it('keeps the Redis and PostgreSQL drivers and the testing kit in their own entry points', async () => {
    expect(Object.keys(redisEntry)).toEqual(['RedisStorageDriver']);
    expect(Object.keys(postgresEntry)).toEqual(['PostgresStorageDriver']);
    expect(Object.keys(testingEntry).sort()).toEqual([
      'InMemoryStorage',
      'InMemoryStorageDriver',
      'PersistenceTestingModule',
      'storageDriverChecks',
    ]);
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as {
      exports: Record<string, { types: string; default: string }>;
      peerDependenciesMeta: Record<string, { optional?: boolean }>;
    };
    expect(pkg.exports['./redis']).toEqual({
      types: './dist/storage/redis/index.d.ts',
      default: './dist/storage/redis/index.js',
    });
    expect(pkg.peerDependenciesMeta.ioredis.optional).toBe(true);
    expect(pkg.exports['./postgres']).toEqual({
      types: './dist/storage/postgres/index.d.ts',
      default: './dist/storage/postgres/index.js',
    });
    expect(pkg.peerDependenciesMeta.pg.optional).toBe(true);
  });

  it('strips @internal members (the managers’ entries()/replaceAll()) from the published .d.ts', async () => {
    const build = JSON.parse(await readFile(join(ROOT, 'tsconfig.build.json'), 'utf8')) as {
      compilerOptions: { stripInternal?: boolean };
    };
    expect(build.compilerOptions.stripInternal).toBe(true);
    for (const file of [
      'lib/adapters/session/session.manager.ts',
      'lib/adapters/memory/memory.manager.ts',
      'lib/adapters/focus/focus.manager.ts',
    ]) {
      const source = await readFile(join(ROOT, file), 'utf8');
      expect(source).toMatch(/@internal[^\n]*\n\s*entries\(/); // the precondition: they are marked
      const { outputText, diagnostics } = ts.transpileDeclaration(source, {
        fileName: file,
        compilerOptions: { stripInternal: build.compilerOptions.stripInternal },
      });
      expect(diagnostics).toEqual([]);
      expect(outputText).toMatch(/\blist\(\)/);
      expect(outputText).not.toMatch(/\bentries\(|\breplaceAll\(/);
    }
  });

  it('forRootAsync() takes a class implementing PersistenceOptionsFactory', async () => {
    const dir = await makeTempDir();
    @Injectable()
    class StateOptions implements PersistenceOptionsFactory {
      createPersistenceOptions(): PersistenceModuleOptions {
        return { path: dir, autoSave: false };
      }
    }
    @Module({ imports: [PersistenceModule.forRootAsync({ useClass: StateOptions })] })
    class AppModule {}
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    try {
      await app.init();
      expect(app.get(PersistenceStore).path).toBe(dir);
    } finally {
      await app.close();
      await removeDir(dir);
    }
  });
});

describe('manager method names: the deprecated names behave as the new ones', () => {
  let dir: string;
  const apps: INestApplication[] = [];
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await removeDir(dir);
  });
  const open = async (): Promise<INestApplication> => {
    const app = await createApp({ path: dir });
    apps.push(app);
    return app;
  };

  it('MemoryManager: create/get/delete/list = createConversation/getConversation/deleteConversation/listConversations', async () => {
    const app = await open();
    const memory = app.get(MemoryManager);
    const a = memory.create({ id: 'a', title: 'T', sessionId: 's', metadata: { k: 1 } });
    const b = memory.createConversation({
      id: 'b',
      title: 'T',
      sessionId: 's',
      metadata: { k: 1 },
    });
    expect({ ...withoutTimes(b), id: 'a' }).toEqual(withoutTimes(a));
    expect(Object.isFrozen(a) && Object.isFrozen(b)).toBe(true);
    expect(memory.get('b')).toBe(memory.getConversation('b'));
    expect(memory.get('a')).toBe(a);
    expect(memory.list()).toEqual(memory.listConversations());
    expect(memory.list()).toEqual([a, b]);

    const taken = [
      thrown(() => memory.create({ id: 'a' })),
      thrown(() => memory.createConversation({ id: 'a' })),
    ];
    expect(taken.map((e) => e.code)).toEqual([
      PersistenceErrorCode.InvalidId,
      PersistenceErrorCode.InvalidId,
    ]);
    expect(taken[0].message).toBe(taken[1].message);
    const bad = [
      thrown(() => memory.create({ title: 1 as never })),
      thrown(() => memory.createConversation({ title: 1 as never })),
    ];
    expect(bad.map((e) => e.code)).toEqual([
      PersistenceErrorCode.InvalidInput,
      PersistenceErrorCode.InvalidInput,
    ]);
    expect(bad[0].message).toMatch(/^MemoryManager\.create\(\): title/);
    expect(bad[1].message).toBe(bad[0].message.replace('create()', 'createConversation()'));

    memory.addMessage('b', { role: 'user', content: 'hi' });
    const reopened = await (async () => {
      await app.close();
      apps.splice(0);
      return open();
    })();
    const loaded = reopened.get(MemoryManager);
    expect(loaded.list().map((c) => [c.id, c.messages.length])).toEqual([
      ['a', 0],
      ['b', 1],
    ]);
    expect(loaded.delete('a')).toBe(true);
    expect(loaded.deleteConversation('b')).toBe(true);
    expect([loaded.delete('b'), loaded.deleteConversation('a')]).toEqual([false, false]);
    expect(loaded.listConversations()).toEqual([]);
  });

  it('FocusManager: create/get/delete/list = createChain/getChain/deleteChain/listChains', async () => {
    const app = await open();
    const focus = app.get(FocusManager);
    const a = focus.create({ id: 'a', name: 'N', metadata: { k: [1] } });
    const b = focus.createChain({ id: 'b', name: 'N', metadata: { k: [1] } });
    expect({ ...withoutTimes(b), id: 'a' }).toEqual(withoutTimes(a));
    expect(focus.get('b')).toBe(focus.getChain('b'));
    expect(focus.list()).toEqual(focus.listChains());
    expect(focus.list()).toEqual([a, b]);

    const taken = [
      thrown(() => focus.create({ id: 'b' })),
      thrown(() => focus.createChain({ id: 'b' })),
    ];
    expect(taken.map((e) => e.code)).toEqual([
      PersistenceErrorCode.InvalidId,
      PersistenceErrorCode.InvalidId,
    ]);
    expect(taken[0].message).toBe(taken[1].message);
    const bad = [
      thrown(() => focus.create({ name: null as never })),
      thrown(() => focus.createChain({ name: null as never })),
    ];
    expect(bad.map((e) => e.code)).toEqual([
      PersistenceErrorCode.InvalidInput,
      PersistenceErrorCode.InvalidInput,
    ]);
    expect(bad[0].message).toMatch(/^FocusManager\.create\(\): name/);
    expect(bad[1].message).toBe(bad[0].message.replace('create()', 'createChain()'));

    focus.pushFocus('a', { type: 'file', target: 'x.ts' });
    expect(focus.delete('b')).toBe(true);
    expect(focus.deleteChain('b')).toBe(false);
    expect(focus.deleteChain('a')).toBe(true);
    expect(focus.delete('a')).toBe(false);
    expect([focus.list(), focus.listChains(), focus.get('a'), focus.getChain('a')]).toEqual([
      [],
      [],
      undefined,
      undefined,
    ]);
  });
});
