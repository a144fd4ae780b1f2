import { PersistenceLogger } from '../events/persistence.logger';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError, PersistenceOperation } from '../errors/persistence.error';
import * as messages from '../persistence.messages';
import { recoverRestores } from '../storage/backup.storage';
import { PersistenceFileSystem } from '../storage/file-system.interface';
import { FileSystemStorage } from '../storage/file-system.storage';
import { fsyncDirectory } from '../storage/fs.util';
import {
  JournalDamage,
  JournalOp,
  listSealedSegments,
  readAllSegments,
  readSealedSegment,
} from '../storage/journal';
import { ErrorReporter } from './error.reporter';
import { JournalCheckpointer } from './journal.checkpointer';

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
    if (contents.damage)
      reportJournalDamage(
        scope.errors,
        journal.path,
        'init',
        contents.records.length,
        contents.damage,
      );
    const { size } = await fs.lstat(segment.path);
    checkpointer.addSealed(
      { path: segment.path, ops: contents.records.flat(), bytes: size },
      segment.n,
    );
    sealed++;
    saves += contents.records.length;
  }
  const { records, tornTailBytes, damage } = await journal.open();
  await fsyncDirectory(fs, root); // the journal file itself, when just created
  if (tornTailBytes > 0) {
    logger.warn(messages.journalTornTail(journal.path, tornTailBytes));
  }
  if (damage) reportJournalDamage(scope.errors, journal.path, 'init', records.length, damage);
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
      scope.errors.fail(
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
): Promise<JournalOp[][]> {
  const { records, damaged } = await readAllSegments(fs, journalPath);
  if (damaged.length > 0) {
    reportJournalDamage(errors, journalPath, 'load', records.length, {
      regions: damaged,
      unreadableBytes: damaged.reduce((sum, region) => sum + region.length, 0),
    });
  }
  return records;
}

/** Reports a journal damaged in the middle; the start goes on with the records recovered. */
function reportJournalDamage(
  errors: ErrorReporter,
  journalPath: string,
  operation: PersistenceOperation,
  recovered: number,
  damage: Omit<JournalDamage, 'copyPath'> & { copyPath?: string },
): void {
  errors.fail(
    new PersistenceError(
      PersistenceErrorCode.JournalDamaged,
      messages.journalDamaged(journalPath, {
        unreadableBytes: damage.unreadableBytes,
        regions: damage.regions.length,
        recovered,
        copyPath: damage.copyPath,
      }),
      { operation, path: damage.copyPath ?? journalPath },
    ),
    operation,
  );
}
