import { JournalOp } from '../storage/journal';

/**
 * Where the snapshot writer commits a save: the changed and removed item files of the save, as one
 * batch that is applied whole or not at all. On the file system it is the journal (one appended,
 * fsynced record); with a storage driver, a `DriverCommitSink` (one `driver.commit()`).
 */
export interface CommitSink {
  /** Where the commit goes, for messages. */
  readonly path: string;
  /** Commits `ops` atomically; rejects when nothing (or, lost answer, maybe all) was committed. */
  append(ops: JournalOp[]): Promise<unknown>;
}
