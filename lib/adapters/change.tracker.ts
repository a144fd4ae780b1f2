import { Observable, Subject } from 'rxjs';
import { PersistenceChange, PersistenceChanges } from '../interfaces/persistence-adapter.interface';

/**
 * The ids a manager changed or deleted since its last durable save, and the stream of its change
 * notices. Each change gets a number; `committed(token)` forgets an id only when it has not changed
 * again since the `changes()` call that produced the token, so a change made while a save runs, or
 * included in a save that failed, is reported again at the next save.
 */
export class ChangeTracker<T> {
  private readonly dirty = new Map<string, number>();
  private sequence = 0;
  private readonly notices = new Subject<PersistenceChange>();
  /** A notice for every change, as it happens. */
  readonly changes$: Observable<PersistenceChange> = this.notices.asObservable();

  constructor(private readonly adapter: string) {}

  changed(id: string): void {
    this.mark(id, 'changed');
  }

  deleted(id: string): void {
    this.mark(id, 'deleted');
  }

  /** The changes since the last committed token, with each changed item's current value. */
  changes(items: ReadonlyMap<string, T>): PersistenceChanges<T> {
    const changed = new Map<string, T>();
    const deleted: string[] = [];
    for (const id of this.dirty.keys()) {
      const value = items.get(id);
      if (value !== undefined) changed.set(id, value);
      else deleted.push(id);
    }
    return { changed, deleted, token: new Map(this.dirty) };
  }

  /** Forgets the changes of a `changes()` result once they are durable; later ones stay. */
  committed(token: unknown): void {
    if (!(token instanceof Map)) return;
    for (const [id, sequence] of token as Map<string, number>) {
      if (this.dirty.get(id) === sequence) this.dirty.delete(id);
    }
  }

  /** The whole state was replaced by the saved one (a load): nothing is unsaved. */
  reset(): void {
    this.dirty.clear();
  }

  private mark(id: string, kind: PersistenceChange['kind']): void {
    this.dirty.set(id, ++this.sequence);
    this.notices.next({ adapter: this.adapter, id, kind });
  }
}
