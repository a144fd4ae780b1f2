import { JournalOp } from '../storage/journal';

/**
 * One commit being assembled: the writer adds each op as soon as it has it (a file sink writes its
 * bytes right away), then commits them all at once, or aborts and nothing is committed.
 */
export interface CommitSession {
  /** Number of ops added. */
  readonly size: number;
  add(op: JournalOp): Promise<void>;
  /** Remembers the ops added so far, for `rollback`. */
  savepoint(): Promise<void>;
  /** Drops the ops added since the last `savepoint`. */
  rollback(): Promise<void>;
  /** Commits every op added atomically; rejects when nothing (or, lost answer, maybe all) was. */
  commit(): Promise<unknown>;
  /** Commits nothing. */
  abort(): Promise<void>;
}

/**
 * Where the snapshot writer commits a save: the changed and removed item files of the save, as one
 * batch that is applied whole or not at all. On the file system it is the journal (one appended,
 * fsynced record, streamed as the items are serialized); with a storage driver, a `DriverCommitSink`
 * (one `driver.commit()` with every change, gathered by a {@link BufferedCommitSession}).
 */
export interface CommitSink {
  /** Where the commit goes, for messages. */
  readonly path: string;
  /** Starts a commit. */
  begin(): CommitSession;
}

/** A session that keeps every op in memory and hands them to `commit` at once. */
export class BufferedCommitSession implements CommitSession {
  private readonly ops: JournalOp[] = [];
  private saved = 0;

  constructor(private readonly commitAll: (ops: JournalOp[]) => Promise<unknown>) {}

  get size(): number {
    return this.ops.length;
  }

  add(op: JournalOp): Promise<void> {
    this.ops.push(op);
    return Promise.resolve();
  }

  savepoint(): Promise<void> {
    this.saved = this.ops.length;
    return Promise.resolve();
  }

  rollback(): Promise<void> {
    this.ops.length = this.saved;
    return Promise.resolve();
  }

  commit(): Promise<unknown> {
    return this.ops.length > 0 ? this.commitAll(this.ops) : Promise.resolve();
  }

  abort(): Promise<void> {
    return Promise.resolve();
  }
}
