import { PersistenceFileSystem } from '../storage/file-system.interface';
import { FileSystemStorage } from '../storage/file-system.storage';
import { fsyncDirectory } from '../storage/fs.util';
import { Journal, JournalOp, readOpData } from '../storage/journal';
import { sealedSegmentPath } from '../storage/on-disk.names';
import { IoThrottle } from '../storage/map-limit.util';
import { ErrorReporter, wrapIo } from './error.reporter';

/**
 * Item files the background checkpoint writes at once while nothing waits for it, so the fsync of
 * a save committing meanwhile is not queued behind many of its own (measured on the medium tier:
 * the 1% save right after a full save, 11.5 ms with 16 at once, 6.5 ms with 4, 5.8 ms with 1). A
 * load, backup, restore, clear, `checkpoint()` or shutdown that waits for it lifts the limit.
 */
const BACKGROUND_CHECKPOINT_CONCURRENCY = 4;

/**
 * A sealed journal segment read into memory (its operations and size), waiting for (or in) the
 * background checkpoint.
 */
export interface PendingSegment {
  path: string;
  ops: JournalOp[];
  bytes: number;
}

/**
 * Checkpoint bookkeeping: what is committed in the journal but not yet in the item files (the
 * active journal's operations and the sealed segments), sealing the journal past
 * `checkpointBytes`, the background checkpoint of sealed segments, and the full checkpoint.
 */
export class JournalCheckpointer {
  /** Operations committed in the active journal, not yet checkpointed. */
  private pending: JournalOp[] = [];
  /** Sealed journal segments, oldest first, waiting for (or in) the background checkpoint. */
  private sealed: PendingSegment[] = [];
  /** Slows the background checkpoint while it runs alone; boosted when something waits for it. */
  private drainThrottle?: IoThrottle;
  /** Number of the next sealed segment. */
  private nextSegment = 1;
  /** The background checkpoint of the sealed segments, while it runs. */
  private draining?: Promise<void>;

  constructor(
    private readonly fs: PersistenceFileSystem,
    readonly journal: Journal,
    private readonly storage: FileSystemStorage,
    private readonly root: string,
    private readonly checkpointBytes: number,
    private readonly errors: ErrorReporter,
  ) {}

  /** Journal bytes and operations not yet in the item files (for the status). */
  get backlog(): { bytes: number; pendingItems: number } {
    return {
      bytes: this.journal.size + this.sealed.reduce((sum, s) => sum + s.bytes, 0),
      pendingItems: this.pending.length + this.sealed.reduce((sum, s) => sum + s.ops.length, 0),
    };
  }

  /** A sealed segment found at start-up (recovery), numbered `n`. */
  addSealed(segment: PendingSegment, n: number): void {
    this.sealed.push(segment);
    this.nextSegment = n + 1;
  }

  /** Operations just committed into the active journal. */
  committed(ops: readonly JournalOp[]): void {
    this.pending.push(...ops);
  }

  /** Forgets every commit not yet checkpointed: the folder they belonged to was removed. */
  async forget(): Promise<void> {
    this.pending = [];
    await this.backgroundDone();
    this.sealed = [];
  }

  /**
   * Every committed operation not yet in the item files, oldest first (sealed, then active), with
   * its bytes read back from the journal.
   */
  async uncheckpointed(): Promise<JournalOp[][]> {
    const segments = [...this.sealed.map((segment) => segment.ops), this.pending];
    return Promise.all(segments.map((ops) => readOpData(this.fs, ops)));
  }

  get hasBacklog(): boolean {
    return this.sealed.length > 0 || this.pending.length > 0;
  }

  /**
   * The full checkpoint: waits for the background checkpoint of the sealed segments (running it
   * again when it failed), then applies the active journal's records to the item files and empties
   * it. Runs on the queue only (load, backup, restore, clear, shutdown, `checkpoint()`).
   */
  async applyJournal(): Promise<void> {
    await this.backgroundDone();
    await this.drainSealed();
    if (this.pending.length === 0 && this.journal.size === 0) return;
    await this.storage.apply(this.pending);
    await this.journal.reset();
    this.pending = [];
  }

  /** Waits for the background checkpoint (if one runs), lifting its throttle: something needs it. */
  async backgroundDone(): Promise<void> {
    this.drainThrottle?.boost();
    await this.draining?.catch(() => undefined);
  }

  /**
   * Writes the sealed segments into the item files, oldest first, one at a time. A segment is
   * removed (and the removal fsynced) only once every item it holds is durably in its file, and
   * before anything newer is applied: whatever a crash leaves, replaying the remaining segments then
   * the active journal gives the same files.
   */
  private drainSealed(): Promise<void> {
    if (this.draining) return this.draining;
    const throttle = new IoThrottle(BACKGROUND_CHECKPOINT_CONCURRENCY);
    this.drainThrottle = throttle;
    const run = (async () => {
      await Promise.resolve(); // `draining` is set before the first segment starts
      while (this.sealed.length > 0) {
        const segment = this.sealed[0];
        await this.storage.apply(segment.ops, throttle);
        await this.fs.unlink(segment.path).catch((error: unknown) => {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        });
        await fsyncDirectory(this.fs, this.root);
        this.sealed.shift();
      }
    })().finally(() => {
      if (this.draining === run) this.draining = undefined;
      if (this.drainThrottle === throttle) this.drainThrottle = undefined;
    });
    this.draining = run;
    return run;
  }

  /**
   * Seals the active journal once it passes `checkpointBytes` and checkpoints the sealed segment in
   * the background, off the queue: the next save commits into a new journal without waiting. A
   * failure is reported; the commits stay in the journal and the next checkpoint writes them.
   */
  async rotateJournal(): Promise<void> {
    if (this.journal.size === 0 || this.journal.size < this.checkpointBytes) return;
    const path = sealedSegmentPath(this.journal.path, this.nextSegment);
    const bytes = this.journal.size;
    try {
      await this.journal.rotate(path);
    } catch (error) {
      this.errors.report(
        wrapIo('checkpoint', 'seal the journal', this.journal.path, error),
        'checkpoint',
      );
      return;
    }
    this.nextSegment++;
    this.sealed.push({ path, ops: this.pending, bytes });
    this.pending = [];
    if (!this.draining) {
      this.drainSealed().catch((error: unknown) => {
        this.errors.report(wrapIo('checkpoint', 'checkpoint', this.root, error), 'checkpoint');
      });
    }
  }
}
