import type { EventEmitter2 } from '@nestjs/event-emitter';
import { Observable, Subject } from 'rxjs';
import {
  PersistenceErrorRecord,
  PersistenceEvent,
} from '../interfaces/persistence-event.interface';
import {
  LoadMetadata,
  PersistenceConflictEvent,
  PersistenceErrorEvent,
  SaveMetadata,
} from '../interfaces/persistence-metadata.interface';
import { reasonOf } from '../persistence.messages';
import { PersistenceEvents } from './persistence-events.enum';
import { PersistenceLogger } from './persistence.logger';

type Listener<T> = (payload: T) => unknown;

const EVENT_TYPES = {
  [PersistenceEvents.Saved]: 'saved',
  [PersistenceEvents.Loaded]: 'loaded',
  [PersistenceEvents.Error]: 'error',
  [PersistenceEvents.Conflict]: 'conflict',
} as const;

/**
 * Delivers save/load/error notifications to the store's callbacks, to EventEmitter2 and to `events$`.
 * A callback or `@OnEvent` listener that throws or rejects is logged and never reaches the save or the
 * auto-save loop. Also remembers the last error and the last successful save, for health checks.
 */
export class PersistenceNotifier {
  private readonly listeners = {
    [PersistenceEvents.Saved]: new Set<Listener<SaveMetadata>>(),
    [PersistenceEvents.Loaded]: new Set<Listener<LoadMetadata>>(),
    [PersistenceEvents.Error]: new Set<Listener<PersistenceErrorEvent>>(),
    [PersistenceEvents.Conflict]: new Set<Listener<PersistenceConflictEvent>>(),
  };

  /** Emitter events held back until `@OnEvent` listeners are wired (see {@link holdEmitterUntil}). */
  private held: Array<[PersistenceEvents, unknown]> | undefined;

  private readonly subject = new Subject<PersistenceEvent>();

  /** Every event, in order; completes on {@link complete}. Delivered when the emitter's are. */
  readonly events$: Observable<PersistenceEvent> = this.subject.asObservable();

  /** The last error reported, if any. */
  lastError: PersistenceErrorRecord | undefined;

  /** True when an error was reported after the last successful save (or before any). */
  errorSinceSave = false;

  constructor(
    private readonly emitter: EventEmitter2 | undefined,
    private readonly logger: PersistenceLogger = new PersistenceLogger(),
  ) {}

  /** Sends the events still held, then completes `events$` (the store has closed). */
  complete(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const [event, payload] of held) this.emit(event, payload);
    this.subject.complete();
  }

  /**
   * `@nestjs/event-emitter` wires `@OnEvent` handlers at application bootstrap, after the store has
   * loaded: events of the boot load wait until `ready` settles, then go out in order. Callbacks are
   * not held.
   */
  holdEmitterUntil(ready: Promise<unknown>): void {
    this.held ??= [];
    const release = (): void => {
      const held = this.held ?? [];
      this.held = undefined;
      for (const [event, payload] of held) this.emit(event, payload);
    };
    ready.then(release, release);
  }

  on(event: PersistenceEvents.Saved, listener: Listener<SaveMetadata>): () => void;
  on(event: PersistenceEvents.Loaded, listener: Listener<LoadMetadata>): () => void;
  on(event: PersistenceEvents.Error, listener: Listener<PersistenceErrorEvent>): () => void;
  on(event: PersistenceEvents.Conflict, listener: Listener<PersistenceConflictEvent>): () => void;
  on(event: PersistenceEvents, listener: Listener<never>): () => void {
    const set = this.listeners[event] as Set<Listener<never>>;
    set.add(listener);
    return () => {
      set.delete(listener);
    };
  }

  saved(meta: SaveMetadata): void {
    this.errorSinceSave = false;
    this.deliver(PersistenceEvents.Saved, meta);
  }

  loaded(meta: LoadMetadata): void {
    this.deliver(PersistenceEvents.Loaded, meta);
  }

  conflict(event: PersistenceConflictEvent): void {
    this.deliver(PersistenceEvents.Conflict, event);
  }

  /**
   * Reports an error to every listener. `log: false` for a problem that is counted into a summary
   * line instead (an item a load could not use: one line per kind of problem, not one per item).
   */
  error(event: PersistenceErrorEvent, log = true): void {
    if (log) this.logger.error(event.error.message);
    this.lastError = {
      code: event.error.code,
      message: event.error.message,
      operation: event.operation,
      adapter: event.adapter,
      itemId: event.itemId,
      path: event.path,
      timestamp: new Date(),
    };
    this.errorSinceSave = true;
    this.deliver(PersistenceEvents.Error, event);
  }

  private deliver<T>(event: PersistenceEvents, payload: T): void {
    for (const listener of this.listeners[event] as Set<Listener<T>>) {
      this.guard(event, () => listener(payload));
    }
    if (this.held) {
      this.held.push([event, payload]);
    } else {
      this.emit(event, payload);
    }
  }

  private emit(event: PersistenceEvents, payload: unknown): void {
    if (this.emitter) {
      this.guard(event, () => this.emitter?.emit(event, payload));
    }
    // A subscriber that throws is rxjs's to report (as an unhandled error), not the save's.
    this.subject.next({ type: EVENT_TYPES[event], payload } as PersistenceEvent);
  }

  private guard(event: string, call: () => unknown): void {
    const report = (error: unknown): void =>
      this.logger.error(`A listener of ${event} failed: ${reasonOf(error)}`);
    try {
      const result = call();
      if (result instanceof Promise) {
        result.catch(report);
      }
    } catch (error) {
      report(error);
    }
  }
}
