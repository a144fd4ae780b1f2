import type { PersistenceModuleOptions } from '../interfaces/persistence-module-options.interface';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import { unknownOption } from '../persistence.messages';

/**
 * Every key `forRoot()` knows, with the keys of its nested option objects. A key not listed here is
 * a typo (`fromat`) or an option of another version: ignoring it would start the store with the
 * default instead of what the application asked for. Objects whose keys are the user's own
 * (`encryption.keys`, a serializer, a driver, a backup target, adapters) are not looked into.
 */
const KNOWN_OPTIONS = {
  path: null,
  format: null,
  compressAbove: null,
  autoSave: ['interval', 'debounce', 'maxBackoffTicks'],
  loadOnBoot: null,
  saveOnShutdown: null,
  builtInAdapters: null,
  adapters: null,
  ioConcurrency: null,
  encryption: ['key', 'keys', 'current'],
  readOnly: null,
  checkpointBytes: null,
  adapterTimeout: null,
  limits: ['maxFileBytes', 'maxInflatedBytes'],
  fileMode: null,
  dirMode: null,
  backups: ['directory', 'cron', 'keep', 'target'],
  storage: null,
  conflicts: null,
  lock: ['leaseMs', 'renewMs'],
  onUnreadable: null,
  logger: null,
} satisfies Record<keyof PersistenceModuleOptions, readonly string[] | null>; // none left out
const KNOWN: Readonly<Record<string, readonly string[] | null>> = KNOWN_OPTIONS;

/** Accepted, never suggested: internal options (tests simulate other hosts with `lock.host`). */
const INTERNAL = new Set(['lock.host']);

/** Throws `PERSISTENCE_INVALID_OPTIONS` naming the first unknown key and the closest known one. */
export function assertKnownOptionKeys(options: object): void {
  const top = Object.keys(KNOWN);
  for (const key of Object.keys(options)) {
    const nested = KNOWN[key];
    if (!Object.prototype.hasOwnProperty.call(KNOWN, key)) refuse(key, top);
    const value = (options as Record<string, unknown>)[key];
    if (!nested || typeof value !== 'object' || value === null || Array.isArray(value)) continue;
    for (const inner of Object.keys(value)) {
      if (!nested.includes(inner) && !INTERNAL.has(`${key}.${inner}`)) {
        refuse(
          `${key}.${inner}`,
          nested.map((name) => `${key}.${name}`),
        );
      }
    }
  }
}

function refuse(option: string, known: readonly string[]): never {
  throw new PersistenceError(
    PersistenceErrorCode.InvalidOptions,
    unknownOption(option, closest(option, known), known),
    { operation: 'init' },
  );
}

/** The known name nearest to `name` by edit distance (ignoring case). */
function closest(name: string, known: readonly string[]): string {
  let best = known[0];
  let bestDistance = Infinity;
  for (const candidate of known) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/** Levenshtein distance, with a swap of two neighbouring letters counted as one edit. */
function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    rows.push([i]);
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        rows[0].push(j);
        continue;
      }
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let value = Math.min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        value = Math.min(value, rows[i - 2][j - 2] + 1);
      }
      rows[i].push(value);
    }
  }
  return rows[a.length][b.length];
}
