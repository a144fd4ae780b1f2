import { randomBytes } from 'node:crypto';
import { hostTag } from './lock.file';
import { isRunning } from './store.lock';

/**
 * Who is writing a hidden working folder (a backup's staging folder, a backup being removed), as a
 * name part `<host hash>-<pid>-<token>`: the same facts the store lock records, so that a leftover is
 * removed only when the lock's rule proves its writer gone, never on a guess.
 */
export const WRITER_TAG_PATTERN = '[0-9a-f]{8}-[0-9]+-[0-9a-f]{12}';

/** Tokens of the working folders this process is writing now. */
const activeTokens = new Set<string>();

/** A tag for one working folder of this process; `release()` once the folder is gone or published. */
export function claimWriterTag(): { tag: string; release(): void } {
  const token = randomBytes(6).toString('hex');
  activeTokens.add(token);
  return {
    tag: `${hostTag()}-${process.pid}-${token}`,
    release: () => activeTokens.delete(token),
  };
}

/**
 * True when the writer named by `tag` is provably gone: a process of this host that is no longer
 * running, or this very process with a token it no longer writes under (a previous life with the
 * same pid, e.g. pid 1 in a container). A writer on another host cannot be checked: never gone.
 */
export function isWriterGone(tag: string): boolean {
  const [host, pidText, token] = tag.split('-');
  const pid = Number(pidText);
  if (host !== hostTag() || !Number.isSafeInteger(pid) || pid <= 0 || token === undefined) {
    return false;
  }
  if (pid === process.pid) return !activeTokens.has(token);
  return !isRunning(pid);
}
