import { resolve } from 'node:path';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import { PersistenceAdapter } from '../interfaces/persistence-adapter.interface';
import { RestoreMetadata } from '../interfaces/persistence-metadata.interface';
import * as messages from '../persistence.messages';
import { ItemEnvelope, ItemFileCodec } from '../serializers/item-file.codec';
import { BackupFile, BackupProblem, readBackup } from '../storage/backup.storage';
import { PersistenceFileSystem } from '../storage/file-system.interface';
import { AdapterCaller } from './adapter.caller';
import { BackupOrchestrator } from './backup.orchestrator';
import { ErrorReporter } from './error.reporter';
import { reviveStored } from './schema.migrator';
import { StoreBackend } from './store.backend';

/** What a restore's checks need from the store. */
export interface RestoreScope {
  fs: PersistenceFileSystem;
  backend: StoreBackend;
  backups?: BackupOrchestrator;
  codec: ItemFileCodec;
  caller: AdapterCaller;
  adapters: readonly PersistenceAdapter[];
  options: { limits: { maxFileBytes: number } };
  errors: ErrorReporter;
}

/**
 * The checks before a restore: `source` (a folder, or the id of a backup from `listBackups()`) is
 * read whole, and every file is decoded, migrated and revived by its adapter, except that a file
 * its manifest lists as `unverified` (the store had not loaded it when it backed it up) is put back
 * as it is when it does not decode. A backup that is incomplete, tampered with or holds anything
 * unexpected is refused (`INVALID_BACKUP`, reported): nothing has changed then.
 */
export async function readRestoreSource(
  scope: RestoreScope,
  source: string,
): Promise<{ from: string; files: BackupFile[] }> {
  const { backend, backups, codec } = scope;
  const backupId = backups?.backupIdOf(source);
  const from = backupId === undefined ? resolve(source) : backups!.locate(backupId);
  const invalid = (problem: string, cause?: unknown): PersistenceError =>
    scope.errors.report(
      new PersistenceError(
        PersistenceErrorCode.InvalidBackup,
        messages.backupSourceInvalid(from, problem),
        { operation: 'restore', path: from, cause },
      ),
    );
  const sourceProblem =
    backupId === undefined
      ? await scope.errors.io('restore', 'inspect', from, () => backend.restoreSourceProblem(from))
      : undefined;
  if (sourceProblem) throw invalid(sourceProblem);
  const collections = scope.adapters.map((a) => a.name);
  const byName = new Map(scope.adapters.map((a) => [a.name, a]));
  let files;
  try {
    files =
      backupId === undefined
        ? await readBackup(
            scope.fs,
            from,
            collections,
            codec.serializer.extension,
            scope.options.limits.maxFileBytes,
          )
        : await backups!.read(backupId);
    await checkRestoreFiles(files, codec, (collection, envelope) => {
      const adapter = byName.get(collection);
      if (adapter) reviveStored(scope.caller, adapter, envelope); // migrations, revive()
    });
  } catch (error) {
    throw invalid(messages.reasonOf(error), error);
  }
  return { from, files };
}

/**
 * Decodes every file of a backup (and hands each envelope to `revive`, when given): the check of a
 * backup's contents that `restore()` and `verify` share. Throws a {@link BackupProblem} naming the
 * first file that is not a valid item file.
 */
export async function checkRestoreFiles(
  files: readonly BackupFile[],
  codec: ItemFileCodec,
  revive?: (collection: string, envelope: ItemEnvelope) => void,
): Promise<void> {
  for (const file of files) {
    const name = `${file.collection}/${file.fileName}`;
    try {
      const { envelope } = await codec.decode(file.collection, file, file.data);
      revive?.(file.collection, envelope);
    } catch (error) {
      // Kept as it was by the backup (the store had not loaded it): back as it is, for the load.
      if (file.unverified !== undefined) continue;
      throw new BackupProblem(
        `"${name}" is not a valid item file (${messages.reasonOf(error)})`,
        name,
      );
    }
  }
}

/** `restore(source)`: the checks above, then the backend replaces its state and loads it. */
export async function restoreBackup(scope: RestoreScope, source: string): Promise<RestoreMetadata> {
  const { from, files } = await readRestoreSource(scope, source);
  const load = await scope.backend.restore(
    files,
    scope.adapters.map((a) => a.name),
  );
  return { source: from, files: files.length, load };
}
