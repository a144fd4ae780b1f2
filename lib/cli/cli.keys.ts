import { DEFAULT_KEY_ID, ItemCipher } from '../encryption/item.cipher';
import { EncryptionOptions } from '../interfaces/persistence-module-options.interface';
import { CliError, ExitCode } from './cli.error';
import { badKey } from './cli.messages';

/** Environment variable read when no `--key` is given: keys separated by commas. */
export const KEY_ENV = 'NESTJS_PERSISTENCE_KEY';

/** Collects repeated `--key` options. */
export const collectKey = (value: string, previous: string[] = []): string[] => [
  ...previous,
  value,
];

/**
 * The encryption option from `--key` values (or from {@link KEY_ENV}): each `KEY` or `ID:KEY`, a key
 * being 64 hex digits or the base64 of 32 bytes; a key without an id has the id `default` (what the
 * `key` option of the module uses). The first one is the current key. `undefined` without keys.
 * Never puts a key into a message.
 */
export function encryptionFrom(
  keys: readonly string[] | undefined,
  env: NodeJS.ProcessEnv = process.env,
): EncryptionOptions | undefined {
  const given =
    keys && keys.length > 0
      ? keys
      : (env[KEY_ENV] ?? '')
          .split(',')
          .map((k) => k.trim())
          .filter((k) => k !== '');
  if (given.length === 0) return undefined;
  const ring: Record<string, string> = {};
  let current: string | undefined;
  for (const entry of given) {
    const colon = entry.indexOf(':');
    const id = colon < 0 ? DEFAULT_KEY_ID : entry.slice(0, colon);
    ring[id] = colon < 0 ? entry : entry.slice(colon + 1);
    current ??= id;
  }
  const options: EncryptionOptions = { keys: ring, current };
  ItemCipher.create(options, (_option, fix) => {
    throw new CliError(badKey(fix), ExitCode.Usage);
  });
  return options;
}

/** The cipher for `options`, to read encrypted files directly. */
export function cipherFrom(options: EncryptionOptions | undefined): ItemCipher | undefined {
  return options
    ? ItemCipher.create(options, (_option, fix) => {
        throw new CliError(badKey(fix), ExitCode.Usage);
      })
    : undefined;
}
