import { CronTime } from 'cron';
import { isAbsolute, resolve } from 'node:path';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import {
  PersistenceModuleOptions,
  ResolvedBackupOptions,
  ResolvedLockOptions,
  ResolvedPersistenceOptions,
} from '../interfaces/persistence-module-options.interface';
import { DEFAULT_BACKUPS_KEPT } from '../persistence.constants';
import { invalidOption, optionsMissing, pathUndefined } from '../persistence.messages';
import { ItemCipher } from '../encryption/item.cipher';
import { isLoggerOption } from '../events/persistence.logger';
import { DIR_MODE, FILE_MODE, TEMP_SUFFIX } from '../storage/on-disk.names';
import { DEFAULT_COMPRESS_ABOVE } from '../serializers/auto.serializer';
import { ConflictPolicy, StorageDriver } from '../interfaces/storage-driver.interface';
import { BUILT_IN_FORMATS, isSerializer } from '../serializers/serializer.factory';
import { PersistenceFileSystem } from '../storage/file-system.interface';
import { isReallySameOrInside, isSameOrInside } from '../storage/path.util';
import { DEFAULT_LOCK_TIMING } from '../storage/store.lock';
import { assertKnownOptionKeys } from './option-keys.check';

/** Defaults of every option, in one place. */
export const DEFAULT_OPTIONS = {
  path: './data',
  format: 'json',
  compressAbove: DEFAULT_COMPRESS_ABOVE,
  autoSave: { interval: 300_000, maxBackoffTicks: 8, debounce: false as number | false },
  loadOnBoot: true,
  onUnreadable: 'fail' as 'fail' | 'start',
  saveOnShutdown: true,
  builtInAdapters: true,
  ioConcurrency: 16,
  limits: { maxFileBytes: 64 * 1024 * 1024, maxInflatedBytes: 256 * 1024 * 1024 },
  fileMode: FILE_MODE,
  dirMode: DIR_MODE,
  readOnly: false,
  checkpointBytes: 8 * 1024 * 1024,
  adapterTimeout: 10_000,
  backups: { keep: DEFAULT_BACKUPS_KEPT },
  conflicts: 'last-write-wins' as ConflictPolicy,
  lock: DEFAULT_LOCK_TIMING,
} as const;

function fail(option: string, got: unknown, fix: string): never {
  throw new PersistenceError(PersistenceErrorCode.InvalidOptions, invalidOption(option, got, fix), {
    operation: 'init',
  });
}

/** Throws unless `ms` can be an auto-save interval. */
export function assertInterval(option: string, ms: unknown): asserts ms is number {
  if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 1 || ms > 2_147_483_647) {
    fail(option, ms, 'Use a whole number of milliseconds from 1 to 2147483647 (about 24.8 days).');
  }
}

/** Merges the defaults into the user's options and checks every value; throws on the first bad one. */
export function resolveOptions(
  options: PersistenceModuleOptions | undefined,
): ResolvedPersistenceOptions {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new PersistenceError(PersistenceErrorCode.InvalidOptions, optionsMissing(options), {
      operation: 'init',
    });
  }
  const given = options;
  assertKnownOptionKeys(given);
  if (Object.prototype.hasOwnProperty.call(given, 'path') && given.path === undefined) {
    throw new PersistenceError(PersistenceErrorCode.InvalidOptions, pathUndefined(), {
      operation: 'init',
    });
  }
  const path = given.path ?? DEFAULT_OPTIONS.path;
  if (typeof path !== 'string' || path.trim() === '' || path.includes('\0')) {
    fail('path', path, 'Use a folder path such as "./data" or "/var/lib/my-app/state".');
  }
  if (!isAbsolute(path) && !isSameOrInside(resolve(process.cwd(), path), process.cwd())) {
    fail(
      'path',
      path,
      'A relative path must stay inside the working directory; give an absolute path to store elsewhere.',
    );
  }
  const format = given.format ?? DEFAULT_OPTIONS.format;
  if (typeof format === 'string' ? !BUILT_IN_FORMATS.includes(format) : !isSerializer(format)) {
    fail(
      'format',
      format,
      `Use one of ${BUILT_IN_FORMATS.map((f) => `'${f}'`).join(', ')}, or an object implementing Serializer (format, extension, serialize, deserialize).`,
    );
  }
  if (typeof format !== 'string') {
    assertCustomExtension(format.extension);
  }
  const compressAbove = given.compressAbove ?? DEFAULT_OPTIONS.compressAbove;
  if (!Number.isSafeInteger(compressAbove) || compressAbove < 0) {
    fail(
      'compressAbove',
      compressAbove,
      'Use a whole number of bytes, 0 or more (0: compress every item).',
    );
  }
  let autoSave: ResolvedPersistenceOptions['autoSave'] = false;
  if (given.autoSave !== false) {
    const auto = given.autoSave ?? DEFAULT_OPTIONS.autoSave;
    if (typeof auto !== 'object' || auto === null) {
      fail(
        'autoSave',
        auto,
        'Use { interval: milliseconds } or false (optionally with debounce: milliseconds).',
      );
    }
    const interval = auto.interval ?? DEFAULT_OPTIONS.autoSave.interval;
    assertInterval('autoSave.interval', interval);
    const maxBackoffTicks = auto.maxBackoffTicks ?? DEFAULT_OPTIONS.autoSave.maxBackoffTicks;
    if (!Number.isInteger(maxBackoffTicks) || maxBackoffTicks < 0) {
      fail('autoSave.maxBackoffTicks', maxBackoffTicks, 'Use a whole number, 0 or more.');
    }
    const debounce = auto.debounce ?? DEFAULT_OPTIONS.autoSave.debounce;
    if (debounce !== false) assertInterval('autoSave.debounce', debounce);
    autoSave = { interval, maxBackoffTicks, debounce };
  }
  const flags = ['loadOnBoot', 'saveOnShutdown', 'builtInAdapters', 'readOnly'] as const;
  for (const flag of flags) {
    if (given[flag] !== undefined && typeof given[flag] !== 'boolean') {
      fail(flag, given[flag], 'Use true or false.');
    }
  }
  const onUnreadable = given.onUnreadable ?? DEFAULT_OPTIONS.onUnreadable;
  if (onUnreadable !== 'fail' && onUnreadable !== 'start') {
    fail(
      'onUnreadable',
      onUnreadable,
      "Use 'fail' (app.init() rejects while items cannot be used) or 'start' (start with what could be read).",
    );
  }
  if (!isLoggerOption(given.logger)) {
    fail(
      'logger',
      given.logger,
      'Give a Nest LoggerService (an object with log, warn and error), or false for no log lines.',
    );
  }
  const adapters = given.adapters ?? [];
  if (!Array.isArray(adapters)) {
    fail('adapters', adapters, 'Use an array of adapter classes or instances.');
  }
  const ioConcurrency = given.ioConcurrency ?? DEFAULT_OPTIONS.ioConcurrency;
  if (!Number.isInteger(ioConcurrency) || ioConcurrency < 1 || ioConcurrency > 1024) {
    fail('ioConcurrency', ioConcurrency, 'Use a whole number from 1 to 1024.');
  }
  const limits = { ...DEFAULT_OPTIONS.limits, ...(given.limits ?? {}) };
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value < 1) {
      fail(`limits.${name}`, value, 'Use a whole number of bytes, 1 or more.');
    }
  }
  const adapterTimeout = given.adapterTimeout ?? DEFAULT_OPTIONS.adapterTimeout;
  assertInterval('adapterTimeout', adapterTimeout);
  const checkpointBytes = given.checkpointBytes ?? DEFAULT_OPTIONS.checkpointBytes;
  if (!Number.isSafeInteger(checkpointBytes) || checkpointBytes < 0) {
    fail(
      'checkpointBytes',
      checkpointBytes,
      'Use a whole number of bytes, 0 or more (0: after every save).',
    );
  }
  const fileMode = given.fileMode ?? DEFAULT_OPTIONS.fileMode;
  const dirMode = given.dirMode ?? DEFAULT_OPTIONS.dirMode;
  for (const [name, mode, owner] of [
    ['fileMode', fileMode, FILE_MODE],
    ['dirMode', dirMode, DIR_MODE],
  ] as const) {
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o777 || (mode & owner) !== owner) {
      fail(
        name,
        mode,
        `Use permission bits such as 0o${owner.toString(8)}; the owner needs ${name === 'fileMode' ? 'read and write' : 'read, write and search'}.`,
      );
    }
  }
  if (given.encryption !== undefined) {
    if (typeof given.encryption !== 'object' || given.encryption === null) {
      fail('encryption', '<hidden>', 'Give { key } or { keys: { [id]: key }, current: id }.');
    }
    ItemCipher.create(given.encryption, (option, fix) => fail(option, '<hidden>', fix));
  }
  const storePath = isAbsolute(path) ? path : resolve(process.cwd(), path);
  return {
    path: storePath,
    format,
    compressAbove,
    autoSave,
    loadOnBoot: given.loadOnBoot ?? DEFAULT_OPTIONS.loadOnBoot,
    onUnreadable,
    logger: given.logger,
    saveOnShutdown: given.saveOnShutdown ?? DEFAULT_OPTIONS.saveOnShutdown,
    builtInAdapters: given.builtInAdapters ?? DEFAULT_OPTIONS.builtInAdapters,
    adapters,
    ioConcurrency,
    encryption: given.encryption,
    limits,
    readOnly: given.readOnly ?? DEFAULT_OPTIONS.readOnly,
    checkpointBytes,
    adapterTimeout,
    fileMode,
    dirMode,
    // With a storage driver there is no store folder for the backups to stay out of.
    backups: resolveBackups(given.backups, given.storage === undefined ? storePath : undefined),
    storage: resolveStorage(given.storage),
    conflicts: resolveConflicts(given.conflicts),
    lock: resolveLock(given.lock),
  };
}

function resolveLock(lock: PersistenceModuleOptions['lock']): ResolvedLockOptions {
  if (lock === undefined) return { ...DEFAULT_OPTIONS.lock };
  if (typeof lock !== 'object' || lock === null || Array.isArray(lock)) {
    fail('lock', lock, 'Use { leaseMs: 30000, renewMs: 10000 }.');
  }
  const leaseMs = lock.leaseMs ?? DEFAULT_OPTIONS.lock.leaseMs;
  assertInterval('lock.leaseMs', leaseMs);
  const renewMs =
    lock.renewMs ?? Math.max(1, Math.min(DEFAULT_OPTIONS.lock.renewMs, Math.floor(leaseMs / 3)));
  assertInterval('lock.renewMs', renewMs);
  if (renewMs >= leaseMs) {
    fail(
      'lock.renewMs',
      renewMs,
      `Renew well within the lease: use fewer milliseconds than lock.leaseMs (${leaseMs}), such as a third of it.`,
    );
  }
  const { host } = lock as { host?: unknown };
  if (host !== undefined && (typeof host !== 'string' || host === '')) {
    fail('lock.host', host, 'Use a host name.');
  }
  return { leaseMs, renewMs, ...(host === undefined ? {} : { host }) };
}

const DRIVER_METHODS = ['open', 'close', 'loadAll', 'read', 'commit', 'watch', 'acquireLease'];

function resolveStorage(storage: unknown): StorageDriver | undefined {
  if (storage === undefined) return undefined;
  const driver = storage as Record<string, unknown> | null;
  if (
    typeof driver !== 'object' ||
    driver === null ||
    driver.driverVersion !== 1 ||
    !DRIVER_METHODS.every((method) => typeof driver[method] === 'function')
  ) {
    fail(
      'storage',
      typeof driver === 'object' && driver !== null
        ? `an object with driverVersion ${String(driver.driverVersion)}`
        : storage,
      `Give a StorageDriver of contract version 1 (driverVersion: 1, location, ${DRIVER_METHODS.join(', ')}), e.g. new RedisStorageDriver({ url, keyPrefix }); leave it out to store in the folder \`path\`.`,
    );
  }
  return storage as StorageDriver;
}

function resolveConflicts(conflicts: unknown): ConflictPolicy {
  if (conflicts === undefined) return DEFAULT_OPTIONS.conflicts;
  if (conflicts !== 'last-write-wins' && conflicts !== 'reject') {
    fail('conflicts', conflicts, "Use 'last-write-wins' or 'reject'.");
  }
  return conflicts;
}

/**
 * The backups folder against the store folder once every link is resolved on both sides: the check
 * of `resolveOptions` compares the paths as given and cannot see a link (`./backups -> ./data/b`).
 * Fails like it, with `PERSISTENCE_INVALID_OPTIONS`, before anything is opened.
 */
export async function checkBackupsFolder(
  fs: PersistenceFileSystem,
  options: Pick<ResolvedPersistenceOptions, 'path' | 'backups' | 'storage'>,
): Promise<void> {
  const directory = options.backups?.directory;
  if (directory === undefined || options.storage !== undefined) return;
  const overlaps = (a: string, b: string): Promise<boolean> =>
    isReallySameOrInside(fs, a, b).catch(() => false); // unreadable: the check above stands
  if ((await overlaps(directory, options.path)) || (await overlaps(options.path, directory))) {
    fail(
      'backups.directory',
      directory,
      `Use a folder that is neither inside the store folder ${options.path} nor contains it (symbolic links followed).`,
    );
  }
}

function resolveBackups(
  backups: PersistenceModuleOptions['backups'],
  storePath: string | undefined,
): ResolvedBackupOptions | undefined {
  if (backups === undefined) return undefined;
  if (typeof backups !== 'object' || backups === null || Array.isArray(backups)) {
    fail('backups', backups, "Use { directory: './backups', cron?: '0 3 * * *', keep?: 7 }.");
  }
  const { target } = backups;
  if (
    target !== undefined &&
    (typeof target !== 'object' ||
      target === null ||
      target.targetVersion !== 1 ||
      !['list', 'write', 'read', 'remove'].every(
        (method) => typeof (target as unknown as Record<string, unknown>)[method] === 'function',
      ))
  ) {
    fail(
      'backups.target',
      target,
      'Give an object implementing BackupTarget: targetVersion 1, location, list, write, read, remove.',
    );
  }
  let directory: string | undefined;
  if (backups.directory !== undefined || target === undefined) {
    const dir = backups.directory;
    if (typeof dir !== 'string' || dir.trim() === '' || dir.includes('\0')) {
      fail('backups.directory', dir, "Use a folder path outside the store, such as './backups'.");
    }
    directory = resolve(process.cwd(), dir); // absolute, normalised (no trailing slash)
    if (
      storePath !== undefined &&
      (isSameOrInside(directory, storePath) || isSameOrInside(storePath, directory))
    ) {
      fail(
        'backups.directory',
        dir,
        `Use a folder that is neither inside the store folder ${storePath} nor contains it.`,
      );
    }
  }
  const { cron } = backups;
  if (cron !== undefined) {
    let valid = typeof cron === 'string';
    try {
      if (valid) new CronTime(cron);
    } catch {
      valid = false;
    }
    if (!valid) {
      fail('backups.cron', cron, "Use a cron expression such as '0 3 * * *' (every day at 03:00).");
    }
  }
  const keep = backups.keep ?? DEFAULT_OPTIONS.backups.keep;
  if (!Number.isSafeInteger(keep) || keep < 1) {
    fail('backups.keep', keep, 'Use a whole number, 1 or more.');
  }
  return { directory, cron, keep, target };
}

function assertCustomExtension(extension: string): void {
  if (!/^\.[A-Za-z0-9][A-Za-z0-9.]{0,15}$/.test(extension) || extension.endsWith(TEMP_SUFFIX)) {
    fail(
      'format.extension',
      extension,
      'A custom serializer needs an extension such as ".cbor": a dot, then letters, digits and dots (not ".tmp").',
    );
  }
}
