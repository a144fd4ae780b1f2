import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import { BackupEntry, UnverifiedBackupFile } from '../interfaces/backup-target.interface';
import { PersistenceAdapter } from '../interfaces/persistence-adapter.interface';
import * as messages from '../persistence.messages';
import { ItemFileCodec } from '../serializers/item-file.codec';
import { parseItemFileName } from '../storage/file-system.storage';
import { AdapterCaller } from './adapter.caller';
import { CommittedEntry, CommittedIndex, hashBytes, UNHASHED } from './committed.index';
import { reviveStored } from './schema.migrator';

/** What the checks of a backup's files need from the store. */
export interface BackupVerifierScope {
  readonly adapters: readonly PersistenceAdapter[];
  readonly index: CommittedIndex;
  /** See `WriterChecks.inSync`: an adapter is taken out so that its next save looks at every item. */
  readonly inSync: Map<string, number>;
  codec(): ItemFileCodec;
  caller(): AdapterCaller;
}

/** The entry of the index that a damaged file's item gets: the next save rewrites it from memory. */
const REWRITE = Symbol('rewrite: its file is damaged');

/**
 * Checks every file of a backup as it is handed to the writer, with the checks a restore makes: the
 * file decodes under the store's codec (cipher, limits), names its item, and its adapter revives it
 * (migrations included). On the file system (`compareCommitted`: this store is the only writer),
 * a file must also match what the store knows of its bytes: the hash it committed (custom adapters;
 * built-in items are compared by identity, not hashed), and the SHA-256 the last backup checked
 * while its index entry stands (it is replaced whenever the file is rewritten). That catches damage
 * that still decodes, except in a built-in item damaged before this process first backed it up.
 *
 * - A file the store loaded (or wrote) that fails is **damage**: once every entry has been seen,
 *   the iteration throws `PERSISTENCE_BACKUP_VERIFICATION_FAILED` naming the files, so the writer
 *   publishes nothing. Each such item is marked so that the next save rewrites its file from the
 *   state in memory.
 * - A file the store itself did not load (not decryptable with its keys, `loadOnBoot: false`,
 *   refused by its adapter, an older format of an item, or, on a storage driver, an item another
 *   replica wrote that this one has not loaded) and that fails is copied as it is (as the store
 *   keeps it) and listed in {@link unverified}: it never makes a backup fail, and a restore puts it
 *   back as it was.
 */
export class BackupVerifier {
  /** Files kept as they are without passing the checks (see the class comment). */
  readonly unverified: UnverifiedBackupFile[] = [];
  private readonly damaged: UnverifiedBackupFile[] = [];

  constructor(
    private readonly scope: BackupVerifierScope,
    private readonly compareCommitted: boolean,
  ) {}

  /** `entries`, each one checked before it is passed on; throws after the last on damage. */
  async *verify(entries: AsyncIterable<BackupEntry>): AsyncGenerator<BackupEntry> {
    const codec = this.scope.codec();
    const caller = this.scope.caller();
    const byName = new Map(this.scope.adapters.map((a) => [a.name, a]));
    for await (const entry of entries) {
      await this.check(entry, codec, caller, byName);
      yield entry;
    }
    if (this.damaged.length > 0) {
      throw new PersistenceError(
        PersistenceErrorCode.BackupVerificationFailed,
        messages.backupDamaged(this.damaged),
        { operation: 'backup', path: this.damaged[0].path },
      );
    }
  }

  private async check(
    entry: BackupEntry,
    codec: ItemFileCodec,
    caller: AdapterCaller,
    byName: ReadonlyMap<string, PersistenceAdapter>,
  ): Promise<void> {
    const slash = entry.path.indexOf('/');
    const collection = entry.path.slice(0, slash);
    const fileName = entry.path.slice(slash + 1);
    const file = parseItemFileName(fileName, codec.serializer.extension);
    const committed = file && this.scope.index.get(collection)?.get(file.stem);
    const loaded =
      committed !== undefined &&
      committed.fileName === fileName &&
      committed.unloaded === undefined;
    if (this.compareCommitted && loaded && committed.backedUp === entry.sha256) {
      // The very bytes an earlier backup of this process checked, and the item not saved since
      // (same codec, keys and adapters): a backup's checks cost what changed.
      return;
    }
    let problem: string | undefined;
    try {
      const adapter = byName.get(collection);
      if (!file || !adapter) throw new Error('it is not an item file of this store');
      const { envelope, plain } = await codec.decode(collection, file, entry.data);
      reviveStored(caller, adapter, envelope);
      problem =
        this.compareCommitted && loaded ? committedProblem(committed, entry, plain) : undefined;
    } catch (error) {
      problem = messages.reasonOf(error);
    }
    if (problem === undefined) {
      if (this.compareCommitted && loaded) committed.backedUp = entry.sha256;
      return;
    }
    // The store read (or wrote) this very file with the keys and packages it has now: any failure
    // (a decryption one included: an altered byte fails the authentication) is damage.
    if (loaded) {
      this.damaged.push({ path: entry.path, reason: problem });
      // The state in memory is the committed one: the next save writes the item's file anew.
      committed.ref = REWRITE;
      committed.hash = '';
      committed.backedUp = undefined;
      this.scope.inSync.delete(collection);
      return;
    }
    this.unverified.push({
      path: entry.path,
      reason: committed?.unloaded
        ? messages.notLoadedBecause(committed.unloaded, problem)
        : problem,
    });
  }
}

/**
 * Why a file that decodes is still not the one the store committed, if it is not: its bytes differ
 * from the hash the store kept of them, or from those the last backup checked while the item has not
 * been rewritten since, or an earlier backup found it damaged and no save has rewritten it yet.
 */
function committedProblem(
  committed: CommittedEntry,
  entry: BackupEntry,
  plain: Buffer,
): string | undefined {
  if (committed.ref === REWRITE) return messages.backupFileAwaitsRewrite();
  const { hash, backedUp } = committed;
  if (hash !== '' && hash !== UNHASHED && hashBytes(plain) !== hash) {
    return messages.backupFileNotCommitted();
  }
  if (backedUp !== undefined && backedUp !== entry.sha256) {
    return messages.backupFileChangedSinceBackup();
  }
  return undefined;
}
