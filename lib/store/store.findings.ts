import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import * as messages from '../persistence.messages';
import { ItemDecodeError } from '../serializers/item-file.codec';
import { DecodedSegment, JOURNAL_FORMAT_VERSION } from '../storage/journal';
import { UnsafeFileError } from '../storage/safe-read';

/*
 * What is wrong with a store's files, judged once. The start (crash recovery, the load) acts on a
 * finding (copies a journal aside, cuts a torn tail, quarantines or pins a file) and reports it with
 * its code, naming its file; `verify` (the CLI) lists the same finding, changing nothing. Both read the
 * bytes with the same decoders (`decodeSegment`, `ItemFileCodec.decode`), so they cannot disagree
 * about what is damaged, nor word it differently.
 */

/** One thing wrong with one file. */
export interface StoreFinding {
  /** The error code the application reports it with; `undefined`: a warning only (a torn tail). */
  code?: PersistenceErrorCode;
  /** The file it is about (absolute). */
  path: string;
  /** What is wrong, in the words of the application's message. */
  problem: string;
}

/** How much of a journal file is lost and kept, when it is damaged. */
export interface SegmentDamage {
  unreadableBytes: number;
  regions: number;
  recovered: number;
  sealed: boolean;
}

/** The damage of one journal file (see `decodeSegment`), or `undefined` when it has none. */
export function segmentDamage(
  segment: Pick<DecodedSegment, 'damaged' | 'records'>,
  sealed: boolean,
): SegmentDamage | undefined {
  if (segment.damaged.length === 0) return undefined;
  return {
    unreadableBytes: segment.damaged.reduce((sum, region) => sum + region.length, 0),
    regions: segment.damaged.length,
    recovered: segment.records.length,
    sealed,
  };
}

/**
 * What is wrong with one journal file: a format this code does not read (`JOURNAL_FORMAT_UNSUPPORTED`,
 * the start fails), its damage (`JOURNAL_DAMAGED`), its torn tail (a warning).
 */
export function journalFindings(
  path: string,
  segment: Pick<DecodedSegment, 'damaged' | 'records' | 'tornTailBytes' | 'unsupportedVersion'>,
  sealed: boolean,
): StoreFinding[] {
  if (segment.unsupportedVersion !== undefined) {
    return [
      {
        code: PersistenceErrorCode.JournalFormatUnsupported,
        path,
        problem: messages.journalFormatUnsupportedProblem(
          segment.unsupportedVersion,
          JOURNAL_FORMAT_VERSION,
        ),
      },
    ];
  }
  const found: StoreFinding[] = [];
  const damage = segmentDamage(segment, sealed);
  if (damage) {
    found.push({
      code: PersistenceErrorCode.JournalDamaged,
      path,
      problem: messages.journalDamageProblem(damage),
    });
  }
  if (segment.tornTailBytes > 0) {
    found.push({ path, problem: messages.journalTornTailProblem(segment.tornTailBytes) });
  }
  return found;
}

/** Why an item file did not load; `invalid`: not a valid item (quarantined), else left in place. */
export interface ItemFileFinding extends StoreFinding {
  code: PersistenceErrorCode;
  invalid: boolean;
}

/** An error from the file system (it has an errno code such as EACCES or EIO). */
function isSystemError(error: unknown): boolean {
  return typeof (error as NodeJS.ErrnoException | undefined)?.code === 'string';
}

/**
 * Why the item file at `path` did not read or decode (`cause`, from reading it or from
 * `ItemFileCodec.decode`). Schema failures (migrations, newer versions) need the adapter and are
 * judged by the load itself (`schemaFailure`).
 */
export function itemFileFinding(path: string, cause: unknown): ItemFileFinding {
  if (
    cause instanceof PersistenceError &&
    cause.code === PersistenceErrorCode.OptionalDependencyMissing
  ) {
    // The file is fine; a package to read it is missing.
    return { code: cause.code, path, problem: cause.message, invalid: false };
  }
  const invalid =
    cause instanceof UnsafeFileError ||
    (cause instanceof ItemDecodeError && cause.kind === 'corrupt') ||
    !(cause instanceof ItemDecodeError || isSystemError(cause));
  if (invalid) {
    return {
      code: PersistenceErrorCode.CorruptFile,
      path,
      problem: messages.reasonOf(cause),
      invalid,
    };
  }
  return cause instanceof ItemDecodeError
    ? { code: PersistenceErrorCode.DecryptionFailed, path, problem: cause.message, invalid }
    : { code: PersistenceErrorCode.IoFailed, path, problem: messages.reasonOf(cause), invalid };
}

/** The application's message for an item file finding; `movedTo`: where it was quarantined. */
export function itemFileMessage(finding: ItemFileFinding, movedTo?: string): string {
  switch (finding.code) {
    case PersistenceErrorCode.CorruptFile:
      return messages.corruptFile(finding.path, finding.problem, movedTo);
    case PersistenceErrorCode.DecryptionFailed:
      return messages.decryptionFailed(finding.path, finding.problem);
    case PersistenceErrorCode.IoFailed:
      return messages.ioFailed('read', finding.path, finding.problem);
    default:
      return finding.problem;
  }
}

/** Why an item file stays in place unloaded (`listUnloaded()`), for a finding that is not invalid. */
export function unloadedReason(finding: ItemFileFinding): string {
  switch (finding.code) {
    case PersistenceErrorCode.DecryptionFailed:
      return 'it could not be decrypted with the configured keys';
    case PersistenceErrorCode.IoFailed:
      return `it could not be read: ${finding.problem}`;
    default:
      return finding.problem;
  }
}
