import { ChildProcess, fork, spawn } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { decodeRecords } from '../lib/storage/journal';
import { NodeFileSystem } from '../lib/storage/node-file-system';
import {
  claimFileName,
  LOCK_FILE,
  LockOwner,
  lockTempFileName,
  StoreLock,
} from '../lib/storage/store.lock';
import type { LockRaceCommand, LockRaceReply } from './fixtures/lock-race.child';
import { makeTempDir, removeDir } from './fixtures/temp-dir';
import { transpileForNode } from './fixtures/transpile';

/*
 * The one-writer lock under a real race: 20 processes try to take the lock of the same folder at the
 * same moment, round after round, on a folder that is empty, or holds a lock left by a dead process,
 * an empty or garbage lock (damaged), a stale
 * lock whose take-over was claimed by contenders that died, or the same left by processes of other
 * hosts (never renewed: taken over after a lease; a stale lock of another host alone is in
 * test/lock-lease.spec.ts and test/single-writer.spec.ts). Half of the contenders simulate another
 * host, so every winner is, for half of the losers, an owner on another host that they only know
 * alive by its renewals. Each round exactly one must own the folder, every other one must name that owner, no
 * owner may lose its lock while it holds it, and the owner's acknowledged save must be in the journal
 * afterwards. The contenders are long-lived plain-node processes driven over IPC; the lease is short
 * (the rounds on other hosts' stale locks wait one lease each).
 */

const CONTENDERS = 20;
const ROUNDS = 50;
const KINDS = [
  'empty folder',
  'dead owner',
  'empty lock',
  'garbage lock',
  'dead owner, dead claimants',
  'dead owner and claimants on other hosts',
] as const;
/**
 * The contenders' lock timing: ten renewals per lease, so that an owner is only taken over when a
 * loaded machine stalls it for most of a lease (which it then reports as lost: a problem here).
 */
const LEASE = { leaseMs: 300, renewMs: 30 };
/** Host name simulated by every second contender (the others use the machine's). */
const OTHER_HOST = 'contender-host-b';
type Kind = (typeof KINDS)[number];

/** One contender process and the replies it sent, read in order. */
class Contender {
  private readonly replies: LockRaceReply[] = [];
  private readonly waiters: Array<(reply: LockRaceReply) => void> = [];
  /** Locks this contender lost while it held them. */
  readonly lost: string[] = [];

  constructor(
    readonly child: ChildProcess,
    readonly host: string | undefined,
  ) {
    child.on('message', (reply: LockRaceReply) => {
      if (reply.type === 'lost') {
        this.lost.push(`round ${reply.round}: ${reply.message}`);
        return;
      }
      const waiter = this.waiters.shift();
      if (waiter) waiter(reply);
      else this.replies.push(reply);
    });
  }

  next(): Promise<LockRaceReply> {
    const reply = this.replies.shift();
    if (reply) return Promise.resolve(reply);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  send(command: LockRaceCommand): void {
    this.child.send(command);
  }
}

/** Pids of processes that ran and exited: a lock naming one of them is stale. */
async function deadPids(count: number): Promise<number[]> {
  const pids: number[] = [];
  for (let i = 0; i < count; i++) {
    const child = spawn(process.execPath, ['-e', '']);
    await new Promise((resolve) => child.on('exit', resolve));
    pids.push(child.pid!);
  }
  return pids;
}

const record = (pid: number, token: string, host = hostname()): Buffer =>
  Buffer.from(JSON.stringify({ pid, host, token, since: '2020-01-01T00:00:00.000Z' }));

describe('one-writer lock: 20 processes at once on one folder', () => {
  let work: string;
  let dead: number[];
  const contenders: Contender[] = [];

  beforeAll(async () => {
    work = await makeTempDir('persistence-lock-race-');
    const entry = await transpileForNode(
      'test/fixtures/lock-race.child.ts',
      join(work, 'compiled'),
    );
    dead = await deadPids(3);
    for (let i = 0; i < CONTENDERS; i++) {
      contenders.push(
        new Contender(
          fork(entry, [], { execArgv: [], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }),
          i % 2 === 1 ? OTHER_HOST : undefined,
        ),
      );
    }
    const ready = await Promise.all(contenders.map((c) => c.next()));
    expect(ready.map((r) => r.type)).toEqual(Array(CONTENDERS).fill('ready'));
  }, 60_000);

  afterAll(async () => {
    await Promise.all(
      contenders.map(
        (c) =>
          new Promise((resolve) => {
            c.child.once('exit', resolve);
            c.child.kill('SIGKILL');
          }),
      ),
    );
    await removeDir(work);
  });

  /** Leaves the folder in the state a round starts from; returns the owner a take-over must report. */
  async function prepare(dir: string, kind: Kind): Promise<Partial<LockOwner> | undefined> {
    await mkdir(dir);
    const lock = join(dir, LOCK_FILE);
    switch (kind) {
      case 'empty folder':
        return undefined;
      case 'dead owner':
        await writeFile(lock, record(dead[0], 'dead-owner'));
        return { pid: dead[0], token: 'dead-owner' };
      case 'empty lock':
        await writeFile(lock, '');
        return { token: 'unreadable' };
      case 'garbage lock':
        await writeFile(lock, '{"pid": 12');
        return { token: 'unreadable' };
      case 'dead owner, dead claimants': {
        // A dead owner; a contender that died holding the claim on it; another that died holding the
        // claim on that claim; and the temporary file the first one left.
        const stale = record(dead[0], 'dead-owner');
        const claim = record(dead[1], 'dead-claimant');
        const claimOnClaim = record(dead[2], 'dead-claimant-2');
        await writeFile(lock, stale);
        await writeFile(join(dir, claimFileName(LOCK_FILE, stale)), claim);
        await writeFile(
          join(dir, claimFileName(claimFileName(LOCK_FILE, stale), claim)),
          claimOnClaim,
        );
        await writeFile(join(dir, lockTempFileName(dead[1], 'deadbeef')), claim);
        return { pid: dead[0], token: 'dead-owner' };
      }
      case 'dead owner and claimants on other hosts': {
        const stale = record(dead[0], 'gone-owner', 'gone-host');
        const claim = record(dead[1], 'gone-claimant', 'gone-host-2');
        const claimOnClaim = record(dead[2], 'gone-claimant-2', 'gone-host-3');
        await writeFile(lock, stale);
        await writeFile(join(dir, claimFileName(LOCK_FILE, stale)), claim);
        await writeFile(
          join(dir, claimFileName(claimFileName(LOCK_FILE, stale), claim)),
          claimOnClaim,
        );
        return { pid: dead[0], token: 'gone-owner' };
      }
    }
  }

  /** Sends "go" to every contender at once and collects one reply from each. */
  async function race(round: number, dir: string, who = contenders): Promise<LockRaceReply[]> {
    const replies = who.map((c) => c.next());
    for (const c of who) c.send({ type: 'go', round, dir, host: c.host, lease: LEASE });
    return Promise.all(replies);
  }

  it(`exactly one owner per round, every loser names it, no acknowledged save lost (${ROUNDS} rounds)`, async () => {
    const problems: string[] = [];
    let takeOvers = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const kind = KINDS[round % KINDS.length];
      const dir = join(work, `round-${round}`);
      const stale = await prepare(dir, kind);
      const replies = await race(round, dir);
      const where = `round ${round} (${kind})`;
      for (const failed of replies.filter((r) => r.type === 'failed')) {
        problems.push(`${where}: process ${failed.pid} failed: ${failed.message}`);
      }
      const acked = replies.filter((r) => r.type === 'acked');
      if (acked.length !== 1) problems.push(`${where}: ${acked.length} owners`);
      const winner = acked[0];
      for (const loser of replies.filter((r) => r.type === 'locked')) {
        if (!winner || loser.owner?.token !== winner.owner.token) {
          problems.push(`${where}: process ${loser.pid} saw owner ${JSON.stringify(loser.owner)}`);
        }
      }
      if (winner) {
        const reported = winner.replaced;
        const right = stale
          ? reported?.token === stale.token &&
            (stale.pid === undefined || reported?.pid === stale.pid)
          : reported === undefined;
        if (!right) problems.push(`${where}: take-over reported ${JSON.stringify(reported)}`);
        if (winner.replaced) takeOvers++;
      }
      for (const owner of acked) {
        const released = contenders.find((c) => c.child.pid === owner.pid)!;
        const reply = released.next();
        released.send({ type: 'release' });
        expect(await reply).toMatchObject({ type: 'released', round });
      }
      // Every acknowledged save is in the journal.
      const journal = decodeRecords(
        await readFile(join(dir, '.journal')).catch(() => Buffer.alloc(0)),
      );
      const committed = journal.records
        .flat()
        .map((op) => JSON.parse(op.data!.toString()) as { pid: number });
      for (const owner of acked) {
        if (!committed.some((c) => c.pid === owner.pid)) {
          problems.push(`${where}: the acknowledged save of process ${owner.pid} is lost`);
        }
      }
      // Released, the folder holds only the journal: no lock, no temporary file, no claim.
      const left = (await readdir(dir)).sort();
      if (JSON.stringify(left) !== JSON.stringify(['.journal'])) {
        problems.push(`${where}: left ${left.join(', ')}`);
      }
    }
    problems.push(...contenders.flatMap((c) => c.lost.splice(0)));
    console.log(
      `lock race: ${ROUNDS} rounds x ${CONTENDERS} processes, ${takeOvers} stale take-overs, ${problems.length} problem(s)`,
    );
    expect(problems).toEqual([]);
    const staleRounds = Array.from({ length: ROUNDS }, (_, round) => KINDS[round % KINDS.length]);
    expect(takeOvers).toBe(staleRounds.filter((kind) => kind !== 'empty folder').length);
  }, 60_000);

  it('a lock held by a live process is taken by nobody, and left as it was', async () => {
    for (let round = 0; round < 3; round++) {
      const dir = join(work, `live-${round}`);
      await mkdir(dir);
      const live = record(process.pid, `live-owner-${round}`);
      await writeFile(join(dir, LOCK_FILE), live);
      // Contenders of this host only: for the others, a record that is never renewed is stale.
      const local = contenders.filter((c) => c.host === undefined);
      const replies = await race(ROUNDS + round, dir, local);
      expect(replies.map((r) => (r.type === 'locked' ? r.owner?.token : r.type))).toEqual(
        Array(local.length).fill(`live-owner-${round}`),
      );
      expect(await readFile(join(dir, LOCK_FILE))).toEqual(live);
      expect(await readdir(dir)).toEqual([LOCK_FILE]);
    }
  });

  it('a live owner that renews is taken by nobody, from this host or another', async () => {
    for (const [round, host] of [undefined, 'owner-host-c', OTHER_HOST].entries()) {
      const dir = join(work, `renewing-${round}`);
      await mkdir(dir);
      let lost: unknown;
      const owner = new StoreLock(new NodeFileSystem(), dir, 0o600, { ...LEASE, host }, (e) => {
        lost = e;
      });
      await owner.acquire();
      const token = owner.holder!.token;
      const replies = await race(ROUNDS + 3 + round, dir);
      expect(replies.map((r) => (r.type === 'locked' ? r.owner?.token : r.type))).toEqual(
        Array(CONTENDERS).fill(token),
      );
      expect(lost).toBeUndefined();
      // A contender of another host than the owner's refused only after seeing it renew.
      const elsewhere = contenders.filter((c) => (c.host ?? hostname()) !== (host ?? hostname()));
      for (const contender of elsewhere) {
        const reply = replies.find((r) => r.pid === contender.child.pid);
        expect(reply?.type === 'locked' && reply.owner?.beat).toBeGreaterThan(0);
      }
      expect(JSON.parse(await readFile(join(dir, LOCK_FILE), 'utf8'))).toMatchObject({ token });
      await owner.release();
      expect(await readdir(dir)).toEqual([]);
    }
  });
});

describe('one-writer lock: what it never takes or removes', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await makeTempDir('persistence-lock-');
  });
  afterEach(async () => {
    await removeDir(dir);
  });

  it('release removes the lock only while it still holds this store’s token', async () => {
    const lock = new StoreLock(new NodeFileSystem(), dir, 0o600);
    expect(await lock.acquire()).toBeUndefined();
    const other = record(process.pid + 1, 'someone-else');
    await writeFile(join(dir, LOCK_FILE), other);
    await lock.release();
    expect(await readFile(join(dir, LOCK_FILE))).toEqual(other);
  });
});
