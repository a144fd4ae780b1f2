import { Command } from 'commander';
import { relative } from 'node:path';
import { isEncrypted, ItemCipher } from '../encryption/item.cipher';
import { DetectedFormat } from '../interfaces/serializer.interface';
import { detectFormat, isGzip } from '../serializers/detect-format';
import { isMsgpack, MsgpackSerializer } from '../serializers/msgpack.serializer';
import { JsonGzipSerializer } from '../serializers/json-gzip.serializer';
import { ExitCode } from './cli.error';
import { cipherFrom, collectKey, encryptionFrom } from './cli.keys';
import { journalFormatLine, lockLine } from './cli.messages';
import { formatBytes, formatCounts, out, plural, table } from './cli.output';
import { startProgress } from './cli.progress';
import {
  driverCollections,
  requirePath,
  StorageCliOptions,
  storageDriver,
  storeArguments,
  withStorageOptions,
} from './cli.storage';
import { LockState, StoreFolder } from './store.folder';

/** One collection folder. */
export interface CollectionReport {
  name: string;
  /** Distinct items (an item can briefly have files in two formats after a format switch). */
  items: number;
  files: number;
  bytes: number;
  /** Files by `detectFormat()`: json, json-gzip, msgpack, encrypted, binary. */
  formats: Partial<Record<DetectedFormat, number>>;
  /** Files by envelope version (`v`); `unknown` when encrypted without a key, `unreadable` when broken. */
  versions: Record<string, number>;
  /**
   * Files by the schema version of the item (`sv`; 1 when absent), as the application's adapter
   * migrations see it; `unknown` and `unreadable` as for `versions`.
   */
  schemaVersions: Record<string, number>;
  /** Entries the store ignores (other extensions, hidden files, folders, links). */
  ignored: number;
}

/** What `inspect --json` prints. */
export interface InspectReport {
  path: string;
  lock: LockState | null;
  collections: CollectionReport[];
  /** Entries of the store folder that are neither collections nor the store's own files. */
  otherEntries: string[];
  journal: {
    records: number;
    changes: number;
    bytes: number;
    tornBytes: number;
    /** Journal files in a format this version does not read (not counted above), with it. */
    unsupported?: Array<{ file: string; format: number }>;
  };
  quarantine: {
    files: number;
    bytes: number;
    list: Array<{ file: string; size: number; quarantinedAt?: string }>;
  };
}

/** Reads the whole store, changing nothing. */
export async function inspectStore(
  folder: StoreFolder,
  cipher: ItemCipher | undefined,
): Promise<InspectReport> {
  await folder.assertExists();
  const gzip = new JsonGzipSerializer();
  const { names, others } = await folder.collections();
  const listed = await Promise.all(names.map((name) => folder.itemFiles(name)));
  const progress = startProgress('inspect', listed.flat().length);
  const collections: CollectionReport[] = [];
  try {
    for (const [i, name] of names.entries()) {
      const report: CollectionReport = {
        name,
        items: new Set(listed[i].map((f) => f.stem)).size,
        files: listed[i].length,
        bytes: 0,
        formats: {},
        versions: {},
        schemaVersions: {},
        ignored: await folder.ignoredEntries(name),
      };
      for (const file of listed[i]) {
        let version: string;
        let schema: string;
        try {
          const data = await folder.read(file.path);
          report.bytes += data.length;
          const format = detectFormat(data);
          report.formats[format] = (report.formats[format] ?? 0) + 1;
          ({ version, schema } = await envelopeVersions(data, name, file.stem, cipher, gzip));
        } catch {
          version = schema = 'unreadable';
        }
        report.versions[version] = (report.versions[version] ?? 0) + 1;
        report.schemaVersions[schema] = (report.schemaVersions[schema] ?? 0) + 1;
        progress.tick();
      }
      collections.push(report);
    }
  } finally {
    progress.stop();
  }
  const journal = await folder.journal();
  const unsupported = journal.segments.flatMap((segment) =>
    segment.unsupportedVersion === undefined
      ? []
      : [{ file: relative(folder.root, segment.path), format: segment.unsupportedVersion }],
  );
  const quarantined = await folder.quarantined();
  return {
    path: folder.root,
    lock: (await folder.lock()) ?? null,
    collections,
    otherEntries: others,
    journal: {
      records: journal.records.length,
      changes: journal.records.reduce((n, r) => n + r.length, 0),
      bytes: journal.bytes,
      tornBytes: journal.tornBytes,
      ...(unsupported.length > 0 ? { unsupported } : {}),
    },
    quarantine: {
      files: quarantined.length,
      bytes: quarantined.reduce((n, q) => n + q.size, 0),
      list: quarantined.map((q) => ({
        file: `${q.collection}/${q.name}`,
        size: q.size,
        quarantinedAt: q.quarantinedAt,
      })),
    },
  };
}

/**
 * The envelope's `v` and the item's schema version `sv` (1 when absent) as text, `unknown` for an
 * encrypted file without its key.
 */
async function envelopeVersions(
  data: Buffer,
  collection: string,
  stem: string,
  cipher: ItemCipher | undefined,
  gzip: JsonGzipSerializer,
): Promise<{ version: string; schema: string }> {
  const unknown = { version: 'unknown', schema: 'unknown' };
  let plain = data;
  if (isEncrypted(data)) {
    if (!cipher) return unknown;
    try {
      plain = cipher.decrypt(data, collection, stem);
    } catch {
      return unknown;
    }
  }
  const parsed = (
    isGzip(plain)
      ? await gzip.deserialize(plain)
      : isMsgpack(plain)
        ? new MsgpackSerializer().deserialize(plain)
        : JSON.parse(plain.toString('utf8'))
  ) as { v?: unknown; sv?: unknown } | null;
  if (typeof parsed?.v !== 'number') return { version: 'unreadable', schema: 'unreadable' };
  const schema = parsed.sv === undefined ? 1 : parsed.sv;
  return {
    version: String(parsed.v),
    schema: typeof schema === 'number' ? String(schema) : 'unreadable',
  };
}

/** The report for people. */
export function formatInspect(report: InspectReport): string {
  const { journal, quarantine } = report;
  const lines = [`Store       ${report.path}`, `Lock        ${lockLine(report.lock ?? undefined)}`];
  lines.push(
    `Journal     ${
      journal.records === 0
        ? journal.unsupported
          ? 'not read'
          : 'empty (everything is checkpointed)'
        : `${plural(journal.records, 'record')} (${plural(journal.changes, 'change')}, ${formatBytes(journal.bytes)}) not yet checkpointed`
    }${journal.tornBytes > 0 ? `; ${formatBytes(journal.tornBytes)} of torn tail after them` : ''}`,
  );
  for (const { file, format } of journal.unsupported ?? []) {
    lines.push(`            ${journalFormatLine(file, format)}`);
  }
  if (report.collections.length === 0) {
    lines.push('Collections none');
  } else {
    lines.push('Collections');
    lines.push(
      table([
        ['NAME', 'ITEMS', 'FILES', 'SIZE', 'FORMATS', 'ENVELOPE', 'SCHEMA', 'IGNORED'],
        ...report.collections.map((c) => [
          c.name,
          String(c.items),
          String(c.files),
          formatBytes(c.bytes),
          formatCounts(c.formats),
          formatCounts(c.versions, 'v'),
          formatCounts(c.schemaVersions, 'v'),
          String(c.ignored),
        ]),
      ]),
    );
  }
  if (report.otherEntries.length > 0) {
    lines.push(
      `Other       ${report.otherEntries.join(', ')} (not collections; ignored by the store)`,
    );
  }
  lines.push(
    `Quarantine  ${
      quarantine.files === 0
        ? 'empty'
        : `${plural(quarantine.files, 'file')} (${formatBytes(quarantine.bytes)}): see "nestjs-persistence quarantine list ${report.path}"`
    }`,
  );
  return lines.join('\n');
}

export function registerInspect(program: Command, done: (code: ExitCode) => void): void {
  const command = program
    .command('inspect')
    .summary(
      'Show collections, items, formats, sizes, versions, journal backlog, quarantine, lock holder',
    )
    .description(
      "Show collections, item counts, formats, sizes, envelope and schema versions, the journal backlog, quarantined files and the lock holder. Reads only; works while an application runs. With --storage: the driver's collections (--collections) and their item counts, loaded through the store.",
    )
    .argument('[path]', 'the store folder (left out with --storage)')
    .option('--json', 'print one JSON document (machine output)')
    .option('--key <key>', 'key to read encrypted files: KEY or ID:KEY (repeatable)', collectKey);
  withStorageOptions(command, true).action(
    async (given: string | undefined, options: InspectOptions) => {
      const [path] = storeArguments('inspect', options, [given]);
      const storage = await storageDriver(options);
      if (storage) {
        const { runDriverReport } = await import('./driver.report');
        const collections = driverCollections(options);
        const encryption = encryptionFrom(options.key);
        await runDriverReport(storage, collections, encryption, options.json);
        done(ExitCode.Ok);
        return;
      }
      const cipher = cipherFrom(encryptionFrom(options.key));
      const report = await inspectStore(new StoreFolder(requirePath(path)), cipher);
      out(options.json ? JSON.stringify(report, null, 2) : formatInspect(report));
      done(ExitCode.Ok);
    },
  );
}

interface InspectOptions extends StorageCliOptions {
  json?: boolean;
  key?: string[];
}
