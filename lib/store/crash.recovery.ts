import { PersistenceLogger } from '../events/persistence.logger';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError, PersistenceOperation } from '../errors/persistence.error';
import * as messages from '../persistence.messages';
import { recoverRestores } from '../storage/restore.swap';
import { PersistenceFileSystem } from '../storage/file-system.interface';
import { FileSystemStorage } from '../storage/file-system.storage';
import { fsyncDirectory } from '../storage/fs.util';
import {
  JournalOp,
  listSealedSegments,
  readAllSegments,
  readSealedSegment,
} from '../storage/journal';
import { ErrorReporter } from './error.reporter';
import { JournalCheckpointer } from './journal.checkpointer';
import { journalFindings, StoreFinding } from './store.findings';

/** What crash recovery works on: the store folder and its journal. */
export interface RecoveryScope {
  fs: PersistenceFileSystem;
  root: string;
  fileMode: number;
  storage: FileSystemStorage;
  checkpointer: JournalCheckpointer;
  collections: string[];
  errors: ErrorReporter;
  logger: PersistenceLogger;
}

/**
 * Crash recovery at start-up; nothing committed is deleted by it. Finishes or discards an
 * interrupted restore, reads the sealed segments and the journal (a torn tail is cut, damage is
 * reported), removes leftover temporary files, and replays the commits into the item files.
 * Resolves true when the replay was deferred (e.g. a full disk): the boot load then reads the
 * commits from the journal.
 */
export async function recoverAtStart(scope: RecoveryScope): Promise<boolean> {
  const { fs, root, checkpointer, logger } = scope;
  const journal = checkpointer.journal;
  for (const done of await recoverRestores(fs, root)) {
    logger.warn(`Recovery: ${done}.`);
  }
  let saves = 0;
  let sealed = 0;
  for (const segment of await listSealedSegments(fs, journal.path)) {
    const contents = await readSealedSegment(fs, segment.path, scope.fileMode);
    const findings = journalFindings(
      segment.path,
      {
        damaged: contents.damage?.regions ?? [],
        records: contents.records,
        tornTailBytes: 0,
        unsupportedVersion: contents.unsupportedVersion,
      },
      true,
    );
    refuseUnsupported(findings, 'init');
    report(scope, segment.path, findings, contents.damage?.copyPath);
    const { size } = await fs.lstat(segment.path);
    checkpointer.addSealed(
      { path: segment.path, ops: contents.records.flat(), bytes: size },
      segment.n,
    );
    sealed++;
    saves += contents.records.length;
  }
  const { records, tornTailBytes, damage, unsupportedVersion } = await journal.open();
  const findings = journalFindings(
    journal.path,
    { damaged: damage?.regions ?? [], records, tornTailBytes, unsupportedVersion },
    false,
  );
  refuseUnsupported(findings, 'init');
  await fsyncDirectory(fs, root); // the journal file itself, when just created
  report(scope, journal.path, findings, damage?.copyPath);
  const removed = await scope.storage.prepare(scope.collections);
  saves += records.length;
  checkpointer.committed(records.flat());
  let deferred = false;
  if (sealed > 0 || records.length > 0) {
    try {
      await checkpointer.applyJournal();
      logger.warn(
        `Recovery: replayed ${saves} committed save(s) from the journal into the item files.`,
      );
    } catch (error) {
      // E.g. a full disk: the commits stay in the journal (the load reads them from there) and the
      // next checkpoint writes them. Starting matters more than tidying up.
      deferred = true;
      scope.errors.report(
        new PersistenceError(
          PersistenceErrorCode.IoFailed,
          messages.replayDeferred(saves, root, messages.reasonOf(error)),
          { operation: 'init', path: root, cause: error },
        ),
        'init',
      );
    }
  }
  if (removed.length > 0) {
    logger.log(`Recovery: removed ${removed.length} leftover temporary file(s).`);
  }
  return deferred;
}

/** The complete records of every journal segment, read without changing anything (read-only). */
export async function readJournalOnly(
  fs: PersistenceFileSystem,
  journalPath: string,
  errors: ErrorReporter,
  logger: PersistenceLogger,
): Promise<JournalOp[][]> {
  const records: JournalOp[][] = [];
  for (const segment of await readAllSegments(fs, journalPath)) {
    const findings = journalFindings(segment.path, segment, segment.sealed);
    refuseUnsupported(findings, 'load');
    for (const finding of findings) {
      // A torn tail is left as it is (nothing is written): the writable start cuts it.
      if (finding.code === undefined) {
        logger.warn(messages.journalTornTailKept(segment.path, finding.problem));
      }
    }
    reportDamage(
      errors,
      segment.path,
      'load',
      findings.filter((f) => f.code !== undefined),
    );
    records.push(...segment.records);
  }
  return records;
}

/**
 * Fails the start on a journal file in a format this code does not read, leaving it as it is: its
 * saves are not in the item files, so starting without them would lose them.
 */
function refuseUnsupported(
  findings: readonly StoreFinding[],
  operation: PersistenceOperation,
): void {
  const refused = findings.find((f) => f.code === PersistenceErrorCode.JournalFormatUnsupported);
  if (!refused) return;
  throw new PersistenceError(
    PersistenceErrorCode.JournalFormatUnsupported,
    messages.journalFormatUnsupported(refused.path, refused.problem),
    { operation, path: refused.path },
  );
}

/** Reports what {@link journalFindings} found in one journal file at the start. */
function report(
  scope: RecoveryScope,
  path: string,
  findings: readonly StoreFinding[],
  copyPath: string | undefined,
): void {
  for (const finding of findings) {
    if (finding.code === undefined)
      scope.logger.warn(messages.journalTornTail(path, finding.problem));
  }
  reportDamage(
    scope.errors,
    path,
    'init',
    findings.filter((f) => f.code !== undefined),
    copyPath,
  );
}

/** Reports a damaged journal file; the start goes on with the records recovered. */
function reportDamage(
  errors: ErrorReporter,
  path: string,
  operation: PersistenceOperation,
  findings: readonly StoreFinding[],
  copyPath?: string,
): void {
  for (const finding of findings) {
    errors.report(
      new PersistenceError(
        PersistenceErrorCode.JournalDamaged,
        messages.journalDamaged(path, finding.problem, copyPath),
        { operation, path: copyPath ?? path },
      ),
      operation,
    );
  }
}
