import { ITEM_FILE_VERSION } from '../persistence.constants';
import { ADAPTER_NAME } from '../store/adapter.resolver';
import { assertValidId } from '../storage/file-name.codec';
import { CliError } from './cli.error';
import { invalidDocument } from './cli.messages';

/** The `format` field of an export document. */
export const EXPORT_FORMAT = 'nestjs-persistence-export';

/** Version of the export document's layout. */
export const EXPORT_VERSION = 1;

/**
 * The whole state of a store as one JSON document: each item's data exactly as its file holds it
 * (the envelope's `data`), by collection and id.
 */
export interface ExportDocument {
  format: typeof EXPORT_FORMAT;
  /** Layout of this document. */
  version: number;
  /** Envelope version of the items' data (`v` in the item files). */
  itemVersion: number;
  exportedAt: string;
  /** Absolute path of the store it was exported from. */
  source: string;
  /** `{ collection: { id: data } }`. */
  collections: Record<string, Record<string, unknown>>;
  /**
   * `{ collection: { id: sv } }`: the schema version of each item above version 1 (`sv` in its
   * file). Absent when every item is at version 1; an item not listed is at version 1.
   */
  schemaVersions?: Record<string, Record<string, number>>;
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** Builds a document; ids are sorted so two exports of one state are identical but for the time. */
export function createExportDocument(
  source: string,
  collections: ReadonlyMap<string, ReadonlyMap<string, unknown>>,
  schemaVersions: ReadonlyMap<string, ReadonlyMap<string, number>> = new Map(),
): ExportDocument {
  const versions = [...schemaVersions]
    .filter(([, byId]) => byId.size > 0)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, byId]) => [name, Object.fromEntries(sortById(byId))] as const);
  return {
    format: EXPORT_FORMAT,
    version: EXPORT_VERSION,
    itemVersion: ITEM_FILE_VERSION,
    exportedAt: new Date().toISOString(),
    source,
    collections: Object.fromEntries(
      [...collections].map(([name, items]) => [
        name,
        // fromEntries defines own properties, so an id such as "__proto__" stays an ordinary key.
        Object.fromEntries(sortById(items)),
      ]),
    ),
    ...(versions.length > 0 ? { schemaVersions: Object.fromEntries(versions) } : {}),
  };
}

const sortById = <T>(items: ReadonlyMap<string, T>): Array<[string, T]> =>
  [...items].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

/** Parses and checks a document; throws a `CliError` naming the first problem. */
export function parseExportDocument(text: string, file: string): ExportDocument {
  const fail = (problem: string): never => {
    throw new CliError(invalidDocument(file, problem));
  };
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    return fail(`it is not valid JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  if (!isObject(doc) || doc.format !== EXPORT_FORMAT) {
    return fail(`it has no "format": "${EXPORT_FORMAT}"`);
  }
  if (typeof doc.version !== 'number' || doc.version > EXPORT_VERSION) {
    return fail(`its version ${String(doc.version)} is not supported by this release`);
  }
  if (typeof doc.itemVersion !== 'number' || doc.itemVersion > ITEM_FILE_VERSION) {
    return fail(`its item version ${String(doc.itemVersion)} is not supported by this release`);
  }
  if (!isObject(doc.collections)) return fail('"collections" is not an object');
  for (const [name, items] of Object.entries(doc.collections)) {
    if (!ADAPTER_NAME.test(name)) {
      fail(`collection name ${JSON.stringify(name)} is not a valid folder name`);
    }
    if (!isObject(items)) fail(`collection "${name}" is not an object of items by id`);
    for (const id of Object.keys(items as Record<string, unknown>)) {
      try {
        assertValidId(id);
      } catch (error) {
        fail(`in "${name}": ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  }
  if (doc.schemaVersions !== undefined) {
    if (!isObject(doc.schemaVersions)) return fail('"schemaVersions" is not an object');
    for (const [name, byId] of Object.entries(doc.schemaVersions)) {
      const items = doc.collections[name];
      if (!isObject(byId) || !isObject(items)) {
        fail(`"schemaVersions" names collection "${name}", which is not in "collections"`);
      }
      for (const [id, sv] of Object.entries(byId as Record<string, unknown>)) {
        if (!Object.prototype.hasOwnProperty.call(items, id)) {
          fail(
            `"schemaVersions" of "${name}" names item ${JSON.stringify(id)}, which is not there`,
          );
        }
        if (!Number.isSafeInteger(sv) || (sv as number) < 1) {
          fail(`schema version of "${name}" item ${JSON.stringify(id)} is not a positive integer`);
        }
      }
    }
  }
  return doc as unknown as ExportDocument;
}
