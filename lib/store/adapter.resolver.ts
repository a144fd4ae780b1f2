import { ModuleRef } from '@nestjs/core';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import {
  PersistenceAdapter,
  PersistenceAdapterRef,
} from '../interfaces/persistence-adapter.interface';
import { adapterUnresolvable, duplicateAdapter, invalidAdapter } from '../persistence.messages';

/** What an adapter's name (its folder) may be. */
export const ADAPTER_NAME = /^[a-z][a-z0-9_-]{0,63}$/;

const invalid = (message: string): PersistenceError =>
  new PersistenceError(PersistenceErrorCode.InvalidAdapter, message, { operation: 'init' });

/**
 * Turns the `adapters` option into instances: a class is taken from the application's providers when
 * registered there (so its dependencies come from its own module), else created in this module's
 * scope. Checks each one's shape and that names are safe folder names and unique.
 */
export async function resolveAdapters(
  moduleRef: ModuleRef,
  builtIn: readonly PersistenceAdapter[],
  refs: readonly PersistenceAdapterRef[],
): Promise<PersistenceAdapter[]> {
  const adapters = [...builtIn];
  for (const ref of refs) {
    let adapter: unknown = ref;
    if (typeof ref === 'function') {
      try {
        adapter = moduleRef.get(ref, { strict: false });
      } catch {
        try {
          adapter = await moduleRef.create(ref);
        } catch (error) {
          throw new PersistenceError(
            PersistenceErrorCode.InvalidAdapter,
            adapterUnresolvable(ref.name),
            {
              operation: 'init',
              cause: error,
            },
          );
        }
      }
    }
    adapters.push(assertAdapter(adapter, typeof ref === 'function' ? ref.name : 'object'));
  }
  const names = new Set<string>();
  for (const adapter of adapters) {
    if (names.has(adapter.name)) throw invalid(duplicateAdapter(adapter.name));
    names.add(adapter.name);
  }
  return adapters;
}

function assertAdapter(value: unknown, label: string): PersistenceAdapter {
  const adapter = value as Partial<PersistenceAdapter> | null;
  if (
    typeof adapter !== 'object' ||
    adapter === null ||
    typeof adapter.snapshot !== 'function' ||
    typeof adapter.restore !== 'function'
  ) {
    throw invalid(
      invalidAdapter(
        label,
        'does not implement PersistenceAdapter: it needs name, snapshot() and restore().',
      ),
    );
  }
  if (typeof adapter.name !== 'string' || !ADAPTER_NAME.test(adapter.name)) {
    throw invalid(
      invalidAdapter(
        `${label} (name ${JSON.stringify(adapter.name)})`,
        'needs a name of 1-64 lower-case letters, digits, "-" or "_", starting with a letter: it becomes a folder name.',
      ),
    );
  }
  return adapter as PersistenceAdapter;
}
