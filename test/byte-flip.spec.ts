import { INestApplication, Injectable } from '@nestjs/common';
import { OnEvent } from '@nestjs/event-emitter';
import { cp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import {
  PersistenceErrorEvent,
  PersistenceEvents,
  PersistenceModuleOptions,
  PersistenceStore,
  SessionManager,
} from 'nestjs-persistence';
import { NodeFileSystem } from '../lib/storage/node-file-system';
import { createApp, RecordingLogger } from './fixtures/app.factory';
import { buildCli, runCli } from './fixtures/cli';
import { GatedFileSystem } from './fixtures/gated-fs';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * One byte flipped anywhere in a store (item files, the active journal, a sealed segment, a backup):
 * `verify` (the CLI, a real child process), the application's start, and restore(id) of the backup
 * must all see it, and say it in the same words: the same error code, the same file, the same
 * problem text. The store is encrypted, so that every byte of an item file is checked (AES-GCM);
 * the journal's records carry checksums, and a backup's manifest the files' checksums.
 */

const KEY = 'b2'.repeat(32);

interface VerifyJson {
  path: string;
  problems: Array<{ file: string; problem: string; code?: string }>;
}

@Injectable()
class ErrorLog {
  readonly errors: PersistenceErrorEvent[] = [];

  @OnEvent(PersistenceEvents.Error)
  onError(event: PersistenceErrorEvent): void {
    this.errors.push(event);
  }
}

/** `count` positions spread evenly over `length` bytes, the first and the last byte included. */
const positions = (length: number, count: number): number[] => {
  const at = new Set([0, length - 1]);
  for (let i = 1; at.size < count && i < count; i++) at.add(Math.floor((i * length) / count));
  return [...at].sort((a, b) => a - b);
};

describe('a flipped byte is reported alike by verify, the start and restore', () => {
  let root: string;
  let main: string;
  let template: string;
  let backups: string;
  let backupId: string;
  const apps: INestApplication[] = [];
  let count = 0;

  const options = (
    path: string,
    extra: PersistenceModuleOptions = {},
  ): PersistenceModuleOptions => ({
    path,
    encryption: { key: KEY },
    autoSave: false,
    saveOnShutdown: false,
    ...extra,
  });

  /*
   * The template: four items in item files (a..d, checkpointed, backed up), then, while a
   * checkpoint is held, a sealed segment `.journal.1` of two saves and an active `.journal` of two
   * more, all of other items, copied as a crash would leave the folder.
   */
  beforeAll(async () => {
    root = await makeTempDir('persistence-flip-');
    main = await buildCli(join(root, 'cli'));
    const source = join(root, 'source');
    template = join(root, 'template');
    backups = join(root, 'backups');
    const first = await createApp(options(source, { backups: { directory: backups } }));
    const sessions = first.get(SessionManager);
    for (const id of ['a', 'b', 'c', 'd']) sessions.create({ id, metadata: { note: id } });
    const store = first.get(PersistenceStore);
    await store.saveAll();
    await store.checkpoint();
    await store.backup();
    backupId = (await store.listBackups())[0].id;
    await first.close();

    const gated = new GatedFileSystem(new NodeFileSystem(), (path) => {
      const inside = relative(source, path);
      return inside.includes(sep) && !inside.startsWith('.');
    });
    const second = await createApp(options(source, { checkpointBytes: 4096 }), {
      fileSystem: gated.fs,
    });
    const more = second.get(SessionManager);
    const saveAll = (): Promise<unknown> => second.get(PersistenceStore).saveAll();
    more.create({ id: 'j1' });
    await saveAll();
    for (let i = 0; i < 12; i++)
      more.create({ id: `big${i}`, metadata: { text: 'x'.repeat(300) } });
    await saveAll(); // past checkpointBytes: sealed, its checkpoint held
    more.create({ id: 'j2' });
    await saveAll();
    more.create({ id: 'j3' });
    await saveAll();
    await cp(source, template, { recursive: true, filter: (path) => !path.endsWith('.lock') });
    gated.release();
    await second.close();
    expect((await readdir(template)).filter((n) => n.startsWith('.journal')).sort()).toEqual([
      '.journal',
      '.journal.1',
    ]);
  }, 60_000);

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
  });
  afterAll(() => removeDir(root));

  const verify = async (path: string): Promise<VerifyJson & { code: number | null }> => {
    const result = await runCli(main, ['verify', path, '--json', '--key', KEY]);
    return { code: result.code, ...(JSON.parse(result.stdout) as VerifyJson) };
  };

  const copyOf = async (from: string): Promise<string> => {
    const dir = join(root, `case-${++count}`);
    await cp(from, dir, { recursive: true });
    return dir;
  };

  const flip = async (file: string, at: number): Promise<void> => {
    const bytes = await readFile(file);
    bytes[at] ^= 0x5a;
    await writeFile(file, bytes);
  };

  /** The start of the application on `dir`: its error events, its log and its unloaded items. */
  const start = async (dir: string) => {
    const logger = new RecordingLogger();
    const app = await createApp(options(dir, { onUnreadable: 'start' }), {
      providers: [ErrorLog],
      logger,
    });
    apps.push(app);
    return {
      errors: app.get(ErrorLog).errors,
      logger,
      unloaded: app.get(PersistenceStore).listUnloaded(),
    };
  };

  it('the undamaged template: verify finds nothing, the start reports nothing', async () => {
    expect(await verify(template)).toMatchObject({ code: 0, problems: [] });
    expect(await verify(join(backups, backupId))).toMatchObject({ code: 0, problems: [] });
    const dir = await copyOf(template);
    const { errors, logger } = await start(dir);
    expect(errors).toEqual([]);
    expect(logger.lines.filter((l) => l.startsWith('error '))).toEqual([]);
  });

  it('item files, the active journal and the sealed segment: every flip is reported, in the same words', async () => {
    const targets: string[] = [
      ...(await readdir(join(template, 'sessions'))).map((n) => join('sessions', n)),
      '.journal',
      '.journal.1',
    ];
    const cases: Array<{ file: string; at: number; dir: string }> = [];
    for (const file of targets) {
      const { size } = await stat(join(template, file));
      for (const at of positions(size, file.startsWith('.journal') ? 5 : 3)) {
        const dir = await copyOf(template);
        await flip(join(dir, file), at);
        cases.push({ file, at, dir });
      }
    }
    // verify first (it changes nothing), two at a time; then the start on the same bytes.
    const reports: Array<VerifyJson & { code: number | null }> = [];
    for (let i = 0; i < cases.length; i += 2) {
      reports.push(...(await Promise.all(cases.slice(i, i + 2).map((c) => verify(c.dir)))));
    }
    const seen = new Set<string>();
    for (const [i, { file, at, dir }] of cases.entries()) {
      const what = `${file} byte ${at}`;
      const report = reports[i];
      expect({ what, code: report.code }).toEqual({ what, code: 1 });
      expect({ what, files: report.problems.map((p) => p.file) }).toEqual({ what, files: [file] });
      const [problem] = report.problems;
      seen.add(problem.code ?? 'torn tail');
      const started = await start(dir);
      const path = join(dir, file);
      if (problem.code === undefined) {
        // A torn tail of the active journal: a warning, in the same words, and no error.
        expect({ what, errors: started.errors }).toEqual({ what, errors: [] });
        expect(started.logger.lines).toContainEqual(
          `warn Recovery: the journal ${path}: ${problem.problem}. They were cut off.`,
        );
        continue;
      }
      expect({ what, codes: started.errors.map((e) => e.error.code) }).toEqual({
        what,
        codes: [problem.code],
      });
      const { error, path: reported } = started.errors[0];
      expect(error.message).toContain(problem.problem);
      if (file.startsWith('.journal')) {
        expect(error.message).toContain(`The journal ${path} is damaged: ${problem.problem}.`);
      } else {
        expect({ what, path: reported }).toEqual({ what, path });
        if (problem.code === 'PERSISTENCE_DECRYPTION_FAILED') {
          // Left in place: listed as unloaded, under the same file.
          expect(started.unloaded.map((u) => [u.path, u.code])).toEqual([[path, problem.code]]);
        }
      }
      await apps.pop()?.close();
    }
    // The sample reached every kind of finding.
    expect([...seen].sort()).toEqual([
      'PERSISTENCE_CORRUPT_FILE',
      'PERSISTENCE_DECRYPTION_FAILED',
      'PERSISTENCE_JOURNAL_DAMAGED',
      'torn tail',
    ]);
  }, 60_000);

  it('a backup: every flip in its files is refused by restore(id) and listed by verify, in the same words', async () => {
    const folder = join(backups, backupId);
    const files = [
      'persistence-backup.json',
      ...(await readdir(join(folder, 'sessions'))).slice(0, 2).map((n) => `sessions/${n}`),
    ];
    const cases: Array<{ file: string; at: number; copy: string }> = [];
    for (const file of files) {
      const { size } = await stat(join(folder, file));
      for (const at of positions(size, file.startsWith('sessions') ? 2 : 4)) {
        const copy = await copyOf(backups);
        await flip(join(copy, backupId, file), at);
        cases.push({ file, at, copy });
      }
    }
    const reports: Array<VerifyJson & { code: number | null }> = [];
    for (let i = 0; i < cases.length; i += 2) {
      const batch = cases.slice(i, i + 2).map((c) => verify(join(c.copy, backupId)));
      reports.push(...(await Promise.all(batch)));
    }
    for (const [i, { file, at, copy }] of cases.entries()) {
      const what = `${file} byte ${at}`;
      const report = reports[i];
      const app = await createApp(options(`${copy}-store`, { backups: { directory: copy } }));
      apps.push(app);
      const outcome = await app
        .get(PersistenceStore)
        .restore(backupId)
        .then(
          () => undefined,
          (error: Error & { code?: string }) => error,
        );
      await apps.pop()?.close();
      if (file.startsWith('sessions')) {
        // Every byte of an item file is covered by its checksum: always reported.
        expect({ what, code: report.code }).toEqual({ what, code: 1 });
      }
      // Where a byte of the manifest is not checked by either (its time stamp), both accept it.
      expect({ what, verify: report.problems.length > 0 }).toEqual({
        what,
        verify: outcome !== undefined,
      });
      if (!outcome) continue;
      expect(report.problems).toHaveLength(1);
      const [problem] = report.problems;
      expect({ what, code: outcome.code }).toEqual({ what, code: problem.code });
      expect(outcome.message).toBe(
        `Cannot restore from ${join(copy, backupId)}: ${problem.problem}. The store was not changed.`,
      );
      expect(problem.problem).toContain(problem.file);
    }
  }, 60_000);
});
