import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError, PersistenceOperation } from '../errors/persistence.error';
import { PersistenceAdapter } from '../interfaces/persistence-adapter.interface';
import { StoredRecord } from '../interfaces/storage-driver.interface';
import * as messages from '../persistence.messages';
import { ItemDecodeError, ItemFileCodec } from '../serializers/item-file.codec';
import { decodeStem } from '../storage/file-name.codec';
import { AdapterCaller } from './adapter.caller';
import { CommittedEntry, hashBytes, UnloadedKind } from './committed.index';
import { LoadProblems } from './load.problems';
import { DecodedRecord } from './remote.merger';
import { reviveStored, schemaFailure } from './schema.migrator';

/** What decoding a stored item needs from the store. */
export interface RecordDecoderHost {
  /** The driver's location, for messages. */
  location: string;
  caller(): AdapterCaller;
  /** Reports an error; `log: false` for an item's problem, which a load's summary counts. */
  fail(error: PersistenceError, operation: PersistenceOperation, log?: boolean): PersistenceError;
}

/**
 * Decodes an item of a storage driver like an item file (codec, migrations, `revive()`) into its
 * value and committed entry; what cannot be used is reported and comes back as an unloaded entry.
 */
export async function decodeStoredRecord(
  host: RecordDecoderHost,
  adapter: PersistenceAdapter,
  codec: ItemFileCodec,
  record: StoredRecord,
  operation: PersistenceOperation,
  problems?: LoadProblems,
): Promise<DecodedRecord | { unloaded: CommittedEntry }> {
  const fileName = record.id + codec.extension;
  const key = `${adapter.name}/${record.id}`;
  const where = `${host.location} ${key}`;
  try {
    const { envelope, plain, keyId } = await codec.decode(
      adapter.name,
      { stem: record.id, extension: codec.extension },
      record.data,
    );
    const { value, migrated } = reviveStored(host.caller(), adapter, envelope);
    return {
      id: envelope.id,
      value,
      entry: {
        fileName,
        ref: value,
        hash: migrated ? '' : hashBytes(plain),
        keyId,
        revision: record.revision,
        ...(migrated ? { migrated: true } : {}),
      },
    };
  } catch (cause) {
    const context = {
      operation,
      adapter: adapter.name,
      itemId: decodeStem(record.id) ?? record.id,
      path: where,
      cause,
    };
    const schema = schemaFailure(adapter.name, where, cause);
    let why: string;
    let kind: UnloadedKind;
    let error: PersistenceError;
    if (schema) {
      ({ error, why, kind } = schema);
    } else if (cause instanceof ItemDecodeError && cause.kind === 'locked') {
      error = new PersistenceError(
        PersistenceErrorCode.DecryptionFailed,
        messages.decryptionFailed(where, cause.message),
        context,
      );
      why = 'it could not be decrypted with the configured keys';
      kind = 'wrong-key';
    } else {
      const reason = messages.reasonOf(cause);
      error = new PersistenceError(
        PersistenceErrorCode.CorruptFile,
        messages.storedItemUnreadable(host.location, key, reason),
        context,
      );
      why = `it is not a valid item: ${reason}`;
      kind = 'corrupt';
    }
    // Within a load the summary logs it (one line per kind); the listeners hear of each item.
    host.fail(error, operation, problems === undefined);
    problems?.add(kind, adapter.name, context.itemId, error);
    return {
      unloaded: {
        fileName,
        ref: undefined,
        hash: '',
        unloaded: why,
        unreadable: true,
        unloadedCode: error.code,
        unloadedKind: kind,
        revision: record.revision,
      },
    };
  }
}
