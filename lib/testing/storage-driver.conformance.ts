import { deepStrictEqual, ok, strictEqual } from 'node:assert/strict';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { isPersistenceError } from '../errors/persistence.error';
import type {
  CommitOptions,
  DriverChange,
  DriverWatchEvent,
  StorageDriver,
} from '../interfaces/storage-driver.interface';

/*
 * The contract's checks, for any StorageDriver: the drivers of this package run them in CI, and a
 * third-party driver proves itself with the same list. Framework-neutral: each check is a function
 * that throws (node:assert) when the driver breaks the contract, so Jest, Vitest, Mocha or
 * node:test can run it.
 */

/** One isolated place in a storage (a key prefix, a table, a folder) that a check uses alone. */
export interface DriverPlace {
  /** A new driver on this place, as the replica `replicaId`; the check opens and closes it. */
  driver: (replicaId: string) => StorageDriver | Promise<StorageDriver>;
  /** Optional: makes the storage unreachable until {@link start} (enables the outage checks). */
  stop?: () => Promise<void>;
  /** Optional, with {@link stop}: reachable again. */
  start?: () => Promise<void>;
  /**
   * Optional: damages what is stored for an existing item the way this storage can hold damage
   * (a wrong type, a missing field, bytes a column cannot hold): enables the bad-data checks.
   */
  corrupt?: (collection: string, id: string) => Promise<void>;
  /** Optional: removes what the check stored. */
  dispose?: () => Promise<void>;
}

/** One check of the contract: run it as a test. */
export interface StorageDriverCheck {
  /** What the driver must do, as a test name. */
  readonly name: string;
  /** Resolves when the driver does it; rejects with an AssertionError (or its own error) when not. */
  run(): Promise<void>;
}

const REJECT: CommitOptions = { conflicts: 'reject' };
const LWW: CommitOptions = { conflicts: 'last-write-wins' };
const bytes = (text: string): Buffer => Buffer.from(text, 'utf8');
const set = (collection: string, id: string, data: Buffer, expected: number | null = null) =>
  ({ collection, id, data, expectedRevision: expected }) satisfies DriverChange;

/** Waits (polling every 10 ms) for `check`, at most `timeoutMs`; a notice travels through the storage. */
async function eventually(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to reject');
}

function assertCode(error: unknown, code: PersistenceErrorCode, what: string): void {
  ok(isPersistenceError(error), `${what}: expected a PersistenceError, got ${String(error)}`);
  strictEqual(error.code, code, `${what}: the error code`);
}

/** Runs `body` with opened drivers on a new place, then closes them and disposes of the place. */
function check(
  newPlace: () => DriverPlace | Promise<DriverPlace>,
  name: string,
  body: (open: (replicaId: string) => Promise<StorageDriver>, place: DriverPlace) => Promise<void>,
): StorageDriverCheck {
  return {
    name,
    run: async () => {
      const place = await newPlace();
      const opened: StorageDriver[] = [];
      try {
        await body(async (replicaId) => {
          const driver = await place.driver(replicaId);
          await driver.open();
          opened.push(driver);
          return driver;
        }, place);
      } finally {
        for (const driver of opened) await driver.close().catch(() => undefined);
        await place.dispose?.();
      }
    },
  };
}

/**
 * The checks of the storage-driver contract (version 1) for the driver `newPlace` makes: run each
 * as a test. A place that can be stopped adds the outage checks; one that can be damaged adds the
 * bad-data checks.
 *
 * @example
 * ```ts
 * describe('MyDriver conformance', () => {
 *   for (const { name, run } of storageDriverChecks(() => ({
 *     driver: (replicaId) => new MyDriver({ table: uniqueTable(), replicaId }),
 *   }))) {
 *     it(name, run);
 *   }
 * });
 * ```
 */
export function storageDriverChecks(
  newPlace: () => DriverPlace | Promise<DriverPlace>,
  capabilities: { stop?: boolean; corrupt?: boolean } = {},
): StorageDriverCheck[] {
  const checks: StorageDriverCheck[] = [
    check(
      newPlace,
      'commits bytes and loads them back exactly, with the commit revision',
      async (open) => {
        const a = await open('a');
        const every = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
        const result = await a.commit(
          [set('c', 'x', every), set('c', 'ü:/ id', Buffer.alloc(0)), set('d', 'y', bytes('y'))],
          REJECT,
        );
        ok(typeof result.revision === 'number' && result.revision > 0, 'a positive revision');
        deepStrictEqual(
          result.applied.map((c) => [c.collection, c.id, c.revision, c.deleted]),
          [
            ['c', 'x', result.revision, false],
            ['c', 'ü:/ id', result.revision, false],
            ['d', 'y', result.revision, false],
          ],
        );
        const loaded = await a.loadAll(['c']);
        deepStrictEqual(loaded.problems, []);
        const byId = new Map(loaded.records.map((r) => [r.id, r]));
        deepStrictEqual([...byId.keys()].sort(), ['x', 'ü:/ id'].sort(), 'only collection c');
        ok(byId.get('x')?.data.equals(every), 'every byte value comes back');
        strictEqual(byId.get('ü:/ id')?.data.length, 0, 'an empty value comes back empty');
        strictEqual(byId.get('x')?.revision, result.revision);
        const read = await a.read('c', ['x', 'absent']);
        deepStrictEqual(
          read.records.map((r) => r.id),
          ['x'],
          'read() leaves absent items out',
        );
      },
    ),
    check(newPlace, 'revisions increase across commits, store-wide', async (open) => {
      const a = await open('a');
      const first = await a.commit([set('c', 'x', bytes('1'))], REJECT);
      const second = await a.commit([set('d', 'y', bytes('2'))], REJECT);
      ok(
        (second.revision ?? 0) > (first.revision ?? 0),
        'the later commit has the higher revision',
      );
    }),
    check(newPlace, 'refuses a malformed commit whole: nothing of it is applied', async (open) => {
      const a = await open('a');
      const error = await rejection(
        a.commit([set('c', 'x', bytes('1')), set('c', 'x', bytes('2'))], REJECT),
      );
      ok(isPersistenceError(error), 'a typed error for an item named twice');
      deepStrictEqual((await a.loadAll(['c'])).records, [], 'nothing applied');
    }),
    check(
      newPlace,
      '"reject": a stale expected revision keeps the remote version and reports it',
      async (open) => {
        const a = await open('a');
        const b = await open('b');
        const first = await a.commit([set('c', 'x', bytes('a1'))], REJECT);
        const second = await b.commit([set('c', 'x', bytes('b2'), first.revision ?? 0)], REJECT);
        const result = await a.commit(
          [set('c', 'x', bytes('a3'), first.revision ?? 0), set('c', 'y', bytes('new'))],
          REJECT,
        );
        strictEqual(result.conflicts.length, 1, 'one conflict');
        const [conflict] = result.conflicts;
        strictEqual(conflict.id, 'x');
        strictEqual(
          conflict.applied,
          false,
          'under "reject" the conflicting change is not applied',
        );
        strictEqual(conflict.expectedRevision, first.revision);
        strictEqual(conflict.remote.revision, second.revision);
        ok(conflict.remote.data?.equals(bytes('b2')), 'the remote bytes are reported');
        ok(conflict.local?.equals(bytes('a3')), 'the local bytes are reported');
        deepStrictEqual(
          result.applied.map((c) => c.id),
          ['y'],
          'the other change is applied',
        );
        const stored = (await a.read('c', ['x'])).records[0];
        ok(stored.data.equals(bytes('b2')), 'the remote version stays');
      },
    ),
    check(
      newPlace,
      '"last-write-wins": a stale expected revision overwrites and is still reported',
      async (open) => {
        const a = await open('a');
        const b = await open('b');
        const first = await a.commit([set('c', 'x', bytes('a1'))], REJECT);
        await b.commit([set('c', 'x', bytes('b2'), first.revision ?? 0)], REJECT);
        const result = await a.commit([set('c', 'x', bytes('a3'), first.revision ?? 0)], LWW);
        deepStrictEqual(
          result.conflicts.map((c) => [c.id, c.applied]),
          [['x', true]],
        );
        ok((await a.read('c', ['x'])).records[0].data.equals(bytes('a3')), 'overwritten');
      },
    ),
    check(
      newPlace,
      'its own earlier write is no conflict (an answer lost with the connection)',
      async (open) => {
        const a = await open('a');
        await a.commit([set('c', 'x', bytes('1'))], REJECT);
        const again = await a.commit([set('c', 'x', bytes('2'), 0)], REJECT);
        deepStrictEqual(again.conflicts, []);
        ok((await a.read('c', ['x'])).records[0].data.equals(bytes('2')));
      },
    ),
    check(newPlace, 'removes items; removing one already gone is no conflict', async (open) => {
      const a = await open('a');
      const b = await open('b');
      const first = await a.commit([set('c', 'x', bytes('1')), set('c', 'y', bytes('2'))], REJECT);
      await b.commit(
        [{ collection: 'c', id: 'y', data: null, expectedRevision: first.revision ?? 0 }],
        REJECT,
      );
      const result = await a.commit(
        [
          { collection: 'c', id: 'x', data: null, expectedRevision: first.revision ?? 0 },
          { collection: 'c', id: 'y', data: null, expectedRevision: first.revision ?? 0 },
        ],
        REJECT,
      );
      deepStrictEqual(result.conflicts, [], 'y was removed by b already');
      deepStrictEqual((await a.loadAll(['c'])).records, []);
    }),
    check(newPlace, 'a commit that applies nothing has no revision', async (open) => {
      const a = await open('a');
      const b = await open('b');
      await a.commit([set('c', 'x', bytes('1'))], REJECT);
      const none = await b.commit([set('c', 'x', bytes('2'), 0)], REJECT);
      strictEqual(none.revision, undefined);
      deepStrictEqual(none.applied, []);
      strictEqual((await a.commit([], REJECT)).revision, undefined, 'an empty commit');
    }),
    check(
      newPlace,
      'tells the other replicas of a commit, never the committing one',
      async (open) => {
        const a = await open('a');
        const b = await open('b');
        const seen: Record<'a' | 'b', DriverWatchEvent[]> = { a: [], b: [] };
        a.watch((event) => seen.a.push(event));
        b.watch((event) => seen.b.push(event));
        await a.watchReady?.();
        await b.watchReady?.();
        const result = await a.commit([set('c', 'x', bytes('1'))], REJECT);
        await eventually(() => seen.b.some((e) => e.kind === 'changes'), 'the notice on b');
        const notice = seen.b.find((e) => e.kind === 'changes');
        deepStrictEqual(notice, {
          kind: 'changes',
          origin: 'a',
          revision: result.revision,
          changes: [{ collection: 'c', id: 'x', deleted: false }],
        });
        await b.commit([set('d', 'y', bytes('2'))], REJECT); // a's notice of this one comes after
        await eventually(() => seen.a.length > 0, 'the notice on a');
        deepStrictEqual(
          seen.a.filter((e) => e.kind === 'changes').map((e) => e.kind === 'changes' && e.origin),
          ['b'],
          'a is never told of its own commit',
        );
      },
    ),
    check(newPlace, 'loadAll() sees each concurrent commit whole or not at all', async (open) => {
      const writer = await open('w');
      const reader = await open('r');
      await writer.commit([set('c', 'a', bytes('0')), set('c', 'b', bytes('0'))], LWW);
      let writing = true;
      const writes = (async () => {
        for (let n = 1; n <= 40; n++) {
          await writer.commit(
            [set('c', 'a', bytes(String(n))), set('c', 'b', bytes(String(n)))],
            LWW,
          );
        }
        writing = false;
      })();
      let reads = 0;
      while (writing || reads < 5) {
        const { records } = await reader.loadAll(['c']);
        const values = records.map((r) => r.data.toString()).sort();
        strictEqual(values.length, 2, 'both items');
        strictEqual(values[0], values[1], `one commit's state, got ${values.join(' / ')}`);
        reads++;
      }
      await writes;
    }),
    check(
      newPlace,
      'leases: one holder at a time, a greater token for the next holder',
      async (open) => {
        const a = await open('a');
        const b = await open('b');
        const first = await a.acquireLease('conformance', 30_000);
        ok(first, 'a takes the free lease');
        strictEqual(
          await b.acquireLease('conformance', 30_000),
          undefined,
          'b cannot while a holds it',
        );
        strictEqual(await first.renew(), true, 'the holder renews');
        await first.release();
        const second = await b.acquireLease('conformance', 30_000);
        ok(second, 'b takes it once released');
        ok(second.token > first.token, 'the fencing token grows');
        await first.release(); // no longer the holder: must not free b's lease
        strictEqual(await a.acquireLease('conformance', 30_000), undefined, 'b still holds it');
        strictEqual(await first.renew(), false, 'a lost lease does not renew');
        await second.release();
      },
    ),
    check(newPlace, 'refuses every call after close() with a typed error', async (open) => {
      const a = await open('a');
      await a.close();
      for (const call of [a.loadAll(['c']), a.read('c', ['x']), a.commit([], REJECT)]) {
        ok(isPersistenceError(await rejection(call)), 'a typed error after close');
      }
    }),
  ];
  if (capabilities.stop) {
    checks.push(
      check(
        newPlace,
        'an unreachable storage: commits reject as retryable, nothing half-applied, watchers hear what follows',
        async (open, place) => {
          ok(place.stop && place.start, 'the place must give stop() and start()');
          const a = await open('a');
          const b = await open('b');
          const events: DriverWatchEvent[] = [];
          b.watch((event) => events.push(event));
          await b.watchReady?.();
          await a.commit([set('c', 'x', bytes('1'))], REJECT);
          await place.stop();
          try {
            const error = await rejection(
              a.commit([set('c', 'x', bytes('2'), 0), set('c', 'y', bytes('2'))], LWW),
            );
            assertCode(error, PersistenceErrorCode.StorageUnavailable, 'a commit while down');
          } finally {
            await place.start();
          }
          let loaded: Awaited<ReturnType<StorageDriver['loadAll']>> | undefined;
          const deadline = Date.now() + 10_000;
          while (loaded === undefined && Date.now() < deadline) {
            // The driver reconnects on its own; until then its calls reject as unavailable.
            loaded = await a.loadAll(['c']).catch(() => undefined);
            if (loaded === undefined) await new Promise((resolve) => setTimeout(resolve, 50));
          }
          ok(loaded, 'the storage answers again');
          const values = loaded.records.map((r) => `${r.id}=${r.data.toString()}`).sort();
          ok(
            JSON.stringify(values) === JSON.stringify(['x=1']) ||
              JSON.stringify(values) === JSON.stringify(['x=2', 'y=2']),
            `the refused commit is absent or whole, got ${values.join(', ')}`,
          );
          // The watch came back: a commit after the outage reaches the other replica, as a notice
          // or as a resync (a driver that may have missed notices says so; one that knows it
          // missed none need not).
          const heard = events.length;
          let after: number | undefined;
          while (after === undefined && Date.now() < deadline) {
            const committed = await a
              .commit([set('c', 'after', bytes('3'))], LWW)
              .catch(() => undefined);
            after = committed?.revision;
            if (after === undefined) await new Promise((resolve) => setTimeout(resolve, 50));
          }
          ok(after !== undefined, 'a commit after the outage');
          await eventually(
            () =>
              events
                .slice(heard)
                .some((e) => e.kind === 'resync' || (e.kind === 'changes' && e.revision === after)),
            'the commit after the outage to reach the watcher',
            10_000,
          );
        },
      ),
    );
  }
  if (capabilities.corrupt) {
    checks.push(
      check(
        newPlace,
        'bad stored data: reported per item, the rest loads, a commit never overwrites it',
        async (open, place) => {
          ok(place.corrupt, 'the place must give corrupt()');
          const a = await open('a');
          const first = await a.commit(
            [set('c', 'good', bytes('1')), set('c', 'bad', bytes('2'))],
            REJECT,
          );
          await place.corrupt('c', 'bad');
          const loaded = await a.loadAll(['c']);
          deepStrictEqual(
            loaded.records.map((r) => r.id),
            ['good'],
          );
          deepStrictEqual(
            loaded.problems.map((p) => p.id),
            ['bad'],
          );
          assertCode(loaded.problems[0].error, PersistenceErrorCode.BadStoredData, 'the problem');
          const result = await a.commit([set('c', 'bad', bytes('3'), first.revision ?? 0)], LWW);
          deepStrictEqual(
            result.blocked.map((p) => p.id),
            ['bad'],
            'the commit to it is blocked',
          );
          deepStrictEqual(
            (await a.loadAll(['c'])).problems.map((p) => p.id),
            ['bad'],
            'still bad, not overwritten',
          );
        },
      ),
    );
  }
  return checks;
}
