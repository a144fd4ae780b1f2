import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError, PersistenceOperation } from '../errors/persistence.error';
import { PersistenceAdapter } from '../interfaces/persistence-adapter.interface';
import { StoredRecord } from '../interfaces/storage-driver.interface';
import * as messages from '../persistence.messages';
import { ItemDecodeError, ItemFileCodec } from '../serializers/item-file.codec';
import { decodeStem } from '../storage/file-name.codec';
import { AdapterCaller } from './adapter.caller';
import { CommittedEntry, hashBytes } from './committed.index';
import { DecodedRecord } from './remote.merger';
import { reviveStored, schemaFailure } from './schema.migrator';

/** What decoding a stored item needs from the store. */
export interface RecordDecoderHost {
  /** The driver's location, for messages. */
  location: string;
  caller(): AdapterCaller;
  fail(error: PersistenceError, operation: PersistenceOperation): PersistenceError;
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
    let code: PersistenceErrorCode;
    if (schema) {
      host.fail(schema.error, operation);
      why = schema.why;
      code = schema.error.code;
    } else if (cause instanceof ItemDecodeError && cause.kind === 'locked') {
      host.fail(
        new PersistenceError(
          PersistenceErrorCode.DecryptionFailed,
          messages.decryptionFailed(where, cause.message),
          context,
        ),
        operation,
      );
      why = 'it could not be decrypted with the configured keys';
      code = PersistenceErrorCode.DecryptionFailed;
    } else {
      const reason = messages.reasonOf(cause);
      host.fail(
        new PersistenceError(
          PersistenceErrorCode.CorruptFile,
          messages.storedItemUnreadable(host.location, key, reason),
          context,
        ),
        operation,
      );
      why = `it is not a valid item: ${reason}`;
      code = PersistenceErrorCode.CorruptFile;
    }
    return {
      unloaded: {
        fileName,
        ref: undefined,
        hash: '',
        unloaded: why,
        unreadable: true,
        unloadedCode: code,
        revision: record.revision,
      },
    };
  }
}
