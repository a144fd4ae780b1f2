import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError, PersistenceOperation } from '../errors/persistence.error';
import { PersistenceAdapter } from '../interfaces/persistence-adapter.interface';
import { LoadMetadata } from '../interfaces/persistence-metadata.interface';
import {
  adapterFailed,
  corruptFile,
  decryptionFailed,
  ioFailed,
  reasonOf,
} from '../persistence.messages';
import { decodeStem } from '../storage/file-name.codec';
import { FileSystemStorage, ItemFile, parseItemFileName } from '../storage/file-system.storage';
import { ItemDecodeError, ItemFileCodec } from '../serializers/item-file.codec';
import { JournalOp } from '../storage/journal';
import { TimeSlicer } from '../storage/event-loop.util';
import { mapLimit } from '../storage/map-limit.util';
import { AdapterCaller } from './adapter.caller';
import {
  CommittedEntry,
  CommittedIndex,
  hashBytes,
  UNHASHED,
  UnloadedKind,
} from './committed.index';
import { LoadProblems } from './load.problems';
import { reviveStored, schemaFailure } from './schema.migrator';
import { itemFileFinding, itemFileMessage, unloadedReason } from './store.findings';

/** Longest stretch of decoding and reviving between two yields to the event loop. */
const LOAD_SLICE_MS = 5;

interface LoadedItem {
  id: string;
  value: unknown;
  entry: CommittedEntry;
}

/** A corrupt file whose move to `.quarantine/` waits for the start to be accepted. */
interface DeferredQuarantine {
  collection: string;
  file: ItemFile;
  cause: unknown;
}

/** Why a file that did not load stays in place unloaded. */
interface LeftInPlace {
  why: string;
  kind: UnloadedKind;
  /** The code its load reported (`listUnloaded()`'s `code`). */
  code?: PersistenceErrorCode;
}

/** A collection as read: the items that loaded, and the files left in place unloaded, by stem. */
interface ReadCollection {
  items: Map<string, LoadedItem>;
  unloaded: Map<string, CommittedEntry>;
}

/**
 * Reads every adapter's files (and, for a read-only store, the journal's records on top), then
 * restores the adapters and records what is committed. What happens to a file that cannot be loaded
 * depends on why:
 *   - not a valid item (bad bytes, bad envelope, rejected by `revive()`, over the size limit):
 *     moved to `.quarantine/` (left in place when read-only), reported, the rest loads;
 *   - encrypted and not readable with the keys at hand, or refused by the file system: left in place
 *     and recorded as unloaded (no save overwrites or removes it), reported, the rest loads.
 * When an adapter's `restore()` fails, its files are recorded as unloaded too: memory and disk
 * differ, and no save may overwrite what could not be loaded.
 * The adapters are restored only once every folder was read, so an unreadable folder leaves the
 * in-memory state as it was.
 */
export class SnapshotReader {
  /** What this load could not use, by kind (one log line per kind, see `LoadProblems`). */
  readonly problems = new LoadProblems();
  /** Corrupt files kept in place until {@link quarantineDeferred} (with `deferQuarantine`). */
  private readonly deferred: DeferredQuarantine[] = [];

  constructor(
    private readonly storage: FileSystemStorage,
    /*
     * Files read at once, across every folder. 16 (the default) and 64 load the medium tier in the
     * same time on 2 cores: the main thread's parsing, not the disk, is the limit
     * (bench/load-breakdown.ts).
     */
    private readonly readConcurrency: number,
    /** Reports an error; `log: false` for an item's problem, which `problems` summarises. */
    private readonly report: (error: PersistenceError, log: boolean) => void,
    private readonly caller: AdapterCaller,
    private readonly readOnly = false,
    /**
     * The boot load: corrupt files are not moved to `.quarantine/` yet, so that a start that is
     * refused (`onUnreadable: 'fail'`) changes nothing; {@link quarantineDeferred} moves them once
     * it is accepted.
     */
    private readonly deferQuarantine = false,
  ) {}

  async load(
    adapters: readonly PersistenceAdapter[],
    codec: ItemFileCodec,
    index: CommittedIndex,
    overlay: readonly JournalOp[][] = [],
  ): Promise<LoadMetadata> {
    const started = performance.now();
    const meta: LoadMetadata = {
      path: this.storage.root,
      format: codec.serializer.format,
      size: 0,
      timestamp: new Date(),
      items: 0,
      adapters: {},
      skipped: 0,
      durationMs: 0,
    };
    // Every folder is listed, then every file of every folder is read and decoded in one bounded
    // pool (the disk and the thread pool stay busy across folders), decoding in time slices.
    const listed: ItemFile[][] = [];
    for (const adapter of adapters) listed.push(await this.listFiles(adapter.name, codec));
    const slicer = new TimeSlicer(LOAD_SLICE_MS);
    const tasks = listed.flatMap((files, a) => files.map((file): [number, ItemFile] => [a, file]));
    const unloaded = adapters.map(() => new Map<string, CommittedEntry>());
    const decoded = await mapLimit(tasks, this.readConcurrency, ([a, file]) =>
      this.readFile(adapters[a], codec, file, meta, unloaded[a], slicer),
    );
    const states: Array<[PersistenceAdapter, ReadCollection]> = [];
    let offset = 0;
    for (const [a, adapter] of adapters.entries()) {
      const files = listed[a];
      const mine = decoded.slice(offset, offset + files.length);
      offset += files.length;
      states.push([
        adapter,
        await this.collect(adapter, codec, files, mine, unloaded[a], overlay, slicer),
      ]);
    }
    // What each adapter is handed and the committed index, built in time slices (tens of thousands
    // of items on a large store); then every adapter is restored, one after the other, with no
    // turn of the event loop between them, so the application never sees half of a load.
    const prepared: Array<[PersistenceAdapter, Map<string, unknown>, Map<string, CommittedEntry>]> =
      [];
    let count = 0;
    for (const [adapter, { items, unloaded }] of states) {
      const values = new Map<string, unknown>();
      const committed = new Map<string, CommittedEntry>(unloaded);
      for (const [stem, item] of items) {
        values.set(item.id, item.value);
        committed.set(stem, item.entry);
        if (++count % 512 === 0) {
          const wait = slicer.yieldIfDue();
          if (wait) await wait;
        }
      }
      prepared.push([adapter, values, committed]);
    }
    index.clear();
    for (const [adapter, values, committed] of prepared) {
      const failed = await restoreLoaded(this.caller, adapter, values, committed, meta, 'load');
      if (failed) noteFailedRestore(this.problems, adapter.name, committed, failed, this.report);
      index.set(adapter.name, committed);
    }
    meta.durationMs = performance.now() - started;
    return meta;
  }

  /** A collection's item files, those in the current format last (see `collect`). */
  private async listFiles(collection: string, codec: ItemFileCodec): Promise<ItemFile[]> {
    let files: ItemFile[];
    try {
      files = await this.storage.list(collection, codec.serializer.extension);
    } catch (error) {
      const dir = this.storage.collectionPath(collection);
      throw new PersistenceError(
        PersistenceErrorCode.IoFailed,
        ioFailed('read', dir, reasonOf(error)),
        { operation: 'load', adapter: collection, path: dir, cause: error },
      );
    }
    // Where one item has files in two formats (a crash between writing the new one and removing the
    // old one), the file in the current format is the newer: read it last so it wins.
    // (A stable partition, in one pass: tens of thousands of files sort in one long synchronous call.)
    const current: ItemFile[] = [];
    const others: ItemFile[] = [];
    for (const file of files) (file.extension === codec.extension ? current : others).push(file);
    return others.length === 0 ? current : others.concat(current);
  }

  /** Reads and decodes one file; a file that does not load is set aside and gives `undefined`. */
  private async readFile(
    adapter: PersistenceAdapter,
    codec: ItemFileCodec,
    file: ItemFile,
    meta: LoadMetadata,
    unloaded: Map<string, CommittedEntry>,
    slicer: TimeSlicer,
  ): Promise<LoadedItem | undefined> {
    try {
      const data = await this.storage.read(file.path);
      const wait = slicer.yieldIfDue();
      if (wait) await wait;
      const item = await this.decode(adapter, codec, file, data);
      meta.size += data.length;
      return item;
    } catch (error) {
      meta.skipped++;
      const left = await this.setAside(adapter.name, file, error);
      if (left !== undefined) {
        unloaded.set(file.stem, {
          fileName: file.fileName,
          ref: undefined,
          hash: '',
          unloaded: left.why,
          unloadedKind: left.kind,
          ...(left.code === undefined ? {} : { unloadedCode: left.code }),
        });
      }
      return undefined;
    }
  }

  /** One collection's items from its decoded files, with the journal's records on top. */
  private async collect(
    adapter: PersistenceAdapter,
    codec: ItemFileCodec,
    files: readonly ItemFile[],
    decoded: ReadonlyArray<LoadedItem | undefined>,
    unloaded: Map<string, CommittedEntry>,
    overlay: readonly JournalOp[][],
    slicer: TimeSlicer,
  ): Promise<ReadCollection> {
    const collection = adapter.name;
    const items = new Map<string, LoadedItem>();
    decoded.forEach((item, i) => {
      if (item) this.put(items, files[i].stem, item);
    });
    for (const [stem, entry] of unloaded) {
      // An item with a readable file in one format and an unreadable one in another: keep both.
      const loaded = items.get(stem);
      if (loaded) {
        loaded.entry.unloaded = entry.unloaded;
        loaded.entry.unloadedCode = entry.unloadedCode;
        loaded.entry.unloadedKind = entry.unloadedKind;
        unloaded.delete(stem);
      }
    }
    for (const record of overlay) {
      for (const op of record.filter((o) => o.collection === collection)) {
        const parsed = parseItemFileName(op.fileName, codec.serializer.extension);
        if (!parsed) continue;
        if (!op.data) {
          const current = items.get(parsed.stem);
          if (current?.entry.fileName === op.fileName) items.delete(parsed.stem);
          if (unloaded.get(parsed.stem)?.fileName === op.fileName) unloaded.delete(parsed.stem);
          continue;
        }
        try {
          const file = { ...parsed, fileName: op.fileName, path: op.fileName };
          const wait = slicer.yieldIfDue();
          if (wait) await wait;
          const item = await this.decode(adapter, codec, file, op.data);
          items.set(parsed.stem, item);
        } catch (error) {
          const where = `journal entry ${collection}/${op.fileName}`;
          const id = decodeStem(parsed.stem) ?? parsed.stem;
          const schema = schemaFailure(collection, where, error);
          const locked = error instanceof ItemDecodeError && error.kind === 'locked';
          if (schema || locked) {
            // Not loadable by this code (or key), and not to be replaced by an older file's value.
            const left: LeftInPlace = schema
              ? { why: schema.why, kind: schema.kind, code: schema.error.code }
              : {
                  why: 'it could not be decrypted with the configured keys',
                  kind: 'wrong-key',
                  code: PersistenceErrorCode.DecryptionFailed,
                };
            items.delete(parsed.stem);
            unloaded.set(parsed.stem, {
              fileName: op.fileName,
              ref: undefined,
              hash: '',
              unloaded: left.why,
              unloadedKind: left.kind,
              ...(left.code === undefined ? {} : { unloadedCode: left.code }),
            });
            const context = {
              operation: 'load' as const,
              adapter: collection,
              itemId: id,
              path: where,
              cause: error,
            };
            this.note(
              left.kind,
              collection,
              id,
              schema?.error ??
                new PersistenceError(
                  PersistenceErrorCode.DecryptionFailed,
                  decryptionFailed(where, reasonOf(error)),
                  context,
                ),
            );
            continue;
          }
          this.report(
            new PersistenceError(
              PersistenceErrorCode.CorruptFile,
              corruptFile(`journal entry ${collection}/${op.fileName}`, reasonOf(error)),
              { operation: 'load', adapter: collection, path: op.fileName, cause: error },
            ),
            true,
          );
        }
      }
    }
    return { items, unloaded };
  }

  private async decode(
    adapter: PersistenceAdapter,
    codec: ItemFileCodec,
    file: { stem: string; extension: string; fileName: string },
    data: Buffer,
  ): Promise<LoadedItem> {
    const { envelope, plain, keyId } = await codec.decode(adapter.name, file, data);
    // Migrations (from an older schema version), then revive(); a migrated item's file holds the
    // old version, so it is marked for the next save to rewrite.
    const { value, migrated } = reviveStored(this.caller, adapter, envelope);
    return {
      id: envelope.id,
      value,
      entry: {
        fileName: file.fileName,
        ref: value,
        hash:
          file.extension !== codec.extension || migrated
            ? ''
            : adapter.immutable === true && typeof adapter.changes === 'function'
              ? UNHASHED // saved when reported changed, skipped when the same object: no compare
              : hashBytes(plain),
        keyId,
        ...(migrated ? { migrated: true } : {}),
      },
    };
  }

  /** Two files of one item (two formats): the later wins, the other is removed at the next save. */
  private put(items: Map<string, LoadedItem>, stem: string, item: LoadedItem): void {
    const previous = items.get(stem);
    if (previous) {
      item.entry.others = [
        ...(previous.entry.others ?? []),
        previous.entry.fileName,
        ...(item.entry.others ?? []),
      ];
    }
    items.set(stem, item);
  }

  /** Reports a file that did not load; returns why it stays in place unloaded, if it does. */
  private async setAside(
    collection: string,
    file: ItemFile,
    cause: unknown,
  ): Promise<LeftInPlace | undefined> {
    const { itemId, context } = loadContext(collection, file, cause);
    const finding = itemFileFinding(file.path, cause); // the judgement `verify` shares
    if (finding.code === PersistenceErrorCode.OptionalDependencyMissing) {
      // The file is fine; a package to read it is missing: left in place, pinned, unloaded.
      this.storage.pin(file.path);
      const error = new PersistenceError(finding.code, finding.problem, context);
      this.note('missing-package', collection, itemId, error);
      return { why: finding.problem, kind: 'missing-package', code: finding.code };
    }
    const schema = schemaFailure(collection, file.path, cause);
    if (schema) {
      // The file is fine; this code cannot use it (yet): left in place, pinned, unloaded.
      this.storage.pin(file.path);
      this.note(schema.kind, collection, itemId, schema.error);
      return { why: schema.why, kind: schema.kind, code: schema.error.code };
    }
    // The judgement `verify` shares (store.findings.ts): same code, same words.
    if (!finding.invalid) {
      this.storage.pin(file.path);
      const kind: UnloadedKind =
        finding.code === PersistenceErrorCode.DecryptionFailed ? 'wrong-key' : 'unreadable';
      this.note(
        kind,
        collection,
        itemId,
        new PersistenceError(finding.code, itemFileMessage(finding), context),
      );
      return { why: unloadedReason(finding), kind, code: finding.code };
    }
    if (this.deferQuarantine && !this.readOnly) {
      // Left where it is (pinned: no save may remove it) until the start is accepted.
      this.storage.pin(file.path);
      this.deferred.push({ collection, file, cause });
      return undefined;
    }
    return this.quarantine(collection, file, cause);
  }

  /** Moves a corrupt file to `.quarantine/` (or leaves it, pinned, when it cannot); reports it. */
  private async quarantine(
    collection: string,
    file: ItemFile,
    cause: unknown,
  ): Promise<LeftInPlace | undefined> {
    const { itemId, context } = loadContext(collection, file, cause);
    let movedTo: string | undefined;
    if (!this.readOnly) {
      try {
        movedTo = await this.storage.quarantine(collection, file);
      } catch {
        movedTo = undefined;
      }
    }
    if (!movedTo) this.storage.pin(file.path); // left where it is: no save may remove it
    const finding = itemFileFinding(file.path, cause);
    const error = new PersistenceError(finding.code, itemFileMessage(finding, movedTo), context);
    this.note(movedTo ? 'quarantined' : 'corrupt', collection, itemId, error);
    return movedTo
      ? undefined
      : {
          why: `it is not a valid item file: ${finding.problem}`,
          kind: 'corrupt',
          code: finding.code,
        };
  }

  /**
   * After a boot load read with `deferQuarantine`, once the start is accepted: moves the corrupt
   * files to `.quarantine/`. One that cannot be moved stays in place, recorded in `index` as
   * unloaded; returns the collections whose entries changed.
   */
  async quarantineDeferred(index: CommittedIndex): Promise<Set<string>> {
    const changed = new Set<string>();
    for (const { collection, file, cause } of this.deferred.splice(0)) {
      this.storage.unpin(file.path);
      const left = await this.quarantine(collection, file, cause);
      if (!left) continue;
      let entries = index.get(collection);
      if (!entries) index.set(collection, (entries = new Map<string, CommittedEntry>()));
      const loaded = entries.get(file.stem);
      if (loaded) {
        // Its item loaded from a file in another format: keep both, as `collect` does.
        loaded.unloaded ??= left.why;
        loaded.unloadedKind ??= left.kind;
        loaded.unloadedCode ??= left.code;
      } else {
        entries.set(file.stem, {
          fileName: file.fileName,
          ref: undefined,
          hash: '',
          unloaded: left.why,
          unloadedKind: left.kind,
          ...(left.code === undefined ? {} : { unloadedCode: left.code }),
        });
      }
      changed.add(collection);
    }
    return changed;
  }

  /** An item's problem: reported to the listeners (no log line) and counted into `problems`. */
  private note(
    kind: UnloadedKind | 'quarantined',
    collection: string,
    id: string,
    error: PersistenceError,
  ): void {
    this.report(error, false);
    this.problems.add(kind, collection, id, error);
  }
}

/** The id of an item file and the error context of a problem loading it. */
function loadContext(collection: string, file: ItemFile, cause: unknown) {
  const itemId = decodeStem(file.stem) ?? file.stem;
  return {
    itemId,
    context: { operation: 'load' as const, adapter: collection, itemId, path: file.path, cause },
  };
}

/**
 * Hands an adapter the items a load read and counts them in `meta`. When its `restore()` fails,
 * memory and storage differ: every entry is marked unloaded, so no save overwrites or removes what
 * could not be loaded, and the failure (as `ADAPTER_FAILED`) is returned for the caller to report.
 */
export async function restoreLoaded(
  caller: AdapterCaller,
  adapter: PersistenceAdapter,
  values: ReadonlyMap<string, unknown>,
  committed: Map<string, CommittedEntry>,
  meta: LoadMetadata,
  operation: PersistenceOperation,
): Promise<PersistenceError | undefined> {
  try {
    await caller.restore(adapter, values, operation);
    meta.items += values.size;
    meta.adapters[adapter.name] = values.size;
    return undefined;
  } catch (error) {
    meta.skipped += values.size;
    meta.adapters[adapter.name] = 0;
    const failure =
      error instanceof PersistenceError
        ? error
        : new PersistenceError(
            PersistenceErrorCode.AdapterFailed,
            adapterFailed(adapter.name, 'restore', reasonOf(error)),
            { operation, adapter: adapter.name, cause: error },
          );
    const why = `adapter "${adapter.name}" failed to restore it`;
    for (const entry of committed.values()) {
      if (entry.unloaded !== undefined) continue;
      entry.unloaded = why;
      entry.unloadedCode = failure.code;
      entry.unloadedKind = 'restore-failed';
    }
    return failure;
  }
}

/**
 * An adapter whose `restore()` failed in a load: its error reported (no log line of its own) and
 * each of its items counted into `problems` as `'restore-failed'`.
 */
export function noteFailedRestore(
  problems: LoadProblems,
  adapter: string,
  committed: ReadonlyMap<string, CommittedEntry>,
  error: PersistenceError,
  report: (error: PersistenceError, log: boolean) => void,
): void {
  let first: PersistenceError | undefined = error;
  for (const [stem, entry] of committed) {
    if (entry.unloadedKind !== 'restore-failed') continue;
    problems.add('restore-failed', adapter, decodeStem(stem) ?? stem, first);
    first = undefined;
  }
  report(error, first !== undefined); // no item to count it with: a line of its own
}
