import { Item } from './workload';

/** A storage to compare with: what an application would write, per save, with it. */
export interface Backend {
  /** Name in the tables, e.g. `sqlite`. */
  readonly name: string;
  /** One line on what a save and a load do. */
  readonly description: string;
  /** Opens (creates) the storage in an empty folder. */
  open(dir: string): Promise<void>;
  /** One save: all items for a full save, the changed ones otherwise, none when nothing changed. */
  save(items: Item[]): Promise<void>;
  /** A copy of the saved state into the empty folder `destination`. */
  backup(destination: string): Promise<void>;
  close(): Promise<void>;
  /** In a fresh process: reads everything the storage in `dir` holds. */
  load(dir: string): Promise<Array<[string, string, unknown]>>;
}
