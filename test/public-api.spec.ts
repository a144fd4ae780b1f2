import { Injectable, Module } from '@nestjs/common';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as api from 'nestjs-persistence';
import * as postgresEntry from 'nestjs-persistence/postgres';
import * as redisEntry from 'nestjs-persistence/redis';
import * as testingEntry from 'nestjs-persistence/testing';
import {
  PersistenceModule,
  PersistenceModuleOptions,
  PersistenceOptionsFactory,
  PersistenceStore,
} from 'nestjs-persistence';
import { Test } from '@nestjs/testing';
import * as ts from 'typescript';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

const ROOT = join(__dirname, '..');

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

  it('gives each manager operation one name: no aliases in the published .d.ts', async () => {
    const published: Record<string, string[]> = {};
    for (const [name, file] of [
      ['SessionManager', 'lib/adapters/session/session.manager.ts'],
      ['MemoryManager', 'lib/adapters/memory/memory.manager.ts'],
      ['FocusManager', 'lib/adapters/focus/focus.manager.ts'],
    ]) {
      const source = await readFile(join(ROOT, file), 'utf8');
      const { outputText } = ts.transpileDeclaration(source, {
        fileName: file,
        compilerOptions: { stripInternal: true },
      });
      published[name] = [...outputText.matchAll(/^ {4}(\w+)\(/gm)].map((m) => m[1]).sort();
    }
    expect(published).toEqual({
      SessionManager: ['create', 'delete', 'get', 'list', 'update'],
      MemoryManager: ['addMessage', 'create', 'delete', 'get', 'list'],
      FocusManager: ['create', 'currentFocus', 'delete', 'get', 'list', 'popFocus', 'pushFocus'],
    });
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
