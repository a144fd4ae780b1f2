import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import { optionalDependencyMissing } from '../persistence.messages';

/** The optional peer dependency behind `format: 'msgpack'`. */
export const MSGPACK_PACKAGE = 'msgpackr';

/*
 * msgpackr's pure-JavaScript build without `new Function` (records are off anyway): no native
 * addon is loaded, so the bytes and their speed do not depend on whether msgpackr-extract's install
 * script ran.
 */
const MSGPACK_MODULE = 'msgpackr/index-no-eval';

/** The part of msgpackr the store uses. */
export interface MsgpackCodec {
  pack(value: unknown): Buffer;
  unpack(data: Uint8Array): unknown;
}

interface MsgpackrModule {
  Packr: new (options: Record<string, unknown>) => MsgpackCodec;
}

let codec: MsgpackCodec | undefined;

/**
 * msgpackr, loaded at first use (an application that never writes or reads msgpack never loads it).
 * Throws `PERSISTENCE_OPTIONAL_DEPENDENCY_MISSING`, naming the install command, when it is not
 * installed.
 */
export function loadMsgpack(): MsgpackCodec {
  if (codec) return codec;
  let loaded: MsgpackrModule;
  try {
    // A lazy require: the package is an optional peer dependency, resolved from the application.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    loaded = require(MSGPACK_MODULE) as MsgpackrModule;
  } catch (error) {
    throw new PersistenceError(
      PersistenceErrorCode.OptionalDependencyMissing,
      optionalDependencyMissing("format 'msgpack'", MSGPACK_PACKAGE, error),
      { operation: 'init', cause: error },
    );
  }
  codec = new loaded.Packr({
    useRecords: false, // plain MessagePack maps, readable by any MessagePack reader
    moreTypes: false,
    mapsAsObjects: true,
    int64AsType: 'number', // never a BigInt out of a file: JSON has none
    bundleStrings: false,
  });
  return codec;
}
