import {
  CommitResult,
  ConflictPolicy,
  DriverChange,
  StorageDriver,
} from '../interfaces/storage-driver.interface';
import { parseItemFileName } from '../storage/file-system.storage';
import { JournalOp } from '../storage/journal';
import { BufferedCommitSession, CommitSession, CommitSink } from './commit.sink';
import { CommittedIndex } from './committed.index';

/**
 * The commit of a save on a storage driver: the writer's item-file operations become one
 * `driver.commit()`. An item is keyed by its file-name stem (its id for ids of `[a-z0-9._-]`), so
 * the removal of an older format's file of the same item folds into the write of the new one. Each
 * change carries the revision the item was loaded or last written with (the committed index, read
 * before the writer updates it).
 */
export class DriverCommitSink implements CommitSink {
  /** The last commit's changes and result, taken by the store once the writer returns. */
  last?: { changes: DriverChange[]; result: CommitResult };

  constructor(
    private readonly driver: StorageDriver,
    private readonly index: CommittedIndex,
    private readonly conflicts: ConflictPolicy,
    private readonly extension: () => string,
  ) {}

  get path(): string {
    return this.driver.location;
  }

  begin(): CommitSession {
    return new BufferedCommitSession((ops) => this.append(ops));
  }

  async append(ops: JournalOp[]): Promise<void> {
    this.last = undefined;
    const changes = new Map<string, DriverChange>();
    for (const op of ops) {
      const stem = parseItemFileName(op.fileName, this.extension())?.stem ?? op.fileName;
      const key = `${op.collection}/${stem}`;
      if (!op.data && changes.has(key)) continue; // an older file of an item written here
      changes.set(key, {
        collection: op.collection,
        id: stem,
        data: op.data ?? null,
        expectedRevision: this.index.get(op.collection)?.get(stem)?.revision ?? null,
      });
    }
    const list = [...changes.values()];
    const result = await this.driver.commit(list, { conflicts: this.conflicts });
    this.last = { changes: list, result };
  }
}
