import { Command } from 'commander';
import { ItemCipher } from '../encryption/item.cipher';
import { JsonSerializer } from '../serializers/json.serializer';
import { DEFAULT_OPTIONS } from '../store/persistence.options';
import { parseItemFileName } from '../storage/file-system.storage';
import { basename } from 'node:path';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { BACKUP_MANIFEST_FILE } from '../persistence.constants';
import { ItemFileCodec } from '../serializers/item-file.codec';
import { BackupProblem } from '../storage/backup.storage';
import { checkRestoreFiles } from '../store/restore.checker';
import { ItemFileFinding, itemFileFinding, journalFindings } from '../store/store.findings';
import { ExitCode } from './cli.error';
import { cipherFrom, collectKey, encryptionFrom } from './cli.keys';
import { lockedFile } from './cli.messages';
import { out, plural } from './cli.output';
import { startProgress } from './cli.progress';
import {
  driverCollections,
  requirePath,
  StorageCliOptions,
  storageDriver,
  storeArguments,
  withStorageOptions,
} from './cli.storage';
import { StoreFolder } from './store.folder';

/** One thing wrong: the file (relative to the store folder) and what is wrong with it. */
export interface VerifyProblem {
  file: string;
  /** In the words of the application's report of it (store/store.findings.ts). */
  problem: string;
  /** The error code the application reports it with; absent: a warning (a torn tail). */
  code?: PersistenceErrorCode;
}

/** What `verify --json` prints. */
export interface VerifyReport {
  path: string;
  /** `backup`: the folder is a backup (it holds a backup manifest), checked as `restore()` checks it. */
  kind?: 'backup';
  checked: { collections: number; files: number; journalRecords: number };
  problems: VerifyProblem[];
}

/** The finding as `verify` lists it: the problem, and the hint to pass a key when one is missing. */
function itemProblem(
  file: string,
  finding: ItemFileFinding,
  cipher: ItemCipher | undefined,
): VerifyProblem {
  const problem =
    finding.code === PersistenceErrorCode.DecryptionFailed && !cipher
      ? lockedFile(finding.problem)
      : finding.problem;
  return { file, problem, code: finding.code };
}

/**
 * Checks a store folder as the application's start judges it (store/store.findings.ts): every item
 * file (it parses in whichever format it is, its envelope is complete and of a supported version, its
 * id matches its file name), and every journal file (damage, a torn tail, records whose files do not
 * parse). A backup folder is checked as `restore()` checks it. Changes nothing.
 */
export async function verifyStore(
  folder: StoreFolder,
  cipher: ItemCipher | undefined,
): Promise<VerifyReport> {
  await folder.assertExists();
  const codec = new ItemFileCodec(
    new JsonSerializer(),
    cipher,
    DEFAULT_OPTIONS.limits.maxInflatedBytes,
  );
  if (await folder.isBackup()) return verifyBackup(folder, codec);
  const problems: VerifyProblem[] = [];
  const { names } = await folder.collections();
  const listed = await Promise.all(names.map((name) => folder.itemFiles(name)));
  const files = listed.flat().length;
  const progress = startProgress('verify', files);
  try {
    for (const [i, collection] of names.entries()) {
      for (const file of listed[i]) {
        try {
          await codec.decode(collection, file, await folder.read(file.path));
        } catch (error) {
          const name = `${collection}/${file.fileName}`;
          problems.push(itemProblem(name, itemFileFinding(file.path, error), cipher));
        }
        progress.tick();
      }
    }
  } finally {
    progress.stop();
  }
  const journal = await folder.journal();
  let r = 0;
  for (const segment of journal.segments) {
    const name = basename(segment.path);
    for (const record of segment.records) {
      r++;
      for (const op of record) {
        const where = `${name} (record ${r}: ${op.collection}/${op.fileName})`;
        const parsed = parseItemFileName(op.fileName);
        if (!parsed) {
          problems.push({
            file: where,
            problem: 'not the name of an item file',
            code: PersistenceErrorCode.CorruptFile,
          });
        } else if (op.data) {
          try {
            await codec.decode(op.collection, parsed, op.data);
          } catch (error) {
            // The start reports a journal entry that does not decode as a corrupt file.
            const { problem } = itemProblem(where, itemFileFinding(where, error), cipher);
            problems.push({ file: where, problem, code: PersistenceErrorCode.CorruptFile });
          }
        }
      }
    }
    for (const finding of journalFindings(segment.path, segment, segment.sealed)) {
      problems.push({
        file: name,
        problem: finding.problem,
        ...(finding.code === undefined ? {} : { code: finding.code }),
      });
    }
  }
  return {
    path: folder.root,
    checked: { collections: names.length, files, journalRecords: journal.records.length },
    problems,
  };
}

/** A backup folder, read and checked by the code of `restore()` (manifest, checksums, every file). */
async function verifyBackup(folder: StoreFolder, codec: ItemFileCodec): Promise<VerifyReport> {
  const { names } = await folder.collections();
  const report: VerifyReport = {
    path: folder.root,
    kind: 'backup',
    checked: { collections: names.length, files: 0, journalRecords: 0 },
    problems: [],
  };
  try {
    const files = await folder.backupFiles(names);
    report.checked.files = files.length;
    await checkRestoreFiles(files, codec);
  } catch (error) {
    if (!(error instanceof BackupProblem)) throw error;
    report.problems.push({
      file: error.file ?? BACKUP_MANIFEST_FILE,
      problem: error.message,
      code: PersistenceErrorCode.InvalidBackup,
    });
  }
  return report;
}

/** The report for people. */
export function formatVerify(report: VerifyReport): string {
  const { checked, problems } = report;
  const scope =
    `${plural(checked.files, 'item file')} in ${plural(checked.collections, 'collection')}` +
    ` and ${plural(checked.journalRecords, 'journal record')}`;
  const what = report.kind === 'backup' ? 'backup ' : '';
  if (problems.length === 0) return `OK ${what}${report.path}: ${scope} checked, no problems.`;
  return [
    `${plural(problems.length, 'problem')} in ${what}${report.path} (${scope} checked):`,
    ...problems.map(
      (p) =>
        `  ${p.file}: ${p.problem}` +
        (p.code ? ` (${p.code})` : '; the next start of the application cuts them off'),
    ),
  ].join('\n');
}

export function registerVerify(program: Command, done: (code: ExitCode) => void): void {
  const command = program
    .command('verify')
    .summary('Check a store (or a backup) as the application would; exit 1 listing what is wrong')
    .description(
      "Judge the store folder with the application's own start-up checks: every item file parses (any format; encrypted ones with --key) and its id matches its file name; every journal file (sealed segments and the active journal) is read as the start reads it, so damage (PERSISTENCE_JOURNAL_DAMAGED) and a torn tail are listed in the words the application uses. A backup folder (one holding persistence-backup.json) is checked as restore() checks it (manifest, checksums, every file). With --storage: every item of --collections loaded through the store, listing what the load could not use. Exits 1 listing each problem with its error code. Reads only.",
    )
    .argument('[path]', 'the store folder, or a backup folder (left out with --storage)')
    .option('--json', 'print one JSON document (machine output)')
    .option('--key <key>', 'key to read encrypted files: KEY or ID:KEY (repeatable)', collectKey);
  withStorageOptions(command, true).action(
    async (given: string | undefined, options: VerifyOptions) => {
      const [path] = storeArguments('verify', options, [given]);
      const storage = await storageDriver(options);
      if (storage) {
        const { runDriverReport } = await import('./driver.report');
        const collections = driverCollections(options);
        const encryption = encryptionFrom(options.key);
        const report = await runDriverReport(storage, collections, encryption, options.json);
        done(report.problems.length === 0 ? ExitCode.Ok : ExitCode.Failed);
        return;
      }
      const cipher = cipherFrom(encryptionFrom(options.key));
      const report = await verifyStore(new StoreFolder(requirePath(path)), cipher);
      out(options.json ? JSON.stringify(report, null, 2) : formatVerify(report));
      done(report.problems.length === 0 ? ExitCode.Ok : ExitCode.Failed);
    },
  );
}

interface VerifyOptions extends StorageCliOptions {
  json?: boolean;
  key?: string[];
}
