import { Command } from 'commander';
import { ItemCipher } from '../encryption/item.cipher';
import { JsonSerializer } from '../serializers/json.serializer';
import { DEFAULT_OPTIONS } from '../store/persistence.options';
import { parseItemFileName } from '../storage/file-system.storage';
import { JOURNAL_FILE } from '../storage/on-disk.names';
import { ItemDecodeError, ItemFileCodec } from '../serializers/item-file.codec';
import { ExitCode } from './cli.error';
import { cipherFrom, collectKey, encryptionFrom } from './cli.keys';
import { lockedFile } from './cli.messages';
import { out, plural } from './cli.output';
import { startProgress } from './cli.progress';
import { StoreFolder } from './store.folder';

/** One thing wrong: the file (relative to the store folder) and what is wrong with it. */
export interface VerifyProblem {
  file: string;
  problem: string;
}

/** What `verify --json` prints. */
export interface VerifyReport {
  path: string;
  checked: { collections: number; files: number; journalRecords: number };
  problems: VerifyProblem[];
}

const reasonOf = (error: unknown, cipher: ItemCipher | undefined): string => {
  const reason = error instanceof Error ? error.message : String(error);
  return error instanceof ItemDecodeError && error.kind === 'locked' && !cipher
    ? lockedFile(reason)
    : reason;
};

/**
 * Checks every item file (it parses in whichever format it is, its envelope is complete and of a
 * supported version, its id matches its file name) and the journal (every record complete, its files
 * parse). Changes nothing.
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
          problems.push({
            file: `${collection}/${file.fileName}`,
            problem: reasonOf(error, cipher),
          });
        }
        progress.tick();
      }
    }
  } finally {
    progress.stop();
  }
  const journal = await folder.journal();
  for (const [r, record] of journal.records.entries()) {
    for (const op of record) {
      const where = `${JOURNAL_FILE} (record ${r + 1}: ${op.collection}/${op.fileName})`;
      const parsed = parseItemFileName(op.fileName);
      if (!parsed) {
        problems.push({ file: where, problem: 'not the name of an item file' });
      } else if (op.data) {
        try {
          await codec.decode(op.collection, parsed, op.data);
        } catch (error) {
          problems.push({ file: where, problem: reasonOf(error, cipher) });
        }
      }
    }
  }
  if (journal.tornBytes > 0) {
    problems.push({
      file: JOURNAL_FILE,
      problem:
        `${journal.tornBytes} bytes after record ${journal.records.length} are not a complete record ` +
        '(a save cut off by a crash, never committed); the next start of the application cuts them off',
    });
  }
  return {
    path: folder.root,
    checked: { collections: names.length, files, journalRecords: journal.records.length },
    problems,
  };
}

/** The report for people. */
export function formatVerify(report: VerifyReport): string {
  const { checked, problems } = report;
  const scope =
    `${plural(checked.files, 'item file')} in ${plural(checked.collections, 'collection')}` +
    ` and ${plural(checked.journalRecords, 'journal record')}`;
  if (problems.length === 0) return `OK ${report.path}: ${scope} checked, no problems.`;
  return [
    `${plural(problems.length, 'problem')} in ${report.path} (${scope} checked):`,
    ...problems.map((p) => `  ${p.file}: ${p.problem}`),
  ].join('\n');
}

export function registerVerify(program: Command, done: (code: ExitCode) => void): void {
  program
    .command('verify')
    .summary('Check every item file and the journal; exit 1 listing what is wrong')
    .description(
      'Check that every item file parses (any format; encrypted ones with --key), that its id matches its file name, and that the journal records are complete. Exits 1 listing each problem. Reads only.',
    )
    .argument('<path>', 'the store folder')
    .option('--json', 'print one JSON document (machine output)')
    .option('--key <key>', 'key to read encrypted files: KEY or ID:KEY (repeatable)', collectKey)
    .action(async (path: string, options: { json?: boolean; key?: string[] }) => {
      const cipher = cipherFrom(encryptionFrom(options.key));
      const report = await verifyStore(new StoreFolder(path), cipher);
      out(options.json ? JSON.stringify(report, null, 2) : formatVerify(report));
      done(report.problems.length === 0 ? ExitCode.Ok : ExitCode.Failed);
    });
}
