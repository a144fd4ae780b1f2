import { ModuleRef } from '@nestjs/core';
import { getPersistedStateMetadata } from '../decorators/persisted-state.decorator';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import {
  PersistenceAdapter,
  PersistenceAdapterRef,
} from '../interfaces/persistence-adapter.interface';
import {
  adapterNameMismatch,
  adapterNameMissing,
  adapterUnresolvable,
  duplicateAdapter,
  invalidAdapter,
} from '../persistence.messages';
import { ResolvedPersistenceOptions } from '../interfaces/persistence-module-options.interface';
import { PersistenceAdapterExplorer } from './adapter.explorer';
import { findMigrationProblem } from './schema.migrator';

/** What an adapter's name (its folder) may be. */
export const ADAPTER_NAME = /^[a-z][a-z0-9_-]{0,63}$/;

const invalid = (message: string, cause?: unknown): PersistenceError =>
  new PersistenceError(PersistenceErrorCode.InvalidAdapter, message, { operation: 'init', cause });

/** An adapter found for the store, and where it was registered (for error messages). */
export interface AdapterCandidate {
  instance: unknown;
  /** The class name, or "object" for an instance given in the `adapters` option. */
  label: string;
  /** Where it was registered: `in CartModule`, `in the "adapters" option`, … */
  where: string;
}

/**
 * The `adapters` option: a class must be a provider of some module (it is taken from there, with
 * the dependencies of its module); an object is used as it is.
 */
export function candidatesFromOption(
  moduleRef: ModuleRef,
  refs: readonly PersistenceAdapterRef[],
): AdapterCandidate[] {
  return refs.map((ref) => {
    if (typeof ref !== 'function') {
      return { instance: ref, label: 'object', where: 'in the "adapters" option' };
    }
    let instance: unknown;
    try {
      instance = moduleRef.get(ref, { strict: false });
    } catch (error) {
      throw invalid(adapterUnresolvable(ref.name), error);
    }
    return { instance, label: ref.name, where: 'in the "adapters" option' };
  });
}

/**
 * Checks every candidate (shape, name: given by `@PersistedState()` or the class, a safe folder name,
 * unique) and returns the adapters in order. The same instance found twice (decorated and listed in
 * the option, say) counts once.
 */
export function resolveAdapters(candidates: readonly AdapterCandidate[]): PersistenceAdapter[] {
  const seen = new Set<unknown>();
  const byName = new Map<string, AdapterCandidate>();
  const adapters: PersistenceAdapter[] = [];
  for (const candidate of candidates) {
    if (seen.has(candidate.instance)) continue;
    seen.add(candidate.instance);
    const adapter = assertAdapter(candidate);
    const other = byName.get(adapter.name);
    if (other) {
      throw invalid(duplicateAdapter(adapter.name, describe(other), describe(candidate)));
    }
    byName.set(adapter.name, candidate);
    adapters.push(adapter);
  }
  return adapters;
}

const describe = (candidate: AdapterCandidate): string => `${candidate.label} (${candidate.where})`;

function assertAdapter(candidate: AdapterCandidate): PersistenceAdapter {
  const what = describe(candidate);
  const adapter = candidate.instance as Partial<PersistenceAdapter> | null;
  if (
    typeof adapter !== 'object' ||
    adapter === null ||
    typeof adapter.snapshot !== 'function' ||
    typeof adapter.restore !== 'function'
  ) {
    throw invalid(
      invalidAdapter(
        what,
        'does not implement PersistenceAdapter: it needs name, snapshot() and restore().',
      ),
    );
  }
  const declared = getPersistedStateMetadata(adapter.constructor)?.name;
  if (declared !== undefined) {
    if (adapter.name === undefined) {
      Object.defineProperty(adapter, 'name', { value: declared, enumerable: true });
    } else if (adapter.name !== declared) {
      throw invalid(adapterNameMismatch(what, declared, adapter.name));
    }
  }
  if (adapter.name === undefined) {
    throw invalid(adapterNameMissing(what));
  }
  if (typeof adapter.name !== 'string' || !ADAPTER_NAME.test(adapter.name)) {
    throw invalid(
      invalidAdapter(
        `${what} (name ${JSON.stringify(adapter.name)})`,
        'needs a name of 1-64 lower-case letters, digits, "-" or "_", starting with a letter: it becomes a folder name.',
      ),
    );
  }
  const migrationProblem = findMigrationProblem(adapter as PersistenceAdapter);
  if (migrationProblem !== undefined) {
    throw invalid(invalidAdapter(`${what} (name "${adapter.name}")`, migrationProblem));
  }
  return adapter as PersistenceAdapter;
}

/** Every adapter the store persists: built-in, forFeature() and @PersistedState() ones, then the `adapters` option. */
export function resolveStoreAdapters(
  moduleRef: ModuleRef,
  options: Pick<ResolvedPersistenceOptions, 'builtInAdapters' | 'adapters'>,
): PersistenceAdapter[] {
  return resolveAdapters([
    ...moduleRef.get(PersistenceAdapterExplorer).explore(options.builtInAdapters),
    ...candidatesFromOption(moduleRef, options.adapters),
  ]);
}
