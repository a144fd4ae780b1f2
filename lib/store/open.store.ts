import type { SchedulerRegistry } from '@nestjs/schedule';
import { findNonJsonData } from '../adapters/json-data.util';
import { ItemCipher } from '../encryption/item.cipher';
import { PersistenceNotifier } from '../events/persistence.notifier';
import { PersistenceAdapter } from '../interfaces/persistence-adapter.interface';
import { ResolvedPersistenceOptions } from '../interfaces/persistence-module-options.interface';
import { PersistenceStatus } from '../interfaces/persistence-status.interface';
import { BuiltInFormat, Serializer } from '../interfaces/serializer.interface';
import { createItemFileCodec, ItemFileCodec } from '../serializers/item-file.codec';
import { BackupOrchestrator } from './backup.orchestrator';
import { BackupVerifier } from './backup.verifier';
import { CommittedIndex } from './committed.index';
import { LoadProblems } from './load.problems';
import { DriverBackend } from './driver.backend';
import { FileSystemBackend } from './file-system.backend';
import { StoreBackend, BackendContext } from './store.backend';

/** What JSON cannot carry exactly in a custom adapter's value, as one sentence; undefined: none. */
function findProblem(value: unknown, allowToJSON: boolean): string | undefined {
  const found = findNonJsonData(value, { allowToJSON, path: 'the value' });
  return found && `${found.path} ${found.problem}; ${found.fix}`;
}

/** What the store has from its construction on and shares with the backend. */
export type StoreShared = Omit<BackendContext, 'options' | 'codec' | 'checks'> & {
  /** The built-in adapters: their managers check every value when they accept it. */
  readonly trusted: ReadonlySet<PersistenceAdapter>;
};

/**
 * What exists only once the store is open, created by `onModuleInit`: the resolved options, the
 * codec (and cipher), the backend chosen by the options (`storage` driver or the file system), and
 * the backup orchestrator.
 */
export class OpenStore {
  readonly backend: StoreBackend;
  private readonly cipher?: ItemCipher;
  /** The codec of the next save; replaced by `setFormat()`. */
  codec: ItemFileCodec;
  backups?: BackupOrchestrator;

  constructor(
    readonly options: ResolvedPersistenceOptions,
    private readonly shared: StoreShared,
  ) {
    if (options.encryption) {
      this.cipher = ItemCipher.create(options.encryption, () => {
        throw new Error('unreachable: validated by resolveOptions');
      });
    }
    this.codec = createItemFileCodec(options.format, options, this.cipher);
    const context: BackendContext = {
      ...shared,
      options,
      checks: { trusted: shared.trusted, findProblem, inSync: shared.inSync },
      codec: () => this.codec,
    };
    this.backend = options.storage
      ? new DriverBackend(context, options.storage)
      : new FileSystemBackend(context);
  }

  /** The format of the next saves (a format already resolved by `resolveOptions`). */
  setFormat(format: BuiltInFormat | Serializer): void {
    this.codec = createItemFileCodec(format, this.options, this.cipher);
  }

  /** Backups (`backups` option) of the backend's committed state, and their schedule. */
  startBackups(registry: SchedulerRegistry, run: () => Promise<unknown>): void {
    const { options, backend, shared } = this;
    this.backups = new BackupOrchestrator(options.backups, {
      fs: shared.fs,
      modes: { fileMode: options.fileMode, dirMode: options.dirMode },
      entries: (collections) => backend.backupEntries(collections),
      storePath: backend.location,
      maxFileBytes: options.limits.maxFileBytes,
      collections: () => shared.adapters.map((a) => a.name),
      extension: () => this.codec.serializer.extension,
      checkpoint: () => backend.beforeBackup(),
      // On a storage driver other replicas commit too, and a read-only store reads what another
      // process writes: only the decoding checks apply there.
      verifier: () =>
        new BackupVerifier(
          { ...shared, codec: () => this.codec },
          options.storage === undefined && !options.readOnly,
        ),
      report: (error) => shared.errors.report(error),
      logger: shared.logger,
    });
    this.backups.startSchedule(registry, options.readOnly, () => backend.scheduledBackup(run));
  }
}

/** The store-wide facts of `getStatus()`, measured by the store itself. */
export type StoreFacts = Pick<
  PersistenceStatus,
  'startedAt' | 'lastSaveTime' | 'lastSaveIncomplete'
>;

/** `getStatus()`: the store's state and facts, with the backend's (none before the store opens). */
export async function composeStatus(
  state: PersistenceStatus['state'],
  opened: OpenStore | undefined,
  facts: StoreFacts,
  notifier: PersistenceNotifier,
  index: CommittedIndex,
): Promise<PersistenceStatus> {
  const readOnly = opened?.options.readOnly ?? false;
  let reason: string | undefined;
  if (state !== 'ready') reason = `the store is ${state}`;
  else if (readOnly) reason = 'the store was opened with readOnly: true';
  const backend = await opened?.backend.status(reason === undefined);
  const notWritableReason = reason ?? backend?.notWritableReason;
  return {
    path: backend?.path ?? '',
    state,
    readOnly,
    writable: notWritableReason === undefined,
    ...(notWritableReason === undefined ? {} : { notWritableReason }),
    ...facts,
    lastError: notifier.lastError ?? null,
    errorSinceLastSave: notifier.errorSinceSave,
    unresolved: unresolvedOf(index),
    loadFailure: backend?.loadFailure ?? null,
    journal: backend?.journal ?? { bytes: 0, pendingItems: 0 },
    storage: backend?.storage ?? (opened?.options.storage ? 'driver' : 'file-system'),
    disk: backend?.disk ?? null,
  };
}

/** The unresolved unloaded items of `index`, counted per kind. */
function unresolvedOf(index: CommittedIndex): PersistenceStatus['unresolved'] {
  const kinds: PersistenceStatus['unresolved']['kinds'] = {};
  let items = 0;
  for (const group of LoadProblems.unresolved(index).list()) {
    if (group.kind === 'quarantined') continue;
    kinds[group.kind] = group.count;
    items += group.count;
  }
  return { items, kinds };
}
