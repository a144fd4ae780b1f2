import { Logger } from '@nestjs/common';
import type { EventEmitter2 } from '@nestjs/event-emitter';
import {
  LoadMetadata,
  PersistenceErrorEvent,
  SaveMetadata,
} from '../interfaces/persistence-metadata.interface';
import { PERSISTENCE_LOGGER_CONTEXT } from '../persistence.constants';
import { reasonOf } from '../persistence.messages';
import { PersistenceEvents } from './persistence-events.enum';

type Listener<T> = (payload: T) => unknown;

/**
 * Delivers save/load/error notifications to the store's callbacks and to EventEmitter2. A listener that
 * throws or rejects is logged and never reaches the save or the auto-save loop.
 */
export class PersistenceNotifier {
  private readonly logger = new Logger(PERSISTENCE_LOGGER_CONTEXT);
  private readonly listeners = {
    [PersistenceEvents.Saved]: new Set<Listener<SaveMetadata>>(),
    [PersistenceEvents.Loaded]: new Set<Listener<LoadMetadata>>(),
    [PersistenceEvents.Error]: new Set<Listener<PersistenceErrorEvent>>(),
  };

  /** Emitter events held back until `@OnEvent` listeners are wired (see {@link holdEmitterUntil}). */
  private held: Array<[PersistenceEvents, unknown]> | undefined;

  constructor(private readonly emitter: EventEmitter2 | undefined) {}

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
  on(event: PersistenceEvents, listener: Listener<never>): () => void {
    const set = this.listeners[event] as Set<Listener<never>>;
    set.add(listener);
    return () => {
      set.delete(listener);
    };
  }

  saved(meta: SaveMetadata): void {
    this.deliver(PersistenceEvents.Saved, meta);
  }

  loaded(meta: LoadMetadata): void {
    this.deliver(PersistenceEvents.Loaded, meta);
  }

  error(event: PersistenceErrorEvent): void {
    this.logger.error(event.error.message);
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
