import { findNonJsonData } from '../adapters/json-data.util';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import { PersistenceAdapter } from '../interfaces/persistence-adapter.interface';
import {
  invalidMigrations,
  invalidSchemaVersion,
  itemFromNewerVersion,
  migrationFailed,
  missingMigration,
  reasonOf,
  strayMigration,
} from '../persistence.messages';
import { ItemEnvelope } from '../serializers/item-file.codec';
import type { AdapterCaller } from './adapter.caller';

/**
 * Internal marker of an adapter that carries items of any schema version as they are (the CLI's
 * generic adapter): nothing is migrated or refused; the map holds each item's schema version, which
 * loading fills and saving writes back.
 */
export const SCHEMA_PASS_THROUGH = Symbol('nestjs-persistence:schema-pass-through');

/** An adapter with the {@link SCHEMA_PASS_THROUGH} marker. */
export interface SchemaPassThrough {
  readonly [SCHEMA_PASS_THROUGH]: Map<string, number>;
}

const passThroughOf = (adapter: PersistenceAdapter): Map<string, number> | undefined =>
  (adapter as Partial<SchemaPassThrough>)[SCHEMA_PASS_THROUGH];

/** The schema version an item is written with: its adapter's `version`, or 1. */
export const schemaVersionOf = (adapter: PersistenceAdapter, id?: string): number => {
  const passThrough = passThroughOf(adapter);
  if (passThrough) return (id === undefined ? undefined : passThrough.get(id)) ?? 1;
  return adapter.version ?? 1;
};

/** The schema version an item file was written with: its `sv`, or 1 (files from before `sv`). */
export const storedSchemaVersion = (envelope: ItemEnvelope): number => envelope.sv ?? 1;

/**
 * What is wrong with an adapter's `version` and `migrations` (a message to follow its name), or
 * `undefined`: the version is a positive integer and there is exactly one function for each step
 * 2..version.
 */
export function findMigrationProblem(adapter: PersistenceAdapter): string | undefined {
  const version: unknown = adapter.version;
  if (version !== undefined && (!Number.isSafeInteger(version) || (version as number) < 1)) {
    return invalidSchemaVersion(version);
  }
  const current = (version as number | undefined) ?? 1;
  const migrations: unknown = adapter.migrations;
  if (migrations === undefined) {
    return current > 1 ? missingMigration(current, 2) : undefined;
  }
  if (typeof migrations !== 'object' || migrations === null || Array.isArray(migrations)) {
    return invalidMigrations(migrations);
  }
  const table = migrations as Record<string, unknown>;
  for (let step = 2; step <= current; step++) {
    if (typeof table[step] !== 'function') return missingMigration(current, step);
  }
  for (const key of Object.keys(table)) {
    const step = Number(key);
    if (!(Number.isSafeInteger(step) && String(step) === key && step >= 2 && step <= current)) {
      return strayMigration(current, key);
    }
  }
  return undefined;
}

/** A migration step threw (or returned a Promise), or `revive()` rejected what the migrations made. */
export class MigrationError extends Error {
  constructor(
    readonly id: string,
    readonly from: number,
    readonly to: number,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`its migration from schema version ${from} to ${to} failed: ${reason}`, options);
  }
}

/** An item written with a schema version higher than its adapter's. */
export class NewerSchemaError extends Error {
  constructor(
    readonly id: string,
    readonly stored: number,
    readonly known: number,
  ) {
    super(`it was written with schema version ${stored}; this code knows ${known}`);
  }
}

/**
 * Turns a stored envelope into the adapter's value: the migrations from the stored schema version
 * to the adapter's (each step's output fed to the next), then `revive()`, all inside the adapter's
 * context. `migrated` tells that the value is not what its file holds (the next save rewrites it).
 * Throws {@link NewerSchemaError} for an item from a newer version and {@link MigrationError} when a
 * migration fails (or `revive()` rejects its result); an error of `revive()` on an item that needed
 * no migration is thrown as it is (the file is not a valid item).
 */
export function reviveStored(
  caller: AdapterCaller,
  adapter: PersistenceAdapter,
  envelope: ItemEnvelope,
): { value: unknown; migrated: boolean } {
  const stored = storedSchemaVersion(envelope);
  const passThrough = passThroughOf(adapter);
  if (passThrough) {
    passThrough.set(envelope.id, stored);
    return { value: caller.revive(adapter, envelope.data, envelope.id), migrated: false };
  }
  const current = schemaVersionOf(adapter);
  if (stored > current) throw new NewerSchemaError(envelope.id, stored, current);
  if (stored === current) {
    return { value: caller.revive(adapter, envelope.data, envelope.id), migrated: false };
  }
  const migrated = caller.migrate(adapter, envelope.data, envelope.id, stored, current);
  const revive = typeof adapter.revive === 'function';
  // What a migration returns stands for what the file would hold (JSON data; objects with a
  // toJSON() too when revive() rebuilds them), and the value the adapter gets back must be storable
  // as any value it saves: otherwise the item would be handed over broken and fail every save.
  const notData = nonJsonProblem(migrated, revive, 'the migrated item');
  if (notData) {
    throw new MigrationError(
      envelope.id,
      stored,
      current,
      `it did not return JSON data: ${notData}`,
    );
  }
  let value: unknown;
  try {
    value = caller.revive(adapter, migrated, envelope.id);
  } catch (error) {
    throw new MigrationError(
      envelope.id,
      stored,
      current,
      `revive() rejected the migrated item: ${reasonOf(error)}`,
      { cause: error },
    );
  }
  const notStorable = revive ? nonJsonProblem(value, true, 'what revive() returned') : undefined;
  if (notStorable) {
    throw new MigrationError(
      envelope.id,
      stored,
      current,
      `revive() made an item that cannot be saved: ${notStorable}`,
    );
  }
  return { value, migrated: true };
}

/** What JSON cannot carry exactly in `value` (the rule of saves), as one phrase; undefined: none. */
function nonJsonProblem(value: unknown, allowToJSON: boolean, path: string): string | undefined {
  let found;
  try {
    found = findNonJsonData(value, { allowToJSON, path });
  } catch (error) {
    return `${path} could not be checked: ${reasonOf(error)}`; // a toJSON() or a Proxy trap threw
  }
  return found && `${found.path} ${found.problem}`;
}

/**
 * A load failure caused by schema versions, as the error to report and why the file stays in place
 * unloaded; `undefined` for any other failure.
 */
export function schemaFailure(
  adapter: string,
  path: string,
  cause: unknown,
): { error: PersistenceError; why: string; kind: 'migration-failed' | 'newer-schema' } | undefined {
  const context = { operation: 'load' as const, adapter, path, cause };
  if (cause instanceof MigrationError) {
    return {
      error: new PersistenceError(
        PersistenceErrorCode.MigrationFailed,
        migrationFailed(adapter, cause.id, cause.from, cause.to, path, cause.reason),
        { ...context, itemId: cause.id },
      ),
      why: `its migration from schema version ${cause.from} to ${cause.to} failed: ${cause.reason}`,
      kind: 'migration-failed',
    };
  }
  if (cause instanceof NewerSchemaError) {
    return {
      error: new PersistenceError(
        PersistenceErrorCode.ItemFromNewerVersion,
        itemFromNewerVersion(adapter, cause.id, cause.stored, cause.known, path),
        { ...context, itemId: cause.id },
      ),
      why: `it was written by a newer version of the application (schema ${cause.stored}, this code knows ${cause.known})`,
      kind: 'newer-schema',
    };
  }
  return undefined;
}
