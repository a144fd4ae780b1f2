import { Backend } from './backend.interface';
import { ConfBackend } from './conf.backend';
import { LowdbBackend } from './lowdb.backend';
import { PerFileBackend } from './per-file.backend';
import { SqliteBackend } from './sqlite.backend';

/** The storages compared with ours, by name, in table order. */
export const COMPARATORS = ['sqlite', 'lowdb', 'conf', 'files-raw', 'files-durable'] as const;
export type ComparatorName = (typeof COMPARATORS)[number];

export function createComparator(name: ComparatorName): Backend {
  switch (name) {
    case 'sqlite':
      return new SqliteBackend();
    case 'lowdb':
      return new LowdbBackend();
    case 'conf':
      return new ConfBackend();
    case 'files-raw':
      return new PerFileBackend(false);
    case 'files-durable':
      return new PerFileBackend(true);
  }
}
